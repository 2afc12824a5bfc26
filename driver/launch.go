package driver

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"

	"github.com/xfaas/xfaas/driver/shim"
	"github.com/xfaas/xfaas/internal/cgroup"
)

// readyLine is what `xfaas proxy` prints on stdout once it serves.
type readyLine struct {
	Event     string `json:"event"`
	Container string `json:"container"`
	Addr      string `json:"addr"`
}

// launched is a started shim whose container printed its ready line.
type launched struct {
	shim  *os.Process
	state TaskState
}

// launch starts the shim, which starts the proxy in group, and waits for the
// proxy's ready line. On failure nothing is left running.
func (d *Driver) launch(cfg *drivers.TaskConfig, args []string, group *cgroup.Group, dir string) (*launched, error) {
	st := TaskState{TaskConfig: cfg, Cgroup: group.Path(), StatusFile: filepath.Join(dir, "status")}
	if err := os.Remove(st.StatusFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	reportR, reportW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer reportR.Close()
	shimLog, err := os.OpenFile(filepath.Join(dir, "shim.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		reportW.Close()
		return nil, err
	}
	shimArgs := append(d.opts.ShimCommand[1:len(d.opts.ShimCommand):len(d.opts.ShimCommand)],
		"--status", st.StatusFile, "--report-fd", "3", "--cgroup", group.Path(),
		"--stdout", cfg.StdoutPath, "--stderr", cfg.StderrPath, "--")
	cmd := exec.Command(d.opts.ShimCommand[0], append(shimArgs, args...)...)
	cmd.Env, cmd.Dir = cfg.EnvList(), cfg.TaskDir().Dir
	cmd.Stderr, cmd.ExtraFiles = shimLog, []*os.File{reportW}
	// A session of its own: the shim and the container outlive the driver.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	reportW.Close()
	shimLog.Close()
	if err != nil {
		return nil, fmt.Errorf("start shim: %w", err)
	}
	st.ShimPID, st.StartedAt = cmd.Process.Pid, time.Now().Round(time.Millisecond)
	st.ShimStart, _ = procStart(st.ShimPID)
	ready, err := readReport(reportR, &st, d.opts.StartTimeout)
	if err != nil {
		return nil, d.abort(cmd.Process, &st, group, err)
	}
	st.Container, st.Addr = ready.Container, ready.Addr
	return &launched{shim: cmd.Process, state: st}, nil
}

// readReport reads the shim's report: the proxy's pid, then its ready line.
func readReport(r *os.File, st *TaskState, timeout time.Duration) (readyLine, error) {
	var ready readyLine
	if err := r.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return ready, err
	}
	sc := bufio.NewScanner(r)
	var started shim.Event
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &started) != nil || started.Event != "started" {
		return ready, fmt.Errorf("the shim did not start the container (%v)", errOr(sc.Err(), "no report"))
	}
	st.ProxyPID = started.PID
	st.ProxyStart, _ = procStart(started.PID)
	if !sc.Scan() {
		return ready, fmt.Errorf("the container exited before it was ready (%v)", errOr(sc.Err(), "no ready line"))
	}
	if err := json.Unmarshal(sc.Bytes(), &ready); err != nil || ready.Event != "ready" || ready.Addr == "" {
		return ready, fmt.Errorf("the container printed %q instead of its ready line", sc.Text())
	}
	return ready, nil
}

func errOr(err error, otherwise string) any {
	if err != nil {
		return err
	}
	return otherwise
}

// abort kills a container that failed to start, waits for its shim, and
// adds what the shim recorded (exit and end of stderr) to cause.
func (d *Driver) abort(p *os.Process, st *TaskState, group *cgroup.Group, cause error) error {
	h := newHandle(*st, group, p, d.logger)
	_ = h.kill()
	go h.run(d.ctx)
	if !h.waitDone(killWait) {
		return fmt.Errorf("%w; the shim (pid %d) did not exit", cause, st.ShimPID)
	}
	if s, err := shim.ReadStatus(st.StatusFile); err == nil {
		msg := fmt.Sprintf("exit code %d", s.ExitCode)
		if s.Err != "" {
			msg = s.Err
		}
		if tail := strings.TrimSpace(s.StderrTail); tail != "" {
			msg += "; stderr: " + tail
		}
		return fmt.Errorf("%w: %s", cause, msg)
	}
	return cause
}

// network is the DriverNetwork of a container at addr ("tcp://HOST:PORT").
func network(addr string) *drivers.DriverNetwork {
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != "tcp" {
		return nil
	}
	host, portStr, err := net.SplitHostPort(u.Host)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil {
		return nil
	}
	return &drivers.DriverNetwork{IP: host, PortMap: map[string]int{Name: port}}
}

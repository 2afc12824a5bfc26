package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/client/lib/cpustats"
	"github.com/hashicorp/nomad/drivers/shared/eventer"
	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/shared/hclspec"
	pstructs "github.com/hashicorp/nomad/plugins/shared/structs"
	"golang.org/x/sys/unix"

	"github.com/xfaas/xfaas/driver/shim"
	"github.com/xfaas/xfaas/internal/cgroup"
	"github.com/xfaas/xfaas/internal/containerid"
)

// killWait bounds how long the driver waits for a killed container's exit.
const killWait = 10 * time.Second

var (
	_ drivers.DriverPlugin            = (*Driver)(nil)
	_ drivers.ExecTaskStreamingDriver = (*Driver)(nil)
)

// Options are the driver's seams to the OS; the zero value means this host.
type Options struct {
	// Version is reported in PluginInfo and the driver.xfaas.version
	// attribute. The default is "dev".
	Version string
	// ShimCommand starts a shim (package shim); the driver appends the
	// shim's arguments. The default is this executable with "shim".
	ShimCommand []string
	// Cgroups locates the cgroup hierarchy.
	Cgroups cgroup.Options
	// LookPath finds xfaas in PATH. The default is exec.LookPath.
	LookPath func(string) (string, error)
	// StartTimeout bounds the wait for a container's ready line. The
	// default is 30 s.
	StartTimeout time.Duration
}

func (o *Options) fill() {
	if o.Version == "" {
		o.Version = "dev"
	}
	if len(o.ShimCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			exe = os.Args[0]
		}
		o.ShimCommand = []string{exe, shim.Command}
	}
	if o.LookPath == nil {
		o.LookPath = exec.LookPath
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
}

// Driver runs xfaas session containers for Nomad. See the package doc.
type Driver struct {
	ctx     context.Context
	logger  hclog.Logger
	opts    Options
	eventer *eventer.Eventer
	tasks   *taskStore

	mu      sync.RWMutex
	config  Config
	compute cpustats.Compute
}

// New returns a driver; ctx ends its background work.
func New(ctx context.Context, logger hclog.Logger, opts Options) *Driver {
	opts.fill()
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	logger = logger.Named(Name)
	d := &Driver{ctx: ctx, logger: logger, opts: opts, eventer: eventer.NewEventer(ctx, logger), tasks: newTaskStore()}
	d.config.fill()
	return d
}

// PluginInfo describes the plugin.
func (d *Driver) PluginInfo() (*base.PluginInfoResponse, error) {
	return pluginInfo(d.opts.Version), nil
}

// ConfigSchema is the plugin block's schema.
func (d *Driver) ConfigSchema() (*hclspec.Spec, error) { return configSpec, nil }

// SetConfig applies the plugin block; cfg may be nil or empty (Nomad's
// config validation calls it so).
func (d *Driver) SetConfig(cfg *base.Config) error {
	var c Config
	if cfg != nil && len(cfg.PluginConfig) > 0 {
		if err := base.MsgPackDecode(cfg.PluginConfig, &c); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
	}
	c.fill()
	if err := c.validate(); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.config = c
	if cfg != nil && cfg.AgentConfig != nil {
		d.compute = cfg.AgentConfig.Compute()
	}
	return nil
}

func (d *Driver) snapshot() (Config, cpustats.Compute) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.config, d.compute
}

// TaskConfigSchema is the task config block's schema.
func (d *Driver) TaskConfigSchema() (*hclspec.Spec, error) { return taskConfigSpec, nil }

// Capabilities are the driver's optional features.
func (d *Driver) Capabilities() (*drivers.Capabilities, error) { return capabilities, nil }

// Fingerprint reports the driver's health now and every fingerprintPeriod.
func (d *Driver) Fingerprint(ctx context.Context) (<-chan *drivers.Fingerprint, error) {
	ch := make(chan *drivers.Fingerprint)
	go func() {
		defer close(ch)
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-d.ctx.Done():
				return
			case <-t.C:
				t.Reset(fingerprintPeriod)
			}
			select {
			case ch <- d.fingerprint():
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch, nil
}

// fingerprint is healthy when the proxy binary can run and cgroups can be
// written.
func (d *Driver) fingerprint() *drivers.Fingerprint {
	conf, _ := d.snapshot()
	fp := &drivers.Fingerprint{
		Attributes: map[string]*pstructs.Attribute{
			"driver.xfaas.version": pstructs.NewStringAttribute(d.opts.Version),
		},
		Health:            drivers.HealthStateHealthy,
		HealthDescription: drivers.DriverHealthy,
	}
	unhealthy := func(format string, args ...any) *drivers.Fingerprint {
		fp.Health, fp.HealthDescription = drivers.HealthStateUnhealthy, fmt.Sprintf(format, args...)
		return fp
	}
	h, err := cgroup.Open(d.opts.Cgroups)
	if err == nil {
		fp.Attributes["driver.xfaas.cgroup_mode"] = pstructs.NewStringAttribute(strings.TrimPrefix(h.Mode().String(), "cgroup "))
		err = h.Writable()
	}
	if err != nil {
		return unhealthy("cgroups: %v", err)
	}
	proxy, err := conf.proxyPath(d.opts.LookPath)
	if err == nil {
		err = checkExecutable(proxy)
	}
	if err != nil {
		return unhealthy("proxy binary: %v", err)
	}
	fp.Attributes["driver.xfaas"] = pstructs.NewBoolAttribute(true)
	fp.Attributes["driver.xfaas.proxy_path"] = pstructs.NewStringAttribute(proxy)
	return fp
}

// StartTask starts a session container: its cgroup, then the shim that runs
// `xfaas proxy` in it, then waits for the proxy's ready line.
func (d *Driver) StartTask(cfg *drivers.TaskConfig) (*drivers.TaskHandle, *drivers.DriverNetwork, error) {
	if _, ok := d.tasks.get(cfg.ID); ok {
		return nil, nil, fmt.Errorf("task %s is already started", cfg.ID)
	}
	if cfg.User != "" {
		return nil, nil, fmt.Errorf("%w: user %q: xfaas containers run as the Nomad client's user (see the driver's README); remove the task's user", ErrInvalidConfig, cfg.User)
	}
	tc, err := decodeTaskConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	conf, _ := d.snapshot()
	proxy, err := conf.proxyPath(d.opts.LookPath)
	if err != nil {
		return nil, nil, err
	}
	d.warnOvercommit(cfg, tc)
	group, err := d.createGroup(conf, cfg, tc)
	if err != nil {
		return nil, nil, err
	}
	dir := stateDir(cfg)
	args := tc.proxyArgs(&conf, containerID(cfg), group.Path())
	l, err := d.mkdirAndLaunch(cfg, proxy, args, group, dir)
	if err != nil {
		d.removeGroup(group)
		return nil, nil, fmt.Errorf("start container: %w", err)
	}
	handle := drivers.NewTaskHandle(taskHandleVersion)
	handle.Config = cfg
	if err := handle.SetDriverState(&l.state); err != nil {
		h := newHandle(l.state, group, l.shim, d.logger)
		_ = h.kill()
		go h.run(d.ctx)
		return nil, nil, fmt.Errorf("save driver state: %w", err)
	}
	h := newHandle(l.state, group, l.shim, d.logger.With("alloc_id", cfg.AllocID, "task_name", cfg.Name))
	d.tasks.set(cfg.ID, h)
	go h.run(d.ctx)
	d.logger.Info("container ready", "task_id", cfg.ID, "container", l.state.Container, "addr", l.state.Addr, "pid", l.state.ProxyPID)
	d.emit(cfg, "Container "+l.state.Container+" serves at "+l.state.Addr)
	return handle, network(l.state.Addr), nil
}

func (d *Driver) mkdirAndLaunch(cfg *drivers.TaskConfig, proxy string, args []string, group *cgroup.Group, dir string) (*launched, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return d.launch(cfg, append([]string{proxy}, args...), group, dir)
}

// stateDir holds the shim's status file and log, in the task's private
// directory, which outlives the driver and goes with the allocation.
func stateDir(cfg *drivers.TaskConfig) string {
	return filepath.Join(cfg.TaskDir().Dir, "private", "xfaas")
}

// containerID names the container after its allocation and task.
func containerID(cfg *drivers.TaskConfig) string { return containerid.Nomad(cfg.AllocID, cfg.Name) }

// createGroup creates the container's cgroup, sized for max_workers workers.
func (d *Driver) createGroup(conf Config, cfg *drivers.TaskConfig, tc *TaskConfig) (*cgroup.Group, error) {
	h, err := cgroup.Open(d.opts.Cgroups)
	if err != nil {
		return nil, err
	}
	g := h.Group(path.Join(conf.CgroupParent, cfg.AllocID+"."+containerid.SafeName(cfg.Name)))
	if err := g.Create(containerResources(tc)); err != nil {
		d.removeGroup(g)
		return nil, fmt.Errorf("create container cgroup: %w", err)
	}
	return g, nil
}

// warnOvercommit warns, in the log and as a task event, when Nomad reserves
// less memory for the task than its container may use: Nomad would then
// place more containers on the node than its memory holds. CPU is not
// compared: the container's quota is a ceiling for bursts (RATIONALE.md,
// "Workers and cgroups"), and Nomad counts MHz, not cores.
func (d *Driver) warnOvercommit(cfg *drivers.TaskConfig, tc *TaskConfig) {
	reserved, limit, short := memoryShortfall(cfg, tc)
	if !short {
		return
	}
	d.logger.Warn("task reserves less memory than its container may use", "task_id", cfg.ID, "reserved_mb", reserved, "limit_mb", limit)
	d.emit(cfg, fmt.Sprintf("The job reserves %d MB of memory; the container may use %d MiB (max_workers x worker_memory_mb + %d)",
		reserved, limit, cgroup.ContainerOverheadMB))
}

// memoryShortfall compares the memory Nomad reserves for the task with its
// container's limit, in MiB; short when a reservation is below the limit.
func memoryShortfall(cfg *drivers.TaskConfig, tc *TaskConfig) (reserved, limit int64, short bool) {
	if cfg.Resources == nil || cfg.Resources.NomadResources == nil {
		return 0, 0, false
	}
	reserved = cfg.Resources.NomadResources.Memory.MemoryMB
	_, limit = cgroup.ContainerSize(tc.MaxWorkers, tc.WorkerCPUMillicores, tc.WorkerMemoryMB)
	return reserved, limit, reserved > 0 && reserved < limit
}

// removeGroup kills what is left in g and removes it.
func (d *Driver) removeGroup(g *cgroup.Group) {
	if err := errors.Join(g.Kill(), g.Remove()); err != nil {
		d.logger.Warn("failed to remove container cgroup", "cgroup", g.Path(), "error", err)
	}
}

// RecoverTask reattaches to a container started by an earlier driver
// process, running or exited meanwhile.
func (d *Driver) RecoverTask(handle *drivers.TaskHandle) error {
	if handle == nil || handle.Config == nil {
		return errors.New("recover task: no handle")
	}
	if _, ok := d.tasks.get(handle.Config.ID); ok {
		return nil
	}
	var st TaskState
	if err := handle.GetDriverState(&st); err != nil {
		return fmt.Errorf("recover task: decode driver state: %w", err)
	}
	if st.TaskConfig == nil {
		st.TaskConfig = handle.Config
	}
	var group *cgroup.Group
	if h, err := cgroup.Open(d.opts.Cgroups); err == nil && st.Cgroup != "" {
		group = h.Group(st.Cgroup)
	}
	h := newHandle(st, group, nil, d.logger.With("alloc_id", st.TaskConfig.AllocID, "task_name", st.TaskConfig.Name))
	d.tasks.set(handle.Config.ID, h)
	go h.run(d.ctx)
	running := alive(st.ShimPID, st.ShimStart) || alive(st.ProxyPID, st.ProxyStart)
	d.logger.Info("recovered container", "task_id", handle.Config.ID, "container", st.Container, "running", running)
	return nil
}

// WaitTask delivers the task's exit result once, unless ctx ends first.
func (d *Driver) WaitTask(ctx context.Context, taskID string) (<-chan *drivers.ExitResult, error) {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	ch := make(chan *drivers.ExitResult, 1)
	go func() {
		defer close(ch)
		select {
		case <-h.done:
			ch <- h.exitResult()
		case <-ctx.Done():
		case <-d.ctx.Done():
		}
	}()
	return ch, nil
}

// StopTask asks the container to stop with signal (default SIGTERM) and
// kills its process group and cgroup if it is still running after timeout.
func (d *Driver) StopTask(taskID string, timeout time.Duration, signal string) error {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	sig := unix.SIGTERM
	if signal != "" {
		s, err := parseSignal(signal)
		if err != nil {
			return err
		}
		sig = s
	}
	if err := h.signal(sig); err != nil {
		return err
	}
	if h.waitDone(timeout) {
		return nil
	}
	d.logger.Info("container did not stop in time, killing it", "task_id", taskID, "timeout", timeout)
	if err := h.kill(); err != nil {
		return err
	}
	if !h.waitDone(killWait) {
		return fmt.Errorf("container of task %s did not exit after SIGKILL", taskID)
	}
	return nil
}

// DestroyTask forgets the task and removes its cgroup; a running container
// is an error unless force, which kills it. Once it gets past that check it
// forgets the task even when the clean-up fails, as rawexec does: Nomad
// only logs the error and never calls again, and a handle kept would make
// a later StartTask of the same task fail.
func (d *Driver) DestroyTask(taskID string, force bool) error {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	if h.running() && !force {
		return fmt.Errorf("cannot destroy running task %s; stop it first or force", taskID)
	}
	defer d.tasks.delete(taskID)
	var errs []error
	if h.running() {
		if err := h.kill(); err != nil {
			d.logger.Warn("failed to kill container", "task_id", taskID, "error", err)
		}
		if !h.waitDone(killWait) {
			errs = append(errs, fmt.Errorf("container did not exit %v after SIGKILL", killWait))
		}
	}
	if h.group != nil {
		errs = append(errs, h.group.Kill(), h.group.Remove())
	}
	if err := errors.Join(errs...); err != nil {
		d.logger.Warn("failed to clean up destroyed task", "task_id", taskID, "cgroup", h.state.Cgroup, "error", err)
		return fmt.Errorf("destroy task %s: %w", taskID, err)
	}
	return nil
}

// InspectTask reports the task's status.
func (d *Driver) InspectTask(taskID string) (*drivers.TaskStatus, error) {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return nil, drivers.ErrTaskNotFound
	}
	return h.status(), nil
}

// TaskEvents streams the driver's task events.
func (d *Driver) TaskEvents(ctx context.Context) (<-chan *drivers.TaskEvent, error) {
	return d.eventer.TaskEvents(ctx)
}

func (d *Driver) emit(cfg *drivers.TaskConfig, msg string) {
	ev := &drivers.TaskEvent{TaskID: cfg.ID, TaskName: cfg.Name, AllocID: cfg.AllocID, Timestamp: time.Now(), Message: msg}
	if err := d.eventer.EmitEvent(ev); err != nil {
		d.logger.Debug("failed to emit task event", "error", err)
	}
}

// SignalTask sends signal (a name such as "SIGHUP") to the container.
func (d *Driver) SignalTask(taskID string, signal string) error {
	h, ok := d.tasks.get(taskID)
	if !ok {
		return drivers.ErrTaskNotFound
	}
	sig, err := parseSignal(signal)
	if err != nil {
		return err
	}
	return h.signal(sig)
}

func parseSignal(name string) (unix.Signal, error) {
	name = strings.ToUpper(name)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, fmt.Errorf("unknown signal %q", name)
	}
	return sig, nil
}

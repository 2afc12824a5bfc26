package baseline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisBinary is the redis-server executable StartRedis runs; tests may
// point it elsewhere.
var RedisBinary = "redis-server"

// ErrNoRedis is returned when redis-server is not installed.
var ErrNoRedis = errors.New("redis-server is not installed (Debian package redis-server; `make test` installs it)")

// Redis is a redis-server process on a free loopback port, without
// persistence, that Close kills.
type Redis struct {
	// Addr is host:port.
	Addr string
	cmd  *exec.Cmd
	done chan struct{}
	once sync.Once
}

// StartRedis starts redis-server on 127.0.0.1 on a free port with
// persistence off (no RDB snapshots, no AOF) and waits until it answers
// PING. dir is its working directory.
func StartRedis(ctx context.Context, dir string) (*Redis, error) {
	bin, err := exec.LookPath(RedisBinary)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoRedis, err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, done: make(chan struct{})}
	var tail tailBuffer
	go func() {
		io.Copy(&tail, stdout)
		cmd.Wait()
		close(r.done)
	}()
	if err := r.waitReady(ctx); err != nil {
		r.Close()
		return nil, fmt.Errorf("redis-server on %s: %w%s", r.Addr, err, tail.String())
	}
	return r, nil
}

func (r *Redis) waitReady(ctx context.Context) error {
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := rdb.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-r.done:
			return errors.New("exited at start")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer to PING within 10s: %w", err)
		}
	}
}

// Pid is the server's process id.
func (r *Redis) Pid() int { return r.cmd.Process.Pid }

// Close stops the server (SIGTERM, SIGKILL after 5 s) and waits for it.
// It is idempotent.
func (r *Redis) Close() error {
	r.once.Do(func() {
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer keeps the last lines a process printed, for error messages.
type tailBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sc := bufio.NewScanner(strings.NewReader(string(p)))
	for sc.Scan() {
		t.lines = append(t.lines, sc.Text())
		if len(t.lines) > 10 {
			t.lines = t.lines[1:]
		}
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	return ":\n" + strings.Join(t.lines, "\n")
}

package driver

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/nomad/plugins/drivers"
)

// ErrInvalidConfig is wrapped by every plugin or task configuration error.
var ErrInvalidConfig = errors.New("invalid xfaas config")

// Config is the plugin block, decoded. Defaults are filled by fill.
type Config struct {
	ProxyPath    string `codec:"proxy_path"`
	CgroupParent string `codec:"cgroup_parent"`
	ListenHost   string `codec:"listen_host"`
	CacheDir     string `codec:"cache_dir"`
	NATS         string `codec:"nats"`
}

func (c *Config) fill() {
	if c.CgroupParent == "" {
		c.CgroupParent = "xfaas"
	}
	if c.ListenHost == "" {
		c.ListenHost = "127.0.0.1"
	}
	if c.CacheDir == "" {
		c.CacheDir = filepath.Join(os.TempDir(), "xfaas-cache")
	}
}

func (c *Config) validate() error {
	if strings.Contains(c.CgroupParent, "..") {
		return fmt.Errorf("%w: cgroup_parent %q must not contain \"..\"", ErrInvalidConfig, c.CgroupParent)
	}
	if strings.ContainsAny(c.ListenHost, "/:") && net.ParseIP(c.ListenHost) == nil {
		return fmt.Errorf("%w: listen_host %q is not a host name or IP address", ErrInvalidConfig, c.ListenHost)
	}
	return nil
}

// proxyPath resolves the xfaas binary: proxy_path, else xfaas in PATH, else
// an xfaas next to the driver binary that is not the driver itself (in a
// plugin_dir the driver is itself named xfaas).
func (c *Config) proxyPath(lookPath func(string) (string, error)) (string, error) {
	if c.ProxyPath != "" {
		return c.ProxyPath, nil
	}
	if p, err := lookPath("xfaas"); err == nil {
		return p, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(self), "xfaas")
	a, aerr := os.Stat(p)
	b, berr := os.Stat(self)
	if aerr != nil || berr != nil || os.SameFile(a, b) {
		return "", errors.New("no xfaas binary in PATH nor next to the driver (set proxy_path)")
	}
	return p, nil
}

// checkExecutable says why path cannot be run as the proxy, or nil.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// Roles of a container.
const (
	RolePool    = "pool"
	RoleSession = "session"
)

// TaskConfig is a task's config block, decoded. Defaults are filled by fill.
type TaskConfig struct {
	// Role is "pool" (the default) or "session".
	Role     string `codec:"role"`
	Function string `codec:"function"`
	Session  string `codec:"session"`
	// Module is the wasm file a session container serves at once.
	Module string `codec:"module"`
	// MaxWorkers is the container's worker limit. The default is 10.
	MaxWorkers int `codec:"max_workers"`
	// WorkerCPUMillicores is each worker's CPU. The default is 100.
	WorkerCPUMillicores int `codec:"worker_cpu_millicores"`
	// WorkerMemoryMB is each worker's memory. The default is 128.
	WorkerMemoryMB int      `codec:"worker_memory_mb"`
	ExtraArgs      []string `codec:"extra_args"`
}

// decodeTaskConfig decodes, fills and validates cfg's driver config.
func decodeTaskConfig(cfg *drivers.TaskConfig) (*TaskConfig, error) {
	var tc TaskConfig
	if err := cfg.DecodeDriverConfig(&tc); err != nil {
		return nil, fmt.Errorf("%w: decode task config: %w", ErrInvalidConfig, err)
	}
	tc.fill()
	if err := tc.validate(); err != nil {
		return nil, err
	}
	if tc.Module != "" && !filepath.IsAbs(tc.Module) {
		tc.Module = filepath.Join(cfg.TaskDir().Dir, tc.Module)
	}
	return &tc, nil
}

// fill sets defaults for fields left zero (the hclspec defaults do the same
// for configs that come from a jobspec).
func (tc *TaskConfig) fill() {
	if tc.Role == "" {
		tc.Role = RolePool
	}
	if tc.MaxWorkers == 0 {
		tc.MaxWorkers = 10
	}
	if tc.WorkerCPUMillicores == 0 {
		tc.WorkerCPUMillicores = 100
	}
	if tc.WorkerMemoryMB == 0 {
		tc.WorkerMemoryMB = 128
	}
}

func (tc *TaskConfig) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	switch tc.Role {
	case RolePool:
		if tc.Function != "" || tc.Session != "" || tc.Module != "" {
			bad("function, session and module are for role %q; a pool container is bound later", RoleSession)
		}
	case RoleSession:
		if tc.Function == "" || tc.Session == "" || tc.Module == "" {
			bad("role %q needs function, session and module", RoleSession)
		}
	default:
		bad("role must be %q or %q, not %q", RolePool, RoleSession, tc.Role)
	}
	if tc.MaxWorkers < 1 {
		bad("max_workers must be >= 1, not %d", tc.MaxWorkers)
	}
	if tc.WorkerCPUMillicores < 1 {
		bad("worker_cpu_millicores must be >= 1, not %d", tc.WorkerCPUMillicores)
	}
	if tc.WorkerMemoryMB < 1 {
		bad("worker_memory_mb must be >= 1, not %d", tc.WorkerMemoryMB)
	}
	for _, a := range tc.ExtraArgs {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && (name == "cgroup" || name == "no-cgroups") {
			bad("extra_args must not set %s: the driver places the container in its cgroup", a)
		}
	}
	return errors.Join(errs...)
}

// proxyArgs are the arguments of `xfaas proxy` for the task.
func (tc *TaskConfig) proxyArgs(c *Config, id, cgroupPath string) []string {
	args := []string{"proxy", "--listen", "tcp://" + net.JoinHostPort(c.ListenHost, "0"),
		"--id", id, "--cache-dir", c.CacheDir, "--cgroup", cgroupPath}
	if host, err := os.Hostname(); err == nil {
		args = append(args, "--node", host)
	}
	if c.NATS != "" {
		args = append(args, "--nats", c.NATS)
	}
	if tc.Role == RoleSession {
		fnConfig := fmt.Sprintf(`{"max_workers":%d,"worker_cpu_millicores":%d,"worker_memory_mb":%d}`,
			tc.MaxWorkers, tc.WorkerCPUMillicores, tc.WorkerMemoryMB)
		args = append(args, "--module", tc.Module, "--function", tc.Function, "--session", tc.Session, "--config", fnConfig)
	}
	return append(args, tc.ExtraArgs...)
}

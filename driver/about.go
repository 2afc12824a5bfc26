package driver

import (
	"time"

	"github.com/hashicorp/nomad/plugins/base"
	"github.com/hashicorp/nomad/plugins/drivers"
	"github.com/hashicorp/nomad/plugins/drivers/fsisolation"
	"github.com/hashicorp/nomad/plugins/shared/hclspec"
)

// Name is the driver's name: jobs say driver = "xfaas".
const Name = "xfaas"

const (
	// fingerprintPeriod is how often the driver re-checks its health.
	fingerprintPeriod = 30 * time.Second
	// taskHandleVersion versions TaskState.
	taskHandleVersion = 1
)

// configSpec is the plugin block's schema: plugin "xfaas" { config { ... } }.
var configSpec = hclspec.NewObject(map[string]*hclspec.Spec{
	// The xfaas binary to run as `xfaas proxy`. The default is xfaas in
	// PATH, else an xfaas next to the driver binary (other than itself).
	"proxy_path": hclspec.NewAttr("proxy_path", "string", false),
	// The cgroup under which container groups are made. The default is "xfaas".
	"cgroup_parent": hclspec.NewDefault(hclspec.NewAttr("cgroup_parent", "string", false), hclspec.NewLiteral(`"xfaas"`)),
	// The address containers listen on. The default is 127.0.0.1.
	"listen_host": hclspec.NewDefault(hclspec.NewAttr("listen_host", "string", false), hclspec.NewLiteral(`"127.0.0.1"`)),
	// The compilation cache the node's containers share. The default is
	// xfaas-cache in the OS temp directory.
	"cache_dir": hclspec.NewAttr("cache_dir", "string", false),
	// The NATS server proxies follow session addresses on (--nats). The
	// default is none.
	"nats": hclspec.NewAttr("nats", "string", false),
})

// taskConfigSpec is the schema of a task's config block.
var taskConfigSpec = hclspec.NewObject(map[string]*hclspec.Spec{
	// "pool" (an unbound warm container, the default) or "session".
	"role":     hclspec.NewDefault(hclspec.NewAttr("role", "string", false), hclspec.NewLiteral(`"pool"`)),
	"function": hclspec.NewAttr("function", "string", false),
	"session":  hclspec.NewAttr("session", "string", false),
	// The wasm module a session container serves at once (standalone);
	// relative paths are below the task directory.
	"module":                hclspec.NewAttr("module", "string", false),
	"max_workers":           hclspec.NewDefault(hclspec.NewAttr("max_workers", "number", false), hclspec.NewLiteral("10")),
	"worker_cpu_millicores": hclspec.NewDefault(hclspec.NewAttr("worker_cpu_millicores", "number", false), hclspec.NewLiteral("100")),
	"worker_memory_mb":      hclspec.NewDefault(hclspec.NewAttr("worker_memory_mb", "number", false), hclspec.NewLiteral("128")),
	// More flags for `xfaas proxy`, after the driver's own.
	"extra_args": hclspec.NewAttr("extra_args", "list(string)", false),
})

// capabilities: no file system isolation (a container is a process with
// wasm workers, which have no file system access at all).
var capabilities = &drivers.Capabilities{
	SendSignals: true,
	Exec:        true,
	FSIsolation: fsisolation.None,
	NetIsolationModes: []drivers.NetIsolationMode{
		drivers.NetIsolationModeHost,
	},
	MountConfigs: drivers.MountConfigSupportNone,
}

func pluginInfo(version string) *base.PluginInfoResponse {
	return &base.PluginInfoResponse{
		Type:              base.PluginTypeDriver,
		PluginApiVersions: []string{drivers.ApiVersion010},
		PluginVersion:     version,
		Name:              Name,
	}
}

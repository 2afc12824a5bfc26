package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/xfaas/xfaas/controlplane/bus"
	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/wire"
	"github.com/xfaas/xfaas/proxy"
)

// readyLine is what `xfaas proxy` prints on stdout once it serves: the
// spawner (the local placement backend, the Nomad driver) learns the
// container's address from it.
type readyLine struct {
	Event     string `json:"event"`
	Container string `json:"container"`
	Addr      string `json:"addr"`
}

func init() {
	commands["proxy"] = command{summary: "run one session container (the entrypoint of a container)", run: runProxy}
}

func runProxy(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "proxy", "[flags]")
	listen := fs.String("listen", "tcp://127.0.0.1:0", "address to serve on: tcp://HOST:PORT or unix:///PATH")
	id := fs.String("id", "", "container id (default: random)")
	node := fs.String("node", "", "node name, for status and logs")
	cacheDir := fs.String("cache-dir", "", "compilation cache shared by the node's containers (default: in memory)")
	module := fs.String("module", "", "serve this wasm module at once as a primary (standalone); without it the container waits in the pool to be bound")
	function := fs.String("function", "standalone", "function name, with --module")
	session := fs.String("session", "default", "session id, with --module")
	config := fs.String("config", "", "function config JSON, with --module")
	cgroup := fs.String("cgroup", "", "container cgroup to run in, relative to the hierarchy root; created and removed by the proxy if it does not exist (default xfaas-<id>)")
	noCgroups := fs.Bool("no-cgroups", false, "run workers without CPU limits")
	logLevel := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	logJSON := fs.Bool("log-json", false, "log JSON lines")
	grace := fs.Duration("grace", 10*time.Second, "how long running requests may finish at shutdown")
	natsURL := fs.String("nats", "", "NATS server (with JetStream): session addresses for pull_state, the durable checkpoint tier and the logs of durability \"log\" (default: none of them)")
	ckptDir := fs.String("checkpoint-dir", "", "the node's checkpoint directory (default: checkpoints only in the durable tier)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Our stdout and stderr are pipes to a supervisor (the Nomad driver's
	// shim, xfaas dev) that may die before us. Unless SIGPIPE is handled,
	// the Go runtime kills the process at its next write to a broken fd 1
	// or 2; ignored, the write fails with EPIPE, which the logger drops, and
	// the container keeps serving (RATIONALE.md, "Nomad driver").
	signal.Ignore(syscall.SIGPIPE)
	log := hclog.New(&hclog.LoggerOptions{Name: "xfaas-proxy", Level: hclog.LevelFromString(*logLevel), Output: env.stderr, JSONFormat: *logJSON})

	if *id == "" {
		*id = proxy.NewID()
	}
	opts := proxy.Options{ID: *id, Node: *node, CacheDir: *cacheDir, CheckpointDir: *ckptDir, Logger: log}
	if *natsURL != "" {
		// The connection reconnects for ever; a server unreachable at start
		// is an error, so that a wrong URL shows at once.
		nc, err := nats.Connect(*natsURL, nats.Name("xfaas-proxy "+*id), nats.MaxReconnects(-1))
		if err != nil {
			return fmt.Errorf("connect to nats %s: %w", *natsURL, err)
		}
		defer nc.Close()
		table, err := bus.NewTable(ctx, nc, bus.TableOptions{Logger: log.Named("bus")})
		if err != nil {
			return err
		}
		defer table.Close()
		opts.Resolver, opts.NATS = table, nc
	}
	if !*noCgroups {
		if *cgroup == "" {
			*cgroup = "xfaas-" + *id
		}
		opts.Limits = proxy.CgroupLimits(*cgroup)
	}
	c := proxy.New(opts)
	if *module != "" {
		if err := bindStandalone(ctx, c, *module, *function, *session, *config); err != nil {
			c.Close(ctx)
			return err
		}
	} else {
		c.Prepare() // a pool container: ready the bind while it waits
	}
	ln, err := wire.Listen(*listen)
	if err != nil {
		c.Close(ctx)
		return fmt.Errorf("listen: %w", err)
	}
	addr := wire.AddrOf(ln.Addr())
	if err := json.NewEncoder(env.stdout).Encode(readyLine{Event: "ready", Container: c.ID(), Addr: addr}); err != nil {
		return err
	}
	log.Info("serving", "container", c.ID(), "addr", addr)
	return c.Serve(ctx, ln, *grace)
}

func bindStandalone(ctx context.Context, c *proxy.Container, path, function, session, config string) error {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	cfg, err := fnconfig.Parse([]byte(config))
	if err != nil {
		return err
	}
	return c.Bind(ctx, proxy.Binding{Function: function, Session: session, Role: proxy.RolePrimary, Config: cfg, Module: wasm, Restore: true})
}

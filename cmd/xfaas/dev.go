package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/hashicorp/go-hclog"

	"github.com/xfaas/xfaas/cmd/xfaas/example"
	"github.com/xfaas/xfaas/controlplane/client"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/hint"
	"github.com/xfaas/xfaas/internal/sched"
)

func init() {
	commands["dev"] = command{summary: "run the whole platform on this machine (control plane, containers, NATS) with an example function", run: runDev}
	commands["controlplane"] = command{summary: "run a control plane from a config file", run: runControlPlane}
}

func runDev(ctx context.Context, env *cli, args []string) error {
	cfg := defaultPlatformConfig()
	fs := newFlags(env, "dev", "[flags]")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "HTTP API address")
	fs.StringVar(&cfg.Data, "data", defaultDevData(), "data directory: JetStream store, compilation cache, container sockets")
	fs.StringVar(&cfg.NATS, "nats", "", "use this NATS server (with JetStream) instead of an embedded one")
	fs.IntVar(&cfg.Placement.Nodes, "nodes", cfg.Placement.Nodes, "simulated nodes")
	fs.IntVar(&cfg.Placement.Pool, "pool", cfg.Placement.Pool, "warm containers per node")
	fs.BoolVar(&cfg.Placement.NoCgroups, "no-cgroups", false, "run containers without cgroup limits")
	fs.StringVar(&cfg.Token, "token", "", "require this token for management calls")
	procs := fs.Int("procs", 0, "Go scheduler threads (GOMAXPROCS) of the control plane; 0: half the CPUs, or $GOMAXPROCS when set")
	policy := fs.String("sched", "batch", "Linux scheduling policy of the control plane and its containers: batch (SCHED_BATCH: a wake-up does not preempt) or other (the kernel's default, SCHED_OTHER)")
	logLevel := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *procs < 0 {
		return fmt.Errorf("--procs must not be negative: %d", *procs)
	}
	pol, ok := map[string]uint32{"batch": sched.Batch, "other": sched.Other}[*policy]
	if !ok {
		return fmt.Errorf("--sched must be batch or other: %q", *policy)
	}
	runtime.GOMAXPROCS(devProcs(*procs, os.Getenv("GOMAXPROCS"), runtime.GOMAXPROCS(0)))
	log := hclog.New(&hclog.LoggerOptions{Name: "xfaas", Level: hclog.LevelFromString(*logLevel), Output: env.stderr})
	// Before any container starts: they inherit the policy.
	if err := sched.Set(pol); err != nil {
		log.Warn("could not set the scheduling policy; some threads may keep the default", "sched", *policy, "error", err)
	}
	p, err := startPlatform(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer p.close()
	if err := deployExample(ctx, p, log); err != nil {
		return err
	}
	printBanner(env.stdout, p)
	err = p.serve(ctx)
	log.Info("shutting down: releasing sessions and containers")
	return err
}

// devProcs is the dev control plane's GOMAXPROCS: flag when set, else
// the GOMAXPROCS environment variable's (the runtime applied it: now),
// else half of now. The session containers run on the same CPUs, and a
// control plane with a P per CPU keeps Ms spinning for work on the CPUs the
// containers need: on 2 cores, one P gave 1.3-1.55x the warm-invoke
// throughput (RATIONALE.md, "The dev control plane's share of the CPUs").
// The containers' own processes keep the runtime's default.
func devProcs(flag int, envVar string, now int) int {
	switch {
	case flag > 0:
		return flag
	case envVar != "":
		return now
	}
	return max(1, now/2)
}

// deployExample deploys the counter, with a hint keyset kept in the local
// keystore as `xfaas deploy` would, so the CLI can seal sessions for it.
// A counter already there (from an earlier start on the same data, or the
// user's own deploy) is left alone: deploying over it would reset its
// config and could swap its keyset, which breaks every hint sealed for it.
// If the keystore cannot seal for that counter, dev says so and goes on.
func deployExample(ctx context.Context, p *platform, log hclog.Logger) error {
	path, err := hint.DefaultKeystorePath()
	if err != nil {
		return err
	}
	keystore := hint.NewKeystore(path)
	info, err := p.srv.Function("counter")
	switch {
	case err == nil:
		if info.Hints != "sealed" {
			return nil
		}
		keys, ok, err := keystore.Get(p.apiURL(), "counter")
		if err != nil {
			return fmt.Errorf("keystore: %w", err)
		}
		if !ok || keys.ID() != info.HintKeyID {
			log.Warn("the deployed counter's hint keyset is not in the keystore, so hint seal and invoke --session "+
				"cannot seal for it; xfaas hint import stores it, or xfaas deploy --replace-hint-key gives the counter this machine's",
				"keyset", info.HintKeyID, "keystore", path, "addr", p.apiURL())
		}
		return nil
	case apierror.KindOf(err) != apierror.NotFound:
		return err
	}
	keys, _, err := keystore.GetOrCreate(p.apiURL(), "counter")
	if err != nil {
		return fmt.Errorf("keystore: %w", err)
	}
	vk, err := keys.VerifyKey().MarshalText()
	if err != nil {
		return err
	}
	_, err = p.srv.Deploy(ctx, "counter", example.Counter, nil, string(vk))
	return err
}

func printBanner(w io.Writer, p *platform) {
	self := "xfaas"
	if exe, err := os.Executable(); err == nil {
		if wd, err := os.Getwd(); err == nil {
			if rel, err := filepath.Rel(wd, exe); err == nil && !filepath.IsAbs(rel) && rel[0] != '.' {
				self = rel
			}
		}
	}
	api := p.apiURL()
	// The CLI lines reach the API through XFAAS_ADDR when it is not where
	// the CLI looks by default.
	export := ""
	if api != client.DefaultAddr {
		export = "\n  export " + client.AddrEnv + "=" + api
	}
	fmt.Fprintf(w, `xfaas dev is running
  API      %s   (metrics at %s/metrics)
  NATS     %s
  nodes    %d simulated nodes, %d warm containers each
  data     %s

The example function "counter" is deployed (a linearizable counter). Try:
%s
  curl -X POST %s/v1/functions/counter/invoke -d incr
  curl -X POST %s/v1/functions/counter/invoke -d incr -H "X-Xfaas-Session: $(%s hint seal --function counter alice)"
  %s invoke counter --session alice -d incr
  %s sessions counter

Ctrl-C stops everything.
`, api, api, p.natsURL, p.cfg.Placement.Nodes, p.cfg.Placement.Pool, p.cfg.Data, export, api, api, self, self, self)
}

func defaultDevData() string {
	if dir := os.Getenv("XDG_DATA_HOME"); dir != "" {
		return filepath.Join(dir, "xfaas", "dev")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "xfaas", "dev")
	}
	return filepath.Join(os.TempDir(), "xfaas-dev")
}

func runControlPlane(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "controlplane", "--config FILE")
	path := fs.String("config", "", "JSON config file (see README, \"Running a control plane\")")
	logLevel := fs.String("log-level", "info", "log level: trace, debug, info, warn, error")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *path == "" {
		fs.Usage()
		return fmt.Errorf("--config is required")
	}
	cfg, err := loadPlatformConfig(*path)
	if err != nil {
		return err
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "xfaas", Level: hclog.LevelFromString(*logLevel), Output: env.stderr})
	p, err := startPlatform(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer p.close()
	log.Info("control plane serving", "api", p.apiURL(), "nats", p.natsURL)
	return p.serve(ctx)
}

// Command xfaas-driver is the xfaas Nomad task driver plugin. Installed in a
// Nomad client's plugin_dir as "xfaas", it serves the driver over go-plugin;
// run as `xfaas-driver shim ...` it is the supervisor of one container (see
// package github.com/xfaas/xfaas/driver/shim).
package main

import (
	"context"
	"os"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/plugins"

	"github.com/xfaas/xfaas/driver"
	"github.com/xfaas/xfaas/driver/shim"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.0.0-dev" // a semantic version: Nomad refuses to load a plugin whose version does not parse

func main() {
	if len(os.Args) > 1 && os.Args[1] == shim.Command {
		os.Exit(shim.Main(os.Args[2:]))
	}
	plugins.ServeCtx(func(ctx context.Context, log hclog.Logger) interface{} {
		return driver.New(ctx, log, driver.Options{Version: version})
	})
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/xfaas/xfaas/controlplane"
)

func init() {
	commands["functions"] = command{summary: "list the deployed functions", run: runFunctions}
}

func runFunctions(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "functions", "[--json]")
	api := addAPIFlags(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON instead of a table")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	list, err := api.client().Functions(ctx)
	if err != nil {
		return apiError(err)
	}
	if *asJSON {
		return printJSON(env.stdout, list)
	}
	printFunctions(env.stdout, list)
	return nil
}

// printFunctions prints a table of functions; WORKERS and CONTAINERS are
// the configured maxima per container and per session.
func printFunctions(w io.Writer, list []controlplane.FunctionInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tHINTS\tWORKERS\tCONTAINERS\tDIGEST\tUPDATED")
	for _, f := range list {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\n", f.Name, f.Version, f.Hints, f.Config.MaxWorkers, f.Config.MaxContainers,
			shortDigest(f.Digest), f.Updated.Local().Format(time.DateTime))
	}
	tw.Flush()
}

// shortDigest is the first 12 hex digits of a "sha256:..." digest.
func shortDigest(d string) string {
	_, hex, ok := strings.Cut(d, ":")
	if !ok {
		hex = d
	}
	return hex[:min(len(hex), 12)]
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Command xfaas is the xfaas platform in one binary: the CLI, the dev
// platform (xfaas dev), the control plane and the session container
// entrypoint (xfaas proxy). Run "xfaas help" for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		// The flag package printed the usage asked for: a success.
	case err != nil:
		fmt.Fprintln(os.Stderr, "xfaas:", err)
		os.Exit(1)
	}
}

// command is one subcommand: its one-line summary and what runs it.
type command struct {
	summary string
	run     func(ctx context.Context, env *cli, args []string) error
	// hidden commands are internal (a process the platform starts itself)
	// and not listed in the usage.
	hidden bool
}

// cli is what every command writes to.
type cli struct {
	stdout, stderr io.Writer
}

// commands are the subcommands; each file registers its own in init.
var commands = map[string]command{}

func init() {
	commands["version"] = command{summary: "print the version", run: func(_ context.Context, env *cli, _ []string) error {
		fmt.Fprintln(env.stdout, "xfaas", version)
		return nil
	}}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	env := &cli{stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	cmd, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return cmd.run(ctx, env, args[1:])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: xfaas <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for name, c := range commands {
		if !c.hidden {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-12s %s\n", name, commands[name].summary)
	}
	fmt.Fprintln(w, "\nRun \"xfaas <command> -h\" for a command's flags.")
}

// newFlags returns a flag set for a command that reports errors instead of
// exiting, and prints its usage to the command's stderr.
func newFlags(env *cli, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "usage: xfaas %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

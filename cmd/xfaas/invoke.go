package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/xfaas/xfaas/controlplane/client"
)

func init() {
	commands["invoke"] = command{summary: "invoke a function, in a session whose label is sealed here", run: runInvoke}
}

// runInvoke writes the function's output to stdout byte for byte, adding
// nothing (no newline), so binary outputs and pipes get what the function
// set.
func runInvoke(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "invoke", "NAME [--session LABEL] [-d DATA | --data-file F] [-v]\n\n"+
		"Writes the function's output to stdout exactly as it is, without adding a newline.")
	api := addAPIFlags(fs)
	session := fs.String("session", "", "session label, sealed with the function's keyset from the local keystore (default: the function's default session)")
	data := fs.String("d", "", "request body; - reads it from stdin")
	dataFile := fs.String("data-file", "", "read the request body from this file (- for stdin)")
	verbose := fs.Bool("v", false, "print the container, role, node and session id that served the request to stderr")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, args, 1, "NAME"); err != nil {
		return err
	}
	name := args[0]
	body, err := requestBody(fs, *data, *dataFile)
	if err != nil {
		return err
	}
	c := api.client()
	token, err := sealFor(c, name, *session)
	if err != nil {
		return err
	}
	resp, err := c.Invoke(ctx, name, token, body)
	if err != nil {
		return apiError(err)
	}
	if *verbose {
		printServedBy(env.stderr, resp)
	}
	_, err = env.stdout.Write(resp.Body)
	return err
}

// requestBody reads the body that -d or --data-file gives; neither is an
// empty body. Stdin is read only when asked for, so that an invocation
// at a terminal never waits for input.
func requestBody(fs *flag.FlagSet, data, dataFile string) ([]byte, error) {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case set["d"] && set["data-file"]:
		return nil, errors.New("invoke: give -d or --data-file, not both")
	case data == "-" || dataFile == "-":
		return io.ReadAll(os.Stdin)
	case dataFile != "":
		return os.ReadFile(dataFile)
	}
	return []byte(data), nil
}

// sealFor seals label for function name with the keystore's keyset of
// (c's address, name); an empty label is the default session, no hint.
func sealFor(c *client.Client, name, label string) (string, error) {
	if label == "" {
		return "", nil
	}
	ks, err := storedKeyset(c.Addr(), name)
	if err != nil {
		return "", err
	}
	return ks.Seal(name, label)
}

func printServedBy(w io.Writer, resp client.Response) {
	fmt.Fprintf(w, "container %s\nrole      %s\nnode      %s\nsession   %s\n", resp.Container, resp.Role, resp.Node, resp.SessionID)
}

package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane/client"
	"github.com/xfaas/xfaas/controlplane/cptest"
	"github.com/xfaas/xfaas/internal/hint"
)

// cliPlane is a control plane (cptest) and the environment that points the
// CLI at it, with a keystore of its own and no management token.
type cliPlane struct {
	*cptest.Env
	env      []string
	keystore string
}

func startCLIPlane(t *testing.T, o cptest.Options) *cliPlane {
	t.Helper()
	e := cptest.Start(t, o)
	keys := filepath.Join(t.TempDir(), "keys.json")
	return &cliPlane{Env: e, keystore: keys,
		env: []string{client.AddrEnv + "=" + e.URL, hint.KeystoreEnv + "=" + keys, client.TokenEnv + "="}}
}

// cliRun is how one run of the xfaas binary ended.
type cliRun struct {
	stdout, stderr string
	code           int
}

// runCLI runs the xfaas binary with env added to the test's environment
// and stdin as its input, within two minutes.
func runCLI(t *testing.T, env []string, stdin string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, xfaasBin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := cliRun{}
	if err := cmd.Run(); err != nil {
		exit, ok := errors.AsType[*exec.ExitError](err)
		if !ok || ctx.Err() != nil {
			t.Fatalf("xfaas %s: %v; stderr:\n%s", strings.Join(args, " "), err, stderr.String())
		}
		r.code = exit.ExitCode()
	}
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

// run runs xfaas against the control plane, with extra environment
// variables ("K=V") that override the plane's.
func (p *cliPlane) run(t *testing.T, env []string, stdin string, args ...string) cliRun {
	t.Helper()
	return runCLI(t, append(slices.Clone(p.env), env...), stdin, args...)
}

// must runs xfaas and returns its stdout; it fails the test unless xfaas
// exits with status 0.
func (p *cliPlane) must(t *testing.T, args ...string) string {
	t.Helper()
	r := p.run(t, nil, "", args...)
	if r.code != 0 {
		t.Fatalf("xfaas %s: exit status %d; stderr:\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// fails runs xfaas and returns its stderr; it fails the test unless xfaas
// exits with a non-zero status and says says on stderr.
func (p *cliPlane) fails(t *testing.T, says string, args ...string) string {
	t.Helper()
	r := p.run(t, nil, "", args...)
	if r.code == 0 || !strings.Contains(r.stderr, says) {
		t.Fatalf("xfaas %s: exit status %d, stderr:\n%s\nwant a failure saying %q", strings.Join(args, " "), r.code, r.stderr, says)
	}
	return r.stderr
}

// keyset returns the keyset the plane's keystore holds for fn.
func (p *cliPlane) keyset(t *testing.T, fn string) hint.Keyset {
	t.Helper()
	ks, ok, err := hint.NewKeystore(p.keystore).Get(p.URL, fn)
	if err != nil || !ok {
		t.Fatalf("no keyset of %s in %s: %v", fn, p.keystore, err)
	}
	return ks
}

// sessionID is the id of label's session of fn, sealed with the keystore's
// keyset.
func (p *cliPlane) sessionID(t *testing.T, fn, label string) string {
	t.Helper()
	token, err := p.keyset(t, fn).Seal(fn, label)
	if err != nil {
		t.Fatal(err)
	}
	return string(hint.SessionIDOf(token))
}

func TestParseArgsTakesFlagsAnywhere(t *testing.T) {
	cases := []struct {
		args       []string
		positional []string
		session    string
		data       string
	}{
		{[]string{"counter", "--session", "alice", "-d", "incr"}, []string{"counter"}, "alice", "incr"},
		{[]string{"--session", "alice", "counter", "-d", "-"}, []string{"counter"}, "alice", "-"},
		{[]string{"a", "-d=x", "b"}, []string{"a", "b"}, "", "x"},
		{[]string{"--session", "s", "--", "-label", "-d", "y"}, []string{"-label"}, "s", "y"},
		{nil, nil, "", ""},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		session := fs.String("session", "", "")
		data := fs.String("d", "", "")
		got, err := parseArgs(fs, c.args)
		if err != nil || !slices.Equal(got, c.positional) || *session != c.session || *data != c.data {
			t.Errorf("parseArgs(%q) = %q, %v with session %q, data %q; want %q, %q, %q", c.args, got, err, *session, *data, c.positional, c.session, c.data)
		}
	}
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := parseArgs(fs, []string{"counter", "--nope"}); err == nil {
		t.Error("an unknown flag after an argument was accepted")
	}
}

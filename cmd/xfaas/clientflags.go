package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/xfaas/xfaas/controlplane/client"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/hint"
)

// apiFlags are the flags of the commands that call a control plane.
type apiFlags struct {
	addr, token string
}

// addAPIFlags adds --addr and --token to fs. Their defaults come from the
// environment after parsing, so -h never prints a token.
func addAPIFlags(fs *flag.FlagSet) *apiFlags {
	f := &apiFlags{}
	fs.StringVar(&f.addr, "addr", "", "control plane address (default $"+client.AddrEnv+", else "+client.DefaultAddr+")")
	fs.StringVar(&f.token, "token", "", "management token for deploy and evict (default $"+client.TokenEnv+")")
	return f
}

// client returns a client of the flags' control plane.
func (f *apiFlags) client() *client.Client {
	addr, token := f.addr, f.token
	if addr == "" {
		addr = os.Getenv(client.AddrEnv)
	}
	if token == "" {
		token = os.Getenv(client.TokenEnv)
	}
	return client.New(addr, token)
}

// parseArgs parses flags that may come before, between or after the
// positional arguments ("xfaas invoke NAME --session alice") and returns
// the positional ones. "--" makes the next argument positional even if it
// starts with a dash.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// parseNoArgs parses the flags of a command that takes no positional
// arguments, and refuses any: a stray word is an error, not the end of the
// flags.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	return wantArgs(fs, args, 0, "no arguments")
}

// wantArgs checks the number of positional arguments.
func wantArgs(fs *flag.FlagSet, args []string, n int, what string) error {
	if len(args) == n {
		return nil
	}
	fs.Usage()
	return fmt.Errorf("%s takes %s; got %d arguments", fs.Name(), what, len(args))
}

// apiError formats an error the control plane answered as "kind: message"
// for main to print.
func apiError(err error) error {
	ae, ok := errors.AsType[*apierror.Error](err)
	if !ok {
		return err
	}
	if ae.RetryAfter > 0 {
		return fmt.Errorf("%s: %w (retry after %ds)", ae.Kind, err, ae.RetryAfter)
	}
	return fmt.Errorf("%s: %w", ae.Kind, err)
}

// keystore opens the local keystore of hint keysets.
func keystore() (*hint.Keystore, error) {
	path, err := hint.DefaultKeystorePath()
	if err != nil {
		return nil, err
	}
	return hint.NewKeystore(path), nil
}

// storedKeyset returns the keystore's keyset of function at the control
// plane addr, or an error that says how to put one there.
func storedKeyset(addr, function string) (hint.Keyset, error) {
	keys, err := keystore()
	if err != nil {
		return hint.Keyset{}, err
	}
	ks, ok, err := keys.Get(addr, function)
	if err != nil {
		return hint.Keyset{}, err
	}
	if !ok {
		return hint.Keyset{}, fmt.Errorf("no hint keyset for function %q at %s in the keystore %s: deploy the function from this machine "+
			"(xfaas deploy) or store its keyset there (xfaas hint import --function %s)", function, addr, keys.Path(), function)
	}
	return ks, nil
}

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/xfaas/xfaas/internal/hint"
)

func init() {
	commands["hint"] = command{summary: "make hint keysets and seal session labels (keygen, seal, import)", run: runHint}
}

// hintCommands are the subcommands of "xfaas hint".
var hintCommands = map[string]func(ctx context.Context, env *cli, args []string) error{
	"keygen": runHintKeygen,
	"seal":   runHintSeal,
	"import": runHintImport,
}

func runHint(ctx context.Context, env *cli, args []string) error {
	if len(args) > 0 {
		if run, ok := hintCommands[args[0]]; ok {
			return run(ctx, env, args[1:])
		}
	}
	fmt.Fprint(env.stderr, `usage: xfaas hint <command> [flags]

commands:
  keygen   print a new keyset (line 1, secret) and its verify key (line 2)
  seal     print the session hint of a label: xfaas hint seal --function NAME LABEL
  import   store a function's keyset, read from stdin, in the local keystore
`)
	if len(args) == 0 {
		return errors.New("hint needs a command")
	}
	return fmt.Errorf("unknown hint command %q", args[0])
}

func runHintKeygen(_ context.Context, env *cli, args []string) error {
	fs := newFlags(env, "hint keygen", "[-q]\n\n"+
		"Prints a new keyset on line 1 and its verify key on line 2. The keyset is the application's\n"+
		"secret: it seals session labels and must never reach the platform. The verify key is what the\n"+
		"control plane holds (the deploy form's hint_key); it is a secret too, since it can mint hints.")
	quiet := fs.Bool("q", false, "print no explanation on stderr")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	ks := hint.Generate()
	keyset, err := ks.MarshalText()
	if err != nil {
		return err
	}
	verify, err := ks.VerifyKey().MarshalText()
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s\n%s\n", keyset, verify)
	if !*quiet {
		fmt.Fprintf(env.stderr, "keyset %s: line 1 is the keyset (secret: keep it with the application, never give it to the platform); "+
			"line 2 is its verify key (for the control plane: the deploy form's hint_key)\n", ks.ID())
	}
	return nil
}

func runHintSeal(_ context.Context, env *cli, args []string) error {
	fs := newFlags(env, "hint seal", "--function NAME [--keyset TEXT] LABEL\n\n"+
		"Prints the session hint (the X-Xfaas-Session header) of LABEL for function NAME, sealed with\n"+
		"the function's keyset from the local keystore, or with --keyset.")
	api := addAPIFlags(fs)
	function := fs.String("function", "", "function the hint is for (required)")
	keysetText := fs.String("keyset", "", "seal with this keyset instead of the keystore's; - reads it from stdin, which other users cannot see in the process list")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, args, 1, "LABEL"); err != nil {
		return err
	}
	if *function == "" {
		fs.Usage()
		return errors.New("hint seal needs --function")
	}
	ks, err := sealingKeyset(api, *function, *keysetText)
	if err != nil {
		return err
	}
	token, err := ks.Seal(*function, args[0])
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, token)
	return nil
}

// sealingKeyset is the keyset given as text, or else the keystore's keyset
// of function at the flags' control plane.
func sealingKeyset(api *apiFlags, function, text string) (hint.Keyset, error) {
	if text != "" {
		return parseKeysetText(text)
	}
	return storedKeyset(api.client().Addr(), function)
}

// parseKeysetText parses keyset text, or the first line of stdin for "-".
func parseKeysetText(text string) (hint.Keyset, error) {
	if text == "-" {
		line, err := bufio.NewReader(os.Stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return hint.Keyset{}, err
		}
		text = line
	}
	return hint.ParseKeyset(strings.TrimSpace(text))
}

func runHintImport(_ context.Context, env *cli, args []string) error {
	fs := newFlags(env, "hint import", "--function NAME < KEYSET\n\n"+
		"Stores the keyset on the first line of stdin (as \"xfaas hint keygen\" prints it) as the keyset of\n"+
		"function NAME at the control plane, in the local keystore, so deploy, invoke and seal use it.")
	api := addAPIFlags(fs)
	function := fs.String("function", "", "function the keyset is for (required)")
	replace := fs.Bool("replace", false, "replace a different keyset the keystore has for the function")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	if *function == "" {
		fs.Usage()
		return errors.New("hint import needs --function")
	}
	ks, err := parseKeysetText("-")
	if err != nil {
		return fmt.Errorf("reading the keyset from stdin: %w", err)
	}
	keys, err := keystore()
	if err != nil {
		return err
	}
	addr := api.client().Addr()
	old, ok, err := keys.Get(addr, *function)
	if err != nil {
		return err
	}
	if ok && old.ID() != ks.ID() && !*replace {
		return fmt.Errorf("the keystore %s has another keyset (%s) for function %s at %s; pass --replace to drop it for good",
			keys.Path(), old.ID(), *function, addr)
	}
	if err := keys.Put(addr, *function, ks); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "stored keyset %s for function %s at %s in %s\n", ks.ID(), *function, addr, keys.Path())
	return nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/controlplane/client"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/hint"
)

func init() {
	commands["deploy"] = command{summary: "deploy a function (and keep its hint keyset in the local keystore)", run: runDeploy}
}

func runDeploy(ctx context.Context, env *cli, args []string) error {
	fs := newFlags(env, "deploy", "NAME FILE.wasm [--config JSON | --config-file F]")
	api := addAPIFlags(fs)
	config := fs.String("config", "", "function config JSON (README, \"Configuration\")")
	configFile := fs.String("config-file", "", "read the function config JSON from this file")
	replace := fs.Bool("replace-hint-key", false, "deploy with this machine's keyset even if the function has another one (the session hints sealed with that one stop working)")
	args, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs(fs, args, 2, "NAME and FILE.wasm"); err != nil {
		return err
	}
	name := args[0]
	cfg, err := deployConfig(*config, *configFile)
	if err != nil {
		return err
	}
	module, err := os.ReadFile(args[1])
	if err != nil {
		return err
	}
	keys, err := keystore()
	if err != nil {
		return err
	}
	c := api.client()
	plan, err := planHintKey(ctx, c, keys, name, cfg, *replace)
	if err != nil {
		return err
	}
	info, err := c.Deploy(ctx, name, module, cfg, plan.verifyKey)
	if err != nil {
		return apiError(err)
	}
	printDeployed(env.stdout, info, plan)
	return nil
}

func deployConfig(text, file string) ([]byte, error) {
	switch {
	case text != "" && file != "":
		return nil, errors.New("deploy: give --config or --config-file, not both")
	case file != "":
		return os.ReadFile(file)
	}
	return []byte(text), nil
}

// hintPlan is what a deploy does about the function's hint keyset.
type hintPlan struct {
	// verifyKey is sent as hint_key; "" sends none.
	verifyKey string
	keyID     string
	created   bool   // the keyset was made for this deploy
	keystore  string // where the keyset is
	hook      bool   // the function's hook computes labels; no keyset here
	existed   bool   // the function was deployed before
}

// planHintKey finds or creates the keyset of function name in the
// keystore. It refuses to replace the keyset a deployed function already
// has with another unless replace is set: that would invalidate every
// session hint sealed for it, on this machine or elsewhere.
func planHintKey(ctx context.Context, c *client.Client, keys *hint.Keystore, name string, config []byte, replace bool) (hintPlan, error) {
	plan := hintPlan{keystore: keys.Path()}
	current, err := c.Function(ctx, name)
	switch {
	case err == nil:
		plan.existed = true
	case apierror.KindOf(err) != apierror.NotFound:
		return plan, apiError(err)
	}
	if usesHook(config) {
		plan.hook = true
		return plan, nil
	}
	ks, ok, err := keys.Get(c.Addr(), name)
	if err != nil {
		return plan, err
	}
	if deployed := current.HintKeyID; deployed != "" && (!ok || ks.ID() != deployed) && !replace {
		here := "no keyset for it"
		if ok {
			here = "keyset " + ks.ID()
		}
		return plan, fmt.Errorf("function %s at %s has hint keyset %s, and the keystore %s has %s: store its keyset there "+
			"(xfaas hint import --function %s), or pass --replace-hint-key to give it this machine's (the session hints sealed so far stop working)",
			name, c.Addr(), deployed, keys.Path(), here, name)
	}
	if !ok {
		if ks, plan.created, err = keys.GetOrCreate(c.Addr(), name); err != nil {
			return plan, err
		}
	}
	vk, err := ks.VerifyKey().MarshalText()
	if err != nil {
		return plan, err
	}
	plan.verifyKey, plan.keyID = string(vk), ks.ID()
	return plan, nil
}

// usesHook reports whether a config names a hook. An undecodable config is
// left to the control plane to explain.
func usesHook(config []byte) bool {
	var cfg struct {
		Hook string `json:"hook"`
	}
	return json.Unmarshal(config, &cfg) == nil && cfg.Hook != ""
}

func printDeployed(w io.Writer, info controlplane.FunctionInfo, plan hintPlan) {
	verb := "created"
	if plan.existed {
		verb = "updated"
	}
	fmt.Fprintf(w, "%s function %s, version %d\n", verb, info.Name, info.Version)
	fmt.Fprintf(w, "  digest  %s (%d bytes)\n", info.Digest, info.Size)
	switch {
	case plan.hook:
		fmt.Fprintf(w, "  hints   computed by hook %s; the control plane seals them\n", info.Config.Hook)
	case plan.created:
		fmt.Fprintf(w, "  hints   sealed; keyset %s created in %s\n", plan.keyID, plan.keystore)
	default:
		fmt.Fprintf(w, "  hints   sealed; keyset %s in %s\n", plan.keyID, plan.keystore)
	}
}

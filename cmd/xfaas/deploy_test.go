package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/controlplane/client"
	"github.com/xfaas/xfaas/controlplane/cptest"
	"github.com/xfaas/xfaas/internal/hint"
	"github.com/xfaas/xfaas/internal/testwasm"
)

func TestDeployRefusals(t *testing.T) {
	p := startCLIPlane(t, cptest.Options{})
	counter := testwasm.Path(t, "c/counter")

	p.fails(t, "xfaas: bad_request: invalid module", "deploy", "bad", testwasm.Path(t, "test/garbage"))
	p.fails(t, "xfaas: bad_request: ", "deploy", "bad", counter, "--config", `{"max_workers": 0}`)
	p.fails(t, "not both", "deploy", "bad", counter, "--config", "{}", "--config-file", counter)
	p.fails(t, "deploy takes NAME and FILE.wasm; got 1 arguments", "deploy", "bad")
	if status := p.GetJSON("/v1/functions/bad", nil); status != 404 {
		t.Fatalf("a refused deploy left a function: %d", status)
	}

	config := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(config, []byte(`{"max_workers": 3}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p.must(t, "deploy", "counter", counter, "--config-file", config)
	first := p.keyset(t, "counter").ID()
	// A redeploy keeps the keyset: sessions sealed so far keep working.
	out := p.must(t, "deploy", "counter", counter)
	var info controlplane.FunctionInfo
	p.GetJSON("/v1/functions/counter", &info)
	if !strings.Contains(out, "updated function counter") || !strings.Contains(out, "keyset "+first+" in ") || info.HintKeyID != first || info.Config.MaxWorkers != 10 {
		t.Fatalf("redeploy printed:\n%s\nand deployed %+v", out, info)
	}

	// Another machine (another keystore) must not silently replace the
	// keyset that the hints of this one are sealed with.
	other := []string{hint.KeystoreEnv + "=" + filepath.Join(t.TempDir(), "keys.json")}
	r := p.run(t, other, "", "deploy", "counter", counter)
	if r.code == 0 || !strings.Contains(r.stderr, "has hint keyset "+first) || !strings.Contains(r.stderr, "--replace-hint-key") {
		t.Fatalf("deploy from another keystore: %+v", r)
	}
	if r := p.run(t, other, "", "deploy", "counter", counter, "--replace-hint-key"); r.code != 0 || !strings.Contains(r.stdout, "created in") {
		t.Fatalf("deploy --replace-hint-key: %+v", r)
	}
	p.GetJSON("/v1/functions/counter", &info)
	if info.HintKeyID == first {
		t.Fatal("--replace-hint-key kept the old keyset")
	}
	p.fails(t, "xfaas: bad_hint: ", "invoke", "counter", "--session", "alice")
}

// A hook function seals its labels in the control plane: deploy makes no
// keyset for it.
func TestDeployHookFunction(t *testing.T) {
	p := startCLIPlane(t, cptest.Options{})
	p.must(t, "deploy", "hook", testwasm.Path(t, "test/hook"))
	out := p.must(t, "deploy", "counter", testwasm.Path(t, "c/counter"), "--config", `{"hook": "hook"}`)
	if !strings.Contains(out, "computed by hook hook") {
		t.Fatalf("deploy printed:\n%s", out)
	}
	if _, ok, err := hint.NewKeystore(p.keystore).Get(p.URL, "counter"); ok || err != nil {
		t.Fatalf("a keyset was made for a hook function: %v", err)
	}
}

func TestManagementToken(t *testing.T) {
	p := startCLIPlane(t, cptest.Options{Token: "x"})
	counter := testwasm.Path(t, "c/counter")
	p.fails(t, "xfaas: unauthorized: ", "deploy", "counter", counter)
	p.fails(t, "xfaas: unauthorized: ", "deploy", "counter", counter, "--token", "wrong")
	withToken := []string{client.TokenEnv + "=x"}
	if r := p.run(t, withToken, "", "deploy", "counter", counter); r.code != 0 {
		t.Fatalf("deploy with %s: %+v", client.TokenEnv, r)
	}
	// The flag wins over the environment.
	if r := p.run(t, withToken, "", "deploy", "counter", counter, "--token", "wrong"); r.code == 0 || !strings.Contains(r.stderr, "unauthorized") {
		t.Fatalf("deploy with a wrong --token: %+v", r)
	}
	p.must(t, "deploy", "counter", counter, "--token", "x")

	// Invocations and listings need no token.
	p.must(t, "invoke", "counter", "--session", "alice", "-d", "incr")
	var sessions []controlplane.SessionInfo
	if err := json.Unmarshal([]byte(p.must(t, "sessions", "counter", "--json")), &sessions); err != nil || len(sessions) != 1 {
		t.Fatalf("sessions: %+v, %v", sessions, err)
	}
	p.fails(t, "xfaas: unauthorized: ", "evict", "counter", sessions[0].ID)
	p.must(t, "evict", "counter", sessions[0].ID, "--token", "x")
	p.fails(t, "xfaas: not_found: ", "evict", "counter", sessions[0].ID, "--token", "x")

	// -h shows where the token comes from, never the token.
	if r := p.run(t, withToken, "", "deploy", "-h"); !strings.Contains(r.stderr, "$"+client.TokenEnv) || strings.Contains(r.stderr, `"x"`) {
		t.Fatalf("deploy -h: %+v", r)
	}
}

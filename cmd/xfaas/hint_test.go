package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/xfaas/xfaas/controlplane/client"
	"github.com/xfaas/xfaas/internal/hint"
)

// hintEnv points the CLI at an address nothing serves and an empty
// keystore: the hint commands work offline.
func hintEnv(t *testing.T) (env []string, keystore string) {
	keystore = filepath.Join(t.TempDir(), "keys.json")
	return []string{client.AddrEnv + "=http://cp.example:8080", hint.KeystoreEnv + "=" + keystore}, keystore
}

func TestHintKeygenAndSeal(t *testing.T) {
	env, _ := hintEnv(t)
	r := runCLI(t, env, "", "hint", "keygen")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != 0 || len(lines) != 2 || !strings.Contains(r.stderr, "line 1 is the keyset (secret") {
		t.Fatalf("keygen: %+v", r)
	}
	ks, err := hint.ParseKeyset(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	vk, err := hint.ParseVerifyKey(lines[1])
	if err != nil || !vk.Equal(ks.VerifyKey()) {
		t.Fatalf("line 2 is not the keyset's verify key: %v", err)
	}
	if r := runCLI(t, env, "", "hint", "keygen", "-q"); r.code != 0 || r.stderr != "" {
		t.Fatalf("keygen -q: %+v", r)
	}

	want, _ := ks.Seal("counter", "alice")
	for _, c := range []struct{ stdin, keyset string }{{"", lines[0]}, {r.stdout, "-"}} {
		r := runCLI(t, env, c.stdin, "hint", "seal", "--function", "counter", "--keyset", c.keyset, "alice")
		if r.code != 0 || r.stdout != want+"\n" {
			t.Fatalf("seal --keyset %s: %+v; want %s", c.keyset, r, want)
		}
		if _, err := vk.Verify("counter", strings.TrimSpace(r.stdout)); err != nil {
			t.Fatal(err)
		}
	}

	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"hint", "seal", "alice"}, "hint seal needs --function"},
		{[]string{"hint", "seal", "--function", "counter", "--keyset", lines[1], "alice"}, "a verify key, not a keyset"},
		{[]string{"hint", "seal", "--function", "counter", "--keyset", lines[0], strings.Repeat("x", hint.MaxLabelLen+1)}, "1 to 256 bytes"},
		{[]string{"hint", "seal", "--function", "counter", "alice"}, `no hint keyset for function "counter" at http://cp.example:8080`},
		{[]string{"hint"}, "hint needs a command"},
		{[]string{"hint", "nope"}, `unknown hint command "nope"`},
	} {
		if r := runCLI(t, env, "", c.args...); r.code == 0 || !strings.Contains(r.stderr, c.says) {
			t.Errorf("xfaas %s: %+v; want a failure saying %q", strings.Join(c.args, " "), r, c.says)
		}
	}
}

func TestHintImport(t *testing.T) {
	env, keystore := hintEnv(t)
	ks := hint.Generate()
	text, _ := ks.MarshalText()
	r := runCLI(t, env, string(text)+"\n", "hint", "import", "--function", "counter")
	if r.code != 0 || !strings.Contains(r.stdout, "stored keyset "+ks.ID()+" for function counter at http://cp.example:8080") {
		t.Fatalf("import: %+v", r)
	}
	got, ok, err := hint.NewKeystore(keystore).Get("http://cp.example:8080", "counter")
	if err != nil || !ok || got.ID() != ks.ID() {
		t.Fatalf("the keystore has %v, %v, %v", got, ok, err)
	}
	// Sealing with the keystore finds it under any spelling of the address.
	want, _ := ks.Seal("counter", "alice")
	if r := runCLI(t, env, "", "hint", "seal", "--function", "counter", "--addr", "CP.example:8080/", "alice"); r.stdout != want+"\n" {
		t.Fatalf("seal: %+v; want %s", r, want)
	}

	other, _ := hint.Generate().MarshalText()
	if r := runCLI(t, env, string(other), "hint", "import", "--function", "counter"); r.code == 0 || !strings.Contains(r.stderr, "--replace") {
		t.Fatalf("import over another keyset: %+v", r)
	}
	if r := runCLI(t, env, "xfhk1_garbage", "hint", "import", "--function", "counter"); r.code == 0 || !strings.Contains(r.stderr, "malformed key text") {
		t.Fatalf("import garbage: %+v", r)
	}
	if r := runCLI(t, env, string(other), "hint", "import", "--function", "counter", "--replace"); r.code != 0 {
		t.Fatalf("import --replace: %+v", r)
	}
}

func TestHelpListsTheClientCommands(t *testing.T) {
	r := runCLI(t, nil, "", "help")
	for _, name := range []string{"deploy", "invoke", "functions", "sessions", "evict", "hint"} {
		if !strings.Contains(r.stdout, "\n  "+name+" ") {
			t.Errorf("help does not list %s:\n%s", name, r.stdout)
		}
	}
}

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/controlplane/cptest"
	"github.com/xfaas/xfaas/internal/hint"
	"github.com/xfaas/xfaas/internal/testwasm"
)

// The CLI's whole round: deploy, list, invoke in sessions sealed locally,
// list sessions, seal a hint for another HTTP client, evict.
func TestDeployInvokeSessions(t *testing.T) {
	p := startCLIPlane(t, cptest.Options{})

	out := p.must(t, "deploy", "counter", testwasm.Path(t, "c/counter"), "--config", `{"max_workers": 2}`)
	var info controlplane.FunctionInfo
	p.GetJSON("/v1/functions/counter", &info)
	for _, want := range []string{"created function counter, version ", info.Digest, "keyset " + info.HintKeyID + " created in " + p.keystore} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy printed:\n%s\nwant %q", out, want)
		}
	}
	if id := p.keyset(t, "counter").ID(); info.Hints != "sealed" || info.HintKeyID != id || info.Config.MaxWorkers != 2 {
		t.Fatalf("deployed %+v; the keystore's keyset is %s", info, id)
	}

	table := p.must(t, "functions")
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME ") ||
		!strings.HasPrefix(lines[1], "counter ") || !strings.Contains(lines[1], " sealed ") || !strings.Contains(lines[1], info.Digest[7:19]) {
		t.Errorf("functions:\n%s", table)
	}
	var list []controlplane.FunctionInfo
	if err := json.Unmarshal([]byte(p.must(t, "functions", "--json")), &list); err != nil || len(list) != 1 || list[0].Digest != info.Digest {
		t.Errorf("functions --json: %+v, %v", list, err)
	}

	// Flags may come after the name; the output is written as it is.
	if got := p.must(t, "invoke", "counter", "--session", "alice", "-d", "incr"); got != "1" {
		t.Fatalf("alice's first incr: %q", got)
	}
	if got := p.must(t, "invoke", "--session", "alice", "counter", "-d", "incr"); got != "2" {
		t.Fatalf("alice's second incr: %q", got)
	}
	if got := p.must(t, "invoke", "counter", "--session", "bob", "-d", "incr"); got != "1" {
		t.Fatalf("bob's first incr: %q", got)
	}
	alice, bob := p.sessionID(t, "counter", "alice"), p.sessionID(t, "counter", "bob")

	r := p.run(t, nil, "", "invoke", "counter", "--session", "alice", "-d", "get", "-v")
	if r.code != 0 || r.stdout != "2" || !strings.Contains(r.stderr, "role      primary") || !strings.Contains(r.stderr, "session   "+alice) {
		t.Fatalf("invoke -v: %+v", r)
	}

	table = p.must(t, "sessions", "counter")
	if lines := strings.Split(strings.TrimSpace(table), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") ||
		!strings.Contains(table, alice+"  active") || !strings.Contains(table, bob+"  active") {
		t.Errorf("sessions:\n%s", table)
	}
	var sessions []controlplane.SessionInfo
	if err := json.Unmarshal([]byte(p.must(t, "sessions", "counter", "--json")), &sessions); err != nil || len(sessions) != 2 {
		t.Fatalf("sessions --json: %+v, %v", sessions, err)
	}

	// A sealed hint is a raw header for any HTTP client.
	token := strings.TrimSuffix(p.must(t, "hint", "seal", "--function", "counter", "alice"), "\n")
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/v1/functions/counter/invoke", strings.NewReader("incr"))
	req.Header.Set(hint.Header, token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "3" || resp.Header.Get(controlplane.HeaderSessionID) != alice {
		t.Fatalf("invoke with the sealed hint: %s %q in session %s; want 3 in %s", resp.Status, body, resp.Header.Get(controlplane.HeaderSessionID), alice)
	}

	if out := p.must(t, "evict", "counter", alice); !strings.Contains(out, "evicted session "+alice) {
		t.Errorf("evict printed %q", out)
	}
	sessions = nil
	if err := json.Unmarshal([]byte(p.must(t, "sessions", "counter", "--json")), &sessions); err != nil {
		t.Fatal(err)
	}
	for _, s := range sessions {
		if s.ID == alice && s.Status == "active" {
			t.Fatalf("evicted session still active: %+v", s)
		}
	}
}

// The request body comes from -d, --data-file or stdin.
func TestInvokeBodies(t *testing.T) {
	p := startCLIPlane(t, cptest.Options{})
	p.must(t, "deploy", "counter", testwasm.Path(t, "c/counter"))
	file := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(file, []byte("incr 10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := p.must(t, "invoke", "counter", "--data-file", file); got != "10" {
		t.Fatalf("--data-file: %q", got)
	}
	for _, args := range [][]string{{"-d", "-"}, {"--data-file", "-"}} {
		r := p.run(t, nil, "incr 5", append([]string{"invoke", "counter"}, args...)...)
		if r.code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	// No body is an empty body, and stdin stays unread.
	if got := p.must(t, "invoke", "counter"); got != "21" {
		t.Fatalf("after 10, 5, 5 and an empty incr: %q", got)
	}
	p.fails(t, "not both", "invoke", "counter", "-d", "incr", "--data-file", file)
	p.fails(t, "no such file", "invoke", "counter", "--data-file", filepath.Join(t.TempDir(), "missing"))
}

func TestInvokeFailures(t *testing.T) {
	p := startCLIPlane(t, cptest.Options{})
	stderr := p.fails(t, "xfaas: not_found: ", "invoke", "nothere", "-d", "incr")
	if strings.Count(stderr, "\n") != 1 {
		t.Errorf("one error line expected:\n%s", stderr)
	}

	// A function deployed from elsewhere: its keyset is not in this
	// keystore, so no label can be sealed for it here.
	p.Deploy("elsewhere", "c/counter", "")
	p.fails(t, `no hint keyset for function "elsewhere" at `+p.URL+" in the keystore "+p.keystore, "invoke", "elsewhere", "--session", "alice")
	p.fails(t, "xfaas hint import --function elsewhere", "hint", "seal", "--function", "elsewhere", "alice")
	// Its default session needs no keyset.
	if got := p.must(t, "invoke", "elsewhere", "-d", "incr"); got != "1" {
		t.Fatalf("default session: %q", got)
	}

	// A foreign keyset seals hints the control plane refuses.
	keygen := p.must(t, "hint", "keygen")
	if r := p.run(t, nil, keygen, "hint", "import", "--function", "elsewhere"); r.code != 0 {
		t.Fatalf("import: %+v", r)
	}
	p.fails(t, "xfaas: bad_hint: session hint not sealed for this function", "invoke", "elsewhere", "--session", "alice")
	// Its own keyset works, whatever the spelling of the address.
	text, _ := p.Keys["elsewhere"].MarshalText()
	if r := p.run(t, nil, string(text), "hint", "import", "--function", "elsewhere", "--replace"); r.code != 0 {
		t.Fatalf("import --replace: %+v", r)
	}
	if got := p.must(t, "invoke", "elsewhere", "--session", "alice", "--addr", strings.TrimPrefix(p.URL, "http://")+"/"); got != "1" {
		t.Fatalf("alice's session: %q", got)
	}

	p.fails(t, "invoke takes NAME; got 0 arguments", "invoke")
	p.fails(t, "xfaas: control plane http://127.0.0.1:1: ", "functions", "--addr", "127.0.0.1:1")
}

package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/checkpoint"
	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/natstest"
	"github.com/xfaas/xfaas/internal/testwasm"
	"github.com/xfaas/xfaas/proxy/state"
)

func startNATS(t *testing.T) *nats.Conn {
	t.Helper()
	return natstest.Connect(t, natstest.Start(t).ClientURL())
}

// bindKV binds a kv primary of session sess, restoring.
func bindKV(t *testing.T, cl *Client, sess, durability string) error {
	t.Helper()
	cfg := fnconfig.Default()
	cfg.Durability = durability
	return cl.Bind(context.Background(), Binding{Function: "kv", Session: sess, Role: RolePrimary,
		Config: cfg, Module: testwasm.Bytes(t, "c/kv"), Restore: true})
}

func invokeOK(t *testing.T, cl *Client, in string) string {
	t.Helper()
	out, err := cl.Invoke(context.Background(), []byte(in))
	if err != nil {
		t.Fatalf("invoke %q: %v", in, err)
	}
	return string(out)
}

// A checkpoint taken by one container restores in the next, from the node's
// directory or, without it, from the durable tier.
func TestCheckpointRestoreRoundTrip(t *testing.T) {
	nc := startNATS(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		dir     string
		durable bool
	}{{"node directory", dir, false}, {"durable tier", "", true}} {
		t.Run(tc.name, func(t *testing.T) {
			sess := fmt.Sprintf("%032x", len(tc.name))
			_, cl := startContainer(t, Options{CheckpointDir: dir, NATS: nc})
			if err := bindKV(t, cl, sess, "checkpoint"); err != nil {
				t.Fatal(err)
			}
			invokeOK(t, cl, "set a 1")
			invokeOK(t, cl, "set b two")
			info, err := cl.Checkpoint(context.Background())
			if err != nil || info.Keys != 2 || !info.Durable {
				t.Fatalf("checkpoint: %+v, %v", info, err)
			}
			var opts Options
			if tc.durable {
				opts.NATS = nc // and no directory: only the durable tier has it
			} else {
				opts.CheckpointDir = dir // and no NATS: only the node has it
			}
			_, next := startContainer(t, opts)
			if err := bindKV(t, next, sess, "checkpoint"); err != nil {
				t.Fatal(err)
			}
			if got := invokeOK(t, next, "get b"); got != "two" {
				t.Fatalf("restored b = %q", got)
			}
		})
	}
}

// The corrupt-checkpoint matrix: each damaged checkpoint is refused with a
// clear error, the container stays unbound (no empty session), and the
// damaged file is kept aside.
func TestCorruptCheckpoints(t *testing.T) {
	const sess = "0123456789abcdef0123456789abcdef"
	good := (&checkpoint.Checkpoint{Function: "kv", Session: sess, Seq: 3, Created: time.Now(),
		Entries: []checkpoint.Entry{{Key: "a", Value: []byte("1"), Stamp: 3}}}).Encode()
	other := (&checkpoint.Checkpoint{Function: "kv", Session: "default", Seq: 3, Created: time.Now()}).Encode()
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"truncated", good[:len(good)/2], checkpoint.ErrCorrupt},
		{"flipped byte", flip(good, len(good)/2), checkpoint.ErrCorrupt},
		{"bad checksum", flip(good, len(good)-1), checkpoint.ErrCorrupt},
		{"empty", nil, checkpoint.ErrCorrupt},
		{"wrong version", version(good, checkpoint.Version+1), checkpoint.ErrVersion},
		{"another session's", other, checkpoint.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "kv", sess+".ckpt")
			if err := checkpoint.WriteFile(path, tc.data); err != nil {
				t.Fatal(err)
			}
			cs := &checkpoints{dir: dir, log: hclog.NewNullLogger()}
			ck, _, err := cs.load(context.Background(), "kv", sess, "", 0)
			if ck != nil || !errors.Is(err, tc.want) {
				t.Fatalf("load: %v, %v; want %v", ck, err, tc.want)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if tc.name != "another session's" && len(aside) != 1 {
				t.Fatalf("damaged file not kept aside: %v", aside)
			}
			_, cl := startContainer(t, Options{CheckpointDir: dir})
			if err := bindKV(t, cl, sess, "checkpoint"); err == nil {
				t.Fatal("bound a session whose checkpoint is damaged")
			}
			if _, err := cl.Invoke(context.Background(), []byte("get a")); err == nil {
				t.Fatal("the container serves after a refused restore")
			}
		})
	}
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 0x5a
	return c
}

func version(b []byte, v uint16) []byte {
	c := append([]byte(nil), b...)
	binary.BigEndian.PutUint16(c[6:], v)
	return c
}

// With durability "log", a container that dies without a checkpoint comes
// back from its log; with a checkpoint, from it and the log tail after it.
func TestLogReplay(t *testing.T) {
	nc := startNATS(t)
	const sess = "00000000000000000000000000000001"
	first, cl := startContainer(t, Options{NATS: nc})
	if err := bindKV(t, cl, sess, "log"); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		invokeOK(t, cl, fmt.Sprintf("set k%d v%d", i, i))
	}
	invokeOK(t, cl, "del k7")
	if _, err := cl.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	invokeOK(t, cl, "set k1 after")
	invokeOK(t, cl, "del k2")
	invokeOK(t, cl, "set k7 back")
	// The container goes without a checkpoint of these last writes.
	first.Close(context.Background())

	_, next := startContainer(t, Options{NATS: nc})
	if err := bindKV(t, next, sess, "log"); err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{"get k1": "after", "get k7": "back", "get k49": "v49"} {
		if got := invokeOK(t, next, in); got != want {
			t.Fatalf("%s = %q, want %q", in, got, want)
		}
	}
	if out, err := next.Invoke(context.Background(), []byte("get k2")); err == nil {
		t.Fatalf("deleted k2 came back: %q", out)
	}
	st, err := next.Status(context.Background())
	if err != nil || st.State == nil || st.State.Keys != 49 {
		t.Fatalf("status after replay: %+v, %v", st.State, err)
	}
}

// With durability "log", a read is answered only once the log holds the
// writes before it, on a secondary as on the primary: a value a client saw
// must not vanish with a primary that crashes before the log acknowledged
// it. The primary's answers wait in Invoke; a secondary's reads reach the
// primary by RPC and must wait there.
func TestReadsWaitForTheLog(t *testing.T) {
	dir := t.TempDir()
	srv := natstest.StartIn(t, dir, -1)
	u, err := url.Parse(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	nc := natstest.Connect(t, srv.ClientURL(), nats.MaxReconnects(-1))
	const sess = "00000000000000000000000000000002"
	_, primary := startContainer(t, Options{NATS: nc})
	if err := bindKV(t, primary, sess, "log"); err != nil {
		t.Fatal(err)
	}
	_, sec := startContainer(t, Options{})
	cfg := fnconfig.Default()
	cfg.Durability = "log"
	if err := sec.Bind(context.Background(), Binding{Function: "kv", Session: sess, Role: RoleSecondary,
		Config: cfg, Module: testwasm.Bytes(t, "c/kv"), Primary: primary.Addr()}); err != nil {
		t.Fatal(err)
	}
	invokeOK(t, primary, "set a old")
	if got := invokeOK(t, sec, "get a"); got != "old" {
		t.Fatalf("secondary read a = %q before the outage", got)
	}

	srv.Shutdown()
	waitUntil(t, "the client to notice", func() bool { return nc.Status() == nats.RECONNECTING })
	// The write is applied, and its append waits in the client's buffer:
	// not acknowledged, so its request is not answered.
	wctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := primary.Invoke(wctx, []byte("set a new")); apierror.KindOf(err) != apierror.Timeout {
		t.Fatalf("write with the log unreachable: %v; want a timeout", err)
	}
	for name, cl := range map[string]*Client{"primary": primary, "secondary": sec} {
		rctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		out, err := cl.Invoke(rctx, []byte("get a"))
		cancel()
		if err == nil {
			t.Errorf("%s answered a = %q while its write is not in the log", name, out)
		}
	}

	// Back on the same port and store, the log takes the buffered append,
	// and both answer the write they waited for.
	natstest.StartIn(t, dir, port)
	for name, cl := range map[string]*Client{"primary": primary, "secondary": sec} {
		if got := invokeOK(t, cl, "get a"); got != "new" {
			t.Errorf("%s read a = %q after the log came back, want new", name, got)
		}
	}
}

// A binding restores only the checkpoints and log of its function's
// incarnation, and those from before incarnations; the node's copy, the
// durable tier's and the log of a deleted function's incarnation are not
// its session's.
func TestRestoreKeepsToItsIncarnation(t *testing.T) {
	nc := startNATS(t)
	dir := t.TempDir()
	const sess = "00000000000000000000000000000003"
	bind := func(cl *Client, session, incarnation string) error {
		cfg := fnconfig.Default()
		cfg.Durability = "log"
		return cl.Bind(context.Background(), Binding{Function: "kv", Session: session, Role: RolePrimary,
			Config: cfg, Module: testwasm.Bytes(t, "c/kv"), Restore: true, Incarnation: incarnation})
	}
	start := func(session, incarnation string) (*Container, *Client) {
		c, cl := startContainer(t, Options{CheckpointDir: dir, NATS: nc})
		if err := bind(cl, session, incarnation); err != nil {
			t.Fatalf("bind %s: %v", incarnation, err)
		}
		return c, cl
	}
	old, cl := start(sess, "0a")
	invokeOK(t, cl, "set a checkpointed")
	if _, err := cl.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	invokeOK(t, cl, "set b logged")
	old.Close(context.Background())

	_, other := start(sess, "0b")
	for _, key := range []string{"a", "b"} {
		if out, err := other.Invoke(context.Background(), []byte("get "+key)); err == nil {
			t.Errorf("incarnation 0b restored %s = %q from incarnation 0a", key, out)
		}
	}
	_, same := start(sess, "0a")
	if got := invokeOK(t, same, "get a"); got != "checkpointed" {
		t.Errorf("incarnation 0a restored a = %q", got)
	}
	if got := invokeOK(t, same, "get b"); got != "logged" {
		t.Errorf("incarnation 0a replayed b = %q", got)
	}

	// A checkpoint from before incarnations restores into any.
	const legacy = "00000000000000000000000000000004"
	first, cl := start(legacy, "")
	invokeOK(t, cl, "set x 1")
	if _, err := cl.Checkpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	first.Close(context.Background())
	if _, next := start(legacy, "0c"); invokeOK(t, next, "get x") != "1" {
		t.Error("a checkpoint without an incarnation did not restore")
	}

	// An incarnation becomes a subject token: only hex is taken.
	_, bad := startContainer(t, Options{NATS: nc})
	if err := bind(bad, sess, "0a.>"); apierror.KindOf(err) != apierror.BadRequest {
		t.Errorf("bind with incarnation %q: %v; want a bad request", "0a.>", err)
	}
}

// Durability "log" without NATS is refused at bind, not at the first write.
func TestLogDurabilityNeedsNATS(t *testing.T) {
	_, cl := startContainer(t, Options{})
	if err := bindKV(t, cl, "default", "log"); err == nil {
		t.Fatal("bound durability log without NATS")
	}
}

// BenchmarkRestore1MiB is the restore step of a ColdSession with a 1 MiB
// value from the node's copy: read, verify and decode the checkpoint, load
// it into a new store.
func BenchmarkRestore1MiB(b *testing.B) {
	dir := b.TempDir()
	cs := &checkpoints{dir: dir, log: hclog.NewNullLogger()}
	ck := &checkpoint.Checkpoint{Function: "kv", Session: "default", Seq: 1, Created: time.Now(),
		Entries: []checkpoint.Entry{{Key: "big", Value: make([]byte, 1<<20), Stamp: 1}}}
	if _, err := cs.save(context.Background(), ck); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, _, err := cs.load(context.Background(), "kv", "default", "", 1)
		if err != nil {
			b.Fatal(err)
		}
		if err := state.New(state.Options{}).Restore(got.Entries, got.Seq); err != nil {
			b.Fatal(err)
		}
	}
}

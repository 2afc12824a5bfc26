package controlplane_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/controlplane/cptest"
	"github.com/xfaas/xfaas/internal/natstest"
	"github.com/xfaas/xfaas/proxy"
)

const (
	fillKeys = 10000
	fillSize = 100
	bigValue = 1 << 20
)

// fill writes 10,000 keys and a 1 MiB value into a session.
func fill(t *testing.T, e *cptest.Env, fn, label string) controlplane.SessionInfo {
	t.Helper()
	if got := e.MustInvoke(fn, label, fmt.Sprintf("f k %d %d", fillSize, fillKeys)).Body; got != strconv.Itoa(fillKeys) {
		t.Fatalf("fill wrote %s keys", got)
	}
	e.MustInvoke(fn, label, fmt.Sprintf("w big %d 1", bigValue))
	return session(t, e, fn, e.SessionID(fn, label))
}

// checkFill checks that every key fill wrote is there, byte for byte.
func checkFill(t *testing.T, e *cptest.Env, fn, label string) {
	t.Helper()
	if got := e.MustInvoke(fn, label, fmt.Sprintf("c k %d %d", fillSize, fillKeys)).Body; got != strconv.Itoa(fillKeys) {
		t.Fatalf("%s of %d keys came back intact", got, fillKeys)
	}
	if got := e.MustInvoke(fn, label, "r big 1").Body; got != "1" {
		t.Fatalf("the 1 MiB value did not come back: %s", got)
	}
}

func session(t *testing.T, e *cptest.Env, fn, id string) controlplane.SessionInfo {
	t.Helper()
	var list []controlplane.SessionInfo
	if status := e.GetJSON("/v1/functions/"+fn+"/sessions", &list); status != http.StatusOK {
		t.Fatalf("sessions: %d", status)
	}
	for _, si := range list {
		if si.ID == id {
			return si
		}
	}
	return controlplane.SessionInfo{}
}

func call(t *testing.T, e *cptest.Env, method, path string) cptest.Invocation {
	t.Helper()
	req, _ := http.NewRequest(method, e.URL+path, nil)
	return e.Do(req)
}

// An idle session is checkpointed after keep_alive_s and its containers
// released; the next request restores it with every key intact.
func TestKeepAliveCheckpointsAndRestores(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Pool: 1})
	e.Deploy("store", "test/stateloop", `{"keep_alive_s": 1}`)
	before := fill(t, e, "store", "alice")
	if before.Status != "active" || before.StateKeys != fillKeys+1 {
		t.Fatalf("before: %+v", before)
	}
	id := e.SessionID("store", "alice")
	var after controlplane.SessionInfo
	waitFor(t, "idle session checkpointed and released", func() bool {
		after = session(t, e, "store", id)
		regs, _ := e.Reg.List(t.Context(), "store")
		return after.Status == "checkpointed" && len(regs) == 0
	})
	if after.StateKeys != before.StateKeys || after.StateBytes != before.StateBytes || after.Primary != nil {
		t.Fatalf("checkpointed session %+v, was %+v", after, before)
	}
	checkFill(t, e, "store", "alice")
	if again := session(t, e, "store", id); again.Status != "active" || again.StateBytes != before.StateBytes {
		t.Fatalf("restored session %+v, was %+v", again, before)
	}
}

// Evict checkpoints at once; the session then restores on another node,
// which has no copy of the checkpoint: from the durable tier.
func TestEvictAndRestoreOnAnotherNode(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Nodes: 2, Pool: 1})
	e.Deploy("store", "test/stateloop", "")
	fill(t, e, "store", "bob")
	first := e.MustInvoke("store", "bob", "r big 1")
	id := e.SessionID("store", "bob")
	if r := call(t, e, http.MethodDelete, "/v1/functions/store/sessions/"+id); r.Status != http.StatusOK {
		t.Fatalf("evict: %+v", r)
	}
	if si := session(t, e, "store", id); si.Status != "checkpointed" {
		t.Fatalf("after evict: %+v", si)
	}
	local, _ := filepath.Glob(filepath.Join(e.Dir, "nodes", "*", "checkpoints", "store", id+".ckpt"))
	if len(local) != 1 || !strings.Contains(local[0], first.Node) {
		t.Fatalf("node copies of the checkpoint: %v; want one, on %s", local, first.Node)
	}
	// Another session takes the least-loaded node, which is bob's old one
	// (both are empty, ties go to the first): bob's next primary goes to
	// the other node.
	if other := e.MustInvoke("store", "carol", "w x 1 1"); other.Node != first.Node {
		t.Fatalf("carol went to %s; the test needs %s taken", other.Node, first.Node)
	}
	checkFill(t, e, "store", "bob")
	moved := e.MustInvoke("store", "bob", "r big 1")
	if moved.Node == first.Node {
		t.Fatalf("bob restored on %s again; want the other node", moved.Node)
	}
	// Evicting a session that is not active is a 404.
	if r := call(t, e, http.MethodDelete, "/v1/functions/store/sessions/0123456789abcdef0123456789abcdef"); r.Status != http.StatusNotFound {
		t.Fatalf("evict of an unknown session: %+v", r)
	}
}

// A corrupt checkpoint is an error the client sees, never an empty session,
// and the bad file is kept aside.
func TestCorruptCheckpointIsNeverAnEmptySession(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Pool: 1})
	e.Deploy("counter", "c/counter", "")
	e.MustInvoke("counter", "carol", "incr 5")
	id := e.SessionID("counter", "carol")
	// Checkpoint while active: the session keeps serving.
	if r := call(t, e, http.MethodPost, "/v1/functions/counter/sessions/"+id+"/checkpoint"); r.Status != http.StatusOK {
		t.Fatalf("checkpoint: %+v", r)
	}
	if got := e.MustInvoke("counter", "carol", "incr").Body; got != "6" {
		t.Fatalf("after a checkpoint: %s", got)
	}
	files := evictCorrupted(t, e, "counter", "carol")
	for range 2 { // and again: the damage is not forgotten after the first refusal
		r := e.Invoke("counter", "carol", "get")
		if r.Status != http.StatusInternalServerError || r.Kind != "internal" {
			t.Fatalf("restore of a corrupt checkpoint answered %+v", r)
		}
	}
	aside, _ := filepath.Glob(filepath.Join(e.Dir, "nodes", "*", "checkpoints", "counter", id+".ckpt.corrupt-*"))
	if len(files) > 0 && len(aside) == 0 {
		t.Fatalf("corrupt node copy not kept aside")
	}
}

// A primary whose restore fails (its bind fails after it won the session's
// claim) gives the claim back: the registry does not name a container that
// was released, which every later ColdSession would first try to reach.
func TestFailedRestoreLeavesNoClaim(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Pool: 1})
	e.Deploy("counter", "c/counter", "")
	e.MustInvoke("counter", "carol", "incr 5")
	evictCorrupted(t, e, "counter", "carol")
	if r := e.Invoke("counter", "carol", "get"); r.Status != http.StatusInternalServerError {
		t.Fatalf("restore of a corrupt checkpoint answered %+v", r)
	}
	if owner, err := e.Reg.Primary(t.Context(), "counter", e.SessionID("counter", "carol")); err == nil {
		t.Fatalf("the registry names released container %s as the session's primary", owner.Container)
	}
}

// evictCorrupted evicts label's session of fn and corrupts its checkpoint:
// the durable copy is replaced with garbage and the node copies, which it
// returns, get a flipped byte.
func evictCorrupted(t *testing.T, e *cptest.Env, fn, label string) []string {
	t.Helper()
	id := e.SessionID(fn, label)
	if r := call(t, e, http.MethodDelete, "/v1/functions/"+fn+"/sessions/"+id); r.Status != http.StatusOK {
		t.Fatalf("evict: %+v", r)
	}
	putObject(t, natstest.Connect(t, e.NATS), fn+"/"+id, []byte("XFCKPT garbage"))
	files, _ := filepath.Glob(filepath.Join(e.Dir, "nodes", "*", "checkpoints", fn, id+".ckpt"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		data[len(data)/2] ^= 0xff
		os.WriteFile(f, data, 0o600)
	}
	return files
}

// A new version of a function keeps the state of live sessions.
func TestUpgradeKeepsState(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Pool: 1})
	v1 := e.Deploy("counter", "c/counter", `{"max_workers": 2}`)
	first := e.MustInvoke("counter", "dave", "incr 41")
	v2 := e.Deploy("counter", "go/counter", `{"max_workers": 3}`)
	if v2.Digest == v1.Digest {
		t.Fatal("the upgrade must change the module")
	}
	var next cptest.Invocation
	waitFor(t, "upgraded session", func() bool {
		next = e.MustInvoke("counter", "dave", "get")
		return next.Container != first.Container
	})
	if next.Body != "41" {
		t.Fatalf("after the upgrade: %q, want 41", next.Body)
	}
	if got := e.MustInvoke("counter", "dave", "incr").Body; got != "42" {
		t.Fatalf("incr after the upgrade: %q", got)
	}
}

// With durability "log", killing the primary with kill -9 during a write
// load loses no acknowledged write.
func TestLogDurabilitySurvivesKill9(t *testing.T) {
	e := cptest.Start(t, cptest.Options{Pool: 2})
	e.Deploy("kv", "c/kv", `{"durability": "log", "max_workers": 4}`)
	first := e.MustInvoke("kv", "erin", "set warmup 1")
	var acked sync.Map
	var nAcked, nFailed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				if r := e.Invoke("kv", "erin", "set "+key+" "+key); r.Status == http.StatusOK {
					acked.Store(key, true)
					nAcked.Add(1)
				} else {
					nFailed.Add(1)
				}
			}
		})
	}
	waitFor(t, "writes under way", func() bool { return nAcked.Load() > 200 })
	e.Kill(first.Container)
	waitFor(t, "writes after the kill", func() bool {
		r := e.Invoke("kv", "erin", "get warmup")
		return r.Status == http.StatusOK && r.Container != first.Container
	})
	mark := nAcked.Load()
	waitFor(t, "more writes after the restore", func() bool { return nAcked.Load() > mark+100 })
	close(stop)
	wg.Wait()
	lost := 0
	acked.Range(func(k, _ any) bool {
		if r := e.Invoke("kv", "erin", "get "+k.(string)); r.Status != http.StatusOK || r.Body != k.(string) {
			lost++
		}
		return true
	})
	t.Logf("%d acknowledged writes, %d failed around the kill", nAcked.Load(), nFailed.Load())
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, nAcked.Load())
	}
}

// putObject replaces an object of the durable checkpoint tier.
func putObject(t *testing.T, nc *nats.Conn, name string, data []byte) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obj, err := js.ObjectStore(ctx, proxy.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obj.PutBytes(ctx, name, data); err != nil {
		t.Fatal(err)
	}
}

// A function deleted and created again under its name starts its sessions
// empty, even when a checkpoint of the old function lands after the
// delete removed its checkpoints: a retire still under way on some
// replica, or a node's copy. Here the late checkpoint is the old one's
// own object, put back after the delete as that retire would write it.
func TestLateCheckpointOfADeletedFunctionIsNotRestored(t *testing.T) {
	e := cptest.Start(t, cptest.Options{})
	e.Deploy("counter", "c/counter", "")
	for range 3 {
		e.MustInvoke("counter", "alice", "incr")
	}
	id := e.SessionID("counter", "alice")
	if r := call(t, e, http.MethodDelete, "/v1/functions/counter/sessions/"+id); r.Status != http.StatusOK {
		t.Fatalf("evict: %+v", r)
	}
	js, err := jetstream.New(natstest.Connect(t, e.NATS))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	obj, err := js.ObjectStore(ctx, proxy.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	name := proxy.CheckpointName("counter", id)
	info, err := obj.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	late, err := obj.GetBytes(ctx, name)
	if err != nil {
		t.Fatal(err)
	}

	if r := call(t, e, http.MethodDelete, "/v1/functions/counter"); r.Status != http.StatusOK {
		t.Fatalf("delete: %+v", r)
	}
	if _, err := obj.Put(ctx, info.ObjectMeta, bytes.NewReader(late)); err != nil {
		t.Fatal(err)
	}
	e.Deploy("counter", "c/counter", "")
	if got := e.MustInvoke("counter", "alice", "incr").Body; got != "1" {
		t.Fatalf("alice's count in the new function = %s; want 1, not the deleted function's", got)
	}
}

package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/testwasm"
	"github.com/xfaas/xfaas/proxy/state"
)

// step is one request of a script and what it must answer. A failing step
// checks the message only when out is set: the C and Go examples word some
// errors differently.
type step struct {
	in    string
	out   string
	fails bool
}

// exampleScripts drive each SDK example, in C and in Go, through the same
// requests on the real runtime.
var exampleScripts = map[string][]step{
	"hello": {
		{in: "", out: "hello"},
		{in: "anything", out: "hello"},
	},
	"counter": {
		{in: "get", out: "0"},
		{in: "", out: "1"},
		{in: "incr\n", out: "2"},
		{in: "incr 40", out: "42"},
		{in: "incr -50", out: "-8"},
		{in: " get ", out: "-8"},
		{in: "incr 9223372036854775807", out: "9223372036854775799"},
		{in: "incr 9", out: "-9223372036854775808"}, // wraps around
		{in: "get", out: "-9223372036854775808"},
		{in: "incr 9223372036854775808", out: "counter: bad number", fails: true},
		{in: "incr x", out: "counter: bad number", fails: true},
		{in: "get 1", out: "usage: incr [N] | get", fails: true},
		{in: "decr", out: "usage: incr [N] | get", fails: true},
	},
	"kv": {
		{in: "get a", out: "not found", fails: true},
		{in: "set a hello  world ", out: "ok"},
		{in: "get a", out: "hello  world"},
		{in: "set b", out: "ok"},
		{in: "get b", out: ""},
		{in: "del a", out: "ok"},
		{in: "del a", out: "ok"},
		{in: "get a", out: "not found", fails: true},
		{in: "set big " + strings.Repeat("v", 100_000), out: "ok"},
		{in: "get big", out: strings.Repeat("v", 100_000)},
		{in: "get a b", out: "usage: get K | set K V | del K", fails: true},
		{in: "set", out: "usage: get K | set K V | del K", fails: true},
	},
	"ro": {
		{in: "len", out: "0"},
		{in: "value", out: ""},
		{in: "init 5", out: "ok"},
		{in: "len", out: "5"},
		{in: "value", out: "xxxxx"},
		{in: "init 4194304", out: "ok"},
		{in: "", out: "4194304"},
		{in: "value", out: strings.Repeat("x", 4<<20)},
		{in: "init x", fails: true},
	},
	"rmw": {
		{in: "", out: "1"},
		{in: "", out: "2"},
		{in: "init 3", out: "ok"},
		{in: "", out: "1"},
		{in: "init 1048576", out: "ok"},
		{in: "", out: "1"},
		{in: "", out: "2"},
		{in: "init -1", fails: true},
	},
	"rmw_linear": {
		{in: "", out: "1"},
		{in: "", out: "2"},
		{in: "init 1048576", out: "ok"},
		{in: "", out: "1"},
		{in: "", out: "2"},
		{in: "init", fails: true},
	},
}

// The C and Go examples answer the same script alike through the real host
// calls, under both lock schemes, and leave the same state behind.
func TestExamplesInCAndGo(t *testing.T) {
	for example, script := range exampleScripts {
		t.Run(example, func(t *testing.T) {
			for _, scheme := range []state.Scheme{state.Pessimistic, state.Optimistic} {
				c := runScript(t, "c/"+example, scheme, script)
				goState := runScript(t, "go/"+example, scheme, script)
				if !maps.EqualFunc(c, goState, bytes.Equal) {
					t.Errorf("%v: the C and Go examples left different states: %d and %d keys", scheme, len(c), len(goState))
				}
			}
		})
	}
}

func runScript(t *testing.T, guest string, scheme state.Scheme, steps []step) map[string][]byte {
	f := newFixture(t, guest, fixtureOptions{scheme: scheme, maxWorkers: 2})
	for _, s := range steps {
		out, err := f.invoke(s.in)
		if s.fails {
			if apierror.KindOf(err) != apierror.FunctionError || (s.out != "" && !strings.Contains(err.Error(), s.out)) {
				t.Errorf("%s %.40q: %.60q, %v; want a function error %q", guest, s.in, out, err, s.out)
			}
			continue
		}
		if err != nil || out != s.out {
			t.Errorf("%s %.40q: %.60q, %v; want %.60q", guest, s.in, out, err, s.out)
		}
	}
	return f.state()
}

// The read-modify-write examples keep a little-endian counter in the first
// 8 bytes and leave the rest of the value alone.
func TestRMWValueLayout(t *testing.T) {
	for _, guest := range []string{"c/rmw", "go/rmw", "c/rmw_linear", "go/rmw_linear"} {
		f := newFixture(t, guest, fixtureOptions{})
		f.put("rmw", append(binary.LittleEndian.AppendUint64(nil, 41), "tail"...))
		if out := f.mustInvoke(""); out != "42" {
			t.Errorf("%s: %q; want 42", guest, out)
		}
		want := append(binary.LittleEndian.AppendUint64(nil, 42), "tail"...)
		if got := f.state()["rmw"]; !bytes.Equal(got, want) {
			t.Errorf("%s: value %q; want %q", guest, got, want)
		}
	}
}

func TestInvalidModulesAreRejectedWithTheReason(t *testing.T) {
	ctx := context.Background()
	e, err := NewEngine(ctx, EngineOptions{CacheDir: compileCache})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	cases := map[string]string{
		"test/garbage":   "invalid module",
		"test/noexport":  `no exported function "handle"`,
		"test/badimport": "unknown import xfaas.nonexistent",
		// WASI is checked at deploy too, not at the first worker's start.
		"test/badwasi":    "unknown import wasi_snapshot_preview1.nonexistent",
		"test/badwasisig": "import wasi_snapshot_preview1.fd_write has the wrong signature",
		// Memory is checked against the engine's limit (the worker's).
		"test/bigmem": "over limit of 2048 pages (128 Mi)",
	}
	for guest, want := range cases {
		_, err := e.Compile(ctx, testwasm.Bytes(t, guest))
		if apierror.KindOf(err) != apierror.BadRequest || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v; want a bad request containing %q", guest, err, want)
		}
	}
	for _, bad := range [][]byte{nil, []byte("\x00asm"), []byte("not wasm at all")} {
		if _, err := e.Compile(ctx, bad); apierror.KindOf(err) != apierror.BadRequest {
			t.Errorf("compile %q: %v; want a bad request", bad, err)
		}
	}
	// Every other guest validates.
	for _, guest := range testwasm.Names() {
		if _, bad := cases[guest]; bad {
			continue
		}
		if _, err := e.Compile(ctx, testwasm.Bytes(t, guest)); err != nil {
			t.Errorf("%s: %v", guest, err)
		}
	}
}

// A trap fails the request with the trap message, discards the worker and
// keeps the state: the next request runs on a fresh worker.
func TestTrapDiscardsTheWorker(t *testing.T) {
	f := newFixture(t, "test/trap", fixtureOptions{maxWorkers: 1})
	for range 3 {
		_, err := f.invoke("")
		if apierror.KindOf(err) != apierror.Trap || !strings.Contains(err.Error(), "unreachable") {
			t.Fatalf("trap: %v", err)
		}
	}
	if st := f.pool.Status(); st.Forks != 3 || st.Discards != 3 || st.Live != 0 {
		t.Fatalf("after 3 traps: %+v; want 3 forks, 3 discards, none live", st)
	}
}

// A request whose caller gave up before it got its worker does not run:
// the runtime would close the instance at the call's start, and the worker
// would be discarded and forked again for nothing.
func TestRequestGivenUpBeforeItsWorkerKeepsTheWorker(t *testing.T) {
	f := newFixture(t, "c/hello", fixtureOptions{maxWorkers: 1})
	f.mustInvoke("")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.pool.Invoke(ctx, nil); apierror.KindOf(err) != apierror.Unavailable {
		t.Fatalf("invoke after the caller gave up: %v; want unavailable", err)
	}
	f.mustInvoke("")
	if st := f.pool.Status(); st.Forks != 1 || st.Discards != 0 {
		t.Fatalf("after a request given up: %+v; want the one worker kept", st)
	}
}

func TestInfiniteLoopIsStoppedAtTheDeadline(t *testing.T) {
	f := newFixture(t, "test/loop", fixtureOptions{maxWorkers: 1, timeout: 100 * time.Millisecond})
	start := time.Now()
	_, err := f.invoke("")
	if apierror.KindOf(err) != apierror.Timeout {
		t.Fatalf("loop: %v; want a timeout", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a 100ms deadline took %v to stop the guest", took)
	}
	if st := f.pool.Status(); st.Discards != 1 || st.Live != 0 {
		t.Fatalf("timed-out worker kept: %+v", st)
	}
}

// A request that times out inside a critical section applies nothing of it
// and leaves no lock behind.
func TestTimeoutInsideASectionReleasesTheLock(t *testing.T) {
	f := newFixture(t, "test/lockpair", fixtureOptions{maxWorkers: 2, timeout: 150 * time.Millisecond})
	f.put("a", []byte("before"))
	if _, err := f.invoke("a b 100000000000"); apierror.KindOf(err) != apierror.Timeout {
		t.Fatalf("long section: %v; want a timeout", err)
	}
	out := f.mustInvoke("a b 0") // would wait 5s for a leaked lock, past its 150ms deadline
	if out != "6 -1 0 0" {
		t.Fatalf("second request: %q; want the lock free and the old value (6 bytes) intact", out)
	}
}

func TestMemoryBombHitsTheLimitAndTraps(t *testing.T) {
	f := newFixture(t, "test/membomb", fixtureOptions{maxWorkers: 1, memoryMB: 32})
	_, err := f.invoke("")
	if apierror.KindOf(err) != apierror.Trap {
		t.Fatalf("memory bomb: %v; want a trap", err)
	}
	if f.pool.Status().Live != 0 {
		t.Fatal("the bombed worker was kept")
	}
}

func TestOversizedOutput(t *testing.T) {
	f := newFixture(t, "test/bigoutput", fixtureOptions{maxWorkers: 1})
	if out := f.mustInvoke("1048576"); len(out) != 1<<20 {
		t.Fatalf("1 MiB output came back as %d bytes", len(out))
	}
	_, err := f.invoke(strconv.Itoa(7 << 20))
	if apierror.KindOf(err) != apierror.TooLarge || !strings.Contains(err.Error(), "exceeds") {
		t.Fatalf("7 MiB output: %v; want too large", err)
	}
	if _, err := f.pool.Invoke(context.Background(), make([]byte, 7<<20)); apierror.KindOf(err) != apierror.TooLarge {
		t.Fatalf("7 MiB input: %v; want too large", err)
	}
}

func TestBadPointersAreInvalidNotFatal(t *testing.T) {
	f := newFixture(t, "test/badptr", fixtureOptions{maxWorkers: 1})
	for _, in := range []string{"read", "key", "write", "delete", "output", "input", "wrap", "mode",
		"read neg", "key neg", "write neg", "delete neg", "output neg", "input neg"} {
		if out := f.mustInvoke(in); out != "-7" {
			t.Errorf("badptr %s: %s; want -7 (invalid)", in, out)
		}
	}
	if out := f.mustInvoke("arg"); out != "-1" {
		t.Errorf("badptr arg: %s; want -1 (absent)", out)
	}
	if st := f.pool.Status(); st.Forks != 1 {
		t.Errorf("bad pointers cost %d workers; want the one worker to survive them all", st.Forks)
	}
}

func TestKeyAndValueLimits(t *testing.T) {
	f := newFixture(t, "test/bigkey", fixtureOptions{maxWorkers: 1})
	if out := f.mustInvoke("1024"); out != "0" {
		t.Errorf("1 KiB key: %s; want 0", out)
	}
	if out := f.mustInvoke("1025"); out != "-5" {
		t.Errorf("1025-byte key: %s; want -5 (key too large)", out)
	}
	g := newFixture(t, "c/kv", fixtureOptions{stateOpts: state.Options{MaxValueBytes: 1000}})
	if _, err := g.invoke("set k " + strings.Repeat("v", 1001)); apierror.KindOf(err) != apierror.FunctionError {
		t.Errorf("value past the limit: %v; want the function's error", err)
	}
	if _, ok := g.state()["k"]; ok {
		t.Error("an oversized value was stored")
	}
}

// A request that returns with a section open applies nothing of it and
// releases the lock at once.
func TestOpenSectionIsReleasedAtReturn(t *testing.T) {
	f := newFixture(t, "test/lockhold", fixtureOptions{maxWorkers: 2, stateOpts: state.Options{LockWait: 10 * time.Second}})
	for range 3 {
		start := time.Now()
		if out := f.mustInvoke("k"); out != "-1" {
			t.Fatalf("lockhold: %s; want -1 (absent)", out)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("the lock of an earlier request was held: took %v", took)
		}
	}
	if n := len(f.state()); n != 0 {
		t.Fatalf("an aborted section left %d keys", n)
	}
}

// Two requests locking two keys in opposite orders deadlock: the host fails
// one (-3 deadlock, or -4 lock timeout; all its sections are aborted), and
// the other commits both keys.
func TestDeadlockEndsOneRequest(t *testing.T) {
	f := newFixture(t, "test/lockpair", fixtureOptions{maxWorkers: 2})
	var wg sync.WaitGroup
	outs := make([]string, 2)
	for i, in := range []string{"a b 20000000", "b a 20000000"} {
		wg.Go(func() { outs[i] = f.mustInvoke(in) })
	}
	wg.Wait()
	won, lost := 0, 0
	for _, out := range outs {
		codes := strings.Fields(out)
		switch {
		case len(codes) != 4:
			t.Errorf("unexpected output %q", out)
		case codes[1] == "-3" || codes[1] == "-4":
			lost++
		case codes[2] == "0" && codes[3] == "0":
			won++
		default:
			t.Errorf("unexpected statuses %q", out)
		}
	}
	if won != 1 || lost != 1 {
		t.Fatalf("outputs %q; want one winner and one deadlock victim", outs)
	}
}

func TestGuestOutputIsLogged(t *testing.T) {
	f := newFixture(t, "test/wasiclock", fixtureOptions{maxWorkers: 1})
	if out := f.mustInvoke(""); out != "ok" {
		t.Fatalf("wasiclock: %q", out)
	}
	waitUntil(t, "guest stdout and stderr in the log", func() bool {
		return f.logs.contains("session=sess") && f.logs.contains("[WARN]") && f.logs.contains("[INFO]")
	})
}

// Warm workers are reused: many sequential requests fork one worker.
func TestWarmWorkersAreReused(t *testing.T) {
	f := newFixture(t, "c/counter", fixtureOptions{maxWorkers: 4})
	for range 50 {
		f.mustInvoke("incr")
	}
	if st := f.pool.Status(); st.Forks != 1 || st.Requests != 50 {
		t.Fatalf("50 sequential requests: %+v; want 1 fork", st)
	}
}

// Concurrency beyond max_workers queues; beyond the queue it is refused
// with 429; no more than max_workers workers ever exist.
func TestMaxWorkersAndTheBoundedQueue(t *testing.T) {
	f := newFixture(t, "test/spin", fixtureOptions{maxWorkers: 2, maxQueue: 2})
	var wg sync.WaitGroup
	var mu sync.Mutex
	kinds := map[apierror.Kind]int{}
	for range 8 {
		wg.Go(func() {
			_, err := f.invoke("200")
			kind := apierror.Kind("ok")
			if err != nil {
				kind = apierror.KindOf(err)
			}
			mu.Lock()
			kinds[kind]++
			mu.Unlock()
		})
	}
	wg.Wait()
	st := f.pool.Status()
	if st.Forks > 2 {
		t.Errorf("%d forks; max_workers is 2", st.Forks)
	}
	if kinds["ok"] < 4 || kinds[apierror.Overloaded] == 0 || kinds["ok"]+kinds[apierror.Overloaded] != 8 {
		t.Errorf("results %v; want at least 4 served (2 running + 2 queued) and the rest overloaded", kinds)
	}
	var ae *apierror.Error
	f2 := newFixture(t, "test/spin", fixtureOptions{maxWorkers: 1, maxQueue: 1})
	go f2.invoke("300")
	waitUntil(t, "first request running", func() bool { return f2.pool.Status().InFlight == 1 })
	go f2.invoke("1")
	waitUntil(t, "second request queued", func() bool { return f2.pool.Status().Queued == 1 })
	if _, err := f2.invoke("1"); !errors.As(err, &ae) || ae.Kind != apierror.Overloaded || ae.RetryAfter < 1 {
		t.Fatalf("third request: %v; want overloaded with Retry-After", err)
	}
}

// A request that waits in the queue past its deadline times out and takes
// no worker.
func TestQueuedRequestTimesOut(t *testing.T) {
	f := newFixture(t, "test/spin", fixtureOptions{maxWorkers: 1, timeout: 100 * time.Millisecond})
	go f.invoke("80")
	waitUntil(t, "first request running", func() bool { return f.pool.Status().InFlight == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := f.pool.Invoke(ctx, []byte("1")); apierror.KindOf(err) != apierror.Timeout {
		t.Fatalf("queued past its deadline: %v; want a timeout", err)
	}
	waitUntil(t, "queue drained", func() bool { st := f.pool.Status(); return st.Queued == 0 && st.InFlight == 0 })
	if out := f.mustInvoke("1"); out == "" {
		t.Fatal("the pool is stuck after a queued request gave up")
	}
}

func TestIdleWorkersAreTrimmed(t *testing.T) {
	f := newFixture(t, "test/spin", fixtureOptions{maxWorkers: 4, idleTimeout: 100 * time.Millisecond})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() { f.mustInvoke("50") })
	}
	wg.Wait()
	if live := f.pool.Status().Live; live < 2 {
		t.Fatalf("4 concurrent requests left %d live workers", live)
	}
	waitUntil(t, "idle workers trimmed to one", func() bool { return f.pool.Status().Live == 1 })
	if st := f.pool.Status(); st.Trims == 0 {
		t.Fatalf("no trims counted: %+v", st)
	}
}

package main

import (
	"errors"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xfaas/xfaas/controlplane"
	"github.com/xfaas/xfaas/internal/hint"
	"github.com/xfaas/xfaas/internal/linearcheck"
	"github.com/xfaas/xfaas/internal/sched"
	"github.com/xfaas/xfaas/internal/testwasm"
)

// devPlatform is a running `xfaas dev` process.
type devPlatform struct {
	*process
	api      string
	data     string
	keystore string
	banner   string
}

// startDev runs `xfaas dev` on a free port with its own data directory and
// keystore, and waits for its banner.
func startDev(t *testing.T, args ...string) *devPlatform {
	t.Helper()
	dir := t.TempDir()
	return startDevOn(t, filepath.Join(dir, "data"), filepath.Join(dir, "keys.json"), "127.0.0.1:0", args...)
}

// startDevOn runs `xfaas dev` on listen with the given data directory and
// keystore, and waits for its whole banner.
func startDevOn(t *testing.T, data, keystore, listen string, args ...string) *devPlatform {
	t.Helper()
	d := &devPlatform{data: data, keystore: keystore}
	cmd := append([]string{"dev", "--listen", listen, "--data", d.data}, args...)
	d.process = startEnv(t, []string{hint.KeystoreEnv + "=" + d.keystore}, cmd...)
	deadline := time.After(60 * time.Second)
	lines := make(chan string)
	go func() {
		for d.stdout.Scan() {
			lines <- d.stdout.Text()
		}
		close(lines)
	}()
	var banner strings.Builder
	for !strings.Contains(banner.String(), "Ctrl-C stops everything.") {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("xfaas dev exited before serving; stderr:\n%s", d.stderr)
			}
			banner.WriteString(line + "\n")
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "API" {
				d.api = f[1]
			}
		case <-deadline:
			t.Fatalf("no banner within 60s; stdout so far:\n%s\nstderr:\n%s", banner.String(), d.stderr)
		}
	}
	if d.api == "" {
		t.Fatalf("banner without the API's address:\n%s", banner.String())
	}
	d.banner = banner.String()
	go func() {
		for range lines {
		}
	}()
	return d
}

// stop stops xfaas dev as Ctrl-C would and waits for it to exit.
func (d *devPlatform) stop(t *testing.T) {
	t.Helper()
	if err := d.signal(t, syscall.SIGINT, 60*time.Second); err != nil {
		t.Fatalf("exit after Ctrl-C: %v; stderr:\n%s", err, d.stderr)
	}
}

// token seals label for fn with the keyset `xfaas dev` put in the keystore.
func (d *devPlatform) token(t *testing.T, fn, label string) string {
	t.Helper()
	ks, ok, err := hint.NewKeystore(d.keystore).Get(d.api, fn)
	if err != nil || !ok {
		t.Fatalf("no keyset for %s in %s: %v", fn, d.keystore, err)
	}
	token, err := ks.Seal(fn, label)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

type answer struct {
	status    int
	body      string
	container string
	role      string
	node      string
}

func (d *devPlatform) invoke(t *testing.T, fn, token, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.api+"/v1/functions/"+fn+"/invoke", strings.NewReader(body))
	if token != "" {
		req.Header.Set(hint.Header, token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(data), container: resp.Header.Get(controlplane.HeaderContainer),
		role: resp.Header.Get(controlplane.HeaderRole), node: resp.Header.Get(controlplane.HeaderNode)}
}

// deploy deploys a test guest with a config through the API.
func (d *devPlatform) deploy(t *testing.T, fn, guest, config string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile("module", "module.wasm")
	w.Write(testwasm.Bytes(t, guest))
	mw.WriteField("config", config)
	mw.Close()
	req, _ := http.NewRequest(http.MethodPut, d.api+"/v1/functions/"+fn, &buf)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("deploy %s: %s %s", fn, resp.Status, body)
	}
}

// One session's requests reach one primary at low load, and different
// sessions spread across the simulated nodes.
func TestDevStickinessAndSpread(t *testing.T) {
	d := startDev(t)
	where := map[string]string{}
	nodes := map[string]bool{}
	for round := 1; round <= 3; round++ {
		for _, label := range []string{"alice", "bob", "carol", "dave"} {
			a := d.invoke(t, "counter", d.token(t, "counter", label), "incr")
			if a.status != http.StatusOK || a.body != strconv.Itoa(round) {
				t.Fatalf("%s round %d: %+v", label, round, a)
			}
			if prev := where[label]; prev != "" && prev != a.container {
				t.Fatalf("%s moved from %s to %s at low load", label, prev, a.container)
			}
			where[label] = a.container
			nodes[a.node] = true
		}
	}
	if len(nodes) < 2 {
		t.Fatalf("four sessions all on %v", nodes)
	}
}

// 100 concurrent clients increment one session's counter while it scales
// out to secondaries: the count is exact and the history linearizable.
func TestDev100ClientsScaleOutLinearizably(t *testing.T) {
	d := startDev(t, "--pool", "3")
	token := d.token(t, "counter", "alice")
	if a := d.invoke(t, "counter", token, "get"); a.status != http.StatusOK {
		t.Fatalf("warm-up: %+v", a)
	}
	h := linearcheck.NewHistory()
	var wg sync.WaitGroup
	var mu sync.Mutex
	roles := map[string]int{}
	const clients, each = 100, 10
	for c := range clients {
		wg.Go(func() {
			for range each {
				call := h.Now()
				a := d.invoke(t, "counter", token, "incr")
				ret := h.Now()
				if a.status != http.StatusOK {
					t.Errorf("client %d: %+v", c, a)
					return
				}
				h.Add(c, linearcheck.Input{Kind: linearcheck.Incr, Key: "count"}, call, linearcheck.Output{Value: a.body}, ret)
				mu.Lock()
				roles[a.role]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got := d.invoke(t, "counter", token, "get").body; got != strconv.Itoa(clients*each) {
		t.Fatalf("count %s after %d increments", got, clients*each)
	}
	t.Logf("served by role: %v", roles)
	if roles["secondary"] == 0 {
		t.Fatalf("the session never scaled out: %v", roles)
	}
	h.Check(t, 2*time.Minute)
}

func TestDevHintForgeryMatrix(t *testing.T) {
	d := startDev(t)
	good := d.token(t, "counter", "alice")
	flip := []byte(good)
	flip[10] ^= 2
	foreign, _ := hint.Generate().Seal("counter", "alice")
	for what, token := range map[string]string{
		"tampered": string(flip), "truncated": good[:len(good)-1], "extended": good + "A",
		"foreign keyset": foreign, "plain label": "alice",
	} {
		if a := d.invoke(t, "counter", token, "incr"); a.status != http.StatusForbidden || strings.Contains(a.body, "alice") {
			t.Errorf("%s: %d %s", what, a.status, a.body)
		}
	}
	if a := d.invoke(t, "counter", good, "incr"); a.status != http.StatusOK || a.body != "1" {
		t.Fatalf("good token after the forgeries: %+v", a)
	}
}

// Overload answers 429, and every write acknowledged with 200 is in the
// state: the count equals the number of 200s.
func TestDevOverloadLosesNoAcknowledgedWrite(t *testing.T) {
	d := startDev(t)
	d.deploy(t, "tiny", "c/counter", `{"max_workers": 1, "max_containers": 1}`)
	var acked, refused atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range 20 {
				switch a := d.invoke(t, "tiny", "", "incr"); a.status {
				case http.StatusOK:
					acked.Add(1)
				case http.StatusTooManyRequests:
					refused.Add(1)
				default:
					t.Errorf("unexpected answer %+v", a)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d acknowledged, %d refused with 429", acked.Load(), refused.Load())
	if refused.Load() == 0 {
		t.Fatal("64 clients on one worker were never refused")
	}
	if got := d.invoke(t, "tiny", "", "get").body; got != strconv.FormatInt(acked.Load(), 10) {
		t.Fatalf("count %s; %d writes were acknowledged", got, acked.Load())
	}
}

// Ctrl-C stops everything: exit 0, no container process, no cgroup.
func TestDevShutsDownCleanly(t *testing.T) {
	d := startDev(t, "--nodes", "2", "--pool", "2")
	for _, label := range []string{"alice", "bob", "carol"} {
		d.invoke(t, "counter", d.token(t, "counter", label), "incr")
	}
	pid := d.cmd.Process.Pid
	if n := countProxies(t, d.data); n < 4 {
		t.Fatalf("%d container processes while running; want at least 4", n)
	}
	d.stop(t)
	if n := countProxies(t, d.data); n != 0 {
		t.Fatalf("%d container processes left after shutdown", n)
	}
	for _, ctl := range []string{"cpu", "memory"} {
		if _, err := os.Stat(fmt.Sprintf("/sys/fs/cgroup/%s/xfaas-dev-%d", ctl, pid)); !os.IsNotExist(err) {
			t.Errorf("cgroup xfaas-dev-%d left in %s (%v)", pid, ctl, err)
		}
	}
}

// A restart on the same data keeps the counter as it was deployed: its
// config, its version and the keyset its session hints are sealed with.
// The banner's CLI lines reach a dev that is not on the default address.
func TestDevRestartKeepsTheDeployedCounter(t *testing.T) {
	dir := t.TempDir()
	data, keystore := filepath.Join(dir, "data"), filepath.Join(dir, "keys.json")
	d := startDevOn(t, data, keystore, "127.0.0.1:0", "--nodes", "1", "--pool", "1")
	if !strings.Contains(d.banner, "export XFAAS_ADDR="+d.api+"\n") {
		t.Fatalf("banner of a dev on %s does not export its address:\n%s", d.api, d.banner)
	}
	deploy := exec.Command(xfaasBin, "deploy", "counter", testwasm.Path(t, "c/counter"), "--config", `{"max_workers": 3}`)
	deploy.Env = append(os.Environ(), "XFAAS_ADDR="+d.api, hint.KeystoreEnv+"="+keystore)
	if out, err := deploy.CombinedOutput(); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	token := d.token(t, "counter", "alice")
	if a := d.invoke(t, "counter", token, "incr"); a.status != 200 || a.body != "1" {
		t.Fatalf("first incr: %+v", a)
	}
	before := d.counter(t)
	d.stop(t)

	again := startDevOn(t, data, keystore, strings.TrimPrefix(d.api, "http://"), "--nodes", "1", "--pool", "1")
	if after := again.counter(t); after.Version != before.Version || after.Config.MaxWorkers != 3 || after.HintKeyID != before.HintKeyID {
		t.Fatalf("the restart redeployed the counter: before %+v, after %+v", before, after)
	}
	if a := again.invoke(t, "counter", token, "incr"); a.status != 200 || a.body != "2" {
		t.Fatalf("incr after the restart, with the hint sealed before it: %+v", a)
	}
	again.stop(t)

	// On another address the keystore has no keyset for the counter: dev
	// says so and still leaves the counter's keyset alone.
	other := startDevOn(t, data, keystore, "127.0.0.1:0", "--nodes", "1", "--pool", "1")
	if after := other.counter(t); after.HintKeyID != before.HintKeyID {
		t.Fatalf("a start on another address replaced the keyset: %s, was %s", after.HintKeyID, before.HintKeyID)
	}
	other.stop(t)
	if !strings.Contains(other.stderr.String(), "hint keyset is not in the keystore") {
		t.Fatalf("no warning about the keystore; stderr:\n%s", other.stderr)
	}
}

// counter describes the counter function.
func (d *devPlatform) counter(t *testing.T) controlplane.FunctionInfo {
	t.Helper()
	resp, err := http.Get(d.api + "/v1/functions/counter")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info controlplane.FunctionInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); resp.StatusCode != 200 || err != nil {
		t.Fatalf("describe counter: %s %v", resp.Status, err)
	}
	return info
}

// countProxies counts `xfaas proxy` processes whose sockets are under data.
func countProxies(t *testing.T, data string) int {
	t.Helper()
	return len(proxyPIDs(t, data))
}

// proxyPIDs lists the `xfaas proxy` processes whose sockets are under data.
func proxyPIDs(t *testing.T, data string) []string {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", "proxy --listen unix://"+data).Output()
	return strings.Fields(string(out))
}

// The dev control plane takes half the CPUs unless told otherwise, by the
// flag first, then by $GOMAXPROCS; a negative --procs is refused.
func TestDevProcs(t *testing.T) {
	for _, c := range []struct {
		flag   int
		envVar string
		now    int
		want   int
	}{
		{0, "", 2, 1},
		{0, "", 1, 1},
		{0, "", 8, 4},
		{0, "", 7, 3},
		{0, "2", 2, 2}, // the runtime already applied $GOMAXPROCS
		{3, "2", 2, 3},
		{1, "", 8, 1},
	} {
		if got := devProcs(c.flag, c.envVar, c.now); got != c.want {
			t.Errorf("devProcs(%d, %q, %d) = %d; want %d", c.flag, c.envVar, c.now, got, c.want)
		}
	}
	out, err := exec.Command(xfaasBin, "dev", "--procs", "-1", "--data", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--procs must not be negative") {
		t.Errorf("xfaas dev --procs -1: %v, %q; want a refusal", err, out)
	}
}

// xfaas dev runs itself and its containers under SCHED_BATCH unless told
// otherwise, and refuses a policy it does not know.
func TestDevSchedPolicy(t *testing.T) {
	for _, c := range []struct {
		args []string
		want uint32
	}{
		{nil, sched.Batch},
		{[]string{"--sched", "other"}, sched.Other},
	} {
		d := startDev(t, append([]string{"--nodes", "1", "--pool", "1"}, c.args...)...)
		if a := d.invoke(t, "counter", d.token(t, "counter", "alice"), "incr"); a.status != http.StatusOK {
			t.Fatalf("invoke: %d %s", a.status, a.body)
		}
		pids := append([]string{strconv.Itoa(d.cmd.Process.Pid)}, proxyPIDs(t, d.data)...)
		if len(pids) < 3 {
			t.Fatalf("processes %v; want xfaas dev, the bound container and a pool container", pids)
		}
		for _, pid := range pids {
			tasks, err := os.ReadDir("/proc/" + pid + "/task")
			if err != nil {
				t.Fatal(err)
			}
			for _, task := range tasks {
				tid, _ := strconv.Atoi(task.Name())
				if got, err := sched.Of(tid); err == nil && got != c.want {
					t.Errorf("%v: thread %d of process %s runs under policy %d; want %d", c.args, tid, pid, got, c.want)
				}
			}
		}
	}
	out, err := exec.Command(xfaasBin, "dev", "--sched", "fifo", "--data", t.TempDir()).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--sched must be batch or other") {
		t.Errorf("xfaas dev --sched fifo: %v, %q; want a refusal", err, out)
	}
}

// A stray argument is an error before anything starts, not a platform
// that runs with it and every flag after it ignored (xfaas dev 127.0.0.1:9000
// would serve on the default address). The flag before it would fail on
// its own; the argument is reported first.
func TestDevAndControlPlaneRefuseArguments(t *testing.T) {
	for _, args := range [][]string{
		{"dev", "--procs", "-1", "127.0.0.1:9000", "--listen", "127.0.0.1:0"},
		{"controlplane", "--config", filepath.Join(t.TempDir(), "missing.json"), "stray"},
	} {
		r := runCLI(t, nil, "", args...)
		if want := args[0] + " takes no arguments; got 1"; r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("xfaas %s: %+v; want %q", strings.Join(args, " "), r, want)
		}
	}
}

// A second xfaas dev on the data directory of one that runs is refused
// before it starts anything: two embedded NATS servers on one JetStream
// store, or two local backends on one directory of sockets and
// checkpoints, would corrupt each other. One on the address of a running
// dev is refused before it touches its data directory.
func TestDevRefusesASecondOnItsDataOrAddress(t *testing.T) {
	d := startDev(t, "--nodes", "1", "--pool", "1")
	before := countProxies(t, d.data)
	env := []string{hint.KeystoreEnv + "=" + d.keystore}
	r := runCLI(t, env, "", "dev", "--listen", "127.0.0.1:0", "--data", d.data, "--nodes", "1", "--pool", "1", "--log-level", "debug")
	if r.code == 0 || !strings.Contains(r.stderr, "in use by another xfaas") {
		t.Fatalf("a second dev on the same data: exit %d; want a refusal; stderr:\n%s", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "xfaas.nats") || countProxies(t, d.data) != before {
		t.Fatalf("the refused dev started NATS or containers first; stderr:\n%s", r.stderr)
	}
	if a := d.invoke(t, "counter", d.token(t, "counter", "alice"), "incr"); a.status != 200 {
		t.Fatalf("the first dev after the refusal: %+v", a)
	}

	other := filepath.Join(t.TempDir(), "data")
	r = runCLI(t, env, "", "dev", "--listen", strings.TrimPrefix(d.api, "http://"), "--data", other, "--nodes", "1", "--pool", "1")
	if r.code == 0 || !strings.Contains(r.stderr, "address already in use") {
		t.Fatalf("a second dev on the same address: exit %d; want a refusal; stderr:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(other, "nats")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the dev refused for its address started NATS on its data first: %v", err)
	}
}

package hint

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

const testAddr = "http://127.0.0.1:8080"

func newTestKeystore(t *testing.T) *Keystore {
	t.Helper()
	return NewKeystore(filepath.Join(t.TempDir(), "config", "xfaas", "keys.json"))
}

func TestKeystoreGetOrCreateThenGet(t *testing.T) {
	s := newTestKeystore(t)
	if _, ok, err := s.Get(testAddr, "counter"); ok || err != nil {
		t.Fatalf("Get on a new keystore = %v, %v", ok, err)
	}
	if _, err := os.Stat(filepath.Dir(s.Path())); !os.IsNotExist(err) {
		t.Fatalf("Get created files: %v", err)
	}
	k, created, err := s.GetOrCreate(testAddr, "counter")
	if err != nil || !created {
		t.Fatalf("first GetOrCreate = %v, %v", created, err)
	}
	again, created, err := s.GetOrCreate(testAddr, "counter")
	if err != nil || created || again.ID() != k.ID() {
		t.Fatalf("second GetOrCreate = %s, %v, %v; want %s", again.ID(), created, err, k.ID())
	}
	got, ok, err := NewKeystore(s.Path()).Get(testAddr, "counter")
	if err != nil || !ok || got.ID() != k.ID() {
		t.Fatalf("Get = %s, %v, %v; want %s", got.ID(), ok, err, k.ID())
	}
	other, _, _ := s.GetOrCreate("http://10.0.0.1:8080", "counter")
	if other.ID() == k.ID() {
		t.Fatal("two control planes share a keyset")
	}
}

func TestKeystorePut(t *testing.T) {
	s := newTestKeystore(t)
	a, b := Generate(), Generate()
	if err := s.Put(testAddr, "counter", a); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(testAddr, "counter", b); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Get(testAddr, "counter"); got.ID() != b.ID() {
		t.Fatalf("Put did not replace: got %s, want %s", got.ID(), b.ID())
	}
	if err := s.Put(testAddr, "counter", Keyset{}); err == nil {
		t.Fatal("Put stored a zero keyset")
	}
	for _, fn := range []string{"", strings.Repeat("f", MaxFunctionLen+1)} {
		if err := s.Put(testAddr, fn, a); err == nil {
			t.Errorf("Put for function of %d bytes succeeded", len(fn))
		}
	}
	if err := s.Put(" / ", "counter", a); err == nil {
		t.Error("Put for an empty address succeeded")
	}
}

func TestKeystoreNormalizesAddress(t *testing.T) {
	s := newTestKeystore(t)
	k, _, err := s.GetOrCreate("HTTP://LocalHost:8080/", "counter")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"http://localhost:8080", " http://localhost:8080// ", "http://LOCALHOST:8080"} {
		if got, ok, _ := s.Get(addr, "counter"); !ok || got.ID() != k.ID() {
			t.Errorf("Get(%q) = %v, want the keyset stored for HTTP://LocalHost:8080/", addr, ok)
		}
	}
}

func TestKeystorePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Log("mode bits are not enforced on Windows; checking only that the store works")
	}
	s := newTestKeystore(t)
	if _, _, err := s.GetOrCreate(testAddr, "counter"); err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "windows" {
		return
	}
	for path, want := range map[string]fs.FileMode{
		s.Path():                             0o600,
		s.Path() + ".lock":                   0o600,
		filepath.Dir(s.Path()):               0o700 | fs.ModeDir,
		filepath.Dir(filepath.Dir(s.Path())): 0o700 | fs.ModeDir,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
	// A store others can read is refused, like ssh refuses such a key.
	if err := os.Chmod(s.Path(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(testAddr, "counter"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Get of a 0644 keystore = %v, want a chmod 600 hint", err)
	}
	if _, _, err := s.GetOrCreate(testAddr, "other"); err == nil {
		t.Fatal("GetOrCreate used a 0644 keystore")
	}
}

func TestKeystoreLeavesNoTemporaryFiles(t *testing.T) {
	s := newTestKeystore(t)
	for i := range 5 {
		if _, _, err := s.GetOrCreate(testAddr, fmt.Sprint("fn", i)); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(filepath.Dir(s.Path()))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "keys.json keys.json.lock" {
		t.Fatalf("keystore directory holds %v", names)
	}
}

func TestKeystoreDamage(t *testing.T) {
	s := newTestKeystore(t)
	good, _, err := s.GetOrCreate(testAddr, "good")
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := Generate().MarshalText()
	bad[10] ^= 1
	writeKeystore(t, s, fmt.Sprintf(`{"version":1,"keysets":{%q:{"good":%q,"bad":%q}}}`, testAddr, mustText(t, good), bad))

	_, _, err = s.Get(testAddr, "bad")
	if err == nil || !strings.Contains(err.Error(), `"bad"`) || strings.Contains(err.Error(), string(bad[6:])) {
		t.Fatalf("Get of a damaged entry = %v; want an error naming the function, not the text", err)
	}
	if got, ok, err := s.Get(testAddr, "good"); !ok || err != nil || got.ID() != good.ID() {
		t.Fatalf("a damaged entry hides another: %v, %v", ok, err)
	}
	if _, _, err := s.GetOrCreate(testAddr, "bad"); err == nil {
		t.Fatal("GetOrCreate replaced a damaged keyset; it must be repaired by hand")
	}
	if err := s.Put(testAddr, "new", Generate()); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(s.Path()); !bytes.Contains(data, bad) {
		t.Fatal("a write dropped the damaged entry")
	}

	for name, content := range map[string]string{
		"not json":        "{",
		"empty":           "",
		"future version":  `{"version":2,"keysets":{}}`,
		"missing version": `{"keysets":{}}`,
		"wrong shape":     `{"version":1,"keysets":["x"]}`,
	} {
		writeKeystore(t, s, content)
		if _, _, err := s.Get(testAddr, "good"); err == nil {
			t.Errorf("%s: Get succeeded", name)
		}
		if err := s.Put(testAddr, "good", good); err == nil {
			t.Errorf("%s: Put overwrote a keystore it could not read", name)
		}
	}
}

func writeKeystore(t *testing.T, s *Keystore, content string) {
	t.Helper()
	if err := os.WriteFile(s.Path(), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustText(t *testing.T, k Keyset) string {
	t.Helper()
	text, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	return string(text)
}

func TestDefaultKeystorePath(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv(KeystoreEnv, "")
	check := func(want string) {
		t.Helper()
		if got, err := DefaultKeystorePath(); err != nil || got != want {
			t.Errorf("DefaultKeystorePath() = %q, %v; want %q", got, err, want)
		}
	}
	if runtime.GOOS != "windows" && runtime.GOOS != "plan9" {
		check(filepath.Join(home, ".config", "xfaas", "keys.json"))
	}
	t.Setenv("XDG_CONFIG_HOME", "relative/dir")
	if runtime.GOOS != "windows" && runtime.GOOS != "plan9" {
		check(filepath.Join(home, ".config", "xfaas", "keys.json"))
	}
	xdg := filepath.Join(home, "xdg")
	t.Setenv("XDG_CONFIG_HOME", xdg)
	check(filepath.Join(xdg, "xfaas", "keys.json"))
	t.Setenv(KeystoreEnv, "/etc/xfaas/ci-keys.json")
	check("/etc/xfaas/ci-keys.json")
}

// TestKeystoreConcurrentWriters: goroutines with their own Keystore values
// (so their own lock file descriptors, as separate processes would have)
// create overlapping keysets while a reader keeps reading. Every reader
// must see a whole file, and every creator of one function the same keyset.
func TestKeystoreConcurrentWriters(t *testing.T) {
	path := newTestKeystore(t).Path()
	const writers, functions = 8, 12
	ids := make([][]string, writers)
	stop := make(chan struct{})
	var readerErr error
	var reader sync.WaitGroup
	reader.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, _, err := NewKeystore(path).Get(testAddr, "fn0"); err != nil {
				readerErr = err
				return
			}
		}
	})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			s := NewKeystore(path)
			for i := range functions {
				fn := fmt.Sprint("fn", (i+w)%functions) // each writer in a different order
				k, _, err := s.GetOrCreate(testAddr, fn)
				if err != nil {
					t.Error(err)
					return
				}
				ids[w] = append(ids[w], fn+"="+k.ID())
			}
		})
	}
	wg.Wait()
	close(stop)
	reader.Wait()
	if readerErr != nil {
		t.Fatalf("a reader saw a broken keystore: %v", readerErr)
	}
	checkAgreement(t, path, ids)
}

// checkAgreement fails unless every "fn=id" report agrees with the others
// and with the keystore at path.
func checkAgreement(t *testing.T, path string, reports [][]string) {
	t.Helper()
	agreed := map[string]string{}
	for _, report := range reports {
		for _, line := range report {
			fn, id, _ := strings.Cut(line, "=")
			if prev, ok := agreed[fn]; ok && prev != id {
				t.Errorf("%s: keysets %s and %s both handed out", fn, prev, id)
			}
			agreed[fn] = id
		}
	}
	s := NewKeystore(path)
	for fn, id := range agreed {
		k, ok, err := s.Get(testAddr, fn)
		if err != nil || !ok || k.ID() != id {
			t.Errorf("%s: stored %v (%v, %v), handed out %s", fn, k.ID(), ok, err, id)
		}
	}
}

// childEnv marks a re-executed test binary as a keystore-writing child.
const childEnv = "XFAAS_HINT_TEST_KEYSTORE_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(keystoreChild(path))
	}
	os.Exit(m.Run())
}

// keystoreChild creates keysets as one CLI process would and prints fn=id
// lines.
func keystoreChild(path string) int {
	s := NewKeystore(path)
	offset := os.Getpid()
	for i := range 16 {
		fn := fmt.Sprint("fn", (i+offset)%16)
		k, _, err := s.GetOrCreate(testAddr, fn)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println(fn + "=" + k.ID())
	}
	return 0
}

// TestKeystoreConcurrentProcesses runs the race the keystore exists for:
// several CLI processes creating keysets in one file at once.
func TestKeystoreConcurrentProcesses(t *testing.T) {
	path := newTestKeystore(t).Path()
	const procs = 6
	cmds := make([]*exec.Cmd, procs)
	outs := make([]*bytes.Buffer, procs)
	for i := range cmds {
		outs[i] = new(bytes.Buffer)
		cmds[i] = exec.Command(os.Args[0])
		cmds[i].Env = append(os.Environ(), childEnv+"="+path)
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	reports := make([][]string, procs)
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child %d: %v\n%s", i, err, outs[i])
		}
		sc := bufio.NewScanner(outs[i])
		for sc.Scan() {
			reports[i] = append(reports[i], sc.Text())
		}
		if len(reports[i]) != 16 {
			t.Fatalf("child %d reported %d keysets:\n%s", i, len(reports[i]), outs[i])
		}
	}
	checkAgreement(t, path, reports)
}

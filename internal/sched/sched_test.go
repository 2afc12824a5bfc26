package sched

import (
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// Set moves every thread, threads started afterwards inherit the policy,
// and so do child processes; it moves them back too.
func TestSetCoversThreadsAndChildren(t *testing.T) {
	for _, policy := range []uint32{Batch, Other} {
		if err := Set(policy); err != nil {
			t.Fatal(err)
		}
		checkAllThreads(t, policy)

		checkNewThreads(t, policy)

		cmd := exec.Command("sleep", "10")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		got, err := Of(cmd.Process.Pid)
		cmd.Process.Kill()
		cmd.Wait()
		if err != nil || got != policy {
			t.Errorf("a child started after Set(%d) runs under %d (%v)", policy, got, err)
		}
	}
}

func TestSetRefusesOtherPolicies(t *testing.T) {
	before, err := Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := Set(unix.SCHED_FIFO); err == nil {
		t.Fatal("Set(SCHED_FIFO) succeeded")
	}
	checkAllThreads(t, before)
}

// checkNewThreads makes the runtime start threads and checks that they run
// under policy: more goroutines locked to their threads, and blocked, than
// the process has threads, so at least one must be on a new thread. They
// end locked, so their threads end with them.
func checkNewThreads(t *testing.T, policy uint32) {
	t.Helper()
	before, err := threads()
	if err != nil {
		t.Fatal(err)
	}
	old := map[int]bool{}
	for _, tid := range before {
		old[tid] = true
	}
	tids := make(chan int)
	release := make(chan struct{})
	defer close(release)
	for range len(before) + 1 {
		go func() {
			runtime.LockOSThread()
			tids <- unix.Gettid()
			<-release
		}()
	}
	started := 0
	for range len(before) + 1 {
		tid := <-tids
		if old[tid] {
			continue
		}
		started++
		if got, err := Of(tid); err != nil || got != policy {
			t.Errorf("thread %d, started after Set(%d), runs under %d (%v)", tid, policy, got, err)
		}
	}
	if started == 0 {
		t.Fatalf("no new thread among %d locked goroutines", len(before)+1)
	}
}

func checkAllThreads(t *testing.T, policy uint32) {
	t.Helper()
	tids, err := threads()
	if err != nil {
		t.Fatal(err)
	}
	if len(tids) < 2 {
		t.Fatalf("%d threads listed; a Go process has several", len(tids))
	}
	for _, tid := range tids {
		if got, err := Of(tid); err == nil && got != policy {
			t.Errorf("thread %d runs under policy %d; want %d", tid, got, policy)
		}
	}
}

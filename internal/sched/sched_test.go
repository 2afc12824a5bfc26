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

		// A thread started now: a goroutine locked to a new thread.
		tid := make(chan int)
		release := make(chan struct{})
		go func() {
			runtime.LockOSThread() // the goroutine ends locked, so its thread ends with it
			tid <- unix.Gettid()
			<-release
		}()
		if got, err := Of(<-tid); err != nil || got != policy {
			t.Errorf("a thread started after Set(%d) runs under %d (%v)", policy, got, err)
		}
		close(release)

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

// Package sched sets the Linux scheduling policy of a whole process.
//
// `xfaas dev` runs the control plane, its session containers and usually
// the client on the same few CPUs, and every request wakes a thread in
// each. Under the default policy each wake-up may preempt the thread that
// is running; under SCHED_BATCH it does not, so a request's threads run to
// their next wait instead of taking turns (RATIONALE.md, "The dev control
// plane's share of the CPUs").
package sched

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Policies a process can be put under.
const (
	Other = unix.SCHED_NORMAL
	Batch = unix.SCHED_BATCH
)

// maxPasses bounds how often Set walks the process's threads: a thread
// started during a pass by one not yet moved keeps the old policy, and the
// next pass finds it.
const maxPasses = 5

// Set puts every thread of this process under policy (Other or Batch),
// keeping each thread's nice value. Threads and child processes started
// afterwards inherit it. Switching between the two needs no privilege.
func Set(policy uint32) error {
	if policy != Other && policy != Batch {
		return fmt.Errorf("sched: policy %d is neither SCHED_OTHER nor SCHED_BATCH", policy)
	}
	for range maxPasses {
		tids, err := threads()
		if err != nil {
			return err
		}
		moved := 0
		for _, tid := range tids {
			attr, err := unix.SchedGetAttr(tid, 0)
			if errors.Is(err, unix.ESRCH) {
				continue // the thread ended
			}
			if err != nil {
				return fmt.Errorf("sched: policy of thread %d: %w", tid, err)
			}
			if attr.Policy == policy {
				continue
			}
			attr.Policy = policy
			if err := unix.SchedSetAttr(tid, attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("sched: set the policy of thread %d: %w", tid, err)
			}
			moved++
		}
		if moved == 0 {
			return nil
		}
	}
	return fmt.Errorf("sched: threads kept starting under the old policy for %d passes", maxPasses)
}

// Of is the policy of process or thread id.
func Of(id int) (uint32, error) {
	attr, err := unix.SchedGetAttr(id, 0)
	if err != nil {
		return 0, fmt.Errorf("sched: policy of %d: %w", id, err)
	}
	return attr.Policy, nil
}

// threads lists this process's thread ids.
func threads() ([]int, error) {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("sched: list threads: %w", err)
	}
	tids := make([]int, 0, len(entries))
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

package nomadtest_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/consultest"
	"github.com/xfaas/xfaas/internal/nomadtest"
	"github.com/xfaas/xfaas/internal/testbin"
)

// An agent stopped while its tasks run, as a test that restarts Nomad does,
// leaves Nomad's own task cgroups behind, which Nomad removes only when it
// stops a task itself, and the tasks' logmon plugins, which wait for the
// agent to come back: the agent's cleanup removes them, and only them.
func TestCleanupRemovesTaskCgroups(t *testing.T) {
	consul := consultest.Start(t)
	var allocs []string
	dir := t.TempDir()
	t.Run("agent", func(t *testing.T) {
		a := nomadtest.Start(t, nomadtest.Options{ConsulAddr: consul.HTTPAddr, ProxyPath: testbin.Xfaas(t), Dir: dir})
		a.RunJob(t, filepath.Join(testbin.Root(), "jobspecs", "xfaas-pool.nomad.hcl"),
			map[string]string{"count": "1", "max_workers": "1"})
		testbin.Poll(t, 60*time.Second, func() bool {
			list, _, err := a.Client.Allocations().List(nil)
			allocs = allocs[:0]
			for _, al := range list {
				if al.ClientStatus == "running" && len(nomadtest.TaskCgroups(al.ID)) > 0 {
					allocs = append(allocs, al.ID)
				}
			}
			return err == nil && len(allocs) == 1
		}, func() string { return "no running allocation with task cgroups" })
		a.Stop(t)
	})
	for _, id := range allocs {
		if dirs := nomadtest.TaskCgroups(id); len(dirs) > 0 {
			t.Errorf("task cgroups of allocation %s left: %v", id, dirs)
		}
	}
	testbin.Poll(t, 5*time.Second, func() bool { return len(holders(dir)) == 0 },
		func() string {
			return fmt.Sprintf("processes still hold files in the agent's directory: %v", holders(dir))
		})
}

// holders returns the command lines of the processes with a file open
// below dir.
func holders(dir string) []string {
	var out []string
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		target, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(target, dir+"/") {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(fd, "..", "..", "cmdline"))
		out = append(out, strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return out
}

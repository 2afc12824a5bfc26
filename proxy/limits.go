package proxy

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"

	"github.com/xfaas/xfaas/internal/cgroup"
)

// CgroupLimits enforces worker limits with the host's cgroups. The process
// runs in the container group at path (relative to the hierarchy root); if
// the group does not exist, it is created and owned: sized at bind, removed
// at Close. With an empty path the process's current group is used, as set
// up by its spawner. When cgroups cannot be used, the returned Limits says
// why in its Status and places nothing.
func CgroupLimits(path string) Limits {
	l := &cgroupLimits{}
	h, err := cgroup.Open(cgroup.Options{})
	if err == nil {
		err = h.Writable()
	}
	if err == nil {
		l.h = h
		err = l.join(path)
	}
	if err != nil {
		l.status = LimitStatus{Reason: err.Error()}
		return l
	}
	l.status = LimitStatus{Enforced: true, Cgroup: l.container.Path()}
	return l
}

type cgroupLimits struct {
	h         *cgroup.Hierarchy
	container *cgroup.Group
	owned     bool          // created by this process: sized at bind, removed at Close
	home      *cgroup.Group // where the process was before joining an owned group
	status    LimitStatus

	mu      sync.Mutex
	workers []*cgroup.Group
	cpu     int // the workers' quota in millicores
}

func (l *cgroupLimits) join(path string) error {
	if path == "" {
		self, err := l.h.Self()
		if err != nil {
			return err
		}
		if self.Path() == "/" {
			return errors.New("the process is in the root cgroup; give the proxy a container cgroup")
		}
		l.container = self
		return nil
	}
	l.container = l.h.Group(path)
	if !l.container.Exists() {
		home, err := l.h.Self()
		if err != nil {
			return err
		}
		if err := l.container.Create(nil); err != nil {
			return err
		}
		l.owned, l.home = true, home
	}
	return l.container.AddProcess(os.Getpid())
}

// Status says whether limits are enforced.
func (l *cgroupLimits) Status() LimitStatus { return l.status }

// Workers sizes an owned container group for n workers of cpuMillicores
// and memoryMB each, and makes worker groups 0..n-1 with cpuMillicores
// each. Groups a Prepare made get the new quota if it differs; those past
// n stay until Close.
func (l *cgroupLimits) Workers(n, cpuMillicores, memoryMB int) (ThreadPlacer, error) {
	if !l.status.Enforced {
		return nil, fmt.Errorf("cgroup limits are not enforced: %s", l.status.Reason)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owned {
		if err := l.container.Set(cgroup.Container(n, cpuMillicores, memoryMB)); err != nil {
			return nil, err
		}
	}
	if cpuMillicores != l.cpu {
		for _, w := range l.workers {
			if err := w.Set(cgroup.Resources(int64(cpuMillicores), 0, 0)); err != nil {
				return nil, err
			}
		}
		l.cpu = cpuMillicores
	}
	return l, l.addWorkersLocked(n)
}

// Prepare makes worker groups 0..n-1 for threads that wait for a bind,
// with cpuMillicores each unless a Workers call set the quota already. It
// leaves the container group as it is.
func (l *cgroupLimits) Prepare(n, cpuMillicores int) (ThreadPlacer, error) {
	if !l.status.Enforced {
		return nil, fmt.Errorf("cgroup limits are not enforced: %s", l.status.Reason)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cpu == 0 {
		l.cpu = cpuMillicores
	}
	return l, l.addWorkersLocked(n)
}

func (l *cgroupLimits) addWorkersLocked(n int) error {
	for i := len(l.workers); i < n; i++ {
		w := l.container.Thread("w" + strconv.Itoa(i))
		if err := w.Create(cgroup.Resources(int64(l.cpu), 0, 0)); err != nil {
			return err
		}
		l.workers = append(l.workers, w)
	}
	return nil
}

// PlaceThread moves tid into worker group i.
func (l *cgroupLimits) PlaceThread(i, tid int) error {
	w, err := l.worker(i)
	if err != nil {
		return err
	}
	return w.AddThread(tid)
}

// ReturnThread moves tid back to the container group.
func (l *cgroupLimits) ReturnThread(i, tid int) error {
	w, err := l.worker(i)
	if err != nil {
		return err
	}
	return w.ReturnThread(tid)
}

// worker returns worker group i. A slot thread that outlived Close (which
// the pool prevents) finds none, and its thread stays where it is rather
// than taking the process down.
func (l *cgroupLimits) worker(i int) (*cgroup.Group, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < 0 || i >= len(l.workers) {
		return nil, fmt.Errorf("no worker cgroup %d: the container has %d", i, len(l.workers))
	}
	return l.workers[i], nil
}

// Close removes the worker groups, and an owned container group after
// moving the process back to the group it started in. The slot threads
// must have left their groups (Container.Close stops them first): a group
// that still has a thread cannot be removed.
func (l *cgroupLimits) Close() error {
	if l.h == nil {
		return nil
	}
	l.mu.Lock()
	workers := l.workers
	l.workers = nil
	l.mu.Unlock()
	var errs []error
	for _, w := range workers {
		errs = append(errs, w.Remove())
	}
	if l.owned {
		errs = append(errs, l.home.AddProcess(os.Getpid()), l.container.Remove())
	}
	return errors.Join(errs...)
}

package driver

import (
	"sync"
	"time"

	"github.com/hashicorp/nomad/plugins/drivers"
)

// TaskState is what the driver saves right after StartTask (Nomad saves it
// once) and RecoverTask reattaches from after a driver restart. A process
// is named by pid and start time, so that a reused pid is not mistaken for
// the container.
type TaskState struct {
	TaskConfig *drivers.TaskConfig
	// The shim supervising the container, and the container's proxy.
	ShimPID    int
	ShimStart  uint64
	ProxyPID   int
	ProxyStart uint64
	StartedAt  time.Time
	// Cgroup is the container group's path below the hierarchy root.
	Cgroup string
	// Container and Addr are from the proxy's ready line.
	Container string
	Addr      string
	// StatusFile is where the shim writes the container's exit status.
	StatusFile string
}

// taskStore holds the handles of the tasks this driver knows.
type taskStore struct {
	mu    sync.RWMutex
	tasks map[string]*taskHandle
}

func newTaskStore() *taskStore { return &taskStore{tasks: map[string]*taskHandle{}} }

func (s *taskStore) get(id string) (*taskHandle, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	h, ok := s.tasks[id]
	return h, ok
}

func (s *taskStore) set(id string, h *taskHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tasks[id] = h
}

func (s *taskStore) delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tasks, id)
}

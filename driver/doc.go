// Package driver is the Nomad task driver "xfaas": it runs one xfaas
// session container (an `xfaas proxy` process) per task, in a cgroup of its
// own sized for the container's workers, and supervises it across restarts
// of the driver itself.
//
// A task's process tree is
//
//	xfaas-driver shim (own session; package shim)
//	└── xfaas proxy (own process group, in <cgroup_parent>/<alloc>.<task>)
//
// The shim, not the driver, is the proxy's parent: it records the exit
// status in a file, forwards output to Nomad's log FIFOs and outlives the
// driver, so that a restarted driver recovers the task from its saved
// TaskState (pid and start time of both processes, the cgroup, the address
// and the status file) and still learns how the container ended. README.md
// in this directory says why.
//
// Files: about.go (name, schemas, capabilities), config.go (plugin and task
// config, defaults, validation), driver.go (the DriverPlugin methods),
// launch.go (starting the shim and reading the ready line), handle.go (one
// task), state.go (what RecoverTask needs), stats.go, exec.go.
package driver

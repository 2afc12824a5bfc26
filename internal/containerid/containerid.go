// Package containerid names the session containers Nomad runs: the xfaas
// driver gives each task's container this id (the proxy reports it in its
// status and the registry registers it), and the nomad placement backend
// computes the same id from an allocation to find its container.
package containerid

import "strings"

// Nomad is the id of the container of task in allocation allocID:
// c-<first 12 hex digits of the allocation id>-<task>, with '/' and ' ' of
// the task name made '_'.
func Nomad(allocID, task string) string {
	id := strings.ReplaceAll(allocID, "-", "")
	if len(id) > 12 {
		id = id[:12]
	}
	return "c-" + id + "-" + SafeName(task)
}

// SafeName is a task name with '/' and ' ' made '_', fit for an id or a
// cgroup path.
func SafeName(task string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '_'
		}
		return r
	}, task)
}

package driver

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procStart is a process's start time in clock ticks since boot (field 22
// of /proc/PID/stat): with the pid it names one process across pid reuse.
// A zombie counts as gone: it has exited, and after a driver restart nobody
// here will reap it.
func procStart(pid int) (uint64, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, false
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return 0, false
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	return start, err == nil
}

// alive reports whether the process pid that started at start still runs.
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	got, ok := procStart(pid)
	return ok && got == start
}

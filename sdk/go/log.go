package xfaas

import "strconv"

// Level is the severity of a log line.
type Level int32

// Log levels, with the values of the ABI.
const (
	LevelDebug Level = 0
	LevelInfo  Level = 1
	LevelWarn  Level = 2
	LevelError Level = 3
)

// String returns "debug", "info", "warn" or "error".
func (l Level) String() string {
	switch l {
	case LevelDebug:
		return "debug"
	case LevelInfo:
		return "info"
	case LevelWarn:
		return "warn"
	case LevelError:
		return "error"
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// Log writes msg to the function's log at level; the platform attributes the
// line to the request's session and keeps its first 4 KiB. What the function writes to os.Stdout and
// os.Stderr is captured as log lines too.
func Log(level Level, msg string) { hostLog(int32(level), msg) }

// Debug logs msg at LevelDebug.
func Debug(msg string) { Log(LevelDebug, msg) }

// Info logs msg at LevelInfo.
func Info(msg string) { Log(LevelInfo, msg) }

// Warn logs msg at LevelWarn.
func Warn(msg string) { Log(LevelWarn, msg) }

// Error logs msg at LevelError.
func Error(msg string) { Log(LevelError, msg) }

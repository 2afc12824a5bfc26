package proxy

import (
	"bytes"
	"strings"
)

// guestLog turns a guest's WASI stdout or stderr into log lines attributed
// to its session, and keeps the last bytes so that a trap message can show
// what the guest printed before it died (a Go guest prints its panic there).
// It is used by one worker at a time.
type guestLog struct {
	logf  func(level int32, msg []byte)
	level int32
	line  []byte
	last  []byte // the most recent bytes written, at most tailBytes
}

const (
	tailBytes   = 1 << 10
	maxLineSize = maxLogLine
)

func (g *guestLog) Write(p []byte) (int, error) {
	n := len(p)
	g.remember(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			g.line = append(g.line, p...)
			if len(g.line) >= maxLineSize {
				g.flush()
			}
			break
		}
		g.line = append(g.line, p[:i]...)
		g.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (g *guestLog) flush() {
	if len(g.line) > 0 && g.logf != nil {
		g.logf(g.level, g.line)
	}
	g.line = g.line[:0]
}

func (g *guestLog) remember(p []byte) {
	if len(p) >= tailBytes {
		g.last = append(g.last[:0], p[len(p)-tailBytes:]...)
		return
	}
	if over := len(g.last) + len(p) - tailBytes; over > 0 {
		g.last = g.last[over:]
	}
	g.last = append(g.last, p...)
}

// reset forgets the remembered bytes, at the start of each request.
func (g *guestLog) reset() { g.last = g.last[:0] }

// tail is "; stderr: <last bytes>" or empty.
func (g *guestLog) tail() string {
	s := strings.TrimSpace(string(g.last))
	if s == "" {
		return ""
	}
	return "; stderr: " + s
}

package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/wire"
	"github.com/xfaas/xfaas/proxy/state"
)

// Session logs of durability "log": one JetStream stream, a subject per
// session. See RATIONALE.md, "Durable sessions".
const (
	LogStream        = "XFAAS_LOG"
	LogSubjectPrefix = "xfaas.log."
	// maxLogPending bounds appends in flight to the server; past it an
	// append waits (under its key's shard lock) for acknowledgements.
	maxLogPending = 1 << 14
	// logAckTimeout bounds the wait for one append's acknowledgement.
	// Without it an append made while the client is cut off from the
	// server (reconnecting) is never resolved: collect waits for it
	// forever, and with it every later request's answer and the
	// container's Close. Past it the log counts as broken (see collect).
	// It is far above a healthy round trip, even a cluster's.
	logAckTimeout = 10 * time.Second
)

// LogSubject is the log subject of (function, session) in the function's
// incarnation: xfaas.log.<function>.<session>, then .<incarnation> when
// there is one, so that writes a deleted function's container still
// appends after the delete purged its logs never replay into a function
// created again under its name. LogSubject(function, ">") covers every
// session of every incarnation.
func LogSubject(function, session, incarnation string) string {
	if incarnation == "" {
		return LogSubjectPrefix + function + "." + session
	}
	return LogSubjectPrefix + function + "." + session + "." + incarnation
}

// journal appends a primary's committed writes to its session log and
// lets a request wait until every write before its end is acknowledged:
// appends are published asynchronously in commit order, acknowledgements are
// collected in that order by one goroutine, and a waiting request wakes at
// the first acknowledgement that covers it, so concurrent requests share
// one round trip to the server (group commit).
type journal struct {
	js      jetstream.JetStream
	stream  jetstream.Stream
	subject string
	log     hclog.Logger

	// appendMu orders appends: an index and a publish go together, so
	// acknowledgements come back in index order.
	appendMu sync.Mutex
	next     uint64 // index of the next append
	closed   bool
	futures  chan logFuture

	mu      sync.Mutex
	acked   uint64 // appends with an index below acked are acknowledged
	pos     uint64 // stream sequence of the latest acknowledged append
	failed  error  // the first failed append: the log is broken from there
	changed chan struct{}

	done chan struct{}
}

type logFuture struct {
	idx uint64
	f   jetstream.PubAckFuture
	err error
}

// openJournal makes sure the log stream exists and starts the journal on
// subject (LogSubject).
func openJournal(ctx context.Context, nc *nats.Conn, subject string, log hclog.Logger) (*journal, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxLogPending), jetstream.WithPublishAsyncTimeout(logAckTimeout))
	if err != nil {
		return nil, err
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: LogStream, Subjects: []string{LogSubjectPrefix + ">"},
		Description: "xfaas session logs (durability log)", Storage: jetstream.FileStorage})
	if err != nil {
		return nil, fmt.Errorf("open the session log stream %s: %w", LogStream, err)
	}
	j := &journal{js: js, stream: stream, subject: subject, log: log,
		futures: make(chan logFuture, maxLogPending), changed: make(chan struct{}), done: make(chan struct{})}
	go j.collect()
	return j, nil
}

// Append implements state.Journal. It runs under the key's shard lock.
func (j *journal) Append(key, val []byte, deleted bool, stamp uint64) {
	e := wire.NewEncoder(len(key) + len(val) + 16)
	e.Uint(stamp).Bool(deleted).Bytes(key).Bytes(val)
	j.appendMu.Lock()
	defer j.appendMu.Unlock()
	if j.closed {
		// Only a write racing the container's shutdown gets here; its
		// request cannot be acknowledged any more.
		j.log.Warn("write after the session log closed is not logged", "stamp", stamp)
		return
	}
	idx := j.next
	j.next++
	f, err := j.js.PublishMsgAsync(&nats.Msg{Subject: j.subject, Data: e.Payload()})
	j.futures <- logFuture{idx: idx, f: f, err: err}
}

// collect waits for acknowledgements in append order.
func (j *journal) collect() {
	defer close(j.done)
	for lf := range j.futures {
		var pos uint64
		err := lf.err
		if err == nil {
			select {
			case ack := <-lf.f.Ok():
				pos = ack.Sequence
			case err = <-lf.f.Err():
			}
		}
		j.mu.Lock()
		if err != nil && j.failed == nil {
			j.failed = fmt.Errorf("session log append %d: %w", lf.idx, err)
			j.log.Error("session log broken: later writes are not acknowledged", "error", err)
		}
		j.acked = lf.idx + 1
		if err == nil && j.failed == nil {
			j.pos = pos
		}
		close(j.changed)
		j.changed = make(chan struct{})
		j.mu.Unlock()
	}
}

// sync waits until every write appended before it was called is
// acknowledged by the log.
func (j *journal) sync(ctx context.Context) error {
	if j == nil {
		return nil
	}
	j.appendMu.Lock()
	want := j.next
	j.appendMu.Unlock()
	for {
		j.mu.Lock()
		acked, failed, changed := j.acked, j.failed, j.changed
		j.mu.Unlock()
		if failed != nil {
			return apierror.New(apierror.Unavailable, "the session log is unavailable; the write may not be durable: %v", failed)
		}
		if acked >= want {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return apierror.New(apierror.Timeout, "the session log did not acknowledge the request's writes before the deadline")
		}
	}
}

// position is the stream sequence up to which every append is
// acknowledged (0 before any).
func (j *journal) position() uint64 {
	if j == nil {
		return 0
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.pos
}

// trim drops the log entries up to pos: a durable checkpoint covers them.
func (j *journal) trim(ctx context.Context, pos uint64) error {
	if j == nil || pos == 0 {
		return nil
	}
	return j.stream.Purge(ctx, jetstream.WithPurgeSubject(j.subject), jetstream.WithPurgeSequence(pos+1))
}

// replay applies the session's log to store, skipping what the restored
// checkpoint (up to stamp floor) already holds. It returns how many writes
// it applied.
func (j *journal) replay(ctx context.Context, store *state.Store, floor uint64) (int, error) {
	last, err := j.stream.GetLastMsgForSubject(ctx, j.subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	cons, err := j.js.OrderedConsumer(ctx, LogStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{j.subject}})
	if err != nil {
		return 0, err
	}
	applied := 0
	for {
		batch, err := cons.Fetch(512, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return applied, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return applied, err
			}
			d := wire.NewDecoder(m.Data())
			stamp, deleted, key, val := d.Uint(), d.Bool(), d.Bytes(), d.Bytes()
			if err := d.Err(); err != nil {
				return applied, fmt.Errorf("log entry %d: %w", meta.Sequence.Stream, err)
			}
			if stamp > floor {
				if err := store.Replay(key, val, deleted, stamp); err != nil {
					return applied, fmt.Errorf("log entry %d: %w", meta.Sequence.Stream, err)
				}
				applied++
			}
			if meta.Sequence.Stream >= last.Sequence {
				return applied, nil
			}
		}
		if err := batch.Error(); err != nil {
			return applied, err
		}
		if n == 0 {
			return applied, fmt.Errorf("the log ended before entry %d", last.Sequence)
		}
	}
}

// close stops appending and waits for the acknowledgements in flight
// until ctx is done. What it gives up on loses nothing that was promised:
// a request's answer waits until its writes are acknowledged (sync), so an
// append not acknowledged yet belongs to a request that has not been
// answered, or was answered with an error. collect ends by itself once
// the last future resolves, by logAckTimeout at the latest.
func (j *journal) close(ctx context.Context) error {
	if j == nil {
		return nil
	}
	j.appendMu.Lock()
	if !j.closed {
		j.closed = true
		close(j.futures)
	}
	j.appendMu.Unlock()
	select {
	case <-j.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("session log: acknowledgements still outstanding: %w", ctx.Err())
	}
}

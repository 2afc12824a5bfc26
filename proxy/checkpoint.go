package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/checkpoint"
)

// CheckpointBucket is the JetStream object store of the durable tier:
// object <function>/<session> is the session's latest checkpoint.
const CheckpointBucket = "xfaas-checkpoints"

// CheckpointName is the object (and file) name of a session's checkpoint.
func CheckpointName(function, session string) string { return function + "/" + session }

// CheckpointInfo describes a checkpoint just taken.
type CheckpointInfo struct {
	Seq   uint64 `json:"seq"`
	Keys  int    `json:"keys"`
	Bytes int64  `json:"bytes"`
	// Durable is whether it reached the durable tier (the object store);
	// a checkpoint only on the node's disk cannot be restored elsewhere.
	Durable bool `json:"durable"`
	// Local is the file it was written to on the node, if any.
	Local string `json:"local,omitempty"`
}

// checkpoints is where a container saves and finds its session's
// checkpoints: a file in the node's checkpoint directory, and the durable
// tier, so that the session can be restored on any node. See RATIONALE.md,
// "Checkpoints".
type checkpoints struct {
	dir     string           // the node's checkpoint directory; "" for none
	durable *CheckpointStore // nil without NATS
	log     hclog.Logger
}

func (cs *checkpoints) path(function, session string) string {
	return filepath.Join(cs.dir, function, session+".ckpt")
}

// CheckpointStore is the durable tier, the JetStream object store
// CheckpointBucket, opened (created if missing, with the one configuration
// every container and control plane uses) on first use.
type CheckpointStore struct {
	js jetstream.JetStream

	mu  sync.Mutex
	obj jetstream.ObjectStore
}

// NewCheckpointStore returns the durable tier reached through js.
func NewCheckpointStore(js jetstream.JetStream) *CheckpointStore { return &CheckpointStore{js: js} }

// Open returns the object store, opening it the first time.
func (s *CheckpointStore) Open(ctx context.Context) (jetstream.ObjectStore, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.obj == nil {
		obj, err := s.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: CheckpointBucket,
			Description: "xfaas session checkpoints", Storage: jetstream.FileStorage})
		if err != nil {
			return nil, fmt.Errorf("open the checkpoint store: %w", err)
		}
		s.obj = obj
	}
	return s.obj, nil
}

// store opens the durable tier, or returns nil without NATS.
func (cs *checkpoints) store(ctx context.Context) (jetstream.ObjectStore, error) {
	if cs.durable == nil {
		return nil, nil
	}
	return cs.durable.Open(ctx)
}

// save writes ck to the node's directory and to the durable tier.
func (cs *checkpoints) save(ctx context.Context, ck *checkpoint.Checkpoint) (CheckpointInfo, error) {
	data := ck.Encode()
	info := CheckpointInfo{Seq: ck.Seq, Keys: len(ck.Entries), Bytes: ck.Size()}
	if cs.dir != "" {
		info.Local = cs.path(ck.Function, ck.Session)
		if err := checkpoint.WriteFile(info.Local, data); err != nil {
			return info, fmt.Errorf("write checkpoint: %w", err)
		}
	}
	obj, err := cs.store(ctx)
	if err != nil {
		return info, err
	}
	if obj == nil {
		if cs.dir == "" {
			return info, apierror.New(apierror.Unavailable, "nowhere to write a checkpoint: the container has neither a checkpoint directory nor NATS")
		}
		return info, nil
	}
	meta := jetstream.ObjectMeta{Name: CheckpointName(ck.Function, ck.Session), Metadata: map[string]string{
		"seq": strconv.FormatUint(ck.Seq, 10), "digest": ck.Digest, "incarnation": ck.Incarnation,
		"keys": strconv.Itoa(len(ck.Entries)), "bytes": strconv.FormatInt(ck.Size(), 10)}}
	if _, err := obj.Put(ctx, meta, bytes.NewReader(data)); err != nil {
		return info, fmt.Errorf("store checkpoint in %s: %w", CheckpointBucket, err)
	}
	info.Durable = true
	return info, nil
}

// load finds the latest checkpoint of (function, session): the node's copy
// when it is at least as new as the durable tier's (or has knownSeq, the
// seq the control plane recorded at the checkpoint), else the durable one.
// No checkpoint anywhere is (nil, nil): a new session. A checkpoint that
// does not decode is an error, never an empty session: a corrupt local
// file is renamed aside (checkpoint.ReadFile) and the durable copy is
// tried; a corrupt durable object stays where it is for inspection. A
// damaged file kept aside keeps failing the session's start until an
// operator removes it, unless the durable tier has a good checkpoint.
func (cs *checkpoints) load(ctx context.Context, function, session, incarnation string, knownSeq uint64) (*checkpoint.Checkpoint, string, error) {
	var local *checkpoint.Checkpoint
	var localErr error
	if cs.dir != "" {
		path := cs.path(function, session)
		c, err := checkpoint.ReadFile(path)
		switch {
		case err == nil && checkMatch(c, function, session) == nil && !ofIncarnation(c.Incarnation, incarnation):
			cs.log.Warn("ignoring a node checkpoint of another incarnation of the function", "function", function,
				"session", session, "incarnation", c.Incarnation, "want", incarnation)
		case err == nil:
			local, localErr = c, checkMatch(c, function, session)
		case !errors.Is(err, fs.ErrNotExist):
			localErr = err
		default:
			// A damaged checkpoint kept aside still counts: without it the
			// next start would silently be an empty session.
			if aside, _ := filepath.Glob(path + ".corrupt-*"); len(aside) > 0 {
				localErr = fmt.Errorf("%w: %s is a damaged checkpoint of this session, kept aside for inspection; remove it to start the session without it", checkpoint.ErrCorrupt, aside[0])
			}
		}
		if localErr != nil {
			cs.log.Error("local checkpoint unusable; trying the durable tier", "function", function, "session", session, "error", localErr)
			local = nil
		}
	}
	if local != nil && knownSeq != 0 && local.Seq == knownSeq {
		return local, "local", nil // the latest, as the control plane knows
	}
	obj, err := cs.store(ctx)
	if err != nil {
		return nil, "", err
	}
	var durableSeq uint64
	var info *jetstream.ObjectInfo
	if obj != nil {
		info, err = obj.GetInfo(ctx, CheckpointName(function, session))
		switch {
		case errors.Is(err, jetstream.ErrObjectNotFound):
			info = nil
		case err != nil:
			return nil, "", fmt.Errorf("look up checkpoint: %w", err)
		case !ofIncarnation(info.Metadata["incarnation"], incarnation):
			// A retire of a deleted function that ended after the
			// delete removed its checkpoints, say.
			cs.log.Warn("ignoring a durable checkpoint of another incarnation of the function", "function", function,
				"session", session, "incarnation", info.Metadata["incarnation"], "want", incarnation)
			info = nil
		default:
			durableSeq, _ = strconv.ParseUint(info.Metadata["seq"], 10, 64)
		}
	}
	switch {
	case local != nil && obj != nil && info == nil:
		// With a durable tier, a checkpoint it does not hold is not the
		// session's: its function was deleted (and maybe created again),
		// or the checkpoint failed and the session kept running.
		cs.log.Warn("ignoring a node checkpoint the durable tier does not hold", "function", function, "session", session, "seq", local.Seq)
		return nil, "", nil
	case local != nil && (info == nil || local.Seq >= durableSeq):
		return local, "local", nil
	case info == nil && localErr != nil:
		return nil, "", fmt.Errorf("the session's only checkpoint is unusable: %w", localErr)
	case info == nil:
		return nil, "", nil
	}
	data, err := obj.GetBytes(ctx, CheckpointName(function, session))
	if err != nil {
		return nil, "", fmt.Errorf("fetch checkpoint: %w", err)
	}
	c, err := checkpoint.Decode(data)
	if err == nil {
		err = checkMatch(c, function, session)
	}
	if err == nil && c.Incarnation != info.Metadata["incarnation"] {
		err = fmt.Errorf("%w: checkpoint of incarnation %q stored as %q", checkpoint.ErrCorrupt, c.Incarnation, info.Metadata["incarnation"])
	}
	if err != nil {
		return nil, "", fmt.Errorf("durable checkpoint %s/%s (left in place for inspection): %w", CheckpointBucket, CheckpointName(function, session), err)
	}
	return c, "durable", nil
}

// ofIncarnation reports whether a checkpoint of incarnation got belongs to
// a binding of incarnation want. One without an incarnation was written
// before there were any, and belongs.
func ofIncarnation(got, want string) bool { return got == "" || got == want }

func checkMatch(c *checkpoint.Checkpoint, function, session string) error {
	if c.Function != function || c.Session != session {
		return fmt.Errorf("%w: checkpoint of %s/%s found for %s/%s", checkpoint.ErrCorrupt, c.Function, c.Session, function, session)
	}
	return nil
}

// Checkpoint snapshots the session state of a primary and saves it on the
// node and in the durable tier; with durability "log" it then trims the
// session's log to what follows the checkpoint. Checkpoints of a container
// run one at a time.
func (c *Container) Checkpoint(ctx context.Context) (CheckpointInfo, error) {
	b, err := c.checkpointable()
	if err != nil {
		return CheckpointInfo{}, err
	}
	b.ckMu.Lock()
	defer b.ckMu.Unlock()
	return c.checkpointLocked(ctx, b)
}

// Seal is the checkpoint of a retire: the session's last one in this
// container, which the control plane releases next. Requests of other
// control planes (adopters) and the state writes of secondaries may reach
// the primary until then, and would be answered and lost with it; so Seal
// first refuses new requests (Unavailable, retryable), waits until the
// running ones have returned, bounded by ctx, and makes every write fail
// (-8) before it takes the snapshot. See RATIONALE.md, "Who retires a
// namespace". When the checkpoint fails, the container unseals before it
// answers: the retire is undone and the session serves on here. A sealed
// container stays sealed.
func (c *Container) Seal(ctx context.Context) (CheckpointInfo, error) {
	b, err := c.checkpointable()
	if err != nil {
		return CheckpointInfo{}, err
	}
	b.ckMu.Lock()
	defer b.ckMu.Unlock()
	err = b.pool.seal(ctx)
	var info CheckpointInfo
	if err == nil {
		b.store.Seal()
		info, err = c.checkpointLocked(ctx, b)
	}
	if err == nil && ctx.Err() != nil {
		// The caller may have given up and undone its retire: a session
		// left sealed would refuse every request. The checkpoint taken
		// stays valid, as one taken without a seal would.
		err = apierror.New(apierror.Timeout, "the sealing checkpoint finished after the caller's deadline")
	}
	if err != nil {
		b.store.Unseal()
		b.pool.unseal()
		c.log.Warn("sealing checkpoint failed; the session serves on", "function", b.Function, "session", b.Session, "error", err)
		return info, err
	}
	return info, nil
}

// checkpointable is the binding whose session state a checkpoint saves.
func (c *Container) checkpointable() (*bound, error) {
	b := c.bound()
	if b == nil || b.store == nil {
		return nil, apierror.New(apierror.BadRequest, "container %s holds no session state to checkpoint", c.opts.ID)
	}
	return b, nil
}

// checkpointLocked takes and saves the checkpoint. The caller holds b.ckMu.
func (c *Container) checkpointLocked(ctx context.Context, b *bound) (CheckpointInfo, error) {
	// Every write acknowledged by the log before the snapshot is in it.
	logPos := b.journal.position()
	entries, seq := b.store.Snapshot()
	ck := &checkpoint.Checkpoint{Function: b.Function, Session: b.Session, Digest: b.Digest,
		Incarnation: b.Incarnation, Seq: seq, Created: time.Now(), Entries: entries}
	start := time.Now()
	info, err := c.ckpts.save(ctx, ck)
	if err != nil {
		return info, err
	}
	if info.Durable {
		if err := b.journal.trim(ctx, logPos); err != nil {
			c.log.Warn("failed to trim the session log after a checkpoint", "error", err)
		}
	}
	c.log.Info("checkpointed", "function", b.Function, "session", b.Session, "seq", seq, "keys", info.Keys,
		"bytes", info.Bytes, "durable", info.Durable, "ms", time.Since(start).Milliseconds())
	return info, nil
}

// restore loads the session's latest checkpoint into nb's new store and
// replays the log tail after it.
func (c *Container) restore(ctx context.Context, nb *bound) error {
	start := time.Now()
	ck, from, err := c.ckpts.load(ctx, nb.Function, nb.Session, nb.Incarnation, nb.RestoreSeq)
	if err != nil {
		return apierror.New(apierror.Internal, "restore session %s/%s: %v", nb.Function, nb.Session, err)
	}
	var floor uint64
	if ck != nil {
		if err := nb.store.Restore(ck.Entries, ck.Seq); err != nil {
			return apierror.New(apierror.Internal, "restore session %s/%s: %v", nb.Function, nb.Session, err)
		}
		floor = ck.Seq
		c.log.Info("restored", "function", nb.Function, "session", nb.Session, "from", from, "seq", ck.Seq,
			"keys", len(ck.Entries), "checkpoint_digest", ck.Digest, "upgrade", ck.Digest != nb.Digest,
			"ms", float64(time.Since(start).Microseconds())/1000)
	}
	if nb.journal != nil {
		n, err := nb.journal.replay(ctx, nb.store, floor)
		if err != nil {
			return apierror.New(apierror.Internal, "replay the log of session %s/%s: %v", nb.Function, nb.Session, err)
		}
		if n > 0 {
			c.log.Info("replayed the session log", "function", nb.Function, "session", nb.Session, "writes", n)
		}
	}
	return nil
}

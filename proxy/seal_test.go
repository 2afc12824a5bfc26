package proxy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/apierror"
	"github.com/xfaas/xfaas/internal/checkpoint"
	"github.com/xfaas/xfaas/proxy/state"
)

// A retire's checkpoint seals the primary (RATIONALE.md, "Who retires a
// namespace."): a request that is running when it starts finishes and is
// in the snapshot; one that arrives after is refused as retryable, not
// answered and then lost with the container; and a secondary's state
// write after the snapshot fails -8.
func TestSealingCheckpointRefusesWhatItWouldLose(t *testing.T) {
	dir := t.TempDir()
	c, primary := startContainer(t, Options{CacheDir: compileCache, CheckpointDir: dir})
	bindCounter(t, primary, RolePrimary, "", "pessimistic")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	invokeOK(t, primary, "incr 40")

	// A secondary's open section holds the key, so the next increment runs
	// on the primary, waiting for the lock, when the seal begins.
	holder := holdCount(ctx, t, primary)
	running := make(chan error, 1)
	go func() {
		out, err := primary.Invoke(ctx, []byte("incr"))
		if err == nil && string(out) != "41" {
			err = errors.New("running increment returned " + string(out))
		}
		running <- err
	}()
	pool := c.bound().pool
	waitUntil(t, "the increment runs", func() bool { return pool.stats.inflight.Load() == 1 })
	type result struct {
		info CheckpointInfo
		err  error
	}
	sealed := make(chan result, 1)
	go func() {
		info, err := primary.Seal(ctx)
		sealed <- result{info, err}
	}()
	waitUntil(t, "the seal begins", func() bool { return pool.sealed.Load() || len(sealed) > 0 })

	_, err := primary.Invoke(ctx, []byte("get"))
	if ae := (*apierror.Error)(nil); !errors.As(err, &ae) || ae.Kind != apierror.Unavailable || ae.RetryAfter == 0 {
		t.Fatalf("request during the seal: %v; want unavailable with a retry-after", err)
	}
	holder.End() // the running increment takes the lock and finishes
	if err := <-running; err != nil {
		t.Fatalf("the running request: %v", err)
	}
	r := <-sealed
	if r.err != nil {
		t.Fatalf("seal: %v", r.err)
	}
	var ck *checkpoint.Checkpoint
	ck, err = checkpoint.ReadFile(r.info.Local)
	if err != nil {
		t.Fatal(err)
	}
	if len(ck.Entries) != 1 || string(ck.Entries[0].Value) != "41" {
		t.Fatalf("checkpoint holds %+v; want count 41", ck.Entries)
	}

	late := &remoteState{primary: primary.Addr()}
	defer late.Close()
	if err := late.Put(ctx, []byte("count"), []byte("99"), abi.ModeCausal); !errors.Is(err, state.ErrUnavailable) || state.Code(err) != abi.ErrUnavailable {
		t.Fatalf("a secondary's write after the seal: %v; want -8", err)
	}
	if err := late.Delete(ctx, []byte("count"), abi.ModeCausal); !errors.Is(err, state.ErrUnavailable) {
		t.Fatalf("a secondary's delete after the seal: %v; want -8", err)
	}
	if _, err := primary.Invoke(ctx, []byte("get")); apierror.KindOf(err) != apierror.Unavailable {
		t.Fatalf("request after the seal: %v; want unavailable", err)
	}
}

// A sealing checkpoint that fails leaves the container as it was: the
// control plane's retire is undone and the session serves on here.
func TestFailedSealingCheckpointKeepsServing(t *testing.T) {
	// A file where the checkpoint directory should be: the write fails.
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, primary := startContainer(t, Options{CacheDir: compileCache, CheckpointDir: notDir})
	bindCounter(t, primary, RolePrimary, "", "pessimistic")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	invokeOK(t, primary, "incr")
	if _, err := primary.Seal(ctx); err == nil {
		t.Fatal("checkpoint into a file succeeded")
	}
	if out := invokeOK(t, primary, "incr"); out != "2" {
		t.Fatalf("increment after the failed seal: %s; want 2", out)
	}
	sec := &remoteState{primary: primary.Addr()}
	defer sec.Close()
	if err := sec.Put(ctx, []byte("other"), []byte("x"), abi.ModeCausal); err != nil {
		t.Fatalf("a secondary's write after the failed seal: %v", err)
	}
}

// A seal that times out waiting for a running request unseals too.
func TestSealTimingOutKeepsServing(t *testing.T) {
	c, primary := startContainer(t, Options{CacheDir: compileCache, CheckpointDir: t.TempDir()})
	bindCounter(t, primary, RolePrimary, "", "pessimistic")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	holder := holdCount(ctx, t, primary)
	running := make(chan error, 1)
	go func() {
		_, err := primary.Invoke(ctx, []byte("incr"))
		running <- err
	}()
	waitUntil(t, "the increment runs", func() bool { return c.bound().pool.stats.inflight.Load() == 1 })
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stop()
	// The container's answer, not this side's deadline: it has unsealed
	// by the time the caller hears of the failure.
	if _, err := primary.Seal(short); apierror.KindOf(err) != apierror.Timeout || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("seal with a request running past its deadline: %v; want the container's timeout", err)
	}
	holder.End()
	if err := <-running; err != nil {
		t.Fatalf("the running request: %v", err)
	}
	if out := invokeOK(t, primary, "incr"); out != "2" {
		t.Fatalf("increment after the timed-out seal: %s; want 2", out)
	}
}

// holdCount opens a secondary's section on the counter's key, so that an
// increment on the primary waits for its lock; closing the holder ends it.
func holdCount(ctx context.Context, t *testing.T, primary *Client) *remoteState {
	t.Helper()
	holder := &remoteState{primary: primary.Addr(), pessimistic: true}
	t.Cleanup(holder.Close)
	if _, _, err := holder.Get(ctx, []byte("count"), abi.ModeLinearizable); err != nil {
		t.Fatal(err)
	}
	return holder
}

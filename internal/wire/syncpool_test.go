package wire

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/xfaas/xfaas/internal/apierror"
)

// A pool reuses a connection after a clean call or an error answer, drops
// one that broke, keeps at most MaxIdle, closes idle ones past IdleTimeout,
// and refuses calls once closed.
func TestSyncPool(t *testing.T) {
	addr, _, _ := testServer(t, "unix")
	dials := 0
	p := NewSyncPool(addr, SyncPoolOptions{MaxIdle: 1, IdleTimeout: 50 * time.Millisecond,
		Dial: func(ctx context.Context) (*SyncClient, error) { dials++; return DialSync(ctx, addr) }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	call := func(method uint8) error {
		sc, err := p.Get(ctx)
		if err != nil {
			return err
		}
		_, err = sc.Call(ctx, method, []byte("x"))
		p.Put(sc)
		return err
	}
	if err := call(mEcho); err != nil || dials != 1 {
		t.Fatalf("first call: %v, %d dials", err, dials)
	}
	if err := call(mFail); apierror.KindOf(err) != apierror.Overloaded || dials != 1 {
		t.Fatalf("error answer: %v, %d dials; want the connection reused", err, dials)
	}
	if err := call(mEcho); err != nil || dials != 1 {
		t.Fatalf("after an error answer: %v, %d dials; want the connection kept", err, dials)
	}
	// A broken connection is not kept.
	sc, _ := p.Get(ctx)
	sc.Close()
	p.Put(sc)
	if err := call(mEcho); err != nil || dials != 2 {
		t.Fatalf("after a broken connection: %v, %d dials; want a new one", err, dials)
	}
	// Two at once: the second is closed on Put (MaxIdle 1).
	a, _ := p.Get(ctx)
	b, _ := p.Get(ctx)
	p.Put(a)
	p.Put(b)
	if !b.broken || a.broken {
		t.Fatalf("MaxIdle 1 kept %v, %v", !a.broken, !b.broken)
	}
	// Past IdleTimeout, the next Put closes the connections idle too long.
	q := NewSyncPool(addr, SyncPoolOptions{MaxIdle: 4, IdleTimeout: 50 * time.Millisecond})
	defer q.Close()
	old, _ := q.Get(ctx)
	fresh, _ := q.Get(ctx)
	q.Put(old)
	time.Sleep(60 * time.Millisecond) // old ages past the timeout
	q.Put(fresh)
	if !old.broken || fresh.broken {
		t.Fatalf("sweep: old closed %v, fresh closed %v; want only old", old.broken, fresh.broken)
	}
	d, _ := p.Get(ctx)
	p.Put(d)
	p.Close()
	if _, err := p.Get(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if !d.broken {
		t.Fatal("Close left an idle connection open")
	}
}

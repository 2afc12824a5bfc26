package proxy

import (
	"context"
	"fmt"
	"time"

	"github.com/xfaas/xfaas/internal/abi"
	"github.com/xfaas/xfaas/internal/wire"
	"github.com/xfaas/xfaas/proxy/state"
)

// remoteState is a secondary worker's Accessor: every state operation goes
// to the primary over the worker's own synchronous connection, with the
// same semantics as a local *state.Txn (the primary runs one Txn per
// connection). See RATIONALE.md, "Wire protocol".
type remoteState struct {
	primary string
	// pessimistic: mode-1 operations may wait for a lock on the primary.
	pessimistic bool
	conn        *wire.SyncClient
	// open: a mode-1 operation ran on conn in this request, so End must
	// reach the primary to close what may still be open.
	open bool
	// lost: conn broke while open, taking the request's sections with it.
	// Mode-1 operations fail until End (see call).
	lost bool
	// set tracks r for the container's close; nil when untracked.
	set *remoteSet
}

// errSectionLost is what a mode-1 operation returns after the request lost
// its sections with its connection.
var errSectionLost = fmt.Errorf("%w: the connection to the primary broke with critical sections open", state.ErrUnavailable)

var _ Accessor = (*remoteState)(nil)

func (r *remoteState) Get(ctx context.Context, key []byte, mode int32) ([]byte, bool, error) {
	code, val, err := r.call(ctx, methodStateGet, stateOp{mode: mode, key: key})
	switch {
	case err != nil:
		return nil, false, err
	case code == abi.ErrAbsent:
		return nil, false, nil
	case code < 0:
		return nil, false, state.ErrorOf(code)
	}
	return val, true, nil
}

func (r *remoteState) Put(ctx context.Context, key, val []byte, mode int32) error {
	code, _, err := r.call(ctx, methodStatePut, stateOp{mode: mode, key: key, val: val})
	if err != nil {
		return err
	}
	return state.ErrorOf(code)
}

func (r *remoteState) Delete(ctx context.Context, key []byte, mode int32) error {
	code, _, err := r.call(ctx, methodStateDelete, stateOp{mode: mode, key: key})
	if err != nil {
		return err
	}
	return state.ErrorOf(code)
}

// End closes the request's sections on the primary. Only a request that ran
// a mode-1 operation pays for the round trip.
func (r *remoteState) End() {
	r.lost = false
	if !r.open || r.conn == nil {
		return
	}
	r.open = false
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.conn.Call(ctx, methodStateEnd, nil); err != nil {
		// The primary ends its transaction when it sees the connection go.
		r.hangUp()
	}
}

// call runs one state operation on the primary, connecting first if the
// worker has no connection.
//
// The primary runs one transaction per connection, and the request's
// sections live in it: when the connection breaks, the primary ends that
// transaction, releasing the locks (or forgetting the stamps) the request's
// mode-1 reads took. A write_state(k, 1) sent on a new connection would find
// no section there and commit as a blind write, over whatever other requests
// committed to k since. So once a connection breaks after a mode-1
// operation of the request, every further mode-1 operation of the request
// fails as unavailable, without reaching the primary, until End. That
// refuses more than the lost sections (a read that would open a new one, a
// blind write), since the secondary does not track which keys had sections;
// a broken connection is rare, and like a deadlock it ends the request's
// linearizable work, which only the function knows how to redo. Mode-0
// operations have no section to lose and reconnect.
func (r *remoteState) call(ctx context.Context, method uint8, op stateOp) (int32, []byte, error) {
	if r.lost && op.mode == abi.ModeLinearizable {
		return 0, nil, errSectionLost
	}
	if r.conn == nil {
		conn, err := wire.DialSync(ctx, r.primary)
		if err != nil {
			return 0, nil, fmt.Errorf("%w: %v", state.ErrUnavailable, err)
		}
		r.conn = conn
	}
	if deadline, ok := ctx.Deadline(); ok {
		op.timeout = time.Until(deadline)
	}
	var reply []byte
	var err error
	if op.mode == abi.ModeLinearizable {
		r.open = true
	}
	if op.mode == abi.ModeLinearizable && r.pessimistic {
		reply, err = r.conn.CallMayBlock(ctx, method, op.encode())
	} else {
		reply, err = r.conn.Call(ctx, method, op.encode())
	}
	if err == nil {
		var code int32
		var val []byte
		if code, val, err = decodeStateReply(reply); err == nil {
			return code, val, nil
		}
	}
	// The exchange failed or its reply made no sense: what the primary
	// holds for this connection is unknown, so the connection goes.
	r.hangUp()
	if r.open {
		r.open, r.lost = false, true
	}
	return 0, nil, fmt.Errorf("%w: %v", state.ErrUnavailable, err)
}

// Close hangs up for good: the worker retires. The container's closeAll
// hangs up on what is still in the set, so Close leaves r to it if it took
// r out first, and the two never close one connection together.
func (r *remoteState) Close() {
	if r.set != nil && !r.set.remove(r) {
		return
	}
	r.hangUp()
}

// hangUp closes the connection to the primary, which then ends its
// transaction.
func (r *remoteState) hangUp() {
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
}

// txnKey is the wire.Conn value holding a state connection's Txn.
type txnKey struct{}

// serveState runs a secondary's state operation on the primary's store.
func serveState(ctx context.Context, st *state.Store, conn *wire.Conn, method uint8, payload []byte) ([]byte, error) {
	txn, _ := conn.Value(txnKey{}).(*state.Txn)
	if txn == nil {
		txn = st.NewTxn()
		conn.SetValue(txnKey{}, txn)
		conn.OnClose(txn.End)
	}
	if method == methodStateEnd {
		txn.End()
		return nil, nil
	}
	op, err := decodeStateOp(payload)
	if err != nil {
		return nil, err
	}
	if op.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, op.timeout)
		defer cancel()
	}
	switch method {
	case methodStateGet:
		val, ok, err := txn.Get(ctx, op.key, op.mode)
		if err != nil {
			return encodeStateReply(state.Code(err), nil), nil
		}
		if !ok {
			return encodeStateReply(abi.ErrAbsent, nil), nil
		}
		return encodeStateReply(int32(len(val)), val), nil
	case methodStatePut:
		return encodeStateReply(state.Code(txn.Put(ctx, op.key, op.val, op.mode)), nil), nil
	case methodStateDelete:
		return encodeStateReply(state.Code(txn.Delete(ctx, op.key, op.mode)), nil), nil
	}
	return nil, fmt.Errorf("unknown state method %d", method)
}

package baseline

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/xfaas/xfaas/internal/abi"
)

// Limits equal to xfaas's state store (proxy/state), so that both systems
// refuse the same operations.
const (
	maxKeyBytes   = 1 << 10
	maxValueBytes = 4 << 20
	// lockWait bounds one wait for a key's lock, as proxy/state's LockWait.
	lockWait = 5 * time.Second
	// lockTTL expires the lock of a worker that died holding it.
	lockTTL = 30 * time.Second
)

// releaseLua deletes a lock only if this request still owns it.
const releaseLua = `
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0`

// commitScript applies a mode-1 write (ARGV[2] = value) or delete (no
// ARGV[2]) and releases the lock in one round trip, only if this request
// still owns the lock; it answers 0 when the lock was lost (expired).
var commitScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) ~= ARGV[1] then return 0 end
if #ARGV >= 2 then redis.call("SET", KEYS[2], ARGV[2]) else redis.call("DEL", KEYS[2]) end
redis.call("DEL", KEYS[1])
return 1`)

// store is one request's access to the function's state in Redis, with the
// semantics of DESIGN.md "State semantics" (pessimistic scheme):
//
//   - mode 0: one GET, SET or DEL per operation;
//   - mode 1 read: takes the key's lock (SET lock NX PX, pipelined with the
//     GET, whose answer is dropped when the lock is taken elsewhere), retried
//     with back-off up to lockWait, as FaaSFlow/SONIC-style lock services do;
//   - mode 1 write or delete: one Lua script that checks the lock is still
//     ours, applies the change and releases the lock;
//   - end of request: releases every lock still held, applying nothing.
//
// A store belongs to the worker's one instance and serves one request at a
// time.
type store struct {
	rdb    *redis.Client
	prefix string // "fn:<function>:" keeps functions apart
	owner  string // this worker's lock token prefix
	seq    uint64
	held   map[string]string // state key -> lock token, for this request
}

func newStore(rdb *redis.Client, function, owner string) *store {
	return &store{rdb: rdb, prefix: "fn:" + function + ":", owner: owner, held: map[string]string{}}
}

var (
	errKeyTooLarge   = errors.New("key too large")
	errValueTooLarge = errors.New("value too large")
	errConflict      = errors.New("lock lost before commit")
	errLockTimeout   = errors.New("lock wait timed out")
	errMode          = errors.New("bad mode")
)

// code maps a store error to its ABI status.
func code(err error) int32 {
	switch {
	case err == nil:
		return abi.OK
	case errors.Is(err, errKeyTooLarge):
		return abi.ErrKeyTooLarge
	case errors.Is(err, errValueTooLarge):
		return abi.ErrValueTooLarge
	case errors.Is(err, errConflict):
		return abi.ErrConflict
	case errors.Is(err, errLockTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return abi.ErrLockTimeout
	case errors.Is(err, errMode):
		return abi.ErrInvalid
	}
	return abi.ErrUnavailable
}

func (s *store) dataKey(key []byte) string { return s.prefix + "k:" + string(key) }
func (s *store) lockKey(key []byte) string { return s.prefix + "l:" + string(key) }

// get reads key; ok is false when it is absent.
func (s *store) get(ctx context.Context, key []byte, mode int32) (val []byte, ok bool, err error) {
	if len(key) > maxKeyBytes {
		return nil, false, errKeyTooLarge
	}
	switch mode {
	case abi.ModeCausal:
		return s.getValue(ctx, key)
	case abi.ModeLinearizable:
		if _, open := s.held[string(key)]; open {
			return s.getValue(ctx, key)
		}
		return s.lockAndGet(ctx, key)
	}
	return nil, false, errMode
}

func (s *store) getValue(ctx context.Context, key []byte) ([]byte, bool, error) {
	val, err := s.rdb.Get(ctx, s.dataKey(key)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	return val, err == nil, err
}

// lockAndGet takes key's lock and reads it in one round trip per attempt.
func (s *store) lockAndGet(ctx context.Context, key []byte) ([]byte, bool, error) {
	token := s.token()
	lockKey, dataKey := s.lockKey(key), s.dataKey(key)
	deadline := time.Now().Add(lockWait)
	backoff := 20 * time.Microsecond
	for {
		var locked *redis.BoolCmd
		var get *redis.StringCmd
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			locked = p.SetNX(ctx, lockKey, token, lockTTL)
			get = p.Get(ctx, dataKey)
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, false, err
		}
		if locked.Val() {
			s.held[string(key)] = token
			val, err := get.Bytes()
			if errors.Is(err, redis.Nil) {
				return nil, false, nil
			}
			return val, err == nil, err
		}
		if time.Now().After(deadline) {
			return nil, false, errLockTimeout
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(backoff + rand.N(backoff)):
		}
		backoff = min(2*backoff, time.Millisecond)
	}
}

func (s *store) token() string {
	s.seq++
	return s.owner + ":" + strconv.FormatUint(s.seq, 10)
}

// put writes key; in mode 1 it commits and closes the key's section (or,
// without one, is a blind linearizable write under the lock).
func (s *store) put(ctx context.Context, key, val []byte, mode int32) error {
	if len(key) > maxKeyBytes {
		return errKeyTooLarge
	}
	if len(val) > maxValueBytes {
		return errValueTooLarge
	}
	switch mode {
	case abi.ModeCausal:
		return s.rdb.Set(ctx, s.dataKey(key), val, 0).Err()
	case abi.ModeLinearizable:
		return s.commit(ctx, key, []any{val})
	}
	return errMode
}

// del deletes key, in mode 1 as put does.
func (s *store) del(ctx context.Context, key []byte, mode int32) error {
	if len(key) > maxKeyBytes {
		return errKeyTooLarge
	}
	switch mode {
	case abi.ModeCausal:
		return s.rdb.Del(ctx, s.dataKey(key)).Err()
	case abi.ModeLinearizable:
		return s.commit(ctx, key, nil)
	}
	return errMode
}

// commit applies a mode-1 write (val is the value) or delete (val is nil)
// and releases the key's lock.
func (s *store) commit(ctx context.Context, key []byte, val []any) error {
	token, open := s.held[string(key)]
	if !open { // blind write: take the lock first
		if _, _, err := s.lockAndGet(ctx, key); err != nil {
			return err
		}
		token = s.held[string(key)]
	}
	delete(s.held, string(key))
	args := append([]any{token}, val...)
	n, err := commitScript.Run(ctx, s.rdb, []string{s.lockKey(key), s.dataKey(key)}, args...).Int()
	if err != nil {
		return err
	}
	if n == 0 {
		return errConflict
	}
	return nil
}

// end releases the locks of sections the request left open, applying
// nothing of them.
func (s *store) end(ctx context.Context) {
	if len(s.held) == 0 {
		return
	}
	// The request may have ended by its deadline: release anyway.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for key, token := range s.held {
			p.Eval(ctx, releaseLua, []string{s.lockKey([]byte(key))}, token)
		}
		return nil
	})
	clear(s.held)
}

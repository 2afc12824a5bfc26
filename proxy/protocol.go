package proxy

import (
	"encoding/json"
	"time"

	"github.com/xfaas/xfaas/internal/fnconfig"
	"github.com/xfaas/xfaas/internal/wire"
)

// Methods of the container's wire protocol. The numbers are part of the
// protocol between the control plane and containers of the same release.
const (
	methodInvoke      uint8 = 1  // control plane → container
	methodBind        uint8 = 2  // control plane → pool container
	methodStatus      uint8 = 3  // control plane → container
	methodCheckpoint  uint8 = 4  // control plane → primary; checkpointRequest
	methodStateGet    uint8 = 10 // secondary → primary
	methodStatePut    uint8 = 11 // secondary → primary
	methodStateDelete uint8 = 12 // secondary → primary
	methodStateEnd    uint8 = 13 // secondary → primary
)

// Role is a container's place in its session namespace.
type Role string

// Roles of DESIGN.md.
const (
	RolePool      Role = "pool"
	RolePrimary   Role = "primary"
	RoleSecondary Role = "secondary"
)

// Binding turns a pool container into a session container.
type Binding struct {
	Function string
	Session  string
	Role     Role
	Config   fnconfig.Config
	// Module is the wasm module; its digest is checked against Digest when
	// Digest is set.
	Module []byte
	Digest string
	// Primary is the primary's address, for a secondary.
	Primary string
	// Restore makes a primary restore the session's latest checkpoint (and
	// its log tail) before it serves, if there is one.
	Restore bool
	// RestoreSeq, when not 0, is the seq of the session's latest checkpoint
	// as the control plane knows it: a node copy with that seq is used
	// without asking the durable tier.
	RestoreSeq uint64
	// Incarnation identifies the function's incarnation (lower-case hex):
	// one deleted and created again under its name has a new one. The
	// session's checkpoints and log carry it, and a restore ignores those of
	// another incarnation, so a late checkpoint of a deleted function never
	// becomes a new function's state. Empty for functions from before
	// incarnations (their checkpoints carry none, and restore anywhere).
	Incarnation string
}

func (b *Binding) encode() ([]byte, error) {
	cfg, err := json.Marshal(b.Config)
	if err != nil {
		return nil, err
	}
	e := wire.NewEncoder(len(b.Module) + 512)
	e.String(b.Function).String(b.Session).String(string(b.Role)).Bytes(cfg).Bytes(b.Module).String(b.Digest).String(b.Primary).Bool(b.Restore).Uint(b.RestoreSeq).String(b.Incarnation)
	return e.Payload(), nil
}

func decodeBinding(p []byte) (Binding, error) {
	d := wire.NewDecoder(p)
	b := Binding{Function: d.String(), Session: d.String(), Role: Role(d.String())}
	cfg := d.Bytes()
	b.Module, b.Digest, b.Primary, b.Restore, b.RestoreSeq = d.Bytes(), d.String(), d.String(), d.Bool(), d.Uint()
	b.Incarnation = d.String()
	if err := d.Err(); err != nil {
		return Binding{}, err
	}
	var err error
	b.Config, err = fnconfig.Parse(cfg)
	return b, err
}

// invokeRequest: the input and how long the caller will wait.
func encodeInvoke(input []byte, timeout time.Duration) []byte {
	return wire.NewEncoder(len(input) + 16).Uint(uint64(timeout / time.Microsecond)).Bytes(input).Payload()
}

func decodeInvoke(p []byte) (input []byte, timeout time.Duration, err error) {
	d := wire.NewDecoder(p)
	timeout = time.Duration(d.Uint()) * time.Microsecond
	input = d.Bytes()
	return input, timeout, d.Err()
}

// checkpointRequest: whether to seal (a retire's checkpoint, Seal) and how
// long the caller will wait.
func encodeCheckpoint(seal bool, timeout time.Duration) []byte {
	return wire.NewEncoder(16).Bool(seal).Uint(uint64(timeout / time.Microsecond)).Payload()
}

func decodeCheckpoint(p []byte) (seal bool, timeout time.Duration, err error) {
	d := wire.NewDecoder(p)
	seal, timeout = d.Bool(), time.Duration(d.Uint())*time.Microsecond
	return seal, timeout, d.Err()
}

// State operations: mode, key, value, and the caller's remaining time so a
// lock wait on the primary ends with the request that asked for it.
type stateOp struct {
	mode    int32
	key     []byte
	val     []byte
	timeout time.Duration
}

func (op stateOp) encode() []byte {
	e := wire.NewEncoder(len(op.key) + len(op.val) + 24)
	e.Int(int64(op.mode)).Uint(uint64(op.timeout / time.Microsecond)).Bytes(op.key).Bytes(op.val)
	return e.Payload()
}

func decodeStateOp(p []byte) (stateOp, error) {
	d := wire.NewDecoder(p)
	op := stateOp{mode: d.Int32(), timeout: time.Duration(d.Uint()) * time.Microsecond}
	op.key, op.val = d.Bytes(), d.Bytes()
	return op, d.Err()
}

// stateReply: the ABI status and, for a read, the value.
func encodeStateReply(code int32, val []byte) []byte {
	return wire.NewEncoder(len(val) + 8).Int(int64(code)).Bytes(val).Payload()
}

func decodeStateReply(p []byte) (code int32, val []byte, err error) {
	d := wire.NewDecoder(p)
	code, val = d.Int32(), d.Bytes()
	return code, val, d.Err()
}

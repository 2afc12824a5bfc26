package hint

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"hash"
	"sync"
)

// macKey is an HMAC-SHA256 key with a pool of hashes keyed with it. A keyed
// hash keeps its key's padded state and a scratch buffer for the message, so
// Verify, which runs on every request, neither allocates nor re-derives the
// pads. A macKey is immutable but for its pool and is shared by pointer.
type macKey struct {
	key  [keyLen]byte
	pool sync.Pool // of *macScratch
}

// macScratch is one keyed hash with room for the longest message.
type macScratch struct {
	h   hash.Hash
	msg [maxMACInput]byte
	sum [sha256.Size]byte
}

// maxMACInput bounds every message MACed: a domain, the length-prefixed
// function name, then a label or a token's signed part.
const maxMACInput = len(sivDomain) + 2 + MaxFunctionLen + maxRawLen

func newMACKey(key [keyLen]byte) *macKey {
	k := &macKey{key: key}
	k.pool.New = func() any { return &macScratch{h: hmac.New(sha256.New, k.key[:])} }
	return k
}

// boundMAC returns HMAC-SHA256 under k of domain ‖ u16be(len function) ‖
// function ‖ data. The length prefix keeps the (function, data) split
// unambiguous whatever bytes either holds. function must satisfy
// validFunction and data fit maxRawLen.
func boundMAC[T ~string | ~[]byte](k *macKey, domain, function string, data T) [sha256.Size]byte {
	s := k.pool.Get().(*macScratch)
	defer k.pool.Put(s)
	msg := append(s.msg[:0], domain...)
	msg = binary.BigEndian.AppendUint16(msg, uint16(len(function)))
	msg = append(msg, function...)
	msg = append(msg, data...)
	s.h.Reset()
	s.h.Write(msg)
	return [sha256.Size]byte(s.h.Sum(s.sum[:0]))
}

// equal reports in constant time whether k and o hold the same key.
func (k *macKey) equal(o *macKey) bool {
	return subtle.ConstantTimeCompare(k.key[:], o.key[:]) == 1
}

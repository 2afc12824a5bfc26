// Package hint seals, verifies and opens session hints: the opaque tokens that
// requests carry in the X-Xfaas-Session header and that the control plane
// routes on.
//
// A hint is deterministic authenticated encryption of an application's label
// (a user id, say), bound to one function. Three keys derive from one secret
// Keyset seed:
//
//   - an encryption key and a synthetic-IV key, held only by the application
//     (or by the control plane for functions whose hook computes the label);
//   - a MAC key, the VerifyKey, which is all the platform holds.
//
// With a VerifyKey the platform can tell tokens sealed with the keyset from
// forgeries and derive each token's SessionID, but it cannot read a label nor
// test a guess of one. The construction and its reasons are in RATIONALE.md
// ("Session hints").
//
// Neither labels nor tokens ever appear in this package's error messages;
// logs, Consul and NATS see only SessionIDs.
package hint

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/xfaas/xfaas/internal/apierror"
)

// Header is the HTTP request header that carries a session hint.
const Header = "X-Xfaas-Session"

// Limits on what can be sealed. The token bound follows from the label bound;
// the control plane may reject longer headers before verifying them.
const (
	// MaxLabelLen is the longest label, in bytes, that can be sealed.
	MaxLabelLen = 256
	// MaxFunctionLen is the longest function name, in bytes, a hint can be
	// bound to.
	MaxFunctionLen = 255
	// MaxTokenLen is the length of the longest token, sealed from a label of
	// MaxLabelLen bytes.
	MaxTokenLen = (maxRawLen*8 + 5) / 6
	// MinTokenLen is the length of the shortest token.
	MinTokenLen = (minRawLen*8 + 5) / 6
)

// Token rejections. Both are apierror kind BadHint (HTTP 403), and neither
// says anything about the token beyond its structure.
var (
	// ErrMalformed reports a token that is not a well-formed hint of a version
	// this package knows: bad encoding, impossible length, unknown version.
	ErrMalformed error = &apierror.Error{Kind: apierror.BadHint, Message: "malformed session hint"}
	// ErrForged reports a well-formed token that was not sealed with this
	// keyset for this function: forged, tampered, truncated to a plausible
	// length, or sealed for another function or with another keyset.
	ErrForged error = &apierror.Error{Kind: apierror.BadHint, Message: "session hint not sealed for this function"}
)

// Caller errors, neither of which a client can cause with a token.
var (
	// ErrInvalidLabel reports a label that cannot be sealed: empty or longer
	// than MaxLabelLen. The message never includes the label.
	ErrInvalidLabel = fmt.Errorf("hint: a session label must be 1 to %d bytes", MaxLabelLen)
	// ErrZeroKey reports use of a zero Keyset or VerifyKey, which hold no key.
	ErrZeroKey = errors.New("hint: zero key")

	errFunction = fmt.Errorf("hint: a function name must be 1 to %d bytes", MaxFunctionLen)
)

// SessionID is the platform-side pseudonym of a hint: what logs, Consul and
// NATS see instead of the token. It is either DefaultSession or SessionIDLen
// lowercase hex digits, so it is safe as a Consul Meta value and as a NATS
// subject token.
type SessionID string

// DefaultSession is the session of requests that carry no hint.
const DefaultSession SessionID = "default"

// SessionIDLen is the length of every SessionID but DefaultSession.
const SessionIDLen = 2 * sessionHashLen

// sessionHashLen is how many bytes of SHA-256 a SessionID keeps: 128 bits put
// an accidental collision out of reach (2^64 sessions of one function).
const sessionHashLen = 16

// sessionDomain separates session ids from any other hash of a token.
const sessionDomain = "xfaas-session-v1\x00"

// SessionIDOf returns the session id of token: the first 128 bits of
// SHA-256 over a domain prefix and the token text, in hex. It does not check
// the token; use VerifyKey.Verify, which returns the same id for a token it
// accepts. A token is a bearer secret for its session; its id is not, since
// the hash cannot be inverted to a token.
func SessionIDOf(token string) SessionID {
	var buf [len(sessionDomain) + MaxTokenLen]byte
	sum := sha256.Sum256(append(append(buf[:0], sessionDomain...), token...))
	var id [SessionIDLen]byte
	hex.Encode(id[:], sum[:sessionHashLen])
	return SessionID(id[:])
}

// ValidSessionID reports whether s is a session id this package can produce:
// DefaultSession or SessionIDLen lowercase hex digits. Use it on ids that
// arrive from outside (URL paths, NATS subjects, Consul) before trusting them
// in a subject, a key or a file name.
func ValidSessionID(s string) bool {
	if s == string(DefaultSession) {
		return true
	}
	if len(s) != SessionIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

package hint

import (
	"encoding/base64"
	"fmt"
)

// Token layout, version 1 (see RATIONALE.md, "Session hints"):
//
//	token = base64url-nopad(version ‖ siv ‖ ciphertext ‖ tag)
//	siv   = HMAC-SHA256(K_siv, sivDomain ‖ u16be(len fn) ‖ fn ‖ label)[:16]
//	ct    = AES-256-CTR(K_enc, iv, label ‖ 0x80 ‖ 0x00*), padded to a multiple of 16 bytes,
//	        where iv = siv with the top bits of bytes 8 and 12 cleared (see keystream)
//	tag   = HMAC-SHA256(K_mac, macDomain ‖ u16be(len fn) ‖ fn ‖ version ‖ siv ‖ ct)[:16]
//
// K_enc, K_siv and K_mac are HKDF-SHA256-Expand of the keyset's seed (see
// fromSeed). TestMatchesSpec rebuilds tokens from this description.
const (
	version   = 1
	sivLen    = 16
	tagLen    = 16
	blockLen  = 16
	headerLen = 1 + sivLen
	overhead  = headerLen + tagLen
	minRawLen = overhead + blockLen
	maxRawLen = overhead + (MaxLabelLen/blockLen+1)*blockLen
	sivDomain = "xfaas-hint-v1 siv\x00"
	macDomain = "xfaas-hint-v1"
)

// b64 is the token alphabet. Strict rejects non-zero padding bits, and
// decodeToken rejects the CR and LF the decoder would skip, so every token
// has exactly one accepted spelling and hence one session id.
var b64 = base64.RawURLEncoding.Strict()

// Reasons for ErrMalformed, kept as values so rejecting costs no allocation.
var (
	errLength   = fmt.Errorf("%w: bad length", ErrMalformed)
	errEncoding = fmt.Errorf("%w: bad encoding", ErrMalformed)
	errVersion  = fmt.Errorf("%w: unknown version", ErrMalformed)
)

// rawToken is a decoded token: version ‖ siv ‖ ciphertext ‖ tag.
type rawToken []byte

func (t rawToken) siv() []byte        { return t[1:headerLen] }
func (t rawToken) ciphertext() []byte { return t[headerLen : len(t)-tagLen] }
func (t rawToken) signed() []byte     { return t[:len(t)-tagLen] }
func (t rawToken) tag() []byte        { return t[len(t)-tagLen:] }

// paddedLen is the ciphertext length for a label of n bytes: at least one
// byte of padding, rounded up to whole blocks, so the platform learns a
// label's length only to within 16 bytes.
func paddedLen(n int) int { return (n/blockLen + 1) * blockLen }

// decodeToken checks a token's structure and decodes it into buf.
func decodeToken(buf *[maxRawLen]byte, token string) (rawToken, error) {
	if len(token) < MinTokenLen || len(token) > MaxTokenLen {
		return nil, errLength
	}
	for i := 0; i < len(token); i++ {
		if !isB64(token[i]) {
			return nil, errEncoding
		}
	}
	var text [MaxTokenLen]byte // a stack copy: converting token would allocate
	n, err := b64.Decode(buf[:], text[:copy(text[:], token)])
	if err != nil {
		return nil, errEncoding
	}
	t := rawToken(buf[:n])
	if (n-overhead)%blockLen != 0 {
		return nil, errLength
	}
	if t[0] != version {
		return nil, errVersion
	}
	return t, nil
}

// isB64 reports whether c is in the base64url alphabet.
func isB64(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_'
}

// validFunction reports whether a hint can be bound to function.
func validFunction(function string) bool {
	return len(function) > 0 && len(function) <= MaxFunctionLen
}

// computeTag returns the tag of a token's signed part for function.
// function must satisfy validFunction.
func computeTag(k *macKey, function string, signed []byte) [tagLen]byte {
	sum := boundMAC(k, macDomain, function, signed)
	return [tagLen]byte(sum[:tagLen])
}

// syntheticIV returns the SIV of label for function: a PRF of both under the
// application's SIV key, so it repeats exactly when (function, label) does.
// function must satisfy validFunction and label validLabel.
func syntheticIV[T ~string | ~[]byte](k *macKey, function string, label T) [sivLen]byte {
	sum := boundMAC(k, sivDomain, function, label)
	return [sivLen]byte(sum[:sivLen])
}

// validLabel reports whether label can be sealed.
func validLabel(label string) bool {
	return len(label) > 0 && len(label) <= MaxLabelLen
}

// pad appends label and its padding to dst: 0x80, then zeros up to a
// multiple of the block length.
func pad(dst []byte, label string) []byte {
	end := len(dst) + paddedLen(len(label))
	dst = append(dst, label...)
	dst = append(dst, 0x80)
	for len(dst) < end {
		dst = append(dst, 0)
	}
	return dst
}

// unpad strips the padding pad added; ok is false if there is none.
func unpad(p []byte) (label []byte, ok bool) {
	i := len(p) - 1
	for i >= 0 && p[i] == 0 {
		i--
	}
	if i < 0 || p[i] != 0x80 || len(p)-i > blockLen {
		return nil, false
	}
	return p[:i], true
}

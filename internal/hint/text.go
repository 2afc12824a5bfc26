package hint

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strings"
)

// Text forms of keys: prefix ‖ base64url-nopad(key ‖ checksum), where the
// checksum is SHA-256(prefix ‖ key)[:4]. The prefix says what the key is for
// (a keyset pasted where a verify key belongs is refused by name) and the
// checksum catches copy-and-paste damage that would otherwise yield a valid
// but different key.
const (
	keysetPrefix    = "xfhk1_"
	verifyKeyPrefix = "xfhv1_"
	checksumLen     = 4
	keyTextLen      = len(keysetPrefix) + ((keyLen+checksumLen)*8+5)/6
	keyIDDomain     = "xfaas-hint-v1 key id\x00"
)

// Parse errors. They never include the text, which is a secret.
var (
	errKeyText     = errors.New("hint: malformed key text")
	errKeyChecksum = errors.New("hint: key text checksum mismatch (damaged copy?)")
)

// encodeKey returns the text form of key under prefix.
func encodeKey(prefix string, key *[keyLen]byte) []byte {
	var raw [keyLen + checksumLen]byte
	copy(raw[:], key[:])
	sum := keyChecksum(prefix, key)
	copy(raw[keyLen:], sum[:])
	out := make([]byte, len(prefix)+b64.EncodedLen(len(raw)))
	copy(out, prefix)
	b64.Encode(out[len(prefix):], raw[:])
	return out
}

// decodeKey parses text produced by encodeKey with the same prefix.
func decodeKey(prefix, s string) ([keyLen]byte, error) {
	var key [keyLen]byte
	body, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return key, wrongPrefix(prefix, s)
	}
	if len(s) != keyTextLen || strings.ContainsAny(body, "\r\n") {
		return key, errKeyText
	}
	var raw [keyLen + checksumLen]byte
	if n, err := b64.Decode(raw[:], []byte(body)); err != nil || n != len(raw) {
		return key, errKeyText
	}
	copy(key[:], raw[:keyLen])
	sum := keyChecksum(prefix, &key)
	if subtle.ConstantTimeCompare(sum[:], raw[keyLen:]) != 1 {
		return [keyLen]byte{}, errKeyChecksum
	}
	return key, nil
}

// wrongPrefix explains text that is not of the expected kind.
func wrongPrefix(want, s string) error {
	switch {
	case want == keysetPrefix && strings.HasPrefix(s, verifyKeyPrefix):
		return errors.New("hint: text is a verify key, not a keyset")
	case want == verifyKeyPrefix && strings.HasPrefix(s, keysetPrefix):
		return errors.New("hint: text is a keyset, not a verify key; give the platform only the verify key")
	}
	return errKeyText
}

func keyChecksum(prefix string, key *[keyLen]byte) [checksumLen]byte {
	h := sha256.New()
	h.Write([]byte(prefix))
	h.Write(key[:])
	return [checksumLen]byte(h.Sum(nil))
}

// keyID is the public fingerprint of a MAC key: a hash cannot be inverted to
// the key, so the id may be logged and listed.
func keyID(macKey *[keyLen]byte) string {
	h := sha256.New()
	h.Write([]byte(keyIDDomain))
	h.Write(macKey[:])
	return hex.EncodeToString(h.Sum(nil)[:6])
}

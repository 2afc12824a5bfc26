package hint

import (
	"crypto/hmac"
	"log/slog"
)

// VerifyKey is the platform's half of a Keyset: the MAC key. It accepts the
// tokens its keyset sealed and yields their session ids, but it holds no key
// that could decrypt a token or compute the token of a chosen label, so a
// platform that holds only VerifyKeys cannot read labels or test guesses.
// (Being symmetric, it can tag bytes of its own; Keyset.Open rejects those.)
//
// A VerifyKey is a secret (with it, anyone can mint tokens the platform
// accepts), so String is redacted; MarshalText gives the text form
// "xfhv1_..." to store. The zero VerifyKey holds no key and rejects every
// token with ErrZeroKey. VerifyKeys are safe for concurrent use; compare
// them with Equal.
type VerifyKey struct {
	mac *macKey // nil in the zero VerifyKey
}

// Verify checks that token was sealed with this key's keyset for function
// and returns its session id. The tag comparison is constant-time; the
// checks before it look only at structure (length, alphabet, version).
// Errors wrap ErrMalformed or ErrForged, or are ErrZeroKey.
func (v VerifyKey) Verify(function, token string) (SessionID, error) {
	var buf [maxRawLen]byte
	if _, err := v.check(&buf, function, token); err != nil {
		return "", err
	}
	return SessionIDOf(token), nil
}

// Resolve maps a request's hint header to its session: DefaultSession for an
// empty header, else what Verify returns.
func (v VerifyKey) Resolve(function, header string) (SessionID, error) {
	if header == "" {
		return DefaultSession, nil
	}
	return v.Verify(function, header)
}

// check decodes token into buf and verifies its tag for function.
func (v *VerifyKey) check(buf *[maxRawLen]byte, function, token string) (rawToken, error) {
	if v.mac == nil {
		return nil, ErrZeroKey
	}
	t, err := decodeToken(buf, token)
	if err != nil {
		return nil, err
	}
	if !validFunction(function) {
		return nil, ErrForged // no token is sealed for a name Seal refuses
	}
	want := computeTag(v.mac, function, t.signed())
	if !hmac.Equal(want[:], t.tag()) {
		return nil, ErrForged
	}
	return t, nil
}

// ID returns a short public fingerprint of the key, the same as its
// keyset's ID, for telling keys apart in logs and listings.
func (v VerifyKey) ID() string {
	if v.mac == nil {
		return "zero"
	}
	return keyID(&v.mac.key)
}

// Equal reports whether v and o hold the same key.
func (v VerifyKey) Equal(o VerifyKey) bool {
	if v.mac == nil || o.mac == nil {
		return v.mac == o.mac
	}
	return v.mac.equal(o.mac)
}

// String returns a redacted description naming only ID.
func (v VerifyKey) String() string { return "hint.VerifyKey(" + v.ID() + ")" }

// GoString is String, so that %#v does not print the key either.
func (v VerifyKey) GoString() string { return v.String() }

// LogValue keeps the key out of structured logs.
func (v VerifyKey) LogValue() slog.Value { return slog.StringValue(v.String()) }

// MarshalText returns the secret text form "xfhv1_...". It fails with
// ErrZeroKey for the zero VerifyKey, which must never be stored.
func (v VerifyKey) MarshalText() ([]byte, error) {
	if v.mac == nil {
		return nil, ErrZeroKey
	}
	return encodeKey(verifyKeyPrefix, &v.mac.key), nil
}

// UnmarshalText parses the form MarshalText returns.
func (v *VerifyKey) UnmarshalText(text []byte) error {
	k, err := ParseVerifyKey(string(text))
	if err != nil {
		return err
	}
	*v = k
	return nil
}

// ParseVerifyKey parses the text form of a VerifyKey. Errors never include
// the text.
func ParseVerifyKey(s string) (VerifyKey, error) {
	key, err := decodeKey(verifyKeyPrefix, s)
	if err != nil {
		return VerifyKey{}, err
	}
	return VerifyKey{newMACKey(key)}, nil
}

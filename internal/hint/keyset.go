package hint

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"log/slog"
)

// keyLen is the length of the seed and of every derived key.
const keyLen = 32

// HKDF info strings: one per key, each naming its purpose and version, so
// no key can stand in for another.
const (
	infoEnc = "xfaas hint v1 encryption key"
	infoSIV = "xfaas hint v1 synthetic iv key"
	infoMAC = "xfaas hint v1 mac key"
)

// Keyset is a function's full hint keyset: the application's half (it seals
// and opens tokens) plus the platform's half, VerifyKey. It derives from one
// random 32-byte seed.
//
// A Keyset is a secret: String is redacted and MarshalText gives the text
// form "xfhk1_..." to store. The zero Keyset holds no key; its methods fail
// with ErrZeroKey. Keysets are safe for concurrent use.
type Keyset struct {
	seed   [keyLen]byte
	enc    cipher.Block // AES-256 under K_enc; nil in the zero Keyset
	sivKey *macKey      // K_siv
	mac    VerifyKey    // K_mac
}

// Generate returns a new keyset from a fresh random seed.
func Generate() Keyset {
	var seed [keyLen]byte
	rand.Read(seed[:]) // never fails; see crypto/rand.Read
	return fromSeed(seed)
}

// fromSeed derives the keyset of seed. The seed is uniformly random, so it is
// already a pseudorandom key and HKDF-Expand alone derives from it
// (RFC 5869, section 3.3).
func fromSeed(seed [keyLen]byte) Keyset {
	k := Keyset{seed: seed}
	block, err := aes.NewCipher(derive(&seed, infoEnc))
	if err != nil {
		panic("hint: " + err.Error()) // impossible: the key is 32 bytes
	}
	k.enc = block
	k.sivKey = newMACKey([keyLen]byte(derive(&seed, infoSIV)))
	k.mac = VerifyKey{newMACKey([keyLen]byte(derive(&seed, infoMAC)))}
	return k
}

func derive(seed *[keyLen]byte, info string) []byte {
	key, err := hkdf.Expand(sha256.New, seed[:], info, keyLen)
	if err != nil {
		panic("hint: " + err.Error()) // impossible: 32 bytes is far below HKDF's limit
	}
	return key
}

// VerifyKey returns the platform's half of the keyset: the only part that
// leaves the application.
func (k Keyset) VerifyKey() VerifyKey { return k.mac }

// Seal returns the token of label for function. The same keyset, function
// and label always give the same token, hence the same session id; the
// token carries the label encrypted, padded to a multiple of 16 bytes.
//
// Seal is the application's call; the control plane calls it too, with the
// keyset it holds for a function whose hook computes labels, and routes on
// SessionIDOf the result, which matches the id of a client-sealed token.
func (k Keyset) Seal(function, label string) (string, error) {
	if k.enc == nil {
		return "", ErrZeroKey
	}
	if !validLabel(label) {
		return "", ErrInvalidLabel
	}
	if !validFunction(function) {
		return "", errFunction
	}
	var buf [maxRawLen]byte
	siv := syntheticIV(k.sivKey, function, label)
	t := append(buf[:0], version)
	t = append(t, siv[:]...)
	t = pad(t, label)
	ct := t[headerLen:]
	keystream(k.enc, siv[:]).XORKeyStream(ct, ct)
	tag := computeTag(k.mac.mac, function, t)
	t = append(t, tag[:]...)
	return b64.EncodeToString(t), nil
}

// Open returns the label sealed in token for function. It checks the tag
// like VerifyKey.Verify and then the synthetic IV, so it rejects tokens that
// the platform, which holds the MAC key, could have minted. Errors wrap
// ErrMalformed or ErrForged, or are ErrZeroKey.
func (k Keyset) Open(function, token string) (string, error) {
	if k.enc == nil {
		return "", ErrZeroKey
	}
	var buf [maxRawLen]byte
	t, err := k.mac.check(&buf, function, token)
	if err != nil {
		return "", err
	}
	var ptBuf [maxRawLen]byte
	pt := ptBuf[:len(t.ciphertext())]
	keystream(k.enc, t.siv()).XORKeyStream(pt, t.ciphertext())
	label, ok := unpad(pt)
	if !ok || len(label) == 0 || len(label) > MaxLabelLen {
		return "", ErrForged
	}
	siv := syntheticIV(k.sivKey, function, label)
	if !hmac.Equal(siv[:], t.siv()) {
		return "", ErrForged
	}
	return string(label), nil
}

// keystream returns AES-CTR under block from the synthetic IV. As in
// AES-SIV (RFC 5297, section 2.6), two bits of the counter are cleared so
// that no block of a token carries into the upper 32 or 64 bits: ports
// whose CTR increments only a 32- or 64-bit counter produce the same
// keystream as Go's 128-bit one.
func keystream(block cipher.Block, siv []byte) cipher.Stream {
	var iv [sivLen]byte
	copy(iv[:], siv)
	iv[8] &= 0x7f
	iv[12] &= 0x7f
	return cipher.NewCTR(block, iv[:])
}

// ID returns the public fingerprint of the keyset, equal to its VerifyKey's.
func (k Keyset) ID() string { return k.mac.ID() }

// String returns a redacted description naming only ID.
func (k Keyset) String() string { return "hint.Keyset(" + k.ID() + ")" }

// GoString is String, so that %#v does not print the keys either.
func (k Keyset) GoString() string { return k.String() }

// LogValue keeps the keys out of structured logs.
func (k Keyset) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalText returns the secret text form "xfhk1_...". It fails with
// ErrZeroKey for the zero Keyset, which must never be stored.
func (k Keyset) MarshalText() ([]byte, error) {
	if k.enc == nil {
		return nil, ErrZeroKey
	}
	return encodeKey(keysetPrefix, &k.seed), nil
}

// UnmarshalText parses the form MarshalText returns.
func (k *Keyset) UnmarshalText(text []byte) error {
	ks, err := ParseKeyset(string(text))
	if err != nil {
		return err
	}
	*k = ks
	return nil
}

// ParseKeyset parses the text form of a Keyset. Errors never include the
// text.
func ParseKeyset(s string) (Keyset, error) {
	seed, err := decodeKey(keysetPrefix, s)
	if err != nil {
		return Keyset{}, err
	}
	return fromSeed(seed), nil
}

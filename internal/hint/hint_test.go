package hint

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/xfaas/xfaas/internal/apierror"
)

// testKeyset is a fixed keyset, so that failures reproduce.
func testKeyset(b byte) Keyset {
	var seed [keyLen]byte
	for i := range seed {
		seed[i] = b + byte(i)
	}
	return fromSeed(seed)
}

// testLabels covers the lengths around padding boundaries and bytes that
// resemble padding.
func testLabels() []string {
	labels := []string{"alice", "bob", "user:42", "ünïcødé", "\x00", "\x80", "a\x80", "a\x80\x00\x00", strings.Repeat("\x00", 16)}
	for _, n := range []int{1, 15, 16, 17, 31, 32, 33, 255, MaxLabelLen} {
		labels = append(labels, strings.Repeat("x", n))
	}
	return labels
}

func mustSeal(t testing.TB, k Keyset, function, label string) string {
	t.Helper()
	tok, err := k.Seal(function, label)
	if err != nil {
		t.Fatalf("Seal(%q, label of %d bytes): %v", function, len(label), err)
	}
	return tok
}

func TestSealOpenVerifyRoundTrip(t *testing.T) {
	k := testKeyset(1)
	v := k.VerifyKey()
	for _, label := range testLabels() {
		tok := mustSeal(t, k, "counter", label)
		if len(tok) < MinTokenLen || len(tok) > MaxTokenLen {
			t.Errorf("label of %d bytes: token length %d outside [%d, %d]", len(label), len(tok), MinTokenLen, MaxTokenLen)
		}
		got, err := k.Open("counter", tok)
		if err != nil || got != label {
			t.Errorf("Open(Seal(%q)) = %q, %v", label, got, err)
		}
		id, err := v.Verify("counter", tok)
		if err != nil || id != SessionIDOf(tok) {
			t.Errorf("Verify(Seal(%q)) = %q, %v; want %q", label, id, err, SessionIDOf(tok))
		}
	}
}

func TestSealIsDeterministic(t *testing.T) {
	k := testKeyset(1)
	text, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParseKeyset(string(text))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, label := range testLabels() {
		tok := mustSeal(t, k, "counter", label)
		if again := mustSeal(t, k2, "counter", label); again != tok {
			t.Errorf("label %q sealed twice: %s, then %s", label, tok, again)
		}
		if prev, dup := seen[tok]; dup {
			t.Errorf("labels %q and %q share a token", prev, label)
		}
		seen[tok] = label
	}
}

func TestTokenIsBoundToFunctionAndKeyset(t *testing.T) {
	k, other := testKeyset(1), testKeyset(2)
	tok := mustSeal(t, k, "counter", "alice")
	if mustSeal(t, k, "counter2", "alice") == tok {
		t.Fatal("two functions share a token for one label")
	}
	if mustSeal(t, other, "counter", "alice") == tok {
		t.Fatal("two keysets share a token for one label")
	}
	// Names that a "function ‖ 0 ‖ label" encoding would confuse.
	if mustSeal(t, k, "a", "\x00b") == mustSeal(t, k, "a\x00", "b") {
		t.Fatal("function and label boundary is ambiguous")
	}
	for _, fn := range []string{"counter2", "Counter", "counte", "counter\x00", ""} {
		if _, err := k.VerifyKey().Verify(fn, tok); !errors.Is(err, ErrForged) {
			t.Errorf("Verify for function %q: %v, want ErrForged", fn, err)
		}
		if _, err := k.Open(fn, tok); !errors.Is(err, ErrForged) {
			t.Errorf("Open for function %q: %v, want ErrForged", fn, err)
		}
	}
	if _, err := other.VerifyKey().Verify("counter", tok); !errors.Is(err, ErrForged) {
		t.Errorf("Verify with another keyset's key: %v, want ErrForged", err)
	}
	if _, err := other.Open("counter", tok); !errors.Is(err, ErrForged) {
		t.Errorf("Open with another keyset: %v, want ErrForged", err)
	}
}

func TestSealRejectsBadInput(t *testing.T) {
	k := testKeyset(1)
	for _, label := range []string{"", strings.Repeat("x", MaxLabelLen+1)} {
		if _, err := k.Seal("counter", label); !errors.Is(err, ErrInvalidLabel) {
			t.Errorf("Seal(label of %d bytes): %v, want ErrInvalidLabel", len(label), err)
		}
	}
	for _, fn := range []string{"", strings.Repeat("f", MaxFunctionLen+1)} {
		if _, err := k.Seal(fn, "alice"); err == nil {
			t.Errorf("Seal(function of %d bytes) succeeded", len(fn))
		}
	}
	if _, err := k.Seal(strings.Repeat("f", MaxFunctionLen), strings.Repeat("x", MaxLabelLen)); err != nil {
		t.Errorf("Seal at both limits: %v", err)
	}
}

func TestZeroKeysRefuse(t *testing.T) {
	var k Keyset
	var v VerifyKey
	tok := mustSeal(t, testKeyset(1), "counter", "alice")
	if _, err := k.Seal("counter", "alice"); !errors.Is(err, ErrZeroKey) {
		t.Errorf("zero Keyset Seal: %v", err)
	}
	if _, err := k.Open("counter", tok); !errors.Is(err, ErrZeroKey) {
		t.Errorf("zero Keyset Open: %v", err)
	}
	if _, err := v.Verify("counter", tok); !errors.Is(err, ErrZeroKey) {
		t.Errorf("zero VerifyKey Verify: %v", err)
	}
	if _, err := k.VerifyKey().Verify("counter", tok); !errors.Is(err, ErrZeroKey) {
		t.Errorf("zero Keyset's VerifyKey Verify: %v", err)
	}
	if _, err := k.MarshalText(); !errors.Is(err, ErrZeroKey) {
		t.Errorf("zero Keyset MarshalText: %v", err)
	}
	if _, err := v.MarshalText(); !errors.Is(err, ErrZeroKey) {
		t.Errorf("zero VerifyKey MarshalText: %v", err)
	}
}

func TestRejectionsAreBadHint(t *testing.T) {
	for _, err := range []error{ErrMalformed, ErrForged, errLength, errEncoding, errVersion} {
		if k := apierror.KindOf(err); k != apierror.BadHint || k.Status() != 403 {
			t.Errorf("%v: kind %s status %d, want bad_hint 403", err, k, k.Status())
		}
	}
}

func TestSessionID(t *testing.T) {
	k := testKeyset(1)
	a, b := mustSeal(t, k, "counter", "alice"), mustSeal(t, k, "counter", "bob")
	ida, idb := SessionIDOf(a), SessionIDOf(b)
	for _, id := range []SessionID{ida, idb, DefaultSession} {
		if !ValidSessionID(string(id)) {
			t.Errorf("ValidSessionID(%q) = false", id)
		}
	}
	if len(ida) != SessionIDLen || strings.ToLower(string(ida)) != string(ida) {
		t.Errorf("session id %q: want %d lowercase hex digits", ida, SessionIDLen)
	}
	if ida == idb || ida != SessionIDOf(a) {
		t.Errorf("session ids not a function of the token: %s %s", ida, idb)
	}
	if _, err := hex.DecodeString(string(ida)); err != nil {
		t.Errorf("session id %q is not hex: %v", ida, err)
	}
	bad := []string{"", "Default", "DEFAULT", strings.ToUpper(string(ida)), string(ida[1:]), string(ida) + "0",
		strings.Repeat("g", SessionIDLen), strings.Repeat("0", SessionIDLen-1) + ".", "default\x00"}
	for _, s := range bad {
		if ValidSessionID(s) {
			t.Errorf("ValidSessionID(%q) = true", s)
		}
	}
}

func TestResolve(t *testing.T) {
	k := testKeyset(1)
	if id, err := k.VerifyKey().Resolve("counter", ""); err != nil || id != DefaultSession {
		t.Errorf("Resolve of no header = %q, %v", id, err)
	}
	tok := mustSeal(t, k, "counter", "alice")
	if id, err := k.VerifyKey().Resolve("counter", tok); err != nil || id != SessionIDOf(tok) {
		t.Errorf("Resolve(token) = %q, %v", id, err)
	}
	if _, err := k.VerifyKey().Resolve("counter", "x"); !errors.Is(err, ErrMalformed) {
		t.Errorf("Resolve(garbage) = %v", err)
	}
}

// TestMatchesSpec seals with the construction written out step by step from
// the layout documented in token.go, using only the standard library, so
// the implementation cannot drift from its documentation.
func TestMatchesSpec(t *testing.T) {
	var seed [keyLen]byte
	for i := range seed {
		seed[i] = byte(i)
	}
	kEnc, _ := hkdf.Expand(sha256.New, seed[:], "xfaas hint v1 encryption key", 32)
	kSIV, _ := hkdf.Expand(sha256.New, seed[:], "xfaas hint v1 synthetic iv key", 32)
	kMAC, _ := hkdf.Expand(sha256.New, seed[:], "xfaas hint v1 mac key", 32)
	spec := func(fn, label string) string {
		fnLen := binary.BigEndian.AppendUint16(nil, uint16(len(fn)))
		m := hmac.New(sha256.New, kSIV)
		m.Write([]byte("xfaas-hint-v1 siv\x00"))
		m.Write(fnLen)
		m.Write([]byte(fn + label))
		siv := m.Sum(nil)[:16]
		pt := append([]byte(label), 0x80)
		for len(pt)%16 != 0 {
			pt = append(pt, 0)
		}
		iv := bytes.Clone(siv)
		iv[8] &= 0x7f
		iv[12] &= 0x7f
		block, _ := aes.NewCipher(kEnc)
		ct := make([]byte, len(pt))
		cipher.NewCTR(block, iv).XORKeyStream(ct, pt)
		body := append(append([]byte{1}, siv...), ct...)
		m = hmac.New(sha256.New, kMAC)
		m.Write([]byte("xfaas-hint-v1"))
		m.Write(fnLen)
		m.Write([]byte(fn))
		m.Write(body)
		return base64.RawURLEncoding.EncodeToString(append(body, m.Sum(nil)[:16]...))
	}
	k := fromSeed(seed)
	for _, label := range testLabels() {
		if got, want := mustSeal(t, k, "counter", label), spec("counter", label); got != want {
			t.Errorf("label %q: Seal = %s, spec = %s", label, got, want)
		}
	}
	// A frozen vector: changing it breaks every token in the field.
	const want = "AcP4_viZTJiS9q2si-eR3nPkAtiEwjY3gvg4v34G2DY0NjR4ApkLbPO00Xauhsv3Yw"
	if got := mustSeal(t, k, "counter", "alice"); got != want {
		t.Errorf("frozen vector: Seal = %s, want %s", got, want)
	}
	if got := SessionIDOf(want); got != "73e5f65724f514bf643d09a5340ad085" {
		t.Errorf("frozen vector: session id %s", got)
	}
}

func TestDerivedKeysAreDistinct(t *testing.T) {
	k := testKeyset(1)
	keys := [][]byte{k.seed[:], derive(&k.seed, infoEnc), k.sivKey.key[:], k.mac.mac.key[:]}
	for i := range keys {
		for j := i + 1; j < len(keys); j++ {
			if bytes.Equal(keys[i], keys[j]) {
				t.Errorf("keys %d and %d are equal", i, j)
			}
		}
	}
}

func TestGenerateIsRandom(t *testing.T) {
	a, b := Generate(), Generate()
	if a.ID() == b.ID() || a.seed == b.seed {
		t.Fatal("two generated keysets are equal")
	}
	if mustSeal(t, a, "counter", "alice") == mustSeal(t, b, "counter", "alice") {
		t.Fatal("two generated keysets seal alike")
	}
}

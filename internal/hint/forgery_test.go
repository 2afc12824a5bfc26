package hint

import (
	"encoding/base64"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// verifier is what the forgery matrix runs each tampered token through: the
// platform's Verify and the application's Open must reject alike.
type verifier struct {
	name  string
	check func(token string) error
}

func verifiers(k Keyset, function string) []verifier {
	return []verifier{
		{"Verify", func(tok string) error { _, err := k.VerifyKey().Verify(function, tok); return err }},
		{"Open", func(tok string) error { _, err := k.Open(function, tok); return err }},
	}
}

// expectReject fails unless every verifier rejects tok with want, or with
// either token sentinel when want is nil.
func expectReject(t *testing.T, vs []verifier, what, tok string, want error) {
	t.Helper()
	for _, v := range vs {
		err := v.check(tok)
		switch {
		case err == nil:
			t.Errorf("%s: %s accepted it", what, v.name)
		case want != nil && !errors.Is(err, want):
			t.Errorf("%s: %s: %v, want %v", what, v.name, err, want)
		case want == nil && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrForged):
			t.Errorf("%s: %s: %v, want ErrMalformed or ErrForged", what, v.name, err)
		}
	}
}

// structural is the sentinel a decoded token of n bytes earns when its tag
// does not match: ErrMalformed if no token has that length, else ErrForged.
func structural(n int) error {
	if n < minRawLen || n > maxRawLen || (n-overhead)%blockLen != 0 {
		return ErrMalformed
	}
	return ErrForged
}

func TestForgeryMatrix(t *testing.T) {
	k := testKeyset(1)
	vs := verifiers(k, "counter")
	for _, label := range []string{"alice", strings.Repeat("x", 16), strings.Repeat("y", MaxLabelLen)} {
		tok := mustSeal(t, k, "counter", label)
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			t.Fatal(err)
		}
		enc := base64.RawURLEncoding.EncodeToString

		t.Run("FlipRawBit", func(t *testing.T) {
			for i := range len(raw) * 8 {
				r := slices.Clone(raw)
				r[i/8] ^= 1 << (i % 8)
				want := ErrForged
				if i < 8 {
					want = ErrMalformed // the version byte
				}
				expectReject(t, vs, "bit "+strconv.Itoa(i), enc(r), want)
			}
		})
		t.Run("FlipTextBit", func(t *testing.T) {
			for i := range len(tok) * 8 {
				b := []byte(tok)
				b[i/8] ^= 1 << (i % 8)
				expectReject(t, vs, "text bit "+strconv.Itoa(i), string(b), nil)
			}
		})
		t.Run("TruncateRaw", func(t *testing.T) {
			for n := range len(raw) {
				expectReject(t, vs, "raw length "+strconv.Itoa(n), enc(raw[:n]), structural(n))
			}
		})
		t.Run("TruncateText", func(t *testing.T) {
			for n := range len(tok) {
				expectReject(t, vs, "text length "+strconv.Itoa(n), tok[:n], nil)
			}
		})
		t.Run("ExtendRaw", func(t *testing.T) {
			for n := 1; n <= 2*blockLen; n++ {
				r := append(slices.Clone(raw), make([]byte, n)...)
				expectReject(t, vs, "extended by "+strconv.Itoa(n), enc(r), structural(len(r)))
			}
		})
		t.Run("ExtendText", func(t *testing.T) {
			for _, suffix := range []string{"A", "AA", "AAA", "AAAA", "=", "==", "\n", " ", tok} {
				expectReject(t, vs, "suffix "+strconv.Quote(suffix), tok+suffix, nil)
			}
		})
	}
}

func TestForgeryVersion(t *testing.T) {
	k := testKeyset(1)
	vs := verifiers(k, "counter")
	raw, _ := base64.RawURLEncoding.DecodeString(mustSeal(t, k, "counter", "alice"))
	for v := range 256 {
		if v == version {
			continue
		}
		// Re-tag with the right key: only the version check stands in the way.
		r := slices.Clone(raw)
		r[0] = byte(v)
		tag := computeTag(k.mac.mac, "counter", rawToken(r).signed())
		copy(rawToken(r).tag(), tag[:])
		expectReject(t, vs, "version "+strconv.Itoa(v), base64.RawURLEncoding.EncodeToString(r), ErrMalformed)
	}
}

func TestForgeryEncoding(t *testing.T) {
	k := testKeyset(1)
	vs := verifiers(k, "counter")
	tok := mustSeal(t, k, "counter", "alice")
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	cases := map[string]string{
		"empty":            "",
		"garbage":          "not a token",
		"padded":           base64.URLEncoding.EncodeToString(raw),
		"std alphabet":     base64.StdEncoding.EncodeToString(raw),
		"newline inside":   tok[:20] + "\n" + tok[20:],
		"crlf inside":      tok[:20] + "\r\n" + tok[20:],
		"space inside":     tok[:20] + " " + tok[20:],
		"leading space":    " " + tok,
		"nul inside":       tok[:20] + "\x00" + tok[20:],
		"non-ascii":        tok[:20] + "é" + tok[22:],
		"too long":         strings.Repeat("A", MaxTokenLen+1),
		"much too long":    strings.Repeat(tok, 100),
		"nonzero pad bits": nonCanonical(tok),
		"default":          string(DefaultSession),
		"session id":       string(SessionIDOf(tok)),
	}
	for name, bad := range cases {
		expectReject(t, vs, name, bad, ErrMalformed)
	}
}

// nonCanonical respells tok with non-zero trailing padding bits: the same
// bytes to a lax decoder, so accepting it would give one label two session
// ids.
func nonCanonical(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[last+1])
}

func TestNonCanonicalIsSameBytes(t *testing.T) {
	tok := mustSeal(t, testKeyset(1), "counter", "alice")
	a, _ := base64.RawURLEncoding.DecodeString(tok)
	b, err := base64.RawURLEncoding.DecodeString(nonCanonical(tok))
	if err != nil || string(a) != string(b) {
		t.Fatalf("nonCanonical does not respell the token (%v); the encoding test proves nothing", err)
	}
}

// TestPlatformMintedTokens: the platform holds the MAC key, so it can tag
// any bytes and Verify accepts them (it only routes on them), but Open
// rejects them: without the SIV key no one can make a token that opens.
func TestPlatformMintedTokens(t *testing.T) {
	k := testKeyset(1)
	genuine, _ := base64.RawURLEncoding.DecodeString(mustSeal(t, k, "counter", "alice"))
	for i := 1; i < len(genuine)-tagLen; i++ { // every byte after the version
		r := slices.Clone(genuine)
		r[i] ^= 0x01
		tag := computeTag(k.mac.mac, "counter", rawToken(r).signed())
		copy(rawToken(r).tag(), tag[:])
		tok := base64.RawURLEncoding.EncodeToString(r)
		if _, err := k.VerifyKey().Verify("counter", tok); err != nil {
			t.Fatalf("byte %d: Verify of a MAC-valid token: %v", i, err)
		}
		if label, err := k.Open("counter", tok); !errors.Is(err, ErrForged) {
			t.Errorf("byte %d: Open of a platform-minted token = %q, %v; want ErrForged", i, label, err)
		}
	}
}

// TestVerifyKeyCannotOpen pins the platform's type: a VerifyKey holds one
// key, the MAC key, and has no method that seals or opens. A change here
// needs a security review, not just an updated list.
func TestVerifyKeyCannotOpen(t *testing.T) {
	typ := reflect.TypeFor[VerifyKey]()
	var methods []string
	for m := range typ.Methods() {
		methods = append(methods, m.Name)
	}
	want := []string{"Equal", "GoString", "ID", "LogValue", "MarshalText", "Resolve", "String", "Verify"}
	if !slices.Equal(methods, want) {
		t.Errorf("VerifyKey methods = %v, want %v", methods, want)
	}
	if fields := fieldsOf(typ); !slices.Equal(fields, []string{"mac *hint.macKey"}) {
		t.Errorf("VerifyKey fields = %v", fields)
	}
	if fields := fieldsOf(reflect.TypeFor[macKey]()); !slices.Equal(fields, []string{"key [32]uint8", "pool sync.Pool"}) {
		t.Errorf("macKey fields = %v", fields)
	}
	k := testKeyset(1)
	if v := k.VerifyKey(); v.mac.key == k.seed || v.mac.key == k.sivKey.key || v.mac == k.sivKey {
		t.Error("VerifyKey holds an application key")
	}
}

func fieldsOf(typ reflect.Type) []string {
	var fields []string
	for f := range typ.Fields() {
		fields = append(fields, f.Name+" "+f.Type.String())
	}
	return fields
}

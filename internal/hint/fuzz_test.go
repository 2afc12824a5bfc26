package hint

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// FuzzVerify feeds arbitrary tokens to Verify and Open. Neither may panic,
// every rejection must be a token sentinel, and anything accepted must be a
// token the keyset sealed: Open agrees, and sealing the label again gives
// back exactly the input (one spelling per token, hence one session id).
func FuzzVerify(f *testing.F) {
	k := testKeyset(1)
	for _, label := range testLabels() {
		tok := mustSeal(f, k, "counter", label)
		f.Add("counter", tok)
		f.Add("counter", tok[:len(tok)-1])
		f.Add("other", tok)
		f.Add("counter", nonCanonical(tok))
	}
	raw, _ := base64.RawURLEncoding.DecodeString(mustSeal(f, k, "counter", "alice"))
	raw[0] = 2
	f.Add("counter", base64.RawURLEncoding.EncodeToString(raw))
	f.Add("counter", "")
	f.Add("counter", strings.Repeat("A", MinTokenLen))
	f.Add("counter", strings.Repeat("_", MaxTokenLen))
	f.Add("", "AAAA\nAAAA")
	f.Fuzz(func(t *testing.T, function, token string) {
		id, verr := k.VerifyKey().Verify(function, token)
		label, oerr := k.Open(function, token)
		if verr != nil {
			if !errors.Is(verr, ErrMalformed) && !errors.Is(verr, ErrForged) {
				t.Fatalf("Verify: %v is neither ErrMalformed nor ErrForged", verr)
			}
			if oerr == nil {
				t.Fatal("Open accepted what Verify rejected")
			}
			return
		}
		if id != SessionIDOf(token) || !ValidSessionID(string(id)) {
			t.Fatalf("Verify returned session id %q", id)
		}
		if oerr != nil {
			t.Fatalf("Verify accepted a token Open rejects: %v", oerr)
		}
		if again := mustSeal(t, k, function, label); again != token {
			t.Fatalf("accepted token is not Seal's spelling: %q vs %q", token, again)
		}
	})
}

// FuzzParseKeyset: parsing never panics, and whatever parses is the one
// spelling MarshalText gives back.
func FuzzParseKeyset(f *testing.F) {
	k := testKeyset(1)
	kt, _ := k.MarshalText()
	vt, _ := k.VerifyKey().MarshalText()
	for _, s := range garbleKeyText(string(kt)) {
		f.Add(s)
	}
	f.Add(string(kt))
	f.Add(string(vt))
	f.Fuzz(func(t *testing.T, s string) {
		ks, err := ParseKeyset(s)
		if err == nil {
			if back, _ := ks.MarshalText(); string(back) != s {
				t.Fatalf("ParseKeyset accepted a second spelling %q of %q", s, back)
			}
		}
		v, err := ParseVerifyKey(s)
		if err == nil {
			if back, _ := v.MarshalText(); string(back) != s {
				t.Fatalf("ParseVerifyKey accepted a second spelling %q of %q", s, back)
			}
		}
	})
}

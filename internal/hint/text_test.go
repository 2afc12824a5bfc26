package hint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestKeysetTextRoundTrip(t *testing.T) {
	k := Generate()
	text, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(text), "xfhk1_") || len(text) != keyTextLen {
		t.Fatalf("keyset text %q: want xfhk1_ and %d characters", text, keyTextLen)
	}
	var back Keyset
	if err := back.UnmarshalText(text); err != nil {
		t.Fatal(err)
	}
	if back.seed != k.seed || back.ID() != k.ID() {
		t.Fatal("keyset changed in a text round trip")
	}
	if mustSeal(t, back, "counter", "alice") != mustSeal(t, k, "counter", "alice") {
		t.Fatal("parsed keyset seals differently")
	}
}

func TestVerifyKeyTextRoundTrip(t *testing.T) {
	k := Generate()
	v := k.VerifyKey()
	// The platform stores verify keys in JSON records.
	type record struct {
		Key VerifyKey `json:"hint_key"`
	}
	data, err := json.Marshal(record{v})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"xfhv1_`)) {
		t.Fatalf("JSON %s: want the xfhv1_ text form", data)
	}
	var back record
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Key.Equal(v) || back.Key.Equal(Generate().VerifyKey()) || back.Key.Equal(VerifyKey{}) {
		t.Fatal("verify key changed in a JSON round trip")
	}
	tok := mustSeal(t, k, "counter", "alice")
	if _, err := back.Key.Verify("counter", tok); err != nil {
		t.Fatalf("parsed verify key rejects a genuine token: %v", err)
	}
}

// garbleKeyText returns damaged spellings of a valid key text.
func garbleKeyText(valid string) map[string]string {
	prefix, body := valid[:len(keysetPrefix)], valid[len(keysetPrefix):]
	flipped := []byte(valid)
	flipped[len(prefix)+5] ^= 0x01 // still base64url, checksum no longer matches
	swapped := []byte(valid)
	i := len(prefix)
	for swapped[i] == swapped[i+1] { // swap two different characters
		i++
	}
	swapped[i], swapped[i+1] = swapped[i+1], swapped[i]
	return map[string]string{
		"empty":          "",
		"prefix only":    prefix,
		"no prefix":      body,
		"upper prefix":   strings.ToUpper(prefix) + body,
		"other version":  strings.Replace(prefix, "1", "2", 1) + body,
		"truncated":      valid[:len(valid)-1],
		"extended":       valid + "A",
		"padded":         valid + "=",
		"newline":        valid[:20] + "\n" + valid[21:],
		"trailing space": valid + " ",
		"std alphabet":   prefix + strings.NewReplacer("-", "+", "_", "/").Replace(body) + "+",
		"flipped char":   string(flipped),
		"swapped chars":  string(swapped),
		"token":          "AcP4_viZTJiS9q2si-eR3nPkAtiEwjY3gvg4v34G2DY0NjR4ApkLbPO00Xauhsv3Yw",
		"nul":            prefix + strings.Repeat("\x00", len(body)),
		"all A":          prefix + strings.Repeat("A", len(body)),
	}
}

func TestParseRejectsGarbage(t *testing.T) {
	k := Generate()
	kt, _ := k.MarshalText()
	vt, _ := k.VerifyKey().MarshalText()
	for name, bad := range garbleKeyText(string(kt)) {
		if _, err := ParseKeyset(bad); err == nil {
			t.Errorf("ParseKeyset(%s) succeeded", name)
		} else if strings.Contains(err.Error(), string(kt[6:16])) {
			t.Errorf("ParseKeyset(%s) error quotes the text: %v", name, err)
		}
	}
	for name, bad := range garbleKeyText(string(vt)) {
		if _, err := ParseVerifyKey(bad); err == nil {
			t.Errorf("ParseVerifyKey(%s) succeeded", name)
		}
	}
	// Each kind refuses the other, by name.
	if _, err := ParseVerifyKey(string(kt)); err == nil || !strings.Contains(err.Error(), "keyset, not a verify key") {
		t.Errorf("ParseVerifyKey(keyset) = %v", err)
	}
	if _, err := ParseKeyset(string(vt)); err == nil || !strings.Contains(err.Error(), "verify key, not a keyset") {
		t.Errorf("ParseKeyset(verify key) = %v", err)
	}
	var zero Keyset
	if err := zero.UnmarshalText([]byte("nope")); err == nil || zero.enc != nil {
		t.Errorf("UnmarshalText(garbage) = %v and changed the keyset", err)
	}
}

// TestSecretsStayOutOfOutput: keys print redacted in every fmt verb and
// slog handler, and no error carries a label, a token or key text.
func TestSecretsStayOutOfOutput(t *testing.T) {
	k := testKeyset(1)
	kt, _ := k.MarshalText()
	vt, _ := k.VerifyKey().MarshalText()
	label := "alice@example.com"
	tok := mustSeal(t, k, "counter", label)
	secrets := []string{string(kt[6:]), string(vt[6:]), label, tok[1:20]}

	var out bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		fmt.Fprintf(&out, verb+" "+verb+"\n", k, k.VerifyKey())
	}
	fmt.Fprintln(&out, []Keyset{k}, map[string]VerifyKey{"f": k.VerifyKey()}, struct{ K Keyset }{k})
	slog.New(slog.NewTextHandler(&out, nil)).Info("keys", "keyset", k, "verify_key", k.VerifyKey())
	slog.New(slog.NewJSONHandler(&out, nil)).Info("keys", "keyset", k, "verify_key", k.VerifyKey())
	other := testKeyset(2)
	for _, err := range []error{
		errOf(k.VerifyKey().Verify("other", tok)),
		errOf(other.VerifyKey().Verify("counter", tok)),
		errOf(other.Open("counter", tok)),
		errOf(k.Open("counter", tok[:len(tok)-3])),
		errOf(k.Seal("counter", strings.Repeat(label, 20))),
		errOf(ParseKeyset(string(kt[:len(kt)-1]))),
		errOf(ParseVerifyKey(string(kt))),
	} {
		if err == nil {
			t.Fatal("expected an error")
		}
		fmt.Fprintln(&out, err)
	}
	for _, s := range secrets {
		if bytes.Contains(out.Bytes(), []byte(s)) {
			t.Errorf("output contains a secret %q:\n%s", s, out.String())
		}
	}
	if !strings.Contains(out.String(), k.ID()) {
		t.Errorf("output does not name the key id %s:\n%s", k.ID(), out.String())
	}
}

func errOf[T any](_ T, err error) error { return err }

func TestKeyIDMatchesAcrossHalves(t *testing.T) {
	k := Generate()
	if k.ID() != k.VerifyKey().ID() || len(k.ID()) != 12 {
		t.Fatalf("keyset id %q, verify key id %q", k.ID(), k.VerifyKey().ID())
	}
	if (Keyset{}).ID() != "zero" || (VerifyKey{}).ID() != "zero" {
		t.Fatal("zero keys must say so")
	}
}

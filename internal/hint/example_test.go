package hint_test

import (
	"errors"
	"fmt"

	"github.com/xfaas/xfaas/internal/hint"
)

// The application seals a label; the platform, holding only the verify key,
// routes on the token without learning the label.
func Example() {
	// Application side: the keyset from the local keystore (here, a fixed
	// one so that the output is stable).
	keyset, err := hint.ParseKeyset("xfhk1_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh98bzZq")
	if err != nil {
		panic(err)
	}
	token, err := keyset.Seal("counter", "alice")
	if err != nil {
		panic(err)
	}
	fmt.Println(hint.Header+":", token)

	// Platform side: only the verify key, from deploy.
	text, _ := keyset.VerifyKey().MarshalText()
	verify, _ := hint.ParseVerifyKey(string(text))
	session, err := verify.Verify("counter", token)
	fmt.Println("session:", session, err)

	_, err = verify.Verify("other-function", token)
	fmt.Println("elsewhere:", err, errors.Is(err, hint.ErrForged))

	// Back on the application side, or in a hook's control plane.
	label, err := keyset.Open("counter", token)
	fmt.Println("label:", label, err)
	// Output:
	// X-Xfaas-Session: AcP4_viZTJiS9q2si-eR3nPkAtiEwjY3gvg4v34G2DY0NjR4ApkLbPO00Xauhsv3Yw
	// session: 73e5f65724f514bf643d09a5340ad085 <nil>
	// elsewhere: session hint not sealed for this function true
	// label: alice <nil>
}

// Keys print redacted; MarshalText is the one way to their secret text.
func ExampleKeyset_String() {
	keyset, _ := hint.ParseKeyset("xfhk1_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh98bzZq")
	fmt.Println(keyset)
	fmt.Printf("%#v\n", keyset.VerifyKey())
	// Output:
	// hint.Keyset(c1952259b050)
	// hint.VerifyKey(c1952259b050)
}

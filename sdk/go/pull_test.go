//go:build !wasip1

package xfaas_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	xfaas "github.com/xfaas/xfaas/sdk/go"
	"github.com/xfaas/xfaas/sdk/go/xfaastest"
)

const otherSession = "0123456789abcdef0123456789abcdef"

func TestPull(t *testing.T) {
	xfaastest.Reset()
	xfaastest.DependsOn("orders")
	xfaastest.SetRemote("orders", otherSession, "total", []byte("42"))
	big := strings.Repeat("x", 100<<10) // larger than the SDK's read buffer
	xfaastest.SetRemote("orders", otherSession, "big", []byte(big))
	cases := []struct {
		function, session, key string
		val                    string
		ok                     bool
		err                    error
	}{
		{"orders", otherSession, "total", "42", true, nil},
		{"orders", otherSession, "big", big, true, nil},
		{"orders", otherSession, "missing", "", false, nil},
		{"orders", "default", "total", "", false, xfaas.ErrUnavailable},
		{"billing", otherSession, "total", "", false, xfaas.ErrInvalid},
		{"orders", "alice", "total", "", false, xfaas.ErrInvalid},
		{"orders", otherSession, strings.Repeat("k", 2<<10), "", false, nil}, // no session holds such a key
		{"orders", otherSession, strings.Repeat("k", 64<<10+1), "", false, xfaas.ErrKeyTooLarge},
	}
	for _, c := range cases {
		state(t, func(*xfaas.State) error {
			val, ok, err := xfaas.Pull(c.function, c.session, c.key)
			if string(val) != c.val || ok != c.ok || !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
				t.Errorf("Pull(%s, %s, %.20s) = %.20q, %v, %v; want %.20q, %v, %v", c.function, c.session, c.key, val, ok, err, c.val, c.ok, c.err)
			}
			return nil
		})
	}
	xfaastest.FailNext("pull_state", xfaas.ErrUnavailable)
	state(t, func(*xfaas.State) error {
		_, _, err := xfaas.Pull("orders", otherSession, "total")
		var se *xfaas.StateError
		if !errors.As(err, &se) || se.Op != "pull_state" || se.Function != "orders" || se.Session != otherSession {
			t.Errorf("injected failure: %#v", err)
		}
		if want := `xfaas: pull_state(orders, ` + otherSession + `, "total"): state unavailable`; err.Error() != want {
			t.Errorf("error text %q; want %q", err, want)
		}
		return nil
	})
}

// A report function that reads another function's session: pull mode.
func ExamplePull() {
	xfaastest.Reset()
	xfaastest.DependsOn("orders") // its config: {"depends_on": ["orders"]}
	xfaastest.SetRemote("orders", "default", "total", []byte("42"))
	xfaas.Handle(func(req *xfaas.Request) ([]byte, error) {
		total, ok, err := xfaas.Pull("orders", "default", "total")
		if err != nil {
			return nil, err
		}
		return fmt.Appendf(nil, "total=%s found=%v", total, ok), nil
	})

	out, err := xfaastest.Invoke("")
	fmt.Println(out, err)
	// Output: total=42 found=true <nil>
}

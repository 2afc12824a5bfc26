package xfaas

import "testing"

func TestHeaderValue(t *testing.T) {
	lines := []byte("Authorization: Bearer x\nX-User: alice\nX-User: bob\n")
	for name, want := range map[string]string{"x-user": "alice", "Authorization": "Bearer x", "Cookie": ""} {
		if got := headerValue(lines, name); got != want {
			t.Errorf("headerValue(%q) = %q, want %q", name, got, want)
		}
	}
}

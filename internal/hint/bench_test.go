package hint

import (
	"strconv"
	"strings"
	"testing"
)

// Verify runs on every request that carries a hint; the budget is well
// under 2 µs.
func BenchmarkVerify(b *testing.B) {
	for _, n := range []int{16, MaxLabelLen} {
		b.Run(labelSize(n), func(b *testing.B) {
			k := testKeyset(1)
			v := k.VerifyKey()
			tok := mustSeal(b, k, "counter", strings.Repeat("x", n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify("counter", tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyForged measures rejecting a well-formed forgery, the work
// an attacker can make the control plane do per request.
func BenchmarkVerifyForged(b *testing.B) {
	k := testKeyset(1)
	tok := mustSeal(b, testKeyset(2), "counter", "alice")
	v := k.VerifyKey()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify("counter", tok); err == nil {
			b.Fatal("forgery accepted")
		}
	}
}

func BenchmarkSeal(b *testing.B) {
	for _, n := range []int{16, MaxLabelLen} {
		b.Run(labelSize(n), func(b *testing.B) {
			k := testKeyset(1)
			label := strings.Repeat("x", n)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := k.Seal("counter", label); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	k := testKeyset(1)
	tok := mustSeal(b, k, "counter", strings.Repeat("x", 16))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Open("counter", tok); err != nil {
			b.Fatal(err)
		}
	}
}

func labelSize(n int) string { return "label=" + strconv.Itoa(n) }

// Package example holds the function `xfaas dev` deploys at start: the C
// counter of sdk/c/examples/counter.c, built with the recipe of
// internal/testwasm. A test rebuilds it and fails when this copy is stale,
// so the dev platform needs no C toolchain.
package example

import _ "embed"

// Counter is the counter module: "incr [N]" adds N (default 1) with a
// linearizable read-modify-write and outputs the new value; "get" outputs it.
//
//go:embed counter.wasm
var Counter []byte

// Package baseline is the Redis-backed baseline of `xfaas bench`: the
// traditional serverless model that the paper compares xfaas against. Each
// "traditional container" is a separate OS process (`xfaas bench-worker`)
// running ONE wazero instance of the same wasm module as xfaas, with the
// xfaas host ABI (internal/abi) implemented against a real local
// redis-server: the same imports, status codes and state semantics, mode 1
// built on a Redis lock (SET NX PX, released by a Lua script that checks
// the owner). It scales horizontally only: N containers, one worker each,
// behind a round-robin balancer that prefers idle containers.
//
// The baseline is meant to be an honest opponent: pooled connections, the
// lock and the read of a linearizable section pipelined into one round
// trip, commit and release in one script, and a value too large for the
// guest's buffer answered from the first read instead of fetched twice.
package baseline

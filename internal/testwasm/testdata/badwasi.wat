;; badwasi imports a function that WASI preview 1 does not have.
(module
  (import "wasi_snapshot_preview1" "nonexistent" (func $nonexistent (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (call $nonexistent (i32.const 0))))

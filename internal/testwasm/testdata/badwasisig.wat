;; badwasisig imports WASI's fd_write with the wrong signature.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (call $fd_write (i32.const 0))))

;; badimport imports a host function that the xfaas ABI does not have.
(module
  (import "xfaas" "nonexistent" (func $nonexistent (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (call $nonexistent (i32.const 0))))

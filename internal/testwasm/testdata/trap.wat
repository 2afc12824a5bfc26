;; trap executes unreachable on every request.
(module
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    unreachable))

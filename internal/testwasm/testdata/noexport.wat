;; noexport is a valid module without the handle export.
(module
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    i32.const 0))

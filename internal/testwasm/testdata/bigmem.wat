;; bigmem starts with 200 MiB of linear memory (3200 pages of 64 KiB), so it
;; runs only where worker_memory_mb is at least 200.
(module
  (memory (export "memory") 3200)
  (func (export "handle") (result i32)
    (i32.const 0)))

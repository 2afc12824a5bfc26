;; membomb grows memory 1 MiB at a time and writes to every 4 KiB of it, so
;; that the memory is really resident, until memory.grow fails (the runtime's
;; memory limit); then it traps with unreachable.
(module
  (memory (export "memory") 1)
  (func (export "handle") (result i32)
    (local $page i32) ;; first new wasm page, then the address being touched
    (local $left i32) ;; 4 KiB pages left to touch in the new MiB
    (block $full
      (loop $grow
        (local.set $page (memory.grow (i32.const 16)))
        (br_if $full (i32.eq (local.get $page) (i32.const -1)))
        (local.set $page (i32.mul (local.get $page) (i32.const 65536)))
        (local.set $left (i32.const 256))
        (loop $touch
          (i32.store8 (local.get $page) (i32.const 1))
          (local.set $page (i32.add (local.get $page) (i32.const 4096)))
          (local.set $left (i32.sub (local.get $left) (i32.const 1)))
          (br_if $touch (local.get $left)))
        (br $grow)))
    unreachable))

/*
 * xfaas.h: the xfaas WebAssembly ABI for C guests.
 *
 * This header is the reference for the raw ABI in any language: the host
 * imports, the export, and every number, identical to internal/abi/abi.go.
 * It needs no libc; every helper below is static inline and only what a
 * guest uses ends up in its module.
 *
 * Build (reactor modules export _initialize, which the runtime calls once per
 * instance before the first handle):
 *
 *     clang --target=wasm32-wasi -Os -mexec-model=reactor -o fn.wasm fn.c
 *
 * A module exports handle() -> i32, called once per request: 0 is success,
 * anything else a function error whose message is the output set so far.
 * All pointers and lengths are i32 offsets into the module's memory. Guests
 * have WASI preview 1 for clocks, random, args/env and stdout/stderr (which
 * become logs) but no filesystem and no sockets.
 *
 * State semantics (DESIGN.md, "State semantics"):
 *
 *   mode 0, XFAAS_MODE_CAUSAL: each read or write of a key is atomic; one
 *     request's operations apply in program order; concurrent requests
 *     interleave per operation.
 *
 *   mode 1, XFAAS_MODE_LINEARIZABLE: read_state(k, 1) opens a critical
 *     section on k; the matching write_state(k, 1) or delete_state(k, 1)
 *     commits and closes it. Whether the section holds k's lock
 *     (pessimistic) or records k's version (optimistic) is the function's
 *     "lock" config, not the guest's choice, so write code that is correct
 *     under both:
 *       - on XFAAS_ERR_CONFLICT the section is closed and nothing was
 *         written: redo the whole read-modify-write (see
 *         XFAAS_UPDATE_ATTEMPTS);
 *       - on XFAAS_ERR_DEADLOCK or XFAAS_ERR_LOCK_TIMEOUT every open
 *         section of the request was aborted and its locks released: give
 *         up (return a function error) rather than retry one key; a later
 *         commit of an aborted section fails with the same status, since
 *         its value was computed from a read others may have overtaken;
 *       - a request that returns, traps or times out with a section still
 *         open applies nothing of it and the host releases its lock;
 *       - on a secondary container, XFAAS_ERR_UNAVAILABLE in a request
 *         that made mode 1 calls may mean its sections were lost with the
 *         connection to the primary: every later mode 1 call of the
 *         request then fails with it, so give up too.
 *
 * Pull mode: a function that lists another function in its depends_on
 * config can read that function's sessions' state with xfaas_pull_state, a
 * mode 0 read served directly by the other session's primary container. The
 * platform finds the primary from its address updates (NATS), also after
 * the session moved. A pull costs a network round trip (tens of
 * microseconds), not the ~0.1 us of a read of the function's own state.
 *
 * Values can be large (the platform limit is 4 MiB): a read returns the full
 * length even when it copied less, so read again with a larger buffer when
 * the result exceeds the capacity; xfaas_read_all does that with memory from
 * a request arena (xfaas_alloc), without malloc.
 */
#ifndef XFAAS_H
#define XFAAS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* State modes: the last argument of read_state, write_state, delete_state. */
#define XFAAS_MODE_CAUSAL 0       /* atomic per operation, program order per request */
#define XFAAS_MODE_LINEARIZABLE 1 /* read opens a critical section, write/delete commits and closes it */

/* Input arguments of read_input. */
#define XFAAS_INPUT_BODY 0     /* the request body */
#define XFAAS_INPUT_SESSION 1  /* the session id (hex pseudonym, never the label) */
#define XFAAS_INPUT_FUNCTION 2 /* the function name */
#define XFAAS_INPUT_HEADERS 3  /* hook functions: the request's headers, "Name: value\n" each, sorted */

/* Log levels of xfaas_log. */
#define XFAAS_LEVEL_DEBUG 0 /* detail for debugging */
#define XFAAS_LEVEL_INFO 1  /* normal operation */
#define XFAAS_LEVEL_WARN 2  /* something unexpected, handled */
#define XFAAS_LEVEL_ERROR 3 /* something failed */

/* Status codes of host calls: non-negative is success (a length for reads). */
#define XFAAS_OK 0                     /* success */
#define XFAAS_ERR_ABSENT (-1)          /* the key (or input argument) does not exist */
#define XFAAS_ERR_CONFLICT (-2)        /* optimistic commit found the key changed; section closed, nothing written */
#define XFAAS_ERR_DEADLOCK (-3)        /* the lock wait would deadlock; all open sections of the request aborted */
#define XFAAS_ERR_LOCK_TIMEOUT (-4)    /* the lock wait timed out; all open sections of the request aborted */
#define XFAAS_ERR_KEY_TOO_LARGE (-5)   /* the key exceeds the platform's key size limit */
#define XFAAS_ERR_VALUE_TOO_LARGE (-6) /* the value (or output) exceeds its size limit */
#define XFAAS_ERR_INVALID (-7)         /* a bad mode, pointer or length; a pull from an undeclared function */
#define XFAAS_ERR_UNAVAILABLE (-8)     /* the session state cannot be reached (no reachable primary) */
#define XFAAS_ERR_STATE_FULL (-9)      /* the session's total state size limit was reached */

/* How many times the read-modify-write helpers of the SDKs try a
 * linearizable update before reporting XFAAS_ERR_CONFLICT. */
#define XFAAS_UPDATE_ATTEMPTS 32

/* Bytes enough for any integer formatted by xfaas_format_i64/u64. */
#define XFAAS_INT_DIGITS 21

#define XFAAS_IMPORT(name) __attribute__((import_module("xfaas"), import_name(name)))

/* XFAAS_HANDLE marks the handler: XFAAS_HANDLE int32_t handle(void) { ... } */
#define XFAAS_HANDLE __attribute__((export_name("handle")))

/* XFAAS_STR expands a string literal (only a literal) to "pointer, length". */
#define XFAAS_STR(lit) (lit), (int32_t)(sizeof(lit) - 1)

/* ---- host imports: the raw ABI ---------------------------------------- */

/* Copies up to len bytes of input argument arg (XFAAS_INPUT_*) to buf;
 * returns its full length, or XFAAS_ERR_ABSENT if arg does not exist. */
XFAAS_IMPORT("read_input")
int32_t xfaas_read_input(int32_t arg, void *buf, int32_t len);

/* Sets the response body (replacing earlier output); the host copies it.
 * Returns 0 or a negative error. */
XFAAS_IMPORT("set_output")
int32_t xfaas_set_output(const void *buf, int32_t len);

/* Copies up to len bytes of key's value to buf; returns the value's full
 * length, XFAAS_ERR_ABSENT, or another negative error. Mode 1 opens a
 * critical section on key, also when the key is absent. */
XFAAS_IMPORT("read_state")
int32_t xfaas_read_state(const void *key, int32_t key_len, void *buf, int32_t len, int32_t mode);

/* Sets key to val; returns 0 or a negative error. Mode 1 commits and closes
 * the section opened by read_state(key, 1); on a key without one it is a
 * blind linearizable write. */
XFAAS_IMPORT("write_state")
int32_t xfaas_write_state(const void *key, int32_t key_len, const void *val, int32_t val_len, int32_t mode);

/* Deletes key; returns 0 (also for an absent key) or a negative error.
 * Mode 1 commits and closes the section opened by read_state(key, 1); on a
 * key without one it is a blind linearizable delete. */
XFAAS_IMPORT("delete_state")
int32_t xfaas_delete_state(const void *key, int32_t key_len, int32_t mode);

/* Writes a log line attributed to the session at level (XFAAS_LEVEL_*). */
XFAAS_IMPORT("log")
void xfaas_log(int32_t level, const void *buf, int32_t len);

/* Reads key (mode 0) from the session `session` (a session id: 32 lowercase
 * hex digits, or "default") of function fn, from that session's primary
 * (pull mode). Copies up to len bytes of the value to buf and returns its
 * full length, or XFAAS_ERR_ABSENT; XFAAS_ERR_UNAVAILABLE when no primary
 * of the session is known or it cannot be reached; XFAAS_ERR_INVALID when
 * fn is not in the function's depends_on config, session is not a session
 * id, or a pointer is bad. */
XFAAS_IMPORT("pull_state")
int32_t xfaas_pull_state(const void *fn, int32_t fn_len, const void *session, int32_t session_len,
                         const void *key, int32_t key_len, void *buf, int32_t len);

/* ---- helpers ----------------------------------------------------------- */

/* xfaas_strlen is strlen without libc. */
static inline int32_t xfaas_strlen(const char *s) {
  int32_t n = 0;
  while (s[n]) n++;
  return n;
}

/* xfaas_input copies up to cap bytes of the request body to buf and returns
 * the body's full length: when it exceeds cap, the copy was truncated. */
static inline int32_t xfaas_input(void *buf, int32_t cap) {
  return xfaas_read_input(XFAAS_INPUT_BODY, buf, cap);
}

/* xfaas_output_str sets the response body to the C string s. */
static inline int32_t xfaas_output_str(const char *s) {
  return xfaas_set_output(s, xfaas_strlen(s));
}

/* xfaas_get reads key in mode 0, like xfaas_read_state. */
static inline int32_t xfaas_get(const char *key, int32_t key_len, void *buf, int32_t cap) {
  return xfaas_read_state(key, key_len, buf, cap, XFAAS_MODE_CAUSAL);
}

/* xfaas_set writes key in mode 0. */
static inline int32_t xfaas_set(const char *key, int32_t key_len, const void *val, int32_t len) {
  return xfaas_write_state(key, key_len, val, len, XFAAS_MODE_CAUSAL);
}

/* xfaas_del deletes key in mode 0. */
static inline int32_t xfaas_del(const char *key, int32_t key_len) {
  return xfaas_delete_state(key, key_len, XFAAS_MODE_CAUSAL);
}

/* xfaas_begin opens a critical section on key and reads it (mode 1). */
static inline int32_t xfaas_begin(const char *key, int32_t key_len, void *buf, int32_t cap) {
  return xfaas_read_state(key, key_len, buf, cap, XFAAS_MODE_LINEARIZABLE);
}

/* xfaas_commit writes key and closes its critical section (mode 1). */
static inline int32_t xfaas_commit(const char *key, int32_t key_len, const void *val, int32_t len) {
  return xfaas_write_state(key, key_len, val, len, XFAAS_MODE_LINEARIZABLE);
}

/* xfaas_commit_delete deletes key and closes its critical section (mode 1). */
static inline int32_t xfaas_commit_delete(const char *key, int32_t key_len) {
  return xfaas_delete_state(key, key_len, XFAAS_MODE_LINEARIZABLE);
}

/* xfaas_log_str logs the C string msg at level. */
static inline void xfaas_log_str(int32_t level, const char *msg) {
  xfaas_log(level, msg, xfaas_strlen(msg));
}

/* xfaas_strerror describes a status code. */
static inline const char *xfaas_strerror(int32_t status) {
  switch (status) {
  case XFAAS_OK: return "ok";
  case XFAAS_ERR_ABSENT: return "absent";
  case XFAAS_ERR_CONFLICT: return "conflict";
  case XFAAS_ERR_DEADLOCK: return "deadlock";
  case XFAAS_ERR_LOCK_TIMEOUT: return "lock timeout";
  case XFAAS_ERR_KEY_TOO_LARGE: return "key too large";
  case XFAAS_ERR_VALUE_TOO_LARGE: return "value too large";
  case XFAAS_ERR_INVALID: return "invalid argument";
  case XFAAS_ERR_UNAVAILABLE: return "state unavailable";
  case XFAAS_ERR_STATE_FULL: return "state full";
  default: return status > 0 ? "ok" : "unknown error";
  }
}

/* xfaas_fail sets the output to the description of status and returns 1,
 * so that "return xfaas_fail(st);" ends handle with a function error. */
static inline int32_t xfaas_fail(int32_t status) {
  xfaas_output_str(xfaas_strerror(status));
  return 1;
}

/* ---- request arena: memory without malloc ------------------------------
 *
 * xfaas_alloc hands out memory taken directly from linear memory with
 * memory.grow; xfaas_free_all takes all of it back. Call xfaas_free_all at
 * the start of handle, so that a warm instance reuses the same memory for
 * every request instead of growing. Mixing it with malloc is safe: wasi-libc's
 * malloc also takes memory with memory.grow and copes with growth by others,
 * and the arena moves to the new end of memory when someone else grew it
 * (leaving its old memory unused). */

static char *xfaas__arena;       /* start of the arena */
static uint32_t xfaas__arena_cap;  /* its size: a multiple of 64 KiB */
static uint32_t xfaas__arena_used; /* bytes handed out: a multiple of 8 */

/* xfaas__reserve makes room for n more bytes in the arena; it returns 0 when
 * memory cannot grow. */
static inline int xfaas__reserve(uint32_t n) {
  if (n <= xfaas__arena_cap - xfaas__arena_used) return 1;
  uintptr_t end = __builtin_wasm_memory_size(0) * 65536;
  if ((uintptr_t)xfaas__arena + xfaas__arena_cap != end) {
    xfaas__arena = (char *)end; /* first use, or memory grew under us: start anew */
    xfaas__arena_cap = 0;
    xfaas__arena_used = 0;
  }
  uintptr_t pages = ((uintptr_t)n - (xfaas__arena_cap - xfaas__arena_used) + 65535) / 65536;
  if (__builtin_wasm_memory_grow(0, pages) == (uintptr_t)-1) return 0;
  xfaas__arena_cap += (uint32_t)(pages * 65536);
  return 1;
}

/* xfaas_alloc returns n bytes of arena memory, 8-byte aligned and valid
 * until the next xfaas_free_all, or 0 when memory cannot grow. */
static inline void *xfaas_alloc(int32_t n) {
  uint32_t size = ((uint32_t)n + 7) & ~7u;
  if (n < 0 || !xfaas__reserve(size)) return 0;
  char *p = xfaas__arena + xfaas__arena_used;
  xfaas__arena_used += size;
  return p;
}

/* xfaas_free_all releases everything xfaas_alloc and the xfaas_*_all
 * readers handed out, for reuse by the next request. */
static inline void xfaas_free_all(void) { xfaas__arena_used = 0; }

/* xfaas__top returns the unused part of the arena, at least min bytes long,
 * and its length in *room; 0 when memory cannot grow. */
static inline char *xfaas__top(int32_t min, int32_t *room) {
  if (!xfaas__reserve((uint32_t)min)) return 0;
  uint32_t avail = xfaas__arena_cap - xfaas__arena_used;
  *room = avail > 0x7ffffff8u ? 0x7ffffff8 : (int32_t)avail;
  return xfaas__arena + xfaas__arena_used;
}

/* xfaas__keep hands out the first n bytes of the unused part of the arena,
 * which xfaas__top returned with room >= n. */
static inline void xfaas__keep(int32_t n) {
  if (n > 0) xfaas__arena_used += ((uint32_t)n + 7) & ~7u;
}

/* xfaas_input_all reads the whole request body into the arena. It returns
 * its length (or a negative status) and points *body at it. */
static inline int32_t xfaas_input_all(char **body) {
  int32_t room, min = 4096;
  for (;;) {
    char *buf = xfaas__top(min, &room);
    if (buf == 0) return XFAAS_ERR_VALUE_TOO_LARGE;
    int32_t n = xfaas_read_input(XFAAS_INPUT_BODY, buf, room);
    if (n <= room) {
      xfaas__keep(n);
      *body = buf;
      return n;
    }
    min = n; /* too small: read again */
  }
}

/* xfaas_read_all reads key in mode into the arena, whatever the value's
 * size. It returns the value's length (or a negative status, such as
 * XFAAS_ERR_ABSENT) and points *val at the value. A value larger than the
 * free arena is read twice; in mode 1 the second read stays in the critical
 * section the first one opened. */
static inline int32_t xfaas_read_all(const char *key, int32_t key_len, int32_t mode, char **val) {
  int32_t room, min = 4096;
  for (;;) {
    char *buf = xfaas__top(min, &room);
    if (buf == 0) return XFAAS_ERR_VALUE_TOO_LARGE;
    int32_t n = xfaas_read_state(key, key_len, buf, room, mode);
    if (n <= room) {
      xfaas__keep(n);
      *val = buf;
      return n;
    }
    min = n; /* too small (or the value grew since): read again */
  }
}

/* xfaas_pull_all pulls key from session of function fn (see
 * xfaas_pull_state) into the arena, whatever the value's size. It returns
 * the value's length (or a negative status) and points *val at the value. A
 * value larger than the free arena costs a second pull. */
static inline int32_t xfaas_pull_all(const char *fn, int32_t fn_len, const char *session, int32_t session_len,
                                     const char *key, int32_t key_len, char **val) {
  int32_t room, min = 4096;
  for (;;) {
    char *buf = xfaas__top(min, &room);
    if (buf == 0) return XFAAS_ERR_VALUE_TOO_LARGE;
    int32_t n = xfaas_pull_state(fn, fn_len, session, session_len, key, key_len, buf, room);
    if (n <= room) {
      xfaas__keep(n);
      *val = buf;
      return n;
    }
    min = n; /* too small (or the value grew since): pull again */
  }
}

/* xfaas_is_space reports whether c is ASCII white space. */
static inline int xfaas_is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* xfaas_trim drops leading and trailing ASCII white space of s[0:*len),
 * returning the new start and updating *len. */
static inline const char *xfaas_trim(const char *s, int32_t *len) {
  int32_t n = *len;
  while (n > 0 && xfaas_is_space(*s)) s++, n--;
  while (n > 0 && xfaas_is_space(s[n - 1])) n--;
  *len = n;
  return s;
}

/* xfaas_cut splits s[0:len) around the first space, like Go's strings.Cut:
 * *before_len is the length of the part before it, and *after with
 * *after_len is the part after it. It returns 1 if there was a space, 0
 * otherwise (then all of s is "before" and "after" is empty). */
static inline int xfaas_cut(const char *s, int32_t len, int32_t *before_len, const char **after,
                            int32_t *after_len) {
  for (int32_t i = 0; i < len; i++) {
    if (s[i] == ' ') {
      *before_len = i;
      *after = s + i + 1;
      *after_len = len - i - 1;
      return 1;
    }
  }
  *before_len = len;
  *after = s + len;
  *after_len = 0;
  return 0;
}

/* xfaas_equal reports whether s[0:len) equals the C string word. */
static inline int xfaas_equal(const char *s, int32_t len, const char *word) {
  int32_t i = 0;
  for (; i < len; i++) {
    if (word[i] == 0 || word[i] != s[i]) return 0;
  }
  return word[i] == 0;
}

/* xfaas_parse_u64 parses the decimal s[0:len) (digits only) into *out.
 * It returns 0, or -1 when s is empty, has another character or overflows. */
static inline int xfaas_parse_u64(const char *s, int32_t len, uint64_t *out) {
  if (len <= 0) return -1;
  uint64_t v = 0;
  for (int32_t i = 0; i < len; i++) {
    uint32_t d = (uint32_t)(s[i] - '0');
    if (d > 9 || v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

/* xfaas_parse_i64 parses an optionally signed decimal s[0:len) into *out,
 * with the rules of Go's strconv.ParseInt(s, 10, 64). It returns 0 or -1. */
static inline int xfaas_parse_i64(const char *s, int32_t len, int64_t *out) {
  int neg = len > 0 && s[0] == '-';
  if (len > 0 && (s[0] == '-' || s[0] == '+')) s++, len--;
  uint64_t u;
  if (xfaas_parse_u64(s, len, &u) != 0) return -1;
  if (u > (uint64_t)INT64_MAX + (uint64_t)neg) return -1;
  *out = neg ? (int64_t)(0 - u) : (int64_t)u;
  return 0;
}

/* xfaas_format_u64 writes v in decimal to buf (XFAAS_INT_DIGITS bytes are
 * enough) and returns the length; no NUL is written. */
static inline int32_t xfaas_format_u64(uint64_t v, char *buf) {
  char tmp[XFAAS_INT_DIGITS];
  int32_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (int32_t i = 0; i < n; i++) buf[i] = tmp[n - 1 - i];
  return n;
}

/* xfaas_format_i64 writes v in decimal to buf (XFAAS_INT_DIGITS bytes are
 * enough) and returns the length; no NUL is written. */
static inline int32_t xfaas_format_i64(int64_t v, char *buf) {
  if (v >= 0) return xfaas_format_u64((uint64_t)v, buf);
  buf[0] = '-';
  return 1 + xfaas_format_u64(0 - (uint64_t)v, buf + 1);
}

/* xfaas_output_i64 sets the response body to v in decimal. */
static inline int32_t xfaas_output_i64(int64_t v) {
  char buf[XFAAS_INT_DIGITS];
  return xfaas_set_output(buf, xfaas_format_i64(v, buf));
}

/* xfaas_output_u64 sets the response body to v in decimal. */
static inline int32_t xfaas_output_u64(uint64_t v) {
  char buf[XFAAS_INT_DIGITS];
  return xfaas_set_output(buf, xfaas_format_u64(v, buf));
}

#ifdef __cplusplus
}
#endif

#endif /* XFAAS_H */

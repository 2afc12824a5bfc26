/* lockpair takes two critical sections for a deadlock test. Body "A B [N]":
 * read_state(A, 1), a busy loop of N iterations (default 0), read_state(B,
 * 1), then write_state(A, 1) and write_state(B, 1), each writing the body.
 * It outputs the four status codes in decimal, in that order, separated by
 * spaces. Requests "a b N" and "b a N" at once deadlock under pessimistic
 * locking: the host must fail one of them with XFAAS_ERR_DEADLOCK (or
 * XFAAS_ERR_LOCK_TIMEOUT), which aborts every open section of that request;
 * its writes then run as blind linearizable writes. */
#include "xfaas.h"

XFAAS_HANDLE int32_t handle(void) {
  xfaas_free_all();
  char *in, val[16];
  int32_t n = xfaas_input_all(&in);
  if (n < 0) return xfaas_fail(n);
  const char *body = xfaas_trim(in, &n);
  int32_t a_len, b_len, rest_len, iter_len;
  const char *b, *iter;
  xfaas_cut(body, n, &a_len, &b, &rest_len);
  xfaas_cut(b, rest_len, &b_len, &iter, &iter_len);
  uint64_t iters = 0;
  if (a_len == 0 || b_len == 0 || (iter_len > 0 && xfaas_parse_u64(iter, iter_len, &iters) != 0))
    return xfaas_output_str("usage: A B [N]"), 1;

  int32_t st[4];
  st[0] = xfaas_begin(body, a_len, val, sizeof val);
  for (volatile uint64_t i = 0; i < iters; i++) {
  }
  st[1] = xfaas_begin(b, b_len, val, sizeof val);
  st[2] = xfaas_commit(body, a_len, body, n);
  st[3] = xfaas_commit(b, b_len, body, n);

  char out[4 * XFAAS_INT_DIGITS];
  int32_t len = 0;
  for (int i = 0; i < 4; i++) {
    if (i > 0) out[len++] = ' ';
    len += xfaas_format_i64(st[i], out + len);
  }
  return xfaas_set_output(out, len) == XFAAS_OK ? 0 : 1;
}

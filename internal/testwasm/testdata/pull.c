/* pull reads a key of another function's session with pull_state. Body:
 *
 *   FN SESSION KEY [N]
 *
 * pulls KEY from SESSION of function FN, N times (default 1), and outputs
 * the value of the last pull, or its status code in decimal when negative
 * (the request still succeeds, so a test reads the code). */
#include "xfaas.h"

XFAAS_HANDLE int32_t handle(void) {
  xfaas_free_all();
  char *in;
  int32_t n = xfaas_input_all(&in);
  if (n < 0) return xfaas_fail(n);
  const char *body = xfaas_trim(in, &n);
  int32_t fn_len, rest_len, session_len, key_len, count_len;
  const char *session, *rest, *key, *count_s;
  xfaas_cut(body, n, &fn_len, &session, &rest_len);
  xfaas_cut(session, rest_len, &session_len, &key, &rest_len);
  xfaas_cut(key, rest_len, &key_len, &count_s, &count_len);
  uint64_t count = 1;
  if (key_len == 0 || (count_len > 0 && xfaas_parse_u64(count_s, count_len, &count) != 0))
    return xfaas_output_str("usage: FN SESSION KEY [N]"), 1;
  char *val = 0;
  int32_t st = XFAAS_ERR_INVALID;
  for (uint64_t i = 0; i < count; i++) { /* one host call each while the value fits the arena */
    st = xfaas_pull_all(body, fn_len, session, session_len, key, key_len, &val);
    if (st < 0) break;
  }
  if (st < 0) return xfaas_output_i64(st) == XFAAS_OK ? 0 : 1;
  return xfaas_set_output(val, st) == XFAAS_OK ? 0 : 1;
}

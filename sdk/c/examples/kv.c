/* kv is a key/value store over the session state, in mode 0.
 *
 *   get K     outputs K's value; a function error "not found" when absent
 *   set K V   sets K to V (the rest of the body, spaces included), outputs ok
 *   del K     deletes K, outputs ok
 *
 * The body is trimmed of surrounding white space. */
#include "../xfaas.h"

static int32_t usage(void) {
  xfaas_output_str("usage: get K | set K V | del K");
  return 1;
}

/* get outputs key's value, whatever its size. */
static int32_t get(const char *key, int32_t key_len) {
  char *val;
  int32_t n = xfaas_read_all(key, key_len, XFAAS_MODE_CAUSAL, &val);
  if (n == XFAAS_ERR_ABSENT) return xfaas_output_str("not found"), 1;
  if (n < 0) return xfaas_fail(n);
  return xfaas_set_output(val, n) == XFAAS_OK ? 0 : 1;
}

XFAAS_HANDLE int32_t handle(void) {
  xfaas_free_all();
  char *in;
  int32_t n = xfaas_input_all(&in);
  if (n < 0) return xfaas_fail(n);
  const char *s = xfaas_trim(in, &n);

  int32_t cmd_len, rest_len, key_len, val_len;
  const char *rest, *val;
  xfaas_cut(s, n, &cmd_len, &rest, &rest_len);
  xfaas_cut(rest, rest_len, &key_len, &val, &val_len);
  if (key_len == 0) return usage();

  int32_t st;
  if (xfaas_equal(s, cmd_len, "get") && key_len == rest_len) {
    return get(rest, key_len);
  } else if (xfaas_equal(s, cmd_len, "set")) {
    st = xfaas_set(rest, key_len, val, val_len);
  } else if (xfaas_equal(s, cmd_len, "del") && key_len == rest_len) {
    st = xfaas_del(rest, key_len);
  } else {
    return usage();
  }
  if (st < 0) return xfaas_fail(st);
  return xfaas_output_str("ok") == XFAAS_OK ? 0 : 1;
}

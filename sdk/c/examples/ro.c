/* ro is the read-only workload of the paper, over key "ro" in mode 0.
 *
 *   init N   writes an N-byte value ('x' repeated) to "ro", outputs ok
 *   value    outputs the value itself
 *   other    outputs the value's length in decimal (0 when absent), which
 *            keeps responses small whatever the value's size
 *
 * The body is trimmed of surrounding white space. */
#include "../xfaas.h"

#define KEY XFAAS_STR("ro")

/* init writes n bytes to the key. */
static int32_t init(const char *arg, int32_t arg_len) {
  uint64_t n;
  if (xfaas_parse_u64(arg, arg_len, &n) != 0 || n > 0x7fffffff)
    return xfaas_output_str("ro: bad size"), 1;
  char *val = xfaas_alloc((int32_t)n);
  if (val == 0) return xfaas_fail(XFAAS_ERR_VALUE_TOO_LARGE);
  for (uint64_t i = 0; i < n; i++) val[i] = 'x';
  int32_t st = xfaas_set(KEY, val, (int32_t)n);
  if (st < 0) return xfaas_fail(st);
  return xfaas_output_str("ok") == XFAAS_OK ? 0 : 1;
}

XFAAS_HANDLE int32_t handle(void) {
  xfaas_free_all();
  char in[32];
  int32_t n = xfaas_input(in, sizeof in);
  if (n > (int32_t)sizeof in) n = 0; /* not a command: report the length */
  const char *s = xfaas_trim(in, &n);
  int32_t cmd_len, arg_len;
  const char *arg;
  xfaas_cut(s, n, &cmd_len, &arg, &arg_len);
  if (xfaas_equal(s, cmd_len, "init")) return init(arg, arg_len);

  char *val;
  int32_t len = xfaas_read_all(KEY, XFAAS_MODE_CAUSAL, &val);
  if (len == XFAAS_ERR_ABSENT) len = 0;
  if (len < 0) return xfaas_fail(len);
  int32_t st = xfaas_equal(s, n, "value") ? xfaas_set_output(val, len) : xfaas_output_i64(len);
  return st == XFAAS_OK ? 0 : 1;
}

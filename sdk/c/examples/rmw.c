/* rmw is the weak read-modify-write workload of the paper, over key "rmw" in
 * mode 0.
 *
 *   init N   writes N zero bytes (at least 8) to "rmw", outputs ok
 *   other    reads "rmw", adds 1 to the little-endian uint64 in its first 8
 *            bytes (an absent or shorter value counts as zeros), writes the
 *            whole value back and outputs the counter in decimal
 *
 * Concurrent requests can lose increments: that is what mode 0 allows (see
 * rmw_linear). The body is trimmed of surrounding white space. */
#include "../xfaas.h"

#define KEY XFAAS_STR("rmw")

/* init writes n zero bytes (at least 8) to the key. */
static int32_t init(const char *arg, int32_t arg_len) {
  uint64_t n;
  if (xfaas_parse_u64(arg, arg_len, &n) != 0 || n > 0x7fffffff)
    return xfaas_output_str("rmw: bad size"), 1;
  if (n < 8) n = 8;
  char *val = xfaas_alloc((int32_t)n);
  if (val == 0) return xfaas_fail(XFAAS_ERR_VALUE_TOO_LARGE);
  for (uint64_t i = 0; i < n; i++) val[i] = 0;
  int32_t st = xfaas_set(KEY, val, (int32_t)n);
  if (st < 0) return xfaas_fail(st);
  return xfaas_output_str("ok") == XFAAS_OK ? 0 : 1;
}

/* bump adds 1 to the counter in the first 8 bytes of the value *val of
 * length *n (a negative *n means absent), padding it to 8 bytes with zeros
 * first, and sets *c to the new count. It returns a status. */
static int32_t bump(char **val, int32_t *n, uint64_t *c) {
  if (*n < 8) {
    char *p = xfaas_alloc(8);
    if (p == 0) return XFAAS_ERR_VALUE_TOO_LARGE;
    for (int32_t i = 0; i < 8; i++) p[i] = i < *n ? (*val)[i] : 0;
    *val = p;
    *n = 8;
  }
  unsigned char *b = (unsigned char *)*val;
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = v << 8 | b[i];
  v++;
  for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
  *c = v;
  return XFAAS_OK;
}

XFAAS_HANDLE int32_t handle(void) {
  xfaas_free_all();
  char in[32];
  int32_t n = xfaas_input(in, sizeof in);
  if (n > (int32_t)sizeof in) n = 0;
  const char *s = xfaas_trim(in, &n);
  int32_t cmd_len, arg_len;
  const char *arg;
  xfaas_cut(s, n, &cmd_len, &arg, &arg_len);
  if (xfaas_equal(s, cmd_len, "init")) return init(arg, arg_len);

  char *val;
  int32_t len = xfaas_read_all(KEY, XFAAS_MODE_CAUSAL, &val);
  if (len < 0 && len != XFAAS_ERR_ABSENT) return xfaas_fail(len);
  uint64_t c;
  int32_t st = bump(&val, &len, &c);
  if (st == XFAAS_OK) st = xfaas_set(KEY, val, len);
  if (st < 0) return xfaas_fail(st);
  return xfaas_output_u64(c) == XFAAS_OK ? 0 : 1;
}

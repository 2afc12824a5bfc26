/* bigkey writes value "v" to a key of N bytes ('k' repeated), N being the
 * body in decimal, in mode 0, and outputs the status code in decimal. */
#include "xfaas.h"

XFAAS_HANDLE int32_t handle(void) {
  xfaas_free_all();
  char in[32];
  int32_t n = xfaas_input(in, sizeof in);
  if (n > (int32_t)sizeof in) n = sizeof in;
  const char *s = xfaas_trim(in, &n);
  uint64_t size;
  if (xfaas_parse_u64(s, n, &size) != 0 || size > 0x7fffffff)
    return xfaas_output_str("usage: N (decimal)"), 1;
  char *key = xfaas_alloc((int32_t)size);
  if (key == 0) return xfaas_output_str("bigkey: out of memory"), 1;
  for (uint64_t i = 0; i < size; i++) key[i] = 'k';
  return xfaas_output_i64(xfaas_set(key, (int32_t)size, XFAAS_STR("v"))) == XFAAS_OK ? 0 : 1;
}

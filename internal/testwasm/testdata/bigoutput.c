/* bigoutput sets an output of N bytes, N being the body in decimal; byte i
 * of the output is 'a' + i % 26. When set_output fails, it outputs the
 * status code in decimal instead and returns 1. */
#include "xfaas.h"

XFAAS_HANDLE int32_t handle(void) {
  xfaas_free_all();
  char in[32];
  int32_t n = xfaas_input(in, sizeof in);
  if (n > (int32_t)sizeof in) n = sizeof in; /* fails to parse below */
  const char *s = xfaas_trim(in, &n);
  uint64_t size;
  if (xfaas_parse_u64(s, n, &size) != 0 || size > 0x7fffffff)
    return xfaas_output_str("usage: N (decimal)"), 1;
  char *out = xfaas_alloc((int32_t)size);
  if (out == 0) return xfaas_output_str("bigoutput: out of memory"), 1;
  for (uint64_t i = 0; i < size; i++) out[i] = (char)('a' + i % 26);
  int32_t st = xfaas_set_output(out, (int32_t)size);
  if (st != XFAAS_OK) return xfaas_output_i64(st), 1;
  return 0;
}

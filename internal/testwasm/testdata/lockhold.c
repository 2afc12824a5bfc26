/* lockhold opens a critical section on the key named by the body,
 * read_state(K, 1), and returns success without closing it: the runtime must
 * apply nothing of the section and release its lock. It outputs the read's
 * status (the value's length, or a negative code) in decimal. */
#include "xfaas.h"

XFAAS_HANDLE int32_t handle(void) {
  xfaas_free_all();
  char *in, val[16];
  int32_t n = xfaas_input_all(&in);
  if (n < 0) return xfaas_fail(n);
  const char *key = xfaas_trim(in, &n);
  return xfaas_output_i64(xfaas_begin(key, n, val, sizeof val)) == XFAAS_OK ? 0 : 1;
}

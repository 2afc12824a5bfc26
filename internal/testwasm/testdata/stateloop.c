/* stateloop repeats one state operation in a loop, so that a benchmark can
 * divide the time of one request by the number of operations and learn what
 * a single host call costs. Body:
 *
 *   r KEY N       read KEY (mode 0) N times into a buffer as large as it
 *   w KEY SIZE N  write a SIZE-byte value to KEY (mode 0) N times
 *
 * It outputs N in decimal, or fails with the status of the first failing
 * operation. */
#include "xfaas.h"

XFAAS_HANDLE int32_t handle(void) {
  xfaas_free_all();
  char *in;
  int32_t n = xfaas_input_all(&in);
  if (n < 0) return xfaas_fail(n);
  const char *body = xfaas_trim(in, &n);
  int32_t op_len, key_len, rest_len, arg_len, last_len;
  const char *key, *arg, *last;
  xfaas_cut(body, n, &op_len, &key, &rest_len);
  xfaas_cut(key, rest_len, &key_len, &arg, &arg_len);
  uint64_t size = 0, count = 0;
  if (xfaas_equal(body, op_len, "r")) {
    if (xfaas_parse_u64(arg, arg_len, &count) != 0) return xfaas_fail(XFAAS_ERR_INVALID);
    int32_t len = xfaas_get(key, key_len, 0, 0);
    if (len < 0) return xfaas_fail(len);
    char *buf = xfaas_alloc(len + 1);
    for (uint64_t i = 0; i < count; i++) {
      int32_t st = xfaas_get(key, key_len, buf, len);
      if (st < 0) return xfaas_fail(st);
    }
  } else if (xfaas_equal(body, op_len, "w")) {
    xfaas_cut(arg, arg_len, &arg_len, &last, &last_len);
    if (xfaas_parse_u64(arg, arg_len, &size) != 0 || xfaas_parse_u64(last, last_len, &count) != 0)
      return xfaas_fail(XFAAS_ERR_INVALID);
    char *val = xfaas_alloc((int32_t)size + 1);
    for (uint64_t i = 0; i < size; i++) val[i] = 'v';
    for (uint64_t i = 0; i < count; i++) {
      int32_t st = xfaas_set(key, key_len, val, (int32_t)size);
      if (st < 0) return xfaas_fail(st);
    }
  } else {
    return xfaas_fail(XFAAS_ERR_INVALID);
  }
  return xfaas_output_u64(count);
}

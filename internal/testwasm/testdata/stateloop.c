/* stateloop repeats one state operation in a loop, so that a benchmark can
 * divide the time of one request by the number of operations and learn what
 * a single host call costs. Body:
 *
 *   r KEY N       read KEY (mode 0) N times into a buffer as large as it
 *   w KEY SIZE N  write a SIZE-byte value to KEY (mode 0) N times
 *   f PFX SIZE N  fill: write keys PFX0 .. PFX<N-1>, each a SIZE-byte value
 *                 that depends on the key's number (checkpoint tests)
 *   c PFX SIZE N  check what f wrote: outputs how many keys hold exactly it
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
  } else if (xfaas_equal(body, op_len, "f") || xfaas_equal(body, op_len, "c")) {
    xfaas_cut(arg, arg_len, &arg_len, &last, &last_len);
    if (xfaas_parse_u64(arg, arg_len, &size) != 0 || xfaas_parse_u64(last, last_len, &count) != 0 || key_len > 64)
      return xfaas_fail(XFAAS_ERR_INVALID);
    char *val = xfaas_alloc((int32_t)size + 1), *got = xfaas_alloc((int32_t)size + 1);
    char name[96];
    uint64_t good = 0;
    for (uint64_t i = 0; i < count; i++) {
      int32_t name_len = key_len;
      for (int32_t j = 0; j < key_len; j++) name[j] = key[j];
      char digits[24];
      int32_t nd = 0;
      uint64_t v = i;
      do { digits[nd++] = (char)('0' + v % 10); v /= 10; } while (v);
      while (nd) name[name_len++] = digits[--nd];
      for (uint64_t b = 0; b < size; b++) val[b] = (char)('a' + (i + b) % 26);
      if (body[0] == 'f') {
        int32_t st = xfaas_set(name, name_len, val, (int32_t)size);
        if (st < 0) return xfaas_fail(st);
        good++;
      } else {
        int32_t st = xfaas_get(name, name_len, got, (int32_t)size + 1);
        if (st != (int32_t)size) continue;
        uint64_t b = 0;
        while (b < size && got[b] == val[b]) b++;
        if (b == size) good++;
      }
    }
    return xfaas_output_u64(good);
  } else {
    return xfaas_fail(XFAAS_ERR_INVALID);
  }
  return xfaas_output_u64(count);
}

/* counter is a linearizable counter in key "count", stored in decimal.
 *
 *   incr     (or an empty body) adds 1 and outputs the new value
 *   incr N   adds N (a signed decimal) and outputs the new value
 *   get      outputs the current value, 0 when absent (a mode 0 read)
 *
 * Increments are read_state(count, 1) ... write_state(count, 1), redone on
 * XFAAS_ERR_CONFLICT. The body is trimmed of surrounding white space. */
#include "../xfaas.h"

#define KEY XFAAS_STR("count")

#define NOT_A_NUMBER 1

/* read_count reads the counter in mode into *v (0 when absent); it returns a
 * status, or NOT_A_NUMBER. */
static int32_t read_count(int32_t mode, int64_t *v) {
  char buf[XFAAS_INT_DIGITS];
  int32_t n = xfaas_read_state(KEY, buf, sizeof buf, mode);
  *v = 0;
  if (n == XFAAS_ERR_ABSENT) return XFAAS_OK;
  if (n < 0) return n;
  if (n > (int32_t)sizeof buf || xfaas_parse_i64(buf, n, v) != 0) return NOT_A_NUMBER;
  return XFAAS_OK;
}

/* incr adds delta to the counter in a critical section and returns a status,
 * redoing the increment when an optimistic commit conflicts. After an error
 * the section may stay open: handle returns at once, and the host applies
 * nothing of an open section and releases its lock. */
static int32_t incr(int64_t delta, int64_t *v) {
  int32_t st = XFAAS_ERR_CONFLICT;
  for (int i = 0; i < XFAAS_UPDATE_ATTEMPTS && st == XFAAS_ERR_CONFLICT; i++) {
    st = read_count(XFAAS_MODE_LINEARIZABLE, v);
    if (st != XFAAS_OK) return st;
    *v = (int64_t)((uint64_t)*v + (uint64_t)delta); /* wraps like Go's int64 */
    char buf[XFAAS_INT_DIGITS];
    st = xfaas_commit(KEY, buf, xfaas_format_i64(*v, buf));
  }
  return st;
}

XFAAS_HANDLE int32_t handle(void) {
  char in[64];
  int32_t n = xfaas_input(in, sizeof in);
  if (n > (int32_t)sizeof in) return xfaas_output_str("counter: input too long"), 1;
  const char *s = xfaas_trim(in, &n);
  int32_t cmd_len, arg_len;
  const char *arg;
  xfaas_cut(s, n, &cmd_len, &arg, &arg_len);

  int64_t v, delta = 1;
  int32_t st;
  if (xfaas_equal(s, cmd_len, "get") && arg_len == 0) {
    st = read_count(XFAAS_MODE_CAUSAL, &v);
  } else if (n == 0 || xfaas_equal(s, cmd_len, "incr")) {
    if (arg_len > 0 && xfaas_parse_i64(arg, arg_len, &delta) != 0)
      return xfaas_output_str("counter: bad number"), 1;
    st = incr(delta, &v);
  } else {
    return xfaas_output_str("usage: incr [N] | get"), 1;
  }
  if (st == NOT_A_NUMBER) return xfaas_output_str("counter: stored value is not a number"), 1;
  if (st < 0) return xfaas_fail(st);
  return xfaas_output_i64(v) == XFAAS_OK ? 0 : 1;
}

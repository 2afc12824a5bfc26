/* badptr passes one bad pointer or length to a host call, chosen by the
 * body, and outputs the status code it returned in decimal (a correct host
 * returns XFAAS_ERR_INVALID, -7, and does not trap):
 *
 *   read     read_state of key "k" into a buffer past the end of memory
 *   key      read_state of a key past the end of memory
 *   write    write_state of a value past the end of memory
 *   delete   delete_state of a key past the end of memory
 *   output   set_output of a buffer past the end of memory
 *   input    read_input into a buffer past the end of memory
 *   wrap     read_state into a buffer whose end wraps around 4 GiB
 *   mode     read_state in mode 7
 *   arg      read_input of argument 99 (a correct host returns -1)
 *
 * With " neg" after the name (read, key, write, delete, output, input), the
 * pointer is valid and the length is -1 instead. "read" and "read neg" first
 * set "k" to "v" in mode 0, so that there is a value to copy. */
#include "xfaas.h"

static char buf[16];

/* call makes the host call named by op[0:len) with pointer p and length n;
 * it returns 1 and sets *st, or 0 for an unknown op. */
static int call(const char *op, int32_t len, char *p, int32_t n, int32_t *st) {
  if (xfaas_equal(op, len, "read")) {
    xfaas_set(XFAAS_STR("k"), XFAAS_STR("v"));
    *st = xfaas_read_state(XFAAS_STR("k"), p, n, XFAAS_MODE_CAUSAL);
  } else if (xfaas_equal(op, len, "key")) {
    *st = xfaas_read_state(p, n, buf, sizeof buf, XFAAS_MODE_CAUSAL);
  } else if (xfaas_equal(op, len, "write")) {
    *st = xfaas_write_state(XFAAS_STR("k"), p, n, XFAAS_MODE_CAUSAL);
  } else if (xfaas_equal(op, len, "delete")) {
    *st = xfaas_delete_state(p, n, XFAAS_MODE_CAUSAL);
  } else if (xfaas_equal(op, len, "output")) {
    *st = xfaas_set_output(p, n);
  } else if (xfaas_equal(op, len, "input")) {
    *st = xfaas_read_input(XFAAS_INPUT_BODY, p, n);
  } else {
    return 0;
  }
  return 1;
}

XFAAS_HANDLE int32_t handle(void) {
  char in[32];
  int32_t n = xfaas_input(in, sizeof in);
  if (n > (int32_t)sizeof in) n = sizeof in;
  const char *s = xfaas_trim(in, &n);
  int32_t op_len, arg_len;
  const char *arg;
  xfaas_cut(s, n, &op_len, &arg, &arg_len);

  int32_t st;
  if (xfaas_equal(s, n, "wrap")) {
    st = xfaas_read_state(XFAAS_STR("k"), (void *)0xfffffff0, 32, XFAAS_MODE_CAUSAL);
  } else if (xfaas_equal(s, n, "mode")) {
    st = xfaas_read_state(XFAAS_STR("k"), buf, sizeof buf, 7);
  } else if (xfaas_equal(s, n, "arg")) {
    st = xfaas_read_input(99, buf, sizeof buf);
  } else {
    int neg = xfaas_equal(arg, arg_len, "neg");
    char *end = (char *)(__builtin_wasm_memory_size(0) * 65536);
    if ((!neg && arg_len != 0) || !call(s, op_len, neg ? buf : end, neg ? -1 : 16, &st))
      return xfaas_output_str("usage: read|key|write|delete|output|input [neg] | wrap | mode | arg"), 1;
  }
  return xfaas_output_i64(st) == XFAAS_OK ? 0 : 1;
}

/* hook is a session hook: it outputs the first word of the body as the
 * session label, so "alice buys" and "alice sells" share a session. An
 * empty body is refused (returns 1). */
#include "xfaas.h"

XFAAS_HANDLE int32_t handle(void) {
  xfaas_free_all();
  char *in;
  int32_t n = xfaas_input_all(&in);
  if (n < 0) return xfaas_fail(n);
  const char *body = xfaas_trim(in, &n);
  int32_t word_len, rest_len;
  const char *rest;
  xfaas_cut(body, n, &word_len, &rest, &rest_len);
  if (word_len == 0) return xfaas_output_str("hook: no user in the body"), 1;
  return xfaas_set_output(body, word_len) == XFAAS_OK ? 0 : 1;
}

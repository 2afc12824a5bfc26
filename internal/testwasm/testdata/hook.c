/* hook is a session hook: it outputs the first word of the body as the
 * session label, so "alice buys" and "alice sells" share a session. With an
 * empty body it takes the label from the request's X-User header; without
 * either the request is refused (returns 1). */
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
  if (word_len == 0) {
    /* Headers are "Name: value\n" lines with canonical names. */
    static char hdr[4096];
    int32_t h = xfaas_read_input(XFAAS_INPUT_HEADERS, hdr, sizeof hdr);
    if (h > (int32_t)sizeof hdr) h = sizeof hdr;
    for (int32_t i = 0; i + 8 <= h; i++) {
      if ((i == 0 || hdr[i - 1] == '\n') && xfaas_equal(hdr + i, 8, "X-User: ")) {
        int32_t j = i + 8;
        while (j < h && hdr[j] != '\n') j++;
        if (j > i + 8) return xfaas_set_output(hdr + i + 8, j - i - 8) == XFAAS_OK ? 0 : 1;
      }
    }
    return xfaas_output_str("hook: no user in the body or the X-User header"), 1;
  }
  return xfaas_set_output(body, word_len) == XFAAS_OK ? 0 : 1;
}

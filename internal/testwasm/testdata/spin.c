/* spin burns CPU for N milliseconds of wall time (monotonic WASI clock), N
 * being the body in decimal, and outputs how many units of work it did in
 * decimal: under a CPU quota the count drops in proportion. */
#define _DEFAULT_SOURCE /* clock_gettime under a strict -std */
#include <time.h>

#include "xfaas.h"

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

XFAAS_HANDLE int32_t handle(void) {
  char in[32];
  int32_t n = xfaas_input(in, sizeof in);
  if (n > (int32_t)sizeof in) n = sizeof in;
  const char *s = xfaas_trim(in, &n);
  uint64_t ms;
  if (xfaas_parse_u64(s, n, &ms) != 0 || ms > 3600000)
    return xfaas_output_str("usage: N (milliseconds)"), 1;

  uint64_t end = now_ns() + ms * 1000000u, units = 0;
  volatile uint32_t sink = 0;
  do {
    for (uint32_t i = 0; i < 1000; i++) sink = sink * 1664525u + 1013904223u; /* one unit */
    units++;
  } while (now_ns() < end);
  return xfaas_output_u64(units) == XFAAS_OK ? 0 : 1;
}

/* wasiclock uses WASI the way a guest may: it reads the wall clock and 16
 * random bytes, writes a line to stdout and one to stderr (the runtime
 * captures both as logs) and outputs ok. It fails when the clock is before
 * 2020 or the random bytes are all zero. */
#define _DEFAULT_SOURCE /* clock_gettime, getentropy under a strict -std */
#include <time.h>
#include <unistd.h>

#include "xfaas.h"

#define YEAR_2020 1577836800 /* seconds since the epoch */

XFAAS_HANDLE int32_t handle(void) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0 || ts.tv_sec < YEAR_2020)
    return xfaas_output_str("wasiclock: bad wall clock"), 1;
  unsigned char rnd[16];
  int nonzero = 0;
  if (getentropy(rnd, sizeof rnd) != 0) return xfaas_output_str("wasiclock: no random"), 1;
  for (int i = 0; i < (int)sizeof rnd; i++) nonzero |= rnd[i];
  if (!nonzero) return xfaas_output_str("wasiclock: random is all zero"), 1;

  char line[64] = "wasiclock stdout: unix time ";
  int32_t len = xfaas_strlen(line);
  len += xfaas_format_i64(ts.tv_sec, line + len);
  line[len++] = '\n';
  static const char err[] = "wasiclock stderr\n";
  if (write(1, line, len) != len || write(2, err, sizeof err - 1) != (ssize_t)sizeof err - 1)
    return xfaas_output_str("wasiclock: write failed"), 1;
  return xfaas_output_str("ok") == XFAAS_OK ? 0 : 1;
}

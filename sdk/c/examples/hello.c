/* hello answers every request with "hello": the smallest useful guest, used
 * to measure warm-invoke latency. No state, no libc. */
#include "../xfaas.h"

XFAAS_HANDLE int32_t handle(void) {
  return xfaas_set_output(XFAAS_STR("hello")) == XFAAS_OK ? 0 : 1;
}

/* fuzz_event_claim.c -- libFuzzer target for the event records the worker
 * reads back from Redis and decides on (worker/event/event_claim.h,
 * evc_decide): the outcome record "<status> <turn> d:<digest> <ms>" and the
 * progress record "d:<digest>:<ms> <checkpoint>", or an older worker's
 * value without the "d:" parts.  Redis holds whatever anyone with access to
 * it wrote, so any bytes.
 *
 * The input is split at its first NUL into the outcome and the progress
 * value (each copied to an exact-size heap buffer, so ASan sees any read
 * past it).  Properties: the verdict is one of the four; a value that is
 * present decides (outcome first); a checkpoint points inside the progress
 * value and runs to its end; the message of a REUSED decision is
 * NUL-terminated within its buffer.  A violated property aborts.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "event_claim.h"

#define CHECK(c)       \
  do {                 \
    if (!(c)) abort(); \
  } while (0)

#define OURS "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char *dup_exact(const uint8_t *p, size_t n) {
  char *s = malloc(n + 1);
  if (!s) abort();
  memcpy(s, p, n);
  s[n] = '\0';
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *nul = memchr(data, 0, size);
  size_t olen = nul ? (size_t)(nul - data) : size;
  char *outcome = dup_exact(data, olen);
  char *progress = nul ? dup_exact(nul + 1, size - olen - 1) : dup_exact(data, 0);
  size_t plen = strlen(progress); /* up to its own first NUL */

  evc_decision d;
  evc_decide(outcome, progress, OURS, &d);
  CHECK(d.verdict == EVC_NEW || d.verdict == EVC_RECOVER || d.verdict == EVC_ANSWERED || d.verdict == EVC_REUSED);
  if (*outcome) CHECK(d.verdict == EVC_ANSWERED || d.verdict == EVC_REUSED);
  else if (!*progress) CHECK(d.verdict == EVC_NEW);
  else CHECK(d.verdict == EVC_RECOVER || d.verdict == EVC_REUSED);
  if (d.checkpoint) {
    CHECK(d.verdict == EVC_RECOVER);
    CHECK(d.checkpoint >= progress && d.checkpoint < progress + plen);
    CHECK(d.checkpoint + d.checkpoint_len == progress + plen);
  }
  if (d.verdict == EVC_REUSED) {
    char msg[96];
    memset(msg, 'x', sizeof msg);
    evc_reused_message(msg, sizeof msg, outcome, &d);
    CHECK(memchr(msg, 0, sizeof msg) != NULL);
  }
  free(outcome);
  free(progress);
  return 0;
}

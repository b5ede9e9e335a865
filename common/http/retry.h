/* retry.h -- retry policy for API requests (prefix retry_).
 *
 * Pure functions, no I/O, so the policy is unit-tested exactly:
 *   - retry on HTTP 429, any 5xx, and connection-level failures (connect
 *     refused/reset, timeouts, a response cut short before any byte of the
 *     body was delivered to the caller); never on other 4xx;
 *   - exponential backoff base * 2^attempt capped at max, with "full jitter"
 *     on the upper half: delay in [d/2, d];
 *   - a server's Retry-After (seconds or HTTP-date) or retry-after-ms header
 *     wins over the computed delay when larger, capped at max_retry_after_ms.
 */
#ifndef AW_RETRY_H
#define AW_RETRY_H

#include <stdint.h>
#include <time.h>
#include "aw_error.h"

typedef struct retry_policy {
  int max_retries;            /* retries after the first attempt (default 5) */
  long base_ms;               /* default 250 */
  long max_ms;                /* cap on computed backoff (default 8000) */
  long max_retry_after_ms;    /* cap on a server-given delay (default 60000) */
} retry_policy;

typedef enum {
  RETRY_NO = 0,    /* final: report the outcome */
  RETRY_YES = 1,   /* wait retry_delay_ms() and try again */
} retry_decision;

/** Defaults above. */
void retry_policy_default(retry_policy *p);

/** Should attempt number `attempt` (0 = the first try) that ended with
 *  http_status (0 when no HTTP response) and transport_err (AW_OK, AW_EIO or
 *  AW_ETIMEDOUT) be retried?  Returns RETRY_NO once attempt >= max_retries. */
retry_decision retry_should(const retry_policy *p, int attempt, int http_status, int transport_err);

/** Delay before retry number attempt+1.  retry_after_ms is the server's
 *  request (-1 if none); rnd is a random 32-bit value (the caller's PRNG, so
 *  tests are deterministic). */
long retry_delay_ms(const retry_policy *p, int attempt, long retry_after_ms, uint32_t rnd);

/** Parse a Retry-After header value: delta-seconds or an HTTP-date (relative
 *  to now).  AW_EINVAL if neither.  A date in the past gives 0. */
int retry_parse_retry_after(const char *value, time_t now, long *out_ms) AW_MUST_CHECK;

#endif

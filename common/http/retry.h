/* retry.h -- retry policy for API requests (prefix retry_).
 *
 * Pure functions, no I/O, so the policy is unit-tested exactly:
 *   - an idempotent request (GET, DELETE, an update that may be applied
 *     twice) is retried on HTTP 429, any 5xx, and connection-level failures
 *     (connect refused/reset, timeouts, a response cut short before any byte
 *     of the body was delivered to the caller); never on other 4xx;
 *   - a request that creates something (retry_should_create) is retried only
 *     when it certainly was not applied: HTTP 429, or a failure before the
 *     request was sent (refused, DNS, connect timeout).  Anything else (5xx,
 *     a read timeout, a reset after sending) may have been applied: the
 *     caller must look for what it created before sending it again, so no
 *     side effect happens twice at the API;
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

/** The same decision for a request that is not idempotent (it creates
 *  something).  sent is 0 when the attempt certainly never reached the
 *  server (connection refused, name not resolved, connect timeout), 1 when
 *  it may have.  RETRY_YES only for 429 and for !sent transport failures;
 *  RETRY_NO once attempt >= max_retries. */
retry_decision retry_should_create(const retry_policy *p, int attempt, int http_status,
                                   int transport_err, int sent);

/** Delay before retry number attempt+1.  retry_after_ms is the server's
 *  request (-1 if none); rnd is a random 32-bit value (the caller's PRNG, so
 *  tests are deterministic). */
long retry_delay_ms(const retry_policy *p, int attempt, long retry_after_ms, uint32_t rnd);

/** Parse a Retry-After header value: delta-seconds or an HTTP-date (relative
 *  to now).  AW_EINVAL if neither.  A date in the past gives 0. */
int retry_parse_retry_after(const char *value, time_t now, long *out_ms) AW_MUST_CHECK;

#endif

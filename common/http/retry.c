/* retry.c -- retry policy for API requests: which outcomes to retry, how
 * long to wait, and Retry-After parsing.  Pure functions (see retry.h).
 */
#include "retry.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

void retry_policy_default(retry_policy *p) {
  p->max_retries = 5;
  p->base_ms = 250;
  p->max_ms = 8000;
  p->max_retry_after_ms = 60000;
}

retry_decision retry_should(const retry_policy *p, int attempt, int http_status, int transport_err) {
  if (attempt < 0) attempt = 0;
  if (attempt >= p->max_retries) return RETRY_NO;
  /* A 4xx other than 429 is the server judging the request itself; sending
   * it again gives the same answer, even if the connection then failed. */
  if (http_status == 429 || (http_status >= 500 && http_status <= 599)) return RETRY_YES;
  if (http_status >= 400 && http_status <= 499) return RETRY_NO;
  /* Connection-level failures.  The caller passes these only while no body
   * byte has reached its consumer: after that, a retry could double output. */
  if (transport_err == AW_EIO || transport_err == AW_ETIMEDOUT) return RETRY_YES;
  return RETRY_NO;
}

retry_decision retry_should_create(const retry_policy *p, int attempt, int http_status,
                                   int transport_err, int sent) {
  if (attempt < 0) attempt = 0;
  if (attempt >= p->max_retries) return RETRY_NO;
  /* 429 is the API refusing before doing anything. */
  if (http_status == 429) return RETRY_YES;
  if (http_status != 0) return RETRY_NO; /* 5xx may have been applied; 4xx stands */
  if (!sent && (transport_err == AW_EIO || transport_err == AW_ETIMEDOUT)) return RETRY_YES;
  return RETRY_NO;
}

long retry_delay_ms(const retry_policy *p, int attempt, long retry_after_ms, uint32_t rnd) {
  uint64_t cap = p->max_ms > 0 ? (uint64_t)p->max_ms : 0;
  uint64_t d = p->base_ms > 0 ? (uint64_t)p->base_ms : 0;
  if (d > cap) d = cap;
  /* Double step by step so a large attempt number cannot overflow a shift. */
  for (int i = 0; i < attempt && d < cap; i++) {
    d *= 2;
    if (d > cap) d = cap;
  }
  /* Jitter over the upper half: spreads a thundering herd of workers while
   * guaranteeing at least half the backoff.  The modulo bias (about
   * d / 2^32) is irrelevant for jitter. */
  uint64_t half = d / 2;
  uint64_t delay = half + (uint64_t)rnd % (d - half + 1);

  if (retry_after_ms >= 0) {
    uint64_t ra = (uint64_t)retry_after_ms;
    uint64_t ra_cap = p->max_retry_after_ms > 0 ? (uint64_t)p->max_retry_after_ms : 0;
    if (ra > ra_cap) ra = ra_cap;
    if (ra > delay) delay = ra;
  }
  return delay > (uint64_t)LONG_MAX ? LONG_MAX : (long)delay;
}

static int is_ows(char c) { return c == ' ' || c == '\t'; }

/* Seconds to milliseconds, saturating: an absurd server value must not wrap
 * into a negative delay; retry_delay_ms caps it afterwards. */
static long secs_to_ms(long long s) {
  if (s <= 0) return 0;
  if (s > LONG_MAX / 1000) return LONG_MAX;
  return (long)(s * 1000);
}

int retry_parse_retry_after(const char *value, time_t now, long *out_ms) {
  if (!value || !out_ms) return AW_EINVAL;
  while (is_ows(*value)) value++;
  size_t len = strlen(value);
  while (len && is_ows(value[len - 1])) len--;
  if (len == 0 || len >= 64) return AW_EINVAL;
  char v[64];
  memcpy(v, value, len);
  v[len] = '\0';

  /* delta-seconds = 1*DIGIT */
  size_t ndig = strspn(v, "0123456789");
  if (ndig == len) {
    long long s = 0;
    for (size_t i = 0; i < len; i++) {
      if (s > (LLONG_MAX - 9) / 10) {
        s = LLONG_MAX; /* saturate; secs_to_ms caps anyway */
        break;
      }
      s = s * 10 + (v[i] - '0');
    }
    *out_ms = secs_to_ms(s);
    return AW_OK;
  }

  /* HTTP-date (RFC 9110 5.6.7): IMF-fixdate, then the two obsolete forms
   * recipients must still accept.  strptime's %a/%b use the C locale's
   * English names; the worker never calls setlocale(). */
  static const char *const formats[] = {
      "%a, %d %b %Y %H:%M:%S GMT", /* Sun, 06 Nov 1994 08:49:37 GMT */
      "%A, %d-%b-%y %H:%M:%S GMT", /* Sunday, 06-Nov-94 08:49:37 GMT */
      "%a %b %e %H:%M:%S %Y",      /* Sun Nov  6 08:49:37 1994 */
  };
  for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *e = strptime(v, formats[i], &tm);
    if (!e || *e != '\0') continue;
    time_t t = timegm(&tm);
    *out_ms = secs_to_ms((long long)t - (long long)now);
    return AW_OK;
  }
  return AW_EINVAL;
}

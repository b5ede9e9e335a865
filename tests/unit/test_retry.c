/* test_retry.c -- the retry policy: what is retried, how long to wait, and
 * Retry-After parsing.  Pure functions; needs no infrastructure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <limits.h>

#include <cmocka.h>

#include "retry.h"

static void test_defaults_match_header(void **state) {
  (void)state;
  retry_policy p;
  retry_policy_default(&p);
  assert_int_equal(p.max_retries, 5);
  assert_int_equal(p.base_ms, 250);
  assert_int_equal(p.max_ms, 8000);
  assert_int_equal(p.max_retry_after_ms, 60000);
}

static void test_429_and_5xx_are_retried(void **state) {
  (void)state;
  retry_policy p;
  retry_policy_default(&p);
  static const int yes[] = {429, 500, 502, 503, 504, 599};
  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
    assert_int_equal(retry_should(&p, 0, yes[i], AW_OK), RETRY_YES);
}

static void test_other_4xx_and_success_are_not_retried(void **state) {
  (void)state;
  retry_policy p;
  retry_policy_default(&p);
  static const int no[] = {200, 201, 400, 401, 403, 404, 409, 422, 499};
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
    assert_int_equal(retry_should(&p, 0, no[i], AW_OK), RETRY_NO);
}

static void test_transport_errors_are_retried(void **state) {
  (void)state;
  retry_policy p;
  retry_policy_default(&p);
  assert_int_equal(retry_should(&p, 0, 0, AW_EIO), RETRY_YES);
  assert_int_equal(retry_should(&p, 0, 0, AW_ETIMEDOUT), RETRY_YES);
  /* A 5xx whose body was then cut short is still a retry. */
  assert_int_equal(retry_should(&p, 0, 503, AW_EIO), RETRY_YES);
  /* A 4xx answer stands even if the connection failed afterwards. */
  assert_int_equal(retry_should(&p, 0, 400, AW_EIO), RETRY_NO);
  /* Not a transport failure: cancelled by the owner, or no error at all. */
  assert_int_equal(retry_should(&p, 0, 0, AW_ECANCELLED), RETRY_NO);
  assert_int_equal(retry_should(&p, 0, 0, AW_OK), RETRY_NO);
}

static void test_creating_request_is_retried_only_when_certainly_not_applied(void **state) {
  (void)state;
  retry_policy p;
  retry_policy_default(&p);
  /* 429: refused before anything was done. */
  assert_int_equal(retry_should_create(&p, 0, 429, AW_OK, 1), RETRY_YES);
  /* Never sent (refused, DNS, connect timeout). */
  assert_int_equal(retry_should_create(&p, 0, 0, AW_EIO, 0), RETRY_YES);
  assert_int_equal(retry_should_create(&p, 0, 0, AW_ETIMEDOUT, 0), RETRY_YES);
  /* May have been applied: 5xx, a read timeout, a reset after sending. */
  static const int no[] = {500, 502, 503, 504, 400, 404, 200};
  for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
    assert_int_equal(retry_should_create(&p, 0, no[i], AW_OK, 1), RETRY_NO);
  assert_int_equal(retry_should_create(&p, 0, 0, AW_ETIMEDOUT, 1), RETRY_NO);
  assert_int_equal(retry_should_create(&p, 0, 0, AW_EIO, 1), RETRY_NO);
  assert_int_equal(retry_should_create(&p, 0, 0, AW_ECANCELLED, 0), RETRY_NO);
  /* The budget holds here too. */
  assert_int_equal(retry_should_create(&p, 5, 429, AW_OK, 1), RETRY_NO);
  assert_int_equal(retry_should_create(&p, 5, 0, AW_EIO, 0), RETRY_NO);
}

static void test_max_retries_is_respected(void **state) {
  (void)state;
  retry_policy p;
  retry_policy_default(&p);
  p.max_retries = 3;
  for (int a = 0; a < 3; a++) {
    assert_int_equal(retry_should(&p, a, 503, AW_OK), RETRY_YES);
    assert_int_equal(retry_should(&p, a, 0, AW_EIO), RETRY_YES);
  }
  assert_int_equal(retry_should(&p, 3, 503, AW_OK), RETRY_NO);
  assert_int_equal(retry_should(&p, 4, 0, AW_EIO), RETRY_NO);
  p.max_retries = 0;
  assert_int_equal(retry_should(&p, 0, 429, AW_OK), RETRY_NO);
}

static void test_delay_grows_exponentially_within_upper_half(void **state) {
  (void)state;
  retry_policy p;
  retry_policy_default(&p);
  static const uint32_t rnds[] = {0, 1, 7, 12345, 0x7fffffffu, 0xfffffffeu, 0xffffffffu};
  for (int a = 0; a < 5; a++) {
    long d = 250L << a; /* 250, 500, 1000, 2000, 4000: all under the cap */
    long lo = LONG_MAX, hi = 0;
    for (size_t i = 0; i < sizeof rnds / sizeof rnds[0]; i++) {
      long got = retry_delay_ms(&p, a, -1, rnds[i]);
      assert_in_range(got, d / 2, d);
      if (got < lo) lo = got;
      if (got > hi) hi = got;
    }
    assert_int_equal(retry_delay_ms(&p, a, -1, 0), d / 2); /* rnd picks the point */
    assert_true(hi > lo); /* jitter actually varies */
  }
}

static void test_delay_is_capped_at_max_ms(void **state) {
  (void)state;
  retry_policy p;
  retry_policy_default(&p);
  for (int a = 5; a < 70; a++) { /* 250 << 5 = 8000; past that, and far past 64 bits */
    for (uint32_t r = 0; r < 50000; r += 997) {
      long got = retry_delay_ms(&p, a, -1, r);
      assert_in_range(got, 4000, 8000);
    }
  }
  assert_int_equal(retry_delay_ms(&p, 1000000, -1, 4000), 8000);
}

static void test_retry_after_wins_when_larger_and_is_capped(void **state) {
  (void)state;
  retry_policy p;
  retry_policy_default(&p);
  /* attempt 0 gives 125..250: a larger server delay wins... */
  assert_int_equal(retry_delay_ms(&p, 0, 3000, 0), 3000);
  /* ...a smaller one does not shorten the backoff... */
  assert_int_equal(retry_delay_ms(&p, 4, 100, 0), 2000);
  assert_int_equal(retry_delay_ms(&p, 0, 0, 0), 125);
  /* ...and it may exceed max_ms but never max_retry_after_ms. */
  assert_int_equal(retry_delay_ms(&p, 0, 20000, 0), 20000);
  assert_int_equal(retry_delay_ms(&p, 0, 3600000, 0), 60000);
  assert_int_equal(retry_delay_ms(&p, 0, LONG_MAX, 0), 60000);
  /* -1 means no header. */
  assert_in_range(retry_delay_ms(&p, 0, -1, 99), 125, 250);
}

static void test_retry_after_delta_seconds_parse(void **state) {
  (void)state;
  long ms = -1;
  assert_int_equal(retry_parse_retry_after("120", 0, &ms), AW_OK);
  assert_int_equal(ms, 120000);
  assert_int_equal(retry_parse_retry_after("0", 0, &ms), AW_OK);
  assert_int_equal(ms, 0);
  assert_int_equal(retry_parse_retry_after("  7 \t", 0, &ms), AW_OK);
  assert_int_equal(ms, 7000);
  /* Absurd values saturate instead of wrapping negative. */
  assert_int_equal(retry_parse_retry_after("99999999999999999999999", 0, &ms), AW_OK);
  assert_int_equal(ms, LONG_MAX);
}

static void test_retry_after_garbage_is_einval(void **state) {
  (void)state;
  long ms = 42;
  static const char *const bad[] = {"", "   ", "-5", "1.5", "5s", "soon", "Sun, 06 Nov 1994",
                                    "Sun, 06 Nov 1994 08:49:37 UTC", "Sun, 32 Nov 1994 08:49:37 GMT"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(retry_parse_retry_after(bad[i], 0, &ms), AW_EINVAL);
  assert_int_equal(retry_parse_retry_after(NULL, 0, &ms), AW_EINVAL);
  assert_int_equal(ms, 42); /* untouched on failure */
}

static void test_retry_after_http_dates_in_all_three_formats(void **state) {
  (void)state;
  const time_t t = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
  long ms = -1;
  /* IMF-fixdate, RFC 850, asctime: the same instant, seen 30 s earlier. */
  assert_int_equal(retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", t - 30, &ms), AW_OK);
  assert_int_equal(ms, 30000);
  ms = -1;
  assert_int_equal(retry_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", t - 30, &ms), AW_OK);
  assert_int_equal(ms, 30000);
  ms = -1;
  assert_int_equal(retry_parse_retry_after("Sun Nov  6 08:49:37 1994", t - 30, &ms), AW_OK);
  assert_int_equal(ms, 30000);
  /* A date in the past, or now, means no wait. */
  assert_int_equal(retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", t + 3600, &ms), AW_OK);
  assert_int_equal(ms, 0);
  assert_int_equal(retry_parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", t, &ms), AW_OK);
  assert_int_equal(ms, 0);
  /* A date after 2038 (64-bit time_t) and one across a month boundary. */
  assert_int_equal(retry_parse_retry_after("Wed, 01 Jan 2070 00:00:10 GMT", 3155760000, &ms), AW_OK);
  assert_int_equal(ms, 10000);
  assert_int_equal(retry_parse_retry_after("Tue, 01 Mar 2022 00:01:00 GMT", 1646092800 - 60, &ms), AW_OK);
  assert_int_equal(ms, 120000);
}

static void test_parsed_retry_after_feeds_delay_cap(void **state) {
  (void)state;
  retry_policy p;
  retry_policy_default(&p);
  long ms = -1;
  assert_int_equal(retry_parse_retry_after("3600", 0, &ms), AW_OK);
  assert_int_equal(retry_delay_ms(&p, 0, ms, 0), 60000);
  assert_int_equal(retry_parse_retry_after("2", 0, &ms), AW_OK);
  assert_int_equal(retry_delay_ms(&p, 0, ms, 0), 2000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults_match_header),
      cmocka_unit_test(test_429_and_5xx_are_retried),
      cmocka_unit_test(test_other_4xx_and_success_are_not_retried),
      cmocka_unit_test(test_transport_errors_are_retried),
      cmocka_unit_test(test_creating_request_is_retried_only_when_certainly_not_applied),
      cmocka_unit_test(test_max_retries_is_respected),
      cmocka_unit_test(test_delay_grows_exponentially_within_upper_half),
      cmocka_unit_test(test_delay_is_capped_at_max_ms),
      cmocka_unit_test(test_retry_after_wins_when_larger_and_is_capped),
      cmocka_unit_test(test_retry_after_delta_seconds_parse),
      cmocka_unit_test(test_retry_after_garbage_is_einval),
      cmocka_unit_test(test_retry_after_http_dates_in_all_three_formats),
      cmocka_unit_test(test_parsed_retry_after_feeds_delay_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

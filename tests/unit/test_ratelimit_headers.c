/* test_ratelimit_headers.c -- what an API response says about its rate
 * limits (common/http/ratelimit_headers.c), and the pure parts of the rate
 * gate's port (common/http/api_gate.c): request classes and token
 * estimates.  Pure functions; needs no infrastructure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "api_gate.h"
#include "ratelimit_headers.h"

static long dur(const char *s) {
  long ms = -2;
  int rc = rlh_parse_duration(s, strlen(s), &ms);
  return rc == AW_OK ? ms : -1;
}

static void test_openai_durations_parse_to_milliseconds(void **state) {
  (void)state;
  assert_int_equal(dur("6m0s"), 360000);
  assert_int_equal(dur("1.5s"), 1500);
  assert_int_equal(dur("20ms"), 20);
  assert_int_equal(dur("1h2m3.5s"), 3723500);
  assert_int_equal(dur("59.8s"), 59800);
  assert_int_equal(dur("0s"), 0);
  assert_int_equal(dur("17ms"), 17);
  assert_int_equal(dur(" 1s\r\n"), 1000);
}

static void test_sub_millisecond_durations_round_up_never_down(void **state) {
  (void)state;
  assert_int_equal(dur("250us"), 1);
  assert_int_equal(dur("1\xc2\xb5s"), 1);
  assert_int_equal(dur("1ns"), 1);
  assert_int_equal(dur("1.0001ms"), 2);
}

static void test_bare_numbers_are_seconds(void **state) {
  (void)state;
  assert_int_equal(dur("2"), 2000);
  assert_int_equal(dur("0.5"), 500);
}

static void test_malformed_durations_are_refused(void **state) {
  (void)state;
  static const char *const bad[] = {"", "s", "1x", "-1s", "1s2", "abc", "1 s", "1m-2s", ".s", "2 3"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    long ms = 77;
    assert_int_equal(rlh_parse_duration(bad[i], strlen(bad[i]), &ms), AW_EINVAL);
    assert_int_equal(ms, 77);
  }
}

static void test_huge_durations_are_clamped_to_a_day(void **state) {
  (void)state;
  assert_int_equal(dur("100000h"), RLH_MAX_MS);
  assert_int_equal(dur("99999999999999999999s"), RLH_MAX_MS);
}

static void test_formatted_durations_read_back_as_the_api_prints_them(void **state) {
  (void)state;
  char b[32];
  rlh_format_duration(20, b, sizeof b);
  assert_string_equal(b, "20ms");
  rlh_format_duration(1500, b, sizeof b);
  assert_string_equal(b, "1.5s");
  rlh_format_duration(2000, b, sizeof b);
  assert_string_equal(b, "2s");
  rlh_format_duration(360000, b, sizeof b);
  assert_string_equal(b, "6m0s");
  rlh_format_duration(3723000, b, sizeof b);
  assert_string_equal(b, "1h2m3s");
  for (long ms = 0; ms < 60000; ms += 37) {
    rlh_format_duration(ms, b, sizeof b);
    assert_int_equal(dur(b), ms);
  }
}

static int feed(rlh_info *in, const char *line) { return rlh_header(in, line, strlen(line), 0); }

static void test_every_rate_limit_header_is_read_case_insensitively(void **state) {
  (void)state;
  rlh_info in;
  rlh_init(&in);
  assert_false(rlh_any(&in));
  assert_int_equal(feed(&in, "x-ratelimit-limit-requests: 60\r\n"), 1);
  assert_int_equal(feed(&in, "X-RateLimit-Limit-Tokens: 150000\r\n"), 1);
  assert_int_equal(feed(&in, "x-ratelimit-remaining-requests:59"), 1);
  assert_int_equal(feed(&in, "x-ratelimit-remaining-tokens: 149984\r\n"), 1);
  assert_int_equal(feed(&in, "x-ratelimit-reset-requests: 1s\r\n"), 1);
  assert_int_equal(feed(&in, "x-ratelimit-reset-tokens: 6m0s\r\n"), 1);
  assert_int_equal(in.limit_requests, 60);
  assert_int_equal(in.limit_tokens, 150000);
  assert_int_equal(in.remaining_requests, 59);
  assert_int_equal(in.remaining_tokens, 149984);
  assert_int_equal(in.reset_requests_ms, 1000);
  assert_int_equal(in.reset_tokens_ms, 360000);
  assert_true(rlh_any(&in));
}

static void test_other_headers_and_unreadable_values_leave_the_info_alone(void **state) {
  (void)state;
  rlh_info in;
  rlh_init(&in);
  assert_int_equal(feed(&in, "Content-Type: application/json\r\n"), 0);
  assert_int_equal(feed(&in, "x-ratelimit-remaining-requests: many\r\n"), 0);
  assert_int_equal(feed(&in, "x-ratelimit-remaining-requests: -3\r\n"), 0);
  assert_int_equal(feed(&in, "x-ratelimit-reset-tokens: soon\r\n"), 0);
  assert_int_equal(feed(&in, "x-ratelimit-remaining-requests-extra: 4\r\n"), 0);
  assert_int_equal(feed(&in, "HTTP/1.1 200 OK\r\n"), 0);
  assert_false(rlh_any(&in));
}

static void test_huge_counts_are_clamped(void **state) {
  (void)state;
  rlh_info in;
  rlh_init(&in);
  assert_int_equal(feed(&in, "x-ratelimit-remaining-tokens: 99999999999999999999\r\n"), 1);
  assert_int_equal(in.remaining_tokens, RLH_MAX_COUNT);
  assert_int_equal(feed(&in, "retry-after-ms: 999999999999\r\n"), 1);
  assert_int_equal(rlh_retry_after_ms(&in), RLH_MAX_MS);
}

static void test_retry_after_ms_wins_over_retry_after(void **state) {
  (void)state;
  rlh_info in;
  rlh_init(&in);
  assert_int_equal(rlh_retry_after_ms(&in), -1);
  assert_int_equal(feed(&in, "Retry-After: 2\r\n"), 1);
  assert_int_equal(rlh_retry_after_ms(&in), 2000);
  assert_int_equal(feed(&in, "retry-after-ms: 335\r\n"), 1);
  assert_int_equal(rlh_retry_after_ms(&in), 335);
}

static void test_next_unit_spreads_the_reset_over_the_missing_units(void **state) {
  (void)state;
  assert_int_equal(rlh_next_unit_ms(60, 5, 1000), 0);       /* some remain: now */
  assert_int_equal(rlh_next_unit_ms(60, 0, 60000), 1000);   /* a minute for 60: one a second */
  assert_int_equal(rlh_next_unit_ms(3, 0, 1000), 334);      /* rounded up */
  assert_int_equal(rlh_next_unit_ms(-1, 0, 1500), 1500);    /* limit unknown: the whole reset */
  assert_int_equal(rlh_next_unit_ms(60, -1, 1000), -1);     /* remaining unknown */
  assert_int_equal(rlh_next_unit_ms(60, 0, -1), -1);        /* reset unknown */
}

static void test_classes_come_from_the_first_path_segment(void **state) {
  (void)state;
  char c[API_GATE_CLASS_MAX];
  api_gate_class("/threads/thread_1/runs", c, sizeof c);
  assert_string_equal(c, "assistants");
  api_gate_class("/threads", c, sizeof c);
  assert_string_equal(c, "assistants");
  api_gate_class("/assistants?limit=1", c, sizeof c);
  assert_string_equal(c, "assistants");
  api_gate_class("/chat/completions", c, sizeof c);
  assert_string_equal(c, "chat");
  api_gate_class("/Responses/resp_1?stream=true", c, sizeof c);
  assert_string_equal(c, "responses");
  api_gate_class("/conversations/conv_1/items", c, sizeof c);
  assert_string_equal(c, "conversations");
  api_gate_class("/", c, sizeof c);
  assert_string_equal(c, "other");
  api_gate_class("/a{b}c d", c, sizeof c);
  assert_string_equal(c, "abcd");
  char small[5];
  api_gate_class("/embeddings", small, sizeof small);
  assert_string_equal(small, "embe");
}

static void test_tokens_are_bytes_over_four_plus_the_output_cap(void **state) {
  (void)state;
  char body[512];
  int n = snprintf(body, sizeof body, "{\"model\":\"m\",\"max_output_tokens\":100,\"input\":\"%0300d\"}", 0);
  long want = (n + 3) / 4 + 100;
  assert_int_equal(api_gate_estimate_tokens(body, (size_t)n), want);
  n = snprintf(body, sizeof body, "{\"model\":\"m\",\"max_tokens\":7,\"messages\":[]}");
  assert_int_equal(api_gate_estimate_tokens(body, (size_t)n), (n + 3) / 4 + 7);
  /* A cap inside a nested object is not the request's. */
  n = snprintf(body, sizeof body, "{\"metadata\":{\"max_tokens\":5000}}");
  assert_int_equal(api_gate_estimate_tokens(body, (size_t)n), (n + 3) / 4);
  assert_int_equal(api_gate_estimate_tokens("not json", 8), 2);
  assert_int_equal(api_gate_estimate_tokens(NULL, 0), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_openai_durations_parse_to_milliseconds),
      cmocka_unit_test(test_sub_millisecond_durations_round_up_never_down),
      cmocka_unit_test(test_bare_numbers_are_seconds),
      cmocka_unit_test(test_malformed_durations_are_refused),
      cmocka_unit_test(test_huge_durations_are_clamped_to_a_day),
      cmocka_unit_test(test_formatted_durations_read_back_as_the_api_prints_them),
      cmocka_unit_test(test_every_rate_limit_header_is_read_case_insensitively),
      cmocka_unit_test(test_other_headers_and_unreadable_values_leave_the_info_alone),
      cmocka_unit_test(test_huge_counts_are_clamped),
      cmocka_unit_test(test_retry_after_ms_wins_over_retry_after),
      cmocka_unit_test(test_next_unit_spreads_the_reset_over_the_missing_units),
      cmocka_unit_test(test_classes_come_from_the_first_path_segment),
      cmocka_unit_test(test_tokens_are_bytes_over_four_plus_the_output_cap),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_run_metrics.c -- the daemon's API series (rmet_api_observe):
 * aw_api_request_seconds by route and status, aw_api_retries_total by route,
 * the series cap and its dropped counter, and the consumer-lag families
 * rendered without a worker.  Needs no infrastructure; ASan checks every
 * test frees what it registered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "run_metrics.h"

static char *render(rmet *m) {
  buf b;
  buf_init(&b, 1 << 20);
  assert_int_equal(rmet_render(m, NULL, NULL, &b), AW_OK);
  size_t len;
  char *s = buf_take(&b, &len);
  assert_non_null(s);
  return s;
}

/* The text has this exact line. */
static void assert_line(const char *text, const char *line) {
  size_t n = strlen(line);
  for (const char *p = text; (p = strstr(p, line)) != NULL; p++) {
    if ((p == text || p[-1] == '\n') && p[n] == '\n') return;
  }
  fail_msg("no line \"%s\" in:\n%s", line, text);
}

static void assert_no_text(const char *text, const char *part) {
  if (strstr(text, part)) fail_msg("unexpected \"%s\" in:\n%s", part, text);
}

static void test_api_calls_are_histograms_by_route_and_status(void **state) {
  (void)state;
  rmet *m = NULL;
  assert_int_equal(rmet_new(&m), AW_OK);
  rmet_api_observe(m, "POST /threads/{id}/runs", 200, 0.003, 1);
  rmet_api_observe(m, "POST /threads/{id}/runs", 200, 0.2, 1);
  rmet_api_observe(m, "POST /threads/{id}/runs", 500, 1.5, 3);
  rmet_api_observe(m, "GET /threads/{id}/runs/{id}", 0, 30, 2);
  char *t = render(m);
  assert_line(t, "# TYPE aw_api_request_seconds histogram");
  assert_line(t, "aw_api_request_seconds_bucket{route=\"POST /threads/{id}/runs\",status=\"200\",le=\"0.0025\"} 0");
  assert_line(t, "aw_api_request_seconds_bucket{route=\"POST /threads/{id}/runs\",status=\"200\",le=\"0.005\"} 1");
  assert_line(t, "aw_api_request_seconds_bucket{route=\"POST /threads/{id}/runs\",status=\"200\",le=\"0.25\"} 2");
  assert_line(t, "aw_api_request_seconds_count{route=\"POST /threads/{id}/runs\",status=\"200\"} 2");
  assert_line(t, "aw_api_request_seconds_sum{route=\"POST /threads/{id}/runs\",status=\"200\"} 0.203");
  assert_line(t, "aw_api_request_seconds_count{route=\"POST /threads/{id}/runs\",status=\"500\"} 1");
  /* No response at all: status "error". */
  assert_line(t, "aw_api_request_seconds_count{route=\"GET /threads/{id}/runs/{id}\",status=\"error\"} 1");
  assert_line(t, "aw_api_request_seconds_bucket{route=\"GET /threads/{id}/runs/{id}\",status=\"error\",le=\"10\"} 0");
  assert_line(t, "aw_api_request_seconds_bucket{route=\"GET /threads/{id}/runs/{id}\",status=\"error\",le=\"30\"} 1");
  /* Retries: attempts - 1, summed per route over its statuses. */
  assert_line(t, "# TYPE aw_api_retries_total counter");
  assert_line(t, "aw_api_retries_total{route=\"POST /threads/{id}/runs\"} 2");
  assert_line(t, "aw_api_retries_total{route=\"GET /threads/{id}/runs/{id}\"} 1");
  assert_line(t, "aw_api_series_dropped_total 0");
  free(t);
  rmet_free(m);
}

static void test_series_beyond_the_cap_are_dropped_and_counted(void **state) {
  (void)state;
  rmet *m = NULL;
  assert_int_equal(rmet_new(&m), AW_OK);
  char route[64];
  for (int i = 0; i < RMET_API_SERIES_MAX; i++) {
    snprintf(route, sizeof route, "GET /r%c%c", 'a' + i / 26, 'a' + i % 26);
    rmet_api_observe(m, route, 200, 0.01, 1);
  }
  rmet_api_observe(m, "GET /one-too-many", 200, 0.01, 2);
  rmet_api_observe(m, "GET /raa", 404, 0.01, 1); /* a new status is a new series too */
  rmet_api_observe(m, "GET /raa", 200, 0.01, 1); /* an existing series still counts */
  char *t = render(m);
  assert_line(t, "aw_api_series_dropped_total 2");
  assert_no_text(t, "one-too-many");
  assert_no_text(t, "status=\"404\"");
  assert_line(t, "aw_api_request_seconds_count{route=\"GET /raa\",status=\"200\"} 2");
  snprintf(route, sizeof route, "aw_api_request_seconds_count{route=\"GET /r%c%c\",status=\"200\"} 1",
           'a' + (RMET_API_SERIES_MAX - 1) / 26, 'a' + (RMET_API_SERIES_MAX - 1) % 26);
  assert_line(t, route);
  free(t);
  rmet_free(m);
}

static void test_consumer_lag_families_are_rendered_without_a_worker(void **state) {
  (void)state;
  rmet *m = NULL;
  assert_int_equal(rmet_new(&m), AW_OK);
  char *t = render(m);
  assert_line(t, "# TYPE aw_consumer_lag gauge");
  assert_line(t, "# TYPE aw_consumer_lag_total gauge");
  assert_line(t, "aw_consumer_lag_total 0");
  assert_no_text(t, "aw_consumer_lag{");
  /* The families that were there before stay. */
  assert_line(t, "aw_redis_errors_total 0");
  assert_line(t, "aw_kafka_errors_total 0");
  free(t);
  rmet_free(m);
  rmet_free(NULL);
}

static void test_conversation_requests_are_counted_by_kind_and_outcome(void **state) {
  (void)state;
  rmet *m = NULL;
  assert_int_equal(rmet_new(&m), AW_OK);
  char *t = render(m);
  assert_line(t, "# TYPE aw_conversation_requests_total counter");
  static const char *const kinds[] = {"history", "append", "reset", "delete", "cancel"};
  static const char *const outcomes[] = {"completed", "failed", "rejected"};
  char line[160];
  for (size_t k = 0; k < 5; k++)
    for (size_t o = 0; o < 3; o++) {
      snprintf(line, sizeof line, "aw_conversation_requests_total{kind=\"%s\",outcome=\"%s\"} 0", kinds[k],
               outcomes[o]);
      assert_line(t, line);
    }
  /* A message is counted by aw_events_answered, not here. */
  assert_no_text(t, "aw_conversation_requests_total{kind=\"message\"");
  free(t);
  rmet_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_api_calls_are_histograms_by_route_and_status),
      cmocka_unit_test(test_series_beyond_the_cap_are_dropped_and_counted),
      cmocka_unit_test(test_consumer_lag_families_are_rendered_without_a_worker),
      cmocka_unit_test(test_conversation_requests_are_counted_by_kind_and_outcome),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

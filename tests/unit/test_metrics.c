/* test_metrics.c -- the metrics registry and the exact Prometheus text
 * exposition (format 0.0.4) it renders: counters, labelled counters, gauges,
 * histograms with cumulative buckets, escaping, number formatting, and the
 * registration rules.  Needs no infrastructure; ASan checks every test frees
 * what it registered.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <string.h>

#include <cmocka.h>

#include "metrics.h"

/* Render r and compare with want exactly. */
static void assert_renders(const met_registry *r, const char *want) {
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(met_render(r, &b), AW_OK);
  assert_string_equal(b.data ? b.data : "", want);
  buf_free(&b);
}

static met_registry *new_reg(void) {
  met_registry *r = NULL;
  assert_int_equal(met_registry_new(64, &r), AW_OK);
  assert_non_null(r);
  return r;
}

static void test_empty_registry_renders_nothing(void **state) {
  (void)state;
  met_registry *r = new_reg();
  assert_renders(r, "");
  met_registry_free(r);
  met_registry_free(NULL);
}

static void test_counter_without_labels_gets_total_suffix_and_counts(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_counter_ref *a, *b;
  assert_int_equal(met_counter(r, "aw_events_consumed", "Events consumed.", &a, NULL), AW_OK);
  assert_int_equal(met_counter(r, "aw_dlq_total", "Events sent to the DLQ.", &b, NULL), AW_OK);
  met_inc(a);
  met_inc(a);
  met_add(a, 3);
  assert_renders(r,
                 "# HELP aw_events_consumed_total Events consumed.\n"
                 "# TYPE aw_events_consumed_total counter\n"
                 "aw_events_consumed_total 5\n"
                 "# HELP aw_dlq_total Events sent to the DLQ.\n"
                 "# TYPE aw_dlq_total counter\n"
                 "aw_dlq_total 0\n");
  met_registry_free(r);
}

static void test_counter_never_goes_down(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_counter_ref *c;
  assert_int_equal(met_counter(r, "c_total", "", &c, NULL), AW_OK);
  met_add(c, 2.5);
  met_add(c, -1);
  met_add(c, NAN);
  assert_true(met_counter_value(c) == 2.5);
  met_counter_set(c, 10); /* mirroring an external monotonic count */
  met_counter_set(c, 7);  /* a lower value is ignored */
  assert_true(met_counter_value(c) == 10);
  met_registry_free(r);
}

static void test_labelled_counters_render_in_registration_order_and_dedupe(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_counter_ref *ans, *rej, *ans2;
  assert_int_equal(met_counter(r, "aw_events_total", "Events by outcome.", &ans, "outcome",
                               "answered", "source", "kafka", NULL),
                   AW_OK);
  assert_int_equal(met_counter(r, "aw_events_total", "Events by outcome.", &rej, "outcome",
                               "rejected", "source", "kafka", NULL),
                   AW_OK);
  /* The same label values again: the same handle, no new series. */
  assert_int_equal(met_counter(r, "aw_events_total", "Events by outcome.", &ans2, "outcome",
                               "answered", "source", "kafka", NULL),
                   AW_OK);
  assert_ptr_equal(ans, ans2);
  met_inc(rej);
  for (int i = 0; i < 41; i++) met_inc(ans);
  met_inc(ans2);
  assert_renders(r,
                 "# HELP aw_events_total Events by outcome.\n"
                 "# TYPE aw_events_total counter\n"
                 "aw_events_total{outcome=\"answered\",source=\"kafka\"} 42\n"
                 "aw_events_total{outcome=\"rejected\",source=\"kafka\"} 1\n");
  met_registry_free(r);
}

static void test_array_form_registers_the_same_series(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_counter_ref *a, *b;
  const char *kv[] = {"endpoint", "runs"};
  assert_int_equal(met_counterv(r, "x_total", "X.", kv, 1, &a), AW_OK);
  assert_int_equal(met_counter(r, "x_total", "X.", &b, "endpoint", "runs", NULL), AW_OK);
  assert_ptr_equal(a, b);
  met_registry_free(r);
}

static void test_gauges_set_and_add_including_fractions_and_negatives(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_gauge_ref *inflight, *paused, *temp;
  assert_int_equal(met_gauge(r, "aw_in_flight", "Events consumed, not done.", &inflight, NULL),
                   AW_OK);
  assert_int_equal(met_gauge(r, "aw_paused", "1 while consumption is paused.", &paused, NULL),
                   AW_OK);
  assert_int_equal(met_gauge(r, "aw_t", "", &temp, "where", "here", NULL), AW_OK);
  met_gauge_set(inflight, 17);
  met_gauge_add(inflight, -20);
  met_gauge_set(paused, 1);
  met_gauge_set(temp, 0.1);
  met_gauge_add(temp, 0.2); /* 0.30000000000000004: printed so it reads back exactly */
  assert_true(met_gauge_value(inflight) == -3);
  assert_renders(r,
                 "# HELP aw_in_flight Events consumed, not done.\n"
                 "# TYPE aw_in_flight gauge\n"
                 "aw_in_flight -3\n"
                 "# HELP aw_paused 1 while consumption is paused.\n"
                 "# TYPE aw_paused gauge\n"
                 "aw_paused 1\n"
                 "# TYPE aw_t gauge\n" /* empty help: no HELP line */
                 "aw_t{where=\"here\"} 0.30000000000000004\n");
  met_registry_free(r);
}

static void test_histogram_buckets_are_cumulative_with_inf_sum_and_count(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_histogram_ref *runs, *threads;
  const double b[] = {1, 2.5, 10};
  assert_int_equal(met_histogram(r, "aw_api_ms", "API latency.", b, 3, &runs, "endpoint", "runs",
                                 "status", "2xx", NULL),
                   AW_OK);
  assert_int_equal(met_histogram(r, "aw_api_ms", "API latency.", b, 3, &threads, "endpoint",
                                 "threads", "status", "5xx", NULL),
                   AW_OK);
  met_observe(runs, 0.5);  /* le=1 */
  met_observe(runs, 1);    /* a value equal to a bound counts in that bucket */
  met_observe(runs, 2);    /* le=2.5 */
  met_observe(runs, 10);   /* le=10 */
  met_observe(runs, 11.5); /* only +Inf */
  met_observe(runs, NAN);  /* ignored */
  assert_int_equal(met_histogram_count(runs), 5);
  assert_renders(r,
                 "# HELP aw_api_ms API latency.\n"
                 "# TYPE aw_api_ms histogram\n"
                 "aw_api_ms_bucket{endpoint=\"runs\",status=\"2xx\",le=\"1\"} 2\n"
                 "aw_api_ms_bucket{endpoint=\"runs\",status=\"2xx\",le=\"2.5\"} 3\n"
                 "aw_api_ms_bucket{endpoint=\"runs\",status=\"2xx\",le=\"10\"} 4\n"
                 "aw_api_ms_bucket{endpoint=\"runs\",status=\"2xx\",le=\"+Inf\"} 5\n"
                 "aw_api_ms_sum{endpoint=\"runs\",status=\"2xx\"} 25\n"
                 "aw_api_ms_count{endpoint=\"runs\",status=\"2xx\"} 5\n"
                 "aw_api_ms_bucket{endpoint=\"threads\",status=\"5xx\",le=\"1\"} 0\n"
                 "aw_api_ms_bucket{endpoint=\"threads\",status=\"5xx\",le=\"2.5\"} 0\n"
                 "aw_api_ms_bucket{endpoint=\"threads\",status=\"5xx\",le=\"10\"} 0\n"
                 "aw_api_ms_bucket{endpoint=\"threads\",status=\"5xx\",le=\"+Inf\"} 0\n"
                 "aw_api_ms_sum{endpoint=\"threads\",status=\"5xx\"} 0\n"
                 "aw_api_ms_count{endpoint=\"threads\",status=\"5xx\"} 0\n");
  met_registry_free(r);
}

static void test_histogram_without_labels_and_latency_buckets(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_histogram_ref *h;
  assert_int_equal(met_histogram(r, "lat_ms", "L.", met_latency_ms_buckets,
                                 MET_LATENCY_MS_NBUCKETS, &h, NULL),
                   AW_OK);
  met_observe(h, 7);
  met_observe(h, 20000);
  assert_renders(r,
                 "# HELP lat_ms L.\n"
                 "# TYPE lat_ms histogram\n"
                 "lat_ms_bucket{le=\"1\"} 0\n"
                 "lat_ms_bucket{le=\"2\"} 0\n"
                 "lat_ms_bucket{le=\"5\"} 0\n"
                 "lat_ms_bucket{le=\"10\"} 1\n"
                 "lat_ms_bucket{le=\"25\"} 1\n"
                 "lat_ms_bucket{le=\"50\"} 1\n"
                 "lat_ms_bucket{le=\"100\"} 1\n"
                 "lat_ms_bucket{le=\"250\"} 1\n"
                 "lat_ms_bucket{le=\"500\"} 1\n"
                 "lat_ms_bucket{le=\"1000\"} 1\n"
                 "lat_ms_bucket{le=\"2500\"} 1\n"
                 "lat_ms_bucket{le=\"5000\"} 1\n"
                 "lat_ms_bucket{le=\"10000\"} 1\n"
                 "lat_ms_bucket{le=\"+Inf\"} 2\n"
                 "lat_ms_sum 20007\n"
                 "lat_ms_count 2\n");
  met_registry_free(r);
}

static void test_label_values_and_help_are_escaped(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_counter_ref *c;
  assert_int_equal(met_counter(r, "esc_total", "Back\\slash, \"quotes\" stay,\nnew line.", &c,
                               "v", "a\\b \"q\"\nz", NULL),
                   AW_OK);
  met_inc(c);
  assert_renders(r,
                 "# HELP esc_total Back\\\\slash, \"quotes\" stay,\\nnew line.\n"
                 "# TYPE esc_total counter\n"
                 "esc_total{v=\"a\\\\b \\\"q\\\"\\nz\"} 1\n");
  met_registry_free(r);
}

static void test_values_are_formatted_exactly(void **state) {
  (void)state;
  char s[64];
  assert_string_equal(met_format_value(0, s, sizeof s), "0");
  assert_string_equal(met_format_value(-0.0, s, sizeof s), "0");
  assert_string_equal(met_format_value(10000, s, sizeof s), "10000");
  assert_string_equal(met_format_value(-42, s, sizeof s), "-42");
  assert_string_equal(met_format_value(9007199254740991.0, s, sizeof s), "9007199254740991");
  assert_string_equal(met_format_value(0.1, s, sizeof s), "0.1");
  assert_string_equal(met_format_value(0.005, s, sizeof s), "0.005");
  assert_string_equal(met_format_value(1e-7, s, sizeof s), "1e-07");
  assert_string_equal(met_format_value(1e300, s, sizeof s), "1e+300");
  assert_string_equal(met_format_value(1.0 / 3, s, sizeof s), "0.3333333333333333");
  assert_string_equal(met_format_value(INFINITY, s, sizeof s), "+Inf");
  assert_string_equal(met_format_value(-INFINITY, s, sizeof s), "-Inf");
  assert_string_equal(met_format_value(NAN, s, sizeof s), "NaN");
}

static void test_gauge_special_values_render(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_gauge_ref *g;
  assert_int_equal(met_gauge(r, "g", "", &g, NULL), AW_OK);
  met_gauge_set(g, -INFINITY);
  assert_renders(r, "# TYPE g gauge\ng -Inf\n");
  met_registry_free(r);
}

static void test_families_keep_registration_order_when_interleaved(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_counter_ref *a1, *a2;
  met_gauge_ref *g;
  assert_int_equal(met_counter(r, "a_total", "A.", &a1, "k", "1", NULL), AW_OK);
  assert_int_equal(met_gauge(r, "b", "B.", &g, NULL), AW_OK);
  assert_int_equal(met_counter(r, "a_total", "A.", &a2, "k", "2", NULL), AW_OK);
  assert_renders(r,
                 "# HELP a_total A.\n# TYPE a_total counter\n"
                 "a_total{k=\"1\"} 0\na_total{k=\"2\"} 0\n"
                 "# HELP b B.\n# TYPE b gauge\nb 0\n");
  met_registry_free(r);
}

static void test_invalid_registrations_are_einval_and_leave_no_trace(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_counter_ref *c = (met_counter_ref *)1;
  met_gauge_ref *g;
  met_histogram_ref *h;
  const double b[] = {1, 2};
  const double bad_order[] = {2, 1};
  const double bad_inf[] = {1, INFINITY};

  assert_int_equal(met_counter(r, "", "h", &c, NULL), AW_EINVAL);
  assert_null(c);
  assert_int_equal(met_counter(r, "9lives", "h", &c, NULL), AW_EINVAL);
  assert_int_equal(met_counter(r, "has-dash", "h", &c, NULL), AW_EINVAL);
  assert_int_equal(met_counter(r, "ok", NULL, &c, NULL), AW_EINVAL);
  assert_int_equal(met_counter(r, "ok", "h", &c, "odd", NULL), AW_EINVAL);
  assert_int_equal(met_counter(r, "ok", "h", &c, "__reserved", "v", NULL), AW_EINVAL);
  assert_int_equal(met_counter(r, "ok", "h", &c, "a:b", "v", NULL), AW_EINVAL);
  assert_int_equal(met_counter(r, "ok", "h", &c, "dup", "1", "dup", "2", NULL), AW_EINVAL);
  assert_int_equal(met_counter(r, "ok", "h", &c, "a", "1", "b", "2", "c", "3", "d", "4", "e",
                               "5", NULL),
                   AW_EINVAL); /* more than MET_MAX_LABELS */
  char longv[MET_MAX_LABEL_VALUE + 2];
  memset(longv, 'v', sizeof longv - 1);
  longv[sizeof longv - 1] = '\0';
  assert_int_equal(met_counter(r, "ok", "h", &c, "k", longv, NULL), AW_EINVAL);

  assert_int_equal(met_histogram(r, "h", "h", b, 2, &h, "le", "1", NULL), AW_EINVAL);
  assert_int_equal(met_histogram(r, "h", "h", bad_order, 2, &h, NULL), AW_EINVAL);
  assert_int_equal(met_histogram(r, "h", "h", bad_inf, 2, &h, NULL), AW_EINVAL);
  assert_int_equal(met_histogram(r, "h", "h", b, 0, &h, NULL), AW_EINVAL);
  assert_int_equal(met_histogram(r, "h_count", "h", b, 2, &h, NULL), AW_EINVAL);
  assert_null(h);
  assert_renders(r, ""); /* nothing half-registered */

  /* A family is fixed by its first registration. */
  assert_int_equal(met_counter(r, "fam_total", "F.", &c, "k", "1", NULL), AW_OK);
  assert_int_equal(met_gauge(r, "fam_total", "F.", &g, "k", "1", NULL), AW_EINVAL);
  assert_int_equal(met_counter(r, "fam_total", "Other help.", &c, "k", "2", NULL), AW_EINVAL);
  assert_int_equal(met_counter(r, "fam_total", "F.", &c, "other", "2", NULL), AW_EINVAL);
  assert_int_equal(met_counter(r, "fam_total", "F.", &c, NULL), AW_EINVAL);
  assert_int_equal(met_histogram(r, "hh", "H.", b, 2, &h, NULL), AW_OK);
  assert_int_equal(met_histogram(r, "hh", "H.", b, 1, &h, "x", "y", NULL), AW_EINVAL);
  met_registry_free(r);
}

static void test_series_limit_is_etoobig_but_lookups_still_work(void **state) {
  (void)state;
  met_registry *r = NULL;
  assert_int_equal(met_registry_new(0, &r), AW_EINVAL);
  assert_int_equal(met_registry_new(2, &r), AW_OK);
  met_counter_ref *a, *b, *c, *again;
  assert_int_equal(met_counter(r, "x_total", "", &a, "k", "1", NULL), AW_OK);
  assert_int_equal(met_counter(r, "x_total", "", &b, "k", "2", NULL), AW_OK);
  assert_int_equal(met_counter(r, "x_total", "", &c, "k", "3", NULL), AW_ETOOBIG);
  assert_null(c);
  assert_int_equal(met_counter(r, "x_total", "", &again, "k", "1", NULL), AW_OK);
  assert_ptr_equal(again, a);
  met_registry_free(r);
}

static void test_render_past_buffer_max_is_etoobig(void **state) {
  (void)state;
  met_registry *r = new_reg();
  met_counter_ref *c;
  assert_int_equal(met_counter(r, "a_rather_long_metric_name_total", "Help.", &c, NULL), AW_OK);
  buf b;
  buf_init(&b, 40);
  assert_int_equal(met_render(r, &b), AW_ETOOBIG);
  assert_null(b.data);
  buf_free(&b);
  met_registry_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_empty_registry_renders_nothing),
      cmocka_unit_test(test_counter_without_labels_gets_total_suffix_and_counts),
      cmocka_unit_test(test_counter_never_goes_down),
      cmocka_unit_test(test_labelled_counters_render_in_registration_order_and_dedupe),
      cmocka_unit_test(test_array_form_registers_the_same_series),
      cmocka_unit_test(test_gauges_set_and_add_including_fractions_and_negatives),
      cmocka_unit_test(test_histogram_buckets_are_cumulative_with_inf_sum_and_count),
      cmocka_unit_test(test_histogram_without_labels_and_latency_buckets),
      cmocka_unit_test(test_label_values_and_help_are_escaped),
      cmocka_unit_test(test_values_are_formatted_exactly),
      cmocka_unit_test(test_gauge_special_values_render),
      cmocka_unit_test(test_families_keep_registration_order_when_interleaved),
      cmocka_unit_test(test_invalid_registrations_are_einval_and_leave_no_trace),
      cmocka_unit_test(test_series_limit_is_etoobig_but_lookups_still_work),
      cmocka_unit_test(test_render_past_buffer_max_is_etoobig),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_kafka_txn_stop.c -- stopping the transactional producer
 * (common/kafka/kafka_txn.c) while init_transactions keeps failing, against
 * librdkafka's mock cluster with its only broker down: every attempt times
 * out (retriable), and without a stop the thread would make 1 + 10 of them.
 * ktx_free must interrupt the retries: the attempt in progress ends by its
 * timeout, no other starts.
 *
 * The attempts are counted from the module's own log lines ("kafka
 * transactions: init_transactions attempt N failed ..."), written to
 * stderr, which the test points at a temporary file while it runs: no
 * wall-clock threshold, the count is the property.
 *
 * Needs: nothing outside the process (the mock cluster listens on loopback).
 * Takes about 2 s (attempts of 500 ms). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <uv.h>

#include "kafka_txn.h"
#include "log.h"

#define ATTEMPT_MS 500

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* ---- stderr into a file, to count the module's log lines -------------------------- */

typedef struct capture {
  char path[64];
  int fd, saved;
} capture;

static void capture_start(capture *c) {
  snprintf(c->path, sizeof c->path, "/tmp/test_kafka_txn_stop.XXXXXX");
  c->fd = mkstemp(c->path);
  assert_true(c->fd >= 0);
  fflush(stderr);
  c->saved = dup(STDERR_FILENO);
  assert_true(c->saved >= 0);
  assert_true(dup2(c->fd, STDERR_FILENO) >= 0);
}

static void capture_stop(capture *c) {
  fflush(stderr);
  assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
  close(c->saved);
  close(c->fd);
  unlink(c->path);
}

/* Lines of the capture that contain needle. */
static int count_lines(const capture *c, const char *needle) {
  FILE *f = fopen(c->path, "r");
  assert_non_null(f);
  char line[4096];
  int n = 0;
  while (fgets(line, sizeof line, f))
    if (strstr(line, needle)) n++;
  fclose(f);
  return n;
}

/* ---- the test -------------------------------------------------------------------------- */

static void on_dr(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err) {
  (void)opaque, (void)msg_opaque, (void)err;
}

static void on_done(void *opaque, uint64_t seq, int committed, const char *errstr) {
  (void)opaque, (void)seq, (void)committed, (void)errstr;
}

static void test_stopping_while_init_keeps_failing_waits_for_the_attempt_in_progress_only(void **state) {
  (void)state;
  char e[512];
  /* A cluster whose only broker is down: init_transactions cannot find a
   * coordinator and times out, a retriable error. */
  rd_kafka_conf_t *oc = rd_kafka_conf_new();
  assert_int_equal(rd_kafka_conf_set(oc, "log_level", "2", e, sizeof e), RD_KAFKA_CONF_OK);
  rd_kafka_t *owner = rd_kafka_new(RD_KAFKA_PRODUCER, oc, e, sizeof e);
  assert_non_null(owner);
  rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(owner, 1);
  assert_non_null(mc);
  assert_int_equal(rd_kafka_mock_broker_set_down(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);

  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), e, sizeof e),
                   RD_KAFKA_CONF_OK);
  assert_int_equal(rd_kafka_conf_set(conf, "transactional.id", "t-stop", e, sizeof e), RD_KAFKA_CONF_OK);
  assert_int_equal(rd_kafka_conf_set(conf, "log_level", "2", e, sizeof e), RD_KAFKA_CONF_OK);

  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  capture cap;
  capture_start(&cap);
  ktx_options opt = {.attempt_timeout_ms = ATTEMPT_MS};
  ktx *t = NULL;
  assert_int_equal(ktx_new_opts(&loop, conf, &opt, on_dr, on_done, NULL, &t, e, sizeof e), AW_OK);

  /* Two failed attempts: the failure is retriable and the retries are
   * under way (the third attempt is in progress). */
  const char *attempt = "init_transactions attempt";
  uint64_t deadline = now_ms() + 60000;
  int before = 0;
  while ((before = count_lines(&cap, attempt)) < 2 && now_ms() < deadline) uv_sleep(20);
  assert_true(ktx_open(t) == 0);

  ktx_free(t);
  int after = count_lines(&cap, attempt);
  int stopped = count_lines(&cap, ", stopping");
  capture_stop(&cap);
  fprintf(stderr, "init_transactions attempts: %d before ktx_free, %d when it returned (without the stop: 1 + 10)\n",
          before, after);
  assert_true(before >= 2);
  /* The attempt in progress ended, and no other began: not the 11. */
  assert_true(after - before <= 1);
  assert_int_equal(stopped, 1);

  uv_run(&loop, UV_RUN_DEFAULT); /* the module's handles close */
  assert_int_equal(uv_loop_close(&loop), 0);
  rd_kafka_mock_cluster_destroy(mc);
  rd_kafka_destroy(owner);
}

static void test_a_negative_attempt_timeout_is_refused_and_the_conf_stays_the_callers(void **state) {
  (void)state;
  char e[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  assert_int_equal(rd_kafka_conf_set(conf, "transactional.id", "t-neg", e, sizeof e), RD_KAFKA_CONF_OK);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  ktx_options opt = {.attempt_timeout_ms = -1};
  ktx *t = NULL;
  assert_int_equal(ktx_new_opts(&loop, conf, &opt, on_dr, on_done, NULL, &t, e, sizeof e), AW_EINVAL);
  assert_null(t);
  assert_non_null(strstr(e, "attempt timeout"));
  rd_kafka_conf_destroy(conf);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  log_set_level(LOG_WARN);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stopping_while_init_keeps_failing_waits_for_the_attempt_in_progress_only),
      cmocka_unit_test(test_a_negative_attempt_timeout_is_refused_and_the_conf_stays_the_callers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

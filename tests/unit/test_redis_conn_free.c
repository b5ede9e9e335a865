/* test_redis_conn_free.c -- what rconn_free promises its callers
 * (common/redis/redis_conn.h): every reply still pending is failed into its
 * callback (AW_EREDIS) before rconn_free returns, and no callback runs
 * afterwards -- even when the server answers later.  The worker's teardown
 * relies on it (cmd_run.c frees Redis, then the worker whose events the
 * callbacks point to); the old graceful disconnect delivered those replies
 * on a later loop iteration, into freed events and a freed connection.
 *
 * Needs redis-server (redis_fixture.h); skipped without one.  Run under
 * ASan, a callback into freed memory fails the test too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "redis_fixture.h"

static int start_server(void **state) {
  (void)state;
  rfx_start("test_redis_conn_free");
  return 0;
}

static int stop_server(void **state) {
  (void)state;
  rfx_stop();
  return 0;
}

typedef struct calls {
  int n;        /* callbacks run */
  int errors;   /* of which with AW_EREDIS */
  int after;    /* of which after rconn_free returned */
  int freed;    /* rconn_free has returned */
} calls;

static void on_reply(void *opaque, int err, redisReply *reply) {
  (void)reply;
  calls *c = opaque;
  c->n++;
  if (err == AW_EREDIS) c->errors++;
  if (c->freed) c->after++;
}

static void on_tick(uv_timer_t *t) {
  int *fired = t->data;
  *fired = 1;
}

static void pending_replies_fail_before_free_returns_and_none_come_later(void **state) {
  (void)state;
  RFX_NEED();
  uv_loop_t loop;
  uv_loop_init(&loop);
  rconn *rc = rfx_rconn(&loop);
  assert_non_null(rc);
  calls c = {0};
  /* Two replies the server sends only later: a blocking pop that times out
   * after 0.3 s, and a plain command queued behind it. */
  assert_int_equal(rconn_command(rc, on_reply, &c, "BLPOP %s %s", "rfx-free-never", "0.3"), AW_OK);
  assert_int_equal(rconn_command(rc, on_reply, &c, "PING"), AW_OK);
  rconn_free(rc);
  c.freed = 1;
  assert_int_equal(c.n, 2);
  assert_int_equal(c.errors, 2);
  /* Run the loop past the moment the server would have answered: nothing
   * more is delivered (and, under ASan, nothing touches freed memory). */
  uv_timer_t t;
  int fired = 0;
  uv_timer_init(&loop, &t);
  t.data = &fired;
  uv_timer_start(&t, on_tick, 600, 0);
  assert_true(rfx_run_until(&loop, &fired));
  assert_int_equal(c.n, 2);
  assert_int_equal(c.after, 0);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pending_replies_fail_before_free_returns_and_none_come_later),
  };
  return cmocka_run_group_tests(tests, start_server, stop_server);
}

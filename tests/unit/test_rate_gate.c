/* test_rate_gate.c -- worker/ratelimit/rate_gate.c (the fleet's API rate
 * limit: token buckets in Redis) against a real redis-server: a full
 * bucket lets its capacity through and then meters the rest at the rate;
 * gates with the same API key share one bucket (the fleet), other keys do
 * not, and the key is never stored; the API's remaining and Retry-After
 * lower and block the bucket; a request larger than the token capacity goes
 * on a full bucket and leaves a debt; a cancelled wait never gets its
 * grant; too many waiting requests hold consumption and fewer release it;
 * Redis unreachable fails open; a lost script cache is survived.
 *
 * Needs: redis-server on PATH (or $AW_REDIS_SERVER), started by the fixture
 * (tests/unit/redis_fixture.h); without one every test is skipped.  Times
 * are asserted from below (a wait is at least what the bucket says, minus a
 * little for Redis' clock ticking between calls), so a slow machine cannot
 * fail them; upper bounds are generous.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "rate_gate.h"
#include "redis_fixture.h"

typedef struct env {
  rfx_env fx;      /* its rconn and rc2: two workers of one fleet */
  rconn *rc2;
  int holds[8];    /* on_hold calls, in order */
  int nholds;
  rg *gates[4];    /* made by gate(); a failed test leaves them to teardown */
} env;

static env *g_env;

static int setup(void **state) {
  int rc = rfx_env_setup(state, sizeof(env));
  env *e = *state;
  if (!e) return rc;
  e->rc2 = rfx_rconn(&e->fx.loop);
  assert_non_null(e->rc2);
  g_env = e;
  return 0;
}

static int teardown(void **state) {
  env *e = *state;
  if (!e) return 0;
  for (int i = 0; i < 4; i++) rg_stop(e->gates[i]);
  rconn_free(e->fx.rc);
  e->fx.rc = NULL;
  rconn_free(e->rc2);
  for (int i = 0; i < 4; i++) rg_free(e->gates[i]);
  g_env = NULL;
  return rfx_env_teardown(state);
}

/* ---- requests --------------------------------------------------------------- */

typedef struct req {
  int granted;
  uint64_t at_ns; /* uv_hrtime() at the grant */
  void *ticket;
} req;

typedef struct batch {
  int left; /* grants still due */
  int done; /* left reached 0 */
} batch;

static batch g_batch;

static void on_grant(void *opaque) {
  req *q = opaque;
  assert_false(q->granted); /* exactly once */
  q->granted = 1;
  q->at_ns = uv_hrtime();
  if (--g_batch.left == 0) g_batch.done = 1;
}

static void on_hold(void *opaque, int hold) {
  env *e = opaque;
  if (e->nholds < 8) e->holds[e->nholds++] = hold;
}

static rg *gate(rconn *rc, const char *key, long rpm, long tpm, long burst_ms, long max_waiting) {
  rg_config c = {rpm, tpm, burst_ms, max_waiting, "awt", on_hold, NULL, g_env};
  rg *g = NULL;
  char err[128];
  assert_int_equal(rg_new(&g_env->fx.loop, rc, key, &c, &g, err, sizeof err), AW_OK);
  for (int i = 0; i < 4; i++)
    if (!g_env->gates[i]) {
      g_env->gates[i] = g;
      return g;
    }
  fail_msg("more than 4 gates in one test");
  return NULL;
}

static void ask(rg *g, req *q, const char *body) {
  const api_gate *p = rg_port(g);
  memset(q, 0, sizeof *q);
  assert_int_equal(p->acquire(p->self, "chat", body, body ? strlen(body) : 0, on_grant, q, &q->ticket), AW_OK);
  assert_false(q->granted); /* never inside the call */
}

/* Ask n requests of g (bodies NULL) and run until every one is granted. */
static void ask_all(rg *g, req *v, int n) {
  g_batch.left = n;
  g_batch.done = 0;
  for (int i = 0; i < n; i++) ask(g, &v[i], NULL);
  if (!rfx_run_until(&g_env->fx.loop, &g_batch.done)) fail_msg("not every request was granted within 5 s");
}

static double ms_between(uint64_t a, uint64_t b) { return (double)(b - a) / 1e6; }

static void gate_free(rg *g) {
  for (int i = 0; i < 4; i++)
    if (g_env->gates[i] == g) g_env->gates[i] = NULL;
  rg_free(g);
}

/* ---- the bucket ---------------------------------------------------------------- */

static void test_a_full_bucket_lets_its_capacity_through_then_meters_the_rest(void **state) {
  RFX_NEED();
  (void)state;
  /* 600 a minute, a second's burst: 10 at once, then one per 100 ms. */
  rg *g = gate(g_env->fx.rc, "sk-one", 600, 0, 1000, 0);
  req v[14];
  uint64_t t0 = uv_hrtime();
  ask_all(g, v, 14);
  /* Granted in order (one queue per class). */
  for (int i = 1; i < 14; i++) assert_true(v[i].at_ns >= v[i - 1].at_ns);
  assert_true(ms_between(t0, v[9].at_ns) < 1000);
  /* The 4 beyond the capacity needed 4 refills of 100 ms. */
  assert_true(ms_between(t0, v[13].at_ns) >= 4 * 100 - 20);
  const rg_stats *s = rg_get_stats(g);
  assert_int_equal(s->granted, 14);
  assert_true(s->waits >= 4);
  assert_int_equal(s->waiting, 0);
  assert_int_equal(s->fail_open, 0);
  gate_free(g);
}

static void test_workers_with_the_same_key_share_one_bucket(void **state) {
  RFX_NEED();
  (void)state;
  /* Two workers of a fleet (two connections); 10 at once between them. */
  rg *a = gate(g_env->fx.rc, "sk-fleet", 600, 0, 1000, 0);
  rg *b = gate(g_env->rc2, "sk-fleet", 600, 0, 1000, 0);
  req v[20];
  uint64_t t0 = uv_hrtime();
  g_batch.left = 20;
  g_batch.done = 0;
  for (int i = 0; i < 20; i++) ask(i % 2 ? b : a, &v[i], NULL);
  if (!rfx_run_until(&g_env->fx.loop, &g_batch.done)) fail_msg("not every request was granted within 5 s");
  uint64_t last = 0;
  for (int i = 0; i < 20; i++)
    if (v[i].at_ns > last) last = v[i].at_ns;
  /* 10 beyond the shared capacity: 10 refills of 100 ms, whichever worker. */
  assert_true(ms_between(t0, last) >= 10 * 100 - 20);
  assert_true(rg_get_stats(a)->waits + rg_get_stats(b)->waits >= 10);
  gate_free(a);
  gate_free(b);
}

static void test_other_keys_have_their_own_bucket_and_no_key_is_stored(void **state) {
  RFX_NEED();
  (void)state;
  rg *a = gate(g_env->fx.rc, "sk-alpha-secret", 600, 0, 1000, 0);
  rg *b = gate(g_env->rc2, "sk-beta-secret", 600, 0, 1000, 0);
  req v[10], w[10];
  ask_all(a, v, 10);
  ask_all(b, w, 10);
  assert_int_equal(rg_get_stats(a)->waits, 0);
  assert_int_equal(rg_get_stats(b)->waits, 0);
  char ka[RG_KEY_MAX], kb[RG_KEY_MAX];
  assert_int_equal(rg_bucket_key(a, "chat", ka, sizeof ka), AW_OK);
  assert_int_equal(rg_bucket_key(b, "chat", kb, sizeof kb), AW_OK);
  assert_string_not_equal(ka, kb);
  redisReply *r = redisCommand(g_env->fx.sync, "KEYS *");
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  assert_int_equal(r->elements, 2);
  for (size_t i = 0; i < r->elements; i++) {
    const char *k = r->element[i]->str;
    assert_null(strstr(k, "secret"));
    assert_true(strcmp(k, ka) == 0 || strcmp(k, kb) == 0);
    /* <prefix>:rl:<16 hex digits>:<class> */
    assert_int_equal(strncmp(k, "awt:rl:", 7), 0);
    assert_int_equal(strspn(k + 7, "0123456789abcdef"), 16);
    assert_string_equal(k + 7 + 16, ":chat");
  }
  freeReplyObject(r);
  r = redisCommand(g_env->fx.sync, "PTTL %s", ka);
  assert_true(r && r->type == REDIS_REPLY_INTEGER && r->integer > 0); /* a bucket expires */
  freeReplyObject(r);
  gate_free(a);
  gate_free(b);
}

static void feedback(rg *g, int status, const char *const *lines, size_t n) {
  rlh_info in;
  rlh_init(&in);
  for (size_t i = 0; i < n; i++) assert_int_equal(rlh_header(&in, lines[i], strlen(lines[i]), 0), 1);
  const api_gate *p = rg_port(g);
  p->feedback(p->self, "chat", status, &in, 0);
}

static void test_the_apis_remaining_lowers_the_bucket(void **state) {
  RFX_NEED();
  (void)state;
  rg *g = gate(g_env->fx.rc, "sk-fb", 600, 0, 1000, 0);
  req v[1];
  ask_all(g, v, 1); /* the bucket exists, 9 left */
  /* Another client of the key used the rest: the API says 0 remain. */
  static const char *const h[] = {"x-ratelimit-limit-requests: 600", "x-ratelimit-remaining-requests: 0",
                                  "x-ratelimit-reset-requests: 1s"};
  feedback(g, 200, h, 3);
  uint64_t t0 = uv_hrtime();
  req w[1];
  ask_all(g, w, 1); /* the same connection: after the feedback */
  assert_true(ms_between(t0, w[0].at_ns) >= 100 - 20);
  assert_int_equal(rg_get_stats(g)->feedbacks, 1);
  assert_int_equal(rg_get_stats(g)->waits, 1);
  gate_free(g);
}

static void test_plenty_remaining_costs_no_round_trip(void **state) {
  RFX_NEED();
  (void)state;
  rg *g = gate(g_env->fx.rc, "sk-plenty", 600, 0, 1000, 0);
  static const char *const h[] = {"x-ratelimit-limit-requests: 600", "x-ratelimit-remaining-requests: 599",
                                  "x-ratelimit-reset-requests: 100ms"};
  feedback(g, 200, h, 3);
  req v[1];
  ask_all(g, v, 1);
  assert_int_equal(rg_get_stats(g)->feedbacks, 0);
  gate_free(g);
}

static void test_a_429s_retry_after_blocks_the_bucket(void **state) {
  RFX_NEED();
  (void)state;
  rg *g = gate(g_env->fx.rc, "sk-429", 6000, 0, 1000, 0); /* 100 at once: only the block can stop them */
  static const char *const h[] = {"retry-after-ms: 300"};
  feedback(g, 429, h, 1);
  uint64_t t0 = uv_hrtime();
  req v[3];
  ask_all(g, v, 3);
  assert_true(ms_between(t0, v[0].at_ns) >= 300 - 20);
  assert_int_equal(rg_get_stats(g)->throttled, 1);
  gate_free(g);
}

static void test_a_request_larger_than_the_token_capacity_goes_on_a_full_bucket_and_leaves_a_debt(void **state) {
  RFX_NEED();
  (void)state;
  /* 600,000 tokens a minute, 100 ms burst: a bucket of 1,000 tokens.  Each
   * request asks ~2,000 (its output cap). */
  rg *g = gate(g_env->fx.rc, "sk-tokens", 0, 600000, 100, 0);
  static const char body[] = "{\"model\":\"m\",\"max_output_tokens\":2000}";
  req v[2];
  g_batch.left = 2;
  g_batch.done = 0;
  uint64_t t0 = uv_hrtime();
  ask(g, &v[0], body);
  ask(g, &v[1], body);
  if (!rfx_run_until(&g_env->fx.loop, &g_batch.done)) fail_msg("not granted within 5 s");
  assert_true(ms_between(t0, v[0].at_ns) < 1000);
  /* The first left the bucket 1,000 in debt: the second waits for 2,000
   * tokens of refill, 200 ms. */
  assert_true(ms_between(v[0].at_ns, v[1].at_ns) >= 200 - 20);
  gate_free(g);
}

static void never(void *opaque) {
  (void)opaque;
  fail_msg("a cancelled request was granted");
}

static void test_a_cancelled_wait_never_gets_its_grant(void **state) {
  RFX_NEED();
  (void)state;
  /* 600 a minute, 100 ms burst: one at a time, one per 100 ms. */
  rg *g = gate(g_env->fx.rc, "sk-cancel", 600, 0, 100, 0);
  const api_gate *p = rg_port(g);
  req a[1];
  ask_all(g, a, 1);
  void *ticket = NULL;
  assert_int_equal(p->acquire(p->self, "chat", NULL, 0, never, NULL, &ticket), AW_OK);
  assert_int_equal(rg_get_stats(g)->waiting, 1);
  p->cancel(p->self, ticket);
  assert_int_equal(rg_get_stats(g)->waiting, 0);
  req c[1];
  ask_all(g, c, 1); /* gets the next slot; the cancelled one's callback would fail the test */
  assert_int_equal(rg_get_stats(g)->granted, 2);
  gate_free(g);
}

static void test_too_many_waiting_hold_consumption_and_fewer_release_it(void **state) {
  RFX_NEED();
  (void)state;
  rg *g = gate(g_env->fx.rc, "sk-hold", 600, 0, 100, 2);
  req v[5];
  g_batch.left = 5;
  g_batch.done = 0;
  for (int i = 0; i < 5; i++) ask(g, &v[i], NULL);
  assert_int_equal(g_env->nholds, 1);
  assert_int_equal(g_env->holds[0], 1); /* 3 waiting > 2 */
  if (!rfx_run_until(&g_env->fx.loop, &g_batch.done)) fail_msg("not every request was granted within 5 s");
  assert_int_equal(g_env->nholds, 2);
  assert_int_equal(g_env->holds[1], 0); /* released at <= 3/4 of 2 */
  assert_int_equal(rg_get_stats(g)->holds, 1);
  gate_free(g);
}

static void test_redis_unreachable_fails_open_and_counts_it(void **state) {
  RFX_NEED();
  (void)state;
  rconn *down = NULL;
  char err[128];
  assert_int_equal(rconn_new(&g_env->fx.loop, "127.0.0.1", rfx_free_port(), &down, err, sizeof err), AW_OK);
  rg *g = gate(down, "sk-down", 60, 0, 1000, 0);
  req v[3];
  ask_all(g, v, 3); /* a bucket of one would make two of them wait a second each */
  const rg_stats *s = rg_get_stats(g);
  assert_int_equal(s->fail_open, 3);
  assert_int_equal(s->granted, 3);
  assert_int_equal(s->waits, 0);
  rg_stop(g);
  rconn_free(down);
  gate_free(g);
}

static void test_a_lost_script_cache_is_survived(void **state) {
  RFX_NEED();
  (void)state;
  rg *g = gate(g_env->fx.rc, "sk-flush", 600, 0, 1000, 0);
  req v[1];
  ask_all(g, v, 1);
  redisReply *r = redisCommand(g_env->fx.sync, "SCRIPT FLUSH");
  assert_non_null(r);
  freeReplyObject(r);
  req w[2];
  ask_all(g, w, 2);
  assert_int_equal(rg_get_stats(g)->fail_open, 0);
  gate_free(g);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_a_full_bucket_lets_its_capacity_through_then_meters_the_rest, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_workers_with_the_same_key_share_one_bucket, setup, teardown),
      cmocka_unit_test_setup_teardown(test_other_keys_have_their_own_bucket_and_no_key_is_stored, setup, teardown),
      cmocka_unit_test_setup_teardown(test_the_apis_remaining_lowers_the_bucket, setup, teardown),
      cmocka_unit_test_setup_teardown(test_plenty_remaining_costs_no_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_a_429s_retry_after_blocks_the_bucket, setup, teardown),
      cmocka_unit_test_setup_teardown(
          test_a_request_larger_than_the_token_capacity_goes_on_a_full_bucket_and_leaves_a_debt, setup, teardown),
      cmocka_unit_test_setup_teardown(test_a_cancelled_wait_never_gets_its_grant, setup, teardown),
      cmocka_unit_test_setup_teardown(test_too_many_waiting_hold_consumption_and_fewer_release_it, setup, teardown),
      cmocka_unit_test_setup_teardown(test_redis_unreachable_fails_open_and_counts_it, setup, teardown),
      cmocka_unit_test_setup_teardown(test_a_lost_script_cache_is_survived, setup, teardown),
  };
  return cmocka_run_group_tests(tests, rfx_group_start, rfx_group_stop);
}

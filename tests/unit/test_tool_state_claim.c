/* test_tool_state_claim.c -- a round's submission is claimed by one attempt
 * (worker/tools/tool_state.c, tstate_collect) against a real redis-server:
 * two workers that both believe they own an event (one lost its partition
 * without knowing yet) collect the same ready round, and only the first may
 * submit it; the second waits for the claim's lease, then takes it over with
 * the instruction to recover the turn rather than submit.
 *
 * Needs redis-server (redis_fixture.h); skipped without one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redis_fixture.h"
#include "tool_state.h"

typedef struct env {
  rfx_env fx;
  tstate ts;
} env;

static int setup(void **state) {
  int rc = rfx_env_setup(state, sizeof(env));
  env *e = *state;
  if (!e) return rc;
  tstate_init(&e->ts, e->fx.rc, "awt");
  e->ts.submit_lease_ms = 1000;
  return 0;
}

typedef struct begun {
  int done, err;
  long round;
} begun;

static void on_begun(void *o, int err, int fresh, long missing, int published, long round) {
  begun *b = o;
  (void)fresh, (void)missing, (void)published;
  b->done = 1;
  b->err = err;
  b->round = round;
}

typedef struct collected {
  int done, err, ready, taken_over, gone;
  int64_t held_until;
  long round;
  size_t ncalls;
} collected;

static void on_collected(void *o, int err, const tstate_collected *c) {
  collected *k = o;
  k->done = 1;
  k->err = err;
  if (err || !c) return;
  k->ready = c->ready;
  k->gone = c->gone;
  k->taken_over = c->taken_over;
  k->held_until = c->held_until_ms;
  k->round = c->round;
  k->ncalls = c->ncalls;
}

/* A round whose one call was decided without a service: ready at once. */
static void record_round(env *e) {
  tstate_call c = {"call_1", "get_weather", 1000000, 0, "timeout", "invalid_arguments", "{\"error\":1}", NULL};
  begun b = {0};
  assert_int_equal(tstate_round_begin(&e->ts, "conv-1", "turn-1", "ev-1", "w1", &c, 1, on_begun, &b), AW_OK);
  assert_true(rfx_run_until(&e->fx.loop, &b.done));
  assert_int_equal(b.err, AW_OK);
  assert_int_equal(b.round, 1);
}

static collected collect(env *e, const char *claim, int64_t now) {
  collected k = {0};
  assert_int_equal(tstate_collect(&e->ts, "conv-1", "turn-1", claim, now, on_collected, &k), AW_OK);
  assert_true(rfx_run_until(&e->fx.loop, &k.done));
  assert_int_equal(k.err, AW_OK);
  return k;
}

static void the_first_attempt_claims_a_ready_round_and_may_look_again(void **state) {
  RFX_NEED();
  env *e = *state;
  record_round(e);
  collected a = collect(e, "w1.1", 5000);
  assert_true(a.ready);
  assert_false(a.taken_over);
  assert_int_equal(a.round, 1);
  assert_int_equal(a.ncalls, 1);
  /* A look again by the same attempt (a Redis error retried) is still its. */
  collected again = collect(e, "w1.1", 5100);
  assert_true(again.ready);
  assert_false(again.taken_over);
}

static void a_second_attempt_finds_the_round_held_until_the_lease_ends(void **state) {
  RFX_NEED();
  env *e = *state;
  record_round(e);
  assert_true(collect(e, "w1.1", 5000).ready);
  collected b = collect(e, "w2.1", 5500);
  assert_false(b.ready);
  assert_int_equal(b.held_until, 5000 + 1000);
}

static void after_the_lease_the_second_attempt_takes_over_and_must_recover(void **state) {
  RFX_NEED();
  env *e = *state;
  record_round(e);
  assert_true(collect(e, "w1.1", 5000).ready);
  collected b = collect(e, "w2.1", 6001);
  assert_true(b.ready);
  assert_true(b.taken_over);
  /* The claim is now the second's: the first, still looking, is held. */
  collected a = collect(e, "w1.1", 6002);
  assert_false(a.ready);
  assert_int_equal(a.held_until, 6001 + 1000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(the_first_attempt_claims_a_ready_round_and_may_look_again,
                                      setup, rfx_env_teardown),
      cmocka_unit_test_setup_teardown(a_second_attempt_finds_the_round_held_until_the_lease_ends,
                                      setup, rfx_env_teardown),
      cmocka_unit_test_setup_teardown(after_the_lease_the_second_attempt_takes_over_and_must_recover,
                                      setup, rfx_env_teardown),
  };
  return cmocka_run_group_tests(tests, rfx_group_start, rfx_group_stop);
}

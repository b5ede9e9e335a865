/* test_conv_store_claims.c -- an event's outcome and progress records as
 * worker/event/conv_store.c writes and reads them against a real
 * redis-server: the lookup claims the progress record only when no outcome
 * exists (an answered event, or one whose id an answered message holds,
 * claims nothing), reads it without claiming on a retry, and every
 * checkpoint written later keeps the claim's digest prefix (and a record
 * of an older worker stays without one).  The values themselves are
 * event_claim.h's (test_event_claim.c).
 *
 * Needs redis-server (redis_fixture.h); skipped without one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conv_store.h"
#include "redis_fixture.h"

#define DA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

typedef struct env {
  rfx_env fx;
  cstore st;
  char okey[RK_KEY_MAX], pkey[RK_KEY_MAX];
} env;

static int setup(void **state) {
  int rc = rfx_env_setup(state, sizeof(env));
  env *e = *state;
  if (!e) return rc;
  cstore_init(&e->st, e->fx.rc, "awt");
  assert_int_equal(rk_conv_key(&e->st.keys, "conv-1", RK_OUTCOME, "ev-1", e->okey, sizeof e->okey), AW_OK);
  assert_int_equal(rk_conv_key(&e->st.keys, "conv-1", RK_PROGRESS, "ev-1", e->pkey, sizeof e->pkey), AW_OK);
  return 0;
}

/* ---- synchronous helpers ---------------------------------------------------- */

typedef struct claimed {
  int done, err;
  char outcome[CSTORE_VALUE_MAX], progress[CSTORE_VALUE_MAX];
} claimed;

static void on_claimed(void *o, int err, const char *outcome, const char *progress) {
  claimed *k = o;
  k->done = 1;
  k->err = err;
  snprintf(k->outcome, sizeof k->outcome, "%s", outcome);
  snprintf(k->progress, sizeof k->progress, "%s", progress);
}

static claimed claim(env *e, int take) {
  claimed k = {0};
  assert_int_equal(cstore_claim_event(&e->st, "conv-1", "ev-1", take, "d:" DA ":7 -", on_claimed, &k), AW_OK);
  assert_true(rfx_run_until(&e->fx.loop, &k.done));
  assert_int_equal(k.err, AW_OK);
  return k;
}

typedef struct done {
  int done, err;
} done;

static void on_done(void *o, int err, const char *value) {
  done *d = o;
  (void)value;
  d->done = 1;
  d->err = err;
}

static void put_progress(env *e, const char *checkpoint) {
  done d = {0};
  assert_int_equal(cstore_put_progress(&e->st, "conv-1", "ev-1", checkpoint, on_done, &d), AW_OK);
  assert_true(rfx_run_until(&e->fx.loop, &d.done));
  assert_int_equal(d.err, AW_OK);
}

static void put_outcome(env *e) {
  done d = {0};
  assert_int_equal(cstore_put_outcome(&e->st, "conv-1", "ev-1", "completed", "resp_1", DA, 42, on_done, &d), AW_OK);
  assert_true(rfx_run_until(&e->fx.loop, &d.done));
  assert_int_equal(d.err, AW_OK);
}

/* GET behind the code's back ("" when absent). */
static void get(const char *key, char *out, size_t n) {
  redisContext *s = rfx_sync();
  assert_non_null(s);
  redisReply *r = redisCommand(s, "GET %s", key);
  assert_non_null(r);
  snprintf(out, n, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
  freeReplyObject(r);
  redisFree(s);
}

static void set(const char *key, const char *value) {
  redisContext *s = rfx_sync();
  assert_non_null(s);
  redisReply *r = redisCommand(s, "SET %s %s", key, value);
  assert_non_null(r);
  freeReplyObject(r);
  redisFree(s);
}

/* ---- tests ------------------------------------------------------------------ */

static void a_new_event_claims_its_progress_record_once(void **state) {
  RFX_NEED();
  env *e = *state;
  claimed a = claim(e, 1);
  assert_string_equal(a.outcome, "");
  assert_string_equal(a.progress, ""); /* created by this call */
  char v[CSTORE_VALUE_MAX];
  get(e->pkey, v, sizeof v);
  assert_string_equal(v, "d:" DA ":7 -");
  claimed b = claim(e, 1);
  assert_string_equal(b.progress, "d:" DA ":7 -"); /* held: the earlier claim */
}

static void an_answered_event_claims_nothing(void **state) {
  RFX_NEED();
  env *e = *state;
  put_outcome(e);
  char v[CSTORE_VALUE_MAX];
  get(e->okey, v, sizeof v);
  assert_string_equal(v, "completed resp_1 d:" DA " 42");
  claimed a = claim(e, 1);
  assert_string_equal(a.outcome, "completed resp_1 d:" DA " 42");
  assert_string_equal(a.progress, "");
  get(e->pkey, v, sizeof v);
  assert_string_equal(v, ""); /* no progress record was made */
}

static void a_retry_reads_the_progress_record_without_claiming(void **state) {
  RFX_NEED();
  env *e = *state;
  claimed a = claim(e, 0);
  assert_string_equal(a.progress, "");
  char v[CSTORE_VALUE_MAX];
  get(e->pkey, v, sizeof v);
  assert_string_equal(v, "");
  set(e->pkey, "a1 thread_1 run_1");
  claimed b = claim(e, 0);
  assert_string_equal(b.progress, "a1 thread_1 run_1");
}

static void a_checkpoint_keeps_the_claims_digest_prefix(void **state) {
  RFX_NEED();
  env *e = *state;
  (void)claim(e, 1);
  put_progress(e, "r1 conv_1 resp_1 0");
  char v[CSTORE_VALUE_MAX];
  get(e->pkey, v, sizeof v);
  assert_string_equal(v, "d:" DA ":7 r1 conv_1 resp_1 0");
  put_progress(e, "r1 conv_1 resp_2 5");
  get(e->pkey, v, sizeof v);
  assert_string_equal(v, "d:" DA ":7 r1 conv_1 resp_2 5");
  claimed b = claim(e, 1);
  assert_string_equal(b.progress, "d:" DA ":7 r1 conv_1 resp_2 5");
}

static void a_record_of_an_older_worker_stays_without_a_prefix(void **state) {
  RFX_NEED();
  env *e = *state;
  set(e->pkey, "-");
  put_progress(e, "a1 thread_1 run_1");
  char v[CSTORE_VALUE_MAX];
  get(e->pkey, v, sizeof v);
  assert_string_equal(v, "a1 thread_1 run_1");
  /* Expired meanwhile: the checkpoint alone. */
  rfx_flush();
  put_progress(e, "a1 thread_1 run_2");
  get(e->pkey, v, sizeof v);
  assert_string_equal(v, "a1 thread_1 run_2");
}

static void values_out_of_bounds_are_refused_before_redis(void **state) {
  RFX_NEED();
  env *e = *state;
  claimed k = {0};
  assert_int_equal(cstore_claim_event(&e->st, "conv-1", "ev-1", 1, "", on_claimed, &k), AW_EINVAL);
  assert_int_equal(cstore_claim_event(&e->st, "conv-1", "ev-1", 1, NULL, on_claimed, &k), AW_EINVAL);
  done d = {0};
  assert_int_equal(cstore_put_outcome(&e->st, "conv-1", "ev-1", "completed", "resp_1", "", 1, on_done, &d),
                   AW_EINVAL);
  char big[BE_CHECKPOINT_MAX + 1];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(cstore_put_progress(&e->st, "conv-1", "ev-1", big, on_done, &d), AW_EINVAL);
  assert_int_equal(k.done + d.done, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(a_new_event_claims_its_progress_record_once, setup, rfx_env_teardown),
      cmocka_unit_test_setup_teardown(an_answered_event_claims_nothing, setup, rfx_env_teardown),
      cmocka_unit_test_setup_teardown(a_retry_reads_the_progress_record_without_claiming, setup, rfx_env_teardown),
      cmocka_unit_test_setup_teardown(a_checkpoint_keeps_the_claims_digest_prefix, setup, rfx_env_teardown),
      cmocka_unit_test_setup_teardown(a_record_of_an_older_worker_stays_without_a_prefix, setup, rfx_env_teardown),
      cmocka_unit_test_setup_teardown(values_out_of_bounds_are_refused_before_redis, setup, rfx_env_teardown),
  };
  return cmocka_run_group_tests(tests, rfx_group_start, rfx_group_stop);
}

/* test_conv_store_erase.c -- the Redis side of the conversation requests
 * `reset` and `delete` (worker/event/conv_store.c) against a real
 * redis-server: forgetting a conversation returns its old handle and
 * removes the handle and the history (list, index, pending turns) but
 * keeps the outcome and progress records and the tool state; erasing it
 * removes every key under its hash tag, counts them, walks past one SCAN
 * batch, and touches no key of another conversation -- one whose id is a
 * glob pattern ("c*", "c?", "[c]", "c\"), a prefix of the other ("c" vs
 * "c1"), or the same id under another tenant.
 *
 * Needs redis-server (redis_fixture.h); skipped without one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conv_store.h"
#include "redis_fixture.h"

typedef struct env {
  rfx_env fx;
  cstore st;  /* no tenants */
  cstore tst; /* with tenants: references "<enc tenant>:<conversation>" */
} env;

static int setup(void **state) {
  int rc = rfx_env_setup(state, sizeof(env));
  env *e = *state;
  if (!e) return rc;
  cstore_init(&e->st, e->fx.rc, "awt");
  cstore_init(&e->tst, e->fx.rc, "awt");
  e->tst.keys.tenanted = 1;
  return 0;
}

/* ---- keys behind the code's back --------------------------------------------------- */

#define NKINDS 8

/* Every kind of key a conversation has: handle, outcome, progress, tool
 * state, history list, its index, two pending turns. */
static void keys_of(const cstore *st, const char *ref, char out[NKINDS][RK_KEY_MAX]) {
  assert_int_equal(rk_conv_key(&st->keys, ref, RK_HANDLE, "conv", out[0], RK_KEY_MAX), AW_OK);
  assert_int_equal(rk_conv_key(&st->keys, ref, RK_OUTCOME, "e1", out[1], RK_KEY_MAX), AW_OK);
  assert_int_equal(rk_conv_key(&st->keys, ref, RK_PROGRESS, "e1", out[2], RK_KEY_MAX), AW_OK);
  assert_int_equal(rk_conv_key(&st->keys, ref, RK_TURN, "tok1", out[3], RK_KEY_MAX), AW_OK);
  assert_int_equal(rk_conv_key(&st->keys, ref, RK_HIST, NULL, out[4], RK_KEY_MAX), AW_OK);
  assert_int_equal(rk_conv_key(&st->keys, ref, RK_HIST_IDS, NULL, out[5], RK_KEY_MAX), AW_OK);
  assert_int_equal(rk_conv_key(&st->keys, ref, RK_HIST_PENDING, "e1", out[6], RK_KEY_MAX), AW_OK);
  assert_int_equal(rk_conv_key(&st->keys, ref, RK_HIST_PENDING, "e*2", out[7], RK_KEY_MAX), AW_OK);
}

static void cmd_ok(env *e, redisReply *r) {
  (void)e;
  assert_non_null(r);
  assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
  freeReplyObject(r);
}

/* Seed every kind of key of ref, with the handle value handle. */
static void seed(env *e, const cstore *st, const char *ref, const char *handle) {
  char k[NKINDS][RK_KEY_MAX];
  keys_of(st, ref, k);
  cmd_ok(e, redisCommand(e->fx.sync, "SET %s %s", k[0], handle));
  cmd_ok(e, redisCommand(e->fx.sync, "SET %s %s", k[1], "completed - d:00 1"));
  cmd_ok(e, redisCommand(e->fx.sync, "SET %s %s", k[2], "-"));
  cmd_ok(e, redisCommand(e->fx.sync, "SET %s %s", k[3], "tool state"));
  cmd_ok(e, redisCommand(e->fx.sync, "RPUSH %s %s %s", k[4], "{\"e\":\"e0\",\"m\":[]}", "{\"e\":\"e1\",\"m\":[]}"));
  cmd_ok(e, redisCommand(e->fx.sync, "HSET %s e:e0 17 e:e1 17 bytes 34", k[5]));
  cmd_ok(e, redisCommand(e->fx.sync, "SET %s %s", k[6], "{\"e\":\"e1\",\"m\":[]}"));
  cmd_ok(e, redisCommand(e->fx.sync, "SET %s %s", k[7], "{\"e\":\"e*2\",\"m\":[]}"));
}

static int exists(env *e, const char *key) {
  redisReply *r = redisCommand(e->fx.sync, "EXISTS %s", key);
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_INTEGER);
  int n = (int)r->integer;
  freeReplyObject(r);
  return n;
}

static long long dbsize(env *e) {
  redisReply *r = redisCommand(e->fx.sync, "DBSIZE");
  assert_non_null(r);
  long long n = r->integer;
  freeReplyObject(r);
  return n;
}

/* Which of ref's kinds of key exist, as a string of 0/1 (kinds in keys_of order). */
static void present(env *e, const cstore *st, const char *ref, char out[NKINDS + 1]) {
  char k[NKINDS][RK_KEY_MAX];
  keys_of(st, ref, k);
  for (int i = 0; i < NKINDS; i++) out[i] = exists(e, k[i]) ? '1' : '0';
  out[NKINDS] = '\0';
}

/* How many times the server ran cmd since the last CONFIG RESETSTAT. */
static long calls(env *e, const char *cmd) {
  redisReply *r = redisCommand(e->fx.sync, "INFO commandstats");
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_STRING);
  char needle[64];
  snprintf(needle, sizeof needle, "cmdstat_%s:calls=", cmd);
  const char *at = strstr(r->str, needle);
  long n = at ? atol(at + strlen(needle)) : 0;
  freeReplyObject(r);
  return n;
}

/* ---- calls --------------------------------------------------------------------------- */

typedef struct res {
  int done, n, err;
  char value[CSTORE_VALUE_MAX];
} res;

static void on_res(void *o, int err, const char *value) {
  res *r = o;
  r->done = 1;
  r->n++;
  r->err = err;
  snprintf(r->value, sizeof r->value, "%s", value ? value : "");
}

static res forget(env *e, cstore *st, const char *hkey, const char *ref) {
  res r = {0};
  assert_int_equal(cstore_forget_conversation(st, hkey, ref, on_res, &r), AW_OK);
  assert_int_equal(r.done, 0);
  assert_true(rfx_run_until(&e->fx.loop, &r.done));
  assert_int_equal(r.err, AW_OK);
  uv_run(&e->fx.loop, UV_RUN_NOWAIT);
  assert_int_equal(r.n, 1);
  return r;
}

static long long erase(env *e, cstore *st, const char *ref) {
  res r = {0};
  assert_int_equal(cstore_erase_conversation(st, ref, on_res, &r), AW_OK);
  assert_int_equal(r.done, 0);
  assert_true(rfx_run_until(&e->fx.loop, &r.done));
  assert_int_equal(r.err, AW_OK);
  uv_run(&e->fx.loop, UV_RUN_NOWAIT);
  assert_int_equal(r.n, 1);
  return atoll(r.value);
}

/* ---- reset: forget ---------------------------------------------------------------------- */

static void forget_returns_the_old_handle_and_removes_handle_and_history_but_keeps_outcome_records(void **state) {
  RFX_NEED();
  env *e = *state;
  seed(e, &e->st, "conv-1", "conv_abc");
  seed(e, &e->st, "conv-10", "conv_other");
  res r = forget(e, &e->st, "conv", "conv-1");
  assert_string_equal(r.value, "conv_abc");
  char p[NKINDS + 1];
  present(e, &e->st, "conv-1", p);
  /* handle ev evp turn hist ids p:e1 p:e*2: the pending turns are left to
   * expire (each is read by its own event only; finding them is a walk) */
  assert_string_equal(p, "01110011");
  present(e, &e->st, "conv-10", p);
  assert_string_equal(p, "11111111");
}

static void forget_without_a_handle_key_or_handle_returns_empty_and_still_drops_the_history(void **state) {
  RFX_NEED();
  env *e = *state;
  seed(e, &e->st, "c", "conv_abc");
  /* The chat backend keeps no handle (be_handle_key NULL): the handle key of
   * another backend stays; the history goes. */
  res r = forget(e, &e->st, NULL, "c");
  assert_string_equal(r.value, "");
  char p[NKINDS + 1];
  present(e, &e->st, "c", p);
  assert_string_equal(p, "11110011");
  /* A handle key with nothing recorded: "". */
  r = forget(e, &e->st, "thread", "c");
  assert_string_equal(r.value, "");
  /* Bad references are refused before Redis, without a callback. */
  res x = {0};
  assert_int_equal(cstore_forget_conversation(&e->st, "conv", "", on_res, &x), AW_EINVAL);
  assert_int_equal(cstore_forget_conversation(&e->st, "hist", "c", on_res, &x), AW_EINVAL);
  assert_int_equal(x.n, 0);
}

/* ---- delete: erase ----------------------------------------------------------------------- */

static void erase_removes_every_key_of_the_conversation_and_none_of_a_glob_or_prefix_neighbour(void **state) {
  RFX_NEED();
  env *e = *state;
  static const char *const refs[] = {"c", "c1", "c*", "c?", "[c]", "c\\", "*"};
  const size_t n = sizeof refs / sizeof refs[0];
  for (size_t i = 0; i < n; i++) seed(e, &e->st, refs[i], "conv_x");
  assert_int_equal(dbsize(e), (long long)(n * NKINDS));
  char p[NKINDS + 1];
  /* Each in turn: "c*" first, so that a pattern not escaped would take
   * "c" and "c1" with it; "c" before "c1", its prefix. */
  static const size_t order[] = {2, 3, 4, 5, 6, 0, 1};
  for (size_t o = 0; o < n; o++) {
    size_t i = order[o];
    assert_int_equal(erase(e, &e->st, refs[i]), NKINDS);
    present(e, &e->st, refs[i], p);
    assert_string_equal(p, "00000000");
    for (size_t l = o + 1; l < n; l++) {
      present(e, &e->st, refs[order[l]], p);
      if (strcmp(p, "11111111") != 0) fail_msg("erasing %s took keys of %s: %s", refs[i], refs[order[l]], p);
    }
    assert_int_equal(dbsize(e), (long long)((n - o - 1) * NKINDS));
  }
  /* Nothing left to erase: 0, not an error (a retried delete). */
  assert_int_equal(erase(e, &e->st, "c1"), 0);
}

static void erase_with_tenants_takes_only_that_tenants_conversation(void **state) {
  RFX_NEED();
  env *e = *state;
  char t1c[RK_REF_MAX], t2c[RK_REF_MAX], tstar[RK_REF_MAX], t1c1[RK_REF_MAX];
  assert_int_equal(rk_ref_make("t1", "c", t1c, sizeof t1c), AW_OK);
  assert_int_equal(rk_ref_make("t2", "c", t2c, sizeof t2c), AW_OK);
  assert_int_equal(rk_ref_make("t*", "c", tstar, sizeof tstar), AW_OK);
  assert_int_equal(rk_ref_make("t1", "c1", t1c1, sizeof t1c1), AW_OK);
  seed(e, &e->tst, t1c, "conv_1");
  seed(e, &e->tst, t2c, "conv_2");
  seed(e, &e->tst, tstar, "conv_3");
  seed(e, &e->tst, t1c1, "conv_4");
  seed(e, &e->st, "c", "conv_5"); /* the same id without a tenant */
  assert_int_equal(erase(e, &e->tst, tstar), NKINDS);
  assert_int_equal(erase(e, &e->tst, t1c), NKINDS);
  char p[NKINDS + 1];
  present(e, &e->tst, t1c, p);
  assert_string_equal(p, "00000000");
  present(e, &e->tst, t2c, p);
  assert_string_equal(p, "11111111");
  present(e, &e->tst, t1c1, p);
  assert_string_equal(p, "11111111");
  present(e, &e->st, "c", p);
  assert_string_equal(p, "11111111");
  assert_int_equal(dbsize(e), 3 * NKINDS);
  res r = forget(e, &e->tst, "conv", t2c);
  assert_string_equal(r.value, "conv_2");
  present(e, &e->tst, t2c, p);
  assert_string_equal(p, "01110011");
  present(e, &e->st, "c", p);
  assert_string_equal(p, "11111111");
}

static void erase_walks_past_one_scan_batch(void **state) {
  RFX_NEED();
  env *e = *state;
  /* 2,500 keys of one conversation among 1,500 of another: each SCAN step
   * walks about SCAN_COUNT (1,000) keys, so several steps and UNLINK
   * batches, pipelined. */
  enum { MINE = 2500, OTHERS = 1500 };
  char k[RK_KEY_MAX], id[32];
  for (int i = 0; i < MINE + OTHERS; i++) {
    snprintf(id, sizeof id, "e%d", i);
    assert_int_equal(rk_conv_key(&e->st.keys, i < MINE ? "big" : "big1", RK_OUTCOME, id, k, sizeof k), AW_OK);
    assert_int_equal(redisAppendCommand(e->fx.sync, "SET %s x", k), REDIS_OK);
  }
  for (int i = 0; i < MINE + OTHERS; i++) {
    redisReply *r = NULL;
    assert_int_equal(redisGetReply(e->fx.sync, (void **)&r), REDIS_OK);
    cmd_ok(e, r);
  }
  cmd_ok(e, redisCommand(e->fx.sync, "CONFIG RESETSTAT"));
  assert_int_equal(erase(e, &e->st, "big"), MINE);
  assert_int_equal(dbsize(e), OTHERS);
  assert_true(calls(e, "scan") >= 3);
  assert_true(calls(e, "unlink") >= 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(
          forget_returns_the_old_handle_and_removes_handle_and_history_but_keeps_outcome_records, setup,
          rfx_env_teardown),
      cmocka_unit_test_setup_teardown(forget_without_a_handle_key_or_handle_returns_empty_and_still_drops_the_history,
                                      setup, rfx_env_teardown),
      cmocka_unit_test_setup_teardown(
          erase_removes_every_key_of_the_conversation_and_none_of_a_glob_or_prefix_neighbour, setup,
          rfx_env_teardown),
      cmocka_unit_test_setup_teardown(erase_with_tenants_takes_only_that_tenants_conversation, setup, rfx_env_teardown),
      cmocka_unit_test_setup_teardown(erase_walks_past_one_scan_batch, setup, rfx_env_teardown),
  };
  return cmocka_run_group_tests(tests, rfx_group_start, rfx_group_stop);
}

/* Property test of what worker/tools/tool_state.c takes from Redis into
 * numbers and lifetimes (round numbers, missing counts, deadlines, verdicts,
 * call lists): whatever shape a reply has (wrong types, nil elements, odd
 * lengths, numbers out of range, strings that are not numbers), each
 * callback runs exactly once, with err set or with well-formed data (every
 * string non-NULL, counts matching the reply), and nothing reads out of
 * bounds (ASan in CI).  Replies are random trees from a fixed seed, so a
 * failure reproduces.
 *
 * The module is compiled into this test (its reply handlers are static);
 * rconn_commandargv is a fake that keeps the handler, which the test then
 * calls with its own replies.  Needs: nothing (no Redis). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../worker/tools/tool_state.c"

static rconn_reply_cb last_cb;
static void *last_opaque;

int rconn_commandargv(rconn *c, rconn_reply_cb cb, void *opaque, int argc, const char **argv,
                      const size_t *argvlen) {
  (void)c, (void)argc, (void)argv, (void)argvlen;
  last_cb = cb;
  last_opaque = opaque;
  return AW_OK;
}

/* ---- random replies ---------------------------------------------------------- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 11);
}

static const char *const WORDS[] = {"ok", "ready", "wait", "gone", "", "1", "2", "-1", "0",
                                    "9223372036854775807", "-9223372036854775808", "99999999999999999999999",
                                    "call_1", "get_weather", "output", "timeout", "12abc", " 7", "run_not_waiting"};

static redisReply *leaf(void) {
  redisReply *r = calloc(1, sizeof *r);
  assert_non_null(r);
  switch (rnd() % 5) {
  case 0: r->type = REDIS_REPLY_NIL; break;
  case 1:
    r->type = REDIS_REPLY_INTEGER;
    r->integer = (rnd() % 3 == 0) ? (long long)((uint64_t)rnd() << 33 | rnd()) * (rnd() % 2 ? 1 : -1)
                                  : (long long)(rnd() % 40) - 5;
    break;
  case 2: r->type = REDIS_REPLY_STATUS; /* fall through */
  default: {
    if (!r->type) r->type = REDIS_REPLY_STRING;
    const char *w = WORDS[rnd() % (sizeof WORDS / sizeof WORDS[0])];
    r->len = strlen(w);
    r->str = strdup(w);
    assert_non_null(r->str);
  }
  }
  return r;
}

/* A reply whose first element is often a verdict the handler knows, so the
 * interesting branches run, followed by random elements. */
static redisReply *random_reply(void) {
  if (rnd() % 8 == 0) return leaf();
  redisReply *r = calloc(1, sizeof *r);
  assert_non_null(r);
  r->type = REDIS_REPLY_ARRAY;
  r->elements = rnd() % 24;
  if (rnd() % 3 == 0) r->elements = 4 + 5 * (rnd() % 4); /* collect's "ready" shape */
  if (rnd() % 4 == 0) r->elements = 3 * (rnd() % 5);     /* list's shape */
  r->element = r->elements ? calloc(r->elements, sizeof *r->element) : NULL;
  for (size_t i = 0; i < r->elements; i++) {
    if (rnd() % 16 == 0) {
      r->element[i] = calloc(1, sizeof(redisReply));
      r->element[i]->type = REDIS_REPLY_ARRAY; /* nested, empty */
    } else {
      r->element[i] = leaf();
    }
  }
  if (r->elements && rnd() % 2) {
    static const char *const V[] = {"ok", "ready", "wait", "gone", "held"};
    redisReply *e = r->element[0];
    free(e->str);
    e->type = REDIS_REPLY_STRING;
    e->str = strdup(V[rnd() % 5]);
    e->len = strlen(e->str);
  }
  return r;
}

static void reply_free(redisReply *r) {
  if (!r) return;
  for (size_t i = 0; i < r->elements; i++) reply_free(r->element[i]);
  free(r->element);
  free(r->str);
  free(r);
}

/* ---- invariants per handler ---------------------------------------------------- */

static int called;

static void on_begin_cb(void *o, int err, int fresh, long missing, int published, long round) {
  (void)o, (void)missing, (void)round;
  called++;
  if (err == AW_OK) assert_true((fresh == 0 || fresh == 1) && (published == 0 || published == 1));
  else assert_true(err == AW_EREDIS || err == AW_ETOOBIG);
}

static void on_apply_cb(void *o, int err, const char *verdict, long missing, const char *owner) {
  (void)o, (void)missing;
  called++;
  if (err) return;
  assert_non_null(verdict);
  (void)strlen(verdict);
  if (!strcmp(verdict, "ok")) assert_non_null(owner), (void)strlen(owner);
}

static void on_collect_cb(void *o, int err, const tstate_collected *c) {
  (void)o;
  called++;
  if (err) return;
  assert_non_null(c);
  assert_true(c->gone + c->ready <= 1);
  if (c->cancel) (void)strlen(c->cancel);
  for (size_t i = 0; i < c->ncalls; i++) {
    const tstate_output *x = &c->calls[i];
    assert_non_null(x->id), assert_non_null(x->name), assert_non_null(x->kind), assert_non_null(x->output);
    (void)strlen(x->id), (void)strlen(x->name), (void)strlen(x->kind);
    if (x->output_len) (void)x->output[x->output_len - 1];
  }
}

static void on_list_cb(void *o, int err, const tstate_output *calls, size_t n) {
  (void)o;
  called++;
  if (err) return;
  for (size_t i = 0; i < n; i++) {
    assert_non_null(calls[i].id), assert_non_null(calls[i].name), assert_non_null(calls[i].kind);
    (void)strlen(calls[i].id), (void)strlen(calls[i].name), (void)strlen(calls[i].kind);
  }
}

static void on_wakes_cb(void *o, int err, const char *const *items, size_t n) {
  (void)o;
  called++;
  if (err) return;
  for (size_t i = 0; i < n; i++) assert_non_null(items[i]), (void)strlen(items[i]);
}

static void on_corr_cb(void *o, int err, const char *value) {
  (void)o;
  called++;
  if (!err && value) (void)strlen(value);
}

/* Issue one operation (the fake keeps its handler), answer it with r. */
static void answer(int which, redisReply *r, int err) {
  static tstate ts;
  tstate_init(&ts, NULL, "p");
  called = 0;
  last_cb = NULL;
  int rc = AW_OK;
  switch (which) {
  case 0: rc = tstate_apply_reply(&ts, "conv", "turn", "call_1", "output", "x", 1, 5, on_apply_cb, NULL); break;
  case 1: rc = tstate_collect(&ts, "conv", "turn", "me.1", 5, on_collect_cb, NULL); break;
  case 2: rc = tstate_list(&ts, "conv", "turn", on_list_cb, NULL); break;
  case 3: rc = tstate_take_wakes(&ts, "me", on_wakes_cb, NULL); break;
  case 4: rc = tstate_corr_lookup(&ts, "d", on_corr_cb, NULL); break;
  default: {
    tstate_call c = {"call_1", "get_weather", 10, 0, "{}", NULL, NULL, NULL};
    rc = tstate_round_begin(&ts, "conv", "turn", "ev", "me", &c, 1, on_begin_cb, NULL);
  }
  }
  assert_int_equal(rc, AW_OK);
  assert_non_null(last_cb);
  last_cb(last_opaque, err, err ? NULL : r);
  assert_int_equal(called, 1);
}

static void any_reply_shape_gives_one_callback_with_well_formed_data(void **state) {
  (void)state;
  for (int i = 0; i < 60000; i++) {
    redisReply *r = random_reply();
    answer(i % 6, r, rnd() % 50 == 0 ? AW_EREDIS : AW_OK);
    reply_free(r);
  }
}

static void reply_int_reads_only_integers_and_numeric_strings(void **state) {
  (void)state;
  redisReply r = {0};
  assert_int_equal(reply_int(NULL), 0);
  r.type = REDIS_REPLY_NIL;
  assert_int_equal(reply_int(&r), 0);
  r.type = REDIS_REPLY_INTEGER;
  r.integer = -42;
  assert_int_equal(reply_int(&r), -42);
  r.type = REDIS_REPLY_STRING;
  r.str = (char *)"99999999999999999999999"; /* saturates, never wraps */
  assert_true(reply_int(&r) == LLONG_MAX);
  r.str = (char *)"junk";
  assert_int_equal(reply_int(&r), 0);
  r.type = REDIS_REPLY_ARRAY;
  assert_int_equal(reply_int(&r), 0);
}

static int cap_err;
static long cap_round;
static void on_cap_cb(void *o, int err, int fresh, long missing, int published, long round) {
  (void)o, (void)fresh, (void)missing, (void)published;
  cap_err = err;
  cap_round = round;
}

static void a_round_past_the_cap_reports_toobig(void **state) {
  (void)state;
  /* {2, 0, 0, 16}: the script refused a 17th round. */
  redisReply *r = calloc(1, sizeof *r);
  assert_non_null(r);
  r->type = REDIS_REPLY_ARRAY;
  r->elements = 4;
  r->element = calloc(4, sizeof *r->element);
  long long v[] = {2, 0, 0, 16};
  for (int i = 0; i < 4; i++) {
    r->element[i] = calloc(1, sizeof(redisReply));
    r->element[i]->type = REDIS_REPLY_INTEGER;
    r->element[i]->integer = v[i];
  }
  tstate ts;
  tstate_init(&ts, NULL, "p");
  assert_int_equal(ts.max_rounds, TSTATE_DEFAULT_MAX_ROUNDS);
  tstate_call c = {"call_1", "get_weather", 10, 0, "{}", NULL, NULL, NULL};
  assert_int_equal(tstate_round_begin(&ts, "conv", "turn", "ev", "me", &c, 1, on_cap_cb, NULL), AW_OK);
  last_cb(last_opaque, AW_OK, r);
  assert_int_equal(cap_err, AW_ETOOBIG);
  assert_int_equal(cap_round, 16);
  reply_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(any_reply_shape_gives_one_callback_with_well_formed_data),
      cmocka_unit_test(reply_int_reads_only_integers_and_numeric_strings),
      cmocka_unit_test(a_round_past_the_cap_reports_toobig),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

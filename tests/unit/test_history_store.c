/* test_history_store.c -- worker/event/history_store.c (the be_history port
 * over Redis) against a real redis-server: load hands out the newest turns
 * oldest first with the committed flag and the pending turn, in one
 * round trip; commit is idempotent per event id and drops the pending turn;
 * the caps drop whole oldest turns and forget their event ids; the TTLs are
 * set and renewed; every key carries the conversation's hash tag; a lost
 * script cache is survived (NOSCRIPT -> EVAL); the counters reach /metrics.
 *
 * Needs: redis-server on PATH (or $AW_REDIS_SERVER).  The test starts its
 * own on a free loopback port, nothing persisted, and stops it at the end;
 * without one every test is skipped.  The store runs on a libuv loop over
 * rconn like in the worker; a synchronous hiredis connection looks at the
 * keys behind its back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include "history_store.h"
#include "redis_fixture.h"
#include "run_metrics.h"

/* ---- a store on a loop ----------------------------------------------------- */

typedef struct env {
  rfx_env fx;
  hstore h;
} env;

static env *g_env;

/* Run the loop until *flag is set (or 5 s pass: a failure). */
static void run_until(env *e, const int *flag) {
  if (!rfx_run_until(&e->fx.loop, flag)) fail_msg("no callback within 5 s");
}

static int setup(void **state) {
  int rc = rfx_env_setup(state, sizeof(env));
  env *e = *state;
  if (!e) return rc;
  hstore_init(&e->h, e->fx.rc, "awt");
  g_env = e;
  return 0;
}

static int teardown(void **state) {
  g_env = NULL;
  return rfx_env_teardown(state);
}

#define NEED_REDIS() RFX_NEED()

/* ---- calls, run to their callback ------------------------------------------- */

#define MAXT 64

typedef struct loaded {
  int done, err, committed, has_pending;
  size_t nturns;
  char *turns[MAXT];
  char *pending;
} loaded;

static void on_load(void *opaque, int err, const be_history_view *v) {
  loaded *l = opaque;
  assert_non_null(v);
  l->done = 1;
  l->err = err;
  l->committed = v->committed;
  assert_true(v->nturns <= MAXT);
  l->nturns = v->nturns;
  for (size_t i = 0; i < v->nturns; i++) {
    assert_int_equal(strlen(v->turns[i]), v->lens[i]); /* NUL-terminated, no NUL inside */
    l->turns[i] = strndup(v->turns[i], v->lens[i]);
  }
  l->has_pending = v->pending != NULL;
  if (v->pending) l->pending = strndup(v->pending, v->pending_len);
}

static void loaded_free(loaded *l) {
  for (size_t i = 0; i < l->nturns; i++) free(l->turns[i]);
  free(l->pending);
  memset(l, 0, sizeof *l);
}

static loaded load(env *e, const char *conv, const char *ev, size_t max_turns) {
  loaded l;
  memset(&l, 0, sizeof l);
  assert_int_equal(e->h.port.load(e->h.port.self, conv, ev, max_turns, on_load, &l), AW_OK);
  assert_int_equal(l.done, 0); /* never inside the call */
  run_until(e, &l.done);
  return l;
}

typedef struct result {
  int done, err, applied;
} result;

static void on_result(void *opaque, int err, int applied) {
  result *r = opaque;
  r->done = 1;
  r->err = err;
  r->applied = applied;
}

static char g_turn[4096];

/* A turn as the backend writes it: "e" first (the script's fast path). */
static const char *turn_of(const char *ev, const char *text) {
  snprintf(g_turn, sizeof g_turn, "{\"e\":\"%s\",\"m\":[{\"role\":\"user\",\"content\":\"%s\"}]}", ev, text);
  return g_turn;
}

static result commit_raw(env *e, const char *conv, const char *ev, const char *turn) {
  result r = {0, 0, -1};
  assert_int_equal(e->h.port.commit(e->h.port.self, conv, ev, turn, strlen(turn), on_result, &r), AW_OK);
  assert_int_equal(r.done, 0);
  run_until(e, &r.done);
  return r;
}

static result commit(env *e, const char *conv, const char *ev, const char *text) {
  return commit_raw(e, conv, ev, turn_of(ev, text));
}

static result save_pending(env *e, const char *conv, const char *ev, const char *turn) {
  result r = {0, 0, -1};
  assert_int_equal(e->h.port.save_pending(e->h.port.self, conv, ev, turn, strlen(turn), on_result, &r), AW_OK);
  run_until(e, &r.done);
  return r;
}

/* ---- synchronous looks behind the store's back ------------------------------ */

static long long sync_int(env *e, const char *fmt, const char *a, const char *b) {
  redisReply *r = redisCommand(e->fx.sync, fmt, a, b);
  assert_non_null(r);
  if (r->type != REDIS_REPLY_INTEGER) fail_msg("%s %s: reply type %d (%s)", fmt, a, r->type, r->str ? r->str : "");
  long long v = r->integer;
  freeReplyObject(r);
  return v;
}

static char *sync_str(env *e, const char *fmt, const char *a, const char *b) {
  redisReply *r = redisCommand(e->fx.sync, fmt, a, b);
  assert_non_null(r);
  char *s = r->type == REDIS_REPLY_STRING ? strndup(r->str, r->len) : NULL;
  freeReplyObject(r);
  return s;
}

static const char HIST[] = "awt:{c:conv-1}:hist";
static const char IDS[] = "awt:{c:conv-1}:hist:ids";

/* ---- tests ---------------------------------------------------------------- */

static void test_load_returns_the_newest_turns_oldest_first_with_committed_flag_and_pending(void **state) {
  NEED_REDIS();
  env *e = *state;
  /* Nothing yet: no turns, not committed, no pending turn. */
  loaded l = load(e, "conv-1", "ev-1", 10);
  assert_int_equal(l.err, AW_OK);
  assert_int_equal(l.nturns, 0);
  assert_int_equal(l.committed, 0);
  assert_int_equal(l.has_pending, 0);
  loaded_free(&l);

  char ev[16], text[16];
  for (int i = 1; i <= 5; i++) {
    snprintf(ev, sizeof ev, "ev-%d", i);
    snprintf(text, sizeof text, "turn %d", i);
    result r = commit(e, "conv-1", ev, text);
    assert_int_equal(r.err, AW_OK);
    assert_int_equal(r.applied, 1);
  }
  assert_int_equal(save_pending(e, "conv-1", "ev-6", "{\"e\":\"ev-6\",\"pending\":true}").applied, 1);

  /* The newest 3, oldest first; ev-6 not committed, its pending turn read. */
  l = load(e, "conv-1", "ev-6", 3);
  assert_int_equal(l.err, AW_OK);
  assert_int_equal(l.nturns, 3);
  assert_string_equal(l.turns[0], turn_of("ev-3", "turn 3"));
  assert_string_equal(l.turns[1], turn_of("ev-4", "turn 4"));
  assert_string_equal(l.turns[2], turn_of("ev-5", "turn 5"));
  assert_int_equal(l.committed, 0);
  assert_int_equal(l.has_pending, 1);
  assert_string_equal(l.pending, "{\"e\":\"ev-6\",\"pending\":true}");
  loaded_free(&l);

  /* Committed means anywhere in the history, not only among the turns read. */
  l = load(e, "conv-1", "ev-1", 2);
  assert_int_equal(l.nturns, 2);
  assert_int_equal(l.committed, 1);
  assert_int_equal(l.has_pending, 0);
  loaded_free(&l);

  /* More than there are: all 5; 0 turns asked: none (not the whole list). */
  l = load(e, "conv-1", "ev-5", 50);
  assert_int_equal(l.nturns, 5);
  assert_string_equal(l.turns[0], turn_of("ev-1", "turn 1"));
  assert_int_equal(l.committed, 1);
  loaded_free(&l);
  l = load(e, "conv-1", "ev-5", 0);
  assert_int_equal(l.err, AW_OK);
  assert_int_equal(l.nturns, 0);
  assert_int_equal(l.committed, 1);
  loaded_free(&l);

  /* Another conversation sees nothing of this one. */
  l = load(e, "conv-2", "ev-1", 10);
  assert_int_equal(l.nturns, 0);
  assert_int_equal(l.committed, 0);
  loaded_free(&l);
  assert_int_equal(e->h.stats.loads, 6);
  assert_int_equal(e->h.stats.pending_saves, 1);
  assert_int_equal(e->h.stats.errors, 0);
}

static void test_commit_is_idempotent_per_event_id(void **state) {
  NEED_REDIS();
  env *e = *state;
  result r = commit(e, "conv-1", "ev-1", "first");
  assert_int_equal(r.err, AW_OK);
  assert_int_equal(r.applied, 1);
  /* The same event again, even with another text: nothing written. */
  r = commit(e, "conv-1", "ev-1", "second attempt");
  assert_int_equal(r.err, AW_OK);
  assert_int_equal(r.applied, 0);
  assert_int_equal(sync_int(e, "LLEN %s", HIST, NULL), 1);
  char *t = sync_str(e, "LINDEX %s %s", HIST, "0");
  assert_string_equal(t, turn_of("ev-1", "first"));
  free(t);
  size_t len = strlen(turn_of("ev-1", "first"));
  char *b = sync_str(e, "HGET %s %s", IDS, "bytes");
  assert_int_equal(atoll(b), (long long)len); /* counted once */
  free(b);
  char *f = sync_str(e, "HGET %s %s", IDS, "e:ev-1");
  assert_int_equal(atoll(f), (long long)len);
  free(f);
  assert_int_equal(e->h.stats.commits, 1);
  assert_int_equal(e->h.stats.commit_duplicates, 1);
  assert_int_equal(e->h.stats.bytes_committed, len);
}

static void test_commit_drops_the_pending_turn_applied_or_not(void **state) {
  NEED_REDIS();
  env *e = *state;
  const char *pkey = "awt:{c:conv-1}:hist:p:ev-1";
  assert_int_equal(save_pending(e, "conv-1", "ev-1", "{\"e\":\"ev-1\",\"round\":1}").applied, 1);
  /* Saving again replaces it. */
  assert_int_equal(save_pending(e, "conv-1", "ev-1", "{\"e\":\"ev-1\",\"round\":2}").applied, 1);
  char *p = sync_str(e, "GET %s", pkey, NULL);
  assert_string_equal(p, "{\"e\":\"ev-1\",\"round\":2}");
  free(p);
  long long pttl = sync_int(e, "PTTL %s", pkey, NULL);
  assert_true(pttl > 0 && pttl <= 900 * 1000); /* HSTORE_DEFAULT_PENDING_TTL_S */
  assert_int_equal(commit(e, "conv-1", "ev-1", "answer").applied, 1);
  assert_int_equal(sync_int(e, "EXISTS %s", pkey, NULL), 0);
  loaded l = load(e, "conv-1", "ev-1", 10);
  assert_int_equal(l.has_pending, 0);
  assert_int_equal(l.committed, 1);
  loaded_free(&l);
  /* A pending turn written again after the commit (a late round of a
   * stale attempt) is dropped by the duplicate commit too. */
  assert_int_equal(save_pending(e, "conv-1", "ev-1", "{\"e\":\"ev-1\",\"round\":3}").applied, 1);
  assert_int_equal(commit(e, "conv-1", "ev-1", "answer").applied, 0);
  assert_int_equal(sync_int(e, "EXISTS %s", pkey, NULL), 0);
}

static void test_trimming_by_turns_drops_the_oldest_turns_and_their_ids(void **state) {
  NEED_REDIS();
  env *e = *state;
  e->h.max_turns = 3;
  char ev[16];
  for (int i = 1; i <= 5; i++) {
    snprintf(ev, sizeof ev, "ev-%d", i);
    assert_int_equal(commit(e, "conv-1", ev, "x").applied, 1);
  }
  assert_int_equal(sync_int(e, "LLEN %s", HIST, NULL), 3);
  assert_int_equal(e->h.stats.turns_trimmed, 2);
  loaded l = load(e, "conv-1", "ev-1", 10);
  assert_int_equal(l.nturns, 3);
  assert_string_equal(l.turns[0], turn_of("ev-3", "x"));
  assert_string_equal(l.turns[2], turn_of("ev-5", "x"));
  assert_int_equal(l.committed, 0); /* trimmed: no longer reads as committed */
  loaded_free(&l);
  assert_int_equal(sync_int(e, "HEXISTS %s %s", IDS, "e:ev-2"), 0);
  assert_int_equal(sync_int(e, "HEXISTS %s %s", IDS, "e:ev-3"), 1);
  assert_int_equal(sync_int(e, "HLEN %s", IDS, NULL), 3 + 1); /* ids + "bytes" */
  char *b = sync_str(e, "HGET %s %s", IDS, "bytes");
  assert_int_equal(atoll(b), (long long)(3 * strlen(turn_of("ev-3", "x"))));
  free(b);
}

static void test_trimming_by_bytes_drops_whole_oldest_turns_keeping_the_newest(void **state) {
  NEED_REDIS();
  env *e = *state;
  size_t one = strlen(turn_of("ev-1", "0123456789")); /* every turn below is this long */
  e->h.max_bytes = 2 * one + one / 2;                 /* room for two turns and a half */
  assert_int_equal(commit(e, "conv-1", "ev-1", "0123456789").applied, 1);
  assert_int_equal(commit(e, "conv-1", "ev-2", "0123456789").applied, 1);
  assert_int_equal(commit(e, "conv-1", "ev-3", "0123456789").applied, 1);
  assert_int_equal(sync_int(e, "LLEN %s", HIST, NULL), 2);
  assert_int_equal(sync_int(e, "HEXISTS %s %s", IDS, "e:ev-1"), 0);
  char *b = sync_str(e, "HGET %s %s", IDS, "bytes");
  assert_int_equal(atoll(b), (long long)(2 * one));
  free(b);
  /* A turn larger than the cap by itself is kept, alone. */
  char big[2048];
  memset(big, 'b', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  e->h.max_bytes = 1024;
  assert_int_equal(commit(e, "conv-1", "ev-4", big).applied, 1);
  assert_int_equal(sync_int(e, "LLEN %s", HIST, NULL), 1);
  assert_int_equal(sync_int(e, "HLEN %s", IDS, NULL), 2);
  assert_int_equal(e->h.stats.turns_trimmed, 3);
  loaded l = load(e, "conv-1", "ev-4", 10);
  assert_int_equal(l.nturns, 1); /* the newest always, whatever its size */
  assert_int_equal(l.committed, 1);
  loaded_free(&l);
}

static void test_trimmed_ids_are_found_in_turns_of_any_member_order(void **state) {
  NEED_REDIS();
  env *e = *state;
  e->h.max_turns = 1;
  /* "e" not first, and an id with an escaped quote: the decode path. */
  assert_int_equal(commit_raw(e, "conv-1", "ev\"1", "{\"m\":[],\"e\":\"ev\\\"1\"}").applied, 1);
  assert_int_equal(commit_raw(e, "conv-1", "ev-2", "{\"m\":[1,2],\"e\":\"ev-2\"}").applied, 1);
  assert_int_equal(sync_int(e, "HEXISTS %s %s", IDS, "e:ev\"1"), 0);
  /* Not JSON at all: dropped anyway (its field stays until the hash expires). */
  assert_int_equal(commit_raw(e, "conv-1", "ev-3", "not json").applied, 1);
  assert_int_equal(commit_raw(e, "conv-1", "ev-4", "{\"e\":\"ev-4\"}").applied, 1);
  assert_int_equal(sync_int(e, "LLEN %s", HIST, NULL), 1);
  assert_int_equal(sync_int(e, "HEXISTS %s %s", IDS, "e:ev-2"), 0);
  assert_int_equal(sync_int(e, "HEXISTS %s %s", IDS, "e:ev-3"), 1);
  char *b = sync_str(e, "HGET %s %s", IDS, "bytes");
  assert_int_equal(atoll(b), (long long)strlen("{\"e\":\"ev-4\"}"));
  free(b);
}

static long long bytes_field(env *e) {
  char *b = sync_str(e, "HGET %s %s", IDS, "bytes");
  assert_non_null(b);
  long long v = atoll(b);
  free(b);
  return v;
}

static void test_the_byte_total_is_recounted_when_one_of_the_two_keys_was_lost(void **state) {
  NEED_REDIS();
  env *e = *state;
  size_t one = strlen(turn_of("ev-1", "0123456789"));
  assert_int_equal(commit(e, "conv-1", "ev-1", "0123456789").applied, 1);
  assert_int_equal(commit(e, "conv-1", "ev-2", "0123456789").applied, 1);
  /* The ids hash is gone (evicted), the list is not: counted from the list. */
  redisReply *r = redisCommand(e->fx.sync, "DEL %s", IDS);
  freeReplyObject(r);
  assert_int_equal(commit(e, "conv-1", "ev-3", "0123456789").applied, 1);
  assert_int_equal(bytes_field(e), (long long)(3 * one));
  /* The list is gone, the hash is not: the new list's one turn. */
  r = redisCommand(e->fx.sync, "DEL %s", HIST);
  freeReplyObject(r);
  assert_int_equal(commit(e, "conv-1", "ev-4", "0123456789").applied, 1);
  assert_int_equal(bytes_field(e), (long long)one);
}

static void test_ttl_is_set_and_renewed_by_every_commit(void **state) {
  NEED_REDIS();
  env *e = *state;
  e->h.ttl_s = 100;
  assert_int_equal(commit(e, "conv-1", "ev-1", "a").applied, 1);
  long long t1 = sync_int(e, "PTTL %s", HIST, NULL);
  assert_true(t1 > 90 * 1000 && t1 <= 100 * 1000);
  long long i1 = sync_int(e, "PTTL %s", IDS, NULL);
  assert_true(i1 > 90 * 1000 && i1 <= 100 * 1000);
  /* Shorten the lifetimes behind the store's back: the next commit renews both. */
  redisReply *r = redisCommand(e->fx.sync, "PEXPIRE %s 5000", HIST);
  freeReplyObject(r);
  r = redisCommand(e->fx.sync, "PEXPIRE %s 5000", IDS);
  freeReplyObject(r);
  assert_int_equal(commit(e, "conv-1", "ev-2", "b").applied, 1);
  assert_true(sync_int(e, "PTTL %s", HIST, NULL) > 90 * 1000);
  assert_true(sync_int(e, "PTTL %s", IDS, NULL) > 90 * 1000);
  /* A duplicate commit writes nothing, not even the lifetime. */
  r = redisCommand(e->fx.sync, "PEXPIRE %s 5000", HIST);
  freeReplyObject(r);
  assert_int_equal(commit(e, "conv-1", "ev-2", "b").applied, 0);
  assert_true(sync_int(e, "PTTL %s", HIST, NULL) <= 5000);
  /* ttl 0: no expiry. */
  e->h.ttl_s = 0;
  assert_int_equal(commit(e, "conv-1", "ev-3", "c").applied, 1);
  assert_int_equal(sync_int(e, "PTTL %s", HIST, NULL), -1);
  assert_int_equal(sync_int(e, "PTTL %s", IDS, NULL), -1);
  /* The pending turn's own lifetime. */
  e->h.pending_ttl_s = 60;
  assert_int_equal(save_pending(e, "conv-1", "ev-4", "{}").applied, 1);
  long long p = sync_int(e, "PTTL %s", "awt:{c:conv-1}:hist:p:ev-4", NULL);
  assert_true(p > 50 * 1000 && p <= 60 * 1000);
}

/* The hash tag of a key, as Redis Cluster reads it. */
static void hash_tag(const char *key, char *out, size_t n) {
  const char *o = strchr(key, '{');
  const char *c = o ? strchr(o + 1, '}') : NULL;
  if (!o || !c || c == o + 1) snprintf(out, n, "%s", key);
  else snprintf(out, n, "%.*s", (int)(c - o - 1), o + 1);
}

static void test_every_key_of_a_conversation_shares_its_hash_tag(void **state) {
  NEED_REDIS();
  env *e = *state;
  assert_int_equal(commit(e, "conv-1", "ev-1", "a").applied, 1);
  assert_int_equal(save_pending(e, "conv-1", "ev-2", "{}").applied, 1);
  redisReply *r = redisCommand(e->fx.sync, "KEYS *");
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  assert_int_equal(r->elements, 3); /* hist, hist:ids, hist:p:ev-2 */
  for (size_t i = 0; i < r->elements; i++) {
    char tag[256];
    hash_tag(r->element[i]->str, tag, sizeof tag);
    assert_string_equal(tag, "c:conv-1");
    assert_true(strncmp(r->element[i]->str, "awt:{c:conv-1}:hist", 19) == 0);
  }
  freeReplyObject(r);
  char key[128];
  assert_int_equal(hstore_key(&e->h, "conv-1", key, sizeof key), AW_OK);
  assert_string_equal(key, HIST);
}

static void test_commit_survives_a_lost_script_cache(void **state) {
  NEED_REDIS();
  env *e = *state;
  redisReply *r = redisCommand(e->fx.sync, "SCRIPT FLUSH");
  freeReplyObject(r);
  /* EVALSHA answers NOSCRIPT; the store sends the text (EVAL) once. */
  assert_int_equal(commit(e, "conv-1", "ev-1", "a").applied, 1);
  r = redisCommand(e->fx.sync, "SCRIPT EXISTS %s", e->h.sha);
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  assert_int_equal(r->element[0]->integer, 1); /* cached again: the sha is the script's */
  freeReplyObject(r);
  assert_int_equal(commit(e, "conv-1", "ev-2", "b").applied, 1);
  assert_int_equal(sync_int(e, "LLEN %s", HIST, NULL), 2);
  assert_int_equal(e->h.stats.errors, 0);
}

static void test_load_is_capped_even_for_a_history_written_with_larger_caps(void **state) {
  NEED_REDIS();
  env *e = *state;
  /* Another worker of the fleet, with larger caps, wrote 6 turns. */
  char ev[16];
  for (int i = 1; i <= 6; i++) {
    snprintf(ev, sizeof ev, "ev-%d", i);
    assert_int_equal(commit(e, "conv-1", ev, "0123456789").applied, 1);
  }
  size_t one = strlen(turn_of("ev-1", "0123456789"));
  /* Ours: at most 4 turns, and bytes for 2.5 of them. */
  e->h.max_turns = 4;
  e->h.max_bytes = 2 * one + one / 2;
  loaded l = load(e, "conv-1", "ev-9", 100);
  assert_int_equal(l.err, AW_OK);
  assert_int_equal(l.nturns, 2); /* whole turns, the newest */
  assert_string_equal(l.turns[0], turn_of("ev-5", "0123456789"));
  assert_string_equal(l.turns[1], turn_of("ev-6", "0123456789"));
  loaded_free(&l);
  e->h.max_bytes = 1024 * 1024;
  l = load(e, "conv-1", "ev-9", 100);
  assert_int_equal(l.nturns, 4);
  assert_string_equal(l.turns[0], turn_of("ev-3", "0123456789"));
  loaded_free(&l);
}

static void never(void *opaque, int err, int applied) {
  (void)opaque, (void)err, (void)applied;
  fail_msg("callback after a refused call");
}

static void never_load(void *opaque, int err, const be_history_view *v) {
  (void)opaque, (void)err, (void)v;
  fail_msg("callback after a refused call");
}

static void test_bad_arguments_and_a_down_redis_are_refused_before_any_io(void **state) {
  NEED_REDIS();
  env *e = *state;
  hstore *h = &e->h;
  assert_int_equal(hstore_load(h, "", "ev", 1, never_load, NULL), AW_EINVAL);
  assert_int_equal(hstore_load(h, "c", "", 1, never_load, NULL), AW_EINVAL);
  assert_int_equal(hstore_load(h, "c", "ev", 1, NULL, NULL), AW_EINVAL);
  assert_int_equal(hstore_commit(h, "c", "ev", "", 0, never, NULL), AW_EINVAL);
  assert_int_equal(hstore_commit(h, "c", "ev", "x", (size_t)HSTORE_TURN_MAX + 1, never, NULL), AW_ETOOBIG);
  assert_int_equal(hstore_save_pending(h, "c", "ev", "x", (size_t)HSTORE_TURN_MAX + 1, never, NULL), AW_ETOOBIG);
  char longid[1024];
  memset(longid, 'i', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  assert_int_equal(hstore_commit(h, longid, "ev", "x", 1, never, NULL), AW_ETOOBIG);
  assert_int_equal(hstore_load(h, "c", longid, 1, never_load, NULL), AW_ETOOBIG);
  /* No Redis: AW_EREDIS at once, no callback. */
  hstore down;
  rconn *dead = NULL;
  char err[128];
  int port = rfx_free_port();
  assert_int_equal(rconn_new(&e->fx.loop, "127.0.0.1", port, &dead, err, sizeof err), AW_OK);
  hstore_init(&down, dead, "awt");
  assert_int_equal(hstore_load(&down, "c", "ev", 5, never_load, NULL), AW_EREDIS);
  assert_int_equal(hstore_save_pending(&down, "c", "ev", "x", 1, never, NULL), AW_EREDIS);
  assert_int_equal(hstore_commit(&down, "c", "ev", "x", 1, never, NULL), AW_EREDIS);
  rconn_free(dead);
  uv_run(&e->fx.loop, UV_RUN_NOWAIT);
}

static void test_a_dropped_connection_fails_pending_calls_with_eredis(void **state) {
  NEED_REDIS();
  env *e = *state;
  loaded l;
  memset(&l, 0, sizeof l);
  result r = {0, 0, -1};
  assert_int_equal(hstore_load(&e->h, "conv-1", "ev-1", 5, on_load, &l), AW_OK);
  assert_int_equal(hstore_commit(&e->h, "conv-1", "ev-1", "{\"e\":\"ev-1\"}", 12, on_result, &r), AW_OK);
  /* The server drops the store's connection before the commands reach it. */
  redisReply *k = redisCommand(e->fx.sync, "CLIENT KILL TYPE normal SKIPME yes");
  assert_non_null(k);
  freeReplyObject(k);
  run_until(e, &r.done);
  assert_int_equal(l.done, 1); /* replies in order: the load's came first */
  assert_int_equal(l.err, AW_EREDIS);
  assert_int_equal(l.nturns, 0);
  assert_int_equal(l.has_pending, 0);
  assert_int_equal(r.err, AW_EREDIS);
  assert_int_equal(r.applied, 0);
  assert_int_equal(e->h.stats.errors, 2);
  loaded_free(&l);
}

static void test_counters_reach_the_metrics(void **state) {
  NEED_REDIS();
  env *e = *state;
  e->h.max_turns = 1;
  assert_int_equal(commit(e, "conv-1", "ev-1", "a").applied, 1);
  assert_int_equal(commit(e, "conv-1", "ev-2", "b").applied, 1);
  assert_int_equal(commit(e, "conv-1", "ev-2", "b").applied, 0);
  assert_int_equal(save_pending(e, "conv-1", "ev-3", "{}").applied, 1);
  loaded l = load(e, "conv-1", "ev-3", 5);
  loaded_free(&l);
  rmet *m = NULL;
  assert_int_equal(rmet_new(&m), AW_OK);
  rmet_history(m, &e->h.stats);
  buf b;
  buf_init(&b, 1 << 20);
  assert_int_equal(rmet_render(m, NULL, NULL, &b), AW_OK);
  char line[128];
  snprintf(line, sizeof line, "\naw_history_bytes_committed_total %zu\n",
           strlen(turn_of("ev-1", "a")) + strlen(turn_of("ev-2", "b")));
  static const char *const want[] = {"\naw_history_loads_total 1\n", "\naw_history_pending_saves_total 1\n",
                                     "\naw_history_commits_total 2\n", "\naw_history_commit_duplicates_total 1\n",
                                     "\naw_history_turns_trimmed_total 1\n", "\naw_history_errors_total 0\n"};
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (!strstr(b.data, want[i])) fail_msg("no \"%s\" in:\n%s", want[i] + 1, b.data);
  if (!strstr(b.data, line)) fail_msg("no \"%s\" in:\n%s", line + 1, b.data);
  buf_free(&b);
  rmet_free(m);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN); /* a write to a connection the server dropped: an error, not a signal */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_load_returns_the_newest_turns_oldest_first_with_committed_flag_and_pending,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(test_commit_is_idempotent_per_event_id, setup, teardown),
      cmocka_unit_test_setup_teardown(test_commit_drops_the_pending_turn_applied_or_not, setup, teardown),
      cmocka_unit_test_setup_teardown(test_trimming_by_turns_drops_the_oldest_turns_and_their_ids, setup, teardown),
      cmocka_unit_test_setup_teardown(test_trimming_by_bytes_drops_whole_oldest_turns_keeping_the_newest, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_trimmed_ids_are_found_in_turns_of_any_member_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_the_byte_total_is_recounted_when_one_of_the_two_keys_was_lost, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_ttl_is_set_and_renewed_by_every_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_every_key_of_a_conversation_shares_its_hash_tag, setup, teardown),
      cmocka_unit_test_setup_teardown(test_commit_survives_a_lost_script_cache, setup, teardown),
      cmocka_unit_test_setup_teardown(test_load_is_capped_even_for_a_history_written_with_larger_caps, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_bad_arguments_and_a_down_redis_are_refused_before_any_io, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_a_dropped_connection_fails_pending_calls_with_eredis, setup, teardown),
      cmocka_unit_test_setup_teardown(test_counters_reach_the_metrics, setup, teardown),
  };
  return cmocka_run_group_tests(tests, rfx_group_start, rfx_group_stop);
}

/* conv_store.c -- conversation and event records in Redis (keys from
 * rkeys.h). */
#include "conv_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct call {
  cstore *m;
  cstore_cb cb;
  void *opaque;
  int claim;            /* SET NX issued: on a nil reply, GET the winner */
  char key[];           /* the handle key, for the follow-up GET */
} call;

static int port_claim(void *self, const char *key, const char *conv, const char *handle, be_store_cb cb,
                      void *opaque);

void cstore_init(cstore *m, rconn *redis, const char *prefix) {
  m->redis = redis;
  if (rk_space_init(&m->keys, prefix, 0) != AW_OK) {
    /* A prefix with a brace: every key fails (AW_EINVAL) rather than
     * landing in the wrong cluster slot; the configuration refuses it. */
  }
  m->outcome_ttl_s = 7 * 24 * 3600;
  m->handle_ttl_s = 30L * 24 * 3600;
  m->port.claim_handle = port_claim;
  m->port.self = m;
}

int cstore_handle_key(const cstore *m, const char *key, const char *conv, char *out, size_t n) {
  return rk_conv_key(&m->keys, conv, RK_HANDLE, key, out, n);
}

static call *new_call(cstore *m, const char *key, cstore_cb cb, void *opaque) {
  size_t n = strlen(key) + 1;
  call *c = malloc(sizeof *c + n);
  if (!c) return NULL;
  c->m = m;
  c->cb = cb;
  c->opaque = opaque;
  c->claim = 0;
  memcpy(c->key, key, n);
  return c;
}

static void on_reply(void *opaque, int err, redisReply *r) {
  call *c = opaque;
  if (err) {
    c->cb(c->opaque, AW_EREDIS, "");
    free(c);
    return;
  }
  if (c->claim) {
    if (r->type == REDIS_REPLY_STATUS) { /* "OK": we won; the id is ours */
      c->cb(c->opaque, AW_OK, NULL);
      free(c);
      return;
    }
    /* nil: another worker claimed first; read its id */
    c->claim = 0;
    const char *argv[] = {"GET", c->key};
    size_t lens[] = {3, strlen(c->key)};
    if (rconn_commandargv(c->m->redis, on_reply, c, 2, argv, lens) == AW_OK) return;
    c->cb(c->opaque, AW_EREDIS, "");
    free(c);
    return;
  }
  char val[CSTORE_VALUE_MAX];
  val[0] = '\0';
  if (r->type == REDIS_REPLY_STRING && r->len < sizeof val) {
    memcpy(val, r->str, r->len);
    val[r->len] = '\0';
  }
  c->cb(c->opaque, AW_OK, val);
  free(c);
}

static int issue(cstore *m, call *c, int argc, const char **argv) {
  size_t lens[8]; /* the longest command has 7 arguments */
  for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
  int rc = rconn_commandargv(m->redis, on_reply, c, argc, argv, lens);
  if (rc) free(c);
  return rc;
}

int cstore_get_handle(cstore *m, const char *hkey, const char *conv, cstore_cb cb, void *opaque) {
  char key[RK_KEY_MAX];
  int krc = cstore_handle_key(m, hkey, conv, key, sizeof key);
  if (krc) return krc;
  call *c = new_call(m, key, cb, opaque);
  if (!c) return AW_ENOMEM;
  if (m->handle_ttl_s <= 0) {
    const char *argv[] = {"GET", key};
    return issue(m, c, 2, argv);
  }
  /* Every use renews the lifetime (GETEX, Redis >= 6.2): a conversation
   * in use never loses its handle; one idle for longer starts afresh. */
  char ttl[32];
  snprintf(ttl, sizeof ttl, "%ld", m->handle_ttl_s);
  const char *argv[] = {"GETEX", key, "EX", ttl};
  return issue(m, c, 4, argv);
}

int cstore_claim_handle(cstore *m, const char *hkey, const char *conv, const char *handle, cstore_cb cb,
                        void *opaque) {
  char key[RK_KEY_MAX];
  int krc = cstore_handle_key(m, hkey, conv, key, sizeof key);
  if (krc) return krc;
  call *c = new_call(m, key, cb, opaque);
  if (!c) return AW_ENOMEM;
  c->claim = 1;
  if (m->handle_ttl_s <= 0) {
    const char *argv[] = {"SET", key, handle, "NX"};
    return issue(m, c, 4, argv);
  }
  char ttl[32];
  snprintf(ttl, sizeof ttl, "%ld", m->handle_ttl_s);
  const char *argv[] = {"SET", key, handle, "NX", "EX", ttl};
  return issue(m, c, 6, argv);
}

/* The be_store port: the winner of a claim is ours when SET NX answered OK
 * (the reply then carries no value). */
typedef struct port_call {
  be_store_cb cb;
  void *opaque;
  char handle[BE_HANDLE_MAX];
} port_call;

static void on_port_claim(void *opaque, int err, const char *winner) {
  port_call *p = opaque;
  p->cb(p->opaque, err ? AW_EREDIS : AW_OK, err ? NULL : (winner && *winner ? winner : p->handle));
  free(p);
}

static int port_claim(void *self, const char *key, const char *conv, const char *handle, be_store_cb cb,
                      void *opaque) {
  if (strlen(handle) >= BE_HANDLE_MAX) return AW_EINVAL;
  port_call *p = malloc(sizeof *p);
  if (!p) return AW_ENOMEM;
  p->cb = cb;
  p->opaque = opaque;
  memcpy(p->handle, handle, strlen(handle) + 1);
  int rc = cstore_claim_handle(self, key, conv, handle, on_port_claim, p);
  if (rc != AW_OK) free(p);
  return rc;
}

static int outcome_key(const cstore *m, const char *conv, const char *event_id, char *out, size_t n) {
  return rk_conv_key(&m->keys, conv, RK_OUTCOME, event_id, out, n);
}

int cstore_put_outcome(cstore *m, const char *conv, const char *event_id, const char *status,
                       const char *run_id, const char *digest, int64_t at_ms, cstore_cb cb, void *opaque) {
  char key[RK_KEY_MAX], val[BE_HANDLE_MAX + 128], ttl[32];
  int krc = outcome_key(m, conv, event_id, key, sizeof key);
  if (krc) return krc;
  krc = evc_outcome_value(val, sizeof val, status, run_id, digest, at_ms);
  if (krc) return krc;
  snprintf(ttl, sizeof ttl, "%ld", m->outcome_ttl_s);
  call *c = new_call(m, key, cb, opaque);
  if (!c) return AW_ENOMEM;
  const char *argv[] = {"SET", key, val, "EX", ttl};
  return issue(m, c, 5, argv);
}

static int progress_key(const cstore *m, const char *conv, const char *event_id, char *out, size_t n) {
  return rk_conv_key(&m->keys, conv, RK_PROGRESS, event_id, out, n);
}

/* The outcome record decides first: an event that is answered, or whose
 * id an answered message holds, must not claim the progress record (a
 * refused event claims nothing).  One script, so still one round trip
 * (SET NX GET: Redis >= 7.0); both keys share the conversation's hash
 * tag.  Returns {outcome or nil, progress before the claim or nil}. */
static const char CLAIM_SCRIPT[] =
    "local o = redis.call('GET', KEYS[1])\n"
    "if o then return {o, false} end\n"
    "if ARGV[3] ~= '1' then return {false, redis.call('GET', KEYS[2])} end\n"
    "return {false, redis.call('SET', KEYS[2], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])}\n";

typedef struct claim_call {
  cstore_claim_cb cb;
  void *opaque;
} claim_call;

/* One element of the script's reply into out ("" for nil or anything
 * else; a value longer than out is cut: never one this worker wrote). */
static void element(const redisReply *r, size_t i, char *out, size_t n) {
  out[0] = '\0';
  if (i >= r->elements || !r->element[i] || r->element[i]->type != REDIS_REPLY_STRING) return;
  size_t k = r->element[i]->len < n ? r->element[i]->len : n - 1;
  memcpy(out, r->element[i]->str, k);
  out[k] = '\0';
}

static void on_claim(void *opaque, int err, redisReply *r) {
  claim_call *c = opaque;
  char outcome[CSTORE_VALUE_MAX], progress[CSTORE_VALUE_MAX];
  if (!err && (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2)) err = AW_EREDIS;
  if (err) {
    c->cb(c->opaque, AW_EREDIS, "", "");
  } else {
    element(r, 0, outcome, sizeof outcome);
    element(r, 1, progress, sizeof progress);
    c->cb(c->opaque, AW_OK, outcome, progress);
  }
  free(c);
}

int cstore_claim_event(cstore *m, const char *conv, const char *event_id, int claim, const char *claim_value,
                       cstore_claim_cb cb, void *opaque) {
  char okey[RK_KEY_MAX], pkey[RK_KEY_MAX], ttl[32];
  int krc = outcome_key(m, conv, event_id, okey, sizeof okey);
  if (!krc) krc = progress_key(m, conv, event_id, pkey, sizeof pkey);
  if (krc) return krc;
  if (claim && (!claim_value || !*claim_value)) return AW_EINVAL;
  snprintf(ttl, sizeof ttl, "%ld", m->outcome_ttl_s);
  claim_call *c = malloc(sizeof *c);
  if (!c) return AW_ENOMEM;
  c->cb = cb;
  c->opaque = opaque;
  const char *argv[] = {"EVAL", CLAIM_SCRIPT, "2", okey, pkey, claim ? claim_value : "-", ttl, claim ? "1" : "0"};
  size_t lens[8];
  for (int i = 0; i < 8; i++) lens[i] = strlen(argv[i]);
  int rc = rconn_commandargv(m->redis, on_claim, c, 8, argv, lens);
  if (rc) free(c);
  return rc;
}

int cstore_put_progress(cstore *m, const char *conv, const char *event_id, const char *checkpoint, cstore_cb cb,
                        void *opaque) {
  char key[RK_KEY_MAX], ttl[32];
  int krc = progress_key(m, conv, event_id, key, sizeof key);
  if (krc) return krc;
  if (!checkpoint || !*checkpoint || strlen(checkpoint) >= BE_CHECKPOINT_MAX) return AW_EINVAL;
  snprintf(ttl, sizeof ttl, "%ld", m->outcome_ttl_s);
  call *c = new_call(m, key, cb, opaque);
  if (!c) return AW_ENOMEM;
  /* The claim's "d:<digest>:<ms> " prefix stays in front of every
   * checkpoint (event_claim.h), so that a different message with the same
   * id is told apart while the turn runs; a record without one (an older
   * worker's, or expired meanwhile) gets none. */
  static const char script[] = "local v = redis.call('GET', KEYS[1])\n"
                               "local p = v and string.match(v, '^d:%x+:%d+ ') or ''\n"
                               "return redis.call('SET', KEYS[1], p .. ARGV[1], 'EX', ARGV[2])\n";
  const char *argv[] = {"EVAL", script, "1", key, checkpoint, ttl};
  return issue(m, c, 6, argv);
}

/* ==== reset and delete: forgetting and erasing a conversation =================================
 *
 * Which keys: a conversation's keys all carry its hash tag (rkeys.h), but
 * only some have names we can compute -- the handle and the history list
 * and its index; outcome (ev:), progress (evp:), pending history turns
 * (hist:p:) and tool state (turn:) are named by event ids and tokens nobody
 * keeps a list of.  Those are found by SCAN with a MATCH pattern of the tag
 * (rk_conv_match: glob characters of encoded ids escaped, so "c*" does not
 * take "c1"'s keys).
 *
 * Why a client-side SCAN loop and not one Lua script: SCAN walks the whole
 * keyspace (MATCH filters after the walk), O(all keys of the fleet) per
 * erase.  Inside a script that walk blocks Redis for every worker of the
 * fleet until it ends (measured on Redis 7.0, 1,000,000 keys, a loaded
 * 2-core box: 2.4 s blocked; scripts past lua-time-limit also make other
 * clients see BUSY); from the client the same walk is 1,000 steps of
 * SCAN_COUNT slots, 2.4 s in all but at most ~14 ms each, other commands
 * served in between.  The conversation waits that long (ordered), which is
 * acceptable for a rare delete or reset.  The price: the erase is not atomic.  That is harmless here: the
 * worker owning the conversation's partition is the one erasing, so no turn
 * of the conversation writes meanwhile, and SCAN returns every key that
 * exists for the whole walk; an interrupted erase (Redis down, crash) is
 * simply done again, deleting what is left (UNLINK of a missing key is a
 * no-op).  UNLINK, not DEL: a long history list is freed off the main
 * thread.  Each batch's UNLINK is pipelined with the next SCAN.
 *
 * Redis Cluster caveat: SCAN visits only the node it is sent to.  All keys
 * of one conversation are in one slot (its tag), so the walk must run on
 * the node serving that slot -- true with the single connection rconn makes
 * to a standalone Redis or a proxy that routes by key, NOT with a plain
 * cluster client that sends SCAN to an arbitrary node.  On a cluster, the
 * efficient form is CLUSTER GETKEYSINSLOT <slot of the tag> on its owner
 * (it walks that slot only); the forget script (KEYS of one tag) is
 * cluster-safe as it is, and walks nothing. */

#define SCAN_COUNT "1000"

typedef struct sweep {
  cstore *m;
  cstore_cb cb;
  void *opaque;
  int outstanding;   /* replies due */
  int scan_done;     /* SCAN answered cursor 0 */
  int failed;
  int count;         /* erase: the callback's value is the number deleted */
  long long deleted;
  char value[BE_HANDLE_MAX]; /* forget: the old handle */
  char pattern[RK_KEY_MAX];
} sweep;

static void sweep_scan(sweep *w, const char *cursor);

static void sweep_settle(sweep *w) {
  if (w->outstanding > 0 || (!w->scan_done && !w->failed)) return;
  if (w->failed) {
    w->cb(w->opaque, AW_EREDIS, "");
  } else if (w->count) {
    char n[32];
    snprintf(n, sizeof n, "%lld", w->deleted);
    w->cb(w->opaque, AW_OK, n);
  } else {
    w->cb(w->opaque, AW_OK, w->value);
  }
  free(w);
}

static void on_unlinked(void *opaque, int err, redisReply *r) {
  sweep *w = opaque;
  w->outstanding--;
  if (err || !r || r->type != REDIS_REPLY_INTEGER) w->failed = 1;
  else w->deleted += r->integer;
  sweep_settle(w);
}

static void on_scanned(void *opaque, int err, redisReply *r) {
  sweep *w = opaque;
  w->outstanding--;
  if (w->failed) { /* an UNLINK failed meanwhile: walk no further */
    sweep_settle(w);
    return;
  }
  if (err || !r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
      r->element[1]->type != REDIS_REPLY_ARRAY) {
    w->failed = 1;
    sweep_settle(w);
    return;
  }
  const redisReply *keys = r->element[1];
  if (keys->elements > 0) {
    /* One UNLINK per batch (at most about SCAN_COUNT keys: SCAN's COUNT
     * bounds the slots walked per call, hence the keys returned). */
    size_t n = keys->elements + 1;
    const char **argv = malloc(n * sizeof *argv);
    size_t *lens = malloc(n * sizeof *lens);
    int ok = argv && lens;
    if (ok) {
      argv[0] = "UNLINK";
      lens[0] = 6;
      for (size_t i = 0; i < keys->elements && ok; i++) {
        if (keys->element[i]->type != REDIS_REPLY_STRING) ok = 0;
        else {
          argv[i + 1] = keys->element[i]->str;
          lens[i + 1] = keys->element[i]->len;
        }
      }
    }
    if (ok && rconn_commandargv(w->m->redis, on_unlinked, w, (int)n, argv, lens) == AW_OK) w->outstanding++;
    else w->failed = 1;
    free(argv);
    free(lens);
  }
  const char *cursor = r->element[0]->str;
  if (w->failed) {
    sweep_settle(w);
  } else if (!strcmp(cursor, "0")) {
    w->scan_done = 1;
    sweep_settle(w);
  } else {
    sweep_scan(w, cursor);
  }
}

/* The next step of the walk (cursor "0": the first).  A SCAN that cannot
 * be sent ends the sweep with AW_EREDIS once what is out has answered. */
static void sweep_scan(sweep *w, const char *cursor) {
  const char *argv[] = {"SCAN", cursor, "MATCH", w->pattern, "COUNT", SCAN_COUNT};
  size_t lens[6];
  for (int i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
  if (rconn_commandargv(w->m->redis, on_scanned, w, 6, argv, lens) == AW_OK) w->outstanding++;
  else w->failed = 1;
  sweep_settle(w);
}

static int sweep_new(cstore *m, const char *conv, int kind, cstore_cb cb, void *opaque, sweep **out) {
  *out = NULL;
  if (!cb) return AW_EINVAL;
  sweep *w = calloc(1, sizeof *w);
  if (!w) return AW_ENOMEM;
  w->m = m;
  w->cb = cb;
  w->opaque = opaque;
  int rc = rk_conv_match(&m->keys, conv, kind, w->pattern, sizeof w->pattern);
  if (rc) {
    free(w);
    return rc;
  }
  *out = w;
  return AW_OK;
}

int cstore_erase_conversation(cstore *m, const char *conv, cstore_cb cb, void *opaque) {
  sweep *w = NULL;
  int rc = sweep_new(m, conv, RK_MATCH_ALL, cb, opaque, &w);
  if (rc) return rc;
  w->count = 1;
  const char *argv[] = {"SCAN", "0", "MATCH", w->pattern, "COUNT", SCAN_COUNT};
  size_t lens[6];
  for (int i = 0; i < 6; i++) lens[i] = strlen(argv[i]);
  rc = rconn_commandargv(m->redis, on_scanned, w, 6, argv, lens);
  if (rc) {
    free(w); /* not sent: the caller has the error, no callback */
    return rc;
  }
  w->outstanding++;
  return AW_OK;
}

/* KEYS: hist, hist:ids[, handle].  Returns the handle ('' when none) after
 * deleting them all: the handle and the history go together, so no next
 * message sees one without the other. */
static const char FORGET_SCRIPT[] =
    "local h = KEYS[3] and redis.call('GET', KEYS[3]) or false\n"
    "redis.call('UNLINK', unpack(KEYS))\n"
    "return h or ''\n";

static void on_forgot(void *opaque, int err, redisReply *r) {
  sweep *w = opaque;
  w->outstanding--;
  if (err || !r || r->type != REDIS_REPLY_STRING) {
    w->failed = 1;
    sweep_settle(w);
    return;
  }
  size_t k = r->len < sizeof w->value ? r->len : sizeof w->value - 1; /* never longer: we wrote it */
  memcpy(w->value, r->str, k);
  w->value[k] = '\0';
  /* The pending history turns (hist:p:<event>) are left to expire: each
   * is read only by its own event, and none of this conversation's events
   * is in flight while its reset runs (ordered).  Finding them would take
   * a walk of the whole keyspace (see above): 2.4 s per million keys for
   * every reset. */
  w->scan_done = 1;
  sweep_settle(w);
}

int cstore_forget_conversation(cstore *m, const char *hkey, const char *conv, cstore_cb cb, void *opaque) {
  char handle[RK_KEY_MAX] = "", hist[RK_KEY_MAX], ids[RK_KEY_MAX];
  int rc = rk_conv_key(&m->keys, conv, RK_HIST, NULL, hist, sizeof hist);
  if (!rc) rc = rk_conv_key(&m->keys, conv, RK_HIST_IDS, NULL, ids, sizeof ids);
  if (!rc && hkey) rc = cstore_handle_key(m, hkey, conv, handle, sizeof handle);
  sweep *w = NULL;
  if (!rc) rc = sweep_new(m, conv, RK_MATCH_ALL, cb, opaque, &w); /* the pattern is not used */
  if (rc) return rc;
  const char *argv[] = {"EVAL", FORGET_SCRIPT, hkey ? "3" : "2", hist, ids, handle};
  int argc = hkey ? 6 : 5;
  size_t lens[6];
  for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
  rc = rconn_commandargv(m->redis, on_forgot, w, argc, argv, lens);
  if (rc) {
    free(w); /* not sent: the caller has the error, no callback */
    return rc;
  }
  w->outstanding++;
  return AW_OK;
}

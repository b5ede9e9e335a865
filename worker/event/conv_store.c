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

/* history_store.c -- conversation history in Redis (see the header for the
 * keys, the caps and the contract on a turn's "e" member). */
#include "history_store.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS: hist, hist:ids, hist:p:<event>.  ARGV: event_id, turn, max_turns,
 * max_bytes, ttl_ms (0: no expiry).  Returns {applied, turns trimmed}.
 *
 * "bytes" is kept incrementally; it is recounted from the list when it is
 * missing while the list is not (one of the two keys was evicted), so that
 * a bytes cap never runs on a wrong total for long.  A trimmed turn's event
 * id is read from the turn: first by an anchored match (O(1) when the
 * backend writes "e" as the first member, as a string without escapes),
 * else by decoding it -- under pcall, because a runtime error in a script
 * does not undo the writes before it. */
static const char COMMIT[] =
    "local H,I,P=KEYS[1],KEYS[2],KEYS[3]\n"
    "local f='e:'..ARGV[1]\n"
    "if redis.call('HEXISTS',I,f)==1 then redis.call('DEL',P) return {0,0} end\n"
    "local t=ARGV[2]\n"
    "local n=redis.call('RPUSH',H,t)\n"
    "redis.call('HSET',I,f,#t)\n"
    "local bytes\n"
    "if n==1 then bytes=#t redis.call('HSET',I,'bytes',bytes)\n"
    "elseif redis.call('HEXISTS',I,'bytes')==0 then\n"
    "  bytes=0 for _,x in ipairs(redis.call('LRANGE',H,0,-1)) do bytes=bytes+#x end\n"
    "  redis.call('HSET',I,'bytes',bytes)\n"
    "else bytes=redis.call('HINCRBY',I,'bytes',#t) end\n"
    "local maxn,maxb=tonumber(ARGV[3]),tonumber(ARGV[4])\n"
    "local cut=0\n"
    "while n>1 and (n>maxn or bytes>maxb) do\n"
    "  local old=redis.call('LPOP',H)\n"
    "  local id=string.match(old,'^{\"e\":\"([^\"\\\\]*)\"')\n"
    "  if not id then\n"
    "    local ok,d=pcall(cjson.decode,old)\n"
    "    if ok and type(d)=='table' and type(d.e)=='string' then id=d.e end\n"
    "  end\n"
    "  if id then redis.call('HDEL',I,'e:'..id) end\n"
    "  bytes=redis.call('HINCRBY',I,'bytes',-#old)\n"
    "  n=n-1 cut=cut+1\n"
    "end\n"
    "local ttl=tonumber(ARGV[5])\n"
    "if ttl>0 then redis.call('PEXPIRE',H,ttl) redis.call('PEXPIRE',I,ttl)\n"
    "else redis.call('PERSIST',H) redis.call('PERSIST',I) end\n"
    "redis.call('DEL',P)\n"
    "return {1,cut}\n";

static int port_load(void *self, const char *conv, const char *event_id, size_t max_turns,
                     be_history_load_cb cb, void *opaque) {
  return hstore_load(self, conv, event_id, max_turns, cb, opaque);
}

static int port_save_pending(void *self, const char *conv, const char *event_id, const char *turn, size_t len,
                             be_history_cb cb, void *opaque) {
  return hstore_save_pending(self, conv, event_id, turn, len, cb, opaque);
}

static int port_commit(void *self, const char *conv, const char *event_id, const char *turn, size_t len,
                       be_history_cb cb, void *opaque) {
  return hstore_commit(self, conv, event_id, turn, len, cb, opaque);
}

void hstore_init(hstore *h, rconn *redis, const char *prefix) {
  memset(h, 0, sizeof *h);
  h->redis = redis;
  if (rk_space_init(&h->keys, prefix, 0) != AW_OK) {
    /* A prefix with a brace: every key fails (AW_EINVAL); the configuration refuses it. */
  }
  h->max_turns = HSTORE_DEFAULT_MAX_TURNS;
  h->max_bytes = HSTORE_DEFAULT_MAX_BYTES;
  h->ttl_s = HSTORE_DEFAULT_TTL_S;
  h->pending_ttl_s = HSTORE_DEFAULT_PENDING_TTL_S;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (EVP_Digest(COMMIT, sizeof COMMIT - 1, md, &mdlen, EVP_sha1(), NULL) == 1 && mdlen == 20) {
    for (unsigned i = 0; i < 20; i++) snprintf(h->sha + 2 * i, 3, "%02x", md[i]);
  } /* else sha stays "": every commit is sent as EVAL */
  h->port.load = port_load;
  h->port.save_pending = port_save_pending;
  h->port.commit = port_commit;
  h->port.self = h;
}

/* ---- keys ------------------------------------------------------------------ */

#define KEY_MAX RK_KEY_MAX

int hstore_key(const hstore *h, const char *conv, char *out, size_t n) {
  return rk_conv_key(&h->keys, conv, RK_HIST, NULL, out, n);
}

/* The three keys of (conv, event_id); AW_EINVAL for empty ids. */
static int keys_of(const hstore *h, const char *conv, const char *event_id, char hist[KEY_MAX],
                   char ids[KEY_MAX], char pend[KEY_MAX]) {
  if (!conv || !*conv || !event_id || !*event_id) return AW_EINVAL;
  int rc = hstore_key(h, conv, hist, KEY_MAX);
  if (!rc) rc = rk_conv_key(&h->keys, conv, RK_HIST_IDS, NULL, ids, KEY_MAX);
  if (!rc) rc = rk_conv_key(&h->keys, conv, RK_HIST_PENDING, event_id, pend, KEY_MAX);
  return rc;
}

static long long reply_int(const redisReply *r, int *ok) {
  if (r && r->type == REDIS_REPLY_INTEGER) return r->integer;
  *ok = 0;
  return 0;
}

/* ---- load: HEXISTS, GET, LRANGE in one pipeline ------------------------------
 *
 * LRANGE goes last on purpose: replies of one connection arrive in order, so
 * its reply is the last one and the view handed to the callback can point
 * into it (hiredis frees a reply when its callback returns) -- the history,
 * the largest part, is never copied.  The pending turn arrives before and
 * is copied. */

typedef struct load_op {
  hstore *h;
  be_history_load_cb cb;
  void *opaque;
  int pending;     /* replies due, plus one while the sender holds the op */
  int silent;      /* sending failed: the caller has the error, no callback */
  int failed;
  int range_sent;
  size_t max_turns;
  int committed;
  char *pend;      /* the pending turn (malloc'd), or NULL */
  size_t pend_len;
} load_op;

static void load_finish(load_op *op, const redisReply *range) {
  hstore *h = op->h;
  if (op->silent) goto out;
  be_history_view v;
  memset(&v, 0, sizeof v);
  const char **turns = NULL;
  size_t *lens = NULL;
  if (!op->failed && op->range_sent) {
    if (!range || range->type != REDIS_REPLY_ARRAY || range->elements > op->max_turns) {
      op->failed = 1;
    } else if (range->elements) {
      size_t n = range->elements;
      turns = malloc(n * sizeof *turns);
      lens = malloc(n * sizeof *lens);
      if (!turns || !lens) op->failed = 1;
      /* Newest first, as long as the sum stays within max_bytes (the
       * newest one always, if it is a turn we could have written): whole
       * turns go from the oldest end, never one in the middle. */
      size_t first = n, total = 0;
      for (size_t i = n; !op->failed && i-- > 0;) {
        const redisReply *e = range->element[i];
        if (!e || e->type != REDIS_REPLY_STRING) {
          op->failed = 1;
          break;
        }
        if (first == n ? e->len > HSTORE_TURN_MAX : total + e->len > h->max_bytes) break;
        total += e->len;
        first = i;
      }
      for (size_t i = first; !op->failed && i < n; i++) {
        turns[v.nturns] = range->element[i]->str;
        lens[v.nturns++] = range->element[i]->len;
      }
      v.turns = turns;
      v.lens = lens;
    }
  }
  if (op->failed) {
    memset(&v, 0, sizeof v);
    h->stats.errors++;
    op->cb(op->opaque, AW_EREDIS, &v);
  } else {
    v.committed = op->committed;
    v.pending = op->pend;
    v.pending_len = op->pend_len;
    h->stats.loads++;
    op->cb(op->opaque, AW_OK, &v);
  }
  free(turns);
  free(lens);
out:
  free(op->pend);
  free(op);
}

/* One reply (or the sender) done; range is the LRANGE reply when it is the
 * one arriving. */
static void load_step(load_op *op, const redisReply *range) {
  if (--op->pending > 0) {
    /* Only the last reply may be LRANGE's (see above); were it otherwise,
     * its turns would be gone before the view is built. */
    if (range) op->failed = 1;
    return;
  }
  load_finish(op, range);
}

static void on_load_exists(void *opaque, int err, redisReply *r) {
  load_op *op = opaque;
  int ok = !err;
  long long x = reply_int(r, &ok);
  if (!ok) op->failed = 1;
  op->committed = x == 1;
  load_step(op, NULL);
}

static void on_load_pending(void *opaque, int err, redisReply *r) {
  load_op *op = opaque;
  if (err || !r || (r->type != REDIS_REPLY_NIL && r->type != REDIS_REPLY_STRING)) {
    op->failed = 1;
  } else if (r->type == REDIS_REPLY_STRING && !op->failed && !op->silent) {
    /* Longer than we ever write: not ours to hand out. */
    if (r->len > HSTORE_TURN_MAX || !(op->pend = malloc(r->len + 1))) {
      op->failed = 1;
    } else {
      memcpy(op->pend, r->str, r->len);
      op->pend[r->len] = '\0';
      op->pend_len = r->len;
    }
  }
  load_step(op, NULL);
}

static void on_load_range(void *opaque, int err, redisReply *r) {
  load_op *op = opaque;
  if (err) op->failed = 1;
  load_step(op, err ? NULL : r);
}

int hstore_load(hstore *h, const char *conv, const char *event_id, size_t max_turns, be_history_load_cb cb,
                void *opaque) {
  char hist[KEY_MAX], ids[KEY_MAX], pend[KEY_MAX], field[160], stop[32];
  if (!cb) return AW_EINVAL;
  int rc = keys_of(h, conv, event_id, hist, ids, pend);
  if (rc) return rc;
  if (strlen(event_id) + 3 > sizeof field) return AW_ETOOBIG;
  snprintf(field, sizeof field, "e:%s", event_id);
  if (max_turns > h->max_turns) max_turns = h->max_turns;
  load_op *op = calloc(1, sizeof *op);
  if (!op) return AW_ENOMEM;
  op->h = h;
  op->cb = cb;
  op->opaque = opaque;
  op->pending = 1;
  op->max_turns = max_turns;
  const char *a1[] = {"HEXISTS", ids, field};
  size_t l1[] = {7, strlen(ids), strlen(field)};
  const char *a2[] = {"GET", pend};
  size_t l2[] = {3, strlen(pend)};
  rc = rconn_commandargv(h->redis, on_load_exists, op, 3, a1, l1);
  if (rc == AW_OK) {
    op->pending++;
    rc = rconn_commandargv(h->redis, on_load_pending, op, 2, a2, l2);
  }
  if (rc == AW_OK) {
    op->pending++;
    if (max_turns > 0) {
      /* The newest max_turns: LRANGE -N -1 (never -0, which is the whole list). */
      snprintf(stop, sizeof stop, "-%zu", max_turns);
      const char *a3[] = {"LRANGE", hist, stop, "-1"};
      size_t l3[] = {6, strlen(hist), strlen(stop), 2};
      rc = rconn_commandargv(h->redis, on_load_range, op, 4, a3, l3);
      if (rc == AW_OK) {
        op->pending++;
        op->range_sent = 1;
      }
    }
  }
  /* Replies of commands already sent still arrive; the last one frees the
   * op.  After a failure the caller has the error: no callback. */
  if (rc != AW_OK) op->silent = 1;
  load_step(op, NULL);
  return rc;
}

/* ---- save_pending: SET PX ------------------------------------------------------ */

typedef struct simple_op {
  hstore *h;
  be_history_cb cb;
  void *opaque;
} simple_op;

static void on_saved(void *opaque, int err, redisReply *r) {
  simple_op *op = opaque;
  int ok = !err && r && r->type == REDIS_REPLY_STATUS;
  if (ok) op->h->stats.pending_saves++;
  else op->h->stats.errors++;
  op->cb(op->opaque, ok ? AW_OK : AW_EREDIS, ok);
  free(op);
}

int hstore_save_pending(hstore *h, const char *conv, const char *event_id, const char *turn, size_t len,
                        be_history_cb cb, void *opaque) {
  char hist[KEY_MAX], ids[KEY_MAX], pend[KEY_MAX], ttl[32];
  if (!cb || !turn) return AW_EINVAL;
  if (len > HSTORE_TURN_MAX) return AW_ETOOBIG;
  int rc = keys_of(h, conv, event_id, hist, ids, pend);
  if (rc) return rc;
  simple_op *op = malloc(sizeof *op);
  if (!op) return AW_ENOMEM;
  op->h = h;
  op->cb = cb;
  op->opaque = opaque;
  /* hiredis formats the command into its output buffer here: the turn is
   * copied before we return. */
  snprintf(ttl, sizeof ttl, "%lld", (long long)(h->pending_ttl_s > 0 ? h->pending_ttl_s : 1) * 1000);
  const char *argv[] = {"SET", pend, turn, "PX", ttl};
  size_t lens[] = {3, strlen(pend), len, 2, strlen(ttl)};
  rc = rconn_commandargv(h->redis, on_saved, op, 5, argv, lens);
  if (rc) free(op);
  return rc;
}

/* ---- commit: EVALSHA, EVAL after NOSCRIPT ------------------------------------ */

enum { C_HIST, C_IDS, C_PEND, C_EVENT, C_TURN, C_MAXN, C_MAXB, C_TTL, C_NARGS };

typedef struct commit_op {
  hstore *h;
  be_history_cb cb;
  void *opaque;
  int retried;            /* EVAL sent after NOSCRIPT */
  size_t len[C_NARGS];
  const char *arg[C_NARGS]; /* into data */
  char data[];            /* the keys and ARGV, each NUL-terminated; the turn
                             kept for the EVAL fallback */
} commit_op;

static int send_commit(commit_op *op, int use_sha);

static int is_noscript(const redisReply *r) {
  return r && r->type == REDIS_REPLY_ERROR && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0;
}

static void on_commit(void *opaque, int err, redisReply *r) {
  commit_op *op = opaque;
  hstore *h = op->h;
  if (err && is_noscript(r) && !op->retried) {
    /* Redis lost its script cache (restart, failover, SCRIPT FLUSH): send
     * the text once; it is cached again from then on. */
    op->retried = 1;
    if (send_commit(op, 0) == AW_OK) return;
  }
  int ok = !err && r && r->type == REDIS_REPLY_ARRAY && r->elements == 2;
  long long applied = ok ? reply_int(r->element[0], &ok) : 0;
  long long cut = ok ? reply_int(r->element[1], &ok) : 0;
  if (ok && (applied < 0 || applied > 1 || cut < 0)) ok = 0;
  if (!ok) {
    h->stats.errors++;
    op->cb(op->opaque, AW_EREDIS, 0);
  } else {
    if (applied) {
      h->stats.commits++;
      h->stats.bytes_committed += op->len[C_TURN];
      h->stats.turns_trimmed += (unsigned long)cut;
    } else {
      h->stats.commit_duplicates++;
    }
    op->cb(op->opaque, AW_OK, (int)applied);
  }
  free(op);
}

static int send_commit(commit_op *op, int use_sha) {
  const char *argv[3 + C_NARGS];
  size_t lens[3 + C_NARGS];
  if (use_sha && op->h->sha[0]) {
    argv[0] = "EVALSHA", lens[0] = 7;
    argv[1] = op->h->sha, lens[1] = 40;
  } else {
    argv[0] = "EVAL", lens[0] = 4;
    argv[1] = COMMIT, lens[1] = sizeof COMMIT - 1;
  }
  argv[2] = "3", lens[2] = 1;
  for (int i = 0; i < C_NARGS; i++) argv[3 + i] = op->arg[i], lens[3 + i] = op->len[i];
  return rconn_commandargv(op->h->redis, on_commit, op, 3 + C_NARGS, argv, lens);
}

int hstore_commit(hstore *h, const char *conv, const char *event_id, const char *turn, size_t len,
                  be_history_cb cb, void *opaque) {
  char hist[KEY_MAX], ids[KEY_MAX], pend[KEY_MAX], maxn[32], maxb[32], ttl[32];
  if (!cb || !turn || !len) return AW_EINVAL;
  if (len > HSTORE_TURN_MAX) return AW_ETOOBIG;
  int rc = keys_of(h, conv, event_id, hist, ids, pend);
  if (rc) return rc;
  snprintf(maxn, sizeof maxn, "%zu", h->max_turns ? h->max_turns : 1);
  snprintf(maxb, sizeof maxb, "%zu", h->max_bytes);
  snprintf(ttl, sizeof ttl, "%lld", (long long)(h->ttl_s > 0 ? h->ttl_s : 0) * 1000);
  const char *src[C_NARGS] = {hist, ids, pend, event_id, turn, maxn, maxb, ttl};
  size_t lens[C_NARGS], total = 0;
  for (int i = 0; i < C_NARGS; i++) {
    lens[i] = i == C_TURN ? len : strlen(src[i]);
    total += lens[i] + 1;
  }
  commit_op *op = malloc(sizeof *op + total);
  if (!op) return AW_ENOMEM;
  op->h = h;
  op->cb = cb;
  op->opaque = opaque;
  op->retried = 0;
  char *p = op->data;
  for (int i = 0; i < C_NARGS; i++) {
    memcpy(p, src[i], lens[i]);
    p[lens[i]] = '\0';
    op->arg[i] = p;
    op->len[i] = lens[i];
    p += lens[i] + 1;
  }
  rc = send_commit(op, 1);
  if (rc) free(op);
  return rc;
}

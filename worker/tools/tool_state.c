/* tool_state.c -- Redis state of runs waiting for tool replies (see the
 * header for the keys).  Every decision that several workers could race on
 * is taken inside one Lua script. */
#include "tool_state.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* KEYS[1] run hash.  ARGV: event, owner, ttl_ms, n, max_rounds (0: no
 * cap), then per call 7 values: id, name, deadline, policy, timeout output,
 * preset kind ("" = wait), preset output.  Returns {fresh, missing,
 * published, round}; fresh 2 (nothing recorded) when the turn already has
 * max_rounds rounds.  A new round first drops what the previous one no
 * longer needs (its outputs, timeout outputs, deadlines, policies): the
 * response needs only each call's round, name and outcome, so a turn's
 * hash holds one round's outputs at a time. */
static const char ROUND_BEGIN[] =
    "local R=KEYS[1] local n=tonumber(ARGV[4]) local maxr=tonumber(ARGV[5])\n"
    "if redis.call('HEXISTS',R,'r:'..ARGV[6])==1 then\n"
    "  redis.call('HSET',R,'owner',ARGV[2])\n"
    "  local pub=0 if redis.call('HGET',R,'pub')==redis.call('HGET',R,'round') then pub=1 end\n"
    "  return {0,tonumber(redis.call('HGET',R,'missing') or '0'),pub,tonumber(redis.call('HGET',R,'r:'..ARGV[6]) or '0')}\n"
    "end\n"
    "local cur=tonumber(redis.call('HGET',R,'round') or '0')\n"
    "if maxr>0 and cur>=maxr then return {2,0,0,cur} end\n"
    "if cur>0 then\n"
    "  for id in string.gmatch(redis.call('HGET',R,'calls:'..cur) or '','%S+') do\n"
    "    redis.call('HDEL',R,'o:'..id,'x:'..id,'d:'..id,'p:'..id)\n"
    "  end\n"
    "end\n"
    "local round=redis.call('HINCRBY',R,'round',1)\n"
    "local ids={} local missing=0\n"
    "for i=0,n-1 do\n"
    "  local b=6+i*7 local id=ARGV[b]\n"
    "  ids[#ids+1]=id\n"
    "  redis.call('HSET',R,'r:'..id,round,'n:'..id,ARGV[b+1],'d:'..id,ARGV[b+2],'p:'..id,ARGV[b+3],'x:'..id,ARGV[b+4])\n"
    "  if ARGV[b+5]~='' then redis.call('HSET',R,'k:'..id,ARGV[b+5],'o:'..id,ARGV[b+6])\n"
    "  else missing=missing+1 end\n"
    "end\n"
    "redis.call('HSET',R,'calls:'..round,table.concat(ids,' '),'missing',missing,'state','waiting',"
    "'ev',ARGV[1],'owner',ARGV[2])\n"
    "redis.call('HDEL',R,'cancel')\n"
    "redis.call('PEXPIRE',R,ARGV[3])\n"
    "return {1,missing,0,round}\n";

/* KEYS[1] run hash.  ARGV: call, kind, output, now.  Returns {verdict,
 * missing, owner}.  A call with an outcome (k:, kept after its round's
 * outputs were dropped) is already answered. */
static const char APPLY[] =
    "local R=KEYS[1] local c=ARGV[1]\n"
    "local r=redis.call('HGET',R,'r:'..c)\n"
    "if not r then return {'unknown_correlation_id'} end\n"
    "if redis.call('HEXISTS',R,'k:'..c)==1 then return {'already_answered'} end\n"
    "if redis.call('HGET',R,'state')~='waiting' or redis.call('HGET',R,'round')~=r then\n"
    "  return {'run_not_waiting'} end\n"
    "if tonumber(ARGV[4])>tonumber(redis.call('HGET',R,'d:'..c)) then return {'run_not_waiting'} end\n"
    "redis.call('HSET',R,'o:'..c,ARGV[3],'k:'..c,ARGV[2])\n"
    "local m=redis.call('HINCRBY',R,'missing',-1)\n"
    "return {'ok',m,redis.call('HGET',R,'owner') or ''}\n";

/* KEYS[1] run hash.  ARGV: now, claim token, lease ms.  Applies the passed
 * deadlines, then returns {'gone'}, {'wait', missing, next_deadline},
 * {'held', until} or {'ready', round, cancel, taken_over, then per call of
 * every round: round, id, name, kind, output (current round only)}.
 *
 * A ready round is claimed for its submission by the caller's token, with a
 * lease: a worker that lost its partition without knowing yet (a session
 * timeout it has not noticed) may still collect the round its successor
 * collects, and both would submit.  The second to come finds the claim
 * ('held') and waits for the lease to pass; then it takes the claim over
 * (taken_over 1) and must recover the turn from the backend instead of
 * submitting, because the first may have submitted. */
static const char COLLECT[] =
    "local R=KEYS[1]\n"
    "local round=redis.call('HGET',R,'round')\n"
    "if not round then return {'gone'} end\n"
    "local now=tonumber(ARGV[1])\n"
    "local missing=0 local nextd=-1 local cancel=''\n"
    "if redis.call('HGET',R,'state')=='waiting' then\n"
    "  for id in string.gmatch(redis.call('HGET',R,'calls:'..round) or '','%S+') do\n"
    "    if redis.call('HEXISTS',R,'o:'..id)==0 then\n"
    "      local d=tonumber(redis.call('HGET',R,'d:'..id))\n"
    "      if d<=now then\n"
    "        redis.call('HSET',R,'o:'..id,redis.call('HGET',R,'x:'..id),'k:'..id,'timeout')\n"
    "        if redis.call('HGET',R,'p:'..id)=='c' and cancel=='' then cancel=redis.call('HGET',R,'n:'..id) end\n"
    "      else\n"
    "        missing=missing+1\n"
    "        if nextd<0 or d<nextd then nextd=d end\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  redis.call('HSET',R,'missing',missing)\n"
    "  if cancel~='' then redis.call('HSET',R,'cancel',cancel) end\n"
    "end\n"
    "cancel=redis.call('HGET',R,'cancel') or ''\n"
    "if missing>0 and cancel=='' then return {'wait',missing,nextd} end\n"
    "local holder=redis.call('HGET',R,'sub:'..round)\n"
    "local over=0\n"
    "if holder and holder~=ARGV[2] then\n"
    "  local lease=tonumber(redis.call('HGET',R,'subu:'..round) or '0')\n"
    "  if lease>now then return {'held',lease} end\n"
    "  over=1\n"
    "end\n"
    "redis.call('HSET',R,'state','submitting','sub:'..round,ARGV[2],'subu:'..round,now+tonumber(ARGV[3]))\n"
    "local out={'ready',tonumber(round),cancel,over}\n"
    "for r=1,tonumber(round) do\n"
    "  for id in string.gmatch(redis.call('HGET',R,'calls:'..r) or '','%S+') do\n"
    "    out[#out+1]=r out[#out+1]=id out[#out+1]=redis.call('HGET',R,'n:'..id) or ''\n"
    "    out[#out+1]=redis.call('HGET',R,'k:'..id) or ''\n"
    "    if tostring(r)==round then out[#out+1]=redis.call('HGET',R,'o:'..id) or '' else out[#out+1]='' end\n"
    "  end\n"
    "end\n"
    "return out\n";

/* KEYS[1] run hash.  Returns id, name, kind of every call with an outcome,
 * all rounds in order. */
static const char LIST[] =
    "local R=KEYS[1]\n"
    "local round=redis.call('HGET',R,'round')\n"
    "if not round then return {} end\n"
    "local out={}\n"
    "for r=1,tonumber(round) do\n"
    "  for id in string.gmatch(redis.call('HGET',R,'calls:'..r) or '','%S+') do\n"
    "    local k=redis.call('HGET',R,'k:'..id)\n"
    "    if k then out[#out+1]=id out[#out+1]=redis.call('HGET',R,'n:'..id) or '' out[#out+1]=k end\n"
    "  end\n"
    "end\n"
    "return out\n";

void tstate_init(tstate *t, rconn *redis, const char *prefix) {
  t->redis = redis;
  if (rk_space_init(&t->keys, prefix, 0) != AW_OK) {
    /* A prefix with a brace: every key fails (AW_EINVAL); the configuration refuses it. */
  }
  t->wait_ttl_ms = TSTATE_WAIT_TTL_MS;
  t->done_ttl_ms = TSTATE_DONE_TTL_MS;
  t->max_rounds = TSTATE_DEFAULT_MAX_ROUNDS;
  t->submit_lease_ms = TSTATE_SUBMIT_LEASE_MS;
}

static int run_key(const tstate *t, const char *conv, const char *run, char *out, size_t n) {
  return rk_conv_key(&t->keys, conv, RK_TURN, run, out, n);
}

static void ignore_reply(void *opaque, int err, redisReply *r) {
  (void)opaque;
  (void)err;
  (void)r;
}

/* Fire and forget: a lost write is covered by the reader (see the callers). */
static void send_quiet(tstate *t, int argc, const char **argv, const size_t *lens) {
  if (rconn_commandargv(t->redis, ignore_reply, NULL, argc, argv, lens) != AW_OK) return;
}

static long long reply_int(const redisReply *r) {
  if (!r) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return r->integer;
  if (r->type == REDIS_REPLY_STRING) return strtoll(r->str, NULL, 10);
  return 0;
}

static int reply_is(const redisReply *r, const char *s) {
  return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) && strcmp(r->str, s) == 0;
}

/* ---- round_begin: SETs of the correlation records, then the script, in one
 * pipeline; the callback runs when every reply is in. ---------------------- */

typedef struct begin_op {
  int pending;      /* replies due, plus one while the sender holds it */
  int silent;       /* sending failed: the caller got the error, no callback */
  int failed, fresh, published, over_cap;
  long missing, round;
  tstate_begin_cb cb;
  void *opaque;
} begin_op;

static void begin_step(begin_op *op) {
  if (--op->pending > 0) return;
  if (!op->silent)
    op->cb(op->opaque, op->failed ? AW_EREDIS : op->over_cap ? AW_ETOOBIG : AW_OK, op->fresh, op->missing,
           op->published, op->round);
  free(op);
}

static void on_corr_set(void *opaque, int err, redisReply *r) {
  begin_op *op = opaque;
  if (err || !r || r->type == REDIS_REPLY_ERROR) op->failed = 1;
  begin_step(op);
}

static void on_round_begin(void *opaque, int err, redisReply *r) {
  begin_op *op = opaque;
  if (err || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 4) {
    op->failed = 1;
  } else {
    op->fresh = reply_int(r->element[0]) == 1;
    op->over_cap = reply_int(r->element[0]) == 2;
    op->missing = (long)reply_int(r->element[1]);
    op->published = reply_int(r->element[2]) == 1;
    op->round = (long)reply_int(r->element[3]);
  }
  begin_step(op);
}

int tstate_round_begin(tstate *t, const char *conv, const char *run, const char *event_id,
                       const char *owner, const tstate_call *calls, size_t n, tstate_begin_cb cb,
                       void *opaque) {
  if (!conv || !run || !owner || !calls || !n || !cb || n > 1024) return AW_EINVAL;
  char key[RK_KEY_MAX], corr_key[RK_KEY_MAX];
  if (run_key(t, conv, run, key, sizeof key) != AW_OK) return AW_EINVAL;
  size_t argc = 4 + 5 + n * 7;
  const char **argv = calloc(argc, sizeof *argv);
  size_t *lens = calloc(argc, sizeof *lens);
  char(*nums)[24] = calloc(n * 2 + 3, sizeof *nums);
  begin_op *op = calloc(1, sizeof *op);
  buf val;
  buf_init(&val, 1024);
  int rc = argv && lens && nums && op ? AW_OK : AW_ENOMEM;
  if (rc == AW_OK) {
    op->cb = cb;
    op->opaque = opaque;
    op->pending = 1;
    /* Correlation records first: the script reply then also confirms them. */
    for (size_t i = 0; i < n && rc == AW_OK; i++) {
      if (!calls[i].corr_digest) continue;
      buf_reset(&val);
      char ttl[24];
      snprintf(ttl, sizeof ttl, "%ld", t->wait_ttl_ms);
      if (rk_fleet_key(&t->keys, RK_CORR, calls[i].corr_digest, corr_key, sizeof corr_key) != AW_OK) {
        rc = AW_EINVAL;
        break;
      }
      if (buf_appendf(&val, "%s %s %s", run, calls[i].id, conv) != AW_OK) {
        rc = AW_ENOMEM;
        break;
      }
      const char *sargv[] = {"SET", corr_key, val.data, "PX", ttl};
      size_t slen[] = {3, strlen(corr_key), val.len, 2, strlen(ttl)};
      op->pending++;
      if (rconn_commandargv(t->redis, on_corr_set, op, 5, sargv, slen) != AW_OK) {
        op->pending--;
        rc = AW_EREDIS;
        break;
      }
    }
  }
  if (rc == AW_OK) {
    size_t k = 0, nk = 0;
    argv[k++] = "EVAL";
    argv[k++] = ROUND_BEGIN;
    argv[k++] = "1";
    argv[k++] = key;
    argv[k++] = event_id ? event_id : "";
    argv[k++] = owner;
    snprintf(nums[nk], sizeof nums[nk], "%ld", t->wait_ttl_ms);
    argv[k++] = nums[nk++];
    snprintf(nums[nk], sizeof nums[nk], "%zu", n);
    argv[k++] = nums[nk++];
    snprintf(nums[nk], sizeof nums[nk], "%ld", t->max_rounds > 0 ? t->max_rounds : 0L);
    argv[k++] = nums[nk++];
    for (size_t i = 0; i < n; i++) {
      argv[k++] = calls[i].id;
      argv[k++] = calls[i].name;
      snprintf(nums[nk], sizeof nums[nk], "%" PRId64, calls[i].deadline_ms);
      argv[k++] = nums[nk++];
      argv[k++] = calls[i].cancel_on_deadline ? "c" : "e";
      argv[k++] = calls[i].timeout_output ? calls[i].timeout_output : "";
      argv[k++] = calls[i].preset_kind ? calls[i].preset_kind : "";
      argv[k++] = calls[i].preset_kind && calls[i].preset_output ? calls[i].preset_output : "";
    }
    for (size_t i = 0; i < k; i++) lens[i] = strlen(argv[i]);
    op->pending++;
    if (rconn_commandargv(t->redis, on_round_begin, op, (int)k, argv, lens) != AW_OK) {
      op->pending--;
      rc = AW_EREDIS;
    }
  }
  if (op) {
    /* Replies of commands already sent still arrive; the last one frees
     * the op.  After a failure the caller has the error: no callback. */
    if (rc != AW_OK) op->silent = 1;
    begin_step(op);
  }
  buf_free(&val);
  free(argv);
  free(lens);
  free(nums);
  return rc;
}

void tstate_set_published(tstate *t, const char *conv, const char *run) {
  char key[RK_KEY_MAX];
  if (run_key(t, conv, run, key, sizeof key) != AW_OK) return;
  /* pub = round: a later round is not "published" by an earlier mark. */
  const char *argv[] = {"EVAL",
                        "if redis.call('EXISTS',KEYS[1])==1 then "
                        "redis.call('HSET',KEYS[1],'pub',redis.call('HGET',KEYS[1],'round')) end return 1",
                        "1", key};
  size_t lens[] = {4, strlen(argv[1]), 1, strlen(key)};
  send_quiet(t, 4, argv, lens);
}

/* ---- values read back ------------------------------------------------------ */

/* The part of s[0..len) up to the first space: its length, or len when
 * there is none. */
static size_t part_len(const char *s, size_t len) {
  const char *sp = memchr(s, ' ', len);
  return sp ? (size_t)(sp - s) : len;
}

int tstate_parse_corr(const char *value, size_t len, char *run, size_t run_size, char *call, size_t call_size,
                      const char **conv, size_t *conv_len) {
  if (!value || !run || !call || !conv || !conv_len || memchr(value, '\0', len)) return AW_EPARSE;
  size_t r = part_len(value, len);
  if (r == 0 || r >= len || r >= run_size) return AW_EPARSE;
  const char *c = value + r + 1;
  size_t left = len - r - 1;
  size_t k = part_len(c, left);
  if (k == 0 || k >= left || k >= call_size) return AW_EPARSE;
  const char *v = c + k + 1;
  size_t vlen = left - k - 1;
  if (vlen == 0) return AW_EPARSE;
  memcpy(run, value, r);
  run[r] = '\0';
  memcpy(call, c, k);
  call[k] = '\0';
  *conv = v;
  *conv_len = vlen;
  return AW_OK;
}

int tstate_parse_wake(const char *item, size_t len, char *run, size_t run_size) {
  if (!item || !run || memchr(item, '\0', len)) return AW_EPARSE;
  size_t r = part_len(item, len);
  if (r == 0 || r + 1 >= len || r >= run_size) return AW_EPARSE;
  memcpy(run, item, r);
  run[r] = '\0';
  return AW_OK;
}

/* ---- replies ------------------------------------------------------------- */

typedef struct cb_box {
  void (*fn)(void);
  void *opaque;
} cb_box;

static cb_box *box_new(void (*fn)(void), void *opaque) {
  cb_box *b = malloc(sizeof *b);
  if (b) {
    b->fn = fn;
    b->opaque = opaque;
  }
  return b;
}

static void on_corr_lookup(void *opaque, int err, redisReply *r) {
  cb_box *b = opaque;
  tstate_corr_cb cb = (tstate_corr_cb)b->fn;
  if (err || !r || r->type == REDIS_REPLY_ERROR) cb(b->opaque, AW_EREDIS, NULL);
  else cb(b->opaque, AW_OK, r->type == REDIS_REPLY_STRING ? r->str : NULL);
  free(b);
}

int tstate_corr_lookup(tstate *t, const char *digest, tstate_corr_cb cb, void *opaque) {
  char key[RK_KEY_MAX];
  if (!digest || rk_fleet_key(&t->keys, RK_CORR, digest, key, sizeof key) != AW_OK) return AW_EINVAL;
  cb_box *b = box_new((void (*)(void))cb, opaque);
  if (!b) return AW_ENOMEM;
  const char *argv[] = {"GET", key};
  size_t lens[] = {3, strlen(key)};
  if (rconn_commandargv(t->redis, on_corr_lookup, b, 2, argv, lens) != AW_OK) {
    free(b);
    return AW_EREDIS;
  }
  return AW_OK;
}

static void on_apply(void *opaque, int err, redisReply *r) {
  cb_box *b = opaque;
  tstate_apply_cb cb = (tstate_apply_cb)b->fn;
  if (err || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
      r->element[0]->type != REDIS_REPLY_STRING) {
    cb(b->opaque, AW_EREDIS, NULL, 0, NULL);
  } else if (reply_is(r->element[0], "ok")) {
    /* "ok" without its missing count and owner is not a verdict. */
    if (r->elements >= 3 && r->element[2]->type == REDIS_REPLY_STRING)
      cb(b->opaque, AW_OK, "ok", (long)reply_int(r->element[1]), r->element[2]->str);
    else
      cb(b->opaque, AW_EREDIS, NULL, 0, NULL);
  } else {
    cb(b->opaque, AW_OK, r->element[0]->str, 0, NULL);
  }
  free(b);
}

int tstate_apply_reply(tstate *t, const char *conv, const char *run, const char *call,
                       const char *kind, const char *output, size_t output_len, int64_t now_ms,
                       tstate_apply_cb cb, void *opaque) {
  char key[RK_KEY_MAX], now[24];
  if (run_key(t, conv, run, key, sizeof key) != AW_OK) return AW_EINVAL;
  snprintf(now, sizeof now, "%" PRId64, now_ms);
  cb_box *b = box_new((void (*)(void))cb, opaque);
  if (!b) return AW_ENOMEM;
  const char *argv[] = {"EVAL", APPLY, "1", key, call, kind, output, now};
  size_t lens[] = {4, sizeof APPLY - 1, 1, strlen(key), strlen(call), strlen(kind), output_len, strlen(now)};
  if (rconn_commandargv(t->redis, on_apply, b, 8, argv, lens) != AW_OK) {
    free(b);
    return AW_EREDIS;
  }
  return AW_OK;
}

void tstate_wake(tstate *t, const char *owner, const char *conv, const char *run) {
  char key[RK_KEY_MAX];
  if (!owner || rk_fleet_key(&t->keys, RK_WAKE, owner, key, sizeof key) != AW_OK) return;
  buf v;
  buf_init(&v, 1024);
  if (buf_appendf(&v, "%s %s", run, conv) == AW_OK) {
    const char *argv[] = {"RPUSH", key, v.data};
    size_t lens[] = {5, strlen(key), v.len};
    send_quiet(t, 3, argv, lens);
    /* A dead owner's list must not linger. */
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%ld", t->wait_ttl_ms);
    const char *eargv[] = {"PEXPIRE", key, ttl};
    size_t elens[] = {7, strlen(key), strlen(ttl)};
    send_quiet(t, 3, eargv, elens);
  }
  buf_free(&v);
}

static void on_wakes(void *opaque, int err, redisReply *r) {
  cb_box *b = opaque;
  tstate_wakes_cb cb = (tstate_wakes_cb)b->fn;
  if (err || !r || r->type == REDIS_REPLY_ERROR) {
    cb(b->opaque, AW_EREDIS, NULL, 0);
  } else if (r->type != REDIS_REPLY_ARRAY || r->elements == 0) {
    cb(b->opaque, AW_OK, NULL, 0);
  } else {
    const char **items = calloc(r->elements, sizeof *items);
    size_t n = 0;
    for (size_t i = 0; items && i < r->elements; i++)
      if (r->element[i]->type == REDIS_REPLY_STRING) items[n++] = r->element[i]->str;
    cb(b->opaque, items ? AW_OK : AW_ENOMEM, items, n);
    free(items);
  }
  free(b);
}

int tstate_take_wakes(tstate *t, const char *owner, tstate_wakes_cb cb, void *opaque) {
  char key[RK_KEY_MAX];
  if (!owner || rk_fleet_key(&t->keys, RK_WAKE, owner, key, sizeof key) != AW_OK) return AW_EINVAL;
  cb_box *b = box_new((void (*)(void))cb, opaque);
  if (!b) return AW_ENOMEM;
  const char *argv[] = {"LPOP", key, "256"};
  size_t lens[] = {4, strlen(key), 3};
  if (rconn_commandargv(t->redis, on_wakes, b, 3, argv, lens) != AW_OK) {
    free(b);
    return AW_EREDIS;
  }
  return AW_OK;
}

/* ---- the owner's collection ---------------------------------------------- */

static void on_collect(void *opaque, int err, redisReply *r) {
  cb_box *b = opaque;
  tstate_collect_cb cb = (tstate_collect_cb)b->fn;
  tstate_collected c;
  memset(&c, 0, sizeof c);
  c.next_deadline_ms = -1;
  if (err || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 || r->element[0]->type != REDIS_REPLY_STRING) {
    cb(b->opaque, AW_EREDIS, NULL);
    free(b);
    return;
  }
  redisReply **e = r->element;
  if (reply_is(e[0], "gone")) {
    c.gone = 1;
    cb(b->opaque, AW_OK, &c);
  } else if (reply_is(e[0], "wait") && r->elements >= 3) {
    c.missing = (long)reply_int(e[1]);
    c.next_deadline_ms = reply_int(e[2]);
    cb(b->opaque, AW_OK, &c);
  } else if (reply_is(e[0], "held") && r->elements >= 2) {
    c.held_until_ms = reply_int(e[1]);
    cb(b->opaque, AW_OK, &c);
  } else if (reply_is(e[0], "ready") && r->elements >= 4 && (r->elements - 4) % 5 == 0) {
    c.ready = 1;
    c.round = (long)reply_int(e[1]);
    c.cancel = e[2]->type == REDIS_REPLY_STRING && e[2]->len ? e[2]->str : NULL;
    c.taken_over = reply_int(e[3]) != 0;
    size_t n = (r->elements - 4) / 5;
    tstate_output *calls = n ? calloc(n, sizeof *calls) : NULL;
    if (n && !calls) {
      cb(b->opaque, AW_ENOMEM, NULL);
      free(b);
      return;
    }
    for (size_t i = 0; i < n; i++) {
      redisReply **f = e + 4 + i * 5;
      calls[i].round = (long)reply_int(f[0]);
      calls[i].id = f[1]->type == REDIS_REPLY_STRING ? f[1]->str : "";
      calls[i].name = f[2]->type == REDIS_REPLY_STRING ? f[2]->str : "";
      calls[i].kind = f[3]->type == REDIS_REPLY_STRING ? f[3]->str : "";
      calls[i].output = f[4]->type == REDIS_REPLY_STRING ? f[4]->str : "";
      calls[i].output_len = f[4]->type == REDIS_REPLY_STRING ? f[4]->len : 0;
    }
    c.calls = calls;
    c.ncalls = n;
    cb(b->opaque, AW_OK, &c);
    free(calls);
  } else {
    cb(b->opaque, AW_EREDIS, NULL);
  }
  free(b);
}

int tstate_collect(tstate *t, const char *conv, const char *run, const char *claim, int64_t now_ms,
                   tstate_collect_cb cb, void *opaque) {
  char key[RK_KEY_MAX], now[24], lease[24];
  if (!claim || !claim[0]) return AW_EINVAL;
  if (run_key(t, conv, run, key, sizeof key) != AW_OK) return AW_EINVAL;
  snprintf(now, sizeof now, "%" PRId64, now_ms);
  snprintf(lease, sizeof lease, "%ld", t->submit_lease_ms);
  cb_box *b = box_new((void (*)(void))cb, opaque);
  if (!b) return AW_ENOMEM;
  const char *argv[] = {"EVAL", COLLECT, "1", key, now, claim, lease};
  size_t lens[] = {4, sizeof COLLECT - 1, 1, strlen(key), strlen(now), strlen(claim), strlen(lease)};
  if (rconn_commandargv(t->redis, on_collect, b, 7, argv, lens) != AW_OK) {
    free(b);
    return AW_EREDIS;
  }
  return AW_OK;
}

void tstate_finish(tstate *t, const char *conv, const char *run) {
  char key[RK_KEY_MAX], ttl[24];
  if (run_key(t, conv, run, key, sizeof key) != AW_OK) return;
  snprintf(ttl, sizeof ttl, "%ld", t->done_ttl_ms);
  /* The last round's outputs go too: a recovered response lists the calls
   * (tstate_list: ids, names, outcomes) and never submits them again. */
  const char *argv[] = {"EVAL",
                        "local R=KEYS[1] if redis.call('EXISTS',R)==1 then redis.call('HSET',R,'state','done') "
                        "for id in string.gmatch(redis.call('HGET',R,'calls:'..(redis.call('HGET',R,'round') or '0')) "
                        "or '','%S+') do redis.call('HDEL',R,'o:'..id,'x:'..id,'d:'..id,'p:'..id) end "
                        "redis.call('PEXPIRE',R,ARGV[1]) end return 1",
                        "1", key, ttl};
  size_t lens[] = {4, strlen(argv[1]), 1, strlen(key), strlen(ttl)};
  send_quiet(t, 5, argv, lens);
}

static void on_list(void *opaque, int err, redisReply *r) {
  cb_box *b = opaque;
  tstate_list_cb cb = (tstate_list_cb)b->fn;
  if (err || !r || r->type != REDIS_REPLY_ARRAY || r->elements % 3 != 0) {
    cb(b->opaque, AW_EREDIS, NULL, 0);
    free(b);
    return;
  }
  size_t n = r->elements / 3;
  tstate_output *calls = n ? calloc(n, sizeof *calls) : NULL;
  if (n && !calls) {
    cb(b->opaque, AW_ENOMEM, NULL, 0);
    free(b);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    redisReply **f = r->element + 3 * i;
    calls[i].id = f[0]->type == REDIS_REPLY_STRING ? f[0]->str : "";
    calls[i].name = f[1]->type == REDIS_REPLY_STRING ? f[1]->str : "";
    calls[i].kind = f[2]->type == REDIS_REPLY_STRING ? f[2]->str : "";
    calls[i].output = "";
  }
  cb(b->opaque, AW_OK, calls, n);
  free(calls);
  free(b);
}

int tstate_list(tstate *t, const char *conv, const char *run, tstate_list_cb cb, void *opaque) {
  char key[RK_KEY_MAX];
  if (run_key(t, conv, run, key, sizeof key) != AW_OK) return AW_EINVAL;
  cb_box *b = box_new((void (*)(void))cb, opaque);
  if (!b) return AW_ENOMEM;
  const char *argv[] = {"EVAL", LIST, "1", key};
  size_t lens[] = {4, sizeof LIST - 1, 1, strlen(key)};
  if (rconn_commandargv(t->redis, on_list, b, 4, argv, lens) != AW_OK) {
    free(b);
    return AW_EREDIS;
  }
  return AW_OK;
}

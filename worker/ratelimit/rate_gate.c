/* rate_gate.c -- token buckets in Redis shared by the fleet (see the header
 * for the design: what a bucket holds, why it fails open, how a worker's
 * requests queue behind one ask per class). */
#include "rate_gate.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* KEYS[1] the bucket.  ARGV: requests/min, tokens/min, request capacity,
 * token capacity, tokens wanted, ttl ms.  Returns 0 (taken) or the ms to
 * wait.  Nothing is written unless something is taken: a refusal leaves the
 * bucket as it was (the refill is a function of the stored time). */
static const char TAKE[] =
    "local k=KEYS[1]\n"
    "local rr,rt,cr,ct=tonumber(ARGV[1]),tonumber(ARGV[2]),tonumber(ARGV[3]),tonumber(ARGV[4])\n"
    "local need,ttl=tonumber(ARGV[5]),tonumber(ARGV[6])\n"
    "local tm=redis.call('TIME')\n"
    "local now=tonumber(tm[1])*1000+tonumber(tm[2])/1000\n"
    "local s=redis.call('HMGET',k,'r','t','ts','bu')\n"
    "local r,t=tonumber(s[1]) or cr,tonumber(s[2]) or ct\n"
    "local ts,bu=tonumber(s[3]) or now,tonumber(s[4]) or 0\n"
    "local dt=now-ts if dt<0 then dt=0 end\n"
    "r=math.min(cr,r+dt*rr/60000) t=math.min(ct,t+dt*rt/60000)\n"
    "local w=0\n"
    "if bu>now then w=bu-now end\n"
    "if rr>0 and r<1 then w=math.max(w,(1-r)*60000/rr) end\n"
    "if rt>0 then local n=math.min(need,ct) if t<n then w=math.max(w,(n-t)*60000/rt) end end\n"
    "if w>0 then return math.max(1,math.ceil(w)) end\n"
    "if rr>0 then r=r-1 end\n"
    "if rt>0 then t=t-need end\n"
    "redis.call('HSET',k,'r',r,'t',t,'ts',now,'bu',bu)\n"
    "redis.call('PEXPIRE',k,ttl)\n"
    "return 0\n";

/* KEYS[1] the bucket.  ARGV: requests/min, tokens/min, request capacity,
 * token capacity, remaining requests, remaining tokens (-1: not said), age
 * ms (how long ago the API counted), block ms (0: none), requests to
 * charge (a retry about to be sent without asking), ttl ms.  The API's
 * remaining, plus what refilled since it said so, caps the level. */
static const char FEED[] =
    "local k=KEYS[1]\n"
    "local rr,rt,cr,ct=tonumber(ARGV[1]),tonumber(ARGV[2]),tonumber(ARGV[3]),tonumber(ARGV[4])\n"
    "local remr,remt,age=tonumber(ARGV[5]),tonumber(ARGV[6]),tonumber(ARGV[7])\n"
    "local blk,chg,ttl=tonumber(ARGV[8]),tonumber(ARGV[9]),tonumber(ARGV[10])\n"
    "local tm=redis.call('TIME')\n"
    "local now=tonumber(tm[1])*1000+tonumber(tm[2])/1000\n"
    "local s=redis.call('HMGET',k,'r','t','ts','bu')\n"
    "local r,t=tonumber(s[1]) or cr,tonumber(s[2]) or ct\n"
    "local ts,bu=tonumber(s[3]) or now,tonumber(s[4]) or 0\n"
    "local dt=now-ts if dt<0 then dt=0 end\n"
    "r=math.min(cr,r+dt*rr/60000) t=math.min(ct,t+dt*rt/60000)\n"
    "if remr>=0 and rr>0 then local v=remr+age*rr/60000 if r>v then r=v end end\n"
    "if remt>=0 and rt>0 then local v=remt+age*rt/60000 if t>v then t=v end end\n"
    "if blk>0 and now+blk>bu then bu=now+blk end\n"
    "if chg>0 and rr>0 then r=r-chg end\n"
    "redis.call('HSET',k,'r',r,'t',t,'ts',now,'bu',bu)\n"
    "redis.call('PEXPIRE',k,ttl)\n"
    "return 0\n";

/* A bucket untouched this long is gone, which reads as full: longer than
 * any refill from a debt or block this module creates (blocks are capped
 * at a minute below). */
#define BUCKET_TTL_MS 600000L
#define MAX_BLOCK_MS 60000L
/* When the API counted a request is somewhere between sending it and its
 * response head; crediting the whole time would let the fleet's bucket run
 * ahead of the API's by the trip there, and the next request arrive a hair
 * early: a 429.  So the first 50 ms are not credited (a few percent of a
 * bucket at most), what is beyond them is (a slow answer's head comes long
 * after the API counted it). */
#define FEEDBACK_SLACK_MS 50L
#define WARN_EVERY_MS 10000u

enum { B_IDLE = 0, B_ASKING, B_SLEEPING };

typedef struct rg_bucket rg_bucket;

/* One request waiting for its grant (the api_gate ticket). */
typedef struct rg_wait {
  struct rg_wait *prev, *next;
  rg_bucket *b;
  api_gate_grant_fn grant;
  void *opaque;
  long tokens;
  uint64_t since_ms;  /* uv_now at acquire */
  unsigned epoch;     /* b->sleeps at acquire: it waited if that changed */
} rg_wait;

struct rg_bucket {
  rg *g;
  rg_wait *head, *tail;
  int state;
  int noscript_retry;  /* the ask in flight is the EVAL sent after NOSCRIPT */
  int fail_open;       /* the timer, when it fires, lets every waiting request go */
  unsigned sleeps;
  uv_timer_t timer;
  char cls[API_GATE_CLASS_MAX];
  char key[RG_KEY_MAX];
};

struct rg {
  uv_loop_t *loop;
  rconn *redis;
  rg_config cfg;
  api_gate port;
  rg_stats st;
  double cap_r, cap_t;  /* bucket capacities */
  char prefix[64];
  char keyhash[17];
  char take_sha[41];
  rg_bucket *buckets[RG_MAX_CLASSES];
  int nbuckets;
  int held;
  int stopping;         /* rg_stop: nothing is granted any more */
  int freeing;
  long inflight;        /* Redis commands not yet answered */
  int handles_open;     /* bucket timers not yet closed */
  uint64_t last_warn_ms;
};

static void kick(rg_bucket *b);

/* ---- helpers ------------------------------------------------------------------ */

static void sha1_hex(const char *text, size_t len, char out[41]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  out[0] = '\0';
  if (EVP_Digest(text, len, md, &n, EVP_sha1(), NULL) == 1 && n == 20)
    for (unsigned i = 0; i < 20; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static int is_noscript(const redisReply *r) {
  return r && r->type == REDIS_REPLY_ERROR && r->len >= 8 && memcmp(r->str, "NOSCRIPT", 8) == 0;
}

static void fmt_num(char *out, size_t n, double v) { snprintf(out, n, "%.6f", v); }

/* After rg_free, once Redis answered everything in flight (its callbacks
 * hold buckets) and the timers closed. */
static void maybe_free(rg *g) {
  if (!g->freeing || g->inflight > 0 || g->handles_open > 0) return;
  for (int i = 0; i < g->nbuckets; i++) free(g->buckets[i]);
  free(g);
}

static void check_hold(rg *g) {
  if (g->cfg.max_waiting <= 0 || !g->cfg.on_hold || g->stopping) return;
  if (!g->held && g->st.waiting > g->cfg.max_waiting) {
    g->held = 1;
    g->st.holds++;
    log_info(NULL, "rate limit: %ld API requests wait for the fleet's buckets (more than %ld): pausing consumption",
             g->st.waiting, g->cfg.max_waiting);
    g->cfg.on_hold(g->cfg.opaque, 1);
  } else if (g->held && g->st.waiting <= g->cfg.max_waiting * 3 / 4) {
    g->held = 0;
    log_info(NULL, "rate limit: %ld API requests wait: resuming consumption", g->st.waiting);
    g->cfg.on_hold(g->cfg.opaque, 0);
  }
}

static void unlink_wait(rg_wait *w) {
  rg_bucket *b = w->b;
  if (w->prev) w->prev->next = w->next;
  else b->head = w->next;
  if (w->next) w->next->prev = w->prev;
  else b->tail = w->prev;
  b->g->st.waiting--;
}

/* Let w go.  Its callback may start or cancel other requests, so the
 * caller holds no pointer into the queue across it. */
static void grant(rg_wait *w, int fail_open) {
  rg_bucket *b = w->b;
  rg *g = b->g;
  unlink_wait(w);
  g->st.granted++;
  if (fail_open) g->st.fail_open++;
  if (w->epoch != b->sleeps) {
    g->st.waits++;
    if (g->cfg.observe_wait)
      g->cfg.observe_wait(g->cfg.opaque, (double)(uv_now(g->loop) - w->since_ms) / 1000.0);
  }
  api_gate_grant_fn fn = w->grant;
  void *opaque = w->opaque;
  free(w);
  check_hold(g);
  fn(opaque);
}

static void warn_open(rg *g, const char *why) {
  uint64_t now = uv_now(g->loop);
  if (g->last_warn_ms && now - g->last_warn_ms < WARN_EVERY_MS) return;
  g->last_warn_ms = now;
  log_warn(NULL, "rate limit: %s; API requests go without the fleet's limit until Redis answers again", why);
}

/* Let every request waiting now go without the bucket (not those that
 * their callbacks add). */
static void open_all(rg_bucket *b) {
  long n = 0;
  for (rg_wait *w = b->head; w; w = w->next) n++;
  while (n-- > 0 && b->head) grant(b->head, 1);
}

/* ---- the bucket's timer: a sleep ended, or a deferred fail-open -------------- */

static void on_timer(uv_timer_t *t) {
  rg_bucket *b = t->data;
  b->state = B_IDLE;
  if (b->g->stopping) return;
  if (b->fail_open) {
    b->fail_open = 0;
    open_all(b);
  }
  kick(b);
}

static void on_timer_closed(uv_handle_t *h) {
  rg_bucket *b = h->data;
  rg *g = b->g;
  g->handles_open--;
  maybe_free(g);
}

/* The callback of a fail-open must not run inside acquire: defer it. */
static void defer_open(rg_bucket *b) {
  b->fail_open = 1;
  b->state = B_SLEEPING;
  uv_timer_start(&b->timer, on_timer, 0, 0);
}

/* ---- take: one ask per bucket in flight --------------------------------------- */

static void fmt_caps(const rg *g, char rr[32], char rt[32], char cr[32], char ct[32]) {
  snprintf(rr, 32, "%ld", g->cfg.requests_per_minute);
  snprintf(rt, 32, "%ld", g->cfg.tokens_per_minute);
  fmt_num(cr, 32, g->cap_r);
  fmt_num(ct, 32, g->cap_t);
}

static void on_take(void *opaque, int err, redisReply *r);

static int send_take(rg_bucket *b, int use_sha) {
  rg *g = b->g;
  char rr[32], rt[32], cr[32], ct[32], need[32], ttl[32];
  fmt_caps(g, rr, rt, cr, ct);
  snprintf(need, sizeof need, "%ld", b->head ? b->head->tokens : 0);
  snprintf(ttl, sizeof ttl, "%ld", BUCKET_TTL_MS);
  const char *argv[] = {use_sha ? "EVALSHA" : "EVAL", use_sha ? g->take_sha : TAKE, "1", b->key, rr, rt, cr, ct,
                        need, ttl};
  size_t lens[10];
  for (int i = 0; i < 10; i++) lens[i] = strlen(argv[i]);
  int rc = rconn_commandargv(g->redis, on_take, b, 10, argv, lens);
  if (rc == AW_OK) g->inflight++;
  return rc;
}

static void kick(rg_bucket *b) {
  rg *g = b->g;
  if (g->stopping || b->state != B_IDLE || !b->head) return;
  b->noscript_retry = 0;
  if (send_take(b, g->take_sha[0] != '\0') == AW_OK) {
    b->state = B_ASKING;
    return;
  }
  warn_open(g, "Redis is unreachable");
  defer_open(b);
}

static void on_take(void *opaque, int err, redisReply *r) {
  rg_bucket *b = opaque;
  rg *g = b->g;
  g->inflight--;
  if (g->stopping) {
    b->state = B_IDLE;
    maybe_free(g);
    return;
  }
  if (err && is_noscript(r) && !b->noscript_retry) {
    /* Redis lost its script cache (restart, failover): send the text once. */
    b->noscript_retry = 1;
    if (send_take(b, 0) == AW_OK) return;
  }
  b->state = B_IDLE;
  if (err || !r || r->type != REDIS_REPLY_INTEGER) {
    warn_open(g, err && r && r->type == REDIS_REPLY_ERROR ? "Redis refused the bucket script" : "Redis is unreachable");
    open_all(b);
    kick(b);
    return;
  }
  if (r->integer <= 0) {
    /* Taken for the head that asked -- or, if that one was cancelled
     * meanwhile, for the one now at the head (its tokens may differ: a
     * small error, not a lost request). */
    if (b->head) grant(b->head, 0);
    kick(b);
    return;
  }
  long long ms = r->integer;
  b->sleeps++;
  b->state = B_SLEEPING;
  if (log_enabled(LOG_DEBUG))
    log_debug(NULL, "rate limit: class %s: the fleet's bucket is empty; %ld requests wait %lld ms", b->cls,
              g->st.waiting, ms);
  uv_timer_start(&b->timer, on_timer, (uint64_t)ms, 0);
}

/* ---- the port ------------------------------------------------------------------ */

static rg_bucket *bucket_of(rg *g, const char *cls) {
  for (int i = 0; i < g->nbuckets; i++)
    if (strcmp(g->buckets[i]->cls, cls) == 0) return g->buckets[i];
  if (g->nbuckets == RG_MAX_CLASSES) {
    /* Classes come from the API's paths, a handful; past the cap they
     * share the last bucket rather than go unlimited. */
    return g->buckets[RG_MAX_CLASSES - 1];
  }
  rg_bucket *b = calloc(1, sizeof *b);
  if (!b) return NULL;
  b->g = g;
  snprintf(b->cls, sizeof b->cls, "%s", cls);
  if (rg_bucket_key(g, cls, b->key, sizeof b->key) != AW_OK || uv_timer_init(g->loop, &b->timer) != 0) {
    free(b);
    return NULL;
  }
  b->timer.data = b;
  g->handles_open++;
  g->buckets[g->nbuckets++] = b;
  return b;
}

static int port_acquire(void *self, const char *cls, const char *body, size_t len, api_gate_grant_fn fn,
                        void *opaque, void **ticket) {
  rg *g = self;
  if (!cls || !fn || !ticket) return AW_EINVAL;
  if (g->stopping) return AW_ESTATE;
  rg_bucket *b = bucket_of(g, cls);
  rg_wait *w = b ? calloc(1, sizeof *w) : NULL;
  if (!w) return AW_ENOMEM;
  w->b = b;
  w->grant = fn;
  w->opaque = opaque;
  /* Parsing the body costs a little CPU: only when tokens are limited. */
  w->tokens = g->cfg.tokens_per_minute > 0 ? api_gate_estimate_tokens(body, len) : 0;
  w->since_ms = uv_now(g->loop);
  w->epoch = b->sleeps;
  w->prev = b->tail;
  if (b->tail) b->tail->next = w;
  else b->head = w;
  b->tail = w;
  g->st.waiting++;
  *ticket = w;
  kick(b);
  check_hold(g);
  return AW_OK;
}

static void port_cancel(void *self, void *ticket) {
  rg *g = self;
  rg_wait *w = ticket;
  if (!w) return;
  unlink_wait(w);
  free(w);
  check_hold(g);
}

static void on_fed(void *opaque, int err, redisReply *r) {
  rg *g = opaque;
  (void)r;
  g->inflight--;
  if (!err) g->st.feedbacks++;
  maybe_free(g);
}

static void port_feedback(void *self, const char *cls, int status, const rlh_info *in, long age_ms) {
  rg *g = self;
  if (g->stopping || !cls || !in) return;
  if (status == 429) g->st.throttled++;
  long block = 0;
  long ra = rlh_retry_after_ms(in);
  if (status == 429) block = ra >= 0 ? ra : 1000; /* no Retry-After: a second, as the API's smallest window */
  long nr = rlh_next_unit_ms(in->limit_requests, in->remaining_requests, in->reset_requests_ms);
  long nt = rlh_next_unit_ms(in->limit_tokens, in->remaining_tokens, in->reset_tokens_ms);
  if (nr > block) block = nr;
  if (nt > block) block = nt;
  if (block > MAX_BLOCK_MS) block = MAX_BLOCK_MS;
  long remr = g->cfg.requests_per_minute > 0 ? in->remaining_requests : -1;
  long remt = g->cfg.tokens_per_minute > 0 ? in->remaining_tokens : -1;
  /* Only what can change the bucket is worth a round trip: a 429, a
   * block, or less remaining than the bucket can hold. */
  int useful = status == 429 || block > 0 || (remr >= 0 && remr < g->cap_r) || (remt >= 0 && remt < g->cap_t);
  if (!useful) return;
  rg_bucket *b = bucket_of(g, cls);
  if (!b) return;
  age_ms = age_ms > FEEDBACK_SLACK_MS ? age_ms - FEEDBACK_SLACK_MS : 0;
  char rr[32], rt[32], cr[32], ct[32], rem_r[32], rem_t[32], age[32], blk[32], ttl[32];
  fmt_caps(g, rr, rt, cr, ct);
  snprintf(rem_r, sizeof rem_r, "%ld", remr);
  snprintf(rem_t, sizeof rem_t, "%ld", remt);
  snprintf(age, sizeof age, "%ld", age_ms);
  snprintf(blk, sizeof blk, "%ld", block);
  snprintf(ttl, sizeof ttl, "%ld", BUCKET_TTL_MS);
  /* A 429 is retried by http_client without asking again: charge it now.
   * (The API counts refused requests too.)  EVAL, not EVALSHA: feedback is
   * rare, and a NOSCRIPT retry is not worth its state. */
  const char *argv[] = {"EVAL", FEED, "1", b->key, rr, rt, cr, ct, rem_r, rem_t, age, blk,
                        status == 429 ? "1" : "0", ttl};
  size_t lens[14];
  for (int i = 0; i < 14; i++) lens[i] = strlen(argv[i]);
  if (rconn_commandargv(g->redis, on_fed, g, 14, argv, lens) == AW_OK) g->inflight++;
}

/* ---- lifecycle ------------------------------------------------------------------ */

int rg_bucket_key(const rg *g, const char *cls, char *out, size_t n) {
  int k = snprintf(out, n, "%s:rl:%s:%s", g->prefix, g->keyhash, cls);
  return k < 0 || (size_t)k >= n ? AW_ETOOBIG : AW_OK;
}

int rg_new(uv_loop_t *loop, rconn *redis, const char *api_key, const rg_config *cfg, rg **out, char *errstr,
           size_t errstr_size) {
  if (!loop || !redis || !api_key || !cfg || !out)
    return aw_seterr(AW_EINVAL, errstr, errstr_size, "rate gate: NULL argument");
  if (cfg->requests_per_minute <= 0 && cfg->tokens_per_minute <= 0)
    return aw_seterr(AW_EINVAL, errstr, errstr_size, "rate gate: no rate configured");
  rg *g = calloc(1, sizeof *g);
  if (!g) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "rate gate: out of memory");
  g->loop = loop;
  g->redis = redis;
  g->cfg = *cfg;
  g->cfg.prefix = NULL;
  if (g->cfg.burst_ms <= 0) g->cfg.burst_ms = RG_DEFAULT_BURST_MS;
  if (g->cfg.requests_per_minute < 0) g->cfg.requests_per_minute = 0;
  if (g->cfg.tokens_per_minute < 0) g->cfg.tokens_per_minute = 0;
  snprintf(g->prefix, sizeof g->prefix, "%s", cfg->prefix && *cfg->prefix ? cfg->prefix : "aw");
  /* At least one request (or token) fits, whatever the burst: a bucket
   * that can never hold a request would stop the traffic. */
  g->cap_r = fmax(1.0, (double)g->cfg.requests_per_minute * (double)g->cfg.burst_ms / 60000.0);
  g->cap_t = fmax(1.0, (double)g->cfg.tokens_per_minute * (double)g->cfg.burst_ms / 60000.0);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (EVP_Digest(api_key, strlen(api_key), md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 8) {
    free(g);
    return aw_seterr(AW_EFATAL, errstr, errstr_size, "rate gate: SHA-256 unavailable");
  }
  for (int i = 0; i < 8; i++) snprintf(g->keyhash + 2 * i, 3, "%02x", md[i]);
  sha1_hex(TAKE, sizeof TAKE - 1, g->take_sha);
  g->port.acquire = port_acquire;
  g->port.cancel = port_cancel;
  g->port.feedback = port_feedback;
  g->port.self = g;
  *out = g;
  return AW_OK;
}

const api_gate *rg_port(rg *g) { return &g->port; }

const rg_stats *rg_get_stats(const rg *g) { return &g->st; }

void rg_stop(rg *g) {
  if (g) g->stopping = 1;
}

void rg_free(rg *g) {
  if (!g || g->freeing) return;
  g->stopping = g->freeing = 1;
  for (int i = 0; i < g->nbuckets; i++) {
    rg_bucket *b = g->buckets[i];
    while (b->head) {
      rg_wait *w = b->head;
      unlink_wait(w);
      free(w);
    }
    uv_timer_stop(&b->timer);
    uv_close((uv_handle_t *)&b->timer, on_timer_closed);
  }
  maybe_free(g);
}

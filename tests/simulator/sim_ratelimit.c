/* sim_ratelimit.c -- per-key, per-class token buckets (see the header). */
#include "sim_ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api_gate.h"
#include "ratelimit_headers.h"

#define MAX_BUCKETS 64 /* (key, class) pairs; the least recently used goes first */
#define MAX_CLASSES 16 /* classes with counters; more count under the last */

typedef struct bucket {
  uint64_t key;   /* FNV-1a of the Authorization value; 0: free slot */
  char cls[API_GATE_CLASS_MAX];
  double r, t;    /* levels */
  double ts_ms;   /* last refill (monotonic ms) */
} bucket;

typedef struct cls_stats {
  char cls[API_GATE_CLASS_MAX];
  long accepted, throttled;
  long sec[SRL_SECONDS];  /* unix second of each slot */
  long n[SRL_SECONDS];    /* requests accepted in it */
} cls_stats;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static srl_cfg g_base = {0, 0, 1000}, g_cur = {0, 0, 1000};
static bucket g_buckets[MAX_BUCKETS];
static cls_stats g_stats[MAX_CLASSES];
static int g_nstats;

void srl_defaults(srl_cfg *c) {
  c->requests_per_minute = 0;
  c->tokens_per_minute = 0;
  c->burst_ms = 1000;
}

static void clear_locked(void) {
  memset(g_buckets, 0, sizeof g_buckets);
  memset(g_stats, 0, sizeof g_stats);
  g_nstats = 0;
}

void srl_init(const srl_cfg *c) {
  pthread_mutex_lock(&g_mu);
  g_base = g_cur = *c;
  clear_locked();
  pthread_mutex_unlock(&g_mu);
}

void srl_reset(void) {
  pthread_mutex_lock(&g_mu);
  g_cur = g_base;
  clear_locked();
  pthread_mutex_unlock(&g_mu);
}

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double cap_of(long per_minute, long burst_ms) {
  return fmax(1.0, (double)per_minute * (double)burst_ms / 60000.0);
}

int srl_set_json(const cJSON *obj, char *errstr, size_t n) {
  if (!cJSON_IsObject(obj)) return aw_seterr(AW_EINVAL, errstr, n, "expected a JSON object");
  pthread_mutex_lock(&g_mu);
  srl_cfg c = g_cur;
  pthread_mutex_unlock(&g_mu);
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    long *dst = NULL, lo = 0, hi = 1000000000000L;
    if (strcmp(it->string, "requests_per_minute") == 0) dst = &c.requests_per_minute;
    else if (strcmp(it->string, "tokens_per_minute") == 0) dst = &c.tokens_per_minute;
    else if (strcmp(it->string, "burst_ms") == 0) dst = &c.burst_ms, lo = 10, hi = 600000;
    else return aw_seterr(AW_EINVAL, errstr, n, "unknown rate limit setting '%s'", it->string);
    double v = it->valuedouble;
    if (!cJSON_IsNumber(it) || v != floor(v) || v < (double)lo || v > (double)hi)
      return aw_seterr(AW_EINVAL, errstr, n, "%s: expected an integer in [%ld, %ld]", it->string, lo, hi);
    *dst = (long)v;
  }
  pthread_mutex_lock(&g_mu);
  g_cur = c;
  /* New limits start from full buckets, as after a quiet minute. */
  memset(g_buckets, 0, sizeof g_buckets);
  pthread_mutex_unlock(&g_mu);
  return AW_OK;
}

static void add_settings(cJSON *o, const srl_cfg *c) {
  cJSON_AddNumberToObject(o, "requests_per_minute", (double)c->requests_per_minute);
  cJSON_AddNumberToObject(o, "tokens_per_minute", (double)c->tokens_per_minute);
  cJSON_AddNumberToObject(o, "burst_ms", (double)c->burst_ms);
}

cJSON *srl_settings_json(void) {
  cJSON *o = cJSON_CreateObject();
  pthread_mutex_lock(&g_mu);
  srl_cfg c = g_cur;
  pthread_mutex_unlock(&g_mu);
  add_settings(o, &c);
  return o;
}

cJSON *srl_stats_json(void) {
  cJSON *o = cJSON_CreateObject();
  pthread_mutex_lock(&g_mu);
  add_settings(o, &g_cur);
  cJSON *classes = cJSON_AddObjectToObject(o, "classes");
  for (int i = 0; i < g_nstats; i++) {
    const cls_stats *s = &g_stats[i];
    cJSON *c = cJSON_AddObjectToObject(classes, s->cls);
    cJSON_AddNumberToObject(c, "accepted", (double)s->accepted);
    cJSON_AddNumberToObject(c, "throttled", (double)s->throttled);
    cJSON *per = cJSON_AddObjectToObject(c, "accepted_per_second");
    for (int k = 0; k < SRL_SECONDS; k++) {
      if (!s->n[k]) continue;
      char sec[24];
      snprintf(sec, sizeof sec, "%ld", s->sec[k]);
      cJSON_AddNumberToObject(per, sec, (double)s->n[k]);
    }
  }
  pthread_mutex_unlock(&g_mu);
  return o;
}

static uint64_t fnv(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return h ? h : 1;
}

/* The (key, class) bucket, made full when new; the least recently refilled
 * one is reused when the table is full. */
static bucket *bucket_of(uint64_t key, const char *cls, double now, double cap_r, double cap_t) {
  bucket *lru = &g_buckets[0];
  for (int i = 0; i < MAX_BUCKETS; i++) {
    bucket *b = &g_buckets[i];
    if (b->key == key && strcmp(b->cls, cls) == 0) return b;
    if (!b->key || (lru->key && b->ts_ms < lru->ts_ms)) lru = b;
  }
  memset(lru, 0, sizeof *lru);
  lru->key = key;
  snprintf(lru->cls, sizeof lru->cls, "%s", cls);
  lru->r = cap_r;
  lru->t = cap_t;
  lru->ts_ms = now;
  return lru;
}

static cls_stats *stats_of(const char *cls) {
  for (int i = 0; i < g_nstats; i++)
    if (strcmp(g_stats[i].cls, cls) == 0) return &g_stats[i];
  if (g_nstats == MAX_CLASSES) return &g_stats[MAX_CLASSES - 1];
  cls_stats *s = &g_stats[g_nstats++];
  snprintf(s->cls, sizeof s->cls, "%s", cls);
  return s;
}

static long ms_until(double missing, long per_minute) {
  if (missing <= 0 || per_minute <= 0) return 0;
  return (long)ceil(missing * 60000.0 / (double)per_minute);
}

int srl_take(const char *auth, const char *path, const char *body, size_t len, srl_reply *rep, const char **type,
             char *msg, size_t msg_size) {
  memset(rep, 0, sizeof *rep);
  rep->limit_r = rep->limit_t = -1;
  rep->retry_after_ms = -1;
  pthread_mutex_lock(&g_mu);
  srl_cfg c = g_cur;
  pthread_mutex_unlock(&g_mu);
  if (c.requests_per_minute <= 0 && c.tokens_per_minute <= 0) return 0;

  char cls[API_GATE_CLASS_MAX];
  api_gate_class(path && strncmp(path, "/v1/", 4) == 0 ? path + 3 : path, cls, sizeof cls);
  /* Outside the lock: parsing the body is the costly part. */
  long need = c.tokens_per_minute > 0 ? api_gate_estimate_tokens(body, len) : 0;
  double cap_r = cap_of(c.requests_per_minute, c.burst_ms), cap_t = cap_of(c.tokens_per_minute, c.burst_ms);
  double now = now_ms();

  pthread_mutex_lock(&g_mu);
  bucket *b = bucket_of(fnv(auth), cls, now, cap_r, cap_t);
  double dt = now - b->ts_ms > 0 ? now - b->ts_ms : 0;
  b->r = fmin(cap_r, b->r + dt * (double)c.requests_per_minute / 60000.0);
  b->t = fmin(cap_t, b->t + dt * (double)c.tokens_per_minute / 60000.0);
  b->ts_ms = now;
  long wait_r = c.requests_per_minute > 0 ? ms_until(1.0 - b->r, c.requests_per_minute) : 0;
  long wait_t = c.tokens_per_minute > 0 ? ms_until(fmin((double)need, cap_t) - b->t, c.tokens_per_minute) : 0;
  int refused = wait_r > 0 || wait_t > 0;
  if (!refused) {
    if (c.requests_per_minute > 0) b->r -= 1.0;
    if (c.tokens_per_minute > 0) b->t -= (double)need;
  }
  cls_stats *s = stats_of(cls);
  if (refused) {
    s->throttled++;
  } else {
    s->accepted++;
    long sec = (long)time(NULL);
    int k = (int)(sec % SRL_SECONDS);
    if (s->sec[k] != sec) s->sec[k] = sec, s->n[k] = 0;
    s->n[k]++;
  }
  rep->on = 1;
  if (c.requests_per_minute > 0) {
    rep->limit_r = c.requests_per_minute;
    rep->rem_r = b->r > 0 ? (long)floor(b->r) : 0;
    rep->reset_r_ms = ms_until(cap_r - b->r, c.requests_per_minute);
  }
  if (c.tokens_per_minute > 0) {
    rep->limit_t = c.tokens_per_minute;
    rep->rem_t = b->t > 0 ? (long)floor(b->t) : 0;
    rep->reset_t_ms = ms_until(cap_t - b->t, c.tokens_per_minute);
  }
  double used_r = cap_r - b->r, used_t = cap_t - b->t;
  pthread_mutex_unlock(&g_mu);
  if (!refused) return 0;

  rep->retry_after_ms = wait_r > wait_t ? wait_r : wait_t;
  char in[32];
  rlh_format_duration(rep->retry_after_ms, in, sizeof in);
  if (wait_r >= wait_t) {
    *type = "requests";
    snprintf(msg, msg_size,
             "Rate limit reached for %s in organization org-simulator on requests per min (RPM): Limit %ld, Used %ld, "
             "Requested 1. Please try again in %s. Visit https://platform.openai.com/account/rate-limits to learn "
             "more.",
             cls, c.requests_per_minute, (long)ceil(used_r), in);
  } else {
    *type = "tokens";
    snprintf(msg, msg_size,
             "Rate limit reached for %s in organization org-simulator on tokens per min (TPM): Limit %ld, Used %ld, "
             "Requested %ld. Please try again in %s. Visit https://platform.openai.com/account/rate-limits to learn "
             "more.",
             cls, c.tokens_per_minute, (long)ceil(used_t), need, in);
  }
  return 429;
}

int srl_header(const srl_reply *rep, int i, char *name, size_t nn, char *value, size_t vn) {
  if (!rep->on) return 0;
  /* The headers in a fixed order; the ones whose limit is off are skipped. */
  for (int k = 0, seen = 0; k < 7; k++) {
    const char *nm = NULL;
    long v = -1;
    int dur = 0;
    switch (k) {
    case 0: nm = "x-ratelimit-limit-requests", v = rep->limit_r; break;
    case 1: nm = "x-ratelimit-remaining-requests", v = rep->limit_r >= 0 ? rep->rem_r : -1; break;
    case 2: nm = "x-ratelimit-reset-requests", v = rep->limit_r >= 0 ? rep->reset_r_ms : -1, dur = 1; break;
    case 3: nm = "x-ratelimit-limit-tokens", v = rep->limit_t; break;
    case 4: nm = "x-ratelimit-remaining-tokens", v = rep->limit_t >= 0 ? rep->rem_t : -1; break;
    case 5: nm = "x-ratelimit-reset-tokens", v = rep->limit_t >= 0 ? rep->reset_t_ms : -1, dur = 1; break;
    default: nm = "retry-after-ms", v = rep->retry_after_ms; break;
    }
    if (v < 0) continue;
    if (seen++ != i) continue;
    snprintf(name, nn, "%s", nm);
    if (dur) rlh_format_duration(v, value, vn);
    else snprintf(value, vn, "%ld", v);
    return 1;
  }
  return 0;
}

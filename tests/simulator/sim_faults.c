/* sim_faults.c -- settings, counted faults and seeded chaos rates. */
#include "sim_faults.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static sfault_cfg g_base, g_cur;
static uint64_t g_rng;

static const char *const apply_routes[SFAULT_APPLY_ROUTES] = {
    "POST /v1/responses",
    "POST /v1/conversations",
    "POST /v1/conversations/{conversation_id}/items",
    "POST /v1/threads",
    "POST /v1/threads/runs",
    "POST /v1/threads/{thread_id}/runs",
    "POST /v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
    "POST /v1/threads/{thread_id}/messages",
    "POST /v1/chat/completions",
    "POST /v1/files",
    "POST /v1/vector_stores",
};

const char *sfault_apply_route(int i) { return i >= 0 && i < SFAULT_APPLY_ROUTES ? apply_routes[i] : NULL; }

void sfault_defaults(sfault_cfg *c) {
  memset(c, 0, sizeof *c);
  for (int i = 0; i < SFAULT_APPLY_ROUTES; i++) c->apply_fail[i].status = 500;
  c->answer_tokens = 20;
  c->retry_after_s = 1;
  c->seed = 1;
  c->requires_action_timeout_s = 600;
  c->max_context_tokens = 100000;
  c->max_file_bytes = 512 << 20;
  c->file_processing_ms = 100;
  snprintf(c->fail_run_code, sizeof c->fail_run_code, "server_error");
}

void sfault_init(const sfault_cfg *c) {
  pthread_mutex_lock(&g_mu);
  g_base = g_cur = *c;
  g_rng = c->seed;
  pthread_mutex_unlock(&g_mu);
}

void sfault_get(sfault_cfg *out) {
  pthread_mutex_lock(&g_mu);
  *out = g_cur;
  pthread_mutex_unlock(&g_mu);
}

void sfault_reset(void) { sfault_init(&g_base); }

/* splitmix64: tiny, good enough for chaos draws, and reproducible. */
static double draw(void) {
  uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (double)(z >> 11) / 9007199254740992.0;
}

typedef enum { F_INT, F_RATE, F_SEED, F_CODE } ftype;
typedef struct field {
  const char *name;
  ftype type;
  size_t off;
  int min, max;
} field;

#define OFF(f) offsetof(sfault_cfg, f)
static const field fields[] = {
    {"latency_ms", F_INT, OFF(latency_ms), 0, 600000},
    {"token_delay_ms", F_INT, OFF(token_delay_ms), 0, 600000},
    {"answer_tokens", F_INT, OFF(answer_tokens), 1, 100000},
    {"fail_next_n_with_429", F_INT, OFF(fail_next_n_with_429), 0, 1 << 30},
    {"retry_after_s", F_INT, OFF(retry_after_s), 0, 3600},
    {"fail_next_n_with_500", F_INT, OFF(fail_next_n_with_500), 0, 1 << 30},
    {"drop_next_n_streams", F_INT, OFF(drop_next_n_streams), 0, 1 << 30},
    {"fail_next_n_runs", F_INT, OFF(fail_next_n_runs), 0, 1 << 30},
    {"expire_next_n_runs", F_INT, OFF(expire_next_n_runs), 0, 1 << 30},
    {"fail_run_code", F_CODE, OFF(fail_run_code), 0, 0},
    {"requires_action_timeout_s", F_INT, OFF(requires_action_timeout_s), 1, 86400},
    {"max_context_tokens", F_INT, OFF(max_context_tokens), 1, 1 << 30},
    {"max_file_bytes", F_INT, OFF(max_file_bytes), 1, 1 << 30},
    {"file_processing_ms", F_INT, OFF(file_processing_ms), 0, 600000},
    {"rate_429", F_RATE, OFF(rate_429), 0, 1},
    {"rate_500", F_RATE, OFF(rate_500), 0, 1},
    {"rate_drop_stream", F_RATE, OFF(rate_drop_stream), 0, 1},
    {"rate_apply_fail", F_RATE, OFF(rate_apply_fail), 0, 1},
    {"seed", F_SEED, OFF(seed), 0, 0},
};
#define NFIELDS (sizeof fields / sizeof fields[0])

/* apply_then_fail: {"<route>": {"n": N, "status": 500|502|0}, ...}; each
 * route given is merged (n and status separately), the others are left
 * alone, so GET's full table POSTed back restores it exactly. */
static int apply_fail_json(sfault_cfg *c, const cJSON *obj, char *err, size_t n) {
  if (!cJSON_IsObject(obj)) return aw_seterr(AW_EINVAL, err, n, "'apply_then_fail' must be an object");
  for (const cJSON *rt = obj->child; rt; rt = rt->next) {
    int i = 0;
    while (i < SFAULT_APPLY_ROUTES && strcmp(apply_routes[i], rt->string) != 0) i++;
    if (i == SFAULT_APPLY_ROUTES)
      return aw_seterr(AW_EINVAL, err, n, "apply_then_fail: '%s' is not a creating route (see GET /admin/faults)",
                       rt->string);
    if (!cJSON_IsObject(rt)) return aw_seterr(AW_EINVAL, err, n, "apply_then_fail['%s'] must be an object", rt->string);
    for (const cJSON *k = rt->child; k; k = k->next) {
      double v = cJSON_IsNumber(k) ? k->valuedouble : -1;
      if (strcmp(k->string, "n") == 0 && v >= 0 && v <= (1 << 30) && v == (double)(int)v) {
        c->apply_fail[i].n = (int)v;
      } else if (strcmp(k->string, "status") == 0 && (v == 500 || v == 502 || v == 0)) {
        c->apply_fail[i].status = (int)v;
      } else {
        return aw_seterr(AW_EINVAL, err, n,
                         "apply_then_fail['%s']: keys are 'n' (an integer >= 0) and 'status' (500, 502, or 0 "
                         "to drop the connection)", rt->string);
      }
    }
  }
  return AW_OK;
}

/* Apply one key to c; validation and application share this code so a
 * failing body changes nothing (it is applied to a copy first). */
static int apply(sfault_cfg *c, const cJSON *it, char *err, size_t n) {
  if (strcmp(it->string, "apply_then_fail") == 0) return apply_fail_json(c, it, err, n);
  for (size_t i = 0; i < NFIELDS; i++) {
    const field *f = &fields[i];
    if (strcmp(f->name, it->string) != 0) continue;
    char *p = (char *)c + f->off;
    if (f->type == F_CODE) {
      if (!cJSON_IsString(it) || (strcmp(it->valuestring, "server_error") != 0 &&
                                  strcmp(it->valuestring, "rate_limit_exceeded") != 0 &&
                                  strcmp(it->valuestring, "invalid_prompt") != 0))
        return aw_seterr(AW_EINVAL, err, n,
                         "'%s' must be server_error, rate_limit_exceeded or invalid_prompt", f->name);
      snprintf(p, sizeof c->fail_run_code, "%s", it->valuestring);
      return AW_OK;
    }
    if (!cJSON_IsNumber(it)) return aw_seterr(AW_EINVAL, err, n, "'%s' must be a number", f->name);
    double v = it->valuedouble;
    if (f->type == F_RATE) {
      if (v < 0 || v > 1) return aw_seterr(AW_EINVAL, err, n, "'%s' must be in [0,1]", f->name);
      *(double *)p = v;
    } else if (f->type == F_SEED) {
      if (v < 0) return aw_seterr(AW_EINVAL, err, n, "'seed' must be >= 0");
      *(uint64_t *)p = (uint64_t)v;
    } else {
      if (v != (double)(int)v || v < f->min || v > f->max)
        return aw_seterr(AW_EINVAL, err, n, "'%s' must be an integer in [%d,%d]", f->name, f->min, f->max);
      *(int *)p = (int)v;
    }
    return AW_OK;
  }
  return aw_seterr(AW_EINVAL, err, n, "unknown fault setting '%s'", it->string);
}

int sfault_set_json(const cJSON *obj, char *err, size_t n) {
  if (!cJSON_IsObject(obj)) return aw_seterr(AW_EINVAL, err, n, "body must be a JSON object");
  pthread_mutex_lock(&g_mu);
  sfault_cfg c = g_cur;
  int seeded = 0;
  for (const cJSON *it = obj->child; it; it = it->next) {
    int rc = apply(&c, it, err, n);
    if (rc) {
      pthread_mutex_unlock(&g_mu);
      return rc;
    }
    seeded |= strcmp(it->string, "seed") == 0;
  }
  g_cur = c;
  if (seeded) g_rng = c.seed;
  pthread_mutex_unlock(&g_mu);
  return AW_OK;
}

cJSON *sfault_to_json(void) {
  sfault_cfg c;
  sfault_get(&c);
  cJSON *o = cJSON_CreateObject();
  for (size_t i = 0; o && i < NFIELDS; i++) {
    const field *f = &fields[i];
    const char *p = (const char *)&c + f->off;
    if (f->type == F_CODE) cJSON_AddStringToObject(o, f->name, p);
    else if (f->type == F_RATE) cJSON_AddNumberToObject(o, f->name, *(const double *)p);
    else if (f->type == F_SEED) cJSON_AddNumberToObject(o, f->name, (double)*(const uint64_t *)p);
    else cJSON_AddNumberToObject(o, f->name, *(const int *)p);
  }
  cJSON *af = cJSON_AddObjectToObject(o, "apply_then_fail");
  for (int i = 0; af && i < SFAULT_APPLY_ROUTES; i++) {
    cJSON *e = cJSON_AddObjectToObject(af, apply_routes[i]);
    cJSON_AddNumberToObject(e, "n", c.apply_fail[i].n);
    cJSON_AddNumberToObject(e, "status", c.apply_fail[i].status);
  }
  return o;
}

sfault_http sfault_take_http(int *retry_after_s) {
  sfault_http r = SFAULT_NONE;
  pthread_mutex_lock(&g_mu);
  if (g_cur.fail_next_n_with_429 > 0) {
    g_cur.fail_next_n_with_429--;
    r = SFAULT_429;
  } else if (g_cur.fail_next_n_with_500 > 0) {
    g_cur.fail_next_n_with_500--;
    r = SFAULT_500;
  } else if (g_cur.rate_429 > 0 && draw() < g_cur.rate_429) {
    r = SFAULT_429;
  } else if (g_cur.rate_500 > 0 && draw() < g_cur.rate_500) {
    r = SFAULT_500;
  }
  *retry_after_s = g_cur.retry_after_s;
  pthread_mutex_unlock(&g_mu);
  return r;
}

int sfault_take_drop_stream(void) {
  int drop = 0;
  pthread_mutex_lock(&g_mu);
  if (g_cur.drop_next_n_streams > 0) {
    g_cur.drop_next_n_streams--;
    drop = 1;
  } else if (g_cur.rate_drop_stream > 0 && draw() < g_cur.rate_drop_stream) {
    drop = 1;
  }
  pthread_mutex_unlock(&g_mu);
  return drop;
}

sfault_run sfault_take_run(char *code, size_t code_size) {
  sfault_run r = SFAULT_RUN_OK;
  pthread_mutex_lock(&g_mu);
  if (g_cur.fail_next_n_runs > 0) {
    g_cur.fail_next_n_runs--;
    r = SFAULT_RUN_FAIL;
  } else if (g_cur.expire_next_n_runs > 0) {
    g_cur.expire_next_n_runs--;
    r = SFAULT_RUN_EXPIRE;
  }
  snprintf(code, code_size, "%s", g_cur.fail_run_code);
  pthread_mutex_unlock(&g_mu);
  return r;
}

int sfault_take_apply_fail(const char *route) {
  static const int rate_statuses[] = {500, 502, 0};
  static unsigned rate_next;
  int st = -1, creating = 0;
  pthread_mutex_lock(&g_mu);
  for (int i = 0; i < SFAULT_APPLY_ROUTES; i++) {
    if (strcmp(apply_routes[i], route) != 0) continue;
    creating = 1;
    if (g_cur.apply_fail[i].n <= 0) break;
    g_cur.apply_fail[i].n--;
    st = g_cur.apply_fail[i].status;
    break;
  }
  /* The rate (the chaos test's form) cycles through the three outcomes a
   * gateway gives a client whose request was applied. */
  if (st < 0 && creating && g_cur.rate_apply_fail > 0 && draw() < g_cur.rate_apply_fail)
    st = rate_statuses[rate_next++ % 3];
  pthread_mutex_unlock(&g_mu);
  return st;
}

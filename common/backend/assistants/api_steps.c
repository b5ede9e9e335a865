/* api_steps.c -- a run's hosted tool calls from its steps (see api_steps.h). */
#include "api_steps.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NONE ((size_t)-1)

typedef struct call_rec {
  size_t type, id, status, code; /* arena offsets; status / code NONE: absent */
  size_t item0, nitems;
} call_rec;

/* A file_search result (a file_id, b file_name, c text) or a code
 * interpreter output (a type, b logs, c file_id). */
typedef struct item_rec {
  size_t a, b, c;
  double score;
} item_rec;

void api_steps_init(api_steps *s, size_t max_bytes) {
  buf_init(&s->arena, max_bytes);
  buf_init(&s->calls, API_STEPS_MAX_CALLS * sizeof(call_rec));
  buf_init(&s->items, API_STEPS_MAX_ITEMS * sizeof(item_rec));
  s->built = NULL;
}

void api_steps_free(api_steps *s) {
  buf_free(&s->arena);
  buf_free(&s->calls);
  buf_free(&s->items);
  free(s->built);
  s->built = NULL;
}

static const cJSON *get(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *get_str(const cJSON *o, const char *k) { return cJSON_GetStringValue(get(o, k)); }

/* buf frees its contents past max: check first, so that a call that does
 * not fit leaves the earlier ones alone. */
static int append(buf *b, const void *p, size_t n) {
  if (n > b->max - b->len) return AW_ETOOBIG;
  return buf_append(b, p, n);
}

/* s (NULL: NONE) into the arena. */
static int put(api_steps *s, const char *str, size_t *off) {
  if (!str) {
    *off = NONE;
    return AW_OK;
  }
  *off = s->arena.len;
  return append(&s->arena, str, strlen(str) + 1);
}

static int add_result(api_steps *s, const cJSON *r, call_rec *c) {
  const char *fid = get_str(r, "file_id");
  if (!fid) return AW_OK; /* not a result the contract can name */
  item_rec it = {.score = 0};
  const cJSON *sc = get(r, "score");
  if (cJSON_IsNumber(sc) && isfinite(sc->valuedouble)) it.score = sc->valuedouble;
  /* content: [{type: text, text}] when asked with include[]; the first
   * text is the matched chunk. */
  const char *text = NULL;
  const cJSON *content = get(r, "content"), *ct;
  if (!cJSON_IsArray(content)) content = NULL;
  cJSON_ArrayForEach(ct, content) {
    if ((text = get_str(ct, "text"))) break;
  }
  const char *name = get_str(r, "file_name");
  int rc;
  if ((rc = put(s, fid, &it.a)) || (rc = put(s, name ? name : "", &it.b)) || (rc = put(s, text, &it.c)))
    return rc;
  c->nitems++;
  return append(&s->items, &it, sizeof it);
}

static int add_output(api_steps *s, const cJSON *o, call_rec *c) {
  const char *type = get_str(o, "type");
  item_rec it = {.b = NONE, .c = NONE};
  int rc;
  if (type && !strcmp(type, "logs")) {
    const char *logs = get_str(o, "logs");
    if (!logs) return AW_OK;
    if ((rc = put(s, "logs", &it.a)) || (rc = put(s, logs, &it.b))) return rc;
  } else if (type && !strcmp(type, "image")) {
    const char *fid = get_str(get(o, "image"), "file_id");
    if (!fid) return AW_OK;
    if ((rc = put(s, "image", &it.a)) || (rc = put(s, fid, &it.c))) return rc;
  } else {
    return AW_OK;
  }
  c->nitems++;
  return append(&s->items, &it, sizeof it);
}

/* One tool call of a tool_calls step: all of it or nothing. */
static int add_call(api_steps *s, const cJSON *tc, const char *status) {
  const char *type = get_str(tc, "type"), *id = get_str(tc, "id");
  int fs = type && !strcmp(type, "file_search"), ci = type && !strcmp(type, "code_interpreter");
  if ((!fs && !ci) || !id) return AW_OK; /* functions: in the turn's tool_calls */
  if (s->calls.len + sizeof(call_rec) > s->calls.max) return AW_ETOOBIG;
  size_t arena0 = s->arena.len, items0 = s->items.len;
  call_rec c = {.item0 = s->items.len / sizeof(item_rec), .code = NONE};
  int rc = put(s, type, &c.type);
  if (!rc) rc = put(s, id, &c.id);
  if (!rc) rc = put(s, status, &c.status);
  const cJSON *det = get(tc, type), *it;
  if (!rc && ci) rc = put(s, get_str(det, "input"), &c.code);
  const cJSON *arr = get(det, fs ? "results" : "outputs");
  if (!cJSON_IsArray(arr)) arr = NULL;
  cJSON_ArrayForEach(it, arr) {
    if (rc) break;
    rc = fs ? add_result(s, it, &c) : add_output(s, it, &c);
  }
  if (!rc) rc = append(&s->calls, &c, sizeof c);
  if (rc) {
    /* Roll back to before this call (append never freed anything). */
    s->arena.len = arena0;
    s->items.len = items0;
    if (s->arena.data) s->arena.data[arena0] = '\0';
    if (s->items.data) s->items.data[items0] = '\0';
  }
  return rc;
}

int api_steps_add_page(api_steps *s, const cJSON *page, char last[API_ID_MAX]) {
  last[0] = '\0';
  const cJSON *data = get(page, "data"), *st;
  if (!cJSON_IsArray(data)) return AW_EPARSE;
  free(s->built);
  s->built = NULL;
  cJSON_ArrayForEach(st, data) {
    const char *sid = get_str(st, "id");
    if (sid && strlen(sid) < API_ID_MAX) memcpy(last, sid, strlen(sid) + 1);
    const char *type = get_str(st, "type");
    if (!type || strcmp(type, "tool_calls")) continue;
    const cJSON *calls = get(get(st, "step_details"), "tool_calls"), *tc;
    const char *status = get_str(st, "status");
    if (!cJSON_IsArray(calls)) calls = NULL;
    cJSON_ArrayForEach(tc, calls) {
      int rc = add_call(s, tc, status);
      if (rc) return rc;
    }
  }
  return AW_OK;
}

size_t api_steps_count(const api_steps *s) { return s->calls.len / sizeof(call_rec); }

int api_steps_build(api_steps *s, const contract_step **steps, size_t *n) {
  size_t nc = api_steps_count(s), ni = s->items.len / sizeof(item_rec);
  free(s->built);
  s->built = NULL;
  *steps = NULL;
  *n = 0;
  if (!nc) return AW_OK;
  /* One allocation: the steps, then as many result and output slots as
   * there are items (each item is one or the other). */
  size_t sz = nc * sizeof(contract_step) + ni * (sizeof(contract_step_result) + sizeof(contract_step_output));
  char *mem = calloc(1, sz);
  if (!mem) return AW_ENOMEM;
  contract_step *os = (contract_step *)mem;
  contract_step_result *res = (contract_step_result *)(os + nc);
  contract_step_output *out = (contract_step_output *)(res + ni);
  const char *ar = s->arena.data;
  const call_rec *cr = (const call_rec *)s->calls.data;
  const item_rec *ir = (const item_rec *)s->items.data;
#define STR(off) ((off) == NONE ? NULL : ar + (off))
  for (size_t i = 0; i < nc; i++) {
    const call_rec *c = &cr[i];
    contract_step *o = &os[i];
    o->type = ar + c->type;
    o->id = ar + c->id;
    o->status = STR(c->status);
    if (!strcmp(o->type, "file_search")) {
      contract_step_result *r = res + c->item0;
      for (size_t k = 0; k < c->nitems; k++) {
        const item_rec *it = &ir[c->item0 + k];
        r[k] = (contract_step_result){.file_id = ar + it->a, .filename = ar + it->b, .score = it->score,
                                      .text = STR(it->c)};
      }
      o->results = c->nitems ? r : NULL;
      o->nresults = c->nitems;
    } else {
      contract_step_output *p = out + c->item0;
      for (size_t k = 0; k < c->nitems; k++) {
        const item_rec *it = &ir[c->item0 + k];
        p[k] = (contract_step_output){.type = ar + it->a, .logs = STR(it->b), .file_id = STR(it->c)};
      }
      o->code = c->code == NONE ? "" : ar + c->code;
      o->outputs = c->nitems ? p : NULL;
      o->noutputs = c->nitems;
    }
  }
#undef STR
  s->built = mem;
  *steps = os;
  *n = nc;
  return AW_OK;
}

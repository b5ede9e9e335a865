/* contract_usage.c -- the usage record (see contract_usage.h and
 * schemas/README.md, "usage").
 *
 * Design notes:
 *  - The record is a flat map of strings, integers and one bool, so the
 *    decoder is a cursor over the bytes, as in contract_tool.c: the whole
 *    value is first walked by the allocation-free scanner (mpu_skip:
 *    structure, depth, no trailing bytes), then the known top-level keys
 *    are picked out, then one malloc holds the struct and its strings.
 *    Nothing is allocated from a count the input declares.
 *  - The encoder checks every rule the decoder checks before writing a
 *    byte, so a record the worker produced always decodes: a bad model name
 *    from an API is the caller's to replace (worker/outbox/usage.c), not
 *    something to publish and let consumers choke on.
 *  - Field order on the wire is the schema's; keys added to v1 later must
 *    be optional on decode, like the other messages'.
 */
#include "contract_usage.h"
#include "contract_dctx.h"
#include "msgpack_util.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char CODE_MALFORMED[] = "malformed_record";
static const char CODE_MISSING[] = "missing_field";
static const char CODE_INVALID[] = "invalid_field";
static const char CODE_VERSION[] = "unsupported_version";
static const char CODE_TOO_LARGE[] = "record_too_large";
static const char CODE_INTERNAL[] = "internal_error";

static const char *const BACKENDS[] = {"assistants", "responses", "chat"};
static const char *const STATUSES[] = {"completed", "incomplete", "failed", "cancelled", "expired"};

static bool one_of(const char *s, size_t n, const char *const *set, size_t nset) {
  for (size_t i = 0; i < nset; i++)
    if (strlen(set[i]) == n && memcmp(set[i], s, n) == 0) return true;
  return false;
}

static bool str_ok(const char *s, size_t min, size_t max) {
  if (!s) return false;
  size_t n = strlen(s); /* a C string holds no NUL */
  return n >= min && n <= max && mpu_utf8_valid(s, n);
}

/* The order of the keys on the wire and in the decoder's table. */
enum {
  K_V, K_EVENT_ID, K_CONVERSATION_ID, K_TENANT, K_ASSISTANT, K_MODEL, K_BACKEND, K_STATUS,
  K_INPUT, K_OUTPUT, K_CACHED, K_REASONING, K_TOTAL, K_REPORTED, K_ROUNDS, K_CALLS,
  K_STARTED, K_COMPLETED, K_DURATION, K_COUNT
};
static const char *const KEYS[K_COUNT] = {
    "v", "event_id", "conversation_id", "tenant", "assistant", "model", "backend", "status",
    "input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "total_tokens", "tokens_reported",
    "tool_rounds", "tool_calls", "started_ms", "completed_ms", "duration_ms"};

/* ---- encoding ---------------------------------------------------------------------- */

static void e_key(mpu_enc *e, const char *k) {
  size_t n = strlen(k);
  (void)msgpack_pack_str(&e->pk, n);
  (void)msgpack_pack_str_body(&e->pk, k, n);
}

static void e_str(mpu_enc *e, const char *k, const char *v) {
  e_key(e, k);
  e_key(e, v);
}

static void e_int(mpu_enc *e, const char *k, int64_t v) {
  e_key(e, k);
  (void)msgpack_pack_int64(&e->pk, v);
}

int cusage_encode(const cusage_record *r, buf *out) {
  if (!r || !out) return AW_EINVAL;
  if (!str_ok(r->event_id, 1, CUSAGE_MAX_EVENT_ID) || !str_ok(r->conversation_id, 1, CUSAGE_MAX_CONVERSATION_ID) ||
      (r->tenant && !str_ok(r->tenant, 1, CUSAGE_MAX_TENANT)) || !str_ok(r->assistant, 1, CUSAGE_MAX_ASSISTANT) ||
      !str_ok(r->model, 1, CUSAGE_MAX_MODEL))
    return AW_EINVAL;
  if (!r->backend || !one_of(r->backend, strlen(r->backend), BACKENDS, 3) || !r->status ||
      !one_of(r->status, strlen(r->status), STATUSES, 5))
    return AW_EINVAL;
  const int64_t nums[] = {r->input_tokens, r->output_tokens, r->cached_tokens, r->reasoning_tokens,
                          r->total_tokens,  r->tool_rounds,   r->tool_calls,    r->started_ms,
                          r->completed_ms};
  for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++)
    if (nums[i] < 0) return AW_EINVAL;
  if (r->cached_tokens > r->input_tokens || r->reasoning_tokens > r->output_tokens ||
      r->completed_ms < r->started_ms)
    return AW_EINVAL;

  mpu_enc e;
  mpu_enc_init(&e, out);
  (void)msgpack_pack_map(&e.pk, K_COUNT - (r->tenant ? 0 : 1));
  e_int(&e, KEYS[K_V], CUSAGE_VERSION);
  e_str(&e, KEYS[K_EVENT_ID], r->event_id);
  e_str(&e, KEYS[K_CONVERSATION_ID], r->conversation_id);
  if (r->tenant) e_str(&e, KEYS[K_TENANT], r->tenant);
  e_str(&e, KEYS[K_ASSISTANT], r->assistant);
  e_str(&e, KEYS[K_MODEL], r->model);
  e_str(&e, KEYS[K_BACKEND], r->backend);
  e_str(&e, KEYS[K_STATUS], r->status);
  e_int(&e, KEYS[K_INPUT], r->input_tokens);
  e_int(&e, KEYS[K_OUTPUT], r->output_tokens);
  e_int(&e, KEYS[K_CACHED], r->cached_tokens);
  e_int(&e, KEYS[K_REASONING], r->reasoning_tokens);
  e_int(&e, KEYS[K_TOTAL], r->total_tokens);
  e_key(&e, KEYS[K_REPORTED]);
  if (r->tokens_reported) (void)msgpack_pack_true(&e.pk);
  else (void)msgpack_pack_false(&e.pk);
  e_int(&e, KEYS[K_ROUNDS], r->tool_rounds);
  e_int(&e, KEYS[K_CALLS], r->tool_calls);
  e_int(&e, KEYS[K_STARTED], r->started_ms);
  e_int(&e, KEYS[K_COMPLETED], r->completed_ms);
  e_int(&e, KEYS[K_DURATION], r->completed_ms - r->started_ms);
  return e.err;
}

/* ---- decoding ---------------------------------------------------------------------- */

typedef struct slot {
  bool seen, present;
  size_t off; /* where the value starts */
  mpu_head h;
} slot;

/* The bounds of each string key (0 max: not a string). */
static const size_t STR_MAX[K_COUNT] = {
    [K_EVENT_ID] = CUSAGE_MAX_EVENT_ID, [K_CONVERSATION_ID] = CUSAGE_MAX_CONVERSATION_ID,
    [K_TENANT] = CUSAGE_MAX_TENANT,     [K_ASSISTANT] = CUSAGE_MAX_ASSISTANT,
    [K_MODEL] = CUSAGE_MAX_MODEL,       [K_BACKEND] = 16,
    [K_STATUS] = 16};

static int want_int(contract_dctx *c, const slot *s, int k, int64_t *out) {
  if (!s->present) return contract_dfail(c, AW_EINVAL, CODE_MISSING, "missing field %s", KEYS[k]);
  if (s->h.kind != MPU_INT || s->h.neg || s->h.u > (uint64_t)INT64_MAX)
    return contract_dfail(c, AW_EINVAL, CODE_INVALID, "field %s must be an integer >= 0", KEYS[k]);
  *out = (int64_t)s->h.u;
  return AW_OK;
}

int cusage_decode(const void *data, size_t len, cusage_record **out, const char **err_code, char *errstr,
                  size_t errstr_size) {
  static const char *unused_code;
  contract_dctx c = {.err_code = err_code ? err_code : &unused_code, .errstr = errstr, .errstr_size = errstr_size};
  *c.err_code = NULL;
  if (errstr && errstr_size) errstr[0] = '\0';
  if (!out) return AW_EINVAL;
  *out = NULL;
  if (!data && len) return contract_dfail(&c, AW_EPARSE, CODE_MALFORMED, "no data");
  if (len > CUSAGE_MAX_RECORD)
    return contract_dfail(&c, AW_ETOOBIG, CODE_TOO_LARGE, "record is %zu bytes, at most %d", len, CUSAGE_MAX_RECORD);
  const uint8_t *p = data;
  size_t end = 0;
  if (mpu_skip(p, len, &end) || end != len)
    return contract_dfail(&c, AW_EPARSE, CODE_MALFORMED, "not exactly one well-formed msgpack value");
  size_t off = 0;
  mpu_head top;
  (void)mpu_read(p, len, &off, &top);
  if (top.kind != MPU_MAP) return contract_dfail(&c, AW_EPARSE, CODE_MALFORMED, "the record is not a map");

  slot s[K_COUNT];
  memset(s, 0, sizeof s);
  for (uint64_t i = 0; i < top.n; i++) {
    size_t koff = off;
    mpu_head k;
    if (mpu_skip(p, len, &off) || mpu_read(p, len, &koff, &k)) return contract_dfail(&c, AW_EPARSE, CODE_MALFORMED, "truncated");
    size_t voff = off;
    if (mpu_skip(p, len, &off)) return contract_dfail(&c, AW_EPARSE, CODE_MALFORMED, "truncated");
    if (k.kind != MPU_STR) continue;
    for (int j = 0; j < K_COUNT; j++) {
      if (strlen(KEYS[j]) != k.n || memcmp(KEYS[j], k.body, (size_t)k.n) != 0) continue;
      if (s[j].seen) return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "duplicate key %s", KEYS[j]);
      s[j].seen = true;
      s[j].off = voff;
      (void)mpu_read(p, len, &voff, &s[j].h);
      s[j].present = s[j].h.kind != MPU_NIL;
      break;
    }
  }

  if (!s[K_V].present) return contract_dfail(&c, AW_EINVAL, CODE_MISSING, "missing field v");
  if (s[K_V].h.kind != MPU_INT || s[K_V].h.neg || s[K_V].h.u != CUSAGE_VERSION)
    return contract_dfail(&c, AW_EINVAL, CODE_VERSION, "unsupported version (expected %d)", CUSAGE_VERSION);
  size_t strbytes = 0;
  for (int j = 0; j < K_COUNT; j++) {
    if (!STR_MAX[j]) continue;
    if (!s[j].present) {
      if (j == K_TENANT) continue;
      return contract_dfail(&c, AW_EINVAL, CODE_MISSING, "missing field %s", KEYS[j]);
    }
    const mpu_head *h = &s[j].h;
    if (h->kind != MPU_STR) return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "field %s must be a string", KEYS[j]);
    if (h->n < 1 || h->n > STR_MAX[j])
      return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "field %s must be 1..%zu bytes", KEYS[j], STR_MAX[j]);
    if (memchr(h->body, 0, (size_t)h->n) || !mpu_utf8_valid((const char *)h->body, (size_t)h->n))
      return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "field %s is not valid UTF-8 without NUL", KEYS[j]);
    strbytes += (size_t)h->n + 1;
  }
  if (!one_of((const char *)s[K_BACKEND].h.body, (size_t)s[K_BACKEND].h.n, BACKENDS, 3))
    return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "field backend must be assistants, responses or chat");
  if (!one_of((const char *)s[K_STATUS].h.body, (size_t)s[K_STATUS].h.n, STATUSES, 5))
    return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "field status must be completed, incomplete, failed, cancelled or expired");

  cusage_record r;
  memset(&r, 0, sizeof r);
  int64_t *nums[K_COUNT] = {
      [K_INPUT] = &r.input_tokens, [K_OUTPUT] = &r.output_tokens, [K_CACHED] = &r.cached_tokens,
      [K_REASONING] = &r.reasoning_tokens, [K_TOTAL] = &r.total_tokens, [K_ROUNDS] = &r.tool_rounds,
      [K_CALLS] = &r.tool_calls, [K_STARTED] = &r.started_ms, [K_COMPLETED] = &r.completed_ms,
      [K_DURATION] = &r.duration_ms};
  for (int j = 0; j < K_COUNT; j++) {
    if (!nums[j]) continue;
    int rc = want_int(&c, &s[j], j, nums[j]);
    if (rc) return rc;
  }
  if (!s[K_REPORTED].present) return contract_dfail(&c, AW_EINVAL, CODE_MISSING, "missing field tokens_reported");
  if (s[K_REPORTED].h.kind != MPU_BOOL)
    return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "field tokens_reported must be a boolean");
  r.tokens_reported = p[s[K_REPORTED].off] == 0xc3; /* true; 0xc2 false */
  if (r.cached_tokens > r.input_tokens)
    return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "cached_tokens exceeds input_tokens");
  if (r.reasoning_tokens > r.output_tokens)
    return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "reasoning_tokens exceeds output_tokens");

  cusage_record *o = malloc(sizeof *o + strbytes);
  if (!o) return contract_dfail(&c, AW_ENOMEM, CODE_INTERNAL, "out of memory");
  *o = r;
  char *w = (char *)(o + 1);
  const char **dst[K_COUNT] = {[K_EVENT_ID] = &o->event_id,   [K_CONVERSATION_ID] = &o->conversation_id,
                               [K_TENANT] = &o->tenant,       [K_ASSISTANT] = &o->assistant,
                               [K_MODEL] = &o->model,         [K_BACKEND] = &o->backend,
                               [K_STATUS] = &o->status};
  for (int j = 0; j < K_COUNT; j++) {
    if (!STR_MAX[j] || !s[j].present) continue;
    size_t n = (size_t)s[j].h.n;
    memcpy(w, s[j].h.body, n);
    w[n] = '\0';
    *dst[j] = w;
    w += n + 1;
  }
  *out = o;
  return AW_OK;
}

void cusage_free(cusage_record *r) { free(r); }

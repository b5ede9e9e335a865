/* contract_tool.c -- tool request / tool reply messages (see contract_tool.h
 * and schemas/README.md, "Tool calls").
 *
 * Design notes:
 *  - Decoding never asks msgpack-c to unpack.  The messages are flat maps of
 *    strings, so a cursor over the bytes is enough: the whole value is first
 *    walked by the allocation-free scanner of msgpack_util.h (mpu_skip:
 *    structure, depth <= 24, no trailing bytes), then the top-level pairs are
 *    picked out, then one malloc holds the struct and copies of its strings.
 *    Nothing is allocated from a count the input declares.
 *  - The arguments JSON -> msgpack conversion parses with cJSON (see the
 *    comment above ctool_arguments_to_msgpack for what that costs: numbers
 *    are doubles, so arguments_json stays the authority).  Recursion is
 *    bounded by CTOOL_MAX_ARGUMENTS_DEPTH.
 *  - Duplicate member names make the conversion fail (arguments nil): a
 *    msgpack map with two equal keys is read differently by different
 *    libraries.  They are found by sorting each object's keys once it is
 *    complete: O(k log k), not O(k^2), for an object of k members.
 *  - Keys added to v1 later (event_id, round; nil thread_id / run_id on
 *    backends other than Assistants) are optional on decode, so requests of
 *    older workers still decode, and optional on encode, so that everything
 *    that decodes encodes again.
 */
#include "contract_tool.h"
#include "contract_dctx.h"
#include "msgpack_util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <cJSON.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static const char CODE_MISSING[] = "missing_field";
static const char CODE_INVALID[] = "invalid_field";
static const char CODE_VERSION[] = "unsupported_version";
static const char CODE_INTERNAL[] = "internal_error";

/* ---- decoding helpers --------------------------------------------------------- */

/* A known key's value: where it starts and ends; present == false if the key
 * is absent.  A nil value is kept here and counts as absent later. */
typedef struct field {
  const char *name;
  bool seen, present;
  size_t off, end;
  mpu_head h;
} field;

/* Pick the known keys out of the map whose header ends at *off (npairs
 * pairs).  The value was already checked by mp_skip, so the walk cannot
 * fail on structure; unknown keys (also non-string ones) are skipped. */
static int collect(contract_dctx *c, const uint8_t *p, size_t len, size_t off, uint64_t npairs, field *f,
                   size_t nf, const char *where) {
  for (uint64_t i = 0; i < npairs; i++) {
    size_t koff = off;
    mpu_head k;
    if (mpu_skip(p, len, &off) || mpu_read(p, len, &koff, &k)) return -1;
    size_t voff = off;
    if (mpu_skip(p, len, &off)) return -1;
    if (k.kind != MPU_STR) continue;
    for (size_t j = 0; j < nf; j++) {
      if (strlen(f[j].name) != k.n || memcmp(f[j].name, k.body, (size_t)k.n)) continue;
      if (f[j].seen) return contract_dfail(c, AW_EINVAL, CODE_INVALID, "duplicate key %s%s", where, f[j].name);
      f[j].seen = true;
      f[j].off = voff;
      f[j].end = off;
      size_t o = voff;
      (void)mpu_read(p, len, &o, &f[j].h);
      f[j].present = f[j].h.kind != MPU_NIL; /* nil counts as absent, but a second copy is a duplicate */
      break;
    }
  }
  return 0;
}

/* Validate a string field; *s / *n are set when present. */
static int want_str(contract_dctx *c, const field *f, const char *where, bool required, size_t min,
                    size_t max, const char *too_long_code, const char **s, size_t *n) {
  *s = NULL;
  *n = 0;
  if (!f->present) {
    if (required) return contract_dfail(c, AW_EINVAL, CODE_MISSING, "missing field %s%s", where, f->name);
    return AW_OK;
  }
  if (f->h.kind != MPU_STR) return contract_dfail(c, AW_EINVAL, CODE_INVALID, "field %s%s must be a string", where, f->name);
  size_t len = (size_t)f->h.n;
  if (len < min) return contract_dfail(c, AW_EINVAL, CODE_INVALID, "field %s%s must not be empty", where, f->name);
  if (len > max) {
    if (too_long_code)
      return contract_dfail(c, AW_ETOOBIG, too_long_code, "field %s%s is %zu bytes, limit %zu", where, f->name, len, max);
    return contract_dfail(c, AW_EINVAL, CODE_INVALID, "field %s%s is %zu bytes, at most %zu allowed", where,
                 f->name, len, max);
  }
  if (memchr(f->h.body, 0, len))
    return contract_dfail(c, AW_EINVAL, CODE_INVALID, "field %s%s contains a NUL byte", where, f->name);
  if (!mpu_utf8_valid((const char *)f->h.body, len))
    return contract_dfail(c, AW_EINVAL, CODE_INVALID, "field %s%s is not valid UTF-8", where, f->name);
  *s = (const char *)f->h.body;
  *n = len;
  return AW_OK;
}

static int want_version(contract_dctx *c, const field *f) {
  if (!f->present) return contract_dfail(c, AW_EINVAL, CODE_MISSING, "missing field v");
  if (f->h.kind != MPU_INT) return contract_dfail(c, AW_EINVAL, CODE_INVALID, "field v must be an integer");
  if (f->h.neg || f->h.u != CTOOL_VERSION) {
    if (f->h.neg)
      return contract_dfail(c, AW_EINVAL, CODE_VERSION, "unsupported version %lld (this side speaks %d)",
                   (long long)(int64_t)f->h.u, CTOOL_VERSION);
    return contract_dfail(c, AW_EINVAL, CODE_VERSION, "unsupported version %llu (this side speaks %d)",
                 (unsigned long long)f->h.u, CTOOL_VERSION);
  }
  return AW_OK;
}

/* Common start of both decoders: size bound, one complete map, no trailing
 * bytes.  On success *off is just past the map header. */
static int open_map(contract_dctx *c, const uint8_t *p, size_t len, size_t max, const char *what,
                    const char *malformed, const char *too_large, size_t *off, uint64_t *npairs) {
  if (!p && len) return contract_dfail(c, AW_EINVAL, malformed, "no data");
  if (len > max) return contract_dfail(c, AW_ETOOBIG, too_large, "%s is %zu bytes, limit %zu", what, len, max);
  size_t end = 0;
  if (mpu_skip(p, len, &end))
    return contract_dfail(c, AW_EPARSE, malformed, "not a complete msgpack value (or nested deeper than %d)", MPU_MAX_DEPTH);
  if (end != len)
    return contract_dfail(c, AW_EPARSE, malformed, "%zu trailing bytes after the %s map", len - end, what);
  mpu_head h;
  *off = 0;
  if (mpu_read(p, len, off, &h) || h.kind != MPU_MAP)
    return contract_dfail(c, AW_EPARSE, malformed, "%s is not a msgpack map", what);
  *npairs = h.n;
  return AW_OK;
}

/* Bump allocator over the one allocation of a decoded struct. */
typedef struct arena {
  char *p;
} arena;

static const char *arena_str(arena *a, const char *s, size_t n) {
  if (!s) return NULL;
  char *d = a->p;
  if (n) memcpy(d, s, n);
  d[n] = '\0';
  a->p += n + 1;
  return d;
}

/* ---- encoding helpers ---------------------------------------------------------- */

/* After buf frees itself on ETOOBIG a later, smaller append would succeed
 * into the emptied buffer; the sticky err prevents that. */
static void e_key(mpu_enc *e, const char *k) { (void)msgpack_pack_str_with_body(&e->pk, k, strlen(k)); }
static void e_int(mpu_enc *e, int64_t v) { (void)msgpack_pack_int64(&e->pk, v); }

/* A string, invalid UTF-8 replaced by U+FFFD and, when max is not 0, cut at
 * max bytes on a character boundary. */
static void e_text(mpu_enc *e, const char *s, size_t n, size_t max) {
  if (e->err) return;
  char *tmp = NULL;
  if (n && !mpu_utf8_valid(s, n)) {
    if (n > (SIZE_MAX - 1) / 3 || !(tmp = malloc(n * 3 + 1))) {
      e->err = AW_ENOMEM;
      return;
    }
    const unsigned char *u = (const unsigned char *)s;
    size_t j = 0;
    for (size_t i = 0, k; i < n; i += k) {
      k = mpu_utf8_seq(u + i, n - i);
      if (k) {
        memcpy(tmp + j, u + i, k);
        j += k;
      } else {
        memcpy(tmp + j, "\xEF\xBF\xBD", 3);
        j += 3;
        k = 1;
      }
    }
    s = tmp;
    n = j;
  }
  if (max && n > max) {
    n = max;
    while (n && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
  }
  (void)msgpack_pack_str_with_body(&e->pk, s, n);
  free(tmp);
}

static void e_id(mpu_enc *e, const char *s) { e_text(e, s, strlen(s), 0); }
static void e_id_or_nil(mpu_enc *e, const char *s) {
  if (s) e_id(e, s);
  else (void)msgpack_pack_nil(&e->pk);
}

/* An id the decoder will accept: 1..max bytes of UTF-8 without NUL. */
static bool id_ok(const char *s, size_t max) {
  if (!s) return false;
  size_t n = strlen(s);
  return n >= 1 && n <= max && mpu_utf8_valid(s, n);
}

/* ---- arguments: JSON -> msgpack ---------------------------------------------- */

/* The model's text is parsed with cJSON, never with a parser of our own.
 * What that costs, on purpose: cJSON keeps numbers as doubles, so integers
 * are exact up to 2^53 (the range JSON producers guarantee anyway) and
 * written as msgpack ints; other numbers, and integers beyond 2^53, are
 * float64, and "2.0" cannot be told from "2".  cJSON also accepts a few
 * non-RFC spellings (leading zeros, "1.").  The exact text always travels
 * in arguments_json, which is the authority; `arguments` is a convenience.
 * Refused (AW_EPARSE): anything but one object, duplicate member names in
 * one object (ambiguous for the receiving service), non-finite numbers,
 * "\u0000" (cJSON would silently cut the string there), invalid UTF-8,
 * nesting deeper than CTOOL_MAX_ARGUMENTS_DEPTH. */

#define EXACT_INT_LIMIT 9007199254740992.0 /* 2^53 */

static int name_cmp(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Are the member names of obj unique?  Sorting a copy of the name pointers
 * keeps this O(n log n) for the large objects a model could write. */
static int names_unique(const cJSON *obj, int n) {
  if (n < 2) return 1;
  const char **names = malloc((size_t)n * sizeof *names);
  if (!names) return -1;
  int i = 0, ok = 1;
  for (const cJSON *it = obj->child; it; it = it->next) names[i++] = it->string;
  qsort(names, (size_t)n, sizeof *names, name_cmp);
  for (i = 1; i < n && ok; i++) ok = strcmp(names[i - 1], names[i]) != 0;
  free(names);
  return ok;
}

static int pack_json(mpu_enc *e, const cJSON *v, int depth) {
  if (depth > CTOOL_MAX_ARGUMENTS_DEPTH) return AW_EPARSE;
  if (cJSON_IsObject(v) || cJSON_IsArray(v)) {
    int n = cJSON_GetArraySize(v);
    if (cJSON_IsObject(v)) {
      int u = names_unique(v, n);
      if (u < 0) return AW_ENOMEM;
      if (!u) return AW_EPARSE;
      (void)msgpack_pack_map(&e->pk, (size_t)n);
    } else {
      (void)msgpack_pack_array(&e->pk, (size_t)n);
    }
    for (const cJSON *it = v->child; it; it = it->next) {
      if (cJSON_IsObject(v)) {
        size_t kl = strlen(it->string);
        if (!mpu_utf8_valid(it->string, kl)) return AW_EPARSE;
        (void)msgpack_pack_str_with_body(&e->pk, it->string, kl);
      }
      int rc = pack_json(e, it, depth + 1);
      if (rc) return rc;
    }
    return AW_OK;
  }
  if (cJSON_IsString(v)) {
    size_t n = strlen(v->valuestring);
    if (!mpu_utf8_valid(v->valuestring, n)) return AW_EPARSE;
    (void)msgpack_pack_str_with_body(&e->pk, v->valuestring, n);
  } else if (cJSON_IsNumber(v)) {
    double d = v->valuedouble;
    if (!isfinite(d)) return AW_EPARSE;
    if (d == floor(d) && fabs(d) <= EXACT_INT_LIMIT) (void)msgpack_pack_int64(&e->pk, (int64_t)d);
    else (void)msgpack_pack_double(&e->pk, d);
  } else if (cJSON_IsBool(v)) {
    if (cJSON_IsTrue(v)) (void)msgpack_pack_true(&e->pk);
    else (void)msgpack_pack_false(&e->pk);
  } else if (cJSON_IsNull(v)) {
    (void)msgpack_pack_nil(&e->pk);
  } else {
    return AW_EPARSE;
  }
  return AW_OK;
}

int ctool_arguments_to_msgpack(const char *json, size_t len, buf *out) {
  if (!out) return AW_EINVAL;
  if (!json || memchr(json, '\0', len) || !mpu_utf8_valid(json, len)) return AW_EPARSE;
  /* "\u0000" would be cut short by cJSON: refuse rather than change the value. */
  for (const char *p = json; (p = memmem(p, len - (size_t)(p - json), "\\u0000", 6)); p++)
    return AW_EPARSE;
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
  if (!root) return AW_EPARSE;
  while (end && end < json + len && (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')) end++;
  int rc = (cJSON_IsObject(root) && end == json + len) ? AW_OK : AW_EPARSE;
  buf tmp;
  buf_init(&tmp, out->max - out->len);
  if (rc == AW_OK) {
    mpu_enc e;
    mpu_enc_init(&e, &tmp);
    rc = pack_json(&e, root, 1);
    if (rc == AW_OK && e.err) rc = e.err;
  }
  cJSON_Delete(root);
  if (rc == AW_OK) rc = buf_append(out, tmp.data, tmp.len);
  else if (rc != AW_EPARSE) buf_free(out);
  buf_free(&tmp);
  return rc;
}

/* ---- tool request ------------------------------------------------------------ */

int ctool_request_encode(const ctool_request *r, buf *out) {
  if (!r || !out || !id_ok(r->correlation_id, CTOOL_MAX_CORRELATION_ID) ||
      !id_ok(r->conversation_id, CTOOL_MAX_CONVERSATION_ID) ||
      (r->thread_id && !id_ok(r->thread_id, CTOOL_MAX_OPENAI_ID)) ||
      (r->run_id && !id_ok(r->run_id, CTOOL_MAX_OPENAI_ID)) || !id_ok(r->tool_call_id, CTOOL_MAX_OPENAI_ID) ||
      !id_ok(r->name, CTOOL_MAX_NAME) || !id_ok(r->reply_topic, CTOOL_MAX_TOPIC) || r->deadline_ms < 0 ||
      (r->event_id && !id_ok(r->event_id, CTOOL_MAX_EVENT_ID)) || r->round < 0)
    return AW_EINVAL;
  if (!r->arguments_json || memchr(r->arguments_json, 0, r->arguments_json_len)) return AW_EINVAL;

  buf args;
  buf_init(&args, out->max - out->len);
  int rc = ctool_arguments_to_msgpack(r->arguments_json, r->arguments_json_len, &args);
  if (rc != AW_OK && rc != AW_EPARSE) {
    buf_free(out);
    return rc;
  }
  mpu_enc e;
  mpu_enc_init(&e, out);
  (void)msgpack_pack_map(&e.pk, 11 + (r->event_id != NULL) + (r->round > 0));
  e_key(&e, "v");
  e_int(&e, r->v ? r->v : CTOOL_VERSION);
  e_key(&e, "correlation_id");
  e_id(&e, r->correlation_id);
  e_key(&e, "conversation_id");
  e_id(&e, r->conversation_id);
  e_key(&e, "thread_id");
  e_id_or_nil(&e, r->thread_id);
  e_key(&e, "run_id");
  e_id_or_nil(&e, r->run_id);
  e_key(&e, "tool_call_id");
  e_id(&e, r->tool_call_id);
  e_key(&e, "name");
  e_id(&e, r->name);
  e_key(&e, "arguments");
  if (rc == AW_OK) (void)e.pk.callback(e.pk.data, args.data, args.len); /* already msgpack */
  else (void)msgpack_pack_nil(&e.pk);
  e_key(&e, "arguments_json");
  e_text(&e, r->arguments_json, r->arguments_json_len, 0);
  e_key(&e, "deadline_ms");
  e_int(&e, r->deadline_ms);
  e_key(&e, "reply_topic");
  e_id(&e, r->reply_topic);
  if (r->event_id) {
    e_key(&e, "event_id");
    e_id(&e, r->event_id);
  }
  if (r->round > 0) {
    e_key(&e, "round");
    e_int(&e, r->round);
  }
  buf_free(&args);
  return e.err;
}

enum {
  RQ_V, RQ_CORR, RQ_CONV, RQ_THREAD, RQ_RUN, RQ_CALL, RQ_NAME, RQ_ARGS, RQ_ARGS_JSON, RQ_DEADLINE,
  RQ_TOPIC, RQ_EVENT, RQ_ROUND, RQ_N
};

int ctool_request_decode(const void *data, size_t len, size_t max_bytes, ctool_request **out,
                         const char **err_code, char *errstr, size_t errstr_size) {
  static const char MALFORMED[] = "malformed_request", TOO_LARGE[] = "request_too_large";
  const char *dummy;
  if (!err_code) err_code = &dummy;
  *err_code = NULL;
  if (errstr && errstr_size) errstr[0] = '\0';
  contract_dctx c = {.err_code = err_code, .errstr = errstr, .errstr_size = errstr_size};
  if (!out) return contract_dfail(&c, AW_EINVAL, CODE_INTERNAL, "no output pointer");
  *out = NULL;
  if (!max_bytes) max_bytes = CTOOL_DEFAULT_MAX_REQUEST;
  const uint8_t *p = data;
  size_t off;
  uint64_t npairs;
  int rc = open_map(&c, p, len, max_bytes, "tool request", MALFORMED, TOO_LARGE, &off, &npairs);
  if (rc) return rc;
  field f[RQ_N] = {
      [RQ_V] = {.name = "v"}, [RQ_CORR] = {.name = "correlation_id"},
      [RQ_CONV] = {.name = "conversation_id"}, [RQ_THREAD] = {.name = "thread_id"},
      [RQ_RUN] = {.name = "run_id"}, [RQ_CALL] = {.name = "tool_call_id"}, [RQ_NAME] = {.name = "name"},
      [RQ_ARGS] = {.name = "arguments"}, [RQ_ARGS_JSON] = {.name = "arguments_json"},
      [RQ_DEADLINE] = {.name = "deadline_ms"}, [RQ_TOPIC] = {.name = "reply_topic"},
      [RQ_EVENT] = {.name = "event_id"}, [RQ_ROUND] = {.name = "round"},
  };
  if (collect(&c, p, len, off, npairs, f, RQ_N, "")) {
    if (*err_code) return AW_EINVAL;
    return contract_dfail(&c, AW_EPARSE, MALFORMED, "malformed map");
  }
  if ((rc = want_version(&c, &f[RQ_V]))) return rc;

  /* thread_id / run_id are nil on backends other than Assistants; event_id
   * is absent in requests of older workers. */
  static const struct {
    int idx;
    size_t max;
    bool required;
  } ids[] = {{RQ_CORR, CTOOL_MAX_CORRELATION_ID, true}, {RQ_CONV, CTOOL_MAX_CONVERSATION_ID, true},
             {RQ_THREAD, CTOOL_MAX_OPENAI_ID, false},   {RQ_RUN, CTOOL_MAX_OPENAI_ID, false},
             {RQ_CALL, CTOOL_MAX_OPENAI_ID, true},      {RQ_NAME, CTOOL_MAX_NAME, true},
             {RQ_EVENT, CTOOL_MAX_EVENT_ID, false}};
  const char *s[RQ_N] = {0};
  size_t n[RQ_N] = {0};
  size_t total = sizeof(ctool_request);
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
    int k = ids[i].idx;
    if ((rc = want_str(&c, &f[k], "", ids[i].required, 1, ids[i].max, NULL, &s[k], &n[k]))) return rc;
    if (s[k]) total += n[k] + 1;
  }
  const field *rd = &f[RQ_ROUND];
  if (rd->present && (rd->h.kind != MPU_INT || rd->h.neg || rd->h.u < 1 || rd->h.u > INT_MAX))
    return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "field round must be an integer from 1 to %d", INT_MAX);
  if (f[RQ_ARGS].present && f[RQ_ARGS].h.kind != MPU_MAP)
    return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "field arguments must be a map or nil");
  size_t args_len = f[RQ_ARGS].present ? f[RQ_ARGS].end - f[RQ_ARGS].off : 0;
  if ((rc = want_str(&c, &f[RQ_ARGS_JSON], "", true, 0, max_bytes, TOO_LARGE, &s[RQ_ARGS_JSON], &n[RQ_ARGS_JSON])))
    return rc;
  const field *dl = &f[RQ_DEADLINE];
  if (!dl->present) return contract_dfail(&c, AW_EINVAL, CODE_MISSING, "missing field deadline_ms");
  if (dl->h.kind != MPU_INT || dl->h.neg || dl->h.u > INT64_MAX)
    return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "field deadline_ms must be a non-negative integer (unix ms)");
  if ((rc = want_str(&c, &f[RQ_TOPIC], "", true, 1, CTOOL_MAX_TOPIC, NULL, &s[RQ_TOPIC], &n[RQ_TOPIC])))
    return rc;
  total += n[RQ_ARGS_JSON] + 1 + n[RQ_TOPIC] + 1 + args_len;

  ctool_request *r = malloc(total);
  if (!r) return contract_dfail(&c, AW_ENOMEM, CODE_INTERNAL, "out of memory (%zu bytes)", total);
  memset(r, 0, sizeof *r);
  arena a = {(char *)(r + 1)};
  r->v = CTOOL_VERSION;
  r->correlation_id = arena_str(&a, s[RQ_CORR], n[RQ_CORR]);
  r->conversation_id = arena_str(&a, s[RQ_CONV], n[RQ_CONV]);
  r->thread_id = arena_str(&a, s[RQ_THREAD], n[RQ_THREAD]);
  r->run_id = arena_str(&a, s[RQ_RUN], n[RQ_RUN]);
  r->tool_call_id = arena_str(&a, s[RQ_CALL], n[RQ_CALL]);
  r->name = arena_str(&a, s[RQ_NAME], n[RQ_NAME]);
  r->arguments_json = arena_str(&a, s[RQ_ARGS_JSON], n[RQ_ARGS_JSON]);
  r->arguments_json_len = n[RQ_ARGS_JSON];
  r->reply_topic = arena_str(&a, s[RQ_TOPIC], n[RQ_TOPIC]);
  r->deadline_ms = (int64_t)dl->h.u;
  r->event_id = arena_str(&a, s[RQ_EVENT], n[RQ_EVENT]);
  r->round = rd->present ? (int)rd->h.u : 0;
  if (args_len) {
    memcpy(a.p, p + f[RQ_ARGS].off, args_len);
    r->arguments = a.p;
    r->arguments_len = args_len;
  }
  *out = r;
  return AW_OK;
}

void ctool_request_free(ctool_request *r) { free(r); }

/* ---- tool reply ---------------------------------------------------------------- */

int ctool_reply_encode(const ctool_reply *r, buf *out) {
  if (!r || !out || !id_ok(r->correlation_id, CTOOL_MAX_CORRELATION_ID)) return AW_EINVAL;
  if ((r->output != NULL) == (r->error_code != NULL)) return AW_EINVAL;
  if (r->output && memchr(r->output, 0, r->output_len)) return AW_EINVAL;
  if (r->error_code && !id_ok(r->error_code, CTOOL_MAX_ERROR_CODE)) return AW_EINVAL;
  mpu_enc e;
  mpu_enc_init(&e, out);
  (void)msgpack_pack_map(&e.pk, 3);
  e_key(&e, "v");
  e_int(&e, r->v ? r->v : CTOOL_VERSION);
  e_key(&e, "correlation_id");
  e_id(&e, r->correlation_id);
  if (r->output) {
    e_key(&e, "output");
    e_text(&e, r->output, r->output_len, 0);
  } else {
    const char *m = r->error_message ? r->error_message : "";
    e_key(&e, "error");
    (void)msgpack_pack_map(&e.pk, 2);
    e_key(&e, "code");
    e_id(&e, r->error_code);
    e_key(&e, "message");
    /* Cut rather than refuse: a too-long message must not cost the reply. */
    e_text(&e, m, strlen(m), CTOOL_MAX_ERROR_MESSAGE);
  }
  return e.err;
}

enum { RP_V, RP_CORR, RP_OUTPUT, RP_ERROR, RP_N };

int ctool_reply_decode(const void *data, size_t len, size_t max_output, ctool_reply **out,
                       const char **err_code, char *errstr, size_t errstr_size) {
  static const char MALFORMED[] = "malformed_reply", TOO_LARGE[] = "reply_too_large";
  const char *dummy;
  if (!err_code) err_code = &dummy;
  *err_code = NULL;
  if (errstr && errstr_size) errstr[0] = '\0';
  contract_dctx c = {.err_code = err_code, .errstr = errstr, .errstr_size = errstr_size};
  if (!out) return contract_dfail(&c, AW_EINVAL, CODE_INTERNAL, "no output pointer");
  *out = NULL;
  if (!max_output) max_output = CTOOL_DEFAULT_MAX_OUTPUT;
  const size_t max_total = max_output > SIZE_MAX - CTOOL_REPLY_OVERHEAD ? SIZE_MAX : max_output + CTOOL_REPLY_OVERHEAD;
  const uint8_t *p = data;
  size_t off;
  uint64_t npairs;
  int rc = open_map(&c, p, len, max_total, "tool reply", MALFORMED, TOO_LARGE, &off, &npairs);
  if (rc) return rc;
  field f[RP_N] = {[RP_V] = {.name = "v"}, [RP_CORR] = {.name = "correlation_id"},
                   [RP_OUTPUT] = {.name = "output"}, [RP_ERROR] = {.name = "error"}};
  if (collect(&c, p, len, off, npairs, f, RP_N, "")) {
    if (*err_code) return AW_EINVAL;
    return contract_dfail(&c, AW_EPARSE, MALFORMED, "malformed map");
  }
  if ((rc = want_version(&c, &f[RP_V]))) return rc;
  const char *corr, *output = NULL, *code = NULL, *msg = NULL;
  size_t ncorr, noutput = 0, ncode = 0, nmsg = 0;
  if ((rc = want_str(&c, &f[RP_CORR], "", true, 1, CTOOL_MAX_CORRELATION_ID, NULL, &corr, &ncorr))) return rc;
  if (f[RP_OUTPUT].present && f[RP_ERROR].present)
    return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "a reply has either output or error, not both");
  if (!f[RP_OUTPUT].present && !f[RP_ERROR].present)
    return contract_dfail(&c, AW_EINVAL, CODE_MISSING, "missing field output (or error)");
  if (f[RP_OUTPUT].present) {
    if ((rc = want_str(&c, &f[RP_OUTPUT], "", true, 0, max_output, TOO_LARGE, &output, &noutput))) return rc;
  } else {
    const field *ef = &f[RP_ERROR];
    if (ef->h.kind != MPU_MAP) return contract_dfail(&c, AW_EINVAL, CODE_INVALID, "field error must be a map");
    size_t eoff = ef->off;
    mpu_head eh;
    (void)mpu_read(p, len, &eoff, &eh);
    field g[2] = {{.name = "code"}, {.name = "message"}};
    if (collect(&c, p, len, eoff, eh.n, g, 2, "error.")) {
      if (*err_code) return AW_EINVAL;
      return contract_dfail(&c, AW_EPARSE, MALFORMED, "malformed error map");
    }
    if ((rc = want_str(&c, &g[0], "error.", true, 1, CTOOL_MAX_ERROR_CODE, NULL, &code, &ncode))) return rc;
    if ((rc = want_str(&c, &g[1], "error.", true, 0, CTOOL_MAX_ERROR_MESSAGE, NULL, &msg, &nmsg))) return rc;
  }
  size_t total = sizeof(ctool_reply) + ncorr + 1 + (output ? noutput + 1 : ncode + 1 + nmsg + 1);
  ctool_reply *r = malloc(total);
  if (!r) return contract_dfail(&c, AW_ENOMEM, CODE_INTERNAL, "out of memory (%zu bytes)", total);
  memset(r, 0, sizeof *r);
  arena a = {(char *)(r + 1)};
  r->v = CTOOL_VERSION;
  r->correlation_id = arena_str(&a, corr, ncorr);
  if (output) {
    r->output = arena_str(&a, output, noutput);
    r->output_len = noutput;
  } else {
    r->error_code = arena_str(&a, code, ncode);
    r->error_message = arena_str(&a, msg, nmsg);
  }
  *out = r;
  return AW_OK;
}

void ctool_reply_free(ctool_reply *r) { free(r); }

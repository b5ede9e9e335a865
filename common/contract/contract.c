/* contract.c -- the Kafka message contract in msgpack (see contract.h and
 * schemas/README.md).
 *
 * Design notes:
 *  - Every input is first walked by a small allocation-free scanner
 *    (mp_skip) that checks the structure, bounds the nesting depth and checks
 *    that every declared element count fits in the bytes that remain.  Only
 *    then is msgpack-c asked to unpack.  The reason is that msgpack-c
 *    allocates a container's element array from the declared count before it
 *    reads a single element: a 5-byte "map32 with 4 billion pairs" would ask
 *    for 128 GiB.  After the scan, msgpack-c's zone is bounded by roughly 32
 *    bytes per input byte, and its fixed 32-level stack cannot overflow.
 *  - The same scanner pulls event_id / conversation_id out of events that
 *    fail later (too large, truncated, wrong field types...), without
 *    allocating, so that every rejection can still be correlated.
 *  - A decoded request is one allocation: a first pass validates and sizes,
 *    a second pass (the same code, with an arena) copies.  Sharing the code
 *    keeps the two passes from disagreeing about the size.
 *  - Request kinds: this file reads the envelope every request has (v,
 *    kind, ids, metadata), refuses the keys of another kind than the
 *    request's (one table, REQ_KEYS, says which kind owns which key) and
 *    decodes the message kind; contract_kinds.c decodes the fields of the
 *    conversation requests (history, append, cancel), sharing the context,
 *    arena and string checks declared in contract_kinds.h.
 *  - Files (an image_file part's inline bytes, a message's attachments)
 *    are decoded by contract_files.c, with their own limits and codes.
 *  - The encoders of every message are in contract_encode.c, the JSON view
 *    in contract_json.c: they share nothing with the decoder.
 */
#include "contract.h"
#include "contract_files.h"
#include "contract_kinds.h"
#include "msgpack_util.h"

#include <math.h>
#include <msgpack.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EVENT_ID 128
#define MAX_CONVERSATION_ID 256
#define MAX_ASSISTANT 256
#define MAX_METADATA 16
#define MAX_METADATA_KEY 64
#define MAX_METADATA_VALUE 512
/* Below msgpack-c's own 32-level unpack stack, so our scan is the one that
 * rejects deep input, with a clear message. */

const char contract_code_malformed[] = "malformed_event";
const char contract_code_missing[] = "missing_field";
const char contract_code_invalid[] = "invalid_field";
const char contract_code_version[] = "unsupported_version";
const char contract_code_too_large[] = "event_too_large";
const char contract_code_internal[] = "internal_error";

void contract_limits_default(contract_limits *l) {
  l->max_event_bytes = 1024 * 1024;
  l->max_text_bytes = 256 * 1024;
  l->max_parts = 16;
  l->max_attachments = 10;
  l->max_inline_bytes = 512 * 1024;
  l->conversation_id_optional = 0;
}

/* ---- ids of events that fail to decode -------------------------------------- */

/* Is (p, n) a usable id: 1..max bytes of UTF-8 without NUL, fitting dst? */
static void copy_id(const uint8_t *p, uint64_t n, size_t max, char *dst, size_t dst_size) {
  if (!dst || n == 0 || n > max || n >= dst_size) return;
  if (memchr(p, 0, (size_t)n) || !mpu_utf8_valid((const char *)p, (size_t)n)) return;
  memcpy(dst, p, (size_t)n);
  dst[n] = '\0';
}

/* Best effort: find event_id / conversation_id at the top level of a map
 * without allocating, stopping silently at the first damage.  Only well
 * formed values are copied; a truncated id would mis-correlate. */
static void scan_ids(const uint8_t *p, size_t len, char *event_id, size_t event_id_size,
                     char *conv_id, size_t conv_id_size) {
  size_t off = 0;
  mpu_head h;
  if (mpu_read(p, len, &off, &h) || h.kind != MPU_MAP) return;
  bool have_ev = false, have_conv = false;
  for (uint64_t i = 0; i < h.n; i++) {
    size_t key_off = off;
    mpu_head k;
    if (mpu_read(p, len, &off, &k)) return;
    if (k.kind != MPU_STR) {
      off = key_off;
      if (mpu_skip(p, len, &off)) return;
      if (mpu_skip(p, len, &off)) return;
      continue;
    }
    bool is_ev = k.n == 8 && memcmp(k.body, "event_id", 8) == 0;
    bool is_conv = k.n == 15 && memcmp(k.body, "conversation_id", 15) == 0;
    if ((is_ev && !have_ev) || (is_conv && !have_conv)) {
      size_t val_off = off;
      mpu_head v;
      if (mpu_read(p, len, &off, &v)) return;
      if (v.kind == MPU_STR) {
        if (is_ev) copy_id(v.body, v.n, MAX_EVENT_ID, event_id, event_id_size);
        else copy_id(v.body, v.n, MAX_CONVERSATION_ID, conv_id, conv_id_size);
      }
      if (is_ev) have_ev = true;
      else have_conv = true;
      off = val_off;
    }
    if (mpu_skip(p, len, &off)) return;
    if (have_ev && have_conv) return;
  }
}

contract_kind contract_request_peek_kind(const void *data, size_t len) {
  const uint8_t *p = data;
  size_t off = 0;
  mpu_head h;
  if (!p || mpu_read(p, len, &off, &h) || h.kind != MPU_MAP) return CONTRACT_KIND_MESSAGE;
  for (uint64_t i = 0; i < h.n; i++) {
    mpu_head k;
    size_t key_off = off;
    if (mpu_read(p, len, &off, &k)) return CONTRACT_KIND_MESSAGE;
    if (k.kind == MPU_STR && k.n == 4 && memcmp(k.body, "kind", 4) == 0) {
      mpu_head v;
      if (mpu_read(p, len, &off, &v) || v.kind != MPU_STR) return CONTRACT_KIND_MESSAGE;
      for (unsigned n = 0; n < CONTRACT_KIND_COUNT; n++) {
        const char *name = contract_kind_name((contract_kind)n);
        if (strlen(name) == v.n && memcmp(v.body, name, v.n) == 0) return (contract_kind)n;
      }
      return CONTRACT_KIND_MESSAGE;
    }
    off = key_off;
    if (mpu_skip(p, len, &off) || mpu_skip(p, len, &off)) return CONTRACT_KIND_MESSAGE;
  }
  return CONTRACT_KIND_MESSAGE;
}

/* ---- request decoding ------------------------------------------------------ */

int contract_dfail(contract_dctx *c, int rc, const char *code, const char *fmt, ...) {
  *c->err_code = code;
  if (c->errstr && c->errstr_size) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errstr, c->errstr_size, fmt, ap);
    va_end(ap);
  }
  return rc;
}

/* The arena (contract_kinds.h): with base == NULL it only counts. */
void *contract_arena_alloc(contract_arena *a, size_t n) {
  const size_t al = alignof(max_align_t);
  a->used = (a->used + al - 1) & ~(al - 1);
  void *p = a->base ? a->base + a->used : NULL;
  a->used += n;
  return p;
}

const char *contract_arena_str(contract_arena *a, const char *s, size_t n) {
  char *p = a->base ? a->base + a->used : NULL;
  if (p) {
    if (n) memcpy(p, s, n);
    p[n] = '\0';
  }
  a->used += n + 1;
  return p;
}

bool contract_absent(const msgpack_object *o) { return !o || o->type == MSGPACK_OBJECT_NIL; }

bool contract_key_is(const msgpack_object *k, const char *name) {
  size_t n = strlen(name);
  return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n && memcmp(k->via.str.ptr, name, n) == 0;
}

/* Validate a string field.  Absent (or nil) is missing_field when required,
 * else *out = NULL.  Over max is event_too_large when max is one of the
 * configured limits, invalid_field when it is a fixed contract bound.
 * check_utf8 is off in the copy pass, which only sees validated input. */
int contract_want_str(contract_dctx *c, const msgpack_object *o, const char *name, bool required, size_t min,
                      size_t max, int too_long, bool check_utf8, const char **out, size_t *out_len) {
  *out = NULL;
  if (out_len) *out_len = 0;
  if (contract_absent(o)) {
    if (required) return contract_dfail(c, AW_EINVAL, contract_code_missing, "missing field %s", name);
    return AW_OK;
  }
  if (o->type != MSGPACK_OBJECT_STR)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s must be a string", name);
  size_t n = o->via.str.size;
  if (n < min) return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s must not be empty", name);
  if (n > max) {
    if (too_long == CONTRACT_TOO_LONG_LIMIT)
      return contract_dfail(c, AW_ETOOBIG, contract_code_too_large, "field %s is %zu bytes, limit %zu", name,
                            n, max);
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s is %zu bytes, at most %zu allowed",
                          name, n, max);
  }
  if (check_utf8) {
    if (memchr(o->via.str.ptr, 0, n))
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s contains a NUL byte", name);
    if (!mpu_utf8_valid(o->via.str.ptr, n))
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s is not valid UTF-8", name);
  }
  *out = o->via.str.ptr;
  if (out_len) *out_len = n;
  return AW_OK;
}

typedef struct req_fields {
  const msgpack_object *v, *kind, *event_id, *conversation_id, *assistant, *content, *metadata,
      *instructions, *additional_instructions, *stream, *attachments, *include_steps;
  contract_kind_fields k; /* history, append, cancel: contract_kinds.c */
} req_fields;

/* Which kinds a key belongs to (KIND_ALL: the envelope every kind has).  A
 * key of another kind is refused ("content is not allowed with kind
 * history") rather than ignored: a producer that sends it expects it to do
 * something. */
#define KIND_BIT(k) (1u << (k))
#define KIND_ALL 0u
static const struct {
  const char *name;
  size_t off;
  unsigned kinds;
} REQ_KEYS[] = {
    {"v", offsetof(req_fields, v), KIND_ALL},
    {"kind", offsetof(req_fields, kind), KIND_ALL},
    {"event_id", offsetof(req_fields, event_id), KIND_ALL},
    {"conversation_id", offsetof(req_fields, conversation_id), KIND_ALL},
    {"assistant", offsetof(req_fields, assistant), KIND_ALL}, /* required for a message only */
    {"metadata", offsetof(req_fields, metadata), KIND_ALL},
    {"content", offsetof(req_fields, content), KIND_BIT(CONTRACT_KIND_MESSAGE)},
    {"instructions", offsetof(req_fields, instructions), KIND_BIT(CONTRACT_KIND_MESSAGE)},
    {"additional_instructions", offsetof(req_fields, additional_instructions), KIND_BIT(CONTRACT_KIND_MESSAGE)},
    {"stream", offsetof(req_fields, stream), KIND_BIT(CONTRACT_KIND_MESSAGE)},
    {"attachments", offsetof(req_fields, attachments), KIND_BIT(CONTRACT_KIND_MESSAGE)},
    {"include_steps", offsetof(req_fields, include_steps), KIND_BIT(CONTRACT_KIND_MESSAGE)},
    {"limit", offsetof(req_fields, k.limit), KIND_BIT(CONTRACT_KIND_HISTORY)},
    {"after", offsetof(req_fields, k.after), KIND_BIT(CONTRACT_KIND_HISTORY)},
    {"before", offsetof(req_fields, k.before), KIND_BIT(CONTRACT_KIND_HISTORY)},
    {"order", offsetof(req_fields, k.order), KIND_BIT(CONTRACT_KIND_HISTORY)},
    {"messages", offsetof(req_fields, k.messages), KIND_BIT(CONTRACT_KIND_APPEND)},
    {"target_event_id", offsetof(req_fields, k.target_event_id), KIND_BIT(CONTRACT_KIND_CANCEL)},
};

/* The first present (non-nil) key that kind k does not have, in REQ_KEYS
 * order, so that the error names the same key whatever the map's order. */
static int refuse_other_kinds(contract_dctx *c, const req_fields *f, contract_kind k) {
  for (size_t j = 0; j < sizeof REQ_KEYS / sizeof REQ_KEYS[0]; j++) {
    if (REQ_KEYS[j].kinds == KIND_ALL || (REQ_KEYS[j].kinds & KIND_BIT(k))) continue;
    const msgpack_object *o = *(const msgpack_object *const *)((const char *)f + REQ_KEYS[j].off);
    if (!contract_absent(o))
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "%s is not allowed with kind %s",
                            REQ_KEYS[j].name, contract_kind_name(k));
  }
  return AW_OK;
}

/* Pick the known keys out of the top-level map.  Unknown keys, including
 * non-string ones, are ignored for forward compatibility; a repeated known
 * key is refused because producers and consumers could disagree on which
 * copy counts. */
static int collect_fields(contract_dctx *c, const msgpack_object_map *m, req_fields *f) {
  memset(f, 0, sizeof *f);
  for (uint32_t i = 0; i < m->size; i++) {
    const msgpack_object *k = &m->ptr[i].key;
    for (size_t j = 0; j < sizeof REQ_KEYS / sizeof REQ_KEYS[0]; j++) {
      if (!contract_key_is(k, REQ_KEYS[j].name)) continue;
      const msgpack_object **slot = (const msgpack_object **)((char *)f + REQ_KEYS[j].off);
      if (*slot) return contract_dfail(c, AW_EINVAL, contract_code_invalid, "duplicate key %s",
                                       REQ_KEYS[j].name);
      *slot = &m->ptr[i].val;
      break;
    }
  }
  return AW_OK;
}

static int decode_detail(contract_dctx *c, const msgpack_object *o, const char *name, bool check,
                         contract_arena *a, const char **out) {
  const char *s;
  size_t n;
  int rc = contract_want_str(c, o, name, false, 1, 8, CONTRACT_TOO_LONG_INVALID, check, &s, &n);
  if (rc) {
    if (*c->err_code == contract_code_invalid)
      return contract_dfail(c, AW_EINVAL, contract_code_invalid,
                            "field %s must be \"auto\", \"low\" or \"high\"", name);
    return rc;
  }
  *out = NULL;
  if (!s) return AW_OK;
  if (!((n == 4 && !memcmp(s, "auto", 4)) || (n == 3 && !memcmp(s, "low", 3)) ||
        (n == 4 && !memcmp(s, "high", 4))))
    return contract_dfail(c, AW_EINVAL, contract_code_invalid,
                          "field %s must be \"auto\", \"low\" or \"high\"", name);
  *out = contract_arena_str(a, s, n);
  return AW_OK;
}

/* One element of a content array, named name ("content[2]").  *p is
 * written when p is set (always in the copy pass).  An image_file part has
 * exactly one of file_id and data (inline bytes with their media type and
 * an optional file name: contract_files.c); `data`, `media_type` and
 * `filename` of the other types are unknown keys, ignored as before. */
int contract_decode_part(contract_dctx *c, const msgpack_object *o, const char *name, bool check,
                         contract_arena *a, contract_part *p) {
  if (o->type != MSGPACK_OBJECT_MAP)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s must be a map", name);
  const msgpack_object *type = NULL, *text = NULL, *url = NULL, *file_id = NULL, *detail = NULL, *data = NULL,
                       *media_type = NULL, *filename = NULL;
  for (uint32_t i = 0; i < o->via.map.size; i++) {
    const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
    const msgpack_object **slot = contract_key_is(k, "type") ? &type : contract_key_is(k, "text") ? &text
                                : contract_key_is(k, "url") ? &url : contract_key_is(k, "file_id") ? &file_id
                                : contract_key_is(k, "detail") ? &detail : contract_key_is(k, "data") ? &data
                                : contract_key_is(k, "media_type") ? &media_type
                                : contract_key_is(k, "filename") ? &filename : NULL;
    if (!slot) continue;
    if (*slot) return contract_dfail(c, AW_EINVAL, contract_code_invalid, "duplicate key in %s", name);
    *slot = v;
  }
  char fname[96];
  snprintf(fname, sizeof fname, "%s.type", name);
  const char *t;
  size_t tn;
  int rc = contract_want_str(c, type, fname, true, 1, 32, CONTRACT_TOO_LONG_INVALID, check, &t, &tn);
  if (rc) return rc;
  const size_t max_text = c->lim->max_text_bytes;
  const char *s = NULL, *det = NULL;
  size_t n = 0;
  bool inline_image = false;
  contract_part_type pt;
  if (tn == 4 && !memcmp(t, "text", 4)) {
    pt = CONTRACT_PART_TEXT;
    snprintf(fname, sizeof fname, "%s.text", name);
    rc = contract_want_str(c, text, fname, true, 1, max_text, CONTRACT_TOO_LONG_LIMIT, check, &s, &n);
  } else if (tn == 9 && !memcmp(t, "image_url", 9)) {
    pt = CONTRACT_PART_IMAGE_URL;
    snprintf(fname, sizeof fname, "%s.url", name);
    rc = contract_want_str(c, url, fname, true, 1, max_text, CONTRACT_TOO_LONG_LIMIT, check, &s, &n);
  } else if (tn == 10 && !memcmp(t, "image_file", 10)) {
    pt = CONTRACT_PART_IMAGE_FILE;
    inline_image = !contract_absent(data);
    if (inline_image && !contract_absent(file_id))
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s: exactly one of file_id and data", name);
    if (!inline_image && contract_absent(file_id))
      return contract_dfail(c, AW_EINVAL, contract_code_missing, "missing field %s.file_id (or %s.data)", name,
                            name);
    if (!inline_image && (!contract_absent(media_type) || !contract_absent(filename)))
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s.%s is only for inline data", name,
                            contract_absent(filename) ? "media_type" : "filename");
    snprintf(fname, sizeof fname, "%s.file_id", name);
    if (!inline_image)
      rc = contract_want_str(c, file_id, fname, true, 1, CONTRACT_MAX_FILE_ID, CONTRACT_TOO_LONG_INVALID, check,
                             &s, &n);
  } else if (tn == 4 && !memcmp(t, "file", 4)) {
    pt = CONTRACT_PART_FILE;
    snprintf(fname, sizeof fname, "%s.file_id", name);
    rc = contract_want_str(c, file_id, fname, true, 1, CONTRACT_MAX_FILE_ID, CONTRACT_TOO_LONG_INVALID, check, &s, &n);
  } else {
    return contract_dfail(c, AW_EINVAL, contract_code_invalid,
                          "field %s.type must be \"text\", \"image_url\", \"image_file\" or \"file\"", name);
  }
  if (rc) return rc;
  /* An inline image has no text: text NULL, text_len 0 (contract.h). */
  const char *copy = inline_image ? NULL : contract_arena_str(a, s, n);
  if (pt == CONTRACT_PART_IMAGE_URL || pt == CONTRACT_PART_IMAGE_FILE) {
    snprintf(fname, sizeof fname, "%s.detail", name);
    rc = decode_detail(c, detail, fname, check, a, &det);
    if (rc) return rc;
  }
  contract_part inl = {0};
  if (inline_image) {
    rc = contract_decode_inline_image(c, name, data, media_type, filename, check, a, &inl);
    if (rc) return rc;
  }
  if (p) {
    *p = (contract_part){.type = pt, .text = copy, .text_len = inline_image ? 0 : n, .detail = det,
                         .data = inl.data, .data_len = inl.data_len, .media_type = inl.media_type,
                         .filename = inl.filename};
  }
  return AW_OK;
}

static int decode_content(contract_dctx *c, const msgpack_object *o, bool check, contract_arena *a,
                          contract_request *r) {
  if (contract_absent(o)) return contract_dfail(c, AW_EINVAL, contract_code_missing, "missing field content");
  if (o->type == MSGPACK_OBJECT_STR) {
    const char *s;
    size_t n;
    int rc = contract_want_str(c, o, "content", true, 1, c->lim->max_text_bytes, CONTRACT_TOO_LONG_LIMIT,
                               check, &s, &n);
    if (rc) return rc;
    contract_part *p = contract_arena_alloc(a, sizeof *p);
    const char *copy = contract_arena_str(a, s, n);
    if (p) {
      *p = (contract_part){.type = CONTRACT_PART_TEXT, .text = copy, .text_len = n, .detail = NULL};
      r->parts = p;
      r->nparts = 1;
    }
    return AW_OK;
  }
  if (o->type != MSGPACK_OBJECT_ARRAY)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid,
                          "field content must be a string or an array of parts");
  size_t n = o->via.array.size;
  if (n == 0) return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field content must not be empty");
  if (n > c->lim->max_parts)
    return contract_dfail(c, AW_ETOOBIG, contract_code_too_large, "field content has %zu parts, limit %zu", n,
                          c->lim->max_parts);
  contract_part *parts = contract_arena_alloc(a, n * sizeof *parts);
  for (size_t i = 0; i < n; i++) {
    char name[32];
    snprintf(name, sizeof name, "content[%zu]", i);
    int rc = contract_decode_part(c, &o->via.array.ptr[i], name, check, a, parts ? &parts[i] : NULL);
    if (rc) return rc;
  }
  if (parts) {
    r->parts = parts;
    r->nparts = n;
  }
  return AW_OK;
}

static int decode_metadata(contract_dctx *c, const msgpack_object *o, bool check, contract_arena *a,
                           contract_request *r) {
  if (contract_absent(o)) return AW_OK;
  if (o->type != MSGPACK_OBJECT_MAP)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field metadata must be a map of strings");
  const msgpack_object_map *m = &o->via.map;
  if (m->size > MAX_METADATA)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid,
                          "field metadata has %u pairs, at most %d allowed", (unsigned)m->size, MAX_METADATA);
  if (m->size == 0) return AW_OK;
  contract_kv *kv = contract_arena_alloc(a, m->size * sizeof *kv);
  for (uint32_t i = 0; i < m->size; i++) {
    const char *k, *v;
    size_t kn, vn;
    int rc = contract_want_str(c, &m->ptr[i].key, "metadata key", true, 1, MAX_METADATA_KEY,
                               CONTRACT_TOO_LONG_INVALID, check, &k, &kn);
    if (rc) return rc;
    char name[96];
    snprintf(name, sizeof name, "metadata.%.*s", (int)kn, k);
    /* A nil value is refused too: metadata is str->str, and a nil would be
     * dropped silently on the way to the API. */
    if (m->ptr[i].val.type != MSGPACK_OBJECT_STR)
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s must be a string", name);
    rc = contract_want_str(c, &m->ptr[i].val, name, true, 0, MAX_METADATA_VALUE, CONTRACT_TOO_LONG_INVALID,
                           check, &v, &vn);
    if (rc) return rc;
    if (check) {
      for (uint32_t j = 0; j < i; j++) {
        const msgpack_object_str *pk = &m->ptr[j].key.via.str;
        if (pk->size == kn && !memcmp(pk->ptr, k, kn))
          return contract_dfail(c, AW_EINVAL, contract_code_invalid, "duplicate key in field %s", name);
      }
    }
    const char *kc = contract_arena_str(a, k, kn), *vc = contract_arena_str(a, v, vn);
    if (kv) {
      kv[i].key = kc;
      kv[i].value = vc;
    }
  }
  if (kv) {
    r->metadata = kv;
    r->nmetadata = m->size;
  }
  return AW_OK;
}

/* Validate (a->base == NULL) or copy (a->base set, input already valid). */
static int build_request(contract_dctx *c, const req_fields *f, contract_arena *a) {
  const bool check = a->base == NULL;
  contract_request *r = contract_arena_alloc(a, sizeof *r);
  contract_request dummy;
  if (!r) r = &dummy;
  memset(r, 0, sizeof *r);

  /* The version comes first: a v2 event may legitimately lack v1 fields. */
  if (contract_absent(f->v)) return contract_dfail(c, AW_EINVAL, contract_code_missing, "missing field v");
  if (f->v->type != MSGPACK_OBJECT_POSITIVE_INTEGER && f->v->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field v must be an integer");
  if (f->v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || f->v->via.u64 != CONTRACT_VERSION) {
    if (f->v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
      return contract_dfail(c, AW_EINVAL, contract_code_version,
                            "unsupported version %llu (this worker speaks %d)",
                            (unsigned long long)f->v->via.u64, CONTRACT_VERSION);
    return contract_dfail(c, AW_EINVAL, contract_code_version,
                          "unsupported version %lld (this worker speaks %d)", (long long)f->v->via.i64,
                          CONTRACT_VERSION);
  }
  r->v = CONTRACT_VERSION;
  /* Then the kind: it decides which keys may follow. */
  int rc = contract_kind_decode(c, f->kind, &r->kind);
  if (rc) return rc;
  rc = refuse_other_kinds(c, f, r->kind);
  if (rc) return rc;
  const bool message = r->kind == CONTRACT_KIND_MESSAGE;

  const char *s;
  size_t n;
#define STR_FIELD(field, req, min, max, mode)                                                   \
  do {                                                                                          \
    rc = contract_want_str(c, f->field, #field, req, min, max, mode, check, &s, &n);            \
    if (rc) return rc;                                                                          \
    r->field = s ? contract_arena_str(a, s, n) : NULL;                                          \
  } while (0)
  STR_FIELD(event_id, true, 1, MAX_EVENT_ID, CONTRACT_TOO_LONG_INVALID);
  STR_FIELD(conversation_id, !c->lim->conversation_id_optional, 1, MAX_CONVERSATION_ID,
            CONTRACT_TOO_LONG_INVALID);
  /* Optional for the other kinds, which ignore it; checked all the same. */
  STR_FIELD(assistant, message, 1, MAX_ASSISTANT, CONTRACT_TOO_LONG_INVALID);
  if (message) {
    rc = decode_content(c, f->content, check, a, r);
    if (rc) return rc;
  }
  rc = decode_metadata(c, f->metadata, check, a, r);
  if (rc) return rc;
  /* The keys of another kind are absent (refused above), so these are
   * nil for every kind but the one they belong to. */
  STR_FIELD(instructions, false, 0, c->lim->max_text_bytes, CONTRACT_TOO_LONG_LIMIT);
  STR_FIELD(additional_instructions, false, 0, c->lim->max_text_bytes, CONTRACT_TOO_LONG_LIMIT);
#undef STR_FIELD
  if (!contract_absent(f->stream)) {
    if (f->stream->type != MSGPACK_OBJECT_BOOLEAN)
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field stream must be a boolean");
    r->stream = f->stream->via.boolean ? 1 : 0;
  }
  /* A message's files and steps (nil for the other kinds: refused above). */
  if (!contract_absent(f->include_steps)) {
    if (f->include_steps->type != MSGPACK_OBJECT_BOOLEAN)
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field include_steps must be a boolean");
    r->include_steps = f->include_steps->via.boolean ? 1 : 0;
  }
  rc = contract_attachments_decode(c, f->attachments, check, a, r);
  if (rc) return rc;
  return contract_kind_fields_decode(c, &f->k, check, a, r);
}

int contract_request_decode(const void *data, size_t len, const contract_limits *lim,
                            contract_request **out, const char **err_code, char *event_id,
                            size_t event_id_size, char *conv_id, size_t conv_id_size, char *errstr,
                            size_t errstr_size) {
  contract_limits deflim;
  const char *dummy_code;
  if (!lim) {
    contract_limits_default(&deflim);
    lim = &deflim;
  }
  if (!err_code) err_code = &dummy_code;
  *out = NULL;
  *err_code = NULL;
  if (event_id && event_id_size) event_id[0] = '\0';
  if (conv_id && conv_id_size) conv_id[0] = '\0';
  if (errstr && errstr_size) errstr[0] = '\0';
  contract_dctx c = {.lim = lim, .err_code = err_code, .errstr = errstr, .errstr_size = errstr_size};
  const uint8_t *p = data;
  if (!p && len) return contract_dfail(&c, AW_EINVAL, contract_code_malformed, "no data");

  scan_ids(p, len, event_id, event_id_size, conv_id, conv_id_size);
  if (len > lim->max_event_bytes)
    return contract_dfail(&c, AW_ETOOBIG, contract_code_too_large, "event is %zu bytes, limit %zu", len,
                          lim->max_event_bytes);
  size_t end = 0;
  if (mpu_skip(p, len, &end))
    return contract_dfail(&c, AW_EPARSE, contract_code_malformed,
                          "not a complete msgpack value (or nested deeper than %d)", MPU_MAX_DEPTH);
  if (end != len)
    return contract_dfail(&c, AW_EPARSE, contract_code_malformed, "%zu trailing bytes after the request map",
                          len - end);
  mpu_head h;
  size_t off = 0;
  if (mpu_read(p, len, &off, &h) || h.kind != MPU_MAP)
    return contract_dfail(&c, AW_EPARSE, contract_code_malformed, "request is not a msgpack map");

  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  off = 0;
  msgpack_unpack_return ur = msgpack_unpack_next(&u, (const char *)p, len, &off);
  int rc = AW_OK;
  if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
    rc = contract_dfail(&c, AW_ENOMEM, contract_code_internal, "out of memory unpacking the request");
  } else if (ur != MSGPACK_UNPACK_SUCCESS || u.data.type != MSGPACK_OBJECT_MAP) {
    rc = contract_dfail(&c, AW_EPARSE, contract_code_malformed, "request is not a msgpack map");
  } else {
    req_fields f;
    rc = collect_fields(&c, &u.data.via.map, &f);
    contract_arena a = {NULL, 0};
    if (!rc) rc = build_request(&c, &f, &a);
    if (!rc) {
      a.base = malloc(a.used);
      if (!a.base) {
        rc = contract_dfail(&c, AW_ENOMEM, contract_code_internal, "out of memory (%zu bytes)", a.used);
      } else {
        size_t want = a.used;
        a.used = 0;
        rc = build_request(&c, &f, &a);
        if (rc || a.used != want) { /* cannot happen: same code, same input */
          free(a.base);
          rc = contract_dfail(&c, AW_EFATAL, contract_code_internal, "request sizing mismatch");
        } else {
          *out = (contract_request *)a.base;
        }
      }
    }
  }
  msgpack_unpacked_destroy(&u);
  return rc;
}

void contract_request_free(contract_request *r) { free(r); }

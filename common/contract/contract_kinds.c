/* contract_kinds.c -- the request kinds and the fields of the conversation
 * requests (see contract_kinds.h for why this is its own file, contract.h
 * and schemas/README.md "Conversation requests" for the contract).
 *
 * Design notes:
 *  - contract.c has already read the envelope (v, kind, ids, metadata) and
 *    refused every key of another kind, so this file only sees the keys of
 *    r->kind: history (limit, after, before, order), append (messages),
 *    cancel (target_event_id).  reset and delete have none.
 *  - It runs in both of the decoder's passes (sizing with a NULL arena,
 *    copying with the real one): nothing here may depend on which pass it
 *    is except the writes into r, so the two passes agree on the size.
 *  - Bounds: a page is at most CONTRACT_HISTORY_LIMIT_MAX messages, an
 *    append at most CONTRACT_APPEND_MAX_MESSAGES messages of at most
 *    max_parts text parts of at most max_text_bytes each (the configured
 *    limits, event_too_large, as for a message's content); message ids are
 *    at most MAX_MESSAGE_ID bytes (a fixed bound: invalid_field).  The whole
 *    event is bounded by max_event_bytes before any of this runs.
 *  - Error messages name the field as "<path>: <reason>" (messages[2].role:
 *    must be user or assistant); string checks shared with contract.c keep
 *    their "field <path> ..." wording.
 */
#include "contract_kinds.h"

#include <stdio.h>
#include <string.h>

#define MAX_MESSAGE_ID 256  /* after / before: msg_... ids, or "<event_id>/<n>" on chat */
#define MAX_TARGET_EVENT_ID 128 /* as event_id */

static const char *const KIND_NAMES[CONTRACT_KIND_COUNT] = {
    [CONTRACT_KIND_MESSAGE] = "message", [CONTRACT_KIND_HISTORY] = "history",
    [CONTRACT_KIND_APPEND] = "append",   [CONTRACT_KIND_RESET] = "reset",
    [CONTRACT_KIND_DELETE] = "delete",   [CONTRACT_KIND_CANCEL] = "cancel",
};

const char *contract_kind_name(contract_kind k) {
  return (unsigned)k < CONTRACT_KIND_COUNT ? KIND_NAMES[k] : KIND_NAMES[CONTRACT_KIND_MESSAGE];
}

int contract_kind_decode(contract_dctx *c, const msgpack_object *o, contract_kind *out) {
  *out = CONTRACT_KIND_MESSAGE;
  if (contract_absent(o)) return AW_OK;
  if (o->type == MSGPACK_OBJECT_STR) {
    for (unsigned k = 0; k < CONTRACT_KIND_COUNT; k++) {
      if (contract_key_is(o, KIND_NAMES[k])) {
        *out = (contract_kind)k;
        return AW_OK;
      }
    }
  }
  /* The value is not echoed: it is the producer's bytes, of any length. */
  return contract_dfail(c, AW_EINVAL, contract_code_invalid,
                        "kind: must be message, history, append, reset, delete or cancel");
}

/* ---- history ----------------------------------------------------------------- */

static int decode_history(contract_dctx *c, const contract_kind_fields *f, bool check, contract_arena *a,
                          contract_request *r) {
  long limit = CONTRACT_HISTORY_LIMIT_DEFAULT;
  if (!contract_absent(f->limit)) {
    const msgpack_object *o = f->limit;
    if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER && o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER)
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "limit: must be an integer 1..%d",
                            CONTRACT_HISTORY_LIMIT_MAX);
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER || o->via.u64 < 1 || o->via.u64 > CONTRACT_HISTORY_LIMIT_MAX)
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "limit: must be 1..%d",
                            CONTRACT_HISTORY_LIMIT_MAX);
    limit = (long)o->via.u64;
  }
  const char *after, *before, *order;
  size_t nafter, nbefore, norder;
  int rc = contract_want_str(c, f->after, "after", false, 1, MAX_MESSAGE_ID, CONTRACT_TOO_LONG_INVALID, check,
                             &after, &nafter);
  if (rc) return rc;
  rc = contract_want_str(c, f->before, "before", false, 1, MAX_MESSAGE_ID, CONTRACT_TOO_LONG_INVALID, check,
                         &before, &nbefore);
  if (rc) return rc;
  if (after && before)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "after and before are exclusive");
  rc = contract_want_str(c, f->order, "order", false, 1, 4, CONTRACT_TOO_LONG_INVALID, check, &order, &norder);
  if (rc && *c->err_code != contract_code_invalid) return rc;
  bool asc = order && norder == 3 && !memcmp(order, "asc", 3);
  bool desc = order && norder == 4 && !memcmp(order, "desc", 4);
  if (rc || (order && !asc && !desc))
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "order: must be asc or desc");
  const char *after_copy = after ? contract_arena_str(a, after, nafter) : NULL;
  const char *before_copy = before ? contract_arena_str(a, before, nbefore) : NULL;
  r->limit = limit;
  r->after = after_copy;
  r->before = before_copy;
  r->order_asc = asc ? 1 : 0;
  return AW_OK;
}

/* ---- append ------------------------------------------------------------------ */

/* The content of messages[i]: a string (one text part) or an array of text
 * parts.  parts/nparts are written in the copy pass only. */
static int decode_in_content(contract_dctx *c, const msgpack_object *o, const char *path, bool check,
                             contract_arena *a, contract_in_message *m) {
  char name[64];
  snprintf(name, sizeof name, "%s.content", path);
  if (contract_absent(o)) return contract_dfail(c, AW_EINVAL, contract_code_missing, "missing field %s", name);
  if (o->type == MSGPACK_OBJECT_STR) {
    const char *s;
    size_t n;
    int rc = contract_want_str(c, o, name, true, 1, c->lim->max_text_bytes, CONTRACT_TOO_LONG_LIMIT, check, &s,
                               &n);
    if (rc) return rc;
    contract_part *p = contract_arena_alloc(a, sizeof *p);
    const char *copy = contract_arena_str(a, s, n);
    if (p) {
      *p = (contract_part){.type = CONTRACT_PART_TEXT, .text = copy, .text_len = n, .detail = NULL};
      m->parts = p;
      m->nparts = 1;
    }
    return AW_OK;
  }
  if (o->type != MSGPACK_OBJECT_ARRAY)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "%s: must be a string or an array of text parts",
                          name);
  size_t n = o->via.array.size;
  if (n == 0) return contract_dfail(c, AW_EINVAL, contract_code_invalid, "%s: must not be empty", name);
  if (n > c->lim->max_parts)
    return contract_dfail(c, AW_ETOOBIG, contract_code_too_large, "%s: has %zu parts, limit %zu", name, n,
                          c->lim->max_parts);
  contract_part *parts = contract_arena_alloc(a, n * sizeof *parts);
  for (size_t j = 0; j < n; j++) {
    char pname[80];
    snprintf(pname, sizeof pname, "%s[%zu]", name, j);
    contract_part tmp; /* the sizing pass needs the type too */
    contract_part *p = parts ? &parts[j] : &tmp;
    int rc = contract_decode_part(c, &o->via.array.ptr[j], pname, check, a, p);
    if (rc) return rc;
    /* Images and files are a user's upload to a turn; an appended message
     * is history, which the chat backend keeps as text only. */
    if (p->type != CONTRACT_PART_TEXT)
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "%s.type: only text parts can be appended",
                            pname);
  }
  if (parts) {
    m->parts = parts;
    m->nparts = n;
  }
  return AW_OK;
}

static int decode_in_message(contract_dctx *c, const msgpack_object *o, size_t idx, bool check,
                             contract_arena *a, contract_in_message *m) {
  char path[32];
  snprintf(path, sizeof path, "messages[%zu]", idx);
  if (o->type != MSGPACK_OBJECT_MAP)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "%s: must be a map {role, content}", path);
  const msgpack_object *role = NULL, *content = NULL;
  for (uint32_t i = 0; i < o->via.map.size; i++) {
    const msgpack_object *k = &o->via.map.ptr[i].key;
    const msgpack_object **slot = contract_key_is(k, "role")      ? &role
                                : contract_key_is(k, "content") ? &content
                                                                : NULL;
    if (!slot) continue; /* unknown keys: ignored, as at the top level */
    if (*slot) return contract_dfail(c, AW_EINVAL, contract_code_invalid, "duplicate key in %s", path);
    *slot = &o->via.map.ptr[i].val;
  }
  char name[48];
  snprintf(name, sizeof name, "%s.role", path);
  if (contract_absent(role))
    return contract_dfail(c, AW_EINVAL, contract_code_missing, "missing field %s", name);
  const char *rs = NULL;
  if (contract_key_is(role, "user")) rs = "user";
  else if (contract_key_is(role, "assistant")) rs = "assistant";
  else return contract_dfail(c, AW_EINVAL, contract_code_invalid, "%s: must be user or assistant", name);
  /* The role is one of two constants: point at them, nothing to copy. */
  m->role = rs;
  return decode_in_content(c, content, path, check, a, m);
}

static int decode_append(contract_dctx *c, const contract_kind_fields *f, bool check, contract_arena *a,
                         contract_request *r) {
  const msgpack_object *o = f->messages;
  if (contract_absent(o)) return contract_dfail(c, AW_EINVAL, contract_code_missing, "missing field messages");
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 1 ||
      o->via.array.size > CONTRACT_APPEND_MAX_MESSAGES)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "messages: must be an array of 1..%d messages",
                          CONTRACT_APPEND_MAX_MESSAGES);
  size_t n = o->via.array.size;
  contract_in_message *msgs = contract_arena_alloc(a, n * sizeof *msgs);
  for (size_t i = 0; i < n; i++) {
    contract_in_message tmp = {0};
    int rc = decode_in_message(c, &o->via.array.ptr[i], i, check, a, msgs ? &msgs[i] : &tmp);
    if (rc) return rc;
  }
  if (msgs) {
    r->messages = msgs;
    r->nmessages = n;
  }
  return AW_OK;
}

/* ---- cancel ------------------------------------------------------------------ */

static int decode_cancel(contract_dctx *c, const contract_kind_fields *f, bool check, contract_arena *a,
                         contract_request *r) {
  const char *s;
  size_t n;
  int rc = contract_want_str(c, f->target_event_id, "target_event_id", false, 1, MAX_TARGET_EVENT_ID,
                             CONTRACT_TOO_LONG_INVALID, check, &s, &n);
  if (rc) return rc;
  r->target_event_id = s ? contract_arena_str(a, s, n) : NULL;
  return AW_OK;
}

int contract_kind_fields_decode(contract_dctx *c, const contract_kind_fields *f, bool check, contract_arena *a,
                                contract_request *r) {
  switch (r->kind) {
  case CONTRACT_KIND_HISTORY: return decode_history(c, f, check, a, r);
  case CONTRACT_KIND_APPEND: return decode_append(c, f, check, a, r);
  case CONTRACT_KIND_CANCEL: return decode_cancel(c, f, check, a, r);
  case CONTRACT_KIND_MESSAGE:
  case CONTRACT_KIND_RESET:
  case CONTRACT_KIND_DELETE: return AW_OK;
  }
  return AW_OK;
}

/* ---- what the encoder may write ---------------------------------------------- */

int contract_kind_fields_check(const contract_request *r) {
  if ((unsigned)r->kind >= CONTRACT_KIND_COUNT) return AW_EINVAL;
  if (r->kind == CONTRACT_KIND_HISTORY) {
    if (r->limit < 0 || r->limit > CONTRACT_HISTORY_LIMIT_MAX) return AW_EINVAL;
    if (r->after && r->before) return AW_EINVAL;
  }
  if (r->kind == CONTRACT_KIND_APPEND) {
    if (r->nmessages < 1 || r->nmessages > CONTRACT_APPEND_MAX_MESSAGES || !r->messages) return AW_EINVAL;
    for (size_t i = 0; i < r->nmessages; i++) {
      const contract_in_message *m = &r->messages[i];
      if (!m->role || (strcmp(m->role, "user") && strcmp(m->role, "assistant"))) return AW_EINVAL;
      if (m->nparts == 0 || !m->parts) return AW_EINVAL;
      for (size_t j = 0; j < m->nparts; j++)
        if (m->parts[j].type != CONTRACT_PART_TEXT || (!m->parts[j].text && m->parts[j].text_len))
          return AW_EINVAL;
    }
  }
  return AW_OK;
}

/* ev_identity.c -- an event's conversation and tenant (see the header for
 * the rules and why they are decided in one place). */
#include "ev_identity.h"

#include <stdio.h>
#include <string.h>

#include "msgpack_util.h"

static int cfg_fail(char *errstr, size_t n, const char *fmt, const char *detail) {
  if (errstr && n) snprintf(errstr, n, fmt, detail);
  return AW_ECONFIG;
}

/* A header name or metadata key: 1..WID_SOURCE_NAME_MAX printable bytes. */
static int name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > WID_SOURCE_NAME_MAX) return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || *s == 0x7f) return 0;
  return 1;
}

int wid_parse_tenant_source(const char *s, wid_rules *r, char *errstr, size_t n) {
  static const char want[] = "expected none, header:<name>, metadata:<key> or topic";
  if (!s) s = "none";
  r->tenant_name[0] = '\0';
  if (strcmp(s, "none") == 0) {
    r->tenant = WID_TENANT_NONE;
    return AW_OK;
  }
  if (strcmp(s, "topic") == 0) {
    r->tenant = WID_TENANT_TOPIC;
    return AW_OK;
  }
  const char *name = NULL;
  wid_tenant_kind k = WID_TENANT_NONE;
  if (strncmp(s, "header:", 7) == 0) {
    name = s + 7;
    k = WID_TENANT_HEADER;
  } else if (strncmp(s, "metadata:", 9) == 0) {
    name = s + 9;
    k = WID_TENANT_METADATA;
  }
  if (!name) return cfg_fail(errstr, n, "worker.tenant_source: %s", want);
  if (!name_ok(name))
    return cfg_fail(errstr, n, "worker.tenant_source: the name after ':' must be 1..64 printable bytes without spaces (%s)",
                    want);
  r->tenant = k;
  memcpy(r->tenant_name, name, strlen(name) + 1);
  return AW_OK;
}

int wid_parse_key_rule(const char *s, wid_rules *r, char *errstr, size_t n) {
  if (!s || strcmp(s, "match") == 0) {
    r->key_rule = WID_KEY_MATCH;
    return AW_OK;
  }
  if (strcmp(s, "route_by_key") == 0) {
    r->key_rule = WID_KEY_ROUTE;
    return AW_OK;
  }
  return cfg_fail(errstr, n, "worker.key_rule: %s", "expected match or route_by_key");
}

void wid_record_of(const wid_rules *r, const rd_kafka_message_t *m, wid_record *rec) {
  memset(rec, 0, sizeof *rec);
  if (m->key) {
    rec->key = m->key;
    rec->key_len = m->key_len;
  }
  rec->topic = m->rkt ? rd_kafka_topic_name(m->rkt) : NULL;
  if (r->tenant != WID_TENANT_HEADER) return;
  rd_kafka_headers_t *h = NULL;
  const void *v = NULL;
  size_t vlen = 0;
  /* The last value wins: a relay that appends its own header after the
   * producer's is the one that decided. */
  if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR && h &&
      rd_kafka_header_get_last(h, r->tenant_name, &v, &vlen) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    rec->header = v ? v : "";
    rec->header_len = v ? vlen : 0;
  }
}

static void reject(wid_identity *out, const char *code, const char *msg, const char *detail) {
  out->reject_code = code;
  out->ref[0] = '\0';
  snprintf(out->reject_msg, sizeof out->reject_msg, msg, detail ? detail : "");
}

/* The conversation under the key rule; 0 when the event is rejected. */
static int decide_conversation(const wid_rules *r, const wid_record *rec, const contract_request *q,
                               wid_identity *out) {
  const char *pc = q ? q->conversation_id : NULL;
  if (pc && strlen(pc) < sizeof out->conv) memcpy(out->conv, pc, strlen(pc) + 1);
  int has_key = rec->key && rec->key_len > 0;
  if (r->key_rule == WID_KEY_MATCH) {
    if (!has_key) {
      reject(out, "key_mismatch",
             "the event has no Kafka key; it must be keyed by its conversation_id (worker.key_rule: match)%s", "");
      return 0;
    }
    if (!pc || rec->key_len != strlen(pc) || memcmp(rec->key, pc, rec->key_len) != 0) {
      reject(out, "key_mismatch",
             "the Kafka key is not the event's conversation_id; key events by their conversation "
             "(worker.key_rule: match)%s", "");
      return 0;
    }
    return 1;
  }
  /* route_by_key: the key is the conversation. */
  if (!has_key) {
    reject(out, "key_mismatch", "the event has no Kafka key; the key is its conversation (worker.key_rule: route_by_key)%s",
           "");
    return 0;
  }
  if (rec->key_len > RK_ID_MAX || memchr(rec->key, '\0', rec->key_len) ||
      !mpu_utf8_valid(rec->key, rec->key_len)) {
    reject(out, "key_mismatch",
           "the Kafka key is not a usable conversation id (1..256 bytes of UTF-8, no NUL; worker.key_rule: "
           "route_by_key)%s", "");
    return 0;
  }
  if (pc && (rec->key_len != strlen(pc) || memcmp(rec->key, pc, rec->key_len) != 0)) {
    reject(out, "key_mismatch",
           "conversation_id differs from the Kafka key, which is the conversation (worker.key_rule: "
           "route_by_key); leave conversation_id out or make it equal%s", "");
    return 0;
  }
  memcpy(out->conv, rec->key, rec->key_len);
  out->conv[rec->key_len] = '\0';
  return 1;
}

static const char *source_name(const wid_rules *r) {
  switch (r->tenant) {
  case WID_TENANT_HEADER: return "header";
  case WID_TENANT_METADATA: return "metadata field";
  case WID_TENANT_TOPIC: return "topic";
  default: return "source";
  }
}

void wid_decide(const wid_rules *r, const wid_record *rec, const contract_request *q, wid_identity *out) {
  memset(out, 0, sizeof *out);
  if (!decide_conversation(r, rec, q, out)) return;
  const void *t = NULL;
  size_t tl = 0;
  switch (r->tenant) {
  case WID_TENANT_NONE: break;
  case WID_TENANT_HEADER:
    t = rec->header;
    tl = rec->header_len;
    break;
  case WID_TENANT_METADATA:
    for (size_t i = 0; q && i < q->nmetadata; i++)
      if (q->metadata[i].key && strcmp(q->metadata[i].key, r->tenant_name) == 0 && q->metadata[i].value) {
        t = q->metadata[i].value;
        tl = strlen(q->metadata[i].value);
      }
    break;
  case WID_TENANT_TOPIC:
    t = rec->topic;
    tl = rec->topic ? strlen(rec->topic) : 0;
    break;
  }
  if (r->tenant != WID_TENANT_NONE) {
    char what[WID_SOURCE_NAME_MAX + 32];
    snprintf(what, sizeof what, "%s%s%s", source_name(r), r->tenant_name[0] ? " " : "", r->tenant_name);
    if (!t || tl == 0) {
      reject(out, "missing_tenant", "the event has no tenant (worker.tenant_source: %s)", what);
      return;
    }
    if (!rk_tenant_ok(t, tl) || !mpu_utf8_valid(t, tl)) {
      reject(out, "invalid_tenant",
             "the event's tenant (%s) is not 1..64 bytes of UTF-8 without control characters", what);
      return;
    }
    memcpy(out->tenant, t, tl);
    out->tenant[tl] = '\0';
  }
  int rc = rk_ref_make(out->tenant, out->conv, out->ref, sizeof out->ref);
  if (rc != AW_OK) /* cannot happen for ids the contract accepts; rejected rather than keyed wrongly */
    reject(out, "invalid_field", "the conversation id cannot name a conversation in the store%s", "");
}

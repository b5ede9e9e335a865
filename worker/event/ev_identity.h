/* ev_identity.h -- whose conversation an event belongs to (prefix wid_):
 * the conversation it names, checked against its Kafka key
 * (worker.key_rule), and the tenant it belongs to (worker.tenant_source).
 *
 * Why a module: the ordering (conv_sched.c), every Redis key (rkeys.h) and
 * the backend's conversation follow from this one decision, so it is taken
 * once, at intake, by rules a reader finds in one place; the rest of the
 * worker sees only its result (wk_event.conv_id, .tenant, .conv_ref).
 *
 *   key rule   match (default): the Kafka key must be the payload's
 *              conversation_id, byte for byte; an event without a key, or
 *              with another one, is rejected key_mismatch.  Producers key
 *              by conversation so that a conversation stays on one
 *              partition (its order); an event keyed otherwise would be
 *              served out of order with the rest of its conversation.
 *              route_by_key: the key is the conversation; conversation_id
 *              may be left out of the payload, and when present must equal
 *              the key (else key_mismatch).
 *   tenant     none (default): no tenant, keys as before (rkeys.h).
 *              header:<name>   the last value of that Kafka header
 *              metadata:<key>  that request metadata field
 *              topic           the name of the topic the event came from
 *              With a source, an event without a tenant is rejected
 *              missing_tenant, one with an unusable tenant (over
 *              RK_TENANT_MAX bytes, control bytes, not UTF-8)
 *              invalid_tenant.
 *
 * Pure (wid_decide) apart from wid_record_of, which reads a librdkafka
 * message: any thread.
 */
#ifndef AW_EV_IDENTITY_H
#define AW_EV_IDENTITY_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>

#include "aw_error.h"
#include "contract.h"
#include "rkeys.h"

#define WID_SOURCE_NAME_MAX 64 /* bytes of a tenant header's name or metadata key */
#define WID_CONV_SIZE (RK_ID_MAX + 1)

typedef enum wid_tenant_kind {
  WID_TENANT_NONE = 0,
  WID_TENANT_HEADER,
  WID_TENANT_METADATA,
  WID_TENANT_TOPIC,
} wid_tenant_kind;

typedef enum wid_key_rule {
  WID_KEY_MATCH = 0,
  WID_KEY_ROUTE,
} wid_key_rule;

/** The deployment's rules (zeroed: key rule match, no tenant). */
typedef struct wid_rules {
  wid_key_rule key_rule;
  wid_tenant_kind tenant;
  char tenant_name[WID_SOURCE_NAME_MAX + 1]; /* the header's name or the metadata key */
} wid_rules;

/** Parse worker.tenant_source into r ("none", "header:<name>",
 *  "metadata:<key>", "topic").  AW_ECONFIG with the reason in errstr. */
int wid_parse_tenant_source(const char *s, wid_rules *r, char *errstr, size_t n) AW_MUST_CHECK;

/** Parse worker.key_rule into r ("match", "route_by_key").  AW_ECONFIG. */
int wid_parse_key_rule(const char *s, wid_rules *r, char *errstr, size_t n) AW_MUST_CHECK;

/** What the decision reads of the Kafka record. */
typedef struct wid_record {
  const void *key;         /* NULL: the record has no key */
  size_t key_len;
  const char *topic;
  const void *header;      /* the tenant header's last value; NULL: absent */
  size_t header_len;
} wid_record;

/** Fill rec from m (pointers into m: valid while m is). */
void wid_record_of(const wid_rules *r, const rd_kafka_message_t *m, wid_record *rec);

/** The decision. */
typedef struct wid_identity {
  char conv[WID_CONV_SIZE];        /* the conversation id ("" when none is known) */
  char tenant[RK_TENANT_MAX + 1];  /* "" without tenant */
  char ref[RK_REF_MAX];            /* the conversation reference (rkeys.h); "" when rejected */
  const char *reject_code;         /* NULL, "key_mismatch", "missing_tenant", "invalid_tenant" */
  char reject_msg[192];
} wid_identity;

/** Decide the identity of a decoded request q (its conversation_id may be
 *  NULL under route_by_key) from rec under r.  Always fills out; on a
 *  rejection out->ref is "" and out->conv the best known conversation id
 *  (for the rejected response). */
void wid_decide(const wid_rules *r, const wid_record *rec, const contract_request *q, wid_identity *out);

#endif

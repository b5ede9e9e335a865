/* conv_store.h -- what the fleet keeps per conversation and per event in
 * Redis (prefix cstore_), and the backend's store port over it.
 *
 * Conversations are named by their reference (rkeys.h: the conversation id,
 * or "<enc tenant>:<conversation id>" when the deployment has tenants), and
 * every key is built by rkeys.h (ids percent-encoded, the hash tag holding
 * exactly the encoded tenant and conversation, so all keys of one
 * conversation live in one Redis Cluster slot and can later be used
 * together in one MULTI or script).  Below, <tag> is that tag:
 *   <prefix>:{<tag>}:<handle_key>      the backend's conversation handle
 *                                     (be_handle_key: "thread" for
 *                                     Assistants -- the key v1 deployments
 *                                     already hold --, "conv" for Responses);
 *                                     expires handle_ttl_s (worker.
 *                                     conversation_ttl_s, 30 days) after
 *                                     its last use: every lookup renews it
 *                                     (GETEX); 0 keeps it forever.  A
 *                                     conversation idle for longer gets a
 *                                     new backend conversation (the old
 *                                     one's history is not carried over)
 *   <prefix>:{<tag>}:ev:<event_id>     the outcome of an answered event:
 *                                     "<status> <turn handle or -> d:<digest>
 *                                     <ms>" (outcome_ttl_s: worker.
 *                                     outcome_ttl_s, 7 days); only accepted
 *                                     events write it (event_claim.h)
 *   <prefix>:{<tag>}:evp:<event_id>    how far an event got: "d:<digest>:<ms>"
 *                                     then "-" (claimed: an attempt started
 *                                     it) or the backend's last checkpoint
 *                                     (outcome_ttl_s), so that a
 *                                     re-processed event is recovered, never
 *                                     started twice (records of older
 *                                     workers lack the "d:" prefix)
 * Claiming a handle is race-safe: SET NX decides which of two concurrently
 * created handles is used; the loser reads the winner's (and the backend
 * deletes its own).
 */
#ifndef AW_CONV_STORE_H
#define AW_CONV_STORE_H

#include <stddef.h>
#include "aw_error.h"
#include "backend.h"
#include "redis_conn.h"
#include "rkeys.h"
#include "event_claim.h"

/* Longest value read back: a progress record is a checkpoint behind its
 * claim's prefix (event_claim.h). */
#define CSTORE_VALUE_MAX (BE_CHECKPOINT_MAX + EVC_PROGRESS_PREFIX_MAX)

/** Result of a lookup: err AW_OK or AW_EREDIS; value "" when absent. */
typedef void (*cstore_cb)(void *opaque, int err, const char *value);

typedef struct cstore {
  rconn *redis;
  rk_space keys;        /* prefix, and whether references carry a tenant (set keys.tenanted
                           after init when worker.tenant_source is not none) */
  long outcome_ttl_s;   /* outcome and progress records (default 7 days) */
  long handle_ttl_s;    /* the handle key, renewed on use; 0: no expiry (default 30 days) */
  be_store port;  /* the backends' view (claim_handle) */
} cstore;

/** Initialise (the connection is borrowed).  Every conv argument below is
 *  a conversation reference (rkeys.h). */
void cstore_init(cstore *m, rconn *redis, const char *prefix);

/** GET the conversation's handle under key (be_handle_key). */
int cstore_get_handle(cstore *m, const char *key, const char *conv, cstore_cb cb,
                      void *opaque) AW_MUST_CHECK;

/** SET NX the handle; the callback receives the handle now in use (ours if
 *  we won, the other one if a handle was claimed first). */
int cstore_claim_handle(cstore *m, const char *key, const char *conv, const char *handle,
                        cstore_cb cb, void *opaque) AW_MUST_CHECK;

/** SET the outcome record of an accepted event: its status, turn handle,
 *  the digest of what it asked and when (event_claim.h's value).  Never for
 *  a rejected event: that would claim its event_id. */
int cstore_put_outcome(cstore *m, const char *conv, const char *event_id, const char *status,
                       const char *turn, const char *digest, int64_t at_ms, cstore_cb cb,
                       void *opaque) AW_MUST_CHECK;

/** Result of cstore_claim_event: err AW_OK or AW_EREDIS; outcome the
 *  outcome record ("" when none), progress the progress record as it was
 *  before the claim ("" when none, or when this call created it). */
typedef void (*cstore_claim_cb)(void *opaque, int err, const char *outcome, const char *progress);

/** Read the event's outcome record and, only when there is none and claim
 *  is set, claim its progress record with claim_value (SET NX GET), in one
 *  script: an event already answered, or one whose id another message
 *  holds, claims nothing.  claim 0 only reads the progress record.  For
 *  evc_decide. */
int cstore_claim_event(cstore *m, const char *conv, const char *event_id, int claim, const char *claim_value,
                       cstore_claim_cb cb, void *opaque) AW_MUST_CHECK;

/** Record the event's checkpoint (replaces the last one, keeping the
 *  claim's prefix "d:<digest>:<ms> " when the record has one). */
int cstore_put_progress(cstore *m, const char *conv, const char *event_id, const char *checkpoint,
                        cstore_cb cb, void *opaque) AW_MUST_CHECK;

/** Conversation request `reset`: delete the conversation's handle key (key:
 *  be_handle_key, NULL when the backend keeps none) and the history the
 *  fleet keeps for it (hist, hist:ids; pending turns expire), in one script, so
 *  that its next message starts a new backend conversation.  cb's value is
 *  the handle that was recorded ("" when none): the caller may delete that
 *  backend conversation. */
int cstore_forget_conversation(cstore *m, const char *key, const char *conv, cstore_cb cb,
                               void *opaque) AW_MUST_CHECK;

/** Conversation request `delete` (right to erasure): delete every key of
 *  the conversation -- all keys under its hash tag: handle, outcome and
 *  progress records, history, tool state.  cb's value is the number of
 *  keys deleted, in decimal. */
int cstore_erase_conversation(cstore *m, const char *conv, cstore_cb cb, void *opaque) AW_MUST_CHECK;

/** Format the handle key of conv into out (for tests and tools). */
int cstore_handle_key(const cstore *m, const char *key, const char *conv, char *out,
                      size_t n) AW_MUST_CHECK;

#endif

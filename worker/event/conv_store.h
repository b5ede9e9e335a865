/* conv_store.h -- what the fleet keeps per conversation and per event in
 * Redis (prefix cstore_), and the backend's store port over it.
 *
 * Keys (all of one conversation share the hash tag {c:<conversation_id>}, so
 * they live in one Redis Cluster slot and can later be used together in one
 * MULTI or script):
 *   <prefix>:{c:<conv>}:<handle_key>   the backend's conversation handle
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
 *   <prefix>:{c:<conv>}:ev:<event_id>  the outcome of an answered event:
 *                                     "<status> <turn handle or ->"
 *                                     (outcome_ttl_s: worker.outcome_ttl_s,
 *                                     7 days)
 *   <prefix>:{c:<conv>}:evp:<event_id> how far an event got: "-" (claimed:
 *                                     an attempt started it) or the
 *                                     backend's last checkpoint
 *                                     (outcome_ttl_s), so
 *                                     that a re-processed event is
 *                                     recovered, never started twice
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

#define CSTORE_VALUE_MAX BE_CHECKPOINT_MAX /* longest value read back */

/** Result of a lookup: err AW_OK or AW_EREDIS; value "" when absent. */
typedef void (*cstore_cb)(void *opaque, int err, const char *value);

typedef struct cstore {
  rconn *redis;
  char prefix[64];
  long outcome_ttl_s;   /* outcome and progress records (default 7 days) */
  long handle_ttl_s;    /* the handle key, renewed on use; 0: no expiry (default 30 days) */
  be_store port;  /* the backends' view (claim_handle) */
} cstore;

/** Initialise (the connection is borrowed). */
void cstore_init(cstore *m, rconn *redis, const char *prefix);

/** GET the conversation's handle under key (be_handle_key). */
int cstore_get_handle(cstore *m, const char *key, const char *conv, cstore_cb cb,
                      void *opaque) AW_MUST_CHECK;

/** SET NX the handle; the callback receives the handle now in use (ours if
 *  we won, the other one if a handle was claimed first). */
int cstore_claim_handle(cstore *m, const char *key, const char *conv, const char *handle,
                        cstore_cb cb, void *opaque) AW_MUST_CHECK;

/** GET the outcome record of an event ("" when it was never answered). */
int cstore_get_outcome(cstore *m, const char *conv, const char *event_id, cstore_cb cb,
                       void *opaque) AW_MUST_CHECK;

/** SET the outcome record of an event. */
int cstore_put_outcome(cstore *m, const char *conv, const char *event_id, const char *status,
                       const char *turn, cstore_cb cb, void *opaque) AW_MUST_CHECK;

/** Claim the event's progress record (SET NX GET): the callback receives
 *  "" when this call created it (the event is new to the backend) and the
 *  record's value otherwise ("-": claimed, no checkpoint yet). */
int cstore_claim_progress(cstore *m, const char *conv, const char *event_id, cstore_cb cb,
                          void *opaque) AW_MUST_CHECK;

/** Record the event's checkpoint (replaces the last one). */
int cstore_put_progress(cstore *m, const char *conv, const char *event_id, const char *checkpoint,
                        cstore_cb cb, void *opaque) AW_MUST_CHECK;

/** Format the handle key of conv into out (for tests and tools). */
int cstore_handle_key(const cstore *m, const char *key, const char *conv, char *out,
                      size_t n) AW_MUST_CHECK;

#endif

/* thread_map.h -- the conversation -> thread mapping and per-event outcome
 * records in Redis (prefix tmap_).
 *
 * Keys (all of one conversation share the hash tag {c:<conversation_id>}, so
 * they live in one Redis Cluster slot and can later be used together in one
 * MULTI or script):
 *   <prefix>:{c:<conv>}:thread        the thread id (string, no expiry)
 *   <prefix>:{c:<conv>}:ev:<event_id> the outcome of an answered event:
 *                                     "<status> <run_id>" (expires after 7 days)
 *   <prefix>:{c:<conv>}:evp:<event_id> how far an event got on the API:
 *                                     "-" (claimed) or
 *                                     "<message_id> <run_id>" (7 days), so
 *                                     that a re-processed event neither adds
 *                                     its message twice nor starts a second run
 * Claiming a thread is race-safe: SET NX decides which of two concurrently
 * created threads is used; the loser reads the winner's id (and its own
 * thread is deleted by the caller).
 */
#ifndef AW_THREAD_MAP_H
#define AW_THREAD_MAP_H

#include <stddef.h>
#include "aw_error.h"
#include "redis_conn.h"

#define TMAP_ID_MAX 96 /* longest id kept (API ids are ~30 bytes) */

/** Result of a lookup: err AW_OK or AW_EREDIS; value "" when absent. */
typedef void (*tmap_cb)(void *opaque, int err, const char *value);

typedef struct tmap {
  rconn *redis;
  char prefix[64];
  long outcome_ttl_s;
} tmap;

/** Initialise (the connection is borrowed). */
void tmap_init(tmap *m, rconn *redis, const char *prefix);

/** GET the conversation's thread id. */
int tmap_get_thread(tmap *m, const char *conv, tmap_cb cb, void *opaque) AW_MUST_CHECK;

/** SET NX the thread id; the callback receives the id now in use (ours if we
 *  won, the other one if a thread was claimed first). */
int tmap_claim_thread(tmap *m, const char *conv, const char *thread_id, tmap_cb cb,
                      void *opaque) AW_MUST_CHECK;

/** GET the outcome record of an event ("" when it was never answered). */
int tmap_get_outcome(tmap *m, const char *conv, const char *event_id, tmap_cb cb,
                     void *opaque) AW_MUST_CHECK;

/** SET the outcome record of an event. */
int tmap_put_outcome(tmap *m, const char *conv, const char *event_id, const char *status,
                     const char *run_id, tmap_cb cb, void *opaque) AW_MUST_CHECK;

/** Claim the event's progress record (SET NX GET): the callback receives
 *  "" when this call created it (the event is new to the API) and the
 *  record's value otherwise. */
int tmap_claim_progress(tmap *m, const char *conv, const char *event_id, tmap_cb cb,
                        void *opaque) AW_MUST_CHECK;

/** Record the event's progress: its message and run (the worker writes it
 *  once the run exists; run_id NULL writes the message alone). */
int tmap_put_progress(tmap *m, const char *conv, const char *event_id, const char *message_id,
                      const char *run_id, tmap_cb cb, void *opaque) AW_MUST_CHECK;

/** Format the thread key of conv into out (for tests and tools). */
int tmap_thread_key(const tmap *m, const char *conv, char *out, size_t n) AW_MUST_CHECK;

#endif

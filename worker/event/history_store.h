/* history_store.h -- the conversation history of history-keeping backends
 * (Chat Completions) in Redis (prefix hstore_): the be_history port of
 * backend.h over the worker's Redis connection.
 *
 * Keys (built by rkeys.h: ids percent-encoded; all of one conversation share
 * conv_store.h's hash tag <tag> = c:<enc conversation> or
 * t:<enc tenant>:c:<enc conversation>, so they live in one Redis Cluster slot
 * and the commit script may touch them together; conv arguments are
 * conversation references, rkeys.h):
 *   <prefix>:{<tag>}:hist              list: the committed turns, oldest
 *                                      first, each the opaque text the
 *                                      backend gave (one JSON object per
 *                                      answered event)
 *   <prefix>:{<tag>}:hist:ids          hash: "e:<event_id>" -> that turn's
 *                                      byte length, for every turn in the
 *                                      list, plus "bytes" -> the list's
 *                                      total bytes
 *   <prefix>:{<tag>}:hist:p:<event_id> string: the event's pending turn
 *                                      (waiting for tool outputs), expires
 *                                      pending_ttl_s (worker.tool_state_ttl_s,
 *                                      900 s) after its last save
 * hist and hist:ids expire together ttl_s (worker.history_ttl_s, default
 * worker.conversation_ttl_s, 30 days; 0: never) after the last commit: every
 * commit renews them; a conversation idle for longer starts with no history.
 *
 * Caps.  After each append the commit drops whole turns from the oldest end
 * while the list holds more than max_turns (worker.history_max_turns, 100)
 * turns or more than max_bytes (worker.history_max_bytes, 1 MiB) bytes,
 * always keeping the newest turn (so one turn larger than max_bytes is kept,
 * alone).  A dropped turn's "e:<event_id>" field goes with it: the store
 * reads the event id of a dropped turn from the turn itself, so EVERY TURN
 * MUST BE A JSON OBJECT WHOSE MEMBER "e" IS ITS EVENT ID (the one contract
 * between the store and the backend's opaque text; a turn without it is
 * still dropped, but its field stays until the hash expires).  A trimmed
 * event no longer reads as committed; redelivered after that, it would be
 * appended again -- only after its outcome record (7 days) is gone too.
 *
 * Round trips.  load is one pipelined round trip (HEXISTS, GET, LRANGE);
 * save_pending one SET PX; commit one EVALSHA of a Lua script (one more,
 * EVAL, after Redis lost its script cache: NOSCRIPT), which is what makes
 * "append unless committed, trim, renew, drop the pending turn" atomic.
 *
 * Bounds.  A turn (committed or pending) is at most HSTORE_TURN_MAX bytes;
 * longer ones are refused before any I/O (AW_ETOOBIG).  load hands out at
 * most min(max_turns asked, hstore.max_turns) turns, and of those only the
 * newest whose sum stays within max_bytes (the newest one always, when it is
 * at most HSTORE_TURN_MAX): at most max_bytes + HSTORE_TURN_MAX bytes even if
 * another worker of the fleet runs with larger caps.  The turns handed to
 * the load callback point into hiredis' reply (no copy); the pending turn is
 * copied once.  save_pending and commit copy what they are given before
 * returning (commit keeps one copy for the NOSCRIPT fallback).
 *
 * @locality the loop thread only (the connection's).
 */
#ifndef AW_HISTORY_STORE_H
#define AW_HISTORY_STORE_H

#include <stddef.h>
#include "aw_error.h"
#include "backend.h"
#include "redis_conn.h"
#include "rkeys.h"

#define HSTORE_TURN_MAX (16u * 1024 * 1024) /* bytes of one turn, committed or pending */
#define HSTORE_DEFAULT_MAX_TURNS 100
#define HSTORE_DEFAULT_MAX_BYTES (1024u * 1024)
#define HSTORE_DEFAULT_TTL_S (30L * 24 * 3600)
#define HSTORE_DEFAULT_PENDING_TTL_S 900L

/** Counters for /metrics (run_metrics.c): plain increments on the loop. */
typedef struct hstore_stats {
  unsigned long loads;             /* loads answered (one round trip each) */
  unsigned long pending_saves;     /* pending turns written */
  unsigned long commits;           /* commits that appended a turn */
  unsigned long commit_duplicates; /* commits that found the event's turn there already */
  unsigned long long bytes_committed; /* bytes of the turns appended */
  unsigned long turns_trimmed;     /* oldest turns dropped by the caps */
  unsigned long errors;            /* operations that failed at Redis (AW_EREDIS) */
} hstore_stats;

typedef struct hstore {
  rconn *redis;
  rk_space keys;      /* prefix, and whether references carry a tenant (keys.tenanted,
                         set after init when worker.tenant_source is not none) */
  size_t max_turns;   /* turns kept per conversation (default 100) */
  size_t max_bytes;   /* bytes kept per conversation (default 1 MiB; the newest turn always) */
  long ttl_s;         /* hist and hist:ids, renewed by every commit; 0: no expiry (30 days) */
  long pending_ttl_s; /* a pending turn (default 900 s) */
  char sha[41];       /* SHA-1 of the commit script, hex (EVALSHA) */
  hstore_stats stats;
  be_history port;    /* the backends' view: load, save_pending, commit */
} hstore;

/** Initialise with the defaults above (the connection is borrowed).  The
 *  caps and lifetimes may be changed before the first call. */
void hstore_init(hstore *h, rconn *redis, const char *prefix);

/** be_history.load: one pipelined round trip.  AW_EINVAL for empty ids or a
 *  NULL cb, AW_ETOOBIG for ids too long for a key, AW_ENOMEM, AW_EREDIS
 *  when Redis is down (no callback in all these cases).  max_turns 0 reads
 *  no turns (committed and pending only). */
int hstore_load(hstore *h, const char *conv, const char *event_id, size_t max_turns,
                be_history_load_cb cb, void *opaque) AW_MUST_CHECK;

/** be_history.save_pending: SET the event's pending turn with its TTL;
 *  applied 1 on success.  len at most HSTORE_TURN_MAX (else AW_ETOOBIG). */
int hstore_save_pending(hstore *h, const char *conv, const char *event_id, const char *turn,
                        size_t len, be_history_cb cb, void *opaque) AW_MUST_CHECK;

/** be_history.commit: the script (see above); applied 1 when the turn was
 *  appended, 0 when the event's turn was committed already (then only the
 *  pending turn is dropped).  len 1..HSTORE_TURN_MAX. */
int hstore_commit(hstore *h, const char *conv, const char *event_id, const char *turn, size_t len,
                  be_history_cb cb, void *opaque) AW_MUST_CHECK;

/** Format the conversation's history list key into out (for tests and
 *  tools); the other keys are this plus ":ids" and ":p:<enc event_id>". */
int hstore_key(const hstore *h, const char *conv, char *out, size_t n) AW_MUST_CHECK;

#endif

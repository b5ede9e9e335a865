/* kb_sync.h -- declarative knowledge: make the API's vector stores match
 * the configuration's knowledge.vector_stores (prefix kbs_).
 *
 * Why a module of its own: `assistant-worker sync` and `run` (at start-up,
 * knowledge.sync_on_start) do the same thing, and it is a long chain of API
 * and Redis calls whose every step can fail or be interrupted by a kill; one
 * state machine, moved by one transition function that logs, is how that
 * stays readable and restartable.
 *
 * What it remembers (Redis, rkeys.h RK_KB: <prefix>:kb:<enc store name>, a
 * hash): "id" -> the store's vs_ id; "d:<path as configured>" ->
 * "<sha256 hex> <file id> <bytes>" for each document whose file is processed
 * in the store.
 *
 * Per store, in order:
 *   lock     SET <prefix>:kblock:<store> NX PX: workers that start together
 *            sync one at a time (the others wait, then find nothing to do);
 *            without it one worker would take another's fresh upload for an
 *            orphan.  The lock is a 15 s lease renewed every 5 s while the
 *            sync runs: a sync that dies holds the next one back 15 s at most.
 *   load     HGETALL the record.
 *   store    the remembered id retrieved (404: created again); else created
 *            with aw_key = the store's name, so a crash between the creation
 *            and the record finds it again (vector_stores.h) and recorded.
 *   docs     each document hashed (SHA-256, streamed from disk); uploaded only
 *            when the hash differs from the remembered one or the remembered
 *            file is gone (GET file 404), then added to the store.
 *   wait     until the store's files are processed (wait_timeout_ms).
 *   record   the processed documents' hashes and file ids.
 *   detach   for a replaced document the old file, for a document that left
 *            the configuration its file: removed from the store and deleted.
 *   orphans  the files named aw-kb.<store>.<vs id>.<sha256 prefix>.<basename>
 *            that the record does not name (a worker killed between an upload and
 *            the record) are deleted.
 *   unlock
 * A failed processing (a document the API could not read) is reported and
 * not recorded: its file is an orphan for the next sync, which retries it.
 *
 * Progress: one log line per document with its bytes and what happened
 * (uploaded, unchanged, replaced, removed, orphan deleted, failed) and a
 * summary (counts, bytes uploaded, seconds).
 *
 * Errors: the summary's err is AW_OK, or the first infrastructure error
 * (Redis, the API, a deadline; the sync stops there); file_failed counts
 * documents that failed processing or were refused by the API (the sync
 * goes on).
 *
 * @locality the loop thread only.
 */
#ifndef AW_KB_SYNC_H
#define AW_KB_SYNC_H

#include <stddef.h>
#include <uv.h>

#include "api_client.h"
#include "aw_error.h"
#include "config.h"
#include "redis_conn.h"

#define KBS_MAX_RECORDED 4096    /* documents remembered per store that a sync reads */

typedef struct kbs_config {
  uv_loop_t *loop;
  api_client *api;
  rconn *redis;
  const char *redis_prefix;
  long wait_timeout_ms;  /* processing wait per store (knowledge.wait_timeout_ms) */
  int lookup_only;       /* 1: only read the stores' ids from Redis (run without sync_on_start) */
} kbs_config;

typedef struct kbs_summary {
  int err;                 /* AW_OK or the infrastructure error that stopped the sync */
  char errmsg[1024];       /* "" or what failed, naming the store / document */
  int uploaded, unchanged, replaced, removed, orphans, failed;
  long long bytes;         /* bytes uploaded */
  double seconds;
} kbs_summary;

/** Called once, never inside kbs_start. */
typedef void (*kbs_done_cb)(void *opaque, const kbs_summary *s);

typedef struct kbs kbs;

/** Sync stores[0..n) (borrowed until the callback; each store's id is set
 *  on success).  Nothing to do (n 0) answers on the next loop iteration. */
int kbs_start(const kbs_config *kc, cfg_kb_store *stores, size_t n, kbs_done_cb cb, void *opaque,
              kbs **out) AW_MUST_CHECK;

/** Stop (no callback follows) and free.  Safe on NULL and inside the
 *  callback (then it only frees). */
void kbs_free(kbs *k);

#endif

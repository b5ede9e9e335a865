/* kafka_committed.h -- a consumer group's committed offsets (and their
 * metadata), read off the loop (prefix kcm_).
 *
 * Why: librdkafka's rd_kafka_committed() blocks until the group coordinator
 * answers, and a consumer needs the answer at every assignment (the commit
 * metadata says which offsets past the committed one are done already).
 * Called on the loop, a slow or stalled broker stops the loop for the whole
 * timeout: /healthz, Redis replies, timers and the other partitions' events
 * with it.  Here the call runs on a thread of libuv's pool (uv_queue_work),
 * in attempts of a bounded time with a bounded number of retries and a
 * backoff between them, and the result comes back on the loop.
 *
 * The thread uses the librdkafka handle, so the handle must outlive every
 * fetch: the owner cancels each fetch (kcm_cancel) before it destroys the
 * handle.  Cancelling waits at most for the attempt under way (its timeout),
 * never for the retries or the backoff.  rd_kafka_committed() is
 * thread-safe (librdkafka queues the request to its group coordinator).
 * A fetch holds no librdkafka object beyond its call (its partition list
 * is a plain copy, without librdkafka's partition references): what is
 * left of a cancelled fetch until the loop frees it never keeps
 * rd_kafka_destroy() from finishing, and neither does the result list.
 */
#ifndef AW_KAFKA_COMMITTED_H
#define AW_KAFKA_COMMITTED_H

#include <librdkafka/rdkafka.h>
#include <uv.h>
#include "aw_error.h"

typedef struct kcm kcm;

/** How hard one fetch tries: attempts of attempt_timeout_ms each, at most
 *  max_attempts of them, backoff_ms before the second one, doubling up to
 *  backoff_max_ms. */
typedef struct kcm_policy {
  int attempt_timeout_ms;
  int max_attempts;
  int backoff_ms;
  int backoff_max_ms;
} kcm_policy;

/** The result, on the loop: err AW_OK with offsets (the partitions asked
 *  for, each with its committed offset, RD_KAFKA_OFFSET_INVALID if none, and
 *  the commit's metadata; the callee takes ownership of the list), or
 *  AW_ETIMEDOUT / AW_EKAFKA after the last attempt (errstr says why) or
 *  AW_ECANCELLED (kcm_cancel), with offsets NULL.  Called exactly once. */
typedef void (*kcm_done_fn)(void *opaque, rd_kafka_topic_partition_list_t *offsets, int err,
                            const char *errstr);

/** Start fetching the committed offsets of parts (copied) through rk.
 *  done follows on the loop.  AW_ENOMEM (done is not called).  Loop
 *  thread. */
int kcm_start(uv_loop_t *loop, rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *parts,
              const kcm_policy *policy, kcm_done_fn done, void *opaque, kcm **out) AW_MUST_CHECK;

/** Cancel f: returns once its thread no longer uses the handle (at most the
 *  attempt under way) and f holds nothing of librdkafka's, after calling
 *  done(opaque, NULL, AW_ECANCELLED) here.
 *  f's memory is released later on the loop (libuv's after-work callback),
 *  so the loop must run once more before it is closed.  Only before done
 *  was called (f is gone after).  Loop thread, or after the loop stopped. */
void kcm_cancel(kcm *f);

#endif

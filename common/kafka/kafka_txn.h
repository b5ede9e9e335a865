/* kafka_txn.h -- a transactional Kafka producer driven from the libuv loop
 * (prefix ktx_).
 *
 * Messages produced between two commits form one transaction, committed
 * together with the consumer offsets the caller hands to ktx_commit (and
 * their metadata), so that outputs and the offsets of their inputs become
 * visible atomically (read_committed consumers), or not at all.
 *
 * librdkafka's transactional calls block (init, send_offsets, commit,
 * abort, begin), so they run on a thread of this module; the loop never
 * waits for the broker except in ktx_flush and ktx_commit_sync, which the
 * worker calls only from wk_free (its consumer's last revocation), after
 * the loop stopped.
 * The states, all changed on the loop:
 *
 *   STARTING --(init_transactions, begin)--> OPEN --ktx_commit--> COMMITTING
 *      OPEN <--(begin; done callback: committed or aborted)-- COMMITTING
 *   any --(fatal error: fenced, ...)--> FATAL (the process must restart)
 *
 * ktx_produce works only while OPEN (else AW_EAGAIN: produce again after
 * the done callback).  Delivery reports come through the event API, served
 * on the loop, so no callback of this module ever runs on another thread.
 * A message whose delivery failed makes the transaction abort at the next
 * commit: the done callback then says aborted and the caller produces its
 * messages again in the next transaction.
 */
#ifndef AW_KAFKA_TXN_H
#define AW_KAFKA_TXN_H

#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <uv.h>
#include "aw_error.h"

typedef struct ktx ktx;

/** Delivery report of one message: written to its partition inside the
 *  open transaction (not yet committed), or failed. */
typedef void (*ktx_dr_fn)(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err);

/** Transaction seq ended: committed (1) or aborted (0; its messages are
 *  discarded), with the reason in errstr. */
typedef void (*ktx_done_fn)(void *opaque, uint64_t seq, int committed, const char *errstr);

/** Create from conf (which must set transactional.id); takes ownership of
 *  conf on success.  init_transactions runs on the module's thread:
 *  ktx_open() says when producing may start. */
int ktx_new(uv_loop_t *loop, rd_kafka_conf_t *conf, ktx_dr_fn dr, ktx_done_fn done, void *opaque,
            ktx **out, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** What ktx_new_opts takes beyond ktx_new; zeroed fields keep the defaults. */
typedef struct ktx_options {
  /* Timeout of each attempt of a blocking transactional call (init,
   * send_offsets, commit, abort; a retriable failure is attempted again, up
   * to 10 more times).  0: 30000.  Bounds how long ktx_free waits. */
  int attempt_timeout_ms;
} ktx_options;

/** ktx_new with options (opt may be NULL: the defaults).  AW_EINVAL for a
 *  negative timeout (conf not taken). */
int ktx_new_opts(uv_loop_t *loop, rd_kafka_conf_t *conf, const ktx_options *opt, ktx_dr_fn dr,
                 ktx_done_fn done, void *opaque, ktx **out, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Can messages be produced now? */
int ktx_open(const ktx *t);
/** The process must restart (fenced or another fatal error). */
int ktx_fatal(const ktx *t);
/** The sequence number of the open transaction. */
uint64_t ktx_seq(const ktx *t);
/** Messages produced in the open transaction whose report is still due. */
long ktx_pending(const ktx *t);
/** Messages produced in the open transaction. */
long ktx_produced(const ktx *t);
/** The open transaction can only abort: a message of it failed, or
 *  librdkafka refused a produce because the transaction failed.  Produce
 *  nothing more into it; commit (which aborts) as soon as no report is due. */
int ktx_doomed(const ktx *t);

/** Produce into the open transaction (value and key copied).  AW_EAGAIN when
 *  not open or the queue is full; AW_ETOOBIG when the record is larger than
 *  message.max.bytes (checked first: nothing is queued and the transaction
 *  stays healthy); AW_ESTATE when the transaction failed and takes nothing
 *  more (ktx_doomed from then on: abort it); AW_EINVAL for another permanent
 *  error (kp_err_code); AW_EKAFKA otherwise.
 *
 *  A message that the broker refuses (its delivery report carries the
 *  error: kp_err_permanent tells whether producing it again can help)
 *  makes the transaction abortable: the next commit aborts it and the done
 *  callback says so; the owner then produces its other messages again,
 *  with a smaller record, or none, in place of the refused one. */
int ktx_produce(ktx *t, const char *topic, const void *key, size_t keylen, const void *value,
                size_t len, void *msg_opaque) AW_MUST_CHECK;

/** Commit the open transaction with these offsets (taken over, may be NULL
 *  or empty) for the group of cgmd (taken over); every produced message
 *  must have its report (ktx_pending() == 0).  Returns at once; the done
 *  callback follows.  abort, or a failed message in the transaction,
 *  aborts it instead.  AW_EAGAIN when not open or reports are due (nothing taken). */
int ktx_commit(ktx *t, rd_kafka_topic_partition_list_t *offsets,
               rd_kafka_consumer_group_metadata_t *cgmd, int abort) AW_MUST_CHECK;

/** Block the loop (rebalance, shutdown) until a commit in progress is
 *  done (its done callback runs here) and every report due was served (the
 *  dr callbacks run here), up to timeout_ms.  AW_OK when the transaction
 *  is open with nothing due, AW_ETIMEDOUT, AW_ESTATE (fatal). */
int ktx_flush(ktx *t, int timeout_ms) AW_MUST_CHECK;

/** ktx_commit, blocking until its done callback has run.  AW_OK committed,
 *  AW_EKAFKA aborted, AW_ESTATE fatal or not open, AW_EAGAIN reports due. */
int ktx_commit_sync(ktx *t, rd_kafka_topic_partition_list_t *offsets,
                    rd_kafka_consumer_group_metadata_t *cgmd, int abort) AW_MUST_CHECK;

rd_kafka_t *ktx_handle(ktx *t);

/** The producer's message.max.bytes. */
size_t ktx_max_message_bytes(const ktx *t);

/** Is a commit (or abort) running on the module's thread? */
int ktx_committing(const ktx *t);

/** Stop the thread, abort an open transaction, free (blocking).  A call
 *  in progress on the thread makes no further attempt: this waits for at
 *  most one attempt (attempt_timeout_ms), plus the abort (5 s at most).
 *  Safe on NULL. */
void ktx_free(ktx *t);

#endif

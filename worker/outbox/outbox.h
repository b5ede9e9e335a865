/* outbox.h -- producing and committing (prefix wko_): tagged produces and
 * their delivery reports, the event's outcome into the Kafka transaction or
 * onto the idempotent producer, and offset commits.  Loop thread only. */
#ifndef AW_OUTBOX_H
#define AW_OUTBOX_H

#include "worker_int.h"

/** Produce on the idempotent producer with a delivery-report tag (DR_*);
 *  counts ev->pending_dr.  For deltas and tool requests; the outcome goes
 *  through wko_publish. */
int wko_produce(wk_event *ev, const char *topic, int kind, const void *key, size_t keylen,
                const void *val, size_t len, const char *const *headers, size_t nheaders);
/** Produce the encoded response kept in ev->out (and the DLQ record of a
 *  rejection), into the open transaction when answers are exactly-once;
 *  on a full queue, or while the transaction is closing, try again later.
 *  The event moves on from its delivery reports. */
void wko_publish(wk_event *ev);
/** The event no longer holds part of the open transaction (it finished). */
void wko_unowe(wk_event *ev);
/** Commit the done prefix of every assigned partition that moved (sync:
 *  wait; only for a revocation that is not held, which with transactions
 *  open happens only in wk_free). */
void wko_commit(wk *w, int sync);
/** wk_shutdown's last commit, without blocking the loop: waits for a commit
 *  in progress and the reports due (10 s at most), commits (or, an event
 *  still owed, aborts) on ktx's thread -- at-least-once, an asynchronous
 *  offset commit -- then calls done(w) once, possibly before returning.
 *  No other commit starts afterwards (the commit timer is stopped). */
void wko_commit_final(wk *w, void (*done)(wk *w));
/** wk_free, right after the events were freed: drop the outbox's lists of
 *  them (a commit made while freeing must not walk freed events). */
void wko_forget(wk *w);
/** Start the commit timer (wk_new, after the handles are initialised). */
void wko_start(wk *w);
/** kp callback: delivery report of anything the idempotent producer sent. */
void wko_on_dr(void *cb_opaque, void *msg_opaque, rd_kafka_resp_err_t err);
/** ktx callback: delivery report of a message in the transaction. */
void wko_on_txn_dr(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err);
/** ktx callback: transaction seq committed or aborted. */
void wko_on_txn_done(void *opaque, uint64_t seq, int committed, const char *errstr);

#endif

/* intake.h -- the requests topic's consumer side (prefix wki_): messages
 * become events, partitions are tracked, consumption is paused when too
 * much is in flight.  wk_lag (worker.h) is implemented here too: it reads
 * the same partition table.  Loop thread only. */
#ifndef AW_INTAKE_H
#define AW_INTAKE_H

#include "worker_int.h"

/** kc handler: a consumed request becomes an event queued behind its
 *  conversation (or answered as rejected); takes the message. */
void wki_on_message(void *opaque, rd_kafka_message_t *m);
/** kc handler: partitions assigned, STARTING: their committed offsets and
 *  commit metadata (the offsets answered beyond the committed one) are read
 *  off the loop, and they are consumed once that answer came (or the reads
 *  failed: then without the metadata). */
void wki_on_assign(void *opaque, const rd_kafka_topic_partition_list_t *parts);
/** kc handler: partitions revoked; commits synchronously first, then the
 *  partitions' events become stale. */
void wki_on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts);
/** Pause or resume partition n against its own in-flight limit (and, with
 *  transactions, the span its commit metadata can hold). */
void wki_check_partition(wk *w, int32_t n);
/** Pause or resume all consumption against max_in_flight. */
void wki_check_pressure(wk *w);
/** Was ev consumed under an earlier assignment of its partition (revoked
 *  since)?  Then its new owner answers it and nothing of it is committed. */
int wki_stale(const wk_event *ev);

#endif

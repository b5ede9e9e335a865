/* part_table.h -- the partitions a consumer owns and what it may commit of
 * each (prefix ptab_).
 *
 * Both consumers of the worker (requests: intake.c; tool replies:
 * tool_replies.c) hand messages out to work that completes out of order and
 * lose them to a rebalance at any moment.  They need the same bookkeeping,
 * written here once: a table indexed by partition number, grown on demand,
 * whose entries carry an offset tracker (what may be committed), whether the
 * partition is assigned, and a generation bumped on every assignment change
 * so that work started under an earlier assignment recognises itself as
 * stale (its partition's new owner answers it).  The skip set, running count,
 * pause flag and committed offset serve the request consumer only; the reply
 * consumer leaves them at their defaults.
 *
 * A partition's state is one enum, moved only by ptab_set_state (which logs
 * each change):
 *
 *   UNASSIGNED --ptab_assign_starting--> STARTING --ptab_start--> ACTIVE
 *        ^                          |                       |
 *        +------ptab_revoke---------+-----------------------+
 *
 * STARTING (request consumer): assigned, its committed offset and the commit
 * metadata (which offsets past it are done) are being read off the loop, and
 * the consumer holds it paused; nothing of it is consumed until ptab_start
 * takes the answer, which it does only for the generation that asked (a
 * partition revoked, or revoked and assigned again, meanwhile drops it).
 * The reply consumer assigns straight to ACTIVE (ptab_assign).
 *
 * Loop thread only (the consumer's callbacks run there).
 */
#ifndef AW_PART_TABLE_H
#define AW_PART_TABLE_H

#include <stdint.h>
#include <librdkafka/rdkafka.h>
#include "aw_error.h"
#include "kafka_consumer.h"
#include "offset_tracker.h"

typedef enum ptab_state { PTAB_UNASSIGNED = 0, PTAB_STARTING, PTAB_ACTIVE } ptab_state;

typedef struct ptab_part {
  otrk t;
  otrk_skip skip;  /* offsets answered beyond the committed one (commit metadata) */
  uint64_t gen;
  ptab_state state;
  int assigned;    /* state != PTAB_UNASSIGNED (kept by ptab_set_state, for readers) */
  long running;   /* messages of this partition consumed and not done */
  int paused;     /* paused by its own limit (max_in_flight_per_partition) */
  int64_t committed_at_assign; /* the group's committed offset when assigned, -1 if none (wk_lag) */
} ptab_part;

/** Zero-initialised (calloc, {0}) is an empty table. */
typedef struct ptab {
  ptab_part *v;
  int n;
} ptab;

/** Partition p's entry, growing the table to hold it; NULL when p < 0 or
 *  out of memory. */
ptab_part *ptab_get(ptab *pt, int32_t p);

/** Partition p's entry if it is assigned and still in generation gen (the
 *  one its work was consumed under), else NULL: the work is stale. */
ptab_part *ptab_current(const ptab *pt, int32_t p, uint64_t gen);

/** Move partition p's entry to state `to` (the one place that does), with
 *  a debug log line naming the partition, both states and why. */
void ptab_set_state(ptab *pt, int32_t p, ptab_state to, const char *why);

/** Name of a state, for logs. */
const char *ptab_state_name(ptab_state s);

/** Start a new generation of each listed partition, assigned (ACTIVE),
 *  with nothing tracked (rebalance callback). */
void ptab_assign(ptab *pt, const rd_kafka_topic_partition_list_t *parts);
/** The same, STARTING: nothing of them is consumed before ptab_start. */
void ptab_assign_starting(ptab *pt, const rd_kafka_topic_partition_list_t *parts);

/** Start a new generation of each listed partition, unassigned, with
 *  nothing tracked (rebalance callback, after the last commit). */
void ptab_revoke(ptab *pt, const rd_kafka_topic_partition_list_t *parts);

/** The start of partition p, read for generation gen: committed is the
 *  group's committed offset (< 0: none, or unknown) and md/mdlen the
 *  commit's metadata (NULL/0: none, or unknown).  Only while p is still
 *  STARTING in generation gen: then it keeps both (the skip set, the offset
 *  for wk_lag) and becomes ACTIVE: AW_OK, or AW_EPARSE when the metadata
 *  was unreadable (ignored: it starts with no skip set).  Else nothing
 *  changes: AW_ESTATE (the answer is stale: drop it).  Pure. */
int ptab_start(ptab *pt, int32_t p, uint64_t gen, int64_t committed, const void *md, size_t mdlen) AW_MUST_CHECK;

/** At-least-once: commit to topic, through c, the commit point of every
 *  assigned partition that moved since the last call (sync: wait for the
 *  broker).  AW_OK also when nothing moved. */
int ptab_commit(ptab *pt, kc *c, const char *topic, int sync) AW_MUST_CHECK;

/** ptab_commit without blocking, for the shutdown: done(opaque, err)
 *  follows on the loop (kc_commit_notify).  AW_ENOTFOUND when nothing moved
 *  (done is not called), else as kc_commit_notify. */
int ptab_commit_notify(ptab *pt, kc *c, const char *topic, kc_commit_done_fn done, void *opaque) AW_MUST_CHECK;

/** Log an assignment change ("partitions assigned" / "partitions revoked"). */
void ptab_log(const char *what, const char *topic, const rd_kafka_topic_partition_list_t *parts);

/** Free every entry's storage and the table; it is empty afterwards. */
void ptab_free(ptab *pt);

#endif

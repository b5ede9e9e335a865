/* offset_tracker.h -- which offsets of a partition may be committed
 * (prefix otrk_).
 *
 * Events of one partition complete out of order (different conversations
 * run concurrently), but a Kafka commit says "everything before N is done".
 * The tracker records the offsets handed out, in increasing order, and
 * which are done; the commit point is the first offset not yet done (or one
 * past the last offset seen when everything is done).  Offsets need not be
 * contiguous: compaction and transaction markers leave gaps.
 *
 * Storage is a ring of (offset, done) pairs whose size is the partition's
 * in-flight count, so memory is O(in flight), and every operation is O(1)
 * amortised except otrk_done, which is O(log n) by binary search.
 */
#ifndef AW_OFFSET_TRACKER_H
#define AW_OFFSET_TRACKER_H

#include <stddef.h>
#include <stdint.h>
#include "aw_error.h"

typedef struct otrk {
  int64_t *offs;      /* ring of offsets in increasing order */
  unsigned char *done;
  size_t cap, head, len;
  int64_t next_after; /* one past the last offset added; -1 before any */
  int64_t committed;  /* last commit point handed out by otrk_take_commit */
} otrk;

/** Initialise empty. */
void otrk_init(otrk *t);
/** Free storage. */
void otrk_free(otrk *t);
/** Record that offset was consumed; offsets must increase.  AW_EINVAL if
 *  not, AW_ENOMEM. */
int otrk_add(otrk *t, int64_t offset) AW_MUST_CHECK;
/** Mark offset done.  AW_ENOTFOUND if it is not tracked. */
int otrk_done(otrk *t, int64_t offset) AW_MUST_CHECK;
/** Number of offsets added and not yet retired (done and committed over). */
size_t otrk_in_flight(const otrk *t);
/** The offset to commit (the next offset to read), or -1 if nothing was
 *  ever added. */
int64_t otrk_commit_point(const otrk *t);
/** If the commit point moved since the last call, store it in *out and
 *  return 1; else 0. */
int otrk_take_commit(otrk *t, int64_t *out);

#endif

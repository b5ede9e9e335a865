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
 *  not (or offset < 0, or INT64_MAX), AW_ENOMEM. */
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

/* ---- the done set beyond the commit point, as commit metadata ------------
 *
 * Events complete out of order, so offsets after the commit point may be
 * done already (answered, in the same Kafka transaction as the commit).  The
 * commit carries them in its metadata so that a new owner of the partition
 * skips them instead of answering them twice:
 *
 *   "aw1:" base64( bitmap )   bit i (LSB first in each byte) set <=> offset
 *                             commit_point + 1 + i is done
 *
 * "" when nothing beyond the commit point is done.  The broker caps commit
 * metadata (offset.metadata.max.bytes, 4096 by default): OTRK_META_MAX_SPAN
 * offsets past the commit point fit in 4096 bytes, and the worker holds a
 * partition back before its tracker spans more (never drops the record). */
#define OTRK_META_PREFIX "aw1:"
#define OTRK_META_MAX_BYTES 4096
#define OTRK_META_MAX_SPAN ((size_t)((OTRK_META_MAX_BYTES - 8) / 4 * 3 * 8))

/** Write the metadata of t into out (NUL-terminated).  AW_ETOOBIG when it
 *  needs more than outsz bytes (or the span exceeds OTRK_META_MAX_SPAN). */
int otrk_metadata(const otrk *t, char *out, size_t outsz) AW_MUST_CHECK;

/** Offsets already done after a committed offset, read back from metadata. */
typedef struct otrk_skip {
  int64_t base;         /* the committed offset; bit i is offset base + 1 + i */
  unsigned char *bits;
  size_t nbits;
} otrk_skip;

/** Parse metadata written by otrk_metadata for a commit at base (it comes
 *  from the broker: any member of the group may have written it).  Metadata
 *  that is empty, foreign (no aw1: prefix) or malformed gives an empty set
 *  (and AW_EPARSE for the malformed case, so the caller can log it); so does
 *  a negative base (AW_EINVAL).  Pure: any thread. */
int otrk_skip_parse(otrk_skip *s, int64_t base, const void *md, size_t len) AW_MUST_CHECK;

/** Was offset done according to s? */
int otrk_skip_has(const otrk_skip *s, int64_t offset);

void otrk_skip_free(otrk_skip *s);

#endif

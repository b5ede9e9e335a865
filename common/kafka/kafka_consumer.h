/* kafka_consumer.h -- a Kafka group consumer on the libuv loop (prefix kc_).
 *
 * Offsets are never committed automatically: enable.auto.commit and
 * enable.auto.offset.store are forced off and the owner commits exactly the
 * offsets whose outcome is durable (kc_commit).  Messages are handed over
 * one at a time; the handler owns each message (it must
 * rd_kafka_message_destroy it, normally at once after copying what it needs,
 * because a held message pins librdkafka's whole fetch buffer).
 *
 * Pausing has layers, and librdkafka keeps one flag per partition, so this
 * module keeps the reasons and sets the flag from all of them: a partition
 * fetches only while nothing holds it: not the whole consumer (kc_pause),
 * not its owner's own reasons (kc_pause_partition: KC_PAUSE_LIMIT, its
 * backpressure; KC_PAUSE_START, its start is not known yet) and not a held
 * revocation.  So kc_resume never resumes a partition its owner holds, and
 * lifting one reason never resumes a partition another one holds.
 */
#ifndef AW_KAFKA_CONSUMER_H
#define AW_KAFKA_CONSUMER_H

#include <librdkafka/rdkafka.h>
#include <uv.h>
#include "aw_error.h"

typedef struct kc kc;

typedef struct kc_handlers {
  /** A message (or a consumer error in msg->err).  Takes ownership of msg. */
  void (*on_message)(void *opaque, rd_kafka_message_t *msg);
  /** Partitions were assigned: already ours (kc_pause_partition works on
   *  them) and paused where they should be; nothing of them was delivered
   *  yet. */
  void (*on_assign)(void *opaque, const rd_kafka_topic_partition_list_t *parts);
  /** Partitions are about to be revoked: last chance to commit them. */
  void (*on_revoke)(void *opaque, const rd_kafka_topic_partition_list_t *parts);
} kc_handlers;

/** Create a consumer subscribed to topic (logged: "consumer subscribed").
 *  Takes ownership of conf on success (the caller NULLs it).  max_batch
 *  bounds the messages handed over in one loop iteration. */
int kc_new(uv_loop_t *loop, rd_kafka_conf_t *conf, const char *topic, const kc_handlers *h,
           void *opaque, int max_batch, kc **out, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** A revocation gate: asked before a revocation is carried out (the
 *  owner's on_revoke, then the unassign).  It returns 0 to carry it out at
 *  once, 1 to hold it: the revoked partitions are paused and the
 *  revocation waits, without blocking the loop, for kc_revoke_release
 *  (the owner first commits what it finished on them, on its own thread).
 *  librdkafka allows the unassign outside the rebalance callback; the group
 *  waits for it (up to max.poll.interval.ms) before it completes the
 *  rebalance, so the next owner starts from the committed offsets.  Not
 *  asked for lost partitions (there is nothing left to commit) nor while
 *  closing.  gate NULL removes it. */
typedef int (*kc_revoke_gate_fn)(void *opaque, const rd_kafka_topic_partition_list_t *parts);
void kc_set_revoke_gate(kc *c, kc_revoke_gate_fn gate, void *opaque);
/** Is a revocation held? */
int kc_revoke_held(const kc *c);
/** Carry out the held revocation now (on_revoke, then the unassign); no-op
 *  when none is held.  Loop thread, never from a kc callback. */
void kc_revoke_release(kc *c);
/** Inside on_revoke: KC_REVOKE_HELD for a revocation that was held (the
 *  gate's commit is done), KC_REVOKE_LOST for lost partitions (a commit
 *  would be refused), KC_REVOKE_NOW for one carried out at once; 0 outside. */
enum { KC_REVOKE_NOW = 1, KC_REVOKE_HELD = 2, KC_REVOKE_LOST = 3 };
int kc_revoking(const kc *c);

/** Pause / resume the whole consumer (backpressure).  kc_resume resumes
 *  only the partitions nothing else holds. */
int kc_pause(kc *c) AW_MUST_CHECK;
int kc_resume(kc *c) AW_MUST_CHECK;
/** The owner's reasons to hold one partition (bits). */
enum { KC_PAUSE_LIMIT = 1, KC_PAUSE_START = 2 };
/** Hold (on=1) or release (0) one assigned partition for reason (a
 *  KC_PAUSE_* bit); it fetches while no reason, no kc_pause and no held
 *  revocation holds it.  AW_ENOTFOUND when it is not assigned, AW_EKAFKA. */
int kc_pause_partition(kc *c, int32_t partition, unsigned reason, int on) AW_MUST_CHECK;
/** Is the whole consumer paused (kc_pause)? */
int kc_paused(const kc *c);
/** on != 0: from now on every partition is assigned held for
 *  KC_PAUSE_START and fetches only once the owner released it
 *  (kc_pause_partition), e.g. after reading its committed offsets
 *  (kc_committed).  Call right after kc_new, before the loop runs. */
void kc_set_start_held(kc *c, int on);

/** kc_committed's result, on the loop: AW_OK with offsets (each listed
 *  partition with its committed offset, RD_KAFKA_OFFSET_INVALID if none, and
 *  the commit's metadata; the callee owns the list), or an error (errstr)
 *  with offsets NULL: AW_ETIMEDOUT / AW_EKAFKA after the last attempt,
 *  AW_ECANCELLED when the consumer closes first.  Called exactly once. */
typedef void (*kc_committed_fn)(void *opaque, rd_kafka_topic_partition_list_t *offsets, int err,
                                const char *errstr);
/** Read the group's committed offsets of parts without blocking the loop
 *  (kafka_committed.h: a pool thread, attempt_timeout_ms per attempt, at
 *  most max_attempts, backoff between them).  kc_close cancels what is
 *  still running (done then gets AW_ECANCELLED).  AW_ENOMEM (done is not
 *  called).  Loop thread. */
int kc_committed(kc *c, const rd_kafka_topic_partition_list_t *parts, int attempt_timeout_ms, int max_attempts,
                 kc_committed_fn done, void *opaque) AW_MUST_CHECK;

/** Commit offsets (the next offset to read, per partition); async=1 returns
 *  at once, async=0 waits for the broker (blocking: not on the running loop;
 *  the shutdown uses kc_commit_notify). */
int kc_commit(kc *c, const rd_kafka_topic_partition_list_t *offsets, int async) AW_MUST_CHECK;

/** Called on the loop with the result of kc_commit_notify: AW_OK, or
 *  AW_EKAFKA (logged). */
typedef void (*kc_commit_done_fn)(void *opaque, int err);
/** Commit offsets without blocking and call done(opaque, err) once the
 *  broker answered (shutdown: the loop keeps running meanwhile).  AW_OK when
 *  the commit was sent (done follows, unless the consumer is closed
 *  first); otherwise done is never called: AW_ESTATE while another
 *  notified commit is due or when closing, AW_EKAFKA.  Loop thread. */
int kc_commit_notify(kc *c, const rd_kafka_topic_partition_list_t *offsets, kc_commit_done_fn done,
                     void *opaque) AW_MUST_CHECK;

/** The librdkafka handle (for metrics and admin). */
rd_kafka_t *kc_handle(kc *c);

/** Leave the group (blocking: revoke callbacks run) and free.  Safe on
 *  NULL.  Cancels the kc_committed fetches first (waiting at most for an
 *  attempt under way).  A consumer whose group answered its join but not
 *  yet its first assignment is first given up to KC_CLOSE_SETTLE_MS to
 *  receive it (assigned paused, never handed to the owner): librdkafka 2.0.2
 *  aborts the process when such a cooperative-sticky consumer is destroyed
 *  (see kafka_consumer.c). */
#define KC_CLOSE_SETTLE_MS 10000
void kc_close(kc *c);

#endif

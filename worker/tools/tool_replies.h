/* tool_replies.h -- the tool-reply consumer (prefix trep_).
 *
 * Every worker consumes the reply topic in one consumer group for the whole
 * fleet ("<group_id>.tool-replies"), so a reply reaches one worker, not
 * necessarily the one waiting for it.  For each reply:
 *
 *   decode (ctool_reply_decode)             -> else DLQ with the decoder's code
 *   check the service's signature (aw-sig header, tsig_reply_verify with
 *   the tool request key)                   -> else DLQ unsigned_reply /
 *                                              bad_reply_signature
 *   find its call (tstate_corr_lookup of the id's nonce digest)
 *                                           -> else DLQ unknown_correlation_id
 *   check the id's signature for that conversation, run and call and for
 *   the topic the reply came from (corr_verify_pinned)
 *                                           -> else DLQ wrong_reply_topic (it
 *                                              verifies for another pinned
 *                                              topic) / bad_correlation_id
 *   deadline not passed                     -> else DLQ run_not_waiting
 *   record the output (tstate_apply_reply)  -> else DLQ already_answered /
 *                                              run_not_waiting / unknown_...
 *   last output of the round: wake the run's owner (a direct call when the
 *   owner is this worker, else tstate_wake).
 *
 * The reply signature comes first and needs no state: a reply that anyone
 * who reads the request topic could have written (it has seen the
 * correlation id) is dead-lettered before it can take the call's place, so
 * the genuine reply, arriving later, is the one recorded.  A worker runs
 * one trep per distinct reply topic of its functions (worker_tools.c).
 *
 * An error reply is recorded as the output {"error":{"code":..,"message":..}}
 * (what the model reads).  Offsets are committed as the contiguous prefix of
 * replies whose outcome is durable (recorded in Redis, or dead-lettered and
 * delivered); a Redis failure retries the reply, it is never dropped.
 * Dead letters use the worker's producer, whose delivery reports the worker
 * hands back through trep_on_dr.
 */
#ifndef AW_TOOL_REPLIES_H
#define AW_TOOL_REPLIES_H

#include <librdkafka/rdkafka.h>
#include <uv.h>
#include "aw_error.h"
#include "correlation.h"
#include "kafka_producer.h"
#include "tool_sign.h"
#include "tool_state.h"

typedef struct trep trep;

/** The last output of conv/run's round was recorded and this worker owns it. */
typedef void (*trep_complete_fn)(void *opaque, const char *conv, const char *run);

typedef struct trep_config {
  const char *topic;       /* the reply topic */
  const char *dlq_topic;
  const char *owner;       /* this worker's instance id (tool_state's owner) */
  size_t max_output;       /* 0: CTOOL_DEFAULT_MAX_OUTPUT */
  int max_in_flight;       /* replies being applied before consumption pauses (default 1000) */
  long commit_interval_ms; /* default 200 */
  /* Reply authentication (borrowed, must outlive the trep): */
  const tsig_key *request_key;        /* verifies the services' reply signatures; NULL refuses every reply */
  const char *const *pinned_topics;   /* every reply topic of the worker's functions (wrong_reply_topic) */
  size_t npinned;
  int accept_unpinned;     /* also accept "tc1." ids (older workers, which named only the default
                              reply topic): set on the default reply topic's trep */
} trep_config;

typedef struct trep_stats {
  unsigned long consumed, recorded, dlq, redis_errors, kafka_errors;
  /* dead letters among dlq by reason: */
  unsigned long unsigned_replies, bad_signatures, wrong_topic;
} trep_stats;

/** Start consuming.  Takes ownership of consumer_conf on success (and on
 *  failure: it is freed).  producer, ts and key are borrowed and must
 *  outlive the trep.  msg_opaque of every produced dead letter has its low
 *  3 bits clear, for the caller to tag. */
int trep_new(uv_loop_t *loop, const trep_config *cfg, rd_kafka_conf_t *consumer_conf, kp *producer,
             tstate *ts, const corr_key *key, trep_complete_fn on_complete, void *opaque,
             unsigned dr_tag, trep **out, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Delivery report of a dead letter this module produced (msg_opaque with
 *  the caller's tag removed).  t may be any trep of the worker: the message
 *  knows its own. */
void trep_on_dr(trep *t, void *msg_opaque, rd_kafka_resp_err_t err);

/** Stop consuming and commit what is done (shutdown). */
void trep_stop(trep *t);

/** Replies consumed and not yet done. */
long trep_in_flight(const trep *t);

void trep_get_stats(const trep *t, trep_stats *out);

/** Close the consumer and free; pending Redis callbacks must have run
 *  (free the Redis connection first).  Safe on NULL. */
void trep_free(trep *t);

#endif

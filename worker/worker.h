/* worker.h -- the Kafka side of the service: one event in, one answer out
 * (prefix wk_).
 *
 * Each consumed request becomes an event that moves through one state
 * machine (see wk_state and its transition function in event/event.c):
 *
 *   RECEIVED -> QUEUED (behind earlier events of its conversation)
 *   -> LOOKUP (outcome record, the conversation's backend handle and a claim
 *      of the event's progress record in Redis, pipelined in one round trip)
 *   -> FILES (a message naming files or carrying inline bytes: the file ids
 *      checked, the bytes uploaded once per event: event/attach.h)
 *   -> TURN (the backend's turn: be_turn_start; deltas published if asked)
 *   -> TOOLS (the turn waits for function outputs routed over Kafka:
 *      worker_tools.c; back to TURN with be_turn_continue)
 *   -> PUBLISHING (response produced; waiting for its delivery report)
 *   -> COMMITTING (exactly-once: the response is in the open Kafka
 *      transaction, which commits it with the offsets)
 *   -> RECORDING (outcome record written to Redis)
 *   -> DONE (offset may be committed)
 *
 * A re-processed event (redelivered after a crash or a rebalance) continues
 * what the earlier attempt started instead of repeating it: its progress
 * record holds the backend's last checkpoint (opaque here), and the backend
 * is asked to recover the turn from it (or, when the record holds none, to
 * look for what the event created) -- see backend.h.
 *
 * Rejected input (undecodable, invalid, unknown assistant; keyed against
 * worker.key_rule or without the tenant worker.tenant_source asks for,
 * ev_identity.h; an override its assistant does not allow, overrides.h) goes
 * QUEUED -> PUBLISHING with a `rejected` response and a DLQ record, looking
 * nothing up and recording nothing, so it claims no event_id (event_claim.h;
 * an event_id a different message holds is found at LOOKUP -> PUBLISHING).
 * Offsets are committed as the contiguous prefix of done events per
 * partition: exactly-once (txn_conf given), in the transaction holding the
 * responses, with the offsets done beyond that prefix in the commit
 * metadata (skipped when read again); at-least-once, after delivery, every
 * commit_interval_ms.  Neither a revocation nor the shutdown blocks the loop
 * to commit (outbox.c: a held revocation, the shutdown's last commit on the
 * transaction thread; at-least-once, asynchronous commits), nor an
 * assignment to read its commit metadata (intake.c: the partitions wait,
 * paused, for a read on a pool thread).  Events of one conversation run strictly one after
 * another; events of different conversations run concurrently, up to
 * max_in_flight consumed-but-not-done events or max_inflight_bytes of them
 * (wk_event_bytes), beyond which consumption is paused, and up to
 * max_in_flight_per_partition of one partition, beyond which that partition
 * alone is paused.  One conversation holds at most max_queue_per_conversation
 * of them: beyond that an event is answered `rejected` with
 * conversation_queue_full (and dead-lettered with its original bytes, for a
 * replay), so that a burst on one conversation cannot take max_in_flight
 * and stall every partition while its events run one by one.
 */
#ifndef AW_WORKER_H
#define AW_WORKER_H

#include <librdkafka/rdkafka.h>
#include <uv.h>
#include "api_client.h"
#include "aw_error.h"
#include "backend.h"
#include "contract.h"
#include "correlation.h"
#include "ev_identity.h"
#include "redis_conn.h"
#include "tool_sign.h"

typedef struct wk wk;

/** Maps a configured assistant name to its definition (NULL if unknown). */
typedef const be_assistant *(*wk_resolve_fn)(void *opaque, const char *name);

/** The request fields (event/overrides.h: WKOV_* bits) a request for the
 *  configured assistant called name may override. */
typedef unsigned (*wk_overrides_fn)(void *opaque, const char *name);

/** Latencies the worker reports as they happen (for histograms). */
typedef enum wk_obs {
  WK_OBS_EVENT_SECONDS,      /* consumed -> outcome published, per answered event */
  WK_OBS_TOOL_ROUND_SECONDS, /* tool requests published -> outputs submitted, per round */
  WK_OBS_TXN_COMMIT_SECONDS, /* a Kafka transaction's commit (or abort), start to done */
} wk_obs;
typedef void (*wk_observe_fn)(void *opaque, wk_obs what, double value);

/** How the calls of one function are routed (see config.h's cfg_function). */
typedef struct wk_tool_route {
  const char *name;
  const char *topic;           /* where its tool requests go */
  long deadline_ms;            /* how long a reply is waited for */
  int cancel_on_deadline;      /* 0: submit a tool_timeout error output; 1: cancel the run */
  int validate_arguments;      /* check the arguments against parameters_json first */
  const char *parameters_json; /* the function's JSON Schema, or NULL */
  const char *reply_topic;     /* named in its requests; its replies count only from there */
} wk_tool_route;

typedef struct wk_config {
  const char *topic_requests, *topic_responses, *topic_deltas, *topic_dlq;
  const char *redis_prefix;
  int max_in_flight;          /* consumed but not done; default 1000 */
  int max_in_flight_per_partition; /* the same per partition; 0 = no own limit */
  contract_limits limits;     /* request decoding limits */
  long commit_interval_ms;    /* default 200 */
  long delta_window_ms;       /* coalescing window for deltas; default 20 */
  long shutdown_grace_ms;     /* default 30000 */
  wk_resolve_fn resolve_assistant;
  void *resolve_opaque;
  /* What a request may override (event/overrides.h), checked at admission.
   * Zeroed: the default allowance (additional_instructions) and no asst_
   * ids. */
  wk_overrides_fn allowed_overrides; /* NULL: the default allowance for every assistant */
  void *overrides_opaque;
  int allow_assistant_ids;    /* worker.allow_assistant_ids: a request may name an asst_ id */
  int reset_deletes_old;      /* worker.reset_deletes_old: a `reset` request deletes the old
                                 backend conversation (default 0: kept; conv_request.h) */
  /* Function calling (worker_tools.c).  ntool_routes == 0: no function is
   * routed, and a run that asks for tool outputs is cancelled
   * (tool_calls_unsupported).  Otherwise tool_key (borrowed) signs the
   * correlation ids and replies are consumed from topic_tool_replies. */
  const wk_tool_route *tool_routes; /* copied by wk_new */
  size_t ntool_routes;
  const char *topic_tool_replies;
  const corr_key *tool_key;
  const tsig_key *tool_request_key; /* borrowed: signs tool requests, verifies replies (tool_sign.h) */
  wk_observe_fn observe;      /* optional */
  void *observe_opaque;
  long txn_interval_ms;       /* exactly-once: least time between two commits (default 20) */
  void (*on_fatal)(void *opaque); /* the worker cannot go on (fenced transactions): restart */
  void *fatal_opaque;
  /* Bounds (issue 11 part 3).  Each is a documented setting; 0 turns the
   * bound off where noted. */
  int max_queue_per_conversation; /* events of one conversation consumed and not done; beyond
                                     it an event is answered `rejected` (conversation_queue_full)
                                     at once; default 100, 0 = no limit */
  long max_inflight_bytes;    /* decoded events in flight (wk_event_bytes); consumption pauses
                                 past it; default 256 MiB, 0 = no limit */
  int max_tool_rounds;        /* rounds of tool calls per turn; past it the turn is cancelled
                                 and answered `failed` (too_many_tool_rounds); default 16 */
  long conversation_ttl_s;    /* the conversation -> backend handle key, refreshed on every
                                 use; default 30 days, 0 = never expires */
  long outcome_ttl_s;         /* an event's outcome and progress records; default 7 days */
  long tool_state_ttl_s;      /* a waiting turn's tool state, correlation records and wake
                                 lists (at least the longest deadline + 60 s); default 900 */
  long tool_state_done_ttl_s; /* a finished turn's tool state; default 3600 */
  /* Whose conversation an event is (ev_identity.h): worker.key_rule and
   * worker.tenant_source; zeroed: key rule match, no tenant.  With a tenant
   * source every store's references carry the tenant (rkeys.h). */
  wid_rules identity;
  /* Usage records (outbox/usage.h): one per finished turn that reached the
   * API, produced with its response (in its Kafka transaction).  NULL: none
   * (the default here; `run` turns them on with kafka.topics.usage). */
  const char *topic_usage;
  const char *usage_tenant_key; /* metadata key whose value is the record's tenant
                                   when the event has none of its own; NULL: none */
  /* Optional: told of every usage record once it is durable (labels
   * bounded as wku_labels says), opaque observe_opaque. */
  void (*usage_observe)(void *opaque, const char *assistant, const char *model, const int64_t tokens[4]);
  /* Files (event/attach.h): the Files API client the worker checks a
   * request's file ids and uploads its inline bytes with, before the turn
   * (borrowed; NULL: nothing is uploaded or checked -- the chat backend,
   * whose servers have no files, sends inline images as data: URLs). */
  api_client *files_api;
  size_t inline_file_max;     /* worker.inline_file_max_bytes: generated files up to this
                                 size come back inline; 0: always by reference */
} wk_config;

/** Outcomes of wk_stats.conv_requests. */
enum { WK_CONV_COMPLETED = 0, WK_CONV_FAILED = 1, WK_CONV_REJECTED = 2 };

/** Counters, for logs and /metrics. */
typedef struct wk_stats {
  unsigned long txn_commits, txn_aborts;
  unsigned long consumed, answered, rejected, failed, skipped_duplicates;
  unsigned long tool_requests, tool_rounds, tool_timeouts, tool_replies, tool_replies_dlq;
  /* among tool_replies_dlq: unsigned_reply, bad_reply_signature, wrong_reply_topic */
  unsigned long tool_replies_unsigned, tool_replies_bad_signature, tool_replies_wrong_topic;
  long tool_waiting;          /* runs waiting for tool replies now */
  unsigned long deltas, dlq, redis_errors, kafka_errors, produce_retries;
  long in_flight;
  long in_flight_bytes;       /* the sum of wk_event_bytes of the events in flight */
  unsigned long conv_queue_full; /* events answered conversation_queue_full */
  unsigned long tool_round_cap;  /* turns ended too_many_tool_rounds */
  unsigned long usage_records;   /* usage records durable (committed, or delivered) */
  /* Conversation requests by kind (contract_kind) and outcome (WK_CONV_*);
   * a kind's rejections counted when the request decoded. */
  unsigned long conv_requests[CONTRACT_KIND_COUNT][3];
  int paused;
} wk_stats;

/** Defaults for wk_config (topics: assistant.requests etc). */
void wk_config_default(wk_config *c);

/** Create the worker and subscribe.  txn_conf (with a transactional.id)
 *  makes answers exactly-once: responses and DLQ records are produced in
 *  Kafka transactions that also commit the consumed offsets; NULL keeps
 *  at-least-once (responses on the idempotent producer, offsets committed
 *  after delivery).  reply_conf configures the tool-reply
 *  consumer (its group.id set by the caller); NULL when no function is
 *  routed.  Takes ownership of the confs on success; be and redis are
 *  borrowed and must outlive the worker. */
int wk_new(uv_loop_t *loop, const wk_config *cfg, rd_kafka_conf_t *consumer_conf,
           rd_kafka_conf_t *producer_conf, rd_kafka_conf_t *txn_conf, rd_kafka_conf_t *reply_conf,
           be_backend *be, rconn *redis, wk **out, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Stop consuming, let in-flight events finish (up to the grace period),
 *  commit, then call done(opaque).  Idempotent. */
void wk_shutdown(wk *w, void (*done)(void *opaque), void *opaque);

/** Current counters. */
void wk_get_stats(const wk *w, wk_stats *out);

/** Hold (1) or release (0) consumption from outside the worker, on top of
 *  its own limits: the API rate gate holds it while too many turns wait for
 *  the fleet's rate limit (worker/ratelimit/rate_gate.h).  Shows in
 *  wk_stats.paused like the in-flight limit.  Loop thread. */
void wk_hold(wk *w, int hold);

/** Lag of one partition of the requests topic: messages not yet done. */
typedef void (*wk_lag_fn)(void *opaque, int32_t partition, int64_t lag);

/** Call cb for each partition of the requests topic assigned to w whose lag
 *  is known: librdkafka's cached high watermark (refreshed by fetches, so
 *  it stands still while the partition is paused; never a broker round
 *  trip) minus the partition's commit point (the first offset not yet done;
 *  before anything was consumed since the assignment, the offset committed
 *  then, or for a group without one the cached low watermark), at least 0.
 *  Returns the number of partitions reported.  Loop thread; no allocation. */
int wk_lag(const wk *w, wk_lag_fn cb, void *opaque);

/** Free after wk_shutdown completed.  Safe on NULL. */
void wk_free(wk *w);

#endif

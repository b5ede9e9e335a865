/* tool_state.h -- the state of turns waiting for tool replies, in Redis
 * (prefix tstate_).
 *
 * A "run" below is a turn, named by our turn token (a digest of the
 * tenant, conversation and event ids), never by a backend's id.  A "conv"
 * is a conversation reference (rkeys.h: the conversation id, or
 * "<enc tenant>:<conversation id>" with tenants), so that a reply consumed
 * by any worker finds the tenant's turn again; keys are built by rkeys.h
 * (<tag> = c:<enc conversation> or t:<enc tenant>:c:<enc conversation>).
 *
 * A run that stops in requires_action is waited on by the worker that owns
 * its request event, but its replies may be consumed by any worker of the
 * fleet, and its owner may die while it waits.  So everything about the
 * wait lives in Redis, changed only by the Lua scripts below (each runs
 * atomically, which is what makes "exactly one output per call" and "the
 * round is complete" hold across workers):
 *
 *   <prefix>:{<tag>}:turn:<turn token>   hash, one per waiting turn
 *       round        current round number (1, 2, ... one per requires_action)
 *       calls:<r>    the call ids of round r, space-separated, in order
 *       state        waiting | submitting | done
 *       missing      calls of the current round without an output
 *       owner        the worker instance that owns the run's event
 *       ev           the event id (for humans)
 *       pub          the round whose tool requests are all durable in Kafka
 *       cancel       the function whose deadline cancelled the run, if any
 *       r:<id> n:<id> d:<id> p:<id>  a call's round, function name,
 *                    deadline (unix ms) and policy (e = error output,
 *                    c = cancel the run)
 *       x:<id>       the output to submit if the deadline passes
 *       o:<id> k:<id> its output and outcome (output, error, timeout,
 *                    invalid_arguments, unknown_function), once known
 *     Bounded: a turn has at most max_rounds rounds (worker.max_tool_rounds;
 *     the round past it is not recorded), and when a round begins the
 *     previous round's o:, x:, d: and p: fields are dropped (tstate_finish
 *     drops the last round's): only r:, n: and k: of finished rounds stay,
 *     what the response's tool_calls and the DLQ verdicts need.
 *     It expires wait_ttl_ms after the last round began
 *     (worker.tool_state_ttl_s, 15 minutes: the Assistants API expires a
 *     waiting run after 10) and done_ttl_ms after the run ended
 *     (worker.tool_state_done_ttl_s, an hour).
 *   <prefix>:tc:<digest>   (expires wait_ttl_ms after its round began)
 *       "<run> <call> <conv>" for each issued
 *       correlation id; digest = corr_digest of the id's first
 *       TSTATE_CORR_KEY_CHARS characters (its nonce), so a reply whose
 *       signature part was tampered with still finds the record and fails
 *       corr_verify (bad_correlation_id) instead of looking unknown.
 *   <prefix>:wake:<owner>  list of "<run> <conv>" whose round became
 *       complete on another worker; the owner drains it (LPOP) on a short
 *       tick while it has waiting runs (expires wait_ttl_ms after the last
 *       push: a dead owner's list does not linger).
 *
 * Deadlines are applied by the owner (tstate_collect writes the timeout
 * outputs of the calls whose deadline has passed), so they survive the
 * owner's death: its heir re-reads them from the hash.
 *
 * Callbacks run on the loop, exactly once per accepted call; strings they
 * receive are valid during the callback only.  Every function returns
 * AW_EREDIS when the command could not be sent (the callback is then not
 * called).
 */
#ifndef AW_TOOL_STATE_H
#define AW_TOOL_STATE_H

#include <stddef.h>
#include <stdint.h>
#include "aw_error.h"
#include "redis_conn.h"
#include "rkeys.h"

#define TSTATE_CORR_KEY_CHARS 26 /* "tc1." + 22 base64url chars: the 16-byte nonce */
#define TSTATE_WAIT_TTL_MS (15 * 60 * 1000L)
#define TSTATE_DONE_TTL_MS (60 * 60 * 1000L)
#define TSTATE_DEFAULT_MAX_ROUNDS 16
/* How long a round's submission claim keeps another attempt from
 * submitting it: longer than a submission takes to be visible to the
 * backend's recovery (the request's first bytes back), short enough that a
 * crash right after claiming delays the event's recovery only this long. */
#define TSTATE_SUBMIT_LEASE_MS (15 * 1000L)

typedef struct tstate {
  rconn *redis;
  rk_space keys;     /* prefix, and whether references carry a tenant (keys.tenanted, set
                        after init when worker.tenant_source is not none) */
  long wait_ttl_ms;  /* a waiting turn's hash, correlation records, wake lists */
  long done_ttl_ms;  /* a finished turn's hash */
  long max_rounds;   /* rounds per turn; 0: no cap */
  long submit_lease_ms; /* TSTATE_SUBMIT_LEASE_MS; tests shorten it */
} tstate;

/** Initialise with the default lifetimes and cap (TSTATE_*); the caller may
 *  set wait_ttl_ms, done_ttl_ms and max_rounds afterwards. */
void tstate_init(tstate *t, rconn *redis, const char *prefix);

/** One call of a round, as recorded by tstate_round_begin. */
typedef struct tstate_call {
  const char *id;             /* call_...; no spaces */
  const char *name;
  int64_t deadline_ms;        /* unix ms */
  int cancel_on_deadline;     /* 0: submit timeout_output; 1: cancel the run */
  const char *timeout_output; /* the output submitted when the deadline passes */
  const char *preset_kind;    /* NULL: wait for a reply; else the outcome is
                                 decided now (invalid_arguments, ...) */
  const char *preset_output;  /* with preset_kind */
  const char *corr_digest;    /* corr record to write (NULL for preset calls) */
} tstate_call;

/** fresh: 1 when this call recorded the round, 0 when it was recorded
 *  before (a re-processed event: pub says whether its requests are durable);
 *  round: the round's number (1, 2, ...) within the turn.  err AW_ETOOBIG:
 *  the turn already has max_rounds rounds; nothing was recorded (round: the
 *  last one's number). */
typedef void (*tstate_begin_cb)(void *opaque, int err, int fresh, long missing, int published, long round);

/** Record a round of calls for the run (owner = this worker) and the
 *  correlation records of the calls that wait for a reply.  API ids (run,
 *  call) never hold spaces; conversation ids may, so they come last in
 *  every space-separated value.  Idempotent per
 *  round: a round whose first call is already recorded only takes the new
 *  owner. */
int tstate_round_begin(tstate *t, const char *conv, const char *run, const char *event_id,
                       const char *owner, const tstate_call *calls, size_t n, tstate_begin_cb cb,
                       void *opaque) AW_MUST_CHECK;

/** Mark the current round's tool requests as durable (fire and forget). */
void tstate_set_published(tstate *t, const char *conv, const char *run);

/** Lookup of a correlation record: value "<run> <call> <conv>", or NULL
 *  when there is none. */
typedef void (*tstate_corr_cb)(void *opaque, int err, const char *value);
int tstate_corr_lookup(tstate *t, const char *digest, tstate_corr_cb cb, void *opaque) AW_MUST_CHECK;

/* ---- the values above, read back --------------------------------------------
 *
 * What Redis hands back is data anyone with access to the instance could
 * have written: the parsers below take (bytes, length) and check every part
 * before a caller copies or binds it.  Pure: any thread, no allocation. */

/** Split a correlation record's value "<run> <call> <conv>" (the first two
 *  spaces separate; conv is the rest and may hold spaces).  run and call are
 *  copied NUL-terminated into run[run_size] and call[call_size]; *conv and
 *  *conv_len point into value.  AW_EPARSE when a separator is missing, a
 *  part is empty, run or call does not fit its buffer, or value holds a NUL
 *  in its first len bytes; the outputs are then untouched. */
int tstate_parse_corr(const char *value, size_t len, char *run, size_t run_size, char *call,
                      size_t call_size, const char **conv, size_t *conv_len) AW_MUST_CHECK;

/** The turn token of a wake-up "<run> <conv>" (tstate_take_wakes), copied
 *  NUL-terminated into run[run_size].  AW_EPARSE when the run part is
 *  empty, does not fit, there is no conversation after the space, or item
 *  holds a NUL in its first len bytes. */
int tstate_parse_wake(const char *item, size_t len, char *run, size_t run_size) AW_MUST_CHECK;

/** verdict: "ok" (recorded; missing = calls still without output, owner =
 *  the run's owner), or the DLQ reason: "unknown_correlation_id",
 *  "already_answered", "run_not_waiting". */
typedef void (*tstate_apply_cb)(void *opaque, int err, const char *verdict, long missing,
                                const char *owner);

/** Record one reply's output for a call, if the run still waits for it. */
int tstate_apply_reply(tstate *t, const char *conv, const char *run, const char *call,
                       const char *kind, const char *output, size_t output_len, int64_t now_ms,
                       tstate_apply_cb cb, void *opaque) AW_MUST_CHECK;

/** Tell owner that conv/run has all its outputs (fire and forget). */
void tstate_wake(tstate *t, const char *owner, const char *conv, const char *run);

/** Take up to 256 wake-ups addressed to owner: each "<run> <conv>". */
typedef void (*tstate_wakes_cb)(void *opaque, int err, const char *const *items, size_t n);
int tstate_take_wakes(tstate *t, const char *owner, tstate_wakes_cb cb, void *opaque) AW_MUST_CHECK;

/** One call as seen by tstate_collect. */
typedef struct tstate_output {
  long round;
  const char *id, *name, *kind; /* kind "" while unanswered */
  const char *output;           /* the current round's calls only, else "" */
  size_t output_len;
} tstate_output;

typedef struct tstate_collected {
  int gone;              /* no state for this run (expired or never recorded) */
  int ready;             /* every call of the round has an output, or a
                            deadline cancelled the run (cancel != NULL) */
  long round, missing;
  int64_t next_deadline_ms; /* earliest deadline still pending; -1 if none */
  const char *cancel;    /* function whose deadline cancels the run, or NULL */
  int64_t held_until_ms; /* not ready for us: another attempt claimed the
                            round's submission; its lease ends then */
  int taken_over;        /* ready, but another attempt's claim lapsed: it may
                            have submitted, so recover instead of submitting */
  const tstate_output *calls; /* when ready: every call of every round */
  size_t ncalls;
} tstate_collected;

typedef void (*tstate_collect_cb)(void *opaque, int err, const tstate_collected *c);

/** The owner's look at its run: apply the deadlines that have passed
 *  (now_ms), then report whether the round is ready; when it is, the state
 *  becomes "submitting" (replies arriving from now on are run_not_waiting),
 *  the round's submission is claimed for `claim` (a token unique to this
 *  attempt at the event) and the outputs are returned.  When another
 *  attempt's claim is still within its lease, held_until_ms says until when. */
int tstate_collect(tstate *t, const char *conv, const char *run, const char *claim, int64_t now_ms,
                   tstate_collect_cb cb, void *opaque) AW_MUST_CHECK;

/** The calls of every round of the run that have an outcome (id, name,
 *  kind; output ""), for the response of a run resumed by another worker.
 *  n == 0 when the run has no tool state. */
typedef void (*tstate_list_cb)(void *opaque, int err, const tstate_output *calls, size_t n);
int tstate_list(tstate *t, const char *conv, const char *run, tstate_list_cb cb, void *opaque) AW_MUST_CHECK;

/** The run is over: state done, expires in an hour (fire and forget). */
void tstate_finish(tstate *t, const char *conv, const char *run);

#endif

/* usage.h -- the usage record of a finished turn (prefix wku_): what the
 * turn cost, added up over its rounds, built from the event and the
 * backend's results, produced by the outbox with the turn's response.
 *
 * Why here, beside the outbox: the record's one promise is "exactly once",
 * and that lives in the outbox's Kafka transaction (outbox.c): the record
 * goes into the transaction that holds the response and commits the
 * consumed offset, so a turn re-processed after a crash either finds its
 * response (and record) committed and is skipped, or neither was, and the
 * new attempt publishes both.  This module only keeps the numbers on the
 * event and turns them into a cusage_record (common/contract/contract_usage.h).
 *
 * Adding up.  A turn is one or more API requests: an Assistants run (whose
 * usage is already the whole run's), one response per round on Responses,
 * one chat completion per round on chat.  wku_add is called with every
 * backend result of the turn; a result whose turn handle is the one the
 * last usage came with (the same run, or a response read again to cancel
 * it) replaces that usage instead of adding to it.
 *
 * Which turns get a record: every turn that started at the API (the
 * response's timings.run_started_ms is not 0) or for which the API reported
 * usage, whatever its status; rejected events and duplicates never do.
 *
 * @locality the loop thread only.
 */
#ifndef AW_WORKER_USAGE_H
#define AW_WORKER_USAGE_H

#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "aw_error.h"
#include "backend.h"
#include "buf.h"
#include "contract.h"

struct wk_event;

#define WKU_MODEL_SIZE 129 /* the configured model's bound (CFG_MODEL_SIZE) */

/** A turn's usage so far, kept on its event (288 bytes, no allocation). */
typedef struct wku_turn {
  contract_usage sum;        /* every result's usage, the last one included */
  contract_usage last;       /* the last result's usage (replaced by a repeat) */
  uint64_t last_handle;      /* FNV-1a of the handle `last` came with; 0: none */
  long rounds;               /* rounds of function calls seen by this attempt */
  int64_t started_ms, completed_ms;
  char status[16];
  long tool_calls;
  char model[WKU_MODEL_SIZE]; /* the model the API named last, "" if none */
  uint8_t due;               /* a record is to be produced (wku_finish) */
  uint8_t given_up;          /* refused for good by Kafka: not produced again */
} wku_turn;

/** What the usage record's labels in /metrics are: the configured assistant
 *  (else "other") and its configured model when the API's model is that
 *  model or a dated snapshot of it ("gpt-4o-2024-08-06": the name, '-' and a
 *  digit), else "other".
 *  tokens: input, output, cached, reasoning.  Loop thread. */
typedef void (*wku_observe_fn)(void *opaque, const char *assistant, const char *model, const int64_t tokens[4]);

/** A result of the turn (answer, tool calls, error, cancel) came: add its
 *  usage and model. */
void wku_add(struct wk_event *ev, const be_turn_result *res);

/** The turn ended with response r (built, not yet published): decide
 *  whether a record is due and freeze its fields.  Sets ev->send_usage
 *  when the worker publishes usage records. */
void wku_finish(struct wk_event *ev, const contract_response *r);

/** Encode the event's record into out (bounded by the caller).  AW_EINVAL
 *  when no record is due. */
int wku_encode(const struct wk_event *ev, buf *out) AW_MUST_CHECK;

/** The record is durable (its transaction committed, or delivered when
 *  at-least-once): count it and its tokens into the metrics. */
void wku_committed(struct wk_event *ev);

/** The /metrics labels of the event's record (see wku_observe_fn). */
void wku_labels(const struct wk_event *ev, const char **assistant, const char **model);

/** Start-up: does the broker know topic?  0 when it says the topic does not
 *  exist or may not be written (UNKNOWN_TOPIC_OR_PART, TOPIC_AUTHORIZATION_FAILED),
 *  1 otherwise (also when it did not answer within timeout_ms: the
 *  produces will tell).  Blocks up to timeout_ms. */
int wku_topic_usable(rd_kafka_t *rk, const char *topic, int timeout_ms, char *why, size_t why_size);

#endif

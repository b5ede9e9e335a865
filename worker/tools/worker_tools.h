/* worker_tools.h -- the tool phase of an event (prefix wkt_): the turn asked
 * for function outputs; route the calls over Kafka and resume the turn when
 * the replies are in (see worker_tools.c for the steps).
 *
 * Its own header because the phase is its own module: the event machine
 * (event/, turn.c) enters it with wkt_begin and the scheduler retries it
 * with wkt_retry; nothing else reaches inside. */
#ifndef AW_WORKER_TOOLS_H
#define AW_WORKER_TOOLS_H

#include "worker_int.h"

/** Set up tool routing (routes, schemas, reply consumer); called by wk_new. */
int wkt_init(wk *w, rd_kafka_conf_t *reply_conf, char *errstr, size_t errstr_size) AW_MUST_CHECK;
/** The turn asks for tool outputs: route the calls and wait (ST_TOOLS). */
void wkt_begin(wk_event *ev, const be_tool_call *calls, size_t n, int64_t expires_at_ms);
/** Before resuming a run an earlier attempt started: fetch the tool calls
 *  its rounds already had (for the response), then call then(ev). */
void wkt_prefetch(wk_event *ev, void (*then)(wk_event *ev));
/** Cancel the turn of ev, which waits for tool replies (ST_TOOLS), at the
 *  backend (be_turn_cancel; it ends through wk_turn_done, cancelled): now,
 *  or once the phase's step in progress is back.  reason (the cancel's
 *  event id) is for the log.  1: taken; 0: ev is not in the tool phase. */
int wkt_cancel(wk_event *ev, const char *reason);
/** Retry of a failed step of the tool phase (from the retry list). */
void wkt_retry(wk_event *ev);
/** The event leaves the tool phase (answered, abandoned or freed). */
void wkt_forget(wk_event *ev);
/** Delivery report of a tool request. */
void wkt_on_request_dr(wk_event *ev, rd_kafka_resp_err_t err);
/** Delivery report of a dead-lettered tool reply. */
void wkt_on_reply_dlq_dr(wk *w, void *msg_opaque, rd_kafka_resp_err_t err);
/** The run is over and its response being built: add the tool calls (and,
 *  for a run a deadline cancelled, the tool_timeout error) to r.  Strings
 *  stay valid until the event is freed. */
void wkt_annotate(wk_event *ev, contract_response *r);
/** Rounds of function calls the event's turn has had, as far as the tool
 *  state says (also those of an earlier attempt); 0 without any. */
long wkt_rounds(const wk_event *ev);
/** Counters of the tool phase into st. */
void wkt_stats(const wk *w, wk_stats *st);
/** Shutdown: stop the reply consumer and checkpoint the waiting runs. */
void wkt_shutdown(wk *w);
/** Free what wkt_init set up (after the producer was flushed). */
void wkt_free(wk *w);

#endif

/* event.h -- the event state machine (prefix wk_ev_): one enum (wk_state),
 * one transition function (wk_ev_set_state), and the steps that move an
 * event from RECEIVED to DONE.  Loop thread only. */
#ifndef AW_EVENT_H
#define AW_EVENT_H

#include "worker_int.h"

/** The event's ids for log lines. */
log_ctx wk_ev_ctx(const wk_event *ev);
/** The one place an event changes state; logs the transition (debug). */
void wk_ev_set_state(wk_event *ev, wk_state s);
/** Its turn in the conversation came: look it up in Redis (LOOKUP), then
 *  turn, rejection or duplicate skip. */
void wk_ev_start(wk_event *ev);
/** Encode the answer r and publish it (PUBLISHING), after the event's
 *  deltas are durable.  An answer too large is replaced by the error. */
void wk_ev_publish(wk_event *ev, const contract_response *r);
/** The outcome is durable: record it in Redis (RECORDING), then finish. */
void wk_ev_record(wk_event *ev);
/** DONE: release its offset, let its conversation go on, free it. */
void wk_ev_finish(wk_event *ev);
/** Free the event's memory (wk_ev_finish, wk_free). */
void wk_ev_free(wk_event *ev);
/** Leave the event (and the rest of its conversation queue) unanswered and
 *  uncommitted: its next owner re-processes it from the state in Redis. */
void wk_ev_abandon(wk_event *ev);
/** A refusal decided after intake (the files step: file_not_found): the
 *  `rejected` response and the dead letter with the original bytes (kept
 *  while the event may still be refused).  msg NULL: the code says it. */
void wk_ev_reject_now(wk_event *ev, const char *code, const char *msg);
/** The event can no longer be refused: free its original bytes. */
void wk_ev_release_original(wk_event *ev);

#endif

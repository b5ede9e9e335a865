/* cancel.h -- the conversation request `cancel` (prefix wk_cancel_): mark
 * the conversation's active turn cancelled, end it at the backend, and
 * answer both events.  Loop thread only.  The design is in cancel.c's
 * header. */
#ifndef AW_CANCEL_H
#define AW_CANCEL_H

#include "worker_int.h"

/** The cancel's own step, after its admission and claim (event.c
 *  lookup_done): mark the conversation's active message event (the head of
 *  its queue in this worker) if it matches target_event_id, set its
 *  cancellation going, and answer the cancel (completed,
 *  cancelled_event_id).  ev is a request of kind cancel. */
void wk_cancel_run(wk_event *ev);

/** wk_turn_start's first question: is this event's turn cancelled before
 *  it started?  1: yes, and it was taken care of (answered `cancelled`
 *  without a turn, or, when an earlier attempt started it and left a
 *  checkpoint, cancelled at the backend); 0: start the turn. */
int wk_cancel_before_turn(wk_event *ev);

/** The running turn's checkpoint just arrived (turn.c): a cancel that
 *  waited for the backend's object to be known is sent now. */
void wk_cancel_on_checkpoint(wk_event *ev);

/** The turn ended cancelled after a cancel request: its answer says so
 *  (error_code cancelled_by_request, error_message naming the cancel's
 *  event id), whatever the backend said.  buf (n bytes) holds the message;
 *  r keeps pointing at it.  No change for an event nobody cancelled or a
 *  turn that ended otherwise (it finished before the cancel reached it). */
void wk_cancel_annotate(const wk_event *ev, contract_response *r, char *buf, size_t n);

#endif

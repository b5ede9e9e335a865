/* cancel.c -- the conversation request `cancel` (prefix wk_cancel_): the
 * conversation's active turn is cancelled and answered `cancelled`
 * (cancelled_by_request); the cancel itself is answered at once, completed,
 * with the id of the event it cancelled (nil when no turn was active, or
 * target_event_id named another event).
 *
 * Why a module of its own: a cancel is the one request that must overtake
 * its conversation's order.  Requests of one conversation are served one
 * at a time (conv_sched.c), so a cancel queued behind the turn it cancels
 * would run after that turn ended.  Intake therefore starts it outside the
 * queue (wks_start_out_of_band); it still goes through admission and its
 * claim (event.c) like any event, then comes here, reaches into the
 * conversation's queue for the head (the active event: the Kafka key is
 * the conversation, so the worker that owns the partition owns the turn),
 * marks it (wk_event.cancel_by) and acts by its state:
 *
 *   QUEUED, LOOKUP  not started: wk_turn_start asks wk_cancel_before_turn,
 *                   which answers it `cancelled` without a turn -- unless an
 *                   earlier attempt started it and left a checkpoint: then
 *                   be_turn_cancel with that checkpoint.
 *   TURN            with a checkpoint (the backend's object is known):
 *                   be_turn_cancel, then be_op_cancel of the running op; the
 *                   turn ends through wk_turn_done.  Without one yet, the
 *                   same happens when the checkpoint arrives (turn.c): a
 *                   request in flight may still create the object, and
 *                   only then can it be cancelled.  The chat backend hands
 *                   out its checkpoint before it sends the completion, so
 *                   its turn ends there, before anything is generated.
 *   TOOLS           waiting for tool replies: the tool phase cancels it
 *                   (wkt_cancel) as a deadline with cancel_run does.
 *   later states    answered already: nothing is active.
 *
 * Exactly-once: the cancel claims its own event_id (a re-delivered cancel
 * is skipped, or recovered and answered once); the cancelled event's answer
 * is that event's own outcome, recorded under its own id, so it is answered
 * once whichever of the two commits first.  The offsets stay safe because
 * the tracker commits only the prefix of done offsets (intake.c).  A cancel
 * re-processed after a crash marks whatever is active then.
 *
 * A race with the turn's end is not an error: a turn that finishes before
 * the cancel reaches the backend ends with whatever it reached (completed,
 * say), and the cancel is still answered with its id -- "cancelled" means
 * the cancellation was asked for the active turn, the turn's own response
 * says how it ended.  A cancel that finds the turn already cancelled by an
 * earlier cancel names it too, and asks nothing more of the backend.
 */
#include "cancel.h"

#include <stdio.h>
#include <string.h>

#include "conv_sched.h"
#include "event.h"
#include "intake.h"
#include "turn.h"
#include "worker_tools.h"

/* The head of the conversation is the event a cancel is about when it is
 * a message of this partition generation whose answer is not on its way
 * yet. */
static int is_active_turn(const wk_event *t) {
  if (!t || !t->req || t->req->kind != CONTRACT_KIND_MESSAGE || t->reject_code || t->abandoned) return 0;
  if (wki_stale(t)) return 0; /* left to the partition's new owner */
  return t->state == ST_QUEUED || t->state == ST_LOOKUP || t->state == ST_FILES || t->state == ST_TURN ||
         t->state == ST_TOOLS;
}

static void cancel_failed(wk_event *t, int rc, const char *then) {
  log_ctx c = wk_ev_ctx(t);
  log_warn(&c, "could not cancel the turn at the backend (%s); %s", aw_strerror(rc), then);
}

/* be_turn_cancel with the turn's checkpoint; the op it replaces (if any) is
 * cancelled only once the cancel is under way, so a refused cancel leaves
 * the turn running rather than orphaned.  No callback runs inside these
 * calls (backend.h), so the two ops never call back in between. */
static int send_cancel(wk_event *t) {
  be_turn_input in;
  be_op *op = NULL;
  t->cancel_sent = 1;
  wk_turn_input(t, &in);
  int rc = be_turn_cancel(t->w->be, &in, &wk_turn_events, t, &op);
  if (rc != AW_OK) return rc;
  be_op_cancel(t->op);
  t->op = op;
  log_ctx c = wk_ev_ctx(t);
  log_info(&c, "turn cancelled at the backend (cancel %s)", t->cancel_by);
  return AW_OK;
}

/* The marked event's cancellation, by its state (see the header). */
static void act(wk_event *t) {
  switch (t->state) {
  case ST_TOOLS:
    if (!wkt_cancel(t, t->cancel_by)) cancel_failed(t, AW_ESTATE, "it waits for its tool replies");
    break;
  case ST_TURN:
    /* op NULL: between steps (fetching an earlier attempt's tool calls):
     * wk_turn_start asks wk_cancel_before_turn next. */
    if (t->op && t->checkpoint[0]) {
      int rc = send_cancel(t);
      if (rc != AW_OK) cancel_failed(t, rc, "it runs to its end"); /* and answers what it reaches */
    }
    break;
  default: /* QUEUED, LOOKUP, FILES (not started): wk_cancel_before_turn when its turn comes */
    break;
  }
}

static void answer(wk_event *ev, const char *cancelled) {
  wk *w = ev->w;
  contract_response r = {0};
  r.event_id = ev->event_id;
  r.conversation_id = ev->conv_id;
  r.kind = CONTRACT_KIND_CANCEL;
  r.status = "completed";
  r.cancelled_event_id = cancelled;
  r.backend_kind = be_kind(w->be);
  r.timings.received_ms = ev->received_ms;
  r.timings.completed_ms = wk_now_ms();
  wk_copy_id(ev->status, sizeof ev->status, r.status);
  w->st.answered++;
  log_ctx c = wk_ev_ctx(ev);
  log_info(&c, "cancel answered: %s%s", cancelled ? "cancelled event " : "no active turn",
           cancelled ? cancelled : "");
  wk_ev_publish(ev, &r);
}

void wk_cancel_run(wk_event *ev) {
  wk *w = ev->w;
  if (wki_stale(ev)) {
    /* Revoked while its claim was out: its new owner answers it. */
    log_ctx c = wk_ev_ctx(ev);
    log_debug(&c, "partition revoked; cancel left to its new owner");
    wk_ev_finish(ev);
    return;
  }
  const char *target = ev->req ? ev->req->target_event_id : NULL;
  wk_event *t = wks_head(w, ev->conv_ref);
  char cancelled[sizeof t->event_id];
  cancelled[0] = '\0';
  if (is_active_turn(t) && (!target || strcmp(target, t->event_id) == 0)) {
    /* Copied first: acting may answer t (a refused tool-phase cancel). */
    wk_copy_id(cancelled, sizeof cancelled, t->event_id);
    if (!t->cancel_by[0]) {
      wk_copy_id(t->cancel_by, sizeof t->cancel_by, ev->event_id);
      log_ctx c = wk_ev_ctx(t);
      log_info(&c, "turn cancelled by event %s (state %d)", ev->event_id, (int)t->state);
      act(t);
    }
  }
  answer(ev, cancelled[0] ? cancelled : NULL);
}

int wk_cancel_before_turn(wk_event *ev) {
  if (!ev->cancel_by[0]) return 0;
  if (ev->recover && ev->checkpoint[0]) {
    /* An earlier attempt started it at the backend: end that turn there
     * (a run left going would block its thread; an open response would
     * add its answer to the conversation). */
    wk_ev_set_state(ev, ST_TURN);
    ev->op = NULL;
    int rc = send_cancel(ev);
    if (rc == AW_OK) return 1;
    /* Refused (say, another backend's checkpoint): nothing of it runs here. */
    cancel_failed(ev, rc, "answered cancelled without it");
  }
  be_turn_result res = {0};
  res.end = BE_END_ANSWER;
  res.status = "cancelled";
  wk_ev_set_state(ev, ST_TURN);
  wk_turn_done(ev, &res);
  return 1;
}

void wk_cancel_on_checkpoint(wk_event *ev) {
  if (!ev->cancel_by[0] || ev->cancel_sent || !ev->op || !ev->checkpoint[0] || ev->state != ST_TURN) return;
  int rc = send_cancel(ev);
  if (rc != AW_OK) cancel_failed(ev, rc, "it runs to its end");
}

void wk_cancel_annotate(const wk_event *ev, contract_response *r, char *buf, size_t n) {
  if (!ev->cancel_by[0] || !r->status || strcmp(r->status, "cancelled") != 0 || !buf || !n) return;
  snprintf(buf, n, "cancelled by event %s", ev->cancel_by);
  r->error_code = "cancelled_by_request";
  r->error_message = buf;
}

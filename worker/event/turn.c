/* turn.c -- the event's turn on the backend (prefix wk_turn_): start it,
 * keep its checkpoints (progress record in Redis), and when it ends build
 * the response from its result (or hand its function calls to the tool
 * phase, worker_tools.c).
 *
 * Cut here because this is where the worker meets backend.h: the event
 * machine (event.c) only enters TURN, and the tool phase resumes the turn
 * with the same callbacks (wk_turn_events) and input (wk_turn_input).
 */
#include "turn.h"

#include <stdlib.h>
#include <string.h>

#include "be_errors.h"
#include "attach.h"
#include "cancel.h"
#include "conv_store.h"
#include "delta.h"
#include "event.h"
#include "intake.h"
#include "worker_tools.h"

/* Progress writes are not waited for: a record that is lost (crash, Redis
 * down) only makes a re-processed event ask the backend to look for what it
 * created instead of resuming from the checkpoint.  The opaque is the
 * worker, which outlives the reply. */
static void on_progress_put(void *opaque, int err, const char *value) {
  (void)value;
  if (err) ((wk *)opaque)->st.redis_errors++;
}

static void take_handles(wk_event *ev, const be_handles *h) {
  if (h->kind) ev->h_kind = h->kind;
  if (h->conversation && *h->conversation) wk_copy_id(ev->h_conv, sizeof ev->h_conv, h->conversation);
  if (h->turn && *h->turn) wk_copy_id(ev->h_turn, sizeof ev->h_turn, h->turn);
  if (h->attempt > ev->attempt) wkd_new_attempt(ev, h->attempt);
}

static void turn_checkpoint(void *opaque, const char *checkpoint, const be_handles *handles) {
  wk_event *ev = opaque;
  if (handles) take_handles(ev, handles); /* deltas from here on name the turn */
  if (!checkpoint || !*checkpoint || strcmp(checkpoint, ev->checkpoint) == 0) return;
  wk_copy_id(ev->checkpoint, sizeof ev->checkpoint, checkpoint);
  if (!ev->run_started_ms) ev->run_started_ms = wk_now_ms();
  if (cstore_put_progress(&ev->w->store, ev->conv_ref, ev->event_id, ev->checkpoint, on_progress_put, ev->w) !=
      AW_OK)
    ev->w->st.redis_errors++;
  log_ctx c = wk_ev_ctx(ev);
  log_debug(&c, "checkpoint recorded");
  /* A cancel that came before the backend's object was known goes now
   * (only while the turn runs: wk_turn_done passes its last checkpoint
   * here too, with no op left). */
  wk_cancel_on_checkpoint(ev);
}

/* Stable error code of a turn that ended in an error: the backend's, else
 * the one taxonomy every backend shares (be_errors.h, schemas/README.md). */
static const char *turn_error_code(const be_turn_result *res) {
  if (res->error_code && *res->error_code) return res->error_code;
  return be_error_code(res->err);
}

static void keep_handles(wk_event *ev, const be_turn_result *res) {
  take_handles(ev, &res->handles);
  if (res->checkpoint && *res->checkpoint) turn_checkpoint(ev, res->checkpoint, NULL);
  if (res->started_ms && !ev->run_started_ms) ev->run_started_ms = res->started_ms;
}

void wk_turn_done(void *opaque, const be_turn_result *res) {
  wk_event *ev = opaque;
  wk *w = ev->w;
  ev->op = NULL;
  keep_handles(ev, res);
  wku_add(ev, res); /* every result of the turn counts toward its usage record */
  if (res->end == BE_END_TOOL_CALLS && w->tools && res->ntool_calls) {
    /* Not the end: the turn waits for its function outputs. */
    wkd_unschedule(ev);
    wkd_flush(ev);
    wkt_begin(ev, res->tool_calls, res->ntool_calls, res->expires_at_ms);
    return;
  }
  if (res->end == BE_END_ERROR && aw_error_classify(res->err) == AW_CLASS_FATAL) {
    /* The backend says the process cannot go on (e.g. its configuration is
     * refused): answering would fail every event the same way.  Leave the
     * event to the next owner and stop. */
    log_ctx c = wk_ev_ctx(ev);
    log_error(&c, "backend error that stops the worker: %s", res->errmsg ? res->errmsg : aw_strerror(res->err));
    wk_ev_abandon(ev);
    if (w->cfg.on_fatal) w->cfg.on_fatal(w->cfg.fatal_opaque);
    return;
  }
  wkd_unschedule(ev);
  wkd_flush(ev);
  if (res->replayed && ev->req->stream && res->end == BE_END_ANSWER) wkd_republish(ev, res);

  int assistants = ev->h_kind && strcmp(ev->h_kind, "assistants") == 0;
  contract_response r = {0};
  r.event_id = ev->event_id;
  r.conversation_id = ev->conv_id;
  /* v1's thread_id / run_id mean something on the Assistants backend only;
   * every backend fills `backend`. */
  r.thread_id = assistants && ev->h_conv[0] ? ev->h_conv : NULL;
  r.run_id = assistants && ev->h_turn[0] ? ev->h_turn : NULL;
  r.backend_kind = ev->h_kind ? ev->h_kind : be_kind(w->be);
  r.backend_conversation = ev->h_conv[0] ? ev->h_conv : NULL;
  r.backend_turn = ev->h_turn[0] ? ev->h_turn : NULL;
  r.messages = res->messages;
  r.nmessages = res->nmessages;
  r.usage = res->usage;
  /* Generated files and hosted tool steps (issue 10): files inline up to
   * worker.inline_file_max_bytes; a response that still does not fit has
   * its inline bytes dropped first (outbox/degrade.c). */
  if (res->end == BE_END_ANSWER) {
    r.files = res->files;
    r.nfiles = res->nfiles;
    r.steps = res->steps;
    r.nsteps = res->nsteps;
  }
  r.want_steps = ev->req->include_steps;
  r.timings.received_ms = ev->received_ms;
  r.timings.run_started_ms = ev->run_started_ms;
  r.timings.completed_ms = wk_now_ms();
  if (res->end != BE_END_ANSWER) {
    /* An error (whatever its class: the backend already retried what could
     * be retried), or calls nobody can serve. */
    r.status = "failed";
    r.error_code = res->end == BE_END_TOOL_CALLS ? "tool_calls_unsupported" : turn_error_code(res);
    r.error_message = res->errmsg && *res->errmsg ? res->errmsg : aw_strerror(res->err);
  } else {
    r.status = res->status ? res->status : "failed";
    if (strcmp(r.status, "completed") != 0) {
      r.error_code = res->error_code && *res->error_code ? res->error_code : r.status;
      r.error_message = res->errmsg && *res->errmsg ? res->errmsg : r.status;
    }
  }
  wkt_annotate(ev, &r);
  char cancel_msg[sizeof ev->cancel_by + 32];
  wk_cancel_annotate(ev, &r, cancel_msg, sizeof cancel_msg); /* after wkt_annotate: the cancel's code wins */
  wku_finish(ev, &r); /* the usage record goes out with the response (outbox.c) */
  wk_copy_id(ev->status, sizeof ev->status, r.status);
  log_ctx c = wk_ev_ctx(ev);
  if (strcmp(r.status, "completed") == 0) {
    w->st.answered++;
    log_info(&c, "turn completed");
  } else {
    w->st.failed++;
    log_warn(&c, "turn ended %s: %s: %s", r.status, r.error_code ? r.error_code : "",
             r.error_message ? r.error_message : "");
  }
  wk_ev_publish(ev, &r);
}

/* A turn that failed before any I/O ends like one that failed later. */
static void turn_not_started(wk_event *ev, int rc, const char *what) {
  be_turn_result res = {0};
  res.end = BE_END_ERROR;
  res.err = rc;
  res.errmsg = what;
  wk_turn_done(ev, &res);
}

const be_turn_events wk_turn_events = {
    .on_checkpoint = turn_checkpoint,
    .on_text_delta = wkd_on_text,
    .on_done = wk_turn_done,
};

void wk_turn_input(wk_event *ev, be_turn_input *in) {
  contract_request *q = ev->req;
  memset(in, 0, sizeof *in);
  /* The backend names the conversation by its reference: with tenants
   * "<tenant>:<conversation>", what its store ports key by (rkeys.h) and
   * what it tags the API's objects with. */
  in->conversation_id = ev->conv_ref;
  in->event_id = ev->event_id;
  in->handle = ev->handle[0] ? ev->handle : NULL;
  in->checkpoint = ev->checkpoint[0] ? ev->checkpoint : NULL;
  in->recover = ev->recover;
  in->assistant = ev->assistant;
  in->parts = q->parts;
  in->nparts = q->nparts;
  in->attachments = q->attachments;
  in->nattachments = q->nattachments;
  if (ev->att) {
    /* The files step resolved them: file ids set (attach.h). */
    size_t np = 0, na = 0;
    const contract_part *p = wk_att_parts(ev->att, &np);
    const contract_attachment *a = wk_att_attachments(ev->att, &na);
    if (p) {
      in->parts = p;
      in->nparts = np;
      in->attachments = na ? a : NULL;
      in->nattachments = na;
    }
  }
  in->include_steps = q->include_steps;
  in->inline_file_max = ev->w->cfg.inline_file_max;
  in->metadata = q->metadata;
  in->nmetadata = q->nmetadata;
  in->instructions = q->instructions;
  in->additional_instructions = q->additional_instructions;
  in->want_deltas = q->stream;
  in->tools_routed = ev->w->tools != NULL;
}

void wk_turn_start(wk_event *ev) {
  if (wki_stale(ev)) {
    /* The partition moved while the lookup was out: its new owner runs the
     * turn; starting it here too could create it twice. */
    log_ctx c = wk_ev_ctx(ev);
    log_debug(&c, "partition revoked before the turn started; left to its new owner");
    wk_ev_finish(ev);
    return;
  }
  if (wk_cancel_before_turn(ev)) return; /* a cancel request came first (cancel.h) */
  be_turn_input in;
  wk_turn_input(ev, &in);
  int rc = be_turn_start(ev->w->be, &in, &wk_turn_events, ev, &ev->op);
  if (rc != AW_OK) turn_not_started(ev, rc, "could not start the turn");
}

/* event.c -- the event state machine (wk_state, moved only by
 * wk_ev_set_state): an event is admitted (what its request may override:
 * overrides.h), looked up in Redis (outcome record, the conversation's
 * backend handle, a claim of its progress record: event_claim.h), its turn
 * run (turn.c, worker_tools.c), its answer encoded and handed to the outbox,
 * its outcome recorded, and it is freed.
 *
 * Cut here so that the states and every transition between them read in one
 * place; the transport (outbox.c), the ordering (conv_sched.c), the
 * partitions (intake.c) and the backend's turn (turn.c) are the modules it
 * calls.
 *
 * Ownership: the worker owns every wk_event from consumption to DONE; an
 * event is freed only in wk_ev_finish, which runs from the loop or from the
 * last callback that uses it (never from one that still does).
 */
#include "event.h"
#include "attach.h"
#include "delta.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "conv_request.h"
#include "conv_store.h"
#include "conv_sched.h"
#include "event_claim.h"
#include "gen_files.h"
#include "intake.h"
#include "kafka_producer.h"
#include "kafka_txn.h"
#include "outbox.h"
#include "overrides.h"
#include "turn.h"
#include "worker_tools.h"

static const char *const state_names[] = {"received",   "queued",     "lookup",    "files",    "turn",
                                          "tools",      "publishing", "committing", "recording", "done"};

log_ctx wk_ev_ctx(const wk_event *ev) {
  log_ctx c = {ev->event_id[0] ? ev->event_id : NULL, ev->conv_id[0] ? ev->conv_id : NULL,
               ev->h_conv[0] ? ev->h_conv : NULL, ev->h_turn[0] ? ev->h_turn : NULL,
               ev->tenant[0] ? ev->tenant : NULL};
  return c;
}

/* The one place where an event changes state, so that every transition can
 * be logged with the event's ids. */
void wk_ev_set_state(wk_event *ev, wk_state s) {
  if (log_enabled(LOG_DEBUG)) {
    log_ctx c = wk_ev_ctx(ev);
    log_write(LOG_DEBUG, &c, "event %s -> %s", state_names[ev->state], state_names[s]);
  }
  ev->state = s;
}

/* ---- event lifetime ------------------------------------------------------ */

void wk_ev_free(wk_event *ev) {
  /* Never freed while on the delta timer's list (an event that stopped for
   * tool calls and was abandoned within the window would be). */
  wkd_unschedule(ev);
  wkt_forget(ev);
  wk_att_free(ev->att); /* before the request: its parts point into it */
  contract_request_free(ev->req);
  free(ev->reject_msg);
  free(ev->orig);
  free(ev->orig_key);
  buf_free(&ev->out);
  buf_free(&ev->delta);
  free(ev);
}

void wk_ev_finish(wk_event *ev) {
  wk *w = ev->w;
  wk_ev_set_state(ev, ST_DONE);
  int counted = !wki_stale(ev);
  if (counted) w->parts.v[ev->partition].running--;
  if (counted && !ev->abandoned && !ev->offset_done &&
      otrk_done(&w->parts.v[ev->partition].t, ev->offset) != AW_OK) {
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "offset %lld of partition %d was not tracked", (long long)ev->offset,
             (int)ev->partition);
  }
  if (counted && !ev->abandoned && !ev->offset_done) w->txn_dirty = 1;
  wko_unowe(ev);
  w->st.in_flight--;
  w->st.in_flight_bytes -= ev->bytes;
  if (w->st.in_flight_bytes < 0) w->st.in_flight_bytes = 0; /* after the grace period's reset */
  int32_t part = ev->partition;
  wks_advance(w, ev);
  wk_ev_free(ev);
  if (counted) wki_check_partition(w, part);
  wki_check_pressure(w);
  wk_maybe_stopped(w);
}

void wk_ev_abandon(wk_event *ev) {
  log_ctx c = wk_ev_ctx(ev);
  log_info(&c, "event left unanswered and uncommitted for the next owner");
  ev->abandoned = 1;
  be_op_cancel(ev->op);
  ev->op = NULL;
  wk_ev_finish(ev);
}

static void observe_event_seconds(wk_event *ev) {
  if (ev->w->cfg.observe && ev->received_ms)
    ev->w->cfg.observe(ev->w->cfg.observe_opaque, WK_OBS_EVENT_SECONDS, (double)(wk_now_ms() - ev->received_ms) / 1000.0);
}

static void on_outcome_recorded(void *opaque, int err, const char *value) {
  wk_event *ev = opaque;
  (void)value;
  observe_event_seconds(ev);
  if (err) {
    /* The answer is published; the record only speeds up duplicate
     * detection, so a Redis outage must not hold the offset back. */
    ev->w->st.redis_errors++;
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "could not record the outcome in redis");
  }
  wk_ev_finish(ev);
}

/* Only an event the worker accepted claims its event_id (event_claim.h).
 * A rejected one (malformed, invalid, unknown assistant, refused override,
 * reused id, ...) records nothing, so it cannot make a later event with
 * the same id be skipped.  It is still answered once per Kafka record
 * without one: exactly-once, its response, dead letter and offset commit
 * are one Kafka transaction, so a record that was answered is never read
 * again (and a producer's re-send, a new record, is rejected again).
 * At-least-once (worker.exactly_once false), a crash between its answer
 * and the offset commit answers it a second time (a second rejected
 * response and dead letter with the same event_id), as that mode does for
 * anything without a record. */
static int ev_claims_its_id(const wk_event *ev) {
  return !ev->reject_code && ev->digest[0] && ev->event_id[0] && ev->conv_ref[0];
}

/* The outcome is durable: record it, then the event is done. */
void wk_ev_record(wk_event *ev) {
  wk_ev_set_state(ev, ST_RECORDING);
  if (!ev_claims_its_id(ev)) {
    observe_event_seconds(ev);
    wk_ev_finish(ev);
    return;
  }
  if (cstore_put_outcome(&ev->w->store, ev->conv_ref, ev->event_id, ev->status, ev->h_turn, ev->digest,
                         wk_now_ms(), on_outcome_recorded, ev) != AW_OK) {
    wk_ev_finish(ev);
  }
}

/* ---- the answer ---------------------------------------------------------- */

/* The response did not encode within RESPONSE_MAX_BYTES (rc), or is larger
 * than the producer takes (message.max.bytes less the record's overhead:
 * the outbox would degrade it to response_too_large, dropping everything). */
static int ev_over_record(const wk_event *ev, int rc) {
  if (rc != AW_OK) return 1;
  const wk *w = ev->w;
  size_t lim = w->txp ? ktx_max_message_bytes(w->txp) : w->producer ? kp_max_message_bytes(w->producer) : 0;
  size_t over = kp_record_size(strlen(ev->conv_id), 0, 0);
  return lim > over && ev->out.len > lim - over;
}

/* r's files with their bytes dropped, into out[max]: 1 when any had bytes. */
static int ev_files_by_reference(const contract_response *r, contract_file *out, size_t max) {
  int any = 0;
  if (!r->files || !r->nfiles || r->nfiles > max) return 0;
  for (size_t i = 0; i < r->nfiles; i++) {
    out[i] = r->files[i];
    any |= out[i].data != NULL;
    out[i].data = NULL;
    out[i].data_len = 0;
  }
  return any;
}

void wk_ev_publish(wk_event *ev, const contract_response *r0) {
  /* Every answer carries the event's tenant, whoever built it. */
  contract_response tr = *r0;
  if (!tr.tenant && ev->tenant[0]) tr.tenant = ev->tenant;
  const contract_response *r = &tr;
  buf_reset(&ev->out);
  int rc = contract_response_encode(r, &ev->out);
  contract_file byref[GF_MAX_FILES];
  if (ev_over_record(ev, rc) && ev_files_by_reference(r, byref, GF_MAX_FILES)) {
    /* Too large with generated files inline: their bytes go first (each
     * becomes a by-reference entry, `assistant-worker file get`), before
     * the answer itself is replaced by response_too_large. */
    tr.files = byref;
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "response too large with its files inline (%zu bytes); files sent by reference", ev->out.len);
    buf_reset(&ev->out);
    rc = contract_response_encode(r, &ev->out);
  }
  if (rc != AW_OK) {
    /* Only an oversized answer gets here: answer with the error instead. */
    contract_response small = *r;
    small.messages = NULL;
    small.nmessages = 0;
    small.status = "failed";
    small.error_code = "response_too_large";
    small.error_message = "the answer does not fit the response size limit";
    buf_reset(&ev->out);
    wk_copy_id(ev->status, sizeof ev->status, "failed");
    if (contract_response_encode(&small, &ev->out) != AW_OK) {
      log_ctx c = wk_ev_ctx(ev);
      log_error(&c, "cannot encode a response; dropping the answer");
      wk_ev_finish(ev);
      return;
    }
  }
  if (r->kind != CONTRACT_KIND_MESSAGE && (unsigned)r->kind < CONTRACT_KIND_COUNT) { /* /metrics */
    const char *st = ev->status[0] ? ev->status : r->status ? r->status : "";
    ev->w->st.conv_requests[r->kind][!strcmp(st, "completed")  ? WK_CONV_COMPLETED
                                     : !strcmp(st, "rejected") ? WK_CONV_REJECTED
                                                               : WK_CONV_FAILED]++;
  }
  wk_ev_set_state(ev, ST_PUBLISHING);
  ev->send_response = 1;
  ev->send_dlq = ev->reject_code != NULL;
  /* The response goes out only once every delta of the event is durable:
   * a reader that stops at the response (deltas and responses are separate
   * topics, with no order between them) then has all the deltas.  A
   * delta's first produce to the topic may wait for metadata and would
   * otherwise land after the response. */
  if (ev->pending_dr > 0) {
    ev->await_deltas = 1;
    return;
  }
  wko_publish(ev);
}

static void ev_publish_rejection(wk_event *ev) {
  contract_response r = {0};
  r.event_id = ev->event_id;
  r.conversation_id = ev->conv_id;
  r.status = "rejected";
  r.error_code = ev->reject_code;
  r.error_message = ev->reject_msg ? ev->reject_msg : ev->reject_code;
  r.timings.received_ms = ev->received_ms;
  r.timings.completed_ms = wk_now_ms();
  r.kind = ev->kind; /* the answer names its kind, even when the request did not decode */
  wk_copy_id(ev->status, sizeof ev->status, "rejected");
  ev->w->st.rejected++;
  log_ctx c = wk_ev_ctx(ev);
  log_warn(&c, "event rejected: %s: %s", ev->reject_code, r.error_message);
  wk_ev_publish(ev, &r);
}

/* A refusal decided here rather than at intake (admission, lookup): the
 * same rejected response and dead letter (intake kept the original bytes
 * for it). */
static void ev_reject(wk_event *ev, const char *code, const char *msg) {
  ev->reject_code = code;
  free(ev->reject_msg);
  ev->reject_msg = strdup(msg); /* NULL: the code stands for the message */
}

/* ---- admission ------------------------------------------------------------ */

/* What this request may do (overrides.h), decided once per event before
 * anything of it is looked up or claimed, and the digest its records will
 * carry (event_claim.h).  0: go on; 1: it was refused (ev->reject_code) or
 * is tried again later. */
static int ev_admit(wk_event *ev) {
  if (ev->admitted || ev->reject_code || !ev->req) return 0;
  wk *w = ev->w;
  const contract_request *q = ev->req;
  /* An asst_ id is no configured assistant: the default allowance. */
  wkov_policy p = {WKOV_DEFAULT, w->cfg.allow_assistant_ids};
  if (ev->assistant != &ev->asst_by_id && w->cfg.allowed_overrides)
    p.allowed = w->cfg.allowed_overrides(w->cfg.overrides_opaque, q->assistant);
  const char *field = NULL;
  char msg[512];
  if (wkov_check(q, &p, &field, msg, sizeof msg) != AW_OK) {
    ev->admitted = 1;
    ev_reject(ev, WKOV_CODE, msg);
    return 1;
  }
  if (evc_digest(q, ev->digest) != AW_OK) {
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "cannot digest the event (out of memory); trying again");
    wks_retry_later(ev);
    return 1;
  }
  ev->admitted = 1;
  return 0;
}

void wk_ev_reject_now(wk_event *ev, const char *code, const char *msg) {
  ev_reject(ev, code, msg);
  ev_publish_rejection(ev);
}

/* Admitted for good: the original bytes were kept only for the dead letter
 * of a refusal at admission (or, with files, at the files step). */
void wk_ev_release_original(wk_event *ev) {
  long n = (long)(ev->orig_len + ev->orig_key_len);
  free(ev->orig);
  free(ev->orig_key);
  ev->orig = ev->orig_key = NULL;
  ev->orig_len = ev->orig_key_len = 0;
  ev->bytes -= n;
  ev->w->st.in_flight_bytes -= n;
  if (ev->w->st.in_flight_bytes < 0) ev->w->st.in_flight_bytes = 0;
}

/* ---- lookup ------------------------------------------------------------- */

/* The recovered turn after the files step: its earlier tool rounds first. */
static void ev_prefetch_turn(wk_event *ev) { wkt_prefetch(ev, wk_turn_start); }

static void lookup_done(wk_event *ev) {
  if (ev->dup) {
    ev->w->st.skipped_duplicates++;
    log_ctx c = wk_ev_ctx(ev);
    log_info(&c, "event already answered; skipped");
    wk_ev_finish(ev);
    return;
  }
  if (ev->reject_code) {
    ev_publish_rejection(ev);
    return;
  }
  /* A message with files keeps its original bytes through the files step:
   * a file id that does not exist still rejects it (attach.h). */
  int files = ev->w->cfg.files_api && ev->req->kind == CONTRACT_KIND_MESSAGE && wk_att_needed(ev->req);
  if (!files) {
    wk_ev_release_original(ev);
    wk_ev_set_state(ev, ST_TURN);
  }
  if (wk_cr_handles(ev->req->kind)) { /* history, append, reset, delete: their own step */
    wk_cr_start(ev);
    return;
  }
  if (ev->req->kind == CONTRACT_KIND_CANCEL) { /* its own step, out of the conversation's order */
    wk_cancel_run(ev);
    return;
  }
  if (ev->recover) {
    log_ctx c = wk_ev_ctx(ev);
    log_info(&c, "event was started before; recovering its turn");
    /* Its earlier tool rounds (if any) belong in the response too. */
    if (ev->w->tools) {
      if (files) wk_att_step(ev, ev_prefetch_turn);
      else wkt_prefetch(ev, wk_turn_start);
      return;
    }
  }
  if (files) wk_att_step(ev, wk_turn_start);
  else wk_turn_start(ev);
}

/* The lookups were sent together (one pipelined round trip); decide when
 * the last reply is in. */
static void on_lookup(wk_event *ev, int err) {
  if (err) ev->lookup_failed = 1;
  if (--ev->pending_lookups > 0) return;
  if (ev->lookup_failed) {
    ev->w->st.redis_errors++;
    wks_retry_later(ev);
    return;
  }
  lookup_done(ev);
}

/* Whose the event_id is (event_claim.h): new (the claim is ours),
 * answered (skipped), started by this message (recovered from its
 * checkpoint, if one was recorded) or held by a different message
 * (rejected event_id_reused). */
static void on_claim(void *opaque, int err, const char *outcome, const char *progress) {
  wk_event *ev = opaque;
  if (!err) {
    evc_decision d;
    evc_decide(outcome, progress, ev->digest, &d);
    if (d.verdict == EVC_ANSWERED) {
      ev->dup = 1;
    } else if (d.verdict == EVC_RECOVER) {
      ev->recover = 1;
      if (d.checkpoint) wk_copy_id(ev->checkpoint, sizeof ev->checkpoint, d.checkpoint);
    } else if (d.verdict == EVC_REUSED) {
      char msg[512];
      evc_reused_message(msg, sizeof msg, ev->event_id, &d);
      ev_reject(ev, EVC_CODE, msg);
    }
  }
  on_lookup(ev, err);
}

static void on_handle(void *opaque, int err, const char *value) {
  wk_event *ev = opaque;
  if (!err && value) wk_copy_id(ev->handle, sizeof ev->handle, value);
  on_lookup(ev, err);
}

/* ---- start -------------------------------------------------------------- */

void wk_ev_start(wk_event *ev) {
  wk *w = ev->w;
  if (ev->abandoned) {
    wk_ev_finish(ev); /* behind an abandoned event of its conversation */
    return;
  }
  if (wki_stale(ev)) {
    /* The partition was revoked before this event started: its new owner
     * reads it again from the committed offset. */
    log_ctx c = wk_ev_ctx(ev);
    log_debug(&c, "partition revoked; event left to its new owner");
    wk_ev_finish(ev);
    return;
  }
  if (!ev->conv_id[0] || !ev->event_id[0] || !ev->conv_ref[0] || ev->reject_code) {
    /* Nothing to look up without both ids, or when the event's identity
     * (key rule, tenant) was rejected: its conversation is not known.  A
     * rejected event neither claims its id nor is skipped by a claim. */
    ev_publish_rejection(ev);
    return;
  }
  if (ev_admit(ev)) {
    if (ev->reject_code) ev_publish_rejection(ev);
    return;
  }
  wk_ev_set_state(ev, ST_LOOKUP);
  const char *hkey = be_handle_key(w->be);
  int need_handle = hkey && !ev->handle[0];
  ev->pending_lookups = 1 + need_handle;
  ev->lookup_failed = 0;
  ev->dup = 0;
  /* The outcome and progress records in one script (the claim is made only
   * when no outcome exists), the handle beside it: one round trip. */
  char claim[EVC_PROGRESS_PREFIX_MAX + 8];
  if (evc_progress_claim_value(claim, sizeof claim, ev->digest, wk_now_ms()) != AW_OK ||
      cstore_claim_event(&w->store, ev->conv_ref, ev->event_id, !ev->recover, claim, on_claim, ev) != AW_OK) {
    w->st.redis_errors++;
    wks_retry_later(ev);
    return;
  }
  if (need_handle && cstore_get_handle(&w->store, hkey, ev->conv_ref, on_handle, ev) != AW_OK) {
    ev->lookup_failed = 1; /* decided when the claim's reply arrives */
    ev->pending_lookups--;
  }
}

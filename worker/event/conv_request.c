/* conv_request.c -- history, append, reset and delete requests (see
 * conv_request.h for the cut and the steps).
 *
 * Each step is a short chain of callbacks on the event: a backend call
 * (ev->op, cancelled by a revocation like a turn's), then at most two Redis
 * scripts, then wk_ev_publish.  Nothing here frees the event: it ends
 * through the event machine (publish -> record -> finish), the retry list
 * (wks_retry_later runs it again from its lookup) or wk_ev_abandon.
 */
#include "conv_request.h"

#include <stdio.h>
#include <string.h>

#include "be_errors.h"
#include "conv_sched.h"
#include "conv_store.h"
#include "event.h"
#include "intake.h"

/* ---- pure helpers ---------------------------------------------------------- */

int wk_cr_handles(contract_kind kind) {
  return kind == CONTRACT_KIND_HISTORY || kind == CONTRACT_KIND_APPEND || kind == CONTRACT_KIND_RESET ||
         kind == CONTRACT_KIND_DELETE;
}

wk_cr_verdict wk_cr_verdict_of(int err) {
  switch (aw_error_classify(err)) {
  case AW_CLASS_RETRY: return WK_CR_RETRY;
  case AW_CLASS_FATAL: return WK_CR_STOP;
  default: return WK_CR_ANSWER; /* OK, or reject: answered failed */
  }
}

void wk_cr_fill(contract_kind kind, const be_conv_result *res, contract_response *r) {
  r->kind = kind;
  if (res->err != AW_OK) {
    r->status = "failed";
    r->error_code = res->error_code && *res->error_code ? res->error_code : be_error_code(res->err);
    r->error_message = res->errmsg && *res->errmsg ? res->errmsg : aw_strerror(res->err);
    return;
  }
  r->status = "completed";
  if (kind == CONTRACT_KIND_HISTORY || kind == CONTRACT_KIND_APPEND) {
    r->messages = res->messages;
    r->nmessages = res->nmessages;
  }
  if (kind == CONTRACT_KIND_HISTORY) {
    r->has_more = res->has_more;
    r->first_id = res->first_id;
    r->last_id = res->last_id;
  }
}

int wk_cr_reset_checkpoint(char *out, size_t n, const char *old) {
  int k = snprintf(out, n, "%s%s", WK_CR_RESET_PREFIX, old ? old : "");
  return k < 0 || (size_t)k >= n ? AW_ETOOBIG : AW_OK;
}

const char *wk_cr_reset_old(const char *checkpoint) {
  size_t k = sizeof WK_CR_RESET_PREFIX - 1;
  if (!checkpoint || strncmp(checkpoint, WK_CR_RESET_PREFIX, k) != 0) return NULL;
  return checkpoint + k;
}

/* ---- answers ------------------------------------------------------------- */

static void count(wk_event *ev, const char *status) {
  wk *w = ev->w;
  int ok = strcmp(status, "completed") == 0;
  if (ok) w->st.answered++;
  else w->st.failed++;
}

/* Answer from res (zeroed: completed with nothing to add), naming the
 * backend conversation ev->h_conv. */
static void answer(wk_event *ev, const be_conv_result *res) {
  wk *w = ev->w;
  contract_response r = {0};
  r.event_id = ev->event_id;
  r.conversation_id = ev->conv_id;
  wk_cr_fill(ev->req->kind, res, &r);
  r.backend_kind = be_kind(w->be);
  r.backend_conversation = ev->h_conv[0] ? ev->h_conv : NULL;
  r.timings.received_ms = ev->received_ms;
  r.timings.completed_ms = wk_now_ms();
  wk_copy_id(ev->status, sizeof ev->status, r.status);
  count(ev, r.status);
  log_ctx c = wk_ev_ctx(ev);
  if (res->err == AW_OK)
    log_info(&c, "%s request completed", contract_kind_name(ev->req->kind));
  else
    log_warn(&c, "%s request failed: %s: %s", contract_kind_name(ev->req->kind), r.error_code, r.error_message);
  wk_ev_publish(ev, &r);
}

/* A Redis step failed: the event runs again from its lookup. */
static void redis_retry(wk_event *ev, const char *what) {
  ev->w->st.redis_errors++;
  log_ctx c = wk_ev_ctx(ev);
  log_warn(&c, "%s request: cannot %s in redis; trying again", contract_kind_name(ev->req->kind), what);
  wks_retry_later(ev);
}

/* The class of a backend error decides (conv_request.h); 1 when the event
 * was handled here (retry, stop, or answered failed), 0 on success. */
static int backend_failed(wk_event *ev, const be_conv_result *res) {
  if (res->err == AW_OK) return 0;
  log_ctx c = wk_ev_ctx(ev);
  switch (wk_cr_verdict_of(res->err)) {
  case WK_CR_RETRY:
    log_warn(&c, "%s request: backend error, trying again: %s", contract_kind_name(ev->req->kind),
             res->errmsg ? res->errmsg : aw_strerror(res->err));
    wks_retry_later(ev);
    return 1;
  case WK_CR_STOP:
    log_error(&c, "backend error that stops the worker: %s", res->errmsg ? res->errmsg : aw_strerror(res->err));
    wk_ev_abandon(ev);
    if (ev->w->cfg.on_fatal) ev->w->cfg.on_fatal(ev->w->cfg.fatal_opaque);
    return 1;
  default:
    answer(ev, res);
    return 1;
  }
}

/* A call that failed before any I/O ends like one that failed later. */
static void not_started(wk_event *ev, int rc, be_conv_cb done) {
  be_conv_result res = {0};
  res.err = rc;
  res.errmsg = "the backend could not start the request";
  done(ev, &res);
}

static void conv_input(wk_event *ev, be_conv_input *in, const char *handle) {
  const contract_request *q = ev->req;
  memset(in, 0, sizeof *in);
  in->conversation_id = ev->conv_ref; /* what the backend's store ports key by (turn.c) */
  in->event_id = ev->event_id;
  in->handle = handle && *handle ? handle : NULL;
  in->checkpoint = ev->checkpoint[0] ? ev->checkpoint : NULL;
  in->recover = ev->recover;
  in->limit = q->limit > 0 ? q->limit : CONTRACT_HISTORY_LIMIT_DEFAULT;
  in->after = q->after;
  in->before = q->before;
  in->order_asc = q->order_asc;
  in->messages = q->messages;
  in->nmessages = q->nmessages;
}

/* ---- history --------------------------------------------------------------- */

static void on_history(void *opaque, const be_conv_result *res) {
  wk_event *ev = opaque;
  ev->op = NULL;
  if (res->err == AW_OK && res->handle && *res->handle) wk_copy_id(ev->h_conv, sizeof ev->h_conv, res->handle);
  if (!backend_failed(ev, res)) answer(ev, res);
}

static const be_conv_events history_events = {.on_done = on_history};

static void run_history(wk_event *ev) {
  wk_copy_id(ev->h_conv, sizeof ev->h_conv, ev->handle);
  be_conv_input in;
  conv_input(ev, &in, ev->handle);
  int rc = be_conv_history(ev->w->be, &in, &history_events, ev, &ev->op);
  if (rc != AW_OK) not_started(ev, rc, on_history);
}

/* ---- append ---------------------------------------------------------------- */

/* As a turn's (turn.c): not waited for; a lost record only makes a
 * re-processed append look for what it added instead of resuming from the
 * checkpoint.  The opaque is the worker, which outlives the reply. */
static void on_progress_put(void *opaque, int err, const char *value) {
  (void)value;
  if (err) ((wk *)opaque)->st.redis_errors++;
}

static void append_checkpoint(void *opaque, const char *checkpoint) {
  wk_event *ev = opaque;
  if (!checkpoint || !*checkpoint || strcmp(checkpoint, ev->checkpoint) == 0) return;
  wk_copy_id(ev->checkpoint, sizeof ev->checkpoint, checkpoint);
  if (cstore_put_progress(&ev->w->store, ev->conv_ref, ev->event_id, ev->checkpoint, on_progress_put, ev->w) !=
      AW_OK)
    ev->w->st.redis_errors++;
}

static void on_append(void *opaque, const be_conv_result *res) {
  wk_event *ev = opaque;
  ev->op = NULL;
  /* The handle the messages went to (perhaps created by this append):
   * the answer's, as a turn's is. */
  if (res->handle && *res->handle) wk_copy_id(ev->h_conv, sizeof ev->h_conv, res->handle);
  if (!backend_failed(ev, res)) answer(ev, res);
}

static const be_conv_events append_events = {.on_checkpoint = append_checkpoint, .on_done = on_append};

static void run_append(wk_event *ev) {
  wk_copy_id(ev->h_conv, sizeof ev->h_conv, ev->handle);
  be_conv_input in;
  conv_input(ev, &in, ev->handle);
  int rc = be_conv_append(ev->w->be, &in, &append_events, ev, &ev->op);
  if (rc != AW_OK) not_started(ev, rc, on_append);
}

/* ---- reset ----------------------------------------------------------------- */

static void on_reset_deleted(void *opaque, const be_conv_result *res) {
  wk_event *ev = opaque;
  ev->op = NULL;
  if (backend_failed(ev, res)) return; /* a retry runs the reset again from its checkpoint */
  be_conv_result ok = {0};
  answer(ev, &ok);
}

static const be_conv_events reset_delete_events = {.on_done = on_reset_deleted};

static void on_forgotten(void *opaque, int err, const char *value) {
  wk_event *ev = opaque;
  if (err) {
    redis_retry(ev, "forget the conversation");
    return;
  }
  /* The checkpoint's handle stands (an earlier attempt may have forgotten
   * the key already); the script's is the same unless the lookup missed it. */
  if (!ev->h_conv[0] && value && *value) wk_copy_id(ev->h_conv, sizeof ev->h_conv, value);
  if (!ev->w->cfg.reset_deletes_old || !ev->h_conv[0]) {
    be_conv_result ok = {0};
    answer(ev, &ok);
    return;
  }
  if (wki_stale(ev)) { /* the new owner runs the reset again from its checkpoint */
    wk_ev_finish(ev);
    return;
  }
  be_conv_input in;
  conv_input(ev, &in, ev->h_conv);
  int rc = be_conv_delete(ev->w->be, &in, &reset_delete_events, ev, &ev->op);
  if (rc != AW_OK) not_started(ev, rc, on_reset_deleted);
}

static void reset_forget(wk_event *ev) {
  if (cstore_forget_conversation(&ev->w->store, be_handle_key(ev->w->be), ev->conv_ref, on_forgotten, ev) != AW_OK)
    redis_retry(ev, "forget the conversation");
}

static void on_reset_recorded(void *opaque, int err, const char *value) {
  wk_event *ev = opaque;
  (void)value;
  if (err) {
    redis_retry(ev, "record the reset's checkpoint");
    return;
  }
  /* Recorded: a retry of this attempt recovers it from here. */
  if (wk_cr_reset_checkpoint(ev->checkpoint, sizeof ev->checkpoint, ev->h_conv) != AW_OK) ev->checkpoint[0] = '\0';
  reset_forget(ev);
}

static void run_reset(wk_event *ev) {
  /* Re-processed after its checkpoint was recorded: the old handle is the
   * checkpoint's (the handle key may be gone already). */
  const char *old = wk_cr_reset_old(ev->checkpoint);
  if (old) {
    wk_copy_id(ev->h_conv, sizeof ev->h_conv, old);
    reset_forget(ev);
    return;
  }
  wk_copy_id(ev->h_conv, sizeof ev->h_conv, ev->handle);
  char cp[BE_CHECKPOINT_MAX];
  if (wk_cr_reset_checkpoint(cp, sizeof cp, ev->h_conv) != AW_OK) {
    /* A handle is far shorter than a checkpoint (BE_HANDLE_MAX). */
    be_conv_result res = {0};
    res.err = AW_ETOOBIG;
    res.errmsg = "the conversation's handle does not fit a checkpoint";
    answer(ev, &res);
    return;
  }
  if (cstore_put_progress(&ev->w->store, ev->conv_ref, ev->event_id, cp, on_reset_recorded, ev) != AW_OK)
    redis_retry(ev, "record the reset's checkpoint");
}

/* ---- delete ---------------------------------------------------------------- */

/* The order -- backend first, then Redis, then the answer -- is what keeps
 * a crash at any point safe:
 *   - before or during the backend's delete: the handle is still in Redis,
 *     so the re-processed delete finds it and deletes again (a
 *     conversation that is gone already counts as deleted);
 *   - after it, before or during the erasure: the same (the erasure is one
 *     idempotent pass over the conversation's keys, run again whole);
 *   - after the erasure, before the answer is committed: nothing is left,
 *     not even this event's claim, so the re-processed delete is new: it
 *     deletes nothing at the backend (no handle), erases nothing and
 *     answers completed (backend.conversation nil: the handle is gone).
 *     Nobody saw the first answer (it commits with the offset, or not at
 *     all), so nothing is answered twice.
 * The other order would lose the handle first and leave the backend's
 * conversation -- the data the request asked to erase -- behind for good.
 *
 * Nothing is written back after the erasure, not even this event's outcome
 * record (it would hold the conversation's id in its key for
 * worker.outcome_ttl_s): the delete is exactly-once through its Kafka
 * transaction (answer and offset commit together; a record read again was
 * never answered).  A producer's re-send of the delete, a new record, is
 * answered again -- completed, backend.conversation nil --, which erases
 * nothing more: deleting is idempotent. */
static void on_erased(void *opaque, int err, const char *value) {
  wk_event *ev = opaque;
  if (err) {
    redis_retry(ev, "erase the conversation");
    return;
  }
  log_ctx c = wk_ev_ctx(ev);
  log_info(&c, "conversation erased: %s redis keys deleted", value && *value ? value : "0");
  /* No digest: wk_ev_record writes no outcome record (event.c,
   * ev_claims_its_id), so no key of the conversation is left (above). */
  ev->digest[0] = '\0';
  be_conv_result ok = {0};
  answer(ev, &ok);
}

static void on_deleted(void *opaque, const be_conv_result *res) {
  wk_event *ev = opaque;
  ev->op = NULL;
  if (backend_failed(ev, res)) return;
  if (cstore_erase_conversation(&ev->w->store, ev->conv_ref, on_erased, ev) != AW_OK)
    redis_retry(ev, "erase the conversation");
}

static const be_conv_events delete_events = {.on_done = on_deleted};

static void run_delete(wk_event *ev) {
  wk_copy_id(ev->h_conv, sizeof ev->h_conv, ev->handle);
  be_conv_input in;
  conv_input(ev, &in, ev->handle);
  int rc = be_conv_delete(ev->w->be, &in, &delete_events, ev, &ev->op);
  if (rc != AW_OK) not_started(ev, rc, on_deleted);
}

/* ---- start ----------------------------------------------------------------- */

void wk_cr_start(wk_event *ev) {
  if (wki_stale(ev)) {
    /* The partition moved while the lookup was out: its new owner runs
     * the request (an append started here too could add twice). */
    log_ctx c = wk_ev_ctx(ev);
    log_debug(&c, "partition revoked before the request started; left to its new owner");
    wk_ev_finish(ev);
    return;
  }
  switch (ev->req->kind) {
  case CONTRACT_KIND_HISTORY: run_history(ev); break;
  case CONTRACT_KIND_APPEND: run_append(ev); break;
  case CONTRACT_KIND_RESET: run_reset(ev); break;
  case CONTRACT_KIND_DELETE: run_delete(ev); break;
  default: {
    be_conv_result res = {0};
    res.err = AW_EINVAL;
    res.errmsg = "this request kind has no conversation step";
    answer(ev, &res);
  }
  }
}

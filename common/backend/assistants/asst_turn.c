/* asst_turn.c -- the turn machine of the Assistants backend: the run's
 * stream, following a run by polling, collecting its messages, its tool
 * calls, and the one place a turn ends (asst_turn_finish).  The phases and
 * their order are drawn in asst_int.h.
 */
#include "asst_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be_errors.h"
#include "log.h"

static const char *phase_name(int p) {
  static const char *names[] = {"?", "creating_thread", "claiming_thread", "deleting_lost_thread",
                                "resuming_run", "looking_up_run", "looking_up_message",
                                "looking_up_message_run", "lookup_wait", "streaming",
                                "submitting_tool_outputs", "checking_submission", "cancelling",
                                "poll_wait", "polling", "listing_steps", "collecting_messages",
                                "cancelling_run", "reading_assistant", "listing_run_steps",
                                "fetching_files", "done"};
  return p >= 1 && p <= T_DONE ? names[p] : "?";
}

void asst_turn_phase(turn_op *t, int phase) {
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = {.event_id = asst_nz(t->event_id), .conversation_id = asst_nz(t->conversation_id),
                   .thread_id = asst_nz(t->thread), .run_id = asst_nz(t->run.id)};
    log_debug(&ctx, "turn %s -> %s", phase_name(t->phase), phase_name(phase));
  }
  t->phase = phase;
}

static void on_timer_closed(uv_handle_t *h) { free(h); }

turn_op *asst_turn_new(be_asst *be, const be_turn_events *ev, void *opaque) {
  turn_op *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->b.head.be = &be->base;
  t->b.kind = OP_TURN;
  t->be = be;
  t->ev = ev;
  t->opaque = opaque;
  api_json_answer_init(&t->ans, be->max_answer_bytes);
  /* Tool-call arguments are model output like the answer: same bound. */
  api_json_tool_calls_init(&t->calls, be->max_answer_bytes);
  buf_init(&t->round_ids, ASST_ROUND_IDS_MAX * API_JSON_ID_MAX);
  /* Steps carry file_search chunks and code: model output too, same bound. */
  api_steps_init(&t->steps, be->max_answer_bytes);
  return t;
}

void asst_turn_free(turn_op *t) {
  if (t->b.call) api_call_cancel(t->b.call);
  if (t->timer) {
    t->timer->turn = NULL;
    uv_timer_stop(&t->timer->t);
    uv_close((uv_handle_t *)&t->timer->t, on_timer_closed);
  }
  api_json_answer_free(&t->ans);
  api_json_tool_calls_free(&t->calls);
  free(t->calls_view);
  buf_free(&t->round_ids);
  free(t->conversation_id);
  free(t->instructions);
  free(t->additional);
  free(t->tool_choice);
  cJSON_free(t->submit_body);
  cJSON_Delete(t->add_msg);
  free(t->tools_override);
  free(t->start_checkpoint);
  api_steps_free(&t->steps);
  gf_free(t->gf);
  free(t);
}

/* Call back the user; returns 1 if the turn was cancelled meanwhile (and is
 * now freed: the caller must unwind without touching it). */
#define USER_CB(t, call) \
  ((t)->b.in_cb++, (call), (t)->b.in_cb--, (t)->b.cancelled ? (asst_turn_free(t), 1) : 0)

void asst_turn_seterr(turn_op *t, int err, int status, const char *code, const char *fmt, ...) {
  t->err = err;
  t->http_status = status;
  asst_copy(t->error_code, sizeof t->error_code, code);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->errmsg, sizeof t->errmsg, fmt, ap);
  va_end(ap);
}

void asst_turn_clearerr(turn_op *t) {
  t->err = t->http_status = 0;
  t->error_code[0] = t->errmsg[0] = '\0';
}

void asst_turn_fail_api(turn_op *t, const api_result *r) {
  asst_turn_seterr(t, r->err, r->http_status, r->error_code, "%s", r->errmsg);
  asst_turn_finish(t);
}

void asst_turn_fail_start(turn_op *t, int rc, const char *what) {
  asst_turn_seterr(t, rc, 0, NULL, "%s could not start: %s", what, aw_strerror(rc));
  asst_turn_finish(t);
}

int asst_turn_run_known(turn_op *t) {
  if (!t->started_ms) t->started_ms = asst_now_ms();
  char cp[BE_CHECKPOINT_MAX];
  asst_checkpoint_format(cp, t->thread, t->run.id);
  if (strcmp(cp, t->checkpoint) == 0) return 0;
  memcpy(t->checkpoint, cp, sizeof cp);
  if (!t->ev->on_checkpoint) return 0;
  be_handles h = {.kind = "assistants", .conversation = asst_nz(t->thread), .turn = asst_nz(t->run.id)};
  return USER_CB(t, t->ev->on_checkpoint(t->opaque, t->checkpoint, &h));
}

/* ---- the end --------------------------------------------------------------------- */

void asst_turn_finish(turn_op *t) {
  asst_turn_phase(t, T_DONE);
  int answer = !t->err && !t->answer_err && !t->report_calls && api_json_run_terminal(t->run.status);
  /* Deltas promise that their concatenation is the final text: after a lost
   * stream (or a stream that skipped some), send what is missing at once.
   * A replayed turn sends none: its caller knows from res.replayed. */
  if (answer && !t->replay && t->want_deltas && t->ev->on_text_delta &&
      t->ans.text_len > t->deltas_emitted) {
    buf rest;
    buf_init(&rest, t->ans.text_len);
    if (api_json_answer_text_from(&t->ans, t->deltas_emitted, &rest) == AW_OK && rest.len) {
      t->deltas_emitted += rest.len;
      int gone = USER_CB(t, t->ev->on_text_delta(t->opaque, rest.data, rest.len));
      buf_free(&rest);
      if (gone) return;
    }
    buf_free(&rest);
  }
  /* The run's steps and generated files come with the answer. */
  if (answer && !t->gathered && asst_gather(t)) return;
  be_turn_result res;
  memset(&res, 0, sizeof res);
  res.http_status = t->http_status;
  res.usage = t->run.usage;
  res.model = asst_nz(t->run.model);
  res.started_ms = t->started_ms;
  res.replayed = t->replay;
  res.checkpoint = asst_nz(t->checkpoint);
  res.handles.kind = "assistants";
  res.handles.conversation = asst_nz(t->thread);
  res.handles.turn = asst_nz(t->run.id);
  if (!t->err && t->answer_err)
    asst_turn_seterr(t, t->answer_err, 0, NULL, "answer exceeds max_answer_bytes (%zu)",
                     t->be->max_answer_bytes);
  if (!t->err && !t->no_messages && api_json_answer_build(&t->ans, &res.messages, &res.nmessages) != AW_OK)
    asst_turn_seterr(t, AW_ENOMEM, 0, NULL, "out of memory building the answer");
  if (!t->err && !t->report_calls && !api_json_run_terminal(t->run.status))
    asst_turn_seterr(t, AW_EIO, t->http_status, NULL, "run %s left in status %s", t->run.id,
                     t->run.status[0] ? t->run.status : "unknown");
  if (t->err) {
    res.end = BE_END_ERROR;
    res.err = t->err;
    res.error_code = asst_nz(t->error_code) ? t->error_code : be_error_code(t->err);
    res.errmsg = t->errmsg;
    res.messages = NULL;
    res.nmessages = 0;
  } else if (t->report_calls) {
    res.end = BE_END_TOOL_CALLS;
    res.tool_calls = t->calls_view;
    res.ntool_calls = api_json_tool_calls_count(&t->calls);
    res.expires_at_ms = api_json_unix_ms(t->run.expires_at);
  } else {
    res.end = BE_END_ANSWER;
    res.status = t->run.status;
    res.error_code = asst_nz(t->error_code) ? t->error_code : asst_nz(t->run.error_code);
    res.errmsg = asst_nz(t->errmsg) ? t->errmsg : asst_nz(t->run.error_message);
    res.files = t->gf_res.files;
    res.nfiles = t->gf_res.nfiles;
    if (t->include_steps && api_steps_build(&t->steps, &res.steps, &res.nsteps) != AW_OK)
      res.steps = NULL, res.nsteps = 0; /* out of memory: the answer goes without them */
  }
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = {.event_id = asst_nz(t->event_id), .conversation_id = asst_nz(t->conversation_id),
                   .thread_id = asst_nz(t->thread), .run_id = asst_nz(t->run.id)};
    log_debug(&ctx, "turn done: end=%d %s status=%s", (int)res.end, aw_strerror(res.err),
              res.status ? res.status : "-");
  }
  t->b.in_cb++;
  t->ev->on_done(t->opaque, &res);
  asst_turn_free(t);
}

/* ---- function calls ------------------------------------------------------------- */

static void on_run_cancelled(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  (void)r; /* best effort: the run expires on its own otherwise */
  t->b.call = NULL;
  asst_turn_finish(t);
}

/* The run waits for tool outputs (its calls parsed into t->calls). */
static void turn_requires_action(turn_op *t) {
  if (t->calls_err || !t->tools_routed) {
    /* Nobody can act on it: cancel the run so the thread is free for the
     * next turn. */
    if (t->calls_err)
      asst_turn_seterr(t, t->calls_err, 0, "invalid_required_action",
                       "run %s requires action but its tool calls could not be read: %s", t->run.id,
                       aw_strerror(t->calls_err));
    else {
      /* An answer, not an error: the run ends cancelled, and says why. */
      asst_copy(t->error_code, sizeof t->error_code, "tool_calls_unsupported");
      snprintf(t->errmsg, sizeof t->errmsg,
               "run %s requires tool outputs but no tool service is routed", t->run.id);
    }
    asst_copy(t->run.status, sizeof t->run.status, "cancelled");
    asst_turn_phase(t, T_CANCEL_RUN);
    int rc = api_runs_cancel(t->be->api, t->thread, t->run.id, on_run_cancelled, t, &t->b.call);
    if (rc) asst_turn_finish(t);
    return;
  }
  const api_json_tool_call *c;
  size_t n;
  free(t->calls_view);
  t->calls_view = NULL;
  if (api_json_tool_calls_build(&t->calls, &c, &n) != AW_OK || !n ||
      !(t->calls_view = calloc(n, sizeof *t->calls_view))) {
    asst_turn_seterr(t, AW_ENOMEM, 0, NULL, "out of memory reporting tool calls");
    asst_turn_finish(t);
    return;
  }
  /* Same layout, but backend.h must not depend on api_json.h. */
  for (size_t i = 0; i < n; i++) {
    t->calls_view[i].id = c[i].id;
    t->calls_view[i].name = c[i].name;
    t->calls_view[i].arguments = c[i].arguments;
  }
  t->report_calls = 1;
  asst_turn_finish(t);
}

/* ---- polling ---------------------------------------------------------------------- */

static void on_timer(uv_timer_t *h) {
  turn_timer *tt = (turn_timer *)h;
  if (tt->turn) tt->fire(tt->turn);
}

void asst_turn_after(turn_op *t, long delay_ms, void (*fn)(turn_op *)) {
  if (!t->timer) {
    t->timer = calloc(1, sizeof *t->timer);
    if (!t->timer || uv_timer_init(t->be->loop, &t->timer->t) != 0) {
      free(t->timer);
      t->timer = NULL;
      asst_turn_fail_start(t, AW_ENOMEM, "timer");
      return;
    }
    t->timer->turn = t;
  }
  t->timer->fire = fn;
  uv_timer_start(&t->timer->t, on_timer, (uint64_t)(delay_ms > 0 ? delay_ms : 0), 0);
}

static void schedule_poll(turn_op *t) {
  asst_turn_phase(t, T_POLL_WAIT);
  asst_turn_after(t, t->poll_delay_ms, asst_turn_poll);
  /* 200 ms doubling to 2 s: quick for short runs, gentle for long ones. */
  t->poll_delay_ms = t->poll_delay_ms ? t->poll_delay_ms * 2 : 200;
  if (t->poll_delay_ms > 2000) t->poll_delay_ms = 2000;
}

void asst_turn_follow(turn_op *t) {
  t->poll_delay_ms = 0;
  schedule_poll(t);
}

void asst_turn_poll(turn_op *t) {
  asst_turn_phase(t, T_POLL);
  int rc = api_runs_retrieve(t->be->api, t->thread, t->run.id, asst_turn_on_run, t, &t->b.call);
  if (rc) asst_turn_fail_start(t, rc, "GET run");
}

static void collect(turn_op *t);

void asst_turn_on_run(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  int checking = t->phase == T_CHECK_SUBMIT;
  if (r->err) {
    asst_turn_fail_api(t, r);
    return;
  }
  api_json_run run;
  if (api_json_run_parse(r->json, &run) != AW_OK) {
    asst_turn_seterr(t, AW_EPARSE, r->http_status, NULL, "GET run %s: not a run object", t->run.id);
    asst_turn_finish(t);
    return;
  }
  t->run = run;
  if (strcmp(run.status, "requires_action") == 0) {
    if (t->no_messages) { /* cancelling: it goes cancelling -> cancelled */
      schedule_poll(t);
      return;
    }
    t->calls_err = api_json_tool_calls_parse(&t->calls, r->json);
    if (checking && !t->calls_err && asst_run_waits_for_round(t)) {
      /* The run still waits for the calls we answered: our submission was
       * certainly not taken. */
      if (t->submit_refused) asst_turn_finish(t); /* the 4xx stands */
      else asst_submit(t);
      return;
    }
    if (checking) asst_turn_clearerr(t); /* taken: the run moved on */
    /* The messages written before the calls belong to this round's answer. */
    if (!t->calls_err && t->tools_routed) collect(t);
    else turn_requires_action(t);
    return;
  }
  if (checking) asst_turn_clearerr(t); /* the run's own outcome is the truth */
  if (api_json_run_terminal(run.status)) {
    /* A cancel that came too late (the run completed first: the API
     * refused the cancel) answers with what the run wrote, like any
     * completed run; a run that ended otherwise has nothing new. */
    if (t->no_messages && strcmp(run.status, "completed") == 0) t->no_messages = 0;
    if (t->no_messages) asst_turn_finish(t);
    else collect(t);
  } else {
    schedule_poll(t);
  }
}

/* ---- collecting the run's messages after polling -------------------------------- */

static void on_steps(void *opaque, const api_result *r);
static void on_messages(void *opaque, const api_result *r);

/* A submission's round: the run's messages list holds every round's
 * messages, and message objects do not say which step wrote them; the run
 * steps do.  Newest first, the message_creation steps before the tool_calls
 * step holding our call id are this round's. */
static void list_steps(turn_op *t) {
  asst_turn_phase(t, T_STEPS);
  if (!t->after[0]) buf_reset(&t->round_ids);
  int rc = api_run_steps_list(t->be->api, t->thread, t->run.id, 100, "desc",
                              t->after[0] ? t->after : NULL, on_steps, t, &t->b.call);
  if (rc) asst_turn_fail_start(t, rc, "GET run steps");
}

static void on_steps(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (r->err) {
    asst_turn_fail_api(t, r);
    return;
  }
  int found = 0;
  char last[API_JSON_ID_MAX];
  int rc = api_json_steps_after_call(r->json, t->round_call, &t->round_ids, &found, last);
  if (rc) {
    asst_turn_seterr(t, rc, r->http_status, NULL, "GET %s/threads/%s/runs/%s/steps: %s",
                     api_client_base_path(t->be->api), t->thread, t->run.id,
                     rc == AW_ETOOBIG ? "too many messages in one round" : "not a list");
    asst_turn_finish(t);
    return;
  }
  t->steps_pages++;
  if (!found && last[0] && strcmp(last, t->after) != 0 && t->steps_pages < ASST_MAX_PAGES &&
      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "has_more"))) {
    asst_copy(t->after, sizeof t->after, last);
    list_steps(t);
    return;
  }
  /* Not found within the bound: every message seen counts (at worst an
   * earlier round's text repeats; nothing is lost). */
  t->steps_done = 1;
  t->after[0] = '\0';
  collect(t);
}

static void collect(turn_op *t) {
  if (t->round_call[0] && !t->steps_done) {
    list_steps(t);
    return;
  }
  asst_turn_phase(t, T_MESSAGES);
  if (!t->after[0]) {
    api_json_answer_reset(&t->ans); /* the list is the whole truth */
    t->answer_err = 0;
  }
  int rc = api_messages_list(t->be->api, t->thread, t->run.id, "asc", 100,
                             t->after[0] ? t->after : NULL, on_messages, t, &t->b.call);
  if (rc) asst_turn_fail_start(t, rc, "GET messages");
}

static void on_messages(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (r->err) {
    asst_turn_fail_api(t, r);
    return;
  }
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->json, "data"), *m;
  const char *last = NULL;
  cJSON_ArrayForEach(m, data) {
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"));
    if (t->round_call[0] && (!id || !api_json_ids_contain(&t->round_ids, id))) {
      last = id; /* an earlier round's message */
      continue;
    }
    int rc = api_json_answer_add(&t->ans, m);
    if (rc == AW_ETOOBIG || rc == AW_ENOMEM) {
      t->answer_err = rc;
      break;
    }
    last = id;
  }
  if (!t->answer_err && last && strlen(last) < sizeof t->after && strcmp(last, t->after) != 0 &&
      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "has_more"))) {
    asst_copy(t->after, sizeof t->after, last);
    collect(t);
    return;
  }
  t->after[0] = '\0';
  if (strcmp(t->run.status, "requires_action") == 0) turn_requires_action(t);
  else asst_turn_finish(t);
}

/* ---- the stream ------------------------------------------------------------------- */

static int ev_is(const char *ev, size_t len, const char *name) {
  size_t n = strlen(name);
  return len == n && memcmp(ev, name, n) == 0;
}

static int on_delta_text(void *opaque, const char *text, size_t len) {
  turn_op *t = opaque;
  t->deltas_emitted += len;
  return USER_CB(t, t->ev->on_text_delta(t->opaque, text, len));
}

int asst_turn_on_event(void *opaque, const char *ev, size_t evlen, const char *data, size_t len) {
  turn_op *t = opaque;
  /* Ordered by frequency: deltas dominate a stream. */
  if (ev_is(ev, evlen, "thread.message.delta")) {
    if (!t->want_deltas || !t->ev->on_text_delta) return 0; /* not even parsed */
    int rc = api_json_delta_texts(data, len, on_delta_text, t);
    return rc > 0 ? 1 : 0; /* >0: cancelled inside on_text_delta; bad JSON is skipped */
  }
  if (evlen > 11 && memcmp(ev, "thread.run.", 11) == 0 && memcmp(ev + 11, "step.", 5) != 0) {
    const char *st = ev + 11;
    size_t stl = evlen - 11;
    int created = ev_is(st, stl, "created");
    int ra = ev_is(st, stl, "requires_action");
    int needed = created || ra || ev_is(st, stl, "completed") || ev_is(st, stl, "failed") ||
                 ev_is(st, stl, "cancelled") || ev_is(st, stl, "expired") ||
                 ev_is(st, stl, "incomplete") || (!t->run_created && ev_is(st, stl, "queued"));
    if (!needed) return 0;
    api_json_run run;
    cJSON *j = cJSON_ParseWithLength(data, len);
    if (!j || api_json_run_parse(j, &run) != AW_OK || (t->run_created && strcmp(run.id, t->run.id) != 0)) {
      cJSON_Delete(j);
      return 0;
    }
    if (ra) t->calls_err = api_json_tool_calls_parse(&t->calls, j);
    cJSON_Delete(j);
    t->run = run;
    if (!t->run_created) {
      t->run_created = 1;
      if (asst_turn_run_known(t)) return 1;
    }
    if (ra) t->requires_action = 1;
    else if (api_json_run_terminal(run.status)) t->terminal = 1;
    return 0;
  }
  if (ev_is(ev, evlen, "thread.message.completed")) {
    if (t->answer_err) return 0;
    int rc = api_json_answer_add_text(&t->ans, data, len);
    if (rc == AW_ETOOBIG || rc == AW_ENOMEM) t->answer_err = rc;
    return 0;
  }
  if (ev_is(ev, evlen, "error")) {
    char code[64] = "", msg[256] = "";
    if (api_json_error_event(data, len, code, sizeof code, msg, sizeof msg)) {/* kept as text */}
    t->stream_error = 1;
    asst_turn_seterr(t, AW_EHTTP5XX, 200, code, "POST %s/threads/%s/runs%s: stream error: %s",
                     api_client_base_path(t->be->api), t->thread,
                     t->phase == T_SUBMIT ? "/{run}/submit_tool_outputs" : "", msg);
    return 0;
  }
  return 0;
}

static void on_stream_done(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (t->requires_action) {
    turn_requires_action(t);
    return;
  }
  if (t->stream_error || t->terminal) {
    asst_turn_finish(t);
    return;
  }
  if (t->run_created) {
    /* The run exists and goes on without us watching: follow it. */
    if (log_enabled(LOG_INFO)) {
      log_ctx ctx = {.event_id = asst_nz(t->event_id), .thread_id = t->thread, .run_id = t->run.id};
      log_info(&ctx, "stream ended before the run did (%s); following the run by polling",
               r->err ? r->errmsg : "clean end");
    }
    asst_turn_follow(t);
    return;
  }
  if (r->err == AW_EAMBIGUOUS || r->err == AW_OK) {
    /* The run may exist (a 5xx, a timeout after sending, a stream cut or
     * ended before run.created): never POST it blindly again -- look for
     * the run tagged with our event first. */
    asst_turn_seterr(t, AW_EAMBIGUOUS, r->http_status, r->error_code, "%s",
                     r->err ? r->errmsg : "stream ended before the run was created");
    asst_lookup_tagged_run(t);
    return;
  }
  if (asst_file_not_found(t, r)) {
    asst_turn_finish(t);
    return;
  }
  asst_turn_fail_api(t, r);
}

static void on_submit_done(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (t->requires_action) {
    /* Another round: its calls, with this round's messages. */
    turn_requires_action(t);
    return;
  }
  if (t->stream_error || t->terminal) {
    asst_turn_finish(t);
    return;
  }
  asst_submit_unsettled(t, r);
}

int asst_turn_post_run(turn_op *t) {
  t->posts++;
  cJSON *j = cJSON_CreateObject();
  cJSON *md = NULL;
  int ok = j && cJSON_AddStringToObject(j, "assistant_id", t->assistant) &&
           cJSON_AddTrueToObject(j, "stream");
  if (ok && t->instructions) ok = cJSON_AddStringToObject(j, "instructions", t->instructions) != NULL;
  if (ok && t->additional)
    ok = cJSON_AddStringToObject(j, "additional_instructions", t->additional) != NULL;
  if (ok && t->tools_override) {
    /* Attachments need a hosted tool the assistant lacks: the run gets
     * the assistant's tools plus it (CreateRunRequest.tools). */
    cJSON *tools = cJSON_Parse(t->tools_override);
    ok = tools && cJSON_AddItemToObject(j, "tools", tools);
    if (!ok) cJSON_Delete(tools);
  }
  if (ok && t->tool_choice) {
    /* The run's tool_choice holds for the whole run: every step of it,
     * also after tool outputs were submitted (see README). */
    cJSON *tc = cJSON_Parse(t->tool_choice);
    ok = tc && cJSON_AddItemToObject(j, "tool_choice", tc);
    if (!ok) cJSON_Delete(tc);
  }
  /* The run carries our event id (aw_tag): what a lookup after an
   * ambiguous outcome or a crash finds it by.  Started for a message an
   * earlier attempt added, it names that message too. */
  if (ok) md = cJSON_AddObjectToObject(j, "metadata");
  ok = md && cJSON_AddStringToObject(md, "aw_tag", t->event_id);
  if (ok && t->msg_id[0]) ok = cJSON_AddStringToObject(md, "aw_message_id", t->msg_id) != NULL;
  if (ok && !t->msg_id[0]) {
    /* One request adds the message and starts the run: both or neither.
     * The message is kept (a duplicate goes out) for a second POST after a
     * lookup that found nothing. */
    cJSON *arr = cJSON_AddArrayToObject(j, "additional_messages");
    cJSON *m = arr && t->add_msg ? cJSON_Duplicate(t->add_msg, 1) : NULL;
    ok = m && cJSON_AddItemToArray(arr, m);
  }
  char *body = NULL;
  if (!ok) cJSON_Delete(j);
  if (!ok || asst_print_json(j, &body)) return AW_ENOMEM;
  asst_turn_phase(t, T_STREAM);
  t->run_created = t->terminal = t->requires_action = t->stream_error = 0;
  int rc = api_runs_create(t->be->api, t->thread, body, asst_turn_on_event, on_stream_done, t, &t->b.call);
  cJSON_free(body);
  if (rc) t->b.call = NULL;
  return rc;
}

int asst_submit_send(turn_op *t) {
  asst_turn_clearerr(t);
  t->requires_action = t->terminal = t->stream_error = 0;
  t->run_created = 1; /* the run exists: events of other runs are ignored */
  asst_turn_phase(t, T_SUBMIT);
  int rc = api_runs_submit_tool_outputs(t->be->api, t->thread, t->run.id, t->submit_body,
                                        asst_turn_on_event, on_submit_done, t, &t->b.call);
  if (rc) t->b.call = NULL;
  return rc;
}

void asst_submit(turn_op *t) {
  if (++t->submits > ASST_SUBMITS_MAX) {
    /* t->err holds the last ambiguous outcome. */
    if (!t->err)
      asst_turn_seterr(t, AW_EAMBIGUOUS, 0, NULL, "tool outputs for run %s not accepted after %d tries",
                       t->run.id, ASST_SUBMITS_MAX);
    asst_turn_finish(t);
    return;
  }
  int rc = asst_submit_send(t);
  if (rc) asst_turn_fail_start(t, rc, "POST submit_tool_outputs");
}

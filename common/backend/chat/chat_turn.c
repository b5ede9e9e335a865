/* chat_turn.c -- one turn on Chat Completions: a state machine moved by
 * chat_turn_to() alone, which logs every change (see chat_int.h).
 *
 *   start:    LOAD --(committed)--> DONE (the stored answer, replayed)
 *                  |--(pending with open calls)--> DONE tool calls (replayed)
 *                  \--> POST --(finish_reason)--> COMMIT --> DONE answer
 *                        |  |                 \--> SAVE --> DONE tool calls
 *                        |  \--(4xx: the request's fault)--> DONE failed
 *                        \--(5xx, transport, cut short)--> RETRY_WAIT --> POST (bounded)
 *   continue: LOAD --(pending at this round)--> + outputs --> POST ...
 *                  |--(pending at a later round)--> DONE its calls (replayed)
 *                  |--(committed)--> DONE (replayed)
 *                  \--(no pending)--> DONE failed turn_state_lost
 *   cancel:   DONE cancelled (nothing runs at the server; nothing committed)
 *
 * The load comes first on every start, recovering or not: one store round
 * trip tells whether the event was answered (the answer is then read back,
 * nothing is generated), waits for tool outputs (its calls are offered
 * again), or is new; and it brings the history the request needs anyway.
 *
 * A commit that finds the event committed already (another attempt won a
 * race to it) answers with what is stored, loaded again, so the answer
 * published is the one the conversation goes on from.
 *
 * Memory per turn: this struct (~1.5 KiB), the turn's messages, the request
 * body (bounded by the context budget plus the current turn), the stream's
 * text and calls (bounded by max_answer_bytes and CHAT_CALLS_MAX).
 *
 * Cancellation follows the Responses backend: be_op_cancel inside one of
 * our user callbacks only marks the turn (in_cb > 0) and the code that
 * called back frees it; the history port has no cancel, so a turn cancelled
 * while a store call is out (store_busy) is freed by that call's callback.
 */
#include "chat_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be_errors.h"
#include "log.h"

static const char *state_name(chat_turn_state s) {
  static const char *names[] = {"new", "loading", "posting", "retry_wait", "saving_round", "committing", "done"};
  return s <= CHAT_S_DONE ? names[s] : "?";
}

#define EMPTY_RETRIES 2 /* a 2xx without a chunk (llama.cpp's failure mode) is sent again this often */

static const char *nz(const char *s) { return s && s[0] ? s : NULL; }

static int64_t now_ms(void) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0) return 0;
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

log_ctx chat_turn_ctx(const chat_turn *t) {
  log_ctx c = {.event_id = nz(t->event_id), .conversation_id = t->conversation_id, .run_id = nz(t->turn_id)};
  return c;
}

void chat_turn_to(chat_turn *t, chat_turn_state s) {
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = chat_turn_ctx(t);
    log_debug(&ctx, "turn %s -> %s (generation %d, rounds %d)", state_name(t->state), state_name(s), t->gen,
              t->rounds);
  }
  t->state = s;
}

/* ==== checkpoints ================================================================== */

int chat_checkpoint_format(char *out, size_t n, int gen, int rounds) {
  if (gen < 0 || rounds < 0) return AW_EINVAL;
  int w = snprintf(out, n, "c1 %d %d", gen, rounds);
  return w < 0 || (size_t)w >= n ? AW_ETOOBIG : AW_OK;
}

static int parse_num(const char **p, int *out) {
  size_t k = strspn(*p, "0123456789");
  if (k == 0 || k > 7) return 0;
  long v = strtol(*p, NULL, 10);
  if (v >= CHAT_GEN_MAX) return 0;
  *out = (int)v;
  *p += k;
  return 1;
}

int chat_checkpoint_parse(const char *cp, int *gen, int *rounds) {
  if (!cp || strncmp(cp, "c1 ", 3) != 0) return AW_EINVAL;
  const char *p = cp + 3;
  if (!parse_num(&p, gen) || *p++ != ' ' || !parse_num(&p, rounds) || *p) return AW_EINVAL;
  return AW_OK;
}

/* ==== life cycle ==================================================================== */

static void on_timer_closed(uv_handle_t *h) { free(h); }

static void free_outs(chat_turn *t) {
  for (size_t i = 0; i < t->nouts; i++) {
    if (t->out_ids) free(t->out_ids[i]);
    if (t->out_texts) free(t->out_texts[i]);
  }
  free(t->out_ids);
  free(t->out_texts);
}

static void turn_free(chat_turn *t) {
  if (t->call) api_call_cancel(t->call);
  if (t->timer) {
    t->timer->turn = NULL;
    uv_timer_stop(&t->timer->t);
    uv_close((uv_handle_t *)&t->timer->t, on_timer_closed);
  }
  chat_stream_free(&t->st);
  chat_record_free(&t->rec);
  cJSON_Delete(t->tools);
  cJSON_Delete(t->choice);
  cJSON_Delete(t->user);
  cJSON_Delete(t->cur);
  free_outs(t);
  cJSON_free(t->body);
  cJSON_free(t->record);
  free(t->calls);
  free(t->model);
  free(t->system);
  free(t->conversation_id);
  free(t);
}

void chat_turn_cancel_op(chat_op *op) {
  chat_turn *t = (chat_turn *)op;
  if (t->b.cancelled) return;
  t->b.cancelled = 1;
  if (t->call) api_call_cancel(t->call);
  t->call = NULL;
  if (t->timer) uv_timer_stop(&t->timer->t);
  /* Inside a callback of ours, or with a store call out: freed there. */
  if (t->b.in_cb || t->store_busy) return;
  turn_free(t);
}

/* Call back the user; 1 if the turn was cancelled meanwhile (and is now
 * freed: the caller unwinds without touching it). */
#define USER_CB(t, call) \
  ((t)->b.in_cb++, (call), (t)->b.in_cb--, (t)->b.cancelled ? (turn_free(t), 1) : 0)

/* A store callback arrived: 1 if the turn was cancelled meanwhile (now freed). */
int chat_turn_store_back(chat_turn *t) {
  t->store_busy = 0;
  cJSON_free(t->record);
  t->record = NULL;
  if (!t->b.cancelled) return 0;
  turn_free(t);
  return 1;
}

void chat_turn_seterr(chat_turn *t, int err, int status, const char *code, const char *fmt, ...) {
  t->err = err;
  t->http_status = status;
  snprintf(t->error_code, sizeof t->error_code, "%s", nz(code) ? code : err ? be_error_code(err) : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->errmsg, sizeof t->errmsg, fmt, ap);
  va_end(ap);
}

static void on_timer(uv_timer_t *h) {
  chat_turn_timer *tt = (chat_turn_timer *)h;
  if (tt->turn) tt->turn->next(tt->turn);
}

/* Run `next` after ms (0: on the next loop iteration). */
static void turn_wait(chat_turn *t, chat_turn_state s, long ms, chat_turn_step next) {
  if (!t->timer) {
    t->timer = calloc(1, sizeof *t->timer);
    if (!t->timer || uv_timer_init(t->be->loop, &t->timer->t) != 0) {
      free(t->timer);
      t->timer = NULL;
      chat_turn_seterr(t, AW_ENOMEM, 0, "internal_error", "out of memory for a timer");
      chat_turn_finish(t);
      return;
    }
    t->timer->turn = t;
  }
  chat_turn_to(t, s);
  t->next = next;
  uv_timer_start(&t->timer->t, on_timer, (uint64_t)(ms > 0 ? ms : 0), 0);
}

/* Tell the worker where the turn is and what it is known by; 1 if the turn
 * was cancelled meanwhile (freed). */
int chat_turn_checkpoint(chat_turn *t) {
  if (chat_checkpoint_format(t->checkpoint, sizeof t->checkpoint, t->gen, t->rounds)) t->checkpoint[0] = '\0';
  if (!t->ev->on_checkpoint) return 0;
  /* No handles on chat (schemas/README.md): a completion id names one
   * generation of one round, not the turn; the stored turn keeps it ("i"). */
  be_handles h = {.kind = "chat", .conversation = NULL, .turn = NULL, .attempt = t->gen};
  return USER_CB(t, t->ev->on_checkpoint(t->opaque, t->checkpoint, &h));
}

/* ==== finishing ============================================================================ */

void chat_turn_finish(chat_turn *t) {
  if (t->starting) {
    /* Failed before any I/O: chat_turn_begin returns it, no callback. */
    t->start_rc = t->err ? t->err : AW_EINVAL;
    return;
  }
  chat_turn_to(t, CHAT_S_DONE);
  be_turn_result res;
  memset(&res, 0, sizeof res);
  contract_out_part part;
  contract_out_message msg = {0}; /* role NULL, created_at 0: keys left out (a turn's answer) */
  if (t->err) {
    res.end = BE_END_ERROR;
    res.err = t->err;
  } else {
    if (t->end_calls) {
      res.end = BE_END_TOOL_CALLS;
      res.tool_calls = t->calls;
      res.ntool_calls = t->ncalls;
    } else {
      res.end = BE_END_ANSWER;
      res.status = t->status ? t->status : "failed";
    }
    if (t->answer && t->answer[0]) {
      memset(&part, 0, sizeof part);
      part.type = "text";
      part.text = t->answer;
      part.text_len = strlen(t->answer);
      /* The chunks' id names the message (the API gives messages none). */
      msg.id = t->turn_id[0] ? t->turn_id : "msg_chat";
      msg.parts = &part;
      msg.nparts = 1;
      res.messages = &msg;
      res.nmessages = 1;
    }
  }
  res.error_code = nz(t->error_code);
  res.errmsg = t->errmsg;
  res.http_status = t->http_status;
  if (!t->replayed) {
    /* Every request of this call that reported usage counts (a retry is
     * charged again). */
    res.usage = chat_turn_usage(t);
    if (t->st.model[0]) snprintf(t->model_seen, sizeof t->model_seen, "%s", t->st.model);
    res.model = nz(t->model_seen);
  } else {
    /* Picked up from the store: what its requests cost, as stored (the
     * worker that made them did not get to report it). */
    res.usage = t->replay_u;
  }
  res.started_ms = t->started_ms;
  res.replayed = t->replayed;
  res.checkpoint = nz(t->checkpoint);
  res.handles.kind = "chat";
  res.handles.turn = NULL; /* see turn_checkpoint's handles */
  res.handles.attempt = t->gen;
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = chat_turn_ctx(t);
    const char *end = res.end == BE_END_ERROR ? "error" : res.end == BE_END_TOOL_CALLS ? "tool_calls" : "answer";
    log_debug(&ctx, "turn ended: %s %s%s%s", end, res.end == BE_END_ERROR ? aw_strerror(res.err) : res.status ? res.status : "",
              res.error_code ? " " : "", res.error_code ? res.error_code : "");
  }
  t->b.in_cb++;
  t->ev->on_done(t->opaque, &res);
  turn_free(t);
}

/* An answer with a status other than completed, nothing committed. */
void chat_turn_not_completed(chat_turn *t, const char *status, const char *code, const char *fmt, ...) {
  t->status = status;
  snprintf(t->error_code, sizeof t->error_code, "%s", code ? code : "");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->errmsg, sizeof t->errmsg, fmt, ap);
  va_end(ap);
  chat_turn_finish(t);
}

/* ==== the stream ================================================================================ */

static void turn_post(chat_turn *t);

static int on_event(void *opaque, const char *name, size_t nlen, const char *data, size_t len) {
  chat_turn *t = opaque;
  (void)name; /* chunks come as plain data lines; an error object says so itself */
  (void)nlen;
  chat_ev e;
  if (chat_stream_event(&t->st, data, len, &e) != AW_OK) return 0; /* not a chunk: skipped */
  if (t->st.err) return 1;                                          /* over a bound: stop reading */
  if (t->st.id[0] && strcmp(t->turn_id, t->st.id)) {
    /* Deltas from here on name this completion. */
    snprintf(t->turn_id, sizeof t->turn_id, "%s", t->st.id);
    if (chat_turn_checkpoint(t)) return 1;
  }
  if (e == CHAT_EV_DELTA && t->want_deltas && t->ev->on_text_delta) {
    t->gen_deltas += t->st.delta_len;
    t->deltas_total += t->st.delta_len;
    if (USER_CB(t, t->ev->on_text_delta(t->opaque, t->st.delta, t->st.delta_len))) return 1;
  }
  return 0;
}

/* Send the request again after a failure that created nothing (nothing
 * ever is), unless the bound is reached: then the failure stands. */
static void turn_retry(chat_turn *t, int err, int status, const char *code, const char *fmt, ...) AW_PRINTF(5, 6);
static void turn_retry(chat_turn *t, int err, int status, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char msg[sizeof t->errmsg];
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  chat_turn_seterr(t, err, status, code, "%s", msg);
  if (t->retries >= t->be->retry.max_retries || (err == AW_EPARSE && t->empties++ >= EMPTY_RETRIES)) {
    chat_turn_finish(t);
    return;
  }
  long delay = retry_delay_ms(&t->be->retry, t->retries, -1, t->be->rnd);
  t->be->rnd = t->be->rnd * 1664525u + 1013904223u;
  t->retries++;
  log_ctx ctx = chat_turn_ctx(t);
  log_info(&ctx, "chat completion failed (%s); sending it again in %ld ms (retry %d of %d)", msg, delay, t->retries,
           t->be->retry.max_retries);
  if (t->gen_deltas) {
    /* Text of this generation was delivered: the next one is told apart. */
    t->gen++;
    t->gen_deltas = 0;
    if (chat_turn_checkpoint(t)) return;
  }
  turn_wait(t, CHAT_S_RETRY_WAIT, delay, turn_post);
}

/* The finish_reason decides. */
static void turn_finished(chat_turn *t) {
  chat_stream *st = &t->st;
  const char *fr = st->finish;
  t->answer = st->text.data ? st->text.data : "";
  if (!strcmp(fr, "length") || !strcmp(fr, "content_filter")) {
    /* Cut short: answered as incomplete and kept (calls cut short with it
     * are dropped: their arguments are not whole). */
    t->status = "incomplete";
    int length = !strcmp(fr, "length");
    snprintf(t->error_code, sizeof t->error_code, "%s", length ? "max_output_tokens" : "content_filter");
    snprintf(t->errmsg, sizeof t->errmsg, "%s", length ? "the answer reached the model's output token limit"
                                                       : "the answer was cut by the server's content filter");
    chat_turn_commit(t);
    return;
  }
  if (st->ncalls || !strcmp(fr, "tool_calls")) {
    int rc = st->ncalls ? AW_OK : AW_EPARSE;
    if (!rc) rc = (t->calls = calloc(st->ncalls, sizeof *t->calls)) ? AW_OK : AW_ENOMEM;
    if (!rc) rc = chat_stream_calls(st, t->rounds, t->calls, &t->ncalls);
    if (rc) {
      chat_turn_seterr(t, rc, 0, NULL, "%s", rc == AW_EPARSE ? "the server ended with tool_calls but sent no whole call"
                                                         : "out of memory for the calls");
      chat_turn_finish(t);
      return;
    }
    if (!t->tools_routed) {
      chat_turn_not_completed(t, "cancelled", "tool_calls_unsupported",
                              "the model called %zu function(s) but no tool service is configured", t->ncalls);
      return;
    }
    chat_turn_save_round(t);
    return;
  }
  /* "stop", or a reason this backend does not know: the answer is whole. */
  t->status = "completed";
  chat_turn_commit(t);
}

/* A 4xx: the request's fault (the answer says why) or the deployment's. */
static void turn_refused(chat_turn *t, const api_result *r) {
  int s = r->http_status;
  const char *code = nz(r->error_code);
  if (s == 408) {
    turn_retry(t, AW_ETIMEDOUT, s, NULL, "%s", r->errmsg);
  } else if (s == 400 || s == 404 || s == 413 || s == 422) {
    /* context_length_exceeded, model_not_found, ...: this event's answer. */
    t->http_status = s;
    chat_turn_not_completed(t, "failed", code ? code : "invalid_request", "%s", r->errmsg);
  } else {
    /* 401/403 and the rest: as the other backends, an error of the reject
     * class with the API's code. */
    chat_turn_seterr(t, AW_EHTTP4XX, s, code, "%s", r->errmsg);
    chat_turn_finish(t);
  }
}

static void on_post_done(void *opaque, const api_result *r) {
  chat_turn *t = opaque;
  t->call = NULL;
  chat_stream *st = &t->st;
  if (st->err) {
    chat_turn_seterr(t, st->err, r->http_status, st->err == AW_ETOOBIG ? "answer_too_large" : NULL,
                     "the answer exceeds max_answer_bytes (%zu) or %d function calls", st->max_text, CHAT_CALLS_MAX);
    chat_turn_finish(t);
    return;
  }
  if (st->failed) {
    if (st->failed_transient) {
      turn_retry(t, AW_EHTTP5XX, r->http_status, st->error_code, "error in the stream: %s", st->errmsg);
      return;
    }
    t->http_status = r->http_status;
    chat_turn_not_completed(t, "failed", st->error_code, "%s", st->errmsg);
    return;
  }
  /* [DONE] ends a stream whole even from a server that sent no reason. */
  if (!st->finish[0] && st->done && st->chunks) snprintf(st->finish, sizeof st->finish, "stop");
  if (st->finish[0]) {
    turn_finished(t);
    return;
  }
  switch (r->err) {
  case AW_OK:
    if (!st->chunks)
      turn_retry(t, AW_EPARSE, r->http_status, NULL, "POST /chat/completions: HTTP %d without any chunk",
                 r->http_status);
    else
      turn_retry(t, AW_EIO, r->http_status, NULL, "the stream ended without a finish_reason");
    return;
  case AW_EHTTP4XX:
    turn_refused(t, r);
    return;
  case AW_EAMBIGUOUS: {
    /* Nothing is created by a chat completion: "may have been applied" is
     * harmless here; the class of what happened is what counts.  (The API
     * client says "timed out" in its message for timeouts.) */
    int err = r->http_status >= 500 ? AW_EHTTP5XX : strstr(r->errmsg, "timed out") ? AW_ETIMEDOUT : AW_EIO;
    turn_retry(t, err, r->http_status, nz(r->error_code), "%s", r->errmsg);
    return;
  }
  case AW_EHTTP5XX:
  case AW_EIO:
  case AW_ETIMEDOUT:
    /* The API's own code (server_error), when its body gave one, wins over
     * the transport's, as on the other backends. */
    turn_retry(t, r->err, r->http_status, nz(r->error_code), "%s", r->errmsg);
    return;
  default: /* 429 after the client's retries, an event over its size, ... */
    chat_turn_seterr(t, r->err, r->http_status, r->error_code, "%s", r->errmsg);
    chat_turn_finish(t);
    return;
  }
}

void chat_usage_add(contract_usage *a, const contract_usage *b) {
  if (!b->present) return;
  a->present = 1;
  a->prompt_tokens += b->prompt_tokens;
  a->completion_tokens += b->completion_tokens;
  a->total_tokens += b->total_tokens;
  a->cached_tokens += b->cached_tokens;
  a->reasoning_tokens += b->reasoning_tokens;
}

contract_usage chat_turn_usage(const chat_turn *t) {
  contract_usage u = t->usage_before;
  chat_usage_add(&u, &t->st.usage);
  return u;
}

static void turn_post(chat_turn *t) {
  /* The request before this one was charged when it reported usage: keep it. */
  chat_usage_add(&t->usage_before, &t->st.usage);
  if (t->st.model[0]) snprintf(t->model_seen, sizeof t->model_seen, "%s", t->st.model);
  chat_stream_reset(&t->st);
  t->err = t->http_status = 0;
  t->error_code[0] = t->errmsg[0] = '\0';
  if (!t->started_ms) t->started_ms = now_ms();
  chat_turn_to(t, CHAT_S_POST);
  int rc = api_stream(t->be->api, "/chat/completions", t->body, on_event, on_post_done, t, &t->call);
  if (rc) {
    t->call = NULL;
    chat_turn_seterr(t, rc, 0, NULL, "POST /chat/completions could not start: %s", aw_strerror(rc));
    chat_turn_finish(t);
  }
}

/* Build the request from the loaded history and the turn's messages, and
 * start a generation. */
void chat_turn_generate(chat_turn *t, const be_history_view *v) {
  cJSON *ctx = NULL;
  chat_context_stats cs;
  int rc = chat_context_build(t->system, v->turns, v->lens, v->nturns, t->cur, t->max_msgs, t->max_tokens, &ctx, &cs);
  if (!rc) {
    cJSON_free(t->body);
    t->body = NULL;
    rc = chat_json_body(t->model, ctx, t->tools, t->rounds == 0 ? t->choice : NULL, t->max_output_tokens, &t->body);
  }
  cJSON_Delete(ctx);
  if (rc) {
    chat_turn_seterr(t, rc, 0, NULL, "could not build the request: %s", aw_strerror(rc));
    chat_turn_finish(t);
    return;
  }
  log_ctx lc = chat_turn_ctx(t);
  if (cs.turns_corrupt) log_warn(&lc, "%zu stored turn(s) could not be read and were left out", cs.turns_corrupt);
  /* Info: what a turn sends is what it costs, and what the model knew. */
  log_info(&lc, "context: %zu of %zu stored turns sent, %zu messages, ~%zu tokens", cs.turns_sent, v->nturns,
           cs.messages, cs.tokens);
  if (chat_turn_checkpoint(t)) return;
  turn_post(t);
}

/* ==== entry ================================================================================================ */

static void end_cancelled(chat_turn *t) {
  /* Nothing runs at the server between rounds: the pending record expires. */
  chat_turn_not_completed(t, "cancelled", NULL, "cancelled while waiting for tool outputs");
}

static void end_unsupported(chat_turn *t) {
  chat_turn_not_completed(t, "failed", "unsupported_content",
                          "%s content parts are not supported by the chat backend (no request was made)",
                          t->unsupported ? t->unsupported : "file");
}

static int turn_setup(chat_turn *t, const be_turn_input *in, const be_tool_output *outs, size_t n) {
  snprintf(t->event_id, sizeof t->event_id, "%s", in->event_id);
  if (!(t->conversation_id = strdup(in->conversation_id))) return AW_ENOMEM;
  if (in->checkpoint && chat_checkpoint_parse(in->checkpoint, &t->cp_gen, &t->rounds) == AW_OK) {
    t->cp_ok = 1;
    snprintf(t->checkpoint, sizeof t->checkpoint, "%s", in->checkpoint);
  } else if (in->checkpoint && (in->recover || t->mode != CHAT_TURN_START)) {
    /* Another backend's (the deployment switched backends): the history
     * store holds what this backend needs. */
    log_ctx ctx = {.event_id = t->event_id, .conversation_id = t->conversation_id};
    log_warn(&ctx, "ignoring a checkpoint that is not this backend's");
  }
  /* A regenerated text gets a new generation: after a crash (recover), the
   * earlier attempt may have delivered some. */
  t->gen = t->mode == CHAT_TURN_START ? (t->recover ? t->cp_gen + 1 : 0)
                                      : t->cp_gen + (t->recover && t->mode == CHAT_TURN_CONTINUE ? 1 : 0);
  if (t->mode == CHAT_TURN_CANCEL) return AW_OK;
  if (!(t->model = strdup(in->assistant->model))) return AW_ENOMEM;
  t->max_output_tokens = in->assistant->max_output_tokens;
  chat_budget_of(in->assistant, &t->max_msgs, &t->max_tokens);
  int rc = chat_json_tools(in->assistant->tools_json, &t->tools, NULL, 0);
  if (!rc) rc = chat_json_tool_choice(in->assistant->tool_choice_json, &t->choice, NULL, 0);
  if (!rc) rc = chat_json_system(in, &t->system);
  if (rc) return rc;
  if (t->mode == CHAT_TURN_START) {
    rc = chat_json_user_message(in->parts, in->nparts, &t->user, &t->unsupported);
    return rc == AW_EINVAL && t->unsupported ? AW_OK : rc; /* end_unsupported says it */
  }
  if (!(t->out_ids = calloc(n, sizeof *t->out_ids)) || !(t->out_texts = calloc(n, sizeof *t->out_texts)))
    return AW_ENOMEM;
  t->nouts = n;
  for (size_t i = 0; i < n; i++)
    if (!(t->out_ids[i] = strdup(outs[i].tool_call_id)) || !(t->out_texts[i] = strdup(outs[i].output)))
      return AW_ENOMEM;
  return AW_OK;
}

int chat_turn_begin(chat_backend *be, chat_turn_mode mode, const be_turn_input *in, long round,
                    const be_tool_output *outs, size_t n, const be_turn_events *ev, void *opaque, be_op **out) {
  *out = NULL;
  if (!in->conversation_id || !in->event_id || !in->assistant || !in->assistant->model || !in->assistant->model[0])
    return AW_EINVAL;
  if (mode == CHAT_TURN_START && (!in->parts || !in->nparts)) return AW_EINVAL;
  if (mode == CHAT_TURN_CONTINUE) {
    if (n > CHAT_CALLS_MAX) return AW_ETOOBIG;
    for (size_t i = 0; i < n; i++)
      if (!outs[i].tool_call_id || !outs[i].tool_call_id[0] || !outs[i].output) return AW_EINVAL;
  }
  chat_turn *t = calloc(1, sizeof *t);
  if (!t) return AW_ENOMEM;
  t->b.head.be = &be->base;
  t->b.kind = CHAT_OP_TURN;
  t->be = be;
  t->mode = mode;
  t->ev = ev;
  t->opaque = opaque;
  /* A cancel delivers no text. */
  t->want_deltas = mode == CHAT_TURN_CANCEL ? 0 : in->want_deltas;
  t->tools_routed = in->tools_routed;
  t->recover = in->recover;
  t->round = round;
  chat_stream_init(&t->st, be->max_answer_bytes);
  int rc = turn_setup(t, in, outs, n);
  if (rc) {
    turn_free(t);
    return rc;
  }
  /* Every path starts on the next loop iteration: no callback (and no
   * store callback, whatever the store does) inside this call. */
  t->starting = 1;
  if (mode == CHAT_TURN_CANCEL) turn_wait(t, CHAT_S_DONE, 0, end_cancelled);
  else if (mode == CHAT_TURN_START && !t->user) turn_wait(t, CHAT_S_DONE, 0, end_unsupported);
  else turn_wait(t, CHAT_S_NEW, 0, chat_turn_load);
  t->starting = 0;
  if (t->start_rc) {
    rc = t->start_rc;
    turn_free(t);
    return rc;
  }
  *out = (be_op *)t;
  return AW_OK;
}

/* rsp_turn.c -- one turn on the Responses API: a state machine moved by
 * turn_to() alone, which logs every change (see rsp_int.h).
 *
 *   start:    [CONV] --> POST --(terminal)------------------------------> DONE
 *                         |--(stream lost after response.created)--> RESUME <-> RESUME_WAIT
 *                         |                                            \--(refused / bound)--> POLL <-> POLL_WAIT
 *                         |--(the same, background off)--------------------------------> POLL
 *                         \--(ambiguous before response.created)--> LOOKUP <-> LOOKUP_WAIT
 *                                   found, output complete --> DONE (answer from the items)
 *                                   found, output pending  --> LOOKUP again (bounded)
 *                                   not found (bounded wait) --> POST again (bounded)
 *   recover:  checkpoint --> RETRIEVE --(running)--> RESUME (replay, no deltas; POLL when
 *                                                      background is off)
 *                                     \--(ended)--> DONE, or LOOKUP for the outputs of its calls
 *             no checkpoint --> LOOKUP (one look) --> DONE, or POST
 *   continue: POST with function_call_output items, then as start
 *   cancel:   RETRIEVE --(running)--> CANCEL --> POLL --> DONE
 *                      \--(waiting for tool outputs)--> CLOSE_CALLS --> DONE cancelled
 *
 * The remaining window of "never twice": a POST /responses that failed
 * ambiguously before response.created is looked for in the conversation's
 * items.  The API writes a response's input to the conversation when the
 * response is stored; if a server wrote it only later than our bounded wait
 * (about 1.5 s by default) after the failure, the lookup misses it and the
 * input is posted a second time.  And conversation items carry no metadata:
 * our input is recognised by its text as the newest user message, so a
 * user who sends the same text twice in a row, the second time after an
 * ambiguous failure that had not been applied, is taken as already answered
 * (the first answer is reported again).  The lookup reads the newest 100
 * items: a round whose output ran to more items than that is not
 * recognised either.
 *
 * A turn waiting for tool outputs is, on this API, a *completed* response
 * whose function calls have no outputs in the conversation yet.  Cancelling
 * it (and refusing calls when nobody routes them) closes the calls by
 * adding function_call_output items that say so to the conversation (POST
 * /conversations/{id}/items), so that the conversation's next turn is not
 * refused for open calls; that is best effort: its failure is logged and the
 * turn still ends cancelled.
 *
 * Hosted tools (code interpreter, file search): a turn that ends with an
 * answer and cites generated files, or asked for steps, goes through
 * rsp_extras.c before on_done (EXTRAS): the files are fetched (inline up to
 * in->inline_file_max), and a continuation (a turn of several rounds) first
 * reads the conversation for what its earlier rounds made.  A turn whose
 * tools are functions only never makes these requests.  A POST refused
 * 400/404 for a file the request names ends AW_ENOTFOUND, file_not_found
 * (reject: the event names a file that is not there).
 *
 * Memory per turn: this struct (~2 KiB), the request body and input, the
 * answer collector (bounded by max_answer_bytes), the steps (rsp_hosted.c),
 * the fetched files (gen_files.h) and the one call in flight.
 *
 * Cancellation follows the Assistants backend: be_op_cancel inside one of
 * our user callbacks only marks the turn (in_cb > 0); the code that called
 * back frees it once the callback returned and unwinds.
 */
#include "rsp_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be_errors.h"
#include "log.h"

typedef enum {
  S_NEW = 0, S_CONV, S_RETRIEVE, S_LOOKUP, S_LOOKUP_WAIT, S_POST, S_RESUME, S_RESUME_WAIT, S_POLL,
  S_POLL_WAIT, S_CANCEL, S_CLOSE_CALLS, S_EXTRAS, S_DONE
} turn_state;

static const char *state_name(turn_state s) {
  static const char *names[] = {"new", "conversation", "retrieving", "looking_up", "lookup_wait",
                                "posting", "resuming", "resume_wait", "polling", "poll_wait",
                                "cancelling", "closing_calls", "fetching_files", "done"};
  return s <= S_DONE ? names[s] : "?";
}

/* Bounds. */
#define POSTS_MAX 3        /* POST /responses per round, re-posts after a miss included */
#define LOOKS_AFTER_FAIL 3 /* item lookups before concluding "not applied" */
#define ITEM_POLLS_MAX 10  /* lookups waiting for a found input's output */
#define RESUMES_MAX 5      /* stream resumes before falling back to polling */
#define POLLS_MAX 1800     /* ~1 h at the 2 s cap */

/* What a lookup that finds nothing leads to. */
enum { THEN_POST = 1, THEN_FINISH };

typedef struct turn_timer {
  uv_timer_t t;
  struct rsp_turn *turn;
} turn_timer;

typedef struct rsp_turn rsp_turn;
typedef void (*turn_step)(rsp_turn *);

struct rsp_turn {
  rsp_op b;
  rsp_backend *be;
  rsp_turn_mode mode;
  turn_state state;
  const be_turn_events *ev;
  void *opaque;
  int want_deltas, tools_routed, recover;
  long round;
  char *conversation_id;      /* ours */
  char event_id[129];
  char conv[RSP_ID_MAX];      /* the conversation handle */
  char cp_resp[RSP_ID_MAX];   /* the response named by the given checkpoint */
  cJSON *req;                 /* POST /responses body (without conversation) */
  cJSON *input;               /* what this round sends, for lookups */
  api_call *call;
  rsp_conv *convop;
  turn_timer *timer;
  turn_step next;             /* what the timer runs */
  rsp_answer ans;
  rsp_stream st;
  int have_resp;              /* the checkpoint names st.resp.id */
  int posts, looks, looks_max, item_polls, resumes, polls, then;
  int from_items, items_incomplete, calls_closed, replayed;
  int starting;               /* inside rsp_turn_begin: no callbacks */
  int start_rc;               /* what failed there */
  int err, http_status;
  char error_code[64];
  char errmsg[512];
  size_t deltas_emitted;
  int64_t started_ms;
  char checkpoint[BE_CHECKPOINT_MAX];
  /* hosted tools */
  int hosted_tools;           /* the request has code_interpreter / file_search */
  size_t inline_file_max;
  rsp_extras *extras;
  int extras_done;
  const contract_step *steps;
  size_t nsteps;
  const contract_file *files;
  size_t nfiles;
};

static const char *nz(const char *s) { return s && s[0] ? s : NULL; }

static int64_t now_ms(void) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0) return 0;
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static log_ctx turn_ctx(const rsp_turn *t) {
  log_ctx c = {.event_id = nz(t->event_id), .conversation_id = t->conversation_id,
               .thread_id = nz(t->conv), .run_id = nz(t->st.resp.id)};
  return c;
}

static void turn_to(rsp_turn *t, turn_state s) {
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = turn_ctx(t);
    log_debug(&ctx, "turn %s -> %s", state_name(t->state), state_name(s));
  }
  t->state = s;
}

/* ==== checkpoints ============================================================= */

int rsp_checkpoint_format(char *out, size_t n, const char *conv, const char *resp, int64_t seq) {
  int w = snprintf(out, n, "r1 %s %s %" PRId64, conv, resp && resp[0] ? resp : "-", seq < 0 ? 0 : seq);
  return w < 0 || (size_t)w >= n ? AW_ETOOBIG : AW_OK;
}

int rsp_checkpoint_parse(const char *cp, char conv[RSP_ID_MAX], char resp[RSP_ID_MAX]) {
  conv[0] = resp[0] = '\0';
  if (!cp || strncmp(cp, "r1 ", 3) != 0) return AW_EINVAL;
  const char *p = cp + 3, *sp = strchr(p, ' ');
  if (!sp || (size_t)(sp - p) >= RSP_ID_MAX) return AW_EINVAL;
  memcpy(conv, p, (size_t)(sp - p));
  conv[sp - p] = '\0';
  p = sp + 1;
  sp = strchr(p, ' ');
  if (!sp || (size_t)(sp - p) >= RSP_ID_MAX) return AW_EINVAL;
  memcpy(resp, p, (size_t)(sp - p));
  resp[sp - p] = '\0';
  if (!strcmp(resp, "-")) resp[0] = '\0';
  if (!rsp_id_ok(conv) || (resp[0] && !rsp_id_ok(resp))) return AW_EINVAL;
  p = sp + 1;
  if (!*p || strspn(p, "0123456789") != strlen(p)) return AW_EINVAL;
  return AW_OK;
}

/* ==== life cycle ================================================================ */

static void on_timer_closed(uv_handle_t *h) { free(h); }

static void turn_free(rsp_turn *t) {
  if (t->call) api_call_cancel(t->call);
  rsp_conv_cancel(t->convop);
  rsp_extras_free(t->extras);
  if (t->timer) {
    t->timer->turn = NULL;
    uv_timer_stop(&t->timer->t);
    uv_close((uv_handle_t *)&t->timer->t, on_timer_closed);
  }
  rsp_stream_free(&t->st);
  rsp_answer_free(&t->ans);
  cJSON_Delete(t->req);
  cJSON_Delete(t->input);
  free(t->conversation_id);
  free(t);
}

void rsp_turn_cancel_op(rsp_op *op) {
  rsp_turn *t = (rsp_turn *)op;
  if (t->b.cancelled) return;
  t->b.cancelled = 1;
  if (t->b.in_cb) {
    /* The code that called back frees it. */
    if (t->call) api_call_cancel(t->call);
    t->call = NULL;
    rsp_conv_cancel(t->convop);
    t->convop = NULL;
    rsp_extras_free(t->extras);
    t->extras = NULL;
    if (t->timer) uv_timer_stop(&t->timer->t);
    return;
  }
  turn_free(t);
}

/* Call back the user; 1 if the turn was cancelled meanwhile (and is now
 * freed: the caller unwinds without touching it). */
#define USER_CB(t, call) \
  ((t)->b.in_cb++, (call), (t)->b.in_cb--, (t)->b.cancelled ? (turn_free(t), 1) : 0)

static void turn_seterr(rsp_turn *t, int err, int status, const char *code, const char *fmt, ...)
    AW_PRINTF(5, 6);
static void turn_seterr(rsp_turn *t, int err, int status, const char *code, const char *fmt, ...) {
  t->err = err;
  t->http_status = status;
  snprintf(t->error_code, sizeof t->error_code, "%s", nz(code) ? code : be_error_code(err));
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->errmsg, sizeof t->errmsg, fmt, ap);
  va_end(ap);
}

static void on_timer(uv_timer_t *h) {
  turn_timer *tt = (turn_timer *)h;
  if (tt->turn) tt->turn->next(tt->turn);
}

static void turn_finish(rsp_turn *t);

/* Run `next` after ms (0: on the next loop iteration). */
static void turn_wait(rsp_turn *t, turn_state s, long ms, turn_step next) {
  if (!t->timer) {
    t->timer = calloc(1, sizeof *t->timer);
    if (!t->timer || uv_timer_init(t->be->loop, &t->timer->t) != 0) {
      free(t->timer);
      t->timer = NULL;
      turn_seterr(t, AW_ENOMEM, 0, "internal_error", "out of memory for a timer");
      turn_finish(t);
      return;
    }
    t->timer->turn = t;
  }
  turn_to(t, s);
  t->next = next;
  uv_timer_start(&t->timer->t, on_timer, (uint64_t)(ms > 0 ? ms : 0), 0);
}

static void turn_api_err(rsp_turn *t, const api_result *r) {
  turn_seterr(t, r->err, r->http_status, r->error_code, "%s", r->errmsg);
  turn_finish(t);
}

static void turn_start_err(rsp_turn *t, int rc, const char *what) {
  turn_seterr(t, rc, 0, NULL, "%s could not start: %s", what, aw_strerror(rc));
  turn_finish(t);
}

/* ==== finishing ==================================================================== */

static void turn_close_calls(rsp_turn *t, const char *output);
static int turn_extras(rsp_turn *t);

static void turn_finish(rsp_turn *t) {
  if (t->starting) {
    /* Failed before any I/O: rsp_turn_begin returns it, no callback. */
    t->start_rc = t->err ? t->err : AW_EINVAL;
    return;
  }
  turn_to(t, S_DONE);
  be_turn_result res;
  memset(&res, 0, sizeof res);
  const char *status = t->from_items ? (t->items_incomplete ? "incomplete" : "completed")
                                     : nz(t->st.resp.status);
  int err = t->err;
  if (!err && t->st.answer_err) {
    err = t->st.answer_err;
    turn_seterr(t, err, 0, err == AW_ETOOBIG ? "answer_too_large" : NULL,
                "the answer exceeds max_answer_bytes (%zu) or %d function calls",
                t->ans.max_text, RSP_CALLS_MAX);
  }
  if (!err && !rsp_status_terminal(status)) {
    err = AW_EPARSE;
    turn_seterr(t, err, 0, NULL, "response %s ended in status %s", t->st.resp.id, status ? status : "(none)");
  }
  size_t ncalls = rsp_answer_ncalls(&t->ans);
  if (!err && ncalls && !strcmp(status, "completed") && t->mode == RSP_TURN_CANCEL) {
    /* Waiting for tool outputs, and nothing runs at the API: close the
     * calls so the conversation can go on; this call wrote no message. */
    if (!t->calls_closed) {
      turn_close_calls(t, "{\"error\":\"cancelled\"}");
      return;
    }
    rsp_answer_reset(&t->ans);
    ncalls = 0;
    status = "cancelled";
  }
  if (!err && ncalls && !strcmp(status, "completed") && !t->tools_routed) {
    if (!t->calls_closed) {
      turn_close_calls(t, "{\"error\":\"function calling is not available to this assistant\"}");
      return;
    }
    status = "cancelled";
    snprintf(t->error_code, sizeof t->error_code, "tool_calls_unsupported");
    snprintf(t->errmsg, sizeof t->errmsg, "the model called %zu function(s) but no tool service is configured",
             ncalls);
  }
  /* An answer with files to fetch, or steps of earlier rounds to gather,
   * waits for them (once). */
  if (!err && !(ncalls && !strcmp(status, "completed")) && !t->extras_done && turn_extras(t)) return;
  if (!err && rsp_answer_build(&t->ans, &res.messages, &res.nmessages, &res.tool_calls, &res.ntool_calls)) {
    err = AW_ENOMEM;
    turn_seterr(t, err, 0, NULL, "out of memory building the answer");
  }
  if (err) {
    res.end = BE_END_ERROR;
    res.err = err;
    res.messages = NULL;
    res.nmessages = 0;
    res.tool_calls = NULL;
    res.ntool_calls = 0;
  } else {
    /* Deltas promise that their concatenation is the final text: after a
     * poll, or a stream that skipped some, send what is missing at once. */
    if (t->want_deltas && !t->replayed && t->ev->on_text_delta && t->ans.text_len > t->deltas_emitted) {
      buf rest;
      buf_init(&rest, t->ans.text_len);
      if (rsp_answer_text_from(&t->ans, t->deltas_emitted, &rest) == AW_OK && rest.len) {
        t->deltas_emitted += rest.len;
        int gone = USER_CB(t, t->ev->on_text_delta(t->opaque, rest.data, rest.len));
        buf_free(&rest);
        if (gone) return;
      }
      buf_free(&rest);
    }
    if (res.ntool_calls && !strcmp(status, "completed")) {
      res.end = BE_END_TOOL_CALLS;
    } else {
      res.end = BE_END_ANSWER;
      res.status = status;
      res.tool_calls = NULL;
      res.ntool_calls = 0;
      res.steps = t->steps;
      res.nsteps = t->nsteps;
      res.files = t->files;
      res.nfiles = t->nfiles;
      if (!nz(t->error_code)) {
        snprintf(t->error_code, sizeof t->error_code, "%s", t->st.resp.error_code);
        snprintf(t->errmsg, sizeof t->errmsg, "%s", t->st.resp.errmsg);
      }
    }
  }
  res.error_code = nz(t->error_code);
  res.errmsg = t->errmsg;
  res.http_status = t->http_status;
  res.usage = t->st.resp.usage;
  res.model = nz(t->st.resp.model);
  res.started_ms = t->started_ms ? t->started_ms : t->st.resp.created_at * 1000;
  res.replayed = t->replayed;
  res.checkpoint = nz(t->checkpoint);
  res.handles.kind = "responses";
  res.handles.conversation = nz(t->conv);
  res.handles.turn = nz(t->st.resp.id) ? t->st.resp.id : nz(t->cp_resp);
  /* The worker logs every turn's end at info (or warn): debug here. */
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = turn_ctx(t);
    log_debug(&ctx, "turn ended: %s%s%s%s", res.end == BE_END_ERROR ? "error " : res.end == BE_END_TOOL_CALLS ? "tool_calls" : "answer ",
             res.end == BE_END_ERROR ? aw_strerror(res.err) : res.status ? res.status : "",
             res.error_code ? " " : "", res.error_code ? res.error_code : "");
  }
  t->b.in_cb++;
  t->ev->on_done(t->opaque, &res);
  turn_free(t);
}

/* ---- steps and generated files ------------------------------------------------- */

static void on_extras(void *opaque, const contract_step *steps, size_t nsteps, const contract_file *files,
                      size_t nfiles) {
  rsp_turn *t = opaque;
  t->steps = steps;
  t->nsteps = nsteps;
  t->files = files;
  t->nfiles = nfiles;
  turn_finish(t); /* frees t, and with it the extras, after on_done */
}

/* Start what the answer waits for: 1 when started (turn_finish follows
 * from on_extras), 0 when there is nothing to wait for (the steps are set). */
static int turn_extras(rsp_turn *t) {
  t->extras_done = 1;
  rsp_hosted *h = &t->ans.hosted;
  int gather = t->mode == RSP_TURN_CONTINUE && t->hosted_tools && t->conv[0];
  if (!gather && !rsp_hosted_nfiles(h)) {
    const gf_ref *refs;
    size_t nrefs;
    if (rsp_hosted_build(h, &t->steps, &t->nsteps, &refs, &nrefs) != AW_OK) t->steps = NULL, t->nsteps = 0;
    return 0;
  }
  turn_to(t, S_EXTRAS);
  int rc = rsp_extras_start(t->be->api, gather ? t->conv : NULL, t->event_id, h, t->inline_file_max, on_extras, t,
                            &t->extras);
  if (rc) {
    log_ctx ctx = turn_ctx(t);
    log_warn(&ctx, "steps and generated files left out: %s", aw_strerror(rc));
    t->extras = NULL;
    return 0;
  }
  return 1;
}

/* ---- closing open function calls ------------------------------------------------ */

static void on_calls_closed(void *opaque, const api_result *r) {
  rsp_turn *t = opaque;
  t->call = NULL;
  if (r->err) {
    log_ctx ctx = turn_ctx(t);
    log_warn(&ctx, "could not close the open function calls: %s", r->errmsg);
  }
  turn_finish(t);
}

static void turn_close_calls(rsp_turn *t, const char *output) {
  t->calls_closed = 1;
  const contract_out_message *m;
  const be_tool_call *calls;
  size_t nm, nc;
  char *body = NULL;
  char path[160];
  int rc = rsp_answer_build(&t->ans, &m, &nm, &calls, &nc);
  if (!rc) rc = rsp_json_close_calls_body(calls, nc, output, &body);
  snprintf(path, sizeof path, "/conversations/%s/items", t->conv);
  turn_to(t, S_CLOSE_CALLS);
  /* Creates items: never repeated after an ambiguous outcome (a second set
   * of outputs for the same calls would be refused or confuse the model). */
  if (!rc) rc = api_request(t->be->api, "POST", path, body, 0, on_calls_closed, t, &t->call);
  cJSON_free(body);
  if (rc) {
    t->call = NULL;
    log_ctx ctx = turn_ctx(t);
    log_warn(&ctx, "could not close the open function calls: %s", aw_strerror(rc));
    turn_finish(t);
  }
}

/* ==== the stream ======================================================================= */

/* The response is known: record where the turn is before anything else. */
static int turn_checkpoint(rsp_turn *t) {
  t->have_resp = 1;
  if (!t->started_ms) t->started_ms = now_ms();
  if (rsp_checkpoint_format(t->checkpoint, sizeof t->checkpoint, t->conv, t->st.resp.id,
                            t->st.created_seq) != AW_OK) {
    t->checkpoint[0] = '\0';
    return 0;
  }
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = turn_ctx(t);
    log_debug(&ctx, "response created");
  }
  be_handles h = {.kind = "responses", .conversation = nz(t->conv), .turn = nz(t->st.resp.id)};
  if (t->ev->on_checkpoint && USER_CB(t, t->ev->on_checkpoint(t->opaque, t->checkpoint, &h))) return 1;
  return 0;
}

static int on_event(void *opaque, const char *name, size_t nlen, const char *data, size_t len) {
  rsp_turn *t = opaque;
  (void)name; /* real servers send no `event:` line: the JSON's type is the name */
  (void)nlen;
  rsp_ev e;
  if (rsp_stream_event(&t->st, data, len, &e) != AW_OK) return 0; /* malformed: skipped */
  if (t->st.created && !t->have_resp && turn_checkpoint(t)) return 1;
  if (e == RSP_EV_DELTA && t->want_deltas && !t->replayed && t->ev->on_text_delta) {
    t->deltas_emitted += t->st.delta_len;
    if (USER_CB(t, t->ev->on_text_delta(t->opaque, t->st.delta, t->st.delta_len))) return 1;
  }
  return 0;
}

static void turn_post(rsp_turn *t);
static void turn_resume(rsp_turn *t);
static void turn_poll(rsp_turn *t);
static void turn_lookup(rsp_turn *t);

static void turn_lookup_start(rsp_turn *t, int looks_max, int then) {
  t->looks = 0;
  t->item_polls = 0;
  t->looks_max = looks_max;
  t->then = then;
  turn_lookup(t);
}

static long backoff(rsp_turn *t, int n) {
  long base = t->be->wait_base_ms, d = base;
  for (int i = 0; i < n && d < 8 * base; i++) d *= 2;
  return d < 8 * base ? d : 8 * base;
}

static void on_post_done(void *opaque, const api_result *r) {
  rsp_turn *t = opaque;
  t->call = NULL;
  log_ctx ctx = turn_ctx(t);
  if (t->st.terminal) {
    turn_finish(t);
    return;
  }
  if (t->st.created && !t->be->background) {
    /* Not a background response: its stream cannot be resumed, but it is
     * stored; follow it by polling until it ends. */
    log_info(&ctx, "stream ended before the response did (%s); polling the response",
             r->err ? r->errmsg : "clean end");
    t->polls = 0;
    turn_poll(t);
    return;
  }
  if (t->st.created) {
    log_info(&ctx, "stream ended before the response did (%s); resuming after event %" PRId64,
             r->err ? r->errmsg : "clean end", t->st.seq);
    turn_resume(t);
    return;
  }
  if (r->err == AW_OK || r->err == AW_EAMBIGUOUS || r->maybe_applied) {
    /* The POST may have been applied but we know no id: never post
     * blindly, look for our input in the conversation first. */
    if (t->posts >= POSTS_MAX) {
      turn_seterr(t, AW_EAMBIGUOUS, r->http_status, r->error_code,
                  "POST /responses failed ambiguously %d times: %s", t->posts,
                  r->err ? r->errmsg : "stream ended before response.created");
      turn_finish(t);
      return;
    }
    log_info(&ctx, "POST /responses failed before response.created (%s); looking for our input",
             r->err ? r->errmsg : "stream ended without events");
    turn_lookup_start(t, LOOKS_AFTER_FAIL, THEN_POST);
    return;
  }
  if (r->err == AW_EHTTP4XX && rsp_input_file_missing(t->req, r->http_status, r->error_code, r->errmsg)) {
    /* The event names a file the API does not have: the input's fault. */
    turn_seterr(t, AW_ENOTFOUND, r->http_status, "file_not_found", "%s", r->errmsg);
    turn_finish(t);
    return;
  }
  turn_api_err(t, r);
}

static void turn_post(rsp_turn *t) {
  char *body = NULL;
  cJSON_DeleteItemFromObjectCaseSensitive(t->req, "conversation");
  int rc = cJSON_AddStringToObject(t->req, "conversation", t->conv) ? AW_OK : AW_ENOMEM;
  if (!rc) rc = (body = cJSON_PrintUnformatted(t->req)) ? AW_OK : AW_ENOMEM;
  rsp_stream_free(&t->st);
  rsp_answer_reset(&t->ans);
  rsp_stream_init(&t->st, &t->ans, t->want_deltas, NULL);
  t->have_resp = 0;
  t->posts++;
  turn_to(t, S_POST);
  if (!rc) rc = api_stream(t->be->api, "/responses", body, on_event, on_post_done, t, &t->call);
  cJSON_free(body);
  if (rc) {
    t->call = NULL;
    turn_start_err(t, rc, "POST /responses");
  }
}

/* ---- resuming the stream of a known response ---------------------------------------- */

static void on_resume_done(void *opaque, const api_result *r) {
  rsp_turn *t = opaque;
  t->call = NULL;
  if (t->st.terminal) {
    turn_finish(t);
    return;
  }
  /* Refused (a server that cannot resume, a response not in background
   * mode) or not readable as a stream: the object itself will tell.  A 2xx
   * that delivered no event at all is a server that ignores stream=true and
   * answers with the response object (OGX): resuming is not supported. */
  if (r->err == AW_EHTTP4XX || r->err == AW_ETOOBIG || r->http_status == 501 ||
      (r->err == AW_OK && r->events == 0) || ++t->resumes >= RESUMES_MAX) {
    log_ctx ctx = turn_ctx(t);
    log_info(&ctx, "resuming the stream failed (%s); polling the response",
             r->err ? r->errmsg : "ended before the response did");
    t->polls = 0;
    turn_poll(t);
    return;
  }
  turn_wait(t, S_RESUME_WAIT, backoff(t, t->resumes - 1), turn_resume);
}

static void turn_resume(rsp_turn *t) {
  char path[192];
  snprintf(path, sizeof path, "/responses/%s?stream=true&starting_after=%" PRId64, t->st.resp.id,
           t->st.seq < 0 ? (int64_t)0 : t->st.seq);
  turn_to(t, S_RESUME);
  int rc = api_stream_get(t->be->api, path, on_event, on_resume_done, t, &t->call);
  if (rc) {
    t->call = NULL;
    turn_start_err(t, rc, "GET /responses/{id} (stream)");
  }
}

/* ---- polling a known response --------------------------------------------------------- */

/* A response object read whole (poll, retrieve, cancel): take it as the
 * truth.  0 when it could not be read (finished with an error). */
static int take_response(rsp_turn *t, const api_result *r) {
  rsp_resp resp;
  if (rsp_json_response(r->json, &resp) != AW_OK || (t->st.resp.id[0] && strcmp(resp.id, t->st.resp.id))) {
    turn_seterr(t, AW_EPARSE, r->http_status, NULL, "GET /responses/%s: not the response object",
                t->st.resp.id[0] ? t->st.resp.id : t->cp_resp);
    turn_finish(t);
    return 0;
  }
  t->st.resp = resp;
  t->st.created = 1;
  if (rsp_status_terminal(resp.status)) {
    int rc = rsp_answer_set_output(&t->ans, r->json);
    if (rc) t->st.answer_err = rc;
  }
  return 1;
}

static void on_polled(void *opaque, const api_result *r) {
  rsp_turn *t = opaque;
  t->call = NULL;
  if (r->err) {
    turn_api_err(t, r);
    return;
  }
  if (!take_response(t, r)) return;
  if (rsp_status_terminal(t->st.resp.status)) {
    turn_finish(t);
    return;
  }
  if (++t->polls >= POLLS_MAX) {
    turn_seterr(t, AW_ETIMEDOUT, 0, NULL, "response %s still %s after %d polls", t->st.resp.id,
                t->st.resp.status, t->polls);
    turn_finish(t);
    return;
  }
  turn_wait(t, S_POLL_WAIT, backoff(t, t->polls - 1), turn_poll);
}

static void turn_poll(rsp_turn *t) {
  char path[160];
  snprintf(path, sizeof path, "/responses/%s", t->st.resp.id);
  turn_to(t, S_POLL);
  int rc = api_request(t->be->api, "GET", path, NULL, 1, on_polled, t, &t->call);
  if (rc) {
    t->call = NULL;
    turn_start_err(t, rc, "GET /responses/{id}");
  }
}

/* ---- looking for what a round sent, in the conversation ------------------------------- */

static void on_items(void *opaque, const api_result *r) {
  rsp_turn *t = opaque;
  t->call = NULL;
  if (r->err) {
    turn_api_err(t, r);
    return;
  }
  int found, ready, incomplete;
  int rc = rsp_items_scan(r->json, t->input, &t->ans, &found, &ready, &incomplete);
  if (rc) {
    turn_seterr(t, rc, r->http_status, NULL, "GET /conversations/%s/items: %s", t->conv,
                rc == AW_EPARSE ? "not a list" : "the answer exceeds its bounds");
    turn_finish(t);
    return;
  }
  log_ctx ctx = turn_ctx(t);
  if (found && ready) {
    /* The round was applied; its output is in the conversation, its
     * response id is not. */
    log_info(&ctx, "found this round's input in the conversation with its output: not sent again");
    t->from_items = 1;
    t->items_incomplete = incomplete;
    t->replayed = 1;
    t->st.answer_err = 0;
    if (!t->have_resp && rsp_checkpoint_format(t->checkpoint, sizeof t->checkpoint, t->conv, NULL, 0))
      t->checkpoint[0] = '\0';
    turn_finish(t);
    return;
  }
  if (found) {
    if (++t->item_polls >= ITEM_POLLS_MAX) {
      turn_seterr(t, AW_EAMBIGUOUS, 0, NULL,
                  "this round's input is in conversation %s but its output is not complete yet", t->conv);
      turn_finish(t);
      return;
    }
    turn_wait(t, S_LOOKUP_WAIT, backoff(t, t->item_polls - 1), turn_lookup);
    return;
  }
  if (++t->looks < t->looks_max) {
    /* The input may not be visible yet: wait a little. */
    turn_wait(t, S_LOOKUP_WAIT, backoff(t, t->looks), turn_lookup);
    return;
  }
  if (t->then == THEN_POST) {
    if (t->posts) log_info(&ctx, "this round's input is not in the conversation: posting it again");
    turn_post(t);
  } else {
    turn_finish(t); /* what the retrieved response says */
  }
}

static void turn_lookup(rsp_turn *t) {
  char path[320];
  /* With steps asked for, the items carry the search results and code
   * outputs too (a round recovered from the items reports them). */
  snprintf(path, sizeof path, "/conversations/%s/items?order=desc&limit=%d%s", t->conv, RSP_ITEMS_PAGE,
           t->ans.hosted.want_steps
               ? "&include[]=file_search_call.results&include[]=code_interpreter_call.outputs"
               : "");
  turn_to(t, S_LOOKUP);
  int rc = api_request(t->be->api, "GET", path, NULL, 1, on_items, t, &t->call);
  if (rc) {
    t->call = NULL;
    turn_start_err(t, rc, "GET /conversations/{id}/items");
  }
}

/* ---- the conversation handle ------------------------------------------------------------ */

static void on_conv(void *opaque, int err, int status, const char *code, const char *msg,
                    const char *handle) {
  rsp_turn *t = opaque;
  t->convop = NULL;
  if (err) {
    turn_seterr(t, err, status, code, "%s", msg);
    turn_finish(t);
    return;
  }
  snprintf(t->conv, sizeof t->conv, "%s", handle);
  turn_post(t);
}

static void turn_conv(rsp_turn *t) {
  turn_to(t, S_CONV);
  int rc = rsp_conv_ensure(t->be->api, t->be->store, t->conversation_id, t->event_id, on_conv, t,
                           &t->convop);
  if (rc) turn_start_err(t, rc, "POST /conversations");
}

/* ---- retrieving the response of a checkpoint (recover, cancel) ------------------------- */

static void on_cancel_posted(void *opaque, const api_result *r) {
  rsp_turn *t = opaque;
  t->call = NULL;
  /* The cancel's answer is the response; anything else: poll it. */
  if (r->err == AW_OK) {
    if (!take_response(t, r)) return; /* finished */
    if (rsp_status_terminal(t->st.resp.status)) {
      turn_finish(t);
      return;
    }
  }
  t->polls = 0;
  turn_poll(t);
}

/* A lookup of the outputs of a completed response's calls: present -> the
 * continuation was applied (its answer is in the items); absent -> the
 * turn still waits for them. */
static void turn_lookup_outputs(rsp_turn *t) {
  const contract_out_message *m;
  const be_tool_call *calls;
  size_t nm, nc;
  be_tool_output outs[RSP_CALLS_MAX];
  int rc = rsp_answer_build(&t->ans, &m, &nm, &calls, &nc);
  for (size_t i = 0; !rc && i < nc; i++) {
    outs[i].tool_call_id = calls[i].id;
    outs[i].output = "";
  }
  cJSON_Delete(t->input);
  t->input = NULL;
  if (!rc) rc = rsp_json_outputs_input(outs, nc, "", &t->input);
  if (rc) {
    turn_start_err(t, rc, "outputs lookup");
    return;
  }
  turn_lookup_start(t, 1, THEN_FINISH);
}

static void on_retrieved(void *opaque, const api_result *r) {
  rsp_turn *t = opaque;
  t->call = NULL;
  if (r->http_status == 404 && t->mode == RSP_TURN_START) {
    /* The checkpoint's response is gone (deleted, another project): the
     * conversation tells whether our input was taken. */
    log_ctx ctx = turn_ctx(t);
    log_warn(&ctx, "the checkpoint's response %s is not found; looking in the conversation", t->cp_resp);
    t->cp_resp[0] = '\0';
    t->st.resp.id[0] = '\0';
    t->st.created = 0;
    turn_lookup_start(t, 1, THEN_POST);
    return;
  }
  if (r->err) {
    turn_api_err(t, r);
    return;
  }
  if (!take_response(t, r)) return;
  int terminal = rsp_status_terminal(t->st.resp.status);
  int waiting = terminal && !strcmp(t->st.resp.status, "completed") && rsp_answer_ncalls(&t->ans) > 0;
  if (t->mode == RSP_TURN_CANCEL) {
    if (terminal) { /* waiting for tool outputs: turn_finish closes the calls */
      turn_finish(t);
      return;
    }
    char path[192];
    snprintf(path, sizeof path, "/responses/%s/cancel", t->st.resp.id);
    turn_to(t, S_CANCEL);
    /* Cancelling twice is harmless: idempotent. */
    int rc = api_request(t->be->api, "POST", path, NULL, 1, on_cancel_posted, t, &t->call);
    if (rc) {
      t->call = NULL;
      turn_start_err(t, rc, "POST /responses/{id}/cancel");
    }
    return;
  }
  /* Recovering: the answer is delivered whole, not as deltas. */
  t->replayed = 1;
  t->have_resp = 1;
  if (waiting) {
    turn_lookup_outputs(t);
    return;
  }
  if (terminal) {
    turn_finish(t);
    return;
  }
  if (!t->be->background) {
    /* Not a background response: nothing to resume; poll until it ends. */
    t->polls = 0;
    turn_poll(t);
    return;
  }
  rsp_stream_free(&t->st);
  rsp_answer_reset(&t->ans);
  rsp_resp keep = t->st.resp;
  rsp_stream_init(&t->st, &t->ans, 0, keep.id);
  t->st.resp = keep;
  turn_resume(t);
}

static void turn_retrieve(rsp_turn *t) {
  char path[160];
  snprintf(path, sizeof path, "/responses/%s", t->cp_resp);
  turn_to(t, S_RETRIEVE);
  int rc = api_request(t->be->api, "GET", path, NULL, 1, on_retrieved, t, &t->call);
  if (rc) {
    t->call = NULL;
    turn_start_err(t, rc, "GET /responses/{id}");
  }
}

/* ==== entry ================================================================================ */

static void turn_end_cancelled_now(rsp_turn *t) {
  /* A checkpoint without a response id: the round was recovered from the
   * conversation's items, so there is no response to cancel. */
  snprintf(t->st.resp.status, sizeof t->st.resp.status, "cancelled");
  turn_finish(t);
}

static int turn_setup(rsp_turn *t, const be_turn_input *in, long round, const be_tool_output *outs,
                      size_t n) {
  snprintf(t->event_id, sizeof t->event_id, "%s", in->event_id ? in->event_id : "");
  if (!(t->conversation_id = strdup(in->conversation_id))) return AW_ENOMEM;
  if (in->handle && in->handle[0]) {
    if (!rsp_id_ok(in->handle)) return AW_EINVAL;
    snprintf(t->conv, sizeof t->conv, "%s", in->handle);
  }
  char conv[RSP_ID_MAX], resp[RSP_ID_MAX];
  if (in->checkpoint && rsp_checkpoint_parse(in->checkpoint, conv, resp) == AW_OK) {
    snprintf(t->conv, sizeof t->conv, "%s", conv);
    snprintf(t->cp_resp, sizeof t->cp_resp, "%s", resp);
    snprintf(t->checkpoint, sizeof t->checkpoint, "%s", in->checkpoint);
    if (resp[0]) snprintf(t->st.resp.id, sizeof t->st.resp.id, "%s", resp);
  } else if (in->checkpoint && t->mode != RSP_TURN_START) {
    return AW_EINVAL;
  } else if (in->checkpoint && in->recover) {
    /* Another backend's checkpoint (the deployment switched backends):
     * nothing of it can be resumed here. */
    log_ctx ctx = {.event_id = t->event_id, .conversation_id = t->conversation_id};
    log_warn(&ctx, "ignoring a checkpoint that is not this backend's");
  }
  if (t->mode == RSP_TURN_CANCEL) return AW_OK;
  int rc = t->mode == RSP_TURN_START ? rsp_input_user(in, &t->input)
                                     : rsp_json_outputs_input(outs, n, NULL, &t->input);
  int dropped = 0;
  size_t unplaced = 0;
  if (!rc) rc = rsp_json_turn_body(in, t->input, t->mode == RSP_TURN_START ? 0 : round, t->be->background,
                                   &t->req, &dropped, &unplaced);
  log_ctx ctx = {.event_id = t->event_id, .conversation_id = t->conversation_id};
  if (dropped)
    log_warn(&ctx, "%d user metadata pair(s) dropped: the API keeps at most %d", dropped, RSP_METADATA_MAX);
  if (unplaced)
    log_warn(&ctx, "%zu code_interpreter attachment(s) not sent: the assistant's code interpreter names its "
                   "container by id, and files reach such a container through the Containers API only", unplaced);
  const cJSON *tool;
  cJSON_ArrayForEach(tool, cJSON_GetObjectItemCaseSensitive(t->req, "tools")) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(tool, "type");
    if (cJSON_IsString(ty) && (!strcmp(ty->valuestring, "code_interpreter") || !strcmp(ty->valuestring, "file_search")))
      t->hosted_tools = 1;
  }
  return rc;
}

int rsp_turn_begin(rsp_backend *be, rsp_turn_mode mode, const be_turn_input *in, long round,
                   const be_tool_output *outs, size_t n, const be_turn_events *ev, void *opaque,
                   be_op **out) {
  *out = NULL;
  if (!in->conversation_id || !in->event_id || !in->assistant || !in->assistant->model ||
      (in->nmetadata && !in->metadata))
    return AW_EINVAL;
  if (mode == RSP_TURN_START && (!in->parts || !in->nparts)) return AW_EINVAL;
  for (size_t i = 0; i < in->nmetadata; i++)
    if (!in->metadata[i].key || !in->metadata[i].value) return AW_EINVAL;
  if (mode == RSP_TURN_CONTINUE) {
    if (n > RSP_CALLS_MAX) return AW_ETOOBIG;
    for (size_t i = 0; i < n; i++)
      if (!outs[i].tool_call_id || !outs[i].tool_call_id[0] || strlen(outs[i].tool_call_id) >= RSP_ID_MAX ||
          !outs[i].output)
        return AW_EINVAL;
  }
  rsp_turn *t = calloc(1, sizeof *t);
  if (!t) return AW_ENOMEM;
  t->b.head.be = &be->base;
  t->b.kind = RSP_OP_TURN;
  t->be = be;
  t->mode = mode;
  t->ev = ev;
  t->opaque = opaque;
  /* A cancel delivers what the turn reached, not as deltas. */
  t->want_deltas = mode == RSP_TURN_CANCEL ? 0 : in->want_deltas;
  t->tools_routed = in->tools_routed;
  t->recover = in->recover;
  t->round = round;
  rsp_answer_init(&t->ans, be->max_answer_bytes);
  t->ans.hosted.want_steps = in->include_steps ? 1 : 0;
  t->inline_file_max = in->inline_file_max;
  rsp_stream_init(&t->st, &t->ans, t->want_deltas, NULL);
  int rc = turn_setup(t, in, round, outs, n);
  if (!rc && mode != RSP_TURN_START && !t->conv[0]) rc = AW_EINVAL;
  if (rc) {
    turn_free(t);
    return rc;
  }
  t->starting = 1;
  switch (mode) {
  case RSP_TURN_START:
    if (t->recover && t->cp_resp[0]) turn_retrieve(t);
    else if (!t->conv[0]) turn_conv(t);
    /* Nothing can have been posted without a claimed handle; with one, an
     * earlier attempt may have posted: look once before posting. */
    else if (t->recover) turn_lookup_start(t, 1, THEN_POST);
    else turn_post(t);
    break;
  case RSP_TURN_CONTINUE:
    if (t->recover) turn_lookup_start(t, 1, THEN_POST);
    else turn_post(t);
    break;
  case RSP_TURN_CANCEL:
    if (t->cp_resp[0]) turn_retrieve(t);
    else turn_wait(t, S_DONE, 0, turn_end_cancelled_now);
    break;
  }
  t->starting = 0;
  if (t->start_rc) {
    rc = t->start_rc;
    turn_free(t);
    return rc;
  }
  *out = (be_op *)t;
  return AW_OK;
}

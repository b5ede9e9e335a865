/* backend_assistants.c -- backend.h on the OpenAI Assistants API v2.
 *
 * Four kinds of operation share one header (op_base):
 *   simple  -- conversation create/delete: one API call;
 *   ensure  -- assistant_ensure: retrieve -> (list pages) -> update/create;
 *   turn    -- add the user message, start a streamed run, follow it; the
 *              same machine, entered at a later phase, follows a run after
 *              a tool-output submission (SUBMIT) and a resumed run (POLL);
 *   find    -- find_message: list messages (pages) -> list runs.
 *
 * A turn is a small state machine (turn_phase(), which logs each change):
 *
 *   MESSAGE --> STREAM --(terminal + done)--------------------------> finish
 *                 |  \--(stream lost after run.created)--> POLL --> MESSAGES --> finish
 *                 \--(400 "already has an active run" on a retry)--> ADOPT --> POLL
 *   SUBMIT (submit_tool_outputs) behaves as STREAM; its poll fallback first
 *          lists run STEPS to tell this round's messages from earlier ones.
 *   resume --> POLL
 *   requires_action, with on_requires_action --> (POLL: MESSAGES) --> ACTION --> finish
 *                    without                 --> CANCEL_RUN --> finish
 *
 * Memory per turn is what turn_op holds (~2 KiB of fixed fields) plus the
 * collected answer (api_json_answer: text in one bounded arena) plus the
 * http/curl state of the one call in flight.  No cJSON tree outlives the
 * event or response it came from.
 *
 * Cancellation: be_op_cancel sets `cancelled`, cancels the call in flight and
 * stops the poll timer.  If it is called from one of our user callbacks
 * (in_cb > 0) the op is freed by the code that called back, once the
 * callback returned; that code checks `cancelled` after every user callback
 * and unwinds without touching the op again.
 */
#include "backend.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_client.h"
#include "api_json.h"
#include "log.h"

enum { OP_SIMPLE = 1, OP_ENSURE, OP_TURN, OP_FIND };

typedef struct be_asst {
  be_backend base;
  uv_loop_t *loop;
  api_client *api;
  size_t max_answer_bytes;
} be_asst;

/* Every op starts with this (be_op_head first, as backend.h requires). */
typedef struct op_base {
  be_op_head head;
  int kind;
  int cancelled;
  int in_cb;
  api_call *call; /* the API call in flight, NULL if none */
} op_base;

static int64_t now_ms(void) {
  uv_timeval64_t tv;
  if (uv_gettimeofday(&tv) != 0) return 0;
  return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void copy_id(char *dst, size_t n, const char *s) { snprintf(dst, n, "%s", s ? s : ""); }

static const char *nz(const char *s) { return s && s[0] ? s : NULL; }

/* ==== simple operations ==================================================== */

typedef struct simple_op {
  op_base b;
  be_result_cb cb;
  void *opaque;
  int is_delete;
  int no_id;     /* the answer is not an object with an id to report */
} simple_op;

static void simple_done(void *opaque, const api_result *r) {
  simple_op *op = opaque;
  op->b.call = NULL;
  be_result res;
  memset(&res, 0, sizeof res);
  res.err = r->err;
  res.http_status = r->http_status;
  res.error_code = nz(r->error_code);
  res.errmsg = r->errmsg;
  if (r->err == AW_OK && !op->is_delete && !op->no_id) {
    res.id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->json, "id"));
    if (!res.id) {
      res.err = AW_EPARSE;
      res.errmsg = "POST /threads: response has no id";
    }
  }
  /* Deleting what is already gone is what the caller wanted. */
  if (op->is_delete && r->http_status == 404) {
    res.err = AW_OK;
    res.errmsg = "";
  }
  op->b.in_cb++;
  op->cb(op->opaque, &res);
  free(op);
}

static simple_op *simple_new(be_asst *be, be_result_cb cb, void *opaque) {
  simple_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->b.head.be = &be->base;
  op->b.kind = OP_SIMPLE;
  op->cb = cb;
  op->opaque = opaque;
  return op;
}

static int add_metadata(cJSON *obj, const contract_kv *md, size_t n) {
  cJSON *m = cJSON_AddObjectToObject(obj, "metadata");
  if (!m) return AW_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    if (!md[i].key || !md[i].value) return AW_EINVAL;
    if (!cJSON_AddStringToObject(m, md[i].key, md[i].value)) return AW_ENOMEM;
  }
  return AW_OK;
}

/* Print and free j; *out receives the text (free with cJSON_free). */
static int print_json(cJSON *j, char **out) {
  *out = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return *out ? AW_OK : AW_ENOMEM;
}

static int conversation_create(be_backend *bb, const contract_kv *md, size_t nmd, be_result_cb cb,
                               void *opaque, be_op **out) {
  be_asst *be = (be_asst *)bb;
  if (out) *out = NULL;
  if (!cb || (nmd && !md)) return AW_EINVAL;
  cJSON *j = cJSON_CreateObject();
  if (!j) return AW_ENOMEM;
  int rc = add_metadata(j, md, nmd);
  if (rc) {
    cJSON_Delete(j);
    return rc;
  }
  char *body;
  if ((rc = print_json(j, &body))) return rc;
  simple_op *op = simple_new(be, cb, opaque);
  if (!op) {
    cJSON_free(body);
    return AW_ENOMEM;
  }
  rc = api_threads_create(be->api, body, simple_done, op, &op->b.call);
  cJSON_free(body);
  if (rc) {
    free(op);
    return rc;
  }
  if (out) *out = (be_op *)op;
  return AW_OK;
}

static int conversation_delete(be_backend *bb, const char *handle, be_result_cb cb, void *opaque,
                               be_op **out) {
  be_asst *be = (be_asst *)bb;
  if (out) *out = NULL;
  if (!cb || !handle) return AW_EINVAL;
  simple_op *op = simple_new(be, cb, opaque);
  if (!op) return AW_ENOMEM;
  op->is_delete = 1;
  int rc = api_threads_delete(be->api, handle, simple_done, op, &op->b.call);
  if (rc) {
    free(op);
    return rc;
  }
  if (out) *out = (be_op *)op;
  return AW_OK;
}

static int run_cancel(be_backend *bb, const char *conversation, const char *run_id, be_result_cb cb,
                      void *opaque, be_op **out) {
  be_asst *be = (be_asst *)bb;
  if (out) *out = NULL;
  if (!cb || !conversation || !run_id) return AW_EINVAL;
  simple_op *op = simple_new(be, cb, opaque);
  if (!op) return AW_ENOMEM;
  op->no_id = 1;
  int rc = api_runs_cancel(be->api, conversation, run_id, simple_done, op, &op->b.call);
  if (rc) {
    free(op);
    return rc;
  }
  if (out) *out = (be_op *)op;
  return AW_OK;
}

/* ==== assistant_ensure ====================================================== */

enum { EN_RETRIEVE = 1, EN_LIST, EN_UPDATE, EN_CREATE };

typedef struct ensure_op {
  op_base b;
  be_asst *be;
  be_result_cb cb;
  void *opaque;
  int phase;
  char *name, *hash; /* copies */
  char *body;        /* create/update body (cJSON_free) */
  char id[API_JSON_ID_MAX];
  char after[API_JSON_ID_MAX];
} ensure_op;

static void ensure_free(ensure_op *op) {
  free(op->name);
  free(op->hash);
  cJSON_free(op->body);
  free(op);
}

static void ensure_finish(ensure_op *op, int err, int status, const char *code, const char *msg,
                          const char *id) {
  be_result res = {.err = err, .http_status = status, .error_code = nz(code),
                   .errmsg = msg ? msg : "", .id = err ? NULL : id};
  op->b.in_cb++;
  op->cb(op->opaque, &res);
  ensure_free(op);
}

static void ensure_on_done(void *opaque, const api_result *r);

static int ensure_step(ensure_op *op, int phase) {
  api_client *api = op->be->api;
  op->phase = phase;
  switch (phase) {
  case EN_RETRIEVE: return api_assistants_retrieve(api, op->id, ensure_on_done, op, &op->b.call);
  case EN_LIST:
    return api_assistants_list(api, 100, "desc", op->after[0] ? op->after : NULL, ensure_on_done, op,
                               &op->b.call);
  case EN_UPDATE: return api_assistants_update(api, op->id, op->body, ensure_on_done, op, &op->b.call);
  default: return api_assistants_create(api, op->body, ensure_on_done, op, &op->b.call);
  }
}

static const char *md_get(const cJSON *asst, const char *key) {
  return cJSON_GetStringValue(
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(asst, "metadata"), key));
}

/* Found an assistant: use it when its hash matches, else update it. */
static void ensure_found(ensure_op *op, const cJSON *asst, const api_result *r) {
  const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(asst, "id"));
  if (!id || strlen(id) >= sizeof op->id) {
    ensure_finish(op, AW_EPARSE, r->http_status, NULL, "assistant object has no valid id", NULL);
    return;
  }
  copy_id(op->id, sizeof op->id, id);
  const char *h = md_get(asst, "aw_hash");
  if (h && strcmp(h, op->hash) == 0) {
    ensure_finish(op, AW_OK, r->http_status, NULL, "", op->id);
    return;
  }
  int rc = ensure_step(op, EN_UPDATE);
  if (rc) ensure_finish(op, rc, 0, NULL, "assistant update could not start", NULL);
}

static void ensure_on_done(void *opaque, const api_result *r) {
  ensure_op *op = opaque;
  op->b.call = NULL;
  int rc;
  if (op->phase == EN_RETRIEVE && r->http_status == 404) {
    op->id[0] = '\0';
    if ((rc = ensure_step(op, EN_LIST))) ensure_finish(op, rc, 0, NULL, "assistant list could not start", NULL);
    return;
  }
  if (r->err) {
    ensure_finish(op, r->err, r->http_status, r->error_code, r->errmsg, NULL);
    return;
  }
  switch (op->phase) {
  case EN_RETRIEVE: ensure_found(op, r->json, r); return;
  case EN_LIST: {
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->json, "data"), *a, *last = NULL;
    cJSON_ArrayForEach(a, data) {
      const char *n = md_get(a, "aw_name");
      if (n && strcmp(n, op->name) == 0) {
        ensure_found(op, a, r);
        return;
      }
      last = a;
    }
    const char *last_id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(last, "id"));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "has_more")) && last_id &&
        strlen(last_id) < sizeof op->after && strcmp(last_id, op->after) != 0) {
      copy_id(op->after, sizeof op->after, last_id);
      rc = ensure_step(op, EN_LIST);
    } else {
      rc = ensure_step(op, EN_CREATE);
    }
    if (rc) ensure_finish(op, rc, 0, NULL, "assistant request could not start", NULL);
    return;
  }
  default: {
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->json, "id"));
    if (!id) ensure_finish(op, AW_EPARSE, r->http_status, NULL, "assistant response has no id", NULL);
    else ensure_finish(op, AW_OK, r->http_status, NULL, "", id);
  }
  }
}

static int assistant_ensure(be_backend *bb, const be_assistant_def *def, const char *known_id,
                            be_result_cb cb, void *opaque, be_op **out) {
  be_asst *be = (be_asst *)bb;
  if (out) *out = NULL;
  if (!def || !def->name || !def->model || !def->hash || !cb) return AW_EINVAL;
  if (known_id && strlen(known_id) >= API_JSON_ID_MAX) return AW_EINVAL;
  cJSON *j = cJSON_CreateObject();
  if (!j) return AW_ENOMEM;
  int ok = cJSON_AddStringToObject(j, "name", def->name) && cJSON_AddStringToObject(j, "model", def->model);
  if (ok && def->instructions) ok = cJSON_AddStringToObject(j, "instructions", def->instructions) != NULL;
  if (ok && def->tools_json) {
    cJSON *tools = cJSON_Parse(def->tools_json);
    if (!cJSON_IsArray(tools)) {
      cJSON_Delete(tools);
      cJSON_Delete(j);
      return AW_EINVAL;
    }
    cJSON_AddItemToObject(j, "tools", tools);
  }
  cJSON *md = ok ? cJSON_AddObjectToObject(j, "metadata") : NULL;
  ok = md && cJSON_AddStringToObject(md, "aw_name", def->name) &&
       cJSON_AddStringToObject(md, "aw_hash", def->hash);
  if (!ok) {
    cJSON_Delete(j);
    return AW_ENOMEM;
  }
  ensure_op *op = calloc(1, sizeof *op);
  if (!op) {
    cJSON_Delete(j);
    return AW_ENOMEM;
  }
  op->b.head.be = bb;
  op->b.kind = OP_ENSURE;
  op->be = be;
  op->cb = cb;
  op->opaque = opaque;
  op->name = strdup(def->name);
  op->hash = strdup(def->hash);
  int rc = print_json(j, &op->body);
  if (!rc && (!op->name || !op->hash)) rc = AW_ENOMEM;
  if (!rc) {
    copy_id(op->id, sizeof op->id, known_id);
    rc = ensure_step(op, known_id && known_id[0] ? EN_RETRIEVE : EN_LIST);
  }
  if (rc) {
    ensure_free(op);
    return rc;
  }
  if (out) *out = (be_op *)op;
  return AW_OK;
}

/* ==== turns ================================================================== */

typedef enum {
  T_MESSAGE = 1, T_STREAM, T_ADOPT, T_POLL_WAIT, T_POLL, T_MESSAGES, T_CANCEL_RUN, T_SUBMIT,
  T_STEPS, T_ACTION, T_DONE
} turn_phase_t;

static const char *phase_name(int p) {
  static const char *names[] = {"?", "adding_message", "streaming", "adopting_run", "poll_wait",
                                "polling", "collecting_messages", "cancelling_run",
                                "submitting_tool_outputs", "listing_steps", "reporting_action",
                                "done"};
  return p >= 1 && p <= T_DONE ? names[p] : "?";
}

/* How many message ids one submission round may write before the poll
 * fallback gives up telling them apart (a round writes one or two). */
#define ROUND_IDS_MAX 64
/* Pages of run steps / messages searched (100 per page). */
#define MAX_PAGES 5

typedef struct turn_timer {
  uv_timer_t t;
  struct turn_op *turn;
} turn_timer;

typedef struct turn_op {
  op_base b;
  be_asst *be;
  const be_turn_events *ev;
  void *opaque;
  int phase;
  int want_deltas;
  int run_created, terminal, requires_action, got_done, stream_error;
  int answer_err;            /* AW_ETOOBIG when the answer exceeded its bound */
  char thread[API_JSON_ID_MAX];
  char assistant[API_JSON_ID_MAX];
  char msg_id[API_JSON_ID_MAX];  /* "" when the message came with the run */
  char run_tag[132];             /* metadata.aw_tag of the run, "" if none */
  cJSON *add_msg;                /* the user message, sent as the run's additional_messages */
  char event_id[API_JSON_ID_MAX]; /* for log lines, truncated */
  int64_t msg_created_at;
  char *instructions, *additional; /* copies for the run body, NULL if none */
  api_json_run run;          /* the run as last seen */
  size_t deltas_emitted;     /* bytes passed to on_text_delta */
  api_json_answer ans;
  int err, http_status;
  char error_code[64];
  char errmsg[512];
  int64_t run_started_ms;
  turn_timer *timer;
  long poll_delay_ms;
  char after[API_JSON_ID_MAX]; /* messages / steps list pagination */
  /* function calling */
  int calls_err;              /* result of parsing required_action */
  api_json_tool_calls calls;  /* the pending tool calls, when requires_action */
  be_tool_call *calls_view;   /* what on_requires_action / on_done receive */
  char round_call[API_JSON_ID_MAX]; /* submissions: one submitted call id */
  buf round_ids;              /* ids of messages written after it (poll fallback) */
  int steps_done, steps_pages;
} turn_op;

static void turn_phase(turn_op *t, int phase) {
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = {.event_id = nz(t->event_id), .thread_id = nz(t->thread), .run_id = nz(t->run.id)};
    log_debug(&ctx, "turn %s -> %s", phase_name(t->phase), phase_name(phase));
  }
  t->phase = phase;
}

static void on_timer_closed(uv_handle_t *h) { free(h); }

static void turn_free(turn_op *t) {
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
  free(t->instructions);
  free(t->additional);
  cJSON_Delete(t->add_msg);
  free(t);
}

/* Call back the user; returns 1 if the turn was cancelled meanwhile (and is
 * now freed: the caller must unwind without touching it). */
#define USER_CB(t, call)            \
  ((t)->b.in_cb++, (call), (t)->b.in_cb--, (t)->b.cancelled ? (turn_free(t), 1) : 0)

static void turn_seterr(turn_op *t, int err, int status, const char *code, const char *fmt, ...)
    AW_PRINTF(5, 6);
static void turn_seterr(turn_op *t, int err, int status, const char *code, const char *fmt, ...) {
  t->err = err;
  t->http_status = status;
  copy_id(t->error_code, sizeof t->error_code, code);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(t->errmsg, sizeof t->errmsg, fmt, ap);
  va_end(ap);
}

static void turn_finish(turn_op *t) {
  turn_phase(t, T_DONE);
  /* Deltas promise that their concatenation is the final text: after a lost
   * stream (or a stream that skipped some), send what is missing at once. */
  if (t->want_deltas && t->ev->on_text_delta && t->ans.text_len > t->deltas_emitted) {
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
  be_turn_result res;
  memset(&res, 0, sizeof res);
  res.err = t->err;
  if (!res.err && t->answer_err) {
    res.err = t->answer_err;
    snprintf(t->errmsg, sizeof t->errmsg, "answer exceeds max_answer_bytes");
    copy_id(t->error_code, sizeof t->error_code, "answer_too_large");
  }
  if (!res.err && api_json_answer_build(&t->ans, &res.messages, &res.nmessages) != AW_OK) {
    res.err = AW_ENOMEM;
    snprintf(t->errmsg, sizeof t->errmsg, "out of memory building the answer");
  }
  res.status = nz(t->run.status);
  res.run_id = nz(t->run.id);
  res.message_id = nz(t->msg_id);
  res.usage = t->run.usage;
  res.error_code = nz(t->error_code) ? t->error_code : nz(t->run.error_code);
  res.errmsg = nz(t->errmsg) ? t->errmsg : nz(t->run.error_message);
  res.http_status = t->http_status;
  res.run_started_ms = t->run_started_ms;
  if (t->calls_view && res.status && strcmp(res.status, "requires_action") == 0) {
    res.tool_calls = t->calls_view;
    res.ntool_calls = api_json_tool_calls_count(&t->calls);
    res.expires_at_ms = t->run.expires_at * 1000;
  }
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = {.event_id = nz(t->event_id), .thread_id = nz(t->thread), .run_id = res.run_id};
    log_debug(&ctx, "turn done: %s status=%s", aw_strerror(res.err), res.status ? res.status : "-");
  }
  t->b.in_cb++;
  t->ev->on_done(t->opaque, &res);
  turn_free(t);
}

static void turn_finish_api_err(turn_op *t, const api_result *r) {
  turn_seterr(t, r->err, r->http_status, r->error_code, "%s", r->errmsg);
  turn_finish(t);
}

static void turn_start_err(turn_op *t, int rc, const char *what) {
  turn_seterr(t, rc, 0, NULL, "%s could not start: %s", what, aw_strerror(rc));
  turn_finish(t);
}

static void turn_poll(turn_op *t);
static void turn_collect(turn_op *t);
static void turn_on_messages(void *opaque, const api_result *r);

/* ---- cancelling a run that needs tool outputs ------------------------------- */

static void turn_on_run_cancelled(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  (void)r; /* best effort: the run expires on its own otherwise */
  t->b.call = NULL;
  turn_finish(t);
}

/* Hand the pending tool calls to the caller; the run keeps waiting. */
static void turn_report_action(turn_op *t) {
  turn_phase(t, T_ACTION);
  const api_json_tool_call *c;
  size_t n;
  free(t->calls_view);
  t->calls_view = NULL;
  if (api_json_tool_calls_build(&t->calls, &c, &n) != AW_OK || !n ||
      !(t->calls_view = calloc(n, sizeof *t->calls_view))) {
    turn_seterr(t, AW_ENOMEM, 0, NULL, "out of memory reporting tool calls");
    turn_finish(t);
    return;
  }
  /* Same layout, but backend.h must not depend on api_json.h. */
  for (size_t i = 0; i < n; i++) {
    t->calls_view[i].id = c[i].id;
    t->calls_view[i].name = c[i].name;
    t->calls_view[i].arguments = c[i].arguments;
  }
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = {.event_id = nz(t->event_id), .thread_id = t->thread, .run_id = t->run.id};
    log_debug(&ctx, "run requires action: %zu tool call(s), first %s", n, c[0].name);
  }
  if (USER_CB(t, t->ev->on_requires_action(t->opaque, t->calls_view, n))) return;
  turn_finish(t);
}

static void turn_requires_action(turn_op *t) {
  if (t->ev->on_requires_action) {
    if (!t->calls_err && !t->answer_err) {
      turn_report_action(t);
      return;
    }
    /* The caller could not act on it: free the thread for the next turn. */
    if (t->calls_err)
      turn_seterr(t, t->calls_err, 0, "invalid_required_action",
                  "run %s requires action but its tool calls could not be read: %s", t->run.id,
                  aw_strerror(t->calls_err));
  } else {
    turn_seterr(t, AW_EINVAL, 0, "tool_calls_unsupported",
                "run %s requires tool outputs: function calling is not supported yet", t->run.id);
  }
  copy_id(t->run.status, sizeof t->run.status, "cancelled");
  turn_phase(t, T_CANCEL_RUN);
  int rc = api_runs_cancel(t->be->api, t->thread, t->run.id, turn_on_run_cancelled, t, &t->b.call);
  if (rc) turn_finish(t);
}

/* ---- polling ------------------------------------------------------------------ */

static void turn_on_timer(uv_timer_t *h) {
  turn_timer *tt = (turn_timer *)h;
  if (tt->turn) turn_poll(tt->turn);
}

static void turn_schedule_poll(turn_op *t) {
  if (!t->timer) {
    t->timer = calloc(1, sizeof *t->timer);
    if (!t->timer || uv_timer_init(t->be->loop, &t->timer->t) != 0) {
      free(t->timer);
      t->timer = NULL;
      turn_start_err(t, AW_ENOMEM, "poll timer");
      return;
    }
    t->timer->turn = t;
  }
  turn_phase(t, T_POLL_WAIT);
  uv_timer_start(&t->timer->t, turn_on_timer, (uint64_t)t->poll_delay_ms, 0);
  /* 200 ms doubling to 2 s: quick for short runs, gentle for long ones. */
  t->poll_delay_ms = t->poll_delay_ms ? t->poll_delay_ms * 2 : 200;
  if (t->poll_delay_ms > 2000) t->poll_delay_ms = 2000;
}

static void turn_on_run(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (r->err) {
    turn_finish_api_err(t, r);
    return;
  }
  api_json_run run;
  if (api_json_run_parse(r->json, &run) != AW_OK) {
    turn_seterr(t, AW_EPARSE, r->http_status, NULL, "GET run %s: not a run object", t->run.id);
    turn_finish(t);
    return;
  }
  t->run = run;
  if (strcmp(run.status, "requires_action") == 0) {
    if (t->ev->on_requires_action) {
      t->calls_err = api_json_tool_calls_parse(&t->calls, r->json);
      /* The messages written before the calls belong to this round's answer. */
      if (!t->calls_err) {
        turn_collect(t);
        return;
      }
    }
    turn_requires_action(t);
  } else if (api_json_run_terminal(run.status)) {
    turn_collect(t);
  } else {
    turn_schedule_poll(t);
  }
}

static void turn_poll(turn_op *t) {
  turn_phase(t, T_POLL);
  int rc = api_runs_retrieve(t->be->api, t->thread, t->run.id, turn_on_run, t, &t->b.call);
  if (rc) turn_start_err(t, rc, "GET run");
}

/* The stream is gone but the run exists: follow it by polling. */
static void turn_follow(turn_op *t) {
  t->poll_delay_ms = 0;
  turn_schedule_poll(t);
}

/* ---- collecting the run's messages after polling ------------------------------ */

static void turn_on_steps(void *opaque, const api_result *r);

/* A submission's round: the run's messages list holds every round's
 * messages, and message objects do not say which step wrote them; the run
 * steps do.  Newest first, the message_creation steps before the tool_calls
 * step holding our call id are this round's. */
static void turn_list_steps(turn_op *t) {
  turn_phase(t, T_STEPS);
  if (!t->after[0]) buf_reset(&t->round_ids);
  int rc = api_run_steps_list(t->be->api, t->thread, t->run.id, 100, "desc",
                              t->after[0] ? t->after : NULL, turn_on_steps, t, &t->b.call);
  if (rc) turn_start_err(t, rc, "GET run steps");
}

static void turn_on_steps(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (r->err) {
    turn_finish_api_err(t, r);
    return;
  }
  int found = 0;
  char last[API_JSON_ID_MAX];
  int rc = api_json_steps_after_call(r->json, t->round_call, &t->round_ids, &found, last);
  if (rc) {
    turn_seterr(t, rc, r->http_status, NULL, "GET %s/threads/%s/runs/%s/steps: %s",
                api_client_base_path(t->be->api), t->thread, t->run.id,
                rc == AW_ETOOBIG ? "too many messages in one round" : "not a list");
    turn_finish(t);
    return;
  }
  t->steps_pages++;
  if (!found && last[0] && strcmp(last, t->after) != 0 && t->steps_pages < MAX_PAGES &&
      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "has_more"))) {
    copy_id(t->after, sizeof t->after, last);
    turn_list_steps(t);
    return;
  }
  /* Not found within the bound: every message seen counts (at worst an
   * earlier round's text repeats; nothing is lost). */
  t->steps_done = 1;
  t->after[0] = '\0';
  turn_collect(t);
}

static void turn_collect(turn_op *t) {
  if (t->round_call[0] && !t->steps_done) {
    turn_list_steps(t);
    return;
  }
  turn_phase(t, T_MESSAGES);
  if (!t->after[0]) {
    api_json_answer_reset(&t->ans); /* the list is the whole truth */
    t->answer_err = 0;
  }
  int rc = api_messages_list(t->be->api, t->thread, t->run.id, "asc", 100,
                             t->after[0] ? t->after : NULL, turn_on_messages, t, &t->b.call);
  if (rc) turn_start_err(t, rc, "GET messages");
}

static void turn_on_messages(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (r->err) {
    turn_finish_api_err(t, r);
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
    copy_id(t->after, sizeof t->after, last);
    turn_collect(t);
    return;
  }
  if (strcmp(t->run.status, "requires_action") == 0) turn_requires_action(t);
  else turn_finish(t);
}

/* ---- adopting a run our first attempt created -------------------------------- */

static void turn_on_runs_list(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r->json, "data"), 0);
  api_json_run run;
  if (r->err == AW_OK && first && api_json_run_parse(first, &run) == AW_OK &&
      !api_json_run_terminal(run.status) &&
      ((t->msg_id[0] && strcmp(run.tag, t->msg_id) == 0) || (!t->msg_id[0] && t->run_tag[0] && strcmp(run.tag, t->run_tag) == 0) ||
       (t->msg_id[0] && !run.tag[0] && strcmp(run.assistant_id, t->assistant) == 0 &&
        run.created_at >= t->msg_created_at))) {
    t->run = run;
    t->run_created = 1;
    t->run_started_ms = now_ms();
    t->err = 0;
    t->errmsg[0] = t->error_code[0] = '\0';
    t->http_status = 0;
    if (t->ev->on_run_created && USER_CB(t, t->ev->on_run_created(t->opaque, t->run.id))) return;
    turn_follow(t);
    return;
  }
  turn_finish(t); /* keep the original 400 */
}

/* ---- the stream ---------------------------------------------------------------- */

static int ev_is(const char *ev, size_t len, const char *name) {
  size_t n = strlen(name);
  return len == n && memcmp(ev, name, n) == 0;
}

static int turn_on_delta_text(void *opaque, const char *text, size_t len) {
  turn_op *t = opaque;
  t->deltas_emitted += len;
  return USER_CB(t, t->ev->on_text_delta(t->opaque, text, len));
}

static int turn_on_event(void *opaque, const char *ev, size_t evlen, const char *data, size_t len) {
  turn_op *t = opaque;
  /* Ordered by frequency: deltas dominate a stream. */
  if (ev_is(ev, evlen, "thread.message.delta")) {
    if (!t->want_deltas || !t->ev->on_text_delta) return 0; /* not even parsed */
    int rc = api_json_delta_texts(data, len, turn_on_delta_text, t);
    return rc > 0 ? 1 : 0; /* >0: cancelled inside on_text_delta; bad JSON is skipped */
  }
  if (evlen > 11 && memcmp(ev, "thread.run.", 11) == 0 && memcmp(ev + 11, "step.", 5) != 0) {
    const char *st = ev + 11;
    size_t stl = evlen - 11;
    int created = ev_is(st, stl, "created");
    int needed = created || ev_is(st, stl, "requires_action") || ev_is(st, stl, "completed") ||
                 ev_is(st, stl, "failed") || ev_is(st, stl, "cancelled") || ev_is(st, stl, "expired") ||
                 ev_is(st, stl, "incomplete");
    if (!needed) return 0;
    api_json_run run;
    int ra = ev_is(st, stl, "requires_action");
    cJSON *j = cJSON_ParseWithLength(data, len);
    if (!j || api_json_run_parse(j, &run) != AW_OK || (t->run_created && strcmp(run.id, t->run.id) != 0)) {
      cJSON_Delete(j);
      return 0;
    }
    if (ra && t->ev->on_requires_action) t->calls_err = api_json_tool_calls_parse(&t->calls, j);
    cJSON_Delete(j);
    t->run = run;
    if (created && !t->run_created) {
      t->run_created = 1;
      t->run_started_ms = now_ms();
      if (t->ev->on_run_created && USER_CB(t, t->ev->on_run_created(t->opaque, t->run.id))) return 1;
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
  if (ev_is(ev, evlen, "done")) {
    t->got_done = 1;
    return 0;
  }
  if (ev_is(ev, evlen, "error")) {
    char code[64], msg[256];
    if (api_json_error_event(data, len, code, sizeof code, msg, sizeof msg)) {/* kept as text */}
    t->stream_error = 1;
    if (t->phase == T_SUBMIT)
      turn_seterr(t, AW_EHTTP5XX, 200, code,
                  "POST %s/threads/%s/runs/%s/submit_tool_outputs: stream error: %s",
                  api_client_base_path(t->be->api), t->thread, t->run.id, msg);
    else
      turn_seterr(t, AW_EHTTP5XX, 200, code, "POST %s/threads/%s/runs: stream error: %s",
                  api_client_base_path(t->be->api), t->thread, msg);
    return 0;
  }
  return 0;
}

static void turn_on_stream_done(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (t->requires_action) {
    turn_requires_action(t);
    return;
  }
  if (t->stream_error) {
    turn_finish(t);
    return;
  }
  if (t->terminal) {
    turn_finish(t);
    return;
  }
  if (t->phase == T_SUBMIT && r->err && r->http_status >= 300) {
    /* The API answered the submission with an error instead of a stream. */
    turn_seterr(t, r->err, r->http_status, r->error_code, "%s", r->errmsg);
    if (r->http_status == 400 && r->attempts > 1) {
      /* An earlier attempt may have been accepted before its answer was
       * lost: the run itself tells (and a still waiting run is reported
       * as requires_action again). */
      t->err = t->http_status = 0;
      t->errmsg[0] = t->error_code[0] = '\0';
      turn_follow(t);
      return;
    }
    turn_finish(t);
    return;
  }
  if (t->run_created) {
    if (log_enabled(LOG_INFO)) {
      log_ctx ctx = {.event_id = nz(t->event_id), .thread_id = t->thread, .run_id = t->run.id};
      log_info(&ctx, "stream ended before the run did (%s); following the run by polling",
               r->err ? r->errmsg : "clean end");
    }
    turn_follow(t);
    return;
  }
  if (r->err == AW_OK) {
    turn_seterr(t, AW_EIO, r->http_status, "stream_error",
                "POST %s/threads/%s/runs: stream ended before the run was created",
                api_client_base_path(t->be->api), t->thread);
    turn_finish(t);
    return;
  }
  turn_seterr(t, r->err, r->http_status, r->error_code, "%s", r->errmsg);
  /* Our first attempt may have created the run before its response was
   * lost; the retry then meets our own run. */
  if (r->http_status == 400 && r->attempts > 1 && strstr(r->errmsg, "already has an active run")) {
    turn_phase(t, T_ADOPT);
    int rc = api_runs_list(t->be->api, t->thread, 1, "desc", turn_on_runs_list, t, &t->b.call);
    if (rc) turn_finish(t);
    return;
  }
  turn_finish(t);
}

/* POST the streaming run; returns what failed before any I/O (no callback). */
static int turn_post_run(turn_op *t) {
  cJSON *j = cJSON_CreateObject();
  cJSON *md = NULL;
  int ok = j && cJSON_AddStringToObject(j, "assistant_id", t->assistant) &&
           cJSON_AddTrueToObject(j, "stream");
  if (ok && t->instructions) ok = cJSON_AddStringToObject(j, "instructions", t->instructions) != NULL;
  if (ok && t->additional)
    ok = cJSON_AddStringToObject(j, "additional_instructions", t->additional) != NULL;
  /* Tagging the run with our message (or, when the message comes with the
   * run, with the caller's tag) lets a retry recognise it (adoption) and a
   * re-processed event find it (be_find_message). */
  if (ok) md = cJSON_AddObjectToObject(j, "metadata");
  ok = md != NULL;
  if (ok && t->msg_id[0]) ok = cJSON_AddStringToObject(md, "aw_message_id", t->msg_id) != NULL;
  if (ok && !t->msg_id[0] && t->run_tag[0]) ok = cJSON_AddStringToObject(md, "aw_tag", t->run_tag) != NULL;
  if (ok && t->add_msg) {
    /* One request adds the message and starts the run: both or neither. */
    cJSON *arr = cJSON_AddArrayToObject(j, "additional_messages");
    ok = arr && cJSON_AddItemToArray(arr, t->add_msg);
    if (ok) t->add_msg = NULL; /* owned by j now */
  }
  char *body = NULL;
  if (!ok) cJSON_Delete(j);
  if (!ok || print_json(j, &body)) return AW_ENOMEM;
  free(t->instructions);
  free(t->additional);
  t->instructions = t->additional = NULL;
  turn_phase(t, T_STREAM);
  int rc = api_runs_create(t->be->api, t->thread, body, turn_on_event, turn_on_stream_done, t, &t->b.call);
  cJSON_free(body);
  if (rc) t->b.call = NULL;
  return rc;
}

static cJSON *message_object(const be_turn_input *in) {
  cJSON *j = cJSON_CreateObject(), *content = NULL;
  int ok = j && cJSON_AddStringToObject(j, "role", "user") &&
           (content = cJSON_AddArrayToObject(j, "content"));
  for (size_t i = 0; ok && i < in->nparts; i++) {
    cJSON *p = cJSON_CreateObject();
    if (!p) {
      ok = 0;
      break;
    }
    cJSON_AddItemToArray(content, p);
    /* text_len may cover bytes cJSON cannot carry (an embedded NUL): the
     * contract decoder checks UTF-8, so a NUL-terminated copy is exact. */
    ok = cJSON_AddStringToObject(p, "type", "text") && cJSON_AddStringToObject(p, "text", in->parts[i].text);
  }
  if (ok && add_metadata(j, in->metadata, in->nmetadata) != AW_OK) ok = 0;
  if (!ok) {
    cJSON_Delete(j);
    return NULL;
  }
  return j;
}

static turn_op *turn_new(be_asst *be, const be_turn_events *ev, void *opaque, const char *thread) {
  turn_op *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->b.head.be = &be->base;
  t->b.kind = OP_TURN;
  t->be = be;
  t->ev = ev;
  t->opaque = opaque;
  copy_id(t->thread, sizeof t->thread, thread);
  api_json_answer_init(&t->ans, be->max_answer_bytes);
  /* Tool-call arguments are model output like the answer: same bound. */
  api_json_tool_calls_init(&t->calls, be->max_answer_bytes);
  buf_init(&t->round_ids, ROUND_IDS_MAX * API_JSON_ID_MAX);
  return t;
}

static int id_arg_ok(const char *id) { return id && id[0] && strlen(id) < API_JSON_ID_MAX; }

static int turn_start(be_backend *bb, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                      be_op **out) {
  be_asst *be = (be_asst *)bb;
  if (out) *out = NULL;
  if (!in || !ev || !ev->on_done || !in->conversation || !in->assistant_id || !in->nparts || !in->parts ||
      (in->nmetadata && !in->metadata))
    return AW_EINVAL;
  if (strlen(in->conversation) >= API_JSON_ID_MAX || strlen(in->assistant_id) >= API_JSON_ID_MAX)
    return AW_EINVAL;
  for (size_t i = 0; i < in->nparts; i++)
    if (in->parts[i].type != CONTRACT_PART_TEXT || !in->parts[i].text)
      return AW_EINVAL; /* images and files: not supported yet */
  for (size_t i = 0; i < in->nmetadata; i++)
    if (!in->metadata[i].key || !in->metadata[i].value) return AW_EINVAL;

  turn_op *t = turn_new(be, ev, opaque, in->conversation);
  if (!t) return AW_ENOMEM;
  t->want_deltas = in->want_deltas;
  copy_id(t->assistant, sizeof t->assistant, in->assistant_id);
  copy_id(t->event_id, sizeof t->event_id, in->log_event_id);
  int rc = AW_OK;
  if (in->instructions && !(t->instructions = strdup(in->instructions))) rc = AW_ENOMEM;
  if (in->additional_instructions && !(t->additional = strdup(in->additional_instructions))) rc = AW_ENOMEM;
  if (!rc && in->run_tag) {
    if (strlen(in->run_tag) >= sizeof t->run_tag) rc = AW_EINVAL;
    else copy_id(t->run_tag, sizeof t->run_tag, in->run_tag);
  }
  if (!rc && in->existing_message_id) {
    /* The message was added by an earlier attempt (a re-processed event):
     * only the run is started, tagged with that message. */
    if (!id_arg_ok(in->existing_message_id)) rc = AW_EINVAL;
    else {
      copy_id(t->msg_id, sizeof t->msg_id, in->existing_message_id);
      rc = turn_post_run(t);
    }
  } else if (!rc) {
    t->add_msg = message_object(in);
    rc = t->add_msg ? turn_post_run(t) : AW_ENOMEM;
  }
  if (rc) {
    t->b.call = NULL;
    turn_free(t);
    return rc;
  }
  if (out) *out = (be_op *)t;
  return AW_OK;
}

/* ==== continuing a run: tool outputs, resume ================================== */

static char *submit_body(const be_tool_output *outputs, size_t n, int *err) {
  cJSON *j = cJSON_CreateObject(), *arr = NULL;
  int ok = j && (arr = cJSON_AddArrayToObject(j, "tool_outputs"));
  for (size_t i = 0; ok && i < n; i++) {
    cJSON *o = cJSON_CreateObject();
    if (!o) {
      ok = 0;
      break;
    }
    cJSON_AddItemToArray(arr, o);
    ok = cJSON_AddStringToObject(o, "tool_call_id", outputs[i].tool_call_id) &&
         cJSON_AddStringToObject(o, "output", outputs[i].output);
  }
  ok = ok && cJSON_AddTrueToObject(j, "stream");
  char *body = NULL;
  if (!ok) {
    cJSON_Delete(j);
    *err = AW_ENOMEM;
    return NULL;
  }
  if ((*err = print_json(j, &body))) return NULL;
  return body;
}

static int submit_tool_outputs(be_backend *bb, const char *conversation, const char *run_id,
                               const be_tool_output *outputs, size_t n, int want_deltas,
                               const be_turn_events *ev, void *opaque, be_op **out) {
  be_asst *be = (be_asst *)bb;
  if (out) *out = NULL;
  if (!ev || !ev->on_done || !id_arg_ok(conversation) || !id_arg_ok(run_id) || !outputs || !n)
    return AW_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!id_arg_ok(outputs[i].tool_call_id) || !outputs[i].output) return AW_EINVAL;
  turn_op *t = turn_new(be, ev, opaque, conversation);
  if (!t) return AW_ENOMEM;
  t->want_deltas = want_deltas;
  t->run_created = 1; /* the run exists: a lost stream is followed by polling */
  t->run_started_ms = now_ms();
  copy_id(t->run.id, sizeof t->run.id, run_id);
  copy_id(t->round_call, sizeof t->round_call, outputs[0].tool_call_id);
  int rc;
  char *body = submit_body(outputs, n, &rc);
  if (!rc) {
    turn_phase(t, T_SUBMIT);
    rc = api_runs_submit_tool_outputs(be->api, t->thread, t->run.id, body, turn_on_event,
                                      turn_on_stream_done, t, &t->b.call);
  }
  cJSON_free(body);
  if (rc) {
    t->b.call = NULL;
    turn_free(t);
    return rc;
  }
  if (out) *out = (be_op *)t;
  return AW_OK;
}

static int turn_resume(be_backend *bb, const char *conversation, const char *run_id,
                       const be_turn_events *ev, void *opaque, be_op **out) {
  be_asst *be = (be_asst *)bb;
  if (out) *out = NULL;
  if (!ev || !ev->on_done || !id_arg_ok(conversation) || !id_arg_ok(run_id)) return AW_EINVAL;
  turn_op *t = turn_new(be, ev, opaque, conversation);
  if (!t) return AW_ENOMEM;
  t->run_created = 1;
  t->run_started_ms = now_ms();
  t->poll_delay_ms = 200; /* the first GET is the one below */
  copy_id(t->run.id, sizeof t->run.id, run_id);
  turn_phase(t, T_POLL);
  int rc = api_runs_retrieve(be->api, t->thread, t->run.id, turn_on_run, t, &t->b.call);
  if (rc) {
    t->b.call = NULL;
    turn_free(t);
    return rc;
  }
  if (out) *out = (be_op *)t;
  return AW_OK;
}

/* ==== find_message ============================================================ */

enum { FIND_MESSAGES = 1, FIND_RUNS };

typedef struct find_op {
  op_base b;
  be_asst *be;
  be_result_cb cb;
  void *opaque;
  int phase, pages;
  char *key, *value; /* copies */
  char thread[API_JSON_ID_MAX];
  char after[API_JSON_ID_MAX];
  char msg_id[API_JSON_ID_MAX];
} find_op;

static void find_free(find_op *op) {
  free(op->key);
  free(op->value);
  free(op);
}

static void find_finish(find_op *op, int err, int status, const char *code, const char *msg,
                        const char *run_id) {
  be_result res = {.err = err, .http_status = status, .error_code = nz(code),
                   .errmsg = msg ? msg : "", .id = err ? NULL : op->msg_id,
                   .run_id = err ? NULL : nz(run_id)};
  op->b.in_cb++;
  op->cb(op->opaque, &res);
  find_free(op);
}

static void find_on_done(void *opaque, const api_result *r);

static int find_step(find_op *op, int phase) {
  op->phase = phase;
  if (phase == FIND_MESSAGES)
    return api_messages_list(op->be->api, op->thread, NULL, "desc", 100,
                             op->after[0] ? op->after : NULL, find_on_done, op, &op->b.call);
  /* A turn starts its run right after adding its message, so the run, if
   * any, is among the newest ones. */
  return api_runs_list(op->be->api, op->thread, 20, "desc", find_on_done, op, &op->b.call);
}

static void find_on_done(void *opaque, const api_result *r) {
  find_op *op = opaque;
  op->b.call = NULL;
  if (r->err) {
    find_finish(op, r->err, r->http_status, r->error_code, r->errmsg, NULL);
    return;
  }
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->json, "data"), *m;
  int rc;
  if (op->phase == FIND_RUNS) {
    cJSON_ArrayForEach(m, data) {
      const char *tag = md_get(m, "aw_message_id"), *tag2 = md_get(m, "aw_tag");
      const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"));
      if (id && ((tag && strcmp(tag, op->msg_id) == 0) || (tag2 && strcmp(tag2, op->value) == 0))) {
        find_finish(op, AW_OK, r->http_status, NULL, "", id);
        return;
      }
    }
    find_finish(op, AW_OK, r->http_status, NULL, "", NULL);
    return;
  }
  const char *last = NULL;
  cJSON_ArrayForEach(m, data) {
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"));
    const char *role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "role"));
    const char *v = md_get(m, op->key);
    last = id;
    if (id && id[0] && strlen(id) < sizeof op->msg_id && role && strcmp(role, "user") == 0 && v &&
        strcmp(v, op->value) == 0) {
      copy_id(op->msg_id, sizeof op->msg_id, id);
      if ((rc = find_step(op, FIND_RUNS))) find_finish(op, rc, 0, NULL, "runs list could not start", NULL);
      return;
    }
  }
  op->pages++;
  if (last && strlen(last) < sizeof op->after && strcmp(last, op->after) != 0 && op->pages < MAX_PAGES &&
      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "has_more"))) {
    copy_id(op->after, sizeof op->after, last);
    if ((rc = find_step(op, FIND_MESSAGES))) find_finish(op, rc, 0, NULL, "messages list could not start", NULL);
    return;
  }
  char msg[256];
  snprintf(msg, sizeof msg, "no user message with metadata %.64s in the newest %d messages of %s",
           op->key, op->pages * 100, op->thread);
  find_finish(op, AW_ENOTFOUND, r->http_status, NULL, msg, NULL);
}

static int find_message(be_backend *bb, const char *conversation, const char *key, const char *value,
                        be_result_cb cb, void *opaque, be_op **out) {
  be_asst *be = (be_asst *)bb;
  if (out) *out = NULL;
  if (!cb || !id_arg_ok(conversation) || !key || !key[0] || !value) return AW_EINVAL;
  find_op *op = calloc(1, sizeof *op);
  if (!op) return AW_ENOMEM;
  op->b.head.be = bb;
  op->b.kind = OP_FIND;
  op->be = be;
  op->cb = cb;
  op->opaque = opaque;
  copy_id(op->thread, sizeof op->thread, conversation);
  op->key = strdup(key);
  op->value = strdup(value);
  int rc = op->key && op->value ? find_step(op, FIND_MESSAGES) : AW_ENOMEM;
  if (rc) {
    find_free(op);
    return rc;
  }
  if (out) *out = (be_op *)op;
  return AW_OK;
}

/* ==== common ==================================================================== */

static void op_cancel(be_op *bop) {
  op_base *b = (op_base *)bop;
  if (b->cancelled) return;
  b->cancelled = 1;
  if (b->in_cb) {
    /* Inside one of our callbacks: the code that called back frees it (turns),
     * or is about to free it anyway (simple/ensure on_done). */
    if (b->call) api_call_cancel(b->call);
    b->call = NULL;
    return;
  }
  if (b->call) api_call_cancel(b->call);
  b->call = NULL;
  switch (b->kind) {
  case OP_SIMPLE: free(b); break;
  case OP_ENSURE: ensure_free((ensure_op *)b); break;
  case OP_FIND: find_free((find_op *)b); break;
  default: turn_free((turn_op *)b); break;
  }
}

static void destroy(be_backend *bb) {
  be_asst *be = (be_asst *)bb;
  api_client_free(be->api);
  free(be);
}

static const be_ops assistants_ops = {
    .assistant_ensure = assistant_ensure,
    .conversation_create = conversation_create,
    .conversation_delete = conversation_delete,
    .turn_start = turn_start,
    .submit_tool_outputs = submit_tool_outputs,
    .turn_resume = turn_resume,
    .find_message = find_message,
    .run_cancel = run_cancel,
    .op_cancel = op_cancel,
    .destroy = destroy,
};

void be_assistants_config_default(be_assistants_config *c) {
  memset(c, 0, sizeof *c);
  c->request_timeout_ms = 30000;
  c->stream_idle_timeout_ms = 60000;
  c->max_retries = 5;
  c->retry_base_ms = 250;
  c->retry_max_ms = 8000;
  c->max_connections = 0;
  c->max_answer_bytes = 256u * 1024u;
}

int be_assistants_new(uv_loop_t *loop, const be_assistants_config *cfg, be_backend **out,
                      char *errstr, size_t errstr_size) {
  if (!loop || !cfg || !out) return aw_seterr(AW_EINVAL, errstr, errstr_size, "be_assistants_new: NULL argument");
  api_config ac;
  api_config_default(&ac);
  ac.base_url = cfg->base_url;
  ac.api_key = cfg->api_key;
  ac.organization = cfg->organization;
  ac.project = cfg->project;
  if (cfg->request_timeout_ms > 0) ac.request_timeout_ms = cfg->request_timeout_ms;
  if (cfg->stream_idle_timeout_ms > 0) ac.stream_idle_timeout_ms = cfg->stream_idle_timeout_ms;
  if (cfg->max_retries >= 0) ac.retry.max_retries = cfg->max_retries;
  if (cfg->retry_base_ms > 0) ac.retry.base_ms = cfg->retry_base_ms;
  if (cfg->retry_max_ms > 0) ac.retry.max_ms = cfg->retry_max_ms;
  ac.max_connections = cfg->max_connections;
  ac.observe = cfg->observe;
  ac.observe_opaque = cfg->observe_opaque;
  be_asst *be = calloc(1, sizeof *be);
  if (!be) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  int rc = api_client_new(loop, &ac, &be->api, errstr, errstr_size);
  if (rc) {
    free(be);
    return rc;
  }
  be->base.ops = &assistants_ops;
  be->loop = loop;
  be->max_answer_bytes = cfg->max_answer_bytes ? cfg->max_answer_bytes : 256u * 1024u;
  *out = &be->base;
  return AW_OK;
}

/* worker_tools.c -- the tool phase of an event (prefix wkt_): a run stopped
 * in requires_action; its function calls are routed to their services over
 * Kafka, and the run goes on once every call has an output.
 *
 *   BEGIN    the round is recorded in Redis (tool_state.h), with a signed
 *            correlation id per call; calls that need no service (unknown
 *            function, arguments that break the function's schema) get
 *            their error output right away
 *   PUBLISH  one tool request per remaining call, all at once; the round is
 *            marked published once every request is durable
 *   WAIT     the event sits at the head of its conversation (so the next
 *            request of the conversation waits) until the round is complete:
 *            woken directly when this worker consumed the last reply, via
 *            its wake list in Redis when another worker did, at the next
 *            deadline, and by a slow safety poll
 *   COLLECT  tstate_collect applies passed deadlines and hands the outputs
 *   SUBMIT   be_turn_continue with the round's outputs; the turn goes on:
 *            another round comes back here, the end goes to wk_turn_done
 *   CANCEL   a deadline with on_deadline cancel_run, or a conversation
 *            request `cancel` (wkt_cancel): be_turn_cancel ends the turn
 *            (cancelled)
 *
 * The owner of the request event is the only worker that submits.  Two
 * may believe they own it for a while (one lost its partition to a session
 * timeout it has not noticed yet), so COLLECT also claims the round's
 * submission in Redis with a lease (tool_state.h): the other attempt waits
 * for the lease, then recovers the turn from the backend instead of
 * submitting.  A worker that dies anywhere in this leaves the state in
 * Redis, and the next owner of the event re-processes it: the backend
 * recovers the turn from its checkpoint, which brings it back here (BEGIN
 * finds the round recorded and only re-publishes when the requests were
 * not all durable).
 *
 * Everything here is keyed by our ids, never by a backend's: the tool state
 * and the correlation ids by the event's turn token (a digest of the
 * conversation and event ids, wk_event.turn_token) and the call id, which
 * the backend keeps unique within a turn.
 */
#include "worker_tools.h"
#include "tools_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <cjson/cJSON.h>

#include "contract_tool.h"
#include "conv_sched.h"
#include "event.h"
#include "intake.h"
#include "json_schema.h"
#include "kafka_producer.h"
#include "outbox.h"
#include "tool_sign.h"
#include "turn.h"

#define TICK_MS 20           /* wake-list drain while runs wait */
#define SAFETY_POLL_MS 1000  /* a waiting run looks at its state at least this often */
#define REDIS_RETRY_MS 200
#define MAX_CALL_ID 64
#define MAX_OUTCOMES 128     /* tool calls remembered for one response */
#define ERR_OUTPUT_MAX 1024
#define EXPIRY_GRACE_MS 1000 /* expires_at has a one-second resolution */
#define REQUEST_OVERHEAD 4096 /* a tool request beyond its arguments: ids, topic, headers */

enum { S_BEGIN, S_PUBLISH, S_WAIT, S_COLLECT, S_SUBMIT, S_CANCEL };

typedef struct wkt_call {
  char id[MAX_CALL_ID];
  char name[CTOOL_MAX_NAME + 1];
  char *args;
  const wkt_route *route;
  char corr[CORR_ID_SIZE];
  char digest[CORR_DIGEST_SIZE];
  int64_t deadline_ms;
  const char *preset_kind; /* decided without a service */
  char *preset_output;
  char *timeout_output;
  int published, publishing;
} wkt_call;

typedef struct wkt_outcome {
  char id[MAX_CALL_ID];
  char name[CTOOL_MAX_NAME + 1];
  char kind[24];
} wkt_outcome;

typedef struct wkt_ev {
  wk_event *ev;
  int stage;
  int busy;            /* a Redis command of this event is out */
  int abandon;         /* shutdown: leave it when the command returns */
  int in_hash;
  char turn[CORR_DIGEST_SIZE];
  wkt_call *calls;
  size_t ncalls;
  int pending_dr;
  int64_t next_check_ms, next_deadline_ms, began_ms;
  wkt_outcome *outcomes;
  size_t noutcomes;
  contract_tool_call *view;
  char cancel_fn[CTOOL_MAX_NAME + 1];
  int woken;              /* a wake-up came while busy: collect once idle */
  int64_t expires_at_ms;  /* when the backend gives up on the waiting turn; 0 never */
  int expiry_checked;     /* the run was looked at after its expiry */
  long round;             /* the current round's number within the turn (tool_state) */
  long rounds_seen;       /* the highest round the tool state listed (usage records) */
  int over_cap;           /* the turn asked for more than max_tool_rounds rounds: cancelled */
  int cancel_asked;       /* wkt_cancel came while a step was out: cancel once idle in WAIT */
  char claim[48];         /* this attempt's token for the rounds' submission claims */
  UT_hash_handle hh;
} wkt_ev;

static void begin_round(wkt_ev *te);
static void publish(wkt_ev *te);
static void collect(wkt_ev *te);
static void over_cap(wkt_ev *te);

static log_ctx te_ctx(const wkt_ev *te) { return wk_ev_ctx(te->ev); }

static void tick_start(wk *w);

/* ---- per-event state ------------------------------------------------------- */

static void calls_free(wkt_ev *te) {
  for (size_t i = 0; i < te->ncalls; i++) {
    free(te->calls[i].args);
    free(te->calls[i].preset_output);
    free(te->calls[i].timeout_output);
  }
  free(te->calls);
  te->calls = NULL;
  te->ncalls = 0;
}

static void unpark(wkt_ev *te) {
  wkt *T = te->ev->w->tools;
  if (te->in_hash) {
    HASH_DEL(T->waiting, te);
    te->in_hash = 0;
  }
}

static void park(wkt_ev *te) {
  wkt *T = te->ev->w->tools;
  if (te->in_hash) return;
  HASH_ADD_STR(T->waiting, turn, te);
  te->in_hash = 1;
  tick_start(te->ev->w);
}

void wkt_forget(wk_event *ev) {
  wkt_ev *te = ev->tools;
  if (!te) return;
  unpark(te);
  calls_free(te);
  free(te->outcomes);
  free(te->view);
  free(te);
  ev->tools = NULL;
}

/* {"error":{"code":..,"message":..}}: what the model reads for a call that
 * got no real output. */
static char *error_output(const char *code, const char *msg) {
  cJSON *o = cJSON_CreateObject(), *e = o ? cJSON_AddObjectToObject(o, "error") : NULL;
  char *s = NULL;
  if (e && cJSON_AddStringToObject(e, "code", code) && cJSON_AddStringToObject(e, "message", msg))
    s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}

/* The calls the model made, copied (their strings live only in the
 * callback), each decided: routed, or answered at once with an error. */
static int take_calls(wkt_ev *te, const be_tool_call *calls, size_t n) {
  wk_event *ev = te->ev;
  wkt *T = ev->w->tools;
  int64_t now = wk_now_ms();
  te->calls = calloc(n, sizeof *te->calls);
  if (!te->calls) return AW_ENOMEM;
  te->ncalls = n;
  for (size_t i = 0; i < n; i++) {
    wkt_call *c = &te->calls[i];
    const char *id = calls[i].id ? calls[i].id : "";
    const char *name = calls[i].name ? calls[i].name : "";
    if (!*id || strlen(id) >= sizeof c->id || strchr(id, ' ')) return AW_EPARSE;
    wk_copy_id(c->id, sizeof c->id, id);
    wk_copy_id(c->name, sizeof c->name, name);
    c->args = strdup(calls[i].arguments ? calls[i].arguments : "");
    if (!c->args) return AW_ENOMEM;
    c->route = wkt_route_for(T, name);
    char msg[ERR_OUTPUT_MAX];
    if (!c->route) {
      snprintf(msg, sizeof msg, "no service is configured for the function '%.64s'", name);
      c->preset_kind = "unknown_function";
      c->preset_output = error_output("unknown_function", msg);
      c->deadline_ms = now;
    } else {
      c->deadline_ms = now + c->route->r.deadline_ms;
      if (c->route->r.validate_arguments) {
        char e[512];
        int bad = 0;
        if (c->route->schema) {
          bad = jschema_validate_text(c->route->schema, c->args, strlen(c->args), e, sizeof e) != AW_OK;
        } else {
          cJSON *j = cJSON_ParseWithLength(c->args, strlen(c->args));
          bad = !cJSON_IsObject(j);
          snprintf(e, sizeof e, "arguments are not a JSON object");
          cJSON_Delete(j);
        }
        if (bad) {
          snprintf(msg, sizeof msg, "invalid arguments for %s: %s", name, e);
          c->preset_kind = "invalid_arguments";
          c->preset_output = error_output("invalid_arguments", msg);
        }
      }
    }
    if (c->route && !c->preset_kind) {
      /* A tool request carries the arguments twice (as a map and as the
       * model wrote them): one that could not be produced is answered to the
       * model now, instead of failing in Kafka round after round. */
      size_t limit = kp_max_message_bytes(ev->w->producer);
      if (limit > CTOOL_DEFAULT_MAX_REQUEST) limit = CTOOL_DEFAULT_MAX_REQUEST;
      size_t need = 2 * strlen(c->args) + strlen(name) + REQUEST_OVERHEAD;
      if (need > limit) {
        snprintf(msg, sizeof msg, "the arguments for %.64s are too large to send to its service (%zu bytes)",
                 name, strlen(c->args));
        c->preset_kind = "arguments_too_large";
        c->preset_output = error_output("arguments_too_large", msg);
      }
    }
    if (c->preset_kind && !c->preset_output) return AW_ENOMEM;
    snprintf(msg, sizeof msg, "no reply from %s within %ld ms", name, c->route ? c->route->r.deadline_ms : 0L);
    c->timeout_output = error_output("tool_timeout", msg);
    if (!c->timeout_output) return AW_ENOMEM;
    if (!c->preset_kind) {
      char head[TSTATE_CORR_KEY_CHARS + 1];
      /* Pinned: the id also binds the function's reply topic, the only
       * topic its reply is accepted from (tool_replies.c). */
      int rc = corr_new_pinned(ev->w->cfg.tool_key, ev->conv_id, ev->turn_token, c->id, c->route->r.reply_topic,
                               c->deadline_ms, c->corr, sizeof c->corr);
      if (rc != AW_OK) return rc;
      memcpy(head, c->corr, TSTATE_CORR_KEY_CHARS);
      head[TSTATE_CORR_KEY_CHARS] = '\0';
      rc = corr_digest(head, c->digest);
      if (rc != AW_OK) return rc;
    }
  }
  return AW_OK;
}

/* The run cannot go on: answer the event with this error. */
static void fail_turn(wkt_ev *te, int err, const char *code, const char *msg) {
  wk_event *ev = te->ev;
  unpark(te);
  be_turn_result r = {0};
  r.end = BE_END_ERROR;
  r.err = err;
  r.error_code = code;
  r.errmsg = msg;
  wk_ev_set_state(ev, ST_TURN);
  wk_turn_done(ev, &r);
}

void wkt_begin(wk_event *ev, const be_tool_call *calls, size_t n, int64_t expires_at_ms) {
  wk *w = ev->w;
  wkt *T = w->tools;
  wkt_ev *te = ev->tools;
  if (!te) {
    te = calloc(1, sizeof *te);
    if (!te) {
      be_turn_result r = {0};
      r.end = BE_END_ERROR;
      r.err = AW_ENOMEM;
      r.errmsg = "out of memory routing tool calls";
      wk_turn_done(ev, &r);
      return;
    }
    te->ev = ev;
    ev->tools = te;
  }
  calls_free(te);
  wk_ev_set_state(ev, ST_TOOLS);
  wk_copy_id(te->turn, sizeof te->turn, ev->turn_token);
  te->began_ms = wk_now_ms();
  T->rounds++;
  te->expires_at_ms = expires_at_ms;
  te->expiry_checked = 0;
  int rc = take_calls(te, calls, n);
  if (rc != AW_OK) {
    fail_turn(te, rc, rc == AW_ENOMEM ? "internal_error" : "invalid_tool_call",
              rc == AW_ENOMEM ? "out of memory routing tool calls" : "a tool call could not be routed");
    return;
  }
  if (T->stopping) {
    /* Shutting down: the round is recorded by whoever owns the event next. */
    wk_ev_abandon(ev);
    return;
  }
  if (T->ts.max_rounds > 0 && te->round >= T->ts.max_rounds) {
    /* Known here already (this worker recorded the last allowed round);
     * otherwise the round_begin script decides. */
    over_cap(te);
    return;
  }
  begin_round(te);
}

/* ---- BEGIN ------------------------------------------------------------------ */

/* The turn asked for one round of tool calls more than max_tool_rounds: it
 * is cancelled at the backend (a run left waiting for outputs would block
 * its thread until it expires) and answered failed, too_many_tool_rounds
 * (wkt_annotate).  Nothing of the round was published. */
static void over_cap(wkt_ev *te) {
  wk_event *ev = te->ev;
  wkt *T = ev->w->tools;
  T->round_caps++;
  unpark(te);
  te->over_cap = 1;
  te->stage = S_CANCEL;
  wk_ev_set_state(ev, ST_TURN);
  log_ctx lc = te_ctx(te);
  log_warn(&lc, "the turn asked for more than %ld rounds of tool calls (worker.max_tool_rounds); cancelling it",
           T->ts.max_rounds);
  be_turn_input in;
  wk_turn_input(ev, &in);
  int rc = be_turn_cancel(ev->w->be, &in, &wk_turn_events, ev, &ev->op);
  if (rc != AW_OK) fail_turn(te, rc, "too_many_tool_rounds", "the turn asked for too many rounds of tool calls");
}

static void on_begun(void *opaque, int err, int fresh, long missing, int published, long round) {
  wkt_ev *te = opaque;
  te->round = round;
  wk_event *ev = te->ev;
  te->busy = 0;
  if (te->abandon) {
    wk_ev_abandon(ev);
    return;
  }
  if (err == AW_ETOOBIG) {
    over_cap(te);
    return;
  }
  if (err) {
    ev->w->st.redis_errors++;
    wks_retry_later(ev);
    return;
  }
  park(te);
  log_ctx c = te_ctx(te);
  if (!fresh) log_info(&c, "tool round was recorded before; %s", published ? "waiting for its replies" : "publishing its requests again");
  if (!fresh && published) {
    te->stage = S_WAIT;
    if (missing == 0) collect(te);
    return;
  }
  te->stage = S_PUBLISH;
  publish(te);
}

static void begin_round(wkt_ev *te) {
  wk_event *ev = te->ev;
  wkt *T = ev->w->tools;
  te->stage = S_BEGIN;
  tstate_call *tc = calloc(te->ncalls, sizeof *tc);
  if (!tc) {
    wks_retry_later(ev);
    return;
  }
  for (size_t i = 0; i < te->ncalls; i++) {
    const wkt_call *c = &te->calls[i];
    tc[i].id = c->id;
    tc[i].name = c->name;
    tc[i].deadline_ms = c->deadline_ms;
    tc[i].cancel_on_deadline = c->route && c->route->r.cancel_on_deadline;
    tc[i].timeout_output = c->timeout_output;
    tc[i].preset_kind = c->preset_kind;
    tc[i].preset_output = c->preset_output;
    tc[i].corr_digest = c->preset_kind ? NULL : c->digest;
  }
  int rc = tstate_round_begin(&T->ts, ev->conv_ref, ev->turn_token, ev->event_id, T->owner, tc, te->ncalls, on_begun, te);
  free(tc);
  if (rc != AW_OK) {
    ev->w->st.redis_errors++;
    wks_retry_later(ev);
    return;
  }
  te->busy = 1;
}

/* ---- PUBLISH ---------------------------------------------------------------- */

static void published(wkt_ev *te) {
  wk_event *ev = te->ev;
  wkt *T = ev->w->tools;
  size_t n = 0;
  for (size_t i = 0; i < te->ncalls; i++) n += !te->calls[i].preset_kind;
  tstate_set_published(&T->ts, ev->conv_ref, ev->turn_token);
  log_ctx c = te_ctx(te);
  char count[24];
  snprintf(count, sizeof count, "%zu", n);
  const char *kv[] = {"count", count};
  if (n) log_writekv(LOG_INFO, &c, "tool requests published", kv, 1);
  else log_info(&c, "every tool call of the round was answered without a service");
  te->stage = S_WAIT;
  te->next_check_ms = wk_now_ms() + SAFETY_POLL_MS;
  te->next_deadline_ms = -1;
  for (size_t i = 0; i < te->ncalls; i++)
    if (!te->calls[i].preset_kind && (te->next_deadline_ms < 0 || te->calls[i].deadline_ms < te->next_deadline_ms))
      te->next_deadline_ms = te->calls[i].deadline_ms;
  /* Every call answered at once (no service needed), or the last reply
   * was recorded while the requests' reports were still coming: go on. */
  if (n == 0 || te->woken) collect(te);
}

static int publish_one(wkt_ev *te, wkt_call *c) {
  wk_event *ev = te->ev;
  ctool_request r = {0};
  r.correlation_id = c->corr;
  r.conversation_id = ev->conv_id;
  /* v1's thread_id / run_id on the Assistants backend; our ids on all. */
  int assistants = ev->h_kind && strcmp(ev->h_kind, "assistants") == 0;
  r.thread_id = assistants && ev->h_conv[0] ? ev->h_conv : NULL;
  r.run_id = assistants && ev->h_turn[0] ? ev->h_turn : NULL;
  r.event_id = ev->event_id;
  r.round = te->round;
  r.tool_call_id = c->id;
  r.name = c->name;
  r.arguments_json = c->args;
  r.arguments_json_len = strlen(c->args);
  r.deadline_ms = c->deadline_ms;
  r.reply_topic = c->route->r.reply_topic;
  buf b;
  buf_init(&b, CTOOL_DEFAULT_MAX_REQUEST);
  int rc = ctool_request_encode(&r, &b);
  if (rc == AW_OK) {
    /* W3C trace context: the trace is the event's (a digest of its id),
     * the span this request's. */
    char trace[CORR_DIGEST_SIZE], tp[64];
    unsigned char span[8];
    if (corr_digest(ev->event_id, trace) != AW_OK || getrandom(span, sizeof span, 0) != (ssize_t)sizeof span)
      memset(span, 0x5a, sizeof span);
    int k = snprintf(tp, sizeof tp, "00-%.32s-", trace);
    for (size_t i = 0; i < sizeof span; i++) k += snprintf(tp + k, sizeof tp - (size_t)k, "%02x", span[i]);
    snprintf(tp + k, sizeof tp - (size_t)k, "-01");
    /* Signed (tool_sign.h) over what the service will decode: the encoded
     * bytes, at the time of this publication (a request published again is
     * signed again, so its timestamp stays fresh). */
    char sig[TSIG_HEADER_SIZE], sts[TSIG_TS_SIZE];
    rc = tsig_request_sign_encoded(ev->w->cfg.tool_request_key, b.data, b.len, wk_now_ms(), sig, sts);
    const char *hdr[] = {"traceparent", tp, TSIG_HEADER, sig, TSIG_TS_HEADER, sts};
    if (rc == AW_OK)
      rc = wko_produce(ev, c->route->r.topic, DR_TOOL_REQUEST, ev->conv_id, strlen(ev->conv_id), b.data, b.len, hdr, 3);
  }
  buf_free(&b);
  return rc;
}

static void publish(wkt_ev *te) {
  wk_event *ev = te->ev;
  int failed = 0;
  for (size_t i = 0; i < te->ncalls; i++) {
    wkt_call *c = &te->calls[i];
    if (c->preset_kind || c->published || c->publishing) continue;
    /* The DR names the event, not the call: calls are published in order
     * and reported in order per topic, but topics differ, so count. */
    if (publish_one(te, c) == AW_OK) {
      c->publishing = 1;
      te->pending_dr++;
      ev->w->tools->requests++;
    } else {
      failed = 1;
    }
  }
  if (failed && te->pending_dr == 0) {
    ev->w->st.kafka_errors++;
    wks_retry_later(ev);
    return;
  }
  if (te->pending_dr == 0) published(te);
}

void wkt_on_request_dr(wk_event *ev, rd_kafka_resp_err_t err) {
  wkt_ev *te = ev->tools;
  if (!te) return;
  te->pending_dr--;
  /* Which call?  The first one publishing: a failure makes every call
   * still publishing go again, which only duplicates a request that the
   * service answers twice (the second reply is already_answered). */
  if (err) {
    ev->w->st.kafka_errors++;
    log_ctx c = te_ctx(te);
    log_warn(&c, "tool request not delivered: %s", rd_kafka_err2str(err));
    for (size_t i = 0; i < te->ncalls; i++) te->calls[i].publishing = 0;
  }
  if (te->pending_dr > 0) return;
  if (te->abandon) {
    wk_ev_abandon(ev);
    return;
  }
  int all = 1;
  for (size_t i = 0; i < te->ncalls; i++) {
    wkt_call *c = &te->calls[i];
    if (c->publishing) {
      c->publishing = 0;
      c->published = 1;
    }
    if (!c->preset_kind && !c->published) all = 0;
  }
  if (all) published(te);
  else wks_retry_later(ev);
}

/* ---- WAIT: wake-ups, deadlines, safety poll ------------------------------------ */

static void wake(wk *w, const char *turn) {
  wkt *T = w->tools;
  wkt_ev *te = NULL;
  HASH_FIND_STR(T->waiting, turn, te);
  if (te && te->stage == S_WAIT && !te->busy) collect(te);
  else if (te) te->woken = 1; /* still publishing or collecting: look again when idle */
}

void wkt_complete_local(void *opaque, const char *conv, const char *turn) {
  (void)conv;
  wake(opaque, turn);
}

static void on_wakes(void *opaque, int err, const char *const *items, size_t n) {
  wk *w = opaque;
  if (!w->tools) return;
  w->tools->wakes_pending = 0;
  if (err) return;
  for (size_t i = 0; i < n; i++) {
    char turn[CORR_DIGEST_SIZE];
    /* "<turn> <conv>"; anything else is not ours: skipped. */
    if (tstate_parse_wake(items[i], strlen(items[i]), turn, sizeof turn) == AW_OK) wake(w, turn);
  }
}

/* Follow the turn from the backend instead of submitting: the backend's
 * recovery reports how it ended, or brings it back here with its calls. */
static void recover_turn(wkt_ev *te, const char *why) {
  wk_event *ev = te->ev;
  unpark(te);
  te->stage = S_SUBMIT;
  wk_ev_set_state(ev, ST_TURN);
  log_ctx c = te_ctx(te);
  log_warn(&c, "%s; recovering the turn", why);
  ev->recover = 1;
  be_turn_input in;
  wk_turn_input(ev, &in);
  int rc = be_turn_start(ev->w->be, &in, &wk_turn_events, ev, &ev->op);
  if (rc != AW_OK) fail_turn(te, rc, "api_error", "could not follow the turn");
}

/* The backend's expiry of the waiting turn passed before the round
 * completed (a deadline longer than the turn may wait): recover the turn,
 * which reports how it ended (expired). */
static void expired(wkt_ev *te) {
  te->expiry_checked = 1;
  recover_turn(te, "the turn's expiry passed while waiting for tool replies");
}

/* A conversation request `cancel` (worker/event/cancel.h) ends the waiting
 * turn as a deadline with cancel_run does; the answer's code is the
 * cancel's (wk_turn_done).  The round's tool state is finished with the
 * turn (wkt_annotate): replies that come later are dead-lettered as for
 * any finished turn. */
static void cancel_requested(wkt_ev *te) {
  wk_event *ev = te->ev;
  te->cancel_asked = 0;
  unpark(te);
  te->stage = S_CANCEL;
  wk_ev_set_state(ev, ST_TURN);
  log_ctx lc = te_ctx(te);
  log_info(&lc, "cancelling the turn waiting for tool replies (cancel %s)", ev->cancel_by[0] ? ev->cancel_by : "");
  ev->cancel_sent = 1;
  be_turn_input in;
  wk_turn_input(ev, &in);
  int rc = be_turn_cancel(ev->w->be, &in, &wk_turn_events, ev, &ev->op);
  if (rc != AW_OK) fail_turn(te, rc, "api_error", "could not cancel the turn");
}

int wkt_cancel(wk_event *ev, const char *reason) {
  wkt_ev *te = ev->tools;
  if (!te || ev->state != ST_TOOLS) return 0;
  log_ctx lc = te_ctx(te);
  log_debug(&lc, "cancel asked by %s", reason ? reason : "(unknown)");
  if (te->stage == S_WAIT && !te->busy && !te->pending_dr && !te->abandon) {
    cancel_requested(te);
    return 1;
  }
  /* A step of the phase is out (recording the round, publishing its
   * requests, collecting): cancelled once it is back and the turn idles in
   * WAIT (on_tick), or instead of submitting (on_collected). */
  te->cancel_asked = 1;
  return 1;
}

static void on_tick(uv_timer_t *h) {
  wk *w = h->data;
  wkt *T = w->tools;
  if (!T->waiting) {
    uv_timer_stop(h);
    return;
  }
  if (!T->wakes_pending && tstate_take_wakes(&T->ts, T->owner, on_wakes, w) == AW_OK) T->wakes_pending = 1;
  int64_t now = wk_now_ms();
  wkt_ev *te, *tmp;
  HASH_ITER(hh, T->waiting, te, tmp) {
    if (te->stage != S_WAIT || te->busy) continue;
    if (wki_stale(te->ev)) {
      /* Revoked: the partition's new owner picks the run up. */
      wk_ev_abandon(te->ev);
      continue;
    }
    if (te->cancel_asked) {
      cancel_requested(te);
      continue;
    }
    if (te->expires_at_ms > 0 && !te->expiry_checked && now >= te->expires_at_ms + EXPIRY_GRACE_MS) {
      expired(te);
      continue;
    }
    if (now >= te->next_check_ms || (te->next_deadline_ms >= 0 && now >= te->next_deadline_ms)) collect(te);
  }
}

static void tick_start(wk *w) {
  if (!uv_is_active((uv_handle_t *)&w->tools->tick)) uv_timer_start(&w->tools->tick, on_tick, TICK_MS, TICK_MS);
}

/* ---- COLLECT, SUBMIT, CANCEL ------------------------------------------------------ */

static void keep_outcomes(wkt_ev *te, const tstate_collected *c) {
  size_t n = c->ncalls < MAX_OUTCOMES ? c->ncalls : MAX_OUTCOMES;
  wkt_outcome *o = n ? calloc(n, sizeof *o) : NULL;
  if (n && !o) return; /* the response then lists no tool calls */
  for (size_t i = 0; i < c->ncalls; i++)
    if (c->calls[i].round > te->rounds_seen) te->rounds_seen = c->calls[i].round;
  for (size_t i = 0; i < n; i++) {
    wk_copy_id(o[i].id, sizeof o[i].id, c->calls[i].id);
    wk_copy_id(o[i].name, sizeof o[i].name, c->calls[i].name);
    wk_copy_id(o[i].kind, sizeof o[i].kind, c->calls[i].kind[0] ? c->calls[i].kind : "timeout");
  }
  free(te->outcomes);
  te->outcomes = o;
  te->noutcomes = n;
}


static void submit(wkt_ev *te, const tstate_collected *c) {
  wk_event *ev = te->ev;
  size_t n = 0;
  for (size_t i = 0; i < c->ncalls; i++) n += c->calls[i].round == c->round;
  be_tool_output *outs = n ? calloc(n, sizeof *outs) : NULL;
  if (!outs) {
    fail_turn(te, AW_ENOMEM, "internal_error", "no tool outputs to submit");
    return;
  }
  size_t k = 0;
  for (size_t i = 0; i < c->ncalls; i++) {
    if (c->calls[i].round != c->round) continue;
    outs[k].tool_call_id = c->calls[i].id;
    outs[k].output = c->calls[i].output;
    k++;
  }
  unpark(te);
  te->stage = S_SUBMIT;
  wk_ev_set_state(ev, ST_TURN);
  log_ctx lc = te_ctx(te);
  char count[24], ms[24];
  snprintf(count, sizeof count, "%zu", n);
  snprintf(ms, sizeof ms, "%" PRId64, wk_now_ms() - te->began_ms);
  const char *kv[] = {"count", count, "round_ms", ms};
  log_writekv(LOG_INFO, &lc, "tool outputs submitted", kv, 2);
  if (ev->w->cfg.observe)
    ev->w->cfg.observe(ev->w->cfg.observe_opaque, WK_OBS_TOOL_ROUND_SECONDS, (double)(wk_now_ms() - te->began_ms) / 1000.0);
  be_turn_input in;
  wk_turn_input(ev, &in);
  int rc = be_turn_continue(ev->w->be, &in, c->round, outs, n, &wk_turn_events, ev, &ev->op);
  free(outs);
  if (rc != AW_OK) fail_turn(te, rc, "api_error", "could not submit the tool outputs");
}

static void on_collected(void *opaque, int err, const tstate_collected *c) {
  wkt_ev *te = opaque;
  wk_event *ev = te->ev;
  wkt *T = ev->w->tools;
  te->busy = 0;
  if (te->abandon) {
    wk_ev_abandon(ev);
    return;
  }
  int64_t now = wk_now_ms();
  if (err) {
    ev->w->st.redis_errors++;
    te->stage = S_WAIT;
    te->next_check_ms = now + REDIS_RETRY_MS;
    return;
  }
  if (c->gone) {
    fail_turn(te, AW_ESTATE, "tool_state_lost", "the run's tool-call state is gone from Redis (expired?)");
    return;
  }
  if (wki_stale(ev)) {
    /* Revoked while the look was out: the partition's new owner submits. */
    wk_ev_abandon(ev);
    return;
  }
  if (c->held_until_ms > 0) {
    /* Another attempt at this event (a worker that has not yet noticed it
     * lost the partition, or one that died right after claiming) is
     * submitting the round: look again once its lease has passed. */
    log_ctx lc = te_ctx(te);
    log_info(&lc, "another attempt is submitting this round; waiting for its claim to lapse");
    te->stage = S_WAIT;
    te->next_check_ms = c->held_until_ms + 1;
    te->next_deadline_ms = -1;
    return;
  }
  if (te->cancel_asked) {
    /* Cancelled while this look was out: no submission. */
    if (c->ready) keep_outcomes(te, c);
    cancel_requested(te);
    return;
  }
  if (!c->ready) {
    te->stage = S_WAIT;
    te->next_deadline_ms = c->next_deadline_ms;
    te->next_check_ms = now + SAFETY_POLL_MS;
    if (te->woken) collect(te); /* the last reply came while this look was out */
    return;
  }
  if (c->taken_over) {
    recover_turn(te, "another attempt's claim on this round lapsed and it may have submitted");
    return;
  }
  keep_outcomes(te, c);
  for (size_t i = 0; i < c->ncalls; i++)
    if (c->calls[i].round == c->round && !strcmp(c->calls[i].kind, "timeout")) T->timeouts++;
  if (c->cancel) {
    wk_copy_id(te->cancel_fn, sizeof te->cancel_fn, c->cancel);
    unpark(te);
    te->stage = S_CANCEL;
    wk_ev_set_state(ev, ST_TURN);
    log_ctx lc = te_ctx(te);
    log_warn(&lc, "no reply from %s by its deadline; cancelling the run", te->cancel_fn);
    be_turn_input in;
    wk_turn_input(ev, &in);
    int rc = be_turn_cancel(ev->w->be, &in, &wk_turn_events, ev, &ev->op);
    if (rc != AW_OK) fail_turn(te, rc, "api_error", "could not cancel the turn");
    return;
  }
  submit(te, c);
}

static void collect(wkt_ev *te) {
  wk_event *ev = te->ev;
  wkt *T = ev->w->tools;
  te->stage = S_COLLECT;
  te->woken = 0;
  if (!te->claim[0]) snprintf(te->claim, sizeof te->claim, "%s.%lu", T->owner, ++T->attempts);
  if (tstate_collect(&T->ts, ev->conv_ref, ev->turn_token, te->claim, wk_now_ms(), on_collected, te) != AW_OK) {
    ev->w->st.redis_errors++;
    te->stage = S_WAIT;
    te->next_check_ms = wk_now_ms() + REDIS_RETRY_MS;
    return;
  }
  te->busy = 1;
}

void wkt_retry(wk_event *ev) {
  wkt_ev *te = ev->tools;
  if (!te) return;
  if (te->abandon || ev->w->tools->stopping) {
    wk_ev_abandon(ev);
    return;
  }
  if (te->stage == S_BEGIN) begin_round(te);
  else if (te->stage == S_PUBLISH) publish(te);
}

/* ---- a turn recovered by another attempt ------------------------------------------- */

typedef struct prefetch {
  wk_event *ev;
  void (*then)(wk_event *ev);
} prefetch;

static void on_listed(void *opaque, int err, const tstate_output *calls, size_t n) {
  prefetch *pf = opaque;
  wk_event *ev = pf->ev;
  void (*then)(wk_event *) = pf->then;
  free(pf);
  if (err) {
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "cannot read the run's earlier tool calls; the response may not list them");
  } else if (n) {
    wkt_ev *te = ev->tools;
    if (!te && (te = calloc(1, sizeof *te)) != NULL) {
      te->ev = ev;
      wk_copy_id(te->turn, sizeof te->turn, ev->turn_token);
      ev->tools = te;
    }
    if (te) {
      tstate_collected c = {0};
      c.calls = calls;
      c.ncalls = n;
      keep_outcomes(te, &c);
    }
  }
  then(ev);
}

void wkt_prefetch(wk_event *ev, void (*then)(wk_event *ev)) {
  wkt *T = ev->w->tools;
  prefetch *pf = T && !ev->tools ? malloc(sizeof *pf) : NULL;
  if (!pf) {
    then(ev);
    return;
  }
  pf->ev = ev;
  pf->then = then;
  if (tstate_list(&T->ts, ev->conv_ref, ev->turn_token, on_listed, pf) != AW_OK) {
    free(pf);
    then(ev);
  }
}

/* ---- the end --------------------------------------------------------------------- */

long wkt_rounds(const wk_event *ev) {
  const wkt_ev *te = ev->tools;
  if (!te) return 0;
  return te->round > te->rounds_seen ? te->round : te->rounds_seen;
}

void wkt_annotate(wk_event *ev, contract_response *r) {
  wkt_ev *te = ev->tools;
  if (!te) return;
  tstate_finish(&ev->w->tools->ts, ev->conv_ref, ev->turn_token);
  if (te->noutcomes) {
    free(te->view);
    te->view = calloc(te->noutcomes, sizeof *te->view);
    if (te->view) {
      for (size_t i = 0; i < te->noutcomes; i++)
        te->view[i] = (contract_tool_call){te->outcomes[i].id, te->outcomes[i].name, te->outcomes[i].kind};
      r->tool_calls = te->view;
      r->ntool_calls = te->noutcomes;
    }
  }
  if (te->over_cap) {
    /* Whatever the cancellation ended in, the answer is this error. */
    static char cap_msg[160];
    snprintf(cap_msg, sizeof cap_msg,
             "the turn asked for more than %ld rounds of tool calls (worker.max_tool_rounds); it was cancelled",
             ev->w->tools->ts.max_rounds);
    r->status = "failed";
    r->error_code = "too_many_tool_rounds";
    r->error_message = cap_msg;
    return;
  }
  if (te->cancel_fn[0] && r->status && strcmp(r->status, "cancelled") == 0) {
    static char msg[256];
    snprintf(msg, sizeof msg, "no reply from %s by its deadline; the run was cancelled", te->cancel_fn);
    r->error_code = "tool_timeout";
    r->error_message = msg;
  }
}

void wkt_on_reply_dlq_dr(wk *w, void *msg_opaque, rd_kafka_resp_err_t err) {
  if (w->tools && w->tools->nreplies) trep_on_dr(w->tools->replies[0], msg_opaque, err); /* the message knows its trep */
}

void wkt_shutdown(wk *w) {
  wkt *T = w->tools;
  if (!T || T->stopping) return;
  T->stopping = 1;
  for (size_t i = 0; i < T->nreplies; i++) trep_stop(T->replies[i]);
  /* Waiting runs are checkpointed, not waited for: their state is in Redis
   * and the event's offset stays uncommitted, so the next owner resumes. */
  wkt_ev *te, *tmp;
  HASH_ITER(hh, T->waiting, te, tmp) {
    if (te->busy || te->pending_dr) te->abandon = 1;
    else if (te->stage == S_WAIT) wk_ev_abandon(te->ev);
  }
}

void wkt_stats(const wk *w, wk_stats *st) {
  const wkt *T = w->tools;
  if (!T) return;
  st->tool_requests = T->requests;
  st->tool_rounds = T->rounds;
  st->tool_timeouts = T->timeouts;
  st->tool_round_cap = T->round_caps;
  st->tool_waiting = (long)HASH_COUNT(T->waiting);
  st->tool_replies = st->tool_replies_dlq = 0;
  st->tool_replies_unsigned = st->tool_replies_bad_signature = st->tool_replies_wrong_topic = 0;
  for (size_t i = 0; i < T->nreplies; i++) {
    trep_stats rs;
    trep_get_stats(T->replies[i], &rs);
    st->tool_replies += rs.recorded;
    st->tool_replies_dlq += rs.dlq;
    st->tool_replies_unsigned += rs.unsigned_replies;
    st->tool_replies_bad_signature += rs.bad_signatures;
    st->tool_replies_wrong_topic += rs.wrong_topic;
  }
}

/* asst_manage.c -- conversation management on the Assistants API
 * (be_conv_history / be_conv_append / be_conv_delete): a thread's messages
 * paged, messages added without a run, the thread deleted.
 *
 * Why one op with its own small machine rather than reusing turn_op: none of
 * these runs anything (no stream, no run, no tool calls), and turn_op's ~3 KiB
 * of run state would be dead weight; what they share with a turn (the thread
 * create + claim race, the "look before you post again" rule, the message
 * mapping of api_json.c) is reused, not copied.  One transition function,
 * manage_phase(), moves and logs the op:
 *
 *   history: (no thread | cursor not an id: DEFER) | LIST
 *            LIST --(400/404 with a cursor)--> CHECK_CURSOR (GET the cursor's
 *            message: 404 -> message_not_found; else the list's error stands)
 *   append:  [THREAD -> CLAIM (-> DELETE_LOSER)] -> (recover ? LOOKUP) ->
 *            POST per message, in order
 *            POST --(AW_EAMBIGUOUS)--> LOOKUP (LOOKUP_WAIT backoff, at most
 *            ASST_LOOKUPS_MAX) --found--> next message | --absent--> POST again
 *            (at most ASST_POSTS_MAX per message)
 *   delete:  (no thread: DEFER) | DELETE (404 counts as deleted)
 *
 * Exactly once for append.  The API has no idempotency key; each message
 * carries metadata aw_event_id (our event) and aw_index (its place in the
 * request), so an attempt that may have posted (an ambiguous outcome, or a
 * re-delivered event: in->recover) lists the thread's newest messages and
 * skips those already there.  One page of 100 is enough: events of one
 * conversation are processed in order, so nothing newer than this event's
 * (at most CONTRACT_APPEND_MAX_MESSAGES) messages can be in the thread.  The
 * window left open: a server that lists a message later than the lookups
 * wait (retry_base_ms doubling, ASST_LOOKUPS_MAX times) after an ambiguous
 * POST gets it twice.
 *
 * The checkpoint an append emits, "a1m <thread>", names the thread it writes
 * to, once known (before the first POST).  It is informational: the handle
 * the store holds is the truth, and a thread is only written to after it was
 * claimed there.
 *
 * An unknown cursor: the spec does not say what the list answers; the
 * simulator answers 400 invalid_value, other servers 404.  Rather than
 * guessing from error texts, a failed list with a cursor retrieves the
 * cursor's message: a 404 there means the cursor is unknown.
 *
 * Memory per op: ~2 KiB of fixed fields, the append's request bodies (bounded
 * by the contract's limits), the collected messages in one api_json_answer
 * arena bounded by max_answer_bytes (a history page beyond it fails
 * answer_too_large: ask for a smaller limit), and the one call in flight.
 *
 * @locality the loop thread only.
 */
#include "asst_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be_errors.h"
#include "log.h"

enum { MG_HISTORY = 1, MG_APPEND, MG_DELETE };

typedef enum {
  M_DEFER = 1, M_LIST, M_CHECK_CURSOR, M_THREAD, M_CLAIM, M_DELETE_LOSER, M_LOOKUP, M_LOOKUP_WAIT,
  M_POST, M_DELETE, M_DONE
} manage_phase_t;

#define LOOKUP_LIMIT 100

typedef struct manage_timer {
  uv_timer_t t;
  struct manage_op *op;
  void (*fire)(struct manage_op *);
} manage_timer;

typedef struct manage_op {
  op_base b;
  be_asst *be;
  be_conv_events ev;
  void *opaque;
  int what;               /* MG_* */
  int phase;
  char *conversation_id;
  char event_id[132];     /* 1..128 bytes (contract.h) */
  char thread[API_JSON_ID_MAX];
  char created_thread[API_JSON_ID_MAX]; /* ours, while claiming */
  /* history */
  long limit;
  int order_asc;
  int before;             /* the cursor is `before`, else `after` */
  char cursor[API_JSON_ID_MAX];
  int cursor_unknown;     /* not even an id: cannot be in the thread */
  int has_more;
  char first_id[API_JSON_ID_MAX], last_id[API_JSON_ID_MAX];
  /* append */
  char *bodies[CONTRACT_APPEND_MAX_MESSAGES]; /* POST bodies (cJSON_free) */
  const char *roles[CONTRACT_APPEND_MAX_MESSAGES]; /* static strings */
  cJSON *found[CONTRACT_APPEND_MAX_MESSAGES];  /* listed: already in the thread */
  size_t n, next;         /* messages; the first not yet settled */
  int recover, fresh_thread, ambiguous, lookups, posts;
  /* result */
  api_json_answer ans;    /* history: the page; append: the messages added */
  manage_timer *timer;
  int err, http_status;
  char error_code[64];
  char errmsg[512];
  char checkpoint[BE_CHECKPOINT_MAX];
} manage_op;

/* ---- the op: phases, errors, the end ------------------------------------------------ */

static const char *phase_name(int p) {
  static const char *names[] = {"?", "deferred", "listing_messages", "checking_cursor",
                                "creating_thread", "claiming_thread", "deleting_lost_thread",
                                "looking_up_messages", "lookup_wait", "posting_message",
                                "deleting_thread", "done"};
  return p >= 1 && p <= M_DONE ? names[p] : "?";
}

static const char *what_name(int w) {
  return w == MG_HISTORY ? "history" : w == MG_APPEND ? "append" : "delete";
}

static void manage_phase(manage_op *op, int phase) {
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = {.event_id = asst_nz(op->event_id), .conversation_id = asst_nz(op->conversation_id),
                   .thread_id = asst_nz(op->thread)};
    log_debug(&ctx, "conversation %s %s -> %s", what_name(op->what), phase_name(op->phase),
              phase_name(phase));
  }
  op->phase = phase;
}

static void on_timer_closed(uv_handle_t *h) { free(h); }

static void manage_free(manage_op *op) {
  if (op->b.call) api_call_cancel(op->b.call);
  if (op->timer) {
    op->timer->op = NULL;
    uv_timer_stop(&op->timer->t);
    uv_close((uv_handle_t *)&op->timer->t, on_timer_closed);
  }
  for (size_t i = 0; i < CONTRACT_APPEND_MAX_MESSAGES; i++) {
    cJSON_free(op->bodies[i]);
    cJSON_Delete(op->found[i]);
  }
  api_json_answer_free(&op->ans);
  free(op->conversation_id);
  free(op);
}

void asst_manage_free(op_base *b) { manage_free((manage_op *)b); }

static void seterr(manage_op *op, int err, int status, const char *code, const char *fmt, ...)
    AW_PRINTF(5, 6);
static void seterr(manage_op *op, int err, int status, const char *code, const char *fmt, ...) {
  op->err = err;
  op->http_status = status;
  asst_copy(op->error_code, sizeof op->error_code, code);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(op->errmsg, sizeof op->errmsg, fmt, ap);
  va_end(ap);
}

/* Report the outcome (exactly once) and free the op. */
static void finish(manage_op *op) {
  manage_phase(op, M_DONE);
  be_conv_result res;
  memset(&res, 0, sizeof res);
  if (!op->err && api_json_answer_build(&op->ans, &res.messages, &res.nmessages) != AW_OK)
    seterr(op, AW_ENOMEM, 0, NULL, "out of memory building the messages");
  res.http_status = op->http_status;
  res.handle = asst_nz(op->thread);
  if (op->err) {
    res.err = op->err;
    res.error_code = asst_nz(op->error_code) ? op->error_code : be_error_code(op->err);
    res.errmsg = op->errmsg;
    res.messages = NULL;
    res.nmessages = 0;
  } else {
    res.errmsg = "";
    res.has_more = op->has_more;
    res.first_id = asst_nz(op->first_id);
    res.last_id = asst_nz(op->last_id);
  }
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = {.event_id = asst_nz(op->event_id), .conversation_id = asst_nz(op->conversation_id),
                   .thread_id = asst_nz(op->thread)};
    log_debug(&ctx, "conversation %s done: %s (%zu messages)", what_name(op->what),
              op->err ? aw_strerror(op->err) : "ok", res.nmessages);
  }
  /* Last callback: the op goes whatever it does (be_op_cancel inside it
   * only marks it, in_cb). */
  op->b.in_cb++;
  op->ev.on_done(op->opaque, &res);
  manage_free(op);
}

static void fail_api(manage_op *op, const api_result *r) {
  seterr(op, r->err, r->http_status, r->error_code, "%s", r->errmsg);
  finish(op);
}

static void fail_start(manage_op *op, int rc, const char *what) {
  seterr(op, rc, 0, NULL, "%s could not start: %s", what, aw_strerror(rc));
  finish(op);
}

static void on_timer(uv_timer_t *h) {
  manage_timer *mt = (manage_timer *)h;
  if (mt->op) mt->fire(mt->op);
}

/* Run fn on the op after delay_ms (0: the next loop iteration).  Returns
 * what failed (no callback then). */
static int defer(manage_op *op, long delay_ms, void (*fn)(manage_op *)) {
  if (!op->timer) {
    op->timer = calloc(1, sizeof *op->timer);
    if (!op->timer) return AW_ENOMEM;
    if (uv_timer_init(op->be->loop, &op->timer->t) != 0) {
      free(op->timer);
      op->timer = NULL;
      return AW_ENOMEM;
    }
    op->timer->op = op;
  }
  op->timer->fire = fn;
  return uv_timer_start(&op->timer->t, on_timer, (uint64_t)(delay_ms > 0 ? delay_ms : 0), 0) ? AW_EIO
                                                                                             : AW_OK;
}

static manage_op *manage_new(be_asst *be, int what, const be_conv_input *in, const be_conv_events *ev,
                             void *opaque) {
  manage_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->b.head.be = &be->base;
  op->b.kind = OP_MANAGE;
  op->be = be;
  op->ev = *ev;
  op->opaque = opaque;
  op->what = what;
  api_json_answer_init(&op->ans, be->max_answer_bytes);
  asst_copy(op->event_id, sizeof op->event_id, in->event_id);
  if (in->handle && in->handle[0]) asst_copy(op->thread, sizeof op->thread, in->handle);
  if (!(op->conversation_id = strdup(in->conversation_id ? in->conversation_id : ""))) {
    manage_free(op);
    return NULL;
  }
  return op;
}

/* Start the op's first step: rc is what failed before any I/O. */
static int started(manage_op *op, int rc, be_op **out) {
  if (rc) {
    manage_free(op);
    return rc;
  }
  *out = (be_op *)op;
  return AW_OK;
}

static int handle_ok(const char *h) { return !h || !h[0] || asst_id_ok(h); }

/* ---- history ------------------------------------------------------------------------- */

static void on_list(void *opaque, const api_result *r);
static void on_cursor_checked(void *opaque, const api_result *r);

static void history_deferred(manage_op *op) {
  if (op->cursor_unknown)
    seterr(op, AW_EINVAL, 0, "message_not_found",
           "history: the %s cursor is not a message id of conversation %s",
           op->before ? "before" : "after", op->conversation_id);
  finish(op); /* else no thread yet: an empty page */
}

static int history_list(manage_op *op) {
  char p[512];
  snprintf(p, sizeof p, "/threads/%s/messages?limit=%ld&order=%s", op->thread, op->limit,
           op->order_asc ? "asc" : "desc");
  if (op->cursor[0]) {
    size_t l = strlen(p);
    snprintf(p + l, sizeof p - l, "&%s=%s", op->before ? "before" : "after", op->cursor);
  }
  manage_phase(op, M_LIST);
  int rc = api_request(op->be->api, "GET", p, NULL, 1, on_list, op, &op->b.call);
  if (rc) op->b.call = NULL;
  return rc;
}

/* first_id / last_id of a list: the API's, else the page's own ends. */
static void page_cursor(char out[API_JSON_ID_MAX], const cJSON *list, const char *key,
                        const cJSON *end) {
  const char *v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(list, key));
  if (!asst_id_ok(v)) v = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(end, "id"));
  asst_copy(out, API_JSON_ID_MAX, asst_id_ok(v) ? v : NULL);
}

static void on_list(void *opaque, const api_result *r) {
  manage_op *op = opaque;
  op->b.call = NULL;
  if (r->err) {
    if (op->cursor[0] && (r->http_status == 400 || r->http_status == 404)) {
      /* Is it the cursor?  Ask for it; the list's error stands otherwise. */
      seterr(op, r->err, r->http_status, r->error_code, "%s", r->errmsg);
      char p[256];
      snprintf(p, sizeof p, "/threads/%s/messages/%s", op->thread, op->cursor);
      manage_phase(op, M_CHECK_CURSOR);
      int rc = api_request(op->be->api, "GET", p, NULL, 1, on_cursor_checked, op, &op->b.call);
      if (rc) {
        op->b.call = NULL;
        finish(op);
      }
      return;
    }
    fail_api(op, r);
    return;
  }
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->json, "data"), *m;
  if (!cJSON_IsArray(data)) {
    seterr(op, AW_EPARSE, r->http_status, NULL, "GET %s/threads/%s/messages: not a list",
           api_client_base_path(op->be->api), op->thread);
    finish(op);
    return;
  }
  cJSON_ArrayForEach(m, data) {
    int rc = api_json_answer_add_listed(&op->ans, m);
    if (rc == AW_ETOOBIG || rc == AW_ENOMEM) {
      seterr(op, rc, r->http_status, NULL,
             "history page of %ld messages exceeds max_answer_bytes (%zu): ask for a smaller limit",
             op->limit, op->be->max_answer_bytes);
      finish(op);
      return;
    }
    /* AW_EPARSE: an item that is not a message; left out like a tool call. */
  }
  op->has_more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "has_more"));
  if (cJSON_GetArraySize(data) > 0) {
    page_cursor(op->first_id, r->json, "first_id", cJSON_GetArrayItem(data, 0));
    page_cursor(op->last_id, r->json, "last_id", cJSON_GetArrayItem(data, cJSON_GetArraySize(data) - 1));
  }
  finish(op);
}

static void on_cursor_checked(void *opaque, const api_result *r) {
  manage_op *op = opaque;
  op->b.call = NULL;
  if (r->http_status == 404)
    seterr(op, AW_EINVAL, 404, "message_not_found", "history: no message %s %s in conversation %s",
           op->cursor, op->before ? "(before)" : "(after)", op->conversation_id);
  finish(op); /* else the list's own error */
}

int asst_conv_history(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                      be_op **out) {
  be_asst *be = (be_asst *)bb;
  *out = NULL;
  long limit = in->limit ? in->limit : CONTRACT_HISTORY_LIMIT_DEFAULT;
  const char *after = asst_nz(in->after), *before = asst_nz(in->before);
  if (limit < 1 || limit > CONTRACT_HISTORY_LIMIT_MAX || (after && before) || !handle_ok(in->handle))
    return AW_EINVAL;
  manage_op *op = manage_new(be, MG_HISTORY, in, ev, opaque);
  if (!op) return AW_ENOMEM;
  op->limit = limit;
  op->order_asc = in->order_asc;
  op->before = before != NULL;
  const char *cur = before ? before : after;
  /* Not an id at all: no message of any thread has it (and it must not
   * reach a query string, nor an error message: it is not echoed). */
  if (cur && asst_id_ok(cur)) asst_copy(op->cursor, sizeof op->cursor, cur);
  else if (cur) op->cursor_unknown = 1;
  int rc;
  /* No thread: an empty page, whatever the cursor (backend.h). */
  if (!op->thread[0]) op->cursor_unknown = 0;
  if (!op->thread[0] || op->cursor_unknown) {
    manage_phase(op, M_DEFER);
    rc = defer(op, 0, history_deferred);
  } else {
    rc = history_list(op);
  }
  return started(op, rc, out);
}

/* ---- append ------------------------------------------------------------------------- */

static void post_next(manage_op *op);
static void lookup(manage_op *op);

/* The messages already in the thread: one page of the newest (see the top). */
static void on_lookup(void *opaque, const api_result *r) {
  manage_op *op = opaque;
  op->b.call = NULL;
  if (r->err) {
    /* "Unknown" is never "absent": a failed lookup never leads to a POST. */
    if (op->ambiguous) finish(op); /* the ambiguous outcome stands */
    else fail_api(op, r);
    return;
  }
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->json, "data"), *m;
  cJSON_ArrayForEach(m, data) {
    const char *tag = asst_md_get(m, "aw_event_id"), *idx = asst_md_get(m, "aw_index");
    const char *role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "role"));
    if (!tag || strcmp(tag, op->event_id) != 0 || !idx || !role) continue;
    char *end;
    long i = strtol(idx, &end, 10);
    if (*end || end == idx || i < 0 || (size_t)i >= op->n || op->found[i] ||
        strcmp(role, op->roles[i]) != 0)
      continue;
    if (!(op->found[i] = cJSON_Duplicate(m, 1))) {
      seterr(op, AW_ENOMEM, 0, NULL, "out of memory keeping a listed message");
      finish(op);
      return;
    }
  }
  if (op->ambiguous && op->next < op->n && !op->found[op->next]) {
    /* The message may not be listed yet: look again after a backoff, a
     * few times; still absent, it was certainly not created: post again,
     * a bounded number of times; past that the ambiguous outcome stands
     * (a later attempt recovers). */
    if (++op->lookups < ASST_LOOKUPS_MAX) {
      manage_phase(op, M_LOOKUP_WAIT);
      int rc = defer(op, op->be->retry_base_ms << op->lookups, lookup);
      if (rc) fail_start(op, rc, "timer");
      return;
    }
    if (op->posts >= ASST_POSTS_MAX) {
      finish(op); /* op->err: AW_EAMBIGUOUS */
      return;
    }
    log_ctx ctx = {.event_id = op->event_id, .conversation_id = op->conversation_id, .thread_id = op->thread};
    log_info(&ctx, "message %zu of this append absent after an ambiguous failure; posting it again",
             op->next);
  }
  op->ambiguous = 0;
  op->err = op->http_status = 0;
  op->error_code[0] = op->errmsg[0] = '\0';
  post_next(op);
}

static void lookup(manage_op *op) {
  manage_phase(op, M_LOOKUP);
  int rc = api_messages_list(op->be->api, op->thread, NULL, "desc", LOOKUP_LIMIT, NULL, on_lookup, op,
                             &op->b.call);
  if (rc) {
    op->b.call = NULL;
    fail_start(op, rc, "GET messages");
  }
}

static void on_posted(void *opaque, const api_result *r) {
  manage_op *op = opaque;
  op->b.call = NULL;
  if (r->err == AW_EAMBIGUOUS) {
    /* Maybe applied: never post it blindly again. */
    seterr(op, r->err, r->http_status, r->error_code, "%s", r->errmsg);
    op->ambiguous = 1;
    op->lookups = 0;
    lookup(op);
    return;
  }
  if (r->err) {
    fail_api(op, r);
    return;
  }
  int rc = api_json_answer_add_listed(&op->ans, r->json);
  if (rc) {
    seterr(op, rc, r->http_status, NULL, "POST %s/threads/%s/messages: %s",
           api_client_base_path(op->be->api), op->thread,
           rc == AW_EPARSE ? "response is not a message" : aw_strerror(rc));
    finish(op);
    return;
  }
  op->next++;
  op->posts = 0;
  post_next(op);
}

/* Settle the messages in order: the ones found already there are taken as
 * they are, the first missing one is posted. */
static void post_next(manage_op *op) {
  while (op->next < op->n && op->found[op->next]) {
    int rc = api_json_answer_add_listed(&op->ans, op->found[op->next]);
    if (rc) {
      seterr(op, rc, 0, NULL, "keeping listed message %zu: %s", op->next, aw_strerror(rc));
      finish(op);
      return;
    }
    op->next++;
    op->posts = 0;
  }
  if (op->next == op->n) {
    finish(op);
    return;
  }
  op->posts++;
  manage_phase(op, M_POST);
  int rc = api_messages_create(op->be->api, op->thread, op->bodies[op->next], on_posted, op, &op->b.call);
  if (rc) {
    op->b.call = NULL;
    fail_start(op, rc, "POST messages");
  }
}

/* The thread is known: say so (checkpoint), then look or post. */
static void thread_known(manage_op *op) {
  snprintf(op->checkpoint, sizeof op->checkpoint, "a1m %s", op->thread);
  if (op->ev.on_checkpoint) {
    op->b.in_cb++;
    op->ev.on_checkpoint(op->opaque, op->checkpoint);
    op->b.in_cb--;
    if (op->b.cancelled) {
      manage_free(op);
      return;
    }
  }
  if (op->recover && !op->fresh_thread) lookup(op);
  else post_next(op);
}

static void on_loser_deleted(void *opaque, const api_result *r) {
  manage_op *op = opaque;
  op->b.call = NULL;
  if (r->err && r->http_status != 404) {
    log_ctx ctx = {.event_id = op->event_id, .conversation_id = op->conversation_id,
                   .thread_id = op->created_thread};
    log_warn(&ctx, "could not delete the unused thread: %s", r->errmsg);
  }
  op->created_thread[0] = '\0';
  thread_known(op);
}

static void on_claimed(void *opaque, int err, const char *winner) {
  manage_op *op = opaque;
  op->b.in_store = 0;
  if (op->b.cancelled) {
    manage_free(op);
    return;
  }
  if (err || !winner || !asst_id_ok(winner)) {
    /* Ours may or may not be recorded: kept (the store may point at it);
     * a later attempt reads the store again. */
    seterr(op, err ? err : AW_EREDIS, 0, NULL,
           "thread %s for conversation %s could not be recorded in the store: %s", op->created_thread,
           op->conversation_id, err ? aw_strerror(err) : "no winner");
    finish(op);
    return;
  }
  asst_copy(op->thread, sizeof op->thread, winner);
  if (strcmp(winner, op->created_thread) != 0) {
    log_ctx ctx = {.event_id = op->event_id, .conversation_id = op->conversation_id, .thread_id = winner};
    log_info(&ctx, "another worker created the conversation's thread first; using %s, deleting %s",
             winner, op->created_thread);
    manage_phase(op, M_DELETE_LOSER);
    if (api_threads_delete(op->be->api, op->created_thread, on_loser_deleted, op, &op->b.call) != AW_OK) {
      op->b.call = NULL;
      thread_known(op);
    }
    return;
  }
  op->created_thread[0] = '\0';
  op->fresh_thread = 1; /* nothing of this event can be in it */
  thread_known(op);
}

static void on_thread_created(void *opaque, const api_result *r) {
  manage_op *op = opaque;
  op->b.call = NULL;
  if (r->err) {
    fail_api(op, r); /* an ambiguous failure may leave an empty thread: see asst_start.c */
    return;
  }
  const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->json, "id"));
  if (!asst_id_ok(id)) {
    seterr(op, AW_EPARSE, r->http_status, NULL, "POST %s/threads: response has no valid id",
           api_client_base_path(op->be->api));
    finish(op);
    return;
  }
  asst_copy(op->created_thread, sizeof op->created_thread, id);
  manage_phase(op, M_CLAIM);
  const be_store *st = op->be->store;
  op->b.in_store = 1;
  /* The store may call back before claim_handle returns: op is not
   * touched after a successful call. */
  int rc = st->claim_handle(st->self, "thread", op->conversation_id, op->created_thread, on_claimed, op);
  if (rc) {
    op->b.in_store = 0;
    on_claimed(op, rc, NULL);
  }
}

/* The POST body of message i: role, text parts, our tags. */
static char *message_body(const be_conv_input *in, size_t i) {
  const contract_in_message *m = &in->messages[i];
  cJSON *j = cJSON_CreateObject(), *content = NULL, *md = NULL;
  char idx[24];
  snprintf(idx, sizeof idx, "%zu", i);
  int ok = j && cJSON_AddStringToObject(j, "role", m->role) &&
           (content = cJSON_AddArrayToObject(j, "content"));
  for (size_t k = 0; ok && k < m->nparts; k++) {
    cJSON *p = cJSON_CreateObject();
    if (!p || !cJSON_AddItemToArray(content, p)) {
      cJSON_Delete(p);
      ok = 0;
      break;
    }
    /* The contract decoder checked UTF-8: a NUL-terminated copy is exact. */
    ok = cJSON_AddStringToObject(p, "type", "text") && cJSON_AddStringToObject(p, "text", m->parts[k].text);
  }
  ok = ok && (md = cJSON_AddObjectToObject(j, "metadata")) &&
       cJSON_AddStringToObject(md, "aw_event_id", in->event_id) &&
       cJSON_AddStringToObject(md, "aw_index", idx) &&
       cJSON_AddStringToObject(md, "conversation_id", in->conversation_id);
  char *body = NULL;
  if (!ok) {
    cJSON_Delete(j);
    return NULL;
  }
  return asst_print_json(j, &body) == AW_OK ? body : NULL;
}

static int append_input_ok(const be_conv_input *in) {
  if (!in->conversation_id || !in->conversation_id[0] || !in->event_id || !in->event_id[0] ||
      strlen(in->event_id) > 128 || !handle_ok(in->handle) || !in->messages || !in->nmessages ||
      in->nmessages > CONTRACT_APPEND_MAX_MESSAGES)
    return 0;
  for (size_t i = 0; i < in->nmessages; i++) {
    const contract_in_message *m = &in->messages[i];
    if (!m->role || (strcmp(m->role, "user") && strcmp(m->role, "assistant")) || !m->parts || !m->nparts)
      return 0;
    for (size_t k = 0; k < m->nparts; k++)
      if (m->parts[k].type != CONTRACT_PART_TEXT || !m->parts[k].text) return 0;
  }
  return 1;
}

int asst_conv_append(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                     be_op **out) {
  be_asst *be = (be_asst *)bb;
  *out = NULL;
  if (!append_input_ok(in)) return AW_EINVAL;
  manage_op *op = manage_new(be, MG_APPEND, in, ev, opaque);
  if (!op) return AW_ENOMEM;
  op->n = in->nmessages;
  op->recover = in->recover;
  for (size_t i = 0; i < op->n; i++) {
    op->roles[i] = strcmp(in->messages[i].role, "user") == 0 ? "user" : "assistant";
    if (!(op->bodies[i] = message_body(in, i))) return started(op, AW_ENOMEM, out);
  }
  if (op->thread[0]) {
    /* Callbacks never run inside the call: the checkpoint comes from the
     * loop. */
    manage_phase(op, M_DEFER);
    return started(op, defer(op, 0, thread_known), out);
  }
  /* A new conversation: the same thread creation as a turn's. */
  cJSON *j = cJSON_CreateObject(), *md = NULL;
  char *body = NULL;
  int ok = j && (md = cJSON_AddObjectToObject(j, "metadata")) &&
           cJSON_AddStringToObject(md, "conversation_id", op->conversation_id);
  if (!ok) cJSON_Delete(j);
  int rc = !ok || asst_print_json(j, &body) ? AW_ENOMEM : AW_OK;
  if (!rc) {
    manage_phase(op, M_THREAD);
    rc = api_threads_create(be->api, body, on_thread_created, op, &op->b.call);
    if (rc) op->b.call = NULL;
  }
  cJSON_free(body);
  return started(op, rc, out);
}

/* ---- delete ------------------------------------------------------------------------- */

static void on_deleted(void *opaque, const api_result *r) {
  manage_op *op = opaque;
  op->b.call = NULL;
  if (r->err && r->http_status != 404) {
    fail_api(op, r);
    return;
  }
  /* 404: gone already, which is what was asked. */
  op->http_status = r->http_status;
  finish(op);
}

int asst_conv_delete(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                     be_op **out) {
  be_asst *be = (be_asst *)bb;
  *out = NULL;
  if (!handle_ok(in->handle)) return AW_EINVAL;
  manage_op *op = manage_new(be, MG_DELETE, in, ev, opaque);
  if (!op) return AW_ENOMEM;
  int rc;
  if (!op->thread[0]) {
    manage_phase(op, M_DEFER);
    rc = defer(op, 0, finish); /* no thread: nothing to delete */
  } else {
    manage_phase(op, M_DELETE);
    rc = api_threads_delete(be->api, op->thread, on_deleted, op, &op->b.call);
    if (rc) op->b.call = NULL;
  }
  return started(op, rc, out);
}

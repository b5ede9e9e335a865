/* rsp_manage.c -- conversation management on the Responses + Conversations
 * API: be_conv_history, be_conv_append, be_conv_delete (backend.h).  One
 * small state machine per operation, moved by manage_to() alone, which logs
 * every change (as rsp_turn.c does for turns).
 *
 *   history: (no handle, or a cursor that cannot be an id) --> DONE at once
 *            LIST (GET /conversations/{id}/items) --> DONE
 *   append:  [CONV: create + claim] --> ANCHOR (GET items?limit=1&order=desc;
 *            checkpoint) --> POST (POST /conversations/{id}/items) --> DONE
 *                              \--(ambiguous)--> LOOKUP <-> LOOKUP_WAIT
 *                                    found: DONE (the ids read from the items)
 *                                    not found (bounded): POST again (bounded)
 *            recover with an append checkpoint --> LOOKUP (one look) --> DONE, or POST
 *   delete:  (no handle) --> DONE at once;  DELETE --> DONE (404: deleted already)
 *
 * History.  The list endpoint takes limit, order and after, and no `before`
 * (openapi.validatable.yaml, listConversationItems).  before=X is therefore
 * served by listing in the opposite order after X and reversing the page:
 * the `limit` items nearest to X on the side the caller asked for, in the
 * order asked for.  Only user and assistant `message` items are kept (tool
 * calls, their outputs, reasoning... are left out, so a page may hold fewer
 * than limit); created_at is the item's when the server gives one (the
 * spec's Message has none: 0).  The page's cursors are the ids of the first
 * and last *listed* item (a skipped item included), so that the next page
 * starts exactly where this one stopped and a page of tool items only still
 * moves on.  The page's text is bounded by max_answer_bytes: a page that
 * would exceed it is cut after the last message that fits, with has_more
 * set (a single message larger than that fails answer_too_large).  An
 * after/before id the API does not know (400 or 404 while a cursor was
 * given: the API does not say which of the two ids it missed, so a
 * conversation deleted meanwhile reads the same) is AW_EINVAL
 * "message_not_found"; a cursor that cannot be an id at all is answered so
 * without a request.
 *
 * Append: never twice.  The API has no idempotency key and items carry no
 * metadata, so before the POST the op reads the conversation's newest item
 * id (the *anchor*) and hands it out as the event's checkpoint
 * ("a1 <conv> <anchor>", "-" for an empty conversation).  After an
 * ambiguous outcome (5xx, timeout, reset after sending), or when the worker
 * recovers the event with that checkpoint, it lists the items after the
 * anchor and takes the append as applied when our messages are there as a
 * contiguous run (same roles and texts, in order); the items after the
 * anchor can only be this event's, the conversation being served in order.
 * Otherwise it posts again, at most POSTS_MAX times per attempt.  The
 * remaining window, as for rsp_turn.c's lookup: a server that makes the
 * items visible later than the bounded wait (about 1.5 s at the default
 * retry_base_ms) gets them twice; a worker that dies after the POST but
 * before the worker stored the checkpoint recovers without an anchor and
 * posts again (the checkpoint is handed out before the POST, but stored by
 * the worker asynchronously); more than 100 items written after the anchor
 * are not searched.  A conversation created for the append and then not
 * used (an ambiguous create) is an empty orphan, as for turns (rsp_conv.c).
 *
 * Memory per op: this struct (~2 KiB), the items to post, and the page
 * collector (bounded by max_answer_bytes).  Cancellation as in rsp_turn.c:
 * be_op_cancel inside one of our callbacks only marks the op.
 */
#include "rsp_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "be_errors.h"
#include "log.h"

typedef enum {
  M_NEW = 0, M_CONV, M_ANCHOR, M_POST, M_LOOKUP, M_LOOKUP_WAIT, M_LIST, M_DELETE, M_DONE
} manage_state;

static const char *state_name(manage_state s) {
  static const char *names[] = {"new", "conversation", "anchoring", "posting", "looking_up",
                                "lookup_wait", "listing", "deleting", "done"};
  return s <= M_DONE ? names[s] : "?";
}

static const char *mode_name(rsp_manage_mode m) {
  return m == RSP_MANAGE_HISTORY ? "history" : m == RSP_MANAGE_APPEND ? "append" : "delete";
}

/* Bounds. */
#define POSTS_MAX 3        /* POST items per attempt, re-posts after a miss included */
#define LOOKS_AFTER_FAIL 3 /* item lookups before concluding "not applied" */

typedef struct manage_timer {
  uv_timer_t t;
  struct rsp_manage *m;
} manage_timer;

typedef struct rsp_manage rsp_manage;
typedef void (*manage_step)(rsp_manage *);

struct rsp_manage {
  rsp_op b;
  rsp_backend *be;
  rsp_manage_mode mode;
  manage_state state;
  be_conv_events ev;          /* copied */
  void *opaque;
  char *conversation_id;      /* ours */
  char event_id[129];
  char conv[RSP_ID_MAX];      /* the conversation handle, "" if none */
  /* history */
  long limit;
  int order_asc, reversed, has_cursor, bad_cursor;
  char cursor[RSP_ID_MAX];    /* after, or before (reversed) */
  /* append */
  cJSON *items;               /* the message items we post, in order */
  int nitems;
  char anchor[RSP_ID_MAX];    /* newest item before our first POST, "" if none */
  int posts, looks, looks_max;
  char checkpoint[BE_CHECKPOINT_MAX];
  /* I/O */
  api_call *call;
  rsp_conv *convop;
  manage_timer *timer;
  manage_step next;
  /* the result */
  rsp_answer ans;
  int has_more;
  char first_id[RSP_ID_MAX], last_id[RSP_ID_MAX];
  int starting, start_rc;
  int err, http_status;
  char error_code[64];
  char errmsg[512];
};

static const char *nz(const char *s) { return s && s[0] ? s : NULL; }

static log_ctx manage_ctx(const rsp_manage *m) {
  log_ctx c = {.event_id = nz(m->event_id), .conversation_id = m->conversation_id, .thread_id = nz(m->conv)};
  return c;
}

static void manage_to(rsp_manage *m, manage_state s) {
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = manage_ctx(m);
    log_debug(&ctx, "%s %s -> %s", mode_name(m->mode), state_name(m->state), state_name(s));
  }
  m->state = s;
}

/* ==== life cycle ============================================================== */

static void on_timer_closed(uv_handle_t *h) { free(h); }

static void manage_free(rsp_manage *m) {
  if (m->call) api_call_cancel(m->call);
  rsp_conv_cancel(m->convop);
  if (m->timer) {
    m->timer->m = NULL;
    uv_timer_stop(&m->timer->t);
    uv_close((uv_handle_t *)&m->timer->t, on_timer_closed);
  }
  rsp_answer_free(&m->ans);
  cJSON_Delete(m->items);
  free(m->conversation_id);
  free(m);
}

void rsp_manage_cancel_op(rsp_op *op) {
  rsp_manage *m = (rsp_manage *)op;
  if (m->b.cancelled) return;
  m->b.cancelled = 1;
  if (m->b.in_cb) {
    /* The code that called back frees it. */
    if (m->call) api_call_cancel(m->call);
    m->call = NULL;
    rsp_conv_cancel(m->convop);
    m->convop = NULL;
    if (m->timer) uv_timer_stop(&m->timer->t);
    return;
  }
  manage_free(m);
}

static void manage_seterr(rsp_manage *m, int err, int status, const char *code, const char *fmt, ...)
    AW_PRINTF(5, 6);
static void manage_seterr(rsp_manage *m, int err, int status, const char *code, const char *fmt, ...) {
  m->err = err;
  m->http_status = status;
  snprintf(m->error_code, sizeof m->error_code, "%s", nz(code) ? code : be_error_code(err));
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m->errmsg, sizeof m->errmsg, fmt, ap);
  va_end(ap);
}

static void manage_finish(rsp_manage *m) {
  if (m->starting) {
    /* Failed before any I/O: rsp_manage_begin returns it, no callback. */
    m->start_rc = m->err ? m->err : AW_EINVAL;
    return;
  }
  manage_to(m, M_DONE);
  be_conv_result res;
  memset(&res, 0, sizeof res);
  const be_tool_call *calls;
  size_t ncalls;
  if (!m->err && rsp_answer_build(&m->ans, &res.messages, &res.nmessages, &calls, &ncalls) != AW_OK)
    manage_seterr(m, AW_ENOMEM, 0, NULL, "out of memory building the result");
  res.err = m->err;
  if (m->err) {
    res.messages = NULL;
    res.nmessages = 0;
  } else {
    res.has_more = m->has_more;
    res.first_id = nz(m->first_id);
    res.last_id = nz(m->last_id);
  }
  res.http_status = m->http_status;
  res.error_code = m->err ? nz(m->error_code) : NULL;
  res.errmsg = m->errmsg;
  res.handle = nz(m->conv);
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = manage_ctx(m);
    log_debug(&ctx, "%s ended: %s%s%s", mode_name(m->mode), aw_strerror(res.err), res.error_code ? " " : "",
              res.error_code ? res.error_code : "");
  }
  m->b.in_cb++;
  m->ev.on_done(m->opaque, &res);
  manage_free(m);
}

static void on_timer(uv_timer_t *h) {
  manage_timer *mt = (manage_timer *)h;
  if (mt->m) mt->m->next(mt->m);
}

/* Run `next` after ms (0: on the next loop iteration). */
static void manage_wait(rsp_manage *m, manage_state s, long ms, manage_step next) {
  if (!m->timer) {
    m->timer = calloc(1, sizeof *m->timer);
    if (!m->timer || uv_timer_init(m->be->loop, &m->timer->t) != 0) {
      free(m->timer);
      m->timer = NULL;
      manage_seterr(m, AW_ENOMEM, 0, "internal_error", "out of memory for a timer");
      manage_finish(m);
      return;
    }
    m->timer->m = m;
  }
  manage_to(m, s);
  m->next = next;
  uv_timer_start(&m->timer->t, on_timer, (uint64_t)(ms > 0 ? ms : 0), 0);
}

static void manage_api_err(rsp_manage *m, const api_result *r) {
  manage_seterr(m, r->err, r->http_status, r->error_code, "%s", r->errmsg);
  manage_finish(m);
}

static void manage_start_err(rsp_manage *m, int rc, const char *what) {
  manage_seterr(m, rc, 0, NULL, "%s could not start: %s", what, aw_strerror(rc));
  manage_finish(m);
}

static long backoff(const rsp_manage *m, int n) {
  long base = m->be->wait_base_ms, d = base;
  for (int i = 0; i < n && d < 8 * base; i++) d *= 2;
  return d < 8 * base ? d : 8 * base;
}

/* GET path; on_done gets the list.  1 if it could not start (finished). */
static int manage_get(rsp_manage *m, manage_state s, const char *path, api_done_cb cb, const char *what) {
  manage_to(m, s);
  int rc = api_request(m->be->api, "GET", path, NULL, 1, cb, m, &m->call);
  if (rc) {
    m->call = NULL;
    manage_start_err(m, rc, what);
    return 1;
  }
  return 0;
}

/* ==== history ================================================================== */

static void copy_id(char *dst, const cJSON *item) {
  const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(item, "id"));
  snprintf(dst, RSP_ID_MAX, "%s", rsp_id_ok(id) ? id : "");
}

/* Add items [from, to) of data in listing order, or backwards (reversed);
 * AW_EPARSE items are skipped.  *examined: how many items of the listing
 * were taken (all, or those before the first that did not fit). */
static int add_range(rsp_manage *m, const cJSON *data, int n, int backwards, int *examined) {
  *examined = n;
  for (int k = 0; k < n; k++) {
    int i = backwards ? n - 1 - k : k, added;
    int rc = rsp_answer_add_listed(&m->ans, cJSON_GetArrayItem(data, i), &added);
    if (rc == AW_EPARSE) continue;
    if (rc) {
      *examined = k;
      return rc;
    }
  }
  return AW_OK;
}

/* The page from one listing (see the top of this file). */
static void history_page(rsp_manage *m, const cJSON *page) {
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(page, "data");
  if (!cJSON_IsArray(data)) {
    manage_seterr(m, AW_EPARSE, 200, NULL, "GET /conversations/%s/items: not a list", m->conv);
    manage_finish(m);
    return;
  }
  int n = cJSON_GetArraySize(data), examined;
  int rc = add_range(m, data, n, 0, &examined);
  int cut = rc == AW_ETOOBIG;
  if (rc && !cut) {
    manage_seterr(m, rc, 200, NULL, "GET /conversations/%s/items: %s", m->conv, aw_strerror(rc));
    manage_finish(m);
    return;
  }
  if (cut && examined == 0) {
    manage_seterr(m, AW_ETOOBIG, 200, "answer_too_large",
                  "a message of conversation %s exceeds max_answer_bytes (%zu)", m->conv, m->ans.max_text);
    manage_finish(m);
    return;
  }
  if (cut || m->reversed) {
    /* Again, only what fits, in the order asked for (cannot fail now but
     * for memory: the same items fitted a moment ago). */
    rsp_answer_reset(&m->ans);
    int again;
    rc = add_range(m, data, examined, m->reversed, &again);
    if (rc) {
      manage_seterr(m, rc, 200, NULL, "GET /conversations/%s/items: %s", m->conv, aw_strerror(rc));
      manage_finish(m);
      return;
    }
  }
  m->has_more = cut || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(page, "has_more"));
  if (examined > 0) {
    const cJSON *first = cJSON_GetArrayItem(data, 0), *last = cJSON_GetArrayItem(data, examined - 1);
    copy_id(m->first_id, m->reversed ? last : first);
    copy_id(m->last_id, m->reversed ? first : last);
  }
  manage_finish(m);
}

static void on_listed(void *opaque, const api_result *r) {
  rsp_manage *m = opaque;
  m->call = NULL;
  if (r->err && m->has_cursor && (r->http_status == 400 || r->http_status == 404)) {
    /* The API names no such item in this conversation. */
    manage_seterr(m, AW_EINVAL, r->http_status, "message_not_found",
                  "conversation %s holds no message %s (%s)", m->conv, m->cursor, r->errmsg);
    manage_finish(m);
    return;
  }
  if (r->err) {
    manage_api_err(m, r);
    return;
  }
  history_page(m, r->json);
}

static void history_list(rsp_manage *m) {
  char path[320];
  int asc = m->reversed ? !m->order_asc : m->order_asc;
  snprintf(path, sizeof path, "/conversations/%s/items?limit=%ld&order=%s%s%s", m->conv, m->limit,
           asc ? "asc" : "desc", m->has_cursor ? "&after=" : "", m->has_cursor ? m->cursor : "");
  (void)manage_get(m, M_LIST, path, on_listed, "GET /conversations/{id}/items");
}

static void history_now(rsp_manage *m) {
  if (m->bad_cursor)
    manage_seterr(m, AW_EINVAL, 0, "message_not_found", "conversation %s holds no message with that id",
                  m->conversation_id);
  manage_finish(m); /* no handle: an empty page */
}

/* ==== append ===================================================================== */

static void append_post(rsp_manage *m);
static void append_lookup(rsp_manage *m);

/* The items after the anchor, oldest first: is our run of messages there?
 * Found: the result holds those items (ids, roles). */
static int find_ours(rsp_manage *m, const cJSON *data, int *found) {
  *found = 0;
  int n = cJSON_GetArraySize(data);
  for (int i = 0; i + m->nitems <= n && !*found; i++) {
    int j = 0;
    while (j < m->nitems &&
           rsp_items_same_message(cJSON_GetArrayItem(data, i + j), cJSON_GetArrayItem(m->items, j)))
      j++;
    if (j < m->nitems) continue;
    *found = 1;
    rsp_answer_reset(&m->ans);
    for (j = 0; j < m->nitems; j++) {
      int added, rc = rsp_answer_add_listed(&m->ans, cJSON_GetArrayItem(data, i + j), &added);
      if (rc) return rc;
    }
  }
  return AW_OK;
}

static void on_looked(void *opaque, const api_result *r) {
  rsp_manage *m = opaque;
  m->call = NULL;
  if (r->err) {
    manage_api_err(m, r);
    return;
  }
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->json, "data");
  int found = 0, rc = cJSON_IsArray(data) ? find_ours(m, data, &found) : AW_EPARSE;
  if (rc) {
    manage_seterr(m, rc, r->http_status, NULL, "GET /conversations/%s/items: %s", m->conv,
                  rc == AW_EPARSE ? "not a list" : aw_strerror(rc));
    manage_finish(m);
    return;
  }
  log_ctx ctx = manage_ctx(m);
  if (found) {
    log_info(&ctx, "found this append's %d message(s) in the conversation: not posted again", m->nitems);
    manage_finish(m);
    return;
  }
  if (++m->looks < m->looks_max) {
    /* The items may not be visible yet: wait a little. */
    manage_wait(m, M_LOOKUP_WAIT, backoff(m, m->looks), append_lookup);
    return;
  }
  if (m->posts) log_info(&ctx, "this append's messages are not in the conversation: posting them again");
  append_post(m);
}

static void append_lookup(rsp_manage *m) {
  char path[320];
  snprintf(path, sizeof path, "/conversations/%s/items?limit=%d&order=asc%s%s", m->conv, RSP_ITEMS_PAGE,
           m->anchor[0] ? "&after=" : "", m->anchor);
  (void)manage_get(m, M_LOOKUP, path, on_looked, "GET /conversations/{id}/items");
}

static void append_lookup_start(rsp_manage *m, int looks_max) {
  m->looks = 0;
  m->looks_max = looks_max;
  append_lookup(m);
}

static void on_posted(void *opaque, const api_result *r) {
  rsp_manage *m = opaque;
  m->call = NULL;
  log_ctx ctx = manage_ctx(m);
  if (r->err == AW_EAMBIGUOUS || r->maybe_applied) {
    /* May have been applied: never post blindly, look first. */
    if (m->posts >= POSTS_MAX) {
      manage_seterr(m, AW_EAMBIGUOUS, r->http_status, r->error_code,
                    "POST /conversations/%s/items failed ambiguously %d times: %s", m->conv, m->posts, r->errmsg);
      manage_finish(m);
      return;
    }
    log_info(&ctx, "POST /conversations/{id}/items failed ambiguously (%s); looking for our messages", r->errmsg);
    append_lookup_start(m, LOOKS_AFTER_FAIL);
    return;
  }
  if (r->err) {
    manage_api_err(m, r);
    return;
  }
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->json, "data");
  if (!cJSON_IsArray(data)) {
    /* Applied, but the answer does not name the items: read them. */
    log_warn(&ctx, "POST /conversations/{id}/items answered without a list; looking the items up");
    append_lookup_start(m, LOOKS_AFTER_FAIL);
    return;
  }
  rsp_answer_reset(&m->ans);
  int examined, rc = add_range(m, data, cJSON_GetArraySize(data), 0, &examined);
  if (rc) manage_seterr(m, rc, r->http_status, NULL, "POST /conversations/%s/items: %s", m->conv, aw_strerror(rc));
  manage_finish(m);
}

static void append_post(rsp_manage *m) {
  char path[160];
  snprintf(path, sizeof path, "/conversations/%s/items", m->conv);
  cJSON *body = cJSON_CreateObject();
  char *text = NULL;
  int ok = body && cJSON_AddItemReferenceToObject(body, "items", m->items);
  if (ok) text = cJSON_PrintUnformatted(body);
  cJSON_Delete(body); /* a reference: the items stay */
  m->posts++;
  manage_to(m, M_POST);
  /* Creates items: never repeated after an ambiguous outcome (0). */
  int rc = text ? api_request(m->be->api, "POST", path, text, 0, on_posted, m, &m->call) : AW_ENOMEM;
  cJSON_free(text);
  if (rc) {
    m->call = NULL;
    manage_start_err(m, rc, "POST /conversations/{id}/items");
  }
}

static void on_anchored(void *opaque, const api_result *r) {
  rsp_manage *m = opaque;
  m->call = NULL;
  if (r->err) {
    manage_api_err(m, r);
    return;
  }
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->json, "data");
  if (!cJSON_IsArray(data)) {
    manage_seterr(m, AW_EPARSE, r->http_status, NULL, "GET /conversations/%s/items: not a list", m->conv);
    manage_finish(m);
    return;
  }
  copy_id(m->anchor, cJSON_GetArrayItem(data, 0)); /* "" for an empty conversation */
  int w = snprintf(m->checkpoint, sizeof m->checkpoint, "a1 %s %s", m->conv, m->anchor[0] ? m->anchor : "-");
  if (w > 0 && (size_t)w < sizeof m->checkpoint && m->ev.on_checkpoint) {
    m->b.in_cb++;
    m->ev.on_checkpoint(m->opaque, m->checkpoint);
    m->b.in_cb--;
    if (m->b.cancelled) {
      manage_free(m);
      return;
    }
  }
  append_post(m);
}

static void append_anchor(rsp_manage *m) {
  char path[192];
  snprintf(path, sizeof path, "/conversations/%s/items?limit=1&order=desc", m->conv);
  (void)manage_get(m, M_ANCHOR, path, on_anchored, "GET /conversations/{id}/items");
}

static void on_conv(void *opaque, int err, int status, const char *code, const char *msg, const char *handle) {
  rsp_manage *m = opaque;
  m->convop = NULL;
  if (err) {
    manage_seterr(m, err, status, code, "%s", msg);
    manage_finish(m);
    return;
  }
  snprintf(m->conv, sizeof m->conv, "%s", handle);
  append_anchor(m);
}

/* "a1 <conv> <anchor|->": AW_OK and both filled, else AW_EINVAL. */
static int append_checkpoint_parse(const char *cp, char conv[RSP_ID_MAX], char anchor[RSP_ID_MAX]) {
  char c[RSP_ID_MAX], a[RSP_ID_MAX], extra;
  if (!cp || strncmp(cp, "a1 ", 3) != 0 || strlen(cp) >= 3 + 2 * RSP_ID_MAX) return AW_EINVAL;
  if (sscanf(cp + 3, "%95s %95s %c", c, a, &extra) != 2) return AW_EINVAL;
  if (!rsp_id_ok(c) || (strcmp(a, "-") != 0 && !rsp_id_ok(a))) return AW_EINVAL;
  snprintf(conv, RSP_ID_MAX, "%s", c);
  snprintf(anchor, RSP_ID_MAX, "%s", strcmp(a, "-") ? a : "");
  return AW_OK;
}

/* The message items we post, in the spec's EasyInputMessage form (role +
 * content), the one form an assistant message without an item id takes:
 * a user message as rsp_json_user_input builds a turn's input (one part as
 * a plain string, several as input_text parts); an assistant message as
 * one string, its text parts concatenated (EasyInputMessage's content
 * array takes input parts only, and the answer text of a message is the
 * concatenation of its parts anyway). */
static int append_items(const be_conv_input *in, cJSON **out) {
  *out = NULL;
  if (!in->messages || in->nmessages < 1 || in->nmessages > CONTRACT_APPEND_MAX_MESSAGES) return AW_EINVAL;
  cJSON *arr = cJSON_CreateArray();
  if (!arr) return AW_ENOMEM;
  int rc = AW_OK;
  for (size_t i = 0; !rc && i < in->nmessages; i++) {
    const contract_in_message *msg = &in->messages[i];
    int asst = msg->role && !strcmp(msg->role, "assistant");
    if (!msg->role || (!asst && strcmp(msg->role, "user") != 0) || !msg->parts || !msg->nparts) {
      rc = AW_EINVAL;
      break;
    }
    for (size_t j = 0; j < msg->nparts; j++)
      if (msg->parts[j].type != CONTRACT_PART_TEXT || !msg->parts[j].text) rc = AW_EINVAL;
    if (rc) break;
    cJSON *it = NULL;
    if (!asst) {
      cJSON *one = NULL;
      rc = rsp_json_user_input(msg->parts, msg->nparts, &one);
      if (!rc) it = cJSON_DetachItemFromArray(one, 0);
      cJSON_Delete(one);
      if (!rc && !it) rc = AW_ENOMEM;
    } else {
      size_t len = 0;
      for (size_t j = 0; j < msg->nparts; j++) len += strlen(msg->parts[j].text);
      char *text = malloc(len + 1);
      it = cJSON_CreateObject();
      if (text) {
        text[0] = '\0';
        for (size_t j = 0, at = 0; j < msg->nparts; j++) {
          size_t n = strlen(msg->parts[j].text);
          memcpy(text + at, msg->parts[j].text, n + 1);
          at += n;
        }
      }
      if (!text || !it || !cJSON_AddStringToObject(it, "type", "message") ||
          !cJSON_AddStringToObject(it, "role", "assistant") || !cJSON_AddStringToObject(it, "content", text))
        rc = AW_ENOMEM;
      free(text);
    }
    if (!rc && !cJSON_AddItemToArray(arr, it)) rc = AW_ENOMEM;
    if (rc) cJSON_Delete(it);
  }
  if (rc) {
    cJSON_Delete(arr);
    return rc;
  }
  *out = arr;
  return AW_OK;
}

/* ==== delete ========================================================================== */

static void on_deleted(void *opaque, const api_result *r) {
  rsp_manage *m = opaque;
  m->call = NULL;
  if (r->err && r->http_status != 404) {
    manage_api_err(m, r);
    return;
  }
  if (r->err) {
    log_ctx ctx = manage_ctx(m);
    log_info(&ctx, "the backend conversation was deleted already (404)");
  }
  m->http_status = r->http_status;
  manage_finish(m);
}

static void delete_conv(rsp_manage *m) {
  char path[160];
  snprintf(path, sizeof path, "/conversations/%s", m->conv);
  manage_to(m, M_DELETE);
  int rc = api_request(m->be->api, "DELETE", path, NULL, 1, on_deleted, m, &m->call);
  if (rc) {
    m->call = NULL;
    manage_start_err(m, rc, "DELETE /conversations/{id}");
  }
}

/* ==== entry ============================================================================ */

static int manage_setup(rsp_manage *m, const be_conv_input *in) {
  snprintf(m->event_id, sizeof m->event_id, "%s", in->event_id ? in->event_id : "");
  if (!(m->conversation_id = strdup(in->conversation_id))) return AW_ENOMEM;
  if (in->handle && in->handle[0]) {
    if (!rsp_id_ok(in->handle)) return AW_EINVAL;
    snprintf(m->conv, sizeof m->conv, "%s", in->handle);
  }
  if (m->mode == RSP_MANAGE_HISTORY) {
    if (nz(in->after) && nz(in->before)) return AW_EINVAL;
    m->limit = in->limit <= 0 ? CONTRACT_HISTORY_LIMIT_DEFAULT
               : in->limit > RSP_ITEMS_PAGE ? RSP_ITEMS_PAGE : in->limit;
    m->order_asc = in->order_asc ? 1 : 0;
    const char *cur = nz(in->before) ? in->before : nz(in->after);
    m->reversed = nz(in->before) != NULL;
    if (cur) {
      /* Ours to check: it goes into a query string.  Something that cannot
       * be an id of this API is no message of the conversation. */
      if (rsp_id_ok(cur)) {
        m->has_cursor = 1;
        snprintf(m->cursor, sizeof m->cursor, "%s", cur);
      } else {
        m->bad_cursor = 1;
      }
    }
    return AW_OK;
  }
  if (m->mode != RSP_MANAGE_APPEND) return AW_OK;
  int rc = append_items(in, &m->items);
  if (rc) return rc;
  m->nitems = cJSON_GetArraySize(m->items);
  char conv[RSP_ID_MAX], anchor[RSP_ID_MAX];
  if (in->recover && in->checkpoint && append_checkpoint_parse(in->checkpoint, conv, anchor) == AW_OK) {
    /* Where the earlier attempt was about to post. */
    snprintf(m->conv, sizeof m->conv, "%s", conv);
    snprintf(m->anchor, sizeof m->anchor, "%s", anchor);
    snprintf(m->checkpoint, sizeof m->checkpoint, "%s", in->checkpoint);
  } else if (in->recover && in->checkpoint) {
    log_ctx ctx = {.event_id = nz(m->event_id), .conversation_id = m->conversation_id};
    log_warn(&ctx, "ignoring a checkpoint that is not an append's of this backend");
  }
  return AW_OK;
}

int rsp_manage_begin(rsp_backend *be, rsp_manage_mode mode, const be_conv_input *in, const be_conv_events *ev,
                     void *opaque, be_op **out) {
  *out = NULL;
  if (!in->conversation_id || !in->conversation_id[0]) return AW_EINVAL;
  rsp_manage *m = calloc(1, sizeof *m);
  if (!m) return AW_ENOMEM;
  m->b.head.be = &be->base;
  m->b.kind = RSP_OP_MANAGE;
  m->be = be;
  m->mode = mode;
  m->ev = *ev;
  m->opaque = opaque;
  rsp_answer_init(&m->ans, be->max_answer_bytes);
  int rc = manage_setup(m, in);
  if (rc) {
    manage_free(m);
    return rc;
  }
  m->starting = 1;
  switch (mode) {
  case RSP_MANAGE_HISTORY:
    if (!m->conv[0] || m->bad_cursor) manage_wait(m, M_DONE, 0, history_now);
    else history_list(m);
    break;
  case RSP_MANAGE_APPEND:
    if (m->checkpoint[0]) append_lookup_start(m, 1); /* an earlier attempt may have posted */
    else if (!m->conv[0]) {
      manage_to(m, M_CONV);
      rc = rsp_conv_ensure(be->api, be->store, m->conversation_id, m->event_id, on_conv, m, &m->convop);
      if (rc) manage_start_err(m, rc, "POST /conversations");
    } else {
      append_anchor(m);
    }
    break;
  case RSP_MANAGE_DELETE:
    if (!m->conv[0]) manage_wait(m, M_DONE, 0, manage_finish); /* nothing to delete */
    else delete_conv(m);
    break;
  }
  m->starting = 0;
  if (m->start_rc) {
    rc = m->start_rc;
    manage_free(m);
    return rc;
  }
  *out = (be_op *)m;
  return AW_OK;
}

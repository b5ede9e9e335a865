/* chat_manage.c -- conversation requests on the Chat Completions backend
 * (backend.h, "conversation management"): history pages, append, delete.
 *
 * Why it looks like this: the chat server keeps nothing, so a conversation
 * is the list of turns the fleet stores through the be_history port, and
 * every request here is a read or a write of that list -- never an HTTP
 * call (hence no retries of our own: a store that cannot be reached is
 * AW_EREDIS, retry class, and the worker waits).
 *
 *   history  loads every committed turn the store keeps (the store caps
 *            them: worker.history_max_turns / history_max_bytes), flattens
 *            them into user and assistant messages (system text, tool calls
 *            and tool outputs are not listed) and pages in memory.  Ids are
 *            synthetic and stable, "<event_id>/<n>" with n the message's
 *            index in its stored turn (tool messages counted, so an id does
 *            not move when what is listed changes; the event id may hold
 *            '/', the number after the last one never does).  Cost: one
 *            load and one parse of the whole stored history per page,
 *            O(stored bytes) -- at most the store's byte cap (1 MiB by
 *            default); a cursor saves no work, it keeps the contract the
 *            other backends have.  A trimmed turn takes its ids with it: a
 *            cursor naming one is message_not_found.
 *   append   commits one turn for the event holding the messages, in the
 *            shape a turn's messages are stored and sent again (a user
 *            message with string content, an assistant message with string
 *            content and no calls); chat_context.c sends every message of a
 *            selected turn whatever their roles, so the next turn's request
 *            carries them.  Exactly once per event without any look-up of
 *            ours: the port's commit is atomic and idempotent per event_id
 *            (applied 0 when the event's turn is there already), so a
 *            re-delivered or retried append appends once.  (Like a turn, it
 *            could be appended again only after the store trimmed it AND
 *            its outcome record expired: history_store.h.)
 *   delete   holds nothing at a server: answered on the next loop
 *            iteration; the worker erases the history with the
 *            conversation's other keys (cstore_erase_conversation).
 *
 * Cancellation: the history port has no cancel, so an op cancelled while a
 * store call is out stays allocated and is freed by that call's callback,
 * as a turn is (chat_turn.c).
 *
 * @locality the loop thread only.
 */
#include "chat_int.h"
#include "be_deferred.h"
#include "be_errors.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum { MG_HISTORY = 1, MG_APPEND, MG_DELETE } mg_what;

typedef struct mg_op {
  chat_op b;
  chat_backend *be;
  mg_what what;
  be_conv_events ev;     /* copied: the caller's struct need not outlive the call */
  void *opaque;
  char *conversation_id, *event_id;
  long limit;
  char *after, *before;  /* history: the cursor, at most one */
  int order_asc;
  int64_t at;            /* append: the commit's time */
  cJSON *msgs;           /* append: the messages added */
  char *record;          /* append: the turn written, until the commit answers */
  int store_busy;        /* a history call is out: freed by its callback */
  be_defer *answer;      /* delete: the answer on the next loop iteration */
} mg_op;

static void mg_free_now(mg_op *op) {
  cJSON_Delete(op->msgs);
  cJSON_free(op->record);
  free(op->conversation_id);
  free(op->event_id);
  free(op->after);
  free(op->before);
  free(op);
}

static void mg_free(mg_op *op) {
  be_defer_cancel(op->answer); /* delete's answer not given yet; inside it: only marks it */
  mg_free_now(op);
}

void chat_manage_cancel_op(chat_op *b) {
  mg_op *op = (mg_op *)b;
  if (b->cancelled) return;
  b->cancelled = 1;
  /* Inside our callback: freed when it returns; a store call out: freed
   * by its callback. */
  if (b->in_cb || op->store_busy) return;
  mg_free(op);
}

/* The one exit: on_done exactly once, then the op is gone. */
static void mg_finish(mg_op *op, const be_conv_result *res) {
  op->b.in_cb++;
  op->ev.on_done(op->opaque, res);
  op->b.in_cb--;
  mg_free(op);
}

static void mg_fail(mg_op *op, int err, const char *code, const char *fmt, ...) AW_PRINTF(4, 5);
static void mg_fail(mg_op *op, int err, const char *code, const char *fmt, ...) {
  char msg[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  be_conv_result res = {.err = err, .error_code = code ? code : be_error_code(err), .errmsg = msg};
  mg_finish(op, &res);
}

/* A store callback arrived: 1 when the op was cancelled meanwhile (freed). */
static int mg_store_back(mg_op *op) {
  op->store_busy = 0;
  cJSON_free(op->record);
  op->record = NULL;
  if (!op->b.cancelled) return 0;
  mg_free(op);
  return 1;
}

static char *dup_or_null(const char *s, int *oom) {
  if (!s) return NULL;
  char *d = strdup(s);
  if (!d) *oom = 1;
  return d;
}

static mg_op *mg_new(chat_backend *be, mg_what what, const be_conv_input *in, const be_conv_events *ev,
                     void *opaque) {
  mg_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  int oom = 0;
  op->b.head.be = &be->base;
  op->b.kind = CHAT_OP_MANAGE;
  op->be = be;
  op->what = what;
  op->ev = *ev;
  op->opaque = opaque;
  op->conversation_id = dup_or_null(in->conversation_id, &oom);
  op->event_id = dup_or_null(in->event_id, &oom);
  if (oom) {
    mg_free_now(op);
    return NULL;
  }
  return op;
}

static int nonempty(const char *s) { return s && s[0]; }

/* ==== the messages of stored turns ============================================================== */

/* Is msg one the history lists?  User messages, and assistant messages
 * that say something: an assistant message that only carries tool calls
 * (content "") is part of a tool round, as are tool outputs; system text
 * is the assistant's definition, not the conversation. */
static int listed(const cJSON *msg) {
  const char *role = chat_get_str(msg, "role");
  if (!role) return 0;
  if (!strcmp(role, "user")) return 1;
  if (strcmp(role, "assistant") != 0) return 0;
  const char *text = chat_get_str(msg, "content");
  return text && text[0];
}

/* The text parts of msg's content (a string: one part; an array: its text
 * parts, image_url parts left out) into parts[0..max); returns how many. */
static size_t text_parts(const cJSON *msg, contract_out_part *parts, size_t max) {
  const cJSON *c = chat_get(msg, "content");
  size_t n = 0;
  if (cJSON_IsString(c)) {
    if (max > 0) parts[n++] = (contract_out_part){.type = "text", .text = c->valuestring,
                                                  .text_len = strlen(c->valuestring)};
    return n;
  }
  const cJSON *p;
  cJSON_ArrayForEach(p, c) {
    const char *type = chat_get_str(p, "type"), *text = chat_get_str(p, "text");
    if (n < max && type && !strcmp(type, "text") && text)
      parts[n++] = (contract_out_part){.type = "text", .text = text, .text_len = strlen(text)};
  }
  return n;
}

static size_t count_text_parts(const cJSON *msg) {
  const cJSON *c = chat_get(msg, "content");
  if (cJSON_IsString(c)) return 1;
  return (size_t)(cJSON_IsArray(c) ? cJSON_GetArraySize(c) : 0); /* an upper bound */
}

/* The out messages of a list of stored messages: role, created_at, id
 * "<event_id>/<n>", text parts (pointing into the cJSON: valid while it
 * is).  All in one allocation, *block (free it after the callback). */
typedef struct mg_entry {
  const cJSON *msg;
  const char *event_id;
  int n;        /* index in its turn's "m" */
  int64_t at;
} mg_entry;

static int out_messages(const mg_entry *const *es, size_t count, contract_out_message **out, void **block) {
  size_t nparts = 0, idbytes = 0;
  for (size_t i = 0; i < count; i++) {
    nparts += count_text_parts(es[i]->msg);
    idbytes += strlen(es[i]->event_id) + 1 + 12 + 1;
  }
  size_t sz = count * sizeof(contract_out_message) + nparts * sizeof(contract_out_part) + idbytes;
  char *mem = calloc(1, sz ? sz : 1);
  if (!mem) return AW_ENOMEM;
  contract_out_message *msgs = (contract_out_message *)mem;
  contract_out_part *parts = (contract_out_part *)(mem + count * sizeof *msgs);
  char *ids = (char *)(parts + nparts);
  for (size_t i = 0; i < count; i++) {
    size_t room = strlen(es[i]->event_id) + 1 + 12 + 1;
    snprintf(ids, room, "%s/%d", es[i]->event_id, es[i]->n);
    msgs[i].id = ids;
    ids += room;
    msgs[i].role = chat_get_str(es[i]->msg, "role");
    msgs[i].created_at = es[i]->at;
    msgs[i].parts = parts;
    msgs[i].nparts = text_parts(es[i]->msg, parts, count_text_parts(es[i]->msg));
    parts += count_text_parts(es[i]->msg);
  }
  *out = msgs;
  *block = mem;
  return AW_OK;
}

/* ==== history ===================================================================================== */

/* Where the entry a cursor names is, in the chronological list; -1 when it
 * names none ("<event_id>/<n>": split at the last '/'). */
static long find_cursor(const mg_entry *es, size_t n, const char *cursor) {
  const char *slash = strrchr(cursor, '/');
  if (!slash || slash == cursor || !slash[1]) return -1;
  char *end = NULL;
  long k = strtol(slash + 1, &end, 10);
  /* Only what out_messages writes: digits, no sign, no leading zero. */
  if (*end || k < 0 || k > INT32_MAX || slash[1] < '0' || slash[1] > '9' || (slash[1] == '0' && slash[2]))
    return -1;
  size_t elen = (size_t)(slash - cursor);
  for (size_t i = n; i-- > 0;)
    if (es[i].n == k && strlen(es[i].event_id) == elen && !memcmp(es[i].event_id, cursor, elen)) return (long)i;
  return -1;
}

static void history_page(mg_op *op, const be_history_view *v) {
  chat_record *recs = calloc(v->nturns ? v->nturns : 1, sizeof *recs);
  size_t total = 0;
  mg_entry *es = NULL;
  const mg_entry **page = NULL;
  contract_out_message *out = NULL;
  void *block = NULL;
  int rc = recs ? AW_OK : AW_ENOMEM;
  for (size_t i = 0; !rc && i < v->nturns; i++) {
    if (chat_record_parse(v->turns[i], v->lens[i], &recs[i]) != AW_OK) continue; /* unreadable: not listed */
    const cJSON *m;
    cJSON_ArrayForEach(m, recs[i].msgs) total += listed(m);
  }
  if (!rc && !(es = calloc(total ? total : 1, sizeof *es))) rc = AW_ENOMEM;
  size_t n = 0;
  for (size_t i = 0; !rc && i < v->nturns; i++) {
    const cJSON *m;
    int k = 0;
    if (!recs[i].root) continue;
    cJSON_ArrayForEach(m, recs[i].msgs) {
      if (listed(m)) es[n++] = (mg_entry){.msg = m, .event_id = recs[i].event_id, .n = k, .at = recs[i].at};
      k++;
    }
  }
  /* The page in listing order (asc: chronological; desc: newest first):
   * position p of the listing is entry p (asc) or n-1-p (desc). */
  size_t start = 0, end = 0;
  int has_more = 0;
  const char *cursor = op->after ? op->after : op->before;
  if (!rc) {
    size_t lim = (size_t)op->limit;
    if (!cursor) {
      end = n < lim ? n : lim;
      has_more = end < n;
    } else {
      long at = find_cursor(es, n, cursor);
      if (at < 0) {
        mg_fail(op, AW_EINVAL, "message_not_found", "no message %s in this conversation's history", cursor);
        goto out;
      }
      size_t p = op->order_asc ? (size_t)at : n - 1 - (size_t)at;
      if (op->after) {
        start = p + 1;
        end = n - start < lim ? n : start + lim;
        has_more = end < n;
      } else {
        end = p;
        start = end < lim ? 0 : end - lim;
        has_more = start > 0;
      }
    }
    if (!(page = calloc(end > start ? end - start : 1, sizeof *page))) rc = AW_ENOMEM;
  }
  for (size_t p = start; !rc && p < end; p++) page[p - start] = &es[op->order_asc ? p : n - 1 - p];
  if (!rc) rc = out_messages(page, end - start, &out, &block);
  if (rc) {
    mg_fail(op, rc, NULL, "history: %s", aw_strerror(rc));
    goto out;
  }
  {
    be_conv_result res = {.messages = out, .nmessages = end - start, .has_more = has_more};
    if (end > start) {
      res.first_id = out[0].id;
      res.last_id = out[end - start - 1].id;
    }
    mg_finish(op, &res);
  }
out:
  free(block);
  free(page);
  free(es);
  for (size_t i = 0; recs && i < v->nturns; i++) chat_record_free(&recs[i]);
  free(recs);
}

static void on_history_loaded(void *opaque, int err, const be_history_view *v) {
  mg_op *op = opaque;
  if (mg_store_back(op)) return;
  if (err || !v) {
    mg_fail(op, AW_EREDIS, NULL, "history: could not load the conversation (%s)", aw_strerror(err ? err : AW_EREDIS));
    return;
  }
  history_page(op, v);
}

int chat_conv_history(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                      be_op **out) {
  chat_backend *be = (chat_backend *)bb;
  *out = NULL;
  long limit = in->limit ? in->limit : CONTRACT_HISTORY_LIMIT_DEFAULT;
  if (!nonempty(in->conversation_id) || limit < 1 || limit > CONTRACT_HISTORY_LIMIT_MAX ||
      (nonempty(in->after) && nonempty(in->before)))
    return AW_EINVAL;
  /* The port wants an event id (it also answers whether that event's turn
   * is committed, which a page does not need); a history request has one. */
  if (!nonempty(in->event_id)) return AW_EINVAL;
  mg_op *op = mg_new(be, MG_HISTORY, in, ev, opaque);
  if (!op) return AW_ENOMEM;
  int oom = 0;
  op->limit = limit;
  op->order_asc = in->order_asc ? 1 : 0;
  op->after = nonempty(in->after) ? dup_or_null(in->after, &oom) : NULL;
  op->before = nonempty(in->before) ? dup_or_null(in->before, &oom) : NULL;
  if (oom) {
    mg_free_now(op);
    return AW_ENOMEM;
  }
  const be_history *h = be->history;
  op->store_busy = 1;
  /* SIZE_MAX: every turn the store keeps (it applies its own caps). */
  int rc = h->load(h->self, op->conversation_id, op->event_id, SIZE_MAX, on_history_loaded, op);
  if (rc) {
    mg_free_now(op);
    return AW_EREDIS;
  }
  *out = (be_op *)op;
  return AW_OK;
}

/* ==== append ====================================================================================== */

/* The stored form of one appended message: a user message as a turn's
 * (chat_json_user_message: text parts joined by a blank line, a string);
 * an assistant message with the same joining, string content, no calls. */
static int stored_message(const contract_in_message *m, cJSON **out) {
  *out = NULL;
  if (!m->role || !m->parts || m->nparts == 0) return AW_EINVAL;
  for (size_t i = 0; i < m->nparts; i++)
    if (m->parts[i].type != CONTRACT_PART_TEXT || !m->parts[i].text) return AW_EINVAL;
  if (!strcmp(m->role, "user")) return chat_json_user_message(m->parts, m->nparts, out, NULL);
  if (strcmp(m->role, "assistant") != 0) return AW_EINVAL;
  size_t total = 1;
  for (size_t i = 0; i < m->nparts; i++) total += strlen(m->parts[i].text) + 2;
  char *s = malloc(total);
  if (!s) return AW_ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < m->nparts; i++) {
    size_t l = strlen(m->parts[i].text);
    if (k) {
      memcpy(s + k, "\n\n", 2);
      k += 2;
    }
    memcpy(s + k, m->parts[i].text, l);
    k += l;
  }
  s[k] = '\0';
  int rc = chat_json_assistant_message(s, NULL, 0, out);
  free(s);
  return rc;
}

static void on_appended(void *opaque, int err, int applied) {
  mg_op *op = opaque;
  if (mg_store_back(op)) return;
  if (err) {
    mg_fail(op, AW_EREDIS, NULL, "history: could not append the messages (%s)", aw_strerror(err));
    return;
  }
  /* applied 0: an earlier delivery of this event appended them already
   * (the commit is idempotent per event); the answer is the same messages
   * with the same ids (its created_at is this attempt's). */
  (void)applied;
  size_t n = (size_t)cJSON_GetArraySize(op->msgs);
  mg_entry *es = calloc(n ? n : 1, sizeof *es);
  const mg_entry **ptrs = calloc(n ? n : 1, sizeof *ptrs);
  contract_out_message *out = NULL;
  void *block = NULL;
  int rc = es && ptrs ? AW_OK : AW_ENOMEM;
  const cJSON *m;
  int k = 0;
  cJSON_ArrayForEach(m, op->msgs) {
    if (rc) break;
    es[k] = (mg_entry){.msg = m, .event_id = op->event_id, .n = k, .at = op->at};
    ptrs[k] = &es[k];
    k++;
  }
  if (!rc) rc = out_messages(ptrs, n, &out, &block);
  if (rc) {
    mg_fail(op, rc, NULL, "append: %s", aw_strerror(rc));
  } else {
    be_conv_result res = {.messages = out, .nmessages = n};
    mg_finish(op, &res);
  }
  free(block);
  free(ptrs);
  free(es);
}

int chat_conv_append(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                     be_op **out) {
  chat_backend *be = (chat_backend *)bb;
  *out = NULL;
  if (!nonempty(in->conversation_id) || !nonempty(in->event_id) || !in->messages || in->nmessages == 0 ||
      in->nmessages > CONTRACT_APPEND_MAX_MESSAGES)
    return AW_EINVAL;
  mg_op *op = mg_new(be, MG_APPEND, in, ev, opaque);
  if (!op) return AW_ENOMEM;
  int rc = (op->msgs = cJSON_CreateArray()) ? AW_OK : AW_ENOMEM;
  for (size_t i = 0; !rc && i < in->nmessages; i++) {
    cJSON *m = NULL;
    rc = stored_message(&in->messages[i], &m);
    if (!rc && !cJSON_AddItemToArray(op->msgs, m)) {
      cJSON_Delete(m);
      rc = AW_ENOMEM;
    }
  }
  /* One turn, as a turn is stored; no "i" (no completion made it), and
   * the time its messages joined the conversation. */
  op->at = (int64_t)time(NULL);
  chat_record r = {.event_id = op->event_id, .msgs = op->msgs, .gen = -1, .at = op->at};
  size_t len = 0;
  if (!rc) rc = chat_record_format(&r, &op->record, &len);
  if (!rc) {
    const be_history *h = be->history;
    op->store_busy = 1;
    /* Idempotent per event_id (be_history.commit): a re-delivered or
     * retried append appends once; no look-up or checkpoint needed. */
    if (h->commit(h->self, op->conversation_id, op->event_id, op->record, len, on_appended, op)) rc = AW_EREDIS;
  }
  if (rc) {
    mg_free_now(op);
    return rc;
  }
  *out = (be_op *)op;
  return AW_OK;
}

/* ==== delete ====================================================================================== */

static void delete_fire(void *arg) {
  mg_op *op = arg;
  /* Nothing at a server; the history goes with the conversation's other
   * keys (the worker's cstore_erase_conversation). */
  be_conv_result res = {.err = AW_OK};
  mg_finish(op, &res);
}

int chat_conv_delete(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                     be_op **out) {
  chat_backend *be = (chat_backend *)bb;
  *out = NULL;
  if (!nonempty(in->conversation_id)) return AW_EINVAL;
  mg_op *op = mg_new(be, MG_DELETE, in, ev, opaque);
  if (!op) return AW_ENOMEM;
  int rc = be_defer_call(be->loop, delete_fire, op, &op->answer);
  if (rc) {
    mg_free_now(op);
    return rc;
  }
  *out = (be_op *)op;
  return AW_OK;
}

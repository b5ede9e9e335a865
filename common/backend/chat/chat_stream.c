/* chat_stream.c -- mapping a Chat Completions stream to a turn's progress
 * (see chat_int.h).  Pure: fed one SSE data payload at a time.
 *
 * Every chunk can carry text, so every chunk is parsed (unlike the
 * Responses stream, there is no cheap way to tell a chunk worth keeping).
 * Only choices[0] is read (n is never set, so it is the only choice); the
 * last chunk of a stream with include_usage has an empty choices array and
 * the usage.
 *
 * Tool calls arrive in pieces keyed by `index`: the first piece of a call
 * names its id and function, later pieces add to the arguments.  Servers
 * differ at the edges, so: an index beyond what was seen opens the calls up
 * to it; a piece without index goes to the last call unless it names a new
 * id; an id or name repeated whole is not appended twice (some servers send
 * the name with every piece).  Text and calls are bounded by max_text
 * together with CHAT_CALLS_MAX calls: past that, st->err says AW_ETOOBIG
 * and nothing more is kept.
 */
#include "chat_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void chat_stream_init(chat_stream *st, size_t max_text) {
  memset(st, 0, sizeof *st);
  st->max_text = max_text;
  buf_init(&st->text, max_text);
}

void chat_stream_free(chat_stream *st) {
  cJSON_Delete(st->doc);
  st->doc = NULL;
  st->delta = NULL;
  buf_free(&st->text);
  for (size_t i = 0; i < st->ncalls; i++) {
    buf_free(&st->calls[i].id);
    buf_free(&st->calls[i].name);
    buf_free(&st->calls[i].args);
  }
  free(st->calls);
  st->calls = NULL;
  st->ncalls = st->calls_cap = 0;
}

void chat_stream_reset(chat_stream *st) {
  size_t max = st->max_text;
  chat_stream_free(st);
  chat_stream_init(st, max);
}

static int fail(chat_stream *st, int err) {
  if (!st->err) st->err = err;
  return err;
}

/* The call at index i, opening the calls up to it. */
static chat_call *call_at(chat_stream *st, size_t i) {
  if (i >= CHAT_CALLS_MAX) {
    fail(st, AW_ETOOBIG);
    return NULL;
  }
  if (i >= st->calls_cap) {
    size_t cap = st->calls_cap ? st->calls_cap * 2 : 4;
    while (cap <= i) cap *= 2;
    if (cap > CHAT_CALLS_MAX) cap = CHAT_CALLS_MAX;
    chat_call *c = realloc(st->calls, cap * sizeof *c);
    if (!c) {
      fail(st, AW_ENOMEM);
      return NULL;
    }
    st->calls = c;
    st->calls_cap = cap;
  }
  while (st->ncalls <= i) {
    chat_call *c = &st->calls[st->ncalls++];
    buf_init(&c->id, CHAT_ID_MAX - 1);
    buf_init(&c->name, 256);
    buf_init(&c->args, st->max_text);
  }
  return &st->calls[i];
}

/* Append s to b, counted against the calls' share of max_text. */
static void call_add(chat_stream *st, buf *b, const char *s) {
  size_t n = strlen(s);
  if (!n || st->err) return;
  if (st->call_bytes + n > st->max_text) {
    fail(st, AW_ETOOBIG);
    return;
  }
  int rc = buf_append(b, s, n);
  if (rc) {
    fail(st, rc);
    return;
  }
  st->call_bytes += n;
}

static const char *buf_str(const buf *b) { return b->data ? b->data : ""; }

static void on_tool_calls(chat_stream *st, const cJSON *tcs) {
  const cJSON *tc;
  cJSON_ArrayForEach(tc, tcs) {
    if (st->err) return;
    const cJSON *ix = chat_get(tc, "index");
    const char *id = chat_get_str(tc, "id");
    const cJSON *fn = chat_get(tc, "function");
    const char *name = chat_get_str(fn, "name"), *args = chat_get_str(fn, "arguments");
    size_t i;
    if (cJSON_IsNumber(ix) && isfinite(ix->valuedouble) && ix->valuedouble >= 0) {
      i = ix->valuedouble < (double)CHAT_CALLS_MAX ? (size_t)ix->valuedouble : CHAT_CALLS_MAX;
    } else if (id && id[0] && (!st->ncalls || strcmp(buf_str(&st->calls[st->ncalls - 1].id), id))) {
      i = st->ncalls; /* no index: a new id opens a new call */
    } else {
      i = st->ncalls ? st->ncalls - 1 : 0;
    }
    chat_call *c = call_at(st, i);
    if (!c) return;
    if (id && id[0] && !c->id.len) {
      /* Ids are kept only when printable and short: they go back to the
       * server and into our messages. */
      size_t l = strlen(id);
      if (l < CHAT_ID_MAX && strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:") == l)
        call_add(st, &c->id, id);
    }
    if (name && strcmp(buf_str(&c->name), name)) {
      if (c->name.len + strlen(name) > 255) fail(st, AW_ETOOBIG);
      else call_add(st, &c->name, name);
    }
    if (args) call_add(st, &c->args, args);
  }
}

static void on_error_object(chat_stream *st, const cJSON *e) {
  const cJSON *code = chat_get(e, "code");
  const char *type = chat_get_str(e, "type"), *msg = chat_get_str(e, "message");
  const char *c = cJSON_IsString(code) && code->valuestring[0] ? code->valuestring : type;
  st->failed = 1;
  /* A server error is the server's trouble, not the request's: sending the
   * request again may well succeed. */
  st->failed_transient = (type && !strcmp(type, "server_error")) ||
                         (cJSON_IsNumber(code) && code->valuedouble >= 500 && code->valuedouble < 600);
  snprintf(st->error_code, sizeof st->error_code, "%s", c && c[0] ? c : "stream_error");
  snprintf(st->errmsg, sizeof st->errmsg, "%s", msg ? msg : "error in the stream");
}

static int64_t count_of(const cJSON *u, const char *k) {
  const cJSON *v = chat_get(u, k);
  return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 && v->valuedouble < 9.0e15
             ? (int64_t)v->valuedouble
             : 0;
}

int chat_stream_event(chat_stream *st, const char *data, size_t len, chat_ev *ev) {
  *ev = CHAT_EV_NONE;
  cJSON_Delete(st->doc);
  st->doc = NULL;
  st->delta = NULL;
  st->delta_len = 0;
  if (st->done || st->err) return AW_OK; /* nothing after the end counts */
  size_t a = 0, b = len;
  while (a < b && (data[a] == ' ' || data[a] == '\t' || data[a] == '\r' || data[a] == '\n')) a++;
  while (b > a && (data[b - 1] == ' ' || data[b - 1] == '\t' || data[b - 1] == '\r' || data[b - 1] == '\n')) b--;
  if (b - a == 6 && !memcmp(data + a, "[DONE]", 6)) {
    st->done = 1;
    return AW_OK;
  }
  cJSON *j = cJSON_ParseWithLength(data, len);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return AW_EPARSE;
  }
  st->doc = j;
  const cJSON *e = chat_get(j, "error");
  if (cJSON_IsObject(e)) {
    on_error_object(st, e);
    return AW_OK;
  }
  const cJSON *choices = chat_get(j, "choices"), *u = chat_get(j, "usage");
  /* The usage chunk of some servers has no choices at all. */
  if (!cJSON_IsArray(choices) && !cJSON_IsObject(u)) return AW_EPARSE;
  st->chunks++;
  const char *id = chat_get_str(j, "id");
  if (id && id[0] && !st->id[0] && strlen(id) < sizeof st->id &&
      strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.:") == strlen(id))
    snprintf(st->id, sizeof st->id, "%s", id);
  if (cJSON_IsObject(u)) {
    st->usage.present = 1;
    st->usage.prompt_tokens = count_of(u, "prompt_tokens");
    st->usage.completion_tokens = count_of(u, "completion_tokens");
    st->usage.total_tokens = count_of(u, "total_tokens");
    if (!st->usage.total_tokens) st->usage.total_tokens = st->usage.prompt_tokens + st->usage.completion_tokens;
    st->usage.cached_tokens = count_of(chat_get(u, "prompt_tokens_details"), "cached_tokens");
    st->usage.reasoning_tokens = count_of(chat_get(u, "completion_tokens_details"), "reasoning_tokens");
  }
  const char *model = chat_get_str(j, "model");
  size_t mlen = model ? strlen(model) : 0;
  if (mlen && mlen < sizeof st->model && strcmp(model, st->model) != 0) {
    int ok = 1;
    for (size_t i = 0; i < mlen; i++)
      if ((unsigned char)model[i] < 0x20 || model[i] == 0x7f) ok = 0;
    if (ok) memcpy(st->model, model, mlen + 1);
  }
  const cJSON *ch = NULL, *c;
  cJSON_ArrayForEach(c, choices) {
    const cJSON *ix = chat_get(c, "index");
    if (!ix || (cJSON_IsNumber(ix) && ix->valuedouble == 0)) {
      ch = c;
      break;
    }
  }
  if (!ch) return AW_OK;
  const char *fr = chat_get_str(ch, "finish_reason");
  if (fr && fr[0]) snprintf(st->finish, sizeof st->finish, "%s", fr);
  const cJSON *delta = chat_get(ch, "delta");
  const cJSON *tcs = chat_get(delta, "tool_calls");
  if (cJSON_IsArray(tcs)) on_tool_calls(st, tcs);
  /* A refusal is what the model says to the user instead of an answer:
   * it is the answer's text. */
  const char *text = chat_get_str(delta, "content");
  if (!text || !text[0]) text = chat_get_str(delta, "refusal");
  size_t n = text ? strlen(text) : 0;
  if (n && !st->err) {
    int rc = buf_append(&st->text, text, n);
    if (rc) {
      fail(st, rc);
      return AW_OK;
    }
    st->delta = text;
    st->delta_len = n;
    *ev = CHAT_EV_DELTA;
  }
  return AW_OK;
}

/* Does an earlier call of the round (0..i-1) have id s? */
static int id_taken(const chat_stream *st, size_t i, const char *s) {
  for (size_t k = 0; k < i; k++)
    if (!strcmp(buf_str(&st->calls[k].id), s)) return 1;
  return 0;
}

int chat_stream_calls(chat_stream *st, long round, be_tool_call *calls, size_t *n) {
  *n = 0;
  /* Each call's id is settled in order against the ids settled before it,
   * so the round's ids end unique whatever the server sent. */
  for (size_t i = 0; i < st->ncalls; i++) {
    chat_call *c = &st->calls[i];
    if (!c->name.len) return AW_EPARSE;
    if (c->id.len && !id_taken(st, i, buf_str(&c->id))) continue;
    /* llama.cpp may send no id: the output must still name its call. */
    for (unsigned j = 0;; j++) {
      buf_reset(&c->id);
      int rc = j ? buf_appendf(&c->id, "call_%ld_%zu_%u", round, i, j) : buf_appendf(&c->id, "call_%ld_%zu", round, i);
      if (rc) return rc;
      if (!id_taken(st, i, buf_str(&c->id))) break;
    }
  }
  for (size_t i = 0; i < st->ncalls; i++) {
    calls[i].id = buf_str(&st->calls[i].id);
    calls[i].name = buf_str(&st->calls[i].name);
    calls[i].arguments = buf_str(&st->calls[i].args);
  }
  *n = st->ncalls;
  return AW_OK;
}

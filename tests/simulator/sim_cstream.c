/* sim_cstream.c -- a chat completion's chunks (SSE) or its object (JSON), paced. */
#include "sim_cstream.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "sim_faults.h"
#include "sim_http.h"
#include "sim_record.h"
#include "sim_stats.h"
#include "sim_timer.h"
#include "sim_usage.h"

typedef enum { PH_ROLE = 0, PH_CONTENT, PH_FINISH, PH_USAGE, PH_DONE, PH_END } cphase;

struct scstream {
  struct MHD_Connection *conn;
  scstream_answer a;
  scstream_mode mode;
  cphase ph;
  size_t pos;       /* bytes of the text, or of the current call's arguments, sent */
  int call;         /* the call being sent */
  int call_open;    /* its first chunk (id, name) went out */
  int words;        /* words of the text sent (the drop counts them) */
  int drop, drop_after;
  int due_set;
  int64_t next_due; /* no content chunk before this (monotonic ms) */
  buf out;          /* what MHD has not taken yet */
  size_t off;
  cJSON *rec;
  int charged;      /* its usage was produced and charged (sim_usage.h) */
};

/* One chunk is a word or a piece of arguments; the JSON answer holds the
 * whole text (answer_tokens words, or outputs of a 1 MiB request). */
#define OUT_MAX (8u << 20)

scstream *scstream_new(scstream_answer *a, scstream_mode mode, int drop, cJSON *rec) {
  scstream *st = calloc(1, sizeof *st);
  if (!st) {
    free(a->text);
    cJSON_Delete(a->calls);
    a->text = NULL;
    a->calls = NULL;
    cJSON_Delete(rec);
    return NULL;
  }
  st->a = *a;
  a->text = NULL;
  a->calls = NULL;
  st->mode = mode;
  st->drop = drop;
  int words = 0;
  for (const char *p = st->a.text; p && *p; p++) words += *p == ' ';
  st->drop_after = st->a.text && words + 1 < 4 ? 1 : 3;
  buf_init(&st->out, OUT_MAX);
  st->rec = rec;
  if (rec) cJSON_AddArrayToObject(rec, "stream_events");
  if (mode == SCSTREAM_SSE) sstats_streams(1);
  return st;
}

void scstream_attach(scstream *st, struct MHD_Connection *c) { st->conn = c; }

const char *scstream_content_type(const scstream *st) {
  return st->mode == SCSTREAM_SSE ? "text/event-stream" : "application/json";
}

static cJSON *usage(const scstream *st) {
  cJSON *u = cJSON_CreateObject();
  cJSON_AddNumberToObject(u, "prompt_tokens", st->a.prompt_tokens);
  cJSON_AddNumberToObject(u, "completion_tokens", st->a.completion_tokens);
  cJSON_AddNumberToObject(u, "total_tokens", st->a.prompt_tokens + st->a.completion_tokens);
  cJSON *pd = cJSON_AddObjectToObject(u, "prompt_tokens_details");
  cJSON_AddNumberToObject(pd, "cached_tokens", st->a.cached_tokens);
  cJSON_AddNumberToObject(pd, "audio_tokens", 0);
  cJSON *cd = cJSON_AddObjectToObject(u, "completion_tokens_details");
  cJSON_AddNumberToObject(cd, "reasoning_tokens", st->a.reasoning_tokens);
  cJSON_AddNumberToObject(cd, "audio_tokens", 0);
  cJSON_AddNumberToObject(cd, "accepted_prediction_tokens", 0);
  cJSON_AddNumberToObject(cd, "rejected_prediction_tokens", 0);
  return u;
}

/* The usage goes out now (the usage chunk, or the object): charge it, once. */
static void charge(scstream *st) {
  if (st->charged) return;
  st->charged = 1;
  susage_charge("chat", st->a.id, st->a.model, st->a.prompt_tokens, st->a.completion_tokens, st->a.cached_tokens,
                st->a.reasoning_tokens);
}

/* The fields every chunk and the object share. */
static cJSON *head(const scstream *st, const char *object) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", st->a.id);
  cJSON_AddStringToObject(o, "object", object);
  cJSON_AddNumberToObject(o, "created", (double)st->a.created);
  cJSON_AddStringToObject(o, "model", st->a.model);
  cJSON_AddStringToObject(o, "service_tier", "default");
  return o;
}

/* A chunk with one choice carrying delta (taken), or none (the usage
 * chunk: delta NULL). */
static cJSON *chunk(const scstream *st, cJSON *delta, const char *finish) {
  cJSON *o = head(st, "chat.completion.chunk");
  cJSON *choices = cJSON_AddArrayToObject(o, "choices");
  if (delta) {
    cJSON *c = cJSON_CreateObject();
    cJSON_AddNumberToObject(c, "index", 0);
    cJSON_AddItemToObject(c, "delta", delta);
    cJSON_AddNullToObject(c, "logprobs");
    cJSON_AddItemToObject(c, "finish_reason", finish ? cJSON_CreateString(finish) : cJSON_CreateNull());
    cJSON_AddItemToArray(choices, c);
  }
  if (st->a.include_usage) cJSON_AddItemToObject(o, "usage", delta ? cJSON_CreateNull() : usage(st));
  return o;
}

/* Write one `data:` line (o taken; NULL writes [DONE]) and record it. */
static int put(scstream *st, cJSON *o) {
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  int rc = (o && !s) ? AW_ENOMEM : buf_appendf(&st->out, "data: %s\n\n", o ? s : "[DONE]");
  free(s);
  cJSON *events = st->rec ? cJSON_GetObjectItemCaseSensitive(st->rec, "stream_events") : NULL;
  if (events) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNullToObject(e, "event");
    cJSON_AddItemToObject(e, "data", o ? o : cJSON_CreateString("[DONE]"));
    cJSON_AddItemToArray(events, e);
  } else {
    cJSON_Delete(o);
  }
  return rc;
}

/* A piece of arguments: a run of word characters (UTF-8 bytes count as
 * such, so a character is never split) or of anything else, as a model's
 * tokens split `{"location":"Paris"}` into `{"`, `location`, `":"`... */
static int wordch(char c) { return isalnum((unsigned char)c) || c == '_' || (c & 0x80); }
static size_t piece_end(const char *s, size_t pos) {
  size_t e = pos + 1;
  while (s[e] && wordch(s[e]) == wordch(s[pos])) e++;
  return e;
}

static cJSON *call_delta(int index, const cJSON *call, const char *args_piece, int first) {
  cJSON *tc = cJSON_CreateObject();
  cJSON_AddNumberToObject(tc, "index", index);
  if (first) {
    cJSON_AddItemToObject(tc, "id", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(call, "id"), 1));
    cJSON_AddStringToObject(tc, "type", "function");
  }
  cJSON *fn = cJSON_AddObjectToObject(tc, "function");
  if (first) cJSON_AddItemToObject(fn, "name", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(call, "name"), 1));
  cJSON_AddStringToObject(fn, "arguments", args_piece);
  cJSON *d = cJSON_CreateObject();
  cJSON_AddItemToArray(cJSON_AddArrayToObject(d, "tool_calls"), tc);
  return d;
}

/* The next content chunk: a word of the text, or a tool call's opening or
 * a piece of its arguments.  1: one was sent; 0: none left; <0: error. */
static int content(scstream *st) {
  if (st->a.text) {
    const char *t = st->a.text;
    size_t s = st->pos, e = s;
    if (!t[s]) return 0;
    if (t[e] == ' ') e++;
    while (t[e] && t[e] != ' ') e++;
    char *piece = strndup(t + s, e - s);
    if (!piece) return AW_ENOMEM;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "content", piece);
    free(piece);
    st->pos = e;
    st->words++;
    return put(st, chunk(st, d, NULL)) ? AW_ENOMEM : 1;
  }
  for (;;) {
    const cJSON *c = cJSON_GetArrayItem(st->a.calls, st->call);
    if (!c) return 0;
    if (!st->call_open) {
      st->call_open = 1;
      return put(st, chunk(st, call_delta(st->call, c, "", 1), NULL)) ? AW_ENOMEM : 1;
    }
    const char *args = cJSON_GetObjectItemCaseSensitive(c, "arguments")->valuestring;
    if (!args[st->pos]) {
      st->call++;
      st->call_open = 0;
      st->pos = 0;
      continue;
    }
    size_t e = piece_end(args, st->pos);
    char *piece = strndup(args + st->pos, e - st->pos);
    if (!piece) return AW_ENOMEM;
    cJSON *d = call_delta(st->call, c, piece, 0);
    free(piece);
    st->pos = e;
    return put(st, chunk(st, d, NULL)) ? AW_ENOMEM : 1;
  }
}

/* Produce the next SSE step into out.  0, or -1 to end the stream. */
static int step(scstream *st, int delay_ms) {
  cJSON *d;
  switch (st->ph) {
  case PH_ROLE:
    d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "role", "assistant");
    cJSON_AddItemToObject(d, "content", st->a.text ? cJSON_CreateString("") : cJSON_CreateNull());
    cJSON_AddNullToObject(d, "refusal");
    st->ph = PH_CONTENT;
    return put(st, chunk(st, d, NULL)) ? -1 : 0;
  case PH_CONTENT: {
    int rc = content(st);
    if (rc < 0) return -1;
    if (rc == 0) st->ph = PH_FINISH;
    else if (delay_ms > 0) st->next_due = stimer_now_ms() + delay_ms;
    return 0;
  }
  case PH_FINISH:
    st->ph = st->a.include_usage ? PH_USAGE : PH_DONE;
    return put(st, chunk(st, cJSON_CreateObject(), st->a.finish)) ? -1 : 0;
  case PH_USAGE:
    st->ph = PH_DONE;
    charge(st);
    return put(st, chunk(st, NULL, NULL)) ? -1 : 0;
  case PH_DONE:
    st->ph = PH_END;
    return put(st, NULL) ? -1 : 0;
  case PH_END:
    break;
  }
  return 0;
}

/* The chat.completion object, into out and the record. */
static int object(scstream *st) {
  cJSON *o = head(st, "chat.completion");
  cJSON *c = cJSON_CreateObject();
  cJSON_AddNumberToObject(c, "index", 0);
  cJSON *m = cJSON_AddObjectToObject(c, "message");
  cJSON_AddStringToObject(m, "role", "assistant");
  cJSON_AddItemToObject(m, "content", st->a.text ? cJSON_CreateString(st->a.text) : cJSON_CreateNull());
  cJSON_AddNullToObject(m, "refusal");
  cJSON_AddArrayToObject(m, "annotations");
  if (st->a.calls) {
    cJSON *tcs = cJSON_AddArrayToObject(m, "tool_calls");
    const cJSON *call;
    cJSON_ArrayForEach(call, st->a.calls) {
      cJSON *tc = cJSON_CreateObject();
      cJSON_AddItemToObject(tc, "id", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(call, "id"), 1));
      cJSON_AddStringToObject(tc, "type", "function");
      cJSON *fn = cJSON_AddObjectToObject(tc, "function");
      cJSON_AddItemToObject(fn, "name", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(call, "name"), 1));
      cJSON_AddItemToObject(fn, "arguments", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(call, "arguments"), 1));
      cJSON_AddItemToArray(tcs, tc);
    }
  }
  cJSON_AddNullToObject(c, "logprobs");
  cJSON_AddStringToObject(c, "finish_reason", st->a.finish);
  cJSON_AddItemToArray(cJSON_AddArrayToObject(o, "choices"), c);
  cJSON_AddItemToObject(o, "usage", usage(st));
  charge(st);
  char *s = cJSON_PrintUnformatted(o);
  int rc = s ? buf_appends(&st->out, s) : AW_ENOMEM;
  free(s);
  if (st->rec) cJSON_AddItemToObject(st->rec, "response_body", o);
  else cJSON_Delete(o);
  st->ph = PH_END;
  return rc;
}

/* Suspend until due; 0 (return 0 to MHD) or -1 (end the answer). */
static int wait_until(scstream *st, int64_t due) {
  return shttp_suspend_until(st->conn, due) == AW_OK ? 0 : -1; /* stopping, or the timer heap is full */
}

ssize_t scstream_read(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  scstream *st = cls;
  for (;;) {
    if (st->off < st->out.len) {
      size_t n = st->out.len - st->off;
      if (n > max) n = max;
      memcpy(out, st->out.data + st->off, n);
      st->off += n;
      if (st->off == st->out.len) {
        buf_reset(&st->out);
        st->off = 0;
      }
      return (ssize_t)n;
    }
    if (st->ph == PH_END) return MHD_CONTENT_READER_END_OF_STREAM;
    if (shttp_shutting_down()) return MHD_CONTENT_READER_END_WITH_ERROR;
    /* Dropped once the words before it went out (MHD calls again only
     * after the previous chunk was sent). */
    if (st->drop && st->words >= st->drop_after) {
      log_ctx ctx = {.run_id = st->a.id};
      log_info(&ctx, "dropping chat completion stream (injected fault) after %d words", st->words);
      return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    sfault_cfg c;
    sfault_get(&c);
    int64_t now = stimer_now_ms();
    if (st->mode == SCSTREAM_JSON) {
      /* The whole answer, when a stream of it would have ended. */
      if (!st->due_set) {
        st->due_set = 1;
        st->next_due = now + (int64_t)c.token_delay_ms * st->a.completion_tokens;
      }
      if (now < st->next_due) return wait_until(st, st->next_due) ? MHD_CONTENT_READER_END_WITH_ERROR : 0;
      if (object(st) != AW_OK) return MHD_CONTENT_READER_END_WITH_ERROR;
      continue;
    }
    if (st->ph == PH_CONTENT && now < st->next_due)
      return wait_until(st, st->next_due) ? MHD_CONTENT_READER_END_WITH_ERROR : 0;
    if (step(st, c.token_delay_ms)) return MHD_CONTENT_READER_END_WITH_ERROR;
  }
}

void scstream_free(void *cls) {
  scstream *st = cls;
  /* A reader that answered nothing (freed by an injected apply_then_fail,
   * or its client left before the first byte) has no exchange to record. */
  int answered = st->ph != PH_ROLE;
  if (st->rec && !answered) {
    cJSON_Delete(st->rec);
  } else if (st->rec) {
    if (!cJSON_GetObjectItemCaseSensitive(st->rec, "response_body")) cJSON_AddNullToObject(st->rec, "response_body");
    srec_write(st->rec);
  }
  buf_free(&st->out);
  free(st->a.text);
  cJSON_Delete(st->a.calls);
  if (st->mode == SCSTREAM_SSE) sstats_streams(-1);
  free(st);
}

/* sim_responses.c -- Responses API: create/retrieve/cancel/delete, the
 * response state machine and its event log. */
#include "sim_responses.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sim_conversations.h"
#include "sim_faults.h"
#include "sim_fsearch.h"
#include "sim_model.h"
#include "sim_usage.h"
#include "sim_req.h"
#include "sim_rstream.h"
#include "sim_rtools.h"
#include "sim_stats.h"
#include "sim_timer.h"
#include "sim_turn.h"

/* One logged event: its type and its printed JSON (sequence_number in). */
typedef struct rev {
  char *type;
  char *json;
} rev;

typedef enum { PH_START = 0, PH_TOKENS, PH_END } rphase;

/* Per-response state (sobj.ext). */
typedef struct rstate {
  srun_status status;
  rphase ph;
  char conv_id[40];   /* "" when not in a conversation */
  int background;
  char *answer;       /* the text to stream (NULL: function calls) */
  size_t emit_pos;
  int tokens_total, tokens_done, max_tokens;
  int input_tokens;
  int cached_tokens;    /* of input_tokens: the instructions, when the history had been sent before */
  int reasoning_tokens; /* added to output_tokens by an o-series model (sim_usage.h) */
  int charged;          /* its usage was charged (sim_usage.h): once per response */
  cJSON *calls;       /* [{name, arguments, label}] or NULL */
  cJSON *inputs;      /* the input items, stored form, for input_items */
  sfault_run fault;
  char fault_code[32];
  char msg_id[40];
  int msg_index;      /* the message's place in output (1 after a file_search_call) */
  sfs_answer *fs;     /* the file search the answer quotes (sim_fsearch.h), or NULL */
  int fs_results;     /* include[] asked for file_search_call.results */
  int fs_item;        /* fs came from the file_search tool: a file_search_call item (not from input_files) */
  srt_ci *ci;         /* the code interpreter call (sim_rtools.h), or NULL */
  rev *ev;
  long nev, cap;
} rstate;

static long g_counts[RS_COUNT];

static int is(const cJSON *v, const char *s) { return cJSON_IsString(v) && strcmp(v->valuestring, s) == 0; }
static rstate *st_of(const sobj *resp) { return resp->ext; }

static void rstate_free(void *p) {
  rstate *rs = p;
  g_counts[rs->status]--;
  for (long i = 0; i < rs->nev; i++) free(rs->ev[i].type), free(rs->ev[i].json);
  free(rs->ev);
  free(rs->answer);
  cJSON_Delete(rs->calls);
  cJSON_Delete(rs->inputs);
  sfs_answer_free(rs->fs);
  srt_ci_free(rs->ci);
  free(rs);
}

void sresp_counts(long out[RS_COUNT]) { memcpy(out, g_counts, sizeof g_counts); }
long sresp_event_count(const sobj *resp) { return st_of(resp)->nev; }
int sresp_ended(const sobj *resp) { return !srun_status_active(st_of(resp)->status); }

/* ---- the event log ------------------------------------------------------ */

/* Log one event: o gets "type" first and "sequence_number", and is freed.
 * An event that cannot be logged (ENOMEM) is lost, which a reader sees as
 * a gap in sequence numbers: acceptable for a test double. */
static void emit(sobj *resp, const char *type, cJSON *o) {
  rstate *rs = st_of(resp);
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "type", type);
  for (cJSON *it = o ? o->child : NULL; it;) {
    cJSON *next = it->next;
    cJSON_AddItemToObject(e, it->string, cJSON_DetachItemViaPointer(o, it));
    it = next;
  }
  cJSON_Delete(o);
  cJSON_AddNumberToObject(e, "sequence_number", (double)rs->nev);
  if (rs->nev == rs->cap) {
    long nc = rs->cap ? rs->cap * 2 : 16;
    rev *v = realloc(rs->ev, (size_t)nc * sizeof *v);
    if (!v) goto out;
    rs->ev = v;
    rs->cap = nc;
  }
  char *json = cJSON_PrintUnformatted(e), *t = strdup(type);
  if (!json || !t) {
    free(json);
    free(t);
    goto out;
  }
  rs->ev[rs->nev++] = (rev){t, json};
out:
  cJSON_Delete(e);
}

/* emit() for sim_rtools' events. */
static void emit_any(void *resp, const char *type, cJSON *o) { emit(resp, type, o); }

/* An event carrying a snapshot of the response. */
static void emit_resp(sobj *resp, const char *type) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToObject(o, "response", cJSON_Duplicate(resp->json, 1));
  emit(resp, type, o);
}

long sresp_copy_events(sobj *resp, long from, long max, buf *out, cJSON *rec, int *deltas) {
  rstate *rs = st_of(resp);
  long n = 0;
  for (long i = from < 0 ? 0 : from; i < rs->nev && n < max; i++, n++) {
    if (out && buf_appendf(out, "event: %s\ndata: %s\n\n", rs->ev[i].type, rs->ev[i].json) != AW_OK) return -1;
    if (rec) {
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "event", rs->ev[i].type);
      cJSON *d = cJSON_Parse(rs->ev[i].json);
      cJSON_AddItemToObject(e, "data", d ? d : cJSON_CreateNull());
      cJSON_AddItemToArray(rec, e);
    }
    if (deltas && strstr(rs->ev[i].type, ".delta")) (*deltas)++;
  }
  return n;
}

/* ---- the state machine -------------------------------------------------- */

static void set_status(sobj *resp, srun_status st) {
  rstate *rs = st_of(resp);
  srun_status old = rs->status;
  if (old == st) return;
  rs->status = st;
  g_counts[old]--;
  g_counts[st]++;
  jset(resp->json, "status", cJSON_CreateString(srun_status_name(st)));
  if (st == RS_COMPLETED) jset(resp->json, "completed_at", cJSON_CreateNumber((double)sstore_unix_now()));
  if (!srun_status_active(st)) {
    rs->ph = PH_END;
    sobj *conv = rs->conv_id[0] ? sstore_get(rs->conv_id, SK_CONV) : NULL;
    if (conv) sconv_unlock(conv, resp->id);
  }
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = {.conversation_id = rs->conv_id[0] ? rs->conv_id : NULL, .run_id = resp->id};
    log_debug(&ctx, "response %s -> %s", srun_status_name(old), srun_status_name(st));
  }
}

/* The response's usage, charged once (sim_usage.h): output = the tokens
 * written plus the reasoning of an o-series model. */
static void set_usage(sobj *resp) {
  rstate *rs = st_of(resp);
  int output = rs->tokens_done + rs->reasoning_tokens;
  cJSON *u = cJSON_CreateObject();
  cJSON_AddNumberToObject(u, "input_tokens", rs->input_tokens);
  cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "input_tokens_details"), "cached_tokens", rs->cached_tokens);
  cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(u, "input_tokens_details"), "cache_write_tokens", 0);
  cJSON_AddNumberToObject(u, "output_tokens", output);
  cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "output_tokens_details"), "reasoning_tokens",
                          rs->reasoning_tokens);
  cJSON_AddNumberToObject(u, "total_tokens", rs->input_tokens + output);
  jset(resp->json, "usage", u);
  if (!rs->charged) {
    rs->charged = 1;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(resp->json, "model");
    susage_charge("responses", resp->id, cJSON_IsString(model) ? model->valuestring : "", rs->input_tokens, output,
                  rs->cached_tokens, rs->reasoning_tokens);
  }
}

/* The response ends: usage, output items appended to its conversation
 * (completed or incomplete only: a failed answer is not history), the
 * terminal event. */
static void finish(sobj *resp, srun_status st, const char *reason) {
  rstate *rs = st_of(resp);
  set_usage(resp);
  if (reason) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "reason", reason);
    jset(resp->json, "incomplete_details", d);
  }
  sobj *conv = rs->conv_id[0] ? sstore_get(rs->conv_id, SK_CONV) : NULL;
  if (conv && (st == RS_COMPLETED || st == RS_INCOMPLETE)) {
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(resp->json, "output")) (void)sconv_append(conv, it);
  }
  set_status(resp, st);
  emit_resp(resp, st == RS_COMPLETED ? "response.completed" : st == RS_FAILED ? "response.failed"
                                                                             : "response.incomplete");
}

static void fail(sobj *resp, const char *code, const char *msg) {
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "code", code);
  cJSON_AddStringToObject(e, "message", msg);
  jset(resp->json, "error", e);
  finish(resp, RS_FAILED, NULL);
}

static cJSON *item_event(int index, const cJSON *item) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "output_index", index);
  cJSON_AddItemToObject(o, "item", cJSON_Duplicate(item, 1));
  return o;
}

/* The function_call items of this round, each streamed whole (one
 * arguments delta: the scripted model "writes" them at once). */
static void emit_calls(sobj *resp) {
  rstate *rs = st_of(resp);
  cJSON *output = cJSON_GetObjectItemCaseSensitive(resp->json, "output");
  const cJSON *c;
  int i = 0;
  cJSON_ArrayForEach(c, rs->calls) {
    char id[40], call_id[40];
    sstore_make_id("fc_", id, sizeof id);
    sstore_call_id(call_id, sizeof call_id);
    const char *args = cJSON_GetObjectItemCaseSensitive(c, "arguments")->valuestring;
    const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
    cJSON *it = cJSON_CreateObject();
    cJSON_AddStringToObject(it, "type", "function_call");
    cJSON_AddStringToObject(it, "id", id);
    cJSON_AddStringToObject(it, "call_id", call_id);
    cJSON_AddStringToObject(it, "name", name);
    cJSON_AddStringToObject(it, "arguments", "");
    cJSON_AddStringToObject(it, "status", "in_progress");
    emit(resp, "response.output_item.added", item_event(i, it));
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "item_id", id);
    cJSON_AddNumberToObject(d, "output_index", i);
    cJSON_AddStringToObject(d, "delta", args);
    emit(resp, "response.function_call_arguments.delta", d);
    d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "item_id", id);
    cJSON_AddStringToObject(d, "name", name);
    cJSON_AddNumberToObject(d, "output_index", i);
    cJSON_AddStringToObject(d, "arguments", args);
    emit(resp, "response.function_call_arguments.done", d);
    jset(it, "arguments", cJSON_CreateString(args));
    jset(it, "status", cJSON_CreateString("completed"));
    emit(resp, "response.output_item.done", item_event(i, it));
    cJSON_AddItemToArray(output, it);
    rs->tokens_done += smodel_count_tokens(args);
    i++;
  }
}

static cJSON *text_part(const char *text) {
  cJSON *p = cJSON_CreateObject();
  cJSON_AddStringToObject(p, "type", "output_text");
  cJSON_AddStringToObject(p, "text", text);
  cJSON_AddArrayToObject(p, "annotations");
  cJSON_AddArrayToObject(p, "logprobs");
  return p;
}

static cJSON *part_event(const rstate *rs, const char *key, cJSON *v) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "item_id", rs->msg_id);
  cJSON_AddNumberToObject(o, "output_index", rs->msg_index);
  cJSON_AddNumberToObject(o, "content_index", 0);
  cJSON_AddItemToObject(o, key, v);
  return o;
}

static cJSON *msg_item(sobj *resp) {
  return cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(resp->json, "output"), st_of(resp)->msg_index);
}

/* The file_search_call item before the message, streamed as the API does:
 * added (in_progress), in_progress, searching, completed, done (completed,
 * with its queries, and its results when include[] asked for them). */
static void emit_file_search(sobj *resp) {
  rstate *rs = st_of(resp);
  char id[40];
  sstore_make_id("fs_", id, sizeof id);
  cJSON *it = cJSON_CreateObject();
  cJSON_AddStringToObject(it, "id", id);
  cJSON_AddStringToObject(it, "type", "file_search_call");
  cJSON_AddStringToObject(it, "status", "in_progress");
  cJSON_AddArrayToObject(it, "queries");
  cJSON_AddNullToObject(it, "results");
  emit(resp, "response.output_item.added", item_event(0, it));
  static const char *const phases[] = {"response.file_search_call.in_progress", "response.file_search_call.searching",
                                       "response.file_search_call.completed"};
  for (size_t i = 0; i < sizeof phases / sizeof *phases; i++) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "output_index", 0);
    cJSON_AddStringToObject(d, "item_id", id);
    emit(resp, phases[i], d);
  }
  jset(it, "status", cJSON_CreateString("completed"));
  cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(it, "queries"), cJSON_CreateString(rs->fs->query));
  if (rs->fs_results) jset(it, "results", cJSON_Duplicate(rs->fs->results, 1));
  emit(resp, "response.output_item.done", item_event(0, it));
  cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(resp->json, "output"), it);
  rs->msg_index = 1;
}

/* queued/in_progress -> the output begins: calls (then the end), or the
 * message item and its empty text part. */
static void start(sobj *resp) {
  rstate *rs = st_of(resp);
  if (rs->status == RS_QUEUED) {
    set_status(resp, RS_IN_PROGRESS);
    emit_resp(resp, "response.in_progress");
  }
  if (rs->fault == SFAULT_RUN_FAIL) {
    fail(resp, rs->fault_code, "Sorry, something went wrong. (injected by the simulator)");
    return;
  }
  if (rs->fault == SFAULT_RUN_EXPIRE) {
    finish(resp, RS_INCOMPLETE, "max_output_tokens");
    return;
  }
  if (rs->calls) {
    emit_calls(resp);
    finish(resp, RS_COMPLETED, NULL);
    return;
  }
  if (rs->fs && rs->fs_item) emit_file_search(resp);
  if (rs->ci) {
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(resp->json, "output"),
                         srt_emit_ci(rs->ci, 0, emit_any, resp));
    rs->msg_index = 1;
  }
  sstore_make_id("msg_", rs->msg_id, sizeof rs->msg_id);
  cJSON *m = cJSON_CreateObject();
  cJSON_AddStringToObject(m, "id", rs->msg_id);
  cJSON_AddStringToObject(m, "type", "message");
  cJSON_AddStringToObject(m, "status", "in_progress");
  cJSON_AddStringToObject(m, "role", "assistant");
  cJSON_AddArrayToObject(m, "content");
  emit(resp, "response.output_item.added", item_event(rs->msg_index, m));
  cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(m, "content"), text_part(""));
  cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(resp->json, "output"), m);
  emit(resp, "response.content_part.added", part_event(rs, "part", text_part("")));
  rs->ph = PH_TOKENS;
}

/* One token (a word with its leading space, as the run streams send). */
static int token(sobj *resp) {
  rstate *rs = st_of(resp);
  const char *a = rs->answer;
  size_t s = rs->emit_pos, e = s;
  if (a[e] == ' ') e++;
  while (a[e] && a[e] != ' ') e++;
  rs->emit_pos = e;
  rs->tokens_done++;
  char *piece = strndup(a + s, e - s), *text = strndup(a, e);
  cJSON *part = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(msg_item(resp), "content"), 0);
  if (text) jset(part, "text", cJSON_CreateString(text));
  cJSON *d = part_event(rs, "delta", cJSON_CreateString(piece ? piece : ""));
  cJSON_AddArrayToObject(d, "logprobs");
  emit(resp, "response.output_text.delta", d);
  free(piece);
  free(text);
  return rs->tokens_done < rs->tokens_total && !(rs->max_tokens && rs->tokens_done >= rs->max_tokens);
}

static void end_text(sobj *resp) {
  rstate *rs = st_of(resp);
  int cut = rs->tokens_done < rs->tokens_total;
  cJSON *m = msg_item(resp);
  cJSON *part = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(m, "content"), 0);
  const char *text = cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring;
  if (rs->fs && !cut) {
    /* The citation of the quote, at its end (index counts characters),
     * once the text holds all of it. */
    cJSON *an = cJSON_CreateObject();
    cJSON_AddStringToObject(an, "type", "file_citation");
    cJSON_AddStringToObject(an, "file_id", rs->fs->file_id);
    cJSON_AddNumberToObject(an, "index", (double)sfs_chars(text, strlen(text)));
    cJSON_AddStringToObject(an, "filename", rs->fs->filename);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(part, "annotations"), cJSON_Duplicate(an, 1));
    cJSON *d = part_event(rs, "annotation", an);
    cJSON_AddNumberToObject(d, "annotation_index", 0);
    emit(resp, "response.output_text.annotation.added", d);
  }
  if (rs->ci && !cut) {
    /* The generated file, cited over its name at the end of the text. */
    cJSON *an = srt_ci_annotation(rs->ci, text);
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(part, "annotations"), cJSON_Duplicate(an, 1));
    cJSON *d = part_event(rs, "annotation", an);
    cJSON_AddNumberToObject(d, "annotation_index", 0);
    emit(resp, "response.output_text.annotation.added", d);
  }
  cJSON *d = part_event(rs, "text", cJSON_CreateString(text));
  cJSON_AddArrayToObject(d, "logprobs");
  emit(resp, "response.output_text.done", d);
  emit(resp, "response.content_part.done", part_event(rs, "part", cJSON_Duplicate(part, 1)));
  jset(m, "status", cJSON_CreateString(cut ? "incomplete" : "completed"));
  emit(resp, "response.output_item.done", item_event(rs->msg_index, m));
  finish(resp, cut ? RS_INCOMPLETE : RS_COMPLETED, cut ? "max_output_tokens" : NULL);
}

static void schedule(const char *id, int64_t delay_ms);

/* Timer callback: advance one response by one step (all of them when
 * token_delay_ms is 0), then re-arm. */
static void drive(void *arg, int shutting_down) {
  char *id = arg;
  if (!shutting_down) {
    sfault_cfg c;
    sfault_get(&c);
    sstore_lock();
    sobj *resp = sstore_get(id, SK_RESP);
    rstate *rs = resp ? st_of(resp) : NULL;
    int more = 0;
    if (rs && srun_status_active(rs->status)) {
      if (rs->ph == PH_START) start(resp);
      while (rs->ph == PH_TOKENS) {
        if (!token(resp)) end_text(resp);
        else if (c.token_delay_ms > 0) {
          more = 1;
          break;
        }
      }
    }
    sstore_unlock();
    if (more) schedule(id, c.token_delay_ms); /* the next timer gets its own copy */
  }
  free(id);
}

static void schedule(const char *id, int64_t delay_ms) {
  char *copy = strdup(id);
  if (!copy || stimer_add(stimer_now_ms() + (delay_ms > 0 ? delay_ms : 0), drive, copy) != AW_OK) {
    log_ctx ctx = {.run_id = id};
    log_warn(&ctx, "cannot schedule response progress");
    free(copy);
  }
}

/* ---- what the model does ------------------------------------------------ */

/* Does this array of stored items hold a user message? */
static int has_user_msg(const cJSON *items) {
  const cJSON *it;
  cJSON_ArrayForEach(it, items) if (is(cJSON_GetObjectItemCaseSensitive(it, "role"), "user")) return 1;
  return 0;
}

/* At most this many previous responses are followed back for the turn's
 * user message (a chain of tool rounds is far shorter). */
#define CHAIN_MAX 256

/* The history the model sees, oldest first (borrowed items in a reference
 * array): the previous responses' inputs and outputs, followed back through
 * previous_response_id to the one whose input holds a user message (so a
 * chain of tool rounds still sees the turn's question and every round of
 * it), then the input; or the conversation's items (which already hold this
 * request's input); or the input. */
static cJSON *history(sobj *prev, sobj *conv, const cJSON *inputs) {
  cJSON *h = cJSON_CreateArray();
  const cJSON *it;
  sobj *chain[CHAIN_MAX];
  int nchain = 0;
  for (sobj *p = prev; p && nchain < CHAIN_MAX;) {
    chain[nchain++] = p;
    if (has_user_msg(st_of(p)->inputs)) break;
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(p->json, "previous_response_id");
    p = cJSON_IsString(pid) ? sstore_get(pid->valuestring, SK_RESP) : NULL;
  }
  while (nchain-- > 0) {
    cJSON_ArrayForEach(it, st_of(chain[nchain])->inputs) cJSON_AddItemReferenceToArray(h, (cJSON *)it);
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(chain[nchain]->json, "output"))
      cJSON_AddItemReferenceToArray(h, (cJSON *)it);
  }
  if (conv) {
    for (size_t i = 0; i < conv->kids.n; i++) cJSON_AddItemReferenceToArray(h, conv->kids.v[i]->json);
  } else {
    cJSON_ArrayForEach(it, inputs) cJSON_AddItemReferenceToArray(h, (cJSON *)it);
  }
  return h;
}

/* Responses tools {type:function,name,...} in the Assistants shape
 * sim_tools reads ({type:function,function:{name}}); the same for a
 * tool_choice naming a function. */
static cJSON *as_run_tools(const cJSON *tools) {
  cJSON *out = cJSON_CreateArray();
  const cJSON *t;
  cJSON_ArrayForEach(t, tools) {
    if (!is(cJSON_GetObjectItemCaseSensitive(t, "type"), "function")) continue;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "function");
    cJSON_AddItemToObject(cJSON_AddObjectToObject(o, "function"), "name",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(t, "name"), 1));
    cJSON_AddItemToArray(out, o);
  }
  return out;
}

static cJSON *as_run_choice(const cJSON *choice) {
  if (!cJSON_IsObject(choice)) return choice ? cJSON_Duplicate(choice, 1) : NULL;
  if (!is(cJSON_GetObjectItemCaseSensitive(choice, "type"), "function")) return cJSON_CreateString("none");
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "type", "function");
  cJSON_AddItemToObject(cJSON_AddObjectToObject(o, "function"), "name",
                        cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(choice, "name"), 1));
  return o;
}

/* A turn that answers the user's question (no call to make, no outputs to
 * report) with a file_search tool naming vector stores searches them
 * (sim_fsearch.h): rs->fs is set when something was found.  tool_choice
 * "none" turns every tool off. */
static int file_search(rstate *rs, const cJSON *hist, const cJSON *body) {
  const cJSON *t, *fst = NULL;
  cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(body, "tools"))
    if (!fst && is(cJSON_GetObjectItemCaseSensitive(t, "type"), "file_search")) fst = t;
  if (!fst || is(cJSON_GetObjectItemCaseSensitive(body, "tool_choice"), "none")) return AW_OK;
  const cJSON *user = NULL, *it;
  cJSON_ArrayForEach(it, hist) if (is(cJSON_GetObjectItemCaseSensitive(it, "role"), "user")) user = it;
  if (!user) return AW_OK;
  buf q;
  buf_init(&q, 1 << 20);
  sconv_item_text(user, &q);
  const cJSON *mx = cJSON_GetObjectItemCaseSensitive(fst, "max_num_results");
  int rc = sfs_answer_question(cJSON_GetObjectItemCaseSensitive(fst, "vector_store_ids"), q.data ? q.data : "",
                               cJSON_IsNumber(mx) ? mx->valueint : 20, &rs->fs);
  buf_free(&q);
  const cJSON *inc;
  cJSON_ArrayForEach(inc, cJSON_GetObjectItemCaseSensitive(body, "include"))
    rs->fs_results |= is(inc, "file_search_call.results");
  return rc;
}

/* Decide the output (rs->answer or rs->calls) from the history
 * (sim_turn: the next round of calls, or the answer from the turn's
 * outputs, or the scripted answer).  Usage counts, as for runs, the user
 * message and the instructions (the instructions and the outputs when
 * answering outputs). */
static int plan(rstate *rs, const cJSON *hist, const cJSON *body, int answer_tokens) {
  const cJSON *instr = cJSON_GetObjectItemCaseSensitive(body, "instructions");
  const char *instr_s = cJSON_IsString(instr) ? instr->valuestring : NULL;
  cJSON *tools = as_run_tools(cJSON_GetObjectItemCaseSensitive(body, "tools"));
  cJSON *choice = as_run_choice(cJSON_GetObjectItemCaseSensitive(body, "tool_choice"));
  int parallel = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(body, "parallel_tool_calls"));
  sturn t;
  int rc = sturn_decide(hist, instr_s, tools, choice, parallel, answer_tokens, &t);
  cJSON_Delete(tools);
  cJSON_Delete(choice);
  if (rc) return rc;
  /* A turn without calls: its images, input files and code interpreter
   * (sim_rtools.h) first, then the file_search tool. */
  srt_turn hosted = {0};
  if (!t.calls && !t.from_outputs && (rc = srt_decide(hist, body, &hosted)) != AW_OK) {
    sturn_clear(&t);
    return rc;
  }
  rs->ci = hosted.ci;
  rs->fs = hosted.doc;
  hosted.ci = NULL;
  hosted.doc = NULL;
  if (!t.calls && !t.from_outputs && !rs->ci && !rs->fs) {
    if ((rc = file_search(rs, hist, body)) != AW_OK) {
      sturn_clear(&t);
      return rc;
    }
    rs->fs_item = rs->fs != NULL;
  }
  const char *says = rs->ci ? rs->ci->out->text : rs->fs ? rs->fs->text : NULL;
  if (says || hosted.ack[0]) {
    /* The answer quotes the document or presents the file instead of the
     * scripted text; images are acknowledged first. */
    char *a = NULL;
    if (asprintf(&a, "%s%s", hosted.ack, says ? says : t.answer ? t.answer : "") < 0) a = NULL;
    free(t.answer);
    t.answer = a;
    if (!t.answer) return AW_ENOMEM;
    t.tokens = smodel_count_tokens(t.answer);
  }
  rs->calls = t.calls;
  rs->answer = t.answer;
  rs->tokens_total = t.calls ? 0 : t.tokens;
  rs->input_tokens = smodel_count_tokens(instr_s) + (t.from_outputs ? t.outputs : t.user_tokens);
  /* Deterministic stand-ins for what a real API reports: the instructions
   * count as cached once the history holds more than this request's first
   * item (earlier turns or rounds were sent before with the same prefix);
   * an o-series model reasons one token per word of the question. */
  rs->cached_tokens = cJSON_GetArraySize(hist) > 1 ? smodel_count_tokens(instr_s) : 0;
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(body, "model");
  if (cJSON_IsString(model) && susage_reasoning_model(model->valuestring))
    rs->reasoning_tokens = t.user_tokens > 0 ? t.user_tokens : 1;
  return AW_OK;
}

/* ---- create ------------------------------------------------------------- */

static int check_conversation(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsNull(v) || cJSON_IsString(v)) return 0;
  if (cJSON_IsObject(v) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "id")) && cJSON_GetArraySize(v) == 1)
    return 0;
  return sreq_bad_type(r, name, "a string or an object {id}", v);
}

static int check_input(const cJSON *v, const char *name, sapi_reply *r) {
  return cJSON_IsString(v) ? 0 : sconv_check_items(v, name, r);
}

static const sreq_field ftool_fields[] = {
    {"type", V_STR, 1, 0, 0, NULL},
    {"name", V_STR, 1, 0, 128, NULL},
    {"description", V_STR_NULL, 0, 0, 0, NULL},
    {"parameters", V_TOOLRES, 0, 0, 0, NULL}, /* an object or null */
    {"strict", V_BOOL_NULL, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static int check_obj_null(const cJSON *v, const char *name, sapi_reply *r) {
  return cJSON_IsNull(v) || cJSON_IsObject(v) ? 0 : sreq_bad_type(r, name, "an object", v);
}

static int check_vector_store_ids(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array of strings", v);
  const cJSON *s;
  cJSON_ArrayForEach(s, v) if (!cJSON_IsString(s)) return sreq_bad_type(r, name, "an array of strings", v);
  return 0;
}

static int check_max_num_results(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsNumber(v) || v->valuedouble != (double)(long)v->valuedouble)
    return sreq_bad_type(r, name, "an integer", v);
  if (v->valuedouble < 1 || v->valuedouble > 50) {
    SREQ_BAD(r, name, "invalid_value", "Invalid '%s': expected an integer between 1 and 50.", name);
    return -1;
  }
  return 0;
}

static int check_obj(const cJSON *v, const char *name, sapi_reply *r) {
  return cJSON_IsObject(v) ? 0 : sreq_bad_type(r, name, "an object", v);
}

/* FileSearchTool: the stores a question is searched in (file_search()). */
static const sreq_field fstool_fields[] = {
    {"type", V_STR, 1, 0, 0, NULL},
    {"vector_store_ids", V_FN, 1, 0, 0, check_vector_store_ids},
    {"max_num_results", V_FN, 0, 0, 0, check_max_num_results},
    {"ranking_options", V_FN, 0, 0, 0, check_obj},
    {"filters", V_FN, 0, 0, 0, check_obj_null},
    {NULL, 0, 0, 0, 0, NULL},
};

static int check_tools(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array", v);
  int i = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, v) {
    char pre[256];
    if (snprintf(pre, sizeof pre, "%s[%d]", name, i++) >= (int)sizeof pre) pre[sizeof pre - 1] = '\0';
    if (!cJSON_IsObject(t)) return sreq_bad_type(r, pre, "an object", t);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
    if (is(type, "code_interpreter")) {
      if (srt_check_tool(t, pre, r)) return -1;
      continue;
    }
    const sreq_field *fields = is(type, "function") ? ftool_fields : is(type, "file_search") ? fstool_fields : NULL;
    if (!fields) {
      SREQ_BAD(r, pre, "invalid_value",
               "Invalid value for '%s.type': the simulator takes function, file_search and code_interpreter tools "
               "only.", pre);
      return -1;
    }
    if (sreq_check_fields(t, fields, r, pre, 0)) return -1;
  }
  return 0;
}

static int check_tool_choice(const cJSON *v, const char *name, sapi_reply *r) {
  if (is(v, "none") || is(v, "auto") || is(v, "required")) return 0;
  if (cJSON_IsObject(v) && is(cJSON_GetObjectItemCaseSensitive(v, "type"), "function") &&
      cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "name")))
    return 0;
  if (cJSON_IsObject(v) && cJSON_GetArraySize(v) == 1 &&
      (is(cJSON_GetObjectItemCaseSensitive(v, "type"), "file_search") ||
       is(cJSON_GetObjectItemCaseSensitive(v, "type"), "code_interpreter")))
    return 0;
  SREQ_BAD(r, name, "invalid_value",
           "Invalid value for '%s': expected none, auto, required, {type: function, name} or {type: file_search}.",
           name);
  return -1;
}

static int check_str_array(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsNull(v)) return 0;
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array", v);
  const cJSON *s;
  cJSON_ArrayForEach(s, v) if (!cJSON_IsString(s)) return sreq_bad_type(r, name, "an array of strings", v);
  return 0;
}

static int check_truncation(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsNull(v) || is(v, "auto") || is(v, "disabled")) return 0;
  SREQ_BAD(r, name, "invalid_value", "Invalid value: '%s'. Supported values are: 'auto' and 'disabled'.",
           cJSON_IsString(v) ? v->valuestring : "?");
  return -1;
}

static const sreq_field create_fields[] = {
    {"model", V_STR, 1, 0, 256, NULL},
    {"input", V_FN, 0, 0, 0, check_input},
    {"instructions", V_STR_NULL, 0, 0, 256000, NULL},
    {"tools", V_FN, 0, 0, 0, check_tools},
    {"tool_choice", V_FN, 0, 0, 0, check_tool_choice},
    {"parallel_tool_calls", V_BOOL_NULL, 0, 0, 0, NULL},
    {"conversation", V_FN, 0, 0, 0, check_conversation},
    {"previous_response_id", V_STR_NULL, 0, 0, 0, NULL},
    {"metadata", V_META, 0, 0, 0, NULL},
    {"store", V_BOOL_NULL, 0, 0, 0, NULL},
    {"stream", V_BOOL_NULL, 0, 0, 0, NULL},
    {"stream_options", V_FN, 0, 0, 0, check_obj_null},
    {"background", V_BOOL_NULL, 0, 0, 0, NULL},
    {"max_output_tokens", V_INT_NULL, 0, 16, 1e9, NULL},
    {"max_tool_calls", V_INT_NULL, 0, 1, 1e9, NULL},
    {"temperature", V_NUM_NULL, 0, 0, 2, NULL},
    {"top_p", V_NUM_NULL, 0, 0, 1, NULL},
    {"top_logprobs", V_INT_NULL, 0, 0, 20, NULL},
    {"text", V_FN, 0, 0, 0, check_obj_null},
    {"reasoning", V_FN, 0, 0, 0, check_obj_null},
    {"include", V_FN, 0, 0, 0, check_str_array},
    {"truncation", V_FN, 0, 0, 0, check_truncation},
    {"service_tier", V_STR_NULL, 0, 0, 0, NULL},
    {"user", V_STR, 0, 0, 0, NULL},
    {"safety_identifier", V_STR_NULL, 0, 0, 64, NULL},
    {"prompt_cache_key", V_STR_NULL, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

/* body[key] copied, or dflt (taken) when absent or null. */
static cJSON *or_default(const cJSON *body, const char *key, cJSON *dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
  if (!v || cJSON_IsNull(v)) return dflt;
  cJSON_Delete(dflt);
  return cJSON_Duplicate(v, 1);
}

/* The Response object as created (status set by the caller). */
static void fill(sobj *resp, const cJSON *body, const char *conv_id) {
  cJSON *j = resp->json;
  const cJSON *tools = cJSON_GetObjectItemCaseSensitive(body, "tools");
  cJSON_AddStringToObject(j, "status", "queued");
  cJSON_AddNullToObject(j, "completed_at");
  cJSON_AddNullToObject(j, "error");
  cJSON_AddNullToObject(j, "incomplete_details");
  cJSON_AddItemToObject(j, "instructions", or_default(body, "instructions", cJSON_CreateNull()));
  cJSON_AddItemToObject(j, "max_output_tokens", or_default(body, "max_output_tokens", cJSON_CreateNull()));
  cJSON_AddItemToObject(j, "model", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(body, "model"), 1));
  cJSON_AddArrayToObject(j, "output");
  cJSON_AddItemToObject(j, "parallel_tool_calls", or_default(body, "parallel_tool_calls", cJSON_CreateTrue()));
  cJSON_AddItemToObject(j, "previous_response_id", or_default(body, "previous_response_id", cJSON_CreateNull()));
  cJSON_AddItemToObject(j, "background", or_default(body, "background", cJSON_CreateFalse()));
  cJSON_AddNullToObject(j, "reasoning");
  cJSON_AddItemToObject(j, "service_tier", or_default(body, "service_tier", cJSON_CreateString("default")));
  cJSON_AddItemToObject(j, "store", or_default(body, "store", cJSON_CreateTrue()));
  cJSON_AddItemToObject(j, "temperature", or_default(body, "temperature", cJSON_CreateNumber(1.0)));
  cJSON *text = cJSON_CreateObject();
  cJSON_AddStringToObject(cJSON_AddObjectToObject(text, "format"), "type", "text");
  cJSON_AddItemToObject(j, "text", or_default(body, "text", text));
  cJSON_AddItemToObject(j, "tool_choice", or_default(body, "tool_choice", cJSON_CreateString("auto")));
  /* Stored as the API echoes them: every tool with all its keys. */
  cJSON *tl = cJSON_AddArrayToObject(j, "tools");
  const cJSON *t;
  cJSON_ArrayForEach(t, tools) {
    if (is(cJSON_GetObjectItemCaseSensitive(t, "type"), "code_interpreter")) {
      cJSON_AddItemToArray(tl, srt_echo_tool(t));
      continue;
    }
    if (is(cJSON_GetObjectItemCaseSensitive(t, "type"), "file_search")) {
      cJSON *o = cJSON_CreateObject();
      cJSON_AddStringToObject(o, "type", "file_search");
      cJSON_AddItemToObject(o, "vector_store_ids",
                            cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(t, "vector_store_ids"), 1));
      cJSON_AddItemToObject(o, "filters", or_default(t, "filters", cJSON_CreateNull()));
      cJSON_AddItemToObject(o, "max_num_results", or_default(t, "max_num_results", cJSON_CreateNumber(20)));
      cJSON *rank = cJSON_CreateObject();
      cJSON_AddStringToObject(rank, "ranker", "auto");
      cJSON_AddNumberToObject(rank, "score_threshold", 0);
      cJSON_AddItemToObject(o, "ranking_options", or_default(t, "ranking_options", rank));
      cJSON_AddItemToArray(tl, o);
      continue;
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "function");
    cJSON_AddItemToObject(o, "name", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(t, "name"), 1));
    cJSON_AddItemToObject(o, "description", or_default(t, "description", cJSON_CreateNull()));
    cJSON_AddItemToObject(o, "parameters", or_default(t, "parameters", cJSON_CreateNull()));
    cJSON_AddItemToObject(o, "strict", or_default(t, "strict", cJSON_CreateTrue()));
    cJSON_AddItemToArray(tl, o);
  }
  cJSON_AddItemToObject(j, "top_p", or_default(body, "top_p", cJSON_CreateNumber(1.0)));
  cJSON_AddStringToObject(j, "truncation", "disabled");
  cJSON_AddItemToObject(j, "metadata", or_default(body, "metadata", cJSON_CreateObject()));
  cJSON *conv = conv_id ? cJSON_CreateObject() : cJSON_CreateNull();
  if (conv_id) cJSON_AddStringToObject(conv, "id", conv_id);
  cJSON_AddItemToObject(j, "conversation", conv);
}

/* Answer a create (lock held): the response object, a stream of its
 * events, or (neither background nor stream) the object once it ended. */
static void create_reply(sapi_reply *r, sobj *resp, int stream, int background) {
  srstream_mode mode = stream ? SRSTREAM_SSE : SRSTREAM_JSON;
  if (background && !stream) {
    sreq_obj(r, resp->json);
    return;
  }
  cJSON *rec = r->rec;
  r->rec = NULL;
  if (rec) cJSON_AddNumberToObject(rec, "status", 200);
  r->rstream = srstream_new(resp->id, -1, mode, stream && sfault_take_drop_stream(), rec);
  if (!r->rstream) sreq_json(r, 500, NULL);
  else r->status = 200;
}

static void resp_create(const sapi_req *q, sapi_reply *r) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  if (sreq_check_fields(body, create_fields, r, NULL, 0)) goto out;
  const cJSON *convp = cJSON_GetObjectItemCaseSensitive(body, "conversation");
  const cJSON *prevp = cJSON_GetObjectItemCaseSensitive(body, "previous_response_id");
  const cJSON *input = cJSON_GetObjectItemCaseSensitive(body, "input");
  int background = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "background"));
  int stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream"));
  if (cJSON_IsObject(convp)) convp = cJSON_GetObjectItemCaseSensitive(convp, "id");
  if (cJSON_IsNull(convp)) convp = NULL;
  if (cJSON_IsNull(prevp)) prevp = NULL;
  if (convp && prevp) {
    SREQ_BAD(r, "conversation", "mutually_exclusive_parameters",
             "Mutually exclusive parameters: Ensure you are only providing one of: 'previous_response_id' or "
             "'conversation'.");
    goto out;
  }
  if (background && cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(body, "store"))) {
    SREQ_BAD(r, "background", "invalid_value", "Background mode requires 'store' to be true.");
    goto out;
  }
  sfault_cfg cfg;
  sfault_get(&cfg);
  sstore_lock();
  sobj *conv = convp ? sstore_get(convp->valuestring, SK_CONV) : NULL;
  sobj *prev = prevp ? sstore_get(prevp->valuestring, SK_RESP) : NULL;
  const char *holder = conv ? sconv_locked_by(conv) : NULL;
  if (convp && !conv) {
    sreq_err(r, 404, "invalid_request_error", "conversation", NULL, "Conversation with id '%s' not found.",
             convp->valuestring);
  } else if (prevp && !prev) {
    SREQ_BAD(r, "previous_response_id", "previous_response_not_found", "Previous response with id '%s' not found.",
             prevp->valuestring);
  } else if (srt_check_refs(body, r)) {
    /* r holds the 404 of a file or container the request names */
  } else if (holder) {
    SREQ_BAD(r, "conversation", "conversation_locked",
             "Another response (%s) is already in progress in conversation %s. Wait for it to finish before "
             "creating a new one.", holder, conv->id);
  } else {
    sobj *resp = sstore_new(SK_RESP, NULL);
    rstate *rs = resp ? calloc(1, sizeof *rs) : NULL;
    int ok = rs != NULL;
    if (rs) {
      resp->ext = rs;
      resp->ext_free = rstate_free;
      g_counts[RS_QUEUED]++;
      rs->background = background;
      rs->inputs = cJSON_CreateArray();
      const cJSON *mt = cJSON_GetObjectItemCaseSensitive(body, "max_output_tokens");
      rs->max_tokens = cJSON_IsNumber(mt) ? mt->valueint : 0;
      if (conv) snprintf(rs->conv_id, sizeof rs->conv_id, "%s", conv->id);
      fill(resp, body, conv ? conv->id : NULL);
      /* The input, in stored form, joins the conversation now: a
       * concurrent reader of the items sees the user's message at once. */
      cJSON *one = NULL;
      if (cJSON_IsString(input)) {
        one = cJSON_CreateArray();
        cJSON *m = cJSON_CreateObject();
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", input->valuestring);
        cJSON_AddItemToArray(one, m);
        input = one;
      }
      const cJSON *in;
      cJSON_ArrayForEach(in, input) {
        cJSON *it = sconv_item_from_input(in, NULL);
        ok &= it != NULL && (!conv || sconv_append(conv, it) != NULL);
        if (it) cJSON_AddItemToArray(rs->inputs, it);
      }
      cJSON_Delete(one);
      cJSON *hist = ok ? history(prev, conv, rs->inputs) : NULL;
      ok = ok && hist && plan(rs, hist, body, cfg.answer_tokens) == AW_OK;
      cJSON_Delete(hist);
      rs->fault = sfault_take_run(rs->fault_code, sizeof rs->fault_code);
    }
    if (!ok) {
      if (resp) sstore_delete(resp);
      sreq_json(r, 500, NULL);
    } else {
      if (conv) sconv_lock(conv, resp->id);
      /* A background response is queued; any other starts at once. */
      emit_resp(resp, "response.created");
      if (background) {
        emit_resp(resp, "response.queued");
      } else {
        set_status(resp, RS_IN_PROGRESS);
        emit_resp(resp, "response.in_progress");
      }
      schedule(resp->id, cfg.latency_ms);
      create_reply(r, resp, stream, background);
    }
  }
  sstore_unlock();
out:
  cJSON_Delete(body);
}

/* ---- retrieve, cancel, delete, input items ------------------------------ */

/* GET /responses/{id}?stream=true&starting_after=N (lock held). */
static void retrieve(const sapi_req *q, sapi_reply *r, sobj *resp) {
  const char *s = q->arg(q->arg_cls, "stream");
  if (!s || strcmp(s, "true") != 0) {
    sreq_obj(r, resp->json);
    return;
  }
  long after = -1;
  const char *a = q->arg(q->arg_cls, "starting_after");
  if (a) {
    char *end;
    after = strtol(a, &end, 10);
    if (!*a || *end || after < 0) {
      SREQ_BAD(r, "starting_after", "invalid_value", "Invalid 'starting_after': expected an integer >= 0.");
      return;
    }
  }
  cJSON *rec = r->rec;
  r->rec = NULL;
  if (rec) cJSON_AddNumberToObject(rec, "status", 200);
  r->rstream = srstream_new(resp->id, after, SRSTREAM_SSE, 0, rec);
  if (!r->rstream) sreq_json(r, 500, NULL);
  else r->status = 200;
}

static void cancel(sapi_reply *r, sobj *resp) {
  rstate *rs = st_of(resp);
  if (!rs->background) {
    SREQ_BAD(r, NULL, NULL, "Only responses created with background=true can be cancelled.");
    return;
  }
  if (srun_status_active(rs->status)) {
    /* The text so far stays; no terminal event exists for a cancel, so
     * a stream just ends after the last event it had. */
    cJSON *m = rs->msg_id[0] ? msg_item(resp) : NULL;
    if (m) jset(m, "status", cJSON_CreateString("incomplete"));
    set_usage(resp);
    set_status(resp, RS_CANCELLED);
  }
  sreq_obj(r, resp->json); /* cancelling an ended response answers it as it is */
}

/* One page of a response's input items (a cJSON array, not store
 * objects): order asc|desc (default desc), limit, after. */
static void input_items(const sapi_req *q, sapi_reply *r, sobj *resp) {
  const cJSON *items = st_of(resp)->inputs;
  long n = cJSON_GetArraySize(items), limit = 20, after = -1;
  const char *s = q->arg(q->arg_cls, "limit");
  if (s) {
    char *end;
    limit = strtol(s, &end, 10);
    if (!*s || *end || limit < 1 || limit > 100) {
      SREQ_BAD(r, "limit", "invalid_value", "Invalid 'limit': expected an integer between 1 and 100, but got '%s'.", s);
      return;
    }
  }
  s = q->arg(q->arg_cls, "order");
  int desc = !s || strcmp(s, "asc") != 0;
  if (s && desc && strcmp(s, "desc") != 0) {
    SREQ_BAD(r, "order", "invalid_value", "Invalid value: '%s'. Supported values are: 'asc' and 'desc'.", s);
    return;
  }
  s = q->arg(q->arg_cls, "after");
  if (s && *s) {
    for (long p = 0; p < n && after < 0; p++)
      if (is(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(items, desc ? n - 1 - p : p), "id"), s)) after = p;
    if (after < 0) {
      SREQ_BAD(r, "after", "invalid_value", "Invalid 'after': no object with id '%s' in this list.", s);
      return;
    }
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "object", "list");
  cJSON *data = cJSON_AddArrayToObject(o, "data");
  long p = after + 1, got = 0;
  for (; p < n && got < limit; p++, got++)
    cJSON_AddItemReferenceToArray(data, cJSON_GetArrayItem(items, desc ? n - 1 - p : p));
  const cJSON *f = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0), "id");
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, (int)got - 1), "id");
  cJSON_AddStringToObject(o, "first_id", got ? f->valuestring : "");
  cJSON_AddStringToObject(o, "last_id", got ? l->valuestring : "");
  cJSON_AddBoolToObject(o, "has_more", p < n);
  sreq_json(r, 200, o);
}

void sresp_handle(const sapi_req *q, sapi_reply *r, char s[][64]) {
  if (r->route == SR_RESP_CREATE) {
    resp_create(q, r);
    return;
  }
  sstore_lock();
  sobj *resp = sstore_get(s[2], SK_RESP);
  if (!resp) {
    sreq_not_found(r, "response", s[2]);
  } else if (r->route == SR_RESP_GET) {
    retrieve(q, r, resp);
  } else if (r->route == SR_RESP_CANCEL) {
    cancel(r, resp);
  } else if (r->route == SR_RESP_INPUT_ITEMS) {
    input_items(q, r, resp);
  } else {
    /* A deleted response releases its conversation (sconv_locked_by
     * finds it gone); readers of its stream end. */
    sstore_delete(resp);
    sreq_deleted(r, s[2], "response");
  }
  sstore_unlock();
}

/* ---- admin -------------------------------------------------------------- */

static int matches(const sapi_req *q, const char *key, const cJSON *v) {
  const char *want = q->arg(q->arg_cls, key);
  return !want || is(v, want);
}

void sresp_admin(const sapi_req *q, sapi_reply *r) {
  cJSON *o = cJSON_CreateObject(), *data = cJSON_CreateArray();
  sstore_lock();
  const slist *all = sstore_toplist(SK_RESP);
  for (size_t i = 0; i < all->n; i++) {
    sobj *resp = all->v[i];
    const cJSON *j = resp->json;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "metadata"), "event_id");
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(j, "conversation"), "id");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(j, "status");
    if (!matches(q, "event_id", ev) || !matches(q, "conversation", conv) || !matches(q, "status", status)) continue;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "id", resp->id);
    cJSON_AddItemToObject(e, "status", cJSON_Duplicate(status, 1));
    cJSON_AddItemToObject(e, "conversation", conv ? cJSON_Duplicate(conv, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(e, "event_id", ev ? cJSON_Duplicate(ev, 1) : cJSON_CreateNull());
    cJSON_AddItemToObject(e, "previous_response_id",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(j, "previous_response_id"), 1));
    cJSON_AddItemToObject(e, "background", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(j, "background"), 1));
    cJSON_AddItemToArray(data, e);
  }
  sstore_unlock();
  cJSON_AddNumberToObject(o, "count", cJSON_GetArraySize(data));
  cJSON_AddItemToObject(o, "data", data);
  sreq_json(r, 200, o);
}

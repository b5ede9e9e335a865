/* sim_run.c -- run state machine and its stream events. */
#include "sim_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sim_amsg.h"
#include "sim_ci_run.h"
#include "sim_codeint.h"
#include "sim_fsearch.h"
#include "sim_model.h"
#include "sim_usage.h"
#include "sim_timer.h"
#include "sim_tools.h"

void sev_emit(sevents *ev, const char *name, const cJSON *data) {
  if (!ev) return;
  if (ev->out && !ev->failed) {
    char *s = cJSON_PrintUnformatted(data);
    if (!s || buf_appendf(ev->out, "event: %s\ndata: %s\n\n", name, s) != AW_OK) ev->failed = 1;
    free(s);
  }
  if (ev->rec) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "event", name);
    cJSON_AddItemToObject(e, "data", cJSON_Duplicate(data, 1));
    cJSON_AddItemToArray(ev->rec, e);
  }
}

void sev_emit_raw(sevents *ev, const char *name, const char *json) {
  if (!ev) return;
  if (ev->out && !ev->failed && buf_appendf(ev->out, "event: %s\ndata: %s\n\n", name, json) != AW_OK) ev->failed = 1;
  if (ev->rec) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "event", name);
    cJSON *d = cJSON_Parse(json);
    cJSON_AddItemToObject(e, "data", d ? d : cJSON_CreateNull());
    cJSON_AddItemToArray(ev->rec, e);
  }
}

void sev_done(sevents *ev) {
  if (!ev) return;
  if (ev->out && !ev->failed && buf_appends(ev->out, "event: done\ndata: [DONE]\n\n") != AW_OK) ev->failed = 1;
  if (ev->rec) {
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "event", "done");
    cJSON_AddStringToObject(e, "data", "[DONE]");
    cJSON_AddItemToArray(ev->rec, e);
  }
}

/* Text of the newest user message in the thread (text parts joined). */
static void last_user_text(sobj *thread, buf *out) {
  for (size_t i = thread->kids.n; i-- > 0;) {
    cJSON *m = thread->kids.v[i]->json;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (!cJSON_IsString(role) || strcmp(role->valuestring, "user") != 0) continue;
    const cJSON *part;
    cJSON_ArrayForEach(part, cJSON_GetObjectItemCaseSensitive(m, "content")) {
      const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(part, "text"), "value");
      if (cJSON_IsString(v) && (buf_appends(out, v->valuestring) != AW_OK || buf_appends(out, " ") != AW_OK))
        return;
    }
    return;
  }
}

/* body[key] if present and not null, else fallback (both borrowed). */
static const cJSON *pick(const cJSON *body, const char *key, const cJSON *fallback) {
  const cJSON *v = body ? cJSON_GetObjectItemCaseSensitive(body, key) : NULL;
  return v && !cJSON_IsNull(v) ? v : fallback;
}

static cJSON *dup_or(const cJSON *v, cJSON *dflt) {
  if (!v) return dflt;
  cJSON_Delete(dflt);
  return cJSON_Duplicate(v, 1);
}

/* The citation marker the answer ends with, as the real service writes it:
 * 【<tool call>:<result>†source】.  The annotation's text is the marker. */
#define FS_MARKER "\xe3\x80\x90" "0:0\xe2\x80\xa0" "source\xe3\x80\x91"

static int has_file_search(const cJSON *tools) {
  const cJSON *t;
  cJSON_ArrayForEach(t, tools) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
    if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "file_search")) return 1;
  }
  return 0;
}

/* A run with the file_search tool whose question the stores of its
 * assistant's and its thread's tool_resources answer (sim_fsearch.h):
 * rs->fsearch = {query, results, file_id, filename, quote_bytes, start,
 * end} and rs->answer = the quote and the marker.  Nothing found (or no
 * store, or not a question) leaves both alone.  AW_ENOMEM. */
static int file_search(sobj *run, sobj *thread, sobj *asst, const char *question, const char *prefix) {
  srun_state *rs = run->run;
  const cJSON *choice = cJSON_GetObjectItemCaseSensitive(run->json, "tool_choice");
  if (!has_file_search(cJSON_GetObjectItemCaseSensitive(run->json, "tools")) ||
      (cJSON_IsString(choice) && !strcmp(choice->valuestring, "none")))
    return AW_OK;
  const cJSON *objs[] = {asst ? asst->json : NULL, thread->json};
  cJSON *ids = cJSON_CreateArray();
  sfs_answer *fa = NULL;
  int rc = ids ? sfs_collect_stores(objs, 2, ids) : AW_ENOMEM;
  if (!rc) rc = sfs_answer_question(ids, question, 20, &fa);
  cJSON_Delete(ids);
  if (rc || !fa) return rc;
  size_t plen = strlen(prefix), qlen = plen + strlen(fa->text);
  char *answer = malloc(qlen + sizeof FS_MARKER);
  cJSON *fs = cJSON_CreateObject();
  if (answer && fs) {
    memcpy(answer, prefix, plen);
    memcpy(answer + plen, fa->text, qlen - plen);
    memcpy(answer + qlen, FS_MARKER, sizeof FS_MARKER);
    long start = sfs_chars(answer, qlen);
    cJSON_AddStringToObject(fs, "query", fa->query);
    cJSON_AddItemToObject(fs, "results", fa->results);
    fa->results = NULL;
    cJSON_AddStringToObject(fs, "file_id", fa->file_id);
    cJSON_AddStringToObject(fs, "filename", fa->filename);
    cJSON_AddNumberToObject(fs, "quote_bytes", (double)qlen);
    cJSON_AddNumberToObject(fs, "start", (double)start);
    cJSON_AddNumberToObject(fs, "end", (double)(start + sfs_chars(FS_MARKER, sizeof FS_MARKER - 1)));
    free(rs->answer);
    rs->answer = answer;
    rs->tokens_total = smodel_count_tokens(answer);
    rs->fsearch = fs;
  } else {
    free(answer);
    cJSON_Delete(fs);
    rc = AW_ENOMEM;
  }
  sfs_answer_free(fa);
  return rc;
}

/* "I see N image(s). " when the thread's last user message has images, else "". */
static void image_ack(sobj *thread, char *ack, size_t size) {
  int nimg = samsg_images(samsg_last_user(thread));
  ack[0] = '\0';
  if (nimg > 0 && sci_image_ack(nimg, ack, size) < 0) ack[0] = '\0';
}

/* The run's file search, made as it starts (an answer quoting the stores
 * replaces the scripted one).  AW_ENOMEM. */
static int start_search(sobj *run) {
  srun_state *rs = run->run;
  if (rs->plan || rs->fsearch || srci_used(run)) return AW_OK;
  sobj *thread = run->parent;
  sobj *asst = sstore_get(cJSON_GetObjectItemCaseSensitive(run->json, "assistant_id")->valuestring, SK_ASST);
  char ack[64];
  image_ack(thread, ack, sizeof ack);
  buf user;
  buf_init(&user, 1 << 20);
  last_user_text(thread, &user);
  int rc = file_search(run, thread, asst, user.data ? user.data : "", ack);
  buf_free(&user);
  return rc;
}

sobj *srun_create(sobj *thread, sobj *asst, const cJSON *body, int answer_tokens) {
  sobj *run = sstore_new(SK_RUN, thread);
  if (!run) return NULL;
  srun_state *rs = run->run;
  cJSON *j = run->json, *a = asst->json;
  const cJSON *ainstr = cJSON_GetObjectItemCaseSensitive(a, "instructions");
  const cJSON *instr = pick(body, "instructions", cJSON_IsString(ainstr) ? ainstr : NULL);
  const cJSON *addl = pick(body, "additional_instructions", NULL);
  const char *instr_s = instr ? instr->valuestring : "";
  const char *addl_s = addl ? addl->valuestring : NULL;

  cJSON_AddStringToObject(j, "assistant_id", asst->id);
  cJSON_AddStringToObject(j, "thread_id", thread->id);
  cJSON_AddStringToObject(j, "status", "queued");
  cJSON_AddNullToObject(j, "started_at");
  /* Real runs expire 10 minutes after creation unless they finish first. */
  cJSON_AddNumberToObject(j, "expires_at", (double)(run->created_at + 600));
  cJSON_AddNullToObject(j, "cancelled_at");
  cJSON_AddNullToObject(j, "failed_at");
  cJSON_AddNullToObject(j, "completed_at");
  cJSON_AddNullToObject(j, "required_action");
  cJSON_AddNullToObject(j, "last_error");
  cJSON_AddItemToObject(j, "model", cJSON_Duplicate(pick(body, "model", cJSON_GetObjectItemCaseSensitive(a, "model")), 1));
  cJSON_AddStringToObject(j, "instructions", instr_s);
  cJSON_AddItemToObject(j, "tools", cJSON_Duplicate(pick(body, "tools", cJSON_GetObjectItemCaseSensitive(a, "tools")), 1));
  cJSON_AddItemToObject(j, "tool_resources", cJSON_CreateObject());
  cJSON_AddItemToObject(j, "metadata", dup_or(pick(body, "metadata", NULL), cJSON_CreateObject()));
  cJSON_AddItemToObject(j, "temperature", dup_or(pick(body, "temperature", pick(a, "temperature", NULL)), cJSON_CreateNumber(1.0)));
  cJSON_AddItemToObject(j, "top_p", dup_or(pick(body, "top_p", pick(a, "top_p", NULL)), cJSON_CreateNumber(1.0)));
  cJSON_AddItemToObject(j, "max_completion_tokens", dup_or(pick(body, "max_completion_tokens", NULL), cJSON_CreateNull()));
  cJSON_AddItemToObject(j, "max_prompt_tokens", dup_or(pick(body, "max_prompt_tokens", NULL), cJSON_CreateNull()));
  cJSON *trunc = cJSON_CreateObject();
  cJSON_AddStringToObject(trunc, "type", "auto");
  cJSON_AddNullToObject(trunc, "last_messages");
  cJSON_AddItemToObject(j, "truncation_strategy", dup_or(pick(body, "truncation_strategy", NULL), trunc));
  cJSON_AddNullToObject(j, "incomplete_details");
  cJSON_AddNullToObject(j, "usage");
  cJSON_AddItemToObject(j, "response_format", dup_or(pick(body, "response_format", pick(a, "response_format", NULL)), cJSON_CreateString("auto")));
  cJSON_AddItemToObject(j, "tool_choice", dup_or(pick(body, "tool_choice", NULL), cJSON_CreateString("auto")));
  cJSON_AddItemToObject(j, "parallel_tool_calls", dup_or(pick(body, "parallel_tool_calls", NULL), cJSON_CreateTrue()));

  buf user;
  buf_init(&user, 1 << 20);
  last_user_text(thread, &user);
  rs->plan = stools_plan(user.data, instr_s, cJSON_GetObjectItemCaseSensitive(j, "tools"),
                         cJSON_GetObjectItemCaseSensitive(j, "tool_choice"),
                         !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(j, "parallel_tool_calls")));
  if (rs->plan) {
    /* The answer needs the outputs: it is built when the last arrive. */
    rs->outputs = cJSON_CreateArray();
    rs->answer = rs->outputs ? strdup("") : NULL;
  } else {
    /* Images in the question are acknowledged first, whichever tool answers. */
    char ack[64];
    int ci = 0;
    image_ack(thread, ack, sizeof ack);
    char *scripted = smodel_answer(user.data, instr_s, addl_s, answer_tokens);
    size_t al = strlen(ack);
    rs->answer = scripted ? malloc(al + strlen(scripted) + 1) : NULL;
    if (rs->answer) {
      memcpy(rs->answer, ack, al);
      strcpy(rs->answer + al, scripted);
      rs->tokens_total = smodel_count_tokens(rs->answer);
    }
    free(scripted);
    const char *q = user.data ? user.data : "";
    /* The file search is made when the run starts (srun_start): the
     * thread's store may still be processing its attachments. */
    if (rs->answer && srci_plan(run, thread, q, ack, &ci) != AW_OK) {
      free(rs->answer);
      rs->answer = NULL;
    }
  }
  rs->prompt_tokens = smodel_count_tokens(user.data) + smodel_count_tokens(instr_s) + smodel_count_tokens(addl_s);
  buf_free(&user);
  rs->fault = sfault_take_run(rs->fault_code, sizeof rs->fault_code);
  if (!rs->answer) {
    sstore_delete(run);
    return NULL;
  }
  thread->active_run = run;
  return run;
}

void srun_set_status(sobj *run, srun_status st) {
  srun_state *rs = run->run;
  srun_status old = rs->status;
  if (old == st) return;
  rs->status = st;
  sstore_count_status((int)old, (int)st);
  cJSON *j = run->json;
  jset(j, "status", cJSON_CreateString(srun_status_name(st)));
  double now = (double)sstore_unix_now();
  /* A run resumed after tool outputs keeps the time it first started. */
  if (st == RS_IN_PROGRESS && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "started_at")))
    jset(j, "started_at", cJSON_CreateNumber(now));
  else if (st == RS_CANCELLED) jset(j, "cancelled_at", cJSON_CreateNumber(now));
  else if (st == RS_FAILED) jset(j, "failed_at", cJSON_CreateNumber(now));
  else if (st == RS_COMPLETED) jset(j, "completed_at", cJSON_CreateNumber(now));
  /* The action is done with (outputs in), or moot (expired, cancelled). */
  if (old == RS_REQUIRES_ACTION) jset(j, "required_action", cJSON_CreateNull());
  if (!srun_status_active(st)) {
    /* A finished run no longer expires, and no longer blocks its thread. */
    if (st != RS_EXPIRED) jset(j, "expires_at", cJSON_CreateNull());
    if (run->parent->active_run == run) run->parent->active_run = NULL;
  }
  if (log_enabled(LOG_DEBUG)) {
    log_ctx ctx = {.thread_id = run->parent->id, .run_id = run->id};
    log_debug(&ctx, "run %s -> %s", srun_status_name(old), srun_status_name(st));
  }
}

cJSON *srun_usage_json(const srun_state *rs) {
  cJSON *u = cJSON_CreateObject();
  cJSON_AddNumberToObject(u, "prompt_tokens", rs->prompt_tokens);
  cJSON_AddNumberToObject(u, "completion_tokens", rs->tokens_done);
  cJSON_AddNumberToObject(u, "total_tokens", rs->prompt_tokens + rs->tokens_done);
  return u;
}

/* A run ends: its usage, charged once (sim_usage.h). */
static void run_usage(sobj *run) {
  srun_state *rs = run->run;
  jset(run->json, "usage", srun_usage_json(rs));
  if (rs->charged) return;
  rs->charged = 1;
  const cJSON *model = cJSON_GetObjectItemCaseSensitive(run->json, "model");
  susage_charge("runs", run->id, cJSON_IsString(model) ? model->valuestring : "", rs->prompt_tokens, rs->tokens_done,
                0, 0);
}

void srun_fail(sobj *run, const char *code, const char *msg, sevents *ev) {
  cJSON *e = cJSON_CreateObject();
  cJSON_AddStringToObject(e, "code", code);
  cJSON_AddStringToObject(e, "message", msg);
  jset(run->json, "last_error", e);
  run_usage(run);
  srun_set_status(run, RS_FAILED);
  sev_emit(ev, "thread.run.failed", run->json);
}

sobj *srun_new_step(sobj *run, const char *type) {
  sobj *step = sstore_new(SK_STEP, run);
  if (!step) return NULL;
  cJSON *s = step->json;
  cJSON_AddStringToObject(s, "run_id", run->id);
  cJSON_AddStringToObject(s, "assistant_id", cJSON_GetObjectItemCaseSensitive(run->json, "assistant_id")->valuestring);
  cJSON_AddStringToObject(s, "thread_id", run->parent->id);
  cJSON_AddStringToObject(s, "type", type);
  cJSON_AddStringToObject(s, "status", "in_progress");
  cJSON_AddNullToObject(s, "cancelled_at");
  cJSON_AddNullToObject(s, "completed_at");
  cJSON_AddNullToObject(s, "expired_at");
  cJSON_AddNullToObject(s, "failed_at");
  cJSON_AddNullToObject(s, "last_error");
  cJSON_AddObjectToObject(s, "step_details");
  cJSON_AddObjectToObject(s, "metadata");
  cJSON_AddNullToObject(s, "usage");
  snprintf(run->run->step_id, sizeof run->run->step_id, "%s", step->id);
  return step;
}

sobj *srun_tool_calls_step(sobj *run, sevents *ev) {
  sobj *step = srun_new_step(run, "tool_calls");
  if (!step) return NULL;
  cJSON *det = cJSON_GetObjectItemCaseSensitive(step->json, "step_details");
  cJSON_AddStringToObject(det, "type", "tool_calls");
  cJSON_AddArrayToObject(det, "tool_calls");
  sev_emit(ev, "thread.run.step.created", step->json);
  sev_emit(ev, "thread.run.step.in_progress", step->json);
  return step;
}

int srun_wants_tools(const sobj *run) {
  const srun_state *rs = run->run;
  return rs->plan && rs->round < cJSON_GetArraySize(rs->plan);
}

/* Expiry of a run left in requires_action: the run id and the round it
 * was armed for (a later round has its own timer). */
typedef struct ra_timer {
  char run_id[40];
  unsigned gen;
} ra_timer;

static void ra_expire(void *arg, int shutting_down) {
  ra_timer *x = arg;
  if (!shutting_down) {
    sstore_lock();
    sobj *run = sstore_get(x->run_id, SK_RUN);
    if (run && run->run->status == RS_REQUIRES_ACTION && run->run->ra_gen == x->gen) {
      sobj *step = sstore_get(run->run->step_id, SK_STEP);
      if (step) {
        jset(step->json, "status", cJSON_CreateString("expired"));
        jset(step->json, "expired_at", cJSON_CreateNumber((double)sstore_unix_now()));
      }
      run_usage(run);
      srun_set_status(run, RS_EXPIRED);
    }
    sstore_unlock();
  }
  free(x);
}

/* in_progress -> requires_action with the next round of calls: a
 * tool_calls step, streamed as the real API does (created and in_progress
 * with no calls yet, a delta per call), then the run with required_action.
 * The run then waits for outputs, at most requires_action_timeout_s. */
static void ask_tools(sobj *run, sevents *ev) {
  srun_state *rs = run->run;
  sobj *step = srun_tool_calls_step(run, ev);
  if (!step) {
    srun_fail(run, "server_error", "The simulator ran out of memory.", ev);
    return;
  }
  cJSON *det = cJSON_GetObjectItemCaseSensitive(step->json, "step_details");

  cJSON *step_calls = cJSON_CreateArray(), *run_calls = cJSON_CreateArray();
  const cJSON *c;
  int i = 0;
  cJSON_ArrayForEach(c, cJSON_GetArrayItem(rs->plan, rs->round)) {
    char id[40];
    sstore_call_id(id, sizeof id);
    const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
    const char *args = cJSON_GetObjectItemCaseSensitive(c, "arguments")->valuestring;
    cJSON *rc = cJSON_CreateObject();
    cJSON_AddStringToObject(rc, "id", id);
    cJSON_AddStringToObject(rc, "type", "function");
    cJSON *fn = cJSON_AddObjectToObject(rc, "function");
    cJSON_AddStringToObject(fn, "name", name);
    cJSON_AddStringToObject(fn, "arguments", args);
    cJSON_AddItemToArray(run_calls, rc);
    cJSON *sc = cJSON_Duplicate(rc, 1);
    cJSON_AddNullToObject(cJSON_GetObjectItemCaseSensitive(sc, "function"), "output");
    cJSON_AddItemToArray(step_calls, sc);
    if (ev) {
      cJSON *d = cJSON_CreateObject();
      cJSON_AddStringToObject(d, "id", step->id);
      cJSON_AddStringToObject(d, "object", "thread.run.step.delta");
      cJSON *sd = cJSON_AddObjectToObject(cJSON_AddObjectToObject(d, "delta"), "step_details");
      cJSON_AddStringToObject(sd, "type", "tool_calls");
      cJSON *dc = cJSON_Duplicate(sc, 1);
      cJSON_AddNumberToObject(dc, "index", i);
      cJSON_AddItemToArray(cJSON_AddArrayToObject(sd, "tool_calls"), dc);
      sev_emit(ev, "thread.run.step.delta", d);
      cJSON_Delete(d);
    }
    i++;
  }
  jset(det, "tool_calls", step_calls);
  cJSON *ra = cJSON_CreateObject();
  cJSON_AddStringToObject(ra, "type", "submit_tool_outputs");
  cJSON_AddItemToObject(cJSON_AddObjectToObject(ra, "submit_tool_outputs"), "tool_calls", run_calls);
  jset(run->json, "required_action", ra);
  rs->round++;

  sfault_cfg cfg;
  sfault_get(&cfg);
  jset(run->json, "expires_at", cJSON_CreateNumber((double)(sstore_unix_now() + cfg.requires_action_timeout_s)));
  srun_set_status(run, RS_REQUIRES_ACTION);
  rs->ra_gen++;
  ra_timer *x = malloc(sizeof *x);
  if (x) {
    snprintf(x->run_id, sizeof x->run_id, "%s", run->id);
    x->gen = rs->ra_gen;
    if (stimer_add(stimer_now_ms() + (int64_t)cfg.requires_action_timeout_s * 1000, ra_expire, x) != AW_OK) {
      /* The run then waits until cancelled: logged, not fatal. */
      log_ctx ctx = {.thread_id = run->parent->id, .run_id = run->id};
      log_warn(&ctx, "cannot schedule the requires_action expiry");
      free(x);
    }
  }
  sev_emit(ev, "thread.run.requires_action", run->json);
}

/* The file_search tool call, before the message: a tool_calls step,
 * streamed as the real API does (created and in_progress with no calls, a
 * delta with the call and an empty file_search, then completed with its
 * ranking options and results).  Results carry no content: the API gives
 * it only when the steps are listed with include[].  0 when the run failed
 * (ENOMEM). */
static int search_step(sobj *run, sevents *ev) {
  srun_state *rs = run->run;
  sobj *step = cJSON_AddTrueToObject(rs->fsearch, "step_done") ? srun_tool_calls_step(run, ev) : NULL;
  if (!step) {
    srun_fail(run, "server_error", "The simulator ran out of memory.", ev);
    return 0;
  }
  cJSON *det = cJSON_GetObjectItemCaseSensitive(step->json, "step_details");
  char id[40];
  sstore_call_id(id, sizeof id);
  cJSON *call = cJSON_CreateObject();
  cJSON_AddStringToObject(call, "id", id);
  cJSON_AddStringToObject(call, "type", "file_search");
  cJSON *fs = cJSON_AddObjectToObject(call, "file_search");
  if (ev) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "id", step->id);
    cJSON_AddStringToObject(d, "object", "thread.run.step.delta");
    cJSON *sd = cJSON_AddObjectToObject(cJSON_AddObjectToObject(d, "delta"), "step_details");
    cJSON_AddStringToObject(sd, "type", "tool_calls");
    cJSON *dc = cJSON_Duplicate(call, 1);
    cJSON_AddNumberToObject(dc, "index", 0);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(sd, "tool_calls"), dc);
    sev_emit(ev, "thread.run.step.delta", d);
    cJSON_Delete(d);
  }
  cJSON *rank = cJSON_AddObjectToObject(fs, "ranking_options");
  cJSON_AddStringToObject(rank, "ranker", "default_2024_08_21");
  cJSON_AddNumberToObject(rank, "score_threshold", 0);
  cJSON *results = cJSON_AddArrayToObject(fs, "results");
  const cJSON *r;
  cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(rs->fsearch, "results")) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddItemToObject(o, "file_id", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(r, "file_id"), 1));
    cJSON_AddItemToObject(o, "file_name", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(r, "filename"), 1));
    cJSON_AddItemToObject(o, "score", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(r, "score"), 1));
    cJSON_AddItemToArray(results, o);
  }
  cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(det, "tool_calls"), call);
  jset(step->json, "status", cJSON_CreateString("completed"));
  jset(step->json, "completed_at", cJSON_CreateNumber((double)sstore_unix_now()));
  jset(step->json, "usage", srun_usage_json(rs));
  sev_emit(ev, "thread.run.step.completed", step->json);
  return 1;
}

void srun_start(sobj *run, sevents *ev) {
  srun_state *rs = run->run;
  if (rs->status != RS_QUEUED) return;
  /* The real API's fallback: a run waits (at most SRUN_SEARCH_WAIT_S) for
   * the files of its thread's own stores to be processed. */
  if (!rs->resumed && !rs->plan && !srci_used(run) && has_file_search(cJSON_GetObjectItemCaseSensitive(run->json, "tools")) &&
      samsg_search_pending(run->parent) &&
      sstore_unix_now() - run->created_at < SRUN_SEARCH_WAIT_S)
    return;
  srun_set_status(run, RS_IN_PROGRESS);
  sev_emit(ev, "thread.run.in_progress", run->json);
  if (rs->resumed) {
    /* Back from submit_tool_outputs: the tool step completed then. */
    rs->resumed = 0;
    sobj *done = sstore_get(rs->step_id, SK_STEP);
    if (done) sev_emit(ev, "thread.run.step.completed", done->json);
  } else if (rs->fault == SFAULT_RUN_FAIL) {
    const char *msg = strcmp(rs->fault_code, "rate_limit_exceeded") == 0
                          ? "Rate limit reached for requests. (injected by the simulator)"
                      : strcmp(rs->fault_code, "invalid_prompt") == 0
                          ? "Invalid prompt: your prompt was flagged. (injected by the simulator)"
                          : "Sorry, something went wrong. (injected by the simulator)";
    srun_fail(run, rs->fault_code, msg, ev);
    return;
  } else if (rs->fault == SFAULT_RUN_EXPIRE) {
    srun_set_status(run, RS_EXPIRED);
    sev_emit(ev, "thread.run.expired", run->json);
    return;
  }
  if (srun_wants_tools(run)) {
    ask_tools(run, ev);
    return;
  }
  if (start_search(run) != AW_OK) {
    srun_fail(run, "server_error", "The simulator ran out of memory.", ev);
    return;
  }
  if (rs->fsearch && !cJSON_GetObjectItemCaseSensitive(rs->fsearch, "step_done") && !search_step(run, ev)) return;
  if (srci_pending(run) && !srci_step(run, ev)) return;
  sobj *thread = run->parent;
  sobj *msg = sstore_new(SK_MSG, thread);
  sobj *step = msg ? srun_new_step(run, "message_creation") : NULL;
  if (!step) {
    if (msg) sstore_delete(msg);
    srun_fail(run, "server_error", "The simulator ran out of memory.", ev);
    return;
  }
  snprintf(rs->msg_id, sizeof rs->msg_id, "%s", msg->id);
  const char *asst_id = cJSON_GetObjectItemCaseSensitive(run->json, "assistant_id")->valuestring;

  cJSON *s = step->json;
  cJSON *det = cJSON_GetObjectItemCaseSensitive(s, "step_details");
  cJSON_AddStringToObject(det, "type", "message_creation");
  cJSON_AddStringToObject(cJSON_AddObjectToObject(det, "message_creation"), "message_id", msg->id);

  cJSON *m = msg->json;
  cJSON_AddStringToObject(m, "thread_id", thread->id);
  cJSON_AddStringToObject(m, "status", "in_progress");
  cJSON_AddNullToObject(m, "incomplete_details");
  cJSON_AddNullToObject(m, "completed_at");
  cJSON_AddNullToObject(m, "incomplete_at");
  cJSON_AddStringToObject(m, "role", "assistant");
  cJSON_AddArrayToObject(m, "content");
  cJSON_AddStringToObject(m, "assistant_id", asst_id);
  cJSON_AddStringToObject(m, "run_id", run->id);
  cJSON_AddArrayToObject(m, "attachments");
  cJSON_AddObjectToObject(m, "metadata");

  sev_emit(ev, "thread.run.step.created", s);
  sev_emit(ev, "thread.run.step.in_progress", s);
  sev_emit(ev, "thread.message.created", m);
  sev_emit(ev, "thread.message.in_progress", m);
  srci_message(run, msg, ev);
}

/* Python's repr of a list of ids, as the real API's error shows it. */
static void id_list(buf *b, const cJSON *arr, const char *key) {
  const cJSON *it;
  int first = 1;
  if (buf_appends(b, "[") != AW_OK) return;
  cJSON_ArrayForEach(it, arr) {
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, key);
    if (buf_appendf(b, "%s'%s'", first ? "" : ", ", cJSON_IsString(id) ? id->valuestring : "") != AW_OK) return;
    first = 0;
  }
  if (buf_appends(b, "]") != AW_OK) return;
}

/* The first output given for call id, or NULL; *n = how many name it. */
static const cJSON *output_for(const cJSON *outs, const char *id, int *n) {
  const cJSON *o, *found = NULL;
  *n = 0;
  cJSON_ArrayForEach(o, outs) {
    if (strcmp(cJSON_GetObjectItemCaseSensitive(o, "tool_call_id")->valuestring, id) == 0) {
      if (!found) found = o;
      ++*n;
    }
  }
  return found;
}

int srun_submit_tool_outputs(sobj *run, const cJSON *outs, char *err, size_t err_size) {
  srun_state *rs = run->run;
  if (rs->status != RS_REQUIRES_ACTION)
    return aw_seterr(AW_EINVAL, err, err_size, "Runs in status \"%s\" do not accept tool outputs.",
                     srun_status_name(rs->status));
  const cJSON *calls = cJSON_GetObjectItemCaseSensitive(
      cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(run->json, "required_action"),
                                       "submit_tool_outputs"),
      "tool_calls");
  /* All outputs in one request, exactly one per pending call: a missing,
   * repeated or unknown id is refused whole, as the real API does. */
  int ok = cJSON_GetArraySize(outs) == cJSON_GetArraySize(calls), n;
  const cJSON *c;
  cJSON_ArrayForEach(c, calls) {
    output_for(outs, cJSON_GetObjectItemCaseSensitive(c, "id")->valuestring, &n);
    ok &= n == 1;
  }
  if (!ok) {
    buf want, got;
    buf_init(&want, 64 * 1024);
    buf_init(&got, 64 * 1024);
    id_list(&want, calls, "id");
    id_list(&got, outs, "tool_call_id");
    aw_seterr(AW_EINVAL, err, err_size, "Expected tool outputs for call_ids %s, got %s",
              want.data ? want.data : "[]", got.data ? got.data : "[]");
    buf_free(&want);
    buf_free(&got);
    return AW_EINVAL;
  }

  /* Outputs join the answer's list first, so that running out of memory
   * building the answer can be undone before anything else changed. */
  const cJSON *planned = cJSON_GetArrayItem(rs->plan, rs->round - 1);
  int before = cJSON_GetArraySize(rs->outputs), i = 0;
  cJSON_ArrayForEach(c, calls) {
    const cJSON *o = output_for(outs, cJSON_GetObjectItemCaseSensitive(c, "id")->valuestring, &n);
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddItemToObject(rec, "label",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(planned, i++), "label"), 1));
    cJSON_AddStringToObject(rec, "output", cJSON_GetObjectItemCaseSensitive(o, "output")->valuestring);
    cJSON_AddItemToArray(rs->outputs, rec);
  }
  if (!srun_wants_tools(run)) {
    char *answer = stools_answer(rs->outputs);
    if (!answer) {
      while (cJSON_GetArraySize(rs->outputs) > before) cJSON_DeleteItemFromArray(rs->outputs, before);
      return aw_seterr(AW_ENOMEM, err, err_size, "The simulator ran out of memory.");
    }
    free(rs->answer);
    rs->answer = answer;
    rs->emit_pos = 0;
    rs->tokens_total = smodel_count_tokens(answer);
  }

  sobj *step = sstore_get(rs->step_id, SK_STEP);
  if (step) {
    cJSON *step_calls =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(step->json, "step_details"), "tool_calls");
    i = 0;
    cJSON_ArrayForEach(c, calls) {
      const cJSON *o = output_for(outs, cJSON_GetObjectItemCaseSensitive(c, "id")->valuestring, &n);
      jset(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(step_calls, i++), "function"), "output",
           cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(o, "output"), 1));
    }
    jset(step->json, "status", cJSON_CreateString("completed"));
    jset(step->json, "completed_at", cJSON_CreateNumber((double)sstore_unix_now()));
    jset(step->json, "usage", srun_usage_json(rs));
  }
  rs->resumed = 1;
  srun_set_status(run, RS_QUEUED);
  return AW_OK;
}

/* The run's citation in the message shape (delta: with its index). */
static cJSON *citation(const srun_state *rs, int delta) {
  const cJSON *fs = rs->fsearch;
  cJSON *a = cJSON_CreateObject();
  if (delta) cJSON_AddNumberToObject(a, "index", 0);
  cJSON_AddStringToObject(a, "type", "file_citation");
  cJSON_AddStringToObject(a, "text", FS_MARKER);
  cJSON_AddItemToObject(cJSON_AddObjectToObject(a, "file_citation"), "file_id",
                        cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(fs, "file_id"), 1));
  cJSON_AddItemToObject(a, "start_index", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(fs, "start"), 1));
  cJSON_AddItemToObject(a, "end_index", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(fs, "end"), 1));
  return a;
}

/* The answer's annotation (a file search's citation, or the code
 * interpreter's file_path), or NULL; *end = the bytes of answer it needs
 * to be whole. */
static cJSON *annotation(const sobj *run, int delta, size_t *end) {
  const srun_state *rs = run->run;
  if (rs->fsearch) {
    *end = (size_t)cJSON_GetObjectItemCaseSensitive(rs->fsearch, "quote_bytes")->valuedouble + strlen(FS_MARKER);
    return citation(rs, delta);
  }
  return srci_annotation(run, delta, end);
}

/* Does the text up to len bytes hold the run's annotated text whole? */
static int marker_in(const sobj *run, size_t len) {
  size_t end = 0;
  cJSON *a = annotation(run, 0, &end);
  cJSON_Delete(a);
  return a && len >= end;
}

/* Set the message's text to the first len bytes of the answer, with the
 * citation once the marker is in it. */
static void set_text(const sobj *run, sobj *msg, const char *answer, size_t len) {
  char *t = strndup(answer, len);
  if (!t) return;
  cJSON *content = cJSON_GetObjectItemCaseSensitive(msg->json, "content");
  cJSON *part = cJSON_GetArrayItem(content, srci_text_part(run));
  if (!part) {
    part = cJSON_CreateObject();
    cJSON_AddStringToObject(part, "type", "text");
    cJSON *text = cJSON_AddObjectToObject(part, "text");
    cJSON_AddStringToObject(text, "value", t);
    cJSON_AddArrayToObject(text, "annotations");
    cJSON_AddItemToArray(content, part);
  } else {
    cJSON_SetValuestring(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(part, "text"), "value"), t);
  }
  cJSON *anns = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(part, "text"), "annotations");
  size_t end;
  if (marker_in(run, len) && !cJSON_GetArraySize(anns)) cJSON_AddItemToArray(anns, annotation(run, 0, &end));
  free(t);
}

int srun_token(sobj *run, sevents *ev) {
  srun_state *rs = run->run;
  if (rs->status != RS_IN_PROGRESS || rs->tokens_done >= rs->tokens_total) return 0;
  sobj *msg = sstore_get(rs->msg_id, SK_MSG);
  const char *a = rs->answer;
  size_t start = rs->emit_pos, end = start;
  if (a[end] == ' ') end++; /* a token carries its leading space, as OpenAI's do */
  while (a[end] && a[end] != ' ') end++;
  rs->emit_pos = end;
  rs->tokens_done++;
  if (msg) set_text(run, msg, a, end);
  int index = srci_text_part(run);
  if (ev && msg && marker_in(run, end) && !marker_in(run, start)) {
    /* The delta that completes the marker carries its annotation. */
    char *piece = strndup(a + start, end - start);
    cJSON *d = cJSON_CreateObject(), *part = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "id", msg->id);
    cJSON_AddStringToObject(d, "object", "thread.message.delta");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(cJSON_AddObjectToObject(d, "delta"), "content"), part);
    cJSON_AddNumberToObject(part, "index", index);
    cJSON_AddStringToObject(part, "type", "text");
    cJSON *text = cJSON_AddObjectToObject(part, "text");
    cJSON_AddStringToObject(text, "value", piece ? piece : "");
    size_t aend;
    cJSON_AddItemToArray(cJSON_AddArrayToObject(text, "annotations"), annotation(run, 1, &aend));
    sev_emit(ev, "thread.message.delta", d);
    cJSON_Delete(d);
    free(piece);
  } else if (ev && msg) {
    /* The hot path of every stream: the envelope is fixed, so only the
     * piece goes through cJSON (for escaping); building and printing the
     * whole delta object cost ~3x more, mostly in number formatting. */
    char *piece = strndup(a + start, end - start);
    cJSON *ps = cJSON_CreateString(piece ? piece : "");
    char *q = cJSON_PrintUnformatted(ps);
    buf data;
    buf_init(&data, 1 << 20);
    if (!q || buf_appendf(&data,
                          "{\"id\":\"%s\",\"object\":\"thread.message.delta\",\"delta\":{\"content\":[{\"index\":%d,"
                          "\"type\":\"text\",\"text\":{\"value\":%s,\"annotations\":[]}}]}}",
                          msg->id, index, q) != AW_OK) {
      ev->failed = 1;
    } else {
      sev_emit_raw(ev, "thread.message.delta", data.data);
    }
    buf_free(&data);
    free(q);
    cJSON_Delete(ps);
    free(piece);
  }
  return rs->tokens_total - rs->tokens_done;
}

void srun_finish(sobj *run, sevents *ev) {
  srun_state *rs = run->run;
  if (rs->status != RS_IN_PROGRESS) return;
  while (srun_token(run, NULL) > 0) {
  }
  double now = (double)sstore_unix_now();
  sobj *msg = sstore_get(rs->msg_id, SK_MSG), *step = sstore_get(rs->step_id, SK_STEP);
  if (msg) {
    set_text(run, msg, rs->answer, rs->emit_pos);
    jset(msg->json, "status", cJSON_CreateString("completed"));
    jset(msg->json, "completed_at", cJSON_CreateNumber(now));
    sev_emit(ev, "thread.message.completed", msg->json);
  }
  if (step) {
    jset(step->json, "status", cJSON_CreateString("completed"));
    jset(step->json, "completed_at", cJSON_CreateNumber(now));
    jset(step->json, "usage", srun_usage_json(rs));
    sev_emit(ev, "thread.run.step.completed", step->json);
  }
  run_usage(run);
  srun_set_status(run, RS_COMPLETED);
  sev_emit(ev, "thread.run.completed", run->json);
}

void srun_request_cancel(sobj *run) {
  if (srun_status_active(run->run->status)) srun_set_status(run, RS_CANCELLING);
}

void srun_finalize_cancel(sobj *run, sevents *ev) {
  srun_state *rs = run->run;
  if (rs->status != RS_CANCELLING) return;
  double now = (double)sstore_unix_now();
  sobj *msg = sstore_get(rs->msg_id, SK_MSG), *step = sstore_get(rs->step_id, SK_STEP);
  /* Only what is still being produced is cut short: a tool step whose
   * outputs were submitted stays completed. */
  const cJSON *mst = msg ? cJSON_GetObjectItemCaseSensitive(msg->json, "status") : NULL;
  const cJSON *sst = step ? cJSON_GetObjectItemCaseSensitive(step->json, "status") : NULL;
  if (mst && strcmp(mst->valuestring, "in_progress") != 0) msg = NULL;
  if (sst && strcmp(sst->valuestring, "in_progress") != 0) step = NULL;
  if (msg) {
    cJSON *why = cJSON_CreateObject();
    cJSON_AddStringToObject(why, "reason", "run_cancelled");
    jset(msg->json, "status", cJSON_CreateString("incomplete"));
    jset(msg->json, "incomplete_details", why);
    jset(msg->json, "incomplete_at", cJSON_CreateNumber(now));
    sev_emit(ev, "thread.message.incomplete", msg->json);
  }
  if (step) {
    jset(step->json, "status", cJSON_CreateString("cancelled"));
    jset(step->json, "cancelled_at", cJSON_CreateNumber(now));
    sev_emit(ev, "thread.run.step.cancelled", step->json);
  }
  run_usage(run);
  srun_set_status(run, RS_CANCELLED);
  sev_emit(ev, "thread.run.cancelled", run->json);
}

/* Timer callback: one background step of a run, then re-arm if needed. */
static void drive(void *arg, int shutting_down) {
  char *id = arg;
  if (!shutting_down) {
    sstore_lock();
    sobj *run = sstore_get(id, SK_RUN);
    if (run && !run->run->stream_owned) {
      srun_state *rs = run->run;
      if (rs->status == RS_QUEUED) {
        srun_start(run, NULL);
        if (rs->status == RS_QUEUED) {
          srun_background(id, SRUN_WAIT_POLL_MS); /* waiting for the thread's files */
        } else if (rs->status == RS_IN_PROGRESS) {
          sfault_cfg c;
          sfault_get(&c);
          /* Finish when a stream at this pace would have: pollers see
           * in_progress for as long as the answer takes to "generate". */
          srun_background(id, (int64_t)c.token_delay_ms * (rs->tokens_total - rs->tokens_done));
        }
      } else if (rs->status == RS_IN_PROGRESS) {
        srun_finish(run, NULL);
      } else if (rs->status == RS_CANCELLING) {
        srun_finalize_cancel(run, NULL);
      }
    }
    sstore_unlock();
  }
  free(id);
}

void srun_background(const char *run_id, int64_t delay_ms) {
  char *id = strdup(run_id);
  if (!id) return;
  int rc = stimer_add(stimer_now_ms() + (delay_ms > 0 ? delay_ms : 0), drive, id);
  if (rc != AW_OK) {
    log_ctx ctx = {.run_id = run_id};
    log_warn(&ctx, "cannot schedule run progress: %s", aw_strerror(rc));
    free(id);
  }
}

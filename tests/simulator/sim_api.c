/* sim_api.c -- routing, auth, HTTP faults, apply_then_fail, and the Assistants API v2 handlers. */
#include "sim_api.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sim_amsg.h"
#include "sim_chat.h"
#include "sim_containers.h"
#include "sim_conversations.h"
#include "sim_faults.h"
#include "sim_files.h"
#include "sim_ratelimit.h"
#include "sim_req.h"
#include "sim_responses.h"
#include "sim_rsteps.h"
#include "sim_run.h"
#include "sim_store.h"
#include "sim_timer.h"
#include "sim_usage.h"
#include "sim_vector_stores.h"

#define BAD SREQ_BAD

/* ---- assistants ------------------------------------------------------- */

static const sreq_field asst_fields[] = {
    {"model", V_STR, 1, 0, 256, NULL},
    {"name", V_STR_NULL, 0, 0, 256, NULL},
    {"description", V_STR_NULL, 0, 0, 512, NULL},
    {"instructions", V_STR_NULL, 0, 0, 256000, NULL},
    {"reasoning_effort", V_EFFORT, 0, 0, 0, NULL},
    {"tools", V_TOOLS, 0, 0, 0, NULL},
    {"tool_resources", V_TOOLRES, 0, 0, 0, NULL},
    {"metadata", V_META, 0, 0, 0, NULL},
    {"temperature", V_NUM_NULL, 0, 0, 2, NULL},
    {"top_p", V_NUM_NULL, 0, 0, 1, NULL},
    {"response_format", V_RESPFMT, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

/* Copy body[key] into o[key]; a null or absent value yields dflt (taken). */
static void put(cJSON *o, const cJSON *body, const char *key, cJSON *dflt, int only_if_present) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
  if (!v && only_if_present) {
    cJSON_Delete(dflt);
    return;
  }
  if (v && !cJSON_IsNull(v)) {
    cJSON_Delete(dflt);
    jset(o, key, cJSON_Duplicate(v, 1));
  } else {
    jset(o, key, dflt);
  }
}

/* Fill an assistant from body; update=1 touches only the keys present. */
static void asst_fill(cJSON *a, const cJSON *body, int update) {
  put(a, body, "name", cJSON_CreateNull(), update);
  put(a, body, "description", cJSON_CreateNull(), update);
  put(a, body, "model", cJSON_CreateString("gpt-4o"), update);
  put(a, body, "instructions", cJSON_CreateNull(), update);
  put(a, body, "tools", cJSON_CreateArray(), update);
  put(a, body, "tool_resources", cJSON_CreateObject(), update);
  put(a, body, "metadata", cJSON_CreateObject(), update);
  put(a, body, "top_p", cJSON_CreateNumber(1.0), update);
  put(a, body, "temperature", cJSON_CreateNumber(1.0), update);
  put(a, body, "reasoning_effort", cJSON_CreateNull(), update);
  put(a, body, "response_format", cJSON_CreateString("auto"), update);
}

static void asst_create(const sapi_req *q, sapi_reply *r) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  if (sreq_check_fields(body, asst_fields, r, NULL, 0) == 0) {
    sstore_lock();
    sobj *a = sstore_new(SK_ASST, NULL);
    if (a) {
      asst_fill(a->json, body, 0);
      sreq_obj(r, a->json);
    } else {
      sreq_json(r, 500, NULL);
    }
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static void asst_update(const sapi_req *q, sapi_reply *r, const char *id) {
  cJSON *body = sreq_parse_body(q, r, 1);
  if (!body) return;
  if (sreq_check_fields(body, asst_fields, r, NULL, 1) == 0) {
    sstore_lock();
    sobj *a = sstore_get(id, SK_ASST);
    if (a) {
      asst_fill(a->json, body, 1);
      sreq_obj(r, a->json);
    } else {
      sreq_not_found(r, "assistant", id);
    }
    sstore_unlock();
  }
  cJSON_Delete(body);
}


/* ---- threads and messages --------------------------------------------- */

/* Build a user/assistant message on thread from a validated request. */
static sobj *msg_add(sobj *thread, const cJSON *m) {
  sobj *msg = sstore_new(SK_MSG, thread);
  if (!msg) return NULL;
  cJSON *j = msg->json;
  const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
  cJSON_AddStringToObject(j, "thread_id", thread->id);
  cJSON_AddStringToObject(j, "status", "completed");
  cJSON_AddNullToObject(j, "incomplete_details");
  cJSON_AddNumberToObject(j, "completed_at", (double)msg->created_at);
  cJSON_AddNullToObject(j, "incomplete_at");
  cJSON_AddStringToObject(j, "role", cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring);
  cJSON *out = cJSON_AddArrayToObject(j, "content");
  if (cJSON_IsString(content)) {
    cJSON *part = cJSON_CreateObject();
    cJSON_AddStringToObject(part, "type", "text");
    cJSON *t = cJSON_AddObjectToObject(part, "text");
    cJSON_AddStringToObject(t, "value", content->valuestring);
    cJSON_AddArrayToObject(t, "annotations");
    cJSON_AddItemToArray(out, part);
  } else {
    const cJSON *p;
    cJSON_ArrayForEach(p, content) {
      const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
      if (strcmp(ty->valuestring, "text") == 0) {
        /* Request parts carry text as a string; stored ones as {value,annotations}. */
        cJSON *part = cJSON_CreateObject();
        cJSON_AddStringToObject(part, "type", "text");
        cJSON *t = cJSON_AddObjectToObject(part, "text");
        cJSON_AddStringToObject(t, "value", cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring);
        cJSON_AddArrayToObject(t, "annotations");
        cJSON_AddItemToArray(out, part);
      } else {
        cJSON_AddItemToArray(out, cJSON_Duplicate(p, 1));
      }
    }
  }
  cJSON_AddNullToObject(j, "assistant_id");
  cJSON_AddNullToObject(j, "run_id");
  const cJSON *att = cJSON_GetObjectItemCaseSensitive(m, "attachments");
  cJSON_AddItemToObject(j, "attachments", cJSON_IsArray(att) ? cJSON_Duplicate(att, 1) : cJSON_CreateArray());
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(m, "metadata");
  cJSON_AddItemToObject(j, "metadata", cJSON_IsObject(meta) ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject());
  if (samsg_attach_search(thread, j) != AW_OK) { /* file_search attachments: the thread's vector store */
    sstore_delete(msg);
    return NULL;
  }
  return msg;
}

/* Create a thread with its initial messages (validated body); lock held. */
static sobj *thread_make(const cJSON *body) {
  sobj *t = sstore_new(SK_THREAD, NULL);
  if (!t) return NULL;
  const cJSON *tr = cJSON_GetObjectItemCaseSensitive(body, "tool_resources");
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(body, "metadata");
  cJSON_AddItemToObject(t->json, "tool_resources", cJSON_IsObject(tr) ? cJSON_Duplicate(tr, 1) : cJSON_CreateObject());
  cJSON_AddItemToObject(t->json, "metadata", cJSON_IsObject(meta) ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject());
  const cJSON *m;
  cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(body, "messages")) {
    if (!msg_add(t, m)) {
      sstore_delete(t);
      return NULL;
    }
  }
  return t;
}

static void thread_create(const sapi_req *q, sapi_reply *r) {
  cJSON *body = sreq_parse_body(q, r, 1);
  if (!body) return;
  if (sreq_check_fields(body, sreq_thread_fields, r, NULL, 0) == 0 && samsg_check(body, r) == 0) {
    sstore_lock();
    sobj *t = thread_make(body);
    if (t) sreq_obj(r, t->json);
    else sreq_json(r, 500, NULL);
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static const sreq_field thread_update_fields[] = {
    {"tool_resources", V_TOOLRES, 0, 0, 0, NULL},
    {"metadata", V_META, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static void thread_update(const sapi_req *q, sapi_reply *r, const char *id) {
  cJSON *body = sreq_parse_body(q, r, 1);
  if (!body) return;
  if (sreq_check_fields(body, thread_update_fields, r, NULL, 0) == 0) {
    sstore_lock();
    sobj *t = sstore_get(id, SK_THREAD);
    if (t) {
      put(t->json, body, "tool_resources", cJSON_CreateObject(), 1);
      put(t->json, body, "metadata", cJSON_CreateObject(), 1);
      sreq_obj(r, t->json);
    } else {
      sreq_not_found(r, "thread", id);
    }
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static void active_run_error(sapi_reply *r, const sobj *t) {
  BAD(r, NULL, NULL, "Thread %s already has an active run %s.", t->id, t->active_run->id);
}

static void msg_create(const sapi_req *q, sapi_reply *r, const char *tid) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  if (sreq_check_fields(body, sreq_msg_fields, r, NULL, 0) == 0 && samsg_check(body, r) == 0) {
    sstore_lock();
    sobj *t = sstore_get(tid, SK_THREAD), *m;
    if (!t) sreq_not_found(r, "thread", tid);
    else if (t->active_run) active_run_error(r, t);
    else if ((m = msg_add(t, body)) != NULL) sreq_obj(r, m->json);
    else sreq_json(r, 500, NULL);
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static int msg_of_run(const sobj *o, const void *run_id) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o->json, "run_id");
  return cJSON_IsString(v) && strcmp(v->valuestring, run_id) == 0;
}

/* ---- runs ------------------------------------------------------------- */

static const sreq_field run_fields[] = {
    {"assistant_id", V_STR, 1, 0, 0, NULL},
    {"model", V_STR_NULL, 0, 0, 256, NULL},
    {"reasoning_effort", V_EFFORT, 0, 0, 0, NULL},
    {"instructions", V_STR_NULL, 0, 0, 256000, NULL},
    {"additional_instructions", V_STR_NULL, 0, 0, 256000, NULL},
    {"additional_messages", V_MSGS_NULL, 0, 0, 0, NULL},
    {"tools", V_TOOLS_NULL, 0, 0, 0, NULL},
    {"metadata", V_META, 0, 0, 0, NULL},
    {"temperature", V_NUM_NULL, 0, 0, 2, NULL},
    {"top_p", V_NUM_NULL, 0, 0, 1, NULL},
    {"stream", V_BOOL_NULL, 0, 0, 0, NULL},
    {"max_prompt_tokens", V_INT_NULL, 0, 256, 1e9, NULL},
    {"max_completion_tokens", V_INT_NULL, 0, 256, 1e9, NULL},
    {"truncation_strategy", V_TRUNC, 0, 0, 0, NULL},
    {"tool_choice", V_TOOLCHOICE, 0, 0, 0, NULL},
    {"parallel_tool_calls", V_BOOL, 0, 0, 0, NULL},
    {"response_format", V_RESPFMT, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const sreq_field thread_run_fields[] = {
    {"assistant_id", V_STR, 1, 0, 0, NULL},
    {"thread", V_THREAD, 0, 0, 0, NULL},
    {"model", V_STR_NULL, 0, 0, 256, NULL},
    {"instructions", V_STR_NULL, 0, 0, 256000, NULL},
    {"tools", V_TOOLS_NULL, 0, 0, 0, NULL},
    {"tool_resources", V_TOOLRES, 0, 0, 0, NULL},
    {"metadata", V_META, 0, 0, 0, NULL},
    {"temperature", V_NUM_NULL, 0, 0, 2, NULL},
    {"top_p", V_NUM_NULL, 0, 0, 1, NULL},
    {"stream", V_BOOL_NULL, 0, 0, 0, NULL},
    {"max_prompt_tokens", V_INT_NULL, 0, 256, 1e9, NULL},
    {"max_completion_tokens", V_INT_NULL, 0, 256, 1e9, NULL},
    {"truncation_strategy", V_TRUNC, 0, 0, 0, NULL},
    {"tool_choice", V_TOOLCHOICE, 0, 0, 0, NULL},
    {"parallel_tool_calls", V_BOOL, 0, 0, 0, NULL},
    {"response_format", V_RESPFMT, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

/* Start run (lock held): either as an SSE stream or in the background. */
static void run_reply(sapi_reply *r, sobj *run, int stream, sstream_kind kind) {
  sfault_cfg c;
  sfault_get(&c);
  if (!stream) {
    sreq_obj(r, run->json);
    /* The response is sent after latency_ms too; the run starts then. */
    srun_background(run->id, c.latency_ms);
    return;
  }
  run->run->stream_owned = 1;
  cJSON *rec = r->rec;
  r->rec = NULL;
  if (rec) cJSON_AddNumberToObject(rec, "status", 200);
  /* A stream that stops at requires_action has no answer to cut short:
   * it does not spend an injected drop, which goes to the next answer. */
  int drop = srun_wants_tools(run) ? 0 : sfault_take_drop_stream();
  r->stream = sstream_new(run->parent->id, run->id, kind, drop, rec);
  if (!r->stream) {
    run->run->stream_owned = 0;
    srun_background(run->id, 0);
    sreq_json(r, 500, NULL);
    return;
  }
  r->status = 200;
}

static void run_create(const sapi_req *q, sapi_reply *r, const char *tid) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  if (sreq_check_fields(body, run_fields, r, NULL, 0) == 0 && samsg_check(body, r) == 0) {
    const char *aid = cJSON_GetObjectItemCaseSensitive(body, "assistant_id")->valuestring;
    sstore_lock();
    sobj *t = sstore_get(tid, SK_THREAD), *a = sstore_get(aid, SK_ASST), *run = NULL;
    sfault_cfg c;
    sfault_get(&c);
    if (!t) sreq_not_found(r, "thread", tid);
    else if (!a) sreq_not_found(r, "assistant", aid);
    else if (t->active_run) active_run_error(r, t);
    else {
      const cJSON *m;
      int ok = 1;
      cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(body, "additional_messages")) ok &= msg_add(t, m) != NULL;
      if (ok) run = srun_create(t, a, body, c.answer_tokens);
      if (run) run_reply(r, run, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream")), SSTREAM_RUN);
      else sreq_json(r, 500, NULL);
    }
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static void thread_run_create(const sapi_req *q, sapi_reply *r) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  if (sreq_check_fields(body, thread_run_fields, r, NULL, 0) == 0 && samsg_check(body, r) == 0) {
    const char *aid = cJSON_GetObjectItemCaseSensitive(body, "assistant_id")->valuestring;
    sstore_lock();
    sobj *a = sstore_get(aid, SK_ASST), *t = NULL, *run = NULL;
    sfault_cfg c;
    sfault_get(&c);
    if (!a) {
      sreq_not_found(r, "assistant", aid);
    } else {
      cJSON *tb = cJSON_GetObjectItemCaseSensitive(body, "thread");
      cJSON *empty = tb ? NULL : cJSON_CreateObject();
      t = thread_make(tb ? tb : empty);
      cJSON_Delete(empty);
      if (t) run = srun_create(t, a, body, c.answer_tokens);
      if (run) run_reply(r, run, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream")), SSTREAM_THREAD_RUN);
      else sreq_json(r, 500, NULL);
    }
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static const sreq_field submit_fields[] = {
    {"tool_outputs", V_TOOL_OUTPUTS, 1, 0, 0, NULL},
    {"stream", V_BOOL_NULL, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static void run_submit(const sapi_req *q, sapi_reply *r, const char *tid, const char *rid) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  if (sreq_check_fields(body, submit_fields, r, NULL, 0) == 0) {
    sstore_lock();
    sobj *t = sstore_get(tid, SK_THREAD), *run = sstore_get(rid, SK_RUN);
    char err[2048];
    int rc;
    if (!t) sreq_not_found(r, "thread", tid);
    else if (!run || run->parent != t) sreq_not_found(r, "run", rid);
    else if ((rc = srun_submit_tool_outputs(run, cJSON_GetObjectItemCaseSensitive(body, "tool_outputs"), err,
                                            sizeof err)) == AW_ENOMEM)
      sreq_json(r, 500, NULL);
    else if (rc)
      BAD(r, run->run->status == RS_REQUIRES_ACTION ? "tool_outputs" : NULL, NULL, "%s", err);
    else run_reply(r, run, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream")), SSTREAM_SUBMIT);
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static void run_cancel(sapi_reply *r, sobj *run) {
  srun_status st = run->run->status;
  if (!srun_status_active(st) || st == RS_CANCELLING) {
    BAD(r, NULL, NULL, "Cannot cancel run with status '%s'.", srun_status_name(st));
    return;
  }
  srun_request_cancel(run);
  sreq_obj(r, run->json);
  /* A stream that owns the run sees cancelling at its next step. */
  if (!run->run->stream_owned) srun_background(run->id, 0);
}

/* ---- admin ------------------------------------------------------------ */

static void admin_stats(sapi_reply *r) {
  cJSON *o = sstats_to_json();
  long counts[RS_COUNT];
  sstore_lock();
  sstore_run_counts(counts);
  sstore_unlock();
  cJSON *runs = cJSON_AddObjectToObject(o, "runs");
  for (int s = 0; s < RS_COUNT; s++) cJSON_AddNumberToObject(runs, srun_status_name((srun_status)s), (double)counts[s]);
  sstore_lock();
  sresp_counts(counts);
  size_t convs = sstore_toplist(SK_CONV)->n;
  sstore_unlock();
  /* Responses use the run status names; requires_action, cancelling and
   * expired stay 0. */
  cJSON *resps = cJSON_AddObjectToObject(o, "responses");
  for (int s = 0; s < RS_COUNT; s++) cJSON_AddNumberToObject(resps, srun_status_name((srun_status)s), (double)counts[s]);
  cJSON_AddNumberToObject(o, "conversations", (double)convs);
  cJSON_AddNumberToObject(o, "pending_timers", (double)stimer_pending());
  cJSON_AddItemToObject(o, "rate_limit", srl_stats_json());
  cJSON_AddItemToObject(o, "vector_stores", svs_stats_json());
  sreq_json(r, 200, o);
}

static void admin(const sapi_req *q, sapi_reply *r, const char *what) {
  int get = strcmp(q->method, "GET") == 0, post = strcmp(q->method, "POST") == 0;
  if (strcmp(what, "faults") == 0 && (get || post)) {
    r->route = get ? SR_ADMIN_FAULTS_GET : SR_ADMIN_FAULTS_SET;
    if (post) {
      cJSON *body = sreq_parse_body(q, r, 1);
      if (!body) return;
      char err[256];
      int rc = sfault_set_json(body, err, sizeof err);
      cJSON_Delete(body);
      if (rc) {
        BAD(r, NULL, "invalid_value", "%s", err);
        return;
      }
    }
    sreq_json(r, 200, sfault_to_json());
  } else if (strcmp(what, "reset") == 0 && post) {
    r->route = SR_ADMIN_RESET;
    sstore_lock();
    sstore_reset();
    scntr_reset();
    sstore_unlock();
    malloc_trim(0); /* hand the freed store back to the OS between test suites */
    sfault_reset();
    srl_reset();
    sstats_reset();
    schat_reset();
    susage_reset();
    svs_reset();
    sfiles_reset();
    log_info(NULL, "state and faults reset");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    sreq_json(r, 200, o);
  } else if (strcmp(what, "rate_limit") == 0 && (get || post)) {
    r->route = SR_ADMIN_RATE_LIMIT;
    if (post) {
      cJSON *body = sreq_parse_body(q, r, 1);
      if (!body) return;
      char err[256];
      int rc = srl_set_json(body, err, sizeof err);
      cJSON_Delete(body);
      if (rc) {
        BAD(r, NULL, "invalid_value", "%s", err);
        return;
      }
    }
    sreq_json(r, 200, srl_settings_json());
  } else if (strcmp(what, "responses") == 0 && get) {
    r->route = SR_ADMIN_RESPONSES;
    sresp_admin(q, r);
  } else if (strcmp(what, "stats") == 0 && get) {
    r->route = SR_ADMIN_STATS;
    admin_stats(r);
  } else if (strcmp(what, "usage") == 0 && get) {
    r->route = SR_ADMIN_USAGE;
    sreq_json(r, 200, susage_to_json(q->arg(q->arg_cls, "model")));
  } else {
    sreq_err(r, 404, "invalid_request_error", NULL, NULL, "Invalid URL (%s %s)", q->method, q->path);
  }
}

/* ---- apply then fail ---------------------------------------------------- */

/* The request took effect (a 200 from a creating route): an injected
 * apply_then_fail replaces its answer by a 500/502 or a closed connection.
 * A stream that was about to answer is released first; the run or
 * response it would have shown goes on in the background, as it does when
 * a client goes away. */
static void apply_then_fail(sapi_reply *r) {
  if (r->status != 200) return;
  int st = sfault_take_apply_fail(sstats_route_name(r->route));
  if (st < 0) return;
  log_info(NULL, "apply_then_fail: %s applied, answering %d (injected)", sstats_route_name(r->route), st);
  if (r->stream) sstream_free(r->stream);
  if (r->rstream) srstream_free(r->rstream);
  if (r->cstream) scstream_free(r->cstream);
  r->stream = NULL;
  r->rstream = NULL;
  r->cstream = NULL;
  free(r->body);
  r->body = NULL;
  if (st == 0) {
    r->drop = 1;
    r->status = 0;
  } else if (st == 502) {
    sreq_err(r, 502, "server_error", NULL, NULL, "Bad gateway. (injected by the simulator after applying the request)");
  } else {
    sreq_err(r, 500, "server_error", NULL, NULL,
             "The server had an error while processing your request. Sorry about that! (injected by the simulator "
             "after applying the request)");
  }
}

/* ---- routing ---------------------------------------------------------- */

#define MAX_SEG 8

static int split(const char *path, char seg[MAX_SEG][64]) {
  int n = 0;
  const char *p = path;
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (n == MAX_SEG || len >= 64) return -1;
    memcpy(seg[n], p, len);
    seg[n++][len] = '\0';
    p += len;
  }
  return n;
}

/* Bearer token present and non-empty?  (Any value is accepted.) */
static int authorized(const char *auth) {
  if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) return 0;
  for (const char *p = auth + 7; *p; p++)
    if (*p != ' ') return 1;
  return 0;
}

/* Which endpoint is this?  Decided before auth and faults so that every
 * answer, 401 and 429 included, is counted against its endpoint. */
static sstats_route classify(const char *m, char s[MAX_SEG][64], int n) {
  int get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, del = strcmp(m, "DELETE") == 0;
  if (n < 2 || strcmp(s[0], "v1") != 0) return SR_UNKNOWN;
  if (strcmp(s[1], "assistants") == 0) {
    if (n == 2) return post ? SR_ASST_CREATE : get ? SR_ASST_LIST : SR_UNKNOWN;
    if (n == 3) return post ? SR_ASST_UPDATE : get ? SR_ASST_GET : del ? SR_ASST_DELETE : SR_UNKNOWN;
    return SR_UNKNOWN;
  }
  if (strcmp(s[1], "responses") == 0) {
    if (n == 2) return post ? SR_RESP_CREATE : SR_UNKNOWN;
    if (n == 3) return get ? SR_RESP_GET : del ? SR_RESP_DELETE : SR_UNKNOWN;
    if (n == 4 && strcmp(s[3], "cancel") == 0) return post ? SR_RESP_CANCEL : SR_UNKNOWN;
    if (n == 4 && strcmp(s[3], "input_items") == 0) return get ? SR_RESP_INPUT_ITEMS : SR_UNKNOWN;
    return SR_UNKNOWN;
  }
  if (strcmp(s[1], "conversations") == 0) {
    if (n == 2) return post ? SR_CONV_CREATE : SR_UNKNOWN;
    if (n == 3) return get ? SR_CONV_GET : post ? SR_CONV_UPDATE : del ? SR_CONV_DELETE : SR_UNKNOWN;
    if (strcmp(s[3], "items") != 0) return SR_UNKNOWN;
    if (n == 4) return get ? SR_CITEM_LIST : post ? SR_CITEM_CREATE : SR_UNKNOWN;
    if (n == 5) return get ? SR_CITEM_GET : del ? SR_CITEM_DELETE : SR_UNKNOWN;
    return SR_UNKNOWN;
  }
  if (strcmp(s[1], "chat") == 0)
    return n == 3 && strcmp(s[2], "completions") == 0 && post ? SR_CHAT_CREATE : SR_UNKNOWN;
  if (strcmp(s[1], "files") == 0) {
    if (n == 2) return post ? SR_FILE_CREATE : get ? SR_FILE_LIST : SR_UNKNOWN;
    if (n == 3) return get ? SR_FILE_GET : del ? SR_FILE_DELETE : SR_UNKNOWN;
    return n == 4 && strcmp(s[3], "content") == 0 && get ? SR_FILE_CONTENT : SR_UNKNOWN;
  }
  if (strcmp(s[1], "vector_stores") == 0) {
    if (n == 2) return post ? SR_VS_CREATE : get ? SR_VS_LIST : SR_UNKNOWN;
    if (n == 3) return get ? SR_VS_GET : post ? SR_VS_UPDATE : del ? SR_VS_DELETE : SR_UNKNOWN;
    if (n == 4 && strcmp(s[3], "search") == 0) return post ? SR_VS_SEARCH : SR_UNKNOWN;
    if (strcmp(s[3], "files") == 0) {
      if (n == 4) return post ? SR_VSF_CREATE : get ? SR_VSF_LIST : SR_UNKNOWN;
      return n == 5 ? (get ? SR_VSF_GET : del ? SR_VSF_DELETE : SR_UNKNOWN) : SR_UNKNOWN;
    }
    if (strcmp(s[3], "file_batches") != 0) return SR_UNKNOWN;
    if (n == 4) return post ? SR_VSB_CREATE : SR_UNKNOWN;
    if (n == 5) return get ? SR_VSB_GET : SR_UNKNOWN;
    if (n == 6 && strcmp(s[5], "cancel") == 0) return post ? SR_VSB_CANCEL : SR_UNKNOWN;
    return n == 6 && strcmp(s[5], "files") == 0 && get ? SR_VSB_FILES : SR_UNKNOWN;
  }
  if (strcmp(s[1], "containers") == 0) {
    if (n == 2) return post ? SR_CNTR_CREATE : get ? SR_CNTR_LIST : SR_UNKNOWN;
    if (n == 3) return get ? SR_CNTR_GET : del ? SR_CNTR_DELETE : SR_UNKNOWN;
    if (strcmp(s[3], "files") != 0) return SR_UNKNOWN;
    if (n == 4) return get ? SR_CFILE_LIST : SR_UNKNOWN;
    if (n == 5) return get ? SR_CFILE_GET : del ? SR_CFILE_DELETE : SR_UNKNOWN;
    return n == 6 && strcmp(s[5], "content") == 0 && get ? SR_CFILE_CONTENT : SR_UNKNOWN;
  }
  if (strcmp(s[1], "threads") != 0) return SR_UNKNOWN;
  if (n == 2) return post ? SR_THREAD_CREATE : SR_UNKNOWN;
  if (n == 3 && strcmp(s[2], "runs") == 0) return post ? SR_THREAD_RUN : SR_UNKNOWN;
  if (n == 3) return post ? SR_THREAD_UPDATE : get ? SR_THREAD_GET : del ? SR_THREAD_DELETE : SR_UNKNOWN;
  if (strcmp(s[3], "messages") == 0) {
    if (n == 4) return post ? SR_MSG_CREATE : get ? SR_MSG_LIST : SR_UNKNOWN;
    if (n == 5) return get ? SR_MSG_GET : SR_UNKNOWN;
    return SR_UNKNOWN;
  }
  if (strcmp(s[3], "runs") != 0) return SR_UNKNOWN;
  if (n == 4) return post ? SR_RUN_CREATE : get ? SR_RUN_LIST : SR_UNKNOWN;
  if (n == 5) return get ? SR_RUN_GET : SR_UNKNOWN;
  if (n == 6 && strcmp(s[5], "cancel") == 0) return post ? SR_RUN_CANCEL : SR_UNKNOWN;
  if (n == 6 && strcmp(s[5], "submit_tool_outputs") == 0) return post ? SR_RUN_SUBMIT : SR_UNKNOWN;
  if (n == 6 && strcmp(s[5], "steps") == 0) return get ? SR_STEP_LIST : SR_UNKNOWN;
  if (n == 7 && strcmp(s[5], "steps") == 0) return get ? SR_STEP_GET : SR_UNKNOWN;
  return SR_UNKNOWN;
}

/* Run a classified /v1 route (after auth and fault injection). */
static void route_v1(const sapi_req *q, sapi_reply *r, char s[MAX_SEG][64]) {
  if (r->route >= SR_RESP_CREATE && r->route <= SR_RESP_INPUT_ITEMS) {
    sresp_handle(q, r, s);
    return;
  }
  if (r->route >= SR_CONV_CREATE && r->route <= SR_CITEM_DELETE) {
    sconv_handle(q, r, s);
    return;
  }
  if (r->route >= SR_FILE_CREATE && r->route <= SR_FILE_CONTENT) {
    sfiles_handle(q, r, s);
    return;
  }
  if (r->route >= SR_CNTR_CREATE && r->route <= SR_CFILE_CONTENT) {
    scntr_handle(q, r, s);
    return;
  }
  if (r->route >= SR_VS_CREATE && r->route <= SR_VSB_FILES) {
    svs_handle(q, r, s);
    return;
  }
  switch (r->route) {
  case SR_CHAT_CREATE: schat_handle(q, r); return;
  case SR_ASST_CREATE: asst_create(q, r); return;
  case SR_ASST_UPDATE: asst_update(q, r, s[2]); return;
  case SR_THREAD_CREATE: thread_create(q, r); return;
  case SR_THREAD_RUN: thread_run_create(q, r); return;
  case SR_THREAD_UPDATE: thread_update(q, r, s[2]); return;
  case SR_MSG_CREATE: msg_create(q, r, s[2]); return;
  case SR_RUN_CREATE: run_create(q, r, s[2]); return;
  case SR_RUN_SUBMIT: run_submit(q, r, s[2], s[4]); return;
  default: break;
  }
  /* The rest are lookups under one lock. */
  sstore_lock();
  if (r->route == SR_ASST_LIST) {
    sreq_list(q, r, sstore_assistants(), NULL, NULL);
  } else if (r->route == SR_ASST_GET || r->route == SR_ASST_DELETE) {
    sobj *a = sstore_get(s[2], SK_ASST);
    if (!a) sreq_not_found(r, "assistant", s[2]);
    else if (r->route == SR_ASST_GET) sreq_obj(r, a->json);
    else {
      sstore_delete(a);
      sreq_deleted(r, s[2], "assistant.deleted");
    }
  } else {
    sobj *t = sstore_get(s[2], SK_THREAD), *run = NULL, *o;
    sstats_route route = r->route;
    if (!t) {
      sreq_not_found(r, "thread", s[2]);
    } else if (route == SR_THREAD_GET) {
      sreq_obj(r, t->json);
    } else if (route == SR_THREAD_DELETE) {
      sstore_delete(t);
      sreq_deleted(r, s[2], "thread.deleted");
    } else if (route == SR_MSG_LIST) {
      const char *rid = q->arg(q->arg_cls, "run_id");
      sreq_list(q, r, &t->kids, rid ? msg_of_run : NULL, rid);
    } else if (route == SR_MSG_GET) {
      o = sstore_get(s[4], SK_MSG);
      if (o && o->parent == t) sreq_obj(r, o->json);
      else sreq_not_found(r, "message", s[4]);
    } else if (route == SR_RUN_LIST) {
      sreq_list(q, r, &t->runs, NULL, NULL);
    } else if (!(run = sstore_get(s[4], SK_RUN)) || run->parent != t) {
      sreq_not_found(r, "run", s[4]);
    } else if (route == SR_RUN_GET) {
      sreq_obj(r, run->json);
    } else if (route == SR_RUN_CANCEL) {
      run_cancel(r, run);
    } else {
      srsteps_reply(q, r, run, route == SR_STEP_LIST ? NULL : s[6]);
    }
  }
  sstore_unlock();
}

void sapi_handle(const sapi_req *q, sapi_reply *r) {
  r->route = SR_UNKNOWN;
  r->retry_after_s = -1;
  char s[MAX_SEG][64];
  int n = split(q->path, s);
  if (n == 2 && strcmp(s[0], "admin") == 0) {
    admin(q, r, s[1]);
    return;
  }
  if (n == 3 && strcmp(s[0], "admin") == 0 && strcmp(s[1], "conversations") == 0 && strcmp(q->method, "GET") == 0) {
    r->route = SR_ADMIN_CONV;
    sconv_admin(r, s[2]);
    return;
  }
  if (n == 3 && strcmp(s[0], "admin") == 0 && strcmp(s[1], "chat") == 0 && strcmp(s[2], "requests") == 0 &&
      strcmp(q->method, "GET") == 0) {
    r->route = SR_ADMIN_CHAT_REQUESTS;
    schat_admin_requests(q, r);
    return;
  }
  if (n == 1 && strcmp(s[0], "healthz") == 0) {
    r->route = SR_HEALTH;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    sreq_json(r, 200, o);
    return;
  }
  r->route = n > 0 ? classify(q->method, s, n) : SR_UNKNOWN;
  if (r->route == SR_UNKNOWN) {
    sreq_err(r, 404, "invalid_request_error", NULL, NULL, "Invalid URL (%s %s)", q->method, q->path);
    return;
  }
  if (!authorized(q->auth)) {
    sreq_err(r, 401, "invalid_request_error", NULL, NULL,
              "You didn't provide an API key. You need to provide your API key in an Authorization header using "
              "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
    return;
  }
  int assistants_api = r->route < SR_RESP_CREATE; /* the Responses/Conversations/Chat APIs need no beta header */
  if (assistants_api && (!q->beta || !strstr(q->beta, "assistants=v2"))) {
    /* The real service refuses Assistants calls without this header. */
    BAD(r, NULL, "invalid_beta",
        "You must provide the 'OpenAI-Beta' header to access the Assistants API. Please try again by setting the "
        "header 'OpenAI-Beta: assistants=v2'.");
    return;
  }
  const char *rl_type = NULL;
  char rl_msg[512];
  if (srl_take(q->auth, q->path, q->body, q->body_len, &r->rl, &rl_type, rl_msg, sizeof rl_msg) == 429) {
    r->retry_after_s = (int)((r->rl.retry_after_ms + 999) / 1000);
    sreq_err(r, 429, rl_type, NULL, "rate_limit_exceeded", "%s", rl_msg);
    return;
  }
  int retry_after = 0;
  sfault_http f = sfault_take_http(&retry_after);
  if (f == SFAULT_429) {
    r->retry_after_s = retry_after;
    sreq_err(r, 429, "requests", NULL, "rate_limit_exceeded",
              "Rate limit reached for requests. Please try again in %ds. (injected by the simulator)", retry_after);
    return;
  }
  if (f == SFAULT_500) {
    sreq_err(r, 500, "server_error", NULL, NULL,
              "The server had an error while processing your request. Sorry about that! (injected by the simulator)");
    return;
  }
  route_v1(q, r, s);
  apply_then_fail(r);
}

/* asst_start.c -- be_turn_start on the Assistants API: the conversation's
 * thread (create + claim in the store, the lost race), recovery (by the
 * checkpoint, or by looking up what the event created), and the lookup
 * after an ambiguous POST runs.
 *
 * What a turn creates carries our event id, so that it can be found again
 * instead of created twice: the run's metadata.aw_tag, and the user
 * message's metadata.event_id (the message rides on the run as
 * additional_messages: one request, both or neither).  A run started for a
 * message an earlier attempt added (v1 added it separately) also names it
 * in metadata.aw_message_id.
 */
#include "asst_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ---- recovery: what did an earlier attempt create? ------------------------------ */

static void on_lookup_runs(void *opaque, const api_result *r);
static void on_lookup_messages(void *opaque, const api_result *r);

/* A turn starts its run right after its message, so the run, if any, is
 * among the newest ones of the thread. */
#define LOOKUP_RUNS_LIMIT 20

static void lookup_runs(turn_op *t) {
  if (t->phase != T_LOOKUP_MSG_RUN) asst_turn_phase(t, T_LOOKUP_RUNS);
  int rc = api_runs_list(t->be->api, t->thread, LOOKUP_RUNS_LIMIT, "desc", on_lookup_runs, t,
                         &t->b.call);
  if (rc) asst_turn_fail_start(t, rc, "GET runs");
}

void asst_lookup_tagged_run(turn_op *t) {
  t->ambiguous_lookup = 1;
  t->lookups = 0;
  lookup_runs(t);
}

static void post_run_or_fail(turn_op *t) {
  t->after[0] = '\0';
  int rc = asst_turn_post_run(t);
  if (rc) asst_turn_fail_start(t, rc, "POST runs");
}

/* Found the run of this event: follow it (a fresh GET says where it is). */
static void adopt(turn_op *t, const api_json_run *run) {
  if (log_enabled(LOG_INFO)) {
    log_ctx ctx = {.event_id = t->event_id, .conversation_id = t->conversation_id,
                   .thread_id = t->thread, .run_id = run->id};
    log_info(&ctx, "found the run an earlier attempt started (status %s); following it", run->status);
  }
  t->run = *run;
  t->run_created = 1;
  /* Recovering, the text arrives whole; within one attempt the missing
   * deltas are sent at the end (asst_turn_finish). */
  if (!t->ambiguous_lookup) t->replay = 1;
  asst_turn_clearerr(t);
  if (asst_turn_run_known(t)) return;
  asst_turn_poll(t);
}

static void on_lookup_runs(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (r->err) {
    /* "Unknown" is never "nothing": a failed lookup never leads to a POST. */
    if (t->ambiguous_lookup) asst_turn_finish(t); /* the ambiguous outcome stands */
    else asst_turn_fail_api(t, r);
    return;
  }
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->json, "data"), *m;
  cJSON_ArrayForEach(m, data) {
    api_json_run run;
    if (api_json_run_parse(m, &run) != AW_OK) continue;
    if (strcmp(run.tag, t->event_id) == 0 ||
        (t->phase == T_LOOKUP_MSG_RUN && strcmp(run.message_tag, t->msg_id) == 0)) {
      adopt(t, &run);
      return;
    }
  }
  if (t->ambiguous_lookup) {
    /* The run may not be listed yet: look again after a backoff, a few
     * times.  Still absent after that, it was certainly not created (the
     * API creates a run before it answers): create it, a bounded number
     * of times; past that, leave it to a later attempt (recover). */
    if (++t->lookups < ASST_LOOKUPS_MAX) {
      asst_turn_phase(t, T_LOOKUP_WAIT);
      asst_turn_after(t, t->be->retry_base_ms << t->lookups, lookup_runs);
    } else if (t->posts < ASST_POSTS_MAX) {
      if (log_enabled(LOG_INFO)) {
        log_ctx ctx = {.event_id = t->event_id, .conversation_id = t->conversation_id, .thread_id = t->thread};
        log_info(&ctx, "no run of this event after an ambiguous failure; creating it again");
      }
      asst_turn_clearerr(t);
      t->ambiguous_lookup = 0;
      post_run_or_fail(t);
    } else {
      asst_turn_finish(t); /* t->err: AW_EAMBIGUOUS */
    }
    return;
  }
  if (t->phase == T_LOOKUP_MSG_RUN) {
    /* The message is there and no run followed it: start one for it. */
    post_run_or_fail(t);
    return;
  }
  asst_turn_phase(t, T_LOOKUP_MESSAGES);
  t->after[0] = '\0';
  t->pages = 0;
  int rc = api_messages_list(t->be->api, t->thread, NULL, "desc", 100, NULL, on_lookup_messages, t,
                             &t->b.call);
  if (rc) asst_turn_fail_start(t, rc, "GET messages");
}

static void on_lookup_messages(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (r->err) {
    asst_turn_fail_api(t, r);
    return;
  }
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->json, "data"), *m;
  const char *last = NULL;
  cJSON_ArrayForEach(m, data) {
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "id"));
    const char *role = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(m, "role"));
    const char *v = asst_md_get(m, "event_id");
    last = id;
    if (asst_id_ok(id) && role && strcmp(role, "user") == 0 && v && strcmp(v, t->event_id) == 0) {
      asst_copy(t->msg_id, sizeof t->msg_id, id);
      t->after[0] = '\0';
      asst_turn_phase(t, T_LOOKUP_MSG_RUN);
      lookup_runs(t);
      return;
    }
  }
  t->pages++;
  if (asst_id_ok(last) && strcmp(last, t->after) != 0 && t->pages < ASST_MAX_PAGES &&
      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "has_more"))) {
    asst_copy(t->after, sizeof t->after, last);
    int rc = api_messages_list(t->be->api, t->thread, NULL, "desc", 100, t->after, on_lookup_messages,
                               t, &t->b.call);
    if (rc) asst_turn_fail_start(t, rc, "GET messages");
    return;
  }
  /* Nothing of this event in the thread (its newest ASST_MAX_PAGES * 100
   * messages: an older one would be a turn long finished): start afresh. */
  post_run_or_fail(t);
}

/* The thread is known: resume, look up, or start.  Returns what failed
 * before any I/O (no callback then). */
static int begin(turn_op *t, const char *checkpoint) {
  if (!t->recover || t->fresh_thread) return asst_turn_post_run(t);
  char thread[API_JSON_ID_MAX], run[API_JSON_ID_MAX];
  if (checkpoint && asst_checkpoint_parse(checkpoint, thread, run) == AW_OK) {
    /* The checkpoint names the run: it is the truth about this event. */
    asst_copy(t->thread, sizeof t->thread, thread);
    asst_copy(t->run.id, sizeof t->run.id, run);
    asst_copy(t->checkpoint, sizeof t->checkpoint, checkpoint);
    t->run_created = 1;
    t->replay = 1;
    t->started_ms = asst_now_ms();
    asst_turn_phase(t, T_RESUME);
    int rc = api_runs_retrieve(t->be->api, t->thread, t->run.id, asst_turn_on_run, t, &t->b.call);
    if (rc) t->b.call = NULL;
    return rc;
  }
  /* No checkpoint (or another backend's): the run may still exist if the
   * earlier attempt died before recording it. */
  asst_turn_phase(t, T_LOOKUP_RUNS);
  int rc = api_runs_list(t->be->api, t->thread, LOOKUP_RUNS_LIMIT, "desc", on_lookup_runs, t,
                         &t->b.call);
  if (rc) t->b.call = NULL;
  return rc;
}

static void begin_or_fail(turn_op *t) {
  /* The checkpoint matters only when the handle was known at the start. */
  int rc = begin(t, NULL);
  if (rc) asst_turn_fail_start(t, rc, "turn");
}

/* ---- the thread: create, claim, the lost race ------------------------------------- */

static void on_loser_deleted(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (r->err && r->http_status != 404) {
    log_ctx ctx = {.event_id = t->event_id, .conversation_id = t->conversation_id,
                   .thread_id = t->created_thread};
    log_warn(&ctx, "could not delete the unused thread: %s", r->errmsg);
  }
  t->created_thread[0] = '\0';
  begin_or_fail(t);
}

static void on_claimed(void *opaque, int err, const char *winner) {
  turn_op *t = opaque;
  t->b.in_store = 0;
  if (t->b.cancelled) {
    asst_turn_free(t);
    return;
  }
  if (err || !winner || !winner[0] || !asst_id_ok(winner)) {
    /* Our thread may or may not be recorded (the store's answer was lost,
     * or it is garbage): it is not deleted -- the store may point at it --
     * and a later attempt reads the store again. */
    asst_turn_seterr(t, err ? err : AW_EREDIS, 0, NULL,
                     "thread %s for conversation %s could not be recorded in the store: %s",
                     t->created_thread, t->conversation_id, err ? aw_strerror(err) : "no winner");
    asst_turn_finish(t);
    return;
  }
  if (strcmp(winner, t->created_thread) != 0) {
    log_ctx ctx = {.event_id = t->event_id, .conversation_id = t->conversation_id, .thread_id = winner};
    log_info(&ctx, "another worker created the conversation's thread first; using %s, deleting %s",
             winner, t->created_thread);
    asst_copy(t->thread, sizeof t->thread, winner);
    asst_turn_phase(t, T_DELETE_LOSER);
    if (api_threads_delete(t->be->api, t->created_thread, on_loser_deleted, t, &t->b.call) != AW_OK) {
      t->b.call = NULL;
      log_warn(&ctx, "could not delete the unused thread %s", t->created_thread);
      begin_or_fail(t);
    }
    return;
  }
  asst_copy(t->thread, sizeof t->thread, t->created_thread);
  t->created_thread[0] = '\0';
  t->fresh_thread = 1; /* nothing of this event can be in it */
  begin_or_fail(t);
}

static void on_thread_created(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (r->err) {
    /* AW_EAMBIGUOUS may leave an empty thread nobody records.  Threads
     * cannot be listed (nor found by metadata), and an empty one costs
     * nothing: accepted, rather than a second store round trip per new
     * conversation. */
    asst_turn_fail_api(t, r);
    return;
  }
  const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->json, "id"));
  if (!asst_id_ok(id)) {
    asst_turn_seterr(t, AW_EPARSE, r->http_status, NULL, "POST %s/threads: response has no valid id",
                     api_client_base_path(t->be->api));
    asst_turn_finish(t);
    return;
  }
  asst_copy(t->created_thread, sizeof t->created_thread, id);
  asst_turn_phase(t, T_CLAIM);
  const be_store *st = t->be->store;
  t->b.in_store = 1;
  /* The store may call back before claim_handle returns: t is not touched
   * after a successful call. */
  int rc = st->claim_handle(st->self, "thread", t->conversation_id, t->created_thread, on_claimed, t);
  if (rc) {
    t->b.in_store = 0;
    on_claimed(t, rc, NULL);
  }
}

/* ---- be_turn_start ------------------------------------------------------------------ */

static int input_ok(const be_turn_input *in) {
  if (!in->conversation_id || !in->conversation_id[0] || !in->event_id || !in->event_id[0] ||
      strlen(in->event_id) > 128 || !in->assistant || !asst_id_ok(in->assistant->id) || !in->nparts ||
      !in->parts || (in->nmetadata && !in->metadata))
    return 0;
  if (in->handle && in->handle[0] && !asst_id_ok(in->handle)) return 0;
  for (size_t i = 0; i < in->nparts; i++) {
    contract_part_type ty = in->parts[i].type;
    /* Images go by URL or by file id (inline bytes were uploaded by the
     * worker); `file` parts are refused at intake. */
    if ((ty != CONTRACT_PART_TEXT && ty != CONTRACT_PART_IMAGE_URL && ty != CONTRACT_PART_IMAGE_FILE) ||
        !in->parts[i].text || (ty != CONTRACT_PART_TEXT && !in->parts[i].text[0]))
      return 0;
  }
  if (in->nattachments && !in->attachments) return 0;
  for (size_t i = 0; i < in->nattachments; i++)
    if (!in->attachments[i].file_id || !in->attachments[i].file_id[0] || !in->attachments[i].tools)
      return 0;
  for (size_t i = 0; i < in->nmetadata; i++)
    if (!in->metadata[i].key || !in->metadata[i].value) return 0;
  if (in->assistant->tool_choice_json) {
    /* Sent as given (the configuration validated its shape): JSON at least. */
    cJSON *tc = cJSON_Parse(in->assistant->tool_choice_json);
    int ok = cJSON_IsString(tc) || cJSON_IsObject(tc);
    cJSON_Delete(tc);
    if (!ok) return 0;
  }
  return 1;
}

/* The thread is known (t->thread: resume, look up or start) or created.
 * Returns what failed before any I/O (no callback then). */
static int proceed(turn_op *t, const char *checkpoint) {
  if (t->thread[0]) return begin(t, checkpoint);
  /* A new conversation.  A checkpoint cannot matter: its thread would
   * have been recorded before any run was started in it. */
  cJSON *j = cJSON_CreateObject(), *md = NULL;
  char *body = NULL;
  int ok = j && (md = cJSON_AddObjectToObject(j, "metadata")) &&
           cJSON_AddStringToObject(md, "conversation_id", t->conversation_id);
  if (!ok) cJSON_Delete(j);
  int rc = !ok || asst_print_json(j, &body) ? AW_ENOMEM : AW_OK;
  if (!rc) {
    asst_turn_phase(t, T_THREAD);
    rc = api_threads_create(t->be->api, body, on_thread_created, t, &t->b.call);
    if (rc) t->b.call = NULL;
  }
  cJSON_free(body);
  return rc;
}

/* ---- an asst_ id's tools, for the attachments ------------------------------------ */

/* An assistant a request names by id is no configured one: its tools are
 * known only to the API.  A run's tools override replaces them all, so a
 * turn whose attachments need a hosted tool reads them first (one GET). */
static void on_assistant(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  if (r->err) {
    asst_turn_fail_api(t, r);
    return;
  }
  const cJSON *tools = cJSON_GetObjectItemCaseSensitive(r->json, "tools");
  char *tj = cJSON_IsArray(tools) ? cJSON_PrintUnformatted(tools) : NULL;
  int rc = cJSON_IsArray(tools) && !tj ? AW_ENOMEM : AW_OK;
  if (!rc) rc = api_json_run_tools(tj, 0, t->att_need, &t->tools_override);
  cJSON_free(tj);
  if (!rc) rc = proceed(t, t->start_checkpoint);
  free(t->start_checkpoint);
  t->start_checkpoint = NULL;
  if (rc) asst_turn_fail_start(t, rc, "turn");
}

/* The run's tools override; 1 when the assistant must be read first. */
static int run_tools(turn_op *t, const be_turn_input *in, int *rc) {
  for (size_t i = 0; i < in->nattachments; i++) t->att_need |= in->attachments[i].tools;
  *rc = AW_OK;
  if (!t->att_need) return 0;
  const be_assistant *a = in->assistant;
  if (!a->hash && !a->tools_json && !a->nvector_store_ids) return 1; /* named by id */
  *rc = api_json_run_tools(a->tools_json, a->nvector_store_ids > 0, t->att_need, &t->tools_override);
  return 0;
}

int asst_turn_start(be_backend *bb, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                    be_op **out) {
  be_asst *be = (be_asst *)bb;
  *out = NULL;
  if (!input_ok(in)) return AW_EINVAL;
  turn_op *t = asst_turn_new(be, ev, opaque);
  if (!t) return AW_ENOMEM;
  t->want_deltas = in->want_deltas;
  t->tools_routed = in->tools_routed;
  t->recover = in->recover;
  t->include_steps = in->include_steps;
  t->inline_file_max = in->inline_file_max;
  asst_copy(t->event_id, sizeof t->event_id, in->event_id);
  asst_copy(t->assistant, sizeof t->assistant, in->assistant->id);
  int rc = AW_OK;
  if (!(t->conversation_id = strdup(in->conversation_id))) rc = AW_ENOMEM;
  if (in->instructions && !(t->instructions = strdup(in->instructions))) rc = AW_ENOMEM;
  if (in->additional_instructions && !(t->additional = strdup(in->additional_instructions))) rc = AW_ENOMEM;
  if (in->assistant->tool_choice_json && !(t->tool_choice = strdup(in->assistant->tool_choice_json)))
    rc = AW_ENOMEM;
  if (!rc)
    rc = api_json_user_message(in->parts, in->nparts, in->attachments, in->nattachments, in->event_id,
                               in->conversation_id, in->metadata, in->nmetadata, &t->add_msg);
  int read_assistant = rc ? 0 : run_tools(t, in, &rc);
  if (!rc && in->handle && in->handle[0]) asst_copy(t->thread, sizeof t->thread, in->handle);
  if (!rc && read_assistant) {
    if (in->checkpoint && !(t->start_checkpoint = strdup(in->checkpoint))) rc = AW_ENOMEM;
    if (!rc) {
      asst_turn_phase(t, T_ASSISTANT);
      rc = api_assistants_retrieve(be->api, t->assistant, on_assistant, t, &t->b.call);
      if (rc) t->b.call = NULL;
    }
  } else if (!rc) {
    rc = proceed(t, in->checkpoint);
  }
  if (rc) {
    asst_turn_free(t);
    return rc;
  }
  *out = (be_op *)t;
  return AW_OK;
}

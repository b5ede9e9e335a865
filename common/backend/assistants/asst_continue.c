/* asst_continue.c -- be_turn_continue (tool outputs) and be_turn_cancel on
 * the Assistants API.  The turn is named by its checkpoint (thread, run).
 *
 * A submission is never sent twice on purpose.  After an outcome that may
 * have been applied (AW_EAMBIGUOUS: a 5xx, a timeout, a stream that ended
 * before saying anything) the run itself tells: still waiting for the calls
 * we answered -> it certainly did not take them -> submit again (bounded);
 * anything else -> it took them -> follow the run.  A 4xx (the run no
 * longer waits, expired, an output names an unknown call) is resolved the
 * same way: the run's real outcome when it moved on, else the 4xx stands.
 */
#include "asst_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int asst_run_waits_for_round(turn_op *t) {
  const api_json_tool_call *c;
  size_t n;
  if (api_json_tool_calls_build(&t->calls, &c, &n) != AW_OK) return 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(c[i].id, t->round_call) == 0) return 1;
  return 0;
}

static void check_submission(turn_op *t) {
  asst_turn_phase(t, T_CHECK_SUBMIT);
  int rc = api_runs_retrieve(t->be->api, t->thread, t->run.id, asst_turn_on_run, t, &t->b.call);
  if (rc) asst_turn_fail_start(t, rc, "GET run");
}

void asst_submit_unsettled(turn_op *t, const api_result *r) {
  if (r->events > 0) {
    /* A stream began: the API took the outputs.  The run goes on. */
    asst_turn_follow(t);
    return;
  }
  if (r->err == AW_EAMBIGUOUS || r->err == AW_OK || r->err == AW_EHTTP4XX) {
    asst_turn_seterr(t, r->err ? r->err : AW_EAMBIGUOUS, r->http_status, r->error_code, "%s",
                     r->err ? r->errmsg : "submit_tool_outputs: stream ended without an event");
    t->submit_refused = r->err == AW_EHTTP4XX;
    check_submission(t);
    return;
  }
  /* 429 after the retries, or never sent: certainly not taken. */
  asst_turn_fail_api(t, r);
}

static char *submit_body(const be_tool_output *outputs, size_t n) {
  cJSON *j = cJSON_CreateObject(), *arr = NULL;
  int ok = j && (arr = cJSON_AddArrayToObject(j, "tool_outputs"));
  for (size_t i = 0; ok && i < n; i++) {
    cJSON *o = cJSON_CreateObject();
    if (!o) {
      ok = 0;
      break;
    }
    cJSON_AddItemToArray(arr, o);
    ok = cJSON_AddStringToObject(o, "tool_call_id", outputs[i].tool_call_id) &&
         cJSON_AddStringToObject(o, "output", outputs[i].output);
  }
  ok = ok && cJSON_AddTrueToObject(j, "stream");
  char *body = NULL;
  if (!ok) {
    cJSON_Delete(j);
    return NULL;
  }
  return asst_print_json(j, &body) == AW_OK ? body : NULL;
}

/* A turn op for the run named by in->checkpoint; NULL with *rc set. */
static turn_op *named_turn(be_asst *be, const be_turn_input *in, const be_turn_events *ev,
                           void *opaque, int *rc) {
  char thread[API_JSON_ID_MAX], run[API_JSON_ID_MAX];
  *rc = AW_EINVAL;
  if (asst_checkpoint_parse(in->checkpoint, thread, run) != AW_OK) return NULL;
  if (in->event_id && strlen(in->event_id) > 128) return NULL;
  *rc = AW_ENOMEM;
  turn_op *t = asst_turn_new(be, ev, opaque);
  if (!t) return NULL;
  if (in->conversation_id && !(t->conversation_id = strdup(in->conversation_id))) {
    asst_turn_free(t);
    return NULL;
  }
  *rc = AW_OK;
  asst_copy(t->event_id, sizeof t->event_id, in->event_id);
  asst_copy(t->thread, sizeof t->thread, thread);
  asst_copy(t->run.id, sizeof t->run.id, run);
  asst_copy(t->checkpoint, sizeof t->checkpoint, in->checkpoint);
  t->run_created = 1; /* the run exists: a lost stream is followed by polling */
  t->started_ms = asst_now_ms();
  t->want_deltas = in->want_deltas;
  t->tools_routed = in->tools_routed;
  t->include_steps = in->include_steps;
  t->inline_file_max = in->inline_file_max;
  return t;
}

int asst_turn_continue(be_backend *bb, const be_turn_input *in, long round,
                       const be_tool_output *outputs, size_t n, const be_turn_events *ev,
                       void *opaque, be_op **out) {
  be_asst *be = (be_asst *)bb;
  *out = NULL;
  (void)round; /* run ids tag nothing per round: the run's state tells rounds apart */
  for (size_t i = 0; i < n; i++)
    if (!asst_id_ok(outputs[i].tool_call_id) || !outputs[i].output) return AW_EINVAL;
  int rc;
  turn_op *t = named_turn(be, in, ev, opaque, &rc);
  if (!t) return rc;
  asst_copy(t->round_call, sizeof t->round_call, outputs[0].tool_call_id);
  t->submit_body = submit_body(outputs, n);
  t->submits = 1;
  rc = t->submit_body ? asst_submit_send(t) : AW_ENOMEM;
  if (rc) {
    asst_turn_free(t);
    return rc;
  }
  *out = (be_op *)t;
  return AW_OK;
}

static void on_cancel_done(void *opaque, const api_result *r) {
  turn_op *t = opaque;
  t->b.call = NULL;
  /* A run that already ended answers 400: then it is only retrieved. */
  if (r->err && r->err != AW_EHTTP4XX) {
    asst_turn_fail_api(t, r);
    return;
  }
  asst_turn_poll(t);
}

int asst_turn_cancel(be_backend *bb, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                     be_op **out) {
  be_asst *be = (be_asst *)bb;
  *out = NULL;
  int rc;
  turn_op *t = named_turn(be, in, ev, opaque, &rc);
  if (!t) return rc;
  /* The turn waited for tool outputs: the model wrote nothing since the
   * last round, so the result carries the run's status and no messages. */
  t->no_messages = 1;
  t->want_deltas = 0;
  asst_turn_phase(t, T_CANCEL);
  rc = api_runs_cancel(be->api, t->thread, t->run.id, on_cancel_done, t, &t->b.call);
  if (rc) {
    t->b.call = NULL;
    asst_turn_free(t);
    return rc;
  }
  *out = (be_op *)t;
  return AW_OK;
}

/* chat_backend.c -- backend.h on Chat Completions: the ops table,
 * construction, assistant_ensure and op cancellation (see chat_int.h).
 */
#include "chat_int.h"
#include "be_deferred.h"
#include "be_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== assistant_ensure: nothing to create, only to check ========================== */

/* The answer is known in the call: be_deferred.c gives it on the next loop
 * iteration and frees the op after it (or at its cancel). */
typedef struct ensure_op {
  chat_op b;
  be_defer *answer;
} ensure_op;

/* A definition the turns could not send is refused here, at start-up, with
 * the reason in the result (the caller logs it), rather than on every turn. */
static void ensure_check(const be_assistant *def, int *err, char *msg, size_t n) {
  char why[300] = "";
  cJSON *x = NULL;
  int rc = chat_json_tools(def->tools_json, &x, why, sizeof why);
  cJSON_Delete(x);
  x = NULL;
  if (!rc) rc = chat_json_tool_choice(def->tool_choice_json, &x, why, sizeof why);
  cJSON_Delete(x);
  *err = rc;
  if (rc) snprintf(msg, n, "assistant %s: %s", def->name ? def->name : "(unnamed)", why[0] ? why : aw_strerror(rc));
}

static int assistant_ensure(be_backend *bb, const be_assistant *def, const char *known_id, be_result_cb cb,
                            void *opaque, be_op **out) {
  chat_backend *be = (chat_backend *)bb;
  (void)known_id;
  *out = NULL;
  if (!def->model || !def->model[0]) return AW_EINVAL;
  ensure_op *op = calloc(1, sizeof *op);
  if (!op) return AW_ENOMEM;
  op->b.head.be = bb;
  op->b.kind = CHAT_OP_ENSURE;
  /* The definition travels with every request: there is no id. */
  char errmsg[384] = "";
  be_result res = {.errmsg = errmsg};
  ensure_check(def, &res.err, errmsg, sizeof errmsg);
  int rc = be_defer_result(be->loop, &res, cb, opaque, free, op, &op->answer);
  if (rc) {
    free(op);
    return rc;
  }
  *out = (be_op *)op;
  return AW_OK;
}

/* ==== turns ============================================================================ */

static int turn_start(be_backend *bb, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                      be_op **out) {
  return chat_turn_begin((chat_backend *)bb, CHAT_TURN_START, in, 0, NULL, 0, ev, opaque, out);
}

static int turn_continue(be_backend *bb, const be_turn_input *in, long round, const be_tool_output *outs,
                         size_t n, const be_turn_events *ev, void *opaque, be_op **out) {
  return chat_turn_begin((chat_backend *)bb, CHAT_TURN_CONTINUE, in, round, outs, n, ev, opaque, out);
}

static int turn_cancel(be_backend *bb, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                       be_op **out) {
  return chat_turn_begin((chat_backend *)bb, CHAT_TURN_CANCEL, in, 0, NULL, 0, ev, opaque, out);
}

static void op_cancel(be_op *bop) {
  chat_op *b = (chat_op *)bop;
  if (b->kind == CHAT_OP_TURN) {
    chat_turn_cancel_op(b);
    return;
  }
  if (b->kind == CHAT_OP_MANAGE) {
    chat_manage_cancel_op(b);
    return;
  }
  be_defer_cancel(((ensure_op *)b)->answer); /* frees the op, after its answer if inside it */
}

static void destroy(be_backend *bb) {
  chat_backend *be = (chat_backend *)bb;
  api_client_free(be->api);
  free(be);
}

static const be_ops chat_ops = {
    .kind = "chat",
    .handle_key = NULL, /* the server keeps no conversation */
    .assistant_ensure = assistant_ensure,
    .turn_start = turn_start,
    .turn_continue = turn_continue,
    .turn_cancel = turn_cancel,
    .op_cancel = op_cancel,
    .destroy = destroy,
    .conv_history = chat_conv_history,
    .conv_append = chat_conv_append,
    .conv_delete = chat_conv_delete,
};

int be_chat_new(uv_loop_t *loop, const be_http_config *cfg, be_backend **out, char *errstr, size_t errstr_size) {
  if (!loop || !cfg || !out) return aw_seterr(AW_EINVAL, errstr, errstr_size, "chat backend: NULL argument");
  const be_history *h = cfg->history;
  if (!h || !h->load || !h->save_pending || !h->commit)
    return aw_seterr(AW_EINVAL, errstr, errstr_size,
                     "chat backend: a history store is required (the server keeps no conversation)");
  /* Not be_http_client_new: that one requires a handle store, which this
   * backend has no use for.  The same client configuration, no OpenAI-Beta
   * header; the retry policy is kept for the backend's own retries. */
  api_config ac;
  be_http_api_config(cfg, NULL, &ac);
  api_client *api = NULL;
  int rc = api_client_new(loop, &ac, &api, errstr, errstr_size);
  if (rc) return rc;
  chat_backend *be = calloc(1, sizeof *be);
  if (!be) {
    api_client_free(api);
    return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  }
  be->base.ops = &chat_ops;
  be->loop = loop;
  be->api = api;
  be->history = h;
  be->max_answer_bytes = cfg->max_answer_bytes ? cfg->max_answer_bytes : 256u * 1024u;
  be->retry = ac.retry;
  be->rnd = (uint32_t)uv_hrtime() | 1u;
  *out = &be->base;
  return AW_OK;
}

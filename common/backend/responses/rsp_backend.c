/* rsp_backend.c -- backend.h on the Responses + Conversations API: the ops
 * table, construction, assistant_ensure and op cancellation (see rsp_int.h).
 */
#include "rsp_int.h"
#include "be_deferred.h"
#include "be_http.h"

#include <stdlib.h>
#include <string.h>

/* ==== assistant_ensure: nothing to create ======================================= */

/* The answer is known in the call: be_deferred.c gives it on the next loop
 * iteration and frees the op after it (or at its cancel). */
typedef struct ensure_op {
  rsp_op b;
  be_defer *answer;
} ensure_op;

static int assistant_ensure(be_backend *bb, const be_assistant *def, const char *known_id,
                            be_result_cb cb, void *opaque, be_op **out) {
  rsp_backend *be = (rsp_backend *)bb;
  (void)known_id;
  *out = NULL;
  if (!def->model || !def->model[0]) return AW_EINVAL;
  /* Refuse a tools definition the turns could not send, at start-up. */
  cJSON *tools = NULL;
  int rc = rsp_json_tools(def->tools_json, &tools);
  cJSON_Delete(tools);
  if (rc) return rc;
  cJSON *choice = NULL;
  rc = rsp_json_tool_choice(def->tool_choice_json, &choice);
  cJSON_Delete(choice);
  if (rc) return rc;
  ensure_op *op = calloc(1, sizeof *op);
  if (!op) return AW_ENOMEM;
  op->b.head.be = bb;
  op->b.kind = RSP_OP_ENSURE;
  /* The definition travels with every request: nothing to look up. */
  be_result res = {.err = AW_OK, .errmsg = ""};
  rc = be_defer_result(be->loop, &res, cb, opaque, free, op, &op->answer);
  if (rc) {
    free(op);
    return rc;
  }
  *out = (be_op *)op;
  return AW_OK;
}

/* ==== turns ===================================================================== */

static int turn_start(be_backend *bb, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                      be_op **out) {
  return rsp_turn_begin((rsp_backend *)bb, RSP_TURN_START, in, 0, NULL, 0, ev, opaque, out);
}

static int turn_continue(be_backend *bb, const be_turn_input *in, long round, const be_tool_output *outs,
                         size_t n, const be_turn_events *ev, void *opaque, be_op **out) {
  return rsp_turn_begin((rsp_backend *)bb, RSP_TURN_CONTINUE, in, round, outs, n, ev, opaque, out);
}

static int turn_cancel(be_backend *bb, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                       be_op **out) {
  return rsp_turn_begin((rsp_backend *)bb, RSP_TURN_CANCEL, in, 0, NULL, 0, ev, opaque, out);
}

static void op_cancel(be_op *bop) {
  rsp_op *b = (rsp_op *)bop;
  if (b->kind == RSP_OP_TURN) {
    rsp_turn_cancel_op(b);
    return;
  }
  if (b->kind == RSP_OP_MANAGE) {
    rsp_manage_cancel_op(b);
    return;
  }
  be_defer_cancel(((ensure_op *)b)->answer); /* frees the op, after its answer if inside it */
}

/* ==== conversation management (rsp_manage.c) ==================================== */

static int conv_history(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                        be_op **out) {
  return rsp_manage_begin((rsp_backend *)bb, RSP_MANAGE_HISTORY, in, ev, opaque, out);
}

static int conv_append(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                       be_op **out) {
  return rsp_manage_begin((rsp_backend *)bb, RSP_MANAGE_APPEND, in, ev, opaque, out);
}

static int conv_delete(be_backend *bb, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                       be_op **out) {
  return rsp_manage_begin((rsp_backend *)bb, RSP_MANAGE_DELETE, in, ev, opaque, out);
}

static void destroy(be_backend *bb) {
  rsp_backend *be = (rsp_backend *)bb;
  api_client_free(be->api);
  free(be);
}

static const be_ops responses_ops = {
    .kind = "responses",
    .handle_key = "conv",
    .assistant_ensure = assistant_ensure,
    .turn_start = turn_start,
    .turn_continue = turn_continue,
    .turn_cancel = turn_cancel,
    .op_cancel = op_cancel,
    .destroy = destroy,
    .conv_history = conv_history,
    .conv_append = conv_append,
    .conv_delete = conv_delete,
};

int be_responses_new(uv_loop_t *loop, const be_http_config *cfg, be_backend **out, char *errstr,
                     size_t errstr_size) {
  api_client *api = NULL;
  /* The Responses API takes no OpenAI-Beta header. */
  int rc = be_http_client_new(loop, cfg, "responses", NULL, &api, errstr, errstr_size);
  if (rc) return rc;
  rsp_backend *be = calloc(1, sizeof *be);
  if (!be) {
    api_client_free(api);
    return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  }
  be->api = api;
  be->base.ops = &responses_ops;
  be->loop = loop;
  be->store = cfg->store;
  be->max_answer_bytes = cfg->max_answer_bytes ? cfg->max_answer_bytes : 256u * 1024u;
  be->wait_base_ms = cfg->retry_base_ms > 0 ? cfg->retry_base_ms : 250;
  be->background = cfg->background ? 1 : 0;
  *out = &be->base;
  return AW_OK;
}

/* backend.c -- dispatch of the backend port (backend.h) to an implementation. */
#include "backend.h"

#include <string.h>

int be_assistant_ensure(be_backend *be, const be_assistant *def, const char *known_id, be_result_cb cb,
                        void *opaque, be_op **op) {
  if (!be || !def || !cb || !op) return AW_EINVAL;
  return be->ops->assistant_ensure(be, def, known_id, cb, opaque, op);
}

int be_turn_start(be_backend *be, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                  be_op **op) {
  if (!be || !in || !ev || !ev->on_done || !op) return AW_EINVAL;
  return be->ops->turn_start(be, in, ev, opaque, op);
}

int be_turn_continue(be_backend *be, const be_turn_input *in, long round, const be_tool_output *outputs,
                     size_t n, const be_turn_events *ev, void *opaque, be_op **op) {
  if (!be || !in || !in->checkpoint || !outputs || n == 0 || round < 1 || !ev || !ev->on_done || !op)
    return AW_EINVAL;
  return be->ops->turn_continue(be, in, round, outputs, n, ev, opaque, op);
}

int be_turn_cancel(be_backend *be, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                   be_op **op) {
  if (!be || !in || !in->checkpoint || !ev || !ev->on_done || !op) return AW_EINVAL;
  return be->ops->turn_cancel(be, in, ev, opaque, op);
}

const char *be_kind(const be_backend *be) { return be ? be->ops->kind : NULL; }

const char *be_handle_key(const be_backend *be) { return be ? be->ops->handle_key : NULL; }

/* A backend without conversation management answers AW_EINVAL, before any
 * I/O, as for any request it cannot take. */
int be_conv_history(be_backend *be, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                    be_op **op) {
  if (!op) return AW_EINVAL;
  *op = NULL;
  if (!be || !in || !ev || !ev->on_done || !be->ops->conv_history) return AW_EINVAL;
  return be->ops->conv_history(be, in, ev, opaque, op);
}

int be_conv_append(be_backend *be, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                   be_op **op) {
  if (!op) return AW_EINVAL;
  *op = NULL;
  if (!be || !in || !ev || !ev->on_done || !be->ops->conv_append) return AW_EINVAL;
  return be->ops->conv_append(be, in, ev, opaque, op);
}

int be_conv_delete(be_backend *be, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                   be_op **op) {
  if (!op) return AW_EINVAL;
  *op = NULL;
  if (!be || !in || !ev || !ev->on_done || !be->ops->conv_delete) return AW_EINVAL;
  return be->ops->conv_delete(be, in, ev, opaque, op);
}

void be_http_config_default(be_http_config *c) {
  memset(c, 0, sizeof *c);
  c->request_timeout_ms = 30000;
  c->stream_idle_timeout_ms = 60000;
  c->max_retries = 5;
  c->retry_base_ms = 250;
  c->retry_max_ms = 8000;
  c->max_connections = 0;
  c->max_answer_bytes = 256u * 1024u;
  c->background = 1;
}

void be_free(be_backend *be) {
  if (be) be->ops->destroy(be);
}

void be_op_cancel(be_op *op) {
  if (!op) return;
  be_backend *be = ((be_op_head *)op)->be;
  be->ops->op_cancel(op);
}

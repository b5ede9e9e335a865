/* backend.c -- dispatch of the be_* interface to an implementation. */
#include "backend.h"

int be_assistant_ensure(be_backend *be, const be_assistant_def *def, const char *known_id,
                        be_result_cb cb, void *opaque, be_op **op) {
  return be->ops->assistant_ensure(be, def, known_id, cb, opaque, op);
}

int be_conversation_create(be_backend *be, const contract_kv *md, size_t nmd, be_result_cb cb,
                           void *opaque, be_op **op) {
  return be->ops->conversation_create(be, md, nmd, cb, opaque, op);
}

int be_conversation_delete(be_backend *be, const char *handle, be_result_cb cb, void *opaque,
                           be_op **op) {
  return be->ops->conversation_delete(be, handle, cb, opaque, op);
}

int be_turn_start(be_backend *be, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                  be_op **op) {
  return be->ops->turn_start(be, in, ev, opaque, op);
}

/* Newer operations may be missing from an implementation's table. */
int be_submit_tool_outputs(be_backend *be, const char *conversation, const char *run_id,
                           const be_tool_output *outputs, size_t n, int want_deltas,
                           const be_turn_events *ev, void *opaque, be_op **op) {
  if (op) *op = NULL;
  if (!be->ops->submit_tool_outputs) return AW_ESTATE;
  return be->ops->submit_tool_outputs(be, conversation, run_id, outputs, n, want_deltas, ev, opaque, op);
}

int be_turn_resume(be_backend *be, const char *conversation, const char *run_id,
                   const be_turn_events *ev, void *opaque, be_op **op) {
  if (op) *op = NULL;
  if (!be->ops->turn_resume) return AW_ESTATE;
  return be->ops->turn_resume(be, conversation, run_id, ev, opaque, op);
}

int be_find_message(be_backend *be, const char *conversation, const char *key, const char *value,
                    be_result_cb cb, void *opaque, be_op **op) {
  if (op) *op = NULL;
  if (!be->ops->find_message) return AW_ESTATE;
  return be->ops->find_message(be, conversation, key, value, cb, opaque, op);
}

int be_run_cancel(be_backend *be, const char *conversation, const char *run_id, be_result_cb cb,
                  void *opaque, be_op **op) {
  if (op) *op = NULL;
  if (!be->ops->run_cancel) return AW_ESTATE;
  return be->ops->run_cancel(be, conversation, run_id, cb, opaque, op);
}

void be_free(be_backend *be) {
  if (be) be->ops->destroy(be);
}

void be_op_cancel(be_op *op) {
  if (!op) return;
  be_backend *be = ((be_op_head *)op)->be;
  be->ops->op_cancel(op);
}

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

void be_free(be_backend *be) {
  if (be) be->ops->destroy(be);
}

void be_op_cancel(be_op *op) {
  if (!op) return;
  be_backend *be = ((be_op_head *)op)->be;
  be->ops->op_cancel(op);
}

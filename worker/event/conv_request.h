/* conv_request.h -- the conversation requests other than a message and a
 * cancel (prefix wk_cr_): history, append, reset, delete.
 *
 * Why a module of its own, cut here.  These requests go through the same
 * event machine as a message (event.c: queued in their conversation's
 * order, admitted, looked up and claimed in Redis -- exactly-once by the
 * same outcome and progress records, event_claim.h --, published in the
 * Kafka transaction with their offset, recorded) and differ only in the
 * step between the lookup and the answer: where a message runs a turn
 * (turn.c), these run one backend call (be_conv_*) and/or one Redis script
 * (conv_store.h).  So event.c's lookup_done hands them here with one line,
 * and this module hands the answer back through wk_ev_publish; everything
 * else (retry list, revocation, outbox, outcome record) stays the event
 * machine's.  They never reach the turn's code, so no usage record is
 * produced for them (outbox/usage.c: only wku_finish, called by the turn,
 * makes one due) and no delta is streamed.
 *
 * The steps (ev->state stays ST_TURN while a backend call is out, so a
 * revocation cancels it like a turn's: intake.c abandon_revoked_turns):
 *   history  be_conv_history(cached handle) -> the page.
 *   append   be_conv_append: its checkpoints go to the progress record as
 *            a turn's do, and a re-processed event passes recover and the
 *            checkpoint back, so the backend appends once; the handle it
 *            reports (it may have created the conversation and claimed the
 *            handle through the be_store port) is the answer's.
 *   reset    record the checkpoint "reset:<old handle>", forget the
 *            conversation (cstore_forget_conversation: handle key and the
 *            chat history), then, with worker.reset_deletes_old, delete the
 *            old backend conversation.  The checkpoint comes first because
 *            the forget removes the only other record of the old handle: a
 *            reset re-processed after the forget still knows what to delete
 *            and what to answer.
 *   delete   be_conv_delete(handle), then cstore_erase_conversation (every
 *            key of the conversation), then the answer (order: conv_request.c);
 *            it records no outcome, so nothing of the conversation is left.
 * A backend error takes its class (aw_error_classify): retry -> the event
 * waits on the retry list and runs again from its lookup (the conversation
 * stays ordered behind it); reject -> answered `failed` with the backend's
 * error_code; fatal -> left to the next owner and the worker stops, as a
 * turn does.  A Redis error is retried.
 *
 * Loop thread only.  The pure helpers below are what the unit tests pin.
 */
#ifndef AW_CONV_REQUEST_H
#define AW_CONV_REQUEST_H

#include <stddef.h>

#include "aw_error.h"
#include "backend.h"
#include "contract.h"
#include "worker_int.h"

/** The checkpoint prefix a reset records before it forgets the handle. */
#define WK_CR_RESET_PREFIX "reset:"

/** Is kind handled here (history, append, reset, delete)? */
int wk_cr_handles(contract_kind kind);

/** Run ev's step (its lookup is done: ev->handle, ev->recover and
 *  ev->checkpoint are set) and publish its answer, or put it on the retry
 *  list, or stop.  ev->req->kind must satisfy wk_cr_handles. */
void wk_cr_start(wk_event *ev);

/** What a result's error asks for. */
typedef enum wk_cr_verdict {
  WK_CR_ANSWER = 0, /* answer now: completed, or failed (reject class) */
  WK_CR_RETRY,      /* retry class: the event waits and runs again */
  WK_CR_STOP,       /* fatal class: leave the event to the next owner, stop the worker */
} wk_cr_verdict;

/** The verdict of an AW_* result code. */
wk_cr_verdict wk_cr_verdict_of(int err);

/** Fill r's status, error and kind-specific fields (history: messages and
 *  page; append: the messages added) from res, for a request of kind
 *  (strings borrowed from res).  res->err != AW_OK: status `failed` with
 *  the backend's error_code (else the shared taxonomy's, be_errors.h) and
 *  its message.  Leaves the ids, backend and timings to the caller. */
void wk_cr_fill(contract_kind kind, const be_conv_result *res, contract_response *r);

/** The reset checkpoint naming old ("" when there was none) into out.
 *  AW_ETOOBIG when it does not fit n. */
int wk_cr_reset_checkpoint(char *out, size_t n, const char *old) AW_MUST_CHECK;

/** The old handle a reset checkpoint names ("" for none), or NULL when
 *  checkpoint is not a reset's. */
const char *wk_cr_reset_old(const char *checkpoint);

#endif

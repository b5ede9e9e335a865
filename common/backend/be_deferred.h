/* be_deferred.h -- answer on the next loop iteration, cancellable (prefix
 * be_defer_).
 *
 * backend.h promises that a callback never runs inside the call that
 * started the operation, even when the answer is known in that call
 * (assistant_ensure on the backends that send the definition with every
 * turn, delete on the chat backend, which holds nothing at a server).  A
 * be_defer is that "later": a one-shot zero-delay libuv timer in its own
 * allocation, so that its owner can be freed at once, whatever the timer's
 * close still has to do (libuv frees a handle's memory only in its close
 * callback, a loop iteration later).
 *
 * Two forms:
 *   be_defer_call    run fn(arg) later; the owner does the rest (answers,
 *                    frees itself inside fn);
 *   be_defer_result  answer a be_result_cb later with a copy of a result
 *                    made now, then hand the owner (the backend's op) to
 *                    release -- the whole "answer at once" op.
 *
 * Cost: one allocation (~0.6 KiB with a result) and one timer per answer.
 *
 * @locality the loop thread only.
 */
#ifndef AW_BE_DEFERRED_H
#define AW_BE_DEFERRED_H

#include <uv.h>

#include "aw_error.h"
#include "backend.h"

typedef struct be_defer be_defer;

typedef void (*be_defer_fn)(void *arg);

/** Run fn(arg) once, on a later loop iteration (never inside this call),
 *  unless be_defer_cancel comes first.  The defer frees itself: *out is
 *  valid until fn returns or until be_defer_cancel.  AW_ENOMEM: nothing
 *  started. */
int be_defer_call(uv_loop_t *loop, be_defer_fn fn, void *arg, be_defer **out) AW_MUST_CHECK;

/** Answer cb(opaque, copy of *res) once, on a later loop iteration (never
 *  inside this call), then call release(owner); or, after be_defer_cancel,
 *  no answer and release(owner) all the same.  So release runs exactly
 *  once, and the owner (typically the backend's op, whose be_op was handed
 *  out) must be freed by nobody else.  res's strings are copied now
 *  (errmsg cut at 383 bytes, error_code at 63, id at BE_HANDLE_MAX - 1);
 *  release may be NULL.  AW_ENOMEM: nothing started, release not called. */
int be_defer_result(uv_loop_t *loop, const be_result *res, be_result_cb cb, void *opaque,
                    void (*release)(void *owner), void *owner, be_defer **out) AW_MUST_CHECK;

/** No answer follows (fn / cb will not run).  Before the answer: the
 *  defer goes (and release(owner) runs, inside this call).  Inside fn or
 *  cb: only marks it (the answer is under way; be_defer_result's release
 *  runs when cb returns).  Safe on NULL and when repeated inside the
 *  answer; after the answer returned the defer is gone: do not call. */
void be_defer_cancel(be_defer *d);

#endif

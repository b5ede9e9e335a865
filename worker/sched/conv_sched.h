/* conv_sched.h -- when an event's next step runs (prefix wks_): in order
 * within its conversation, from the loop, and again after a transient
 * failure.  Loop thread only. */
#ifndef AW_CONV_SCHED_H
#define AW_CONV_SCHED_H

#include "worker_int.h"

/** Queue ev behind earlier events of its conversation (QUEUED); it starts
 *  now if it is the first.  AW_EAGAIN (not queued) when the conversation
 *  already holds max_queue_per_conversation events; AW_ENOMEM. */
int wks_enqueue(wk *w, wk_event *ev) AW_MUST_CHECK;
/** ev (the head of its conversation) is done: the next event may start. */
void wks_advance(wk *w, wk_event *ev);
/** Start ev from the loop's next idle turn (never inside a callback). */
void wks_ready(wk_event *ev);
/** Try the event's current step again from the retry list (RETRY_TICK_MS). */
void wks_retry_later(wk_event *ev);
/** Start ev now, outside any conversation queue (ev->conv stays NULL, so
 *  wks_advance leaves every conversation alone): a cancel, which must not
 *  wait behind the turn it cancels, and an event answered without its
 *  conversation (no conversation id, or its queue is full).  Kept on the
 *  worker's out-of-band list until it finishes, so wks_free_all frees it. */
void wks_start_out_of_band(wk *w, wk_event *ev);
/** The event at the head of the conversation conv_ref's queue (the one
 *  taking its step now, or about to), or NULL when the conversation has
 *  nothing queued in this worker. */
wk_event *wks_head(wk *w, const char *conv_ref);
/** Free every queued event and conversation, and every out-of-band event
 *  (wk_free; nothing is answered). */
void wks_free_all(wk *w);

#endif

/* delta.h -- streamed text batched into delta messages (prefix wkd_).
 * Loop thread only. */
#ifndef AW_DELTA_H
#define AW_DELTA_H

#include "worker_int.h"

/** be_turn_events.on_text_delta: buffer text of a streamed request; flush
 *  past DELTA_FLUSH_BYTES, else when the delta window ends. */
void wkd_on_text(void *opaque, const char *text, size_t len);
/** Produce the event's buffered text now as one delta (if any). */
void wkd_flush(wk_event *ev);
/** Take the event off the list the delta window flushes. */
void wkd_unschedule(wk_event *ev);
/** The backend generates the turn's text again (be_handles.attempt): drop
 *  the buffered text and count deltas from seq 0 of this attempt.  No-op
 *  unless attempt is higher than the event's. */
void wkd_new_attempt(wk_event *ev, int attempt);
/** A recovered turn delivered no deltas: publish its whole text again as
 *  deltas from seq 0 of this attempt. */
void wkd_republish(wk_event *ev, const be_turn_result *res);

#endif

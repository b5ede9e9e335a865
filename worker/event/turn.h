/* turn.h -- the event's turn on the backend (prefix wk_turn_).  Loop
 * thread only. */
#ifndef AW_TURN_H
#define AW_TURN_H

#include "worker_int.h"

/** Start (or recover) the event's turn; its end comes to wk_turn_done. */
void wk_turn_start(wk_event *ev);
/** The turn ended (or a continuation did): answer, or route its calls. */
void wk_turn_done(void *opaque, const be_turn_result *res);
/** The callbacks every start, continuation and cancel of a turn uses. */
extern const be_turn_events wk_turn_events;
/** The event's turn as the backend sees it (strings borrowed from ev). */
void wk_turn_input(wk_event *ev, be_turn_input *in);

#endif

/* sim_timer.h -- one timer thread for all delayed work (prefix stimer_).
 *
 * Pacing must not cost a thread per connection: a slow stream suspends its
 * MHD connection and adds a timer here; the timer thread resumes it when the
 * time comes.  Background run progress (non-streamed runs, dropped streams)
 * is driven from here too.  Entries live in a binary min-heap ordered by due
 * time, so add and pop are O(log n) with 10,000+ pending entries.
 *
 * @locality stimer_add() from any thread; callbacks run on the timer thread
 * and must not block for long (they delay every other timer).
 */
#ifndef SIM_TIMER_H
#define SIM_TIMER_H

#include <stdint.h>
#include "aw_error.h"

typedef void (*stimer_fn)(void *arg, int shutting_down);

/** Monotonic milliseconds. */
int64_t stimer_now_ms(void);
/** Start the timer thread; max_entries bounds the heap. */
int stimer_start(size_t max_entries) AW_MUST_CHECK;
/** Call fn(arg, 0) at due_ms (monotonic), or fn(arg, 1) if the timer
 *  system is draining.  The arg is owned by fn.  AW_ETOOBIG when full,
 *  AW_ESTATE after stimer_stop(). */
int stimer_add(int64_t due_ms, stimer_fn fn, void *arg) AW_MUST_CHECK;
/** From now on fire every pending and future entry at once with
 *  shutting_down=1 (used at shutdown to resume suspended connections). */
void stimer_drain(void);
/** Stop and join the thread; entries still pending get fn(arg, 1). */
void stimer_stop(void);
/** Number of pending entries. */
size_t stimer_pending(void);

#endif

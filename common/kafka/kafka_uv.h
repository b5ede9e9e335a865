/* kafka_uv.h -- serve a librdkafka queue from the libuv loop (prefix kuv_).
 *
 * librdkafka writes a byte to a pipe when an element is enqueued on an empty
 * queue (rd_kafka_queue_io_event_enable); a uv_poll on the pipe's read end
 * calls `serve`, which drains the queue without blocking.  Because the wake
 * only happens on the empty -> non-empty edge, a serve that leaves elements
 * behind (to bound the work of one loop iteration) asks to be called again
 * by returning non-zero; a slow periodic tick covers anything else (timers
 * inside librdkafka that enqueue nothing, max.poll.interval.ms).
 */
#ifndef AW_KAFKA_UV_H
#define AW_KAFKA_UV_H

#include <librdkafka/rdkafka.h>
#include <uv.h>
#include "aw_error.h"

typedef struct kuv_watch kuv_watch;

/** Drain the queue; return non-zero if more work is left. */
typedef int (*kuv_serve_fn)(void *opaque);

/** Watch q on loop.  tick_ms: period of the safety tick. */
int kuv_watch_new(uv_loop_t *loop, rd_kafka_queue_t *q, kuv_serve_fn serve, void *opaque,
                  uint64_t tick_ms, kuv_watch **out) AW_MUST_CHECK;

/** Stop watching and free (asynchronously, via uv_close).  The queue's io
 *  event is disabled first.  Safe on NULL. */
void kuv_watch_free(kuv_watch *w);

#endif

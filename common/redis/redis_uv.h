/* redis_uv.h -- hiredis' async context on a libuv loop (prefix ruv_).
 *
 * Why not hiredis' own adapter (hiredis/adapters/libuv.h)?  In hiredis
 * 0.14.1 its poll callback returns early when libuv reports an error on the
 * socket (status != 0), so a connect to a Redis that is down, or a
 * connection that fails with an error instead of an EOF, is never reported
 * to hiredis: neither the connect nor the disconnect callback runs, and the
 * connection hangs forever (a Redis restart stalled the whole fleet in the
 * chaos test).  Here an error is handed to hiredis as readiness for what it
 * waits for, so that its own read/write, which fails, reports the error
 * through the usual callbacks -- what later hiredis releases do.
 */
#ifndef AW_REDIS_UV_H
#define AW_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/** Attach ac to loop (REDIS_OK / REDIS_ERR).  The attachment is freed by
 *  hiredis' cleanup hook when the context goes. */
int ruv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif

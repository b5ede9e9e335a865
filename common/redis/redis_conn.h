/* redis_conn.h -- one asynchronous Redis connection on the libuv loop
 * (prefix rconn_).
 *
 * hiredis' async API with its libuv adapter.  Commands issued in one loop
 * iteration are written together, so independent commands of many events
 * are pipelined for free.  When the connection drops, pending commands fail
 * with AW_EREDIS (their callbacks run with reply NULL) and the connection is
 * re-established in the background with backoff; commands issued while it
 * is down fail at once with AW_EREDIS, so callers retry later.
 */
#ifndef AW_REDIS_CONN_H
#define AW_REDIS_CONN_H

#include <hiredis/hiredis.h>
#include <uv.h>
#include "aw_error.h"

typedef struct rconn rconn;

/** Reply callback: err is AW_OK with reply set, or AW_EREDIS with reply NULL
 *  (disconnect) or with an error reply (reply->type == REDIS_REPLY_ERROR).
 *  The reply is freed after the callback returns. */
typedef void (*rconn_reply_cb)(void *opaque, int err, redisReply *reply);

/** Connect to host:port on loop (asynchronously; rconn_ready() tells). */
int rconn_new(uv_loop_t *loop, const char *host, int port, rconn **out, char *errstr,
              size_t errstr_size) AW_MUST_CHECK;

/** Is the connection up? */
int rconn_ready(const rconn *c);

/** Send a command (hiredis printf-style format).  AW_EREDIS when not
 *  connected: the callback is then not called. */
int rconn_command(rconn *c, rconn_reply_cb cb, void *opaque, const char *fmt, ...) AW_MUST_CHECK;

/** Send a command given as argv (binary safe). */
int rconn_commandargv(rconn *c, rconn_reply_cb cb, void *opaque, int argc, const char **argv,
                      const size_t *argvlen) AW_MUST_CHECK;

/** Count of errors seen (disconnects, failed connects, error replies). */
unsigned long rconn_errors(const rconn *c);

/** Disconnect (pending callbacks run with AW_EREDIS) and free once the loop
 *  has closed the handles.  Safe on NULL. */
void rconn_free(rconn *c);

#endif

/* redis_conn.h -- one asynchronous Redis connection on the libuv loop
 * (prefix rconn_).
 *
 * hiredis' async API with its libuv adapter.  Commands issued in one loop
 * iteration are written together, so independent commands of many events
 * are pipelined for free.  When the connection drops, pending commands fail
 * with AW_EREDIS (their callbacks run with reply NULL) and the connection is
 * re-established in the background with backoff; commands issued while it
 * is down fail at once with AW_EREDIS, so callers retry later.
 *
 * Authentication.  Every connection, the first and each reconnect, starts
 * with a handshake before the connection counts as up (rconn_ready) and
 * before any caller's command can be sent: AUTH [username] password when a
 * password is configured, else a PING, so that a server that requires a
 * password and got none is noticed at once (NOAUTH) instead of at the first
 * real command.  The connect timeout covers the handshake too.  A refused
 * handshake is kept (rconn_auth_error): before the connection was ever up
 * it is fatal -- the credentials are wrong and retrying cannot help, so the
 * process should stop with a clear message; after it, retry-class: the
 * connection keeps trying with backoff (a password being rotated, a
 * restarted server that has not loaded its ACL yet).  Messages name the
 * user, never the password; the password is wiped when the rconn is freed.
 * hiredis 0.14.1 has no TLS: see README.md "Redis TLS" (a loopback stunnel).
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

/** How to connect (every field optional; strings are copied). */
typedef struct rconn_options {
  const char *username;    /* ACL user; NULL or "": AUTH without one (the "default" user) */
  const char *password;    /* NULL or "": no AUTH (a PING checks that none is needed) */
  long connect_timeout_ms; /* connect + handshake; <= 0: 2000 */
} rconn_options;

/** Connect to host:port on loop (asynchronously; rconn_ready() tells),
 *  without credentials. */
int rconn_new(uv_loop_t *loop, const char *host, int port, rconn **out, char *errstr,
              size_t errstr_size) AW_MUST_CHECK;

/** rconn_new with options (NULL: none). */
int rconn_new_opts(uv_loop_t *loop, const char *host, int port, const rconn_options *opts, rconn **out,
                   char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Did the server refuse the last handshake (wrong or missing password,
 *  disabled user)?  AW_OK when not (or a later handshake succeeded);
 *  AW_EFATAL when the connection has never been up (start-up: stop);
 *  AW_EREDIS when it had been up before (retry: it keeps trying).  errstr
 *  gets the reason, naming the user and the server's error, never the
 *  password. */
int rconn_auth_error(const rconn *c, char *errstr, size_t errstr_size) AW_MUST_CHECK;

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

/** Disconnect and free once the loop has closed the handles.  Every
 *  pending callback runs with AW_EREDIS before rconn_free returns; none
 *  runs afterwards.  Safe on NULL. */
void rconn_free(rconn *c);

#endif

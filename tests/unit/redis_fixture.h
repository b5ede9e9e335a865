/* redis_fixture.h -- a real redis-server for the unit tests that need one
 * (prefix rfx_): started on a free loopback port, nothing persisted,
 * stopped at the end; and the two ways the tests talk to it: a synchronous
 * hiredis connection that looks at the keys behind the code's back, and an
 * rconn on a libuv loop like the worker's.
 *
 * The server requires authentication, like every Redis of the test suite
 * (deploy/local/lib.sh): an ACL user with a random password (rfx_user,
 * rfx_password; from an ACL file in /tmp, mode 0600, removed by rfx_stop),
 * the default user disabled.  rfx_sync and rfx_rconn authenticate, so every
 * test that uses them goes through AUTH (redis_conn.h's handshake).
 *
 * Needs redis-server on PATH (or $AW_REDIS_SERVER); without one rfx_start
 * returns 0 and the tests skip (RFX_NEED).
 */
#ifndef AW_REDIS_FIXTURE_H
#define AW_REDIS_FIXTURE_H

#include <hiredis/hiredis.h>
#include <uv.h>

#include "redis_conn.h"

/** Start the server (once); `who` names the test in the skip message.
 *  Returns its port, or 0 when none could be started. */
int rfx_start(const char *who);
void rfx_stop(void);
int rfx_port(void);

/** The ACL user and password of the running server. */
const char *rfx_user(void);
const char *rfx_password(void);

/** A loopback port nobody listens on (at the time of asking). */
int rfx_free_port(void);

/** A synchronous, authenticated connection (1 s timeout), or NULL. */
redisContext *rfx_sync(void);

/** The same, authenticated as user with password (NULL when refused). */
redisContext *rfx_sync_with(const char *user, const char *password);

/** FLUSHALL through a synchronous connection. */
void rfx_flush(void);

/** An authenticated rconn on `loop`, run until connected (or 5 s: NULL). */
rconn *rfx_rconn(uv_loop_t *loop);

/** Run `loop` until *flag is set; returns 0 when 5 s passed first. */
int rfx_run_until(uv_loop_t *loop, const int *flag);

#define RFX_NEED()          \
  do {                      \
    if (!rfx_port()) skip(); \
  } while (0)

#endif

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
 * rfx_env bundles the three things a test of a Redis-backed store sets up
 * before each test and tears down after it (a loop, an rconn on it, a sync
 * connection, on a flushed server): one call each way, so every such test
 * starts from the same state and ends with the same leak check (the loop
 * must close: no handle left behind).
 *
 * Needs redis-server on PATH (or $AW_REDIS_SERVER); without one rfx_start
 * returns 0 and the tests skip (RFX_NEED).
 */
#ifndef AW_REDIS_FIXTURE_H
#define AW_REDIS_FIXTURE_H

#include <hiredis/hiredis.h>
#include <uv.h>

#include "aw_error.h"
#include "redis_conn.h"

/** Start the server (once); `who` names the test in the skip message.
 *  Returns its port, or 0 when none could be started. */
int rfx_start(const char *who);
void rfx_stop(void);
int rfx_port(void);

/** rfx_start and rfx_stop as cmocka group setup and teardown, for a file
 *  whose every test needs the server (the skip message names the program).
 *  Both return 0: without a server the tests skip (RFX_NEED), not fail. */
int rfx_group_start(void **state);
int rfx_group_stop(void **state);

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

/** A test's view of the server: a libuv loop like the worker's, an
 *  authenticated rconn on it, and a synchronous connection that looks at
 *  the keys behind the code's back. */
typedef struct rfx_env {
  uv_loop_t loop;
  rconn *rc;
  redisContext *sync;
} rfx_env;

/** Initialise e's loop, connect its rconn and its sync connection, then
 *  FLUSHALL, so each test starts on an empty server.  AW_OK, or AW_EREDIS
 *  with nothing left open (e zeroed) when the server cannot be reached. */
int rfx_env_open(rfx_env *e) AW_MUST_CHECK;

/** Free e's rconn (a test that freed it already sets e->rc to NULL), run
 *  the loop until its handles have closed, close it, free the sync
 *  connection.  Returns uv_loop_close's result: 0, or UV_EBUSY when a
 *  handle is still open (a leak: callers assert 0). */
int rfx_env_close(rfx_env *e);

/** cmocka setup for a test whose state is a struct of `size` bytes that
 *  begins with an rfx_env: *state = that struct, zeroed, its rfx_env open
 *  (rfx_env_open); *state = NULL without a server (the test skips,
 *  RFX_NEED).  0, or AW_EINVAL (size smaller than an rfx_env), AW_ENOMEM,
 *  AW_EREDIS: the test fails in its setup. */
int rfx_env_setup(void **state, size_t size);

/** cmocka teardown matching rfx_env_setup (nothing on NULL): rfx_env_close,
 *  free.  AW_ESTATE (the test fails) when the loop did not close: a handle
 *  was left open. */
int rfx_env_teardown(void **state);

#define RFX_NEED()          \
  do {                      \
    if (!rfx_port()) skip(); \
  } while (0)

#endif

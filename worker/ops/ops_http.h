/* ops_http.h -- the operations HTTP endpoints: liveness, readiness, metrics
 * (prefix ops_).
 *
 *   GET /healthz  200 "ok\n" while the loop thread is alive; 503 when its
 *                 heartbeat is older than stale_ms (default 10 s).
 *   GET /readyz   200 "ready\n" after ops_http_set_ready(o, 1); 503
 *                 "not ready\n" before, after ops_http_set_ready(o, 0), and
 *                 from ops_http_stop on.
 *   GET /metrics  200, the last rendered snapshot,
 *                 Content-Type: text/plain; version=0.0.4; charset=utf-8.
 *   HEAD is answered like GET, without a body (RFC 9110 9.3.2).  Other
 *   methods on those paths: 405 with "Allow: GET, HEAD".  Other paths: 404.
 *
 * Threads.  libmicrohttpd serves requests on its own internal thread
 * (MHD_USE_INTERNAL_POLLING_THREAD with epoll): one thread multiplexes every
 * connection, so a slow client holds a socket, never the thread.  Slow
 * clients.  A connection that has not sent its request is a socket and a
 * 32 KiB memory pool, nothing more; what a few of them must not do is use up
 * the connection limit, or /healthz stops answering and Kubernetes restarts
 * a healthy pod.  Hence a generous total limit (max_connections, 128: fd and
 * memory budget of at most 4 MiB), a lower one per client address
 * (max_connections_per_ip, 32: one client cannot take more than a quarter,
 * while the kubelet's probes and Prometheus come from other addresses), and
 * a short inactivity timeout (connection_timeout_s, 3 s: a probe completes in
 * milliseconds, Kubernetes' own probe timeout is 1 s).  A client that
 * trickles a byte every 2 s stays connected; the per-address limit is what
 * bounds such clients.  Nothing reaches the loop thread.  The loop thread owns a uv_timer that ticks
 * every render_interval_ms: each tick bumps the heartbeat (so the timer
 * firing is itself the proof that the loop runs) and calls the render
 * callback into a back buffer, then swaps it with the published one under a
 * mutex.  The MHD thread only takes the mutex to copy the published text
 * into its response: no rendering and no registry access there.  Readiness
 * and the heartbeat are atomics.  The timer is unref'd: the ops server never
 * keeps the loop alive on its own.
 *
 * Nothing secret is reachable from here: the module serves what render
 * writes, fixed probe bodies, and nothing derived from the request.
 */
#ifndef AW_OPS_HTTP_H
#define AW_OPS_HTTP_H

#include <stddef.h>
#include <uv.h>
#include "aw_error.h"
#include "buf.h"

typedef struct ops_http ops_http;

/** Write the metrics text into out (empty, with a maximum of
 *  max_metrics_bytes).  Returns 0 or a negative AW_E* code; on failure the
 *  previous snapshot stays published.  Called on the loop thread. */
typedef int (*ops_render_fn)(void *opaque, buf *out);

typedef struct ops_http_config {
  const char *bind_addr;        /* numeric IPv4 or IPv6 address; default "0.0.0.0" */
  int port;                     /* -1 = off (default), 0 = ephemeral (tests), 1..65535 */
  long stale_ms;                /* /healthz answers 503 past this heartbeat age; default 10000 */
  long render_interval_ms;      /* heartbeat + render period; default 1000 */
  size_t max_metrics_bytes;     /* cap of one snapshot; default 1 MiB */
  unsigned max_connections;     /* concurrent connections; default 128 */
  unsigned max_connections_per_ip; /* concurrent connections of one client address; default 32 */
  unsigned connection_timeout_s; /* inactivity timeout of a connection; default 3 */
} ops_http_config;

/** Fill c with the defaults (port -1: off). */
void ops_http_config_default(ops_http_config *c);

/** Start serving.  With cfg->port == -1 this does nothing, sets *out to NULL
 *  and returns 0; every other ops_http_* function accepts that NULL.
 *  Otherwise it renders the first snapshot at once (render may be NULL:
 *  /metrics then answers 404), arms the timer on loop and starts the MHD
 *  thread; the process starts not ready.  opaque is passed to render.
 *  AW_ECONFIG for a bad address, port or interval; AW_EIO when the address
 *  cannot be bound (in use...); AW_ENOMEM.  Detail in errstr.
 *  @locality loop thread. */
int ops_http_start(uv_loop_t *loop, const ops_http_config *cfg, ops_render_fn render,
                   void *opaque, ops_http **out, char *errstr,
                   size_t errstr_size) AW_MUST_CHECK;

/** Readiness as /readyz reports it: set 1 once consuming, 0 when shutdown
 *  starts or Kafka/Redis are down.  @locality any thread (an atomic). */
void ops_http_set_ready(ops_http *o, int ready);

/** Bump the heartbeat now.  The timer already does so every
 *  render_interval_ms; call this from long loop-thread work if any.
 *  @locality any thread, but only the loop thread's bumps mean anything. */
void ops_http_heartbeat(ops_http *o);

/** Render and publish a snapshot now instead of at the next tick (e.g. just
 *  after a state change a test or the shutdown path wants visible).  Returns
 *  render's result.  @locality loop thread. */
int ops_http_refresh(ops_http *o) AW_MUST_CHECK;

/** The TCP port actually bound (the ephemeral one for port 0); -1 when off. */
int ops_http_port(const ops_http *o);

/** Stop: readiness goes 0, the MHD daemon is stopped (waiting for its thread,
 *  which the connection timeout bounds), the timer is closed and o is freed
 *  from the close callback, so the loop must run once more afterwards (as
 *  for any libuv handle).  Safe on NULL.  Do not use o after this call.
 *  @locality loop thread. */
void ops_http_stop(ops_http *o);

#endif

/* ops_http.c -- /healthz, /readyz and /metrics on libmicrohttpd's own thread.
 *
 * Two threads touch an ops_http: the loop thread (start, timer ticks,
 * set_ready, stop) and MHD's internal polling thread (on_request, mhd_log).
 * What they share is small and named: `ready` and `heartbeat_ms` are atomics,
 * `front` (the published metrics text) is guarded by `mu`.  `back` is the
 * loop thread's alone: it renders there, then swaps back and front under the
 * lock, so the lock is held for a struct swap on the loop side and for one
 * memcpy on the MHD side, and steady state allocates nothing on either side
 * except MHD's copy of the body.
 */
#include "ops_http.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"

struct ops_http {
  uv_timer_t timer; /* timer.data == this */
  struct MHD_Daemon *d;
  ops_render_fn render;
  void *opaque;
  long stale_ms;
  int port;
  int render_failing; /* loop thread: to log a failure streak once */

  _Atomic int ready;
  _Atomic uint64_t heartbeat_ms; /* uv_hrtime() in ms at the last bump */

  pthread_mutex_t mu;
  buf front; /* guarded by mu: the published snapshot */
  buf back;  /* loop thread only: the next snapshot */

  /* While MHD_start_daemon runs on the loop thread, MHD's complaints (bind
   * failures) go here so ops_http_start can put them in errstr. */
  _Atomic int starting;
  pthread_t starter; /* written before the MHD thread exists */
  char start_err[256];
};

void ops_http_config_default(ops_http_config *c) {
  c->bind_addr = "0.0.0.0";
  c->port = -1;
  c->stale_ms = 10000;
  c->render_interval_ms = 1000;
  c->max_metrics_bytes = 1u << 20;
  c->max_connections = 128;
  c->max_connections_per_ip = 32;
  c->connection_timeout_s = 3;
}

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* ---- MHD thread ---------------------------------------------------------- */

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  ops_http *o = cls;
  char msg[256];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) msg[--n] = '\0';
  if (atomic_load(&o->starting) && pthread_equal(pthread_self(), o->starter)) {
    snprintf(o->start_err, sizeof o->start_err, "%s", msg);
    return;
  }
  log_warn(NULL, "ops http: %s", msg);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *ctype,
                             struct MHD_Response *r) {
  if (!r) return MHD_NO; /* out of memory: MHD closes the connection */
  enum MHD_Result ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  if (ok == MHD_YES) ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (ok == MHD_YES && status == MHD_HTTP_METHOD_NOT_ALLOWED)
    ok = MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  if (ok == MHD_YES) ok = MHD_queue_response(c, status, r);
  MHD_destroy_response(r); /* MHD holds its own reference once queued */
  return ok;
}

static enum MHD_Result reply_static(struct MHD_Connection *c, unsigned status, const char *body) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
  return reply(c, status, CT_TEXT, r);
}

/* Every request is answered on the first call, before any upload data is
 * read: nothing here takes a body, and not reading one means a client cannot
 * make us buffer anything. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  (void)version, (void)upload_data, (void)upload_data_size, (void)con_cls;
  ops_http *o = cls;
  enum { HEALTHZ, READYZ, METRICS } which;
  if (strcmp(url, "/healthz") == 0) which = HEALTHZ;
  else if (strcmp(url, "/readyz") == 0) which = READYZ;
  else if (strcmp(url, "/metrics") == 0 && o->render) which = METRICS;
  else return reply_static(c, MHD_HTTP_NOT_FOUND, "not found\n");

  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return reply_static(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");

  switch (which) {
  case HEALTHZ: {
    uint64_t age = now_ms() - atomic_load(&o->heartbeat_ms);
    if (age > (uint64_t)o->stale_ms)
      return reply_static(c, MHD_HTTP_SERVICE_UNAVAILABLE, "loop stalled\n");
    return reply_static(c, MHD_HTTP_OK, "ok\n");
  }
  case READYZ:
    if (atomic_load(&o->ready)) return reply_static(c, MHD_HTTP_OK, "ready\n");
    return reply_static(c, MHD_HTTP_SERVICE_UNAVAILABLE, "not ready\n");
  case METRICS: {
    pthread_mutex_lock(&o->mu);
    struct MHD_Response *r = MHD_create_response_from_buffer(
        o->front.len, o->front.data ? o->front.data : (void *)"", MHD_RESPMEM_MUST_COPY);
    pthread_mutex_unlock(&o->mu);
    return reply(c, MHD_HTTP_OK, CT_METRICS, r);
  }
  }
  return MHD_NO;
}

/* ---- loop thread --------------------------------------------------------- */

void ops_http_heartbeat(ops_http *o) {
  if (o) atomic_store(&o->heartbeat_ms, now_ms());
}

void ops_http_set_ready(ops_http *o, int ready) {
  if (o) atomic_store(&o->ready, ready ? 1 : 0);
}

int ops_http_port(const ops_http *o) { return o ? o->port : -1; }

/* The failure is logged here (once per streak), so the internal callers,
 * which keep the previous snapshot either way, need not look at the result. */
static int refresh(ops_http *o) {
  if (!o->render) return AW_OK;
  buf_reset(&o->back); /* keeps the allocation from the last round */
  int rc = o->render(o->opaque, &o->back);
  if (rc != AW_OK) {
    if (!o->render_failing)
      log_warn(NULL, "ops http: rendering metrics failed (%s); serving the previous snapshot",
               aw_strerror(rc));
    o->render_failing = 1;
    return rc;
  }
  if (o->render_failing) log_info(NULL, "ops http: rendering metrics works again");
  o->render_failing = 0;
  pthread_mutex_lock(&o->mu);
  buf t = o->front;
  o->front = o->back;
  o->back = t;
  pthread_mutex_unlock(&o->mu);
  return AW_OK;
}

int ops_http_refresh(ops_http *o) { return o ? refresh(o) : AW_OK; }

static void on_tick(uv_timer_t *t) {
  ops_http *o = t->data;
  ops_http_heartbeat(o);
  refresh(o);
}

static void on_closed(uv_handle_t *h) {
  ops_http *o = h->data;
  pthread_mutex_destroy(&o->mu);
  buf_free(&o->front);
  buf_free(&o->back);
  free(o);
}

void ops_http_stop(ops_http *o) {
  if (!o) return;
  atomic_store(&o->ready, 0);
  if (o->d) MHD_stop_daemon(o->d); /* joins the MHD thread; nothing runs on_request after */
  o->d = NULL;
  uv_timer_stop(&o->timer);
  uv_close((uv_handle_t *)&o->timer, on_closed);
}

/* Fill ss from a numeric address; 0 or AW_ECONFIG. */
static int parse_addr(const char *addr, int port, struct sockaddr_storage *ss, int *v6) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, addr, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    *v6 = 0;
    return AW_OK;
  }
  if (inet_pton(AF_INET6, addr, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    *v6 = 1;
    return AW_OK;
  }
  return AW_ECONFIG;
}

int ops_http_start(uv_loop_t *loop, const ops_http_config *cfg, ops_render_fn render,
                   void *opaque, ops_http **out, char *errstr, size_t errstr_size) {
  *out = NULL;
  if (cfg->port == -1) return AW_OK;
  const char *addr = cfg->bind_addr ? cfg->bind_addr : "0.0.0.0";
  if (cfg->port < -1 || cfg->port > 65535)
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "ops http: port %d out of range", cfg->port);
  if (cfg->render_interval_ms <= 0 || cfg->stale_ms <= cfg->render_interval_ms)
    return aw_seterr(AW_ECONFIG, errstr, errstr_size,
                     "ops http: need 0 < render_interval_ms (%ld) < stale_ms (%ld)",
                     cfg->render_interval_ms, cfg->stale_ms);
  if (cfg->max_connections == 0 || cfg->max_connections_per_ip == 0 || cfg->connection_timeout_s == 0 ||
      cfg->max_metrics_bytes == 0)
    return aw_seterr(AW_ECONFIG, errstr, errstr_size,
                     "ops http: max_connections, max_connections_per_ip, connection_timeout_s and "
                     "max_metrics_bytes must be positive");
  struct sockaddr_storage ss;
  int v6 = 0;
  if (parse_addr(addr, cfg->port, &ss, &v6) != AW_OK)
    return aw_seterr(AW_ECONFIG, errstr, errstr_size,
                     "ops http: bind address \"%.64s\" is not a numeric IPv4/IPv6 address", addr);

  ops_http *o = calloc(1, sizeof *o);
  if (!o) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "ops http: out of memory");
  o->render = render;
  o->opaque = opaque;
  o->stale_ms = cfg->stale_ms;
  o->port = -1;
  atomic_init(&o->ready, 0);
  atomic_init(&o->heartbeat_ms, now_ms());
  buf_init(&o->front, cfg->max_metrics_bytes);
  buf_init(&o->back, cfg->max_metrics_bytes);
  if (pthread_mutex_init(&o->mu, NULL) != 0) {
    free(o);
    return aw_seterr(AW_ENOMEM, errstr, errstr_size, "ops http: pthread_mutex_init failed");
  }
  /* First snapshot before the first request can arrive.  A failure is not
   * fatal: /metrics serves an empty body until a tick renders. */
  refresh(o);

  o->starter = pthread_self();
  atomic_store(&o->starting, 1);
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG;
  if (v6) flags |= MHD_USE_IPv6;
  o->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, o,
                          MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                          MHD_OPTION_CONNECTION_LIMIT, cfg->max_connections,
                          MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->max_connections_per_ip,
                          MHD_OPTION_CONNECTION_TIMEOUT, cfg->connection_timeout_s,
                          MHD_OPTION_EXTERNAL_LOGGER, mhd_log, o, MHD_OPTION_END);
  atomic_store(&o->starting, 0);
  if (!o->d) {
    int rc = aw_seterr(AW_EIO, errstr, errstr_size, "ops http: cannot serve on %s port %d: %s",
                       addr, cfg->port, o->start_err[0] ? o->start_err : "MHD_start_daemon failed");
    pthread_mutex_destroy(&o->mu);
    buf_free(&o->front);
    buf_free(&o->back);
    free(o);
    return rc;
  }
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(o->d, MHD_DAEMON_INFO_BIND_PORT);
  o->port = info && info->port ? (int)info->port : cfg->port;

  uv_timer_init(loop, &o->timer);
  o->timer.data = o;
  uv_timer_start(&o->timer, on_tick, (uint64_t)cfg->render_interval_ms,
                 (uint64_t)cfg->render_interval_ms);
  uv_unref((uv_handle_t *)&o->timer); /* liveness reporting must not keep the loop alive */
  log_info(NULL, "ops http: serving /healthz /readyz /metrics on %s port %d", addr, o->port);
  *out = o;
  return AW_OK;
}

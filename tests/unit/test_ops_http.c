/* test_ops_http.c -- the operations endpoints over real HTTP: /healthz with
 * a heartbeat that goes stale when the loop stops ticking, /readyz following
 * ops_http_set_ready, /metrics serving the last snapshot rendered on the loop
 * thread, 404/405, configuration errors, and a clean stop.
 *
 * Needs: loopback networking only (the server binds 127.0.0.1 on an ephemeral
 * port; requests are made with libcurl's easy API from the test thread while
 * libmicrohttpd answers on its own thread, so the test drives loop time by
 * simply not running the loop).  The slow-client tests hold raw TCP
 * connections that never finish their request, bind sources in 127.0.0.0/8
 * (127.0.0.2 as "another client") and wait on the sockets' own readiness.  Every test stops the server, runs the loop
 * until its handles closed and checks uv_loop_close (handle leak check); ASan
 * checks memory.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <uv.h>

#include "log.h"
#include "metrics.h"
#include "ops_http.h"

/* ---- HTTP client ---------------------------------------------------------- */

typedef struct resp {
  long status; /* 0 when the request failed */
  CURLcode cc;
  char body[16384];
  size_t len;
  char ctype[128];
  char allow[64];
} resp;

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  resp *r = ud;
  size_t k = sz * n;
  if (r->len + k >= sizeof r->body) return 0; /* fails the transfer */
  memcpy(r->body + r->len, p, k);
  r->len += k;
  r->body[r->len] = '\0';
  return k;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  resp *r = ud;
  size_t k = sz * n;
  if (k > 6 && strncasecmp(p, "Allow:", 6) == 0) {
    size_t m = k - 6;
    while (m && (p[6 + m - 1] == '\r' || p[6 + m - 1] == '\n')) m--;
    const char *v = p + 6;
    while (m && *v == ' ') v++, m--;
    snprintf(r->allow, sizeof r->allow, "%.*s", (int)m, v);
  }
  return k;
}

/* method NULL = GET; "HEAD" uses CURLOPT_NOBODY; "POST" sends a small body. */
static void fetch(int port, const char *method, const char *path, resp *r) {
  memset(r, 0, sizeof *r);
  CURL *h = curl_easy_init();
  assert_non_null(h);
  char url[128];
  snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
  if (method && strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (method && strcmp(method, "POST") == 0) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, "x=1");
  } else if (method) {
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  }
  r->cc = curl_easy_perform(h);
  if (r->cc == CURLE_OK) {
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
    char *ct = NULL;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    if (ct) snprintf(r->ctype, sizeof r->ctype, "%s", ct);
  }
  curl_easy_cleanup(h);
}

static void expect(int port, const char *method, const char *path, long status, const char *body) {
  resp r;
  fetch(port, method, path, &r);
  assert_int_equal(r.cc, CURLE_OK);
  assert_int_equal(r.status, status);
  if (body) assert_string_equal(r.body, body);
}

/* ---- fixture: a loop, a registry, an ops server ----------------------------- */

typedef struct fx {
  uv_loop_t loop;
  met_registry *reg;
  met_counter_ref *ticks;
  ops_http *o;
  int renders;
  int fail_renders; /* render returns AW_EIO while set */
} fx;

static int render(void *opaque, buf *out) {
  fx *f = opaque;
  f->renders++;
  if (f->fail_renders) return AW_EIO;
  return met_render(f->reg, out);
}

static void fx_init(fx *f) {
  memset(f, 0, sizeof *f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(met_registry_new(8, &f->reg), AW_OK);
  assert_int_equal(met_counter(f->reg, "test_ticks", "Ticks.", &f->ticks, NULL), AW_OK);
}

static void fx_start(fx *f, const ops_http_config *c) {
  char err[256] = "";
  assert_int_equal(ops_http_start(&f->loop, c, render, f, &f->o, err, sizeof err), AW_OK);
  assert_non_null(f->o);
  assert_true(ops_http_port(f->o) > 0);
}

static void test_config(ops_http_config *c) {
  ops_http_config_default(c);
  c->bind_addr = "127.0.0.1";
  c->port = 0;
}

/* Stop, let the close callback free everything, check no handle is left. */
static void fx_done(fx *f) {
  ops_http_stop(f->o);
  f->o = NULL;
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  met_registry_free(f->reg);
}

static int guard_fired;
static void on_guard(uv_timer_t *t) {
  guard_fired = 1;
  uv_stop(t->loop);
}

/* Run the loop until f->renders exceeds n; fails after 10 s.  The ops timer
 * is unref'd, so a referenced guard timer is what keeps uv_run going. */
static void run_until_renders(fx *f, int n) {
  uv_timer_t guard;
  guard_fired = 0;
  uv_timer_init(&f->loop, &guard);
  uv_timer_start(&guard, on_guard, 10000, 0);
  while (f->renders <= n && !guard_fired) uv_run(&f->loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_false(guard_fired);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_port_minus_one_is_off_and_null_is_accepted_everywhere(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  ops_http_config c;
  ops_http_config_default(&c);
  assert_int_equal(c.port, -1); /* off by default */
  ops_http *o = (ops_http *)1;
  assert_int_equal(ops_http_start(&loop, &c, render, NULL, &o, NULL, 0), AW_OK);
  assert_null(o);
  assert_int_equal(ops_http_port(o), -1);
  ops_http_set_ready(o, 1);
  ops_http_heartbeat(o);
  assert_int_equal(ops_http_refresh(o), AW_OK);
  ops_http_stop(o);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_healthz_is_200_ok_while_the_loop_ticks(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c);
  fx_start(&f, &c);
  /* The ops timer is unref'd: reporting liveness never keeps a loop alive. */
  assert_int_equal(uv_loop_alive(&f.loop), 0);
  resp r;
  fetch(ops_http_port(f.o), NULL, "/healthz", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "ok\n");
  assert_string_equal(r.ctype, "text/plain; charset=utf-8");
  fx_done(&f);
}

static void test_readyz_follows_set_ready_and_starts_not_ready(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c);
  fx_start(&f, &c);
  int port = ops_http_port(f.o);
  expect(port, NULL, "/readyz", 503, "not ready\n");
  ops_http_set_ready(f.o, 1);
  expect(port, NULL, "/readyz", 200, "ready\n");
  ops_http_set_ready(f.o, 0); /* shutdown started, or Kafka/Redis down */
  expect(port, NULL, "/readyz", 503, "not ready\n");
  ops_http_set_ready(f.o, 7); /* any non-zero is ready */
  expect(port, NULL, "/readyz", 200, "ready\n");
  fx_done(&f);
}

static void test_metrics_serves_the_last_snapshot_and_ticks_refresh_it(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c);
  c.render_interval_ms = 20;
  met_inc(f.ticks);
  fx_start(&f, &c); /* renders the first snapshot at once */
  assert_int_equal(f.renders, 1);
  int port = ops_http_port(f.o);
  static const char one[] = "# HELP test_ticks_total Ticks.\n"
                            "# TYPE test_ticks_total counter\n"
                            "test_ticks_total 1\n";
  resp r;
  fetch(port, NULL, "/metrics", &r);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.ctype, "text/plain; version=0.0.4; charset=utf-8");
  assert_string_equal(r.body, one);

  /* The registry changes, but nothing renders while the loop does not run:
   * the MHD thread serves the published snapshot, never the live registry. */
  met_inc(f.ticks);
  expect(port, NULL, "/metrics", 200, one);

  run_until_renders(&f, 1);
  expect(port, NULL, "/metrics", 200,
         "# HELP test_ticks_total Ticks.\n"
         "# TYPE test_ticks_total counter\n"
         "test_ticks_total 2\n");

  /* ops_http_refresh publishes at once, without waiting for a tick. */
  met_inc(f.ticks);
  assert_int_equal(ops_http_refresh(f.o), AW_OK);
  expect(port, NULL, "/metrics", 200,
         "# HELP test_ticks_total Ticks.\n"
         "# TYPE test_ticks_total counter\n"
         "test_ticks_total 3\n");
  fx_done(&f);
}

static void test_failed_render_keeps_the_previous_snapshot(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c);
  c.render_interval_ms = 20;
  fx_start(&f, &c);
  int port = ops_http_port(f.o);
  static const char zero[] = "# HELP test_ticks_total Ticks.\n"
                             "# TYPE test_ticks_total counter\n"
                             "test_ticks_total 0\n";
  expect(port, NULL, "/metrics", 200, zero);
  met_inc(f.ticks);
  f.fail_renders = 1;
  assert_int_equal(ops_http_refresh(f.o), AW_EIO);
  run_until_renders(&f, f.renders); /* and a failing tick */
  expect(port, NULL, "/metrics", 200, zero);
  f.fail_renders = 0;
  run_until_renders(&f, f.renders);
  expect(port, NULL, "/metrics", 200,
         "# HELP test_ticks_total Ticks.\n"
         "# TYPE test_ticks_total counter\n"
         "test_ticks_total 1\n");
  fx_done(&f);
}

static void test_metrics_is_404_without_a_render_callback(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  ops_http_config c;
  test_config(&c);
  ops_http *o;
  assert_int_equal(ops_http_start(&loop, &c, NULL, NULL, &o, NULL, 0), AW_OK);
  expect(ops_http_port(o), NULL, "/metrics", 404, NULL);
  expect(ops_http_port(o), NULL, "/healthz", 200, "ok\n");
  ops_http_stop(o);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* The heartbeat is bumped by the ops timer on the loop thread.  The test
 * stops running the loop, so the timer cannot fire: /healthz must turn 503
 * once stale_ms passed (and not before), and 200 again after one tick. */
static void test_healthz_is_503_once_the_loop_stops_ticking_and_recovers(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c);
  c.render_interval_ms = 20;
  c.stale_ms = 300;
  fx_start(&f, &c);
  int port = ops_http_port(f.o);

  uint64_t t0 = uv_hrtime();
  ops_http_heartbeat(f.o);
  expect(port, NULL, "/healthz", 200, "ok\n"); /* a fetch takes ms; stale_ms is 300 */

  uint64_t deadline = t0 + 10 * 1000000000ull;
  resp r;
  for (;;) {
    fetch(port, NULL, "/healthz", &r);
    assert_int_equal(r.cc, CURLE_OK);
    if (r.status != 200 || uv_hrtime() > deadline) break;
    uv_sleep(10); /* poll interval, bounded by the deadline above */
  }
  uint64_t t1 = uv_hrtime();
  assert_int_equal(r.status, 503);
  assert_string_equal(r.body, "loop stalled\n");
  assert_true(t1 - t0 > 300 * 1000000ull); /* not before stale_ms */

  /* Readiness is independent of liveness. */
  ops_http_set_ready(f.o, 1);
  expect(port, NULL, "/readyz", 200, "ready\n");

  run_until_renders(&f, f.renders); /* one tick: the loop is alive again */
  expect(port, NULL, "/healthz", 200, "ok\n");
  fx_done(&f);
}

static void test_unknown_paths_are_404(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c);
  fx_start(&f, &c);
  int port = ops_http_port(f.o);
  expect(port, NULL, "/", 404, "not found\n");
  expect(port, NULL, "/healthz/extra", 404, NULL);
  expect(port, NULL, "/metricsx", 404, NULL);
  expect(port, NULL, "/HEALTHZ", 404, NULL);
  expect(port, "POST", "/nope", 404, NULL);
  fx_done(&f);
}

static void test_non_get_methods_are_405_with_allow_and_head_is_answered(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c);
  fx_start(&f, &c);
  int port = ops_http_port(f.o);
  const char *paths[] = {"/healthz", "/readyz", "/metrics"};
  const char *methods[] = {"POST", "PUT", "DELETE", "PATCH"};
  for (size_t i = 0; i < 3; i++) {
    for (size_t j = 0; j < 4; j++) {
      resp r;
      fetch(port, methods[j], paths[i], &r);
      assert_int_equal(r.cc, CURLE_OK);
      assert_int_equal(r.status, 405);
      assert_string_equal(r.allow, "GET, HEAD");
    }
  }
  resp r;
  fetch(port, "HEAD", "/healthz", &r);
  assert_int_equal(r.cc, CURLE_OK);
  assert_int_equal(r.status, 200);
  assert_int_equal(r.len, 0);
  fx_done(&f);
}

static void test_bad_configuration_is_econfig(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  ops_http *o = NULL;
  char err[256];
  ops_http_config c;

  test_config(&c);
  c.bind_addr = "localhost"; /* numeric addresses only: no resolver on start-up */
  assert_int_equal(ops_http_start(&loop, &c, NULL, NULL, &o, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "localhost"));
  assert_null(o);

  test_config(&c);
  c.port = 65536;
  assert_int_equal(ops_http_start(&loop, &c, NULL, NULL, &o, err, sizeof err), AW_ECONFIG);
  c.port = -2;
  assert_int_equal(ops_http_start(&loop, &c, NULL, NULL, &o, err, sizeof err), AW_ECONFIG);

  test_config(&c);
  c.stale_ms = c.render_interval_ms; /* a live loop would look stale between ticks */
  assert_int_equal(ops_http_start(&loop, &c, NULL, NULL, &o, err, sizeof err), AW_ECONFIG);

  test_config(&c);
  c.max_connections = 0;
  assert_int_equal(ops_http_start(&loop, &c, NULL, NULL, &o, err, sizeof err), AW_ECONFIG);
  assert_null(o);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_port_in_use_is_eio_with_the_reason(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c);
  fx_start(&f, &c);
  c.port = ops_http_port(f.o);
  ops_http *second = (ops_http *)1;
  char err[256] = "";
  assert_int_equal(ops_http_start(&f.loop, &c, render, &f, &second, err, sizeof err), AW_EIO);
  assert_null(second);
  char want[64];
  snprintf(want, sizeof want, "port %d", c.port);
  assert_non_null(strstr(err, want));
  fx_done(&f);
}

static void test_ipv6_loopback_is_served(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  ops_http_config c;
  test_config(&c);
  c.bind_addr = "::1";
  ops_http *o = NULL;
  char err[256] = "";
  int rc = ops_http_start(&loop, &c, NULL, NULL, &o, err, sizeof err);
  if (rc == AW_EIO) { /* no IPv6 in this sandbox: nothing to test */
    assert_int_equal(uv_loop_close(&loop), 0);
    skip();
  }
  assert_int_equal(rc, AW_OK);
  CURL *h = curl_easy_init();
  char url[64];
  snprintf(url, sizeof url, "http://[::1]:%d/healthz", ops_http_port(o));
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  resp r;
  memset(&r, 0, sizeof r);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
  assert_int_equal(curl_easy_perform(h), CURLE_OK);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_cleanup(h);
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "ok\n");
  ops_http_stop(o);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_stop_closes_the_port_and_frees_everything(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c);
  fx_start(&f, &c);
  int port = ops_http_port(f.o);
  ops_http_set_ready(f.o, 1);
  expect(port, NULL, "/readyz", 200, NULL);
  fx_done(&f); /* stop + loop run + uv_loop_close == 0; ASan reports leaks */
  resp r;
  fetch(port, NULL, "/healthz", &r);
  assert_int_equal(r.cc, CURLE_COULDNT_CONNECT);
}

/* ---- slow clients and the bind address ----------------------------------- */

/* A client that connected from src (NULL: any) and sent the first lines of a
 * request but never its end: the slowloris shape. */
static int open_slow(const char *dst, int port, const char *src) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  if (src) {
    assert_int_equal(inet_pton(AF_INET, src, &a.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  }
  a.sin_port = htons((uint16_t)port);
  assert_int_equal(inet_pton(AF_INET, dst, &a.sin_addr), 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  static const char part[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n"; /* no final CRLF */
  assert_int_equal(send(fd, part, sizeof part - 1, MSG_NOSIGNAL), (ssize_t)(sizeof part - 1));
  return fd;
}

/* Has the server closed fd within wait_ms?  Waits on the socket's own
 * readiness (EOF or reset makes it readable). */
static int closed_by_server(int fd, int wait_ms) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  if (poll(&p, 1, wait_ms) <= 0) return 0;
  char b[256];
  ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* GET /healthz from src (NULL: any) with a deadline; elapsed ms in *ms. */
static void healthz_within(const char *dst, int port, const char *src, long deadline_ms, resp *r, long *ms) {
  memset(r, 0, sizeof *r);
  CURL *h = curl_easy_init();
  assert_non_null(h);
  char url[128];
  snprintf(url, sizeof url, "http://%s:%d/healthz", dst, port);
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, deadline_ms);
  if (src) curl_easy_setopt(h, CURLOPT_INTERFACE, src);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
  uint64_t t0 = uv_hrtime();
  r->cc = curl_easy_perform(h);
  *ms = (long)((uv_hrtime() - t0) / 1000000u);
  if (r->cc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r->status);
  curl_easy_cleanup(h);
}

enum { NSLOW = 16 };

static void test_healthz_answers_at_once_while_16_slow_clients_hold_connections(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c); /* the production limits and timeout */
  fx_start(&f, &c);
  int port = ops_http_port(f.o);
  int fds[NSLOW];
  for (int i = 0; i < NSLOW; i++) {
    fds[i] = open_slow("127.0.0.1", port, NULL);
    assert_true(fds[i] >= 0);
  }
  /* The probe queues behind the slow clients in the listen backlog, so the
   * server has taken all of them before it sees the probe. */
  resp r;
  long ms;
  healthz_within("127.0.0.1", port, NULL, 2000, &r, &ms);
  if (r.cc != CURLE_OK) fail_msg("/healthz failed after %ld ms: %s", ms, curl_easy_strerror(r.cc));
  assert_int_equal(r.status, 200);
  assert_string_equal(r.body, "ok\n");
  assert_true(ms < 2000);
  /* ...and the slow clients were still connected while it answered. */
  for (int i = 0; i < NSLOW; i++) {
    assert_false(closed_by_server(fds[i], 0));
    close(fds[i]);
  }
  fx_done(&f);
}

static void test_an_idle_connection_is_closed_after_the_connection_timeout(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c);
  c.connection_timeout_s = 1;
  fx_start(&f, &c);
  int fd = open_slow("127.0.0.1", ops_http_port(f.o), NULL);
  assert_true(fd >= 0);
  uint64_t t0 = uv_hrtime();
  assert_true(closed_by_server(fd, 5000));
  uint64_t ms = (uv_hrtime() - t0) / 1000000u;
  assert_true(ms < 4000);
  close(fd);
  fx_done(&f);
}

static void test_one_client_address_cannot_take_every_connection(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c);
  c.max_connections_per_ip = 4;
  fx_start(&f, &c);
  int port = ops_http_port(f.o);
  int fds[4];
  for (int i = 0; i < 4; i++) {
    fds[i] = open_slow("127.0.0.1", port, "127.0.0.1");
    assert_true(fds[i] >= 0);
  }
  int extra = open_slow("127.0.0.1", port, "127.0.0.1");
  assert_true(extra >= 0);
  assert_true(closed_by_server(extra, 2000)); /* over that address's limit: turned away */
  close(extra);
  /* Another address (the kubelet's) is still served at once. */
  resp r;
  long ms;
  healthz_within("127.0.0.1", port, "127.0.0.2", 2000, &r, &ms);
  if (r.cc != CURLE_OK) fail_msg("/healthz from 127.0.0.2 failed: %s", curl_easy_strerror(r.cc));
  assert_int_equal(r.status, 200);
  for (int i = 0; i < 4; i++) close(fds[i]);
  fx_done(&f);
}

static void test_bind_address_is_honoured(void **state) {
  (void)state;
  fx f;
  fx_init(&f);
  ops_http_config c;
  test_config(&c); /* 127.0.0.1 */
  fx_start(&f, &c);
  int port = ops_http_port(f.o);
  expect(port, NULL, "/healthz", 200, "ok\n");
  /* 127.0.0.2 is this machine too, but not the bound address. */
  errno = 0;
  assert_int_equal(open_slow("127.0.0.2", port, NULL), -1);
  assert_int_equal(errno, ECONNREFUSED);
  fx_done(&f);

  /* Every interface (the default): 127.0.0.2 reaches it. */
  fx_init(&f);
  ops_http_config_default(&c);
  assert_string_equal(c.bind_addr, "0.0.0.0");
  c.port = 0;
  fx_start(&f, &c);
  resp r;
  long ms;
  healthz_within("127.0.0.2", ops_http_port(f.o), NULL, 2000, &r, &ms);
  assert_int_equal(r.cc, CURLE_OK);
  assert_int_equal(r.status, 200);
  fx_done(&f);
}

static void test_defaults_leave_room_beyond_one_client(void **state) {
  (void)state;
  ops_http_config c;
  ops_http_config_default(&c);
  assert_true(c.max_connections >= 64);
  assert_true(c.max_connections_per_ip * 2 <= c.max_connections);
  assert_true(c.connection_timeout_s > 0 && c.connection_timeout_s <= 5);
}

static int group_setup(void **state) {
  (void)state;
  log_set_level(LOG_ERROR); /* the expected warnings would only be noise */
  return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  curl_global_cleanup();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_port_minus_one_is_off_and_null_is_accepted_everywhere),
      cmocka_unit_test(test_healthz_is_200_ok_while_the_loop_ticks),
      cmocka_unit_test(test_readyz_follows_set_ready_and_starts_not_ready),
      cmocka_unit_test(test_metrics_serves_the_last_snapshot_and_ticks_refresh_it),
      cmocka_unit_test(test_failed_render_keeps_the_previous_snapshot),
      cmocka_unit_test(test_metrics_is_404_without_a_render_callback),
      cmocka_unit_test(test_healthz_is_503_once_the_loop_stops_ticking_and_recovers),
      cmocka_unit_test(test_unknown_paths_are_404),
      cmocka_unit_test(test_non_get_methods_are_405_with_allow_and_head_is_answered),
      cmocka_unit_test(test_bad_configuration_is_econfig),
      cmocka_unit_test(test_port_in_use_is_eio_with_the_reason),
      cmocka_unit_test(test_ipv6_loopback_is_served),
      cmocka_unit_test(test_stop_closes_the_port_and_frees_everything),
      cmocka_unit_test(test_healthz_answers_at_once_while_16_slow_clients_hold_connections),
      cmocka_unit_test(test_an_idle_connection_is_closed_after_the_connection_timeout),
      cmocka_unit_test(test_one_client_address_cannot_take_every_connection),
      cmocka_unit_test(test_bind_address_is_honoured),
      cmocka_unit_test(test_defaults_leave_room_beyond_one_client),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

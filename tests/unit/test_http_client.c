/* test_http_client.c -- the libuv-driven curl client (and the api_client
 * layer above it) against a scripted in-process server: bodies, streaming,
 * retries, "no side effect twice" for creating requests, timeouts,
 * cancellation, connection reuse, headers.  Needs: loopback networking only (no broker, no
 * simulator).  Every test ends by freeing the client, running the loop until
 * its handles closed, and checking uv_loop_close (handle leak check); ASan
 * checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>

#include "api_client.h"
#include "http_client.h"
#include "scripted_server.h"

typedef struct fx {
  ss_server srv;
  uv_loop_t loop;
  http_client *c;
  retry_policy rp;
  char url[256];
} fx;

typedef struct result {
  int done;
  int err, status, attempts, delivered, sent;
  long retry_after;
  char body[8192];
  size_t body_len;
  char streamed[8192];
  size_t streamed_len;
  int ncalls;
  http_request *cancel_in_data; /* cancel this request from on_data */
  int data_calls;
} result;

/* Callbacks stop the loop so run_until re-checks its flag at once (UV_RUN_ONCE
 * would otherwise sleep in poll until the next timer). */
static uv_loop_t *g_loop;

static void on_done(void *opaque, const http_response *r) {
  result *res = opaque;
  uv_stop(g_loop);
  res->ncalls++;
  res->done = 1;
  res->err = r->err;
  res->status = r->status;
  res->attempts = r->attempts;
  res->delivered = r->delivered;
  res->sent = r->sent;
  res->retry_after = r->retry_after_ms;
  res->body_len = r->body_len < sizeof res->body - 1 ? r->body_len : sizeof res->body - 1;
  memcpy(res->body, r->body, res->body_len);
  res->body[res->body_len] = '\0';
}

static int on_data(void *opaque, const char *d, size_t n) {
  result *res = opaque;
  uv_stop(g_loop);
  res->data_calls++;
  if (res->streamed_len + n < sizeof res->streamed) {
    memcpy(res->streamed + res->streamed_len, d, n);
    res->streamed_len += n;
  }
  if (res->cancel_in_data) http_request_cancel(res->cancel_in_data);
  return 0;
}

static fx *fx_new(void) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  g_loop = &f->loop;
  retry_policy_default(&f->rp);
  f->rp.base_ms = 1; /* fast backoff: the tests count attempts, not wait */
  f->rp.max_ms = 5;
  return f;
}

static void fx_start(fx *f) {
  assert_int_equal(ss_start(&f->srv), 0);
  char err[128];
  http_client_config cfg;
  http_client_config_default(&cfg);
  assert_int_equal(http_client_new(&f->loop, &cfg, &f->c, err, sizeof err), AW_OK);
}

static const char *url(fx *f, const char *path) {
  snprintf(f->url, sizeof f->url, "http://127.0.0.1:%u%s", f->srv.port, path);
  return f->url;
}

static void fx_free(fx *f) {
  http_client_free(f->c);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  ss_stop(&f->srv);
  free(f);
}

static http_request_opts opts(fx *f, const char *method, const char *path, result *res) {
  http_request_opts o;
  memset(&o, 0, sizeof o);
  o.method = method;
  o.url = url(f, path);
  o.timeout_ms = 5000;
  o.max_body = 4096;
  o.retry = &f->rp;
  o.idempotent = 1;
  o.on_done = on_done;
  o.opaque = res;
  return o;
}

static void test_get_json_body_and_status(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/x");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"x\"}"});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "GET", "/v1/x", &res);
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  assert_int_equal(res.done, 0); /* never called back inside start */
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.err, AW_OK);
  assert_int_equal(res.status, 200);
  assert_string_equal(res.body, "{\"id\":\"x\"}");
  assert_int_equal(res.attempts, 1);
  assert_int_equal(res.ncalls, 1);
  assert_int_equal(ss_count(&f->srv, r), 1);
  fx_free(f);
}

static void test_post_body_reaches_server(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/p");
  ss_add_resp(r, (ss_resp){.status = 201, .body = "{}"});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/p", &res);
  o.body = "{\"a\":1}";
  o.body_len = strlen(o.body);
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.status, 201);
  char *b = ss_last_body(&f->srv, r);
  assert_string_equal(b, "{\"a\":1}");
  free(b);
  fx_free(f);
}

static void test_sequential_requests_reuse_one_connection(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/x");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{}"});
  fx_start(f);
  for (int i = 0; i < 5; i++) {
    result res = {0};
    http_request_opts o = opts(f, "GET", "/v1/x", &res);
    assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
    ss_run_until(&f->loop, &res.done);
    assert_int_equal(res.status, 200);
  }
  assert_int_equal(ss_count(&f->srv, r), 5);
  assert_int_equal(ss_connections(&f->srv), 1);
  fx_free(f);
}

static void test_many_concurrent_requests_complete(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/x");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{}"});
  fx_start(f);
  enum { N = 50 };
  result *res = calloc(N, sizeof *res);
  for (int i = 0; i < N; i++) {
    http_request_opts o = opts(f, "GET", "/v1/x", &res[i]);
    assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  }
  assert_int_equal(http_client_pending(f->c), N);
  for (int i = 0; i < N; i++) ss_run_until(&f->loop, &res[i].done);
  for (int i = 0; i < N; i++) assert_int_equal(res[i].status, 200);
  assert_int_equal(ss_count(&f->srv, r), N);
  assert_int_equal(http_client_pending(f->c), 0);
  free(res);
  fx_free(f);
}

static const char *SSE_BODY =
    "event: thread.run.created\ndata: {\"id\":\"run_1\"}\n\n"
    "event: thread.message.delta\ndata: {\"delta\":{}}\n\n"
    "event: done\ndata: [DONE]\n\n";

static void test_stream_delivers_every_byte_in_odd_chunks(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/s");
  ss_add_resp(r, (ss_resp){.status = 200, .body = SSE_BODY, .ctype = "text/event-stream",
                           .mode = SS_CHUNKED, .chunk = 7});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/s", &res);
  o.on_data = on_data;
  o.timeout_ms = 0;
  o.idle_timeout_ms = 5000;
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.err, AW_OK);
  assert_int_equal(res.status, 200);
  assert_int_equal(res.delivered, 1);
  assert_int_equal(res.streamed_len, strlen(SSE_BODY));
  assert_memory_equal(res.streamed, SSE_BODY, strlen(SSE_BODY));
  assert_int_equal(res.body_len, 0); /* streamed, not buffered */
  fx_free(f);
}

static void test_stream_error_status_is_buffered_not_streamed(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/s");
  ss_add_resp(r, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"no\"}}"});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/s", &res);
  o.on_data = on_data;
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.status, 400);
  assert_int_equal(res.data_calls, 0);
  assert_string_equal(res.body, "{\"error\":{\"message\":\"no\"}}");
  fx_free(f);
}

static void test_429_with_retry_after_0_is_retried_then_200(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/x");
  ss_add_resp(r, (ss_resp){.status = 429, .body = "{}", .hname = "Retry-After", .hval = "0"});
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"ok\":true}"});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "GET", "/v1/x", &res);
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.status, 200);
  assert_int_equal(res.attempts, 2);
  assert_int_equal(ss_count(&f->srv, r), 2);
  assert_int_equal(res.ncalls, 1);
  fx_free(f);
}

static void test_500_on_idempotent_request_is_retried_then_200(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/x");
  ss_add_resp(r, (ss_resp){.status = 500, .body = "{}"});
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{}"});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/x", &res);
  o.body = "{\"same\":1}";
  o.body_len = strlen(o.body);
  o.idempotent = 1; /* e.g. an update: applying it twice is harmless */
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.status, 200);
  assert_int_equal(ss_count(&f->srv, r), 2);
  char *b = ss_last_body(&f->srv, r);
  assert_string_equal(b, "{\"same\":1}"); /* the retry resent the body */
  free(b);
  fx_free(f);
}

static void test_500_on_creating_post_is_not_retried(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/x");
  ss_add_resp(r, (ss_resp){.status = 500, .body = "{}"});
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{}"});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/x", &res);
  o.body = "{}";
  o.body_len = 2;
  o.idempotent = 0; /* the 500 may have created the object */
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.err, AW_OK);
  assert_int_equal(res.status, 500);
  assert_int_equal(res.attempts, 1);
  assert_int_equal(res.sent, 1);
  assert_int_equal(ss_count(&f->srv, r), 1);
  fx_free(f);
}

static void test_429_on_creating_post_is_retried(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/x");
  ss_add_resp(r, (ss_resp){.status = 429, .body = "{}", .hname = "Retry-After", .hval = "0"});
  ss_add_resp(r, (ss_resp){.status = 201, .body = "{}"});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/x", &res);
  o.idempotent = 0; /* 429: refused before anything was done */
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.status, 201);
  assert_int_equal(res.attempts, 2);
  assert_int_equal(ss_count(&f->srv, r), 2);
  fx_free(f);
}

static void test_creating_post_timed_out_after_sending_is_not_retried(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/hang");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{", .mode = SS_HANG});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/hang", &res);
  o.idempotent = 0;
  o.timeout_ms = 200;
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.err, AW_ETIMEDOUT);
  assert_int_equal(res.sent, 1);
  assert_int_equal(res.attempts, 1);
  assert_int_equal(ss_count(&f->srv, r), 1);
  fx_free(f);
}

static void test_retry_after_ms_header_is_reported(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/x");
  ss_add_resp(r, (ss_resp){.status = 503, .body = "{}", .hname = "retry-after-ms", .hval = "3"});
  fx_start(f);
  f->rp.max_retries = 1;
  result res = {0};
  http_request_opts o = opts(f, "GET", "/v1/x", &res);
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.status, 503);
  assert_int_equal(res.attempts, 2);
  assert_int_equal(res.retry_after, 3);
  assert_int_equal(ss_count(&f->srv, r), 2);
  fx_free(f);
}

static void test_400_is_not_retried(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/x");
  ss_add_resp(r, (ss_resp){.status = 400, .body = "{\"error\":{}}"});
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{}"});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/x", &res);
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.status, 400);
  assert_int_equal(res.attempts, 1);
  assert_int_equal(ss_count(&f->srv, r), 1);
  fx_free(f);
}

static void test_body_over_max_is_etoobig(void **state) {
  (void)state;
  fx *f = fx_new();
  static char big[10000];
  memset(big, 'a', sizeof big - 1);
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/x");
  ss_add_resp(r, (ss_resp){.status = 200, .body = big});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "GET", "/v1/x", &res);
  o.max_body = 1000;
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.err, AW_ETOOBIG);
  assert_int_equal(ss_count(&f->srv, r), 1);
  fx_free(f);
}

static void test_connection_refused_is_eio_after_retries(void **state) {
  (void)state;
  fx *f = fx_new();
  fx_start(f);
  unsigned short port = f->srv.port;
  ss_stop(&f->srv); /* nothing listens on port now */
  memset(&f->srv, 0, sizeof f->srv);
  assert_int_equal(ss_start(&f->srv), 0);
  f->rp.max_retries = 2;
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/x", &res);
  char u[64];
  snprintf(u, sizeof u, "http://127.0.0.1:%u/v1/x", port);
  o.url = u;
  o.idempotent = 0; /* refused connections never reached the server: retried */
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.err, AW_EIO);
  assert_int_equal(res.status, 0);
  assert_int_equal(res.attempts, 3);
  assert_int_equal(res.sent, 0);
  fx_free(f);
}

static void test_timeout_is_etimedout(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/hang");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{", .mode = SS_HANG});
  fx_start(f);
  f->rp.max_retries = 0;
  result res = {0};
  http_request_opts o = opts(f, "GET", "/v1/hang", &res);
  o.timeout_ms = 200;
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.err, AW_ETIMEDOUT);
  fx_free(f);
}

static void test_stream_cut_after_bytes_is_not_retried(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/s");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "event: a\ndata: 1\n\n", .mode = SS_DROP});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/s", &res);
  o.on_data = on_data;
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.err, AW_EIO);
  assert_int_equal(res.delivered, 1);
  assert_int_equal(res.attempts, 1);
  assert_int_equal(ss_count(&f->srv, r), 1);
  fx_free(f);
}

static void test_stream_cut_before_any_byte_is_retried(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/s");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "", .mode = SS_DROP});
  ss_add_resp(r, (ss_resp){.status = 200, .body = "event: a\ndata: 1\n\n", .mode = SS_CHUNKED});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/s", &res);
  o.on_data = on_data;
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.err, AW_OK);
  assert_int_equal(res.attempts, 2);
  assert_string_equal(res.streamed, "event: a\ndata: 1\n\n");
  fx_free(f);
}

static void test_idle_stream_times_out(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/s");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "event: a\ndata: 1\n\n", .mode = SS_HANG});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/s", &res);
  o.on_data = on_data;
  o.timeout_ms = 0;
  o.idle_timeout_ms = 300;
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.err, AW_ETIMEDOUT);
  assert_int_equal(res.delivered, 1);
  assert_int_equal(ss_count(&f->srv, r), 1);
  fx_free(f);
}

static void test_cancel_from_on_data_stops_without_callback(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/s");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "event: a\ndata: 1\n\n", .mode = SS_HANG});
  ss_route *r2 = ss_route_add(&f->srv, "GET", "/v1/x");
  ss_add_resp(r2, (ss_resp){.status = 200, .body = "{}"});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/s", &res);
  o.on_data = on_data;
  http_request *req;
  assert_int_equal(http_request_start(f->c, &o, &req), AW_OK);
  res.cancel_in_data = req;
  ss_run_until(&f->loop, &res.data_calls);
  assert_int_equal(http_client_pending(f->c), 0);
  /* The loop keeps working and the cancelled request never calls back. */
  result res2 = {0};
  http_request_opts o2 = opts(f, "GET", "/v1/x", &res2);
  assert_int_equal(http_request_start(f->c, &o2, NULL), AW_OK);
  ss_run_until(&f->loop, &res2.done);
  assert_int_equal(res2.status, 200);
  assert_int_equal(res.ncalls, 0);
  fx_free(f);
}

static void test_cancel_before_response_and_while_waiting_to_retry(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/x");
  ss_add_resp(r, (ss_resp){.status = 503, .body = "{}", .hname = "Retry-After", .hval = "30"});
  fx_start(f);
  result a = {0}, b = {0};
  http_request_opts o = opts(f, "GET", "/v1/x", &a);
  http_request *ra, *rb;
  assert_int_equal(http_request_start(f->c, &o, &ra), AW_OK);
  http_request_cancel(ra); /* before any I/O */
  o.opaque = &b;
  assert_int_equal(http_request_start(f->c, &o, &rb), AW_OK);
  /* b is answered 503 and waits 30 s to retry: cancel it during the wait. */
  while (!http_request_waiting(rb)) uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(ss_count(&f->srv, r), 1);
  http_request_cancel(rb);
  assert_int_equal(http_client_pending(f->c), 0);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(a.ncalls + b.ncalls, 0);
  fx_free(f);
}

static void test_free_with_requests_in_flight_calls_nothing(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/s");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "event: a\ndata: 1\n\n", .mode = SS_HANG});
  fx_start(f);
  result res = {0};
  http_request_opts o = opts(f, "POST", "/v1/s", &res);
  o.on_data = on_data;
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.data_calls);
  fx_free(f); /* leak check by ASan and uv_loop_close */
  assert_int_equal(res.ncalls, 0);
}

/* ---- api_client: results, AW_EAMBIGUOUS, GET streams, headers --------------- */

typedef struct api_res {
  int done, err, status, attempts, events, maybe_applied;
  char code[64], msg[512];
  char events_seen[1024];
} api_res;

static void on_api_done(void *opaque, const api_result *r) {
  api_res *a = opaque;
  uv_stop(g_loop);
  a->done = 1;
  a->err = r->err;
  a->status = r->http_status;
  a->attempts = r->attempts;
  a->events = r->events;
  a->maybe_applied = r->maybe_applied;
  snprintf(a->code, sizeof a->code, "%s", r->error_code ? r->error_code : "");
  snprintf(a->msg, sizeof a->msg, "%s", r->errmsg ? r->errmsg : "");
}

static int on_api_event(void *opaque, const char *ev, size_t evn, const char *data, size_t n) {
  api_res *a = opaque;
  size_t l = strlen(a->events_seen);
  snprintf(a->events_seen + l, sizeof a->events_seen - l, "%.*s=%.*s;", (int)evn, ev, (int)n, data);
  return 0;
}

static api_client *api_new(fx *f, const char *beta) {
  char base[128], err[128];
  snprintf(base, sizeof base, "http://127.0.0.1:%u/v1", f->srv.port);
  api_config cfg;
  api_config_default(&cfg);
  cfg.base_url = base;
  cfg.api_key = "sk-test";
  cfg.beta = beta;
  cfg.retry = f->rp;
  cfg.request_timeout_ms = 2000;
  cfg.stream_idle_timeout_ms = 2000;
  api_client *c = NULL;
  assert_int_equal(api_client_new(&f->loop, &cfg, &c, err, sizeof err), AW_OK);
  return c;
}

static void api_free(fx *f, api_client *c) {
  api_client_free(c);
  uv_run(&f->loop, UV_RUN_DEFAULT);
}

static const char *ERR500 =
    "{\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}";

static void test_api_creating_post_500_is_ambiguous_with_status_and_message(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/messages");
  ss_add_resp(r, (ss_resp){.status = 500, .body = ERR500});
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"msg_2\"}"});
  fx_start(f);
  api_client *c = api_new(f, NULL);
  api_res a = {0};
  assert_int_equal(api_messages_create(c, "thread_1", "{}", on_api_done, &a, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_EAMBIGUOUS);
  assert_int_equal(a.maybe_applied, 1);
  assert_int_equal(a.status, 500);
  assert_int_equal(a.attempts, 1);
  assert_string_equal(a.code, "server_error");
  assert_non_null(strstr(a.msg, "The server had an error"));
  assert_int_equal(ss_count(&f->srv, r), 1);
  api_free(f, c);
  fx_free(f);
}

/* The server takes a creating POST on a reused keep-alive connection, then
 * closes it without answering.  libcurl on its own would send the POST again
 * on a fresh connection (its hidden retry of requests on dead reused
 * connections); the request must instead be sent once and end ambiguous. */
static void test_api_creating_post_on_a_reused_connection_that_dies_is_sent_once(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *g = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1");
  ss_add_resp(g, (ss_resp){.status = 200, .body = "{\"id\":\"thread_1\"}"});
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/messages");
  ss_add_resp(r, (ss_resp){.mode = SS_CLOSE});
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"msg_2\"}"});
  fx_start(f);
  api_client *c = api_new(f, NULL);
  api_res a = {0};
  /* A first request leaves a keep-alive connection for the POST to reuse. */
  assert_int_equal(api_threads_retrieve(c, "thread_1", on_api_done, &a, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_OK);
  api_res b = {0};
  assert_int_equal(api_messages_create(c, "thread_1", "{\"role\":\"user\",\"content\":\"hi\"}", on_api_done, &b,
                                       NULL), AW_OK);
  ss_run_until(&f->loop, &b.done);
  assert_int_equal(b.err, AW_EAMBIGUOUS);
  assert_int_equal(b.maybe_applied, 1);
  assert_int_equal(ss_count(&f->srv, r), 1);
  api_free(f, c);
  fx_free(f);
}

/* An empty thread is the one creation retried like an idempotent request: it
 * cannot be looked up, and a repeat leaves only an empty unclaimed thread. */
static void test_api_thread_create_500_is_retried(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/threads");
  ss_add_resp(r, (ss_resp){.status = 500, .body = ERR500});
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"thread_2\"}"});
  fx_start(f);
  api_client *c = api_new(f, NULL);
  api_res a = {0};
  assert_int_equal(api_threads_create(c, "{}", on_api_done, &a, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_OK);
  assert_int_equal(a.attempts, 2);
  assert_int_equal(ss_count(&f->srv, r), 2);
  api_free(f, c);
  fx_free(f);
}

static void test_api_creating_post_429_is_retried_and_not_ambiguous(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/threads");
  ss_add_resp(r, (ss_resp){.status = 429, .body = "{\"error\":{\"message\":\"slow\",\"type\":\"rate_limit\"}}"});
  fx_start(f);
  f->rp.max_retries = 2;
  api_client *c = api_new(f, NULL);
  api_res a = {0};
  assert_int_equal(api_threads_create(c, "{}", on_api_done, &a, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_ERATELIMIT);
  assert_int_equal(a.maybe_applied, 0);
  assert_int_equal(a.attempts, 3);
  assert_int_equal(ss_count(&f->srv, r), 3);
  api_free(f, c);
  fx_free(f);
}

static void test_api_creating_post_refused_is_retried_and_not_ambiguous(void **state) {
  (void)state;
  fx *f = fx_new();
  fx_start(f);
  unsigned short port = f->srv.port;
  ss_stop(&f->srv);
  memset(&f->srv, 0, sizeof f->srv);
  assert_int_equal(ss_start(&f->srv), 0);
  f->rp.max_retries = 2;
  char base[128], err[128];
  snprintf(base, sizeof base, "http://127.0.0.1:%u/v1", port); /* nobody listens */
  api_config cfg;
  api_config_default(&cfg);
  cfg.base_url = base;
  cfg.api_key = "sk-test";
  cfg.retry = f->rp;
  api_client *c = NULL;
  assert_int_equal(api_client_new(&f->loop, &cfg, &c, err, sizeof err), AW_OK);
  api_res a = {0};
  assert_int_equal(api_stream(c, "/threads/thread_1/runs", "{\"stream\":true}", on_api_event,
                              on_api_done, &a, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_EIO);
  assert_int_equal(a.maybe_applied, 0);
  assert_int_equal(a.attempts, 3);
  api_free(f, c);
  fx_free(f);
}

static void test_api_get_500_is_still_retried(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1");
  ss_add_resp(r, (ss_resp){.status = 500, .body = ERR500});
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"thread_1\"}"});
  fx_start(f);
  api_client *c = api_new(f, NULL);
  api_res a = {0};
  assert_int_equal(api_threads_retrieve(c, "thread_1", on_api_done, &a, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_OK);
  assert_int_equal(a.attempts, 2);
  assert_int_equal(ss_count(&f->srv, r), 2);
  api_free(f, c);
  fx_free(f);
}

static void test_api_post_stream_that_drops_is_ambiguous_and_not_retried(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/runs");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "event: thread.run.created\ndata: {\"id\":\"run_1\"}\n\n",
                           .ctype = "text/event-stream", .mode = SS_DROP});
  fx_start(f);
  api_client *c = api_new(f, NULL);
  api_res a = {0};
  assert_int_equal(api_stream(c, "/threads/thread_1/runs", "{\"stream\":true}", on_api_event,
                              on_api_done, &a, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_EAMBIGUOUS);
  assert_int_equal(a.maybe_applied, 1);
  assert_int_equal(a.events, 1);
  assert_int_equal(ss_count(&f->srv, r), 1);
  api_free(f, c);
  fx_free(f);
}

static void test_api_post_stream_500_is_ambiguous_and_not_retried(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/runs");
  ss_add_resp(r, (ss_resp){.status = 500, .body = ERR500});
  fx_start(f);
  api_client *c = api_new(f, NULL);
  api_res a = {0};
  assert_int_equal(api_stream(c, "/threads/thread_1/runs", "{\"stream\":true}", on_api_event,
                              on_api_done, &a, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_EAMBIGUOUS);
  assert_int_equal(a.status, 500);
  assert_int_equal(a.events, 0);
  assert_int_equal(ss_count(&f->srv, r), 1);
  api_free(f, c);
  fx_free(f);
}

static void test_api_stream_get_delivers_events_after_a_retried_500(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/responses/resp_1");
  ss_add_resp(r, (ss_resp){.status = 500, .body = ERR500});
  ss_add_resp(r, (ss_resp){.status = 200, .ctype = "text/event-stream", .mode = SS_CHUNKED, .chunk = 5,
                           .body = "event: response.output_text.delta\ndata: {\"sequence_number\":4}\n\n"
                                   "event: response.completed\ndata: {\"sequence_number\":5}\n\n"});
  fx_start(f);
  api_client *c = api_new(f, NULL);
  api_res a = {0};
  assert_int_equal(api_stream_get(c, "/responses/resp_1?stream=true&starting_after=3", on_api_event,
                                  on_api_done, &a, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_OK);
  assert_int_equal(a.events, 2);
  assert_int_equal(a.attempts, 2);
  assert_string_equal(a.events_seen, "response.output_text.delta={\"sequence_number\":4};"
                                     "response.completed={\"sequence_number\":5};");
  char *q = ss_last_query(&f->srv, r);
  assert_string_equal(q, "stream=true&starting_after=3");
  free(q);
  api_free(f, c);
  fx_free(f);
}

static void test_api_sends_openai_beta_only_when_configured(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"thread_1\"}"});
  fx_start(f);
  api_client *c = api_new(f, NULL);
  api_res a = {0};
  assert_int_equal(api_threads_retrieve(c, "thread_1", on_api_done, &a, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  pthread_mutex_lock(&f->srv.mu);
  assert_string_equal(r->last_beta, "");
  assert_string_equal(r->last_auth, "Bearer sk-test");
  pthread_mutex_unlock(&f->srv.mu);
  api_free(f, c);

  c = api_new(f, "assistants=v2");
  api_res b = {0};
  assert_int_equal(api_threads_retrieve(c, "thread_1", on_api_done, &b, NULL), AW_OK);
  ss_run_until(&f->loop, &b.done);
  pthread_mutex_lock(&f->srv.mu);
  assert_string_equal(r->last_beta, "assistants=v2");
  pthread_mutex_unlock(&f->srv.mu);
  api_free(f, c);
  fx_free(f);
}

/* ---- verbose output (AW_HTTP_VERBOSE) ---------------------------------------- */

typedef struct dbg {
  char text[16384];
  size_t len;
} dbg;

static void on_debug_line(void *opaque, const char *line, size_t len) {
  dbg *d = opaque;
  if (d->len + len + 2 >= sizeof d->text) return;
  memcpy(d->text + d->len, line, len);
  d->len += len;
  d->text[d->len++] = '\n';
  d->text[d->len] = '\0';
}

static void test_verbose_output_shows_headers_but_masks_every_secret_header(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/v");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"answer\":\"body-text\"}",
                           .hname = "Set-Cookie", .hval = "session=cookie-secret-4"});
  assert_int_equal(ss_start(&f->srv), 0);
  dbg d = {0};
  http_client_config cfg;
  http_client_config_default(&cfg);
  cfg.verbose = 1;
  cfg.debug_fn = on_debug_line;
  cfg.debug_opaque = &d;
  char err[128];
  assert_int_equal(http_client_new(&f->loop, &cfg, &f->c, err, sizeof err), AW_OK);
  struct curl_slist *h = NULL;
  h = curl_slist_append(h, "Authorization: Bearer sk-secret-1");
  h = curl_slist_append(h, "api-key: azure-secret-2");
  h = curl_slist_append(h, "OpenAI-Organization: org-secret-3");
  h = curl_slist_append(h, "x-api-key: secret-5");
  h = curl_slist_append(h, "Proxy-Authorization: Basic secret-6");
  h = curl_slist_append(h, "X-Trace: visible-7");
  result res = {0};
  http_request_opts o = opts(f, "GET", "/v1/v", &res);
  o.headers = h;
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.status, 200);
  /* The secrets did reach the server... */
  pthread_mutex_lock(&f->srv.mu);
  assert_string_equal(r->last_auth, "Bearer sk-secret-1");
  pthread_mutex_unlock(&f->srv.mu);
  /* ...and the verbose output shows the exchange with their values masked. */
  assert_non_null(strstr(d.text, "> GET /v1/v HTTP/1.1\n"));
  assert_non_null(strstr(d.text, "> Authorization: ***\n"));
  assert_non_null(strstr(d.text, "> api-key: ***\n"));
  assert_non_null(strstr(d.text, "> OpenAI-Organization: ***\n"));
  assert_non_null(strstr(d.text, "> X-Trace: visible-7\n"));
  assert_non_null(strstr(d.text, "< HTTP/1.1 200"));
  assert_non_null(strstr(d.text, "< Set-Cookie: ***\n"));
  static const char *const secrets[] = {"sk-secret-1", "azure-secret-2", "org-secret-3", "cookie-secret-4",
                                        "secret-5", "secret-6", "Bearer", "body-text"};
  for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
    if (strstr(d.text, secrets[i])) fail_msg("verbose output shows \"%s\":\n%s", secrets[i], d.text);
  }
  curl_slist_free_all(h);
  fx_free(f);
}

static void test_verbose_is_off_unless_aw_http_verbose_is_1(void **state) {
  (void)state;
  http_client_config cfg;
  unsetenv("AW_HTTP_VERBOSE");
  http_client_config_default(&cfg);
  assert_int_equal(cfg.verbose, 0);
  setenv("AW_HTTP_VERBOSE", "1", 1);
  http_client_config_default(&cfg);
  assert_int_equal(cfg.verbose, 1);
  setenv("AW_HTTP_VERBOSE", "0", 1);
  http_client_config_default(&cfg);
  assert_int_equal(cfg.verbose, 0);
  unsetenv("AW_HTTP_VERBOSE");
}

static void test_header_mask_keeps_names_and_masks_secret_values(void **state) {
  (void)state;
  char out[64];
  const char *l = "authorization: Bearer x";
  assert_int_equal(http_header_mask(l, strlen(l), out, sizeof out), strlen("authorization: ***"));
  assert_string_equal(out, "authorization: ***");
  l = "X-Auth-Token: t";
  http_header_mask(l, strlen(l), out, sizeof out);
  assert_string_equal(out, "X-Auth-Token: ***");
  l = "Content-Type: application/json";
  http_header_mask(l, strlen(l), out, sizeof out);
  assert_string_equal(out, l);
  l = "GET http://u:p@h:1/x HTTP/1.1"; /* a request line, not a header */
  http_header_mask(l, strlen(l), out, sizeof out);
  assert_string_equal(out, l);
  l = "Authorization: Bearer a-very-long-token-that-does-not-fit";
  http_header_mask(l, strlen(l), out, 8);
  assert_string_equal(out, "Authori"); /* truncated, never the value */
  assert_true(http_header_is_secret("OpenAI-Project", 14));
  assert_false(http_header_is_secret("Content-Length", 14));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_json_body_and_status),
      cmocka_unit_test(test_post_body_reaches_server),
      cmocka_unit_test(test_sequential_requests_reuse_one_connection),
      cmocka_unit_test(test_many_concurrent_requests_complete),
      cmocka_unit_test(test_stream_delivers_every_byte_in_odd_chunks),
      cmocka_unit_test(test_stream_error_status_is_buffered_not_streamed),
      cmocka_unit_test(test_429_with_retry_after_0_is_retried_then_200),
      cmocka_unit_test(test_500_on_idempotent_request_is_retried_then_200),
      cmocka_unit_test(test_500_on_creating_post_is_not_retried),
      cmocka_unit_test(test_429_on_creating_post_is_retried),
      cmocka_unit_test(test_creating_post_timed_out_after_sending_is_not_retried),
      cmocka_unit_test(test_retry_after_ms_header_is_reported),
      cmocka_unit_test(test_400_is_not_retried),
      cmocka_unit_test(test_body_over_max_is_etoobig),
      cmocka_unit_test(test_connection_refused_is_eio_after_retries),
      cmocka_unit_test(test_timeout_is_etimedout),
      cmocka_unit_test(test_stream_cut_after_bytes_is_not_retried),
      cmocka_unit_test(test_stream_cut_before_any_byte_is_retried),
      cmocka_unit_test(test_idle_stream_times_out),
      cmocka_unit_test(test_cancel_from_on_data_stops_without_callback),
      cmocka_unit_test(test_cancel_before_response_and_while_waiting_to_retry),
      cmocka_unit_test(test_free_with_requests_in_flight_calls_nothing),
      cmocka_unit_test(test_api_creating_post_500_is_ambiguous_with_status_and_message),
      cmocka_unit_test(test_api_thread_create_500_is_retried),
      cmocka_unit_test(test_api_creating_post_on_a_reused_connection_that_dies_is_sent_once),
      cmocka_unit_test(test_api_creating_post_429_is_retried_and_not_ambiguous),
      cmocka_unit_test(test_api_creating_post_refused_is_retried_and_not_ambiguous),
      cmocka_unit_test(test_api_get_500_is_still_retried),
      cmocka_unit_test(test_api_post_stream_that_drops_is_ambiguous_and_not_retried),
      cmocka_unit_test(test_api_post_stream_500_is_ambiguous_and_not_retried),
      cmocka_unit_test(test_api_stream_get_delivers_events_after_a_retried_500),
      cmocka_unit_test(test_api_sends_openai_beta_only_when_configured),
      cmocka_unit_test(test_verbose_output_shows_headers_but_masks_every_secret_header),
      cmocka_unit_test(test_verbose_is_off_unless_aw_http_verbose_is_1),
      cmocka_unit_test(test_header_mask_keeps_names_and_masks_secret_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

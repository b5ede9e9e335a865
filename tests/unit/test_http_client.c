/* test_http_client.c -- the libuv-driven curl client against a scripted
 * in-process server: bodies, streaming, retries, timeouts, cancellation,
 * connection reuse.  Needs: loopback networking only (no broker, no
 * simulator).  Every test ends by freeing the client, running the loop until
 * its handles closed, and checking uv_loop_close (handle leak check); ASan
 * checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

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
  int err, status, attempts, delivered;
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

static void test_500_is_retried_then_200(void **state) {
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
  o.idempotent = 0; /* 5xx is the server's answer: retried even so */
  assert_int_equal(http_request_start(f->c, &o, NULL), AW_OK);
  ss_run_until(&f->loop, &res.done);
  assert_int_equal(res.status, 200);
  assert_int_equal(ss_count(&f->srv, r), 2);
  char *b = ss_last_body(&f->srv, r);
  assert_string_equal(b, "{\"same\":1}"); /* the retry resent the body */
  free(b);
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_get_json_body_and_status),
      cmocka_unit_test(test_post_body_reaches_server),
      cmocka_unit_test(test_sequential_requests_reuse_one_connection),
      cmocka_unit_test(test_many_concurrent_requests_complete),
      cmocka_unit_test(test_stream_delivers_every_byte_in_odd_chunks),
      cmocka_unit_test(test_stream_error_status_is_buffered_not_streamed),
      cmocka_unit_test(test_429_with_retry_after_0_is_retried_then_200),
      cmocka_unit_test(test_500_is_retried_then_200),
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
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

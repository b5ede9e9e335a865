/* test_api_gate.c -- how the API client (common/http/api_client.c) uses a
 * rate gate (api_gate.h): a call waiting at the gate sends nothing, and is
 * sent once granted; the response's rate-limit headers reach the gate with
 * the call's class and status, a stream's before its first event; a 429 is
 * fed back and the retry http_client makes by itself is not asked again; a
 * call cancelled while it waits withdraws its ticket and never reaches the
 * server; a gate that cannot take a call does not stop it.
 *
 * Needs no infrastructure: an in-process scripted server
 * (scripted_server.h) and a fake gate whose grants the test gives.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api_client.h"
#include "scripted_server.h"

/* ---- a fake gate -------------------------------------------------------------- */

typedef struct fake_gate {
  api_gate port;
  uv_loop_t *loop;
  int acquires, cancels, feedbacks;
  int refuse;                 /* acquire fails (AW_ENOMEM) */
  api_gate_grant_fn grant;    /* the pending acquire */
  void *grant_opaque;
  int ticket;                 /* its address is the ticket */
  void *cancelled_ticket;
  char cls[API_GATE_CLASS_MAX];
  size_t body_len;
  int status;                 /* the last feedback's */
  rlh_info info;
  long age_ms;
  int events_at_feedback;     /* stream events delivered when the feedback came */
} fake_gate;

static int g_events; /* stream events delivered so far */

static int fg_acquire(void *self, const char *cls, const char *body, size_t len, api_gate_grant_fn fn,
                      void *opaque, void **ticket) {
  fake_gate *g = self;
  (void)body;
  g->acquires++;
  if (g->refuse) return AW_ENOMEM;
  snprintf(g->cls, sizeof g->cls, "%s", cls);
  g->body_len = len;
  g->grant = fn;
  g->grant_opaque = opaque;
  *ticket = &g->ticket;
  return AW_OK;
}

static void fg_cancel(void *self, void *ticket) {
  fake_gate *g = self;
  g->cancels++;
  g->cancelled_ticket = ticket;
  g->grant = NULL;
}

static void fg_feedback(void *self, const char *cls, int status, const rlh_info *in, long age_ms) {
  fake_gate *g = self;
  g->feedbacks++;
  snprintf(g->cls, sizeof g->cls, "%s", cls);
  g->status = status;
  g->info = *in;
  g->age_ms = age_ms;
  g->events_at_feedback = g_events;
  uv_stop(g->loop);
}

static void fg_grant(fake_gate *g) {
  assert_non_null(g->grant);
  api_gate_grant_fn fn = g->grant;
  g->grant = NULL;
  fn(g->grant_opaque);
}

/* ---- fixture ------------------------------------------------------------------ */

typedef struct fx {
  uv_loop_t loop;
  ss_server srv;
  fake_gate gate;
  api_client *c;
} fx;

static fx *fx_new(void) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  f->gate.port = (api_gate){fg_acquire, fg_cancel, fg_feedback, &f->gate};
  f->gate.loop = &f->loop;
  g_events = 0;
  return f;
}

static void fx_start(fx *f) {
  assert_int_equal(ss_start(&f->srv), 0);
  char base[128], err[128];
  snprintf(base, sizeof base, "http://127.0.0.1:%u/v1", f->srv.port);
  api_config cfg;
  api_config_default(&cfg);
  cfg.base_url = base;
  cfg.api_key = "sk-test";
  cfg.retry.base_ms = 1; /* the tests count attempts, not waits */
  cfg.retry.max_ms = 5;
  cfg.request_timeout_ms = 2000;
  cfg.stream_idle_timeout_ms = 2000;
  cfg.gate = &f->gate.port;
  assert_int_equal(api_client_new(&f->loop, &cfg, &f->c, err, sizeof err), AW_OK);
}

static void fx_free(fx *f) {
  api_client_free(f->c);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  ss_stop(&f->srv);
  free(f);
}

typedef struct res {
  int done, err, status, attempts, events;
} res;

static void on_done(void *opaque, const api_result *r) {
  res *a = opaque;
  a->done = 1;
  a->err = r->err;
  a->status = r->http_status;
  a->attempts = r->attempts;
  a->events = r->events;
}

static uv_loop_t *g_loop;

static void on_done_stop(void *opaque, const api_result *r) {
  on_done(opaque, r);
  uv_stop(g_loop);
}

static int on_event(void *opaque, const char *ev, size_t evl, const char *data, size_t dl) {
  (void)opaque, (void)ev, (void)evl, (void)data, (void)dl;
  g_events++;
  return 0;
}

/* An observation window: run the loop for ms (nothing is expected to
 * happen; a bounded look, not a wait for something). */
static int g_window_over;
static void on_window(uv_timer_t *t) {
  g_window_over = 1;
  uv_stop(t->loop);
}
static void observe_for(fx *f, uint64_t ms) {
  uv_timer_t t;
  g_window_over = 0;
  uv_timer_init(&f->loop, &t);
  uv_timer_start(&t, on_window, ms, 0);
  ss_run_until(&f->loop, &g_window_over);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_a_call_waiting_at_the_gate_sends_nothing_until_granted(void **state) {
  (void)state;
  fx *f = fx_new();
  g_loop = &f->loop;
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/chat/completions");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"chatcmpl-1\"}"});
  fx_start(f);
  res a = {0};
  static const char body[] = "{\"model\":\"m\",\"messages\":[]}";
  assert_int_equal(api_request(f->c, "POST", "/chat/completions", body, 0, on_done_stop, &a, NULL), AW_OK);
  assert_int_equal(f->gate.acquires, 1);
  assert_string_equal(f->gate.cls, "chat");
  assert_int_equal(f->gate.body_len, strlen(body));
  assert_int_equal(api_client_pending(f->c), 1);
  observe_for(f, 150);
  assert_int_equal(ss_count(&f->srv, r), 0);
  assert_false(a.done);
  fg_grant(&f->gate);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_OK);
  assert_int_equal(ss_count(&f->srv, r), 1);
  char *sent = ss_last_body(&f->srv, r);
  assert_string_equal(sent, body); /* the body kept while waiting is the one sent */
  free(sent);
  fx_free(f);
}

static void test_the_responses_rate_limit_headers_reach_the_gate(void **state) {
  (void)state;
  fx *f = fx_new();
  g_loop = &f->loop;
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs/run_1");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"run_1\"}", .hname = "x-ratelimit-remaining-requests",
                           .hval = "3"});
  fx_start(f);
  res a = {0};
  assert_int_equal(api_runs_retrieve(f->c, "thread_1", "run_1", on_done_stop, &a, NULL), AW_OK);
  fg_grant(&f->gate);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_OK);
  assert_int_equal(f->gate.feedbacks, 1);
  assert_string_equal(f->gate.cls, "assistants");
  assert_int_equal(f->gate.status, 200);
  assert_int_equal(f->gate.info.remaining_requests, 3);
  assert_true(f->gate.age_ms >= 0);
  fx_free(f);
}

static void test_a_streams_headers_reach_the_gate_before_its_first_event(void **state) {
  (void)state;
  fx *f = fx_new();
  g_loop = &f->loop;
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(r, (ss_resp){.status = 200, .ctype = "text/event-stream", .mode = SS_CHUNKED, .chunk = 7,
                           .body = "event: response.created\ndata: {}\n\nevent: response.completed\ndata: {}\n\n",
                           .hname = "x-ratelimit-remaining-tokens", .hval = "1200"});
  fx_start(f);
  res a = {0};
  assert_int_equal(api_stream(f->c, "/responses", "{\"stream\":true}", on_event, on_done_stop, &a, NULL), AW_OK);
  fg_grant(&f->gate);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_OK);
  assert_int_equal(a.events, 2);
  assert_int_equal(f->gate.feedbacks, 1);
  assert_string_equal(f->gate.cls, "responses");
  assert_int_equal(f->gate.info.remaining_tokens, 1200);
  assert_int_equal(f->gate.events_at_feedback, 0);
  fx_free(f);
}

static void test_a_429_is_fed_back_and_its_retry_is_not_asked_again(void **state) {
  (void)state;
  fx *f = fx_new();
  g_loop = &f->loop;
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/runs");
  ss_add_resp(r, (ss_resp){.status = 429,
                           .body = "{\"error\":{\"message\":\"Rate limit reached\",\"type\":\"requests\","
                                   "\"code\":\"rate_limit_exceeded\"}}",
                           .hname = "retry-after-ms", .hval = "10"});
  ss_add_resp(r, (ss_resp){.status = 200, .ctype = "text/event-stream", .body = "event: done\ndata: [DONE]\n\n"});
  fx_start(f);
  res a = {0};
  assert_int_equal(api_runs_create(f->c, "thread_1", "{\"stream\":true}", on_event, on_done_stop, &a, NULL), AW_OK);
  fg_grant(&f->gate);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_OK);
  assert_int_equal(a.attempts, 2);
  assert_int_equal(ss_count(&f->srv, r), 2);
  assert_int_equal(f->gate.acquires, 1); /* the retry went without asking ... */
  assert_int_equal(f->gate.feedbacks, 1); /* ... and the 429 was told (the 200 said nothing) */
  assert_int_equal(f->gate.status, 429);
  assert_int_equal(rlh_retry_after_ms(&f->gate.info), 10);
  fx_free(f);
}

static void test_a_call_cancelled_while_waiting_withdraws_its_ticket_and_is_never_sent(void **state) {
  (void)state;
  fx *f = fx_new();
  g_loop = &f->loop;
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/threads");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"thread_1\"}"});
  fx_start(f);
  res a = {0};
  api_call *call = NULL;
  assert_int_equal(api_threads_create(f->c, NULL, on_done_stop, &a, &call), AW_OK);
  assert_non_null(call);
  api_call_cancel(call);
  assert_int_equal(f->gate.cancels, 1);
  assert_ptr_equal(f->gate.cancelled_ticket, &f->gate.ticket);
  assert_int_equal(api_client_pending(f->c), 0);
  observe_for(f, 100);
  assert_false(a.done);
  assert_int_equal(ss_count(&f->srv, r), 0);
  fx_free(f);
}

static void test_a_gate_that_cannot_take_a_call_does_not_stop_it(void **state) {
  (void)state;
  fx *f = fx_new();
  g_loop = &f->loop;
  f->gate.refuse = 1;
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/assistants/asst_1");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"asst_1\"}"});
  fx_start(f);
  res a = {0};
  assert_int_equal(api_assistants_retrieve(f->c, "asst_1", on_done_stop, &a, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  assert_int_equal(a.err, AW_OK);
  assert_int_equal(f->gate.acquires, 1);
  assert_int_equal(ss_count(&f->srv, r), 1);
  fx_free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_call_waiting_at_the_gate_sends_nothing_until_granted),
      cmocka_unit_test(test_the_responses_rate_limit_headers_reach_the_gate),
      cmocka_unit_test(test_a_streams_headers_reach_the_gate_before_its_first_event),
      cmocka_unit_test(test_a_429_is_fed_back_and_its_retry_is_not_asked_again),
      cmocka_unit_test(test_a_call_cancelled_while_waiting_withdraws_its_ticket_and_is_never_sent),
      cmocka_unit_test(test_a_gate_that_cannot_take_a_call_does_not_stop_it),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

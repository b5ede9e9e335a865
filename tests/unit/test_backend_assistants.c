/* test_backend_assistants.c -- the Assistants API backend (backend.h) against
 * a scripted in-process server: assistant ensure, conversations, and turns
 * (streamed, dropped and recovered by polling, active-run adoption, run
 * failure, tool calls refused, cancellation), function calling (requires_action
 * reported, tool outputs submitted over a stream, rounds, 400s, the poll
 * fallback that keeps only the round's messages), resuming a run by id and
 * finding a message by metadata.  Needs: loopback networking
 * only (no simulator).  Every test frees the backend, runs the loop until
 * its handles closed and checks uv_loop_close; ASan checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backend.h"
#include "log.h"
#include "scripted_server.h"

static uv_loop_t *g_loop;

typedef struct fx {
  ss_server srv;
  uv_loop_t loop;
  be_backend *be;
  be_assistants_config cfg;
  char base[128];
} fx;

static fx *fx_new(void) {
  fx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  g_loop = &f->loop;
  be_assistants_config_default(&f->cfg);
  f->cfg.api_key = "sk-test-secret";
  f->cfg.retry_base_ms = 1; /* fast backoff: tests count requests, not time */
  f->cfg.retry_max_ms = 5;
  return f;
}

static void fx_start(fx *f) {
  assert_int_equal(ss_start(&f->srv), 0);
  snprintf(f->base, sizeof f->base, "http://127.0.0.1:%u/v1", f->srv.port);
  f->cfg.base_url = f->base;
  char err[128];
  assert_int_equal(be_assistants_new(&f->loop, &f->cfg, &f->be, err, sizeof err), AW_OK);
}

static void fx_free(fx *f) {
  be_free(f->be);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  assert_int_equal(f->srv.unmatched, 0);
  ss_stop(&f->srv);
  free(f);
}

/* ---- simple results ------------------------------------------------------------ */

typedef struct sres {
  int done, ncalls, err, http_status;
  char id[64], errmsg[512], code[64], run_id[64];
  int has_run_id;
} sres;

static void on_result(void *opaque, const be_result *r) {
  sres *s = opaque;
  uv_stop(g_loop);
  s->done = 1;
  s->ncalls++;
  s->err = r->err;
  s->http_status = r->http_status;
  snprintf(s->id, sizeof s->id, "%s", r->id ? r->id : "");
  snprintf(s->errmsg, sizeof s->errmsg, "%s", r->errmsg ? r->errmsg : "");
  snprintf(s->code, sizeof s->code, "%s", r->error_code ? r->error_code : "");
  s->has_run_id = r->run_id != NULL;
  snprintf(s->run_id, sizeof s->run_id, "%s", r->run_id ? r->run_id : "");
}

static void test_conversation_create_sends_metadata_and_returns_id(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/threads");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"thread_1\",\"object\":\"thread\"}"});
  fx_start(f);
  contract_kv md[] = {{"conversation_id", "c-42"}};
  sres s = {0};
  assert_int_equal(be_conversation_create(f->be, md, 1, on_result, &s, NULL), AW_OK);
  assert_int_equal(s.done, 0);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "thread_1");
  char *b = ss_last_body(&f->srv, r);
  assert_string_equal(b, "{\"metadata\":{\"conversation_id\":\"c-42\"}}");
  free(b);
  assert_string_equal(r->last_auth, "Bearer sk-test-secret");
  assert_string_equal(r->last_beta, "assistants=v2");
  assert_int_equal(ss_count(&f->srv, r), 1);
  fx_free(f);
}

static void test_conversation_delete_treats_404_as_done(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *r = ss_route_add(&f->srv, "DELETE", "/v1/threads/thread_1");
  ss_add_resp(r, (ss_resp){.status = 200, .body = "{\"id\":\"thread_1\",\"deleted\":true}"});
  ss_route *r2 = ss_route_add(&f->srv, "DELETE", "/v1/threads/thread_2");
  ss_add_resp(r2, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No thread\",\"type\":\"invalid_request_error\"}}"});
  fx_start(f);
  sres a = {0}, b = {0};
  assert_int_equal(be_conversation_delete(f->be, "thread_1", on_result, &a, NULL), AW_OK);
  assert_int_equal(be_conversation_delete(f->be, "thread_2", on_result, &b, NULL), AW_OK);
  ss_run_until(&f->loop, &a.done);
  ss_run_until(&f->loop, &b.done);
  assert_int_equal(a.err, AW_OK);
  assert_int_equal(b.err, AW_OK);
  assert_int_equal(be_conversation_delete(f->be, "../etc", on_result, &b, NULL), AW_EINVAL);
  fx_free(f);
}

/* ---- assistant ensure ------------------------------------------------------------- */

static const be_assistant_def DEF = {.name = "bot", .model = "gpt-4o", .instructions = "Be brief.",
                                     .tools_json = "[{\"type\":\"file_search\"}]", .hash = "h2"};

static void test_ensure_known_id_with_same_hash_is_used_as_is(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/assistants/asst_1");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"asst_1\",\"metadata\":{\"aw_name\":\"bot\",\"aw_hash\":\"h2\"}}"});
  ss_route *upd = ss_route_add(&f->srv, "POST", "/v1/assistants/asst_1");
  ss_add_resp(upd, (ss_resp){.status = 200, .body = "{\"id\":\"asst_1\"}"});
  fx_start(f);
  sres s = {0};
  assert_int_equal(be_assistant_ensure(f->be, &DEF, "asst_1", on_result, &s, NULL), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "asst_1");
  assert_int_equal(ss_count(&f->srv, get), 1);
  assert_int_equal(ss_count(&f->srv, upd), 0);
  fx_free(f);
}

static void test_ensure_known_id_with_other_hash_is_updated(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/assistants/asst_1");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"asst_1\",\"metadata\":{\"aw_name\":\"bot\",\"aw_hash\":\"h1\"}}"});
  ss_route *upd = ss_route_add(&f->srv, "POST", "/v1/assistants/asst_1");
  ss_add_resp(upd, (ss_resp){.status = 200, .body = "{\"id\":\"asst_1\"}"});
  fx_start(f);
  sres s = {0};
  assert_int_equal(be_assistant_ensure(f->be, &DEF, "asst_1", on_result, &s, NULL), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "asst_1");
  assert_int_equal(ss_count(&f->srv, upd), 1);
  char *b = ss_last_body(&f->srv, upd);
  assert_string_equal(b, "{\"name\":\"bot\",\"model\":\"gpt-4o\",\"instructions\":\"Be brief.\","
                         "\"tools\":[{\"type\":\"file_search\"}],\"metadata\":{\"aw_name\":\"bot\",\"aw_hash\":\"h2\"}}");
  free(b);
  fx_free(f);
}

static void test_ensure_404_lists_pages_and_finds_by_name(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/assistants/asst_gone");
  ss_add_resp(get, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No assistant\",\"type\":\"invalid_request_error\"}}"});
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/assistants");
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[{\"id\":\"asst_x\",\"metadata\":{\"aw_name\":\"other\"}}],\"has_more\":true}"});
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[{\"id\":\"asst_2\",\"metadata\":{\"aw_name\":\"bot\",\"aw_hash\":\"h2\"}}],\"has_more\":false}"});
  fx_start(f);
  sres s = {0};
  assert_int_equal(be_assistant_ensure(f->be, &DEF, "asst_gone", on_result, &s, NULL), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "asst_2");
  assert_int_equal(ss_count(&f->srv, list), 2);
  char *q = ss_last_query(&f->srv, list);
  assert_non_null(strstr(q, "after=asst_x"));
  assert_non_null(strstr(q, "limit=100"));
  free(q);
  fx_free(f);
}

static void test_ensure_without_match_creates(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/assistants");
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[],\"has_more\":false}"});
  ss_route *cr = ss_route_add(&f->srv, "POST", "/v1/assistants");
  ss_add_resp(cr, (ss_resp){.status = 200, .body = "{\"id\":\"asst_new\"}"});
  fx_start(f);
  sres s = {0};
  assert_int_equal(be_assistant_ensure(f->be, &DEF, NULL, on_result, &s, NULL), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "asst_new");
  assert_int_equal(ss_count(&f->srv, cr), 1);
  be_assistant_def bad = DEF;
  bad.tools_json = "{not json";
  assert_int_equal(be_assistant_ensure(f->be, &bad, NULL, on_result, &s, NULL), AW_EINVAL);
  fx_free(f);
}

/* ---- turns -------------------------------------------------------------------------- */

typedef struct tres {
  int done, ndone;
  int err;
  char status[32], run_id[64], message_id[64], error_code[64], errmsg[512];
  char deltas[1024];
  size_t ndeltas;
  char added[64], created[64];
  char text[1024];
  size_t nmessages, nparts, nann;
  char ann_type[32], ann_file[32], ann_text[64];
  int64_t ann_start, ann_end;
  contract_usage usage;
  be_op *op;
  int cancel_on_delta;
  int delta_seen;
  /* function calling */
  int nactions, ncalls, res_ncalls, action_after_done, cancel_on_action;
  char call_id[3][32], call_name[3][32], call_args[3][128], res_call_id[32];
} tres;

static void t_added(void *o, const char *id) {
  tres *t = o;
  snprintf(t->added, sizeof t->added, "%s", id);
}
static void t_created(void *o, const char *id) {
  tres *t = o;
  snprintf(t->created, sizeof t->created, "%s", id);
}
static void t_delta(void *o, const char *text, size_t len) {
  tres *t = o;
  uv_stop(g_loop);
  if (t->ndeltas + len < sizeof t->deltas) {
    memcpy(t->deltas + t->ndeltas, text, len);
    t->ndeltas += len;
  }
  t->delta_seen = 1;
  if (t->cancel_on_delta) be_op_cancel(t->op);
}
static void t_action(void *o, const be_tool_call *calls, size_t n) {
  tres *t = o;
  uv_stop(g_loop);
  t->nactions++;
  if (t->ndone) t->action_after_done = 1;
  t->ncalls = (int)n;
  for (size_t i = 0; i < n && i < 3; i++) {
    snprintf(t->call_id[i], sizeof t->call_id[i], "%s", calls[i].id);
    snprintf(t->call_name[i], sizeof t->call_name[i], "%s", calls[i].name);
    snprintf(t->call_args[i], sizeof t->call_args[i], "%s", calls[i].arguments);
  }
  if (t->cancel_on_action) {
    be_op_cancel(t->op);
    t->done = 1;
  }
}
static void t_done(void *o, const be_turn_result *r) {
  tres *t = o;
  uv_stop(g_loop);
  t->done = 1;
  t->ndone++;
  t->res_ncalls = (int)r->ntool_calls;
  snprintf(t->res_call_id, sizeof t->res_call_id, "%s", r->ntool_calls ? r->tool_calls[0].id : "");
  t->err = r->err;
  snprintf(t->status, sizeof t->status, "%s", r->status ? r->status : "");
  snprintf(t->run_id, sizeof t->run_id, "%s", r->run_id ? r->run_id : "");
  snprintf(t->message_id, sizeof t->message_id, "%s", r->message_id ? r->message_id : "");
  snprintf(t->error_code, sizeof t->error_code, "%s", r->error_code ? r->error_code : "");
  snprintf(t->errmsg, sizeof t->errmsg, "%s", r->errmsg ? r->errmsg : "");
  t->usage = r->usage;
  t->nmessages = r->nmessages;
  size_t o2 = 0;
  for (size_t i = 0; i < r->nmessages; i++)
    for (size_t j = 0; j < r->messages[i].nparts; j++) {
      const contract_out_part *p = &r->messages[i].parts[j];
      t->nparts++;
      if (o2 + p->text_len < sizeof t->text) {
        memcpy(t->text + o2, p->text, p->text_len);
        o2 += p->text_len;
      }
      for (size_t k = 0; k < p->nannotations; k++) {
        t->nann++;
        snprintf(t->ann_type, sizeof t->ann_type, "%s", p->annotations[k].type);
        snprintf(t->ann_file, sizeof t->ann_file, "%s", p->annotations[k].file_id);
        snprintf(t->ann_text, sizeof t->ann_text, "%s", p->annotations[k].text);
        t->ann_start = p->annotations[k].start_index;
        t->ann_end = p->annotations[k].end_index;
      }
    }
  t->text[o2] = '\0';
}

static const be_turn_events EVENTS = {t_added, t_created, t_delta, t_done, NULL};
static const be_turn_events EVENTS_FC = {t_added, t_created, t_delta, t_done, t_action};

static const contract_part PART = {.type = CONTRACT_PART_TEXT, .text = "Hi there", .text_len = 8};
static const contract_kv MD[] = {{"event_id", "ev-1"}};

static be_turn_input input(int want_deltas) {
  be_turn_input in = {.conversation = "thread_1", .assistant_id = "asst_1", .parts = &PART, .nparts = 1,
                      .metadata = MD, .nmetadata = 1, .want_deltas = want_deltas, .log_event_id = "ev-1",
                      .run_tag = "ev-1"};
  return in;
}

#define MSG_CREATED "{\"id\":\"msg_u1\",\"object\":\"thread.message\",\"created_at\":1700000000,\"role\":\"user\"}"
#define RUN(id, st) "{\"id\":\"" id "\",\"object\":\"thread.run\",\"created_at\":1700000001,\"thread_id\":\"thread_1\",\"assistant_id\":\"asst_1\",\"status\":\"" st "\"}"
#define RUN_DONE(id) "{\"id\":\"" id "\",\"object\":\"thread.run\",\"status\":\"completed\",\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15}}"
#define DELTA(v) "{\"id\":\"msg_a1\",\"object\":\"thread.message.delta\",\"delta\":{\"content\":[{\"index\":0,\"type\":\"text\",\"text\":{\"value\":\"" v "\"}}]}}"
#define ANSWER "Hello, world[1]"
#define MSG_A1 "{\"id\":\"msg_a1\",\"object\":\"thread.message\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":{\"value\":\"" ANSWER "\",\"annotations\":[{\"type\":\"file_citation\",\"text\":\"[1]\",\"file_citation\":{\"file_id\":\"file_1\"},\"start_index\":12,\"end_index\":15}]}}]}"

static const char *STREAM_OK =
    "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
    "event: thread.run.in_progress\ndata: " RUN("run_1", "in_progress") "\n\n"
    ": keep-alive comment\n\n"
    "event: thread.message.created\ndata: {\"id\":\"msg_a1\"}\n\n"
    "event: thread.message.delta\ndata: " DELTA("Hello") "\n\n"
    "event: thread.message.delta\ndata: " DELTA(", world[1]") "\n\n"
    "event: thread.message.completed\ndata: " MSG_A1 "\n\n"
    "event: thread.run.step.completed\ndata: {\"id\":\"step_1\",\"status\":\"completed\"}\n\n"
    "event: thread.run.completed\ndata: " RUN_DONE("run_1") "\n\n"
    "event: done\ndata: [DONE]\n\n";

typedef struct turn_routes {
  ss_route *msg, *runs, *get_run, *list_msgs, *list_runs, *cancel;
} turn_routes;

static turn_routes add_turn_routes(fx *f) {
  turn_routes t;
  t.msg = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/messages");
  ss_add_resp(t.msg, (ss_resp){.status = 200, .body = MSG_CREATED});
  t.runs = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/runs");
  t.get_run = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs/run_1");
  t.list_msgs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  t.list_runs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs");
  t.cancel = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/runs/run_1/cancel");
  return t;
}

static void test_turn_streams_deltas_and_collects_the_answer(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK, .ctype = "text/event-stream",
                                .mode = SS_CHUNKED, .chunk = 13});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.ndone, 1);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.added, ""); /* the message came with the run: its id is not known */
  assert_string_equal(t.created, "run_1");
  assert_string_equal(t.run_id, "run_1");
  assert_string_equal(t.message_id, "");
  assert_string_equal(t.deltas, ANSWER);
  assert_string_equal(t.text, ANSWER);
  assert_int_equal(t.nmessages, 1);
  assert_int_equal(t.nann, 1);
  assert_string_equal(t.ann_type, "file_citation");
  assert_string_equal(t.ann_file, "file_1");
  assert_string_equal(t.ann_text, "[1]");
  assert_int_equal(t.ann_start, 12);
  assert_int_equal(t.ann_end, 15);
  assert_int_equal(t.usage.present, 1);
  assert_int_equal(t.usage.total_tokens, 15);
  assert_int_equal(ss_count(&f->srv, r.runs), 1);
  assert_int_equal(ss_count(&f->srv, r.get_run), 0);
  /* One request: the message rides on the run (both or neither exist). */
  assert_int_equal(ss_count(&f->srv, r.msg), 0);
  char *b = ss_last_body(&f->srv, r.runs);
  assert_string_equal(b, "{\"assistant_id\":\"asst_1\",\"stream\":true,\"metadata\":{\"aw_tag\":\"ev-1\"},"
                         "\"additional_messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi there\"}],"
                         "\"metadata\":{\"event_id\":\"ev-1\"}}]}");
  free(b);
  fx_free(f);
}

static void test_turn_without_deltas_calls_no_delta_callback(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK, .ctype = "text/event-stream",
                                .mode = SS_CHUNKED, .chunk = 1});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.instructions = "Override";
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_OK);
  assert_int_equal(t.ndeltas, 0);
  assert_string_equal(t.text, ANSWER);
  char *b = ss_last_body(&f->srv, r.runs);
  assert_non_null(strstr(b, "\"instructions\":\"Override\""));
  free(b);
  fx_free(f);
}

static void test_turn_stream_dropped_after_run_created_is_followed_by_polling(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .mode = SS_DROP, .chunk = 5,
                                .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
                                        "event: thread.message.delta\ndata: " DELTA("Hel") "\n\n"});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN("run_1", "in_progress")});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" MSG_A1 "],\"has_more\":false}"});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.ndone, 1);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_int_equal(ss_count(&f->srv, r.runs), 1); /* never started twice */
  assert_int_equal(ss_count(&f->srv, r.get_run), 2);
  assert_int_equal(ss_count(&f->srv, r.list_msgs), 1);
  char *q = ss_last_query(&f->srv, r.list_msgs);
  assert_non_null(strstr(q, "run_id=run_1"));
  assert_non_null(strstr(q, "order=asc"));
  free(q);
  assert_string_equal(t.deltas, ANSWER); /* "Hel" + the missing suffix */
  assert_string_equal(t.text, ANSWER);
  assert_int_equal(t.usage.total_tokens, 15);
  fx_free(f);
}

static void test_turn_silent_stream_times_out_and_is_followed_by_polling(void **state) {
  (void)state;
  fx *f = fx_new();
  f->cfg.stream_idle_timeout_ms = 150;
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .mode = SS_HANG,
                                .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" MSG_A1 "],\"has_more\":false}"});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_int_equal(ss_count(&f->srv, r.runs), 1);
  assert_int_equal(ss_count(&f->srv, r.get_run), 1);
  assert_string_equal(t.deltas, ANSWER); /* all of it arrives as one delta */
  fx_free(f);
}

static void test_turn_adopts_its_active_run_after_a_retried_create(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_route *get9 = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs/run_9");
  ss_add_resp(r.runs, (ss_resp){.status = 502, .body = "{\"error\":{\"message\":\"bad gateway\",\"type\":\"server_error\"}}"});
  ss_add_resp(r.runs, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Thread thread_1 already has an active run run_9.\",\"type\":\"invalid_request_error\"}}"});
  ss_add_resp(r.list_runs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[{\"id\":\"run_9\",\"status\":\"in_progress\",\"assistant_id\":\"asst_1\",\"created_at\":1700000001,\"metadata\":{\"aw_tag\":\"ev-1\"}}],\"has_more\":false}"});
  ss_add_resp(get9, (ss_resp){.status = 200, .body = RUN_DONE("run_9")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" MSG_A1 "],\"has_more\":false}"});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.run_id, "run_9");
  assert_string_equal(t.created, "run_9");
  assert_int_equal(ss_count(&f->srv, r.runs), 2);
  assert_int_equal(ss_count(&f->srv, r.list_runs), 1);
  assert_int_equal(ss_count(&f->srv, get9), 1);
  assert_string_equal(t.deltas, ANSWER);
  fx_free(f);
}

static void test_turn_active_run_on_first_attempt_is_an_error(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Thread thread_1 already has an active run run_8.\",\"type\":\"invalid_request_error\"}}"});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_EHTTP4XX);
  assert_int_equal(ss_count(&f->srv, r.runs), 1);
  assert_int_equal(ss_count(&f->srv, r.list_runs), 0);
  assert_string_equal(t.errmsg, "POST /v1/threads/thread_1/runs: HTTP 400 invalid_request_error: "
                                "Thread thread_1 already has an active run run_8.");
  fx_free(f);
}

static void test_turn_400_on_create_is_not_retried_and_precise(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *msg = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/runs");
  ss_add_resp(msg, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Bad thing\",\"type\":\"invalid_request_error\",\"code\":null}}"});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_EHTTP4XX);
  assert_int_equal(ss_count(&f->srv, msg), 1);
  assert_string_equal(t.errmsg, "POST /v1/threads/thread_1/runs: HTTP 400 invalid_request_error: Bad thing");
  assert_string_equal(t.error_code, "invalid_request_error");
  assert_string_equal(t.run_id, "");
  assert_null(strstr(t.errmsg, "sk-test"));
  fx_free(f);
}

static void test_turn_429_then_200_on_create(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 429, .body = "{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}",
                                .hname = "Retry-After", .hval = "0"});
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK, .mode = SS_CHUNKED, .chunk = 64});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_OK);
  assert_int_equal(ss_count(&f->srv, r.runs), 2);
  assert_int_equal(ss_count(&f->srv, r.msg), 0);
  fx_free(f);
}

/* ---- the API observer (metrics) ------------------------------------------------ */

typedef struct obs_rec {
  char route[128];
  int status, attempts;
  double seconds;
} obs_rec;

typedef struct obs_log {
  obs_rec r[16];
  int n;
} obs_log;

static void on_observe(void *opaque, const char *route, int http_status, double seconds, int attempts) {
  obs_log *l = opaque;
  if (l->n >= 16) return;
  obs_rec *r = &l->r[l->n++];
  snprintf(r->route, sizeof r->route, "%s", route);
  r->status = http_status;
  r->attempts = attempts;
  r->seconds = seconds;
}

static void test_turn_reports_each_api_call_with_route_status_and_attempts(void **state) {
  (void)state;
  fx *f = fx_new();
  obs_log log = {0};
  f->cfg.observe = on_observe;
  f->cfg.observe_opaque = &log;
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 429, .body = "{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}",
                                .hname = "Retry-After", .hval = "0"});
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK, .mode = SS_CHUNKED, .chunk = 64});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_OK);
  assert_int_equal(log.n, 1); /* one request per turn */
  assert_string_equal(log.r[0].route, "POST /threads/{id}/runs");
  assert_int_equal(log.r[0].status, 200);
  assert_int_equal(log.r[0].attempts, 2);
  assert_true(log.r[0].seconds > 0 && log.r[0].seconds < 30);
  fx_free(f);
}

static void test_a_call_without_response_is_observed_with_status_0(void **state) {
  (void)state;
  fx *f = fx_new();
  obs_log log = {0};
  f->cfg.observe = on_observe;
  f->cfg.observe_opaque = &log;
  f->cfg.max_retries = 1;
  assert_int_equal(ss_start(&f->srv), 0);
  /* Nothing listens on port 1: the connection is refused, twice. */
  snprintf(f->base, sizeof f->base, "http://127.0.0.1:1/v1");
  f->cfg.base_url = f->base;
  char err[128];
  assert_int_equal(be_assistants_new(&f->loop, &f->cfg, &f->be, err, sizeof err), AW_OK);
  sres s = {0};
  assert_int_equal(be_conversation_create(f->be, NULL, 0, on_result, &s, NULL), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_not_equal(s.err, AW_OK);
  assert_int_equal(log.n, 1);
  assert_string_equal(log.r[0].route, "POST /threads");
  assert_int_equal(log.r[0].status, 0);
  assert_int_equal(log.r[0].attempts, 2);
  fx_free(f);
}

static void test_turn_run_failed_reports_last_error(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .mode = SS_CHUNKED, .chunk = 17,
      .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
              "event: thread.run.failed\ndata: {\"id\":\"run_1\",\"status\":\"failed\",\"last_error\":{\"code\":\"rate_limit_exceeded\",\"message\":\"quota\"}}\n\n"
              "event: done\ndata: [DONE]\n\n"});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "failed");
  assert_string_equal(t.error_code, "rate_limit_exceeded");
  assert_string_equal(t.errmsg, "quota");
  assert_int_equal(t.nmessages, 0);
  fx_free(f);
}

static void test_turn_error_event_ends_with_error(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .mode = SS_PLAIN,
      .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
              "event: error\ndata: {\"code\":\"server_error\",\"message\":\"boom\"}\n\n"});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_EHTTP5XX);
  assert_string_equal(t.error_code, "server_error");
  assert_non_null(strstr(t.errmsg, "boom"));
  fx_free(f);
}

static void test_turn_requires_action_cancels_the_run(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200,
      .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
              "event: thread.run.requires_action\ndata: " RUN("run_1", "requires_action") "\n\n"
              "event: done\ndata: [DONE]\n\n"});
  ss_add_resp(r.cancel, (ss_resp){.status = 200, .body = RUN("run_1", "cancelling")});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_EINVAL);
  assert_string_equal(t.error_code, "tool_calls_unsupported");
  assert_int_equal(ss_count(&f->srv, r.cancel), 1);
  fx_free(f);
}

static void test_turn_answer_over_bound_is_etoobig(void **state) {
  (void)state;
  fx *f = fx_new();
  f->cfg.max_answer_bytes = 8;
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_ETOOBIG);
  assert_string_equal(t.status, "completed");
  fx_free(f);
}

static void test_turn_cancel_from_delta_callback_stops_everything(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .mode = SS_HANG,
      .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
              "event: thread.message.delta\ndata: " DELTA("Hel") "\n\n"});
  fx_start(f);
  tres t = {0};
  t.cancel_on_delta = 1;
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.delta_seen);
  assert_string_equal(t.deltas, "Hel");
  uv_run(&f->loop, UV_RUN_NOWAIT);
  fx_free(f);
  assert_int_equal(t.ndone, 0);
}

static void test_turn_cancel_before_io_and_bad_input(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  (void)r;
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  be_op *op = NULL;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &op), AW_OK);
  be_op_cancel(op);
  contract_part img = {.type = CONTRACT_PART_IMAGE_URL, .text = "http://x/y.png", .text_len = 14};
  in.parts = &img;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &op), AW_EINVAL);
  in = input(0);
  in.conversation = "thread/../x";
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &op), AW_EINVAL);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  fx_free(f);
  assert_int_equal(t.ndone, 0);
}

/* ---- function calling ------------------------------------------------------------- */

#define CALL1 "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}"
#define CALL2 "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}"
#define RUN_RA(id, calls) "{\"id\":\"" id "\",\"object\":\"thread.run\",\"status\":\"requires_action\",\"assistant_id\":\"asst_1\",\"required_action\":{\"type\":\"submit_tool_outputs\",\"submit_tool_outputs\":{\"tool_calls\":[" calls "]}}}"
#define MSG_TEXT(id, v) "{\"id\":\"" id "\",\"object\":\"thread.message\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":{\"value\":\"" v "\",\"annotations\":[]}}]}"
#define MSG_A0 MSG_TEXT("msg_a0", "Let me check.")
#define MSG_A2 MSG_TEXT("msg_a2", "It is 21C.")
#define SUBMIT_PATH "/v1/threads/thread_1/runs/run_1/submit_tool_outputs"

static const char *STREAM_RA =
    "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
    "event: thread.message.completed\ndata: " MSG_A0 "\n\n"
    "event: thread.run.requires_action\ndata: " RUN_RA("run_1", CALL1 "," CALL2) "\n\n"
    "event: done\ndata: [DONE]\n\n";

static const char *STREAM_SUBMIT_OK =
    "event: thread.run.queued\ndata: " RUN("run_1", "queued") "\n\n"
    "event: thread.run.in_progress\ndata: " RUN("run_1", "in_progress") "\n\n"
    "event: thread.message.delta\ndata: " DELTA("It is ") "\n\n"
    "event: thread.message.delta\ndata: " DELTA("21C.") "\n\n"
    "event: thread.message.completed\ndata: " MSG_A2 "\n\n"
    "event: thread.run.completed\ndata: " RUN_DONE("run_1") "\n\n"
    "event: done\ndata: [DONE]\n\n";

static const be_tool_output OUT1[] = {{"call_1", "{\"temp\":21}"}, {"call_2", "12:00"}};

static void test_turn_requires_action_reports_tool_calls_without_cancelling(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_RA, .mode = SS_CHUNKED, .chunk = 11});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS_FC, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.nactions, 1);
  assert_int_equal(t.action_after_done, 0);
  assert_int_equal(t.ncalls, 2);
  assert_string_equal(t.call_id[0], "call_1");
  assert_string_equal(t.call_name[0], "get_weather");
  assert_string_equal(t.call_args[0], "{\"city\":\"Paris\"}");
  assert_string_equal(t.call_id[1], "call_2");
  assert_string_equal(t.call_name[1], "get_time");
  assert_string_equal(t.call_args[1], "{}");
  assert_int_equal(t.ndone, 1);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "requires_action");
  assert_string_equal(t.run_id, "run_1");
  assert_string_equal(t.message_id, ""); /* came with the run */
  assert_int_equal(t.res_ncalls, 2);
  assert_string_equal(t.res_call_id, "call_1");
  assert_string_equal(t.text, "Let me check."); /* what the run wrote before calling */
  assert_int_equal(ss_count(&f->srv, r.cancel), 0);
  assert_int_equal(ss_count(&f->srv, r.get_run), 0);
  fx_free(f);
}

static void test_turn_requires_action_without_callback_still_cancels(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_RA});
  ss_add_resp(r.cancel, (ss_resp){.status = 200, .body = RUN("run_1", "cancelling")});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_EINVAL);
  assert_string_equal(t.error_code, "tool_calls_unsupported");
  assert_string_equal(t.status, "cancelled");
  assert_int_equal(t.res_ncalls, 0);
  assert_int_equal(ss_count(&f->srv, r.cancel), 1);
  fx_free(f);
}

static void test_turn_requires_action_with_unreadable_calls_is_eparse_and_cancels(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200,
      .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
              "event: thread.run.requires_action\ndata: " RUN_RA("run_1", "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{}}") "\n\n"
              "event: done\ndata: [DONE]\n\n"});
  ss_add_resp(r.cancel, (ss_resp){.status = 200, .body = RUN("run_1", "cancelling")});
  fx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS_FC, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.nactions, 0);
  assert_int_equal(t.err, AW_EPARSE);
  assert_string_equal(t.error_code, "invalid_required_action");
  assert_int_equal(ss_count(&f->srv, r.cancel), 1);
  fx_free(f);
}

static void test_turn_cancel_from_requires_action_callback_calls_no_done(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_RA});
  fx_start(f);
  tres t = {0};
  t.cancel_on_action = 1;
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS_FC, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(t.nactions, 1);
  assert_int_equal(t.ndone, 0);
  fx_free(f);
}

static void test_submit_tool_outputs_streams_the_continued_run_to_completion(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_route *sub = ss_route_add(&f->srv, "POST", SUBMIT_PATH);
  ss_add_resp(sub, (ss_resp){.status = 200, .body = STREAM_SUBMIT_OK, .ctype = "text/event-stream",
                             .mode = SS_CHUNKED, .chunk = 9});
  fx_start(f);
  tres t = {0};
  assert_int_equal(be_submit_tool_outputs(f->be, "thread_1", "run_1", OUT1, 2, 1, &EVENTS_FC, &t, &t.op),
                   AW_OK);
  assert_int_equal(t.done, 0);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.ndone, 1);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.run_id, "run_1");
  assert_string_equal(t.message_id, "");
  assert_string_equal(t.created, ""); /* no run was created */
  assert_string_equal(t.deltas, "It is 21C.");
  assert_string_equal(t.text, "It is 21C.");
  assert_int_equal(t.nmessages, 1);
  assert_int_equal(t.usage.total_tokens, 15);
  assert_int_equal(t.nactions, 0);
  assert_int_equal(ss_count(&f->srv, sub), 1);
  assert_int_equal(ss_count(&f->srv, r.get_run), 0);
  char *b = ss_last_body(&f->srv, sub);
  assert_string_equal(b, "{\"tool_outputs\":[{\"tool_call_id\":\"call_1\",\"output\":\"{\\\"temp\\\":21}\"},"
                         "{\"tool_call_id\":\"call_2\",\"output\":\"12:00\"}],\"stream\":true}");
  free(b);
  fx_free(f);
}

static void test_submit_tool_outputs_400_is_not_retried_and_precise(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_route *sub = ss_route_add(&f->srv, "POST", SUBMIT_PATH);
  ss_add_resp(sub, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Runs in status \\\"expired\\\" do not accept tool outputs.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}"});
  fx_start(f);
  tres t = {0};
  assert_int_equal(be_submit_tool_outputs(f->be, "thread_1", "run_1", OUT1, 1, 0, &EVENTS_FC, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.ndone, 1);
  assert_int_equal(t.err, AW_EHTTP4XX);
  assert_string_equal(t.errmsg, "POST /v1/threads/thread_1/runs/run_1/submit_tool_outputs: HTTP 400 "
                                "invalid_request_error: Runs in status \"expired\" do not accept tool outputs.");
  assert_string_equal(t.status, "");
  assert_int_equal(ss_count(&f->srv, sub), 1);
  assert_int_equal(ss_count(&f->srv, r.get_run), 0);
  fx_free(f);
}

static void test_function_calling_over_two_rounds(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_RA});
  ss_route *sub = ss_route_add(&f->srv, "POST", SUBMIT_PATH);
  ss_add_resp(sub, (ss_resp){.status = 200, .mode = SS_CHUNKED, .chunk = 23,
      .body = "event: thread.run.queued\ndata: " RUN("run_1", "queued") "\n\n"
              "event: thread.run.requires_action\ndata: " RUN_RA("run_1", "{\"id\":\"call_3\",\"type\":\"function\",\"function\":{\"name\":\"get_date\",\"arguments\":\"\"}}") "\n\n"
              "event: done\ndata: [DONE]\n\n"});
  ss_add_resp(sub, (ss_resp){.status = 200, .body = STREAM_SUBMIT_OK});
  fx_start(f);
  tres t1 = {0}, t2 = {0}, t3 = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS_FC, &t1, NULL), AW_OK);
  ss_run_until(&f->loop, &t1.done);
  assert_string_equal(t1.status, "requires_action");
  assert_int_equal(t1.ncalls, 2);

  assert_int_equal(be_submit_tool_outputs(f->be, "thread_1", t1.run_id, OUT1, 2, 1, &EVENTS_FC, &t2, NULL), AW_OK);
  ss_run_until(&f->loop, &t2.done);
  assert_int_equal(t2.err, AW_OK);
  assert_string_equal(t2.status, "requires_action");
  assert_int_equal(t2.nactions, 1);
  assert_int_equal(t2.ncalls, 1);
  assert_string_equal(t2.call_id[0], "call_3");
  assert_string_equal(t2.call_args[0], "");
  assert_int_equal(t2.nmessages, 0);

  be_tool_output out3 = {"call_3", "2024-01-01"};
  assert_int_equal(be_submit_tool_outputs(f->be, "thread_1", t2.run_id, &out3, 1, 1, &EVENTS_FC, &t3, NULL), AW_OK);
  ss_run_until(&f->loop, &t3.done);
  assert_int_equal(t3.err, AW_OK);
  assert_string_equal(t3.status, "completed");
  assert_string_equal(t3.text, "It is 21C.");
  assert_string_equal(t3.deltas, "It is 21C.");
  assert_int_equal(t3.nactions, 0);
  assert_int_equal(ss_count(&f->srv, sub), 2);
  assert_int_equal(ss_count(&f->srv, r.runs), 1);
  char *b = ss_last_body(&f->srv, sub);
  assert_string_equal(b, "{\"tool_outputs\":[{\"tool_call_id\":\"call_3\",\"output\":\"2024-01-01\"}],\"stream\":true}");
  free(b);
  fx_free(f);
}

#define STEPS_ROUND                                                                                      \
  "{\"object\":\"list\",\"data\":["                                                                      \
  "{\"id\":\"step_3\",\"type\":\"message_creation\",\"step_details\":{\"type\":\"message_creation\",\"message_creation\":{\"message_id\":\"msg_a2\"}}}," \
  "{\"id\":\"step_2\",\"type\":\"tool_calls\",\"step_details\":{\"type\":\"tool_calls\",\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\"}]}}," \
  "{\"id\":\"step_1\",\"type\":\"message_creation\",\"step_details\":{\"type\":\"message_creation\",\"message_creation\":{\"message_id\":\"msg_a0\"}}}" \
  "],\"has_more\":false}"

static void test_submit_stream_dropped_is_polled_and_keeps_only_this_rounds_messages(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_route *sub = ss_route_add(&f->srv, "POST", SUBMIT_PATH);
  ss_route *steps = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs/run_1/steps");
  ss_add_resp(sub, (ss_resp){.status = 200, .mode = SS_DROP, .chunk = 7,
                             .body = "event: thread.run.in_progress\ndata: " RUN("run_1", "in_progress") "\n\n"
                                     "event: thread.message.delta\ndata: " DELTA("It is ") "\n\n"});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(steps, (ss_resp){.status = 200, .body = STEPS_ROUND});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" MSG_A0 "," MSG_A2 "],\"has_more\":false}"});
  fx_start(f);
  tres t = {0};
  assert_int_equal(be_submit_tool_outputs(f->be, "thread_1", "run_1", OUT1, 1, 1, &EVENTS_FC, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_int_equal(ss_count(&f->srv, sub), 1); /* never submitted twice */
  assert_int_equal(ss_count(&f->srv, r.get_run), 1);
  assert_int_equal(ss_count(&f->srv, steps), 1);
  char *q = ss_last_query(&f->srv, steps);
  assert_non_null(strstr(q, "order=desc"));
  free(q);
  assert_int_equal(t.nmessages, 1);
  assert_string_equal(t.text, "It is 21C.");
  assert_string_equal(t.deltas, "It is 21C.");
  fx_free(f);
}

static void test_submit_400_on_a_retry_follows_the_run(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_route *sub = ss_route_add(&f->srv, "POST", SUBMIT_PATH);
  ss_route *steps = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs/run_1/steps");
  ss_add_resp(sub, (ss_resp){.status = 502, .body = "{\"error\":{\"message\":\"bad gateway\",\"type\":\"server_error\"}}"});
  ss_add_resp(sub, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Runs in status \\\"in_progress\\\" do not accept tool outputs.\",\"type\":\"invalid_request_error\"}}"});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(steps, (ss_resp){.status = 200, .body = STEPS_ROUND});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" MSG_A0 "," MSG_A2 "],\"has_more\":false}"});
  fx_start(f);
  tres t = {0};
  assert_int_equal(be_submit_tool_outputs(f->be, "thread_1", "run_1", OUT1, 1, 0, &EVENTS_FC, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.errmsg, "");
  assert_string_equal(t.text, "It is 21C.");
  assert_int_equal(ss_count(&f->srv, sub), 2);
  fx_free(f);
}

static void test_submit_and_resume_reject_bad_arguments_before_io(void **state) {
  (void)state;
  fx *f = fx_new();
  fx_start(f);
  tres t = {0};
  be_op *op = NULL;
  assert_int_equal(be_submit_tool_outputs(f->be, "thread_1", "run_1", OUT1, 0, 0, &EVENTS_FC, &t, &op), AW_EINVAL);
  be_tool_output bad = {"call_1", NULL};
  assert_int_equal(be_submit_tool_outputs(f->be, "thread_1", "run_1", &bad, 1, 0, &EVENTS_FC, &t, &op), AW_EINVAL);
  assert_int_equal(be_submit_tool_outputs(f->be, "thread_1", "run/1", OUT1, 1, 0, &EVENTS_FC, &t, &op), AW_EINVAL);
  assert_int_equal(be_turn_resume(f->be, "thread_1", "", &EVENTS, &t, &op), AW_EINVAL);
  assert_int_equal(be_turn_resume(f->be, "thread 1", "run_1", &EVENTS, &t, &op), AW_EINVAL);
  assert_null(op);
  /* started then cancelled before any answer: nothing is called back */
  assert_int_equal(be_turn_resume(f->be, "thread_1", "run_1", &EVENTS, &t, &op), AW_OK);
  be_op_cancel(op);
  assert_int_equal(be_submit_tool_outputs(f->be, "thread_1", "run_1", OUT1, 1, 0, &EVENTS_FC, &t, &op), AW_OK);
  be_op_cancel(op);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  f->srv.unmatched = 0; /* the cancelled requests may have reached the server */
  fx_free(f);
  assert_int_equal(t.ndone, 0);
}

/* ---- resuming a run ------------------------------------------------------------------ */

static void test_resume_of_a_completed_run_collects_its_messages(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" MSG_A1 "],\"has_more\":false}"});
  fx_start(f);
  tres t = {0};
  assert_int_equal(be_turn_resume(f->be, "thread_1", "run_1", &EVENTS_FC, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.ndone, 1);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.run_id, "run_1");
  assert_string_equal(t.text, ANSWER);
  assert_int_equal(t.ndeltas, 0);
  assert_int_equal(t.usage.total_tokens, 15);
  assert_int_equal(ss_count(&f->srv, r.get_run), 1);
  char *q = ss_last_query(&f->srv, r.list_msgs);
  assert_non_null(strstr(q, "run_id=run_1"));
  assert_non_null(strstr(q, "order=asc"));
  free(q);
  fx_free(f);
}

static void test_resume_of_a_running_run_polls_until_terminal(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN("run_1", "queued")});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN("run_1", "in_progress")});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" MSG_A1 "],\"has_more\":false}"});
  fx_start(f);
  tres t = {0};
  uint64_t t0 = uv_now(&f->loop);
  assert_int_equal(be_turn_resume(f->be, "thread_1", "run_1", &EVENTS, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, ANSWER);
  assert_int_equal(ss_count(&f->srv, r.get_run), 3);
  assert_true(uv_now(&f->loop) - t0 >= 200 + 400); /* backoff 200 ms, doubling */
  fx_free(f);
}

static void test_resume_of_a_run_requiring_action_reports_its_calls(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_RA("run_1", CALL1)});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" MSG_A0 "],\"has_more\":false}"});
  fx_start(f);
  tres t = {0};
  assert_int_equal(be_turn_resume(f->be, "thread_1", "run_1", &EVENTS_FC, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.nactions, 1);
  assert_int_equal(t.ncalls, 1);
  assert_string_equal(t.call_id[0], "call_1");
  assert_string_equal(t.call_args[0], "{\"city\":\"Paris\"}");
  assert_int_equal(t.ndone, 1);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "requires_action");
  assert_int_equal(t.res_ncalls, 1);
  assert_string_equal(t.text, "Let me check.");
  assert_int_equal(ss_count(&f->srv, r.cancel), 0);
  fx_free(f);
}

static void test_resume_of_an_unknown_run_is_a_404(void **state) {
  (void)state;
  fx *f = fx_new();
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.get_run, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No run found with id 'run_1'.\",\"type\":\"invalid_request_error\"}}"});
  fx_start(f);
  tres t = {0};
  assert_int_equal(be_turn_resume(f->be, "thread_1", "run_1", &EVENTS_FC, &t, NULL), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.err, AW_EHTTP4XX);
  assert_non_null(strstr(t.errmsg, "HTTP 404"));
  fx_free(f);
}

/* ---- finding a message ------------------------------------------------------------------ */

#define UMSG(id, ev) "{\"id\":\"" id "\",\"object\":\"thread.message\",\"role\":\"user\",\"metadata\":{\"event_id\":\"" ev "\"}}"

static void test_find_message_pages_and_reports_the_run_that_followed(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *msgs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_route *runs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs");
  /* an assistant message carrying the same metadata is not it */
  ss_add_resp(msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":["
      "{\"id\":\"msg_9\",\"role\":\"assistant\",\"metadata\":{\"event_id\":\"ev-1\"}}," UMSG("msg_8", "ev-0") "],\"has_more\":true}"});
  ss_add_resp(msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" UMSG("msg_7", "ev-1") "],\"has_more\":false}"});
  ss_add_resp(runs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":["
      "{\"id\":\"run_8\",\"status\":\"completed\",\"metadata\":{\"aw_message_id\":\"msg_8\"}},"
      "{\"id\":\"run_7\",\"status\":\"completed\",\"metadata\":{\"aw_message_id\":\"msg_7\"}}],\"has_more\":false}"});
  fx_start(f);
  sres s = {0};
  assert_int_equal(be_find_message(f->be, "thread_1", "event_id", "ev-1", on_result, &s, NULL), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.ncalls, 1);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "msg_7");
  assert_string_equal(s.run_id, "run_7");
  assert_int_equal(ss_count(&f->srv, msgs), 2);
  char *q = ss_last_query(&f->srv, msgs);
  assert_string_equal(q, "order=desc&limit=100&after=msg_8");
  free(q);
  q = ss_last_query(&f->srv, runs);
  assert_string_equal(q, "limit=20&order=desc");
  free(q);
  fx_free(f);
}

static void test_find_message_without_a_run_reports_no_run_id(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *msgs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_route *runs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs");
  ss_add_resp(msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" UMSG("msg_7", "ev-1") "],\"has_more\":false}"});
  ss_add_resp(runs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[{\"id\":\"run_6\",\"status\":\"completed\",\"metadata\":{\"aw_message_id\":\"msg_6\"}}],\"has_more\":false}"});
  fx_start(f);
  sres s = {0};
  assert_int_equal(be_find_message(f->be, "thread_1", "event_id", "ev-1", on_result, &s, NULL), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "msg_7");
  assert_int_equal(s.has_run_id, 0);
  fx_free(f);
}

/* A message that came with its run (additional_messages): the run carries
 * the caller's tag (aw_tag) instead of the message id. */
static void test_find_message_finds_a_run_by_its_tag(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *msgs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_route *runs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs");
  ss_add_resp(msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" UMSG("msg_7", "ev-1") "],\"has_more\":false}"});
  ss_add_resp(runs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":["
      "{\"id\":\"run_8\",\"status\":\"in_progress\",\"metadata\":{\"aw_tag\":\"ev-2\"}},"
      "{\"id\":\"run_7\",\"status\":\"in_progress\",\"metadata\":{\"aw_tag\":\"ev-1\"}}],\"has_more\":false}"});
  fx_start(f);
  sres s = {0};
  assert_int_equal(be_find_message(f->be, "thread_1", "event_id", "ev-1", on_result, &s, NULL), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "msg_7");
  assert_int_equal(s.has_run_id, 1);
  assert_string_equal(s.run_id, "run_7");
  fx_free(f);
}

static void test_find_message_not_found_is_enotfound(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *msgs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_route *runs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs");
  ss_add_resp(msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" UMSG("msg_7", "ev-0") "],\"has_more\":false}"});
  fx_start(f);
  sres s = {0};
  assert_int_equal(be_find_message(f->be, "thread_1", "event_id", "ev-1", on_result, &s, NULL), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_ENOTFOUND);
  assert_string_equal(s.id, "");
  assert_int_equal(ss_count(&f->srv, runs), 0);
  fx_free(f);
}

static void test_find_message_searches_a_bounded_number_of_pages(void **state) {
  (void)state;
  fx *f = fx_new();
  ss_route *msgs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  static const char *pages[] = {
      "{\"data\":[" UMSG("msg_1", "x") "],\"has_more\":true}", "{\"data\":[" UMSG("msg_2", "x") "],\"has_more\":true}",
      "{\"data\":[" UMSG("msg_3", "x") "],\"has_more\":true}", "{\"data\":[" UMSG("msg_4", "x") "],\"has_more\":true}",
      "{\"data\":[" UMSG("msg_5", "x") "],\"has_more\":true}", "{\"data\":[" UMSG("msg_6", "ev-1") "],\"has_more\":false}"};
  for (size_t i = 0; i < 6; i++) ss_add_resp(msgs, (ss_resp){.status = 200, .body = pages[i]});
  fx_start(f);
  sres s = {0};
  assert_int_equal(be_find_message(f->be, "thread_1", "event_id", "ev-1", on_result, &s, NULL), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_ENOTFOUND);
  assert_int_equal(ss_count(&f->srv, msgs), 5);
  assert_int_equal(be_find_message(f->be, "thread_1", "", "ev-1", on_result, &s, NULL), AW_EINVAL);
  assert_int_equal(be_find_message(f->be, "../x", "event_id", "ev-1", on_result, &s, NULL), AW_EINVAL);
  fx_free(f);
}

static void test_find_message_runs_list_failure_is_an_error_not_no_run(void **state) {
  (void)state;
  fx *f = fx_new();
  f->cfg.max_retries = 0;
  ss_route *msgs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_route *runs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs");
  ss_add_resp(msgs, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" UMSG("msg_7", "ev-1") "],\"has_more\":false}"});
  ss_add_resp(runs, (ss_resp){.status = 500, .body = "{\"error\":{\"message\":\"oops\",\"type\":\"server_error\"}}"});
  fx_start(f);
  sres s = {0};
  assert_int_equal(be_find_message(f->be, "thread_1", "event_id", "ev-1", on_result, &s, NULL), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_EHTTP5XX);
  assert_string_equal(s.id, "");
  assert_int_equal(s.has_run_id, 0);
  fx_free(f);
}

int main(void) {
  log_set_level(LOG_WARN); /* the recovery path logs at info on purpose */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_conversation_create_sends_metadata_and_returns_id),
      cmocka_unit_test(test_conversation_delete_treats_404_as_done),
      cmocka_unit_test(test_ensure_known_id_with_same_hash_is_used_as_is),
      cmocka_unit_test(test_ensure_known_id_with_other_hash_is_updated),
      cmocka_unit_test(test_ensure_404_lists_pages_and_finds_by_name),
      cmocka_unit_test(test_ensure_without_match_creates),
      cmocka_unit_test(test_turn_streams_deltas_and_collects_the_answer),
      cmocka_unit_test(test_turn_without_deltas_calls_no_delta_callback),
      cmocka_unit_test(test_turn_stream_dropped_after_run_created_is_followed_by_polling),
      cmocka_unit_test(test_turn_silent_stream_times_out_and_is_followed_by_polling),
      cmocka_unit_test(test_turn_adopts_its_active_run_after_a_retried_create),
      cmocka_unit_test(test_turn_active_run_on_first_attempt_is_an_error),
      cmocka_unit_test(test_turn_400_on_create_is_not_retried_and_precise),
      cmocka_unit_test(test_turn_429_then_200_on_create),
      cmocka_unit_test(test_turn_reports_each_api_call_with_route_status_and_attempts),
      cmocka_unit_test(test_a_call_without_response_is_observed_with_status_0),
      cmocka_unit_test(test_turn_run_failed_reports_last_error),
      cmocka_unit_test(test_turn_error_event_ends_with_error),
      cmocka_unit_test(test_turn_requires_action_cancels_the_run),
      cmocka_unit_test(test_turn_answer_over_bound_is_etoobig),
      cmocka_unit_test(test_turn_cancel_from_delta_callback_stops_everything),
      cmocka_unit_test(test_turn_cancel_before_io_and_bad_input),
      cmocka_unit_test(test_turn_requires_action_reports_tool_calls_without_cancelling),
      cmocka_unit_test(test_turn_requires_action_without_callback_still_cancels),
      cmocka_unit_test(test_turn_requires_action_with_unreadable_calls_is_eparse_and_cancels),
      cmocka_unit_test(test_turn_cancel_from_requires_action_callback_calls_no_done),
      cmocka_unit_test(test_submit_tool_outputs_streams_the_continued_run_to_completion),
      cmocka_unit_test(test_submit_tool_outputs_400_is_not_retried_and_precise),
      cmocka_unit_test(test_function_calling_over_two_rounds),
      cmocka_unit_test(test_submit_stream_dropped_is_polled_and_keeps_only_this_rounds_messages),
      cmocka_unit_test(test_submit_400_on_a_retry_follows_the_run),
      cmocka_unit_test(test_submit_and_resume_reject_bad_arguments_before_io),
      cmocka_unit_test(test_resume_of_a_completed_run_collects_its_messages),
      cmocka_unit_test(test_resume_of_a_running_run_polls_until_terminal),
      cmocka_unit_test(test_resume_of_a_run_requiring_action_reports_its_calls),
      cmocka_unit_test(test_resume_of_an_unknown_run_is_a_404),
      cmocka_unit_test(test_find_message_pages_and_reports_the_run_that_followed),
      cmocka_unit_test(test_find_message_without_a_run_reports_no_run_id),
      cmocka_unit_test(test_find_message_finds_a_run_by_its_tag),
      cmocka_unit_test(test_find_message_not_found_is_enotfound),
      cmocka_unit_test(test_find_message_searches_a_bounded_number_of_pages),
      cmocka_unit_test(test_find_message_runs_list_failure_is_an_error_not_no_run),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

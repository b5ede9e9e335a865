/* test_backend_assistants.c -- the Assistants API backend behind the
 * backend port (backend.h) against a scripted in-process server and a fake
 * store: assistant ensure; turns (new conversation: thread created and
 * claimed, the lost claim race; streamed with deltas and a checkpoint;
 * dropped and followed by polling); recovery (by checkpoint, by the tagged
 * run, by the tagged message, nothing found -> fresh start); "no side
 * effect twice" (an ambiguous POST runs looks up its run instead of posting
 * again; an ambiguous submission is checked before it is sent again);
 * function calling (rounds, continue, tools not routed); cancel.  Needs:
 * loopback networking only (no simulator, no Redis).  Every test frees the
 * backend, runs the loop until its handles closed and checks
 * uv_loop_close; ASan checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api_json.h"
#include "backend.h"
#include "log.h"
#include "backend_fixture.h"

/* ---- simple results ------------------------------------------------------------ */

typedef struct sres {
  be_op *op;
  int done, ncalls, err, http_status;
  char id[64], errmsg[512], code[64];
} sres;

static void on_result(void *opaque, const be_result *r) {
  sres *s = opaque;
  uv_stop(bfx_loop);
  s->done = 1;
  s->ncalls++;
  s->err = r->err;
  s->http_status = r->http_status;
  snprintf(s->id, sizeof s->id, "%s", r->id ? r->id : "");
  snprintf(s->errmsg, sizeof s->errmsg, "%s", r->errmsg ? r->errmsg : "");
  snprintf(s->code, sizeof s->code, "%s", r->error_code ? r->error_code : "");
}

/* ---- assistant ensure ------------------------------------------------------------- */

static const be_assistant DEF = {.name = "bot", .model = "gpt-4o", .instructions = "Be brief.",
                                     .tools_json = "[{\"type\":\"file_search\"}]", .hash = "h2"};

static void test_ensure_known_id_with_same_hash_is_used_as_is(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/assistants/asst_1");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"asst_1\",\"metadata\":{\"aw_name\":\"bot\",\"aw_hash\":\"h2\"}}"});
  ss_route *upd = ss_route_add(&f->srv, "POST", "/v1/assistants/asst_1");
  ss_add_resp(upd, (ss_resp){.status = 200, .body = "{\"id\":\"asst_1\"}"});
  bfx_start(f);
  sres s = {0};
  assert_int_equal(be_assistant_ensure(f->be, &DEF, "asst_1", on_result, &s, &s.op), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "asst_1");
  assert_int_equal(ss_count(&f->srv, get), 1);
  assert_int_equal(ss_count(&f->srv, upd), 0);
  bfx_free(f);
}

static void test_ensure_known_id_with_other_hash_is_updated(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/assistants/asst_1");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"asst_1\",\"metadata\":{\"aw_name\":\"bot\",\"aw_hash\":\"h1\"}}"});
  ss_route *upd = ss_route_add(&f->srv, "POST", "/v1/assistants/asst_1");
  ss_add_resp(upd, (ss_resp){.status = 200, .body = "{\"id\":\"asst_1\"}"});
  bfx_start(f);
  sres s = {0};
  assert_int_equal(be_assistant_ensure(f->be, &DEF, "asst_1", on_result, &s, &s.op), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "asst_1");
  assert_int_equal(ss_count(&f->srv, upd), 1);
  bfx_expect_body(f, upd, "{\"name\":\"bot\",\"model\":\"gpt-4o\",\"instructions\":\"Be brief.\","
                         "\"tool_resources\":{\"file_search\":{\"vector_store_ids\":[]}},"
                         "\"tools\":[{\"type\":\"file_search\"}],\"metadata\":{\"aw_name\":\"bot\",\"aw_hash\":\"h2\"}}");
  bfx_free(f);
}

static void test_ensure_404_lists_pages_and_finds_by_name(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/assistants/asst_gone");
  ss_add_resp(get, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No assistant\",\"type\":\"invalid_request_error\"}}"});
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/assistants");
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[{\"id\":\"asst_x\",\"metadata\":{\"aw_name\":\"other\"}}],\"has_more\":true}"});
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[{\"id\":\"asst_2\",\"metadata\":{\"aw_name\":\"bot\",\"aw_hash\":\"h2\"}}],\"has_more\":false}"});
  bfx_start(f);
  sres s = {0};
  assert_int_equal(be_assistant_ensure(f->be, &DEF, "asst_gone", on_result, &s, &s.op), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "asst_2");
  assert_int_equal(ss_count(&f->srv, list), 2);
  char *q = ss_last_query(&f->srv, list);
  assert_non_null(strstr(q, "after=asst_x"));
  assert_non_null(strstr(q, "limit=100"));
  free(q);
  bfx_free(f);
}

static void test_ensure_without_match_creates(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/assistants");
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[],\"has_more\":false}"});
  ss_route *cr = ss_route_add(&f->srv, "POST", "/v1/assistants");
  ss_add_resp(cr, (ss_resp){.status = 200, .body = "{\"id\":\"asst_new\"}"});
  bfx_start(f);
  sres s = {0};
  assert_int_equal(be_assistant_ensure(f->be, &DEF, NULL, on_result, &s, &s.op), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_string_equal(s.id, "asst_new");
  assert_int_equal(ss_count(&f->srv, cr), 1);
  be_assistant bad = DEF;
  bad.tools_json = "{not json";
  assert_int_equal(be_assistant_ensure(f->be, &bad, NULL, on_result, &s, &s.op), AW_EINVAL);
  bfx_free(f);
}

/* Synced vector stores: a file_search tool (added when the tools have none)
 * and tool_resources.file_search.vector_store_ids, as the spec's
 * CreateAssistantRequest has them. */
static void test_ensure_with_vector_stores_creates_with_file_search_and_tool_resources(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/assistants");
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[],\"has_more\":false}"});
  ss_route *cr = ss_route_add(&f->srv, "POST", "/v1/assistants");
  ss_add_resp(cr, (ss_resp){.status = 200, .body = "{\"id\":\"asst_new\"}"});
  bfx_start(f);
  static const char *const ids[] = {"vs_1"};
  be_assistant def = DEF;
  def.tools_json = NULL;
  def.vector_store_ids = ids;
  def.nvector_store_ids = 1;
  sres s = {0};
  assert_int_equal(be_assistant_ensure(f->be, &def, NULL, on_result, &s, &s.op), AW_OK);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  bfx_expect_body(f, cr, "{\"name\":\"bot\",\"model\":\"gpt-4o\",\"instructions\":\"Be brief.\","
                         "\"tool_resources\":{\"file_search\":{\"vector_store_ids\":[\"vs_1\"]}},"
                         "\"tools\":[{\"type\":\"file_search\"}],\"metadata\":{\"aw_name\":\"bot\",\"aw_hash\":\"h2\"}}");
  bfx_free(f);
}

static void test_assistant_body_keeps_one_file_search_tool(void **state) {
  (void)state;
  static const char *const ids[] = {"vs_1"};
  char *b = NULL;
  assert_int_equal(api_json_assistant_body("bot", "m", NULL, "[{\"type\":\"file_search\"}]", ids, 1, "h", &b), AW_OK);
  assert_string_equal(b, "{\"name\":\"bot\",\"model\":\"m\",\"tool_resources\":{\"file_search\":"
                         "{\"vector_store_ids\":[\"vs_1\"]}},\"tools\":[{\"type\":\"file_search\"}],"
                         "\"metadata\":{\"aw_name\":\"bot\",\"aw_hash\":\"h\"}}");
  cJSON_free(b);
  /* without stores or tools: both said to be empty, so that the update of
   * an assistant an earlier definition gave stores and tools clears them */
  assert_int_equal(api_json_assistant_body("bot", "m", NULL, NULL, NULL, 0, "h", &b), AW_OK);
  assert_string_equal(b, "{\"name\":\"bot\",\"model\":\"m\",\"tool_resources\":{\"file_search\":"
                         "{\"vector_store_ids\":[]}},\"tools\":[],\"metadata\":{\"aw_name\":\"bot\",\"aw_hash\":\"h\"}}");
  cJSON_free(b);
}

/* ---- turns -------------------------------------------------------------------------- */

typedef struct tres {
  int done, ndone;
  int end, err, replayed, http_status;
  char status[32], error_code[64], errmsg[512], checkpoint[256], res_checkpoint[256];
  char h_kind[32], h_conv[64], h_turn[64];
  int ncheckpoints;
  char deltas[1024];
  size_t ndeltas;
  char text[1024];
  size_t nmessages, nparts, nann;
  char ann_type[32], ann_file[32];
  contract_usage usage;
  be_op *op;
  int cancel_on_delta, delta_seen;
  int ncalls;
  char call_id[3][32], call_name[3][32], call_args[3][128];
  int64_t expires_at_ms, started_ms;
} tres;

static void t_checkpoint(void *o, const char *cp, const be_handles *h) {
  tres *t = o;
  assert_non_null(h);
  assert_non_null(h->kind);
  t->ncheckpoints++;
  snprintf(t->checkpoint, sizeof t->checkpoint, "%s", cp);
}
static void t_delta(void *o, const char *text, size_t len) {
  tres *t = o;
  uv_stop(bfx_loop);
  if (t->ndeltas + len < sizeof t->deltas) {
    memcpy(t->deltas + t->ndeltas, text, len);
    t->ndeltas += len;
  }
  t->delta_seen = 1;
  if (t->cancel_on_delta) be_op_cancel(t->op);
}
static void t_done(void *o, const be_turn_result *r) {
  tres *t = o;
  uv_stop(bfx_loop);
  t->done = 1;
  t->ndone++;
  t->end = (int)r->end;
  t->err = r->err;
  t->replayed = r->replayed;
  t->http_status = r->http_status;
  t->expires_at_ms = r->expires_at_ms;
  t->started_ms = r->started_ms;
  snprintf(t->status, sizeof t->status, "%s", r->status ? r->status : "");
  snprintf(t->error_code, sizeof t->error_code, "%s", r->error_code ? r->error_code : "");
  snprintf(t->errmsg, sizeof t->errmsg, "%s", r->errmsg ? r->errmsg : "");
  snprintf(t->res_checkpoint, sizeof t->res_checkpoint, "%s", r->checkpoint ? r->checkpoint : "");
  snprintf(t->h_kind, sizeof t->h_kind, "%s", r->handles.kind ? r->handles.kind : "");
  snprintf(t->h_conv, sizeof t->h_conv, "%s", r->handles.conversation ? r->handles.conversation : "");
  snprintf(t->h_turn, sizeof t->h_turn, "%s", r->handles.turn ? r->handles.turn : "");
  t->ncalls = (int)r->ntool_calls;
  for (size_t i = 0; i < r->ntool_calls && i < 3; i++) {
    snprintf(t->call_id[i], sizeof t->call_id[i], "%s", r->tool_calls[i].id);
    snprintf(t->call_name[i], sizeof t->call_name[i], "%s", r->tool_calls[i].name);
    snprintf(t->call_args[i], sizeof t->call_args[i], "%s", r->tool_calls[i].arguments);
  }
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
      }
    }
  t->text[o2] = '\0';
}

static const be_turn_events EVENTS = {.on_checkpoint = t_checkpoint, .on_text_delta = t_delta,
                                      .on_done = t_done};

static const contract_part PART = {.type = CONTRACT_PART_TEXT, .text = "Hi there", .text_len = 8};
static const contract_kv MD[] = {{"user_key", "v1"}};
static const be_assistant ASST = {.id = "asst_1"};

static be_turn_input input(int want_deltas) {
  be_turn_input in = {.conversation_id = "c-42", .event_id = "ev-1", .handle = "thread_1",
                      .assistant = &ASST, .parts = &PART, .nparts = 1, .metadata = MD, .nmetadata = 1,
                      .want_deltas = want_deltas, .tools_routed = 1};
  return in;
}

#define RUN(id, st) "{\"id\":\"" id "\",\"object\":\"thread.run\",\"created_at\":1700000001,\"thread_id\":\"thread_1\",\"assistant_id\":\"asst_1\",\"status\":\"" st "\"}"
#define RUN_TAGGED(id, st, tag) "{\"id\":\"" id "\",\"object\":\"thread.run\",\"status\":\"" st "\",\"metadata\":{\"aw_tag\":\"" tag "\"}}"
#define RUN_DONE(id) "{\"id\":\"" id "\",\"object\":\"thread.run\",\"status\":\"completed\",\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":5,\"total_tokens\":15}}"
#define DELTA(v) "{\"id\":\"msg_a1\",\"object\":\"thread.message.delta\",\"delta\":{\"content\":[{\"index\":0,\"type\":\"text\",\"text\":{\"value\":\"" v "\"}}]}}"
#define ANSWER "Hello, world[1]"
#define MSG_A1 "{\"id\":\"msg_a1\",\"object\":\"thread.message\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":{\"value\":\"" ANSWER "\",\"annotations\":[{\"type\":\"file_citation\",\"text\":\"[1]\",\"file_citation\":{\"file_id\":\"file_1\"},\"start_index\":12,\"end_index\":15}]}}]}"
#define LIST(items) "{\"object\":\"list\",\"data\":[" items "],\"has_more\":false}"
#define ERR500 "{\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}"

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
  ss_route *threads, *runs, *get_run, *list_msgs, *list_runs, *cancel, *submit, *steps;
} turn_routes;

#define SUBMIT_PATH "/v1/threads/thread_1/runs/run_1/submit_tool_outputs"

static turn_routes add_turn_routes(bfx *f) {
  turn_routes t;
  t.threads = ss_route_add(&f->srv, "POST", "/v1/threads");
  t.runs = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/runs");
  t.get_run = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs/run_1");
  t.list_msgs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  t.list_runs = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs");
  t.cancel = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/runs/run_1/cancel");
  t.submit = ss_route_add(&f->srv, "POST", SUBMIT_PATH);
  t.steps = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/runs/run_1/steps");
  return t;
}

static void test_turn_streams_deltas_checkpoint_and_answer(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK, .ctype = "text/event-stream",
                                .mode = SS_CHUNKED, .chunk = 13});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  assert_int_equal(t.done, 0); /* never called back inside start */
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.ndone, 1);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.checkpoint, "a1 thread_1 run_1");
  assert_int_equal(t.ncheckpoints, 1);
  assert_string_equal(t.res_checkpoint, "a1 thread_1 run_1");
  assert_string_equal(t.h_kind, "assistants");
  assert_string_equal(t.h_conv, "thread_1");
  assert_string_equal(t.h_turn, "run_1");
  assert_int_equal(t.replayed, 0);
  assert_true(t.started_ms > 0);
  assert_string_equal(t.deltas, ANSWER);
  assert_string_equal(t.text, ANSWER);
  assert_int_equal(t.nmessages, 1);
  assert_int_equal(t.nann, 1);
  assert_string_equal(t.ann_file, "file_1");
  assert_int_equal(t.usage.total_tokens, 15);
  assert_int_equal(ss_count(&f->srv, r.runs), 1);
  assert_int_equal(ss_count(&f->srv, r.get_run), 0);
  assert_int_equal(ss_count(&f->srv, r.threads), 0); /* the handle was known */
  assert_int_equal(ss_count(&f->srv, r.list_runs), 0); /* not recovering: no lookup */
  bfx_expect_body(f, r.runs, "{\"assistant_id\":\"asst_1\",\"stream\":true,\"metadata\":{\"aw_tag\":\"ev-1\"},"
                         "\"additional_messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hi there\"}],"
                         "\"metadata\":{\"event_id\":\"ev-1\",\"conversation_id\":\"c-42\",\"user_key\":\"v1\"}}]}");
  pthread_mutex_lock(&f->srv.mu);
  assert_string_equal(r.runs->last_beta, "assistants=v2");
  assert_string_equal(r.runs->last_auth, "Bearer sk-test-secret");
  pthread_mutex_unlock(&f->srv.mu);
  bfx_free(f);
}

static void test_new_conversation_creates_and_claims_a_thread_then_runs_in_it(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.threads, (ss_resp){.status = 200, .body = "{\"id\":\"thread_1\",\"object\":\"thread\"}"});
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.handle = NULL;
  in.recover = 1; /* a fresh thread of ours holds nothing to recover: no lookup */
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.text, ANSWER);
  assert_string_equal(t.h_conv, "thread_1");
  assert_int_equal(f->store.claims, 1);
  assert_string_equal(f->store.key, "thread");
  assert_string_equal(f->store.conv, "c-42");
  assert_string_equal(f->store.handle, "thread_1");
  assert_int_equal(ss_count(&f->srv, r.list_runs), 0);
  bfx_expect_body(f, r.threads, "{\"metadata\":{\"conversation_id\":\"c-42\"}}");
  bfx_free(f);
}

static void test_lost_claim_race_deletes_our_thread_and_uses_the_winner(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.threads, (ss_resp){.status = 200, .body = "{\"id\":\"thread_mine\"}"});
  ss_route *del = ss_route_add(&f->srv, "DELETE", "/v1/threads/thread_mine");
  ss_add_resp(del, (ss_resp){.status = 200, .body = "{\"id\":\"thread_mine\",\"deleted\":true}"});
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK});
  snprintf(f->store.handle, sizeof f->store.handle, "thread_1"); /* another worker won */
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.handle = "";
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.h_conv, "thread_1");
  assert_string_equal(t.checkpoint, "a1 thread_1 run_1");
  assert_int_equal(ss_count(&f->srv, del), 1);
  assert_int_equal(ss_count(&f->srv, r.runs), 1);
  bfx_free(f);
}

static void test_store_failure_ends_with_a_retry_error_and_keeps_our_thread(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.threads, (ss_resp){.status = 200, .body = "{\"id\":\"thread_mine\"}"});
  f->store.fail = 1;
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.handle = NULL;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EREDIS);
  assert_int_equal(aw_error_classify(t.err), AW_CLASS_RETRY);
  assert_int_equal(ss_count(&f->srv, r.runs), 0);
  bfx_free(f); /* no DELETE route: unmatched would be counted */
}

static void test_turn_stream_dropped_after_run_created_is_followed_by_polling(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .mode = SS_DROP, .chunk = 5,
                                .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
                                        "event: thread.message.delta\ndata: " DELTA("Hel") "\n\n"});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN("run_1", "in_progress")});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = LIST(MSG_A1)});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, ANSWER);
  assert_string_equal(t.deltas, ANSWER); /* the missing rest came at the end */
  assert_int_equal(ss_count(&f->srv, r.runs), 1);
  assert_int_equal(ss_count(&f->srv, r.get_run), 2);
  bfx_free(f);
}

/* ---- recovery ----------------------------------------------------------------------- */

static void test_recover_by_checkpoint_replays_a_completed_run_without_deltas(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = LIST(MSG_A1)});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  in.recover = 1;
  in.checkpoint = "a1 thread_1 run_1";
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_int_equal(t.replayed, 1);
  assert_string_equal(t.text, ANSWER);
  assert_int_equal(t.ndeltas, 0);
  assert_int_equal(t.ncheckpoints, 0); /* nothing new */
  assert_string_equal(t.res_checkpoint, "a1 thread_1 run_1");
  assert_int_equal(ss_count(&f->srv, r.runs), 0);
  char *q = ss_last_query(&f->srv, r.list_msgs);
  assert_non_null(strstr(q, "run_id=run_1"));
  free(q);
  bfx_free(f);
}

static void test_recover_by_checkpoint_of_a_waiting_run_reports_its_tool_calls(void **state);

static void test_recover_without_checkpoint_finds_the_tagged_run(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.list_runs, (ss_resp){.status = 200, .body = LIST(RUN_TAGGED("run_0", "completed", "ev-0") ","
                                                                 RUN_TAGGED("run_1", "in_progress", "ev-1"))});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN("run_1", "in_progress")});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = LIST(MSG_A1)});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  in.recover = 1;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_int_equal(t.replayed, 1);
  assert_string_equal(t.text, ANSWER);
  assert_string_equal(t.checkpoint, "a1 thread_1 run_1"); /* learnt: recorded */
  assert_int_equal(ss_count(&f->srv, r.runs), 0);
  assert_int_equal(ss_count(&f->srv, r.list_runs), 1);
  bfx_free(f);
}

static void test_recover_finding_nothing_starts_afresh(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.list_runs, (ss_resp){.status = 200, .body = LIST(RUN_TAGGED("run_0", "completed", "ev-0"))});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = LIST("{\"id\":\"msg_u0\",\"role\":\"user\",\"metadata\":{\"event_id\":\"ev-0\"}}")});
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  in.recover = 1;
  in.checkpoint = "r1 conv_x resp_y"; /* another backend's: ignored */
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(t.replayed, 0);
  assert_string_equal(t.deltas, ANSWER);
  assert_int_equal(ss_count(&f->srv, r.list_runs), 1);
  assert_int_equal(ss_count(&f->srv, r.list_msgs), 1);
  assert_int_equal(ss_count(&f->srv, r.runs), 1);
  char *b = ss_last_body(&f->srv, r.runs);
  assert_non_null(strstr(b, "\"additional_messages\""));
  free(b);
  bfx_free(f);
}

static void test_recover_finds_the_tagged_message_and_starts_only_its_run(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.list_runs, (ss_resp){.status = 200, .body = LIST("")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = LIST("{\"id\":\"msg_u1\",\"role\":\"user\",\"metadata\":{\"event_id\":\"ev-1\"}}")});
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.recover = 1;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.text, ANSWER);
  assert_int_equal(ss_count(&f->srv, r.list_runs), 2); /* by tag, then by the message */
  assert_int_equal(ss_count(&f->srv, r.runs), 1);
  bfx_expect_body(f, r.runs, "{\"assistant_id\":\"asst_1\",\"stream\":true,"
                         "\"metadata\":{\"aw_tag\":\"ev-1\",\"aw_message_id\":\"msg_u1\"}}");
  bfx_free(f);
}

static void test_recover_lookup_failure_is_an_error_not_a_fresh_start(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.list_runs, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No thread\",\"type\":\"invalid_request_error\"}}"});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.recover = 1;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EHTTP4XX);
  assert_string_equal(t.error_code, "invalid_request_error");
  assert_int_equal(ss_count(&f->srv, r.runs), 0);
  bfx_free(f);
}

/* ---- no side effect twice ----------------------------------------------------------- */

static void test_ambiguous_500_on_post_runs_looks_up_the_tagged_run_instead_of_posting_again(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 500, .body = ERR500});
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK}); /* must never be reached */
  ss_add_resp(r.list_runs, (ss_resp){.status = 200, .body = LIST("")}); /* not listed yet */
  ss_add_resp(r.list_runs, (ss_resp){.status = 200, .body = LIST(RUN_TAGGED("run_1", "queued", "ev-1"))});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = LIST(MSG_A1)});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, ANSWER);
  assert_string_equal(t.deltas, ANSWER); /* delivered whole at the end */
  assert_int_equal(t.replayed, 0);
  assert_string_equal(t.checkpoint, "a1 thread_1 run_1");
  assert_int_equal(ss_count(&f->srv, r.runs), 1); /* exactly one POST runs */
  assert_int_equal(ss_count(&f->srv, r.list_runs), 2);
  bfx_free(f);
}

/* A 5xx on POST runs may have created the run: the tagged run is looked for
 * (4 looks); certainly absent, the run is created again -- at most 3 POSTs,
 * then the ambiguous outcome stands. */
static void test_ambiguous_post_runs_without_a_tagged_run_posts_again_only_after_lookups_bounded(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 503, .body = ""});
  ss_add_resp(r.list_runs, (ss_resp){.status = 200, .body = LIST(RUN_TAGGED("run_0", "completed", "ev-0"))});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EAMBIGUOUS);
  assert_int_equal(aw_error_classify(t.err), AW_CLASS_RETRY);
  assert_string_equal(t.error_code, "api_unavailable"); /* the API gave none */
  assert_int_equal(t.http_status, 503);
  assert_int_equal(ss_count(&f->srv, r.runs), 3);
  assert_int_equal(ss_count(&f->srv, r.list_runs), 12);
  bfx_free(f);
}

static void test_ambiguous_post_runs_then_absent_run_is_created_once_more_and_answers(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 500, .body = ""});
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK});
  ss_add_resp(r.list_runs, (ss_resp){.status = 200, .body = LIST(RUN_TAGGED("run_0", "completed", "ev-0"))});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_int_equal(ss_count(&f->srv, r.list_runs), 4); /* looked before creating again */
  assert_int_equal(ss_count(&f->srv, r.runs), 2);
  bfx_free(f);
}

static void test_429_on_post_runs_is_retried_it_was_not_applied(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 429, .body = "{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_error\"}}",
                                .hname = "Retry-After", .hval = "0"});
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(ss_count(&f->srv, r.runs), 2);
  assert_int_equal(ss_count(&f->srv, r.list_runs), 0);
  bfx_free(f);
}

static void test_400_on_post_runs_is_a_reject_with_a_precise_message(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Thread thread_1 already has an active run run_0.\",\"type\":\"invalid_request_error\"}}"});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EHTTP4XX);
  assert_int_equal(aw_error_classify(t.err), AW_CLASS_REJECT);
  assert_string_equal(t.errmsg, "POST /v1/threads/thread_1/runs: HTTP 400 invalid_request_error: "
                                "Thread thread_1 already has an active run run_0.");
  assert_int_equal(ss_count(&f->srv, r.runs), 1);
  bfx_free(f);
}

static void test_turn_run_failed_is_an_answer_with_its_last_error(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .mode = SS_CHUNKED, .chunk = 17,
      .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
              "event: thread.run.failed\ndata: {\"id\":\"run_1\",\"status\":\"failed\",\"last_error\":{\"code\":\"rate_limit_exceeded\",\"message\":\"quota\"}}\n\n"
              "event: done\ndata: [DONE]\n\n"});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "failed");
  assert_string_equal(t.error_code, "rate_limit_exceeded");
  assert_string_equal(t.errmsg, "quota");
  bfx_free(f);
}

static void test_turn_answer_over_bound_is_etoobig_answer_too_large(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  f->cfg.max_answer_bytes = 8;
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_OK});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_ETOOBIG);
  assert_string_equal(t.error_code, "answer_too_large");
  bfx_free(f);
}

static void test_turn_cancel_from_delta_callback_stops_everything(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .mode = SS_HANG,
      .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
              "event: thread.message.delta\ndata: " DELTA("Hel") "\n\n"});
  bfx_start(f);
  tres t = {0};
  t.cancel_on_delta = 1;
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.delta_seen);
  assert_string_equal(t.deltas, "Hel");
  uv_run(&f->loop, UV_RUN_NOWAIT);
  bfx_free(f);
  assert_int_equal(t.ndone, 0);
}

static void test_bad_input_is_einval_before_any_io(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  bfx_start(f);
  tres t = {0};
  be_op *op = NULL;
  be_turn_input in = input(0);
  in.handle = "thread/../x";
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &op), AW_EINVAL);
  in = input(0);
  in.event_id = "";
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &op), AW_EINVAL);
  in = input(0);
  in.assistant = &(be_assistant){.name = "bot"}; /* no asst_ id */
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &op), AW_EINVAL);
  in = input(0);
  in.checkpoint = "garbage";
  be_tool_output o = {"call_1", "x"};
  assert_int_equal(be_turn_continue(f->be, &in, 1, &o, 1, &EVENTS, &t, &op), AW_EINVAL);
  assert_int_equal(be_turn_cancel(f->be, &in, &EVENTS, &t, &op), AW_EINVAL);
  in.checkpoint = "a1 thread_1 run/x";
  assert_int_equal(be_turn_cancel(f->be, &in, &EVENTS, &t, &op), AW_EINVAL);
  assert_null(op);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  bfx_free(f);
  assert_int_equal(t.ndone, 0);
}

/* ---- function calling ------------------------------------------------------------- */

#define CALL1 "{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}"
#define CALL2 "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}"
#define CALL3 "{\"id\":\"call_3\",\"type\":\"function\",\"function\":{\"name\":\"get_date\",\"arguments\":\"\"}}"
#define RUN_RA_EXP(id, calls, exp) "{\"id\":\"" id "\",\"object\":\"thread.run\",\"status\":\"requires_action\",\"assistant_id\":\"asst_1\",\"expires_at\":" exp ",\"required_action\":{\"type\":\"submit_tool_outputs\",\"submit_tool_outputs\":{\"tool_calls\":[" calls "]}}}"
#define RUN_RA(id, calls) RUN_RA_EXP(id, calls, "1700000600")
#define MSG_TEXT(id, v) "{\"id\":\"" id "\",\"object\":\"thread.message\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":{\"value\":\"" v "\",\"annotations\":[]}}]}"
#define MSG_A0 MSG_TEXT("msg_a0", "Let me check.")
#define MSG_A2 MSG_TEXT("msg_a2", "It is 21C.")

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

#define STEPS_ROUND                                                                                      \
  "{\"object\":\"list\",\"data\":["                                                                      \
  "{\"id\":\"step_3\",\"type\":\"message_creation\",\"step_details\":{\"type\":\"message_creation\",\"message_creation\":{\"message_id\":\"msg_a2\"}}}," \
  "{\"id\":\"step_2\",\"type\":\"tool_calls\",\"step_details\":{\"type\":\"tool_calls\",\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\"}]}}," \
  "{\"id\":\"step_1\",\"type\":\"message_creation\",\"step_details\":{\"type\":\"message_creation\",\"message_creation\":{\"message_id\":\"msg_a0\"}}}" \
  "],\"has_more\":false}"

static const be_tool_output OUT1[] = {{"call_1", "{\"temp\":21}"}, {"call_2", "12:00"}};

static void test_tool_calls_end_the_turn_then_continue_streams_to_the_answer(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_RA, .mode = SS_CHUNKED, .chunk = 11});
  ss_add_resp(r.submit, (ss_resp){.status = 200, .mode = SS_CHUNKED, .chunk = 23,
      .body = "event: thread.run.queued\ndata: " RUN("run_1", "queued") "\n\n"
              "event: thread.run.requires_action\ndata: " RUN_RA("run_1", CALL3) "\n\n"
              "event: done\ndata: [DONE]\n\n"});
  ss_add_resp(r.submit, (ss_resp){.status = 200, .body = STREAM_SUBMIT_OK});
  bfx_start(f);
  tres t1 = {0}, t2 = {0}, t3 = {0};
  be_turn_input in = input(1);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t1, &t1.op), AW_OK);
  ss_run_until(&f->loop, &t1.done);
  assert_int_equal(t1.end, BE_END_TOOL_CALLS);
  assert_int_equal(t1.err, AW_OK);
  assert_int_equal(t1.ncalls, 2);
  assert_string_equal(t1.call_id[0], "call_1");
  assert_string_equal(t1.call_name[0], "get_weather");
  assert_string_equal(t1.call_args[0], "{\"city\":\"Paris\"}");
  assert_string_equal(t1.call_name[1], "get_time");
  assert_true(t1.expires_at_ms == INT64_C(1700000600000));
  assert_string_equal(t1.res_checkpoint, "a1 thread_1 run_1");
  assert_string_equal(t1.text, "Let me check."); /* written before the calls */
  assert_int_equal(ss_count(&f->srv, r.cancel), 0); /* the run waits */

  in.checkpoint = t1.res_checkpoint;
  assert_int_equal(be_turn_continue(f->be, &in, 1, OUT1, 2, &EVENTS, &t2, &t2.op), AW_OK);
  ss_run_until(&f->loop, &t2.done);
  assert_int_equal(t2.end, BE_END_TOOL_CALLS);
  assert_int_equal(t2.ncalls, 1);
  assert_string_equal(t2.call_id[0], "call_3");
  assert_string_equal(t2.call_args[0], "");
  assert_int_equal(t2.nmessages, 0);
  bfx_expect_body(f, r.submit, "{\"tool_outputs\":[{\"tool_call_id\":\"call_1\",\"output\":\"{\\\"temp\\\":21}\"},"
                         "{\"tool_call_id\":\"call_2\",\"output\":\"12:00\"}],\"stream\":true}");

  be_tool_output out3 = {"call_3", "2024-01-01"};
  assert_int_equal(be_turn_continue(f->be, &in, 2, &out3, 1, &EVENTS, &t3, &t3.op), AW_OK);
  ss_run_until(&f->loop, &t3.done);
  assert_int_equal(t3.end, BE_END_ANSWER);
  assert_string_equal(t3.status, "completed");
  assert_string_equal(t3.text, "It is 21C.");
  assert_string_equal(t3.deltas, "It is 21C.");
  assert_string_equal(t3.h_turn, "run_1");
  assert_int_equal(ss_count(&f->srv, r.submit), 2);
  assert_int_equal(ss_count(&f->srv, r.runs), 1);
  bfx_free(f);
}

static void test_expires_at_beyond_int64_ms_is_clamped_not_wrapped(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200,
      .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
              "event: thread.run.requires_action\ndata: " RUN_RA_EXP("run_1", CALL1, "8.9e18") "\n\n"
              "event: done\ndata: [DONE]\n\n"});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_TOOL_CALLS);
  assert_true(t.expires_at_ms > 0);
  assert_true(t.expires_at_ms == INT64_MAX / 1000 * 1000);
  bfx_free(f);
}

static void test_tool_calls_not_routed_cancel_the_run_and_answer_cancelled(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_RA});
  ss_add_resp(r.cancel, (ss_resp){.status = 200, .body = RUN("run_1", "cancelling")});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.tools_routed = 0;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "cancelled");
  assert_string_equal(t.error_code, "tool_calls_unsupported");
  assert_int_equal(ss_count(&f->srv, r.cancel), 1);
  bfx_free(f);
}

static void test_unreadable_tool_calls_cancel_the_run_and_end_eparse(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200,
      .body = "event: thread.run.created\ndata: " RUN("run_1", "queued") "\n\n"
              "event: thread.run.requires_action\ndata: " RUN("run_1", "requires_action") "\n\n"
              "event: done\ndata: [DONE]\n\n"});
  ss_add_resp(r.cancel, (ss_resp){.status = 200, .body = RUN("run_1", "cancelling")});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EPARSE);
  assert_string_equal(t.error_code, "invalid_required_action");
  assert_int_equal(ss_count(&f->srv, r.cancel), 1);
  bfx_free(f);
}

static void test_recover_by_checkpoint_of_a_waiting_run_reports_its_tool_calls(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_RA("run_1", CALL1)});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = LIST(MSG_A0)});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  in.recover = 1;
  in.checkpoint = "a1 thread_1 run_1";
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_TOOL_CALLS);
  assert_int_equal(t.replayed, 1);
  assert_int_equal(t.ncalls, 1);
  assert_string_equal(t.call_id[0], "call_1");
  assert_string_equal(t.text, "Let me check.");
  assert_int_equal(ss_count(&f->srv, r.runs), 0);
  bfx_free(f);
}

static void test_continue_after_an_ambiguous_failure_does_not_submit_twice(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.submit, (ss_resp){.status = 500, .body = ERR500});
  ss_add_resp(r.submit, (ss_resp){.status = 200, .body = STREAM_SUBMIT_OK}); /* must not be reached */
  /* The run took the outputs: it no longer waits for call_1. */
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN("run_1", "in_progress")});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(r.steps, (ss_resp){.status = 200, .body = STEPS_ROUND});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = LIST(MSG_A0 "," MSG_A2)});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  in.checkpoint = "a1 thread_1 run_1";
  assert_int_equal(be_turn_continue(f->be, &in, 1, OUT1, 2, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, "It is 21C."); /* this round's only */
  assert_string_equal(t.deltas, "It is 21C.");
  assert_int_equal(ss_count(&f->srv, r.submit), 1); /* exactly one submission */
  assert_int_equal(ss_count(&f->srv, r.get_run), 2);
  bfx_free(f);
}

static void test_continue_submits_again_when_the_run_still_waits_for_the_same_calls(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.submit, (ss_resp){.status = 502, .body = ERR500});
  ss_add_resp(r.submit, (ss_resp){.status = 200, .body = STREAM_SUBMIT_OK});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_RA("run_1", CALL1 "," CALL2)});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.checkpoint = "a1 thread_1 run_1";
  assert_int_equal(be_turn_continue(f->be, &in, 1, OUT1, 2, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, "It is 21C.");
  assert_int_equal(ss_count(&f->srv, r.submit), 2); /* certainly not taken: sent again */
  assert_int_equal(ss_count(&f->srv, r.get_run), 1);
  bfx_free(f);
}

static void test_continue_4xx_on_an_expired_run_ends_with_its_real_outcome(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.submit, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Runs in status \\\"expired\\\" do not accept tool outputs.\",\"type\":\"invalid_request_error\"}}"});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = "{\"id\":\"run_1\",\"status\":\"expired\"}"});
  ss_add_resp(r.steps, (ss_resp){.status = 200, .body = LIST("")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = LIST(MSG_A0)});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.checkpoint = "a1 thread_1 run_1";
  assert_int_equal(be_turn_continue(f->be, &in, 1, OUT1, 1, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "expired");
  assert_int_equal(ss_count(&f->srv, r.submit), 1);
  bfx_free(f);
}

static void test_continue_4xx_while_the_run_still_waits_is_a_reject(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.submit, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Missing tool output for call_2.\",\"type\":\"invalid_request_error\"}}"});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_RA("run_1", CALL1 "," CALL2)});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.checkpoint = "a1 thread_1 run_1";
  assert_int_equal(be_turn_continue(f->be, &in, 1, OUT1, 1, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EHTTP4XX);
  assert_non_null(strstr(t.errmsg, "Missing tool output for call_2."));
  assert_int_equal(ss_count(&f->srv, r.submit), 1);
  bfx_free(f);
}

/* ---- cancel ------------------------------------------------------------------------- */

static void test_cancel_follows_the_run_to_cancelled(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.cancel, (ss_resp){.status = 200, .body = RUN("run_1", "cancelling")});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN("run_1", "cancelling")});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN("run_1", "cancelled")});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(1);
  in.checkpoint = "a1 thread_1 run_1";
  assert_int_equal(be_turn_cancel(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "cancelled");
  assert_int_equal(t.nmessages, 0);
  assert_int_equal(ss_count(&f->srv, r.cancel), 1);
  assert_int_equal(ss_count(&f->srv, r.get_run), 2);
  assert_int_equal(ss_count(&f->srv, r.list_msgs), 0);
  bfx_free(f);
}

static void test_cancel_of_a_run_that_already_ended_just_retrieves_it(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.cancel, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Cannot cancel run with status 'expired'.\",\"type\":\"invalid_request_error\"}}"});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = "{\"id\":\"run_1\",\"status\":\"expired\"}"});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.checkpoint = "a1 thread_1 run_1";
  assert_int_equal(be_turn_cancel(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "expired");
  bfx_free(f);
}

/* The run completed before the cancel reached it (the API refuses to
 * cancel it): the answer is the run's, with its messages, not an empty
 * completed answer. */
static void test_cancel_of_a_run_that_completed_first_answers_with_its_messages(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.cancel, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Cannot cancel run with status 'completed'.\",\"type\":\"invalid_request_error\"}}"});
  ss_add_resp(r.get_run, (ss_resp){.status = 200, .body = RUN_DONE("run_1")});
  ss_add_resp(r.list_msgs, (ss_resp){.status = 200, .body = LIST(MSG_A1)});
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.checkpoint = "a1 thread_1 run_1";
  assert_int_equal(be_turn_cancel(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_int_equal(t.err, AW_OK);
  assert_string_equal(t.status, "completed");
  assert_int_equal(t.nmessages, 1);
  assert_string_equal(t.text, ANSWER);
  assert_int_equal(ss_count(&f->srv, r.list_msgs), 1);
  bfx_free(f);
}

static void test_cancel_while_claiming_frees_the_turn_when_the_store_answers(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.threads, (ss_resp){.status = 200, .body = "{\"id\":\"thread_1\"}"});
  f->store.hold = 1;
  bfx_start(f);
  tres t = {0};
  be_turn_input in = input(0);
  in.handle = NULL;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t, &t.op), AW_OK);
  while (f->store.claims == 0) uv_run(&f->loop, UV_RUN_ONCE);
  be_op_cancel(t.op); /* the store holds our callback: freed when it answers */
  bfx_store_release(&f->store);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(f->store.answered, 1);
  assert_int_equal(ss_count(&f->srv, r.runs), 0);
  bfx_free(f);
  assert_int_equal(t.ndone, 0);
}

static void test_tool_choice_goes_on_run_creation_not_on_submissions(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  turn_routes r = add_turn_routes(f);
  ss_add_resp(r.runs, (ss_resp){.status = 200, .body = STREAM_RA, .mode = SS_CHUNKED, .chunk = 11});
  ss_add_resp(r.submit, (ss_resp){.status = 200, .body = STREAM_SUBMIT_OK});
  bfx_start(f);
  be_assistant forced = {.id = "asst_1",
                         .tool_choice_json = "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}"};
  tres t1 = {0}, t2 = {0};
  be_turn_input in = input(1);
  in.assistant = &forced;
  assert_int_equal(be_turn_start(f->be, &in, &EVENTS, &t1, &t1.op), AW_OK);
  ss_run_until(&f->loop, &t1.done);
  assert_int_equal(t1.end, BE_END_TOOL_CALLS);
  char *b = ss_last_body(&f->srv, r.runs);
  /* the Assistants shape, as configured: the run's tool_choice (for the whole run) */
  assert_non_null(strstr(b, "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}"));
  free(b);
  in.checkpoint = t1.res_checkpoint;
  assert_int_equal(be_turn_continue(f->be, &in, 1, OUT1, 2, &EVENTS, &t2, &t2.op), AW_OK);
  ss_run_until(&f->loop, &t2.done);
  b = ss_last_body(&f->srv, r.submit);
  assert_null(strstr(b, "tool_choice")); /* submit_tool_outputs takes none */
  free(b);
  /* not JSON: refused before any I/O */
  be_assistant bad = {.id = "asst_1", .tool_choice_json = "{nope"};
  tres t3 = {0};
  be_turn_input in3 = input(1);
  in3.assistant = &bad;
  assert_int_equal(be_turn_start(f->be, &in3, &EVENTS, &t3, &t3.op), AW_EINVAL);
  bfx_free(f);
}

int main(void) {
  log_set_level(LOG_ERROR); /* recovery paths log at info and warn on purpose */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ensure_known_id_with_same_hash_is_used_as_is),
      cmocka_unit_test(test_ensure_known_id_with_other_hash_is_updated),
      cmocka_unit_test(test_ensure_404_lists_pages_and_finds_by_name),
      cmocka_unit_test(test_ensure_without_match_creates),
      cmocka_unit_test(test_ensure_with_vector_stores_creates_with_file_search_and_tool_resources),
      cmocka_unit_test(test_assistant_body_keeps_one_file_search_tool),
      cmocka_unit_test(test_turn_streams_deltas_checkpoint_and_answer),
      cmocka_unit_test(test_new_conversation_creates_and_claims_a_thread_then_runs_in_it),
      cmocka_unit_test(test_lost_claim_race_deletes_our_thread_and_uses_the_winner),
      cmocka_unit_test(test_store_failure_ends_with_a_retry_error_and_keeps_our_thread),
      cmocka_unit_test(test_turn_stream_dropped_after_run_created_is_followed_by_polling),
      cmocka_unit_test(test_recover_by_checkpoint_replays_a_completed_run_without_deltas),
      cmocka_unit_test(test_recover_by_checkpoint_of_a_waiting_run_reports_its_tool_calls),
      cmocka_unit_test(test_recover_without_checkpoint_finds_the_tagged_run),
      cmocka_unit_test(test_recover_finding_nothing_starts_afresh),
      cmocka_unit_test(test_recover_finds_the_tagged_message_and_starts_only_its_run),
      cmocka_unit_test(test_recover_lookup_failure_is_an_error_not_a_fresh_start),
      cmocka_unit_test(test_ambiguous_500_on_post_runs_looks_up_the_tagged_run_instead_of_posting_again),
      cmocka_unit_test(test_ambiguous_post_runs_without_a_tagged_run_posts_again_only_after_lookups_bounded),
      cmocka_unit_test(test_ambiguous_post_runs_then_absent_run_is_created_once_more_and_answers),
      cmocka_unit_test(test_429_on_post_runs_is_retried_it_was_not_applied),
      cmocka_unit_test(test_400_on_post_runs_is_a_reject_with_a_precise_message),
      cmocka_unit_test(test_turn_run_failed_is_an_answer_with_its_last_error),
      cmocka_unit_test(test_turn_answer_over_bound_is_etoobig_answer_too_large),
      cmocka_unit_test(test_turn_cancel_from_delta_callback_stops_everything),
      cmocka_unit_test(test_bad_input_is_einval_before_any_io),
      cmocka_unit_test(test_tool_calls_end_the_turn_then_continue_streams_to_the_answer),
      cmocka_unit_test(test_tool_choice_goes_on_run_creation_not_on_submissions),
      cmocka_unit_test(test_expires_at_beyond_int64_ms_is_clamped_not_wrapped),
      cmocka_unit_test(test_tool_calls_not_routed_cancel_the_run_and_answer_cancelled),
      cmocka_unit_test(test_unreadable_tool_calls_cancel_the_run_and_end_eparse),
      cmocka_unit_test(test_continue_after_an_ambiguous_failure_does_not_submit_twice),
      cmocka_unit_test(test_continue_submits_again_when_the_run_still_waits_for_the_same_calls),
      cmocka_unit_test(test_continue_4xx_on_an_expired_run_ends_with_its_real_outcome),
      cmocka_unit_test(test_continue_4xx_while_the_run_still_waits_is_a_reject),
      cmocka_unit_test(test_cancel_follows_the_run_to_cancelled),
      cmocka_unit_test(test_cancel_of_a_run_that_already_ended_just_retrieves_it),
      cmocka_unit_test(test_cancel_of_a_run_that_completed_first_answers_with_its_messages),
      cmocka_unit_test(test_cancel_while_claiming_frees_the_turn_when_the_store_answers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

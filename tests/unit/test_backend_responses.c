/* test_backend_responses.c -- the Responses + Conversations backend
 * (backend.h, common/backend/responses/) against a scripted in-process
 * server: streamed turns (OpenAI-style and OGX-style data-only SSE),
 * conversation handles (created, claimed, claim lost), function calls and
 * their continuation, a dropped stream resumed after the last sequence
 * number, ambiguous POST failures resolved through the conversation's
 * items, recovery from a checkpoint, cancellation, and the mapping of
 * failed / incomplete / error endings.  Also the pure stream mapper.
 * Needs: loopback networking only (no simulator).  Every test frees the
 * backend, runs the loop until its handles closed and checks
 * uv_loop_close; ASan checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backend.h"
#include "log.h"
#include "mp_fixture.h"
#include "rsp_int.h"
#include "backend_fixture.h"

/* ---- turn results ---------------------------------------------------------------------- */

typedef struct tres {
  int done, ndone;
  be_end end;
  int err, replayed;
  char status[32], error_code[64], errmsg[512];
  char deltas[1024];
  size_t ndeltas;
  int ncheckpoints, delta_before_checkpoint;
  char checkpoint[BE_CHECKPOINT_MAX], res_checkpoint[BE_CHECKPOINT_MAX];
  char text[1024];
  size_t nmessages;
  contract_usage usage;
  int ncalls;
  char call_id[3][32], call_name[3][32], call_args[3][128];
  char h_kind[16], h_conv[64], h_turn[64];
} tres;

static void t_checkpoint(void *o, const char *cp, const be_handles *h) {
  tres *t = o;
  assert_non_null(h);
  assert_non_null(h->kind);
  uv_stop(bfx_loop);
  t->ncheckpoints++;
  snprintf(t->checkpoint, sizeof t->checkpoint, "%s", cp);
}

static void t_delta(void *o, const char *text, size_t len) {
  tres *t = o;
  if (!t->ncheckpoints) t->delta_before_checkpoint = 1;
  if (t->ndeltas + len < sizeof t->deltas) {
    memcpy(t->deltas + t->ndeltas, text, len);
    t->ndeltas += len;
  }
}

static void t_done(void *o, const be_turn_result *r) {
  tres *t = o;
  uv_stop(bfx_loop);
  t->done = 1;
  t->ndone++;
  t->end = r->end;
  t->err = r->err;
  t->replayed = r->replayed;
  snprintf(t->status, sizeof t->status, "%s", r->status ? r->status : "");
  snprintf(t->error_code, sizeof t->error_code, "%s", r->error_code ? r->error_code : "");
  snprintf(t->errmsg, sizeof t->errmsg, "%s", r->errmsg ? r->errmsg : "");
  snprintf(t->res_checkpoint, sizeof t->res_checkpoint, "%s", r->checkpoint ? r->checkpoint : "");
  t->nmessages = r->nmessages;
  t->text[0] = '\0';
  for (size_t i = 0; i < r->nmessages; i++)
    for (size_t j = 0; j < r->messages[i].nparts; j++)
      strncat(t->text, r->messages[i].parts[j].text, sizeof t->text - strlen(t->text) - 1);
  t->usage = r->usage;
  t->ncalls = (int)r->ntool_calls;
  for (size_t i = 0; i < r->ntool_calls && i < 3; i++) {
    snprintf(t->call_id[i], sizeof t->call_id[i], "%s", r->tool_calls[i].id);
    snprintf(t->call_name[i], sizeof t->call_name[i], "%s", r->tool_calls[i].name);
    snprintf(t->call_args[i], sizeof t->call_args[i], "%s", r->tool_calls[i].arguments);
  }
  snprintf(t->h_kind, sizeof t->h_kind, "%s", r->handles.kind ? r->handles.kind : "");
  snprintf(t->h_conv, sizeof t->h_conv, "%s", r->handles.conversation ? r->handles.conversation : "");
  snprintf(t->h_turn, sizeof t->h_turn, "%s", r->handles.turn ? r->handles.turn : "");
}

static const be_turn_events EV = {.on_checkpoint = t_checkpoint, .on_text_delta = t_delta, .on_done = t_done};

static const be_assistant ASST = {
    .name = "bot", .model = "gpt-4o", .instructions = "Be brief.",
    .tools_json = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"w\","
                  "\"parameters\":{\"type\":\"object\",\"properties\":{}}}}]",
    .hash = "h1"};

static const contract_part PARTS[] = {{.type = CONTRACT_PART_TEXT, .text = "Hi there", .text_len = 8}};

static be_turn_input input(const char *handle) {
  be_turn_input in;
  memset(&in, 0, sizeof in);
  in.conversation_id = "c-1";
  in.event_id = "e-1";
  in.handle = handle;
  in.assistant = &ASST;
  in.parts = PARTS;
  in.nparts = 1;
  in.want_deltas = 1;
  in.tools_routed = 1;
  return in;
}

/* ---- SSE bodies -------------------------------------------------------------------------- */

#define EV_(name, json) "event: " name "\ndata: " json "\n\n"
#define DATA_(json) "data: " json "\n\n"

#define J_CREATED(id, seq) \
  "{\"type\":\"response.created\",\"sequence_number\":" #seq ",\"response\":{\"id\":\"" id "\",\"object\":\"response\",\"status\":\"queued\",\"output\":[]}}"
#define J_DELTA(text, seq) \
  "{\"type\":\"response.output_text.delta\",\"sequence_number\":" #seq ",\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"" text "\"}"
#define MSG_ITEM(text) \
  "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":[{\"type\":\"output_text\",\"text\":\"" text "\",\"annotations\":[]}]}"
#define J_ITEM_DONE(item, seq) \
  "{\"type\":\"response.output_item.done\",\"sequence_number\":" #seq ",\"output_index\":0,\"item\":" item "}"
#define USAGE "\"usage\":{\"input_tokens\":5,\"output_tokens\":2,\"total_tokens\":7}"
#define J_COMPLETED(id, output, seq) \
  "{\"type\":\"response.completed\",\"sequence_number\":" #seq ",\"response\":{\"id\":\"" id "\",\"status\":\"completed\",\"output\":[" output "]," USAGE "}}"

static const char *SSE_HELLO =
    EV_("response.created", J_CREATED("resp_1", 0))
    EV_("response.in_progress", "{\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\"}}")
    EV_("response.output_text.delta", J_DELTA("Hel", 2))
    EV_("response.output_text.delta", J_DELTA("lo", 3))
    EV_("response.output_item.done", J_ITEM_DONE(MSG_ITEM("Hello"), 4))
    EV_("response.completed", J_COMPLETED("resp_1", MSG_ITEM("Hello"), 5));

static ss_resp sse(const char *body) {
  return (ss_resp){.status = 200, .body = body, .ctype = "text/event-stream", .mode = SS_CHUNKED, .chunk = 37};
}

static char *body_of(bfx *f, ss_route *r) { return ss_last_body(&f->srv, r); }

/* ---- fresh turns ------------------------------------------------------------------------------ */

static void test_fresh_turn_streams_deltas_after_checkpoint_with_usage_and_handles(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_HELLO));
  bfx_start(f);
  be_turn_input in = input("conv_1");
  contract_kv md[] = {{"team", "blue"}};
  in.metadata = md;
  in.nmetadata = 1;
  in.additional_instructions = "Use French.";
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  assert_int_equal(t.done, 0);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.deltas, "Hello");
  assert_string_equal(t.text, "Hello");
  assert_int_equal(t.nmessages, 1);
  assert_int_equal(t.ncheckpoints, 1);
  assert_int_equal(t.delta_before_checkpoint, 0);
  assert_string_equal(t.checkpoint, "r1 conv_1 resp_1 0");
  assert_string_equal(t.res_checkpoint, "r1 conv_1 resp_1 0");
  assert_int_equal(t.usage.present, 1);
  assert_int_equal(t.usage.prompt_tokens, 5);
  assert_int_equal(t.usage.completion_tokens, 2);
  assert_int_equal(t.usage.total_tokens, 7);
  assert_string_equal(t.h_kind, "responses");
  assert_string_equal(t.h_conv, "conv_1");
  assert_string_equal(t.h_turn, "resp_1");
  char *b = body_of(f, post);
  assert_non_null(strstr(b, "\"model\":\"gpt-4o\""));
  assert_non_null(strstr(b, "\"instructions\":\"Be brief.\\n\\nUse French.\""));
  assert_non_null(strstr(b, "\"tools\":[{\"type\":\"function\",\"name\":\"get_weather\",\"description\":\"w\","
                            "\"parameters\":{\"type\":\"object\",\"properties\":{}},\"strict\":false}]"));
  /* one text part: a plain string (the unambiguous input item form) */
  assert_non_null(strstr(b, "\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":\"Hi there\"}]"));
  assert_non_null(strstr(b, "\"stream\":true,\"background\":true,\"store\":true"));
  assert_non_null(strstr(b, "\"metadata\":{\"event_id\":\"e-1\",\"conversation_id\":\"c-1\",\"team\":\"blue\"}"));
  assert_non_null(strstr(b, "\"conversation\":\"conv_1\""));
  free(b);
  assert_string_equal(post->last_auth, "Bearer sk-test-secret");
  assert_string_equal(post->last_beta, ""); /* no OpenAI-Beta header */
  assert_int_equal(ss_count(&f->srv, post), 1);
  bfx_free(f);
}

/* The assistant's synced vector stores go with every request as the spec's
 * FileSearchTool; a bare Assistants-style file_search is not sent twice. */
static void test_turn_with_vector_stores_sends_file_search_with_their_ids(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_HELLO));
  bfx_start(f);
  static const char *const ids[] = {"vs_1", "vs_2"};
  be_assistant a = ASST;
  a.tools_json = "[{\"type\":\"file_search\"}]";
  a.vector_store_ids = ids;
  a.nvector_store_ids = 2;
  be_turn_input in = input("conv_1");
  in.assistant = &a;
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  char *b = body_of(f, post);
  assert_non_null(strstr(b, "\"tools\":[{\"type\":\"file_search\",\"vector_store_ids\":[\"vs_1\",\"vs_2\"]}]"));
  free(b);
  bfx_free(f);
}

static void test_file_search_ids_join_a_configured_file_search_tool(void **state) {
  (void)state;
  cJSON *tools = NULL;
  assert_int_equal(rsp_json_tools("[{\"type\":\"file_search\",\"vector_store_ids\":[\"vs_a\"],\"max_num_results\":4}]",
                                  &tools), AW_OK);
  static const char *const ids[] = {"vs_a", "vs_b"};
  assert_int_equal(rsp_json_file_search(&tools, ids, 2), AW_OK);
  char *s = cJSON_PrintUnformatted(tools);
  assert_string_equal(s, "[{\"type\":\"file_search\",\"vector_store_ids\":[\"vs_a\",\"vs_b\"],\"max_num_results\":4}]");
  cJSON_free(s);
  cJSON_Delete(tools);
  tools = NULL;
  assert_int_equal(rsp_json_file_search(&tools, ids, 0), AW_OK);
  assert_null(tools);
  static const char *const empty[] = {""};
  assert_int_equal(rsp_json_file_search(&tools, empty, 1), AW_EINVAL);
  cJSON_Delete(tools);
}

static void test_ogx_stream_with_data_lines_only_is_understood(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  /* Python's json.dumps spacing, no event: lines, no [DONE], usage null. */
  ss_add_resp(post, sse(DATA_("{\"type\": \"response.created\", \"sequence_number\": 0, \"response\": {\"id\": \"resp-ogx1\", \"status\": \"in_progress\", \"output\": []}}")
                        DATA_("{\"type\": \"response.output_item.added\", \"sequence_number\": 1, \"output_index\": 0, \"item\": {\"type\": \"message\"}}")
                        DATA_("{\"type\": \"response.output_text.delta\", \"sequence_number\": 2, \"delta\": \"O\"}")
                        DATA_("{\"sequence_number\": 3, \"type\": \"response.output_text.delta\", \"delta\": \"K\"}")
                        DATA_("{\"type\": \"response.completed\", \"sequence_number\": 4, \"response\": {\"id\": \"resp-ogx1\", \"status\": \"completed\", \"usage\": null, \"output\": [{\"id\": \"msg-9\", \"type\": \"message\", \"role\": \"assistant\", \"status\": \"completed\", \"content\": [{\"type\": \"output_text\", \"text\": \"OK\"}]}]}}")));
  bfx_start(f);
  be_turn_input in = input("conv-1");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.deltas, "OK");
  assert_string_equal(t.text, "OK");
  assert_int_equal(t.usage.present, 0);
  assert_string_equal(t.h_turn, "resp-ogx1");
  bfx_free(f);
}

static void test_deltas_not_wanted_are_not_delivered_but_answer_is_whole(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_HELLO));
  bfx_start(f);
  be_turn_input in = input("conv_1");
  in.want_deltas = 0;
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_string_equal(t.status, "completed");
  assert_int_equal(t.ndeltas, 0);
  assert_string_equal(t.text, "Hello");
  bfx_free(f);
}

/* ---- conversation handles ------------------------------------------------------------------------ */

static void test_missing_handle_creates_and_claims_a_conversation(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *conv = ss_route_add(&f->srv, "POST", "/v1/conversations");
  ss_add_resp(conv, (ss_resp){.status = 200, .body = "{\"id\":\"conv_new\",\"object\":\"conversation\"}"});
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_HELLO));
  bfx_start(f);
  be_turn_input in = input(NULL);
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_string_equal(t.status, "completed");
  char *b = body_of(f, conv);
  assert_string_equal(b, "{\"metadata\":{\"conversation_id\":\"c-1\"}}");
  free(b);
  assert_int_equal(f->store.claims, 1);
  assert_string_equal(f->store.key, "conv");
  assert_string_equal(f->store.handle, "conv_new");
  b = body_of(f, post);
  assert_non_null(strstr(b, "\"conversation\":\"conv_new\""));
  free(b);
  assert_string_equal(t.h_conv, "conv_new");
  assert_string_equal(be_handle_key(f->be), "conv");
  assert_string_equal(be_kind(f->be), "responses");
  bfx_free(f);
}

static void test_lost_claim_deletes_ours_and_uses_the_winner(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *conv = ss_route_add(&f->srv, "POST", "/v1/conversations");
  ss_add_resp(conv, (ss_resp){.status = 200, .body = "{\"id\":\"conv_new\"}"});
  ss_route *del = ss_route_add(&f->srv, "DELETE", "/v1/conversations/conv_new");
  ss_add_resp(del, (ss_resp){.status = 200, .body = "{\"id\":\"conv_new\",\"deleted\":true}"});
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_HELLO));
  bfx_start(f);
  snprintf(f->store.handle, sizeof f->store.handle, "conv_winner");
  be_turn_input in = input("");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_string_equal(t.status, "completed");
  assert_int_equal(ss_count(&f->srv, del), 1);
  char *b = body_of(f, post);
  assert_non_null(strstr(b, "\"conversation\":\"conv_winner\""));
  free(b);
  assert_string_equal(t.checkpoint, "r1 conv_winner resp_1 0");
  bfx_free(f);
}

/* ---- function calls ------------------------------------------------------------------------------------ */

#define CALL_ITEM(cid, name, args) \
  "{\"id\":\"fc_" cid "\",\"type\":\"function_call\",\"status\":\"completed\",\"call_id\":\"" cid "\",\"name\":\"" name "\",\"arguments\":\"" args "\"}"

static const char *SSE_TWO_CALLS =
    EV_("response.created", J_CREATED("resp_1", 0))
    EV_("response.function_call_arguments.delta", "{\"type\":\"response.function_call_arguments.delta\",\"sequence_number\":1,\"delta\":\"{}\"}")
    EV_("response.output_item.done", J_ITEM_DONE(CALL_ITEM("call_a", "get_weather", "{\\\"city\\\":\\\"Paris\\\"}"), 2))
    EV_("response.output_item.done", J_ITEM_DONE(CALL_ITEM("call_b", "get_time", "{}"), 3))
    EV_("response.completed", J_COMPLETED("resp_1", CALL_ITEM("call_a", "get_weather", "{\\\"city\\\":\\\"Paris\\\"}") "," CALL_ITEM("call_b", "get_time", "{}"), 4));

static const char *SSE_AFTER_OUTPUTS =
    EV_("response.created", J_CREATED("resp_2", 0))
    EV_("response.output_text.delta", J_DELTA("Sunny", 1))
    EV_("response.output_item.done", J_ITEM_DONE(MSG_ITEM("Sunny"), 2))
    EV_("response.completed", J_COMPLETED("resp_2", MSG_ITEM("Sunny"), 3));

static void test_two_parallel_calls_end_tool_calls_then_continue_answers(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_TWO_CALLS));
  ss_add_resp(post, sse(SSE_AFTER_OUTPUTS));
  bfx_start(f);
  be_turn_input in = input("conv_1");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_TOOL_CALLS);
  assert_int_equal(t.ncalls, 2);
  assert_string_equal(t.call_id[0], "call_a");
  assert_string_equal(t.call_name[0], "get_weather");
  assert_string_equal(t.call_args[0], "{\"city\":\"Paris\"}");
  assert_string_equal(t.call_id[1], "call_b");
  assert_string_equal(t.res_checkpoint, "r1 conv_1 resp_1 0");

  be_turn_input in2 = input("conv_1");
  in2.checkpoint = t.res_checkpoint;
  be_tool_output outs[] = {{"call_a", "{\"temp\":21}"}, {"call_b", "12:00"}};
  tres t2 = {0};
  assert_int_equal(be_turn_continue(f->be, &in2, 1, outs, 2, &EV, &t2, &op), AW_OK);
  ss_run_until(&f->loop, &t2.done);
  assert_int_equal(t2.end, BE_END_ANSWER);
  assert_string_equal(t2.status, "completed");
  assert_string_equal(t2.text, "Sunny");
  assert_string_equal(t2.deltas, "Sunny");
  assert_string_equal(t2.checkpoint, "r1 conv_1 resp_2 0");
  assert_string_equal(t2.h_turn, "resp_2");
  char *b = body_of(f, post);
  assert_non_null(strstr(b, "\"input\":[{\"type\":\"function_call_output\",\"call_id\":\"call_a\","
                            "\"output\":\"{\\\"temp\\\":21}\"},{\"type\":\"function_call_output\","
                            "\"call_id\":\"call_b\",\"output\":\"12:00\"}]"));
  assert_non_null(strstr(b, "\"conversation\":\"conv_1\""));
  assert_non_null(strstr(b, "\"aw_round\":\"1\""));
  free(b);
  assert_int_equal(ss_count(&f->srv, post), 2);
  bfx_free(f);
}

static void test_calls_without_tool_routing_close_the_calls_and_end_cancelled(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_TWO_CALLS));
  ss_route *items = ss_route_add(&f->srv, "POST", "/v1/conversations/conv_1/items");
  ss_add_resp(items, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[]}"});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  in.tools_routed = 0;
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "cancelled");
  assert_string_equal(t.error_code, "tool_calls_unsupported");
  assert_int_equal(ss_count(&f->srv, items), 1);
  char *b = body_of(f, items);
  assert_non_null(strstr(b, "\"call_id\":\"call_a\""));
  assert_non_null(strstr(b, "\"call_id\":\"call_b\""));
  free(b);
  bfx_free(f);
}

/* ---- lost streams and ambiguous failures ------------------------------------------------------------ */

static void test_stream_dropped_after_created_resumes_after_last_sequence(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, (ss_resp){.status = 200, .ctype = "text/event-stream", .mode = SS_DROP,
                              .body = EV_("response.created", J_CREATED("resp_1", 0))
                                      EV_("response.output_text.delta", J_DELTA("Hel", 1))});
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/responses/resp_1");
  ss_add_resp(get, sse(EV_("response.output_text.delta", J_DELTA("lo", 2))
                       EV_("response.output_item.done", J_ITEM_DONE(MSG_ITEM("Hello"), 3))
                       EV_("response.completed", J_COMPLETED("resp_1", MSG_ITEM("Hello"), 4))));
  bfx_start(f);
  be_turn_input in = input("conv_1");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.deltas, "Hello");
  assert_string_equal(t.text, "Hello");
  assert_int_equal(ss_count(&f->srv, post), 1);
  assert_int_equal(ss_count(&f->srv, get), 1);
  char *q = ss_last_query(&f->srv, get);
  assert_non_null(strstr(q, "stream=true"));
  assert_non_null(strstr(q, "starting_after=1"));
  free(q);
  bfx_free(f);
}

static void test_refused_resume_falls_back_to_polling(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, (ss_resp){.status = 200, .ctype = "text/event-stream", .mode = SS_DROP,
                              .body = EV_("response.created", J_CREATED("resp_1", 0))});
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/responses/resp_1");
  ss_add_resp(get, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"not streamable\",\"type\":\"invalid_request_error\"}}"});
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[]}"});
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"completed\",\"output\":[" MSG_ITEM("Hello") "]," USAGE "}"});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.deltas, "Hello"); /* sent at once at the end */
  assert_int_equal(ss_count(&f->srv, get), 3);
  assert_int_equal(ss_count(&f->srv, post), 1);
  bfx_free(f);
}

#define ITEMS_WITH_OURS \
  "{\"object\":\"list\",\"has_more\":false,\"data\":[" MSG_ITEM("Hello") "," \
  "{\"id\":\"msg_u2\",\"type\":\"message\",\"role\":\"user\",\"status\":\"completed\",\"content\":[{\"type\":\"input_text\",\"text\":\"Hi there\"}]}," \
  "{\"id\":\"msg_u1\",\"type\":\"message\",\"role\":\"user\",\"status\":\"completed\",\"content\":[{\"type\":\"input_text\",\"text\":\"older\"}]}]}"

#define ITEMS_WITHOUT_OURS \
  "{\"object\":\"list\",\"has_more\":false,\"data\":[" \
  "{\"id\":\"msg_a0\",\"type\":\"message\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":[{\"type\":\"output_text\",\"text\":\"old answer\"}]}," \
  "{\"id\":\"msg_u1\",\"type\":\"message\",\"role\":\"user\",\"status\":\"completed\",\"content\":[{\"type\":\"input_text\",\"text\":\"older\"}]}]}"

static void test_ambiguous_500_before_created_with_input_present_does_not_post_again(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, (ss_resp){.status = 500, .body = "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}"});
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, (ss_resp){.status = 200, .body = ITEMS_WITH_OURS});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, "Hello");
  assert_int_equal(t.replayed, 1);
  assert_int_equal(ss_count(&f->srv, post), 1);
  assert_int_equal(ss_count(&f->srv, items), 1);
  char *q = ss_last_query(&f->srv, items);
  assert_non_null(strstr(q, "order=desc"));
  free(q);
  assert_string_equal(t.res_checkpoint, "r1 conv_1 - 0");
  assert_string_equal(t.h_turn, "");
  bfx_free(f);
}

static void test_ambiguous_500_before_created_with_input_absent_posts_exactly_once_more(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, (ss_resp){.status = 502, .body = "bad gateway", .ctype = "text/plain"});
  ss_add_resp(post, sse(SSE_HELLO));
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, (ss_resp){.status = 200, .body = ITEMS_WITHOUT_OURS});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.deltas, "Hello");
  assert_int_equal(ss_count(&f->srv, post), 2);
  assert_int_equal(ss_count(&f->srv, items), 3); /* a short bounded wait before concluding */
  bfx_free(f);
}

static void test_ambiguous_continue_with_outputs_present_does_not_post_again(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, (ss_resp){.status = 500, .body = "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}"});
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, (ss_resp){.status = 200, .body =
      "{\"object\":\"list\",\"data\":[" MSG_ITEM("Sunny") ","
      "{\"id\":\"fco_2\",\"type\":\"function_call_output\",\"call_id\":\"call_a\",\"output\":\"x\",\"status\":\"completed\"},"
      CALL_ITEM("call_a", "get_weather", "{}") ","
      "{\"id\":\"msg_u\",\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"Hi there\"}]}]}"});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  in.checkpoint = "r1 conv_1 resp_1 0";
  be_tool_output outs[] = {{"call_a", "x"}};
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_continue(f->be, &in, 1, outs, 1, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.text, "Sunny");
  assert_int_equal(ss_count(&f->srv, post), 1);
  bfx_free(f);
}

/* ---- recovery ------------------------------------------------------------------------------------------- */

static void test_recover_with_checkpoint_of_ended_response_posts_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_HELLO));
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/responses/resp_9");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_9\",\"status\":\"completed\",\"output\":[" MSG_ITEM("Hello") "]," USAGE "}"});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  in.recover = 1;
  in.checkpoint = "r1 conv_1 resp_9 0";
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, "Hello");
  assert_int_equal(t.replayed, 1);
  assert_int_equal(t.ndeltas, 0);
  assert_int_equal(t.usage.total_tokens, 7);
  assert_int_equal(ss_count(&f->srv, post), 0);
  assert_string_equal(t.h_turn, "resp_9");
  bfx_free(f);
}

static void test_recover_with_checkpoint_of_running_response_replays_stream_without_deltas(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/responses/resp_1");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[]}"});
  ss_add_resp(get, sse(SSE_HELLO));
  bfx_start(f);
  be_turn_input in = input("conv_1");
  in.recover = 1;
  in.checkpoint = "r1 conv_1 resp_1 0";
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, "Hello");
  assert_int_equal(t.replayed, 1);
  assert_int_equal(t.ndeltas, 0);
  char *q = ss_last_query(&f->srv, get);
  assert_non_null(strstr(q, "starting_after=0"));
  free(q);
  bfx_free(f);
}

static void test_recover_of_waiting_response_reports_its_calls_again(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/responses/resp_1");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"completed\",\"output\":[" CALL_ITEM("call_a", "get_weather", "{}") "]}"});
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, (ss_resp){.status = 200, .body =
      "{\"object\":\"list\",\"data\":[" CALL_ITEM("call_a", "get_weather", "{}") ","
      "{\"id\":\"msg_u\",\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":\"input_text\",\"text\":\"Hi there\"}]}]}"});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  in.recover = 1;
  in.checkpoint = "r1 conv_1 resp_1 0";
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_TOOL_CALLS);
  assert_int_equal(t.ncalls, 1);
  assert_string_equal(t.call_id[0], "call_a");
  bfx_free(f);
}

static void test_recover_without_checkpoint_finds_nothing_and_starts_fresh(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_HELLO));
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, (ss_resp){.status = 200, .body = ITEMS_WITHOUT_OURS});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  in.recover = 1;
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_string_equal(t.status, "completed");
  assert_int_equal(ss_count(&f->srv, items), 1);
  assert_int_equal(ss_count(&f->srv, post), 1);
  bfx_free(f);
}

/* ---- cancel ---------------------------------------------------------------------------------------------------- */

static void test_cancel_of_waiting_turn_closes_calls_and_ends_cancelled(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/responses/resp_1");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"completed\",\"output\":[" CALL_ITEM("call_a", "get_weather", "{}") "]}"});
  ss_route *items = ss_route_add(&f->srv, "POST", "/v1/conversations/conv_1/items");
  ss_add_resp(items, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[]}"});
  ss_route *cancel = ss_route_add(&f->srv, "POST", "/v1/responses/resp_1/cancel");
  ss_add_resp(cancel, (ss_resp){.status = 400, .body = "{}"});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  in.checkpoint = "r1 conv_1 resp_1 0";
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_cancel(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "cancelled");
  assert_int_equal(t.nmessages, 0);
  assert_int_equal(ss_count(&f->srv, items), 1);
  char *b = body_of(f, items);
  assert_string_equal(b, "{\"items\":[{\"type\":\"function_call_output\",\"call_id\":\"call_a\","
                         "\"output\":\"{\\\"error\\\":\\\"cancelled\\\"}\"}]}");
  free(b);
  assert_int_equal(ss_count(&f->srv, cancel), 0);
  bfx_free(f);
}

static void test_cancel_of_running_response_posts_cancel_and_follows_it(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/responses/resp_1");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[]}"});
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"cancelled\",\"output\":[]}"});
  ss_route *cancel = ss_route_add(&f->srv, "POST", "/v1/responses/resp_1/cancel");
  ss_add_resp(cancel, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[]}"});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  in.checkpoint = "r1 conv_1 resp_1 0";
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_cancel(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "cancelled");
  assert_int_equal(ss_count(&f->srv, cancel), 1);
  assert_int_equal(ss_count(&f->srv, get), 2);
  bfx_free(f);
}

/* ---- endings ------------------------------------------------------------------------------------------------------ */

static void run_stream(const char *body, tres *t) {
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(body));
  bfx_start(f);
  be_turn_input in = input("conv_1");
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, t, &op), AW_OK);
  ss_run_until(&f->loop, &t->done);
  bfx_free(f);
}

static void test_failed_response_maps_to_failed_with_its_error(void **state) {
  (void)state;
  tres t = {0};
  run_stream(EV_("response.created", J_CREATED("resp_1", 0))
             EV_("response.failed", "{\"type\":\"response.failed\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"model crashed\"}}}"),
             &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "failed");
  assert_string_equal(t.error_code, "server_error");
  assert_string_equal(t.errmsg, "model crashed");
}

static void test_incomplete_response_maps_reason_to_error_code(void **state) {
  (void)state;
  tres t = {0};
  run_stream(EV_("response.created", J_CREATED("resp_1", 0))
             EV_("response.output_text.delta", J_DELTA("Hel", 1))
             EV_("response.incomplete", "{\"type\":\"response.incomplete\",\"sequence_number\":2,\"response\":{\"id\":\"resp_1\",\"status\":\"incomplete\",\"incomplete_details\":{\"reason\":\"max_output_tokens\"},\"output\":[" MSG_ITEM("Hel") "]}}"),
             &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "incomplete");
  assert_string_equal(t.error_code, "max_output_tokens");
  assert_string_equal(t.text, "Hel");
}

static void test_error_event_maps_to_failed_with_its_code(void **state) {
  (void)state;
  tres t = {0};
  run_stream(EV_("response.created", J_CREATED("resp_1", 0))
             EV_("error", "{\"type\":\"error\",\"sequence_number\":1,\"code\":\"ERR_SOMETHING\",\"message\":\"Something went wrong\",\"param\":null}"),
             &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "failed");
  assert_string_equal(t.error_code, "ERR_SOMETHING");
}

static void test_invalid_request_ends_error_with_stable_code(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"bad model\",\"type\":\"invalid_request_error\"}}"});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EHTTP4XX);
  assert_string_equal(t.error_code, "invalid_request_error");
  assert_int_equal(ss_count(&f->srv, post), 1);
  bfx_free(f);
}

static void test_answer_over_cap_ends_answer_too_large(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  f->cfg.max_answer_bytes = 3;
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_HELLO));
  bfx_start(f);
  be_turn_input in = input("conv_1");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_ETOOBIG);
  assert_string_equal(t.error_code, "answer_too_large");
  bfx_free(f);
}

/* ---- ops ------------------------------------------------------------------------------------------------------------ */

typedef struct sres {
  int done, err, has_id;
} sres;

static void on_result(void *o, const be_result *r) {
  sres *s = o;
  uv_stop(bfx_loop);
  s->done = 1;
  s->err = r->err;
  s->has_id = r->id != NULL;
}

static void test_assistant_ensure_answers_next_iteration_without_id(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  bfx_start(f);
  sres s = {0};
  be_op *op;
  assert_int_equal(be_assistant_ensure(f->be, &ASST, NULL, on_result, &s, &op), AW_OK);
  assert_int_equal(s.done, 0);
  ss_run_until(&f->loop, &s.done);
  assert_int_equal(s.err, AW_OK);
  assert_int_equal(s.has_id, 0);
  /* A cancelled ensure never answers. */
  sres s2 = {0};
  assert_int_equal(be_assistant_ensure(f->be, &ASST, NULL, on_result, &s2, &op), AW_OK);
  be_op_cancel(op);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(s2.done, 0);
  be_assistant bad = ASST;
  bad.tools_json = "{not json";
  assert_int_equal(be_assistant_ensure(f->be, &bad, NULL, on_result, &s2, &op), AW_EINVAL);
  bfx_free(f);
}

static void test_cancelled_turn_calls_back_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, (ss_resp){.status = 200, .ctype = "text/event-stream", .mode = SS_HANG,
                              .body = EV_("response.created", J_CREATED("resp_1", 0))});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.ncheckpoints);
  be_op_cancel(op);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(t.done, 0);
  bfx_free(f);
}

static void test_invalid_inputs_are_refused_before_io(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  bfx_start(f);
  tres t = {0};
  be_op *op;
  be_turn_input in = input("../etc");
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_EINVAL);
  in = input("conv_1");
  /* images go (test_backend_responses_files.c); a file part, an image
   * without its id or with an unknown detail do not */
  contract_part bad[] = {{.type = CONTRACT_PART_FILE, .text = "file-1"},
                         {.type = CONTRACT_PART_IMAGE_FILE, .text = NULL},
                         {.type = CONTRACT_PART_IMAGE_URL, .text = "https://x.test/a.png", .detail = "max"}};
  for (size_t i = 0; i < 3; i++) {
    in.parts = &bad[i];
    assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_EINVAL);
  }
  in = input("conv_1");
  in.checkpoint = "thread_1 run_1"; /* another backend's */
  be_tool_output o = {"call_a", "x"};
  assert_int_equal(be_turn_continue(f->be, &in, 1, &o, 1, &EV, &t, &op), AW_EINVAL);
  bfx_free(f);
  assert_int_equal(t.done, 0);
}

/* ---- background off (servers that refuse background with stream: OGX) ------------------------------- */

static void test_background_off_sends_no_background_and_polls_after_a_drop(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  f->cfg.background = 0;
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, (ss_resp){.status = 200, .ctype = "text/event-stream", .mode = SS_DROP,
                              .body = EV_("response.created", J_CREATED("resp_1", 0))
                                      EV_("response.output_text.delta", J_DELTA("Hel", 1))});
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/responses/resp_1");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[]}"});
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"completed\",\"output\":[" MSG_ITEM("Hello") "]," USAGE "}"});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, "Hello");
  assert_string_equal(t.deltas, "Hello"); /* "Hel" streamed, the rest at once at the end */
  assert_string_equal(t.checkpoint, "r1 conv_1 resp_1 0");
  assert_int_equal(t.usage.present, 1);
  char *b = body_of(f, post);
  assert_null(strstr(b, "\"background\""));
  assert_non_null(strstr(b, "\"stream\":true,\"store\":true"));
  free(b);
  /* exactly one POST: the response was polled, never resumed nor posted again */
  assert_int_equal(ss_count(&f->srv, post), 1);
  assert_int_equal(ss_count(&f->srv, get), 2);
  char *q = ss_last_query(&f->srv, get);
  assert_null(strstr(q, "stream=true"));
  free(q);
  bfx_free(f);
}

static void test_background_off_recover_of_running_response_polls(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  f->cfg.background = 0;
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/responses/resp_1");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[]}"});
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"completed\",\"output\":[" MSG_ITEM("Hello") "]}"});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  in.recover = 1;
  in.checkpoint = "r1 conv_1 resp_1 0";
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, "Hello");
  assert_int_equal(t.replayed, 1);
  assert_int_equal(ss_count(&f->srv, get), 2);
  char *q = ss_last_query(&f->srv, get);
  assert_null(strstr(q, "stream=true"));
  free(q);
  bfx_free(f);
}

static void test_resume_answered_with_a_json_object_polls_instead_of_looping(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES); /* background on: the server still ignores stream=true on GET (OGX) */
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, (ss_resp){.status = 200, .ctype = "text/event-stream", .mode = SS_DROP,
                              .body = EV_("response.created", J_CREATED("resp_1", 0))});
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/responses/resp_1");
  /* the resume: 200 with the plain object, no SSE */
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[]}"});
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"resp_1\",\"status\":\"completed\",\"output\":[" MSG_ITEM("Hello") "]}"});
  bfx_start(f);
  be_turn_input in = input("conv_1");
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, "Hello");
  assert_string_equal(t.deltas, "Hello");
  assert_int_equal(ss_count(&f->srv, post), 1);
  assert_int_equal(ss_count(&f->srv, get), 2); /* one resume, one poll: no resume loop */
  char *q = ss_last_query(&f->srv, get);
  assert_null(strstr(q, "stream=true"));
  free(q);
  bfx_free(f);
}

/* ---- tool_choice ------------------------------------------------------------------------------------------ */

static void test_tool_choice_goes_on_the_first_response_only(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/responses");
  ss_add_resp(post, sse(SSE_TWO_CALLS));
  ss_add_resp(post, sse(SSE_AFTER_OUTPUTS));
  bfx_start(f);
  be_assistant forced = ASST;
  forced.tool_choice_json = "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}";
  be_turn_input in = input("conv_1");
  in.assistant = &forced;
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_TOOL_CALLS);
  char *b = body_of(f, post);
  /* translated to the Responses shape */
  assert_non_null(strstr(b, "\"tool_choice\":{\"type\":\"function\",\"name\":\"get_weather\"}"));
  free(b);
  be_turn_input in2 = input("conv_1");
  in2.assistant = &forced;
  in2.checkpoint = t.res_checkpoint;
  be_tool_output outs[] = {{"call_a", "{\"temp\":21}"}, {"call_b", "12:00"}};
  tres t2 = {0};
  assert_int_equal(be_turn_continue(f->be, &in2, 1, outs, 2, &EV, &t2, &op), AW_OK);
  ss_run_until(&f->loop, &t2.done);
  assert_string_equal(t2.status, "completed");
  b = body_of(f, post);
  assert_non_null(strstr(b, "function_call_output"));
  assert_null(strstr(b, "tool_choice")); /* else the forced call would be forced again */
  free(b);
  bfx_free(f);
}

static void test_tool_choice_translation_and_refusals(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } ok[] = {
      {"\"auto\"", "\"auto\""},
      {"\"required\"", "\"required\""},
      {"\"none\"", "\"none\""},
      {"{\"type\":\"function\",\"function\":{\"name\":\"f\"}}", "{\"type\":\"function\",\"name\":\"f\"}"},
      {"{\"type\":\"function\",\"name\":\"f\"}", "{\"type\":\"function\",\"name\":\"f\"}"},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    cJSON *o = NULL;
    assert_int_equal(rsp_json_tool_choice(ok[i].in, &o), AW_OK);
    char *s = cJSON_PrintUnformatted(o);
    assert_string_equal(s, ok[i].out);
    cJSON_free(s);
    cJSON_Delete(o);
  }
  cJSON *o = (cJSON *)1;
  assert_int_equal(rsp_json_tool_choice(NULL, &o), AW_OK);
  assert_null(o);
  const char *bad[] = {"\"sometimes\"", "{\"type\":\"function\"}", "{\"type\":\"file_search\"}", "3", "{nope"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(rsp_json_tool_choice(bad[i], &o), AW_EINVAL);
    assert_null(o);
  }
  /* a body without a tool_choice has none; round >= 1 drops it */
  be_turn_input in = input("conv_1");
  be_assistant a = ASST;
  a.tool_choice_json = "\"required\"";
  in.assistant = &a;
  cJSON *input_ = NULL, *body = NULL;
  assert_int_equal(rsp_json_user_input(PARTS, 1, &input_), AW_OK);
  assert_int_equal(rsp_json_turn_body(&in, input_, 0, 1, &body, NULL, NULL), AW_OK);
  assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(body, "tool_choice")));
  assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "background")));
  cJSON_Delete(body);
  assert_int_equal(rsp_json_turn_body(&in, input_, 2, 0, &body, NULL, NULL), AW_OK);
  assert_null(cJSON_GetObjectItemCaseSensitive(body, "tool_choice"));
  assert_null(cJSON_GetObjectItemCaseSensitive(body, "background"));
  cJSON_Delete(body);
  a.tool_choice_json = "\"sometimes\"";
  assert_int_equal(rsp_json_turn_body(&in, input_, 0, 1, &body, NULL, NULL), AW_EINVAL);
  assert_null(body);
  cJSON_Delete(input_);
}

static void test_assistant_ensure_refuses_a_bad_tool_choice(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  bfx_start(f);
  be_op *op;
  sres s = {0};
  be_assistant bad = ASST;
  bad.tool_choice_json = "{\"type\":\"function\"}";
  assert_int_equal(be_assistant_ensure(f->be, &bad, NULL, on_result, &s, &op), AW_EINVAL);
  bfx_free(f);
}

/* ---- the pure parts ----------------------------------------------------------------------------------------------- */

static void test_checkpoint_round_trips_and_fits(void **state) {
  (void)state;
  char cp[BE_CHECKPOINT_MAX], conv[RSP_ID_MAX], resp[RSP_ID_MAX];
  char longid[RSP_ID_MAX];
  memset(longid, 'a', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  assert_int_equal(rsp_checkpoint_format(cp, sizeof cp, longid, longid, INT64_MAX), AW_OK);
  assert_int_equal(rsp_checkpoint_parse(cp, conv, resp), AW_OK);
  assert_string_equal(conv, longid);
  assert_int_equal(rsp_checkpoint_format(cp, sizeof cp, "conv_1", NULL, -1), AW_OK);
  assert_string_equal(cp, "r1 conv_1 - 0");
  assert_int_equal(rsp_checkpoint_parse(cp, conv, resp), AW_OK);
  assert_string_equal(resp, "");
  assert_int_equal(rsp_checkpoint_parse("r1 conv_1 resp_1", conv, resp), AW_EINVAL);
  assert_int_equal(rsp_checkpoint_parse("r1 conv/1 resp_1 0", conv, resp), AW_EINVAL);
  assert_int_equal(rsp_checkpoint_parse("thread_1 run_1", conv, resp), AW_EINVAL);
}

static void test_stream_mapper_skips_replayed_and_foreign_events(void **state) {
  (void)state;
  rsp_answer a;
  rsp_answer_init(&a, 1024);
  rsp_stream st;
  rsp_stream_init(&st, &a, 1, NULL);
  rsp_ev e;
  const char *c = J_CREATED("resp_1", 0), *d = J_DELTA("x", 1);
  assert_int_equal(rsp_stream_event(&st, c, strlen(c), &e), AW_OK);
  assert_int_equal(e, RSP_EV_CREATED);
  assert_int_equal(rsp_stream_event(&st, d, strlen(d), &e), AW_OK);
  assert_int_equal(e, RSP_EV_DELTA);
  assert_int_equal(rsp_stream_event(&st, d, strlen(d), &e), AW_OK); /* same seq again */
  assert_int_equal(e, RSP_EV_NONE);
  const char *other = J_COMPLETED("resp_other", "", 9);
  assert_int_equal(rsp_stream_event(&st, other, strlen(other), &e), AW_OK);
  assert_int_equal(e, RSP_EV_NONE);
  assert_int_equal(rsp_stream_event(&st, "nope", 4, &e), AW_EPARSE);
  assert_int_equal(st.seq, 1);
  rsp_stream_free(&st);
  rsp_answer_free(&a);
}

/* A message citing files as the Responses API does: file_citation and
 * container_file_citation name the file, file_path does not, url_citation
 * has no file (left out). */
static const char *CITED_OUTPUT =
    "{\"output\":[{\"id\":\"fs_1\",\"type\":\"file_search_call\",\"status\":\"completed\",\"queries\":[\"q\"]},"
    "{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":["
    "{\"type\":\"output_text\",\"text\":\"Open Settings.\",\"logprobs\":[],\"annotations\":["
    "{\"type\":\"file_citation\",\"file_id\":\"file-guide\",\"index\":14,\"filename\":\"guide.md\"},"
    "{\"type\":\"url_citation\",\"url\":\"https://x.test\",\"start_index\":0,\"end_index\":3,\"title\":\"x\"},"
    "{\"type\":\"container_file_citation\",\"container_id\":\"cntr_1\",\"file_id\":\"cfile_1\","
    "\"start_index\":2,\"end_index\":9,\"filename\":\"out.csv\"},"
    "{\"type\":\"file_path\",\"file_id\":\"file-png\",\"index\":5}]}]}]}";

static void test_file_citations_keep_their_filename_and_file_path_has_none(void **state) {
  (void)state;
  rsp_answer a;
  rsp_answer_init(&a, 1024);
  cJSON *resp = cJSON_Parse(CITED_OUTPUT);
  assert_non_null(resp);
  assert_int_equal(rsp_answer_set_output(&a, resp), AW_OK);
  const contract_out_message *m;
  const be_tool_call *c;
  size_t nm, nc;
  assert_int_equal(rsp_answer_build(&a, &m, &nm, &c, &nc), AW_OK);
  assert_int_equal(nm, 1); /* the file_search_call item is not a message */
  assert_int_equal(m[0].nparts, 1);
  const contract_out_part *p = &m[0].parts[0];
  assert_int_equal(p->nannotations, 3);
  assert_string_equal(p->annotations[0].type, "file_citation");
  assert_string_equal(p->annotations[0].file_id, "file-guide");
  assert_string_equal(p->annotations[0].filename, "guide.md");
  assert_int_equal(p->annotations[0].start_index, 14);
  assert_string_equal(p->annotations[1].type, "container_file_citation");
  assert_string_equal(p->annotations[1].container_id, "cntr_1");
  assert_string_equal(p->annotations[1].file_id, "cfile_1");
  assert_string_equal(p->annotations[1].filename, "out.csv");
  assert_int_equal(p->annotations[1].end_index, 9);
  assert_string_equal(p->annotations[2].type, "file_path");
  assert_null(p->annotations[2].filename);

  /* In the contract: filename where given, the key left out where not. */
  contract_response r = {.event_id = "e1", .conversation_id = "c1", .status = "completed",
                         .messages = m, .nmessages = nm};
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  char *view = mpfx_json_view(b.data, b.len, NULL);
  cJSON *j = cJSON_Parse(view);
  assert_non_null(j);
  const cJSON *anns = cJSON_GetObjectItem(
      cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0),
                                                                 "content"),
                                             0),
                          "text"),
      "annotations");
  assert_int_equal(cJSON_GetArraySize(anns), 3);
  assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(anns, 0), "filename")->valuestring, "guide.md");
  assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(anns, 1), "filename")->valuestring, "out.csv");
  assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(anns, 2), "filename"));
  cJSON_Delete(j);
  free(view);
  buf_free(&b);
  cJSON_Delete(resp);
  rsp_answer_free(&a);
}

int main(void) {
  log_set_level(LOG_OFF);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fresh_turn_streams_deltas_after_checkpoint_with_usage_and_handles),
      cmocka_unit_test(test_turn_with_vector_stores_sends_file_search_with_their_ids),
      cmocka_unit_test(test_file_search_ids_join_a_configured_file_search_tool),
      cmocka_unit_test(test_ogx_stream_with_data_lines_only_is_understood),
      cmocka_unit_test(test_deltas_not_wanted_are_not_delivered_but_answer_is_whole),
      cmocka_unit_test(test_missing_handle_creates_and_claims_a_conversation),
      cmocka_unit_test(test_lost_claim_deletes_ours_and_uses_the_winner),
      cmocka_unit_test(test_two_parallel_calls_end_tool_calls_then_continue_answers),
      cmocka_unit_test(test_calls_without_tool_routing_close_the_calls_and_end_cancelled),
      cmocka_unit_test(test_stream_dropped_after_created_resumes_after_last_sequence),
      cmocka_unit_test(test_refused_resume_falls_back_to_polling),
      cmocka_unit_test(test_ambiguous_500_before_created_with_input_present_does_not_post_again),
      cmocka_unit_test(test_ambiguous_500_before_created_with_input_absent_posts_exactly_once_more),
      cmocka_unit_test(test_ambiguous_continue_with_outputs_present_does_not_post_again),
      cmocka_unit_test(test_recover_with_checkpoint_of_ended_response_posts_nothing),
      cmocka_unit_test(test_recover_with_checkpoint_of_running_response_replays_stream_without_deltas),
      cmocka_unit_test(test_recover_of_waiting_response_reports_its_calls_again),
      cmocka_unit_test(test_recover_without_checkpoint_finds_nothing_and_starts_fresh),
      cmocka_unit_test(test_cancel_of_waiting_turn_closes_calls_and_ends_cancelled),
      cmocka_unit_test(test_cancel_of_running_response_posts_cancel_and_follows_it),
      cmocka_unit_test(test_failed_response_maps_to_failed_with_its_error),
      cmocka_unit_test(test_incomplete_response_maps_reason_to_error_code),
      cmocka_unit_test(test_error_event_maps_to_failed_with_its_code),
      cmocka_unit_test(test_invalid_request_ends_error_with_stable_code),
      cmocka_unit_test(test_answer_over_cap_ends_answer_too_large),
      cmocka_unit_test(test_assistant_ensure_answers_next_iteration_without_id),
      cmocka_unit_test(test_cancelled_turn_calls_back_nothing),
      cmocka_unit_test(test_invalid_inputs_are_refused_before_io),
      cmocka_unit_test(test_checkpoint_round_trips_and_fits),
      cmocka_unit_test(test_stream_mapper_skips_replayed_and_foreign_events),
      cmocka_unit_test(test_file_citations_keep_their_filename_and_file_path_has_none),
      cmocka_unit_test(test_background_off_sends_no_background_and_polls_after_a_drop),
      cmocka_unit_test(test_background_off_recover_of_running_response_polls),
      cmocka_unit_test(test_resume_answered_with_a_json_object_polls_instead_of_looping),
      cmocka_unit_test(test_tool_choice_goes_on_the_first_response_only),
      cmocka_unit_test(test_tool_choice_translation_and_refusals),
      cmocka_unit_test(test_assistant_ensure_refuses_a_bad_tool_choice),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

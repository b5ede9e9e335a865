/* test_backend_chat_manage.c -- conversation requests on the Chat
 * Completions backend (common/backend/chat/chat_manage.c) over an in-memory
 * be_history: history pages in both orders with after/before cursors (tool
 * rounds left out, ids "<event_id>/<n>", roles, created_at), an unknown
 * cursor, append committing one turn that the next turn's request to the
 * model carries (scripted server), append delivered twice committing once,
 * delete answering without I/O, and cancellation of each (no callback).
 * Needs: loopback networking only (no simulator, no Redis).  Every test
 * frees the backend, runs the loop until its handles closed and checks
 * uv_loop_close; ASan checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <cmocka.h>

#include "backend.h"
#include "chat_int.h"
#include "log.h"
#include "backend_fixture.h"

/* These tests save no tool round, and script the model after the start. */
static bfx *fx_new(void) {
  bfx *f = bfx_new(BFX_CHAT);
  f->hist.no_saves = 1;
  bfx_start(f);
  return f;
}

/* ---- results ------------------------------------------------------------------------------------ */

typedef struct cres {
  int done, ndone, err, has_more;
  char error_code[64], errmsg[384];
  size_t n;
  char ids[16][64], roles[16][16], texts[16][128];
  int64_t created[16];
  char first[64], last[64];
  int first_null, last_null;
  char ids_line[512]; /* the ids, space-separated: one assertion per page */
} cres;

static void c_done(void *o, const be_conv_result *r) {
  cres *c = o;
  uv_stop(bfx_loop);
  c->done = 1;
  c->ndone++;
  c->err = r->err;
  c->has_more = r->has_more;
  snprintf(c->error_code, sizeof c->error_code, "%s", r->error_code ? r->error_code : "");
  snprintf(c->errmsg, sizeof c->errmsg, "%s", r->errmsg ? r->errmsg : "");
  c->n = r->nmessages;
  c->ids_line[0] = '\0';
  for (size_t i = 0; i < r->nmessages && i < 16; i++) {
    const contract_out_message *m = &r->messages[i];
    snprintf(c->ids[i], sizeof c->ids[i], "%s", m->id);
    snprintf(c->roles[i], sizeof c->roles[i], "%s", m->role ? m->role : "");
    c->created[i] = m->created_at;
    c->texts[i][0] = '\0';
    for (size_t j = 0; j < m->nparts; j++) {
      assert_string_equal(m->parts[j].type, "text");
      strncat(c->texts[i], m->parts[j].text, sizeof c->texts[i] - strlen(c->texts[i]) - 1);
    }
    strncat(c->ids_line, i ? " " : "", sizeof c->ids_line - strlen(c->ids_line) - 1);
    strncat(c->ids_line, m->id, sizeof c->ids_line - strlen(c->ids_line) - 1);
  }
  c->first_null = r->first_id == NULL;
  c->last_null = r->last_id == NULL;
  snprintf(c->first, sizeof c->first, "%s", r->first_id ? r->first_id : "");
  snprintf(c->last, sizeof c->last, "%s", r->last_id ? r->last_id : "");
}

static const be_conv_events CEV = {.on_done = c_done};

static be_conv_input conv_input(const char *event_id) {
  be_conv_input in;
  memset(&in, 0, sizeof in);
  in.conversation_id = "c-1";
  in.event_id = event_id;
  return in;
}

static cres page(bfx *f, long limit, int asc, const char *after, const char *before) {
  be_conv_input in = conv_input("h-req");
  in.limit = limit;
  in.order_asc = asc;
  in.after = after;
  in.before = before;
  cres c;
  memset(&c, 0, sizeof c);
  be_op *op = NULL;
  assert_int_equal(be_conv_history(f->be, &in, &CEV, &c, &op), AW_OK);
  assert_non_null(op);
  assert_int_equal(c.done, 0); /* never inside the call */
  ss_run_until(&f->loop, &c.done);
  assert_int_equal(c.ndone, 1);
  return c;
}

static cres append(bfx *f, const char *event_id, const contract_in_message *msgs, size_t n) {
  be_conv_input in = conv_input(event_id);
  in.messages = msgs;
  in.nmessages = n;
  cres c;
  memset(&c, 0, sizeof c);
  be_op *op = NULL;
  assert_int_equal(be_conv_append(f->be, &in, &CEV, &c, &op), AW_OK);
  assert_int_equal(c.done, 0);
  ss_run_until(&f->loop, &c.done);
  assert_int_equal(c.ndone, 1);
  return c;
}

/* ---- stored turns ---------------------------------------------------------------------------------- */

#define TURN_AT(ev, user, asst, at)                                                                               \
  "{\"e\":\"" ev "\",\"m\":[{\"role\":\"user\",\"content\":\"" user "\"},{\"role\":\"assistant\",\"content\":\"" \
  asst "\"}],\"i\":\"chatcmpl-" ev "\",\"t\":" #at "}"
/* Written before "t" existed: no time. */
#define TURN_OLD(ev, user, asst) \
  "{\"e\":\"" ev "\",\"m\":[{\"role\":\"user\",\"content\":\"" user "\"},{\"role\":\"assistant\",\"content\":\"" asst "\"}]}"
/* A tool round: only the user message (0) and the answer (3) are listed. */
#define TOOL_TURN(ev)                                                                                              \
  "{\"e\":\"" ev "\",\"m\":[{\"role\":\"user\",\"content\":\"weather?\"},{\"role\":\"assistant\",\"content\":\"\"," \
  "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","                \
  "\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"},"                 \
  "{\"role\":\"assistant\",\"content\":\"It is sunny.\"}],\"t\":1700000200}"

/* Chronologically: e1/0 e1/1 e2/0 e2/3 e3/0 e3/1. */
static void three_turns(bfx *f) {
  bfx_hist_add(&f->hist, "e1", TURN_OLD("e1", "u1", "a1"));
  bfx_hist_add(&f->hist, "e2", TOOL_TURN("e2"));
  bfx_hist_add(&f->hist, "e3", TURN_AT("e3", "u3", "a3", 1700000300));
}

/* ---- history -------------------------------------------------------------------------------------------- */

static void test_history_pages_newest_first_and_follows_after_and_before_cursors(void **state) {
  (void)state;
  bfx *f = fx_new();
  three_turns(f);
  cres c = page(f, 4, 0, NULL, NULL);
  assert_int_equal(c.err, AW_OK);
  assert_string_equal(c.ids_line, "e3/1 e3/0 e2/3 e2/0");
  assert_true(c.has_more);
  assert_string_equal(c.first, "e3/1");
  assert_string_equal(c.last, "e2/0");
  assert_string_equal(c.roles[0], "assistant");
  assert_string_equal(c.texts[0], "a3");
  assert_int_equal(c.created[0], 1700000300);
  assert_string_equal(c.roles[1], "user");
  assert_string_equal(c.texts[2], "It is sunny."); /* the tool round's answer; its calls and outputs are not listed */
  assert_string_equal(c.texts[3], "weather?");
  assert_int_equal(c.created[3], 1700000200);
  assert_int_equal(f->hist.last_max_turns, SIZE_MAX); /* every turn the store keeps */

  c = page(f, 4, 0, c.last, NULL); /* the next page */
  assert_string_equal(c.ids_line, "e1/1 e1/0");
  assert_false(c.has_more);
  assert_int_equal(c.created[0], 0); /* a turn stored without a time */

  c = page(f, 2, 0, NULL, "e1/1"); /* the page before e1/1: the two newer ones nearest it */
  assert_string_equal(c.ids_line, "e2/3 e2/0");
  assert_true(c.has_more);

  c = page(f, 2, 0, NULL, "e3/1"); /* nothing is newer than the newest */
  assert_int_equal(c.n, 0);
  assert_false(c.has_more);
  assert_true(c.first_null && c.last_null);
  bfx_free(f);
}

static void test_history_pages_oldest_first_and_follows_after_and_before_cursors(void **state) {
  (void)state;
  bfx *f = fx_new();
  three_turns(f);
  cres c = page(f, 2, 1, NULL, NULL);
  assert_string_equal(c.ids_line, "e1/0 e1/1");
  assert_true(c.has_more);
  assert_string_equal(c.roles[0], "user");
  assert_string_equal(c.texts[0], "u1");
  c = page(f, 2, 1, c.last, NULL);
  assert_string_equal(c.ids_line, "e2/0 e2/3");
  assert_true(c.has_more);
  c = page(f, 2, 1, c.last, NULL);
  assert_string_equal(c.ids_line, "e3/0 e3/1");
  assert_false(c.has_more);
  c = page(f, 10, 1, NULL, "e3/0"); /* everything older than e3/0, oldest first */
  assert_string_equal(c.ids_line, "e1/0 e1/1 e2/0 e2/3");
  assert_false(c.has_more);
  c = page(f, 0, 1, NULL, NULL); /* limit 0: the default (20) */
  assert_int_equal(c.n, 6);
  bfx_free(f);
}

static void test_history_of_a_conversation_without_turns_is_an_empty_page(void **state) {
  (void)state;
  bfx *f = fx_new();
  cres c = page(f, 20, 0, NULL, NULL);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(c.n, 0);
  assert_false(c.has_more);
  assert_true(c.first_null);
  bfx_free(f);
}

static void test_history_with_an_unknown_cursor_is_message_not_found(void **state) {
  (void)state;
  bfx *f = fx_new();
  three_turns(f);
  /* An event not stored, the tool-call message of a round (not listed),
   * an index past the turn, a non-canonical number, no number. */
  const char *bad[] = {"e9/0", "e2/1", "e1/2", "e1/01", "e1", "e1/"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cres c = page(f, 5, i % 2, i % 3 ? bad[i] : NULL, i % 3 ? NULL : bad[i]);
    assert_int_equal(c.err, AW_EINVAL);
    assert_int_equal(aw_error_classify(c.err), AW_CLASS_REJECT);
    assert_string_equal(c.error_code, "message_not_found");
    assert_non_null(strstr(c.errmsg, bad[i]));
    assert_int_equal(c.n, 0);
  }
  bfx_free(f);
}

static void test_history_requests_the_backend_cannot_take_are_refused_before_io(void **state) {
  (void)state;
  bfx *f = fx_new();
  cres c;
  memset(&c, 0, sizeof c);
  be_op *op = NULL;
  be_conv_input in = conv_input("h-req");
  in.limit = CONTRACT_HISTORY_LIMIT_MAX + 1;
  assert_int_equal(be_conv_history(f->be, &in, &CEV, &c, &op), AW_EINVAL);
  in.limit = 5;
  in.after = "e1/0";
  in.before = "e1/1";
  assert_int_equal(be_conv_history(f->be, &in, &CEV, &c, &op), AW_EINVAL);
  assert_null(op);
  assert_int_equal(f->hist.loads, 0);
  f->hist.fail_load = 1; /* the store down: retry class */
  in.before = NULL;
  assert_int_equal(be_conv_history(f->be, &in, &CEV, &c, &op), AW_OK);
  ss_run_until(&f->loop, &c.done);
  assert_int_equal(c.err, AW_EREDIS);
  assert_int_equal(aw_error_classify(c.err), AW_CLASS_RETRY);
  bfx_free(f);
}

/* ---- append -------------------------------------------------------------------------------------------- */

static const contract_part P_EARLIER[] = {{.type = CONTRACT_PART_TEXT, .text = "Earlier question", .text_len = 16},
                                          {.type = CONTRACT_PART_TEXT, .text = "with detail", .text_len = 11}};
static const contract_part P_ANSWER[] = {{.type = CONTRACT_PART_TEXT, .text = "Earlier answer", .text_len = 14}};
static const contract_part P_NOTE[] = {{.type = CONTRACT_PART_TEXT, .text = "A note from the agent", .text_len = 21}};

#define SSE_CK(json) "data: " json "\n\n"
#define CHUNK(delta, fin)                                                                                    \
  SSE_CK("{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\"," \
         "\"choices\":[{\"index\":0,\"delta\":" delta ",\"finish_reason\":" fin "}]}")
static const char *SSE_HELLO = CHUNK("{\"role\":\"assistant\",\"content\":\"Hello\"}", "null") CHUNK("{}", "\"stop\"")
    SSE_CK("[DONE]");

static be_assistant ASST = {.name = "bot", .model = "gpt-4o", .instructions = "Be brief.", .hash = "h1"};
static const contract_part P_HI[] = {{.type = CONTRACT_PART_TEXT, .text = "Hi there", .text_len = 8}};

typedef struct tres {
  int done;
  char status[32];
} tres;

static void t_done(void *o, const be_turn_result *r) {
  tres *t = o;
  uv_stop(bfx_loop);
  t->done = 1;
  snprintf(t->status, sizeof t->status, "%s", r->status ? r->status : "");
  /* A turn's answer leaves role and created_at out (contract.h): set, they
   * would have to be valid, and the encoder reads them. */
  for (size_t i = 0; i < r->nmessages; i++) {
    assert_null(r->messages[i].role);
    assert_int_equal(r->messages[i].created_at, 0);
  }
}

static const be_turn_events TEV = {.on_done = t_done};

static void run_turn(bfx *f, const char *event_id) {
  be_turn_input in;
  memset(&in, 0, sizeof in);
  in.conversation_id = "c-1";
  in.event_id = event_id;
  in.assistant = &ASST;
  in.parts = P_HI;
  in.nparts = 1;
  tres t = {0};
  be_op *op = NULL;
  assert_int_equal(be_turn_start(f->be, &in, &TEV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_string_equal(t.status, "completed");
}

static cJSON *last_request(bfx *f) {
  char *b = ss_last_body(&f->srv, f->post);
  cJSON *j = cJSON_Parse(b);
  free(b);
  assert_non_null(j);
  return j;
}

static const char *msg_str(const cJSON *req, int i, const char *k) {
  const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(req, "messages"), i);
  assert_non_null(m);
  return chat_get_str(m, k);
}

static void test_append_commits_one_turn_that_the_next_turns_request_carries(void **state) {
  (void)state;
  bfx *f = fx_new();
  ss_add_resp(f->post, (ss_resp){.status = 200, .body = SSE_HELLO, .ctype = "text/event-stream", .mode = SS_CHUNKED});
  time_t before = time(NULL);
  const contract_in_message two[] = {{.role = "user", .parts = (contract_part *)P_EARLIER, .nparts = 2},
                                     {.role = "assistant", .parts = (contract_part *)P_ANSWER, .nparts = 1}};
  cres c = append(f, "a-1", two, 2);
  assert_int_equal(c.err, AW_OK);
  assert_string_equal(c.ids_line, "a-1/0 a-1/1");
  assert_string_equal(c.roles[0], "user");
  assert_string_equal(c.texts[0], "Earlier question\n\nwith detail");
  assert_string_equal(c.roles[1], "assistant");
  assert_string_equal(c.texts[1], "Earlier answer");
  assert_true(c.created[0] >= before && c.created[0] <= time(NULL));
  /* An assistant-only turn is as good a turn for the context builder. */
  const contract_in_message note[] = {{.role = "assistant", .parts = (contract_part *)P_NOTE, .nparts = 1}};
  c = append(f, "a-2", note, 1);
  assert_string_equal(c.ids_line, "a-2/0");
  assert_int_equal(f->hist.nturns, 2);
  assert_int_equal(ss_count(&f->srv, f->post), 0); /* no model was asked */

  run_turn(f, "e-1");
  cJSON *q = last_request(f);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(q, "messages")), 5);
  assert_string_equal(msg_str(q, 0, "role"), "system");
  assert_string_equal(msg_str(q, 1, "role"), "user");
  assert_string_equal(msg_str(q, 1, "content"), "Earlier question\n\nwith detail");
  assert_string_equal(msg_str(q, 2, "role"), "assistant");
  assert_string_equal(msg_str(q, 2, "content"), "Earlier answer");
  assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(q, "messages"), 2), "tool_calls"));
  assert_string_equal(msg_str(q, 3, "content"), "A note from the agent");
  assert_string_equal(msg_str(q, 4, "content"), "Hi there");
  cJSON_Delete(q);

  /* The history lists appended and generated messages alike; the turn's
   * commit carries its time too. */
  cres h = page(f, 20, 1, NULL, NULL);
  assert_string_equal(h.ids_line, "a-1/0 a-1/1 a-2/0 e-1/0 e-1/1");
  assert_string_equal(h.texts[4], "Hello");
  assert_true(h.created[4] >= before && h.created[4] <= time(NULL));
  bfx_free(f);
}

static void test_append_delivered_twice_with_the_same_event_id_commits_once(void **state) {
  (void)state;
  bfx *f = fx_new();
  const contract_in_message one[] = {{.role = "user", .parts = (contract_part *)P_HI, .nparts = 1}};
  cres a = append(f, "a-1", one, 1);
  cres b = append(f, "a-1", one, 1);
  assert_int_equal(a.err, AW_OK);
  assert_int_equal(b.err, AW_OK);
  assert_string_equal(b.ids_line, a.ids_line); /* the same answer */
  assert_int_equal(f->hist.commits, 2);
  assert_int_equal(f->hist.nturns, 1);
  cres h = page(f, 20, 1, NULL, NULL);
  assert_string_equal(h.ids_line, "a-1/0");
  bfx_free(f);
}

static void test_append_of_messages_the_contract_refuses_is_refused_before_io(void **state) {
  (void)state;
  bfx *f = fx_new();
  const contract_part img[] = {{.type = CONTRACT_PART_IMAGE_URL, .text = "https://x/y.png", .text_len = 15}};
  const contract_in_message bad_role[] = {{.role = "system", .parts = (contract_part *)P_HI, .nparts = 1}};
  const contract_in_message bad_part[] = {{.role = "user", .parts = (contract_part *)img, .nparts = 1}};
  contract_in_message many[CONTRACT_APPEND_MAX_MESSAGES + 1];
  for (size_t i = 0; i < sizeof many / sizeof many[0]; i++)
    many[i] = (contract_in_message){.role = "user", .parts = (contract_part *)P_HI, .nparts = 1};
  cres c;
  memset(&c, 0, sizeof c);
  be_op *op = NULL;
  be_conv_input in = conv_input("a-1");
  in.messages = bad_role;
  in.nmessages = 1;
  assert_int_equal(be_conv_append(f->be, &in, &CEV, &c, &op), AW_EINVAL);
  in.messages = bad_part;
  assert_int_equal(be_conv_append(f->be, &in, &CEV, &c, &op), AW_EINVAL);
  in.messages = many;
  in.nmessages = CONTRACT_APPEND_MAX_MESSAGES + 1;
  assert_int_equal(be_conv_append(f->be, &in, &CEV, &c, &op), AW_EINVAL);
  in.nmessages = 0;
  assert_int_equal(be_conv_append(f->be, &in, &CEV, &c, &op), AW_EINVAL);
  assert_null(op);
  assert_int_equal(f->hist.commits, 0);
  bfx_free(f);
}

/* ---- delete and cancellation ------------------------------------------------------------------------------ */

static void test_delete_answers_on_the_next_iteration_without_io(void **state) {
  (void)state;
  bfx *f = fx_new();
  three_turns(f);
  cres c;
  memset(&c, 0, sizeof c);
  be_op *op = NULL;
  be_conv_input in = conv_input("d-1");
  assert_int_equal(be_conv_delete(f->be, &in, &CEV, &c, &op), AW_OK);
  assert_int_equal(c.done, 0);
  ss_run_until(&f->loop, &c.done);
  assert_int_equal(c.ndone, 1);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(f->hist.loads + f->hist.commits, 0); /* the worker erases the keys */
  bfx_free(f);
}

static void test_cancelled_requests_never_call_back(void **state) {
  (void)state;
  bfx *f = fx_new();
  three_turns(f);
  cres c;
  memset(&c, 0, sizeof c);
  be_op *h = NULL, *a = NULL, *d = NULL;
  be_conv_input in = conv_input("x-1");
  in.limit = 5;
  assert_int_equal(be_conv_history(f->be, &in, &CEV, &c, &h), AW_OK);
  const contract_in_message one[] = {{.role = "user", .parts = (contract_part *)P_HI, .nparts = 1}};
  in.messages = one;
  in.nmessages = 1;
  assert_int_equal(be_conv_append(f->be, &in, &CEV, &c, &a), AW_OK);
  assert_int_equal(be_conv_delete(f->be, &in, &CEV, &c, &d), AW_OK);
  be_op_cancel(h); /* its load is out: freed when it answers */
  be_op_cancel(a); /* its commit is out: the commit happens, no answer */
  be_op_cancel(d);
  uv_run(&f->loop, UV_RUN_DEFAULT); /* until every timer of the fake store closed */
  assert_int_equal(c.ndone, 0);
  assert_int_equal(f->hist.loads, 1);
  assert_int_equal(f->hist.nturns, 4);
  bfx_free(f);
}

int main(void) {
  log_set_level(LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_history_pages_newest_first_and_follows_after_and_before_cursors),
      cmocka_unit_test(test_history_pages_oldest_first_and_follows_after_and_before_cursors),
      cmocka_unit_test(test_history_of_a_conversation_without_turns_is_an_empty_page),
      cmocka_unit_test(test_history_with_an_unknown_cursor_is_message_not_found),
      cmocka_unit_test(test_history_requests_the_backend_cannot_take_are_refused_before_io),
      cmocka_unit_test(test_append_commits_one_turn_that_the_next_turns_request_carries),
      cmocka_unit_test(test_append_delivered_twice_with_the_same_event_id_commits_once),
      cmocka_unit_test(test_append_of_messages_the_contract_refuses_is_refused_before_io),
      cmocka_unit_test(test_delete_answers_on_the_next_iteration_without_io),
      cmocka_unit_test(test_cancelled_requests_never_call_back),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

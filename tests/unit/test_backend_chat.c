/* test_backend_chat.c -- the Chat Completions backend (backend.h,
 * common/backend/chat/) against a scripted in-process server and an
 * in-memory be_history: streamed turns committed to the history, the
 * history sent with the next turn within the context budget (by whole
 * turns, checked as a property over random histories too), replay of a
 * committed event, tool rounds kept as pending turns and continued,
 * recovery of a pending round, retries and generations (attempt), and the
 * mapping of 4xx / cut-short / error endings.  Also the pure parts.
 * Needs: loopback networking only (no simulator, no Redis).  Every test
 * frees the backend, runs the loop until its handles closed and checks
 * uv_loop_close; ASan checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backend.h"
#include "chat_int.h"
#include "log.h"
#include "backend_fixture.h"

/* ---- turn results -------------------------------------------------------------------------- */

typedef struct tres {
  int done, ndone;
  be_end end;
  int err, replayed, attempt, res_attempt, ncheckpoints;
  char status[32], error_code[64], errmsg[512];
  char deltas[1024];       /* every delta */
  char attempt_text[1024]; /* the deltas of the highest attempt (what a reader keeps) */
  size_t ndeltas, nattempt;
  char checkpoint[BE_CHECKPOINT_MAX], res_checkpoint[BE_CHECKPOINT_MAX];
  char text[1024];
  size_t nmessages;
  contract_usage usage;
  int ncalls;
  char call_id[3][32], call_name[3][32], call_args[3][128];
  char h_kind[16], h_turn[64];
  char msg_id[64];            /* the first message's id: the completion's */
  int h_conv_null;
} tres;

static void t_checkpoint(void *o, const char *cp, const be_handles *h) {
  tres *t = o;
  assert_non_null(h);
  assert_string_equal(h->kind, "chat");
  assert_null(h->conversation);
  t->ncheckpoints++;
  snprintf(t->checkpoint, sizeof t->checkpoint, "%s", cp);
  if (h->attempt > t->attempt) {
    t->attempt = h->attempt;
    t->nattempt = 0;
    t->attempt_text[0] = '\0';
  }
}

static void t_delta(void *o, const char *text, size_t len) {
  tres *t = o;
  if (t->ndeltas + len < sizeof t->deltas) {
    memcpy(t->deltas + t->ndeltas, text, len);
    t->deltas[t->ndeltas += len] = '\0';
  }
  if (t->nattempt + len < sizeof t->attempt_text) {
    memcpy(t->attempt_text + t->nattempt, text, len);
    t->attempt_text[t->nattempt += len] = '\0';
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
  for (size_t i = 0; i < r->nmessages; i++) {
    assert_non_null(r->messages[i].id);
    for (size_t j = 0; j < r->messages[i].nparts; j++)
      strncat(t->text, r->messages[i].parts[j].text, sizeof t->text - strlen(t->text) - 1);
  }
  t->usage = r->usage;
  t->ncalls = (int)r->ntool_calls;
  for (size_t i = 0; i < r->ntool_calls && i < 3; i++) {
    snprintf(t->call_id[i], sizeof t->call_id[i], "%s", r->tool_calls[i].id);
    snprintf(t->call_name[i], sizeof t->call_name[i], "%s", r->tool_calls[i].name);
    snprintf(t->call_args[i], sizeof t->call_args[i], "%s", r->tool_calls[i].arguments);
  }
  snprintf(t->h_kind, sizeof t->h_kind, "%s", r->handles.kind ? r->handles.kind : "");
  snprintf(t->h_turn, sizeof t->h_turn, "%s", r->handles.turn ? r->handles.turn : "");
  snprintf(t->msg_id, sizeof t->msg_id, "%s", r->nmessages ? r->messages[0].id : "");
  t->h_conv_null = r->handles.conversation == NULL;
  t->res_attempt = r->handles.attempt;
}

static const be_turn_events EV = {.on_checkpoint = t_checkpoint, .on_text_delta = t_delta, .on_done = t_done};

#define WEATHER_TOOL \
  "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"w\"," \
  "\"parameters\":{\"type\":\"object\",\"properties\":{}}}}]"

static be_assistant ASST = {.name = "bot", .model = "gpt-4o", .instructions = "Be brief.", .tools_json = WEATHER_TOOL,
                            .hash = "h1"};

static const contract_part PARTS[] = {{.type = CONTRACT_PART_TEXT, .text = "Hi there", .text_len = 8}};

static be_turn_input input(const char *event_id, const be_assistant *a) {
  be_turn_input in;
  memset(&in, 0, sizeof in);
  in.conversation_id = "c-1";
  in.event_id = event_id;
  in.assistant = a;
  in.parts = PARTS;
  in.nparts = 1;
  in.want_deltas = 1;
  in.tools_routed = 1;
  return in;
}

static void run_start(bfx *f, const be_turn_input *in, tres *t) {
  be_op *op;
  memset(t, 0, sizeof *t);
  assert_int_equal(be_turn_start(f->be, in, &EV, t, &op), AW_OK);
  assert_int_equal(t->done, 0); /* never inside the starting call */
  ss_run_until(&f->loop, &t->done);
  assert_int_equal(t->ndone, 1);
}

/* ---- SSE bodies ----------------------------------------------------------------------------------- */

#define CK(json) "data: " json "\n\n"
#define CHUNK(id, delta, fin) \
  CK("{\"id\":\"" id "\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"m\"," \
     "\"choices\":[{\"index\":0,\"delta\":" delta ",\"finish_reason\":" fin "}]}")
#define USAGE_CHUNK(id) \
  CK("{\"id\":\"" id "\",\"object\":\"chat.completion.chunk\",\"choices\":[]," \
     "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}")
#define DONE_ CK("[DONE]")
#define TEXT_CHUNKS(id, a, b) \
  CHUNK(id, "{\"role\":\"assistant\",\"content\":\"\"}", "null") CHUNK(id, "{\"content\":\"" a "\"}", "null") \
  CHUNK(id, "{\"content\":\"" b "\"}", "null")

static const char *SSE_HELLO = TEXT_CHUNKS("chatcmpl-1", "Hel", "lo") CHUNK("chatcmpl-1", "{}", "\"stop\"")
    USAGE_CHUNK("chatcmpl-1") DONE_;
static const char *SSE_SECOND = TEXT_CHUNKS("chatcmpl-9", "Sec", "ond") CHUNK("chatcmpl-9", "{}", "\"stop\"") DONE_;
/* Two parallel calls: the first's arguments in pieces, the second whole. */
static const char *SSE_CALLS =
    CHUNK("chatcmpl-2", "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":\"call_a\","
                        "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}", "null")
    CHUNK("chatcmpl-2", "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}", "null")
    CHUNK("chatcmpl-2", "{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}", "null")
    CHUNK("chatcmpl-2", "{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\",\"type\":\"function\",\"function\":"
                        "{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Tokyo\\\"}\"}}]}", "null")
    CHUNK("chatcmpl-2", "{}", "\"tool_calls\"") DONE_;
static const char *SSE_ANSWER = TEXT_CHUNKS("chatcmpl-3", "Sunny and ", "rainy.") CHUNK("chatcmpl-3", "{}", "\"stop\"") DONE_;

static ss_resp sse(const char *body) {
  return (ss_resp){.status = 200, .body = body, .ctype = "text/event-stream", .mode = SS_CHUNKED, .chunk = 37};
}

/* The last request's messages, parsed (the root is returned for freeing). */
static cJSON *last_request(bfx *f) {
  char *b = ss_last_body(&f->srv, f->post);
  cJSON *j = cJSON_Parse(b);
  free(b);
  assert_non_null(j);
  return j;
}

static const cJSON *msg_at(const cJSON *req, int i) {
  const cJSON *m = cJSON_GetArrayItem(cJSON_GetObjectItem(req, "messages"), i);
  assert_non_null(m);
  return m;
}

static const char *str_at(const cJSON *req, int i, const char *k) { return chat_get_str(msg_at(req, i), k); }

static int nmsgs(const cJSON *req) { return cJSON_GetArraySize(cJSON_GetObjectItem(req, "messages")); }

#define TURN(ev, user, asst) \
  "{\"e\":\"" ev "\",\"m\":[{\"role\":\"user\",\"content\":\"" user "\"},{\"role\":\"assistant\",\"content\":\"" asst "\"}]}"
#define TOOL_TURN(ev)                                                                                              \
  "{\"e\":\"" ev "\",\"m\":[{\"role\":\"user\",\"content\":\"weather?\"},{\"role\":\"assistant\",\"content\":\"\"," \
  "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","                \
  "\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"sunny\"},"                 \
  "{\"role\":\"assistant\",\"content\":\"It is sunny.\"}]}"
#define PENDING_CALLS(ev, g)                                                                                       \
  "{\"e\":\"" ev "\",\"g\":" #g ",\"m\":[{\"role\":\"user\",\"content\":\"Hi there\"},{\"role\":\"assistant\","     \
  "\"content\":\"\",\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\"," \
  "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}},{\"id\":\"call_b\",\"type\":\"function\",\"function\":"         \
  "{\"name\":\"get_weather\",\"arguments\":\"{}\"}}]}]}"

/* ---- fresh turns and the history ---------------------------------------------------------------------- */

static void test_first_turn_streams_deltas_answers_and_commits_user_and_assistant_once(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  in.additional_instructions = "Use French.";
  contract_kv md[] = {{"team", "blue"}};
  in.metadata = md;
  in.nmetadata = 1;
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.deltas, "Hello");
  assert_string_equal(t.text, "Hello");
  assert_int_equal(t.usage.present, 1);
  assert_int_equal(t.usage.total_tokens, 7);
  assert_string_equal(t.h_kind, "chat");
  assert_true(t.h_conv_null);
  assert_string_equal(t.h_turn, ""); /* no handles on chat (schemas/README.md) */
  assert_string_equal(t.msg_id, "chatcmpl-1");
  assert_string_equal(t.res_checkpoint, "c1 0 0");
  assert_int_equal(t.res_attempt, 0);
  assert_int_equal(f->hist.loads, 1);
  assert_int_equal(f->hist.last_max_turns, CHAT_DEFAULT_MAX_MESSAGES);
  assert_int_equal(f->hist.commits, 1);
  assert_int_equal(f->hist.nturns, 1);
  chat_record r;
  assert_int_equal(chat_record_parse(f->hist.turns[0], strlen(f->hist.turns[0]), &r), AW_OK);
  assert_string_equal(r.event_id, "e-1");
  assert_int_equal(cJSON_GetArraySize(r.msgs), 2);
  assert_string_equal(chat_get_str(cJSON_GetArrayItem(r.msgs, 0), "content"), "Hi there");
  assert_string_equal(chat_get_str(cJSON_GetArrayItem(r.msgs, 1), "role"), "assistant");
  assert_string_equal(chat_get_str(cJSON_GetArrayItem(r.msgs, 1), "content"), "Hello");
  chat_record_free(&r);
  cJSON *q = last_request(f);
  assert_string_equal(chat_get_str(q, "model"), "gpt-4o");
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(q, "stream")));
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(q, "stream_options"), "include_usage")));
  assert_non_null(cJSON_GetObjectItem(q, "tools"));
  assert_null(cJSON_GetObjectItem(q, "tool_choice")); /* not configured: not sent */
  assert_null(cJSON_GetObjectItem(q, "metadata"));    /* servers reject what they do not know */
  assert_null(cJSON_GetObjectItem(q, "store"));
  assert_int_equal(nmsgs(q), 2);
  assert_string_equal(str_at(q, 0, "role"), "system");
  assert_string_equal(str_at(q, 0, "content"), "Be brief.\n\nUse French.");
  assert_string_equal(str_at(q, 1, "content"), "Hi there");
  cJSON_Delete(q);
  assert_string_equal(f->post->last_auth, "Bearer sk-test-secret");
  assert_string_equal(f->post->last_beta, "");
  bfx_free(f);
}

static void test_second_turn_request_carries_the_first_turns_messages(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_HELLO));
  ss_add_resp(f->post, sse(SSE_SECOND));
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_string_equal(t.status, "completed");
  const contract_part p2[] = {{.type = CONTRACT_PART_TEXT, .text = "And now?", .text_len = 8}};
  in = input("e-2", &ASST);
  in.parts = p2;
  run_start(f, &in, &t);
  assert_string_equal(t.text, "Second");
  cJSON *q = last_request(f);
  assert_int_equal(nmsgs(q), 4);
  assert_string_equal(str_at(q, 1, "content"), "Hi there");
  assert_string_equal(str_at(q, 2, "role"), "assistant");
  assert_string_equal(str_at(q, 2, "content"), "Hello");
  assert_string_equal(str_at(q, 3, "content"), "And now?");
  cJSON_Delete(q);
  assert_int_equal(f->hist.nturns, 2);
  bfx_free(f);
}

static void test_history_beyond_max_messages_is_left_out_by_whole_turns(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  bfx_hist_add(&f->hist, "h-1", TURN("h-1", "u1", "a1"));
  bfx_hist_add(&f->hist, "h-2", TURN("h-2", "u2", "a2"));
  bfx_hist_add(&f->hist, "h-tool", TOOL_TURN("h-tool"));
  bfx_hist_add(&f->hist, "h-3", TURN("h-3", "u3", "a3"));
  be_assistant a = ASST;
  /* system + current = 2, h-3 makes 4; the tool turn (4 messages) would
   * make 8 > 7: it is left out whole, and everything older with it. */
  a.history_max_messages = 7;
  a.max_output_tokens = 64;
  be_turn_input in = input("e-1", &a);
  tres t;
  run_start(f, &in, &t);
  assert_string_equal(t.status, "completed");
  assert_int_equal(f->hist.last_max_turns, 7);
  cJSON *q = last_request(f);
  /* The assistant's output cap goes as max_tokens (what every server honours). */
  assert_int_equal(cJSON_GetObjectItem(q, "max_tokens")->valueint, 64);
  assert_null(cJSON_GetObjectItem(q, "max_completion_tokens"));
  assert_int_equal(nmsgs(q), 4);
  assert_string_equal(str_at(q, 1, "content"), "u3");
  assert_string_equal(str_at(q, 2, "content"), "a3");
  assert_string_equal(str_at(q, 3, "content"), "Hi there");
  cJSON_Delete(q);
  bfx_free(f);
}

static void test_history_over_max_tokens_is_left_out_by_whole_turns(void **state) {
  (void)state;
  cJSON *cur = cJSON_CreateArray(), *out = NULL;
  cJSON *u = NULL;
  assert_int_equal(chat_json_user_message(PARTS, 1, &u, NULL), AW_OK);
  cJSON_AddItemToArray(cur, u);
  const char *turns[] = {TURN("h-1", "old question", "old answer"), TOOL_TURN("h-tool"), TURN("h-2", "u2", "a2")};
  size_t lens[3] = {strlen(turns[0]), strlen(turns[1]), strlen(turns[2])};
  /* current: "user"+"Hi there" 12 bytes -> 3 + 4 = 7; h-2: (6/4->2)+4 twice
   * = 12 -> 19; the tool turn needs more than 10 more. */
  chat_context_stats st;
  assert_int_equal(chat_context_build(NULL, turns, lens, 3, cur, 40, 25, &out, &st), AW_OK);
  assert_int_equal(st.turns_sent, 1);
  assert_int_equal(cJSON_GetArraySize(out), 3);
  assert_true(st.tokens <= 25);
  assert_string_equal(chat_get_str(cJSON_GetArrayItem(out, 0), "content"), "u2");
  cJSON_Delete(out);
  /* A current turn over the budget on its own is sent anyway, alone. */
  assert_int_equal(chat_context_build("a system prompt", turns, lens, 3, cur, 1, 1, &out, &st), AW_OK);
  assert_int_equal(st.turns_sent, 0);
  assert_int_equal(cJSON_GetArraySize(out), 2);
  cJSON_Delete(out);
  cJSON_Delete(cur);
}

/* A deterministic PRNG for the property below. */
static uint32_t rnd_state = 12345;
static uint32_t rnd(uint32_t n) {
  rnd_state = rnd_state * 1103515245u + 12345u;
  return (rnd_state >> 8) % n;
}

static void test_sent_history_never_exceeds_the_budget_for_random_histories(void **state) {
  (void)state;
  char text[400];
  for (int iter = 0; iter < 1500; iter++) {
    size_t n = rnd(14);
    char *turns[14];
    size_t lens[14], tmsgs[14], ttoks[14];
    for (size_t i = 0; i < n; i++) {
      cJSON *m = cJSON_CreateArray();
      int rounds = (int)rnd(3);
      size_t k = 0;
      for (int r = 0; r <= rounds * 2 + 1; r++, k++) {
        /* user, (assistant calls, tool)*, assistant; contents name the turn and message */
        int len = snprintf(text, sizeof text, "t%zu-m%zu-", i, k);
        for (uint32_t z = rnd(200); z > 0; z--) text[len++] = 'x';
        text[len] = '\0';
        cJSON *msg = cJSON_CreateObject();
        const char *role = r == 0 ? "user" : r == rounds * 2 + 1 ? "assistant" : r % 2 ? "assistant" : "tool";
        cJSON_AddStringToObject(msg, "role", role);
        cJSON_AddStringToObject(msg, "content", text);
        cJSON_AddItemToArray(m, msg);
      }
      char ev[16];
      snprintf(ev, sizeof ev, "h-%zu", i);
      chat_record rec = {.event_id = ev, .msgs = m, .gen = -1};
      assert_int_equal(chat_record_format(&rec, &turns[i], &lens[i]), AW_OK);
      tmsgs[i] = (size_t)cJSON_GetArraySize(m);
      ttoks[i] = 0;
      const cJSON *x;
      cJSON_ArrayForEach(x, m) ttoks[i] += chat_msg_tokens(x);
      cJSON_Delete(m);
    }
    cJSON *cur = cJSON_CreateArray();
    for (uint32_t c = 1 + rnd(4); c > 0; c--) {
      cJSON *msg = cJSON_CreateObject();
      cJSON_AddStringToObject(msg, "role", "user");
      cJSON_AddStringToObject(msg, "content", "current");
      cJSON_AddItemToArray(cur, msg);
    }
    const char *sys = rnd(2) ? "You are a helpful assistant." : NULL;
    long max_m = 1 + (long)rnd(30), max_k = 10 + (long)rnd(1500);
    cJSON *out = NULL;
    chat_context_stats st;
    assert_int_equal(chat_context_build(sys, (const char *const *)turns, lens, n, cur, max_m, max_k, &out, &st), AW_OK);
    /* What was sent, counted independently. */
    size_t sent_m = (size_t)cJSON_GetArraySize(out), sent_k = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, out) sent_k += chat_msg_tokens(x);
    assert_int_equal(sent_m, st.messages);
    assert_int_equal(sent_k, st.tokens);
    size_t fixed_m = sent_m, fixed_k = sent_k;
    for (size_t i = n - st.turns_sent; i < n; i++) {
      fixed_m -= tmsgs[i];
      fixed_k -= ttoks[i];
    }
    if (st.turns_sent) assert_true(sent_m <= (size_t)max_m && sent_k <= (size_t)max_k); /* the budget holds */
    size_t first = n - st.turns_sent;
    if (first > 0) /* and it is used: the next older turn would not have fitted */
      assert_true(sent_m + tmsgs[first - 1] > (size_t)max_m || sent_k + ttoks[first - 1] > (size_t)max_k);
    assert_int_equal(chat_budget_select(tmsgs, ttoks, n, fixed_m, fixed_k, max_m, max_k), first);
    /* Whole turns, oldest first, right after the system message. */
    int at = sys ? 1 : 0;
    for (size_t i = first; i < n; i++)
      for (size_t k = 0; k < tmsgs[i]; k++, at++) {
        char want[32];
        snprintf(want, sizeof want, "t%zu-m%zu-", i, k);
        const char *got = chat_get_str(cJSON_GetArrayItem(out, at), "content");
        assert_non_null(got);
        assert_memory_equal(got, want, strlen(want));
      }
    assert_string_equal(chat_get_str(cJSON_GetArrayItem(out, at), "content"), "current");
    cJSON_Delete(out);
    cJSON_Delete(cur);
    for (size_t i = 0; i < n; i++) cJSON_free(turns[i]);
  }
}

/* ---- exactly once: replays ------------------------------------------------------------------------------- */

static void test_committed_event_is_answered_from_history_without_any_request(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  bfx_hist_add(&f->hist, "e-0", TURN("e-0", "u0", "a0"));
  bfx_hist_add(&f->hist, "e-1", "{\"e\":\"e-1\",\"i\":\"chatcmpl-7\",\"m\":[{\"role\":\"user\",\"content\":\"Hi there\"},"
                          "{\"role\":\"assistant\",\"content\":\"Stored answer\"}]}");
  be_turn_input in = input("e-1", &ASST);
  in.recover = 1;
  in.checkpoint = "c1 0 0";
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_int_equal(t.replayed, 1);
  assert_string_equal(t.text, "Stored answer");
  assert_string_equal(t.msg_id, "chatcmpl-7"); /* the stored turn's completion id */
  assert_int_equal(t.ndeltas, 0);
  assert_int_equal(ss_count(&f->srv, f->post), 0);
  assert_int_equal(f->hist.commits, 0);
  bfx_free(f);
}

static void test_commit_that_finds_the_event_committed_answers_with_the_stored_turn(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  f->hist.commit_race = TURN("e-1", "Hi there", "Other answer");
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, "Other answer");
  assert_int_equal(t.replayed, 1);
  assert_int_equal(t.res_attempt, 1); /* "Hello" went out as deltas: readers drop it */
  assert_int_equal(f->hist.loads, 2);
  assert_int_equal(f->hist.applied, 0);
  bfx_free(f);
}

/* ---- tool rounds -------------------------------------------------------------------------------------------- */

static void test_parallel_tool_calls_save_a_pending_round_and_continue_commits_the_whole_turn(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_CALLS));
  ss_add_resp(f->post, sse(SSE_ANSWER));
  bfx_start(f);
  be_assistant a = ASST;
  a.tool_choice_json = "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}";
  be_turn_input in = input("e-1", &a);
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_TOOL_CALLS);
  assert_int_equal(t.ncalls, 2);
  assert_string_equal(t.call_id[0], "call_a");
  assert_string_equal(t.call_args[0], "{\"city\":\"Paris\"}");
  assert_string_equal(t.call_id[1], "call_b");
  assert_string_equal(t.call_name[1], "get_weather");
  assert_string_equal(t.res_checkpoint, "c1 0 1");
  assert_int_equal(f->hist.saves, 1);
  assert_int_equal(f->hist.commits, 0);
  assert_non_null(f->hist.pending);
  cJSON *q = last_request(f);
  assert_string_equal(chat_get_str(chat_get(cJSON_GetObjectItem(q, "tool_choice"), "function"), "name"), "get_weather");
  cJSON_Delete(q);

  /* Outputs in another order than the calls: sent in the calls' order. */
  be_tool_output outs[] = {{"call_b", "rainy"}, {"call_a", "sunny"}};
  in.checkpoint = "c1 0 1";
  memset(&t, 0, sizeof t);
  be_op *op;
  assert_int_equal(be_turn_continue(f->be, &in, 1, outs, 2, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.text, "Sunny and rainy.");
  q = last_request(f);
  assert_null(cJSON_GetObjectItem(q, "tool_choice")); /* a forced call would loop */
  assert_int_equal(nmsgs(q), 5);
  assert_string_equal(str_at(q, 2, "role"), "assistant");
  assert_string_equal(str_at(q, 2, "content"), ""); /* never null: llama.cpp answers 500 */
  const cJSON *tc = cJSON_GetObjectItem(msg_at(q, 2), "tool_calls");
  assert_int_equal(cJSON_GetArraySize(tc), 2);
  assert_string_equal(chat_get_str(cJSON_GetArrayItem(tc, 1), "id"), "call_b");
  assert_string_equal(str_at(q, 3, "tool_call_id"), "call_a");
  assert_string_equal(str_at(q, 3, "content"), "sunny");
  assert_string_equal(str_at(q, 4, "tool_call_id"), "call_b");
  assert_string_equal(str_at(q, 4, "content"), "rainy");
  cJSON_Delete(q);
  assert_int_equal(f->hist.commits, 1);
  assert_null(f->hist.pending);
  chat_record r;
  assert_int_equal(chat_record_parse(f->hist.turns[0], strlen(f->hist.turns[0]), &r), AW_OK);
  assert_int_equal(cJSON_GetArraySize(r.msgs), 5);
  assert_string_equal(chat_msgs_final_text(r.msgs), "Sunny and rainy.");
  chat_record_free(&r);
  bfx_free(f);
}

static void test_recovery_with_a_pending_round_offers_the_same_calls_without_a_request(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  bfx_hist_set_pending(&f->hist, "e-1", PENDING_CALLS("e-1", 2));
  be_turn_input in = input("e-1", &ASST);
  in.recover = 1;
  in.checkpoint = "c1 2 0";
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_TOOL_CALLS);
  assert_int_equal(t.replayed, 1);
  assert_int_equal(t.ncalls, 2);
  assert_string_equal(t.call_id[0], "call_a");
  assert_string_equal(t.call_args[0], "{\"city\":\"Paris\"}");
  assert_string_equal(t.call_id[1], "call_b");
  assert_string_equal(t.res_checkpoint, "c1 3 1");
  assert_int_equal(ss_count(&f->srv, f->post), 0);
  assert_int_equal(f->hist.saves + f->hist.commits, 0);
  bfx_free(f);
}

static void test_continue_after_the_next_round_was_saved_offers_the_later_calls_again(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  /* Round 1's outputs were taken and round 2's calls saved before a crash. */
  bfx_hist_set_pending(&f->hist, "e-1",
                 "{\"e\":\"e-1\",\"g\":0,\"m\":[{\"role\":\"user\",\"content\":\"Hi\"},{\"role\":\"assistant\","
                 "\"content\":\"\",\"tool_calls\":[{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":"
                 "\"get_weather\",\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_a\",\"content\":"
                 "\"sunny\"},{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"call_z\",\"type\":"
                 "\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"day\\\":2}\"}}]}]}");
  be_turn_input in = input("e-1", &ASST);
  in.checkpoint = "c1 0 1";
  be_tool_output outs[] = {{"call_a", "sunny"}};
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_continue(f->be, &in, 1, outs, 1, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_TOOL_CALLS);
  assert_int_equal(t.replayed, 1);
  assert_int_equal(t.ncalls, 1);
  assert_string_equal(t.call_id[0], "call_z");
  assert_string_equal(t.res_checkpoint, "c1 0 2");
  assert_int_equal(ss_count(&f->srv, f->post), 0);
  bfx_free(f);
}

static void test_continue_without_a_pending_turn_ends_failed_turn_state_lost(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  in.checkpoint = "c1 0 1";
  be_tool_output outs[] = {{"call_a", "sunny"}};
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_continue(f->be, &in, 1, outs, 1, &EV, &t, &op), AW_OK);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "failed");
  assert_string_equal(t.error_code, "turn_state_lost");
  assert_non_null(strstr(t.errmsg, "expired"));
  assert_int_equal(ss_count(&f->srv, f->post), 0);
  bfx_free(f);
}

static void test_tool_calls_without_routing_end_cancelled_and_commit_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_CALLS));
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  in.tools_routed = 0;
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "cancelled");
  assert_string_equal(t.error_code, "tool_calls_unsupported");
  assert_int_equal(t.ncalls, 0);
  assert_int_equal(f->hist.saves + f->hist.commits, 0);
  bfx_free(f);
}

static void test_missing_tool_call_ids_are_numbered_by_round_and_index(void **state) {
  (void)state;
  chat_stream st;
  chat_stream_init(&st, 4096);
  chat_ev e;
  const char *c1 = "{\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
                   "{\"name\":\"f\",\"arguments\":\"{}\"}},{\"index\":1,\"id\":\"dup\",\"function\":{\"name\":\"g\"}},"
                   "{\"index\":2,\"id\":\"dup\",\"function\":{\"name\":\"g\"}}]},\"finish_reason\":\"tool_calls\"}]}";
  assert_int_equal(chat_stream_event(&st, c1, strlen(c1), &e), AW_OK);
  be_tool_call calls[4];
  size_t n;
  assert_int_equal(chat_stream_calls(&st, 2, calls, &n), AW_OK);
  assert_int_equal(n, 3);
  assert_string_equal(calls[0].id, "call_2_0");
  assert_string_equal(calls[1].id, "dup");
  assert_string_equal(calls[2].id, "call_2_2"); /* unique within the round */
  assert_string_equal(calls[2].arguments, "");
  chat_stream_reset(&st);
  /* A server id equal to the one a later call would be given. */
  const char *c2 = "{\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":"
                   "\"call_1_1\",\"function\":{\"name\":\"f\"}},{\"index\":1,\"function\":{\"name\":\"g\"}}]}}]}";
  assert_int_equal(chat_stream_event(&st, c2, strlen(c2), &e), AW_OK);
  assert_int_equal(chat_stream_calls(&st, 1, calls, &n), AW_OK);
  assert_int_equal(n, 2);
  assert_string_equal(calls[0].id, "call_1_1");
  assert_string_equal(calls[1].id, "call_1_1_1");
  chat_stream_free(&st);
}

/* ---- retries and generations ------------------------------------------------------------------------------ */

static void test_500_then_success_retries_without_a_new_attempt(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, (ss_resp){.status = 500, .body = "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}"});
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.deltas, "Hello");
  assert_int_equal(t.res_attempt, 0); /* nothing was delivered before the 500 */
  assert_int_equal(ss_count(&f->srv, f->post), 2);
  assert_int_equal(f->hist.commits, 1);
  bfx_free(f);
}

static void test_stream_cut_after_deltas_is_generated_again_as_attempt_1(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, (ss_resp){.status = 200, .body = TEXT_CHUNKS("chatcmpl-1", "Hel", "p"),
                                 .ctype = "text/event-stream", .mode = SS_DROP});
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_string_equal(t.status, "completed");
  assert_string_equal(t.deltas, "HelpHello");     /* all that was delivered */
  assert_string_equal(t.attempt_text, "Hello");   /* what a reader of the highest attempt keeps */
  assert_int_equal(t.attempt, 1);
  assert_int_equal(t.res_attempt, 1);
  assert_string_equal(t.res_checkpoint, "c1 1 0");
  assert_string_equal(t.text, "Hello");
  assert_int_equal(ss_count(&f->srv, f->post), 2);
  bfx_free(f);
}

static void test_recovered_turn_generates_from_the_checkpoints_generation_plus_one(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  in.recover = 1;
  in.checkpoint = "c1 1 0";
  tres t;
  run_start(f, &in, &t);
  assert_string_equal(t.status, "completed");
  assert_int_equal(t.attempt, 2); /* told before the first delta */
  assert_string_equal(t.attempt_text, "Hello");
  assert_string_equal(t.res_checkpoint, "c1 2 0");
  bfx_free(f);
}

static void test_stream_without_finish_reason_ends_error_after_bounded_retries(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  f->cfg.max_retries = 2;
  ss_add_resp(f->post, sse(TEXT_CHUNKS("chatcmpl-1", "Hel", "lo")));
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EIO);
  assert_string_equal(t.error_code, "api_connection_error");
  assert_int_equal(ss_count(&f->srv, f->post), 3);
  assert_int_equal(f->hist.commits, 0);
  bfx_free(f);
}

static void test_empty_200_body_is_retried_twice_then_api_invalid_response(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, (ss_resp){.status = 200, .body = "", .ctype = "text/event-stream"});
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EPARSE);
  assert_string_equal(t.error_code, "api_invalid_response");
  assert_int_equal(ss_count(&f->srv, f->post), 3);
  bfx_free(f);
}

/* ---- endings ----------------------------------------------------------------------------------------------- */

static void test_context_length_exceeded_ends_failed_with_that_code(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"This model's maximum context length "
                                                        "is 4096 tokens\",\"type\":\"invalid_request_error\","
                                                        "\"code\":\"context_length_exceeded\"}}"});
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "failed");
  assert_string_equal(t.error_code, "context_length_exceeded");
  assert_non_null(strstr(t.errmsg, "maximum context length"));
  assert_int_equal(ss_count(&f->srv, f->post), 1);
  assert_int_equal(f->hist.commits, 0);
  bfx_free(f);
}

static void test_unauthorized_ends_error_of_the_reject_class_without_the_key(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, (ss_resp){.status = 401, .body = "{\"error\":{\"message\":\"Incorrect API key provided: "
                                                        "sk-test-secret\",\"type\":\"invalid_request_error\","
                                                        "\"code\":\"invalid_api_key\"}}"});
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EHTTP4XX);
  assert_int_equal(aw_error_classify(t.err), AW_CLASS_REJECT);
  assert_string_equal(t.error_code, "invalid_api_key");
  assert_null(strstr(t.errmsg, "sk-test-secret"));
  bfx_free(f);
}

static void test_length_finish_is_incomplete_and_committed(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(TEXT_CHUNKS("chatcmpl-1", "Hel", "lo") CHUNK("chatcmpl-1", "{}", "\"length\"") DONE_));
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_string_equal(t.status, "incomplete");
  assert_string_equal(t.error_code, "max_output_tokens");
  assert_string_equal(t.text, "Hello");
  assert_int_equal(f->hist.commits, 1);
  /* Replayed later with the same status. */
  in.recover = 1;
  run_start(f, &in, &t);
  assert_int_equal(t.replayed, 1);
  assert_string_equal(t.status, "incomplete");
  assert_string_equal(t.error_code, "max_output_tokens");
  assert_string_equal(t.text, "Hello");
  assert_int_equal(ss_count(&f->srv, f->post), 1);
  bfx_free(f);
}

static void test_error_object_mid_stream_ends_failed_with_its_code(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(TEXT_CHUNKS("chatcmpl-1", "Hel", "lo")
                               CK("{\"error\":{\"message\":\"bad grammar\",\"type\":\"invalid_request_error\","
                                  "\"code\":\"invalid_grammar\"}}")));
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "failed");
  assert_string_equal(t.error_code, "invalid_grammar");
  assert_string_equal(t.errmsg, "bad grammar");
  assert_int_equal(f->hist.commits, 0);
  bfx_free(f);
}

static void test_answer_over_max_answer_bytes_ends_answer_too_large_and_commits_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  f->cfg.max_answer_bytes = 4;
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_ETOOBIG);
  assert_string_equal(t.error_code, "answer_too_large");
  assert_int_equal(ss_count(&f->srv, f->post), 1);
  assert_int_equal(f->hist.commits, 0);
  bfx_free(f);
}

static void test_store_failure_at_commit_ends_error_eredis(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  f->hist.fail_commit = 1;
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EREDIS);
  assert_string_equal(t.error_code, "store_unavailable");
  assert_int_equal(aw_error_classify(t.err), AW_CLASS_RETRY);
  assert_int_equal(f->hist.nturns, 0);
  bfx_free(f);
}

static void test_store_failure_at_load_ends_error_eredis_without_request(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  bfx_start(f);
  f->hist.fail_load = 1;
  be_turn_input in = input("e-1", &ASST);
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ERROR);
  assert_int_equal(t.err, AW_EREDIS);
  assert_int_equal(ss_count(&f->srv, f->post), 0);
  bfx_free(f);
}

static void test_inline_image_is_sent_as_data_url_and_stored_as_placeholder(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, sse(SSE_HELLO));
  bfx_start(f);
  static const unsigned char png[] = {0x89, 'P', 'N', 'G'};
  const contract_part parts[] = {{.type = CONTRACT_PART_TEXT, .text = "What is this?", .text_len = 13},
                                 {.type = CONTRACT_PART_IMAGE_FILE, .data = png, .data_len = sizeof png,
                                  .media_type = "image/png", .detail = "high"}};
  be_turn_input in = input("e-1", &ASST);
  in.parts = parts;
  in.nparts = 2;
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "completed");
  assert_int_equal(ss_count(&f->srv, f->post), 1);
  /* Sent: the image as a data: URL (base64 of the bytes) with its detail. */
  cJSON *q = last_request(f);
  const cJSON *msgs = chat_get(q, "messages");
  const cJSON *user = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
  const cJSON *img = cJSON_GetArrayItem(chat_get(user, "content"), 1);
  assert_string_equal(chat_get_str(img, "type"), "image_url");
  assert_string_equal(chat_get_str(chat_get(img, "image_url"), "url"), "data:image/png;base64,iVBORw==");
  assert_string_equal(chat_get_str(chat_get(img, "image_url"), "detail"), "high");
  cJSON_Delete(q);
  /* Kept: "[image]" in place of the bytes. */
  assert_int_equal(f->hist.nturns, 1);
  assert_null(strstr(f->hist.turns[0], "base64"));
  chat_record r;
  assert_int_equal(chat_record_parse(f->hist.turns[0], strlen(f->hist.turns[0]), &r), AW_OK);
  const cJSON *kept = cJSON_GetArrayItem(chat_get(cJSON_GetArrayItem(r.msgs, 0), "content"), 1);
  assert_string_equal(chat_get_str(kept, "type"), "text");
  assert_string_equal(chat_get_str(kept, "text"), CHAT_IMAGE_PLACEHOLDER);
  chat_record_free(&r);
  bfx_free(f);
}

static void test_image_file_by_id_ends_unsupported_content_without_request(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  bfx_start(f);
  const contract_part parts[] = {{.type = CONTRACT_PART_TEXT, .text = "What is this?", .text_len = 13},
                                 {.type = CONTRACT_PART_IMAGE_FILE, .text = "file-abc", .text_len = 8}};
  be_turn_input in = input("e-1", &ASST);
  in.parts = parts;
  in.nparts = 2;
  tres t;
  run_start(f, &in, &t);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.error_code, "unsupported_content");
  assert_non_null(strstr(t.errmsg, "image_file"));
  assert_int_equal(ss_count(&f->srv, f->post), 0);
  bfx_free(f);
}

static void test_image_url_parts_are_sent_as_content_parts(void **state) {
  (void)state;
  const contract_part parts[] = {{.type = CONTRACT_PART_TEXT, .text = "What is this?", .text_len = 13},
                                 {.type = CONTRACT_PART_IMAGE_URL, .text = "https://x/y.png", .detail = "low"}};
  cJSON *m = NULL;
  assert_int_equal(chat_json_user_message(parts, 2, &m, NULL), AW_OK);
  char *s = cJSON_PrintUnformatted(m);
  assert_string_equal(s, "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"What is this?\"},{\"type\":"
                         "\"image_url\",\"image_url\":{\"url\":\"https://x/y.png\",\"detail\":\"low\"}}]}");
  cJSON_free(s);
  cJSON_Delete(m);
  const contract_part texts[] = {{.type = CONTRACT_PART_TEXT, .text = "a"}, {.type = CONTRACT_PART_TEXT, .text = "b"}};
  assert_int_equal(chat_json_user_message(texts, 2, &m, NULL), AW_OK);
  assert_string_equal(chat_get_str(m, "content"), "a\n\nb");
  cJSON_Delete(m);
}

static void test_cancel_ends_cancelled_and_commits_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  in.checkpoint = "c1 0 1";
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_cancel(f->be, &in, &EV, &t, &op), AW_OK);
  assert_int_equal(t.done, 0);
  ss_run_until(&f->loop, &t.done);
  assert_int_equal(t.end, BE_END_ANSWER);
  assert_string_equal(t.status, "cancelled");
  assert_int_equal(f->hist.loads + f->hist.saves + f->hist.commits, 0);
  assert_int_equal(ss_count(&f->srv, f->post), 0);
  bfx_free(f);
}

static int cb_flag;
static void flag_cb(uv_timer_t *h) {
  (void)h;
  cb_flag = 1;
  uv_stop(bfx_loop);
}

static void test_cancelled_turn_calls_back_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  ss_add_resp(f->post, (ss_resp){.status = 200, .body = TEXT_CHUNKS("chatcmpl-1", "Hel", "lo"),
                                 .ctype = "text/event-stream", .mode = SS_HANG});
  bfx_start(f);
  be_turn_input in = input("e-1", &ASST);
  /* Cancelled while the load is out (the store has no cancel): freed when
   * the store answers, 20 ms later. */
  f->hist.delay_ms = 20;
  tres t = {0};
  be_op *op;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t, &op), AW_OK);
  for (int i = 0; i < 100 && !f->hist.loads; i++) uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(f->hist.loads, 1);
  be_op_cancel(op);
  f->hist.delay_ms = 0;
  /* Cancelled in the middle of the stream. */
  tres t2 = {0};
  be_op *op2;
  assert_int_equal(be_turn_start(f->be, &in, &EV, &t2, &op2), AW_OK);
  for (int i = 0; i < 500 && t2.ndeltas < 5; i++) uv_run(&f->loop, UV_RUN_ONCE);
  assert_string_equal(t2.deltas, "Hello");
  be_op_cancel(op2);
  uv_timer_t tm;
  uv_timer_init(&f->loop, &tm);
  uv_timer_start(&tm, flag_cb, 50, 0);
  cb_flag = 0;
  ss_run_until(&f->loop, &cb_flag);
  uv_close((uv_handle_t *)&tm, NULL);
  assert_int_equal(t.ndone + t2.ndone, 0);
  assert_int_equal(f->hist.commits, 0);
  bfx_free(f);
}

/* ---- construction and start-up ----------------------------------------------------------------------------- */

typedef struct eres {
  int done, err;
  char msg[384];
  int id_null;
} eres;

static void e_done(void *o, const be_result *r) {
  eres *e = o;
  e->done = 1;
  e->err = r->err;
  snprintf(e->msg, sizeof e->msg, "%s", r->errmsg ? r->errmsg : "");
  e->id_null = r->id == NULL;
  uv_stop(bfx_loop);
}

static void test_assistant_ensure_answers_next_iteration_and_refuses_hosted_tools(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_CHAT);
  bfx_start(f);
  eres e = {0};
  be_op *op;
  assert_int_equal(be_assistant_ensure(f->be, &ASST, NULL, e_done, &e, &op), AW_OK);
  assert_int_equal(e.done, 0);
  ss_run_until(&f->loop, &e.done);
  assert_int_equal(e.err, AW_OK);
  assert_true(e.id_null);
  be_assistant a = ASST;
  a.tools_json = "[{\"type\":\"code_interpreter\"}]";
  memset(&e, 0, sizeof e);
  assert_int_equal(be_assistant_ensure(f->be, &a, NULL, e_done, &e, &op), AW_OK);
  ss_run_until(&f->loop, &e.done);
  assert_int_equal(e.err, AW_EINVAL);
  assert_non_null(strstr(e.msg, "code_interpreter"));
  assert_non_null(strstr(e.msg, "bot"));
  a = ASST;
  a.tool_choice_json = "{\"type\":\"file_search\"}";
  memset(&e, 0, sizeof e);
  assert_int_equal(be_assistant_ensure(f->be, &a, NULL, e_done, &e, &op), AW_OK);
  ss_run_until(&f->loop, &e.done);
  assert_int_equal(e.err, AW_EINVAL);
  assert_non_null(strstr(e.msg, "tool_choice"));
  bfx_free(f);
}

static void test_new_requires_a_history_store(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  be_http_config cfg;
  be_http_config_default(&cfg);
  cfg.base_url = "http://127.0.0.1:1/v1";
  cfg.api_key = "k";
  be_backend *be = NULL;
  char err[160] = "";
  assert_int_equal(be_chat_new(&loop, &cfg, &be, err, sizeof err), AW_EINVAL);
  assert_non_null(strstr(err, "history"));
  assert_null(be);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- the pure parts -------------------------------------------------------------------------------------------- */

static void test_checkpoint_round_trips_and_refuses_others(void **state) {
  (void)state;
  char cp[BE_CHECKPOINT_MAX];
  int g, r;
  assert_int_equal(chat_checkpoint_format(cp, sizeof cp, 12, 3), AW_OK);
  assert_string_equal(cp, "c1 12 3");
  assert_int_equal(chat_checkpoint_parse(cp, &g, &r), AW_OK);
  assert_int_equal(g, 12);
  assert_int_equal(r, 3);
  assert_int_equal(chat_checkpoint_parse("r1 conv_1 resp_1 0", &g, &r), AW_EINVAL);
  assert_int_equal(chat_checkpoint_parse("c1 1", &g, &r), AW_EINVAL);
  assert_int_equal(chat_checkpoint_parse("c1 1 2 3", &g, &r), AW_EINVAL);
  assert_int_equal(chat_checkpoint_parse("c1 -1 2", &g, &r), AW_EINVAL);
  assert_int_equal(chat_checkpoint_parse("c1 99999999 2", &g, &r), AW_EINVAL);
}

static void test_stream_mapper_reads_usage_done_and_bounds(void **state) {
  (void)state;
  chat_stream st;
  chat_stream_init(&st, 4);
  chat_ev e;
  const char *u = "{\"id\":\"c\",\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}";
  assert_int_equal(chat_stream_event(&st, u, strlen(u), &e), AW_OK);
  assert_int_equal(st.usage.present, 1);
  assert_int_equal(st.usage.total_tokens, 7);
  assert_int_equal(chat_stream_event(&st, "nope", 4, &e), AW_EPARSE);
  const char *d = "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"abc\"}}]}";
  assert_int_equal(chat_stream_event(&st, d, strlen(d), &e), AW_OK);
  assert_int_equal(e, CHAT_EV_DELTA);
  assert_int_equal(chat_stream_event(&st, d, strlen(d), &e), AW_OK); /* 6 bytes > 4 */
  assert_int_equal(st.err, AW_ETOOBIG);
  chat_stream_reset(&st);
  assert_int_equal(chat_stream_event(&st, " [DONE] ", 8, &e), AW_OK);
  assert_int_equal(st.done, 1);
  assert_int_equal(chat_stream_event(&st, d, strlen(d), &e), AW_OK); /* nothing after the end */
  assert_int_equal(e, CHAT_EV_NONE);
  chat_stream_free(&st);
}

int main(void) {
  log_set_level(LOG_OFF);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_first_turn_streams_deltas_answers_and_commits_user_and_assistant_once),
      cmocka_unit_test(test_second_turn_request_carries_the_first_turns_messages),
      cmocka_unit_test(test_history_beyond_max_messages_is_left_out_by_whole_turns),
      cmocka_unit_test(test_history_over_max_tokens_is_left_out_by_whole_turns),
      cmocka_unit_test(test_sent_history_never_exceeds_the_budget_for_random_histories),
      cmocka_unit_test(test_committed_event_is_answered_from_history_without_any_request),
      cmocka_unit_test(test_commit_that_finds_the_event_committed_answers_with_the_stored_turn),
      cmocka_unit_test(test_parallel_tool_calls_save_a_pending_round_and_continue_commits_the_whole_turn),
      cmocka_unit_test(test_recovery_with_a_pending_round_offers_the_same_calls_without_a_request),
      cmocka_unit_test(test_continue_after_the_next_round_was_saved_offers_the_later_calls_again),
      cmocka_unit_test(test_continue_without_a_pending_turn_ends_failed_turn_state_lost),
      cmocka_unit_test(test_tool_calls_without_routing_end_cancelled_and_commit_nothing),
      cmocka_unit_test(test_missing_tool_call_ids_are_numbered_by_round_and_index),
      cmocka_unit_test(test_500_then_success_retries_without_a_new_attempt),
      cmocka_unit_test(test_stream_cut_after_deltas_is_generated_again_as_attempt_1),
      cmocka_unit_test(test_recovered_turn_generates_from_the_checkpoints_generation_plus_one),
      cmocka_unit_test(test_stream_without_finish_reason_ends_error_after_bounded_retries),
      cmocka_unit_test(test_empty_200_body_is_retried_twice_then_api_invalid_response),
      cmocka_unit_test(test_context_length_exceeded_ends_failed_with_that_code),
      cmocka_unit_test(test_unauthorized_ends_error_of_the_reject_class_without_the_key),
      cmocka_unit_test(test_length_finish_is_incomplete_and_committed),
      cmocka_unit_test(test_error_object_mid_stream_ends_failed_with_its_code),
      cmocka_unit_test(test_answer_over_max_answer_bytes_ends_answer_too_large_and_commits_nothing),
      cmocka_unit_test(test_store_failure_at_commit_ends_error_eredis),
      cmocka_unit_test(test_store_failure_at_load_ends_error_eredis_without_request),
      cmocka_unit_test(test_inline_image_is_sent_as_data_url_and_stored_as_placeholder),
      cmocka_unit_test(test_image_file_by_id_ends_unsupported_content_without_request),
      cmocka_unit_test(test_image_url_parts_are_sent_as_content_parts),
      cmocka_unit_test(test_cancel_ends_cancelled_and_commits_nothing),
      cmocka_unit_test(test_cancelled_turn_calls_back_nothing),
      cmocka_unit_test(test_assistant_ensure_answers_next_iteration_and_refuses_hosted_tools),
      cmocka_unit_test(test_new_requires_a_history_store),
      cmocka_unit_test(test_checkpoint_round_trips_and_refuses_others),
      cmocka_unit_test(test_stream_mapper_reads_usage_done_and_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

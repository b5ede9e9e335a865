/* test_backend_assistants_manage.c -- conversation management on the
 * Assistants backend (be_conv_history / be_conv_append / be_conv_delete)
 * against a scripted in-process server and a fake store: a history page
 * mapped (roles, created_at, annotations, cursors), no thread -> an empty
 * page without a request, an unknown cursor -> message_not_found; append
 * creating and claiming the thread, skipping what an ambiguous attempt or an
 * earlier delivery already added, posting again only when certainly absent;
 * delete with 404 = deleted.  Needs: loopback networking only (no
 * simulator, no Redis).  Every test frees the backend, runs the loop until
 * its handles closed and checks uv_loop_close; ASan checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backend.h"
#include "log.h"
#include "backend_fixture.h"

/* ---- what a conversation op reported ------------------------------------------ */

#define MAXM 8

typedef struct cres {
  be_op *op;
  int done, ncalls, err, http_status, has_more;
  char code[64], errmsg[512], handle[64], first_id[64], last_id[64];
  size_t n;
  struct {
    char id[64], role[16], text[128];
    int64_t created_at;
    size_t nann;
    char ann_type[32], ann_file[32];
    int64_t ann_start, ann_end;
  } m[MAXM];
  char checkpoint[128];
  int ncheckpoints;
  int cancel_on_checkpoint;
} cres;

static void on_checkpoint(void *opaque, const char *cp) {
  cres *c = opaque;
  c->ncheckpoints++;
  snprintf(c->checkpoint, sizeof c->checkpoint, "%s", cp);
  if (c->cancel_on_checkpoint) {
    be_op_cancel(c->op);
    c->done = 1; /* nothing else follows */
    uv_stop(bfx_loop);
  }
}

static void on_done(void *opaque, const be_conv_result *r) {
  cres *c = opaque;
  uv_stop(bfx_loop);
  c->done = 1;
  c->ncalls++;
  c->err = r->err;
  c->http_status = r->http_status;
  c->has_more = r->has_more;
  snprintf(c->code, sizeof c->code, "%s", r->error_code ? r->error_code : "");
  snprintf(c->errmsg, sizeof c->errmsg, "%s", r->errmsg ? r->errmsg : "");
  snprintf(c->handle, sizeof c->handle, "%s", r->handle ? r->handle : "");
  snprintf(c->first_id, sizeof c->first_id, "%s", r->first_id ? r->first_id : "");
  snprintf(c->last_id, sizeof c->last_id, "%s", r->last_id ? r->last_id : "");
  c->n = r->nmessages;
  for (size_t i = 0; i < r->nmessages && i < MAXM; i++) {
    const contract_out_message *m = &r->messages[i];
    snprintf(c->m[i].id, sizeof c->m[i].id, "%s", m->id);
    snprintf(c->m[i].role, sizeof c->m[i].role, "%s", m->role ? m->role : "(none)");
    c->m[i].created_at = m->created_at;
    if (m->nparts) {
      snprintf(c->m[i].text, sizeof c->m[i].text, "%s", m->parts[0].text);
      c->m[i].nann = m->parts[0].nannotations;
      if (m->parts[0].nannotations) {
        const contract_annotation *a = &m->parts[0].annotations[0];
        snprintf(c->m[i].ann_type, sizeof c->m[i].ann_type, "%s", a->type);
        snprintf(c->m[i].ann_file, sizeof c->m[i].ann_file, "%s", a->file_id);
        c->m[i].ann_start = a->start_index;
        c->m[i].ann_end = a->end_index;
      }
    }
  }
}

static const be_conv_events EVENTS = {.on_checkpoint = on_checkpoint, .on_done = on_done};

static void run(bfx *f, cres *c) {
  /* Callbacks never run inside the starting call. */
  assert_int_equal(c->done, 0);
  ss_run_until(&f->loop, &c->done);
  assert_int_equal(c->ncalls, c->cancel_on_checkpoint ? 0 : 1);
}

/* Start op (be_conv_history, _append, _delete) on in and run it. */
typedef int (*conv_fn)(be_backend *, const be_conv_input *, const be_conv_events *, void *, be_op **);

static void run_op(bfx *f, conv_fn op, const be_conv_input *in, cres *c) {
  assert_int_equal(op(f->be, in, &EVENTS, c, &c->op), AW_OK);
  run(f, c);
}

/* ---- history --------------------------------------------------------------------- */

static const char *PAGE =
    "{\"object\":\"list\",\"data\":["
    "{\"id\":\"msg_a2\",\"object\":\"thread.message\",\"created_at\":1700000002,\"role\":\"assistant\","
    "\"content\":[{\"type\":\"text\",\"text\":{\"value\":\"See the manual.\",\"annotations\":["
    "{\"type\":\"file_citation\",\"text\":\"the manual\",\"file_citation\":{\"file_id\":\"file_9\"},"
    "\"start_index\":4,\"end_index\":14}]}}],\"metadata\":{}},"
    "{\"id\":\"msg_u1\",\"object\":\"thread.message\",\"created_at\":1700000001,\"role\":\"user\","
    "\"content\":[{\"type\":\"text\",\"text\":{\"value\":\"How?\",\"annotations\":[]}}],\"metadata\":{}}],"
    "\"first_id\":\"msg_a2\",\"last_id\":\"msg_u1\",\"has_more\":true}";

static void test_history_page_maps_roles_created_at_annotations_and_cursors(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_add_resp(list, (ss_resp){.status = 200, .body = PAGE});
  bfx_start(f);
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = "thread_1", .limit = 2,
                      .after = "msg_a3"};
  run_op(f, be_conv_history, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_string_equal(c.handle, "thread_1");
  assert_int_equal(c.n, 2);
  assert_string_equal(c.m[0].id, "msg_a2");
  assert_string_equal(c.m[0].role, "assistant");
  assert_int_equal(c.m[0].created_at, 1700000002);
  assert_string_equal(c.m[0].text, "See the manual.");
  assert_int_equal(c.m[0].nann, 1);
  assert_string_equal(c.m[0].ann_type, "file_citation");
  assert_string_equal(c.m[0].ann_file, "file_9");
  assert_int_equal(c.m[0].ann_start, 4);
  assert_int_equal(c.m[0].ann_end, 14);
  assert_string_equal(c.m[1].id, "msg_u1");
  assert_string_equal(c.m[1].role, "user");
  assert_int_equal(c.m[1].created_at, 1700000001);
  assert_string_equal(c.m[1].text, "How?");
  assert_int_equal(c.has_more, 1);
  assert_string_equal(c.first_id, "msg_a2");
  assert_string_equal(c.last_id, "msg_u1");
  char *q = ss_last_query(&f->srv, list);
  assert_non_null(strstr(q, "limit=2"));
  assert_non_null(strstr(q, "order=desc"));
  assert_non_null(strstr(q, "after=msg_a3"));
  assert_null(strstr(q, "before="));
  free(q);
  bfx_free(f);
}

static void test_history_before_cursor_and_ascending_order_are_sent_as_asked(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[],\"first_id\":\"\","
                                                    "\"last_id\":\"\",\"has_more\":false}"});
  bfx_start(f);
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = "thread_1", .limit = 20,
                      .before = "msg_x7", .order_asc = 1};
  run_op(f, be_conv_history, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(c.n, 0);
  assert_int_equal(c.has_more, 0);
  assert_string_equal(c.first_id, ""); /* an empty page has no cursors */
  assert_string_equal(c.last_id, "");
  char *q = ss_last_query(&f->srv, list);
  assert_non_null(strstr(q, "before=msg_x7"));
  assert_non_null(strstr(q, "order=asc"));
  assert_non_null(strstr(q, "limit=20"));
  assert_null(strstr(q, "after="));
  free(q);
  bfx_free(f);
}

static void test_history_without_thread_is_an_empty_page_without_any_request(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_add_resp(list, (ss_resp){.status = 500, .body = "{}"});
  bfx_start(f);
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = NULL, .limit = 20,
                      .after = "msg_1"};
  run_op(f, be_conv_history, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(c.n, 0);
  assert_string_equal(c.handle, "");
  assert_int_equal(ss_count(&f->srv, list), 0);
  assert_int_equal(ss_connections(&f->srv), 0);
  bfx_free(f);
}

static void test_history_unknown_cursor_is_message_not_found(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  /* The simulator's answer (400 invalid_value on the cursor); a 404 from
   * another server is read the same way: the cursor's message is asked for. */
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_add_resp(list, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Invalid 'after': no object with id "
                                                    "'msg_gone' in this list.\",\"type\":\"invalid_request_error\","
                                                    "\"param\":\"after\",\"code\":\"invalid_value\"}}"});
  ss_add_resp(list, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No message found with id "
                                                    "'msg_gone'.\",\"type\":\"invalid_request_error\"}}"});
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages/msg_gone");
  ss_add_resp(get, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No message found with id "
                                                   "'msg_gone'.\",\"type\":\"invalid_request_error\"}}"});
  bfx_start(f);
  for (int i = 0; i < 2; i++) {
    cres c = {0};
    be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = "thread_1", .limit = 20,
                        .after = "msg_gone"};
    run_op(f, be_conv_history, &in, &c);
    assert_int_equal(c.err, AW_EINVAL);
    assert_int_equal(aw_error_classify(c.err), AW_CLASS_REJECT);
    assert_string_equal(c.code, "message_not_found");
    assert_non_null(strstr(c.errmsg, "msg_gone"));
    assert_int_equal(c.n, 0);
  }
  assert_int_equal(ss_count(&f->srv, get), 2);
  /* Not even an id: no request at all. */
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = "thread_1", .limit = 20,
                      .before = "../x?y"};
  run_op(f, be_conv_history, &in, &c);
  assert_string_equal(c.code, "message_not_found");
  assert_null(strstr(c.errmsg, "../x?y")); /* input is not echoed */
  assert_int_equal(ss_count(&f->srv, list), 2);
  bfx_free(f);
}

static void test_history_400_with_a_known_cursor_keeps_the_api_error(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_add_resp(list, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Something else.\","
                                                    "\"type\":\"invalid_request_error\",\"code\":\"other_thing\"}}"});
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages/msg_ok");
  ss_add_resp(get, (ss_resp){.status = 200, .body = "{\"id\":\"msg_ok\",\"role\":\"user\",\"content\":[]}"});
  bfx_start(f);
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = "thread_1", .limit = 20,
                      .after = "msg_ok"};
  run_op(f, be_conv_history, &in, &c);
  assert_int_equal(c.err, AW_EHTTP4XX);
  assert_string_equal(c.code, "other_thing");
  assert_int_equal(c.http_status, 400);
  assert_int_equal(ss_count(&f->srv, get), 1);
  bfx_free(f);
}

/* ---- append ---------------------------------------------------------------------- */

static contract_part P_HELLO = {.type = CONTRACT_PART_TEXT, .text = "Context from CRM", .text_len = 16};
static contract_part P_AGENT = {.type = CONTRACT_PART_TEXT, .text = "A human agent wrote this", .text_len = 24};

static const char *msg_json(const char *id, const char *role, const char *text, int idx, const char *ev) {
  static char b[4][512];
  static int k;
  char *o = b[k++ % 4];
  snprintf(o, 512,
           "{\"id\":\"%s\",\"object\":\"thread.message\",\"created_at\":1700000100,\"role\":\"%s\","
           "\"content\":[{\"type\":\"text\",\"text\":{\"value\":\"%s\",\"annotations\":[]}}],"
           "\"metadata\":{\"aw_event_id\":\"%s\",\"aw_index\":\"%d\"}}",
           id, role, text, ev, idx);
  return o;
}

static void test_append_without_thread_creates_and_claims_it_then_posts_each_message(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *th = ss_route_add(&f->srv, "POST", "/v1/threads");
  ss_add_resp(th, (ss_resp){.status = 200, .body = "{\"id\":\"thread_new\",\"object\":\"thread\"}"});
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/threads/thread_new/messages");
  char b0[512], b1[512];
  snprintf(b0, sizeof b0, "%s", msg_json("msg_p0", "user", "Context from CRM", 0, "e1"));
  snprintf(b1, sizeof b1, "%s", msg_json("msg_p1", "assistant", "A human agent wrote this", 1, "e1"));
  ss_add_resp(post, (ss_resp){.status = 200, .body = b0});
  ss_add_resp(post, (ss_resp){.status = 200, .body = b1});
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/threads/thread_new/messages");
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[],\"has_more\":false}"});
  bfx_start(f);
  contract_in_message msgs[2] = {{.role = "user", .parts = &P_HELLO, .nparts = 1},
                                 {.role = "assistant", .parts = &P_AGENT, .nparts = 1}};
  cres c = {0};
  /* recover: a fresh thread cannot hold anything of ours, so no lookup */
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .messages = msgs, .nmessages = 2,
                      .recover = 1};
  run_op(f, be_conv_append, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(f->store.claims, 1);
  assert_string_equal(f->store.key, "thread");
  assert_string_equal(f->store.conv, "c1");
  assert_string_equal(f->store.handle, "thread_new");
  assert_string_equal(c.handle, "thread_new");
  assert_int_equal(c.ncheckpoints, 1);
  assert_string_equal(c.checkpoint, "a1m thread_new");
  assert_int_equal(ss_count(&f->srv, th), 1);
  assert_int_equal(ss_count(&f->srv, post), 2);
  assert_int_equal(ss_count(&f->srv, list), 0);
  bfx_expect_body(f, post, "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"A human agent wrote "
                         "this\"}],\"metadata\":{\"aw_event_id\":\"e1\",\"aw_index\":\"1\",\"conversation_id\":\"c1\"}}");
  assert_int_equal(c.n, 2);
  assert_string_equal(c.m[0].id, "msg_p0");
  assert_string_equal(c.m[0].role, "user");
  assert_string_equal(c.m[1].id, "msg_p1");
  assert_string_equal(c.m[1].role, "assistant");
  assert_string_equal(c.m[1].text, "A human agent wrote this");
  bfx_free(f);
}

static void test_append_lost_claim_race_deletes_its_thread_and_writes_to_the_winner(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  snprintf(f->store.handle, sizeof f->store.handle, "thread_w");
  ss_route *th = ss_route_add(&f->srv, "POST", "/v1/threads");
  ss_add_resp(th, (ss_resp){.status = 200, .body = "{\"id\":\"thread_mine\",\"object\":\"thread\"}"});
  ss_route *del = ss_route_add(&f->srv, "DELETE", "/v1/threads/thread_mine");
  ss_add_resp(del, (ss_resp){.status = 200, .body = "{\"id\":\"thread_mine\",\"deleted\":true}"});
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/threads/thread_w/messages");
  ss_add_resp(post, (ss_resp){.status = 200, .body = msg_json("msg_p0", "user", "Context from CRM", 0, "e1")});
  bfx_start(f);
  contract_in_message msgs[1] = {{.role = "user", .parts = &P_HELLO, .nparts = 1}};
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .messages = msgs, .nmessages = 1};
  run_op(f, be_conv_append, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_string_equal(c.handle, "thread_w");
  assert_string_equal(c.checkpoint, "a1m thread_w");
  assert_string_equal(f->store.key, "thread");
  assert_int_equal(ss_count(&f->srv, del), 1);
  assert_int_equal(ss_count(&f->srv, post), 1);
  bfx_free(f);
}

static void test_append_after_an_ambiguous_500_that_was_applied_posts_nothing_twice(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/messages");
  /* message 0: applied, then 500; message 1: fine */
  ss_add_resp(post, (ss_resp){.status = 500, .body = "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}"});
  ss_add_resp(post, (ss_resp){.status = 200, .body = msg_json("msg_p1", "assistant", "A human agent wrote this", 1, "e1")});
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  char page[1024];
  snprintf(page, sizeof page, "{\"object\":\"list\",\"data\":[%s,%s],\"has_more\":false}",
           msg_json("msg_p0", "user", "Context from CRM", 0, "e1"),
           msg_json("msg_old", "user", "an earlier event", 0, "e0"));
  ss_add_resp(list, (ss_resp){.status = 200, .body = page});
  bfx_start(f);
  contract_in_message msgs[2] = {{.role = "user", .parts = &P_HELLO, .nparts = 1},
                                 {.role = "assistant", .parts = &P_AGENT, .nparts = 1}};
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = "thread_1", .messages = msgs,
                      .nmessages = 2};
  run_op(f, be_conv_append, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(ss_count(&f->srv, post), 2); /* message 0 once (the 500), message 1 once */
  assert_int_equal(ss_count(&f->srv, list), 1);
  char *b = ss_last_body(&f->srv, post);
  assert_non_null(strstr(b, "\"aw_index\":\"1\""));
  free(b);
  char *q = ss_last_query(&f->srv, list);
  assert_non_null(strstr(q, "order=desc"));
  free(q);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.m[0].id, "msg_p0");
  assert_string_equal(c.m[1].id, "msg_p1");
  assert_int_equal(f->store.claims, 0);
  bfx_free(f);
}

static void test_append_after_an_ambiguous_500_not_applied_posts_again_after_bounded_lookups(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/messages");
  ss_add_resp(post, (ss_resp){.status = 502, .body = "{\"error\":{\"message\":\"bad gateway\",\"type\":\"server_error\"}}"});
  ss_add_resp(post, (ss_resp){.status = 200, .body = msg_json("msg_p0", "user", "Context from CRM", 0, "e1")});
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[],\"has_more\":false}"});
  bfx_start(f);
  contract_in_message msgs[1] = {{.role = "user", .parts = &P_HELLO, .nparts = 1}};
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = "thread_1", .messages = msgs,
                      .nmessages = 1};
  run_op(f, be_conv_append, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(ss_count(&f->srv, post), 2);
  assert_int_equal(ss_count(&f->srv, list), 4); /* ASST_LOOKUPS_MAX looks before posting again */
  assert_int_equal(c.n, 1);
  assert_string_equal(c.m[0].id, "msg_p0");
  bfx_free(f);
}

static void test_append_recovering_skips_the_messages_an_earlier_delivery_added(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/messages");
  ss_add_resp(post, (ss_resp){.status = 200, .body = msg_json("msg_p1", "assistant", "A human agent wrote this", 1, "e1")});
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/threads/thread_1/messages");
  char page[1024];
  snprintf(page, sizeof page, "{\"object\":\"list\",\"data\":[%s],\"has_more\":false}",
           msg_json("msg_p0", "user", "Context from CRM", 0, "e1"));
  ss_add_resp(list, (ss_resp){.status = 200, .body = page});
  bfx_start(f);
  contract_in_message msgs[2] = {{.role = "user", .parts = &P_HELLO, .nparts = 1},
                                 {.role = "assistant", .parts = &P_AGENT, .nparts = 1}};
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = "thread_1", .messages = msgs,
                      .nmessages = 2, .recover = 1, .checkpoint = "a1m thread_1"};
  run_op(f, be_conv_append, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(ss_count(&f->srv, list), 1);
  assert_int_equal(ss_count(&f->srv, post), 1); /* only message 1 */
  char *b = ss_last_body(&f->srv, post);
  assert_non_null(strstr(b, "\"aw_index\":\"1\""));
  free(b);
  assert_int_equal(c.n, 2);
  assert_string_equal(c.m[0].id, "msg_p0");
  assert_string_equal(c.m[1].id, "msg_p1");
  bfx_free(f);
}

static void test_append_cancelled_in_its_checkpoint_posts_nothing_and_calls_back_no_more(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/threads/thread_1/messages");
  ss_add_resp(post, (ss_resp){.status = 200, .body = msg_json("msg_p0", "user", "Context from CRM", 0, "e1")});
  bfx_start(f);
  contract_in_message msgs[1] = {{.role = "user", .parts = &P_HELLO, .nparts = 1}};
  cres c = {.cancel_on_checkpoint = 1};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = "thread_1", .messages = msgs,
                      .nmessages = 1};
  run_op(f, be_conv_append, &in, &c);
  assert_int_equal(c.ncheckpoints, 1);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(c.ncalls, 0);
  assert_int_equal(ss_count(&f->srv, post), 0);
  bfx_free(f);
}

static void test_append_bad_input_is_einval_before_any_io(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  bfx_start(f);
  cres c = {0};
  contract_part img = {.type = CONTRACT_PART_IMAGE_URL, .text = "http://x/y.png"};
  contract_in_message bad_role[1] = {{.role = "system", .parts = &P_HELLO, .nparts = 1}};
  contract_in_message bad_part[1] = {{.role = "user", .parts = &img, .nparts = 1}};
  contract_in_message many[CONTRACT_APPEND_MAX_MESSAGES + 1];
  for (size_t i = 0; i < CONTRACT_APPEND_MAX_MESSAGES + 1; i++)
    many[i] = (contract_in_message){.role = "user", .parts = &P_HELLO, .nparts = 1};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .messages = bad_role, .nmessages = 1};
  assert_int_equal(be_conv_append(f->be, &in, &EVENTS, &c, &c.op), AW_EINVAL);
  assert_null(c.op);
  in.messages = bad_part;
  assert_int_equal(be_conv_append(f->be, &in, &EVENTS, &c, &c.op), AW_EINVAL);
  in.messages = many;
  in.nmessages = CONTRACT_APPEND_MAX_MESSAGES + 1;
  assert_int_equal(be_conv_append(f->be, &in, &EVENTS, &c, &c.op), AW_EINVAL);
  in.nmessages = 0;
  assert_int_equal(be_conv_append(f->be, &in, &EVENTS, &c, &c.op), AW_EINVAL);
  be_conv_input h = {.conversation_id = "c1", .event_id = "e1", .handle = "thread/../x", .limit = 20};
  assert_int_equal(be_conv_history(f->be, &h, &EVENTS, &c, &c.op), AW_EINVAL);
  assert_int_equal(be_conv_delete(f->be, &h, &EVENTS, &c, &c.op), AW_EINVAL);
  h.handle = "thread_1";
  h.after = "msg_1";
  h.before = "msg_2";
  assert_int_equal(be_conv_history(f->be, &h, &EVENTS, &c, &c.op), AW_EINVAL);
  assert_int_equal(ss_connections(&f->srv), 0);
  assert_int_equal(c.ncalls, 0);
  bfx_free(f);
}

/* ---- delete ---------------------------------------------------------------------- */

static void test_delete_of_a_thread_gone_already_404_counts_as_deleted(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *del = ss_route_add(&f->srv, "DELETE", "/v1/threads/thread_gone");
  ss_add_resp(del, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No thread found with id "
                                                   "'thread_gone'.\",\"type\":\"invalid_request_error\"}}"});
  ss_route *del2 = ss_route_add(&f->srv, "DELETE", "/v1/threads/thread_2");
  ss_add_resp(del2, (ss_resp){.status = 200, .body = "{\"id\":\"thread_2\",\"object\":\"thread.deleted\",\"deleted\":true}"});
  bfx_start(f);
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = "thread_gone"};
  run_op(f, be_conv_delete, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_string_equal(c.handle, "thread_gone");
  assert_int_equal(ss_count(&f->srv, del), 1);
  cres c2 = {0};
  in.handle = "thread_2";
  run_op(f, be_conv_delete, &in, &c2);
  assert_int_equal(c2.err, AW_OK);
  assert_string_equal(c2.handle, "thread_2");
  assert_int_equal(ss_count(&f->srv, del2), 1);
  bfx_free(f);
}

static void test_delete_4xx_other_than_404_is_a_reject(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  ss_route *del = ss_route_add(&f->srv, "DELETE", "/v1/threads/thread_1");
  ss_add_resp(del, (ss_resp){.status = 403, .body = "{\"error\":{\"message\":\"Not yours.\","
                                                   "\"type\":\"invalid_request_error\",\"code\":\"forbidden\"}}"});
  bfx_start(f);
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = "thread_1"};
  run_op(f, be_conv_delete, &in, &c);
  assert_int_equal(c.err, AW_EHTTP4XX);
  assert_string_equal(c.code, "forbidden");
  bfx_free(f);
}

static void test_delete_without_thread_does_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_ASSISTANTS);
  bfx_start(f);
  cres c = {0};
  be_conv_input in = {.conversation_id = "c1", .event_id = "e1", .handle = ""};
  run_op(f, be_conv_delete, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_string_equal(c.handle, "");
  assert_int_equal(ss_connections(&f->srv), 0);
  bfx_free(f);
}

int main(void) {
  log_set_level(LOG_ERROR); /* recovery paths log at info and warn on purpose */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_history_page_maps_roles_created_at_annotations_and_cursors),
      cmocka_unit_test(test_history_before_cursor_and_ascending_order_are_sent_as_asked),
      cmocka_unit_test(test_history_without_thread_is_an_empty_page_without_any_request),
      cmocka_unit_test(test_history_unknown_cursor_is_message_not_found),
      cmocka_unit_test(test_history_400_with_a_known_cursor_keeps_the_api_error),
      cmocka_unit_test(test_append_without_thread_creates_and_claims_it_then_posts_each_message),
      cmocka_unit_test(test_append_lost_claim_race_deletes_its_thread_and_writes_to_the_winner),
      cmocka_unit_test(test_append_after_an_ambiguous_500_that_was_applied_posts_nothing_twice),
      cmocka_unit_test(test_append_after_an_ambiguous_500_not_applied_posts_again_after_bounded_lookups),
      cmocka_unit_test(test_append_recovering_skips_the_messages_an_earlier_delivery_added),
      cmocka_unit_test(test_append_cancelled_in_its_checkpoint_posts_nothing_and_calls_back_no_more),
      cmocka_unit_test(test_append_bad_input_is_einval_before_any_io),
      cmocka_unit_test(test_delete_of_a_thread_gone_already_404_counts_as_deleted),
      cmocka_unit_test(test_delete_4xx_other_than_404_is_a_reject),
      cmocka_unit_test(test_delete_without_thread_does_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

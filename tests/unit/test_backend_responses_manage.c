/* test_backend_responses_manage.c -- conversation management on the
 * Responses + Conversations backend (be_conv_history / be_conv_append /
 * be_conv_delete, common/backend/responses/rsp_manage.c) against a scripted
 * in-process server: a history page mapped (roles, ids, annotations, tool
 * items left out, cursors), `before` served by listing the other way after
 * the cursor and reversing, an empty page without a handle, an unknown
 * cursor as message_not_found; append creating and claiming the
 * conversation, checkpointing its anchor, and never posting twice after an
 * ambiguous 500 that was applied (but posting again after one that was
 * not, and after a recovery that finds nothing); delete with 404 counted as
 * deleted.  Needs: loopback networking only.  Every test frees the backend,
 * runs the loop until its handles closed and checks uv_loop_close; ASan
 * checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "backend.h"
#include "log.h"
#include "rsp_int.h"
#include "backend_fixture.h"

/* ---- results ------------------------------------------------------------------------ */

typedef struct cres {
  int done, ndone, err, has_more, ncheckpoints;
  char error_code[64], handle[64], first_id[64], last_id[64], checkpoint[BE_CHECKPOINT_MAX];
  size_t nmessages;
  char ids[8][32], roles[8][16], texts[8][64];
  int64_t created_at[8];
  size_t nann[8];
  char ann_type[8][32], ann_file[8][32];
  int64_t ann_start[8];
} cres;

static void c_checkpoint(void *o, const char *cp) {
  cres *c = o;
  c->ncheckpoints++;
  snprintf(c->checkpoint, sizeof c->checkpoint, "%s", cp);
}

static void c_done(void *o, const be_conv_result *r) {
  cres *c = o;
  uv_stop(bfx_loop);
  c->done = 1;
  c->ndone++;
  c->err = r->err;
  c->has_more = r->has_more;
  snprintf(c->error_code, sizeof c->error_code, "%s", r->error_code ? r->error_code : "");
  snprintf(c->handle, sizeof c->handle, "%s", r->handle ? r->handle : "");
  snprintf(c->first_id, sizeof c->first_id, "%s", r->first_id ? r->first_id : "");
  snprintf(c->last_id, sizeof c->last_id, "%s", r->last_id ? r->last_id : "");
  c->nmessages = r->nmessages;
  for (size_t i = 0; i < r->nmessages && i < 8; i++) {
    const contract_out_message *m = &r->messages[i];
    snprintf(c->ids[i], sizeof c->ids[i], "%s", m->id ? m->id : "");
    snprintf(c->roles[i], sizeof c->roles[i], "%s", m->role ? m->role : "");
    c->created_at[i] = m->created_at;
    c->texts[i][0] = '\0';
    for (size_t j = 0; j < m->nparts; j++) {
      strncat(c->texts[i], m->parts[j].text, sizeof c->texts[i] - strlen(c->texts[i]) - 1);
      c->nann[i] += m->parts[j].nannotations;
      if (m->parts[j].nannotations) {
        snprintf(c->ann_type[i], sizeof c->ann_type[i], "%s", m->parts[j].annotations[0].type);
        snprintf(c->ann_file[i], sizeof c->ann_file[i], "%s", m->parts[j].annotations[0].file_id);
        c->ann_start[i] = m->parts[j].annotations[0].start_index;
      }
    }
  }
}

static const be_conv_events EV = {.on_checkpoint = c_checkpoint, .on_done = c_done};

/* Start op (be_conv_history, _append, _delete) on in and run the loop
 * until it answered. */
typedef int (*conv_fn)(be_backend *, const be_conv_input *, const be_conv_events *, void *, be_op **);

static void run_op(bfx *f, conv_fn op, const be_conv_input *in, cres *c) {
  be_op *o = NULL;
  assert_int_equal(op(f->be, in, &EV, c, &o), AW_OK);
  ss_run_until(&f->loop, &c->done);
}

static be_conv_input cinput(const char *handle) {
  be_conv_input in;
  memset(&in, 0, sizeof in);
  in.conversation_id = "c-1";
  in.event_id = "e-9";
  in.handle = handle;
  in.limit = 20;
  return in;
}

static ss_resp ok_json(const char *body) { return (ss_resp){.status = 200, .body = body}; }

#define USER_ITEM(id, text) \
  "{\"id\":\"" id "\",\"type\":\"message\",\"role\":\"user\",\"status\":\"completed\",\"content\":[{\"type\":\"input_text\",\"text\":\"" text "\"}]}"
#define ASST_ITEM(id, text) \
  "{\"id\":\"" id "\",\"type\":\"message\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":[{\"type\":\"output_text\",\"text\":\"" text "\",\"annotations\":[],\"logprobs\":[]}]}"
#define LIST(data, more, first, last) \
  "{\"object\":\"list\",\"data\":[" data "],\"has_more\":" more ",\"first_id\":\"" first "\",\"last_id\":\"" last "\"}"

/* ---- history ------------------------------------------------------------------------ */

/* Newest first, as the API lists by default: an assistant answer citing a
 * file, the call it made and its output (left out), the user's question,
 * a developer message (left out). */
static const char *PAGE_DESC = LIST(
    "{\"id\":\"msg_a2\",\"type\":\"message\",\"role\":\"assistant\",\"status\":\"completed\",\"created_at\":1700000002,"
    "\"content\":[{\"type\":\"output_text\",\"text\":\"Reset it in Settings.\",\"logprobs\":[],\"annotations\":["
    "{\"type\":\"file_citation\",\"file_id\":\"file_faq\",\"index\":7,\"filename\":\"faq.md\"},"
    "{\"type\":\"url_citation\",\"url\":\"https://x.test\",\"start_index\":0,\"end_index\":3,\"title\":\"x\"}]}]},"
    "{\"id\":\"fco_1\",\"type\":\"function_call_output\",\"call_id\":\"call_1\",\"output\":\"{}\",\"status\":\"completed\"},"
    "{\"id\":\"fc_1\",\"type\":\"function_call\",\"call_id\":\"call_1\",\"name\":\"lookup\",\"arguments\":\"{}\",\"status\":\"completed\"},"
    USER_ITEM("msg_u1", "How do I reset my password?") ","
    "{\"id\":\"msg_d0\",\"type\":\"message\",\"role\":\"developer\",\"status\":\"completed\",\"content\":[{\"type\":\"input_text\",\"text\":\"x\"}]}",
    "true", "msg_a2", "msg_d0");

static void test_history_page_keeps_user_and_assistant_messages_with_roles_and_annotations(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, ok_json(PAGE_DESC));
  bfx_start(f);
  be_conv_input in = cinput("conv_1");
  in.limit = 5;
  cres c = {0};
  be_op *op;
  assert_int_equal(be_conv_history(f->be, &in, &EV, &c, &op), AW_OK);
  assert_int_equal(c.done, 0);
  ss_run_until(&f->loop, &c.done);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(c.nmessages, 2);
  assert_string_equal(c.ids[0], "msg_a2");
  assert_string_equal(c.roles[0], "assistant");
  assert_string_equal(c.texts[0], "Reset it in Settings.");
  assert_int_equal(c.created_at[0], 1700000002);
  assert_int_equal(c.nann[0], 1); /* the url_citation has no file: left out */
  assert_string_equal(c.ann_type[0], "file_citation");
  assert_string_equal(c.ann_file[0], "file_faq");
  assert_int_equal(c.ann_start[0], 7);
  assert_string_equal(c.ids[1], "msg_u1");
  assert_string_equal(c.roles[1], "user");
  assert_string_equal(c.texts[1], "How do I reset my password?");
  assert_int_equal(c.created_at[1], 0);
  assert_int_equal(c.has_more, 1);
  /* Cursors: the listing's ends, so the next page starts right after. */
  assert_string_equal(c.first_id, "msg_a2");
  assert_string_equal(c.last_id, "msg_d0");
  assert_string_equal(c.handle, "conv_1");
  bfx_expect_query(f, items, "limit=5&order=desc");
  bfx_free(f);
}

static void test_history_before_lists_the_other_way_after_the_cursor_and_reverses(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  /* before=msg_3 newest first = the messages newer than msg_3, nearest
   * first: asked as order=asc after msg_3. */
  ss_add_resp(items, ok_json(LIST(USER_ITEM("msg_4", "four") "," ASST_ITEM("msg_5", "five"), "true", "msg_4", "msg_5")));
  bfx_start(f);
  be_conv_input in = cinput("conv_1");
  in.limit = 2;
  in.before = "msg_3";
  cres c = {0};
  run_op(f, be_conv_history, &in, &c);
  assert_int_equal(c.err, AW_OK);
  bfx_expect_query(f, items, "limit=2&order=asc&after=msg_3");
  assert_int_equal(c.nmessages, 2);
  assert_string_equal(c.ids[0], "msg_5");
  assert_string_equal(c.texts[0], "five");
  assert_string_equal(c.ids[1], "msg_4");
  assert_string_equal(c.first_id, "msg_5");
  assert_string_equal(c.last_id, "msg_4");
  assert_int_equal(c.has_more, 1);
  bfx_free(f);
}

static void test_history_without_handle_is_an_empty_page_without_a_request(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  bfx_start(f);
  be_conv_input in = cinput(NULL);
  cres c = {0};
  be_op *op;
  assert_int_equal(be_conv_history(f->be, &in, &EV, &c, &op), AW_OK);
  assert_int_equal(c.done, 0); /* never inside the call */
  ss_run_until(&f->loop, &c.done);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(c.nmessages, 0);
  assert_int_equal(c.has_more, 0);
  assert_string_equal(c.first_id, "");
  assert_string_equal(c.handle, "");
  assert_int_equal(ss_connections(&f->srv), 0);
  bfx_free(f);
}

static void test_history_unknown_cursor_is_message_not_found(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"Invalid 'after': no object with id 'msg_zz' in this list.\",\"type\":\"invalid_request_error\",\"param\":\"after\",\"code\":\"invalid_value\"}}"});
  ss_add_resp(items, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No item found with id 'msg_zz'.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}"});
  bfx_start(f);
  const char *cursors[][2] = {{"msg_zz", NULL}, {NULL, "msg_zz"}, {"msg/../x", NULL}};
  for (int i = 0; i < 3; i++) {
    be_conv_input in = cinput("conv_1");
    in.after = cursors[i][0];
    in.before = cursors[i][1];
    cres c = {0};
      run_op(f, be_conv_history, &in, &c);
    assert_int_equal(c.err, AW_EINVAL);
    assert_int_equal(aw_error_classify(c.err), AW_CLASS_REJECT);
    assert_string_equal(c.error_code, "message_not_found");
    assert_int_equal(c.nmessages, 0);
  }
  /* The last cursor cannot be an id: refused without a request. */
  assert_int_equal(ss_count(&f->srv, items), 2);
  bfx_free(f);
}

static void test_history_page_over_the_text_cap_is_cut_after_what_fits_with_has_more(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  f->cfg.max_answer_bytes = 12;
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, ok_json(LIST(USER_ITEM("msg_1", "12345") "," ASST_ITEM("msg_2", "678") "," USER_ITEM("msg_3", "90abcd"),
                                  "false", "msg_1", "msg_3")));
  ss_add_resp(items, ok_json(LIST(USER_ITEM("msg_big", "this one alone is too long"), "false", "msg_big", "msg_big")));
  bfx_start(f);
  be_conv_input in = cinput("conv_1");
  in.order_asc = 1;
  cres c = {0};
  run_op(f, be_conv_history, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(c.nmessages, 2);
  assert_string_equal(c.ids[1], "msg_2");
  assert_int_equal(c.has_more, 1);
  assert_string_equal(c.first_id, "msg_1");
  assert_string_equal(c.last_id, "msg_2"); /* the next page starts at msg_3 */
  cres c2 = {0};
  run_op(f, be_conv_history, &in, &c2);
  assert_int_equal(c2.err, AW_ETOOBIG);
  assert_string_equal(c2.error_code, "answer_too_large");
  bfx_free(f);
}

/* ---- append --------------------------------------------------------------------------- */

static contract_part P_USER[] = {{.type = CONTRACT_PART_TEXT, .text = "I use Linux.", .text_len = 12}};
static contract_part P_ASST[] = {{.type = CONTRACT_PART_TEXT, .text = "Noted", .text_len = 5},
                                 {.type = CONTRACT_PART_TEXT, .text = " and kept.", .text_len = 10}};
static const contract_in_message MSGS[] = {{"user", P_USER, 1}, {"assistant", P_ASST, 2}};

static be_conv_input append_input(const char *handle) {
  be_conv_input in = cinput(handle);
  in.messages = MSGS;
  in.nmessages = 2;
  return in;
}

#define OURS_USER \
  "{\"id\":\"msg_n1\",\"type\":\"message\",\"role\":\"user\",\"status\":\"completed\",\"content\":[{\"type\":\"input_text\",\"text\":\"I use Linux.\"}]}"
#define OURS_ASST \
  "{\"id\":\"msg_n2\",\"type\":\"message\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":[{\"type\":\"output_text\",\"text\":\"Noted and kept.\",\"annotations\":[]}]}"
static const char *CREATED = LIST(OURS_USER "," OURS_ASST, "false", "msg_n1", "msg_n2");
static const char *NEWEST_IS_OLD = LIST(ASST_ITEM("msg_old", "earlier"), "true", "msg_old", "msg_old");
static const char *AFTER_ANCHOR_OURS = LIST(OURS_USER "," OURS_ASST, "false", "msg_n1", "msg_n2");
static const char *AFTER_ANCHOR_NONE = LIST("", "false", "", "");
static const char *BOOM = "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}";

static void test_append_without_handle_creates_claims_checkpoints_and_posts_the_messages(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *conv = ss_route_add(&f->srv, "POST", "/v1/conversations");
  ss_add_resp(conv, ok_json("{\"id\":\"conv_new\",\"object\":\"conversation\"}"));
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_new/items");
  ss_add_resp(items, ok_json(AFTER_ANCHOR_NONE));
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/conversations/conv_new/items");
  ss_add_resp(post, ok_json(CREATED));
  bfx_start(f);
  be_conv_input in = append_input(NULL);
  cres c = {0};
  run_op(f, be_conv_append, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(f->store.claims, 1);
  assert_string_equal(f->store.handle, "conv_new");
  assert_string_equal(c.handle, "conv_new");
  /* The anchor of an empty conversation, handed out before the POST. */
  assert_int_equal(c.ncheckpoints, 1);
  assert_string_equal(c.checkpoint, "a1 conv_new -");
  bfx_expect_query(f, items, "limit=1&order=desc");
  char *b = ss_last_body(&f->srv, post);
  /* The assistant's two parts as one string: the spec's EasyInputMessage. */
  assert_string_equal(b, "{\"items\":[{\"type\":\"message\",\"role\":\"user\",\"content\":\"I use Linux.\"},"
                         "{\"type\":\"message\",\"role\":\"assistant\",\"content\":\"Noted and kept.\"}]}");
  free(b);
  assert_int_equal(c.nmessages, 2);
  assert_string_equal(c.ids[0], "msg_n1");
  assert_string_equal(c.roles[0], "user");
  assert_string_equal(c.ids[1], "msg_n2");
  assert_string_equal(c.roles[1], "assistant");
  assert_string_equal(c.texts[1], "Noted and kept.");
  assert_int_equal(ss_count(&f->srv, post), 1);
  bfx_free(f);
}

static void test_append_after_ambiguous_500_that_was_applied_posts_nothing_twice(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, ok_json(NEWEST_IS_OLD));     /* the anchor */
  ss_add_resp(items, ok_json(AFTER_ANCHOR_OURS)); /* the lookup */
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/conversations/conv_1/items");
  ss_add_resp(post, (ss_resp){.status = 500, .body = BOOM});
  ss_add_resp(post, ok_json(CREATED));
  bfx_start(f);
  be_conv_input in = append_input("conv_1");
  cres c = {0};
  run_op(f, be_conv_append, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_string_equal(c.checkpoint, "a1 conv_1 msg_old");
  assert_int_equal(ss_count(&f->srv, post), 1);
  assert_int_equal(ss_count(&f->srv, items), 2);
  bfx_expect_query(f, items, "limit=100&order=asc&after=msg_old");
  assert_int_equal(c.nmessages, 2);
  assert_string_equal(c.ids[0], "msg_n1");
  assert_string_equal(c.ids[1], "msg_n2");
  bfx_free(f);
}

static void test_append_after_ambiguous_500_not_applied_posts_once_more(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, ok_json(NEWEST_IS_OLD));
  /* After the anchor: only our user message's text in another message (an
   * unrelated run): not ours; every look finds nothing. */
  ss_add_resp(items, ok_json(LIST(USER_ITEM("msg_x", "I use Linux."), "false", "msg_x", "msg_x")));
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/conversations/conv_1/items");
  ss_add_resp(post, (ss_resp){.status = 500, .body = BOOM});
  ss_add_resp(post, ok_json(CREATED));
  bfx_start(f);
  be_conv_input in = append_input("conv_1");
  cres c = {0};
  run_op(f, be_conv_append, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(ss_count(&f->srv, post), 2);
  assert_int_equal(ss_count(&f->srv, items), 1 + 3); /* the anchor, then three looks */
  assert_int_equal(c.nmessages, 2);
  assert_string_equal(c.ids[0], "msg_n1");
  bfx_free(f);
}

static void test_append_recovering_with_its_checkpoint_looks_before_posting(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_cp/items");
  ss_add_resp(items, ok_json(AFTER_ANCHOR_OURS));
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/conversations/conv_cp/items");
  ss_add_resp(post, ok_json(CREATED));
  ss_route *items2 = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_cq/items");
  ss_add_resp(items2, ok_json(AFTER_ANCHOR_NONE));
  ss_route *post2 = ss_route_add(&f->srv, "POST", "/v1/conversations/conv_cq/items");
  ss_add_resp(post2, ok_json(CREATED));
  bfx_start(f);
  be_conv_input in = append_input("conv_cp");
  in.recover = 1;
  in.checkpoint = "a1 conv_cp msg_old";
  cres c = {0};
  run_op(f, be_conv_append, &in, &c);
  assert_int_equal(c.err, AW_OK);
  assert_int_equal(ss_count(&f->srv, post), 0);
  assert_int_equal(ss_count(&f->srv, items), 1);
  assert_int_equal(c.nmessages, 2);

  /* Nothing there: posted, once. */
  in = append_input("conv_cq");
  in.recover = 1;
  in.checkpoint = "a1 conv_cq -";
  cres c2 = {0};
  run_op(f, be_conv_append, &in, &c2);
  assert_int_equal(c2.err, AW_OK);
  assert_int_equal(ss_count(&f->srv, post2), 1);
  bfx_expect_query(f, items2, "limit=100&order=asc");
  bfx_free(f);
}

static void test_append_refuses_bad_messages_before_io(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  bfx_start(f);
  contract_part img[] = {{.type = CONTRACT_PART_IMAGE_URL, .text = "https://x.test/a.png", .text_len = 19}};
  contract_in_message bad_role[] = {{"system", P_USER, 1}};
  contract_in_message bad_part[] = {{"user", img, 1}};
  be_op *op;
  cres c = {0};
  be_conv_input in = append_input("conv_1");
  in.messages = bad_role;
  in.nmessages = 1;
  assert_int_equal(be_conv_append(f->be, &in, &EV, &c, &op), AW_EINVAL);
  in.messages = bad_part;
  assert_int_equal(be_conv_append(f->be, &in, &EV, &c, &op), AW_EINVAL);
  in.messages = MSGS;
  in.nmessages = 0;
  assert_int_equal(be_conv_append(f->be, &in, &EV, &c, &op), AW_EINVAL);
  assert_null(op);
  assert_int_equal(c.ndone, 0);
  bfx_free(f);
}

/* ---- delete --------------------------------------------------------------------------------- */

static void test_delete_counts_404_as_deleted_and_without_handle_does_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *del = ss_route_add(&f->srv, "DELETE", "/v1/conversations/conv_gone");
  ss_add_resp(del, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No conversation found with id 'conv_gone'.\",\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}"});
  ss_route *del2 = ss_route_add(&f->srv, "DELETE", "/v1/conversations/conv_1");
  ss_add_resp(del2, ok_json("{\"id\":\"conv_1\",\"object\":\"conversation.deleted\",\"deleted\":true}"));
  bfx_start(f);
  const char *handles[] = {"conv_gone", "conv_1", NULL};
  for (int i = 0; i < 3; i++) {
    be_conv_input in = cinput(handles[i]);
    cres c = {0};
      run_op(f, be_conv_delete, &in, &c);
    assert_int_equal(c.err, AW_OK);
    assert_string_equal(c.error_code, "");
    assert_string_equal(c.handle, handles[i] ? handles[i] : "");
  }
  assert_int_equal(ss_count(&f->srv, del), 1);
  assert_int_equal(ss_count(&f->srv, del2), 1);
  bfx_free(f);
}

static void test_cancelled_op_calls_back_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_RESPONSES);
  ss_route *items = ss_route_add(&f->srv, "GET", "/v1/conversations/conv_1/items");
  ss_add_resp(items, ok_json(PAGE_DESC));
  bfx_start(f);
  be_conv_input in = cinput("conv_1");
  cres c = {0};
  be_op *op;
  assert_int_equal(be_conv_history(f->be, &in, &EV, &c, &op), AW_OK);
  be_op_cancel(op);
  in.handle = NULL;
  assert_int_equal(be_conv_delete(f->be, &in, &EV, &c, &op), AW_OK);
  be_op_cancel(op);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(c.ndone, 0);
  bfx_free(f);
}

int main(void) {
  log_set_level(LOG_OFF);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_history_page_keeps_user_and_assistant_messages_with_roles_and_annotations),
      cmocka_unit_test(test_history_before_lists_the_other_way_after_the_cursor_and_reverses),
      cmocka_unit_test(test_history_without_handle_is_an_empty_page_without_a_request),
      cmocka_unit_test(test_history_unknown_cursor_is_message_not_found),
      cmocka_unit_test(test_history_page_over_the_text_cap_is_cut_after_what_fits_with_has_more),
      cmocka_unit_test(test_append_without_handle_creates_claims_checkpoints_and_posts_the_messages),
      cmocka_unit_test(test_append_after_ambiguous_500_that_was_applied_posts_nothing_twice),
      cmocka_unit_test(test_append_after_ambiguous_500_not_applied_posts_once_more),
      cmocka_unit_test(test_append_recovering_with_its_checkpoint_looks_before_posting),
      cmocka_unit_test(test_append_refuses_bad_messages_before_io),
      cmocka_unit_test(test_delete_counts_404_as_deleted_and_without_handle_does_nothing),
      cmocka_unit_test(test_cancelled_op_calls_back_nothing),
  };
  return cmocka_run_group_tests(tests, 0, 0);
}

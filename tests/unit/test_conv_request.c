/* test_conv_request.c -- the worker's side of the conversation requests
 * (worker/event/conv_request.h): which kinds run their own step, how a
 * backend result becomes the answer (a history page, the messages an
 * append added, a reject-class error answered `failed` with the backend's
 * code), which error class retries, answers or stops, the reset checkpoint
 * that keeps the old handle across a re-processing, the override policy
 * that lets these kinds through without an assistant, and the setting
 * worker.reset_deletes_old.
 *
 * What is left to tests/integration/test_conversation_kinds.py: the steps'
 * I/O (backend call, Redis scripts, Kafka transaction), which need a
 * running worker; the event machine has no port a unit test could drive
 * without Kafka and Redis.
 *
 * Needs: nothing (pure). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "contract.h"
#include "conv_request.h"
#include "overrides.h"

static void only_history_append_reset_and_delete_run_their_own_step(void **state) {
  (void)state;
  assert_false(wk_cr_handles(CONTRACT_KIND_MESSAGE)); /* a turn */
  assert_false(wk_cr_handles(CONTRACT_KIND_CANCEL));  /* cancel.h */
  assert_true(wk_cr_handles(CONTRACT_KIND_HISTORY));
  assert_true(wk_cr_handles(CONTRACT_KIND_APPEND));
  assert_true(wk_cr_handles(CONTRACT_KIND_RESET));
  assert_true(wk_cr_handles(CONTRACT_KIND_DELETE));
}

static contract_out_part text_part(const char *t) {
  contract_out_part p;
  memset(&p, 0, sizeof p);
  p.type = "text";
  p.text = t;
  p.text_len = strlen(t);
  return p;
}

static void a_history_result_is_answered_completed_with_its_page(void **state) {
  (void)state;
  contract_out_part p1 = text_part("hello"), p2 = text_part("hi there");
  contract_out_message m[2] = {{"msg_2", "assistant", 1700000002, &p2, 1}, {"msg_1", "user", 1700000001, &p1, 1}};
  be_conv_result res = {0};
  res.messages = m;
  res.nmessages = 2;
  res.has_more = 1;
  res.first_id = "msg_2";
  res.last_id = "msg_1";
  contract_response r = {0};
  wk_cr_fill(CONTRACT_KIND_HISTORY, &res, &r);
  assert_int_equal(r.kind, CONTRACT_KIND_HISTORY);
  assert_string_equal(r.status, "completed");
  assert_null(r.error_code);
  assert_ptr_equal(r.messages, m);
  assert_int_equal(r.nmessages, 2);
  assert_int_equal(r.has_more, 1);
  assert_string_equal(r.first_id, "msg_2");
  assert_string_equal(r.last_id, "msg_1");

  /* Encoded, the answer names its kind and carries the page. */
  r.event_id = "e1";
  r.conversation_id = "c1";
  r.backend_kind = "responses";
  buf b, j;
  buf_init(&b, 1 << 20);
  buf_init(&j, 1 << 20);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  assert_int_equal(contract_to_json(b.data, b.len, &j), AW_OK);
  assert_int_equal(buf_append(&j, "", 1), AW_OK);
  const char *s = (const char *)j.data;
  assert_non_null(strstr(s, "\"history\""));
  assert_non_null(strstr(s, "\"page\""));
  assert_non_null(strstr(s, "\"has_more\""));
  assert_non_null(strstr(s, "\"msg_2\""));
  assert_non_null(strstr(s, "\"user\""));
  buf_free(&b);
  buf_free(&j);
}

static void an_append_result_is_answered_with_the_messages_added_and_no_page(void **state) {
  (void)state;
  contract_out_part p = text_part("remember this");
  contract_out_message m[1] = {{"msg_9", "user", 0, &p, 1}};
  be_conv_result res = {0};
  res.messages = m;
  res.nmessages = 1;
  res.handle = "conv_1";
  res.has_more = 1; /* a page is a history's only, whatever a backend fills in */
  res.first_id = "msg_9";
  contract_response r = {0};
  wk_cr_fill(CONTRACT_KIND_APPEND, &res, &r);
  assert_int_equal(r.kind, CONTRACT_KIND_APPEND);
  assert_string_equal(r.status, "completed");
  assert_ptr_equal(r.messages, m);
  assert_int_equal(r.nmessages, 1);
  assert_null(r.first_id);
  assert_int_equal(r.has_more, 0);
}

static void reset_and_delete_answers_carry_no_messages(void **state) {
  (void)state;
  contract_out_part p = text_part("x");
  contract_out_message m[1] = {{"msg_1", "user", 0, &p, 1}};
  be_conv_result res = {0};
  res.messages = m; /* whatever a backend reports, these kinds answer none */
  res.nmessages = 1;
  const contract_kind kinds[] = {CONTRACT_KIND_RESET, CONTRACT_KIND_DELETE};
  for (size_t i = 0; i < 2; i++) {
    contract_response r = {0};
    wk_cr_fill(kinds[i], &res, &r);
    assert_int_equal(r.kind, kinds[i]);
    assert_string_equal(r.status, "completed");
    assert_null(r.messages);
    assert_int_equal(r.nmessages, 0);
  }
}

static void an_unknown_cursor_is_answered_failed_with_the_backends_code(void **state) {
  (void)state;
  be_conv_result res = {0};
  res.err = AW_EINVAL;
  res.error_code = "message_not_found";
  res.errmsg = "after: no message msg_x in the conversation";
  contract_response r = {0};
  wk_cr_fill(CONTRACT_KIND_HISTORY, &res, &r);
  assert_int_equal(r.kind, CONTRACT_KIND_HISTORY);
  assert_string_equal(r.status, "failed");
  assert_string_equal(r.error_code, "message_not_found");
  assert_string_equal(r.error_message, "after: no message msg_x in the conversation");
  assert_null(r.messages);
  assert_int_equal(wk_cr_verdict_of(res.err), WK_CR_ANSWER);
}

static void an_error_without_a_backend_code_takes_the_shared_taxonomys(void **state) {
  (void)state;
  be_conv_result res = {0};
  res.err = AW_EHTTP4XX;
  contract_response r = {0};
  wk_cr_fill(CONTRACT_KIND_DELETE, &res, &r);
  assert_string_equal(r.status, "failed");
  assert_string_equal(r.error_code, "api_invalid_request");
  assert_non_null(r.error_message);
  assert_true(strlen(r.error_message) > 0);
}

static void retry_class_errors_wait_reject_class_answer_and_fatal_stops(void **state) {
  (void)state;
  assert_int_equal(wk_cr_verdict_of(AW_OK), WK_CR_ANSWER);
  /* retry class: the event waits on the retry list, its conversation stays ordered */
  assert_int_equal(wk_cr_verdict_of(AW_EREDIS), WK_CR_RETRY);
  assert_int_equal(wk_cr_verdict_of(AW_EHTTP5XX), WK_CR_RETRY);
  assert_int_equal(wk_cr_verdict_of(AW_ETIMEDOUT), WK_CR_RETRY);
  /* reject class: answered failed */
  assert_int_equal(wk_cr_verdict_of(AW_EINVAL), WK_CR_ANSWER);
  assert_int_equal(wk_cr_verdict_of(AW_EHTTP4XX), WK_CR_ANSWER);
  /* fatal: the worker stops */
  assert_int_equal(wk_cr_verdict_of(AW_ECONFIG), WK_CR_STOP);
}

static void a_reset_checkpoint_keeps_the_old_handle_for_a_reprocessed_reset(void **state) {
  (void)state;
  char cp[BE_CHECKPOINT_MAX];
  assert_int_equal(wk_cr_reset_checkpoint(cp, sizeof cp, "conv_abc"), AW_OK);
  assert_string_equal(cp, "reset:conv_abc");
  assert_string_equal(wk_cr_reset_old(cp), "conv_abc");
  /* No handle before the reset: the checkpoint says so. */
  assert_int_equal(wk_cr_reset_checkpoint(cp, sizeof cp, ""), AW_OK);
  assert_non_null(wk_cr_reset_old(cp));
  assert_string_equal(wk_cr_reset_old(cp), "");
  assert_int_equal(wk_cr_reset_checkpoint(cp, sizeof cp, NULL), AW_OK);
  assert_string_equal(wk_cr_reset_old(cp), "");
  /* A checkpoint of anything else (an append's, a turn's) is not a reset's. */
  assert_null(wk_cr_reset_old("thread_1 run_2"));
  assert_null(wk_cr_reset_old(""));
  assert_null(wk_cr_reset_old(NULL));
  /* Bounded: a handle that does not fit is refused, not cut. */
  char small[10];
  assert_int_equal(wk_cr_reset_checkpoint(small, sizeof small, "conv_abc"), AW_ETOOBIG);
}

static void conversation_requests_pass_admission_without_an_assistant(void **state) {
  (void)state;
  const contract_kind kinds[] = {CONTRACT_KIND_HISTORY, CONTRACT_KIND_APPEND, CONTRACT_KIND_RESET,
                                 CONTRACT_KIND_DELETE, CONTRACT_KIND_CANCEL};
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    contract_request q;
    memset(&q, 0, sizeof q);
    q.v = 1;
    q.kind = kinds[i];
    q.event_id = "e1";
    q.conversation_id = "c1";
    q.assistant = NULL; /* optional for these kinds */
    wkov_policy p = {0, 0}; /* nothing allowed */
    const char *field = "x";
    char msg[256];
    assert_int_equal(wkov_check(&q, &p, &field, msg, sizeof msg), AW_OK);
    assert_null(field);
  }
}

static int load(cfg *c, const char *json, char *err, size_t n) {
  cfg_init(c);
  err[0] = '\0';
  return cfg_load_json(c, json, strlen(json), err, n);
}

static void reset_deletes_old_defaults_to_false_and_parses_from_file_and_env(void **state) {
  (void)state;
  unsetenv("AW_RESET_DELETES_OLD");
  cfg c;
  char err[256];
  assert_int_equal(load(&c, "{}", err, sizeof err), AW_OK);
  assert_int_equal(cfg_apply_env(&c, err, sizeof err), AW_OK);
  assert_int_equal(c.worker.reset_deletes_old, 0);
  cfg_free(&c);
  assert_int_equal(load(&c, "{\"worker\": {\"reset_deletes_old\": true}}", err, sizeof err), AW_OK);
  assert_int_equal(c.worker.reset_deletes_old, 1);
  cfg_free(&c);
  setenv("AW_RESET_DELETES_OLD", "true", 1);
  assert_int_equal(load(&c, "{}", err, sizeof err), AW_OK);
  assert_int_equal(cfg_apply_env(&c, err, sizeof err), AW_OK);
  assert_int_equal(c.worker.reset_deletes_old, 1);
  cfg_free(&c);
  unsetenv("AW_RESET_DELETES_OLD");
  assert_int_equal(load(&c, "{\"worker\": {\"reset_deletes_old\": 3}}", err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "reset_deletes_old"));
  cfg_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(only_history_append_reset_and_delete_run_their_own_step),
      cmocka_unit_test(a_history_result_is_answered_completed_with_its_page),
      cmocka_unit_test(an_append_result_is_answered_with_the_messages_added_and_no_page),
      cmocka_unit_test(reset_and_delete_answers_carry_no_messages),
      cmocka_unit_test(an_unknown_cursor_is_answered_failed_with_the_backends_code),
      cmocka_unit_test(an_error_without_a_backend_code_takes_the_shared_taxonomys),
      cmocka_unit_test(retry_class_errors_wait_reject_class_answer_and_fatal_stops),
      cmocka_unit_test(a_reset_checkpoint_keeps_the_old_handle_for_a_reprocessed_reset),
      cmocka_unit_test(conversation_requests_pass_admission_without_an_assistant),
      cmocka_unit_test(reset_deletes_old_defaults_to_false_and_parses_from_file_and_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_be_deferred.c -- the "answer on the next loop iteration" piece the
 * backends share (common/backend/be_deferred.c): the answer never runs
 * inside the call that started it and runs once; the result is a copy made
 * in the call (bounded); the owner is released exactly once -- after the
 * answer, at a cancel before it, or after the answer when the cancel comes
 * from inside it; a cancelled defer never answers.
 * Needs: nothing outside the process.  Every test runs the loop until its
 * handles closed and checks uv_loop_close; ASan checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "be_deferred.h"

/* What happened, in order: 'a' answered, 'r' released, 'f' fn ran. */
typedef struct rec {
  char seq[16];
  int n;
  int err;
  char msg[512];
  int id_null;
  be_defer *self;        /* to cancel from inside the answer */
  int cancel_inside;
} rec;

static void note(rec *r, char c) {
  if (r->n < (int)sizeof r->seq - 1) r->seq[r->n++] = c;
}

static void on_answer(void *opaque, const be_result *res) {
  rec *r = opaque;
  note(r, 'a');
  r->err = res->err;
  snprintf(r->msg, sizeof r->msg, "%s", res->errmsg ? res->errmsg : "(null)");
  r->id_null = res->id == NULL;
  if (r->cancel_inside) {
    be_defer_cancel(r->self);
    be_defer_cancel(r->self); /* repeated inside: still only a mark */
  }
}

static void on_release(void *owner) { note(owner, 'r'); }

static void on_call(void *arg) {
  rec *r = arg;
  note(r, 'f');
  if (r->cancel_inside) be_defer_cancel(r->self);
}

static void close_loop(uv_loop_t *loop) {
  uv_run(loop, UV_RUN_DEFAULT); /* returns once every handle closed */
  assert_int_equal(uv_loop_close(loop), 0);
}

static void test_a_result_is_answered_once_on_a_later_iteration_with_a_copy_then_released(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  rec r = {0};
  char msg[32] = "assistant bot: bad tools";
  be_result res = {.err = AW_EINVAL, .errmsg = msg};
  be_defer *d = NULL;
  assert_int_equal(be_defer_result(&loop, &res, on_answer, &r, on_release, &r, &d), AW_OK);
  assert_non_null(d);
  assert_string_equal(r.seq, ""); /* never inside the call */
  memset(msg, 'x', sizeof msg - 1); /* the caller's strings need not outlive the call */
  close_loop(&loop);
  assert_string_equal(r.seq, "ar");
  assert_int_equal(r.err, AW_EINVAL);
  assert_string_equal(r.msg, "assistant bot: bad tools");
  assert_true(r.id_null); /* NULL stays NULL */
}

static void test_a_long_message_is_cut_to_its_bound(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  rec r = {0};
  char big[2000];
  memset(big, 'm', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  be_result res = {.err = AW_EINVAL, .errmsg = big};
  be_defer *d = NULL;
  assert_int_equal(be_defer_result(&loop, &res, on_answer, &r, NULL, NULL, &d), AW_OK);
  close_loop(&loop);
  assert_string_equal(r.seq, "a");
  assert_int_equal(strlen(r.msg), 383);
}

static void test_a_defer_cancelled_before_its_answer_never_answers_and_releases_at_once(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  rec r = {0};
  be_result res = {.err = AW_OK, .errmsg = ""};
  be_defer *d = NULL;
  assert_int_equal(be_defer_result(&loop, &res, on_answer, &r, on_release, &r, &d), AW_OK);
  be_defer_cancel(d);
  assert_string_equal(r.seq, "r");
  close_loop(&loop);
  assert_string_equal(r.seq, "r");
}

static void test_a_cancel_inside_the_answer_releases_once_after_it(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  rec r = {.cancel_inside = 1};
  be_result res = {.err = AW_OK, .errmsg = ""};
  assert_int_equal(be_defer_result(&loop, &res, on_answer, &r, on_release, &r, &r.self), AW_OK);
  close_loop(&loop);
  assert_string_equal(r.seq, "ar");
}

static void test_a_call_runs_once_on_a_later_iteration_and_a_cancelled_one_never(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  rec ran = {.cancel_inside = 1}, cancelled = {0};
  be_defer *d = NULL;
  assert_int_equal(be_defer_call(&loop, on_call, &ran, &ran.self), AW_OK);
  assert_int_equal(be_defer_call(&loop, on_call, &cancelled, &d), AW_OK);
  assert_string_equal(ran.seq, "");
  be_defer_cancel(d);
  be_defer_cancel(NULL); /* safe */
  close_loop(&loop);
  assert_string_equal(ran.seq, "f");
  assert_string_equal(cancelled.seq, "");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_result_is_answered_once_on_a_later_iteration_with_a_copy_then_released),
      cmocka_unit_test(test_a_long_message_is_cut_to_its_bound),
      cmocka_unit_test(test_a_defer_cancelled_before_its_answer_never_answers_and_releases_at_once),
      cmocka_unit_test(test_a_cancel_inside_the_answer_releases_once_after_it),
      cmocka_unit_test(test_a_call_runs_once_on_a_later_iteration_and_a_cancelled_one_never),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_cancel.c -- the conversation request `cancel` at the seams a unit
 * test reaches cheaply: how a marked turn is cancelled at the backend
 * (worker/event/cancel.c, through a fake backend port that records what it
 * is asked), how the cancelled turn's answer is worded, and the scheduler's
 * out-of-band list that lets a cancel overtake its conversation's queue
 * (worker/sched/conv_sched.c; events left on it are freed by wks_free_all:
 * LeakSanitizer fails the test otherwise).
 *
 * Needs: nothing (no broker, no Redis, no network).  The cancel's own step
 * (wk_cancel_run: claim, head lookup, answer over Kafka) is covered end to
 * end by tests/integration/test_conversation_kinds.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cancel.h"
#include "conv_sched.h"
#include "event.h"
#include "worker_int.h"

/* ---- a backend that records what it is asked ------------------------------------ */

typedef struct fake_op {
  be_op_head head;
  int id;
} fake_op;

static struct {
  int cancels;                 /* be_turn_cancel calls */
  char checkpoint[BE_CHECKPOINT_MAX];
  int refuse;                  /* be_turn_cancel answers this error */
  int cancelled_ops[8];        /* ids of the ops be_op_cancel was called on */
  int ncancelled;
  fake_op ops[8];
  int nops;
} fb;

static be_backend fake_be;

static int fake_turn_cancel(be_backend *be, const be_turn_input *in, const be_turn_events *ev, void *opaque,
                            be_op **op) {
  (void)ev;
  (void)opaque;
  fb.cancels++;
  snprintf(fb.checkpoint, sizeof fb.checkpoint, "%s", in->checkpoint ? in->checkpoint : "");
  if (fb.refuse) return fb.refuse;
  fake_op *o = &fb.ops[fb.nops];
  o->head.be = be;
  o->id = 100 + fb.nops++;
  *op = (be_op *)o;
  return AW_OK;
}

static void fake_op_cancel(be_op *op) { fb.cancelled_ops[fb.ncancelled++] = ((fake_op *)op)->id; }

static const be_ops fake_ops = {.kind = "fake", .turn_cancel = fake_turn_cancel, .op_cancel = fake_op_cancel};

/* A worker and one message event whose turn runs (op = the "running" op 1). */
typedef struct fixture {
  wk w;
  wk_event ev;
  contract_request req;
  fake_op running;
} fixture;

static int setup(void **state) {
  memset(&fb, 0, sizeof fb);
  fake_be.ops = &fake_ops;
  fixture *f = calloc(1, sizeof *f);
  f->w.be = &fake_be;
  f->req.kind = CONTRACT_KIND_MESSAGE;
  f->ev.w = &f->w;
  f->ev.req = &f->req;
  wk_copy_id(f->ev.event_id, sizeof f->ev.event_id, "evt-turn");
  wk_copy_id(f->ev.conv_id, sizeof f->ev.conv_id, "conv-1");
  wk_copy_id(f->ev.conv_ref, sizeof f->ev.conv_ref, "conv-1");
  f->ev.state = ST_TURN;
  f->running.head.be = &fake_be;
  f->running.id = 1;
  f->ev.op = (be_op *)&f->running;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  free(*state);
  return 0;
}

/* ---- the turn's cancellation ---------------------------------------------------- */

static void cancel_waiting_for_checkpoint_is_sent_when_it_arrives(void **state) {
  fixture *f = *state;
  wk_copy_id(f->ev.cancel_by, sizeof f->ev.cancel_by, "evt-cancel");
  /* No checkpoint yet: nothing can be cancelled at the backend. */
  wk_cancel_on_checkpoint(&f->ev);
  assert_int_equal(fb.cancels, 0);
  wk_copy_id(f->ev.checkpoint, sizeof f->ev.checkpoint, "conv_1 resp_1 0");
  wk_cancel_on_checkpoint(&f->ev);
  assert_int_equal(fb.cancels, 1);
  assert_string_equal(fb.checkpoint, "conv_1 resp_1 0");
  /* The running op was replaced by the cancel's. */
  assert_int_equal(fb.ncancelled, 1);
  assert_int_equal(fb.cancelled_ops[0], 1);
  assert_ptr_equal(f->ev.op, (be_op *)&fb.ops[0]);
  assert_true(f->ev.cancel_sent);
  /* The cancel's own checkpoints do not cancel it again. */
  wk_cancel_on_checkpoint(&f->ev);
  assert_int_equal(fb.cancels, 1);
}

static void checkpoint_of_a_turn_nobody_cancelled_changes_nothing(void **state) {
  fixture *f = *state;
  wk_copy_id(f->ev.checkpoint, sizeof f->ev.checkpoint, "conv_1 resp_1 0");
  wk_cancel_on_checkpoint(&f->ev);
  assert_int_equal(fb.cancels, 0);
  assert_int_equal(fb.ncancelled, 0);
  assert_ptr_equal(f->ev.op, (be_op *)&f->running);
}

static void refused_backend_cancel_leaves_the_turn_running(void **state) {
  fixture *f = *state;
  fb.refuse = AW_EINVAL;
  wk_copy_id(f->ev.cancel_by, sizeof f->ev.cancel_by, "evt-cancel");
  wk_copy_id(f->ev.checkpoint, sizeof f->ev.checkpoint, "thread_1 run_1");
  wk_cancel_on_checkpoint(&f->ev);
  assert_int_equal(fb.cancels, 1);
  assert_int_equal(fb.ncancelled, 0); /* not orphaned: it answers as whatever it reaches */
  assert_ptr_equal(f->ev.op, (be_op *)&f->running);
}

static void recovered_event_cancelled_before_its_turn_is_cancelled_at_the_backend(void **state) {
  fixture *f = *state;
  f->ev.state = ST_LOOKUP;
  f->ev.op = NULL;
  f->ev.recover = 1; /* an earlier attempt started it ... */
  wk_copy_id(f->ev.checkpoint, sizeof f->ev.checkpoint, "conv_1 resp_9 3"); /* ... and left this */
  wk_copy_id(f->ev.cancel_by, sizeof f->ev.cancel_by, "evt-cancel");
  assert_int_equal(wk_cancel_before_turn(&f->ev), 1);
  assert_int_equal(fb.cancels, 1);
  assert_string_equal(fb.checkpoint, "conv_1 resp_9 3");
  assert_int_equal(f->ev.state, ST_TURN);
  assert_ptr_equal(f->ev.op, (be_op *)&fb.ops[0]);
}

static void turn_nobody_cancelled_starts(void **state) {
  fixture *f = *state;
  f->ev.state = ST_LOOKUP;
  f->ev.op = NULL;
  assert_int_equal(wk_cancel_before_turn(&f->ev), 0);
  assert_int_equal(fb.cancels, 0);
}

/* ---- the cancelled turn's answer ---------------------------------------------- */

static void cancelled_turn_is_answered_cancelled_by_request_naming_the_cancel(void **state) {
  fixture *f = *state;
  wk_copy_id(f->ev.cancel_by, sizeof f->ev.cancel_by, "evt-cancel-7");
  contract_response r = {0};
  r.status = "cancelled";
  r.error_code = "tool_timeout"; /* what the backend or the tool phase said */
  r.error_message = "no reply from get_weather by its deadline; the run was cancelled";
  char msg[200];
  wk_cancel_annotate(&f->ev, &r, msg, sizeof msg);
  assert_string_equal(r.status, "cancelled");
  assert_string_equal(r.error_code, "cancelled_by_request");
  assert_string_equal(r.error_message, "cancelled by event evt-cancel-7");
}

static void turn_that_finished_first_keeps_its_answer(void **state) {
  fixture *f = *state;
  wk_copy_id(f->ev.cancel_by, sizeof f->ev.cancel_by, "evt-cancel-7");
  contract_response r = {0};
  r.status = "completed";
  char msg[200];
  wk_cancel_annotate(&f->ev, &r, msg, sizeof msg);
  assert_string_equal(r.status, "completed");
  assert_null(r.error_code);
  assert_null(r.error_message);
}

static void turn_cancelled_otherwise_keeps_its_code(void **state) {
  fixture *f = *state;
  contract_response r = {0};
  r.status = "cancelled";
  r.error_code = "tool_timeout";
  char msg[200];
  wk_cancel_annotate(&f->ev, &r, msg, sizeof msg);
  assert_string_equal(r.error_code, "tool_timeout");
}

/* ---- out of band: a cancel is in no conversation queue ---------------------------- */

static wk_event *new_event(wk *w, const char *event_id, const char *conv) {
  wk_event *ev = calloc(1, sizeof *ev);
  ev->w = w;
  wk_copy_id(ev->event_id, sizeof ev->event_id, event_id);
  wk_copy_id(ev->conv_id, sizeof ev->conv_id, conv);
  wk_copy_id(ev->conv_ref, sizeof ev->conv_ref, conv);
  return ev;
}

static void out_of_band_events_stay_out_of_the_queue_and_are_freed_at_the_end(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  wk *w = calloc(1, sizeof *w);
  w->loop = &loop;
  uv_idle_init(&loop, &w->ready_idle);
  w->ready_idle.data = w;
  w->cfg.max_queue_per_conversation = 8;

  wk_event *turn = new_event(w, "evt-turn", "conv-1");
  wk_event *next = new_event(w, "evt-next", "conv-1");
  assert_int_equal(wks_enqueue(w, turn), AW_OK);
  assert_int_equal(wks_enqueue(w, next), AW_OK);
  wk_event *c1 = new_event(w, "evt-cancel-1", "conv-1");
  wk_event *c2 = new_event(w, "evt-cancel-2", "conv-1");
  wk_event *c3 = new_event(w, "evt-cancel-3", "conv-1");
  wks_start_out_of_band(w, c1);
  wks_start_out_of_band(w, c2);
  wks_start_out_of_band(w, c3);

  /* The cancels neither join nor move the conversation: its head is the turn. */
  assert_ptr_equal(wks_head(w, "conv-1"), turn);
  assert_null(c1->conv);
  assert_null(wks_head(w, "conv-2"));
  assert_true(c1->in_ready && c2->in_ready && c3->in_ready);

  /* One finishes (wk_ev_finish advances it): it leaves the list only. */
  wks_advance(w, c2);
  free(c2);
  assert_ptr_equal(wks_head(w, "conv-1"), turn);
  assert_ptr_equal(w->oob_head, c3);
  assert_ptr_equal(c3->oob_next, c1);
  assert_null(c1->oob_next);

  /* Shutdown frees the queued events and the rest of the out-of-band ones. */
  w->ready_head = w->ready_tail = NULL;
  wks_free_all(w);
  assert_null(w->oob_head);
  assert_null(w->convs);
  uv_close((uv_handle_t *)&w->ready_idle, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  free(w);
}

int main(void) {
  log_set_level(LOG_ERROR);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(cancel_waiting_for_checkpoint_is_sent_when_it_arrives, setup, teardown),
      cmocka_unit_test_setup_teardown(checkpoint_of_a_turn_nobody_cancelled_changes_nothing, setup, teardown),
      cmocka_unit_test_setup_teardown(refused_backend_cancel_leaves_the_turn_running, setup, teardown),
      cmocka_unit_test_setup_teardown(recovered_event_cancelled_before_its_turn_is_cancelled_at_the_backend, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(turn_nobody_cancelled_starts, setup, teardown),
      cmocka_unit_test_setup_teardown(cancelled_turn_is_answered_cancelled_by_request_naming_the_cancel, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(turn_that_finished_first_keeps_its_answer, setup, teardown),
      cmocka_unit_test_setup_teardown(turn_cancelled_otherwise_keeps_its_code, setup, teardown),
      cmocka_unit_test(out_of_band_events_stay_out_of_the_queue_and_are_freed_at_the_end),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

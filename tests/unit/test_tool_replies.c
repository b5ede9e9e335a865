/* Unit tests of the tool-reply consumer's dead-letter path
 * (worker/tools/tool_replies.c), run under ASan in CI.
 *
 * The module is compiled into this test (its steps are static) with fakes
 * for what it talks to: the producer (kp_produce, failing on demand) and
 * the tool state (tstate_*: never called by these tests).  The Redis reply
 * a verdict comes from is modelled by a heap string freed as soon as the
 * callback returns, which is what hiredis does; a dead letter that kept a
 * pointer into it reads freed memory when its produce is retried.
 *
 * Needs: nothing (no broker, no Redis). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../../worker/tools/tool_replies.c"

/* ---- fakes ----------------------------------------------------------------- */

static struct {
  int calls;          /* kp_produce calls */
  int fail_first;     /* that many calls fail before the produce succeeds */
  void *value;        /* the last produced record (a copy) */
  size_t value_len;
  void *opaque;
  char topic[64];
} fake;

/* The rest of the producer that tool_replies.c uses (the record limit of a
 * dead letter): the defaults of the real one. */
size_t kp_max_message_bytes(const kp *p) {
  (void)p;
  return 1000000;
}

size_t kp_record_size(size_t keylen, size_t len, size_t hdrlen) { return keylen + len + hdrlen + KP_RECORD_OVERHEAD; }

int kp_produce(kp *p, const char *topic, const void *key, size_t keylen, const void *value, size_t len,
               void *msg_opaque) {
  (void)p;
  (void)key;
  (void)keylen;
  fake.calls++;
  if (fake.calls <= fake.fail_first) return AW_EKAFKA;
  free(fake.value);
  fake.value = malloc(len ? len : 1);
  assert_non_null(fake.value);
  memcpy(fake.value, value, len);
  fake.value_len = len;
  fake.opaque = msg_opaque;
  snprintf(fake.topic, sizeof fake.topic, "%s", topic);
  return AW_OK;
}

int tstate_corr_lookup(tstate *t, const char *digest, tstate_corr_cb cb, void *opaque) {
  (void)t, (void)digest, (void)cb, (void)opaque;
  fail_msg("not expected");
  return AW_EREDIS;
}

int tstate_apply_reply(tstate *t, const char *conv, const char *run, const char *call, const char *kind,
                       const char *output, size_t output_len, int64_t now_ms, tstate_apply_cb cb, void *opaque) {
  (void)t, (void)conv, (void)run, (void)call, (void)kind, (void)output, (void)output_len, (void)now_ms, (void)cb,
      (void)opaque;
  fail_msg("not expected");
  return AW_EREDIS;
}

void tstate_wake(tstate *t, const char *owner, const char *conv, const char *run) {
  (void)t, (void)owner, (void)conv, (void)run;
  fail_msg("not expected");
}

/* ---- harness ---------------------------------------------------------------- */

#define DR_TAG 4u
static const char ORIGINAL[] = "\x82\xa1v\x01\xae" "correlation_id\xa4tc1.";

typedef struct fixture {
  uv_loop_t loop;
  trep *t;
} fixture;

static int setup(void **state) {
  memset(&fake, 0, sizeof fake);
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  trep *t = calloc(1, sizeof *t);
  assert_non_null(t);
  t->loop = &f->loop;
  t->cfg.topic = "assistant.tool-replies";
  t->cfg.dlq_topic = "assistant.dlq";
  t->cfg.owner = "me";
  t->cfg.max_in_flight = 1000;
  t->producer = (kp *)&fake; /* never dereferenced: kp_produce is the fake */
  t->dr_tag = DR_TAG;
  uv_timer_init(&f->loop, &t->retry_timer);
  uv_timer_init(&f->loop, &t->commit_timer);
  t->retry_timer.data = t->commit_timer.data = t;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, t->cfg.topic, 0);
  ptab_assign(&t->parts, l);
  rd_kafka_topic_partition_list_destroy(l);
  f->t = t;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  trep *t = f->t; /* trep_free without the consumer, which these tests lack */
  while (t->retry_head) {
    trep_msg *m = t->retry_head;
    t->retry_head = m->retry_next;
    msg_free(m);
  }
  ptab_free(&t->parts);
  t->handles_open = 2;
  uv_close((uv_handle_t *)&t->retry_timer, on_closed);
  uv_close((uv_handle_t *)&t->commit_timer, on_closed);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  free(f);
  free(fake.value);
  fake.value = NULL;
  return 0;
}

/* A reply as consumed (offset tracked, original bytes kept) and resolved to
 * its call, at the point where its outcome is applied. */
static trep_msg *consumed_reply(trep *t, int64_t offset) {
  ptab_part *p = ptab_get(&t->parts, 0);
  assert_non_null(p);
  assert_int_equal(otrk_add(&p->t, offset), AW_OK);
  trep_msg *m = calloc(1, sizeof *m);
  assert_non_null(m);
  m->t = t;
  m->partition = 0;
  m->offset = offset;
  m->gen = p->gen;
  m->orig_len = sizeof ORIGINAL - 1;
  m->orig = malloc(m->orig_len);
  memcpy(m->orig, ORIGINAL, m->orig_len);
  m->conv = strdup("conv-1");
  snprintf(m->run, sizeof m->run, "turn-1");
  snprintf(m->call, sizeof m->call, "call_1");
  m->stage = 1;
  t->in_flight++;
  return m;
}

/* What tool_state.c's on_apply does: the verdict lives in the Redis reply,
 * which hiredis frees when the callback returns. */
static void redis_answers_verdict(trep_msg *m, const char *verdict) {
  char *in_reply = strdup(verdict);
  assert_non_null(in_reply);
  on_applied(m, AW_OK, in_reply, 0, NULL);
  memset(in_reply, 'X', strlen(in_reply)); /* a reused block, without ASan */
  free(in_reply);
}

static int has(const void *hay, size_t n, const char *needle) {
  return memmem(hay, n, needle, strlen(needle)) != NULL;
}

/* Run the loop until the retry timer produced again (no sleeps: the
 * loop's own timer is the synchronisation). */
static void run_until_produced(fixture *f, int calls) {
  for (int i = 0; i < 50 && fake.calls < calls; i++) uv_run(&f->loop, UV_RUN_ONCE);
  assert_int_equal(fake.calls, calls);
}

static void dead_letter_retried_after_a_failed_produce_keeps_its_reason(void **state) {
  fixture *f = *state;
  trep *t = f->t;
  fake.fail_first = 1;
  trep_msg *m = consumed_reply(t, 7);
  redis_answers_verdict(m, "already_answered");
  assert_int_equal(fake.calls, 1); /* failed: waits for the retry timer */
  assert_null(fake.value);
  run_until_produced(f, 2);
  assert_string_equal(fake.topic, "assistant.dlq");
  assert_true(has(fake.value, fake.value_len, "already_answered"));
  assert_true(has(fake.value, fake.value_len, "the call already has a reply"));
  assert_true(has(fake.value, fake.value_len, ORIGINAL));
  assert_int_equal((uintptr_t)fake.opaque & 7u, DR_TAG);
  trep_on_dr(t, (void *)((uintptr_t)fake.opaque & ~(uintptr_t)7u), RD_KAFKA_RESP_ERR_NO_ERROR);
  assert_int_equal(t->in_flight, 0);
  assert_int_equal(t->st.dlq, 1);
  assert_int_equal(otrk_commit_point(&ptab_get(&t->parts, 0)->t), 8);
}

/* A reply over the record limit (its bytes travel again in the dead letter,
 * with an envelope) is dead-lettered degraded -- its size, SHA-256 and the
 * leading bytes that fit -- at once, instead of failing to produce forever. */
static void dead_letter_of_a_reply_over_the_record_limit_is_degraded_and_produced_once(void **state) {
  fixture *f = *state;
  trep *t = f->t;
  trep_msg *m = consumed_reply(t, 9);
  free(m->orig);
  m->orig_len = 1200000; /* the fake producer's limit is 1,000,000 */
  m->orig = malloc(m->orig_len);
  assert_non_null(m->orig);
  memset(m->orig, 'r', m->orig_len);
  redis_answers_verdict(m, "already_answered");
  assert_int_equal(fake.calls, 1);
  assert_non_null(fake.value);
  assert_true(fake.value_len + KP_RECORD_OVERHEAD <= 1000000);
  assert_true(has(fake.value, fake.value_len, "original_sha256"));
  assert_true(has(fake.value, fake.value_len, "original_size"));
  trep_on_dr(t, (void *)((uintptr_t)fake.opaque & ~(uintptr_t)7u), RD_KAFKA_RESP_ERR_NO_ERROR);
  assert_int_equal(t->in_flight, 0);
  assert_int_equal(t->st.dlq, 1);
}

static void dead_letter_retried_after_a_failed_delivery_keeps_its_reason(void **state) {
  fixture *f = *state;
  trep *t = f->t;
  trep_msg *m = consumed_reply(t, 3);
  redis_answers_verdict(m, "run_not_waiting");
  assert_int_equal(fake.calls, 1);
  assert_true(has(fake.value, fake.value_len, "run_not_waiting"));
  /* The broker refused it: the same record goes again. */
  trep_on_dr(t, (void *)((uintptr_t)fake.opaque & ~(uintptr_t)7u), RD_KAFKA_RESP_ERR__MSG_TIMED_OUT);
  free(fake.value);
  fake.value = NULL;
  run_until_produced(f, 2);
  assert_true(has(fake.value, fake.value_len, "run_not_waiting"));
  assert_true(has(fake.value, fake.value_len, "the run no longer waits for this call"));
  trep_on_dr(t, (void *)((uintptr_t)fake.opaque & ~(uintptr_t)7u), RD_KAFKA_RESP_ERR_NO_ERROR);
  assert_int_equal(t->in_flight, 0);
  assert_int_equal(t->st.dlq, 1);
}

static void dead_letter_of_an_undecodable_reply_keeps_the_decoders_message_on_retry(void **state) {
  fixture *f = *state;
  trep *t = f->t;
  fake.fail_first = 2;
  trep_msg *m = consumed_reply(t, 11);
  m->stage = 0;
  char detail[64];
  snprintf(detail, sizeof detail, "output is not a string");
  dead_letter(m, "invalid_field", "%s", detail);
  memset(detail, 'Y', sizeof detail - 1); /* the decoder's errstr is gone */
  run_until_produced(f, 3);
  assert_true(has(fake.value, fake.value_len, "invalid_field"));
  assert_true(has(fake.value, fake.value_len, "output is not a string"));
  trep_on_dr(t, (void *)((uintptr_t)fake.opaque & ~(uintptr_t)7u), RD_KAFKA_RESP_ERR_NO_ERROR);
  assert_int_equal(t->in_flight, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(dead_letter_retried_after_a_failed_produce_keeps_its_reason, setup, teardown),
      cmocka_unit_test_setup_teardown(dead_letter_of_a_reply_over_the_record_limit_is_degraded_and_produced_once,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(dead_letter_retried_after_a_failed_delivery_keeps_its_reason, setup, teardown),
      cmocka_unit_test_setup_teardown(dead_letter_of_an_undecodable_reply_keeps_the_decoders_message_on_retry, setup,
                                      teardown),
  };
  if (getenv("AW_TEST_FILTER")) cmocka_set_test_filter(getenv("AW_TEST_FILTER"));
  return cmocka_run_group_tests(tests, NULL, NULL);
}

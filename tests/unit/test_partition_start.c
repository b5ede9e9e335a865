/* Unit tests of a partition's start (worker/intake/part_table.c): an
 * assigned partition of the request consumer waits STARTING until its
 * committed offset and commit metadata are known, and the answer of that
 * read starts it only in the generation that asked; a partition revoked
 * (or revoked and assigned again) meanwhile drops it.
 *
 * Needs: nothing (no broker, no Redis). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "part_table.h"

static rd_kafka_topic_partition_list_t *parts_of(int n, const int32_t *v) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(n);
  for (int i = 0; i < n; i++) rd_kafka_topic_partition_list_add(l, "requests", v[i]);
  return l;
}

static void assign_starting(ptab *pt, int32_t p) {
  rd_kafka_topic_partition_list_t *l = parts_of(1, &p);
  ptab_assign_starting(pt, l);
  rd_kafka_topic_partition_list_destroy(l);
}

static void revoke_one(ptab *pt, int32_t p) {
  rd_kafka_topic_partition_list_t *l = parts_of(1, &p);
  ptab_revoke(pt, l);
  rd_kafka_topic_partition_list_destroy(l);
}

/* The metadata a commit at 11 carries when 12 and 14 are done too. */
static void metadata_12_and_14(char *md, size_t n) {
  otrk t;
  otrk_init(&t);
  for (int64_t o = 10; o <= 14; o++) assert_int_equal(otrk_add(&t, o), AW_OK);
  assert_int_equal(otrk_done(&t, 10), AW_OK);
  assert_int_equal(otrk_done(&t, 12), AW_OK);
  assert_int_equal(otrk_done(&t, 14), AW_OK);
  assert_int_equal(otrk_commit_point(&t), 11);
  assert_int_equal(otrk_metadata(&t, md, n), AW_OK);
  otrk_free(&t);
}

static void an_assigned_partition_waits_starting_until_its_answer_starts_it(void **state) {
  (void)state;
  ptab pt = {0};
  char md[64];
  metadata_12_and_14(md, sizeof md);
  assign_starting(&pt, 3);
  ptab_part *p = ptab_get(&pt, 3);
  assert_int_equal(p->state, PTAB_STARTING);
  assert_true(p->assigned);
  uint64_t gen = p->gen;
  assert_non_null(ptab_current(&pt, 3, gen)); /* its work is current: it is ours */
  assert_int_equal(ptab_start(&pt, 3, gen, 11, md, strlen(md)), AW_OK);
  assert_int_equal(p->state, PTAB_ACTIVE);
  assert_int_equal(p->gen, gen); /* starting is not a new assignment */
  assert_int_equal(p->committed_at_assign, 11);
  assert_true(otrk_skip_has(&p->skip, 12));
  assert_false(otrk_skip_has(&p->skip, 13));
  assert_true(otrk_skip_has(&p->skip, 14));
  ptab_free(&pt);
}

static void an_answer_for_a_partition_revoked_meanwhile_is_dropped(void **state) {
  (void)state;
  ptab pt = {0};
  char md[64];
  metadata_12_and_14(md, sizeof md);
  assign_starting(&pt, 0);
  uint64_t gen = ptab_get(&pt, 0)->gen;
  revoke_one(&pt, 0);
  assert_int_equal(ptab_start(&pt, 0, gen, 11, md, strlen(md)), AW_ESTATE);
  ptab_part *p = ptab_get(&pt, 0);
  assert_int_equal(p->state, PTAB_UNASSIGNED);
  assert_false(p->assigned);
  assert_false(otrk_skip_has(&p->skip, 12));
  ptab_free(&pt);
}

static void an_answer_for_an_earlier_assignment_does_not_start_the_next_one(void **state) {
  (void)state;
  ptab pt = {0};
  char md[64];
  metadata_12_and_14(md, sizeof md);
  assign_starting(&pt, 5);
  uint64_t first = ptab_get(&pt, 5)->gen;
  revoke_one(&pt, 5);
  assign_starting(&pt, 5); /* back to us: it asks again */
  uint64_t second = ptab_get(&pt, 5)->gen;
  assert_true(second != first);
  /* The first read's answer may describe an older commit: dropped. */
  assert_int_equal(ptab_start(&pt, 5, first, 11, md, strlen(md)), AW_ESTATE);
  assert_int_equal(ptab_get(&pt, 5)->state, PTAB_STARTING);
  assert_int_equal(ptab_get(&pt, 5)->committed_at_assign, -1);
  assert_int_equal(ptab_start(&pt, 5, second, 20, NULL, 0), AW_OK);
  assert_int_equal(ptab_get(&pt, 5)->state, PTAB_ACTIVE);
  assert_int_equal(ptab_get(&pt, 5)->committed_at_assign, 20);
  ptab_free(&pt);
}

static void a_started_partition_takes_no_second_answer(void **state) {
  (void)state;
  ptab pt = {0};
  char md[64];
  metadata_12_and_14(md, sizeof md);
  assign_starting(&pt, 1);
  uint64_t gen = ptab_get(&pt, 1)->gen;
  assert_int_equal(ptab_start(&pt, 1, gen, 11, md, strlen(md)), AW_OK);
  assert_int_equal(ptab_start(&pt, 1, gen, 30, NULL, 0), AW_ESTATE);
  assert_int_equal(ptab_get(&pt, 1)->committed_at_assign, 11);
  assert_true(otrk_skip_has(&ptab_get(&pt, 1)->skip, 12));
  ptab_free(&pt);
}

static void a_failed_read_starts_the_partition_without_metadata(void **state) {
  (void)state;
  ptab pt = {0};
  assign_starting(&pt, 2);
  uint64_t gen = ptab_get(&pt, 2)->gen;
  assert_int_equal(ptab_start(&pt, 2, gen, -1, NULL, 0), AW_OK);
  ptab_part *p = ptab_get(&pt, 2);
  assert_int_equal(p->state, PTAB_ACTIVE);
  assert_int_equal(p->committed_at_assign, -1);
  assert_false(otrk_skip_has(&p->skip, 0));
  ptab_free(&pt);
}

static void unreadable_metadata_starts_the_partition_without_a_skip_set(void **state) {
  (void)state;
  ptab pt = {0};
  assign_starting(&pt, 4);
  uint64_t gen = ptab_get(&pt, 4)->gen;
  const char *bad = "aw1:!!not base64!!";
  assert_int_equal(ptab_start(&pt, 4, gen, 11, bad, strlen(bad)), AW_EPARSE);
  ptab_part *p = ptab_get(&pt, 4);
  assert_int_equal(p->state, PTAB_ACTIVE);
  assert_int_equal(p->committed_at_assign, 11);
  assert_false(otrk_skip_has(&p->skip, 12));
  ptab_free(&pt);
}

static void the_reply_consumer_assigns_straight_to_active(void **state) {
  (void)state;
  ptab pt = {0};
  int32_t v[] = {0, 2};
  rd_kafka_topic_partition_list_t *l = parts_of(2, v);
  ptab_assign(&pt, l);
  assert_int_equal(ptab_get(&pt, 0)->state, PTAB_ACTIVE);
  assert_int_equal(ptab_get(&pt, 2)->state, PTAB_ACTIVE);
  assert_int_equal(ptab_get(&pt, 1)->state, PTAB_UNASSIGNED); /* grown, never assigned */
  assert_int_equal(ptab_start(&pt, 0, ptab_get(&pt, 0)->gen, 5, NULL, 0), AW_ESTATE);
  ptab_revoke(&pt, l);
  assert_int_equal(ptab_get(&pt, 0)->state, PTAB_UNASSIGNED);
  assert_false(ptab_get(&pt, 2)->assigned);
  rd_kafka_topic_partition_list_destroy(l);
  ptab_free(&pt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(an_assigned_partition_waits_starting_until_its_answer_starts_it),
      cmocka_unit_test(an_answer_for_a_partition_revoked_meanwhile_is_dropped),
      cmocka_unit_test(an_answer_for_an_earlier_assignment_does_not_start_the_next_one),
      cmocka_unit_test(a_started_partition_takes_no_second_answer),
      cmocka_unit_test(a_failed_read_starts_the_partition_without_metadata),
      cmocka_unit_test(unreadable_metadata_starts_the_partition_without_a_skip_set),
      cmocka_unit_test(the_reply_consumer_assigns_straight_to_active),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

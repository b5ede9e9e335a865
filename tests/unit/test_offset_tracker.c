/* Unit tests of offset_tracker: the commit point is the first offset not done. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <cmocka.h>

#include "offset_tracker.h"

static void commit_point_is_first_incomplete_offset(void **state) {
  (void)state;
  otrk t;
  otrk_init(&t);
  assert_int_equal(otrk_commit_point(&t), -1);
  for (int64_t o = 10; o < 15; o++) assert_int_equal(otrk_add(&t, o), AW_OK);
  assert_int_equal(otrk_commit_point(&t), 10);
  assert_int_equal(otrk_done(&t, 12), AW_OK);
  assert_int_equal(otrk_done(&t, 11), AW_OK);
  assert_int_equal(otrk_commit_point(&t), 10); /* 10 still running */
  assert_int_equal(otrk_done(&t, 10), AW_OK);
  assert_int_equal(otrk_commit_point(&t), 13);
  assert_int_equal(otrk_in_flight(&t), 2);
  assert_int_equal(otrk_done(&t, 14), AW_OK);
  assert_int_equal(otrk_done(&t, 13), AW_OK);
  assert_int_equal(otrk_commit_point(&t), 15); /* all done: one past the last */
  assert_int_equal(otrk_in_flight(&t), 0);
  otrk_free(&t);
}

static void gaps_in_offsets_are_skipped(void **state) {
  (void)state;
  otrk t;
  otrk_init(&t);
  assert_int_equal(otrk_add(&t, 3), AW_OK);
  assert_int_equal(otrk_add(&t, 7), AW_OK); /* 4..6 compacted away */
  assert_int_equal(otrk_done(&t, 3), AW_OK);
  assert_int_equal(otrk_commit_point(&t), 7);
  assert_int_equal(otrk_done(&t, 5), AW_ENOTFOUND);
  assert_int_equal(otrk_done(&t, 7), AW_OK);
  assert_int_equal(otrk_commit_point(&t), 8);
  otrk_free(&t);
}

static void offsets_must_increase(void **state) {
  (void)state;
  otrk t;
  otrk_init(&t);
  assert_int_equal(otrk_add(&t, 5), AW_OK);
  assert_int_equal(otrk_add(&t, 5), AW_EINVAL);
  assert_int_equal(otrk_add(&t, 4), AW_EINVAL);
  assert_int_equal(otrk_add(&t, -1), AW_EINVAL);
  otrk_free(&t);
}

static void take_commit_reports_only_progress(void **state) {
  (void)state;
  otrk t;
  int64_t c = 0;
  otrk_init(&t);
  assert_int_equal(otrk_take_commit(&t, &c), 0);
  assert_int_equal(otrk_add(&t, 0), AW_OK);
  assert_int_equal(otrk_take_commit(&t, &c), 1);
  assert_int_equal(c, 0);
  assert_int_equal(otrk_take_commit(&t, &c), 0);
  assert_int_equal(otrk_done(&t, 0), AW_OK);
  assert_int_equal(otrk_take_commit(&t, &c), 1);
  assert_int_equal(c, 1);
  otrk_free(&t);
}

/* Many offsets completed in a scrambled order, across ring growth and
 * wrap-around: the commit point always equals a brute-force model. */
static void random_completion_order_matches_model(void **state) {
  (void)state;
  enum { N = 5000 };
  static unsigned char done[N];
  otrk t;
  otrk_init(&t);
  uint32_t x = 12345;
  int64_t added = 0;
  for (int step = 0; step < 4 * N; step++) {
    x = x * 1103515245u + 12345u;
    if (added < N && (x >> 16) % 3 != 0) {
      assert_int_equal(otrk_add(&t, added), AW_OK);
      added++;
    } else if (added > 0) {
      int64_t o = (int64_t)((x >> 8) % (uint32_t)added);
      if (!done[o]) {
        done[o] = 1;
        assert_int_equal(otrk_done(&t, o), AW_OK);
      }
    }
    int64_t model = 0;
    while (model < added && done[model]) model++;
    assert_int_equal(otrk_commit_point(&t), added ? model : -1);
  }
  otrk_free(&t);
}

/* The done set beyond the commit point survives the metadata round trip:
 * after parsing, exactly the done offsets past the commit point are
 * reported done, whatever the completion order (and gaps in offsets). */
static void metadata_round_trips_the_done_set(void **state) {
  (void)state;
  enum { N = 3000 };
  static unsigned char done[N];
  memset(done, 0, sizeof done);
  otrk t;
  otrk_init(&t);
  uint32_t x = 777;
  for (int64_t o = 0; o < N; o++) {
    if (o % 7 == 3) continue; /* gaps: offsets never consumed */
    assert_int_equal(otrk_add(&t, o), AW_OK);
  }
  for (int round = 0; round < 4; round++) {
    for (int k = 0; k < N / 5; k++) {
      x = x * 1103515245u + 12345u;
      int64_t o = (int64_t)((x >> 8) % N);
      if (o % 7 == 3 || done[o]) continue;
      done[o] = 1;
      assert_int_equal(otrk_done(&t, o), AW_OK);
    }
    char md[OTRK_META_MAX_BYTES + 1];
    assert_int_equal(otrk_metadata(&t, md, sizeof md), AW_OK);
    int64_t cp = otrk_commit_point(&t);
    otrk_skip sk;
    assert_int_equal(otrk_skip_parse(&sk, cp, md, strlen(md)), AW_OK);
    for (int64_t o = 0; o < N; o++) {
      int want = o > cp && done[o];
      assert_int_equal(otrk_skip_has(&sk, o), want);
    }
    otrk_skip_free(&sk);
  }
  otrk_free(&t);
}

/* Nothing done past the commit point: empty metadata; foreign or broken
 * metadata: an empty set (broken is reported). */
static void metadata_empty_foreign_and_broken(void **state) {
  (void)state;
  otrk t;
  otrk_init(&t);
  char md[64];
  assert_int_equal(otrk_metadata(&t, md, sizeof md), AW_OK);
  assert_string_equal(md, "");
  assert_int_equal(otrk_add(&t, 10), AW_OK);
  assert_int_equal(otrk_add(&t, 11), AW_OK);
  assert_int_equal(otrk_done(&t, 10), AW_OK);
  assert_int_equal(otrk_metadata(&t, md, sizeof md), AW_OK);
  assert_string_equal(md, ""); /* 10 is covered by the commit point 11 */
  assert_int_equal(otrk_add(&t, 12), AW_OK);
  assert_int_equal(otrk_done(&t, 12), AW_OK);
  assert_int_equal(otrk_metadata(&t, md, sizeof md), AW_OK);
  assert_true(strncmp(md, OTRK_META_PREFIX, 4) == 0);
  assert_int_equal(otrk_metadata(&t, md, 5), AW_ETOOBIG); /* does not fit: never cut */
  otrk_skip sk;
  assert_int_equal(otrk_skip_parse(&sk, 11, "someone else's", 14), AW_OK);
  assert_false(otrk_skip_has(&sk, 12));
  assert_int_equal(otrk_skip_parse(&sk, 11, "aw1:%%%", 7), AW_EPARSE);
  assert_false(otrk_skip_has(&sk, 12));
  otrk_skip_free(&sk);
  otrk_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(metadata_round_trips_the_done_set),
      cmocka_unit_test(metadata_empty_foreign_and_broken),
      cmocka_unit_test(commit_point_is_first_incomplete_offset),
      cmocka_unit_test(gaps_in_offsets_are_skipped),
      cmocka_unit_test(offsets_must_increase),
      cmocka_unit_test(take_commit_reports_only_progress),
      cmocka_unit_test(random_completion_order_matches_model),
  };
  return cmocka_run_group_tests_name("offset_tracker", tests, NULL, NULL);
}

/* test_commit_metadata.c -- the commit metadata the worker reads back from
 * the broker (worker/intake/offset_tracker.c: otrk_skip_parse,
 * otrk_skip_has) at the edges: offsets near INT64_MAX, negative and huge
 * bases, metadata that is empty, foreign, truncated, over-long, not base64,
 * padded, or holds NULs, and the largest done set the format carries.
 * Whatever the broker hands over, the result is an empty set or exactly
 * what otrk_metadata wrote, with no arithmetic overflow (UBSan) and no read
 * out of bounds (ASan).
 *
 * Needs: nothing (no broker, no Redis). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "offset_tracker.h"

static void offsets_near_int64_max_are_refused_or_tracked_without_overflow(void **state) {
  (void)state;
  otrk t;
  otrk_init(&t);
  assert_int_equal(otrk_add(&t, INT64_MAX), AW_EINVAL); /* no "one past" it */
  assert_int_equal(otrk_add(&t, INT64_MAX - 2), AW_OK);
  assert_int_equal(otrk_add(&t, INT64_MAX - 1), AW_OK);
  assert_int_equal(otrk_add(&t, INT64_MAX), AW_EINVAL);
  assert_int_equal(otrk_done(&t, INT64_MAX - 1), AW_OK);
  char md[OTRK_META_MAX_BYTES + 1];
  assert_int_equal(otrk_metadata(&t, md, sizeof md), AW_OK);
  assert_string_equal(md, "aw1:AQ=="); /* commit point INT64_MAX - 2; bit 0: INT64_MAX - 1 */
  otrk_skip sk;
  assert_int_equal(otrk_skip_parse(&sk, INT64_MAX - 2, md, strlen(md)), AW_OK);
  assert_true(otrk_skip_has(&sk, INT64_MAX - 1));
  assert_false(otrk_skip_has(&sk, INT64_MAX));
  assert_false(otrk_skip_has(&sk, INT64_MAX - 2));
  assert_false(otrk_skip_has(&sk, INT64_MIN));
  otrk_skip_free(&sk);
  assert_int_equal(otrk_done(&t, INT64_MAX - 2), AW_OK);
  assert_int_equal(otrk_commit_point(&t), INT64_MAX);
  otrk_free(&t);
}

static void a_base_of_any_value_never_overflows(void **state) {
  (void)state;
  otrk_skip sk;
  /* Every bit set: 3 bytes -> offsets base+1 .. base+24. */
  const char *all = "aw1:////";
  const int64_t bases[] = {0, 1, 1000, INT64_MAX - 24, INT64_MAX - 1, INT64_MAX};
  for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++) {
    int64_t b = bases[i];
    assert_int_equal(otrk_skip_parse(&sk, b, all, strlen(all)), AW_OK);
    assert_false(otrk_skip_has(&sk, b));
    assert_false(otrk_skip_has(&sk, INT64_MIN));
    assert_false(otrk_skip_has(&sk, -1));
    if (b < INT64_MAX) assert_true(otrk_skip_has(&sk, b + 1));
    if (b <= INT64_MAX - 24) assert_true(otrk_skip_has(&sk, b + 24));
    if (b < INT64_MAX - 24) assert_false(otrk_skip_has(&sk, b + 25));
    if (b < INT64_MAX - 24) assert_false(otrk_skip_has(&sk, INT64_MAX)); /* far past the set */
    otrk_skip_free(&sk);
  }
  /* No committed offset (a negative one): nothing is beyond it. */
  const int64_t negative[] = {-1, -1001 /* RD_KAFKA_OFFSET_INVALID */, INT64_MIN};
  for (size_t i = 0; i < sizeof negative / sizeof negative[0]; i++) {
    assert_int_equal(otrk_skip_parse(&sk, negative[i], all, strlen(all)), AW_EINVAL);
    assert_false(otrk_skip_has(&sk, 0));
    assert_false(otrk_skip_has(&sk, INT64_MAX)); /* INT64_MAX - INT64_MIN would overflow */
    otrk_skip_free(&sk);
  }
}

static void foreign_truncated_and_malformed_metadata_give_an_empty_set(void **state) {
  (void)state;
  static const struct {
    const char *md;
    size_t len;
    int rc;
  } cases[] = {
      {"", 0, AW_OK},                 /* nothing beyond the commit point */
      {"aw1:", 4, AW_OK},             /* the prefix alone */
      {"aw1", 3, AW_OK},              /* not even the prefix: foreign */
      {"AW1:AQ==", 8, AW_OK},         /* another tool's (case matters) */
      {"aw2:AQ==", 8, AW_OK},         /* a later format: foreign to this one */
      {"aw1:AQ=", 7, AW_EPARSE},      /* truncated */
      {"aw1:AQ", 6, AW_EPARSE},       /* unpadded */
      {"aw1:A", 5, AW_EPARSE},
      {"aw1:%%%%", 8, AW_EPARSE},     /* not base64 */
      {"aw1:AQ-_", 8, AW_EPARSE},     /* base64url is not the alphabet */
      {"aw1:\0\0\0\0", 8, AW_EPARSE}, /* NULs */
      {"aw1:AQ\0=", 8, AW_EPARSE},    /* a NUL inside */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    otrk_skip sk;
    int rc = otrk_skip_parse(&sk, 10, cases[i].md, cases[i].len);
    if (rc != cases[i].rc) fail_msg("case %zu: rc %d, want %d", i, rc, cases[i].rc);
    for (int64_t o = 0; o < 64; o++)
      if (otrk_skip_has(&sk, o)) fail_msg("case %zu: offset %lld in the set", i, (long long)o);
    otrk_skip_free(&sk);
  }
  otrk_skip sk;
  assert_int_equal(otrk_skip_parse(&sk, 10, NULL, 8), AW_OK);
  assert_false(otrk_skip_has(&sk, 11));
  otrk_skip_free(&sk);
}

static void metadata_over_the_broker_cap_is_refused_at_both_ends(void **state) {
  (void)state;
  /* The largest span the format carries round-trips; one more is refused
   * when writing (the partition is held back before), and an over-long
   * metadata read back is refused, not decoded. */
  otrk t;
  otrk_init(&t);
  int64_t base = 1000;
  int64_t last = base + (int64_t)OTRK_META_MAX_SPAN;
  assert_int_equal(otrk_add(&t, base), AW_OK);
  assert_int_equal(otrk_add(&t, last), AW_OK);
  assert_int_equal(otrk_done(&t, last), AW_OK);
  char *md = malloc(OTRK_META_MAX_BYTES + 1);
  assert_non_null(md);
  assert_int_equal(otrk_metadata(&t, md, OTRK_META_MAX_BYTES + 1), AW_OK);
  assert_true(strlen(md) <= OTRK_META_MAX_BYTES);
  otrk_skip sk;
  assert_int_equal(otrk_skip_parse(&sk, base, md, strlen(md)), AW_OK);
  assert_true(otrk_skip_has(&sk, last));
  assert_false(otrk_skip_has(&sk, last - 1));
  assert_false(otrk_skip_has(&sk, base));
  otrk_skip_free(&sk);
  assert_int_equal(otrk_add(&t, last + 1), AW_OK);
  assert_int_equal(otrk_done(&t, last + 1), AW_OK);
  assert_int_equal(otrk_metadata(&t, md, OTRK_META_MAX_BYTES + 1), AW_ETOOBIG);
  otrk_free(&t);
  free(md);

  size_t n = 4 + OTRK_META_MAX_BYTES + 4; /* valid base64, over the cap */
  char *big = malloc(n);
  assert_non_null(big);
  memcpy(big, "aw1:", 4);
  memset(big + 4, 'A', n - 4);
  assert_int_equal(otrk_skip_parse(&sk, 0, big, n), AW_EPARSE);
  assert_false(otrk_skip_has(&sk, 1));
  otrk_skip_free(&sk);
  free(big);
}

static void a_set_parsed_twice_does_not_leak(void **state) {
  (void)state;
  /* part_table frees the previous set on every assignment; parse itself
   * starts from an empty one (the caller frees). */
  otrk_skip sk;
  assert_int_equal(otrk_skip_parse(&sk, 5, "aw1:AQ==", 8), AW_OK);
  assert_true(otrk_skip_has(&sk, 6));
  otrk_skip_free(&sk);
  otrk_skip_free(&sk); /* idempotent */
  assert_int_equal(otrk_skip_parse(&sk, 5, "aw1:AA==", 8), AW_OK);
  assert_false(otrk_skip_has(&sk, 6));
  otrk_skip_free(&sk);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(offsets_near_int64_max_are_refused_or_tracked_without_overflow),
      cmocka_unit_test(a_base_of_any_value_never_overflows),
      cmocka_unit_test(foreign_truncated_and_malformed_metadata_give_an_empty_set),
      cmocka_unit_test(metadata_over_the_broker_cap_is_refused_at_both_ends),
      cmocka_unit_test(a_set_parsed_twice_does_not_leak),
  };
  return cmocka_run_group_tests_name("commit_metadata", tests, NULL, NULL);
}

/* test_buf.c -- the bounded buffer: never past its max, frees on overflow,
 * appendf, consume, take.  Needs no infrastructure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "buf.h"

static void test_init_allocates_nothing(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 100);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  assert_int_equal(b.max, 100);
  buf_free(&b); /* freeing a never-used buffer is fine */
}

static void test_append_grows_up_to_max_and_stays_nul_terminated(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 1000);
  for (int i = 0; i < 100; i++) {
    assert_int_equal(buf_append(&b, "0123456789", 10), AW_OK);
    assert_int_equal(b.len, (size_t)(i + 1) * 10);
    assert_int_equal(b.data[b.len], '\0');
    assert_true(b.cap <= b.max + 1); /* capacity never overshoots the limit */
  }
  assert_int_equal(b.len, 1000);
  assert_memory_equal(b.data + 990, "0123456789", 10);
  buf_free(&b);
}

static void test_append_past_max_is_etoobig_and_frees(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 16);
  assert_int_equal(buf_append(&b, "0123456789", 10), AW_OK);
  assert_int_equal(buf_append(&b, "0123456789", 10), AW_ETOOBIG);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  assert_int_equal(b.max, 16); /* still usable with the same limit */
  assert_int_equal(buf_appends(&b, "again"), AW_OK);
  assert_string_equal(b.data, "again");
  /* A single append larger than max, and one whose size would overflow. */
  assert_int_equal(buf_append(&b, "x", 17), AW_ETOOBIG); /* size checked before reading */
  assert_null(b.data);
  assert_int_equal(buf_append(&b, "x", SIZE_MAX), AW_ETOOBIG);
  buf_free(&b);
}

static void test_zero_max_buffer_accepts_only_empty_appends(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 0);
  assert_int_equal(buf_append(&b, "", 0), AW_OK);
  assert_string_equal(b.data, "");
  assert_int_equal(buf_append(&b, "x", 1), AW_ETOOBIG);
  buf_free(&b);
}

static void test_appendf_formats_and_respects_max(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 32);
  assert_int_equal(buf_appendf(&b, "%s=%d", "n", 42), AW_OK);
  assert_int_equal(buf_appendf(&b, ",%05.1f", 3.14159), AW_OK);
  assert_string_equal(b.data, "n=42,003.1");
  assert_int_equal(b.len, 10);
  /* 10 + 22 = 32: exactly at the limit. */
  assert_int_equal(buf_appendf(&b, "%022d", 7), AW_OK);
  assert_int_equal(b.len, 32);
  assert_int_equal(b.data[32], '\0');
  assert_int_equal(buf_appendf(&b, "%c", 'x'), AW_ETOOBIG);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  buf_free(&b);
}

static void test_reset_keeps_allocation(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 100);
  assert_int_equal(buf_appends(&b, "hello"), AW_OK);
  char *p = b.data;
  size_t cap = b.cap;
  buf_reset(&b);
  assert_int_equal(b.len, 0);
  assert_ptr_equal(b.data, p);
  assert_int_equal(b.cap, cap);
  assert_string_equal(b.data, "");
  buf_free(&b);
}

static void test_consume_drops_prefix(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 100);
  assert_int_equal(buf_appends(&b, "line1\nline2\n"), AW_OK);
  buf_consume(&b, 6);
  assert_int_equal(b.len, 6);
  assert_string_equal(b.data, "line2\n");
  buf_consume(&b, 0);
  assert_string_equal(b.data, "line2\n");
  buf_consume(&b, 6); /* everything */
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  assert_int_equal(buf_appends(&b, "abc"), AW_OK);
  buf_consume(&b, 99); /* more than len empties it */
  assert_int_equal(b.len, 0);
  buf_free(&b);
  buf_consume(&b, 0); /* on a freed buffer: no-op */
  assert_null(b.data);
}

static void test_take_transfers_ownership_and_empties(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 100);
  size_t len = 99;
  assert_null(buf_take(&b, &len)); /* never allocated */
  assert_int_equal(len, 0);
  assert_int_equal(buf_appends(&b, "payload"), AW_OK);
  char *p = buf_take(&b, &len);
  assert_non_null(p);
  assert_int_equal(len, 7);
  assert_string_equal(p, "payload");
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  assert_int_equal(b.max, 100);
  free(p); /* the caller owns it now */
  assert_int_equal(buf_appends(&b, "next"), AW_OK); /* b is reusable */
  p = buf_take(&b, NULL);
  assert_string_equal(p, "next");
  free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_init_allocates_nothing),
      cmocka_unit_test(test_append_grows_up_to_max_and_stays_nul_terminated),
      cmocka_unit_test(test_append_past_max_is_etoobig_and_frees),
      cmocka_unit_test(test_zero_max_buffer_accepts_only_empty_appends),
      cmocka_unit_test(test_appendf_formats_and_respects_max),
      cmocka_unit_test(test_reset_keeps_allocation),
      cmocka_unit_test(test_consume_drops_prefix),
      cmocka_unit_test(test_take_transfers_ownership_and_empties),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

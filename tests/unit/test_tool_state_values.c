/* test_tool_state_values.c -- the values worker/tools/tool_state.c reads back
 * from Redis and its callers split into ids they copy and bind:
 * tstate_parse_corr ("<run> <call> <conv>", the correlation record) and
 * tstate_parse_wake ("<run> <conv>", a wake-up).  Redis holds what anyone
 * with access to it wrote, so: missing or empty parts, parts one byte over
 * their buffers, embedded NULs, spaces in the conversation id, and values
 * of every length up to the buffers' are each either refused (outputs
 * untouched) or split exactly; nothing is read or written out of bounds
 * (ASan).  The round trip with what tstate_round_begin / tstate_wake write
 * ("%s %s %s" / "%s %s") is checked on the same ids.
 *
 * Needs: nothing (no Redis). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tool_state.h"

/* A heap copy of exactly len bytes (no NUL after it), so that ASan sees a
 * read past the value. */
static char *exact(const char *s, size_t len) {
  char *p = malloc(len ? len : 1);
  assert_non_null(p);
  memcpy(p, s, len);
  return p;
}

static int corr(const char *v, size_t len, char run[128], char call[128], const char **conv, size_t *conv_len) {
  char *p = exact(v, len);
  memset(run, 'R', 128);
  memset(call, 'C', 128);
  *conv = NULL;
  *conv_len = 0;
  int rc = tstate_parse_corr(p, len, run, 128, call, 128, conv, conv_len);
  if (rc == AW_OK) {
    assert_true(*conv >= p && *conv + *conv_len <= p + len);
    *conv = *conv - p + v; /* into the caller's string, p is freed */
  }
  free(p);
  return rc;
}

static void correlation_record_splits_into_run_call_and_the_rest(void **state) {
  (void)state;
  char run[128], call[128];
  const char *conv;
  size_t n;
  const char *v = "3f2a9c0b17d54e6f8a1b2c3d4e5f6a7b call_abc conv with spaces {and} braces";
  assert_int_equal(corr(v, strlen(v), run, call, &conv, &n), AW_OK);
  assert_string_equal(run, "3f2a9c0b17d54e6f8a1b2c3d4e5f6a7b");
  assert_string_equal(call, "call_abc");
  assert_int_equal(n, strlen("conv with spaces {and} braces"));
  assert_memory_equal(conv, "conv with spaces {and} braces", n);
  /* What tstate_round_begin writes reads back as it was. */
  char w[600];
  snprintf(w, sizeof w, "%s %s %s", "r1", "call_1", "c");
  assert_int_equal(corr(w, strlen(w), run, call, &conv, &n), AW_OK);
  assert_string_equal(run, "r1");
  assert_string_equal(call, "call_1");
  assert_int_equal(n, 1);
  assert_memory_equal(conv, "c", 1);
}

static void correlation_record_with_a_part_missing_or_empty_is_refused(void **state) {
  (void)state;
  static const char *const bad[] = {
      "",          " ",          "  ",        "   ",      "run",       "run ",     "run call",
      "run call ", " call conv", "run  conv", "\x01 \x02 ", "a b",      " a b c",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char run[128], call[128];
    const char *conv;
    size_t n;
    if (corr(bad[i], strlen(bad[i]), run, call, &conv, &n) != AW_EPARSE) fail_msg("accepted \"%s\"", bad[i]);
    assert_int_equal(run[0], 'R'); /* untouched */
    assert_int_equal(call[0], 'C');
    assert_null(conv);
  }
  char run[4], call[4];
  const char *conv = NULL;
  size_t n = 0;
  assert_int_equal(tstate_parse_corr(NULL, 5, run, sizeof run, call, sizeof call, &conv, &n), AW_EPARSE);
  assert_int_equal(tstate_parse_corr("a b c", 5, NULL, 4, call, 4, &conv, &n), AW_EPARSE);
  assert_int_equal(tstate_parse_corr("a b c", 0, run, 4, call, 4, &conv, &n), AW_EPARSE);
}

static void correlation_record_parts_must_fit_their_buffers(void **state) {
  (void)state;
  /* run_size 8: 7 bytes fit, 8 do not; the same for call. */
  char run[8], call[8];
  const char *conv;
  size_t n;
  assert_int_equal(tstate_parse_corr("1234567 abcdefg x", 17, run, 8, call, 8, &conv, &n), AW_OK);
  assert_string_equal(run, "1234567");
  assert_string_equal(call, "abcdefg");
  assert_int_equal(tstate_parse_corr("12345678 abc x", 14, run, 8, call, 8, &conv, &n), AW_EPARSE);
  assert_int_equal(tstate_parse_corr("123 abcdefgh x", 14, run, 8, call, 8, &conv, &n), AW_EPARSE);
  assert_int_equal(tstate_parse_corr("1 a x", 5, run, 1, call, 8, &conv, &n), AW_EPARSE); /* no room at all */
  /* A huge value: the conversation part is not copied, so any length reads. */
  size_t big = 1 << 20;
  char *v = malloc(big);
  assert_non_null(v);
  memcpy(v, "r c ", 4);
  memset(v + 4, 'z', big - 4);
  assert_int_equal(tstate_parse_corr(v, big, run, 8, call, 8, &conv, &n), AW_OK);
  assert_int_equal(n, big - 4);
  memset(v, 'r', big); /* one huge run id, no separator */
  assert_int_equal(tstate_parse_corr(v, big, run, 8, call, 8, &conv, &n), AW_EPARSE);
  free(v);
}

static void correlation_record_with_an_embedded_nul_is_refused(void **state) {
  (void)state;
  char run[128], call[128];
  const char *conv;
  size_t n;
  static const char with_nul[][12] = {"r\0 c conv", "r c\0 conv", "r c co\0nv", "r c conv\0"};
  static const size_t lens[] = {9, 9, 9, 9};
  for (size_t i = 0; i < 4; i++)
    if (corr(with_nul[i], lens[i], run, call, &conv, &n) != AW_EPARSE) fail_msg("case %zu accepted", i);
  /* Only the first len bytes count: a NUL after them is not the value's. */
  assert_int_equal(corr("r c conv\0junk", 8, run, call, &conv, &n), AW_OK);
  assert_int_equal(n, 4);
}

static void every_length_and_split_point_is_either_refused_or_exact(void **state) {
  (void)state;
  /* All strings over {'a', ' '} up to 10 bytes: a property check against a
   * direct model of the format. */
  for (size_t len = 0; len <= 10; len++) {
    for (unsigned mask = 0; mask < (1u << len); mask++) {
      char v[11];
      for (size_t i = 0; i < len; i++) v[i] = (mask >> i) & 1 ? ' ' : 'a';
      /* model: first space at i (>0), second at j (>i+1), rest non-empty */
      const char *s1 = memchr(v, ' ', len);
      const char *s2 = s1 ? memchr(s1 + 1, ' ', len - (size_t)(s1 - v) - 1) : NULL;
      int ok = s1 && s2 && s1 > v && s2 > s1 + 1 && s2 + 1 < v + len && (size_t)(s1 - v) < 4 &&
               (size_t)(s2 - s1 - 1) < 4;
      char run[4], call[4];
      const char *conv = NULL;
      size_t n = 0;
      char *p = exact(v, len);
      int rc = tstate_parse_corr(p, len, run, sizeof run, call, sizeof call, &conv, &n);
      if ((rc == AW_OK) != ok) fail_msg("len %zu mask %x: rc %d, model %d", len, mask, rc, ok);
      if (ok) {
        assert_int_equal(strlen(run), (size_t)(s1 - v));
        assert_int_equal(strlen(call), (size_t)(s2 - s1 - 1));
        assert_true(conv == p + (s2 - v) + 1 && n == len - (size_t)(s2 - v) - 1);
      }
      char turn[4];
      rc = tstate_parse_wake(p, len, turn, sizeof turn);
      int wok = s1 && s1 > v && s1 + 1 < v + len && (size_t)(s1 - v) < 4;
      if ((rc == AW_OK) != wok) fail_msg("wake len %zu mask %x: rc %d, model %d", len, mask, rc, wok);
      if (wok) assert_int_equal(strlen(turn), (size_t)(s1 - v));
      free(p);
    }
  }
}

static void wake_up_gives_the_turn_token(void **state) {
  (void)state;
  char turn[33];
  char w[300];
  snprintf(w, sizeof w, "%s %s", "0123456789abcdef0123456789abcdef", "conv 1");
  assert_int_equal(tstate_parse_wake(w, strlen(w), turn, sizeof turn), AW_OK);
  assert_string_equal(turn, "0123456789abcdef0123456789abcdef");
  /* one byte longer than a digest: not ours */
  snprintf(w, sizeof w, "%s %s", "0123456789abcdef0123456789abcdef0", "c");
  assert_int_equal(tstate_parse_wake(w, strlen(w), turn, sizeof turn), AW_EPARSE);
  static const char *const bad[] = {"", " ", "turn", "turn ", " conv", "  "};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memset(turn, 'T', sizeof turn);
    if (tstate_parse_wake(bad[i], strlen(bad[i]), turn, sizeof turn) != AW_EPARSE) fail_msg("accepted \"%s\"", bad[i]);
    assert_int_equal(turn[0], 'T');
  }
  assert_int_equal(tstate_parse_wake("t\0 c", 4, turn, sizeof turn), AW_EPARSE);
  assert_int_equal(tstate_parse_wake("t c\0", 4, turn, sizeof turn), AW_EPARSE);
  assert_int_equal(tstate_parse_wake(NULL, 3, turn, sizeof turn), AW_EPARSE);
  assert_int_equal(tstate_parse_wake("t c", 3, NULL, 4), AW_EPARSE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(correlation_record_splits_into_run_call_and_the_rest),
      cmocka_unit_test(correlation_record_with_a_part_missing_or_empty_is_refused),
      cmocka_unit_test(correlation_record_parts_must_fit_their_buffers),
      cmocka_unit_test(correlation_record_with_an_embedded_nul_is_refused),
      cmocka_unit_test(every_length_and_split_point_is_either_refused_or_exact),
      cmocka_unit_test(wake_up_gives_the_turn_token),
  };
  return cmocka_run_group_tests_name("tool_state_values", tests, NULL, NULL);
}

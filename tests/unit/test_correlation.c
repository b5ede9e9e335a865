/* test_correlation.c -- tool-call correlation ids (common/contract/correlation.c).
 *
 * Needs: nothing (no broker, no network, no Redis).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "correlation.h"

static const char SECRET[] = "0123456789abcdef-current-secret";
static const char OLD_SECRET[] = "fedcba9876543210-previous-secret";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void key(corr_key *k, const char *secret) {
  assert_int_equal(corr_key_init(k, secret, strlen(secret)), AW_OK);
}

static void make(const corr_key *k, int64_t deadline, char id[CORR_ID_SIZE]) {
  assert_int_equal(corr_new(k, "conv-1", "run_1", "call_1", deadline, id, CORR_ID_SIZE), AW_OK);
}

static void new_id_verifies_and_carries_the_deadline(void **state) {
  (void)state;
  corr_key k;
  key(&k, SECRET);
  const int64_t deadlines[] = {0, 1, 1764000030000, INT64_MAX};
  for (size_t i = 0; i < sizeof deadlines / sizeof deadlines[0]; i++) {
    char id[CORR_ID_SIZE];
    make(&k, deadlines[i], id);
    assert_int_equal(strlen(id), CORR_ID_LEN);
    assert_memory_equal(id, "tc1.", 4);
    for (size_t j = 4; j < CORR_ID_LEN; j++) assert_non_null(strchr(B64URL, id[j]));
    int64_t d = -1;
    assert_int_equal(corr_verify(&k, id, "conv-1", "run_1", "call_1", &d), AW_OK);
    assert_true(d == deadlines[i]);
    assert_int_equal(corr_verify(&k, id, "conv-1", "run_1", "call_1", NULL), AW_OK);
  }
  corr_key_clear(&k);
}

static int cmp_id(const void *a, const void *b) { return strcmp(a, b); }

static void ids_are_unique(void **state) {
  (void)state;
  corr_key k;
  key(&k, SECRET);
  enum { N = 2000 };
  char(*ids)[CORR_ID_SIZE] = malloc(N * CORR_ID_SIZE);
  assert_non_null(ids);
  for (int i = 0; i < N; i++) make(&k, 42, ids[i]);
  qsort(ids, N, CORR_ID_SIZE, cmp_id);
  for (int i = 1; i < N; i++) assert_string_not_equal(ids[i - 1], ids[i]);
  free(ids);
}

static void every_changed_character_fails(void **state) {
  (void)state;
  corr_key k;
  key(&k, SECRET);
  char id[CORR_ID_SIZE];
  make(&k, 1764000030000, id);
  size_t tried = 0;
  for (size_t pos = 0; pos < CORR_ID_LEN; pos++) {
    /* Every other alphabet character, and a few outside it. */
    const char *alts = pos < 4 ? "tcT1C2._-" : B64URL;
    for (const char *a = alts; *a; a++) {
      if (*a == id[pos]) continue;
      char t[CORR_ID_SIZE];
      memcpy(t, id, sizeof t);
      t[pos] = *a;
      if (corr_verify(&k, t, "conv-1", "run_1", "call_1", NULL) != AW_EINVAL)
        fail_msg("changed position %zu to %c: accepted", pos, *a);
      tried++;
    }
    for (const char *a = "+/=. \n"; *a; a++) {
      char t[CORR_ID_SIZE];
      memcpy(t, id, sizeof t);
      t[pos] = *a;
      if (t[pos] != id[pos]) assert_int_equal(corr_verify(&k, t, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
    }
  }
  assert_true(tried > 54 * 60);
  /* Every bit of every byte flipped, including into non-ASCII. */
  for (size_t pos = 0; pos < CORR_ID_LEN; pos++) {
    for (int bit = 0; bit < 8; bit++) {
      char t[CORR_ID_SIZE];
      memcpy(t, id, sizeof t);
      t[pos] = (char)(t[pos] ^ (1 << bit));
      if (t[pos] == '\0') continue; /* a shorter string: covered by the length cases */
      assert_int_equal(corr_verify(&k, t, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
    }
  }
  assert_int_equal(corr_verify(&k, id, "conv-1", "run_1", "call_1", NULL), AW_OK);
}

static void id_is_bound_to_its_call(void **state) {
  (void)state;
  corr_key k;
  key(&k, SECRET);
  char id[CORR_ID_SIZE];
  make(&k, 5, id);
  assert_int_equal(corr_verify(&k, id, "conv-2", "run_1", "call_1", NULL), AW_EINVAL);
  assert_int_equal(corr_verify(&k, id, "conv-1", "run_2", "call_1", NULL), AW_EINVAL);
  assert_int_equal(corr_verify(&k, id, "conv-1", "run_1", "call_2", NULL), AW_EINVAL);
  assert_int_equal(corr_verify(&k, id, "run_1", "conv-1", "call_1", NULL), AW_EINVAL); /* swapped */
  assert_int_equal(corr_verify(&k, id, "conv-1 ", "run_1", "call_1", NULL), AW_EINVAL);
  assert_int_equal(corr_verify(&k, id, "conv-", "1run_1", "call_1", NULL), AW_EINVAL);
  /* Moving bytes between ids cannot keep the tag: the parts are framed. */
  char framed[CORR_ID_SIZE];
  assert_int_equal(corr_new(&k, "ab", "c", "d", 5, framed, sizeof framed), AW_OK);
  assert_int_equal(corr_verify(&k, framed, "a", "bc", "d", NULL), AW_EINVAL);
  assert_int_equal(corr_verify(&k, framed, "ab", "c", "d", NULL), AW_OK);
  /* Another secret: another tag. */
  corr_key other;
  key(&other, OLD_SECRET);
  assert_int_equal(corr_verify(&other, id, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
}

static void previous_key_is_accepted_for_rotation(void **state) {
  (void)state;
  corr_key old, k;
  key(&old, OLD_SECRET);
  char made_before[CORR_ID_SIZE], made_after[CORR_ID_SIZE];
  make(&old, 7, made_before);

  key(&k, SECRET);
  assert_int_equal(corr_verify(&k, made_before, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  assert_int_equal(corr_key_set_previous(&k, OLD_SECRET, strlen(OLD_SECRET)), AW_OK);
  int64_t d = 0;
  assert_int_equal(corr_verify(&k, made_before, "conv-1", "run_1", "call_1", &d), AW_OK);
  assert_true(d == 7);
  /* New ids use the current key only. */
  make(&k, 8, made_after);
  assert_int_equal(corr_verify(&k, made_after, "conv-1", "run_1", "call_1", NULL), AW_OK);
  assert_int_equal(corr_verify(&old, made_after, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  /* The previous key still binds the call. */
  assert_int_equal(corr_verify(&k, made_before, "conv-1", "run_1", "call_9", NULL), AW_EINVAL);
  /* Dropping it ends the grace period. */
  assert_int_equal(corr_key_set_previous(&k, NULL, 0), AW_OK);
  assert_int_equal(corr_verify(&k, made_before, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  assert_int_equal(corr_key_set_previous(&k, "short", 5), AW_EINVAL);
  corr_key_clear(&k);
  corr_key_clear(&old);
}

static void keys_need_sixteen_bytes(void **state) {
  (void)state;
  corr_key k;
  assert_int_equal(corr_key_init(&k, "0123456789abcde", 15), AW_EINVAL);
  char id[CORR_ID_SIZE];
  assert_int_equal(corr_new(&k, "c", "r", "t", 1, id, sizeof id), AW_EINVAL); /* left unusable */
  assert_int_equal(corr_key_init(&k, NULL, 32), AW_EINVAL);
  assert_int_equal(corr_key_init(NULL, SECRET, strlen(SECRET)), AW_EINVAL);
  assert_int_equal(corr_key_init(&k, "0123456789abcdef", 16), AW_OK);
  make(&k, 1, id);
  /* A long secret (HMAC hashes it; so do we, once) works, and differs from
   * its 64-byte prefix. */
  char longs[200];
  memset(longs, 's', sizeof longs);
  corr_key kl, kp;
  assert_int_equal(corr_key_init(&kl, longs, sizeof longs), AW_OK);
  assert_int_equal(corr_key_init(&kp, longs, 64), AW_OK);
  make(&kl, 1, id);
  assert_int_equal(corr_verify(&kl, id, "conv-1", "run_1", "call_1", NULL), AW_OK);
  assert_int_equal(corr_verify(&kp, id, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  /* Secrets that differ only after 16 bytes are different keys. */
  corr_key a, b;
  assert_int_equal(corr_key_init(&a, "0123456789abcdefA", 17), AW_OK);
  assert_int_equal(corr_key_init(&b, "0123456789abcdefB", 17), AW_OK);
  make(&a, 1, id);
  assert_int_equal(corr_verify(&b, id, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  /* Clearing wipes the secret. */
  corr_key_clear(&a);
  static const unsigned char zero[sizeof a] = {0};
  assert_memory_equal(&a, zero, sizeof a);
  assert_int_equal(corr_verify(&a, id, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  corr_key_clear(NULL);
}

static void malformed_ids_are_refused(void **state) {
  (void)state;
  corr_key k;
  key(&k, SECRET);
  char id[CORR_ID_SIZE];
  make(&k, 1, id);
  char t[128];
  const char *bad[] = {"", "tc1.", "tc1", "tc2.", "TC1.", "x", CORR_PREFIX "AAAA"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(corr_verify(&k, bad[i], "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  assert_int_equal(corr_verify(&k, NULL, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  /* One character short, one too many, padding, a newline. */
  snprintf(t, sizeof t, "%.*s", CORR_ID_LEN - 1, id);
  assert_int_equal(corr_verify(&k, t, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  for (const char *suffix = "A=\n "; *suffix; suffix++) {
    snprintf(t, sizeof t, "%s%c", id, *suffix);
    assert_int_equal(corr_verify(&k, t, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  }
  /* Another version's prefix with the same body. */
  snprintf(t, sizeof t, "tc2.%s", id + 4);
  assert_int_equal(corr_verify(&k, t, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  /* Non-canonical last character: same bytes, other spelling. */
  snprintf(t, sizeof t, "%s", id);
  const char *p = strchr(B64URL, t[CORR_ID_LEN - 1]);
  int v = (int)(p - B64URL);
  t[CORR_ID_LEN - 1] = B64URL[v | 1];
  assert_int_equal(v & 15, 0); /* canonical: the 4 spare bits are zero */
  assert_int_equal(corr_verify(&k, t, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  /* Bad bound ids on the verify side. */
  assert_int_equal(corr_verify(&k, id, NULL, "run_1", "call_1", NULL), AW_EINVAL);
  assert_int_equal(corr_verify(&k, id, "conv-1", "", "call_1", NULL), AW_EINVAL);
  assert_int_equal(corr_verify(NULL, id, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
}

static void new_checks_its_arguments(void **state) {
  (void)state;
  corr_key k;
  key(&k, SECRET);
  char id[CORR_ID_SIZE];
  char big[CORR_MAX_BOUND_ID + 2];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(corr_new(&k, NULL, "r", "t", 1, id, sizeof id), AW_EINVAL);
  assert_int_equal(corr_new(&k, "c", NULL, "t", 1, id, sizeof id), AW_EINVAL);
  assert_int_equal(corr_new(&k, "c", "r", NULL, 1, id, sizeof id), AW_EINVAL);
  assert_int_equal(corr_new(&k, "", "r", "t", 1, id, sizeof id), AW_EINVAL);
  assert_int_equal(corr_new(&k, big, "r", "t", 1, id, sizeof id), AW_EINVAL);
  assert_int_equal(corr_new(&k, "c", "r", "t", -1, id, sizeof id), AW_EINVAL);
  assert_int_equal(corr_new(&k, "c", "r", "t", 1, id, CORR_ID_SIZE - 1), AW_EINVAL);
  assert_int_equal(corr_new(&k, "c", "r", "t", 1, NULL, sizeof id), AW_EINVAL);
  assert_int_equal(corr_new(NULL, "c", "r", "t", 1, id, sizeof id), AW_EINVAL);
  /* The longest bound id works on both sides. */
  big[CORR_MAX_BOUND_ID] = '\0';
  assert_int_equal(corr_new(&k, big, big, big, 1, id, sizeof id), AW_OK);
  assert_int_equal(corr_verify(&k, id, big, big, big, NULL), AW_OK);
  big[CORR_MAX_BOUND_ID] = 'x';
  assert_int_equal(corr_verify(&k, id, big, big, big, NULL), AW_EINVAL);
}

/* An id built independently from the layout in correlation.h (Python's
 * hmac/hashlib/base64; it is the id of schemas/examples/tool-*.json), so the
 * documented construction and the code cannot drift apart. */
static void documented_construction_verifies(void **state) {
  (void)state;
  static const char id[] = "tc1.jzocnit9T2ChssPU5fYHGAAAAZq2mF0w5mll_wrDaDxYx_rS3uEq1g";
  corr_key k;
  key(&k, "example-secret-0123456789abcdef");
  int64_t d = 0;
  assert_int_equal(corr_verify(&k, id, "conv-4711", "run_1a2b3c4d5e6f", "call_Xy12Ab34Cd56Ef78", &d), AW_OK);
  assert_true(d == 1764000030000);
  char dig[CORR_DIGEST_SIZE];
  assert_int_equal(corr_digest(id, dig), AW_OK);
  assert_string_equal(dig, "2d31d995acaae116a62f6ac66c0aa06d");
}

static void digest_is_short_stable_hex(void **state) {
  (void)state;
  char d1[CORR_DIGEST_SIZE], d2[CORR_DIGEST_SIZE];
  /* SHA-256("abc") starts ba7816bf 8f01cfea 414140de 5dae2223. */
  assert_int_equal(corr_digest("abc", d1), AW_OK);
  assert_string_equal(d1, "ba7816bf8f01cfea414140de5dae2223");
  corr_key k;
  key(&k, SECRET);
  char id[CORR_ID_SIZE], id2[CORR_ID_SIZE];
  make(&k, 1, id);
  make(&k, 1, id2);
  assert_int_equal(corr_digest(id, d1), AW_OK);
  assert_int_equal(corr_digest(id, d2), AW_OK);
  assert_string_equal(d1, d2);
  assert_int_equal(strlen(d1), 32);
  assert_int_equal(strspn(d1, "0123456789abcdef"), 32);
  assert_int_equal(corr_digest(id2, d2), AW_OK);
  assert_string_not_equal(d1, d2);
  assert_null(strstr(id, d1)); /* the digest does not reveal the id */
  assert_int_equal(corr_digest(NULL, d1), AW_EINVAL);
}

/* A pinned id (tc2.) binds the reply topic too: it verifies only for the
 * topic it was made for, never as a tc1 id, and a tc1 id never as pinned. */
static void pinned_id_is_bound_to_its_reply_topic(void **state) {
  (void)state;
  corr_key k;
  key(&k, SECRET);
  assert_int_equal(corr_key_set_previous(&k, OLD_SECRET, strlen(OLD_SECRET)), AW_OK);
  char id[CORR_ID_SIZE], id1[CORR_ID_SIZE];
  assert_int_equal(corr_new_pinned(&k, "conv-1", "run_1", "call_1", "weather.replies", 77, id, sizeof id), AW_OK);
  assert_int_equal(strlen(id), CORR_ID_LEN);
  assert_memory_equal(id, CORR_PREFIX_PINNED, 4);
  int64_t d = -1;
  assert_int_equal(corr_verify_pinned(&k, id, "conv-1", "run_1", "call_1", "weather.replies", &d), AW_OK);
  assert_true(d == 77);
  assert_int_equal(corr_verify_pinned(&k, id, "conv-1", "run_1", "call_1", "assistant.tool-replies", NULL),
                   AW_EINVAL);
  assert_int_equal(corr_verify_pinned(&k, id, "conv-1", "run_1", "call_2", "weather.replies", NULL), AW_EINVAL);
  assert_int_equal(corr_verify(&k, id, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  /* The same nonce and tag under the other prefix is another id. */
  memcpy(id1, id, sizeof id);
  memcpy(id1, CORR_PREFIX, 4);
  assert_int_equal(corr_verify(&k, id1, "conv-1", "run_1", "call_1", NULL), AW_EINVAL);
  assert_int_equal(corr_verify_pinned(&k, id1, "conv-1", "run_1", "call_1", "weather.replies", NULL), AW_EINVAL);
  make(&k, 5, id1);
  assert_int_equal(corr_verify_pinned(&k, id1, "conv-1", "run_1", "call_1", "weather.replies", NULL), AW_EINVAL);
  /* The topic is a bound id like the others: empty or too long is refused. */
  assert_int_equal(corr_new_pinned(&k, "conv-1", "run_1", "call_1", "", 1, id, sizeof id), AW_EINVAL);
  assert_int_equal(corr_new_pinned(&k, "conv-1", "run_1", "call_1", NULL, 1, id, sizeof id), AW_EINVAL);
  /* Rotation: an id of the previous secret verifies. */
  corr_key old;
  key(&old, OLD_SECRET);
  assert_int_equal(corr_new_pinned(&old, "conv-1", "run_1", "call_1", "t", 1, id, sizeof id), AW_OK);
  assert_int_equal(corr_verify_pinned(&k, id, "conv-1", "run_1", "call_1", "t", NULL), AW_OK);
  corr_key_clear(&old);
  corr_key_clear(&k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pinned_id_is_bound_to_its_reply_topic),
      cmocka_unit_test(new_id_verifies_and_carries_the_deadline),
      cmocka_unit_test(ids_are_unique),
      cmocka_unit_test(every_changed_character_fails),
      cmocka_unit_test(id_is_bound_to_its_call),
      cmocka_unit_test(previous_key_is_accepted_for_rotation),
      cmocka_unit_test(keys_need_sixteen_bytes),
      cmocka_unit_test(malformed_ids_are_refused),
      cmocka_unit_test(new_checks_its_arguments),
      cmocka_unit_test(documented_construction_verifies),
      cmocka_unit_test(digest_is_short_stable_hex),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

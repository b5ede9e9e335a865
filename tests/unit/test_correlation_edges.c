/* test_correlation_edges.c -- corr_verify (common/contract/correlation.c) on
 * what a tool service can send back that corr_new never makes: a deadline
 * field with the top bit set under a valid tag (it would turn negative in
 * int64_t arithmetic), ids cut by an embedded NUL, bound ids of every edge
 * length and byte value, and deadlines at the edges of int64_t.  The forged
 * ids here are built from the documented layout (correlation.h) with
 * OpenSSL's HMAC, so the only thing refusing them is the check under test.
 *
 * Needs: nothing (no broker, no network, no Redis). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "correlation.h"

static const char SECRET[] = "edge-secret-0123456789abcdef";
static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void put_be32(unsigned char *p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (unsigned char)v;
}

/* The id corr_new would make for this nonce and this 8-byte deadline field
 * (any value, the top bit included), per correlation.h's layout. */
static void forge(const char *ids[3], const unsigned char nonce[16], uint64_t deadline, char out[CORR_ID_SIZE]) {
  unsigned char raw[40], msg[4 + 24 + 3 * (4 + CORR_MAX_BOUND_ID)];
  memcpy(raw, nonce, 16);
  for (int i = 7; i >= 0; i--, deadline >>= 8) raw[16 + i] = (unsigned char)deadline;
  size_t m = 0;
  memcpy(msg, "tc1", 4);
  m = 4;
  memcpy(msg + m, raw, 24);
  m += 24;
  for (int i = 0; i < 3; i++) {
    size_t n = strlen(ids[i]);
    put_be32(msg + m, (uint32_t)n);
    m += 4;
    memcpy(msg + m, ids[i], n);
    m += n;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  assert_non_null(HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), msg, m, md, &mdlen));
  memcpy(raw + 24, md, 16);
  memcpy(out, "tc1.", 4);
  char *o = out + 4;
  for (size_t i = 0; i < 40; i += 3) {
    uint32_t v = (uint32_t)raw[i] << 16;
    if (i + 1 < 40) v |= (uint32_t)raw[i + 1] << 8;
    if (i + 2 < 40) v |= raw[i + 2];
    *o++ = B64URL[v >> 18 & 63];
    *o++ = B64URL[v >> 12 & 63];
    if (i + 1 < 40) *o++ = B64URL[v >> 6 & 63];
    if (i + 2 < 40) *o++ = B64URL[v & 63];
  }
  *o = '\0';
  assert_int_equal(strlen(out), CORR_ID_LEN);
}

static void deadline_field_with_the_top_bit_set_is_refused_under_a_valid_tag(void **state) {
  (void)state;
  corr_key k;
  assert_int_equal(corr_key_init(&k, SECRET, strlen(SECRET)), AW_OK);
  const char *ids[3] = {"conv-1", "run_1", "call_1"};
  unsigned char nonce[16];
  memset(nonce, 0x5a, sizeof nonce);
  char id[CORR_ID_SIZE];
  /* The forger is right: an ordinary deadline verifies. */
  forge(ids, nonce, 1764000030000ull, id);
  int64_t d = -1;
  assert_int_equal(corr_verify(&k, id, ids[0], ids[1], ids[2], &d), AW_OK);
  assert_true(d == 1764000030000);
  forge(ids, nonce, (uint64_t)INT64_MAX, id);
  assert_int_equal(corr_verify(&k, id, ids[0], ids[1], ids[2], &d), AW_OK);
  assert_true(d == INT64_MAX);
  /* Past INT64_MAX: as int64_t it would be negative, a deadline long gone
   * or (compared as unsigned) one never reached. */
  const uint64_t over[] = {(uint64_t)INT64_MAX + 1, 0x8000000000000001ull, 0xffffffffffffffffull};
  for (size_t i = 0; i < sizeof over / sizeof over[0]; i++) {
    forge(ids, nonce, over[i], id);
    d = 42;
    assert_int_equal(corr_verify(&k, id, ids[0], ids[1], ids[2], &d), AW_EINVAL);
    assert_true(d == 42); /* untouched */
  }
  corr_key_clear(&k);
}

static void deadlines_at_the_edges_of_int64_round_trip_and_negative_ones_are_refused(void **state) {
  (void)state;
  corr_key k;
  assert_int_equal(corr_key_init(&k, SECRET, strlen(SECRET)), AW_OK);
  const int64_t ok[] = {0, 1, 255, 256, 65535, (int64_t)1 << 32, ((int64_t)1 << 53) + 1, INT64_MAX - 1, INT64_MAX};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    char id[CORR_ID_SIZE];
    assert_int_equal(corr_new(&k, "c", "r", "t", ok[i], id, sizeof id), AW_OK);
    int64_t d = -1;
    assert_int_equal(corr_verify(&k, id, "c", "r", "t", &d), AW_OK);
    assert_true(d == ok[i]);
  }
  const int64_t bad[] = {-1, -1000, INT64_MIN + 1, INT64_MIN};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char id[CORR_ID_SIZE] = "unchanged";
    assert_int_equal(corr_new(&k, "c", "r", "t", bad[i], id, sizeof id), AW_EINVAL);
  }
  corr_key_clear(&k);
}

static void an_id_cut_by_an_embedded_nul_is_refused(void **state) {
  (void)state;
  corr_key k;
  assert_int_equal(corr_key_init(&k, SECRET, strlen(SECRET)), AW_OK);
  char id[CORR_ID_SIZE];
  assert_int_equal(corr_new(&k, "c", "r", "t", 7, id, sizeof id), AW_OK);
  /* A reply's id is a msgpack string that may hold NULs: as a C string it
   * ends at the first, and every cut is refused (wrong length). */
  for (size_t at = 0; at < CORR_ID_LEN; at++) {
    char t[CORR_ID_SIZE + 8];
    memcpy(t, id, CORR_ID_SIZE);
    t[at] = '\0';
    assert_int_equal(corr_verify(&k, t, "c", "r", "t", NULL), AW_EINVAL);
  }
  /* Bytes after the terminator are not read as part of the id. */
  char t[CORR_ID_SIZE + 8];
  memcpy(t, id, CORR_ID_SIZE);
  memcpy(t + CORR_ID_SIZE, "garbage", 8);
  assert_int_equal(corr_verify(&k, t, "c", "r", "t", NULL), AW_OK);
  corr_key_clear(&k);
}

static void bound_ids_of_every_edge_length_and_byte_value(void **state) {
  (void)state;
  corr_key k;
  assert_int_equal(corr_key_init(&k, SECRET, strlen(SECRET)), AW_OK);
  /* Spaces, braces, UTF-8 and every non-NUL byte value are ids like any other. */
  char all[256];
  for (int i = 1; i < 256; i++) all[i - 1] = (char)i;
  all[255] = '\0';
  const char *odd[] = {" ", "{c:x}", "h\xc3\xa9llo", "\xff\xfe", all};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    char id[CORR_ID_SIZE];
    assert_int_equal(corr_new(&k, odd[i], odd[i], odd[i], 9, id, sizeof id), AW_OK);
    assert_int_equal(corr_verify(&k, id, odd[i], odd[i], odd[i], NULL), AW_OK);
    assert_int_equal(corr_verify(&k, id, odd[i], odd[i], "x", NULL), AW_EINVAL);
  }
  /* 1, 255, 256 bytes bind; 257 is refused on both sides, 0 too. */
  static char b[CORR_MAX_BOUND_ID + 2];
  const size_t lens[] = {1, 255, 256, 257};
  for (size_t i = 0; i < 4; i++) {
    memset(b, 'q', lens[i]);
    b[lens[i]] = '\0';
    char id[CORR_ID_SIZE];
    int want = lens[i] <= CORR_MAX_BOUND_ID ? AW_OK : AW_EINVAL;
    assert_int_equal(corr_new(&k, b, "r", "t", 1, id, sizeof id), want);
    if (want == AW_OK) assert_int_equal(corr_verify(&k, id, b, "r", "t", NULL), AW_OK);
  }
  char id[CORR_ID_SIZE];
  assert_int_equal(corr_new(&k, "c", "r", "t", 1, id, sizeof id), AW_OK);
  memset(b, 'q', CORR_MAX_BOUND_ID + 1);
  b[CORR_MAX_BOUND_ID + 1] = '\0';
  assert_int_equal(corr_verify(&k, id, "c", "r", b, NULL), AW_EINVAL);
  assert_int_equal(corr_verify(&k, id, "c", "", "t", NULL), AW_EINVAL);
  corr_key_clear(&k);
}

static void a_tampered_tag_keeps_the_lookup_digest_and_fails_verify(void **state) {
  (void)state;
  /* tool_replies looks the call up by the digest of the id's first
   * TSTATE_CORR_KEY_CHARS (26) characters, the nonce, so that a tampered
   * signature part still finds the record and fails here as
   * bad_correlation_id. */
  corr_key k;
  assert_int_equal(corr_key_init(&k, SECRET, strlen(SECRET)), AW_OK);
  char id[CORR_ID_SIZE], t[CORR_ID_SIZE];
  assert_int_equal(corr_new(&k, "c", "r", "t", 1, id, sizeof id), AW_OK);
  memcpy(t, id, sizeof t);
  t[CORR_ID_LEN - 5] = t[CORR_ID_LEN - 5] == 'A' ? 'B' : 'A';
  char h1[27], h2[27], d1[CORR_DIGEST_SIZE], d2[CORR_DIGEST_SIZE];
  memcpy(h1, id, 26);
  h1[26] = '\0';
  memcpy(h2, t, 26);
  h2[26] = '\0';
  assert_int_equal(corr_digest(h1, d1), AW_OK);
  assert_int_equal(corr_digest(h2, d2), AW_OK);
  assert_string_equal(d1, d2);
  assert_int_equal(corr_verify(&k, t, "c", "r", "t", NULL), AW_EINVAL);
  corr_key_clear(&k);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(deadline_field_with_the_top_bit_set_is_refused_under_a_valid_tag),
      cmocka_unit_test(deadlines_at_the_edges_of_int64_round_trip_and_negative_ones_are_refused),
      cmocka_unit_test(an_id_cut_by_an_embedded_nul_is_refused),
      cmocka_unit_test(bound_ids_of_every_edge_length_and_byte_value),
      cmocka_unit_test(a_tampered_tag_keeps_the_lookup_digest_and_fails_verify),
  };
  return cmocka_run_group_tests_name("correlation_edges", tests, NULL, NULL);
}

/* test_rkeys.c -- Redis key names (worker/event/rkeys.c): ids are encoded
 * so that no two distinct (tenant, conversation, kind, id) tuples share a
 * key, the Redis Cluster hash tag holds exactly the encoded tenant and
 * conversation, ordinary ids stay readable (and keep the keys they had
 * before the encoding), references carry the tenant, and anything too long
 * is an error, never a cut key.
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
#include <fnmatch.h>

#include "rkeys.h"

static rk_space space(int tenanted) {
  rk_space s;
  assert_int_equal(rk_space_init(&s, "aw", tenanted), AW_OK);
  return s;
}

static void key(const rk_space *s, const char *ref, rk_kind k, const char *arg, char out[RK_KEY_MAX]) {
  assert_int_equal(rk_conv_key(s, ref, k, arg, out, RK_KEY_MAX), AW_OK);
}

/* The slot Redis Cluster hashes: between the first '{' and the first '}'
 * after it, when that is not empty. */
static void hash_tag(const char *k, char *out, size_t n) {
  const char *o = strchr(k, '{');
  const char *c = o ? strchr(o + 1, '}') : NULL;
  assert_non_null(o);
  assert_non_null(c);
  assert_true(c > o + 1);
  snprintf(out, n, "%.*s", (int)(c - o - 1), o + 1);
}

static void ordinary_ids_keep_their_readable_keys(void **state) {
  (void)state;
  rk_space s = space(0);
  char k[RK_KEY_MAX];
  key(&s, "conv-1", RK_HANDLE, "thread", k);
  assert_string_equal(k, "aw:{c:conv-1}:thread");
  key(&s, "conv-1", RK_OUTCOME, "evt_42", k);
  assert_string_equal(k, "aw:{c:conv-1}:ev:evt_42");
  key(&s, "conv-1", RK_PROGRESS, "evt_42", k);
  assert_string_equal(k, "aw:{c:conv-1}:evp:evt_42");
  key(&s, "conv-1", RK_HIST, NULL, k);
  assert_string_equal(k, "aw:{c:conv-1}:hist");
  key(&s, "conv-1", RK_HIST_IDS, NULL, k);
  assert_string_equal(k, "aw:{c:conv-1}:hist:ids");
  key(&s, "conv-1", RK_HIST_PENDING, "e.1", k);
  assert_string_equal(k, "aw:{c:conv-1}:hist:p:e.1");
  key(&s, "conv-1", RK_TURN, "0123abcd", k);
  assert_string_equal(k, "aw:{c:conv-1}:turn:0123abcd");
  assert_int_equal(rk_fleet_key(&s, RK_CORR, "ab12", k, sizeof k), AW_OK);
  assert_string_equal(k, "aw:tc:ab12");
  assert_int_equal(rk_fleet_key(&s, RK_WAKE, "ff00", k, sizeof k), AW_OK);
  assert_string_equal(k, "aw:wake:ff00");
  assert_int_equal(rk_fleet_key(&s, RK_KB, "support docs", k, sizeof k), AW_OK);
  assert_string_equal(k, "aw:kb:support%20docs");
  assert_int_equal(rk_fleet_key(&s, RK_KB_LOCK, "support", k, sizeof k), AW_OK);
  assert_string_equal(k, "aw:kblock:support");
}

/* The case of the issue: conversation "v}:ev:x"'s thread key was another
 * conversation's ("v") outcome key of event "x}:thread"-ish shapes; every
 * pair below collided or moved the hash tag when ids were pasted raw. */
static void adversarial_pairs_get_distinct_keys(void **state) {
  (void)state;
  rk_space s = space(0);
  struct {
    const char *ref_a;
    rk_kind ka;
    const char *arg_a;
    const char *ref_b;
    rk_kind kb;
    const char *arg_b;
  } pairs[] = {
      {"v}:ev:x", RK_HANDLE, "thread", "v", RK_OUTCOME, "x}:thread"},
      {"v}:ev:x", RK_HANDLE, "conv", "v", RK_OUTCOME, "x"},
      {"a", RK_OUTCOME, "b:c", "a", RK_OUTCOME, "b%3Ac"},
      {"a:b", RK_HIST, NULL, "a", RK_HIST, NULL},
      {"a", RK_HIST_PENDING, "x", "a", RK_OUTCOME, "x"},
      {"a", RK_HIST_IDS, NULL, "a}:hist", RK_HIST, NULL},
      {"a", RK_OUTCOME, "x", "a", RK_PROGRESS, "x"},
      {"a b", RK_HIST, NULL, "a%20b", RK_HIST, NULL},
      {"{x}", RK_HIST, NULL, "x", RK_HIST, NULL},
      {"a\n", RK_HIST, NULL, "a%0A", RK_HIST, NULL},
      {"\xc3\xa9", RK_HIST, NULL, "%C3%A9", RK_HIST, NULL},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    char a[RK_KEY_MAX], b[RK_KEY_MAX];
    key(&s, pairs[i].ref_a, pairs[i].ka, pairs[i].arg_a, a);
    key(&s, pairs[i].ref_b, pairs[i].kb, pairs[i].arg_b, b);
    if (strcmp(a, b) == 0) fail_msg("pair %zu shares the key %s", i, a);
  }
  /* With tenants: tenant "a:b" conversation "c" is not tenant "a"
   * conversation "b:c", nor the untenanted conversation "a:b:c". */
  rk_space t = space(1);
  char r1[RK_REF_MAX], r2[RK_REF_MAX], k1[RK_KEY_MAX], k2[RK_KEY_MAX], k3[RK_KEY_MAX];
  assert_int_equal(rk_ref_make("a:b", "c", r1, sizeof r1), AW_OK);
  assert_int_equal(rk_ref_make("a", "b:c", r2, sizeof r2), AW_OK);
  key(&t, r1, RK_HIST, NULL, k1);
  key(&t, r2, RK_HIST, NULL, k2);
  key(&s, "a:b:c", RK_HIST, NULL, k3);
  assert_string_not_equal(k1, k2);
  assert_string_not_equal(k1, k3);
  assert_string_not_equal(k2, k3);
}

static void hash_tag_holds_exactly_the_encoded_tenant_and_conversation(void **state) {
  (void)state;
  rk_space s = space(0), t = space(1);
  const rk_kind kinds[] = {RK_HANDLE, RK_OUTCOME, RK_PROGRESS, RK_TURN, RK_HIST, RK_HIST_IDS, RK_HIST_PENDING};
  const char *args[] = {"thread", "e}{1", "e:1", "tok", NULL, NULL, "{e}"};
  char k[RK_KEY_MAX], tag[RK_KEY_MAX], ref[RK_REF_MAX];
  assert_int_equal(rk_ref_make("ten}{ant", "v}:ev:x", ref, sizeof ref), AW_OK);
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
    key(&s, "v}:ev:x", kinds[i], args[i], k);
    hash_tag(k, tag, sizeof tag);
    assert_string_equal(tag, "c:v%7D%3Aev%3Ax");
    key(&t, ref, kinds[i], args[i], k);
    hash_tag(k, tag, sizeof tag);
    assert_string_equal(tag, "t:ten%7D%7Bant:c:v%7D%3Aev%3Ax");
    assert_null(strchr(strchr(k, '}') + 1, '{')); /* no second tag after it */
  }
}

static void encoding_round_trips_and_decode_refuses_what_encode_never_makes(void **state) {
  (void)state;
  unsigned char all[256];
  for (int i = 0; i < 256; i++) all[i] = (unsigned char)i;
  char enc[3 * 256 + 1];
  unsigned char dec[257];
  size_t el = 0, dl = 0;
  assert_int_equal(rk_encode(all, sizeof all, enc, sizeof enc, &el), AW_OK);
  assert_null(strpbrk(enc, "{}: "));
  assert_int_equal(rk_decode(enc, el, dec, sizeof dec, &dl), AW_OK);
  assert_int_equal(dl, 256);
  assert_memory_equal(dec, all, 256);
  const char *bad[] = {"%", "%4", "%zz", "%3a", "%41" /* 'A' needs no escape */, "a:b", "{", "}", " ", "\x01", "\xc3"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (rk_decode(bad[i], strlen(bad[i]), dec, sizeof dec, &dl) != AW_EPARSE) fail_msg("accepted \"%s\"", bad[i]);
}

static void references_carry_the_tenant_and_split_back(void **state) {
  (void)state;
  rk_space s = space(0), t = space(1);
  char ref[RK_REF_MAX], ten[RK_TENANT_MAX + 1];
  const char *conv = NULL;
  assert_int_equal(rk_ref_make(NULL, "a:b c", ref, sizeof ref), AW_OK);
  assert_string_equal(ref, "a:b c");
  assert_int_equal(rk_ref_split(&s, ref, ten, sizeof ten, &conv), AW_OK);
  assert_string_equal(ten, "");
  assert_string_equal(conv, "a:b c");
  assert_int_equal(rk_ref_make("acme:eu", "a:b c", ref, sizeof ref), AW_OK);
  assert_string_equal(ref, "acme%3Aeu:a:b c");
  assert_int_equal(rk_ref_split(&t, ref, ten, sizeof ten, &conv), AW_OK);
  assert_string_equal(ten, "acme:eu");
  assert_string_equal(conv, "a:b c");
  /* Unreadable references are refused, not guessed. */
  const char *bad[] = {"", "no-colon", ":conv", "acme:", "%zz:conv", "a%0Ab:conv"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (rk_ref_split(&t, bad[i], ten, sizeof ten, &conv) != AW_EPARSE) fail_msg("split \"%s\"", bad[i]);
  char k[RK_KEY_MAX];
  assert_int_equal(rk_conv_key(&t, "no-colon", RK_HIST, NULL, k, sizeof k), AW_EINVAL);
}

static void over_long_ids_and_small_buffers_are_errors_not_cut_keys(void **state) {
  (void)state;
  rk_space s = space(1);
  char big[RK_ID_MAX + 2];
  char ref[RK_REF_MAX], k[RK_KEY_MAX];
  /* The largest legal ids, every byte escaped, fit RK_KEY_MAX. */
  char ten[RK_TENANT_MAX + 1];
  memset(ten, '\x80', RK_TENANT_MAX);
  ten[RK_TENANT_MAX] = '\0';
  memset(big, '\xff', RK_ID_MAX);
  big[RK_ID_MAX] = '\0';
  assert_int_equal(rk_ref_make(ten, big, ref, sizeof ref), AW_OK);
  assert_int_equal(rk_conv_key(&s, ref, RK_HIST_PENDING, big, k, sizeof k), AW_OK);
  assert_int_equal(strlen(k), strlen("aw:{t::c:}:hist:p:") + 3 * (RK_TENANT_MAX + 2 * RK_ID_MAX));
  /* One byte more is refused. */
  big[RK_ID_MAX] = 'x';
  big[RK_ID_MAX + 1] = '\0';
  assert_int_equal(rk_ref_make(ten, big, ref, sizeof ref), AW_ETOOBIG);
  assert_int_equal(rk_ref_make(NULL, big, ref, sizeof ref), AW_ETOOBIG); /* it would fit the buffer */
  rk_space plain = space(0);
  assert_int_equal(rk_conv_key(&plain, big, RK_HIST, NULL, k, sizeof k), AW_ETOOBIG);
  big[RK_ID_MAX] = '\0';
  char longer[RK_ID_MAX + 2];
  memset(longer, 'e', RK_ID_MAX + 1);
  longer[RK_ID_MAX + 1] = '\0';
  assert_int_equal(rk_conv_key(&s, ref, RK_OUTCOME, longer, k, sizeof k), AW_ETOOBIG);
  char tl[RK_TENANT_MAX + 2];
  memset(tl, 't', RK_TENANT_MAX + 1);
  tl[RK_TENANT_MAX + 1] = '\0';
  assert_int_equal(rk_ref_make(tl, "c", ref, sizeof ref), AW_EINVAL);
  /* A buffer one byte short: an error and an empty key. */
  rk_space u = space(0);
  char small[sizeof "aw:{c:conv-1}:hist"];
  assert_int_equal(rk_conv_key(&u, "conv-1", RK_HIST, NULL, small, sizeof small), AW_OK);
  assert_int_equal(rk_conv_key(&u, "conv-1", RK_HIST, NULL, small, sizeof small - 1), AW_ETOOBIG);
  assert_string_equal(small, "");
}

static void prefixes_with_braces_and_wrong_args_are_refused(void **state) {
  (void)state;
  rk_space s;
  assert_int_equal(rk_space_init(&s, "a{b}", 0), AW_EINVAL);
  char k[RK_KEY_MAX];
  assert_int_equal(rk_conv_key(&s, "c", RK_HIST, NULL, k, sizeof k), AW_EINVAL);
  assert_int_equal(rk_space_init(&s, "aw:prod", 0), AW_OK);
  assert_int_equal(rk_conv_key(&s, "c", RK_HIST, "x", k, sizeof k), AW_EINVAL);     /* unexpected arg */
  assert_int_equal(rk_conv_key(&s, "c", RK_OUTCOME, NULL, k, sizeof k), AW_EINVAL); /* missing arg */
  /* A handle name that would meet another kind's key. */
  assert_int_equal(rk_conv_key(&s, "c", RK_HANDLE, "hist", k, sizeof k), AW_EINVAL);
  assert_int_equal(rk_conv_key(&s, "c", RK_HANDLE, "ev:x", k, sizeof k), AW_EINVAL);
  assert_int_equal(rk_conv_key(&s, "c", RK_HANDLE, "thread", k, sizeof k), AW_OK);
  assert_string_equal(k, "aw:prod:{c:c}:thread");
  assert_false(rk_tenant_ok("a\tb", 3));
  assert_false(rk_tenant_ok("", 0));
  assert_true(rk_tenant_ok("acme", 4));
}

/* ---- conversation match patterns (rk_conv_match) ------------------------------------
 * fnmatch(3) without flags reads * ? [ ] and backslash as Redis' MATCH does,
 * which is what lets this check run without a server (test_conv_store_erase.c
 * runs the patterns against a real one). */

static int matches(const char *pattern, const char *key) { return fnmatch(pattern, key, 0) == 0; }

/* Every kind of key of ref (handle, outcome, progress, turn, history). */
static void all_keys(const rk_space *s, const char *ref, char out[7][RK_KEY_MAX]) {
  key(s, ref, RK_HANDLE, "conv", out[0]);
  key(s, ref, RK_OUTCOME, "e1", out[1]);
  key(s, ref, RK_PROGRESS, "e1", out[2]);
  key(s, ref, RK_TURN, "t1", out[3]);
  key(s, ref, RK_HIST, NULL, out[4]);
  key(s, ref, RK_HIST_IDS, NULL, out[5]);
  key(s, ref, RK_HIST_PENDING, "e1", out[6]);
}

static void check_patterns_select_exactly_their_conversation(const rk_space *s, const char *const *refs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char pat[RK_KEY_MAX];
    assert_int_equal(rk_conv_match(s, refs[i], RK_MATCH_ALL, pat, sizeof pat), AW_OK);
    for (size_t j = 0; j < n; j++) {
      char keys[7][RK_KEY_MAX];
      all_keys(s, refs[j], keys);
      for (int k = 0; k < 7; k++) {
        if (matches(pat, keys[k]) != (i == j))
          fail_msg("pattern %s of %s %s key %s of %s", pat, refs[i], i == j ? "misses" : "matches", keys[k], refs[j]);
      }
    }
  }
}

static void conversation_patterns_escape_glob_characters_and_match_only_their_conversation(void **state) {
  (void)state;
  rk_space s = space(0);
  char pat[RK_KEY_MAX];
  assert_int_equal(rk_conv_match(&s, "conv-1", RK_MATCH_ALL, pat, sizeof pat), AW_OK);
  assert_string_equal(pat, "aw:{c:conv-1}:*");
  assert_int_equal(rk_conv_match(&s, "c*?[x]\\", RK_MATCH_ALL, pat, sizeof pat), AW_OK);
  assert_string_equal(pat, "aw:{c:c\\*\\?\\[x\\]\\\\}:*");
  /* Glob characters, a prefix of another id, a pattern matching everything. */
  static const char *const plain[] = {"c", "c1", "c*", "c?", "[c]", "c\\", "c]", "*", "?", "c:d", "c}x"};
  check_patterns_select_exactly_their_conversation(&s, plain, sizeof plain / sizeof plain[0]);
  rk_space t = space(1);
  static const char *const tenanted[] = {"t1:c", "t2:c", "t*:c", "t1:c*", "t1:c1", "t?:c1"};
  check_patterns_select_exactly_their_conversation(&t, tenanted, sizeof tenanted / sizeof tenanted[0]);
  /* A prefix with glob characters is escaped too. */
  rk_space g;
  assert_int_equal(rk_space_init(&g, "a*w", 0), AW_OK);
  assert_int_equal(rk_conv_match(&g, "c", RK_MATCH_ALL, pat, sizeof pat), AW_OK);
  assert_string_equal(pat, "a\\*w:{c:c}:*");
  assert_false(matches(pat, "axw:{c:c}:hist"));
}

static void kind_patterns_select_only_that_kind(void **state) {
  (void)state;
  rk_space s = space(0);
  char pat[RK_KEY_MAX], keys[7][RK_KEY_MAX];
  all_keys(&s, "c", keys);
  assert_int_equal(rk_conv_match(&s, "c", RK_HIST_PENDING, pat, sizeof pat), AW_OK);
  assert_string_equal(pat, "aw:{c:c}:hist:p:*");
  for (int k = 0; k < 7; k++) assert_int_equal(matches(pat, keys[k]), k == 6);
  assert_int_equal(rk_conv_match(&s, "c", RK_OUTCOME, pat, sizeof pat), AW_OK);
  for (int k = 0; k < 7; k++) assert_int_equal(matches(pat, keys[k]), k == 1);
  /* Kinds that name one key have no pattern; a short buffer is an error. */
  assert_int_equal(rk_conv_match(&s, "c", RK_HIST, pat, sizeof pat), AW_EINVAL);
  assert_int_equal(rk_conv_match(&s, "c", RK_HANDLE, pat, sizeof pat), AW_EINVAL);
  assert_int_equal(rk_conv_match(&s, "", RK_MATCH_ALL, pat, sizeof pat), AW_EINVAL);
  char small[sizeof "aw:{c:c}:*"];
  assert_int_equal(rk_conv_match(&s, "c", RK_MATCH_ALL, small, sizeof small), AW_OK);
  assert_int_equal(rk_conv_match(&s, "c", RK_MATCH_ALL, small, sizeof small - 1), AW_ETOOBIG);
  assert_string_equal(small, "");
  /* The longest reference still fits RK_KEY_MAX, escaped. */
  char conv[RK_ID_MAX + 1];
  memset(conv, '*', RK_ID_MAX);
  conv[RK_ID_MAX] = '\0';
  assert_int_equal(rk_conv_match(&s, conv, RK_HIST_PENDING, pat, sizeof pat), AW_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ordinary_ids_keep_their_readable_keys),
      cmocka_unit_test(adversarial_pairs_get_distinct_keys),
      cmocka_unit_test(hash_tag_holds_exactly_the_encoded_tenant_and_conversation),
      cmocka_unit_test(encoding_round_trips_and_decode_refuses_what_encode_never_makes),
      cmocka_unit_test(references_carry_the_tenant_and_split_back),
      cmocka_unit_test(over_long_ids_and_small_buffers_are_errors_not_cut_keys),
      cmocka_unit_test(prefixes_with_braces_and_wrong_args_are_refused),
      cmocka_unit_test(conversation_patterns_escape_glob_characters_and_match_only_their_conversation),
      cmocka_unit_test(kind_patterns_select_only_that_kind),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

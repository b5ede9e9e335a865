/* Unit tests of tool request / reply signatures (common/contract/tool_sign.c).
 *
 * The shared vectors (schemas/examples/tool-request-signature.json, read from
 * the source tree found from __FILE__ or $AW_SOURCE_DIR) pin the wire format;
 * the Python helper of the integration tests checks the same file.  The rest
 * pins verification: every signed field, the previous key, the clock skew,
 * malformed headers, the unsigned arguments map.
 *
 * Needs: nothing (no broker, no network). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cJSON.h>

#include "buf.h"
#include "contract_tool.h"
#include "mp_fixture.h"
#include "tool_sign.h"

static const char KEY[] = "unit-test-tool-request-key-current";
static const char OLD_KEY[] = "unit-test-tool-request-key-previous";
#define NOW 1767225600000LL

/* ---- helpers ------------------------------------------------------------------ */

static void key2(tsig_key *k, const char *cur, const char *prev) {
  assert_int_equal(tsig_key_init(k, cur, strlen(cur)), AW_OK);
  if (prev) assert_int_equal(tsig_key_set_previous(k, prev, strlen(prev)), AW_OK);
}

static char *hex(const void *p, size_t n) {
  char *s = malloc(2 * n + 1);
  assert_non_null(s);
  for (size_t i = 0; i < n; i++) snprintf(s + 2 * i, 3, "%02x", ((const unsigned char *)p)[i]);
  s[2 * n] = '\0';
  return s;
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t jint(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
}

/* The request of a vector as ctool_request (borrowed strings). */
static ctool_request request_of(const cJSON *j) {
  ctool_request r = {0};
  r.correlation_id = jstr(j, "correlation_id");
  r.conversation_id = jstr(j, "conversation_id");
  r.thread_id = jstr(j, "thread_id");
  r.run_id = jstr(j, "run_id");
  r.tool_call_id = jstr(j, "tool_call_id");
  r.name = jstr(j, "name");
  r.arguments_json = jstr(j, "arguments_json");
  r.arguments_json_len = strlen(r.arguments_json);
  r.deadline_ms = jint(j, "deadline_ms");
  r.reply_topic = jstr(j, "reply_topic");
  r.event_id = jstr(j, "event_id");
  r.round = (int)jint(j, "round");
  return r;
}

static ctool_reply reply_of(const cJSON *j) {
  ctool_reply r = {0};
  r.correlation_id = jstr(j, "correlation_id");
  r.output = jstr(j, "output");
  r.output_len = r.output ? strlen(r.output) : 0;
  const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
  if (e) {
    r.error_code = jstr(e, "code");
    r.error_message = jstr(e, "message");
  }
  return r;
}

/* A well-formed request with every field, and its encoding decoded again
 * (what a service holds). */
static ctool_request sample(void) {
  static const char args[] = "{\"location\":\"Paris\",\"unit\":\"celsius\"}";
  ctool_request r = {0};
  r.correlation_id = "tc2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  r.conversation_id = "conv-1";
  r.thread_id = "thread_1";
  r.run_id = "run_1";
  r.tool_call_id = "call_1";
  r.name = "get_weather";
  r.arguments_json = args;
  r.arguments_json_len = sizeof args - 1;
  r.deadline_ms = NOW + 30000;
  r.reply_topic = "assistant.tool-replies";
  r.event_id = "evt-1";
  r.round = 1;
  return r;
}

static ctool_request *decoded(const ctool_request *in) {
  buf b;
  buf_init(&b, CTOOL_DEFAULT_MAX_REQUEST);
  assert_int_equal(ctool_request_encode(in, &b), AW_OK);
  ctool_request *out = NULL;
  assert_int_equal(ctool_request_decode(b.data, b.len, 0, &out, NULL, NULL, 0), AW_OK);
  buf_free(&b);
  return out;
}

static const char *verify_req(const tsig_key *k, const ctool_request *r, const char *sig, const char *ts,
                              int64_t now) {
  const char *why = "unset";
  int rc = tsig_request_verify(k, r, sig, sig ? strlen(sig) : 0, ts, ts ? strlen(ts) : 0, now, -1, &why);
  if (rc == AW_OK) {
    assert_null(why);
    return NULL;
  }
  assert_int_equal(rc, AW_EINVAL);
  assert_non_null(why);
  return why;
}

/* ---- the shared vectors --------------------------------------------------------- */

static void shared_vectors_give_the_documented_messages_and_signatures(void **state) {
  (void)state;
  char *text = mpfx_source_file("schemas/examples/tool-request-signature.json");
  cJSON *doc = cJSON_Parse(text);
  assert_non_null(doc);
  const cJSON *keys = cJSON_GetObjectItemCaseSensitive(doc, "keys");
  tsig_key k1, k2;
  key2(&k1, jstr(keys, "current"), NULL);
  key2(&k2, jstr(keys, "current"), jstr(keys, "previous"));
  int n = 0;
  const cJSON *c;
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(doc, "requests")) {
    ctool_request r = request_of(cJSON_GetObjectItemCaseSensitive(c, "request"));
    int64_t ts = jint(c, "ts_ms");
    buf m;
    buf_init(&m, 1 << 20);
    assert_int_equal(tsig_request_message(&r, ts, &m), AW_OK);
    char *h = hex(m.data, m.len);
    assert_string_equal(h, jstr(c, "message_hex"));
    free(h);
    buf_free(&m);
    char sig[TSIG_HEADER_SIZE], tss[TSIG_TS_SIZE];
    assert_int_equal(tsig_request_sign(&k1, &r, ts, sig, tss), AW_OK);
    assert_string_equal(sig, jstr(c, "signature"));
    char want_ts[32];
    snprintf(want_ts, sizeof want_ts, "%lld", (long long)ts);
    assert_string_equal(tss, want_ts);
    assert_int_equal(tsig_request_sign(&k2, &r, ts, sig, tss), AW_OK);
    assert_string_equal(sig, jstr(c, "signature_rotating"));
    /* What a service decodes from the worker's encoding verifies too. */
    ctool_request *d = decoded(&r);
    assert_null(verify_req(&k1, d, jstr(c, "signature"), tss, ts));
    ctool_request_free(d);
    n++;
  }
  cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(doc, "replies")) {
    ctool_reply r = reply_of(cJSON_GetObjectItemCaseSensitive(c, "reply"));
    buf m;
    buf_init(&m, 4096);
    assert_int_equal(tsig_reply_message(&r, &m), AW_OK);
    char *h = hex(m.data, m.len);
    assert_string_equal(h, jstr(c, "message_hex"));
    free(h);
    /* The message ends with SHA-256(C). */
    char *d = hex(m.data + m.len - 32, 32);
    assert_string_equal(d, jstr(c, "content_sha256"));
    free(d);
    buf_free(&m);
    char sig[TSIG_HEADER_SIZE];
    assert_int_equal(tsig_reply_sign(&k1, &r, sig), AW_OK);
    assert_string_equal(sig, jstr(c, "signature"));
    assert_int_equal(tsig_reply_sign(&k2, &r, sig), AW_OK);
    assert_string_equal(sig, jstr(c, "signature_rotating"));
    n++;
  }
  assert_true(n >= 5);
  cJSON_Delete(doc);
  free(text);
  tsig_key_clear(&k1);
  tsig_key_clear(&k2);
}

/* ---- requests ------------------------------------------------------------------- */

static void signed_request_verifies_after_encoding_and_decoding(void **state) {
  (void)state;
  tsig_key k;
  key2(&k, KEY, NULL);
  ctool_request in = sample();
  buf b;
  buf_init(&b, CTOOL_DEFAULT_MAX_REQUEST);
  assert_int_equal(ctool_request_encode(&in, &b), AW_OK);
  char sig[TSIG_HEADER_SIZE], ts[TSIG_TS_SIZE];
  assert_int_equal(tsig_request_sign_encoded(&k, b.data, b.len, NOW, sig, ts), AW_OK);
  assert_int_equal(strlen(sig), 3 + TSIG_MAC_CHARS);
  ctool_request *r = NULL;
  assert_int_equal(ctool_request_decode(b.data, b.len, 0, &r, NULL, NULL, 0), AW_OK);
  assert_null(verify_req(&k, r, sig, ts, NOW + 1000));
  ctool_request_free(r);
  buf_free(&b);
  tsig_key_clear(&k);
}

/* Each signed field, changed after signing, fails the signature. */
static void changing_any_signed_request_field_fails_the_signature(void **state) {
  (void)state;
  tsig_key k;
  key2(&k, KEY, NULL);
  ctool_request base = sample();
  char sig[TSIG_HEADER_SIZE], ts[TSIG_TS_SIZE];
  assert_int_equal(tsig_request_sign(&k, &base, NOW, sig, ts), AW_OK);
  assert_null(verify_req(&k, &base, sig, ts, NOW));
  static const char other_args[] = "{\"location\":\"Tokyo\",\"unit\":\"celsius\"}";
  for (int f = 0; f < 14; f++) {
    ctool_request r = base;
    const char *t = ts;
    char ts2[TSIG_TS_SIZE];
    switch (f) {
    case 0: r.correlation_id = "tc2.BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"; break;
    case 1: r.name = "delete_account"; break;
    case 2: r.arguments_json = other_args; r.arguments_json_len = sizeof other_args - 1; break;
    case 3: r.reply_topic = "attacker.replies"; break;
    case 4: r.deadline_ms += 1; break;
    case 5: r.conversation_id = "conv-2"; break;
    case 6: r.event_id = "evt-2"; break;
    case 7: r.event_id = NULL; break;
    case 8: r.tool_call_id = "call_2"; break;
    case 9: r.thread_id = "thread_2"; break;
    case 10: r.run_id = NULL; break;
    case 11: r.round = 2; break;
    case 12: snprintf(ts2, sizeof ts2, "%lld", NOW + 1); t = ts2; break; /* the timestamp */
    case 13: r.arguments_json_len -= 1; break; /* the text cut by one byte */
    }
    const char *why = verify_req(&k, &r, sig, t, NOW);
    if (!why || strcmp(why, TSIG_R_MISMATCH) != 0) fail_msg("field %d: %s", f, why ? why : "accepted");
  }
  tsig_key_clear(&k);
}

static void previous_key_verifies_and_a_rotating_signer_signs_with_both(void **state) {
  (void)state;
  ctool_request r = sample();
  tsig_key old, rotating, fresh, other;
  key2(&old, OLD_KEY, NULL);
  key2(&rotating, KEY, OLD_KEY);  /* a worker mid-rotation */
  key2(&fresh, KEY, NULL);        /* a service already on the new key only */
  key2(&other, "an-unrelated-key-of-24-bytes", NULL);
  char sig[TSIG_HEADER_SIZE], ts[TSIG_TS_SIZE];
  /* A service still on the old key signs; the rotating worker accepts it. */
  assert_int_equal(tsig_request_sign(&old, &r, NOW, sig, ts), AW_OK);
  assert_null(verify_req(&rotating, &r, sig, ts, NOW));
  assert_string_equal(verify_req(&fresh, &r, sig, ts, NOW), TSIG_R_MISMATCH);
  /* The rotating worker signs with both: old-only and new-only verifiers accept. */
  assert_int_equal(tsig_request_sign(&rotating, &r, NOW, sig, ts), AW_OK);
  assert_int_equal(strlen(sig), 2 * (3 + TSIG_MAC_CHARS) + 1);
  assert_null(verify_req(&old, &r, sig, ts, NOW));
  assert_null(verify_req(&fresh, &r, sig, ts, NOW));
  assert_string_equal(verify_req(&other, &r, sig, ts, NOW), TSIG_R_MISMATCH);
  /* Dropping the previous key ends the old key's acceptance. */
  assert_int_equal(tsig_key_set_previous(&rotating, NULL, 0), AW_OK);
  assert_int_equal(tsig_request_sign(&old, &r, NOW, sig, ts), AW_OK);
  assert_string_equal(verify_req(&rotating, &r, sig, ts, NOW), TSIG_R_MISMATCH);
  tsig_key_clear(&old);
  tsig_key_clear(&rotating);
  tsig_key_clear(&fresh);
  tsig_key_clear(&other);
}

static void timestamps_outside_the_skew_are_stale_or_future(void **state) {
  (void)state;
  tsig_key k;
  key2(&k, KEY, NULL);
  ctool_request r = sample();
  char sig[TSIG_HEADER_SIZE], ts[TSIG_TS_SIZE];
  assert_int_equal(tsig_request_sign(&k, &r, NOW, sig, ts), AW_OK);
  const char *why = NULL;
  /* Exactly at the limit passes, one millisecond beyond fails, both ways. */
  assert_int_equal(tsig_request_verify(&k, &r, sig, strlen(sig), ts, strlen(ts), NOW + 5000, 5000, &why), AW_OK);
  assert_int_equal(tsig_request_verify(&k, &r, sig, strlen(sig), ts, strlen(ts), NOW + 5001, 5000, &why), AW_EINVAL);
  assert_string_equal(why, TSIG_R_STALE);
  assert_int_equal(tsig_request_verify(&k, &r, sig, strlen(sig), ts, strlen(ts), NOW - 5000, 5000, &why), AW_OK);
  assert_int_equal(tsig_request_verify(&k, &r, sig, strlen(sig), ts, strlen(ts), NOW - 5001, 5000, &why), AW_EINVAL);
  assert_string_equal(why, TSIG_R_FUTURE);
  /* max_skew < 0: the default (5 minutes). */
  assert_null(verify_req(&k, &r, sig, ts, NOW + TSIG_DEFAULT_MAX_SKEW_MS));
  assert_string_equal(verify_req(&k, &r, sig, ts, NOW + TSIG_DEFAULT_MAX_SKEW_MS + 1), TSIG_R_STALE);
  /* Freshness is checked before the MAC: a stale forgery is reported stale. */
  assert_string_equal(verify_req(&k, &r, "v1=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ts, NOW + 10000000),
                      TSIG_R_STALE);
  tsig_key_clear(&k);
}

static void malformed_missing_and_foreign_headers_are_refused_precisely(void **state) {
  (void)state;
  tsig_key k;
  key2(&k, KEY, NULL);
  ctool_request r = sample();
  char sig[TSIG_HEADER_SIZE], ts[TSIG_TS_SIZE];
  assert_int_equal(tsig_request_sign(&k, &r, NOW, sig, ts), AW_OK);
  const char *mac = sig + 3;
  char b[600];
  assert_string_equal(verify_req(&k, &r, NULL, ts, NOW), TSIG_R_MISSING);
  assert_string_equal(verify_req(&k, &r, sig, NULL, NOW), TSIG_R_MISSING);
  static const char *const malformed_sigs[] = {
      "", "v1", "v1=", "1=abc", "V1=x", "v01=abc", "v=abc", "v1=tooshort", "v1:abc", ",", " , ",
      "v1=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB",  /* spare bits set: not canonical */
      "v1=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",  /* padding */
      "v1=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",  /* standard alphabet */
      "v2=", "v1234=abc",
  };
  for (size_t i = 0; i < sizeof malformed_sigs / sizeof malformed_sigs[0]; i++) {
    const char *why = verify_req(&k, &r, malformed_sigs[i], ts, NOW);
    if (!why || strcmp(why, TSIG_R_MALFORMED) != 0) fail_msg("\"%s\": %s", malformed_sigs[i], why ? why : "accepted");
  }
  /* A valid entry next to a malformed one: the header is malformed. */
  snprintf(b, sizeof b, "v1=%s,v1=x", mac);
  assert_string_equal(verify_req(&k, &r, b, ts, NOW), TSIG_R_MALFORMED);
  /* More than TSIG_MAX_ENTRIES entries. */
  snprintf(b, sizeof b, "v1=%s,v1=%s,v1=%s,v1=%s,v1=%s", mac, mac, mac, mac, mac);
  assert_string_equal(verify_req(&k, &r, b, ts, NOW), TSIG_R_MALFORMED);
  /* Only other versions: unsupported; a v1 among them: verified; blanks allowed. */
  assert_string_equal(verify_req(&k, &r, "v2=abc", ts, NOW), TSIG_R_VERSION);
  snprintf(b, sizeof b, " v2=abc ,\tv1=%s ", mac);
  assert_null(verify_req(&k, &r, b, ts, NOW));
  /* Over TSIG_MAX_HEADER bytes. */
  memset(b, ' ', sizeof b - 1);
  b[sizeof b - 1] = '\0';
  memcpy(b, sig, strlen(sig));
  assert_string_equal(verify_req(&k, &r, b, ts, NOW), TSIG_R_MALFORMED);
  /* Timestamps. */
  static const char *const bad_ts[] = {"", "-1", "+1", "01", "1.5", " 1", "1e3", "9223372036854775808",
                                       "12345678901234567890"};
  for (size_t i = 0; i < sizeof bad_ts / sizeof bad_ts[0]; i++) {
    const char *why = verify_req(&k, &r, sig, bad_ts[i], NOW);
    if (!why || strcmp(why, TSIG_R_MALFORMED) != 0) fail_msg("ts \"%s\": %s", bad_ts[i], why ? why : "accepted");
  }
  int64_t t = -1;
  assert_int_equal(tsig_parse_ts("9223372036854775807", 19, &t), AW_OK);
  assert_true(t == INT64_MAX);
  assert_int_equal(tsig_parse_ts("0", 1, &t), AW_OK);
  assert_true(t == 0);
  /* A header value is bytes: a NUL inside is malformed, not a cut string. */
  assert_int_equal(tsig_request_verify(&k, &r, sig, strlen(sig) + 1, ts, strlen(ts), NOW, -1, NULL), AW_EINVAL);
  tsig_key_clear(&k);
}

/* `arguments` is not signed: a map that says something else than the signed
 * text is refused, a nil map is fine. */
static void an_arguments_map_other_than_the_signed_text_is_refused(void **state) {
  (void)state;
  tsig_key k;
  key2(&k, KEY, NULL);
  ctool_request s = sample();
  ctool_request *r = decoded(&s);
  char sig[TSIG_HEADER_SIZE], ts[TSIG_TS_SIZE];
  assert_int_equal(tsig_request_sign(&k, r, NOW, sig, ts), AW_OK);
  assert_non_null(r->arguments);
  assert_null(verify_req(&k, r, sig, ts, NOW));
  buf other;
  buf_init(&other, 4096);
  static const char forged[] = "{\"location\":\"Tokyo\",\"unit\":\"celsius\"}";
  assert_int_equal(ctool_arguments_to_msgpack(forged, sizeof forged - 1, &other), AW_OK);
  const void *genuine = r->arguments;
  size_t genuine_len = r->arguments_len;
  r->arguments = other.data;
  r->arguments_len = other.len;
  assert_string_equal(verify_req(&k, r, sig, ts, NOW), TSIG_R_ARGUMENTS);
  r->arguments = NULL; /* nil: the service acts on arguments_json */
  r->arguments_len = 0;
  assert_null(verify_req(&k, r, sig, ts, NOW));
  r->arguments = genuine;
  r->arguments_len = genuine_len;
  buf_free(&other);
  ctool_request_free(r);
  tsig_key_clear(&k);
}

/* ---- replies -------------------------------------------------------------------- */

static void changing_any_part_of_a_reply_fails_its_signature(void **state) {
  (void)state;
  tsig_key k, rotating;
  key2(&k, KEY, NULL);
  key2(&rotating, KEY, OLD_KEY);
  const char *corr = "tc2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  ctool_reply out = {.correlation_id = corr, .output = "22C sunny", .output_len = 9};
  ctool_reply err = {.correlation_id = corr, .error_code = "unknown_location", .error_message = "no data"};
  char so[TSIG_HEADER_SIZE], se[TSIG_HEADER_SIZE];
  assert_int_equal(tsig_reply_sign(&k, &out, so), AW_OK);
  assert_int_equal(tsig_reply_sign(&k, &err, se), AW_OK);
  const char *why = NULL;
  assert_int_equal(tsig_reply_verify(&k, &out, so, strlen(so), &why), AW_OK);
  assert_null(why);
  assert_int_equal(tsig_reply_verify(&k, &err, se, strlen(se), &why), AW_OK);
  assert_int_equal(tsig_reply_verify(&rotating, &out, so, strlen(so), &why), AW_OK);
  ctool_reply t[6] = {out, out, out, err, err, err};
  t[0].correlation_id = "tc2.BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
  t[1].output = "22C sunnY";
  t[2].output_len = 8;
  t[3].error_code = "unknown_locatioN";
  t[4].error_message = "no data!";
  t[5].error_message = NULL; /* "" */
  for (int i = 0; i < 6; i++) {
    const char *s = i < 3 ? so : se;
    assert_int_equal(tsig_reply_verify(&k, &t[i], s, strlen(s), &why), AW_EINVAL);
    if (strcmp(why, TSIG_R_MISMATCH) != 0) fail_msg("case %d: %s", i, why);
  }
  /* An output's signature does not pass for an error with the same text, nor
   * a reply's for a request's. */
  ctool_reply e2 = {.correlation_id = corr, .error_code = "22C sunny", .error_message = ""};
  assert_int_equal(tsig_reply_verify(&k, &e2, so, strlen(so), &why), AW_EINVAL);
  assert_int_equal(tsig_reply_verify(&k, &out, NULL, 0, &why), AW_EINVAL);
  assert_string_equal(why, TSIG_R_MISSING);
  assert_int_equal(tsig_reply_verify(&k, &out, "v1=", 3, &why), AW_EINVAL);
  assert_string_equal(why, TSIG_R_MALFORMED);
  ctool_request r = sample();
  char rs[TSIG_HEADER_SIZE], ts[TSIG_TS_SIZE];
  assert_int_equal(tsig_request_sign(&k, &r, NOW, rs, ts), AW_OK);
  assert_int_equal(tsig_reply_verify(&k, &out, rs, strlen(rs), &why), AW_EINVAL);
  assert_string_equal(why, TSIG_R_MISMATCH);
  tsig_key_clear(&k);
  tsig_key_clear(&rotating);
}

static void encoded_reply_signs_like_its_decoding(void **state) {
  (void)state;
  tsig_key k;
  key2(&k, KEY, NULL);
  ctool_reply in = {.correlation_id = "tc2.x", .error_code = "boom", .error_message = "it failed"};
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(ctool_reply_encode(&in, &b), AW_OK);
  char s1[TSIG_HEADER_SIZE], s2[TSIG_HEADER_SIZE];
  assert_int_equal(tsig_reply_sign_encoded(&k, b.data, b.len, s1), AW_OK);
  assert_int_equal(tsig_reply_sign(&k, &in, s2), AW_OK);
  assert_string_equal(s1, s2);
  assert_int_equal(tsig_reply_sign_encoded(&k, "\xc1", 1, s1), AW_EPARSE);
  buf_free(&b);
  tsig_key_clear(&k);
}

/* ---- keys ----------------------------------------------------------------------- */

static void keys_need_sixteen_bytes_and_a_current_one(void **state) {
  (void)state;
  tsig_key k;
  assert_int_equal(tsig_key_init(&k, "0123456789abcde", 15), AW_EINVAL);
  assert_int_equal(k.cur_len, 0);
  assert_int_equal(tsig_key_set_previous(&k, OLD_KEY, strlen(OLD_KEY)), AW_EINVAL); /* no current */
  assert_int_equal(tsig_key_init(&k, "0123456789abcdef", 16), AW_OK);
  assert_int_equal(tsig_key_set_previous(&k, "short", 5), AW_EINVAL);
  char big[TSIG_MAX_KEY + 1];
  memset(big, 'k', sizeof big);
  assert_int_equal(tsig_key_init(&k, big, sizeof big), AW_EINVAL);
  /* A long key works like HMAC's own hashing of it. */
  assert_int_equal(tsig_key_init(&k, big, TSIG_MAX_KEY), AW_OK);
  ctool_request r = sample();
  char sig[TSIG_HEADER_SIZE], ts[TSIG_TS_SIZE];
  assert_int_equal(tsig_request_sign(&k, &r, NOW, sig, ts), AW_OK);
  assert_null(verify_req(&k, &r, sig, ts, NOW));
  tsig_key_clear(&k);
  assert_int_equal(k.cur_len, 0);
  assert_int_equal(tsig_request_sign(&k, &r, NOW, sig, ts), AW_EINVAL);
  assert_string_equal(verify_req(&k, &r, "v1=x", ts, NOW), "internal_error");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(shared_vectors_give_the_documented_messages_and_signatures),
      cmocka_unit_test(signed_request_verifies_after_encoding_and_decoding),
      cmocka_unit_test(changing_any_signed_request_field_fails_the_signature),
      cmocka_unit_test(previous_key_verifies_and_a_rotating_signer_signs_with_both),
      cmocka_unit_test(timestamps_outside_the_skew_are_stale_or_future),
      cmocka_unit_test(malformed_missing_and_foreign_headers_are_refused_precisely),
      cmocka_unit_test(an_arguments_map_other_than_the_signed_text_is_refused),
      cmocka_unit_test(changing_any_part_of_a_reply_fails_its_signature),
      cmocka_unit_test(encoded_reply_signs_like_its_decoding),
      cmocka_unit_test(keys_need_sixteen_bytes_and_a_current_one),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

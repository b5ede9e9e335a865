/* test_event_claim.c -- which message an event_id belongs to
 * (worker/event/event_claim.h): the digest tells a re-sent message from a
 * different one with the same id (and ignores how it was encoded), and the
 * decision over the outcome and progress records skips or recovers the same
 * message, refuses a different one as event_id_reused, and keeps the old
 * behaviour for records written before digests.
 *
 * Needs: nothing (pure; requests decoded from msgpack built here). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cJSON.h>
#include <cmocka.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_claim.h"

/* ---- requests ------------------------------------------------------------- */

static void pack_json(msgpack_packer *pk, const cJSON *j) {
  if (cJSON_IsNull(j)) {
    msgpack_pack_nil(pk);
  } else if (cJSON_IsTrue(j)) {
    msgpack_pack_true(pk);
  } else if (cJSON_IsFalse(j)) {
    msgpack_pack_false(pk);
  } else if (cJSON_IsNumber(j)) {
    msgpack_pack_int64(pk, (int64_t)j->valuedouble);
  } else if (cJSON_IsString(j)) {
    msgpack_pack_str_with_body(pk, j->valuestring, strlen(j->valuestring));
  } else if (cJSON_IsArray(j)) {
    msgpack_pack_array(pk, (size_t)cJSON_GetArraySize(j));
    for (const cJSON *c = j->child; c; c = c->next) pack_json(pk, c);
  } else {
    msgpack_pack_map(pk, (size_t)cJSON_GetArraySize(j));
    for (const cJSON *c = j->child; c; c = c->next) {
      msgpack_pack_str_with_body(pk, c->string, strlen(c->string));
      pack_json(pk, c);
    }
  }
}

/* The digest of the request written as JSON (packed to msgpack, decoded by
 * the contract's decoder like an event from Kafka). */
static void digest_of(const char *json, char out[EVC_DIGEST_HEX]) {
  cJSON *j = cJSON_Parse(json);
  if (!j) fail_msg("test JSON does not parse: %s", json);
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  pack_json(&pk, j);
  cJSON_Delete(j);
  contract_request *q = NULL;
  const char *code = NULL;
  char ev[129], conv[257], err[256];
  int rc = contract_request_decode(sb.data, sb.size, NULL, &q, &code, ev, sizeof ev, conv, sizeof conv, err,
                                   sizeof err);
  msgpack_sbuffer_destroy(&sb);
  if (rc != AW_OK) fail_msg("test request does not decode (%s): %s", err, json);
  assert_int_equal(evc_digest(q, out), AW_OK);
  contract_request_free(q);
}

#define BASE_HEAD "\"v\": 1, \"event_id\": \"evt-1\", \"conversation_id\": \"conv-1\", \"assistant\": \"Bot\""

static void a_digest_is_64_lowercase_hex_and_stable(void **state) {
  (void)state;
  char a[EVC_DIGEST_HEX], b[EVC_DIGEST_HEX];
  digest_of("{" BASE_HEAD ", \"content\": \"Hello\"}", a);
  digest_of("{" BASE_HEAD ", \"content\": \"Hello\"}", b);
  assert_int_equal(strlen(a), 64);
  assert_int_equal(strspn(a, "0123456789abcdef"), 64);
  assert_string_equal(a, b);
}

static void re_encoding_the_same_message_keeps_its_digest(void **state) {
  (void)state;
  char a[EVC_DIGEST_HEX], b[EVC_DIGEST_HEX];
  digest_of("{" BASE_HEAD ", \"content\": \"Hello\", \"metadata\": {\"a\": \"1\", \"b\": \"2\"}}", a);
  /* Another key order, content as one text part, metadata in another order,
   * an unknown key and `stream`: the same message. */
  digest_of("{\"content\": [{\"type\": \"text\", \"text\": \"Hello\"}], \"sent_at\": 1712345678, "
            "\"metadata\": {\"b\": \"2\", \"a\": \"1\"}, \"stream\": true, " BASE_HEAD "}",
            b);
  assert_string_equal(a, b);
}

static void every_field_of_the_turn_changes_the_digest(void **state) {
  (void)state;
  static const char *const variants[] = {
      "{" BASE_HEAD ", \"content\": \"Hello\"}",
      "{" BASE_HEAD ", \"content\": \"Hello!\"}",
      "{\"v\": 1, \"event_id\": \"evt-2\", \"conversation_id\": \"conv-1\", \"assistant\": \"Bot\", \"content\": \"Hello\"}",
      "{\"v\": 1, \"event_id\": \"evt-1\", \"conversation_id\": \"conv-2\", \"assistant\": \"Bot\", \"content\": \"Hello\"}",
      "{\"v\": 1, \"event_id\": \"evt-1\", \"conversation_id\": \"conv-1\", \"assistant\": \"Bot2\", \"content\": \"Hello\"}",
      "{" BASE_HEAD ", \"content\": [{\"type\": \"text\", \"text\": \"Hel\"}, {\"type\": \"text\", \"text\": \"lo\"}]}",
      "{" BASE_HEAD ", \"content\": [{\"type\": \"image_url\", \"url\": \"Hello\"}]}",
      "{" BASE_HEAD ", \"content\": [{\"type\": \"image_url\", \"url\": \"Hello\", \"detail\": \"low\"}]}",
      "{" BASE_HEAD ", \"content\": [{\"type\": \"file\", \"file_id\": \"Hello\"}]}",
      "{" BASE_HEAD ", \"content\": \"Hello\", \"instructions\": \"\"}",
      "{" BASE_HEAD ", \"content\": \"Hello\", \"instructions\": \"x\"}",
      "{" BASE_HEAD ", \"content\": \"Hello\", \"additional_instructions\": \"\"}",
      "{" BASE_HEAD ", \"content\": \"Hello\", \"additional_instructions\": \"x\"}",
      "{" BASE_HEAD ", \"content\": \"Hello\", \"metadata\": {}}",
      "{" BASE_HEAD ", \"content\": \"Hello\", \"metadata\": {\"a\": \"1\"}}",
      "{" BASE_HEAD ", \"content\": \"Hello\", \"metadata\": {\"a\": \"2\"}}",
      "{" BASE_HEAD ", \"content\": \"Hello\", \"metadata\": {\"b\": \"1\"}}",
      "{" BASE_HEAD ", \"content\": \"Hello\", \"metadata\": {\"a\": \"\"}}",
      "{" BASE_HEAD ", \"content\": \"Hello\", \"metadata\": {\"a1\": \"\"}}",
  };
  enum { N = sizeof variants / sizeof variants[0] };
  char d[N][EVC_DIGEST_HEX];
  for (size_t i = 0; i < N; i++) digest_of(variants[i], d[i]);
  /* An empty metadata map is no metadata: the same message. */
  assert_string_equal(d[0], d[13]);
  for (size_t i = 0; i < N; i++)
    for (size_t j = i + 1; j < N; j++)
      if (!(i == 0 && j == 13) && strcmp(d[i], d[j]) == 0) fail_msg("variants %zu and %zu share a digest", i, j);
}

/* Records written before request kinds existed carry the digests of that
 * release: a message (no kind, or kind "message") must still digest to
 * them, or an upgrade would refuse every re-delivered event as reused.  The
 * vector was computed with the previous release's event_claim.c. */
static void a_message_digests_as_before_request_kinds(void **state) {
  (void)state;
  static const char before_kinds[] = "6df478edb784e50a660ff977118ad4e5c747bb25e8f23aa3141ea72d34d71a0c";
  char a[EVC_DIGEST_HEX], b[EVC_DIGEST_HEX];
  digest_of("{" BASE_HEAD ", \"content\": \"Hello\", \"instructions\": \"Be brief\", "
            "\"metadata\": {\"b\": \"2\", \"a\": \"1\"}}",
            a);
  assert_string_equal(a, before_kinds);
  digest_of("{" BASE_HEAD ", \"kind\": \"message\", \"content\": \"Hello\", \"instructions\": \"Be brief\", "
            "\"metadata\": {\"b\": \"2\", \"a\": \"1\"}}",
            b);
  assert_string_equal(b, before_kinds);
}

#define CONV_HEAD "\"v\": 1, \"event_id\": \"evt-1\", \"conversation_id\": \"conv-1\""

/* An append delivered again, or re-encoded by its producer (another key
 * order, content as one text part, `assistant` added: the other kinds
 * ignore it, an unknown key), is the same request: skipped, not refused. */
static void a_re_sent_append_keeps_its_digest(void **state) {
  (void)state;
  char a[EVC_DIGEST_HEX], b[EVC_DIGEST_HEX], c[EVC_DIGEST_HEX];
  const char *append = "{" CONV_HEAD ", \"kind\": \"append\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, "
                       "{\"role\": \"assistant\", \"content\": \"Hello!\"}]}";
  digest_of(append, a);
  digest_of(append, b);
  assert_string_equal(a, b);
  digest_of("{\"messages\": [{\"content\": [{\"type\": \"text\", \"text\": \"Hi\"}], \"role\": \"user\"}, "
            "{\"content\": \"Hello!\", \"role\": \"assistant\"}], \"assistant\": \"Bot\", \"sent_at\": 5, "
            "\"kind\": \"append\", " CONV_HEAD "}",
            c);
  assert_string_equal(a, c);
  /* A history's default limit and order, written out, ask the same. */
  digest_of("{" CONV_HEAD ", \"kind\": \"history\"}", a);
  digest_of("{" CONV_HEAD ", \"kind\": \"history\", \"limit\": 20, \"order\": \"desc\"}", b);
  assert_string_equal(a, b);
}

/* Every kind and every field of a kind changes the digest: an append and a
 * history (or any two requests) reusing one event_id do not match. */
static void every_kind_and_kind_field_changes_the_digest(void **state) {
  (void)state;
  static const char *const variants[] = {
      "{" BASE_HEAD ", \"content\": \"Hi\"}",
      "{" CONV_HEAD ", \"kind\": \"history\"}",
      "{" CONV_HEAD ", \"kind\": \"history\", \"limit\": 5}",
      "{" CONV_HEAD ", \"kind\": \"history\", \"after\": \"msg_1\"}",
      "{" CONV_HEAD ", \"kind\": \"history\", \"before\": \"msg_1\"}",
      "{" CONV_HEAD ", \"kind\": \"history\", \"order\": \"asc\"}",
      "{" CONV_HEAD ", \"kind\": \"append\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}",
      "{" CONV_HEAD ", \"kind\": \"append\", \"messages\": [{\"role\": \"assistant\", \"content\": \"Hi\"}]}",
      "{" CONV_HEAD ", \"kind\": \"append\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi!\"}]}",
      "{" CONV_HEAD ", \"kind\": \"append\", \"messages\": [{\"role\": \"user\", \"content\": "
      "[{\"type\": \"text\", \"text\": \"H\"}, {\"type\": \"text\", \"text\": \"i\"}]}]}",
      "{" CONV_HEAD ", \"kind\": \"append\", \"messages\": [{\"role\": \"user\", \"content\": \"H\"}, "
      "{\"role\": \"user\", \"content\": \"i\"}]}",
      "{" CONV_HEAD ", \"kind\": \"append\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, "
      "{\"role\": \"user\", \"content\": \"Hi\"}]}",
      "{" CONV_HEAD ", \"kind\": \"reset\"}",
      "{" CONV_HEAD ", \"kind\": \"delete\"}",
      "{" CONV_HEAD ", \"kind\": \"cancel\"}",
      "{" CONV_HEAD ", \"kind\": \"cancel\", \"target_event_id\": \"evt-0\"}",
      "{" CONV_HEAD ", \"kind\": \"cancel\", \"target_event_id\": \"evt-9\"}",
      "{" CONV_HEAD ", \"kind\": \"reset\", \"metadata\": {\"tenant\": \"t1\"}}",
      "{\"v\": 1, \"event_id\": \"evt-1\", \"conversation_id\": \"conv-2\", \"kind\": \"reset\"}",
  };
  enum { N = sizeof variants / sizeof variants[0] };
  char d[N][EVC_DIGEST_HEX];
  for (size_t i = 0; i < N; i++) digest_of(variants[i], d[i]);
  for (size_t i = 0; i < N; i++)
    for (size_t j = i + 1; j < N; j++)
      if (strcmp(d[i], d[j]) == 0) fail_msg("variants %zu and %zu share a digest", i, j);
}

/* ---- records and the decision ------------------------------------------------ */

#define DA "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define DB "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void the_same_message_answered_before_is_skipped(void **state) {
  (void)state;
  char v[256];
  assert_int_equal(evc_outcome_value(v, sizeof v, "completed", "resp_1", DA, 1767225600123), AW_OK);
  assert_string_equal(v, "completed resp_1 d:" DA " 1767225600123");
  evc_decision d;
  evc_decide(v, "", DA, &d);
  assert_int_equal(d.verdict, EVC_ANSWERED);
}

static void a_different_message_with_an_answered_id_is_refused_with_when(void **state) {
  (void)state;
  char v[256];
  assert_int_equal(evc_outcome_value(v, sizeof v, "failed", NULL, DA, 1767225600123), AW_OK);
  assert_string_equal(v, "failed - d:" DA " 1767225600123");
  evc_decision d;
  evc_decide(v, "", DB, &d);
  assert_int_equal(d.verdict, EVC_REUSED);
  assert_int_equal(d.answered, 1);
  assert_int_equal(d.at_ms, 1767225600123);
  char msg[512];
  evc_reused_message(msg, sizeof msg, "evt-42", &d);
  assert_non_null(strstr(msg, "'evt-42'"));
  assert_non_null(strstr(msg, "different message"));
  assert_non_null(strstr(msg, "answered at 2026-01-01T00:00:00Z"));
  /* The outcome decides before the progress record. */
  evc_decide(v, "d:" DB ":1 -", DB, &d);
  assert_int_equal(d.verdict, EVC_REUSED);
  evc_decide(v, "d:" DB ":1 -", DA, &d);
  assert_int_equal(d.verdict, EVC_ANSWERED);
}

static void an_outcome_written_before_digests_skips_any_message(void **state) {
  (void)state;
  static const char *const old[] = {"completed run_abc", "rejected -", "failed -", "completed resp_1 extra"};
  for (size_t i = 0; i < sizeof old / sizeof old[0]; i++) {
    evc_decision d;
    evc_decide(old[i], "", DB, &d);
    assert_int_equal(d.verdict, EVC_ANSWERED);
  }
}

static void a_new_event_claims_and_the_same_message_started_before_is_recovered(void **state) {
  (void)state;
  evc_decision d;
  evc_decide("", "", DA, &d);
  assert_int_equal(d.verdict, EVC_NEW);
  char v[128];
  assert_int_equal(evc_progress_claim_value(v, sizeof v, DA, 1767225600123), AW_OK);
  assert_string_equal(v, "d:" DA ":1767225600123 -");
  assert_true(strlen(v) < EVC_PROGRESS_PREFIX_MAX + 2);
  evc_decide("", v, DA, &d);
  assert_int_equal(d.verdict, EVC_RECOVER);
  assert_null(d.checkpoint);
  const char *cp = "d:" DA ":1767225600123 r1 conv_1 resp_2 7";
  evc_decide("", cp, DA, &d);
  assert_int_equal(d.verdict, EVC_RECOVER);
  assert_int_equal(d.checkpoint_len, strlen("r1 conv_1 resp_2 7"));
  assert_string_equal(d.checkpoint, "r1 conv_1 resp_2 7");
}

static void a_different_message_with_a_started_id_is_refused(void **state) {
  (void)state;
  evc_decision d;
  evc_decide("", "d:" DA ":1767225600123 a1 thread_1 run_1", DB, &d);
  assert_int_equal(d.verdict, EVC_REUSED);
  assert_int_equal(d.answered, 0);
  assert_int_equal(d.at_ms, 1767225600123);
  char msg[512];
  evc_reused_message(msg, sizeof msg, "evt-42", &d);
  assert_non_null(strstr(msg, "started, not answered yet"));
  assert_non_null(strstr(msg, "2026-01-01T00:00:00Z"));
}

static void a_progress_record_written_before_digests_is_recovered(void **state) {
  (void)state;
  evc_decision d;
  evc_decide("", "-", DB, &d);
  assert_int_equal(d.verdict, EVC_RECOVER);
  assert_null(d.checkpoint);
  evc_decide("", "a1 thread_1 run_1", DB, &d);
  assert_int_equal(d.verdict, EVC_RECOVER);
  assert_string_equal(d.checkpoint, "a1 thread_1 run_1");
  /* Something that only looks like a digest is an old checkpoint, whole. */
  static const char *const odd[] = {"d:" DA " -", "d:xyz:1 -", "d:" DA "a:1 -", "d:" DA ":1"};
  for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
    evc_decide("", odd[i], DB, &d);
    assert_int_equal(d.verdict, EVC_RECOVER);
    assert_string_equal(d.checkpoint, odd[i]);
  }
}

static void record_values_are_bounded_and_need_a_digest(void **state) {
  (void)state;
  char v[256];
  assert_int_equal(evc_outcome_value(v, 40, "completed", "resp_1", DA, 1), AW_ETOOBIG);
  assert_int_equal(evc_outcome_value(v, sizeof v, "completed", "resp_1", "", 1), AW_EINVAL);
  assert_int_equal(evc_outcome_value(v, sizeof v, "completed", "resp_1", NULL, 1), AW_EINVAL);
  assert_int_equal(evc_outcome_value(v, sizeof v, "completed", "resp_1", "ABCD", 1), AW_EINVAL);
  assert_int_equal(evc_progress_claim_value(v, 20, DA, 1), AW_ETOOBIG);
  assert_int_equal(evc_progress_claim_value(v, sizeof v, DA "0", 1), AW_EINVAL);
  /* An unknown time says nothing about when. */
  evc_decision d;
  evc_decide("completed - d:" DA " notatime", "", DB, &d);
  assert_int_equal(d.verdict, EVC_REUSED);
  assert_int_equal(d.at_ms, 0);
  char msg[64];
  evc_reused_message(msg, sizeof msg, "evt-1", &d);
  assert_int_equal(strlen(msg), sizeof msg - 1);
  assert_null(strstr(msg, " at "));
}

/* ---- files ------------------------------------------------------------------ */

/* The digest of r as an event: encoded, decoded, digested (bin cannot be
 * said in JSON, so requests with files are built as structs). */
static void digest_req(const contract_request *r, char out[EVC_DIGEST_HEX]) {
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(contract_request_encode(r, &b), AW_OK);
  contract_request *q = NULL;
  const char *code = NULL;
  char ev[129], conv[257], err[256];
  int rc = contract_request_decode(b.data, b.len, NULL, &q, &code, ev, sizeof ev, conv, sizeof conv, err,
                                   sizeof err);
  buf_free(&b);
  if (rc != AW_OK) fail_msg("test request does not decode: %s", err);
  assert_int_equal(evc_digest(q, out), AW_OK);
  contract_request_free(q);
}

/* A different file is a different message: an inline image's bytes, type
 * and name and every field of an attachment change the digest; asking for
 * the steps does not (like stream, it is how the answer is told), and a
 * message without files digests as before files existed. */
static void files_change_the_digest_and_include_steps_does_not(void **state) {
  (void)state;
  contract_part text = {.type = CONTRACT_PART_TEXT, .text = "Hello", .text_len = 5};
  contract_part img[] = {
      {.type = CONTRACT_PART_IMAGE_FILE, .data = "PNG1", .data_len = 4, .media_type = "image/png"},
      {.type = CONTRACT_PART_IMAGE_FILE, .data = "PNG2", .data_len = 4, .media_type = "image/png"},
      {.type = CONTRACT_PART_IMAGE_FILE, .data = "PNG1", .data_len = 4, .media_type = "image/jpeg"},
      {.type = CONTRACT_PART_IMAGE_FILE, .data = "PNG1", .data_len = 4, .media_type = "image/png", .filename = "a.png"},
      {.type = CONTRACT_PART_IMAGE_FILE, .text = "file-1", .text_len = 6},
  };
  contract_attachment att[] = {
      {.file_id = "file-a", .tools = CONTRACT_ATT_FILE_SEARCH},
      {.file_id = "file-b", .tools = CONTRACT_ATT_FILE_SEARCH},
      {.file_id = "file-a", .tools = CONTRACT_ATT_CODE_INTERPRETER},
      {.file_id = "file-a", .tools = CONTRACT_ATT_FILE_SEARCH | CONTRACT_ATT_CODE_INTERPRETER},
      {.data = "a,b", .data_len = 3, .filename = "s.csv", .media_type = "text/csv", .tools = CONTRACT_ATT_CODE_INTERPRETER},
      {.data = "a,c", .data_len = 3, .filename = "s.csv", .media_type = "text/csv", .tools = CONTRACT_ATT_CODE_INTERPRETER},
      {.data = "a,b", .data_len = 3, .filename = "t.csv", .media_type = "text/csv", .tools = CONTRACT_ATT_CODE_INTERPRETER},
      {.data = "a,b", .data_len = 3, .filename = "s.csv", .media_type = "text/plain", .tools = CONTRACT_ATT_CODE_INTERPRETER},
  };
  enum { NIMG = sizeof img / sizeof img[0], NATT = sizeof att / sizeof att[0], N = 1 + NIMG + NATT + 1 };
  char d[N][EVC_DIGEST_HEX];
  contract_request r = {.event_id = "evt-1", .conversation_id = "conv-1", .assistant = "Bot", .parts = &text,
                        .nparts = 1};
  digest_req(&r, d[0]);
  contract_part two[2] = {text};
  r.parts = two;
  r.nparts = 2;
  for (size_t i = 0; i < NIMG; i++) {
    two[1] = img[i];
    digest_req(&r, d[1 + i]);
  }
  r.parts = &text;
  r.nparts = 1;
  for (size_t i = 0; i < NATT; i++) {
    r.attachments = &att[i];
    r.nattachments = 1;
    digest_req(&r, d[1 + NIMG + i]);
  }
  r.attachments = att; /* two attachments: not the first alone */
  r.nattachments = 2;
  digest_req(&r, d[N - 1]);
  for (size_t i = 0; i < N; i++)
    for (size_t j = i + 1; j < N; j++)
      if (strcmp(d[i], d[j]) == 0) fail_msg("variants %zu and %zu share a digest", i, j);

  char with_steps[EVC_DIGEST_HEX], plain[EVC_DIGEST_HEX];
  r.include_steps = 1;
  digest_req(&r, with_steps);
  assert_string_equal(with_steps, d[N - 1]);
  /* Without files: the serialisation of before (the JSON-built request). */
  r = (contract_request){.event_id = "evt-1", .conversation_id = "conv-1", .assistant = "Bot", .parts = &text,
                         .nparts = 1, .include_steps = 1};
  digest_req(&r, with_steps);
  digest_of("{" BASE_HEAD ", \"content\": \"Hello\"}", plain);
  assert_string_equal(with_steps, plain);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_digest_is_64_lowercase_hex_and_stable),
      cmocka_unit_test(re_encoding_the_same_message_keeps_its_digest),
      cmocka_unit_test(every_field_of_the_turn_changes_the_digest),
      cmocka_unit_test(a_message_digests_as_before_request_kinds),
      cmocka_unit_test(a_re_sent_append_keeps_its_digest),
      cmocka_unit_test(every_kind_and_kind_field_changes_the_digest),
      cmocka_unit_test(the_same_message_answered_before_is_skipped),
      cmocka_unit_test(a_different_message_with_an_answered_id_is_refused_with_when),
      cmocka_unit_test(an_outcome_written_before_digests_skips_any_message),
      cmocka_unit_test(a_new_event_claims_and_the_same_message_started_before_is_recovered),
      cmocka_unit_test(a_different_message_with_a_started_id_is_refused),
      cmocka_unit_test(a_progress_record_written_before_digests_is_recovered),
      cmocka_unit_test(record_values_are_bounded_and_need_a_digest),
      cmocka_unit_test(files_change_the_digest_and_include_steps_does_not),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

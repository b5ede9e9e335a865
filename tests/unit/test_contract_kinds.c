/* test_contract_kinds.c -- the conversation requests of the contract
 * (`kind`: history, append, reset, delete, cancel; common/contract/
 * contract_kinds.c and the kind handling of contract.c): each kind decodes
 * with its defaults, every bad field is rejected with its code and its
 * name, keys of another kind are refused, a v1 request without `kind` is
 * still a message, requests round-trip through the encoder, the response
 * writes the new keys only where they belong, and the examples in
 * schemas/examples agree with the codec.
 *
 * Needs: nothing (no broker, no network).  Reads schemas/examples from the
 * source tree (found from __FILE__, or $AW_SOURCE_DIR).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <malloc.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "mp_fixture.h"

/* ---- helpers --------------------------------------------------------------- */

typedef struct decoded {
  int rc;
  contract_request *r;
  const char *code;
  char ev[129], conv[257], err[256];
} decoded;

static void decode_json(const char *json, const contract_limits *lim, decoded *d) {
  msgpack_sbuffer sb;
  mpfx_from_json(json, &sb);
  memset(d, 0, sizeof *d);
  d->rc = contract_request_decode(sb.data, sb.size, lim, &d->r, &d->code, d->ev, sizeof d->ev, d->conv,
                                  sizeof d->conv, d->err, sizeof d->err);
  msgpack_sbuffer_destroy(&sb);
}

static contract_request *expect_ok_lim(const char *json, const contract_limits *lim) {
  decoded d;
  decode_json(json, lim, &d);
  if (d.rc) fail_msg("decode failed: %d %s '%s' (%s)", d.rc, d.code, d.err, json);
  assert_non_null(d.r);
  return d.r;
}

static contract_request *expect_ok(const char *json) { return expect_ok_lim(json, NULL); }

/* json decodes, as a request of kind k. */
static void expect_kind(const char *json, contract_kind k) {
  contract_request *r = expect_ok(json);
  assert_int_equal(r->kind, k);
  contract_request_free(r);
}

/* Rejected with rc, code and an errstr containing errpart; the ids still
 * correlate the rejection. */
static void expect_reject_lim(const char *json, const contract_limits *lim, int rc, const char *code,
                              const char *errpart) {
  decoded d;
  decode_json(json, lim, &d);
  if (d.rc != rc || !d.code || strcmp(d.code, code) || !strstr(d.err, errpart))
    fail_msg("want rc=%d %s '%s'; got rc=%d %s '%s' for %s", rc, code, errpart, d.rc,
             d.code ? d.code : "(null)",
             d.err, json);
  assert_null(d.r);
  assert_string_equal(d.ev, "e1");
  assert_string_equal(d.conv, "c1");
}

static void expect_reject(const char *json, int rc, const char *code, const char *errpart) {
  expect_reject_lim(json, NULL, rc, code, errpart);
}

/* The envelope of a conversation request (no assistant). */
#define HEAD "\"v\":1,\"event_id\":\"e1\",\"conversation_id\":\"c1\""

/* An id field of a kind (after, before, target_event_id) is a non-empty
 * string of at most max bytes: each violation is invalid_field, naming it. */
static void expect_id_field_checked(const char *kind, const char *field, size_t max) {
  char json[1024], want[128];
  assert_true(max < sizeof json - 128);
  snprintf(json, sizeof json, "{" HEAD ",\"kind\":\"%s\",\"%s\":\"\"}", kind, field);
  snprintf(want, sizeof want, "field %s must not be empty", field);
  expect_reject(json, AW_EINVAL, "invalid_field", want);
  snprintf(json, sizeof json, "{" HEAD ",\"kind\":\"%s\",\"%s\":42}", kind, field);
  snprintf(want, sizeof want, "field %s must be a string", field);
  expect_reject(json, AW_EINVAL, "invalid_field", want);
  int n = snprintf(json, sizeof json, "{" HEAD ",\"kind\":\"%s\",\"%s\":\"", kind, field);
  memset(json + n, 'm', max + 1);
  strcpy(json + n + max + 1, "\"}");
  snprintf(want, sizeof want, "field %s is %zu bytes, at most %zu allowed", field, max + 1, max);
  expect_reject(json, AW_EINVAL, "invalid_field", want);
}

/* An append of n messages "m0".."m<n-1>" into json[cap]. */
static void append_of(int n, char *json, size_t cap) {
  int len = snprintf(json, cap, "{" HEAD ",\"kind\":\"append\",\"messages\":[");
  for (int i = 0; i < n; i++)
    len += snprintf(json + len, cap - (size_t)len, "%s{\"role\":\"user\",\"content\":\"m%d\"}", i ? "," : "", i);
  assert_true((size_t)len + 3 <= cap);
  snprintf(json + len, cap - (size_t)len, "]}");
}

static cJSON *json_view(const buf *b) {
  buf j;
  buf_init(&j, 1 << 20);
  assert_int_equal(contract_to_json(b->data, b->len, &j), AW_OK);
  cJSON *c = cJSON_Parse(j.data);
  if (!c) fail_msg("JSON view does not parse: %s", j.data);
  buf_free(&j);
  return c;
}

static const cJSON *jget(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = jget(o, k);
  if (!cJSON_IsString(v)) fail_msg("%s is not a string", k);
  return v->valuestring;
}

static int str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

static void assert_parts_equal(const contract_part *a, size_t na, const contract_part *b, size_t nb) {
  assert_int_equal(na, nb);
  for (size_t i = 0; i < na; i++) {
    assert_int_equal(a[i].type, b[i].type);
    assert_int_equal(a[i].text_len, b[i].text_len);
    assert_memory_equal(a[i].text, b[i].text, a[i].text_len);
    assert_true(str_eq(a[i].detail, b[i].detail));
  }
}

/* Every field contract.h documents, kind fields included. */
static void assert_requests_equal(const contract_request *a, const contract_request *b) {
  assert_int_equal(a->v, b->v);
  assert_int_equal(a->kind, b->kind);
  assert_true(str_eq(a->event_id, b->event_id));
  assert_true(str_eq(a->conversation_id, b->conversation_id));
  assert_true(str_eq(a->assistant, b->assistant));
  assert_parts_equal(a->parts, a->nparts, b->parts, b->nparts);
  assert_int_equal(a->nmetadata, b->nmetadata);
  for (size_t i = 0; i < a->nmetadata; i++) {
    assert_string_equal(a->metadata[i].key, b->metadata[i].key);
    assert_string_equal(a->metadata[i].value, b->metadata[i].value);
  }
  assert_true(str_eq(a->instructions, b->instructions));
  assert_true(str_eq(a->additional_instructions, b->additional_instructions));
  assert_int_equal(a->stream, b->stream);
  assert_int_equal(a->limit, b->limit);
  assert_true(str_eq(a->after, b->after));
  assert_true(str_eq(a->before, b->before));
  assert_int_equal(a->order_asc, b->order_asc);
  assert_int_equal(a->nmessages, b->nmessages);
  for (size_t i = 0; i < a->nmessages; i++) {
    assert_string_equal(a->messages[i].role, b->messages[i].role);
    assert_parts_equal(a->messages[i].parts, a->messages[i].nparts, b->messages[i].parts,
                       b->messages[i].nparts);
  }
  assert_true(str_eq(a->target_event_id, b->target_event_id));
}

/* ---- kinds ------------------------------------------------------------------ */

static void kind_names_are_the_wire_names(void **state) {
  (void)state;
  assert_string_equal(contract_kind_name(CONTRACT_KIND_MESSAGE), "message");
  assert_string_equal(contract_kind_name(CONTRACT_KIND_HISTORY), "history");
  assert_string_equal(contract_kind_name(CONTRACT_KIND_APPEND), "append");
  assert_string_equal(contract_kind_name(CONTRACT_KIND_RESET), "reset");
  assert_string_equal(contract_kind_name(CONTRACT_KIND_DELETE), "delete");
  assert_string_equal(contract_kind_name(CONTRACT_KIND_CANCEL), "cancel");
  assert_string_equal(contract_kind_name((contract_kind)CONTRACT_KIND_COUNT), "message");
  assert_string_equal(contract_kind_name((contract_kind)-1), "message");
}

/* A v1 producer knows nothing of kinds: its request is a message, and the
 * encoder writes a message without `kind`, as the first release did. */
static void a_v1_request_without_kind_is_a_message(void **state) {
  (void)state;
  const char *v1 = "{" HEAD ",\"assistant\":\"a\",\"content\":\"Hello\",\"stream\":true}";
  contract_request *r = expect_ok(v1);
  assert_int_equal(r->kind, CONTRACT_KIND_MESSAGE);
  assert_string_equal(r->assistant, "a");
  assert_int_equal(r->nparts, 1);
  assert_string_equal(r->parts[0].text, "Hello");
  assert_int_equal(r->limit, 0);
  assert_null(r->after);
  assert_null(r->before);
  assert_null(r->messages);
  assert_int_equal(r->nmessages, 0);
  assert_null(r->target_event_id);
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(contract_request_encode(r, &b), AW_OK);
  cJSON *j = json_view(&b);
  assert_null(jget(j, "kind"));
  assert_int_equal(cJSON_GetArraySize(j), 6); /* v, event_id, conversation_id, assistant, content, stream */
  cJSON_Delete(j);
  buf_free(&b);
  contract_request_free(r);
  /* kind "message" (and a nil kind) say the same. */
  expect_kind("{" HEAD ",\"kind\":\"message\",\"assistant\":\"a\",\"content\":\"Hello\"}", CONTRACT_KIND_MESSAGE);
  expect_kind("{" HEAD ",\"kind\":null,\"assistant\":\"a\",\"content\":\"Hello\"}", CONTRACT_KIND_MESSAGE);
}

static void an_unknown_or_mistyped_kind_is_rejected(void **state) {
  (void)state;
  expect_reject("{" HEAD ",\"kind\":\"summarize\"}", AW_EINVAL, "invalid_field",
                "kind: must be message, history, append, reset, delete or cancel");
  expect_reject("{" HEAD ",\"kind\":\"History\"}", AW_EINVAL, "invalid_field", "kind:");
  expect_reject("{" HEAD ",\"kind\":\"\"}", AW_EINVAL, "invalid_field", "kind:");
  expect_reject("{" HEAD ",\"kind\":2}", AW_EINVAL, "invalid_field", "kind:");
  expect_reject("{" HEAD ",\"kind\":[\"history\"]}", AW_EINVAL, "invalid_field", "kind:");
  expect_reject("{" HEAD ",\"kind\":\"reset\",\"kind\":\"delete\"}", AW_EINVAL, "invalid_field",
                "duplicate key kind");
}

/* assistant and content belong to the message kind: required there,
 * assistant optional (decoded, ignored) and content refused elsewhere. */
/* A request that fails to decode still names its kind in its rejection:
 * the best-effort peek reads the top-level `kind`, and says message for
 * anything it cannot read. */
static int peek(const char *json) {
  msgpack_sbuffer sb;
  mpfx_from_json(json, &sb);
  int k = (int)contract_request_peek_kind(sb.data, sb.size);
  msgpack_sbuffer_destroy(&sb);
  return k;
}

static void a_request_that_does_not_decode_still_names_its_kind(void **state) {
  (void)state;
  /* limit 0 fails the decode; the peek still finds the kind. */
  assert_int_equal(peek("{\"v\":1,\"event_id\":\"e\",\"conversation_id\":\"c\",\"limit\":0,\"kind\":\"history\"}"),
                   CONTRACT_KIND_HISTORY);
  assert_int_equal(peek("{\"kind\":\"append\",\"messages\":[]}"), CONTRACT_KIND_APPEND);
  assert_int_equal(peek("{\"kind\":\"cancel\"}"), CONTRACT_KIND_CANCEL);
  assert_int_equal(peek("{\"kind\":\"histories\"}"), CONTRACT_KIND_MESSAGE);
  assert_int_equal(peek("{\"kind\":7}"), CONTRACT_KIND_MESSAGE);
  assert_int_equal(peek("{\"v\":1}"), CONTRACT_KIND_MESSAGE);
  assert_int_equal(peek("[\"kind\",\"history\"]"), CONTRACT_KIND_MESSAGE);
  /* Truncated bytes: nothing read past the end (ASan), message. */
  const unsigned char trunc[] = {0x82, 0xa4, 'k', 'i', 'n', 'd', 0xa7, 'h', 'i'};
  assert_int_equal(contract_request_peek_kind(trunc, sizeof trunc), CONTRACT_KIND_MESSAGE);
  assert_int_equal(contract_request_peek_kind(NULL, 0), CONTRACT_KIND_MESSAGE);
}

static void assistant_and_content_are_required_only_for_messages(void **state) {
  (void)state;
  expect_reject("{" HEAD ",\"content\":\"x\"}", AW_EINVAL, "missing_field", "missing field assistant");
  expect_reject("{" HEAD ",\"kind\":\"message\",\"assistant\":\"a\"}", AW_EINVAL, "missing_field",
                "missing field content");
  contract_request *r = expect_ok("{" HEAD ",\"kind\":\"reset\"}");
  assert_null(r->assistant);
  assert_null(r->parts);
  assert_int_equal(r->nparts, 0);
  contract_request_free(r);
  r = expect_ok("{" HEAD ",\"kind\":\"delete\",\"assistant\":\"support\"}");
  assert_string_equal(r->assistant, "support");
  contract_request_free(r);
  expect_reject("{" HEAD ",\"kind\":\"delete\",\"assistant\":7}", AW_EINVAL, "invalid_field",
                "field assistant must be a string");
}

/* A key of another kind does something only there: refused, naming the
 * key and the kind.  nil counts as absent, as everywhere. */
static void keys_of_another_kind_are_rejected_naming_key_and_kind(void **state) {
  (void)state;
  expect_reject("{" HEAD ",\"kind\":\"history\",\"content\":\"x\"}", AW_EINVAL, "invalid_field",
                "content is not allowed with kind history");
  expect_reject("{" HEAD ",\"assistant\":\"a\",\"content\":\"x\",\"limit\":5}", AW_EINVAL, "invalid_field",
                "limit is not allowed with kind message");
  expect_reject("{" HEAD ",\"assistant\":\"a\",\"content\":\"x\",\"target_event_id\":\"e0\"}", AW_EINVAL,
                "invalid_field", "target_event_id is not allowed with kind message");
  expect_reject("{" HEAD ",\"kind\":\"reset\",\"messages\":[]}", AW_EINVAL, "invalid_field",
                "messages is not allowed with kind reset");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"order\":\"asc\"}",
                AW_EINVAL, "invalid_field", "order is not allowed with kind append");
  expect_reject("{" HEAD ",\"kind\":\"delete\",\"stream\":false}", AW_EINVAL, "invalid_field",
                "stream is not allowed with kind delete");
  expect_reject("{" HEAD ",\"kind\":\"cancel\",\"instructions\":\"x\"}", AW_EINVAL, "invalid_field",
                "instructions is not allowed with kind cancel");
  expect_reject("{" HEAD ",\"kind\":\"history\",\"additional_instructions\":\"x\"}", AW_EINVAL, "invalid_field",
                "additional_instructions is not allowed with kind history");
  expect_reject("{" HEAD ",\"kind\":\"cancel\",\"after\":\"m\"}", AW_EINVAL, "invalid_field",
                "after is not allowed with kind cancel");
  expect_reject("{" HEAD ",\"kind\":\"history\",\"before\":\"m\",\"target_event_id\":\"e0\"}", AW_EINVAL,
                "invalid_field", "target_event_id is not allowed with kind history");
  /* nil: absent, accepted. */
  expect_kind("{" HEAD ",\"kind\":\"history\",\"content\":null,\"stream\":null,\"messages\":null}",
              CONTRACT_KIND_HISTORY);
  /* Unknown keys stay ignored, for every kind. */
  expect_kind("{" HEAD ",\"kind\":\"reset\",\"sent_at\":5,\"future\":{\"x\":1}}", CONTRACT_KIND_RESET);
}

/* ---- history ---------------------------------------------------------------- */

static void history_decodes_with_its_defaults(void **state) {
  (void)state;
  contract_request *r = expect_ok("{" HEAD ",\"kind\":\"history\",\"metadata\":{\"tenant\":\"t1\"}}");
  assert_int_equal(r->kind, CONTRACT_KIND_HISTORY);
  assert_int_equal(r->limit, CONTRACT_HISTORY_LIMIT_DEFAULT);
  assert_int_equal(r->limit, 20);
  assert_null(r->after);
  assert_null(r->before);
  assert_int_equal(r->order_asc, 0);
  assert_int_equal(r->nmetadata, 1);
  assert_string_equal(r->metadata[0].value, "t1");
  contract_request_free(r);
}

static void history_decodes_every_field(void **state) {
  (void)state;
  contract_request *r =
      expect_ok("{" HEAD ",\"kind\":\"history\",\"limit\":100,\"after\":\"msg_abc\",\"order\":\"asc\"}");
  assert_int_equal(r->limit, 100);
  assert_string_equal(r->after, "msg_abc");
  assert_null(r->before);
  assert_int_equal(r->order_asc, 1);
  contract_request_free(r);
  r = expect_ok("{" HEAD ",\"kind\":\"history\",\"limit\":1,\"before\":\"e7/2\",\"order\":\"desc\"}");
  assert_int_equal(r->limit, 1);
  assert_null(r->after);
  assert_string_equal(r->before, "e7/2");
  assert_int_equal(r->order_asc, 0);
  contract_request_free(r);
}

static void history_rejects_each_bad_field_by_name(void **state) {
  (void)state;
  static const char *const bad_limits[] = {"0", "101", "-1", "4294967297"};
  for (size_t i = 0; i < sizeof bad_limits / sizeof bad_limits[0]; i++) {
    char json[128];
    snprintf(json, sizeof json, "{" HEAD ",\"kind\":\"history\",\"limit\":%s}", bad_limits[i]);
    expect_reject(json, AW_EINVAL, "invalid_field", "limit: must be 1..100");
  }
  expect_reject("{" HEAD ",\"kind\":\"history\",\"limit\":\"5\"}", AW_EINVAL, "invalid_field",
                "limit: must be an integer 1..100");
  expect_reject("{" HEAD ",\"kind\":\"history\",\"limit\":2.5}", AW_EINVAL, "invalid_field",
                "limit: must be an integer 1..100");
  expect_reject("{" HEAD ",\"kind\":\"history\",\"after\":\"a\",\"before\":\"b\"}", AW_EINVAL, "invalid_field",
                "after and before are exclusive");
  expect_reject("{" HEAD ",\"kind\":\"history\",\"order\":\"up\"}", AW_EINVAL, "invalid_field",
                "order: must be asc or desc");
  expect_reject("{" HEAD ",\"kind\":\"history\",\"order\":\"ascending\"}", AW_EINVAL, "invalid_field",
                "order: must be asc or desc");
  expect_reject("{" HEAD ",\"kind\":\"history\",\"order\":1}", AW_EINVAL, "invalid_field",
                "order: must be asc or desc");
  expect_id_field_checked("history", "after", 256);
  expect_id_field_checked("history", "before", 256);
}

/* ---- append ----------------------------------------------------------------- */

static void append_decodes_its_messages_in_order(void **state) {
  (void)state;
  contract_request *r = expect_ok(
      "{" HEAD ",\"kind\":\"append\",\"messages\":["
      "{\"role\":\"user\",\"content\":\"Hi\"},"
      "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Hel\"},{\"type\":\"text\",\"text\":\"lo\"}],"
      "\"future\":1}]}");
  assert_int_equal(r->kind, CONTRACT_KIND_APPEND);
  assert_int_equal(r->nmessages, 2);
  assert_string_equal(r->messages[0].role, "user");
  assert_int_equal(r->messages[0].nparts, 1);
  assert_int_equal(r->messages[0].parts[0].type, CONTRACT_PART_TEXT);
  assert_string_equal(r->messages[0].parts[0].text, "Hi");
  assert_int_equal(r->messages[0].parts[0].text_len, 2);
  assert_string_equal(r->messages[1].role, "assistant");
  assert_int_equal(r->messages[1].nparts, 2);
  assert_string_equal(r->messages[1].parts[0].text, "Hel");
  assert_string_equal(r->messages[1].parts[1].text, "lo");
  assert_int_equal(r->nparts, 0); /* a message's content: none */
  /* One allocation holds it all (one free; LeakSanitizer checks the rest). */
  const char *lo = (const char *)r, *hi = lo + malloc_usable_size(r);
#define INSIDE(p) assert_true((const char *)(p) >= lo && (const char *)(p) < hi)
  INSIDE(r->messages);
  INSIDE(&r->messages[1]);
  INSIDE(r->messages[0].parts);
  INSIDE(r->messages[1].parts[1].text);
#undef INSIDE
  contract_request_free(r);
  /* The upper bound is allowed. */
  char json[2048];
  append_of(CONTRACT_APPEND_MAX_MESSAGES, json, sizeof json);
  r = expect_ok(json);
  assert_int_equal(r->nmessages, CONTRACT_APPEND_MAX_MESSAGES);
  assert_string_equal(r->messages[15].parts[0].text, "m15");
  contract_request_free(r);
}

static void append_rejects_each_bad_message_by_name(void **state) {
  (void)state;
  expect_reject("{" HEAD ",\"kind\":\"append\"}", AW_EINVAL, "missing_field", "missing field messages");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[]}", AW_EINVAL, "invalid_field",
                "messages: must be an array of 1..16 messages");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":{\"role\":\"user\"}}", AW_EINVAL, "invalid_field",
                "messages: must be an array of 1..16 messages");
  char json[2048];
  append_of(CONTRACT_APPEND_MAX_MESSAGES + 1, json, sizeof json);
  expect_reject(json, AW_EINVAL, "invalid_field", "messages: must be an array of 1..16 messages");

#define M_OK "{\"role\":\"user\",\"content\":\"ok\"}"
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[" M_OK ",\"hi\"]}", AW_EINVAL, "invalid_field",
                "messages[1]: must be a map");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[" M_OK ",{\"content\":\"x\"}]}", AW_EINVAL,
                "missing_field", "missing field messages[1].role");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[" M_OK "," M_OK ",{\"role\":\"system\",\"content\":\"x\"}]}",
                AW_EINVAL, "invalid_field", "messages[2].role: must be user or assistant");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
                AW_EINVAL,
                "invalid_field", "messages[0].role: must be user or assistant");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":1,\"content\":\"x\"}]}", AW_EINVAL,
                "invalid_field", "messages[0].role: must be user or assistant");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"role\":\"user\",\"content\":\"x\"}]}",
                AW_EINVAL, "invalid_field", "duplicate key in messages[0]");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\"}]}", AW_EINVAL, "missing_field",
                "missing field messages[0].content");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}", AW_EINVAL,
                "invalid_field", "field messages[0].content must not be empty");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}", AW_EINVAL,
                "invalid_field", "messages[0].content: must not be empty");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":3}]}", AW_EINVAL,
                "invalid_field", "messages[0].content: must be a string or an array of text parts");
  /* Non-text parts: invalid_field, naming the part. */
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[" M_OK ",{\"role\":\"user\",\"content\":["
                "{\"type\":\"text\",\"text\":\"see\"},{\"type\":\"image_url\",\"url\":\"https://x\"}]}]}",
                AW_EINVAL, "invalid_field", "messages[1].content[1].type: only text parts can be appended");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":["
                "{\"type\":\"file\",\"file_id\":\"file-1\"}]}]}",
                AW_EINVAL, "invalid_field", "messages[0].content[0].type: only text parts can be appended");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":["
                "{\"type\":\"text\"}]}]}",
                AW_EINVAL, "missing_field", "missing field messages[0].content[0].text");
  expect_reject("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":["
                "{\"type\":\"video\"}]}]}",
                AW_EINVAL, "invalid_field", "field messages[0].content[0].type must be");
#undef M_OK
}

/* The configured limits bound appended messages as they bound a message's
 * content: event_too_large, naming the field. */
static void append_respects_the_configured_limits(void **state) {
  (void)state;
  contract_limits lim;
  contract_limits_default(&lim);
  lim.max_text_bytes = 4;
  lim.max_parts = 2;
  expect_reject_lim("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":\"12345\"}]}",
                    &lim,
                    AW_ETOOBIG, "event_too_large", "field messages[0].content is 5 bytes, limit 4");
  expect_reject_lim("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":["
                    "{\"type\":\"text\",\"text\":\"12345\"}]}]}",
                    &lim, AW_ETOOBIG, "event_too_large", "field messages[0].content[0].text is 5 bytes, limit 4");
  expect_reject_lim("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":["
                    "{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"},"
                    "{\"type\":\"text\",\"text\":\"c\"}]}]}",
                    &lim, AW_ETOOBIG, "event_too_large", "messages[0].content: has 3 parts, limit 2");
  contract_request *r =
      expect_ok_lim("{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":\"1234\"}]}",
                    &lim);
  assert_int_equal(r->messages[0].parts[0].text_len, 4);
  contract_request_free(r);
}

/* ---- reset, delete, cancel -------------------------------------------------- */

static void reset_and_delete_decode_without_fields(void **state) {
  (void)state;
  contract_request *r = expect_ok("{" HEAD ",\"kind\":\"reset\"}");
  assert_int_equal(r->kind, CONTRACT_KIND_RESET);
  assert_int_equal(r->limit, 0);
  assert_null(r->messages);
  assert_null(r->target_event_id);
  assert_string_equal(r->event_id, "e1");
  assert_string_equal(r->conversation_id, "c1");
  contract_request_free(r);
  r = expect_ok("{" HEAD ",\"kind\":\"delete\",\"metadata\":{\"reason\":\"erasure\"}}");
  assert_int_equal(r->kind, CONTRACT_KIND_DELETE);
  assert_int_equal(r->nmetadata, 1);
  contract_request_free(r);
  /* With worker.key_rule route_by_key the Kafka key names the conversation. */
  contract_limits lim;
  contract_limits_default(&lim);
  lim.conversation_id_optional = 1;
  r = expect_ok_lim("{\"v\":1,\"event_id\":\"e1\",\"kind\":\"delete\"}", &lim);
  assert_null(r->conversation_id);
  contract_request_free(r);
}

static void cancel_decodes_its_optional_target(void **state) {
  (void)state;
  contract_request *r = expect_ok("{" HEAD ",\"kind\":\"cancel\"}");
  assert_int_equal(r->kind, CONTRACT_KIND_CANCEL);
  assert_null(r->target_event_id);
  contract_request_free(r);
  r = expect_ok("{" HEAD ",\"kind\":\"cancel\",\"target_event_id\":\"evt-7\"}");
  assert_string_equal(r->target_event_id, "evt-7");
  contract_request_free(r);
  expect_id_field_checked("cancel", "target_event_id", 128);
}

/* ---- encoding ---------------------------------------------------------------- */

/* decode -> encode -> decode gives the same request, for every kind, and
 * the encoded map carries `kind` and nothing of another kind. */
static void every_kind_round_trips_through_the_encoder(void **state) {
  (void)state;
  static const struct {
    const char *json, *kind;
    int nkeys; /* keys of the encoded map */
  } cases[] = {
      {"{" HEAD ",\"kind\":\"history\"}", "history", 6},
      {"{" HEAD ",\"kind\":\"history\",\"assistant\":\"a\",\"limit\":7,\"before\":\"msg_9\",\"order\":\"asc\","
       "\"metadata\":{\"k\":\"v\"}}",
       "history", 9},
      {"{" HEAD ",\"kind\":\"history\",\"after\":\"e/1\"}", "history", 7},
      {"{" HEAD ",\"kind\":\"append\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"},"
       "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}]}",
       "append", 5},
      {"{" HEAD ",\"kind\":\"reset\"}", "reset", 4},
      {"{" HEAD ",\"kind\":\"delete\",\"assistant\":\"a\"}", "delete", 5},
      {"{" HEAD ",\"kind\":\"cancel\"}", "cancel", 4},
      {"{" HEAD ",\"kind\":\"cancel\",\"target_event_id\":\"e0\"}", "cancel", 5},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    contract_request *r = expect_ok(cases[i].json);
    buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(contract_request_encode(r, &b), AW_OK);
    cJSON *j = json_view(&b);
    assert_string_equal(jstr(j, "kind"), cases[i].kind);
    if (cJSON_GetArraySize(j) != cases[i].nkeys)
      fail_msg("case %zu: %d keys, want %d", i, cJSON_GetArraySize(j), cases[i].nkeys);
    assert_null(jget(j, "content"));
    assert_null(jget(j, "stream"));
    cJSON_Delete(j);
    decoded d;
    memset(&d, 0, sizeof d);
    d.rc = contract_request_decode(b.data, b.len, NULL, &d.r, &d.code, d.ev, sizeof d.ev, d.conv, sizeof d.conv,
                                   d.err, sizeof d.err);
    if (d.rc) fail_msg("case %zu: re-decode failed: %s", i, d.err);
    assert_requests_equal(r, d.r);
    contract_request_free(d.r);
    buf_free(&b);
    contract_request_free(r);
  }
}

static void request_encode_refuses_invalid_kind_fields(void **state) {
  (void)state;
  contract_part text = {.type = CONTRACT_PART_TEXT, .text = "x", .text_len = 1};
  contract_part image = {.type = CONTRACT_PART_IMAGE_URL, .text = "https://x", .text_len = 9};
  contract_in_message ok_msg = {.role = "user", .parts = &text, .nparts = 1};
  contract_in_message system = {.role = "system", .parts = &text, .nparts = 1};
  contract_in_message no_parts = {.role = "user", .parts = NULL, .nparts = 0};
  contract_in_message with_image = {.role = "user", .parts = &image, .nparts = 1};
  contract_in_message many[CONTRACT_APPEND_MAX_MESSAGES + 1];
  for (size_t i = 0; i < sizeof many / sizeof many[0]; i++) many[i] = ok_msg;
  const contract_request bad[] = {
      {.kind = (contract_kind)CONTRACT_KIND_COUNT, .event_id = "e", .conversation_id = "c"},
      {.kind = CONTRACT_KIND_HISTORY, .event_id = "e", .conversation_id = "c", .limit = 101},
      {.kind = CONTRACT_KIND_HISTORY, .event_id = "e", .conversation_id = "c", .limit = -1},
      {.kind = CONTRACT_KIND_HISTORY, .event_id = "e", .conversation_id = "c", .after = "a", .before = "b"},
      {.kind = CONTRACT_KIND_APPEND, .event_id = "e", .conversation_id = "c"},
      {.kind = CONTRACT_KIND_APPEND, .event_id = "e", .conversation_id = "c", .messages = &system, .nmessages = 1},
      {.kind = CONTRACT_KIND_APPEND, .event_id = "e", .conversation_id = "c", .messages = &no_parts, .nmessages = 1},
      {.kind = CONTRACT_KIND_APPEND, .event_id = "e", .conversation_id = "c", .messages = &with_image, .nmessages = 1},
      {.kind = CONTRACT_KIND_APPEND, .event_id = "e", .conversation_id = "c", .messages = many,
       .nmessages = CONTRACT_APPEND_MAX_MESSAGES + 1},
      {.kind = CONTRACT_KIND_RESET, .event_id = NULL, .conversation_id = "c"},
  };
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(buf_appends(&b, "x"), AW_OK);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (contract_request_encode(&bad[i], &b) != AW_EINVAL) fail_msg("case %zu was encoded", i);
    assert_int_equal(b.len, 1); /* untouched */
  }
  /* A message still needs its assistant and content. */
  contract_request msg = {.event_id = "e", .conversation_id = "c", .parts = &text, .nparts = 1};
  assert_int_equal(contract_request_encode(&msg, &b), AW_EINVAL);
  msg.assistant = "a";
  assert_int_equal(contract_request_encode(&msg, &b), AW_OK);
  buf_free(&b);
}

/* ---- response ---------------------------------------------------------------- */

static void history_response_writes_kind_page_and_message_roles(void **state) {
  (void)state;
  contract_out_part part = {"text", "Hi", 2, NULL, 0};
  contract_out_message msgs[] = {
      {.id = "msg_2", .role = "assistant", .created_at = 1764000002, .parts = &part, .nparts = 1},
      {.id = "msg_1", .role = "user", .created_at = 1764000000, .parts = &part, .nparts = 1},
  };
  contract_response r = {.event_id = "e", .conversation_id = "c", .status = "completed", .messages = msgs,
                         .nmessages = 2, .kind = CONTRACT_KIND_HISTORY, .has_more = 1, .first_id = "msg_2",
                         .last_id = "msg_1"};
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  cJSON *j = json_view(&b);
  assert_string_equal(jstr(j, "kind"), "history");
  const cJSON *page = jget(j, "page");
  assert_true(cJSON_IsObject(page));
  assert_int_equal(cJSON_GetArraySize(page), 3);
  assert_true(cJSON_IsTrue(jget(page, "has_more")));
  assert_string_equal(jstr(page, "first_id"), "msg_2");
  assert_string_equal(jstr(page, "last_id"), "msg_1");
  const cJSON *m0 = cJSON_GetArrayItem(jget(j, "messages"), 0), *m1 = cJSON_GetArrayItem(jget(j, "messages"),
                                                                                         1);
  assert_string_equal(jstr(m0, "role"), "assistant");
  assert_int_equal((int64_t)jget(m0, "created_at")->valuedouble, 1764000002);
  assert_string_equal(jstr(m1, "role"), "user");
  assert_int_equal((int64_t)jget(m1, "created_at")->valuedouble, 1764000000);
  assert_null(jget(j, "cancelled_event_id"));
  cJSON_Delete(j);

  /* An empty page: has_more false, both ids nil. */
  r.messages = NULL;
  r.nmessages = 0;
  r.has_more = 0;
  r.first_id = r.last_id = NULL;
  buf_reset(&b);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  j = json_view(&b);
  page = jget(j, "page");
  assert_true(cJSON_IsFalse(jget(page, "has_more")));
  assert_true(cJSON_IsNull(jget(page, "first_id")));
  assert_true(cJSON_IsNull(jget(page, "last_id")));
  cJSON_Delete(j);
  buf_free(&b);
}

static void cancel_response_names_the_cancelled_event_or_nil(void **state) {
  (void)state;
  contract_response r = {.event_id = "e", .conversation_id = "c", .status = "completed",
                         .kind = CONTRACT_KIND_CANCEL, .cancelled_event_id = "evt-7"};
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  cJSON *j = json_view(&b);
  assert_string_equal(jstr(j, "kind"), "cancel");
  assert_string_equal(jstr(j, "cancelled_event_id"), "evt-7");
  assert_null(jget(j, "page"));
  cJSON_Delete(j);
  r.cancelled_event_id = NULL; /* no turn was active */
  buf_reset(&b);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  j = json_view(&b);
  assert_true(cJSON_IsNull(jget(j, "cancelled_event_id")));
  cJSON_Delete(j);
  /* reset / delete / append: the kind only. */
  static const contract_kind others[] = {CONTRACT_KIND_RESET, CONTRACT_KIND_DELETE, CONTRACT_KIND_APPEND};
  for (size_t i = 0; i < 3; i++) {
    contract_response o = {.event_id = "e", .conversation_id = "c", .status = "completed", .kind = others[i],
                           .backend_kind = "responses", .backend_conversation = "conv_1"};
    buf_reset(&b);
    assert_int_equal(contract_response_encode(&o, &b), AW_OK);
    j = json_view(&b);
    assert_string_equal(jstr(j, "kind"), contract_kind_name(others[i]));
    assert_null(jget(j, "page"));
    assert_null(jget(j, "cancelled_event_id"));
    assert_int_equal(cJSON_GetArraySize(j), 12); /* the 10 of v1, backend, kind */
    cJSON_Delete(j);
  }
  buf_free(&b);
}

/* A turn's answer is written exactly as before kinds: no kind, page,
 * cancelled_event_id, role or created_at. */
static void message_response_has_none_of_the_new_keys(void **state) {
  (void)state;
  contract_out_part part = {"text", "Hi", 2, NULL, 0};
  contract_out_message msg = {.id = "msg_1", .parts = &part, .nparts = 1};
  contract_response r = {.event_id = "e", .conversation_id = "c", .status = "completed", .messages = &msg,
                         .nmessages = 1};
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  cJSON *j = json_view(&b);
  assert_int_equal(cJSON_GetArraySize(j), 10);
  assert_null(jget(j, "kind"));
  assert_null(jget(j, "page"));
  assert_null(jget(j, "cancelled_event_id"));
  const cJSON *m = cJSON_GetArrayItem(jget(j, "messages"), 0);
  assert_int_equal(cJSON_GetArraySize(m), 2);
  assert_null(jget(m, "role"));
  assert_null(jget(m, "created_at"));
  cJSON_Delete(j);
  buf_free(&b);
}

/* Keys set where the kind does not write them would be dropped silently:
 * refused, the output untouched. */
static void response_encode_refuses_kind_keys_of_another_kind(void **state) {
  (void)state;
  contract_out_part part = {"text", "Hi", 2, NULL, 0};
  contract_out_message system = {.id = "m", .role = "system", .parts = &part, .nparts = 1};
  const contract_response bad[] = {
      {.event_id = "e", .conversation_id = "c", .status = "completed", .first_id = "m"},
      {.event_id = "e", .conversation_id = "c", .status = "completed", .has_more = 1},
      {.event_id = "e", .conversation_id = "c", .status = "completed", .kind = CONTRACT_KIND_CANCEL, .last_id = "m"},
      {.event_id = "e", .conversation_id = "c", .status = "completed", .cancelled_event_id = "x"},
      {.event_id = "e", .conversation_id = "c", .status = "completed", .kind = CONTRACT_KIND_HISTORY,
       .cancelled_event_id = "x"},
      {.event_id = "e", .conversation_id = "c", .status = "completed", .kind = (contract_kind)CONTRACT_KIND_COUNT},
      {.event_id = "e", .conversation_id = "c", .status = "completed", .kind = CONTRACT_KIND_HISTORY,
       .messages = &system, .nmessages = 1},
  };
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(buf_appends(&b, "x"), AW_OK);
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (contract_response_encode(&bad[i], &b) != AW_EINVAL) fail_msg("case %zu was encoded", i);
    assert_int_equal(b.len, 1);
  }
  buf_free(&b);
}

/* ---- examples ---------------------------------------------------------------- */


/* The request examples decode as their kind and re-encode to their shape;
 * the response examples have the shape the encoder writes. */
static void kind_examples_agree_with_the_codec(void **state) {
  (void)state;
  static const struct {
    const char *file;
    contract_kind kind;
  } reqs[] = {
      {"request-history.json", CONTRACT_KIND_HISTORY}, {"request-append.json", CONTRACT_KIND_APPEND},
      {"request-reset.json", CONTRACT_KIND_RESET},     {"request-delete.json", CONTRACT_KIND_DELETE},
      {"request-cancel.json", CONTRACT_KIND_CANCEL},
  };
  buf b;
  buf_init(&b, 1 << 16);
  for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
    char rel[128];
    snprintf(rel, sizeof rel, "schemas/examples/%s", reqs[i].file);
    char *text = mpfx_source_file(rel);
    decoded d;
    decode_json(text, NULL, &d);
    if (d.rc) fail_msg("%s does not decode: %s", rel, d.err);
    assert_int_equal(d.r->kind, reqs[i].kind);
    buf_reset(&b);
    assert_int_equal(contract_request_encode(d.r, &b), AW_OK);
    cJSON *ex = cJSON_Parse(text), *got = json_view(&b);
    /* The encoder writes history's order even when left out; the example
     * writes it, so the shapes compare. */
    mpfx_same_shape(ex, got, reqs[i].file);
    cJSON_Delete(ex);
    cJSON_Delete(got);
    contract_request_free(d.r);
    free(text);
  }

  contract_annotation ann = {.type = "file_citation", .text = "[1]", .file_id = "file-x", .start_index = 1, .end_index = 4};
  contract_out_part part = {"text", "answer", 6, &ann, 1};
  contract_out_message page[] = {{.id = "msg_2", .role = "assistant", .created_at = 2, .parts = &part, .nparts = 1},
                                 {.id = "msg_1", .role = "user", .created_at = 1, .parts = &part, .nparts = 1}};
  contract_out_message added[] = {{.id = "msg_3", .role = "user", .parts = &part, .nparts = 1}};
  const struct {
    const char *file;
    contract_response r;
  } rsps[] = {
      {"response-history.json",
       {.event_id = "e", .conversation_id = "c", .status = "completed", .messages = page, .nmessages = 2,
        .timings = {1, 0, 2}, .backend_kind = "responses", .backend_conversation = "conv_1",
        .kind = CONTRACT_KIND_HISTORY, .has_more = 1, .first_id = "msg_2", .last_id = "msg_1"}},
      {"response-append.json",
       {.event_id = "e", .conversation_id = "c", .status = "completed", .messages = added, .nmessages = 1,
        .timings = {1, 0, 2}, .backend_kind = "responses", .backend_conversation = "conv_1",
        .kind = CONTRACT_KIND_APPEND}},
      {"response-cancel.json",
       {.event_id = "e", .conversation_id = "c", .status = "completed", .timings = {1, 0, 2},
        .backend_kind = "responses", .backend_conversation = "conv_1", .kind = CONTRACT_KIND_CANCEL,
        .cancelled_event_id = "evt-7"}},
  };
  for (size_t i = 0; i < sizeof rsps / sizeof rsps[0]; i++) {
    char rel[128];
    snprintf(rel, sizeof rel, "schemas/examples/%s", rsps[i].file);
    char *text = mpfx_source_file(rel);
    cJSON *ex = cJSON_Parse(text);
    if (!ex) fail_msg("%s does not parse", rel);
    buf_reset(&b);
    assert_int_equal(contract_response_encode(&rsps[i].r, &b), AW_OK);
    cJSON *got = json_view(&b);
    /* backend.turn is nil in both; null matches null. */
    mpfx_same_shape(ex, got, rsps[i].file);
    cJSON_Delete(got);
    cJSON_Delete(ex);
    free(text);
  }
  buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(kind_names_are_the_wire_names),
      cmocka_unit_test(a_v1_request_without_kind_is_a_message),
      cmocka_unit_test(an_unknown_or_mistyped_kind_is_rejected),
      cmocka_unit_test(a_request_that_does_not_decode_still_names_its_kind),
      cmocka_unit_test(assistant_and_content_are_required_only_for_messages),
      cmocka_unit_test(keys_of_another_kind_are_rejected_naming_key_and_kind),
      cmocka_unit_test(history_decodes_with_its_defaults),
      cmocka_unit_test(history_decodes_every_field),
      cmocka_unit_test(history_rejects_each_bad_field_by_name),
      cmocka_unit_test(append_decodes_its_messages_in_order),
      cmocka_unit_test(append_rejects_each_bad_message_by_name),
      cmocka_unit_test(append_respects_the_configured_limits),
      cmocka_unit_test(reset_and_delete_decode_without_fields),
      cmocka_unit_test(cancel_decodes_its_optional_target),
      cmocka_unit_test(every_kind_round_trips_through_the_encoder),
      cmocka_unit_test(request_encode_refuses_invalid_kind_fields),
      cmocka_unit_test(history_response_writes_kind_page_and_message_roles),
      cmocka_unit_test(cancel_response_names_the_cancelled_event_or_nil),
      cmocka_unit_test(message_response_has_none_of_the_new_keys),
      cmocka_unit_test(response_encode_refuses_kind_keys_of_another_kind),
      cmocka_unit_test(kind_examples_agree_with_the_codec),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

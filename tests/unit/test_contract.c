/* test_contract.c -- the Kafka message contract (common/contract/contract.c).
 *
 * Needs: nothing (no broker, no network).  Reads the schemas/examples JSON files from
 * the source tree (found from __FILE__, or $AW_SOURCE_DIR).
 *
 * Most request cases are written as JSON and converted to msgpack by
 * mpfx_from_json() (mp_fixture.h) so that each case reads as the event a
 * producer would send;
 * what JSON cannot say (invalid bytes, NUL, truncation, bin, ext) is packed
 * by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <malloc.h>
#include <math.h>
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

static void decode_lim(const void *p, size_t n, const contract_limits *lim, decoded *d) {
  memset(d, 0, sizeof *d);
  strcpy(d->ev, "garbage");
  strcpy(d->conv, "garbage");
  d->rc = contract_request_decode(p, n, lim, &d->r, &d->code, d->ev, sizeof d->ev, d->conv,
                                  sizeof d->conv, d->err, sizeof d->err);
}

/* Decode JSON-described bytes; the caller frees d->r. */
static void decode_json(const char *json, const contract_limits *lim, decoded *d) {
  msgpack_sbuffer sb;
  mpfx_from_json(json, &sb);
  decode_lim(sb.data, sb.size, lim, d);
  msgpack_sbuffer_destroy(&sb);
}

static void check_reject(const decoded *d, int rc, const char *code, const char *errpart,
                         const char *ev, const char *conv) {
  if (d->rc != rc || !d->code || strcmp(d->code, code) || !strstr(d->err, errpart) ||
      strcmp(d->ev, ev) || strcmp(d->conv, conv))
    fail_msg("want rc=%d %s '%s' ids '%s'/'%s'; got rc=%d %s '%s' ids '%s'/'%s'", rc, code, errpart,
             ev, conv, d->rc, d->code ? d->code : "(null)", d->err, d->ev, d->conv);
  assert_null(d->r);
}

static void expect_reject_lim(const char *json, const contract_limits *lim, int rc, const char *code,
                              const char *errpart, const char *ev, const char *conv) {
  decoded d;
  decode_json(json, lim, &d);
  check_reject(&d, rc, code, errpart, ev, conv);
}

static void expect_reject(const char *json, int rc, const char *code, const char *errpart,
                          const char *ev, const char *conv) {
  expect_reject_lim(json, NULL, rc, code, errpart, ev, conv);
}

static void expect_reject_bytes(const void *p, size_t n, int rc, const char *code,
                                const char *errpart, const char *ev, const char *conv) {
  decoded d;
  decode_lim(p, n, NULL, &d);
  check_reject(&d, rc, code, errpart, ev, conv);
}

static contract_request *expect_ok_lim(const char *json, const contract_limits *lim) {
  decoded d;
  decode_json(json, lim, &d);
  if (d.rc) fail_msg("decode failed: %d %s %s (%s)", d.rc, d.code, d.err, json);
  assert_non_null(d.r);
  return d.r;
}

static contract_request *expect_ok(const char *json) { return expect_ok_lim(json, NULL); }

/* A string of n copies of c (static rotating storage, enough for a test). */
static const char *rep(char c, size_t n) {
  static char bufs[4][600000];
  static int k;
  char *b = bufs[k++ % 4];
  assert_true(n < sizeof bufs[0]);
  memset(b, c, n);
  b[n] = '\0';
  return b;
}

/* printf into a malloc'd string the test frees. */
static char *fmt(const char *f, ...) AW_PRINTF(1, 2);
static char *fmt(const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  char *s = NULL;
  assert_true(vasprintf(&s, f, ap) >= 0);
  va_end(ap);
  return s;
}

#define BASE_KEYS "\"v\":1,\"event_id\":\"e1\",\"conversation_id\":\"c1\",\"assistant\":\"a\""

/* The JSON view of a msgpack buffer, parsed.  Caller deletes. */
static cJSON *json_view(const buf *b) {
  buf j;
  buf_init(&j, 1 << 20);
  assert_int_equal(contract_to_json(b->data, b->len, &j), AW_OK);
  cJSON *c = cJSON_Parse(j.data);
  if (!c) fail_msg("JSON view does not parse: %s", j.data);
  buf_free(&j);
  return c;
}

static const char *jstr(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsString(v)) fail_msg("%s is not a string", k);
  return v->valuestring;
}

static double jnum(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(v)) fail_msg("%s is not a number", k);
  return v->valuedouble;
}

static int jnull(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!v) fail_msg("%s is missing", k);
  return cJSON_IsNull(v);
}

/* ---- request: accepted ------------------------------------------------------ */

static void request_roundtrip_keeps_every_field(void **state) {
  (void)state;
  contract_part part = {.type = CONTRACT_PART_TEXT, .text = "Where is my order? \xE2\x82\xAC", .text_len = 22};
  contract_kv md[] = {{"user_id", "u-42"}, {"channel", "web"}};
  contract_request in = {.v = 1, .event_id = "evt-1", .conversation_id = "conv-1",
                         .assistant = "support", .parts = &part, .nparts = 1, .metadata = md,
                         .nmetadata = 2, .instructions = "Be brief.",
                         .additional_instructions = "", .stream = 1};
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(contract_request_encode(&in, &b), AW_OK);
  decoded d;
  decode_lim(b.data, b.len, NULL, &d);
  assert_int_equal(d.rc, AW_OK);
  contract_request *r = d.r;
  assert_int_equal(r->v, 1);
  assert_string_equal(r->event_id, "evt-1");
  assert_string_equal(r->conversation_id, "conv-1");
  assert_string_equal(r->assistant, "support");
  assert_int_equal(r->nparts, 1);
  assert_int_equal(r->parts[0].type, CONTRACT_PART_TEXT);
  assert_int_equal(r->parts[0].text_len, 22);
  assert_memory_equal(r->parts[0].text, part.text, 22);
  assert_null(r->parts[0].detail);
  assert_int_equal(r->nmetadata, 2);
  assert_string_equal(r->metadata[0].key, "user_id");
  assert_string_equal(r->metadata[0].value, "u-42");
  assert_string_equal(r->metadata[1].key, "channel");
  assert_string_equal(r->metadata[1].value, "web");
  assert_string_equal(r->instructions, "Be brief.");
  assert_string_equal(r->additional_instructions, "");
  assert_int_equal(r->stream, 1);
  /* ids are also handed back on success */
  assert_string_equal(d.ev, "evt-1");
  assert_string_equal(d.conv, "conv-1");
  contract_request_free(r);
  buf_free(&b);
}

static void request_roundtrip_keeps_every_part_type(void **state) {
  (void)state;
  contract_part parts[] = {
      {.type = CONTRACT_PART_TEXT, .text = "look:", .text_len = 5},
      {.type = CONTRACT_PART_IMAGE_URL, .text = "https://example.com/a.png", .text_len = 25, .detail = "high"},
      {.type = CONTRACT_PART_IMAGE_FILE, .text = "file-img", .text_len = 8},
      {.type = CONTRACT_PART_FILE, .text = "file-doc", .text_len = 8},
  };
  contract_request in = {.event_id = "e", .conversation_id = "c", .assistant = "asst_x",
                         .parts = parts, .nparts = 4};
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(contract_request_encode(&in, &b), AW_OK);
  decoded d;
  decode_lim(b.data, b.len, NULL, &d);
  assert_int_equal(d.rc, AW_OK);
  contract_request *r = d.r;
  assert_int_equal(r->v, CONTRACT_VERSION); /* v == 0 encodes the current version */
  assert_int_equal(r->nparts, 4);
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(r->parts[i].type, parts[i].type);
    assert_int_equal(r->parts[i].text_len, parts[i].text_len);
    assert_string_equal(r->parts[i].text, parts[i].text);
  }
  assert_string_equal(r->parts[1].detail, "high");
  assert_null(r->parts[2].detail);
  assert_null(r->metadata);
  assert_int_equal(r->nmetadata, 0);
  assert_null(r->instructions);
  assert_null(r->additional_instructions);
  assert_int_equal(r->stream, 0);
  contract_request_free(r);
  buf_free(&b);
}

static void request_content_string_equals_one_text_part(void **state) {
  (void)state;
  contract_request *a = expect_ok("{" BASE_KEYS ",\"content\":\"Hello\"}");
  contract_request *b = expect_ok("{" BASE_KEYS ",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"}]}");
  assert_int_equal(a->nparts, 1);
  assert_int_equal(b->nparts, 1);
  assert_int_equal(a->parts[0].type, b->parts[0].type);
  assert_int_equal(a->parts[0].text_len, b->parts[0].text_len);
  assert_string_equal(a->parts[0].text, b->parts[0].text);
  contract_request_free(a);
  contract_request_free(b);
}

static void request_decode_is_one_allocation(void **state) {
  (void)state;
  contract_request *r = expect_ok(
      "{" BASE_KEYS ",\"content\":[{\"type\":\"text\",\"text\":\"one\"},"
      "{\"type\":\"image_url\",\"url\":\"https://x\",\"detail\":\"low\"}],"
      "\"metadata\":{\"k1\":\"v1\",\"k2\":\"v2\"},\"instructions\":\"i\","
      "\"additional_instructions\":\"ai\"}");
  const char *lo = (const char *)r, *hi = lo + malloc_usable_size(r);
#define INSIDE(p) assert_true((const char *)(p) >= lo && (const char *)(p) < hi)
  INSIDE(r->event_id);
  INSIDE(r->conversation_id);
  INSIDE(r->assistant);
  INSIDE(r->parts);
  INSIDE(&r->parts[1]);
  INSIDE(r->parts[0].text);
  INSIDE(r->parts[1].text);
  INSIDE(r->parts[1].detail);
  INSIDE(r->metadata);
  INSIDE(r->metadata[1].key);
  INSIDE(r->metadata[1].value);
  INSIDE(r->instructions);
  INSIDE(r->additional_instructions);
#undef INSIDE
  contract_request_free(r); /* one free; LeakSanitizer would report anything else */
  contract_request_free(NULL);
}

static void request_ignores_unknown_keys_and_nil_optionals(void **state) {
  (void)state;
  contract_request *r = expect_ok(
      "{" BASE_KEYS ",\"content\":[{\"type\":\"text\",\"text\":\"x\",\"future\":{\"a\":[1,2]}}],"
      "\"extra\":{\"nested\":[1,2.5,{\"b\":null}]},\"priority\":7,"
      "\"metadata\":null,\"instructions\":null,\"additional_instructions\":null,\"stream\":null}");
  assert_int_equal(r->nparts, 1);
  assert_null(r->metadata);
  assert_null(r->instructions);
  assert_null(r->additional_instructions);
  assert_int_equal(r->stream, 0);
  contract_request_free(r);

  /* A non-string key is an unknown key too. */
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 6);
  msgpack_pack_int(&pk, 5);
  msgpack_pack_true(&pk);
  const char *kv[] = {"v", NULL, "event_id", "e1", "conversation_id", "c1", "assistant", "a",
                      "content", "hi"};
  for (int i = 0; i < 10; i += 2) {
    msgpack_pack_str_with_body(&pk, kv[i], strlen(kv[i]));
    if (kv[i + 1]) msgpack_pack_str_with_body(&pk, kv[i + 1], strlen(kv[i + 1]));
    else msgpack_pack_int(&pk, 1);
  }
  decoded d;
  decode_lim(sb.data, sb.size, NULL, &d);
  assert_int_equal(d.rc, AW_OK);
  contract_request_free(d.r);
  msgpack_sbuffer_destroy(&sb);
}

static void request_reserved_part_types_are_decoded(void **state) {
  (void)state;
  contract_request *r = expect_ok(
      "{" BASE_KEYS ",\"content\":[{\"type\":\"image_url\",\"url\":\"https://x/y.png\"},"
      "{\"type\":\"image_file\",\"file_id\":\"file-1\",\"detail\":\"auto\"},"
      "{\"type\":\"file\",\"file_id\":\"file-2\",\"detail\":\"ignored for file\"}]}");
  assert_int_equal(r->nparts, 3);
  assert_int_equal(r->parts[0].type, CONTRACT_PART_IMAGE_URL);
  assert_null(r->parts[0].detail);
  assert_int_equal(r->parts[1].type, CONTRACT_PART_IMAGE_FILE);
  assert_string_equal(r->parts[1].detail, "auto");
  assert_int_equal(r->parts[2].type, CONTRACT_PART_FILE);
  assert_string_equal(r->parts[2].text, "file-2");
  assert_null(r->parts[2].detail);
  contract_request_free(r);
}

/* ---- request: rejected ------------------------------------------------------ */

static void request_rejects_bad_version(void **state) {
  (void)state;
  const char *rest = "\"event_id\":\"e1\",\"conversation_id\":\"c1\",\"assistant\":\"a\",\"content\":\"hi\"";
  char *j;
  j = fmt("{%s}", rest);
  expect_reject(j, AW_EINVAL, "missing_field", "field v", "e1", "c1");
  free(j);
  j = fmt("{\"v\":null,%s}", rest);
  expect_reject(j, AW_EINVAL, "missing_field", "field v", "e1", "c1");
  free(j);
  j = fmt("{\"v\":\"1\",%s}", rest);
  expect_reject(j, AW_EINVAL, "invalid_field", "field v", "e1", "c1");
  free(j);
  j = fmt("{\"v\":1.5,%s}", rest);
  expect_reject(j, AW_EINVAL, "invalid_field", "field v", "e1", "c1");
  free(j);
  j = fmt("{\"v\":2,%s}", rest);
  expect_reject(j, AW_EINVAL, "unsupported_version", "version 2", "e1", "c1");
  free(j);
  j = fmt("{\"v\":-1,%s}", rest);
  expect_reject(j, AW_EINVAL, "unsupported_version", "version -1", "e1", "c1");
  free(j);
  /* The version is judged first: a v2 event need not have v1's fields. */
  expect_reject("{\"v\":2,\"event_id\":\"e1\",\"conversation_id\":\"c1\",\"text\":\"hi\"}", AW_EINVAL,
                "unsupported_version", "version 2", "e1", "c1");
}

static void request_rejects_bad_ids(void **state) {
  (void)state;
  const char *tail = "\"assistant\":\"a\",\"content\":\"hi\"";
  char *j;
  j = fmt("{\"v\":1,\"conversation_id\":\"c1\",%s}", tail);
  expect_reject(j, AW_EINVAL, "missing_field", "event_id", "", "c1");
  free(j);
  j = fmt("{\"v\":1,\"event_id\":null,\"conversation_id\":\"c1\",%s}", tail);
  expect_reject(j, AW_EINVAL, "missing_field", "event_id", "", "c1");
  free(j);
  j = fmt("{\"v\":1,\"event_id\":\"\",\"conversation_id\":\"c1\",%s}", tail);
  expect_reject(j, AW_EINVAL, "invalid_field", "event_id must not be empty", "", "c1");
  free(j);
  j = fmt("{\"v\":1,\"event_id\":42,\"conversation_id\":\"c1\",%s}", tail);
  expect_reject(j, AW_EINVAL, "invalid_field", "event_id must be a string", "", "c1");
  free(j);
  j = fmt("{\"v\":1,\"event_id\":\"%s\",\"conversation_id\":\"c1\",%s}", rep('e', 129), tail);
  expect_reject(j, AW_EINVAL, "invalid_field", "event_id is 129 bytes", "", "c1");
  free(j);
  j = fmt("{\"v\":1,\"event_id\":\"e1\",%s}", tail);
  expect_reject(j, AW_EINVAL, "missing_field", "conversation_id", "e1", "");
  free(j);
  j = fmt("{\"v\":1,\"event_id\":\"e1\",\"conversation_id\":\"%s\",%s}", rep('c', 257), tail);
  expect_reject(j, AW_EINVAL, "invalid_field", "conversation_id is 257 bytes", "e1", "");
  free(j);
  j = fmt("{\"v\":1,\"event_id\":\"e1\",\"conversation_id\":[\"c1\"],%s}", tail);
  expect_reject(j, AW_EINVAL, "invalid_field", "conversation_id must be a string", "e1", "");
  free(j);
  /* Exactly at the bounds is fine. */
  j = fmt("{\"v\":1,\"event_id\":\"%s\",\"conversation_id\":\"%s\",%s}", rep('e', 128), rep('c', 256), tail);
  contract_request *r = expect_ok(j);
  assert_int_equal(strlen(r->event_id), 128);
  assert_int_equal(strlen(r->conversation_id), 256);
  contract_request_free(r);
  free(j);
  /* Duplicate key: refused; the first copy is used for correlation. */
  expect_reject("{" BASE_KEYS ",\"event_id\":\"e2\",\"content\":\"hi\"}", AW_EINVAL, "invalid_field",
                "duplicate key event_id", "e1", "c1");
}

static void request_rejects_bad_assistant(void **state) {
  (void)state;
  const char *head = "\"v\":1,\"event_id\":\"e1\",\"conversation_id\":\"c1\"";
  char *j;
  j = fmt("{%s,\"content\":\"hi\"}", head);
  expect_reject(j, AW_EINVAL, "missing_field", "assistant", "e1", "c1");
  free(j);
  j = fmt("{%s,\"assistant\":\"\",\"content\":\"hi\"}", head);
  expect_reject(j, AW_EINVAL, "invalid_field", "assistant must not be empty", "e1", "c1");
  free(j);
  j = fmt("{%s,\"assistant\":{},\"content\":\"hi\"}", head);
  expect_reject(j, AW_EINVAL, "invalid_field", "assistant must be a string", "e1", "c1");
  free(j);
  j = fmt("{%s,\"assistant\":\"%s\",\"content\":\"hi\"}", head, rep('a', 257));
  expect_reject(j, AW_EINVAL, "invalid_field", "assistant is 257 bytes", "e1", "c1");
  free(j);
}

static void request_rejects_bad_content(void **state) {
  (void)state;
  static const struct {
    const char *content, *code, *err;
  } cases[] = {
      {NULL, "missing_field", "content"},
      {"null", "missing_field", "content"},
      {"\"\"", "invalid_field", "content must not be empty"},
      {"[]", "invalid_field", "content must not be empty"},
      {"5", "invalid_field", "string or an array"},
      {"{\"type\":\"text\",\"text\":\"hi\"}", "invalid_field", "string or an array"},
      {"[5]", "invalid_field", "content[0] must be a map"},
      {"[{\"type\":\"text\",\"text\":\"a\"},\"b\"]", "invalid_field", "content[1] must be a map"},
      {"[{}]", "missing_field", "content[0].type"},
      {"[{\"type\":7}]", "invalid_field", "content[0].type must be a string"},
      {"[{\"type\":\"video\"}]", "invalid_field", "content[0].type must be"},
      {"[{\"type\":\"text\"}]", "missing_field", "content[0].text"},
      {"[{\"type\":\"text\",\"text\":\"\"}]", "invalid_field", "content[0].text must not be empty"},
      {"[{\"type\":\"text\",\"text\":[\"x\"]}]", "invalid_field", "content[0].text must be a string"},
      {"[{\"type\":\"text\",\"text\":\"a\",\"type\":\"text\"}]", "invalid_field", "duplicate key in content[0]"},
      {"[{\"type\":\"image_url\"}]", "missing_field", "content[0].url"},
      {"[{\"type\":\"image_url\",\"url\":\"u\",\"detail\":\"max\"}]", "invalid_field", "content[0].detail must be"},
      {"[{\"type\":\"image_url\",\"url\":\"u\",\"detail\":3}]", "invalid_field", "content[0].detail must be"},
      {"[{\"type\":\"image_file\",\"file_id\":\"\"}]", "invalid_field", "content[0].file_id must not be empty"},
      {"[{\"type\":\"file\"}]", "missing_field", "content[0].file_id"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *j = cases[i].content ? fmt("{" BASE_KEYS ",\"content\":%s}", cases[i].content)
                               : fmt("{" BASE_KEYS "}");
    expect_reject(j, AW_EINVAL, cases[i].code, cases[i].err, "e1", "c1");
    free(j);
  }
}

static void request_rejects_bad_metadata(void **state) {
  (void)state;
  char *j;
  j = fmt("{" BASE_KEYS ",\"content\":\"hi\",\"metadata\":[]}");
  expect_reject(j, AW_EINVAL, "invalid_field", "metadata must be a map", "e1", "c1");
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":\"hi\",\"metadata\":{\"k\":5}}");
  expect_reject(j, AW_EINVAL, "invalid_field", "metadata.k must be a string", "e1", "c1");
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":\"hi\",\"metadata\":{\"k\":null}}");
  expect_reject(j, AW_EINVAL, "invalid_field", "metadata.k must be a string", "e1", "c1");
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":\"hi\",\"metadata\":{\"\":\"v\"}}");
  expect_reject(j, AW_EINVAL, "invalid_field", "metadata key must not be empty", "e1", "c1");
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":\"hi\",\"metadata\":{\"%s\":\"v\"}}", rep('k', 65));
  expect_reject(j, AW_EINVAL, "invalid_field", "metadata key is 65 bytes", "e1", "c1");
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":\"hi\",\"metadata\":{\"k\":\"%s\"}}", rep('v', 513));
  expect_reject(j, AW_EINVAL, "invalid_field", "metadata.k is 513 bytes", "e1", "c1");
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":\"hi\",\"metadata\":{\"k\":\"1\",\"k\":\"2\"}}");
  expect_reject(j, AW_EINVAL, "invalid_field", "duplicate key in field metadata.k", "e1", "c1");
  free(j);

  /* 16 pairs with a 64-byte key and a 512-byte value pass; 17 pairs do not. */
  char pairs[40000] = "";
  size_t off = 0;
  for (int i = 0; i < 17; i++) {
    if (i == 16) {
      j = fmt("{" BASE_KEYS ",\"content\":\"hi\",\"metadata\":{%s}}", pairs);
      contract_request *r = expect_ok(j);
      assert_int_equal(r->nmetadata, 16);
      assert_int_equal(strlen(r->metadata[0].key), 64);
      assert_int_equal(strlen(r->metadata[0].value), 512);
      contract_request_free(r);
      free(j);
    }
    char key[80];
    snprintf(key, sizeof key, "%02d%s", i, rep('k', 62));
    off += (size_t)snprintf(pairs + off, sizeof pairs - off, "%s\"%s\":\"%s\"", i ? "," : "", key,
                            rep('v', 512));
  }
  j = fmt("{" BASE_KEYS ",\"content\":\"hi\",\"metadata\":{%s}}", pairs);
  expect_reject(j, AW_EINVAL, "invalid_field", "metadata has 17 pairs", "e1", "c1");
  free(j);
}

static void request_rejects_bad_optional_types(void **state) {
  (void)state;
  expect_reject("{" BASE_KEYS ",\"content\":\"hi\",\"instructions\":5}", AW_EINVAL, "invalid_field",
                "instructions must be a string", "e1", "c1");
  expect_reject("{" BASE_KEYS ",\"content\":\"hi\",\"additional_instructions\":true}", AW_EINVAL,
                "invalid_field", "additional_instructions must be a string", "e1", "c1");
  expect_reject("{" BASE_KEYS ",\"content\":\"hi\",\"stream\":\"yes\"}", AW_EINVAL, "invalid_field",
                "stream must be a boolean", "e1", "c1");
  expect_reject("{" BASE_KEYS ",\"content\":\"hi\",\"stream\":1}", AW_EINVAL, "invalid_field",
                "stream must be a boolean", "e1", "c1");
}

static void request_enforces_configured_limits(void **state) {
  (void)state;
  contract_limits lim;
  contract_limits_default(&lim);
  assert_int_equal(lim.max_event_bytes, 1024 * 1024);
  assert_int_equal(lim.max_text_bytes, 256 * 1024);
  assert_int_equal(lim.max_parts, 16);

  lim.max_text_bytes = 10;
  lim.max_parts = 2;
  char *j;
  contract_request *r;
  j = fmt("{" BASE_KEYS ",\"content\":\"%s\"}", rep('x', 10));
  r = expect_ok_lim(j, &lim);
  contract_request_free(r);
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":\"%s\"}", rep('x', 11));
  expect_reject_lim(j, &lim, AW_ETOOBIG, "event_too_large", "content is 11 bytes, limit 10", "e1", "c1");
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":[{\"type\":\"text\",\"text\":\"%s\"}]}", rep('x', 11));
  expect_reject_lim(j, &lim, AW_ETOOBIG, "event_too_large", "content[0].text is 11 bytes", "e1", "c1");
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":\"hi\",\"instructions\":\"%s\"}", rep('x', 11));
  expect_reject_lim(j, &lim, AW_ETOOBIG, "event_too_large", "instructions is 11 bytes", "e1", "c1");
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]}");
  r = expect_ok_lim(j, &lim);
  assert_int_equal(r->nparts, 2);
  contract_request_free(r);
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"},"
          "{\"type\":\"text\",\"text\":\"c\"}]}");
  expect_reject_lim(j, &lim, AW_ETOOBIG, "event_too_large", "3 parts, limit 2", "e1", "c1");
  free(j);

  /* Default part limit: 16 pass, 17 do not. */
  char parts[2000] = "";
  size_t off = 0, off16 = 0;
  for (int i = 0; i < 17; i++) {
    if (i == 16) off16 = off;
    off += (size_t)snprintf(parts + off, sizeof parts - off, "%s{\"type\":\"text\",\"text\":\"p%d\"}",
                            i ? "," : "", i);
  }
  j = fmt("{" BASE_KEYS ",\"content\":[%s]}", parts);
  expect_reject(j, AW_ETOOBIG, "event_too_large", "17 parts", "e1", "c1");
  free(j);
  parts[off16] = '\0';
  j = fmt("{" BASE_KEYS ",\"content\":[%s]}", parts);
  r = expect_ok(j);
  assert_int_equal(r->nparts, 16);
  assert_string_equal(r->parts[15].text, "p15");
  contract_request_free(r);
  free(j);

  /* The whole event: ids are still extracted for the rejection. */
  contract_limits small;
  contract_limits_default(&small);
  small.max_event_bytes = 64;
  j = fmt("{" BASE_KEYS ",\"content\":\"%s\"}", rep('x', 100));
  expect_reject_lim(j, &small, AW_ETOOBIG, "event_too_large", "limit 64", "e1", "c1");
  free(j);

  /* Default text limit: 256 KiB passes, one byte more does not. */
  j = fmt("{" BASE_KEYS ",\"content\":\"%s\"}", rep('x', 256 * 1024));
  r = expect_ok(j);
  assert_int_equal(r->parts[0].text_len, 256 * 1024);
  contract_request_free(r);
  free(j);
  j = fmt("{" BASE_KEYS ",\"content\":\"%s\"}", rep('x', 256 * 1024 + 1));
  expect_reject(j, AW_ETOOBIG, "event_too_large", "limit 262144", "e1", "c1");
  free(j);
}

static void request_rejects_invalid_utf8_and_nul(void **state) {
  (void)state;
  static const char *const bad[] = {
      "\xC0\xAF",         /* overlong '/' */
      "\xE0\x80\xAF",     /* overlong, 3 bytes */
      "\xED\xA0\x80",     /* surrogate U+D800 */
      "\xF4\x90\x80\x80", /* above U+10FFFF */
      "\xF5\x80\x80\x80", /* invalid lead */
      "\xE2\x82",         /* truncated sequence */
      "ok\x80",           /* lone continuation byte */
      "\xFF",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char *j = fmt("{" BASE_KEYS ",\"content\":\"%s\"}", bad[i]);
    expect_reject(j, AW_EINVAL, "invalid_field", "content is not valid UTF-8", "e1", "c1");
    free(j);
    j = fmt("{\"v\":1,\"event_id\":\"e%s\",\"conversation_id\":\"c1\",\"assistant\":\"a\",\"content\":\"x\"}", bad[i]);
    /* An invalid id is not used for correlation. */
    expect_reject(j, AW_EINVAL, "invalid_field", "event_id is not valid UTF-8", "", "c1");
    free(j);
  }
  static const char *const good[] = {"\xE2\x82\xAC", "\xF0\x9F\x98\x80", "\xF4\x8F\xBF\xBF", "\xEF\xBF\xBD",
                                     "\xC2\x80", "\xED\x9F\xBF", "\xEE\x80\x80"};
  for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
    char *j = fmt("{" BASE_KEYS ",\"content\":\"%s\",\"metadata\":{\"k\":\"%s\"}}", good[i], good[i]);
    contract_request *r = expect_ok(j);
    assert_string_equal(r->parts[0].text, good[i]);
    contract_request_free(r);
    free(j);
  }

  /* NUL bytes: cannot go through JSON, so pack by hand. */
  const char *fields[][2] = {{"event_id", "e\0x"}, {"content", "h\0i"}};
  for (int f = 0; f < 2; f++) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_str_with_body(&pk, "conversation_id", 15);
    msgpack_pack_str_with_body(&pk, "c1", 2);
    msgpack_pack_str_with_body(&pk, "assistant", 9);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_str_with_body(&pk, "event_id", 8);
    msgpack_pack_str_with_body(&pk, f == 0 ? fields[0][1] : "e1", f == 0 ? 3 : 2);
    msgpack_pack_str_with_body(&pk, "content", 7);
    msgpack_pack_str_with_body(&pk, f == 1 ? fields[1][1] : "hi", f == 1 ? 3 : 2);
    char want[64];
    snprintf(want, sizeof want, "%s contains a NUL byte", fields[f][0]);
    expect_reject_bytes(sb.data, sb.size, AW_EINVAL, "invalid_field", want, f == 0 ? "" : "e1", "c1");
    msgpack_sbuffer_destroy(&sb);
  }
}

static void request_rejects_malformed_bytes(void **state) {
  (void)state;
  msgpack_sbuffer sb;
  mpfx_from_json("{" BASE_KEYS ",\"content\":\"hello\"}", &sb);

  expect_reject_bytes("", 0, AW_EPARSE, "malformed_event", "not a complete msgpack value", "", "");
  expect_reject_bytes(NULL, 0, AW_EPARSE, "malformed_event", "not a complete msgpack value", "", "");
  expect_reject_bytes("\xc1", 1, AW_EPARSE, "malformed_event", "not a complete msgpack value", "", "");
  expect_reject_bytes("\x91\x01", 2, AW_EPARSE, "malformed_event", "not a msgpack map", "", "");
  expect_reject_bytes("\xa2hi", 3, AW_EPARSE, "malformed_event", "not a msgpack map", "", "");
  /* Truncated after the ids: they are still correlated. */
  expect_reject_bytes(sb.data, sb.size - 1, AW_EPARSE, "malformed_event", "not a complete", "e1", "c1");
  /* Truncated inside event_id: nothing half-read is used. */
  expect_reject_bytes(sb.data, 15, AW_EPARSE, "malformed_event", "not a complete", "", "");
  /* Trailing bytes after the map. */
  char *more = malloc(sb.size + 2);
  memcpy(more, sb.data, sb.size);
  more[sb.size] = (char)0xc0;
  more[sb.size + 1] = (char)0xc0;
  expect_reject_bytes(more, sb.size + 2, AW_EPARSE, "malformed_event", "2 trailing bytes", "e1", "c1");
  free(more);
  msgpack_sbuffer_destroy(&sb);

  /* Declared sizes far beyond the input: refused without allocating them. */
  expect_reject_bytes("\xdf\xff\xff\xff\xff", 5, AW_EPARSE, "malformed_event", "not a complete", "", "");
  expect_reject_bytes("\x81\xa1x\xdd\xff\xff\xff\xff", 8, AW_EPARSE, "malformed_event", "not a complete", "", "");
  expect_reject_bytes("\x81\xa1x\xdb\xff\xff\xff\xff", 8, AW_EPARSE, "malformed_event", "not a complete", "", "");
  expect_reject_bytes("\x81\xa1x\xc9\xff\xff\xff\xff\x01", 9, AW_EPARSE, "malformed_event", "not a complete", "", "");

  /* Deep nesting in an unknown key: refused, ids read before it are kept. */
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 6);
  msgpack_pack_str_with_body(&pk, "event_id", 8);
  msgpack_pack_str_with_body(&pk, "e1", 2);
  msgpack_pack_str_with_body(&pk, "conversation_id", 15);
  msgpack_pack_str_with_body(&pk, "c1", 2);
  msgpack_pack_str_with_body(&pk, "deep", 4);
  for (int i = 0; i < 40; i++) msgpack_pack_array(&pk, 1);
  msgpack_pack_nil(&pk);
  msgpack_pack_str_with_body(&pk, "v", 1);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_str_with_body(&pk, "assistant", 9);
  msgpack_pack_str_with_body(&pk, "a", 1);
  msgpack_pack_str_with_body(&pk, "content", 7);
  msgpack_pack_str_with_body(&pk, "hi", 2);
  expect_reject_bytes(sb.data, sb.size, AW_EPARSE, "malformed_event", "nested deeper", "e1", "c1");
  msgpack_sbuffer_destroy(&sb);
}

static void request_correlation_ids_respect_caller_buffers(void **state) {
  (void)state;
  msgpack_sbuffer sb;
  mpfx_from_json("{" BASE_KEYS ",\"content\":\"hi\"}", &sb);
  contract_request *r = NULL;
  const char *code = "x";
  char ev[2] = "?", conv[3] = "??"; /* "e1" does not fit in 2 bytes, "c1" fits in 3 */
  int rc = contract_request_decode(sb.data, sb.size, NULL, &r, &code, ev, sizeof ev, conv, sizeof conv, NULL, 0);
  assert_int_equal(rc, AW_OK);
  assert_null(code);
  assert_string_equal(ev, ""); /* never a truncated id */
  assert_string_equal(conv, "c1");
  contract_request_free(r);
  /* Every out-parameter but out may be NULL. */
  rc = contract_request_decode("\xc1", 1, NULL, &r, NULL, NULL, 0, NULL, 0, NULL, 0);
  assert_int_equal(rc, AW_EPARSE);
  assert_null(r);
  msgpack_sbuffer_destroy(&sb);
}

static void request_encode_refuses_incomplete_struct(void **state) {
  (void)state;
  contract_part part = {.type = CONTRACT_PART_TEXT, .text = "x", .text_len = 1};
  contract_request r = {.event_id = NULL, .conversation_id = "c", .assistant = "a", .parts = &part, .nparts = 1};
  buf b;
  buf_init(&b, 100);
  assert_int_equal(buf_appends(&b, "keep"), AW_OK);
  assert_int_equal(contract_request_encode(&r, &b), AW_EINVAL);
  r.event_id = "e";
  r.nparts = 0;
  assert_int_equal(contract_request_encode(&r, &b), AW_EINVAL);
  assert_int_equal(b.len, 4); /* untouched */
  r.nparts = 1;
  buf small;
  buf_init(&small, 8);
  assert_int_equal(contract_request_encode(&r, &small), AW_ETOOBIG);
  buf_free(&small);
  buf_free(&b);
}

/* ---- response / delta / dlq ------------------------------------------------- */

static void response_completed_json_view_has_every_field(void **state) {
  (void)state;
  contract_annotation ann = {.type = "file_citation", .text = "[1]", .file_id = "file-log", .start_index = 41, .end_index = 44};
  contract_out_part parts[] = {{"text", "Order left \"today\"\n[1].", 23, &ann, 1}, {"image_file", "file-img", 8, NULL, 0}};
  contract_out_message msgs[] = {{.id = "msg_1", .parts = parts, .nparts = 2}, {.id = "msg_2"}};
  contract_response r = {.event_id = "e1", .conversation_id = "c1", .thread_id = "thread_1",
                         .run_id = "run_1", .status = "completed", .messages = msgs, .nmessages = 2,
                         .usage = {.present = 1, .prompt_tokens = 400, .completion_tokens = 37, .total_tokens = 437}, .error_code = NULL,
                         .timings = {1764000000000, 1764000000120, 1764000002310}};
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  cJSON *j = json_view(&b);
  assert_int_equal(jnum(j, "v"), 1);
  assert_string_equal(jstr(j, "event_id"), "e1");
  assert_string_equal(jstr(j, "conversation_id"), "c1");
  assert_string_equal(jstr(j, "thread_id"), "thread_1");
  assert_string_equal(jstr(j, "run_id"), "run_1");
  assert_string_equal(jstr(j, "status"), "completed");
  assert_true(jnull(j, "error"));
  const cJSON *m = cJSON_GetObjectItem(j, "messages");
  assert_int_equal(cJSON_GetArraySize(m), 2);
  const cJSON *m0 = cJSON_GetArrayItem(m, 0);
  assert_string_equal(jstr(m0, "id"), "msg_1");
  const cJSON *c = cJSON_GetObjectItem(m0, "content");
  assert_int_equal(cJSON_GetArraySize(c), 2);
  const cJSON *t = cJSON_GetObjectItem(cJSON_GetArrayItem(c, 0), "text");
  assert_string_equal(jstr(cJSON_GetArrayItem(c, 0), "type"), "text");
  assert_string_equal(jstr(t, "value"), "Order left \"today\"\n[1].");
  const cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItem(t, "annotations"), 0);
  assert_string_equal(jstr(a, "type"), "file_citation");
  assert_string_equal(jstr(a, "text"), "[1]");
  assert_string_equal(jstr(a, "file_id"), "file-log");
  assert_int_equal(jnum(a, "start_index"), 41);
  assert_int_equal(jnum(a, "end_index"), 44);
  const cJSON *img = cJSON_GetArrayItem(c, 1);
  assert_string_equal(jstr(img, "type"), "image_file");
  assert_string_equal(jstr(cJSON_GetObjectItem(img, "image_file"), "file_id"), "file-img");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(m, 1), "content")), 0);
  const cJSON *u = cJSON_GetObjectItem(j, "usage");
  assert_int_equal(jnum(u, "prompt_tokens"), 400);
  assert_int_equal(jnum(u, "completion_tokens"), 37);
  assert_int_equal(jnum(u, "total_tokens"), 437);
  const cJSON *tm = cJSON_GetObjectItem(j, "timings");
  assert_true(jnum(tm, "received_ms") == 1764000000000.0);
  assert_true(jnum(tm, "run_started_ms") == 1764000000120.0);
  assert_true(jnum(tm, "completed_ms") == 1764000002310.0);
  cJSON_Delete(j);
  buf_free(&b);
}

static void response_rejected_has_nils_and_error(void **state) {
  (void)state;
  contract_response r = {.event_id = NULL, .conversation_id = "c1", .status = "rejected",
                         .error_code = "malformed_event", .error_message = NULL,
                         .timings = {5, 0, 6}};
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  cJSON *j = json_view(&b);
  assert_string_equal(jstr(j, "event_id"), ""); /* unreadable id */
  assert_true(jnull(j, "thread_id"));
  assert_true(jnull(j, "run_id"));
  assert_true(jnull(j, "usage"));
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "messages")), 0);
  const cJSON *e = cJSON_GetObjectItem(j, "error");
  assert_string_equal(jstr(e, "code"), "malformed_event");
  assert_string_equal(jstr(e, "message"), "");
  cJSON_Delete(j);
  buf_free(&b);
}

static void response_backend_map_is_written_only_when_kind_is_set(void **state) {
  (void)state;
  contract_response r = {.event_id = "e1", .conversation_id = "c1", .status = "completed",
                         .timings = {1, 2, 3}};
  buf b;
  buf_init(&b, 4096);
  /* Without backend_kind: the v1 shape of before, no `backend` key. */
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  cJSON *j = json_view(&b);
  assert_null(cJSON_GetObjectItemCaseSensitive(j, "backend"));
  assert_int_equal(cJSON_GetArraySize(j), 10);
  cJSON_Delete(j);

  static const struct {
    const char *kind, *thread, *run, *conv, *turn;
  } cases[] = {
      {"assistants", "thread_1", "run_1", "thread_1", "run_1"},
      {"responses", NULL, NULL, "conv_1", "resp_2"},
      {"chat", NULL, NULL, NULL, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    r.thread_id = cases[i].thread;
    r.run_id = cases[i].run;
    r.backend_kind = cases[i].kind;
    r.backend_conversation = cases[i].conv;
    r.backend_turn = cases[i].turn;
    buf_reset(&b);
    assert_int_equal(contract_response_encode(&r, &b), AW_OK);
    j = json_view(&b);
    assert_int_equal(cJSON_GetArraySize(j), 11);
    if (cases[i].thread) assert_string_equal(jstr(j, "thread_id"), cases[i].thread);
    else assert_true(jnull(j, "thread_id"));
    if (cases[i].run) assert_string_equal(jstr(j, "run_id"), cases[i].run);
    else assert_true(jnull(j, "run_id"));
    const cJSON *be = cJSON_GetObjectItemCaseSensitive(j, "backend");
    assert_true(cJSON_IsObject(be));
    assert_int_equal(cJSON_GetArraySize(be), 3);
    assert_string_equal(jstr(be, "kind"), cases[i].kind);
    if (cases[i].conv) assert_string_equal(jstr(be, "conversation"), cases[i].conv);
    else assert_true(jnull(be, "conversation"));
    if (cases[i].turn) assert_string_equal(jstr(be, "turn"), cases[i].turn);
    else assert_true(jnull(be, "turn"));
    cJSON_Delete(j);
  }
  buf_free(&b);
}

static void response_encode_refuses_unknown_or_orphan_backend_fields(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(buf_appends(&b, "prefix"), AW_OK);
  contract_response ok = {.event_id = "e", .conversation_id = "c", .status = "completed"};
  for (int i = 0; i < 5; i++) {
    contract_response r = ok;
    switch (i) {
    case 0: r.backend_kind = "openai"; break;
    case 1: r.backend_kind = ""; break;
    case 2: r.backend_kind = "Chat"; break;
    case 3: r.backend_conversation = "conv_1"; break; /* would be dropped without a kind */
    case 4: r.backend_turn = "resp_1"; break;
    }
    if (contract_response_encode(&r, &b) != AW_EINVAL) fail_msg("case %d accepted", i);
    assert_int_equal(b.len, 6); /* untouched */
  }
  buf_free(&b);
}

static void response_encode_validates_before_writing(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(buf_appends(&b, "prefix"), AW_OK);
  contract_response r = {.event_id = "e", .conversation_id = "c", .status = "done"};
  assert_int_equal(contract_response_encode(&r, &b), AW_EINVAL);
  r.status = NULL;
  assert_int_equal(contract_response_encode(&r, &b), AW_EINVAL);
  contract_out_part bad_part = {"video", "x", 1, NULL, 0};
  contract_out_message msg = {.id = "msg", .parts = &bad_part, .nparts = 1};
  r.status = "completed";
  r.messages = &msg;
  r.nmessages = 1;
  assert_int_equal(contract_response_encode(&r, &b), AW_EINVAL);
  msg.id = NULL;
  bad_part.type = "text";
  assert_int_equal(contract_response_encode(&r, &b), AW_EINVAL);
  assert_int_equal(b.len, 6);
  assert_string_equal(b.data, "prefix");
  /* Over the buffer's limit: ETOOBIG, the buffer is freed as buf promises. */
  msg.id = "msg";
  buf small;
  buf_init(&small, 16);
  assert_int_equal(contract_response_encode(&r, &small), AW_ETOOBIG);
  assert_null(small.data);
  buf_free(&small);
  buf_free(&b);
}

static void response_encode_sanitizes_invalid_utf8(void **state) {
  (void)state;
  contract_out_part part = {"text", "ok\xFF\xC0!", 5, NULL, 0};
  contract_out_message msg = {.id = "msg", .parts = &part, .nparts = 1};
  contract_response r = {.event_id = "e", .conversation_id = "c", .thread_id = "t", .run_id = "r",
                         .status = "failed", .messages = &msg, .nmessages = 1,
                         .error_code = "server_error", .error_message = "bad \xE2\x82 byte"};
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(contract_response_encode(&r, &b), AW_OK);
  cJSON *j = json_view(&b);
  const cJSON *t = cJSON_GetObjectItem(
      cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0), "content"), 0),
      "text");
  assert_string_equal(jstr(t, "value"), "ok\xEF\xBF\xBD\xEF\xBF\xBD!");
  assert_string_equal(jstr(cJSON_GetObjectItem(j, "error"), "message"), "bad \xEF\xBF\xBD\xEF\xBF\xBD byte");
  cJSON_Delete(j);
  buf_free(&b);
}

static void delta_json_view_and_sequence(void **state) {
  (void)state;
  const char *chunks[] = {"Hel", "lo, ", "w\xC3\xB6rld"};
  buf all;
  buf_init(&all, 1024);
  for (int i = 0; i < 3; i++) {
    buf b;
    buf_init(&b, 1024);
    assert_int_equal(contract_delta_encode("e1", "c1", "run_1", i, 0, chunks[i], strlen(chunks[i]), &b), AW_OK);
    cJSON *j = json_view(&b);
    assert_int_equal(cJSON_GetArraySize(j), 7);
    assert_int_equal(jnum(j, "v"), 1);
    assert_string_equal(jstr(j, "event_id"), "e1");
    assert_string_equal(jstr(j, "conversation_id"), "c1");
    assert_string_equal(jstr(j, "run_id"), "run_1");
    assert_int_equal(jnum(j, "seq"), i);
    assert_int_equal(jnum(j, "attempt"), 0);
    assert_int_equal(buf_appends(&all, jstr(j, "text")), AW_OK);
    cJSON_Delete(j);
    buf_free(&b);
  }
  assert_string_equal(all.data, "Hello, w\xC3\xB6rld");
  buf_free(&all);

  buf b;
  buf_init(&b, 1024);
  assert_int_equal(contract_delta_encode("e1", "c1", "run_1", 0, 0, NULL, 0, &b), AW_OK);
  buf_reset(&b);
  assert_int_equal(contract_delta_encode("e1", "c1", "run_1", -1, 0, "x", 1, &b), AW_EINVAL);
  assert_int_equal(contract_delta_encode("e1", "c1", "run_1", 0, -1, "x", 1, &b), AW_EINVAL);
  assert_int_equal(contract_delta_encode(NULL, "c1", "run_1", 0, 0, "x", 1, &b), AW_EINVAL);
  assert_int_equal(contract_delta_encode("e1", NULL, "run_1", 0, 0, "x", 1, &b), AW_EINVAL);
  assert_int_equal(contract_delta_encode("e1", "c1", "r", 0, 0, NULL, 3, &b), AW_EINVAL);
  assert_int_equal(b.len, 0);
  buf_free(&b);
}

/* A re-generated or recovered turn publishes its text again from seq 0 with
 * the next attempt; a reader keeps the highest attempt.  Chat has no turn
 * handle: run_id is nil. */
static void delta_carries_attempt_and_nil_run_id(void **state) {
  (void)state;
  static const struct {
    int attempt;
    int64_t seq;
    const char *text;
  } stream[] = {{0, 0, "Old "}, {0, 1, "answ"}, {1, 0, "New "}, {1, 1, "answer"}};
  buf answer;
  buf_init(&answer, 1024);
  int highest = -1;
  for (size_t i = 0; i < sizeof stream / sizeof stream[0]; i++) {
    buf b;
    buf_init(&b, 1024);
    assert_int_equal(contract_delta_encode("e1", "c1", NULL, stream[i].seq, stream[i].attempt, stream[i].text,
                                           strlen(stream[i].text), &b),
                     AW_OK);
    cJSON *j = json_view(&b);
    assert_true(jnull(j, "run_id"));
    assert_int_equal(jnum(j, "seq"), stream[i].seq);
    int attempt = (int)jnum(j, "attempt");
    assert_int_equal(attempt, stream[i].attempt);
    if (attempt > highest) {
      highest = attempt;
      buf_reset(&answer);
    }
    if (attempt == highest) assert_int_equal(buf_appends(&answer, jstr(j, "text")), AW_OK);
    cJSON_Delete(j);
    buf_free(&b);
  }
  assert_string_equal(answer.data, "New answer");
  buf_free(&answer);

  buf b;
  buf_init(&b, 1024);
  assert_int_equal(contract_delta_encode("e1", "c1", "resp_1", 3, 2147483647, "x", 1, &b), AW_OK);
  cJSON *j = json_view(&b);
  assert_string_equal(jstr(j, "run_id"), "resp_1");
  assert_true(jnum(j, "attempt") == 2147483647.0);
  cJSON_Delete(j);
  buf_free(&b);
}

static const msgpack_object *mp_get(const msgpack_object *map, const char *key) {
  assert_int_equal(map->type, MSGPACK_OBJECT_MAP);
  for (uint32_t i = 0; i < map->via.map.size; i++) {
    const msgpack_object *k = &map->via.map.ptr[i].key;
    if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
        !memcmp(k->via.str.ptr, key, k->via.str.size))
      return &map->via.map.ptr[i].val;
  }
  fail_msg("key %s missing", key);
  return NULL;
}

static void dlq_preserves_original_bytes_exactly(void **state) {
  (void)state;
  unsigned char orig[300];
  for (size_t i = 0; i < sizeof orig; i++) orig[i] = (unsigned char)(i * 7 + 3);
  orig[0] = 0x00;
  orig[1] = 0xff;
  const unsigned char key[] = {'k', 0x00, 0xfe};
  contract_dlq d = {.original = orig, .original_len = sizeof orig, .original_key = key,
                    .original_key_len = sizeof key, .topic = "assistant.requests", .partition = 3,
                    .offset = 81723, .error_code = "malformed_event", .error_message = "bad",
                    .event_id = NULL, .conversation_id = "c1", .failed_ms = 1764000000005};
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(contract_dlq_encode(&d, &b), AW_OK);

  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  assert_int_equal(msgpack_unpack_next(&u, b.data, b.len, &off), MSGPACK_UNPACK_SUCCESS);
  assert_int_equal(off, b.len);
  const msgpack_object *o = mp_get(&u.data, "original");
  assert_int_equal(o->type, MSGPACK_OBJECT_BIN);
  assert_int_equal(o->via.bin.size, sizeof orig);
  assert_memory_equal(o->via.bin.ptr, orig, sizeof orig);
  o = mp_get(&u.data, "original_key");
  assert_int_equal(o->type, MSGPACK_OBJECT_BIN);
  assert_int_equal(o->via.bin.size, sizeof key);
  assert_memory_equal(o->via.bin.ptr, key, sizeof key);
  assert_int_equal(mp_get(&u.data, "event_id")->type, MSGPACK_OBJECT_NIL);
  msgpack_unpacked_destroy(&u);

  cJSON *j = json_view(&b);
  assert_int_equal(cJSON_GetArraySize(j), 8);
  assert_int_equal(jnum(j, "v"), 1);
  assert_string_equal(jstr(j, "original_key"), "awD+");
  assert_true(jnull(j, "event_id"));
  assert_string_equal(jstr(j, "conversation_id"), "c1");
  const cJSON *s = cJSON_GetObjectItem(j, "source");
  assert_string_equal(jstr(s, "topic"), "assistant.requests");
  assert_int_equal(jnum(s, "partition"), 3);
  assert_int_equal(jnum(s, "offset"), 81723);
  const cJSON *e = cJSON_GetObjectItem(j, "error");
  assert_string_equal(jstr(e, "code"), "malformed_event");
  assert_string_equal(jstr(e, "message"), "bad");
  assert_true(jnum(j, "failed_ms") == 1764000000005.0);
  assert_int_equal(strlen(jstr(j, "original")), 400); /* 300 bytes -> 400 base64 chars */
  cJSON_Delete(j);
  buf_free(&b);
}

static void dlq_tells_null_key_from_empty_key(void **state) {
  (void)state;
  contract_dlq d = {.original = NULL, .original_len = 0, .original_key = NULL, .topic = "t",
                    .error_code = "malformed_event"};
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(contract_dlq_encode(&d, &b), AW_OK);
  cJSON *j = json_view(&b);
  assert_true(jnull(j, "original_key"));
  assert_string_equal(jstr(j, "original"), "");
  cJSON_Delete(j);
  buf_reset(&b);
  d.original_key = "";
  assert_int_equal(contract_dlq_encode(&d, &b), AW_OK);
  j = json_view(&b);
  assert_string_equal(jstr(j, "original_key"), "");
  cJSON_Delete(j);
  buf_reset(&b);
  d.topic = NULL;
  assert_int_equal(contract_dlq_encode(&d, &b), AW_EINVAL);
  d.topic = "t";
  d.original_len = 5; /* NULL with a length */
  assert_int_equal(contract_dlq_encode(&d, &b), AW_EINVAL);
  assert_int_equal(b.len, 0);
  buf_free(&b);
}

/* ---- JSON view -------------------------------------------------------------- */

static void to_json_converts_every_msgpack_type(void **state) {
  (void)state;
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 18);
#define K(s) msgpack_pack_str_with_body(&pk, s, strlen(s))
  K("nil"); msgpack_pack_nil(&pk);
  K("t"); msgpack_pack_true(&pk);
  K("f"); msgpack_pack_false(&pk);
  K("umax"); msgpack_pack_uint64(&pk, UINT64_MAX);
  K("imin"); msgpack_pack_int64(&pk, INT64_MIN);
  K("d"); msgpack_pack_double(&pk, 0.1);
  K("f32"); msgpack_pack_float(&pk, 1.5f);
  K("nan"); msgpack_pack_double(&pk, NAN);
  K("inf"); msgpack_pack_double(&pk, -INFINITY);
  K("esc"); msgpack_pack_str_with_body(&pk, "q\"b\\n\nt\tc\x01\x1f\x7f/\xE2\x82\xAC", 16);
  K("bad"); msgpack_pack_str_with_body(&pk, "a\xFF" "b\xED\xA0\x80", 6);
  K("bin"); msgpack_pack_bin_with_body(&pk, "Man\x00", 4);
  K("ext"); msgpack_pack_ext_with_body(&pk, "\x01\x02", 2, -1);
  K("arr"); msgpack_pack_array(&pk, 3); msgpack_pack_int(&pk, 1); msgpack_pack_array(&pk, 0); msgpack_pack_map(&pk, 0);
  msgpack_pack_int(&pk, 5); msgpack_pack_str_with_body(&pk, "int key", 7);
  msgpack_pack_nil(&pk); msgpack_pack_int(&pk, 0);
  msgpack_pack_bin_with_body(&pk, "M", 1); msgpack_pack_int(&pk, 1);
  msgpack_pack_array(&pk, 1); K("x"); msgpack_pack_int(&pk, 2);
#undef K
  int rc;
  char *s = mpfx_json_view(sb.data, sb.size, &rc);
  assert_int_equal(rc, AW_OK);
  assert_string_equal(
      s, "{\"nil\":null,\"t\":true,\"f\":false,\"umax\":18446744073709551615,"
         "\"imin\":-9223372036854775808,\"d\":0.1,\"f32\":1.5,\"nan\":null,\"inf\":null,"
         "\"esc\":\"q\\\"b\\\\n\\nt\\tc\\u0001\\u001f\x7f/\xE2\x82\xAC\","
         "\"bad\":\"a\\ufffdb\\ufffd\\ufffd\\ufffd\",\"bin\":\"TWFuAA==\","
         "\"ext\":{\"ext\":-1,\"data\":\"AQI=\"},\"arr\":[1,[],{}],"
         "\"5\":\"int key\",\"null\":0,\"TQ==\":1,\"[\\\"x\\\"]\":2}");
  cJSON *j = cJSON_Parse(s);
  assert_non_null(j);
  cJSON_Delete(j);
  free(s);
  msgpack_sbuffer_destroy(&sb);

  /* base64 padding cases */
  static const struct { const char *in; size_t n; const char *out; } b64[] = {
      {"", 0, "\"\""}, {"M", 1, "\"TQ==\""}, {"Ma", 2, "\"TWE=\""}, {"Man", 3, "\"TWFu\""}};
  for (size_t i = 0; i < 4; i++) {
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_bin_with_body(&pk, b64[i].in, b64[i].n);
    s = mpfx_json_view(sb.data, sb.size, &rc);
    assert_int_equal(rc, AW_OK);
    assert_string_equal(s, b64[i].out);
    free(s);
    msgpack_sbuffer_destroy(&sb);
  }
}

static void to_json_refuses_anything_but_one_value(void **state) {
  (void)state;
  static const struct { const char *p; size_t n; } bad[] = {
      {"", 0}, {"\xc1", 1}, {"\x01\x02", 2}, {"\x92\x01", 2}, {"\xa3" "ab", 3},
      {"\xdf\xff\xff\xff\xff", 5}, {"\xc4\x05" "ab", 4}, {"\xcb\x00", 2},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    buf b;
    buf_init(&b, 1024);
    assert_int_equal(contract_to_json(bad[i].p, bad[i].n, &b), AW_EPARSE);
    assert_int_equal(b.len, 0);
    buf_free(&b);
  }
  buf b;
  buf_init(&b, 1024);
  assert_int_equal(contract_to_json(NULL, 0, &b), AW_EPARSE);
  buf_free(&b);

  /* 24 nested containers convert, 25 do not. */
  char deep[32];
  memset(deep, 0x91, sizeof deep);
  for (int depth = 24; depth <= 25; depth++) {
    deep[depth] = (char)0xc0;
    int rc;
    char *s = mpfx_json_view(deep, (size_t)depth + 1, &rc);
    assert_int_equal(rc, depth == 24 ? AW_OK : AW_EPARSE);
    free(s);
    deep[depth] = (char)0x91;
  }
}

static void to_json_respects_the_buffer_limit(void **state) {
  (void)state;
  msgpack_sbuffer sb;
  mpfx_from_json("{\"text\":\"0123456789012345678901234567890123456789\"}", &sb);
  buf b;
  buf_init(&b, 20);
  assert_int_equal(contract_to_json(sb.data, sb.size, &b), AW_ETOOBIG);
  assert_null(b.data);
  buf_free(&b);
  msgpack_sbuffer_destroy(&sb);
}

/* Found by fuzz_request: map keys that are maps are escaped once per level,
 * so 20 levels of {key-map: 1} outgrow the buffer from a tiny input.  That
 * must fail with ETOOBIG and leave no half document behind (it used to leave
 * the output written so far). */
static void to_json_nested_map_keys_fail_cleanly(void **state) {
  (void)state;
  msgpack_sbuffer sb;
  msgpack_sbuffer_init(&sb);
  msgpack_packer pk;
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  for (int i = 0; i < 20; i++) msgpack_pack_map(&pk, 1);
  msgpack_pack_str_with_body(&pk, "a", 1);
  for (int i = 0; i < 20; i++) msgpack_pack_int(&pk, 1);
  assert_true(sb.size < 64);
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(buf_appends(&b, "x"), AW_OK);
  assert_int_equal(contract_to_json(sb.data, sb.size, &b), AW_ETOOBIG);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  /* One level fits; the key is the inner object's JSON text. */
  msgpack_sbuffer_clear(&sb);
  msgpack_pack_map(&pk, 1);
  msgpack_pack_map(&pk, 1);
  msgpack_pack_str_with_body(&pk, "a", 1);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_int(&pk, 2);
  assert_int_equal(contract_to_json(sb.data, sb.size, &b), AW_OK);
  assert_string_equal(b.data, "{\"{\\\"a\\\":1}\":2}");
  buf_free(&b);
  msgpack_sbuffer_destroy(&sb);
}

/* ---- examples and schemas agree with the encoder ---------------------------- */


static void check_example(const char *name, const buf *encoded) {
  char rel[128];
  snprintf(rel, sizeof rel, "schemas/examples/%s", name);
  char *text = mpfx_source_file(rel);
  cJSON *ex = cJSON_Parse(text);
  if (!ex) fail_msg("%s does not parse", rel);
  cJSON *got = json_view(encoded);
  mpfx_same_shape(ex, got, name);
  cJSON_Delete(got);
  cJSON_Delete(ex);
  free(text);
}

static void examples_match_the_encoders(void **state) {
  (void)state;
  /* Requests: the examples are valid events for the decoder. */
  const char *reqs[] = {"schemas/examples/request-text.json", "schemas/examples/request-parts.json"};
  for (int i = 0; i < 2; i++) {
    char *text = mpfx_source_file(reqs[i]);
    contract_request *r = expect_ok(text);
    /* Re-encoding keeps the same JSON shape as the example. */
    buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(contract_request_encode(r, &b), AW_OK);
    check_example(reqs[i] + strlen("schemas/examples/"), &b);
    buf_free(&b);
    contract_request_free(r);
    free(text);
  }

  contract_annotation ann = {.type = "file_citation", .text = "[1]", .file_id = "file-x", .start_index = 1, .end_index = 4};
  contract_out_part part = {"text", "answer", 6, &ann, 1};
  contract_out_message msg = {.id = "msg_1", .parts = &part, .nparts = 1};
  contract_response done = {.event_id = "e", .conversation_id = "c", .thread_id = "t", .run_id = "r",
                            .status = "completed", .messages = &msg, .nmessages = 1,
                            .usage = {.present = 1, .prompt_tokens = 1, .completion_tokens = 2, .total_tokens = 3}, .timings = {1, 2, 3},
                            .backend_kind = "assistants", .backend_conversation = "t", .backend_turn = "r"};
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(contract_response_encode(&done, &b), AW_OK);
  check_example("response-completed.json", &b);

  contract_response rej = {.event_id = "e", .conversation_id = "c", .status = "rejected",
                           .error_code = "missing_field", .error_message = "m", .timings = {1, 0, 2}};
  buf_reset(&b);
  assert_int_equal(contract_response_encode(&rej, &b), AW_OK);
  check_example("response-rejected.json", &b);

  buf_reset(&b);
  assert_int_equal(contract_delta_encode("e", "c", "r", 0, 0, "x", 1, &b), AW_OK);
  check_example("delta.json", &b);

  contract_dlq d = {.original = "\x82", .original_len = 1, .original_key = "k", .original_key_len = 1,
                    .topic = "t", .partition = 1, .offset = 2, .error_code = "malformed_event",
                    .error_message = "m", .failed_ms = 4};
  buf_reset(&b);
  assert_int_equal(contract_dlq_encode(&d, &b), AW_OK);
  check_example("dlq.json", &b);
  buf_free(&b);

  /* Every schema file is JSON with the draft the README promises. */
  const char *schemas[] = {"request", "response", "delta", "dlq"};
  for (int i = 0; i < 4; i++) {
    char rel[64];
    snprintf(rel, sizeof rel, "schemas/%s.schema.json", schemas[i]);
    char *text = mpfx_source_file(rel);
    cJSON *s = cJSON_Parse(text);
    if (!s) fail_msg("%s does not parse", rel);
    assert_string_equal(jstr(s, "$schema"), "https://json-schema.org/draft/2020-12/schema");
    cJSON_Delete(s);
    free(text);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(request_roundtrip_keeps_every_field),
      cmocka_unit_test(request_roundtrip_keeps_every_part_type),
      cmocka_unit_test(request_content_string_equals_one_text_part),
      cmocka_unit_test(request_decode_is_one_allocation),
      cmocka_unit_test(request_ignores_unknown_keys_and_nil_optionals),
      cmocka_unit_test(request_reserved_part_types_are_decoded),
      cmocka_unit_test(request_rejects_bad_version),
      cmocka_unit_test(request_rejects_bad_ids),
      cmocka_unit_test(request_rejects_bad_assistant),
      cmocka_unit_test(request_rejects_bad_content),
      cmocka_unit_test(request_rejects_bad_metadata),
      cmocka_unit_test(request_rejects_bad_optional_types),
      cmocka_unit_test(request_enforces_configured_limits),
      cmocka_unit_test(request_rejects_invalid_utf8_and_nul),
      cmocka_unit_test(request_rejects_malformed_bytes),
      cmocka_unit_test(request_correlation_ids_respect_caller_buffers),
      cmocka_unit_test(request_encode_refuses_incomplete_struct),
      cmocka_unit_test(response_completed_json_view_has_every_field),
      cmocka_unit_test(response_rejected_has_nils_and_error),
      cmocka_unit_test(response_backend_map_is_written_only_when_kind_is_set),
      cmocka_unit_test(response_encode_refuses_unknown_or_orphan_backend_fields),
      cmocka_unit_test(response_encode_validates_before_writing),
      cmocka_unit_test(response_encode_sanitizes_invalid_utf8),
      cmocka_unit_test(delta_json_view_and_sequence),
      cmocka_unit_test(delta_carries_attempt_and_nil_run_id),
      cmocka_unit_test(dlq_preserves_original_bytes_exactly),
      cmocka_unit_test(dlq_tells_null_key_from_empty_key),
      cmocka_unit_test(to_json_converts_every_msgpack_type),
      cmocka_unit_test(to_json_refuses_anything_but_one_value),
      cmocka_unit_test(to_json_respects_the_buffer_limit),
      cmocka_unit_test(to_json_nested_map_keys_fail_cleanly),
      cmocka_unit_test(examples_match_the_encoders),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* fuzz_tool_reply.c -- libFuzzer target for what tool services send back:
 * ctool_reply_decode() and corr_verify() on arbitrary bytes, plus the tool
 * request decoder and the arguments JSON -> msgpack conversion.
 *
 * Build: cmake -DAW_FUZZ=ON -DAW_SANITIZE=ON -DCMAKE_C_COMPILER=clang, then
 *   ./fuzz_tool_reply -max_total_time=60 corpus/
 * Good seeds: the msgpack form of schemas/examples/tool-reply-*.json, a
 * correlation id, a JSON object.
 *
 * Beyond "does not crash", it checks the properties callers rely on:
 *  - reply: failure gives a known code and no reply; success gives exactly
 *    one of output / error, NUL-free strings, and re-encodes to the same reply;
 *  - corr_verify answers only AW_OK or AW_EINVAL and never accepts what the
 *    fuzzer made up (it has no key);
 *  - arguments: an accepted text is JSON cJSON also accepts, converts to one
 *    msgpack map whose JSON view parses;
 *  - request: success re-encodes and decodes to the same strings;
 *  - usage record (contract_usage.h, what billing consumers decode): failure
 *    gives a known code and no record; success keeps cached <= input and
 *    reasoning <= output, and re-encodes to a record that decodes the same.
 * A violated property aborts, so libFuzzer saves the input.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "contract_tool.h"
#include "contract_usage.h"
#include "correlation.h"

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                      \
    }                                                                               \
  } while (0)

static int known(const char *c, const char *const *codes, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (c && !strcmp(c, codes[i])) return 1;
  return 0;
}

static int str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

static void fuzz_reply(const uint8_t *data, size_t size, const corr_key *k) {
  static const char *const codes[] = {"malformed_reply", "missing_field", "invalid_field",
                                      "unsupported_version", "reply_too_large"};
  const size_t max_output = 4096; /* small, so the limit paths are reachable */
  ctool_reply *r = NULL;
  const char *code = NULL;
  char err[256];
  int rc = ctool_reply_decode(data, size, max_output, &r, &code, err, sizeof err);
  if (rc) {
    CHECK(r == NULL && known(code, codes, sizeof codes / sizeof codes[0]));
    return;
  }
  CHECK(r && !code && r->v == CTOOL_VERSION && r->correlation_id);
  CHECK((r->output != NULL) != (r->error_code != NULL));
  CHECK(strlen(r->correlation_id) >= 1 && strlen(r->correlation_id) <= CTOOL_MAX_CORRELATION_ID);
  if (r->output) CHECK(strlen(r->output) == r->output_len && r->output_len <= max_output);
  else CHECK(r->error_message && strlen(r->error_message) <= CTOOL_MAX_ERROR_MESSAGE);
  /* Whatever decodes is an id a worker will look at: verify must cope. */
  rc = corr_verify(k, r->correlation_id, "conv", "run", "call", NULL);
  CHECK(rc == AW_EINVAL);

  buf b;
  buf_init(&b, 2 * size + 1024);
  CHECK(ctool_reply_encode(r, &b) == AW_OK);
  ctool_reply *again = NULL;
  CHECK(ctool_reply_decode(b.data, b.len, max_output, &again, &code, err, sizeof err) == AW_OK);
  CHECK(!strcmp(again->correlation_id, r->correlation_id));
  CHECK(again->output_len == r->output_len && str_eq(again->output, r->output));
  CHECK(str_eq(again->error_code, r->error_code) && str_eq(again->error_message, r->error_message));
  ctool_reply_free(again);
  buf_free(&b);
  ctool_reply_free(r);
}

static void fuzz_corr(const uint8_t *data, size_t size, const corr_key *k) {
  char *s = malloc(size + 1);
  CHECK(s);
  memcpy(s, data, size);
  s[size] = '\0';
  int64_t d = -1;
  /* The fuzzer has no key: nothing it writes may verify. */
  CHECK(corr_verify(k, s, "conv", "run", "call", &d) == AW_EINVAL);
  CHECK(d == -1);
  /* The bound ids are arbitrary too (the id is a valid one). */
  char id[CORR_ID_SIZE];
  CHECK(corr_new(k, "conv", "run", "call", 1, id, sizeof id) == AW_OK);
  int rc = corr_verify(k, id, s, "run", "call", NULL);
  CHECK(rc == (strcmp(s, "conv") ? AW_EINVAL : AW_OK));
  char dig[CORR_DIGEST_SIZE];
  CHECK(corr_digest(s, dig) == AW_OK && strlen(dig) == 32);
  free(s);
}

static void fuzz_arguments(const uint8_t *data, size_t size) {
  buf b;
  buf_init(&b, 16 * size + 64);
  int rc = ctool_arguments_to_msgpack((const char *)data, size, &b);
  CHECK(rc == AW_OK || rc == AW_EPARSE);
  if (rc == AW_EPARSE) {
    CHECK(b.len == 0);
    buf_free(&b);
    return;
  }
  CHECK(b.len >= 1 && (((uint8_t)b.data[0] & 0xf0) == 0x80 || (uint8_t)b.data[0] == 0xde ||
                       (uint8_t)b.data[0] == 0xdf));
  cJSON *ref = cJSON_ParseWithLength((const char *)data, size);
  CHECK(ref && cJSON_IsObject(ref));
  cJSON_Delete(ref);
  buf j;
  buf_init(&j, 64 * b.len + 1024);
  CHECK(contract_to_json(b.data, b.len, &j) == AW_OK);
  cJSON *view = cJSON_ParseWithLength(j.data, j.len);
  CHECK(view && cJSON_IsObject(view));
  cJSON_Delete(view);
  buf_free(&j);
  buf_free(&b);
}

/* Optional strings: both absent (NULL) or equal. */
static int same_opt(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

static void fuzz_request(const uint8_t *data, size_t size) {
  static const char *const codes[] = {"malformed_request", "missing_field", "invalid_field",
                                      "unsupported_version", "request_too_large"};
  ctool_request *r = NULL;
  const char *code = NULL;
  char err[256];
  int rc = ctool_request_decode(data, size, 0, &r, &code, err, sizeof err);
  if (rc) {
    CHECK(!r && known(code, codes, sizeof codes / sizeof codes[0]));
    return;
  }
  CHECK(strlen(r->arguments_json) == r->arguments_json_len);
  buf b;
  buf_init(&b, 8 * size + 4096);
  CHECK(ctool_request_encode(r, &b) == AW_OK);
  ctool_request *a = NULL;
  CHECK(ctool_request_decode(b.data, b.len, 8 * size + 4096, &a, &code, err, sizeof err) == AW_OK);
  CHECK(!strcmp(a->correlation_id, r->correlation_id) && !strcmp(a->conversation_id, r->conversation_id));
  CHECK(same_opt(a->thread_id, r->thread_id) && same_opt(a->run_id, r->run_id));
  CHECK(same_opt(a->event_id, r->event_id) && a->round == r->round);
  CHECK(!strcmp(a->tool_call_id, r->tool_call_id) && !strcmp(a->name, r->name));
  CHECK(!strcmp(a->arguments_json, r->arguments_json) && !strcmp(a->reply_topic, r->reply_topic));
  CHECK(a->deadline_ms == r->deadline_ms);
  ctool_request_free(a);
  buf_free(&b);
  ctool_request_free(r);
}

/** libFuzzer entry point: one input = one Kafka message value (or id, or JSON). */
static void fuzz_usage(const uint8_t *data, size_t size) {
  static const char *const codes[] = {"malformed_record", "missing_field", "invalid_field", "unsupported_version",
                                      "record_too_large"};
  cusage_record *r = NULL;
  const char *code = NULL;
  char err[256];
  int rc = cusage_decode(data, size, &r, &code, err, sizeof err);
  if (rc) {
    CHECK(r == NULL && known(code, codes, sizeof codes / sizeof codes[0]));
    return;
  }
  CHECK(r && !code && r->cached_tokens <= r->input_tokens && r->reasoning_tokens <= r->output_tokens);
  buf b;
  buf_init(&b, CUSAGE_MAX_RECORD);
  rc = cusage_encode(r, &b);
  /* A decoded record encodes unless its times run backwards, which only the
   * encoder checks (it computes duration_ms). */
  CHECK(rc == AW_OK || (rc == AW_EINVAL && r->completed_ms < r->started_ms));
  if (rc == AW_OK) {
    cusage_record *again = NULL;
    CHECK(cusage_decode(b.data, b.len, &again, &code, err, sizeof err) == AW_OK);
    CHECK(!strcmp(again->event_id, r->event_id) && !strcmp(again->model, r->model) &&
          str_eq(again->tenant, r->tenant) && again->total_tokens == r->total_tokens &&
          again->tokens_reported == r->tokens_reported);
    cusage_free(again);
  }
  buf_free(&b);
  cusage_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static corr_key k;
  static int ready;
  if (!ready) {
    CHECK(corr_key_init(&k, "fuzz-secret-0123456789abcdef", 28) == AW_OK);
    ready = 1;
  }
  fuzz_reply(data, size, &k);
  fuzz_corr(data, size, &k);
  fuzz_arguments(data, size);
  fuzz_request(data, size);
  fuzz_usage(data, size);
  return 0;
}

/* fuzz_request.c -- libFuzzer target for the request decoder and the JSON view.
 *
 * Build: cmake -DAW_FUZZ=ON -DAW_SANITIZE=ON -DCMAKE_C_COMPILER=clang, then
 *   ./fuzz_request -max_total_time=60 corpus/
 * Good seeds: the msgpack form of schemas/examples/request-*.json.
 *
 * Beyond "does not crash", it checks the properties callers rely on:
 *  - failure: a known error code, no request, ids are "" or valid;
 *  - success: the request re-encodes and decodes to the same request;
 *  - contract_to_json either refuses (EPARSE) or yields JSON cJSON accepts.
 * A violated property aborts, so libFuzzer saves the input.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: property violated: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                   \
    }                                                                            \
  } while (0)

static int known_code(const char *c) {
  static const char *const codes[] = {"malformed_event", "missing_field", "invalid_field",
                                      "unsupported_version", "event_too_large"};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    if (c && !strcmp(c, codes[i])) return 1;
  return 0;
}

static int str_eq(const char *a, const char *b) {
  return (!a && !b) || (a && b && !strcmp(a, b));
}

static void check_same(const contract_request *a, const contract_request *b) {
  CHECK(a->v == b->v);
  CHECK(str_eq(a->event_id, b->event_id));
  CHECK(str_eq(a->conversation_id, b->conversation_id));
  CHECK(str_eq(a->assistant, b->assistant));
  CHECK(a->nparts == b->nparts);
  for (size_t i = 0; i < a->nparts; i++) {
    CHECK(a->parts[i].type == b->parts[i].type);
    CHECK(a->parts[i].text_len == b->parts[i].text_len);
    CHECK(!memcmp(a->parts[i].text, b->parts[i].text, a->parts[i].text_len));
    CHECK(str_eq(a->parts[i].detail, b->parts[i].detail));
  }
  CHECK(a->nmetadata == b->nmetadata);
  for (size_t i = 0; i < a->nmetadata; i++) {
    CHECK(str_eq(a->metadata[i].key, b->metadata[i].key));
    CHECK(str_eq(a->metadata[i].value, b->metadata[i].value));
  }
  CHECK(str_eq(a->instructions, b->instructions));
  CHECK(str_eq(a->additional_instructions, b->additional_instructions));
  CHECK(a->stream == b->stream);
}

/** libFuzzer entry point: one input = one Kafka message value. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  contract_limits lim;
  contract_limits_default(&lim);
  contract_request *r = NULL;
  const char *code = NULL;
  char ev[129], conv[257], err[256];
  int rc = contract_request_decode(data, size, &lim, &r, &code, ev, sizeof ev, conv, sizeof conv,
                                   err, sizeof err);
  if (rc) {
    CHECK(r == NULL);
    CHECK(known_code(code));
    CHECK(strlen(ev) <= 128 && strlen(conv) <= 256);
  } else {
    CHECK(r && code == NULL && r->nparts >= 1 && r->nparts <= lim.max_parts);
    CHECK(!strcmp(ev, r->event_id) && !strcmp(conv, r->conversation_id));
    for (size_t i = 0; i < r->nparts; i++) CHECK(strlen(r->parts[i].text) == r->parts[i].text_len);
    buf b;
    buf_init(&b, 4 * size + 1024);
    CHECK(contract_request_encode(r, &b) == AW_OK);
    /* Re-encoding adds "stream" and drops unknown keys, so it can exceed a
     * limit the input just met; only compare when it fits. */
    if (b.len <= lim.max_event_bytes) {
      contract_request *again = NULL;
      rc = contract_request_decode(b.data, b.len, &lim, &again, &code, ev, sizeof ev, conv,
                                   sizeof conv, err, sizeof err);
      CHECK(rc == AW_OK);
      check_same(r, again);
      contract_request_free(again);
    }
    buf_free(&b);
    contract_request_free(r);
  }

  buf j;
  buf_init(&j, 64 * size + 1024);
  rc = contract_to_json(data, size, &j);
  /* ETOOBIG: keys that are maps nest escaped JSON text and can outgrow any
   * fixed multiple of the input. */
  CHECK(rc == AW_OK || rc == AW_EPARSE || rc == AW_ETOOBIG);
  if (rc == AW_OK) {
    cJSON *p = cJSON_ParseWithLength(j.data, j.len);
    CHECK(p != NULL);
    cJSON_Delete(p);
  } else {
    CHECK(j.len == 0);
  }
  buf_free(&j);
  return 0;
}

/* fuzz_request.c -- libFuzzer target for the request decoder and the JSON view.
 *
 * Build: cmake -DAW_FUZZ=ON -DAW_SANITIZE=ON -DCMAKE_C_COMPILER=clang, then
 *   ./fuzz_request -max_total_time=60 corpus/
 * Good seeds: the msgpack form of schemas/examples/request-*.json (every
 * kind: text, parts, history, append, reset, delete, cancel; inline
 * images and attachments as bin), kept in tests/fuzz/seeds/fuzz_request/
 * (tests/run.sh passes that directory after the growing corpus).
 *
 * Beyond "does not crash", it checks the properties callers rely on:
 *  - failure: a known error code, no request, ids are "" or valid;
 *  - success: the request re-encodes and decodes to the same request, kind
 *    and kind fields included; the kind's invariants hold (a message has
 *    parts, history a limit 1..100 and not both cursors, append 1..16
 *    messages of text parts with a user or assistant role, no kind has
 *    another kind's fields; files: inline data within max_inline_bytes with
 *    an image type, at most max_attachments attachments, each exactly one
 *    of a file id or bytes with a name and a listed type, tools set);
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
                                      "unsupported_version", "event_too_large", "file_too_large",
                                      "too_many_attachments", "unsupported_media_type"};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
    if (c && !strcmp(c, codes[i])) return 1;
  return 0;
}

static int str_eq(const char *a, const char *b) {
  return (!a && !b) || (a && b && !strcmp(a, b));
}

static void check_parts(const contract_part *a, size_t na, const contract_part *b, size_t nb) {
  CHECK(na == nb);
  for (size_t i = 0; i < na; i++) {
    CHECK(a[i].type == b[i].type);
    CHECK(a[i].text_len == b[i].text_len);
    CHECK(a[i].text_len == 0 || !memcmp(a[i].text, b[i].text, a[i].text_len));
    CHECK(str_eq(a[i].detail, b[i].detail));
    CHECK(a[i].data_len == b[i].data_len && !a[i].data == !b[i].data);
    CHECK(!a[i].data || !memcmp(a[i].data, b[i].data, a[i].data_len));
    CHECK(str_eq(a[i].media_type, b[i].media_type));
    CHECK(str_eq(a[i].filename, b[i].filename));
  }
}

static void check_same(const contract_request *a, const contract_request *b) {
  CHECK(a->v == b->v);
  CHECK(a->kind == b->kind);
  CHECK(str_eq(a->event_id, b->event_id));
  CHECK(str_eq(a->conversation_id, b->conversation_id));
  CHECK(str_eq(a->assistant, b->assistant));
  check_parts(a->parts, a->nparts, b->parts, b->nparts);
  CHECK(a->nmetadata == b->nmetadata);
  for (size_t i = 0; i < a->nmetadata; i++) {
    CHECK(str_eq(a->metadata[i].key, b->metadata[i].key));
    CHECK(str_eq(a->metadata[i].value, b->metadata[i].value));
  }
  CHECK(str_eq(a->instructions, b->instructions));
  CHECK(str_eq(a->additional_instructions, b->additional_instructions));
  CHECK(a->stream == b->stream);
  CHECK(a->limit == b->limit);
  CHECK(str_eq(a->after, b->after));
  CHECK(str_eq(a->before, b->before));
  CHECK(a->order_asc == b->order_asc);
  CHECK(a->nmessages == b->nmessages);
  for (size_t i = 0; i < a->nmessages; i++) {
    CHECK(str_eq(a->messages[i].role, b->messages[i].role));
    check_parts(a->messages[i].parts, a->messages[i].nparts, b->messages[i].parts, b->messages[i].nparts);
  }
  CHECK(str_eq(a->target_event_id, b->target_event_id));
  CHECK(a->include_steps == b->include_steps);
  CHECK(a->nattachments == b->nattachments);
  for (size_t i = 0; i < a->nattachments; i++) {
    const contract_attachment *x = &a->attachments[i], *y = &b->attachments[i];
    CHECK(str_eq(x->file_id, y->file_id) && str_eq(x->filename, y->filename) && str_eq(x->media_type, y->media_type));
    CHECK(x->tools == y->tools && x->data_len == y->data_len && !x->data == !y->data);
    CHECK(!x->data || !memcmp(x->data, y->data, x->data_len));
  }
}

/* The files of a decoded request (contract.h). */
static void check_files(const contract_request *r, const contract_limits *lim) {
  for (size_t i = 0; i < r->nparts; i++) {
    const contract_part *p = &r->parts[i];
    if (!p->data) {
      CHECK(!p->media_type && !p->filename && p->data_len == 0);
      continue;
    }
    CHECK(p->type == CONTRACT_PART_IMAGE_FILE && !p->text && p->text_len == 0);
    CHECK(p->data_len >= 1 && p->data_len <= lim->max_inline_bytes);
    CHECK(p->media_type && strstr(CONTRACT_IMAGE_TYPES, p->media_type));
    CHECK(!p->filename || (strlen(p->filename) >= 1 && strlen(p->filename) <= 255 && !strpbrk(p->filename, "/\\")));
  }
  CHECK(r->nattachments <= lim->max_attachments && !r->nattachments == !r->attachments);
  for (size_t i = 0; i < r->nattachments; i++) {
    const contract_attachment *at = &r->attachments[i];
    CHECK(!at->file_id != !at->data);
    CHECK(at->tools >= 1 && at->tools <= (CONTRACT_ATT_FILE_SEARCH | CONTRACT_ATT_CODE_INTERPRETER));
    if (at->data) {
      CHECK(at->data_len >= 1 && at->data_len <= lim->max_inline_bytes);
      CHECK(at->filename && !strpbrk(at->filename, "/\\") && contract_attachment_type_ok(at->media_type));
    } else {
      CHECK(!at->filename && !at->media_type && at->data_len == 0);
    }
  }
}

/* What contract.h promises of a decoded request of each kind. */
static void check_kind(const contract_request *r, const contract_limits *lim) {
  CHECK((unsigned)r->kind < CONTRACT_KIND_COUNT);
  const int message = r->kind == CONTRACT_KIND_MESSAGE, history = r->kind == CONTRACT_KIND_HISTORY;
  CHECK(message ? (r->assistant && r->nparts >= 1 && r->nparts <= lim->max_parts) : r->nparts == 0);
  CHECK(message || (!r->instructions && !r->additional_instructions && !r->stream));
  CHECK(history ? (r->limit >= 1 && r->limit <= CONTRACT_HISTORY_LIMIT_MAX && !(r->after && r->before))
                : (r->limit == 0 && !r->after && !r->before && !r->order_asc));
  if (r->kind == CONTRACT_KIND_APPEND) {
    CHECK(r->nmessages >= 1 && r->nmessages <= CONTRACT_APPEND_MAX_MESSAGES && r->messages);
    for (size_t i = 0; i < r->nmessages; i++) {
      const contract_in_message *m = &r->messages[i];
      CHECK(m->role && (!strcmp(m->role, "user") || !strcmp(m->role, "assistant")));
      CHECK(m->nparts >= 1 && m->nparts <= lim->max_parts);
      for (size_t j = 0; j < m->nparts; j++) {
        CHECK(m->parts[j].type == CONTRACT_PART_TEXT);
        CHECK(strlen(m->parts[j].text) == m->parts[j].text_len && m->parts[j].text_len >= 1);
      }
    }
  } else {
    CHECK(r->nmessages == 0 && !r->messages);
  }
  CHECK(r->kind == CONTRACT_KIND_CANCEL || !r->target_event_id);
  CHECK(message || (!r->nattachments && !r->include_steps));
  check_files(r, lim);
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
    CHECK(r && code == NULL);
    check_kind(r, &lim);
    CHECK(!strcmp(ev, r->event_id) && !strcmp(conv, r->conversation_id));
    for (size_t i = 0; i < r->nparts; i++)
      CHECK(r->parts[i].data ? !r->parts[i].text : strlen(r->parts[i].text) == r->parts[i].text_len);
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

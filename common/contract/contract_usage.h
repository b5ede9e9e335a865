/* contract_usage.h -- the usage record of the Kafka contract (prefix cusage_).
 *
 * One record per finished turn that reached the API, on the usage topic
 * (default assistant.usage, key = conversation_id), produced in the same
 * Kafka transaction as the turn's response (schemas/README.md, "usage";
 * schemas/usage.schema.json):
 *
 *   {v, event_id, conversation_id, tenant?, assistant, model, backend,
 *    status, input_tokens, output_tokens, cached_tokens, reasoning_tokens,
 *    total_tokens, tokens_reported, tool_rounds, tool_calls, started_ms,
 *    completed_ms, duration_ms}
 *
 * Its own module (not contract.c) because it is a message of its own with
 * its own consumers (billing, quotas) and its own decoder, which those
 * consumers written in C and the tests use; contract.c stays the request,
 * response, delta and dead letter.
 *
 * Strict and bounded like the other codecs: the encoder refuses what the
 * decoder would refuse (so every record the worker writes reads back), the
 * decoder takes one msgpack map and nothing after it, strings valid UTF-8
 * without NUL, unknown keys ignored, a repeated known key refused, nil as
 * absent, every size checked before anything is copied, and the decoded
 * record is one allocation.
 *
 * Threads: no shared state; any thread.
 */
#ifndef AW_CONTRACT_USAGE_H
#define AW_CONTRACT_USAGE_H

#include <stddef.h>
#include <stdint.h>
#include "aw_error.h"
#include "buf.h"

#define CUSAGE_VERSION 1
#define CUSAGE_DEFAULT_TOPIC "assistant.usage"

/* Fixed bounds, in UTF-8 bytes (exceeding one is invalid_field). */
#define CUSAGE_MAX_EVENT_ID 128        /* as in the request */
#define CUSAGE_MAX_CONVERSATION_ID 256 /* as in the request */
#define CUSAGE_MAX_TENANT 512          /* a request metadata value, at most */
#define CUSAGE_MAX_ASSISTANT 256       /* a configured name or an asst_ id */
#define CUSAGE_MAX_MODEL 256
/* A whole record is far below this; the decoder refuses more before parsing. */
#define CUSAGE_MAX_RECORD (16 * 1024)

/** One usage record.  Strings are borrowed (encode) or point into the
 *  decoded allocation (decode). */
typedef struct cusage_record {
  const char *event_id;        /* 1..128 */
  const char *conversation_id; /* 1..256 */
  const char *tenant;          /* NULL: the key is left out; else 1..512 */
  const char *assistant;       /* 1..256: the configured name (or the asst_ id named) */
  const char *model;           /* 1..256: the model the API says it used, else the configured one */
  const char *backend;         /* "assistants" | "responses" | "chat" */
  const char *status;          /* completed | incomplete | failed | cancelled | expired */
  /* Tokens of the whole turn, every round and request included; cached is
   * part of input, reasoning part of output (as the APIs count them). */
  int64_t input_tokens, output_tokens, cached_tokens, reasoning_tokens, total_tokens;
  int tokens_reported;         /* 0: the API reported no usage (counts are 0, unknown) */
  int64_t tool_rounds, tool_calls;
  int64_t started_ms, completed_ms, duration_ms; /* unix ms; duration = completed - started */
} cusage_record;

/** Append the msgpack record to out.  AW_EINVAL (out untouched) for a
 *  missing or out-of-bound string, a string that is not valid UTF-8 or holds
 *  a NUL, a backend or status outside the enums, a negative number, cached >
 *  input or reasoning > output; AW_ETOOBIG / AW_ENOMEM free out, as buf
 *  does. */
int cusage_encode(const cusage_record *r, buf *out) AW_MUST_CHECK;

/** Decode a record.  On success *out is one allocation (free with
 *  cusage_free).  AW_EPARSE ("malformed_record": not msgpack, trailing
 *  bytes, not a map, nested too deep), AW_EINVAL ("missing_field",
 *  "invalid_field": the encoder's rules; "unsupported_version"), AW_ETOOBIG
 *  ("record_too_large": over CUSAGE_MAX_RECORD), AW_ENOMEM
 *  ("internal_error"); *err_code and errstr say which field. */
int cusage_decode(const void *data, size_t len, cusage_record **out, const char **err_code, char *errstr,
                  size_t errstr_size) AW_MUST_CHECK;

/** Free a decoded record (NULL is fine). */
void cusage_free(cusage_record *r);

#endif

/* contract_tool.h -- tool-call messages of the Kafka contract (prefix ctool_).
 *
 * When a run stops in requires_action, the worker publishes one tool request
 * per tool call and waits for one tool reply per call (schemas/README.md,
 * section "Tool calls"; schemas/tool-*.schema.json):
 *
 *   tool request (assistant.tool-requests, key = conversation_id)
 *     {v, correlation_id, conversation_id, thread_id, run_id, tool_call_id,
 *      name, arguments, arguments_json, deadline_ms, reply_topic,
 *      event_id?, round?}   (? = additive: absent in older messages)
 *   tool reply   (assistant.tool-replies, key = conversation_id)
 *     {v, correlation_id, output} or {v, correlation_id, error: {code, message}}
 *
 * The W3C traceparent travels in the Kafka headers, not in the value, and
 * so do the signatures of both messages (tool_sign.h).
 * The correlation id is made and checked by correlation.h; this module only
 * carries it.
 *
 * Decoding is strict and bounded like contract.h's: one msgpack map and
 * nothing after it, strings valid UTF-8 without NUL, unknown keys ignored,
 * a repeated known key refused, a nil value counts as absent, every size
 * checked before anything is copied, the decoded struct is one allocation.
 * Encoders check their arguments first (AW_EINVAL leaves out untouched);
 * AW_ETOOBIG / AW_ENOMEM free out, as buf does.  Strings are emitted as
 * valid UTF-8 (invalid bytes become U+FFFD).
 *
 * Threads: no shared state; every function may be called from any thread.
 */
#ifndef AW_CONTRACT_TOOL_H
#define AW_CONTRACT_TOOL_H

#include <stddef.h>
#include <stdint.h>
#include "aw_error.h"
#include "buf.h"

#define CTOOL_VERSION 1

#define CTOOL_DEFAULT_REQUEST_TOPIC "assistant.tool-requests"
#define CTOOL_DEFAULT_REPLY_TOPIC "assistant.tool-replies"

/* Fixed bounds of the contract, in UTF-8 bytes (exceeding one is invalid_field). */
#define CTOOL_MAX_CORRELATION_ID 128
#define CTOOL_MAX_CONVERSATION_ID 256
#define CTOOL_MAX_OPENAI_ID 128      /* thread_id, run_id, tool_call_id */
#define CTOOL_MAX_EVENT_ID 128       /* as in the request (contract.h) */
#define CTOOL_MAX_NAME 64            /* OpenAI's limit on function names */
#define CTOOL_MAX_TOPIC 249          /* Kafka's limit on topic names */
#define CTOOL_MAX_ERROR_CODE 64
#define CTOOL_MAX_ERROR_MESSAGE 4096
/* JSON nesting allowed in arguments: the tool request's own map is one more
 * level, and our msgpack scanners stop at 24. */
#define CTOOL_MAX_ARGUMENTS_DEPTH 20

/* Configurable limits (0 passed to a decoder means the default). */
#define CTOOL_DEFAULT_MAX_REQUEST (1024 * 1024) /* whole tool request */
#define CTOOL_DEFAULT_MAX_OUTPUT (256 * 1024)   /* a reply's output */
/* What a reply may carry beside its output (ids, error, unknown keys). */
#define CTOOL_REPLY_OVERHEAD (64 * 1024)

/* Reasons a consumed tool reply goes to the dead-letter topic instead of to
 * a run (error.code of the dlq message); decoding failures use the decoder's
 * codes below.  See schemas/README.md. */
#define CTOOL_DLQ_BAD_CORRELATION "bad_correlation_id"   /* malformed or bad signature */
#define CTOOL_DLQ_UNKNOWN_CORRELATION "unknown_correlation_id" /* not issued, or forgotten */
#define CTOOL_DLQ_ALREADY_ANSWERED "already_answered"     /* a duplicate reply */
#define CTOOL_DLQ_RUN_NOT_WAITING "run_not_waiting"       /* late, cancelled or finished run */
/* Reply authentication (tool_sign.h): checked before anything else, so a
 * reply that anyone who reads the request topic could have written is never
 * recorded (and cannot take the call's place before the genuine reply). */
#define CTOOL_DLQ_UNSIGNED_REPLY "unsigned_reply"         /* no aw-sig header */
#define CTOOL_DLQ_BAD_REPLY_SIGNATURE "bad_reply_signature" /* malformed, or not the MAC under any key */
/* The call's correlation id pins another reply topic than the one the reply
 * came from (functions.<name>.reply_topic). */
#define CTOOL_DLQ_WRONG_REPLY_TOPIC "wrong_reply_topic"

/* ---- tool request ----------------------------------------------------------- */

typedef struct ctool_request {
  int v;                       /* 0 means CTOOL_VERSION when encoding */
  const char *correlation_id;  /* from corr_new() */
  const char *conversation_id;
  const char *thread_id;       /* Assistants backend only: the thread; NULL (nil) on the others */
  const char *run_id;          /* Assistants backend only: the run; NULL (nil) on the others */
  const char *tool_call_id;    /* call_... */
  const char *name;            /* the function name */
  const char *arguments_json;  /* the arguments exactly as the model wrote them */
  size_t arguments_json_len;
  int64_t deadline_ms;         /* unix ms; the worker stops waiting then */
  const char *reply_topic;
  /* Additive keys (v stays 1), written only when set; decoded as NULL / 0
   * when absent (messages of older workers): */
  const char *event_id;        /* the request event whose turn made the call */
  int round;                   /* >= 1: the round of function calls within the turn; 0: unset */
  /* Decoded only (the encoder derives them from arguments_json): the
   * msgpack map of the arguments, or NULL / 0 when arguments was nil. */
  const void *arguments;
  size_t arguments_len;
} ctool_request;

/** Convert the JSON text of a function call's arguments into msgpack,
 *  appended to out, parsing with cJSON.  The text must be one JSON object
 *  (surrounding whitespace allowed) with unique member names per object,
 *  nested at most CTOOL_MAX_ARGUMENTS_DEPTH deep, valid UTF-8, without
 *  "\u0000" and non-finite numbers; else AW_EPARSE with out untouched.
 *  Integral numbers up to 2^53 become msgpack ints, others float64 (cJSON
 *  keeps numbers as doubles; arguments_json keeps the exact text).
 *  AW_ETOOBIG / AW_ENOMEM free out. */
int ctool_arguments_to_msgpack(const char *json, size_t len, buf *out) AW_MUST_CHECK;

/** Append the msgpack encoding of r.  Every string field is required
 *  (AW_EINVAL if NULL) except thread_id / run_id (NULL written as nil) and
 *  event_id (NULL: the key is left out); deadline_ms must be >= 0, round
 *  >= 0 (0: the key is left out).  The worker always sets event_id and
 *  round; they are optional here so that every decodable request, also an
 *  older one, encodes again.  `arguments` is the
 *  conversion of arguments_json by ctool_arguments_to_msgpack(), or nil when
 *  that refuses it; arguments_json is written as given (invalid UTF-8
 *  replaced).  r->arguments / r->arguments_len are ignored. */
int ctool_request_encode(const ctool_request *r, buf *out) AW_MUST_CHECK;

/** Decode a tool request (for tool services and tests).  max_bytes bounds
 *  the whole message (0: CTOOL_DEFAULT_MAX_REQUEST).  On success *out owns
 *  everything (one allocation, free with ctool_request_free).  Failures:
 *  AW_EPARSE "malformed_request" (not one msgpack map, trailing bytes, nested
 *  deeper than 24), AW_EINVAL "missing_field" / "invalid_field" /
 *  "unsupported_version", AW_ETOOBIG "request_too_large", AW_ENOMEM
 *  "internal_error"; the field is named in errstr.  err_code may be NULL.
 *  thread_id, run_id and event_id may be absent or nil (NULL), round
 *  absent or nil (0); when present they must be valid (round >= 1). */
int ctool_request_decode(const void *data, size_t len, size_t max_bytes, ctool_request **out,
                         const char **err_code, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Free a decoded request (one free(); NULL is fine). */
void ctool_request_free(ctool_request *r);

/* ---- tool reply ------------------------------------------------------------- */

typedef struct ctool_reply {
  int v;                      /* 0 means CTOOL_VERSION when encoding */
  const char *correlation_id; /* copied from the request */
  /* Exactly one of output (error_code == NULL) or error (output == NULL). */
  const char *output;         /* may be "", never contains NUL */
  size_t output_len;
  const char *error_code;     /* 1..64 bytes */
  const char *error_message;  /* <= 4096 bytes */
} ctool_reply;

/** Append a reply.  AW_EINVAL unless correlation_id is set and exactly one of
 *  output / error_code is (error_message NULL is written as ""). */
int ctool_reply_encode(const ctool_reply *r, buf *out) AW_MUST_CHECK;

/** Decode a reply.  max_output bounds output (0: CTOOL_DEFAULT_MAX_OUTPUT);
 *  the whole message may be at most max_output + CTOOL_REPLY_OVERHEAD bytes.
 *  On success *out owns everything (one allocation, free with
 *  ctool_reply_free), output is NUL-terminated with output_len ==
 *  strlen(output).  Failures (field named in errstr; err_code may be NULL):
 *  AW_EPARSE "malformed_reply", AW_EINVAL "missing_field" (no
 *  correlation_id, neither output nor error) / "invalid_field" (wrong type,
 *  both output and error, duplicate key, bad UTF-8 or NUL, out of a fixed
 *  bound) / "unsupported_version", AW_ETOOBIG "reply_too_large", AW_ENOMEM
 *  "internal_error".  The correlation id is not verified here (corr_verify). */
int ctool_reply_decode(const void *data, size_t len, size_t max_output, ctool_reply **out,
                       const char **err_code, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Free a decoded reply (one free(); NULL is fine). */
void ctool_reply_free(ctool_reply *r);

#endif

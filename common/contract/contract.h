/* contract.h -- the Kafka message contract in msgpack (prefix contract_).
 *
 * schemas/README.md documents every message with examples; the schemas/ JSON files are
 * the machine-checkable JSON Schemas of each message's JSON view (the msgpack
 * map converted to JSON, binary as base64).  Version 1 of the contract:
 *
 *   request   (assistant.requests,  key = conversation_id)
 *   response  (assistant.responses, key = conversation_id)
 *   delta     (assistant.deltas,    key = conversation_id)
 *   dlq       (assistant.dlq,       key = the original key)
 *
 * Decoding is strict and bounded: a decoded request owns one allocation with
 * all its strings (NUL-terminated, no NUL inside, so text_len == strlen(text);
 * valid UTF-8 checked), and every size is
 * checked against contract_limits before anything is copied.
 */
#ifndef AW_CONTRACT_H
#define AW_CONTRACT_H

#include <stddef.h>
#include <stdint.h>
#include "aw_error.h"
#include "buf.h"

#define CONTRACT_VERSION 1

/* ---- request -------------------------------------------------------------- */

typedef enum {
  CONTRACT_PART_TEXT = 0,
  CONTRACT_PART_IMAGE_URL,  /* an image by URL (https: or data:) */
  CONTRACT_PART_IMAGE_FILE, /* an image by file id, or inline bytes the worker uploads */
  CONTRACT_PART_FILE,       /* reserved: decoded, refused by the worker (use attachments) */
} contract_part_type;

typedef struct contract_part {
  contract_part_type type;
  const char *text;     /* TEXT: the text; IMAGE_URL: the url; *_FILE: file_id
                           (IMAGE_FILE with inline data: NULL, text_len 0) */
  size_t text_len;
  const char *detail;   /* IMAGE_*: optional "auto"/"low"/"high"; else NULL */
  /* IMAGE_FILE given inline (`data`, exactly one of file_id / data): the
   * bytes (bin, 1..max_inline_bytes), their media type (`media_type`, one
   * of CONTRACT_IMAGE_TYPES) and an optional `filename` (NULL: none).
   * The worker uploads them and sends the file id (a chat backend sends a
   * data: URL instead).  data NULL: not inline. */
  const void *data;
  size_t data_len;
  const char *media_type;
  const char *filename;
} contract_part;

/* The image media types a request may carry inline (OpenAI's vision inputs). */
#define CONTRACT_IMAGE_TYPES "image/png, image/jpeg, image/gif, image/webp"

/* The hosted tools an attachment is for (`tools`: an array of 1..2 of
 * "file_search", "code_interpreter"; a bit each). */
#define CONTRACT_ATT_FILE_SEARCH 1u
#define CONTRACT_ATT_CODE_INTERPRETER 2u

/** A file attached to a message (`attachments`: 0..max_attachments maps),
 *  for the hosted tools that read it: a file id, or inline bytes with a
 *  name (1..255 bytes; no '/', '\\', control character, "." or "..": it goes
 *  into the upload's form headers; the APIs tell file kinds by their extension) and a media type (one of contract_attachment_type_ok's).  The
 *  worker uploads inline bytes once per event and sends the file id. */
typedef struct contract_attachment {
  const char *file_id;     /* NULL when inline */
  const void *data;        /* inline bytes, NULL when file_id */
  size_t data_len;
  const char *filename;    /* inline: required; with file_id: NULL */
  const char *media_type;  /* inline: required; with file_id: NULL */
  unsigned tools;          /* CONTRACT_ATT_* bits, at least one */
} contract_attachment;

/** 1 when an attachment may carry this media type inline: the text and
 *  document types file_search indexes and the data types code_interpreter
 *  reads (text/plain, text/markdown, text/csv, text/html, application/json,
 *  application/pdf, the OOXML documents, ...); the list is in
 *  schemas/README.md.  Parameters (";charset=...") are ignored. */
int contract_attachment_type_ok(const char *media_type);

typedef struct contract_kv {
  const char *key;
  const char *value;
} contract_kv;

/* The request's kind (`kind`; absent: a message, as in v1).  A message
 * starts a turn; the others manage the conversation (README, "Conversation
 * requests") and are answered on the responses topic with the same
 * event_id and `kind`. */
typedef enum contract_kind {
  CONTRACT_KIND_MESSAGE = 0, /* a user message: a turn (assistant, content) */
  CONTRACT_KIND_HISTORY,     /* read the conversation's messages, paged */
  CONTRACT_KIND_APPEND,      /* add messages without a turn */
  CONTRACT_KIND_RESET,       /* the next message starts a new backend conversation */
  CONTRACT_KIND_DELETE,      /* delete the conversation and every key the fleet holds for it */
  CONTRACT_KIND_CANCEL,      /* cancel the conversation's active turn */
} contract_kind;

#define CONTRACT_KIND_COUNT 6
#define CONTRACT_HISTORY_LIMIT_DEFAULT 20
#define CONTRACT_HISTORY_LIMIT_MAX 100
#define CONTRACT_APPEND_MAX_MESSAGES 16

/** The wire name of a kind ("message", "history", ...); "message" for an
 *  out-of-range value. */
const char *contract_kind_name(contract_kind k);

/** One message of an `append` request. */
typedef struct contract_in_message {
  const char *role;     /* "user" | "assistant" */
  contract_part *parts; /* nparts >= 1, text parts only (others: invalid_field) */
  size_t nparts;
} contract_in_message;

typedef struct contract_request {
  int v;
  contract_kind kind;          /* CONTRACT_KIND_MESSAGE when `kind` is absent */
  const char *event_id;        /* 1..128 bytes */
  const char *conversation_id; /* 1..256 bytes */
  const char *assistant;       /* configured name or "asst_..." id */
  contract_part *parts;        /* nparts >= 1 */
  size_t nparts;
  contract_kv *metadata;       /* string values only; OpenAI's limits: 16 pairs,
                                  keys <= 64, values <= 512 bytes */
  size_t nmetadata;
  const char *instructions;            /* optional override, else NULL */
  const char *additional_instructions; /* optional, else NULL */
  int stream;                          /* 1 if deltas were asked for */
  /* kind history: the page asked for (`limit` 1..CONTRACT_HISTORY_LIMIT_MAX,
   * default CONTRACT_HISTORY_LIMIT_DEFAULT; `after` / `before`: message ids
   * from an earlier page, at most one of them; `order` "asc" | "desc",
   * default "desc", newest first, as the APIs' list endpoints). */
  long limit;                          /* 0 unless kind history */
  const char *after, *before;          /* NULL: absent */
  int order_asc;                       /* 1: "asc" */
  /* kind append: the messages to add, in order (1..CONTRACT_APPEND_MAX_MESSAGES). */
  contract_in_message *messages;
  size_t nmessages;
  /* kind cancel: the event whose turn is to be cancelled; NULL: whatever
   * turn of the conversation is active. */
  const char *target_event_id;
  /* kind message: files for the hosted tools (0..max_attachments), and
   * `include_steps` (bool): the response lists the turn's tool calls
   * (`steps`: file search queries and results, code and its outputs). */
  contract_attachment *attachments;
  size_t nattachments;
  int include_steps;
} contract_request;

typedef struct contract_limits {
  size_t max_event_bytes;   /* whole msgpack payload (default 1 MiB) */
  size_t max_text_bytes;    /* one text part (default 256 KiB) */
  size_t max_parts;         /* default 16 */
  size_t max_attachments;   /* attachments per message (default 10, the Assistants API's) */
  size_t max_inline_bytes;  /* inline bytes of one image part or attachment (default 512 KiB;
                               the whole event stays within max_event_bytes):
                               over it, file_too_large */
  int conversation_id_optional; /* 1: a request may leave conversation_id out (then NULL):
                                   its Kafka key names the conversation (worker.key_rule
                                   route_by_key); default 0 */
} contract_limits;

/** Defaults for contract_limits. */
void contract_limits_default(contract_limits *l);

/** Decode a request.  On success *out owns all memory (one allocation; free
 *  with contract_request_free).  On failure returns AW_EPARSE (not msgpack /
 *  not a map / trailing bytes), AW_EINVAL (missing field, field of the wrong
 *  type or invalid, unsupported version) or AW_ETOOBIG (a contract_limits
 *  limit), with the offending field named in errstr;
 *  *err_code receives a stable machine code for the response's error.code:
 *  "malformed_event", "missing_field", "invalid_field", "unsupported_version",
 *  "event_too_large", and for files "file_too_large" (inline bytes over
 *  max_inline_bytes), "too_many_attachments", "unsupported_media_type"
 *  (and "internal_error" with AW_ENOMEM, which is not the
 *  input's fault).  lim may be NULL for the defaults.  A nil value counts as
 *  absent.  When the event_id / conversation_id could be read
 *  even though decoding failed, they are copied into the caller's
 *  event_id/conv_id buffers (else those are set to ""), so that the rejection
 *  can still be correlated. */
int contract_request_decode(const void *data, size_t len, const contract_limits *lim,
                            contract_request **out, const char **err_code,
                            char *event_id, size_t event_id_size,
                            char *conv_id, size_t conv_id_size,
                            char *errstr, size_t errstr_size) AW_MUST_CHECK;
/** Best effort, for the rejection of a request that did not decode: the
 *  kind its top-level `kind` key names, without allocating;
 *  CONTRACT_KIND_MESSAGE when there is none or it cannot be read. */
contract_kind contract_request_peek_kind(const void *data, size_t len);

/** Free a decoded request (one free(); NULL is fine). */
void contract_request_free(contract_request *r);

/* Encoders append to out.  They check their arguments first (AW_EINVAL
 * leaves out untouched); AW_ETOOBIG / AW_ENOMEM free out, as buf does.
 * Strings are emitted as valid UTF-8 (invalid bytes become U+FFFD). */

/** Encode a request (used by the CLI `send` and by tests).  A single text
 *  part is written in the plain-string form of `content`; r->v == 0 means
 *  CONTRACT_VERSION. */
int contract_request_encode(const contract_request *r, buf *out) AW_MUST_CHECK;

/* ---- response ------------------------------------------------------------- */

typedef struct contract_annotation {
  const char *type;      /* "file_citation" | "file_path" (Assistants: a generated file) |
                            "container_file_citation" (Responses: a generated file) */
  const char *text;      /* the text in the message that is annotated */
  const char *file_id;
  int64_t start_index, end_index;
  const char *filename;  /* the cited file's name where the backend gives it
                            (Responses file_citation); NULL: the key is left out */
  const char *container_id; /* container_file_citation: the container; NULL: left out */
} contract_annotation;

/** A file the turn generated (code interpreter output: a chart, a CSV),
 *  in the response's `files`.  Inline when it fits the configured size
 *  (worker.inline_file_max_bytes), else by reference: `assistant-worker
 *  file get ID [--container C]` downloads it. */
typedef struct contract_file {
  const char *file_id;      /* file-... / cfile_... */
  const char *container_id; /* Responses: the code interpreter's container; NULL: left out */
  const char *filename;     /* its name (no path); NULL: "" */
  const char *media_type;   /* from the name's extension; NULL: application/octet-stream */
  int64_t bytes;            /* its size; -1: unknown */
  const void *data;         /* the content when inline (bin), NULL: by reference */
  size_t data_len;
} contract_file;

/** One hosted-tool call of the turn, for the response's `steps` (only when
 *  the request asked, include_steps). */
typedef struct contract_step_result {
  const char *file_id, *filename;
  double score;
  const char *text;         /* the matched chunk, NULL: left out */
} contract_step_result;

typedef struct contract_step_output {
  const char *type;         /* "logs" | "image" | "file" */
  const char *logs;         /* logs: the text */
  const char *file_id;      /* image / file: the file */
} contract_step_output;

typedef struct contract_step {
  const char *type;         /* "file_search" | "code_interpreter" */
  const char *id;           /* the backend's call id */
  const char *status;       /* "completed", "failed", ... NULL: left out */
  /* file_search */
  const char *const *queries;
  size_t nqueries;
  const contract_step_result *results;
  size_t nresults;
  /* code_interpreter */
  const char *code;
  const contract_step_output *outputs;
  size_t noutputs;
} contract_step;

typedef struct contract_out_part {
  const char *type;      /* "text" | "image_file" (an image the assistant made, written
                            nested as v1 announced: {"type":"image_file","image_file":
                            {"file_id"}}; its file is in the response's `files`) */
  const char *text;      /* text value, or file id for image_file */
  size_t text_len;
  contract_annotation *annotations;
  size_t nannotations;
} contract_out_part;

typedef struct contract_out_message {
  const char *id;        /* msg_... */
  const char *role;      /* "user" | "assistant"; NULL: the key is left out (a
                            turn's answer: always the assistant's) */
  int64_t created_at;    /* unix seconds; 0: the key is left out */
  contract_out_part *parts;
  size_t nparts;
} contract_out_message;

typedef struct contract_usage {
  int present;
  int64_t prompt_tokens, completion_tokens, total_tokens;
  /* Breakdowns as the APIs report them (0 when the API does not say):
   * cached_tokens are part of prompt_tokens, reasoning_tokens part of
   * completion_tokens.  Not in the response's `usage` (its keys are v1's);
   * they travel in the usage record (contract_usage.h). */
  int64_t cached_tokens, reasoning_tokens;
} contract_usage;

typedef struct contract_timings {
  int64_t received_ms;   /* unix ms when the worker consumed the event */
  int64_t run_started_ms;/* unix ms when the run was created (0 if none) */
  int64_t completed_ms;  /* unix ms when the outcome was known */
} contract_timings;

/** One function call a run made, for the response's tool_calls. */
typedef struct contract_tool_call {
  const char *id;        /* call_... */
  const char *name;      /* the function */
  const char *outcome;   /* output|error|timeout|invalid_arguments|unknown_function */
} contract_tool_call;

typedef struct contract_response {
  const char *event_id;
  const char *conversation_id;
  /* Assistants backend only (NULL on the others; use backend_*): */
  const char *thread_id;  /* NULL if none (e.g. rejected before a thread) */
  const char *run_id;     /* NULL if none */
  const char *status;     /* completed|failed|cancelled|expired|incomplete|rejected */
  const contract_out_message *messages;
  size_t nmessages;
  contract_usage usage;
  const char *error_code;    /* NULL when no error */
  const char *error_message;
  contract_timings timings;
  const contract_tool_call *tool_calls; /* the run's function calls, all rounds */
  size_t ntool_calls;                   /* 0: the key is left out */
  /* The `backend` map (additive key, written only when backend_kind is set):
   * which backend answered and its handles, on every backend. */
  const char *backend_kind;         /* "assistants" | "responses" | "chat"; NULL: no `backend` */
  const char *backend_conversation; /* thread_... / conv_...; NULL: nil (always on chat) */
  const char *backend_turn;         /* run_... / resp_... of the (last) turn; NULL: nil */
  const char *tenant;               /* the event's tenant (worker.tenant_source); NULL: the key
                                       is left out (additive) */
  /* Conversation requests (additive keys, written only when kind is not
   * CONTRACT_KIND_MESSAGE): */
  contract_kind kind;               /* `kind`: left out for a message */
  int has_more;                     /* history: `page` {has_more, first_id, last_id}; messages
                                       holds the page, roles and created_at set */
  const char *first_id, *last_id;   /* history: the page's first and last message ids (NULL: nil) */
  const char *cancelled_event_id;   /* cancel: the event whose turn was cancelled; NULL: nil
                                       (no turn was active) */
  /* Additive keys of a message's answer: */
  const contract_file *files;       /* generated files; nfiles 0: `files` left out */
  size_t nfiles;
  const contract_step *steps;       /* with want_steps: `steps` is written (an array, */
  size_t nsteps;                    /* possibly empty); without: left out */
  int want_steps;
} contract_response;

/** Append the msgpack encoding of r to out.  NULL event_id / conversation_id
 *  are written as "" (a rejected event whose ids were unreadable); NULL
 *  thread_id / run_id, usage.present == 0 and error_code == NULL as nil.
 *  tool_calls is written only when ntool_calls > 0, `backend` only when
 *  backend_kind != NULL, `tenant` only when tenant != NULL (additive keys).  AW_EINVAL for a backend_kind
 *  other than the three names, and for backend_conversation / backend_turn
 *  set without backend_kind (they would be dropped silently). */
int contract_response_encode(const contract_response *r, buf *out) AW_MUST_CHECK;

/* ---- delta ---------------------------------------------------------------- */

/** Append a delta: {v, event_id, conversation_id, run_id, seq, attempt, text}.
 *  run_id is the backend's handle of the turn (run_... / resp_...), NULL
 *  written as nil (chat has none).  seq >= 0 counts the deltas of one
 *  attempt from 0; attempt >= 0 is the worker's attempt at the turn (0 the
 *  first; a turn re-generated or recovered after a crash publishes its text
 *  again from seq 0 with attempt + 1).  AW_EINVAL if an id is NULL, seq or
 *  attempt is negative, or text is NULL with text_len > 0. */
int contract_delta_encode(const char *event_id, const char *conversation_id, const char *run_id,
                          int64_t seq, int attempt, const char *text, size_t text_len,
                          buf *out) AW_MUST_CHECK;

/* ---- dead letter ---------------------------------------------------------- */

typedef struct contract_dlq {
  const void *original;   /* the original bytes, as received (may be NULL if len 0) */
  size_t original_len;
  const void *original_key;
  size_t original_key_len;
  const char *topic;
  int32_t partition;
  int64_t offset;
  const char *error_code;
  const char *error_message;
  const char *event_id;        /* if known, else NULL */
  const char *conversation_id; /* if known, else NULL */
  int64_t failed_ms;
  /* A degraded dead letter (the whole original did not fit the producer's
   * or the topic's size limit): original holds only its leading bytes;
   * original_size is the whole original's size and original_sha256 its
   * SHA-256 in lower-case hex.  original_size 0: not degraded (both keys
   * absent). */
  int64_t original_size;
  const char *original_sha256;
} contract_dlq;

/** Append a dead letter.  original is copied byte for byte as bin;
 *  original_key NULL is written as nil (Kafka's null key), non-NULL as bin
 *  (possibly empty); original_size and original_sha256 are written when
 *  original_size is set (AW_EINVAL if original_sha256 is then NULL). */
int contract_dlq_encode(const contract_dlq *d, buf *out) AW_MUST_CHECK;

/* ---- JSON view ------------------------------------------------------------ */

/** Append the JSON view of any msgpack value (maps with string keys become
 *  objects, bin becomes a base64 string, ext becomes {"ext":type,"data":b64}).
 *  Map keys that are not strings become strings (their JSON text; bin: its
 *  base64), invalid UTF-8 becomes \ufffd, NaN/Infinity become null, so the
 *  output is always valid JSON.  Used by `tail`, by tests and by the JSON
 *  Schemas.  AW_EPARSE if data is not exactly one msgpack value or nests
 *  deeper than 24 containers (out untouched); AW_ETOOBIG / AW_ENOMEM free
 *  out, as buf does, so no partial document is left. */
int contract_to_json(const void *data, size_t len, buf *out) AW_MUST_CHECK;

#endif

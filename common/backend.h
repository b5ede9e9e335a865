/* backend.h -- the worker's own interface to an assistant backend (prefix be_).
 *
 * The Kafka side of the worker speaks only this interface; the OpenAI
 * Assistants API v2 (backend_assistants.c) is one implementation, and the
 * Responses + Conversations API can be another without touching the worker.
 * Vocabulary:
 *   conversation handle -- the backend's durable id for a conversation
 *                          (an Assistants thread id, "thread_...").
 *   turn                -- one user input on a conversation and everything the
 *                          assistant does until it stops (a run).
 *
 * All calls are asynchronous on the caller's libuv loop and return an AW_E*
 * status for failures detected before any I/O; later failures arrive through
 * the callback.  Every callback is called exactly once per started operation
 * (on_done for turns), unless the operation is cancelled first; after
 * cancel, no callback is called.  Callbacks never run inside the call that
 * started the operation.
 *
 * Strings passed to callbacks are valid only during the callback.
 */
#ifndef AW_BACKEND_H
#define AW_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "aw_error.h"
#include "contract.h"

typedef struct be_backend be_backend;
/* A pending operation; cancel with be_op_cancel.  Every implementation's
 * operation struct begins with a be_op_head so that be_op_cancel can find
 * the backend. */
typedef struct be_op be_op;
typedef struct be_op_head {
  be_backend *be;
} be_op_head;

/** Result of a simple operation. err is AW_OK or AW_E*; errmsg is a precise
 *  human-readable reason ("POST /v1/threads: HTTP 400 invalid_request_error:
 *  ..."), never containing secrets; id is the created/found object's id. */
typedef struct be_result {
  int err;
  int http_status;         /* last HTTP status seen, 0 if none */
  const char *error_code;  /* API error code/type if any, else NULL */
  const char *errmsg;
  const char *id;
} be_result;

typedef void (*be_result_cb)(void *opaque, const be_result *res);

/* ---- assistants ----------------------------------------------------------- */

typedef struct be_assistant_def {
  const char *name;          /* the configured name, unique per deployment */
  const char *model;
  const char *instructions;  /* may be NULL */
  const char *tools_json;    /* JSON array of tool definitions as the API takes
                                them ("[{\"type\":\"file_search\"}]"), or NULL */
  const char *hash;          /* stable hash of the definition, stored in the
                                assistant's metadata as aw_hash */
} be_assistant_def;

/** Make sure an assistant matching def exists and is up to date.
 *  known_id, if not NULL, is the id remembered from an earlier start.  Looks
 *  it up (or lists assistants by metadata aw_name when unknown), updates it
 *  when its aw_hash differs, creates it when missing.  res->id is the id. */
int be_assistant_ensure(be_backend *be, const be_assistant_def *def, const char *known_id,
                        be_result_cb cb, void *opaque, be_op **op) AW_MUST_CHECK;

/* ---- conversations -------------------------------------------------------- */

/** Create an empty conversation handle; metadata pairs are stored on it
 *  (the worker passes conversation_id).  res->id is the new handle. */
int be_conversation_create(be_backend *be, const contract_kv *metadata, size_t nmetadata,
                           be_result_cb cb, void *opaque, be_op **op) AW_MUST_CHECK;

/** Delete a conversation handle (used when a creation race is lost). */
int be_conversation_delete(be_backend *be, const char *handle, be_result_cb cb, void *opaque,
                           be_op **op) AW_MUST_CHECK;

/* ---- turns ---------------------------------------------------------------- */

typedef struct be_turn_input {
  const char *conversation;  /* handle from be_conversation_create */
  const char *assistant_id;
  const contract_part *parts;
  size_t nparts;
  const contract_kv *metadata; /* user message metadata (worker adds event_id) */
  size_t nmetadata;
  const char *instructions;            /* override, or NULL */
  const char *additional_instructions; /* or NULL */
  int want_deltas;           /* 0: the backend need not decode text deltas */
  const char *log_event_id;  /* for log lines only */
} be_turn_input;

/** The outcome of a turn. */
typedef struct be_turn_result {
  int err;                   /* AW_OK when the run reached a terminal status */
  const char *status;        /* completed|failed|cancelled|expired|incomplete */
  const char *run_id;        /* NULL if no run was created */
  const char *message_id;    /* the user message added, NULL if none */
  const contract_out_message *messages; /* assistant messages of this run */
  size_t nmessages;
  contract_usage usage;
  const char *error_code;    /* run.last_error.code or transport error code */
  const char *errmsg;
  int http_status;
  int64_t run_started_ms;
} be_turn_result;

typedef struct be_turn_events {
  /** The user message was added (id for idempotency records). Optional. */
  void (*on_message_added)(void *opaque, const char *message_id);
  /** The run exists.  Optional. */
  void (*on_run_created)(void *opaque, const char *run_id);
  /** A piece of assistant text, in order; only when want_deltas. Optional. */
  void (*on_text_delta)(void *opaque, const char *text, size_t len);
  /** Exactly once, last.  The turn is freed by the backend after it returns. */
  void (*on_done)(void *opaque, const be_turn_result *res);
} be_turn_events;

/** Start a turn: add the user message to the conversation, start a run of
 *  the assistant and follow it to a terminal status (streaming; when the
 *  stream drops after the run was created, the run is followed by polling,
 *  never started twice).  events must stay valid until on_done. */
int be_turn_start(be_backend *be, const be_turn_input *in, const be_turn_events *events,
                  void *opaque, be_op **op) AW_MUST_CHECK;

/* Later issues add here: submit tool outputs of a turn waiting for them
 * (function calling), fetch a generated file. */

/** Cancel a pending operation: no callback follows.  Safe on NULL. */
void be_op_cancel(be_op *op);

/** Backend operations table; implementations fill one in. */
typedef struct be_ops {
  int (*assistant_ensure)(be_backend *, const be_assistant_def *, const char *, be_result_cb, void *, be_op **);
  int (*conversation_create)(be_backend *, const contract_kv *, size_t, be_result_cb, void *, be_op **);
  int (*conversation_delete)(be_backend *, const char *, be_result_cb, void *, be_op **);
  int (*turn_start)(be_backend *, const be_turn_input *, const be_turn_events *, void *, be_op **);
  void (*op_cancel)(be_op *);
  void (*destroy)(be_backend *);
} be_ops;

/** Common head of every backend object. */
struct be_backend {
  const be_ops *ops;
};

/** Free a backend (no operation may be pending). Safe on NULL. */
void be_free(be_backend *be);

/* ---- the Assistants API v2 implementation --------------------------------- */

typedef struct be_assistants_config {
  const char *base_url;      /* e.g. "https://api.openai.com/v1" or the simulator's */
  const char *api_key;       /* never logged */
  const char *organization;  /* optional OpenAI-Organization */
  const char *project;       /* optional OpenAI-Project */
  long request_timeout_ms;   /* per non-streaming request (default 30000) */
  long stream_idle_timeout_ms; /* no byte for this long ends a stream (default 60000) */
  int max_retries;           /* default 5 */
  long retry_base_ms;        /* default 250 */
  long retry_max_ms;         /* default 8000 */
  long max_connections;      /* curl CURLMOPT_MAX_TOTAL_CONNECTIONS, default 0 = unlimited */
  size_t max_answer_bytes;   /* cap on the text kept for one run (default 256 KiB) */
} be_assistants_config;

/** Defaults for be_assistants_config (strings NULL). */
void be_assistants_config_default(be_assistants_config *c);

/** Create the Assistants API backend on loop. */
int be_assistants_new(uv_loop_t *loop, const be_assistants_config *cfg, be_backend **out,
                      char *errstr, size_t errstr_size) AW_MUST_CHECK;

#endif

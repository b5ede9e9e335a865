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
  const char *run_id;      /* be_find_message: the run that followed the
                              found message, NULL if none; else NULL */
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
  const char *existing_message_id; /* non-NULL: the user message was added
                                      by an earlier attempt; only start the run */
  const char *run_tag;       /* stored in the run's metadata (aw_tag) so that
                                be_find_message(key, value == run_tag) finds
                                the run even when the message id was never
                                known; NULL: none */
} be_turn_input;

/** A function call the model made; the run waits for its output.  Strings
 *  are valid during the callback (or on_done) that carries them. */
typedef struct be_tool_call {
  const char *id;        /* the API's tool call id ("call_..."), echoed in be_tool_output */
  const char *name;      /* the function's name */
  const char *arguments; /* the arguments as the model wrote them: JSON text
                            that may be invalid JSON ("" if none) */
} be_tool_call;

/** The output of one tool call, for be_submit_tool_outputs. */
typedef struct be_tool_output {
  const char *tool_call_id; /* be_tool_call.id */
  const char *output;       /* any text the model should read (often JSON) */
} be_tool_output;

/** The outcome of a turn (be_turn_start), of a tool-output submission
 *  (be_submit_tool_outputs) or of a resumed run (be_turn_resume). */
typedef struct be_turn_result {
  int err;                   /* AW_OK when the run reached a terminal status,
                                or requires_action reported to
                                on_requires_action */
  const char *status;        /* completed|failed|cancelled|expired|incomplete,
                                or requires_action (only when the caller set
                                on_requires_action: the run waits for
                                be_submit_tool_outputs) */
  const char *run_id;        /* NULL if no run was created */
  const char *message_id;    /* the user message added, NULL if none (always
                                NULL for submissions and resumed runs) */
  const contract_out_message *messages; /* assistant messages of this run
                                (submissions: only those written after the
                                outputs were submitted, i.e. this round) */
  size_t nmessages;
  contract_usage usage;
  const char *error_code;    /* run.last_error.code or transport error code */
  const char *errmsg;
  int http_status;
  int64_t run_started_ms;
  const be_tool_call *tool_calls; /* status requires_action: the calls the run
                                waits for (as passed to on_requires_action) */
  size_t ntool_calls;
  int64_t expires_at_ms;     /* status requires_action: when the API expires the
                                waiting run (unix ms), 0 if unknown */
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
  /** Function calling.  Optional; it is the last member so that positional
   *  initialisers of the four callbacks above keep meaning NULL here.
   *  NULL: a run that asks for tool outputs is cancelled and the turn ends
   *  with AW_EINVAL / error_code "tool_calls_unsupported" (status
   *  "cancelled").  Set: when the run reaches requires_action (type
   *  submit_tool_outputs) the backend stops following it, calls this once
   *  with the pending calls (ncalls >= 1; array and strings valid during the
   *  call only), then on_done with err AW_OK, status "requires_action",
   *  run_id set and the same calls in res->tool_calls.  The run is not
   *  cancelled: it waits (the API expires it after ~10 minutes) for
   *  be_submit_tool_outputs with the run id.  A requires_action whose tool
   *  calls cannot be read ends the turn with AW_EPARSE and cancels the run.
   *  be_op_cancel from inside this callback: no on_done follows. */
  void (*on_requires_action)(void *opaque, const be_tool_call *calls, size_t ncalls);
} be_turn_events;


/** Start a turn: add the user message to the conversation, start a run of
 *  the assistant and follow it to a terminal status (streaming; when the
 *  stream drops after the run was created, the run is followed by polling,
 *  never started twice).  events must stay valid until on_done.
 *  The message and the run are created by one request (the run's
 *  additional_messages), so either both exist or neither; the message id is
 *  then not known (on_message_added is not called) and the run carries
 *  in->run_tag instead.  With existing_message_id only the run is created. */
int be_turn_start(be_backend *be, const be_turn_input *in, const be_turn_events *events,
                  void *opaque, be_op **op) AW_MUST_CHECK;

/** Continue a run waiting in requires_action: POST the outputs to
 *  /threads/{conversation}/runs/{run_id}/submit_tool_outputs with
 *  stream:true and follow the continued run exactly like a turn: text deltas
 *  (when want_deltas), assistant messages written in this round, usage, the
 *  terminal status, or another requires_action round reported through
 *  events->on_requires_action (then submit again).  When the stream drops
 *  after the submission was accepted (or the request failed in transport
 *  and may have reached the API), the run is followed by polling; a
 *  submission is never sent twice on purpose.  A 4xx answer (the run is no
 *  longer waiting, expired, an output is missing or names an unknown call)
 *  ends with AW_EHTTP4XX, the API's message in errmsg, status NULL -- except
 *  a 400 to a retried attempt, which may mean the first one was accepted:
 *  then the run is followed by polling.  429 / 5xx after the retries end
 *  with AW_ERATELIMIT / AW_EHTTP5XX.  res->run_started_ms is when the
 *  submission started.
 *  outputs (n >= 1; every tool call of the round should have one) and its
 *  strings are copied before the call returns; events must stay valid until
 *  on_done, which is called exactly once unless the op is cancelled;
 *  on_message_added and on_run_created are not called.  AW_EINVAL for bad
 *  arguments before any I/O. */
int be_submit_tool_outputs(be_backend *be, const char *conversation, const char *run_id,
                           const be_tool_output *outputs, size_t n, int want_deltas,
                           const be_turn_events *events, void *opaque, be_op **op) AW_MUST_CHECK;

/** Pick up a run started earlier (e.g. by a worker that restarted mid-run):
 *  GET the run; when it is terminal, collect all its assistant messages and
 *  finish; when queued / in_progress / cancelling, poll it (200 ms doubling
 *  to 2 s) until it is, then collect; when it requires_action, report its
 *  pending tool calls (run.required_action) through on_requires_action and
 *  finish with status "requires_action" (or, without that callback, cancel
 *  it as be_turn_start does).  No text deltas are delivered (the answer
 *  arrives whole in on_done); on_message_added and on_run_created are not
 *  called.  A run that does not exist ends with AW_EHTTP4XX (http_status
 *  404).  events must stay valid until on_done (exactly once unless
 *  cancelled). */
int be_turn_resume(be_backend *be, const char *conversation, const char *run_id,
                   const be_turn_events *events, void *opaque, be_op **op) AW_MUST_CHECK;

/** Find a user message added earlier by its metadata (the worker tags each
 *  message with its event_id), so that a re-processed event does not add it
 *  twice.  Lists the conversation's messages newest first (pages of 100, at
 *  most 5 pages: older messages are not searched) and takes the first one
 *  with role user and metadata[metadata_key] == metadata_value: res->id is
 *  its id.  Then lists the conversation's 20 newest runs and sets
 *  res->run_id to the one tagged with that message (metadata.aw_message_id)
 *  or with metadata_value (metadata.aw_tag, be_turn_input.run_tag), NULL
 *  when no run followed it (yet).
 *  Not found: res->err AW_ENOTFOUND.  API failures: their AW_E* code (also
 *  when the message was found but the runs could not be listed, so that a
 *  caller never mistakes "unknown" for "no run").  metadata_key/value are
 *  copied; cb is called exactly once unless cancelled. */
int be_find_message(be_backend *be, const char *conversation, const char *metadata_key,
                    const char *metadata_value, be_result_cb cb, void *opaque,
                    be_op **op) AW_MUST_CHECK;

/** Ask the backend to cancel a run (POST .../runs/{run_id}/cancel).  The
 *  run then goes cancelling -> cancelled; follow it with be_turn_resume to
 *  its terminal status.  A run that already ended answers 400: res->err
 *  AW_EHTTP4XX with the API's message (the caller resumes it to learn how
 *  it ended).  cb is called exactly once unless cancelled. */
int be_run_cancel(be_backend *be, const char *conversation, const char *run_id, be_result_cb cb,
                  void *opaque, be_op **op) AW_MUST_CHECK;

/* Later issues add here: fetch a generated file. */

/* be_submit_tool_outputs, be_turn_resume, be_find_message and be_run_cancel return
 * AW_ESTATE before any I/O when the backend does not implement them. */

/** Cancel a pending operation: no callback follows.  Safe on NULL. */
void be_op_cancel(be_op *op);

/** Backend operations table; implementations fill one in. */
typedef struct be_ops {
  int (*assistant_ensure)(be_backend *, const be_assistant_def *, const char *, be_result_cb, void *, be_op **);
  int (*conversation_create)(be_backend *, const contract_kv *, size_t, be_result_cb, void *, be_op **);
  int (*conversation_delete)(be_backend *, const char *, be_result_cb, void *, be_op **);
  int (*turn_start)(be_backend *, const be_turn_input *, const be_turn_events *, void *, be_op **);
  int (*submit_tool_outputs)(be_backend *, const char *, const char *, const be_tool_output *, size_t,
                             int, const be_turn_events *, void *, be_op **);
  int (*turn_resume)(be_backend *, const char *, const char *, const be_turn_events *, void *, be_op **);
  int (*find_message)(be_backend *, const char *, const char *, const char *, be_result_cb, void *,
                      be_op **);
  int (*run_cancel)(be_backend *, const char *, const char *, be_result_cb, void *, be_op **);
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
  /* Optional: told of every finished API call, on the loop thread (see
   * api_client.h's api_observe_fn: route "POST /threads/{id}/runs", HTTP
   * status or 0, seconds, attempts).  NULL: no observer. */
  void (*observe)(void *opaque, const char *route, int http_status, double seconds, int attempts);
  void *observe_opaque;
} be_assistants_config;

/** Defaults for be_assistants_config (strings NULL). */
void be_assistants_config_default(be_assistants_config *c);

/** Create the Assistants API backend on loop. */
int be_assistants_new(uv_loop_t *loop, const be_assistants_config *cfg, be_backend **out,
                      char *errstr, size_t errstr_size) AW_MUST_CHECK;

#endif

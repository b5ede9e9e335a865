/* backend.h -- the worker's port to an assistant backend (prefix be_).
 *
 * The Kafka side of the service knows no API.  It asks a backend for one
 * thing: a *turn*, i.e. one user input on one of our conversations and
 * everything the assistant does until it stops.  A turn ends in exactly one
 * of three ways (be_end):
 *
 *   BE_END_ANSWER      the final answer, with a status of our contract's enum
 *                      (completed, failed, cancelled, expired, incomplete)
 *   BE_END_TOOL_CALLS  the model called functions; the turn waits for their
 *                      outputs (be_turn_continue) or a cancel (be_turn_cancel)
 *   BE_END_ERROR       the backend could not get an answer: err is an AW_E*
 *                      whose class (aw_error_classify) says what the caller
 *                      does -- retry later, reject the event, or stop
 *
 * Our ids are the join keys.  A turn is named by (conversation_id,
 * event_id); what the backend needs to pick the turn up again after a crash
 * is an opaque *checkpoint* string that it hands out through on_checkpoint
 * and that the worker stores (Redis, per event) and hands back in
 * be_turn_input.checkpoint, never parsing it (Assistants: thread and run;
 * Responses: conversation and response; a history backend: its own).
 *
 * Recovery is the backend's business.  The worker says only "this event may
 * have been started before" (be_turn_input.recover); the backend then looks
 * for what the earlier attempt created (by the checkpoint, or by the
 * event_id it tagged its objects with) and continues it rather than
 * creating anything twice.  The same rule holds inside one attempt: a
 * request that creates something is never repeated blindly after an outcome
 * that may have been applied (5xx, timeout, connection reset).
 *
 * Conversation handles.  Backends that keep conversations server-side map
 * our conversation_id to their handle (a thread, a conversation).  The
 * worker fetches the cached handle (key named by be_handle_key) together
 * with its other per-event lookups and passes it in be_turn_input.handle;
 * a backend that has none creates one and claims it through the be_store
 * port (SET NX: two workers racing on a new conversation end on one handle;
 * the loser deletes its own).
 *
 * All calls are asynchronous on the caller's libuv loop and return an AW_E*
 * for failures detected before any I/O; later outcomes arrive through the
 * callbacks, on_done exactly once per started operation unless the op is
 * cancelled first (then no callback follows).  Callbacks never run inside
 * the call that started the operation.  Strings passed to callbacks are
 * valid only during the callback.
 *
 * @locality the loop thread only.
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

#define BE_CHECKPOINT_MAX 512 /* bytes of a checkpoint, NUL included */
#define BE_HANDLE_MAX 128     /* bytes of a conversation / turn handle, NUL included */

/* ---- the store port ------------------------------------------------------- */

/** Claim result: winner is the handle now recorded for the conversation
 *  (ours when we won); err AW_EREDIS when the store could not be reached
 *  (the caller's handle is then not recorded). */
typedef void (*be_store_cb)(void *opaque, int err, const char *winner);

/** What a backend may keep in the fleet's store.  Implemented by the worker
 *  over Redis (keys hash-tagged per conversation), by tests over a map. */
typedef struct be_store {
  /** Record handle for conversation_id under the backend's be_handle_key
   *  unless one is recorded already (SET NX); cb gets the winner. */
  int (*claim_handle)(void *self, const char *key, const char *conversation_id, const char *handle,
                      be_store_cb cb, void *opaque);
  void *self;
} be_store;

/* ---- the history port ----------------------------------------------------- */

/* Backends whose servers keep no conversation (Chat Completions) keep each
 * conversation's history in the fleet's store, through this port.  The
 * store does not parse what it keeps: a *turn* is an opaque text the
 * backend wrote (one JSON object per answered event), and the store only
 * knows which event_id each turn belongs to.
 *
 *   history  the conversation's committed turns, oldest first, capped (turns
 *            and bytes: the oldest go first) and expiring after a TTL that
 *            every commit renews
 *   pending  one event's turn while it waits for tool outputs (what the
 *            next round must send again: the user's message, the
 *            assistant's calls, the outputs so far); replaced each round,
 *            dropped by the commit, expiring on its own otherwise */

/** What load read, valid during the callback only. */
typedef struct be_history_view {
  const char *const *turns; /* the newest committed turns, oldest first */
  const size_t *lens;
  size_t nturns;
  int committed;            /* this event's turn is in the history already */
  const char *pending;      /* this event's pending turn, or NULL */
  size_t pending_len;
} be_history_view;

/** err AW_OK or AW_EREDIS (store unreachable: retry class). */
typedef void (*be_history_load_cb)(void *opaque, int err, const be_history_view *v);
/** applied: 1 the write took effect; 0 commit found the event's turn there
 *  already (nothing was written). */
typedef void (*be_history_cb)(void *opaque, int err, int applied);

typedef struct be_history {
  /** One round trip (pipelined): the newest max_turns committed turns, whether
   *  event_id's turn is among the committed ones (whole history, not only the
   *  ones read), and event_id's pending turn. */
  int (*load)(void *self, const char *conversation_id, const char *event_id, size_t max_turns,
              be_history_load_cb cb, void *opaque);
  /** Replace event_id's pending turn. */
  int (*save_pending)(void *self, const char *conversation_id, const char *event_id, const char *turn,
                      size_t len, be_history_cb cb, void *opaque);
  /** One atomic write: unless event_id's turn is committed already, append
   *  turn, trim the history to its caps, renew its TTL; in both cases drop
   *  event_id's pending turn. */
  int (*commit)(void *self, const char *conversation_id, const char *event_id, const char *turn,
                size_t len, be_history_cb cb, void *opaque);
  void *self;
} be_history;

/* ---- assistants ----------------------------------------------------------- */

/** An assistant as configured (or, on the Assistants backend, named by an
 *  `asst_` id in a request: then only id is set). */
typedef struct be_assistant {
  const char *name;          /* the configured name, unique per deployment */
  const char *model;
  const char *instructions;  /* may be NULL */
  const char *tools_json;    /* JSON array of tool definitions in the
                                Assistants shape ("[{\"type\":\"function\",
                                \"function\":{...}}]"), or NULL; backends
                                translate it to their API's shape */
  const char *tool_choice_json; /* JSON in the Assistants shape: "\"auto\"",
                                "\"required\"", "\"none\"" or
                                {"type":"function","function":{"name":..}};
                                NULL: not sent (the API's default, auto).
                                Responses: sent on the first response of a
                                turn only; Assistants: on run creation (the
                                run's whole life) */
  const char *hash;          /* stable hash of the definition */
  const char *id;            /* Assistants backend: the asst_ id (ensured at
                                start-up or named by the request); else NULL */
  /* Chat backend: the context budget, i.e. how much of the stored history
   * is sent with a turn (the oldest turns are left out first, a turn is
   * never cut).  0: the backend's default. */
  long history_max_messages; /* messages sent, the current turn's included */
  long history_max_tokens;   /* approximate tokens sent (bytes / 4) */
  /* Cap on the tokens the model generates per request (chat: max_tokens,
   * the one every server honours; Responses: max_output_tokens); 0: not
   * sent (the server's default).  A capped answer ends `incomplete`. */
  long max_output_tokens;
  /* The vector stores file_search searches (vs_ ids, synced from the
   * configuration's knowledge by `assistant-worker sync`); NULL / 0: none.
   * Assistants: the assistant gets a file_search tool and
   * tool_resources.file_search.vector_store_ids (at most one store); the
   * hash covers them, so a changed store updates the assistant.  Responses:
   * every request's tools carry {"type":"file_search","vector_store_ids"}.
   * Chat: refused when the configuration is loaded. */
  const char *const *vector_store_ids;
  size_t nvector_store_ids;
} be_assistant;

/** Result of a simple operation (assistant ensure, cancel). */
typedef struct be_result {
  int err;                 /* AW_OK or AW_E* */
  int http_status;         /* last HTTP status seen, 0 if none */
  const char *error_code;  /* API error code/type if any, else NULL */
  const char *errmsg;      /* precise, never containing secrets */
  const char *id;          /* the created / found object's id */
} be_result;

typedef void (*be_result_cb)(void *opaque, const be_result *res);

/** Start-up: make sure the backend knows the assistant.  On the Assistants
 *  backend: look it up by known_id (remembered from an earlier start) or by
 *  metadata aw_name, update it when its aw_hash differs, create it when
 *  missing; res->id is its asst_ id.  Backends that send the definition
 *  with every turn answer at once (next loop iteration) with res->id NULL. */
int be_assistant_ensure(be_backend *be, const be_assistant *def, const char *known_id,
                        be_result_cb cb, void *opaque, be_op **op) AW_MUST_CHECK;

/* ---- turns ---------------------------------------------------------------- */

typedef struct be_turn_input {
  const char *conversation_id; /* ours */
  const char *event_id;        /* ours: the backend tags what it creates with it */
  const char *handle;          /* cached conversation handle, or NULL/"" */
  const char *checkpoint;      /* last checkpoint recorded for this event, or NULL */
  int recover;                 /* 1: an earlier attempt may have started this
                                  turn (its progress record existed); 0: new */
  const be_assistant *assistant;
  const contract_part *parts;
  size_t nparts;
  const contract_kv *metadata; /* user metadata (the backend adds event_id
                                  and conversation_id where it tags) */
  size_t nmetadata;
  const char *instructions;            /* override, or NULL */
  const char *additional_instructions; /* or NULL */
  int want_deltas;             /* 0: the backend need not decode text deltas */
  int tools_routed;            /* 0: nobody serves function calls; a turn that
                                  calls one ends BE_END_ANSWER cancelled with
                                  error_code tool_calls_unsupported */
  /* Files.  parts may hold IMAGE_URL and IMAGE_FILE parts: the worker has
   * uploaded inline images already (their file_id set, data kept) except
   * on the chat backend, which sends data as a data: URL and is never
   * given an IMAGE_FILE by id (refused at intake). */
  const contract_attachment *attachments; /* file ids set (inline bytes uploaded by the
                                             worker); the chat backend gets none */
  size_t nattachments;
  int include_steps;           /* 1: fill be_turn_result.steps */
  size_t inline_file_max;      /* generated files up to this size come back with
                                  their bytes (be_turn_result.files[].data); larger
                                  ones by reference; 0: always by reference */
} be_turn_input;

/** A function call the model made.  id is the backend's call id, echoed in
 *  be_tool_output; it is unique within one round, not necessarily across
 *  rounds (chat servers number their calls). */
typedef struct be_tool_call {
  const char *id;
  const char *name;
  const char *arguments; /* as the model wrote them: JSON text that may be
                            invalid JSON ("" if none) */
} be_tool_call;

/** The output of one tool call, for be_turn_continue. */
typedef struct be_tool_output {
  const char *tool_call_id; /* be_tool_call.id */
  const char *output;       /* any text the model should read (often JSON) */
} be_tool_output;

typedef enum be_end {
  BE_END_ANSWER = 0,
  BE_END_TOOL_CALLS,
  BE_END_ERROR,
} be_end;

/** What the backend knows the turn by, for the response's `backend` object
 *  (and the v1 fields thread_id / run_id on the Assistants backend). */
typedef struct be_handles {
  const char *kind;          /* "assistants", "responses", "chat" */
  const char *conversation;  /* thread_... / conv_..., NULL if none */
  const char *turn;          /* run_... / resp_... / chatcmpl-... (the last one), NULL if none */
  int attempt;               /* 0, or the generation of the turn's text when a
                                backend generates it again (a stateless server
                                cannot resume): deltas from here on start again
                                at seq 0 with this attempt number */
} be_handles;

typedef struct be_turn_result {
  be_end end;
  int err;                   /* BE_END_ERROR: the AW_E*; else AW_OK */
  const char *status;        /* BE_END_ANSWER: completed|failed|cancelled|
                                expired|incomplete; else NULL */
  const char *error_code;    /* the API's error code (status != completed),
                                or a transport code for BE_END_ERROR */
  const char *errmsg;
  int http_status;
  const contract_out_message *messages; /* assistant messages of this call
                                (continue: those written after the outputs) */
  size_t nmessages;
  contract_usage usage;       /* what the API reported for the requests this
                                call made or recovered (a run's usage is the
                                whole run's, a response's that response's;
                                the worker adds them up per turn, see
                                worker/outbox/usage.h); present 0: none */
  const char *model;         /* the model the API says it used, NULL if it
                                did not say */
  const be_tool_call *tool_calls; /* BE_END_TOOL_CALLS (n >= 1) */
  size_t ntool_calls;
  int64_t expires_at_ms;     /* BE_END_TOOL_CALLS: when the backend gives up
                                on the waiting turn (unix ms), 0 if never */
  int64_t started_ms;        /* when the backend started generating, 0 if unknown */
  int replayed;              /* 1: recovered whole; the text was not
                                delivered as deltas during this call */
  const char *checkpoint;    /* the turn's checkpoint now, NULL if none */
  be_handles handles;
  /* BE_END_ANSWER: the files the turn generated (code interpreter), each
   * with its bytes when it is at most in->inline_file_max, and the hosted
   * tool calls when in->include_steps.  A file whose content could not be
   * fetched is listed by reference (data NULL). */
  const contract_file *files;
  size_t nfiles;
  const contract_step *steps;
  size_t nsteps;
} be_turn_result;

typedef struct be_turn_events {
  /** Something new exists that a later attempt needs to pick the turn up
   *  again: store it (replacing the last one).  handles: what the backend
   *  knows the turn by now (deltas published from here on carry its turn
   *  handle).  Optional. */
  void (*on_checkpoint)(void *opaque, const char *checkpoint, const be_handles *handles);
  /** A piece of assistant text, in order; only when want_deltas.  Optional. */
  void (*on_text_delta)(void *opaque, const char *text, size_t len);
  /** Exactly once, last. */
  void (*on_done)(void *opaque, const be_turn_result *res);
} be_turn_events;

/** Start the turn, or (in->recover) pick it up where an earlier attempt
 *  left it, and follow it to its end.  Never adds the user input twice: a
 *  recovering backend first looks for what the event created.  in and its
 *  strings are copied before the call returns; events must stay valid
 *  until on_done. */
int be_turn_start(be_backend *be, const be_turn_input *in, const be_turn_events *events,
                  void *opaque, be_op **op) AW_MUST_CHECK;

/** Continue a turn that ended BE_END_TOOL_CALLS with the outputs of its
 *  calls (every call of the round should have one).  in is the turn's input
 *  with in->checkpoint the checkpoint of that result; round (1, 2, ...)
 *  numbers the submission within the turn (backends tag with it).  Never
 *  submits twice: after an ambiguous outcome the backend checks whether the
 *  submission was taken.  Ends like a turn: answer, another round of
 *  calls, or error. */
int be_turn_continue(be_backend *be, const be_turn_input *in, long round,
                     const be_tool_output *outputs, size_t n, const be_turn_events *events,
                     void *opaque, be_op **op) AW_MUST_CHECK;

/** Cancel a turn waiting for tool outputs (a deadline with cancel_run, or
 *  shutdown) and follow it to its end: normally BE_END_ANSWER cancelled (or
 *  whatever the turn reached first).  in->checkpoint names the turn. */
int be_turn_cancel(be_backend *be, const be_turn_input *in, const be_turn_events *events,
                   void *opaque, be_op **op) AW_MUST_CHECK;

/* ---- conversation management ---------------------------------------------- */

/* The conversation requests other than a message (contract_kind): read the
 * history, append messages without a turn, delete the backend's
 * conversation.  (reset and cancel need no call of their own: reset is the
 * worker forgetting the handle, plus be_conv_delete of the old one when so
 * configured; cancel is be_turn_cancel.)  Same rules as turns: asynchronous,
 * cb exactly once unless be_op_cancel came first, never inside the call;
 * strings valid during the callback only; a request that creates something
 * is never repeated blindly after an ambiguous outcome. */

typedef struct be_conv_input {
  const char *conversation_id; /* ours */
  const char *event_id;        /* ours: append tags what it creates with it */
  const char *handle;          /* cached conversation handle, or NULL/"" (none yet) */
  const char *checkpoint;      /* append: the last checkpoint recorded for this event, or NULL */
  int recover;                 /* append: an earlier attempt may have appended (look first) */
  /* history */
  long limit;                  /* 1..CONTRACT_HISTORY_LIMIT_MAX */
  const char *after, *before;  /* message ids of an earlier page, at most one; NULL: none */
  int order_asc;               /* 1: oldest first; 0: newest first */
  /* append */
  const contract_in_message *messages;
  size_t nmessages;
} be_conv_input;

typedef struct be_conv_result {
  int err;                  /* AW_OK or AW_E* (class: aw_error_classify) */
  int http_status;          /* last HTTP status seen, 0 if none */
  const char *error_code;   /* API error code or our own ("message_not_found", ...), else NULL */
  const char *errmsg;       /* precise, never containing secrets */
  const char *handle;       /* the backend conversation involved (append may have created
                               it: the worker caches it as the turns' handle does), or NULL */
  /* history: the page (user and assistant messages only; tool calls and
   * other items are left out, so a page may hold fewer than limit);
   * append: the messages added, with their ids, in order. */
  const contract_out_message *messages;
  size_t nmessages;
  int has_more;
  const char *first_id, *last_id; /* history: the page's cursors (NULL when empty) */
} be_conv_result;

typedef void (*be_conv_cb)(void *opaque, const be_conv_result *res);

typedef struct be_conv_events {
  /** append: something was created that a later attempt must find (store
   *  it as the event's checkpoint, like a turn's).  Optional. */
  void (*on_checkpoint)(void *opaque, const char *checkpoint);
  /** Exactly once, last. */
  be_conv_cb on_done;
} be_conv_events;

/** One page of the conversation's messages.  No handle (no conversation
 *  yet): an empty page.  An `after`/`before` id the conversation does not
 *  hold: err AW_EINVAL, error_code "message_not_found" (reject class). */
int be_conv_history(be_backend *be, const be_conv_input *in, const be_conv_events *events,
                    void *opaque, be_op **op) AW_MUST_CHECK;

/** Append in->messages to the conversation (creating it, and claiming its
 *  handle through the store port, when there is none) without starting a
 *  turn.  Exactly once per event: a recovering or retrying append first
 *  looks for the messages the event added. */
int be_conv_append(be_backend *be, const be_conv_input *in, const be_conv_events *events,
                   void *opaque, be_op **op) AW_MUST_CHECK;

/** Delete the backend's conversation in->handle (one that is gone already
 *  counts as deleted); on the chat backend, the history the fleet keeps for
 *  conversation_id (through the history port).  No handle: nothing to do. */
int be_conv_delete(be_backend *be, const be_conv_input *in, const be_conv_events *events,
                   void *opaque, be_op **op) AW_MUST_CHECK;

/** Cancel a pending operation: no callback follows.  Safe on NULL. */
void be_op_cancel(be_op *op);

/** The backend's kind ("assistants", "responses", "chat"). */
const char *be_kind(const be_backend *be);

/** Name of the per-conversation key the worker fetches and hands back as
 *  be_turn_input.handle ("thread" for Assistants: the key v1 deployments
 *  already hold; "conv" for Responses), NULL when the backend keeps no
 *  handle. */
const char *be_handle_key(const be_backend *be);

/** Backend operations table; implementations fill one in. */
typedef struct be_ops {
  const char *kind;
  const char *handle_key;
  int (*assistant_ensure)(be_backend *, const be_assistant *, const char *, be_result_cb, void *, be_op **);
  int (*turn_start)(be_backend *, const be_turn_input *, const be_turn_events *, void *, be_op **);
  int (*turn_continue)(be_backend *, const be_turn_input *, long, const be_tool_output *, size_t,
                       const be_turn_events *, void *, be_op **);
  int (*turn_cancel)(be_backend *, const be_turn_input *, const be_turn_events *, void *, be_op **);
  void (*op_cancel)(be_op *);
  void (*destroy)(be_backend *);
  /* conversation management (NULL: AW_EINVAL from be_conv_*) */
  int (*conv_history)(be_backend *, const be_conv_input *, const be_conv_events *, void *, be_op **);
  int (*conv_append)(be_backend *, const be_conv_input *, const be_conv_events *, void *, be_op **);
  int (*conv_delete)(be_backend *, const be_conv_input *, const be_conv_events *, void *, be_op **);
} be_ops;

/** Common head of every backend object. */
struct be_backend {
  const be_ops *ops;
};

/** Free a backend (no operation may be pending). Safe on NULL. */
void be_free(be_backend *be);

/* ---- configuration shared by the HTTP backends ---------------------------- */

typedef struct be_http_config {
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
  size_t max_answer_bytes;   /* cap on the text kept for one turn (default 256 KiB) */
  int background;            /* Responses: 1 (default) turns are background +
                                stream (a dropped stream is resumed with
                                starting_after); 0: stream only, for servers
                                that refuse both together (OGX): a dropped
                                stream is followed by polling the stored
                                response */
  const be_store *store;     /* borrowed; required by backends with a handle_key */
  const be_history *history; /* borrowed; required by the chat backend */
  /* Optional: told of every finished API call, on the loop thread (see
   * api_client.h's api_observe_fn: route "POST /threads/{id}/runs", HTTP
   * status or 0, seconds, attempts).  NULL: no observer. */
  void (*observe)(void *opaque, const char *route, int http_status, double seconds, int attempts);
  void *observe_opaque;
  /* Optional (borrowed, must outlive the backend): the fleet's rate gate,
   * asked before every API request (common/http/api_gate.h).  NULL: none. */
  const struct api_gate *gate;
} be_http_config;

/** Defaults for be_http_config (strings and store NULL). */
void be_http_config_default(be_http_config *c);

/** The OpenAI Assistants API v2 (threads and runs): backend/assistants/. */
int be_assistants_new(uv_loop_t *loop, const be_http_config *cfg, be_backend **out,
                      char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** The Responses + Conversations API: backend/responses/. */
int be_responses_new(uv_loop_t *loop, const be_http_config *cfg, be_backend **out,
                     char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Chat Completions, the conversation's history kept by the fleet through
 *  cfg->history: backend/chat/. */
int be_chat_new(uv_loop_t *loop, const be_http_config *cfg, be_backend **out,
                char *errstr, size_t errstr_size) AW_MUST_CHECK;

#endif

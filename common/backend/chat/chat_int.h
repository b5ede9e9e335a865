/* chat_int.h -- internals of the Chat Completions backend (prefix chat_).
 *
 * backend.h on POST {base_url}/chat/completions (stream: true, stream_options
 * include_usage), the API every self-hosted server speaks (vLLM, Ollama,
 * llama.cpp, LM Studio ...).  The server keeps nothing: each request carries
 * the whole context, and the conversation's history is kept by the fleet
 * through the be_history port (the worker implements it over Redis).  There
 * is no conversation handle (handle_key NULL) and nothing to create at
 * start-up: the assistant's definition travels with every request.
 *
 * Modules:
 *   chat_backend.c  the ops table, be_chat_new, assistant_ensure, op cancel
 *   chat_turn.c     the turn state machine (one enum, one transition function):
 *                   life cycle, the request and its stream, retries, the result
 *   chat_history.c  the turn's side of the history port: the load and what it
 *                   finds (replay, pending round, continuation), saving a
 *                   round, the commit
 *   chat_stream.c   chat.completion.chunk data -> deltas / answer / calls (pure)
 *   chat_json.c     request bodies, messages, stored turn records (pure)
 *   chat_context.c  the context budget: which history turns are sent (pure)
 *   chat_manage.c   conversation requests: history pages, append, delete
 *
 * Stored turn (opaque to the store; one JSON object per answered event):
 *   {"e":"<event_id>","m":[<messages>],"i":"chatcmpl-..","s":"incomplete","ec":"<code>"}
 * m holds the turn's messages in the Chat Completions shape, as they are
 * sent again: the user message; per tool round an assistant message with
 * tool_calls and one {"role":"tool","tool_call_id","content"} per call; the
 * final assistant message.  Assistant content is always a string ("" when
 * none) and tool content a string: llama.cpp answers HTTP 500 to null or
 * arrays there.  i (the final chunk id, the answer message's id on replay),
 * s and ec (only for an incomplete answer: its status and code on replay)
 * are optional; so is "t", the unix time of the commit (the history's
 * created_at).  A *pending* turn (be_history.save_pending, between tool
 * rounds) is the same object ending with the assistant message whose calls
 * wait for outputs, plus "g": the generation it was written by.  Both may
 * carry "u": [prompt, completion, cached, reasoning], the usage the API
 * reported for every request of the turn so far, and a pending one "ul":
 * the same for its last request only, so that a turn picked up from the
 * store (a crash while it waited, or after its commit) still reports what
 * its requests cost (worker/outbox/usage.h adds the turn up).
 *
 * Checkpoint (opaque to the worker): "c1 <generation> <rounds>".  The
 * generation numbers the times the turn's text was generated again after
 * deltas of it were delivered (see below); rounds counts the tool rounds
 * saved.  One is handed out when each generation starts and after each
 * saved round; the turn's state itself lives in the history store.
 *
 * Never twice at the API: a chat completion creates nothing server-side, so
 * a request that failed in any way (5xx, timeout, reset, a stream cut short)
 * is simply sent again, up to max_retries times, with backoff.  What must
 * not happen twice silently is text: deltas of a generation that is
 * abandoned (a retry after some were delivered, a recovery) are followed by
 * a new generation, reported as be_handles.attempt through on_checkpoint
 * before its first delta, so readers drop the old text.  A recovering turn
 * starts at the checkpoint's generation + 1.  What the store holds is
 * written once: the whole turn is committed (one atomic write, idempotent
 * per event) before the answer is reported; a turn that fails, is cancelled
 * or dies half-way commits nothing (its pending record expires).
 *
 * Context budget: messages sent = system + history turns + the current
 * turn.  History turns are taken newest first while the total stays within
 * history_max_messages and history_max_tokens (approximate: string bytes /
 * 4 rounded up + 4 per message), the system message and the current turn
 * counted first; the first turn that does not fit ends the selection, so
 * a turn (and its tool exchanges) is never cut.  A current turn over the
 * budget on its own is sent anyway: the server decides.
 *
 * @locality the loop thread only.
 */
#ifndef AW_CHAT_INT_H
#define AW_CHAT_INT_H

#include <stddef.h>
#include <stdint.h>
#include <cJSON.h>
#include "api_client.h"
#include "aw_error.h"
#include "backend.h"
#include "buf.h"
#include "contract.h"
#include "log.h"
#include "retry.h"

#define CHAT_ID_MAX 96               /* chunk ids kept (chatcmpl-... ~40 bytes) */
#define CHAT_CALLS_MAX 128           /* function calls per round */
#define CHAT_DEFAULT_MAX_MESSAGES 40 /* be_assistant.history_max_messages 0 */
#define CHAT_DEFAULT_MAX_TOKENS 4000 /* be_assistant.history_max_tokens 0 */
#define CHAT_GEN_MAX 1000000         /* generations / rounds a checkpoint may name */

/* ---- small JSON helpers (chat_json.c) --------------------------------------- */

/** o[k] if o is an object, else NULL. */
const cJSON *chat_get(const cJSON *o, const char *k);
/** o[k] if it is a string, else NULL. */
const char *chat_get_str(const cJSON *o, const char *k);

/* ---- the assistant's definition (chat_json.c) ---------------------------------- */

/** tools_json (Assistants shape, which is the Chat shape for function
 *  tools) as a `tools` array: function tools pass through.  *out NULL for
 *  NULL or "[]".  AW_EINVAL (reason in err) for text that is not an array of
 *  tool objects, a function without a name, or any other tool type
 *  (code_interpreter, file_search: chat servers run no hosted tools). */
int chat_json_tools(const char *tools_json, cJSON **out, char *err, size_t errn) AW_MUST_CHECK;

/** tool_choice_json: "auto" | "required" | "none" |
 *  {"type":"function","function":{"name":..}} (the Responses shape
 *  {"type":"function","name":..} is translated).  *out NULL for NULL.
 *  AW_EINVAL (reason in err) for anything else. */
int chat_json_tool_choice(const char *tool_choice_json, cJSON **out, char *err, size_t errn) AW_MUST_CHECK;

/** The system text: instructions (the request's override, else the
 *  assistant's) with additional_instructions appended after a blank line.
 *  *out NULL (no system message) when both are absent or empty; else
 *  malloc'd. */
int chat_json_system(const be_turn_input *in, char **out) AW_MUST_CHECK;

/* ---- messages (chat_json.c) ----------------------------------------------------- */

/** The user message of parts: text only -> "content" a string (several
 *  parts joined by a blank line); with image parts -> an array of text and
 *  {"type":"image_url","image_url":{"url","detail"?}} parts, an inline
 *  image_file as a data: URL (chat_data_url).  AW_EINVAL, *unsupported
 *  naming the part type, for an image_file by id and file parts (chat
 *  servers take no file ids). */
int chat_json_user_message(const contract_part *parts, size_t nparts, cJSON **out,
                           const char **unsupported) AW_MUST_CHECK;
/** "data:<media_type>;base64,<data>" of an inline image part (malloc'd),
 *  NULL without inline data or out of memory. */
char *chat_data_url(const contract_part *p);

/** What the history keeps of an image: the bytes (or URL) of the user's
 *  images are not stored, only this text (bounded history). */
#define CHAT_IMAGE_PLACEHOLDER "[image]"

/** Replace every image_url part of msgs' user messages by a text part
 *  CHAT_IMAGE_PLACEHOLDER, in place.  Returns how many, or AW_ENOMEM. */
int chat_msgs_strip_images(cJSON *msgs);

/** {"role":"assistant","content":text (never null),"tool_calls":[...]}
 *  (tool_calls only when n > 0). */
int chat_json_assistant_message(const char *text, const be_tool_call *calls, size_t n,
                                cJSON **out) AW_MUST_CHECK;
/** {"role":"tool","tool_call_id":id,"content":output}. */
int chat_json_tool_message(const char *call_id, const char *output, cJSON **out) AW_MUST_CHECK;

/** Number of assistant messages with tool calls in msgs (the tool rounds). */
int chat_msgs_rounds(const cJSON *msgs);
/** If msgs ends with an assistant message whose calls have no outputs,
 *  views of those calls (pointing into msgs) in calls[0..*n) (calls NULL:
 *  only count them); else *n = 0.  AW_EPARSE for calls without id or name,
 *  AW_ETOOBIG past max. */
int chat_msgs_open_calls(const cJSON *msgs, be_tool_call *calls, size_t max, size_t *n) AW_MUST_CHECK;

typedef enum {
  CHAT_PENDING_LOST = 0, /* not what the outputs of that round can continue (why says) */
  CHAT_PENDING_ANSWER,   /* it waits for exactly that round's outputs */
  CHAT_PENDING_LATER,    /* those were taken and a later round waits (a crash after its save) */
} chat_pending_at;

/** Where a pending turn's messages stand for the outputs of round `round`
 *  (1 = the outputs of the first round of calls). */
chat_pending_at chat_pending_where(const cJSON *msgs, long round, char *why, size_t n);

/** Answer the open calls of msgs' last message: one tool message per call,
 *  in the calls' order, with the text whose id matches (ids[k] ->
 *  texts[k]), "no output" for a call that has none; outputs naming no call
 *  are left out.  AW_EINVAL when the last message has no calls. */
int chat_msgs_add_outputs(cJSON *msgs, const char *const *ids, const char *const *texts, size_t nouts) AW_MUST_CHECK;
/** The content of the final assistant message (the last message, when it is
 *  an assistant message without calls), else NULL. */
const char *chat_msgs_final_text(const cJSON *msgs);

/** POST /chat/completions body: model, messages (by reference, not
 *  copied), stream + stream_options.include_usage, tools (tools: a
 *  chat_json_tools array, may be NULL) and, when choice is not NULL,
 *  tool_choice; max_tokens when > 0.  *out is cJSON_free'd by the caller. */
int chat_json_body(const char *model, const cJSON *messages, const cJSON *tools, const cJSON *choice, long max_tokens,
                   char **out) AW_MUST_CHECK;

/* ---- stored turn records (chat_json.c) ------------------------------------------- */

typedef struct chat_record {
  cJSON *root;            /* parse: the tree that owns the rest; format: NULL */
  const char *event_id;   /* "e" */
  const cJSON *msgs;      /* "m", an array of messages, each with a role */
  int gen;                /* "g", -1 when absent */
  const char *id;         /* "i", or NULL */
  const char *status;     /* "s", NULL for completed */
  const char *error_code; /* "ec", or NULL */
  contract_usage u;       /* "u": the turn's requests so far (present 0: none) */
  contract_usage ul;      /* "ul": a pending turn's last request (present 0: none) */
  int64_t at;             /* "t": unix seconds of the commit (history's created_at); 0: absent
                             (turns written before it was added) */
} chat_record;

/** Parse a stored turn.  AW_EPARSE for anything but an object with a string
 *  "e" and an array "m" of objects with a string "role". */
int chat_record_parse(const char *text, size_t len, chat_record *r) AW_MUST_CHECK;
void chat_record_free(chat_record *r);
/** Format r (root ignored) as one line of JSON; free *out with cJSON_free. */
int chat_record_format(const chat_record *r, char **out, size_t *len) AW_MUST_CHECK;

/* ---- the context budget (chat_context.c) ----------------------------------------- */

/** Approximate tokens of one message: bytes of its strings / 4, rounded
 *  up, + 4. */
size_t chat_msg_tokens(const cJSON *msg);
/** The assistant's budget with defaults applied. */
void chat_budget_of(const be_assistant *a, long *max_messages, long *max_tokens);
/** Pure selection over turns oldest first (msgs[i] messages, tokens[i]
 *  approximate tokens), fixed_* what is sent anyway (system + the current
 *  turn): the index of the oldest turn sent; turns [first, n) are sent, n
 *  when none.  Walks newest to oldest and stops at the first turn whose
 *  messages would take the total over either bound. */
size_t chat_budget_select(const size_t *msgs, const size_t *tokens, size_t n, size_t fixed_msgs,
                          size_t fixed_tokens, long max_messages, long max_tokens);

typedef struct chat_context_stats {
  size_t turns_sent;
  size_t turns_corrupt;  /* stored turns that could not be read (skipped) */
  size_t messages;       /* in the result */
  size_t tokens;         /* approximate, of the result */
} chat_context_stats;

/** The `messages` of a request: [system (if any), the history turns the
 *  budget selects (turns: the stored turns, oldest first), the current
 *  turn's messages (by reference: current must outlive *out)].  Stored
 *  turns that cannot be read are skipped.  AW_ENOMEM. */
int chat_context_build(const char *system, const char *const *turns, const size_t *lens, size_t nturns,
                       const cJSON *current, long max_messages, long max_tokens, cJSON **out,
                       chat_context_stats *stats) AW_MUST_CHECK;

/* ---- the stream mapper (chat_stream.c) --------------------------------------------- */

typedef struct chat_call {
  buf id, name, args;
} chat_call;

typedef enum {
  CHAT_EV_NONE = 0, /* nothing for the caller */
  CHAT_EV_DELTA,    /* st->delta / delta_len: a piece of text */
} chat_ev;

typedef struct chat_stream {
  size_t max_text;       /* cap on the text and on the calls' bytes */
  buf text;              /* the answer's text so far */
  chat_call *calls;      /* by index */
  size_t ncalls, calls_cap, call_bytes;
  char id[CHAT_ID_MAX];  /* the chunks' id, "" until seen */
  char finish[32];       /* finish_reason, "" until seen */
  char model[128];       /* the chunks' model, "" until seen (or unusable) */
  contract_usage usage;  /* with prompt_tokens_details.cached_tokens and
                            completion_tokens_details.reasoning_tokens */
  int chunks;            /* chunk objects read */
  int done;              /* [DONE] seen: nothing after it counts */
  int failed;            /* an {"error":{...}} object arrived */
  int failed_transient;  /* ... of a server error (type server_error or code >= 500) */
  char error_code[64];
  char errmsg[256];
  int err;               /* AW_ETOOBIG / AW_ENOMEM: the caller stops the stream */
  cJSON *doc;            /* the last parsed chunk (delta points into it) */
  const char *delta;
  size_t delta_len;
} chat_stream;

/** Initialise (allocates nothing). */
void chat_stream_init(chat_stream *st, size_t max_text);
/** Forget everything (for a request sent again); keeps max_text. */
void chat_stream_reset(chat_stream *st);
void chat_stream_free(chat_stream *st);
/** Map one SSE data payload: a chunk, "[DONE]" or an error object.
 *  AW_EPARSE for data that is none of them (the caller skips it); bounds
 *  land in st->err. */
int chat_stream_event(chat_stream *st, const char *data, size_t len, chat_ev *ev) AW_MUST_CHECK;
/** After the stream: give calls without an id (or with one an earlier call
 *  of the round has) the id "call_<round>_<index>" and build views into
 *  calls (valid until the stream is reset / freed).  AW_EPARSE for a call
 *  without a name, AW_ENOMEM. */
int chat_stream_calls(chat_stream *st, long round, be_tool_call *calls, size_t *n) AW_MUST_CHECK;

/* ---- the backend and its turns (chat_backend.c, chat_turn.c) ------------------------- */

typedef struct chat_backend {
  be_backend base;
  uv_loop_t *loop;
  api_client *api;
  const be_history *history;
  size_t max_answer_bytes;
  retry_policy retry;     /* re-sending a generation (nothing is created) */
  uint32_t rnd;           /* jitter state */
} chat_backend;

enum { CHAT_OP_ENSURE = 1, CHAT_OP_TURN, CHAT_OP_MANAGE };

/* Every op starts with this (be_op_head first, as backend.h requires). */
typedef struct chat_op {
  be_op_head head;
  int kind;
  int cancelled;
  int in_cb;        /* > 0 while one of our user callbacks runs */
} chat_op;

typedef enum { CHAT_TURN_START = 1, CHAT_TURN_CONTINUE, CHAT_TURN_CANCEL } chat_turn_mode;

/** The three turn entries of backend.h (validated by backend.c). */
int chat_turn_begin(chat_backend *be, chat_turn_mode mode, const be_turn_input *in, long round,
                    const be_tool_output *outs, size_t n, const be_turn_events *ev, void *opaque,
                    be_op **out) AW_MUST_CHECK;
/** be_op_cancel of a turn. */
void chat_turn_cancel_op(chat_op *op);

/** The conversation-management entries of backend.h (chat_manage.c):
 *  history, append and delete over the history port. */
int chat_conv_history(be_backend *be, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                      be_op **out) AW_MUST_CHECK;
int chat_conv_append(be_backend *be, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                     be_op **out) AW_MUST_CHECK;
int chat_conv_delete(be_backend *be, const be_conv_input *in, const be_conv_events *ev, void *opaque,
                     be_op **out) AW_MUST_CHECK;
/** be_op_cancel of one of them. */
void chat_manage_cancel_op(chat_op *op);

/** Format / parse a checkpoint (see the top of this file).  parse:
 *  AW_EINVAL for anything else. */
int chat_checkpoint_format(char *out, size_t n, int gen, int rounds) AW_MUST_CHECK;
int chat_checkpoint_parse(const char *cp, int *gen, int *rounds) AW_MUST_CHECK;

/* ---- inside a turn (chat_turn.c, chat_history.c; nothing else) ---------------------- */

typedef enum {
  CHAT_S_NEW = 0, CHAT_S_LOAD, CHAT_S_POST, CHAT_S_RETRY_WAIT, CHAT_S_SAVE, CHAT_S_COMMIT, CHAT_S_DONE
} chat_turn_state;

typedef struct chat_turn chat_turn;
typedef void (*chat_turn_step)(chat_turn *);

typedef struct chat_turn_timer {
  uv_timer_t t;
  chat_turn *turn;            /* NULL once the turn is gone (the handle closes) */
} chat_turn_timer;

struct chat_turn {
  chat_op b;
  chat_backend *be;
  chat_turn_mode mode;
  chat_turn_state state;
  const be_turn_events *ev;
  void *opaque;
  int want_deltas, tools_routed, recover;
  long round;                 /* continue: the round the outputs answer */
  char *conversation_id;
  char event_id[129];
  char *model, *system;
  long max_output_tokens;     /* be_assistant.max_output_tokens: max_tokens, 0 not sent */
  long max_msgs, max_tokens;
  cJSON *tools, *choice;      /* choice goes on a turn's first request only */
  cJSON *user;                /* start: the user message, until it joins cur */
  cJSON *cur;                 /* the current turn's messages */
  char **out_ids, **out_texts;/* continue: the outputs */
  size_t nouts;
  char *body;                 /* the request, kept for retries */
  char *record;               /* what a store call writes, until it answers */
  api_call *call;
  chat_turn_timer *timer;
  chat_turn_step next;        /* what the timer runs */
  chat_stream st;
  chat_record rec;            /* a stored turn read back (replay, pending) */
  be_tool_call *calls;        /* views for the result */
  size_t ncalls;
  int end_calls;              /* ends BE_END_TOOL_CALLS */
  const char *status;         /* BE_END_ANSWER's */
  const char *answer;         /* the answer's text */
  int gen, cp_gen, cp_ok, rounds;
  int retries, empties;
  size_t gen_deltas;          /* bytes delivered as deltas of this generation */
  size_t deltas_total;        /* ... of any generation of this call */
  int store_busy;             /* a history call is out: the turn cannot be freed */
  int reloaded;               /* the commit found the event committed: loaded again */
  int replayed;
  const char *unsupported;    /* start: the part type refused (a literal) */
  int starting, start_rc;
  int err, http_status;
  char error_code[64];
  char errmsg[512];
  char turn_id[CHAT_ID_MAX];  /* the last chunk id */
  contract_usage usage_before; /* usage of this call's earlier requests (a
                                  retry after a stream that reported some) */
  contract_usage pending_u;   /* continue: the usage the pending turn carried ("u") */
  contract_usage replay_u;    /* replayed: what the stored turn says its requests cost */
  char model_seen[128];       /* the last model a chunk named */
  int64_t started_ms;
  char checkpoint[BE_CHECKPOINT_MAX];
};

/* chat_turn.c */
log_ctx chat_turn_ctx(const chat_turn *t);
/** The one state transition (logged at debug). */
void chat_turn_to(chat_turn *t, chat_turn_state s);
/** Call on_done with what the turn reached and free it. */
void chat_turn_finish(chat_turn *t);
/** Record an error (BE_END_ERROR); code NULL: be_error_code(err). */
void chat_turn_seterr(chat_turn *t, int err, int status, const char *code, const char *fmt, ...) AW_PRINTF(5, 6);
/** Finish with a BE_END_ANSWER status other than completed (nothing committed). */
void chat_turn_not_completed(chat_turn *t, const char *status, const char *code, const char *fmt, ...)
    AW_PRINTF(4, 5);
/** Hand out "c1 <gen> <rounds>" with the handles; 1 if the turn was cancelled
 *  meanwhile (and is freed). */
int chat_turn_checkpoint(chat_turn *t);
/** A history callback arrived: clears store_busy and the record written; 1
 *  if the turn was cancelled meanwhile (and is freed). */
int chat_turn_store_back(chat_turn *t);
/** Build the request from the loaded history and t->cur, start a generation. */
void chat_turn_generate(chat_turn *t, const be_history_view *v);

/* chat_history.c */
/** Load the conversation (every turn's first step). */
void chat_turn_load(chat_turn *t);
/** The usage of this call's own requests (a retry's included). */
contract_usage chat_turn_usage(const chat_turn *t);
/** a += b (present if either is). */
void chat_usage_add(contract_usage *a, const contract_usage *b);
/** Append the final assistant message (t->answer) and commit the turn, then finish. */
void chat_turn_commit(chat_turn *t);
/** Append the assistant's calls (t->calls) and save the pending round, then finish with them. */
void chat_turn_save_round(chat_turn *t);

#endif

/* rsp_int.h -- internals of the Responses + Conversations backend (prefix rsp_).
 *
 * backend.h on the OpenAI Responses API with server-side conversations:
 * one conversation (conv_...) per conversation_id of ours, one response
 * (resp_..., background + stream + store; stream + store when
 * be_http_config.background is 0) per round of a turn.  The
 * assistant's definition (model, instructions, tools) travels with every
 * request: there is nothing to create at start-up.
 *
 * Modules:
 *   rsp_backend.c  the ops table, be_responses_new, assistant_ensure, cancel
 *   rsp_turn.c     the turn state machine (one enum, one transition function)
 *   rsp_stream.c   SSE event data -> deltas / answer / calls (pure)
 *   rsp_json.c     request bodies, response objects, the answer collector,
 *                  conversation item scans (pure)
 *   rsp_inputs.c   images, attachments and include in a turn's request, and
 *                  recognising them again (pure)
 *   rsp_hosted.c   the hosted tools' output: steps and generated files (pure)
 *   rsp_extras.c   the end of a turn with hosted tools: earlier rounds'
 *                  steps and files gathered, the files fetched (gen_files.h)
 *   rsp_conv.c     conversation handle: create + claim (+ delete the loser)
 *   rsp_manage.c   conversation management: history, append, delete
 *
 * Checkpoint (opaque to the worker, at most BE_CHECKPOINT_MAX bytes):
 *   "r1 <conv> <resp> <seq>"   e.g. "r1 conv_abc resp_123 0"
 * conv is the conversation handle, resp the response of the turn's latest
 * round ("-" when a recovery found its output in the conversation without
 * learning its id), seq the sequence number of the response.created event
 * it was recorded at (informational; resuming replays from 0).
 * An append (rsp_manage.c) checkpoints "a1 <conv> <anchor>": the newest
 * item of the conversation before its POST ("-": none).
 *
 * @locality the loop thread only.
 */
#ifndef AW_RSP_INT_H
#define AW_RSP_INT_H

#include <stddef.h>
#include <stdint.h>
#include <cJSON.h>
#include "api_client.h"
#include "aw_error.h"
#include "backend.h"
#include "buf.h"
#include "contract.h"
#include "gen_files.h"

#define RSP_ID_MAX 96          /* ids are ~60 bytes; longer ones are refused */
#define RSP_CALLS_MAX 128      /* function calls kept per round */
#define RSP_METADATA_MAX 16    /* the API's limit on metadata pairs */
#define RSP_ITEMS_PAGE 100     /* conversation items read per lookup (API max) */

/** Is id usable in a path: [A-Za-z0-9_-]{1,RSP_ID_MAX-1}? */
int rsp_id_ok(const char *id);

/* ---- the hosted tools' output (rsp_hosted.c) -------------------------------
 * Steps (file_search_call / code_interpreter_call items, kept only when
 * want_steps) and generated files (container_file_citation annotations of
 * assistant messages), deduplicated by item id / file id, in a budget of
 * their own: an item past it is left out (dropped), never failing the turn. */

typedef struct rsp_hosted {
  buf arena, steps, results, outputs, queries, files;
  int want_steps;
  size_t dropped;  /* items left out: past the budget */
  void *built;     /* the last rsp_hosted_build's allocation */
} rsp_hosted;

void rsp_hosted_init(rsp_hosted *h, int want_steps);
void rsp_hosted_reset(rsp_hosted *h);
void rsp_hosted_free(rsp_hosted *h);
/** Take what an output item holds for us (any item: the others are
 *  skipped).  AW_ENOMEM only (the collector is then reset). */
int rsp_hosted_add_item(rsp_hosted *h, const cJSON *item) AW_MUST_CHECK;
/** Add src's steps and files that dst has not, after dst's.  AW_ENOMEM. */
int rsp_hosted_merge(rsp_hosted *dst, const rsp_hosted *src) AW_MUST_CHECK;
size_t rsp_hosted_nsteps(const rsp_hosted *h);
size_t rsp_hosted_nfiles(const rsp_hosted *h);
/** The views: steps for be_turn_result, refs for gf_start; valid until the
 *  next add/reset/free/build.  AW_ENOMEM. */
int rsp_hosted_build(rsp_hosted *h, const contract_step **steps, size_t *nsteps, const gf_ref **refs,
                     size_t *nrefs) AW_MUST_CHECK;

/* ---- the answer collector (rsp_json.c) -------------------------------------
 * Assistant messages (output_text parts) and function calls of one round,
 * copied out of the cJSON trees into one bounded arena, addressed by offset
 * (the arena may move while it grows) and turned into the contract / backend
 * views in one allocation by rsp_answer_build. */

typedef struct rsp_answer {
  buf arena;        /* NUL-terminated strings */
  buf msgs;         /* message records */
  buf parts;        /* part records */
  buf anns;         /* annotation records (output_text parts) */
  buf calls;        /* call records */
  size_t text_len;  /* bytes of text kept, in order */
  size_t max_text;  /* cap on text_len (max_answer_bytes) */
  void *built;      /* the last rsp_answer_build's allocation */
  rsp_hosted hosted; /* what the same items hold for steps and files (add_item,
                        set_output and rsp_items_scan feed it; reset with the rest) */
} rsp_answer;

void rsp_answer_init(rsp_answer *a, size_t max_text);
void rsp_answer_reset(rsp_answer *a);
void rsp_answer_free(rsp_answer *a);
/** Add an output item: an assistant `message` (its output_text parts) or a
 *  `function_call` (call_id, name, arguments); file_search_call and
 *  code_interpreter_call items, and the container files messages cite, go
 *  to a->hosted; other items are skipped.
 *  AW_EPARSE for a malformed message / call, AW_ETOOBIG past the text cap or
 *  RSP_CALLS_MAX calls (the collector is then reset), AW_ENOMEM. */
int rsp_answer_add_item(rsp_answer *a, const cJSON *item) AW_MUST_CHECK;
/** Add a conversation item as GET /conversations/{id}/items lists it: a
 *  user or assistant `message` (input_text / output_text / text / refusal
 *  parts, or content as one string; output_text annotations mapped as for
 *  answers) is kept with its id, role and created_at (0 if none); any other
 *  item is skipped (*added 0).  AW_EPARSE for a malformed message (no valid
 *  id, no content); AW_ETOOBIG past the text cap (the collector is then
 *  reset, as rsp_answer_add_item does); AW_ENOMEM. */
int rsp_answer_add_listed(rsp_answer *a, const cJSON *item, int *added) AW_MUST_CHECK;
/** Replace the collected items with those of response.output (the whole
 *  truth once a response ended).  AW_OK when it has no output array. */
int rsp_answer_set_output(rsp_answer *a, const cJSON *response) AW_MUST_CHECK;
size_t rsp_answer_nmessages(const rsp_answer *a);
size_t rsp_answer_ncalls(const rsp_answer *a);
/** Build the views; valid until the next add/reset/free/build.  AW_ENOMEM. */
int rsp_answer_build(rsp_answer *a, const contract_out_message **msgs, size_t *nmsgs,
                     const be_tool_call **calls, size_t *ncalls) AW_MUST_CHECK;
/** Append to out the text of all parts from byte offset `from` on. */
int rsp_answer_text_from(const rsp_answer *a, size_t from, buf *out) AW_MUST_CHECK;

/* ---- response objects (rsp_json.c) ------------------------------------------ */

typedef struct rsp_resp {
  char id[RSP_ID_MAX];
  char status[32];      /* queued|in_progress|completed|failed|incomplete|cancelled */
  char error_code[64];  /* error.code, or incomplete_details.reason */
  char errmsg[256];     /* error.message */
  contract_usage usage; /* with input_tokens_details.cached_tokens and
                           output_tokens_details.reasoning_tokens (0 if absent) */
  char model[128];      /* the model the response names, "" if none or unusable */
  int64_t created_at;   /* unix seconds, 0 if absent */
} rsp_resp;

/** Fill out from a Response object.  AW_EPARSE when id or status is missing
 *  or invalid. */
int rsp_json_response(const cJSON *resp, rsp_resp *out) AW_MUST_CHECK;
/** Is status a terminal response status? */
int rsp_status_terminal(const char *status);

/* ---- request bodies (rsp_json.c) ---------------------------------------------- */

/** Translate tools_json (Assistants shape) into a Responses `tools` array:
 *  {"type":"function","function":{name,description,parameters,strict}} ->
 *  {"type":"function","name",..,"parameters",..,"strict",..}; other tools
 *  pass through (code_interpreter gets "container":{"type":"auto"} when it
 *  has none).  *out NULL when tools_json is NULL or "[]".  AW_EINVAL for
 *  text that is not an array of tool objects. */
int rsp_json_tools(const char *tools_json, cJSON **out) AW_MUST_CHECK;

/** Add the assistant's vector stores to a `tools` array (*tools may be
 *  NULL: created): ids appended to the vector_store_ids of a file_search
 *  tool that has them, else a {"type":"file_search","vector_store_ids":
 *  [...]} appended (FileSearchTool of the spec).  n 0: nothing.  AW_EINVAL
 *  for an empty id, AW_ENOMEM. */
int rsp_json_file_search(cJSON **tools, const char *const *ids, size_t n) AW_MUST_CHECK;

/** Translate tool_choice_json (Assistants shape: "auto", "required",
 *  "none", {"type":"function","function":{"name":..}}) into the Responses
 *  shape ({"type":"function","name":..}; one already in that shape is kept).
 *  *out NULL when tool_choice_json is NULL.  AW_EINVAL for anything else. */
int rsp_json_tool_choice(const char *tool_choice_json, cJSON **out) AW_MUST_CHECK;

/** The `input` of a first round: one user message with the parts as
 *  input_text.  AW_EINVAL for a part that is not text. */
int rsp_json_user_input(const contract_part *parts, size_t nparts, cJSON **out) AW_MUST_CHECK;

/** The `input` of a later round: function_call_output items. */
int rsp_json_outputs_input(const be_tool_output *outs, size_t n, const char *output_text,
                           cJSON **out) AW_MUST_CHECK;

/** POST /responses body as a tree, without "conversation" (added once the
 *  handle is known).  input is copied.  round 0: a first round (user
 *  metadata added, at most RSP_METADATA_MAX pairs in all: extra user pairs
 *  are dropped, *dropped counts them; the assistant's tool_choice, if any);
 *  round >= 1 adds aw_round instead and no tool_choice (a forced call would
 *  be forced again after its output: a loop).  background 0 leaves
 *  "background" out (stream + store only).  Every round: the
 *  code_interpreter attachments in the tool's container (*unplaced: ids a
 *  container named by id could not take, see rsp_input_code_files) and,
 *  with in->include_steps, the include list.  AW_EINVAL for tools_json that
 *  is not an array of tools, or a tool_choice_json rsp_json_tool_choice
 *  refuses. */
int rsp_json_turn_body(const be_turn_input *in, const cJSON *input, long round, int background,
                       cJSON **out, int *dropped, size_t *unplaced) AW_MUST_CHECK;

/** POST /conversations body: {"metadata":{"conversation_id":...}}. */
int rsp_json_conv_body(const char *conversation_id, char **out) AW_MUST_CHECK;

/** POST /conversations/{id}/items body closing calls: one
 *  function_call_output per call, with output. */
int rsp_json_close_calls_body(const be_tool_call *calls, size_t n, const char *output,
                              char **out) AW_MUST_CHECK;

/* ---- the end of a turn with hosted tools (rsp_extras.c) ------------------------ */

typedef struct rsp_extras rsp_extras;
/** The turn's steps and files; valid until rsp_extras_free. */
typedef void (*rsp_extras_cb)(void *opaque, const contract_step *steps, size_t nsteps,
                              const contract_file *files, size_t nfiles);

/** Gather the steps and generated files of a turn and fetch the files
 *  (bytes up to inline_max).  conv non-NULL: the turn had earlier rounds,
 *  whose items are read from that conversation (one page) and merged
 *  before round's; NULL: round's alone.  round is borrowed until the
 *  callback.  The callback comes once, never inside this call, unless
 *  rsp_extras_free came first; failures only lose steps or files (logged).
 *  AW_ENOMEM / AW_EINVAL before any I/O. */
int rsp_extras_start(api_client *api, const char *conv, const char *event_id, rsp_hosted *round,
                     size_t inline_max, rsp_extras_cb cb, void *opaque, rsp_extras **out) AW_MUST_CHECK;
/** Cancel and free (no callback follows); safe on NULL and inside the
 *  callback. */
void rsp_extras_free(rsp_extras *x);

/* ---- images, attachments, include (rsp_inputs.c) -------------------------------- */

/** The `input` of a first round: one user message with the parts
 *  (input_text, input_image) and the file_search attachments (input_file);
 *  one text part and no file: as rsp_json_user_input.  AW_EINVAL for a file
 *  part, an image without url / file id, an attachment without file id. */
int rsp_input_user(const be_turn_input *in, cJSON **out) AW_MUST_CHECK;

/** Put the code_interpreter attachments' file ids into the code_interpreter
 *  tool's "auto" container (*tools may be NULL: created; the tool is added
 *  when missing).  *unplaced counts the ids a container named by id could
 *  not take.  AW_EINVAL for an attachment without file id, AW_ENOMEM. */
int rsp_input_code_files(cJSON **tools, const contract_attachment *atts, size_t n,
                         size_t *unplaced) AW_MUST_CHECK;

/** Set body's include to the steps' includables. AW_ENOMEM. */
int rsp_input_include(cJSON *body) AW_MUST_CHECK;

/** Is the listed content part `stored` the part `sent` (texts equal;
 *  images / files of the same type and file id or url where shown)? */
int rsp_input_same_part(const cJSON *stored, const cJSON *sent);

/** Is a failed POST /responses (HTTP status, API code and message) the
 *  API refusing a file the request names: 400 / 404 naming one of req's
 *  file ids as missing, or code file_not_found? */
int rsp_input_file_missing(const cJSON *req, int http_status, const char *error_code, const char *errmsg);

/* ---- conversation items (rsp_json.c) -------------------------------------------- */

/** Scan one page of GET /conversations/{id}/items?order=desc for what a
 *  round sent (input, as built above): a user message -> the newest user
 *  message must carry the same texts; function_call_output items -> one of
 *  their call_ids must appear after the newest user message.  *found: it is
 *  there (the request was applied).  Then the items written after it (up to
 *  the next round's function_call_output) are added to ans, oldest first,
 *  and *ready says they look complete (at least one, none in_progress);
 *  *incomplete that one of them ended incomplete.  AW_EPARSE for a page
 *  without a data array; the collector's errors. */
int rsp_items_scan(const cJSON *page, const cJSON *input, rsp_answer *ans, int *found, int *ready,
                   int *incomplete) AW_MUST_CHECK;

/** Is the listed item stored the message item sent (same role, same
 *  texts, compared as rsp_items_scan compares a round's input)? */
int rsp_items_same_message(const cJSON *stored, const cJSON *sent);

/* ---- the stream mapper (rsp_stream.c) -------------------------------------------- */

typedef enum {
  RSP_EV_NONE = 0,   /* nothing for the caller (skipped, duplicate, bookkeeping) */
  RSP_EV_CREATED,    /* the response's id is known now (first event naming it) */
  RSP_EV_DELTA,      /* st->delta / delta_len: a piece of text */
  RSP_EV_TERMINAL,   /* the response ended: st->resp, the answer */
} rsp_ev;

typedef struct rsp_stream {
  int want_deltas;   /* 0: text deltas are skipped without a JSON parse */
  rsp_answer *ans;   /* borrowed: where output items go */
  rsp_resp resp;     /* the response as last seen */
  int64_t seq;       /* last sequence_number seen (-1: none) */
  int64_t created_seq; /* sequence_number of the event that named the id */
  int created;       /* resp.id is known */
  int terminal;      /* a terminal event was seen */
  int answer_err;    /* AW_ETOOBIG / AW_ENOMEM from the collector: stop adding */
  cJSON *doc;        /* the last parsed event (delta points into it) */
  const char *delta;
  size_t delta_len;
} rsp_stream;

/** Initialise for a stream of the response `known_id` (NULL: learn it from
 *  the first event).  Allocates nothing. */
void rsp_stream_init(rsp_stream *st, rsp_answer *ans, int want_deltas, const char *known_id);
void rsp_stream_free(rsp_stream *st);

/** Map one event's data (the event type is the JSON's "type": servers that
 *  send no `event:` line are served the same).  Events of another response,
 *  and events whose sequence_number is not above the last one seen, are
 *  NONE.  Returns AW_OK, or AW_EPARSE for data that is not an event object
 *  (the caller skips it); collector errors land in st->answer_err. */
int rsp_stream_event(rsp_stream *st, const char *data, size_t len, rsp_ev *ev) AW_MUST_CHECK;

/* ---- conversation handles (rsp_conv.c) ----------------------------------------- */

typedef struct rsp_conv rsp_conv;
/** Outcome: err AW_OK and the handle to use (ours, or the winner of a race),
 *  else err with status / code / message.  Strings valid during the call. */
typedef void (*rsp_conv_cb)(void *opaque, int err, int http_status, const char *error_code,
                            const char *errmsg, const char *handle);

/** Create a conversation tagged with conversation_id, claim it through the
 *  store under key "conv"; a lost claim deletes ours and answers with the
 *  winner.  cb once, never inside this call, unless rsp_conv_cancel. */
int rsp_conv_ensure(api_client *api, const be_store *store, const char *conversation_id,
                    const char *event_id, rsp_conv_cb cb, void *opaque, rsp_conv **out) AW_MUST_CHECK;
/** Cancel: no callback follows.  Safe on NULL. */
void rsp_conv_cancel(rsp_conv *c);

/* ---- the backend and its turns (rsp_backend.c, rsp_turn.c) ----------------------- */

typedef struct rsp_backend {
  be_backend base;
  uv_loop_t *loop;
  api_client *api;
  const be_store *store;
  size_t max_answer_bytes;
  long wait_base_ms;      /* first delay of resumes, lookups and polls (retry_base_ms) */
  int background;         /* be_http_config.background: 0 = stream only, no resume */
} rsp_backend;

enum { RSP_OP_ENSURE = 1, RSP_OP_TURN, RSP_OP_MANAGE };

/* Every op starts with this (be_op_head first, as backend.h requires). */
typedef struct rsp_op {
  be_op_head head;
  int kind;
  int cancelled;
  int in_cb;        /* > 0 while one of our user callbacks runs */
} rsp_op;

typedef enum { RSP_TURN_START = 1, RSP_TURN_CONTINUE, RSP_TURN_CANCEL } rsp_turn_mode;

/** The three turn entries of backend.h (validated by backend.c). */
int rsp_turn_begin(rsp_backend *be, rsp_turn_mode mode, const be_turn_input *in, long round,
                   const be_tool_output *outs, size_t n, const be_turn_events *ev, void *opaque,
                   be_op **out) AW_MUST_CHECK;
/** be_op_cancel of a turn. */
void rsp_turn_cancel_op(rsp_op *op);

/** The conversation management entries of backend.h (rsp_manage.c;
 *  validated by backend.c). */
typedef enum { RSP_MANAGE_HISTORY = 1, RSP_MANAGE_APPEND, RSP_MANAGE_DELETE } rsp_manage_mode;
int rsp_manage_begin(rsp_backend *be, rsp_manage_mode mode, const be_conv_input *in,
                     const be_conv_events *ev, void *opaque, be_op **out) AW_MUST_CHECK;
/** be_op_cancel of a conversation management op. */
void rsp_manage_cancel_op(rsp_op *op);

/** Format / parse a checkpoint (see the top of this file).  parse: AW_EINVAL
 *  for anything else; resp is "" for "-". */
int rsp_checkpoint_format(char *out, size_t n, const char *conv, const char *resp, int64_t seq) AW_MUST_CHECK;
int rsp_checkpoint_parse(const char *cp, char conv[RSP_ID_MAX], char resp[RSP_ID_MAX]) AW_MUST_CHECK;

#endif

/* api_json.h -- mapping Assistants API JSON to our results (prefix api_json_).
 *
 * Pure functions with no I/O, so that everything that interprets bytes from
 * the API (error bodies, run objects, message objects, stream event data)
 * sits in one place that tests/fuzz/fuzz_api_json.c can feed with arbitrary
 * input.  Inputs are untrusted: every field is type-checked, ids are length-
 * checked, and collected text is bounded.
 *
 * The answer collector (api_json_answer) is how a turn keeps assistant
 * messages without holding cJSON trees: strings are copied into one bounded
 * arena and described by small fixed-size records with offsets (the arena
 * may move when it grows); api_json_answer_build() turns them into the
 * contract_out_message arrays of contract.h in a single allocation.
 *
 * The tool-call collector (api_json_tool_calls) does the same for the
 * function calls of a run waiting in requires_action
 * (run.required_action.submit_tool_outputs.tool_calls), so a turn can hand
 * them to its caller after the run object's tree is gone.
 */
#ifndef AW_API_JSON_H
#define AW_API_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <cJSON.h>
#include "aw_error.h"
#include "buf.h"
#include "api_client.h"
#include "contract.h"

#define API_JSON_ID_MAX API_ID_MAX


/** The body of POST /assistants and POST /assistants/{id}
 *  (CreateAssistantRequest / ModifyAssistantRequest): name, model,
 *  instructions (NULL: left out), tools (tools_json, a JSON array; NULL:
 *  none), metadata {aw_name: name, aw_hash: hash}.  With vector stores
 *  (nids > 0) the tools hold a file_search tool (one is added unless
 *  tools_json has one) and tool_resources.file_search.vector_store_ids
 *  lists them.  *out is cJSON_free'd by the caller.  AW_EINVAL for a
 *  missing name, model or hash, tools_json that is not an array, an empty
 *  id; AW_ENOMEM. */
int api_json_assistant_body(const char *name, const char *model, const char *instructions, const char *tools_json,
                            const char *const *vector_store_ids, size_t nids, const char *hash,
                            char **out) AW_MUST_CHECK;

/** The turn's user message (CreateMessageRequest, sent as the run's
 *  additional_messages): role user; content parts text, image_url
 *  {url, detail?} and image_file {file_id, detail?} (an IMAGE_FILE must
 *  carry its file id: inline bytes are uploaded by the worker first);
 *  attachments [{file_id, tools: [{type: file_search|code_interpreter}]}]
 *  (left out when natt is 0); metadata: our tags event_id and
 *  conversation_id first, then the user's keys (a user key named like a
 *  tag is dropped).  *out is cJSON_Delete'd by the caller.  AW_EINVAL for
 *  a part or attachment that cannot be sent (no text / url / file id, a
 *  CONTRACT_PART_FILE, an attachment without tools), AW_ENOMEM. */
int api_json_user_message(const contract_part *parts, size_t nparts, const contract_attachment *att,
                          size_t natt, const char *event_id, const char *conversation_id,
                          const contract_kv *md, size_t nmd, cJSON **out) AW_MUST_CHECK;

/** The run's `tools` override (CreateRunRequest.tools) for a turn whose
 *  attachments need hosted tools (need: the CONTRACT_ATT_* bits of all its
 *  attachments): the assistant's tools (tools_json, a JSON array in the
 *  Assistants shape, or NULL; with_file_search: the assistant has a
 *  file_search tool besides, as api_json_assistant_body adds one for
 *  vector stores) plus file_search / code_interpreter when they lack one
 *  that is needed.  *out is NULL when nothing is missing (the run keeps the
 *  assistant's tools: nothing is sent), else JSON text to cJSON_free.
 *  AW_EINVAL for tools_json that is not an array, AW_ENOMEM. */
int api_json_run_tools(const char *tools_json, int with_file_search, unsigned need,
                       char **out) AW_MUST_CHECK;

/** Parse an error object as sent in a stream's `error` event (either the
 *  object itself or wrapped in "error").  AW_EPARSE if not JSON. */
int api_json_error_event(const char *data, size_t len, char *code, size_t code_size, char *msg,
                         size_t msg_size) AW_MUST_CHECK;

/** The parts of a run object a turn needs. */
typedef struct api_json_run {
  char id[API_JSON_ID_MAX];
  char status[32];
  char assistant_id[API_JSON_ID_MAX];
  char tag[132];          /* metadata.aw_tag (our event id, up to 128 bytes), "" if none */
  char message_tag[API_JSON_ID_MAX]; /* metadata.aw_message_id (the user message the
                             run was started for), "" if none */
  int64_t created_at;
  int64_t expires_at;    /* unix seconds; 0 when null (the run does not expire) */
  contract_usage usage;  /* the whole run's (the API has no cached/reasoning detail here) */
  char model[128];       /* the model the run used, "" if none or unusable */
  char error_code[64];   /* last_error.code, or incomplete_details.reason */
  char error_message[256];
} api_json_run;

/** Fill out from a run object.  AW_EPARSE when id or status is missing or
 *  not a string, or the id is too long. */
int api_json_run_parse(const cJSON *run, api_json_run *out) AW_MUST_CHECK;
/** Same from JSON text. */
int api_json_run_parse_text(const char *data, size_t len, api_json_run *out) AW_MUST_CHECK;

/** A unix time in seconds as the API sends it (expires_at) to unix ms for
 *  our results: 0 (never / unknown) for values <= 0; values whose product
 *  would overflow int64 (any number up to 9e18 passes the JSON mapping) are
 *  clamped to the largest whole second that fits. */
int64_t api_json_unix_ms(int64_t secs);

/** Is status a terminal run status (completed, failed, cancelled, expired,
 *  incomplete)? */
int api_json_run_terminal(const char *status);

/** Called with each text delta value of a thread.message.delta event. */
typedef int (*api_json_text_cb)(void *opaque, const char *text, size_t len);
/** Parse a thread.message.delta event and call cb for each text value in
 *  order.  AW_EPARSE if not JSON; a non-zero cb return stops and is
 *  returned. */
int api_json_delta_texts(const char *data, size_t len, api_json_text_cb cb, void *opaque) AW_MUST_CHECK;

/* ---- answer collector --------------------------------------------------- */

typedef struct api_json_answer {
  buf arena;  /* NUL-terminated strings, addressed by offset */
  buf msgs;   /* message records */
  buf parts;  /* part records */
  buf anns;   /* annotation records */
  size_t text_len; /* total bytes of text parts, in order */
  void *built;     /* result of the last api_json_answer_build */
} api_json_answer;

/** Initialise; the arena may hold max_bytes.  Allocates nothing. */
void api_json_answer_init(api_json_answer *a, size_t max_bytes);
/** Forget every message (keeps the limit). */
void api_json_answer_reset(api_json_answer *a);
/** Release memory. */
void api_json_answer_free(api_json_answer *a);

/** Add a message object (as in thread.message.completed or a messages list
 *  item).  Messages whose role is not "assistant" are skipped (AW_OK).
 *  AW_EPARSE for a non-object or missing id, AW_ETOOBIG past the bound (the
 *  collector is then reset). */
int api_json_answer_add(api_json_answer *a, const cJSON *msg) AW_MUST_CHECK;
/** Add a message object as a history page lists it: user and assistant
 *  messages (others skipped, AW_OK), with their role and created_at set in
 *  the built view (api_json_answer_add leaves both out: a turn's answer).
 *  Same errors as api_json_answer_add. */
int api_json_answer_add_listed(api_json_answer *a, const cJSON *msg) AW_MUST_CHECK;
/** Same from JSON text. */
int api_json_answer_add_text(api_json_answer *a, const char *data, size_t len) AW_MUST_CHECK;

/** Number of messages collected. */
size_t api_json_answer_count(const api_json_answer *a);

/** Build the contract view of the collected messages; valid until the next
 *  add/reset/free/build.  AW_ENOMEM. */
int api_json_answer_build(api_json_answer *a, const contract_out_message **msgs, size_t *n) AW_MUST_CHECK;

/** Append to out the concatenated text of all text parts from byte offset
 *  `from` on (what deltas would have carried after the first `from` bytes). */
int api_json_answer_text_from(const api_json_answer *a, size_t from, buf *out) AW_MUST_CHECK;

/* ---- tool calls of a run in requires_action ------------------------------ */

/** One function call, pointing into the collector's arena. */
typedef struct api_json_tool_call {
  const char *id;        /* call_... */
  const char *name;      /* function.name */
  const char *arguments; /* function.arguments as the model wrote it ("" if absent) */
} api_json_tool_call;

typedef struct api_json_tool_calls {
  buf arena; /* NUL-terminated strings */
  buf recs;  /* offset records */
  api_json_tool_call *built; /* result of the last api_json_tool_calls_build */
} api_json_tool_calls;

/** Initialise; the strings of all calls together may hold max_bytes, at
 *  most API_JSON_TOOL_CALLS_MAX calls.  Allocates nothing. */
#define API_JSON_TOOL_CALLS_MAX 128
void api_json_tool_calls_init(api_json_tool_calls *tc, size_t max_bytes);
/** Forget every call (keeps the limit). */
void api_json_tool_calls_reset(api_json_tool_calls *tc);
/** Release memory. */
void api_json_tool_calls_free(api_json_tool_calls *tc);

/** Replace the collected calls with those of run.required_action, which must
 *  be {"type":"submit_tool_outputs","submit_tool_outputs":{"tool_calls":
 *  [{"id":..,"type":"function","function":{"name":..,"arguments":..}}]}}
 *  with at least one call.  AW_EPARSE for anything else (a call without id
 *  or name, a non-function call), AW_ETOOBIG past the bounds; on error the
 *  collector is empty. */
int api_json_tool_calls_parse(api_json_tool_calls *tc, const cJSON *run) AW_MUST_CHECK;
/** Same from the run's JSON text. */
int api_json_tool_calls_parse_text(api_json_tool_calls *tc, const char *data, size_t len) AW_MUST_CHECK;
/** Number of calls collected. */
size_t api_json_tool_calls_count(const api_json_tool_calls *tc);
/** Build the array view of the calls; valid until the next parse/reset/
 *  free/build.  *calls is NULL when there are none.  AW_ENOMEM. */
int api_json_tool_calls_build(api_json_tool_calls *tc, const api_json_tool_call **calls,
                              size_t *n) AW_MUST_CHECK;

/* ---- run steps -------------------------------------------------------------- */

/** Scan one page of a run-steps list ordered newest first and append to ids
 *  (records of API_JSON_ID_MAX bytes, NUL-padded) the message ids of the
 *  message_creation steps, stopping at the tool_calls step that contains
 *  call_id: what the run wrote after that call was submitted.  *found is
 *  set to 1 when that step was on this page (stop paging); *last receives
 *  the id of the last step seen ("" if none, for the next page's `after`).
 *  AW_ETOOBIG when ids is full, AW_EPARSE for a page without a data array. */
int api_json_steps_after_call(const cJSON *page, const char *call_id, buf *ids, int *found,
                              char last[API_JSON_ID_MAX]) AW_MUST_CHECK;

/** Is id one of the records of ids (as filled by api_json_steps_after_call)? */
int api_json_ids_contain(const buf *ids, const char *id);

#endif

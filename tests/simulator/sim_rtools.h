/* sim_rtools.h -- the Responses API's hosted code interpreter and its
 * image and file inputs (prefix srt_).
 *
 * Why a module of its own: sim_responses.c is the response state machine
 * and its event log; what a turn with images, files and a code_interpreter
 * tool does is decided here, and sim_responses.c only places the result
 * in its output and log.  The rules (deterministic):
 *  - input content `input_image` ({image_url | file_id, detail}) is
 *    acknowledged: the answer starts with sci_image_ack's "I see N
 *    image(s). " (the images of the turn's user message);
 *  - input content `input_file` ({file_id}): the file is the turn's
 *    document.  A code interpreter request reads its numbers; a question
 *    is answered by searching it (sim_retrieval's BM25 over its chunks, the
 *    quote and citation of sim_fsearch: a file_citation annotation, no
 *    file_search_call item, since no tool was called);
 *  - a `code_interpreter` tool ({container: "cntr_..." | {type: auto,
 *    file_ids}}) with a request sci_wants_tool() accepts runs sci_run over
 *    the turn's files (the input_files, then the container's files): the
 *    container is created (auto, with the file_ids copied in) or reused,
 *    the output file is added to it, and the response gets a
 *    code_interpreter_call item {id "ci_...", status, code, container_id,
 *    outputs (logs, and an image for a chart) only when include[] has
 *    "code_interpreter_call.outputs", else null} before a message whose
 *    text ends with the file's name, annotated container_file_citation
 *    {container_id, file_id, filename, start_index, end_index};
 *  - a file id the request names that does not exist (input_image,
 *    input_file, container.file_ids) or an unknown container: 404 before
 *    anything is created.
 *
 * @locality MHD threads and the timer thread, store lock held (containers
 * and ids are the store's), except the validators srt_check_*.
 */
#ifndef SIM_RTOOLS_H
#define SIM_RTOOLS_H

#include <cjson/cJSON.h>
#include "aw_error.h"
#include "sim_api.h"
#include "sim_codeint.h"
#include "sim_fsearch.h"

/* The code interpreter call of a response. */
typedef struct srt_ci {
  char id[40];           /* "ci_..." */
  char container_id[40];
  char file_id[40];      /* the output's container file ("cfile_...") */
  int outputs;           /* include[] has code_interpreter_call.outputs */
  sci_output *out;
} srt_ci;

/* What the turn's inputs and hosted tools decided (srt_decide). */
typedef struct srt_turn {
  srt_ci *ci;            /* the code interpreter ran, or NULL */
  sfs_answer *doc;       /* a question answered from the input files, or NULL */
  char ack[64];          /* "I see N image(s). " or "" */
} srt_turn;

/** V_FN-style check of a code_interpreter tool (pre: "tools[2]"). */
int srt_check_tool(const cJSON *t, const char *pre, sapi_reply *r);
/** The tool as a response echoes it (caller deletes). */
cJSON *srt_echo_tool(const cJSON *t);

/** Is p an input_image or input_file part (which srt_check_part checks)? */
int srt_is_media_part(const cJSON *p);
/** Check an input_image / input_file part (name: "input[0].content[1]"). */
int srt_check_part(const cJSON *p, const char *name, sapi_reply *r);
/** The stored form of a checked media part (caller deletes). */
cJSON *srt_stored_part(const cJSON *p);

/** The file ids and the container the request names exist?  0, or -1 with
 *  r set (404).  Store lock held. */
int srt_check_refs(const cJSON *body, sapi_reply *r);

/** Decide a turn that makes no function call: hist (the model's history,
 *  its last user message being the turn's) and body (the create request).
 *  out is zeroed first; srt_turn_clear frees it.  AW_ENOMEM, AW_ETOOBIG,
 *  AW_EIO.  Store lock held. */
int srt_decide(const cJSON *hist, const cJSON *body, srt_turn *out) AW_MUST_CHECK;
void srt_turn_clear(srt_turn *t);
void srt_ci_free(srt_ci *ci);

/** The code_interpreter_call item, streamed as the API does, at output
 *  index idx: emit(resp, type, payload) is called for each event
 *  (added, in_progress, code delta per line, code done, interpreting,
 *  completed, done).  Returns the completed item (caller adds it to the
 *  output). */
typedef void (*srt_emit_fn)(void *resp, const char *type, cJSON *payload);
cJSON *srt_emit_ci(const srt_ci *ci, int idx, srt_emit_fn emit, void *resp);

/** The container_file_citation of ci's file in text (which ends with the
 *  file's name): start_index/end_index in characters. */
cJSON *srt_ci_annotation(const srt_ci *ci, const char *text);

#endif

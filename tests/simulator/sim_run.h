/* sim_run.h -- the run state machine (prefix srun_).
 *
 * A run goes queued -> in_progress -> completed, or ends failed / expired
 * (injected faults, decided when it is created) or cancelling ->
 * cancelled.  A run whose model calls functions (sim_tools.h) goes
 * in_progress -> requires_action (a tool_calls step) and waits: submitted
 * outputs take it back to queued -> in_progress, for the next round of
 * calls or the answer; left waiting requires_action_timeout_s, it
 * expires.  Every status change goes through srun_set_status(), which
 * stamps the timestamps, frees the thread for new runs when the run ends,
 * keeps the per-status counters and logs the transition.
 *
 * Two drivers advance a run, never both at once: the SSE stream that
 * created it (run->stream_owned), one step per event, or the timer thread
 * (srun_background), for non-streamed runs and for streams that went away
 * before the end -- so a client that lost its stream still finds the run
 * completed and the answer in the thread.
 *
 * A run with the file_search tool whose question the stores of its
 * assistant's or thread's tool_resources answer (sim_fsearch.h; a message's
 * file_search attachments are in the thread's own store, which a run
 * waits for while its files are processed, SRUN_SEARCH_WAIT_S) first makes
 * a tool_calls step with one file_search call (completed at once, with its
 * results), then the message quoting the best chunk, ending with the
 * marker 【0:0†source】 that its file_citation annotation covers.
 *
 * A run with the code_interpreter tool asked for a chart or a data file
 * (sim_ci_run.h) first makes a tool_calls step with one code_interpreter
 * call and a generated file, then the message: a chart's image_file part
 * and the text, or the text with a file_path annotation over the CSV's
 * sandbox link.  An answer to a message with image parts starts with
 * sci_image_ack's "I see N image(s). ".
 *
 * Each step reports what it did as AssistantStreamEvent events through a
 * sevents sink (SSE text and/or the --record array); pass NULL to discard.
 *
 * @locality every function but srun_background() needs the store lock.
 */
#ifndef SIM_RUN_H
#define SIM_RUN_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "buf.h"
#include "sim_store.h"

/** Where step events go; either member may be NULL. */
typedef struct sevents {
  buf *out;   /* SSE text: "event: NAME\ndata: JSON\n\n" */
  cJSON *rec; /* array of {"event","data"} for --record */
  int failed; /* out overflowed its bound */
} sevents;

/** Emit one event (data is printed, not taken). ev may be NULL. */
void sev_emit(sevents *ev, const char *name, const cJSON *data);
/** Emit one event whose data is already JSON text. */
void sev_emit_raw(sevents *ev, const char *name, const char *json);
/** Emit the final "event: done / data: [DONE]". */
void sev_done(sevents *ev);

/** How long a run waits for its thread's vector store files, and how
 *  often its driver looks again. */
#define SRUN_SEARCH_WAIT_S 60
#define SRUN_WAIT_POLL_MS 20

/** Create a queued run on thread for asst; body is the validated request
 *  (overrides: model, instructions, additional_instructions, tools,
 *  metadata, temperature, top_p, ...).  The answer is computed now,
 *  except a file search's, made when the run starts.
 *  NULL on ENOMEM. */
sobj *srun_create(sobj *thread, sobj *asst, const cJSON *body, int answer_tokens);
/** The one status transition function. */
void srun_set_status(sobj *run, srun_status st);
/** queued -> in_progress (a run waiting for its thread's files stays
 *  queued: call again later), then either the next round of tool calls (a
 *  tool_calls step, requires_action, an expiry timer) or the message
 *  step and the message (or straight on to failed/expired for an
 *  injected fault).  After submitted outputs it first reports the tool
 *  step completed. */
void srun_start(sobj *run, sevents *ev);
/** Emit the next token; returns how many remain. */
int srun_token(sobj *run, sevents *ev);
/** Complete message, step and run. */
void srun_finish(sobj *run, sevents *ev);
/** Does the run stop for tool outputs when it next starts? */
int srun_wants_tools(const sobj *run);
/** Accept the outputs for the pending calls (a validated
 *  SubmitToolOutputsRunRequest.tool_outputs array): the tool step
 *  completes with them, the run goes back to queued.  AW_EINVAL with the
 *  API's message in err when the run is not in requires_action or the
 *  ids are not exactly the pending calls'; AW_ENOMEM, changing nothing. */
int srun_submit_tool_outputs(sobj *run, const cJSON *tool_outputs, char *err, size_t err_size) AW_MUST_CHECK;
/** Ask an active run to stop: status cancelling. */
void srun_request_cancel(sobj *run);
/** cancelling -> cancelled (message incomplete, step cancelled). */
void srun_finalize_cancel(sobj *run, sevents *ev);
/** Let the timer thread drive run_id to its end, starting in delay_ms.
 *  Takes the store lock itself only inside the timer callback, so it may
 *  be called with or without the lock held. */
void srun_background(const char *run_id, int64_t delay_ms);

/* For the modules of a run's hosted tools (sim_ci_run.c); lock held. */

/** A new in_progress step of run, its common fields filled in (type and
 *  step_details are the caller's); it becomes the run's newest step.
 *  NULL on ENOMEM. */
sobj *srun_new_step(sobj *run, const char *type);
/** A new tool_calls step with no calls yet (step_details {type tool_calls,
 *  tool_calls []}), streamed to ev (thread.run.step.created, .in_progress;
 *  ev may be NULL) as the real API starts one.  NULL on ENOMEM. */
sobj *srun_tool_calls_step(sobj *run, sevents *ev);
/** The run ends failed with last_error {code, message}. */
void srun_fail(sobj *run, const char *code, const char *msg, sevents *ev);
/** The run's usage so far, as a step or the run reports it (caller owns). */
cJSON *srun_usage_json(const srun_state *rs);

#endif

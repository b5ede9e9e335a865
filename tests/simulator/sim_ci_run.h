/* sim_ci_run.h -- the code interpreter in an Assistants run (prefix srci_).
 *
 * Why it exists: the worker delivers the files an Assistants turn
 * generates (issue 10, part 4): image_file content parts and file_path
 * annotations naming /v1/files files of purpose "assistants_output".  The
 * decision and the bytes come from sim_codeint.h (shared with the
 * Responses API); this module dresses them in the Assistants shapes, so
 * that sim_run.c only calls it at three points:
 *  - srci_plan (run created): when the run's tools (the assistant's, or
 *    the run's override) include code_interpreter, tool_choice is not
 *    "none" and sci_run wants the tool for the last user message, the
 *    input files are the code_interpreter attachments of the thread's
 *    messages (each read up to SRCI_MAX_INPUT bytes, at most
 *    SRCI_MAX_FILES), and the answer is the output's sentence -- for a CSV
 *    followed by its sandbox link "sandbox:/mnt/data/summary.csv", which a
 *    file_path annotation covers;
 *  - srci_step (run started): a tool_calls step with one code_interpreter
 *    call {input: the code, outputs: [logs, image (a chart)]}, the file
 *    stored (sfiles_add_bytes), streamed as the API does
 *    (thread.run.step.created, .in_progress, a delta with the call and its
 *    input, a delta with the outputs, .completed);
 *  - srci_message (message created): a chart's image_file part first
 *    ({file_id}, streamed as a thread.message.delta with index 0); the
 *    text then is part 1.
 * Costs: the input files are read under the store lock (test-sized files,
 * bounded above); the output is at most sci's 300 KiB CSV.
 *
 * State lives in run->ext (freed with the run).
 *
 * @locality store lock held for every function.
 */
#ifndef SIM_CI_RUN_H
#define SIM_CI_RUN_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "aw_error.h"
#include "sim_run.h"
#include "sim_store.h"

#define SRCI_MAX_INPUT (1u << 20)
#define SRCI_MAX_FILES 10

/** Decide whether run uses the code interpreter for question; when it
 *  does, rs->answer (prefix, then the output's sentence) and tokens_total
 *  are replaced and *used = 1.  AW_ENOMEM. */
int srci_plan(sobj *run, sobj *thread, const char *question, const char *prefix, int *used) AW_MUST_CHECK;
/** Does run answer with the code interpreter (srci_plan said so)? */
int srci_used(const sobj *run);
/** Does run still owe its code interpreter step? */
int srci_pending(const sobj *run);
/** Make the step and the file (see above).  1 done, 0 the run failed. */
int srci_step(sobj *run, sevents *ev);
/** Add the image part to the new message msg (before any text). */
void srci_message(sobj *run, sobj *msg, sevents *ev);
/** Index of the answer's text part in the message (0, or 1 after an image). */
int srci_text_part(const sobj *run);
/** The file_path annotation of the answer, or NULL (delta: with index 0);
 *  *end_bytes gets the bytes of answer it needs to be whole. */
cJSON *srci_annotation(const sobj *run, int delta, size_t *end_bytes);

#endif

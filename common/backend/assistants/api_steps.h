/* api_steps.h -- a run's hosted tool calls, from its steps (prefix api_steps_).
 *
 * Why a module of its own: a request with include_steps gets the turn's
 * file_search and code_interpreter calls in the response's `steps`.  On
 * the Assistants API they are only in the run steps list (GET
 * /threads/{t}/runs/{r}/steps, tool_calls steps); the message objects do
 * not carry them.  Like api_json.h this is pure (no I/O) and bounded, so
 * untrusted pages can be fed to it by tests and fuzzers, and a turn keeps
 * no cJSON tree between pages: strings go to one bounded arena, calls to
 * fixed records, and api_steps_build() makes the contract_step view in one
 * allocation.
 *
 * What is kept (RunStepDetailsToolCalls*Object): file_search {id, results
 * [{file_id, file_name, score, content[0].text when the list was asked
 * with include[]}]} -- the Assistants call has no queries: none are
 * listed --; code_interpreter {id, input, outputs [logs {logs} | image
 * {image.file_id}]}.  Each call carries its step's status.  Function
 * calls are left out (the turn's tool_calls carry them); so is anything
 * unknown.  A call that does not fit the arena is not half-added: the
 * collector stays as it was before it and says AW_ETOOBIG.
 */
#ifndef AW_API_STEPS_H
#define AW_API_STEPS_H

#include <stddef.h>
#include <cJSON.h>
#include "api_client.h"
#include "aw_error.h"
#include "buf.h"
#include "contract.h"

#define API_STEPS_MAX_CALLS 64     /* hosted calls kept per turn */
#define API_STEPS_MAX_ITEMS 1024   /* results + outputs kept per turn */

typedef struct api_steps {
  buf arena;   /* NUL-terminated strings, by offset */
  buf calls;   /* call records */
  buf items;   /* result / output records */
  void *built; /* result of the last api_steps_build */
} api_steps;

/** Initialise; the strings may hold max_bytes.  Allocates nothing. */
void api_steps_init(api_steps *s, size_t max_bytes);
/** Release memory (the collector may be initialised again). */
void api_steps_free(api_steps *s);

/** Add the hosted calls of one page of a steps list (ListRunStepsResponse,
 *  ascending order), in order.  *last receives the id of the page's last
 *  step ("" if none: the next page's `after`).  AW_EPARSE for a page
 *  without a data array, AW_ETOOBIG past the bounds (the calls added before
 *  stay), AW_ENOMEM. */
int api_steps_add_page(api_steps *s, const cJSON *page, char last[API_ID_MAX]) AW_MUST_CHECK;

/** Number of calls collected. */
size_t api_steps_count(const api_steps *s);

/** Build the contract view; valid until the next add/build/free.  *steps is
 *  NULL when there are none.  AW_ENOMEM. */
int api_steps_build(api_steps *s, const contract_step **steps, size_t *n) AW_MUST_CHECK;

#endif

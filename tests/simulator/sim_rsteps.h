/* sim_rsteps.h -- GET .../runs/{id}/steps and .../steps/{step_id}, with
 * the spec's include[] (prefix srsteps_).
 *
 * Why it exists: the file search results of a run step carry their chunk's
 * text only when asked for, as on the real service:
 * `include[]=step_details.tool_calls[*].file_search.results[*].content`
 * (the only value the spec allows; any other is a 400 invalid_value).  The
 * stored step never holds the text (the run's file search keeps it,
 * sim_run.c's rs->fsearch), so a plain GET stays one print of the stored
 * object; with include[] the page is printed, parsed and each file_search
 * result gets content [{type: "text", text}] -- a copy per request, paid
 * only by the requests that ask.
 *
 * @locality MHD threads, store lock held.
 */
#ifndef SIM_RSTEPS_H
#define SIM_RSTEPS_H

#include "sim_api.h"
#include "sim_store.h"

/** Answer the steps list of run (step_id NULL) or one step. */
void srsteps_reply(const sapi_req *q, sapi_reply *r, sobj *run, const char *step_id);

#endif

/* sim_responses.h -- the Responses API: response objects, their state
 * machine and event log (prefix sresp_).
 *
 * A response (SK_RESP, "resp_...") goes queued -> in_progress -> completed,
 * or ends failed (an injected run fault: error.code = fail_run_code),
 * incomplete (max_output_tokens reached, or expire_next_n_runs) or
 * cancelled (POST .../cancel, background responses only).  Every status
 * change goes through one function (set_status in the .c), which stamps
 * completed_at, releases the conversation lock and logs the transition.
 *
 * What the scripted model does is decided at creation, from the history
 * (the conversation's items, or the previous response's input and output,
 * then this request's input):
 *  - the history ends with function_call_output items: the answer is built
 *    from those outputs (stools_answer, labelled by the matching calls),
 *    as submit_tool_outputs does for runs;
 *  - else the last user message asks for functions of `tools`
 *    (stools_plan): the output is the first round of function_call items;
 *  - else, when the request has a file_search tool and the last user
 *    message is a question that its vector stores answer (sim_fsearch.h):
 *    a file_search_call item, then a message quoting the best chunk with a
 *    file_citation annotation (file_id, filename, index: the quote's end);
 *  - else the scripted answer (smodel_answer) to the last user message.
 *
 * One driver, the timer thread, advances every response (streamed or
 * not): one token per token_delay_ms after latency_ms.  Each step appends
 * ResponseStreamEvent objects, numbered by sequence_number from 0, to the
 * response's event log, which is all a stream is: an SSE reader
 * (sim_rstream.h) tails the log, so a dropped stream, a retrieve with
 * stream=true&starting_after=N and the creating stream all see the same
 * events, and the response finishes whether anyone reads or not.  The log
 * costs ~200 bytes per token and goes with the response.
 *
 * @locality sresp_handle() and sresp_admin() from MHD threads (they take
 * the store lock); the rest need the store lock held.
 */
#ifndef SIM_RESPONSES_H
#define SIM_RESPONSES_H

#include <cjson/cJSON.h>
#include "buf.h"
#include "sim_api.h"
#include "sim_store.h"

/** Serve a /v1/responses route already classified in r->route. */
void sresp_handle(const sapi_req *q, sapi_reply *r, char s[][64]);
/** GET /admin/responses: {"count","data":[{"id","status","conversation",
 *  "event_id","previous_response_id","background"}]} in creation order,
 *  filtered by the query's event_id (metadata.event_id), conversation and
 *  status when given. */
void sresp_admin(const sapi_req *q, sapi_reply *r);
/** Responses currently in each status (srun_status indexes). */
void sresp_counts(long out[RS_COUNT]);

/** Events of the log numbered from..n-1, at most max: SSE text appended to
 *  out ("event: TYPE\ndata: JSON\n\n"), and {"event","data"} to rec when
 *  not NULL.  *deltas is increased by the delta events among them.
 *  Returns how many were copied, or -1 when out is full. */
long sresp_copy_events(sobj *resp, long from, long max, buf *out, cJSON *rec, int *deltas);
/** Events in the log so far. */
long sresp_event_count(const sobj *resp);
/** Has the response ended (completed, failed, incomplete, cancelled)? */
int sresp_ended(const sobj *resp);

#endif

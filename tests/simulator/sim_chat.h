/* sim_chat.h -- the Chat Completions API: POST /v1/chat/completions
 * (prefix schat_).
 *
 * Stateless, as the real API: the client sends the whole conversation with
 * every request, and the answer is decided from it at once by the same
 * scripted model as the other APIs (sim_turn): the system and developer
 * messages are the instructions, the last user message is the turn's
 * question, the assistant tool_calls and tool messages after it are the
 * rounds already made and their outputs.  The answer is written by a
 * sim_cstream reader (chunks, or the chat.completion object), paced by
 * token_delay_ms.
 *
 * Validation follows the real API: model and messages are required, each
 * message is checked by role, a tool message must answer a call of the
 * assistant message before it, and an assistant message with tool_calls
 * must be followed by a tool message for each call; fields it does not
 * know are ignored.  Faults: the per-request ones of sim_api (429, 500,
 * apply_then_fail on "POST /v1/chat/completions"), drop_next_n_streams on a
 * streamed text answer, fail_next_n_runs (an HTTP error by fail_run_code:
 * server_error 500, rate_limit_exceeded 429, invalid_prompt 400),
 * expire_next_n_runs (an empty answer, finish_reason "length"), and
 * max_context_tokens (400 context_length_exceeded).
 *
 * Every request body that parses is kept (the last 256, at most 32 MiB) for
 * GET /admin/chat/requests, so a test can see what a client sent.
 *
 * @locality MHD threads; the request log has its own mutex.
 */
#ifndef SIM_CHAT_H
#define SIM_CHAT_H

#include "sim_api.h"

/** Serve POST /v1/chat/completions (after auth and faults). */
void schat_handle(const sapi_req *q, sapi_reply *r);
/** GET /admin/chat/requests[?after=N]: a JSON array, oldest first, of
 *  {"index","status","body"} for the last 256 request bodies (index counts
 *  every body received since the process started; status is the answer
 *  the route gave, before an apply_then_fail replaced it), only those with
 *  index > N when after is given. */
void schat_admin_requests(const sapi_req *q, sapi_reply *r);
/** Forget the kept request bodies (POST /admin/reset); the index goes on. */
void schat_reset(void);

#endif

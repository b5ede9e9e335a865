/* api_client.h -- client of OpenAI-style HTTP APIs on a libuv loop (prefix api_).
 *
 * A thin layer over http_client shared by the backends (Assistants v2,
 * Responses): it builds URLs from the configured base
 * ("http://127.0.0.1:PORT/v1"), sends the fixed headers (Authorization:
 * Bearer KEY -- never logged, never put in an error message --,
 * Content-Type: application/json, and the optional OpenAI-Beta (cfg.beta:
 * the Assistants backend sets "assistants=v2"), OpenAI-Organization and
 * OpenAI-Project) from one header list built at creation, retries per
 * retry.h (inside http_client), and turns responses into results:
 *
 *   2xx with a JSON body  -> res->json, a cJSON tree owned by the client,
 *                            valid only during the callback;
 *   any other status      -> err by class (429 AW_ERATELIMIT, 5xx
 *                            AW_EHTTP5XX, other 4xx AW_EHTTP4XX) and a precise
 *                            message built from the API's error object:
 *                            "POST /v1/threads/x/runs: HTTP 400
 *                            invalid_request_error: <message>";
 *   transport failure     -> AW_EIO / AW_ETIMEDOUT; body over the cap
 *                            (default 4 MiB) -> AW_ETOOBIG; not JSON ->
 *                            AW_EPARSE.
 *
 * No side effect twice at the API.  A call that creates something (an
 * api_request with idempotent == 0, every api_stream) is retried only when
 * it certainly was not applied: on 429, and on failures before the request
 * was sent (connection refused, DNS, connect timeout).  Any other failure
 * -- 5xx, a timeout or reset after sending, a stream that dropped, a 2xx
 * whose body could not be read -- ends at once with err AW_EAMBIGUOUS and
 * maybe_applied = 1, keeping the HTTP status, error_code and message: the
 * caller looks for what the request created (by the tags it put on it)
 * before sending it again.  Idempotent calls (GET, DELETE, api_request with
 * idempotent = 1) are retried on 429, 5xx and transport failures.
 *
 * Streaming calls (runs create with stream:true, threads create-and-run,
 * submit tool outputs)
 * feed the 2xx body to an SSE parser (sse.h) and hand each event's name and
 * data bytes to on_event without interpreting them: callers decide which
 * events deserve a JSON parse.  on_done follows once the stream ended.
 *
 * Ids put into paths must match [A-Za-z0-9_-]{1,95}; anything else is
 * AW_EINVAL before any I/O.  Every call returns AW_OK or an AW_E* detected
 * before I/O; later outcomes arrive through on_done, exactly once unless
 * cancelled, never inside the starting call.
 *
 * @locality the loop thread only.
 */
#ifndef AW_API_CLIENT_H
#define AW_API_CLIENT_H

#include <stddef.h>
#include <cJSON.h>
#include <uv.h>
#include "api_gate.h"
#include "aw_error.h"
#include "http_client.h"
#include "retry.h"

#define API_ID_MAX 96 /* longest id put into a path, NUL included (ids are ~30 bytes) */

typedef struct api_client api_client;
typedef struct api_call api_call;

/** Told of every finished call (not of cancelled ones), on the loop thread,
 *  before the call's on_done: route is "METHOD /path/template" (api_route),
 *  http_status the last attempt's status (0: no response), seconds from the
 *  call's start to its end (a stream's whole length, retries and backoff
 *  included), attempts 1 + retries.  route is valid only during the call. */
typedef void (*api_observe_fn)(void *opaque, const char *route, int http_status, double seconds,
                               int attempts);

typedef struct api_config {
  const char *base_url;      /* required, e.g. "https://api.openai.com/v1" */
  const char *api_key;       /* required; never logged */
  const char *organization;  /* optional */
  const char *project;       /* optional */
  const char *beta;          /* OpenAI-Beta header value ("assistants=v2"),
                                NULL: no such header */
  long request_timeout_ms;   /* per non-streaming attempt (default 30000) */
  long stream_idle_timeout_ms; /* a silent stream ends after this (default 60000) */
  retry_policy retry;        /* default retry_policy_default() */
  long max_connections;      /* 0 = unlimited */
  size_t max_body_bytes;     /* cap on a response body (default 4 MiB) */
  size_t max_event_bytes;    /* cap on one SSE event (default 1 MiB) */
  api_observe_fn observe;    /* optional: latency and retries per call (metrics) */
  void *observe_opaque;
  /* Optional (borrowed, must outlive the client): the fleet's rate gate.
   * Every call first asks it for permission (per class, api_gate.h) and
   * feeds it the rate-limit headers of every response; a call waiting at
   * the gate has sent nothing, and its timeouts start when it is sent.
   * NULL (the default): calls are sent at once. */
  const api_gate *gate;
} api_config;

typedef struct api_result {
  int err;                 /* AW_OK or AW_E* (see above) */
  int maybe_applied;       /* 1 iff err == AW_EAMBIGUOUS: a creating call
                              failed in a way that may have been applied */
  int http_status;         /* 0 if no response */
  const cJSON *json;       /* parsed 2xx body (NULL for streams, errors) */
  const char *error_code;  /* API error.code or error.type, "" if none */
  const char *errmsg;      /* "" on success */
  int attempts;            /* 1 + retries */
  int events;              /* streams: events delivered to on_event */
} api_result;

/** Outcome of a call; strings and json valid only during the call. */
typedef void (*api_done_cb)(void *opaque, const api_result *res);
/** One SSE event of a stream (event name "message" if none given).  data is
 *  NUL-terminated.  Return 0 to go on, non-zero to stop the stream (on_done
 *  then reports AW_ECANCELLED). */
typedef int (*api_event_cb)(void *opaque, const char *event, size_t event_len, const char *data,
                            size_t data_len);

/** Defaults (strings NULL). */
void api_config_default(api_config *cfg);

/** Format the error of a non-2xx response: "POST /v1/threads: HTTP 400
 *  invalid_request_error: <message>" (type and message from the API's
 *  {"error":{...}} object, else a sanitized prefix of the body).  code
 *  receives error.code, else error.type, else "" (may be NULL).  Secrets
 *  shaped like keys are masked.  Never fails; outputs are truncated.
 *  (api_error.c; pure, fuzzed by tests/fuzz/fuzz_api_json.c.) */
void api_error_format(const char *method, const char *path, int status, const char *body,
                      size_t body_len, char *code, size_t code_size, char *msg, size_t msg_size);

/** Create a client; strings in cfg are copied.  AW_ECONFIG for a missing
 *  base_url / api_key, AW_ENOMEM. */
int api_client_new(uv_loop_t *loop, const api_config *cfg, api_client **out, char *errstr,
                   size_t errstr_size) AW_MUST_CHECK;

/** Cancel every call (no callbacks) and free the client; its libuv handles
 *  finish closing on the loop's next iteration.  Never call from one of its
 *  callbacks.  Safe on NULL. */
void api_client_free(api_client *c);

/** Cancel a call: no callback follows.  Safe on NULL; a no-op inside the
 *  call's own on_done. */
void api_call_cancel(api_call *call);

/** Number of calls in flight. */
size_t api_client_pending(const api_client *c);

/** The path of the base URL ("/v1"), used to prefix paths in messages. */
const char *api_client_base_path(const api_client *c);

/** The loop the client runs on, for modules built on it that need a timer
 *  of their own (gen_files: a callback on the next iteration). */
uv_loop_t *api_client_loop(const api_client *c);

/** The route of a call, a bounded label for metrics: "METHOD " + path (below
 *  the base URL) without its query, each segment that is an id replaced by
 *  "{id}": a segment starting with asst_, thread_, msg_, run_, step_, file_,
 *  vs_ or call_, or containing a digit (no endpoint name of the API has one,
 *  so ids of a compatible server that uses other prefixes stay bounded too).
 *  "POST", "/threads/thread_abc/runs?x=1" -> "POST /threads/{id}/runs".
 *  Writes at most n bytes including the NUL (n > 0); AW_ETOOBIG when the
 *  route was truncated to fit.  O(length), no allocation. */
int api_route(const char *method, const char *path, char *out, size_t n) AW_MUST_CHECK;

/* ---- generic --------------------------------------------------------------- */

/** Call METHOD base_url+path (path starts with '/', may carry a query).
 *  body is JSON text or NULL (copied).  idempotent 1: the request may be
 *  sent again whatever happened (GET, DELETE, an update); 0: it creates
 *  something, so it is retried only when certainly not applied and may end
 *  AW_EAMBIGUOUS (see above).  *out (may be NULL) receives a handle for
 *  api_call_cancel. */
int api_request(api_client *c, const char *method, const char *path, const char *body,
                int idempotent, api_done_cb on_done, void *opaque, api_call **out) AW_MUST_CHECK;

/** POST base_url+path with body (which should contain "stream":true) and
 *  deliver the SSE events of the response.  A POST stream creates something
 *  (a run, a response, a tool-output submission): retried only on 429 and
 *  on failures before the request was sent; a 5xx, a timeout, or a stream
 *  that dropped (after events or not) ends AW_EAMBIGUOUS, maybe_applied 1,
 *  res->events telling how many events were delivered. */
int api_stream(api_client *c, const char *path, const char *body, api_event_cb on_event,
               api_done_cb on_done, void *opaque, api_call **out) AW_MUST_CHECK;

/** GET base_url+path (may carry a query) and deliver the SSE events of the
 *  response, e.g. to resume a stream: GET
 *  /responses/{id}?stream=true&starting_after=N.  Idempotent: retried like
 *  a GET (429, 5xx, transport failures) while no event byte was delivered;
 *  a stream that drops after that ends AW_EIO / AW_ETIMEDOUT (never
 *  AW_EAMBIGUOUS). */
int api_stream_get(api_client *c, const char *path, api_event_cb on_event, api_done_cb on_done,
                   void *opaque, api_call **out) AW_MUST_CHECK;

/** Bytes of a download as they arrive.  Return 0 to go on, non-zero to
 *  stop (on_done then reports AW_ECANCELLED). */
typedef int (*api_data_cb)(void *opaque, const char *data, size_t len);

/** POST base_url+path as multipart/form-data (http_form_part: the parts'
 *  file contents are streamed from memory or a descriptor, never copied
 *  whole; parts and what they point to are borrowed until on_done or
 *  cancel).  It creates something: retried only when certainly not applied,
 *  may end AW_EAMBIGUOUS like any creating api_request.  No total timeout:
 *  an attempt fails AW_ETIMEDOUT when no byte moved either way for
 *  request_timeout_ms.  The 2xx answer is JSON, as for api_request. */
int api_upload(api_client *c, const char *path, const http_form_part *parts, size_t nparts,
               api_done_cb on_done, void *opaque, api_call **out) AW_MUST_CHECK;

/** GET base_url+path and hand the 2xx body to on_data as it arrives
 *  (bounded memory: one receive buffer); res->json stays NULL.  Over
 *  max_bytes (0: no cap) the transfer stops with AW_ETOOBIG.  Idempotent:
 *  retried on 429, 5xx and transport failures while no byte reached
 *  on_data.  No total timeout; AW_ETIMEDOUT after request_timeout_ms
 *  without a byte.  A non-2xx answer is an error as for api_request. */
int api_download(api_client *c, const char *path, size_t max_bytes, api_data_cb on_data,
                 api_done_cb on_done, void *opaque, api_call **out) AW_MUST_CHECK;

/* ---- endpoints ---------------------------------------------------------------
 * body arguments are JSON text (may be NULL where the API accepts no body).
 * List calls take limit (0 = API default), after / order (NULL = default). */

/** POST /assistants */
int api_assistants_create(api_client *c, const char *body, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** GET /assistants/{id} */
int api_assistants_retrieve(api_client *c, const char *id, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** POST /assistants/{id} */
int api_assistants_update(api_client *c, const char *id, const char *body, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** GET /assistants?limit=&order=&after= */
int api_assistants_list(api_client *c, int limit, const char *order, const char *after, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;

/** POST /threads (retried like an idempotent request: a repeat can only leave an empty thread) */
int api_threads_create(api_client *c, const char *body, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** GET /threads/{id} */
int api_threads_retrieve(api_client *c, const char *id, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** DELETE /threads/{id} */
int api_threads_delete(api_client *c, const char *id, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** POST /threads/runs (stream) -- create a thread and run it. */
int api_threads_create_and_run(api_client *c, const char *body, api_event_cb on_event, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;

/** POST /threads/{t}/messages */
int api_messages_create(api_client *c, const char *thread, const char *body, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** GET /threads/{t}/messages?run_id=&order=&limit=&after= (run_id may be NULL) */
int api_messages_list(api_client *c, const char *thread, const char *run_id, const char *order, int limit, const char *after, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;

/** POST /threads/{t}/runs (stream; creates: may end AW_EAMBIGUOUS) */
int api_runs_create(api_client *c, const char *thread, const char *body, api_event_cb on_event, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** GET /threads/{t}/runs/{r} */
int api_runs_retrieve(api_client *c, const char *thread, const char *run, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** GET /threads/{t}/runs?limit=&order= */
int api_runs_list(api_client *c, const char *thread, int limit, const char *order, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** POST /threads/{t}/runs/{r}/submit_tool_outputs (stream; body carries
 *  "tool_outputs" and "stream":true).  Like every POST stream, retried only
 *  when certainly not applied; AW_EAMBIGUOUS otherwise, which callers
 *  resolve by retrieving the run (still waiting for the same calls: not
 *  taken). */
int api_runs_submit_tool_outputs(api_client *c, const char *thread, const char *run, const char *body, api_event_cb on_event, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** POST /threads/{t}/runs/{r}/cancel */
int api_runs_cancel(api_client *c, const char *thread, const char *run, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;
/** GET /threads/{t}/runs/{r}/steps?limit=&order=&after= */
int api_run_steps_list(api_client *c, const char *thread, const char *run, int limit, const char *order, const char *after, api_done_cb cb, void *opaque, api_call **out) AW_MUST_CHECK;

#endif

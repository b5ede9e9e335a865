/* api_gate.h -- the API client's port to a rate limiter shared by the fleet
 * (prefix api_gate_).
 *
 * Why a port: OpenAI's limits are per organization and key, not per
 * process, so a fleet of workers that each back off on their own keeps
 * stampeding into 429s.  The API client (api_client.h) asks a gate for
 * permission before it sends each request and tells it what the API said
 * about its limits after each response; what the gate counts against, and
 * where (the worker: token buckets in Redis, worker/ratelimit/rate_gate.h),
 * is not the client's business.  With no gate configured (api_config.gate
 * NULL, the default) the client sends at once, as it always did: no
 * allocation, no round trip.
 *
 * Waiting happens before a request is sent, never between sending and
 * reading: a request that has not left cannot have been applied, so a
 * delayed create is simply sent later and no side effect can happen twice.
 * Streaming and buffered calls go through the same gate.  Retries that
 * http_client makes by itself after a 429 are not asked for again (the
 * gate is told of the 429 and charges the retry to the bucket instead).
 *
 * Classes.  Limits differ by endpoint family, so requests are counted per
 * class, a bounded label derived from the path (api_gate_class):
 * "responses", "chat", "assistants" (threads and runs too), "conversations",
 * "files", ...
 *
 * @locality the loop thread only; callbacks never run inside the call that
 * started them.
 */
#ifndef AW_API_GATE_H
#define AW_API_GATE_H

#include <stddef.h>
#include "aw_error.h"
#include "ratelimit_headers.h"

#define API_GATE_CLASS_MAX 32 /* bytes of a class label, NUL included */

/** Permission to send: called exactly once per acquire, unless cancelled. */
typedef void (*api_gate_grant_fn)(void *opaque);

typedef struct api_gate {
  /** Ask to send one request of class cls whose JSON body is body (len
   *  bytes, may be NULL: the gate may estimate its tokens from it, and must
   *  not keep it).  grant(opaque) follows when the request may go, on a
   *  later loop iteration; *ticket names the wait for cancel.  A non-zero
   *  return (AW_ENOMEM) means no grant will come: the caller sends at once
   *  (a limiter that cannot count must not stop the traffic). */
  int (*acquire)(void *self, const char *cls, const char *body, size_t len, api_gate_grant_fn grant,
                 void *opaque, void **ticket);
  /** Withdraw a pending acquire: its grant never comes.  Safe on NULL. */
  void (*cancel)(void *self, void *ticket);
  /** A response of class cls arrived with HTTP status http_status and the
   *  rate-limit headers in info; age_ms is how long ago the API counted the
   *  request (the time since it was sent; 0 when unknown), so that the gate
   *  can credit what the API refilled meanwhile. */
  void (*feedback)(void *self, const char *cls, int http_status, const rlh_info *info, long age_ms);
  void *self;
} api_gate;

/** The class of a request path below the base URL ("/threads/t/runs"):
 *  its first segment, lower-cased, [a-z0-9_-] only, cut to fit n; "threads"
 *  counts as "assistants" (one API, one family of limits); "other" when the
 *  segment is empty.  Writes at most n bytes including the NUL (n > 0). */
void api_gate_class(const char *path, char *out, size_t n);

/** The tokens a request may use, as the API estimates them before it runs:
 *  the prompt at about 4 bytes a token (len / 4, rounded up) plus the
 *  output cap the body names (max_output_tokens, max_completion_tokens or
 *  max_tokens at its top level; none: nothing added).  Parses the body
 *  (cJSON); a body that is not a JSON object counts its bytes only. */
long api_gate_estimate_tokens(const char *body, size_t len);

#endif

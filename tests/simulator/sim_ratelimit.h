/* sim_ratelimit.h -- the simulator's rate limits, per API key and endpoint
 * class, like the real API's (prefix srl_).
 *
 * Why: the worker's fleet-wide limiter (worker/ratelimit/rate_gate.h) is
 * only as good as what it is tested against.  So the simulator limits like
 * OpenAI: requests and tokens per minute per key (the Authorization value,
 * hashed) and endpoint class (api_gate_class: "responses", "chat",
 * "assistants" for threads and runs too, "conversations", ...), enforced
 * over a short window (a token bucket holding burst_ms worth of the rate,
 * refilled continuously: "60,000 RPM may be enforced as 1,000 requests per
 * second"), a request's tokens estimated as the API does before running it
 * (api_gate_estimate_tokens: body bytes / 4 plus its output cap).  Refused
 * requests are not counted against the bucket.
 *
 * Every /v1 response then carries x-ratelimit-limit-requests/-tokens,
 * x-ratelimit-remaining-requests/-tokens and x-ratelimit-reset-requests/
 * -tokens (the time until the bucket is full again, "1.5s"), for the limits
 * that are set; a request over a limit gets 429 with OpenAI's error body
 * (type "requests" or "tokens", code rate_limit_exceeded), Retry-After
 * (whole seconds, rounded up) and retry-after-ms.
 *
 * Settings: --rate-limit-rpm, --rate-limit-tpm, --rate-limit-burst-ms (the
 * baseline, default 0 = no limit, burst 1000), GET/POST /admin/rate_limit
 * (merge {"requests_per_minute", "tokens_per_minute", "burst_ms"}),
 * /admin/reset (back to the baseline, buckets and counters cleared).
 * /admin/stats has "rate_limit": the settings and, per class, requests
 * accepted and throttled (429) and the requests accepted in each of the
 * last SRL_SECONDS seconds (unix second -> count).
 *
 * @locality any thread (one mutex).
 */
#ifndef SIM_RATELIMIT_H
#define SIM_RATELIMIT_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "aw_error.h"

#define SRL_SECONDS 300  /* per-second history kept per class */

typedef struct srl_cfg {
  long requests_per_minute; /* 0: not limited */
  long tokens_per_minute;   /* 0: not limited */
  long burst_ms;            /* the window the bucket holds (default 1000) */
} srl_cfg;

/** What a reply carries (filled by srl_take). */
typedef struct srl_reply {
  int on;                   /* some limit applies: send the headers */
  long limit_r, limit_t;    /* -1: that limit is off */
  long rem_r, rem_t;
  long reset_r_ms, reset_t_ms;
  long retry_after_ms;      /* >= 0 on a 429 */
} srl_reply;

/** Defaults: no limits, burst 1000. */
void srl_defaults(srl_cfg *c);
/** Install c as baseline and current settings. */
void srl_init(const srl_cfg *c);
/** Back to the baseline; buckets and counters cleared. */
void srl_reset(void);
/** Merge settings; AW_EINVAL (errstr says why) changes nothing. */
int srl_set_json(const cJSON *obj, char *errstr, size_t errstr_size) AW_MUST_CHECK;
/** The settings (caller deletes). */
cJSON *srl_settings_json(void);
/** The settings and per-class counters, for /admin/stats (caller deletes). */
cJSON *srl_stats_json(void);

/** Count one /v1 request (path as received, "/v1/threads/..."; auth the
 *  Authorization value): 0 when accepted, 429 when over a limit, then msg
 *  holds the API's message and *type "requests" or "tokens".  rep gets the
 *  headers either way. */
int srl_take(const char *auth, const char *path, const char *body, size_t len, srl_reply *rep, const char **type,
             char *msg, size_t msg_size);

/** Header i (0, 1, ...) of rep: 1 with name and value filled, 0 past the
 *  last. */
int srl_header(const srl_reply *rep, int i, char *name, size_t name_size, char *value, size_t value_size);

#endif

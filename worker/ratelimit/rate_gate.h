/* rate_gate.h -- the fleet's API rate limiter: token buckets in Redis that
 * every worker of the fleet draws from (prefix rg_); implements the API
 * client's gate port (common/http/api_gate.h).
 *
 * Why in Redis: OpenAI's limits are per organization and key, not per
 * process.  Workers that each retry on their own stampede into 429s the
 * moment a burst arrives, and each 429 costs the API a request too.  So the
 * fleet shares one bucket per (API key, endpoint class) and a worker asks it
 * before every request; a worker that finds it empty does not send: the
 * request (hence its turn) waits, and nothing was sent that could be
 * applied twice.
 *
 * The bucket.  One Redis hash per (key, class),
 *   <prefix>:rl:<sha256(api key), first 16 hex digits>:<class>
 * (the key itself is never stored or logged), with the request and token
 * levels, the time of the last refill and a "blocked until".  Capacity is
 * burst_ms worth of the configured rate (1 s by default: OpenAI enforces a
 * per-minute limit over shorter windows, "60,000 RPM may be enforced as
 * 1,000 requests per second"); it refills continuously.  A take is one Lua
 * script (atomic: refill by Redis' own TIME -- no worker clock is trusted --,
 * check, take, or answer how long to wait).  A request needs one request
 * unit and its estimated tokens (api_gate_estimate_tokens: bytes / 4 plus
 * its output cap); one larger than the token capacity goes when the bucket
 * is full and leaves it in debt, so the long-run rate still holds.
 *
 * Feedback.  After each response the API's x-ratelimit-remaining-* lower
 * the bucket when the API says less remains than the fleet thinks
 * (credited with what refilled since the request was sent, less 50 ms for
 * the trip there: the fleet stays a hair behind the API, never ahead), its reset
 * times and Retry-After block the bucket until then, and a 429 charges the
 * retry http_client is about to send by itself.  One more round trip, sent
 * only when it can change something (a 429, a block, or less remaining than
 * the bucket's capacity).
 *
 * Waiting.  Per class, this worker's requests queue in order; only the head
 * asks Redis (one round trip in flight per class and worker, which bounds a
 * worker to about one request per Redis round trip and class -- thousands a
 * second, far above any API limit).  Told to wait N ms, the queue sleeps N
 * ms and the head asks again.  Requests that waited are counted (waits,
 * observe_wait with the seconds waited); when more than max_waiting wait,
 * on_hold(1) asks the worker to pause consumption, on_hold(0) once at most
 * 3/4 of that wait.
 *
 * Redis unreachable: the gate fails OPEN (the requests go, counted in
 * fail_open, one warning per 10 s).  Failing closed would stop the whole
 * fleet's traffic on a Redis outage although the API may have room; the
 * worker already stops taking new events when Redis is down (its event
 * records need it), and the API's own 429s, retried with Retry-After by
 * http_client, remain the backstop.
 *
 * @locality the loop thread only.
 */
#ifndef AW_RATE_GATE_H
#define AW_RATE_GATE_H

#include <stddef.h>
#include <uv.h>
#include "api_gate.h"
#include "aw_error.h"
#include "redis_conn.h"

#define RG_MAX_CLASSES 16       /* distinct classes; more share an "overflow" bucket */
#define RG_DEFAULT_BURST_MS 1000
#define RG_DEFAULT_MAX_WAITING 100
#define RG_KEY_MAX 160

typedef struct rg_config {
  long requests_per_minute; /* 0: requests are not limited */
  long tokens_per_minute;   /* 0: tokens are not limited */
  long burst_ms;            /* bucket capacity: this long's worth of the rate (<= 0: 1000) */
  long max_waiting;         /* on_hold(1) when more requests than this wait (0: never) */
  const char *prefix;       /* Redis key prefix (NULL: "aw"); copied */
  /* Optional, called on the loop: */
  void (*on_hold)(void *opaque, int hold);               /* pause (1) / resume (0) consumption */
  void (*observe_wait)(void *opaque, double seconds);    /* a request that waited, how long */
  void *opaque;
} rg_config;

/** Counters for /metrics (plain increments on the loop). */
typedef struct rg_stats {
  unsigned long granted;   /* requests let through by the gate */
  unsigned long waits;     /* of those, the ones the bucket made wait */
  unsigned long fail_open; /* let through without Redis' answer (Redis down or failing) */
  unsigned long throttled; /* 429s the API answered */
  unsigned long feedbacks; /* responses whose rate-limit headers were applied to a bucket */
  unsigned long holds;     /* times consumption was paused because too many waited */
  long waiting;            /* requests waiting at the gate now */
} rg_stats;

typedef struct rg rg;

/** Create a gate over redis (borrowed: it must outlive the gate, or be
 *  freed first: its pending callbacks then fail, which this gate expects).
 *  api_key is hashed here and not kept.  AW_EINVAL when neither rate is
 *  set, AW_ENOMEM. */
int rg_new(uv_loop_t *loop, rconn *redis, const char *api_key, const rg_config *cfg, rg **out, char *errstr,
           size_t errstr_size) AW_MUST_CHECK;

/** The API client's port (api_config.gate), valid while g lives. */
const api_gate *rg_port(rg *g);

/** The counters. */
const rg_stats *rg_get_stats(const rg *g);

/** The Redis key of class cls's bucket (for tests and operators). */
int rg_bucket_key(const rg *g, const char *cls, char *out, size_t n) AW_MUST_CHECK;

/** Shutting down: from now on nothing is granted (a Redis connection being
 *  freed fails what is in flight, and that must not let waiting requests
 *  go), acquire refuses (AW_ESTATE) and feedback is ignored; cancel still
 *  works.  Call before freeing the Redis connection. */
void rg_stop(rg *g);

/** Free: no grant follows (pending acquires are dropped: free the API
 *  clients first).  Memory goes once the loop closed the timers and Redis
 *  answered what is in flight.  Safe on NULL. */
void rg_free(rg *g);

#endif

/* run_metrics.h -- the daemon's Prometheus series (prefix rmet_).
 *
 * The worker keeps plain counters (wk_stats) on its hot path; once a second
 * the ops server's render callback copies them into the registry and renders
 * the text, so no metric update costs more than an increment.
 *
 * API calls arrive through rmet_api_observe (the API client's observer) as
 * aw_api_request_seconds{route,status} and aw_api_retries_total{route}.  The
 * series are registered on first sight of a (route, status) pair, at most
 * RMET_API_SERIES_MAX of them; calls beyond the cap are counted in
 * aw_api_series_dropped_total only.  Once a series exists an observation
 * costs a hash of the route, a probe and a histogram update: no allocation.
 *
 * The chat backend's history store counts in plain counters of its own
 * (hstore_stats); rmet_history copies them before a render:
 * aw_history_loads_total, aw_history_pending_saves_total,
 * aw_history_commits_total (turns appended), aw_history_commit_duplicates_total,
 * aw_history_bytes_committed_total, aw_history_turns_trimmed_total and
 * aw_history_errors_total (zero on the other backends).
 *
 * Usage records (usage.h) count as aw_usage_records_published_total and
 * their tokens as aw_usage_tokens_total{assistant,model,kind} with kind
 * input, output, cached or reasoning (rmet_tokens).
 *
 * Consumer lag is a snapshot taken at render time (wk_lag):
 * aw_consumer_lag{partition} for the partitions assigned now (a revoked
 * partition's series disappears) and aw_consumer_lag_total, their sum.
 *
 * @locality the loop thread only.
 */
#ifndef AW_RUN_METRICS_H
#define AW_RUN_METRICS_H

#include "aw_error.h"
#include "buf.h"
#include "history_store.h"
#include "metrics.h"
#include "redis_conn.h"
#include "worker.h"

typedef struct rmet rmet;

/** Register every series. */
int rmet_new(rmet **out) AW_MUST_CHECK;

/** Copy the counters of w (may be NULL before it starts) and redis into the
 *  registry and render it into out. */
int rmet_render(rmet *m, const wk *w, const rconn *redis, buf *out) AW_MUST_CHECK;

/** Copy the history store's counters into the registry (call before
 *  rmet_render; safe with NULL). */
void rmet_history(rmet *m, const hstore_stats *s);

/** The worker's observer (wk_config.observe, opaque = the rmet). */
void rmet_observe(void *opaque, wk_obs what, double value);

/** (assistant, model) pairs of aw_usage_tokens_total, at most; further
 *  pairs are counted under assistant="other", model="other". */
#define RMET_TOKEN_PAIRS_MAX 32

/** The worker's usage observer (wk_config.usage_observe, opaque = the
 *  rmet): one durable usage record's tokens (input, output, cached,
 *  reasoning) as aw_usage_tokens_total{assistant,model,kind}.  The labels
 *  come bounded by configuration (usage.h's wku_labels); the pair cap and a
 *  label longer than MET_MAX_LABEL_VALUE fall back to "other". */
void rmet_tokens(void *opaque, const char *assistant, const char *model, const int64_t tokens[4]);

/** (route, status) series of aw_api_request_seconds, at most. */
#define RMET_API_SERIES_MAX 64

/** The API client's observer (be_assistants_config.observe, opaque = the
 *  rmet): one finished call of route ("POST /threads/{id}/runs") with
 *  http_status (0: no response, labelled "error"), its duration and its
 *  attempts (attempts - 1 retries). */
void rmet_api_observe(void *opaque, const char *route, int http_status, double seconds, int attempts);

/** Free.  Safe on NULL. */
void rmet_free(rmet *m);

#endif

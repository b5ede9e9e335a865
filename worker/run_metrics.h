/* run_metrics.h -- the daemon's Prometheus series (prefix rmet_).
 *
 * The worker keeps plain counters (wk_stats) on its hot path; once a second
 * the ops server's render callback copies them into the registry and renders
 * the text, so no metric update costs more than an increment.
 */
#ifndef AW_RUN_METRICS_H
#define AW_RUN_METRICS_H

#include "aw_error.h"
#include "buf.h"
#include "metrics.h"
#include "redis_conn.h"
#include "worker.h"

typedef struct rmet rmet;

/** Register every series. */
int rmet_new(rmet **out) AW_MUST_CHECK;

/** Copy the counters of w (may be NULL before it starts) and redis into the
 *  registry and render it into out. */
int rmet_render(rmet *m, const wk *w, const rconn *redis, buf *out) AW_MUST_CHECK;

/** The worker's observer (wk_config.observe, opaque = the rmet). */
void rmet_observe(void *opaque, wk_obs what, double value);

/** Free.  Safe on NULL. */
void rmet_free(rmet *m);

#endif

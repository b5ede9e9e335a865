/* rate_metrics.h -- the API rate gate's Prometheus series (prefix rlm_).
 *
 * A registry of its own, rendered after run_metrics' (rmet_render) on the
 * same /metrics page: the gate is optional (no series are registered while
 * api.rate_limit is off) and its counters have one owner, so it needs
 * nothing of the worker's registry.
 *
 *   aw_rate_limit_waits_total         requests (hence turns) the fleet's bucket made wait
 *   aw_rate_limit_wait_seconds        histogram of how long those waited
 *   aw_rate_limit_waiting             requests waiting at the gate now
 *   aw_rate_limit_granted_total       requests the gate let through
 *   aw_rate_limit_fail_open_total     let through without Redis' answer (Redis down)
 *   aw_rate_limit_throttled_total     429s the API answered anyway
 *   aw_rate_limit_feedback_total      responses whose x-ratelimit-* headers lowered a bucket
 *   aw_rate_limit_holds_total         times consumption paused: more than max_waiting waited
 *
 * @locality the loop thread only.
 */
#ifndef AW_RATE_METRICS_H
#define AW_RATE_METRICS_H

#include "aw_error.h"
#include "buf.h"
#include "rate_gate.h"

typedef struct rlm rlm;

/** Register the series. */
int rlm_new(rlm **out) AW_MUST_CHECK;

/** The gate's wait observer (rg_config.observe_wait, opaque = the rlm). */
void rlm_observe_wait(void *opaque, double seconds);

/** Copy the gate's counters (s may be NULL: nothing) and render into out. */
int rlm_render(rlm *m, const rg_stats *s, buf *out) AW_MUST_CHECK;

/** Free.  Safe on NULL. */
void rlm_free(rlm *m);

#endif

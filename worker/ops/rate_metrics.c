/* rate_metrics.c -- the rate gate's series (see rate_metrics.h). */
#include "rate_metrics.h"

#include <stdlib.h>

#include "metrics.h"

struct rlm {
  met_registry *reg;
  met_counter_ref *waits, *granted, *fail_open, *throttled, *feedbacks, *holds;
  met_gauge_ref *waiting;
  met_histogram_ref *wait_seconds;
};

/* From a refill tick (a bucket of one second refills in ms) to minutes
 * behind a long queue. */
static const double WAIT_BOUNDS[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};

int rlm_new(rlm **out) {
  rlm *m = calloc(1, sizeof *m);
  if (!m) return AW_ENOMEM;
  int rc = met_registry_new(16, &m->reg);
  if (!rc)
    rc = met_counter(m->reg, "aw_rate_limit_waits", "API requests (hence their turns) the fleet's rate limit made wait",
                     &m->waits, (const char *)NULL);
  if (!rc)
    rc = met_histogram(m->reg, "aw_rate_limit_wait_seconds", "How long API requests waited for the fleet's rate limit",
                       WAIT_BOUNDS, sizeof WAIT_BOUNDS / sizeof WAIT_BOUNDS[0], &m->wait_seconds, (const char *)NULL);
  if (!rc)
    rc = met_gauge(m->reg, "aw_rate_limit_waiting", "API requests waiting for the fleet's rate limit now",
                   &m->waiting, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_rate_limit_granted", "API requests the rate gate let through", &m->granted,
                     (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_rate_limit_fail_open",
                     "API requests let through without the fleet's bucket (Redis unreachable or failing)",
                     &m->fail_open, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_rate_limit_throttled", "HTTP 429 answers of the API", &m->throttled,
                     (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_rate_limit_feedback", "API responses whose rate-limit headers were applied to a bucket",
                     &m->feedbacks, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_rate_limit_holds",
                     "Times consumption paused because more than api.rate_limit.max_waiting requests waited",
                     &m->holds, (const char *)NULL);
  if (rc) {
    rlm_free(m);
    return rc;
  }
  *out = m;
  return AW_OK;
}

void rlm_observe_wait(void *opaque, double seconds) {
  rlm *m = opaque;
  if (m) met_observe(m->wait_seconds, seconds);
}

int rlm_render(rlm *m, const rg_stats *s, buf *out) {
  if (!m) return AW_OK;
  if (s) {
    met_counter_set(m->waits, (double)s->waits);
    met_counter_set(m->granted, (double)s->granted);
    met_counter_set(m->fail_open, (double)s->fail_open);
    met_counter_set(m->throttled, (double)s->throttled);
    met_counter_set(m->feedbacks, (double)s->feedbacks);
    met_counter_set(m->holds, (double)s->holds);
    met_gauge_set(m->waiting, (double)s->waiting);
  }
  return met_render(m->reg, out);
}

void rlm_free(rlm *m) {
  if (!m) return;
  met_registry_free(m->reg);
  free(m);
}

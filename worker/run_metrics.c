/* run_metrics.c -- wk_stats as Prometheus series. */
#include "run_metrics.h"

#include <stdlib.h>

struct rmet {
  met_registry *reg;
  met_counter_ref *consumed, *completed, *failed, *rejected, *duplicates;
  met_counter_ref *deltas, *dlq, *redis_errors, *kafka_errors, *produce_retries;
  met_gauge_ref *in_flight, *paused, *redis_up;
  met_counter_ref *tool_requests, *tool_rounds, *tool_timeouts, *tool_replies, *tool_replies_dlq;
  met_gauge_ref *tool_waiting;
  met_histogram_ref *event_seconds, *tool_round_seconds;
};

/* Seconds: from a tool round trip of a few ms to a run of minutes. */
static const double LATENCY_BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
#define NBOUNDS (sizeof LATENCY_BOUNDS / sizeof LATENCY_BOUNDS[0])

int rmet_new(rmet **out) {
  rmet *m = calloc(1, sizeof *m);
  if (!m) return AW_ENOMEM;
  const char *ans = "Events answered, by response status";
  int rc = met_registry_new(64, &m->reg);
  if (!rc) rc = met_counter(m->reg, "aw_events_consumed", "Request events consumed", &m->consumed, (const char *)NULL);
  if (!rc) rc = met_counter(m->reg, "aw_events_answered", ans, &m->completed, "status", "completed", (const char *)NULL);
  if (!rc) rc = met_counter(m->reg, "aw_events_answered", ans, &m->failed, "status", "failed", (const char *)NULL);
  if (!rc) rc = met_counter(m->reg, "aw_events_answered", ans, &m->rejected, "status", "rejected", (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_events_skipped_duplicates", "Re-delivered events found already answered",
                     &m->duplicates, (const char *)NULL);
  if (!rc) rc = met_counter(m->reg, "aw_deltas_published", "Delta messages produced", &m->deltas, (const char *)NULL);
  if (!rc) rc = met_counter(m->reg, "aw_dlq_published", "Dead-letter records produced", &m->dlq, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_redis_errors", "Redis command failures and disconnects", &m->redis_errors, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_kafka_errors", "Kafka consume, produce and commit errors", &m->kafka_errors, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_produce_retries", "Responses or DLQ records produced again",
                     &m->produce_retries, (const char *)NULL);
  if (!rc) rc = met_gauge(m->reg, "aw_events_in_flight", "Events consumed and not yet done", &m->in_flight, (const char *)NULL);
  if (!rc)
    rc = met_gauge(m->reg, "aw_consumption_paused", "1 while consumption is paused by the in-flight limit",
                   &m->paused, (const char *)NULL);
  if (!rc) rc = met_gauge(m->reg, "aw_redis_up", "1 while the Redis connection is up", &m->redis_up, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_tool_requests_published", "Tool requests produced", &m->tool_requests,
                     (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_tool_rounds", "Rounds of tool calls (requires_action steps) begun", &m->tool_rounds,
                     (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_tool_timeouts", "Tool calls whose deadline passed without a reply",
                     &m->tool_timeouts, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_tool_replies_recorded", "Tool replies consumed and recorded for their run",
                     &m->tool_replies, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_tool_replies_dead_lettered", "Tool replies dead-lettered (forged, late, duplicate...)",
                     &m->tool_replies_dlq, (const char *)NULL);
  if (!rc)
    rc = met_gauge(m->reg, "aw_tool_runs_waiting", "Runs of this worker waiting for tool replies", &m->tool_waiting,
                   (const char *)NULL);
  if (!rc)
    rc = met_histogram(m->reg, "aw_event_seconds", "Consumed to outcome published and recorded, per event answered or rejected",
                       LATENCY_BOUNDS, NBOUNDS, &m->event_seconds, (const char *)NULL);
  if (!rc)
    rc = met_histogram(m->reg, "aw_tool_round_seconds",
                       "Tool round trip: requests published to outputs submitted, per round", LATENCY_BOUNDS,
                       NBOUNDS, &m->tool_round_seconds, (const char *)NULL);
  if (rc) {
    rmet_free(m);
    return rc;
  }
  *out = m;
  return AW_OK;
}

int rmet_render(rmet *m, const wk *w, const rconn *redis, buf *out) {
  if (w) {
    wk_stats s;
    wk_get_stats(w, &s);
    met_counter_set(m->consumed, (double)s.consumed);
    met_counter_set(m->completed, (double)s.answered);
    met_counter_set(m->failed, (double)s.failed);
    met_counter_set(m->rejected, (double)s.rejected);
    met_counter_set(m->duplicates, (double)s.skipped_duplicates);
    met_counter_set(m->deltas, (double)s.deltas);
    met_counter_set(m->dlq, (double)s.dlq);
    met_counter_set(m->redis_errors, (double)s.redis_errors);
    met_counter_set(m->kafka_errors, (double)s.kafka_errors);
    met_counter_set(m->produce_retries, (double)s.produce_retries);
    met_gauge_set(m->in_flight, (double)s.in_flight);
    met_gauge_set(m->paused, s.paused ? 1 : 0);
    met_counter_set(m->tool_requests, (double)s.tool_requests);
    met_counter_set(m->tool_rounds, (double)s.tool_rounds);
    met_counter_set(m->tool_timeouts, (double)s.tool_timeouts);
    met_counter_set(m->tool_replies, (double)s.tool_replies);
    met_counter_set(m->tool_replies_dlq, (double)s.tool_replies_dlq);
    met_gauge_set(m->tool_waiting, (double)s.tool_waiting);
  }
  if (redis) met_gauge_set(m->redis_up, rconn_ready(redis) ? 1 : 0);
  return met_render(m->reg, out);
}

void rmet_observe(void *opaque, wk_obs what, double value) {
  rmet *m = opaque;
  if (what == WK_OBS_EVENT_SECONDS) met_observe(m->event_seconds, value);
  else if (what == WK_OBS_TOOL_ROUND_SECONDS) met_observe(m->tool_round_seconds, value);
}

void rmet_free(rmet *m) {
  if (!m) return;
  met_registry_free(m->reg);
  free(m);
}

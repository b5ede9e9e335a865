/* run_metrics.c -- wk_stats, API calls and consumer lag as Prometheus
 * series (see run_metrics.h). */
#include "run_metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Open addressing over twice the slots the cap can fill, so a probe always
 * ends at the key or at an empty slot within a few steps. */
#define API_SLOTS (2 * RMET_API_SERIES_MAX)

/* One (assistant, model) pair of aw_usage_tokens_total: its four kinds. */
typedef struct tok_slot {
  char assistant[MET_MAX_LABEL_VALUE + 1], model[MET_MAX_LABEL_VALUE + 1];
  met_counter_ref *kind[4];
} tok_slot;

static const char *const TOKEN_KINDS[4] = {"input", "output", "cached", "reasoning"};
static const char TOKENS_HELP[] =
    "Tokens of the usage records published, by configured assistant, model and kind (cached is part of input, "
    "reasoning part of output)";

typedef struct api_slot {
  met_histogram_ref *seconds; /* NULL: empty slot */
  met_counter_ref *retries;   /* the route's, shared by its statuses */
  uint32_t hash;
  int status;
  char route[MET_MAX_LABEL_VALUE + 1];
} api_slot;

struct rmet {
  met_registry *reg;
  met_counter_ref *consumed, *completed, *failed, *rejected, *duplicates;
  met_counter_ref *deltas, *dlq, *redis_errors, *kafka_errors, *produce_retries;
  met_gauge_ref *in_flight, *paused, *redis_up;
  met_counter_ref *tool_requests, *tool_rounds, *tool_timeouts, *tool_replies, *tool_replies_dlq;
  met_counter_ref *tool_replies_refused[3]; /* unsigned_reply, bad_reply_signature, wrong_reply_topic */
  met_gauge_ref *tool_waiting;
  met_histogram_ref *event_seconds, *tool_round_seconds, *txn_seconds;
  met_counter_ref *txn_commits, *txn_aborts;
  met_counter_ref *api_dropped;
  met_counter_ref *hist_loads, *hist_saves, *hist_commits, *hist_dups, *hist_bytes, *hist_trimmed, *hist_errors;
  size_t napi;
  api_slot api[API_SLOTS];
  met_counter_ref *usage_records;
  met_counter_ref *conv[CONTRACT_KIND_COUNT][3]; /* by kind and outcome (WK_CONV_*); [0] (message) unused */
  tok_slot tok_other;          /* assistant="other", model="other": also the overflow */
  size_t ntok;
  tok_slot tok[RMET_TOKEN_PAIRS_MAX];
};

/* Seconds: from a tool round trip of a few ms to a run of minutes. */
static const double LATENCY_BOUNDS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
#define NBOUNDS (sizeof LATENCY_BOUNDS / sizeof LATENCY_BOUNDS[0])

/* API calls: from a millisecond (a local server) to a stream of minutes. */
static const double API_BOUNDS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1,     2.5,    5,     10,   30,    60,   300};
#define NAPI_BOUNDS (sizeof API_BOUNDS / sizeof API_BOUNDS[0])
static const char API_SECONDS_HELP[] =
    "API calls by route and HTTP status (\"error\": no response), start to end including retries and, "
    "for streams, the whole stream";
static const char API_RETRIES_HELP[] = "API requests sent again (attempts - 1), by route";

/* Registry size: the fixed series, the API series and their routes' retry
 * counters, with room to spare. */
#define MAX_SERIES (64 + 3 * CONTRACT_KIND_COUNT + 2 * RMET_API_SERIES_MAX + 4 * (RMET_TOKEN_PAIRS_MAX + 1))

/* Register the four series of one (assistant, model) pair into s. */
static int tok_register(rmet *m, tok_slot *s, const char *assistant, const char *model) {
  snprintf(s->assistant, sizeof s->assistant, "%s", assistant);
  snprintf(s->model, sizeof s->model, "%s", model);
  for (int k = 0; k < 4; k++) {
    const char *kv[] = {"assistant", assistant, "model", model, "kind", TOKEN_KINDS[k]};
    int rc = met_counterv(m->reg, "aw_usage_tokens", TOKENS_HELP, kv, 3, &s->kind[k]);
    if (rc) return rc;
  }
  return AW_OK;
}

int rmet_new(rmet **out) {
  rmet *m = calloc(1, sizeof *m);
  if (!m) return AW_ENOMEM;
  const char *ans = "Events answered, by response status";
  int rc = met_registry_new(MAX_SERIES, &m->reg);
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
  static const char *const refused[3] = {"unsigned_reply", "bad_reply_signature", "wrong_reply_topic"};
  for (int i = 0; i < 3 && !rc; i++)
    rc = met_counter(m->reg, "aw_tool_replies_refused",
                     "Tool replies dead-lettered as not authenticated or from another topic than their function's",
                     &m->tool_replies_refused[i], "reason", refused[i], (const char *)NULL);
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
  if (!rc)
    rc = met_histogram(m->reg, "aw_txn_commit_seconds",
                       "Kafka transaction commits (exactly-once): start to done, committed or aborted", API_BOUNDS,
                       sizeof API_BOUNDS / sizeof API_BOUNDS[0], &m->txn_seconds, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_txn_commits", "Kafka transactions committed", &m->txn_commits, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_txn_aborts", "Kafka transactions aborted (their answers produced again)",
                     &m->txn_aborts, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_api_series_dropped",
                     "API calls left out of aw_api_request_seconds: its series cap was reached", &m->api_dropped,
                     (const char *)NULL);
  /* The chat backend's history store: with the events counters, bytes per
   * stored turn and Redis round trips per event (loads + saves + commits). */
  if (!rc)
    rc = met_counter(m->reg, "aw_history_loads", "History loads (one pipelined Redis round trip each)",
                     &m->hist_loads, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_history_pending_saves", "Pending turns (waiting for tool outputs) written",
                     &m->hist_saves, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_history_commits", "History commits that appended a turn", &m->hist_commits,
                     (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_history_commit_duplicates",
                     "History commits that found the event's turn committed already (nothing appended)",
                     &m->hist_dups, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_history_bytes_committed", "Bytes of the turns appended to histories",
                     &m->hist_bytes, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_history_turns_trimmed",
                     "Oldest turns dropped from histories by worker.history_max_turns / history_max_bytes",
                     &m->hist_trimmed, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_history_errors", "History store operations that failed at Redis",
                     &m->hist_errors, (const char *)NULL);
  if (!rc)
    rc = met_counter(m->reg, "aw_usage_records_published", "Usage records published (committed with their response)",
                     &m->usage_records, (const char *)NULL);
  /* Conversation requests other than a message, by kind and outcome
   * (conv_request.h, cancel.h); a message is in aw_events_answered. */
  static const char *const outcomes[3] = {"completed", "failed", "rejected"};
  for (int k = 1; k < CONTRACT_KIND_COUNT && !rc; k++)
    for (int o = 0; o < 3 && !rc; o++)
      rc = met_counter(m->reg, "aw_conversation_requests",
                       "Conversation requests other than a message answered, by kind and outcome", &m->conv[k][o],
                       "kind", contract_kind_name((contract_kind)k), "outcome", outcomes[o], (const char *)NULL);
  if (!rc) rc = tok_register(m, &m->tok_other, "other", "other");
  if (rc) {
    rmet_free(m);
    return rc;
  }
  *out = m;
  return AW_OK;
}

typedef struct lag_ctx {
  buf *out;
  int rc;
  int64_t total;
} lag_ctx;

static void on_lag(void *opaque, int32_t partition, int64_t lag) {
  lag_ctx *c = opaque;
  c->total += lag;
  if (!c->rc)
    c->rc = buf_appendf(c->out, "aw_consumer_lag{partition=\"%d\"} %lld\n", (int)partition, (long long)lag);
}

/* Rendered here rather than kept in the registry: the set of partitions
 * changes with every rebalance and the registry never forgets a series, so
 * a revoked partition would linger with a stale value. */
static int render_lag(const wk *w, buf *out) {
  lag_ctx c = {out, AW_OK, 0};
  c.rc = buf_appends(out,
                     "# HELP aw_consumer_lag Messages of an assigned partition of the requests topic not yet done: "
                     "high watermark minus commit point\n"
                     "# TYPE aw_consumer_lag gauge\n");
  if (!c.rc && w) (void)wk_lag(w, on_lag, &c);
  if (!c.rc)
    c.rc = buf_appendf(out,
                       "# HELP aw_consumer_lag_total Sum of aw_consumer_lag over the assigned partitions\n"
                       "# TYPE aw_consumer_lag_total gauge\n"
                       "aw_consumer_lag_total %lld\n",
                       (long long)c.total);
  return c.rc;
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
    met_counter_set(m->tool_replies_refused[0], (double)s.tool_replies_unsigned);
    met_counter_set(m->tool_replies_refused[1], (double)s.tool_replies_bad_signature);
    met_counter_set(m->tool_replies_refused[2], (double)s.tool_replies_wrong_topic);
    met_gauge_set(m->tool_waiting, (double)s.tool_waiting);
    met_counter_set(m->txn_commits, (double)s.txn_commits);
    met_counter_set(m->txn_aborts, (double)s.txn_aborts);
    met_counter_set(m->usage_records, (double)s.usage_records);
    for (int k = 1; k < CONTRACT_KIND_COUNT; k++)
      for (int o = 0; o < 3; o++) met_counter_set(m->conv[k][o], (double)s.conv_requests[k][o]);
  }
  if (redis) met_gauge_set(m->redis_up, rconn_ready(redis) ? 1 : 0);
  int rc = met_render(m->reg, out);
  if (!rc) rc = render_lag(w, out);
  return rc;
}

void rmet_history(rmet *m, const hstore_stats *s) {
  if (!m || !s) return;
  met_counter_set(m->hist_loads, (double)s->loads);
  met_counter_set(m->hist_saves, (double)s->pending_saves);
  met_counter_set(m->hist_commits, (double)s->commits);
  met_counter_set(m->hist_dups, (double)s->commit_duplicates);
  met_counter_set(m->hist_bytes, (double)s->bytes_committed);
  met_counter_set(m->hist_trimmed, (double)s->turns_trimmed);
  met_counter_set(m->hist_errors, (double)s->errors);
}

void rmet_observe(void *opaque, wk_obs what, double value) {
  rmet *m = opaque;
  if (what == WK_OBS_EVENT_SECONDS) met_observe(m->event_seconds, value);
  else if (what == WK_OBS_TOOL_ROUND_SECONDS) met_observe(m->tool_round_seconds, value);
  else if (what == WK_OBS_TXN_COMMIT_SECONDS) met_observe(m->txn_seconds, value);
}

/* FNV-1a of the route, mixed with the status. */
static uint32_t api_hash(const char *route, int status) {
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)route; *p; p++) h = (h ^ *p) * 16777619u;
  return h ^ ((uint32_t)status * 2654435761u);
}

/* Register the series of a new (route, status) in slot s; 0 on success. */
static int api_register(rmet *m, api_slot *s, const char *route, int status, uint32_t hash) {
  if (m->napi >= RMET_API_SERIES_MAX || strlen(route) > MET_MAX_LABEL_VALUE) return -1;
  char st[16];
  if (status > 0) snprintf(st, sizeof st, "%d", status);
  else snprintf(st, sizeof st, "error");
  const char *kv[] = {"route", route, "status", st};
  met_histogram_ref *h;
  met_counter_ref *c;
  /* The retry counter first: registering it again for another status of the
   * route returns the same series. */
  if (met_counterv(m->reg, "aw_api_retries", API_RETRIES_HELP, kv, 1, &c) != AW_OK ||
      met_histogramv(m->reg, "aw_api_request_seconds", API_SECONDS_HELP, API_BOUNDS, NAPI_BOUNDS, kv, 2, &h) != AW_OK)
    return -1;
  s->seconds = h;
  s->retries = c;
  s->hash = hash;
  s->status = status;
  snprintf(s->route, sizeof s->route, "%s", route);
  m->napi++;
  return 0;
}

void rmet_api_observe(void *opaque, const char *route, int http_status, double seconds, int attempts) {
  rmet *m = opaque;
  if (!m || !route) return;
  int status = http_status > 0 ? http_status : 0;
  uint32_t hash = api_hash(route, status);
  api_slot *s = NULL;
  for (size_t i = hash % API_SLOTS, n = 0; n < API_SLOTS; i = (i + 1) % API_SLOTS, n++) {
    api_slot *t = &m->api[i];
    if (!t->seconds) {
      if (api_register(m, t, route, status, hash) == 0) s = t;
      break;
    }
    if (t->hash == hash && t->status == status && !strcmp(t->route, route)) {
      s = t;
      break;
    }
  }
  if (!s) {
    met_inc(m->api_dropped);
    return;
  }
  met_observe(s->seconds, seconds);
  if (attempts > 1) met_add(s->retries, (double)(attempts - 1));
}

void rmet_tokens(void *opaque, const char *assistant, const char *model, const int64_t tokens[4]) {
  rmet *m = opaque;
  if (!m || !assistant || !model || !tokens) return;
  tok_slot *s = NULL;
  /* O(pairs) with at most RMET_TOKEN_PAIRS_MAX of them: once per record. */
  for (size_t i = 0; i < m->ntok && !s; i++)
    if (!strcmp(m->tok[i].assistant, assistant) && !strcmp(m->tok[i].model, model)) s = &m->tok[i];
  if (!s && !strcmp(assistant, "other") && !strcmp(model, "other")) s = &m->tok_other;
  if (!s && m->ntok < RMET_TOKEN_PAIRS_MAX && strlen(assistant) <= MET_MAX_LABEL_VALUE &&
      strlen(model) <= MET_MAX_LABEL_VALUE && tok_register(m, &m->tok[m->ntok], assistant, model) == AW_OK)
    s = &m->tok[m->ntok++];
  if (!s) s = &m->tok_other;
  for (int k = 0; k < 4; k++)
    if (tokens[k] > 0) met_add(s->kind[k], (double)tokens[k]);
}

void rmet_free(rmet *m) {
  if (!m) return;
  met_registry_free(m->reg);
  free(m);
}

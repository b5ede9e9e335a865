/* worker.c -- the worker's lifecycle (wk_new, wk_shutdown, wk_free,
 * wk_get_stats): it wires the modules that do the work to Kafka, Redis and
 * the loop, and owns the shutdown sequence.
 *
 *   intake/     the requests topic: events in, offsets tracked, backpressure
 *   sched/      per-conversation order, the ready and retry lists
 *   event/      the event state machine, the backend's turn, delta batching
 *   tools/      the tool phase (function calls over Kafka)
 *   outbox/     producing, delivery reports, Kafka transactions, commits
 */
#include "worker_int.h"

#include <stdlib.h>
#include <string.h>

#include "conv_sched.h"
#include "intake.h"
#include "outbox.h"
#include "worker_tools.h"

void wk_config_default(wk_config *c) {
  memset(c, 0, sizeof *c);
  c->topic_requests = "assistant.requests";
  c->topic_responses = "assistant.responses";
  c->topic_deltas = "assistant.deltas";
  c->topic_dlq = "assistant.dlq";
  c->redis_prefix = "aw";
  c->max_in_flight = 1000;
  c->max_in_flight_per_partition = 0;
  contract_limits_default(&c->limits);
  c->commit_interval_ms = 200;
  c->delta_window_ms = 20;
  c->shutdown_grace_ms = 30000;
  c->txn_interval_ms = 20;
  c->max_queue_per_conversation = 100;
  c->max_inflight_bytes = 256L * 1024 * 1024;
  c->max_tool_rounds = 16;
  c->conversation_ttl_s = 30L * 24 * 3600;
  c->outcome_ttl_s = 7L * 24 * 3600;
  c->tool_state_ttl_s = 15 * 60;
  c->tool_state_done_ttl_s = 3600;
  c->inline_file_max = 256 * 1024; /* worker.inline_file_max_bytes' default */
}

int wk_new(uv_loop_t *loop, const wk_config *cfg, rd_kafka_conf_t *consumer_conf,
           rd_kafka_conf_t *producer_conf, rd_kafka_conf_t *txn_conf, rd_kafka_conf_t *reply_conf,
           be_backend *be, rconn *redis, wk **out, char *errstr, size_t errstr_size) {
  wk *w = calloc(1, sizeof *w);
  if (!w) {
    if (reply_conf) rd_kafka_conf_destroy(reply_conf);
    if (txn_conf) rd_kafka_conf_destroy(txn_conf);
    return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  }
  w->loop = loop;
  w->cfg = *cfg;
  if (w->cfg.max_in_flight <= 0) w->cfg.max_in_flight = 1000;
  w->be = be;
  w->redis = redis;
  if (w->cfg.max_queue_per_conversation < 0) w->cfg.max_queue_per_conversation = 0;
  if (w->cfg.max_inflight_bytes < 0) w->cfg.max_inflight_bytes = 0;
  if (w->cfg.max_tool_rounds <= 0) w->cfg.max_tool_rounds = 16;
  cstore_init(&w->store, redis, cfg->redis_prefix);
  if (w->cfg.outcome_ttl_s > 0) w->store.outcome_ttl_s = w->cfg.outcome_ttl_s;
  w->store.handle_ttl_s = w->cfg.conversation_ttl_s > 0 ? w->cfg.conversation_ttl_s : 0;
  w->store.keys.tenanted = w->cfg.identity.tenant != WID_TENANT_NONE;
  if (w->cfg.txn_interval_ms < 0) w->cfg.txn_interval_ms = 0;
  int rc = kp_new(loop, producer_conf, wko_on_dr, w, &w->producer, errstr, errstr_size);
  if (rc) {
    if (reply_conf) rd_kafka_conf_destroy(reply_conf);
    if (txn_conf) rd_kafka_conf_destroy(txn_conf);
    free(w);
    return rc;
  }
  if (w->cfg.topic_usage) {
    /* A topic the broker does not know would hold every transaction that
     * carries a usage record until it timed out, and with it the answers:
     * without the topic, the records are off (and say so). */
    char why[128];
    if (!wku_topic_usable(kp_handle(w->producer), w->cfg.topic_usage, 5000, why, sizeof why)) {
      log_error(NULL, "usage records are OFF: the usage topic %s cannot be written (%s); create it, or set "
                "usage.enabled to false", w->cfg.topic_usage, why);
      w->cfg.topic_usage = NULL;
    } else {
      log_info(NULL, "usage records go to %s", w->cfg.topic_usage);
    }
  }
  if (txn_conf) {
    rc = ktx_new(loop, txn_conf, wko_on_txn_dr, wko_on_txn_done, w, &w->txp, errstr, errstr_size);
    if (rc) {
      rd_kafka_conf_destroy(txn_conf);
      if (reply_conf) rd_kafka_conf_destroy(reply_conf);
      rd_kafka_conf_destroy(consumer_conf);
      kp_free(w->producer);
      free(w);
      return rc;
    }
  }
  /* Before the request consumer: a run may need the reply consumer as soon
   * as the first event arrives. */
  rc = wkt_init(w, reply_conf, errstr, errstr_size);
  if (rc) {
    rd_kafka_conf_destroy(consumer_conf);
    wkt_free(w);
    ktx_free(w->txp);
    kp_free(w->producer);
    free(w);
    return rc;
  }
  kc_handlers h = {wki_on_message, wki_on_assign, wki_on_revoke};
  rc = kc_new(loop, consumer_conf, cfg->topic_requests, &h, w, 256, &w->consumer, errstr, errstr_size);
  if (rc) {
    /* consumer_conf is still ours on failure: free it like kc_new would */
    rd_kafka_conf_destroy(consumer_conf);
    wkt_free(w);
    ktx_free(w->txp);
    kp_free(w->producer);
    free(w);
    return rc;
  }
  /* A partition is consumed only once its commit metadata is known
   * (intake.c, wki_on_assign). */
  kc_set_start_held(w->consumer, 1);
  uv_idle_init(loop, &w->ready_idle);
  uv_timer_init(loop, &w->retry_timer);
  uv_timer_init(loop, &w->delta_timer);
  uv_timer_init(loop, &w->commit_timer);
  uv_timer_init(loop, &w->grace_timer);
  w->ready_idle.data = w->retry_timer.data = w->delta_timer.data = w->commit_timer.data =
      w->grace_timer.data = w;
  wko_start(w);
  if (w->txp) log_info(NULL, "answers are exactly-once: responses commit with their offsets in Kafka transactions");
  *out = w;
  return AW_OK;
}

static void on_grace(uv_timer_t *t) {
  wk *w = t->data;
  log_warn(NULL, "shutdown grace period over with %ld events in flight; their offsets stay uncommitted",
           w->st.in_flight);
  w->st.in_flight = 0; /* abandon: they are read again by the next owner */
  w->st.in_flight_bytes = 0;
  wk_maybe_stopped(w);
}

/* The last commit ended: the shutdown is complete. */
static void on_final_commit(wk *w) {
  void (*done)(void *) = w->stop_done;
  w->stop_done = NULL;
  uv_timer_stop(&w->grace_timer);
  uv_timer_stop(&w->commit_timer);
  if (done) done(w->stop_opaque);
}

void wk_maybe_stopped(wk *w) {
  if (!w->stopping || w->st.in_flight > 0 || !w->stop_done || w->final_commit) return;
  uv_timer_stop(&w->grace_timer);
  /* Not blocking: the loop goes on serving the ops endpoint's heartbeat,
   * Redis and the consumer while the coordinator answers (outbox.c). */
  wko_commit_final(w, on_final_commit);
}

void wk_shutdown(wk *w, void (*done)(void *), void *opaque) {
  if (w->stopping) return;
  w->stopping = 1;
  w->stop_done = done;
  w->stop_opaque = opaque;
  if (kc_pause(w->consumer) != AW_OK) log_warn(NULL, "could not pause consumption");
  log_info(NULL, "shutting down: %ld events in flight", w->st.in_flight);
  wkt_shutdown(w);
  uv_timer_start(&w->grace_timer, on_grace, (uint64_t)w->cfg.shutdown_grace_ms, 0);
  wk_maybe_stopped(w);
}

void wk_hold(wk *w, int hold) {
  if (!w || w->held == !!hold) return;
  w->held = !!hold;
  wki_check_pressure(w);
}

void wk_get_stats(const wk *w, wk_stats *out) {
  *out = w->st;
  wkt_stats(w, out);
}

static void on_handle_closed(uv_handle_t *h) {
  wk *w = h->data;
  if (--w->handles_open == 0) free(w);
}

void wk_free(wk *w) {
  if (!w) return;
  w->freeing = 1;
  /* Events abandoned at the end of the grace period. */
  wks_free_all(w);
  wko_forget(w); /* before kc_close: its revocation commits, and must not see them */
  kc_close(w->consumer);
  kp_flush(w->producer, 5000);
  wkt_free(w); /* after the flush: dead letters of tool replies report to it */
  ktx_free(w->txp); /* aborts an open transaction: its events were not answered */
  kp_free(w->producer);
  ptab_free(&w->parts);
  w->handles_open = 5;
  uv_close((uv_handle_t *)&w->ready_idle, on_handle_closed);
  uv_close((uv_handle_t *)&w->retry_timer, on_handle_closed);
  uv_close((uv_handle_t *)&w->delta_timer, on_handle_closed);
  uv_close((uv_handle_t *)&w->commit_timer, on_handle_closed);
  uv_close((uv_handle_t *)&w->grace_timer, on_handle_closed);
}

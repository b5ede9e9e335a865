/* worker.c -- the event state machine: a request in, an answer out.
 *
 * Ownership: the worker owns every wk_event from consumption to DONE; an
 * event is freed only from the loop (never inside a backend or Redis
 * callback that is still using it: those callbacks only move the state on
 * and the free happens when the last reference is gone, see ev_release).
 */
#include "worker_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uthash.h>

#include "buf.h"
#include "kafka_consumer.h"
#include "kafka_producer.h"
#include "log.h"
#include "offset_tracker.h"
#include "thread_map.h"

static const char *const state_names[] = {"received",   "queued",     "lookup",    "thread", "turn",
                                          "tools",      "publishing", "committing", "recording", "done"};

static void ev_start(wk_event *ev);
static void ev_finish(wk_event *ev);
static void ev_publish_rejection(wk_event *ev);
static void ev_publish_response(wk_event *ev);
static void maybe_stopped(wk *w);

int64_t wk_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

log_ctx wk_ev_ctx(const wk_event *ev) {
  log_ctx c = {ev->event_id[0] ? ev->event_id : NULL, ev->conv_id[0] ? ev->conv_id : NULL,
               ev->thread_id[0] ? ev->thread_id : NULL, ev->run_id[0] ? ev->run_id : NULL};
  return c;
}

/* The one place where an event changes state, so that every transition can
 * be logged with the event's ids. */
void wk_ev_set_state(wk_event *ev, wk_state s) {
  if (log_enabled(LOG_DEBUG)) {
    log_ctx c = wk_ev_ctx(ev);
    log_write(LOG_DEBUG, &c, "event %s -> %s", state_names[ev->state], state_names[s]);
  }
  ev->state = s;
}

/* Bounded copy of an id; API ids are ~30 bytes, far below every buffer. */
void wk_copy_id(char *dst, size_t n, const char *src) {
  size_t k = src ? strnlen(src, n - 1) : 0;
  if (k) memcpy(dst, src, k);
  dst[k] = '\0';
}

/* ---- partitions ----------------------------------------------------------- */

static wk_part *part_get(wk *w, int32_t p) {
  if (p < 0) return NULL;
  if (p >= w->nparts) {
    int n = p + 1;
    wk_part *np = realloc(w->parts, (size_t)n * sizeof *np);
    if (!np) return NULL;
    for (int i = w->nparts; i < n; i++) {
      otrk_init(&np[i].t);
      memset(&np[i].skip, 0, sizeof np[i].skip);
      np[i].gen = 0;
      np[i].assigned = 0;
      np[i].running = 0;
      np[i].paused = 0;
    }
    w->parts = np;
    w->nparts = n;
  }
  return &w->parts[p];
}

static int ev_stale(const wk_event *ev) {
  wk_part *p = ev->partition < ev->w->nparts ? &ev->w->parts[ev->partition] : NULL;
  return !p || !p->assigned || p->gen != ev->gen;
}

/* ---- commits ------------------------------------------------------------- */

static void txn_commit(wk *w, int sync);
static void ev_record(wk_event *ev);
static void on_dr(void *cb_opaque, void *msg_opaque, rd_kafka_resp_err_t err);

/* Commit the done prefix of every assigned partition that moved. */
static void commit_progress(wk *w, int sync) {
  if (w->txp) {
    txn_commit(w, sync);
    return;
  }
  rd_kafka_topic_partition_list_t *l = NULL;
  for (int i = 0; i < w->nparts; i++) {
    int64_t off;
    if (!w->parts[i].assigned || !otrk_take_commit(&w->parts[i].t, &off)) continue;
    if (!l) l = rd_kafka_topic_partition_list_new(8);
    rd_kafka_topic_partition_list_add(l, w->cfg.topic_requests, i)->offset = off;
  }
  if (!l) return;
  if (kc_commit(w->consumer, l, !sync) != AW_OK) w->st.kafka_errors++;
  rd_kafka_topic_partition_list_destroy(l);
}

static void on_commit_timer(uv_timer_t *t) { commit_progress(t->data, 0); }

/* ---- exactly-once: Kafka transactions ---------------------------------------
 *
 * An event's response (and DLQ record) is produced into the open
 * transaction; once every report is in, its offset is marked done and it
 * waits in txn_head (ST_COMMITTING) at the head of its conversation.  A
 * commit closes the transaction (new answers wait in txn_wait), waits for
 * the reports due and for the events it holds to be complete (txn_owed),
 * then commits the responses together with every assigned partition's
 * commit point and, in the metadata, the offsets done beyond it.  After the
 * commit the events record their outcome and finish; after an abort they
 * are produced again into the next transaction (their offsets stay marked
 * done, so no commit may happen before they are in it again: txn_owed). */

/* An event is owed while the open transaction holds part of what it must
 * produce: no commit may happen then (it would commit half an answer). */
static void owe(wk_event *ev) {
  wk *w = ev->w;
  if (ev->owed) return;
  ev->owed = 1;
  w->txn_owed++;
  ev->owed_prev = NULL;
  ev->owed_next = w->owed_head;
  if (w->owed_head) w->owed_head->owed_prev = ev;
  w->owed_head = ev;
}

static void unowe(wk_event *ev) {
  wk *w = ev->w;
  if (!ev->owed) return;
  ev->owed = 0;
  w->txn_owed--;
  if (ev->owed_prev) ev->owed_prev->owed_next = ev->owed_next;
  else w->owed_head = ev->owed_next;
  if (ev->owed_next) ev->owed_next->owed_prev = ev->owed_prev;
  ev->owed_prev = ev->owed_next = NULL;
}

static void txn_wait_add(wk_event *ev) {
  wk *w = ev->w;
  if (ev->txn_where) return;
  ev->txn_where = 1;
  ev->txn_next = NULL;
  if (w->txn_wait_tail) w->txn_wait_tail->txn_next = ev;
  else w->txn_wait_head = ev;
  w->txn_wait_tail = ev;
}

/* Offsets of every assigned partition with their done set as metadata. */
static rd_kafka_topic_partition_list_t *txn_offsets(wk *w) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(w->nparts > 0 ? w->nparts : 1);
  if (!l) return NULL;
  for (int i = 0; i < w->nparts; i++) {
    wk_part *p = &w->parts[i];
    int64_t cp = otrk_commit_point(&p->t);
    if (!p->assigned || cp < 0) continue;
    char md[OTRK_META_MAX_BYTES + 1];
    int rc = otrk_metadata(&p->t, md, sizeof md);
    if (rc != AW_OK) {
      /* Held back before this can happen (check_partition); if it does,
       * the partition's commit waits and the Redis outcome records still
       * catch a re-delivered event. */
      log_error(NULL, "partition %d: done offsets beyond %lld do not fit the commit metadata", i, (long long)cp);
      continue;
    }
    rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_add(l, w->cfg.topic_requests, i);
    e->offset = cp;
    if (md[0]) {
      e->metadata = strdup(md);
      e->metadata_size = e->metadata ? strlen(md) : 0;
    }
  }
  return l;
}

/* Answers that waited for the transaction to open (start-up, a commit). */
static void txn_flush_wait(wk *w) {
  wk_event *wait = w->txn_wait_head;
  w->txn_wait_head = w->txn_wait_tail = NULL;
  while (wait) {
    wk_event *ev = wait;
    wait = ev->txn_next;
    ev->txn_where = 0;
    ev->txn_next = NULL;
    ev_publish_response(ev);
  }
}

static void txn_commit(wk *w, int sync) {
  if (!ktx_open(w->txp) && !sync) return;
  if (!w->txn_closing && w->txn_wait_head) txn_flush_wait(w);
  int64_t now = wk_now_ms();
  if (!sync && !w->txn_closing) {
    if (!ktx_produced(w->txp) && !w->txn_dirty) return;
    if (now - w->txn_last_ms < w->cfg.txn_interval_ms) return;
    w->txn_closing = 1;
  }
  int abort = 0;
  if (sync) {
    w->txn_closing = 1;
    if (ktx_flush(w->txp, 10000) != AW_OK) {
      log_error(NULL, "kafka transaction could not be flushed; its offsets stay uncommitted");
      return;
    }
    /* An event still owed (part of its messages not produced) cannot be
     * committed: abort, and the events are produced again afterwards. */
    abort = w->txn_owed > 0;
  } else if (ktx_pending(w->txp) > 0 || w->txn_owed > 0) {
    return; /* closing: the last report due calls again */
  }
  rd_kafka_topic_partition_list_t *offs = txn_offsets(w);
  rd_kafka_consumer_group_metadata_t *cg = rd_kafka_consumer_group_metadata(kc_handle(w->consumer));
  w->txn_dirty = 0;
  w->txn_last_ms = now;
  w->txn_started_ns = uv_hrtime();
  int rc = sync ? ktx_commit_sync(w->txp, offs, cg, abort) : ktx_commit(w->txp, offs, cg, abort);
  if (rc != AW_OK && rc != AW_EKAFKA) {
    w->txn_dirty = 1;
    if (!sync) {
      if (offs) rd_kafka_topic_partition_list_destroy(offs);
      if (cg) rd_kafka_consumer_group_metadata_destroy(cg);
    }
    log_warn(NULL, "kafka transaction commit not started: %s", aw_strerror(rc));
  }
}

/* All of ev's messages are in the open transaction. */
static void txn_enter(wk_event *ev) {
  wk *w = ev->w;
  wk_ev_set_state(ev, ST_COMMITTING);
  if (!ev_stale(ev) && !ev->offset_done) {
    if (otrk_done(&w->parts[ev->partition].t, ev->offset) != AW_OK) {
      log_ctx c = wk_ev_ctx(ev);
      log_warn(&c, "offset %lld of partition %d was not tracked", (long long)ev->offset, (int)ev->partition);
    }
    ev->offset_done = 1;
    w->txn_dirty = 1;
  }
  unowe(ev);
  ev->txn_seq = ktx_seq(w->txp);
  ev->txn_where = 2;
  ev->txn_next = w->txn_head;
  w->txn_head = ev;
  if (w->txn_closing) txn_commit(w, 0);
}

static void on_txn_done(void *opaque, uint64_t seq, int committed, const char *errstr) {
  wk *w = opaque;
  w->txn_closing = 0;
  if (w->cfg.observe && w->txn_started_ns)
    w->cfg.observe(w->cfg.observe_opaque, WK_OBS_TXN_COMMIT_SECONDS, (double)(uv_hrtime() - w->txn_started_ns) / 1e9);
  if (committed) {
    w->st.txn_commits++;
  } else {
    w->st.txn_aborts++;
    log_warn(NULL, "kafka transaction %llu aborted (%s); its answers are produced again",
             (unsigned long long)seq, errstr && *errstr ? errstr : "no reason given");
  }
  if (!committed) {
    /* Events whose messages were half produced into the aborted
     * transaction produce all of them again. */
    for (wk_event *ev = w->owed_head; ev; ev = ev->owed_next) {
      ev->send_response = 1;
      ev->send_dlq = ev->reject_code != NULL;
    }
  }
  wk_event *list = w->txn_head;
  w->txn_head = NULL;
  while (list) {
    wk_event *ev = list;
    list = ev->txn_next;
    ev->txn_where = 0;
    ev->txn_next = NULL;
    if (committed) {
      ev_record(ev);
    } else if (ev_stale(ev) || w->freeing) {
      ev_finish(ev); /* its partition moved: the new owner answers it */
    } else {
      owe(ev);
      ev->send_response = 1;
      ev->send_dlq = ev->reject_code != NULL;
      wk_ev_set_state(ev, ST_PUBLISHING);
      ev_publish_response(ev);
    }
  }
  txn_flush_wait(w);
  if (ktx_fatal(w->txp)) {
    log_error(NULL, "kafka transactions are fenced or broken: stopping (in-flight events are left to the next owner)");
    if (w->cfg.on_fatal) w->cfg.on_fatal(w->cfg.fatal_opaque);
  }
}

static void on_txn_dr(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err) {
  wk *w = opaque;
  on_dr(w, msg_opaque, err);
  if (w->txn_closing && !w->freeing) txn_commit(w, 0);
}

/* ---- backpressure ---------------------------------------------------------- */

/* One partition over its own limit is paused alone, so one busy partition
 * cannot take the whole worker's capacity; resuming waits for 3/4 of the
 * limit so that a partition does not flap around it. */
/* With transactions, a partition is also held back while its tracker spans
 * more offsets than half of what the commit metadata can record, so the
 * done set always fits (the other half absorbs what was already fetched). */
#define SPAN_HOLD (OTRK_META_MAX_SPAN / 2)
#define SPAN_RESUME (OTRK_META_MAX_SPAN * 3 / 8)

static void check_partition(wk *w, int32_t n) {
  wk_part *p = n >= 0 && n < w->nparts ? &w->parts[n] : NULL;
  long max = w->cfg.max_in_flight_per_partition;
  if (!p || !p->assigned || !w->consumer || w->stopping) return;
  size_t span = w->txp ? otrk_in_flight(&p->t) : 0;
  int over = (max > 0 && p->running >= max) || span >= SPAN_HOLD;
  int under = (max <= 0 || p->running <= max * 3 / 4) && span <= SPAN_RESUME;
  if (!p->paused && over) {
    if (kc_pause_partition(w->consumer, n, 1) == AW_OK) p->paused = 1;
  } else if (p->paused && under) {
    /* While everything is paused, kc_resume decides (see check_pressure). */
    if (kc_paused(w->consumer) || kc_pause_partition(w->consumer, n, 0) == AW_OK) p->paused = 0;
  }
}

static void check_pressure(wk *w) {
  if (!w->consumer || w->stopping) return;
  long max = w->cfg.max_in_flight;
  if (!kc_paused(w->consumer) && w->st.in_flight >= max) {
    if (kc_pause(w->consumer) == AW_OK) {
      w->st.paused = 1;
      log_debug(NULL, "paused consumption at %ld events in flight", w->st.in_flight);
    }
  } else if (kc_paused(w->consumer) && w->st.in_flight <= max * 3 / 4) {
    if (kc_resume(w->consumer) == AW_OK) {
      w->st.paused = 0;
      log_debug(NULL, "resumed consumption at %ld events in flight", w->st.in_flight);
      /* kc_resume resumed every partition: pause again the ones still
       * over their own limit. */
      for (int32_t i = 0; i < w->nparts; i++) {
        w->parts[i].paused = 0;
        check_partition(w, i);
      }
    }
  }
}

/* ---- ready list: start events from the loop, not from callbacks ----------- */

static void on_ready(uv_idle_t *h) {
  wk *w = h->data;
  wk_event *list = w->ready_head;
  w->ready_head = w->ready_tail = NULL;
  uv_idle_stop(h);
  while (list) {
    wk_event *ev = list;
    list = ev->ready_next;
    ev->ready_next = NULL;
    ev->in_ready = 0;
    ev_start(ev);
  }
}

static void make_ready(wk_event *ev) {
  wk *w = ev->w;
  if (ev->in_ready) return;
  ev->in_ready = 1;
  ev->ready_next = NULL;
  if (w->ready_tail) w->ready_tail->ready_next = ev;
  else w->ready_head = ev;
  w->ready_tail = ev;
  if (!uv_is_active((uv_handle_t *)&w->ready_idle)) uv_idle_start(&w->ready_idle, on_ready);
}

/* ---- retry list: transient Redis / Kafka failures ------------------------ */

static void on_retry_timer(uv_timer_t *t) {
  wk *w = t->data;
  wk_event *list = w->retry_head;
  w->retry_head = NULL;
  while (list) {
    wk_event *ev = list;
    list = ev->retry_next;
    ev->in_retry = 0;
    if (ev->state == ST_PUBLISHING) ev_publish_response(ev);
    else if (ev->state == ST_TOOLS) wkt_retry(ev);
    else ev_start(ev);
  }
  if (!w->retry_head) uv_timer_stop(t);
}

void wk_retry_later(wk_event *ev) {
  wk *w = ev->w;
  if (ev->in_retry) return;
  ev->in_retry = 1;
  ev->retry_next = w->retry_head;
  w->retry_head = ev;
  if (!uv_is_active((uv_handle_t *)&w->retry_timer))
    uv_timer_start(&w->retry_timer, on_retry_timer, RETRY_TICK_MS, RETRY_TICK_MS);
}

/* ---- conversations ----------------------------------------------------------- */

/* Queue ev behind earlier events of its conversation; start it if first. */
static int conv_enqueue(wk *w, wk_event *ev) {
  wk_conv *c = NULL;
  HASH_FIND_STR(w->convs, ev->conv_id, c);
  if (!c) {
    c = calloc(1, sizeof *c);
    if (!c || !(c->id = strdup(ev->conv_id))) {
      free(c);
      return AW_ENOMEM;
    }
    HASH_ADD_KEYPTR(hh, w->convs, c->id, strlen(c->id), c);
  }
  ev->conv = c;
  wk_ev_set_state(ev, ST_QUEUED);
  if (c->tail) {
    c->tail->next = ev;
    c->tail = ev;
  } else {
    c->head = c->tail = ev;
    make_ready(ev);
  }
  return AW_OK;
}

/* ev (the head) is done: the next event of the conversation may start. */
static void conv_advance(wk *w, wk_event *ev) {
  wk_conv *c = ev->conv;
  if (!c) return;
  c->head = ev->next;
  if (!c->head) {
    c->tail = NULL;
    HASH_DEL(w->convs, c);
    free(c->id);
    free(c);
  } else {
    /* An abandoned event's successors must not overtake it: they are left
     * to the next owner too. */
    if (ev->abandoned) c->head->abandoned = 1;
    make_ready(c->head);
  }
}

/* ---- event lifetime ------------------------------------------------------ */

static void ev_free(wk_event *ev) {
  wkt_forget(ev);
  contract_request_free(ev->req);
  free(ev->reject_msg);
  free(ev->orig);
  free(ev->orig_key);
  free(ev->md);
  buf_free(&ev->out);
  buf_free(&ev->delta);
  free(ev);
}

static void ev_finish(wk_event *ev) {
  wk *w = ev->w;
  wk_ev_set_state(ev, ST_DONE);
  int counted = !ev_stale(ev);
  if (counted) w->parts[ev->partition].running--;
  if (counted && !ev->abandoned && !ev->offset_done &&
      otrk_done(&w->parts[ev->partition].t, ev->offset) != AW_OK) {
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "offset %lld of partition %d was not tracked", (long long)ev->offset,
             (int)ev->partition);
  }
  if (counted && !ev->abandoned && !ev->offset_done) w->txn_dirty = 1;
  unowe(ev);
  w->st.in_flight--;
  int32_t part = ev->partition;
  conv_advance(w, ev);
  ev_free(ev);
  if (counted) check_partition(w, part);
  check_pressure(w);
  maybe_stopped(w);
}

void wk_ev_abandon(wk_event *ev) {
  log_ctx c = wk_ev_ctx(ev);
  log_info(&c, "event left unanswered and uncommitted for the next owner");
  ev->abandoned = 1;
  be_op_cancel(ev->op);
  ev->op = NULL;
  ev_finish(ev);
}

/* ---- producing ----------------------------------------------------------- */

int wk_produce(wk_event *ev, const char *topic, int kind, const void *key, size_t keylen,
               const void *val, size_t len, const char *const *headers, size_t nheaders) {
  int rc = kp_produce_hdr(ev->w->producer, topic, key, keylen, val, len, headers, nheaders,
                          (void *)((uintptr_t)ev | (uintptr_t)kind));
  if (rc == AW_OK) ev->pending_dr++;
  return rc;
}

static void flush_delta(wk_event *ev) {
  if (!ev->delta.len) return;
  buf enc;
  buf_init(&enc, DELTA_MAX_BYTES + 1024);
  const char *run = ev->run_id[0] ? ev->run_id : NULL;
  if (contract_delta_encode(ev->event_id, ev->conv_id, run, ev->seq, ev->delta.data,
                            ev->delta.len, &enc) == AW_OK &&
      wk_produce(ev, ev->w->cfg.topic_deltas, DR_DELTA, ev->conv_id, strlen(ev->conv_id), enc.data,
                 enc.len, NULL, 0) == AW_OK) {
    ev->seq++;
    ev->w->st.deltas++;
  } else {
    /* A lost delta breaks "deltas concatenate to the answer" for this one
     * event; the response still carries the full text. */
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "could not produce delta %lld", (long long)ev->seq);
    ev->w->st.kafka_errors++;
  }
  buf_free(&enc);
  buf_reset(&ev->delta);
}

static void on_delta_timer(uv_timer_t *t) {
  wk *w = t->data;
  wk_event *list = w->dirty_head;
  w->dirty_head = NULL;
  while (list) {
    wk_event *ev = list;
    list = ev->dirty_next;
    ev->in_dirty = 0;
    flush_delta(ev);
  }
  uv_timer_stop(t);
}

static void dirty_remove(wk_event *ev) {
  wk *w = ev->w;
  if (!ev->in_dirty) return;
  for (wk_event **pp = &w->dirty_head; *pp; pp = &(*pp)->dirty_next) {
    if (*pp == ev) {
      *pp = ev->dirty_next;
      break;
    }
  }
  ev->in_dirty = 0;
}

static void on_outcome_recorded(void *opaque, int err, const char *value) {
  wk_event *ev = opaque;
  (void)value;
  if (ev->w->cfg.observe && ev->received_ms)
    ev->w->cfg.observe(ev->w->cfg.observe_opaque, WK_OBS_EVENT_SECONDS, (double)(wk_now_ms() - ev->received_ms) / 1000.0);
  if (err) {
    /* The answer is published; the record only speeds up duplicate
     * detection, so a Redis outage must not hold the offset back. */
    ev->w->st.redis_errors++;
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "could not record the outcome in redis");
  }
  ev_finish(ev);
}

/* The outcome is durable: record it, then the event is done. */
static void ev_record(wk_event *ev) {
  wk_ev_set_state(ev, ST_RECORDING);
  if (!ev->event_id[0] || !ev->conv_id[0] ||
      tmap_put_outcome(&ev->w->map, ev->conv_id, ev->event_id, ev->status, ev->run_id,
                       on_outcome_recorded, ev) != AW_OK) {
    ev_finish(ev);
  }
}

static void txn_enter(wk_event *ev);

/* All delivery reports are in.  At-least-once: the outcome is durable now.
 * Exactly-once: it is in the open transaction, durable once that commits. */
static void ev_delivered(wk_event *ev) {
  if (ev->w->txp) txn_enter(ev);
  else ev_record(ev);
}

static void on_dr(void *cb_opaque, void *msg_opaque, rd_kafka_resp_err_t err) {
  wk *w = cb_opaque;
  int kind = (int)((uintptr_t)msg_opaque & DR_MASK);
  if (kind == DR_REPLY_DLQ) {
    wkt_on_reply_dlq_dr(w, (void *)((uintptr_t)msg_opaque & ~(uintptr_t)DR_MASK), err);
    return;
  }
  if (w->freeing) return; /* the events are gone (wk_free) */
  wk_event *ev = (wk_event *)((uintptr_t)msg_opaque & ~(uintptr_t)DR_MASK);
  ev->pending_dr--;
  if (kind == DR_TOOL_REQUEST) {
    wkt_on_request_dr(ev, err);
    return;
  }
  if (err) {
    w->st.kafka_errors++;
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "delivery failed (%s): %s",
             kind == DR_RESPONSE ? "response" : kind == DR_DLQ ? "dlq" : "delta", rd_kafka_err2str(err));
    /* A response or DLQ record that is not durable is produced again; the
     * offset stays uncommitted meanwhile.  A lost delta only breaks the
     * concatenation of this event's deltas; the response has the text. */
    if (w->txp && kind != DR_DELTA) {
      /* The transaction holding it will abort; the abort produces the
       * event's messages again in the next one. */
    } else if (kind != DR_DELTA) {
      if (kind == DR_RESPONSE) ev->send_response = 1;
      if (kind == DR_DLQ) ev->send_dlq = 1;
      w->st.produce_retries++;
      if (ev->pending_dr == 0) wk_retry_later(ev);
      return;
    }
  }
  if (ev->pending_dr > 0 || ev->state != ST_PUBLISHING) return;
  if (ev->await_deltas) {
    ev->await_deltas = 0;
    ev_publish_response(ev);
  } else if (ev->send_response || ev->send_dlq) {
    wk_retry_later(ev); /* a failure earlier */
  } else {
    ev_delivered(ev);
  }
}

/* Produce the encoded response (and DLQ record for rejections) kept in
 * ev->out; on a full queue try again from the retry list. */
static void txn_wait_add(wk_event *ev);

/* The outcome's messages (response, DLQ record): into the open transaction
 * when answers are exactly-once, else on the idempotent producer. */
static int produce_outcome(wk_event *ev, const char *topic, int kind, const void *key, size_t keylen,
                           const void *val, size_t len) {
  wk *w = ev->w;
  if (!w->txp) return wk_produce(ev, topic, kind, key, keylen, val, len, NULL, 0);
  int rc = ktx_produce(w->txp, topic, key, keylen, val, len, (void *)((uintptr_t)ev | (uintptr_t)kind));
  if (rc == AW_OK) {
    ev->pending_dr++;
    owe(ev);
  }
  return rc;
}

static void ev_publish_response(wk_event *ev) {
  wk *w = ev->w;
  int rc = AW_OK;
  if (w->txp) {
    if (ev_stale(ev)) {
      /* Revoked before its answer went out: the new owner answers it.  (An
       * owed one's partial messages were in the transaction the revoke
       * aborted.) */
      ev_finish(ev);
      return;
    }
    /* A transaction being closed takes no new event (it would never
     * close under load); an event already in it completes its messages. */
    if (!ktx_open(w->txp) || (w->txn_closing && !ev->owed)) {
      txn_wait_add(ev);
      return;
    }
  }
  if (ev->send_response) {
    rc = produce_outcome(ev, w->cfg.topic_responses, DR_RESPONSE, ev->conv_id, strlen(ev->conv_id),
                         ev->out.data, ev->out.len);
    if (rc == AW_OK) ev->send_response = 0;
  }
  if (rc == AW_OK && ev->send_dlq) {
    contract_dlq d = {0};
    d.original = ev->orig;
    d.original_len = ev->orig_len;
    d.original_key = ev->orig_key;
    d.original_key_len = ev->orig_key_len;
    d.topic = w->cfg.topic_requests;
    d.partition = ev->partition;
    d.offset = ev->offset;
    d.error_code = ev->reject_code;
    d.error_message = ev->reject_msg ? ev->reject_msg : ev->reject_code;
    d.event_id = ev->event_id[0] ? ev->event_id : NULL;
    d.conversation_id = ev->conv_id[0] ? ev->conv_id : NULL;
    d.failed_ms = wk_now_ms();
    buf dl;
    buf_init(&dl, ev->orig_len + ev->orig_key_len + 64 * 1024);
    rc = contract_dlq_encode(&d, &dl);
    if (rc == AW_OK)
      rc = produce_outcome(ev, w->cfg.topic_dlq, DR_DLQ, ev->orig_key, ev->orig_key_len, dl.data, dl.len);
    buf_free(&dl);
    if (rc == AW_OK) {
      ev->send_dlq = 0;
      w->st.dlq++;
    }
  }
  if (rc != AW_OK) {
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "produce failed (%s); will retry", aw_strerror(rc));
    w->st.produce_retries++;
    if (ev->pending_dr == 0) wk_retry_later(ev);
  }
}

static void encode_and_publish(wk_event *ev, const contract_response *r) {
  buf_reset(&ev->out);
  int rc = contract_response_encode(r, &ev->out);
  if (rc != AW_OK) {
    /* Only an oversized answer gets here: answer with the error instead. */
    contract_response small = *r;
    small.messages = NULL;
    small.nmessages = 0;
    small.status = "failed";
    small.error_code = "response_too_large";
    small.error_message = "the answer does not fit the response size limit";
    buf_reset(&ev->out);
    wk_copy_id(ev->status, sizeof ev->status, "failed");
    if (contract_response_encode(&small, &ev->out) != AW_OK) {
      log_ctx c = wk_ev_ctx(ev);
      log_error(&c, "cannot encode a response; dropping the answer");
      ev_finish(ev);
      return;
    }
  }
  wk_ev_set_state(ev, ST_PUBLISHING);
  ev->send_response = 1;
  ev->send_dlq = ev->reject_code != NULL;
  /* The response goes out only once every delta of the event is durable:
   * a reader that stops at the response (deltas and responses are separate
   * topics, with no order between them) then has all the deltas.  A
   * delta's first produce to the topic may wait for metadata and would
   * otherwise land after the response. */
  if (ev->pending_dr > 0) {
    ev->await_deltas = 1;
    return;
  }
  ev_publish_response(ev);
}

static void ev_publish_rejection(wk_event *ev) {
  contract_response r = {0};
  r.event_id = ev->event_id;
  r.conversation_id = ev->conv_id;
  r.status = "rejected";
  r.error_code = ev->reject_code;
  r.error_message = ev->reject_msg ? ev->reject_msg : ev->reject_code;
  r.timings.received_ms = ev->received_ms;
  r.timings.completed_ms = wk_now_ms();
  wk_copy_id(ev->status, sizeof ev->status, "rejected");
  ev->w->st.rejected++;
  log_ctx c = wk_ev_ctx(ev);
  log_warn(&c, "event rejected: %s: %s", ev->reject_code, r.error_message);
  encode_and_publish(ev, &r);
}

/* ---- the turn ------------------------------------------------------------ */

/* Progress writes are not waited for: a record that is lost (crash, Redis
 * down) only makes a re-processed event look its message up on the thread.
 * The opaque is the worker, which outlives the reply. */
static void on_progress_put(void *opaque, int err, const char *value) {
  (void)value;
  if (err) ((wk *)opaque)->st.redis_errors++;
}

static void put_progress(wk_event *ev) {
  if (tmap_put_progress(&ev->w->map, ev->conv_id, ev->event_id, ev->msg_id,
                        ev->run_id[0] ? ev->run_id : NULL, on_progress_put, ev->w) != AW_OK)
    ev->w->st.redis_errors++;
}

/* Only remembered: a record naming the message without its run would send
 * a re-processed event to the same thread lookup as a bare claim, so the
 * record is written once, when the run exists. */
static void turn_message_added(void *opaque, const char *message_id) {
  wk_event *ev = opaque;
  wk_copy_id(ev->msg_id, sizeof ev->msg_id, message_id);
  log_ctx c = wk_ev_ctx(ev);
  log_debug(&c, "message %s added", message_id);
}

static void turn_run_created(void *opaque, const char *run_id) {
  wk_event *ev = opaque;
  wk_copy_id(ev->run_id, sizeof ev->run_id, run_id);
  ev->run_started_ms = wk_now_ms();
  /* The message came with the run (one request): its id is not known, and
   * not needed to resume ("-"). */
  if (!ev->msg_id[0]) wk_copy_id(ev->msg_id, sizeof ev->msg_id, "-");
  put_progress(ev);
  log_ctx c = wk_ev_ctx(ev);
  log_debug(&c, "run created");
}

/* A resumed run delivers no deltas; a streamed request still gets the whole
 * text as deltas, from seq 0 of this attempt (readers reset on seq 0). */
static void republish_text(wk_event *ev, const be_turn_result *res) {
  for (size_t i = 0; i < res->nmessages; i++) {
    for (size_t j = 0; j < res->messages[i].nparts; j++) {
      const contract_out_part *p = &res->messages[i].parts[j];
      if (strcmp(p->type, "text") != 0) continue;
      for (size_t off = 0; off < p->text_len; off += DELTA_FLUSH_BYTES) {
        size_t n = p->text_len - off < DELTA_FLUSH_BYTES ? p->text_len - off : DELTA_FLUSH_BYTES;
        if (buf_append(&ev->delta, p->text + off, n) == AW_OK) flush_delta(ev);
      }
    }
  }
}

static void turn_text_delta(void *opaque, const char *text, size_t len) {
  wk_event *ev = opaque;
  wk *w = ev->w;
  if (!ev->req->stream) return;
  if (buf_append(&ev->delta, text, len) != AW_OK) {
    buf_init(&ev->delta, DELTA_MAX_BYTES);
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "delta larger than %d bytes dropped", DELTA_MAX_BYTES);
    return;
  }
  if (ev->delta.len >= DELTA_FLUSH_BYTES || w->cfg.delta_window_ms <= 0) {
    dirty_remove(ev);
    flush_delta(ev);
  } else if (!ev->in_dirty) {
    ev->in_dirty = 1;
    ev->dirty_next = w->dirty_head;
    w->dirty_head = ev;
    if (!uv_is_active((uv_handle_t *)&w->delta_timer))
      uv_timer_start(&w->delta_timer, on_delta_timer, (uint64_t)w->cfg.delta_window_ms, 0);
  }
}

/* Stable error code for a transport-level failure of the API. */
static const char *api_error_code(const be_turn_result *res) {
  if (res->error_code && *res->error_code) return res->error_code;
  switch (res->err) {
  case AW_ERATELIMIT: return "rate_limited";
  case AW_EHTTP5XX: return "api_unavailable";
  case AW_ETIMEDOUT: return "api_timeout";
  case AW_EIO: return "api_connection_error";
  case AW_EHTTP4XX: return "api_invalid_request";
  case AW_ETOOBIG: return "answer_too_large";
  default: return "api_error";
  }
}

void wk_turn_done(void *opaque, const be_turn_result *res) {
  wk_event *ev = opaque;
  wk *w = ev->w;
  ev->op = NULL;
  if (res->run_id && *res->run_id) wk_copy_id(ev->run_id, sizeof ev->run_id, res->run_id);
  if (res->run_started_ms && !ev->run_started_ms) ev->run_started_ms = res->run_started_ms;
  if (w->tools && res->err == AW_OK && res->status && strcmp(res->status, "requires_action") == 0 &&
      res->ntool_calls && ev->run_id[0]) {
    /* Not the end: the run waits for its function outputs. */
    flush_delta(ev);
    wkt_begin(ev, res->tool_calls, res->ntool_calls, res->expires_at_ms);
    return;
  }
  dirty_remove(ev);
  flush_delta(ev);
  if (ev->resumed && ev->req->stream && res->err == AW_OK) republish_text(ev, res);

  contract_response r = {0};
  r.event_id = ev->event_id;
  r.conversation_id = ev->conv_id;
  r.thread_id = ev->thread_id[0] ? ev->thread_id : NULL;
  r.run_id = ev->run_id[0] ? ev->run_id : NULL;
  r.messages = res->messages;
  r.nmessages = res->nmessages;
  r.usage = res->usage;
  r.timings.received_ms = ev->received_ms;
  r.timings.run_started_ms = ev->run_started_ms;
  r.timings.completed_ms = wk_now_ms();
  if (res->err != AW_OK) {
    r.status = "failed";
    r.error_code = api_error_code(res);
    r.error_message = res->errmsg ? res->errmsg : aw_strerror(res->err);
  } else {
    r.status = res->status ? res->status : "failed";
    if (strcmp(r.status, "completed") != 0) {
      r.error_code = res->error_code ? res->error_code : r.status;
      r.error_message = res->errmsg ? res->errmsg : r.status;
    }
  }
  wkt_annotate(ev, &r);
  wk_copy_id(ev->status, sizeof ev->status, r.status);
  log_ctx c = wk_ev_ctx(ev);
  if (strcmp(r.status, "completed") == 0) {
    w->st.answered++;
    log_info(&c, "run completed");
  } else {
    w->st.failed++;
    log_warn(&c, "run ended %s: %s: %s", r.status, r.error_code ? r.error_code : "",
             r.error_message ? r.error_message : "");
  }
  encode_and_publish(ev, &r);
}

/* A turn that failed before any I/O ends like one that failed later. */
static void turn_not_started(wk_event *ev, int rc, const char *what) {
  be_turn_result res = {0};
  res.err = rc;
  res.errmsg = what;
  wk_turn_done(ev, &res);
}

/* Reported again, with the calls, in on_done (status requires_action). */
static void turn_requires_action(void *opaque, const be_tool_call *calls, size_t n) {
  (void)opaque;
  (void)calls;
  (void)n;
}

static const be_turn_events turn_events = {
    .on_message_added = turn_message_added,
    .on_run_created = turn_run_created,
    .on_text_delta = turn_text_delta,
    .on_done = wk_turn_done,
};

static const be_turn_events turn_events_tools = {
    .on_message_added = turn_message_added,
    .on_run_created = turn_run_created,
    .on_text_delta = turn_text_delta,
    .on_done = wk_turn_done,
    .on_requires_action = turn_requires_action,
};

const be_turn_events *wk_events(const wk *w) { return w->tools ? &turn_events_tools : &turn_events; }

static void ev_run_turn(wk_event *ev) {
  wk *w = ev->w;
  wk_ev_set_state(ev, ST_TURN);
  contract_request *q = ev->req;
  size_t n = 0;
  if (!ev->md) {
    ev->md = calloc(q->nmetadata + 2, sizeof *ev->md);
    if (!ev->md) {
      wk_retry_later(ev);
      return;
    }
  }
  for (size_t i = 0; i < q->nmetadata; i++) {
    if (strcmp(q->metadata[i].key, "event_id") && strcmp(q->metadata[i].key, "conversation_id"))
      ev->md[n++] = q->metadata[i];
  }
  ev->md[n++] = (contract_kv){"event_id", ev->event_id};
  ev->md[n++] = (contract_kv){"conversation_id", ev->conv_id};
  be_turn_input in = {0};
  in.conversation = ev->thread_id;
  in.assistant_id = ev->assistant_id;
  in.parts = q->parts;
  in.nparts = q->nparts;
  in.metadata = ev->md;
  in.nmetadata = n;
  in.instructions = q->instructions;
  in.additional_instructions = q->additional_instructions;
  in.want_deltas = q->stream;
  in.log_event_id = ev->event_id;
  in.existing_message_id = ev->use_existing_message ? ev->msg_id : NULL;
  in.run_tag = ev->event_id; /* a re-processed event finds its run by it */
  int rc = be_turn_start(w->be, &in, wk_events(ev->w), ev, &ev->op);
  if (rc != AW_OK) turn_not_started(ev, rc, "could not start the run");
}

/* ---- re-processing: continue what an earlier attempt started ------------- */

static void ev_resume_run(wk_event *ev) {
  int rc = be_turn_resume(ev->w->be, ev->thread_id, ev->run_id, wk_events(ev->w), ev, &ev->op);
  if (rc != AW_OK) turn_not_started(ev, rc, "could not resume the run");
}

static void ev_resume(wk_event *ev) {
  wk_ev_set_state(ev, ST_TURN);
  ev->resumed = 1;
  log_ctx c = wk_ev_ctx(ev);
  log_info(&c, "event was started before; resuming its run");
  /* Its earlier tool rounds (if any) belong in the response too. */
  if (ev->w->tools) wkt_prefetch(ev, ev_resume_run);
  else ev_resume_run(ev);
}

static void on_found_message(void *opaque, const be_result *res) {
  wk_event *ev = opaque;
  ev->op = NULL;
  log_ctx c = wk_ev_ctx(ev);
  if (res->err == AW_ENOTFOUND) {
    ev_run_turn(ev); /* the earlier attempt stopped before adding the message */
  } else if (res->err) {
    log_warn(&c, "cannot look the event's message up on the thread: %s", res->errmsg ? res->errmsg : "");
    wk_retry_later(ev);
  } else if (res->run_id && *res->run_id) {
    wk_copy_id(ev->msg_id, sizeof ev->msg_id, res->id);
    wk_copy_id(ev->run_id, sizeof ev->run_id, res->run_id);
    put_progress(ev);
    ev_resume(ev);
  } else {
    wk_copy_id(ev->msg_id, sizeof ev->msg_id, res->id);
    ev->use_existing_message = 1;
    log_info(&c, "event's message %s was added before; starting its run", ev->msg_id);
    ev_run_turn(ev);
  }
}

/* The thread is known: decide from the progress record what is left to do. */
static void ev_continue(wk_event *ev) {
  if (!ev->progress[0]) {
    ev_run_turn(ev); /* new to the API */
    return;
  }
  char *sp = strchr(ev->progress, ' ');
  if (sp && strncmp(sp + 1, "run_", 4) == 0) {
    *sp = '\0';
    wk_copy_id(ev->msg_id, sizeof ev->msg_id, ev->progress);
    wk_copy_id(ev->run_id, sizeof ev->run_id, sp + 1);
    ev_resume(ev);
    return;
  }
  /* Claimed, maybe with a message, but no run recorded: the thread says. */
  wk_ev_set_state(ev, ST_TURN);
  int rc = be_find_message(ev->w->be, ev->thread_id, "event_id", ev->event_id, on_found_message, ev, &ev->op);
  if (rc != AW_OK) {
    be_result r = {0};
    r.err = rc;
    r.errmsg = "could not start the lookup";
    on_found_message(ev, &r);
  }
}

/* ---- thread ------------------------------------------------------------- */

static void on_loser_deleted(void *opaque, const be_result *res) {
  (void)opaque;
  if (res->err) log_warn(NULL, "could not delete an unused thread: %s", res->errmsg ? res->errmsg : "");
}

static void on_thread_claimed(void *opaque, int err, const char *winner) {
  wk_event *ev = opaque;
  if (err) {
    /* Our thread is not recorded; the next attempt creates another one, and
     * this one is deleted so it does not linger. */
    ev->w->st.redis_errors++;
    be_op *op = NULL;
    if (be_conversation_delete(ev->w->be, ev->created_thread, on_loser_deleted, NULL, &op) != AW_OK)
      log_warn(NULL, "could not delete an unused thread");
    ev->created_thread[0] = '\0';
    wk_retry_later(ev);
    return;
  }
  if (winner && *winner && strcmp(winner, ev->created_thread) != 0) {
    log_ctx c = wk_ev_ctx(ev);
    log_info(&c, "another worker created the conversation's thread first; using %s, deleting %s", winner,
             ev->created_thread);
    be_op *op = NULL;
    if (be_conversation_delete(ev->w->be, ev->created_thread, on_loser_deleted, NULL, &op) != AW_OK)
      log_warn(&c, "could not delete the unused thread %s", ev->created_thread);
    wk_copy_id(ev->thread_id, sizeof ev->thread_id, winner);
  } else {
    wk_copy_id(ev->thread_id, sizeof ev->thread_id, ev->created_thread);
  }
  ev->created_thread[0] = '\0';
  ev_run_turn(ev);
}

static void on_thread_created(void *opaque, const be_result *res) {
  wk_event *ev = opaque;
  ev->op = NULL;
  if (res->err) {
    be_turn_result tr = {0};
    tr.err = res->err;
    tr.error_code = res->error_code;
    tr.errmsg = res->errmsg;
    tr.http_status = res->http_status;
    wk_turn_done(ev, &tr);
    return;
  }
  wk_copy_id(ev->created_thread, sizeof ev->created_thread, res->id);
  if (tmap_claim_thread(&ev->w->map, ev->conv_id, ev->created_thread, on_thread_claimed, ev) != AW_OK)
    on_thread_claimed(ev, AW_EREDIS, NULL);
}

static void ev_create_thread(wk_event *ev) {
  wk_ev_set_state(ev, ST_THREAD);
  contract_kv md[1] = {{"conversation_id", ev->conv_id}};
  int rc = be_conversation_create(ev->w->be, md, 1, on_thread_created, ev, &ev->op);
  if (rc != AW_OK) {
    be_result r = {0};
    r.err = rc;
    r.errmsg = "could not create a thread";
    on_thread_created(ev, &r);
  }
}

/* ---- lookup ------------------------------------------------------------- */

static void lookup_done(wk_event *ev) {
  if (ev->dup) {
    ev->w->st.skipped_duplicates++;
    log_ctx c = wk_ev_ctx(ev);
    log_info(&c, "event already answered; skipped");
    ev_finish(ev);
  } else if (ev->reject_code) {
    ev_publish_rejection(ev);
  } else if (ev->thread_id[0]) {
    ev_continue(ev);
  } else {
    ev_create_thread(ev);
  }
}

/* Both lookups were sent together (one pipelined round trip); decide when
 * the last reply is in. */
static void on_lookup(wk_event *ev, int err) {
  if (err) ev->lookup_failed = 1;
  if (--ev->pending_lookups > 0) return;
  if (ev->lookup_failed) {
    ev->w->st.redis_errors++;
    wk_retry_later(ev);
    return;
  }
  lookup_done(ev);
}

static void on_outcome(void *opaque, int err, const char *value) {
  wk_event *ev = opaque;
  if (!err && value && *value) ev->dup = 1;
  on_lookup(ev, err);
}

static void on_progress(void *opaque, int err, const char *value) {
  wk_event *ev = opaque;
  if (!err) wk_copy_id(ev->progress, sizeof ev->progress, value ? value : "");
  on_lookup(ev, err);
}

static void on_thread(void *opaque, int err, const char *value) {
  wk_event *ev = opaque;
  if (!err && value) wk_copy_id(ev->thread_id, sizeof ev->thread_id, value);
  on_lookup(ev, err);
}

/* ---- start -------------------------------------------------------------- */

static void ev_start(wk_event *ev) {
  wk *w = ev->w;
  if (ev->abandoned) {
    ev_finish(ev); /* behind an abandoned event of its conversation */
    return;
  }
  if (ev_stale(ev)) {
    /* The partition was revoked before this event started: its new owner
     * reads it again from the committed offset. */
    log_ctx c = wk_ev_ctx(ev);
    log_debug(&c, "partition revoked; event left to its new owner");
    ev_finish(ev);
    return;
  }
  if (!ev->conv_id[0] || !ev->event_id[0]) {
    ev_publish_rejection(ev); /* nothing to look up without both ids */
    return;
  }
  wk_ev_set_state(ev, ST_LOOKUP);
  int need_thread = !ev->reject_code && !ev->thread_id[0];
  int need_claim = !ev->reject_code;
  ev->pending_lookups = 1 + need_thread + need_claim;
  ev->lookup_failed = 0;
  if (tmap_get_outcome(&w->map, ev->conv_id, ev->event_id, on_outcome, ev) != AW_OK) {
    w->st.redis_errors++;
    wk_retry_later(ev);
    return;
  }
  if (need_thread && tmap_get_thread(&w->map, ev->conv_id, on_thread, ev) != AW_OK) {
    ev->lookup_failed = 1; /* decided when the outcome reply arrives */
    ev->pending_lookups--;
  }
  if (need_claim && tmap_claim_progress(&w->map, ev->conv_id, ev->event_id, on_progress, ev) != AW_OK) {
    ev->lookup_failed = 1;
    ev->pending_lookups--;
  }
}

/* ---- consumption --------------------------------------------------------- */

static int reject(wk_event *ev, const char *code, const char *fmt, const char *detail,
                  const rd_kafka_message_t *m) {
  ev->reject_code = code;
  size_t n = strlen(fmt) + (detail ? strlen(detail) : 0) + 1;
  ev->reject_msg = malloc(n);
  if (ev->reject_msg) snprintf(ev->reject_msg, n, fmt, detail ? detail : "");
  if (m->len) {
    ev->orig = malloc(m->len);
    if (!ev->orig) return AW_ENOMEM;
    memcpy(ev->orig, m->payload, m->len);
    ev->orig_len = m->len;
  }
  if (m->key_len) {
    ev->orig_key = malloc(m->key_len);
    if (!ev->orig_key) return AW_ENOMEM;
    memcpy(ev->orig_key, m->key, m->key_len);
    ev->orig_key_len = m->key_len;
  }
  return AW_OK;
}

/* Checks beyond the contract's syntax: what this worker can serve. */
static void validate(wk *w, wk_event *ev, const rd_kafka_message_t *m) {
  contract_request *q = ev->req;
  for (size_t i = 0; i < q->nparts; i++) {
    if (q->parts[i].type != CONTRACT_PART_TEXT) {
      (void)reject(ev, "unsupported_content", "content part %s is not supported yet (text only)",
                   q->parts[i].type == CONTRACT_PART_IMAGE_URL    ? "image_url"
                   : q->parts[i].type == CONTRACT_PART_IMAGE_FILE ? "image_file"
                                                                  : "file",
                   m);
      return;
    }
  }
  if (q->nmetadata > MAX_USER_METADATA) {
    (void)reject(ev, "invalid_field", "metadata has more than 14 pairs (2 are reserved)%s", "", m);
    return;
  }
  if (strncmp(q->assistant, "asst_", 5) == 0) {
    ev->assistant_id = q->assistant;
    return;
  }
  ev->assistant_id = w->cfg.resolve_assistant ? w->cfg.resolve_assistant(w->cfg.resolve_opaque, q->assistant) : NULL;
  if (!ev->assistant_id)
    (void)reject(ev, "unknown_assistant", "no assistant named '%s' is configured", q->assistant, m);
}

static void on_message(void *opaque, rd_kafka_message_t *m) {
  wk *w = opaque;
  if (m->err) {
    w->st.kafka_errors++;
    log_warn(NULL, "consumer error: %s", rd_kafka_message_errstr(m));
    rd_kafka_message_destroy(m);
    return;
  }
  wk_part *p = part_get(w, m->partition);
  wk_event *ev = calloc(1, sizeof *ev);
  if (!p || !ev || otrk_add(&p->t, m->offset) != AW_OK) {
    /* Not tracked, so never committed: it is read again after a restart. */
    log_error(NULL, "cannot track offset %lld of partition %d", (long long)m->offset, (int)m->partition);
    free(ev);
    rd_kafka_message_destroy(m);
    return;
  }
  if (otrk_skip_has(&p->skip, m->offset)) {
    /* Answered in a committed transaction beyond the committed offset
     * (commit metadata): done already, never answered twice. */
    if (otrk_done(&p->t, m->offset) != AW_OK) log_warn(NULL, "skipped offset was not tracked");
    w->txn_dirty = 1;
    w->st.consumed++;
    w->st.skipped_duplicates++;
    if (log_enabled(LOG_DEBUG))
      log_debug(NULL, "offset %lld of partition %d was answered before (commit metadata); skipped",
                (long long)m->offset, (int)m->partition);
    free(ev);
    rd_kafka_message_destroy(m);
    return;
  }
  w->st.consumed++;
  w->st.in_flight++;
  p->running++;
  ev->w = w;
  ev->partition = m->partition;
  ev->offset = m->offset;
  ev->gen = p->gen;
  ev->received_ms = wk_now_ms();
  buf_init(&ev->out, RESPONSE_MAX_BYTES);
  buf_init(&ev->delta, DELTA_MAX_BYTES);

  const char *code = NULL;
  char errstr[256];
  int rc = contract_request_decode(m->payload, m->len, &w->cfg.limits, &ev->req, &code,
                                   ev->event_id, sizeof ev->event_id, ev->conv_id,
                                   sizeof ev->conv_id, errstr, sizeof errstr);
  if (rc != AW_OK) {
    ev->req = NULL;
    if (reject(ev, code ? code : "malformed_event", "%s", errstr, m) != AW_OK)
      log_error(NULL, "out of memory keeping a rejected event");
  } else {
    wk_copy_id(ev->event_id, sizeof ev->event_id, ev->req->event_id);
    wk_copy_id(ev->conv_id, sizeof ev->conv_id, ev->req->conversation_id);
    validate(w, ev, m);
  }
  rd_kafka_message_destroy(m);

  int32_t part = ev->partition;
  if (!ev->conv_id[0] || conv_enqueue(w, ev) != AW_OK)
    make_ready(ev); /* no conversation to order against: answer it right away */
  check_partition(w, part);
  check_pressure(w);
}

static void log_parts(const char *what, const char *topic, const rd_kafka_topic_partition_list_t *parts) {
  char list[1024], n[16];
  size_t k = 0;
  list[0] = '\0';
  for (int i = 0; i < parts->cnt && k + 12 < sizeof list; i++)
    k += (size_t)snprintf(list + k, sizeof list - k, "%s%d", i ? "," : "", (int)parts->elems[i].partition);
  snprintf(n, sizeof n, "%d", parts->cnt);
  const char *kv[] = {"count", n, "topic", topic, "partitions", list};
  log_writekv(LOG_INFO, NULL, what, kv, 3);
}

static void on_assign(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
  wk *w = opaque;
  for (int i = 0; i < parts->cnt; i++) {
    wk_part *p = part_get(w, parts->elems[i].partition);
    if (!p) continue;
    otrk_free(&p->t);
    otrk_skip_free(&p->skip);
    p->gen++;
    p->assigned = 1;
    p->running = 0;
    p->paused = 0;
    p->committed_at_assign = -1;
  }
  /* The offsets answered beyond each committed offset, from the commit
   * metadata (blocking, once per assignment). */
  rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_copy(parts);
  rd_kafka_resp_err_t err = c ? rd_kafka_committed(kc_handle(w->consumer), c, 10000) : RD_KAFKA_RESP_ERR__NO_OFFSET;
  if (err) {
    log_warn(NULL, "cannot read the committed offsets' metadata (%s); the Redis outcome records still skip answered events",
             rd_kafka_err2str(err));
  } else {
    for (int i = 0; i < c->cnt; i++) {
      rd_kafka_topic_partition_t *e = &c->elems[i];
      wk_part *p = part_get(w, e->partition);
      if (p && e->offset >= 0) p->committed_at_assign = e->offset; /* for wk_lag */
      if (!p || e->offset < 0 || !e->metadata_size) continue;
      if (otrk_skip_parse(&p->skip, e->offset, e->metadata, e->metadata_size) != AW_OK)
        log_warn(NULL, "partition %d: unreadable commit metadata ignored", (int)e->partition);
    }
  }
  if (c) rd_kafka_topic_partition_list_destroy(c);
  log_parts("partitions assigned", w->cfg.topic_requests, parts);
}

static void on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
  wk *w = opaque;
  commit_progress(w, 1);
  for (int i = 0; i < parts->cnt; i++) {
    int32_t n = parts->elems[i].partition;
    if (n < 0 || n >= w->nparts) continue;
    wk_part *p = &w->parts[n];
    p->assigned = 0;
    p->gen++;
    p->running = 0;
    p->paused = 0;
    otrk_free(&p->t);
    otrk_skip_free(&p->skip);
  }
  log_parts("partitions revoked", w->cfg.topic_requests, parts);
}

/* ---- lifecycle ------------------------------------------------------------ */

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
  tmap_init(&w->map, redis, cfg->redis_prefix);
  if (w->cfg.txn_interval_ms < 0) w->cfg.txn_interval_ms = 0;
  int rc = kp_new(loop, producer_conf, on_dr, w, &w->producer, errstr, errstr_size);
  if (rc) {
    if (reply_conf) rd_kafka_conf_destroy(reply_conf);
    if (txn_conf) rd_kafka_conf_destroy(txn_conf);
    free(w);
    return rc;
  }
  if (txn_conf) {
    rc = ktx_new(loop, txn_conf, on_txn_dr, on_txn_done, w, &w->txp, errstr, errstr_size);
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
  kc_handlers h = {on_message, on_assign, on_revoke};
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
  uv_idle_init(loop, &w->ready_idle);
  uv_timer_init(loop, &w->retry_timer);
  uv_timer_init(loop, &w->delta_timer);
  uv_timer_init(loop, &w->commit_timer);
  uv_timer_init(loop, &w->grace_timer);
  w->ready_idle.data = w->retry_timer.data = w->delta_timer.data = w->commit_timer.data =
      w->grace_timer.data = w;
  /* Transactions commit as often as txn_interval_ms allows: a response is
   * visible to read_committed consumers only after its commit. */
  uint64_t tick = w->txp ? (uint64_t)(w->cfg.txn_interval_ms > 5 ? w->cfg.txn_interval_ms : 5)
                         : (uint64_t)w->cfg.commit_interval_ms;
  uv_timer_start(&w->commit_timer, on_commit_timer, tick, tick);
  if (w->txp) log_info(NULL, "answers are exactly-once: responses commit with their offsets in Kafka transactions");
  *out = w;
  return AW_OK;
}

static void on_grace(uv_timer_t *t) {
  wk *w = t->data;
  log_warn(NULL, "shutdown grace period over with %ld events in flight; their offsets stay uncommitted",
           w->st.in_flight);
  w->st.in_flight = 0; /* abandon: they are read again by the next owner */
  maybe_stopped(w);
}

static void maybe_stopped(wk *w) {
  if (!w->stopping || w->st.in_flight > 0 || !w->stop_done) return;
  void (*done)(void *) = w->stop_done;
  w->stop_done = NULL;
  commit_progress(w, 1);
  uv_timer_stop(&w->grace_timer);
  uv_timer_stop(&w->commit_timer);
  done(w->stop_opaque);
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
  maybe_stopped(w);
}

void wk_get_stats(const wk *w, wk_stats *out) {
  *out = w->st;
  wkt_stats(w, out);
}

int wk_lag(const wk *w, wk_lag_fn cb, void *opaque) {
  if (!w || !w->consumer || !cb) return 0;
  rd_kafka_t *rk = kc_handle(w->consumer);
  int n = 0;
  for (int32_t i = 0; i < w->nparts; i++) {
    const wk_part *p = &w->parts[i];
    int64_t lo = RD_KAFKA_OFFSET_INVALID, hi = RD_KAFKA_OFFSET_INVALID;
    if (!p->assigned ||
        rd_kafka_get_watermark_offsets(rk, w->cfg.topic_requests, i, &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        hi < 0)
      continue;
    int64_t base = otrk_commit_point(&p->t);
    if (base < 0) base = p->committed_at_assign;
    /* No commit yet: consumption starts at the low watermark (the consumer
     * is configured auto.offset.reset=earliest); an empty partition has no lag. */
    if (base < 0) base = lo >= 0 ? lo : hi == 0 ? 0 : -1;
    if (base < 0) continue;
    cb(opaque, i, hi > base ? hi - base : 0);
    n++;
  }
  return n;
}

static void on_handle_closed(uv_handle_t *h) {
  wk *w = h->data;
  if (--w->handles_open == 0) free(w);
}

void wk_free(wk *w) {
  if (!w) return;
  w->freeing = 1;
  /* Events abandoned at the end of the grace period. */
  wk_conv *c, *tmp;
  HASH_ITER(hh, w->convs, c, tmp) {
    wk_event *ev = c->head;
    while (ev) {
      wk_event *next = ev->next;
      be_op_cancel(ev->op);
      ev_free(ev);
      ev = next;
    }
    HASH_DEL(w->convs, c);
    free(c->id);
    free(c);
  }
  kc_close(w->consumer);
  kp_flush(w->producer, 5000);
  wkt_free(w); /* after the flush: dead letters of tool replies report to it */
  ktx_free(w->txp); /* aborts an open transaction: its events were not answered */
  kp_free(w->producer);
  for (int i = 0; i < w->nparts; i++) {
    otrk_free(&w->parts[i].t);
    otrk_skip_free(&w->parts[i].skip);
  }
  free(w->parts);
  w->handles_open = 5;
  uv_close((uv_handle_t *)&w->ready_idle, on_handle_closed);
  uv_close((uv_handle_t *)&w->retry_timer, on_handle_closed);
  uv_close((uv_handle_t *)&w->delta_timer, on_handle_closed);
  uv_close((uv_handle_t *)&w->commit_timer, on_handle_closed);
  uv_close((uv_handle_t *)&w->grace_timer, on_handle_closed);
}

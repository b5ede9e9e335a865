/* outbox.c -- what the worker produces and when offsets may be committed
 * (prefix wko_): every produce goes through here with a delivery-report tag,
 * and the reports come back here; an event's outcome (response, DLQ record)
 * is produced either into the open Kafka transaction (exactly-once) or on
 * the idempotent producer (at-least-once), and the consumed offsets are
 * committed with it or after it.
 *
 * Cut here because "nothing lost, nothing doubled" lives in this file
 * alone: the transaction's open/closing/commit/abort cycle, the owed events
 * that hold a commit back, and the at-least-once commit timer.  The event
 * machine only says "publish this" (wko_publish) and hears back through
 * wk_ev_record / wk_ev_finish.
 */
#include "outbox.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conv_sched.h"
#include "event.h"
#include "intake.h"
#include "worker_tools.h"

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

void wko_unowe(wk_event *ev) {
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
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(w->parts.n > 0 ? w->parts.n : 1);
  if (!l) return NULL;
  for (int i = 0; i < w->parts.n; i++) {
    ptab_part *p = &w->parts.v[i];
    int64_t cp = otrk_commit_point(&p->t);
    if (!p->assigned || cp < 0) continue;
    char md[OTRK_META_MAX_BYTES + 1];
    int rc = otrk_metadata(&p->t, md, sizeof md);
    if (rc != AW_OK) {
      /* Held back before this can happen (wki_check_partition); if it does,
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
    wko_publish(ev);
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
  if (!wki_stale(ev) && !ev->offset_done) {
    if (otrk_done(&w->parts.v[ev->partition].t, ev->offset) != AW_OK) {
      log_ctx c = wk_ev_ctx(ev);
      log_warn(&c, "offset %lld of partition %d was not tracked", (long long)ev->offset, (int)ev->partition);
    }
    ev->offset_done = 1;
    w->txn_dirty = 1;
  }
  wko_unowe(ev);
  ev->txn_seq = ktx_seq(w->txp);
  ev->txn_where = 2;
  ev->txn_next = w->txn_head;
  w->txn_head = ev;
  if (w->txn_closing) txn_commit(w, 0);
}

void wko_on_txn_done(void *opaque, uint64_t seq, int committed, const char *errstr) {
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
      wk_ev_record(ev);
    } else if (wki_stale(ev) || w->freeing) {
      wk_ev_finish(ev); /* its partition moved: the new owner answers it */
    } else {
      owe(ev);
      ev->send_response = 1;
      ev->send_dlq = ev->reject_code != NULL;
      wk_ev_set_state(ev, ST_PUBLISHING);
      wko_publish(ev);
    }
  }
  txn_flush_wait(w);
  if (ktx_fatal(w->txp)) {
    log_error(NULL, "kafka transactions are fenced or broken: stopping (in-flight events are left to the next owner)");
    if (w->cfg.on_fatal) w->cfg.on_fatal(w->cfg.fatal_opaque);
  }
}

void wko_on_txn_dr(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err) {
  wk *w = opaque;
  wko_on_dr(w, msg_opaque, err);
  if (w->txn_closing && !w->freeing) txn_commit(w, 0);
}

/* ---- commits ------------------------------------------------------------- */

void wko_commit(wk *w, int sync) {
  if (w->txp) {
    txn_commit(w, sync);
    return;
  }
  if (ptab_commit(&w->parts, w->consumer, w->cfg.topic_requests, sync) != AW_OK) w->st.kafka_errors++;
}

static void on_commit_timer(uv_timer_t *t) { wko_commit(t->data, 0); }

void wko_start(wk *w) {
  /* Transactions commit as often as txn_interval_ms allows: a response is
   * visible to read_committed consumers only after its commit. */
  uint64_t tick = w->txp ? (uint64_t)(w->cfg.txn_interval_ms > 5 ? w->cfg.txn_interval_ms : 5)
                         : (uint64_t)w->cfg.commit_interval_ms;
  uv_timer_start(&w->commit_timer, on_commit_timer, tick, tick);
}

/* ---- producing ----------------------------------------------------------- */

int wko_produce(wk_event *ev, const char *topic, int kind, const void *key, size_t keylen,
               const void *val, size_t len, const char *const *headers, size_t nheaders) {
  int rc = kp_produce_hdr(ev->w->producer, topic, key, keylen, val, len, headers, nheaders,
                          (void *)((uintptr_t)ev | (uintptr_t)kind));
  if (rc == AW_OK) ev->pending_dr++;
  return rc;
}

/* All delivery reports are in.  At-least-once: the outcome is durable now.
 * Exactly-once: it is in the open transaction, durable once that commits. */
static void ev_delivered(wk_event *ev) {
  if (ev->w->txp) txn_enter(ev);
  else wk_ev_record(ev);
}

void wko_on_dr(void *cb_opaque, void *msg_opaque, rd_kafka_resp_err_t err) {
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
      if (ev->pending_dr == 0) wks_retry_later(ev);
      return;
    }
  }
  if (ev->pending_dr > 0 || ev->state != ST_PUBLISHING) return;
  if (ev->await_deltas) {
    ev->await_deltas = 0;
    wko_publish(ev);
  } else if (ev->send_response || ev->send_dlq) {
    wks_retry_later(ev); /* a failure earlier */
  } else {
    ev_delivered(ev);
  }
}

/* The outcome's messages (response, DLQ record): into the open transaction
 * when answers are exactly-once, else on the idempotent producer. */
static int produce_outcome(wk_event *ev, const char *topic, int kind, const void *key, size_t keylen,
                           const void *val, size_t len) {
  wk *w = ev->w;
  if (!w->txp) return wko_produce(ev, topic, kind, key, keylen, val, len, NULL, 0);
  int rc = ktx_produce(w->txp, topic, key, keylen, val, len, (void *)((uintptr_t)ev | (uintptr_t)kind));
  if (rc == AW_OK) {
    ev->pending_dr++;
    owe(ev);
  }
  return rc;
}

void wko_publish(wk_event *ev) {
  wk *w = ev->w;
  int rc = AW_OK;
  if (w->txp) {
    if (wki_stale(ev)) {
      /* Revoked before its answer went out: the new owner answers it.  (An
       * owed one's partial messages were in the transaction the revoke
       * aborted.) */
      wk_ev_finish(ev);
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
    if (ev->pending_dr == 0) wks_retry_later(ev);
  }
}

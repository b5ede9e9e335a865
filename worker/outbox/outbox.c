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
#include "degrade.h"
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
  /* Starting or broken: nothing was produced, nothing can be committed
   * (and waiting for init_transactions would block the loop). */
  if (sync && !ktx_open(w->txp) && !ktx_committing(w->txp)) return;
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
    /* Blocks: only on shutdown, and on a revocation that was not held
     * (the transactions were not ready); a held one committed on the
     * transaction thread (revoke_gate). */
    int frc = ktx_flush(w->txp, 10000);
    if (frc != AW_OK) {
      if (frc == AW_ETIMEDOUT)
        log_warn(NULL, "kafka transaction: delivery reports still due after 10 s; its offsets stay uncommitted "
                       "(the next owner answers those events)");
      else
        log_info(NULL, "kafka transaction not open; offsets left to the next owner");
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
  /* A held revocation goes on once a commit that began after it ended:
   * its partitions' finished events are committed (or, aborted, left to
   * the next owner), before anything is produced into the next transaction,
   * so that the aborted events of those partitions finish as stale below
   * instead of entering a transaction without their offsets. */
  if (w->revoke_waiting && seq >= w->revoke_after_seq) {
    w->revoke_waiting = 0;
    log_debug(NULL, "kafka transaction %llu %s; the held revocation goes on", (unsigned long long)seq,
              committed ? "committed" : "aborted");
    kc_revoke_release(w->consumer);
  }
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
  if (w->revoke_waiting && !ktx_fatal(w->txp)) {
    /* This commit began before the revocation: close the next one now. */
    w->txn_closing = 1;
    w->txn_dirty = 1;
    txn_commit(w, 0);
  }
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
  int revoking = w->consumer ? kc_revoking(w->consumer) : 0;
  /* A held revocation's commit is done (revoke_gate); lost partitions
   * cannot be committed any more (the group moved on). */
  if (revoking == KC_REVOKE_HELD || revoking == KC_REVOKE_LOST) return;
  if (w->txp) {
    txn_commit(w, sync);
    return;
  }
  /* At-least-once: a revocation commits asynchronously, never blocking the
   * loop; librdkafka completes the unassign (and so the rebalance) only
   * once the commits it has outstanding are answered. */
  if (revoking) sync = 0;
  if (ptab_commit(&w->parts, w->consumer, w->cfg.topic_requests, sync) != AW_OK) w->st.kafka_errors++;
}

/* kc's revocation gate (exactly-once): hold the revocation until a commit
 * that began after it has ended, so that everything finished on the revoked
 * partitions is committed with its offsets before they go, without the loop
 * waiting for the transaction coordinator.  Not held while the transactions
 * are starting or broken: nothing can be committed then. */
static int revoke_gate(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
  wk *w = opaque;
  (void)parts;
  if (!w->txp || w->freeing || ktx_fatal(w->txp)) return 0;
  int committing = ktx_committing(w->txp);
  if (!ktx_open(w->txp) && !committing) return 0;
  w->revoke_waiting = 1;
  w->revoke_after_seq = ktx_seq(w->txp) + (committing ? 1 : 0);
  if (!committing) {
    /* Close the open transaction now: the commit interval does not apply. */
    w->txn_closing = 1;
    w->txn_dirty = 1;
    txn_commit(w, 0);
  }
  return 1;
}

static void on_commit_timer(uv_timer_t *t) { wko_commit(t->data, 0); }

void wko_start(wk *w) {
  /* Transactions commit as often as txn_interval_ms allows: a response is
   * visible to read_committed consumers only after its commit. */
  uint64_t tick = w->txp ? (uint64_t)(w->cfg.txn_interval_ms > 5 ? w->cfg.txn_interval_ms : 5)
                         : (uint64_t)w->cfg.commit_interval_ms;
  uv_timer_start(&w->commit_timer, on_commit_timer, tick, tick);
  if (w->txp) kc_set_revoke_gate(w->consumer, revoke_gate, w);
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

/* ---- outcomes that do not fit ----------------------------------------------
 *
 * A response or DLQ record refused for good (kp_err_permanent: too large
 * for the producer's message.max.bytes or the topic's max.message.bytes,
 * invalid, not authorised) is never produced again as it is: that would
 * retry forever and, in a transaction, hold back every other event.  Each
 * refusal moves the record one step down: whole -> degraded (degrade.h: a
 * `failed` response_too_large response; a dead letter with the original's
 * size, SHA-256 and leading bytes) -> given up (logged at error level with
 * the event's ids, counted in kafka_errors; the offset is still committed,
 * so the event does not come back).  A refusal that is not about size
 * gives up at once: a smaller record would be refused the same way. */

/* A degraded record is kept this small, so that it fits a topic whose
 * max.message.bytes is smaller than the producer's message.max.bytes. */
#define DEGRADED_MAX_BYTES (16 * 1024)

static size_t record_limit(const wk *w) {
  return w->txp ? ktx_max_message_bytes(w->txp) : kp_max_message_bytes(w->producer);
}

/* The value bytes a record of this key may have at shrink level lvl. */
static size_t value_limit(const wk *w, size_t keylen, int lvl) {
  size_t lim = record_limit(w);
  if (lvl > 0 && lim > DEGRADED_MAX_BYTES) lim = DEGRADED_MAX_BYTES;
  size_t over = kp_record_size(keylen, 0, 0);
  return lim > over ? lim - over : 0;
}

/* ev->out becomes the `failed` response_too_large response. */
static int degrade_response(wk_event *ev) {
  wk *w = ev->w;
  int assistants = ev->h_kind && strcmp(ev->h_kind, "assistants") == 0;
  contract_response r = {0};
  r.event_id = ev->event_id;
  r.conversation_id = ev->conv_id;
  r.thread_id = assistants && ev->h_conv[0] ? ev->h_conv : NULL;
  r.run_id = assistants && ev->h_turn[0] ? ev->h_turn : NULL;
  r.backend_kind = ev->h_kind;
  r.backend_conversation = ev->h_kind && ev->h_conv[0] ? ev->h_conv : NULL;
  r.backend_turn = ev->h_kind && ev->h_turn[0] ? ev->h_turn : NULL;
  r.timings.received_ms = ev->received_ms;
  r.timings.run_started_ms = ev->run_started_ms;
  r.timings.completed_ms = wk_now_ms();
  size_t was = ev->out.len;
  buf_reset(&ev->out);
  int rc = odg_response_too_large(&r, was, record_limit(w), &ev->out);
  if (rc == AW_OK) wk_copy_id(ev->status, sizeof ev->status, "failed");
  return rc;
}

/* The record of this kind was refused for good (too_big: for its size):
 * the next attempt produces a smaller one, or none. */
static void refused(wk_event *ev, int kind, int too_big, const char *why) {
  uint8_t *lvl = kind == DR_RESPONSE ? &ev->shrink_response : &ev->shrink_dlq;
  const char *what = kind == DR_RESPONSE ? "response" : "dead letter";
  *lvl = too_big && *lvl < 2 ? (uint8_t)(*lvl + 1) : 2;
  if (kind == DR_RESPONSE && *lvl == 1 && degrade_response(ev) != AW_OK) *lvl = 2;
  log_ctx c = wk_ev_ctx(ev);
  if (*lvl == 1) {
    ev->w->st.kafka_errors++;
    log_warn(&c, "%s refused for good (%s): producing a degraded one in its place", what, why);
    return;
  }
  ev->w->st.kafka_errors++;
  log_error(&c, "%s refused for good (%s), degraded or not: given up; the event is committed without it", what,
            why);
  if (kind == DR_RESPONSE) ev->send_response = 0;
  else ev->send_dlq = 0;
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
    if (kind != DR_DELTA && kp_err_permanent(err)) refused(ev, kind, kp_err_too_big(err), rd_kafka_err2str(err));
    /* A response or DLQ record that is not durable is produced again; the
     * offset stays uncommitted meanwhile.  A lost delta only breaks the
     * concatenation of this event's deltas; the response has the text. */
    if (w->txp && kind != DR_DELTA) {
      /* The transaction holding it will abort; the abort produces the
       * event's messages again in the next one. */
    } else if (kind != DR_DELTA) {
      if (kind == DR_RESPONSE && ev->shrink_response < 2) ev->send_response = 1;
      if (kind == DR_DLQ && ev->shrink_dlq < 2) ev->send_dlq = 1;
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
  if (ev->shrink_response >= 2) ev->send_response = 0;
  if (ev->shrink_dlq >= 2) ev->send_dlq = 0;
  while (ev->send_response) {
    rc = produce_outcome(ev, w->cfg.topic_responses, DR_RESPONSE, ev->conv_id, strlen(ev->conv_id),
                         ev->out.data, ev->out.len);
    if (rc == AW_OK) ev->send_response = 0;
    if (rc != AW_ETOOBIG && rc != AW_EINVAL) break;
    /* Refused before anything was queued: the transaction is unharmed. */
    refused(ev, DR_RESPONSE, rc == AW_ETOOBIG, rc == AW_ETOOBIG ? "larger than message.max.bytes" : "invalid");
    rc = AW_OK;
  }
  while (rc == AW_OK && ev->send_dlq) {
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
    size_t lim = value_limit(w, ev->orig_key_len, ev->shrink_dlq);
    buf_init(&dl, lim);
    int degraded = 0;
    /* Checked against the limit before producing, so that a dead letter
     * that would not fit is produced degraded rather than refused. */
    rc = odg_dlq_encode_within(&d, lim, &dl, &degraded);
    if (rc == AW_OK) {
      if (degraded && ev->shrink_dlq == 0) {
        ev->shrink_dlq = 1;
        log_ctx c = wk_ev_ctx(ev);
        log_warn(&c, "dead letter of %zu original bytes exceeds the %zu-byte record limit: degraded (size, sha256, "
                     "leading bytes)", ev->orig_len, record_limit(w));
      }
      rc = produce_outcome(ev, w->cfg.topic_dlq, DR_DLQ, ev->orig_key, ev->orig_key_len, dl.data, dl.len);
    }
    buf_free(&dl);
    if (rc == AW_OK) {
      ev->send_dlq = 0;
      w->st.dlq++;
    }
    if (rc != AW_ETOOBIG && rc != AW_EINVAL) break;
    refused(ev, DR_DLQ, rc == AW_ETOOBIG, rc == AW_ETOOBIG ? "larger than message.max.bytes" : "invalid");
    rc = AW_OK;
  }
  if (rc == AW_OK && ev->pending_dr == 0 && ev->state == ST_PUBLISHING && !ev->send_response && !ev->send_dlq) {
    /* Nothing left to produce and nothing produced: every record was given
     * up.  The event is done (its offset commits; nothing would change on
     * a retry). */
    ev_delivered(ev);
    return;
  }
  if (rc != AW_OK) {
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "produce failed (%s); will retry", aw_strerror(rc));
    w->st.produce_retries++;
    if (ev->pending_dr == 0) wks_retry_later(ev);
  }
}

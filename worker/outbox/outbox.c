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

#include "contract_usage.h"
#include "conv_sched.h"
#include "degrade.h"
#include "event.h"
#include "intake.h"
#include "usage.h"
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

/* Does the event's outcome include a usage record (produced again after
 * an abort, like its response)? */
static int usage_owed(const wk_event *ev) {
  return ev->w->cfg.topic_usage && ev->usage.due && !ev->usage.given_up;
}

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
  /* Called when the event is in the transaction or finished: its records
   * were reported (or it is gone), so nothing of it is produced alone any
   * more.  Those held back try again on the next tick at the latest. */
  if (w->alone == ev) w->alone = NULL;
  if (!ev->owed) return;
  ev->owed = 0;
  w->txn_owed--;
  if (ev->owed_prev) ev->owed_prev->owed_next = ev->owed_next;
  else w->owed_head = ev->owed_next;
  if (ev->owed_next) ev->owed_next->owed_prev = ev->owed_prev;
  ev->owed_prev = ev->owed_next = NULL;
}

/* The wait list: answers waiting for the transaction to open or to stop
 * closing, and (both modes) answers held back while records are produced
 * alone (alone_gate). */
static void txn_wait_add(wk_event *ev) {
  wk *w = ev->w;
  if (ev->txn_where) return;
  ev->txn_where = 1;
  if (ev->suspect) w->suspects_waiting++;
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
  w->suspects_waiting = 0; /* counted again as they wait again */
  while (wait) {
    wk_event *ev = wait;
    wait = ev->txn_next;
    ev->txn_where = 0;
    ev->txn_next = NULL;
    wko_publish(ev);
  }
}

static void final_step(wk *w);
static void final_end(wk *w, const char *how);

/* Does the open transaction hold records of an event whose partition was
 * lost (revoked with no commit: KC_REVOKE_LOST)?  Committing would publish
 * its answer without its offset, and the partition's new owner would
 * answer it again: such a transaction aborts instead (its other events are
 * produced again; the stale ones finish, left to the new owner).  A held or
 * immediate revocation commits before its partitions go, so only a loss
 * leaves any.  O(events in the transaction), once per commit. */
static int txn_holds_stale(wk *w) {
  for (wk_event *ev = w->txn_head; ev; ev = ev->txn_next)
    if (wki_stale(ev)) return 1;
  for (wk_event *ev = w->owed_head; ev; ev = ev->owed_next)
    if (wki_stale(ev)) return 1;
  return 0;
}

static void txn_commit(wk *w, int sync) {
  if (w->final_commit && !sync) {
    final_step(w); /* shutting down: the last commit decides (wko_commit_final) */
    return;
  }
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
    /* Blocks: only for a revocation that was not held, which with the
     * transactions open happens only in wk_free (kc_close), after the loop
     * stopped; a held one commits on the transaction thread (revoke_gate),
     * and so does the shutdown's last commit (wko_commit_final). */
    int frc = ktx_flush(w->txp, 10000);
    if (frc != AW_OK) {
      if (frc == AW_ETIMEDOUT)
        log_warn(NULL, "kafka transaction: delivery reports still due after 10 s; its offsets stay uncommitted "
                       "(the next owner answers those events)");
      else
        log_info(NULL, "kafka transaction not open; offsets left to the next owner");
      return;
    }
    /* Nothing changed since the last commit (wk_free after the last
     * commit): no round trip to the coordinator. */
    if (!ktx_produced(w->txp) && !w->txn_dirty && !w->txn_owed) return;
    /* An event still owed (part of its messages not produced) cannot be
     * committed: abort, and the events are produced again afterwards. */
    abort = w->txn_owed > 0 || txn_holds_stale(w);
  } else if (ktx_pending(w->txp) > 0 || (w->txn_owed > 0 && !ktx_doomed(w->txp))) {
    return; /* closing: the last report due calls again */
  } else {
    /* Doomed with events half in it: they are produced again after the
     * abort, like those of any aborted transaction. */
    abort = w->txn_owed > 0 || txn_holds_stale(w);
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

/* The open transaction failed (ktx_doomed): close it, so that it aborts as
 * soon as no report is due (the last report, or the commit timer's next
 * tick, commits; not from here, which runs inside publishing loops). */
static void close_doomed(wk *w) {
  w->txn_closing = 1;
  w->txn_dirty = 1;
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
      ev->send_usage = usage_owed(ev);
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
      wku_committed(ev); /* its usage record, if any, is durable with it */
      wk_ev_record(ev);
    } else if (wki_stale(ev) || w->freeing) {
      wk_ev_finish(ev); /* its partition moved: the new owner answers it */
    } else {
      owe(ev);
      ev->send_response = 1;
      ev->send_dlq = ev->reject_code != NULL;
      ev->send_usage = usage_owed(ev);
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
  if (w->final_commit == 2 && seq == w->final_seq)
    final_end(w, committed ? "committed" : "aborted (its events are left to the next owner)");
  else
    final_step(w); /* a commit that was running when the last one was asked for */
}

void wko_on_txn_dr(void *opaque, void *msg_opaque, rd_kafka_resp_err_t err) {
  wk *w = opaque;
  wko_on_dr(w, msg_opaque, err);
  if (w->txn_closing && !w->freeing) txn_commit(w, 0);
}

void wko_forget(wk *w) {
  /* The events are freed (wks_free_all): the lists that point at them go.
   * txn_owed stays, so that a commit made while freeing (kc_close's
   * revocation) still aborts a transaction holding half an answer. */
  w->txn_wait_head = w->txn_wait_tail = NULL;
  w->txn_head = NULL;
  w->owed_head = NULL;
  w->alone = NULL;
  w->suspects_waiting = 0;
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

/* ---- the last commit (wk_shutdown) ------------------------------------------
 *
 * What the shutdown used to do with the loop blocked (ktx_flush, then
 * ktx_commit_sync: up to 10 s for the reports due, then as long as the
 * coordinator takes, with librdkafka's 30 s timeouts and retries), done as
 * steps instead, each started by the callback that ends the wait before it:
 * a commit already running ends (wko_on_txn_done), the last delivery report
 * due arrives (wko_on_txn_dr), then the commit runs on ktx's thread and its
 * done callback ends the shutdown.  The loop meanwhile serves the ops
 * endpoint's heartbeat (a liveness probe keeps getting 200 through the
 * drain), Redis replies and the consumer.  Exactly-once is unchanged: the
 * same offsets and metadata commit with the same answers, or (an event
 * still owed) the transaction aborts and the next owner answers them; a
 * transaction is never committed twice, since every commit is ktx's one
 * job at a time and the last one is started only while none runs.
 * At-least-once the offsets commit asynchronously and their result ends
 * the shutdown (kc_commit_notify). */

#define FINAL_REPORTS_MS 10000 /* the longest wait for reports due, as before */

static void final_end(wk *w, const char *how) {
  if (w->final_commit == 3) return;
  w->final_commit = 3;
  uv_timer_stop(&w->grace_timer);
  log_info(NULL, "shutdown: last kafka commit %s", how);
  if (w->final_done) w->final_done(w);
}

static void on_final_timeout(uv_timer_t *t) {
  wk *w = t->data;
  if (!w->txp) {
    log_warn(NULL, "kafka offset commit: no answer from the broker after %d s", FINAL_REPORTS_MS / 1000);
    final_end(w, "not confirmed (the next owner may read those events again)");
    return;
  }
  /* A transaction commit running on ktx's thread (an earlier one, or the
   * last) ends by its done callback, bounded by librdkafka's own timeouts:
   * stopping the loop before would only move the wait into wk_free
   * (ktx_free joins the thread), with the ops endpoint already closed. */
  if (w->final_commit != 1 || ktx_committing(w->txp)) return;
  log_warn(NULL, "kafka transaction: delivery reports still due after %d s; its offsets stay uncommitted "
                 "(the next owner answers those events)", FINAL_REPORTS_MS / 1000);
  final_end(w, "not made");
}

static void on_final_offsets(void *opaque, int err) {
  wk *w = opaque;
  if (err) w->st.kafka_errors++;
  final_end(w, err ? "failed (the next owner reads those events again)" : "committed");
}

/* One step of the last commit; called again by whatever ends its wait. */
static void final_step(wk *w) {
  if (w->final_commit != 1 || w->freeing || !w->txp) return;
  if (ktx_fatal(w->txp) || (!ktx_open(w->txp) && !ktx_committing(w->txp))) {
    /* Starting or broken: nothing was produced, nothing can be committed. */
    final_end(w, "not made: kafka transactions are not open (offsets left to the next owner)");
    return;
  }
  if (ktx_committing(w->txp)) return; /* wko_on_txn_done steps again */
  /* Answers waiting for the transaction go in first (no commit is closing
   * it yet, so none of this re-enters). */
  if (!w->txn_closing && w->txn_wait_head) txn_flush_wait(w);
  w->txn_closing = 1;
  if (ktx_pending(w->txp) > 0) {
    /* The last report due steps again; 10 s at most, as ktx_flush did. */
    if (!uv_is_active((uv_handle_t *)&w->grace_timer))
      uv_timer_start(&w->grace_timer, on_final_timeout, FINAL_REPORTS_MS, 0);
    return;
  }
  if (!ktx_produced(w->txp) && !w->txn_dirty && !w->txn_owed) {
    final_end(w, "not needed: nothing changed since the last one");
    return;
  }
  /* An event still owed (the grace period ended in the middle of its
   * messages) cannot be committed: abort, as the blocking commit did. */
  int abort = w->txn_owed > 0 || txn_holds_stale(w);
  rd_kafka_topic_partition_list_t *offs = txn_offsets(w);
  rd_kafka_consumer_group_metadata_t *cg = rd_kafka_consumer_group_metadata(kc_handle(w->consumer));
  w->txn_dirty = 0;
  w->txn_last_ms = wk_now_ms();
  w->txn_started_ns = uv_hrtime();
  w->final_seq = ktx_seq(w->txp);
  int rc = ktx_commit(w->txp, offs, cg, abort);
  if (rc != AW_OK) {
    if (offs) rd_kafka_topic_partition_list_destroy(offs);
    if (cg) rd_kafka_consumer_group_metadata_destroy(cg);
    w->txn_dirty = 1;
    log_warn(NULL, "kafka transaction commit not started: %s", aw_strerror(rc));
    final_end(w, "not made");
    return;
  }
  w->final_commit = 2;
}

void wko_commit_final(wk *w, void (*done)(wk *w)) {
  if (w->final_commit) return;
  w->final_commit = 1;
  w->final_done = done;
  uv_timer_stop(&w->commit_timer); /* the last commit is the only one from here on */
  uv_timer_stop(&w->grace_timer);  /* from here: the bound of a wait for the broker */
  if (w->txp) {
    final_step(w);
    return;
  }
  uv_timer_start(&w->grace_timer, on_final_timeout, FINAL_REPORTS_MS, 0);
  w->final_commit = 2;
  int rc = ptab_commit_notify(&w->parts, w->consumer, w->cfg.topic_requests, on_final_offsets, w);
  if (rc == AW_OK) {
    /* on_final_offsets follows */
  } else if (rc == AW_ENOTFOUND) {
    final_end(w, "not needed: nothing moved since the last one");
  } else {
    w->st.kafka_errors++;
    final_end(w, "could not be sent (the next owner reads those events again)");
  }
}

static void on_commit_timer(uv_timer_t *t) {
  wk *w = t->data;
  /* What alone_gate held back goes on once no record is alone (normally at
   * once, from the report that ended it: this is the backstop).  An open
   * transaction that is not closing is flushed by its commit below. */
  if (!w->alone && w->txn_wait_head && (!w->txp || w->txn_closing)) txn_flush_wait(w);
  wko_commit(w, 0);
}

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
  if (ev->w->txp) {
    txn_enter(ev);
  } else {
    wku_committed(ev);
    wk_ev_record(ev);
  }
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
 * gives up at once: a smaller record would be refused the same way.  The
 * producer's own check (before anything is queued) always counts; the
 * broker's counts only for a record that was alone in its batch (see
 * "records refused in company" below). */

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

/* ev->out becomes the `failed` response_too_large response (broker: the
 * broker refused it, for the topic's max.message.bytes, which is unknown
 * here). */
static int degrade_response(wk_event *ev, int broker) {
  wk *w = ev->w;
  int assistants = ev->h_kind && strcmp(ev->h_kind, "assistants") == 0;
  contract_response r = {0};
  r.event_id = ev->event_id;
  r.conversation_id = ev->conv_id;
  r.tenant = ev->tenant[0] ? ev->tenant : NULL;
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
  int rc = odg_response_too_large(&r, was, broker ? 0 : record_limit(w), &ev->out);
  if (rc == AW_OK) wk_copy_id(ev->status, sizeof ev->status, "failed");
  return rc;
}

/* The record of this kind was refused for good (too_big: for its size; by
 * the broker, or by the producer's own check): the next attempt produces a
 * smaller one, or none. */
static void refused(wk_event *ev, int kind, int too_big, int broker, const char *why) {
  if (kind == DR_USAGE) {
    /* A few hundred bytes: too big for the topic means a misconfigured
     * topic, and nothing smaller says the same.  Given up, like a record
     * refused for another permanent reason. */
    ev->w->st.kafka_errors++;
    ev->usage.given_up = 1;
    ev->send_usage = 0;
    log_ctx c = wk_ev_ctx(ev);
    log_error(&c, "usage record refused for good (%s): given up; the event is committed without it", why);
    return;
  }
  uint8_t *lvl = kind == DR_RESPONSE ? &ev->shrink_response : &ev->shrink_dlq;
  const char *what = kind == DR_RESPONSE ? "response" : "dead letter";
  *lvl = too_big && *lvl < 2 ? (uint8_t)(*lvl + 1) : 2;
  if (kind == DR_RESPONSE && *lvl == 1 && degrade_response(ev, broker) != AW_OK) *lvl = 2;
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

/* ---- records refused in company ---------------------------------------------
 *
 * librdkafka sends the records of one partition in batches (up to the
 * producer's batch.size, 1,000,000 bytes by default) and does not split a
 * batch the broker refuses; the broker applies a topic's max.message.bytes
 * to the batch as sent.  So when a topic's limit is below what the producer
 * batches, every record of a refused batch reports MSG_SIZE_TOO_LARGE, the
 * small ones with the one too large, and the other permanent refusals a
 * broker gives a whole batch (an invalid record) look the same.  A refusal
 * therefore proves something only about a record that was alone in its
 * batch.  A record refused in company makes its event a suspect: it is
 * produced again ALONE (alone_gate: no other outcome record in flight, none
 * produced until its reports are in), and only a refusal heard alone moves
 * it down (refused).  A suspect stays one until its event is done: after an
 * abort every event of the transaction is produced again, and records that
 * fit alone but not together (a topic limit below two ordinary answers)
 * would collide again and again; alone, each goes through, so every abort
 * turns the events of the refused batch into ones that cannot collide any
 * more, and the transactions converge.  Suspects go before other events;
 * the rest wait on the wait list meanwhile.  Cost: one round trip per
 * suspect's production and, exactly-once, one or two more aborted
 * transactions per refused batch (librdkafka may fail the first produce
 * after such an abort with a sequence gap, which aborts once more); a topic
 * limit below batch.size makes ordinary answers collide too, and the log
 * says how to configure that away. */

/* A record of ev's outcome was refused for good in a batch with others: it
 * is produced again alone before the refusal counts (alone_gate). */
static void refused_in_company(wk_event *ev, int kind, rd_kafka_resp_err_t err) {
  if (ev->suspect) return; /* known already: it goes alone from now on */
  log_ctx c = wk_ev_ctx(ev);
  log_warn(&c, "%s refused by the broker in a batch with other records (%s): produced again alone before the "
               "refusal counts.  If this repeats, a topic's max.message.bytes is below what the producer batches: "
               "set batch.size in kafka.properties to at most the output topics' max.message.bytes",
           kind == DR_RESPONSE ? "response" : kind == DR_USAGE ? "usage record" : "dead letter", rd_kafka_err2str(err));
  ev->suspect = 1;
}

/* The event whose records go alone (1), or held back (0).  A suspect goes
 * alone once no outcome record is in flight; everyone else waits while one
 * is alone, and events that are not suspects also wait while suspects do,
 * so that suspects are not starved under load. */
static int alone_gate(wk_event *ev) {
  wk *w = ev->w;
  if (w->alone) return w->alone == ev;
  if (!ev->suspect) return w->suspects_waiting == 0;
  if (w->outcome_pending > 0) return 0;
  w->alone = ev;
  if (ev->suspect == 1) {
    ev->suspect = 2;
    log_ctx c = wk_ev_ctx(ev);
    log_info(&c, "producing the event's outcome alone (and so until it is committed): refused in a batch with "
                 "other records before");
  }
  return 1;
}

/* No outcome record is in flight: the isolation (if any) is over, and what
 * waited for it goes on. */
static void alone_over(wk *w) {
  w->alone = NULL;
  if (w->txn_wait_head) txn_flush_wait(w);
}

static void ev_dr(wk *w, wk_event *ev, int kind, int alone, rd_kafka_resp_err_t err);

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
  int outcome = kind == DR_RESPONSE || kind == DR_DLQ || kind == DR_USAGE;
  int alone = outcome && w->alone == ev;
  if (outcome) w->outcome_pending--;
  ev_dr(w, ev, kind, alone, err); /* may finish (free) ev */
  if (outcome && w->outcome_pending == 0 && (w->alone || w->txn_wait_head)) alone_over(w);
}

static void ev_dr(wk *w, wk_event *ev, int kind, int alone, rd_kafka_resp_err_t err) {
  if (err) {
    w->st.kafka_errors++;
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "delivery failed (%s): %s",
             kind == DR_RESPONSE ? "response" : kind == DR_DLQ ? "dlq" : kind == DR_USAGE ? "usage" : "delta",
             rd_kafka_err2str(err));
    /* A permanent refusal of a record that shared its batch may be the
     * batch's (see "records refused in company" above): it counts only for
     * a record alone. */
    if (kind != DR_DELTA && kp_err_permanent(err)) {
      if (alone) refused(ev, kind, kp_err_too_big(err), 1, rd_kafka_err2str(err));
      else refused_in_company(ev, kind, err);
    }
    /* A response or DLQ record that is not durable is produced again; the
     * offset stays uncommitted meanwhile.  A lost delta only breaks the
     * concatenation of this event's deltas; the response has the text. */
    if (w->txp && kind != DR_DELTA) {
      /* The transaction holding it will abort; the abort produces the
       * event's messages again in the next one. */
    } else if (kind != DR_DELTA) {
      if (kind == DR_RESPONSE && ev->shrink_response < 2) ev->send_response = 1;
      if (kind == DR_DLQ && ev->shrink_dlq < 2) ev->send_dlq = 1;
      if (kind == DR_USAGE && !ev->usage.given_up) ev->send_usage = 1;
      w->st.produce_retries++;
      if (ev->pending_dr == 0) wks_retry_later(ev);
      return;
    }
  }
  if (ev->pending_dr > 0 || ev->state != ST_PUBLISHING) return;
  if (ev->await_deltas) {
    ev->await_deltas = 0;
    wko_publish(ev);
  } else if (ev->send_response || ev->send_dlq || ev->send_usage) {
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
  int rc;
  if (!w->txp) {
    rc = wko_produce(ev, topic, kind, key, keylen, val, len, NULL, 0);
  } else {
    rc = ktx_produce(w->txp, topic, key, keylen, val, len, (void *)((uintptr_t)ev | (uintptr_t)kind));
    if (rc == AW_OK) {
      ev->pending_dr++;
      owe(ev);
    }
  }
  if (rc == AW_OK) w->outcome_pending++;
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
     * close under load); an event already in it completes its messages,
     * unless it failed: then nothing more goes in, and it aborts as soon as
     * no report is due (its events are produced again in the next). */
    if (!ktx_open(w->txp) || ktx_doomed(w->txp) || (w->txn_closing && !ev->owed)) {
      txn_wait_add(ev);
      if (ktx_doomed(w->txp)) close_doomed(w);
      return;
    }
  }
  if (!alone_gate(ev)) {
    txn_wait_add(ev);
    return;
  }
  if (ev->shrink_response >= 2) ev->send_response = 0;
  if (ev->shrink_dlq >= 2) ev->send_dlq = 0;
  while (ev->send_response) {
    rc = produce_outcome(ev, w->cfg.topic_responses, DR_RESPONSE, ev->conv_id, strlen(ev->conv_id),
                         ev->out.data, ev->out.len);
    if (rc == AW_OK) ev->send_response = 0;
    if (rc != AW_ETOOBIG && rc != AW_EINVAL) break;
    /* Refused before anything was queued: the transaction is unharmed. */
    refused(ev, DR_RESPONSE, rc == AW_ETOOBIG, 0, rc == AW_ETOOBIG ? "larger than message.max.bytes" : "invalid");
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
    refused(ev, DR_DLQ, rc == AW_ETOOBIG, 0, rc == AW_ETOOBIG ? "larger than message.max.bytes" : "invalid");
    rc = AW_OK;
  }
  if (ev->usage.given_up || !w->cfg.topic_usage) ev->send_usage = 0;
  while (rc == AW_OK && ev->send_usage) {
    /* The usage record: in the same transaction as the response, so that
     * it is published exactly when the response is (usage.h).  Encoded
     * again for every attempt, from fields frozen at the turn's end. */
    buf ub;
    buf_init(&ub, CUSAGE_MAX_RECORD);
    rc = wku_encode(ev, &ub);
    if (rc == AW_OK)
      rc = produce_outcome(ev, w->cfg.topic_usage, DR_USAGE, ev->conv_id, strlen(ev->conv_id), ub.data, ub.len);
    else
      rc = AW_EINVAL; /* cannot be encoded: given up below */
    buf_free(&ub);
    if (rc == AW_OK) ev->send_usage = 0;
    if (rc != AW_ETOOBIG && rc != AW_EINVAL) break;
    refused(ev, DR_USAGE, rc == AW_ETOOBIG, 0, rc == AW_ETOOBIG ? "larger than message.max.bytes" : "invalid");
    rc = AW_OK;
  }
  if (rc == AW_OK && ev->pending_dr == 0 && ev->state == ST_PUBLISHING && !ev->send_response && !ev->send_dlq &&
      !ev->send_usage) {
    /* Nothing left to produce and nothing produced: every record was given
     * up.  The event is done (its offset commits; nothing would change on
     * a retry). */
    int was_alone = w->alone == ev;
    if (was_alone) w->alone = NULL;
    ev_delivered(ev); /* may free ev */
    if (was_alone && w->outcome_pending == 0) alone_over(w);
    return;
  }
  if (rc == AW_ESTATE && w->txp) {
    /* The transaction failed meanwhile (ktx_doomed): in the next one. */
    txn_wait_add(ev);
    close_doomed(w);
    return;
  }
  if (rc != AW_OK) {
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "produce failed (%s); will retry", aw_strerror(rc));
    w->st.produce_retries++;
    if (ev->pending_dr == 0) wks_retry_later(ev);
  }
}

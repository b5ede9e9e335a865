/* intake.c -- the requests topic comes in here (prefix wki_): each message
 * becomes a wk_event (decoded, validated, its offset tracked) queued behind
 * its conversation, and consumption is paused while too much is in flight.
 *
 * Cut here because this is the one module that knows partitions: which are
 * assigned (part_table.h, shared with the tool-reply consumer), which event
 * belongs to an earlier assignment (wki_stale), how far each may be
 * committed, and when one or all of them must pause.  What happens to an
 * event afterwards is the scheduler's and the event machine's business.
 */
#include "intake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_sched.h"
#include "event.h"
#include "outbox.h"

int wki_stale(const wk_event *ev) { return !ptab_current(&ev->w->parts, ev->partition, ev->gen); }

/* ---- backpressure ---------------------------------------------------------- */

/* One partition over its own limit is paused alone, so one busy partition
 * cannot take the whole worker's capacity; resuming waits for 3/4 of the
 * limit so that a partition does not flap around it. */
/* With transactions, a partition is also held back while its tracker spans
 * more offsets than half of what the commit metadata can record, so the
 * done set always fits (the other half absorbs what was already fetched). */
#define SPAN_HOLD (OTRK_META_MAX_SPAN / 2)
#define SPAN_RESUME (OTRK_META_MAX_SPAN * 3 / 8)

void wki_check_partition(wk *w, int32_t n) {
  ptab_part *p = n >= 0 && n < w->parts.n ? &w->parts.v[n] : NULL;
  long max = w->cfg.max_in_flight_per_partition;
  if (!p || !p->assigned || !w->consumer || w->stopping) return;
  size_t span = w->txp ? otrk_in_flight(&p->t) : 0;
  int over = (max > 0 && p->running >= max) || span >= SPAN_HOLD;
  int under = (max <= 0 || p->running <= max * 3 / 4) && span <= SPAN_RESUME;
  if (!p->paused && over) {
    if (kc_pause_partition(w->consumer, n, 1) == AW_OK) p->paused = 1;
  } else if (p->paused && under) {
    /* While everything is paused, kc_resume decides (see wki_check_pressure). */
    if (kc_paused(w->consumer) || kc_pause_partition(w->consumer, n, 0) == AW_OK) p->paused = 0;
  }
}

/* Both budgets, events and bytes, pause at their limit and resume at 3/4 of
 * it.  The byte budget is checked after an event is taken, so one event
 * larger than the budget still gets in (alone): it is bounded by
 * max_event_bytes, and what librdkafka fetched before the pause is bounded
 * by the consumer's queued.max.messages.kbytes. */
void wki_check_pressure(wk *w) {
  if (!w->consumer || w->stopping) return;
  long max = w->cfg.max_in_flight, maxb = w->cfg.max_inflight_bytes;
  int over = w->st.in_flight >= max || (maxb > 0 && w->st.in_flight_bytes >= maxb);
  int under = w->st.in_flight <= max * 3 / 4 && (maxb <= 0 || w->st.in_flight_bytes <= maxb / 4 * 3);
  if (!kc_paused(w->consumer) && over) {
    if (kc_pause(w->consumer) == AW_OK) {
      w->st.paused = 1;
      log_debug(NULL, "paused consumption at %ld events (%ld bytes) in flight", w->st.in_flight,
                w->st.in_flight_bytes);
    }
  } else if (kc_paused(w->consumer) && under) {
    if (kc_resume(w->consumer) == AW_OK) {
      w->st.paused = 0;
      log_debug(NULL, "resumed consumption at %ld events (%ld bytes) in flight", w->st.in_flight,
                w->st.in_flight_bytes);
      /* kc_resume resumed every partition: pause again the ones still
       * over their own limit. */
      for (int32_t i = 0; i < w->parts.n; i++) {
        w->parts.v[i].paused = 0;
        wki_check_partition(w, i);
      }
    }
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

/* Our name of the event's turn: a digest of the conversation and event ids
 * (length-prefixed, so no two pairs of ids share it), free of the spaces
 * and braces ids may hold, for the tool state's keys and the correlation
 * ids' binding. */
static void turn_token(wk_event *ev) {
  char b[sizeof ev->conv_id + sizeof ev->event_id + 32];
  int k = snprintf(b, sizeof b, "%zu:%s", strlen(ev->conv_id), ev->conv_id);
  if (k < 0 || (size_t)k >= sizeof b) k = 0;
  memcpy(b + k, ev->event_id, strlen(ev->event_id) + 1); /* both ids are bounded: it fits */
  if (corr_digest(b, ev->turn_token) != AW_OK) ev->turn_token[0] = '\0';
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
    /* An asst_ id names an object of the Assistants API: meaningless on
     * every other backend. */
    if (strcmp(be_kind(w->be), "assistants") != 0) {
      (void)reject(ev, "unknown_assistant",
                   "'%s' is an Assistants API id; this worker's backend takes configured assistant names",
                   q->assistant, m);
      return;
    }
    ev->asst_by_id.id = q->assistant;
    ev->assistant = &ev->asst_by_id;
    return;
  }
  ev->assistant = w->cfg.resolve_assistant ? w->cfg.resolve_assistant(w->cfg.resolve_opaque, q->assistant) : NULL;
  if (!ev->assistant)
    (void)reject(ev, "unknown_assistant", "no assistant named '%s' is configured", q->assistant, m);
}

void wki_on_message(void *opaque, rd_kafka_message_t *m) {
  wk *w = opaque;
  if (m->err) {
    w->st.kafka_errors++;
    log_warn(NULL, "consumer error: %s", rd_kafka_message_errstr(m));
    rd_kafka_message_destroy(m);
    return;
  }
  ptab_part *p = ptab_get(&w->parts, m->partition);
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
    turn_token(ev);
  }
  int32_t part = ev->partition;
  int erc = ev->conv_id[0] ? wks_enqueue(w, ev) : AW_EINVAL;
  if (erc == AW_EAGAIN && !ev->reject_code) {
    /* Its conversation's queue is full: answered now, out of the
     * conversation's order (nothing of it reaches the backend), with the
     * original bytes in the dead letter for a replay. */
    w->st.conv_queue_full++;
    char detail[64];
    snprintf(detail, sizeof detail, "%d", w->cfg.max_queue_per_conversation);
    if (reject(ev, "conversation_queue_full",
               "the conversation already has %s events waiting in this worker "
               "(worker.max_queue_per_conversation); send it again later",
               detail, m) != AW_OK)
      log_error(NULL, "out of memory keeping a rejected event");
  }
  ev->bytes = wk_event_bytes(ev, m->len);
  w->st.in_flight_bytes += ev->bytes;
  rd_kafka_message_destroy(m);
  if (erc != AW_OK)
    wks_ready(ev); /* no conversation to order against, or its queue is full: answer it right away */
  wki_check_partition(w, part);
  wki_check_pressure(w);
}

void wki_on_assign(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
  wk *w = opaque;
  ptab_assign(&w->parts, parts);
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
      ptab_part *p = ptab_get(&w->parts, e->partition);
      if (p && e->offset >= 0) p->committed_at_assign = e->offset; /* for wk_lag */
      if (!p || e->offset < 0 || !e->metadata_size) continue;
      if (otrk_skip_parse(&p->skip, e->offset, e->metadata, e->metadata_size) != AW_OK)
        log_warn(NULL, "partition %d: unreadable commit metadata ignored", (int)e->partition);
    }
  }
  if (c) rd_kafka_topic_partition_list_destroy(c);
  ptab_log("partitions assigned", w->cfg.topic_requests, parts);
}

/* A turn of a revoked partition must not go on at the API: the partition's
 * new owner recovers the event, and a request of ours still waiting (a 429
 * backoff, a retry) could land after the new owner looked for it and create
 * the run or the response a second time.  Such turns are cancelled and left
 * unanswered (their offsets stay uncommitted); what is already being
 * published is not touched: it commits with the revocation. */
static void abandon_revoked_turns(wk *w) {
  size_t n = 0, cap = 0;
  wk_event **v = NULL;
  wk_conv *c, *tmp;
  HASH_ITER(hh, w->convs, c, tmp) {
    wk_event *ev = c->head;
    if (!ev || ev->state != ST_TURN || !ev->op || !wki_stale(ev)) continue;
    if (n == cap) {
      size_t ncap = cap ? 2 * cap : 16;
      wk_event **nv = realloc(v, ncap * sizeof *nv);
      if (!nv) break; /* the rest find out when they end: their answers never commit */
      v = nv;
      cap = ncap;
    }
    v[n++] = ev;
  }
  /* Abandoning moves the conversation queues on: not while walking them. */
  for (size_t i = 0; i < n; i++) wk_ev_abandon(v[i]);
  free(v);
}

void wki_on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
  wk *w = opaque;
  wko_commit(w, 1);
  ptab_revoke(&w->parts, parts);
  ptab_log("partitions revoked", w->cfg.topic_requests, parts);
  abandon_revoked_turns(w);
}

int wk_lag(const wk *w, wk_lag_fn cb, void *opaque) {
  if (!w || !w->consumer || !cb) return 0;
  rd_kafka_t *rk = kc_handle(w->consumer);
  int n = 0;
  for (int32_t i = 0; i < w->parts.n; i++) {
    const ptab_part *p = &w->parts.v[i];
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

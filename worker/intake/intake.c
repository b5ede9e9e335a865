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

/* The consumer keeps each layer's reason apart (kafka_consumer.h): this
 * one holds or releases KC_PAUSE_LIMIT only, so releasing it never resumes
 * a partition that the whole worker's pause (wki_check_pressure) or its
 * start (STARTING) still holds. */
void wki_check_partition(wk *w, int32_t n) {
  ptab_part *p = n >= 0 && n < w->parts.n ? &w->parts.v[n] : NULL;
  long max = w->cfg.max_in_flight_per_partition;
  if (!p || p->state != PTAB_ACTIVE || !w->consumer || w->stopping) return;
  size_t span = w->txp ? otrk_in_flight(&p->t) : 0;
  int over = (max > 0 && p->running >= max) || span >= SPAN_HOLD;
  int under = (max <= 0 || p->running <= max * 3 / 4) && span <= SPAN_RESUME;
  if (!p->paused && over) {
    if (kc_pause_partition(w->consumer, n, KC_PAUSE_LIMIT, 1) == AW_OK) p->paused = 1;
  } else if (p->paused && under) {
    if (kc_pause_partition(w->consumer, n, KC_PAUSE_LIMIT, 0) == AW_OK) p->paused = 0;
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
  over = over || w->held;   /* wk_hold: too many turns wait for the API's rate limit */
  under = under && !w->held;
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
      /* kc_resume left the partitions held for their own limit paused:
       * release the ones under it by now. */
      for (int32_t i = 0; i < w->parts.n; i++) wki_check_partition(w, i);
    }
  }
}

/* ---- consumption --------------------------------------------------------- */

/* The original bytes and key, for a dead letter (once per event). */
static int keep_original(wk_event *ev, const rd_kafka_message_t *m) {
  if (m->len && !ev->orig) {
    ev->orig = malloc(m->len);
    if (!ev->orig) return AW_ENOMEM;
    memcpy(ev->orig, m->payload, m->len);
    ev->orig_len = m->len;
  }
  if (m->key_len && !ev->orig_key) {
    ev->orig_key = malloc(m->key_len);
    if (!ev->orig_key) return AW_ENOMEM;
    memcpy(ev->orig_key, m->key, m->key_len);
    ev->orig_key_len = m->key_len;
  }
  return AW_OK;
}

static int reject(wk_event *ev, const char *code, const char *fmt, const char *detail,
                  const rd_kafka_message_t *m) {
  ev->reject_code = code;
  size_t n = strlen(fmt) + (detail ? strlen(detail) : 0) + 1;
  ev->reject_msg = malloc(n);
  if (ev->reject_msg) snprintf(ev->reject_msg, n, fmt, detail ? detail : "");
  return keep_original(ev, m);
}

/* Our name of the event's turn: a digest of the tenant (when there is one),
 * conversation and event ids (length-prefixed, so no two triples of ids
 * share it; without a tenant the bytes are what they were before tenants),
 * free of the spaces and braces ids may hold, for the tool state's keys and
 * the correlation ids' binding -- which so binds the tenant too. */
static void turn_token(wk_event *ev) {
  char b[sizeof ev->tenant + sizeof ev->conv_id + sizeof ev->event_id + 64]; /* all bounded: it fits */
  int k = ev->tenant[0] ? snprintf(b, sizeof b, "T%zu:%s%zu:%s%s", strlen(ev->tenant), ev->tenant,
                                   strlen(ev->conv_id), ev->conv_id, ev->event_id)
                        : snprintf(b, sizeof b, "%zu:%s%s", strlen(ev->conv_id), ev->conv_id, ev->event_id);
  if (k < 0 || (size_t)k >= sizeof b || corr_digest(b, ev->turn_token) != AW_OK) ev->turn_token[0] = '\0';
}

/* Checks beyond the contract's syntax: what this worker can serve.  Only a
 * message has an assistant and content: the other kinds (history,
 * append, ...) carry neither (the decoder checked each kind's own fields,
 * so an append's messages are text only), and share the metadata limit. */
static void validate(wk *w, wk_event *ev, const rd_kafka_message_t *m) {
  contract_request *q = ev->req;
  if (q->kind != CONTRACT_KIND_MESSAGE) {
    if (q->nmetadata > MAX_USER_METADATA)
      (void)reject(ev, "invalid_field", "metadata has more than 14 pairs (2 are reserved)%s", "", m);
    return;
  }
  /* Images are served by every backend; a `file` part is not (attachments
   * carry files).  A chat server has no files and runs no hosted tools: an
   * image by file id and any attachment are refused there. */
  int chat = strcmp(be_kind(w->be), "chat") == 0;
  char detail[96];
  for (size_t i = 0; i < q->nparts; i++) {
    const contract_part *p = &q->parts[i];
    if (p->type == CONTRACT_PART_FILE) {
      snprintf(detail, sizeof detail, "%zu", i);
      (void)reject(ev, "unsupported_content",
                   "content[%s] is a file part: files go in `attachments` (use attachments)", detail, m);
      return;
    }
    if (chat && p->type == CONTRACT_PART_IMAGE_FILE && !p->data) {
      snprintf(detail, sizeof detail, "%zu", i);
      (void)reject(ev, "unsupported_content",
                   "content[%s] is an image by file id: the chat backend has no files (send the image by URL or "
                   "inline)",
                   detail, m);
      return;
    }
  }
  if (chat && q->nattachments) {
    unsigned t = q->attachments[0].tools;
    snprintf(detail, sizeof detail, "attachments[0] is for %s",
             (t & CONTRACT_ATT_CODE_INTERPRETER) ? "code_interpreter" : "file_search");
    (void)reject(ev, "unsupported_content", "%s, a hosted tool the chat backend does not offer", detail, m);
    return;
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

/* Whose conversation the event is (ev_identity.h: worker.key_rule and
 * worker.tenant_source): sets conv_id, tenant and conv_ref, or rejects the
 * event (conv_ref stays "", so nothing of any conversation is looked up);
 * 0 when rejected. */
static int decide_identity(wk *w, wk_event *ev, const rd_kafka_message_t *m) {
  wid_record rec;
  wid_identity id;
  wid_record_of(&w->cfg.identity, m, &rec);
  wid_decide(&w->cfg.identity, &rec, ev->req, &id);
  wk_copy_id(ev->conv_id, sizeof ev->conv_id, id.conv);
  if (id.reject_code) {
    if (reject(ev, id.reject_code, "%s", id.reject_msg, m) != AW_OK)
      log_error(NULL, "out of memory keeping a rejected event");
    return 0;
  }
  wk_copy_id(ev->tenant, sizeof ev->tenant, id.tenant);
  wk_copy_id(ev->conv_ref, sizeof ev->conv_ref, id.ref);
  return 1;
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
    ev->kind = contract_request_peek_kind(m->payload, m->len);
    if (reject(ev, code ? code : "malformed_event", "%s", errstr, m) != AW_OK)
      log_error(NULL, "out of memory keeping a rejected event");
  } else {
    ev->kind = ev->req->kind;
    wk_copy_id(ev->event_id, sizeof ev->event_id, ev->req->event_id);
    if (decide_identity(w, ev, m)) validate(w, ev, m);
    turn_token(ev);
    /* An accepted event may still be refused at admission (event.c: an
     * override its assistant does not allow, an event_id another message
     * holds), and that dead letter carries the original bytes too: kept
     * until admitted (wk_ev_start releases them). */
    if (!ev->reject_code && keep_original(ev, m) != AW_OK)
      log_error(NULL, "out of memory keeping an event's original bytes");
  }
  int32_t part = ev->partition;
  /* A cancel must not wait behind the turn it cancels (cancel.h): it is
   * started at once, outside its conversation's queue.  Answering it before
   * that turn is safe for the offsets: this one is tracked like any other,
   * and the offset tracker commits only the prefix of done offsets, so the
   * cancel's offset is committed once the turn's is too (answered beyond
   * the commit point, it travels in the commit's metadata and is skipped if
   * the partition is read again).  A rejected cancel is answered at once
   * too: nothing of it touches the conversation. */
  int oob = ev->req && ev->req->kind == CONTRACT_KIND_CANCEL;
  int erc = oob ? AW_OK : ev->conv_id[0] ? wks_enqueue(w, ev) : AW_EINVAL;
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
  if (oob || erc != AW_OK)
    wks_start_out_of_band(w, ev); /* a cancel; or no conversation to order against, or its queue is
                                     full: answer it right away */
  wki_check_partition(w, part);
  wki_check_pressure(w);
}

/* ---- the start of an assigned partition ---------------------------------------
 *
 * A partition must not be consumed before its committed offset's metadata
 * is known (the offsets past it that are answered already: consumed
 * without it they would be answered again, caught only by the Redis
 * outcome records).  Reading it asks the group coordinator, so it runs off
 * the loop (kc_committed) while the partition stays STARTING and held by
 * the consumer (KC_PAUSE_START, kc_set_start_held); the loop meanwhile
 * serves everything else.  The answer starts the partitions still waiting
 * in the generation that asked (ptab_start) and releases their hold; one
 * revoked meanwhile drops it (its next owner reads its own).  After the
 * bounded attempts fail, the partitions start without it, as the blocking
 * read did when it failed: a warning, and the Redis records skip what was
 * answered. */

/* One attempt waits this long, and there are this many, with a backoff of
 * 0.25 s doubling up to 4 s between them: about 40 s before the partitions
 * start without the metadata.  An attempt under way is what the close
 * waits for at most. */
#define START_ATTEMPT_MS 5000
#define START_ATTEMPTS 6

typedef struct start_req {
  wk *w;
  int n;
  struct {
    int32_t partition;
    uint64_t gen;
  } v[];
} start_req;

static void on_start_known(void *opaque, rd_kafka_topic_partition_list_t *offs, int err, const char *errstr) {
  start_req *r = opaque;
  wk *w = r->w;
  if (err == AW_ECANCELLED) { /* the consumer is closing: nothing starts any more */
    free(r);
    return;
  }
  if (err != AW_OK)
    log_warn(NULL, "cannot read the committed offsets' metadata (%s); the Redis outcome records still skip "
                   "answered events",
             errstr);
  rd_kafka_topic_partition_list_t *started = rd_kafka_topic_partition_list_new(r->n > 0 ? r->n : 1);
  for (int i = 0; i < r->n; i++) {
    int32_t n = r->v[i].partition;
    const rd_kafka_topic_partition_t *e =
        offs ? rd_kafka_topic_partition_list_find(offs, w->cfg.topic_requests, n) : NULL;
    int rc = ptab_start(&w->parts, n, r->v[i].gen, e ? e->offset : -1, e ? e->metadata : NULL,
                        e ? e->metadata_size : 0);
    if (rc == AW_ESTATE) continue; /* revoked since: stale */
    if (rc == AW_EPARSE) log_warn(NULL, "partition %d: unreadable commit metadata ignored", (int)n);
    if (kc_pause_partition(w->consumer, n, KC_PAUSE_START, 0) != AW_OK)
      log_warn(NULL, "partition %d: cannot resume it after its start", (int)n);
    if (started) rd_kafka_topic_partition_list_add(started, w->cfg.topic_requests, n);
  }
  if (started && started->cnt) ptab_log("partitions started", w->cfg.topic_requests, started);
  if (started) rd_kafka_topic_partition_list_destroy(started);
  if (offs) rd_kafka_topic_partition_list_destroy(offs);
  free(r);
}

void wki_on_assign(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
  wk *w = opaque;
  ptab_assign_starting(&w->parts, parts);
  ptab_log("partitions assigned", w->cfg.topic_requests, parts);
  /* Shutting down: they stay held until the close revokes them. */
  if (!parts->cnt || w->stopping) return;
  start_req *r = malloc(sizeof *r + (size_t)parts->cnt * sizeof r->v[0]);
  if (r) {
    r->w = w;
    r->n = parts->cnt;
    for (int i = 0; i < parts->cnt; i++) {
      r->v[i].partition = parts->elems[i].partition;
      ptab_part *p = ptab_get(&w->parts, parts->elems[i].partition);
      r->v[i].gen = p ? p->gen : 0;
    }
  }
  if (r && kc_committed(w->consumer, parts, START_ATTEMPT_MS, START_ATTEMPTS, on_start_known, r) == AW_OK) return;
  /* Out of memory: started without the metadata, like a failed read. */
  if (!r) {
    log_error(NULL, "out of memory reading the committed offsets; partitions start without their metadata");
    for (int i = 0; i < parts->cnt; i++) {
      int32_t n = parts->elems[i].partition;
      ptab_part *p = ptab_get(&w->parts, n);
      if (p && ptab_start(&w->parts, n, p->gen, -1, NULL, 0) == AW_OK &&
          kc_pause_partition(w->consumer, n, KC_PAUSE_START, 0) != AW_OK)
        log_warn(NULL, "partition %d: cannot resume it after its start", (int)n);
    }
    return;
  }
  on_start_known(r, NULL, AW_ENOMEM, "out of memory");
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
    /* FILES: an upload of ours still out could land after the new owner
     * looked for it (attach.h): stopped too. */
    if (!ev || !wki_stale(ev) || !((ev->state == ST_TURN && ev->op) || (ev->state == ST_FILES && ev->att)))
      continue;
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
    if (p->state != PTAB_ACTIVE || /* STARTING: its commit point is not known yet */
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

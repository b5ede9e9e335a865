/* tool_replies.c -- consume tool replies, record them for their run (see
 * the header for the steps).  The partitions' bookkeeping (offsets
 * tracked, generations, commits, rebalance resets) is part_table.h, the
 * same code as the request intake's. */
#include "tool_replies.h"
#include "degrade.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>

#include "buf.h"
#include "contract.h"
#include "contract_tool.h"
#include "kafka_consumer.h"
#include "log.h"
#include "part_table.h"
#include "tool_sign.h"

#define RETRY_MS 200

typedef struct trep_msg {
  trep *t;
  struct trep_msg *retry_next;
  int32_t partition;
  int64_t offset;
  uint64_t gen;
  void *orig;
  size_t orig_len;
  void *key;
  size_t key_len;
  ctool_reply *reply;
  /* The dead letter's reason, copied: the code may come from a Redis reply
   * (tstate_apply_reply's verdict), which is freed when the callback
   * returns, and a retry (a produce or its delivery failed) sends it again
   * after that. */
  char dlq_code[48];        /* set (non-empty): dead-letter it with this reason */
  char dlq_msg[256];
  char run[128], call[128];
  char *conv;               /* the conversation's reference (rkeys.h), from the correlation record */
  const char *conv_id;      /* the conversation id within it (points into conv) */
  char tenant[RK_TENANT_MAX + 1]; /* the tenant within it, "" without */
  int pending_dr;
  int stage;                /* 0 lookup, 1 apply, 2 dead-letter */
} trep_msg;

struct trep {
  uv_loop_t *loop;
  trep_config cfg;
  kc *consumer;
  kp *producer;
  tstate *ts;
  const corr_key *key;
  trep_complete_fn on_complete;
  void *opaque;
  unsigned dr_tag;
  ptab parts;              /* the reply topic's partitions (part_table.h) */
  long in_flight;
  int paused, stopping, freeing;
  trep_msg *retry_head;
  uv_timer_t retry_timer, commit_timer;
  int handles_open;
  trep_stats st;
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void commit(trep *t, int sync) {
  if (ptab_commit(&t->parts, t->consumer, t->cfg.topic, sync) != AW_OK) t->st.kafka_errors++;
}

static void on_commit_timer(uv_timer_t *h) { commit(h->data, 0); }

static void check_pressure(trep *t) {
  if (!t->consumer || t->stopping) return;
  if (!t->paused && t->in_flight >= t->cfg.max_in_flight) {
    if (kc_pause(t->consumer) == AW_OK) t->paused = 1;
  } else if (t->paused && t->in_flight <= t->cfg.max_in_flight * 3 / 4) {
    if (kc_resume(t->consumer) == AW_OK) t->paused = 0;
  }
}

static void msg_free(trep_msg *m) {
  ctool_reply_free(m->reply);
  free(m->orig);
  free(m->key);
  free(m->conv);
  free(m);
}

static void msg_done(trep_msg *m) {
  trep *t = m->t;
  ptab_part *p = ptab_current(&t->parts, m->partition, m->gen);
  if (p && otrk_done(&p->t, m->offset) != AW_OK)
    log_warn(NULL, "tool reply offset %lld of partition %d was not tracked", (long long)m->offset,
             (int)m->partition);
  t->in_flight--;
  msg_free(m);
  check_pressure(t);
}

static void on_retry_timer(uv_timer_t *h);

static void retry_later(trep_msg *m) {
  trep *t = m->t;
  m->retry_next = t->retry_head;
  t->retry_head = m;
  if (!uv_is_active((uv_handle_t *)&t->retry_timer))
    uv_timer_start(&t->retry_timer, on_retry_timer, RETRY_MS, 0);
}

static void msg_step(trep_msg *m);

static void on_retry_timer(uv_timer_t *h) {
  trep *t = h->data;
  trep_msg *l = t->retry_head;
  t->retry_head = NULL;
  while (l) {
    trep_msg *m = l;
    l = m->retry_next;
    msg_step(m);
  }
}

/* ---- dead letters -------------------------------------------------------------- */

/* Produce the dead letter of m (stage 2) with the reason already in
 * m->dlq_code / m->dlq_msg; a failure retries this step only, so the reason
 * is formatted once (dead_letter) and sent as often as needed. */
static void dlq_send(trep_msg *m) {
  trep *t = m->t;
  contract_dlq d = {0};
  d.original = m->orig;
  d.original_len = m->orig_len;
  d.original_key = m->key;
  d.original_key_len = m->key_len;
  d.topic = t->cfg.topic;
  d.partition = m->partition;
  d.offset = m->offset;
  d.error_code = m->dlq_code;
  d.error_message = m->dlq_msg;
  d.conversation_id = m->conv_id;
  d.failed_ms = now_ms();
  /* A reply too large for a dead letter with all its bytes (they travel
   * with an envelope) gets the degraded one (its size, SHA-256 and leading
   * bytes), like a poison request: retrying it would never fit. */
  size_t lim = kp_max_message_bytes(t->producer), over = kp_record_size(m->key_len, 0, 0);
  lim = lim > over ? lim - over : 0;
  buf b;
  buf_init(&b, lim);
  int degraded = 0;
  int rc = odg_dlq_encode_within(&d, lim, &b, &degraded);
  if (rc == AW_OK)
    rc = kp_produce(t->producer, t->cfg.dlq_topic, m->key, m->key_len, b.data, b.len,
                    (void *)((uintptr_t)m | t->dr_tag));
  buf_free(&b);
  if (rc != AW_OK) {
    t->st.kafka_errors++;
    retry_later(m);
    return;
  }
  m->pending_dr++;
}

/* Dead-letter m: code and detail are copied (they may live only as long as
 * the caller's callback), then the record is produced. */
static void dead_letter(trep_msg *m, const char *code, const char *fmt, const char *detail) {
  m->stage = 2;
  snprintf(m->dlq_code, sizeof m->dlq_code, "%s", code && *code ? code : "internal_error");
  snprintf(m->dlq_msg, sizeof m->dlq_msg, fmt, detail ? detail : "");
  log_ctx c = {NULL, m->conv_id, NULL, m->run[0] ? m->run : NULL, m->tenant[0] ? m->tenant : NULL};
  log_warn(&c, "tool reply dead-lettered: %s: %s", m->dlq_code, m->dlq_msg);
  dlq_send(m);
}

void trep_on_dr(trep *any, void *msg_opaque, rd_kafka_resp_err_t err) {
  trep_msg *m = msg_opaque;
  trep *t = m->t; /* a worker has one trep per reply topic; the message knows its own */
  (void)any;
  m->pending_dr--;
  if (t->freeing) {
    if (m->pending_dr == 0) msg_free(m);
    return;
  }
  if (err) {
    t->st.kafka_errors++;
    log_warn(NULL, "tool reply dead letter not delivered (%s); retrying", rd_kafka_err2str(err));
    retry_later(m);
    return;
  }
  t->st.dlq++;
  if (strcmp(m->dlq_code, CTOOL_DLQ_UNSIGNED_REPLY) == 0) t->st.unsigned_replies++;
  else if (strcmp(m->dlq_code, CTOOL_DLQ_BAD_REPLY_SIGNATURE) == 0) t->st.bad_signatures++;
  else if (strcmp(m->dlq_code, CTOOL_DLQ_WRONG_REPLY_TOPIC) == 0) t->st.wrong_topic++;
  msg_done(m);
}

/* ---- applying ------------------------------------------------------------------- */

/* The common start of a Redis reply: 0 when the reply was dealt with here
 * (shutting down, or a failure that retries the reply later). */
static int redis_answered(trep_msg *m, int err) {
  trep *t = m->t;
  if (t->freeing) {
    msg_free(m);
    return 0;
  }
  if (err) {
    t->st.redis_errors++;
    retry_later(m);
    return 0;
  }
  return 1;
}

static void on_applied(void *opaque, int err, const char *verdict, long missing, const char *owner) {
  trep_msg *m = opaque;
  trep *t = m->t;
  if (!redis_answered(m, err)) return;
  if (strcmp(verdict, "ok") != 0) {
    dead_letter(m, verdict,
                !strcmp(verdict, CTOOL_DLQ_ALREADY_ANSWERED) ? "the call already has a reply%s"
                : !strcmp(verdict, CTOOL_DLQ_RUN_NOT_WAITING)
                    ? "the run no longer waits for this call (deadline passed, or the run went on or ended)%s"
                    : "no pending call has this correlation id%s",
                "");
    return;
  }
  t->st.recorded++;
  log_ctx c = {NULL, m->conv_id, NULL, m->run, m->tenant[0] ? m->tenant : NULL};
  char n[24];
  snprintf(n, sizeof n, "%ld", missing);
  const char *kv[] = {"tool_call_id", m->call, "missing", n};
  log_writekv(LOG_INFO, &c, "tool reply recorded", kv, 2);
  if (missing == 0) {
    if (owner && strcmp(owner, t->cfg.owner) == 0) t->on_complete(t->opaque, m->conv, m->run);
    else if (owner && *owner) tstate_wake(t->ts, owner, m->conv, m->run);
  }
  msg_done(m);
}

static void apply(trep_msg *m) {
  trep *t = m->t;
  ctool_reply *r = m->reply;
  const char *kind = r->error_code ? "error" : "output";
  char *owned = NULL;
  const char *out = r->output;
  size_t out_len = r->output_len;
  if (r->error_code) {
    /* What the model reads for a failed call. */
    cJSON *o = cJSON_CreateObject(), *e = o ? cJSON_AddObjectToObject(o, "error") : NULL;
    if (e && cJSON_AddStringToObject(e, "code", r->error_code) &&
        cJSON_AddStringToObject(e, "message", r->error_message ? r->error_message : ""))
      owned = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!owned) {
      retry_later(m);
      return;
    }
    out = owned;
    out_len = strlen(owned);
  }
  int rc = tstate_apply_reply(t->ts, m->conv, m->run, m->call, kind, out, out_len, now_ms(), on_applied, m);
  free(owned);
  if (rc != AW_OK) {
    t->st.redis_errors++;
    retry_later(m);
  }
}

static void on_corr(void *opaque, int err, const char *value) {
  trep_msg *m = opaque;
  trep *t = m->t;
  if (!redis_answered(m, err)) return;
  if (!value) {
    dead_letter(m, CTOOL_DLQ_UNKNOWN_CORRELATION, "no pending call has this correlation id%s", "");
    return;
  }
  /* "<run> <call> <conversation reference>": the reference leads to the
   * tenant's turn (rkeys.h); the signature binds the conversation id and
   * the turn token, whose digest covers the tenant. */
  const char *conv = NULL;
  size_t conv_len = 0;
  if (tstate_parse_corr(value, strlen(value), m->run, sizeof m->run, m->call, sizeof m->call, &conv, &conv_len) !=
      AW_OK) {
    dead_letter(m, CTOOL_DLQ_UNKNOWN_CORRELATION, "the correlation record is unreadable%s", "");
    return;
  }
  m->conv = strndup(conv, conv_len);
  if (!m->conv) {
    retry_later(m);
    return;
  }
  if (rk_ref_split(&t->ts->keys, m->conv, m->tenant, sizeof m->tenant, &m->conv_id) != AW_OK) {
    m->conv_id = NULL;
    dead_letter(m, CTOOL_DLQ_UNKNOWN_CORRELATION, "the correlation record names no conversation%s", "");
    return;
  }
  int64_t deadline = 0;
  const char *id = m->reply->correlation_id;
  int pinned = strncmp(id, CORR_PREFIX_PINNED, strlen(CORR_PREFIX_PINNED)) == 0;
  int vrc = pinned ? corr_verify_pinned(t->key, id, m->conv_id, m->run, m->call, t->cfg.topic, &deadline)
            : t->cfg.accept_unpinned ? corr_verify(t->key, id, m->conv_id, m->run, m->call, &deadline)
                                     : AW_EINVAL;
  if (vrc != AW_OK) {
    /* A genuine id of a call pinned to another of the worker's reply
     * topics: the reply came the wrong way (functions.<name>.reply_topic). */
    for (size_t i = 0; pinned && i < t->cfg.npinned; i++) {
      const char *other = t->cfg.pinned_topics[i];
      if (strcmp(other, t->cfg.topic) != 0 &&
          corr_verify_pinned(t->key, id, m->conv_id, m->run, m->call, other, NULL) == AW_OK) {
        dead_letter(m, CTOOL_DLQ_WRONG_REPLY_TOPIC, "the call's replies are accepted only from %s", other);
        return;
      }
    }
    dead_letter(m, CTOOL_DLQ_BAD_CORRELATION, "the correlation id's signature does not match its call%s", "");
    return;
  }
  if (now_ms() > deadline) {
    dead_letter(m, CTOOL_DLQ_RUN_NOT_WAITING, "the reply came after the call's deadline%s", "");
    return;
  }
  m->stage = 1;
  apply(m);
}

static void lookup(trep_msg *m) {
  trep *t = m->t;
  const char *id = m->reply->correlation_id;
  char head[TSTATE_CORR_KEY_CHARS + 1], digest[CORR_DIGEST_SIZE];
  /* Only the shape is checked here; the signature once the call is known. */
  if (strlen(id) != CORR_ID_LEN ||
      (strncmp(id, CORR_PREFIX, strlen(CORR_PREFIX)) != 0 && strncmp(id, CORR_PREFIX_PINNED, strlen(CORR_PREFIX)) != 0) ||
      strspn(id + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != CORR_ID_LEN - 4) {
    dead_letter(m, CTOOL_DLQ_BAD_CORRELATION,
                "malformed correlation id (expected tc2. or tc1. and 54 base64url characters)%s", "");
    return;
  }
  memcpy(head, id, TSTATE_CORR_KEY_CHARS);
  head[TSTATE_CORR_KEY_CHARS] = '\0';
  if (corr_digest(head, digest) != AW_OK || tstate_corr_lookup(t->ts, digest, on_corr, m) != AW_OK) {
    t->st.redis_errors++;
    retry_later(m);
  }
}

static void msg_step(trep_msg *m) {
  trep *t = m->t;
  if (!ptab_current(&t->parts, m->partition, m->gen)) {
    /* Revoked meanwhile: the new owner reads it again. */
    t->in_flight--;
    msg_free(m);
    return;
  }
  switch (m->stage) {
  case 0: lookup(m); break;
  case 1: apply(m); break;
  default: dlq_send(m); break; /* the reason was kept when it was decided */
  }
}

/* ---- consumption ------------------------------------------------------------------ */

static void on_message(void *opaque, rd_kafka_message_t *km) {
  trep *t = opaque;
  if (km->err) {
    t->st.kafka_errors++;
    log_warn(NULL, "tool reply consumer error: %s", rd_kafka_message_errstr(km));
    rd_kafka_message_destroy(km);
    return;
  }
  ptab_part *p = ptab_get(&t->parts, km->partition);
  trep_msg *m = calloc(1, sizeof *m);
  if (!p || !m || otrk_add(&p->t, km->offset) != AW_OK) {
    log_error(NULL, "cannot track tool reply offset %lld", (long long)km->offset);
    free(m);
    rd_kafka_message_destroy(km);
    return;
  }
  t->st.consumed++;
  t->in_flight++;
  m->t = t;
  m->partition = km->partition;
  m->offset = km->offset;
  m->gen = p->gen;
  if (km->len) {
    m->orig = malloc(km->len);
    if (m->orig) memcpy(m->orig, km->payload, km->len);
    m->orig_len = km->len;
  }
  if (km->key) {
    m->key = malloc(km->key_len ? km->key_len : 1);
    if (m->key && km->key_len) memcpy(m->key, km->key, km->key_len);
    m->key_len = km->key_len;
  }
  const char *code = NULL, *unauth = NULL;
  char errstr[256];
  int rc = (km->len && !m->orig) || (km->key && !m->key)
               ? AW_ENOMEM
               : ctool_reply_decode(km->payload, km->len, t->cfg.max_output, &m->reply, &code, errstr,
                                    sizeof errstr);
  if (rc == AW_OK) {
    /* The service's signature, before anything else looks at the reply
     * (tool_sign.h): a racer who read the request has the correlation id,
     * not the key. */
    rd_kafka_headers_t *hdrs = NULL;
    const void *sig = NULL;
    size_t sig_len = 0;
    if (rd_kafka_message_headers(km, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        rd_kafka_header_get_last(hdrs, TSIG_HEADER, &sig, &sig_len) != RD_KAFKA_RESP_ERR_NO_ERROR)
      sig = NULL;
    else if (!sig)
      sig = ""; /* a header with a null value: present, and malformed */
    const char *why = NULL;
    int vrc = t->cfg.request_key ? tsig_reply_verify(t->cfg.request_key, m->reply, sig, sig_len, &why)
                                 : (why = "no tool request key", AW_EINVAL);
    if (vrc == AW_ENOMEM || vrc == AW_EFATAL) rc = AW_ENOMEM; /* retried, like a lack of memory */
    else if (vrc != AW_OK) unauth = why ? why : TSIG_R_MISMATCH;
  }
  rd_kafka_message_destroy(km);
  if (rc == AW_ENOMEM) {
    /* Left untracked-done: the offset is not committed past it. */
    log_error(NULL, "out of memory keeping a tool reply");
    m->stage = 2;
    snprintf(m->dlq_code, sizeof m->dlq_code, "internal_error");
    snprintf(m->dlq_msg, sizeof m->dlq_msg, "out of memory");
    retry_later(m);
  } else if (rc != AW_OK) {
    m->reply = NULL;
    dead_letter(m, code ? code : "malformed_reply", "%s", errstr);
  } else if (unauth && strcmp(unauth, TSIG_R_MISSING) == 0) {
    dead_letter(m, CTOOL_DLQ_UNSIGNED_REPLY, "the reply carries no " TSIG_HEADER " header (%s)", unauth);
  } else if (unauth) {
    dead_letter(m, CTOOL_DLQ_BAD_REPLY_SIGNATURE, "the reply's " TSIG_HEADER " header does not verify (%s)", unauth);
  } else {
    lookup(m);
  }
  check_pressure(t);
}

static void on_assign(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
  trep *t = opaque;
  ptab_assign(&t->parts, parts);
  ptab_log("partitions assigned", t->cfg.topic, parts);
}

static void on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
  trep *t = opaque;
  commit(t, 1);
  ptab_revoke(&t->parts, parts);
  ptab_log("partitions revoked", t->cfg.topic, parts);
}

int trep_new(uv_loop_t *loop, const trep_config *cfg, rd_kafka_conf_t *consumer_conf, kp *producer,
             tstate *ts, const corr_key *key, trep_complete_fn on_complete, void *opaque,
             unsigned dr_tag, trep **out, char *errstr, size_t errstr_size) {
  trep *t = calloc(1, sizeof *t);
  if (!t) {
    rd_kafka_conf_destroy(consumer_conf);
    return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  }
  t->loop = loop;
  t->cfg = *cfg;
  if (t->cfg.max_in_flight <= 0) t->cfg.max_in_flight = 1000;
  if (t->cfg.commit_interval_ms <= 0) t->cfg.commit_interval_ms = 200;
  t->producer = producer;
  t->ts = ts;
  t->key = key;
  t->on_complete = on_complete;
  t->opaque = opaque;
  t->dr_tag = dr_tag;
  kc_handlers h = {on_message, on_assign, on_revoke};
  int rc = kc_new(loop, consumer_conf, cfg->topic, &h, t, 256, &t->consumer, errstr, errstr_size);
  if (rc) {
    rd_kafka_conf_destroy(consumer_conf);
    free(t);
    return rc;
  }
  uv_timer_init(loop, &t->retry_timer);
  uv_timer_init(loop, &t->commit_timer);
  t->retry_timer.data = t->commit_timer.data = t;
  uv_timer_start(&t->commit_timer, on_commit_timer, (uint64_t)t->cfg.commit_interval_ms,
                 (uint64_t)t->cfg.commit_interval_ms);
  *out = t;
  return AW_OK;
}

void trep_stop(trep *t) {
  if (!t || t->stopping) return;
  t->stopping = 1;
  if (kc_pause(t->consumer) != AW_OK) log_warn(NULL, "could not pause the tool reply consumer");
  commit(t, 1);
}

long trep_in_flight(const trep *t) { return t ? t->in_flight : 0; }

void trep_get_stats(const trep *t, trep_stats *out) {
  if (t) *out = t->st;
  else memset(out, 0, sizeof *out);
}

static void on_closed(uv_handle_t *h) {
  trep *t = h->data;
  if (--t->handles_open == 0) free(t);
}

void trep_free(trep *t) {
  if (!t) return;
  t->freeing = 1;
  commit(t, 1);
  kc_close(t->consumer);
  /* Replies waiting for a retry; those waiting for Redis were freed by
   * their failed callbacks, those waiting for a delivery report by the
   * producer's flush (trep_on_dr returns early while freeing). */
  while (t->retry_head) {
    trep_msg *m = t->retry_head;
    t->retry_head = m->retry_next;
    msg_free(m);
  }
  ptab_free(&t->parts);
  t->handles_open = 2;
  uv_close((uv_handle_t *)&t->retry_timer, on_closed);
  uv_close((uv_handle_t *)&t->commit_timer, on_closed);
}

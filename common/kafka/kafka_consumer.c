/* kafka_consumer.c -- group consumer served from the libuv loop. */
#include "kafka_consumer.h"

#include <stdlib.h>
#include <string.h>

#include "kafka_uv.h"
#include "log.h"

struct kc {
  rd_kafka_t *rk;
  rd_kafka_queue_t *q;  /* the consumer queue (messages, rebalances, errors) */
  kuv_watch *watch;
  kc_handlers h;
  void *opaque;
  int max_batch;
  int paused;
  rd_kafka_topic_partition_list_t *assigned;
  kc_revoke_gate_fn gate;
  void *gate_opaque;
  rd_kafka_topic_partition_list_t *held; /* a revocation waiting for kc_revoke_release */
  int held_cooperative;
  int revoking;                          /* KC_REVOKE_* while on_revoke runs */
  int closing;
  kc_commit_done_fn notify;              /* kc_commit_notify's callback, while one is due */
  void *notify_opaque;
};

/* The owner sees revocations before they happen so that it can commit what
 * is done, and assignments before fetching starts.  Both protocols are
 * handled: with cooperative-sticky (the default we configure) a rebalance
 * moves only the partitions that change owner, so the other partitions keep
 * working through it; with an eager strategy everything is revoked first. */
static void assigned_add(kc *c, const rd_kafka_topic_partition_list_t *parts) {
  if (!c->assigned) c->assigned = rd_kafka_topic_partition_list_new(parts->cnt);
  for (int i = 0; i < parts->cnt; i++)
    if (!rd_kafka_topic_partition_list_find(c->assigned, parts->elems[i].topic, parts->elems[i].partition))
      rd_kafka_topic_partition_list_add(c->assigned, parts->elems[i].topic, parts->elems[i].partition);
}

static void assigned_remove(kc *c, const rd_kafka_topic_partition_list_t *parts) {
  if (!c->assigned) return;
  for (int i = 0; i < parts->cnt; i++)
    rd_kafka_topic_partition_list_del(c->assigned, parts->elems[i].topic, parts->elems[i].partition);
}

/* Carry out a revocation: the owner commits (on_revoke), then librdkafka
 * stops fetching the partitions and the rebalance goes on. */
static void revoke_now(kc *c, const rd_kafka_topic_partition_list_t *parts, int cooperative, int how) {
  rd_kafka_error_t *e = NULL;
  c->revoking = rd_kafka_assignment_lost(c->rk) ? KC_REVOKE_LOST : how;
  if (c->h.on_revoke) c->h.on_revoke(c->opaque, parts);
  c->revoking = 0;
  if (cooperative) e = rd_kafka_incremental_unassign(c->rk, parts);
  else rd_kafka_assign(c->rk, NULL);
  if (cooperative) assigned_remove(c, parts);
  else if (c->assigned) {
    rd_kafka_topic_partition_list_destroy(c->assigned);
    c->assigned = NULL;
  }
  if (e) {
    log_error(NULL, "kafka rebalance: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
}

void kc_revoke_release(kc *c) {
  if (!c || !c->held) return;
  rd_kafka_topic_partition_list_t *parts = c->held;
  c->held = NULL;
  /* Paused by hold(): a pause outlives the assignment in librdkafka, so it
   * is lifted before the partitions go (they may come back to us). */
  if (parts->cnt) rd_kafka_resume_partitions(c->rk, parts);
  revoke_now(c, parts, c->held_cooperative, KC_REVOKE_HELD);
  rd_kafka_topic_partition_list_destroy(parts);
}

int kc_revoke_held(const kc *c) { return c && c->held != NULL; }
int kc_revoking(const kc *c) { return c ? c->revoking : 0; }

void kc_set_revoke_gate(kc *c, kc_revoke_gate_fn gate, void *opaque) {
  c->gate = gate;
  c->gate_opaque = opaque;
}

/* Hold a revocation (see kc_set_revoke_gate): the partitions stay assigned
 * but paused until the owner releases it.  A second revocation while one is
 * held joins it. */
static int hold(kc *c, const rd_kafka_topic_partition_list_t *parts, int cooperative) {
  if (!c->gate || c->closing || rd_kafka_assignment_lost(c->rk)) return 0;
  if (!c->held && !c->gate(c->gate_opaque, parts)) return 0;
  if (!c->held) {
    c->held = rd_kafka_topic_partition_list_copy(parts);
    if (!c->held) return 0; /* out of memory: revoke at once (blocking) */
  } else {
    for (int i = 0; i < parts->cnt; i++)
      if (!rd_kafka_topic_partition_list_find(c->held, parts->elems[i].topic, parts->elems[i].partition))
        rd_kafka_topic_partition_list_add(c->held, parts->elems[i].topic, parts->elems[i].partition);
  }
  c->held_cooperative = cooperative;
  if (parts->cnt) rd_kafka_pause_partitions(c->rk, (rd_kafka_topic_partition_list_t *)parts);
  log_debug(NULL, "kafka rebalance: revocation of %d partitions held until their commit is done", parts->cnt);
  return 1;
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque) {
  kc *c = opaque;
  int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  rd_kafka_error_t *e = NULL;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    /* A later rebalance supersedes a held revocation (librdkafka may rejoin
     * without waiting, e.g. when the topic's metadata changed): carry it out
     * first, or its late unassign would drop partitions assigned now. */
    kc_revoke_release(c);
    if (c->h.on_assign) c->h.on_assign(c->opaque, parts);
    if (cooperative) e = rd_kafka_incremental_assign(rk, parts);
    else rd_kafka_assign(rk, parts);
    assigned_add(c, parts);
    if (c->paused && parts->cnt) rd_kafka_pause_partitions(rk, parts);
  } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS && hold(c, parts, cooperative)) {
    return;
  } else {
    kc_revoke_release(c);
    revoke_now(c, parts, cooperative, KC_REVOKE_NOW);
  }
  if (e) {
    log_error(NULL, "kafka rebalance: %s", rd_kafka_error_string(e));
    rd_kafka_error_destroy(e);
  }
}

static int serve(void *opaque) {
  kc *c = opaque;
  for (int i = 0; i < c->max_batch; i++) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 0);
    if (!m) return 0;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      rd_kafka_message_destroy(m);
      continue;
    }
    c->h.on_message(c->opaque, m);
  }
  return 1; /* more may be queued: come back next iteration */
}

int kc_new(uv_loop_t *loop, rd_kafka_conf_t *conf, const char *topic, const kc_handlers *h,
           void *opaque, int max_batch, kc **out, char *errstr, size_t errstr_size) {
  kc *c = calloc(1, sizeof *c);
  if (!c) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  c->h = *h;
  c->opaque = opaque;
  c->max_batch = max_batch > 0 ? max_batch : 256;
  char e[512];
  if (rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof e) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "enable.auto.offset.store", "false", e, sizeof e) != RD_KAFKA_CONF_OK) {
    free(c);
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "kafka consumer config: %s", e);
  }
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  rd_kafka_conf_set_opaque(conf, c);
  c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
  if (!c->rk) {
    free(c);
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "kafka consumer: %s", e);
  }
  /* conf is owned by rk from here on */
  rd_kafka_poll_set_consumer(c->rk);
  c->q = rd_kafka_queue_get_consumer(c->rk);
  rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, sub);
  rd_kafka_topic_partition_list_destroy(sub);
  if (err) {
    rd_kafka_queue_destroy(c->q);
    rd_kafka_destroy(c->rk);
    free(c);
    return aw_seterr(AW_EKAFKA, errstr, errstr_size, "subscribe %s: %s", topic, rd_kafka_err2str(err));
  }
  if (kuv_watch_new(loop, c->q, serve, c, 100, &c->watch) != AW_OK) {
    rd_kafka_queue_destroy(c->q);
    rd_kafka_destroy(c->rk);
    free(c);
    return aw_seterr(AW_EIO, errstr, errstr_size, "kafka consumer: cannot watch queue");
  }
  *out = c;
  return AW_OK;
}

int kc_pause(kc *c) {
  if (c->paused) return AW_OK;
  c->paused = 1;
  if (c->assigned && rd_kafka_pause_partitions(c->rk, c->assigned)) return AW_EKAFKA;
  return AW_OK;
}

int kc_resume(kc *c) {
  if (!c->paused) return AW_OK;
  c->paused = 0;
  if (c->assigned && rd_kafka_resume_partitions(c->rk, c->assigned)) return AW_EKAFKA;
  return AW_OK;
}

int kc_paused(const kc *c) { return c->paused; }

int kc_pause_partition(kc *c, int32_t partition, int pause) {
  if (!c->assigned) return AW_ESTATE;
  for (int i = 0; i < c->assigned->cnt; i++) {
    if (c->assigned->elems[i].partition != partition) continue;
    rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(one, c->assigned->elems[i].topic, partition);
    rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, one) : rd_kafka_resume_partitions(c->rk, one);
    rd_kafka_topic_partition_list_destroy(one);
    return err ? AW_EKAFKA : AW_OK;
  }
  return AW_ENOTFOUND;
}

int kc_commit(kc *c, const rd_kafka_topic_partition_list_t *offsets, int async) {
  rd_kafka_resp_err_t err = rd_kafka_commit(c->rk, offsets, async);
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
    log_warn(NULL, "kafka commit failed: %s", rd_kafka_err2str(err));
    return AW_EKAFKA;
  }
  return AW_OK;
}

/* librdkafka's commit callback, served by rd_kafka_consumer_poll on the
 * consumer queue (serve), so on the loop. */
static void on_commit_reply(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets,
                            void *opaque) {
  (void)rk;
  (void)offsets;
  kc *c = opaque;
  kc_commit_done_fn done = c->notify;
  c->notify = NULL;
  if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) log_warn(NULL, "kafka commit failed: %s", rd_kafka_err2str(err));
  if (done) done(c->notify_opaque, err && err != RD_KAFKA_RESP_ERR__NO_OFFSET ? AW_EKAFKA : AW_OK);
}

int kc_commit_notify(kc *c, const rd_kafka_topic_partition_list_t *offsets, kc_commit_done_fn done, void *opaque) {
  if (c->notify || c->closing || !done) return AW_ESTATE;
  c->notify = done;
  c->notify_opaque = opaque;
  rd_kafka_resp_err_t err = rd_kafka_commit_queue(c->rk, offsets, c->q, on_commit_reply, c);
  if (err) {
    c->notify = NULL;
    log_warn(NULL, "kafka commit failed: %s", rd_kafka_err2str(err));
    return AW_EKAFKA;
  }
  return AW_OK;
}

rd_kafka_t *kc_handle(kc *c) { return c->rk; }

void kc_close(kc *c) {
  if (!c) return;
  kuv_watch_free(c->watch);
  c->closing = 1;
  c->notify = NULL; /* a late commit reply served by the close calls no one */
  kc_revoke_release(c);
  rd_kafka_consumer_close(c->rk); /* runs the revoke callback */
  rd_kafka_queue_destroy(c->q);
  if (c->assigned) rd_kafka_topic_partition_list_destroy(c->assigned);
  if (c->held) rd_kafka_topic_partition_list_destroy(c->held);
  rd_kafka_destroy(c->rk);
  free(c);
}

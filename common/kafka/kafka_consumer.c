/* kafka_consumer.c -- group consumer served from the libuv loop. */
#include "kafka_consumer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_committed.h"
#include "kafka_uv.h"
#include "log.h"

/* Why a partition is held, beyond the owner's KC_PAUSE_* bits: a held
 * revocation (hold), or it was assigned while closing (never handed to the
 * owner, see settle_first_assignment). */
enum { HOLD_REVOKE = 0x100, HOLD_SILENT = 0x200 };

/* A kc_committed fetch under way. */
typedef struct kc_fetch {
  struct kc *c;
  kcm *f;
  kc_committed_fn done;
  void *opaque;
  struct kc_fetch *next;
} kc_fetch;

struct kc {
  uv_loop_t *loop;
  rd_kafka_t *rk;
  rd_kafka_queue_t *q;  /* the consumer queue (messages, rebalances, errors) */
  kuv_watch *watch;
  kc_handlers h;
  void *opaque;
  int max_batch;
  int paused;
  /* The partitions assigned, each with its hold bits (KC_PAUSE_*, HOLD_*)
   * in the element's opaque: librdkafka pauses a partition while any bit or
   * `paused` is set. */
  rd_kafka_topic_partition_list_t *assigned;
  int start_held;                        /* kc_set_start_held */
  int assign_seen;                       /* a (first) assignment was handed to us */
  kc_fetch *fetches;                     /* kc_committed's, under way */
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
static unsigned bits_of(const rd_kafka_topic_partition_t *e) { return (unsigned)(uintptr_t)e->opaque; }
static void set_bits(rd_kafka_topic_partition_t *e, unsigned b) { e->opaque = (void *)(uintptr_t)b; }

static rd_kafka_topic_partition_t *assigned_find(const kc *c, const char *topic, int32_t partition) {
  return c->assigned ? rd_kafka_topic_partition_list_find(c->assigned, topic, partition) : NULL;
}

/* Pause (1) or resume (0) one partition in librdkafka. */
static int set_one(kc *c, const char *topic, int32_t partition, int pause) {
  rd_kafka_topic_partition_list_t *one = rd_kafka_topic_partition_list_new(1);
  if (!one) return AW_ENOMEM;
  rd_kafka_topic_partition_list_add(one, topic, partition);
  rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, one) : rd_kafka_resume_partitions(c->rk, one);
  rd_kafka_topic_partition_list_destroy(one);
  return err ? AW_EKAFKA : AW_OK;
}

/* Newly assigned partitions start with `bits`. */
static void assigned_add(kc *c, const rd_kafka_topic_partition_list_t *parts, unsigned bits) {
  if (!c->assigned) c->assigned = rd_kafka_topic_partition_list_new(parts->cnt);
  if (!c->assigned) return;
  for (int i = 0; i < parts->cnt; i++) {
    rd_kafka_topic_partition_t *e = assigned_find(c, parts->elems[i].topic, parts->elems[i].partition);
    if (!e) e = rd_kafka_topic_partition_list_add(c->assigned, parts->elems[i].topic, parts->elems[i].partition);
    set_bits(e, bits);
  }
}

static void assigned_remove(kc *c, const rd_kafka_topic_partition_list_t *parts) {
  if (!c->assigned) return;
  for (int i = 0; i < parts->cnt; i++)
    rd_kafka_topic_partition_list_del(c->assigned, parts->elems[i].topic, parts->elems[i].partition);
}

/* The owner hears of the partitions it was told were assigned, not of those
 * assigned while closing: NULL when that is all of parts (use parts), else
 * a new list, possibly empty. */
static rd_kafka_topic_partition_list_t *told_only(const kc *c, const rd_kafka_topic_partition_list_t *parts) {
  int silent = 0;
  for (int i = 0; i < parts->cnt; i++) {
    const rd_kafka_topic_partition_t *e = assigned_find(c, parts->elems[i].topic, parts->elems[i].partition);
    if (e && (bits_of(e) & HOLD_SILENT)) silent++;
  }
  if (!silent) return NULL;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(parts->cnt);
  for (int i = 0; l && i < parts->cnt; i++) {
    const rd_kafka_topic_partition_t *e = assigned_find(c, parts->elems[i].topic, parts->elems[i].partition);
    if (!e || !(bits_of(e) & HOLD_SILENT))
      rd_kafka_topic_partition_list_add(l, parts->elems[i].topic, parts->elems[i].partition);
  }
  return l;
}

/* Carry out a revocation: the owner commits (on_revoke), then librdkafka
 * stops fetching the partitions and the rebalance goes on. */
static void revoke_now(kc *c, const rd_kafka_topic_partition_list_t *parts, int cooperative, int how) {
  rd_kafka_error_t *e = NULL;
  c->revoking = rd_kafka_assignment_lost(c->rk) ? KC_REVOKE_LOST : how;
  if (c->h.on_revoke) {
    rd_kafka_topic_partition_list_t *told = told_only(c, parts);
    if (!told) c->h.on_revoke(c->opaque, parts);
    else if (told->cnt) c->h.on_revoke(c->opaque, told);
    if (told) rd_kafka_topic_partition_list_destroy(told);
  }
  c->revoking = 0;
  /* A pause outlives the assignment in librdkafka: lifted before the
   * partitions go, so that one coming back to us is paused only for the
   * reasons it has then.  Nothing is delivered in between: messages reach
   * the owner only through the poll on this same thread. */
  int held = c->paused;
  for (int i = 0; i < parts->cnt && !held; i++) {
    const rd_kafka_topic_partition_t *a = assigned_find(c, parts->elems[i].topic, parts->elems[i].partition);
    held = a && bits_of(a);
  }
  if (held && parts->cnt) rd_kafka_resume_partitions(c->rk, (rd_kafka_topic_partition_list_t *)parts);
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
  /* Paused by hold() (HOLD_REVOKE): revoke_now lifts it before they go. */
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
  for (int i = 0; i < parts->cnt; i++) {
    rd_kafka_topic_partition_t *e = assigned_find(c, parts->elems[i].topic, parts->elems[i].partition);
    if (e) set_bits(e, bits_of(e) | HOLD_REVOKE); /* kc_resume leaves it paused */
  }
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
    c->assign_seen = 1;
    /* While closing (settle_first_assignment) the partitions are taken, to
     * complete the rebalance, but the owner never hears of them. */
    unsigned bits = c->closing ? HOLD_SILENT : c->start_held ? KC_PAUSE_START : 0;
    if (cooperative) e = rd_kafka_incremental_assign(rk, parts);
    else rd_kafka_assign(rk, parts);
    assigned_add(c, parts, bits);
    /* Paused in the same callback as assigned: librdkafka's pause bumps the
     * partition's version, so nothing fetched before it is ever delivered. */
    if ((c->paused || bits) && parts->cnt) rd_kafka_pause_partitions(rk, parts);
    /* The owner hears of them once they are ours and held as they should
     * be, so it may release them from here (kc_pause_partition). */
    if (c->h.on_assign && !c->closing) c->h.on_assign(c->opaque, parts);
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
    /* Nothing joined yet: no assignor state, destroying is safe. */
    rd_kafka_queue_destroy(c->q);
    rd_kafka_destroy(c->rk);
    free(c);
    return aw_seterr(AW_EKAFKA, errstr, errstr_size, "subscribe %s: %s", topic, rd_kafka_err2str(err));
  }
  c->loop = loop;
  {
    const char *kv[] = {"topic", topic, "kafka_client", rd_kafka_name(c->rk)};
    log_writekv(LOG_INFO, NULL, "consumer subscribed", kv, 2);
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
  if (c->assigned && c->assigned->cnt && rd_kafka_pause_partitions(c->rk, c->assigned)) return AW_EKAFKA;
  return AW_OK;
}

int kc_resume(kc *c) {
  if (!c->paused) return AW_OK;
  c->paused = 0;
  if (!c->assigned) return AW_OK;
  /* Only what nothing else holds. */
  rd_kafka_topic_partition_list_t *free_ = rd_kafka_topic_partition_list_new(c->assigned->cnt);
  if (!free_) return AW_ENOMEM;
  for (int i = 0; i < c->assigned->cnt; i++)
    if (!bits_of(&c->assigned->elems[i]))
      rd_kafka_topic_partition_list_add(free_, c->assigned->elems[i].topic, c->assigned->elems[i].partition);
  rd_kafka_resp_err_t err = free_->cnt ? rd_kafka_resume_partitions(c->rk, free_) : RD_KAFKA_RESP_ERR_NO_ERROR;
  rd_kafka_topic_partition_list_destroy(free_);
  return err ? AW_EKAFKA : AW_OK;
}

int kc_paused(const kc *c) { return c->paused; }

void kc_set_start_held(kc *c, int on) { c->start_held = on != 0; }

int kc_pause_partition(kc *c, int32_t partition, unsigned reason, int on) {
  rd_kafka_topic_partition_t *e = NULL;
  for (int i = 0; c->assigned && i < c->assigned->cnt && !e; i++)
    if (c->assigned->elems[i].partition == partition) e = &c->assigned->elems[i];
  if (!e) return AW_ENOTFOUND;
  reason &= KC_PAUSE_LIMIT | KC_PAUSE_START;
  unsigned before = bits_of(e), after = on ? before | reason : before & ~reason;
  set_bits(e, after);
  int was = c->paused || before, now = c->paused || after;
  return was == now ? AW_OK : set_one(c, e->topic, partition, now);
}

/* ---- committed offsets, off the loop ---------------------------------------- */

static void on_fetched(void *opaque, rd_kafka_topic_partition_list_t *offsets, int err, const char *errstr) {
  kc_fetch *n = opaque;
  kc_fetch **pp = &n->c->fetches;
  while (*pp && *pp != n) pp = &(*pp)->next;
  if (*pp) *pp = n->next;
  n->done(n->opaque, offsets, err, errstr);
  free(n);
}

int kc_committed(kc *c, const rd_kafka_topic_partition_list_t *parts, int attempt_timeout_ms, int max_attempts,
                 kc_committed_fn done, void *opaque) {
  kc_fetch *n = calloc(1, sizeof *n);
  if (!n) return AW_ENOMEM;
  n->c = c;
  n->done = done;
  n->opaque = opaque;
  kcm_policy pol = {attempt_timeout_ms, max_attempts, 250, 4000};
  int rc = kcm_start(c->loop, c->rk, parts, &pol, on_fetched, n, &n->f);
  if (rc != AW_OK) {
    free(n);
    return rc;
  }
  n->next = c->fetches;
  c->fetches = n;
  return AW_OK;
}

/* Before the handle goes: their threads use it.  Each done hears
 * AW_ECANCELLED (on_fetched unlinks it).  What is left of them until the
 * loop runs again refers to nothing in the handle (kafka_committed.h), so
 * rd_kafka_destroy below does not wait for it. */
static void cancel_fetches(kc *c) {
  while (c->fetches) kcm_cancel(c->fetches->f);
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

/* ---- closing ---------------------------------------------------------------
 *
 * librdkafka 2.0.2 aborts the process (rd_kafka_sticky_assignor_state_destroy:
 * Assertion `assignor_state' failed; upstream issue #4312, fixed in 2.3.0)
 * when a cooperative-sticky consumer is destroyed between its group's
 * answer to JoinGroup and its first assignment: the JoinGroup answer sets
 * the group's assignor (rkcg_assignor), the first assignment (SyncGroup)
 * its state, and the group's final destroy calls the sticky assignor's
 * destroy, which asserts the state, whenever an assignor is set.  Once
 * closing, the group drops a SyncGroup answer, so closing in that window
 * always ends in the abort; it is a window of milliseconds normally, of
 * seconds while the group waits for its leader, and it is where a SIGTERM
 * about a second after the start landed.
 *
 * The maintainers' workaround is not to close a cooperative consumer before
 * its first rebalance completed.  So, before closing: if no assignment
 * came yet and librdkafka reports the COOPERATIVE protocol (it reports NONE
 * until the JoinGroup answer set the assignor: rd_kafka_rebalance_protocol),
 * the queue is served, up to KC_CLOSE_SETTLE_MS, until the assignment
 * arrives; the rebalance callback takes it (it must, to complete the
 * rebalance) but paused and without telling the owner, and the close then
 * revokes it as usual.  With NONE the close goes at once: a JoinGroup
 * answer that arrives once the group is terminating is discarded, so no
 * assignor is set (left: the microseconds between the protocol check and
 * the close's terminate request).  If the wait runs out (the coordinator
 * stalled in that very window), destroying would abort for certain: the
 * handle is left to the process's exit instead (still reachable, so
 * LeakSanitizer does not count it), after the close left the group. */

#define MAX_PARKED 8
static rd_kafka_t *parked[MAX_PARKED]; /* handles never destroyed (see above) */

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* 1 when the handle must not be destroyed. */
static int settle_first_assignment(kc *c) {
  uint64_t end = now_ms() + KC_CLOSE_SETTLE_MS;
  int waited = 0;
  while (!c->assign_seen) {
    const char *proto = rd_kafka_rebalance_protocol(c->rk);
    if (!proto || strcmp(proto, "COOPERATIVE") != 0) return 0;
    if (now_ms() >= end) {
      log_error(NULL, "kafka consumer %s: closing %d ms after its group answered its join but before its first "
                      "assignment; the handle is not destroyed (librdkafka 2.0.2 would abort, issue #4312)",
                rd_kafka_name(c->rk), KC_CLOSE_SETTLE_MS);
      return 1;
    }
    if (!waited)
      log_info(NULL, "kafka consumer %s: closing before its first assignment; waiting up to %d ms for it",
               rd_kafka_name(c->rk), KC_CLOSE_SETTLE_MS);
    waited = 1;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 100); /* serves the rebalance callback */
    if (m) rd_kafka_message_destroy(m);
  }
  if (waited) log_info(NULL, "kafka consumer %s: first assignment received; closing", rd_kafka_name(c->rk));
  return 0;
}

void kc_close(kc *c) {
  if (!c) return;
  kuv_watch_free(c->watch);
  c->closing = 1;
  c->notify = NULL; /* a late commit reply served by the close calls no one */
  cancel_fetches(c);
  kc_revoke_release(c);
  int park = settle_first_assignment(c);
  rd_kafka_consumer_close(c->rk); /* runs the revoke callback */
  rd_kafka_queue_destroy(c->q);
  if (c->assigned) rd_kafka_topic_partition_list_destroy(c->assigned);
  if (c->held) rd_kafka_topic_partition_list_destroy(c->held);
  for (int i = 0; park && i < MAX_PARKED; i++)
    if (!parked[i]) {
      parked[i] = c->rk;
      c->rk = NULL;
      break;
    }
  if (c->rk) rd_kafka_destroy(c->rk);
  free(c);
}

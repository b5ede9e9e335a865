/* kafka_committed.c -- rd_kafka_committed() on libuv's thread pool, with a
 * bounded number of bounded attempts (see the header for why).
 *
 * Costs: one pool thread per fetch while it waits for the coordinator (the
 * pool has 4 by default and nothing else of ours uses it), and with a
 * stalled broker one OffsetFetch request per attempt left to time out in
 * librdkafka (socket.timeout.ms).  Shorter attempts would make kcm_cancel
 * quicker but pile more requests onto a slow coordinator. */
#include "kafka_committed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kcm {
  uv_work_t req;                          /* req.data == this */
  rd_kafka_t *rk;
  /* The thread's until it ends; then the result.  Names only (see
   * plain_copy): nothing in it refers into rk, so it may outlive rk. */
  rd_kafka_topic_partition_list_t *parts;
  kcm_policy pol;
  kcm_done_fn done;                       /* loop side; NULL once called */
  void *opaque;
  /* What the thread and kcm_cancel share, under mu. */
  uv_mutex_t mu;
  uv_cond_t cv;                           /* in_call dropped, or cancelled set */
  int in_call;                            /* the thread is inside rd_kafka_committed() */
  int cancelled;
  /* The thread's verdict, read on the loop once it ended (after-work). */
  int err;
  char errstr[160];
};

static void destroy(kcm *f) {
  if (f->parts) rd_kafka_topic_partition_list_destroy(f->parts);
  uv_cond_destroy(&f->cv);
  uv_mutex_destroy(&f->mu);
  free(f);
}

/* topic and partition of each element of l, nothing else.  Not
 * rd_kafka_topic_partition_list_copy: in librdkafka 2.0.2 an element of a
 * list librdkafka made (the rebalance callback's) carries a reference to
 * its partition object (_private, a toppar), which the copy takes too, and
 * a toppar holds a reference to its leader broker until its last reference
 * goes.  rd_kafka_destroy joins each broker thread, which ends only once
 * nothing else refers to its broker: a copy still alive then (a fetch
 * cancelled at the close, freed by after_work on the loop, which runs only
 * after the close) made rd_kafka_destroy wait for ever. */
static rd_kafka_topic_partition_list_t *plain_copy(const rd_kafka_topic_partition_list_t *l) {
  rd_kafka_topic_partition_list_t *c = rd_kafka_topic_partition_list_new(l->cnt > 0 ? l->cnt : 1);
  for (int i = 0; c && i < l->cnt; i++)
    rd_kafka_topic_partition_list_add(c, l->elems[i].topic, l->elems[i].partition);
  return c;
}

/* A partition the coordinator answered with an error (e.g. an unstable
 * offset: a transaction holding its offsets is still open) counts as a
 * failed attempt: the whole list is asked again. */
static rd_kafka_resp_err_t partition_error(const rd_kafka_topic_partition_list_t *l) {
  for (int i = 0; i < l->cnt; i++)
    if (l->elems[i].err) return l->elems[i].err;
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

/* Waits on f->cv until cancelled or ms passed; called with f->mu held. */
static void backoff_locked(kcm *f, int ms) {
  uint64_t end = uv_hrtime() + (uint64_t)ms * 1000000u;
  while (!f->cancelled) {
    uint64_t now = uv_hrtime();
    if (now >= end || uv_cond_timedwait(&f->cv, &f->mu, end - now) == UV_ETIMEDOUT) return;
  }
}

/* The pool thread. */
static void work(uv_work_t *req) {
  kcm *f = req->data;
  rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR__TIMED_OUT;
  int backoff = f->pol.backoff_ms, attempt = 0, cancelled = 0;
  for (;;) {
    uv_mutex_lock(&f->mu);
    cancelled = f->cancelled;
    if (!cancelled) f->in_call = 1;
    uv_mutex_unlock(&f->mu);
    if (cancelled) break;
    attempt++;
    rd_kafka_resp_err_t e = rd_kafka_committed(f->rk, f->parts, f->pol.attempt_timeout_ms);
    if (!e) e = partition_error(f->parts);
    uv_mutex_lock(&f->mu);
    f->in_call = 0;
    uv_cond_broadcast(&f->cv);
    if (!e) {
      uv_mutex_unlock(&f->mu);
      f->err = AW_OK;
      return;
    }
    last = e;
    if (!f->cancelled && attempt < f->pol.max_attempts) backoff_locked(f, backoff);
    cancelled = f->cancelled;
    uv_mutex_unlock(&f->mu);
    if (cancelled || attempt >= f->pol.max_attempts) break;
    backoff = backoff * 2 > f->pol.backoff_max_ms ? f->pol.backoff_max_ms : backoff * 2;
  }
  f->err = cancelled ? AW_ECANCELLED : last == RD_KAFKA_RESP_ERR__TIMED_OUT ? AW_ETIMEDOUT : AW_EKAFKA;
  snprintf(f->errstr, sizeof f->errstr, "%s after %d attempt(s) of %d ms", rd_kafka_err2str(last), attempt,
           f->pol.attempt_timeout_ms);
}

/* Back on the loop: the thread is done with the handle and with f. */
static void after_work(uv_work_t *req, int status) {
  kcm *f = req->data;
  kcm_done_fn done = f->done;
  f->done = NULL;
  if (done) {
    int err = status == UV_ECANCELED ? AW_ECANCELLED : f->err;
    rd_kafka_topic_partition_list_t *res = NULL;
    if (err == AW_OK) {
      res = f->parts;
      f->parts = NULL;
    }
    done(f->opaque, res, err, err == AW_OK ? "" : f->errstr);
  }
  destroy(f);
}

int kcm_start(uv_loop_t *loop, rd_kafka_t *rk, const rd_kafka_topic_partition_list_t *parts,
              const kcm_policy *policy, kcm_done_fn done, void *opaque, kcm **out) {
  kcm *f = calloc(1, sizeof *f);
  if (!f) return AW_ENOMEM;
  if (uv_mutex_init(&f->mu) != 0) {
    free(f);
    return AW_ENOMEM;
  }
  if (uv_cond_init(&f->cv) != 0) {
    uv_mutex_destroy(&f->mu);
    free(f);
    return AW_ENOMEM;
  }
  f->parts = plain_copy(parts);
  if (!f->parts) {
    destroy(f);
    return AW_ENOMEM;
  }
  f->rk = rk;
  f->pol = *policy;
  if (f->pol.attempt_timeout_ms < 1) f->pol.attempt_timeout_ms = 1;
  if (f->pol.max_attempts < 1) f->pol.max_attempts = 1;
  if (f->pol.backoff_ms < 0) f->pol.backoff_ms = 0;
  if (f->pol.backoff_max_ms < f->pol.backoff_ms) f->pol.backoff_max_ms = f->pol.backoff_ms;
  f->done = done;
  f->opaque = opaque;
  f->req.data = f;
  if (uv_queue_work(loop, &f->req, work, after_work) != 0) {
    destroy(f);
    return AW_ENOMEM;
  }
  *out = f;
  return AW_OK;
}

void kcm_cancel(kcm *f) {
  if (!f || !f->done) return;
  uv_mutex_lock(&f->mu);
  f->cancelled = 1;
  uv_cond_broadcast(&f->cv);
  while (f->in_call) uv_cond_wait(&f->cv, &f->mu);
  /* The thread touches the list only inside the call: released here, so
   * that nothing of the fetch but its memory is left to after_work. */
  rd_kafka_topic_partition_list_t *parts = f->parts;
  f->parts = NULL;
  uv_mutex_unlock(&f->mu);
  if (parts) rd_kafka_topic_partition_list_destroy(parts);
  kcm_done_fn done = f->done;
  f->done = NULL;
  done(f->opaque, NULL, AW_ECANCELLED, "cancelled");
}

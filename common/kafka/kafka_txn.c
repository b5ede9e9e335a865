/* kafka_txn.c -- transactional producer: produce on the loop, commit on a
 * thread (see the header for the states).
 *
 * Stopping.  A retriable transactional call is attempted up to 1 + 10
 * times, each attempt bounded by the attempt timeout (30 s by default), and
 * ktx_free joins the thread: with a broker that cannot be reached (init
 * keeps timing out) that was minutes, past Kubernetes' termination grace
 * period.  So ktx_free first raises `stopping` (under mu), which the thread
 * reads before every attempt: the attempt in progress still ends by its
 * timeout (librdkafka's blocking calls cannot be interrupted), no other
 * starts, and ktx_free waits for at most one attempt.  Nothing is lost by
 * not finishing: what was not committed is aborted by the broker (the
 * transaction times out, or the next producer with our transactional.id
 * fences it) and its events are consumed again. */
#include "kafka_txn.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_producer.h"
#include "kafka_uv.h"
#include "log.h"

#define TXN_ATTEMPT_TIMEOUT_MS 30000 /* default of ktx_options.attempt_timeout_ms */
#define TXN_RETRIES 10               /* attempts after the first one, for a retriable error */

enum { S_STARTING, S_OPEN, S_COMMITTING, S_FATAL };
enum { JOB_NONE, JOB_INIT, JOB_COMMIT, JOB_STOP };

struct ktx {
  uv_loop_t *loop;
  rd_kafka_t *rk;
  rd_kafka_queue_t *mainq;
  kuv_watch *watch;
  ktx_dr_fn dr;
  ktx_done_fn done;
  void *opaque;
  int state;           /* loop-owned */
  uint64_t seq;
  long pending, produced, failed;
  size_t max_bytes;    /* message.max.bytes */
  /* The thread and what it shares with the loop (under mu). */
  pthread_t th;
  int th_started;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int job, job_done;
  rd_kafka_topic_partition_list_t *offsets;
  rd_kafka_consumer_group_metadata_t *cgmd;
  int abort;
  int abort_asked;     /* by the caller (else: a message of it failed) */
  int attempt_ms;      /* each attempt of a blocking call (ktx_options) */
  int stopping;        /* under mu: ktx_free asked for no further attempt */
  int res_committed, res_fatal;
  char res_err[512];
  uv_async_t async;
};

/* ---- the thread: every blocking transactional call ------------------------- */

static const char *const CALL_NAMES[] = {"init_transactions", "begin_transaction", "send_offsets_to_transaction",
                                         "commit_transaction", "abort_transaction"};

static int stop_asked(ktx *t) {
  pthread_mutex_lock(&t->mu);
  int s = t->stopping;
  pthread_mutex_unlock(&t->mu);
  return s;
}

/* Run one transactional call, retrying what librdkafka calls retriable,
 * unless ktx_free asked to stop (checked before every attempt).  Returns
 * NULL on success, else the error (owned by the caller). */
static rd_kafka_error_t *retrying(ktx *t, int what) {
  const char *name = CALL_NAMES[what >= 0 && what <= 4 ? what : 4];
  if (stop_asked(t)) return rd_kafka_error_new(RD_KAFKA_RESP_ERR__DESTROY, "%s: not attempted, stopping", name);
  for (int attempt = 1;; attempt++) {
    rd_kafka_error_t *e = NULL;
    switch (what) {
    case 0: e = rd_kafka_init_transactions(t->rk, t->attempt_ms); break;
    case 1: e = rd_kafka_begin_transaction(t->rk); break;
    case 2: e = rd_kafka_send_offsets_to_transaction(t->rk, t->offsets, t->cgmd, t->attempt_ms); break;
    case 3: e = rd_kafka_commit_transaction(t->rk, t->attempt_ms); break;
    default: e = rd_kafka_abort_transaction(t->rk, t->attempt_ms); break;
    }
    if (!e || !rd_kafka_error_is_retriable(e)) return e;
    int again = attempt <= TXN_RETRIES && !stop_asked(t);
    log_warn(NULL, "kafka transactions: %s attempt %d failed (%s)%s", name, attempt, rd_kafka_error_string(e),
             again ? ", retrying" : attempt <= TXN_RETRIES ? ", stopping" : ", giving up");
    if (!again) return e;
    rd_kafka_error_destroy(e);
  }
}

static void keep_error(ktx *t, const char *what, rd_kafka_error_t *e) {
  snprintf(t->res_err, sizeof t->res_err, "%s: %s", what, rd_kafka_error_string(e));
  if (rd_kafka_error_is_fatal(e)) t->res_fatal = 1;
}

static void run_commit(ktx *t) {
  rd_kafka_error_t *e = NULL;
  int abort = t->abort;
  if (!abort && t->offsets && t->offsets->cnt > 0) {
    e = retrying(t, 2);
    if (e) {
      keep_error(t, "send_offsets_to_transaction", e);
      abort = 1;
      rd_kafka_error_destroy(e);
    }
  }
  if (!abort && !t->res_fatal) {
    e = retrying(t, 3);
    if (e) {
      keep_error(t, "commit_transaction", e);
      abort = 1;
      rd_kafka_error_destroy(e);
    } else {
      t->res_committed = 1;
    }
  }
  if (abort && !t->res_fatal) {
    if (!t->res_err[0])
      snprintf(t->res_err, sizeof t->res_err, "%s",
               t->abort_asked ? "aborted on purpose: an answer in it cannot be committed now"
                              : "a message of the transaction was not delivered");
    e = retrying(t, 4);
    if (e) {
      keep_error(t, "abort_transaction", e);
      rd_kafka_error_destroy(e);
    }
  }
  if (!t->res_fatal) {
    e = retrying(t, 1);
    if (e) {
      keep_error(t, "begin_transaction", e);
      t->res_fatal = 1; /* no transaction to produce into: restart */
      rd_kafka_error_destroy(e);
    }
  }
}

static void *thread_main(void *arg) {
  ktx *t = arg;
  pthread_mutex_lock(&t->mu);
  for (;;) {
    while (t->job == JOB_NONE) pthread_cond_wait(&t->cv, &t->mu);
    int job = t->job;
    if (job == JOB_STOP) break;
    pthread_mutex_unlock(&t->mu);
    t->res_committed = t->res_fatal = 0;
    t->res_err[0] = '\0';
    if (job == JOB_INIT) {
      rd_kafka_error_t *e = retrying(t, 0);
      if (!e) e = retrying(t, 1);
      if (e) {
        keep_error(t, "init_transactions", e);
        t->res_fatal = 1;
        rd_kafka_error_destroy(e);
      }
    } else {
      run_commit(t);
    }
    pthread_mutex_lock(&t->mu);
    t->job = JOB_NONE;
    t->job_done = 1;
    pthread_cond_broadcast(&t->cv);
    uv_async_send(&t->async);
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

static void post(ktx *t, int job) {
  pthread_mutex_lock(&t->mu);
  t->job = job;
  t->job_done = 0;
  pthread_cond_broadcast(&t->cv);
  pthread_mutex_unlock(&t->mu);
}

/* ---- the loop side ----------------------------------------------------------------- */

/* The thread finished a job: take its result (once). */
static void finish_job(ktx *t) {
  pthread_mutex_lock(&t->mu);
  int done = t->job_done;
  t->job_done = 0;
  pthread_mutex_unlock(&t->mu);
  if (!done) return;
  if (t->offsets) rd_kafka_topic_partition_list_destroy(t->offsets);
  if (t->cgmd) rd_kafka_consumer_group_metadata_destroy(t->cgmd);
  t->offsets = NULL;
  t->cgmd = NULL;
  int was = t->state;
  if (t->res_fatal) {
    t->state = S_FATAL;
    log_error(NULL, "kafka transactions failed fatally: %s", t->res_err);
  } else {
    t->state = S_OPEN;
  }
  if (was == S_STARTING && t->state == S_OPEN) {
    log_info(NULL, "kafka transactions ready");
    return;
  }
  /* A failed start is reported like a failed commit, so the owner learns
   * that it is fatal. */
  uint64_t seq = t->seq++;
  t->pending = t->produced = t->failed = 0;
  t->done(t->opaque, seq, t->res_committed, t->res_err);
}

static void on_async(uv_async_t *h) { finish_job(h->data); }

static void serve_event(ktx *t, rd_kafka_event_t *e) {
  switch (rd_kafka_event_type(e)) {
  case RD_KAFKA_EVENT_DR: {
    const rd_kafka_message_t *m;
    while ((m = rd_kafka_event_message_next(e))) {
      t->pending--;
      if (m->err) t->failed++;
      t->dr(t->opaque, m->_private, m->err);
    }
    break;
  }
  case RD_KAFKA_EVENT_ERROR:
    if (rd_kafka_event_error_is_fatal(e)) {
      char why[512];
      rd_kafka_fatal_error(t->rk, why, sizeof why);
      log_error(NULL, "kafka transactional producer: fatal: %s", why);
      if (t->state != S_COMMITTING) t->state = S_FATAL;
    } else {
      log_warn(NULL, "kafka transactional producer: %s", rd_kafka_event_error_string(e));
    }
    break;
  default: break;
  }
  rd_kafka_event_destroy(e);
}

static int serve(void *opaque) {
  ktx *t = opaque;
  for (int i = 0; i < 64; i++) {
    rd_kafka_event_t *e = rd_kafka_queue_poll(t->mainq, 0);
    if (!e) return 0;
    serve_event(t, e);
  }
  return 1;
}

int ktx_new(uv_loop_t *loop, rd_kafka_conf_t *conf, ktx_dr_fn dr, ktx_done_fn done, void *opaque, ktx **out,
            char *errstr, size_t errstr_size) {
  return ktx_new_opts(loop, conf, NULL, dr, done, opaque, out, errstr, errstr_size);
}

int ktx_new_opts(uv_loop_t *loop, rd_kafka_conf_t *conf, const ktx_options *opt, ktx_dr_fn dr, ktx_done_fn done,
                 void *opaque, ktx **out, char *errstr, size_t errstr_size) {
  if (opt && opt->attempt_timeout_ms < 0)
    return aw_seterr(AW_EINVAL, errstr, errstr_size, "kafka transactional producer: negative attempt timeout");
  ktx *t = calloc(1, sizeof *t);
  if (!t) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  t->attempt_ms = opt && opt->attempt_timeout_ms > 0 ? opt->attempt_timeout_ms : TXN_ATTEMPT_TIMEOUT_MS;
  t->loop = loop;
  t->dr = dr;
  t->done = done;
  t->opaque = opaque;
  char e[512];
  size_t n = sizeof e;
  if (rd_kafka_conf_get(conf, "transactional.id", e, &n) != RD_KAFKA_CONF_OK || !e[0]) {
    free(t);
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "kafka transactional producer: no transactional.id");
  }
  t->max_bytes = kp_conf_max_message_bytes(conf);
  rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR);
  t->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
  if (!t->rk) {
    free(t);
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "kafka transactional producer: %s", e);
  }
  t->mainq = rd_kafka_queue_get_main(t->rk);
  pthread_mutex_init(&t->mu, NULL);
  pthread_cond_init(&t->cv, NULL);
  uv_async_init(loop, &t->async, on_async);
  t->async.data = t;
  if (kuv_watch_new(loop, t->mainq, serve, t, 50, &t->watch) != AW_OK ||
      pthread_create(&t->th, NULL, thread_main, t) != 0) {
    ktx_free(t);
    return aw_seterr(AW_EIO, errstr, errstr_size, "kafka transactional producer: cannot start");
  }
  t->th_started = 1;
  t->state = S_STARTING;
  post(t, JOB_INIT);
  *out = t;
  return AW_OK;
}

int ktx_open(const ktx *t) { return t && t->state == S_OPEN; }
int ktx_fatal(const ktx *t) { return t && t->state == S_FATAL; }
uint64_t ktx_seq(const ktx *t) { return t->seq; }
long ktx_pending(const ktx *t) { return t->pending; }
long ktx_produced(const ktx *t) { return t->produced; }
int ktx_doomed(const ktx *t) { return t && t->state == S_OPEN && t->failed > 0; }
rd_kafka_t *ktx_handle(ktx *t) { return t->rk; }
size_t ktx_max_message_bytes(const ktx *t) { return t->max_bytes; }
int ktx_committing(const ktx *t) { return t && t->state == S_COMMITTING; }

int ktx_produce(ktx *t, const char *topic, const void *key, size_t keylen, const void *value, size_t len,
                void *msg_opaque) {
  if (t->state != S_OPEN) return AW_EAGAIN;
  /* Refused before producing: librdkafka would refuse it too, and a record
   * that never entered the transaction cannot poison it. */
  if (kp_record_size(keylen, len, 0) > t->max_bytes) return AW_ETOOBIG;
  rd_kafka_resp_err_t err = rd_kafka_producev(
      t->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, len),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
  if (err == RD_KAFKA_RESP_ERR__STATE) {
    /* The transaction failed (a refused batch, a sequence gap): librdkafka
     * takes nothing more until it is aborted. */
    t->failed++;
    return AW_ESTATE;
  }
  if (err) return kp_err_code(err);
  t->pending++;
  t->produced++;
  return AW_OK;
}

int ktx_commit(ktx *t, rd_kafka_topic_partition_list_t *offsets, rd_kafka_consumer_group_metadata_t *cgmd,
               int abort) {
  if (t->state != S_OPEN || t->pending > 0) return AW_EAGAIN;
  t->offsets = offsets;
  t->cgmd = cgmd;
  t->abort = abort || t->failed > 0;
  t->abort_asked = abort && t->failed == 0;
  t->state = S_COMMITTING;
  post(t, JOB_COMMIT);
  return AW_OK;
}

/* Block until the thread is idle and take its result. */
static void wait_job(ktx *t) {
  pthread_mutex_lock(&t->mu);
  while (t->job != JOB_NONE) pthread_cond_wait(&t->cv, &t->mu);
  pthread_mutex_unlock(&t->mu);
  finish_job(t);
}

int ktx_flush(ktx *t, int timeout_ms) {
  if (t->state == S_COMMITTING || t->state == S_STARTING) wait_job(t);
  for (int waited = 0; t->state == S_OPEN && t->pending > 0 && waited < timeout_ms; waited += 100) {
    rd_kafka_event_t *e = rd_kafka_queue_poll(t->mainq, 100);
    if (e) serve_event(t, e);
  }
  if (t->state != S_OPEN) return AW_ESTATE;
  return t->pending > 0 ? AW_ETIMEDOUT : AW_OK;
}

int ktx_commit_sync(ktx *t, rd_kafka_topic_partition_list_t *offsets, rd_kafka_consumer_group_metadata_t *cgmd,
                    int abort) {
  int rc = ktx_commit(t, offsets, cgmd, abort);
  if (rc != AW_OK) {
    if (offsets) rd_kafka_topic_partition_list_destroy(offsets);
    if (cgmd) rd_kafka_consumer_group_metadata_destroy(cgmd);
    return rc == AW_EAGAIN && t->state == S_OPEN ? AW_EAGAIN : AW_ESTATE;
  }
  wait_job(t);
  return t->state == S_FATAL ? AW_ESTATE : t->res_committed ? AW_OK : AW_EKAFKA;
}

static void on_async_closed(uv_handle_t *h) { free(h->data); }

void ktx_free(ktx *t) {
  if (!t) return;
  if (t->th_started) {
    pthread_mutex_lock(&t->mu);
    t->stopping = 1; /* the job in progress makes no further attempt */
    while (t->job != JOB_NONE) pthread_cond_wait(&t->cv, &t->mu);
    t->job = JOB_STOP;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    pthread_join(t->th, NULL);
  }
  if (t->state == S_OPEN && t->produced > 0) {
    rd_kafka_error_t *e = rd_kafka_abort_transaction(t->rk, 5000);
    if (e) rd_kafka_error_destroy(e);
  }
  if (t->offsets) rd_kafka_topic_partition_list_destroy(t->offsets);
  if (t->cgmd) rd_kafka_consumer_group_metadata_destroy(t->cgmd);
  kuv_watch_free(t->watch);
  rd_kafka_queue_destroy(t->mainq);
  rd_kafka_destroy(t->rk);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  uv_close((uv_handle_t *)&t->async, on_async_closed);
}

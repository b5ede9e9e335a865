/* kafka_producer.c -- idempotent producer with delivery reports on the loop. */
#include "kafka_producer.h"

#include <stdlib.h>

#include "kafka_uv.h"

struct kp {
  rd_kafka_t *rk;
  rd_kafka_queue_t *mainq;
  kuv_watch *watch;
  kp_dr_cb dr;
  void *cb_opaque;
};

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  kp *p = opaque;
  p->dr(p->cb_opaque, m->_private, m->err);
}

/* rd_kafka_poll serves delivery reports in batches; 0 timeout never blocks. */
static int serve(void *opaque) {
  kp *p = opaque;
  rd_kafka_poll(p->rk, 0);
  return 0;
}

int kp_new(uv_loop_t *loop, rd_kafka_conf_t *conf, kp_dr_cb dr, void *cb_opaque, kp **out,
           char *errstr, size_t errstr_size) {
  kp *p = calloc(1, sizeof *p);
  if (!p) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  p->dr = dr;
  p->cb_opaque = cb_opaque;
  char e[512];
  if (rd_kafka_conf_set(conf, "enable.idempotence", "true", e, sizeof e) != RD_KAFKA_CONF_OK) {
    free(p);
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "kafka producer config: %s", e);
  }
  rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
  rd_kafka_conf_set_opaque(conf, p);
  p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
  if (!p->rk) {
    free(p);
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "kafka producer: %s", e);
  }
  p->mainq = rd_kafka_queue_get_main(p->rk);
  if (kuv_watch_new(loop, p->mainq, serve, p, 50, &p->watch) != AW_OK) {
    rd_kafka_queue_destroy(p->mainq);
    rd_kafka_destroy(p->rk);
    free(p);
    return aw_seterr(AW_EIO, errstr, errstr_size, "kafka producer: cannot watch queue");
  }
  *out = p;
  return AW_OK;
}

int kp_produce(kp *p, const char *topic, const void *key, size_t keylen, const void *value,
               size_t len, void *msg_opaque) {
  rd_kafka_resp_err_t err = rd_kafka_producev(
      p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
      RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
  if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return AW_EAGAIN;
  return err ? AW_EKAFKA : AW_OK;
}

int kp_produce_hdr(kp *p, const char *topic, const void *key, size_t keylen, const void *value,
                   size_t len, const char *const *headers, size_t nheaders, void *msg_opaque) {
  if (!nheaders) return kp_produce(p, topic, key, keylen, value, len, msg_opaque);
  rd_kafka_headers_t *h = rd_kafka_headers_new(nheaders);
  if (!h) return AW_ENOMEM;
  for (size_t i = 0; i < nheaders; i++)
    if (rd_kafka_header_add(h, headers[2 * i], -1, headers[2 * i + 1], -1)) {
      rd_kafka_headers_destroy(h);
      return AW_EINVAL;
    }
  rd_kafka_resp_err_t err = rd_kafka_producev(
      p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
      RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
  /* On success librdkafka owns the headers; on failure they are ours. */
  if (err) rd_kafka_headers_destroy(h);
  if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return AW_EAGAIN;
  return err ? AW_EKAFKA : AW_OK;
}

int kp_outq_len(kp *p) { return rd_kafka_outq_len(p->rk); }

void kp_flush(kp *p, int timeout_ms) { rd_kafka_flush(p->rk, timeout_ms); }

rd_kafka_t *kp_handle(kp *p) { return p->rk; }

void kp_free(kp *p) {
  if (!p) return;
  kuv_watch_free(p->watch);
  rd_kafka_queue_destroy(p->mainq);
  rd_kafka_destroy(p->rk);
  free(p);
}

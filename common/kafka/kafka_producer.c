/* kafka_producer.c -- idempotent producer with delivery reports on the loop. */
#include "kafka_producer.h"

#include <stdlib.h>
#include <string.h>

#include "kafka_uv.h"

struct kp {
  rd_kafka_t *rk;
  rd_kafka_queue_t *mainq;
  kuv_watch *watch;
  kp_dr_cb dr;
  void *cb_opaque;
  size_t max_bytes; /* message.max.bytes */
};

int kp_err_too_big(rd_kafka_resp_err_t err) {
  switch (err) {
  case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:   /* producer (local) or broker: topic max.message.bytes */
  case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE: /* broker: the batch exceeds the segment size */
  case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    return 1;
  default:
    return 0;
  }
}

int kp_err_permanent(rd_kafka_resp_err_t err) {
  if (kp_err_too_big(err)) return 1;
  switch (err) {
  case RD_KAFKA_RESP_ERR_INVALID_MSG:     /* corrupt record (CRC) */
  case RD_KAFKA_RESP_ERR_INVALID_RECORD:  /* the broker's validation refused it */
  case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
  case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
  case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
  case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
  case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
  case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
  case RD_KAFKA_RESP_ERR__INVALID_ARG:
    return 1;
  default:
    /* __MSG_TIMED_OUT, __QUEUE_FULL, NOT_LEADER, __TRANSPORT, __UNKNOWN_TOPIC
     * (the topic may yet be created), __FATAL (the producer reports it on its
     * own, and the owner stops), ...: retriable. */
    return 0;
  }
}

int kp_err_code(rd_kafka_resp_err_t err) {
  if (!err) return AW_OK;
  if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) return AW_EAGAIN;
  if (kp_err_too_big(err)) return AW_ETOOBIG;
  return kp_err_permanent(err) ? AW_EINVAL : AW_EKAFKA;
}

size_t kp_record_size(size_t keylen, size_t len, size_t hdrlen) {
  return len + keylen + hdrlen + KP_RECORD_OVERHEAD;
}

size_t kp_conf_max_message_bytes(const rd_kafka_conf_t *conf) {
  char v[32];
  size_t n = sizeof v;
  if (!conf || rd_kafka_conf_get(conf, "message.max.bytes", v, &n) != RD_KAFKA_CONF_OK) return 1000000;
  long long x = strtoll(v, NULL, 10);
  return x > 0 ? (size_t)x : 1000000;
}

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
  p->max_bytes = kp_conf_max_message_bytes(conf);
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
  /* Checked here so that the caller learns it now, before anything is
   * queued, and can produce a smaller record instead. */
  if (kp_record_size(keylen, len, 0) > p->max_bytes) return AW_ETOOBIG;
  rd_kafka_resp_err_t err = rd_kafka_producev(
      p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, keylen),
      RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_OPAQUE(msg_opaque), RD_KAFKA_V_END);
  return kp_err_code(err);
}

int kp_produce_hdr(kp *p, const char *topic, const void *key, size_t keylen, const void *value,
                   size_t len, const char *const *headers, size_t nheaders, void *msg_opaque) {
  if (!nheaders) return kp_produce(p, topic, key, keylen, value, len, msg_opaque);
  size_t hdrlen = 0;
  for (size_t i = 0; i < 2 * nheaders; i++) hdrlen += strlen(headers[i]) + 8;
  if (kp_record_size(keylen, len, hdrlen) > p->max_bytes) return AW_ETOOBIG;
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
  return kp_err_code(err);
}

int kp_outq_len(kp *p) { return rd_kafka_outq_len(p->rk); }

void kp_flush(kp *p, int timeout_ms) { rd_kafka_flush(p->rk, timeout_ms); }

rd_kafka_t *kp_handle(kp *p) { return p->rk; }

size_t kp_max_message_bytes(const kp *p) { return p->max_bytes; }

void kp_free(kp *p) {
  if (!p) return;
  kuv_watch_free(p->watch);
  rd_kafka_queue_destroy(p->mainq);
  rd_kafka_destroy(p->rk);
  free(p);
}

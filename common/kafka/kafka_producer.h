/* kafka_producer.h -- an idempotent Kafka producer on the libuv loop
 * (prefix kp_).
 *
 * enable.idempotence is forced on (acks=all, no reordering or duplicates on
 * internal retries), so per-key order of what one worker produces holds.
 * Delivery reports are served from the loop and passed to one callback with
 * the opaque given at produce time; a message counts as durably published
 * only when its report says so.
 */
#ifndef AW_KAFKA_PRODUCER_H
#define AW_KAFKA_PRODUCER_H

#include <librdkafka/rdkafka.h>
#include <uv.h>
#include "aw_error.h"

typedef struct kp kp;

/** Delivery report: err is RD_KAFKA_RESP_ERR_NO_ERROR when the broker has it. */
typedef void (*kp_dr_cb)(void *cb_opaque, void *msg_opaque, rd_kafka_resp_err_t err);

/** Create; takes ownership of conf on success. */
int kp_new(uv_loop_t *loop, rd_kafka_conf_t *conf, kp_dr_cb dr, void *cb_opaque, kp **out,
           char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Produce (the value and key are copied).  AW_EAGAIN when librdkafka's
 *  queue is full (retry later), AW_EKAFKA otherwise. */
int kp_produce(kp *p, const char *topic, const void *key, size_t keylen, const void *value,
               size_t len, void *msg_opaque) AW_MUST_CHECK;

/** kp_produce with Kafka headers: nheaders name/value pairs of C strings
 *  in headers[2*i], headers[2*i+1] (copied). */
int kp_produce_hdr(kp *p, const char *topic, const void *key, size_t keylen, const void *value,
                   size_t len, const char *const *headers, size_t nheaders, void *msg_opaque) AW_MUST_CHECK;

/** Messages produced and not yet reported. */
int kp_outq_len(kp *p);

/** Wait up to timeout_ms for outstanding deliveries (blocking; shutdown). */
void kp_flush(kp *p, int timeout_ms);

rd_kafka_t *kp_handle(kp *p);

/** Free (call kp_flush first to deliver what is queued). Safe on NULL. */
void kp_free(kp *p);

#endif

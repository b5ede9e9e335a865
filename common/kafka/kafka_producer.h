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

/* ---- produce errors: permanent or retriable ----------------------------------
 *
 * A permanent error will fail the same way whatever the number of retries:
 * the record itself is at fault (too large, invalid, unsupported) or the
 * producer may not write the topic (authorization, policy).  Its owner must
 * produce something else instead (a degraded record) or give the record up;
 * retrying it would hold its event, and in a Kafka transaction every other
 * event of the transaction, forever.  Every other error is retriable
 * (timeouts, leader changes, a full queue, an unknown topic that may be
 * created).  Pure: any thread. */

/** Record-level permanent errors: the record does not fit (too large, in
 *  the producer or at the broker).  A smaller record may go through. */
int kp_err_too_big(rd_kafka_resp_err_t err);
/** Every permanent error (kp_err_too_big included). */
int kp_err_permanent(rd_kafka_resp_err_t err);
/** What produce() and delivery-report errors mean for the caller:
 *  AW_OK, AW_ETOOBIG (too large: degrade it), AW_EINVAL (permanent
 *  otherwise: no retry will help), AW_EAGAIN (queue full) or AW_EKAFKA
 *  (retriable). */
int kp_err_code(rd_kafka_resp_err_t err);

/** Bytes a produced record occupies against message.max.bytes and the
 *  topic's max.message.bytes: value, key, headers and a margin for the
 *  record and batch framing (KP_RECORD_OVERHEAD). */
#define KP_RECORD_OVERHEAD 512
size_t kp_record_size(size_t keylen, size_t len, size_t hdrlen);

/** The producer's message.max.bytes (librdkafka's default 1000000 when
 *  it cannot be read). */
size_t kp_conf_max_message_bytes(const rd_kafka_conf_t *conf);

/** Delivery report: err is RD_KAFKA_RESP_ERR_NO_ERROR when the broker has it. */
typedef void (*kp_dr_cb)(void *cb_opaque, void *msg_opaque, rd_kafka_resp_err_t err);

/** Create; takes ownership of conf on success. */
int kp_new(uv_loop_t *loop, rd_kafka_conf_t *conf, kp_dr_cb dr, void *cb_opaque, kp **out,
           char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Produce (the value and key are copied).  AW_EAGAIN when librdkafka's
 *  queue is full (retry later), AW_ETOOBIG when the record is larger than
 *  the producer's message.max.bytes (checked before producing: nothing is
 *  queued), AW_EINVAL for another permanent error, AW_EKAFKA otherwise. */
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

/** The producer's message.max.bytes. */
size_t kp_max_message_bytes(const kp *p);

/** Free (call kp_flush first to deliver what is queued). Safe on NULL. */
void kp_free(kp *p);

#endif

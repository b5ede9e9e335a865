/* kafka_conf.h -- librdkafka configuration from our cfg (prefix kconf_).
 *
 * kconf_new builds an rd_kafka_conf_t with, in this order:
 *   bootstrap.servers  = cfg kafka.brokers (required)
 *   client.id          = the caller's client id
 *   the free-form kafka.properties, in file order (they may override client.id)
 *   sasl.username, sasl.password, ssl.key.password from the environment or
 *     mounted files (config_creds.c), when set: they win over the properties
 *   a log callback that writes librdkafka's logs through log.h as JSON lines.
 * The caller then sets what its role needs (group.id, enable.auto.commit...)
 * with kconf_set, after the free-form properties, so those cannot weaken
 * the worker's delivery guarantees by accident.
 *
 * Secrets: the value of a secret property (cfg_is_secret_property:
 * sasl.password, ssl.key.password, ...) never appears in an error message;
 * librdkafka's own log lines go through log_redact like every other line, and
 * librdkafka itself prints sensitive properties as "[redacted]".
 *
 * @locality main thread; the log callback runs on librdkafka's threads
 * (log.h is safe on any thread).
 */
#ifndef AW_KAFKA_CONF_H
#define AW_KAFKA_CONF_H

#include <stddef.h>
#include <librdkafka/rdkafka.h>
#include "aw_error.h"
#include "config.h"

/** Build a librdkafka configuration from c.  On success *out is a new conf
 *  owned by the caller (rd_kafka_new takes it; else rd_kafka_conf_destroy).
 *  AW_ECONFIG when no brokers are configured or librdkafka refuses a
 *  property (the property is named; a secret's value is never shown);
 *  AW_ENOMEM. */
int kconf_new(const cfg *c, const char *client_id, rd_kafka_conf_t **out, char *errstr,
              size_t errstr_size) AW_MUST_CHECK;

/** kconf_new with defaults: NULL-terminated key, value pairs set before the
 *  free-form kafka.properties, so that those can override them (the
 *  workload's timeouts; see KCONF_CONSUMER_DEFAULTS). */
int kconf_new_with(const cfg *c, const char *client_id, const char *const *defaults, rd_kafka_conf_t **out,
                   char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** The request consumer's defaults for this workload (overridable in
 *  kafka.properties): a dead worker's partitions move after 10 s
 *  (session.timeout.ms; librdkafka's default is 45 s), heartbeats every
 *  second (a third of it or less, as Kafka asks). */
#define KCONF_CONSUMER_DEFAULTS "session.timeout.ms", "10000", "heartbeat.interval.ms", "1000"
/** The transactional producer's: a dead worker's open transaction is
 *  aborted by the coordinator 10 s after it began (librdkafka's default is
 *  60 s), so the read_committed readers of the output topics wait at most
 *  that (plus the broker's abort check period,
 *  transaction.abort.timed.out.transaction.cleanup.interval.ms, 10 s by
 *  default) for what the next owner answers.  The worker's transactions
 *  last milliseconds (worker.txn_interval_ms).  librdkafka lowers
 *  message.timeout.ms and socket.timeout.ms to it unless they are set. */
#define KCONF_TXN_DEFAULTS "transaction.timeout.ms", "10000"

/** The limits that interact, checked against each other at start-up:
 *  worker.max_event_bytes and worker.max_answer_bytes against the
 *  producers' message.max.bytes and the consumer's
 *  receive.message.max.bytes, fetch.max.bytes and max.partition.fetch.bytes
 *  (from kafka.properties, else librdkafka's defaults).  AW_ECONFIG with
 *  the reason in errstr when the worker could not work (a consumed event
 *  could never be received; not even a degraded record fits a producer
 *  record); else AW_OK, with what merely degrades (dead letters cut,
 *  answers too large, large events fetched one at a time) in warn
 *  (empty when nothing), one sentence per finding.  The topics'
 *  max.message.bytes are not read from the brokers (see README). */
int kconf_check_limits(const cfg *c, char *warn, size_t warn_size, char *errstr,
                       size_t errstr_size) AW_MUST_CHECK;

/** Set one property; AW_ECONFIG naming the key when librdkafka refuses it
 *  (the value is shown only when the key is not secret). */
int kconf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
              size_t errstr_size) AW_MUST_CHECK;

/** Check at start-up that the brokers accept the configured credentials:
 *  a short-lived client built like every other (kconf_new) asks for
 *  metadata until it answers or timeout_ms passed.  AW_OK when it
 *  answered; AW_ECONFIG (fatal) when librdkafka reported
 *  RD_KAFKA_RESP_ERR__AUTHENTICATION, errstr naming the brokers, the SASL
 *  user, the mechanism and librdkafka's reason (never the password);
 *  AW_ETIMEDOUT (retry: the brokers may come later) when nothing answered.
 *  Why only at start-up: librdkafka treats an authentication failure as
 *  non-fatal and keeps reconnecting, which is right for a running worker (a
 *  password being rotated), but a worker that never got in has wrong
 *  credentials, and would otherwise sit in init_transactions while only
 *  its logs say why.  Blocks up to timeout_ms (main thread, before the
 *  loop runs). */
int kconf_preflight(const cfg *c, int timeout_ms, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** The log callback kconf_new installs (exposed for tests): maps syslog
 *  levels 0-3 to error, 4 to warn, 5-6 to info, 7 to debug, and writes
 *  {"msg": buf, "kafka_fac": fac, "kafka_client": name}. */
void kconf_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

#endif

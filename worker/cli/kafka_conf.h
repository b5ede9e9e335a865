/* kafka_conf.h -- librdkafka configuration from our cfg (prefix kconf_).
 *
 * kconf_new builds an rd_kafka_conf_t with, in this order:
 *   bootstrap.servers  = cfg kafka.brokers (required)
 *   client.id          = the caller's client id
 *   the free-form kafka.properties, in file order (they may override client.id)
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

/** Set one property; AW_ECONFIG naming the key when librdkafka refuses it
 *  (the value is shown only when the key is not secret). */
int kconf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
              size_t errstr_size) AW_MUST_CHECK;

/** The log callback kconf_new installs (exposed for tests): maps syslog
 *  levels 0-3 to error, 4 to warn, 5-6 to info, 7 to debug, and writes
 *  {"msg": buf, "kafka_fac": fac, "kafka_client": name}. */
void kconf_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

#endif

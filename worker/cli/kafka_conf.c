/* kafka_conf.c -- librdkafka configuration from cfg, logs routed to log.h. */
#include "kafka_conf.h"

#include <stdio.h>
#include <string.h>
#include "log.h"

int kconf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
              size_t errstr_size) {
  char rderr[512];
  if (rd_kafka_conf_set(conf, key, value, rderr, sizeof rderr) == RD_KAFKA_CONF_OK) return AW_OK;
  /* librdkafka's message may quote the value: drop it for secrets. */
  if (cfg_is_secret_property(key))
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "Kafka property \"%s\": invalid value (not shown: secret)",
                     key);
  return aw_seterr(AW_ECONFIG, errstr, errstr_size, "Kafka property \"%s\": %s", key, rderr);
}

void kconf_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  log_level lvl = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;
  if (!log_enabled(lvl)) return;
  const char *kv[4] = {"kafka_fac", fac ? fac : "", "kafka_client", rk ? rd_kafka_name(rk) : ""};
  log_writekv(lvl, NULL, buf ? buf : "", kv, 2);
}

int kconf_new(const cfg *c, const char *client_id, rd_kafka_conf_t **out, char *errstr,
              size_t errstr_size) {
  *out = NULL;
  if (!c->kafka.brokers[0])
    return aw_seterr(AW_ECONFIG, errstr, errstr_size,
                     "no Kafka brokers configured (set kafka.brokers in the config file or AW_KAFKA_BROKERS)");
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (!conf) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  int rc = kconf_set(conf, "bootstrap.servers", c->kafka.brokers, errstr, errstr_size);
  if (!rc && client_id) rc = kconf_set(conf, "client.id", client_id, errstr, errstr_size);
  for (size_t i = 0; !rc && i < c->kafka.nprops; i++)
    rc = kconf_set(conf, c->kafka.props[i].key, c->kafka.props[i].value, errstr, errstr_size);
  if (rc) {
    rd_kafka_conf_destroy(conf);
    return rc;
  }
  rd_kafka_conf_set_log_cb(conf, kconf_log_cb);
  *out = conf;
  return AW_OK;
}

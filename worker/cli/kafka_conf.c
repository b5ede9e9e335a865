/* kafka_conf.c -- librdkafka configuration from cfg (credentials included),
 * logs routed to log.h. */
#include "kafka_conf.h"

#include <stdio.h>
#include <stdlib.h>
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
  return kconf_new_with(c, client_id, NULL, out, errstr, errstr_size);
}

int kconf_new_with(const cfg *c, const char *client_id, const char *const *defaults, rd_kafka_conf_t **out,
                   char *errstr, size_t errstr_size) {
  *out = NULL;
  if (!c->kafka.brokers[0])
    return aw_seterr(AW_ECONFIG, errstr, errstr_size,
                     "no Kafka brokers configured (set kafka.brokers in the config file or AW_KAFKA_BROKERS)");
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (!conf) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  int rc = kconf_set(conf, "bootstrap.servers", c->kafka.brokers, errstr, errstr_size);
  if (!rc && client_id) rc = kconf_set(conf, "client.id", client_id, errstr, errstr_size);
  for (size_t i = 0; !rc && defaults && defaults[i] && defaults[i + 1]; i += 2)
    rc = kconf_set(conf, defaults[i], defaults[i + 1], errstr, errstr_size);
  for (size_t i = 0; !rc && i < c->kafka.nprops; i++)
    rc = kconf_set(conf, c->kafka.props[i].key, c->kafka.props[i].value, errstr, errstr_size);
  /* The credentials from the environment or mounted files (config_creds.c),
   * after the properties: they win over the file's. */
  if (!rc && c->kafka.sasl_username[0])
    rc = kconf_set(conf, "sasl.username", c->kafka.sasl_username, errstr, errstr_size);
  if (!rc && c->kafka.sasl_password[0])
    rc = kconf_set(conf, "sasl.password", c->kafka.sasl_password, errstr, errstr_size);
  if (!rc && c->kafka.ssl_key_password[0])
    rc = kconf_set(conf, "ssl.key.password", c->kafka.ssl_key_password, errstr, errstr_size);
  if (rc) {
    rd_kafka_conf_destroy(conf);
    return rc;
  }
  rd_kafka_conf_set_log_cb(conf, kconf_log_cb);
  *out = conf;
  return AW_OK;
}

/* A numeric librdkafka property from kafka.properties, else its default. */
static long long prop(const cfg *c, const char *key, long long dflt) {
  for (size_t i = 0; i < c->kafka.nprops; i++)
    if (strcmp(c->kafka.props[i].key, key) == 0) {
      char *end = NULL;
      long long v = strtoll(c->kafka.props[i].value, &end, 10);
      return end && end != c->kafka.props[i].value && v > 0 ? v : dflt;
    }
  return dflt;
}

/* Room a dead letter's or a response's envelope takes beyond the original
 * or the answer text: ids, source, error, timings, msgpack framing, record
 * framing.  Generous on purpose: it only decides what is reported. */
#define ENVELOPE_BYTES (16 * 1024)

#define ADD_WARN(...)                                                                                       \
  do {                                                                                                      \
    size_t k_ = strlen(warn);                                                                               \
    if (k_ + 1 < warn_size) snprintf(warn + k_, warn_size - k_, "%s" __VA_ARGS__);                         \
  } while (0)

int kconf_check_limits(const cfg *c, char *warn, size_t warn_size, char *errstr, size_t errstr_size) {
  if (warn && warn_size) warn[0] = '\0';
  long long msg_max = prop(c, "message.max.bytes", 1000000);
  long long recv_max = prop(c, "receive.message.max.bytes", 100000000);
  long long fetch_max = prop(c, "fetch.max.bytes", 52428800);
  long long part_max = prop(c, "max.partition.fetch.bytes", 1048576);
  long long ev_max = (long long)c->worker.max_event_bytes;
  long long ans_max = (long long)c->worker.max_answer_bytes;
  /* librdkafka needs a fetch response (up to fetch.max.bytes) to fit
   * receive.message.max.bytes; an event the worker accepts must fit both. */
  if (recv_max < ev_max + 512)
    return aw_seterr(AW_ECONFIG, errstr, errstr_size,
                     "kafka receive.message.max.bytes (%lld) is smaller than worker.max_event_bytes (%lld) + 512: "
                     "events the worker accepts could never be received; raise receive.message.max.bytes or lower "
                     "worker.max_event_bytes",
                     recv_max, ev_max);
  if (msg_max < ENVELOPE_BYTES + 1024)
    return aw_seterr(AW_ECONFIG, errstr, errstr_size,
                     "kafka message.max.bytes (%lld) leaves no room for a response or a degraded dead letter "
                     "(at least %d bytes needed)",
                     msg_max, ENVELOPE_BYTES + 1024);
  if (!warn || !warn_size) return AW_OK;
  const char *sep = "";
  if (ev_max + ENVELOPE_BYTES > msg_max) {
    ADD_WARN("worker.max_event_bytes (%lld) plus a dead letter's envelope exceeds the producer's message.max.bytes "
             "(%lld): a rejected event that large is dead-lettered degraded (its size, SHA-256 and leading bytes)",
             sep, ev_max, msg_max);
    sep = "; ";
  }
  if (ans_max * 2 + ENVELOPE_BYTES > msg_max) {
    /* The text can be in a response twice at most (messages and, for
     * Assistants, nothing else large), so twice is the safe bound. */
    ADD_WARN("worker.max_answer_bytes (%lld) may not fit the producer's message.max.bytes (%lld) with the response's "
             "envelope: such an answer is published as failed with error response_too_large",
             sep, ans_max, msg_max);
    sep = "; ";
  }
  if (part_max < ev_max || fetch_max < ev_max) {
    ADD_WARN("the consumer's max.partition.fetch.bytes (%lld) or fetch.max.bytes (%lld) is below "
             "worker.max_event_bytes (%lld): events that large are still fetched, one per fetch request",
             sep, part_max, fetch_max, ev_max);
  }
  return AW_OK;
}

/* ---- start-up check of the credentials ---------------------------------------------- */

typedef struct preflight {
  char auth_err[512]; /* the first authentication failure librdkafka reported */
} preflight;

/* librdkafka's error callback, served by rd_kafka_poll on this thread. */
static void preflight_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  (void)rk;
  preflight *p = opaque;
  if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION && !p->auth_err[0])
    snprintf(p->auth_err, sizeof p->auth_err, "%s", reason ? reason : rd_kafka_err2str(err));
}

static const char *prop_or(const cfg *c, const char *key, const char *dflt) {
  for (size_t i = 0; i < c->kafka.nprops; i++)
    if (strcmp(c->kafka.props[i].key, key) == 0) return c->kafka.props[i].value;
  return dflt;
}

int kconf_preflight(const cfg *c, int timeout_ms, char *errstr, size_t errstr_size) {
  rd_kafka_conf_t *conf = NULL;
  int rc = kconf_new(c, "assistant-worker-preflight", &conf, errstr, errstr_size);
  if (rc) return rc;
  preflight p = {{0}};
  rd_kafka_conf_set_error_cb(conf, preflight_error_cb);
  rd_kafka_conf_set_opaque(conf, &p);
  char e[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "kafka: %s", e);
  }
  /* Metadata answers once a broker accepted the connection (and its
   * authentication); a refused authentication arrives on the error
   * callback, which rd_kafka_poll serves. */
  rc = AW_ETIMEDOUT;
  for (int waited = 0; waited < timeout_ms && rc == AW_ETIMEDOUT && !p.auth_err[0]; waited += 250) {
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(rk, 0, NULL, &md, 250) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_metadata_destroy(md);
      rc = AW_OK;
    }
    rd_kafka_poll(rk, 0);
  }
  rd_kafka_poll(rk, 0);
  rd_kafka_destroy(rk);
  if (p.auth_err[0]) {
    const char *user = c->kafka.sasl_username[0] ? c->kafka.sasl_username : prop_or(c, "sasl.username", "(none)");
    return aw_seterr(AW_ECONFIG, errstr, errstr_size,
                     "kafka at %s refused authentication (SASL user \"%.64s\", mechanism %s, security.protocol %s): %s",
                     c->kafka.brokers, user, prop_or(c, "sasl.mechanisms", prop_or(c, "sasl.mechanism", "GSSAPI")),
                     prop_or(c, "security.protocol", "plaintext"), p.auth_err);
  }
  if (rc) return aw_seterr(rc, errstr, errstr_size, "kafka at %s did not answer within %d ms", c->kafka.brokers,
                           timeout_ms);
  return AW_OK;
}

/* config.c -- defaults, the JSON config file, validation, accessors, dump.
 *
 * Scalar settings are described once, in cfg_fields: where they live in the
 * file (section + key), which environment variable overrides them, their
 * type and their range.  The file walker and the environment pass
 * (config_env.c) both go through cfg_set_string()/cfg_set_number(), so a
 * value is validated the same way wherever it comes from.  Properties are
 * parsed here; assistants (config_assistants.c) and functions
 * (config_functions.c) have their own files.
 */
#include "config_int.h"

#include <arpa/inet.h>
#include "url_safety.h"

#include <cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "contract_tool.h"
#include "overrides.h"
#include "ev_identity.h"
#include "contract_usage.h"

_Static_assert(CFG_FUNCTION_NAME_SIZE == CTOOL_MAX_NAME + 1, "function names: the contract's bound");
_Static_assert(CFG_TOPIC_SIZE == CTOOL_MAX_TOPIC + 1, "topic names: the contract's bound");

/* ---- field table ---------------------------------------------------------- */


#define OFF(m) offsetof(cfg, m)
#define SZ(m) sizeof(((cfg *)0)->m)
#define S(sec, key, env, t, m) {sec, key, env, t, OFF(m), SZ(m), 0, 0}
#define N(sec, key, env, t, m, lo, hi) {sec, key, env, t, OFF(m), SZ(m), lo, hi}

const field cfg_fields[] = {
    S("kafka", "brokers", "AW_KAFKA_BROKERS", F_STR, kafka.brokers),
    S("kafka", "group_id", "AW_KAFKA_GROUP_ID", F_STR, kafka.group_id),
    S("kafka", "transactional_id", "AW_KAFKA_TRANSACTIONAL_ID", F_STR_OPT, kafka.transactional_id),
    S("kafka", "group_instance_id", "AW_KAFKA_GROUP_INSTANCE_ID", F_STR_OPT, kafka.group_instance_id),
    S("kafka", "sasl_username", "AW_KAFKA_SASL_USERNAME", F_STR_OPT, kafka.sasl_username),
    S("kafka", "sasl_password_file", "AW_KAFKA_SASL_PASSWORD_FILE", F_STR_OPT, kafka.sasl_password_file),
    S("kafka.topics", "requests", "AW_TOPIC_REQUESTS", F_TOPIC, kafka.topic_requests),
    S("kafka.topics", "responses", "AW_TOPIC_RESPONSES", F_TOPIC, kafka.topic_responses),
    S("kafka.topics", "deltas", "AW_TOPIC_DELTAS", F_TOPIC, kafka.topic_deltas),
    S("kafka.topics", "dlq", "AW_TOPIC_DLQ", F_TOPIC, kafka.topic_dlq),
    S("kafka.topics", "tool_requests", "AW_TOPIC_TOOL_REQUESTS", F_TOPIC, kafka.topic_tool_requests),
    S("kafka.topics", "tool_replies", "AW_TOPIC_TOOL_REPLIES", F_TOPIC, kafka.topic_tool_replies),
    S("kafka.topics", "usage", "AW_TOPIC_USAGE", F_TOPIC, kafka.topic_usage),
    S("redis", "host", "AW_REDIS_HOST", F_STR, redis.host),
    N("redis", "port", "AW_REDIS_PORT", F_INT, redis.port, 1, 65535),
    S("redis", "prefix", "AW_REDIS_PREFIX", F_STR, redis.prefix),
    N("redis", "connect_timeout_ms", NULL, F_LONG, redis.connect_timeout_ms, 1, 600000),
    S("redis", "username", "AW_REDIS_USERNAME", F_STR_OPT, redis.username),
    S("redis", "password_file", "AW_REDIS_PASSWORD_FILE", F_STR_OPT, redis.password_file),
    S("api", "backend", "AW_API_BACKEND", F_BACKEND, api.backend),
    S("api", "base_url", "AW_API_BASE_URL", F_URL, api.base_url),
    S("api", "organization", "AW_API_ORG", F_STR_OPT, api.organization),
    S("api", "project", "AW_API_PROJECT", F_STR_OPT, api.project),
    N("api", "timeout_ms", NULL, F_LONG, api.request_timeout_ms, 1, 3600000),
    N("api", "stream_idle_timeout_ms", NULL, F_LONG, api.stream_idle_timeout_ms, 1, 3600000),
    N("api", "max_retries", NULL, F_INT, api.max_retries, 0, 100),
    S("api", "background", "AW_API_BACKGROUND", F_BOOL, api.background),
    S("api", "allow_insecure_http", "AW_API_ALLOW_INSECURE_HTTP", F_BOOL, api.allow_insecure_http),
    N("api.rate_limit", "requests_per_minute", "AW_RATE_LIMIT_RPM", F_LONG, api.rate_limit.requests_per_minute, 0,
      1000000000L),
    N("api.rate_limit", "tokens_per_minute", "AW_RATE_LIMIT_TPM", F_LONG, api.rate_limit.tokens_per_minute, 0,
      100000000000L),
    N("api.rate_limit", "burst_ms", "AW_RATE_LIMIT_BURST_MS", F_LONG, api.rate_limit.burst_ms, 10, 60000),
    N("api.rate_limit", "max_waiting", "AW_RATE_LIMIT_MAX_WAITING", F_LONG, api.rate_limit.max_waiting, 0, 1000000),
    N("worker", "max_in_flight", "AW_MAX_IN_FLIGHT", F_LONG, worker.max_in_flight, 1, 1000000),
    N("worker", "max_in_flight_per_partition", "AW_MAX_IN_FLIGHT_PER_PARTITION", F_LONG,
      worker.max_in_flight_per_partition, 0, 1000000),
    N("worker", "max_queue_per_conversation", "AW_MAX_QUEUE_PER_CONVERSATION", F_LONG,
      worker.max_queue_per_conversation, 0, 1000000),
    N("worker", "max_inflight_bytes", "AW_MAX_INFLIGHT_BYTES", F_SIZE, worker.max_inflight_bytes, 0,
      64L * 1024 * 1024 * 1024),
    N("worker", "max_tool_rounds", "AW_MAX_TOOL_ROUNDS", F_LONG, worker.max_tool_rounds, 1, 1000),
    N("worker", "conversation_ttl_s", "AW_CONVERSATION_TTL_S", F_LONG, worker.conversation_ttl_s, 0,
      10L * 365 * 24 * 3600),
    N("worker", "outcome_ttl_s", "AW_OUTCOME_TTL_S", F_LONG, worker.outcome_ttl_s, 60, 365L * 24 * 3600),
    N("worker", "tool_state_ttl_s", "AW_TOOL_STATE_TTL_S", F_LONG, worker.tool_state_ttl_s, 60, 7L * 24 * 3600),
    N("worker", "tool_state_done_ttl_s", "AW_TOOL_STATE_DONE_TTL_S", F_LONG, worker.tool_state_done_ttl_s, 60,
      30L * 24 * 3600),
    N("worker", "history_max_turns", "AW_HISTORY_MAX_TURNS", F_LONG, worker.history_max_turns, 1, 100000),
    N("worker", "history_max_bytes", "AW_HISTORY_MAX_BYTES", F_SIZE, worker.history_max_bytes, 1024,
      256L * 1024 * 1024),
    N("worker", "history_ttl_s", "AW_HISTORY_TTL_S", F_LONG, worker.history_ttl_s, 0, 10L * 365 * 24 * 3600),
    N("worker", "max_event_bytes", "AW_MAX_EVENT_BYTES", F_SIZE, worker.max_event_bytes, 1024, 64 * 1024 * 1024),
    N("worker", "max_answer_bytes", NULL, F_SIZE, worker.max_answer_bytes, 1024, 64 * 1024 * 1024),
    N("worker", "inline_file_max_bytes", "AW_INLINE_FILE_MAX_BYTES", F_SIZE, worker.inline_file_max_bytes, 0,
      1024 * 1024),
    N("worker", "max_attachments", "AW_MAX_ATTACHMENTS", F_LONG, worker.max_attachments, 0, 100),
    N("worker", "max_inline_bytes", "AW_MAX_INLINE_BYTES", F_SIZE, worker.max_inline_bytes, 1, 64 * 1024 * 1024),
    N("worker", "commit_interval_ms", NULL, F_LONG, worker.commit_interval_ms, 1, 60000),
    N("worker", "health_port", "AW_HEALTH_PORT", F_INT, worker.health_port, 0, 65535),
    S("worker", "health_bind", "AW_HEALTH_BIND", F_STR, worker.health_bind),
    S("worker", "allow_core_dumps", "AW_ALLOW_CORE_DUMPS", F_BOOL, worker.allow_core_dumps),
    S("worker", "allow_assistant_ids", "AW_ALLOW_ASSISTANT_IDS", F_BOOL, worker.allow_assistant_ids),
    S("worker", "reset_deletes_old", "AW_RESET_DELETES_OLD", F_BOOL, worker.reset_deletes_old),
    S("worker", "exactly_once", "AW_EXACTLY_ONCE", F_BOOL, worker.exactly_once),
    N("worker", "txn_interval_ms", NULL, F_LONG, worker.txn_interval_ms, 0, 60000),
    N("worker", "shutdown_grace_ms", "AW_SHUTDOWN_GRACE_MS", F_LONG, worker.shutdown_grace_ms, 1000, 3600000),
    S("worker", "tenant_source", "AW_TENANT_SOURCE", F_STR, worker.tenant_source),
    S("worker", "key_rule", "AW_KEY_RULE", F_STR, worker.key_rule),
    S("usage", "enabled", "AW_USAGE_ENABLED", F_BOOL, usage.enabled),
    /* Not AW_..._KEY: cfg_scrub_secret_env takes *_KEY* variables for secrets. */
    S("usage", "tenant_metadata_key", "AW_USAGE_TENANT_METADATA_FIELD", F_STR_OPT, usage.tenant_metadata_key),
    S("", "log_level", "AW_LOG_LEVEL", F_LEVEL, log_level),
};
const size_t cfg_nfields = sizeof cfg_fields / sizeof cfg_fields[0];

/* Sections that are objects, with the keys they hold beyond cfg_fields. */
static const char *const SECTIONS[] = {"kafka", "kafka.topics", "redis", "api", "api.rate_limit", "worker", "usage"};

void cfg_copy(char *dst, size_t size, const char *src) {
  snprintf(dst, size, "%s", src);
}

int cfg_err(char *errstr, size_t n, const char *fmt, ...) {
  if (errstr && n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, n, fmt, ap);
    va_end(ap);
  }
  return AW_ECONFIG;
}

/* "section.key" or "key" into out. */
const char *cfg_path(const char *section, const char *key, char *out, size_t n) {
  if (section && *section) snprintf(out, n, "%s.%s", section, key);
  else snprintf(out, n, "%s", key);
  return out;
}

int cfg_topic_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > 249 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) return 0;
  for (; *s; s++) {
    char ch = *s;
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '.' || ch == '_' || ch == '-'))
      return 0;
  }
  return 1;
}

/* Set a string-typed field; where names the source ("kafka.brokers" or
 * "AW_KAFKA_BROKERS") for errors. */
int cfg_set_string(cfg *c, const field *f, const char *v, const char *where, char *errstr,
                      size_t n) {
  char *dst = (char *)c + f->off;
  size_t len = strlen(v);
  if (f->type == F_LEVEL) {
    log_level lvl;
    if (log_parse_level(v, &lvl) != AW_OK)
      return cfg_err(errstr, n, "%s: invalid log level \"%.32s\" (expected debug, info, warn, error or off)",
                    where, v);
    c->log_level = lvl;
    return AW_OK;
  }
  if (f->type == F_BACKEND && strcmp(v, "responses") != 0 && strcmp(v, "assistants") != 0 && strcmp(v, "chat") != 0)
    return cfg_err(errstr, n, "%s: unknown backend \"%.32s\" (expected responses, assistants or chat)", where, v);
  if (len >= f->size)
    return cfg_err(errstr, n, "%s: too long (%zu bytes, at most %zu)", where, len, f->size - 1);
  if (len == 0 && f->type != F_STR_OPT) return cfg_err(errstr, n, "%s: must not be empty", where);
  for (const char *p = v; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return cfg_err(errstr, n, "%s: contains a control character", where);
  if (f->type == F_TOPIC && !cfg_topic_ok(v))
    return cfg_err(errstr, n, "%s: invalid Kafka topic name \"%s\" (1..249 of [A-Za-z0-9._-])", where, v);
  if (f->type == F_URL) {
    if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
      char shown[CFG_URL_SIZE];
      return cfg_err(errstr, n, "%s: \"%s\" is not an http:// or https:// URL", where,
                    url_redact(v, shown, sizeof shown));
    }
    memcpy(dst, v, len + 1);
    while (len > 0 && dst[len - 1] == '/') dst[--len] = '\0';
    return AW_OK;
  }
  memcpy(dst, v, len + 1);
  return AW_OK;
}

int cfg_set_number(cfg *c, const field *f, long long v, const char *where, char *errstr, size_t n) {
  if (v < f->lo || v > f->hi)
    return cfg_err(errstr, n, "%s: %lld is out of range [%lld, %lld]", where, v, f->lo, f->hi);
  void *dst = (char *)c + f->off;
  switch (f->type) {
  case F_INT: *(int *)dst = (int)v; break;
  case F_LONG: *(long *)dst = (long)v; break;
  case F_SIZE: *(size_t *)dst = (size_t)v; break;
  default: break;
  }
  return AW_OK;
}

int cfg_is_number_type(ftype t) { return t == F_INT || t == F_LONG || t == F_SIZE; }

/* A JSON number that is an exact integer (cJSON keeps doubles). */
int cfg_json_integer(const cJSON *v, long long *out, const char *where, char *errstr, size_t n) {
  if (!cJSON_IsNumber(v)) return cfg_err(errstr, n, "%s: expected an integer", where);
  double d = v->valuedouble;
  if (d != d || d < -9.0e15 || d > 9.0e15 || d != (double)(long long)d)
    return cfg_err(errstr, n, "%s: expected an integer, got %g", where, d);
  *out = (long long)d;
  return AW_OK;
}

static int set_from_json(cfg *c, const field *f, const cJSON *v, const char *where, char *errstr,
                         size_t n) {
  if (f->type == F_BOOL) {
    if (!cJSON_IsBool(v)) return cfg_err(errstr, n, "%s: expected true or false", where);
    *(int *)((char *)c + f->off) = cJSON_IsTrue(v) ? 1 : 0;
    return AW_OK;
  }
  if (cfg_is_number_type(f->type)) {
    long long x = 0; /* set by cfg_json_integer on success */
    int rc = cfg_json_integer(v, &x, where, errstr, n);
    return rc ? rc : cfg_set_number(c, f, x, where, errstr, n);
  }
  if (!cJSON_IsString(v)) return cfg_err(errstr, n, "%s: expected a string", where);
  return cfg_set_string(c, f, v->valuestring, where, errstr, n);
}

/* ---- init / free ---------------------------------------------------------- */

void cfg_init(cfg *c) {
  memset(c, 0, sizeof *c);
  cfg_copy(c->kafka.group_id, sizeof c->kafka.group_id, "assistant-worker");
  cfg_copy(c->kafka.topic_requests, sizeof c->kafka.topic_requests, "assistant.requests");
  cfg_copy(c->kafka.topic_responses, sizeof c->kafka.topic_responses, "assistant.responses");
  cfg_copy(c->kafka.topic_deltas, sizeof c->kafka.topic_deltas, "assistant.deltas");
  cfg_copy(c->kafka.topic_dlq, sizeof c->kafka.topic_dlq, "assistant.dlq");
  cfg_copy(c->kafka.topic_tool_requests, sizeof c->kafka.topic_tool_requests, CTOOL_DEFAULT_REQUEST_TOPIC);
  cfg_copy(c->kafka.topic_tool_replies, sizeof c->kafka.topic_tool_replies, CTOOL_DEFAULT_REPLY_TOPIC);
  cfg_copy(c->kafka.topic_usage, sizeof c->kafka.topic_usage, CUSAGE_DEFAULT_TOPIC);
  c->usage.enabled = 1;
  cfg_copy(c->redis.host, sizeof c->redis.host, "127.0.0.1");
  c->redis.port = 6379;
  cfg_copy(c->redis.prefix, sizeof c->redis.prefix, "aw");
  c->redis.connect_timeout_ms = 2000;
  cfg_copy(c->api.base_url, sizeof c->api.base_url, "https://api.openai.com/v1");
  cfg_copy(c->api.backend, sizeof c->api.backend, "responses");
  c->api.request_timeout_ms = 30000;
  c->api.stream_idle_timeout_ms = 60000;
  c->api.max_retries = 5;
  c->api.rate_limit.burst_ms = 1000;
  c->api.rate_limit.max_waiting = 100;
  c->worker.max_in_flight = 1000;
  c->worker.max_queue_per_conversation = 100;
  c->worker.max_inflight_bytes = 256UL * 1024 * 1024;
  c->worker.max_tool_rounds = 16;
  c->worker.conversation_ttl_s = 30L * 24 * 3600;
  c->worker.outcome_ttl_s = 7L * 24 * 3600;
  c->worker.tool_state_ttl_s = 900;
  c->worker.tool_state_done_ttl_s = 3600;
  c->worker.history_max_turns = 100;
  c->worker.history_max_bytes = 1024 * 1024;
  c->worker.history_ttl_s = -1; /* unset: worker.conversation_ttl_s (cfg_history_ttl_s) */
  c->worker.max_event_bytes = 1024 * 1024;
  c->worker.max_answer_bytes = 256 * 1024;
  c->worker.inline_file_max_bytes = 256 * 1024;
  c->worker.max_attachments = 10;
  c->worker.max_inline_bytes = 512 * 1024;
  c->worker.commit_interval_ms = 200;
  c->worker.health_port = 0;
  cfg_copy(c->worker.health_bind, sizeof c->worker.health_bind, "0.0.0.0");
  c->worker.exactly_once = 1;
  c->api.background = 1;
  c->worker.txn_interval_ms = 20;
  c->worker.shutdown_grace_ms = 30000;
  cfg_copy(c->worker.tenant_source, sizeof c->worker.tenant_source, "none");
  cfg_copy(c->worker.key_rule, sizeof c->worker.key_rule, "match");
  c->log_level = LOG_INFO;
  c->knowledge.sync_on_start = -1;
  c->knowledge.wait_timeout_ms = CFG_DEFAULT_KB_WAIT_MS;
}

void cfg_free_assistants(cfg *c) {
  for (size_t i = 0; i < c->nassistants; i++) {
    free(c->assistants[i].instructions);
    free(c->assistants[i].tools_json);
    free(c->assistants[i].tool_choice_json);
  }
  memset(c->assistants, 0, sizeof c->assistants);
  c->nassistants = 0;
}

void cfg_free_routes(cfg *c) {
  for (size_t i = 0; i < c->tools.nroutes; i++) free(c->tools.routes[i].parameters_json);
  memset(c->tools.routes, 0, sizeof c->tools.routes);
  c->tools.nroutes = 0;
}

void cfg_free(cfg *c) {
  for (size_t i = 0; i < c->kafka.nprops; i++) {
    free(c->kafka.props[i].key);
    free(c->kafka.props[i].value);
  }
  c->kafka.nprops = 0;
  cfg_free_assistants(c);
  cfg_free_routes(c);
  cfg_free_knowledge(c);
  memset(c->tools.overrides, 0, sizeof c->tools.overrides);
  c->tools.noverrides = 0;
  /* Do not leave keys in freed-but-mapped memory longer than needed. */
  memset(c->api.api_key, 0, sizeof c->api.api_key);
  memset(c->tools.secret, 0, sizeof c->tools.secret);
  memset(c->tools.secret_previous, 0, sizeof c->tools.secret_previous);
  explicit_bzero(c->tools.request_key, sizeof c->tools.request_key);
  explicit_bzero(c->tools.request_key_previous, sizeof c->tools.request_key_previous);
  explicit_bzero(c->redis.password, sizeof c->redis.password);
  explicit_bzero(c->kafka.sasl_password, sizeof c->kafka.sasl_password);
  explicit_bzero(c->kafka.ssl_key_password, sizeof c->kafka.ssl_key_password);
}

/* ---- hash ----------------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *s = p;
  for (size_t i = 0; i < n; i++) {
    h ^= s[i];
    h *= FNV_PRIME;
  }
  return h;
}

/* A field is "<decimal length>:<bytes>;" or "-;" when absent: no two
 * different definitions serialise the same, whatever their bytes. */
static uint64_t fnv_field(uint64_t h, const char *s) {
  char len[32];
  if (!s) return fnv(h, "-;", 2);
  size_t n = strlen(s);
  int k = snprintf(len, sizeof len, "%zu:", n);
  h = fnv(h, len, (size_t)k);
  h = fnv(h, s, n);
  return fnv(h, ";", 1);
}

void cfg_assistant_hash(const char *name, const char *model, const char *instructions,
                        const char *tools_json, const char *tool_choice_json, char out[17]) {
  static const char tag[] = "aw-assistant-v1;";
  uint64_t h = fnv(FNV_OFFSET, tag, sizeof tag - 1);
  h = fnv_field(h, name);
  h = fnv_field(h, model);
  h = fnv_field(h, instructions);
  h = fnv_field(h, tools_json);
  /* Only when set: definitions without one keep the hash they had. */
  if (tool_choice_json) {
    h = fnv(h, "tool_choice;", 12);
    h = fnv_field(h, tool_choice_json);
  }
  snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* ---- properties ----------------------------------------------------------- */

int cfg_is_secret_property(const char *key) {
  return strstr(key, "password") || strstr(key, "secret") || strcmp(key, "ssl.key.pem") == 0 ||
         strcmp(key, "ssl_key.pem") == 0 || strcmp(key, "sasl.oauthbearer.config") == 0 ||
         strcmp(key, "sasl.oauthbearer.extensions") == 0;
}

static int put_property(cfg *c, const char *key, const char *value, char *errstr, size_t n) {
  for (size_t i = 0; i < c->kafka.nprops; i++) {
    if (strcmp(c->kafka.props[i].key, key) == 0) {
      char *v = strdup(value);
      if (!v) return aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
      free(c->kafka.props[i].value);
      c->kafka.props[i].value = v;
      return AW_OK;
    }
  }
  if (c->kafka.nprops >= CFG_MAX_PROPERTIES)
    return cfg_err(errstr, n, "kafka.properties: more than %d properties", CFG_MAX_PROPERTIES);
  char *k = strdup(key), *v = strdup(value);
  if (!k || !v) {
    free(k);
    free(v);
    return aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
  }
  c->kafka.props[c->kafka.nprops].key = k;
  c->kafka.props[c->kafka.nprops].value = v;
  c->kafka.nprops++;
  return AW_OK;
}

static int parse_properties(cfg *c, const cJSON *obj, char *errstr, size_t n) {
  if (!cJSON_IsObject(obj)) return cfg_err(errstr, n, "kafka.properties: expected an object");
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    const char *k = it->string;
    char val[64];
    const char *v;
    if (!*k || strlen(k) >= CFG_PROP_KEY_SIZE)
      return cfg_err(errstr, n, "kafka.properties: invalid property name \"%.40s\"", k);
    if (strcmp(k, "bootstrap.servers") == 0 || strcmp(k, "metadata.broker.list") == 0)
      return cfg_err(errstr, n, "kafka.properties.%s: set kafka.brokers instead", k);
    if (strcmp(k, "group.id") == 0)
      return cfg_err(errstr, n, "kafka.properties.group.id: set kafka.group_id instead");
    if (cJSON_IsString(it)) {
      v = it->valuestring;
    } else if (cJSON_IsBool(it)) {
      v = cJSON_IsTrue(it) ? "true" : "false";
    } else if (cJSON_IsNumber(it)) {
      double d = it->valuedouble;
      if (d == (double)(long long)d) snprintf(val, sizeof val, "%lld", (long long)d);
      else snprintf(val, sizeof val, "%.17g", d);
      v = val;
    } else {
      return cfg_err(errstr, n, "kafka.properties.%s: expected a string, number or boolean", k);
    }
    if (strlen(v) >= CFG_MAX_PROP_VALUE_BYTES)
      return cfg_err(errstr, n, "kafka.properties.%s: value too long (at most %d bytes)", k,
                    CFG_MAX_PROP_VALUE_BYTES - 1);
    int rc = put_property(c, k, v, errstr, n);
    if (rc) return rc;
  }
  return AW_OK;
}

/* ---- the document --------------------------------------------------------- */

static int is_section(const char *path) {
  for (size_t i = 0; i < sizeof SECTIONS / sizeof SECTIONS[0]; i++)
    if (strcmp(SECTIONS[i], path) == 0) return 1;
  return 0;
}

int cfg_no_duplicate_keys(const cJSON *obj, const char *section, char *errstr, size_t n) {
  for (const cJSON *a = obj->child; a; a = a->next)
    for (const cJSON *b = a->next; b; b = b->next)
      if (strcmp(a->string, b->string) == 0) {
        char p[256];
        return cfg_err(errstr, n, "%s: duplicate key", cfg_path(section, a->string, p, sizeof p));
      }
  return AW_OK;
}

static int parse_object(cfg *c, const cJSON *obj, const char *section, char *errstr, size_t n) {
  int rc = cfg_no_duplicate_keys(obj, section, errstr, n);
  if (rc) return rc;
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    const char *k = it->string;
    char path[256];
    cfg_path(section, k, path, sizeof path);
    if (strcmp(path, "api_key") == 0 || strcmp(path, "api.api_key") == 0 ||
        strcmp(path, "api.key") == 0 || strcmp(path, "openai_api_key") == 0)
      return cfg_err(errstr, n,
                    "%s: the API key is not read from the config file on purpose; "
                    "set AW_API_KEY (or OPENAI_API_KEY) in the environment, e.g. from a Kubernetes Secret",
                    path);
    if (cfg_is_tool_secret_key(k)) return cfg_refuse_tool_secret(path, errstr, n);
    if (cfg_is_credential_key(path)) return cfg_refuse_credential(path, errstr, n);
    if (strcmp(path, "kafka.properties") == 0) {
      rc = parse_properties(c, it, errstr, n);
    } else if (strcmp(path, "assistants") == 0) {
      rc = cfg_parse_assistants(c, it, errstr, n);
    } else if (strcmp(path, "functions") == 0) {
      rc = cfg_parse_functions(c, it, errstr, n);
    } else if (strcmp(path, "knowledge") == 0) {
      rc = cfg_parse_knowledge(c, it, errstr, n);
    } else if (is_section(path)) {
      if (!cJSON_IsObject(it)) return cfg_err(errstr, n, "%s: expected an object", path);
      rc = parse_object(c, it, path, errstr, n);
    } else {
      const field *f = NULL;
      for (size_t i = 0; i < cfg_nfields; i++)
        if (strcmp(cfg_fields[i].section, section) == 0 && strcmp(cfg_fields[i].key, k) == 0) f = &cfg_fields[i];
      if (!f) return cfg_err(errstr, n, "unknown key \"%s\"", path);
      rc = set_from_json(c, f, it, path, errstr, n);
    }
    if (rc) return rc;
  }
  return AW_OK;
}

int cfg_load_json(cfg *c, const char *json, size_t len, char *errstr, size_t errstr_size) {
  const char *end = NULL;
  cJSON *doc = cJSON_ParseWithLengthOpts(json, len, &end, 0);
  if (!doc) {
    size_t off = end && end >= json ? (size_t)(end - json) : 0;
    return cfg_err(errstr, errstr_size, "invalid JSON near byte %zu", off);
  }
  int rc;
  if (!cJSON_IsObject(doc)) rc = cfg_err(errstr, errstr_size, "the configuration must be a JSON object");
  else rc = parse_object(c, doc, "", errstr, errstr_size);
  cJSON_Delete(doc);
  if (!rc) rc = cfg_resolve_routes(c, errstr, errstr_size);
  if (!rc) rc = cfg_knowledge_resolve(c, errstr, errstr_size);
  return rc;
}

int cfg_load_file(cfg *c, const char *path, char *errstr, size_t errstr_size) {
  FILE *f = fopen(path, "rb");
  if (!f) return cfg_err(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return cfg_err(errstr, errstr_size, "%s: not a regular file", path);
  }
  if ((unsigned long long)st.st_size > CFG_MAX_FILE_BYTES) {
    fclose(f);
    return cfg_err(errstr, errstr_size, "%s: larger than %u bytes", path, CFG_MAX_FILE_BYTES);
  }
  size_t size = (size_t)st.st_size;
  char *data = malloc(size + 1);
  if (!data) {
    fclose(f);
    return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  }
  size_t got = fread(data, 1, size, f);
  int rerr = ferror(f);
  fclose(f);
  if (rerr || got != size) {
    free(data);
    return cfg_err(errstr, errstr_size, "%s: read error", path);
  }
  char inner[512];
  /* Documents (knowledge.vector_stores) are found relative to the file. */
  const char *slash = strrchr(path, '/');
  if (!slash) c->config_dir[0] = '\0';
  else if (slash == path) cfg_copy(c->config_dir, sizeof c->config_dir, "/");
  else snprintf(c->config_dir, sizeof c->config_dir, "%.*s", (int)(slash - path), path);
  int rc = cfg_load_json(c, data, size, inner, sizeof inner);
  free(data);
  if (rc) {
    if (rc == AW_ECONFIG) cfg_err(errstr, errstr_size, "%s: %s", path, inner);
    else aw_seterr(rc, errstr, errstr_size, "%s", inner);
  }
  return rc;
}

static int check_loaded(const cfg *c, char *errstr, size_t n) {
  /* The bearer key travels with every request: over http:// to another
   * machine anyone on the path reads it.  Loopback (the simulator, a local
   * llama.cpp) stays allowed. */
  if (url_transport(c->api.base_url) == URL_CLEARTEXT_REMOTE && !c->api.allow_insecure_http) {
    char shown[CFG_URL_SIZE];
    return cfg_err(errstr, n,
                  "api.base_url: %s is plain http to a host that is not loopback: the API key would cross the "
                  "network in cleartext (use https, or set api.allow_insecure_http: true / "
                  "AW_API_ALLOW_INSECURE_HTTP=1 for a trusted network)",
                  url_redact(c->api.base_url, shown, sizeof shown));
  }
  /* Whose conversation an event is: the same parsers run applies. */
  wid_rules rules = {0};
  int irc = wid_parse_tenant_source(c->worker.tenant_source, &rules, errstr, n);
  if (irc == AW_OK) irc = wid_parse_key_rule(c->worker.key_rule, &rules, errstr, n);
  if (irc != AW_OK) return irc;
  if (!rk_prefix_ok(c->redis.prefix))
    return cfg_err(errstr, n, "redis.prefix: \"%.64s\" must not hold '{' or '}' (Redis Cluster would take them for "
                              "the hash tag that keeps a conversation's keys in one slot)", c->redis.prefix);
  unsigned char addr[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, c->worker.health_bind, addr) != 1 && inet_pton(AF_INET6, c->worker.health_bind, addr) != 1)
    return cfg_err(errstr, n, "worker.health_bind: \"%.64s\" is not a numeric IPv4 or IPv6 address",
                  c->worker.health_bind);
  if (c->tools.nroutes > 0 && !c->tools.secret[0]) {
    const char *who = "";
    for (size_t i = 0; i < c->nassistants && !*who; i++)
      if (cfg_has_function_tool(&c->assistants[i])) who = c->assistants[i].name;
    return cfg_err(errstr, n,
                  "AW_TOOL_SECRET: required because assistant \"%.64s\" has function tools (the key that signs "
                  "tool-call correlation ids, at least %d bytes; set it in the environment, e.g. from a Kubernetes Secret)",
                  who, CORR_MIN_SECRET);
  }
  if (c->tools.nroutes > 0 && !c->tools.request_key[0])
    return cfg_err(errstr, n,
                  "AW_TOOL_REQUEST_KEY: required because function tools are routed to services (the key shared "
                  "with the tool services that signs tool requests and their replies, at least %d bytes; set it, "
                  "or AW_TOOL_REQUEST_KEY_FILE naming a file, e.g. from a Kubernetes Secret)",
                  TSIG_MIN_KEY);
  return cfg_knowledge_check_backend(c, errstr, n);
}

int cfg_load(cfg *c, const char *path, char *errstr, size_t errstr_size) {
  cfg_init(c);
  if (!path) path = cfg_env("AW_CONFIG");
  int rc = path ? cfg_load_file(c, path, errstr, errstr_size) : AW_OK;
  if (!rc) rc = cfg_apply_env(c, errstr, errstr_size);
  if (!rc) rc = check_loaded(c, errstr, errstr_size);
  if (!rc) c->worker.history_ttl_s = cfg_history_ttl_s(c); /* the value in use, for --print-config */
  if (!rc && c->knowledge.sync_on_start < 0) c->knowledge.sync_on_start = c->knowledge.nstores > 0;
  if (rc) cfg_free(c);
  return rc;
}

/* ---- accessors ------------------------------------------------------------ */

const cfg_assistant *cfg_find_assistant(const cfg *c, const char *name) {
  for (size_t i = 0; i < c->nassistants; i++)
    if (strcmp(c->assistants[i].name, name) == 0) return &c->assistants[i];
  return NULL;
}

void cfg_assistant_def(const cfg_assistant *a, be_assistant *def) {
  memset(def, 0, sizeof *def);
  def->name = a->name;
  def->model = a->model;
  def->instructions = a->instructions;
  def->tools_json = a->tools_json;
  def->tool_choice_json = a->tool_choice_json;
  def->hash = a->hash;
  def->history_max_messages = a->history_max_messages;
  def->history_max_tokens = a->history_max_tokens;
  def->max_output_tokens = a->max_output_tokens;
  def->vector_store_ids = a->nvector_store_ids ? a->vector_store_ids : NULL;
  def->nvector_store_ids = a->nvector_store_ids;
}

long cfg_history_ttl_s(const cfg *c) {
  return c->worker.history_ttl_s < 0 ? c->worker.conversation_ttl_s : c->worker.history_ttl_s;
}

const cfg_function *cfg_function_route(const cfg *c, const char *name) {
  if (!name) return NULL;
  for (size_t i = 0; i < c->tools.nroutes; i++)
    if (strcmp(c->tools.routes[i].name, name) == 0) return &c->tools.routes[i];
  return NULL;
}

int cfg_tool_key(const cfg *c, corr_key *k, char *errstr, size_t errstr_size) {
  if (!c->tools.secret[0]) return cfg_err(errstr, errstr_size, "AW_TOOL_SECRET: not set");
  int rc = corr_key_init(k, c->tools.secret, strlen(c->tools.secret));
  if (!rc && c->tools.secret_previous[0])
    rc = corr_key_set_previous(k, c->tools.secret_previous, strlen(c->tools.secret_previous));
  if (rc) {
    corr_key_clear(k);
    return aw_seterr(rc, errstr, errstr_size, "tool secret refused by corr_key_init");
  }
  return AW_OK;
}

void cfg_backend_config(const cfg *c, be_http_config *bc) {
  bc->base_url = c->api.base_url;
  bc->api_key = c->api.api_key;
  bc->organization = c->api.organization[0] ? c->api.organization : NULL;
  bc->project = c->api.project[0] ? c->api.project : NULL;
  bc->request_timeout_ms = c->api.request_timeout_ms;
  bc->stream_idle_timeout_ms = c->api.stream_idle_timeout_ms;
  bc->max_retries = c->api.max_retries;
  bc->max_answer_bytes = c->worker.max_answer_bytes;
  bc->background = c->api.background;
}

/* ---- dump ----------------------------------------------------------------- */

static cJSON *section_obj(cJSON *root, const char *path) {
  /* path is "" or "a" or "a.b" (one level of nesting is all we have). */
  if (!*path) return root;
  char head[64];
  const char *dot = strchr(path, '.');
  size_t hl = dot ? (size_t)(dot - path) : strlen(path);
  snprintf(head, sizeof head, "%.*s", (int)hl, path);
  cJSON *o = cJSON_GetObjectItemCaseSensitive(root, head);
  if (!o) o = cJSON_AddObjectToObject(root, head);
  if (!o || !dot) return o;
  return section_obj(o, dot + 1);
}

static const char *const LEVEL_NAMES[] = {"debug", "info", "warn", "error", "off"};

int cfg_dump(const cfg *c, buf *out) {
  cJSON *root = cJSON_CreateObject();
  int ok = root != NULL;
  for (size_t i = 0; ok && i < cfg_nfields; i++) {
    const field *f = &cfg_fields[i];
    cJSON *sec = section_obj(root, f->section);
    const void *src = (const char *)c + f->off;
    cJSON *v = NULL;
    switch (f->type) {
    case F_INT: v = cJSON_CreateNumber(*(const int *)src); break;
    case F_LONG: v = cJSON_CreateNumber((double)*(const long *)src); break;
    case F_SIZE: v = cJSON_CreateNumber((double)*(const size_t *)src); break;
    case F_LEVEL: v = cJSON_CreateString(LEVEL_NAMES[c->log_level <= LOG_OFF ? c->log_level : LOG_INFO]); break;
    case F_BOOL: v = cJSON_CreateBool(*(const int *)src); break;
    default: {
      /* URLs and broker lists may carry credentials (https://user:pass@host). */
      char shown[CFG_BROKERS_SIZE > CFG_URL_SIZE ? CFG_BROKERS_SIZE : CFG_URL_SIZE];
      int is_url = f->type == F_URL || (strcmp(f->section, "kafka") == 0 && strcmp(f->key, "brokers") == 0);
      v = cJSON_CreateString(is_url ? url_redact((const char *)src, shown, sizeof shown) : (const char *)src);
      break;
    }
    }
    ok = sec && v && cJSON_AddItemToObject(sec, f->key, v);
    if (!ok) cJSON_Delete(v);
    if (ok && strcmp(f->section, "api") == 0 && strcmp(f->key, "base_url") == 0) {
      cJSON *k = c->api.api_key[0] ? cJSON_CreateString("***") : cJSON_CreateNull();
      ok = k && cJSON_AddItemToObject(sec, "api_key", k);
      if (!ok) cJSON_Delete(k);
    }
  }
  ok = ok && cfg_dump_credentials(c, root) == AW_OK; /* passwords: "***" or null */
  cJSON *props = ok ? cJSON_AddObjectToObject(section_obj(root, "kafka"), "properties") : NULL;
  ok = ok && props;
  for (size_t i = 0; ok && i < c->kafka.nprops; i++) {
    const cfg_kv *kv = &c->kafka.props[i];
    ok = cJSON_AddStringToObject(props, kv->key, cfg_is_secret_property(kv->key) ? "***" : kv->value) != NULL;
  }
  cJSON *arr = ok ? cJSON_AddArrayToObject(root, "assistants") : NULL;
  ok = ok && arr;
  for (size_t i = 0; ok && i < c->nassistants; i++) {
    const cfg_assistant *a = &c->assistants[i];
    cJSON *o = cJSON_CreateObject();
    ok = o && cJSON_AddItemToArray(arr, o);
    if (!ok) {
      cJSON_Delete(o);
      break;
    }
    ok = cJSON_AddStringToObject(o, "name", a->name) && cJSON_AddStringToObject(o, "model", a->model) &&
         (a->instructions ? cJSON_AddStringToObject(o, "instructions", a->instructions)
                          : cJSON_AddNullToObject(o, "instructions"));
    if (ok) {
      cJSON *t = a->tools_json ? cJSON_Parse(a->tools_json) : cJSON_CreateArray();
      ok = t && cJSON_AddItemToObject(o, "tools", t);
      if (!ok) cJSON_Delete(t);
    }
    if (ok && a->tool_choice_json) {
      cJSON *t = cJSON_Parse(a->tool_choice_json);
      ok = t && cJSON_AddItemToObject(o, "tool_choice", t);
      if (!ok) cJSON_Delete(t);
    }
    if (ok && (a->history_max_messages || a->history_max_tokens)) {
      cJSON *h = cJSON_AddObjectToObject(o, "history");
      ok = h && (!a->history_max_messages ||
                 cJSON_AddNumberToObject(h, "max_messages", (double)a->history_max_messages)) &&
           (!a->history_max_tokens || cJSON_AddNumberToObject(h, "max_tokens", (double)a->history_max_tokens));
    }
    if (ok && a->max_output_tokens) ok = cJSON_AddNumberToObject(o, "max_output_tokens", (double)a->max_output_tokens) != NULL;
    cJSON *ov = ok ? cJSON_AddArrayToObject(o, "allow_overrides") : NULL;
    ok = ok && ov;
    for (unsigned bit = 1; ok && bit <= WKOV_ALL; bit <<= 1)
      if (a->allow_overrides & bit) ok = cJSON_AddItemToArray(ov, cJSON_CreateString(wkov_field(bit)));
    if (ok && a->nvector_stores) {
      cJSON *vs = cJSON_AddArrayToObject(o, "vector_stores");
      ok = vs != NULL;
      for (size_t j = 0; ok && j < a->nvector_stores; j++)
        ok = cJSON_AddItemToArray(vs, cJSON_CreateString(a->vector_stores[j]));
    }
    ok = ok && cJSON_AddStringToObject(o, "hash", a->hash);
  }
  if (ok && c->knowledge.nstores) ok = cfg_dump_knowledge(c, root) == AW_OK;
  cJSON *fns = ok ? cJSON_AddObjectToObject(root, "functions") : NULL;
  ok = ok && fns;
  for (size_t i = 0; ok && i < c->tools.nroutes; i++) {
    const cfg_function *r = &c->tools.routes[i];
    cJSON *o = cJSON_AddObjectToObject(fns, r->name);
    ok = o && cJSON_AddStringToObject(o, "topic", r->topic) &&
         cJSON_AddStringToObject(o, "reply_topic", r->reply_topic) &&
         cJSON_AddNumberToObject(o, "deadline_ms", (double)r->deadline_ms) &&
         cJSON_AddStringToObject(o, "on_deadline", cfg_on_deadline_name(r->on_deadline)) &&
         cJSON_AddBoolToObject(o, "validate_arguments", r->validate_arguments);
  }
  ok = ok && (c->tools.secret[0] ? cJSON_AddStringToObject(root, "tool_secret", "***")
                                 : cJSON_AddNullToObject(root, "tool_secret"));
  ok = ok && (c->tools.secret_previous[0] ? cJSON_AddStringToObject(root, "tool_secret_previous", "***")
                                          : cJSON_AddNullToObject(root, "tool_secret_previous"));
  ok = ok && (c->tools.request_key[0] ? cJSON_AddStringToObject(root, "tool_request_key", "***")
                                      : cJSON_AddNullToObject(root, "tool_request_key"));
  ok = ok && (c->tools.request_key_previous[0] ? cJSON_AddStringToObject(root, "tool_request_key_previous", "***")
                                               : cJSON_AddNullToObject(root, "tool_request_key_previous"));
  char *s = ok ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (!s) return AW_ENOMEM;
  int rc = buf_appends(out, s);
  if (!rc) rc = buf_appends(out, "\n");
  free(s);
  return rc;
}

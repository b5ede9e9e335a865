/* config.c -- defaults, JSON config file, environment overrides, validation.
 *
 * Scalar settings are described once, in FIELDS: where they live in the
 * file (section + key), which environment variable overrides them, their
 * type and their range.  The file walker and the environment pass both go
 * through set_string()/set_number(), so a value is validated the same way
 * wherever it comes from.  Properties, assistants and functions have their
 * own parsers.
 *
 * Function routes depend on three sources (the assistants' tools, the
 * "functions" object, kafka.topics.tool_requests, which env may override),
 * so they are not updated piecemeal: resolve_routes() rebuilds them from
 * scratch at the end of every cfg_load_json and cfg_apply_env.  That costs a
 * re-parse of every assistant's tools at start-up, and keeps one place where
 * the cross-references are checked.
 */
#include "config.h"

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

_Static_assert(CFG_FUNCTION_NAME_SIZE == CTOOL_MAX_NAME + 1, "function names: the contract's bound");
_Static_assert(CFG_TOPIC_SIZE == CTOOL_MAX_TOPIC + 1, "topic names: the contract's bound");

/* ---- field table ---------------------------------------------------------- */

typedef enum {
  F_STR,      /* non-empty string */
  F_STR_OPT,  /* string, may be empty */
  F_TOPIC,    /* Kafka topic name */
  F_URL,      /* http(s) URL, trailing '/' dropped */
  F_INT,
  F_LONG,
  F_SIZE,
  F_LEVEL,    /* log level name */
  F_BOOL,     /* true/false (env: true, false, 1, 0) into an int */
  F_BACKEND,  /* a backend kind: responses, assistants, chat */
} ftype;

typedef struct field {
  const char *section; /* "" for top level */
  const char *key;
  const char *env;     /* NULL: file only */
  ftype type;
  size_t off;
  size_t size;         /* string capacity incl. NUL */
  long long lo, hi;    /* numbers */
} field;

#define OFF(m) offsetof(cfg, m)
#define SZ(m) sizeof(((cfg *)0)->m)
#define S(sec, key, env, t, m) {sec, key, env, t, OFF(m), SZ(m), 0, 0}
#define N(sec, key, env, t, m, lo, hi) {sec, key, env, t, OFF(m), SZ(m), lo, hi}

static const field FIELDS[] = {
    S("kafka", "brokers", "AW_KAFKA_BROKERS", F_STR, kafka.brokers),
    S("kafka", "group_id", "AW_KAFKA_GROUP_ID", F_STR, kafka.group_id),
    S("kafka", "transactional_id", "AW_KAFKA_TRANSACTIONAL_ID", F_STR_OPT, kafka.transactional_id),
    S("kafka", "group_instance_id", "AW_KAFKA_GROUP_INSTANCE_ID", F_STR_OPT, kafka.group_instance_id),
    S("kafka.topics", "requests", "AW_TOPIC_REQUESTS", F_TOPIC, kafka.topic_requests),
    S("kafka.topics", "responses", "AW_TOPIC_RESPONSES", F_TOPIC, kafka.topic_responses),
    S("kafka.topics", "deltas", "AW_TOPIC_DELTAS", F_TOPIC, kafka.topic_deltas),
    S("kafka.topics", "dlq", "AW_TOPIC_DLQ", F_TOPIC, kafka.topic_dlq),
    S("kafka.topics", "tool_requests", "AW_TOPIC_TOOL_REQUESTS", F_TOPIC, kafka.topic_tool_requests),
    S("kafka.topics", "tool_replies", "AW_TOPIC_TOOL_REPLIES", F_TOPIC, kafka.topic_tool_replies),
    S("redis", "host", "AW_REDIS_HOST", F_STR, redis.host),
    N("redis", "port", "AW_REDIS_PORT", F_INT, redis.port, 1, 65535),
    S("redis", "prefix", "AW_REDIS_PREFIX", F_STR, redis.prefix),
    N("redis", "connect_timeout_ms", NULL, F_LONG, redis.connect_timeout_ms, 1, 600000),
    S("api", "backend", "AW_API_BACKEND", F_BACKEND, api.backend),
    S("api", "base_url", "AW_API_BASE_URL", F_URL, api.base_url),
    S("api", "organization", "AW_API_ORG", F_STR_OPT, api.organization),
    S("api", "project", "AW_API_PROJECT", F_STR_OPT, api.project),
    N("api", "timeout_ms", NULL, F_LONG, api.request_timeout_ms, 1, 3600000),
    N("api", "stream_idle_timeout_ms", NULL, F_LONG, api.stream_idle_timeout_ms, 1, 3600000),
    N("api", "max_retries", NULL, F_INT, api.max_retries, 0, 100),
    S("api", "background", "AW_API_BACKGROUND", F_BOOL, api.background),
    S("api", "allow_insecure_http", "AW_API_ALLOW_INSECURE_HTTP", F_BOOL, api.allow_insecure_http),
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
    N("worker", "commit_interval_ms", NULL, F_LONG, worker.commit_interval_ms, 1, 60000),
    N("worker", "health_port", "AW_HEALTH_PORT", F_INT, worker.health_port, 0, 65535),
    S("worker", "health_bind", "AW_HEALTH_BIND", F_STR, worker.health_bind),
    S("worker", "allow_core_dumps", "AW_ALLOW_CORE_DUMPS", F_BOOL, worker.allow_core_dumps),
    S("worker", "exactly_once", "AW_EXACTLY_ONCE", F_BOOL, worker.exactly_once),
    N("worker", "txn_interval_ms", NULL, F_LONG, worker.txn_interval_ms, 0, 60000),
    S("", "log_level", "AW_LOG_LEVEL", F_LEVEL, log_level),
};
#define NFIELDS (sizeof FIELDS / sizeof FIELDS[0])

/* Sections that are objects, with the keys they hold beyond FIELDS. */
static const char *const SECTIONS[] = {"kafka", "kafka.topics", "redis", "api", "worker"};

static void copy_str(char *dst, size_t size, const char *src) {
  snprintf(dst, size, "%s", src);
}

static int cfgerr(char *errstr, size_t n, const char *fmt, ...) AW_PRINTF(3, 4);
static int cfgerr(char *errstr, size_t n, const char *fmt, ...) {
  if (errstr && n) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, n, fmt, ap);
    va_end(ap);
  }
  return AW_ECONFIG;
}

/* "section.key" or "key" into out. */
static const char *path_of(const char *section, const char *key, char *out, size_t n) {
  if (section && *section) snprintf(out, n, "%s.%s", section, key);
  else snprintf(out, n, "%s", key);
  return out;
}

static int topic_ok(const char *s) {
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
static int set_string(cfg *c, const field *f, const char *v, const char *where, char *errstr,
                      size_t n) {
  char *dst = (char *)c + f->off;
  size_t len = strlen(v);
  if (f->type == F_LEVEL) {
    log_level lvl;
    if (log_parse_level(v, &lvl) != AW_OK)
      return cfgerr(errstr, n, "%s: invalid log level \"%.32s\" (expected debug, info, warn, error or off)",
                    where, v);
    c->log_level = lvl;
    return AW_OK;
  }
  if (f->type == F_BACKEND && strcmp(v, "responses") != 0 && strcmp(v, "assistants") != 0 && strcmp(v, "chat") != 0)
    return cfgerr(errstr, n, "%s: unknown backend \"%.32s\" (expected responses, assistants or chat)", where, v);
  if (len >= f->size)
    return cfgerr(errstr, n, "%s: too long (%zu bytes, at most %zu)", where, len, f->size - 1);
  if (len == 0 && f->type != F_STR_OPT) return cfgerr(errstr, n, "%s: must not be empty", where);
  for (const char *p = v; *p; p++)
    if ((unsigned char)*p < 0x20 || *p == 0x7f)
      return cfgerr(errstr, n, "%s: contains a control character", where);
  if (f->type == F_TOPIC && !topic_ok(v))
    return cfgerr(errstr, n, "%s: invalid Kafka topic name \"%s\" (1..249 of [A-Za-z0-9._-])", where, v);
  if (f->type == F_URL) {
    if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0) {
      char shown[CFG_URL_SIZE];
      return cfgerr(errstr, n, "%s: \"%s\" is not an http:// or https:// URL", where,
                    url_redact(v, shown, sizeof shown));
    }
    memcpy(dst, v, len + 1);
    while (len > 0 && dst[len - 1] == '/') dst[--len] = '\0';
    return AW_OK;
  }
  memcpy(dst, v, len + 1);
  return AW_OK;
}

static int set_number(cfg *c, const field *f, long long v, const char *where, char *errstr, size_t n) {
  if (v < f->lo || v > f->hi)
    return cfgerr(errstr, n, "%s: %lld is out of range [%lld, %lld]", where, v, f->lo, f->hi);
  void *dst = (char *)c + f->off;
  switch (f->type) {
  case F_INT: *(int *)dst = (int)v; break;
  case F_LONG: *(long *)dst = (long)v; break;
  case F_SIZE: *(size_t *)dst = (size_t)v; break;
  default: break;
  }
  return AW_OK;
}

static int is_number_type(ftype t) { return t == F_INT || t == F_LONG || t == F_SIZE; }

/* A JSON number that is an exact integer (cJSON keeps doubles). */
static int json_integer(const cJSON *v, long long *out, const char *where, char *errstr, size_t n) {
  if (!cJSON_IsNumber(v)) return cfgerr(errstr, n, "%s: expected an integer", where);
  double d = v->valuedouble;
  if (d != d || d < -9.0e15 || d > 9.0e15 || d != (double)(long long)d)
    return cfgerr(errstr, n, "%s: expected an integer, got %g", where, d);
  *out = (long long)d;
  return AW_OK;
}

static int set_from_json(cfg *c, const field *f, const cJSON *v, const char *where, char *errstr,
                         size_t n) {
  if (f->type == F_BOOL) {
    if (!cJSON_IsBool(v)) return cfgerr(errstr, n, "%s: expected true or false", where);
    *(int *)((char *)c + f->off) = cJSON_IsTrue(v) ? 1 : 0;
    return AW_OK;
  }
  if (is_number_type(f->type)) {
    long long x = 0; /* set by json_integer on success */
    int rc = json_integer(v, &x, where, errstr, n);
    return rc ? rc : set_number(c, f, x, where, errstr, n);
  }
  if (!cJSON_IsString(v)) return cfgerr(errstr, n, "%s: expected a string", where);
  return set_string(c, f, v->valuestring, where, errstr, n);
}

/* ---- init / free ---------------------------------------------------------- */

void cfg_init(cfg *c) {
  memset(c, 0, sizeof *c);
  copy_str(c->kafka.group_id, sizeof c->kafka.group_id, "assistant-worker");
  copy_str(c->kafka.topic_requests, sizeof c->kafka.topic_requests, "assistant.requests");
  copy_str(c->kafka.topic_responses, sizeof c->kafka.topic_responses, "assistant.responses");
  copy_str(c->kafka.topic_deltas, sizeof c->kafka.topic_deltas, "assistant.deltas");
  copy_str(c->kafka.topic_dlq, sizeof c->kafka.topic_dlq, "assistant.dlq");
  copy_str(c->kafka.topic_tool_requests, sizeof c->kafka.topic_tool_requests, CTOOL_DEFAULT_REQUEST_TOPIC);
  copy_str(c->kafka.topic_tool_replies, sizeof c->kafka.topic_tool_replies, CTOOL_DEFAULT_REPLY_TOPIC);
  copy_str(c->redis.host, sizeof c->redis.host, "127.0.0.1");
  c->redis.port = 6379;
  copy_str(c->redis.prefix, sizeof c->redis.prefix, "aw");
  c->redis.connect_timeout_ms = 2000;
  copy_str(c->api.base_url, sizeof c->api.base_url, "https://api.openai.com/v1");
  copy_str(c->api.backend, sizeof c->api.backend, "responses");
  c->api.request_timeout_ms = 30000;
  c->api.stream_idle_timeout_ms = 60000;
  c->api.max_retries = 5;
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
  c->worker.commit_interval_ms = 200;
  c->worker.health_port = 0;
  copy_str(c->worker.health_bind, sizeof c->worker.health_bind, "0.0.0.0");
  c->worker.exactly_once = 1;
  c->api.background = 1;
  c->worker.txn_interval_ms = 20;
  c->log_level = LOG_INFO;
}

static void free_assistants(cfg *c) {
  for (size_t i = 0; i < c->nassistants; i++) {
    free(c->assistants[i].instructions);
    free(c->assistants[i].tools_json);
    free(c->assistants[i].tool_choice_json);
  }
  memset(c->assistants, 0, sizeof c->assistants);
  c->nassistants = 0;
}

static void free_routes(cfg *c) {
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
  free_assistants(c);
  free_routes(c);
  memset(c->tools.overrides, 0, sizeof c->tools.overrides);
  c->tools.noverrides = 0;
  /* Do not leave keys in freed-but-mapped memory longer than needed. */
  memset(c->api.api_key, 0, sizeof c->api.api_key);
  memset(c->tools.secret, 0, sizeof c->tools.secret);
  memset(c->tools.secret_previous, 0, sizeof c->tools.secret_previous);
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
    return cfgerr(errstr, n, "kafka.properties: more than %d properties", CFG_MAX_PROPERTIES);
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
  if (!cJSON_IsObject(obj)) return cfgerr(errstr, n, "kafka.properties: expected an object");
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    const char *k = it->string;
    char val[64];
    const char *v;
    if (!*k || strlen(k) >= CFG_PROP_KEY_SIZE)
      return cfgerr(errstr, n, "kafka.properties: invalid property name \"%.40s\"", k);
    if (strcmp(k, "bootstrap.servers") == 0 || strcmp(k, "metadata.broker.list") == 0)
      return cfgerr(errstr, n, "kafka.properties.%s: set kafka.brokers instead", k);
    if (strcmp(k, "group.id") == 0)
      return cfgerr(errstr, n, "kafka.properties.group.id: set kafka.group_id instead");
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
      return cfgerr(errstr, n, "kafka.properties.%s: expected a string, number or boolean", k);
    }
    if (strlen(v) >= CFG_MAX_PROP_VALUE_BYTES)
      return cfgerr(errstr, n, "kafka.properties.%s: value too long (at most %d bytes)", k,
                    CFG_MAX_PROP_VALUE_BYTES - 1);
    int rc = put_property(c, k, v, errstr, n);
    if (rc) return rc;
  }
  return AW_OK;
}

/* ---- assistants ----------------------------------------------------------- */

/* Names are what producers write in requests ("Customer Support Bot"), so
 * any text the API accepts as a name (up to 256 characters) is allowed,
 * except control characters and surrounding blanks, which would make two
 * names look alike in logs and configuration. */
static int name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= CFG_NAME_SIZE || s[0] == ' ' || s[n - 1] == ' ') return 0;
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return 0;
  return 1;
}

/* OpenAI's rule for function names: 1..64 of [A-Za-z0-9_-]. */
static int function_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= CFG_FUNCTION_NAME_SIZE) return 0;
  for (; *s; s++) {
    char ch = *s;
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '_' || ch == '-'))
      return 0;
  }
  return 1;
}

static int parse_tools(const cJSON *tools, const char *where, char **out, char *errstr, size_t n) {
  *out = NULL;
  if (cJSON_IsNull(tools)) return AW_OK;
  if (!cJSON_IsArray(tools)) return cfgerr(errstr, n, "%s.tools: expected an array", where);
  int nt = cJSON_GetArraySize(tools);
  if (nt > CFG_MAX_TOOLS)
    return cfgerr(errstr, n, "%s.tools: %d tools, at most %d", where, nt, CFG_MAX_TOOLS);
  if (nt == 0) return AW_OK;
  int i = 0;
  const char *fnames[CFG_MAX_TOOLS]; /* function names so far, for duplicates */
  int nf = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, tools) {
    if (!cJSON_IsObject(t)) return cfgerr(errstr, n, "%s.tools[%d]: expected an object", where, i);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
    if (!cJSON_IsString(type) || !*type->valuestring)
      return cfgerr(errstr, n, "%s.tools[%d]: missing \"type\" string", where, i);
    if (strcmp(type->valuestring, "function") == 0) {
      const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
      const cJSON *fname = cJSON_GetObjectItemCaseSensitive(fn, "name");
      if (!cJSON_IsObject(fn) || !cJSON_IsString(fname) || !*fname->valuestring)
        return cfgerr(errstr, n, "%s.tools[%d]: a function tool needs function.name", where, i);
      /* Names are routing keys and travel in tool requests: hold them to
       * the API's rule here rather than learn of a bad one at start-up. */
      if (!function_name_ok(fname->valuestring))
        return cfgerr(errstr, n, "%s.tools[%d].function.name: invalid function name \"%.80s\" (1..%d of [A-Za-z0-9_-])",
                      where, i, fname->valuestring, CFG_FUNCTION_NAME_SIZE - 1);
      for (int j = 0; j < nf; j++)
        if (strcmp(fnames[j], fname->valuestring) == 0)
          return cfgerr(errstr, n, "%s.tools[%d]: duplicate function \"%s\"", where, i, fname->valuestring);
      fnames[nf++] = fname->valuestring;
      const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
      if (params && !cJSON_IsObject(params))
        return cfgerr(errstr, n, "%s.tools[%d].function.parameters: expected an object (a JSON Schema)", where, i);
    }
    i++;
  }
  char *s = cJSON_PrintUnformatted(tools);
  if (!s) return aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
  if (strlen(s) > CFG_MAX_TOOLS_BYTES) {
    free(s);
    return cfgerr(errstr, n, "%s.tools: longer than %u bytes", where, CFG_MAX_TOOLS_BYTES);
  }
  *out = s;
  return AW_OK;
}

/* tool_choice: "auto" | "required" | "none" | {"type":"function","function":
 * {"name":..}} naming one of the assistant's function tools; printed
 * canonically into *out. */
static int parse_tool_choice(const cJSON *choice, const cJSON *tools, const char *where, char **out,
                             char *errstr, size_t n) {
  *out = NULL;
  static const char expect[] =
      "expected \"auto\", \"required\", \"none\" or {\"type\": \"function\", \"function\": {\"name\": ..}}";
  if (cJSON_IsString(choice)) {
    const char *v = choice->valuestring;
    if (strcmp(v, "auto") && strcmp(v, "required") && strcmp(v, "none"))
      return cfgerr(errstr, n, "%s.tool_choice: \"%.40s\": %s", where, v, expect);
    if (!strcmp(v, "required") && cJSON_GetArraySize(tools) == 0)
      return cfgerr(errstr, n, "%s.tool_choice: \"required\" but the assistant has no tools", where);
  } else if (cJSON_IsObject(choice)) {
    const cJSON *it;
    cJSON_ArrayForEach(it, choice) {
      if (strcmp(it->string, "type") && strcmp(it->string, "function"))
        return cfgerr(errstr, n, "%s.tool_choice: unknown key \"%.40s\" (%s)", where, it->string, expect);
    }
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(choice, "type");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(choice, "function");
    const cJSON *fname = cJSON_IsObject(fn) ? cJSON_GetObjectItemCaseSensitive(fn, "name") : NULL;
    if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "function") || !cJSON_IsString(fname) ||
        cJSON_GetArraySize(fn) != 1)
      return cfgerr(errstr, n, "%s.tool_choice: %s", where, expect);
    /* It must name one of this assistant's function tools. */
    int found = 0;
    cJSON_ArrayForEach(it, tools) {
      const cJSON *f = cJSON_GetObjectItemCaseSensitive(it, "function");
      const cJSON *nm = cJSON_IsObject(f) ? cJSON_GetObjectItemCaseSensitive(f, "name") : NULL;
      const cJSON *tt = cJSON_GetObjectItemCaseSensitive(it, "type");
      if (cJSON_IsString(tt) && !strcmp(tt->valuestring, "function") && cJSON_IsString(nm) &&
          !strcmp(nm->valuestring, fname->valuestring))
        found = 1;
    }
    if (!found)
      return cfgerr(errstr, n, "%s.tool_choice: function \"%.64s\" is not one of the assistant's function tools",
                    where, fname->valuestring);
  } else {
    return cfgerr(errstr, n, "%s.tool_choice: %s", where, expect);
  }
  *out = cJSON_PrintUnformatted(choice);
  return *out ? AW_OK : aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
}

static int no_duplicate_keys(const cJSON *obj, const char *section, char *errstr, size_t n);

/* history: {"max_messages": N, "max_tokens": N}, each optional, each a
 * positive integer: the chat backend's context budget for this assistant
 * (0, i.e. absent: the backend's default).  Not part of the hash: the hash
 * names what the Assistants backend keeps remotely, and the budget lives
 * only in the worker. */
static int parse_history(cfg_assistant *a, const cJSON *hist, const char *where, char *errstr, size_t n) {
  char path[160];
  snprintf(path, sizeof path, "%s.history", where);
  if (cJSON_IsNull(hist)) return AW_OK;
  if (!cJSON_IsObject(hist))
    return cfgerr(errstr, n, "%s: expected an object ({\"max_messages\": .., \"max_tokens\": ..})", path);
  int rc = no_duplicate_keys(hist, path, errstr, n);
  if (rc) return rc;
  const cJSON *it;
  cJSON_ArrayForEach(it, hist) {
    long *dst;
    long long hi;
    if (strcmp(it->string, "max_messages") == 0) dst = &a->history_max_messages, hi = CFG_MAX_HISTORY_MESSAGES;
    else if (strcmp(it->string, "max_tokens") == 0) dst = &a->history_max_tokens, hi = CFG_MAX_HISTORY_TOKENS;
    else return cfgerr(errstr, n, "%s: unknown key \"%.40s\" (expected max_messages, max_tokens)", path, it->string);
    char kp[200];
    snprintf(kp, sizeof kp, "%s.%s", path, it->string);
    long long x = 0; /* set by json_integer on success */
    rc = json_integer(it, &x, kp, errstr, n);
    if (rc) return rc;
    if (x < 1 || x > hi)
      return cfgerr(errstr, n, "%s: %lld is out of range [1, %lld] (leave it out for the backend's default)", kp, x, hi);
    *dst = (long)x;
  }
  return AW_OK;
}

static int parse_assistant(cfg *c, const cJSON *obj, int idx, char *errstr, size_t n) {
  char where[96];
  snprintf(where, sizeof where, "assistants[%d]", idx);
  if (!cJSON_IsObject(obj)) return cfgerr(errstr, n, "%s: expected an object", where);
  const cJSON *name = NULL, *model = NULL, *instr = NULL, *tools = NULL, *choice = NULL, *hist = NULL, *maxout = NULL,
              *it;
  cJSON_ArrayForEach(it, obj) {
    const char *k = it->string;
    if (strcmp(k, "name") == 0) name = it;
    else if (strcmp(k, "model") == 0) model = it;
    else if (strcmp(k, "instructions") == 0) instr = it;
    else if (strcmp(k, "tools") == 0) tools = it;
    else if (strcmp(k, "tool_choice") == 0) choice = it;
    else if (strcmp(k, "history") == 0) hist = it;
    else if (strcmp(k, "max_output_tokens") == 0) maxout = it;
    else return cfgerr(errstr, n, "%s: unknown key \"%s\" (expected name, model, instructions, tools, tool_choice, history, max_output_tokens)", where, k);
  }
  if (!name) return cfgerr(errstr, n, "%s: missing name", where);
  if (!cJSON_IsString(name)) return cfgerr(errstr, n, "%s.name: expected a string", where);
  if (!name_ok(name->valuestring))
    return cfgerr(errstr, n, "%s.name: invalid name \"%.80s\" (1..%d bytes, no control characters or surrounding blanks)", where,
                  name->valuestring, CFG_NAME_SIZE - 1);
  if (strncmp(name->valuestring, "asst_", 5) == 0)
    return cfgerr(errstr, n, "%s.name: \"%s\" must not start with \"asst_\" (requests use that prefix for API ids)",
                  where, name->valuestring);
  snprintf(where, sizeof where, "assistants[%d] (\"%.64s\")", idx, name->valuestring);
  if (cfg_find_assistant(c, name->valuestring))
    return cfgerr(errstr, n, "%s: duplicate assistant name", where);
  if (!model) return cfgerr(errstr, n, "%s: missing model", where);
  if (!cJSON_IsString(model) || !*model->valuestring)
    return cfgerr(errstr, n, "%s.model: expected a non-empty string", where);
  if (strlen(model->valuestring) >= CFG_MODEL_SIZE)
    return cfgerr(errstr, n, "%s.model: too long (at most %d bytes)", where, CFG_MODEL_SIZE - 1);
  if (instr && !cJSON_IsNull(instr)) {
    if (!cJSON_IsString(instr)) return cfgerr(errstr, n, "%s.instructions: expected a string", where);
    if (strlen(instr->valuestring) > CFG_MAX_INSTRUCTIONS_BYTES)
      return cfgerr(errstr, n, "%s.instructions: longer than %u bytes", where, CFG_MAX_INSTRUCTIONS_BYTES);
  }
  if (c->nassistants >= CFG_MAX_ASSISTANTS)
    return cfgerr(errstr, n, "assistants: more than %d assistants", CFG_MAX_ASSISTANTS);

  long long max_output = 0;
  if (maxout && !cJSON_IsNull(maxout)) {
    char kp[128];
    snprintf(kp, sizeof kp, "%s.max_output_tokens", where);
    int rc = json_integer(maxout, &max_output, kp, errstr, n);
    if (rc) return rc;
    if (max_output < 1 || max_output > CFG_MAX_OUTPUT_TOKENS)
      return cfgerr(errstr, n, "%s: %lld is out of range [1, %ld] (leave it out for the server's default)", kp,
                    max_output, CFG_MAX_OUTPUT_TOKENS);
  }
  cfg_assistant *a = &c->assistants[c->nassistants];
  memset(a, 0, sizeof *a);
  a->max_output_tokens = (long)max_output;
  if (hist) {
    int rc = parse_history(a, hist, where, errstr, n);
    if (rc) {
      memset(a, 0, sizeof *a);
      return rc;
    }
  }
  char *tools_json = NULL;
  if (tools) {
    int rc = parse_tools(tools, where, &tools_json, errstr, n);
    if (rc) return rc;
  }
  if (instr && cJSON_IsString(instr)) {
    a->instructions = strdup(instr->valuestring);
    if (!a->instructions) {
      free(tools_json);
      return aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
    }
  }
  a->tools_json = tools_json;
  if (choice && !cJSON_IsNull(choice)) {
    int rc = parse_tool_choice(choice, tools, where, &a->tool_choice_json, errstr, n);
    if (rc) {
      free(a->instructions);
      free(a->tools_json);
      memset(a, 0, sizeof *a);
      return rc;
    }
  }
  copy_str(a->name, sizeof a->name, name->valuestring);
  copy_str(a->model, sizeof a->model, model->valuestring);
  cfg_assistant_hash(a->name, a->model, a->instructions, a->tools_json, a->tool_choice_json, a->hash);
  c->nassistants++;
  return AW_OK;
}

static int parse_assistants(cfg *c, const cJSON *arr, char *errstr, size_t n) {
  if (!cJSON_IsArray(arr)) return cfgerr(errstr, n, "assistants: expected an array");
  int na = cJSON_GetArraySize(arr);
  if (na > CFG_MAX_ASSISTANTS)
    return cfgerr(errstr, n, "assistants: %d assistants, at most %d", na, CFG_MAX_ASSISTANTS);
  free_assistants(c); /* the file's list replaces any earlier one */
  int i = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, arr) {
    int rc = parse_assistant(c, it, i++, errstr, n);
    if (rc) return rc;
  }
  return AW_OK;
}

/* ---- functions ------------------------------------------------------------ */

static const char *const ON_DEADLINE_NAMES[] = {"error_output", "cancel_run"};

const char *cfg_on_deadline_name(cfg_on_deadline d) {
  return d == CFG_ON_DEADLINE_CANCEL_RUN ? ON_DEADLINE_NAMES[1] : ON_DEADLINE_NAMES[0];
}

static void route_defaults(cfg_function *r, const char *name) {
  memset(r, 0, sizeof *r);
  copy_str(r->name, sizeof r->name, name);
  r->deadline_ms = CFG_DEFAULT_DEADLINE_MS;
  r->on_deadline = CFG_ON_DEADLINE_ERROR_OUTPUT;
  r->validate_arguments = 1;
}

/* Keys that would hold the tool secret: refused wherever they appear. */
static int is_tool_secret_key(const char *k) {
  return strcmp(k, "tool_secret") == 0 || strcmp(k, "tool_secret_previous") == 0;
}

static int refuse_tool_secret(const char *path, char *errstr, size_t n) {
  return cfgerr(errstr, n,
                "%s: the tool-call secret is not read from the config file on purpose; "
                "set AW_TOOL_SECRET (and AW_TOOL_SECRET_PREVIOUS while rotating) in the environment, "
                "e.g. from a Kubernetes Secret",
                path);
}

static int no_duplicate_keys(const cJSON *obj, const char *section, char *errstr, size_t n);

static int parse_function(cfg_function *o, const cJSON *obj, char *errstr, size_t n) {
  char where[96], path[128];
  snprintf(where, sizeof where, "functions.%s", obj->string);
  if (!cJSON_IsObject(obj)) return cfgerr(errstr, n, "%s: expected an object", where);
  int rc = no_duplicate_keys(obj, where, errstr, n);
  if (rc) return rc;
  route_defaults(o, obj->string);
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    const char *k = it->string;
    snprintf(path, sizeof path, "%s.%s", where, k);
    if (is_tool_secret_key(k)) return refuse_tool_secret(path, errstr, n);
    if (strcmp(k, "topic") == 0) {
      if (!cJSON_IsString(it)) return cfgerr(errstr, n, "%s: expected a string", path);
      if (!topic_ok(it->valuestring))
        return cfgerr(errstr, n, "%s: invalid Kafka topic name \"%.80s\" (1..249 of [A-Za-z0-9._-])", path,
                      it->valuestring);
      copy_str(o->topic, sizeof o->topic, it->valuestring);
    } else if (strcmp(k, "deadline_ms") == 0) {
      long long x = 0; /* set by json_integer on success */
      rc = json_integer(it, &x, path, errstr, n);
      if (rc) return rc;
      if (x < CFG_MIN_DEADLINE_MS || x > CFG_MAX_DEADLINE_MS)
        return cfgerr(errstr, n, "%s: %lld is out of range [%d, %d] (the API expires a run waiting for tools after 10 minutes)",
                      path, x, CFG_MIN_DEADLINE_MS, CFG_MAX_DEADLINE_MS);
      o->deadline_ms = (long)x;
    } else if (strcmp(k, "on_deadline") == 0) {
      if (cJSON_IsString(it) && strcmp(it->valuestring, ON_DEADLINE_NAMES[0]) == 0)
        o->on_deadline = CFG_ON_DEADLINE_ERROR_OUTPUT;
      else if (cJSON_IsString(it) && strcmp(it->valuestring, ON_DEADLINE_NAMES[1]) == 0)
        o->on_deadline = CFG_ON_DEADLINE_CANCEL_RUN;
      else
        return cfgerr(errstr, n, "%s: expected \"error_output\" or \"cancel_run\"", path);
    } else if (strcmp(k, "validate_arguments") == 0) {
      if (!cJSON_IsBool(it)) return cfgerr(errstr, n, "%s: expected true or false", path);
      o->validate_arguments = cJSON_IsTrue(it);
    } else {
      return cfgerr(errstr, n, "%s: unknown key \"%s\" (expected topic, deadline_ms, on_deadline, validate_arguments)",
                    where, k);
    }
  }
  return AW_OK;
}

/* The "functions" object, checked on its own; whether its names exist is
 * resolve_routes()' business, once every source is in. */
static int parse_functions(cfg *c, const cJSON *obj, char *errstr, size_t n) {
  if (!cJSON_IsObject(obj)) return cfgerr(errstr, n, "functions: expected an object");
  int rc = no_duplicate_keys(obj, "functions", errstr, n);
  if (rc) return rc;
  int nf = cJSON_GetArraySize(obj);
  if (nf > CFG_MAX_FUNCTIONS)
    return cfgerr(errstr, n, "functions: %d entries, at most %d", nf, CFG_MAX_FUNCTIONS);
  memset(c->tools.overrides, 0, sizeof c->tools.overrides); /* the file's object replaces any earlier one */
  c->tools.noverrides = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    if (!function_name_ok(it->string))
      return cfgerr(errstr, n, "functions.%.80s: invalid function name (1..%d of [A-Za-z0-9_-])", it->string,
                    CFG_FUNCTION_NAME_SIZE - 1);
    rc = parse_function(&c->tools.overrides[c->tools.noverrides], it, errstr, n);
    if (rc) return rc;
    c->tools.noverrides++;
  }
  return AW_OK;
}

static cfg_function *find_route(cfg *c, const char *name) {
  for (size_t i = 0; i < c->tools.nroutes; i++)
    if (strcmp(c->tools.routes[i].name, name) == 0) return &c->tools.routes[i];
  return NULL;
}

/* Add the function tools of assistant ai to the routes, with the defaults. */
static int add_assistant_routes(cfg *c, size_t ai, char *errstr, size_t n) {
  const cfg_assistant *a = &c->assistants[ai];
  if (!a->tools_json) return AW_OK;
  cJSON *arr = cJSON_Parse(a->tools_json); /* printed by cJSON: fails only for lack of memory */
  if (!arr) return aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
  int rc = AW_OK, ti = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, arr) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
    const cJSON *fname = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    int idx = ti++;
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0 || !cJSON_IsString(fname)) continue;
    char *pj = NULL;
    if (params && !(pj = cJSON_PrintUnformatted(params))) {
      rc = aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
      break;
    }
    cfg_function *r = find_route(c, fname->valuestring);
    if (r) {
      int same = (!pj && !r->parameters_json) || (pj && r->parameters_json && strcmp(pj, r->parameters_json) == 0);
      free(pj);
      if (!same) {
        rc = cfgerr(errstr, n,
                    "assistants[%zu] (\"%.64s\").tools[%d]: function \"%s\" is declared with other parameters "
                    "than by an earlier assistant (calls are routed by name: one name, one schema)",
                    ai, a->name, idx, fname->valuestring);
        break;
      }
      continue;
    }
    if (c->tools.nroutes >= CFG_MAX_FUNCTIONS) {
      free(pj);
      rc = cfgerr(errstr, n, "assistants[%zu] (\"%.64s\").tools[%d]: more than %d distinct functions across all assistants",
                  ai, a->name, idx, CFG_MAX_FUNCTIONS);
      break;
    }
    r = &c->tools.routes[c->tools.nroutes++];
    route_defaults(r, fname->valuestring);
    r->parameters_json = pj;
  }
  cJSON_Delete(arr);
  return rc;
}

/* Rebuild the routes from the assistants, the "functions" entries and the
 * default topic; every entry must name a function tool. */
static int resolve_routes(cfg *c, char *errstr, size_t n) {
  free_routes(c);
  for (size_t i = 0; i < c->nassistants; i++) {
    int rc = add_assistant_routes(c, i, errstr, n);
    if (rc) return rc;
  }
  for (size_t i = 0; i < c->tools.nroutes; i++)
    copy_str(c->tools.routes[i].topic, sizeof c->tools.routes[i].topic, c->kafka.topic_tool_requests);
  for (size_t i = 0; i < c->tools.noverrides; i++) {
    const cfg_function *o = &c->tools.overrides[i];
    cfg_function *r = find_route(c, o->name);
    if (!r)
      return cfgerr(errstr, n, "functions.%s: no configured assistant has a function tool named \"%s\"", o->name,
                    o->name);
    if (o->topic[0]) copy_str(r->topic, sizeof r->topic, o->topic);
    r->deadline_ms = o->deadline_ms;
    r->on_deadline = o->on_deadline;
    r->validate_arguments = o->validate_arguments;
  }
  return AW_OK;
}

/* Does assistant a declare a function tool?  (Error path only: re-parses.) */
static int has_function_tool(const cfg_assistant *a) {
  cJSON *arr = a->tools_json ? cJSON_Parse(a->tools_json) : NULL;
  int found = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, arr) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "function") == 0) found = 1;
  }
  cJSON_Delete(arr);
  return found;
}

/* ---- the document --------------------------------------------------------- */

static int is_section(const char *path) {
  for (size_t i = 0; i < sizeof SECTIONS / sizeof SECTIONS[0]; i++)
    if (strcmp(SECTIONS[i], path) == 0) return 1;
  return 0;
}

static int no_duplicate_keys(const cJSON *obj, const char *section, char *errstr, size_t n) {
  for (const cJSON *a = obj->child; a; a = a->next)
    for (const cJSON *b = a->next; b; b = b->next)
      if (strcmp(a->string, b->string) == 0) {
        char p[256];
        return cfgerr(errstr, n, "%s: duplicate key", path_of(section, a->string, p, sizeof p));
      }
  return AW_OK;
}

static int parse_object(cfg *c, const cJSON *obj, const char *section, char *errstr, size_t n) {
  int rc = no_duplicate_keys(obj, section, errstr, n);
  if (rc) return rc;
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    const char *k = it->string;
    char path[256];
    path_of(section, k, path, sizeof path);
    if (strcmp(path, "api_key") == 0 || strcmp(path, "api.api_key") == 0 ||
        strcmp(path, "api.key") == 0 || strcmp(path, "openai_api_key") == 0)
      return cfgerr(errstr, n,
                    "%s: the API key is not read from the config file on purpose; "
                    "set AW_API_KEY (or OPENAI_API_KEY) in the environment, e.g. from a Kubernetes Secret",
                    path);
    if (is_tool_secret_key(k)) return refuse_tool_secret(path, errstr, n);
    if (strcmp(path, "kafka.properties") == 0) {
      rc = parse_properties(c, it, errstr, n);
    } else if (strcmp(path, "assistants") == 0) {
      rc = parse_assistants(c, it, errstr, n);
    } else if (strcmp(path, "functions") == 0) {
      rc = parse_functions(c, it, errstr, n);
    } else if (is_section(path)) {
      if (!cJSON_IsObject(it)) return cfgerr(errstr, n, "%s: expected an object", path);
      rc = parse_object(c, it, path, errstr, n);
    } else {
      const field *f = NULL;
      for (size_t i = 0; i < NFIELDS; i++)
        if (strcmp(FIELDS[i].section, section) == 0 && strcmp(FIELDS[i].key, k) == 0) f = &FIELDS[i];
      if (!f) return cfgerr(errstr, n, "unknown key \"%s\"", path);
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
    return cfgerr(errstr, errstr_size, "invalid JSON near byte %zu", off);
  }
  int rc;
  if (!cJSON_IsObject(doc)) rc = cfgerr(errstr, errstr_size, "the configuration must be a JSON object");
  else rc = parse_object(c, doc, "", errstr, errstr_size);
  cJSON_Delete(doc);
  if (!rc) rc = resolve_routes(c, errstr, errstr_size);
  return rc;
}

int cfg_load_file(cfg *c, const char *path, char *errstr, size_t errstr_size) {
  FILE *f = fopen(path, "rb");
  if (!f) return cfgerr(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    return cfgerr(errstr, errstr_size, "%s: not a regular file", path);
  }
  if ((unsigned long long)st.st_size > CFG_MAX_FILE_BYTES) {
    fclose(f);
    return cfgerr(errstr, errstr_size, "%s: larger than %u bytes", path, CFG_MAX_FILE_BYTES);
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
    return cfgerr(errstr, errstr_size, "%s: read error", path);
  }
  char inner[512];
  int rc = cfg_load_json(c, data, size, inner, sizeof inner);
  free(data);
  if (rc) {
    if (rc == AW_ECONFIG) cfgerr(errstr, errstr_size, "%s: %s", path, inner);
    else aw_seterr(rc, errstr, errstr_size, "%s", inner);
  }
  return rc;
}

/* ---- environment ---------------------------------------------------------- */

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

/* A tool secret from the environment; its value is never echoed. */
static int env_tool_secret(const char *name, char *dst, size_t size, char *errstr, size_t n) {
  const char *v = env(name);
  if (!v) return AW_OK;
  size_t len = strlen(v);
  if (len >= size) return cfgerr(errstr, n, "%s: too long (at most %zu bytes)", name, size - 1);
  if (len < CORR_MIN_SECRET)
    return cfgerr(errstr, n, "%s: shorter than %d bytes (use a random value, e.g. from `openssl rand -base64 32`)",
                  name, CORR_MIN_SECRET);
  for (const char *p = v; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f)
      return cfgerr(errstr, n, "%s: contains whitespace or control characters", name);
  memcpy(dst, v, len + 1);
  return AW_OK;
}

int cfg_apply_env(cfg *c, char *errstr, size_t errstr_size) {
  for (size_t i = 0; i < NFIELDS; i++) {
    const field *f = &FIELDS[i];
    const char *v = f->env ? env(f->env) : NULL;
    if (!v) continue;
    int rc;
    if (is_number_type(f->type)) {
      char *endp;
      errno = 0;
      long long x = strtoll(v, &endp, 10);
      if (errno || endp == v || *endp)
        return cfgerr(errstr, errstr_size, "%s: expected an integer, got \"%.32s\"", f->env, v);
      rc = set_number(c, f, x, f->env, errstr, errstr_size);
    } else if (f->type == F_BOOL) {
      int b = !strcmp(v, "true") || !strcmp(v, "1") ? 1 : !strcmp(v, "false") || !strcmp(v, "0") ? 0 : -1;
      if (b < 0) return cfgerr(errstr, errstr_size, "%s: expected true or false, got \"%.32s\"", f->env, v);
      *(int *)((char *)c + f->off) = b;
      rc = AW_OK;
    } else {
      rc = set_string(c, f, v, f->env, errstr, errstr_size);
    }
    if (rc) return rc;
  }
  const char *name = "AW_API_KEY", *key = env(name);
  if (!key) key = env(name = "OPENAI_API_KEY");
  if (key) {
    /* Never echo the value. */
    if (strlen(key) >= sizeof c->api.api_key)
      return cfgerr(errstr, errstr_size, "%s: too long (at most %zu bytes)", name, sizeof c->api.api_key - 1);
    for (const char *p = key; *p; p++)
      if ((unsigned char)*p <= 0x20 || *p == 0x7f)
        return cfgerr(errstr, errstr_size, "%s: contains whitespace or control characters", name);
    copy_str(c->api.api_key, sizeof c->api.api_key, key);
  }
  int rc = env_tool_secret("AW_TOOL_SECRET", c->tools.secret, sizeof c->tools.secret, errstr, errstr_size);
  if (!rc)
    rc = env_tool_secret("AW_TOOL_SECRET_PREVIOUS", c->tools.secret_previous, sizeof c->tools.secret_previous,
                         errstr, errstr_size);
  if (rc) return rc;
  if (c->tools.secret_previous[0] && !c->tools.secret[0])
    return cfgerr(errstr, errstr_size,
                  "AW_TOOL_SECRET_PREVIOUS: set without AW_TOOL_SECRET (the previous secret only verifies "
                  "replies; new correlation ids need the current one)");
  return resolve_routes(c, errstr, errstr_size); /* the default topic may have changed */
}

/* Every environment variable cfg_apply_env reads a secret from.  A new
 * secret read from the environment belongs here, so that
 * cfg_scrub_secret_env removes it once copied. */
static const char *const SECRET_ENV[] = {"AW_API_KEY", "OPENAI_API_KEY", "AW_TOOL_SECRET",
                                         "AW_TOOL_SECRET_PREVIOUS"};

static int is_secret_env_name(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof SECRET_ENV / sizeof SECRET_ENV[0]; i++)
    if (strlen(SECRET_ENV[i]) == len && strncmp(SECRET_ENV[i], name, len) == 0) return 1;
  /* A guard for secrets added elsewhere later: any AW_ variable named like one. */
  if (len < 3 || strncmp(name, "AW_", 3) != 0) return 0;
  static const char *const words[] = {"SECRET", "PASSWORD", "TOKEN", "_KEY"};
  for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
    size_t wl = strlen(words[w]);
    for (size_t i = 0; i + wl <= len; i++)
      if (strncmp(name + i, words[w], wl) == 0) return 1;
  }
  return 0;
}

int cfg_scrub_secret_env(void) {
  extern char **environ;
  int n = 0;
  for (;;) {
    char name[256];
    int found = 0;
    for (char **e = environ; e && *e; e++) {
      const char *eq = strchr(*e, '=');
      size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
      if (!eq || len >= sizeof name || !is_secret_env_name(*e, len)) continue;
      /* unsetenv only drops the pointer: the bytes of the process's
       * initial environment stay where /proc/<pid>/environ and a core dump
       * read them, so wipe the value in place first. */
      explicit_bzero((char *)eq + 1, strlen(eq + 1));
      memcpy(name, *e, len);
      name[len] = '\0';
      found = 1;
      break;
    }
    if (!found) break;
    unsetenv(name); /* environ changes: scan again from the start */
    n++;
  }
  return n;
}

/* Checks across the file and the environment. */
static int check_loaded(const cfg *c, char *errstr, size_t n) {
  /* The bearer key travels with every request: over http:// to another
   * machine anyone on the path reads it.  Loopback (the simulator, a local
   * llama.cpp) stays allowed. */
  if (url_transport(c->api.base_url) == URL_CLEARTEXT_REMOTE && !c->api.allow_insecure_http) {
    char shown[CFG_URL_SIZE];
    return cfgerr(errstr, n,
                  "api.base_url: %s is plain http to a host that is not loopback: the API key would cross the "
                  "network in cleartext (use https, or set api.allow_insecure_http: true / "
                  "AW_API_ALLOW_INSECURE_HTTP=1 for a trusted network)",
                  url_redact(c->api.base_url, shown, sizeof shown));
  }
  unsigned char addr[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, c->worker.health_bind, addr) != 1 && inet_pton(AF_INET6, c->worker.health_bind, addr) != 1)
    return cfgerr(errstr, n, "worker.health_bind: \"%.64s\" is not a numeric IPv4 or IPv6 address",
                  c->worker.health_bind);
  if (c->tools.nroutes > 0 && !c->tools.secret[0]) {
    const char *who = "";
    for (size_t i = 0; i < c->nassistants && !*who; i++)
      if (has_function_tool(&c->assistants[i])) who = c->assistants[i].name;
    return cfgerr(errstr, n,
                  "AW_TOOL_SECRET: required because assistant \"%.64s\" has function tools (the key that signs "
                  "tool-call correlation ids, at least %d bytes; set it in the environment, e.g. from a Kubernetes Secret)",
                  who, CORR_MIN_SECRET);
  }
  return AW_OK;
}

int cfg_load(cfg *c, const char *path, char *errstr, size_t errstr_size) {
  cfg_init(c);
  if (!path) path = env("AW_CONFIG");
  int rc = path ? cfg_load_file(c, path, errstr, errstr_size) : AW_OK;
  if (!rc) rc = cfg_apply_env(c, errstr, errstr_size);
  if (!rc) rc = check_loaded(c, errstr, errstr_size);
  if (!rc) c->worker.history_ttl_s = cfg_history_ttl_s(c); /* the value in use, for --print-config */
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
  if (!c->tools.secret[0]) return cfgerr(errstr, errstr_size, "AW_TOOL_SECRET: not set");
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
  for (size_t i = 0; ok && i < NFIELDS; i++) {
    const field *f = &FIELDS[i];
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
    ok = ok && cJSON_AddStringToObject(o, "hash", a->hash);
  }
  cJSON *fns = ok ? cJSON_AddObjectToObject(root, "functions") : NULL;
  ok = ok && fns;
  for (size_t i = 0; ok && i < c->tools.nroutes; i++) {
    const cfg_function *r = &c->tools.routes[i];
    cJSON *o = cJSON_AddObjectToObject(fns, r->name);
    ok = o && cJSON_AddStringToObject(o, "topic", r->topic) &&
         cJSON_AddNumberToObject(o, "deadline_ms", (double)r->deadline_ms) &&
         cJSON_AddStringToObject(o, "on_deadline", cfg_on_deadline_name(r->on_deadline)) &&
         cJSON_AddBoolToObject(o, "validate_arguments", r->validate_arguments);
  }
  ok = ok && (c->tools.secret[0] ? cJSON_AddStringToObject(root, "tool_secret", "***")
                                 : cJSON_AddNullToObject(root, "tool_secret"));
  ok = ok && (c->tools.secret_previous[0] ? cJSON_AddStringToObject(root, "tool_secret_previous", "***")
                                          : cJSON_AddNullToObject(root, "tool_secret_previous"));
  char *s = ok ? cJSON_Print(root) : NULL;
  cJSON_Delete(root);
  if (!s) return AW_ENOMEM;
  int rc = buf_appends(out, s);
  if (!rc) rc = buf_appends(out, "\n");
  free(s);
  return rc;
}

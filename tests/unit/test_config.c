/* test_config.c -- configuration: defaults, the JSON file, environment
 * overrides, every validation error, the API key refused in the file, the
 * assistant hash, cfg_dump hiding secrets, and kconf_new building a
 * librdkafka configuration from it.  Needs no infrastructure (files go to a
 * temporary directory; no broker is contacted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <cmocka.h>

#include "config.h"
#include "kafka_conf.h"

static const char *const ENV_VARS[] = {
    "AW_CONFIG",       "AW_KAFKA_BROKERS", "AW_KAFKA_GROUP_ID", "AW_TOPIC_REQUESTS", "AW_TOPIC_RESPONSES",
    "AW_TOPIC_DELTAS", "AW_TOPIC_DLQ",     "AW_REDIS_HOST",     "AW_REDIS_PORT",     "AW_REDIS_PREFIX",
    "AW_API_BASE_URL", "AW_API_KEY",       "OPENAI_API_KEY",    "AW_API_ORG",        "AW_API_PROJECT",
    "AW_MAX_IN_FLIGHT", "AW_LOG_LEVEL",    "AW_HEALTH_PORT",
};

/* Every test starts from a clean environment: the suite may run under a
 * shell that exports AW_* for the local stack. */
static int clear_env(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof ENV_VARS / sizeof ENV_VARS[0]; i++) unsetenv(ENV_VARS[i]);
  return 0;
}

static char g_tmp[256];

/* Write text to a fresh temporary file; returns its path (static buffer). */
static const char *write_tmp(const char *text) {
  snprintf(g_tmp, sizeof g_tmp, "%s/aw-test-config-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  int fd = mkstemp(g_tmp);
  assert_true(fd >= 0);
  size_t n = strlen(text);
  assert_int_equal(write(fd, text, n), (ssize_t)n);
  close(fd);
  return g_tmp;
}

/* Load json on top of the defaults; returns the code, errstr in err. */
static int load(const char *json, char *err, size_t n) {
  cfg c;
  cfg_init(&c);
  err[0] = '\0';
  int rc = cfg_load_json(&c, json, strlen(json), err, n);
  cfg_free(&c);
  return rc;
}

static void test_defaults_are_the_documented_values(void **state) {
  (void)state;
  cfg c;
  char err[256];
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.kafka.brokers, "");
  assert_string_equal(c.kafka.group_id, "assistant-worker");
  assert_string_equal(c.kafka.topic_requests, "assistant.requests");
  assert_string_equal(c.kafka.topic_responses, "assistant.responses");
  assert_string_equal(c.kafka.topic_deltas, "assistant.deltas");
  assert_string_equal(c.kafka.topic_dlq, "assistant.dlq");
  assert_int_equal(c.kafka.nprops, 0);
  assert_string_equal(c.redis.host, "127.0.0.1");
  assert_int_equal(c.redis.port, 6379);
  assert_string_equal(c.redis.prefix, "aw");
  assert_true(c.redis.connect_timeout_ms > 0);
  assert_string_equal(c.api.base_url, "https://api.openai.com/v1");
  assert_string_equal(c.api.api_key, "");
  assert_string_equal(c.api.organization, "");
  assert_string_equal(c.api.project, "");
  assert_int_equal(c.api.request_timeout_ms, 30000);
  assert_int_equal(c.api.stream_idle_timeout_ms, 60000);
  assert_int_equal(c.api.max_retries, 5);
  assert_int_equal(c.worker.max_in_flight, 1000);
  assert_int_equal(c.worker.max_event_bytes, 1024 * 1024);
  assert_int_equal(c.worker.max_answer_bytes, 256 * 1024);
  assert_int_equal(c.worker.commit_interval_ms, 200);
  assert_int_equal(c.worker.health_port, 0);
  assert_int_equal(c.log_level, LOG_INFO);
  assert_int_equal(c.nassistants, 0);
  cfg_free(&c);
}

static const char FULL[] =
    "{\"kafka\":{\"brokers\":\"k1:9092,k2:9092\",\"group_id\":\"g1\",\n"
    "  \"topics\":{\"requests\":\"r.in\",\"responses\":\"r.out\",\"deltas\":\"r.delta\",\"dlq\":\"r.dlq\"},\n"
    "  \"properties\":{\"security.protocol\":\"SASL_SSL\",\"sasl.password\":\"hunter2\",\"linger.ms\":5,"
    "\"enable.idempotence\":true}},\n"
    " \"redis\":{\"host\":\"redis.svc\",\"port\":6380,\"prefix\":\"awp\",\"connect_timeout_ms\":1500},\n"
    " \"api\":{\"base_url\":\"http://sim:8080/v1/\",\"organization\":\"org-1\",\"project\":\"proj-1\","
    "\"timeout_ms\":1000,\"stream_idle_timeout_ms\":2000,\"max_retries\":0},\n"
    " \"worker\":{\"max_in_flight\":10,\"max_event_bytes\":2048,\"max_answer_bytes\":4096,"
    "\"commit_interval_ms\":50,\"health_port\":8081},\n"
    " \"log_level\":\"debug\",\n"
    " \"assistants\":[{\"name\":\"support\",\"model\":\"gpt-4o\",\"instructions\":\"Be kind.\",\n"
    "   \"tools\":[ {\"type\": \"file_search\"}, {\"type\":\"function\",\"function\":{\"name\":\"get_order\"}} ]},\n"
    "  {\"name\":\"plain\",\"model\":\"gpt-4o-mini\"}]}";

static void test_file_sets_every_setting(void **state) {
  (void)state;
  cfg c;
  char err[256];
  assert_int_equal(cfg_load(&c, write_tmp(FULL), err, sizeof err), AW_OK);
  unlink(g_tmp);
  assert_string_equal(c.kafka.brokers, "k1:9092,k2:9092");
  assert_string_equal(c.kafka.group_id, "g1");
  assert_string_equal(c.kafka.topic_requests, "r.in");
  assert_string_equal(c.kafka.topic_responses, "r.out");
  assert_string_equal(c.kafka.topic_deltas, "r.delta");
  assert_string_equal(c.kafka.topic_dlq, "r.dlq");
  assert_int_equal(c.kafka.nprops, 4);
  assert_string_equal(c.kafka.props[0].key, "security.protocol"); /* file order kept */
  assert_string_equal(c.kafka.props[0].value, "SASL_SSL");
  assert_string_equal(c.kafka.props[2].key, "linger.ms");
  assert_string_equal(c.kafka.props[2].value, "5");      /* numbers become strings */
  assert_string_equal(c.kafka.props[3].value, "true");   /* so do booleans */
  assert_string_equal(c.redis.host, "redis.svc");
  assert_int_equal(c.redis.port, 6380);
  assert_string_equal(c.redis.prefix, "awp");
  assert_int_equal(c.redis.connect_timeout_ms, 1500);
  assert_string_equal(c.api.base_url, "http://sim:8080/v1"); /* trailing slash dropped */
  assert_string_equal(c.api.organization, "org-1");
  assert_string_equal(c.api.project, "proj-1");
  assert_int_equal(c.api.request_timeout_ms, 1000);
  assert_int_equal(c.api.stream_idle_timeout_ms, 2000);
  assert_int_equal(c.api.max_retries, 0);
  assert_int_equal(c.worker.max_in_flight, 10);
  assert_int_equal(c.worker.max_event_bytes, 2048);
  assert_int_equal(c.worker.max_answer_bytes, 4096);
  assert_int_equal(c.worker.commit_interval_ms, 50);
  assert_int_equal(c.worker.health_port, 8081);
  assert_int_equal(c.log_level, LOG_DEBUG);
  assert_int_equal(c.nassistants, 2);
  const cfg_assistant *a = cfg_find_assistant(&c, "support");
  assert_non_null(a);
  assert_string_equal(a->model, "gpt-4o");
  assert_string_equal(a->instructions, "Be kind.");
  /* canonical: printed unformatted by cJSON, whitespace gone, order kept */
  assert_string_equal(a->tools_json,
                      "[{\"type\":\"file_search\"},{\"type\":\"function\",\"function\":{\"name\":\"get_order\"}}]");
  assert_int_equal(strlen(a->hash), 16);
  const cfg_assistant *b = cfg_find_assistant(&c, "plain");
  assert_non_null(b);
  assert_null(b->instructions);
  assert_null(b->tools_json);
  assert_null(cfg_find_assistant(&c, "nobody"));

  be_assistant_def def;
  cfg_assistant_def(a, &def);
  assert_string_equal(def.name, "support");
  assert_ptr_equal(def.tools_json, a->tools_json);
  assert_string_equal(def.hash, a->hash);

  be_assistants_config bc;
  memset(&bc, 0, sizeof bc);
  bc.retry_base_ms = 250;
  cfg_backend_config(&c, &bc);
  assert_string_equal(bc.base_url, "http://sim:8080/v1");
  assert_string_equal(bc.organization, "org-1");
  assert_int_equal(bc.request_timeout_ms, 1000);
  assert_int_equal(bc.max_retries, 0);
  assert_int_equal(bc.max_answer_bytes, 4096);
  assert_int_equal(bc.retry_base_ms, 250); /* untouched */
  cfg_free(&c);
  cfg_free(&c); /* twice is safe */
}

static void test_env_overrides_the_file(void **state) {
  (void)state;
  const char *path = write_tmp(FULL);
  setenv("AW_CONFIG", path, 1); /* used when no --config path is given */
  setenv("AW_KAFKA_BROKERS", "envk:9092", 1);
  setenv("AW_KAFKA_GROUP_ID", "envg", 1);
  setenv("AW_TOPIC_REQUESTS", "e.req", 1);
  setenv("AW_TOPIC_RESPONSES", "e.resp", 1);
  setenv("AW_TOPIC_DELTAS", "e.delta", 1);
  setenv("AW_TOPIC_DLQ", "e.dlq", 1);
  setenv("AW_REDIS_HOST", "envredis", 1);
  setenv("AW_REDIS_PORT", "7000", 1);
  setenv("AW_REDIS_PREFIX", "envp", 1);
  setenv("AW_API_BASE_URL", "https://example.test/v1", 1);
  setenv("AW_API_ORG", "org-env", 1);
  setenv("AW_API_PROJECT", "proj-env", 1);
  setenv("AW_MAX_IN_FLIGHT", "77", 1);
  setenv("AW_LOG_LEVEL", "warn", 1);
  setenv("AW_HEALTH_PORT", "9090", 1);
  setenv("AW_API_KEY", "sk-test-env", 1);
  cfg c;
  char err[256];
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  unlink(path);
  assert_string_equal(c.kafka.brokers, "envk:9092");
  assert_string_equal(c.kafka.group_id, "envg");
  assert_string_equal(c.kafka.topic_requests, "e.req");
  assert_string_equal(c.kafka.topic_responses, "e.resp");
  assert_string_equal(c.kafka.topic_deltas, "e.delta");
  assert_string_equal(c.kafka.topic_dlq, "e.dlq");
  assert_string_equal(c.redis.host, "envredis");
  assert_int_equal(c.redis.port, 7000);
  assert_string_equal(c.redis.prefix, "envp");
  assert_string_equal(c.api.base_url, "https://example.test/v1");
  assert_string_equal(c.api.organization, "org-env");
  assert_string_equal(c.api.project, "proj-env");
  assert_int_equal(c.worker.max_in_flight, 77);
  assert_int_equal(c.log_level, LOG_WARN);
  assert_int_equal(c.worker.health_port, 9090);
  assert_string_equal(c.api.api_key, "sk-test-env");
  /* what env does not name keeps the file's value */
  assert_int_equal(c.api.request_timeout_ms, 1000);
  assert_int_equal(c.nassistants, 2);
  cfg_free(&c);
}

static void test_empty_env_variable_counts_as_unset(void **state) {
  (void)state;
  setenv("AW_KAFKA_GROUP_ID", "", 1);
  setenv("AW_REDIS_PORT", "", 1);
  cfg c;
  char err[256];
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.kafka.group_id, "assistant-worker");
  assert_int_equal(c.redis.port, 6379);
  cfg_free(&c);
}

static void test_api_key_falls_back_to_openai_api_key(void **state) {
  (void)state;
  cfg c;
  char err[256];
  setenv("OPENAI_API_KEY", "sk-fallback", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.api.api_key, "sk-fallback");
  cfg_free(&c);
  setenv("AW_API_KEY", "sk-primary", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.api.api_key, "sk-primary");
  cfg_free(&c);
}

static void test_api_key_in_the_file_is_refused(void **state) {
  (void)state;
  char err[512];
  assert_int_equal(load("{\"api\":{\"api_key\":\"sk-secret-in-file\"}}", err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "api.api_key"));
  assert_non_null(strstr(err, "AW_API_KEY"));
  assert_null(strstr(err, "sk-secret-in-file")); /* the value is never echoed */
  assert_int_equal(load("{\"api_key\":\"sk-x\"}", err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_API_KEY"));
  assert_int_equal(load("{\"api\":{\"key\":\"sk-x\"}}", err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_API_KEY"));
}

/* Each bad document, and a piece of the message that must name the problem. */
static const struct {
  const char *json;
  const char *expect;
} BAD[] = {
    {"{\"kafak\":{}}", "unknown key \"kafak\""},
    {"{\"kafka\":{\"brokres\":\"x\"}}", "unknown key \"kafka.brokres\""},
    {"{\"kafka\":{\"topics\":{\"request\":\"x\"}}}", "unknown key \"kafka.topics.request\""},
    {"{\"redis\":{\"hots\":\"x\"}}", "unknown key \"redis.hots\""},
    {"{\"worker\":{\"max_inflight\":3}}", "unknown key \"worker.max_inflight\""},
    {"{\"kafka\":\"k:9092\"}", "kafka: expected an object"},
    {"{\"kafka\":{\"topics\":[]}}", "kafka.topics: expected an object"},
    {"{\"kafka\":{\"brokers\":9092}}", "kafka.brokers: expected a string"},
    {"{\"kafka\":{\"brokers\":\"\"}}", "kafka.brokers: must not be empty"},
    {"{\"kafka\":{\"topics\":{\"requests\":\"has space\"}}}", "kafka.topics.requests: invalid Kafka topic name"},
    {"{\"kafka\":{\"properties\":[]}}", "kafka.properties: expected an object"},
    {"{\"kafka\":{\"properties\":{\"acks\":[1]}}}", "kafka.properties.acks: expected a string"},
    {"{\"kafka\":{\"properties\":{\"bootstrap.servers\":\"x\"}}}", "set kafka.brokers instead"},
    {"{\"kafka\":{\"properties\":{\"group.id\":\"x\"}}}", "set kafka.group_id instead"},
    {"{\"redis\":{\"port\":\"6379\"}}", "redis.port: expected an integer"},
    {"{\"redis\":{\"port\":0}}", "redis.port: 0 is out of range [1, 65535]"},
    {"{\"redis\":{\"port\":65536}}", "redis.port: 65536 is out of range"},
    {"{\"redis\":{\"port\":63.5}}", "redis.port: expected an integer"},
    {"{\"api\":{\"base_url\":\"ftp://x\"}}", "api.base_url: \"ftp://x\" is not an http"},
    {"{\"api\":{\"timeout_ms\":0}}", "api.timeout_ms: 0 is out of range"},
    {"{\"api\":{\"max_retries\":-1}}", "api.max_retries: -1 is out of range"},
    {"{\"worker\":{\"max_in_flight\":0}}", "worker.max_in_flight: 0 is out of range"},
    {"{\"worker\":{\"max_event_bytes\":100}}", "worker.max_event_bytes: 100 is out of range"},
    {"{\"worker\":{\"health_port\":70000}}", "worker.health_port: 70000 is out of range"},
    {"{\"worker\":{\"commit_interval_ms\":1e300}}", "worker.commit_interval_ms: expected an integer"},
    {"{\"log_level\":\"loud\"}", "log_level: invalid log level \"loud\""},
    {"{\"log_level\":1}", "log_level: expected a string"},
    {"{\"assistants\":{}}", "assistants: expected an array"},
    {"{\"assistants\":[1]}", "assistants[0]: expected an object"},
    {"{\"assistants\":[{\"model\":\"m\"}]}", "assistants[0]: missing name"},
    {"{\"assistants\":[{\"name\":\"a\"}]}", "assistants[0] (\"a\"): missing model"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"\"}]}", "assistants[0] (\"a\").model: expected a non-empty string"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\"},{\"name\":\"a\",\"model\":\"m\"}]}",
     "assistants[1] (\"a\"): duplicate assistant name"},
    {"{\"assistants\":[{\"name\":\"a\\tb\",\"model\":\"m\"}]}", "assistants[0].name: invalid name"},
    {"{\"assistants\":[{\"name\":\" padded\",\"model\":\"m\"}]}", "assistants[0].name: invalid name"},
    {"{\"assistants\":[{\"name\":\"asst_1\",\"model\":\"m\"}]}", "must not start with \"asst_\""},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"temperature\":1}]}", "assistants[0]: unknown key \"temperature\""},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"instructions\":5}]}", "instructions: expected a string"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":{}}]}", "tools: expected an array"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":[{}]}]}", "tools[0]: missing \"type\" string"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":[{\"type\":\"function\"}]}]}",
     "tools[0]: a function tool needs function.name"},
    {"{\"redis\":{\"host\":\"a\",\"host\":\"b\"}}", "redis.host: duplicate key"},
    {"{\"kafka\":{\"brokers\":\"a\"}", "invalid JSON"},
    {"[]", "must be a JSON object"},
};

static void test_every_validation_error_names_the_problem(void **state) {
  (void)state;
  char err[512];
  for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
    int rc = load(BAD[i].json, err, sizeof err);
    if (rc != AW_ECONFIG || !strstr(err, BAD[i].expect))
      fail_msg("case %zu %s: rc=%d err=\"%s\", expected \"%s\"", i, BAD[i].json, rc, err, BAD[i].expect);
  }
}

static void test_limits_on_counts_and_lengths(void **state) {
  (void)state;
  char err[512];
  /* 65 assistants */
  size_t cap = 65 * 64 + 64;
  char *doc = malloc(cap);
  size_t o = (size_t)snprintf(doc, cap, "{\"assistants\":[");
  for (int i = 0; i < 65; i++)
    o += (size_t)snprintf(doc + o, cap - o, "%s{\"name\":\"a%d\",\"model\":\"m\"}", i ? "," : "", i);
  snprintf(doc + o, cap - o, "]}");
  assert_int_equal(load(doc, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "at most 64"));
  free(doc);
  /* 64 is fine */
  doc = malloc(cap);
  o = (size_t)snprintf(doc, cap, "{\"assistants\":[");
  for (int i = 0; i < 64; i++)
    o += (size_t)snprintf(doc + o, cap - o, "%s{\"name\":\"a%d\",\"model\":\"m\"}", i ? "," : "", i);
  snprintf(doc + o, cap - o, "]}");
  assert_int_equal(load(doc, err, sizeof err), AW_OK);
  free(doc);
  /* an over-long string is an error, not a truncation */
  char longhost[600];
  memset(longhost, 'h', sizeof longhost - 1);
  longhost[sizeof longhost - 1] = '\0';
  char json[700];
  snprintf(json, sizeof json, "{\"redis\":{\"host\":\"%s\"}}", longhost);
  assert_int_equal(load(json, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "redis.host: too long"));
}

static void test_invalid_env_values_name_the_variable(void **state) {
  (void)state;
  static const struct {
    const char *var, *value, *expect;
  } cases[] = {
      {"AW_REDIS_PORT", "abc", "AW_REDIS_PORT: expected an integer"},
      {"AW_REDIS_PORT", "12x", "AW_REDIS_PORT: expected an integer"},
      {"AW_HEALTH_PORT", "70000", "AW_HEALTH_PORT: 70000 is out of range"},
      {"AW_MAX_IN_FLIGHT", "0", "AW_MAX_IN_FLIGHT: 0 is out of range"},
      {"AW_LOG_LEVEL", "loud", "AW_LOG_LEVEL: invalid log level"},
      {"AW_TOPIC_DLQ", "bad topic", "AW_TOPIC_DLQ: invalid Kafka topic name"},
      {"AW_API_BASE_URL", "api.openai.com", "AW_API_BASE_URL: \"api.openai.com\" is not an http"},
      {"AW_API_KEY", "sk-has space", "AW_API_KEY: contains whitespace"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    clear_env(NULL);
    setenv(cases[i].var, cases[i].value, 1);
    cfg c;
    char err[512] = "";
    int rc = cfg_load(&c, NULL, err, sizeof err);
    if (rc != AW_ECONFIG || !strstr(err, cases[i].expect))
      fail_msg("%s=%s: rc=%d err=\"%s\"", cases[i].var, cases[i].value, rc, err);
    assert_null(strstr(err, "sk-has")); /* a key is never echoed */
  }
}

static void test_file_errors_name_the_file(void **state) {
  (void)state;
  cfg c;
  char err[512];
  assert_int_equal(cfg_load(&c, "/nonexistent/aw.json", err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "/nonexistent/aw.json"));
  const char *path = write_tmp("{\"bogus\":1}");
  assert_int_equal(cfg_load(&c, path, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, path));
  assert_non_null(strstr(err, "unknown key \"bogus\""));
  unlink(path);
}

static void test_properties_merge_by_key(void **state) {
  (void)state;
  cfg c;
  char err[256];
  cfg_init(&c);
  const char *a = "{\"kafka\":{\"properties\":{\"acks\":\"1\",\"linger.ms\":\"5\"}}}";
  const char *b = "{\"kafka\":{\"properties\":{\"acks\":\"all\"}}}";
  assert_int_equal(cfg_load_json(&c, a, strlen(a), err, sizeof err), AW_OK);
  assert_int_equal(cfg_load_json(&c, b, strlen(b), err, sizeof err), AW_OK);
  assert_int_equal(c.kafka.nprops, 2);
  assert_string_equal(c.kafka.props[0].key, "acks");
  assert_string_equal(c.kafka.props[0].value, "all");
  cfg_free(&c);
}

static void test_hash_is_stable_and_covers_every_part(void **state) {
  (void)state;
  char h[17], h2[17];
  cfg_assistant_hash("support", "gpt-4o", "Be kind.", "[{\"type\":\"file_search\"}]", h);
  /* pinned (computed independently, in Python, from the documented
   * serialisation): the hash is stored in the API's assistant metadata, so it must
   * not change between runs, builds or machines */
  assert_string_equal(h, "ef057acf0b2d3bd4");
  cfg_assistant_hash("support", "gpt-4o", "Be kind.", "[{\"type\":\"file_search\"}]", h2);
  assert_string_equal(h, h2);
  cfg_assistant_hash("support2", "gpt-4o", "Be kind.", "[{\"type\":\"file_search\"}]", h2);
  assert_string_not_equal(h, h2);
  cfg_assistant_hash("support", "gpt-4o-mini", "Be kind.", "[{\"type\":\"file_search\"}]", h2);
  assert_string_not_equal(h, h2);
  cfg_assistant_hash("support", "gpt-4o", "Be kind!", "[{\"type\":\"file_search\"}]", h2);
  assert_string_not_equal(h, h2);
  cfg_assistant_hash("support", "gpt-4o", "Be kind.", "[{\"type\":\"code_interpreter\"}]", h2);
  assert_string_not_equal(h, h2);
  cfg_assistant_hash("support", "gpt-4o", "Be kind.", NULL, h2);
  assert_string_not_equal(h, h2);
  /* absent instructions differ from empty ones; fields cannot bleed into each other */
  char x[17], y[17];
  cfg_assistant_hash("a", "m", NULL, NULL, x);
  cfg_assistant_hash("a", "m", "", NULL, y);
  assert_string_not_equal(x, y);
  cfg_assistant_hash("ab", "c", NULL, NULL, x);
  cfg_assistant_hash("a", "bc", NULL, NULL, y);
  assert_string_not_equal(x, y);

  /* from the file: whitespace in tools does not matter, content does */
  cfg c1, c2;
  char err[256];
  const char *d1 = "{\"assistants\":[{\"name\":\"s\",\"model\":\"m\",\"tools\":[{\"type\":\"file_search\"}]}]}";
  const char *d2 = "{\"assistants\":[{\"name\":\"s\",\"model\":\"m\",\"tools\":[ {\n \"type\" : \"file_search\" } ]}]}";
  cfg_init(&c1);
  cfg_init(&c2);
  assert_int_equal(cfg_load_json(&c1, d1, strlen(d1), err, sizeof err), AW_OK);
  assert_int_equal(cfg_load_json(&c2, d2, strlen(d2), err, sizeof err), AW_OK);
  assert_string_equal(c1.assistants[0].hash, c2.assistants[0].hash);
  cfg_assistant_hash("s", "m", NULL, "[{\"type\":\"file_search\"}]", h);
  assert_string_equal(c1.assistants[0].hash, h);
  cfg_free(&c1);
  cfg_free(&c2);
}

static void test_dump_hides_the_api_key_and_secret_properties(void **state) {
  (void)state;
  setenv("AW_API_KEY", "sk-very-secret-key", 1);
  cfg c;
  char err[256];
  assert_int_equal(cfg_load(&c, write_tmp(FULL), err, sizeof err), AW_OK);
  unlink(g_tmp);
  buf b;
  buf_init(&b, 1 << 20);
  assert_int_equal(cfg_dump(&c, &b), AW_OK);
  assert_null(strstr(b.data, "sk-very-secret-key"));
  assert_null(strstr(b.data, "hunter2"));
  cJSON *j = cJSON_Parse(b.data);
  assert_non_null(j);
  cJSON *api = cJSON_GetObjectItem(j, "api");
  assert_string_equal(cJSON_GetObjectItem(api, "api_key")->valuestring, "***");
  assert_string_equal(cJSON_GetObjectItem(api, "base_url")->valuestring, "http://sim:8080/v1");
  cJSON *props = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "kafka"), "properties");
  assert_string_equal(cJSON_GetObjectItem(props, "sasl.password")->valuestring, "***");
  assert_string_equal(cJSON_GetObjectItem(props, "security.protocol")->valuestring, "SASL_SSL");
  cJSON *topics = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "kafka"), "topics");
  assert_string_equal(cJSON_GetObjectItem(topics, "dlq")->valuestring, "r.dlq");
  assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "worker"), "health_port")->valueint, 8081);
  assert_string_equal(cJSON_GetObjectItem(j, "log_level")->valuestring, "debug");
  cJSON *a0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "assistants"), 0);
  assert_string_equal(cJSON_GetObjectItem(a0, "hash")->valuestring, c.assistants[0].hash);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(a0, "tools")), 2);
  cJSON_Delete(j);
  buf_free(&b);
  cfg_free(&c);

  /* no key: null, not "***" */
  clear_env(NULL);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  buf_init(&b, 1 << 20);
  assert_int_equal(cfg_dump(&c, &b), AW_OK);
  j = cJSON_Parse(b.data);
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "api"), "api_key")));
  cJSON_Delete(j);
  buf_free(&b);
  cfg_free(&c);
}

static void test_kconf_needs_brokers_and_names_a_bad_property(void **state) {
  (void)state;
  cfg c;
  char err[512];
  rd_kafka_conf_t *conf = NULL;
  cfg_init(&c);
  assert_int_equal(kconf_new(&c, "t", &conf, err, sizeof err), AW_ECONFIG);
  assert_null(conf);
  assert_non_null(strstr(err, "AW_KAFKA_BROKERS"));

  const char *doc = "{\"kafka\":{\"brokers\":\"k:9092\",\"properties\":{\"linger.ms\":\"5\",\"sasl.password\":\"hunter2\"}}}";
  assert_int_equal(cfg_load_json(&c, doc, strlen(doc), err, sizeof err), AW_OK);
  assert_int_equal(kconf_new(&c, "test-client", &conf, err, sizeof err), AW_OK);
  char v[256];
  size_t vn = sizeof v;
  assert_int_equal(rd_kafka_conf_get(conf, "bootstrap.servers", v, &vn), RD_KAFKA_CONF_OK);
  assert_string_equal(v, "k:9092");
  vn = sizeof v;
  assert_int_equal(rd_kafka_conf_get(conf, "client.id", v, &vn), RD_KAFKA_CONF_OK);
  assert_string_equal(v, "test-client");
  vn = sizeof v;
  assert_int_equal(rd_kafka_conf_get(conf, "linger.ms", v, &vn), RD_KAFKA_CONF_OK);
  assert_string_equal(v, "5");
  rd_kafka_conf_destroy(conf);
  cfg_free(&c);

  cfg_init(&c);
  doc = "{\"kafka\":{\"brokers\":\"k:9092\",\"properties\":{\"linger.ms\":\"soon\"}}}";
  assert_int_equal(cfg_load_json(&c, doc, strlen(doc), err, sizeof err), AW_OK);
  assert_int_equal(kconf_new(&c, "t", &conf, err, sizeof err), AW_ECONFIG);
  assert_null(conf);
  assert_non_null(strstr(err, "linger.ms"));
  cfg_free(&c);

  cfg_init(&c);
  doc = "{\"kafka\":{\"brokers\":\"k:9092\",\"properties\":{\"no.such.property\":\"1\"}}}";
  assert_int_equal(cfg_load_json(&c, doc, strlen(doc), err, sizeof err), AW_OK);
  assert_int_equal(kconf_new(&c, "t", &conf, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "no.such.property"));
  cfg_free(&c);
}

static void test_kconf_set_never_shows_a_secret_value(void **state) {
  (void)state;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char err[512];
  /* sasl.oauthbearer.config is secret; an invalid sasl.mechanisms is not */
  assert_int_equal(kconf_set(conf, "sasl.mechanisms", "NOPE", err, sizeof err), AW_OK);
  assert_int_equal(kconf_set(conf, "ssl.key.password.bogus", "hunter2", err, sizeof err), AW_ECONFIG);
  assert_null(strstr(err, "hunter2"));
  assert_non_null(strstr(err, "not shown"));
  rd_kafka_conf_destroy(conf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_defaults_are_the_documented_values, clear_env),
      cmocka_unit_test_setup(test_file_sets_every_setting, clear_env),
      cmocka_unit_test_setup(test_env_overrides_the_file, clear_env),
      cmocka_unit_test_setup(test_empty_env_variable_counts_as_unset, clear_env),
      cmocka_unit_test_setup(test_api_key_falls_back_to_openai_api_key, clear_env),
      cmocka_unit_test_setup(test_api_key_in_the_file_is_refused, clear_env),
      cmocka_unit_test_setup(test_every_validation_error_names_the_problem, clear_env),
      cmocka_unit_test_setup(test_limits_on_counts_and_lengths, clear_env),
      cmocka_unit_test_setup(test_invalid_env_values_name_the_variable, clear_env),
      cmocka_unit_test_setup(test_file_errors_name_the_file, clear_env),
      cmocka_unit_test_setup(test_properties_merge_by_key, clear_env),
      cmocka_unit_test_setup(test_hash_is_stable_and_covers_every_part, clear_env),
      cmocka_unit_test_setup(test_dump_hides_the_api_key_and_secret_properties, clear_env),
      cmocka_unit_test_setup(test_kconf_needs_brokers_and_names_a_bad_property, clear_env),
      cmocka_unit_test_setup(test_kconf_set_never_shows_a_secret_value, clear_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

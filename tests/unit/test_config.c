/* test_config.c -- configuration: defaults, the JSON file, environment
 * overrides, every validation error, the API key refused in the file, the
 * assistant hash, cfg_dump hiding secrets, function routes and the tool
 * secret, and kconf_new building a librdkafka configuration from it.  Needs no infrastructure (files go to a
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
    "AW_MAX_IN_FLIGHT", "AW_LOG_LEVEL",    "AW_HEALTH_PORT",   "AW_TOPIC_TOOL_REQUESTS", "AW_TOPIC_TOOL_REPLIES",
    "AW_TOOL_SECRET",  "AW_TOOL_SECRET_PREVIOUS", "AW_API_BACKEND", "AW_KAFKA_GROUP_INSTANCE_ID",
    "AW_MAX_EVENT_BYTES", "AW_API_BACKGROUND", "AW_CONVERSATION_TTL_S", "AW_TOOL_STATE_TTL_S",
    "AW_HISTORY_MAX_TURNS", "AW_HISTORY_MAX_BYTES", "AW_HISTORY_TTL_S",
    "AW_API_ALLOW_INSECURE_HTTP", "AW_HEALTH_BIND", "AW_ALLOW_CORE_DUMPS", "AW_REDIS_PASSWORD",
    "AW_TOOL_REQUEST_KEY", "AW_TOOL_REQUEST_KEY_PREVIOUS", "AW_TOOL_REQUEST_KEY_FILE",
    "AW_TOOL_REQUEST_KEY_PREVIOUS_FILE",
};

/* 16 bytes: the shortest secret accepted. */
#define SECRET16 "0123456789abcdef"

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
  assert_string_equal(c.kafka.topic_tool_requests, "assistant.tool-requests");
  assert_string_equal(c.kafka.topic_tool_replies, "assistant.tool-replies");
  assert_int_equal(c.kafka.nprops, 0);
  assert_string_equal(c.redis.host, "127.0.0.1");
  assert_int_equal(c.redis.port, 6379);
  assert_string_equal(c.redis.prefix, "aw");
  assert_true(c.redis.connect_timeout_ms > 0);
  assert_string_equal(c.api.base_url, "https://api.openai.com/v1");
  assert_string_equal(c.api.backend, "responses"); /* what live OpenAI serves */
  assert_string_equal(c.api.api_key, "");
  assert_string_equal(c.api.organization, "");
  assert_string_equal(c.api.project, "");
  assert_int_equal(c.api.request_timeout_ms, 30000);
  assert_int_equal(c.api.stream_idle_timeout_ms, 60000);
  assert_int_equal(c.api.max_retries, 5);
  assert_int_equal(c.worker.max_in_flight, 1000);
  assert_int_equal(c.worker.max_in_flight_per_partition, 0);
  assert_int_equal(c.worker.max_event_bytes, 1024 * 1024);
  assert_int_equal(c.worker.max_answer_bytes, 256 * 1024);
  assert_int_equal(c.worker.commit_interval_ms, 200);
  assert_int_equal(c.worker.health_port, 0);
  assert_int_equal(c.worker.history_max_turns, 100);
  assert_int_equal(c.worker.history_max_bytes, 1024 * 1024);
  assert_int_equal(c.worker.conversation_ttl_s, 30L * 24 * 3600);
  assert_int_equal(c.worker.history_ttl_s, 30L * 24 * 3600); /* worker.conversation_ttl_s's */
  assert_int_equal(cfg_history_ttl_s(&c), 30L * 24 * 3600);
  assert_int_equal(c.log_level, LOG_INFO);
  assert_int_equal(c.nassistants, 0);
  assert_int_equal(c.tools.nroutes, 0);
  assert_int_equal(c.tools.noverrides, 0);
  assert_string_equal(c.tools.secret, "");
  assert_string_equal(c.tools.secret_previous, "");
  assert_null(cfg_function_route(&c, "get_order"));
  cfg_free(&c);
}

static const char FULL[] =
    "{\"kafka\":{\"brokers\":\"k1:9092,k2:9092\",\"group_id\":\"g1\",\n"
    "  \"topics\":{\"requests\":\"r.in\",\"responses\":\"r.out\",\"deltas\":\"r.delta\",\"dlq\":\"r.dlq\",\n"
    "    \"tool_requests\":\"r.tool-req\",\"tool_replies\":\"r.tool-rep\"},\n"
    "  \"properties\":{\"security.protocol\":\"SASL_SSL\",\"sasl.password\":\"hunter2\",\"linger.ms\":5,"
    "\"enable.idempotence\":true}},\n"
    " \"redis\":{\"host\":\"redis.svc\",\"port\":6380,\"prefix\":\"awp\",\"connect_timeout_ms\":1500},\n"
    " \"api\":{\"base_url\":\"http://sim:8080/v1/\",\"organization\":\"org-1\",\"project\":\"proj-1\","
    "\"timeout_ms\":1000,\"stream_idle_timeout_ms\":2000,\"max_retries\":0,\"allow_insecure_http\":true},\n"
    " \"worker\":{\"max_in_flight\":10,\"max_event_bytes\":2048,\"max_answer_bytes\":4096,"
    "\"commit_interval_ms\":50,\"health_port\":8081,\"health_bind\":\"127.0.0.1\",\"allow_core_dumps\":true},\n"
    " \"log_level\":\"debug\",\n"
    " \"assistants\":[{\"name\":\"support\",\"model\":\"gpt-4o\",\"instructions\":\"Be kind.\",\n"
    "   \"tools\":[ {\"type\": \"file_search\"}, {\"type\":\"function\",\"function\":{\"name\":\"get_order\"}} ]},\n"
    "  {\"name\":\"plain\",\"model\":\"gpt-4o-mini\"}],\n"
    " \"functions\":{\"get_order\":{\"topic\":\"orders.tool-requests\",\"deadline_ms\":5000,"
    "\"on_deadline\":\"cancel_run\",\"validate_arguments\":false}}}";

static void test_file_sets_every_setting(void **state) {
  (void)state;
  cfg c;
  char err[256];
  setenv("AW_TOOL_SECRET", SECRET16, 1); /* FULL has a function tool */
  setenv("AW_TOOL_REQUEST_KEY", SECRET16 "-request", 1);
  assert_int_equal(cfg_load(&c, write_tmp(FULL), err, sizeof err), AW_OK);
  unlink(g_tmp);
  assert_string_equal(c.kafka.brokers, "k1:9092,k2:9092");
  assert_string_equal(c.kafka.group_id, "g1");
  assert_string_equal(c.kafka.topic_requests, "r.in");
  assert_string_equal(c.kafka.topic_responses, "r.out");
  assert_string_equal(c.kafka.topic_deltas, "r.delta");
  assert_string_equal(c.kafka.topic_dlq, "r.dlq");
  assert_string_equal(c.kafka.topic_tool_requests, "r.tool-req");
  assert_string_equal(c.kafka.topic_tool_replies, "r.tool-rep");
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
  assert_int_equal(c.api.allow_insecure_http, 1); /* else http://sim would be refused */
  assert_string_equal(c.worker.health_bind, "127.0.0.1");
  assert_int_equal(c.worker.allow_core_dumps, 1);
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
  const cfg_function *r = cfg_function_route(&c, "get_order");
  assert_non_null(r);
  assert_string_equal(r->name, "get_order");
  assert_string_equal(r->topic, "orders.tool-requests");
  assert_int_equal(r->deadline_ms, 5000);
  assert_int_equal(r->on_deadline, CFG_ON_DEADLINE_CANCEL_RUN);
  assert_int_equal(r->validate_arguments, 0);
  assert_null(r->parameters_json); /* get_order declares no parameters */
  assert_string_equal(c.tools.secret, SECRET16);

  be_assistant def;
  cfg_assistant_def(a, &def);
  assert_null(def.id); /* an API id comes from the Assistants backend, never the file */
  assert_string_equal(def.name, "support");
  assert_ptr_equal(def.tools_json, a->tools_json);
  assert_string_equal(def.hash, a->hash);

  be_http_config bc;
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
  setenv("AW_API_BACKEND", "assistants", 1);
  setenv("AW_API_ORG", "org-env", 1);
  setenv("AW_API_PROJECT", "proj-env", 1);
  setenv("AW_MAX_IN_FLIGHT", "77", 1);
  setenv("AW_LOG_LEVEL", "warn", 1);
  setenv("AW_HEALTH_PORT", "9090", 1);
  setenv("AW_API_KEY", "sk-test-env", 1);
  setenv("AW_TOPIC_TOOL_REQUESTS", "e.tool-req", 1);
  setenv("AW_TOPIC_TOOL_REPLIES", "e.tool-rep", 1);
  setenv("AW_TOOL_SECRET", SECRET16 "-env", 1);
  setenv("AW_TOOL_REQUEST_KEY", SECRET16 "-request", 1);
  setenv("AW_TOOL_SECRET_PREVIOUS", SECRET16 "-old", 1);
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
  assert_string_equal(c.api.backend, "assistants");
  assert_string_equal(c.api.organization, "org-env");
  assert_string_equal(c.api.project, "proj-env");
  assert_int_equal(c.worker.max_in_flight, 77);
  assert_int_equal(c.log_level, LOG_WARN);
  assert_int_equal(c.worker.health_port, 9090);
  assert_string_equal(c.api.api_key, "sk-test-env");
  assert_string_equal(c.kafka.topic_tool_requests, "e.tool-req");
  assert_string_equal(c.kafka.topic_tool_replies, "e.tool-rep");
  assert_string_equal(c.tools.secret, SECRET16 "-env");
  assert_string_equal(c.tools.secret_previous, SECRET16 "-old");
  /* an explicit route topic is the file's, not the default's */
  assert_string_equal(cfg_function_route(&c, "get_order")->topic, "orders.tool-requests");
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
    {"{\"api\":{\"backend\":\"chatty\"}}",
     "api.backend: unknown backend \"chatty\" (expected responses, assistants or chat)"},
    {"{\"worker\":{\"history_max_turns\":0}}", "worker.history_max_turns: 0 is out of range [1, 100000]"},
    {"{\"worker\":{\"history_max_bytes\":100}}", "worker.history_max_bytes: 100 is out of range [1024,"},
    {"{\"worker\":{\"history_ttl_s\":-1}}", "worker.history_ttl_s: -1 is out of range [0,"},
    {"{\"worker\":{\"history_ttl_s\":\"1d\"}}", "worker.history_ttl_s: expected an integer"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"history\":40}]}",
     "assistants[0] (\"a\").history: expected an object ({\"max_messages\": .., \"max_tokens\": ..})"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"history\":{\"max_turns\":4}}]}",
     "assistants[0] (\"a\").history: unknown key \"max_turns\" (expected max_messages, max_tokens)"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"max_output_tokens\":0}]}",
     "assistants[0] (\"a\").max_output_tokens: 0 is out of range [1, 1000000]"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"max_output_tokens\":\"64\"}]}",
     "assistants[0] (\"a\").max_output_tokens"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"history\":{\"max_messages\":0}}]}",
     "assistants[0] (\"a\").history.max_messages: 0 is out of range [1, 10000] (leave it out for the backend's default)"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"history\":{\"max_tokens\":-5}}]}",
     "assistants[0] (\"a\").history.max_tokens: -5 is out of range [1, 10000000]"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"history\":{\"max_tokens\":2.5}}]}",
     "assistants[0] (\"a\").history.max_tokens: expected an integer, got 2.5"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"history\":{\"max_messages\":\"40\"}}]}",
     "assistants[0] (\"a\").history.max_messages: expected an integer"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"history\":{\"max_messages\":4,\"max_messages\":5}}]}",
     "assistants[0] (\"a\").history.max_messages: duplicate key"},
    {"{\"api\":{\"timeout_ms\":0}}", "api.timeout_ms: 0 is out of range"},
    {"{\"api\":{\"max_retries\":-1}}", "api.max_retries: -1 is out of range"},
    {"{\"worker\":{\"max_in_flight\":0}}", "worker.max_in_flight: 0 is out of range"},
    {"{\"worker\":{\"max_in_flight_per_partition\":-1}}", "worker.max_in_flight_per_partition: -1 is out of range"},
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
    /* tool topics */
    {"{\"kafka\":{\"topics\":{\"tool_requests\":\"a/b\"}}}", "kafka.topics.tool_requests: invalid Kafka topic name"},
    {"{\"kafka\":{\"topics\":{\"tool_replies\":\"\"}}}", "kafka.topics.tool_replies: must not be empty"},
    {"{\"kafka\":{\"topics\":{\"tool_replies\":7}}}", "kafka.topics.tool_replies: expected a string"},
    /* function tools */
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get weather\"}}]}]}",
     "assistants[0] (\"a\").tools[0].function.name: invalid function name \"get weather\" (1..64 of [A-Za-z0-9_-])"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":"
     "\"f12345678901234567890123456789012345678901234567890123456789012345\"}}]}]}",
     "tools[0].function.name: invalid function name"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
     "{\"type\":\"file_search\"},{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}]}",
     "assistants[0] (\"a\").tools[2]: duplicate function \"f\""},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
     "\"parameters\":\"{}\"}}]}]}",
     "assistants[0] (\"a\").tools[0].function.parameters: expected an object (a JSON Schema)"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
     "\"parameters\":{\"type\":\"object\"}}}]},"
     "{\"name\":\"b\",\"model\":\"m\",\"tools\":[{\"type\":\"file_search\"},{\"type\":\"function\",\"function\":{\"name\":\"f\","
     "\"parameters\":{\"type\":\"object\",\"required\":[\"x\"]}}}]}]}",
     "assistants[1] (\"b\").tools[1]: function \"f\" is declared with other parameters than by an earlier assistant"},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
     "\"parameters\":{}}}]},{\"name\":\"b\",\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}]}",
     "assistants[1] (\"b\").tools[0]: function \"f\" is declared with other parameters"}, /* absent differs from {} */
    /* "functions" */
    {"{\"functions\":[]}", "functions: expected an object"},
    {"{\"functions\":{\"f\":1}}", "functions.f: expected an object"},
    {"{\"functions\":{\"bad name\":{}}}", "functions.bad name: invalid function name (1..64 of [A-Za-z0-9_-])"},
    {"{\"functions\":{\"f\":{},\"f\":{}}}", "functions.f: duplicate key"},
    {"{\"functions\":{\"f\":{\"topic\":\"a\",\"topic\":\"b\"}}}", "functions.f.topic: duplicate key"},
    {"{\"functions\":{\"f\":{\"timeout_ms\":5}}}",
     "functions.f: unknown key \"timeout_ms\" (expected topic, reply_topic, deadline_ms, on_deadline, validate_arguments)"},
    {"{\"functions\":{\"f\":{\"topic\":5}}}", "functions.f.topic: expected a string"},
    {"{\"functions\":{\"f\":{\"topic\":\"no spaces\"}}}", "functions.f.topic: invalid Kafka topic name \"no spaces\""},
    {"{\"functions\":{\"f\":{\"topic\":\"\"}}}", "functions.f.topic: invalid Kafka topic name \"\""},
    {"{\"functions\":{\"f\":{\"deadline_ms\":\"30000\"}}}", "functions.f.deadline_ms: expected an integer"},
    {"{\"functions\":{\"f\":{\"deadline_ms\":1500.5}}}", "functions.f.deadline_ms: expected an integer, got 1500.5"},
    {"{\"functions\":{\"f\":{\"deadline_ms\":99}}}", "functions.f.deadline_ms: 99 is out of range [100, 600000]"},
    {"{\"functions\":{\"f\":{\"deadline_ms\":600001}}}", "functions.f.deadline_ms: 600001 is out of range [100, 600000]"},
    {"{\"functions\":{\"f\":{\"on_deadline\":\"retry\"}}}", "functions.f.on_deadline: expected \"error_output\" or \"cancel_run\""},
    {"{\"functions\":{\"f\":{\"on_deadline\":1}}}", "functions.f.on_deadline: expected \"error_output\" or \"cancel_run\""},
    {"{\"functions\":{\"f\":{\"validate_arguments\":\"yes\"}}}", "functions.f.validate_arguments: expected true or false"},
    {"{\"functions\":{\"f\":{}}}", "functions.f: no configured assistant has a function tool named \"f\""},
    {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]}],"
     "\"functions\":{\"get_weather\":{},\"get_wether\":{\"deadline_ms\":1000}}}",
     "functions.get_wether: no configured assistant has a function tool named \"get_wether\""},
    {"{\"functions\":{\"file_search\":{}},\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":[{\"type\":\"file_search\"}]}]}",
     "functions.file_search: no configured assistant has a function tool named \"file_search\""},
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
      {"AW_TOPIC_TOOL_REQUESTS", "bad topic", "AW_TOPIC_TOOL_REQUESTS: invalid Kafka topic name"},
      {"AW_TOPIC_TOOL_REPLIES", "a:b", "AW_TOPIC_TOOL_REPLIES: invalid Kafka topic name"},
      {"AW_API_BACKEND", "chatgpt", "AW_API_BACKEND: unknown backend \"chatgpt\" (expected responses, assistants or chat)"},
      {"AW_HISTORY_MAX_TURNS", "0", "AW_HISTORY_MAX_TURNS: 0 is out of range"},
      {"AW_HISTORY_MAX_BYTES", "1k", "AW_HISTORY_MAX_BYTES: expected an integer"},
      {"AW_HISTORY_TTL_S", "-1", "AW_HISTORY_TTL_S: -1 is out of range"},
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
  cfg_assistant_hash("support", "gpt-4o", "Be kind.", "[{\"type\":\"file_search\"}]", NULL, h);
  /* pinned (computed independently, in Python, from the documented
   * serialisation): the hash is stored in the API's assistant metadata, so it must
   * not change between runs, builds or machines */
  assert_string_equal(h, "ef057acf0b2d3bd4");
  cfg_assistant_hash("support", "gpt-4o", "Be kind.", "[{\"type\":\"file_search\"}]", NULL, h2);
  assert_string_equal(h, h2);
  cfg_assistant_hash("support2", "gpt-4o", "Be kind.", "[{\"type\":\"file_search\"}]", NULL, h2);
  assert_string_not_equal(h, h2);
  cfg_assistant_hash("support", "gpt-4o-mini", "Be kind.", "[{\"type\":\"file_search\"}]", NULL, h2);
  assert_string_not_equal(h, h2);
  cfg_assistant_hash("support", "gpt-4o", "Be kind!", "[{\"type\":\"file_search\"}]", NULL, h2);
  assert_string_not_equal(h, h2);
  cfg_assistant_hash("support", "gpt-4o", "Be kind.", "[{\"type\":\"code_interpreter\"}]", NULL, h2);
  assert_string_not_equal(h, h2);
  cfg_assistant_hash("support", "gpt-4o", "Be kind.", NULL, NULL, h2);
  assert_string_not_equal(h, h2);
  /* absent instructions differ from empty ones; fields cannot bleed into each other */
  char x[17], y[17];
  cfg_assistant_hash("a", "m", NULL, NULL, NULL, x);
  cfg_assistant_hash("a", "m", "", NULL, NULL, y);
  assert_string_not_equal(x, y);
  cfg_assistant_hash("ab", "c", NULL, NULL, NULL, x);
  cfg_assistant_hash("a", "bc", NULL, NULL, NULL, y);
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
  cfg_assistant_hash("s", "m", NULL, "[{\"type\":\"file_search\"}]", NULL, h);
  assert_string_equal(c1.assistants[0].hash, h);
  cfg_free(&c1);
  cfg_free(&c2);
}

static void test_dump_hides_the_api_key_and_secret_properties(void **state) {
  (void)state;
  setenv("AW_API_KEY", "sk-very-secret-key", 1);
  setenv("AW_TOOL_SECRET", SECRET16, 1); /* FULL has a function tool */
  setenv("AW_TOOL_REQUEST_KEY", SECRET16 "-request", 1);
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

/* ---- function calling ------------------------------------------------------ */

/* Load a document as a file through cfg_load (so the environment applies). */
static int load_file(cfg *c, const char *json, char *err, size_t n) {
  const char *path = write_tmp(json);
  err[0] = '\0';
  int rc = cfg_load(c, path, err, n);
  unlink(path);
  return rc;
}

static const char TOOLS_DOC[] =
    "{\"assistants\":["
    " {\"name\":\"weather\",\"model\":\"m\",\"tools\":[{\"type\":\"code_interpreter\"},"
    "  {\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather at a place\","
    "   \"parameters\":{ \"type\" : \"object\", \"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
    "  {\"type\":\"function\",\"function\":{\"name\":\"lookup-order_2\"}}]},"
    " {\"name\":\"plain\",\"model\":\"m\"},"
    " {\"name\":\"travel\",\"model\":\"m\",\"tools\":["
    "  {\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"worded differently\","
    "   \"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
    "  {\"type\":\"function\",\"function\":{\"name\":\"book\",\"parameters\":{}}}]}]}";

static void test_every_function_tool_gets_a_default_route(void **state) {
  (void)state;
  cfg c;
  char err[512];
  setenv("AW_TOOL_SECRET", SECRET16, 1);
  setenv("AW_TOOL_REQUEST_KEY", SECRET16 "-request", 1);
  assert_int_equal(load_file(&c, TOOLS_DOC, err, sizeof err), AW_OK);
  /* one route per distinct name, in order of appearance; the shared
   * get_weather (same parameters, another description) is routed once */
  assert_int_equal(c.tools.nroutes, 3);
  assert_string_equal(c.tools.routes[0].name, "get_weather");
  assert_string_equal(c.tools.routes[1].name, "lookup-order_2");
  assert_string_equal(c.tools.routes[2].name, "book");
  const cfg_function *w = cfg_function_route(&c, "get_weather");
  assert_non_null(w);
  assert_ptr_equal(w, &c.tools.routes[0]);
  assert_string_equal(w->topic, "assistant.tool-requests");
  assert_int_equal(w->deadline_ms, 30000);
  assert_int_equal(w->on_deadline, CFG_ON_DEADLINE_ERROR_OUTPUT);
  assert_int_equal(w->validate_arguments, 1);
  /* canonical: cJSON's unformatted print, as in tools_json */
  assert_string_equal(w->parameters_json,
                      "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}");
  assert_non_null(strstr(cfg_find_assistant(&c, "weather")->tools_json, w->parameters_json));
  assert_null(cfg_function_route(&c, "lookup-order_2")->parameters_json); /* none declared */
  assert_string_equal(cfg_function_route(&c, "book")->parameters_json, "{}");
  /* only function tools are routed; unknown and NULL names have none */
  assert_null(cfg_function_route(&c, "code_interpreter"));
  assert_null(cfg_function_route(&c, "get_Weather"));
  assert_null(cfg_function_route(&c, ""));
  assert_null(cfg_function_route(&c, NULL));
  cfg_free(&c);
  assert_int_equal(c.tools.nroutes, 0);
  assert_null(cfg_function_route(&c, "get_weather"));
}

static void test_functions_entry_overrides_only_what_it_names(void **state) {
  (void)state;
  cfg c;
  char err[512];
  /* "functions" may come before "assistants" */
  static const char doc[] =
      "{\"functions\":{\"get_weather\":{\"deadline_ms\":100},"
      "  \"book\":{\"topic\":\"travel.bookings\",\"deadline_ms\":600000,\"on_deadline\":\"cancel_run\","
      "           \"validate_arguments\":false},"
      "  \"lookup-order_2\":{\"on_deadline\":\"error_output\",\"validate_arguments\":true}},"
      " \"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":["
      "  {\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}},"
      "  {\"type\":\"function\",\"function\":{\"name\":\"lookup-order_2\"}},"
      "  {\"type\":\"function\",\"function\":{\"name\":\"book\"}},"
      "  {\"type\":\"function\",\"function\":{\"name\":\"plain_default\"}}]}]}";
  cfg_init(&c);
  assert_int_equal(cfg_load_json(&c, doc, strlen(doc), err, sizeof err), AW_OK);
  assert_int_equal(c.tools.noverrides, 3);
  const cfg_function *w = cfg_function_route(&c, "get_weather");
  assert_int_equal(w->deadline_ms, 100);
  assert_string_equal(w->topic, "assistant.tool-requests");
  assert_int_equal(w->on_deadline, CFG_ON_DEADLINE_ERROR_OUTPUT);
  assert_int_equal(w->validate_arguments, 1);
  const cfg_function *b = cfg_function_route(&c, "book");
  assert_string_equal(b->topic, "travel.bookings");
  assert_int_equal(b->deadline_ms, 600000);
  assert_int_equal(b->on_deadline, CFG_ON_DEADLINE_CANCEL_RUN);
  assert_int_equal(b->validate_arguments, 0);
  const cfg_function *l = cfg_function_route(&c, "lookup-order_2");
  assert_int_equal(l->deadline_ms, 30000);
  assert_int_equal(l->validate_arguments, 1);
  const cfg_function *p = cfg_function_route(&c, "plain_default");
  assert_string_equal(p->topic, "assistant.tool-requests");
  assert_int_equal(p->deadline_ms, CFG_DEFAULT_DEADLINE_MS);
  assert_string_equal(cfg_on_deadline_name(b->on_deadline), "cancel_run");
  assert_string_equal(cfg_on_deadline_name(w->on_deadline), "error_output");

  /* a later document's "functions" replaces the earlier object */
  const char *later = "{\"functions\":{\"book\":{\"deadline_ms\":2000}}}";
  assert_int_equal(cfg_load_json(&c, later, strlen(later), err, sizeof err), AW_OK);
  assert_int_equal(c.tools.noverrides, 1);
  assert_int_equal(cfg_function_route(&c, "get_weather")->deadline_ms, 30000);
  b = cfg_function_route(&c, "book");
  assert_int_equal(b->deadline_ms, 2000);
  assert_string_equal(b->topic, "assistant.tool-requests");
  /* ... and a later assistants list that drops a named function is an error */
  const char *fewer = "{\"assistants\":[{\"name\":\"a\",\"model\":\"m\"}]}";
  assert_int_equal(cfg_load_json(&c, fewer, strlen(fewer), err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "functions.book: no configured assistant has a function tool named \"book\""));
  cfg_free(&c);
}

static void test_default_route_topic_follows_tool_requests(void **state) {
  (void)state;
  cfg c;
  char err[512];
  static const char doc[] =
      "{\"kafka\":{\"topics\":{\"tool_requests\":\"file.tools\"}},"
      " \"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":["
      "  {\"type\":\"function\",\"function\":{\"name\":\"f\"}},{\"type\":\"function\",\"function\":{\"name\":\"g\"}}]}],"
      " \"functions\":{\"g\":{\"topic\":\"own.topic\"}}}";
  setenv("AW_TOOL_SECRET", SECRET16, 1);
  setenv("AW_TOOL_REQUEST_KEY", SECRET16 "-request", 1);
  assert_int_equal(load_file(&c, doc, err, sizeof err), AW_OK);
  assert_string_equal(cfg_function_route(&c, "f")->topic, "file.tools");
  assert_string_equal(cfg_function_route(&c, "g")->topic, "own.topic");
  cfg_free(&c);
  setenv("AW_TOPIC_TOOL_REQUESTS", "env.tools", 1); /* env applies after the file */
  assert_int_equal(load_file(&c, doc, err, sizeof err), AW_OK);
  assert_string_equal(c.kafka.topic_tool_requests, "env.tools");
  assert_string_equal(cfg_function_route(&c, "f")->topic, "env.tools");
  assert_string_equal(cfg_function_route(&c, "g")->topic, "own.topic");
  cfg_free(&c);
}

/* n assistants with `per` function tools each, named f<assistant>_<tool>. */
static char *functions_doc(int n, int per, int with_functions_entry) {
  size_t cap = (size_t)(n * per) * 96 + 256;
  char *doc = malloc(cap);
  assert_non_null(doc);
  size_t o = (size_t)snprintf(doc, cap, "{\"assistants\":[");
  for (int i = 0; i < n; i++) {
    o += (size_t)snprintf(doc + o, cap - o, "%s{\"name\":\"a%d\",\"model\":\"m\",\"tools\":[", i ? "," : "", i);
    for (int j = 0; j < per; j++)
      o += (size_t)snprintf(doc + o, cap - o, "%s{\"type\":\"function\",\"function\":{\"name\":\"f%d_%d\"}}",
                            j ? "," : "", i, j);
    o += (size_t)snprintf(doc + o, cap - o, "]}");
  }
  o += (size_t)snprintf(doc + o, cap - o, "]");
  if (with_functions_entry)
    o += (size_t)snprintf(doc + o, cap - o, ",\"functions\":{\"f%d_%d\":{\"deadline_ms\":1000}}", n - 1, per - 1);
  snprintf(doc + o, cap - o, "}");
  return doc;
}

static void test_function_routes_are_bounded(void **state) {
  (void)state;
  char err[512];
  cfg c;
  /* 128 distinct functions across assistants: fine, the last one overridable */
  char *doc = functions_doc(2, 64, 1);
  cfg_init(&c);
  assert_int_equal(cfg_load_json(&c, doc, strlen(doc), err, sizeof err), AW_OK);
  assert_int_equal(c.tools.nroutes, CFG_MAX_FUNCTIONS);
  assert_int_equal(cfg_function_route(&c, "f1_63")->deadline_ms, 1000);
  cfg_free(&c);
  free(doc);
  /* 129: refused, naming where the limit was crossed */
  doc = functions_doc(3, 43, 0);
  assert_int_equal(load(doc, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "assistants[2] (\"a2\").tools[42]: more than 128 distinct functions across all assistants"));
  free(doc);
  /* a "functions" object of 129 entries */
  size_t cap = 129 * 32 + 64;
  doc = malloc(cap);
  size_t o = (size_t)snprintf(doc, cap, "{\"functions\":{");
  for (int i = 0; i < 129; i++) o += (size_t)snprintf(doc + o, cap - o, "%s\"f%d\":{}", i ? "," : "", i);
  snprintf(doc + o, cap - o, "}}");
  assert_int_equal(load(doc, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "functions: 129 entries, at most 128"));
  free(doc);
}

static void test_tool_secret_in_the_file_is_refused(void **state) {
  (void)state;
  char err[512];
  static const char *const docs[][2] = {
      {"{\"tool_secret\":\"s3cr3t-in-the-file!\"}", "tool_secret: the tool-call secret is not read from the config file"},
      {"{\"tool_secret_previous\":\"s3cr3t-in-the-file!\"}", "tool_secret_previous: the tool-call secret is not read"},
      {"{\"kafka\":{\"tool_secret\":\"s3cr3t-in-the-file!\"}}", "kafka.tool_secret: the tool-call secret is not read"},
      {"{\"functions\":{\"f\":{\"tool_secret\":\"s3cr3t-in-the-file!\"}}}",
       "functions.f.tool_secret: the tool-call secret is not read"},
  };
  for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
    int rc = load(docs[i][0], err, sizeof err);
    if (rc != AW_ECONFIG || !strstr(err, docs[i][1]) || !strstr(err, "AW_TOOL_SECRET"))
      fail_msg("%s: rc=%d err=\"%s\"", docs[i][0], rc, err);
    assert_null(strstr(err, "s3cr3t")); /* the value is never echoed */
  }
}

static void test_tool_secret_is_required_with_function_tools(void **state) {
  (void)state;
  cfg c;
  char err[512];
  /* no function tool: no secret needed */
  assert_int_equal(load_file(&c, "{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":[{\"type\":\"file_search\"}]}]}",
                             err, sizeof err),
                   AW_OK);
  cfg_free(&c);
  /* a function tool (of the second assistant): required, and it says why */
  assert_int_equal(load_file(&c, TOOLS_DOC, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_TOOL_SECRET: required because assistant \"weather\" has function tools"));
  assert_non_null(strstr(err, "at least 16 bytes"));
  assert_int_equal(c.tools.nroutes, 0); /* freed on failure */
  static const char second[] =
      "{\"assistants\":[{\"name\":\"plain\",\"model\":\"m\"},{\"name\":\"tooled\",\"model\":\"m\",\"tools\":["
      "{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}]}";
  assert_int_equal(load_file(&c, second, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "assistant \"tooled\" has function tools"));
  /* the previous secret alone does not do */
  setenv("AW_TOOL_SECRET_PREVIOUS", SECRET16, 1);
  assert_int_equal(load_file(&c, second, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_TOOL_SECRET_PREVIOUS: set without AW_TOOL_SECRET"));
  unsetenv("AW_TOOL_SECRET_PREVIOUS");
  /* an empty variable counts as unset */
  setenv("AW_TOOL_SECRET", "", 1);
  assert_int_equal(load_file(&c, second, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_TOOL_SECRET: required"));
  setenv("AW_TOOL_SECRET", SECRET16, 1);
  /* the tool request key is required too, and it says why */
  assert_int_equal(load_file(&c, second, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_TOOL_REQUEST_KEY: required because function tools are routed"));
  setenv("AW_TOOL_REQUEST_KEY", SECRET16 "-request", 1);
  assert_int_equal(load_file(&c, second, err, sizeof err), AW_OK);
  assert_string_equal(c.tools.secret, SECRET16);
  assert_string_equal(c.tools.secret_previous, "");
  cfg_free(&c);
  assert_string_equal(c.tools.secret, ""); /* wiped */
}

static void test_invalid_tool_secrets_are_refused_without_echo(void **state) {
  (void)state;
  char longsecret[CFG_SECRET_SIZE + 1];
  memset(longsecret, 'k', sizeof longsecret - 1);
  longsecret[sizeof longsecret - 1] = '\0';
  static const char *const names[] = {"AW_TOOL_SECRET", "AW_TOOL_SECRET_PREVIOUS"};
  const struct {
    const char *value, *expect;
  } cases[] = {
      {"0123456789abcde", "shorter than 16 bytes"}, /* 15 */
      {"x", "shorter than 16 bytes"},
      {"0123456789 abcdef", "contains whitespace or control characters"},
      {"0123456789abcdef\n", "contains whitespace or control characters"}, /* kubectl --from-file habit */
      {"0123456789\tabcdef", "contains whitespace or control characters"},
      {longsecret, "too long (at most 511 bytes)"},
  };
  for (size_t v = 0; v < 2; v++) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      clear_env(NULL);
      if (v == 1) setenv("AW_TOOL_SECRET", "a-valid-current-secret", 1);
      setenv(names[v], cases[i].value, 1);
      cfg c;
      char err[512] = "";
      char expect[128];
      snprintf(expect, sizeof expect, "%s: %s", names[v], cases[i].expect);
      int rc = cfg_load(&c, NULL, err, sizeof err);
      if (rc != AW_ECONFIG || !strstr(err, expect)) fail_msg("%s case %zu: rc=%d err=\"%s\"", names[v], i, rc, err);
      assert_null(strstr(err, "0123456789"));
      assert_null(strstr(err, "kkkk"));
    }
  }
  /* exactly 16 bytes, and up to 511, are fine */
  clear_env(NULL);
  longsecret[CFG_SECRET_SIZE - 1] = '\0';
  setenv("AW_TOOL_SECRET", longsecret, 1);
  setenv("AW_TOOL_SECRET_PREVIOUS", SECRET16, 1);
  cfg c;
  char err[512];
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_int_equal(strlen(c.tools.secret), CFG_SECRET_SIZE - 1);
  assert_string_equal(c.tools.secret_previous, SECRET16);
  cfg_free(&c);
}

/* AW_TOOL_REQUEST_KEY: from the variable or the file _FILE names (not
 * both), at least 16 bytes, never echoed; the previous one needs a current
 * one; refused in the file; reply topics default to tool_replies and follow
 * it, a "functions" entry pins its own. */
static void test_tool_request_key_and_reply_topics(void **state) {
  (void)state;
  cfg c;
  char err[512];
  setenv("AW_TOOL_SECRET", SECRET16, 1);
  static const char doc[] =
      "{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":["
      "  {\"type\":\"function\",\"function\":{\"name\":\"f\"}},{\"type\":\"function\",\"function\":{\"name\":\"g\"}}]}],"
      " \"functions\":{\"g\":{\"reply_topic\":\"g.replies\"}}}";
  /* from a file (one trailing newline dropped) */
  char path[300];
  snprintf(path, sizeof path, "%s", write_tmp("request-key-from-a-file-0042\n"));
  setenv("AW_TOOL_REQUEST_KEY_FILE", path, 1);
  setenv("AW_TOPIC_TOOL_REPLIES", "fleet.replies", 1);
  assert_int_equal(load_file(&c, doc, err, sizeof err), AW_OK);
  assert_string_equal(c.tools.request_key, "request-key-from-a-file-0042");
  assert_string_equal(cfg_function_route(&c, "f")->reply_topic, "fleet.replies");
  assert_string_equal(cfg_function_route(&c, "g")->reply_topic, "g.replies");
  tsig_key k;
  assert_int_equal(cfg_tool_request_key(&c, &k, err, sizeof err), AW_OK);
  assert_int_equal(k.cur_len, strlen("request-key-from-a-file-0042"));
  assert_int_equal(k.prev_len, 0);
  tsig_key_clear(&k);
  cfg_free(&c);
  assert_string_equal(c.tools.request_key, ""); /* wiped */
  /* both the variable and the file: refused, naming both */
  setenv("AW_TOOL_REQUEST_KEY", "request-key-from-the-env-0042", 1);
  assert_int_equal(load_file(&c, doc, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_TOOL_REQUEST_KEY and AW_TOOL_REQUEST_KEY_FILE are both set"));
  unlink(path);
  unsetenv("AW_TOOL_REQUEST_KEY_FILE");
  /* too short, never echoed */
  setenv("AW_TOOL_REQUEST_KEY", "short-key-1", 1);
  assert_int_equal(load_file(&c, doc, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_TOOL_REQUEST_KEY: shorter than 16 bytes"));
  assert_null(strstr(err, "short-key-1"));
  /* a previous key without a current one */
  unsetenv("AW_TOOL_REQUEST_KEY");
  setenv("AW_TOOL_REQUEST_KEY_PREVIOUS", "request-key-previous-0042", 1);
  assert_int_equal(load_file(&c, doc, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_TOOL_REQUEST_KEY_PREVIOUS: set without AW_TOOL_REQUEST_KEY"));
  /* rotating: both keys in the tsig_key */
  setenv("AW_TOOL_REQUEST_KEY", "request-key-current-0042", 1);
  assert_int_equal(load_file(&c, doc, err, sizeof err), AW_OK);
  assert_int_equal(cfg_tool_request_key(&c, &k, err, sizeof err), AW_OK);
  assert_int_equal(k.prev_len, strlen("request-key-previous-0042"));
  tsig_key_clear(&k);
  cfg_free(&c);
  /* never from the config file */
  assert_int_equal(load("{\"tool_request_key\":\"s3cr3t-in-the-file!\"}", err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "tool_request_key: the tool request key is not read from the config file"));
  assert_null(strstr(err, "s3cr3t"));
  assert_int_equal(load("{\"functions\":{\"f\":{\"reply_topic\":\"no spaces\"}}}", err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "functions.f.reply_topic: invalid Kafka topic name"));
  /* without function tools nothing is required */
  clear_env(NULL);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_int_equal(cfg_tool_request_key(&c, &k, err, sizeof err), AW_ECONFIG);
  cfg_free(&c);
}

static void test_tool_key_signs_with_current_and_verifies_previous(void **state) {
  (void)state;
  cfg c;
  char err[256];
  corr_key k, old;
  char id[CORR_ID_SIZE];
  cfg_init(&c);
  assert_int_equal(cfg_tool_key(&c, &k, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_TOOL_SECRET: not set"));
  /* an id made before the roll, with the then current secret */
  assert_int_equal(corr_key_init(&old, "the-old-secret-value", 20), AW_OK);
  assert_int_equal(corr_new(&old, "conv", "run_1", "call_1", 1000, id, sizeof id), AW_OK);
  setenv("AW_TOOL_SECRET", "the-new-secret-value", 1);
  setenv("AW_TOOL_SECRET_PREVIOUS", "the-old-secret-value", 1);
  assert_int_equal(cfg_apply_env(&c, err, sizeof err), AW_OK);
  assert_int_equal(cfg_tool_key(&c, &k, err, sizeof err), AW_OK);
  int64_t dl = 0;
  assert_int_equal(corr_verify(&k, id, "conv", "run_1", "call_1", &dl), AW_OK);
  assert_int_equal(dl, 1000);
  /* new ids use the current secret: the old key alone does not verify them */
  assert_int_equal(corr_new(&k, "conv", "run_1", "call_2", 2000, id, sizeof id), AW_OK);
  assert_int_equal(corr_verify(&old, id, "conv", "run_1", "call_2", NULL), AW_EINVAL);
  corr_key_clear(&k);
  corr_key_clear(&old);
  cfg_free(&c);
}

static void test_dump_shows_routes_and_hides_tool_secrets(void **state) {
  (void)state;
  cfg c;
  char err[512];
  setenv("AW_TOOL_SECRET", "current-tool-secret-XYZ", 1);
  setenv("AW_TOOL_SECRET_PREVIOUS", "previous-tool-secret-XYZ", 1);
  setenv("AW_TOOL_REQUEST_KEY", "current-request-key-XYZ", 1);
  setenv("AW_TOOL_REQUEST_KEY_PREVIOUS", "previous-request-key-XYZ", 1);
  static const char doc[] =
      "{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tools\":["
      "  {\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":\"object\"}}},"
      "  {\"type\":\"function\",\"function\":{\"name\":\"g\"}}]}],"
      " \"functions\":{\"g\":{\"topic\":\"g.topic\",\"reply_topic\":\"g.replies\",\"deadline_ms\":1234,"
      "\"on_deadline\":\"cancel_run\",\"validate_arguments\":false}}}";
  assert_int_equal(load_file(&c, doc, err, sizeof err), AW_OK);
  buf b;
  buf_init(&b, 1 << 20);
  assert_int_equal(cfg_dump(&c, &b), AW_OK);
  assert_null(strstr(b.data, "tool-secret-XYZ"));
  assert_null(strstr(b.data, "request-key-XYZ"));
  cJSON *j = cJSON_Parse(b.data);
  assert_non_null(j);
  assert_string_equal(cJSON_GetObjectItem(j, "tool_secret")->valuestring, "***");
  assert_string_equal(cJSON_GetObjectItem(j, "tool_secret_previous")->valuestring, "***");
  assert_string_equal(cJSON_GetObjectItem(j, "tool_request_key")->valuestring, "***");
  assert_string_equal(cJSON_GetObjectItem(j, "tool_request_key_previous")->valuestring, "***");
  cJSON *topics = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "kafka"), "topics");
  assert_string_equal(cJSON_GetObjectItem(topics, "tool_requests")->valuestring, "assistant.tool-requests");
  assert_string_equal(cJSON_GetObjectItem(topics, "tool_replies")->valuestring, "assistant.tool-replies");
  cJSON *fns = cJSON_GetObjectItem(j, "functions");
  assert_int_equal(cJSON_GetArraySize(fns), 2);
  cJSON *f = cJSON_GetObjectItem(fns, "f");
  assert_string_equal(cJSON_GetObjectItem(f, "topic")->valuestring, "assistant.tool-requests");
  assert_string_equal(cJSON_GetObjectItem(f, "reply_topic")->valuestring, "assistant.tool-replies");
  assert_int_equal(cJSON_GetObjectItem(f, "deadline_ms")->valueint, 30000);
  assert_string_equal(cJSON_GetObjectItem(f, "on_deadline")->valuestring, "error_output");
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(f, "validate_arguments")));
  cJSON *g = cJSON_GetObjectItem(fns, "g");
  assert_string_equal(cJSON_GetObjectItem(g, "topic")->valuestring, "g.topic");
  assert_string_equal(cJSON_GetObjectItem(g, "reply_topic")->valuestring, "g.replies");
  assert_int_equal(cJSON_GetObjectItem(g, "deadline_ms")->valueint, 1234);
  assert_string_equal(cJSON_GetObjectItem(g, "on_deadline")->valuestring, "cancel_run");
  assert_true(cJSON_IsFalse(cJSON_GetObjectItem(g, "validate_arguments")));
  cJSON_Delete(j);
  buf_free(&b);
  cfg_free(&c);

  /* unset: null, not "***"; no functions: an empty object */
  clear_env(NULL);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  buf_init(&b, 1 << 20);
  assert_int_equal(cfg_dump(&c, &b), AW_OK);
  j = cJSON_Parse(b.data);
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "tool_secret")));
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "tool_secret_previous")));
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "tool_request_key")));
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "functions")), 0);
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

static void test_group_instance_id_and_max_event_bytes_come_from_file_or_env(void **state) {
  (void)state;
  cfg c;
  char err[512];
  cfg_init(&c);
  assert_string_equal(c.kafka.group_instance_id, ""); /* dynamic membership by default */
  const char *doc = "{\"kafka\":{\"group_instance_id\":\"pod-a\"},\"worker\":{\"max_event_bytes\":5000}}";
  assert_int_equal(cfg_load_json(&c, doc, strlen(doc), err, sizeof err), AW_OK);
  assert_string_equal(c.kafka.group_instance_id, "pod-a");
  assert_int_equal(c.worker.max_event_bytes, 5000);
  setenv("AW_KAFKA_GROUP_INSTANCE_ID", "pod-b", 1);
  setenv("AW_MAX_EVENT_BYTES", "7000", 1);
  assert_int_equal(cfg_apply_env(&c, err, sizeof err), AW_OK);
  assert_string_equal(c.kafka.group_instance_id, "pod-b");
  assert_int_equal(c.worker.max_event_bytes, 7000);
  setenv("AW_MAX_EVENT_BYTES", "12", 1); /* below the 1024 floor */
  assert_int_equal(cfg_apply_env(&c, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_MAX_EVENT_BYTES"));
  cfg_free(&c);
}

static void test_kconf_defaults_are_overridden_by_properties(void **state) {
  (void)state;
  cfg c;
  char err[512], v[64];
  size_t vn;
  rd_kafka_conf_t *conf = NULL;
  static const char *const defaults[] = {KCONF_CONSUMER_DEFAULTS, NULL};
  cfg_init(&c);
  const char *doc = "{\"kafka\":{\"brokers\":\"k:9092\"}}";
  assert_int_equal(cfg_load_json(&c, doc, strlen(doc), err, sizeof err), AW_OK);
  assert_int_equal(kconf_new_with(&c, "t", defaults, &conf, err, sizeof err), AW_OK);
  vn = sizeof v;
  assert_int_equal(rd_kafka_conf_get(conf, "session.timeout.ms", v, &vn), RD_KAFKA_CONF_OK);
  assert_string_equal(v, "10000");
  vn = sizeof v;
  assert_int_equal(rd_kafka_conf_get(conf, "heartbeat.interval.ms", v, &vn), RD_KAFKA_CONF_OK);
  assert_string_equal(v, "1000");
  rd_kafka_conf_destroy(conf);
  cfg_free(&c);

  cfg_init(&c);
  doc = "{\"kafka\":{\"brokers\":\"k:9092\",\"properties\":{\"session.timeout.ms\":\"30000\"}}}";
  assert_int_equal(cfg_load_json(&c, doc, strlen(doc), err, sizeof err), AW_OK);
  assert_int_equal(kconf_new_with(&c, "t", defaults, &conf, err, sizeof err), AW_OK);
  vn = sizeof v;
  assert_int_equal(rd_kafka_conf_get(conf, "session.timeout.ms", v, &vn), RD_KAFKA_CONF_OK);
  assert_string_equal(v, "30000");
  rd_kafka_conf_destroy(conf);
  cfg_free(&c);
}

/* Loads doc, runs kconf_check_limits, returns its code with warn/err filled. */
static int check_limits(const char *doc, char *warn, size_t wn, char *err, size_t en) {
  cfg c;
  cfg_init(&c);
  assert_int_equal(cfg_load_json(&c, doc, strlen(doc), err, en), AW_OK);
  int rc = kconf_check_limits(&c, warn, wn, err, en);
  cfg_free(&c);
  return rc;
}

static void test_limits_that_interact_are_checked_at_start_up(void **state) {
  (void)state;
  char warn[1024], err[512];
  /* The defaults: max_event_bytes 1 MiB > message.max.bytes 1,000,000, so a
   * rejected event that large is dead-lettered degraded: said, not refused. */
  assert_int_equal(check_limits("{}", warn, sizeof warn, err, sizeof err), AW_OK);
  assert_non_null(strstr(warn, "dead-lettered degraded"));
  assert_null(strstr(warn, "response_too_large"));
  assert_null(strstr(warn, "one per fetch"));

  /* Room for everything: no finding. */
  assert_int_equal(check_limits("{\"kafka\":{\"properties\":{\"message.max.bytes\":\"4000000\"}}}", warn,
                                sizeof warn, err, sizeof err),
                   AW_OK);
  assert_string_equal(warn, "");

  /* A small producer limit: answers may not fit. */
  assert_int_equal(check_limits("{\"kafka\":{\"properties\":{\"message.max.bytes\":\"100000\"}}}", warn,
                                sizeof warn, err, sizeof err),
                   AW_OK);
  assert_non_null(strstr(warn, "response_too_large"));

  /* Fetch sizes below the event limit: still works, one event per fetch. */
  assert_int_equal(check_limits("{\"worker\":{\"max_event_bytes\":2000000},\"kafka\":{\"properties\":"
                                "{\"message.max.bytes\":\"4000000\"}}}",
                                warn, sizeof warn, err, sizeof err),
                   AW_OK);
  assert_non_null(strstr(warn, "one per fetch"));

  /* Refused: an accepted event could never be received. */
  assert_int_equal(check_limits("{\"worker\":{\"max_event_bytes\":2000000},\"kafka\":{\"properties\":"
                                "{\"receive.message.max.bytes\":\"1000000\"}}}",
                                warn, sizeof warn, err, sizeof err),
                   AW_ECONFIG);
  assert_non_null(strstr(err, "receive.message.max.bytes"));
  /* Refused: not even a degraded record fits. */
  assert_int_equal(check_limits("{\"kafka\":{\"properties\":{\"message.max.bytes\":\"5000\"}}}", warn,
                                sizeof warn, err, sizeof err),
                   AW_ECONFIG);
  assert_non_null(strstr(err, "message.max.bytes"));
}

static void test_api_background_defaults_on_and_comes_from_file_or_env(void **state) {
  (void)state;
  cfg c;
  char err[512];
  be_http_config bc;
  cfg_init(&c);
  assert_int_equal(c.api.background, 1);
  be_http_config_default(&bc);
  assert_int_equal(bc.background, 1);
  cfg_backend_config(&c, &bc);
  assert_int_equal(bc.background, 1);
  const char *off = "{\"api\":{\"background\":false}}";
  assert_int_equal(cfg_load_json(&c, off, strlen(off), err, sizeof err), AW_OK);
  assert_int_equal(c.api.background, 0);
  cfg_backend_config(&c, &bc);
  assert_int_equal(bc.background, 0);
  /* env wins over the file */
  setenv("AW_API_BACKGROUND", "true", 1);
  assert_int_equal(cfg_apply_env(&c, err, sizeof err), AW_OK);
  assert_int_equal(c.api.background, 1);
  setenv("AW_API_BACKGROUND", "0", 1);
  assert_int_equal(cfg_apply_env(&c, err, sizeof err), AW_OK);
  assert_int_equal(c.api.background, 0);
  setenv("AW_API_BACKGROUND", "maybe", 1);
  assert_int_equal(cfg_apply_env(&c, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_API_BACKGROUND"));
  unsetenv("AW_API_BACKGROUND");
  /* dumped with the api section */
  buf out;
  buf_init(&out, 1 << 20);
  assert_int_equal(cfg_dump(&c, &out), AW_OK);
  assert_non_null(strstr((const char *)out.data, "\"background\":\tfalse"));
  buf_free(&out);
  cfg_free(&c);
  assert_int_equal(load("{\"api\":{\"background\":\"no\"}}", err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "api.background"));
}

static void test_tool_choice_is_validated_canonical_and_hashed(void **state) {
  (void)state;
  char err[512];
  cfg c;
  setenv("AW_TOOL_SECRET", SECRET16, 1);
  setenv("AW_TOOL_REQUEST_KEY", SECRET16 "-request", 1);
#define W_TOOLS "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}]"
  const char *forced = "{\"assistants\":[{\"name\":\"w\",\"model\":\"m\"," W_TOOLS ","
                       "\"tool_choice\":{ \"type\": \"function\", \"function\": { \"name\": \"get_weather\" } }},"
                       "{\"name\":\"r\",\"model\":\"m\"," W_TOOLS ",\"tool_choice\":\"required\"},"
                       "{\"name\":\"n\",\"model\":\"m\",\"tool_choice\":\"none\"},"
                       "{\"name\":\"plain\",\"model\":\"m\"," W_TOOLS "},"
                       "{\"name\":\"nul\",\"model\":\"m\"," W_TOOLS ",\"tool_choice\":null}]}";
  cfg_init(&c);
  assert_int_equal(cfg_load_json(&c, forced, strlen(forced), err, sizeof err), AW_OK);
  const cfg_assistant *w = cfg_find_assistant(&c, "w"), *r = cfg_find_assistant(&c, "r"),
                      *no = cfg_find_assistant(&c, "n"), *plain = cfg_find_assistant(&c, "plain"),
                      *nul = cfg_find_assistant(&c, "nul");
  assert_string_equal(w->tool_choice_json, "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}");
  assert_string_equal(r->tool_choice_json, "\"required\"");
  assert_string_equal(no->tool_choice_json, "\"none\"");
  assert_null(plain->tool_choice_json);
  assert_null(nul->tool_choice_json);
  /* carried to the backends */
  be_assistant def;
  cfg_assistant_def(w, &def);
  assert_ptr_equal(def.tool_choice_json, w->tool_choice_json);
  cfg_assistant_def(plain, &def);
  assert_null(def.tool_choice_json);
  /* in the hash: a definition without one keeps its old hash; with one it differs */
  char h[17];
  cfg_assistant_hash("plain", "m", NULL, plain->tools_json, NULL, h);
  assert_string_equal(plain->hash, h);
  cfg_assistant_hash("w", "m", NULL, w->tools_json, NULL, h);
  assert_string_not_equal(w->hash, h);
  cfg_assistant_hash("w", "m", NULL, w->tools_json, w->tool_choice_json, h);
  assert_string_equal(w->hash, h);
  cfg_assistant_hash("w", "m", NULL, w->tools_json, "\"auto\"", h);
  assert_string_not_equal(w->hash, h);
  /* dumped */
  buf out;
  buf_init(&out, 1 << 20);
  assert_int_equal(cfg_dump(&c, &out), AW_OK);
  assert_non_null(strstr((const char *)out.data, "\"tool_choice\":\t\"required\""));
  buf_free(&out);
  cfg_free(&c);

  static const struct {
    const char *json, *expect;
  } bad[] = {
      {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tool_choice\":\"sometimes\"}]}",
       "assistants[0] (\"a\").tool_choice: \"sometimes\": expected \"auto\", \"required\", \"none\" or"},
      {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tool_choice\":1}]}", "assistants[0] (\"a\").tool_choice: expected"},
      {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"tool_choice\":\"required\"}]}",
       "tool_choice: \"required\" but the assistant has no tools"},
      {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\"," W_TOOLS ",\"tool_choice\":{\"type\":\"function\",\"name\":\"get_weather\"}}]}",
       "tool_choice: unknown key \"name\""},
      {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\"," W_TOOLS ",\"tool_choice\":{\"type\":\"file_search\"}}]}",
       "tool_choice: expected"},
      {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\"," W_TOOLS ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}}]}",
       "tool_choice: function \"get_time\" is not one of the assistant's function tools"},
      {"{\"assistants\":[{\"name\":\"a\",\"model\":\"m\"," W_TOOLS ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"x\":1}}}]}",
       "tool_choice: expected"},
  };
#undef W_TOOLS
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int rc = load(bad[i].json, err, sizeof err);
    if (rc != AW_ECONFIG || !strstr(err, bad[i].expect))
      fail_msg("case %zu %s: rc=%d err=\"%s\", expected \"%s\"", i, bad[i].json, rc, err, bad[i].expect);
  }
}

static void test_chat_backend_and_history_settings_come_from_file_or_env(void **state) {
  (void)state;
  cfg c;
  char err[512];
  const char *doc = "{\"api\":{\"backend\":\"chat\"},"
                    "\"worker\":{\"conversation_ttl_s\":3600,\"history_max_turns\":20,\"history_max_bytes\":65536},"
                    "\"assistants\":[{\"name\":\"a\",\"model\":\"m\",\"max_output_tokens\":96,\"history\":{\"max_messages\":12,\"max_tokens\":8000}},"
                    "{\"name\":\"b\",\"model\":\"m\",\"history\":{\"max_tokens\":500}},"
                    "{\"name\":\"c\",\"model\":\"m\",\"history\":null},"
                    "{\"name\":\"d\",\"model\":\"m\",\"history\":{}}]}";
  const char *path = write_tmp(doc);
  assert_int_equal(cfg_load(&c, path, err, sizeof err), AW_OK);
  assert_string_equal(c.api.backend, "chat");
  assert_int_equal(c.worker.history_max_turns, 20);
  assert_int_equal(c.worker.history_max_bytes, 65536);
  /* Not set: the conversation's lifetime, whatever that was set to. */
  assert_int_equal(c.worker.history_ttl_s, 3600);
  assert_int_equal(cfg_history_ttl_s(&c), 3600);
  const cfg_assistant *a = cfg_find_assistant(&c, "a"), *b = cfg_find_assistant(&c, "b");
  assert_int_equal(a->history_max_messages, 12);
  assert_int_equal(a->history_max_tokens, 8000);
  assert_int_equal(b->history_max_messages, 0); /* 0: the backend's default */
  assert_int_equal(b->history_max_tokens, 500);
  assert_int_equal(cfg_find_assistant(&c, "c")->history_max_messages, 0);
  assert_int_equal(cfg_find_assistant(&c, "d")->history_max_tokens, 0);
  be_assistant def;
  cfg_assistant_def(a, &def);
  assert_int_equal(def.history_max_messages, 12);
  assert_int_equal(def.history_max_tokens, 8000);
  assert_int_equal(def.max_output_tokens, 96);
  cfg_assistant_def(b, &def);
  assert_int_equal(def.max_output_tokens, 0); /* not sent */
  assert_int_equal(def.history_max_messages, 0);
  assert_int_equal(def.history_max_tokens, 500);
  /* Not in the hash (it names the Assistants backend's remote definition). */
  char h[17];
  cfg_assistant_hash("a", "m", NULL, NULL, NULL, h);
  assert_string_equal(a->hash, h);
  /* Dumped, with the ttl in use. */
  buf out;
  buf_init(&out, 1 << 20);
  assert_int_equal(cfg_dump(&c, &out), AW_OK);
  assert_non_null(strstr((const char *)out.data, "\"history_ttl_s\":\t3600"));
  assert_non_null(strstr((const char *)out.data, "\"max_messages\":\t12"));
  assert_non_null(strstr((const char *)out.data, "\"backend\":\t\"chat\""));
  buf_free(&out);
  cfg_free(&c);

  /* An explicit ttl, 0 included (no expiry), is kept; env wins over the file. */
  setenv("AW_HISTORY_TTL_S", "0", 1);
  setenv("AW_HISTORY_MAX_TURNS", "7", 1);
  setenv("AW_HISTORY_MAX_BYTES", "4096", 1);
  setenv("AW_API_BACKEND", "chat", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.api.backend, "chat");
  assert_int_equal(c.worker.history_ttl_s, 0);
  assert_int_equal(cfg_history_ttl_s(&c), 0);
  assert_int_equal(c.worker.history_max_turns, 7);
  assert_int_equal(c.worker.history_max_bytes, 4096);
  cfg_free(&c);
  setenv("AW_HISTORY_TTL_S", "86400", 1);
  assert_int_equal(cfg_load(&c, path, err, sizeof err), AW_OK);
  unlink(path);
  assert_int_equal(c.worker.history_ttl_s, 86400); /* not the file's conversation_ttl_s */
  cfg_free(&c);
}

/* ---- secret hygiene --------------------------------------------------------- */

static void test_plain_http_to_a_remote_host_is_refused_unless_allowed(void **state) {
  (void)state;
  cfg c;
  char err[512];
  setenv("AW_API_BASE_URL", "http://user:url-secret@api.example.com/v1", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "api.allow_insecure_http"));
  assert_non_null(strstr(err, "http://***@api.example.com/v1")); /* named, credentials masked */
  assert_null(strstr(err, "url-secret"));
  setenv("AW_API_ALLOW_INSECURE_HTTP", "1", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_int_equal(c.api.allow_insecure_http, 1);
  cfg_free(&c);
  unsetenv("AW_API_ALLOW_INSECURE_HTTP");
  /* Loopback (the simulator, a local model server) and https need no opt-in. */
  static const char *const ok[] = {"http://127.0.0.1:8080/v1", "http://localhost:8000/v1", "http://[::1]:1/v1",
                                   "https://api.example.com/v1"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    setenv("AW_API_BASE_URL", ok[i], 1);
    if (cfg_load(&c, NULL, err, sizeof err) != AW_OK) fail_msg("%s: %s", ok[i], err);
    assert_int_equal(c.api.allow_insecure_http, 0);
    cfg_free(&c);
  }
}

static void test_health_bind_defaults_to_every_interface_and_must_be_numeric(void **state) {
  (void)state;
  cfg c;
  char err[512];
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.worker.health_bind, "0.0.0.0"); /* Kubernetes probes come from the node */
  assert_int_equal(c.worker.allow_core_dumps, 0);
  cfg_free(&c);
  setenv("AW_HEALTH_BIND", "::1", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.worker.health_bind, "::1");
  cfg_free(&c);
  setenv("AW_HEALTH_BIND", "localhost", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "worker.health_bind"));
  setenv("AW_HEALTH_BIND", "127.0.0.1", 1);
  setenv("AW_ALLOW_CORE_DUMPS", "true", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.worker.health_bind, "127.0.0.1");
  assert_int_equal(c.worker.allow_core_dumps, 1);
  cfg_free(&c);
}

static void test_print_config_masks_credentials_in_urls_and_brokers(void **state) {
  (void)state;
  cfg c;
  char err[512];
  setenv("AW_API_BASE_URL", "https://user:url-secret@api.example.com/v1", 1);
  setenv("AW_KAFKA_BROKERS", "k1:9092,bob:broker-secret@k2:9092", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.api.base_url, "https://user:url-secret@api.example.com/v1"); /* used as is */
  buf b;
  buf_init(&b, 1 << 20);
  assert_int_equal(cfg_dump(&c, &b), AW_OK);
  assert_null(strstr(b.data, "url-secret"));
  assert_null(strstr(b.data, "broker-secret"));
  cJSON *j = cJSON_Parse(b.data);
  assert_non_null(j);
  assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "api"), "base_url")->valuestring,
                      "https://***@api.example.com/v1");
  assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "kafka"), "brokers")->valuestring,
                      "k1:9092,***@k2:9092");
  cJSON_Delete(j);
  buf_free(&b);
  cfg_free(&c);
}

static void test_scrub_secret_env_removes_every_secret_and_keeps_the_rest(void **state) {
  (void)state;
  cfg c;
  char err[512];
  setenv("AW_API_KEY", "sk-scrub-1", 1);
  setenv("OPENAI_API_KEY", "sk-scrub-2", 1);
  setenv("AW_TOOL_SECRET", SECRET16 "-scrub", 1);
  setenv("AW_TOOL_SECRET_PREVIOUS", SECRET16 "-prev", 1);
  setenv("AW_REDIS_PASSWORD", "pw-scrub", 1); /* a secret of another module, named like one */
  setenv("AW_KAFKA_BROKERS", "k:9092", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_int_equal(cfg_scrub_secret_env(), 5);
  assert_null(getenv("AW_API_KEY"));
  assert_null(getenv("OPENAI_API_KEY"));
  assert_null(getenv("AW_TOOL_SECRET"));
  assert_null(getenv("AW_TOOL_SECRET_PREVIOUS"));
  assert_null(getenv("AW_REDIS_PASSWORD"));
  assert_string_equal(getenv("AW_KAFKA_BROKERS"), "k:9092");
  extern char **environ;
  for (char **e = environ; *e; e++) assert_null(strstr(*e, "scrub"));
  /* The loaded configuration keeps its copies. */
  assert_string_equal(c.api.api_key, "sk-scrub-1");
  assert_string_equal(c.tools.secret, SECRET16 "-scrub");
  assert_int_equal(cfg_scrub_secret_env(), 0);
  cfg_free(&c);
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
      cmocka_unit_test_setup(test_group_instance_id_and_max_event_bytes_come_from_file_or_env, clear_env),
      cmocka_unit_test_setup(test_kconf_defaults_are_overridden_by_properties, clear_env),
      cmocka_unit_test_setup(test_limits_that_interact_are_checked_at_start_up, clear_env),
      cmocka_unit_test_setup(test_kconf_set_never_shows_a_secret_value, clear_env),
      cmocka_unit_test_setup(test_every_function_tool_gets_a_default_route, clear_env),
      cmocka_unit_test_setup(test_functions_entry_overrides_only_what_it_names, clear_env),
      cmocka_unit_test_setup(test_default_route_topic_follows_tool_requests, clear_env),
      cmocka_unit_test_setup(test_function_routes_are_bounded, clear_env),
      cmocka_unit_test_setup(test_tool_secret_in_the_file_is_refused, clear_env),
      cmocka_unit_test_setup(test_tool_secret_is_required_with_function_tools, clear_env),
      cmocka_unit_test_setup(test_invalid_tool_secrets_are_refused_without_echo, clear_env),
      cmocka_unit_test_setup(test_tool_key_signs_with_current_and_verifies_previous, clear_env),
      cmocka_unit_test_setup(test_tool_request_key_and_reply_topics, clear_env),
      cmocka_unit_test_setup(test_dump_shows_routes_and_hides_tool_secrets, clear_env),
      cmocka_unit_test_setup(test_api_background_defaults_on_and_comes_from_file_or_env, clear_env),
      cmocka_unit_test_setup(test_tool_choice_is_validated_canonical_and_hashed, clear_env),
      cmocka_unit_test_setup(test_chat_backend_and_history_settings_come_from_file_or_env, clear_env),
      cmocka_unit_test_setup(test_plain_http_to_a_remote_host_is_refused_unless_allowed, clear_env),
      cmocka_unit_test_setup(test_health_bind_defaults_to_every_interface_and_must_be_numeric, clear_env),
      cmocka_unit_test_setup(test_print_config_masks_credentials_in_urls_and_brokers, clear_env),
      cmocka_unit_test_setup(test_scrub_secret_env_removes_every_secret_and_keeps_the_rest, clear_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

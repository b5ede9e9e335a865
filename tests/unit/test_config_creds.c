/* test_config_creds.c -- the infrastructure's credentials in the
 * configuration (worker/cli/config_creds.c) and in every Kafka client's
 * configuration (kafka_conf.c): the Redis password and the Kafka SASL
 * password come from the environment or a mounted file, never from the
 * config file; a file's trailing newline is dropped; errors name the
 * variable or the file, never the password; the dump masks them; the
 * environment is scrubbed of them; SASL settings reach every client
 * configuration and win over kafka.properties.  Needs no infrastructure.
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
    "AW_CONFIG",          "AW_KAFKA_BROKERS",       "AW_API_KEY",          "OPENAI_API_KEY",
    "AW_TOOL_SECRET",     "AW_REDIS_USERNAME",      "AW_REDIS_PASSWORD",   "AW_REDIS_PASSWORD_FILE",
    "AW_KAFKA_SASL_USERNAME", "AW_KAFKA_SASL_PASSWORD", "AW_KAFKA_SASL_PASSWORD_FILE",
    "AW_KAFKA_SSL_KEY_PASSWORD",
};

static char g_files[4][256];
static int g_nfiles;

static int clear_env(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof ENV_VARS / sizeof ENV_VARS[0]; i++) unsetenv(ENV_VARS[i]);
  setenv("AW_KAFKA_BROKERS", "k:9092", 1);
  return 0;
}

static int remove_files(void **state) {
  (void)state;
  for (int i = 0; i < g_nfiles; i++) unlink(g_files[i]);
  g_nfiles = 0;
  return clear_env(state);
}

/* Write len bytes to a fresh temporary file; returns its path. */
static const char *write_file(const char *bytes, size_t len) {
  assert_true(g_nfiles < 4);
  char *p = g_files[g_nfiles++];
  snprintf(p, 256, "%s/aw-test-creds-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  int fd = mkstemp(p);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, bytes, len), (ssize_t)len);
  close(fd);
  return p;
}

static const char *config_file(const char *json) { return write_file(json, strlen(json)); }

static int dump_has(const cfg *c, const char *section, const char *key, const char *want) {
  buf out;
  buf_init(&out, 1 << 20);
  assert_int_equal(cfg_dump(c, &out), AW_OK);
  cJSON *root = cJSON_Parse(out.data);
  assert_non_null(root);
  const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(root, section), key);
  int ok = want ? cJSON_IsString(v) && strcmp(v->valuestring, want) == 0 : cJSON_IsNull(v);
  buf_free(&out);
  cJSON_Delete(root);
  return ok;
}

static int dump_contains(const cfg *c, const char *needle) {
  buf out;
  buf_init(&out, 1 << 20);
  assert_int_equal(cfg_dump(c, &out), AW_OK);
  int found = strstr(out.data, needle) != NULL;
  buf_free(&out);
  return found;
}

static void no_password_means_no_auth_as_before(void **state) {
  (void)state;
  cfg c;
  char err[512];
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.redis.password, "");
  assert_string_equal(c.redis.username, "");
  assert_string_equal(c.kafka.sasl_password, "");
  assert_true(dump_has(&c, "redis", "password", NULL));
  assert_true(dump_has(&c, "kafka", "sasl_password", NULL));
  cfg_free(&c);
}

static void redis_password_from_the_environment_is_used_and_masked_in_the_dump(void **state) {
  (void)state;
  cfg c;
  char err[512];
  setenv("AW_REDIS_USERNAME", "aw", 1);
  setenv("AW_REDIS_PASSWORD", "pw-from-env-8d1e", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.redis.username, "aw");
  assert_string_equal(c.redis.password, "pw-from-env-8d1e");
  assert_true(dump_has(&c, "redis", "password", "***"));
  assert_true(dump_has(&c, "redis", "username", "aw"));
  assert_false(dump_contains(&c, "pw-from-env-8d1e"));
  cfg_free(&c);
  assert_string_equal(c.redis.password, ""); /* wiped */
}

static void redis_password_in_the_config_file_is_refused_without_echoing_it(void **state) {
  (void)state;
  cfg c;
  char err[512];
  const char *path = config_file("{\"redis\": {\"password\": \"pw-in-file-0b7c\"}}");
  assert_int_equal(cfg_load(&c, path, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "redis.password"));
  assert_non_null(strstr(err, "AW_REDIS_PASSWORD"));
  assert_null(strstr(err, "pw-in-file-0b7c"));
  path = config_file("{\"kafka\": {\"sasl_password\": \"pw-in-file-0b7c\"}}");
  assert_int_equal(cfg_load(&c, path, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_KAFKA_SASL_PASSWORD"));
  assert_null(strstr(err, "pw-in-file-0b7c"));
}

static void redis_password_file_is_read_and_its_trailing_newline_dropped(void **state) {
  (void)state;
  cfg c;
  char err[512];
  const char *pw = write_file("pw-from-file-3a9f\r\n", 19);
  char json[512];
  snprintf(json, sizeof json, "{\"redis\": {\"username\": \"aw\", \"password_file\": \"%s\"}}", pw);
  assert_int_equal(cfg_load(&c, config_file(json), err, sizeof err), AW_OK);
  assert_string_equal(c.redis.password, "pw-from-file-3a9f");
  assert_true(dump_has(&c, "redis", "password_file", pw)); /* a path, not a secret */
  assert_true(dump_has(&c, "redis", "password", "***"));
  cfg_free(&c);
  /* The same through the environment. */
  setenv("AW_REDIS_PASSWORD_FILE", pw, 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_string_equal(c.redis.password, "pw-from-file-3a9f");
  cfg_free(&c);
}

static void password_file_errors_name_the_file_never_its_content(void **state) {
  (void)state;
  cfg c;
  char err[512];
  setenv("AW_REDIS_PASSWORD_FILE", "/nonexistent/aw-redis-password", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "/nonexistent/aw-redis-password"));
  assert_non_null(strstr(err, "cannot open"));
  setenv("AW_REDIS_PASSWORD_FILE", write_file("\n", 1), 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "empty"));
  setenv("AW_REDIS_PASSWORD_FILE", write_file("line-one-5e2\nline-two", 21), 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "control character"));
  assert_null(strstr(err, "line-one-5e2"));
  char big[CFG_SECRET_SIZE + 8];
  memset(big, 'x', sizeof big);
  setenv("AW_REDIS_PASSWORD_FILE", write_file(big, sizeof big), 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "too long"));
  assert_null(strstr(err, "xxxxxxxx"));
}

static void a_password_from_both_the_variable_and_a_file_is_an_error(void **state) {
  (void)state;
  cfg c;
  char err[512];
  setenv("AW_REDIS_PASSWORD", "pw-env", 1);
  setenv("AW_REDIS_PASSWORD_FILE", write_file("pw-file", 7), 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "both set"));
  assert_null(strstr(err, "pw-env"));
}

static void redis_username_without_a_password_is_refused(void **state) {
  (void)state;
  cfg c;
  char err[512];
  setenv("AW_REDIS_USERNAME", "aw", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "redis.username"));
}

static void get(rd_kafka_conf_t *conf, const char *key, char *out, size_t n) {
  size_t len = n;
  assert_int_equal(rd_kafka_conf_get(conf, key, out, &len), RD_KAFKA_CONF_OK);
}

static void sasl_credentials_reach_the_client_conf_and_win_over_the_properties(void **state) {
  (void)state;
  cfg c;
  char err[512], v[256];
  const char *path = config_file("{\"kafka\": {\"properties\": {\"security.protocol\": \"SASL_PLAINTEXT\", "
                                 "\"sasl.mechanisms\": \"SCRAM-SHA-256\", \"sasl.username\": \"from-file\"}}}");
  setenv("AW_KAFKA_SASL_USERNAME", "aw-sasl", 1);
  setenv("AW_KAFKA_SASL_PASSWORD", "sasl-pw-71c2", 1);
  assert_int_equal(cfg_load(&c, path, err, sizeof err), AW_OK);
  /* Every client is built by kconf_new / kconf_new_with. */
  static const char *const defaults[] = {KCONF_CONSUMER_DEFAULTS, NULL};
  rd_kafka_conf_t *plain = NULL, *with = NULL;
  assert_int_equal(kconf_new(&c, "t", &plain, err, sizeof err), AW_OK);
  assert_int_equal(kconf_new_with(&c, "t", defaults, &with, err, sizeof err), AW_OK);
  rd_kafka_conf_t *confs[] = {plain, with};
  for (int i = 0; i < 2; i++) {
    get(confs[i], "sasl.username", v, sizeof v);
    assert_string_equal(v, "aw-sasl");
    get(confs[i], "sasl.password", v, sizeof v);
    assert_string_equal(v, "sasl-pw-71c2");
    get(confs[i], "sasl.mechanisms", v, sizeof v);
    assert_string_equal(v, "SCRAM-SHA-256");
    rd_kafka_conf_destroy(confs[i]);
  }
  assert_true(dump_has(&c, "kafka", "sasl_password", "***"));
  assert_true(dump_has(&c, "kafka", "sasl_username", "aw-sasl"));
  assert_false(dump_contains(&c, "sasl-pw-71c2"));
  cfg_free(&c);
}

static void sasl_password_file_is_read_and_a_password_needs_a_user(void **state) {
  (void)state;
  cfg c;
  char err[512], v[256];
  setenv("AW_KAFKA_SASL_PASSWORD_FILE", write_file("sasl-file-pw-2d4\n", 17), 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "AW_KAFKA_SASL_USERNAME"));
  setenv("AW_KAFKA_SASL_USERNAME", "aw-sasl", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  rd_kafka_conf_t *conf = NULL;
  assert_int_equal(kconf_new(&c, "t", &conf, err, sizeof err), AW_OK);
  get(conf, "sasl.password", v, sizeof v);
  assert_string_equal(v, "sasl-file-pw-2d4");
  rd_kafka_conf_destroy(conf);
  cfg_free(&c);
}

static void scrub_removes_the_infrastructure_passwords_from_the_environment(void **state) {
  (void)state;
  cfg c;
  char err[512];
  setenv("AW_REDIS_PASSWORD", "redis-scrub-pw", 1);
  setenv("AW_KAFKA_SASL_USERNAME", "aw-sasl", 1);
  setenv("AW_KAFKA_SASL_PASSWORD", "sasl-scrub-pw", 1);
  setenv("AW_KAFKA_SSL_KEY_PASSWORD", "key-scrub-pw", 1);
  assert_int_equal(cfg_load(&c, NULL, err, sizeof err), AW_OK);
  assert_true(cfg_scrub_secret_env() >= 3);
  assert_null(getenv("AW_REDIS_PASSWORD"));
  assert_null(getenv("AW_KAFKA_SASL_PASSWORD"));
  assert_null(getenv("AW_KAFKA_SSL_KEY_PASSWORD"));
  assert_string_equal(getenv("AW_KAFKA_SASL_USERNAME"), "aw-sasl");
  extern char **environ;
  for (char **e = environ; *e; e++) assert_null(strstr(*e, "scrub-pw"));
  assert_string_equal(c.redis.password, "redis-scrub-pw"); /* the configuration keeps its copies */
  assert_string_equal(c.kafka.ssl_key_password, "key-scrub-pw");
  assert_true(dump_has(&c, "kafka", "ssl_key_password", "***"));
  cfg_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(no_password_means_no_auth_as_before, clear_env, remove_files),
      cmocka_unit_test_setup_teardown(redis_password_from_the_environment_is_used_and_masked_in_the_dump, clear_env,
                                      remove_files),
      cmocka_unit_test_setup_teardown(redis_password_in_the_config_file_is_refused_without_echoing_it, clear_env,
                                      remove_files),
      cmocka_unit_test_setup_teardown(redis_password_file_is_read_and_its_trailing_newline_dropped, clear_env,
                                      remove_files),
      cmocka_unit_test_setup_teardown(password_file_errors_name_the_file_never_its_content, clear_env, remove_files),
      cmocka_unit_test_setup_teardown(a_password_from_both_the_variable_and_a_file_is_an_error, clear_env,
                                      remove_files),
      cmocka_unit_test_setup_teardown(redis_username_without_a_password_is_refused, clear_env, remove_files),
      cmocka_unit_test_setup_teardown(sasl_credentials_reach_the_client_conf_and_win_over_the_properties, clear_env,
                                      remove_files),
      cmocka_unit_test_setup_teardown(sasl_password_file_is_read_and_a_password_needs_a_user, clear_env,
                                      remove_files),
      cmocka_unit_test_setup_teardown(scrub_removes_the_infrastructure_passwords_from_the_environment, clear_env,
                                      remove_files),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

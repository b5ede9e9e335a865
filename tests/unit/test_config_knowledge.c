/* test_config_knowledge.c -- the configuration's knowledge section and
 * assistants[].vector_stores (config_knowledge.c): documents resolved
 * against the config file's directory, every load-time refusal naming what
 * is wrong, the chat backend refusing hosted tools and stores, the hash
 * following the attached store ids, and the uploaded files' names that the
 * sync recognises as its own (kb_sync.h).  Needs no infrastructure: files
 * go to a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "files_api.h"
#include "kb_doc.h"
#include "kb_sync.h"

static char g_dir[256];

static void write_file(const char *name, const char *text) {
  char p[512];
  snprintf(p, sizeof p, "%s/%s", g_dir, name);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int setup(void **state) {
  (void)state;
  unsetenv("AW_CONFIG");
  unsetenv("AW_API_BACKEND");
  snprintf(g_dir, sizeof g_dir, "%s/aw-kbcfg-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  assert_non_null(mkdtemp(g_dir));
  char sub[300];
  snprintf(sub, sizeof sub, "%s/docs", g_dir);
  assert_int_equal(mkdir(sub, 0700), 0);
  write_file("docs/guide.md", "# Guide\n");
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  assert_int_equal(system(cmd), 0);
  return 0;
}

/* cfg_load of json written as <dir>/c.json; the code, and c loaded on success. */
static int load(cfg *c, const char *json, char *err, size_t n) {
  write_file("c.json", json);
  char p[300];
  snprintf(p, sizeof p, "%s/c.json", g_dir);
  return cfg_load(c, p, err, n);
}

#define STORE_JSON "\"knowledge\": {\"vector_stores\": [{\"name\": \"docs\", \"documents\": [\"docs/guide.md\"]}]}"
#define BOT(extra) "\"assistants\": [{\"name\": \"Bot\", \"model\": \"m\"" extra "}]"

static void test_documents_resolve_against_the_config_files_directory_and_sync_on_start_defaults_on(void **state) {
  (void)state;
  cfg c;
  char err[512] = "";
  assert_int_equal(load(&c, "{" STORE_JSON ", " BOT(", \"vector_stores\": [\"docs\"]") "}", err, sizeof err), AW_OK);
  assert_int_equal(c.knowledge.nstores, 1);
  assert_string_equal(c.knowledge.stores[0].documents[0].key, "docs/guide.md");
  char want[400];
  snprintf(want, sizeof want, "%s/docs/guide.md", g_dir);
  assert_string_equal(c.knowledge.stores[0].documents[0].path, want);
  assert_int_equal(c.knowledge.sync_on_start, 1);
  assert_int_equal(c.knowledge.wait_timeout_ms, 120000);
  assert_int_equal(c.assistants[0].nvector_stores, 1);
  cfg_free(&c);
  /* No store: nothing to sync at start-up. */
  assert_int_equal(load(&c, "{" BOT("") "}", err, sizeof err), AW_OK);
  assert_int_equal(c.knowledge.sync_on_start, 0);
  cfg_free(&c);
}

static void test_load_refuses_unknown_store_duplicate_store_missing_document_and_too_many(void **state) {
  (void)state;
  cfg c;
  char err[512] = "";
  assert_int_equal(load(&c, "{" STORE_JSON ", " BOT(", \"vector_stores\": [\"nope\"]") "}", err, sizeof err),
                   AW_ECONFIG);
  assert_non_null(strstr(err, "Bot"));
  assert_non_null(strstr(err, "unknown store \"nope\""));
  assert_int_equal(load(&c, "{\"knowledge\": {\"vector_stores\": [{\"name\": \"a\", \"documents\": [\"docs/guide.md\"]},"
                            "{\"name\": \"a\", \"documents\": [\"docs/guide.md\"]}]}}", err, sizeof err),
                   AW_ECONFIG);
  assert_non_null(strstr(err, "duplicate store name"));
  assert_int_equal(load(&c, "{\"knowledge\": {\"vector_stores\": [{\"name\": \"a\", \"documents\": [\"docs/missing.md\"]}]}}",
                        err, sizeof err),
                   AW_ECONFIG);
  assert_non_null(strstr(err, "docs/missing.md"));
  assert_non_null(strstr(err, "does not exist"));
  assert_int_equal(load(&c, "{\"knowledge\": {\"vector_stores\": [{\"name\": \"a.b\", \"documents\": [\"docs/guide.md\"]}]}}",
                        err, sizeof err),
                   AW_ECONFIG);
  assert_non_null(strstr(err, "invalid name"));
  assert_int_equal(load(&c, "{" STORE_JSON ", " BOT(", \"vector_stores\": [\"docs\", \"docs\", \"docs\"]") "}", err,
                        sizeof err),
                   AW_ECONFIG);
  assert_non_null(strstr(err, "at most 2"));
}

static void test_chat_backend_refuses_hosted_tools_and_stores_naming_assistant_and_tool(void **state) {
  (void)state;
  cfg c;
  char err[512] = "";
  assert_int_equal(load(&c, "{\"api\": {\"backend\": \"chat\"}, " BOT(", \"tools\": [{\"type\": \"code_interpreter\"}]") "}",
                        err, sizeof err),
                   AW_ECONFIG);
  assert_non_null(strstr(err, "\"Bot\""));
  assert_non_null(strstr(err, "code_interpreter"));
  assert_non_null(strstr(err, "chat backend"));
  assert_int_equal(load(&c, "{\"api\": {\"backend\": \"chat\"}, " STORE_JSON ", " BOT(", \"vector_stores\": [\"docs\"]") "}",
                        err, sizeof err),
                   AW_ECONFIG);
  assert_non_null(strstr(err, "\"Bot\""));
  assert_non_null(strstr(err, "file_search"));
  /* The environment chooses the backend too. */
  setenv("AW_API_BACKEND", "chat", 1);
  assert_int_equal(load(&c, "{" BOT(", \"tools\": [{\"type\": \"file_search\"}]") "}", err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "file_search"));
  unsetenv("AW_API_BACKEND");
  /* The Assistants API attaches one store to an assistant. */
  assert_int_equal(load(&c, "{\"api\": {\"backend\": \"assistants\"}, \"knowledge\": {\"vector_stores\": ["
                            "{\"name\": \"a\", \"documents\": [\"docs/guide.md\"]}, {\"name\": \"b\", \"documents\": "
                            "[\"docs/guide.md\"]}]}, " BOT(", \"vector_stores\": [\"a\", \"b\"]") "}",
                        err, sizeof err),
                   AW_ECONFIG);
  assert_non_null(strstr(err, "at most one vector store"));
}

static void test_attached_store_ids_change_the_hash_and_reach_the_definition(void **state) {
  (void)state;
  cfg c;
  char err[512] = "";
  assert_int_equal(load(&c, "{" STORE_JSON ", \"assistants\": [{\"name\": \"Bot\", \"model\": \"m\", \"vector_stores\": "
                            "[\"docs\"]}, {\"name\": \"Plain\", \"model\": \"m\"}]}",
                        err, sizeof err),
                   AW_OK);
  char plain[17], bot[17];
  snprintf(plain, sizeof plain, "%s", c.assistants[1].hash);
  snprintf(bot, sizeof bot, "%s", c.assistants[0].hash);
  assert_int_equal(cfg_knowledge_attach(&c, err, sizeof err), AW_ENOTFOUND); /* never synced */
  assert_non_null(strstr(err, "docs"));
  snprintf(c.knowledge.stores[0].id, sizeof c.knowledge.stores[0].id, "vs_1");
  assert_int_equal(cfg_knowledge_attach(&c, err, sizeof err), AW_OK);
  assert_string_not_equal(c.assistants[0].hash, bot);
  assert_string_equal(c.assistants[1].hash, plain); /* no stores: the hash of before */
  char h1[17];
  snprintf(h1, sizeof h1, "%s", c.assistants[0].hash);
  snprintf(c.knowledge.stores[0].id, sizeof c.knowledge.stores[0].id, "vs_2");
  assert_int_equal(cfg_knowledge_attach(&c, err, sizeof err), AW_OK);
  assert_string_not_equal(c.assistants[0].hash, h1); /* another store: another definition */
  be_assistant def;
  cfg_assistant_def(&c.assistants[0], &def);
  assert_int_equal(def.nvector_store_ids, 1);
  assert_string_equal(def.vector_store_ids[0], "vs_2");
  cfg_free(&c);
}

static void test_uploaded_names_are_recognised_only_for_their_store(void **state) {
  (void)state;
  char name[FAPI_NAME_MAX];
  kbd_file_name("docs", "vs_A1", "0123456789abcdef0123", "/x/y/guide.md", name, sizeof name);
  assert_string_equal(name, "aw-kb.docs.vs_A1.0123456789ab.guide.md");
  assert_true(kbd_is_our_file("docs", "vs_A1", name));
  assert_false(kbd_is_our_file("docs", "vs_B2", name)); /* another deployment's store of that name */
  assert_false(kbd_is_our_file("doc", "vs_A1", name));
  assert_false(kbd_is_our_file("docs", "vs_A", name));
  assert_false(kbd_is_our_file("docs", "vs_A1", "guide.md"));
  assert_false(kbd_is_our_file("docs", "vs_A1", "aw-kb.docs.vs_A1.abc.guide.md")); /* not a 12-digit hash prefix */
  /* A long basename keeps its end (the extension) and the name fits. */
  char longp[400];
  memset(longp, 'a', sizeof longp - 1);
  longp[sizeof longp - 1] = '\0';
  memcpy(longp + sizeof longp - 4, ".md", 4);
  kbd_file_name("docs", "vs_A1", "0123456789abcdef0123", longp, name, sizeof name);
  assert_true(strlen(name) < sizeof name);
  assert_int_equal(strcmp(name + strlen(name) - 3, ".md"), 0);
  assert_true(kbd_is_our_file("docs", "vs_A1", name));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_documents_resolve_against_the_config_files_directory_and_sync_on_start_defaults_on),
      cmocka_unit_test(test_load_refuses_unknown_store_duplicate_store_missing_document_and_too_many),
      cmocka_unit_test(test_chat_backend_refuses_hosted_tools_and_stores_naming_assistant_and_tool),
      cmocka_unit_test(test_attached_store_ids_change_the_hash_and_reach_the_definition),
      cmocka_unit_test(test_uploaded_names_are_recognised_only_for_their_store),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

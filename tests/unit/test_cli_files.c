/* test_cli_files.c -- `send`'s local files (worker/cli/cli_files.c): the
 * generated files of a response are written into the directory under safe
 * names with their decoded bytes (a name from the API never escapes the
 * directory nor follows a planted symlink), --attach specs pick the path
 * and the tools, and reads are bounded.  Works in a temporary directory.
 * Needs: nothing. */
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

#include "cli.h"
#include "cli_files.h"
#include "contract.h"

static char tmpdir[64];

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/aw-test-clif-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

/* The file's content, NUL-terminated (len in *n); NULL when absent. */
static char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  char *p = calloc(1, 1 << 16);
  *n = fread(p, 1, (1 << 16) - 1, f);
  fclose(f);
  return p;
}

/* A response's JSON view with one inline file of these bytes. */
static cJSON *response_with(const char *filename, const char *file_id, const void *bytes, size_t n) {
  cJSON *r = cJSON_CreateObject(), *files = cJSON_AddArrayToObject(r, "files"), *f = cJSON_CreateObject();
  cJSON_AddItemToArray(files, f);
  if (file_id) cJSON_AddStringToObject(f, "file_id", file_id);
  if (filename) cJSON_AddStringToObject(f, "filename", filename);
  cJSON_AddStringToObject(f, "media_type", "image/png");
  cJSON_AddNumberToObject(f, "bytes", (double)n);
  char *b64 = cli_base64(bytes, n);
  cJSON_AddStringToObject(f, "data", b64);
  free(b64);
  return r;
}

static void test_an_inline_generated_file_is_saved_under_its_name_with_its_decoded_bytes(void **state) {
  (void)state;
  /* Lengths 8, 7 and 6 cover each base64 padding (none, one, two '='). */
  static const unsigned char png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  for (size_t n = 8; n >= 6; n--) {
    cJSON *r = response_with("chart.png", "cfile_1", png, n);
    char dir[128], err[256], path[160];
    snprintf(dir, sizeof dir, "%s/out%zu", tmpdir, n); /* created by the call */
    assert_int_equal(clif_save_files(r, dir, NULL, err, sizeof err), 1);
    snprintf(path, sizeof path, "%s/chart.png", dir);
    size_t got = 0;
    char *p = slurp(path, &got);
    assert_non_null(p);
    assert_int_equal(got, n);
    assert_memory_equal(p, png, n);
    free(p);
    cJSON_Delete(r);
  }
}

static void test_a_name_that_would_leave_the_directory_is_replaced_by_the_file_id(void **state) {
  (void)state;
  const char *bad[] = {"../escape.png", "a/b.png", ".hidden", "..", "", "x\ny.png", "a\\b.png"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cJSON *r = response_with(bad[i], "file-abc123", "hello", 5);
    char dir[128], err[256], path[160];
    snprintf(dir, sizeof dir, "%s/names", tmpdir);
    assert_int_equal(clif_save_files(r, dir, NULL, err, sizeof err), 1);
    snprintf(path, sizeof path, "%s/file-abc123", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 5);
    assert_int_equal(unlink(path), 0);
    cJSON_Delete(r);
  }
  char outside[160];
  snprintf(outside, sizeof outside, "%s/escape.png", tmpdir);
  assert_int_not_equal(access(outside, F_OK), 0);
  /* Neither a usable name nor a usable id: refused, nothing written. */
  cJSON *r = response_with("../x", "../y", "hello", 5);
  char err[256];
  assert_int_equal(clif_save_files(r, tmpdir, NULL, err, sizeof err), AW_EINVAL);
  cJSON_Delete(r);
}

static void test_a_symlink_planted_under_the_name_is_not_followed(void **state) {
  (void)state;
  char dir[128], target[160], link[160], err[256];
  snprintf(dir, sizeof dir, "%s/links", tmpdir);
  assert_int_equal(mkdir(dir, 0755), 0);
  snprintf(target, sizeof target, "%s/victim", tmpdir);
  FILE *f = fopen(target, "w");
  assert_non_null(f);
  fputs("keep", f);
  fclose(f);
  snprintf(link, sizeof link, "%s/chart.png", dir);
  assert_int_equal(symlink(target, link), 0);
  cJSON *r = response_with("chart.png", "cfile_1", "PNGDATA", 7);
  assert_true(clif_save_files(r, dir, NULL, err, sizeof err) < 0);
  size_t n = 0;
  char *p = slurp(target, &n);
  assert_string_equal(p, "keep");
  free(p);
  cJSON_Delete(r);
}

static void test_data_that_is_not_base64_fails_and_leaves_no_file(void **state) {
  (void)state;
  cJSON *r = cJSON_Parse("{\"files\":[{\"file_id\":\"file-1\",\"filename\":\"a.csv\",\"data\":\"@@@@\"}]}");
  char dir[128], path[160], err[256];
  snprintf(dir, sizeof dir, "%s/bad", tmpdir);
  assert_int_equal(clif_save_files(r, dir, NULL, err, sizeof err), AW_EINVAL);
  snprintf(path, sizeof path, "%s/a.csv", dir);
  assert_int_not_equal(access(path, F_OK), 0);
  cJSON_Delete(r);
  /* A response without files saves nothing and creates nothing. */
  r = cJSON_Parse("{\"status\":\"completed\"}");
  snprintf(dir, sizeof dir, "%s/none", tmpdir);
  assert_int_equal(clif_save_files(r, dir, NULL, err, sizeof err), 0);
  assert_int_not_equal(access(dir, F_OK), 0);
  cJSON_Delete(r);
}

static void test_an_attach_spec_names_the_path_and_its_tools(void **state) {
  (void)state;
  size_t n;
  unsigned tools;
  clif_attach_spec("data/sales.csv:code_interpreter", &n, &tools);
  assert_int_equal(n, strlen("data/sales.csv"));
  assert_int_equal(tools, CONTRACT_ATT_CODE_INTERPRETER);
  clif_attach_spec("guide.md:file_search,code_interpreter", &n, &tools);
  assert_int_equal(n, strlen("guide.md"));
  assert_int_equal(tools, CONTRACT_ATT_FILE_SEARCH | CONTRACT_ATT_CODE_INTERPRETER);
  /* No tools suffix: by the file's kind. */
  clif_attach_spec("sales.csv", &n, &tools);
  assert_int_equal(n, strlen("sales.csv"));
  assert_int_equal(tools, CONTRACT_ATT_CODE_INTERPRETER);
  clif_attach_spec("policies.pdf", &n, &tools);
  assert_int_equal(tools, CONTRACT_ATT_FILE_SEARCH);
  /* A colon that is not a tools suffix belongs to the path. */
  clif_attach_spec("c:weird.md", &n, &tools);
  assert_int_equal(n, strlen("c:weird.md"));
  clif_attach_spec("x.md:file_search,", &n, &tools);
  assert_int_equal(n, strlen("x.md:file_search,"));
}

static void test_media_types_come_from_the_extension(void **state) {
  (void)state;
  assert_string_equal(clif_media_type("chart.PNG"), "image/png");
  assert_string_equal(clif_media_type("a.b/photo.jpeg"), "image/jpeg");
  assert_string_equal(clif_media_type("sales.csv"), "text/csv");
  assert_true(contract_attachment_type_ok(clif_media_type("guide.md")));
  assert_null(clif_media_type("archive.tar.gz"));
  assert_null(clif_media_type("dir.csv/noext"));
  assert_true(clif_is_url("https://example.com/a.png"));
  assert_true(clif_is_url("data:image/png;base64,AAAA"));
  assert_false(clif_is_url("chart.png"));
}

static void test_a_read_is_bounded_and_refuses_empty_files(void **state) {
  (void)state;
  char path[160], err[256];
  snprintf(path, sizeof path, "%s/ten", tmpdir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("0123456789", f);
  fclose(f);
  unsigned char *data = NULL;
  size_t len = 0;
  assert_int_equal(clif_read(path, 10, &data, &len, err, sizeof err), AW_OK);
  assert_int_equal(len, 10);
  assert_memory_equal(data, "0123456789", 10);
  free(data);
  assert_int_equal(clif_read(path, 9, &data, &len, err, sizeof err), AW_ETOOBIG);
  assert_null(data);
  snprintf(path, sizeof path, "%s/empty", tmpdir);
  f = fopen(path, "w");
  fclose(f);
  assert_int_equal(clif_read(path, 10, &data, &len, err, sizeof err), AW_EINVAL);
  assert_int_equal(clif_read(tmpdir, 10, &data, &len, err, sizeof err), AW_EIO);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_an_inline_generated_file_is_saved_under_its_name_with_its_decoded_bytes),
      cmocka_unit_test(test_a_name_that_would_leave_the_directory_is_replaced_by_the_file_id),
      cmocka_unit_test(test_a_symlink_planted_under_the_name_is_not_followed),
      cmocka_unit_test(test_data_that_is_not_base64_fails_and_leaves_no_file),
      cmocka_unit_test(test_an_attach_spec_names_the_path_and_its_tools),
      cmocka_unit_test(test_media_types_come_from_the_extension),
      cmocka_unit_test(test_a_read_is_bounded_and_refuses_empty_files),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}

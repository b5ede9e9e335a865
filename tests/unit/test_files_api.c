/* test_files_api.c -- the Files API client (common/files/files_api.h) and the
 * HTTP layer's multipart uploads and capped downloads under it, against a
 * scripted in-process server: the multipart body, uploads from memory and
 * from a file, never twice after an ambiguous outcome, the error classes,
 * the download cap.  Needs: loopback networking only.  Every test frees the
 * client, runs the loop until its handles closed and checks uv_loop_close
 * (handle leak check); ASan checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "api_client.h"
#include "files_api.h"
#include "log.h"
#include "backend_fixture.h"

typedef struct got {
  int done;
  int err, status, found, uploads;
  size_t bytes;
  char id[96];
  char filename[256];
  long long file_bytes;
  char errmsg[1024];
  char data[8192];
  size_t data_len;
} got;

static void on_done(void *opaque, const fapi_result *r) {
  got *g = opaque;
  g->done = 1;
  g->err = r->err;
  g->status = r->http_status;
  g->found = r->found;
  g->uploads = r->uploads;
  g->bytes = r->bytes;
  snprintf(g->errmsg, sizeof g->errmsg, "%s", r->errmsg);
  if (r->file) {
    snprintf(g->id, sizeof g->id, "%s", r->file->id);
    snprintf(g->filename, sizeof g->filename, "%s", r->file->filename);
    g->file_bytes = r->file->bytes;
  }
  uv_stop(bfx_loop); /* ss_run_until re-checks the flag */
}

static int on_data(void *opaque, const char *d, size_t n) {
  got *g = opaque;
  if (g->data_len + n < sizeof g->data) {
    memcpy(g->data + g->data_len, d, n);
    g->data_len += n;
  }
  return 0;
}

/* Scripted bodies built at run time (created_at: now); the server keeps
 * the pointer, so they outlive the test's route. */
static char g_list_body[2048], g_file_body[512];

/* A file object as the API returns it. */
static const char *file_json(const char *id, const char *name, size_t bytes) {
  snprintf(g_file_body, sizeof g_file_body,
           "{\"id\":\"%s\",\"object\":\"file\",\"bytes\":%zu,\"created_at\":%lld,\"filename\":\"%s\","
           "\"purpose\":\"assistants\",\"status\":\"processed\"}",
           id, bytes, (long long)time(NULL), name);
  return g_file_body;
}

static void upload_mem(bfx *f, const char *name, const char *data, got *g) {
  fapi_upload_opts o;
  fapi_upload_opts_default(&o);
  o.filename = name;
  o.data = data;
  o.len = strlen(data);
  assert_int_equal(fapi_upload(f->api, &o, on_done, g, NULL), AW_OK);
  ss_run_until(&f->loop, &g->done);
}

/* ---- the multipart body ------------------------------------------------------- */

/* The content of the part whose headers contain header: what follows the
 * blank line that ends them (curl may add a Content-Type it guessed). */
static const char *part_content(const char *body, const char *header) {
  const char *h = strstr(body, header);
  assert_non_null(h);
  const char *end = strstr(h, "\r\n\r\n");
  assert_non_null(end);
  return end + 4;
}

static void test_upload_from_memory_sends_a_well_formed_multipart_body(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  const char *content = "line one\nline two: the bytes themselves\n";
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/files");
  ss_add_resp(r, (ss_resp){.status = 200, .body = file_json("file-abc1", "notes.txt", strlen(content))});
  bfx_start(f);
  got g = {0};
  upload_mem(f, "notes.txt", content, &g);
  assert_int_equal(g.err, AW_OK);
  assert_string_equal(g.id, "file-abc1");
  assert_int_equal(g.uploads, 1);

  char *body = ss_last_body(&f->srv, r);
  /* The boundary opens the body, separates the parts and closes it. */
  assert_true(!strncmp(body, "--", 2));
  char boundary[128];
  size_t bl = strcspn(body, "\r\n");
  assert_true(bl > 2 && bl < sizeof boundary);
  memcpy(boundary, body, bl);
  boundary[bl] = '\0';
  char closing[160];
  snprintf(closing, sizeof closing, "\r\n%s--\r\n", boundary);
  size_t n = strlen(body);
  assert_true(n > strlen(closing));
  assert_string_equal(body + n - strlen(closing), closing);
  /* The file part: field name, filename, then exactly the bytes. */
  const char *at = part_content(body, "Content-Disposition: form-data; name=\"file\"; filename=\"notes.txt\"\r\n");
  char expect[512];
  snprintf(expect, sizeof expect, "%s\r\n%s\r\n", content, boundary);
  assert_true(!strncmp(at, expect, strlen(expect)));
  /* The purpose field. */
  snprintf(expect, sizeof expect, "Content-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n%s--",
           boundary);
  assert_non_null(strstr(body, expect));
  free(body);
  bfx_free(f);
}

static void test_upload_from_a_file_streams_its_content_named_by_its_basename(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  char path[] = "/tmp/aw_fapi_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  /* 200 KB: many reads of curl's upload buffer. */
  size_t len = 200 * 1024;
  char *content = malloc(len + 1);
  for (size_t i = 0; i < len; i++) content[i] = (char)('a' + (i * 7 + i / 1000) % 26);
  content[len] = '\0';
  assert_int_equal(write(fd, content, len), (ssize_t)len);
  close(fd);
  const char *base = strrchr(path, '/') + 1;
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/files");
  ss_add_resp(r, (ss_resp){.status = 200, .body = file_json("file-disk1", base, len)});
  bfx_start(f);
  got g = {0};
  char err[256];
  assert_int_equal(fapi_upload_path(f->api, path, "assistants", on_done, &g, NULL, err, sizeof err), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_OK);
  assert_string_equal(g.id, "file-disk1");
  char *body = ss_last_body(&f->srv, r);
  char disp[256];
  snprintf(disp, sizeof disp, "name=\"file\"; filename=\"%s\"\r\n", base);
  const char *at = part_content(body, disp);
  assert_true(strlen(at) > len);
  assert_memory_equal(at, content, len);
  assert_true(!strncmp(at + len, "\r\n--", 4));
  free(body);
  free(content);
  unlink(path);
  bfx_free(f);
}

static void test_upload_of_a_missing_path_fails_before_any_request(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/files");
  bfx_start(f);
  got g = {0};
  char err[256];
  assert_int_equal(fapi_upload_path(f->api, "/nonexistent/aw/file.txt", NULL, on_done, &g, NULL, err, sizeof err),
                   AW_ENOTFOUND);
  assert_non_null(strstr(err, "/nonexistent/aw/file.txt"));
  assert_int_equal(ss_count(&f->srv, r), 0);
  bfx_free(f);
}

/* ---- never twice ---------------------------------------------------------------- */

static void test_upload_after_429_is_sent_again_whole(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  const char *content = "retried content, every byte of it";
  ss_route *r = ss_route_add(&f->srv, "POST", "/v1/files");
  ss_add_resp(r, (ss_resp){.status = 429, .body = "{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit\"}}"});
  ss_add_resp(r, (ss_resp){.status = 200, .body = file_json("file-r1", "r.txt", strlen(content))});
  bfx_start(f);
  got g = {0};
  upload_mem(f, "r.txt", content, &g);
  assert_int_equal(g.err, AW_OK);
  assert_int_equal(ss_count(&f->srv, r), 2);
  char *body = ss_last_body(&f->srv, r);
  const char *at = part_content(body, "filename=\"r.txt\"\r\n");
  char expect[256];
  snprintf(expect, sizeof expect, "%s\r\n--", content);
  assert_true(!strncmp(at, expect, strlen(expect))); /* the retry rewound the content */
  free(body);
  bfx_free(f);
}

static void test_ambiguous_500_after_the_server_stored_the_file_does_not_upload_twice(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  const char *content = "stored before the 500";
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/files");
  ss_add_resp(post, (ss_resp){.status = 500, .body = "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}"});
  ss_add_resp(post, (ss_resp){.status = 200, .body = "{\"id\":\"file-second\",\"object\":\"file\",\"bytes\":1,"
                                                     "\"created_at\":1,\"filename\":\"x\",\"purpose\":\"assistants\"}"});
  long long now = (long long)time(NULL);
  /* Newest first: an older file of the same name and another size, then ours. */
  snprintf(g_list_body, sizeof g_list_body,
           "{\"object\":\"list\",\"data\":["
           "{\"id\":\"file-other\",\"object\":\"file\",\"bytes\":%zu,\"created_at\":%lld,\"filename\":\"doc.md\","
           "\"purpose\":\"assistants\",\"status\":\"processed\"},"
           "{\"id\":\"file-ours\",\"object\":\"file\",\"bytes\":%zu,\"created_at\":%lld,\"filename\":\"doc.md\","
           "\"purpose\":\"assistants\",\"status\":\"processed\"}],"
           "\"first_id\":\"file-other\",\"last_id\":\"file-ours\",\"has_more\":false}",
           strlen(content) + 1, now, strlen(content), now);
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/files");
  ss_add_resp(list, (ss_resp){.status = 200, .body = g_list_body});
  bfx_start(f);
  got g = {0};
  upload_mem(f, "doc.md", content, &g);
  assert_int_equal(g.err, AW_OK);
  assert_int_equal(g.found, 1);
  assert_string_equal(g.id, "file-ours");
  assert_int_equal(ss_count(&f->srv, post), 1); /* never sent again */
  assert_int_equal(ss_count(&f->srv, list), 1);
  char *q = ss_last_query(&f->srv, list);
  assert_non_null(strstr(q, "purpose=assistants"));
  assert_non_null(strstr(q, "order=desc"));
  free(q);
  bfx_free(f);
}

static void test_ambiguous_500_before_storing_uploads_again(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  const char *content = "not stored by the first attempt";
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/files");
  ss_add_resp(post, (ss_resp){.status = 500, .body = "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}"});
  ss_add_resp(post, (ss_resp){.status = 200, .body = file_json("file-2nd", "doc.md", strlen(content))});
  /* Only a file of the same name with another size, and one too old. */
  snprintf(g_list_body, sizeof g_list_body,
           "{\"object\":\"list\",\"data\":["
           "{\"id\":\"file-other\",\"object\":\"file\",\"bytes\":%zu,\"created_at\":%lld,\"filename\":\"doc.md\","
           "\"purpose\":\"assistants\"},"
           "{\"id\":\"file-old\",\"object\":\"file\",\"bytes\":%zu,\"created_at\":1000,\"filename\":\"doc.md\","
           "\"purpose\":\"assistants\"}],\"first_id\":\"file-other\",\"last_id\":\"file-old\",\"has_more\":false}",
           strlen(content) + 5, (long long)time(NULL), strlen(content));
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/files");
  ss_add_resp(list, (ss_resp){.status = 200, .body = g_list_body});
  bfx_start(f);
  got g = {0};
  upload_mem(f, "doc.md", content, &g);
  assert_int_equal(g.err, AW_OK);
  assert_int_equal(g.found, 0);
  assert_string_equal(g.id, "file-2nd");
  assert_int_equal(g.uploads, 2);
  assert_int_equal(ss_count(&f->srv, post), 2);
  assert_int_equal(ss_count(&f->srv, list), 1);
  bfx_free(f);
}

static void test_upload_whose_outcome_stays_unknown_ends_ambiguous_after_the_bound(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/files");
  ss_add_resp(post, (ss_resp){.status = 503, .body = "{\"error\":{\"message\":\"down\",\"type\":\"server_error\"}}"});
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/files");
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[],\"first_id\":null,"
                                                     "\"last_id\":null,\"has_more\":false}"});
  bfx_start(f);
  got g = {0};
  upload_mem(f, "x.txt", "x", &g);
  assert_int_equal(g.err, AW_EAMBIGUOUS);
  assert_int_equal(aw_error_classify(g.err), AW_CLASS_RETRY);
  assert_int_equal(ss_count(&f->srv, post), 3); /* 1 + max_ambiguous (2) */
  assert_int_equal(ss_count(&f->srv, list), 3);
  assert_non_null(strstr(g.errmsg, "x.txt"));
  bfx_free(f);
}

/* The server takes the upload on a reused keep-alive connection and closes
 * it without answering.  libcurl on its own rewinds a MIME body and sends it
 * again on a fresh connection (its hidden retry); the upload must instead
 * be sent once, end ambiguous, and be found by the lookup. */
static void test_upload_on_a_reused_connection_that_dies_is_sent_once(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  const char *content = "taken, then the connection died";
  ss_route *get = ss_route_add(&f->srv, "GET", "/v1/files/file-warm");
  ss_add_resp(get, (ss_resp){.status = 200, .body = file_json("file-warm", "w.txt", 1)});
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/files");
  ss_add_resp(post, (ss_resp){.mode = SS_CLOSE});
  ss_add_resp(post, (ss_resp){.status = 200, .body = "{\"id\":\"file-twice\",\"object\":\"file\",\"bytes\":1,"
                                                     "\"created_at\":1,\"filename\":\"x\",\"purpose\":\"assistants\"}"});
  snprintf(g_list_body, sizeof g_list_body,
           "{\"object\":\"list\",\"data\":[{\"id\":\"file-once\",\"object\":\"file\",\"bytes\":%zu,"
           "\"created_at\":%lld,\"filename\":\"d.txt\",\"purpose\":\"assistants\"}],"
           "\"first_id\":\"file-once\",\"last_id\":\"file-once\",\"has_more\":false}",
           strlen(content), (long long)time(NULL));
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/files");
  ss_add_resp(list, (ss_resp){.status = 200, .body = g_list_body});
  bfx_start(f);
  got w = {0};
  /* A first request leaves a keep-alive connection for the upload to reuse. */
  assert_int_equal(fapi_retrieve(f->api, "file-warm", on_done, &w, NULL), AW_OK);
  ss_run_until(&f->loop, &w.done);
  assert_int_equal(w.err, AW_OK);
  got g = {0};
  upload_mem(f, "d.txt", content, &g);
  assert_int_equal(g.err, AW_OK);
  assert_int_equal(g.found, 1);
  assert_string_equal(g.id, "file-once");
  assert_int_equal(ss_count(&f->srv, post), 1);
  bfx_free(f);
}

/* ---- error classes ---------------------------------------------------------------- */

static void test_upload_errors_carry_their_class(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/files");
  ss_add_resp(post, (ss_resp){.status = 413, .body = "{\"error\":{\"message\":\"too big\",\"type\":\"invalid_request_error\"}}"});
  ss_add_resp(post, (ss_resp){.status = 400, .body = "{\"error\":{\"message\":\"bad purpose\",\"type\":\"invalid_request_error\"}}"});
  ss_add_resp(post, (ss_resp){.status = 401, .body = "{\"error\":{\"message\":\"bad key\",\"type\":\"invalid_request_error\"}}"});
  bfx_start(f);
  got a = {0}, b = {0}, c = {0};
  upload_mem(f, "a.txt", "a", &a);
  assert_int_equal(a.err, AW_ETOOBIG);
  assert_int_equal(aw_error_classify(a.err), AW_CLASS_REJECT);
  assert_non_null(strstr(a.errmsg, "file too large"));
  upload_mem(f, "b.txt", "b", &b);
  assert_int_equal(b.err, AW_EHTTP4XX);
  assert_int_equal(aw_error_classify(b.err), AW_CLASS_REJECT);
  assert_non_null(strstr(b.errmsg, "bad purpose"));
  upload_mem(f, "c.txt", "c", &c);
  assert_int_equal(aw_error_classify(c.err), AW_CLASS_FATAL);
  assert_null(strstr(c.errmsg, "sk-test"));
  assert_int_equal(ss_count(&f->srv, post), 3); /* none retried */
  bfx_free(f);
}

/* ---- downloads ---------------------------------------------------------------------- */

static char big_body[10001];

static void test_download_streams_the_content_to_a_descriptor(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  for (size_t i = 0; i < sizeof big_body - 1; i++) big_body[i] = (char)('A' + i % 23);
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/files/file-d1/content");
  ss_add_resp(r, (ss_resp){.status = 200, .body = big_body, .ctype = "application/octet-stream", .mode = SS_CHUNKED, .chunk = 1000});
  bfx_start(f);
  char path[] = "/tmp/aw_fapi_dl_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  got g = {0};
  assert_int_equal(fapi_download(f->api, "file-d1", fd, NULL, NULL, 0, on_done, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_OK);
  assert_int_equal(g.bytes, sizeof big_body - 1);
  char back[sizeof big_body];
  assert_int_equal(pread(fd, back, sizeof back, 0), (ssize_t)(sizeof big_body - 1));
  assert_memory_equal(back, big_body, sizeof big_body - 1);
  close(fd);
  unlink(path);
  bfx_free(f);
}

static void test_download_over_the_cap_stops_with_etoobig(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  for (size_t i = 0; i < sizeof big_body - 1; i++) big_body[i] = (char)('A' + i % 23);
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/files/file-d2/content");
  ss_add_resp(r, (ss_resp){.status = 200, .body = big_body, .ctype = "application/octet-stream", .mode = SS_CHUNKED, .chunk = 1000});
  bfx_start(f);
  got g = {0};
  assert_int_equal(fapi_download(f->api, "file-d2", -1, on_data, &g, 4096, on_done, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_ETOOBIG);
  assert_true(g.data_len <= 4096);
  assert_memory_equal(g.data, big_body, g.data_len);
  bfx_free(f);
}

static void test_download_of_an_unknown_file_is_not_found(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *r = ss_route_add(&f->srv, "GET", "/v1/files/file-none/content");
  ss_add_resp(r, (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"No such File object: file-none\",\"type\":\"invalid_request_error\"}}"});
  bfx_start(f);
  got g = {0};
  assert_int_equal(fapi_download(f->api, "file-none", -1, on_data, &g, 0, on_done, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_ENOTFOUND);
  assert_int_equal(g.data_len, 0);
  assert_non_null(strstr(g.errmsg, "No such File object"));
  assert_int_equal(fapi_download(f->api, "../etc", -1, on_data, &g, 0, on_done, &g, NULL), AW_EINVAL);
  bfx_free(f);
}

int main(void) {
  log_set_level(LOG_OFF);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_upload_from_memory_sends_a_well_formed_multipart_body),
      cmocka_unit_test(test_upload_from_a_file_streams_its_content_named_by_its_basename),
      cmocka_unit_test(test_upload_of_a_missing_path_fails_before_any_request),
      cmocka_unit_test(test_upload_after_429_is_sent_again_whole),
      cmocka_unit_test(test_ambiguous_500_after_the_server_stored_the_file_does_not_upload_twice),
      cmocka_unit_test(test_ambiguous_500_before_storing_uploads_again),
      cmocka_unit_test(test_upload_on_a_reused_connection_that_dies_is_sent_once),
      cmocka_unit_test(test_upload_whose_outcome_stays_unknown_ends_ambiguous_after_the_bound),
      cmocka_unit_test(test_upload_errors_carry_their_class),
      cmocka_unit_test(test_download_streams_the_content_to_a_descriptor),
      cmocka_unit_test(test_download_over_the_cap_stops_with_etoobig),
      cmocka_unit_test(test_download_of_an_unknown_file_is_not_found),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

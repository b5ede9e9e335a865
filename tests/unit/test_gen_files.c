/* test_gen_files.c -- the generated-files fetcher (common/files/gen_files.h)
 * and the container client under it (containers.h), against the scripted
 * in-process server: inline under the cap, by reference over it or when
 * the file grew past it while downloading, a failed metadata fetch listed
 * by reference and counted, container files, dedupe, GF_MAX_FILES, and
 * gf_free inside the callback and while a fetch runs.  Needs: loopback
 * networking only.  bfx_free checks that every request matched a route and
 * that the loop closes (handle leak check); ASan checks memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <time.h>
#include <unistd.h>

#include "api_client.h"
#include "containers.h"
#include "files_api.h"
#include "gen_files.h"
#include "log.h"
#include "backend_fixture.h"

/* What a callback saw, copied (the result is valid only during it). */
typedef struct gfile {
  char file_id[96], container_id[96], filename[256], media_type[96];
  int has_container;
  long long bytes;
  int is_inline;
  char data[1024];
  size_t data_len;
} gfile;

typedef struct got {
  int done, calls;
  size_t nfiles, failed, dropped;
  gfile files[GF_MAX_FILES];
  gf_fetch **free_me; /* gf_free this inside the callback */
} got;

static void on_gf_done(void *opaque, const gf_result *r) {
  got *g = opaque;
  g->calls++;
  g->done = 1;
  g->nfiles = r->nfiles;
  g->failed = r->failed;
  g->dropped = r->dropped;
  for (size_t i = 0; i < r->nfiles && i < GF_MAX_FILES; i++) {
    const contract_file *cf = &r->files[i];
    gfile *o = &g->files[i];
    snprintf(o->file_id, sizeof o->file_id, "%s", cf->file_id);
    o->has_container = cf->container_id != NULL;
    snprintf(o->container_id, sizeof o->container_id, "%s", cf->container_id ? cf->container_id : "");
    snprintf(o->filename, sizeof o->filename, "%s", cf->filename ? cf->filename : "");
    snprintf(o->media_type, sizeof o->media_type, "%s", cf->media_type ? cf->media_type : "");
    o->bytes = cf->bytes;
    o->is_inline = cf->data != NULL;
    o->data_len = cf->data_len;
    if (cf->data && cf->data_len <= sizeof o->data) memcpy(o->data, cf->data, cf->data_len);
  }
  if (g->free_me) {
    gf_free(*g->free_me);
    *g->free_me = NULL;
  }
  uv_stop(bfx_loop);
}

/* Scripted bodies outlive their routes (the server keeps the pointers). */
static char bodies[40][1024];
static int nbodies;

static const char *file_json(const char *id, const char *name, long long bytes) {
  char *b = bodies[nbodies++ % 40];
  snprintf(b, sizeof bodies[0],
           "{\"id\":\"%s\",\"object\":\"file\",\"bytes\":%lld,\"created_at\":%lld,\"filename\":\"%s\","
           "\"purpose\":\"assistants_output\",\"status\":\"processed\"}",
           id, bytes, (long long)time(NULL), name);
  return b;
}

static const char *cfile_json(const char *cntr, const char *id, const char *path, long long bytes) {
  char *b = bodies[nbodies++ % 40];
  if (bytes < 0) /* a server that leaves bytes out */
    snprintf(b, sizeof bodies[0],
             "{\"id\":\"%s\",\"object\":\"container.file\",\"created_at\":%lld,\"container_id\":\"%s\","
             "\"path\":\"%s\",\"source\":\"assistant\"}",
             id, (long long)time(NULL), cntr, path);
  else
    snprintf(b, sizeof bodies[0],
             "{\"id\":\"%s\",\"object\":\"container.file\",\"created_at\":%lld,\"bytes\":%lld,"
             "\"container_id\":\"%s\",\"path\":\"%s\",\"source\":\"assistant\"}",
             id, (long long)time(NULL), bytes, cntr, path);
  return b;
}

static const char *NOT_FOUND = "{\"error\":{\"message\":\"No such File object\",\"type\":\"invalid_request_error\"}}";

static ss_route *meta_route(bfx *f, const char *path, const char *body) {
  return ss_add_resp(ss_route_add(&f->srv, "GET", path), (ss_resp){.status = 200, .body = body});
}

static ss_route *content_route(bfx *f, const char *path, const char *content) {
  return ss_add_resp(ss_route_add(&f->srv, "GET", path),
                     (ss_resp){.status = 200, .body = content, .ctype = "application/octet-stream",
                               .mode = SS_CHUNKED, .chunk = 64});
}

/* Start a fetch and run the loop until its callback. */
static void fetch(bfx *f, const gf_ref *refs, size_t n, size_t inline_max, got *g) {
  gf_fetch *gf = NULL;
  assert_int_equal(gf_start(f->api, refs, n, inline_max, on_gf_done, g, &gf), AW_OK);
  assert_int_equal(g->calls, 0); /* never inside the call */
  ss_run_until(&f->loop, &g->done);
  assert_int_equal(g->calls, 1);
  gf_free(gf);
}

static char big[301];

static void fill_big(void) {
  for (size_t i = 0; i < sizeof big - 1; i++) big[i] = (char)('a' + i % 26);
}

/* ---- inline, by reference --------------------------------------------------------- */

static void test_a_file_under_the_cap_comes_inline_with_its_name_size_and_media_type(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  const char *content = "\x89PNG fake chart bytes";
  meta_route(f, "/v1/files/file-a1", file_json("file-a1", "/mnt/data/chart.png", (long long)strlen(content)));
  ss_route *c = content_route(f, "/v1/files/file-a1/content", content);
  bfx_start(f);
  got g = {0};
  gf_ref refs[] = {{.file_id = "file-a1"}};
  fetch(f, refs, 1, 100, &g);
  assert_int_equal(g.nfiles, 1);
  assert_int_equal(g.failed, 0);
  assert_string_equal(g.files[0].file_id, "file-a1");
  assert_false(g.files[0].has_container);
  assert_string_equal(g.files[0].filename, "chart.png");
  assert_string_equal(g.files[0].media_type, "image/png");
  assert_int_equal(g.files[0].bytes, strlen(content));
  assert_true(g.files[0].is_inline);
  assert_int_equal(g.files[0].data_len, strlen(content));
  assert_memory_equal(g.files[0].data, content, strlen(content));
  assert_int_equal(ss_count(&f->srv, c), 1);
  bfx_free(f);
}

static void test_a_file_over_the_cap_is_listed_by_reference_without_downloading_it(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  fill_big();
  meta_route(f, "/v1/files/file-b1", file_json("file-b1", "summary.csv", 300));
  ss_route *c = content_route(f, "/v1/files/file-b1/content", big);
  bfx_start(f);
  got g = {0};
  gf_ref refs[] = {{.file_id = "file-b1"}};
  fetch(f, refs, 1, 100, &g);
  assert_int_equal(g.nfiles, 1);
  assert_int_equal(g.failed, 0);
  assert_false(g.files[0].is_inline);
  assert_int_equal(g.files[0].bytes, 300);
  assert_string_equal(g.files[0].filename, "summary.csv");
  assert_string_equal(g.files[0].media_type, "text/csv");
  assert_int_equal(ss_count(&f->srv, c), 0);
  bfx_free(f);
}

static void test_a_file_that_grew_past_the_cap_while_downloading_is_listed_by_reference(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  fill_big();
  /* The metadata says 10 bytes; the content is 300 by the time it is read. */
  meta_route(f, "/v1/files/file-g1", file_json("file-g1", "log.txt", 10));
  ss_route *c = content_route(f, "/v1/files/file-g1/content", big);
  bfx_start(f);
  got g = {0};
  gf_ref refs[] = {{.file_id = "file-g1"}};
  fetch(f, refs, 1, 100, &g);
  assert_int_equal(g.nfiles, 1);
  assert_false(g.files[0].is_inline);
  assert_int_equal(g.files[0].data_len, 0);
  assert_int_equal(g.files[0].bytes, -1); /* the metadata's size is stale: unknown */
  assert_int_equal(g.failed, 0);          /* by design, not a failure */
  assert_int_equal(ss_count(&f->srv, c), 1); /* stopped at the cap, not retried */
  bfx_free(f);
}

static void test_metadata_404_lists_the_file_by_reference_counts_it_failed_and_goes_on(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *m = ss_add_resp(ss_route_add(&f->srv, "GET", "/v1/files/file-gone"),
                            (ss_resp){.status = 404, .body = NOT_FOUND});
  ss_route *c = content_route(f, "/v1/files/file-gone/content", "never read");
  meta_route(f, "/v1/files/file-ok", file_json("file-ok", "notes.md", 5));
  content_route(f, "/v1/files/file-ok/content", "hello");
  bfx_start(f);
  got g = {0};
  gf_ref refs[] = {{.file_id = "file-gone", .filename = "report.csv"}, {.file_id = "file-ok"}};
  fetch(f, refs, 2, 100, &g);
  assert_int_equal(g.nfiles, 2);
  assert_int_equal(g.failed, 1);
  assert_string_equal(g.files[0].file_id, "file-gone");
  assert_string_equal(g.files[0].filename, "report.csv"); /* what the annotation said */
  assert_string_equal(g.files[0].media_type, "text/csv");
  assert_int_equal(g.files[0].bytes, -1);
  assert_false(g.files[0].is_inline);
  assert_int_equal(ss_count(&f->srv, m), 1); /* a 404 is not retried */
  assert_int_equal(ss_count(&f->srv, c), 0);
  assert_true(g.files[1].is_inline);
  assert_memory_equal(g.files[1].data, "hello", 5);
  assert_string_equal(g.files[1].media_type, "text/markdown");
  bfx_free(f);
}

static void test_a_content_download_that_fails_lists_the_file_by_reference_and_counts_it(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  meta_route(f, "/v1/files/file-c5", file_json("file-c5", "a.json", 4));
  ss_route *c = ss_add_resp(ss_route_add(&f->srv, "GET", "/v1/files/file-c5/content"),
                            (ss_resp){.status = 404, .body = NOT_FOUND});
  bfx_start(f);
  got g = {0};
  gf_ref refs[] = {{.file_id = "file-c5"}};
  fetch(f, refs, 1, 100, &g);
  assert_int_equal(g.nfiles, 1);
  assert_int_equal(g.failed, 1);
  assert_false(g.files[0].is_inline);
  assert_int_equal(g.files[0].bytes, 4);
  assert_string_equal(g.files[0].media_type, "application/json");
  assert_int_equal(ss_count(&f->srv, c), 1);
  bfx_free(f);
}

static void test_inline_max_zero_fetches_metadata_only(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  meta_route(f, "/v1/files/file-z1", file_json("file-z1", "tiny.txt", 3));
  ss_route *c = content_route(f, "/v1/files/file-z1/content", "abc");
  bfx_start(f);
  got g = {0};
  gf_ref refs[] = {{.file_id = "file-z1"}};
  fetch(f, refs, 1, 0, &g);
  assert_int_equal(g.nfiles, 1);
  assert_false(g.files[0].is_inline);
  assert_int_equal(g.files[0].bytes, 3);
  assert_int_equal(ss_count(&f->srv, c), 0);
  bfx_free(f);
}

/* ---- containers ----------------------------------------------------------------------- */

static void test_container_files_are_fetched_from_their_container_named_by_their_path(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  meta_route(f, "/v1/containers/cntr_1/files/cfile_1",
             cfile_json("cntr_1", "cfile_1", "/mnt/data/summary.csv", 12));
  ss_route *c1 = content_route(f, "/v1/containers/cntr_1/files/cfile_1/content", "region,total\n");
  /* A server that leaves bytes out: downloaded with the cap, inline when it fits. */
  meta_route(f, "/v1/containers/cntr_1/files/cfile_2", cfile_json("cntr_1", "cfile_2", "/mnt/data/chart.png", -1));
  content_route(f, "/v1/containers/cntr_1/files/cfile_2/content", "PNG");
  bfx_start(f);
  got g = {0};
  gf_ref refs[] = {{.file_id = "cfile_1", .container_id = "cntr_1"},
                   {.file_id = "cfile_2", .container_id = "cntr_1", .filename = "chart.png"}};
  fetch(f, refs, 2, 100, &g);
  assert_int_equal(g.nfiles, 2);
  assert_int_equal(g.failed, 0);
  assert_true(g.files[0].has_container);
  assert_string_equal(g.files[0].container_id, "cntr_1");
  assert_string_equal(g.files[0].filename, "summary.csv");
  assert_string_equal(g.files[0].media_type, "text/csv");
  assert_true(g.files[0].is_inline);
  assert_int_equal(g.files[0].bytes, 13); /* what was read, not the metadata's 12 */
  assert_memory_equal(g.files[0].data, "region,total\n", 13);
  assert_int_equal(ss_count(&f->srv, c1), 1);
  assert_true(g.files[1].is_inline);
  assert_int_equal(g.files[1].bytes, 3);
  assert_string_equal(g.files[1].media_type, "image/png");
  bfx_free(f);
}

/* ---- dedupe, the bound ------------------------------------------------------------------ */

static void test_refs_naming_the_same_file_twice_fetch_and_list_it_once(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *ma = meta_route(f, "/v1/files/file-d1", file_json("file-d1", "a.txt", 1));
  ss_route *ca = content_route(f, "/v1/files/file-d1/content", "A");
  meta_route(f, "/v1/files/file-d2", file_json("file-d2", "b.txt", 1));
  content_route(f, "/v1/files/file-d2/content", "B");
  bfx_start(f);
  got g = {0};
  gf_ref refs[] = {{.file_id = "file-d1"}, {.file_id = "file-d2"}, {.file_id = "file-d1", .filename = "a.txt"}};
  fetch(f, refs, 3, 100, &g);
  assert_int_equal(g.nfiles, 2);
  assert_string_equal(g.files[0].file_id, "file-d1");
  assert_string_equal(g.files[1].file_id, "file-d2");
  assert_int_equal(ss_count(&f->srv, ma), 1);
  assert_int_equal(ss_count(&f->srv, ca), 1);
  bfx_free(f);
}

static char ids[GF_MAX_FILES + 2][32], paths[GF_MAX_FILES + 2][64];

static void test_refs_beyond_gf_max_files_are_dropped_and_counted(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  gf_ref refs[GF_MAX_FILES + 2];
  ss_route *last = NULL;
  for (int i = 0; i < GF_MAX_FILES + 2; i++) {
    snprintf(ids[i], sizeof ids[i], "file-m%d", i);
    snprintf(paths[i], sizeof paths[i], "/v1/files/file-m%d", i);
    /* Routes for the first GF_MAX_FILES only: a request for the others
     * would be unmatched, which bfx_free fails. */
    if (i < GF_MAX_FILES) last = meta_route(f, paths[i], file_json(ids[i], "x.bin", 7));
    refs[i] = (gf_ref){.file_id = ids[i]};
  }
  bfx_start(f);
  got g = {0};
  fetch(f, refs, GF_MAX_FILES + 2, 0, &g);
  assert_int_equal(g.nfiles, GF_MAX_FILES);
  assert_int_equal(g.dropped, 2);
  assert_int_equal(g.failed, 0);
  assert_string_equal(g.files[GF_MAX_FILES - 1].file_id, ids[GF_MAX_FILES - 1]);
  assert_string_equal(g.files[0].media_type, "application/octet-stream");
  assert_int_equal(ss_count(&f->srv, last), 1);
  bfx_free(f);
}

static void test_no_refs_call_back_on_a_later_iteration_with_an_empty_list(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  bfx_start(f);
  got g = {0};
  fetch(f, NULL, 0, 100, &g);
  assert_int_equal(g.nfiles, 0);
  assert_int_equal(g.failed + g.dropped, 0);
  bfx_free(f);
}

static void test_invalid_refs_are_refused_before_any_request(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  bfx_start(f);
  got g = {0};
  gf_fetch *gf = NULL;
  gf_ref no_id[] = {{.file_id = NULL}};
  gf_ref bad_id[] = {{.file_id = "../etc/passwd"}};
  gf_ref bad_cntr[] = {{.file_id = "cfile_1", .container_id = "cntr/1"}};
  assert_int_equal(gf_start(f->api, no_id, 1, 100, on_gf_done, &g, &gf), AW_EINVAL);
  assert_int_equal(gf_start(f->api, bad_id, 1, 100, on_gf_done, &g, &gf), AW_EINVAL);
  assert_int_equal(gf_start(f->api, bad_cntr, 1, 100, on_gf_done, &g, &gf), AW_EINVAL);
  assert_null(gf);
  assert_int_equal(g.calls, 0);
  bfx_free(f);
}

/* ---- gf_free ------------------------------------------------------------------------------ */

static void test_gf_free_inside_the_callback_is_safe(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  meta_route(f, "/v1/files/file-f1", file_json("file-f1", "a.txt", 2));
  content_route(f, "/v1/files/file-f1/content", "hi");
  bfx_start(f);
  got g = {0};
  gf_fetch *gf = NULL;
  g.free_me = &gf;
  gf_ref refs[] = {{.file_id = "file-f1"}};
  assert_int_equal(gf_start(f->api, refs, 1, 100, on_gf_done, &g, &gf), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.calls, 1);
  assert_null(gf);
  assert_true(g.files[0].is_inline);
  bfx_free(f); /* runs the loop: the deferred release happens there (ASan) */
}

typedef struct probe {
  int done;
} probe;

static void on_probe(void *opaque, const fapi_result *r) {
  (void)r;
  ((probe *)opaque)->done = 1;
  uv_stop(bfx_loop);
}

static void test_gf_free_while_running_cancels_with_no_callback(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  meta_route(f, "/v1/files/file-h1", file_json("file-h1", "a.txt", 20));
  /* The content hangs after its first bytes: the download is in flight. */
  ss_route *c = ss_add_resp(ss_route_add(&f->srv, "GET", "/v1/files/file-h1/content"),
                            (ss_resp){.status = 200, .body = "first bytes", .mode = SS_HANG});
  ss_route *p = meta_route(f, "/v1/files/file-p1", file_json("file-p1", "p.txt", 1));
  bfx_start(f);
  got g = {0};
  gf_fetch *gf = NULL;
  gf_ref refs[] = {{.file_id = "file-h1"}};
  /* Freed before its first step ran. */
  assert_int_equal(gf_start(f->api, refs, 1, 100, on_gf_done, &g, &gf), AW_OK);
  gf_free(gf);
  /* Freed while the content download is in flight. */
  assert_int_equal(gf_start(f->api, refs, 1, 100, on_gf_done, &g, &gf), AW_OK);
  probe pr = {0};
  while (ss_count(&f->srv, c) < 1) { /* poll the server's counter, the loop doing the I/O */
    pr.done = 0;
    assert_int_equal(fapi_retrieve(f->api, "file-p1", on_probe, &pr, NULL), AW_OK);
    ss_run_until(&f->loop, &pr.done);
  }
  gf_free(gf);
  /* Another call completes after the free: a late callback would have come by now. */
  pr.done = 0;
  assert_int_equal(fapi_retrieve(f->api, "file-p1", on_probe, &pr, NULL), AW_OK);
  ss_run_until(&f->loop, &pr.done);
  assert_true(ss_count(&f->srv, p) >= 1);
  assert_int_equal(g.calls, 0);
  assert_int_equal(api_client_pending(f->api), 0);
  bfx_free(f);
}

/* ---- media types, the container client ------------------------------------------------------ */

static void test_media_type_comes_from_the_extension_case_insensitively(void **state) {
  (void)state;
  assert_string_equal(gf_media_type("chart.PNG"), "image/png");
  assert_string_equal(gf_media_type("a.jpeg"), "image/jpeg");
  assert_string_equal(gf_media_type("b.webp"), "image/webp");
  assert_string_equal(gf_media_type("t.xlsx"), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet");
  assert_string_equal(gf_media_type("a.tar.gz"), "application/octet-stream");
  assert_string_equal(gf_media_type("noext"), "application/octet-stream");
  assert_string_equal(gf_media_type("dir.csv/file"), "application/octet-stream");
  assert_string_equal(gf_media_type(NULL), "application/octet-stream");
}

typedef struct cgot {
  int done, err, status;
  ctr_file file;
  int has_file;
  size_t bytes;
  char json[1024];
  char errmsg[512];
} cgot;

static void on_ctr(void *opaque, const ctr_result *r) {
  cgot *g = opaque;
  g->done = 1;
  g->err = r->err;
  g->status = r->http_status;
  g->bytes = r->bytes;
  snprintf(g->errmsg, sizeof g->errmsg, "%s", r->errmsg);
  if (r->file) g->file = *r->file, g->has_file = 1;
  if (r->json) {
    char *s = cJSON_PrintUnformatted(r->json);
    snprintf(g->json, sizeof g->json, "%s", s ? s : "");
    free(s);
  }
  uv_stop(bfx_loop);
}

static void test_container_client_retrieves_lists_and_downloads_with_the_spec_shapes(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  meta_route(f, "/v1/containers/cntr_9/files/cfile_9", cfile_json("cntr_9", "cfile_9", "/mnt/data/out/r.csv", 6));
  ss_route *l = ss_add_resp(ss_route_add(&f->srv, "GET", "/v1/containers/cntr_9/files"),
                            (ss_resp){.status = 200,
                                      .body = "{\"object\":\"list\",\"data\":[],\"first_id\":\"\",\"last_id\":\"\","
                                              "\"has_more\":false}"});
  content_route(f, "/v1/containers/cntr_9/files/cfile_9/content", "a,b\n1,2");
  meta_route(f, "/v1/containers/cntr_9/files/cfile_8", cfile_json("cntr_9", "cfile_8", "/mnt/data/n.txt", -1));
  ss_add_resp(ss_route_add(&f->srv, "GET", "/v1/containers/cntr_x/files/cfile_9"),
              (ss_resp){.status = 404, .body = "{\"error\":{\"message\":\"Container not found\",\"type\":\"invalid_request_error\"}}"});
  bfx_start(f);

  cgot g = {0};
  assert_int_equal(ctr_retrieve(f->api, "cntr_9", "cfile_9", on_ctr, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_OK);
  assert_true(g.has_file);
  assert_string_equal(g.file.id, "cfile_9");
  assert_string_equal(g.file.container_id, "cntr_9");
  assert_string_equal(g.file.path, "/mnt/data/out/r.csv");
  assert_string_equal(ctr_file_name(&g.file), "r.csv");
  assert_string_equal(g.file.source, "assistant");
  assert_int_equal(g.file.bytes, 6);

  memset(&g, 0, sizeof g); /* bytes left out (a compatible server): unknown, not 0 */
  assert_int_equal(ctr_retrieve(f->api, "cntr_9", "cfile_8", on_ctr, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_OK);
  assert_int_equal(g.file.bytes, -1);

  memset(&g, 0, sizeof g);
  assert_int_equal(ctr_list(f->api, "cntr_9", 100, "asc", "cfile_1", on_ctr, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_OK);
  assert_false(g.has_file);
  assert_non_null(strstr(g.json, "\"object\":\"list\""));
  bfx_expect_query(f, l, "limit=100&order=asc&after=cfile_1");
  assert_int_equal(ctr_list(f->api, "cntr_9", 101, NULL, NULL, on_ctr, &g, NULL), AW_EINVAL);

  char path[] = "/tmp/aw_ctr_dl_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  memset(&g, 0, sizeof g);
  assert_int_equal(ctr_download(f->api, "cntr_9", "cfile_9", fd, NULL, NULL, 0, on_ctr, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_OK);
  assert_int_equal(g.bytes, 7);
  char back[16] = {0};
  assert_int_equal(pread(fd, back, sizeof back, 0), 7);
  assert_string_equal(back, "a,b\n1,2");
  close(fd);
  unlink(path);

  memset(&g, 0, sizeof g);
  assert_int_equal(ctr_retrieve(f->api, "cntr_x", "cfile_9", on_ctr, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_ENOTFOUND);
  assert_non_null(strstr(g.errmsg, "Container not found"));
  assert_int_equal(ctr_retrieve(f->api, "../x", "cfile_9", on_ctr, &g, NULL), AW_EINVAL);
  bfx_free(f);
}

int main(void) {
  log_set_level(LOG_OFF);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_a_file_under_the_cap_comes_inline_with_its_name_size_and_media_type),
      cmocka_unit_test(test_a_file_over_the_cap_is_listed_by_reference_without_downloading_it),
      cmocka_unit_test(test_a_file_that_grew_past_the_cap_while_downloading_is_listed_by_reference),
      cmocka_unit_test(test_metadata_404_lists_the_file_by_reference_counts_it_failed_and_goes_on),
      cmocka_unit_test(test_a_content_download_that_fails_lists_the_file_by_reference_and_counts_it),
      cmocka_unit_test(test_inline_max_zero_fetches_metadata_only),
      cmocka_unit_test(test_container_files_are_fetched_from_their_container_named_by_their_path),
      cmocka_unit_test(test_refs_naming_the_same_file_twice_fetch_and_list_it_once),
      cmocka_unit_test(test_refs_beyond_gf_max_files_are_dropped_and_counted),
      cmocka_unit_test(test_no_refs_call_back_on_a_later_iteration_with_an_empty_list),
      cmocka_unit_test(test_invalid_refs_are_refused_before_any_request),
      cmocka_unit_test(test_gf_free_inside_the_callback_is_safe),
      cmocka_unit_test(test_gf_free_while_running_cancels_with_no_callback),
      cmocka_unit_test(test_media_type_comes_from_the_extension_case_insensitively),
      cmocka_unit_test(test_container_client_retrieves_lists_and_downloads_with_the_spec_shapes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

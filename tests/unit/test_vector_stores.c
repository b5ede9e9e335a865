/* test_vector_stores.c -- the Vector Stores API client
 * (common/files/vector_stores.h) against a scripted in-process server:
 * creation never twice (found by its key after an ambiguous outcome), the
 * request bodies, and the wait for a store's or batch's files: completed,
 * failed (naming each failed file and its last_error), and the deadline.
 * Needs: loopback networking only.  Every test frees the client, runs the
 * loop until its handles closed and checks uv_loop_close; ASan checks
 * memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api_client.h"
#include "log.h"
#include "backend_fixture.h"
#include "vector_stores.h"

typedef struct got {
  int done;
  int err, status, found;
  char id[96];
  char st[32];
  vst_counts counts;
  char errmsg[2048];
} got;

static void on_done(void *opaque, const vst_result *r) {
  got *g = opaque;
  g->done = 1;
  g->err = r->err;
  g->status = r->http_status;
  g->found = r->found;
  g->counts = r->counts;
  snprintf(g->id, sizeof g->id, "%s", r->id);
  snprintf(g->st, sizeof g->st, "%s", r->status);
  snprintf(g->errmsg, sizeof g->errmsg, "%s", r->errmsg);
  uv_stop(bfx_loop);
}

#define ERR500 "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}"

#define VS(id, key)                                                                                         \
  "{\"id\":\"" id "\",\"object\":\"vector_store\",\"created_at\":1700000000,\"name\":\"docs\","         \
  "\"usage_bytes\":0,\"status\":\"completed\",\"last_active_at\":null,\"metadata\":{\"aw_key\":\"" key \
  "\"},\"file_counts\":{\"in_progress\":0,\"completed\":0,\"failed\":0,\"cancelled\":0,\"total\":0}}"

#define BATCH(status, inp, comp, failed, total)                                                          \
  "{\"id\":\"vsfb_1\",\"object\":\"vector_store.files_batch\",\"created_at\":1700000000,"              \
  "\"vector_store_id\":\"vs_1\",\"status\":\"" status "\",\"file_counts\":{\"in_progress\":" #inp      \
  ",\"completed\":" #comp ",\"failed\":" #failed ",\"cancelled\":0,\"total\":" #total "}}"

/* ---- create ---------------------------------------------------------------------- */

static void test_create_sends_name_files_and_key_in_metadata(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/vector_stores");
  ss_add_resp(post, (ss_resp){.status = 200, .body = VS("vs_new", "k-1")});
  bfx_start(f);
  got g = {0};
  const char *ids[] = {"file-a", "file-b"};
  vst_create_opts o = {.name = "docs", .key = "k-1", .file_ids = ids, .nfile_ids = 2};
  assert_int_equal(vst_create(f->api, &o, on_done, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_OK);
  assert_string_equal(g.id, "vs_new");
  char *body = ss_last_body(&f->srv, post);
  cJSON *j = cJSON_Parse(body);
  assert_non_null(j);
  assert_string_equal(cJSON_GetObjectItem(j, "name")->valuestring, "docs");
  assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"), "aw_key")->valuestring, "k-1");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "file_ids")), 2);
  cJSON_Delete(j);
  free(body);
  bfx_free(f);
}

static void test_ambiguous_create_finds_the_store_by_its_key_and_does_not_create_twice(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/vector_stores");
  ss_add_resp(post, (ss_resp){.status = 500, .body = ERR500});
  ss_add_resp(post, (ss_resp){.status = 200, .body = VS("vs_twice", "k-2")});
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/vector_stores");
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" VS("vs_other", "k-9") ","
                                                     VS("vs_ours", "k-2") "],\"first_id\":\"vs_other\","
                                                     "\"last_id\":\"vs_ours\",\"has_more\":false}"});
  bfx_start(f);
  got g = {0};
  vst_create_opts o = {.name = "docs", .key = "k-2"};
  assert_int_equal(vst_create(f->api, &o, on_done, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_OK);
  assert_int_equal(g.found, 1);
  assert_string_equal(g.id, "vs_ours");
  assert_int_equal(ss_count(&f->srv, post), 1);
  bfx_free(f);
}

static void test_ambiguous_create_not_found_is_created_again(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *post = ss_route_add(&f->srv, "POST", "/v1/vector_stores");
  ss_add_resp(post, (ss_resp){.status = 502, .body = ERR500});
  ss_add_resp(post, (ss_resp){.status = 200, .body = VS("vs_2nd", "k-3")});
  ss_route *list = ss_route_add(&f->srv, "GET", "/v1/vector_stores");
  ss_add_resp(list, (ss_resp){.status = 200, .body = "{\"object\":\"list\",\"data\":[" VS("vs_other", "k-9")
                                                     "],\"first_id\":\"vs_other\",\"last_id\":\"vs_other\","
                                                     "\"has_more\":false}"});
  bfx_start(f);
  got g = {0};
  vst_create_opts o = {.key = "k-3"};
  assert_int_equal(vst_create(f->api, &o, on_done, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_OK);
  assert_int_equal(g.found, 0);
  assert_string_equal(g.id, "vs_2nd");
  assert_int_equal(ss_count(&f->srv, post), 2);
  bfx_free(f);
}

static void test_batch_file_add_and_search_send_what_the_spec_names(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *b = ss_route_add(&f->srv, "POST", "/v1/vector_stores/vs_1/file_batches");
  ss_add_resp(b, (ss_resp){.status = 200, .body = BATCH("in_progress", 2, 0, 0, 2)});
  ss_route *a = ss_route_add(&f->srv, "POST", "/v1/vector_stores/vs_1/files");
  ss_add_resp(a, (ss_resp){.status = 200, .body = "{\"id\":\"file-c\",\"object\":\"vector_store.file\","
                                                  "\"status\":\"in_progress\",\"last_error\":null}"});
  ss_route *q = ss_route_add(&f->srv, "POST", "/v1/vector_stores/vs_1/search");
  ss_add_resp(q, (ss_resp){.status = 200, .body = "{\"object\":\"vector_store.search_results.page\",\"data\":[]}"});
  bfx_start(f);
  got g1 = {0}, g2 = {0}, g3 = {0};
  const char *ids[] = {"file-a", "file-b"};
  assert_int_equal(vst_batch_create(f->api, "vs_1", ids, 2, on_done, &g1, NULL), AW_OK);
  ss_run_until(&f->loop, &g1.done);
  assert_int_equal(g1.err, AW_OK);
  assert_string_equal(g1.id, "vsfb_1");
  assert_string_equal(g1.st, "in_progress");
  char *body = ss_last_body(&f->srv, b);
  assert_string_equal(body, "{\"file_ids\":[\"file-a\",\"file-b\"]}");
  free(body);
  assert_int_equal(vst_file_add(f->api, "vs_1", "file-c", on_done, &g2, NULL), AW_OK);
  ss_run_until(&f->loop, &g2.done);
  assert_string_equal(g2.id, "file-c");
  body = ss_last_body(&f->srv, a);
  assert_string_equal(body, "{\"file_id\":\"file-c\"}");
  free(body);
  assert_int_equal(vst_search(f->api, "vs_1", "reset \"password\"", 3, on_done, &g3, NULL), AW_OK);
  ss_run_until(&f->loop, &g3.done);
  assert_int_equal(g3.err, AW_OK);
  body = ss_last_body(&f->srv, q);
  assert_string_equal(body, "{\"query\":\"reset \\\"password\\\"\",\"max_num_results\":3}");
  free(body);
  /* Ids that are not path-safe never reach the wire. */
  const char *bad[] = {"file-a", "../x"};
  assert_int_equal(vst_batch_create(f->api, "vs_1", bad, 2, on_done, &g1, NULL), AW_EINVAL);
  assert_int_equal(vst_file_add(f->api, "vs/1", "file-c", on_done, &g1, NULL), AW_EINVAL);
  bfx_free(f);
}

/* ---- wait ------------------------------------------------------------------------- */

static void wait_batch(bfx *f, long deadline_ms, got *g) {
  vst_wait_opts w = {.loop = &f->loop, .vector_store_id = "vs_1", .batch_id = "vsfb_1",
                     .deadline_ms = deadline_ms, .poll_ms = 5};
  assert_int_equal(vst_wait(f->api, &w, on_done, g, NULL), AW_OK);
  ss_run_until(&f->loop, &g->done);
}

static void test_wait_ends_completed_once_nothing_is_in_progress(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *b = ss_route_add(&f->srv, "GET", "/v1/vector_stores/vs_1/file_batches/vsfb_1");
  ss_add_resp(b, (ss_resp){.status = 200, .body = BATCH("in_progress", 2, 0, 0, 2)});
  ss_add_resp(b, (ss_resp){.status = 200, .body = BATCH("in_progress", 1, 1, 0, 2)});
  ss_add_resp(b, (ss_resp){.status = 200, .body = BATCH("completed", 0, 2, 0, 2)});
  bfx_start(f);
  got g = {0};
  wait_batch(f, 5000, &g);
  assert_int_equal(g.err, AW_OK);
  assert_string_equal(g.st, "completed");
  assert_int_equal(g.counts.completed, 2);
  assert_int_equal(g.counts.in_progress, 0);
  assert_int_equal(ss_count(&f->srv, b), 3);
  bfx_free(f);
}

static void test_wait_names_the_failed_files_and_their_last_error(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *b = ss_route_add(&f->srv, "GET", "/v1/vector_stores/vs_1/file_batches/vsfb_1");
  ss_add_resp(b, (ss_resp){.status = 200, .body = BATCH("in_progress", 2, 0, 0, 2)});
  ss_add_resp(b, (ss_resp){.status = 200, .body = BATCH("completed", 0, 1, 1, 2)});
  ss_route *files = ss_route_add(&f->srv, "GET", "/v1/vector_stores/vs_1/files");
  ss_add_resp(files, (ss_resp){.status = 200,
                               .body = "{\"object\":\"list\",\"data\":[{\"id\":\"file-bad\",\"object\":"
                                       "\"vector_store.file\",\"usage_bytes\":0,\"created_at\":1700000000,"
                                       "\"vector_store_id\":\"vs_1\",\"status\":\"failed\",\"last_error\":"
                                       "{\"code\":\"unsupported_file\",\"message\":\"binary content\"}}],"
                                       "\"first_id\":\"file-bad\",\"last_id\":\"file-bad\",\"has_more\":false}"});
  bfx_start(f);
  got g = {0};
  wait_batch(f, 5000, &g);
  assert_int_equal(g.err, AW_EINVAL);
  assert_int_equal(aw_error_classify(g.err), AW_CLASS_REJECT);
  assert_non_null(strstr(g.errmsg, "1 of 2 files failed"));
  assert_non_null(strstr(g.errmsg, "file-bad (unsupported_file: binary content)"));
  char *q = ss_last_query(&f->srv, files);
  assert_non_null(strstr(q, "filter=failed"));
  free(q);
  bfx_free(f);
}

static void test_wait_with_only_server_errors_is_retried_later(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *b = ss_route_add(&f->srv, "GET", "/v1/vector_stores/vs_1/file_batches/vsfb_1");
  ss_add_resp(b, (ss_resp){.status = 200, .body = BATCH("failed", 0, 0, 1, 1)});
  ss_route *files = ss_route_add(&f->srv, "GET", "/v1/vector_stores/vs_1/files");
  ss_add_resp(files, (ss_resp){.status = 200,
                               .body = "{\"object\":\"list\",\"data\":[{\"id\":\"file-x\",\"status\":\"failed\","
                                       "\"last_error\":{\"code\":\"server_error\",\"message\":\"try again\"}}],"
                                       "\"has_more\":false}"});
  bfx_start(f);
  got g = {0};
  wait_batch(f, 5000, &g);
  assert_int_equal(aw_error_classify(g.err), AW_CLASS_RETRY);
  assert_non_null(strstr(g.errmsg, "file-x (server_error: try again)"));
  bfx_free(f);
}

static void test_wait_ends_at_the_deadline_with_a_clear_timeout(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *b = ss_route_add(&f->srv, "GET", "/v1/vector_stores/vs_1/file_batches/vsfb_1");
  ss_add_resp(b, (ss_resp){.status = 200, .body = BATCH("in_progress", 3, 1, 0, 4)});
  bfx_start(f);
  got g = {0};
  uint64_t t0 = uv_hrtime();
  wait_batch(f, 150, &g);
  uint64_t ms = (uv_hrtime() - t0) / 1000000u;
  assert_int_equal(g.err, AW_ETIMEDOUT);
  assert_non_null(strstr(g.errmsg, "3 of 4 files still in progress after 150 ms"));
  assert_true(ms >= 140);  /* not before the deadline (uv_now granularity) */
  assert_true(ss_count(&f->srv, b) >= 2);
  bfx_free(f);
}

static void test_wait_for_a_whole_store_reads_its_file_counts(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *s = ss_route_add(&f->srv, "GET", "/v1/vector_stores/vs_1");
  ss_add_resp(s, (ss_resp){.status = 200, .body = "{\"id\":\"vs_1\",\"object\":\"vector_store\",\"status\":\"in_progress\","
                                                  "\"file_counts\":{\"in_progress\":1,\"completed\":0,\"failed\":0,"
                                                  "\"cancelled\":0,\"total\":1}}"});
  ss_add_resp(s, (ss_resp){.status = 200, .body = VS("vs_1", "k")});
  bfx_start(f);
  got g = {0};
  vst_wait_opts w = {.loop = &f->loop, .vector_store_id = "vs_1", .deadline_ms = 5000, .poll_ms = 5};
  assert_int_equal(vst_wait(f->api, &w, on_done, &g, NULL), AW_OK);
  ss_run_until(&f->loop, &g.done);
  assert_int_equal(g.err, AW_OK);
  assert_string_equal(g.id, "vs_1");
  assert_int_equal(ss_count(&f->srv, s), 2);
  bfx_free(f);
}

static void test_cancelled_wait_calls_nothing_back_and_leaks_nothing(void **state) {
  (void)state;
  bfx *f = bfx_new(BFX_API);
  ss_route *b = ss_route_add(&f->srv, "GET", "/v1/vector_stores/vs_1/file_batches/vsfb_1");
  ss_add_resp(b, (ss_resp){.status = 200, .body = BATCH("in_progress", 1, 0, 0, 1)});
  bfx_start(f);
  got g = {0};
  vst_op *op = NULL;
  vst_wait_opts w = {.loop = &f->loop, .vector_store_id = "vs_1", .batch_id = "vsfb_1", .deadline_ms = 5000,
                     .poll_ms = 5};
  assert_int_equal(vst_wait(f->api, &w, on_done, &g, &op), AW_OK);
  /* Poll until the server saw two polls (the op is between polls or in one). */
  uint64_t until = uv_hrtime() + 5000000000ull;
  while (ss_count(&f->srv, b) < 2 && uv_hrtime() < until) uv_run(&f->loop, UV_RUN_ONCE);
  assert_true(ss_count(&f->srv, b) >= 2);
  vst_cancel(op);
  uv_run(&f->loop, UV_RUN_NOWAIT);
  assert_int_equal(g.done, 0);
  bfx_free(f);
}

int main(void) {
  log_set_level(LOG_OFF);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_sends_name_files_and_key_in_metadata),
      cmocka_unit_test(test_ambiguous_create_finds_the_store_by_its_key_and_does_not_create_twice),
      cmocka_unit_test(test_ambiguous_create_not_found_is_created_again),
      cmocka_unit_test(test_batch_file_add_and_search_send_what_the_spec_names),
      cmocka_unit_test(test_wait_ends_completed_once_nothing_is_in_progress),
      cmocka_unit_test(test_wait_names_the_failed_files_and_their_last_error),
      cmocka_unit_test(test_wait_with_only_server_errors_is_retried_later),
      cmocka_unit_test(test_wait_ends_at_the_deadline_with_a_clear_timeout),
      cmocka_unit_test(test_wait_for_a_whole_store_reads_its_file_counts),
      cmocka_unit_test(test_cancelled_wait_calls_nothing_back_and_leaks_nothing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

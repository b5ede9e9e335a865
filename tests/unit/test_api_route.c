/* test_api_route.c -- the route label of an API call (api_route): method and
 * path template with ids replaced by {id} and the query dropped, so that
 * aw_api_request_seconds has one series per endpoint, not one per thread.
 * Needs no infrastructure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "api_client.h"

static void assert_route(const char *method, const char *path, const char *want) {
  char out[128];
  memset(out, 'x', sizeof out);
  assert_int_equal(api_route(method, path, out, sizeof out), AW_OK);
  assert_string_equal(out, want);
}

static void test_every_endpoint_of_a_turn_maps_to_its_template(void **state) {
  (void)state;
  assert_route("POST", "/threads", "POST /threads");
  assert_route("POST", "/threads/runs", "POST /threads/runs");
  assert_route("POST", "/threads/thread_abc123/messages", "POST /threads/{id}/messages");
  assert_route("POST", "/threads/thread_abc/runs", "POST /threads/{id}/runs");
  assert_route("GET", "/threads/thread_abc/runs/run_XYZ", "GET /threads/{id}/runs/{id}");
  assert_route("POST", "/threads/thread_a/runs/run_b/submit_tool_outputs",
               "POST /threads/{id}/runs/{id}/submit_tool_outputs");
  assert_route("POST", "/threads/thread_a/runs/run_b/cancel", "POST /threads/{id}/runs/{id}/cancel");
  assert_route("GET", "/threads/thread_a/runs/run_b/steps", "GET /threads/{id}/runs/{id}/steps");
  assert_route("DELETE", "/threads/thread_a", "DELETE /threads/{id}");
  assert_route("GET", "/assistants/asst_1", "GET /assistants/{id}");
  assert_route("POST", "/assistants", "POST /assistants");
}

static void test_every_id_prefix_and_digits_become_id(void **state) {
  (void)state;
  assert_route("GET", "/x/asst_a/thread_b/msg_c/run_d/step_e/file_f/vs_g/call_h",
               "GET /x/{id}/{id}/{id}/{id}/{id}/{id}/{id}/{id}");
  /* An id of a compatible server without a known prefix still collapses
   * when it has a digit; endpoint names never do. */
  assert_route("GET", "/threads/9f8e7d/runs", "GET /threads/{id}/runs");
  /* Names that merely look alike are kept. */
  assert_route("GET", "/runs/steps/files/messages", "GET /runs/steps/files/messages");
}

static void test_query_is_dropped(void **state) {
  (void)state;
  assert_route("GET", "/threads/thread_a/messages?run_id=run_b&order=asc&limit=100",
               "GET /threads/{id}/messages");
  assert_route("GET", "/assistants?limit=100&order=desc&after=asst_z", "GET /assistants");
  assert_route("GET", "/threads/thread_a/runs/run_b/steps?limit=100#frag", "GET /threads/{id}/runs/{id}/steps");
}

static void test_a_long_route_is_cut_to_fit_and_reported(void **state) {
  (void)state;
  char out[16];
  assert_int_equal(api_route("POST", "/threads/thread_a/runs", out, sizeof out), AW_ETOOBIG);
  assert_string_equal(out, "POST /threads/{");
  assert_int_equal(strlen(out), sizeof out - 1);
  char one[1];
  assert_int_equal(api_route("GET", "/x", one, sizeof one), AW_ETOOBIG);
  assert_string_equal(one, "");
  assert_int_equal(api_route("GET", "/x", NULL, 8), AW_EINVAL);
  assert_int_equal(api_route("GET", "/x", out, 0), AW_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_endpoint_of_a_turn_maps_to_its_template),
      cmocka_unit_test(test_every_id_prefix_and_digits_become_id),
      cmocka_unit_test(test_query_is_dropped),
      cmocka_unit_test(test_a_long_route_is_cut_to_fit_and_reported),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

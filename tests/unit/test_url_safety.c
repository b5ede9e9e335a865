/* test_url_safety.c -- what of a URL may be logged (userinfo masked, in one
 * URL or a comma-separated broker list) and which URLs carry the API key in
 * cleartext across a network (http:// to a non-loopback host).  Needs:
 * nothing (pure functions). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "url_safety.h"

static void redacts(const char *in, const char *want) {
  char out[256];
  assert_string_equal(url_redact(in, out, sizeof out), want);
}

static void test_userinfo_is_masked_and_the_rest_kept(void **state) {
  (void)state;
  redacts("https://user:pass@api.example.com/v1", "https://***@api.example.com/v1");
  redacts("https://token@api.example.com:8443/v1?x=1#f", "https://***@api.example.com:8443/v1?x=1#f");
  redacts("http://u:p@ss@host/v1", "http://***@host/v1"); /* raw '@' in the password: masked whole */
  redacts("HTTPS://u:p@[::1]:80/v1", "HTTPS://***@[::1]:80/v1");
  /* no userinfo: unchanged, including an '@' after the authority */
  redacts("https://api.openai.com/v1", "https://api.openai.com/v1");
  redacts("https://host/v1/users/@me?a=b@c", "https://host/v1/users/@me?a=b@c");
  redacts("", "");
}

static void test_every_element_of_a_broker_list_is_masked(void **state) {
  (void)state;
  redacts("b1:9092,u:p@b2:9092,SASL_SSL://user:pw@b3:9093", "b1:9092,***@b2:9092,SASL_SSL://***@b3:9093");
  redacts("127.0.0.1:9092", "127.0.0.1:9092");
}

static void test_redact_truncates_without_overflow(void **state) {
  (void)state;
  char out[12];
  memset(out, 'x', sizeof out);
  url_redact("https://user:secret@h/v1", out, sizeof out);
  assert_string_equal(out, "https://***");
  assert_null(strstr(out, "secret"));
  char one[1] = {'x'};
  url_redact("https://a:b@h", one, 1);
  assert_int_equal(one[0], '\0');
  url_redact(NULL, out, sizeof out);
  assert_string_equal(out, "");
}

static void test_https_is_tls_and_http_is_classified_by_host(void **state) {
  (void)state;
  assert_int_equal(url_transport("https://api.openai.com/v1"), URL_TLS);
  assert_int_equal(url_transport("https://10.0.0.1/v1"), URL_TLS);
  static const char *const loopback[] = {
      "http://127.0.0.1:8080/v1", "http://127.1.2.3/v1",   "http://localhost:8000/v1",
      "http://LOCALHOST/v1",      "http://localhost./v1",  "http://sim.localhost:1/v1",
      "http://[::1]:8080/v1",     "http://[::ffff:127.0.0.1]/v1", "http://u:p@127.0.0.1/v1",
      "HTTP://127.0.0.1"};
  for (size_t i = 0; i < sizeof loopback / sizeof loopback[0]; i++) {
    if (url_transport(loopback[i]) != URL_CLEARTEXT_LOOPBACK) fail_msg("%s: not loopback", loopback[i]);
  }
  static const char *const remote[] = {
      "http://api.example.com/v1", "http://10.0.0.5:8000/v1", "http://128.0.0.1/v1",
      "http://localhost.example.com/v1", "http://[2001:db8::1]/v1", "http://127.0.0.1@evil.example/v1",
      "http://0.0.0.0:8080/v1", "http://sim:8080/v1"};
  for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++) {
    if (url_transport(remote[i]) != URL_CLEARTEXT_REMOTE) fail_msg("%s: not remote", remote[i]);
  }
  assert_int_equal(url_transport("ftp://127.0.0.1/"), URL_UNKNOWN);
  assert_int_equal(url_transport("http:///v1"), URL_UNKNOWN);
  assert_int_equal(url_transport("http://[::1/v1"), URL_UNKNOWN);
  assert_int_equal(url_transport(NULL), URL_UNKNOWN);
  assert_string_equal(url_transport_name(URL_CLEARTEXT_REMOTE), "http (remote)");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_userinfo_is_masked_and_the_rest_kept),
      cmocka_unit_test(test_every_element_of_a_broker_list_is_masked),
      cmocka_unit_test(test_redact_truncates_without_overflow),
      cmocka_unit_test(test_https_is_tls_and_http_is_classified_by_host),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

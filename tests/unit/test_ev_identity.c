/* test_ev_identity.c -- whose conversation an event is
 * (worker/event/ev_identity.c): the key rule (match, route_by_key), the
 * tenant sources (header, metadata, topic) and their rejections, and the
 * conversation reference the stores key by.
 *
 * Needs: nothing (no Kafka, no Redis: the record is given as values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ev_identity.h"

static wid_rules rules(const char *source, const char *key_rule) {
  wid_rules r;
  memset(&r, 0, sizeof r);
  char err[256];
  assert_int_equal(wid_parse_tenant_source(source, &r, err, sizeof err), AW_OK);
  assert_int_equal(wid_parse_key_rule(key_rule, &r, err, sizeof err), AW_OK);
  return r;
}

static wid_record keyed(const char *key) {
  wid_record rec = {0};
  rec.key = key;
  rec.key_len = key ? strlen(key) : 0;
  rec.topic = "assistant.requests";
  return rec;
}

static contract_request req(const char *conv) {
  contract_request q;
  memset(&q, 0, sizeof q);
  q.event_id = "e1";
  q.conversation_id = conv;
  return q;
}

static void key_rule_match_accepts_the_conversation_as_key_and_rejects_the_rest(void **state) {
  (void)state;
  wid_rules r = rules("none", "match");
  contract_request q = req("conv-1");
  wid_identity id;
  wid_record rec = keyed("conv-1");
  wid_decide(&r, &rec, &q, &id);
  assert_null(id.reject_code);
  assert_string_equal(id.conv, "conv-1");
  assert_string_equal(id.ref, "conv-1");
  assert_string_equal(id.tenant, "");
  const char *bad[] = {NULL, "", "conv-2", "conv-1 ", "conv-"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rec = keyed(bad[i]);
    wid_decide(&r, &rec, &q, &id);
    assert_non_null(id.reject_code);
    assert_string_equal(id.reject_code, "key_mismatch");
    assert_string_equal(id.ref, "");          /* nothing of any conversation is looked up */
    assert_string_equal(id.conv, "conv-1");   /* the rejection still names it */
  }
}

static void key_rule_route_by_key_takes_the_key_as_the_conversation(void **state) {
  (void)state;
  wid_rules r = rules("none", "route_by_key");
  wid_identity id;
  wid_record rec = keyed("conv-k");
  contract_request absent = req(NULL), same = req("conv-k"), other = req("conv-x");
  wid_decide(&r, &rec, &absent, &id);
  assert_null(id.reject_code);
  assert_string_equal(id.conv, "conv-k");
  wid_decide(&r, &rec, &same, &id);
  assert_null(id.reject_code);
  wid_decide(&r, &rec, &other, &id);
  assert_string_equal(id.reject_code, "key_mismatch");
  rec = keyed(NULL);
  wid_decide(&r, &rec, &absent, &id);
  assert_string_equal(id.reject_code, "key_mismatch");
  /* A key that cannot be a conversation id: NUL inside, not UTF-8, too long. */
  char nul[] = {'a', 0, 'b'};
  rec.key = nul;
  rec.key_len = sizeof nul;
  wid_decide(&r, &rec, &absent, &id);
  assert_string_equal(id.reject_code, "key_mismatch");
  rec = keyed("\xff\xfe");
  wid_decide(&r, &rec, &absent, &id);
  assert_string_equal(id.reject_code, "key_mismatch");
  char big[RK_ID_MAX + 2];
  memset(big, 'k', RK_ID_MAX + 1);
  big[RK_ID_MAX + 1] = '\0';
  rec = keyed(big);
  wid_decide(&r, &rec, &absent, &id);
  assert_string_equal(id.reject_code, "key_mismatch");
  big[RK_ID_MAX] = '\0';
  rec = keyed(big);
  wid_decide(&r, &rec, &absent, &id);
  assert_null(id.reject_code);
}

static void tenant_comes_from_the_configured_source_and_names_the_reference(void **state) {
  (void)state;
  wid_identity id;
  contract_kv md[] = {{"region", "eu"}, {"tenant", "acme:eu"}};
  contract_request q = req("conv-1");
  q.metadata = md;
  q.nmetadata = 2;
  wid_record rec = keyed("conv-1");

  wid_rules h = rules("header:x-tenant", "match");
  rec.header = "globex";
  rec.header_len = 6;
  wid_decide(&h, &rec, &q, &id);
  assert_null(id.reject_code);
  assert_string_equal(id.tenant, "globex");
  assert_string_equal(id.ref, "globex:conv-1");

  wid_rules m = rules("metadata:tenant", "match");
  wid_decide(&m, &rec, &q, &id);
  assert_null(id.reject_code);
  assert_string_equal(id.tenant, "acme:eu");
  assert_string_equal(id.ref, "acme%3Aeu:conv-1");

  wid_rules t = rules("topic", "match");
  wid_decide(&t, &rec, &q, &id);
  assert_null(id.reject_code);
  assert_string_equal(id.tenant, "assistant.requests");
}

static void an_event_without_a_usable_tenant_is_rejected_with_a_precise_code(void **state) {
  (void)state;
  wid_identity id;
  contract_request q = req("conv-1");
  wid_record rec = keyed("conv-1");
  wid_rules h = rules("header:x-tenant", "match");
  wid_decide(&h, &rec, &q, &id); /* no header */
  assert_string_equal(id.reject_code, "missing_tenant");
  assert_string_equal(id.ref, "");
  rec.header = "";
  rec.header_len = 0;
  wid_decide(&h, &rec, &q, &id);
  assert_string_equal(id.reject_code, "missing_tenant");
  rec.header = "ac\nme";
  rec.header_len = 5;
  wid_decide(&h, &rec, &q, &id);
  assert_string_equal(id.reject_code, "invalid_tenant");
  rec.header = "\xc3";
  rec.header_len = 1;
  wid_decide(&h, &rec, &q, &id);
  assert_string_equal(id.reject_code, "invalid_tenant");
  char big[RK_TENANT_MAX + 1];
  memset(big, 't', sizeof big);
  rec.header = big;
  rec.header_len = sizeof big;
  wid_decide(&h, &rec, &q, &id);
  assert_string_equal(id.reject_code, "invalid_tenant");
  rec.header_len = RK_TENANT_MAX;
  wid_decide(&h, &rec, &q, &id);
  assert_null(id.reject_code);
  wid_rules m = rules("metadata:tenant", "match");
  wid_decide(&m, &rec, &q, &id); /* no metadata at all */
  assert_string_equal(id.reject_code, "missing_tenant");
  /* The key rule is decided first. */
  rec = keyed("other");
  wid_decide(&h, &rec, &q, &id);
  assert_string_equal(id.reject_code, "key_mismatch");
}

static void settings_that_do_not_parse_are_refused_by_name(void **state) {
  (void)state;
  wid_rules r;
  char err[256];
  const char *bad[] = {"", "header:", "metadata:", "header:a b", "tenant", "Topic", "header"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    if (wid_parse_tenant_source(bad[i], &r, err, sizeof err) != AW_ECONFIG) fail_msg("accepted \"%s\"", bad[i]);
    assert_non_null(strstr(err, "worker.tenant_source"));
  }
  assert_int_equal(wid_parse_key_rule("by_key", &r, err, sizeof err), AW_ECONFIG);
  assert_non_null(strstr(err, "worker.key_rule"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(key_rule_match_accepts_the_conversation_as_key_and_rejects_the_rest),
      cmocka_unit_test(key_rule_route_by_key_takes_the_key_as_the_conversation),
      cmocka_unit_test(tenant_comes_from_the_configured_source_and_names_the_reference),
      cmocka_unit_test(an_event_without_a_usable_tenant_is_rejected_with_a_precise_code),
      cmocka_unit_test(settings_that_do_not_parse_are_refused_by_name),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

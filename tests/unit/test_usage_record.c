/* test_usage_record.c -- the usage record: its codec
 * (common/contract/contract_usage.c), its schema and example, and how the
 * worker adds a turn's usage up and labels it (worker/outbox/usage.c).
 *
 * Needs: nothing (no broker, no network).  Reads schemas/usage.schema.json
 * and schemas/examples/usage.json from the source tree (found from
 * __FILE__, or $AW_SOURCE_DIR).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "contract_tool.h"
#include "contract_usage.h"
#include "json_schema.h"
#include "msgpack_util.h"
#include "usage.h"
#include "worker_int.h"

/* ---- helpers ------------------------------------------------------------------ */

static const char *buf_str(const buf *b) { return b->data ? b->data : ""; }

static cusage_record sample(void) {
  cusage_record r;
  memset(&r, 0, sizeof r);
  r.event_id = "evt-1";
  r.conversation_id = "conv-1";
  r.tenant = "acme";
  r.assistant = "Weather Assistant";
  r.model = "gpt-4o-2024-08-06";
  r.backend = "responses";
  r.status = "completed";
  r.input_tokens = 412;
  r.output_tokens = 57;
  r.cached_tokens = 256;
  r.reasoning_tokens = 7;
  r.total_tokens = 469;
  r.tokens_reported = 1;
  r.tool_rounds = 1;
  r.tool_calls = 2;
  r.started_ms = 1767261600123;
  r.completed_ms = 1767261602871;
  return r;
}

static void encode_ok(const cusage_record *r, buf *b) {
  buf_init(b, CUSAGE_MAX_RECORD);
  assert_int_equal(cusage_encode(r, b), AW_OK);
}

static cusage_record *decode_ok(const buf *b) {
  cusage_record *r = NULL;
  const char *code = "x";
  char err[256];
  int rc = cusage_decode(b->data, b->len, &r, &code, err, sizeof err);
  if (rc) fail_msg("decode failed: %s (%s)", err, code ? code : "");
  assert_null(code);
  return r;
}

static void expect_refused(const void *data, size_t len, int rc_want, const char *code_want) {
  cusage_record *r = (cusage_record *)1;
  const char *code = NULL;
  char err[256];
  assert_int_equal(cusage_decode(data, len, &r, &code, err, sizeof err), rc_want);
  assert_null(r);
  assert_non_null(code);
  assert_string_equal(code, code_want);
  assert_true(err[0] != '\0');
}

/* JSON text -> msgpack (through the tool contract's converter, tested on
 * its own in test_contract_tool.c). */
static void pack_json(const char *json, buf *b) {
  buf_init(b, 1 << 20);
  assert_int_equal(ctool_arguments_to_msgpack(json, strlen(json), b), AW_OK);
}

static char *read_source_file(const char *rel) {
  char path[4096];
  const char *root = getenv("AW_SOURCE_DIR");
  if (root) {
    snprintf(path, sizeof path, "%s/%s", root, rel);
  } else {
    snprintf(path, sizeof path, "%s", __FILE__);
    char *cut = strstr(path, "tests/unit/");
    assert_non_null(cut);
    snprintf(cut, sizeof path - (size_t)(cut - path), "%s", rel);
  }
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = '\0';
  fclose(f);
  return s;
}

/* ---- the codec ------------------------------------------------------------------ */

static void every_field_survives_encode_and_decode(void **state) {
  (void)state;
  cusage_record in = sample();
  buf b;
  encode_ok(&in, &b);
  cusage_record *r = decode_ok(&b);
  assert_string_equal(r->event_id, "evt-1");
  assert_string_equal(r->conversation_id, "conv-1");
  assert_string_equal(r->tenant, "acme");
  assert_string_equal(r->assistant, "Weather Assistant");
  assert_string_equal(r->model, "gpt-4o-2024-08-06");
  assert_string_equal(r->backend, "responses");
  assert_string_equal(r->status, "completed");
  assert_int_equal(r->input_tokens, 412);
  assert_int_equal(r->output_tokens, 57);
  assert_int_equal(r->cached_tokens, 256);
  assert_int_equal(r->reasoning_tokens, 7);
  assert_int_equal(r->total_tokens, 469);
  assert_int_equal(r->tokens_reported, 1);
  assert_int_equal(r->tool_rounds, 1);
  assert_int_equal(r->tool_calls, 2);
  assert_int_equal(r->started_ms, 1767261600123);
  assert_int_equal(r->completed_ms, 1767261602871);
  assert_int_equal(r->duration_ms, 1767261602871 - 1767261600123);
  cusage_free(r);
  buf_free(&b);
}

static void a_record_without_tenant_leaves_the_key_out(void **state) {
  (void)state;
  cusage_record in = sample();
  in.tenant = NULL;
  in.tokens_reported = 0;
  buf b, j;
  encode_ok(&in, &b);
  buf_init(&j, 1 << 16);
  assert_int_equal(contract_to_json(b.data, b.len, &j), AW_OK);
  assert_null(strstr(buf_str(&j), "\"tenant\""));
  assert_non_null(strstr(buf_str(&j), "\"tokens_reported\":false"));
  cusage_record *r = decode_ok(&b);
  assert_null(r->tenant);
  assert_int_equal(r->tokens_reported, 0);
  cusage_free(r);
  buf_free(&j);
  buf_free(&b);
}

static void the_encoder_refuses_what_the_decoder_would_refuse(void **state) {
  (void)state;
  char long_conv[258];
  memset(long_conv, 'c', 257);
  long_conv[257] = '\0';
  buf b;
  buf_init(&b, CUSAGE_MAX_RECORD);
  cusage_record r;
#define REFUSED(stmt)                                      \
  do {                                                     \
    r = sample();                                          \
    stmt;                                                  \
    assert_int_equal(cusage_encode(&r, &b), AW_EINVAL);    \
    assert_int_equal(b.len, 0);                            \
  } while (0)
  REFUSED(r.event_id = NULL);
  REFUSED(r.event_id = "");
  REFUSED(r.conversation_id = long_conv);
  REFUSED(r.model = "gpt-\xff");          /* not UTF-8 */
  REFUSED(r.tenant = "");
  REFUSED(r.status = "rejected");         /* never reached the API: no record */
  REFUSED(r.backend = "ogx");
  REFUSED(r.cached_tokens = r.input_tokens + 1);
  REFUSED(r.reasoning_tokens = r.output_tokens + 1);
  REFUSED(r.output_tokens = -1);
  REFUSED(r.completed_ms = r.started_ms - 1);
#undef REFUSED
  buf_free(&b);
}

static void the_decoder_ignores_unknown_keys_and_takes_nil_as_absent(void **state) {
  (void)state;
  buf b;
  pack_json("{\"v\":1,\"event_id\":\"e\",\"conversation_id\":\"c\",\"tenant\":null,\"assistant\":\"a\","
            "\"model\":\"m\",\"backend\":\"chat\",\"status\":\"failed\",\"input_tokens\":3,\"output_tokens\":0,"
            "\"cached_tokens\":0,\"reasoning_tokens\":0,\"total_tokens\":3,\"tokens_reported\":true,"
            "\"tool_rounds\":0,\"tool_calls\":0,\"started_ms\":5,\"completed_ms\":9,\"duration_ms\":4,"
            "\"later\":{\"x\":[1,2]}}",
            &b);
  cusage_record *r = decode_ok(&b);
  assert_null(r->tenant);
  assert_string_equal(r->backend, "chat");
  assert_string_equal(r->status, "failed");
  assert_int_equal(r->duration_ms, 4);
  cusage_free(r);
  buf_free(&b);
}

static void the_decoder_refuses_broken_records_with_their_code(void **state) {
  (void)state;
  const char *good = "{\"v\":1,\"event_id\":\"e\",\"conversation_id\":\"c\",\"assistant\":\"a\",\"model\":\"m\","
                     "\"backend\":\"chat\",\"status\":\"completed\",\"input_tokens\":3,\"output_tokens\":2,"
                     "\"cached_tokens\":1,\"reasoning_tokens\":0,\"total_tokens\":5,\"tokens_reported\":true,"
                     "\"tool_rounds\":0,\"tool_calls\":0,\"started_ms\":5,\"completed_ms\":9,\"duration_ms\":4}";
  buf b;
  pack_json(good, &b);
  cusage_record *ok = decode_ok(&b);
  cusage_free(ok);

  /* trailing bytes, truncation, not a map */
  assert_int_equal(buf_append(&b, "\xc0", 1), AW_OK);
  expect_refused(b.data, b.len, AW_EPARSE, "malformed_record");
  expect_refused(b.data, b.len - 3, AW_EPARSE, "malformed_record");
  expect_refused("\x91\x01", 2, AW_EPARSE, "malformed_record");
  buf_free(&b);

  struct {
    const char *find, *replace, *code;
  } cases[] = {
      {"\"v\":1", "\"v\":2", "unsupported_version"},
      {"\"model\":\"m\",", "", "missing_field"},
      {"\"status\":\"completed\"", "\"status\":\"rejected\"", "invalid_field"},
      {"\"backend\":\"chat\"", "\"backend\":7", "invalid_field"},
      {"\"input_tokens\":3", "\"input_tokens\":-3", "invalid_field"},
      {"\"input_tokens\":3", "\"input_tokens\":0", "invalid_field"}, /* cached 1 > input 0 */
      {"\"tokens_reported\":true", "\"tokens_reported\":1", "invalid_field"},
      {"\"event_id\":\"e\"", "\"event_id\":\"\"", "invalid_field"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char json[1024];
    const char *at = strstr(good, cases[i].find);
    assert_non_null(at);
    snprintf(json, sizeof json, "%.*s%s%s", (int)(at - good), good, cases[i].replace, at + strlen(cases[i].find));
    pack_json(json, &b);
    expect_refused(b.data, b.len, AW_EINVAL, cases[i].code);
    buf_free(&b);
  }

  /* A key twice (JSON cannot say it: packed by hand). */
  buf_init(&b, 4096);
  mpu_enc e;
  mpu_enc_init(&e, &b);
  (void)msgpack_pack_map(&e.pk, 2);
  for (int k = 0; k < 2; k++) {
    (void)msgpack_pack_str(&e.pk, 1);
    (void)msgpack_pack_str_body(&e.pk, "v", 1);
    (void)msgpack_pack_int(&e.pk, 1);
  }
  expect_refused(b.data, b.len, AW_EINVAL, "invalid_field");
  buf_free(&b);

  /* Over the size bound: refused before it is parsed. */
  static char big[CUSAGE_MAX_RECORD + 1];
  expect_refused(big, sizeof big, AW_ETOOBIG, "record_too_large");
}

/* ---- schema and example ------------------------------------------------------------ */

static void the_example_and_the_encoders_output_match_the_schema(void **state) {
  (void)state;
  char *schema_text = read_source_file("schemas/usage.schema.json");
  jschema *s = NULL;
  char err[JSCHEMA_ERR_MAX];
  assert_int_equal(jschema_compile(schema_text, strlen(schema_text), &s, err, sizeof err), AW_OK);

  char *ex = read_source_file("schemas/examples/usage.json");
  if (jschema_validate_text(s, ex, strlen(ex), err, sizeof err) != AW_OK) fail_msg("example: %s", err);
  /* The example is a record the decoder takes. */
  buf b;
  pack_json(ex, &b);
  cusage_record *r = decode_ok(&b);
  assert_int_equal(r->duration_ms, r->completed_ms - r->started_ms);
  assert_int_equal(r->total_tokens, r->input_tokens + r->output_tokens);
  cusage_free(r);
  buf_free(&b);

  cusage_record in = sample();
  buf j;
  encode_ok(&in, &b);
  buf_init(&j, 1 << 16);
  assert_int_equal(contract_to_json(b.data, b.len, &j), AW_OK);
  if (jschema_validate_text(s, j.data, j.len, err, sizeof err) != AW_OK) fail_msg("encoded: %s", err);
  /* Every key the schema names is written (additionalProperties is false:
   * the validation above covers the other direction). */
  cJSON *schema = cJSON_Parse(schema_text), *doc = cJSON_Parse(buf_str(&j));
  const cJSON *p;
  cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(schema, "properties"))
    if (!cJSON_GetObjectItemCaseSensitive(doc, p->string)) fail_msg("%s is not written", p->string);
  cJSON_Delete(schema);
  cJSON_Delete(doc);
  buf_free(&j);
  buf_free(&b);
  jschema_free(s);
  free(ex);
  free(schema_text);
}

/* ---- the worker's side: adding up and labels ------------------------------------------ */

typedef struct fixture {
  wk w;
  wk_event ev;
  be_assistant bot;
  contract_request req;
  contract_kv md[2];
} fixture;

static int fx_setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->w.cfg.topic_usage = "t.usage";
  f->bot.name = "Support";
  f->bot.model = "gpt-4o";
  f->md[0] = (contract_kv){"team", "blue"};
  f->md[1] = (contract_kv){"org", "acme"};
  f->req.assistant = "Support";
  f->req.metadata = f->md;
  f->req.nmetadata = 2;
  f->ev.w = &f->w;
  f->ev.req = &f->req;
  f->ev.assistant = &f->bot;
  f->ev.h_kind = "responses";
  snprintf(f->ev.event_id, sizeof f->ev.event_id, "evt-9");
  snprintf(f->ev.conv_id, sizeof f->ev.conv_id, "conv-9");
  *state = f;
  return 0;
}

static int fx_teardown(void **state) {
  free(*state);
  return 0;
}

static be_turn_result result(const char *turn, int64_t in, int64_t out, int64_t cached, int64_t reasoning) {
  be_turn_result r;
  memset(&r, 0, sizeof r);
  r.end = BE_END_ANSWER;
  r.status = "completed";
  r.handles.turn = turn;
  r.usage.present = 1;
  r.usage.prompt_tokens = in;
  r.usage.completion_tokens = out;
  r.usage.cached_tokens = cached;
  r.usage.reasoning_tokens = reasoning;
  r.usage.total_tokens = in + out;
  return r;
}

static contract_response answered(int64_t started) {
  contract_response r;
  memset(&r, 0, sizeof r);
  r.status = "completed";
  r.timings.received_ms = 100;
  r.timings.run_started_ms = started;
  r.timings.completed_ms = 900;
  return r;
}

static cusage_record *encode_event(const wk_event *ev) {
  buf b;
  buf_init(&b, CUSAGE_MAX_RECORD);
  assert_int_equal(wku_encode(ev, &b), AW_OK);
  cusage_record *r = decode_ok(&b);
  buf_free(&b);
  return r;
}

/* Responses: one response per round; the cancel of a waiting turn reads the
 * last one again: it must not count twice. */
static void responses_of_a_turn_add_up_and_a_response_read_again_counts_once(void **state) {
  fixture *f = *state;
  be_turn_result r1 = result("resp_1", 10, 4, 0, 0);
  r1.end = BE_END_TOOL_CALLS;
  r1.ntool_calls = 2;
  wku_add(&f->ev, &r1);
  be_turn_result r2 = result("resp_2", 30, 8, 6, 2);
  wku_add(&f->ev, &r2);
  be_turn_result again = result("resp_2", 30, 8, 6, 2);
  wku_add(&f->ev, &again);
  contract_response resp = answered(200);
  resp.ntool_calls = 2;
  wku_finish(&f->ev, &resp);
  assert_true(f->ev.send_usage);
  cusage_record *r = encode_event(&f->ev);
  assert_int_equal(r->input_tokens, 40);
  assert_int_equal(r->output_tokens, 12);
  assert_int_equal(r->cached_tokens, 6);
  assert_int_equal(r->reasoning_tokens, 2);
  assert_int_equal(r->total_tokens, 52);
  assert_int_equal(r->tool_rounds, 1);
  assert_int_equal(r->tool_calls, 2);
  assert_int_equal(r->started_ms, 200);
  assert_int_equal(r->duration_ms, 700);
  assert_string_equal(r->model, "gpt-4o"); /* the API named none: the configured one */
  cusage_free(r);
}

/* Assistants: the run's usage is the whole run's; a later reading of the
 * same run replaces an earlier one. */
static void a_run_read_twice_counts_its_latest_usage_once(void **state) {
  fixture *f = *state;
  f->ev.h_kind = "assistants";
  be_turn_result early = result("run_1", 10, 0, 0, 0);
  wku_add(&f->ev, &early);
  be_turn_result done = result("run_1", 25, 9, 0, 0);
  done.model = "gpt-4o-2024-08-06";
  wku_add(&f->ev, &done);
  contract_response resp = answered(200);
  wku_finish(&f->ev, &resp);
  cusage_record *r = encode_event(&f->ev);
  assert_int_equal(r->input_tokens, 25);
  assert_int_equal(r->output_tokens, 9);
  assert_string_equal(r->backend, "assistants");
  assert_string_equal(r->model, "gpt-4o-2024-08-06");
  cusage_free(r);
}

static void a_turn_that_never_reached_the_api_has_no_record(void **state) {
  fixture *f = *state;
  be_turn_result err;
  memset(&err, 0, sizeof err);
  err.end = BE_END_ERROR;
  err.err = AW_EHTTP5XX;
  wku_add(&f->ev, &err);
  contract_response resp = answered(0);
  resp.status = "failed";
  wku_finish(&f->ev, &resp);
  assert_false(f->ev.send_usage);
  buf b;
  buf_init(&b, CUSAGE_MAX_RECORD);
  assert_int_equal(wku_encode(&f->ev, &b), AW_EINVAL);
  buf_free(&b);
}

static void the_tenant_is_the_events_own_else_the_configured_metadata_value(void **state) {
  fixture *f = *state;
  be_turn_result r1 = result("resp_1", 1, 1, 0, 0);
  wku_add(&f->ev, &r1);
  contract_response resp = answered(200);
  wku_finish(&f->ev, &resp);
  cusage_record *r = encode_event(&f->ev);
  assert_null(r->tenant); /* no key configured, no tenant of its own */
  cusage_free(r);
  f->w.cfg.usage_tenant_key = "org";
  r = encode_event(&f->ev);
  assert_string_equal(r->tenant, "acme");
  cusage_free(r);
  snprintf(f->ev.tenant, sizeof f->ev.tenant, "globex");
  r = encode_event(&f->ev);
  assert_string_equal(r->tenant, "globex");
  cusage_free(r);
}

static void metrics_labels_stay_within_the_configuration(void **state) {
  fixture *f = *state;
  const char *a, *m;
  wku_labels(&f->ev, &a, &m);
  assert_string_equal(a, "Support");
  assert_string_equal(m, "gpt-4o"); /* no model reported: the configured one */
  snprintf(f->ev.usage.model, sizeof f->ev.usage.model, "gpt-4o-2024-08-06");
  wku_labels(&f->ev, &a, &m);
  assert_string_equal(m, "gpt-4o"); /* a dated snapshot of it */
  snprintf(f->ev.usage.model, sizeof f->ev.usage.model, "gpt-4o-mini");
  wku_labels(&f->ev, &a, &m);
  assert_string_equal(m, "other"); /* another model, not a snapshot of this one */
  snprintf(f->ev.usage.model, sizeof f->ev.usage.model, "llama-3-70b");
  wku_labels(&f->ev, &a, &m);
  assert_string_equal(m, "other");
  f->ev.asst_by_id.name = NULL;
  f->ev.assistant = &f->ev.asst_by_id; /* a request naming an asst_ id */
  wku_labels(&f->ev, &a, &m);
  assert_string_equal(a, "other");
  assert_string_equal(m, "other");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_field_survives_encode_and_decode),
      cmocka_unit_test(a_record_without_tenant_leaves_the_key_out),
      cmocka_unit_test(the_encoder_refuses_what_the_decoder_would_refuse),
      cmocka_unit_test(the_decoder_ignores_unknown_keys_and_takes_nil_as_absent),
      cmocka_unit_test(the_decoder_refuses_broken_records_with_their_code),
      cmocka_unit_test(the_example_and_the_encoders_output_match_the_schema),
      cmocka_unit_test_setup_teardown(responses_of_a_turn_add_up_and_a_response_read_again_counts_once, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(a_run_read_twice_counts_its_latest_usage_once, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(a_turn_that_never_reached_the_api_has_no_record, fx_setup, fx_teardown),
      cmocka_unit_test_setup_teardown(the_tenant_is_the_events_own_else_the_configured_metadata_value, fx_setup,
                                      fx_teardown),
      cmocka_unit_test_setup_teardown(metrics_labels_stay_within_the_configuration, fx_setup, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

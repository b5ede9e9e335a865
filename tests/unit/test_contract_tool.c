/* test_contract_tool.c -- tool request / reply messages (common/contract/contract_tool.c).
 *
 * Needs: nothing (no broker, no network).  Reads schemas/ and schemas/examples
 * from the source tree (found from __FILE__, or $AW_SOURCE_DIR).
 *
 * Most decoder cases are written as JSON and packed with
 * ctool_arguments_to_msgpack() (tested on its own below), so each case reads
 * as the message a service would send; what JSON cannot say (invalid bytes,
 * duplicate keys, non-string keys, truncation, bin) is packed by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <malloc.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract.h"
#include "contract_tool.h"
#include "mp_fixture.h"

/* ---- helpers ------------------------------------------------------------------ */

/* JSON text -> msgpack bytes in b (must succeed).  The converter refuses
 * "\u0000" (cJSON would cut the string), but the decoders' tests need NUL
 * bytes inside msgpack strings: such cases are converted with U+007F in
 * its place, and those bytes are turned into NULs afterwards (0x7f is
 * otherwise only the integer 127, which no test value uses). */
static void pack_json(const char *json, buf *b) {
  buf_init(b, 8 << 20);
  char *j = strdup(json);
  assert_non_null(j);
  int nul = 0;
  for (char *p = j; (p = strstr(p, "\\u0000")); p += 6) {
    p[4] = '7';
    p[5] = 'f';
    nul = 1;
  }
  int rc = ctool_arguments_to_msgpack(j, strlen(j), b);
  if (rc) fail_msg("test JSON does not convert (%d): %s", rc, json);
  if (nul)
    for (size_t i = 0; i < b->len; i++)
      if ((unsigned char)b->data[i] == 0x7f) b->data[i] = 0;
  free(j);
}

typedef struct decoded_reply {
  int rc;
  ctool_reply *r;
  const char *code;
  char err[256];
} decoded_reply;

static void reply_dec(const void *p, size_t n, size_t max_output, decoded_reply *d) {
  d->r = NULL;
  d->code = NULL;
  d->rc = ctool_reply_decode(p, n, max_output, &d->r, &d->code, d->err, sizeof d->err);
  if (d->rc) {
    assert_null(d->r);
    assert_non_null(d->code);
    assert_true(d->err[0] != '\0');
  } else {
    assert_non_null(d->r);
    assert_null(d->code);
  }
}

static void reply_json(const char *json, size_t max_output, decoded_reply *d) {
  buf b;
  pack_json(json, &b);
  reply_dec(b.data, b.len, max_output, d);
  buf_free(&b);
}

static void expect_reply_reject(const char *json, int rc, const char *code) {
  decoded_reply d;
  reply_json(json, 0, &d);
  if (d.rc != rc || strcmp(d.code, code))
    fail_msg("%s: got %d %s (%s), want %d %s", json, d.rc, d.code ? d.code : "-", d.err, rc, code);
}

static void expect_reply_reject_bytes(const void *p, size_t n, int rc, const char *code) {
  decoded_reply d;
  reply_dec(p, n, 0, &d);
  if (d.rc != rc || strcmp(d.code, code))
    fail_msg("bytes: got %d %s (%s), want %d %s", d.rc, d.code ? d.code : "-", d.err, rc, code);
}

typedef struct decoded_request {
  int rc;
  ctool_request *r;
  const char *code;
  char err[256];
} decoded_request;

static void request_dec(const void *p, size_t n, size_t max, decoded_request *d) {
  d->r = NULL;
  d->code = NULL;
  d->rc = ctool_request_decode(p, n, max, &d->r, &d->code, d->err, sizeof d->err);
  if (d->rc) {
    assert_null(d->r);
    assert_non_null(d->code);
  } else {
    assert_non_null(d->r);
  }
}

static void expect_request_reject(const char *json, int rc, const char *code) {
  buf b;
  pack_json(json, &b);
  decoded_request d;
  request_dec(b.data, b.len, 0, &d);
  if (d.rc != rc || strcmp(d.code, code))
    fail_msg("%s: got %d %s (%s), want %d %s", json, d.rc, d.code ? d.code : "-", d.err, rc, code);
  buf_free(&b);
}

#define CORR "tc1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

static ctool_request sample_request(const char *args) {
  return (ctool_request){.correlation_id = CORR, .conversation_id = "conv-1", .thread_id = "thread_1",
                         .run_id = "run_1", .tool_call_id = "call_1", .name = "get_order",
                         .arguments_json = args, .arguments_json_len = strlen(args),
                         .deadline_ms = 1764000030000, .reply_topic = "assistant.tool-replies",
                         .event_id = "evt_1", .round = 2};
}

/* Encode a request with these arguments and decode it back. */
static ctool_request *roundtrip_args(const char *args, size_t len) {
  ctool_request in = sample_request(args);
  in.arguments_json_len = len;
  buf b;
  buf_init(&b, 1 << 20);
  assert_int_equal(ctool_request_encode(&in, &b), AW_OK);
  decoded_request d;
  request_dec(b.data, b.len, 0, &d);
  if (d.rc) fail_msg("decode: %s", d.err);
  buf_free(&b);
  return d.r;
}

/* The arguments map of a decoded request as compact JSON ("null" for nil). */
static char *args_view(const ctool_request *r) {
  if (!r->arguments) return strdup("null");
  return mpfx_json_view(r->arguments, r->arguments_len, NULL);
}

/* ---- tool request --------------------------------------------------------------- */

static void request_roundtrip_keeps_every_field(void **state) {
  (void)state;
  const char *args = "{\"order_id\": \"A-1\", \"verbose\": true}";
  ctool_request in = sample_request(args);
  ctool_request *r = roundtrip_args(args, strlen(args));
  assert_int_equal(r->v, 1);
  assert_string_equal(r->correlation_id, in.correlation_id);
  assert_string_equal(r->conversation_id, "conv-1");
  assert_string_equal(r->thread_id, "thread_1");
  assert_string_equal(r->run_id, "run_1");
  assert_string_equal(r->tool_call_id, "call_1");
  assert_string_equal(r->name, "get_order");
  assert_string_equal(r->arguments_json, args); /* byte for byte, whitespace kept */
  assert_int_equal(r->arguments_json_len, strlen(args));
  assert_int_equal(r->deadline_ms, 1764000030000);
  assert_string_equal(r->reply_topic, "assistant.tool-replies");
  assert_string_equal(r->event_id, "evt_1");
  assert_int_equal(r->round, 2);
  char *v = args_view(r);
  assert_string_equal(v, "{\"order_id\":\"A-1\",\"verbose\":true}");
  free(v);
  ctool_request_free(r);
}

static void request_decode_is_one_allocation(void **state) {
  (void)state;
  const char *args = "{\"a\":[1,2,{\"b\":null}]}";
  ctool_request *r = roundtrip_args(args, strlen(args));
  const char *lo = (const char *)r, *hi = lo + malloc_usable_size(r);
#define INSIDE(p) assert_true((const char *)(p) >= lo && (const char *)(p) < hi)
  INSIDE(r->correlation_id);
  INSIDE(r->conversation_id);
  INSIDE(r->thread_id);
  INSIDE(r->run_id);
  INSIDE(r->tool_call_id);
  INSIDE(r->name);
  INSIDE(r->arguments_json);
  INSIDE(r->reply_topic);
  INSIDE(r->event_id);
  INSIDE(r->arguments);
  INSIDE((const char *)r->arguments + r->arguments_len - 1);
#undef INSIDE
  ctool_request_free(r);
  ctool_request_free(NULL);
}

static void arguments_convert_nested_values_exactly(void **state) {
  (void)state;
  static const struct {
    const char *json, *view;
  } cases[] = {
      {"{}", "{}"},
      {" \t\r\n{ } \n", "{}"},
      {"{\"a\":{\"b\":{\"c\":[]}}}", "{\"a\":{\"b\":{\"c\":[]}}}"},
      {"{\"list\":[1,\"two\",[3,[4]],{\"five\":5},true,false,null]}",
       "{\"list\":[1,\"two\",[3,[4]],{\"five\":5},true,false,null]}"},
      /* integers stay integers up to 2^53 (cJSON keeps numbers as doubles) */
      {"{\"z\":0,\"n\":-1,\"mz\":-0,\"max\":9007199254740992,\"min\":-9007199254740992}",
       "{\"z\":0,\"n\":-1,\"mz\":0,\"max\":9007199254740992,\"min\":-9007199254740992}"},
      /* beyond 2^53: the nearest double; arguments_json keeps the exact text */
      {"{\"big\":18446744073709551616,\"neg\":-9223372036854775809,\"i64\":9223372036854775807}",
       "{\"big\":1.8446744073709552e+19,\"neg\":-9.2233720368547758e+18,\"i64\":9.2233720368547758e+18}"},
      {"{\"f\":1.5,\"g\":-2.5e-3,\"h\":1E2,\"i\":0.1,\"j\":1e-400}",
       "{\"f\":1.5,\"g\":-0.0025,\"h\":100,\"i\":0.1,\"j\":0}"},
      /* escapes, including a surrogate pair and NUL */
      {"{\"s\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9 \\u20AC \\ud83d\\ude00.\"}",
       "{\"s\":\"q\\\" b\\\\ s/ \\b\\f\\n\\r\\t \xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80.\"}"},
      {"{\"utf8\":\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"}", "{\"utf8\":\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\"}"},
      /* the same name in different objects is not a duplicate */
      {"{\"a\":{\"a\":1},\"b\":{\"a\":2},\"\":3}", "{\"a\":{\"a\":1},\"b\":{\"a\":2},\"\":3}"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ctool_request *r = roundtrip_args(cases[i].json, strlen(cases[i].json));
    char *v = args_view(r);
    if (strcmp(v, cases[i].view)) fail_msg("case %zu: %s\n  got  %s\n  want %s", i, cases[i].json, v, cases[i].view);
    assert_string_equal(r->arguments_json, cases[i].json);
    free(v);
    ctool_request_free(r);
  }
}

static void arguments_keep_msgpack_types(void **state) {
  (void)state;
  buf b;
  pack_json("{\"i\":-5,\"u\":18446744073709551615,\"d\":2.5,\"big\":1e300}", &b);
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  assert_int_equal(msgpack_unpack_next(&u, b.data, b.len, &off), MSGPACK_UNPACK_SUCCESS);
  assert_int_equal(off, b.len);
  msgpack_object_map *m = &u.data.via.map;
  assert_int_equal(m->size, 4);
  assert_int_equal(m->ptr[0].val.type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
  assert_int_equal(m->ptr[0].val.via.i64, -5);
  assert_int_equal(m->ptr[1].val.type, MSGPACK_OBJECT_FLOAT64); /* beyond 2^53 */
  assert_true(m->ptr[1].val.via.f64 == 18446744073709551615.0);
  assert_int_equal(m->ptr[2].val.type, MSGPACK_OBJECT_FLOAT64);
  assert_true(m->ptr[2].val.via.f64 == 2.5);
  assert_true(m->ptr[3].val.via.f64 == 1e300);
  msgpack_unpacked_destroy(&u);
  buf_free(&b);
}

static void arguments_invalid_json_gives_nil_but_keeps_text(void **state) {
  (void)state;
  static const char *const bad[] = {
      "", " ", "[1]", "\"x\"", "1", "null", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{,}",
      "{\"a\":1 \"b\":2}", "{\"a\":.5}", "{\"a\":\"nul\\u0000\"}", "{\"a\":+1}", "{\"a\":1e}",
      "{\"a\":1e+}", "{\"a\":-}", "{\"a\":0x10}", "{'a':1}", "{a:1}", "{\"a\":tru}", "{\"a\":True}",
      "{\"a\":\"\\x\"}", "{\"a\":\"\\u12\"}", "{\"a\":\"\\ud800\"}",
      "{\"a\":\"\\ud800\\u0041\"}", "{\"a\":\"\\udc00\"}", "{\"a\":\"unterminated}", "{\"a\":1} x", "{\"a\":1}{}",
      "{\"a\":1,\"a\":2}", "{\"a\":1,\"\\u0061\":2}", "{\"x\":{\"k\":1,\"k\":1}}",
      "{\"a\":1e400}", "{\"a\":-1e400}", "{\"a\":NaN}", "{\"a\":Infinity}",
      "{\"a\":[1,2}", "{\"a\":[1,2,]}", "{\"a\":{\"b\":1]}", "/* c */ {}", "{} // c",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ctool_request *r = roundtrip_args(bad[i], strlen(bad[i]));
    if (r->arguments) fail_msg("case %zu: %s converted", i, bad[i]);
    assert_int_equal(r->arguments_len, 0);
    assert_string_equal(r->arguments_json, bad[i]);
    ctool_request_free(r);
  }
  /* cJSON accepts these non-RFC spellings; the conversion follows it (the
   * exact text is still in arguments_json).  Pinned so a change of parser
   * behaviour is noticed. */
  static const char *const lenient[] = {"{\"a\":01}", "{\"a\":1.}", "{\"a\":\"tab\there\"}",
                                         "{\"a\":\"nl\nhere\"}", "\xEF\xBB\xBF{}"};
  for (size_t i = 0; i < sizeof lenient / sizeof lenient[0]; i++) {
    ctool_request *r = roundtrip_args(lenient[i], strlen(lenient[i]));
    if (!r->arguments) fail_msg("lenient case %zu: %s not converted", i, lenient[i]);
    assert_string_equal(r->arguments_json, lenient[i]);
    ctool_request_free(r);
  }
  /* Invalid UTF-8: arguments nil, and arguments_json is carried with U+FFFD
   * (every string on the wire is valid UTF-8). */
  ctool_request *r = roundtrip_args("{\"a\":\"\xFF\"}", 9);
  assert_null(r->arguments);
  assert_string_equal(r->arguments_json, "{\"a\":\"\xEF\xBF\xBD\"}");
  ctool_request_free(r);
  static const char *const bad_utf8[] = {"{\"a\":\"\xC0\xAF\"}", "{\"a\":\"\xED\xA0\x80\"}",
                                         "{\"a\":\"\xF4\x90\x80\x80\"}", "{\"\xC3\":1}"};
  for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
    buf b;
    buf_init(&b, 1024);
    assert_int_equal(ctool_arguments_to_msgpack(bad_utf8[i], strlen(bad_utf8[i]), &b), AW_EPARSE);
    buf_free(&b);
  }
}

static void arguments_nesting_is_bounded(void **state) {
  (void)state;
  char deep[256];
  for (int levels = CTOOL_MAX_ARGUMENTS_DEPTH; levels <= CTOOL_MAX_ARGUMENTS_DEPTH + 1; levels++) {
    /* {"a":{"a":...{}...}} with `levels` objects */
    size_t n = 0;
    for (int i = 0; i < levels - 1; i++) n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"a\":");
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{}");
    for (int i = 0; i < levels - 1; i++) deep[n++] = '}';
    deep[n] = '\0';
    ctool_request *r = roundtrip_args(deep, n);
    if (levels <= CTOOL_MAX_ARGUMENTS_DEPTH) assert_non_null(r->arguments);
    else assert_null(r->arguments);
    ctool_request_free(r);
  }
  /* Arrays count as levels too; a hostile 100,000-deep input is refused
   * without recursing that deep. */
  size_t big = 200000;
  char *s = malloc(big + 3);
  assert_non_null(s);
  s[0] = '{';
  s[1] = '"';
  s[2] = '"';
  s[3] = ':';
  memset(s + 4, '[', big - 4);
  s[big] = '\0';
  buf b;
  buf_init(&b, 1 << 20);
  assert_int_equal(ctool_arguments_to_msgpack(s, big, &b), AW_EPARSE);
  buf_free(&b);
  free(s);
}

static void arguments_conversion_respects_the_buffer(void **state) {
  (void)state;
  /* EPARSE leaves out untouched. */
  buf b;
  buf_init(&b, 64);
  assert_int_equal(buf_appends(&b, "keep"), AW_OK);
  assert_int_equal(ctool_arguments_to_msgpack("[1]", 3, &b), AW_EPARSE);
  assert_int_equal(b.len, 4);
  /* ETOOBIG frees it, as buf does: floats grow 3 characters to 9 bytes. */
  const char *floats = "{\"a\":[1.5,1.5,1.5,1.5,1.5,1.5,1.5,1.5]}";
  assert_true(strlen(floats) < 64);
  assert_int_equal(ctool_arguments_to_msgpack(floats, strlen(floats), &b), AW_ETOOBIG);
  assert_int_equal(b.len, 0);
  assert_null(b.data);
  buf_free(&b);
  assert_int_equal(ctool_arguments_to_msgpack("{}", 2, NULL), AW_EINVAL);
  /* An encoder whose output cannot hold the arguments fails as a whole. */
  ctool_request in = sample_request(floats);
  buf_init(&b, 200);
  assert_int_equal(ctool_request_encode(&in, &b), AW_ETOOBIG);
  assert_null(b.data);
  buf_free(&b);
}

static void request_encode_refuses_incomplete_struct(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(buf_appends(&b, "x"), AW_OK);
  ctool_request ok = sample_request("{}");
  char long_id[300];
  memset(long_id, 'a', sizeof long_id - 1);
  long_id[sizeof long_id - 1] = '\0';
  for (int i = 0; i < 22; i++) {
    ctool_request r = ok;
    switch (i) {
    case 0: r.correlation_id = NULL; break;
    case 1: r.conversation_id = NULL; break;
    case 2: r.thread_id = ""; break; /* NULL is nil; empty is no id */
    case 3: r.run_id = long_id; break;
    case 4: r.tool_call_id = NULL; break;
    case 5: r.name = NULL; break;
    case 6: r.arguments_json = NULL; break;
    case 7: r.reply_topic = NULL; break;
    case 8: r.deadline_ms = -1; break;
    case 9: r.conversation_id = ""; break;
    case 10: r.name = long_id; break;            /* > 64 */
    case 11: r.conversation_id = long_id; break; /* > 256 */
    case 12: r.run_id = "\xFF"; break;
    case 13: r.arguments_json = "{}\0x"; r.arguments_json_len = 4; break;
    case 14: r.correlation_id = long_id; break;
    case 15: r.reply_topic = long_id; break;
    case 16: r.tool_call_id = ""; break;
    case 17: r.event_id = ""; break;
    case 18: r.event_id = long_id; break;     /* > 128 */
    case 19: r.event_id = "e\xC0\x80"; break; /* overlong NUL */
    case 20: r.round = -1; break;
    case 21: r.thread_id = "\xFF"; break;
    }
    if (ctool_request_encode(&r, &b) != AW_EINVAL) fail_msg("case %d accepted", i);
    assert_int_equal(b.len, 1); /* untouched */
  }
  assert_int_equal(ctool_request_encode(NULL, &b), AW_EINVAL);
  assert_int_equal(ctool_request_encode(&ok, NULL), AW_EINVAL);
  buf_free(&b);
}

#define REQ_BASE                                                                                \
  "\"v\":1,\"correlation_id\":\"c\",\"conversation_id\":\"conv\",\"thread_id\":\"t\","         \
  "\"run_id\":\"r\",\"tool_call_id\":\"call\",\"name\":\"f\",\"arguments_json\":\"{}\","        \
  "\"deadline_ms\":5,\"reply_topic\":\"rt\""

static void request_decode_accepts_nil_and_unknown(void **state) {
  (void)state;
  buf b;
  pack_json("{" REQ_BASE ",\"arguments\":null,\"future\":{\"x\":[1]}}", &b);
  decoded_request d;
  request_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_null(d.r->arguments);
  assert_int_equal(d.r->deadline_ms, 5);
  ctool_request_free(d.r);
  buf_free(&b);
  pack_json("{" REQ_BASE "}", &b); /* arguments absent altogether */
  request_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_null(d.r->arguments);
  /* A request of an older worker: no event_id, no round. */
  assert_null(d.r->event_id);
  assert_int_equal(d.r->round, 0);
  ctool_request_free(d.r);
  buf_free(&b);
  pack_json("{" REQ_BASE ",\"event_id\":null,\"round\":null}", &b);
  request_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_null(d.r->event_id);
  assert_int_equal(d.r->round, 0);
  ctool_request_free(d.r);
  buf_free(&b);
  pack_json("{" REQ_BASE ",\"event_id\":\"evt_9\",\"round\":7}", &b);
  request_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_string_equal(d.r->event_id, "evt_9");
  assert_int_equal(d.r->round, 7);
  ctool_request_free(d.r);
  buf_free(&b);
}

/* Backends other than Assistants have no thread or run: the keys are nil
 * (a decoder also takes them absent), and the request round-trips. */
static void request_without_assistants_ids_has_nil_thread_and_run(void **state) {
  (void)state;
  ctool_request in = sample_request("{}");
  in.thread_id = NULL;
  in.run_id = NULL;
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(ctool_request_encode(&in, &b), AW_OK);
  char *view = mpfx_json_view(b.data, b.len, NULL);
  cJSON *j = cJSON_Parse(view);
  assert_non_null(j);
  assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "thread_id")));
  assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "run_id")));
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "event_id")->valuestring, "evt_1");
  assert_true(cJSON_GetObjectItemCaseSensitive(j, "round")->valuedouble == 2.0);
  cJSON_Delete(j);
  free(view);
  decoded_request d;
  request_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_null(d.r->thread_id);
  assert_null(d.r->run_id);
  assert_string_equal(d.r->event_id, "evt_1");
  assert_int_equal(d.r->round, 2);
  ctool_request_free(d.r);
  buf_free(&b);
  /* Absent altogether. */
  pack_json("{\"v\":1,\"correlation_id\":\"c\",\"conversation_id\":\"conv\",\"tool_call_id\":\"call\","
            "\"name\":\"f\",\"arguments_json\":\"{}\",\"deadline_ms\":5,\"reply_topic\":\"rt\"}",
            &b);
  request_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_null(d.r->thread_id);
  assert_null(d.r->run_id);
  ctool_request_free(d.r);
  buf_free(&b);
}

/* Unset event_id / round leave their keys out: the v1 shape of before. */
static void request_leaves_out_unset_event_id_and_round(void **state) {
  (void)state;
  ctool_request in = sample_request("{}");
  in.event_id = NULL;
  in.round = 0;
  buf b;
  buf_init(&b, 4096);
  assert_int_equal(ctool_request_encode(&in, &b), AW_OK);
  char *view = mpfx_json_view(b.data, b.len, NULL);
  cJSON *j = cJSON_Parse(view);
  assert_non_null(j);
  assert_int_equal(cJSON_GetArraySize(j), 11);
  assert_null(cJSON_GetObjectItemCaseSensitive(j, "event_id"));
  assert_null(cJSON_GetObjectItemCaseSensitive(j, "round"));
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "thread_id")->valuestring, "thread_1");
  cJSON_Delete(j);
  free(view);
  /* Each one alone. */
  in.round = 1;
  buf_reset(&b);
  assert_int_equal(ctool_request_encode(&in, &b), AW_OK);
  view = mpfx_json_view(b.data, b.len, NULL);
  j = cJSON_Parse(view);
  assert_int_equal(cJSON_GetArraySize(j), 12);
  assert_null(cJSON_GetObjectItemCaseSensitive(j, "event_id"));
  assert_true(cJSON_GetObjectItemCaseSensitive(j, "round")->valuedouble == 1.0);
  cJSON_Delete(j);
  free(view);
  in.round = 0;
  in.event_id = "evt_2";
  buf_reset(&b);
  assert_int_equal(ctool_request_encode(&in, &b), AW_OK);
  view = mpfx_json_view(b.data, b.len, NULL);
  j = cJSON_Parse(view);
  assert_int_equal(cJSON_GetArraySize(j), 12);
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(j, "event_id")->valuestring, "evt_2");
  assert_null(cJSON_GetObjectItemCaseSensitive(j, "round"));
  cJSON_Delete(j);
  free(view);
  buf_free(&b);
}

static void request_decode_rejects_every_bad_field(void **state) {
  (void)state;
  static const char *const required[] = {"v", "correlation_id", "conversation_id", "tool_call_id",
                                         "name", "arguments_json", "deadline_ms", "reply_topic"};
  /* Each required key missing, then nil: missing_field. */
  for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
    for (int nil = 0; nil < 2; nil++) {
      char json[1024];
      size_t n = (size_t)snprintf(json, sizeof json, "{\"pad\":0");
      for (size_t j = 0; j < sizeof required / sizeof required[0]; j++) {
        const char *val = j == 0 ? "1" : j == 6 ? "5" : "\"x\"";
        if (j == i) val = nil ? "null" : NULL;
        if (val) n += (size_t)snprintf(json + n, sizeof json - n, ",\"%s\":%s", required[j], val);
      }
      snprintf(json + n, sizeof json - n, "}");
      expect_request_reject(json, AW_EINVAL, "missing_field");
    }
  }
}

static void request_decode_rejects_bad_values(void **state) {
  (void)state;
  static const struct {
    const char *key, *val, *code;
  } cases[] = {
      {"v", "2", "unsupported_version"},
      {"v", "-1", "unsupported_version"},
      {"v", "0", "unsupported_version"},
      {"v", "\"1\"", "invalid_field"},
      {"v", "1.5", "invalid_field"},
      {"correlation_id", "1", "invalid_field"},
      {"correlation_id", "\"\"", "invalid_field"},
      {"conversation_id", "[]", "invalid_field"},
      {"thread_id", "\"\"", "invalid_field"},
      {"run_id", "{}", "invalid_field"},
      {"tool_call_id", "true", "invalid_field"},
      {"name", "\"\"", "invalid_field"},
      {"name", "\"n\\u0000\"", "invalid_field"},
      {"arguments", "[]", "invalid_field"},
      {"arguments", "\"{}\"", "invalid_field"},
      {"arguments", "1", "invalid_field"},
      {"arguments_json", "{}", "invalid_field"},
      {"arguments_json", "\"a\\u0000b\"", "invalid_field"},
      {"deadline_ms", "-1", "invalid_field"},
      {"deadline_ms", "18446744073709551615", "invalid_field"},
      {"deadline_ms", "1.5", "invalid_field"},
      {"deadline_ms", "\"5\"", "invalid_field"},
      {"reply_topic", "\"\"", "invalid_field"},
      {"thread_id", "1", "invalid_field"},
      {"run_id", "\"\"", "invalid_field"},
      {"event_id", "\"\"", "invalid_field"},
      {"event_id", "1", "invalid_field"},
      {"event_id", "\"e\\u0000\"", "invalid_field"},
      {"round", "0", "invalid_field"},
      {"round", "-1", "invalid_field"},
      {"round", "1.5", "invalid_field"},
      {"round", "\"1\"", "invalid_field"},
      {"round", "2147483648", "invalid_field"},
      {"round", "true", "invalid_field"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    /* The base message without the case's key, then the case's value. */
    char json[1024];
    size_t n = (size_t)snprintf(json, sizeof json, "{\"%s\":%s", cases[i].key, cases[i].val);
    static const char *const keys[] = {"v", "correlation_id", "conversation_id", "thread_id", "run_id",
                                       "tool_call_id", "name", "arguments_json", "deadline_ms", "reply_topic"};
    for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++) {
      if (!strcmp(keys[j], cases[i].key)) continue;
      const char *val = j == 0 ? "1" : j == 8 ? "5" : "\"x\"";
      n += (size_t)snprintf(json + n, sizeof json - n, ",\"%s\":%s", keys[j], val);
    }
    snprintf(json + n, sizeof json - n, "}");
    expect_request_reject(json, AW_EINVAL, cases[i].code);
  }
  /* Fixed bounds. */
  char big[300];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  static const struct {
    const char *key;
    int len;
  } bounds[] = {{"correlation_id", 129}, {"conversation_id", 257}, {"thread_id", 129},
                {"run_id", 129},         {"tool_call_id", 129},    {"name", 65},
                {"reply_topic", 250},    {"event_id", 129}};
  for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
    for (int over = 0; over < 2; over++) {
      mpfx m;
      mpfx_begin(&m);
      msgpack_pack_map(&m.pk, 11);
      static const char *const keys[] = {"correlation_id", "conversation_id", "thread_id", "run_id",
                                         "tool_call_id", "name", "reply_topic", "event_id"};
      for (size_t j = 0; j < 8; j++) {
        mpfx_str(&m, keys[j]);
        if (!strcmp(keys[j], bounds[i].key)) mpfx_strn(&m, big, (size_t)bounds[i].len - (over ? 0 : 1));
        else mpfx_str(&m, "x");
      }
      mpfx_str(&m, "v");
      msgpack_pack_int(&m.pk, 1);
      mpfx_str(&m, "arguments_json");
      mpfx_str(&m, "{}");
      mpfx_str(&m, "deadline_ms");
      msgpack_pack_int(&m.pk, 1);
      decoded_request d;
      request_dec(m.sb.data, m.sb.size, 0, &d);
      if (over) {
        assert_int_equal(d.rc, AW_EINVAL);
        assert_string_equal(d.code, "invalid_field");
        assert_non_null(strstr(d.err, bounds[i].key));
      } else {
        assert_int_equal(d.rc, AW_OK);
        ctool_request_free(d.r);
      }
      msgpack_sbuffer_destroy(&m.sb);
    }
  }
}

static void request_decode_rejects_malformed_and_too_large(void **state) {
  (void)state;
  buf b;
  pack_json("{" REQ_BASE "}", &b);
  decoded_request d;
  /* Truncated at every length. */
  for (size_t n = 0; n < b.len; n++) {
    request_dec(b.data, n, 0, &d);
    assert_int_equal(d.rc, AW_EPARSE);
    assert_string_equal(d.code, "malformed_request");
  }
  /* Trailing byte. */
  char *t = malloc(b.len + 1);
  memcpy(t, b.data, b.len);
  t[b.len] = '\xc0';
  request_dec(t, b.len + 1, 0, &d);
  assert_int_equal(d.rc, AW_EPARSE);
  free(t);
  /* Whole-message limit. */
  request_dec(b.data, b.len, b.len - 1, &d);
  assert_int_equal(d.rc, AW_ETOOBIG);
  assert_string_equal(d.code, "request_too_large");
  request_dec(b.data, b.len, b.len, &d);
  assert_int_equal(d.rc, AW_OK);
  ctool_request_free(d.r);
  buf_free(&b);
  /* Not a map. */
  request_dec("\x91\x01", 2, 0, &d);
  assert_int_equal(d.rc, AW_EPARSE);
  /* Duplicate key, also when the first copy is nil. */
  mpfx m;
  mpfx_begin(&m);
  msgpack_pack_map(&m.pk, 2);
  mpfx_str(&m, "name");
  msgpack_pack_nil(&m.pk);
  mpfx_str(&m, "name");
  mpfx_str(&m, "f");
  request_dec(m.sb.data, m.sb.size, 0, &d);
  assert_int_equal(d.rc, AW_EINVAL);
  assert_string_equal(d.code, "invalid_field");
  assert_non_null(strstr(d.err, "duplicate"));
  msgpack_sbuffer_destroy(&m.sb);
  /* NULL output pointer / NULL data. */
  assert_int_equal(ctool_request_decode("\x80", 1, 0, NULL, NULL, NULL, 0), AW_EINVAL);
  request_dec(NULL, 3, 0, &d);
  assert_int_equal(d.rc, AW_EINVAL);
}

/* ---- tool reply ------------------------------------------------------------------- */

static void reply_roundtrip_output_and_error(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 4096);
  ctool_reply out = {.correlation_id = CORR, .output = "{\"status\":\"shipped\"} \xE2\x82\xAC", .output_len = 24};
  assert_int_equal(ctool_reply_encode(&out, &b), AW_OK);
  decoded_reply d;
  reply_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_int_equal(d.r->v, 1);
  assert_string_equal(d.r->correlation_id, CORR);
  assert_string_equal(d.r->output, out.output);
  assert_int_equal(d.r->output_len, 24);
  assert_null(d.r->error_code);
  assert_null(d.r->error_message);
  const char *lo = (const char *)d.r, *hi = lo + malloc_usable_size(d.r);
  assert_true(d.r->correlation_id > lo && d.r->correlation_id < hi);
  assert_true(d.r->output > lo && d.r->output + d.r->output_len < hi);
  ctool_reply_free(d.r);

  buf_reset(&b);
  ctool_reply err = {.correlation_id = CORR, .error_code = "not_found", .error_message = "no order A-1"};
  assert_int_equal(ctool_reply_encode(&err, &b), AW_OK);
  reply_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_null(d.r->output);
  assert_string_equal(d.r->error_code, "not_found");
  assert_string_equal(d.r->error_message, "no order A-1");
  ctool_reply_free(d.r);

  /* Empty output is an answer; a NULL message is written as "". */
  buf_reset(&b);
  ctool_reply empty = {.correlation_id = CORR, .output = "", .output_len = 0};
  assert_int_equal(ctool_reply_encode(&empty, &b), AW_OK);
  reply_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_string_equal(d.r->output, "");
  ctool_reply_free(d.r);
  buf_reset(&b);
  ctool_reply nomsg = {.correlation_id = CORR, .error_code = "boom"};
  assert_int_equal(ctool_reply_encode(&nomsg, &b), AW_OK);
  reply_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_string_equal(d.r->error_message, "");
  ctool_reply_free(d.r);
  ctool_reply_free(NULL);
  buf_free(&b);
}

static void reply_ignores_unknown_keys(void **state) {
  (void)state;
  decoded_reply d;
  reply_json("{\"trace\":{\"a\":[1,2]},\"v\":1,\"correlation_id\":\"c\",\"error\":null,\"output\":\"ok\",\"x\":null}", 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_string_equal(d.r->output, "ok");
  ctool_reply_free(d.r);
  reply_json("{\"v\":1,\"correlation_id\":\"c\",\"output\":null,\"error\":{\"code\":\"e\",\"message\":\"m\",\"retry\":true}}", 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_string_equal(d.r->error_code, "e");
  ctool_reply_free(d.r);
  /* Non-string keys, bin and ext values are skipped too. */
  mpfx m;
  mpfx_begin(&m);
  msgpack_pack_map(&m.pk, 6);
  msgpack_pack_int(&m.pk, 7);
  msgpack_pack_bin_with_body(&m.pk, "\x00\x01", 2);
  msgpack_pack_array(&m.pk, 1);
  msgpack_pack_nil(&m.pk);
  msgpack_pack_ext_with_body(&m.pk, "\x01", 1, 5);
  mpfx_str(&m, "v");
  msgpack_pack_int(&m.pk, 1);
  mpfx_str(&m, "correlation_id");
  mpfx_str(&m, "c");
  mpfx_str(&m, "output");
  mpfx_str(&m, "o");
  mpfx_str(&m, "Output");
  msgpack_pack_float(&m.pk, 1.5f);
  reply_dec(m.sb.data, m.sb.size, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_string_equal(d.r->output, "o");
  ctool_reply_free(d.r);
  msgpack_sbuffer_destroy(&m.sb);
}

static void reply_rejects_every_bad_field(void **state) {
  (void)state;
  static const struct {
    const char *json, *code;
  } cases[] = {
      {"{\"correlation_id\":\"c\",\"output\":\"o\"}", "missing_field"},
      {"{\"v\":null,\"correlation_id\":\"c\",\"output\":\"o\"}", "missing_field"},
      {"{\"v\":\"1\",\"correlation_id\":\"c\",\"output\":\"o\"}", "invalid_field"},
      {"{\"v\":1.5,\"correlation_id\":\"c\",\"output\":\"o\"}", "invalid_field"},
      {"{\"v\":2,\"correlation_id\":\"c\",\"output\":\"o\"}", "unsupported_version"},
      {"{\"v\":-1,\"correlation_id\":\"c\",\"output\":\"o\"}", "unsupported_version"},
      {"{\"v\":1,\"output\":\"o\"}", "missing_field"},
      {"{\"v\":1,\"correlation_id\":null,\"output\":\"o\"}", "missing_field"},
      {"{\"v\":1,\"correlation_id\":\"\",\"output\":\"o\"}", "invalid_field"},
      {"{\"v\":1,\"correlation_id\":5,\"output\":\"o\"}", "invalid_field"},
      {"{\"v\":1,\"correlation_id\":\"c\\u0000\",\"output\":\"o\"}", "invalid_field"},
      {"{\"v\":1,\"correlation_id\":\"c\"}", "missing_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"output\":null,\"error\":null}", "missing_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"output\":\"o\",\"error\":{\"code\":\"e\",\"message\":\"m\"}}", "invalid_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"output\":1}", "invalid_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"output\":{\"a\":1}}", "invalid_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"output\":\"a\\u0000b\"}", "invalid_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"error\":\"boom\"}", "invalid_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"error\":[]}", "invalid_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"error\":{}}", "missing_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"error\":{\"message\":\"m\"}}", "missing_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"error\":{\"code\":\"e\"}}", "missing_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"error\":{\"code\":\"\",\"message\":\"m\"}}", "invalid_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"error\":{\"code\":1,\"message\":\"m\"}}", "invalid_field"},
      {"{\"v\":1,\"correlation_id\":\"c\",\"error\":{\"code\":\"e\",\"message\":false}}", "invalid_field"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    expect_reply_reject(cases[i].json, AW_EINVAL, cases[i].code);
}

static void reply_enforces_fixed_bounds(void **state) {
  (void)state;
  char big[5000];
  memset(big, 'a', sizeof big);
  static const struct {
    const char *where;
    size_t max;
  } bounds[] = {{"correlation_id", CTOOL_MAX_CORRELATION_ID},
                {"error.code", CTOOL_MAX_ERROR_CODE},
                {"error.message", CTOOL_MAX_ERROR_MESSAGE}};
  for (size_t i = 0; i < 3; i++) {
    for (size_t n = bounds[i].max; n <= bounds[i].max + 1; n++) {
      mpfx m;
      mpfx_begin(&m);
      msgpack_pack_map(&m.pk, 3);
      mpfx_str(&m, "v");
      msgpack_pack_int(&m.pk, 1);
      mpfx_str(&m, "correlation_id");
      if (i == 0) mpfx_strn(&m, big, n);
      else mpfx_str(&m, "c");
      mpfx_str(&m, "error");
      msgpack_pack_map(&m.pk, 2);
      mpfx_str(&m, "code");
      if (i == 1) mpfx_strn(&m, big, n);
      else mpfx_str(&m, "e");
      mpfx_str(&m, "message");
      if (i == 2) mpfx_strn(&m, big, n);
      else mpfx_str(&m, "m");
      decoded_reply d;
      reply_dec(m.sb.data, m.sb.size, 0, &d);
      if (n == bounds[i].max) {
        assert_int_equal(d.rc, AW_OK);
        ctool_reply_free(d.r);
      } else {
        assert_int_equal(d.rc, AW_EINVAL);
        assert_string_equal(d.code, "invalid_field");
        assert_non_null(strstr(d.err, bounds[i].where));
      }
      msgpack_sbuffer_destroy(&m.sb);
    }
  }
}

static void pack_output_reply(mpfx *m, size_t output_len, size_t pad) {
  mpfx_begin(m);
  msgpack_pack_map(&m->pk, pad ? 4 : 3);
  mpfx_str(m, "v");
  msgpack_pack_int(&m->pk, 1);
  mpfx_str(m, "correlation_id");
  mpfx_str(m, "c");
  mpfx_str(m, "output");
  char *o = malloc(output_len + 1);
  memset(o, 'x', output_len);
  mpfx_strn(m, o, output_len);
  free(o);
  if (pad) {
    mpfx_str(m, "padding");
    o = calloc(1, pad);
    msgpack_pack_bin_with_body(&m->pk, o, pad);
    free(o);
  }
}

static void reply_enforces_output_limit(void **state) {
  (void)state;
  decoded_reply d;
  mpfx m;
  /* Default: 256 KiB exactly is fine, one byte more is reply_too_large. */
  pack_output_reply(&m, CTOOL_DEFAULT_MAX_OUTPUT, 0);
  reply_dec(m.sb.data, m.sb.size, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_int_equal(d.r->output_len, CTOOL_DEFAULT_MAX_OUTPUT);
  assert_int_equal(strlen(d.r->output), CTOOL_DEFAULT_MAX_OUTPUT);
  ctool_reply_free(d.r);
  msgpack_sbuffer_destroy(&m.sb);
  pack_output_reply(&m, CTOOL_DEFAULT_MAX_OUTPUT + 1, 0);
  reply_dec(m.sb.data, m.sb.size, 0, &d);
  assert_int_equal(d.rc, AW_ETOOBIG);
  assert_string_equal(d.code, "reply_too_large");
  msgpack_sbuffer_destroy(&m.sb);
  /* A configured limit. */
  pack_output_reply(&m, 11, 0);
  reply_dec(m.sb.data, m.sb.size, 10, &d);
  assert_int_equal(d.rc, AW_ETOOBIG);
  reply_dec(m.sb.data, m.sb.size, 11, &d);
  assert_int_equal(d.rc, AW_OK);
  ctool_reply_free(d.r);
  msgpack_sbuffer_destroy(&m.sb);
  /* The whole message is bounded before it is parsed: max + overhead. */
  pack_output_reply(&m, 10, CTOOL_REPLY_OVERHEAD);
  reply_dec(m.sb.data, m.sb.size, 10, &d);
  assert_int_equal(d.rc, AW_ETOOBIG);
  assert_string_equal(d.code, "reply_too_large");
  assert_non_null(strstr(d.err, "tool reply is"));
  msgpack_sbuffer_destroy(&m.sb);
  pack_output_reply(&m, 10, CTOOL_REPLY_OVERHEAD - 100);
  reply_dec(m.sb.data, m.sb.size, 10, &d);
  assert_int_equal(d.rc, AW_OK);
  ctool_reply_free(d.r);
  msgpack_sbuffer_destroy(&m.sb);
}

static void reply_rejects_invalid_utf8_everywhere(void **state) {
  (void)state;
  static const char *const bad[] = {"\xFF", "\xC0\xAF", "\xE0\x80\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80",
                                    "a\xC3", "\xF0\x9F\x98"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    for (int where = 0; where < 4; where++) {
      mpfx m;
      mpfx_begin(&m);
      msgpack_pack_map(&m.pk, 3);
      mpfx_str(&m, "v");
      msgpack_pack_int(&m.pk, 1);
      mpfx_str(&m, "correlation_id");
      mpfx_str(&m, where == 0 ? bad[i] : "c");
      if (where == 1) {
        mpfx_str(&m, "output");
        mpfx_str(&m, bad[i]);
      } else {
        mpfx_str(&m, "error");
        msgpack_pack_map(&m.pk, 2);
        mpfx_str(&m, "code");
        mpfx_str(&m, where == 2 ? bad[i] : "e");
        mpfx_str(&m, "message");
        mpfx_str(&m, where == 3 ? bad[i] : "m");
      }
      decoded_reply d;
      reply_dec(m.sb.data, m.sb.size, 0, &d);
      assert_int_equal(d.rc, AW_EINVAL);
      assert_string_equal(d.code, "invalid_field");
      assert_non_null(strstr(d.err, "UTF-8"));
      msgpack_sbuffer_destroy(&m.sb);
    }
  }
  /* The longest valid forms are accepted. */
  decoded_reply d;
  reply_json("{\"v\":1,\"correlation_id\":\"\xF4\x8F\xBF\xBF\",\"output\":\"\xEF\xBF\xBF\xF0\x90\x80\x80\"}", 0, &d);
  assert_int_equal(d.rc, AW_OK);
  ctool_reply_free(d.r);
}

static void reply_rejects_duplicate_keys(void **state) {
  (void)state;
  for (int variant = 0; variant < 4; variant++) {
    mpfx m;
    mpfx_begin(&m);
    msgpack_pack_map(&m.pk, 4);
    mpfx_str(&m, "v");
    msgpack_pack_int(&m.pk, 1);
    mpfx_str(&m, "correlation_id");
    mpfx_str(&m, "c");
    if (variant == 0) { /* output twice */
      mpfx_str(&m, "output"); mpfx_str(&m, "a");
      mpfx_str(&m, "output"); mpfx_str(&m, "b");
    } else if (variant == 1) { /* nil then a value: still two copies */
      mpfx_str(&m, "output"); msgpack_pack_nil(&m.pk);
      mpfx_str(&m, "output"); mpfx_str(&m, "b");
    } else if (variant == 2) { /* v twice */
      mpfx_str(&m, "output"); mpfx_str(&m, "a");
      mpfx_str(&m, "v"); msgpack_pack_int(&m.pk, 1);
    } else { /* inside error */
      mpfx_str(&m, "error");
      msgpack_pack_map(&m.pk, 3);
      mpfx_str(&m, "code"); mpfx_str(&m, "e");
      mpfx_str(&m, "message"); mpfx_str(&m, "m");
      mpfx_str(&m, "code"); mpfx_str(&m, "f");
      mpfx_str(&m, "x"); mpfx_str(&m, "y");
    }
    decoded_reply d;
    reply_dec(m.sb.data, m.sb.size, 0, &d);
    assert_int_equal(d.rc, AW_EINVAL);
    assert_string_equal(d.code, "invalid_field");
    assert_non_null(strstr(d.err, "duplicate"));
    msgpack_sbuffer_destroy(&m.sb);
  }
}

static void reply_rejects_malformed_bytes(void **state) {
  (void)state;
  expect_reply_reject_bytes("", 0, AW_EPARSE, "malformed_reply");
  expect_reply_reject_bytes("\xc1", 1, AW_EPARSE, "malformed_reply");
  expect_reply_reject_bytes("\x01", 1, AW_EPARSE, "malformed_reply");     /* not a map */
  expect_reply_reject_bytes("\xa1x", 2, AW_EPARSE, "malformed_reply");    /* a string */
  expect_reply_reject_bytes("\x80\x80", 2, AW_EPARSE, "malformed_reply"); /* trailing bytes */
  expect_reply_reject_bytes("\xdf\xff\xff\xff\xff", 5, AW_EPARSE, "malformed_reply"); /* 4G pairs, no bytes */
  expect_reply_reject_bytes("\x81\xa1v", 3, AW_EPARSE, "malformed_reply");
  expect_reply_reject_bytes(NULL, 4, AW_EINVAL, "malformed_reply");
  /* Truncated at every length. */
  buf b;
  buf_init(&b, 4096);
  ctool_reply err = {.correlation_id = CORR, .error_code = "e", .error_message = "m"};
  assert_int_equal(ctool_reply_encode(&err, &b), AW_OK);
  for (size_t n = 0; n < b.len; n++) expect_reply_reject_bytes(b.data, n, AW_EPARSE, "malformed_reply");
  buf_free(&b);
  /* Nesting deeper than 24, even in an unknown key. */
  char deep[64];
  size_t n = 0;
  deep[n++] = '\x82';
  deep[n++] = '\xa1';
  deep[n++] = 'x';
  for (int i = 0; i < 30; i++) deep[n++] = '\x91';
  deep[n++] = '\x01';
  deep[n++] = '\xa1';
  deep[n++] = 'v';
  deep[n++] = '\x01';
  expect_reply_reject_bytes(deep, n, AW_EPARSE, "malformed_reply");
  /* NULL out and NULL err_code are handled. */
  assert_int_equal(ctool_reply_decode("\x80", 1, 0, NULL, NULL, NULL, 0), AW_EINVAL);
  ctool_reply *r = NULL;
  assert_int_equal(ctool_reply_decode("\x80", 1, 0, &r, NULL, NULL, 0), AW_EINVAL);
  assert_null(r);
}

static void reply_encode_validates_and_sanitizes(void **state) {
  (void)state;
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(buf_appends(&b, "x"), AW_OK);
  ctool_reply cases[] = {
      {.output = "o", .output_len = 1},                                      /* no correlation id */
      {.correlation_id = "", .output = "o", .output_len = 1},                /* empty id */
      {.correlation_id = "c"},                                               /* neither */
      {.correlation_id = "c", .output = "o", .output_len = 1, .error_code = "e"}, /* both */
      {.correlation_id = "c", .output = "a\0b", .output_len = 3},            /* NUL */
      {.correlation_id = "c", .error_code = ""},                             /* empty code */
      {.correlation_id = "\xFF", .output = "o", .output_len = 1},            /* bad UTF-8 id */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (ctool_reply_encode(&cases[i], &b) != AW_EINVAL) fail_msg("case %zu accepted", i);
    assert_int_equal(b.len, 1);
  }
  assert_int_equal(ctool_reply_encode(NULL, &b), AW_EINVAL);
  buf_reset(&b);
  /* Invalid UTF-8 in the output becomes U+FFFD, so the reply decodes. */
  ctool_reply bad = {.correlation_id = "c", .output = "a\xFF" "b", .output_len = 3};
  assert_int_equal(ctool_reply_encode(&bad, &b), AW_OK);
  decoded_reply d;
  reply_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_string_equal(d.r->output, "a\xEF\xBF\xBD" "b");
  ctool_reply_free(d.r);
  /* A too-long error message is cut to the bound on a character boundary. */
  char msg[CTOOL_MAX_ERROR_MESSAGE + 8];
  memset(msg, 'm', sizeof msg);
  memcpy(msg + CTOOL_MAX_ERROR_MESSAGE - 1, "\xE2\x82\xAC", 3); /* straddles the bound */
  msg[sizeof msg - 1] = '\0';
  ctool_reply longmsg = {.correlation_id = "c", .error_code = "e", .error_message = msg};
  buf_reset(&b);
  assert_int_equal(ctool_reply_encode(&longmsg, &b), AW_OK);
  reply_dec(b.data, b.len, 0, &d);
  assert_int_equal(d.rc, AW_OK);
  assert_int_equal(strlen(d.r->error_message), CTOOL_MAX_ERROR_MESSAGE - 1);
  ctool_reply_free(d.r);
  /* ETOOBIG frees the buffer, as buf does. */
  buf small;
  buf_init(&small, 8);
  ctool_reply out = {.correlation_id = "c", .output = "0123456789", .output_len = 10};
  assert_int_equal(ctool_reply_encode(&out, &small), AW_ETOOBIG);
  assert_null(small.data);
  buf_free(&small);
  buf_free(&b);
}

/* ---- JSON view, examples and schemas ------------------------------------------ */


static cJSON *load_json(const char *rel) {
  char *text = mpfx_source_file(rel);
  cJSON *j = cJSON_Parse(text);
  if (!j) fail_msg("%s does not parse", rel);
  free(text);
  return j;
}

/* The part of JSON Schema the examples lean on: required keys present, no
 * key outside properties when additionalProperties is false, and (one
 * level down) the same for object-valued properties with their own schema. */
static void check_against_schema(const cJSON *schema, const cJSON *doc, const char *path) {
  const cJSON *req = cJSON_GetObjectItemCaseSensitive(schema, "required");
  const cJSON *props = cJSON_GetObjectItemCaseSensitive(schema, "properties");
  const cJSON *addl = cJSON_GetObjectItemCaseSensitive(schema, "additionalProperties");
  for (const cJSON *r = req ? req->child : NULL; r; r = r->next)
    if (!cJSON_GetObjectItemCaseSensitive(doc, r->valuestring)) fail_msg("%s: required %s missing", path, r->valuestring);
  for (const cJSON *c = doc->child; c; c = c->next) {
    const cJSON *ps_ = props ? cJSON_GetObjectItemCaseSensitive(props, c->string) : NULL;
    if (!ps_ && cJSON_IsFalse(addl)) fail_msg("%s: %s is not allowed by the schema", path, c->string);
    if (ps_ && cJSON_IsObject(c) && cJSON_GetObjectItemCaseSensitive(ps_, "properties"))
      check_against_schema(ps_, c, c->string);
  }
}

static void examples_match_the_encoders_and_schemas(void **state) {
  (void)state;
  cJSON *req_schema = load_json("schemas/tool-request.schema.json");
  cJSON *rep_schema = load_json("schemas/tool-reply.schema.json");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(req_schema, "$schema")->valuestring,
                      "https://json-schema.org/draft/2020-12/schema");
  assert_string_equal(cJSON_GetObjectItemCaseSensitive(rep_schema, "$schema")->valuestring,
                      "https://json-schema.org/draft/2020-12/schema");

  /* Request: the example's arguments_json, re-encoded, gives the example. */
  cJSON *ex = load_json("schemas/examples/tool-request.json");
  check_against_schema(req_schema, ex, "tool-request.json");
  const char *aj = cJSON_GetObjectItemCaseSensitive(ex, "arguments_json")->valuestring;
  ctool_request in = {
      .correlation_id = cJSON_GetObjectItemCaseSensitive(ex, "correlation_id")->valuestring,
      .conversation_id = cJSON_GetObjectItemCaseSensitive(ex, "conversation_id")->valuestring,
      .thread_id = cJSON_GetObjectItemCaseSensitive(ex, "thread_id")->valuestring,
      .run_id = cJSON_GetObjectItemCaseSensitive(ex, "run_id")->valuestring,
      .tool_call_id = cJSON_GetObjectItemCaseSensitive(ex, "tool_call_id")->valuestring,
      .name = cJSON_GetObjectItemCaseSensitive(ex, "name")->valuestring,
      .arguments_json = aj, .arguments_json_len = strlen(aj),
      .deadline_ms = (int64_t)cJSON_GetObjectItemCaseSensitive(ex, "deadline_ms")->valuedouble,
      .reply_topic = cJSON_GetObjectItemCaseSensitive(ex, "reply_topic")->valuestring,
      .event_id = cJSON_GetObjectItemCaseSensitive(ex, "event_id")->valuestring,
      .round = (int)cJSON_GetObjectItemCaseSensitive(ex, "round")->valuedouble};
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(ctool_request_encode(&in, &b), AW_OK);
  char *view = mpfx_json_view(b.data, b.len, NULL);
  cJSON *got = cJSON_Parse(view);
  assert_non_null(got);
  mpfx_same_shape(ex, got, "tool-request.json");
  check_against_schema(req_schema, got, "encoded request");
  /* The arguments object equals the example's, value for value. */
  assert_true(cJSON_Compare(cJSON_GetObjectItemCaseSensitive(ex, "arguments"),
                            cJSON_GetObjectItemCaseSensitive(got, "arguments"), 1));
  cJSON_Delete(got);
  free(view);
  cJSON_Delete(ex);

  /* Replies. */
  static const char *const names[] = {"tool-reply-output.json", "tool-reply-error.json"};
  for (int i = 0; i < 2; i++) {
    char rel[128];
    snprintf(rel, sizeof rel, "schemas/examples/%s", names[i]);
    ex = load_json(rel);
    check_against_schema(rep_schema, ex, names[i]);
    buf_reset(&b);
    ctool_reply r = {.correlation_id = cJSON_GetObjectItemCaseSensitive(ex, "correlation_id")->valuestring};
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(ex, "output");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(ex, "error");
    if (i == 0) {
      assert_non_null(o);
      r.output = o->valuestring;
      r.output_len = strlen(o->valuestring);
    } else {
      assert_non_null(e);
      r.error_code = cJSON_GetObjectItemCaseSensitive(e, "code")->valuestring;
      r.error_message = cJSON_GetObjectItemCaseSensitive(e, "message")->valuestring;
    }
    assert_int_equal(ctool_reply_encode(&r, &b), AW_OK);
    view = mpfx_json_view(b.data, b.len, NULL);
    got = cJSON_Parse(view);
    mpfx_same_shape(ex, got, names[i]);
    assert_true(cJSON_Compare(ex, got, 1)); /* the example is exactly what the encoder writes */
    /* and what the decoder reads */
    decoded_reply d;
    reply_dec(b.data, b.len, 0, &d);
    assert_int_equal(d.rc, AW_OK);
    ctool_reply_free(d.r);
    cJSON_Delete(got);
    free(view);
    cJSON_Delete(ex);
  }
  buf_free(&b);
  cJSON_Delete(req_schema);
  cJSON_Delete(rep_schema);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(request_roundtrip_keeps_every_field),
      cmocka_unit_test(request_decode_is_one_allocation),
      cmocka_unit_test(arguments_convert_nested_values_exactly),
      cmocka_unit_test(arguments_keep_msgpack_types),
      cmocka_unit_test(arguments_invalid_json_gives_nil_but_keeps_text),
      cmocka_unit_test(arguments_nesting_is_bounded),
      cmocka_unit_test(arguments_conversion_respects_the_buffer),
      cmocka_unit_test(request_encode_refuses_incomplete_struct),
      cmocka_unit_test(request_decode_accepts_nil_and_unknown),
      cmocka_unit_test(request_without_assistants_ids_has_nil_thread_and_run),
      cmocka_unit_test(request_leaves_out_unset_event_id_and_round),
      cmocka_unit_test(request_decode_rejects_every_bad_field),
      cmocka_unit_test(request_decode_rejects_bad_values),
      cmocka_unit_test(request_decode_rejects_malformed_and_too_large),
      cmocka_unit_test(reply_roundtrip_output_and_error),
      cmocka_unit_test(reply_ignores_unknown_keys),
      cmocka_unit_test(reply_rejects_every_bad_field),
      cmocka_unit_test(reply_enforces_fixed_bounds),
      cmocka_unit_test(reply_enforces_output_limit),
      cmocka_unit_test(reply_rejects_invalid_utf8_everywhere),
      cmocka_unit_test(reply_rejects_duplicate_keys),
      cmocka_unit_test(reply_rejects_malformed_bytes),
      cmocka_unit_test(reply_encode_validates_and_sanitizes),
      cmocka_unit_test(examples_match_the_encoders_and_schemas),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

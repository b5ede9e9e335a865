/* test_sse.c -- the SSE parser gives the same events for any chunking.
 *
 * Each realistic stream is parsed once in one chunk (checked against the
 * expected events), then again for every split into 2 chunks, every split
 * into 3 chunks (all pairs of cut points, empty chunks included) and byte by
 * byte; every run must give exactly the same events and the same result
 * code.  Needs no infrastructure.  Leaks are caught by ASan's leak check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sse.h"

/* ---- recording events ---------------------------------------------------- */

typedef struct rec {
  buf out;        /* events serialised, length-prefixed so NULs are safe */
  int n;          /* events seen */
  int stop_after; /* return non-zero from the callback at event n (0: never) */
} rec;

static void append_field(buf *b, const char *s, size_t n) {
  assert_int_equal(buf_appendf(b, "[%zu:", n), AW_OK);
  assert_int_equal(buf_append(b, s, n), AW_OK);
  assert_int_equal(buf_append(b, "]", 1), AW_OK);
}

static void append_event(buf *b, const char *event, size_t event_len, const char *data, size_t data_len,
                         const char *id) {
  append_field(b, event, event_len);
  append_field(b, data, data_len);
  append_field(b, id, strlen(id));
  assert_int_equal(buf_append(b, "\n", 1), AW_OK);
}

static int on_event(void *opaque, const sse_event *ev) {
  rec *r = opaque;
  /* The promised NUL terminators must be there. */
  assert_int_equal(ev->data[ev->data_len], '\0');
  assert_int_equal(ev->event[ev->event_len], '\0');
  append_event(&r->out, ev->event, ev->event_len, ev->data, ev->data_len, ev->id);
  r->n++;
  return r->stop_after && r->n >= r->stop_after;
}

typedef struct result {
  int rc;
  char *events; /* malloc'd, may be NULL when no event */
  size_t len;
} result;

/* Parse s[0..len) cut at the ncuts ascending positions in cuts. */
static result run(const char *s, size_t len, const size_t *cuts, size_t ncuts, size_t max, int stop_after) {
  rec r = {.n = 0, .stop_after = stop_after};
  buf_init(&r.out, 1u << 20);
  sse_parser p;
  sse_init(&p, max, on_event, &r);
  result res = {.rc = AW_OK};
  size_t from = 0;
  for (size_t i = 0; i <= ncuts && res.rc == AW_OK; i++) {
    size_t to = i < ncuts ? cuts[i] : len;
    res.rc = sse_feed(&p, s + from, to - from);
    from = to;
  }
  sse_free(&p);
  res.events = buf_take(&r.out, &res.len);
  return res;
}

static void same_or_fail(const result *ref, const result *got, const char *how, size_t a, size_t b) {
  if (ref->rc != got->rc || ref->len != got->len ||
      (ref->len && memcmp(ref->events, got->events, ref->len) != 0)) {
    print_error("split %s at %zu,%zu: rc %d vs %d\nwant:\n%s\ngot:\n%s\n", how, a, b, ref->rc, got->rc,
                ref->events ? ref->events : "", got->events ? got->events : "");
    fail();
  }
}

/* The core property: one chunk, every 2-split, every 3-split and byte by
 * byte all agree.  Returns the one-chunk result (caller frees events). */
static result check_every_split(const char *s, size_t len, size_t max, int stop_after) {
  result ref = run(s, len, NULL, 0, max, stop_after);

  for (size_t i = 0; i <= len; i++) {
    result got = run(s, len, &i, 1, max, stop_after);
    same_or_fail(&ref, &got, "2", i, len);
    free(got.events);
  }
  for (size_t i = 0; i <= len; i++) {
    for (size_t j = i; j <= len; j++) {
      size_t cuts[2] = {i, j};
      result got = run(s, len, cuts, 2, max, stop_after);
      same_or_fail(&ref, &got, "3", i, j);
      free(got.events);
    }
  }
  size_t *cuts = malloc((len + 1) * sizeof *cuts);
  assert_non_null(cuts);
  for (size_t i = 0; i + 1 < len; i++) cuts[i] = i + 1;
  result got = run(s, len, cuts, len ? len - 1 : 0, max, stop_after);
  same_or_fail(&ref, &got, "bytewise", 0, 0);
  free(got.events);
  free(cuts);
  return ref;
}

typedef struct expect {
  const char *event;
  const char *data;
  const char *id;
} expect;

/* Check every split and that the one-chunk parse gives exactly `want`. */
static void check_stream(const char *s, size_t len, const expect *want, size_t nwant, size_t max,
                         int stop_after, int want_rc) {
  result ref = check_every_split(s, len, max, stop_after);
  buf w;
  buf_init(&w, 1u << 20);
  for (size_t i = 0; i < nwant; i++)
    append_event(&w, want[i].event, strlen(want[i].event), want[i].data, strlen(want[i].data), want[i].id);
  if (ref.len != w.len || (w.len && memcmp(ref.events, w.data, w.len) != 0)) {
    print_error("want:\n%s\ngot:\n%s\n", w.data ? w.data : "", ref.events ? ref.events : "");
    fail();
  }
  assert_int_equal(ref.rc, want_rc);
  buf_free(&w);
  free(ref.events);
}

#define S(lit) lit, sizeof(lit) - 1
#define N(arr) (sizeof(arr) / sizeof((arr)[0]))
#define BIG ((size_t)1 << 16)

/* ---- realistic streams ---------------------------------------------------- */

static void test_openai_run_stream_gives_same_events_for_every_split(void **state) {
  (void)state;
  static const char s[] =
      "event: thread.run.created\n"
      "data: {\"id\":\"run_1\",\"object\":\"thread.run\",\"status\":\"queued\"}\n"
      "\n"
      "event: thread.message.delta\n"
      "data: {\"id\":\"msg_1\",\"delta\":{\"content\":[{\"index\":0,\"type\":\"text\","
      "\"text\":{\"value\":\"Hel\"}}]}}\n"
      "\n"
      "event: thread.message.delta\n"
      "data: {\"id\":\"msg_1\",\"delta\":{\"content\":[{\"index\":0,\"type\":\"text\","
      "\"text\":{\"value\":\"lo\"}}]}}\n"
      "\n"
      "event: thread.run.completed\n"
      "data: {\"id\":\"run_1\",\"status\":\"completed\"}\n"
      "\n"
      "event: done\n"
      "data: [DONE]\n"
      "\n";
  static const expect want[] = {
      {"thread.run.created", "{\"id\":\"run_1\",\"object\":\"thread.run\",\"status\":\"queued\"}", ""},
      {"thread.message.delta",
       "{\"id\":\"msg_1\",\"delta\":{\"content\":[{\"index\":0,\"type\":\"text\",\"text\":{\"value\":\"Hel\"}}]}}",
       ""},
      {"thread.message.delta",
       "{\"id\":\"msg_1\",\"delta\":{\"content\":[{\"index\":0,\"type\":\"text\",\"text\":{\"value\":\"lo\"}}]}}",
       ""},
      {"thread.run.completed", "{\"id\":\"run_1\",\"status\":\"completed\"}", ""},
      {"done", "[DONE]", ""},
  };
  check_stream(S(s), want, N(want), BIG, 0, AW_OK);
}

static void test_error_event_is_dispatched_with_its_type(void **state) {
  (void)state;
  static const char s[] =
      "event: thread.run.created\ndata: {\"id\":\"run_1\"}\n\n"
      "event: error\n"
      "data: {\"error\":{\"code\":\"server_error\",\"message\":\"Sorry, something went wrong.\"}}\n\n";
  static const expect want[] = {
      {"thread.run.created", "{\"id\":\"run_1\"}", ""},
      {"error", "{\"error\":{\"code\":\"server_error\",\"message\":\"Sorry, something went wrong.\"}}", ""},
  };
  check_stream(S(s), want, N(want), BIG, 0, AW_OK);
}

static void test_multiline_data_is_joined_with_newlines(void **state) {
  (void)state;
  static const char s[] =
      "data: first\n"
      "data:second\n"   /* no space: value taken as is */
      "data\n"          /* no colon: empty value, still a data line */
      "data:  indented\n" /* only one space is removed */
      "data: last\n"
      "\n"
      "data:\n"         /* a lone empty data line dispatches "" */
      "\n";
  static const expect want[] = {
      {"message", "first\nsecond\n\n indented\nlast", ""},
      {"message", "", ""},
  };
  check_stream(S(s), want, N(want), BIG, 0, AW_OK);
}

static void test_comments_and_unknown_fields_are_ignored(void **state) {
  (void)state;
  static const char s[] =
      ": keep-alive\n"
      "\n"
      ":\n"
      "event: thread.message.delta\n"
      ": a comment between fields\n"
      "foo: bar\n"
      "retry: 3000\n"
      "Data: wrong case is an unknown field\n"
      "data: x\n"
      "\n";
  static const expect want[] = {{"thread.message.delta", "x", ""}};
  check_stream(S(s), want, N(want), BIG, 0, AW_OK);
}

static void test_crlf_line_ends_give_same_events_as_lf(void **state) {
  (void)state;
  static const char s[] =
      "event: thread.message.delta\r\n"
      "data: {\"v\":\"a\"}\r\n"
      "\r\n"
      "data: one\r\n"
      "data: two\r\n"
      "\r\n"
      "event: done\r\n"
      "data: [DONE]\r\n"
      "\r\n";
  static const expect want[] = {
      {"thread.message.delta", "{\"v\":\"a\"}", ""},
      {"message", "one\ntwo", ""},
      {"done", "[DONE]", ""},
  };
  check_stream(S(s), want, N(want), BIG, 0, AW_OK);
}

static void test_lone_cr_ends_a_line(void **state) {
  (void)state;
  static const char s[] =
      "event: a\r"
      "data: 1\r"
      "\r"
      "data: 2\r"
      "data: 3\r"
      "\r";
  static const expect want[] = {{"a", "1", ""}, {"message", "2\n3", ""}};
  check_stream(S(s), want, N(want), BIG, 0, AW_OK);
}

static void test_mixed_line_ends_are_each_one_terminator(void **state) {
  (void)state;
  /* "\r\r\n" is a line end then a blank line; "\n\r" is two line ends;
   * "\r\n\r\n" is a line end then a blank line. */
  static const char s[] =
      "data: a\r\r\n"
      "data: b\n\r"
      "data: c\r\n\r\n"
      "data: d\r\n"
      "\n"
      "data: e\n"
      "\r";
  static const expect want[] = {
      {"message", "a", ""},
      {"message", "b", ""},
      {"message", "c", ""},
      {"message", "d", ""},
      {"message", "e", ""},
  };
  check_stream(S(s), want, N(want), BIG, 0, AW_OK);
}

static void test_ids_persist_across_events_and_reset_only_by_id_field(void **state) {
  (void)state;
  static const char s[] =
      "id: 1\ndata: a\n\n"
      "data: b\n\n"        /* keeps last id "1" */
      "id: 2\n\n"          /* no data: not dispatched, but the id sticks */
      "data: c\n\n"
      "id\ndata: d\n\n"    /* bare "id" resets to "" */
      "id: 5\nevent: e\ndata: f\n\n"
      "id: x\0y\ndata: g\n\n"; /* an id containing NUL is ignored */
  static const expect want[] = {
      {"message", "a", "1"}, {"message", "b", "1"}, {"message", "c", "2"},
      {"message", "d", ""},  {"e", "f", "5"},       {"message", "g", "5"},
  };
  check_stream(S(s), want, N(want), BIG, 0, AW_OK);
}

static void test_event_without_data_is_not_dispatched_and_type_resets(void **state) {
  (void)state;
  static const char s[] =
      "event: ping\n\n"       /* no data: dropped */
      "data: x\n\n"           /* type is back to "message" */
      "event: a\nevent: b\ndata: y\n\n" /* the last event: wins */
      "event:\ndata: z\n\n";  /* empty type means "message" */
  static const expect want[] = {{"message", "x", ""}, {"b", "y", ""}, {"message", "z", ""}};
  check_stream(S(s), want, N(want), BIG, 0, AW_OK);
}

static void test_incomplete_trailing_event_is_not_dispatched(void **state) {
  (void)state;
  static const char s1[] = "data: a\n\nevent: thread.message.delta\ndata: b\n";
  static const char s2[] = "data: a\n\ndata: half a li";
  static const char s3[] = "data: a\n\ndata: b\r"; /* ends on CR: line done, no blank line */
  static const expect want[] = {{"message", "a", ""}};
  check_stream(S(s1), want, N(want), BIG, 0, AW_OK);
  check_stream(S(s2), want, N(want), BIG, 0, AW_OK);
  check_stream(S(s3), want, N(want), BIG, 0, AW_OK);
}

static void test_nul_bytes_in_data_are_kept_with_exact_length(void **state) {
  (void)state;
  static const char s[] = "data: a\0b\n\n";
  result ref = check_every_split(S(s), BIG, 0);
  buf w;
  buf_init(&w, 1024);
  append_event(&w, "message", 7, "a\0b", 3, "");
  assert_int_equal(ref.len, w.len);
  assert_memory_equal(ref.events, w.data, w.len);
  buf_free(&w);
  free(ref.events);
}

/* ---- bound ----------------------------------------------------------------- */

static void test_line_of_exactly_max_bytes_is_accepted_one_more_is_etoobig(void **state) {
  (void)state;
  /* Line "data: " + 26 x = 32 bytes, the limit. */
  static const char ok[] = "data: xxxxxxxxxxxxxxxxxxxxxxxxxx\n\n";
  static const char big[] = "data: xxxxxxxxxxxxxxxxxxxxxxxxxxx\n\n";
  static const expect want[] = {{"message", "xxxxxxxxxxxxxxxxxxxxxxxxxx", ""}};
  check_stream(S(ok), want, N(want), 32, 0, AW_OK);
  check_stream(S(big), NULL, 0, 32, 0, AW_ETOOBIG);
}

static void test_data_accumulated_past_max_is_etoobig_after_earlier_events(void **state) {
  (void)state;
  /* Each line fits; together the data lines of the second event do not. */
  static const char s[] =
      "data: ok\n\n"
      "event: thread.message.delta\n"
      "data: 0123456789\ndata: 0123456789\ndata: 0123456789\n"
      "data: 0123456789\ndata: 0123456789\ndata: 0123456789\n"
      "\n"
      "data: never\n\n";
  static const expect want[] = {{"message", "ok", ""}};
  check_stream(S(s), want, N(want), 64, 0, AW_ETOOBIG);
}

static void test_etoobig_on_unterminated_line_frees_parser_buffers(void **state) {
  (void)state;
  char chunk[100];
  memset(chunk, 'x', sizeof chunk);
  memcpy(chunk, "data: ", 6);
  rec r = {.n = 0};
  buf_init(&r.out, 1024);
  sse_parser p;
  sse_init(&p, 64, on_event, &r);
  assert_int_equal(sse_feed(&p, "data: a\n", 8), AW_OK); /* data buffer now allocated */
  assert_non_null(p.data.data);
  assert_int_equal(sse_feed(&p, chunk, 40), AW_OK);      /* carried: 40 + 1 <= 64 */
  assert_non_null(p.line.data);
  assert_int_equal(sse_feed(&p, chunk, sizeof chunk), AW_ETOOBIG);
  assert_null(p.line.data);
  assert_null(p.data.data);
  assert_null(p.event.data);
  assert_null(p.id.data);
  assert_int_equal(r.n, 0);
  sse_free(&p);
  buf_free(&r.out);
}

static void test_bound_counts_event_type_data_and_pending_line_together(void **state) {
  (void)state;
  /* Each piece fits alone in 64 bytes; type (40) + data line (30) does not. */
  static const char s[] =
      "event: 0123456789012345678901234567890123456789\n"
      "data: 012345678901234567890123\n\n";
  check_stream(S(s), NULL, 0, 64, 0, AW_ETOOBIG);

  /* An unterminated line fails as soon as it arrives if, with the event
   * built so far, it passes the limit: memory never holds more than max. */
  rec r = {.n = 0};
  buf_init(&r.out, 1024);
  sse_parser p;
  sse_init(&p, 64, on_event, &r);
  assert_int_equal(sse_feed(&p, S("data: 0123456789012345678901234567890\n")), AW_OK); /* 31 held */
  assert_int_equal(sse_feed(&p, S("data: 0123456789012345678901234")), AW_OK);        /* 31 + 31 */
  assert_int_equal(sse_feed(&p, S("56")), AW_OK);                                     /* 31 + 33 */
  assert_int_equal(sse_feed(&p, S("7")), AW_ETOOBIG);                                 /* 31 + 34 */
  assert_null(p.line.data);
  sse_free(&p);
  buf_free(&r.out);
}

/* ---- stop -------------------------------------------------------------------- */

static void test_callback_nonzero_stops_parse_with_ecancelled(void **state) {
  (void)state;
  static const char s[] =
      "event: thread.message.delta\ndata: 1\n\n"
      "event: thread.message.delta\ndata: 2\n\n"
      "event: done\ndata: [DONE]\n\n";
  static const expect want[] = {{"thread.message.delta", "1", ""}, {"thread.message.delta", "2", ""}};
  check_stream(S(s), want, N(want), BIG, 2, AW_ECANCELLED);
}

/* ---- memory and the fast path ------------------------------------------------ */

static void test_init_allocates_nothing_and_free_releases_everything(void **state) {
  (void)state;
  rec r = {.n = 0};
  buf_init(&r.out, 1024);
  sse_parser p;
  sse_init(&p, 1024, on_event, &r);
  assert_null(p.line.data);
  assert_null(p.data.data);
  assert_null(p.event.data);
  assert_null(p.id.data);
  assert_int_equal(sse_feed(&p, S("id: 1\nevent: e\ndata: partial")), AW_OK);
  sse_free(&p);
  assert_null(p.line.data);
  assert_null(p.data.data);
  assert_null(p.event.data);
  assert_null(p.id.data);
  /* Usable again after sse_init: nothing of the old stream leaks through. */
  sse_init(&p, 1024, on_event, &r);
  assert_int_equal(sse_feed(&p, S("data: fresh\n\n")), AW_OK);
  assert_int_equal(r.n, 1);
  assert_non_null(strstr(r.out.data, "[7:message][5:fresh][0:]"));
  sse_free(&p);
  buf_free(&r.out);
}

static void test_complete_lines_in_one_chunk_bypass_line_buffer(void **state) {
  (void)state;
  rec r = {.n = 0};
  buf_init(&r.out, 1 << 16);
  sse_parser p;
  sse_init(&p, 1 << 16, on_event, &r);
  assert_int_equal(sse_feed(&p, S("event: thread.message.delta\r\ndata: {\"a\":1}\r\n\r\n"
                                  "event: done\ndata: [DONE]\n\n")),
                   AW_OK);
  assert_int_equal(r.n, 2);
  assert_null(p.line.data); /* never needed: no line crossed a chunk boundary */
  sse_free(&p);
  buf_free(&r.out);
}

static void test_empty_feed_keeps_pending_cr_state(void **state) {
  (void)state;
  rec r = {.n = 0};
  buf_init(&r.out, 1024);
  sse_parser p;
  sse_init(&p, 1024, on_event, &r);
  assert_int_equal(sse_feed(&p, S("data: a\r")), AW_OK);
  assert_int_equal(sse_feed(&p, "", 0), AW_OK);
  assert_int_equal(sse_feed(&p, S("\n")), AW_OK); /* second half of CRLF, not a blank line */
  assert_int_equal(r.n, 0);
  assert_int_equal(sse_feed(&p, S("\n")), AW_OK);
  assert_int_equal(r.n, 1);
  sse_free(&p);
  buf_free(&r.out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_openai_run_stream_gives_same_events_for_every_split),
      cmocka_unit_test(test_error_event_is_dispatched_with_its_type),
      cmocka_unit_test(test_multiline_data_is_joined_with_newlines),
      cmocka_unit_test(test_comments_and_unknown_fields_are_ignored),
      cmocka_unit_test(test_crlf_line_ends_give_same_events_as_lf),
      cmocka_unit_test(test_lone_cr_ends_a_line),
      cmocka_unit_test(test_mixed_line_ends_are_each_one_terminator),
      cmocka_unit_test(test_ids_persist_across_events_and_reset_only_by_id_field),
      cmocka_unit_test(test_event_without_data_is_not_dispatched_and_type_resets),
      cmocka_unit_test(test_incomplete_trailing_event_is_not_dispatched),
      cmocka_unit_test(test_nul_bytes_in_data_are_kept_with_exact_length),
      cmocka_unit_test(test_line_of_exactly_max_bytes_is_accepted_one_more_is_etoobig),
      cmocka_unit_test(test_data_accumulated_past_max_is_etoobig_after_earlier_events),
      cmocka_unit_test(test_etoobig_on_unterminated_line_frees_parser_buffers),
      cmocka_unit_test(test_bound_counts_event_type_data_and_pending_line_together),
      cmocka_unit_test(test_callback_nonzero_stops_parse_with_ecancelled),
      cmocka_unit_test(test_init_allocates_nothing_and_free_releases_everything),
      cmocka_unit_test(test_complete_lines_in_one_chunk_bypass_line_buffer),
      cmocka_unit_test(test_empty_feed_keeps_pending_cr_state),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* fuzz_sse.c -- libFuzzer target: the SSE parser gives the same events and
 * the same result for a stream fed in one chunk, in two chunks cut at a
 * point chosen by the first input byte, and byte by byte.  Aborts on any
 * difference.  A small event limit makes AW_ETOOBIG reachable, and the
 * callback stops the parse after a number of events chosen by the second
 * input byte, so the bound and cancellation paths are compared too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

typedef struct rec {
  buf out;
  int n;
  int stop_after;
} rec;

static void must(int rc) {
  if (rc != AW_OK) abort();
}

static int on_event(void *opaque, const sse_event *ev) {
  rec *r = opaque;
  if (ev->data[ev->data_len] != '\0' || ev->event[ev->event_len] != '\0') abort();
  must(buf_appendf(&r->out, "[%zu:", ev->event_len));
  must(buf_append(&r->out, ev->event, ev->event_len));
  must(buf_appendf(&r->out, "][%zu:", ev->data_len));
  must(buf_append(&r->out, ev->data, ev->data_len));
  must(buf_appendf(&r->out, "][%zu:", strlen(ev->id)));
  must(buf_appends(&r->out, ev->id));
  must(buf_appends(&r->out, "]\n"));
  r->n++;
  return r->stop_after && r->n >= r->stop_after;
}

/* step == 0: cut once at `cut`; otherwise feed `step` bytes at a time. */
static int run(const uint8_t *s, size_t len, size_t cut, size_t step, int stop_after, buf *out) {
  rec r = {.n = 0, .stop_after = stop_after};
  buf_init(&r.out, (size_t)1 << 24);
  sse_parser p;
  sse_init(&p, 512, on_event, &r);
  const char *c = (const char *)s;
  int rc;
  if (step == 0) {
    rc = sse_feed(&p, c, cut);
    if (rc == AW_OK) rc = sse_feed(&p, c + cut, len - cut);
  } else {
    rc = AW_OK;
    for (size_t i = 0; i < len && rc == AW_OK; i += step) rc = sse_feed(&p, c + i, len - i < step ? len - i : step);
  }
  sse_free(&p);
  *out = r.out;
  return rc;
}

static void same(int rc_a, const buf *a, int rc_b, const buf *b, const char *how) {
  if (rc_a != rc_b || a->len != b->len || (a->len && memcmp(a->data, b->data, a->len) != 0)) {
    fprintf(stderr, "fuzz_sse: %s differs from one chunk (rc %d vs %d)\n", how, rc_a, rc_b);
    abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/** libFuzzer entry point. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const uint8_t sel = data[0];
  const int stop_after = data[1] % 8; /* 0: never stop */
  const uint8_t *s = data + 2;
  size_t len = size - 2;
  /* Scale the byte to the whole input so any cut point is reachable for
   * short inputs and cuts spread over long ones. */
  size_t cut = len ? (size_t)sel * len / 255 : 0;

  buf one, two, bytes;
  int rc1 = run(s, len, len, 0, stop_after, &one);
  int rc2 = run(s, len, cut, 0, stop_after, &two);
  int rc3 = run(s, len, 0, 1, stop_after, &bytes);
  same(rc1, &one, rc2, &two, "two-chunk split");
  same(rc1, &one, rc3, &bytes, "byte-by-byte feed");
  buf_free(&one);
  buf_free(&two);
  buf_free(&bytes);
  return 0;
}

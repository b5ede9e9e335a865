/* sse.c -- incremental Server-Sent Events parser (WHATWG event-stream).
 *
 * Design notes.
 *
 * Speed: a chunk is scanned with memchr, one search for '\n' and one for
 * '\r', each remembered until the scan passes it, so a chunk costs O(len)
 * however its lines end (searching for both terminators afresh at every line
 * would be O(len^2) on a stream that never sends a CR).  A line that lies
 * wholly inside the chunk is parsed in place; only a line cut by the chunk
 * boundary is copied into p->line.  The only bytes copied in the common case
 * are the field values that make up the event (data, event type, id), which
 * must be copied anyway to hand the callback NUL-terminated strings.
 *
 * Bound: the limit is checked against a quantity that does not depend on
 * how the stream was chunked: for each line, (bytes of the line so far,
 * terminator excluded) + data.len + event.len of the event being built.
 * Completing a line never makes that sum grow (a value is shorter than its
 * line, and the '\n' joiner is paid for by the "data" field name), so the
 * peak is reached on the last byte of a line; checking a partial line when a
 * chunk ends and the whole line when it is complete fails on exactly the
 * same streams, after exactly the same events, for any split.  The id
 * persists between events but is never longer than a line that fit, so it
 * is bounded by the same limit without being counted.
 *
 * Errors: after AW_ETOOBIG the buffers are freed (as buf_append does) and
 * the stream position is lost, so the parser must not be fed again; the
 * owner calls sse_free().  After AW_ECANCELLED the rest of the chunk is not
 * parsed.
 *
 * Not implemented: the optional UTF-8 BOM at the start of a stream is not
 * stripped (it would make the first field name unknown); the OpenAI API
 * does not send one.  "retry:" is ignored: reconnection is retry.h's job.
 */
#include "sse.h"

#include <string.h>

void sse_init(sse_parser *p, size_t max_event_bytes, sse_event_cb cb, void *opaque) {
  /* Each buffer may on its own reach the whole limit; the sum is enforced in
   * check_bound() before anything is appended. */
  buf_init(&p->line, max_event_bytes);
  buf_init(&p->data, max_event_bytes);
  buf_init(&p->event, max_event_bytes);
  buf_init(&p->id, max_event_bytes);
  p->has_data = 0;
  p->last_cr = 0;
  p->max_event_bytes = max_event_bytes;
  p->cb = cb;
  p->opaque = opaque;
}

void sse_free(sse_parser *p) {
  buf_free(&p->line);
  buf_free(&p->data);
  buf_free(&p->event);
  buf_free(&p->id);
  p->has_data = 0;
  p->last_cr = 0;
}

/* Would a line of line_len bytes (so far) push the event past the limit?
 * Written to avoid overflow when line_len is a huge chunk length. */
static int check_bound(sse_parser *p, size_t line_len) {
  size_t held = p->data.len + p->event.len;
  if (held > p->max_event_bytes || line_len > p->max_event_bytes - held) {
    sse_free(p);
    return AW_ETOOBIG;
  }
  return AW_OK;
}

static int dispatch(sse_parser *p) {
  int rc = AW_OK;
  if (p->has_data) {
    sse_event ev;
    if (p->event.len) {
      ev.event = p->event.data;
      ev.event_len = p->event.len;
    } else {
      ev.event = "message";
      ev.event_len = sizeof "message" - 1;
    }
    ev.data = p->data.data ? p->data.data : "";
    ev.data_len = p->data.len;
    ev.id = p->id.data ? p->id.data : "";
    if (p->cb(p->opaque, &ev) != 0) rc = AW_ECANCELLED;
  }
  /* Keep the allocations: the next event usually needs the same room. */
  buf_reset(&p->data);
  buf_reset(&p->event);
  p->has_data = 0;
  return rc;
}

/* One complete line, terminator excluded.  `line` may point into the
 * caller's chunk or into p->line; it never aliases data/event/id. */
static int process_line(sse_parser *p, const char *line, size_t len) {
  if (len == 0) return dispatch(p);
  if (line[0] == ':') return AW_OK; /* comment, e.g. a keep-alive */

  const char *colon = memchr(line, ':', len);
  size_t flen = colon ? (size_t)(colon - line) : len;
  const char *val = colon ? colon + 1 : line + len;
  size_t vlen = (size_t)(line + len - val);
  if (vlen && *val == ' ') {
    val++;
    vlen--;
  }

  int rc = AW_OK;
  if (flen == 4 && memcmp(line, "data", 4) == 0) {
    if (p->has_data) rc = buf_append(&p->data, "\n", 1);
    if (!rc) rc = buf_append(&p->data, val, vlen);
    p->has_data = 1;
  } else if (flen == 5 && memcmp(line, "event", 5) == 0) {
    buf_reset(&p->event);
    rc = buf_append(&p->event, val, vlen);
  } else if (flen == 2 && memcmp(line, "id", 2) == 0) {
    /* WHATWG: an id containing NUL is ignored (it could not be echoed back
     * in a Last-Event-ID header). */
    if (!memchr(val, '\0', vlen)) {
      buf_reset(&p->id);
      rc = buf_append(&p->id, val, vlen);
    }
  }
  /* "retry" and unknown fields are ignored. */
  if (rc) sse_free(p); /* only AW_ENOMEM can get here: check_bound ran first */
  return rc;
}

int sse_feed(sse_parser *p, const char *data, size_t len) {
  if (len == 0) return AW_OK;
  const char *pos = data, *end = data + len;

  /* The previous chunk ended in CR: that line is already done, and an LF
   * here is the second half of its CRLF. */
  if (p->last_cr) {
    p->last_cr = 0;
    if (*pos == '\n') pos++;
  }

  /* Next LF / CR at or after pos; `end` means there is none left.  Each is
   * re-searched only once the scan has moved past it. */
  const char *nl = NULL, *cr = NULL;
  while (pos < end) {
    if (!nl || nl < pos) {
      nl = memchr(pos, '\n', (size_t)(end - pos));
      if (!nl) nl = end;
    }
    if (!cr || cr < pos) {
      cr = memchr(pos, '\r', (size_t)(end - pos));
      if (!cr) cr = end;
    }
    const char *t = nl < cr ? nl : cr;
    size_t n = (size_t)(t - pos);
    int rc;

    if (t == end) {
      /* The line continues in the next chunk: keep what we have. */
      if ((rc = check_bound(p, p->line.len + n))) return rc;
      if ((rc = buf_append(&p->line, pos, n))) {
        sse_free(p);
        return rc;
      }
      return AW_OK;
    }

    const char *line;
    size_t line_len;
    if (p->line.len) {
      if ((rc = check_bound(p, p->line.len + n))) return rc;
      if ((rc = buf_append(&p->line, pos, n))) {
        sse_free(p);
        return rc;
      }
      line = p->line.data;
      line_len = p->line.len;
    } else {
      if ((rc = check_bound(p, n))) return rc;
      line = pos;
      line_len = n;
    }

    if (*t == '\r') {
      if (t + 1 < end) {
        pos = t + 1 + (t[1] == '\n');
      } else {
        p->last_cr = 1; /* the LF, if any, is in the next chunk */
        pos = end;
      }
    } else {
      pos = t + 1;
    }

    rc = process_line(p, line, line_len);
    buf_reset(&p->line);
    if (rc) return rc;
  }
  return AW_OK;
}

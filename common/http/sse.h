/* sse.h -- incremental Server-Sent Events parser (prefix sse_).
 *
 * Implements the WHATWG event-stream grammar: lines end in CRLF, LF or CR
 * (a CR at the end of one chunk followed by LF in the next is one line end);
 * "field: value" with one optional space removed; multiple data lines are
 * joined with "\n"; lines starting with ':' are comments; unknown fields are
 * ignored; a blank line dispatches the event (an event with no data line is
 * not dispatched); a trailing incomplete event at end of stream is dropped.
 * The result is the same for any split of the byte stream into chunks.
 *
 * Memory is bounded: the pending line plus the event being built may not
 * exceed max_event_bytes, else sse_feed fails with AW_ETOOBIG.  The parser
 * scans with memchr and copies only the bytes of the current event, so a
 * stream read in large chunks costs little per event.
 */
#ifndef AW_SSE_H
#define AW_SSE_H

#include <stddef.h>
#include "aw_error.h"
#include "buf.h"

typedef struct sse_event {
  const char *event;   /* "message" when the stream gave no event: field */
  size_t event_len;
  const char *data;    /* data lines joined by '\n'; NUL-terminated */
  size_t data_len;
  const char *id;      /* last id seen, "" if none; NUL-terminated */
} sse_event;

/** Called for each complete event.  Return 0 to go on; non-zero stops the
 *  parse and sse_feed returns AW_ECANCELLED.  Pointers are valid only during
 *  the call. */
typedef int (*sse_event_cb)(void *opaque, const sse_event *ev);

typedef struct sse_parser {
  buf line;        /* incomplete line carried between chunks */
  buf data;        /* data of the event being built */
  buf event;       /* event type of the event being built */
  buf id;          /* last event id */
  int has_data;    /* a data: line was seen in this event */
  int last_cr;     /* previous chunk ended in CR (swallow a leading LF) */
  size_t max_event_bytes;
  sse_event_cb cb;
  void *opaque;
} sse_parser;

/** Initialise; allocates nothing until data arrives. */
void sse_init(sse_parser *p, size_t max_event_bytes, sse_event_cb cb, void *opaque);
/** Feed len bytes.  AW_ETOOBIG past the bound, AW_ECANCELLED if cb stopped. */
int sse_feed(sse_parser *p, const char *data, size_t len) AW_MUST_CHECK;
/** Release memory.  The parser may be initialised again. */
void sse_free(sse_parser *p);

#endif

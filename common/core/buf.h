/* buf.h -- bounded growable byte buffer (prefix buf_), after curl's dynbuf.
 *
 * Every buffer has a maximum set at init; an append that would exceed it
 * frees the contents and fails with AW_ETOOBIG.  That is how "memory stays
 * bounded whatever the input" holds: nothing in this project grows without a
 * cap.  The contents are always NUL-terminated (the NUL is not counted in
 * len and does not count against max).
 */
#ifndef AW_BUF_H
#define AW_BUF_H

#include <stddef.h>
#include "aw_error.h"

typedef struct buf {
  char *data;   /* NULL until the first append */
  size_t len;   /* bytes used, excluding the trailing NUL */
  size_t cap;   /* bytes allocated */
  size_t max;   /* hard limit on len */
} buf;

/** Initialise an empty buffer that may hold up to max bytes. Allocates nothing. */
void buf_init(buf *b, size_t max);
/** Free the contents; the buffer stays usable (empty, same max). */
void buf_free(buf *b);
/** Forget the contents but keep the allocation. */
void buf_reset(buf *b);
/** Append n bytes. AW_ETOOBIG (contents freed) past max, AW_ENOMEM. */
int buf_append(buf *b, const void *p, size_t n) AW_MUST_CHECK;
/** Append a NUL-terminated string. */
int buf_appends(buf *b, const char *s) AW_MUST_CHECK;
/** Append printf-formatted text. */
int buf_appendf(buf *b, const char *fmt, ...) AW_MUST_CHECK AW_PRINTF(2, 3);
/** Drop the first n bytes (n <= len), moving the rest to the front. */
void buf_consume(buf *b, size_t n);
/** Take the contents: returns the malloc'd data (caller frees), leaves b empty.
 *  Returns NULL for an empty buffer that never allocated. */
char *buf_take(buf *b, size_t *len);

#endif

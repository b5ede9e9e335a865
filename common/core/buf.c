/* buf.c -- bounded growable byte buffer. */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf *b, size_t max) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->max = max;
}

void buf_free(buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

void buf_reset(buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

/* Make room for n more bytes plus the NUL.  Capacity doubles (from 64) so an
 * append is amortised O(1); it is clamped to max+1 so a full buffer never
 * holds more than its limit. */
static int grow(buf *b, size_t n) {
  if (n > b->max || b->len > b->max - n) {
    buf_free(b);
    return AW_ETOOBIG;
  }
  size_t need = b->len + n + 1;
  if (need <= b->cap) return AW_OK;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  if (cap > b->max + 1) cap = b->max + 1;
  char *p = realloc(b->data, cap);
  if (!p) {
    buf_free(b);
    return AW_ENOMEM;
  }
  b->data = p;
  b->cap = cap;
  return AW_OK;
}

int buf_append(buf *b, const void *p, size_t n) {
  int rc = grow(b, n);
  if (rc) return rc;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return AW_OK;
}

int buf_appends(buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

int buf_appendf(buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return AW_EINVAL;
  int rc = grow(b, (size_t)n);
  if (rc) return rc;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return AW_OK;
}

void buf_consume(buf *b, size_t n) {
  if (n >= b->len) {
    buf_reset(b);
    return;
  }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
  b->data[b->len] = '\0';
}

char *buf_take(buf *b, size_t *len) {
  char *p = b->data;
  if (len) *len = b->len;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

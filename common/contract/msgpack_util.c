/* msgpack_util.c -- the shared msgpack scanner, UTF-8 checks and packer. */
#include "msgpack_util.h"

#include <string.h>

/* ---- UTF-8 ----------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (n > 0 bytes), 0 if none.
 * Strict: no overlongs, no surrogates, nothing above U+10FFFF. */
size_t mpu_utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0) {
    if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;
    if (c == 0xED && s[1] >= 0xA0) return 0;
    return 3;
  }
  if (c < 0xF5) {
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0;
    if (c == 0xF4 && s[1] >= 0x90) return 0;
    return 4;
  }
  return 0;
}

bool mpu_utf8_valid(const char *p, size_t n) {
  const unsigned char *s = (const unsigned char *)p;
  for (size_t i = 0, k; i < n; i += k)
    if (!(k = mpu_utf8_seq(s + i, n - i))) return false;
  return true;
}

/* ---- msgpack scanner (no allocation) -------------------------------------- */

static uint64_t be(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* Read one value's header at *off and move past it (str/bin/ext: also past
 * the payload; containers: only the header).  -1 on truncation or 0xc1. */
int mpu_read(const uint8_t *p, size_t len, size_t *off, mpu_head *h) {
  size_t o = *off, lb = 0, fixed = 0;
  if (o >= len) return -1;
  uint8_t b = p[o++];
  memset(h, 0, sizeof *h);
  if (b <= 0x7f) {
    h->kind = MPU_INT;
    h->u = b;
  } else if (b >= 0xe0) {
    h->kind = MPU_INT;
    h->neg = true;
    h->u = (uint64_t)(int64_t)(int8_t)b;
  } else if (b <= 0x8f) {
    h->kind = MPU_MAP;
    h->n = b & 0x0f;
  } else if (b <= 0x9f) {
    h->kind = MPU_ARRAY;
    h->n = b & 0x0f;
  } else if (b <= 0xbf) {
    h->kind = MPU_STR;
    h->n = b & 0x1f;
  } else if (b == 0xc0) {
    h->kind = MPU_NIL;
  } else if (b == 0xc2 || b == 0xc3) {
    h->kind = MPU_BOOL;
  } else if (b >= 0xc4 && b <= 0xc6) {
    h->kind = MPU_BIN;
    lb = (size_t)1 << (b - 0xc4);
  } else if (b >= 0xc7 && b <= 0xc9) {
    h->kind = MPU_EXT;
    lb = (size_t)1 << (b - 0xc7);
    fixed = 1;
  } else if (b == 0xca || b == 0xcb) {
    h->kind = MPU_FLOAT;
    fixed = b == 0xca ? 4 : 8;
  } else if (b >= 0xcc && b <= 0xd3) {
    h->kind = MPU_INT;
    fixed = (size_t)1 << ((b - 0xcc) & 3);
  } else if (b >= 0xd4 && b <= 0xd8) {
    h->kind = MPU_EXT;
    h->n = (uint64_t)1 << (b - 0xd4);
    fixed = 1;
  } else if (b >= 0xd9 && b <= 0xdb) {
    h->kind = MPU_STR;
    lb = (size_t)1 << (b - 0xd9);
  } else if (b == 0xdc || b == 0xdd) {
    h->kind = MPU_ARRAY;
    lb = (size_t)2 << (b - 0xdc);
  } else if (b == 0xde || b == 0xdf) {
    h->kind = MPU_MAP;
    lb = (size_t)2 << (b - 0xde);
  } else {
    return -1; /* 0xc1 */
  }
  if (lb) {
    if (len - o < lb) return -1;
    h->n = be(p + o, lb);
    o += lb;
  }
  if (len - o < fixed) return -1;
  if (h->kind == MPU_INT && fixed) {
    uint64_t v = be(p + o, fixed);
    if (b >= 0xd0) { /* signed: sign-extend from fixed bytes */
      if (fixed < 8 && (v >> (fixed * 8 - 1)) & 1) v |= ~(uint64_t)0 << (fixed * 8);
      h->neg = (int64_t)v < 0;
    }
    h->u = v;
  }
  o += fixed;
  if (h->kind == MPU_STR || h->kind == MPU_BIN || h->kind == MPU_EXT) {
    if (h->n > len - o) return -1;
    h->body = p + o;
    o += (size_t)h->n;
  }
  *off = o;
  return 0;
}

/* Skip exactly one complete value at *off, checking it all.  Iterative with
 * a fixed stack, so hostile nesting cannot exhaust the C stack. */
int mpu_skip(const uint8_t *p, size_t len, size_t *off) {
  uint64_t pending[MPU_MAX_DEPTH + 1];
  int depth = 0;
  pending[0] = 1;
  while (depth >= 0) {
    if (pending[depth] == 0) {
      depth--;
      continue;
    }
    pending[depth]--;
    mpu_head h;
    if (mpu_read(p, len, off, &h)) return -1;
    if (h.kind != MPU_ARRAY && h.kind != MPU_MAP) continue;
    uint64_t items = h.kind == MPU_MAP ? h.n * 2 : h.n;
    if (items > len - *off) return -1; /* every element takes >= 1 byte */
    if (items == 0) continue;
    if (depth == MPU_MAX_DEPTH) return -1;
    pending[++depth] = items;
  }
  return 0;
}

/* ---- packing into a bounded buf -------------------------------------------- */

static int enc_write(void *data, const char *p, size_t n) {
  mpu_enc *e = data;
  if (e->err) return -1;
  int rc = buf_append(e->b, p, n);
  if (rc) {
    e->err = rc;
    return -1;
  }
  return 0;
}

void mpu_enc_init(mpu_enc *e, buf *b) {
  e->b = b;
  e->err = 0;
  msgpack_packer_init(&e->pk, e, enc_write);
}

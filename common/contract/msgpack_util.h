/* msgpack_util.h -- what the message codecs share (prefix mpu_): a bounds-
 * checked msgpack scanner that allocates nothing, strict UTF-8 checks, and
 * a msgpack-c packer that writes into a bounded buf.
 *
 * The scanner exists because msgpack-c's unpacker trusts declared sizes
 * (a 5-byte header can make it try to allocate 128 GiB): every decoder
 * scans the bytes first, within MPU_MAX_DEPTH, before unpacking anything.
 */
#ifndef AW_MSGPACK_UTIL_H
#define AW_MSGPACK_UTIL_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "buf.h"

#define MPU_MAX_DEPTH 24 /* nesting allowed in any message */

typedef enum { MPU_NIL, MPU_BOOL, MPU_INT, MPU_FLOAT, MPU_STR, MPU_BIN, MPU_EXT, MPU_ARRAY, MPU_MAP } mpu_kind;

/** One value's header, as read by mpu_read. */
typedef struct mpu_head {
  mpu_kind kind;
  uint64_t n;          /* element count (array/map) or payload bytes (str/bin/ext) */
  const uint8_t *body; /* str/bin/ext payload */
  bool neg;            /* MPU_INT: negative, value is (int64_t)u */
  uint64_t u;          /* MPU_INT value */
} mpu_head;

/** Read one value's header at *off and move past it (str/bin/ext: also past
 *  the payload; containers: only the header).  -1 on truncation or 0xc1. */
int mpu_read(const uint8_t *p, size_t len, size_t *off, mpu_head *h);

/** Skip exactly one complete value at *off, checking it all, nested at most
 *  MPU_MAX_DEPTH deep.  Iterative with a fixed stack.  -1 when it is not
 *  one well-formed value. */
int mpu_skip(const uint8_t *p, size_t len, size_t *off);

/** Length of the valid UTF-8 sequence at s (n > 0 bytes), 0 if none.
 *  Strict: no overlongs, no surrogates, nothing above U+10FFFF. */
size_t mpu_utf8_seq(const unsigned char *s, size_t n);

/** Is p[0..n) valid UTF-8? */
bool mpu_utf8_valid(const char *p, size_t n);

/** A msgpack-c packer writing into a bounded buf; the first failure of the
 *  buf (AW_ETOOBIG, AW_ENOMEM) is kept in err and stops all later writes. */
typedef struct mpu_enc {
  msgpack_packer pk;
  buf *b;
  int err;
} mpu_enc;

/** Start packing into b (appending). */
void mpu_enc_init(mpu_enc *e, buf *b);

#endif

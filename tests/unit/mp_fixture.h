/* mp_fixture.h -- what the tests of the Kafka contract (test_contract*.c,
 * test_tool_sign.c) build and read, in one place (prefix mpfx_): messages
 * packed by hand (for what JSON cannot say: bin, ext, non-string keys,
 * invalid bytes) or from JSON (every other case, so that it reads as the
 * message a producer would send), the JSON view of msgpack bytes, and the
 * files of the source tree the contract is checked against (schemas/, the
 * shared vectors of schemas/examples/), shape against shape.
 *
 * Why a fixture: each test file had its own copy of these, and a fix to
 * one copy (say, how the source tree is found) did not reach the others.
 * The helpers fail the calling test (cmocka) rather than return errors: a
 * test that cannot build its input has nothing to test.
 */
#ifndef AW_MP_FIXTURE_H
#define AW_MP_FIXTURE_H

#include <stddef.h>

#include <cJSON.h>
#include <msgpack.h>

/** A message packed by hand: a buffer and a packer writing to it.  Pack
 *  with msgpack_pack_*(&m.pk, ...); the bytes are m.sb.data / m.sb.size;
 *  msgpack_sbuffer_destroy(&m.sb) frees them. */
typedef struct mpfx {
  msgpack_sbuffer sb;
  msgpack_packer pk;
} mpfx;

/** An empty message. */
void mpfx_begin(mpfx *m);

/** Pack the C string s (without its NUL) as a msgpack str. */
void mpfx_str(mpfx *m, const char *s);

/** Pack s[0..n) as a msgpack str (any bytes: NULs, invalid UTF-8). */
void mpfx_strn(mpfx *m, const char *s, size_t n);

/** JSON text -> msgpack bytes in sb (initialised here; the caller destroys
 *  it): integral numbers below 9e15 as integers, others as doubles, keys
 *  in order.  Raw bytes in strings (even invalid UTF-8) pass through cJSON
 *  unchanged; NUL cannot be said (mpfx_strn can). */
void mpfx_from_json(const char *json, msgpack_sbuffer *sb);

/** As mpfx_from_json, but every string under a key named "data" is
 *  base64 (the JSON view's form of bin) and is packed as bin: how the
 *  examples of messages carrying files (schemas/examples) become msgpack. */
void mpfx_from_json_bin(const char *json, msgpack_sbuffer *sb);

/** contract_to_json's view of p[0..n), as a malloc'd string the caller
 *  frees.  With rc, contract_to_json's result goes to *rc (the string is
 *  then what it wrote, "" when nothing); without, it must succeed. */
char *mpfx_json_view(const void *p, size_t n, int *rc);

/** The file rel (e.g. "schemas/examples/x.json") of the source tree, found
 *  from this file's own path or $AW_SOURCE_DIR, as a malloc'd NUL-terminated
 *  string the caller frees. */
char *mpfx_source_file(const char *rel);

/** Fail the test unless a (an example) and b (what the encoder wrote) have
 *  the same object keys at every level and the same JSON types (arrays:
 *  their first items); path names the root in the message. */
void mpfx_same_shape(const cJSON *a, const cJSON *b, const char *path);

#endif

/* hmac_key.h -- what the two HMAC schemes of the contract share (prefix
 * hkey_): a key ring of a current and an optional previous key, and
 * unpadded base64url.
 *
 * The correlation ids (correlation.h, keyed by AW_TOOL_SECRET) and the tool
 * request/reply signatures (tool_sign.h, keyed by AW_TOOL_REQUEST_KEY) are
 * two schemes with two keys and two framings, but they keep and rotate keys
 * the same way and spell their bytes the same way; one copy of that code
 * keeps the two from drifting apart (a key cleansed in one and not in the
 * other, a non-canonical spelling accepted by one of them).
 *
 * Pure functions, any thread; keys are wiped with OPENSSL_cleanse.
 */
#ifndef AW_HMAC_KEY_H
#define AW_HMAC_KEY_H

#include <stddef.h>
#include "aw_error.h"

/** A current key and, while rotating, the previous one.  Keys longer than
 *  HMAC-SHA256's 64-byte block are kept as their SHA-256, which is what
 *  HMAC does with them anyway. */
typedef struct hkey_ring {
  unsigned char cur[64];
  size_t cur_len;              /* 0: not initialised */
  unsigned char prev[64];
  size_t prev_len;             /* 0: no previous key */
} hkey_ring;

/** Set the current key (min..max bytes, else AW_EINVAL; max 0: no upper
 *  bound); the previous key is dropped.  On failure the ring is cleared. */
int hkey_ring_init(hkey_ring *k, const void *key, size_t len, size_t min, size_t max) AW_MUST_CHECK;

/** Set (or with NULL, 0 drop) the previous key, same bounds; AW_EINVAL
 *  before hkey_ring_init. */
int hkey_ring_set_previous(hkey_ring *k, const void *key, size_t len, size_t min, size_t max) AW_MUST_CHECK;

/** Wipe both keys.  Safe on NULL. */
void hkey_ring_clear(hkey_ring *k);

/** Characters of n bytes in unpadded base64url. */
#define HKEY_B64_LEN(n) (((n) * 4 + 2) / 3)

/** Write n bytes as HKEY_B64_LEN(n) base64url characters (no padding, no
 *  NUL) at o; returns the end. */
char *hkey_b64url_encode(const unsigned char *in, size_t n, char *o);

/** Decode exactly HKEY_B64_LEN(n) characters into n bytes: 0, or -1 for a
 *  character outside the alphabet or spare bits that are not zero (one
 *  spelling per value: two spellings never decode alike). */
int hkey_b64url_decode(const char *s, unsigned char *out, size_t n);

#endif

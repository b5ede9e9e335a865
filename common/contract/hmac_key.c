/* hmac_key.c -- key rings and base64url for the contract's HMAC schemes
 * (see hmac_key.h for why they share them). */
#include "hmac_key.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int set_key(unsigned char dst[64], size_t *dst_len, const void *key, size_t len, size_t min, size_t max) {
  if (!key || len < min || (max && len > max)) return AW_EINVAL;
  if (len <= 64) {
    memcpy(dst, key, len);
    *dst_len = len;
    return AW_OK;
  }
  if (!SHA256(key, len, dst)) return AW_EFATAL;
  *dst_len = SHA256_DIGEST_LENGTH;
  return AW_OK;
}

int hkey_ring_init(hkey_ring *k, const void *key, size_t len, size_t min, size_t max) {
  if (!k) return AW_EINVAL;
  hkey_ring_clear(k);
  int rc = set_key(k->cur, &k->cur_len, key, len, min, max);
  if (rc) hkey_ring_clear(k);
  return rc;
}

int hkey_ring_set_previous(hkey_ring *k, const void *key, size_t len, size_t min, size_t max) {
  if (!k || !k->cur_len) return AW_EINVAL;
  OPENSSL_cleanse(k->prev, sizeof k->prev);
  k->prev_len = 0;
  if (!key && !len) return AW_OK;
  return set_key(k->prev, &k->prev_len, key, len, min, max);
}

void hkey_ring_clear(hkey_ring *k) {
  if (k) OPENSSL_cleanse(k, sizeof *k);
}

char *hkey_b64url_encode(const unsigned char *in, size_t n, char *o) {
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)in[i] << 16;
    if (i + 1 < n) v |= (uint32_t)in[i + 1] << 8;
    if (i + 2 < n) v |= in[i + 2];
    *o++ = B64URL[v >> 18 & 63];
    *o++ = B64URL[v >> 12 & 63];
    if (i + 1 < n) *o++ = B64URL[v >> 6 & 63];
    if (i + 2 < n) *o++ = B64URL[v & 63];
  }
  return o;
}

static int b64val(unsigned char ch) {
  if (ch >= 'A' && ch <= 'Z') return ch - 'A';
  if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
  if (ch >= '0' && ch <= '9') return ch - '0' + 52;
  if (ch == '-') return 62;
  if (ch == '_') return 63;
  return -1;
}

int hkey_b64url_decode(const char *s, unsigned char *out, size_t n) {
  uint32_t acc = 0;
  int bits = 0;
  size_t got = 0;
  for (size_t i = 0; i < HKEY_B64_LEN(n); i++) {
    int v = b64val((unsigned char)s[i]);
    if (v < 0) return -1;
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (got == n) return -1;
      out[got++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  /* Left-over bits must be zero, or two spellings would decode alike. */
  return got == n && acc == 0 ? 0 : -1;
}

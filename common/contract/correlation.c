/* correlation.c -- tool-call correlation ids (see correlation.h).
 *
 * All cryptography is OpenSSL's (HMAC, SHA-256, CRYPTO_memcmp,
 * OPENSSL_cleanse); randomness is the kernel's getrandom(2).  What is done
 * here is framing: the MAC input length-prefixes every variable part so that
 * ("ab", "c") and ("a", "bc") cannot share a tag, and starts with the
 * version so that a future "tc2." cannot be confused with this one.  The
 * base64 decoder refuses non-canonical text (a last character with spare
 * bits set), so each id has exactly one spelling and its digest is stable.
 * The two versions share everything but the prefix and the bound ids: tc2
 * adds the reply topic, so that which topic a reply may come from needs no
 * state (a worker checks the topic it consumed the reply from).
 */
#include "correlation.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <string.h>
#include <sys/random.h>

#define NONCE_LEN 16
#define TAG_LEN 16
#define RAW_LEN (NONCE_LEN + 8 + TAG_LEN) /* 40 bytes -> 54 base64 characters */
#define B64_LEN HKEY_B64_LEN(RAW_LEN)
#define PREFIX_LEN (sizeof CORR_PREFIX - 1)

_Static_assert(PREFIX_LEN + B64_LEN == CORR_ID_LEN, "CORR_ID_LEN matches the layout");
_Static_assert(sizeof CORR_PREFIX_PINNED == sizeof CORR_PREFIX, "both versions' prefixes are as long");

int corr_key_init(corr_key *k, const void *secret, size_t len) {
  return hkey_ring_init(k, secret, len, CORR_MIN_SECRET, 0);
}

int corr_key_set_previous(corr_key *k, const void *secret, size_t len) {
  return hkey_ring_set_previous(k, secret, len, CORR_MIN_SECRET, 0);
}

void corr_key_clear(corr_key *k) { hkey_ring_clear(k); }

static void put_be32(unsigned char *p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (unsigned char)v;
}

/* An id we bind: 1..CORR_MAX_BOUND_ID bytes. */
static int bound_len(const char *s, size_t *n) {
  if (!s) return -1;
  *n = strnlen(s, CORR_MAX_BOUND_ID + 1);
  return *n == 0 || *n > CORR_MAX_BOUND_ID ? -1 : 0;
}

/* tag = HMAC-SHA256(key, framing)[0..16).  nonce_deadline: the first 24 raw
 * bytes; ver: "tc1" (3 ids) or "tc2" (4: the reply topic too). */
static int make_tag(const unsigned char *key, size_t key_len, const char ver[4],
                    const unsigned char *nonce_deadline, const char *const *ids, const size_t *lens, int nids,
                    unsigned char tag[TAG_LEN]) {
  unsigned char msg[4 + NONCE_LEN + 8 + 4 * (4 + CORR_MAX_BOUND_ID)];
  size_t m = 0;
  memcpy(msg, ver, 4); /* with its NUL */
  m = 4;
  memcpy(msg + m, nonce_deadline, NONCE_LEN + 8);
  m += NONCE_LEN + 8;
  for (int i = 0; i < nids; i++) {
    put_be32(msg + m, (uint32_t)lens[i]);
    m += 4;
    memcpy(msg + m, ids[i], lens[i]);
    m += lens[i];
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  unsigned char *ok = HMAC(EVP_sha256(), key, (int)key_len, msg, m, md, &md_len);
  OPENSSL_cleanse(msg, sizeof msg);
  if (!ok || md_len < TAG_LEN) return AW_EFATAL;
  memcpy(tag, md, TAG_LEN);
  OPENSSL_cleanse(md, sizeof md);
  return AW_OK;
}

/* Make a "<ver>." id binding nids ids. */
static int make_id(const corr_key *k, const char ver[4], const char *const *ids, int nids, int64_t deadline_ms,
                   char *out, size_t outsz) {
  size_t lens[4];
  if (!k || !k->cur_len || !out || outsz < CORR_ID_SIZE || deadline_ms < 0) return AW_EINVAL;
  for (int i = 0; i < nids; i++)
    if (bound_len(ids[i], &lens[i])) return AW_EINVAL;

  unsigned char raw[RAW_LEN];
  for (size_t got = 0; got < NONCE_LEN;) {
    ssize_t r = getrandom(raw + got, NONCE_LEN - got, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return AW_EIO;
    }
    got += (size_t)r;
  }
  uint64_t d = (uint64_t)deadline_ms;
  for (int i = 7; i >= 0; i--, d >>= 8) raw[NONCE_LEN + i] = (unsigned char)d;
  int rc = make_tag(k->cur, k->cur_len, ver, raw, ids, lens, nids, raw + NONCE_LEN + 8);
  if (rc) return rc;

  memcpy(out, ver, 3);
  out[3] = '.';
  char *o = hkey_b64url_encode(raw, RAW_LEN, out + PREFIX_LEN);
  *o = '\0';
  return AW_OK;
}

int corr_new(const corr_key *k, const char *conversation_id, const char *run_id,
             const char *tool_call_id, int64_t deadline_ms, char *out, size_t outsz) {
  const char *ids[3] = {conversation_id, run_id, tool_call_id};
  return make_id(k, "tc1", ids, 3, deadline_ms, out, outsz);
}

int corr_new_pinned(const corr_key *k, const char *conversation_id, const char *run_id, const char *tool_call_id,
                    const char *reply_topic, int64_t deadline_ms, char *out, size_t outsz) {
  const char *ids[4] = {conversation_id, run_id, tool_call_id, reply_topic};
  return make_id(k, "tc2", ids, 4, deadline_ms, out, outsz);
}

/* Check a "<ver>." id binding nids ids. */
static int check_id(const corr_key *k, const char ver[4], const char *id, const char *const *ids, int nids,
                    int64_t *deadline_ms_out) {
  size_t lens[4];
  if (!k || !k->cur_len || !id) return AW_EINVAL;
  for (int i = 0; i < nids; i++)
    if (bound_len(ids[i], &lens[i])) return AW_EINVAL;
  if (strnlen(id, CORR_ID_LEN + 1) != CORR_ID_LEN || memcmp(id, ver, 3) || id[3] != '.') return AW_EINVAL;
  unsigned char raw[RAW_LEN];
  if (hkey_b64url_decode(id + PREFIX_LEN, raw, RAW_LEN)) return AW_EINVAL;
  uint64_t d = 0;
  for (int i = 0; i < 8; i++) d = d << 8 | raw[NONCE_LEN + i];
  if (d > INT64_MAX) return AW_EINVAL; /* corr_new never makes one */

  const unsigned char *tag = raw + NONCE_LEN + 8;
  unsigned char want[TAG_LEN];
  int rc = make_tag(k->cur, k->cur_len, ver, raw, ids, lens, nids, want);
  if (rc) return rc;
  int ok = CRYPTO_memcmp(want, tag, TAG_LEN) == 0;
  if (!ok && k->prev_len) {
    if ((rc = make_tag(k->prev, k->prev_len, ver, raw, ids, lens, nids, want))) return rc;
    ok = CRYPTO_memcmp(want, tag, TAG_LEN) == 0;
  }
  OPENSSL_cleanse(want, sizeof want);
  if (!ok) return AW_EINVAL;
  if (deadline_ms_out) *deadline_ms_out = (int64_t)d;
  return AW_OK;
}

int corr_verify(const corr_key *k, const char *id, const char *conversation_id, const char *run_id,
                const char *tool_call_id, int64_t *deadline_ms_out) {
  const char *ids[3] = {conversation_id, run_id, tool_call_id};
  return check_id(k, "tc1", id, ids, 3, deadline_ms_out);
}

int corr_verify_pinned(const corr_key *k, const char *id, const char *conversation_id, const char *run_id,
                       const char *tool_call_id, const char *reply_topic, int64_t *deadline_ms_out) {
  const char *ids[4] = {conversation_id, run_id, tool_call_id, reply_topic};
  return check_id(k, "tc2", id, ids, 4, deadline_ms_out);
}

int corr_digest(const char *id, char out[CORR_DIGEST_SIZE]) {
  if (!id || !out) return AW_EINVAL;
  unsigned char md[SHA256_DIGEST_LENGTH];
  if (!SHA256((const unsigned char *)id, strlen(id), md)) return AW_EFATAL;
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[32] = '\0';
  return AW_OK;
}

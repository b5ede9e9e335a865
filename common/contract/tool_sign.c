/* tool_sign.c -- signatures of tool requests and replies (see tool_sign.h,
 * and schemas/README.md "Signatures" for the normative format).
 *
 * Design notes:
 *  - All cryptography is OpenSSL's (HMAC, SHA-256, CRYPTO_memcmp,
 *    OPENSSL_cleanse).  What is done here is framing: every variable field
 *    is length-prefixed and the message starts with its kind and version,
 *    so no two different (kind, fields) can share a byte string, and a
 *    request signature can never pass as a reply's or a future v2's.
 *  - The canonical message is built in one exact-size allocation and MAC'd
 *    in one call: requests are bounded (1 MiB by default), and the copy
 *    costs far less than the Kafka round trip it protects.  A reply's
 *    content, possibly large, is hashed incrementally instead.
 *  - The header parser is written against hostile input (fuzz_tool_sign.c):
 *    bounded length and entry count, exact base64url length, canonical
 *    trailing bits, no allocation.
 *  - Verification computes one MAC per key (at most two) and compares it
 *    with every v1 entry in constant time; which key matched is not
 *    reported (nothing a caller should branch on).
 */
#include "tool_sign.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAC_LEN 32
#define REQ_DOMAIN "aw-tool-request/v1"  /* followed by its NUL */
#define REP_DOMAIN "aw-tool-reply/v1"

/* ---- keys ------------------------------------------------------------------ */

int tsig_key_init(tsig_key *k, const void *key, size_t len) {
  return hkey_ring_init(k, key, len, TSIG_MIN_KEY, TSIG_MAX_KEY);
}

int tsig_key_set_previous(tsig_key *k, const void *key, size_t len) {
  return hkey_ring_set_previous(k, key, len, TSIG_MIN_KEY, TSIG_MAX_KEY);
}

void tsig_key_clear(tsig_key *k) { hkey_ring_clear(k); }

/* ---- canonical messages ------------------------------------------------------ */

static unsigned char *put_u32(unsigned char *p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (unsigned char)v;
  return p + 4;
}

static unsigned char *put_u64(unsigned char *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (unsigned char)v;
  return p + 8;
}

static unsigned char *put_s(unsigned char *p, const char *s, size_t n) {
  p = put_u32(p, (uint32_t)n);
  if (n) memcpy(p, s, n);
  return p + n;
}

/* The request's string fields in message order (absent: ""). */
enum { RS_CORR, RS_NAME, RS_CALL, RS_CONV, RS_EVENT, RS_THREAD, RS_RUN, RS_TOPIC, RS_ARGS, RS_N };

static int request_fields(const ctool_request *r, const char *s[RS_N], size_t n[RS_N]) {
  if (!r || !r->correlation_id || !r->name || !r->tool_call_id || !r->conversation_id || !r->reply_topic ||
      !r->arguments_json || r->deadline_ms < 0 || r->round < 0)
    return AW_EINVAL;
  s[RS_CORR] = r->correlation_id;
  s[RS_NAME] = r->name;
  s[RS_CALL] = r->tool_call_id;
  s[RS_CONV] = r->conversation_id;
  s[RS_EVENT] = r->event_id ? r->event_id : "";
  s[RS_THREAD] = r->thread_id ? r->thread_id : "";
  s[RS_RUN] = r->run_id ? r->run_id : "";
  s[RS_TOPIC] = r->reply_topic;
  for (int i = 0; i < RS_ARGS; i++) n[i] = strlen(s[i]);
  s[RS_ARGS] = r->arguments_json;
  n[RS_ARGS] = r->arguments_json_len;
  for (int i = 0; i < RS_N; i++)
    if (n[i] > UINT32_MAX) return AW_EINVAL;
  return AW_OK;
}

/* M of a request, in one malloc'd block (*out, *len); free with free(). */
static int request_msg(const ctool_request *r, int64_t ts_ms, unsigned char **out, size_t *len) {
  const char *s[RS_N];
  size_t n[RS_N];
  if (ts_ms < 0) return AW_EINVAL;
  int rc = request_fields(r, s, n);
  if (rc) return rc;
  size_t total = sizeof REQ_DOMAIN + 8 + 8 + 4;
  for (int i = 0; i < RS_N; i++) {
    if (n[i] > SIZE_MAX - total - 4) return AW_ETOOBIG;
    total += 4 + n[i];
  }
  unsigned char *m = malloc(total), *p = m;
  if (!m) return AW_ENOMEM;
  memcpy(p, REQ_DOMAIN, sizeof REQ_DOMAIN); /* with its NUL */
  p += sizeof REQ_DOMAIN;
  p = put_u64(p, (uint64_t)ts_ms);
  p = put_u64(p, (uint64_t)r->deadline_ms);
  p = put_u32(p, (uint32_t)r->round);
  for (int i = 0; i < RS_N; i++) p = put_s(p, s[i], n[i]);
  *out = m;
  *len = (size_t)(p - m);
  return AW_OK;
}

/* SHA-256 of a reply's content C, fed in pieces (the output may be large). */
static int reply_digest(const ctool_reply *r, unsigned char md[SHA256_DIGEST_LENGTH]) {
  if (!r || !r->correlation_id || (r->output != NULL) == (r->error_code != NULL)) return AW_EINVAL;
  const char *parts[2];
  size_t lens[2], np;
  const char *kind;
  size_t kind_len;
  if (r->output) {
    kind = "output";
    kind_len = sizeof "output";
    parts[0] = r->output;
    lens[0] = r->output_len;
    np = 1;
  } else {
    kind = "error";
    kind_len = sizeof "error";
    parts[0] = r->error_code;
    lens[0] = strlen(r->error_code);
    parts[1] = r->error_message ? r->error_message : "";
    lens[1] = strlen(parts[1]);
    np = 2;
  }
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  if (!c) return AW_ENOMEM;
  int ok = EVP_DigestInit_ex(c, EVP_sha256(), NULL) && EVP_DigestUpdate(c, kind, kind_len); /* with its NUL */
  for (size_t i = 0; ok && i < np; i++) {
    unsigned char l[4];
    if (lens[i] > UINT32_MAX) ok = 0;
    else {
      put_u32(l, (uint32_t)lens[i]);
      ok = EVP_DigestUpdate(c, l, 4) && (lens[i] == 0 || EVP_DigestUpdate(c, parts[i], lens[i]));
    }
  }
  unsigned int mdl = 0;
  ok = ok && EVP_DigestFinal_ex(c, md, &mdl) && mdl == SHA256_DIGEST_LENGTH;
  EVP_MD_CTX_free(c);
  return ok ? AW_OK : AW_EFATAL;
}

/* M of a reply: fixed size but for the correlation id (<= 128 bytes by the
 * contract; longer ones are refused by the decoder and here). */
#define REP_MSG_MAX (sizeof REP_DOMAIN + 4 + CTOOL_MAX_CORRELATION_ID + SHA256_DIGEST_LENGTH)

static int reply_msg(const ctool_reply *r, unsigned char m[REP_MSG_MAX], size_t *len) {
  unsigned char md[SHA256_DIGEST_LENGTH];
  int rc = reply_digest(r, md);
  if (rc) return rc;
  size_t cl = strlen(r->correlation_id);
  if (cl > CTOOL_MAX_CORRELATION_ID) return AW_EINVAL;
  unsigned char *p = m;
  memcpy(p, REP_DOMAIN, sizeof REP_DOMAIN);
  p += sizeof REP_DOMAIN;
  p = put_s(p, r->correlation_id, cl);
  memcpy(p, md, sizeof md);
  p += sizeof md;
  *len = (size_t)(p - m);
  return AW_OK;
}

int tsig_request_message(const ctool_request *r, int64_t ts_ms, buf *out) {
  if (!out) return AW_EINVAL;
  unsigned char *m;
  size_t len;
  int rc = request_msg(r, ts_ms, &m, &len);
  if (rc) return rc;
  rc = buf_append(out, m, len);
  free(m);
  return rc;
}

int tsig_reply_message(const ctool_reply *r, buf *out) {
  if (!out) return AW_EINVAL;
  unsigned char m[REP_MSG_MAX];
  size_t len;
  int rc = reply_msg(r, m, &len);
  return rc ? rc : buf_append(out, m, len);
}

/* ---- MACs and the aw-sig value -------------------------------------------------- */

static int mac(const unsigned char *key, size_t key_len, const unsigned char *m, size_t len,
               unsigned char out[MAC_LEN]) {
  unsigned int n = 0;
  if (!HMAC(EVP_sha256(), key, (int)key_len, m, len, out, &n) || n != MAC_LEN) return AW_EFATAL;
  return AW_OK;
}

/* "v1=<cur>" or "v1=<cur>,v1=<prev>" for message m. */
static int sign_msg(const tsig_key *k, const unsigned char *m, size_t len, char sig[TSIG_HEADER_SIZE]) {
  if (!k || !k->cur_len || !sig) return AW_EINVAL;
  unsigned char md[MAC_LEN];
  char *o = sig;
  int rc = mac(k->cur, k->cur_len, m, len, md);
  if (rc == AW_OK) {
    memcpy(o, "v1=", 3);
    o = hkey_b64url_encode(md, MAC_LEN, o + 3);
  }
  if (rc == AW_OK && k->prev_len && (rc = mac(k->prev, k->prev_len, m, len, md)) == AW_OK) {
    memcpy(o, ",v1=", 4);
    o = hkey_b64url_encode(md, MAC_LEN, o + 4);
  }
  OPENSSL_cleanse(md, sizeof md);
  if (rc) return rc;
  *o = '\0';
  return AW_OK;
}

typedef struct sig_entries {
  unsigned char mac[TSIG_MAX_ENTRIES][MAC_LEN];
  size_t n;
} sig_entries;

/* Parse an aw-sig value: entries "v<digits>=<value>" separated by commas,
 * optional blanks around each; v1 values are 43 canonical base64url
 * characters.  Entries of other versions are skipped.  Returns NULL or the
 * failure reason. */
static const char *parse_sig(const void *sig, size_t len, sig_entries *e) {
  e->n = 0;
  if (!sig) return TSIG_R_MISSING;
  if (len == 0 || len > TSIG_MAX_HEADER) return TSIG_R_MALFORMED;
  const unsigned char *p = sig, *end = p + len;
  size_t entries = 0, others = 0;
  for (;;) {
    const unsigned char *q = memchr(p, ',', (size_t)(end - p));
    const unsigned char *a = p, *b = q ? q : end;
    while (a < b && (*a == ' ' || *a == '\t')) a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    if (++entries > TSIG_MAX_ENTRIES) return TSIG_R_MALFORMED;
    /* v, 1..3 digits without a leading zero, '=' */
    if (b - a < 3 || *a != 'v') return TSIG_R_MALFORMED;
    const unsigned char *d = a + 1;
    while (d < b && d - (a + 1) < 4 && *d >= '0' && *d <= '9') d++;
    size_t nd = (size_t)(d - (a + 1));
    if (nd == 0 || nd > 3 || d >= b || *d != '=' || a[1] == '0') return TSIG_R_MALFORMED;
    const unsigned char *val = d + 1;
    size_t vl = (size_t)(b - val);
    if (nd == 1 && a[1] == '1') {
      if (vl != TSIG_MAC_CHARS || hkey_b64url_decode((const char *)val, e->mac[e->n], MAC_LEN)) return TSIG_R_MALFORMED;
      e->n++;
    } else {
      if (vl == 0) return TSIG_R_MALFORMED;
      others++;
    }
    if (!q) break;
    p = q + 1;
  }
  if (e->n == 0) return others ? TSIG_R_VERSION : TSIG_R_MALFORMED;
  return NULL;
}

/* Does any entry carry the MAC of m under the current or previous key?
 * 1 yes, 0 no, < 0 an AW_E* failure of the crypto library. */
static int any_match(const tsig_key *k, const sig_entries *e, const unsigned char *m, size_t len) {
  const unsigned char *keys[2] = {k->cur, k->prev};
  size_t lens[2] = {k->cur_len, k->prev_len};
  int found = 0;
  for (int i = 0; i < 2; i++) {
    if (!lens[i]) continue;
    unsigned char want[MAC_LEN];
    int rc = mac(keys[i], lens[i], m, len, want);
    if (rc) return rc;
    for (size_t j = 0; j < e->n; j++) found |= CRYPTO_memcmp(want, e->mac[j], MAC_LEN) == 0;
    OPENSSL_cleanse(want, sizeof want);
  }
  return found;
}

int tsig_parse_ts(const void *ts, size_t len, int64_t *out) {
  const unsigned char *p = ts;
  if (!p || len == 0 || len > 19 || (len > 1 && p[0] == '0')) return AW_EINVAL;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (p[i] < '0' || p[i] > '9') return AW_EINVAL;
    v = v * 10 + (uint64_t)(p[i] - '0'); /* 19 digits fit in uint64 */
  }
  if (v > (uint64_t)INT64_MAX) return AW_EINVAL;
  if (out) *out = (int64_t)v;
  return AW_OK;
}

/* ---- requests ------------------------------------------------------------------ */

int tsig_request_sign(const tsig_key *k, const ctool_request *r, int64_t ts_ms, char sig[TSIG_HEADER_SIZE],
                      char ts[TSIG_TS_SIZE]) {
  if (!k || !k->cur_len || !sig || !ts) return AW_EINVAL;
  unsigned char *m;
  size_t len;
  int rc = request_msg(r, ts_ms, &m, &len);
  if (rc) return rc;
  rc = sign_msg(k, m, len, sig);
  free(m);
  if (rc == AW_OK) snprintf(ts, TSIG_TS_SIZE, "%lld", (long long)ts_ms);
  return rc;
}

int tsig_request_sign_encoded(const tsig_key *k, const void *value, size_t len, int64_t ts_ms,
                              char sig[TSIG_HEADER_SIZE], char ts[TSIG_TS_SIZE]) {
  ctool_request *r = NULL;
  int rc = ctool_request_decode(value, len, 0, &r, NULL, NULL, 0);
  if (rc == AW_OK) rc = tsig_request_sign(k, r, ts_ms, sig, ts);
  ctool_request_free(r);
  return rc;
}

/* Is a present arguments map exactly the conversion of arguments_json? */
static int arguments_match(const ctool_request *r) {
  if (!r->arguments) return 1;
  buf b;
  buf_init(&b, r->arguments_len);
  int rc = ctool_arguments_to_msgpack(r->arguments_json, r->arguments_json_len, &b);
  int same = rc == AW_OK && b.len == r->arguments_len && memcmp(b.data, r->arguments, b.len) == 0;
  buf_free(&b);
  if (rc == AW_ENOMEM) return AW_ENOMEM;
  return same;
}

static int refuse(const char **reason, const char *why) {
  if (reason) *reason = why;
  return AW_EINVAL;
}

int tsig_request_verify(const tsig_key *k, const ctool_request *r, const void *sig, size_t sig_len,
                        const void *ts, size_t ts_len, int64_t now_ms, int64_t max_skew_ms,
                        const char **reason) {
  if (reason) *reason = NULL;
  if (!k || !k->cur_len || !r) return refuse(reason, "internal_error");
  if (!sig || !ts) return refuse(reason, TSIG_R_MISSING);
  sig_entries e;
  const char *why = parse_sig(sig, sig_len, &e);
  if (why) return refuse(reason, why);
  int64_t t;
  if (tsig_parse_ts(ts, ts_len, &t)) return refuse(reason, TSIG_R_MALFORMED);
  if (max_skew_ms < 0) max_skew_ms = TSIG_DEFAULT_MAX_SKEW_MS;
  if (now_ms < 0) now_ms = 0;
  /* Both are >= 0 here, so the differences cannot overflow. */
  if (t < now_ms && now_ms - t > max_skew_ms) return refuse(reason, TSIG_R_STALE);
  if (t > now_ms && t - now_ms > max_skew_ms) return refuse(reason, TSIG_R_FUTURE);
  unsigned char *m;
  size_t len;
  int rc = request_msg(r, t, &m, &len);
  if (rc == AW_EINVAL) return refuse(reason, TSIG_R_MISMATCH); /* a field no signer could have signed */
  if (rc) return rc;
  rc = any_match(k, &e, m, len);
  free(m);
  if (rc < 0) return rc;
  if (!rc) return refuse(reason, TSIG_R_MISMATCH);
  rc = arguments_match(r);
  if (rc < 0) return rc;
  if (!rc) return refuse(reason, TSIG_R_ARGUMENTS);
  return AW_OK;
}

/* ---- replies -------------------------------------------------------------------- */

int tsig_reply_sign(const tsig_key *k, const ctool_reply *r, char sig[TSIG_HEADER_SIZE]) {
  unsigned char m[REP_MSG_MAX];
  size_t len;
  if (!k || !k->cur_len || !sig) return AW_EINVAL;
  int rc = reply_msg(r, m, &len);
  return rc ? rc : sign_msg(k, m, len, sig);
}

int tsig_reply_sign_encoded(const tsig_key *k, const void *value, size_t len, char sig[TSIG_HEADER_SIZE]) {
  ctool_reply *r = NULL;
  int rc = ctool_reply_decode(value, len, len ? len : 1, &r, NULL, NULL, 0);
  if (rc == AW_OK) rc = tsig_reply_sign(k, r, sig);
  ctool_reply_free(r);
  return rc;
}

int tsig_reply_verify(const tsig_key *k, const ctool_reply *r, const void *sig, size_t sig_len,
                      const char **reason) {
  if (reason) *reason = NULL;
  if (!k || !k->cur_len || !r) return refuse(reason, "internal_error");
  sig_entries e;
  const char *why = parse_sig(sig, sig_len, &e);
  if (why) return refuse(reason, why);
  unsigned char m[REP_MSG_MAX];
  size_t len;
  int rc = reply_msg(r, m, &len);
  if (rc == AW_EINVAL) return refuse(reason, TSIG_R_MISMATCH);
  if (rc) return rc;
  rc = any_match(k, &e, m, len);
  if (rc < 0) return rc;
  return rc ? AW_OK : refuse(reason, TSIG_R_MISMATCH);
}

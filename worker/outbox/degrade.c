/* degrade.c -- outcomes that fit (see degrade.h). */
#include "degrade.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

void odg_sha256_hex(const void *data, size_t len, char out[65]) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32) {
    memset(out, '0', 64); /* never: libcrypto's SHA-256 does not fail on memory */
    out[64] = '\0';
    return;
  }
  static const char hx[] = "0123456789abcdef";
  for (unsigned i = 0; i < 32; i++) {
    out[2 * i] = hx[md[i] >> 4];
    out[2 * i + 1] = hx[md[i] & 15];
  }
  out[64] = '\0';
}

/* Encode d within max bytes, appended to out.  The scratch buffer is
 * bounded by max, so an original that does not fit fails as soon as the
 * encoder passes the limit. */
static int encode_within(const contract_dlq *d, size_t max, buf *out) {
  buf tmp;
  buf_init(&tmp, max);
  int rc = contract_dlq_encode(d, &tmp);
  if (rc == AW_OK) rc = buf_append(out, tmp.data, tmp.len);
  buf_free(&tmp);
  return rc;
}

int odg_dlq_encode_within(const contract_dlq *d, size_t max, buf *out, int *degraded) {
  *degraded = 0;
  int rc = encode_within(d, max, out);
  if (rc != AW_ETOOBIG) return rc; /* fits, or refused for another reason */
  /* The envelope without any original byte says how many fit.  The bin
   * header of the cut original is at most 5 bytes whatever its length (the
   * empty one's 2 bytes are in the envelope), so the sizes add up. */
  char sha[65];
  odg_sha256_hex(d->original, d->original_len, sha);
  contract_dlq c = *d;
  c.original_size = d->original_len > 0 ? (int64_t)d->original_len : 1;
  c.original_sha256 = sha;
  c.original_len = 0;
  buf probe;
  buf_init(&probe, max);
  rc = contract_dlq_encode(&c, &probe);
  size_t envelope = probe.len;
  buf_free(&probe);
  if (rc != AW_OK) return rc;
  if (envelope + 5 > max) return AW_ETOOBIG;
  size_t room = max - envelope - 5;
  c.original_len = room < d->original_len ? room : d->original_len;
  rc = encode_within(&c, max, out);
  if (rc == AW_OK) *degraded = 1;
  return rc;
}

int odg_response_too_large(const contract_response *r, size_t answer_bytes, size_t limit, buf *out) {
  contract_response s = *r;
  char msg[160];
  if (limit)
    snprintf(msg, sizeof msg, "the answer (%zu bytes encoded) exceeds the Kafka record limit (%zu bytes)",
             answer_bytes, limit);
  else
    snprintf(msg, sizeof msg, "the answer (%zu bytes encoded) was refused by the Kafka broker as larger than the "
             "topic's max.message.bytes", answer_bytes);
  s.status = "failed";
  s.messages = NULL;
  s.nmessages = 0;
  s.tool_calls = NULL;
  s.ntool_calls = 0;
  s.error_code = ODG_RESPONSE_TOO_LARGE;
  s.error_message = msg;
  return contract_response_encode(&s, out);
}

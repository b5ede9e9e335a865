/* fuzz_rkeys.c -- libFuzzer target for Redis key names
 * (worker/event/rkeys.c).  Ids come from producers, so any bytes.
 *
 * Properties (a violated one aborts):
 *  - encode: never fails with room, holds none of % { } : space as a raw
 *    byte other than its own '%' escapes, and decode gives the input back;
 *  - decode: whatever it accepts re-encodes to the same bytes (canonical,
 *    so encode is injective and decode its inverse);
 *  - keys: from the data, a tenant (or none), a conversation, a kind and
 *    its argument; the key built from them is parsed back by an independent
 *    reading of the grammar (prefix, the hash tag up to the first '}', the
 *    suffix's words) into exactly those parts: a left inverse, so no two
 *    distinct tuples share a key, and the hash tag is exactly the encoded
 *    tenant and conversation.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rkeys.h"

#define CHECK(c)       \
  do {                 \
    if (!(c)) abort(); \
  } while (0)

static void check_codec(const uint8_t *d, size_t n) {
  if (n > 1024) n = 1024;
  char enc[3 * 1024 + 1];
  size_t el = 0;
  CHECK(rk_encode(d, n, enc, sizeof enc, &el) == AW_OK);
  CHECK(el == strlen(enc));
  for (size_t i = 0; i < el; i++) {
    unsigned char b = (unsigned char)enc[i];
    CHECK(b != '{' && b != '}' && b != ':' && b != ' ' && b >= 0x20 && b < 0x7f);
  }
  unsigned char dec[1025];
  size_t dl = 0;
  CHECK(rk_decode(enc, el, dec, sizeof dec, &dl) == AW_OK);
  CHECK(dl == n && memcmp(dec, d, n) == 0);
  /* The data as an encoding. */
  if (rk_decode((const char *)d, n, dec, sizeof dec, &dl) == AW_OK) {
    CHECK(rk_encode(dec, dl, enc, sizeof enc, &el) == AW_OK);
    CHECK(el == n && memcmp(enc, d, n) == 0);
  }
}

/* Take a NUL-free string of at most max bytes, of the length the next data
 * byte says. */
static size_t take(const uint8_t **d, size_t *n, char *out, size_t max) {
  if (*n == 0) {
    out[0] = '\0';
    return 0;
  }
  size_t want = (*d)[0] % (max + 1);
  (*d)++;
  (*n)--;
  size_t k = 0;
  while (k < want && *n) {
    char c = (char)(*d)[0];
    (*d)++;
    (*n)--;
    if (c) out[k++] = c;
  }
  out[k] = '\0';
  return k;
}

/* Decode enc[0..len) into a C string (the ids hold no NUL). */
static void undo(const char *enc, size_t len, char *out, size_t n) {
  size_t dl = 0;
  CHECK(rk_decode(enc, len, out, n, &dl) == AW_OK);
  CHECK(strlen(out) == dl);
}

static void check_key(const uint8_t *d, size_t n) {
  if (n < 2) return;
  int tenanted = d[0] & 1;
  rk_kind kind = (rk_kind)((d[0] >> 1) % 7);
  d++;
  n--;
  char tenant[RK_TENANT_MAX + 1], conv[RK_ID_MAX + 1], arg[RK_ID_MAX + 1];
  take(&d, &n, tenant, RK_TENANT_MAX);
  if (!take(&d, &n, conv, RK_ID_MAX)) return;
  take(&d, &n, arg, RK_ID_MAX);
  if (kind == RK_HANDLE) strcpy(arg, (arg[0] & 1) ? "thread" : "conv");
  const char *a = kind == RK_HIST || kind == RK_HIST_IDS ? NULL : arg;
  if (a && !*a) return;
  if (tenanted && !rk_tenant_ok(tenant, strlen(tenant))) return;
  rk_space s;
  CHECK(rk_space_init(&s, "aw", tenanted) == AW_OK);
  char ref[RK_REF_MAX], key[RK_KEY_MAX];
  CHECK(rk_ref_make(tenanted ? tenant : NULL, conv, ref, sizeof ref) == AW_OK);
  CHECK(rk_conv_key(&s, ref, kind, a, key, sizeof key) == AW_OK);

  /* Read it back. */
  CHECK(strncmp(key, "aw:{", 4) == 0);
  const char *tag = key + 4, *close = strchr(tag, '}');
  CHECK(close);
  char got_t[RK_TENANT_MAX + 1] = "", got_c[RK_ID_MAX + 1];
  const char *c;
  if (tenanted) {
    CHECK(strncmp(tag, "t:", 2) == 0);
    const char *sep = strchr(tag + 2, ':');
    CHECK(sep && sep < close && strncmp(sep, ":c:", 3) == 0);
    undo(tag + 2, (size_t)(sep - tag - 2), got_t, sizeof got_t);
    c = sep + 3;
  } else {
    CHECK(strncmp(tag, "c:", 2) == 0);
    c = tag + 2;
  }
  undo(c, (size_t)(close - c), got_c, sizeof got_c);
  CHECK(strcmp(got_t, tenanted ? tenant : "") == 0);
  CHECK(strcmp(got_c, conv) == 0);
  CHECK(close[1] == ':');
  const char *suf = close + 2;
  CHECK(!strchr(suf, '{') && !strchr(suf, '}'));
  static const char *const heads[] = {NULL, "ev:", "evp:", "turn:", "hist", "hist:ids", "hist:p:"};
  char got_a[RK_ID_MAX + 1];
  switch (kind) {
  case RK_HANDLE: CHECK(strcmp(suf, arg) == 0); break;
  case RK_HIST:
  case RK_HIST_IDS: CHECK(strcmp(suf, heads[kind]) == 0); break;
  default: {
    size_t h = strlen(heads[kind]);
    CHECK(strncmp(suf, heads[kind], h) == 0);
    CHECK(!strchr(suf + h, ':'));
    undo(suf + h, strlen(suf + h), got_a, sizeof got_a);
    CHECK(strcmp(got_a, arg) == 0);
  }
  }
  /* The reference splits back too. */
  char st[RK_TENANT_MAX + 1];
  const char *sc = NULL;
  CHECK(rk_ref_split(&s, ref, st, sizeof st, &sc) == AW_OK);
  CHECK(strcmp(st, tenanted ? tenant : "") == 0 && strcmp(sc, conv) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_codec(data, size);
  check_key(data, size);
  return 0;
}

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
 *    tenant and conversation;
 *  - SCAN patterns (rk_conv_match): the key matches its conversation's
 *    pattern (every key) and its kind's (RK_OUTCOME, RK_PROGRESS, RK_TURN,
 *    RK_HIST_PENDING), and no other kind's (an RK_UPLOADS key, evf:,
 *    matches none of them: not the outcome's ev:); the same key of another
 *    conversation matches neither: one taken from the data, its prefix
 *    neighbours ("c" and "c1") and, for an id with glob characters, the id
 *    those characters would match ("c*" and "ca").
 *
 * Matching is fnmatch(3) with no flags, which is what Redis' SCAN MATCH
 * (stringmatchlen) does on the patterns rk_conv_match makes: both take '*'
 * for any run of bytes (FNM_PATHNAME off: '/' too; FNM_PERIOD off), '?'
 * for one byte, and a backslash for "the next byte literally"; they differ
 * only on classes ('^' versus '!' negation, "[:alpha:]", an unclosed '[')
 * and a trailing backslash.  check_pattern_shape asserts that no pattern
 * uses those: every glob byte but the final '*' is escaped, so fnmatch's
 * answer is Redis' answer.
 */
#include <fnmatch.h>
#include <stdint.h>
#include <stdio.h>
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

/* Only the subset where fnmatch and Redis agree: literal bytes, escaped
 * glob bytes, one unescaped '*' at the end. */
static void check_pattern_shape(const char *pat) {
  size_t n = strlen(pat);
  CHECK(n >= 2 && pat[n - 1] == '*');
  for (size_t i = 0; i + 1 < n; i++) {
    if (pat[i] == '\\') {
      CHECK(i + 2 < n && strchr("*?[]\\", pat[i + 1]));
      i++;
    } else {
      CHECK(!strchr("*?[]", pat[i]));
    }
  }
}

static const rk_kind g_match_kinds[] = {RK_OUTCOME, RK_PROGRESS, RK_TURN, RK_HIST_PENDING};
#define NMATCH (sizeof g_match_kinds / sizeof g_match_kinds[0])

/* The patterns of the conversation ref: [0] every key, [1 + i] the keys of
 * g_match_kinds[i]. */
static void patterns_of(const rk_space *s, const char *ref, char pat[1 + NMATCH][RK_KEY_MAX]) {
  CHECK(rk_conv_match(s, ref, RK_MATCH_ALL, pat[0], RK_KEY_MAX) == AW_OK);
  check_pattern_shape(pat[0]);
  for (size_t i = 0; i < NMATCH; i++) {
    CHECK(rk_conv_match(s, ref, (int)g_match_kinds[i], pat[1 + i], RK_KEY_MAX) == AW_OK);
    check_pattern_shape(pat[1 + i]);
  }
}

/* The key of conversation `other` (same tenant, kind and argument) matches
 * none of pat, unless it is the same conversation. */
static void check_other(const rk_space *s, const char *tenant, const char *conv, const char *other, rk_kind kind,
                        const char *a, char pat[1 + NMATCH][RK_KEY_MAX]) {
  if (!other[0] || strcmp(other, conv) == 0) return;
  char ref[RK_REF_MAX], key[RK_KEY_MAX];
  if (rk_ref_make(tenant, other, ref, sizeof ref) != AW_OK) return; /* too long: no such conversation */
  CHECK(rk_conv_key(s, ref, kind, a, key, sizeof key) == AW_OK);
  for (size_t i = 0; i < 1 + NMATCH; i++) CHECK(fnmatch(pat[i], key, 0) == FNM_NOMATCH);
}

static void check_match(const rk_space *s, const char *tenant, const char *conv, const char *ref, rk_kind kind,
                        const char *a, const char *key, const uint8_t *d, size_t n) {
  char pat[1 + NMATCH][RK_KEY_MAX];
  patterns_of(s, ref, pat);
  CHECK(fnmatch(pat[0], key, 0) == 0);
  for (size_t i = 0; i < NMATCH; i++) CHECK((fnmatch(pat[1 + i], key, 0) == 0) == (kind == g_match_kinds[i]));
  char junk[4];
  CHECK(rk_conv_match(s, ref, RK_HANDLE, junk, sizeof junk) == AW_EINVAL);

  char other[RK_ID_MAX + 2];
  take(&d, &n, other, RK_ID_MAX); /* from the data */
  check_other(s, tenant, conv, other, kind, a, pat);
  size_t len = strlen(conv);
  snprintf(other, sizeof other, "%s1", conv); /* conv is a prefix of it */
  check_other(s, tenant, conv, other, kind, a, pat);
  if (len > 1) {
    snprintf(other, sizeof other, "%.*s", (int)(len - 1), conv); /* it is a prefix of conv */
    check_other(s, tenant, conv, other, kind, a, pat);
  }
  snprintf(other, sizeof other, "%s", conv); /* what conv's glob bytes would match if unescaped */
  for (char *q = other; *q; q++)
    if (strchr("*?[]\\", *q)) *q = 'a';
  check_other(s, tenant, conv, other, kind, a, pat);
}

static void check_key(const uint8_t *d, size_t n) {
  if (n < 2) return;
  int tenanted = d[0] & 1;
  rk_kind kind = (rk_kind)((d[0] >> 1) % 8); /* RK_HANDLE .. RK_UPLOADS */
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
  static const char *const heads[] = {NULL, "ev:", "evp:", "turn:", "hist", "hist:ids", "hist:p:", "evf:"};
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
  check_match(&s, tenanted ? tenant : NULL, conv, ref, kind, a, key, d, n);

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

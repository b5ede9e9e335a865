/* offset_tracker.c -- contiguous-done-prefix tracking per partition. */
#include "offset_tracker.h"

#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>

void otrk_init(otrk *t) {
  memset(t, 0, sizeof *t);
  t->next_after = -1;
  t->committed = -1;
}

void otrk_free(otrk *t) {
  free(t->offs);
  free(t->done);
  otrk_init(t);
}

#define AT(t, i) (((t)->head + (i)) % (t)->cap)

/* Retire done offsets from the front: they are covered by the commit point. */
static void retire(otrk *t) {
  while (t->len && t->done[t->head]) {
    t->head = (t->head + 1) % t->cap;
    t->len--;
  }
}

static int grow(otrk *t) {
  size_t cap = t->cap ? t->cap * 2 : 16;
  int64_t *o = malloc(cap * sizeof *o);
  unsigned char *d = malloc(cap);
  if (!o || !d) {
    free(o);
    free(d);
    return AW_ENOMEM;
  }
  for (size_t i = 0; i < t->len; i++) {
    o[i] = t->offs[AT(t, i)];
    d[i] = t->done[AT(t, i)];
  }
  free(t->offs);
  free(t->done);
  t->offs = o;
  t->done = d;
  t->cap = cap;
  t->head = 0;
  return AW_OK;
}

int otrk_add(otrk *t, int64_t offset) {
  /* INT64_MAX has no "one past" (next_after): no broker hands it out. */
  if (offset < 0 || offset == INT64_MAX || (t->next_after >= 0 && offset < t->next_after)) return AW_EINVAL;
  if (t->len == t->cap) {
    int rc = grow(t);
    if (rc) return rc;
  }
  size_t i = AT(t, t->len);
  t->offs[i] = offset;
  t->done[i] = 0;
  t->len++;
  t->next_after = offset + 1;
  return AW_OK;
}

int otrk_done(otrk *t, int64_t offset) {
  size_t lo = 0, hi = t->len;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int64_t v = t->offs[AT(t, mid)];
    if (v == offset) {
      t->done[AT(t, mid)] = 1;
      retire(t);
      return AW_OK;
    }
    if (v < offset) lo = mid + 1;
    else hi = mid;
  }
  return AW_ENOTFOUND;
}

size_t otrk_in_flight(const otrk *t) { return t->len; }

int64_t otrk_commit_point(const otrk *t) {
  if (t->len) return t->offs[t->head];
  return t->next_after;
}

int otrk_take_commit(otrk *t, int64_t *out) {
  int64_t p = otrk_commit_point(t);
  if (p < 0 || p == t->committed) return 0;
  t->committed = p;
  *out = p;
  return 1;
}

int otrk_metadata(const otrk *t, char *out, size_t outsz) {
  if (outsz < 1) return AW_ETOOBIG;
  out[0] = '\0';
  int64_t cp = otrk_commit_point(t);
  /* The last done offset: the ring is in offset order. */
  int64_t last = -1;
  for (size_t i = t->len; i-- > 0;) {
    if (t->done[AT(t, i)]) {
      last = t->offs[AT(t, i)];
      break;
    }
  }
  if (last < 0 || last <= cp) return AW_OK;
  size_t span = (size_t)(last - cp);  /* offsets cp+1 .. last */
  if (span > OTRK_META_MAX_SPAN) return AW_ETOOBIG;
  size_t nbytes = (span + 7) / 8;
  size_t need = strlen(OTRK_META_PREFIX) + 4 * ((nbytes + 2) / 3) + 1;
  if (need > outsz) return AW_ETOOBIG;
  unsigned char *bits = calloc(nbytes, 1);
  if (!bits) return AW_ENOMEM;
  for (size_t i = 0; i < t->len; i++) {
    int64_t o = t->offs[AT(t, i)];
    if (o > cp && t->done[AT(t, i)]) {
      size_t b = (size_t)(o - cp - 1);
      bits[b / 8] |= (unsigned char)(1u << (b % 8));
    }
  }
  size_t k = strlen(OTRK_META_PREFIX);
  memcpy(out, OTRK_META_PREFIX, k);
  EVP_EncodeBlock((unsigned char *)out + k, bits, (int)nbytes);
  free(bits);
  return AW_OK;
}

int otrk_skip_parse(otrk_skip *s, int64_t base, const void *md, size_t len) {
  memset(s, 0, sizeof *s);
  s->base = base;
  if (base < 0) return AW_EINVAL; /* no committed offset: nothing can be beyond it */
  size_t k = strlen(OTRK_META_PREFIX);
  if (!md || len < k || memcmp(md, OTRK_META_PREFIX, k) != 0) return AW_OK;
  const unsigned char *b64 = (const unsigned char *)md + k;
  size_t n = len - k;
  if (n == 0) return AW_OK;
  if (n % 4 != 0 || n > OTRK_META_MAX_BYTES) return AW_EPARSE;
  unsigned char *bits = malloc(n / 4 * 3);
  if (!bits) return AW_ENOMEM;
  int got = EVP_DecodeBlock(bits, b64, (int)n);
  if (got < 0) {
    free(bits);
    return AW_EPARSE;
  }
  /* EVP_DecodeBlock counts padding as zero bytes; they only add zero bits. */
  s->bits = bits;
  s->nbits = (size_t)got * 8;
  return AW_OK;
}

int otrk_skip_has(const otrk_skip *s, int64_t offset) {
  if (!s->bits || offset <= s->base) return 0;
  /* offset > base >= 0: the distance fits uint64_t (and in int64_t arithmetic
   * a far offset would overflow). */
  uint64_t b = (uint64_t)offset - (uint64_t)s->base - 1;
  return b < (uint64_t)s->nbits && (s->bits[b / 8] >> (b % 8)) & 1;
}

void otrk_skip_free(otrk_skip *s) {
  free(s->bits);
  memset(s, 0, sizeof *s);
}

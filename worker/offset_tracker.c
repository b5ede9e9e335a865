/* offset_tracker.c -- contiguous-done-prefix tracking per partition. */
#include "offset_tracker.h"

#include <stdlib.h>
#include <string.h>

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
  if (offset < 0 || (t->next_after >= 0 && offset < t->next_after)) return AW_EINVAL;
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

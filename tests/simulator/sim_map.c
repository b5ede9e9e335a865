/* sim_map.c -- string-keyed open-addressing hash map. */
#include "sim_map.h"

#include <stdlib.h>
#include <string.h>

/* A sentinel address that can never be a real key. */
static const char tomb_mark;
#define SMAP_TOMB (&tomb_mark)

static unsigned fnv1a(const char *s) {
  unsigned h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

void smap_init(smap *m) { memset(m, 0, sizeof *m); }

void smap_free(smap *m) {
  free(m->slots);
  smap_init(m);
}

static smap_slot *find(const smap *m, const char *key, unsigned h) {
  if (!m->cap) return NULL;
  size_t mask = m->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    smap_slot *s = &m->slots[i];
    if (!s->key) return NULL;
    if (s->key != SMAP_TOMB && s->hash == h && strcmp(s->key, key) == 0) return s;
  }
}

void *smap_get(const smap *m, const char *key) {
  smap_slot *s = find(m, key, fnv1a(key));
  return s ? s->val : NULL;
}

/* Rehash into a table of ncap slots; drops tombstones. */
static int rehash(smap *m, size_t ncap) {
  smap_slot *ns = calloc(ncap, sizeof *ns);
  if (!ns) return AW_ENOMEM;
  for (size_t i = 0; i < m->cap; i++) {
    smap_slot *s = &m->slots[i];
    if (!s->key || s->key == SMAP_TOMB) continue;
    size_t j = s->hash & (ncap - 1);
    while (ns[j].key) j = (j + 1) & (ncap - 1);
    ns[j] = *s;
  }
  free(m->slots);
  m->slots = ns;
  m->cap = ncap;
  m->tomb = 0;
  return AW_OK;
}

int smap_put(smap *m, const char *key, void *val) {
  unsigned h = fnv1a(key);
  smap_slot *s = find(m, key, h);
  if (s) {
    s->val = val;
    s->key = key;
    return AW_OK;
  }
  if ((m->used + m->tomb + 1) * 10 >= m->cap * 7) {
    /* Only grow when live entries need it; otherwise a same-size rehash
     * clears the tombstones that deletes left behind. */
    size_t ncap = m->cap ? m->cap : 16;
    while ((m->used + 1) * 10 >= ncap * 5) ncap *= 2;
    int rc = rehash(m, ncap);
    if (rc) return rc;
  }
  size_t mask = m->cap - 1;
  size_t i = h & mask;
  while (m->slots[i].key && m->slots[i].key != SMAP_TOMB) i = (i + 1) & mask;
  if (m->slots[i].key == SMAP_TOMB) m->tomb--;
  m->slots[i].key = key;
  m->slots[i].val = val;
  m->slots[i].hash = h;
  m->used++;
  return AW_OK;
}

void *smap_del(smap *m, const char *key) {
  smap_slot *s = find(m, key, fnv1a(key));
  if (!s) return NULL;
  void *v = s->val;
  s->key = SMAP_TOMB;
  s->val = NULL;
  m->used--;
  m->tomb++;
  return v;
}

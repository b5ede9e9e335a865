/* sim_map.h -- string-keyed hash map (prefix smap_) for the simulator store.
 *
 * Open addressing with linear probing and tombstones; FNV-1a hash.  Keys are
 * borrowed, not copied: the caller keeps each key alive while it is in the
 * map (the store uses the id inside the object itself as the key).  Grows by
 * doubling at 70% load, so insert and lookup are amortised O(1).
 *
 * @locality not thread-safe; the store serialises access with its lock.
 */
#ifndef SIM_MAP_H
#define SIM_MAP_H

#include <stddef.h>
#include "aw_error.h"

typedef struct smap_slot {
  const char *key; /* NULL = empty; SMAP_TOMB = deleted */
  void *val;
  unsigned hash;
} smap_slot;

typedef struct smap {
  smap_slot *slots;
  size_t cap;  /* power of two, 0 before the first insert */
  size_t used; /* live entries */
  size_t tomb; /* tombstones, counted against the load factor */
} smap;

/** An empty map; allocates nothing. */
void smap_init(smap *m);
/** Free the table (not the keys or values). */
void smap_free(smap *m);
/** Value for key or NULL. */
void *smap_get(const smap *m, const char *key);
/** Insert or replace. AW_ENOMEM. */
int smap_put(smap *m, const char *key, void *val) AW_MUST_CHECK;
/** Remove key; returns its value or NULL. */
void *smap_del(smap *m, const char *key);

#endif

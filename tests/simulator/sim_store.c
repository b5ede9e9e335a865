/* sim_store.c -- objects, ids, the id map and ordered child lists. */
#include "sim_store.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sim_map.h"

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static smap g_ids;
static slist g_assts, g_convs, g_resps; /* top-level kinds listed in creation order */
static uint64_t g_seq, g_salt;
static long g_run_counts[RS_COUNT];

static const char *const kind_prefix[SK_COUNT] = {"asst_", "thread_", "msg_", "run_", "step_",
                                                  "conv_", "resp_", "item_"};
static const char *const kind_object[SK_COUNT] = {"assistant", "thread", "thread.message", "thread.run",
                                                  "thread.run.step", "conversation", "response", NULL};
static const char *const status_names[RS_COUNT] = {
    "queued", "in_progress", "requires_action", "cancelling", "cancelled",
    "failed", "completed", "incomplete", "expired"};

void sstore_lock(void) { pthread_mutex_lock(&g_mu); }
void sstore_unlock(void) { pthread_mutex_unlock(&g_mu); }
slist *sstore_assistants(void) { return &g_assts; }
static slist *top(sobj_kind k) { return k == SK_ASST ? &g_assts : k == SK_CONV ? &g_convs : k == SK_RESP ? &g_resps : NULL; }
const slist *sstore_toplist(sobj_kind k) { return top(k); }
const char *srun_status_name(srun_status s) { return s < RS_COUNT ? status_names[s] : "unknown"; }
int srun_status_active(srun_status s) {
  return s == RS_QUEUED || s == RS_IN_PROGRESS || s == RS_REQUIRES_ACTION || s == RS_CANCELLING;
}

int64_t sstore_unix_now(void) { return (int64_t)time(NULL); }

void jset(cJSON *o, const char *key, cJSON *v) {
  if (cJSON_GetObjectItemCaseSensitive(o, key)) cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
  else cJSON_AddItemToObject(o, key, v);
}

/* A bijective 64-bit mix: distinct counters give distinct ids, and ids
 * look random like the real ones (asst_ + 24 base62 chars). */
static uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void sstore_init(void) {
  /* Salted per process: ids never repeat across restarts, so an id a
   * client cached from an earlier simulator cannot name a new object. */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  g_salt = mix((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ ((uint64_t)getpid() << 32);
}

static void make_id(const char *prefix, uint64_t n, char *out, size_t size) {
  static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  char tail[25];
  uint64_t a = mix(n ^ g_salt), b = mix(a + 0x2545f4914f6cdd1dull), c = mix(b);
  /* All 11 base62 digits of a (62^11 > 2^64) keep the id unique; b and c
   * only pad to 24 characters, 10 and 3 digits each, so that no digit is
   * stuck at 0 the way the top digit of a 64-bit number is. */
  for (int i = 0; i < 11; i++, a /= 62) tail[i] = b62[a % 62];
  for (int i = 11; i < 21; i++, b /= 62) tail[i] = b62[b % 62];
  for (int i = 21; i < 24; i++, c /= 62) tail[i] = b62[c % 62];
  tail[24] = '\0';
  snprintf(out, size, "%s%s", prefix, tail);
}

void sstore_call_id(char *out, size_t size) { make_id("call_", ++g_seq, out, size); }
void sstore_make_id(const char *prefix, char *out, size_t size) { make_id(prefix, ++g_seq, out, size); }
sobj *sstore_find(const char *id) { return smap_get(&g_ids, id); }

static int slist_push(slist *l, sobj *o) {
  if (l->n == l->cap) {
    size_t nc = l->cap ? l->cap * 2 : 8;
    sobj **v = realloc(l->v, nc * sizeof *v);
    if (!v) return AW_ENOMEM;
    l->v = v;
    l->cap = nc;
  }
  l->v[l->n++] = o;
  return AW_OK;
}

size_t slist_lower_bound(const slist *l, uint64_t s) {
  size_t lo = 0, hi = l->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (l->v[mid]->seq < s) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static void slist_remove(slist *l, sobj *o) {
  size_t i = slist_lower_bound(l, o->seq);
  if (i < l->n && l->v[i] == o) {
    memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof *l->v);
    l->n--;
  }
}

static sobj *new_obj(sobj_kind k, sobj *parent, const char *prefix, const char *id) {
  if (id && smap_get(&g_ids, id)) return NULL;
  sobj *o = calloc(1, sizeof *o);
  if (!o) return NULL;
  o->kind = k;
  o->seq = ++g_seq;
  o->created_at = sstore_unix_now();
  o->parent = parent;
  if (id) snprintf(o->id, sizeof o->id, "%s", id);
  else make_id(prefix, o->seq, o->id, sizeof o->id);
  o->json = cJSON_CreateObject();
  if (k == SK_RUN) o->run = calloc(1, sizeof *o->run);
  if (!o->json || (k == SK_RUN && !o->run)) goto fail;
  cJSON_AddStringToObject(o->json, "id", o->id);
  if (kind_object[k]) {
    cJSON_AddStringToObject(o->json, "object", kind_object[k]);
    cJSON_AddNumberToObject(o->json, "created_at", (double)o->created_at);
  }
  slist *l = top(k) ? top(k) : k == SK_RUN ? &parent->runs : parent ? &parent->kids : NULL;
  if (l && slist_push(l, o) != AW_OK) goto fail;
  if (smap_put(&g_ids, o->id, o) != AW_OK) {
    if (l) l->n--;
    goto fail;
  }
  if (k == SK_RUN) sstore_count_status(-1, RS_QUEUED);
  return o;
fail:
  cJSON_Delete(o->json);
  free(o->run);
  free(o);
  return NULL;
}

sobj *sstore_new(sobj_kind k, sobj *parent) { return new_obj(k, parent, kind_prefix[k], NULL); }

sobj *sstore_new_item(sobj *conv, const char *prefix, const char *id) { return new_obj(SK_ITEM, conv, prefix, id); }

sobj *sstore_get(const char *id, sobj_kind k) {
  sobj *o = smap_get(&g_ids, id);
  return o && o->kind == k ? o : NULL;
}

/* Free o and its descendants; unlinking from the parent is the caller's. */
static void destroy(sobj *o) {
  for (size_t i = 0; i < o->kids.n; i++) destroy(o->kids.v[i]);
  for (size_t i = 0; i < o->runs.n; i++) destroy(o->runs.v[i]);
  smap_del(&g_ids, o->id);
  if (o->run) {
    g_run_counts[o->run->status]--;
    free(o->run->answer);
    cJSON_Delete(o->run->plan);
    cJSON_Delete(o->run->outputs);
    cJSON_Delete(o->run->fsearch);
    free(o->run);
  }
  if (o->ext_free) o->ext_free(o->ext);
  free(o->kids.v);
  free(o->runs.v);
  cJSON_Delete(o->json);
  free(o);
}

void sstore_delete(sobj *o) {
  if (top(o->kind)) slist_remove(top(o->kind), o);
  else if (o->parent && o->kind == SK_RUN) slist_remove(&o->parent->runs, o);
  else if (o->parent) slist_remove(&o->parent->kids, o);
  if (o->parent && o->parent->active_run == o) o->parent->active_run = NULL;
  destroy(o);
}

void sstore_reset(void) {
  /* Threads, assistants, conversations and responses (the top-level
   * kinds) own everything else.  destroy() only turns map
   * slots into tombstones (smap_del never moves entries), so one pass over
   * the slots is safe while it runs. */
  for (size_t i = 0; i < g_ids.cap; i++) {
    smap_slot *s = &g_ids.slots[i];
    if (!s->key || !s->val) continue; /* empty or tombstone */
    sobj *o = s->val;
    if (o->kind == SK_THREAD || o->kind == SK_ASST || o->kind == SK_CONV || o->kind == SK_RESP) destroy(o);
  }
  smap_free(&g_ids);
  slist *tops[] = {&g_assts, &g_convs, &g_resps};
  for (size_t i = 0; i < sizeof tops / sizeof tops[0]; i++) {
    free(tops[i]->v);
    memset(tops[i], 0, sizeof *tops[i]);
  }
  memset(g_run_counts, 0, sizeof g_run_counts);
}

void sstore_run_counts(long out[RS_COUNT]) { memcpy(out, g_run_counts, sizeof g_run_counts); }

void sstore_count_status(int from, int to) {
  if (from >= 0) g_run_counts[from]--;
  if (to >= 0) g_run_counts[to]++;
}

/* sim_vector_stores.c -- vector stores, their files and batches, processing and search. */
#include "sim_vector_stores.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sim_faults.h"
#include "sim_files.h"
#include "sim_map.h"
#include "sim_page.h"
#include "sim_req.h"
#include "sim_retrieval.h"
#include "sim_store.h"
#include "sim_timer.h"

#define BAD SREQ_BAD
#define MAX_SEARCH_RESULTS 50
#define MAX_QUERIES 16

typedef enum { VF_IN_PROGRESS = 0, VF_COMPLETED, VF_FAILED, VF_CANCELLED, VF_COUNT } vf_status;
static const char *const vf_names[VF_COUNT] = {"in_progress", "completed", "failed", "cancelled"};

typedef struct vsfile {
  char file_id[40];
  char batch_id[40]; /* "" when added alone */
  char *filename;
  vf_status status;
  unsigned max_tokens, overlap;
  uint64_t gen;   /* which processing step is this file's */
  sretr_doc *doc; /* the index once completed */
  cJSON *json;    /* VectorStoreFileObject */
} vsfile;

typedef struct vbatch {
  char id[40];
  cJSON *json; /* VectorStoreFileBatchObject */
} vbatch;

typedef struct vstore {
  char id[40];
  cJSON *json; /* VectorStoreObject */
  vsfile **files; /* creation order */
  size_t nf, capf;
  vbatch **batches;
  size_t nb, capb;
} vstore;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static vstore **g_vs;
static size_t g_n, g_cap;
static smap g_ids;
static uint64_t g_gen;

/* Append p to the array *v of *n elements and capacity *cap. */
static int push(void ***v, size_t *n, size_t *cap, void *p) {
  if (*n == *cap) {
    size_t nc = *cap ? *cap * 2 : 8;
    void **nv = realloc(*v, nc * sizeof *nv);
    if (!nv) return AW_ENOMEM;
    *v = nv;
    *cap = nc;
  }
  (*v)[(*n)++] = p;
  return AW_OK;
}

static void vsfile_free(vsfile *f) {
  if (!f) return;
  sretr_doc_free(f->doc);
  free(f->filename);
  cJSON_Delete(f->json);
  free(f);
}

static void vstore_free(vstore *v) {
  for (size_t i = 0; i < v->nf; i++) vsfile_free(v->files[i]);
  for (size_t i = 0; i < v->nb; i++) {
    cJSON_Delete(v->batches[i]->json);
    free(v->batches[i]);
  }
  free(v->files);
  free(v->batches);
  cJSON_Delete(v->json);
  free(v);
}

static vsfile *find_file(const vstore *v, const char *file_id) {
  for (size_t i = 0; i < v->nf; i++)
    if (strcmp(v->files[i]->file_id, file_id) == 0) return v->files[i];
  return NULL;
}

static vbatch *find_batch(const vstore *v, const char *id) {
  for (size_t i = 0; i < v->nb; i++)
    if (strcmp(v->batches[i]->id, id) == 0) return v->batches[i];
  return NULL;
}

static void put_counts(cJSON *o, const long c[VF_COUNT]) {
  cJSON *fc = cJSON_CreateObject();
  for (int s = 0; s < VF_COUNT; s++) cJSON_AddNumberToObject(fc, vf_names[s], (double)c[s]);
  cJSON_AddNumberToObject(fc, "total", (double)(c[0] + c[1] + c[2] + c[3]));
  jset(o, "file_counts", fc);
}

/* Recompute the store's and its batches' file_counts, usage and status
 * from its files: the one place they change, so they never drift.  Lock held. */
static void refresh(vstore *v) {
  long c[VF_COUNT] = {0};
  double usage = 0;
  for (size_t i = 0; i < v->nf; i++) {
    c[v->files[i]->status]++;
    usage += (double)sretr_doc_bytes(v->files[i]->doc);
  }
  put_counts(v->json, c);
  jset(v->json, "usage_bytes", cJSON_CreateNumber(usage));
  jset(v->json, "status", cJSON_CreateString(c[VF_IN_PROGRESS] ? "in_progress" : "completed"));
  for (size_t b = 0; b < v->nb; b++) {
    long bc[VF_COUNT] = {0};
    for (size_t i = 0; i < v->nf; i++)
      if (strcmp(v->files[i]->batch_id, v->batches[b]->id) == 0) bc[v->files[i]->status]++;
    put_counts(v->batches[b]->json, bc);
    /* A cancelled batch says so once nothing of it is in progress. */
    jset(v->batches[b]->json, "status",
         cJSON_CreateString(bc[VF_IN_PROGRESS] ? "in_progress" : bc[VF_CANCELLED] ? "cancelled" : "completed"));
  }
}

/* ---- processing on the timer thread ----------------------------------- */

typedef struct step {
  char vs_id[40], file_id[40];
  uint64_t gen;
} step;

static vsfile *pending(const step *st, vstore **vout) {
  vstore *v = smap_get(&g_ids, st->vs_id);
  vsfile *f = v ? find_file(v, st->file_id) : NULL;
  if (!f || f->gen != st->gen || f->status != VF_IN_PROGRESS) return NULL;
  *vout = v;
  return f;
}

static void process_cb(void *arg, int shutting_down) {
  step *st = arg;
  if (shutting_down) {
    free(st);
    return;
  }
  vstore *v = NULL;
  pthread_mutex_lock(&g_mu);
  vsfile *f = pending(st, &v);
  unsigned max_tokens = f ? f->max_tokens : 0, overlap = f ? f->overlap : 0;
  pthread_mutex_unlock(&g_mu);
  if (!f) {
    free(st);
    return;
  }
  char filename[600], path[PATH_MAX], err[256] = "";
  const char *code = "server_error";
  sretr_doc *doc = NULL;
  int rc = sfiles_lookup(st->file_id, filename, sizeof filename, path, sizeof path);
  if (rc == AW_OK) rc = sretr_index_file(path, max_tokens, overlap, &doc, &code, err, sizeof err);
  else snprintf(err, sizeof err, "The file was deleted before it was processed.");
  pthread_mutex_lock(&g_mu);
  f = pending(st, &v);
  if (f) {
    if (rc == AW_OK) {
      f->doc = doc;
      doc = NULL;
      f->status = VF_COMPLETED;
      jset(f->json, "usage_bytes", cJSON_CreateNumber((double)sretr_doc_bytes(f->doc)));
    } else {
      f->status = VF_FAILED;
      cJSON *e = cJSON_CreateObject();
      cJSON_AddStringToObject(e, "code", code);
      cJSON_AddStringToObject(e, "message", err);
      jset(f->json, "last_error", e);
    }
    jset(f->json, "status", cJSON_CreateString(vf_names[f->status]));
    refresh(v);
    log_info(NULL, "vector store %s: file %s %s%s%s", v->id, f->file_id, vf_names[f->status], rc ? ": " : "",
             rc ? err : "");
  }
  pthread_mutex_unlock(&g_mu);
  sretr_doc_free(doc);
  free(st);
}

/* ---- validation ------------------------------------------------------- */

static int check_chunking(const cJSON *v, const char *name, sapi_reply *r) {
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(v, "type");
  if (!cJSON_IsObject(v)) return sreq_bad_type(r, name, "an object", v);
  if (cJSON_IsString(ty) && strcmp(ty->valuestring, "auto") == 0 && cJSON_GetArraySize(v) == 1) return 0;
  if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "static") != 0) {
    BAD(r, name, "invalid_value", "Invalid value for '%s': expected {\"type\": \"auto\"} or {\"type\": \"static\", \"static\": {...}}.",
        name);
    return -1;
  }
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(v, "static");
  for (const cJSON *it = v->child; it; it = it->next)
    if (strcmp(it->string, "type") != 0 && strcmp(it->string, "static") != 0) {
      BAD(r, name, "unknown_parameter", "Unknown parameter: '%s.%s'.", name, it->string);
      return -1;
    }
  if (!cJSON_IsObject(st)) {
    BAD(r, name, "missing_required_parameter", "Missing required parameter: '%s.static'.", name);
    return -1;
  }
  static const sreq_field fields[] = {
      {"max_chunk_size_tokens", V_INT_NULL, 1, 100, 4096, NULL},
      {"chunk_overlap_tokens", V_INT_NULL, 1, 0, 4096, NULL},
      {NULL, 0, 0, 0, 0, NULL},
  };
  char pre[128];
  snprintf(pre, sizeof pre, "%s.static", name);
  if (sreq_check_fields(st, fields, r, pre, 0)) return -1;
  const cJSON *mx = cJSON_GetObjectItemCaseSensitive(st, "max_chunk_size_tokens");
  const cJSON *ov = cJSON_GetObjectItemCaseSensitive(st, "chunk_overlap_tokens");
  if (!cJSON_IsNumber(mx) || !cJSON_IsNumber(ov) || ov->valuedouble > mx->valuedouble / 2) {
    BAD(r, name, "invalid_value", "Invalid '%s': chunk_overlap_tokens must not exceed half of max_chunk_size_tokens.",
        name);
    return -1;
  }
  return 0;
}

/* Chunk sizes from a validated strategy (or the API's auto: 800/400). */
static void chunk_sizes(const cJSON *cs, unsigned *max_tokens, unsigned *overlap) {
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(cs, "static");
  *max_tokens = 800;
  *overlap = 400;
  if (cJSON_IsObject(st)) {
    *max_tokens = (unsigned)cJSON_GetObjectItemCaseSensitive(st, "max_chunk_size_tokens")->valuedouble;
    *overlap = (unsigned)cJSON_GetObjectItemCaseSensitive(st, "chunk_overlap_tokens")->valuedouble;
  }
}

static int check_attributes(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsNull(v)) return 0;
  if (!cJSON_IsObject(v)) return sreq_bad_type(r, name, "an object", v);
  int n = 0;
  const cJSON *kv;
  cJSON_ArrayForEach(kv, v) {
    int ok = ++n <= 16 && strlen(kv->string) <= 64 &&
             ((cJSON_IsString(kv) && strlen(kv->valuestring) <= 512) || cJSON_IsNumber(kv) || cJSON_IsBool(kv));
    if (!ok) {
      BAD(r, name, "invalid_value",
          "Invalid '%s': at most 16 keys of up to 64 characters, values strings (up to 512 characters), numbers or "
          "booleans.",
          name);
      return -1;
    }
  }
  return 0;
}

static int check_str_array(const cJSON *v, const char *name, sapi_reply *r, int min, int max) {
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array", v);
  int n = cJSON_GetArraySize(v);
  if (n < min) {
    BAD(r, name, "empty_array", "Invalid '%s': empty array. Expected an array with minimum length %d.", name, min);
    return -1;
  }
  if (n > max) {
    BAD(r, name, "array_above_max_length", "Invalid '%s': array too long. Expected an array with maximum length %d.",
        name, max);
    return -1;
  }
  const cJSON *it;
  cJSON_ArrayForEach(it, v) if (!cJSON_IsString(it)) return sreq_bad_type(r, name, "an array of strings", v);
  return 0;
}

static int check_file_ids(const cJSON *v, const char *name, sapi_reply *r) { return check_str_array(v, name, r, 0, 500); }
static int check_batch_ids(const cJSON *v, const char *name, sapi_reply *r) { return check_str_array(v, name, r, 1, 2000); }

static int check_vs_expiry(const cJSON *v, const char *name, sapi_reply *r) {
  static const sreq_field f[] = {{"anchor", V_STR, 1, 0, 0, NULL}, {"days", V_INT_NULL, 1, 1, 365, NULL}, {NULL, 0, 0, 0, 0, NULL}};
  if (!cJSON_IsObject(v)) return sreq_bad_type(r, name, "an object", v);
  if (sreq_check_fields(v, f, r, name, 0)) return -1;
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(v, "anchor"), *d = cJSON_GetObjectItemCaseSensitive(v, "days");
  if (strcmp(a->valuestring, "last_active_at") != 0 || !cJSON_IsNumber(d)) {
    BAD(r, name, "invalid_value", "Invalid '%s': expected {\"anchor\": \"last_active_at\", \"days\": 1..365}.", name);
    return -1;
  }
  return 0;
}

static const sreq_field vs_fields[] = {
    {"file_ids", V_FN, 0, 0, 0, check_file_ids},
    {"name", V_STR, 0, 0, 256, NULL},
    {"description", V_STR, 0, 0, 512, NULL},
    {"expires_after", V_FN, 0, 0, 0, check_vs_expiry},
    {"chunking_strategy", V_FN, 0, 0, 0, check_chunking},
    {"metadata", V_META, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const sreq_field vsf_fields[] = {
    {"file_id", V_STR, 1, 0, 0, NULL},
    {"chunking_strategy", V_FN, 0, 0, 0, check_chunking},
    {"attributes", V_FN, 0, 0, 0, check_attributes},
    {NULL, 0, 0, 0, 0, NULL},
};

static int check_batch_files(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array", v);
  int n = cJSON_GetArraySize(v), i = 0;
  if (n < 1 || n > 2000) {
    BAD(r, name, "invalid_value", "Invalid '%s': expected between 1 and 2000 files.", name);
    return -1;
  }
  const cJSON *it;
  cJSON_ArrayForEach(it, v) {
    char pre[64];
    snprintf(pre, sizeof pre, "%s[%d]", name, i++);
    if (!cJSON_IsObject(it)) return sreq_bad_type(r, pre, "an object", it);
    if (sreq_check_fields(it, vsf_fields, r, pre, 0)) return -1;
  }
  return 0;
}

static const sreq_field batch_fields[] = {
    {"file_ids", V_FN, 0, 0, 0, check_batch_ids},
    {"files", V_FN, 0, 0, 0, check_batch_files},
    {"chunking_strategy", V_FN, 0, 0, 0, check_chunking},
    {"attributes", V_FN, 0, 0, 0, check_attributes},
    {NULL, 0, 0, 0, 0, NULL},
};

/* ComparisonFilter / CompoundFilter, recursively (depth-bounded). */
static int check_filter_at(const cJSON *v, const char *name, sapi_reply *r, int depth) {
  if (!cJSON_IsObject(v)) return sreq_bad_type(r, name, "an object", v);
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(v, "type");
  static const char *const cmp[] = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin", NULL};
  if (cJSON_IsString(ty) && (strcmp(ty->valuestring, "and") == 0 || strcmp(ty->valuestring, "or") == 0)) {
    const cJSON *fs = cJSON_GetObjectItemCaseSensitive(v, "filters");
    if (depth > 8 || !cJSON_IsArray(fs) || cJSON_GetArraySize(v) != 2) {
      BAD(r, name, "invalid_value", "Invalid '%s': a compound filter is {type: and|or, filters: [...]}.", name);
      return -1;
    }
    const cJSON *f;
    cJSON_ArrayForEach(f, fs) if (check_filter_at(f, name, r, depth + 1)) return -1;
    return 0;
  }
  int ok = cJSON_IsString(ty);
  if (ok) {
    ok = 0;
    for (int i = 0; cmp[i]; i++) ok |= strcmp(cmp[i], ty->valuestring) == 0;
  }
  const cJSON *key = cJSON_GetObjectItemCaseSensitive(v, "key"), *val = cJSON_GetObjectItemCaseSensitive(v, "value");
  if (!ok || !cJSON_IsString(key) || !val || cJSON_GetArraySize(v) != 3 ||
      !(cJSON_IsString(val) || cJSON_IsNumber(val) || cJSON_IsBool(val) || cJSON_IsArray(val))) {
    BAD(r, name, "invalid_value",
        "Invalid '%s': a comparison filter is {type: eq|ne|gt|gte|lt|lte|in|nin, key, value}.", name);
    return -1;
  }
  return 0;
}
static int check_filter(const cJSON *v, const char *name, sapi_reply *r) { return check_filter_at(v, name, r, 0); }

static int check_query(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsString(v)) return 0;
  return check_str_array(v, name, r, 1, MAX_QUERIES);
}

static int check_ranking(const cJSON *v, const char *name, sapi_reply *r) {
  static const sreq_field f[] = {{"ranker", V_STR, 0, 0, 0, NULL}, {"score_threshold", V_NUM_NULL, 0, 0, 1, NULL}, {NULL, 0, 0, 0, 0, NULL}};
  if (!cJSON_IsObject(v)) return sreq_bad_type(r, name, "an object", v);
  if (sreq_check_fields(v, f, r, name, 0)) return -1;
  const cJSON *rk = cJSON_GetObjectItemCaseSensitive(v, "ranker");
  if (rk && strcmp(rk->valuestring, "none") != 0 && strcmp(rk->valuestring, "auto") != 0 &&
      strcmp(rk->valuestring, "default-2024-11-15") != 0) {
    BAD(r, "ranking_options.ranker", "invalid_value",
        "Invalid value: '%s'. Supported values are: 'none', 'auto' and 'default-2024-11-15'.", rk->valuestring);
    return -1;
  }
  return 0;
}

static const sreq_field search_fields[] = {
    {"query", V_FN, 1, 0, 0, check_query},
    {"rewrite_query", V_BOOL, 0, 0, 0, NULL},
    {"max_num_results", V_INT_NULL, 0, 1, MAX_SEARCH_RESULTS, NULL},
    {"filters", V_FN, 0, 0, 0, check_filter},
    {"ranking_options", V_FN, 0, 0, 0, check_ranking},
    {NULL, 0, 0, 0, 0, NULL},
};

/* ---- filters ---------------------------------------------------------- */

static int cmp_values(const cJSON *a, const cJSON *b, int *order) {
  if (cJSON_IsNumber(a) && cJSON_IsNumber(b)) {
    *order = (a->valuedouble > b->valuedouble) - (a->valuedouble < b->valuedouble);
    return 1;
  }
  if (cJSON_IsString(a) && cJSON_IsString(b)) {
    int c = strcmp(a->valuestring, b->valuestring);
    *order = (c > 0) - (c < 0);
    return 1;
  }
  if (cJSON_IsBool(a) && cJSON_IsBool(b)) {
    *order = cJSON_IsTrue(a) - cJSON_IsTrue(b);
    return 1;
  }
  return 0;
}

static int filter_match(const cJSON *f, const cJSON *attrs) {
  const char *ty = cJSON_GetObjectItemCaseSensitive(f, "type")->valuestring;
  if (strcmp(ty, "and") == 0 || strcmp(ty, "or") == 0) {
    int any = strcmp(ty, "or") == 0;
    const cJSON *sub;
    cJSON_ArrayForEach(sub, cJSON_GetObjectItemCaseSensitive(f, "filters")) {
      int m = filter_match(sub, attrs);
      if (any && m) return 1;
      if (!any && !m) return 0;
    }
    return !any;
  }
  const cJSON *have = cJSON_GetObjectItemCaseSensitive(attrs, cJSON_GetObjectItemCaseSensitive(f, "key")->valuestring);
  const cJSON *want = cJSON_GetObjectItemCaseSensitive(f, "value");
  if (strcmp(ty, "in") == 0 || strcmp(ty, "nin") == 0) {
    int found = 0, o;
    const cJSON *w;
    cJSON_ArrayForEach(w, want) found |= have && cmp_values(have, w, &o) && o == 0;
    return strcmp(ty, "in") == 0 ? found : !found;
  }
  int o;
  if (!have || !cmp_values(have, want, &o)) return strcmp(ty, "ne") == 0;
  if (strcmp(ty, "eq") == 0) return o == 0;
  if (strcmp(ty, "ne") == 0) return o != 0;
  if (strcmp(ty, "gt") == 0) return o > 0;
  if (strcmp(ty, "gte") == 0) return o >= 0;
  if (strcmp(ty, "lt") == 0) return o < 0;
  return o <= 0;
}

/* ---- handlers --------------------------------------------------------- */

/* Add file_id to v (lock held); the processing step is armed. */
static vsfile *add_file(vstore *v, const char *file_id, const char *filename, const char *batch_id, const cJSON *cs,
                        const cJSON *attrs, int processing_ms) {
  vsfile *f = find_file(v, file_id);
  if (f) { /* already there: the same object, now also counted in this batch */
    if (batch_id) snprintf(f->batch_id, sizeof f->batch_id, "%s", batch_id);
    return f;
  }
  f = calloc(1, sizeof *f);
  step *st = calloc(1, sizeof *st);
  if (!f || !st || !(f->filename = strdup(filename)) || !(f->json = cJSON_CreateObject()) ||
      push((void ***)&v->files, &v->nf, &v->capf, f) != AW_OK) {
    free(st);
    vsfile_free(f);
    return NULL;
  }
  snprintf(f->file_id, sizeof f->file_id, "%s", file_id);
  if (batch_id) snprintf(f->batch_id, sizeof f->batch_id, "%s", batch_id);
  chunk_sizes(cs, &f->max_tokens, &f->overlap);
  f->gen = ++g_gen;
  cJSON *j = f->json;
  cJSON_AddStringToObject(j, "id", file_id);
  cJSON_AddStringToObject(j, "object", "vector_store.file");
  cJSON_AddNumberToObject(j, "usage_bytes", 0);
  cJSON_AddNumberToObject(j, "created_at", (double)sstore_unix_now());
  cJSON_AddStringToObject(j, "vector_store_id", v->id);
  cJSON_AddStringToObject(j, "status", "in_progress");
  cJSON_AddNullToObject(j, "last_error");
  cJSON *c = cJSON_AddObjectToObject(j, "chunking_strategy"), *s;
  cJSON_AddStringToObject(c, "type", "static");
  s = cJSON_AddObjectToObject(c, "static");
  cJSON_AddNumberToObject(s, "max_chunk_size_tokens", f->max_tokens);
  cJSON_AddNumberToObject(s, "chunk_overlap_tokens", f->overlap);
  cJSON_AddItemToObject(j, "attributes", cJSON_IsObject(attrs) ? cJSON_Duplicate(attrs, 1) : cJSON_CreateObject());
  snprintf(st->vs_id, sizeof st->vs_id, "%s", v->id);
  snprintf(st->file_id, sizeof st->file_id, "%s", file_id);
  st->gen = f->gen;
  if (stimer_add(stimer_now_ms() + processing_ms, process_cb, st) != AW_OK) {
    free(st);
    f->status = VF_FAILED;
    jset(j, "status", cJSON_CreateString("failed"));
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "code", "server_error");
    cJSON_AddStringToObject(e, "message", "The simulator could not schedule the file's processing.");
    jset(j, "last_error", e);
  }
  return f;
}

/* Look up every id of file_ids (no lock held): filenames out, or a 404. */
static char **lookup_files(const cJSON *ids, sapi_reply *r) {
  int n = cJSON_GetArraySize(ids), i = 0;
  char **names = calloc((size_t)n + 1, sizeof *names);
  if (!names) {
    sreq_json(r, 500, NULL);
    return NULL;
  }
  const cJSON *it;
  cJSON_ArrayForEach(it, ids) {
    char fn[600], path[PATH_MAX];
    if (sfiles_lookup(it->valuestring, fn, sizeof fn, path, sizeof path) != AW_OK) {
      sreq_not_found(r, "file", it->valuestring);
      break;
    }
    if (!(names[i++] = strdup(fn))) {
      sreq_json(r, 500, NULL);
      break;
    }
  }
  if (i < n) {
    for (int k = 0; k < i; k++) free(names[k]);
    free(names);
    return NULL;
  }
  return names;
}

static void free_names(char **names) {
  for (size_t i = 0; names && names[i]; i++) free(names[i]);
  free(names);
}

static void vs_create(const sapi_req *q, sapi_reply *r) {
  cJSON *body = sreq_parse_body(q, r, 1);
  if (!body) return;
  char **names = NULL;
  const cJSON *ids = cJSON_GetObjectItemCaseSensitive(body, "file_ids");
  if (sreq_check_fields(body, vs_fields, r, NULL, 0) == 0 && (!ids || (names = lookup_files(ids, r)))) {
    sfault_cfg cfg;
    sfault_get(&cfg);
    vstore *v = calloc(1, sizeof *v);
    sstore_lock();
    if (v) sstore_make_id("vs_", v->id, sizeof v->id);
    sstore_unlock();
    pthread_mutex_lock(&g_mu);
    if (v && (v->json = cJSON_CreateObject()) && smap_put(&g_ids, v->id, v) == AW_OK) {
      if (push((void ***)&g_vs, &g_n, &g_cap, v) != AW_OK) {
        smap_del(&g_ids, v->id);
        vstore_free(v);
        v = NULL;
      }
    } else if (v) {
      vstore_free(v);
      v = NULL;
    }
    if (v) {
      int64_t now = sstore_unix_now();
      const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "name");
      const cJSON *meta = cJSON_GetObjectItemCaseSensitive(body, "metadata");
      const cJSON *exp = cJSON_GetObjectItemCaseSensitive(body, "expires_after");
      cJSON *j = v->json;
      cJSON_AddStringToObject(j, "id", v->id);
      cJSON_AddStringToObject(j, "object", "vector_store");
      cJSON_AddNumberToObject(j, "created_at", (double)now);
      cJSON_AddStringToObject(j, "name", cJSON_IsString(name) ? name->valuestring : "");
      cJSON_AddNumberToObject(j, "usage_bytes", 0);
      cJSON_AddObjectToObject(j, "file_counts");
      cJSON_AddStringToObject(j, "status", "completed");
      if (exp) {
        cJSON_AddItemToObject(j, "expires_after", cJSON_Duplicate(exp, 1));
        cJSON_AddNumberToObject(j, "expires_at",
                                (double)(now + 86400 * (int64_t)cJSON_GetObjectItemCaseSensitive(exp, "days")->valuedouble));
      } else {
        cJSON_AddNullToObject(j, "expires_at");
      }
      cJSON_AddNumberToObject(j, "last_active_at", (double)now);
      cJSON_AddItemToObject(j, "metadata", cJSON_IsObject(meta) ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject());
      const cJSON *cs = cJSON_GetObjectItemCaseSensitive(body, "chunking_strategy"), *it;
      int i = 0;
      cJSON_ArrayForEach(it, ids) add_file(v, it->valuestring, names[i++], NULL, cs, NULL, cfg.file_processing_ms);
      refresh(v);
      sreq_obj(r, v->json);
    } else {
      sreq_json(r, 500, NULL);
    }
    pthread_mutex_unlock(&g_mu);
  }
  free_names(names);
  cJSON_Delete(body);
}

static void vsf_create(const sapi_req *q, sapi_reply *r, const char *vs_id) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  if (sreq_check_fields(body, vsf_fields, r, NULL, 0) == 0) {
    const char *fid = cJSON_GetObjectItemCaseSensitive(body, "file_id")->valuestring;
    char fn[600], path[PATH_MAX];
    sfault_cfg cfg;
    sfault_get(&cfg);
    if (sfiles_lookup(fid, fn, sizeof fn, path, sizeof path) != AW_OK) {
      sreq_not_found(r, "file", fid);
    } else {
      pthread_mutex_lock(&g_mu);
      vstore *v = smap_get(&g_ids, vs_id);
      vsfile *f = NULL;
      if (!v) sreq_not_found(r, "vector store", vs_id);
      else if (!(f = add_file(v, fid, fn, NULL, cJSON_GetObjectItemCaseSensitive(body, "chunking_strategy"),
                              cJSON_GetObjectItemCaseSensitive(body, "attributes"), cfg.file_processing_ms)))
        sreq_json(r, 500, NULL);
      else {
        refresh(v);
        sreq_obj(r, f->json);
      }
      pthread_mutex_unlock(&g_mu);
    }
  }
  cJSON_Delete(body);
}

static void batch_create(const sapi_req *q, sapi_reply *r, const char *vs_id) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  const cJSON *ids = cJSON_GetObjectItemCaseSensitive(body, "file_ids");
  const cJSON *files = cJSON_GetObjectItemCaseSensitive(body, "files");
  cJSON *all = NULL;
  char **names = NULL;
  if (sreq_check_fields(body, batch_fields, r, NULL, 0)) goto out;
  if (!ids == !files) {
    BAD(r, ids ? "files" : "file_ids", ids ? "invalid_value" : "missing_required_parameter",
        "Provide either 'file_ids' or 'files', not both.");
    goto out;
  }
  /* One list of ids in both forms, for the lookup. */
  all = cJSON_CreateArray();
  const cJSON *it;
  if (ids) cJSON_ArrayForEach(it, ids) cJSON_AddItemToArray(all, cJSON_CreateString(it->valuestring));
  else cJSON_ArrayForEach(it, files)
      cJSON_AddItemToArray(all, cJSON_CreateString(cJSON_GetObjectItemCaseSensitive(it, "file_id")->valuestring));
  if (!(names = lookup_files(all, r))) goto out;
  sfault_cfg cfg;
  sfault_get(&cfg);
  vbatch *b = calloc(1, sizeof *b);
  sstore_lock();
  if (b) sstore_make_id("vsfb_", b->id, sizeof b->id);
  sstore_unlock();
  pthread_mutex_lock(&g_mu);
  vstore *v = smap_get(&g_ids, vs_id);
  if (!v) {
    free(b);
    sreq_not_found(r, "vector store", vs_id);
  } else if (!b || !(b->json = cJSON_CreateObject()) || push((void ***)&v->batches, &v->nb, &v->capb, b) != AW_OK) {
    if (b) cJSON_Delete(b->json);
    free(b);
    sreq_json(r, 500, NULL);
  } else {
    cJSON_AddStringToObject(b->json, "id", b->id);
    cJSON_AddStringToObject(b->json, "object", "vector_store.files_batch");
    cJSON_AddNumberToObject(b->json, "created_at", (double)sstore_unix_now());
    cJSON_AddStringToObject(b->json, "vector_store_id", v->id);
    cJSON_AddStringToObject(b->json, "status", "in_progress");
    cJSON_AddObjectToObject(b->json, "file_counts");
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(body, "chunking_strategy");
    const cJSON *attrs = cJSON_GetObjectItemCaseSensitive(body, "attributes");
    int i = 0;
    cJSON_ArrayForEach(it, all) {
      const cJSON *per = files ? cJSON_GetArrayItem(files, i) : NULL;
      const cJSON *pcs = per && cJSON_GetObjectItemCaseSensitive(per, "chunking_strategy")
                             ? cJSON_GetObjectItemCaseSensitive(per, "chunking_strategy") : cs;
      const cJSON *pat = per && cJSON_GetObjectItemCaseSensitive(per, "attributes")
                             ? cJSON_GetObjectItemCaseSensitive(per, "attributes") : attrs;
      add_file(v, it->valuestring, names[i++], b->id, pcs, pat, cfg.file_processing_ms);
    }
    refresh(v);
    sreq_obj(r, b->json);
  }
  pthread_mutex_unlock(&g_mu);
out:
  free_names(names);
  cJSON_Delete(all);
  cJSON_Delete(body);
}

/* List v's files (of batch bid when not NULL) with the `filter` argument. */
static void list_files(const sapi_req *q, sapi_reply *r, vstore *v, const char *bid) {
  const char *filter = q->arg(q->arg_cls, "filter");
  int want = -1;
  if (filter) {
    for (int s = 0; s < VF_COUNT; s++)
      if (strcmp(vf_names[s], filter) == 0) want = s;
    if (want < 0) {
      BAD(r, "filter", "invalid_value",
          "Invalid value: '%s'. Supported values are: 'in_progress', 'completed', 'failed' and 'cancelled'.", filter);
      return;
    }
  }
  cJSON **objs = v->nf ? malloc(v->nf * sizeof *objs) : NULL;
  size_t n = 0;
  for (size_t i = 0; objs && i < v->nf; i++) {
    const vsfile *f = v->files[i];
    if ((want < 0 || (int)f->status == want) && (!bid || strcmp(f->batch_id, bid) == 0)) objs[n++] = f->json;
  }
  static const spage_opts opts = {20, 100, 1};
  if (v->nf && !objs) sreq_json(r, 500, NULL);
  else spage_reply(q, r, objs, n, &opts);
  free(objs);
}

static void vs_search(const sapi_req *q, sapi_reply *r, const char *vs_id) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  if (sreq_check_fields(body, search_fields, r, NULL, 0)) {
    cJSON_Delete(body);
    return;
  }
  const cJSON *query = cJSON_GetObjectItemCaseSensitive(body, "query");
  const cJSON *mx = cJSON_GetObjectItemCaseSensitive(body, "max_num_results");
  const cJSON *filters = cJSON_GetObjectItemCaseSensitive(body, "filters");
  const cJSON *th = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(body, "ranking_options"),
                                                     "score_threshold");
  size_t max_hits = cJSON_IsNumber(mx) ? (size_t)mx->valuedouble : 10;
  const char *qs[MAX_QUERIES];
  size_t nq = 0;
  if (cJSON_IsString(query)) qs[nq++] = query->valuestring;
  else {
    const cJSON *it;
    cJSON_ArrayForEach(it, query) qs[nq++] = it->valuestring;
  }
  pthread_mutex_lock(&g_mu);
  vstore *v = smap_get(&g_ids, vs_id);
  if (!v) {
    pthread_mutex_unlock(&g_mu);
    sreq_not_found(r, "vector store", vs_id);
    cJSON_Delete(body);
    return;
  }
  /* Completed files that pass the filters; searched under the lock (the
   * documents of a test: milliseconds). */
  const sretr_doc **docs = v->nf ? calloc(v->nf, sizeof *docs) : NULL;
  for (size_t i = 0; docs && i < v->nf; i++) {
    const vsfile *f = v->files[i];
    if (f->status == VF_COMPLETED &&
        (!filters || filter_match(filters, cJSON_GetObjectItemCaseSensitive(f->json, "attributes"))))
      docs[i] = f->doc;
  }
  sretr_hit hits[MAX_SEARCH_RESULTS];
  size_t nh = 0;
  int rc = v->nf && !docs ? AW_ENOMEM
                          : sretr_search(docs, v->nf, qs, nq, max_hits, cJSON_IsNumber(th) ? th->valuedouble : 0, hits, &nh);
  cJSON *page = NULL;
  if (rc == AW_OK) {
    jset(v->json, "last_active_at", cJSON_CreateNumber((double)sstore_unix_now()));
    page = cJSON_CreateObject();
    cJSON_AddStringToObject(page, "object", "vector_store.search_results.page");
    cJSON *sq = cJSON_AddArrayToObject(page, "search_query");
    for (size_t i = 0; i < nq; i++) cJSON_AddItemToArray(sq, cJSON_CreateString(qs[i]));
    cJSON *data = cJSON_AddArrayToObject(page, "data");
    for (size_t i = 0; i < nh; i++) {
      const vsfile *f = v->files[hits[i].doc];
      size_t len;
      const char *text = sretr_chunk_text(f->doc, hits[i].chunk, &len);
      cJSON *item = cJSON_CreateObject(), *content = cJSON_CreateArray(), *part = cJSON_CreateObject();
      cJSON_AddStringToObject(item, "file_id", f->file_id);
      cJSON_AddStringToObject(item, "filename", f->filename);
      /* Rounded so that the same search prints the same bytes. */
      cJSON_AddNumberToObject(item, "score", round(hits[i].score * 1e6) / 1e6);
      cJSON_AddItemToObject(item, "attributes", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(f->json, "attributes"), 1));
      cJSON_AddStringToObject(part, "type", "text");
      char *t = strndup(text, len);
      cJSON_AddStringToObject(part, "text", t ? t : "");
      free(t);
      cJSON_AddItemToArray(content, part);
      cJSON_AddItemToObject(item, "content", content);
      cJSON_AddItemToArray(data, item);
    }
    cJSON_AddFalseToObject(page, "has_more");
    cJSON_AddNullToObject(page, "next_page");
  }
  pthread_mutex_unlock(&g_mu);
  free(docs);
  sreq_json(r, page ? 200 : 500, page);
  cJSON_Delete(body);
}

cJSON *svs_file_search(const cJSON *ids, const char *query, size_t max_hits) {
  if (max_hits > MAX_SEARCH_RESULTS) max_hits = MAX_SEARCH_RESULTS;
  cJSON *out = cJSON_CreateArray();
  if (!out || !query) return out;
  pthread_mutex_lock(&g_mu);
  /* The stores' files side by side: one BM25 index over all of them, so
   * scores compare across stores (idf over every chunk searched). */
  size_t total = 0;
  const cJSON *id;
  cJSON_ArrayForEach(id, ids) {
    vstore *v = cJSON_IsString(id) ? smap_get(&g_ids, id->valuestring) : NULL;
    if (v) total += v->nf;
  }
  const sretr_doc **docs = total ? calloc(total, sizeof *docs) : NULL;
  const vsfile **files = total ? calloc(total, sizeof *files) : NULL;
  size_t n = 0;
  int ok = !total || (docs && files);
  cJSON_ArrayForEach(id, ids) {
    vstore *v = ok && cJSON_IsString(id) ? smap_get(&g_ids, id->valuestring) : NULL;
    int seen = 0;
    for (const cJSON *p = ids->child; v && p != id; p = p->next) seen |= cJSON_IsString(p) && !strcmp(p->valuestring, v->id);
    for (size_t i = 0; v && !seen && i < v->nf; i++) {
      files[n] = v->files[i];
      docs[n++] = v->files[i]->status == VF_COMPLETED ? v->files[i]->doc : NULL;
    }
  }
  sretr_hit hits[MAX_SEARCH_RESULTS];
  size_t nh = 0;
  if (ok && n && sretr_search(docs, n, &query, 1, max_hits, 0, hits, &nh) != AW_OK) ok = 0;
  for (size_t i = 0; ok && i < nh; i++) {
    const vsfile *f = files[hits[i].doc];
    size_t len;
    const char *text = sretr_chunk_text(f->doc, hits[i].chunk, &len);
    char *t = strndup(text, len);
    cJSON *item = cJSON_CreateObject();
    ok = t && item && cJSON_AddItemToArray(out, item);
    if (!ok) cJSON_Delete(item);
    if (ok) {
      cJSON_AddStringToObject(item, "file_id", f->file_id);
      cJSON_AddStringToObject(item, "filename", f->filename);
      cJSON_AddNumberToObject(item, "score", round(hits[i].score * 1e6) / 1e6);
      cJSON_AddItemToObject(item, "attributes", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(f->json, "attributes"), 1));
      cJSON_AddStringToObject(item, "text", t);
    }
    free(t);
  }
  pthread_mutex_unlock(&g_mu);
  free(docs);
  free(files);
  if (!ok) {
    cJSON_Delete(out);
    return NULL;
  }
  return out;
}

static int check_name_null(const cJSON *v, const char *name, sapi_reply *r) {
  return cJSON_IsNull(v) || cJSON_IsString(v) ? 0 : sreq_bad_type(r, name, "a string", v);
}

static const sreq_field update_fields[] = {
    {"name", V_FN, 0, 0, 0, check_name_null},
    {"expires_after", V_FN, 0, 0, 0, check_vs_expiry},
    {"metadata", V_META, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

/* modifyVectorStore: name (null keeps it), expires_after, metadata. */
static void vs_update(const sapi_req *q, sapi_reply *r, const char *id) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  if (sreq_check_fields(body, update_fields, r, NULL, 0) == 0) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(body, "name");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(body, "metadata");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(body, "expires_after");
    pthread_mutex_lock(&g_mu);
    vstore *v = smap_get(&g_ids, id);
    if (!v) {
      sreq_not_found(r, "vector store", id);
    } else {
      if (cJSON_IsString(name)) jset(v->json, "name", cJSON_CreateString(name->valuestring));
      if (meta) jset(v->json, "metadata", cJSON_IsObject(meta) ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject());
      if (exp) {
        double last = cJSON_GetObjectItemCaseSensitive(v->json, "last_active_at")->valuedouble;
        jset(v->json, "expires_after", cJSON_Duplicate(exp, 1));
        jset(v->json, "expires_at",
             cJSON_CreateNumber(last + 86400 * cJSON_GetObjectItemCaseSensitive(exp, "days")->valuedouble));
      }
      sreq_obj(r, v->json);
    }
    pthread_mutex_unlock(&g_mu);
  }
  cJSON_Delete(body);
}

/* cancelVectorStoreFileBatch: the batch's files still in progress are
 * cancelled (their processing step then finds nothing to do). Lock held. */
static void batch_cancel(sapi_reply *r, vstore *v, vbatch *b) {
  for (size_t i = 0; i < v->nf; i++) {
    vsfile *f = v->files[i];
    if (strcmp(f->batch_id, b->id) != 0 || f->status != VF_IN_PROGRESS) continue;
    f->status = VF_CANCELLED;
    jset(f->json, "status", cJSON_CreateString("cancelled"));
  }
  refresh(v);
  sreq_obj(r, b->json);
}

static void vs_delete(sapi_reply *r, const char *id) {
  pthread_mutex_lock(&g_mu);
  vstore *v = smap_del(&g_ids, id);
  if (v) {
    size_t i = 0;
    while (i < g_n && g_vs[i] != v) i++;
    if (i < g_n) memmove(&g_vs[i], &g_vs[i + 1], (g_n - i - 1) * sizeof *g_vs);
    g_n--;
  }
  pthread_mutex_unlock(&g_mu);
  if (!v) {
    sreq_not_found(r, "vector store", id);
    return;
  }
  vstore_free(v);
  sreq_deleted(r, id, "vector_store.deleted");
}

/* Remove file_id from v (lock held); 1 if it was there. */
static int remove_file(vstore *v, const char *file_id) {
  for (size_t i = 0; i < v->nf; i++) {
    if (strcmp(v->files[i]->file_id, file_id) != 0) continue;
    vsfile_free(v->files[i]);
    memmove(&v->files[i], &v->files[i + 1], (v->nf - i - 1) * sizeof *v->files);
    v->nf--;
    refresh(v);
    return 1;
  }
  return 0;
}

void svs_file_deleted(const char *file_id) {
  pthread_mutex_lock(&g_mu);
  for (size_t i = 0; i < g_n; i++) (void)remove_file(g_vs[i], file_id);
  pthread_mutex_unlock(&g_mu);
}

int svs_thread_store(const char *vs_id, const cJSON *file_ids, char *id_out, size_t id_size) {
  int n = cJSON_GetArraySize(file_ids), rc = AW_OK;
  char **names = calloc((size_t)n + 1, sizeof *names);
  if (!names) return AW_ENOMEM;
  const cJSON *it;
  int i = 0;
  cJSON_ArrayForEach(it, file_ids) { /* names first: sim_files is never called under g_mu */
    char fn[600], path[PATH_MAX];
    if (cJSON_IsString(it) && sfiles_lookup(it->valuestring, fn, sizeof fn, path, sizeof path) == AW_OK &&
        !(names[i] = strdup(fn)))
      rc = AW_ENOMEM;
    i++;
  }
  char fresh[40];
  sstore_make_id("vs_", fresh, sizeof fresh);
  sfault_cfg cfg;
  sfault_get(&cfg);
  pthread_mutex_lock(&g_mu);
  vstore *v = rc == AW_OK && vs_id ? smap_get(&g_ids, vs_id) : NULL;
  if (rc == AW_OK && !v) {
    v = calloc(1, sizeof *v);
    if (v) snprintf(v->id, sizeof v->id, "%s", fresh);
    if (!v || !(v->json = cJSON_CreateObject()) || smap_put(&g_ids, v->id, v) != AW_OK) {
      if (v) vstore_free(v);
      v = NULL;
    } else if (push((void ***)&g_vs, &g_n, &g_cap, v) != AW_OK) {
      smap_del(&g_ids, v->id);
      vstore_free(v);
      v = NULL;
    }
    if (v) {
      int64_t now = sstore_unix_now();
      cJSON *j = v->json, *exp;
      cJSON_AddStringToObject(j, "id", v->id);
      cJSON_AddStringToObject(j, "object", "vector_store");
      cJSON_AddNumberToObject(j, "created_at", (double)now);
      cJSON_AddStringToObject(j, "name", "");
      cJSON_AddNumberToObject(j, "usage_bytes", 0);
      cJSON_AddObjectToObject(j, "file_counts");
      cJSON_AddStringToObject(j, "status", "completed");
      exp = cJSON_AddObjectToObject(j, "expires_after");
      cJSON_AddStringToObject(exp, "anchor", "last_active_at");
      cJSON_AddNumberToObject(exp, "days", 7);
      cJSON_AddNumberToObject(j, "expires_at", (double)(now + 7 * 86400));
      cJSON_AddNumberToObject(j, "last_active_at", (double)now);
      cJSON_AddObjectToObject(j, "metadata");
    } else {
      rc = AW_ENOMEM;
    }
  }
  i = 0;
  const cJSON *add = rc == AW_OK ? file_ids : NULL;
  cJSON_ArrayForEach(it, add) {
    if (names[i] && !add_file(v, it->valuestring, names[i], NULL, NULL, NULL, cfg.file_processing_ms)) rc = AW_ENOMEM;
    i++;
  }
  if (v) {
    refresh(v);
    snprintf(id_out, id_size, "%s", v->id);
  }
  pthread_mutex_unlock(&g_mu);
  for (i = 0; i < n; i++) free(names[i]);
  free(names);
  return rc;
}

int svs_files_in_progress(const cJSON *ids) {
  int n = 0;
  const cJSON *id;
  pthread_mutex_lock(&g_mu);
  cJSON_ArrayForEach(id, ids) {
    vstore *v = cJSON_IsString(id) ? smap_get(&g_ids, id->valuestring) : NULL;
    for (size_t i = 0; v && i < v->nf; i++) n += v->files[i]->status == VF_IN_PROGRESS;
  }
  pthread_mutex_unlock(&g_mu);
  return n;
}

void svs_reset(void) {
  pthread_mutex_lock(&g_mu);
  for (size_t i = 0; i < g_n; i++) vstore_free(g_vs[i]);
  free(g_vs);
  g_vs = NULL;
  g_n = g_cap = 0;
  smap_free(&g_ids);
  pthread_mutex_unlock(&g_mu);
}

cJSON *svs_stats_json(void) {
  cJSON *o = cJSON_CreateObject();
  long c[VF_COUNT] = {0};
  pthread_mutex_lock(&g_mu);
  cJSON_AddNumberToObject(o, "vector_stores", (double)g_n);
  for (size_t i = 0; i < g_n; i++)
    for (size_t k = 0; k < g_vs[i]->nf; k++) c[g_vs[i]->files[k]->status]++;
  pthread_mutex_unlock(&g_mu);
  cJSON *f = cJSON_AddObjectToObject(o, "files");
  for (int s = 0; s < VF_COUNT; s++) cJSON_AddNumberToObject(f, vf_names[s], (double)c[s]);
  return o;
}

void svs_handle(const sapi_req *q, sapi_reply *r, char s[][64]) {
  switch (r->route) {
  case SR_VS_CREATE: vs_create(q, r); return;
  case SR_VS_DELETE: vs_delete(r, s[2]); return;
  case SR_VS_UPDATE: vs_update(q, r, s[2]); return;
  case SR_VSF_CREATE: vsf_create(q, r, s[2]); return;
  case SR_VSB_CREATE: batch_create(q, r, s[2]); return;
  case SR_VS_SEARCH: vs_search(q, r, s[2]); return;
  default: break;
  }
  static const spage_opts vs_opts = {20, 100, 1};
  pthread_mutex_lock(&g_mu);
  if (r->route == SR_VS_LIST) {
    cJSON **objs = g_n ? malloc(g_n * sizeof *objs) : NULL;
    for (size_t i = 0; objs && i < g_n; i++) objs[i] = g_vs[i]->json;
    if (g_n && !objs) sreq_json(r, 500, NULL);
    else spage_reply(q, r, objs, g_n, &vs_opts);
    free(objs);
    pthread_mutex_unlock(&g_mu);
    return;
  }
  vstore *v = smap_get(&g_ids, s[2]);
  vsfile *f;
  vbatch *b;
  if (!v) sreq_not_found(r, "vector store", s[2]);
  else if (r->route == SR_VS_GET) sreq_obj(r, v->json);
  else if (r->route == SR_VSF_LIST) list_files(q, r, v, NULL);
  else if (r->route == SR_VSF_GET || r->route == SR_VSF_DELETE) {
    if (!(f = find_file(v, s[4]))) sreq_not_found(r, "vector store file", s[4]);
    else if (r->route == SR_VSF_GET) sreq_obj(r, f->json);
    else {
      (void)remove_file(v, s[4]);
      sreq_deleted(r, s[4], "vector_store.file.deleted");
    }
  } else if (!(b = find_batch(v, s[4]))) {
    sreq_not_found(r, "vector store file batch", s[4]);
  } else if (r->route == SR_VSB_GET) {
    sreq_obj(r, b->json);
  } else if (r->route == SR_VSB_CANCEL) {
    batch_cancel(r, v, b);
  } else {
    list_files(q, r, v, b->id);
  }
  pthread_mutex_unlock(&g_mu);
}

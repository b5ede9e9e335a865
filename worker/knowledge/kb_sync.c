/* kb_sync.c -- the knowledge sync's state machine (see kb_sync.h).
 *
 * One enum (kb_state) moved only by go(), which logs every transition at
 * debug level with the store, so a sync that stops half-way says where.
 * Each state starts one asynchronous call (API or Redis) whose callback
 * records the outcome and calls go() with the next state; hashing is the
 * one synchronous step (it reads the document from disk, 64 KiB at a time:
 * start-up and the CLI have nothing else to do on the loop meanwhile).
 *
 * Lifetime: Redis has no cancel, so kbs_free while a Redis reply is pending
 * only marks the sync dead; the reply's callback frees it (rconn_free fails
 * pending replies into their callbacks, redis_conn.h).
 */
#include "kb_sync.h"

#include <stdarg.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "files_api.h"
#include "kb_doc.h"
#include "log.h"
#include "rkeys.h"
#include "vector_stores.h"

#define LOCK_POLL_MS 500
/* The lock is a lease: taken for LOCK_LEASE_MS and renewed every third of
 * it while the sync runs, so a sync that dies (SIGKILL, a crash) holds the
 * next one back for LOCK_LEASE_MS at most, however long the store's
 * processing takes. */
#define LOCK_LEASE_MS 15000
#define ORPHAN_PAGES 50
#define ORPHANS_PER_PAGE 100

typedef enum kb_state {
  KB_START = 0,
  KB_LOCK,          /* SET lock NX PX */
  KB_LOAD,          /* HGETALL the store's record */
  KB_STORE_CHECK,   /* GET the remembered store */
  KB_STORE_CREATE,  /* POST /vector_stores with aw_key */
  KB_STORE_RECORD,  /* HSET id */
  KB_DOC,           /* hash the next document, decide */
  KB_DOC_CHECK,     /* GET the remembered file of an unchanged document */
  KB_DOC_UPLOAD,    /* POST /files */
  KB_DOC_ADD,       /* POST /vector_stores/{vs}/files */
  KB_WAIT,          /* until the store's files are processed */
  KB_FAILED_LIST,   /* which files failed processing */
  KB_RECORD,        /* HSET the processed documents */
  KB_DETACH,        /* the next old file: DELETE /vector_stores/{vs}/files/{id} */
  KB_DELETE_FILE,   /* DELETE /files/{id} */
  KB_FORGET,        /* HDEL a removed document */
  KB_ORPHAN_LIST,   /* GET /files, ours not recorded */
  KB_ORPHAN_DETACH, /* DELETE /vector_stores/{vs}/files/{id} */
  KB_ORPHAN_DELETE, /* DELETE /files/{id} */
  KB_UNLOCK,        /* release the lock if still ours */
  KB_LOOKUP,        /* lookup_only: HGET id */
  KB_NEXT_STORE,
  KB_DONE,
} kb_state;

static const char *const STATE_NAMES[] = {
    "start", "lock", "load", "store_check", "store_create", "store_record", "doc", "doc_check", "doc_upload",
    "doc_add", "wait", "failed_list", "record", "detach", "delete_file", "forget", "orphan_list",
    "orphan_detach", "orphan_delete", "unlock", "lookup", "next_store", "done"};

enum { ACT_NONE = 0, ACT_UNCHANGED, ACT_UPLOADED, ACT_REPLACED, ACT_REMOVED, ACT_FAILED };
static const char *const ACT_NAMES[] = {"-", "unchanged", "uploaded", "replaced", "removed", "failed"};

typedef struct kb_doc {
  const cfg_kb_document *cfgdoc; /* NULL: remembered, no longer configured */
  char *key;                     /* owned */
  char sha[65];
  long long bytes;
  int fd;
  char old_sha[65], old_file[API_ID_MAX];
  long long old_bytes;
  char file[API_ID_MAX];         /* the file in the store once synced */
  int act;
  int to_record;                 /* added this sync: recorded once processed */
  int detached;                  /* the old file's detach/delete done */
} kb_doc;

typedef struct kb_timer {
  uv_timer_t t;
} kb_timer;

struct kbs {
  kbs_config kc;
  cfg_kb_store *stores;
  size_t n, si;
  kbs_done_cb cb;
  void *opaque;
  kb_state state;
  kbs_summary sum;
  uint64_t t0;
  rk_space ks;
  char key[RK_KEY_MAX], lock[RK_KEY_MAX];
  char token[33];
  uint64_t lock_deadline;
  char vs[API_ID_MAX];
  int store_new;
  kb_doc *docs;
  size_t ndocs, di;
  int added;                     /* files added to the store this sync */
  char orphans[ORPHANS_PER_PAGE][API_ID_MAX];
  long long orphan_bytes[ORPHANS_PER_PAGE];
  size_t norphans, oi;
  char after[API_ID_MAX];
  int pages, more;
  fapi_op *fop;
  vst_op *vop;
  kb_timer *timer;
  kb_timer *renew;               /* renews the lock's lease while it is held */
  int redis_pending;
  int dead;                      /* kbs_free called while a Redis reply was pending */
  int done;
};

static void go(kbs *k, kb_state s);

/* ---- helpers ----------------------------------------------------------------------- */

static cfg_kb_store *cur(kbs *k) { return &k->stores[k->si]; }

static void free_docs(kbs *k) {
  for (size_t i = 0; i < k->ndocs; i++) {
    if (k->docs[i].fd >= 0) close(k->docs[i].fd);
    free(k->docs[i].key);
  }
  free(k->docs);
  k->docs = NULL;
  k->ndocs = k->di = 0;
}

static void on_timer_closed(uv_handle_t *h) { free(h); }

static void destroy(kbs *k) {
  fapi_cancel(k->fop);
  vst_cancel(k->vop);
  if (k->timer) uv_close((uv_handle_t *)&k->timer->t, on_timer_closed);
  if (k->renew) uv_close((uv_handle_t *)&k->renew->t, on_timer_closed);
  free_docs(k);
  free(k);
}

/* Stop the sync with an infrastructure error: the lock is released (best
 * effort) and the summary reports it. */
static void fail(kbs *k, int err, const char *fmt, ...) AW_PRINTF(3, 4);
static void fail(kbs *k, int err, const char *fmt, ...) {
  if (k->state == KB_UNLOCK) k->lock[0] = '\0'; /* releasing failed: it expires on its own */
  if (!k->sum.err) {
    k->sum.err = err ? err : AW_EIO;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->sum.errmsg, sizeof k->sum.errmsg, fmt, ap);
    va_end(ap);
    log_error(NULL, "kb sync: store %s: %s", k->si < k->n ? cur(k)->name : "-", k->sum.errmsg);
  }
  go(k, k->lock[0] ? KB_UNLOCK : KB_DONE);
}

static void doc_log(kbs *k, const kb_doc *d, const char *what) {
  log_info(NULL, "kb sync: store %s: %s %s (%lld bytes, file %s)", cur(k)->name, what, d->key,
           d->act == ACT_REMOVED ? d->old_bytes : d->bytes, d->act == ACT_REMOVED ? d->old_file : d->file);
}

static void doc_failed(kbs *k, kb_doc *d, const char *why) {
  d->act = ACT_FAILED;
  d->to_record = 0;
  k->sum.failed++;
  log_error(NULL, "kb sync: store %s: failed %s (%lld bytes): %s", cur(k)->name, d->key, d->bytes, why);
  if (!k->sum.errmsg[0]) snprintf(k->sum.errmsg, sizeof k->sum.errmsg, "store %s: %s: %s", cur(k)->name, d->key, why);
}

static int is_retry(int err) { return aw_error_classify(err) == AW_CLASS_RETRY; }

/* ---- Redis ------------------------------------------------------------------------- */

typedef void (*reply_fn)(kbs *k, int err, redisReply *r);

typedef struct rctx {
  kbs *k;
  reply_fn fn;
} rctx;

static void on_reply(void *opaque, int err, redisReply *r) {
  rctx *c = opaque;
  kbs *k = c->k;
  reply_fn fn = c->fn;
  free(c);
  k->redis_pending--;
  if (k->dead) {
    if (!k->redis_pending) destroy(k);
    return;
  }
  if (!err && r && r->type == REDIS_REPLY_ERROR) err = AW_EREDIS;
  fn(k, err, r);
}

static void redis_argv(kbs *k, reply_fn fn, int argc, const char **argv) {
  rctx *c = malloc(sizeof *c);
  size_t *lens = calloc((size_t)argc, sizeof *lens);
  int rc = c && lens ? AW_OK : AW_ENOMEM;
  for (int i = 0; !rc && i < argc; i++) lens[i] = strlen(argv[i]);
  if (!rc) {
    c->k = k;
    c->fn = fn;
    rc = rconn_commandargv(k->kc.redis, on_reply, c, argc, argv, lens);
  }
  free(lens);
  if (rc) {
    free(c);
    fail(k, rc == AW_ENOMEM ? rc : AW_EREDIS, "redis: %s", aw_strerror(rc));
    return;
  }
  k->redis_pending++;
}

/* ---- the transitions' callbacks -------------------------------------------------------- */

static void on_lock_timer(uv_timer_t *t) { go(((kbs *)t->data), KB_LOCK); }

/* A renewal's answer: 1 renewed; 0 the lease was lost (it expired while
 * Redis was out of reach, and another sync may hold it now).  The sync goes
 * on either way -- what it does is safe to do twice (uploads are named by
 * content, orphans are only ever files of this store) -- but it says so. */
static void on_renewed(kbs *k, int err, redisReply *r) {
  if (err || !r || r->type != REDIS_REPLY_INTEGER || r->integer != 1)
    log_warn(NULL, "kb sync: store %s: could not renew the sync lock %s%s", k->si < k->n ? cur(k)->name : "-",
             k->lock, err ? " (redis error)" : " (lost)");
}

static void on_renew_timer(uv_timer_t *t) {
  kbs *k = t->data;
  if (!k->lock[0] || k->dead) return;
  static const char script[] =
      "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";
  char px[24];
  snprintf(px, sizeof px, "%d", LOCK_LEASE_MS);
  const char *argv[] = {"EVAL", script, "1", k->lock, k->token, px};
  redis_argv(k, on_renewed, 6, argv);
}

static void on_locked(kbs *k, int err, redisReply *r) {
  if (err) {
    fail(k, AW_EREDIS, "redis: cannot take the sync lock %s", k->lock);
    return;
  }
  if (r && r->type == REDIS_REPLY_STATUS) {
    uv_timer_start(&k->renew->t, on_renew_timer, LOCK_LEASE_MS / 3, LOCK_LEASE_MS / 3);
    go(k, KB_LOAD);
    return;
  }
  /* Another worker syncs this store: wait for it, then find little to do. */
  if (uv_now(k->kc.loop) >= k->lock_deadline) {
    char lock[RK_KEY_MAX];
    snprintf(lock, sizeof lock, "%s", k->lock);
    k->lock[0] = '\0'; /* not ours: nothing to release */
    fail(k, AW_ETIMEDOUT, "another sync held the lock %s longer than its lifetime", lock);
    return;
  }
  log_info(NULL, "kb sync: store %s: another worker is syncing it; waiting", cur(k)->name);
  k->lock[0] = '\0';
  uv_timer_start(&k->timer->t, on_lock_timer, LOCK_POLL_MS, 0);
}

static kb_doc *find_doc(kbs *k, const char *key, size_t kl) {
  for (size_t i = 0; i < k->ndocs; i++)
    if (strlen(k->docs[i].key) == kl && !memcmp(k->docs[i].key, key, kl)) return &k->docs[i];
  return NULL;
}

static void on_loaded(kbs *k, int err, redisReply *r) {
  if (err || !r || r->type != REDIS_REPLY_ARRAY) {
    fail(k, AW_EREDIS, "redis: cannot read %s", k->key);
    return;
  }
  if (r->elements / 2 > KBS_MAX_RECORDED + 1) {
    fail(k, AW_ETOOBIG, "%s holds %zu fields, more than %d", k->key, r->elements / 2, KBS_MAX_RECORDED);
    return;
  }
  cfg_kb_store *s = cur(k);
  k->docs = calloc(s->ndocuments + r->elements / 2 + 1, sizeof *k->docs);
  if (!k->docs) {
    fail(k, AW_ENOMEM, "out of memory");
    return;
  }
  for (size_t i = 0; i < s->ndocuments; i++) {
    kb_doc *d = &k->docs[k->ndocs++];
    d->fd = -1;
    d->cfgdoc = &s->documents[i];
    d->key = strdup(s->documents[i].key);
    if (!d->key) {
      fail(k, AW_ENOMEM, "out of memory");
      return;
    }
  }
  k->vs[0] = '\0';
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    const redisReply *f = r->element[i], *v = r->element[i + 1];
    if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING) continue;
    if (f->len == 2 && !memcmp(f->str, "id", 2)) {
      snprintf(k->vs, sizeof k->vs, "%.*s", (int)v->len, v->str);
      continue;
    }
    if (f->len < 3 || memcmp(f->str, "d:", 2)) continue;
    char sha[65] = "", file[API_ID_MAX] = "";
    long long bytes = 0;
    char val[256];
    snprintf(val, sizeof val, "%.*s", (int)v->len, v->str);
    if (sscanf(val, "%64s %95s %lld", sha, file, &bytes) != 3) continue; /* unreadable: its file becomes an orphan */
    kb_doc *d = find_doc(k, f->str + 2, f->len - 2);
    if (!d) { /* remembered, no longer configured: removed below */
      d = &k->docs[k->ndocs++];
      d->fd = -1;
      d->key = strndup(f->str + 2, f->len - 2);
      if (!d->key) {
        fail(k, AW_ENOMEM, "out of memory");
        return;
      }
      d->act = ACT_REMOVED;
    }
    snprintf(d->old_sha, sizeof d->old_sha, "%s", sha);
    snprintf(d->old_file, sizeof d->old_file, "%s", file);
    d->old_bytes = bytes;
  }
  go(k, k->vs[0] ? KB_STORE_CHECK : KB_STORE_CREATE);
}

static void on_store_checked(void *opaque, const vst_result *res) {
  kbs *k = opaque;
  k->vop = NULL;
  if (res->err == AW_ENOTFOUND) {
    log_warn(NULL, "kb sync: store %s: vector store %s is gone; creating it again", cur(k)->name, k->vs);
    k->vs[0] = '\0';
    go(k, KB_STORE_CREATE);
    return;
  }
  if (res->err) {
    fail(k, res->err, "vector store %s: %s", k->vs, res->errmsg);
    return;
  }
  go(k, KB_DOC);
}

static void on_store_created(void *opaque, const vst_result *res) {
  kbs *k = opaque;
  k->vop = NULL;
  if (res->err || !res->id[0] || strlen(res->id) >= sizeof k->vs) {
    fail(k, res->err ? res->err : AW_EPARSE, "creating the vector store: %s", res->errmsg);
    return;
  }
  snprintf(k->vs, sizeof k->vs, "%s", res->id);
  k->store_new = 1; /* every document is added to it, unchanged ones too */
  log_info(NULL, "kb sync: store %s: vector store %s %s", cur(k)->name, k->vs, res->found ? "found by its key" : "created");
  go(k, KB_STORE_RECORD);
}

static void on_store_recorded(kbs *k, int err, redisReply *r) {
  (void)r;
  if (err) {
    fail(k, AW_EREDIS, "redis: cannot record the vector store id in %s", k->key);
    return;
  }
  go(k, KB_DOC);
}

static void next_doc(kbs *k) {
  k->di++;
  go(k, KB_DOC);
}

static void on_doc_checked(void *opaque, const fapi_result *res) {
  kbs *k = opaque;
  k->fop = NULL;
  kb_doc *d = &k->docs[k->di];
  if (res->err == AW_ENOTFOUND) { /* the remembered file is gone: upload again */
    d->act = ACT_UPLOADED;
    go(k, KB_DOC_UPLOAD);
    return;
  }
  if (res->err) {
    fail(k, res->err, "file %s of %s: %s", d->old_file, d->key, res->errmsg);
    return;
  }
  d->act = ACT_UNCHANGED;
  snprintf(d->file, sizeof d->file, "%s", d->old_file);
  close(d->fd);
  d->fd = -1;
  if (k->store_new) {
    go(k, KB_DOC_ADD);
    return;
  }
  k->sum.unchanged++;
  doc_log(k, d, "unchanged");
  next_doc(k);
}

static void on_uploaded(void *opaque, const fapi_result *res) {
  kbs *k = opaque;
  k->fop = NULL;
  kb_doc *d = &k->docs[k->di];
  close(d->fd);
  d->fd = -1;
  if (res->err && is_retry(res->err)) {
    fail(k, res->err, "uploading %s: %s", d->key, res->errmsg);
    return;
  }
  if (res->err || !res->file) {
    doc_failed(k, d, res->errmsg);
    next_doc(k);
    return;
  }
  snprintf(d->file, sizeof d->file, "%s", res->file->id);
  k->sum.bytes += d->bytes;
  go(k, KB_DOC_ADD);
}

static void on_added(void *opaque, const vst_result *res) {
  kbs *k = opaque;
  k->vop = NULL;
  kb_doc *d = &k->docs[k->di];
  if (res->err && is_retry(res->err)) {
    fail(k, res->err, "adding %s (%s) to %s: %s", d->key, d->file, k->vs, res->errmsg);
    return;
  }
  if (res->err) {
    doc_failed(k, d, res->errmsg);
  } else {
    d->to_record = 1;
    k->added++;
  }
  next_doc(k);
}

static void on_waited(void *opaque, const vst_result *res) {
  kbs *k = opaque;
  k->vop = NULL;
  if (!res->err) {
    go(k, KB_RECORD);
  } else if (res->err == AW_EINVAL || (res->counts.failed > 0 && res->err == AW_EHTTP5XX)) {
    log_warn(NULL, "kb sync: store %s: %s", cur(k)->name, res->errmsg);
    go(k, KB_FAILED_LIST);
  } else {
    fail(k, res->err, "waiting for vector store %s: %s", k->vs, res->errmsg);
  }
}

static void on_failed_listed(void *opaque, const vst_result *res) {
  kbs *k = opaque;
  k->vop = NULL;
  if (res->err) {
    fail(k, res->err, "listing the failed files of %s: %s", k->vs, res->errmsg);
    return;
  }
  const cJSON *it;
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(res->json, "data")) {
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "id"));
    const cJSON *le = cJSON_GetObjectItemCaseSensitive(it, "last_error");
    const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(le, "message"));
    for (size_t i = 0; id && i < k->ndocs; i++) {
      kb_doc *d = &k->docs[i];
      if (!d->to_record || strcmp(d->file, id)) continue;
      char why[320];
      snprintf(why, sizeof why, "processing failed: %s", msg ? msg : "no reason given");
      /* Not recorded: the file is an orphan the orphan step deletes; a
       * replaced document keeps its old file. */
      doc_failed(k, d, why);
    }
  }
  go(k, KB_RECORD);
}

static void on_recorded(kbs *k, int err, redisReply *r) {
  (void)r;
  if (err) {
    fail(k, AW_EREDIS, "redis: cannot record the documents in %s", k->key);
    return;
  }
  for (size_t i = 0; i < k->ndocs; i++) {
    kb_doc *d = &k->docs[i];
    if (!d->to_record) continue;
    if (d->act == ACT_UNCHANGED) k->sum.unchanged++;
    else if (d->act == ACT_REPLACED) k->sum.replaced++;
    else k->sum.uploaded++;
    doc_log(k, d, ACT_NAMES[d->act]);
  }
  k->di = 0;
  go(k, KB_DETACH);
}

static kb_doc *detach_doc(kbs *k) { return &k->docs[k->di]; }

static void on_detached(void *opaque, const vst_result *res) {
  kbs *k = opaque;
  k->vop = NULL;
  kb_doc *d = detach_doc(k);
  if (res->err && res->err != AW_ENOTFOUND) {
    fail(k, res->err, "detaching %s (%s) from %s: %s", d->key, d->old_file, k->vs, res->errmsg);
    return;
  }
  go(k, KB_DELETE_FILE);
}

static void on_file_deleted(void *opaque, const fapi_result *res) {
  kbs *k = opaque;
  k->fop = NULL;
  kb_doc *d = detach_doc(k);
  if (res->err && res->err != AW_ENOTFOUND) {
    fail(k, res->err, "deleting file %s of %s: %s", d->old_file, d->key, res->errmsg);
    return;
  }
  d->detached = 1;
  if (d->act == ACT_REMOVED) {
    go(k, KB_FORGET);
    return;
  }
  log_info(NULL, "kb sync: store %s: deleted the old file %s of %s", cur(k)->name, d->old_file, d->key);
  k->di++;
  go(k, KB_DETACH);
}

static void on_forgotten(kbs *k, int err, redisReply *r) {
  (void)r;
  kb_doc *d = detach_doc(k);
  if (err) {
    fail(k, AW_EREDIS, "redis: cannot forget %s in %s", d->key, k->key);
    return;
  }
  k->sum.removed++;
  doc_log(k, d, "removed");
  k->di++;
  go(k, KB_DETACH);
}

/* Does the record (after this sync) name file id?  A document whose new
 * file failed keeps its old one. */
static int referenced(kbs *k, const char *id) {
  for (size_t i = 0; i < k->ndocs; i++) {
    const kb_doc *d = &k->docs[i];
    if (d->act == ACT_REMOVED) continue;
    if ((d->to_record || d->act == ACT_UNCHANGED) && !strcmp(d->file, id)) return 1;
    if (!d->to_record && d->old_file[0] && !strcmp(d->old_file, id)) return 1;
  }
  return 0;
}

static void on_files_listed(void *opaque, const fapi_result *res) {
  kbs *k = opaque;
  k->fop = NULL;
  if (res->err) {
    fail(k, res->err, "listing files: %s", res->errmsg);
    return;
  }
  k->norphans = k->oi = 0;
  const cJSON *it, *last = NULL;
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(res->json, "data")) {
    last = it;
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "id"));
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "filename"));
    if (!id || !name || strlen(id) >= API_ID_MAX || !kbd_is_our_file(cur(k)->name, k->vs, name) || referenced(k, id))
      continue;
    if (k->norphans < ORPHANS_PER_PAGE) {
      const cJSON *b = cJSON_GetObjectItemCaseSensitive(it, "bytes");
      k->orphan_bytes[k->norphans] = cJSON_IsNumber(b) ? (long long)b->valuedouble : 0;
      snprintf(k->orphans[k->norphans++], API_ID_MAX, "%s", id);
    }
  }
  const char *last_id = last ? cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(last, "id")) : NULL;
  k->more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res->json, "has_more")) && last_id &&
            strlen(last_id) < sizeof k->after && ++k->pages < ORPHAN_PAGES;
  if (k->more) snprintf(k->after, sizeof k->after, "%s", last_id);
  go(k, KB_ORPHAN_DETACH);
}

static void on_orphan_detached(void *opaque, const vst_result *res) {
  kbs *k = opaque;
  k->vop = NULL;
  if (res->err && res->err != AW_ENOTFOUND) {
    fail(k, res->err, "detaching orphan %s: %s", k->orphans[k->oi], res->errmsg);
    return;
  }
  go(k, KB_ORPHAN_DELETE);
}

static void on_orphan_deleted(void *opaque, const fapi_result *res) {
  kbs *k = opaque;
  k->fop = NULL;
  if (res->err && res->err != AW_ENOTFOUND) {
    fail(k, res->err, "deleting orphan %s: %s", k->orphans[k->oi], res->errmsg);
    return;
  }
  k->sum.orphans++;
  log_info(NULL, "kb sync: store %s: orphan deleted: file %s (%lld bytes, uploaded by a sync that did not finish)",
           cur(k)->name, k->orphans[k->oi], k->orphan_bytes[k->oi]);
  k->oi++;
  go(k, KB_ORPHAN_DETACH);
}

static void on_unlocked(kbs *k, int err, redisReply *r) {
  (void)r;
  if (err) log_warn(NULL, "kb sync: could not release %s (it expires on its own)", k->lock);
  k->lock[0] = '\0';
  go(k, k->sum.err ? KB_DONE : KB_NEXT_STORE);
}

static void on_looked_up(kbs *k, int err, redisReply *r) {
  if (err) {
    fail(k, AW_EREDIS, "redis: cannot read %s", k->key);
    return;
  }
  if (!r || r->type != REDIS_REPLY_STRING || !r->len || r->len >= sizeof cur(k)->id) {
    fail(k, AW_ENOTFOUND, "knowledge store %s was never synced (run `assistant-worker sync`, or set "
                          "knowledge.sync_on_start)", cur(k)->name);
    return;
  }
  snprintf(cur(k)->id, sizeof cur(k)->id, "%.*s", (int)r->len, r->str);
  log_info(NULL, "kb sync: store %s is vector store %s (not synced: knowledge.sync_on_start is off)", cur(k)->name,
           cur(k)->id);
  k->si++;
  go(k, k->si < k->n ? KB_LOOKUP : KB_DONE);
}

/* ---- the transition function ----------------------------------------------------------- */

static void start_doc(kbs *k) {
  while (k->di < k->ndocs && k->docs[k->di].act == ACT_REMOVED) k->di++;
  if (k->di >= k->ndocs) {
    go(k, k->added ? KB_WAIT : KB_RECORD);
    return;
  }
  kb_doc *d = &k->docs[k->di];
  char err[512];
  if (kbd_hash(d->cfgdoc->path, &d->fd, d->sha, &d->bytes, err, sizeof err)) {
    doc_failed(k, d, err);
    next_doc(k);
    return;
  }
  if (d->old_file[0] && !strcmp(d->old_sha, d->sha)) {
    go(k, KB_DOC_CHECK);
    return;
  }
  d->act = d->old_file[0] ? ACT_REPLACED : ACT_UPLOADED;
  go(k, KB_DOC_UPLOAD);
}

static void start_record(kbs *k) {
  size_t n = 0;
  for (size_t i = 0; i < k->ndocs; i++) n += k->docs[i].to_record;
  if (!n) {
    k->di = 0;
    go(k, KB_DETACH);
    return;
  }
  const char **argv = calloc(2 + 2 * n, sizeof *argv);
  char **owned = calloc(2 * n, sizeof *owned);
  if (!argv || !owned) {
    free(argv);
    free(owned);
    fail(k, AW_ENOMEM, "out of memory");
    return;
  }
  int argc = 0, no = 0, ok = 1;
  argv[argc++] = "HSET";
  argv[argc++] = k->key;
  for (size_t i = 0; ok && i < k->ndocs; i++) {
    const kb_doc *d = &k->docs[i];
    if (!d->to_record) continue;
    size_t fl = strlen(d->key) + 3, vl = 64 + 1 + API_ID_MAX + 24;
    char *f = malloc(fl), *v = malloc(vl);
    owned[no++] = f;
    owned[no++] = v;
    if (!f || !v) {
      ok = 0;
      break;
    }
    snprintf(f, fl, "d:%s", d->key);
    snprintf(v, vl, "%s %s %lld", d->sha, d->file, d->bytes);
    argv[argc++] = f;
    argv[argc++] = v;
  }
  if (ok) redis_argv(k, on_recorded, argc, argv);
  for (int i = 0; i < no; i++) free(owned[i]);
  free(owned);
  free(argv);
  if (!ok) fail(k, AW_ENOMEM, "out of memory");
}

/* The next document with an old file to let go of: a replaced one whose new
 * file is recorded, or one no longer configured. */
static void start_detach(kbs *k) {
  while (k->di < k->ndocs) {
    const kb_doc *d = &k->docs[k->di];
    if (!d->detached && d->old_file[0] &&
        (d->act == ACT_REMOVED || (d->to_record && strcmp(d->old_file, d->file))))
      break;
    k->di++;
  }
  if (k->di >= k->ndocs) {
    k->pages = 0;
    k->after[0] = '\0';
    go(k, KB_ORPHAN_LIST);
    return;
  }
  int rc = vst_file_delete(k->kc.api, k->vs, k->docs[k->di].old_file, on_detached, k, &k->vop);
  if (rc) fail(k, rc, "detaching %s: %s", k->docs[k->di].old_file, aw_strerror(rc));
}

static void go(kbs *k, kb_state s) {
  const char *store = k->si < k->n ? cur(k)->name : "-";
  log_debug(NULL, "kb sync: store %s: %s -> %s", store, STATE_NAMES[k->state], STATE_NAMES[s]);
  k->state = s;
  int rc = AW_OK;
  switch (s) {
  case KB_START: break;
  case KB_LOCK: {
    if (rk_fleet_key(&k->ks, RK_KB, cur(k)->name, k->key, sizeof k->key) ||
        rk_fleet_key(&k->ks, RK_KB_LOCK, cur(k)->name, k->lock, sizeof k->lock)) {
      fail(k, AW_EINVAL, "store name %s makes no Redis key", cur(k)->name);
      return;
    }
    char px[24];
    snprintf(px, sizeof px, "%d", LOCK_LEASE_MS);
    const char *argv[] = {"SET", k->lock, k->token, "NX", "PX", px};
    redis_argv(k, on_locked, 6, argv);
    return;
  }
  case KB_LOAD: {
    const char *argv[] = {"HGETALL", k->key};
    redis_argv(k, on_loaded, 2, argv);
    return;
  }
  case KB_STORE_CHECK: rc = vst_retrieve(k->kc.api, k->vs, on_store_checked, k, &k->vop); break;
  case KB_STORE_CREATE: {
    char name[CFG_KB_NAME_SIZE + 8];
    snprintf(name, sizeof name, "aw-kb %s", cur(k)->name);
    vst_create_opts o = {.name = name, .key = cur(k)->name};
    rc = vst_create(k->kc.api, &o, on_store_created, k, &k->vop);
    break;
  }
  case KB_STORE_RECORD: {
    const char *argv[] = {"HSET", k->key, "id", k->vs};
    redis_argv(k, on_store_recorded, 4, argv);
    return;
  }
  case KB_DOC: start_doc(k); return;
  case KB_DOC_CHECK: rc = fapi_retrieve(k->kc.api, k->docs[k->di].old_file, on_doc_checked, k, &k->fop); break;
  case KB_DOC_UPLOAD: {
    kb_doc *d = &k->docs[k->di];
    char fname[FAPI_NAME_MAX];
    kbd_file_name(cur(k)->name, k->vs, d->sha, d->cfgdoc->path, fname, sizeof fname);
    fapi_upload_opts o;
    fapi_upload_opts_default(&o);
    o.filename = fname;
    o.purpose = "assistants";
    o.fd = d->fd;
    o.len = (size_t)d->bytes;
    rc = fapi_upload(k->kc.api, &o, on_uploaded, k, &k->fop);
    break;
  }
  case KB_DOC_ADD: rc = vst_file_add(k->kc.api, k->vs, k->docs[k->di].file, on_added, k, &k->vop); break;
  case KB_WAIT: {
    vst_wait_opts o = {.loop = k->kc.loop, .vector_store_id = k->vs, .deadline_ms = k->kc.wait_timeout_ms};
    rc = vst_wait(k->kc.api, &o, on_waited, k, &k->vop);
    break;
  }
  case KB_FAILED_LIST: rc = vst_files_list(k->kc.api, k->vs, "failed", 100, NULL, on_failed_listed, k, &k->vop); break;
  case KB_RECORD: start_record(k); return;
  case KB_DETACH: start_detach(k); return;
  case KB_DELETE_FILE: rc = fapi_delete(k->kc.api, detach_doc(k)->old_file, on_file_deleted, k, &k->fop); break;
  case KB_FORGET: {
    char f[CFG_PATH_SIZE + 3];
    snprintf(f, sizeof f, "d:%s", detach_doc(k)->key);
    const char *argv[] = {"HDEL", k->key, f};
    redis_argv(k, on_forgotten, 3, argv);
    return;
  }
  case KB_ORPHAN_LIST:
    rc = fapi_list(k->kc.api, "assistants", 100, "desc", k->after[0] ? k->after : NULL, on_files_listed, k, &k->fop);
    break;
  case KB_ORPHAN_DETACH:
    if (k->oi >= k->norphans) {
      go(k, k->more ? KB_ORPHAN_LIST : KB_UNLOCK);
      return;
    }
    rc = vst_file_delete(k->kc.api, k->vs, k->orphans[k->oi], on_orphan_detached, k, &k->vop);
    break;
  case KB_ORPHAN_DELETE: rc = fapi_delete(k->kc.api, k->orphans[k->oi], on_orphan_deleted, k, &k->fop); break;
  case KB_UNLOCK: {
    uv_timer_stop(&k->renew->t);
    if (!k->sum.err) snprintf(cur(k)->id, sizeof cur(k)->id, "%s", k->vs);
    if (!k->lock[0]) {
      go(k, k->sum.err ? KB_DONE : KB_NEXT_STORE);
      return;
    }
    static const char script[] =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
    const char *argv[] = {"EVAL", script, "1", k->lock, k->token};
    redis_argv(k, on_unlocked, 5, argv);
    return;
  }
  case KB_LOOKUP: {
    if (rk_fleet_key(&k->ks, RK_KB, cur(k)->name, k->key, sizeof k->key)) {
      fail(k, AW_EINVAL, "store name %s makes no Redis key", cur(k)->name);
      return;
    }
    const char *argv[] = {"HGET", k->key, "id"};
    redis_argv(k, on_looked_up, 3, argv);
    return;
  }
  case KB_NEXT_STORE:
    free_docs(k);
    k->vs[0] = '\0';
    k->store_new = k->added = 0;
    k->si++;
    go(k, k->si < k->n ? KB_LOCK : KB_DONE);
    return;
  case KB_DONE: {
    if (k->done) return;
    k->done = 1;
    k->sum.seconds = (double)(uv_hrtime() - k->t0) / 1e9;
    if (!k->kc.lookup_only)
      log_info(NULL,
               "kb sync: %s: %zu store(s): %d uploaded, %d replaced, %d unchanged, %d removed, %d orphan(s) "
               "deleted, %d failed; %lld bytes uploaded in %.2f s",
               k->sum.err ? "stopped" : "done", k->n, k->sum.uploaded, k->sum.replaced, k->sum.unchanged,
               k->sum.removed, k->sum.orphans, k->sum.failed, k->sum.bytes, k->sum.seconds);
    k->cb(k->opaque, &k->sum);
    return;
  }
  }
  if (rc) fail(k, rc, "could not start the %s request (%s)", STATE_NAMES[s], aw_strerror(rc));
}

/* ---- start / free ---------------------------------------------------------------------- */

static kb_timer *new_timer(uv_loop_t *loop, kbs *k) {
  kb_timer *t = calloc(1, sizeof *t);
  if (t && uv_timer_init(loop, &t->t) != 0) {
    free(t);
    return NULL;
  }
  if (t) t->t.data = k;
  return t;
}

static void on_start_timer(uv_timer_t *t) {
  kbs *k = t->data;
  if (k->n == 0) go(k, KB_DONE);
  else go(k, k->kc.lookup_only ? KB_LOOKUP : KB_LOCK);
}

int kbs_start(const kbs_config *kc, cfg_kb_store *stores, size_t n, kbs_done_cb cb, void *opaque, kbs **out) {
  *out = NULL;
  if (!kc || !kc->loop || !kc->redis || !cb || (n && !stores) || (!kc->lookup_only && (!kc->api || kc->wait_timeout_ms <= 0)))
    return AW_EINVAL;
  kbs *k = calloc(1, sizeof *k);
  if (!k) return AW_ENOMEM;
  k->kc = *kc;
  k->stores = stores;
  k->n = n;
  k->cb = cb;
  k->opaque = opaque;
  k->t0 = uv_hrtime();
  int rc = rk_space_init(&k->ks, kc->redis_prefix, 0);
  unsigned char rnd[16];
  if (!rc && RAND_bytes(rnd, sizeof rnd) != 1) rc = AW_EIO;
  for (size_t i = 0; !rc && i < sizeof rnd; i++) snprintf(k->token + 2 * i, 3, "%02x", rnd[i]);
  k->timer = rc ? NULL : new_timer(kc->loop, k);
  k->renew = k->timer ? new_timer(kc->loop, k) : NULL;
  if (!rc && !k->renew) rc = AW_ENOMEM;
  if (rc) {
    /* A timer that was initialised belongs to the loop until it is closed. */
    if (k->timer) uv_close((uv_handle_t *)&k->timer->t, on_timer_closed);
    free(k);
    return rc;
  }
  k->lock_deadline = uv_now(kc->loop) + (uint64_t)kc->wait_timeout_ms + 120000;
  /* Never inside the call: the first step runs on the next iteration. */
  uv_timer_start(&k->timer->t, on_start_timer, 0, 0);
  *out = k;
  return AW_OK;
}

void kbs_free(kbs *k) {
  if (!k) return;
  if (k->redis_pending) {
    fapi_cancel(k->fop);
    vst_cancel(k->vop);
    k->fop = NULL;
    k->vop = NULL;
    uv_timer_stop(&k->timer->t);
    uv_timer_stop(&k->renew->t);
    k->dead = 1;
    return;
  }
  destroy(k);
}

/* vector_stores.h -- the Vector Stores API client (/v1/vector_stores,
 * their files and file batches; prefix vst_).
 *
 * Why a module of its own: vector stores are what `file_search` searches on
 * both the Responses and the Assistants backends (the same API on both, and
 * on OGX), and what the declarative knowledge sync will build on: create a
 * store, add files or a batch, wait until they are processed, list, delete.
 *
 * Never twice.  POST /vector_stores creates a store and has no idempotency
 * key, so a creation carries the caller's key in metadata (aw_key).  After
 * an ambiguous outcome (5xx, timeout, reset after sending) vst_create first
 * lists the stores (newest first, up to 1,000) and takes the one whose
 * metadata.aw_key is the key; only when none is found is it sent again.
 * Without a key an ambiguous creation ends AW_EAMBIGUOUS (nothing to look
 * for).  What is left of the window: a store the server creates after the
 * lookup answered is created twice.  Adding a file (POST .../files) and a
 * batch (POST .../file_batches) are retried like idempotent requests: a
 * vector store file's id is its file's id, so adding the same file again
 * cannot make a second one (a repeated batch makes a second batch object
 * over the same files).
 *
 * Waiting.  vst_wait polls the batch (GET .../file_batches/{id}) or the
 * store (GET /vector_stores/{id}, its file_counts) until nothing is
 * in_progress, or a deadline passes.  It ends AW_OK when every file
 * completed; when some failed or were cancelled it lists the store's failed
 * files and ends with a message naming each (id and last_error: "file-1
 * invalid_file: ...") and the class of the cause: AW_EINVAL (reject: the
 * file is unsupported or invalid) or, when every failure is a
 * server_error, AW_EHTTP5XX (retry); at the deadline AW_ETIMEDOUT naming
 * how many files are still in progress.
 *
 * Errors otherwise as files_api.h: 404 AW_ENOTFOUND, 401 AW_ECONFIG, other
 * 4xx AW_EHTTP4XX, 429 AW_ERATELIMIT, 5xx AW_EHTTP5XX, transport AW_EIO /
 * AW_ETIMEDOUT.  Results arrive through the callback exactly once unless
 * cancelled, never inside the starting call.
 *
 * @locality the loop thread only.
 */
#ifndef AW_VECTOR_STORES_H
#define AW_VECTOR_STORES_H

#include <stddef.h>
#include <cJSON.h>
#include <uv.h>
#include "api_client.h"
#include "aw_error.h"

#define VST_KEY_MAX 64     /* longest idempotency key, NUL included (metadata values: 512) */
#define VST_MAX_FILE_IDS 500 /* files per store creation or batch we send (the API: 500 / 2,000) */

typedef struct vst_counts {
  long in_progress, completed, failed, cancelled, total;
} vst_counts;

typedef struct vst_result {
  int err;               /* AW_OK or AW_E* (see above) */
  int http_status;       /* of the last call, 0 if none */
  const char *errmsg;    /* "" on success */
  const cJSON *json;     /* the last answer's object (store, file, batch,
                            list, deletion, search page); NULL on errors */
  const char *id;        /* that object's id, "" if none */
  const char *status;    /* that object's status, "" if none */
  vst_counts counts;     /* vst_wait: the last file_counts seen */
  int found;             /* vst_create: found by the lookup after an
                            ambiguous outcome, not sent again */
} vst_result;

/** The result; everything in it is valid only during the call. */
typedef void (*vst_done_cb)(void *opaque, const vst_result *res);

typedef struct vst_op vst_op;

typedef struct vst_create_opts {
  const char *name;              /* optional */
  const char *key;               /* idempotency key -> metadata.aw_key; NULL: none */
  const char *const *file_ids;   /* optional, nfile_ids <= VST_MAX_FILE_IDS */
  size_t nfile_ids;
  int max_ambiguous;             /* creations sent again after an ambiguous
                                    outcome whose lookup found nothing
                                    (0: the default, 2; negative: none) */
} vst_create_opts;

typedef struct vst_wait_opts {
  uv_loop_t *loop;           /* required: the api_client's loop (its timer) */
  const char *vector_store_id;
  const char *batch_id;      /* NULL: wait for the whole store */
  long deadline_ms;          /* required, > 0: from the call */
  long poll_ms;              /* first interval (default 250), doubling to 2 s */
} vst_wait_opts;

/** POST /vector_stores (see "Never twice").  Strings copied. */
int vst_create(api_client *c, const vst_create_opts *o, vst_done_cb cb, void *opaque, vst_op **out) AW_MUST_CHECK;
/** GET /vector_stores/{id} */
int vst_retrieve(api_client *c, const char *id, vst_done_cb cb, void *opaque, vst_op **out) AW_MUST_CHECK;
/** GET /vector_stores?limit=&after= (limit 0: the API's default, <= 100) */
int vst_list(api_client *c, int limit, const char *after, vst_done_cb cb, void *opaque, vst_op **out) AW_MUST_CHECK;
/** DELETE /vector_stores/{id} */
int vst_delete(api_client *c, const char *id, vst_done_cb cb, void *opaque, vst_op **out) AW_MUST_CHECK;
/** POST /vector_stores/{vs}/files {"file_id": ...} */
int vst_file_add(api_client *c, const char *vs, const char *file_id, vst_done_cb cb, void *opaque,
                 vst_op **out) AW_MUST_CHECK;
/** POST /vector_stores/{vs}/file_batches {"file_ids": [...]} (1..VST_MAX_FILE_IDS) */
int vst_batch_create(api_client *c, const char *vs, const char *const *file_ids, size_t n, vst_done_cb cb,
                     void *opaque, vst_op **out) AW_MUST_CHECK;
/** GET /vector_stores/{vs}/files?filter=&limit=&after= (filter NULL or
 *  in_progress, completed, failed, cancelled) */
int vst_files_list(api_client *c, const char *vs, const char *filter, int limit, const char *after,
                   vst_done_cb cb, void *opaque, vst_op **out) AW_MUST_CHECK;
/** DELETE /vector_stores/{vs}/files/{file_id} (the file itself stays) */
int vst_file_delete(api_client *c, const char *vs, const char *file_id, vst_done_cb cb, void *opaque,
                    vst_op **out) AW_MUST_CHECK;
/** POST /vector_stores/{vs}/search {"query": ..., "max_num_results": n}
 *  (n 0: the API's default).  Read-only, retried like a GET. */
int vst_search(api_client *c, const char *vs, const char *query, int max_results, vst_done_cb cb,
               void *opaque, vst_op **out) AW_MUST_CHECK;
/** Wait until the batch's or store's files are processed (see "Waiting"). */
int vst_wait(api_client *c, const vst_wait_opts *o, vst_done_cb cb, void *opaque, vst_op **out) AW_MUST_CHECK;

/** Stop an operation: no callback follows.  Safe on NULL; a no-op inside
 *  its own callback.  A waiting op's timer closes on the loop's next
 *  iteration. */
void vst_cancel(vst_op *op);

#endif

/* attach.h -- the event's files step (prefix wk_att_): between the lookup
 * and the turn, every file id a message names is checked and every inline
 * byte string it carries is uploaded, once per event, so that the backend
 * is only ever given file ids.
 *
 * Why a step of the worker and not of each backend: the check and the
 * upload are the same Files API calls on Assistants and Responses, a 404 is
 * the request's fault (rejected `file_not_found`, dead letter with the
 * original bytes) rather than a failed turn, and "once per event" needs
 * the event's Redis records, which the worker owns.  The chat backend has
 * no files: its worker skips the step (inline images go as data: URLs, and
 * by-id images and attachments were refused at intake).
 *
 * What is done per item, in the request's order (image_file parts, then
 * attachments; one call at a time: at most max_parts + max_attachments
 * round trips, each bounded by the HTTP layer's timeouts and retries):
 *   - by file id: GET /v1/files/{id}; 404 -> the step ends
 *     WK_ATT_NOT_FOUND with a message naming the field
 *     ("attachments[1].file_id 'file-x' does not exist").
 *   - inline bytes: uploaded (purpose "vision" for an image, "assistants"
 *     for an attachment) under a name that is deterministic per event and
 *     item: "aw-<8 hex of the turn token>-<n>-<filename>" (n the item's
 *     index: parts first, then attachments; an image without a filename is
 *     "image-<n>.<ext of its media type>").
 *
 * Never twice.  The upload's file id is recorded right after it succeeds
 * in the event's uploads hash (rkeys.h RK_UPLOADS, field "<n>", expiring
 * with the outcome records); the step reads that hash first, so a
 * re-processed event (a retry, a crash, a rebalance) reuses its uploads.
 * When the record was lost (a crash between the upload and the record, or
 * Redis down), a re-processed event (recover) first lists the purpose's
 * files newest first (one page of WK_ATT_LOOKUP_LIMIT) for its name and
 * byte count; found, that file is taken.  A crash inside fapi_upload's own
 * never-twice window is covered by the same lookup.  What is left: an
 * upload that is still being stored when the lookup runs is uploaded again
 * (a stray file; the turn still sees one), and a page of more than
 * WK_ATT_LOOKUP_LIMIT newer files of the purpose hides an older upload.
 *
 * Errors (wk_att_result.err, with their class, aw_error_classify):
 * AW_ENOTFOUND (reject: file_not_found), AW_EHTTP4XX / AW_ETOOBIG (reject:
 * the API refused the bytes; code invalid_field), retry-class errors (the
 * API or Redis is unreachable: the event is tried again later), AW_ECONFIG
 * (fatal: the API key is refused).
 *
 * Memory: the step copies what it needs; the resolved parts and
 * attachments (file ids set, inline bytes still pointing into the request,
 * which must outlive the step) are owned by it until wk_att_free.
 *
 * @locality the loop thread only.
 */
#ifndef AW_WK_ATTACH_H
#define AW_WK_ATTACH_H

#include <stddef.h>

#include "api_client.h"
#include "aw_error.h"
#include "contract.h"
#include "redis_conn.h"

#define WK_ATT_LOOKUP_LIMIT 100 /* files listed when looking for a lost upload */
#define WK_ATT_TAG_MAX 16       /* "aw-" + 8 hex digits, NUL */

typedef struct wk_att wk_att;

typedef struct wk_att_config {
  api_client *api;        /* the Files API (borrowed) */
  rconn *redis;           /* the uploads record (borrowed); NULL: not recorded */
  const char *record_key; /* the event's RK_UPLOADS key (copied); NULL: not recorded */
  long record_ttl_s;      /* its lifetime (the outcome records'); <= 0: 7 days */
  const char *name_tag;   /* "aw-<8 hex>", the event's upload names' head (copied) */
  int recover;            /* 1: an earlier attempt may have uploaded: look before uploading */
} wk_att_config;

typedef struct wk_att_result {
  int err;                           /* AW_OK or an AW_E* (see above) */
  const char *errmsg;                /* "" on success; names the field for a rejection */
  const contract_part *parts;        /* AW_OK: the request's parts, file ids set */
  size_t nparts;
  const contract_attachment *attachments; /* AW_OK: file ids set */
  size_t nattachments;
  int uploads;                       /* POSTs sent by this step */
  int reused;                        /* uploads found in the record or by the lookup */
} wk_att_result;

/** The step's end; res is valid during the call, the parts and attachments
 *  until wk_att_free. */
typedef void (*wk_att_done_cb)(void *opaque, const wk_att_result *res);

/** 1 when the request has something for the step: an image_file part or
 *  an attachment. */
int wk_att_needed(const contract_request *q);

/** Start the step for q (borrowed until wk_att_free).  The callback comes
 *  exactly once, never inside this call, unless wk_att_free came first.
 *  Before any I/O: AW_EINVAL (no api, no name_tag, nothing to do),
 *  AW_ENOMEM, AW_ENOTFOUND (a file id that cannot be one), or the error
 *  of the first call, with the message in errstr. */
int wk_att_start(const wk_att_config *cfg, const contract_request *q, wk_att_done_cb cb, void *opaque,
                 wk_att **out, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** The resolved parts / attachments of a finished step (NULL, 0 before). */
const contract_part *wk_att_parts(const wk_att *a, size_t *n);
const contract_attachment *wk_att_attachments(const wk_att *a, size_t *n);

/** Stop the step (no callback follows) and free it.  Safe on NULL and
 *  inside the callback.  A Redis reply still out frees it when it comes. */
void wk_att_free(wk_att *a);

/** The upload name of item n into out[size]: name_tag "-" n "-" filename,
 *  the filename's head dropped (at a UTF-8 boundary) when the whole would
 *  not fit FAPI_NAME_MAX.  Pure; for tests. */
void wk_att_upload_name(const char *name_tag, size_t n, const char *filename, char *out, size_t size);

/* ---- the event machine's side (event.c) ------------------------------------ */

struct wk_event;

/** ST_FILES: run the step for ev (lookup_done, when wk_att_needed and the
 *  worker has a files client), then go on with then(ev) -- the turn, or
 *  the recovered turn's prefetch -- or reject, retry or stop by the
 *  error's class.  The original bytes are kept until the step is done. */
void wk_att_step(struct wk_event *ev, void (*then)(struct wk_event *ev));

#endif

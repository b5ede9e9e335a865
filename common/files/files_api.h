/* files_api.h -- the Files API client (/v1/files; prefix fapi_).
 *
 * Why a module of its own: files are the same API on the Responses and the
 * Assistants backends (and on OGX), and they are what vector stores,
 * attachments and generated files build on, so both backends and the CLI
 * share one client instead of each hand-building multipart requests.
 *
 * Uploads (createFile) are multipart/form-data streamed from memory or from
 * a file descriptor (api_upload, http_form_part): a 100 MB file costs the
 * same memory as a 1 KB one.  Downloads (downloadFile) stream to a file
 * descriptor or a callback with a size cap (api_download).
 *
 * Never twice.  POST /files has no idempotency key.  It is retried blindly
 * only when it certainly was not applied (429, connection refused: the HTTP
 * layer).  After an ambiguous outcome (5xx, a timeout or reset after
 * sending) the upload first looks for what the attempt may have created:
 * GET /files?purpose=P&order=desc, newest first, a file with our filename,
 * our byte count and a created_at no earlier than the upload's start minus
 * window_s (clock skew).  Found: that file is the result, nothing is sent
 * again.  Absent: the upload is sent again (at most max_ambiguous times).
 * What is left of the window: a server that stores the file after our
 * lookup answered (it is still writing when the lookup runs) gets it twice;
 * another uploader's file with the same name and size created in the same
 * window is taken for ours (the API offers nothing better to match on).
 *
 * Errors: AW_OK, or an AW_E* whose class says what to do
 * (aw_error_classify): 400 AW_EHTTP4XX and 413 AW_ETOOBIG ("file too
 * large"), 404 AW_ENOTFOUND (reject); 401 AW_ECONFIG (fatal: the API key is
 * refused); 429 AW_ERATELIMIT, 5xx AW_EHTTP5XX, transport AW_EIO /
 * AW_ETIMEDOUT, and AW_EAMBIGUOUS when the outcome stayed unknown (retry).
 * The message names the call and the API's error, never the key.
 *
 * Every call is asynchronous on the api_client's libuv loop: it returns
 * AW_OK or an error found before any I/O, and its result arrives through
 * the callback exactly once unless cancelled, never inside the call.
 *
 * @locality the loop thread only.
 */
#ifndef AW_FILES_API_H
#define AW_FILES_API_H

#include <stddef.h>
#include <cJSON.h>
#include "api_client.h"
#include "aw_error.h"

#define FAPI_NAME_MAX 256 /* longest filename kept, NUL included */

/** The fields of a file object (OpenAIFile) this client uses. */
typedef struct fapi_file {
  char id[API_ID_MAX];
  char filename[FAPI_NAME_MAX];
  char purpose[32];
  char status[16];       /* deprecated by the API; "" when absent */
  long long bytes;
  long long created_at;
} fapi_file;

typedef struct fapi_result {
  int err;                 /* AW_OK or AW_E* (see above) */
  int http_status;         /* of the last call, 0 if none */
  const char *errmsg;      /* "" on success */
  const fapi_file *file;   /* upload, retrieve: the file; else NULL */
  const cJSON *json;       /* the last answer's JSON (file object, list,
                              deletion), NULL for downloads and errors */
  int found;               /* upload: the file was found by the lookup after
                              an ambiguous outcome, not sent again */
  int uploads;             /* upload: POSTs sent */
  size_t bytes;            /* download: bytes delivered */
} fapi_result;

/** The result; everything in it is valid only during the call. */
typedef void (*fapi_done_cb)(void *opaque, const fapi_result *res);

typedef struct fapi_op fapi_op;

typedef struct fapi_upload_opts {
  const char *filename;  /* required: the name the API stores (no path) */
  const char *purpose;   /* NULL: "assistants" */
  const char *type;      /* the part's media type; NULL: none (the API guesses) */
  const char *data;      /* content in memory (borrowed until the callback), */
  size_t len;            /* its length, or the file's behind fd */
  int fd;                /* when data is NULL: read with pread, borrowed */
  int max_ambiguous;     /* uploads sent again after an ambiguous outcome
                            whose lookup found nothing; default 2 */
  long window_s;         /* clock skew allowed on created_at; default 120 */
} fapi_upload_opts;

/** Defaults: fd -1, max_ambiguous 2, window_s 120, the rest NULL/0. */
void fapi_upload_opts_default(fapi_upload_opts *o);

/** Parse a file object.  AW_EPARSE when id, bytes or created_at is
 *  missing or the id is not a path-safe id; strings are truncated to fit. */
int fapi_file_parse(const cJSON *obj, fapi_file *out) AW_MUST_CHECK;

/** Upload (POST /files) with the never-twice lookup above.  Strings are
 *  copied; content is borrowed (data or fd) until the callback.  AW_EINVAL
 *  for a missing filename or content, a purpose outside the spec's enum.
 *  *out (may be NULL) receives a handle for fapi_cancel. */
int fapi_upload(api_client *c, const fapi_upload_opts *o, fapi_done_cb cb, void *opaque,
                fapi_op **out) AW_MUST_CHECK;

/** Upload the file at path, named by its last path component: opens it,
 *  owns and closes the descriptor.  AW_ENOTFOUND / AW_EIO when it cannot be
 *  opened or is not a regular file. */
int fapi_upload_path(api_client *c, const char *path, const char *purpose, fapi_done_cb cb,
                     void *opaque, fapi_op **out, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** GET /files/{id}. */
int fapi_retrieve(api_client *c, const char *id, fapi_done_cb cb, void *opaque, fapi_op **out) AW_MUST_CHECK;

/** GET /files?purpose=&limit=&order=&after= (purpose, order, after may be
 *  NULL; limit 0: the API's default).  res->json is the list. */
int fapi_list(api_client *c, const char *purpose, int limit, const char *order, const char *after,
              fapi_done_cb cb, void *opaque, fapi_op **out) AW_MUST_CHECK;

/** DELETE /files/{id}.  res->json is the deletion object. */
int fapi_delete(api_client *c, const char *id, fapi_done_cb cb, void *opaque, fapi_op **out) AW_MUST_CHECK;

/** GET /files/{id}/content into fd (fd >= 0: written whole, blocking; a
 *  regular file or a pipe) or to on_data (fd < 0; return non-zero to stop).
 *  More than max_bytes (0: no cap) ends AW_ETOOBIG, after max_bytes at most
 *  were delivered: a caller that wrote to a file removes it. */
int fapi_download(api_client *c, const char *id, int fd, api_data_cb on_data, void *data_opaque,
                  size_t max_bytes, fapi_done_cb cb, void *opaque, fapi_op **out) AW_MUST_CHECK;

/** Stop an operation: no callback follows.  Safe on NULL; a no-op inside
 *  its own callback. */
void fapi_cancel(fapi_op *op);

/** The error class of a finished call's HTTP status, for this API:
 *  413 AW_ETOOBIG, 401 AW_ECONFIG, 404 AW_ENOTFOUND, else err unchanged. */
int fapi_status_err(int err, int http_status);

#endif

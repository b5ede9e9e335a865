/* containers.h -- the Containers API client, read side (prefix ctr_).
 *
 * Why a module of its own: on the Responses API a code interpreter writes
 * its outputs (a chart, a CSV) as files of its container, not as /v1/files
 * files: they are read with GET /v1/containers/{id}/files/{file_id} (a
 * ContainerFileResource: id, container_id, path, bytes, created_at, source)
 * and .../content.  The generated-files fetcher (gen_files.h) and `file get
 * --container` need exactly that, so this is files_api.h's counterpart for
 * containers: retrieve, download (to a descriptor or a callback, capped),
 * list.  Nothing here creates or deletes (the code interpreter's "auto"
 * containers are the API's to manage), so every call is a GET, retried like
 * any idempotent request (429, 5xx, transport) by the HTTP layer.
 *
 * Lenient parse: the spec requires every field of a container file, but a
 * compatible server may leave bytes out (or null): it is then -1, unknown,
 * and a caller that wants the content downloads it with a cap.  Only a
 * missing or path-unsafe id is AW_EPARSE.  A container file has no name of
 * its own: ctr_file_name gives the last component of its path.
 *
 * Errors as files_api.h (fapi_status_err): 404 AW_ENOTFOUND (the container
 * expired -- the API drops them 20 minutes after last use -- or the file is
 * not in it), 401 AW_ECONFIG, other 4xx AW_EHTTP4XX, 429 AW_ERATELIMIT, 5xx
 * AW_EHTTP5XX, transport AW_EIO / AW_ETIMEDOUT; a download over its cap
 * AW_ETOOBIG after at most max_bytes were delivered.  Every call returns
 * AW_OK or an error found before any I/O (AW_EINVAL for an id that is not
 * [A-Za-z0-9_-]{1,95}); its result arrives through the callback exactly
 * once unless cancelled, never inside the call.
 *
 * @locality the loop thread only.
 */
#ifndef AW_CONTAINERS_H
#define AW_CONTAINERS_H

#include <stddef.h>
#include <cJSON.h>
#include "api_client.h"
#include "aw_error.h"

#define CTR_PATH_MAX 512 /* longest path kept, NUL included (longer ones are truncated) */

/** The fields of a ContainerFileResource. */
typedef struct ctr_file {
  char id[API_ID_MAX];
  char container_id[API_ID_MAX]; /* "" when absent */
  char path[CTR_PATH_MAX];       /* "/mnt/data/chart.png"; "" when absent */
  char source[32];               /* "user" | "assistant"; "" when absent */
  long long bytes;               /* -1: unknown */
  long long created_at;          /* 0: absent */
} ctr_file;

typedef struct ctr_result {
  int err;               /* AW_OK or AW_E* (see above) */
  int http_status;       /* 0 if no response */
  const char *errmsg;    /* "" on success */
  const ctr_file *file;  /* retrieve: the file; else NULL */
  const cJSON *json;     /* retrieve: the file object; list: the page; else NULL */
  size_t bytes;          /* download: bytes delivered */
} ctr_result;

/** The result; everything in it is valid only during the call. */
typedef void (*ctr_done_cb)(void *opaque, const ctr_result *res);

typedef struct ctr_op ctr_op;

/** Parse a container file object (lenient, see above).  AW_EPARSE when the
 *  id is missing or not path-safe. */
int ctr_file_parse(const cJSON *obj, ctr_file *out) AW_MUST_CHECK;

/** The file's name: the last component of its path ("" for no path). */
const char *ctr_file_name(const ctr_file *f);

/** GET /containers/{container_id}/files/{file_id}.  *out (may be NULL)
 *  receives a handle for ctr_cancel. */
int ctr_retrieve(api_client *c, const char *container_id, const char *file_id, ctr_done_cb cb,
                 void *opaque, ctr_op **out) AW_MUST_CHECK;

/** GET /containers/{container_id}/files/{file_id}/content into fd (fd >= 0:
 *  written whole, blocking; a regular file or a pipe) or to on_data (fd < 0;
 *  return non-zero to stop: AW_ECANCELLED).  More than max_bytes (0: no cap)
 *  ends AW_ETOOBIG; a write error AW_EIO. */
int ctr_download(api_client *c, const char *container_id, const char *file_id, int fd,
                 api_data_cb on_data, void *data_opaque, size_t max_bytes, ctr_done_cb cb,
                 void *opaque, ctr_op **out) AW_MUST_CHECK;

/** GET /containers/{container_id}/files?limit=&order=&after= (limit 0: the
 *  API's default, else 1..100; order "asc"/"desc" or NULL; after NULL or an
 *  id).  res->json is the page (ContainerFileListResource). */
int ctr_list(api_client *c, const char *container_id, int limit, const char *order, const char *after,
             ctr_done_cb cb, void *opaque, ctr_op **out) AW_MUST_CHECK;

/** Stop an operation: no callback follows.  Safe on NULL; a no-op inside
 *  its own callback. */
void ctr_cancel(ctr_op *op);

#endif

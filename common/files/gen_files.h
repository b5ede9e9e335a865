/* gen_files.h -- fetch the files a turn generated (prefix gf_).
 *
 * Why a module of its own: a code interpreter's outputs (a chart PNG, a
 * CSV) come back by id on both backends -- Assistants as `/v1/files`
 * files (image_file parts, file_path annotations), Responses as files of
 * the code interpreter's container (container_file_citation annotations,
 * `/v1/containers/{id}/files/{file_id}[/content]`) -- and the response
 * carries each one the same way: its name, size and media type, with its
 * bytes when it is small enough, else by reference for `assistant-worker
 * file get`.  One fetcher serves both backends.
 *
 * A fetch is a list of (file_id, container_id) refs, deduplicated by
 * file id.  For each: retrieve the metadata (name, bytes), then download
 * the content when bytes <= inline_max, or when the size is unknown (a
 * container file without bytes), capped at inline_max: a file that grew
 * past the cap meanwhile is listed by reference, bytes -1 (its metadata is
 * stale), and that is not a failure.  An inline file's bytes is what was
 * read.  Its name is the ref's (the annotation's) when given, else the
 * metadata's (a container file's path), reduced to its last path
 * component; "" when neither is known.  A file whose metadata or
 * content cannot be fetched (any error, after the HTTP layer's retries) is
 * still listed, by reference, with what is known, and the error is counted
 * in gf_result.failed: a generated file never fails the turn.  The media
 * type is derived from the name's extension (png, jpg, jpeg, gif, webp,
 * csv, json, txt, md, pdf, html, xlsx; else application/octet-stream).
 *
 * Reads only (GET): nothing here creates anything, so every request is
 * retried as an idempotent one.
 *
 * Files are fetched one after another (one request in flight, one inline
 * buffer growing), metadata then content: 2 round trips per file.
 *
 * Memory: the fetcher owns the names and the inline bytes (at most
 * GF_MAX_FILES files, inline_max bytes each) until gf_free; the memory
 * goes on the loop's next iteration after it (a timer handle closes), so
 * run the loop before closing it.
 *
 * @locality the loop thread only.
 */
#ifndef AW_GEN_FILES_H
#define AW_GEN_FILES_H

#include <stddef.h>
#include "api_client.h"
#include "aw_error.h"
#include "contract.h"

#define GF_MAX_FILES 16 /* files listed per turn; more are dropped (counted in dropped) */

typedef struct gf_ref {
  const char *file_id;      /* required */
  const char *container_id; /* NULL: a /v1/files file; else a container's */
  const char *filename;     /* a name the backend already gave (annotation), or NULL */
} gf_ref;

typedef struct gf_fetch gf_fetch;

typedef struct gf_result {
  const contract_file *files; /* in the order of the refs, deduplicated */
  size_t nfiles;
  size_t failed;              /* files listed by reference because a fetch failed */
  size_t dropped;             /* refs beyond GF_MAX_FILES */
} gf_result;

/** The result; valid until gf_free. */
typedef void (*gf_done_cb)(void *opaque, const gf_result *res);

/** Start fetching refs (copied).  n 0 is fine (the callback still comes,
 *  on the next loop iteration).  inline_max 0: metadata only.  The callback
 *  comes exactly once unless gf_free came first, never inside the call.
 *  AW_ENOMEM / AW_EINVAL (a ref without file_id, or an id that is not
 *  path-safe) before any I/O. */
int gf_start(api_client *c, const gf_ref *refs, size_t n, size_t inline_max, gf_done_cb cb,
             void *opaque, gf_fetch **out) AW_MUST_CHECK;

/** Free the fetch and its result (cancels it if it is still running: no
 *  callback follows).  Safe on NULL; may be called inside the callback. */
void gf_free(gf_fetch *f);

/** The media type of a file name, from its extension (see above). */
const char *gf_media_type(const char *filename);

#endif

/* sim_files.h -- the Files API (/v1/files) with a spool directory on disk
 * (prefix sfiles_).
 *
 * Why on disk and streamed: the worker must be able to upload a 100 MB
 * document without holding it (issue 10), and a test can only prove that
 * if the server does not hold it either.  So POST /v1/files is parsed by
 * libmicrohttpd's post processor as it arrives: the file part's bytes are
 * written to a temporary file in the spool directory chunk by chunk (MHD
 * hands over at most a connection buffer, 16 KiB, at a time) while their
 * SHA-256 is computed; only the small form fields are kept in memory.  A
 * 100 MB upload costs the simulator a few KiB of memory, the disk costs
 * the file.  GET /v1/files/{id}/content is answered from the file's
 * descriptor (MHD_create_response_from_fd: the kernel copies it).
 *
 * The upload's life: sim_http.c calls sfiles_upload_begin() when a request's
 * headers are in (NULL unless it is a multipart POST /v1/files), feeds it
 * every piece of the body, finishes it when the body is complete, then the
 * route (sfiles_handle) validates the form as the spec's CreateFileRequest
 * (purpose, expires_after; unknown fields 400) and the size (413 above
 * max_file_bytes) and keeps the file, or the upload is freed and its
 * temporary file removed.  Files are `processed` at once.
 *
 * Deleting a file removes it from every vector store (the spec's
 * deleteFile), through sim_vector_stores.h.  /admin/reset deletes every
 * file; the spool directory is removed at exit when the simulator made it.
 *
 * @locality MHD threads and the timer thread (sfiles_path); one mutex of
 * its own, never held while calling another module.
 */
#ifndef SIM_FILES_H
#define SIM_FILES_H

#include <stdint.h>
#include <microhttpd.h>
#include "aw_error.h"
#include "sim_api.h"

typedef struct sfiles_upload sfiles_upload;

/** Pick the spool directory: dir, or a fresh one under $TMPDIR when dir
 *  is NULL (removed again by sfiles_shutdown). */
int sfiles_init(const char *dir, char *errstr, size_t errstr_size) AW_MUST_CHECK;
/** Delete every file; remove the spool directory if we made it. */
void sfiles_shutdown(void);
/** Delete every file (POST /admin/reset). */
void sfiles_reset(void);

/** A multipart POST /v1/files whose headers just arrived: start streaming
 *  its body to disk.  NULL for any other request (or when out of memory:
 *  the route then answers 400/500 from the plain body). */
sfiles_upload *sfiles_upload_begin(struct MHD_Connection *c, const char *method, const char *url);
/** The next piece of the body. */
void sfiles_upload_feed(sfiles_upload *u, const char *data, size_t size);
/** The body is complete: flush the parser, close the file, finish the hash. */
void sfiles_upload_finish(sfiles_upload *u);
/** What --record keeps of the body: the form fields and, for the file,
 *  {"filename","bytes","sha256"} (never its bytes).  Caller deletes. */
cJSON *sfiles_upload_record(const sfiles_upload *u);
/** Free an upload; its temporary file is removed unless a file kept it. */
void sfiles_upload_free(sfiles_upload *u);

/** Serve a /v1/files route (r->route is one of SR_FILE_*); s holds the
 *  path segments ("v1","files",id,"content"). */
void sfiles_handle(const sapi_req *q, sapi_reply *r, char s[][64]);

/** What a vector store needs of a file: its name and where its bytes are.
 *  AW_ENOTFOUND when there is no such file. */
int sfiles_lookup(const char *id, char *filename, size_t filename_size, char *path, size_t path_size) AW_MUST_CHECK;

/** Keep a file the simulator made itself (the Assistants code interpreter's
 *  output: purpose "assistants_output"): its bytes are written to the spool
 *  directory and it is listed like an upload.  id_out gets its id.  Store
 *  lock held (the id generator is the store's; this module's mutex is taken
 *  after it, never the other way round).  AW_EIO, AW_ENOMEM. */
int sfiles_add_bytes(const char *filename, const char *purpose, const void *data, size_t len, char *id_out,
                     size_t id_size) AW_MUST_CHECK;

#endif

/* sim_containers.h -- the Containers API (/v1/containers) and the files the
 * code interpreter reads and writes in them (prefix scntr_).
 *
 * Why it exists: on the Responses API a code_interpreter tool runs in a
 * container, and the files it makes (sim_codeint.h) are container files,
 * which a client downloads from /v1/containers/{id}/files/{file_id}/content
 * (the worker does, issue 10 part 4).  A container is created by POST
 * /v1/containers or by a response whose tool asks for
 * {"container":{"type":"auto","file_ids":[..]}}; the file_ids' bytes are
 * copied in as container files (source "user", path /mnt/data/<name>), and
 * the interpreter's output is added (source "assistant").
 *
 * Storage: in memory, behind the store lock (sim_store.h), in creation
 * order; a container file holds its bytes (at most SCNTR_FILE_MAX each,
 * SCNTR_TOTAL_MAX for all of them: past it a create or add fails, as a
 * full disk would).  Lookups are linear scans: the containers of a test.
 * /admin/reset deletes every container.
 *
 * Routes (the spec's): POST/GET /v1/containers, GET/DELETE
 * /v1/containers/{id}, GET /v1/containers/{id}/files, GET/DELETE
 * /v1/containers/{id}/files/{file_id}, GET .../content (the bytes, as
 * application/octet-stream).  Lists page like the Files API (sim_page.h):
 * limit 1..100 (default 20), order (default desc), after.
 *
 * @locality MHD threads and the timer thread; every function but
 * scntr_handle() needs the store lock held (scntr_handle takes it).
 */
#ifndef SIM_CONTAINERS_H
#define SIM_CONTAINERS_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "aw_error.h"
#include "sim_api.h"
#include "sim_codeint.h"

/** Largest container file (a copied /v1/files file or an output). */
#define SCNTR_FILE_MAX (8u << 20)
/** Bytes of every container file together. */
#define SCNTR_TOTAL_MAX (256u << 20)

/** Serve a /v1/containers route (r->route one of SR_CNTR_*); s holds the
 *  path segments ("v1","containers",id,"files",file_id,"content"). */
void scntr_handle(const sapi_req *q, sapi_reply *r, char s[][64]);

/** Create a container named name with a copy of each /v1/files file of
 *  file_ids (a JSON array of strings, or NULL).  id_out gets its id.
 *  AW_ENOTFOUND (missing_out gets the file id that does not exist),
 *  AW_ETOOBIG (past SCNTR_FILE_MAX / SCNTR_TOTAL_MAX), AW_EIO (a spool
 *  file unreadable), AW_ENOMEM.  Nothing is created on failure. */
int scntr_create(const char *name, const cJSON *file_ids, char *id_out, size_t id_size, char *missing_out,
                 size_t missing_size) AW_MUST_CHECK;

/** Does container id exist? */
int scntr_exists(const char *id);

/** Add a file to container cid: path /mnt/data/<filename>, source
 *  "assistant" or "user".  fid_out gets the container file's id ("cfile_").
 *  AW_ENOTFOUND (no container), AW_ETOOBIG, AW_ENOMEM. */
int scntr_add_file(const char *cid, const char *filename, const void *data, size_t len, const char *source,
                   char *fid_out, size_t fid_size) AW_MUST_CHECK;

/** The files of container cid as the code interpreter's inputs (borrowed:
 *  valid until the store lock is released), at most max.  Returns how
 *  many (0 for an unknown container). */
size_t scntr_inputs(const char *cid, sci_input_file *out, size_t max);

/** A /v1/files file's bytes (at most SCNTR_FILE_MAX), for copying into a
 *  container or reading an input_file: *data (caller frees, NUL-terminated
 *  past len), *len, and its filename.  AW_ENOTFOUND, AW_ETOOBIG, AW_EIO,
 *  AW_ENOMEM.  Reads the spool file: small files of a test, read while the
 *  caller may hold the store lock. */
int scntr_read_upload(const char *file_id, char **data, size_t *len, char *filename, size_t filename_size)
    AW_MUST_CHECK;

/** Delete every container (POST /admin/reset). */
void scntr_reset(void);

#endif

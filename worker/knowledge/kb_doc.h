/* kb_doc.h -- a knowledge document as the sync sees it: its content hash
 * and the name its upload carries (prefix kbd_).
 *
 * Why a file of its own: the name is the sync's memory at the API.  The
 * Files API keeps no metadata, so an upload is recognised -- as this
 * deployment's, as a given store's, as a given content's -- by its name
 * alone: after a crash between an upload and its Redis record, the next
 * sync finds the orphan by name and deletes it (kb_sync.c).  The rules of
 * that name and the hash it carries are pure functions, tested alone.
 */
#ifndef AW_KB_DOC_H
#define AW_KB_DOC_H

#include <stddef.h>
#include "aw_error.h"

#define KBD_FILE_PREFIX "aw-kb." /* uploaded files: aw-kb.<store>.<vs id>.<12 hex>.<basename> */
#define KBD_SHA_PREFIX 12

/** The uploaded file's name for a document into out[n]:
 *  aw-kb.<store>.<vector store id>.<first 12 hex of sha>.<basename> (a
 *  long basename keeps its last bytes, hence its extension).  The store's
 *  id makes the name this deployment's: another deployment on the same API
 *  project with a store of the same name has another id, so neither takes
 *  the other's files for orphans.  Pure. */
void kbd_file_name(const char *store, const char *vs, const char *sha_hex, const char *path, char *out, size_t n);

/** 1 when filename is one kbd_file_name makes for store and vector store vs. */
int kbd_is_our_file(const char *store, const char *vs, const char *filename);

/** Open path and hash it (SHA-256, read 64 KiB at a time: a document is
 *  never held whole).  AW_OK with *fd open (the caller uploads from it and
 *  closes it), sha_hex[65] and *bytes set.  AW_ENOTFOUND (cannot open),
 *  AW_EIO (not a regular file, read error; *fd may be open: the caller
 *  closes a non-negative *fd in every case), AW_ENOMEM; err names the path. */
int kbd_hash(const char *path, int *fd, char sha_hex[65], long long *bytes, char *err, size_t errn) AW_MUST_CHECK;

#endif

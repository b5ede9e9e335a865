/* cli_files.h -- the local files of `send` (prefix clif_): images and
 * attachments read from disk into the request, and the response's generated
 * files written back to a directory.
 *
 * Why a module: `send --image PATH --attach PATH[:tools] --save-files DIR`
 * is the way a person (and the demo) shows the files path end to end
 * without writing a producer, and the file handling is most of that work:
 * bounded reads, a media type for each file, and on the way back names
 * that come from the API (untrusted: a name like "../x" must not escape the
 * directory), base64 decoding of inline files, and `file get` for the
 * files that came by reference.  Keeping it here leaves cmd_send.c the
 * command's options and cli_request.c the Kafka round trip.
 *
 * Blocking, for command-line tools only; diagnostics go to stderr prefixed
 * "assistant-worker send: ".
 */
#ifndef AW_CLI_FILES_H
#define AW_CLI_FILES_H

#include <stddef.h>
#include <cJSON.h>
#include "aw_error.h"

/** Read the whole file at path into a malloc'd buffer (*data, caller
 *  frees; a 0-byte file is refused: the contract wants 1.. bytes) of at
 *  most max bytes.  AW_EIO (cannot open or read), AW_ETOOBIG (larger than
 *  max), AW_EINVAL (empty), AW_ENOMEM; errstr says which. */
int clif_read(const char *path, size_t max, unsigned char **data, size_t *len, char *errstr,
              size_t errstr_size) AW_MUST_CHECK;

/** The media type of a file name, from its extension (case-insensitive):
 *  the image types of CONTRACT_IMAGE_TYPES and the document and data types
 *  attachments carry; NULL when the extension is not one of them. */
const char *clif_media_type(const char *name);

/** The last component of path (the part after the last '/'). */
const char *clif_basename(const char *path);

/** Split an --attach value "PATH[:TOOLS]" (TOOLS: "file_search",
 *  "code_interpreter" or both joined by ','): *path_len is the length of
 *  PATH within spec and *tools the CONTRACT_ATT_* bits.  Without a TOOLS
 *  suffix that parses, the whole spec is the path and the tool follows
 *  from the file's kind: code_interpreter for data (csv, xlsx, json),
 *  file_search for the rest. */
void clif_attach_spec(const char *spec, size_t *path_len, unsigned *tools);

/** Is url an image URL rather than a local path ("http://", "https://",
 *  "data:")? */
int clif_is_url(const char *s);

/** Write the generated files of response (its JSON view's `files`) into
 *  dir (created if missing, one level): inline ones decoded from base64,
 *  those by reference fetched with `assistant-worker file get` (a child
 *  process of this binary, with --container when the file is a
 *  container's, and config_path as --config when not NULL).  A file is
 *  named by its `filename` when that is a plain name (no '/', not hidden,
 *  1..255 bytes, printable), else by its file id; an existing file of that
 *  name is replaced.  One line per file on stderr ("saved NAME (N bytes,
 *  TYPE) to PATH").  Returns the number of files saved (0 when the
 *  response has none), or a negative AW_E* code after the first failure
 *  (errstr says which; the files saved before it stay). */
int clif_save_files(const cJSON *response, const char *dir, const char *config_path, char *errstr,
                    size_t errstr_size);

#endif

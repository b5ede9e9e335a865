/* contract_files.h -- the files a request carries (prefix contract_): an
 * image_file part's inline bytes and a message's `attachments`, decoded by
 * contract_files.c for the request decoder (contract.c).  Not for the rest
 * of the code base: contract.h is the interface (contract_part,
 * contract_attachment, contract_attachment_type_ok).
 *
 * Why a file of its own: files bring rules of their own (exactly one of a
 * file id or bytes, a media type from a list, a file name that must be a
 * plain name, the inline-bytes and attachment-count limits with their own
 * error codes) that can be read and changed without the envelope and the
 * text parts; contract.c would otherwise pass 800 lines.  The code runs in
 * both of the decoder's passes (sizing, then copying: contract_kinds.h), so
 * nothing in it may depend on the pass except the writes.
 */
#ifndef AW_CONTRACT_FILES_H
#define AW_CONTRACT_FILES_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

#include "aw_error.h"
#include "contract.h"
#include "contract_dctx.h"
#include "contract_kinds.h"

/* The decoder's file codes (contract.h), compared by address like the
 * others (contract_kinds.h). */
extern const char contract_code_file_too_large[], contract_code_too_many_attachments[],
    contract_code_media_type[];

#define CONTRACT_MAX_FILE_ID 256   /* file-... ids: a fixed bound, invalid_field over it */
#define CONTRACT_MAX_FILENAME 255  /* what file systems and the Files API take */
#define CONTRACT_MAX_MEDIA_TYPE 255

/** The inline form of the image_file part named name ("content[0]"): its
 *  `data` (bin, 1..lim->max_inline_bytes, else file_too_large), its
 *  `media_type` (required; one of CONTRACT_IMAGE_TYPES, any case,
 *  parameters ignored, else unsupported_media_type; stored as the list's
 *  spelling) and its optional `filename`.  Writes data, data_len,
 *  media_type and filename of *out (copies into a; NULL in the sizing
 *  pass). */
int contract_decode_inline_image(contract_dctx *c, const char *name, const msgpack_object *data,
                                 const msgpack_object *media_type, const msgpack_object *filename, bool check,
                                 contract_arena *a, contract_part *out) AW_MUST_CHECK;

/** A message's `attachments` (absent or nil: none) into r->attachments /
 *  r->nattachments (written in the copy pass only).  An array of at most
 *  lim->max_attachments maps (more: AW_ETOOBIG too_many_attachments), each
 *  {file_id} or {data, filename, media_type} and `tools`. */
int contract_attachments_decode(contract_dctx *c, const msgpack_object *o, bool check, contract_arena *a,
                                contract_request *r) AW_MUST_CHECK;

/** 0 when what contract_request_encode is given for files can be written:
 *  every inline image part has data_len >= 1 and a media type, every
 *  attachment exactly one of file_id / data (data with filename and media
 *  type) and tools of CONTRACT_ATT_* bits, at least one; AW_EINVAL
 *  otherwise.  Limits are the decoder's business, not the encoder's. */
int contract_files_check(const contract_request *r) AW_MUST_CHECK;

#endif

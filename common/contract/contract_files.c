/* contract_files.c -- the files a request carries: an image_file part's
 * inline bytes and a message's attachments (see contract_files.h for why
 * this is its own file, contract.h and schemas/README.md for the contract).
 *
 * Design notes:
 *  - Inline bytes are msgpack bin, never a string: base64 in a str would
 *    cost a third more of the event's 1 MiB and a second decoder, and a
 *    producer that sends a str most likely meant something else (a URL, a
 *    path), so a str `data` is invalid_field rather than guessed at.
 *  - Each inline file is bounded by lim->max_inline_bytes (file_too_large,
 *    AW_ETOOBIG) and the count of attachments by lim->max_attachments
 *    (too_many_attachments, AW_ETOOBIG); the whole event is bounded by
 *    max_event_bytes before any of this runs, so the copy into the
 *    request's one allocation stays within it.
 *  - Media types are matched case-insensitively with the parameters after
 *    ';' ignored (RFC 9110 media types), against fixed lists: the image
 *    types the vision inputs take, and the text and document types
 *    file_search indexes and code_interpreter reads.  An image's type is
 *    stored in the list's spelling (it becomes a data: URL on chat); an
 *    attachment's as given (the charset matters to the upload).
 *  - A file name is a plain name: the worker uploads under it, the APIs
 *    tell file kinds by its extension, and it must not carry a path or
 *    control characters into a multipart header or a log line.
 *  - The producer's media type is echoed in the error cut to 64 bytes: it
 *    is what the producer needs to see, and bounded.
 */
#include "contract_files.h"

#include <stdio.h>
#include <string.h>

const char contract_code_file_too_large[] = "file_too_large";
const char contract_code_too_many_attachments[] = "too_many_attachments";
const char contract_code_media_type[] = "unsupported_media_type";

#define ECHO_MAX 64 /* bytes of a producer's media type quoted in an error */

static const char *const IMAGE_TYPES[] = {"image/png", "image/jpeg", "image/gif", "image/webp"};

static const char *const ATTACHMENT_TYPES[] = {
    "text/plain",
    "text/markdown",
    "text/csv",
    "text/html",
    "text/x-python",
    "text/x-c",
    "text/x-java",
    "text/javascript",
    "text/xml",
    "application/json",
    "application/pdf",
    "application/msword",
    "application/xml",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
};

/* ---- media types ------------------------------------------------------------ */

static char lower(char ch) { return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch; }

/* The entry of list that s[0..n) names (type/subtype before any ';',
 * blanks around it ignored, any case), NULL if none. */
static const char *find_type(const char *s, size_t n, const char *const *list, size_t nlist) {
  const char *semi = memchr(s, ';', n);
  size_t end = semi ? (size_t)(semi - s) : n, start = 0;
  while (start < end && (s[start] == ' ' || s[start] == '\t')) start++;
  while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t')) end--;
  for (size_t i = 0; i < nlist; i++) {
    size_t m = strlen(list[i]);
    if (m != end - start) continue;
    size_t j = 0;
    while (j < m && lower(s[start + j]) == list[i][j]) j++;
    if (j == m) return list[i];
  }
  return NULL;
}

int contract_attachment_type_ok(const char *media_type) {
  return media_type &&
         find_type(media_type, strlen(media_type), ATTACHMENT_TYPES,
                   sizeof ATTACHMENT_TYPES / sizeof ATTACHMENT_TYPES[0]) != NULL;
}

/* ---- fields ------------------------------------------------------------------- */

/* Inline bytes: bin, 1..max_inline_bytes. */
static int want_bin(contract_dctx *c, const msgpack_object *o, const char *name, const void **out,
                    size_t *out_len) {
  *out = NULL;
  *out_len = 0;
  if (contract_absent(o)) return contract_dfail(c, AW_EINVAL, contract_code_missing, "missing field %s", name);
  if (o->type == MSGPACK_OBJECT_STR)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid,
                          "field %s must be binary (msgpack bin), not a string", name);
  if (o->type != MSGPACK_OBJECT_BIN)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s must be binary (msgpack bin)", name);
  size_t n = o->via.bin.size;
  if (n == 0) return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s must not be empty", name);
  if (n > c->lim->max_inline_bytes)
    return contract_dfail(c, AW_ETOOBIG, contract_code_file_too_large, "field %s is %zu bytes, limit %zu", name, n,
                          c->lim->max_inline_bytes);
  *out = o->via.bin.ptr;
  *out_len = n;
  return AW_OK;
}

/* A plain file name: 1..255 bytes of UTF-8, no '/', '\\', NUL or control
 * character, not "." or "..". */
static int want_filename(contract_dctx *c, const msgpack_object *o, const char *name, bool required, bool check,
                         const char **out, size_t *out_len) {
  int rc = contract_want_str(c, o, name, required, 1, CONTRACT_MAX_FILENAME, CONTRACT_TOO_LONG_INVALID, check,
                             out, out_len);
  if (rc || !*out || !check) return rc;
  const char *s = *out;
  size_t n = *out_len;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '/' || ch == '\\')
      return contract_dfail(c, AW_EINVAL, contract_code_invalid,
                            "field %s must be a plain file name (no '/' or '\\')", name);
    if (ch < 0x20 || ch == 0x7f)
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s contains a control character", name);
  }
  if ((n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s must be a plain file name", name);
  return AW_OK;
}

static const void *arena_bytes(contract_arena *a, const void *p, size_t n) {
  void *d = contract_arena_alloc(a, n);
  if (d) memcpy(d, p, n);
  return d;
}

/* ---- an image part's inline bytes ---------------------------------------------- */

int contract_decode_inline_image(contract_dctx *c, const char *name, const msgpack_object *data,
                                 const msgpack_object *media_type, const msgpack_object *filename, bool check,
                                 contract_arena *a, contract_part *out) {
  char f[96];
  const void *bytes;
  size_t nbytes;
  snprintf(f, sizeof f, "%s.data", name);
  int rc = want_bin(c, data, f, &bytes, &nbytes);
  if (rc) return rc;
  const char *mt, *fn;
  size_t nmt, nfn;
  snprintf(f, sizeof f, "%s.media_type", name);
  rc = contract_want_str(c, media_type, f, true, 1, CONTRACT_MAX_MEDIA_TYPE, CONTRACT_TOO_LONG_INVALID, check, &mt,
                         &nmt);
  if (rc) return rc;
  const char *canon = find_type(mt, nmt, IMAGE_TYPES, sizeof IMAGE_TYPES / sizeof IMAGE_TYPES[0]);
  if (!canon)
    return contract_dfail(c, AW_EINVAL, contract_code_media_type, "field %s: %.*s is not supported (allowed: %s)", f,
                          (int)(nmt < ECHO_MAX ? nmt : ECHO_MAX), mt, CONTRACT_IMAGE_TYPES);
  snprintf(f, sizeof f, "%s.filename", name);
  rc = want_filename(c, filename, f, false, check, &fn, &nfn);
  if (rc) return rc;
  out->data = arena_bytes(a, bytes, nbytes);
  out->data_len = nbytes;
  out->media_type = canon; /* a constant: nothing to copy */
  out->filename = fn ? contract_arena_str(a, fn, nfn) : NULL;
  return AW_OK;
}

/* ---- attachments ---------------------------------------------------------------- */

/* `tools`: 1..2 distinct names, a bit each. */
static int decode_tools(contract_dctx *c, const msgpack_object *o, const char *path, unsigned *out) {
  *out = 0;
  if (contract_absent(o)) return contract_dfail(c, AW_EINVAL, contract_code_missing, "missing field %s.tools", path);
  if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 1 || o->via.array.size > 2)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid,
                          "field %s.tools must be an array of 1..2 of \"file_search\", \"code_interpreter\"", path);
  unsigned bits = 0;
  for (uint32_t i = 0; i < o->via.array.size; i++) {
    const msgpack_object *t = &o->via.array.ptr[i];
    unsigned bit = contract_key_is(t, "file_search")        ? CONTRACT_ATT_FILE_SEARCH
                   : contract_key_is(t, "code_interpreter") ? CONTRACT_ATT_CODE_INTERPRETER
                                                            : 0;
    if (!bit)
      return contract_dfail(c, AW_EINVAL, contract_code_invalid,
                            "field %s.tools[%u] must be \"file_search\" or \"code_interpreter\"", path, (unsigned)i);
    if (bits & bit)
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s.tools names a tool twice", path);
    bits |= bit;
  }
  *out = bits;
  return AW_OK;
}

static int decode_attachment(contract_dctx *c, const msgpack_object *o, size_t idx, bool check, contract_arena *a,
                             contract_attachment *out) {
  char path[40], f[64];
  snprintf(path, sizeof path, "attachments[%zu]", idx);
  if (o->type != MSGPACK_OBJECT_MAP)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s must be a map", path);
  const msgpack_object *file_id = NULL, *data = NULL, *filename = NULL, *media_type = NULL, *tools = NULL;
  for (uint32_t i = 0; i < o->via.map.size; i++) {
    const msgpack_object *k = &o->via.map.ptr[i].key;
    const msgpack_object **slot = contract_key_is(k, "file_id")      ? &file_id
                                  : contract_key_is(k, "data")       ? &data
                                  : contract_key_is(k, "filename")   ? &filename
                                  : contract_key_is(k, "media_type") ? &media_type
                                  : contract_key_is(k, "tools")      ? &tools
                                                                     : NULL;
    if (!slot) continue; /* unknown keys: ignored, as everywhere in a request */
    if (*slot) return contract_dfail(c, AW_EINVAL, contract_code_invalid, "duplicate key in %s", path);
    *slot = &o->via.map.ptr[i].val;
  }
  const bool by_id = !contract_absent(file_id), inline_data = !contract_absent(data);
  if (by_id && inline_data)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s: exactly one of file_id and data", path);
  if (!by_id && !inline_data)
    return contract_dfail(c, AW_EINVAL, contract_code_missing, "missing field %s.file_id (or %s.data)", path, path);
  const char *id = NULL, *fn = NULL, *mt = NULL;
  size_t nid = 0, nfn = 0, nmt = 0, nbytes = 0;
  const void *bytes = NULL;
  int rc;
  if (by_id) {
    snprintf(f, sizeof f, "%s.file_id", path);
    rc = contract_want_str(c, file_id, f, true, 1, CONTRACT_MAX_FILE_ID, CONTRACT_TOO_LONG_INVALID, check, &id, &nid);
    if (rc) return rc;
    /* A name or type with a file id would be dropped: the file has its own. */
    if (!contract_absent(filename) || !contract_absent(media_type))
      return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field %s.%s is only for inline data", path,
                            contract_absent(filename) ? "media_type" : "filename");
  } else {
    snprintf(f, sizeof f, "%s.data", path);
    if ((rc = want_bin(c, data, f, &bytes, &nbytes))) return rc;
    snprintf(f, sizeof f, "%s.filename", path);
    if ((rc = want_filename(c, filename, f, true, check, &fn, &nfn))) return rc;
    snprintf(f, sizeof f, "%s.media_type", path);
    rc = contract_want_str(c, media_type, f, true, 1, CONTRACT_MAX_MEDIA_TYPE, CONTRACT_TOO_LONG_INVALID, check,
                           &mt, &nmt);
    if (rc) return rc;
    if (!find_type(mt, nmt, ATTACHMENT_TYPES, sizeof ATTACHMENT_TYPES / sizeof ATTACHMENT_TYPES[0]))
      return contract_dfail(c, AW_EINVAL, contract_code_media_type,
                            "field %s: %.*s is not supported (allowed: text, code, CSV, JSON, XML, PDF and "
                            "Office documents, listed in schemas/README.md)",
                            f, (int)(nmt < ECHO_MAX ? nmt : ECHO_MAX), mt);
  }
  unsigned bits;
  if ((rc = decode_tools(c, tools, path, &bits))) return rc;
  /* The same copies in both passes, in the same order. */
  contract_attachment at = {.tools = bits, .data_len = nbytes};
  at.file_id = id ? contract_arena_str(a, id, nid) : NULL;
  at.data = bytes ? arena_bytes(a, bytes, nbytes) : NULL;
  at.filename = fn ? contract_arena_str(a, fn, nfn) : NULL;
  at.media_type = mt ? contract_arena_str(a, mt, nmt) : NULL;
  if (out) *out = at;
  return AW_OK;
}

int contract_attachments_decode(contract_dctx *c, const msgpack_object *o, bool check, contract_arena *a,
                                contract_request *r) {
  if (contract_absent(o)) return AW_OK;
  if (o->type != MSGPACK_OBJECT_ARRAY)
    return contract_dfail(c, AW_EINVAL, contract_code_invalid, "field attachments must be an array of maps");
  size_t n = o->via.array.size;
  if (n > c->lim->max_attachments)
    return contract_dfail(c, AW_ETOOBIG, contract_code_too_many_attachments, "field attachments has %zu files, limit %zu",
                          n, c->lim->max_attachments);
  if (n == 0) return AW_OK;
  contract_attachment *att = contract_arena_alloc(a, n * sizeof *att);
  for (size_t i = 0; i < n; i++) {
    int rc = decode_attachment(c, &o->via.array.ptr[i], i, check, a, att ? &att[i] : NULL);
    if (rc) return rc;
  }
  if (att) {
    r->attachments = att;
    r->nattachments = n;
  }
  return AW_OK;
}

/* ---- what the encoder may write ------------------------------------------------- */

int contract_files_check(const contract_request *r) {
  for (size_t i = 0; i < r->nparts && r->parts; i++) {
    const contract_part *p = &r->parts[i];
    if (!p->data) continue;
    if (p->type != CONTRACT_PART_IMAGE_FILE || p->data_len == 0 || !p->media_type) return AW_EINVAL;
  }
  if (r->nattachments && !r->attachments) return AW_EINVAL;
  for (size_t i = 0; i < r->nattachments; i++) {
    const contract_attachment *at = &r->attachments[i];
    if (!at->file_id == !at->data) return AW_EINVAL;
    if (at->data && (at->data_len == 0 || !at->filename || !at->media_type)) return AW_EINVAL;
    if (at->tools == 0 || (at->tools & ~(CONTRACT_ATT_FILE_SEARCH | CONTRACT_ATT_CODE_INTERPRETER))) return AW_EINVAL;
  }
  return AW_OK;
}

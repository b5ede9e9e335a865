/* contract_kinds.h -- what the request decoder's two files share (prefix
 * contract_): contract.c decodes the envelope every request has (v, kind,
 * ids, metadata) and the message kind, contract_kinds.c the fields of the
 * conversation requests (history, append, cancel; reset and delete have
 * none), and the request encoder (contract_encode.c) checks a kind's fields
 * with contract_kind_fields_check.  Not for the rest of the code base:
 * contract.h is the interface.
 *
 * Why the cut: contract.c then held every message of the contract
 * (request, response, delta, dead letter, JSON view) in about a thousand
 * lines; the conversation kinds add their own rules (pages, appended
 * messages, the cancel's target) that can be read and changed without the
 * rest.  Both files decode in the same two passes over one allocation (a
 * sizing pass without memory, then a copying pass with the same code, see
 * contract.c), so they share the decoding context, the arena and the
 * string and part checks below instead of duplicating them.
 */
#ifndef AW_CONTRACT_KINDS_H
#define AW_CONTRACT_KINDS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

#include "aw_error.h"
#include "contract.h"
#include "contract_dctx.h"

/* Error codes of the request decoder (contract.h).  Callers compare
 * *err_code by address, so every file uses these objects. */
extern const char contract_code_malformed[], contract_code_missing[], contract_code_invalid[],
    contract_code_version[], contract_code_too_large[], contract_code_internal[];

/* Sizing-then-copying allocator: with base == NULL it only counts. */
typedef struct contract_arena {
  char *base;
  size_t used;
} contract_arena;

/** n aligned bytes (NULL in the sizing pass). */
void *contract_arena_alloc(contract_arena *a, size_t n);
/** A NUL-terminated copy of s[0..n) (NULL in the sizing pass). */
const char *contract_arena_str(contract_arena *a, const char *s, size_t n);

/** Absent or nil: both count as absent. */
bool contract_absent(const msgpack_object *o);
/** Is k the string key name? */
bool contract_key_is(const msgpack_object *k, const char *name);

enum { CONTRACT_TOO_LONG_INVALID = 0, CONTRACT_TOO_LONG_LIMIT = 1 };

/** Validate a string field named name (see contract.c); *out points into
 *  the input (NULL when absent and not required). */
int contract_want_str(contract_dctx *c, const msgpack_object *o, const char *name, bool required,
                      size_t min, size_t max, int too_long, bool check_utf8, const char **out,
                      size_t *out_len) AW_MUST_CHECK;

/** One content part named name ("content[2]", "messages[1].content[0]");
 *  *p is written only in the copy pass (p may be NULL in the sizing pass). */
int contract_decode_part(contract_dctx *c, const msgpack_object *o, const char *name, bool check,
                         contract_arena *a, contract_part *p) AW_MUST_CHECK;

/** The kind named by o (absent or nil: CONTRACT_KIND_MESSAGE) into *out;
 *  invalid_field for anything but one of the six names. */
int contract_kind_decode(contract_dctx *c, const msgpack_object *o, contract_kind *out) AW_MUST_CHECK;

/* The request keys that belong to one kind (each NULL when absent). */
typedef struct contract_kind_fields {
  const msgpack_object *limit, *after, *before, *order; /* history */
  const msgpack_object *messages;                       /* append */
  const msgpack_object *target_event_id;                /* cancel */
} contract_kind_fields;

/** Decode the fields of r->kind (history, append, cancel; nothing for the
 *  others) into r, validating (check) or copying into a.  Keys of another
 *  kind were refused before (contract.c). */
int contract_kind_fields_decode(contract_dctx *c, const contract_kind_fields *f, bool check,
                                contract_arena *a, contract_request *r) AW_MUST_CHECK;

/** 0 when the kind fields of r can be encoded (contract_request_encode):
 *  a known kind, history's limit 0..CONTRACT_HISTORY_LIMIT_MAX (0: left
 *  out) and not both after and before, append's 1..CONTRACT_APPEND_MAX_MESSAGES
 *  messages with a role of user or assistant and 1.. text parts;
 *  AW_EINVAL otherwise. */
int contract_kind_fields_check(const contract_request *r) AW_MUST_CHECK;

#endif

/* sim_req.h -- request validation and JSON replies shared by every API module
 * (prefix sreq_).
 *
 * The Assistants handlers (sim_api.c) and the Responses / Conversations
 * handlers (sim_responses.c, sim_conversations.c) validate bodies against the
 * spec's request schemas the same way and answer with OpenAI's error shape
 * {"error":{"message","type","param","code"}}, so the checks live here once.
 * A body is checked against a table of sreq_field: unknown keys give 400
 * unknown_parameter, missing required ones missing_required_parameter, wrong
 * types invalid_type.  Shapes particular to one API plug in as V_FN checkers.
 *
 * @locality MHD threads; sreq_list() and sreq_obj() print stored objects, so
 * the store lock must be held around them.
 */
#ifndef SIM_REQ_H
#define SIM_REQ_H

#include <cjson/cJSON.h>
#include "aw_error.h"
#include "sim_api.h"
#include "sim_store.h"

/** Checks one value; on error fills r (a 400) and returns -1. */
typedef int (*sreq_check_fn)(const cJSON *v, const char *name, sapi_reply *r);

typedef enum {
  V_STR, V_STR_NULL, V_NUM_NULL, V_INT_NULL, V_BOOL, V_BOOL_NULL, V_META, V_TOOLS, V_TOOLS_NULL,
  V_TOOLRES, V_RESPFMT, V_TOOLCHOICE, V_TRUNC, V_MSGS, V_MSGS_NULL, V_THREAD, V_CONTENT, V_ROLE,
  V_ATTACH, V_EFFORT, V_TOOL_OUTPUTS,
  V_FN /* checked by sreq_field.fn */
} sreq_vtype;

typedef struct sreq_field {
  const char *name;
  sreq_vtype t;
  int required;
  double min, max; /* numbers: range; strings: max length (max > 0) */
  sreq_check_fn fn; /* V_FN only */
} sreq_field;

/** Reply with o printed (takes o; NULL o or ENOMEM: a 500). */
void sreq_json(sapi_reply *r, int status, cJSON *o);
/** Reply 200 with a stored object printed (borrowed). */
void sreq_obj(sapi_reply *r, const cJSON *o);
/** Reply with OpenAI's error body; param and code may be NULL. */
void sreq_err(sapi_reply *r, int status, const char *type, const char *param, const char *code, const char *fmt, ...)
    AW_PRINTF(6, 7);
/** 400 invalid_request_error. */
#define SREQ_BAD(r, param, code, ...) sreq_err(r, 400, "invalid_request_error", param, code, __VA_ARGS__)
/** 404 "No <what> found with id '<id>'." */
void sreq_not_found(sapi_reply *r, const char *what, const char *id);
/** 400 invalid_type for name; returns -1. */
int sreq_bad_type(sapi_reply *r, const char *name, const char *want, const cJSON *v);
/** Metadata: an object of at most 16 string pairs (or null). */
int sreq_check_meta(const cJSON *v, const char *name, sapi_reply *r);
/** Check body against fields (terminated by a NULL name): unknown keys,
 *  required keys (unless partial), types.  prefix names nested objects in
 *  error messages ("thread.messages[0]"); may be NULL.  0 or -1 (r set). */
int sreq_check_fields(const cJSON *body, const sreq_field *fields, sapi_reply *r, const char *prefix, int partial);
/** The body as a JSON object (caller deletes); an empty body is {} when
 *  allow_empty.  NULL with r set (400) otherwise. */
cJSON *sreq_parse_body(const sapi_req *q, sapi_reply *r, int allow_empty);

/** Keep o in a list page? */
typedef int (*sreq_filter)(const sobj *o, const void *ctx);
/** Reply with one page of l: order asc|desc (default desc), limit 1..100
 *  (default 20), after/before cursors naming an object of the list; filt
 *  may be NULL.  Lock held. */
void sreq_list(const sapi_req *q, sapi_reply *r, const slist *l, sreq_filter filt, const void *fctx);
/** {"id","object","deleted":true}. */
void sreq_deleted(sapi_reply *r, const char *id, const char *object);

/** Message and thread bodies of the Assistants API (thread.messages[]). */
extern const sreq_field sreq_msg_fields[];
extern const sreq_field sreq_thread_fields[];

#endif

/* sim_api.c -- Assistants API v2 routes, request validation and handlers. */
#include "sim_api.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "sim_faults.h"
#include "sim_run.h"
#include "sim_store.h"
#include "sim_timer.h"

/* ---- replies ---------------------------------------------------------- */

static void reply_json(sapi_reply *r, int status, cJSON *o) {
  r->status = status;
  r->body = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!r->body) {
    r->status = 500;
    r->body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
  }
}

/* Print a stored object (borrowed) as the reply. */
static void reply_obj(sapi_reply *r, const cJSON *o) {
  r->status = 200;
  r->body = cJSON_PrintUnformatted(o);
  if (!r->body) reply_json(r, 500, NULL);
}

/* OpenAI's error shape: {"error":{"message","type","param","code"}}. */
static void AW_PRINTF(6, 7)
    reply_err(sapi_reply *r, int status, const char *type, const char *param, const char *code, const char *fmt, ...) {
  char msg[2048]; /* room for the call id lists of submit_tool_outputs */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
  cJSON_AddStringToObject(e, "message", msg);
  cJSON_AddStringToObject(e, "type", type);
  cJSON_AddItemToObject(e, "param", param ? cJSON_CreateString(param) : cJSON_CreateNull());
  cJSON_AddItemToObject(e, "code", code ? cJSON_CreateString(code) : cJSON_CreateNull());
  reply_json(r, status, o);
}

#define BAD(r, param, code, ...) reply_err(r, 400, "invalid_request_error", param, code, __VA_ARGS__)

static void not_found(sapi_reply *r, const char *what, const char *id) {
  reply_err(r, 404, "invalid_request_error", NULL, NULL, "No %s found with id '%s'.", what, id);
}

/* ---- request validation ----------------------------------------------- */

typedef enum {
  V_STR, V_STR_NULL, V_NUM_NULL, V_INT_NULL, V_BOOL, V_BOOL_NULL, V_META, V_TOOLS, V_TOOLS_NULL,
  V_TOOLRES, V_RESPFMT, V_TOOLCHOICE, V_TRUNC, V_MSGS, V_MSGS_NULL, V_THREAD, V_CONTENT, V_ROLE,
  V_ATTACH, V_EFFORT, V_TOOL_OUTPUTS
} vtype;

typedef struct vfield {
  const char *name;
  vtype t;
  int required;
  double min, max; /* numbers: range; strings: max length (max > 0) */
} vfield;

static const char *jtype(const cJSON *v) {
  if (cJSON_IsNull(v)) return "null";
  if (cJSON_IsBool(v)) return "a boolean";
  if (cJSON_IsNumber(v)) return v->valuedouble == (double)(long long)v->valuedouble ? "an integer" : "a decimal";
  if (cJSON_IsString(v)) return "a string";
  if (cJSON_IsArray(v)) return "an array";
  return "an object";
}

static int bad_type(sapi_reply *r, const char *name, const char *want, const cJSON *v) {
  BAD(r, name, "invalid_type", "Invalid type for '%s': expected %s, but got %s instead.", name, want, jtype(v));
  return -1;
}

static int check_fields(const cJSON *body, const vfield *f, sapi_reply *r, const char *prefix, int partial);

static int check_tools(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return bad_type(r, name, "an array", v);
  if (cJSON_GetArraySize(v) > 128) {
    BAD(r, name, "array_above_max_length", "Invalid '%s': array too long.", name);
    return -1;
  }
  const cJSON *t;
  cJSON_ArrayForEach(t, v) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
    if (!cJSON_IsObject(t) || !cJSON_IsString(ty) ||
        (strcmp(ty->valuestring, "code_interpreter") != 0 && strcmp(ty->valuestring, "file_search") != 0 &&
         strcmp(ty->valuestring, "function") != 0)) {
      BAD(r, name, "invalid_value",
          "Invalid value for '%s': each tool must be an object with type code_interpreter, file_search or function.",
          name);
      return -1;
    }
    if (strcmp(ty->valuestring, "function") == 0) {
      const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
      if (!cJSON_IsObject(fn) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fn, "name"))) {
        BAD(r, name, "missing_required_parameter", "Missing required parameter: '%s[].function.name'.", name);
        return -1;
      }
    }
  }
  return 0;
}

static int check_meta(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsNull(v)) return 0;
  if (!cJSON_IsObject(v)) return bad_type(r, name, "an object", v);
  int n = 0;
  const cJSON *kv;
  cJSON_ArrayForEach(kv, v) {
    if (++n > 16 || strlen(kv->string) > 64 || !cJSON_IsString(kv) || strlen(kv->valuestring) > 512) {
      BAD(r, name, "invalid_value",
          "Invalid '%s': at most 16 pairs, keys up to 64 characters, string values up to 512 characters.", name);
      return -1;
    }
  }
  return 0;
}

static int check_content(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsString(v)) return 0;
  if (!cJSON_IsArray(v)) return bad_type(r, name, "a string or an array", v);
  if (cJSON_GetArraySize(v) < 1) {
    BAD(r, name, "empty_array", "Invalid '%s': empty array. Expected an array with minimum length 1.", name);
    return -1;
  }
  const cJSON *p;
  cJSON_ArrayForEach(p, v) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
    int ok = cJSON_IsObject(p) && cJSON_IsString(ty);
    if (ok && strcmp(ty->valuestring, "text") == 0) ok = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(p, "text"));
    else if (ok && strcmp(ty->valuestring, "image_file") == 0)
      ok = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(p, "image_file"), "file_id"));
    else if (ok && strcmp(ty->valuestring, "image_url") == 0)
      ok = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(p, "image_url"), "url"));
    else ok = 0;
    if (!ok) {
      BAD(r, name, "invalid_value",
          "Invalid value for '%s': each part must be {type:text,text}, {type:image_file,image_file:{file_id}} or "
          "{type:image_url,image_url:{url}}.", name);
      return -1;
    }
  }
  return 0;
}

/* tool_outputs[]: {tool_call_id, output}, both strings.  The spec lists
 * neither as required, but an output without its call id cannot be
 * placed, and the real API refuses it. */
static int check_tool_outputs(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return bad_type(r, name, "an array", v);
  int i = 0;
  const cJSON *o;
  cJSON_ArrayForEach(o, v) {
    char pre[256];
    if (snprintf(pre, sizeof pre, "%s[%d]", name, i++) >= (int)sizeof pre) pre[sizeof pre - 1] = '\0';
    static const vfield out_fields[] = {
        {"tool_call_id", V_STR, 1, 0, 0},
        {"output", V_STR, 1, 0, 0},
        {NULL, 0, 0, 0, 0},
    };
    if (!cJSON_IsObject(o)) return bad_type(r, pre, "an object", o);
    if (check_fields(o, out_fields, r, pre, 0)) return -1;
  }
  return 0;
}

static const vfield msg_fields[] = {
    {"role", V_ROLE, 1, 0, 0},
    {"content", V_CONTENT, 1, 0, 0},
    {"attachments", V_ATTACH, 0, 0, 0},
    {"metadata", V_META, 0, 0, 0},
    {NULL, 0, 0, 0, 0},
};

static const vfield thread_fields[] = {
    {"messages", V_MSGS, 0, 0, 0},
    {"tool_resources", V_TOOLRES, 0, 0, 0},
    {"metadata", V_META, 0, 0, 0},
    {NULL, 0, 0, 0, 0},
};

static int check_msgs(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return bad_type(r, name, "an array", v);
  int i = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, v) {
    char pre[256];
    if (snprintf(pre, sizeof pre, "%s[%d]", name, i++) >= (int)sizeof pre) pre[sizeof pre - 1] = '\0'; /* error text only */
    if (!cJSON_IsObject(m)) return bad_type(r, pre, "an object", m);
    if (check_fields(m, msg_fields, r, pre, 0)) return -1;
  }
  return 0;
}

static int check_one(const cJSON *v, const vfield *f, const char *name, sapi_reply *r) {
  switch (f->t) {
  case V_STR_NULL:
    if (cJSON_IsNull(v)) return 0;
    /* fallthrough */
  case V_STR:
    if (!cJSON_IsString(v)) return bad_type(r, name, "a string", v);
    if (f->max > 0 && strlen(v->valuestring) > (size_t)f->max) {
      BAD(r, name, "string_above_max_length", "Invalid '%s': string too long. Expected a string with maximum length %.0f.",
          name, f->max);
      return -1;
    }
    return 0;
  case V_NUM_NULL:
  case V_INT_NULL:
    if (cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return bad_type(r, name, f->t == V_INT_NULL ? "an integer" : "a number", v);
    if (f->t == V_INT_NULL && v->valuedouble != (double)(long long)v->valuedouble)
      return bad_type(r, name, "an integer", v);
    if (v->valuedouble < f->min || v->valuedouble > f->max) {
      BAD(r, name, "invalid_value", "Invalid '%s': expected a value between %g and %g, but got %g instead.", name,
          f->min, f->max, v->valuedouble);
      return -1;
    }
    return 0;
  case V_BOOL_NULL:
    if (cJSON_IsNull(v)) return 0;
    /* fallthrough */
  case V_BOOL:
    return cJSON_IsBool(v) ? 0 : bad_type(r, name, "a boolean", v);
  case V_META:
    return check_meta(v, name, r);
  case V_TOOLS_NULL:
    if (cJSON_IsNull(v)) return 0;
    /* fallthrough */
  case V_TOOLS:
    return check_tools(v, name, r);
  case V_TOOLRES:
    return cJSON_IsNull(v) || cJSON_IsObject(v) ? 0 : bad_type(r, name, "an object", v);
  case V_RESPFMT:
    if (cJSON_IsNull(v) || (cJSON_IsString(v) && strcmp(v->valuestring, "auto") == 0)) return 0;
    if (cJSON_IsObject(v)) {
      const cJSON *ty = cJSON_GetObjectItemCaseSensitive(v, "type");
      if (cJSON_IsString(ty) && (strcmp(ty->valuestring, "text") == 0 || strcmp(ty->valuestring, "json_object") == 0 ||
                                 (strcmp(ty->valuestring, "json_schema") == 0 &&
                                  cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(v, "json_schema")))))
        return 0;
    }
    BAD(r, name, "invalid_value", "Invalid value for '%s': expected 'auto' or {\"type\": \"text\"|\"json_object\"|\"json_schema\"}.",
        name);
    return -1;
  case V_TOOLCHOICE:
    if (cJSON_IsString(v) && (strcmp(v->valuestring, "none") == 0 || strcmp(v->valuestring, "auto") == 0 ||
                              strcmp(v->valuestring, "required") == 0))
      return 0;
    if (cJSON_IsObject(v) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "type"))) return 0;
    BAD(r, name, "invalid_value", "Invalid value for '%s': expected none, auto, required or a named tool.", name);
    return -1;
  case V_TRUNC: {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(v, "type");
    if (cJSON_IsObject(v) && cJSON_IsString(ty) &&
        (strcmp(ty->valuestring, "auto") == 0 || strcmp(ty->valuestring, "last_messages") == 0))
      return 0;
    BAD(r, name, "invalid_value", "Invalid value for '%s': expected {\"type\": \"auto\"|\"last_messages\"}.", name);
    return -1;
  }
  case V_MSGS_NULL:
    if (cJSON_IsNull(v)) return 0;
    /* fallthrough */
  case V_MSGS:
    return check_msgs(v, name, r);
  case V_THREAD:
    if (!cJSON_IsObject(v)) return bad_type(r, name, "an object", v);
    return check_fields(v, thread_fields, r, name, 0);
  case V_CONTENT:
    return check_content(v, name, r);
  case V_ROLE:
    if (cJSON_IsString(v) && (strcmp(v->valuestring, "user") == 0 || strcmp(v->valuestring, "assistant") == 0)) return 0;
    BAD(r, name, "invalid_value", "Invalid value: '%s'. Supported values are: 'user' and 'assistant'.",
        cJSON_IsString(v) ? v->valuestring : "?");
    return -1;
  case V_ATTACH:
    return cJSON_IsNull(v) || cJSON_IsArray(v) ? 0 : bad_type(r, name, "an array", v);
  case V_TOOL_OUTPUTS:
    return check_tool_outputs(v, name, r);
  case V_EFFORT:
    if (cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v) && (strcmp(v->valuestring, "minimal") == 0 || strcmp(v->valuestring, "low") == 0 ||
                              strcmp(v->valuestring, "medium") == 0 || strcmp(v->valuestring, "high") == 0 ||
                              strcmp(v->valuestring, "none") == 0))
      return 0;
    BAD(r, name, "invalid_value", "Invalid value for '%s': expected minimal, low, medium or high.", name);
    return -1;
  }
  return 0;
}

/* Check body against a field table: unknown keys, required keys (unless
 * partial, for updates), types.  prefix names nested objects in messages
 * ("thread.messages[0].role"). */
static int check_fields(const cJSON *body, const vfield *fields, sapi_reply *r, const char *prefix, int partial) {
  char name[320];
  for (const cJSON *it = body->child; it; it = it->next) {
    const vfield *f = fields;
    while (f->name && strcmp(f->name, it->string) != 0) f++;
    snprintf(name, sizeof name, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", it->string);
    if (!f->name) {
      BAD(r, name, "unknown_parameter", "Unknown parameter: '%s'.", name);
      return -1;
    }
    if (check_one(it, f, name, r)) return -1;
  }
  for (const vfield *f = fields; f->name; f++) {
    if (f->required && !partial && !cJSON_GetObjectItemCaseSensitive(body, f->name)) {
      snprintf(name, sizeof name, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", f->name);
      BAD(r, name, "missing_required_parameter", "Missing required parameter: '%s'.", name);
      return -1;
    }
  }
  return 0;
}

/* Parse the body as a JSON object; an empty body is {} when allow_empty. */
static cJSON *parse_body(const sapi_req *q, sapi_reply *r, int allow_empty) {
  if (q->body_too_big) {
    BAD(r, NULL, NULL, "Request body too large.");
    return NULL;
  }
  size_t n = q->body_len;
  while (n && (q->body[n - 1] == ' ' || q->body[n - 1] == '\n' || q->body[n - 1] == '\r' || q->body[n - 1] == '\t')) n--;
  if (!n) {
    if (allow_empty) return cJSON_CreateObject();
    BAD(r, NULL, NULL, "You must provide a JSON body.");
    return NULL;
  }
  const char *end = NULL;
  cJSON *o = cJSON_ParseWithLengthOpts(q->body, n, &end, 0);
  if (!o || end != q->body + n) {
    cJSON_Delete(o);
    BAD(r, NULL, NULL,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
        "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)");
    return NULL;
  }
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    BAD(r, NULL, "invalid_type", "Invalid body: expected a JSON object.");
    return NULL;
  }
  return o;
}

/* ---- lists ------------------------------------------------------------ */

typedef int (*list_filter)(const sobj *o, const void *ctx);

static int parse_cursor(const sapi_req *q, sapi_reply *r, const char *key, const slist *l, size_t *idx) {
  const char *id = q->arg(q->arg_cls, key);
  if (!id || !*id) return 0;
  for (int k = SK_ASST; k <= SK_STEP; k++) {
    sobj *o = sstore_get(id, (sobj_kind)k);
    if (!o) continue;
    size_t i = slist_lower_bound(l, o->seq);
    if (i < l->n && l->v[i] == o) {
      *idx = i;
      return 1;
    }
  }
  BAD(r, key, "invalid_value", "Invalid '%s': no object with id '%s' in this list.", key, id);
  return -1;
}

/* Reply with one page of l (store lock held).  Paging follows the API:
 * order asc|desc (default desc), limit 1..100 (default 20), after/before
 * cursors naming an object in the list. */
static void reply_list(const sapi_req *q, sapi_reply *r, const slist *l, list_filter filt, const void *fctx) {
  long limit = 20;
  const char *s = q->arg(q->arg_cls, "limit");
  if (s) {
    char *end;
    limit = strtol(s, &end, 10);
    if (!*s || *end || limit < 1 || limit > 100) {
      BAD(r, "limit", "invalid_value", "Invalid 'limit': expected an integer between 1 and 100, but got '%s'.", s);
      return;
    }
  }
  int desc = 1;
  s = q->arg(q->arg_cls, "order");
  if (s) {
    if (strcmp(s, "asc") == 0) desc = 0;
    else if (strcmp(s, "desc") != 0) {
      BAD(r, "order", "invalid_value", "Invalid value: '%s'. Supported values are: 'asc' and 'desc'.", s);
      return;
    }
  }
  size_t ai = 0, bi = 0;
  int has_after = parse_cursor(q, r, "after", l, &ai);
  if (has_after < 0) return;
  int has_before = parse_cursor(q, r, "before", l, &bi);
  if (has_before < 0) return;

  /* Positions in listing order: p = 0..n-1 maps to index desc ? n-1-p : p. */
  long n = (long)l->n;
  long lo = 0, hi = n; /* listing positions [lo, hi) are eligible */
  if (has_after) lo = (desc ? n - 1 - (long)ai : (long)ai) + 1;
  if (has_before) hi = desc ? n - 1 - (long)bi : (long)bi;
  /* Only `before`: the page is the one right before the cursor. */
  int backwards = has_before && !has_after;

  sobj **page = malloc((size_t)limit * sizeof *page);
  if (!page) {
    reply_json(r, 500, NULL);
    return;
  }
  long got = 0;
  int more = 0;
  for (long k = 0; lo + k < hi; k++) {
    long p = backwards ? hi - 1 - k : lo + k;
    sobj *o = l->v[desc ? n - 1 - p : p];
    if (filt && !filt(o, fctx)) continue;
    if (got == limit) {
      more = 1;
      break;
    }
    page[got++] = o;
  }
  if (backwards)
    for (long i = 0; i < got / 2; i++) {
      sobj *t = page[i];
      page[i] = page[got - 1 - i];
      page[got - 1 - i] = t;
    }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "object", "list");
  cJSON *data = cJSON_AddArrayToObject(o, "data");
  for (long i = 0; i < got; i++) cJSON_AddItemReferenceToArray(data, page[i]->json);
  /* The spec types first_id/last_id as strings; the real API sends null for
   * an empty page, which would not validate, so an empty page gets "". */
  cJSON_AddStringToObject(o, "first_id", got ? page[0]->id : "");
  cJSON_AddStringToObject(o, "last_id", got ? page[got - 1]->id : "");
  cJSON_AddBoolToObject(o, "has_more", more);
  free(page);
  reply_json(r, 200, o); /* references: deleting o leaves the objects */
}

/* ---- assistants ------------------------------------------------------- */

static const vfield asst_fields[] = {
    {"model", V_STR, 1, 0, 256},
    {"name", V_STR_NULL, 0, 0, 256},
    {"description", V_STR_NULL, 0, 0, 512},
    {"instructions", V_STR_NULL, 0, 0, 256000},
    {"reasoning_effort", V_EFFORT, 0, 0, 0},
    {"tools", V_TOOLS, 0, 0, 0},
    {"tool_resources", V_TOOLRES, 0, 0, 0},
    {"metadata", V_META, 0, 0, 0},
    {"temperature", V_NUM_NULL, 0, 0, 2},
    {"top_p", V_NUM_NULL, 0, 0, 1},
    {"response_format", V_RESPFMT, 0, 0, 0},
    {NULL, 0, 0, 0, 0},
};

/* Copy body[key] into o[key]; a null or absent value yields dflt (taken). */
static void put(cJSON *o, const cJSON *body, const char *key, cJSON *dflt, int only_if_present) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, key);
  if (!v && only_if_present) {
    cJSON_Delete(dflt);
    return;
  }
  if (v && !cJSON_IsNull(v)) {
    cJSON_Delete(dflt);
    jset(o, key, cJSON_Duplicate(v, 1));
  } else {
    jset(o, key, dflt);
  }
}

/* Fill an assistant from body; update=1 touches only the keys present. */
static void asst_fill(cJSON *a, const cJSON *body, int update) {
  put(a, body, "name", cJSON_CreateNull(), update);
  put(a, body, "description", cJSON_CreateNull(), update);
  put(a, body, "model", cJSON_CreateString("gpt-4o"), update);
  put(a, body, "instructions", cJSON_CreateNull(), update);
  put(a, body, "tools", cJSON_CreateArray(), update);
  put(a, body, "tool_resources", cJSON_CreateObject(), update);
  put(a, body, "metadata", cJSON_CreateObject(), update);
  put(a, body, "top_p", cJSON_CreateNumber(1.0), update);
  put(a, body, "temperature", cJSON_CreateNumber(1.0), update);
  put(a, body, "reasoning_effort", cJSON_CreateNull(), update);
  put(a, body, "response_format", cJSON_CreateString("auto"), update);
}

static void asst_create(const sapi_req *q, sapi_reply *r) {
  cJSON *body = parse_body(q, r, 0);
  if (!body) return;
  if (check_fields(body, asst_fields, r, NULL, 0) == 0) {
    sstore_lock();
    sobj *a = sstore_new(SK_ASST, NULL);
    if (a) {
      asst_fill(a->json, body, 0);
      reply_obj(r, a->json);
    } else {
      reply_json(r, 500, NULL);
    }
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static void asst_update(const sapi_req *q, sapi_reply *r, const char *id) {
  cJSON *body = parse_body(q, r, 1);
  if (!body) return;
  if (check_fields(body, asst_fields, r, NULL, 1) == 0) {
    sstore_lock();
    sobj *a = sstore_get(id, SK_ASST);
    if (a) {
      asst_fill(a->json, body, 1);
      reply_obj(r, a->json);
    } else {
      not_found(r, "assistant", id);
    }
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static void reply_deleted(sapi_reply *r, const char *id, const char *object) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", id);
  cJSON_AddStringToObject(o, "object", object);
  cJSON_AddTrueToObject(o, "deleted");
  reply_json(r, 200, o);
}

/* ---- threads and messages --------------------------------------------- */

/* Build a user/assistant message on thread from a validated request. */
static sobj *msg_add(sobj *thread, const cJSON *m) {
  sobj *msg = sstore_new(SK_MSG, thread);
  if (!msg) return NULL;
  cJSON *j = msg->json;
  const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
  cJSON_AddStringToObject(j, "thread_id", thread->id);
  cJSON_AddStringToObject(j, "status", "completed");
  cJSON_AddNullToObject(j, "incomplete_details");
  cJSON_AddNumberToObject(j, "completed_at", (double)msg->created_at);
  cJSON_AddNullToObject(j, "incomplete_at");
  cJSON_AddStringToObject(j, "role", cJSON_GetObjectItemCaseSensitive(m, "role")->valuestring);
  cJSON *out = cJSON_AddArrayToObject(j, "content");
  if (cJSON_IsString(content)) {
    cJSON *part = cJSON_CreateObject();
    cJSON_AddStringToObject(part, "type", "text");
    cJSON *t = cJSON_AddObjectToObject(part, "text");
    cJSON_AddStringToObject(t, "value", content->valuestring);
    cJSON_AddArrayToObject(t, "annotations");
    cJSON_AddItemToArray(out, part);
  } else {
    const cJSON *p;
    cJSON_ArrayForEach(p, content) {
      const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
      if (strcmp(ty->valuestring, "text") == 0) {
        /* Request parts carry text as a string; stored ones as {value,annotations}. */
        cJSON *part = cJSON_CreateObject();
        cJSON_AddStringToObject(part, "type", "text");
        cJSON *t = cJSON_AddObjectToObject(part, "text");
        cJSON_AddStringToObject(t, "value", cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring);
        cJSON_AddArrayToObject(t, "annotations");
        cJSON_AddItemToArray(out, part);
      } else {
        cJSON_AddItemToArray(out, cJSON_Duplicate(p, 1));
      }
    }
  }
  cJSON_AddNullToObject(j, "assistant_id");
  cJSON_AddNullToObject(j, "run_id");
  const cJSON *att = cJSON_GetObjectItemCaseSensitive(m, "attachments");
  cJSON_AddItemToObject(j, "attachments", cJSON_IsArray(att) ? cJSON_Duplicate(att, 1) : cJSON_CreateArray());
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(m, "metadata");
  cJSON_AddItemToObject(j, "metadata", cJSON_IsObject(meta) ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject());
  return msg;
}

/* Create a thread with its initial messages (validated body); lock held. */
static sobj *thread_make(const cJSON *body) {
  sobj *t = sstore_new(SK_THREAD, NULL);
  if (!t) return NULL;
  const cJSON *tr = cJSON_GetObjectItemCaseSensitive(body, "tool_resources");
  const cJSON *meta = cJSON_GetObjectItemCaseSensitive(body, "metadata");
  cJSON_AddItemToObject(t->json, "tool_resources", cJSON_IsObject(tr) ? cJSON_Duplicate(tr, 1) : cJSON_CreateObject());
  cJSON_AddItemToObject(t->json, "metadata", cJSON_IsObject(meta) ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject());
  const cJSON *m;
  cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(body, "messages")) {
    if (!msg_add(t, m)) {
      sstore_delete(t);
      return NULL;
    }
  }
  return t;
}

static void thread_create(const sapi_req *q, sapi_reply *r) {
  cJSON *body = parse_body(q, r, 1);
  if (!body) return;
  if (check_fields(body, thread_fields, r, NULL, 0) == 0) {
    sstore_lock();
    sobj *t = thread_make(body);
    if (t) reply_obj(r, t->json);
    else reply_json(r, 500, NULL);
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static const vfield thread_update_fields[] = {
    {"tool_resources", V_TOOLRES, 0, 0, 0},
    {"metadata", V_META, 0, 0, 0},
    {NULL, 0, 0, 0, 0},
};

static void thread_update(const sapi_req *q, sapi_reply *r, const char *id) {
  cJSON *body = parse_body(q, r, 1);
  if (!body) return;
  if (check_fields(body, thread_update_fields, r, NULL, 0) == 0) {
    sstore_lock();
    sobj *t = sstore_get(id, SK_THREAD);
    if (t) {
      put(t->json, body, "tool_resources", cJSON_CreateObject(), 1);
      put(t->json, body, "metadata", cJSON_CreateObject(), 1);
      reply_obj(r, t->json);
    } else {
      not_found(r, "thread", id);
    }
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static void active_run_error(sapi_reply *r, const sobj *t) {
  BAD(r, NULL, NULL, "Thread %s already has an active run %s.", t->id, t->active_run->id);
}

static void msg_create(const sapi_req *q, sapi_reply *r, const char *tid) {
  cJSON *body = parse_body(q, r, 0);
  if (!body) return;
  if (check_fields(body, msg_fields, r, NULL, 0) == 0) {
    sstore_lock();
    sobj *t = sstore_get(tid, SK_THREAD), *m;
    if (!t) not_found(r, "thread", tid);
    else if (t->active_run) active_run_error(r, t);
    else if ((m = msg_add(t, body)) != NULL) reply_obj(r, m->json);
    else reply_json(r, 500, NULL);
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static int msg_of_run(const sobj *o, const void *run_id) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o->json, "run_id");
  return cJSON_IsString(v) && strcmp(v->valuestring, run_id) == 0;
}

/* ---- runs ------------------------------------------------------------- */

static const vfield run_fields[] = {
    {"assistant_id", V_STR, 1, 0, 0},
    {"model", V_STR_NULL, 0, 0, 256},
    {"reasoning_effort", V_EFFORT, 0, 0, 0},
    {"instructions", V_STR_NULL, 0, 0, 256000},
    {"additional_instructions", V_STR_NULL, 0, 0, 256000},
    {"additional_messages", V_MSGS_NULL, 0, 0, 0},
    {"tools", V_TOOLS_NULL, 0, 0, 0},
    {"metadata", V_META, 0, 0, 0},
    {"temperature", V_NUM_NULL, 0, 0, 2},
    {"top_p", V_NUM_NULL, 0, 0, 1},
    {"stream", V_BOOL_NULL, 0, 0, 0},
    {"max_prompt_tokens", V_INT_NULL, 0, 256, 1e9},
    {"max_completion_tokens", V_INT_NULL, 0, 256, 1e9},
    {"truncation_strategy", V_TRUNC, 0, 0, 0},
    {"tool_choice", V_TOOLCHOICE, 0, 0, 0},
    {"parallel_tool_calls", V_BOOL, 0, 0, 0},
    {"response_format", V_RESPFMT, 0, 0, 0},
    {NULL, 0, 0, 0, 0},
};

static const vfield thread_run_fields[] = {
    {"assistant_id", V_STR, 1, 0, 0},
    {"thread", V_THREAD, 0, 0, 0},
    {"model", V_STR_NULL, 0, 0, 256},
    {"instructions", V_STR_NULL, 0, 0, 256000},
    {"tools", V_TOOLS_NULL, 0, 0, 0},
    {"tool_resources", V_TOOLRES, 0, 0, 0},
    {"metadata", V_META, 0, 0, 0},
    {"temperature", V_NUM_NULL, 0, 0, 2},
    {"top_p", V_NUM_NULL, 0, 0, 1},
    {"stream", V_BOOL_NULL, 0, 0, 0},
    {"max_prompt_tokens", V_INT_NULL, 0, 256, 1e9},
    {"max_completion_tokens", V_INT_NULL, 0, 256, 1e9},
    {"truncation_strategy", V_TRUNC, 0, 0, 0},
    {"tool_choice", V_TOOLCHOICE, 0, 0, 0},
    {"parallel_tool_calls", V_BOOL, 0, 0, 0},
    {"response_format", V_RESPFMT, 0, 0, 0},
    {NULL, 0, 0, 0, 0},
};

/* Start run (lock held): either as an SSE stream or in the background. */
static void run_reply(sapi_reply *r, sobj *run, int stream, sstream_kind kind) {
  sfault_cfg c;
  sfault_get(&c);
  if (!stream) {
    reply_obj(r, run->json);
    /* The response is sent after latency_ms too; the run starts then. */
    srun_background(run->id, c.latency_ms);
    return;
  }
  run->run->stream_owned = 1;
  cJSON *rec = r->rec;
  r->rec = NULL;
  if (rec) cJSON_AddNumberToObject(rec, "status", 200);
  /* A stream that stops at requires_action has no answer to cut short:
   * it does not spend an injected drop, which goes to the next answer. */
  int drop = srun_wants_tools(run) ? 0 : sfault_take_drop_stream();
  r->stream = sstream_new(run->parent->id, run->id, kind, drop, rec);
  if (!r->stream) {
    run->run->stream_owned = 0;
    srun_background(run->id, 0);
    reply_json(r, 500, NULL);
    return;
  }
  r->status = 200;
}

static void run_create(const sapi_req *q, sapi_reply *r, const char *tid) {
  cJSON *body = parse_body(q, r, 0);
  if (!body) return;
  if (check_fields(body, run_fields, r, NULL, 0) == 0) {
    const char *aid = cJSON_GetObjectItemCaseSensitive(body, "assistant_id")->valuestring;
    sstore_lock();
    sobj *t = sstore_get(tid, SK_THREAD), *a = sstore_get(aid, SK_ASST), *run = NULL;
    sfault_cfg c;
    sfault_get(&c);
    if (!t) not_found(r, "thread", tid);
    else if (!a) not_found(r, "assistant", aid);
    else if (t->active_run) active_run_error(r, t);
    else {
      const cJSON *m;
      int ok = 1;
      cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(body, "additional_messages")) ok &= msg_add(t, m) != NULL;
      if (ok) run = srun_create(t, a, body, c.answer_tokens);
      if (run) run_reply(r, run, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream")), SSTREAM_RUN);
      else reply_json(r, 500, NULL);
    }
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static void thread_run_create(const sapi_req *q, sapi_reply *r) {
  cJSON *body = parse_body(q, r, 0);
  if (!body) return;
  if (check_fields(body, thread_run_fields, r, NULL, 0) == 0) {
    const char *aid = cJSON_GetObjectItemCaseSensitive(body, "assistant_id")->valuestring;
    sstore_lock();
    sobj *a = sstore_get(aid, SK_ASST), *t = NULL, *run = NULL;
    sfault_cfg c;
    sfault_get(&c);
    if (!a) {
      not_found(r, "assistant", aid);
    } else {
      cJSON *tb = cJSON_GetObjectItemCaseSensitive(body, "thread");
      cJSON *empty = tb ? NULL : cJSON_CreateObject();
      t = thread_make(tb ? tb : empty);
      cJSON_Delete(empty);
      if (t) run = srun_create(t, a, body, c.answer_tokens);
      if (run) run_reply(r, run, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream")), SSTREAM_THREAD_RUN);
      else reply_json(r, 500, NULL);
    }
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static const vfield submit_fields[] = {
    {"tool_outputs", V_TOOL_OUTPUTS, 1, 0, 0},
    {"stream", V_BOOL_NULL, 0, 0, 0},
    {NULL, 0, 0, 0, 0},
};

static void run_submit(const sapi_req *q, sapi_reply *r, const char *tid, const char *rid) {
  cJSON *body = parse_body(q, r, 0);
  if (!body) return;
  if (check_fields(body, submit_fields, r, NULL, 0) == 0) {
    sstore_lock();
    sobj *t = sstore_get(tid, SK_THREAD), *run = sstore_get(rid, SK_RUN);
    char err[2048];
    int rc;
    if (!t) not_found(r, "thread", tid);
    else if (!run || run->parent != t) not_found(r, "run", rid);
    else if ((rc = srun_submit_tool_outputs(run, cJSON_GetObjectItemCaseSensitive(body, "tool_outputs"), err,
                                            sizeof err)) == AW_ENOMEM)
      reply_json(r, 500, NULL);
    else if (rc)
      BAD(r, run->run->status == RS_REQUIRES_ACTION ? "tool_outputs" : NULL, NULL, "%s", err);
    else run_reply(r, run, cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(body, "stream")), SSTREAM_SUBMIT);
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static void run_cancel(sapi_reply *r, sobj *run) {
  srun_status st = run->run->status;
  if (!srun_status_active(st) || st == RS_CANCELLING) {
    BAD(r, NULL, NULL, "Cannot cancel run with status '%s'.", srun_status_name(st));
    return;
  }
  srun_request_cancel(run);
  reply_obj(r, run->json);
  /* A stream that owns the run sees cancelling at its next step. */
  if (!run->run->stream_owned) srun_background(run->id, 0);
}

/* ---- admin ------------------------------------------------------------ */

static void admin_stats(sapi_reply *r) {
  cJSON *o = sstats_to_json();
  long counts[RS_COUNT];
  sstore_lock();
  sstore_run_counts(counts);
  sstore_unlock();
  cJSON *runs = cJSON_AddObjectToObject(o, "runs");
  for (int s = 0; s < RS_COUNT; s++) cJSON_AddNumberToObject(runs, srun_status_name((srun_status)s), (double)counts[s]);
  cJSON_AddNumberToObject(o, "pending_timers", (double)stimer_pending());
  reply_json(r, 200, o);
}

static void admin(const sapi_req *q, sapi_reply *r, const char *what) {
  int get = strcmp(q->method, "GET") == 0, post = strcmp(q->method, "POST") == 0;
  if (strcmp(what, "faults") == 0 && (get || post)) {
    r->route = get ? SR_ADMIN_FAULTS_GET : SR_ADMIN_FAULTS_SET;
    if (post) {
      cJSON *body = parse_body(q, r, 1);
      if (!body) return;
      char err[256];
      int rc = sfault_set_json(body, err, sizeof err);
      cJSON_Delete(body);
      if (rc) {
        BAD(r, NULL, "invalid_value", "%s", err);
        return;
      }
    }
    reply_json(r, 200, sfault_to_json());
  } else if (strcmp(what, "reset") == 0 && post) {
    r->route = SR_ADMIN_RESET;
    sstore_lock();
    sstore_reset();
    sstore_unlock();
    malloc_trim(0); /* hand the freed store back to the OS between test suites */
    sfault_reset();
    sstats_reset();
    log_info(NULL, "state and faults reset");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    reply_json(r, 200, o);
  } else if (strcmp(what, "stats") == 0 && get) {
    r->route = SR_ADMIN_STATS;
    admin_stats(r);
  } else {
    reply_err(r, 404, "invalid_request_error", NULL, NULL, "Invalid URL (%s %s)", q->method, q->path);
  }
}

/* ---- routing ---------------------------------------------------------- */

#define MAX_SEG 8

static int split(const char *path, char seg[MAX_SEG][64]) {
  int n = 0;
  const char *p = path;
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (n == MAX_SEG || len >= 64) return -1;
    memcpy(seg[n], p, len);
    seg[n++][len] = '\0';
    p += len;
  }
  return n;
}

/* Bearer token present and non-empty?  (Any value is accepted.) */
static int authorized(const char *auth) {
  if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) return 0;
  for (const char *p = auth + 7; *p; p++)
    if (*p != ' ') return 1;
  return 0;
}

/* Which endpoint is this?  Decided before auth and faults so that every
 * answer, 401 and 429 included, is counted against its endpoint. */
static sstats_route classify(const char *m, char s[MAX_SEG][64], int n) {
  int get = strcmp(m, "GET") == 0, post = strcmp(m, "POST") == 0, del = strcmp(m, "DELETE") == 0;
  if (n < 2 || strcmp(s[0], "v1") != 0) return SR_UNKNOWN;
  if (strcmp(s[1], "assistants") == 0) {
    if (n == 2) return post ? SR_ASST_CREATE : get ? SR_ASST_LIST : SR_UNKNOWN;
    if (n == 3) return post ? SR_ASST_UPDATE : get ? SR_ASST_GET : del ? SR_ASST_DELETE : SR_UNKNOWN;
    return SR_UNKNOWN;
  }
  if (strcmp(s[1], "threads") != 0) return SR_UNKNOWN;
  if (n == 2) return post ? SR_THREAD_CREATE : SR_UNKNOWN;
  if (n == 3 && strcmp(s[2], "runs") == 0) return post ? SR_THREAD_RUN : SR_UNKNOWN;
  if (n == 3) return post ? SR_THREAD_UPDATE : get ? SR_THREAD_GET : del ? SR_THREAD_DELETE : SR_UNKNOWN;
  if (strcmp(s[3], "messages") == 0) {
    if (n == 4) return post ? SR_MSG_CREATE : get ? SR_MSG_LIST : SR_UNKNOWN;
    if (n == 5) return get ? SR_MSG_GET : SR_UNKNOWN;
    return SR_UNKNOWN;
  }
  if (strcmp(s[3], "runs") != 0) return SR_UNKNOWN;
  if (n == 4) return post ? SR_RUN_CREATE : get ? SR_RUN_LIST : SR_UNKNOWN;
  if (n == 5) return get ? SR_RUN_GET : SR_UNKNOWN;
  if (n == 6 && strcmp(s[5], "cancel") == 0) return post ? SR_RUN_CANCEL : SR_UNKNOWN;
  if (n == 6 && strcmp(s[5], "submit_tool_outputs") == 0) return post ? SR_RUN_SUBMIT : SR_UNKNOWN;
  if (n == 6 && strcmp(s[5], "steps") == 0) return get ? SR_STEP_LIST : SR_UNKNOWN;
  if (n == 7 && strcmp(s[5], "steps") == 0) return get ? SR_STEP_GET : SR_UNKNOWN;
  return SR_UNKNOWN;
}

/* Run a classified /v1 route (after auth and fault injection). */
static void route_v1(const sapi_req *q, sapi_reply *r, char s[MAX_SEG][64]) {
  switch (r->route) {
  case SR_ASST_CREATE: asst_create(q, r); return;
  case SR_ASST_UPDATE: asst_update(q, r, s[2]); return;
  case SR_THREAD_CREATE: thread_create(q, r); return;
  case SR_THREAD_RUN: thread_run_create(q, r); return;
  case SR_THREAD_UPDATE: thread_update(q, r, s[2]); return;
  case SR_MSG_CREATE: msg_create(q, r, s[2]); return;
  case SR_RUN_CREATE: run_create(q, r, s[2]); return;
  case SR_RUN_SUBMIT: run_submit(q, r, s[2], s[4]); return;
  default: break;
  }
  /* The rest are lookups under one lock. */
  sstore_lock();
  if (r->route == SR_ASST_LIST) {
    reply_list(q, r, sstore_assistants(), NULL, NULL);
  } else if (r->route == SR_ASST_GET || r->route == SR_ASST_DELETE) {
    sobj *a = sstore_get(s[2], SK_ASST);
    if (!a) not_found(r, "assistant", s[2]);
    else if (r->route == SR_ASST_GET) reply_obj(r, a->json);
    else {
      sstore_delete(a);
      reply_deleted(r, s[2], "assistant.deleted");
    }
  } else {
    sobj *t = sstore_get(s[2], SK_THREAD), *run = NULL, *o;
    sstats_route route = r->route;
    if (!t) {
      not_found(r, "thread", s[2]);
    } else if (route == SR_THREAD_GET) {
      reply_obj(r, t->json);
    } else if (route == SR_THREAD_DELETE) {
      sstore_delete(t);
      reply_deleted(r, s[2], "thread.deleted");
    } else if (route == SR_MSG_LIST) {
      const char *rid = q->arg(q->arg_cls, "run_id");
      reply_list(q, r, &t->kids, rid ? msg_of_run : NULL, rid);
    } else if (route == SR_MSG_GET) {
      o = sstore_get(s[4], SK_MSG);
      if (o && o->parent == t) reply_obj(r, o->json);
      else not_found(r, "message", s[4]);
    } else if (route == SR_RUN_LIST) {
      reply_list(q, r, &t->runs, NULL, NULL);
    } else if (!(run = sstore_get(s[4], SK_RUN)) || run->parent != t) {
      not_found(r, "run", s[4]);
    } else if (route == SR_RUN_GET) {
      reply_obj(r, run->json);
    } else if (route == SR_RUN_CANCEL) {
      run_cancel(r, run);
    } else if (route == SR_STEP_LIST) {
      reply_list(q, r, &run->kids, NULL, NULL);
    } else {
      o = sstore_get(s[6], SK_STEP);
      if (o && o->parent == run) reply_obj(r, o->json);
      else not_found(r, "run step", s[6]);
    }
  }
  sstore_unlock();
}

void sapi_handle(const sapi_req *q, sapi_reply *r) {
  r->route = SR_UNKNOWN;
  r->retry_after_s = -1;
  char s[MAX_SEG][64];
  int n = split(q->path, s);
  if (n >= 1 && strcmp(s[0], "admin") == 0 && n == 2) {
    admin(q, r, s[1]);
    return;
  }
  if (n == 1 && strcmp(s[0], "healthz") == 0) {
    r->route = SR_HEALTH;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddTrueToObject(o, "ok");
    reply_json(r, 200, o);
    return;
  }
  r->route = n > 0 ? classify(q->method, s, n) : SR_UNKNOWN;
  if (r->route == SR_UNKNOWN) {
    reply_err(r, 404, "invalid_request_error", NULL, NULL, "Invalid URL (%s %s)", q->method, q->path);
    return;
  }
  if (!authorized(q->auth)) {
    reply_err(r, 401, "invalid_request_error", NULL, NULL,
              "You didn't provide an API key. You need to provide your API key in an Authorization header using "
              "Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
    return;
  }
  if (!q->beta || !strstr(q->beta, "assistants=v2")) {
    /* The real service refuses Assistants calls without this header. */
    BAD(r, NULL, "invalid_beta",
        "You must provide the 'OpenAI-Beta' header to access the Assistants API. Please try again by setting the "
        "header 'OpenAI-Beta: assistants=v2'.");
    return;
  }
  int retry_after = 0;
  sfault_http f = sfault_take_http(&retry_after);
  if (f == SFAULT_429) {
    r->retry_after_s = retry_after;
    reply_err(r, 429, "requests", NULL, "rate_limit_exceeded",
              "Rate limit reached for requests. Please try again in %ds. (injected by the simulator)", retry_after);
    return;
  }
  if (f == SFAULT_500) {
    reply_err(r, 500, "server_error", NULL, NULL,
              "The server had an error while processing your request. Sorry about that! (injected by the simulator)");
    return;
  }
  route_v1(q, r, s);
}

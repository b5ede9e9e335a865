/* sim_req.c -- request validation, error bodies, list pages. */
#include "sim_req.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- replies ---------------------------------------------------------- */

void sreq_json(sapi_reply *r, int status, cJSON *o) {
  r->status = status;
  r->body = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!r->body) {
    r->status = 500;
    r->body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
  }
}

/* Print a stored object (borrowed) as the reply. */
void sreq_obj(sapi_reply *r, const cJSON *o) {
  r->status = 200;
  r->body = cJSON_PrintUnformatted(o);
  if (!r->body) sreq_json(r, 500, NULL);
}

/* OpenAI's error shape: {"error":{"message","type","param","code"}}. */
void sreq_err(sapi_reply *r, int status, const char *type, const char *param, const char *code, const char *fmt, ...) {
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
  sreq_json(r, status, o);
}


void sreq_not_found(sapi_reply *r, const char *what, const char *id) {
  sreq_err(r, 404, "invalid_request_error", NULL, NULL, "No %s found with id '%s'.", what, id);
}

/* ---- request validation ----------------------------------------------- */



static const char *jtype(const cJSON *v) {
  if (cJSON_IsNull(v)) return "null";
  if (cJSON_IsBool(v)) return "a boolean";
  if (cJSON_IsNumber(v)) return v->valuedouble == (double)(long long)v->valuedouble ? "an integer" : "a decimal";
  if (cJSON_IsString(v)) return "a string";
  if (cJSON_IsArray(v)) return "an array";
  return "an object";
}

int sreq_bad_type(sapi_reply *r, const char *name, const char *want, const cJSON *v) {
  SREQ_BAD(r, name, "invalid_type", "Invalid type for '%s': expected %s, but got %s instead.", name, want, jtype(v));
  return -1;
}


static int check_tools(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array", v);
  if (cJSON_GetArraySize(v) > 128) {
    SREQ_BAD(r, name, "array_above_max_length", "Invalid '%s': array too long.", name);
    return -1;
  }
  const cJSON *t;
  cJSON_ArrayForEach(t, v) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
    if (!cJSON_IsObject(t) || !cJSON_IsString(ty) ||
        (strcmp(ty->valuestring, "code_interpreter") != 0 && strcmp(ty->valuestring, "file_search") != 0 &&
         strcmp(ty->valuestring, "function") != 0)) {
      SREQ_BAD(r, name, "invalid_value",
          "Invalid value for '%s': each tool must be an object with type code_interpreter, file_search or function.",
          name);
      return -1;
    }
    if (strcmp(ty->valuestring, "function") == 0) {
      const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
      if (!cJSON_IsObject(fn) || !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(fn, "name"))) {
        SREQ_BAD(r, name, "missing_required_parameter", "Missing required parameter: '%s[].function.name'.", name);
        return -1;
      }
    }
  }
  return 0;
}

int sreq_check_meta(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsNull(v)) return 0;
  if (!cJSON_IsObject(v)) return sreq_bad_type(r, name, "an object", v);
  int n = 0;
  const cJSON *kv;
  cJSON_ArrayForEach(kv, v) {
    if (++n > 16 || strlen(kv->string) > 64 || !cJSON_IsString(kv) || strlen(kv->valuestring) > 512) {
      SREQ_BAD(r, name, "invalid_value",
          "Invalid '%s': at most 16 pairs, keys up to 64 characters, string values up to 512 characters.", name);
      return -1;
    }
  }
  return 0;
}

static int check_content(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsString(v)) return 0;
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "a string or an array", v);
  if (cJSON_GetArraySize(v) < 1) {
    SREQ_BAD(r, name, "empty_array", "Invalid '%s': empty array. Expected an array with minimum length 1.", name);
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
      SREQ_BAD(r, name, "invalid_value",
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
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array", v);
  int i = 0;
  const cJSON *o;
  cJSON_ArrayForEach(o, v) {
    char pre[256];
    if (snprintf(pre, sizeof pre, "%s[%d]", name, i++) >= (int)sizeof pre) pre[sizeof pre - 1] = '\0';
    static const sreq_field out_fields[] = {
        {"tool_call_id", V_STR, 1, 0, 0, NULL},
        {"output", V_STR, 1, 0, 0, NULL},
        {NULL, 0, 0, 0, 0, NULL},
    };
    if (!cJSON_IsObject(o)) return sreq_bad_type(r, pre, "an object", o);
    if (sreq_check_fields(o, out_fields, r, pre, 0)) return -1;
  }
  return 0;
}

const sreq_field sreq_msg_fields[] = {
    {"role", V_ROLE, 1, 0, 0, NULL},
    {"content", V_CONTENT, 1, 0, 0, NULL},
    {"attachments", V_ATTACH, 0, 0, 0, NULL},
    {"metadata", V_META, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

const sreq_field sreq_thread_fields[] = {
    {"messages", V_MSGS, 0, 0, 0, NULL},
    {"tool_resources", V_TOOLRES, 0, 0, 0, NULL},
    {"metadata", V_META, 0, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static int check_msgs(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array", v);
  int i = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, v) {
    char pre[256];
    if (snprintf(pre, sizeof pre, "%s[%d]", name, i++) >= (int)sizeof pre) pre[sizeof pre - 1] = '\0'; /* error text only */
    if (!cJSON_IsObject(m)) return sreq_bad_type(r, pre, "an object", m);
    if (sreq_check_fields(m, sreq_msg_fields, r, pre, 0)) return -1;
  }
  return 0;
}

static int check_one(const cJSON *v, const sreq_field *f, const char *name, sapi_reply *r) {
  switch (f->t) {
  case V_STR_NULL:
    if (cJSON_IsNull(v)) return 0;
    /* fallthrough */
  case V_STR:
    if (!cJSON_IsString(v)) return sreq_bad_type(r, name, "a string", v);
    if (f->max > 0 && strlen(v->valuestring) > (size_t)f->max) {
      SREQ_BAD(r, name, "string_above_max_length", "Invalid '%s': string too long. Expected a string with maximum length %.0f.",
          name, f->max);
      return -1;
    }
    return 0;
  case V_NUM_NULL:
  case V_INT_NULL:
    if (cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v)) return sreq_bad_type(r, name, f->t == V_INT_NULL ? "an integer" : "a number", v);
    if (f->t == V_INT_NULL && v->valuedouble != (double)(long long)v->valuedouble)
      return sreq_bad_type(r, name, "an integer", v);
    if (v->valuedouble < f->min || v->valuedouble > f->max) {
      SREQ_BAD(r, name, "invalid_value", "Invalid '%s': expected a value between %g and %g, but got %g instead.", name,
          f->min, f->max, v->valuedouble);
      return -1;
    }
    return 0;
  case V_BOOL_NULL:
    if (cJSON_IsNull(v)) return 0;
    /* fallthrough */
  case V_BOOL:
    return cJSON_IsBool(v) ? 0 : sreq_bad_type(r, name, "a boolean", v);
  case V_META:
    return sreq_check_meta(v, name, r);
  case V_TOOLS_NULL:
    if (cJSON_IsNull(v)) return 0;
    /* fallthrough */
  case V_TOOLS:
    return check_tools(v, name, r);
  case V_TOOLRES:
    return cJSON_IsNull(v) || cJSON_IsObject(v) ? 0 : sreq_bad_type(r, name, "an object", v);
  case V_RESPFMT:
    if (cJSON_IsNull(v) || (cJSON_IsString(v) && strcmp(v->valuestring, "auto") == 0)) return 0;
    if (cJSON_IsObject(v)) {
      const cJSON *ty = cJSON_GetObjectItemCaseSensitive(v, "type");
      if (cJSON_IsString(ty) && (strcmp(ty->valuestring, "text") == 0 || strcmp(ty->valuestring, "json_object") == 0 ||
                                 (strcmp(ty->valuestring, "json_schema") == 0 &&
                                  cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(v, "json_schema")))))
        return 0;
    }
    SREQ_BAD(r, name, "invalid_value", "Invalid value for '%s': expected 'auto' or {\"type\": \"text\"|\"json_object\"|\"json_schema\"}.",
        name);
    return -1;
  case V_TOOLCHOICE:
    if (cJSON_IsString(v) && (strcmp(v->valuestring, "none") == 0 || strcmp(v->valuestring, "auto") == 0 ||
                              strcmp(v->valuestring, "required") == 0))
      return 0;
    if (cJSON_IsObject(v) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(v, "type"))) return 0;
    SREQ_BAD(r, name, "invalid_value", "Invalid value for '%s': expected none, auto, required or a named tool.", name);
    return -1;
  case V_TRUNC: {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(v, "type");
    if (cJSON_IsObject(v) && cJSON_IsString(ty) &&
        (strcmp(ty->valuestring, "auto") == 0 || strcmp(ty->valuestring, "last_messages") == 0))
      return 0;
    SREQ_BAD(r, name, "invalid_value", "Invalid value for '%s': expected {\"type\": \"auto\"|\"last_messages\"}.", name);
    return -1;
  }
  case V_MSGS_NULL:
    if (cJSON_IsNull(v)) return 0;
    /* fallthrough */
  case V_MSGS:
    return check_msgs(v, name, r);
  case V_THREAD:
    if (!cJSON_IsObject(v)) return sreq_bad_type(r, name, "an object", v);
    return sreq_check_fields(v, sreq_thread_fields, r, name, 0);
  case V_CONTENT:
    return check_content(v, name, r);
  case V_ROLE:
    if (cJSON_IsString(v) && (strcmp(v->valuestring, "user") == 0 || strcmp(v->valuestring, "assistant") == 0)) return 0;
    SREQ_BAD(r, name, "invalid_value", "Invalid value: '%s'. Supported values are: 'user' and 'assistant'.",
        cJSON_IsString(v) ? v->valuestring : "?");
    return -1;
  case V_ATTACH:
    return cJSON_IsNull(v) || cJSON_IsArray(v) ? 0 : sreq_bad_type(r, name, "an array", v);
  case V_TOOL_OUTPUTS:
    return check_tool_outputs(v, name, r);
  case V_FN:
    return f->fn(v, name, r);
  case V_EFFORT:
    if (cJSON_IsNull(v)) return 0;
    if (cJSON_IsString(v) && (strcmp(v->valuestring, "minimal") == 0 || strcmp(v->valuestring, "low") == 0 ||
                              strcmp(v->valuestring, "medium") == 0 || strcmp(v->valuestring, "high") == 0 ||
                              strcmp(v->valuestring, "none") == 0))
      return 0;
    SREQ_BAD(r, name, "invalid_value", "Invalid value for '%s': expected minimal, low, medium or high.", name);
    return -1;
  }
  return 0;
}

/* Check body against a field table: unknown keys, required keys (unless
 * partial, for updates), types.  prefix names nested objects in messages
 * ("thread.messages[0].role"). */
int sreq_check_fields(const cJSON *body, const sreq_field *fields, sapi_reply *r, const char *prefix, int partial) {
  char name[320];
  for (const cJSON *it = body->child; it; it = it->next) {
    const sreq_field *f = fields;
    while (f->name && strcmp(f->name, it->string) != 0) f++;
    snprintf(name, sizeof name, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", it->string);
    if (!f->name) {
      SREQ_BAD(r, name, "unknown_parameter", "Unknown parameter: '%s'.", name);
      return -1;
    }
    if (check_one(it, f, name, r)) return -1;
  }
  for (const sreq_field *f = fields; f->name; f++) {
    if (f->required && !partial && !cJSON_GetObjectItemCaseSensitive(body, f->name)) {
      snprintf(name, sizeof name, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", f->name);
      SREQ_BAD(r, name, "missing_required_parameter", "Missing required parameter: '%s'.", name);
      return -1;
    }
  }
  return 0;
}

/* Parse the body as a JSON object; an empty body is {} when allow_empty. */
cJSON *sreq_parse_body(const sapi_req *q, sapi_reply *r, int allow_empty) {
  if (q->body_too_big) {
    SREQ_BAD(r, NULL, NULL, "Request body too large.");
    return NULL;
  }
  size_t n = q->body_len;
  while (n && (q->body[n - 1] == ' ' || q->body[n - 1] == '\n' || q->body[n - 1] == '\r' || q->body[n - 1] == '\t')) n--;
  if (!n) {
    if (allow_empty) return cJSON_CreateObject();
    SREQ_BAD(r, NULL, NULL, "You must provide a JSON body.");
    return NULL;
  }
  const char *end = NULL;
  cJSON *o = cJSON_ParseWithLengthOpts(q->body, n, &end, 0);
  if (!o || end != q->body + n) {
    cJSON_Delete(o);
    SREQ_BAD(r, NULL, NULL,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
        "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)");
    return NULL;
  }
  if (!cJSON_IsObject(o)) {
    cJSON_Delete(o);
    SREQ_BAD(r, NULL, "invalid_type", "Invalid body: expected a JSON object.");
    return NULL;
  }
  return o;
}

/* ---- lists ------------------------------------------------------------ */


static int parse_cursor(const sapi_req *q, sapi_reply *r, const char *key, const slist *l, size_t *idx) {
  const char *id = q->arg(q->arg_cls, key);
  if (!id || !*id) return 0;
  sobj *o = sstore_find(id);
  if (o) {
    size_t i = slist_lower_bound(l, o->seq);
    if (i < l->n && l->v[i] == o) {
      *idx = i;
      return 1;
    }
  }
  SREQ_BAD(r, key, "invalid_value", "Invalid '%s': no object with id '%s' in this list.", key, id);
  return -1;
}

/* Reply with one page of l (store lock held).  Paging follows the API:
 * order asc|desc (default desc), limit 1..100 (default 20), after/before
 * cursors naming an object in the list. */
void sreq_list(const sapi_req *q, sapi_reply *r, const slist *l, sreq_filter filt, const void *fctx) {
  long limit = 20;
  const char *s = q->arg(q->arg_cls, "limit");
  if (s) {
    char *end;
    limit = strtol(s, &end, 10);
    if (!*s || *end || limit < 1 || limit > 100) {
      SREQ_BAD(r, "limit", "invalid_value", "Invalid 'limit': expected an integer between 1 and 100, but got '%s'.", s);
      return;
    }
  }
  int desc = 1;
  s = q->arg(q->arg_cls, "order");
  if (s) {
    if (strcmp(s, "asc") == 0) desc = 0;
    else if (strcmp(s, "desc") != 0) {
      SREQ_BAD(r, "order", "invalid_value", "Invalid value: '%s'. Supported values are: 'asc' and 'desc'.", s);
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
    sreq_json(r, 500, NULL);
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
  sreq_json(r, 200, o); /* references: deleting o leaves the objects */
}

void sreq_deleted(sapi_reply *r, const char *id, const char *object) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", id);
  cJSON_AddStringToObject(o, "object", object);
  cJSON_AddTrueToObject(o, "deleted");
  sreq_json(r, 200, o);
}

/* sim_conversations.c -- conversations, their items, and the conversation lock. */
#include "sim_conversations.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_req.h"
#include "sim_rtools.h"
#include "sim_stats.h"

/* Per-conversation state (sobj.ext). */
typedef struct conv_state {
  char locked_by[40]; /* response id, "" when free */
} conv_state;

static int is(const cJSON *v, const char *s) { return cJSON_IsString(v) && strcmp(v->valuestring, s) == 0; }

/* ---- validation of input items ------------------------------------------ */

static int check_parts(const cJSON *c, const char *name, sapi_reply *r) {
  if (cJSON_IsString(c)) return 0;
  if (!cJSON_IsArray(c)) return sreq_bad_type(r, name, "a string or an array", c);
  const cJSON *p;
  int i = 0;
  cJSON_ArrayForEach(p, c) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
    char pre[300];
    snprintf(pre, sizeof pre, "%s[%d]", name, i++);
    /* Images and files (sim_rtools.h). */
    if (cJSON_IsObject(p) && srt_is_media_part(p)) {
      if (srt_check_part(p, pre, r)) return -1;
      continue;
    }
    if (!cJSON_IsObject(p) || !(is(ty, "input_text") || is(ty, "output_text")) ||
        !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(p, "text"))) {
      SREQ_BAD(r, name, "invalid_value",
               "Invalid value for '%s': each part must be {type: input_text|output_text, text}, input_image or "
               "input_file.", name);
      return -1;
    }
  }
  return 0;
}

static const sreq_field message_fields[] = {
    {"type", V_STR, 0, 0, 0, NULL},
    {"id", V_STR_NULL, 0, 0, 0, NULL},
    {"status", V_STR_NULL, 0, 0, 0, NULL},
    {"role", V_STR, 1, 0, 0, NULL},
    {"content", V_FN, 1, 0, 0, check_parts},
    {NULL, 0, 0, 0, 0, NULL},
};

static const sreq_field fco_fields[] = {
    {"type", V_STR, 1, 0, 0, NULL},
    {"id", V_STR_NULL, 0, 0, 0, NULL},
    {"status", V_STR_NULL, 0, 0, 0, NULL},
    {"call_id", V_STR, 1, 0, 64, NULL},
    {"output", V_STR, 1, 0, 10485760, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const sreq_field fc_fields[] = {
    {"type", V_STR, 1, 0, 0, NULL},
    {"id", V_STR_NULL, 0, 0, 0, NULL},
    {"status", V_STR_NULL, 0, 0, 0, NULL},
    {"call_id", V_STR, 1, 0, 64, NULL},
    {"name", V_STR, 1, 0, 128, NULL},
    {"arguments", V_STR, 1, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

int sconv_check_items(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array", v);
  int i = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, v) {
    char pre[256];
    if (snprintf(pre, sizeof pre, "%s[%d]", name, i++) >= (int)sizeof pre) pre[sizeof pre - 1] = '\0';
    if (!cJSON_IsObject(it)) return sreq_bad_type(r, pre, "an object", it);
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(it, "type");
    const sreq_field *f = !ty || is(ty, "message")       ? message_fields
                          : is(ty, "function_call_output") ? fco_fields
                          : is(ty, "function_call")        ? fc_fields
                                                           : NULL;
    if (!f) {
      SREQ_BAD(r, pre, "invalid_value",
               "Invalid value for '%s.type': the simulator takes message, function_call and function_call_output "
               "items.", pre);
      return -1;
    }
    if (sreq_check_fields(it, f, r, pre, 0)) return -1;
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
    if (f == message_fields && !is(role, "user") && !is(role, "assistant") && !is(role, "system") &&
        !is(role, "developer")) {
      SREQ_BAD(r, pre, "invalid_value",
               "Invalid value: '%s'. Supported values are: 'user', 'assistant', 'system' and 'developer'.",
               role->valuestring);
      return -1;
    }
  }
  return 0;
}

/* ---- items -------------------------------------------------------------- */

cJSON *sconv_item_from_input(const cJSON *in, const char *id) {
  const cJSON *ty = cJSON_GetObjectItemCaseSensitive(in, "type");
  char made[40];
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  if (is(ty, "function_call_output") || is(ty, "function_call")) {
    int out = is(ty, "function_call_output");
    if (!id) sstore_make_id(out ? "fco_" : "fc_", made, sizeof made);
    cJSON_AddStringToObject(o, "type", ty->valuestring);
    cJSON_AddStringToObject(o, "id", id ? id : made);
    cJSON_AddItemToObject(o, "call_id", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(in, "call_id"), 1));
    if (out) {
      cJSON_AddItemToObject(o, "output", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(in, "output"), 1));
    } else {
      cJSON_AddItemToObject(o, "name", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(in, "name"), 1));
      cJSON_AddItemToObject(o, "arguments", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(in, "arguments"), 1));
    }
    cJSON_AddStringToObject(o, "status", "completed");
    return o;
  }
  /* A message: text parts become input_text (output_text for the
   * assistant's, which is how the API stores earlier answers). */
  if (!id) sstore_make_id("msg_", made, sizeof made);
  const char *role = cJSON_GetObjectItemCaseSensitive(in, "role")->valuestring;
  int asst = strcmp(role, "assistant") == 0;
  cJSON_AddStringToObject(o, "type", "message");
  cJSON_AddStringToObject(o, "id", id ? id : made);
  cJSON_AddStringToObject(o, "status", "completed");
  cJSON_AddStringToObject(o, "role", role);
  cJSON *content = cJSON_AddArrayToObject(o, "content");
  const cJSON *c = cJSON_GetObjectItemCaseSensitive(in, "content"), *p;
  cJSON *one = cJSON_IsString(c) ? cJSON_CreateArray() : NULL;
  if (one) {
    cJSON *part = cJSON_CreateObject();
    cJSON_AddStringToObject(part, "text", c->valuestring);
    cJSON_AddItemToArray(one, part);
    c = one;
  }
  cJSON_ArrayForEach(p, c) {
    if (srt_is_media_part(p)) {
      cJSON_AddItemToArray(content, srt_stored_part(p));
      continue;
    }
    cJSON *part = cJSON_CreateObject();
    cJSON_AddStringToObject(part, "type", asst ? "output_text" : "input_text");
    cJSON_AddItemToObject(part, "text", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(p, "text"), 1));
    if (asst) {
      cJSON_AddArrayToObject(part, "annotations");
      cJSON_AddArrayToObject(part, "logprobs");
    }
    cJSON_AddItemToArray(content, part);
  }
  cJSON_Delete(one);
  return o;
}

sobj *sconv_append(sobj *conv, const cJSON *item) {
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(item, "id");
  cJSON *copy = cJSON_Duplicate(item, 1);
  sobj *o = copy && cJSON_IsString(id) ? sstore_new_item(conv, "item_", id->valuestring) : NULL;
  if (!o) {
    cJSON_Delete(copy);
    return NULL;
  }
  cJSON_Delete(o->json);
  o->json = copy;
  return o;
}

void sconv_item_text(const cJSON *item, buf *out) {
  const cJSON *p;
  cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(item, "content")) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "text");
    if (cJSON_IsString(t) && (buf_appends(out, t->valuestring) != AW_OK || buf_appends(out, " ") != AW_OK)) return;
  }
}

/* ---- the lock ----------------------------------------------------------- */

const char *sconv_locked_by(sobj *conv) {
  conv_state *cs = conv->ext;
  if (!cs || !cs->locked_by[0]) return NULL;
  /* A response that was deleted, or ended without telling us, holds nothing. */
  sobj *resp = sstore_get(cs->locked_by, SK_RESP);
  const cJSON *st = resp ? cJSON_GetObjectItemCaseSensitive(resp->json, "status") : NULL;
  if (!is(st, "queued") && !is(st, "in_progress")) {
    cs->locked_by[0] = '\0';
    return NULL;
  }
  return cs->locked_by;
}

void sconv_lock(sobj *conv, const char *resp_id) {
  conv_state *cs = conv->ext;
  if (cs) snprintf(cs->locked_by, sizeof cs->locked_by, "%s", resp_id);
}

void sconv_unlock(sobj *conv, const char *holder) {
  conv_state *cs = conv->ext;
  if (cs && strcmp(cs->locked_by, holder) == 0) cs->locked_by[0] = '\0';
}

/* ---- handlers ----------------------------------------------------------- */

static const sreq_field create_fields[] = {
    {"metadata", V_META, 0, 0, 0, NULL},
    {"items", V_FN, 0, 0, 0, sconv_check_items},
    {NULL, 0, 0, 0, 0, NULL},
};

static const sreq_field update_fields[] = {
    {"metadata", V_META, 1, 0, 0, NULL},
    {NULL, 0, 0, 0, 0, NULL},
};

static const sreq_field items_fields[] = {
    {"items", V_FN, 1, 0, 0, sconv_check_items},
    {NULL, 0, 0, 0, 0, NULL},
};

static int too_many(const cJSON *items, sapi_reply *r) {
  if (cJSON_GetArraySize(items) <= SCONV_MAX_ITEMS_PER_REQUEST) return 0;
  SREQ_BAD(r, "items", "array_above_max_length",
           "Invalid 'items': array too long. Expected an array with maximum length %d.", SCONV_MAX_ITEMS_PER_REQUEST);
  return -1;
}

/* Append validated input items to conv; on ENOMEM the ones added stay
 * (the caller answers 500, as a real partial failure would). */
static int add_inputs(sobj *conv, const cJSON *items, cJSON *added) {
  const cJSON *in;
  cJSON_ArrayForEach(in, items) {
    cJSON *it = sconv_item_from_input(in, NULL);
    sobj *o = it ? sconv_append(conv, it) : NULL;
    cJSON_Delete(it);
    if (!o) return AW_ENOMEM;
    if (added) cJSON_AddItemReferenceToArray(added, o->json);
  }
  return AW_OK;
}

static void conv_create(const sapi_req *q, sapi_reply *r) {
  cJSON *body = sreq_parse_body(q, r, 1);
  if (!body) return;
  const cJSON *items = cJSON_GetObjectItemCaseSensitive(body, "items");
  if (sreq_check_fields(body, create_fields, r, NULL, 0) == 0 && too_many(items, r) == 0) {
    sstore_lock();
    sobj *c = sstore_new(SK_CONV, NULL);
    conv_state *cs = c ? calloc(1, sizeof *cs) : NULL;
    if (cs) {
      c->ext = cs;
      c->ext_free = free;
      const cJSON *meta = cJSON_GetObjectItemCaseSensitive(body, "metadata");
      cJSON_AddItemToObject(c->json, "metadata", cJSON_IsObject(meta) ? cJSON_Duplicate(meta, 1) : cJSON_CreateObject());
    }
    if (cs && add_inputs(c, items, NULL) == AW_OK) {
      sreq_obj(r, c->json);
    } else {
      if (c) sstore_delete(c);
      sreq_json(r, 500, NULL);
    }
    sstore_unlock();
  }
  cJSON_Delete(body);
}

static void items_create(const sapi_req *q, sapi_reply *r, sobj *c) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  const cJSON *items = cJSON_GetObjectItemCaseSensitive(body, "items");
  if (sreq_check_fields(body, items_fields, r, NULL, 0) == 0 && too_many(items, r) == 0) {
    cJSON *page = cJSON_CreateObject();
    cJSON_AddStringToObject(page, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(page, "data");
    if (add_inputs(c, items, data) != AW_OK) {
      cJSON_Delete(page);
      sreq_json(r, 500, NULL);
    } else {
      int n = cJSON_GetArraySize(data);
      const cJSON *first = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0), "id");
      const cJSON *last = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, n - 1), "id");
      cJSON_AddStringToObject(page, "first_id", n ? first->valuestring : "");
      cJSON_AddStringToObject(page, "last_id", n ? last->valuestring : "");
      cJSON_AddFalseToObject(page, "has_more");
      sreq_json(r, 200, page); /* references: the items stay */
    }
  }
  cJSON_Delete(body);
}

void sconv_handle(const sapi_req *q, sapi_reply *r, char s[][64]) {
  if (r->route == SR_CONV_CREATE) {
    conv_create(q, r);
    return;
  }
  cJSON *body = NULL;
  if (r->route == SR_CONV_UPDATE) {
    body = sreq_parse_body(q, r, 0);
    if (!body) return;
    if (sreq_check_fields(body, update_fields, r, NULL, 0)) {
      cJSON_Delete(body);
      return;
    }
  }
  sstore_lock();
  sobj *c = sstore_get(s[2], SK_CONV), *it;
  if (!c) {
    sreq_not_found(r, "conversation", s[2]);
  } else if (r->route == SR_CONV_GET) {
    sreq_obj(r, c->json);
  } else if (r->route == SR_CONV_UPDATE) {
    jset(c->json, "metadata", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(body, "metadata"), 1));
    sreq_obj(r, c->json);
  } else if (r->route == SR_CONV_DELETE) {
    sstore_delete(c);
    sreq_deleted(r, s[2], "conversation.deleted");
  } else if (r->route == SR_CITEM_LIST) {
    /* listConversationItems takes limit, order and after (and include):
     * unlike the Assistants lists, no `before`.  Refused rather than
     * served, so that a client relying on it fails here and not at the API. */
    if (q->arg(q->arg_cls, "before"))
      SREQ_BAD(r, "before", "unknown_parameter", "Unknown parameter: 'before'.");
    else
      sreq_list(q, r, &c->kids, NULL, NULL);
  } else if (r->route == SR_CITEM_CREATE) {
    items_create(q, r, c);
  } else if (!(it = sstore_get(s[4], SK_ITEM)) || it->parent != c) {
    sreq_not_found(r, "item", s[4]);
  } else if (r->route == SR_CITEM_GET) {
    sreq_obj(r, it->json);
  } else { /* SR_CITEM_DELETE answers with the conversation */
    sstore_delete(it);
    sreq_obj(r, c->json);
  }
  sstore_unlock();
  cJSON_Delete(body);
}

void sconv_admin(sapi_reply *r, const char *id) {
  sstore_lock();
  sobj *c = sstore_get(id, SK_CONV);
  if (!c) {
    sstore_unlock();
    sreq_not_found(r, "conversation", id);
    return;
  }
  int user = 0, asst = 0, fc = 0, fco = 0;
  for (size_t i = 0; i < c->kids.n; i++) {
    const cJSON *j = c->kids.v[i]->json, *ty = cJSON_GetObjectItemCaseSensitive(j, "type");
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(j, "role");
    if (is(ty, "message")) user += is(role, "user"), asst += is(role, "assistant");
    else if (is(ty, "function_call")) fc++;
    else if (is(ty, "function_call_output")) fco++;
  }
  const char *lock = sconv_locked_by(c);
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "id", c->id);
  cJSON_AddNumberToObject(o, "items", (double)c->kids.n);
  cJSON_AddNumberToObject(o, "user_messages", user);
  cJSON_AddNumberToObject(o, "assistant_messages", asst);
  cJSON_AddNumberToObject(o, "function_calls", fc);
  cJSON_AddNumberToObject(o, "function_call_outputs", fco);
  cJSON_AddItemToObject(o, "locked_by", lock ? cJSON_CreateString(lock) : cJSON_CreateNull());
  sstore_unlock();
  sreq_json(r, 200, o);
}

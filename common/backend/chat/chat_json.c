/* chat_json.c -- what the Chat Completions backend writes and reads as JSON
 * (see chat_int.h): the assistant's tools, messages, request bodies and the
 * stored turn records.  Pure: no I/O, no globals.
 *
 * Messages are built in the shape every server accepts: strings where the
 * spec also allows arrays or null (llama.cpp answers HTTP 500 to an
 * assistant message with content null, and to content arrays on assistant
 * and tool messages), and nothing the spec does not name (servers reject
 * unknown fields; our own bookkeeping sits beside the messages in the
 * record, never inside them).
 */
#include "chat_int.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

const cJSON *chat_get(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

const char *chat_get_str(const cJSON *o, const char *k) {
  const cJSON *v = chat_get(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int str_is(const char *s, const char *lit) { return s && !strcmp(s, lit); }

/* Add a copy of s under k; 0 when out of memory. */
static int add_str(cJSON *o, const char *k, const char *s) { return cJSON_AddStringToObject(o, k, s) != NULL; }

/* Add item under k, taking it (deleted on failure); 0 when out of memory. */
static int add_item(cJSON *o, const char *k, cJSON *item) {
  if (!item) return 0;
  if (!cJSON_AddItemToObject(o, k, item)) {
    cJSON_Delete(item);
    return 0;
  }
  return 1;
}

static int push(cJSON *arr, cJSON *item) {
  if (!item) return 0;
  if (!cJSON_AddItemToArray(arr, item)) {
    cJSON_Delete(item);
    return 0;
  }
  return 1;
}

/* ==== the assistant's definition ================================================= */

int chat_json_tools(const char *tools_json, cJSON **out, char *err, size_t errn) {
  *out = NULL;
  if (!tools_json) return AW_OK;
  cJSON *in = cJSON_Parse(tools_json);
  if (!cJSON_IsArray(in)) {
    cJSON_Delete(in);
    return aw_seterr(AW_EINVAL, err, errn, "tools is not a JSON array of tool definitions");
  }
  int i = 0, rc = AW_OK;
  const cJSON *t;
  cJSON_ArrayForEach(t, in) {
    const char *ty = chat_get_str(t, "type");
    const char *name = chat_get_str(chat_get(t, "function"), "name");
    if (!str_is(ty, "function")) {
      rc = aw_seterr(AW_EINVAL, err, errn,
                     "tool %d has type %s: the chat backend serves function tools only (hosted tools "
                     "such as code_interpreter and file_search need the responses or assistants backend)",
                     i, ty ? ty : "(none)");
      break;
    }
    if (!name || !name[0]) {
      rc = aw_seterr(AW_EINVAL, err, errn, "tool %d is a function without a name", i);
      break;
    }
    i++;
  }
  if (rc || i == 0) {
    cJSON_Delete(in);
    return rc;
  }
  /* The Assistants shape of a function tool is the Chat shape: kept as is. */
  *out = in;
  return AW_OK;
}

int chat_json_tool_choice(const char *tool_choice_json, cJSON **out, char *err, size_t errn) {
  *out = NULL;
  if (!tool_choice_json) return AW_OK;
  cJSON *in = cJSON_Parse(tool_choice_json), *o = NULL;
  int rc = AW_EINVAL;
  if (cJSON_IsString(in)) {
    const char *v = in->valuestring;
    if (str_is(v, "auto") || str_is(v, "required") || str_is(v, "none")) {
      o = cJSON_CreateString(v);
      rc = o ? AW_OK : AW_ENOMEM;
    }
  } else if (cJSON_IsObject(in)) {
    const char *name = chat_get_str(chat_get(in, "function"), "name"); /* Assistants / Chat shape */
    if (!name) name = chat_get_str(in, "name");                         /* Responses shape */
    if (str_is(chat_get_str(in, "type"), "function") && name && name[0]) {
      cJSON *fn = NULL;
      o = cJSON_CreateObject();
      rc = o && add_str(o, "type", "function") && add_item(o, "function", fn = cJSON_CreateObject()) &&
                   add_str(fn, "name", name)
               ? AW_OK
               : AW_ENOMEM;
    }
  }
  cJSON_Delete(in);
  if (rc) {
    cJSON_Delete(o);
    if (rc == AW_EINVAL)
      aw_seterr(rc, err, errn, "tool_choice must be \"auto\", \"required\", \"none\" or "
                               "{\"type\":\"function\",\"function\":{\"name\":...}}");
    return rc;
  }
  *out = o;
  return AW_OK;
}

int chat_json_system(const be_turn_input *in, char **out) {
  *out = NULL;
  /* The request's instructions replace the assistant's; additional ones are
   * appended, as the Assistants API did with additional_instructions. */
  const char *base = in->instructions ? in->instructions : in->assistant ? in->assistant->instructions : NULL;
  const char *add = in->additional_instructions;
  if (base && !base[0]) base = NULL;
  if (add && !add[0]) add = NULL;
  if (!base && !add) return AW_OK;
  size_t n = (base ? strlen(base) : 0) + (add ? strlen(add) : 0) + 3;
  char *s = malloc(n);
  if (!s) return AW_ENOMEM;
  snprintf(s, n, "%s%s%s", base ? base : "", base && add ? "\n\n" : "", add ? add : "");
  *out = s;
  return AW_OK;
}

/* ==== messages ========================================================================= */

char *chat_data_url(const contract_part *p) {
  if (!p->data || !p->data_len || !p->media_type || p->data_len > (size_t)INT_MAX / 4 * 3 - 3) return NULL;
  size_t mt = strlen(p->media_type), b64 = 4 * ((p->data_len + 2) / 3);
  char *s = malloc(5 + mt + 8 + b64 + 1);
  if (!s) return NULL;
  size_t k = (size_t)sprintf(s, "data:%s;base64,", p->media_type);
  int n = EVP_EncodeBlock((unsigned char *)s + k, p->data, (int)p->data_len);
  if (n < 0) {
    free(s);
    return NULL;
  }
  s[k + (size_t)n] = '\0';
  return s;
}

int chat_msgs_strip_images(cJSON *msgs) {
  int n = 0;
  cJSON *m;
  cJSON_ArrayForEach(m, msgs) {
    if (!str_is(chat_get_str(m, "role"), "user")) continue;
    cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content"), *p;
    if (!cJSON_IsArray(content)) continue;
    cJSON_ArrayForEach(p, content) {
      if (!str_is(chat_get_str(p, "type"), "image_url")) continue;
      cJSON *t = cJSON_CreateString("text"), *x = cJSON_CreateString(CHAT_IMAGE_PLACEHOLDER);
      if (!t || !x) {
        cJSON_Delete(t);
        cJSON_Delete(x);
        return AW_ENOMEM;
      }
      cJSON_DeleteItemFromObjectCaseSensitive(p, "image_url");
      cJSON_ReplaceItemInObjectCaseSensitive(p, "type", t);
      cJSON_AddItemToObject(p, "text", x);
      n++;
    }
  }
  return n;
}

int chat_json_user_message(const contract_part *parts, size_t nparts, cJSON **out, const char **unsupported) {
  *out = NULL;
  if (unsupported) *unsupported = NULL;
  if (!parts || !nparts) return AW_EINVAL;
  int images = 0;
  size_t total = 0;
  for (size_t i = 0; i < nparts; i++) {
    switch (parts[i].type) {
    case CONTRACT_PART_TEXT:
      if (!parts[i].text) return AW_EINVAL;
      total += strlen(parts[i].text) + 2;
      break;
    case CONTRACT_PART_IMAGE_URL:
      if (!parts[i].text) return AW_EINVAL;
      images = 1;
      break;
    case CONTRACT_PART_IMAGE_FILE:
      if (parts[i].data && parts[i].data_len && parts[i].media_type) {
        images = 1; /* inline: sent as a data: URL */
        break;
      }
      if (unsupported) *unsupported = "image_file"; /* by file id: a chat server has no files */
      return AW_EINVAL;
    case CONTRACT_PART_FILE:
      if (unsupported) *unsupported = parts[i].type == CONTRACT_PART_FILE ? "file" : "image_file";
      return AW_EINVAL;
    default:
      return AW_EINVAL;
    }
  }
  cJSON *m = cJSON_CreateObject();
  int ok = m && add_str(m, "role", "user");
  if (ok && !images) {
    /* Text only: one string, the form every server takes. */
    char *s = malloc(total + 1);
    size_t k = 0;
    ok = s != NULL;
    for (size_t i = 0; ok && i < nparts; i++) {
      size_t l = strlen(parts[i].text);
      if (k) {
        memcpy(s + k, "\n\n", 2);
        k += 2;
      }
      memcpy(s + k, parts[i].text, l);
      k += l;
    }
    if (ok) {
      s[k] = '\0';
      ok = add_str(m, "content", s);
    }
    free(s);
  } else if (ok) {
    cJSON *arr = cJSON_CreateArray();
    ok = add_item(m, "content", arr);
    for (size_t i = 0; ok && i < nparts; i++) {
      cJSON *p = cJSON_CreateObject();
      ok = push(arr, p);
      if (ok && parts[i].type == CONTRACT_PART_TEXT) {
        ok = add_str(p, "type", "text") && add_str(p, "text", parts[i].text);
      } else if (ok) {
        cJSON *iu = NULL;
        char *url = parts[i].type == CONTRACT_PART_IMAGE_FILE ? chat_data_url(&parts[i]) : NULL;
        ok = (parts[i].type != CONTRACT_PART_IMAGE_FILE || url) && add_str(p, "type", "image_url") &&
             add_item(p, "image_url", iu = cJSON_CreateObject()) &&
             add_str(iu, "url", url ? url : parts[i].text) &&
             (!parts[i].detail || add_str(iu, "detail", parts[i].detail));
        free(url);
      }
    }
  }
  if (!ok) {
    cJSON_Delete(m);
    return AW_ENOMEM;
  }
  *out = m;
  return AW_OK;
}

int chat_json_assistant_message(const char *text, const be_tool_call *calls, size_t n, cJSON **out) {
  *out = NULL;
  cJSON *m = cJSON_CreateObject(), *arr = NULL;
  int ok = m && add_str(m, "role", "assistant") && add_str(m, "content", text ? text : "");
  if (ok && n) ok = add_item(m, "tool_calls", arr = cJSON_CreateArray());
  for (size_t i = 0; ok && i < n; i++) {
    cJSON *c = cJSON_CreateObject(), *fn = NULL;
    ok = push(arr, c) && add_str(c, "id", calls[i].id) && add_str(c, "type", "function") &&
         add_item(c, "function", fn = cJSON_CreateObject()) && add_str(fn, "name", calls[i].name) &&
         add_str(fn, "arguments", calls[i].arguments ? calls[i].arguments : "");
  }
  if (!ok) {
    cJSON_Delete(m);
    return AW_ENOMEM;
  }
  *out = m;
  return AW_OK;
}

int chat_json_tool_message(const char *call_id, const char *output, cJSON **out) {
  *out = NULL;
  cJSON *m = cJSON_CreateObject();
  if (!m || !add_str(m, "role", "tool") || !add_str(m, "tool_call_id", call_id) ||
      !add_str(m, "content", output ? output : "")) {
    cJSON_Delete(m);
    return AW_ENOMEM;
  }
  *out = m;
  return AW_OK;
}

static const cJSON *calls_of(const cJSON *m) {
  const cJSON *tc = chat_get(m, "tool_calls");
  return str_is(chat_get_str(m, "role"), "assistant") && cJSON_GetArraySize(tc) > 0 ? tc : NULL;
}

int chat_msgs_rounds(const cJSON *msgs) {
  int n = 0;
  const cJSON *m;
  cJSON_ArrayForEach(m, msgs) if (calls_of(m)) n++;
  return n;
}

int chat_msgs_open_calls(const cJSON *msgs, be_tool_call *calls, size_t max, size_t *n) {
  *n = 0;
  const cJSON *last = cJSON_IsArray(msgs) ? cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1) : NULL;
  const cJSON *tc = calls_of(last), *c;
  if (!tc) return AW_OK;
  size_t k = 0;
  cJSON_ArrayForEach(c, tc) {
    const cJSON *fn = chat_get(c, "function");
    const char *id = chat_get_str(c, "id"), *name = chat_get_str(fn, "name");
    const char *args = chat_get_str(fn, "arguments");
    if (!id || !id[0] || !name || !name[0]) return AW_EPARSE;
    if (!calls) {
      k++; /* counting */
      continue;
    }
    if (k >= max) return AW_ETOOBIG;
    calls[k].id = id;
    calls[k].name = name;
    calls[k].arguments = args ? args : "";
    k++;
  }
  *n = k;
  return AW_OK;
}

chat_pending_at chat_pending_where(const cJSON *msgs, long round, char *why, size_t n) {
  size_t open = 0;
  int rc = chat_msgs_open_calls(msgs, NULL, 0, &open);
  int r = chat_msgs_rounds(msgs);
  if (!rc && open && r == round) return CHAT_PENDING_ANSWER;
  if (!rc && open && r > round) return CHAT_PENDING_LATER;
  snprintf(why, n, "the pending turn is at round %d and waits for %zu output(s)%s", r, open,
           rc ? ", its calls unreadable" : "");
  return CHAT_PENDING_LOST;
}

int chat_msgs_add_outputs(cJSON *msgs, const char *const *ids, const char *const *texts, size_t nouts) {
  const cJSON *last = cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1);
  const cJSON *tc = calls_of(last), *c;
  if (!tc) return AW_EINVAL;
  /* The tool messages go after `last`: the calls array stays where it is. */
  cJSON_ArrayForEach(c, tc) {
    const char *id = chat_get_str(c, "id"), *out = NULL;
    if (!id) return AW_EINVAL;
    for (size_t k = 0; k < nouts && !out; k++)
      if (!strcmp(ids[k], id)) out = texts[k];
    cJSON *tm = NULL;
    int rc = chat_json_tool_message(id, out ? out : "no output", &tm);
    if (rc) return rc;
    if (!cJSON_AddItemToArray(msgs, tm)) {
      cJSON_Delete(tm);
      return AW_ENOMEM;
    }
  }
  return AW_OK;
}

const char *chat_msgs_final_text(const cJSON *msgs) {
  const cJSON *last = cJSON_IsArray(msgs) ? cJSON_GetArrayItem(msgs, cJSON_GetArraySize(msgs) - 1) : NULL;
  if (!str_is(chat_get_str(last, "role"), "assistant") || calls_of(last)) return NULL;
  const char *s = chat_get_str(last, "content");
  return s ? s : "";
}

int chat_json_body(const char *model, const cJSON *messages, const cJSON *tools, const cJSON *choice,
                   long max_tokens, char **out) {
  *out = NULL;
  cJSON *j = cJSON_CreateObject(), *so = NULL;
  /* References: the body is printed once and the trees stay the caller's. */
  int ok = j && add_str(j, "model", model) && cJSON_AddItemReferenceToObject(j, "messages", (cJSON *)messages) &&
           cJSON_AddTrueToObject(j, "stream") && add_item(j, "stream_options", so = cJSON_CreateObject()) &&
           cJSON_AddTrueToObject(so, "include_usage") &&
           (!tools || cJSON_AddItemReferenceToObject(j, "tools", (cJSON *)tools)) &&
           (!choice || cJSON_AddItemReferenceToObject(j, "tool_choice", (cJSON *)choice)) &&
           /* max_tokens, not max_completion_tokens: llama.cpp ignores the newer name. */
           (max_tokens <= 0 || cJSON_AddNumberToObject(j, "max_tokens", (double)max_tokens));
  char *s = ok ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  if (!s) return AW_ENOMEM;
  *out = s;
  return AW_OK;
}

/* ==== stored turn records =================================================================== */

/* "u" / "ul": [prompt, completion, cached, reasoning]; anything else is none. */
static void usage_parse(const cJSON *a, contract_usage *u) {
  memset(u, 0, sizeof *u);
  if (cJSON_GetArraySize(a) != 4) return;
  int64_t v[4];
  for (int i = 0; i < 4; i++) {
    const cJSON *x = cJSON_GetArrayItem(a, i);
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= 0 && x->valuedouble < 9.0e15)) return;
    v[i] = (int64_t)x->valuedouble;
  }
  u->present = 1;
  u->prompt_tokens = v[0];
  u->completion_tokens = v[1];
  u->total_tokens = v[0] + v[1];
  u->cached_tokens = v[2];
  u->reasoning_tokens = v[3];
}

static int usage_add_json(cJSON *j, const char *k, const contract_usage *u) {
  if (!u->present) return 1;
  cJSON *a = cJSON_AddArrayToObject(j, k);
  const double v[4] = {(double)u->prompt_tokens, (double)u->completion_tokens, (double)u->cached_tokens,
                       (double)u->reasoning_tokens};
  for (int i = 0; a && i < 4; i++) {
    cJSON *x = cJSON_CreateNumber(v[i]);
    if (!x || !cJSON_AddItemToArray(a, x)) {
      cJSON_Delete(x);
      return 0;
    }
  }
  return a != NULL;
}

int chat_record_parse(const char *text, size_t len, chat_record *r) {
  memset(r, 0, sizeof *r);
  r->gen = -1;
  if (!text) return AW_EPARSE;
  cJSON *root = cJSON_ParseWithLength(text, len);
  const char *e = chat_get_str(root, "e");
  const cJSON *m = chat_get(root, "m"), *x;
  int ok = e && cJSON_IsArray(m);
  cJSON_ArrayForEach(x, m) if (!chat_get_str(x, "role")) ok = 0;
  if (!ok) {
    cJSON_Delete(root);
    return AW_EPARSE;
  }
  r->root = root;
  r->event_id = e;
  r->msgs = m;
  const cJSON *g = chat_get(root, "g");
  if (cJSON_IsNumber(g) && g->valuedouble >= 0 && g->valuedouble < CHAT_GEN_MAX) r->gen = (int)g->valuedouble;
  r->id = chat_get_str(root, "i");
  r->status = chat_get_str(root, "s");
  r->error_code = chat_get_str(root, "ec");
  usage_parse(chat_get(root, "u"), &r->u);
  usage_parse(chat_get(root, "ul"), &r->ul);
  const cJSON *t = chat_get(root, "t");
  if (cJSON_IsNumber(t) && t->valuedouble > 0 && t->valuedouble < 1e11) r->at = (int64_t)t->valuedouble;
  return AW_OK;
}

void chat_record_free(chat_record *r) {
  cJSON_Delete(r->root);
  memset(r, 0, sizeof *r);
  r->gen = -1;
}

int chat_record_format(const chat_record *r, char **out, size_t *len) {
  *out = NULL;
  *len = 0;
  if (!r->event_id || !cJSON_IsArray(r->msgs)) return AW_EINVAL;
  cJSON *j = cJSON_CreateObject();
  int ok = j && add_str(j, "e", r->event_id) && cJSON_AddItemReferenceToObject(j, "m", (cJSON *)r->msgs) &&
           (r->gen < 0 || cJSON_AddNumberToObject(j, "g", r->gen)) && (!r->id || add_str(j, "i", r->id)) &&
           (!r->status || add_str(j, "s", r->status)) && (!r->error_code || add_str(j, "ec", r->error_code)) &&
           usage_add_json(j, "u", &r->u) && usage_add_json(j, "ul", &r->ul) &&
           (r->at <= 0 || cJSON_AddNumberToObject(j, "t", (double)r->at));
  char *s = ok ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  if (!s) return AW_ENOMEM;
  *out = s;
  *len = strlen(s);
  return AW_OK;
}

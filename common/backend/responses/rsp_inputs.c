/* rsp_inputs.c -- what a turn sends besides text: images, attached files,
 * the include list, and the one error that names a sent file (see
 * rsp_int.h).
 *
 * Why a module of its own: rsp_json.c builds the request around the
 * input; what the input carries when it is more than text follows rules of
 * its own that the recovery path has to mirror (a lookup recognises our
 * input among the conversation's items by comparing what was sent with
 * what is stored), so both directions live here:
 *
 *   images       IMAGE_URL  -> {"type":"input_image","image_url":url,"detail":d}
 *                IMAGE_FILE -> {"type":"input_image","file_id":id,"detail":d}
 *                (detail is required by the spec: "auto" when the request
 *                gave none; inline bytes were uploaded by the worker, so
 *                the backend only ever sees file ids)
 *   attachments  file_search      -> {"type":"input_file","file_id":id} parts
 *                                    after the message's own parts
 *                code_interpreter -> the code_interpreter tool's
 *                                    container {"type":"auto","file_ids":[..]}
 *                                    (the tool is added when the assistant
 *                                    lacks it; an "auto" container gets the
 *                                    ids merged; an explicit container id
 *                                    cannot take files through the request:
 *                                    those are counted as unplaced and the
 *                                    turn logs them)
 *   include      ["file_search_call.results","code_interpreter_call.outputs"]
 *                when the request asked for steps (IncludeEnum of the spec;
 *                nothing was sent before steps existed)
 *
 * The tools carry the attachments on every round of a turn (a continuation
 * is a new response: without the tool its model could not go on running
 * code on the files); the user message, and so the input_file parts, only
 * on the first.
 *
 * A message that is one text part and nothing else still goes as a plain
 * string (rsp_json_user_input): requests without files are unchanged.
 *
 * Pure (no I/O), like rsp_json.c.
 */
#include "rsp_int.h"

#include <stdio.h>
#include <string.h>

static const cJSON *get(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *get_str(const cJSON *o, const char *k) {
  const cJSON *v = get(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int str_is(const char *s, const char *lit) { return s && strcmp(s, lit) == 0; }

/* ==== the user message ===================================================== */

static int add_part(cJSON *content, const char *type, const char *k1, const char *v1, const char *k2,
                    const char *v2) {
  cJSON *p = cJSON_CreateObject();
  if (!p || !cJSON_AddItemToArray(content, p)) {
    cJSON_Delete(p);
    return AW_ENOMEM;
  }
  if (!cJSON_AddStringToObject(p, "type", type) || !cJSON_AddStringToObject(p, k1, v1) ||
      (k2 && !cJSON_AddStringToObject(p, k2, v2)))
    return AW_ENOMEM;
  return AW_OK;
}

static int detail_ok(const char *d) {
  return !d || str_is(d, "auto") || str_is(d, "low") || str_is(d, "high");
}

int rsp_input_user(const be_turn_input *in, cJSON **out) {
  *out = NULL;
  if (!in->parts || !in->nparts || (in->nattachments && !in->attachments)) return AW_EINVAL;
  int rich = 0;
  for (size_t i = 0; i < in->nparts; i++) rich |= in->parts[i].type != CONTRACT_PART_TEXT;
  for (size_t i = 0; i < in->nattachments; i++) {
    const contract_attachment *a = &in->attachments[i];
    /* The worker uploads inline attachments before the turn: an id is due. */
    if (!a->file_id || !a->file_id[0]) return AW_EINVAL;
    rich |= (a->tools & CONTRACT_ATT_FILE_SEARCH) != 0;
  }
  if (!rich) return rsp_json_user_input(in->parts, in->nparts, out);
  cJSON *arr = cJSON_CreateArray(), *msg = cJSON_CreateObject(), *content = NULL;
  int ok = arr && msg && cJSON_AddItemToArray(arr, msg);
  if (!ok) cJSON_Delete(msg);
  ok = ok && cJSON_AddStringToObject(msg, "type", "message") && cJSON_AddStringToObject(msg, "role", "user") &&
       (content = cJSON_AddArrayToObject(msg, "content"));
  int rc = ok ? AW_OK : AW_ENOMEM;
  for (size_t i = 0; !rc && i < in->nparts; i++) {
    const contract_part *p = &in->parts[i];
    const char *detail = p->detail ? p->detail : "auto";
    if (!p->text || !p->text[0] || !detail_ok(p->detail)) {
      rc = AW_EINVAL; /* an image without its url / id, an unknown detail */
      break;
    }
    switch (p->type) {
    case CONTRACT_PART_TEXT: rc = add_part(content, "input_text", "text", p->text, NULL, NULL); break;
    case CONTRACT_PART_IMAGE_URL: rc = add_part(content, "input_image", "image_url", p->text, "detail", detail); break;
    case CONTRACT_PART_IMAGE_FILE: rc = add_part(content, "input_image", "file_id", p->text, "detail", detail); break;
    default: rc = AW_EINVAL; /* file parts: refused by the worker (unsupported_content) */
    }
  }
  for (size_t i = 0; !rc && i < in->nattachments; i++)
    if (in->attachments[i].tools & CONTRACT_ATT_FILE_SEARCH)
      rc = add_part(content, "input_file", "file_id", in->attachments[i].file_id, NULL, NULL);
  if (rc) {
    cJSON_Delete(arr);
    return rc;
  }
  *out = arr;
  return AW_OK;
}

/* ==== the code interpreter's files =========================================== */

static int add_ids(cJSON *container, const contract_attachment *atts, size_t n) {
  cJSON *ids = cJSON_GetObjectItemCaseSensitive(container, "file_ids"), *t;
  if (!cJSON_IsArray(ids)) {
    cJSON_DeleteItemFromObjectCaseSensitive(container, "file_ids");
    if (!(ids = cJSON_AddArrayToObject(container, "file_ids"))) return AW_ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    if (!(atts[i].tools & CONTRACT_ATT_CODE_INTERPRETER)) continue;
    int have = 0;
    cJSON_ArrayForEach(t, ids) have |= cJSON_IsString(t) && !strcmp(t->valuestring, atts[i].file_id);
    if (!have && !cJSON_AddItemToArray(ids, cJSON_CreateString(atts[i].file_id))) return AW_ENOMEM;
  }
  return AW_OK;
}

int rsp_input_code_files(cJSON **tools, const contract_attachment *atts, size_t n, size_t *unplaced) {
  *unplaced = 0;
  size_t want = 0;
  for (size_t i = 0; i < n; i++)
    if (atts[i].tools & CONTRACT_ATT_CODE_INTERPRETER) {
      if (!atts[i].file_id || !atts[i].file_id[0]) return AW_EINVAL;
      want++;
    }
  if (!want) return AW_OK;
  if (!*tools && !(*tools = cJSON_CreateArray())) return AW_ENOMEM;
  cJSON *ci = NULL, *t;
  cJSON_ArrayForEach(t, *tools) if (!ci && str_is(get_str(t, "type"), "code_interpreter")) ci = t;
  if (!ci) {
    ci = cJSON_CreateObject();
    if (!ci || !cJSON_AddItemToArray(*tools, ci)) {
      cJSON_Delete(ci);
      return AW_ENOMEM;
    }
    if (!cJSON_AddStringToObject(ci, "type", "code_interpreter")) return AW_ENOMEM;
  }
  cJSON *c = cJSON_GetObjectItemCaseSensitive(ci, "container");
  if (!c) {
    if (!(c = cJSON_AddObjectToObject(ci, "container")) || !cJSON_AddStringToObject(c, "type", "auto"))
      return AW_ENOMEM;
  }
  if (!cJSON_IsObject(c) || !str_is(get_str(c, "type"), "auto")) {
    /* A container named by id ("cntr_..."): its files are managed at the
     * Containers API, not by this request. */
    *unplaced = want;
    return AW_OK;
  }
  return add_ids(c, atts, n);
}

int rsp_input_include(cJSON *body) {
  static const char *const inc[] = {"file_search_call.results", "code_interpreter_call.outputs"};
  cJSON_DeleteItemFromObjectCaseSensitive(body, "include");
  cJSON *arr = cJSON_CreateStringArray(inc, 2);
  if (!arr || !cJSON_AddItemToObject(body, "include", arr)) {
    cJSON_Delete(arr);
    return AW_ENOMEM;
  }
  return AW_OK;
}

/* ==== recognising what was sent ================================================ */

int rsp_input_same_part(const cJSON *stored, const cJSON *sent) {
  const char *wt = get_str(sent, "text");
  if (wt) return str_is(get_str(stored, "text"), wt);
  /* Images and files: the same kind, and the same file or url wherever the
   * server shows them (image urls are listed only with include
   * message.input_image.image_url, so an absent one does not disagree). */
  if (!str_is(get_str(stored, "type"), get_str(sent, "type"))) return 0;
  const char *keys[] = {"file_id", "image_url"};
  for (size_t i = 0; i < 2; i++) {
    const char *s = get_str(stored, keys[i]), *w = get_str(sent, keys[i]);
    if (w && s && strcmp(s, w) != 0) return 0;
  }
  return 1;
}

/* ==== an error naming a file we sent ============================================ */

static int names(const char *msg, const char *id) {
  return id && id[0] && msg && strstr(msg, id) != NULL;
}

/* Does msg name one of the file ids req carries (input parts, code
 * interpreter file_ids)? */
static int names_sent_file(const cJSON *req, const char *msg) {
  const cJSON *it, *p, *t, *id;
  cJSON_ArrayForEach(it, get(req, "input")) cJSON_ArrayForEach(p, get(it, "content")) {
    if (names(msg, get_str(p, "file_id"))) return 1;
  }
  cJSON_ArrayForEach(t, get(req, "tools")) cJSON_ArrayForEach(id, get(get(t, "container"), "file_ids")) {
    if (cJSON_IsString(id) && names(msg, id->valuestring)) return 1;
  }
  return 0;
}

static int says_missing(const char *msg) {
  static const char *const words[] = {"not found", "no such", "does not exist", "not exist"};
  if (!msg) return 0;
  char low[512];
  size_t n = strlen(msg);
  if (n >= sizeof low) n = sizeof low - 1;
  for (size_t i = 0; i < n; i++) low[i] = (char)((msg[i] >= 'A' && msg[i] <= 'Z') ? msg[i] + 32 : msg[i]);
  low[n] = '\0';
  for (size_t i = 0; i < sizeof words / sizeof *words; i++)
    if (strstr(low, words[i])) return 1;
  return 0;
}

int rsp_input_file_missing(const cJSON *req, int http_status, const char *error_code, const char *errmsg) {
  if (http_status != 400 && http_status != 404) return 0;
  if (str_is(error_code, "file_not_found")) return 1;
  /* A 404 of POST /responses is about something the body names; a 400
   * must say so in words: "invalid image" or a model refusing files are
   * other faults. */
  return names_sent_file(req, errmsg) && (http_status == 404 || says_missing(errmsg));
}

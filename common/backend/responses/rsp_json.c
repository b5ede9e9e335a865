/* rsp_json.c -- Responses / Conversations JSON: request bodies, response
 * objects, the answer collector and conversation item scans (see rsp_int.h).
 *
 * Everything here is pure (no I/O) so that tests and the fuzz target reach
 * it directly.  Inputs are untrusted: every field is type-checked, ids are
 * length-checked, and kept text is bounded by the collector's cap.
 */
#include "rsp_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Records of the collector: offsets into the arena. */
typedef struct msg_rec {
  size_t id;          /* arena offset of the item id */
  size_t first_part;  /* index into parts */
  size_t nparts;
  int role;           /* ROLE_*: set for listed items only (a turn's answer leaves it out) */
  int64_t created_at; /* listed items: the item's, 0 if it has none */
} msg_rec;
typedef struct part_rec {
  size_t text;        /* arena offset */
  size_t len;
  size_t first_ann;   /* index into anns */
  size_t nanns;
} part_rec;
typedef struct ann_rec {
  const char *type;   /* static: "file_citation" | "file_path" | "container_file_citation" */
  size_t file_id;     /* arena offset */
  int64_t start, end;
  size_t filename;    /* arena offset; NO_FILENAME: the API gave none */
  size_t container_id; /* arena offset (container_file_citation); NO_FILENAME: none */
} ann_rec;

#define NO_FILENAME SIZE_MAX

enum { ROLE_NONE = 0, ROLE_USER, ROLE_ASSISTANT };
typedef struct call_rec {
  size_t id, name, args;
} call_rec;

/* The record arrays only stop a hostile response: a round has a few
 * messages of a few parts each. */
#define MAX_RECORD_BYTES (256u * 1024u)
/* Ids, names and arguments are model output like the text: the arena may
 * hold the text cap twice over, plus room for ids. */
#define ARENA_SLACK (64u * 1024u)

int rsp_id_ok(const char *id) {
  if (!id) return 0;
  size_t n = strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
  return n > 0 && n < RSP_ID_MAX && id[n] == '\0';
}

static const cJSON *get(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *get_str(const cJSON *o, const char *k) {
  const cJSON *v = get(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t get_int(const cJSON *o, const char *k) {
  const cJSON *v = get(o, k);
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble > 9.0e18 ||
      v->valuedouble < -9.0e18)
    return 0;
  return (int64_t)v->valuedouble;
}

static int str_is(const char *s, const char *lit) { return s && strcmp(s, lit) == 0; }

/* ==== the answer collector ================================================== */

void rsp_answer_init(rsp_answer *a, size_t max_text) {
  memset(a, 0, sizeof *a);
  a->max_text = max_text;
  buf_init(&a->arena, 2 * max_text + ARENA_SLACK);
  buf_init(&a->msgs, MAX_RECORD_BYTES);
  buf_init(&a->parts, MAX_RECORD_BYTES);
  buf_init(&a->anns, MAX_RECORD_BYTES);
  buf_init(&a->calls, RSP_CALLS_MAX * sizeof(call_rec));
  rsp_hosted_init(&a->hosted, 0);
}

void rsp_answer_reset(rsp_answer *a) {
  buf_reset(&a->arena);
  buf_reset(&a->msgs);
  buf_reset(&a->parts);
  buf_reset(&a->anns);
  buf_reset(&a->calls);
  rsp_hosted_reset(&a->hosted);
  a->text_len = 0;
}

void rsp_answer_free(rsp_answer *a) {
  buf_free(&a->arena);
  buf_free(&a->msgs);
  buf_free(&a->parts);
  buf_free(&a->anns);
  buf_free(&a->calls);
  rsp_hosted_free(&a->hosted);
  free(a->built);
  a->built = NULL;
  a->text_len = 0;
}

size_t rsp_answer_nmessages(const rsp_answer *a) { return a->msgs.len / sizeof(msg_rec); }
size_t rsp_answer_ncalls(const rsp_answer *a) { return a->calls.len / sizeof(call_rec); }

/* Copy s (NUL-terminated) into the arena; *off receives its offset. */
static int arena_put(rsp_answer *a, const char *s, size_t len, size_t *off) {
  *off = a->arena.len;
  int rc = buf_append(&a->arena, s, len);
  if (!rc) rc = buf_append(&a->arena, "", 1);
  return rc;
}

/* A failed add leaves nothing half-added: the whole collector resets (the
 * caller reports the answer as too large, or skips a malformed item). */
static int fail(rsp_answer *a, int rc) {
  if (rc != AW_EPARSE) rsp_answer_reset(a);
  return rc;
}

/* The annotations of an output_text part, in the contract's shape.  The
 * Responses API cites by position: file_citation {file_id, index, filename}
 * and file_path {file_id, index} give one index (start = end = index),
 * container_file_citation {container_id, file_id, start_index, end_index,
 * filename} cites a span with a file the code interpreter made (kept as
 * such, with its container: the file is in the response's `files`, see
 * rsp_hosted.c); none names the annotated text, so `text` is "".
 * The filename, where given, goes into the contract (the caller can name
 * the document without a Files API lookup); file_path has none.
 * url_citation has no file to name and the contract no URL annotation: it
 * is left out.  Malformed annotations are skipped, not fatal. */
static int add_annotations(rsp_answer *a, const cJSON *part, part_rec *p) {
  const cJSON *an;
  p->first_ann = a->anns.len / sizeof(ann_rec);
  p->nanns = 0;
  cJSON_ArrayForEach(an, get(part, "annotations")) {
    const char *type = get_str(an, "type"), *file_id = get_str(an, "file_id");
    ann_rec r = {.type = NULL, .filename = NO_FILENAME, .container_id = NO_FILENAME};
    const char *container_id = NULL;
    if (!file_id) continue;
    if (str_is(type, "file_citation") || str_is(type, "file_path")) {
      r.type = str_is(type, "file_path") ? "file_path" : "file_citation";
      r.start = r.end = get_int(an, "index");
    } else if (str_is(type, "container_file_citation")) {
      if (!(container_id = get_str(an, "container_id"))) continue;
      r.type = "container_file_citation";
      r.start = get_int(an, "start_index");
      r.end = get_int(an, "end_index");
    } else {
      continue;
    }
    if (r.start < 0 || r.end < r.start) continue;
    const char *filename = str_is(type, "file_path") ? NULL : get_str(an, "filename");
    int rc = arena_put(a, file_id, strlen(file_id), &r.file_id);
    if (!rc && filename) rc = arena_put(a, filename, strlen(filename), &r.filename);
    if (!rc && container_id) rc = arena_put(a, container_id, strlen(container_id), &r.container_id);
    if (!rc) rc = buf_append(&a->anns, &r, sizeof r);
    if (rc) return rc;
    p->nanns++;
  }
  return AW_OK;
}

/* One message: a turn's assistant message (role ROLE_NONE: output_text
 * and refusal parts), or a listed conversation item (its role; input_text
 * and text parts too, and content given as one string). */
static int add_message(rsp_answer *a, const cJSON *item, int role, int64_t created_at) {
  const char *id = get_str(item, "id");
  const cJSON *content = get(item, "content"), *c;
  if (role != ROLE_NONE && cJSON_IsString(content)) {
    size_t len = strlen(content->valuestring);
    if (a->text_len + len > a->max_text) return fail(a, AW_ETOOBIG);
    msg_rec m = {0, a->parts.len / sizeof(part_rec), 1, role, created_at};
    part_rec p = {0, len, a->anns.len / sizeof(ann_rec), 0};
    int rc = arena_put(a, id ? id : "", id ? strlen(id) : 0, &m.id);
    if (!rc) rc = arena_put(a, content->valuestring, len, &p.text);
    if (!rc) rc = buf_append(&a->parts, &p, sizeof p);
    if (!rc) rc = buf_append(&a->msgs, &m, sizeof m);
    if (rc) return fail(a, rc);
    a->text_len += len;
    return AW_OK;
  }
  if (!cJSON_IsArray(content)) return AW_EPARSE;
  msg_rec m = {0, a->parts.len / sizeof(part_rec), 0, role, created_at};
  int rc = arena_put(a, id ? id : "", id ? strlen(id) : 0, &m.id);
  cJSON_ArrayForEach(c, content) {
    if (rc) break;
    /* refusal parts carry the model's refusal as text of their own. */
    const char *type = get_str(c, "type");
    int listed_text = role != ROLE_NONE && (str_is(type, "input_text") || str_is(type, "text"));
    const char *text = str_is(type, "output_text") || listed_text ? get_str(c, "text")
                       : str_is(type, "refusal")                  ? get_str(c, "refusal")
                                                                  : NULL;
    if (!text) continue;
    size_t len = strlen(text);
    if (a->text_len + len > a->max_text) {
      rc = AW_ETOOBIG;
      break;
    }
    part_rec p = {0, len, a->anns.len / sizeof(ann_rec), 0};
    rc = arena_put(a, text, len, &p.text);
    if (!rc && str_is(type, "output_text")) rc = add_annotations(a, c, &p);
    if (!rc) rc = buf_append(&a->parts, &p, sizeof p);
    if (!rc) {
      a->text_len += len;
      m.nparts++;
    }
  }
  if (!rc) rc = buf_append(&a->msgs, &m, sizeof m);
  return rc ? fail(a, rc) : AW_OK;
}

static int add_call(rsp_answer *a, const cJSON *item) {
  const char *id = get_str(item, "call_id"), *name = get_str(item, "name"),
             *args = get_str(item, "arguments");
  if (!id || !id[0] || strlen(id) >= RSP_ID_MAX || !name || !name[0]) return AW_EPARSE;
  /* The same call twice (an output_item.done and the final response.output
   * of one stream never both reach here, but a resumed stream might repeat
   * one): keep the first. */
  const call_rec *recs = (const call_rec *)a->calls.data;
  for (size_t i = 0; i < rsp_answer_ncalls(a); i++)
    if (strcmp(a->arena.data + recs[i].id, id) == 0) return AW_OK;
  if (rsp_answer_ncalls(a) >= RSP_CALLS_MAX) return fail(a, AW_ETOOBIG);
  call_rec r;
  int rc = arena_put(a, id, strlen(id), &r.id);
  if (!rc) rc = arena_put(a, name, strlen(name), &r.name);
  if (!rc) rc = arena_put(a, args ? args : "", args ? strlen(args) : 0, &r.args);
  if (!rc) rc = buf_append(&a->calls, &r, sizeof r);
  return rc ? fail(a, rc) : AW_OK;
}

int rsp_answer_add_item(rsp_answer *a, const cJSON *item) {
  const char *type = get_str(item, "type");
  if (!type) return AW_EPARSE;
  if (!strcmp(type, "message")) {
    const char *role = get_str(item, "role");
    if (role && strcmp(role, "assistant") != 0) return AW_OK;
    int rc = add_message(a, item, ROLE_NONE, 0);
    /* The files it cites (after the message: a malformed one cites none). */
    if (!rc) rc = rsp_hosted_add_item(&a->hosted, item);
    return rc == AW_ENOMEM ? fail(a, rc) : rc;
  }
  if (!strcmp(type, "function_call")) return add_call(a, item);
  /* file_search_call, code_interpreter_call: steps, not the answer;
   * reasoning and the rest: nothing. */
  int rc = rsp_hosted_add_item(&a->hosted, item);
  return rc ? fail(a, rc) : AW_OK;
}

int rsp_answer_add_listed(rsp_answer *a, const cJSON *item, int *added) {
  *added = 0;
  const char *type = get_str(item, "type"), *role = get_str(item, "role");
  if (!type) return AW_EPARSE;
  if (strcmp(type, "message") != 0 || !(str_is(role, "user") || str_is(role, "assistant"))) return AW_OK;
  if (!rsp_id_ok(get_str(item, "id"))) return AW_EPARSE;
  int rc = add_message(a, item, str_is(role, "user") ? ROLE_USER : ROLE_ASSISTANT, get_int(item, "created_at"));
  if (!rc) *added = 1;
  return rc;
}

int rsp_answer_set_output(rsp_answer *a, const cJSON *response) {
  const cJSON *out = get(response, "output"), *it;
  if (!cJSON_IsArray(out)) return AW_OK;
  rsp_answer_reset(a);
  cJSON_ArrayForEach(it, out) {
    int rc = rsp_answer_add_item(a, it);
    if (rc && rc != AW_EPARSE) return rc;
  }
  return AW_OK;
}

int rsp_answer_build(rsp_answer *a, const contract_out_message **msgs, size_t *nmsgs,
                     const be_tool_call **calls, size_t *ncalls) {
  free(a->built);
  a->built = NULL;
  size_t nm = rsp_answer_nmessages(a), np = a->parts.len / sizeof(part_rec),
         na = a->anns.len / sizeof(ann_rec), nc = rsp_answer_ncalls(a);
  *msgs = NULL;
  *nmsgs = 0;
  *calls = NULL;
  *ncalls = 0;
  if (!nm && !nc) return AW_OK;
  /* One allocation: messages, then parts, then calls; strings stay in the
   * arena, which does not move until the next add. */
  size_t sz = nm * sizeof(contract_out_message) + np * sizeof(contract_out_part) +
              na * sizeof(contract_annotation) + nc * sizeof(be_tool_call);
  char *mem = calloc(1, sz);
  if (!mem) return AW_ENOMEM;
  contract_out_message *m = (contract_out_message *)mem;
  contract_out_part *p = (contract_out_part *)(mem + nm * sizeof *m);
  contract_annotation *an = (contract_annotation *)(mem + nm * sizeof *m + np * sizeof *p);
  be_tool_call *c = (be_tool_call *)(mem + nm * sizeof *m + np * sizeof *p + na * sizeof *an);
  const msg_rec *mr = (const msg_rec *)a->msgs.data;
  const part_rec *pr = (const part_rec *)a->parts.data;
  const ann_rec *ar = (const ann_rec *)a->anns.data;
  const call_rec *cr = (const call_rec *)a->calls.data;
  for (size_t i = 0; i < na; i++) {
    an[i].type = ar[i].type;
    an[i].text = "";
    an[i].file_id = a->arena.data + ar[i].file_id;
    an[i].start_index = ar[i].start;
    an[i].end_index = ar[i].end;
    an[i].filename = ar[i].filename == NO_FILENAME ? NULL : a->arena.data + ar[i].filename;
    an[i].container_id = ar[i].container_id == NO_FILENAME ? NULL : a->arena.data + ar[i].container_id;
  }
  for (size_t i = 0; i < np; i++) {
    p[i].type = "text";
    p[i].text = a->arena.data + pr[i].text;
    p[i].text_len = pr[i].len;
    p[i].annotations = pr[i].nanns ? &an[pr[i].first_ann] : NULL;
    p[i].nannotations = pr[i].nanns;
  }
  for (size_t i = 0; i < nm; i++) {
    m[i].id = a->arena.data + mr[i].id;
    m[i].role = mr[i].role == ROLE_USER ? "user" : mr[i].role == ROLE_ASSISTANT ? "assistant" : NULL;
    m[i].created_at = mr[i].created_at > 0 ? mr[i].created_at : 0;
    m[i].parts = mr[i].nparts ? &p[mr[i].first_part] : NULL;
    m[i].nparts = mr[i].nparts;
  }
  for (size_t i = 0; i < nc; i++) {
    c[i].id = a->arena.data + cr[i].id;
    c[i].name = a->arena.data + cr[i].name;
    c[i].arguments = a->arena.data + cr[i].args;
  }
  a->built = mem;
  *msgs = nm ? m : NULL;
  *nmsgs = nm;
  *calls = nc ? c : NULL;
  *ncalls = nc;
  return AW_OK;
}

int rsp_answer_text_from(const rsp_answer *a, size_t from, buf *out) {
  const part_rec *pr = (const part_rec *)a->parts.data;
  size_t np = a->parts.len / sizeof(part_rec), pos = 0;
  for (size_t i = 0; i < np; i++) {
    size_t len = pr[i].len;
    if (pos + len > from) {
      size_t skip = from > pos ? from - pos : 0;
      int rc = buf_append(out, a->arena.data + pr[i].text + skip, len - skip);
      if (rc) return rc;
    }
    pos += len;
  }
  return AW_OK;
}

/* ==== response objects ========================================================= */

static void copy_str(char *dst, size_t n, const char *s) { snprintf(dst, n, "%s", s ? s : ""); }

int rsp_status_terminal(const char *s) {
  return s && (!strcmp(s, "completed") || !strcmp(s, "failed") || !strcmp(s, "incomplete") ||
               !strcmp(s, "cancelled"));
}

int rsp_json_response(const cJSON *resp, rsp_resp *out) {
  memset(out, 0, sizeof *out);
  const char *id = get_str(resp, "id"), *st = get_str(resp, "status");
  if (!rsp_id_ok(id) || !st || !st[0] || strlen(st) >= sizeof out->status) return AW_EPARSE;
  copy_str(out->id, sizeof out->id, id);
  copy_str(out->status, sizeof out->status, st);
  out->created_at = get_int(resp, "created_at");
  const cJSON *u = get(resp, "usage");
  if (cJSON_IsObject(u)) {
    out->usage.present = 1;
    out->usage.prompt_tokens = get_int(u, "input_tokens");
    out->usage.completion_tokens = get_int(u, "output_tokens");
    out->usage.total_tokens = get_int(u, "total_tokens");
    int64_t cached = get_int(get(u, "input_tokens_details"), "cached_tokens");
    int64_t reasoning = get_int(get(u, "output_tokens_details"), "reasoning_tokens");
    out->usage.cached_tokens = cached > 0 ? cached : 0;
    out->usage.reasoning_tokens = reasoning > 0 ? reasoning : 0;
  }
  /* The model that answered (a dated snapshot of the one asked for, on
   * OpenAI): kept only when it is printable and fits, else the caller
   * falls back to the configured one. */
  const char *model = get_str(resp, "model");
  size_t mlen = model ? strlen(model) : 0;
  if (mlen && mlen < sizeof out->model) {
    int ok = 1;
    for (size_t i = 0; i < mlen; i++)
      if ((unsigned char)model[i] < 0x20 || model[i] == 0x7f) ok = 0;
    if (ok) memcpy(out->model, model, mlen + 1);
  }
  const cJSON *e = get(resp, "error");
  if (cJSON_IsObject(e)) {
    copy_str(out->error_code, sizeof out->error_code, get_str(e, "code"));
    copy_str(out->errmsg, sizeof out->errmsg, get_str(e, "message"));
  } else {
    copy_str(out->error_code, sizeof out->error_code, get_str(get(resp, "incomplete_details"), "reason"));
  }
  return AW_OK;
}

/* ==== request bodies ============================================================== */

static int print_json(cJSON *j, char **out) {
  *out = j ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  return *out ? AW_OK : AW_ENOMEM;
}

/* One Assistants-shaped tool as a Responses tool (NULL: out of memory, or
 * *bad for a malformed one). */
static cJSON *tool_translate(const cJSON *t, int *bad) {
  const char *type = get_str(t, "type");
  if (!type) {
    *bad = 1;
    return NULL;
  }
  if (strcmp(type, "function") != 0) {
    cJSON *o = cJSON_Duplicate(t, 1);
    /* The Responses code interpreter needs a container; "auto" is what the
     * Assistants tool implied. */
    if (o && !strcmp(type, "code_interpreter") && !get(o, "container")) {
      cJSON *c = cJSON_AddObjectToObject(o, "container");
      if (!c || !cJSON_AddStringToObject(c, "type", "auto")) {
        cJSON_Delete(o);
        return NULL;
      }
    }
    return o;
  }
  const cJSON *f = get(t, "function");
  const char *name = get_str(f, "name");
  if (!name) {
    *bad = 1;
    return NULL;
  }
  cJSON *o = cJSON_CreateObject();
  int ok = o && cJSON_AddStringToObject(o, "type", "function") && cJSON_AddStringToObject(o, "name", name);
  const char *desc = get_str(f, "description");
  if (ok && desc) ok = cJSON_AddStringToObject(o, "description", desc) != NULL;
  /* parameters and strict are required by the Responses schema; the
   * Assistants defaults were "no parameters" and strict false. */
  const cJSON *params = get(f, "parameters");
  cJSON *pc = cJSON_IsObject(params) ? cJSON_Duplicate(params, 1)
                                     : cJSON_Parse("{\"type\":\"object\",\"properties\":{}}");
  if (ok && pc) ok = cJSON_AddItemToObject(o, "parameters", pc);
  else {
    cJSON_Delete(pc);
    ok = 0;
  }
  if (ok) ok = cJSON_AddBoolToObject(o, "strict", cJSON_IsTrue(get(f, "strict"))) != NULL;
  if (!ok) {
    cJSON_Delete(o);
    return NULL;
  }
  return o;
}

int rsp_json_tools(const char *tools_json, cJSON **out) {
  *out = NULL;
  if (!tools_json) return AW_OK;
  cJSON *in = cJSON_Parse(tools_json);
  if (!cJSON_IsArray(in)) {
    cJSON_Delete(in);
    return AW_EINVAL;
  }
  if (cJSON_GetArraySize(in) == 0) {
    cJSON_Delete(in);
    return AW_OK;
  }
  cJSON *arr = cJSON_CreateArray(), *t;
  int rc = arr ? AW_OK : AW_ENOMEM;
  cJSON_ArrayForEach(t, in) {
    if (rc) break;
    /* The Responses file_search tool searches named vector stores
     * (vector_store_ids is required); an Assistants-style bare file_search
     * (whose stores came with the thread or assistant) has none to name
     * yet, so it is left out rather than refused by the API. */
    const char *ty = get_str(t, "type");
    if (ty && !strcmp(ty, "file_search") && !cJSON_IsArray(get(t, "vector_store_ids"))) continue;
    int bad = 0;
    cJSON *o = tool_translate(t, &bad);
    if (!o) rc = bad ? AW_EINVAL : AW_ENOMEM;
    else if (!cJSON_AddItemToArray(arr, o)) {
      cJSON_Delete(o);
      rc = AW_ENOMEM;
    }
  }
  cJSON_Delete(in);
  if (rc) {
    cJSON_Delete(arr);
    return rc;
  }
  *out = arr;
  return AW_OK;
}

int rsp_json_file_search(cJSON **tools, const char *const *ids, size_t n) {
  if (n == 0) return AW_OK;
  if (!ids) return AW_EINVAL;
  if (!*tools && !(*tools = cJSON_CreateArray())) return AW_ENOMEM;
  /* One file_search tool searches every store: a configured one that
   * already names stores gets ours added, else a new one is appended. */
  cJSON *fs = NULL, *t, *arr;
  cJSON_ArrayForEach(t, *tools) {
    const char *ty = get_str(t, "type");
    if (ty && !strcmp(ty, "file_search") && cJSON_IsArray(get(t, "vector_store_ids"))) fs = t;
  }
  if (!fs) {
    fs = cJSON_CreateObject();
    if (!fs || !cJSON_AddItemToArray(*tools, fs)) {
      cJSON_Delete(fs);
      return AW_ENOMEM;
    }
    if (!cJSON_AddStringToObject(fs, "type", "file_search") || !cJSON_AddArrayToObject(fs, "vector_store_ids"))
      return AW_ENOMEM;
  }
  arr = cJSON_GetObjectItemCaseSensitive(fs, "vector_store_ids");
  for (size_t i = 0; i < n; i++) {
    if (!ids[i] || !ids[i][0]) return AW_EINVAL;
    int have = 0;
    cJSON_ArrayForEach(t, arr) have |= cJSON_IsString(t) && !strcmp(t->valuestring, ids[i]);
    if (!have && !cJSON_AddItemToArray(arr, cJSON_CreateString(ids[i]))) return AW_ENOMEM;
  }
  return AW_OK;
}

int rsp_json_tool_choice(const char *tool_choice_json, cJSON **out) {
  *out = NULL;
  if (!tool_choice_json) return AW_OK;
  cJSON *in = cJSON_Parse(tool_choice_json), *o = NULL;
  int rc = AW_EINVAL;
  if (cJSON_IsString(in)) {
    const char *v = in->valuestring;
    if (!strcmp(v, "auto") || !strcmp(v, "required") || !strcmp(v, "none")) {
      o = cJSON_CreateString(v);
      rc = o ? AW_OK : AW_ENOMEM;
    }
  } else if (cJSON_IsObject(in)) {
    const char *ty = get_str(in, "type");
    const char *name = get_str(get(in, "function"), "name"); /* Assistants shape */
    if (!name) name = get_str(in, "name");                   /* Responses shape */
    if (ty && !strcmp(ty, "function") && name && name[0]) {
      o = cJSON_CreateObject();
      rc = o && cJSON_AddStringToObject(o, "type", "function") && cJSON_AddStringToObject(o, "name", name)
               ? AW_OK
               : AW_ENOMEM;
    }
  }
  cJSON_Delete(in);
  if (rc) {
    cJSON_Delete(o);
    return rc;
  }
  *out = o;
  return AW_OK;
}

int rsp_json_user_input(const contract_part *parts, size_t nparts, cJSON **out) {
  *out = NULL;
  if (!parts || !nparts) return AW_EINVAL;
  cJSON *arr = cJSON_CreateArray(), *msg = cJSON_CreateObject(), *content = NULL;
  int ok = arr && msg && cJSON_AddItemToArray(arr, msg);
  if (!ok) cJSON_Delete(msg);
  ok = ok && cJSON_AddStringToObject(msg, "type", "message") &&
       cJSON_AddStringToObject(msg, "role", "user");
  /* One text part goes as a plain string: the spec's input item union
   * (EasyInputMessage | InputMessage) matches a parts array twice, so only
   * the string form is unambiguous to a validator; servers treat both
   * alike. */
  if (ok && nparts == 1 && parts[0].type == CONTRACT_PART_TEXT && parts[0].text) {
    if (!cJSON_AddStringToObject(msg, "content", parts[0].text)) {
      cJSON_Delete(arr);
      return AW_ENOMEM;
    }
    *out = arr;
    return AW_OK;
  }
  ok = ok && (content = cJSON_AddArrayToObject(msg, "content"));
  int rc = ok ? AW_OK : AW_ENOMEM;
  for (size_t i = 0; !rc && i < nparts; i++) {
    /* Images and files: refused by the worker with unsupported_content. */
    if (parts[i].type != CONTRACT_PART_TEXT || !parts[i].text) {
      rc = AW_EINVAL;
      break;
    }
    cJSON *p = cJSON_CreateObject();
    if (!p || !cJSON_AddItemToArray(content, p)) {
      cJSON_Delete(p);
      rc = AW_ENOMEM;
      break;
    }
    if (!cJSON_AddStringToObject(p, "type", "input_text") ||
        !cJSON_AddStringToObject(p, "text", parts[i].text))
      rc = AW_ENOMEM;
  }
  if (rc) {
    cJSON_Delete(arr);
    return rc;
  }
  *out = arr;
  return AW_OK;
}

int rsp_json_outputs_input(const be_tool_output *outs, size_t n, const char *output_text, cJSON **out) {
  *out = NULL;
  cJSON *arr = cJSON_CreateArray();
  int rc = arr ? AW_OK : AW_ENOMEM;
  for (size_t i = 0; !rc && i < n; i++) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(arr, o)) {
      cJSON_Delete(o);
      rc = AW_ENOMEM;
      break;
    }
    const char *text = output_text ? output_text : outs[i].output;
    if (!cJSON_AddStringToObject(o, "type", "function_call_output") ||
        !cJSON_AddStringToObject(o, "call_id", outs[i].tool_call_id) ||
        !cJSON_AddStringToObject(o, "output", text ? text : ""))
      rc = AW_ENOMEM;
  }
  if (rc) {
    cJSON_Delete(arr);
    return rc;
  }
  *out = arr;
  return AW_OK;
}

static int md_add(cJSON *md, const char *k, const char *v) {
  cJSON_DeleteItemFromObjectCaseSensitive(md, k); /* ours win over the user's */
  return cJSON_AddStringToObject(md, k, v) ? AW_OK : AW_ENOMEM;
}

int rsp_json_turn_body(const be_turn_input *in, const cJSON *input, long round, int background,
                       cJSON **out, int *dropped, size_t *unplaced) {
  *out = NULL;
  if (dropped) *dropped = 0;
  size_t unplaced_ = 0;
  const be_assistant *a = in->assistant;
  cJSON *tools = NULL, *choice = NULL;
  int rc = rsp_json_tools(a->tools_json, &tools);
  if (!rc) rc = rsp_json_file_search(&tools, a->vector_store_ids, a->nvector_store_ids);
  /* Every round: the code interpreter's files (rsp_inputs.c). */
  if (!rc) rc = rsp_input_code_files(&tools, in->attachments, in->nattachments, &unplaced_);
  if (unplaced) *unplaced = unplaced_;
  if (rc) {
    cJSON_Delete(tools);
    return rc;
  }
  /* The first response of a turn only: the continuation that carries the
   * outputs must be free to answer (a forced call would be forced again). */
  if (round == 0 && (rc = rsp_json_tool_choice(a->tool_choice_json, &choice)) != AW_OK) {
    cJSON_Delete(tools);
    return rc;
  }
  cJSON *j = cJSON_CreateObject(), *md = NULL;
  int ok = j && cJSON_AddStringToObject(j, "model", a->model) &&
           (a->max_output_tokens <= 0 || cJSON_AddNumberToObject(j, "max_output_tokens", (double)a->max_output_tokens));
  /* The request's instructions replace the assistant's; additional ones are
   * appended, as the Assistants API did with additional_instructions. */
  const char *base = in->instructions ? in->instructions : a->instructions;
  const char *add = in->additional_instructions;
  if (ok && (base || add)) {
    size_t n = (base ? strlen(base) : 0) + (add ? strlen(add) : 0) + 3;
    char *s = malloc(n);
    if (!s) ok = 0;
    else {
      snprintf(s, n, "%s%s%s", base ? base : "", base && add ? "\n\n" : "", add ? add : "");
      ok = cJSON_AddStringToObject(j, "instructions", s) != NULL;
      free(s);
    }
  }
  if (ok && tools) {
    ok = cJSON_AddItemToObject(j, "tools", tools);
    if (ok) tools = NULL;
  }
  if (ok && choice) {
    ok = cJSON_AddItemToObject(j, "tool_choice", choice);
    if (ok) choice = NULL;
  }
  cJSON *inp = ok ? cJSON_Duplicate(input, 1) : NULL;
  ok = ok && inp && cJSON_AddItemToObject(j, "input", inp);
  if (!ok) cJSON_Delete(inp);
  ok = ok && cJSON_AddTrueToObject(j, "stream") && (!background || cJSON_AddTrueToObject(j, "background")) &&
       cJSON_AddTrueToObject(j, "store") && (md = cJSON_AddObjectToObject(j, "metadata"));
  cJSON_Delete(tools);
  cJSON_Delete(choice);
  rc = ok ? AW_OK : AW_ENOMEM;
  /* Our tags first: a recovery does not read them (conversation items carry
   * no metadata), but they name the response for people and tools. */
  if (!rc) rc = md_add(md, "event_id", in->event_id);
  if (!rc) rc = md_add(md, "conversation_id", in->conversation_id);
  if (!rc && in->include_steps) rc = rsp_input_include(j);
  if (!rc && round >= 1) {
    char r[24];
    snprintf(r, sizeof r, "%ld", round);
    rc = md_add(md, "aw_round", r);
  }
  for (size_t i = 0; !rc && round == 0 && i < in->nmetadata; i++) {
    const char *k = in->metadata[i].key;
    if (get(md, k)) continue;
    if (cJSON_GetArraySize(md) >= RSP_METADATA_MAX) {
      if (dropped) (*dropped)++;
      continue;
    }
    if (!cJSON_AddStringToObject(md, k, in->metadata[i].value)) rc = AW_ENOMEM;
  }
  if (rc) {
    cJSON_Delete(j);
    return rc;
  }
  *out = j;
  return AW_OK;
}

int rsp_json_conv_body(const char *conversation_id, char **out) {
  cJSON *j = cJSON_CreateObject(), *md = NULL;
  int ok = j && (md = cJSON_AddObjectToObject(j, "metadata")) &&
           cJSON_AddStringToObject(md, "conversation_id", conversation_id);
  if (!ok) {
    cJSON_Delete(j);
    *out = NULL;
    return AW_ENOMEM;
  }
  return print_json(j, out);
}

int rsp_json_close_calls_body(const be_tool_call *calls, size_t n, const char *output, char **out) {
  *out = NULL;
  cJSON *j = cJSON_CreateObject(), *items = NULL;
  int rc = j && (items = cJSON_AddArrayToObject(j, "items")) ? AW_OK : AW_ENOMEM;
  for (size_t i = 0; !rc && i < n; i++) {
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(items, o)) {
      cJSON_Delete(o);
      rc = AW_ENOMEM;
      break;
    }
    if (!cJSON_AddStringToObject(o, "type", "function_call_output") ||
        !cJSON_AddStringToObject(o, "call_id", calls[i].id) ||
        !cJSON_AddStringToObject(o, "output", output))
      rc = AW_ENOMEM;
  }
  if (rc) {
    cJSON_Delete(j);
    return rc;
  }
  return print_json(j, out);
}

/* ==== conversation item scans ======================================================= */

/* Do a stored user message's texts equal the ones we sent?  Servers store
 * content as the parts we gave (input_text), some as one string. */
static int same_texts(const cJSON *stored, const cJSON *sent) {
  const cJSON *sc = get(stored, "content"), *wc = get(sent, "content");
  if (cJSON_IsString(wc)) { /* we sent one text as a string */
    if (cJSON_IsString(sc)) return strcmp(sc->valuestring, wc->valuestring) == 0;
    return cJSON_IsArray(sc) && cJSON_GetArraySize(sc) == 1 &&
           str_is(get_str(cJSON_GetArrayItem(sc, 0), "text"), wc->valuestring);
  }
  if (cJSON_IsString(sc))
    return cJSON_GetArraySize(wc) == 1 &&
           str_is(get_str(cJSON_GetArrayItem(wc, 0), "text"), sc->valuestring);
  if (!cJSON_IsArray(sc) || cJSON_GetArraySize(sc) != cJSON_GetArraySize(wc)) return 0;
  const cJSON *a = sc->child, *b = wc->child;
  for (; a && b; a = a->next, b = b->next)
    if (!rsp_input_same_part(a, b)) return 0; /* texts, images, files */
  return 1;
}

int rsp_items_same_message(const cJSON *stored, const cJSON *sent) {
  return str_is(get_str(stored, "type"), "message") && get_str(sent, "role") &&
         str_is(get_str(stored, "role"), get_str(sent, "role")) && same_texts(stored, sent);
}

static int is_ours_output(const cJSON *item, const cJSON *input) {
  const char *cid = get_str(item, "call_id");
  const cJSON *o;
  if (!cid) return 0;
  cJSON_ArrayForEach(o, input) if (str_is(get_str(o, "call_id"), cid)) return 1;
  return 0;
}

int rsp_items_scan(const cJSON *page, const cJSON *input, rsp_answer *ans, int *found, int *ready,
                   int *incomplete) {
  *found = *ready = *incomplete = 0;
  const cJSON *data = get(page, "data");
  const cJSON *first = cJSON_GetArrayItem(input, 0);
  if (!cJSON_IsArray(data) || !first) return AW_EPARSE;
  int want_user = str_is(get_str(first, "type"), "message");
  /* Items newer than the anchor, newest first. */
  const cJSON *after[RSP_ITEMS_PAGE];
  size_t nafter = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, data) {
    const char *type = get_str(it, "type");
    int user_msg = str_is(type, "message") && str_is(get_str(it, "role"), "user");
    if (want_user && user_msg) {
      /* The newest user message is ours or the input was not applied. */
      *found = same_texts(it, first);
      break;
    }
    if (!want_user) {
      if (str_is(type, "function_call_output") && is_ours_output(it, input)) {
        *found = 1;
        break;
      }
      if (user_msg) break; /* a later user turn: not ours */
    }
    if (str_is(type, "function_call_output")) {
      /* A later round's outputs: what follows them is not this round's. */
      nafter = 0;
      continue;
    }
    if (nafter < RSP_ITEMS_PAGE) after[nafter++] = it;
  }
  if (!*found) return AW_OK;
  rsp_answer_reset(ans);
  int any = 0, pending = 0;
  for (size_t i = nafter; i-- > 0;) {
    const char *type = get_str(after[i], "type");
    if (str_is(type, "file_search_call") || str_is(type, "code_interpreter_call")) {
      int rc = rsp_answer_add_item(ans, after[i]); /* steps: not part of "any" */
      if (rc && rc != AW_EPARSE) return rc;
      continue;
    }
    if (!str_is(type, "message") && !str_is(type, "function_call")) continue;
    if (str_is(type, "message") && !str_is(get_str(after[i], "role"), "assistant")) continue;
    const char *st = get_str(after[i], "status");
    if (str_is(st, "in_progress")) pending = 1;
    if (str_is(st, "incomplete")) *incomplete = 1;
    int rc = rsp_answer_add_item(ans, after[i]);
    if (rc == AW_EPARSE) continue;
    if (rc) return rc;
    any = 1;
  }
  *ready = any && !pending;
  return AW_OK;
}

/* api_json.c -- interpreting Assistants API JSON (see api_json.h). */
#include "api_json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* Bounds on the record arrays: a run's messages rarely have more than a few
 * parts and annotations; these only stop a hostile response. */
#define MAX_RECORD_BYTES (256u * 1024u)

static const cJSON *get(const cJSON *o, const char *k) {
  return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *get_str(const cJSON *o, const char *k) {
  const cJSON *v = get(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int64_t get_int(const cJSON *o, const char *k, int64_t dflt) {
  const cJSON *v = get(o, k);
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble)) return dflt;
  double d = v->valuedouble;
  if (d > 9.0e18 || d < -9.0e18) return dflt;
  return (int64_t)d;
}

static void copy_str(char *dst, size_t n, const char *s) {
  if (!n) return;
  snprintf(dst, n, "%s", s ? s : "");
}

/* Copy at most n-1 bytes of a body that may not be text, replacing control
 * bytes so an error message stays one printable line. */
static void copy_printable(char *dst, size_t n, const char *s, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < len && o + 1 < n; i++) {
    unsigned char c = (unsigned char)s[i];
    dst[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
  }
  if (n) dst[o] = '\0';
}

int api_json_error_event(const char *data, size_t len, char *code, size_t code_size, char *msg,
                         size_t msg_size) {
  cJSON *j = cJSON_ParseWithLength(data, len);
  if (!j) {
    copy_str(code, code_size, "stream_error");
    copy_printable(msg, msg_size, data, len);
    return AW_EPARSE;
  }
  const cJSON *e = get(j, "error");
  if (!cJSON_IsObject(e)) e = j;
  const char *c = get_str(e, "code");
  if (!c) c = get_str(e, "type");
  copy_str(code, code_size, c ? c : "stream_error");
  const char *m = get_str(e, "message");
  char red[256];
  log_redact(m ? m : "error event", red, sizeof red);
  copy_str(msg, msg_size, red);
  cJSON_Delete(j);
  return AW_OK;
}

int64_t api_json_unix_ms(int64_t secs) {
  if (secs <= 0) return 0;
  if (secs > INT64_MAX / 1000) return INT64_MAX / 1000 * 1000;
  return secs * 1000;
}

int api_json_run_terminal(const char *s) {
  return s && (!strcmp(s, "completed") || !strcmp(s, "failed") || !strcmp(s, "cancelled") ||
               !strcmp(s, "expired") || !strcmp(s, "incomplete"));
}

int api_json_run_parse(const cJSON *run, api_json_run *out) {
  memset(out, 0, sizeof *out);
  const char *id = get_str(run, "id"), *st = get_str(run, "status");
  if (!id || !st || !id[0] || strlen(id) >= sizeof out->id || strlen(st) >= sizeof out->status)
    return AW_EPARSE;
  copy_str(out->id, sizeof out->id, id);
  copy_str(out->status, sizeof out->status, st);
  const char *as = get_str(run, "assistant_id");
  if (as && strlen(as) < sizeof out->assistant_id) copy_str(out->assistant_id, sizeof out->assistant_id, as);
  const char *tag = get_str(get(run, "metadata"), "aw_tag");
  if (tag && strlen(tag) < sizeof out->tag) copy_str(out->tag, sizeof out->tag, tag);
  const char *mtag = get_str(get(run, "metadata"), "aw_message_id");
  if (mtag && strlen(mtag) < sizeof out->message_tag)
    copy_str(out->message_tag, sizeof out->message_tag, mtag);
  out->created_at = get_int(run, "created_at", 0);
  out->expires_at = get_int(run, "expires_at", 0);
  const cJSON *u = get(run, "usage");
  if (cJSON_IsObject(u)) {
    out->usage.present = 1;
    out->usage.prompt_tokens = get_int(u, "prompt_tokens", 0);
    out->usage.completion_tokens = get_int(u, "completion_tokens", 0);
    out->usage.total_tokens = get_int(u, "total_tokens", 0);
  }
  const char *model = get_str(run, "model");
  size_t mlen = model ? strlen(model) : 0;
  if (mlen && mlen < sizeof out->model) {
    int ok = 1;
    for (size_t i = 0; i < mlen; i++)
      if ((unsigned char)model[i] < 0x20 || model[i] == 0x7f) ok = 0;
    if (ok) memcpy(out->model, model, mlen + 1);
  }
  const cJSON *le = get(run, "last_error");
  if (cJSON_IsObject(le)) {
    copy_str(out->error_code, sizeof out->error_code, get_str(le, "code"));
    copy_str(out->error_message, sizeof out->error_message, get_str(le, "message"));
  } else {
    const char *reason = get_str(get(run, "incomplete_details"), "reason");
    if (reason) copy_str(out->error_code, sizeof out->error_code, reason);
  }
  return AW_OK;
}

int api_json_run_parse_text(const char *data, size_t len, api_json_run *out) {
  cJSON *j = cJSON_ParseWithLength(data, len);
  if (!j) {
    memset(out, 0, sizeof *out);
    return AW_EPARSE;
  }
  int rc = api_json_run_parse(j, out);
  cJSON_Delete(j);
  return rc;
}

int api_json_delta_texts(const char *data, size_t len, api_json_text_cb cb, void *opaque) {
  cJSON *j = cJSON_ParseWithLength(data, len);
  if (!j) return AW_EPARSE;
  int rc = AW_OK;
  const cJSON *content = get(get(j, "delta"), "content"), *part;
  if (cJSON_IsArray(content)) {
    cJSON_ArrayForEach(part, content) {
      const char *type = get_str(part, "type");
      if (!type || strcmp(type, "text") != 0) continue;
      const char *v = get_str(get(part, "text"), "value");
      if (!v || !v[0]) continue;
      rc = cb(opaque, v, strlen(v));
      if (rc) break;
    }
  }
  cJSON_Delete(j);
  return rc;
}

/* ---- answer collector --------------------------------------------------- */

typedef struct msg_rec {
  size_t id, part0, nparts;
  size_t role;        /* arena offset, or NO_ROLE (a turn's answer leaves it out) */
  int64_t created_at; /* 0 for a turn's answer (left out) */
} msg_rec;
#define NO_ROLE ((size_t)-1)
typedef struct part_rec {
  size_t type, text, text_len, ann0, nann;
} part_rec;
typedef struct ann_rec {
  size_t type, text, file_id;
  int64_t start, end;
} ann_rec;

void api_json_answer_init(api_json_answer *a, size_t max_bytes) {
  buf_init(&a->arena, max_bytes);
  buf_init(&a->msgs, MAX_RECORD_BYTES);
  buf_init(&a->parts, MAX_RECORD_BYTES);
  buf_init(&a->anns, MAX_RECORD_BYTES);
  a->text_len = 0;
  a->built = NULL;
}

void api_json_answer_reset(api_json_answer *a) {
  buf_reset(&a->arena);
  buf_reset(&a->msgs);
  buf_reset(&a->parts);
  buf_reset(&a->anns);
  a->text_len = 0;
  free(a->built);
  a->built = NULL;
}

void api_json_answer_free(api_json_answer *a) {
  buf_free(&a->arena);
  buf_free(&a->msgs);
  buf_free(&a->parts);
  buf_free(&a->anns);
  a->text_len = 0;
  free(a->built);
  a->built = NULL;
}

/* Copy s (with its NUL) into the arena; *off receives its offset. */
static int put(api_json_answer *a, const char *s, size_t *off) {
  *off = a->arena.len;
  return buf_append(&a->arena, s ? s : "", (s ? strlen(s) : 0) + 1);
}

static int add_annotation(api_json_answer *a, const cJSON *an) {
  const char *type = get_str(an, "type");
  if (!type || (strcmp(type, "file_citation") && strcmp(type, "file_path"))) return AW_OK;
  ann_rec r;
  memset(&r, 0, sizeof r);
  int rc;
  if ((rc = put(a, type, &r.type)) || (rc = put(a, get_str(an, "text"), &r.text)) ||
      (rc = put(a, get_str(get(an, type), "file_id"), &r.file_id)))
    return rc;
  r.start = get_int(an, "start_index", 0);
  r.end = get_int(an, "end_index", 0);
  return buf_append(&a->anns, &r, sizeof r);
}

static int add_part(api_json_answer *a, const cJSON *part, size_t *nparts) {
  const char *type = get_str(part, "type");
  part_rec r;
  memset(&r, 0, sizeof r);
  int rc;
  if (type && !strcmp(type, "text")) {
    const cJSON *t = get(part, "text");
    const char *v = get_str(t, "value");
    if (!v) return AW_EPARSE;
    if ((rc = put(a, "text", &r.type)) || (rc = put(a, v, &r.text))) return rc;
    r.text_len = strlen(v);
    r.ann0 = a->anns.len / sizeof(ann_rec);
    const cJSON *anns = get(t, "annotations"), *an;
    if (cJSON_IsArray(anns)) {
      cJSON_ArrayForEach(an, anns) {
        if ((rc = add_annotation(a, an))) return rc;
      }
    }
    r.nann = a->anns.len / sizeof(ann_rec) - r.ann0;
    a->text_len += r.text_len;
  } else if (type && !strcmp(type, "image_file")) {
    const char *fid = get_str(get(part, "image_file"), "file_id");
    if (!fid) return AW_EPARSE;
    if ((rc = put(a, "image_file", &r.type)) || (rc = put(a, fid, &r.text))) return rc;
    r.text_len = strlen(fid);
  } else {
    return AW_OK; /* other content types are not part of the contract yet */
  }
  (*nparts)++;
  return buf_append(&a->parts, &r, sizeof r);
}

/* listed: keep user messages too and record role and created_at (a
 * history page); else only assistant messages, as a turn's answer. */
static int answer_add(api_json_answer *a, const cJSON *msg, int listed) {
  if (!cJSON_IsObject(msg)) return AW_EPARSE;
  const char *id = get_str(msg, "id");
  if (!id || !id[0] || strlen(id) >= API_JSON_ID_MAX) return AW_EPARSE;
  const char *role = get_str(msg, "role");
  if (listed ? !role || (strcmp(role, "assistant") && strcmp(role, "user"))
             : role && strcmp(role, "assistant") != 0)
    return AW_OK;
  free(a->built);
  a->built = NULL;
  msg_rec m;
  m.role = NO_ROLE;
  m.created_at = listed ? get_int(msg, "created_at", 0) : 0;
  if (m.created_at < 0) m.created_at = 0;
  int rc = put(a, id, &m.id);
  if (!rc && listed) rc = put(a, role, &m.role);
  m.part0 = a->parts.len / sizeof(part_rec);
  m.nparts = 0;
  const cJSON *content = get(msg, "content"), *part;
  if (!rc && cJSON_IsArray(content)) {
    cJSON_ArrayForEach(part, content) {
      if ((rc = add_part(a, part, &m.nparts))) break;
    }
  }
  if (!rc) rc = buf_append(&a->msgs, &m, sizeof m);
  if (rc) api_json_answer_reset(a); /* a half-added message must not show */
  return rc;
}

int api_json_answer_add(api_json_answer *a, const cJSON *msg) { return answer_add(a, msg, 0); }

int api_json_answer_add_listed(api_json_answer *a, const cJSON *msg) { return answer_add(a, msg, 1); }

int api_json_answer_add_text(api_json_answer *a, const char *data, size_t len) {
  cJSON *j = cJSON_ParseWithLength(data, len);
  if (!j) return AW_EPARSE;
  int rc = api_json_answer_add(a, j);
  cJSON_Delete(j);
  return rc;
}

size_t api_json_answer_count(const api_json_answer *a) { return a->msgs.len / sizeof(msg_rec); }

int api_json_answer_build(api_json_answer *a, const contract_out_message **msgs, size_t *n) {
  size_t nm = a->msgs.len / sizeof(msg_rec), np = a->parts.len / sizeof(part_rec),
         na = a->anns.len / sizeof(ann_rec);
  free(a->built);
  a->built = NULL;
  *msgs = NULL;
  *n = 0;
  if (!nm) return AW_OK;
  /* One allocation for the three pointer arrays; the strings stay in the arena. */
  size_t sz = nm * sizeof(contract_out_message) + np * sizeof(contract_out_part) +
              na * sizeof(contract_annotation);
  char *mem = calloc(1, sz);
  if (!mem) return AW_ENOMEM;
  contract_out_message *om = (contract_out_message *)mem;
  contract_out_part *op = (contract_out_part *)(om + nm);
  contract_annotation *oa = (contract_annotation *)(op + np);
  const char *ar = a->arena.data;
  const msg_rec *mr = (const msg_rec *)a->msgs.data;
  const part_rec *pr = (const part_rec *)a->parts.data;
  const ann_rec *anr = (const ann_rec *)a->anns.data;
  for (size_t i = 0; i < na; i++) {
    oa[i].type = ar + anr[i].type;
    oa[i].text = ar + anr[i].text;
    oa[i].file_id = ar + anr[i].file_id;
    oa[i].start_index = anr[i].start;
    oa[i].end_index = anr[i].end;
  }
  for (size_t i = 0; i < np; i++) {
    op[i].type = ar + pr[i].type;
    op[i].text = ar + pr[i].text;
    op[i].text_len = pr[i].text_len;
    op[i].annotations = pr[i].nann ? oa + pr[i].ann0 : NULL;
    op[i].nannotations = pr[i].nann;
  }
  for (size_t i = 0; i < nm; i++) {
    om[i].id = ar + mr[i].id;
    om[i].role = mr[i].role == NO_ROLE ? NULL : ar + mr[i].role;
    om[i].created_at = mr[i].created_at;
    om[i].parts = mr[i].nparts ? op + mr[i].part0 : NULL;
    om[i].nparts = mr[i].nparts;
  }
  a->built = mem;
  *msgs = om;
  *n = nm;
  return AW_OK;
}

int api_json_answer_text_from(const api_json_answer *a, size_t from, buf *out) {
  size_t np = a->parts.len / sizeof(part_rec), pos = 0;
  const part_rec *pr = (const part_rec *)a->parts.data;
  for (size_t i = 0; i < np; i++) {
    if (strcmp(a->arena.data + pr[i].type, "text") != 0) continue;
    size_t len = pr[i].text_len;
    if (pos + len > from) {
      size_t skip = from > pos ? from - pos : 0;
      int rc = buf_append(out, a->arena.data + pr[i].text + skip, len - skip);
      if (rc) return rc;
    }
    pos += len;
  }
  return AW_OK;
}

/* ---- tool calls ------------------------------------------------------------ */

typedef struct call_rec {
  size_t id, name, args;
} call_rec;

void api_json_tool_calls_init(api_json_tool_calls *tc, size_t max_bytes) {
  buf_init(&tc->arena, max_bytes);
  buf_init(&tc->recs, API_JSON_TOOL_CALLS_MAX * sizeof(call_rec));
  tc->built = NULL;
}

void api_json_tool_calls_reset(api_json_tool_calls *tc) {
  buf_reset(&tc->arena);
  buf_reset(&tc->recs);
  free(tc->built);
  tc->built = NULL;
}

void api_json_tool_calls_free(api_json_tool_calls *tc) {
  buf_free(&tc->arena);
  buf_free(&tc->recs);
  free(tc->built);
  tc->built = NULL;
}

static int put_tc(api_json_tool_calls *tc, const char *s, size_t *off) {
  *off = tc->arena.len;
  return buf_append(&tc->arena, s, strlen(s) + 1);
}

int api_json_tool_calls_parse(api_json_tool_calls *tc, const cJSON *run) {
  api_json_tool_calls_reset(tc);
  const cJSON *ra = get(run, "required_action");
  const char *type = get_str(ra, "type");
  const cJSON *calls = get(get(ra, "submit_tool_outputs"), "tool_calls"), *c;
  if (!type || strcmp(type, "submit_tool_outputs") || !cJSON_IsArray(calls) ||
      cJSON_GetArraySize(calls) < 1)
    return AW_EPARSE;
  int rc = AW_OK;
  cJSON_ArrayForEach(c, calls) {
    const char *id = get_str(c, "id"), *ct = get_str(c, "type");
    const cJSON *fn = get(c, "function");
    const char *name = get_str(fn, "name"), *args = get_str(fn, "arguments");
    if (!id || !id[0] || strlen(id) >= API_JSON_ID_MAX || (ct && strcmp(ct, "function")) || !name ||
        !name[0]) {
      rc = AW_EPARSE;
      break;
    }
    call_rec r;
    if ((rc = put_tc(tc, id, &r.id)) || (rc = put_tc(tc, name, &r.name)) ||
        (rc = put_tc(tc, args ? args : "", &r.args)) || (rc = buf_append(&tc->recs, &r, sizeof r)))
      break;
  }
  if (rc) api_json_tool_calls_reset(tc);
  return rc;
}

int api_json_tool_calls_parse_text(api_json_tool_calls *tc, const char *data, size_t len) {
  cJSON *j = cJSON_ParseWithLength(data, len);
  if (!j) {
    api_json_tool_calls_reset(tc);
    return AW_EPARSE;
  }
  int rc = api_json_tool_calls_parse(tc, j);
  cJSON_Delete(j);
  return rc;
}

size_t api_json_tool_calls_count(const api_json_tool_calls *tc) { return tc->recs.len / sizeof(call_rec); }

int api_json_tool_calls_build(api_json_tool_calls *tc, const api_json_tool_call **calls, size_t *n) {
  size_t nc = api_json_tool_calls_count(tc);
  free(tc->built);
  tc->built = NULL;
  *calls = NULL;
  *n = 0;
  if (!nc) return AW_OK;
  api_json_tool_call *out = calloc(nc, sizeof *out);
  if (!out) return AW_ENOMEM;
  const call_rec *r = (const call_rec *)tc->recs.data;
  for (size_t i = 0; i < nc; i++) {
    out[i].id = tc->arena.data + r[i].id;
    out[i].name = tc->arena.data + r[i].name;
    out[i].arguments = tc->arena.data + r[i].args;
  }
  tc->built = out;
  *calls = out;
  *n = nc;
  return AW_OK;
}

/* ---- run steps --------------------------------------------------------------- */

static int step_has_call(const cJSON *step, const char *call_id) {
  const cJSON *calls = get(get(step, "step_details"), "tool_calls"), *c;
  if (!cJSON_IsArray(calls)) return 0;
  cJSON_ArrayForEach(c, calls) {
    const char *id = get_str(c, "id");
    if (id && !strcmp(id, call_id)) return 1;
  }
  return 0;
}

int api_json_steps_after_call(const cJSON *page, const char *call_id, buf *ids, int *found,
                              char last[API_JSON_ID_MAX]) {
  *found = 0;
  last[0] = '\0';
  const cJSON *data = get(page, "data"), *st;
  if (!cJSON_IsArray(data)) return AW_EPARSE;
  cJSON_ArrayForEach(st, data) {
    const char *sid = get_str(st, "id");
    if (sid && strlen(sid) < API_JSON_ID_MAX) copy_str(last, API_JSON_ID_MAX, sid);
    const char *type = get_str(st, "type");
    if (!type) continue;
    if (!strcmp(type, "tool_calls") && step_has_call(st, call_id)) {
      *found = 1;
      return AW_OK;
    }
    if (strcmp(type, "message_creation")) continue;
    const char *mid = get_str(get(get(st, "step_details"), "message_creation"), "message_id");
    if (!mid || !mid[0] || strlen(mid) >= API_JSON_ID_MAX || api_json_ids_contain(ids, mid)) continue;
    char rec[API_JSON_ID_MAX];
    memset(rec, 0, sizeof rec);
    memcpy(rec, mid, strlen(mid));
    int rc = buf_append(ids, rec, sizeof rec);
    if (rc) return rc;
  }
  return AW_OK;
}

int api_json_ids_contain(const buf *ids, const char *id) {
  size_t n = ids->len / API_JSON_ID_MAX;
  for (size_t i = 0; i < n; i++)
    if (!strncmp(ids->data + i * API_JSON_ID_MAX, id, API_JSON_ID_MAX)) return 1;
  return 0;
}

/* ---- the assistant's definition ------------------------------------------- */

int api_json_assistant_body(const char *name, const char *model, const char *instructions, const char *tools_json,
                            const char *const *vector_store_ids, size_t nids, const char *hash, char **out) {
  *out = NULL;
  if (!name || !model || !hash || (nids && !vector_store_ids)) return AW_EINVAL;
  cJSON *tools = NULL;
  if (tools_json) {
    tools = cJSON_Parse(tools_json);
    if (!cJSON_IsArray(tools)) {
      cJSON_Delete(tools);
      return AW_EINVAL;
    }
  }
  cJSON *j = cJSON_CreateObject();
  int ok = j && cJSON_AddStringToObject(j, "name", name) && cJSON_AddStringToObject(j, "model", model);
  if (ok && instructions) ok = cJSON_AddStringToObject(j, "instructions", instructions) != NULL;
  if (ok && nids) {
    /* file_search searches the stores of tool_resources: the tool must be
     * there for them to be used (AssistantToolsFileSearch). */
    int has = 0;
    const cJSON *t;
    if (!tools) ok = (tools = cJSON_CreateArray()) != NULL;
    cJSON_ArrayForEach(t, tools) {
      const char *ty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "type"));
      has |= ty && !strcmp(ty, "file_search");
    }
    if (ok && !has) {
      cJSON *fs = cJSON_CreateObject();
      ok = fs && cJSON_AddItemToArray(tools, fs);
      if (!ok) cJSON_Delete(fs);
      ok = ok && cJSON_AddStringToObject(fs, "type", "file_search");
    }
    cJSON *tr = ok ? cJSON_AddObjectToObject(j, "tool_resources") : NULL;
    cJSON *fsr = tr ? cJSON_AddObjectToObject(tr, "file_search") : NULL;
    cJSON *ids = fsr ? cJSON_AddArrayToObject(fsr, "vector_store_ids") : NULL;
    ok = ids != NULL;
    for (size_t i = 0; ok && i < nids; i++) {
      if (!vector_store_ids[i] || !vector_store_ids[i][0]) {
        cJSON_Delete(tools);
        cJSON_Delete(j);
        return AW_EINVAL;
      }
      ok = cJSON_AddItemToArray(ids, cJSON_CreateString(vector_store_ids[i]));
    }
  }
  if (ok && !nids) {
    /* The definition is the whole truth, and this body also updates an
     * assistant an earlier definition made: no stores means none (an update
     * without tool_resources would keep the old ones, and their search). */
    cJSON *tr = cJSON_AddObjectToObject(j, "tool_resources");
    cJSON *fsr = tr ? cJSON_AddObjectToObject(tr, "file_search") : NULL;
    ok = fsr && cJSON_AddArrayToObject(fsr, "vector_store_ids");
  }
  /* Always sent, [] for none: an update without `tools` keeps the old ones. */
  if (ok && !tools) ok = (tools = cJSON_CreateArray()) != NULL;
  if (ok) {
    ok = cJSON_AddItemToObject(j, "tools", tools);
    if (ok) tools = NULL;
  }
  cJSON *md = ok ? cJSON_AddObjectToObject(j, "metadata") : NULL;
  ok = md && cJSON_AddStringToObject(md, "aw_name", name) && cJSON_AddStringToObject(md, "aw_hash", hash);
  cJSON_Delete(tools);
  *out = ok ? cJSON_PrintUnformatted(j) : NULL;
  cJSON_Delete(j);
  return *out ? AW_OK : AW_ENOMEM;
}

/* ---- the user message and the run's tools ---------------------------------- */

/* {"type":"image_url","image_url":{"url":..,"detail"?}} and the image_file
 * twin: the spec's MessageContentImageUrlObject / MessageContentImageFileObject
 * (detail defaults to auto there: sent only when the request set it). */
static int add_image(cJSON *p, const char *type, const char *key, const char *val, const char *detail) {
  cJSON *o = NULL;
  int ok = cJSON_AddStringToObject(p, "type", type) && (o = cJSON_AddObjectToObject(p, type)) &&
           cJSON_AddStringToObject(o, key, val);
  if (ok && detail) ok = cJSON_AddStringToObject(o, "detail", detail) != NULL;
  return ok ? AW_OK : AW_ENOMEM;
}

static int add_content_part(cJSON *content, const contract_part *part) {
  const char *v = part->text;
  if (!v || !v[0]) return AW_EINVAL;
  if (part->type == CONTRACT_PART_FILE) return AW_EINVAL; /* refused by the worker */
  if (part->type != CONTRACT_PART_TEXT && part->type != CONTRACT_PART_IMAGE_URL &&
      part->type != CONTRACT_PART_IMAGE_FILE)
    return AW_EINVAL;
  cJSON *p = cJSON_CreateObject();
  if (!p || !cJSON_AddItemToArray(content, p)) {
    cJSON_Delete(p);
    return AW_ENOMEM;
  }
  /* text_len may cover bytes cJSON cannot carry (an embedded NUL): the
   * contract decoder checks UTF-8, so a NUL-terminated copy is exact. */
  if (part->type == CONTRACT_PART_TEXT)
    return cJSON_AddStringToObject(p, "type", "text") && cJSON_AddStringToObject(p, "text", v)
               ? AW_OK : AW_ENOMEM;
  if (part->type == CONTRACT_PART_IMAGE_URL) return add_image(p, "image_url", "url", v, part->detail);
  return add_image(p, "image_file", "file_id", v, part->detail);
}

/* Append {"type": name} to tools. */
static int add_tool_type(cJSON *tools, const char *name) {
  cJSON *o = cJSON_CreateObject();
  if (!o || !cJSON_AddItemToArray(tools, o)) {
    cJSON_Delete(o);
    return AW_ENOMEM;
  }
  return cJSON_AddStringToObject(o, "type", name) ? AW_OK : AW_ENOMEM;
}

static int add_attachment(cJSON *arr, const contract_attachment *a) {
  if (!a->file_id || !a->file_id[0] ||
      !(a->tools & (CONTRACT_ATT_FILE_SEARCH | CONTRACT_ATT_CODE_INTERPRETER)))
    return AW_EINVAL;
  cJSON *o = cJSON_CreateObject(), *tools = NULL;
  if (!o || !cJSON_AddItemToArray(arr, o)) {
    cJSON_Delete(o);
    return AW_ENOMEM;
  }
  if (!cJSON_AddStringToObject(o, "file_id", a->file_id) || !(tools = cJSON_AddArrayToObject(o, "tools")))
    return AW_ENOMEM;
  int rc = AW_OK;
  if (a->tools & CONTRACT_ATT_FILE_SEARCH) rc = add_tool_type(tools, "file_search");
  if (!rc && (a->tools & CONTRACT_ATT_CODE_INTERPRETER)) rc = add_tool_type(tools, "code_interpreter");
  return rc;
}

int api_json_user_message(const contract_part *parts, size_t nparts, const contract_attachment *att,
                          size_t natt, const char *event_id, const char *conversation_id,
                          const contract_kv *md, size_t nmd, cJSON **out) {
  *out = NULL;
  if (!nparts || !parts || (natt && !att) || (nmd && !md) || !event_id || !conversation_id)
    return AW_EINVAL;
  cJSON *j = cJSON_CreateObject(), *content = NULL, *m = NULL;
  int rc = j && cJSON_AddStringToObject(j, "role", "user") && (content = cJSON_AddArrayToObject(j, "content"))
               ? AW_OK : AW_ENOMEM;
  for (size_t i = 0; !rc && i < nparts; i++) rc = add_content_part(content, &parts[i]);
  if (!rc && natt) {
    cJSON *arr = cJSON_AddArrayToObject(j, "attachments");
    rc = arr ? AW_OK : AW_ENOMEM;
    for (size_t i = 0; !rc && i < natt; i++) rc = add_attachment(arr, &att[i]);
  }
  /* Our tags first; a user key of the same name does not replace them. */
  if (!rc && !((m = cJSON_AddObjectToObject(j, "metadata")) && cJSON_AddStringToObject(m, "event_id", event_id) &&
               cJSON_AddStringToObject(m, "conversation_id", conversation_id)))
    rc = AW_ENOMEM;
  for (size_t i = 0; !rc && i < nmd; i++) {
    const char *k = md[i].key;
    if (!k || !md[i].value) rc = AW_EINVAL;
    else if (strcmp(k, "event_id") && strcmp(k, "conversation_id") &&
             !cJSON_AddStringToObject(m, k, md[i].value))
      rc = AW_ENOMEM;
  }
  if (rc) {
    cJSON_Delete(j);
    return rc;
  }
  *out = j;
  return AW_OK;
}

static int tools_have(const cJSON *tools, const char *type) {
  const cJSON *t;
  cJSON_ArrayForEach(t, tools) {
    const char *ty = get_str(t, "type");
    if (ty && !strcmp(ty, type)) return 1;
  }
  return 0;
}

int api_json_run_tools(const char *tools_json, int with_file_search, unsigned need, char **out) {
  *out = NULL;
  need &= CONTRACT_ATT_FILE_SEARCH | CONTRACT_ATT_CODE_INTERPRETER;
  if (!need) return AW_OK;
  cJSON *tools = tools_json ? cJSON_Parse(tools_json) : cJSON_CreateArray();
  if (!cJSON_IsArray(tools)) {
    int configured = tools_json != NULL;
    cJSON_Delete(tools);
    return configured ? AW_EINVAL : AW_ENOMEM;
  }
  int has_fs = with_file_search || tools_have(tools, "file_search");
  int has_ci = tools_have(tools, "code_interpreter");
  int lack_fs = (need & CONTRACT_ATT_FILE_SEARCH) && !has_fs;
  int lack_ci = (need & CONTRACT_ATT_CODE_INTERPRETER) && !has_ci;
  int rc = AW_OK;
  if (lack_fs || lack_ci) {
    /* The override replaces the assistant's tools for this run: all of
     * them go in, the file_search its vector stores gave it included. */
    if ((with_file_search || lack_fs) && !tools_have(tools, "file_search"))
      rc = add_tool_type(tools, "file_search");
    if (!rc && lack_ci) rc = add_tool_type(tools, "code_interpreter");
    if (!rc && !(*out = cJSON_PrintUnformatted(tools))) rc = AW_ENOMEM;
  }
  cJSON_Delete(tools);
  return rc;
}

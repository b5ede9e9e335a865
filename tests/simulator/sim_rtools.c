/* sim_rtools.c -- a Responses turn's images, input files and code
 * interpreter (see sim_rtools.h for the rules). */
#include "sim_rtools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sim_containers.h"
#include "sim_conversations.h"
#include "sim_files.h"
#include "sim_req.h"
#include "sim_retrieval.h"
#include "sim_store.h"

/* Input files a turn reads, and the hits a search keeps: a test's few. */
#define MAX_TURN_FILES 16
#define MAX_HITS 20
#define MAX_CI_INPUTS 64

static int is(const cJSON *v, const char *s) { return cJSON_IsString(v) && strcmp(v->valuestring, s) == 0; }
static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

/* ---- validation ---------------------------------------------------------- */

static int check_str_array(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array of strings", v);
  const cJSON *s;
  cJSON_ArrayForEach(s, v) if (!cJSON_IsString(s)) return sreq_bad_type(r, name, "an array of strings", v);
  if (cJSON_GetArraySize(v) > 50) {
    SREQ_BAD(r, name, "array_above_max_length", "Invalid '%s': array too long. Expected an array with maximum "
             "length 50, but got an array with length %d instead.", name, cJSON_GetArraySize(v));
    return -1;
  }
  return 0;
}

static int check_str_null(const cJSON *v, const char *name, sapi_reply *r) {
  return cJSON_IsNull(v) || cJSON_IsString(v) ? 0 : sreq_bad_type(r, name, "a string", v);
}

static int check_obj(const cJSON *v, const char *name, sapi_reply *r) {
  return cJSON_IsObject(v) ? 0 : sreq_bad_type(r, name, "an object", v);
}

/* AutoCodeInterpreterToolParam. */
static const sreq_field auto_fields[] = {
    {"type", V_STR, 1, 0, 0, NULL},
    {"file_ids", V_FN, 0, 0, 0, check_str_array},
    {"memory_limit", V_FN, 0, 0, 0, check_str_null},
    {"network_policy", V_FN, 0, 0, 0, check_obj},
    {NULL, 0, 0, 0, 0, NULL},
};

static int check_container(const cJSON *v, const char *name, sapi_reply *r) {
  if (cJSON_IsString(v)) return 0;
  if (!cJSON_IsObject(v)) return sreq_bad_type(r, name, "a string or an object", v);
  if (sreq_check_fields(v, auto_fields, r, name, 0)) return -1;
  if (!is(get(v, "type"), "auto")) {
    SREQ_BAD(r, name, "invalid_value", "Invalid value for '%s.type': expected 'auto'.", name);
    return -1;
  }
  return 0;
}

static const sreq_field ci_fields[] = {
    {"type", V_STR, 1, 0, 0, NULL},
    {"container", V_FN, 1, 0, 0, check_container},
    {NULL, 0, 0, 0, 0, NULL},
};

int srt_check_tool(const cJSON *t, const char *pre, sapi_reply *r) { return sreq_check_fields(t, ci_fields, r, pre, 0); }

cJSON *srt_echo_tool(const cJSON *t) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "type", "code_interpreter");
  cJSON_AddItemToObject(o, "container", cJSON_Duplicate(get(t, "container"), 1));
  return o;
}

int srt_is_media_part(const cJSON *p) {
  const cJSON *ty = get(p, "type");
  return is(ty, "input_image") || is(ty, "input_file");
}

static int check_detail(const cJSON *v, const char *name, sapi_reply *r) {
  if (is(v, "low") || is(v, "high") || is(v, "auto") || is(v, "original")) return 0;
  SREQ_BAD(r, name, "invalid_value",
           "Invalid value for '%s'. Supported values are: 'low', 'high', 'auto' and 'original'.", name);
  return -1;
}

static const sreq_field image_fields[] = {
    {"type", V_STR, 1, 0, 0, NULL},
    {"image_url", V_FN, 0, 0, 0, check_str_null},
    {"file_id", V_FN, 0, 0, 0, check_str_null},
    {"detail", V_FN, 0, 0, 0, check_detail},
    {NULL, 0, 0, 0, 0, NULL},
};

static const sreq_field file_fields[] = {
    {"type", V_STR, 1, 0, 0, NULL},
    {"file_id", V_FN, 0, 0, 0, check_str_null},
    {"filename", V_STR, 0, 0, 0, NULL},
    {"file_data", V_STR, 0, 0, 0, NULL},
    {"file_url", V_STR, 0, 0, 0, NULL},
    {"detail", V_FN, 0, 0, 0, check_str_null},
    {NULL, 0, 0, 0, 0, NULL},
};

int srt_check_part(const cJSON *p, const char *name, sapi_reply *r) {
  int image = is(get(p, "type"), "input_image");
  if (sreq_check_fields(p, image ? image_fields : file_fields, r, name, 0)) return -1;
  if (image && !cJSON_IsString(get(p, "image_url")) && !cJSON_IsString(get(p, "file_id"))) {
    SREQ_BAD(r, name, "missing_required_parameter", "Invalid '%s': one of 'image_url' or 'file_id' is required.",
             name);
    return -1;
  }
  if (!image && !cJSON_IsString(get(p, "file_id")) && !cJSON_IsString(get(p, "file_data")) &&
      !cJSON_IsString(get(p, "file_url"))) {
    SREQ_BAD(r, name, "missing_required_parameter",
             "Invalid '%s': one of 'file_id', 'file_data' or 'file_url' is required.", name);
    return -1;
  }
  return 0;
}

static cJSON *dup_or_null(const cJSON *v) { return v && !cJSON_IsNull(v) ? cJSON_Duplicate(v, 1) : cJSON_CreateNull(); }

cJSON *srt_stored_part(const cJSON *p) {
  cJSON *o = cJSON_CreateObject();
  if (is(get(p, "type"), "input_image")) {
    cJSON_AddStringToObject(o, "type", "input_image");
    const cJSON *d = get(p, "detail");
    cJSON_AddStringToObject(o, "detail", cJSON_IsString(d) ? d->valuestring : "auto");
    cJSON_AddItemToObject(o, "file_id", dup_or_null(get(p, "file_id")));
    cJSON_AddItemToObject(o, "image_url", dup_or_null(get(p, "image_url")));
    return o;
  }
  /* input_file: file_data is not kept (the bytes stay with the caller). */
  cJSON_AddStringToObject(o, "type", "input_file");
  cJSON_AddItemToObject(o, "file_id", dup_or_null(get(p, "file_id")));
  static const char *const keep[] = {"filename", "file_url", NULL};
  for (const char *const *k = keep; *k; k++)
    if (cJSON_IsString(get(p, *k))) cJSON_AddItemToObject(o, *k, cJSON_Duplicate(get(p, *k), 1));
  return o;
}

static int file_exists(const char *id) {
  char fn[8], path[8]; /* only the answer matters: truncation is fine */
  return sfiles_lookup(id, fn, sizeof fn, path, sizeof path) == AW_OK;
}

static int missing_file(sapi_reply *r, const char *param, const char *id) {
  sreq_err(r, 404, "invalid_request_error", param, NULL, "No file found with id '%s'.", id);
  return -1;
}

int srt_check_refs(const cJSON *body, sapi_reply *r) {
  char name[128];
  const cJSON *it, *p, *t;
  int i = 0;
  cJSON_ArrayForEach(it, get(body, "input")) {
    int j = 0;
    cJSON_ArrayForEach(p, get(it, "content")) {
      const cJSON *fid = get(p, "file_id");
      if (srt_is_media_part(p) && cJSON_IsString(fid) && !file_exists(fid->valuestring)) {
        snprintf(name, sizeof name, "input[%d].content[%d].file_id", i, j);
        return missing_file(r, name, fid->valuestring);
      }
      j++;
    }
    i++;
  }
  i = 0;
  cJSON_ArrayForEach(t, get(body, "tools")) {
    const cJSON *c = get(t, "container");
    if (is(get(t, "type"), "code_interpreter")) {
      if (cJSON_IsString(c) && !scntr_exists(c->valuestring)) {
        snprintf(name, sizeof name, "tools[%d].container", i);
        sreq_err(r, 404, "invalid_request_error", name, NULL, "No container found with id '%s'.", c->valuestring);
        return -1;
      }
      const cJSON *fid;
      cJSON_ArrayForEach(fid, get(c, "file_ids")) if (!file_exists(fid->valuestring)) {
        snprintf(name, sizeof name, "tools[%d].container.file_ids", i);
        return missing_file(r, name, fid->valuestring);
      }
    }
    i++;
  }
  return 0;
}

/* ---- the turn ------------------------------------------------------------ */

void srt_ci_free(srt_ci *ci) {
  if (!ci) return;
  sci_output_free(ci->out);
  free(ci);
}

void srt_turn_clear(srt_turn *t) {
  srt_ci_free(t->ci);
  sfs_answer_free(t->doc);
  memset(t, 0, sizeof *t);
}

static int wants_include(const cJSON *body, const char *what) {
  const cJSON *inc;
  cJSON_ArrayForEach(inc, get(body, "include")) if (is(inc, what)) return 1;
  return 0;
}

/* Run the code interpreter: the turn's input files (files[0..nfiles)),
 * then the container's; the container made (auto) or reused. */
static int run_ci(const cJSON *tool, const cJSON *body, const char *text, const sci_input_file *files, size_t nfiles,
                  srt_ci **out) {
  srt_ci *ci = calloc(1, sizeof *ci);
  if (!ci) return AW_ENOMEM;
  const cJSON *c = get(tool, "container");
  int rc = AW_OK;
  if (cJSON_IsString(c)) {
    snprintf(ci->container_id, sizeof ci->container_id, "%s", c->valuestring);
  } else {
    char missing[8];
    rc = scntr_create("code_interpreter", get(c, "file_ids"), ci->container_id, sizeof ci->container_id, missing,
                      sizeof missing);
  }
  sci_input_file in[MAX_CI_INPUTS];
  size_t n = 0;
  for (; n < nfiles && n < MAX_CI_INPUTS; n++) in[n] = files[n];
  if (rc == AW_OK) n += scntr_inputs(ci->container_id, in + n, MAX_CI_INPUTS - n);
  if (rc == AW_OK) rc = sci_run(text, in, n, &ci->out);
  if (rc == AW_OK && !ci->out) rc = AW_EINVAL; /* the caller asked sci_wants_tool first */
  if (rc == AW_OK)
    rc = scntr_add_file(ci->container_id, ci->out->filename, ci->out->data, ci->out->len, "assistant", ci->file_id,
                        sizeof ci->file_id);
  if (rc != AW_OK) {
    srt_ci_free(ci);
    return rc;
  }
  sstore_make_id("ci_", ci->id, sizeof ci->id);
  ci->outputs = wants_include(body, "code_interpreter_call.outputs");
  *out = ci;
  return AW_OK;
}

/* A question over the input files: their chunks ranked (BM25), the best
 * quoted and cited (sim_fsearch). */
static int search_files(const char *question, char ids[][64], size_t nids, sfs_answer **out) {
  sretr_doc *docs[MAX_TURN_FILES] = {0};
  char names[MAX_TURN_FILES][256];
  int rc = AW_OK;
  for (size_t i = 0; i < nids && rc == AW_OK; i++) {
    char path[4096], err[128];
    const char *code = NULL;
    if (sfiles_lookup(ids[i], names[i], sizeof names[i], path, sizeof path) != AW_OK) continue;
    rc = sretr_index_file(path, 800, 400, &docs[i], &code, err, sizeof err);
    if (rc == AW_EINVAL || rc == AW_EIO) rc = AW_OK, docs[i] = NULL; /* a file without text answers nothing */
  }
  sretr_hit hits[MAX_HITS];
  size_t nh = 0;
  cJSON *results = rc == AW_OK ? cJSON_CreateArray() : NULL;
  if (rc == AW_OK && !results) rc = AW_ENOMEM;
  if (rc == AW_OK)
    rc = sretr_search((const sretr_doc *const *)docs, nids, &question, 1, MAX_HITS, 0, hits, &nh);
  for (size_t i = 0; rc == AW_OK && i < nh; i++) {
    size_t len;
    const char *text = sretr_chunk_text(docs[hits[i].doc], hits[i].chunk, &len);
    char *t = strndup(text, len);
    cJSON *item = cJSON_CreateObject();
    if (!t || !item) {
      free(t);
      cJSON_Delete(item);
      rc = AW_ENOMEM;
      break;
    }
    cJSON_AddStringToObject(item, "file_id", ids[hits[i].doc]);
    cJSON_AddStringToObject(item, "filename", names[hits[i].doc]);
    cJSON_AddNumberToObject(item, "score", hits[i].score);
    cJSON_AddObjectToObject(item, "attributes");
    cJSON_AddStringToObject(item, "text", t);
    cJSON_AddItemToArray(results, item);
    free(t);
  }
  for (size_t i = 0; i < nids; i++) sretr_doc_free(docs[i]);
  if (rc != AW_OK) {
    cJSON_Delete(results);
    return rc;
  }
  return sfs_answer_from_results(question, results, out);
}

int srt_decide(const cJSON *hist, const cJSON *body, srt_turn *out) {
  memset(out, 0, sizeof *out);
  const cJSON *user = NULL, *it, *p, *t, *tool = NULL;
  cJSON_ArrayForEach(it, hist) if (is(get(it, "role"), "user")) user = it;
  if (!user) return AW_OK;
  int nimages = 0;
  char ids[MAX_TURN_FILES][64];
  size_t nids = 0;
  cJSON_ArrayForEach(p, get(user, "content")) {
    nimages += is(get(p, "type"), "input_image");
    const cJSON *fid = get(p, "file_id");
    if (is(get(p, "type"), "input_file") && cJSON_IsString(fid) && nids < MAX_TURN_FILES)
      snprintf(ids[nids++], sizeof ids[0], "%s", fid->valuestring);
  }
  if (nimages > 0 && sci_image_ack(nimages, out->ack, sizeof out->ack) < 0) out->ack[0] = '\0';
  if (!is(get(body, "tool_choice"), "none"))
    cJSON_ArrayForEach(t, get(body, "tools")) if (!tool && is(get(t, "type"), "code_interpreter")) tool = t;
  buf q;
  buf_init(&q, 1 << 20);
  sconv_item_text(user, &q);
  const char *text = q.data ? q.data : "";
  int rc = AW_OK;
  if (tool && sci_wants_tool(text)) {
    sci_input_file files[MAX_TURN_FILES];
    char *datas[MAX_TURN_FILES] = {0};
    char names[MAX_TURN_FILES][256];
    size_t nf = 0;
    for (size_t i = 0; i < nids && rc == AW_OK; i++) {
      size_t len;
      rc = scntr_read_upload(ids[i], &datas[nf], &len, names[nf], sizeof names[nf]);
      if (rc == AW_OK) files[nf] = (sci_input_file){names[nf], datas[nf], len}, nf++;
    }
    if (rc == AW_OK) rc = run_ci(tool, body, text, files, nf, &out->ci);
    for (size_t i = 0; i < nf; i++) free(datas[i]);
  } else if (nids && sfs_is_question(text)) {
    rc = search_files(text, ids, nids, &out->doc);
  }
  buf_free(&q);
  if (rc != AW_OK) srt_turn_clear(out);
  return rc;
}

/* ---- output -------------------------------------------------------------- */

static cJSON *ci_event(const srt_ci *ci, int idx) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "output_index", idx);
  cJSON_AddStringToObject(o, "item_id", ci->id);
  return o;
}

static cJSON *item_event(int idx, const cJSON *item) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "output_index", idx);
  cJSON_AddItemToObject(o, "item", cJSON_Duplicate(item, 1));
  return o;
}

cJSON *srt_emit_ci(const srt_ci *ci, int idx, srt_emit_fn emit, void *resp) {
  cJSON *it = cJSON_CreateObject();
  cJSON_AddStringToObject(it, "type", "code_interpreter_call");
  cJSON_AddStringToObject(it, "id", ci->id);
  cJSON_AddStringToObject(it, "status", "in_progress");
  cJSON_AddStringToObject(it, "container_id", ci->container_id);
  cJSON_AddStringToObject(it, "code", "");
  cJSON_AddNullToObject(it, "outputs");
  emit(resp, "response.output_item.added", item_event(idx, it));
  emit(resp, "response.code_interpreter_call.in_progress", ci_event(ci, idx));
  /* The code, a line a delta (with its newline), as a model writes it. */
  for (const char *s = ci->out->code; *s;) {
    const char *e = strchr(s, '\n');
    size_t n = e ? (size_t)(e - s) + 1 : strlen(s);
    char *line = strndup(s, n);
    cJSON *d = ci_event(ci, idx);
    cJSON_AddStringToObject(d, "delta", line ? line : "");
    emit(resp, "response.code_interpreter_call_code.delta", d);
    free(line);
    s += n;
  }
  cJSON *d = ci_event(ci, idx);
  cJSON_AddStringToObject(d, "code", ci->out->code);
  emit(resp, "response.code_interpreter_call_code.done", d);
  jset(it, "code", cJSON_CreateString(ci->out->code));
  jset(it, "status", cJSON_CreateString("interpreting"));
  emit(resp, "response.code_interpreter_call.interpreting", ci_event(ci, idx));
  emit(resp, "response.code_interpreter_call.completed", ci_event(ci, idx));
  jset(it, "status", cJSON_CreateString("completed"));
  if (ci->outputs) {
    cJSON *outs = cJSON_CreateArray();
    cJSON *l = cJSON_CreateObject();
    cJSON_AddStringToObject(l, "type", "logs");
    cJSON_AddStringToObject(l, "logs", ci->out->logs);
    cJSON_AddItemToArray(outs, l);
    if (ci->out->is_image) {
      /* Where the code wrote it; the bytes are the container file's. */
      char url[300];
      snprintf(url, sizeof url, "sandbox:/mnt/data/%s", ci->out->filename);
      cJSON *im = cJSON_CreateObject();
      cJSON_AddStringToObject(im, "type", "image");
      cJSON_AddStringToObject(im, "url", url);
      cJSON_AddItemToArray(outs, im);
    }
    jset(it, "outputs", outs);
  }
  emit(resp, "response.output_item.done", item_event(idx, it));
  return it;
}

cJSON *srt_ci_annotation(const srt_ci *ci, const char *text) {
  size_t tl = strlen(text), fl = strlen(ci->out->filename);
  long start = sfs_chars(text, tl), end = start;
  if (tl >= fl && !strcmp(text + tl - fl, ci->out->filename)) {
    start = sfs_chars(text, tl - fl);
    end = start + sfs_chars(ci->out->filename, fl);
  }
  cJSON *an = cJSON_CreateObject();
  cJSON_AddStringToObject(an, "type", "container_file_citation");
  cJSON_AddStringToObject(an, "container_id", ci->container_id);
  cJSON_AddStringToObject(an, "file_id", ci->file_id);
  cJSON_AddStringToObject(an, "filename", ci->out->filename);
  cJSON_AddNumberToObject(an, "start_index", (double)start);
  cJSON_AddNumberToObject(an, "end_index", (double)end);
  return an;
}

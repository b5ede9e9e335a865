/* sim_amsg.c -- the files an Assistants message names: checks and readers. */
#include "sim_amsg.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "sim_files.h"
#include "sim_req.h"
#include "sim_vector_stores.h"

#define BAD SREQ_BAD

static int file_exists(const char *id) {
  char fn[600], path[PATH_MAX];
  return sfiles_lookup(id, fn, sizeof fn, path, sizeof path) == AW_OK;
}

static int detail_ok(const cJSON *img) {
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(img, "detail");
  return !d || (cJSON_IsString(d) && (!strcmp(d->valuestring, "auto") || !strcmp(d->valuestring, "low") ||
                                      !strcmp(d->valuestring, "high")));
}

static int missing_file(sapi_reply *r, const char *param, const char *id) {
  BAD(r, param, "invalid_value", "No file found with id '%s'.", id);
  return -1;
}

/* One message (shapes already checked by sim_req.c); pre names it in errors. */
static int check_msg(const cJSON *m, const char *pre, sapi_reply *r) {
  char name[384];
  const cJSON *p;
  int i = 0;
  const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
  if (!cJSON_IsArray(content)) content = NULL; /* a string */
  cJSON_ArrayForEach(p, content) {
    const char *ty = cJSON_GetObjectItemCaseSensitive(p, "type")->valuestring;
    int is_file = !strcmp(ty, "image_file");
    const cJSON *img = cJSON_GetObjectItemCaseSensitive(p, is_file ? "image_file" : "image_url");
    snprintf(name, sizeof name, "%scontent[%d].%s", pre, i++, is_file ? "image_file" : "image_url");
    if (!strcmp(ty, "text")) continue;
    if (!detail_ok(img)) {
      strncat(name, ".detail", sizeof name - strlen(name) - 1);
      BAD(r, name, "invalid_value", "Invalid value for '%s': expected one of 'auto', 'low' or 'high'.", name);
      return -1;
    }
    const char *fid = is_file ? cJSON_GetObjectItemCaseSensitive(img, "file_id")->valuestring : NULL;
    if (fid && !file_exists(fid)) {
      snprintf(name, sizeof name, "%scontent[%d].image_file.file_id", pre, i - 1);
      return missing_file(r, name, fid);
    }
  }
  i = 0;
  cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(m, "attachments")) {
    const cJSON *fid = cJSON_GetObjectItemCaseSensitive(p, "file_id");
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(p, "tools"), *t;
    snprintf(name, sizeof name, "%sattachments[%d]", pre, i++);
    int ok = cJSON_IsObject(p) && cJSON_IsString(fid) && cJSON_IsArray(tools);
    if (!ok) tools = NULL;
    cJSON_ArrayForEach(t, tools) {
      const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
      ok &= cJSON_IsString(ty) && (!strcmp(ty->valuestring, "code_interpreter") || !strcmp(ty->valuestring, "file_search"));
    }
    for (const cJSON *k = ok ? p->child : NULL; k; k = k->next) ok &= !strcmp(k->string, "file_id") || !strcmp(k->string, "tools");
    if (!ok) {
      BAD(r, name, "invalid_value",
          "Invalid value for '%s': expected {file_id, tools: [{type: 'code_interpreter' | 'file_search'}]}.", name);
      return -1;
    }
    if (!file_exists(fid->valuestring)) {
      snprintf(name, sizeof name, "%sattachments[%d].file_id", pre, i - 1);
      return missing_file(r, name, fid->valuestring);
    }
  }
  return 0;
}

static int check_list(const cJSON *msgs, const char *key, sapi_reply *r) {
  const cJSON *m;
  int i = 0;
  if (!cJSON_IsArray(msgs)) return 0;
  cJSON_ArrayForEach(m, msgs) {
    char pre[128];
    snprintf(pre, sizeof pre, "%s[%d].", key, i++);
    if (check_msg(m, pre, r)) return -1;
  }
  return 0;
}

int samsg_check(const cJSON *body, sapi_reply *r) {
  if (cJSON_GetObjectItemCaseSensitive(body, "role") && check_msg(body, "", r)) return -1;
  if (check_list(cJSON_GetObjectItemCaseSensitive(body, "messages"), "messages", r)) return -1;
  if (check_list(cJSON_GetObjectItemCaseSensitive(body, "additional_messages"), "additional_messages", r)) return -1;
  const cJSON *th = cJSON_GetObjectItemCaseSensitive(body, "thread");
  return check_list(cJSON_GetObjectItemCaseSensitive(th, "messages"), "thread.messages", r);
}

int samsg_images(const cJSON *msg) {
  int n = 0;
  const cJSON *p, *content = msg ? cJSON_GetObjectItemCaseSensitive(msg, "content") : NULL;
  cJSON_ArrayForEach(p, content) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
    n += cJSON_IsString(ty) && (!strcmp(ty->valuestring, "image_url") || !strcmp(ty->valuestring, "image_file"));
  }
  return n;
}

const cJSON *samsg_last_user(const sobj *thread) {
  for (size_t i = thread->kids.n; i-- > 0;) {
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(thread->kids.v[i]->json, "role");
    if (cJSON_IsString(role) && !strcmp(role->valuestring, "user")) return thread->kids.v[i]->json;
  }
  return NULL;
}

int samsg_attached(const sobj *thread, const char *tool, cJSON *out) {
  for (size_t i = 0; i < thread->kids.n; i++) {
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(thread->kids.v[i]->json, "attachments")) {
      const cJSON *fid = cJSON_GetObjectItemCaseSensitive(a, "file_id"), *t, *seen;
      int wanted = 0, dup = 0;
      cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(a, "tools")) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
        wanted |= cJSON_IsString(ty) && !strcmp(ty->valuestring, tool);
      }
      if (!wanted || !cJSON_IsString(fid)) continue;
      cJSON_ArrayForEach(seen, out) dup |= !strcmp(seen->valuestring, fid->valuestring);
      if (!dup && !cJSON_AddItemToArray(out, cJSON_CreateString(fid->valuestring))) return AW_ENOMEM;
    }
  }
  return AW_OK;
}

int samsg_attach_search(sobj *thread, const cJSON *msg) {
  cJSON *ids = cJSON_CreateArray();
  if (!ids) return AW_ENOMEM;
  const cJSON *a;
  int rc = AW_OK;
  cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(msg, "attachments")) {
    const cJSON *fid = cJSON_GetObjectItemCaseSensitive(a, "file_id"), *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItemCaseSensitive(a, "tools")) {
      const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
      if (cJSON_IsString(fid) && cJSON_IsString(ty) && !strcmp(ty->valuestring, "file_search") &&
          !cJSON_AddItemToArray(ids, cJSON_CreateString(fid->valuestring)))
        rc = AW_ENOMEM;
    }
  }
  if (rc != AW_OK || !cJSON_GetArraySize(ids)) {
    cJSON_Delete(ids);
    return rc;
  }
  cJSON *tr = cJSON_GetObjectItemCaseSensitive(thread->json, "tool_resources");
  cJSON *fs = cJSON_GetObjectItemCaseSensitive(tr, "file_search");
  const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(fs, "vector_store_ids"), 0);
  char id[40] = "";
  rc = svs_thread_store(cJSON_IsString(first) ? first->valuestring : NULL, ids, id, sizeof id);
  cJSON_Delete(ids);
  if (rc == AW_OK && !cJSON_IsString(first) && id[0]) {
    if (!cJSON_IsObject(tr)) {
      tr = cJSON_CreateObject();
      jset(thread->json, "tool_resources", tr);
    }
    if (!cJSON_IsObject(fs)) {
      fs = cJSON_CreateObject();
      jset(tr, "file_search", fs);
    }
    cJSON *arr = cJSON_CreateArray();
    cJSON_AddItemToArray(arr, cJSON_CreateString(id));
    jset(fs, "vector_store_ids", arr);
  }
  return rc;
}

int samsg_search_pending(const sobj *thread) {
  const cJSON *fs = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(thread->json, "tool_resources"),
                                                     "file_search");
  return svs_files_in_progress(cJSON_GetObjectItemCaseSensitive(fs, "vector_store_ids"));
}

/* config_knowledge.c -- declarative knowledge in the configuration: the
 * "knowledge" object (vector stores built from local documents) and
 * assistants[].vector_stores (which stores an assistant searches).
 *
 * Why here and checked at load: a knowledge base is deployment data, like
 * the assistants; a typo in a store name or a document path found by the
 * sync at start-up (or, worse, by a turn) costs a crash loop, found here it
 * costs one clear line naming the assistant, store or path.  The same for
 * what a backend cannot serve: the chat backend runs no hosted tools and
 * searches no stores, and the Assistants API attaches one store per
 * assistant; both are refused here, after the environment (which may choose
 * the backend), rather than by the first turn.
 *
 * Store names travel in the names of the uploaded files
 * (aw-kb.<store>.<vs id>.<sha256 prefix>.<basename>, kb_sync.h), which is how a sync
 * recognises its own orphans; hence the narrow alphabet without '.'.
 *
 * Document paths are resolved against the config file's directory
 * (cfg.config_dir) so that a config and its documents move together; the
 * path as written stays the document's identity in Redis, so moving the
 * whole directory re-uploads nothing.
 */
#include "config_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int store_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= CFG_KB_NAME_SIZE) return 0;
  return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

static const cfg_kb_store *find_store(const cfg *c, const char *name) {
  for (size_t i = 0; i < c->knowledge.nstores; i++)
    if (!strcmp(c->knowledge.stores[i].name, name)) return &c->knowledge.stores[i];
  return NULL;
}

void cfg_free_knowledge(cfg *c) {
  for (size_t i = 0; i < c->knowledge.nstores; i++) {
    cfg_kb_store *s = &c->knowledge.stores[i];
    for (size_t d = 0; d < s->ndocuments; d++) {
      free(s->documents[d].key);
      free(s->documents[d].path);
    }
    free(s->documents);
  }
  memset(c->knowledge.stores, 0, sizeof c->knowledge.stores);
  c->knowledge.nstores = 0;
}

static int parse_document(const cfg *c, cfg_kb_store *s, const cJSON *v, const char *where, char *errstr,
                          size_t n) {
  if (!cJSON_IsString(v) || !v->valuestring[0]) return cfg_err(errstr, n, "%s: expected a non-empty path", where);
  const char *key = v->valuestring;
  size_t kl = strlen(key);
  if (kl >= CFG_PATH_SIZE) return cfg_err(errstr, n, "%s: path longer than %d bytes", where, CFG_PATH_SIZE - 1);
  for (size_t d = 0; d < s->ndocuments; d++)
    if (!strcmp(s->documents[d].key, key)) return cfg_err(errstr, n, "%s: \"%.200s\" is listed twice", where, key);
  char path[2 * CFG_PATH_SIZE];
  if (key[0] == '/' || !c->config_dir[0]) snprintf(path, sizeof path, "%s", key);
  else snprintf(path, sizeof path, "%s/%s", c->config_dir, key);
  struct stat st;
  if (stat(path, &st) != 0) return cfg_err(errstr, n, "%s: document \"%.300s\" does not exist", where, path);
  if (!S_ISREG(st.st_mode)) return cfg_err(errstr, n, "%s: document \"%.300s\" is not a regular file", where, path);
  cfg_kb_document *doc = &s->documents[s->ndocuments];
  doc->key = strdup(key);
  doc->path = strdup(path);
  if (!doc->key || !doc->path) {
    free(doc->key);
    free(doc->path);
    doc->key = doc->path = NULL;
    return aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
  }
  s->ndocuments++;
  return AW_OK;
}

static int parse_store(cfg *c, const cJSON *obj, int idx, char *errstr, size_t n) {
  char where[128];
  snprintf(where, sizeof where, "knowledge.vector_stores[%d]", idx);
  if (!cJSON_IsObject(obj)) return cfg_err(errstr, n, "%s: expected an object", where);
  int rc = cfg_no_duplicate_keys(obj, where, errstr, n);
  if (rc) return rc;
  const cJSON *name = NULL, *docs = NULL, *it;
  cJSON_ArrayForEach(it, obj) {
    if (!strcmp(it->string, "name")) name = it;
    else if (!strcmp(it->string, "documents")) docs = it;
    else return cfg_err(errstr, n, "%s: unknown key \"%.40s\" (expected name, documents)", where, it->string);
  }
  if (!cJSON_IsString(name)) return cfg_err(errstr, n, "%s: missing name (a string)", where);
  if (!store_name_ok(name->valuestring))
    return cfg_err(errstr, n, "%s.name: invalid name \"%.60s\" (1..%d of [A-Za-z0-9_-]: it is part of the "
                              "uploaded files' names)", where, name->valuestring, CFG_KB_NAME_SIZE - 1);
  snprintf(where, sizeof where, "knowledge.vector_stores[%d] (\"%s\")", idx, name->valuestring);
  if (find_store(c, name->valuestring)) return cfg_err(errstr, n, "%s: duplicate store name", where);
  if (!cJSON_IsArray(docs) || cJSON_GetArraySize(docs) == 0)
    return cfg_err(errstr, n, "%s.documents: expected a non-empty array of paths", where);
  int nd = cJSON_GetArraySize(docs);
  if (nd > CFG_MAX_KB_DOCUMENTS)
    return cfg_err(errstr, n, "%s.documents: %d documents, at most %d", where, nd, CFG_MAX_KB_DOCUMENTS);
  cfg_kb_store *s = &c->knowledge.stores[c->knowledge.nstores];
  memset(s, 0, sizeof *s);
  s->documents = calloc((size_t)nd, sizeof *s->documents);
  if (!s->documents) return aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
  cfg_copy(s->name, sizeof s->name, name->valuestring);
  c->knowledge.nstores++; /* owned from here: cfg_free_knowledge frees what was parsed */
  int d = 0;
  cJSON_ArrayForEach(it, docs) {
    char dw[192];
    snprintf(dw, sizeof dw, "%s.documents[%d]", where, d++);
    rc = parse_document(c, s, it, dw, errstr, n);
    if (rc) return rc;
  }
  return AW_OK;
}

int cfg_parse_knowledge(cfg *c, const cJSON *obj, char *errstr, size_t n) {
  if (!cJSON_IsObject(obj)) return cfg_err(errstr, n, "knowledge: expected an object");
  int rc = cfg_no_duplicate_keys(obj, "knowledge", errstr, n);
  if (rc) return rc;
  cfg_free_knowledge(c); /* a later file's knowledge replaces an earlier one, like "assistants" */
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    const char *k = it->string;
    if (!strcmp(k, "vector_stores")) {
      if (!cJSON_IsArray(it)) return cfg_err(errstr, n, "knowledge.vector_stores: expected an array");
      int ns = cJSON_GetArraySize(it);
      if (ns > CFG_MAX_KB_STORES)
        return cfg_err(errstr, n, "knowledge.vector_stores: %d stores, at most %d", ns, CFG_MAX_KB_STORES);
      int i = 0;
      const cJSON *s;
      cJSON_ArrayForEach(s, it) {
        rc = parse_store(c, s, i++, errstr, n);
        if (rc) return rc;
      }
    } else if (!strcmp(k, "sync_on_start")) {
      if (!cJSON_IsBool(it)) return cfg_err(errstr, n, "knowledge.sync_on_start: expected true or false");
      c->knowledge.sync_on_start = cJSON_IsTrue(it);
    } else if (!strcmp(k, "wait_timeout_ms")) {
      long long v = 0;
      rc = cfg_json_integer(it, &v, "knowledge.wait_timeout_ms", errstr, n);
      if (rc) return rc;
      if (v < 1000 || v > 3600000)
        return cfg_err(errstr, n, "knowledge.wait_timeout_ms: %lld is out of range [1000, 3600000]", v);
      c->knowledge.wait_timeout_ms = (long)v;
    } else {
      return cfg_err(errstr, n, "knowledge: unknown key \"%.40s\" (expected vector_stores, sync_on_start, "
                                "wait_timeout_ms)", k);
    }
  }
  return AW_OK;
}

int cfg_parse_assistant_stores(cfg_assistant *a, const cJSON *arr, const char *where, char *errstr, size_t n) {
  a->nvector_stores = 0;
  if (!arr || cJSON_IsNull(arr)) return AW_OK;
  if (!cJSON_IsArray(arr)) return cfg_err(errstr, n, "%s.vector_stores: expected an array of store names", where);
  int ns = cJSON_GetArraySize(arr);
  if (ns > CFG_MAX_ASSISTANT_STORES)
    return cfg_err(errstr, n, "%s.vector_stores: %d stores, at most %d", where, ns, CFG_MAX_ASSISTANT_STORES);
  int i = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, arr) {
    if (!cJSON_IsString(it) || !store_name_ok(it->valuestring))
      return cfg_err(errstr, n, "%s.vector_stores[%d]: expected the name of a knowledge.vector_stores entry", where, i);
    for (size_t j = 0; j < a->nvector_stores; j++)
      if (!strcmp(a->vector_stores[j], it->valuestring))
        return cfg_err(errstr, n, "%s.vector_stores[%d]: \"%s\" is listed twice", where, i, it->valuestring);
    cfg_copy(a->vector_stores[a->nvector_stores++], CFG_KB_NAME_SIZE, it->valuestring);
    i++;
  }
  return AW_OK;
}

int cfg_knowledge_resolve(const cfg *c, char *errstr, size_t n) {
  for (size_t i = 0; i < c->nassistants; i++) {
    const cfg_assistant *a = &c->assistants[i];
    for (size_t j = 0; j < a->nvector_stores; j++)
      if (!find_store(c, a->vector_stores[j]))
        return cfg_err(errstr, n, "assistants[%zu] (\"%.64s\").vector_stores: unknown store \"%s\" (not in "
                                  "knowledge.vector_stores)", i, a->name, a->vector_stores[j]);
  }
  return AW_OK;
}

/* The first hosted tool (file_search, code_interpreter) in tools_json, or NULL. */
static const char *hosted_tool(const char *tools_json, char *buf, size_t n) {
  cJSON *t = tools_json ? cJSON_Parse(tools_json) : NULL;
  const cJSON *it;
  const char *found = NULL;
  cJSON_ArrayForEach(it, t) {
    const char *ty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(it, "type"));
    if (ty && (!strcmp(ty, "file_search") || !strcmp(ty, "code_interpreter"))) {
      snprintf(buf, n, "%s", ty);
      found = buf;
      break;
    }
  }
  cJSON_Delete(t);
  return found;
}

int cfg_knowledge_check_backend(const cfg *c, char *errstr, size_t n) {
  int chat = !strcmp(c->api.backend, "chat"), asst = !strcmp(c->api.backend, "assistants");
  for (size_t i = 0; i < c->nassistants; i++) {
    const cfg_assistant *a = &c->assistants[i];
    char ty[32];
    if (chat && hosted_tool(a->tools_json, ty, sizeof ty))
      return cfg_err(errstr, n, "assistants[%zu] (\"%.64s\"): tool %s is a hosted tool, which the chat backend "
                                "cannot run (use api.backend responses or assistants, or remove the tool)",
                     i, a->name, ty);
    if (chat && a->nvector_stores)
      return cfg_err(errstr, n, "assistants[%zu] (\"%.64s\").vector_stores: file_search over vector store \"%s\" "
                                "is a hosted tool, which the chat backend cannot run (use api.backend responses "
                                "or assistants)", i, a->name, a->vector_stores[0]);
    if (asst && a->nvector_stores > 1)
      return cfg_err(errstr, n, "assistants[%zu] (\"%.64s\").vector_stores: %zu stores, but the Assistants API "
                                "attaches at most one vector store to an assistant", i, a->name, a->nvector_stores);
  }
  return AW_OK;
}

int cfg_knowledge_attach(cfg *c, char *errstr, size_t n) {
  for (size_t i = 0; i < c->nassistants; i++) {
    cfg_assistant *a = &c->assistants[i];
    a->nvector_store_ids = 0;
    if (!a->nvector_stores) continue;
    for (size_t j = 0; j < a->nvector_stores; j++) {
      const cfg_kb_store *s = find_store(c, a->vector_stores[j]);
      if (!s || !s->id[0])
        return aw_seterr(AW_ENOTFOUND, errstr, n, "assistant \"%.64s\": vector store \"%s\" has no id (never "
                                                  "synced: run `assistant-worker sync`)", a->name, a->vector_stores[j]);
      cfg_copy(a->vector_store_id_buf[j], CFG_KB_ID_SIZE, s->id);
      a->vector_store_ids[j] = a->vector_store_id_buf[j];
    }
    a->nvector_store_ids = a->nvector_stores;
    /* The hash names what the Assistants API keeps: its tool_resources
     * hold the store ids, so a store created anew updates the assistant.
     * FNV-1a 64 over the base hash and the ids, each NUL-terminated. */
    cfg_assistant_hash(a->name, a->model, a->instructions, a->tools_json, a->tool_choice_json, a->hash);
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = a->hash; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (size_t j = 0; j < a->nvector_store_ids; j++) {
      h = (h ^ 0u) * 1099511628211ULL;
      for (const char *p = a->vector_store_ids[j]; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    }
    snprintf(a->hash, sizeof a->hash, "%016llx", (unsigned long long)h);
  }
  return AW_OK;
}

int cfg_dump_knowledge(const cfg *c, cJSON *root) {
  cJSON *k = cJSON_AddObjectToObject(root, "knowledge");
  cJSON *arr = k ? cJSON_AddArrayToObject(k, "vector_stores") : NULL;
  int ok = arr != NULL;
  for (size_t i = 0; ok && i < c->knowledge.nstores; i++) {
    const cfg_kb_store *s = &c->knowledge.stores[i];
    cJSON *o = cJSON_CreateObject(), *docs;
    ok = o && cJSON_AddItemToArray(arr, o);
    if (!ok) cJSON_Delete(o);
    ok = ok && cJSON_AddStringToObject(o, "name", s->name) && (docs = cJSON_AddArrayToObject(o, "documents"));
    for (size_t d = 0; ok && d < s->ndocuments; d++)
      ok = cJSON_AddItemToArray(docs, cJSON_CreateString(s->documents[d].key));
  }
  ok = ok && cJSON_AddBoolToObject(k, "sync_on_start", c->knowledge.sync_on_start > 0) &&
       cJSON_AddNumberToObject(k, "wait_timeout_ms", (double)c->knowledge.wait_timeout_ms);
  return ok ? AW_OK : AW_ENOMEM;
}

/* asst_ensure.c -- be_assistant_ensure on the Assistants API: retrieve the
 * remembered id -> (list pages by metadata aw_name) -> update when aw_hash
 * differs / create when missing.  Updates are idempotent (same body twice
 * is harmless); a create that fails ambiguously is reported as such and the
 * next start finds what it created by name.
 */
#include "asst_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { EN_RETRIEVE = 1, EN_LIST, EN_UPDATE, EN_CREATE };

typedef struct ensure_op {
  op_base b;
  be_asst *be;
  be_result_cb cb;
  void *opaque;
  int phase;
  char *name, *hash; /* copies */
  char *body;        /* create/update body (cJSON_free) */
  char id[API_JSON_ID_MAX];
  char after[API_JSON_ID_MAX];
} ensure_op;

static void ensure_free(ensure_op *op) {
  free(op->name);
  free(op->hash);
  cJSON_free(op->body);
  free(op);
}

static void ensure_finish(ensure_op *op, int err, int status, const char *code, const char *msg,
                          const char *id) {
  be_result res = {.err = err, .http_status = status, .error_code = asst_nz(code),
                   .errmsg = msg ? msg : "", .id = err ? NULL : id};
  op->b.in_cb++;
  op->cb(op->opaque, &res);
  ensure_free(op);
}

static void ensure_on_done(void *opaque, const api_result *r);

static int ensure_step(ensure_op *op, int phase) {
  api_client *api = op->be->api;
  op->phase = phase;
  switch (phase) {
  case EN_RETRIEVE: return api_assistants_retrieve(api, op->id, ensure_on_done, op, &op->b.call);
  case EN_LIST:
    return api_assistants_list(api, 100, "desc", op->after[0] ? op->after : NULL, ensure_on_done, op,
                               &op->b.call);
  case EN_UPDATE: return api_assistants_update(api, op->id, op->body, ensure_on_done, op, &op->b.call);
  default: return api_assistants_create(api, op->body, ensure_on_done, op, &op->b.call);
  }
}


/* Found an assistant: use it when its hash matches, else update it. */
static void ensure_found(ensure_op *op, const cJSON *asst, const api_result *r) {
  const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(asst, "id"));
  if (!id || strlen(id) >= sizeof op->id) {
    ensure_finish(op, AW_EPARSE, r->http_status, NULL, "assistant object has no valid id", NULL);
    return;
  }
  asst_copy(op->id, sizeof op->id, id);
  const char *h = asst_md_get(asst, "aw_hash");
  if (h && strcmp(h, op->hash) == 0) {
    ensure_finish(op, AW_OK, r->http_status, NULL, "", op->id);
    return;
  }
  int rc = ensure_step(op, EN_UPDATE);
  if (rc) ensure_finish(op, rc, 0, NULL, "assistant update could not start", NULL);
}

static void ensure_on_done(void *opaque, const api_result *r) {
  ensure_op *op = opaque;
  op->b.call = NULL;
  int rc;
  if (op->phase == EN_RETRIEVE && r->http_status == 404) {
    op->id[0] = '\0';
    if ((rc = ensure_step(op, EN_LIST))) ensure_finish(op, rc, 0, NULL, "assistant list could not start", NULL);
    return;
  }
  if (r->err) {
    ensure_finish(op, r->err, r->http_status, r->error_code, r->errmsg, NULL);
    return;
  }
  switch (op->phase) {
  case EN_RETRIEVE: ensure_found(op, r->json, r); return;
  case EN_LIST: {
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(r->json, "data"), *a, *last = NULL;
    cJSON_ArrayForEach(a, data) {
      const char *n = asst_md_get(a, "aw_name");
      if (n && strcmp(n, op->name) == 0) {
        ensure_found(op, a, r);
        return;
      }
      last = a;
    }
    const char *last_id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(last, "id"));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r->json, "has_more")) && last_id &&
        strlen(last_id) < sizeof op->after && strcmp(last_id, op->after) != 0) {
      asst_copy(op->after, sizeof op->after, last_id);
      rc = ensure_step(op, EN_LIST);
    } else {
      rc = ensure_step(op, EN_CREATE);
    }
    if (rc) ensure_finish(op, rc, 0, NULL, "assistant request could not start", NULL);
    return;
  }
  default: {
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->json, "id"));
    if (!id) ensure_finish(op, AW_EPARSE, r->http_status, NULL, "assistant response has no id", NULL);
    else ensure_finish(op, AW_OK, r->http_status, NULL, "", id);
  }
  }
}

int asst_assistant_ensure(be_backend *bb, const be_assistant *def, const char *known_id,
                            be_result_cb cb, void *opaque, be_op **out) {
  be_asst *be = (be_asst *)bb;
  if (out) *out = NULL;
  if (!def || !def->name || !def->model || !def->hash || !cb) return AW_EINVAL;
  if (known_id && strlen(known_id) >= API_JSON_ID_MAX) return AW_EINVAL;
  char *body = NULL;
  int rc = api_json_assistant_body(def->name, def->model, def->instructions, def->tools_json,
                                   def->vector_store_ids, def->nvector_store_ids, def->hash, &body);
  if (rc) return rc;
  ensure_op *op = calloc(1, sizeof *op);
  if (!op) {
    cJSON_free(body);
    return AW_ENOMEM;
  }
  op->b.head.be = bb;
  op->b.kind = OP_ENSURE;
  op->be = be;
  op->cb = cb;
  op->opaque = opaque;
  op->name = strdup(def->name);
  op->hash = strdup(def->hash);
  op->body = body;
  if (!op->name || !op->hash) rc = AW_ENOMEM;
  if (!rc) {
    asst_copy(op->id, sizeof op->id, known_id);
    rc = ensure_step(op, known_id && known_id[0] ? EN_RETRIEVE : EN_LIST);
  }
  if (rc) {
    ensure_free(op);
    return rc;
  }
  if (out) *out = (be_op *)op;
  return AW_OK;
}

void asst_ensure_free(op_base *b) { ensure_free((ensure_op *)b); }

/* rsp_conv.c -- a conversation handle for one of our conversations:
 * create, claim, and delete ours when another worker won (see rsp_int.h).
 *
 *   CREATE (POST /conversations) --> CLAIM (store SET NX) --won--> done (ours)
 *                                                        \-lost--> DELETE ours --> done (winner)
 *
 * POST /conversations creates something: the http layer never repeats it
 * after an outcome that may have been applied (AW_EAMBIGUOUS).  Such a
 * failure is reported as is and the caller retries later, creating another
 * conversation: the first one, if it was created, is an empty orphan --
 * conversations cannot be listed by metadata, so it cannot be found to be
 * reused or deleted.  It holds no user data and costs nothing but a row.
 *
 * The store's callback cannot be cancelled, so the claim goes through a
 * small context that outlives a cancelled rsp_conv and frees itself.
 */
#include "rsp_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

enum { C_CREATE = 1, C_CLAIM, C_DELETE };

typedef struct claim_ctx {
  rsp_conv *conv; /* NULL once the rsp_conv was cancelled */
} claim_ctx;

struct rsp_conv {
  api_client *api;
  const be_store *store;
  rsp_conv_cb cb;
  void *opaque;
  int phase;
  api_call *call;
  claim_ctx *claim;
  char ours[RSP_ID_MAX];
  char winner[BE_HANDLE_MAX];
  char *conversation_id;
  char event_id[129];
};

static void conv_free(rsp_conv *c) {
  if (c->call) api_call_cancel(c->call);
  if (c->claim) c->claim->conv = NULL;
  free(c->conversation_id);
  free(c);
}

static void conv_finish(rsp_conv *c, int err, int status, const char *code, const char *msg,
                        const char *handle) {
  c->cb(c->opaque, err, status, code && code[0] ? code : NULL, msg ? msg : "", err ? NULL : handle);
  c->call = NULL;
  conv_free(c);
}

static void on_deleted(void *opaque, const api_result *r) {
  rsp_conv *c = opaque;
  c->call = NULL;
  if (r->err && r->http_status != 404) {
    log_ctx ctx = {.event_id = c->event_id, .conversation_id = c->conversation_id, .thread_id = c->ours};
    log_warn(&ctx, "could not delete the conversation that lost the claim: %s", r->errmsg);
  }
  conv_finish(c, AW_OK, 0, NULL, "", c->winner);
}

static void on_claimed(void *opaque, int err, const char *winner) {
  claim_ctx *cc = opaque;
  rsp_conv *c = cc->conv;
  free(cc);
  if (!c) return; /* cancelled meanwhile; the claim stands for the next turn */
  c->claim = NULL;
  if (err) {
    conv_finish(c, err, 0, NULL, "conversation handle could not be recorded in the store", NULL);
    return;
  }
  if (!winner || strcmp(winner, c->ours) == 0) {
    conv_finish(c, AW_OK, 0, NULL, "", c->ours);
    return;
  }
  if (!rsp_id_ok(winner)) {
    conv_finish(c, AW_EPARSE, 0, NULL, "the stored conversation handle is not a valid id", NULL);
    return;
  }
  snprintf(c->winner, sizeof c->winner, "%s", winner);
  /* Another worker created one too and claimed first: ours would stay an
   * empty orphan. */
  log_ctx lc = {c->event_id[0] ? c->event_id : NULL, c->conversation_id, NULL, NULL, NULL};
  log_info(&lc, "another worker created the conversation's backend conversation first; using %s, deleting %s",
           c->winner, c->ours);
  c->phase = C_DELETE;
  char path[160];
  snprintf(path, sizeof path, "/conversations/%s", c->ours);
  if (api_request(c->api, "DELETE", path, NULL, 1, on_deleted, c, &c->call) != AW_OK)
    conv_finish(c, AW_OK, 0, NULL, "", c->winner);
}

static void on_created(void *opaque, const api_result *r) {
  rsp_conv *c = opaque;
  c->call = NULL;
  if (r->err) {
    conv_finish(c, r->err, r->http_status, r->error_code, r->errmsg, NULL);
    return;
  }
  const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r->json, "id"));
  if (!rsp_id_ok(id)) {
    conv_finish(c, AW_EPARSE, r->http_status, NULL, "POST /conversations: response has no valid id", NULL);
    return;
  }
  snprintf(c->ours, sizeof c->ours, "%s", id);
  c->phase = C_CLAIM;
  claim_ctx *cc = calloc(1, sizeof *cc);
  if (!cc) {
    conv_finish(c, AW_ENOMEM, 0, NULL, "out of memory", NULL);
    return;
  }
  cc->conv = c;
  c->claim = cc;
  int rc = c->store->claim_handle(c->store->self, "conv", c->conversation_id, c->ours, on_claimed, cc);
  if (rc) {
    /* No callback will come. */
    c->claim = NULL;
    free(cc);
    conv_finish(c, rc, 0, NULL, "conversation handle claim could not start", NULL);
  }
}

int rsp_conv_ensure(api_client *api, const be_store *store, const char *conversation_id,
                    const char *event_id, rsp_conv_cb cb, void *opaque, rsp_conv **out) {
  *out = NULL;
  if (!api || !store || !store->claim_handle || !conversation_id || !cb) return AW_EINVAL;
  rsp_conv *c = calloc(1, sizeof *c);
  if (!c) return AW_ENOMEM;
  c->api = api;
  c->store = store;
  c->cb = cb;
  c->opaque = opaque;
  c->phase = C_CREATE;
  snprintf(c->event_id, sizeof c->event_id, "%s", event_id ? event_id : "");
  c->conversation_id = strdup(conversation_id);
  char *body = NULL;
  int rc = c->conversation_id ? rsp_json_conv_body(conversation_id, &body) : AW_ENOMEM;
  /* Retried like an idempotent request (1): conversations cannot be looked
   * up by metadata, and a repeat can only leave a second, empty, unclaimed
   * conversation (no item, nothing billed). */
  if (!rc) rc = api_request(api, "POST", "/conversations", body, 1, on_created, c, &c->call);
  cJSON_free(body);
  if (rc) {
    c->call = NULL;
    conv_free(c);
    return rc;
  }
  *out = c;
  return AW_OK;
}

void rsp_conv_cancel(rsp_conv *c) {
  if (c) conv_free(c);
}

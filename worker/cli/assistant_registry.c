/* assistant_registry.c -- create or update the configured assistants. */
#include "assistant_registry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct areg {
  const cfg *c;
  be_backend *be;
  rconn *redis;
  areg_done_cb done;
  void *opaque;
  size_t i;                         /* the assistant being ensured */
  char ids[CFG_MAX_ASSISTANTS][96]; /* API id per configured assistant ("" on
                                       backends that keep no assistants) */
  be_assistant defs[CFG_MAX_ASSISTANTS]; /* what areg_resolve hands the worker */
  int ready[CFG_MAX_ASSISTANTS];
  char key[CFG_PREFIX_SIZE + 16];
};

static void next(areg *r);

static void finish(areg *r, int err, const char *msg) {
  areg_done_cb done = r->done;
  r->done = NULL;
  if (done) done(r->opaque, err, msg);
}

static void on_saved(void *opaque, int err, redisReply *reply) {
  areg *r = opaque;
  (void)reply;
  if (err) log_warn(NULL, "could not remember the id of assistant '%s' in redis", r->c->assistants[r->i].name);
  r->i++;
  next(r);
}

static void on_ensured(void *opaque, const be_result *res) {
  areg *r = opaque;
  const cfg_assistant *a = &r->c->assistants[r->i];
  if (res->err) {
    char msg[512];
    snprintf(msg, sizeof msg, "assistant '%s': %s", a->name, res->errmsg ? res->errmsg : aw_strerror(res->err));
    finish(r, res->err, msg);
    return;
  }
  cfg_assistant_def(a, &r->defs[r->i]);
  r->ready[r->i] = 1;
  if (!res->id) {
    /* The backend sends the definition with every turn: nothing to remember. */
    log_info(NULL, "assistant '%s' ready (model %s)", a->name, a->model);
    r->i++;
    next(r);
    return;
  }
  snprintf(r->ids[r->i], sizeof r->ids[r->i], "%s", res->id);
  r->defs[r->i].id = r->ids[r->i];
  log_info(NULL, "assistant '%s' ready as %s", a->name, res->id);
  char val[128];
  snprintf(val, sizeof val, "%s %s", a->hash, res->id);
  if (rconn_command(r->redis, on_saved, r, "HSET %s %s %s", r->key, a->name, val) != AW_OK)
    on_saved(r, AW_EREDIS, NULL);
}

static void ensure(areg *r, const char *known_id) {
  be_assistant def;
  be_op *op = NULL;
  cfg_assistant_def(&r->c->assistants[r->i], &def);
  int rc = be_assistant_ensure(r->be, &def, known_id && *known_id ? known_id : NULL, on_ensured, r, &op);
  if (rc) {
    be_result res = {0};
    res.err = rc;
    res.errmsg = "could not start the request";
    on_ensured(r, &res);
  }
}

static void on_remembered(void *opaque, int err, redisReply *reply) {
  areg *r = opaque;
  char id[96] = "";
  /* "<hash> <id>": the backend checks the hash in the assistant's metadata
   * anyway, so the remembered id is only a shortcut past the listing. */
  if (!err && reply && reply->type == REDIS_REPLY_STRING) {
    const char *sp = memchr(reply->str, ' ', reply->len);
    if (sp) snprintf(id, sizeof id, "%.*s", (int)(reply->len - (size_t)(sp + 1 - reply->str)), sp + 1);
  }
  ensure(r, id);
}

static void next(areg *r) {
  if (r->i >= r->c->nassistants) {
    finish(r, AW_OK, NULL);
    return;
  }
  if (rconn_command(r->redis, on_remembered, r, "HGET %s %s", r->key, r->c->assistants[r->i].name) != AW_OK)
    ensure(r, NULL);
}

int areg_new(const cfg *c, be_backend *be, rconn *redis, areg_done_cb done, void *opaque, areg **out) {
  areg *r = calloc(1, sizeof *r);
  if (!r) return AW_ENOMEM;
  r->c = c;
  r->be = be;
  r->redis = redis;
  r->done = done;
  r->opaque = opaque;
  snprintf(r->key, sizeof r->key, "%s:assistants", c->redis.prefix);
  *out = r;
  next(r);
  return AW_OK;
}

const be_assistant *areg_resolve(void *registry, const char *name) {
  areg *r = registry;
  for (size_t i = 0; i < r->c->nassistants; i++)
    if (strcmp(r->c->assistants[i].name, name) == 0) return r->ready[i] ? &r->defs[i] : NULL;
  return NULL;
}

void areg_free(areg *r) { free(r); }

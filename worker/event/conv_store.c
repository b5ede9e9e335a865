/* conv_store.c -- conversation and event records in Redis. */
#include "conv_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct call {
  cstore *m;
  cstore_cb cb;
  void *opaque;
  int claim;            /* SET NX issued: on a nil reply, GET the winner */
  char key[];           /* the handle key, for the follow-up GET */
} call;

static int port_claim(void *self, const char *key, const char *conv, const char *handle, be_store_cb cb,
                      void *opaque);

void cstore_init(cstore *m, rconn *redis, const char *prefix) {
  m->redis = redis;
  snprintf(m->prefix, sizeof m->prefix, "%s", prefix && *prefix ? prefix : "aw");
  m->outcome_ttl_s = 7 * 24 * 3600;
  m->handle_ttl_s = 30L * 24 * 3600;
  m->port.claim_handle = port_claim;
  m->port.self = m;
}

int cstore_handle_key(const cstore *m, const char *key, const char *conv, char *out, size_t n) {
  int k = snprintf(out, n, "%s:{c:%s}:%s", m->prefix, conv, key);
  return (k < 0 || (size_t)k >= n) ? AW_ETOOBIG : AW_OK;
}

static call *new_call(cstore *m, const char *key, cstore_cb cb, void *opaque) {
  size_t n = strlen(key) + 1;
  call *c = malloc(sizeof *c + n);
  if (!c) return NULL;
  c->m = m;
  c->cb = cb;
  c->opaque = opaque;
  c->claim = 0;
  memcpy(c->key, key, n);
  return c;
}

static void on_reply(void *opaque, int err, redisReply *r) {
  call *c = opaque;
  if (err) {
    c->cb(c->opaque, AW_EREDIS, "");
    free(c);
    return;
  }
  if (c->claim) {
    if (r->type == REDIS_REPLY_STATUS) { /* "OK": we won; the id is ours */
      c->cb(c->opaque, AW_OK, NULL);
      free(c);
      return;
    }
    /* nil: another worker claimed first; read its id */
    c->claim = 0;
    const char *argv[] = {"GET", c->key};
    size_t lens[] = {3, strlen(c->key)};
    if (rconn_commandargv(c->m->redis, on_reply, c, 2, argv, lens) == AW_OK) return;
    c->cb(c->opaque, AW_EREDIS, "");
    free(c);
    return;
  }
  char val[CSTORE_VALUE_MAX];
  val[0] = '\0';
  if (r->type == REDIS_REPLY_STRING && r->len < sizeof val) {
    memcpy(val, r->str, r->len);
    val[r->len] = '\0';
  }
  c->cb(c->opaque, AW_OK, val);
  free(c);
}

static int issue(cstore *m, call *c, int argc, const char **argv) {
  size_t lens[8]; /* the longest command has 7 arguments */
  for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
  int rc = rconn_commandargv(m->redis, on_reply, c, argc, argv, lens);
  if (rc) free(c);
  return rc;
}

int cstore_get_handle(cstore *m, const char *hkey, const char *conv, cstore_cb cb, void *opaque) {
  char key[512];
  if (cstore_handle_key(m, hkey, conv, key, sizeof key)) return AW_ETOOBIG;
  call *c = new_call(m, key, cb, opaque);
  if (!c) return AW_ENOMEM;
  if (m->handle_ttl_s <= 0) {
    const char *argv[] = {"GET", key};
    return issue(m, c, 2, argv);
  }
  /* Every use renews the lifetime (GETEX, Redis >= 6.2): a conversation
   * in use never loses its handle; one idle for longer starts afresh. */
  char ttl[32];
  snprintf(ttl, sizeof ttl, "%ld", m->handle_ttl_s);
  const char *argv[] = {"GETEX", key, "EX", ttl};
  return issue(m, c, 4, argv);
}

int cstore_claim_handle(cstore *m, const char *hkey, const char *conv, const char *handle, cstore_cb cb,
                        void *opaque) {
  char key[512];
  if (cstore_handle_key(m, hkey, conv, key, sizeof key)) return AW_ETOOBIG;
  call *c = new_call(m, key, cb, opaque);
  if (!c) return AW_ENOMEM;
  c->claim = 1;
  if (m->handle_ttl_s <= 0) {
    const char *argv[] = {"SET", key, handle, "NX"};
    return issue(m, c, 4, argv);
  }
  char ttl[32];
  snprintf(ttl, sizeof ttl, "%ld", m->handle_ttl_s);
  const char *argv[] = {"SET", key, handle, "NX", "EX", ttl};
  return issue(m, c, 6, argv);
}

/* The be_store port: the winner of a claim is ours when SET NX answered OK
 * (the reply then carries no value). */
typedef struct port_call {
  be_store_cb cb;
  void *opaque;
  char handle[BE_HANDLE_MAX];
} port_call;

static void on_port_claim(void *opaque, int err, const char *winner) {
  port_call *p = opaque;
  p->cb(p->opaque, err ? AW_EREDIS : AW_OK, err ? NULL : (winner && *winner ? winner : p->handle));
  free(p);
}

static int port_claim(void *self, const char *key, const char *conv, const char *handle, be_store_cb cb,
                      void *opaque) {
  if (strlen(handle) >= BE_HANDLE_MAX) return AW_EINVAL;
  port_call *p = malloc(sizeof *p);
  if (!p) return AW_ENOMEM;
  p->cb = cb;
  p->opaque = opaque;
  memcpy(p->handle, handle, strlen(handle) + 1);
  int rc = cstore_claim_handle(self, key, conv, handle, on_port_claim, p);
  if (rc != AW_OK) free(p);
  return rc;
}

static int outcome_key(const cstore *m, const char *conv, const char *event_id, char *out, size_t n) {
  int k = snprintf(out, n, "%s:{c:%s}:ev:%s", m->prefix, conv, event_id);
  return (k < 0 || (size_t)k >= n) ? AW_ETOOBIG : AW_OK;
}

int cstore_get_outcome(cstore *m, const char *conv, const char *event_id, cstore_cb cb, void *opaque) {
  char key[768];
  if (outcome_key(m, conv, event_id, key, sizeof key)) return AW_ETOOBIG;
  call *c = new_call(m, key, cb, opaque);
  if (!c) return AW_ENOMEM;
  const char *argv[] = {"GET", key};
  return issue(m, c, 2, argv);
}

int cstore_put_outcome(cstore *m, const char *conv, const char *event_id, const char *status,
                       const char *run_id, cstore_cb cb, void *opaque) {
  char key[768], val[256], ttl[32];
  if (outcome_key(m, conv, event_id, key, sizeof key)) return AW_ETOOBIG;
  snprintf(val, sizeof val, "%s %s", status, run_id && *run_id ? run_id : "-");
  snprintf(ttl, sizeof ttl, "%ld", m->outcome_ttl_s);
  call *c = new_call(m, key, cb, opaque);
  if (!c) return AW_ENOMEM;
  const char *argv[] = {"SET", key, val, "EX", ttl};
  return issue(m, c, 5, argv);
}

static int progress_key(const cstore *m, const char *conv, const char *event_id, char *out, size_t n) {
  int k = snprintf(out, n, "%s:{c:%s}:evp:%s", m->prefix, conv, event_id);
  return (k < 0 || (size_t)k >= n) ? AW_ETOOBIG : AW_OK;
}

int cstore_claim_progress(cstore *m, const char *conv, const char *event_id, cstore_cb cb, void *opaque) {
  char key[768], ttl[32];
  if (progress_key(m, conv, event_id, key, sizeof key)) return AW_ETOOBIG;
  snprintf(ttl, sizeof ttl, "%ld", m->outcome_ttl_s);
  call *c = new_call(m, key, cb, opaque);
  if (!c) return AW_ENOMEM;
  /* NX GET (Redis >= 7.0): one round trip both claims and reads. */
  const char *argv[] = {"SET", key, "-", "NX", "GET", "EX", ttl};
  return issue(m, c, 7, argv);
}

int cstore_put_progress(cstore *m, const char *conv, const char *event_id, const char *checkpoint, cstore_cb cb,
                        void *opaque) {
  char key[768], ttl[32];
  if (progress_key(m, conv, event_id, key, sizeof key)) return AW_ETOOBIG;
  if (!checkpoint || !*checkpoint || strlen(checkpoint) >= CSTORE_VALUE_MAX) return AW_EINVAL;
  snprintf(ttl, sizeof ttl, "%ld", m->outcome_ttl_s);
  call *c = new_call(m, key, cb, opaque);
  if (!c) return AW_ENOMEM;
  const char *argv[] = {"SET", key, checkpoint, "EX", ttl};
  return issue(m, c, 5, argv);
}

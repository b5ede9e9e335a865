/* thread_map.c -- conversation state in Redis. */
#include "thread_map.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct call {
  tmap *m;
  tmap_cb cb;
  void *opaque;
  int claim;            /* SET NX issued: on a nil reply, GET the winner */
  char conv[];          /* for the follow-up GET */
} call;

void tmap_init(tmap *m, rconn *redis, const char *prefix) {
  m->redis = redis;
  snprintf(m->prefix, sizeof m->prefix, "%s", prefix && *prefix ? prefix : "aw");
  m->outcome_ttl_s = 7 * 24 * 3600;
}

int tmap_thread_key(const tmap *m, const char *conv, char *out, size_t n) {
  int k = snprintf(out, n, "%s:{c:%s}:thread", m->prefix, conv);
  return (k < 0 || (size_t)k >= n) ? AW_ETOOBIG : AW_OK;
}

static call *new_call(tmap *m, const char *conv, tmap_cb cb, void *opaque) {
  size_t n = strlen(conv) + 1;
  call *c = malloc(sizeof *c + n);
  if (!c) return NULL;
  c->m = m;
  c->cb = cb;
  c->opaque = opaque;
  c->claim = 0;
  memcpy(c->conv, conv, n);
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
    char key[512];
    c->claim = 0;
    if (tmap_thread_key(c->m, c->conv, key, sizeof key) == AW_OK &&
        rconn_command(c->m->redis, on_reply, c, "GET %s", key) == AW_OK)
      return;
    c->cb(c->opaque, AW_EREDIS, "");
    free(c);
    return;
  }
  char val[TMAP_ID_MAX * 2];
  val[0] = '\0';
  if (r->type == REDIS_REPLY_STRING && r->len < sizeof val) {
    memcpy(val, r->str, r->len);
    val[r->len] = '\0';
  }
  c->cb(c->opaque, AW_OK, val);
  free(c);
}

static int issue(tmap *m, call *c, int argc, const char **argv) {
  size_t lens[8]; /* the longest command has 7 arguments */
  for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
  int rc = rconn_commandargv(m->redis, on_reply, c, argc, argv, lens);
  if (rc) free(c);
  return rc;
}

int tmap_get_thread(tmap *m, const char *conv, tmap_cb cb, void *opaque) {
  char key[512];
  if (tmap_thread_key(m, conv, key, sizeof key)) return AW_ETOOBIG;
  call *c = new_call(m, conv, cb, opaque);
  if (!c) return AW_ENOMEM;
  const char *argv[] = {"GET", key};
  return issue(m, c, 2, argv);
}

int tmap_claim_thread(tmap *m, const char *conv, const char *thread_id, tmap_cb cb,
                      void *opaque) {
  char key[512];
  if (tmap_thread_key(m, conv, key, sizeof key)) return AW_ETOOBIG;
  call *c = new_call(m, conv, cb, opaque);
  if (!c) return AW_ENOMEM;
  c->claim = 1;
  const char *argv[] = {"SET", key, thread_id, "NX"};
  return issue(m, c, 4, argv);
}

static int outcome_key(const tmap *m, const char *conv, const char *event_id, char *out, size_t n) {
  int k = snprintf(out, n, "%s:{c:%s}:ev:%s", m->prefix, conv, event_id);
  return (k < 0 || (size_t)k >= n) ? AW_ETOOBIG : AW_OK;
}

int tmap_get_outcome(tmap *m, const char *conv, const char *event_id, tmap_cb cb, void *opaque) {
  char key[768];
  if (outcome_key(m, conv, event_id, key, sizeof key)) return AW_ETOOBIG;
  call *c = new_call(m, conv, cb, opaque);
  if (!c) return AW_ENOMEM;
  const char *argv[] = {"GET", key};
  return issue(m, c, 2, argv);
}

int tmap_put_outcome(tmap *m, const char *conv, const char *event_id, const char *status,
                     const char *run_id, tmap_cb cb, void *opaque) {
  char key[768], val[256], ttl[32];
  if (outcome_key(m, conv, event_id, key, sizeof key)) return AW_ETOOBIG;
  snprintf(val, sizeof val, "%s %s", status, run_id && *run_id ? run_id : "-");
  snprintf(ttl, sizeof ttl, "%ld", m->outcome_ttl_s);
  call *c = new_call(m, conv, cb, opaque);
  if (!c) return AW_ENOMEM;
  const char *argv[] = {"SET", key, val, "EX", ttl};
  return issue(m, c, 5, argv);
}

static int progress_key(const tmap *m, const char *conv, const char *event_id, char *out, size_t n) {
  int k = snprintf(out, n, "%s:{c:%s}:evp:%s", m->prefix, conv, event_id);
  return (k < 0 || (size_t)k >= n) ? AW_ETOOBIG : AW_OK;
}

int tmap_claim_progress(tmap *m, const char *conv, const char *event_id, tmap_cb cb, void *opaque) {
  char key[768], ttl[32];
  if (progress_key(m, conv, event_id, key, sizeof key)) return AW_ETOOBIG;
  snprintf(ttl, sizeof ttl, "%ld", m->outcome_ttl_s);
  call *c = new_call(m, conv, cb, opaque);
  if (!c) return AW_ENOMEM;
  /* NX GET (Redis >= 7.0): one round trip both claims and reads. */
  const char *argv[] = {"SET", key, "-", "NX", "GET", "EX", ttl};
  return issue(m, c, 7, argv);
}

int tmap_put_progress(tmap *m, const char *conv, const char *event_id, const char *message_id,
                      const char *run_id, tmap_cb cb, void *opaque) {
  char key[768], val[256], ttl[32];
  if (progress_key(m, conv, event_id, key, sizeof key)) return AW_ETOOBIG;
  if (run_id && *run_id) snprintf(val, sizeof val, "%s %s", message_id, run_id);
  else snprintf(val, sizeof val, "%s", message_id);
  snprintf(ttl, sizeof ttl, "%ld", m->outcome_ttl_s);
  call *c = new_call(m, conv, cb, opaque);
  if (!c) return AW_ENOMEM;
  const char *argv[] = {"SET", key, val, "EX", ttl};
  return issue(m, c, 5, argv);
}

/* redis_conn.c -- async Redis connection with background reconnect. */
#include "redis_conn.h"

#include <hiredis/async.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis_uv.h"

#define CONNECT_TIMEOUT_MS 2000

struct rconn {
  uv_loop_t *loop;
  char *host;
  int port;
  redisAsyncContext *ac; /* NULL while disconnected */
  int connected;
  int closing;           /* rconn_free called */
  long backoff_ms;
  unsigned long errors;
  uv_timer_t timer;      /* reconnect timer, and connect timeout while connecting */
  int connecting;        /* ac exists, connect callback not yet run */
};

typedef struct pending {
  rconn_reply_cb cb;
  void *opaque;
} pending;

static void start_connect(rconn *c);

static void schedule_reconnect(rconn *c);

static void on_timer(uv_timer_t *t) {
  rconn *c = t->data;
  if (c->connecting && c->ac) {
    /* No answer to the connect: give up on it (no callback follows a
     * free before the connection is up) and try again. */
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    c->connecting = 0;
    c->errors++;
    log_warn(NULL, "redis connect to %s:%d timed out", c->host, c->port);
    redisAsyncFree(ac);
    schedule_reconnect(c);
    return;
  }
  start_connect(c);
}

/* Try again later, doubling the wait from 50 ms up to 2 s so that a Redis
 * restart is noticed quickly without spinning while it is down. */
static void schedule_reconnect(rconn *c) {
  if (c->closing) return;
  c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : 50;
  if (c->backoff_ms > 2000) c->backoff_ms = 2000;
  uv_timer_start(&c->timer, on_timer, (uint64_t)c->backoff_ms, 0);
}

static void on_connect(const redisAsyncContext *ac, int status) {
  rconn *c = ac->data;
  c->connecting = 0;
  uv_timer_stop(&c->timer);
  if (status != REDIS_OK) {
    c->errors++;
    log_warn(NULL, "redis connect to %s:%d failed: %s", c->host, c->port, ac->errstr);
    c->ac = NULL; /* hiredis frees the context after this callback */
    c->connected = 0;
    schedule_reconnect(c);
    return;
  }
  c->connected = 1;
  c->backoff_ms = 0;
  log_info(NULL, "redis connected to %s:%d", c->host, c->port);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  rconn *c = ac->data;
  c->connected = 0;
  c->ac = NULL;
  if (c->closing) return;
  c->errors++;
  log_warn(NULL, "redis disconnected from %s:%d (status %d); reconnecting", c->host, c->port, status);
  schedule_reconnect(c);
}

static void start_connect(rconn *c) {
  if (c->closing || c->ac) return;
  redisAsyncContext *ac = redisAsyncConnect(c->host, c->port);
  if (!ac || ac->err) {
    c->errors++;
    log_warn(NULL, "redis connect to %s:%d failed: %s", c->host, c->port, ac ? ac->errstr : "out of memory");
    if (ac) redisAsyncFree(ac);
    schedule_reconnect(c);
    return;
  }
  ac->data = c;
  if (ruv_attach(ac, c->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    schedule_reconnect(c);
    return;
  }
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  c->ac = ac;
  c->connecting = 1;
  uv_timer_start(&c->timer, on_timer, CONNECT_TIMEOUT_MS, 0);
}

int rconn_new(uv_loop_t *loop, const char *host, int port, rconn **out, char *errstr,
              size_t errstr_size) {
  rconn *c = calloc(1, sizeof *c);
  if (!c) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  c->loop = loop;
  c->host = strdup(host);
  c->port = port;
  if (!c->host) {
    free(c);
    return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  }
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  start_connect(c);
  *out = c;
  return AW_OK;
}

int rconn_ready(const rconn *c) { return c->connected; }
unsigned long rconn_errors(const rconn *c) { return c->errors; }

static void on_reply(redisAsyncContext *ac, void *r, void *privdata) {
  pending *p = privdata;
  redisReply *reply = r;
  rconn *c = ac->data;
  int err = AW_OK;
  if (!reply) err = AW_EREDIS;
  else if (reply->type == REDIS_REPLY_ERROR) {
    err = AW_EREDIS;
    c->errors++;
  }
  p->cb(p->opaque, err, reply);
  free(p);
}

int rconn_command(rconn *c, rconn_reply_cb cb, void *opaque, const char *fmt, ...) {
  if (!c->connected || !c->ac) return AW_EREDIS;
  pending *p = malloc(sizeof *p);
  if (!p) return AW_ENOMEM;
  p->cb = cb;
  p->opaque = opaque;
  va_list ap;
  va_start(ap, fmt);
  int rc = redisvAsyncCommand(c->ac, on_reply, p, fmt, ap);
  va_end(ap);
  if (rc != REDIS_OK) {
    free(p);
    return AW_EREDIS;
  }
  return AW_OK;
}

int rconn_commandargv(rconn *c, rconn_reply_cb cb, void *opaque, int argc, const char **argv,
                      const size_t *argvlen) {
  if (!c->connected || !c->ac) return AW_EREDIS;
  pending *p = malloc(sizeof *p);
  if (!p) return AW_ENOMEM;
  p->cb = cb;
  p->opaque = opaque;
  if (redisAsyncCommandArgv(c->ac, on_reply, p, argc, argv, argvlen) != REDIS_OK) {
    free(p);
    return AW_EREDIS;
  }
  return AW_OK;
}

static void on_timer_closed(uv_handle_t *h) {
  rconn *c = h->data;
  free(c->host);
  free(c);
}

void rconn_free(rconn *c) {
  if (!c) return;
  c->closing = 1;
  if (c->ac) {
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    redisAsyncDisconnect(ac); /* pending callbacks run with NULL replies */
  }
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* redis_conn.c -- async Redis connection with background reconnect and an
 * authentication handshake on every connect (see the header). */
#include "redis_conn.h"

#include <hiredis/async.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redis_uv.h"

#define CONNECT_TIMEOUT_MS 2000
#define MSG_SIZE 320
#define USER_SHOWN(c) ((c)->username ? (c)->username : "default")

struct rconn {
  uv_loop_t *loop;
  char *host;
  int port;
  char *username;        /* NULL: the default user */
  char *password;        /* NULL: no AUTH; wiped on free */
  long connect_timeout_ms;
  redisAsyncContext *ac; /* NULL while disconnected */
  int connected;         /* the handshake succeeded: callers may send */
  int closing;           /* rconn_free called */
  long backoff_ms;
  unsigned long errors;
  uv_timer_t timer;      /* reconnect timer, and connect timeout while connecting */
  int connecting;        /* ac exists, connect callback not yet run */
  int handshaking;       /* connected at TCP level, AUTH / PING not answered yet */
  int ever_ready;        /* the connection was up once (auth failures are retry-class then) */
  int auth_failed;       /* the last handshake was refused; auth_err says why */
  char auth_err[256];
};

typedef struct pending {
  rconn_reply_cb cb;
  void *opaque;
} pending;

static void start_connect(rconn *c);

static void schedule_reconnect(rconn *c);

static void on_timer(uv_timer_t *t) {
  rconn *c = t->data;
  if ((c->connecting || c->handshaking) && c->ac) {
    /* No answer to the connect or to the handshake: give up on it and try
     * again.  c->ac is cleared first, so that the callbacks the free runs
     * (the handshake's with NULL, the disconnect callback once connected)
     * see a context that is no longer ours and leave the reconnect to us. */
    redisAsyncContext *ac = c->ac;
    int handshake = c->handshaking;
    c->ac = NULL;
    c->connecting = c->handshaking = 0;
    c->errors++;
    log_warn(NULL, "redis %s to %s:%d timed out", handshake ? "authentication handshake" : "connect", c->host,
             c->port);
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

/* Errors a server answers whatever the credentials while it cannot serve
 * yet (loading its data, a busy script, a replica without its master). */
static int transient(const char *err) {
  static const char *const prefixes[] = {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN"};
  for (size_t i = 0; err && i < sizeof prefixes / sizeof prefixes[0]; i++)
    if (strncmp(err, prefixes[i], strlen(prefixes[i])) == 0) return 1;
  return 0;
}

/* The answer to the handshake (AUTH, or PING without a password).  Runs
 * with reply NULL when the context goes first: then the disconnect callback
 * (or the timeout that dropped it) takes care of reconnecting. */
static void on_handshake(redisAsyncContext *ac, void *r, void *privdata) {
  (void)privdata;
  rconn *c = ac->data;
  redisReply *reply = r;
  if (c->closing || c->ac != ac || !reply) return;
  c->handshaking = 0;
  uv_timer_stop(&c->timer);
  if (reply->type == REDIS_REPLY_ERROR && transient(reply->str)) {
    /* Not about the credentials (PING is refused while an append-only file
     * loads): try again, like a failed connect. */
    c->errors++;
    log_warn(NULL, "redis at %s:%d is not ready yet: %.120s", c->host, c->port, reply->str ? reply->str : "");
    c->ac = NULL;
    redisAsyncFree(ac);
    schedule_reconnect(c);
    return;
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    /* WRONGPASS, NOAUTH, a disabled user...: the server's text names no
     * password, ours names the user only. */
    c->errors++;
    c->auth_failed = 1;
    if (c->password)
      snprintf(c->auth_err, sizeof c->auth_err, "redis at %s:%d refused authentication as user \"%.64s\": %.120s",
               c->host, c->port, USER_SHOWN(c), reply->str ? reply->str : "(no message)");
    else
      snprintf(c->auth_err, sizeof c->auth_err,
               "redis at %s:%d requires authentication and no password is configured (AW_REDIS_PASSWORD or "
               "redis.password_file): %.120s",
               c->host, c->port, reply->str ? reply->str : "(no message)");
    log_error(NULL, "%s%s", c->auth_err, c->ever_ready ? " (retrying)" : "");
    /* Drop this connection and try again later; hiredis defers the free to
     * after this callback, and our disconnect callback ignores it. */
    c->ac = NULL;
    redisAsyncFree(ac);
    schedule_reconnect(c);
    return;
  }
  c->connected = 1;
  c->ever_ready = 1;
  c->auth_failed = 0;
  c->auth_err[0] = '\0';
  c->backoff_ms = 0;
  if (c->password && log_enabled(LOG_INFO)) {
    /* The user as a field: the message stays what it was without AUTH. */
    char msg[MSG_SIZE];
    snprintf(msg, sizeof msg, "redis connected to %s:%d", c->host, c->port);
    const char *kv[2] = {"redis_user", USER_SHOWN(c)};
    log_writekv(LOG_INFO, NULL, msg, kv, 1);
  } else {
    log_info(NULL, "redis connected to %s:%d", c->host, c->port);
  }
}

static void on_connect(const redisAsyncContext *ac, int status) {
  rconn *c = ac->data;
  if (c->closing || c->ac != ac) return;
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
  /* The handshake is the first command on the connection: nothing else can
   * be queued before it, since rconn_command refuses until it succeeded. */
  const char *argv[3];
  size_t argvlen[3];
  int argc = 0;
  if (c->password) {
    argv[argc] = "AUTH", argvlen[argc++] = 4;
    if (c->username) argv[argc] = c->username, argvlen[argc] = strlen(c->username), argc++;
    argv[argc] = c->password, argvlen[argc] = strlen(c->password), argc++;
  } else {
    argv[argc] = "PING", argvlen[argc++] = 4;
  }
  /* hiredis' callback takes a non-const context; this one is ours. */
  if (redisAsyncCommandArgv((redisAsyncContext *)ac, on_handshake, NULL, argc, argv, argvlen) != REDIS_OK) {
    /* Out of memory.  The context cannot be freed inside its connect
     * callback (hiredis uses it afterwards): the handshake timeout drops it. */
    c->errors++;
    log_warn(NULL, "redis connect to %s:%d: cannot send the handshake", c->host, c->port);
  }
  c->handshaking = 1;
  uv_timer_start(&c->timer, on_timer, (uint64_t)c->connect_timeout_ms, 0);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  rconn *c = ac->data;
  /* A context we dropped ourselves (timeout, refused handshake, free):
   * whoever dropped it already decided what comes next. */
  if (c->closing || c->ac != ac) return;
  c->connected = 0;
  c->handshaking = 0;
  c->ac = NULL;
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
  uv_timer_start(&c->timer, on_timer, (uint64_t)c->connect_timeout_ms, 0);
}

static void free_strings(rconn *c) {
  if (c->password) {
    explicit_bzero(c->password, strlen(c->password));
    free(c->password);
  }
  free(c->username);
  free(c->host);
}

int rconn_new(uv_loop_t *loop, const char *host, int port, rconn **out, char *errstr,
              size_t errstr_size) {
  return rconn_new_opts(loop, host, port, NULL, out, errstr, errstr_size);
}

int rconn_new_opts(uv_loop_t *loop, const char *host, int port, const rconn_options *opts, rconn **out,
                   char *errstr, size_t errstr_size) {
  rconn *c = calloc(1, sizeof *c);
  if (!c) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  c->loop = loop;
  c->host = strdup(host);
  c->port = port;
  c->connect_timeout_ms = opts && opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : CONNECT_TIMEOUT_MS;
  int nomem = !c->host;
  if (opts && opts->password && opts->password[0]) {
    nomem |= !(c->password = strdup(opts->password));
    if (opts->username && opts->username[0]) nomem |= !(c->username = strdup(opts->username));
  }
  if (nomem) {
    free_strings(c);
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

int rconn_auth_error(const rconn *c, char *errstr, size_t errstr_size) {
  if (!c->auth_failed) return AW_OK;
  return aw_seterr(c->ever_ready ? AW_EREDIS : AW_EFATAL, errstr, errstr_size, "%s", c->auth_err);
}

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
  free_strings(c);
  free(c);
}

void rconn_free(rconn *c) {
  if (!c) return;
  c->closing = 1;
  if (c->ac) {
    redisAsyncContext *ac = c->ac;
    c->ac = NULL;
    /* Freed now, whatever its state: hiredis calls every pending callback
     * with a NULL reply (AW_EREDIS to our callers) before redisAsyncFree
     * returns, while c and the callers' objects are alive.  A graceful
     * redisAsyncDisconnect would wait for the replies and run the callbacks
     * (and on_disconnect, which reads c) on a later loop iteration, after
     * the caller went on to free what they point to -- and after c itself
     * was freed by on_timer_closed. */
    redisAsyncFree(ac);
  }
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

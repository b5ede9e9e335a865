/* scripted_server.h -- an in-process HTTP server serving canned responses,
 * for the http_client and backend_assistants tests (header-only, static).
 *
 * libmicrohttpd runs it on 127.0.0.1, port 0, thread per connection (so a
 * response may block, e.g. to hang a stream).  A script is a list of routes
 * (method + exact path, query ignored); each route answers its requests
 * with its responses in order, the last one repeating.  The server counts
 * requests per route and TCP connections, and keeps the last request body
 * and headers of each route for assertions.  Counters are read by the test
 * thread under the mutex (ss_count / ss_last_body).
 */
#ifndef SCRIPTED_SERVER_H
#define SCRIPTED_SERVER_H

#include <arpa/inet.h>
#include <microhttpd.h>
#include <uv.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SS_MAX_ROUTES 24
#define SS_MAX_RESP 8

typedef enum {
  SS_PLAIN = 0, /* whole body at once with Content-Length */
  SS_CHUNKED,   /* chunked, `chunk` bytes per write (odd sizes split SSE lines) */
  SS_DROP,      /* chunked, send body then close the connection mid-stream */
  SS_HANG,      /* chunked, send body then block until the server stops */
  SS_CLOSE,     /* take the request (counted), then close the connection with no answer */
} ss_mode;

typedef struct ss_resp {
  int status;
  const char *body;        /* may be NULL */
  const char *ctype;       /* default application/json */
  const char *hname, *hval; /* one extra header, e.g. Retry-After */
  ss_mode mode;
  size_t chunk;            /* SS_CHUNKED/SS_DROP/SS_HANG; 0 = whole body */
} ss_resp;

typedef struct ss_route {
  const char *method;
  const char *path;
  ss_resp resp[SS_MAX_RESP];
  int nresp;
  /* filled by the server */
  int count;
  char *last_body;
  char *last_query;
  char last_auth[128];
  char last_beta[64];
} ss_route;

typedef struct ss_server {
  struct MHD_Daemon *d;
  unsigned short port;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int stopping;
  int connections;
  int unmatched;
  ss_route routes[SS_MAX_ROUTES];
  int nroutes;
} ss_server;

typedef struct ss_conn {
  char *body;
  size_t len;
} ss_conn;

typedef struct ss_stream {
  ss_server *s;
  ss_resp r;
} ss_stream;

/* Add a route; returns it so responses can be appended with ss_add_resp. */
static inline ss_route *ss_route_add(ss_server *s, const char *method, const char *path) {
  ss_route *r = &s->routes[s->nroutes++];
  memset(r, 0, sizeof *r);
  r->method = method;
  r->path = path;
  return r;
}

static inline ss_route *ss_add_resp(ss_route *r, ss_resp resp) {
  r->resp[r->nresp++] = resp;
  return r;
}

static inline ssize_t ss_reader(void *cls, uint64_t pos, char *buf, size_t max) {
  ss_stream *st = cls;
  size_t len = st->r.body ? strlen(st->r.body) : 0;
  if (pos < len) {
    size_t n = len - (size_t)pos;
    if (st->r.chunk && n > st->r.chunk) n = st->r.chunk;
    if (n > max) n = max;
    memcpy(buf, st->r.body + pos, n);
    return (ssize_t)n;
  }
  if (st->r.mode == SS_DROP) return MHD_CONTENT_READER_END_WITH_ERROR;
  if (st->r.mode == SS_HANG) {
    pthread_mutex_lock(&st->s->mu);
    while (!st->s->stopping) pthread_cond_wait(&st->s->cv, &st->s->mu);
    pthread_mutex_unlock(&st->s->mu);
    return MHD_CONTENT_READER_END_WITH_ERROR;
  }
  return MHD_CONTENT_READER_END_OF_STREAM;
}

static inline int ss_query_it(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  (void)kind;
  char *q = cls;
  size_t l = strlen(q);
  snprintf(q + l, 512 - l, "%s%s=%s", l ? "&" : "", key, value ? value : "");
  return MHD_YES;
}

static inline enum MHD_Result ss_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                         const char *method, const char *version,
                                         const char *upload, size_t *upload_size, void **con_cls) {
  (void)version;
  ss_server *s = cls;
  ss_conn *c = *con_cls;
  if (!c) {
    c = calloc(1, sizeof *c);
    *con_cls = c;
    return MHD_YES;
  }
  if (*upload_size) {
    c->body = realloc(c->body, c->len + *upload_size + 1);
    memcpy(c->body + c->len, upload, *upload_size);
    c->len += *upload_size;
    c->body[c->len] = '\0';
    *upload_size = 0;
    return MHD_YES;
  }
  ss_resp resp = {.status = 404, .body = "{\"error\":{\"message\":\"no route\",\"type\":\"invalid_request_error\"}}"};
  pthread_mutex_lock(&s->mu);
  ss_route *r = NULL;
  for (int i = 0; i < s->nroutes; i++)
    if (!strcmp(s->routes[i].method, method) && !strcmp(s->routes[i].path, url)) r = &s->routes[i];
  if (r) {
    int i = r->count < r->nresp ? r->count : r->nresp - 1;
    if (i >= 0) resp = r->resp[i];
    r->count++;
    free(r->last_body);
    r->last_body = c->body ? strdup(c->body) : NULL;
    char q[512] = "";
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, (MHD_KeyValueIterator)ss_query_it, q);
    free(r->last_query);
    r->last_query = strdup(q);
    const char *a = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    snprintf(r->last_auth, sizeof r->last_auth, "%s", a ? a : "");
    const char *b = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "OpenAI-Beta");
    snprintf(r->last_beta, sizeof r->last_beta, "%s", b ? b : "");
  } else {
    s->unmatched++;
  }
  pthread_mutex_unlock(&s->mu);

  if (resp.mode == SS_CLOSE) return MHD_NO; /* applied, then the connection died */
  struct MHD_Response *mr;
  if (resp.mode == SS_PLAIN) {
    const char *b = resp.body ? resp.body : "";
    mr = MHD_create_response_from_buffer(strlen(b), (void *)b, MHD_RESPMEM_PERSISTENT);
  } else {
    ss_stream *st = calloc(1, sizeof *st);
    st->s = s;
    st->r = resp;
    mr = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, ss_reader, st, free);
  }
  MHD_add_response_header(mr, "Content-Type", resp.ctype ? resp.ctype : "application/json");
  if (resp.hname) MHD_add_response_header(mr, resp.hname, resp.hval);
  enum MHD_Result ret = MHD_queue_response(conn, (unsigned)resp.status, mr);
  MHD_destroy_response(mr);
  return ret;
}

static inline void ss_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                                enum MHD_RequestTerminationCode toe) {
  (void)cls;
  (void)conn;
  (void)toe;
  ss_conn *c = *con_cls;
  if (c) {
    free(c->body);
    free(c);
  }
  *con_cls = NULL;
}

static inline void ss_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                             enum MHD_ConnectionNotificationCode code) {
  (void)conn;
  (void)socket_context;
  ss_server *s = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    pthread_mutex_lock(&s->mu);
    s->connections++;
    pthread_mutex_unlock(&s->mu);
  }
}

/* Start serving the routes already added.  Returns 0 on success. */
static inline int ss_start(ss_server *s) {
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv, NULL);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  /* No MHD_USE_ERROR_LOG: dropped streams are on purpose here. */
  s->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD,
                          0, NULL, NULL, ss_handler, s, MHD_OPTION_SOCK_ADDR, &addr,
                          MHD_OPTION_NOTIFY_COMPLETED, ss_completed, s,
                          MHD_OPTION_NOTIFY_CONNECTION, ss_notify, s, MHD_OPTION_END);
  if (!s->d) return -1;
  const union MHD_DaemonInfo *i = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
  s->port = i ? i->port : 0;
  return s->port ? 0 : -1;
}

static inline void ss_stop(ss_server *s) {
  pthread_mutex_lock(&s->mu);
  s->stopping = 1;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (s->d) MHD_stop_daemon(s->d);
  s->d = NULL;
  for (int i = 0; i < s->nroutes; i++) {
    free(s->routes[i].last_body);
    free(s->routes[i].last_query);
  }
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
}

static inline int ss_count(ss_server *s, const ss_route *r) {
  pthread_mutex_lock(&s->mu);
  int n = r->count;
  pthread_mutex_unlock(&s->mu);
  return n;
}

static inline int ss_connections(ss_server *s) {
  pthread_mutex_lock(&s->mu);
  int n = s->connections;
  pthread_mutex_unlock(&s->mu);
  return n;
}

/* Copy of the route's last request body ("" if none); caller frees. */
static inline char *ss_last_body(ss_server *s, const ss_route *r) {
  pthread_mutex_lock(&s->mu);
  char *b = strdup(r->last_body ? r->last_body : "");
  pthread_mutex_unlock(&s->mu);
  return b;
}

static inline char *ss_last_query(ss_server *s, const ss_route *r) {
  pthread_mutex_lock(&s->mu);
  char *b = strdup(r->last_query ? r->last_query : "");
  pthread_mutex_unlock(&s->mu);
  return b;
}

/* ---- driving the test's loop --------------------------------------------------- */

/* Includers include <cmocka.h> first (assert_false). */
static int ss_guard_fired;

static inline void ss_on_guard(uv_timer_t *t) {
  ss_guard_fired = 1;
  uv_stop(t->loop);
}

/* Run the loop until *flag is set (the tests' callbacks uv_stop the loop so
 * the flag is re-checked); fails the test after 10 s. */
static inline void ss_run_until(uv_loop_t *loop, const int *flag) {
  uv_timer_t guard;
  ss_guard_fired = 0;
  uv_timer_init(loop, &guard);
  uv_timer_start(&guard, ss_on_guard, 10000, 0);
  while (!*flag && !ss_guard_fired) uv_run(loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&guard, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  assert_false(ss_guard_fired);
}

#endif

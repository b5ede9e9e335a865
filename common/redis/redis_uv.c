/* redis_uv.c -- hiredis async events on libuv (see the header for why). */
#include "redis_uv.h"

#include <stdlib.h>

typedef struct ruv {
  redisAsyncContext *ac; /* NULL once hiredis cleaned up */
  uv_poll_t poll;
  int events;            /* UV_READABLE | UV_WRITABLE wanted by hiredis */
} ruv;

static void on_poll(uv_poll_t *h, int status, int events) {
  ruv *p = h->data;
  /* An error (the connect was refused, the socket broke) is readiness for
   * whatever hiredis waits for: its read or write then fails and hiredis
   * runs the connect or disconnect callback. */
  int ev = status != 0 ? p->events : events;
  if (p->ac && (ev & UV_READABLE)) redisAsyncHandleRead(p->ac);
  if (p->ac && (ev & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void update(ruv *p) {
  if (p->events) uv_poll_start(&p->poll, p->events, on_poll);
  else uv_poll_stop(&p->poll);
}

static void add_read(void *d) {
  ruv *p = d;
  p->events |= UV_READABLE;
  update(p);
}

static void del_read(void *d) {
  ruv *p = d;
  p->events &= ~UV_READABLE;
  update(p);
}

static void add_write(void *d) {
  ruv *p = d;
  p->events |= UV_WRITABLE;
  update(p);
}

static void del_write(void *d) {
  ruv *p = d;
  p->events &= ~UV_WRITABLE;
  update(p);
}

static void on_closed(uv_handle_t *h) { free(h->data); }

static void cleanup(void *d) {
  ruv *p = d;
  p->ac = NULL; /* the context is being freed */
  uv_close((uv_handle_t *)&p->poll, on_closed);
}

int ruv_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  if (ac->ev.data) return REDIS_ERR;
  ruv *p = calloc(1, sizeof *p);
  if (!p) return REDIS_ERR;
  if (uv_poll_init(loop, &p->poll, ac->c.fd) != 0) {
    free(p);
    return REDIS_ERR;
  }
  p->ac = ac;
  p->poll.data = p;
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  ac->ev.cleanup = cleanup;
  ac->ev.data = p;
  return REDIS_OK;
}

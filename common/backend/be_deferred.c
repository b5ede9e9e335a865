/* be_deferred.c -- answer on the next loop iteration, cancellable (see
 * be_deferred.h for why).
 *
 * The timer is closed as it fires, before the answer runs: its memory goes
 * in the close callback, in the closing phase of this same iteration, so
 * the defer stays valid for the whole answer (a be_defer_cancel from inside
 * it only marks it) and needs nobody to free it afterwards.
 */
#include "be_deferred.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct be_defer {
  uv_timer_t timer;
  /* be_defer_call */
  be_defer_fn fn;
  void *arg;
  /* be_defer_result */
  be_result_cb cb;
  void *opaque;
  void (*release)(void *owner);
  void *owner;
  be_result res;            /* its strings point into the buffers below */
  char errmsg[384];
  char error_code[64];
  char id[BE_HANDLE_MAX];
  int firing, cancelled;
};

static void on_closed(uv_handle_t *h) { free(h->data); }

static void close_timer(be_defer *d) {
  uv_timer_stop(&d->timer);
  uv_close((uv_handle_t *)&d->timer, on_closed);
}

static void on_fire(uv_timer_t *h) {
  be_defer *d = h->data;
  d->firing = 1;
  close_timer(d); /* freed after this callback: d is valid until we return */
  if (d->fn) {
    d->fn(d->arg);
    return;
  }
  if (d->cb) d->cb(d->opaque, &d->res);
  if (d->release) d->release(d->owner);
}

static int start(uv_loop_t *loop, be_defer *d, be_defer **out) {
  if (uv_timer_init(loop, &d->timer) != 0) {
    free(d);
    return AW_ENOMEM;
  }
  d->timer.data = d;
  /* A zero timeout runs in the next iteration's timer phase, never in this
   * call (libuv runs no callback from uv_timer_start). */
  if (uv_timer_start(&d->timer, on_fire, 0, 0) != 0) {
    uv_close((uv_handle_t *)&d->timer, on_closed);
    return AW_ENOMEM;
  }
  *out = d;
  return AW_OK;
}

int be_defer_call(uv_loop_t *loop, be_defer_fn fn, void *arg, be_defer **out) {
  *out = NULL;
  if (!loop || !fn) return AW_EINVAL;
  be_defer *d = calloc(1, sizeof *d);
  if (!d) return AW_ENOMEM;
  d->fn = fn;
  d->arg = arg;
  return start(loop, d, out);
}

/* dst <- src cut to the buffer; NULL stays NULL. */
static const char *keep(char *dst, size_t n, const char *src) {
  if (!src) return NULL;
  snprintf(dst, n, "%s", src);
  return dst;
}

int be_defer_result(uv_loop_t *loop, const be_result *res, be_result_cb cb, void *opaque,
                    void (*release)(void *owner), void *owner, be_defer **out) {
  *out = NULL;
  if (!loop || !res || !cb) return AW_EINVAL;
  be_defer *d = calloc(1, sizeof *d);
  if (!d) return AW_ENOMEM;
  d->cb = cb;
  d->opaque = opaque;
  d->release = release;
  d->owner = owner;
  d->res.err = res->err;
  d->res.http_status = res->http_status;
  d->res.errmsg = keep(d->errmsg, sizeof d->errmsg, res->errmsg);
  d->res.error_code = keep(d->error_code, sizeof d->error_code, res->error_code);
  d->res.id = keep(d->id, sizeof d->id, res->id);
  return start(loop, d, out);
}

void be_defer_cancel(be_defer *d) {
  if (!d) return;
  if (d->firing) {
    /* Inside the answer: it is under way, release follows it. */
    d->cancelled = 1;
    return;
  }
  if (d->cancelled) return;
  d->cancelled = 1;
  close_timer(d);
  if (d->release) d->release(d->owner);
}

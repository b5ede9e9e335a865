/* kafka_uv.c -- librdkafka queue io events on a libuv loop. */
#include "kafka_uv.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

struct kuv_watch {
  rd_kafka_queue_t *q;
  int fds[2];
  uv_poll_t poll;
  uv_timer_t tick;
  uv_idle_t again;   /* runs serve once more next iteration when asked */
  kuv_serve_fn serve;
  void *opaque;
  int closing;       /* handles left to close */
};

static void on_again(uv_idle_t *h);

static void run(kuv_watch *w) {
  if (w->serve(w->opaque)) {
    if (!uv_is_active((uv_handle_t *)&w->again)) uv_idle_start(&w->again, on_again);
  }
}

static void on_again(uv_idle_t *h) {
  kuv_watch *w = h->data;
  uv_idle_stop(h);
  run(w);
}

static void on_readable(uv_poll_t *h, int status, int events) {
  kuv_watch *w = h->data;
  (void)status;
  (void)events;
  char drain[256];
  while (read(w->fds[0], drain, sizeof drain) > 0) {
  }
  run(w);
}

static void on_tick(uv_timer_t *t) { run((kuv_watch *)t->data); }

int kuv_watch_new(uv_loop_t *loop, rd_kafka_queue_t *q, kuv_serve_fn serve, void *opaque,
                  uint64_t tick_ms, kuv_watch **out) {
  kuv_watch *w = calloc(1, sizeof *w);
  if (!w) return AW_ENOMEM;
  if (pipe2(w->fds, O_NONBLOCK | O_CLOEXEC) != 0) {
    free(w);
    return AW_EIO;
  }
  w->q = q;
  w->serve = serve;
  w->opaque = opaque;
  uv_poll_init(loop, &w->poll, w->fds[0]);
  uv_timer_init(loop, &w->tick);
  uv_idle_init(loop, &w->again);
  w->poll.data = w->tick.data = w->again.data = w;
  rd_kafka_queue_io_event_enable(q, w->fds[1], "1", 1);
  uv_poll_start(&w->poll, UV_READABLE, on_readable);
  uv_timer_start(&w->tick, on_tick, tick_ms, tick_ms);
  *out = w;
  return AW_OK;
}

static void on_closed(uv_handle_t *h) {
  kuv_watch *w = h->data;
  if (--w->closing == 0) {
    close(w->fds[0]);
    close(w->fds[1]);
    free(w);
  }
}

void kuv_watch_free(kuv_watch *w) {
  if (!w) return;
  rd_kafka_queue_io_event_enable(w->q, -1, NULL, 0);
  w->closing = 3;
  uv_close((uv_handle_t *)&w->poll, on_closed);
  uv_close((uv_handle_t *)&w->tick, on_closed);
  uv_close((uv_handle_t *)&w->again, on_closed);
}

/* conv_sched.c -- when an event may take its next step (prefix wks_): one
 * at a time per conversation, in arrival order (the conversation FIFO), from
 * the loop rather than from inside a callback (the ready list), and again
 * later after a transient failure (the retry list).
 *
 * Cut here because ordering is a property of its own ("ordered per
 * conversation, concurrent across conversations"): the event machine says
 * what a step does, this module says when it runs.
 */
#include "conv_sched.h"

#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "outbox.h"
#include "worker_tools.h"

/* ---- ready list: start events from the loop, not from callbacks ----------- */

static void on_ready(uv_idle_t *h) {
  wk *w = h->data;
  wk_event *list = w->ready_head;
  w->ready_head = w->ready_tail = NULL;
  uv_idle_stop(h);
  while (list) {
    wk_event *ev = list;
    list = ev->ready_next;
    ev->ready_next = NULL;
    ev->in_ready = 0;
    wk_ev_start(ev);
  }
}

void wks_ready(wk_event *ev) {
  wk *w = ev->w;
  if (ev->in_ready) return;
  ev->in_ready = 1;
  ev->ready_next = NULL;
  if (w->ready_tail) w->ready_tail->ready_next = ev;
  else w->ready_head = ev;
  w->ready_tail = ev;
  if (!uv_is_active((uv_handle_t *)&w->ready_idle)) uv_idle_start(&w->ready_idle, on_ready);
}

/* ---- retry list: transient Redis / Kafka failures ------------------------ */

static void on_retry_timer(uv_timer_t *t) {
  wk *w = t->data;
  wk_event *list = w->retry_head;
  w->retry_head = NULL;
  while (list) {
    wk_event *ev = list;
    list = ev->retry_next;
    ev->in_retry = 0;
    if (ev->state == ST_PUBLISHING) wko_publish(ev);
    else if (ev->state == ST_TOOLS) wkt_retry(ev);
    else wk_ev_start(ev);
  }
  if (!w->retry_head) uv_timer_stop(t);
}

void wks_retry_later(wk_event *ev) {
  wk *w = ev->w;
  if (ev->in_retry) return;
  ev->in_retry = 1;
  ev->retry_next = w->retry_head;
  w->retry_head = ev;
  if (!uv_is_active((uv_handle_t *)&w->retry_timer))
    uv_timer_start(&w->retry_timer, on_retry_timer, RETRY_TICK_MS, RETRY_TICK_MS);
}

/* ---- conversations ----------------------------------------------------------- */

/* Queue ev behind earlier events of its conversation; start it if first. */
int wks_enqueue(wk *w, wk_event *ev) {
  wk_conv *c = NULL;
  /* By reference: two tenants' conversations of the same id are two queues. */
  const char *id = ev->conv_ref[0] ? ev->conv_ref : ev->conv_id;
  HASH_FIND_STR(w->convs, id, c);
  int max = w->cfg.max_queue_per_conversation;
  if (c && max > 0 && c->n >= max) return AW_EAGAIN;
  if (!c) {
    c = calloc(1, sizeof *c);
    if (!c || !(c->id = strdup(id))) {
      free(c);
      return AW_ENOMEM;
    }
    HASH_ADD_KEYPTR(hh, w->convs, c->id, strlen(c->id), c);
  }
  ev->conv = c;
  c->n++;
  wk_ev_set_state(ev, ST_QUEUED);
  if (c->tail) {
    c->tail->next = ev;
    c->tail = ev;
  } else {
    c->head = c->tail = ev;
    wks_ready(ev);
  }
  return AW_OK;
}

/* ---- out of band -------------------------------------------------------------
 *
 * An event that is in no conversation queue is still owned by the worker
 * until it finishes: a doubly linked list (O(1) in and out) lets wk_free
 * find it.  Its offset needs nothing special: intake tracked it like any
 * other, and the offset tracker commits only the prefix of done offsets. */

static void oob_unlink(wk *w, wk_event *ev) {
  if (ev->oob_prev) ev->oob_prev->oob_next = ev->oob_next;
  else if (w->oob_head == ev) w->oob_head = ev->oob_next;
  else return; /* not on the list */
  if (ev->oob_next) ev->oob_next->oob_prev = ev->oob_prev;
  ev->oob_prev = ev->oob_next = NULL;
}

void wks_start_out_of_band(wk *w, wk_event *ev) {
  ev->conv = NULL;
  ev->oob_prev = NULL;
  ev->oob_next = w->oob_head;
  if (w->oob_head) w->oob_head->oob_prev = ev;
  w->oob_head = ev;
  wks_ready(ev);
}

wk_event *wks_head(wk *w, const char *conv_ref) {
  wk_conv *c = NULL;
  if (!conv_ref || !*conv_ref) return NULL;
  HASH_FIND_STR(w->convs, conv_ref, c);
  return c ? c->head : NULL;
}

/* ev (the head) is done: the next event of the conversation may start. */
void wks_advance(wk *w, wk_event *ev) {
  wk_conv *c = ev->conv;
  if (!c) {
    oob_unlink(w, ev);
    return;
  }
  c->head = ev->next;
  c->n--;
  if (!c->head) {
    c->tail = NULL;
    HASH_DEL(w->convs, c);
    free(c->id);
    free(c);
  } else {
    /* An abandoned event's successors must not overtake it: they are left
     * to the next owner too. */
    if (ev->abandoned) c->head->abandoned = 1;
    wks_ready(c->head);
  }
}

void wks_free_all(wk *w) {
  wk_conv *c, *tmp;
  HASH_ITER(hh, w->convs, c, tmp) {
    wk_event *ev = c->head;
    while (ev) {
      wk_event *next = ev->next;
      be_op_cancel(ev->op);
      wk_ev_free(ev);
      ev = next;
    }
    HASH_DEL(w->convs, c);
    free(c->id);
    free(c);
  }
  while (w->oob_head) {
    wk_event *ev = w->oob_head;
    oob_unlink(w, ev);
    be_op_cancel(ev->op);
    wk_ev_free(ev);
  }
}

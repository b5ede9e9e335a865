/* delta.c -- streamed text of a turn, batched into delta messages (prefix
 * wkd_): text is buffered per event and produced when DELTA_FLUSH_BYTES
 * have gathered or the delta window (delta_window_ms) has passed, whichever
 * comes first, and a recovered turn's text is published again whole.
 *
 * Cut here because coalescing is a throughput trade (fewer, larger
 * messages against a little latency) with its own timer and dirty list,
 * and nothing else in the event's life depends on it: deltas are best
 * effort, the response carries the whole text.
 */
#include "delta.h"

#include <string.h>

#include "event.h"
#include "outbox.h"

void wkd_flush(wk_event *ev) {
  if (!ev->delta.len) return;
  buf enc;
  buf_init(&enc, DELTA_MAX_BYTES + 1024);
  const char *run = ev->h_turn[0] ? ev->h_turn : NULL;
  /* A recovered turn's text is published whole again from seq 0: attempt 1
   * tells readers to drop what attempt 0 published (every replay carries
   * the same text at the same seqs).  A backend that generates the text
   * again (a stateless server cannot resume) numbers its generations, and
   * a reader keeps only the highest attempt it saw. */
  int attempt = ev->attempt > 0 ? ev->attempt : ev->recover ? 1 : 0;
  if (contract_delta_encode(ev->event_id, ev->conv_id, run, ev->seq, attempt, ev->delta.data,
                            ev->delta.len, &enc) == AW_OK &&
      wko_produce(ev, ev->w->cfg.topic_deltas, DR_DELTA, ev->conv_id, strlen(ev->conv_id), enc.data,
                 enc.len, NULL, 0) == AW_OK) {
    ev->seq++;
    ev->w->st.deltas++;
  } else {
    /* A lost delta breaks "deltas concatenate to the answer" for this one
     * event; the response still carries the full text. */
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "could not produce delta %lld", (long long)ev->seq);
    ev->w->st.kafka_errors++;
  }
  buf_free(&enc);
  buf_reset(&ev->delta);
}

static void on_delta_timer(uv_timer_t *t) {
  wk *w = t->data;
  wk_event *list = w->dirty_head;
  w->dirty_head = NULL;
  while (list) {
    wk_event *ev = list;
    list = ev->dirty_next;
    ev->in_dirty = 0;
    wkd_flush(ev);
  }
  uv_timer_stop(t);
}

void wkd_new_attempt(wk_event *ev, int attempt) {
  if (attempt <= ev->attempt) return;
  /* Text still buffered belongs to the abandoned generation: readers drop
   * it anyway once they see the new attempt, so it is not sent. */
  wkd_unschedule(ev);
  buf_reset(&ev->delta);
  ev->attempt = attempt;
  ev->seq = 0;
}

void wkd_unschedule(wk_event *ev) {
  wk *w = ev->w;
  if (!ev->in_dirty) return;
  for (wk_event **pp = &w->dirty_head; *pp; pp = &(*pp)->dirty_next) {
    if (*pp == ev) {
      *pp = ev->dirty_next;
      break;
    }
  }
  ev->in_dirty = 0;
}

/* A recovered turn delivers no deltas; a streamed request still gets the
 * whole text as deltas, from seq 0 of this attempt (readers reset on seq 0). */
void wkd_republish(wk_event *ev, const be_turn_result *res) {
  for (size_t i = 0; i < res->nmessages; i++) {
    for (size_t j = 0; j < res->messages[i].nparts; j++) {
      const contract_out_part *p = &res->messages[i].parts[j];
      if (strcmp(p->type, "text") != 0) continue;
      for (size_t off = 0; off < p->text_len; off += DELTA_FLUSH_BYTES) {
        size_t n = p->text_len - off < DELTA_FLUSH_BYTES ? p->text_len - off : DELTA_FLUSH_BYTES;
        if (buf_append(&ev->delta, p->text + off, n) == AW_OK) wkd_flush(ev);
      }
    }
  }
}

void wkd_on_text(void *opaque, const char *text, size_t len) {
  wk_event *ev = opaque;
  wk *w = ev->w;
  if (!ev->req->stream) return;
  if (buf_append(&ev->delta, text, len) != AW_OK) {
    buf_init(&ev->delta, DELTA_MAX_BYTES);
    log_ctx c = wk_ev_ctx(ev);
    log_warn(&c, "delta larger than %d bytes dropped", DELTA_MAX_BYTES);
    return;
  }
  if (ev->delta.len >= DELTA_FLUSH_BYTES || w->cfg.delta_window_ms <= 0) {
    wkd_unschedule(ev);
    wkd_flush(ev);
  } else if (!ev->in_dirty) {
    ev->in_dirty = 1;
    ev->dirty_next = w->dirty_head;
    w->dirty_head = ev;
    if (!uv_is_active((uv_handle_t *)&w->delta_timer))
      uv_timer_start(&w->delta_timer, on_delta_timer, (uint64_t)w->cfg.delta_window_ms, 0);
  }
}

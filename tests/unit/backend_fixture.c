/* backend_fixture.c -- see backend_fixture.h.
 *
 * The ports answer from a timer, never inside the call, as Redis does: a
 * backend that relied on a synchronous answer would pass here and fail in
 * production otherwise.  Each claim and history request has its own timer,
 * so several may be in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "backend_fixture.h"

uv_loop_t *bfx_loop;

/* ---- the store ------------------------------------------------------------------ */

struct bfx_claim {
  uv_timer_t t; /* first: the handle is the request */
  bfx_store *s;
  be_store_cb cb;
  void *opaque;
  bfx_claim *next; /* held */
};

static void claim_closed(uv_handle_t *h) { free(h); }

static void claim_fire(uv_timer_t *h) {
  bfx_claim *c = (bfx_claim *)h;
  bfx_store *s = c->s;
  s->answered++;
  if (s->fail) c->cb(c->opaque, AW_EREDIS, NULL);
  else c->cb(c->opaque, AW_OK, s->handle);
  uv_close((uv_handle_t *)h, claim_closed);
}

static int store_claim(void *self, const char *key, const char *conv, const char *handle, be_store_cb cb,
                       void *opaque) {
  bfx_store *s = self;
  s->claims++;
  snprintf(s->key, sizeof s->key, "%s", key);
  if (!s->handle[0]) {
    snprintf(s->conv, sizeof s->conv, "%s", conv);
    snprintf(s->handle, sizeof s->handle, "%s", handle);
  }
  bfx_claim *c = calloc(1, sizeof *c);
  assert_non_null(c);
  c->s = s;
  c->cb = cb;
  c->opaque = opaque;
  uv_timer_init(s->loop, &c->t);
  if (s->hold) {
    c->next = s->held;
    s->held = c;
  } else {
    uv_timer_start(&c->t, claim_fire, 0, 0);
  }
  return AW_OK;
}

void bfx_store_release(bfx_store *s) {
  while (s->held) {
    bfx_claim *c = s->held;
    s->held = c->next;
    uv_timer_start(&c->t, claim_fire, 0, 0);
  }
}

/* ---- the history ------------------------------------------------------------------ */

enum { H_LOAD = 1, H_SAVE, H_COMMIT };

typedef struct hreq {
  uv_timer_t t;
  bfx_history *h;
  int kind;
  char ev[64];
  char *text;
  size_t max;
  be_history_load_cb lcb;
  be_history_cb cb;
  void *opaque;
} hreq;

void bfx_hist_add(bfx_history *h, const char *ev, const char *turn) {
  assert_true(h->nturns < BFX_HIST_MAX);
  snprintf(h->tev[h->nturns], sizeof h->tev[0], "%s", ev);
  h->turns[h->nturns++] = strdup(turn);
}

void bfx_hist_set_pending(bfx_history *h, const char *ev, const char *turn) {
  free(h->pending);
  h->pending = turn ? strdup(turn) : NULL;
  snprintf(h->pev, sizeof h->pev, "%s", ev);
}

static int hist_committed(const bfx_history *h, const char *ev) {
  for (size_t i = 0; i < h->nturns; i++)
    if (!strcmp(h->tev[i], ev)) return 1;
  return 0;
}

static void hreq_closed(uv_handle_t *hd) {
  hreq *r = (hreq *)hd;
  free(r->text);
  free(r);
}

static void hist_load_answer(hreq *r) {
  bfx_history *h = r->h;
  if (h->fail_load) {
    r->lcb(r->opaque, AW_EREDIS, NULL);
    return;
  }
  size_t first = h->nturns > r->max ? h->nturns - r->max : 0;
  const char *turns[BFX_HIST_MAX];
  size_t lens[BFX_HIST_MAX];
  for (size_t i = first; i < h->nturns; i++) {
    turns[i - first] = h->turns[i];
    lens[i - first] = strlen(h->turns[i]);
  }
  be_history_view v = {.turns = turns, .lens = lens, .nturns = h->nturns - first,
                       .committed = hist_committed(h, r->ev)};
  if (h->pending && !strcmp(h->pev, r->ev)) {
    v.pending = h->pending;
    v.pending_len = strlen(h->pending);
  }
  r->lcb(r->opaque, AW_OK, &v);
}

/* The port's contract: append unless the event's turn is there. */
static void hist_commit_answer(hreq *r) {
  bfx_history *h = r->h;
  if (h->fail_commit) {
    r->cb(r->opaque, AW_EREDIS, 0);
    return;
  }
  if (h->commit_race) bfx_hist_add(h, r->ev, h->commit_race);
  int applied = !hist_committed(h, r->ev);
  if (applied) bfx_hist_add(h, r->ev, r->text);
  h->applied += applied;
  if (h->pending && !strcmp(h->pev, r->ev)) bfx_hist_set_pending(h, "", NULL);
  r->cb(r->opaque, AW_OK, applied);
}

static void hreq_fire(uv_timer_t *t) {
  hreq *r = (hreq *)t;
  bfx_history *h = r->h;
  if (r->kind == H_LOAD) {
    hist_load_answer(r);
  } else if (r->kind == H_SAVE) {
    if (h->fail_save) {
      r->cb(r->opaque, AW_EREDIS, 0);
    } else {
      bfx_hist_set_pending(h, r->ev, r->text);
      r->cb(r->opaque, AW_OK, 1);
    }
  } else {
    hist_commit_answer(r);
  }
  uv_close((uv_handle_t *)t, hreq_closed);
}

static hreq *hreq_new(bfx_history *h, int kind, const char *ev, const char *text, size_t len, void *opaque) {
  hreq *r = calloc(1, sizeof *r);
  assert_non_null(r);
  r->h = h;
  r->kind = kind;
  r->opaque = opaque;
  snprintf(r->ev, sizeof r->ev, "%s", ev);
  if (text) r->text = strndup(text, len);
  uv_timer_init(h->loop, &r->t);
  uv_timer_start(&r->t, hreq_fire, h->delay_ms, 0);
  return r;
}

static int hist_load(void *self, const char *conv, const char *ev, size_t max, be_history_load_cb cb,
                     void *opaque) {
  bfx_history *h = self;
  (void)conv;
  h->loads++;
  h->last_max_turns = max;
  hreq *r = hreq_new(h, H_LOAD, ev, NULL, 0, opaque);
  r->max = max;
  r->lcb = cb;
  return AW_OK;
}

static int hist_save(void *self, const char *conv, const char *ev, const char *turn, size_t len, be_history_cb cb,
                     void *opaque) {
  bfx_history *h = self;
  (void)conv;
  if (h->no_saves) fail_msg("no tool round is saved by these tests");
  h->saves++;
  hreq_new(h, H_SAVE, ev, turn, len, opaque)->cb = cb;
  return AW_OK;
}

static int hist_commit(void *self, const char *conv, const char *ev, const char *turn, size_t len,
                       be_history_cb cb, void *opaque) {
  bfx_history *h = self;
  (void)conv;
  h->commits++;
  hreq_new(h, H_COMMIT, ev, turn, len, opaque)->cb = cb;
  return AW_OK;
}

/* ---- the fixture -------------------------------------------------------------------- */

bfx *bfx_new(bfx_kind kind) {
  bfx *f = calloc(1, sizeof *f);
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  bfx_loop = &f->loop;
  f->kind = kind;
  be_http_config_default(&f->cfg);
  f->cfg.api_key = "sk-test-secret";
  f->cfg.retry_base_ms = 1; /* fast backoff: tests count requests, not time */
  f->cfg.retry_max_ms = 5;
  f->store.loop = &f->loop;
  f->store.port = (be_store){.claim_handle = store_claim, .self = &f->store};
  f->cfg.store = &f->store.port;
  f->hist.loop = &f->loop;
  f->hist.port = (be_history){.load = hist_load, .save_pending = hist_save, .commit = hist_commit, .self = &f->hist};
  f->cfg.history = &f->hist.port;
  if (kind == BFX_CHAT) f->post = ss_route_add(&f->srv, "POST", "/v1/chat/completions");
  return f;
}

static void start_api(bfx *f) {
  api_config ac;
  api_config_default(&ac);
  ac.base_url = f->base;
  ac.api_key = f->cfg.api_key;
  ac.retry.base_ms = f->cfg.retry_base_ms;
  ac.retry.max_ms = f->cfg.retry_max_ms;
  ac.request_timeout_ms = 5000;
  char err[128];
  assert_int_equal(api_client_new(&f->loop, &ac, &f->api, err, sizeof err), AW_OK);
}

void bfx_start(bfx *f) {
  assert_int_equal(ss_start(&f->srv), 0);
  snprintf(f->base, sizeof f->base, "http://127.0.0.1:%u/v1", f->srv.port);
  f->cfg.base_url = f->base;
  char err[128];
  switch (f->kind) {
  case BFX_RESPONSES:
    assert_int_equal(be_responses_new(&f->loop, &f->cfg, &f->be, err, sizeof err), AW_OK);
    break;
  case BFX_ASSISTANTS:
    assert_int_equal(be_assistants_new(&f->loop, &f->cfg, &f->be, err, sizeof err), AW_OK);
    assert_string_equal(be_kind(f->be), "assistants");
    assert_string_equal(be_handle_key(f->be), "thread");
    break;
  case BFX_CHAT:
    assert_int_equal(be_chat_new(&f->loop, &f->cfg, &f->be, err, sizeof err), AW_OK);
    break;
  case BFX_API:
    start_api(f);
    break;
  }
}

void bfx_expect_body(bfx *f, const ss_route *r, const char *want) {
  char *b = ss_last_body(&f->srv, r);
  assert_string_equal(b, want);
  free(b);
}

void bfx_expect_query(bfx *f, const ss_route *r, const char *want) {
  char *q = ss_last_query(&f->srv, r);
  assert_string_equal(q, want);
  free(q);
}

void bfx_free(bfx *f) {
  be_free(f->be);
  api_client_free(f->api);
  while (f->store.held) { /* never answered: its owner is gone */
    bfx_claim *c = f->store.held;
    f->store.held = c->next;
    uv_close((uv_handle_t *)&c->t, claim_closed);
  }
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f->loop), 0);
  assert_int_equal(f->srv.unmatched, 0);
  ss_stop(&f->srv);
  for (size_t i = 0; i < f->hist.nturns; i++) free(f->hist.turns[i]);
  free(f->hist.pending);
  bfx_loop = NULL;
  free(f);
}

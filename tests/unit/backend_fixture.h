/* backend_fixture.h -- what the tests of the HTTP backends and of the
 * Files / Vector Stores client share (prefix bfx_): a libuv loop, the
 * scripted server (scripted_server.h) on 127.0.0.1, the in-memory ports a
 * backend borrows (be_store: one conversation's handle, SET NX; be_history:
 * the chat backend's turns), and the backend (or API client) made over them
 * with fast retries.
 *
 * Why a fixture: the six backend test files and the two files tests each
 * had their own copy of these, and a fix to one copy (how a claim is
 * answered, what is freed at the end) did not reach the others.  The
 * helpers fail the calling test (cmocka) rather than return errors.
 *
 * Use: bfx_new(kind), add routes to f->srv and adjust f->cfg / f->store /
 * f->hist, bfx_start(f), drive the loop (ss_run_until(&f->loop, &flag)),
 * bfx_free(f): it frees the backend, runs the loop until its handles
 * closed, checks uv_loop_close and that every request matched a route.
 * One fixture at a time (bfx_loop).  Include <cmocka.h> first.
 */
#ifndef AW_BACKEND_FIXTURE_H
#define AW_BACKEND_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "api_client.h"
#include "backend.h"
#include "scripted_server.h"

typedef enum bfx_kind {
  BFX_RESPONSES = 0, /* be_responses_new */
  BFX_ASSISTANTS,    /* be_assistants_new */
  BFX_CHAT,          /* be_chat_new; f->post is POST /v1/chat/completions */
  BFX_API,           /* no backend: an api_client (f->api) for files_api / vector_stores */
} bfx_kind;

typedef struct bfx_claim bfx_claim;

/** A be_store over one slot, answering on a later loop iteration. */
typedef struct bfx_store {
  be_store port;
  uv_loop_t *loop;
  char key[32];     /* the last claim's key */
  char conv[64];    /* the recorded conversation */
  char handle[128]; /* the recorded handle; preset: another worker won already */
  int claims;       /* claims asked */
  int answered;     /* claims answered */
  int fail;         /* answer AW_EREDIS */
  int hold;         /* keep the answers until bfx_store_release */
  bfx_claim *held;
} bfx_store;

#define BFX_HIST_MAX 64

/** A be_history in memory, answering on a later loop iteration. */
typedef struct bfx_history {
  be_history port;
  uv_loop_t *loop;
  char *turns[BFX_HIST_MAX];
  char tev[BFX_HIST_MAX][64]; /* each turn's event id */
  size_t nturns;
  char *pending; /* the pending tool round, of event pev */
  char pev[64];
  int loads, saves, commits, applied;
  size_t last_max_turns;
  int fail_load, fail_commit, fail_save;
  int no_saves;            /* fail the test if a tool round is saved */
  const char *commit_race; /* a turn another worker commits for the event just before ours */
  uint64_t delay_ms;       /* answer after this long instead of on the next iteration */
} bfx_history;

typedef struct bfx {
  ss_server srv; /* add routes before bfx_start */
  uv_loop_t loop;
  bfx_kind kind;
  be_http_config cfg; /* adjust before bfx_start; base_url set there */
  bfx_store store;    /* cfg.store */
  bfx_history hist;   /* cfg.history */
  ss_route *post;     /* BFX_CHAT: the completions route, added by bfx_new */
  be_backend *be;     /* after bfx_start (not BFX_API) */
  api_client *api;    /* after bfx_start (BFX_API) */
  char base[128];
} bfx;

/** The loop of the fixture in use, for callbacks that must uv_stop it. */
extern uv_loop_t *bfx_loop;

/** A fixture for kind: loop, ports and config (api key, retries after
 *  1..5 ms: tests count requests, not time); the server not started. */
bfx *bfx_new(bfx_kind kind);

/** Start the server and make the backend (or the API client). */
void bfx_start(bfx *f);

/** Free it all (see above); f is gone. */
void bfx_free(bfx *f);

/** Fail the test unless route r's last request body is want. */
void bfx_expect_body(bfx *f, const ss_route *r, const char *want);

/** Fail the test unless route r's last query string is want ("a=1&b=2"). */
void bfx_expect_query(bfx *f, const ss_route *r, const char *want);

/** Answer the claims held while s->hold was set (on the next iteration). */
void bfx_store_release(bfx_store *s);

/** Append a committed turn of event ev to the history. */
void bfx_hist_add(bfx_history *h, const char *ev, const char *turn);

/** Set (turn) or clear (NULL) the pending tool round, of event ev. */
void bfx_hist_set_pending(bfx_history *h, const char *ev, const char *turn);

#endif

/* cmd_sync.c -- `assistant-worker sync`: make the API's vector stores match
 * the configuration's knowledge once, and exit.
 *
 * Why a command: documents change with deployments, not with requests; an
 * operator (or a CI job, or an init container) runs the sync where it can
 * see its progress and its exit code, and the workers then start without
 * one (knowledge.sync_on_start: false).  `run` does the same at start-up
 * when sync_on_start is on (kb_sync.h: the fleet's syncs take turns per
 * store through a Redis lock).
 *
 * It reads the configuration as `run` does, connects to Redis (where the
 * stores' ids and the documents' hashes are remembered) and the API (the
 * key from AW_API_KEY or OPENAI_API_KEY), runs kbs_start over every
 * configured store on a loop of its own and prints the summary as one JSON
 * line on stdout; progress is logged (a line per document) on stderr.
 *
 * Exit codes: 0 every document is in its store, 1 a document failed
 * (refused by the API or failed processing), 2 usage, configuration or
 * infrastructure (Redis, the API unreachable, a deadline).
 */
#include "cli.h"

#include <cJSON.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "api_client.h"
#include "be_http.h"
#include "config.h"
#include "kb_sync.h"
#include "log.h"
#include "redis_conn.h"

#define REDIS_WAIT_MS 30000

typedef struct sync_ctx {
  uv_loop_t loop;
  cfg c;
  api_client *api;
  rconn *redis;
  kbs *sync;
  uv_timer_t wait;
  long waited_ms;
  int rc;       /* exit code */
  int finished;
} sync_ctx;

static void usage(FILE *f) {
  fputs("usage: assistant-worker sync [--config FILE]\n"
        "\n"
        "Uploads the documents of the configuration's knowledge.vector_stores to their vector\n"
        "stores (creating the stores when missing), once: a document whose content did not change\n"
        "since the last sync is not uploaded again; a changed one replaces its file (the old file\n"
        "is deleted); one no longer configured is detached and deleted; files of an interrupted\n"
        "sync are deleted.  A line per document, then a summary as JSON on stdout.\n"
        "Exit: 0 done, 1 a document failed, 2 usage, configuration or infrastructure.\n",
        f);
}

static void on_synced(void *opaque, const kbs_summary *s) {
  sync_ctx *x = opaque;
  x->finished = 1;
  cJSON *o = cJSON_CreateObject();
  if (o) {
    cJSON_AddStringToObject(o, "status", s->err ? "error" : s->failed ? "failed" : "ok");
    cJSON_AddNumberToObject(o, "uploaded", s->uploaded);
    cJSON_AddNumberToObject(o, "replaced", s->replaced);
    cJSON_AddNumberToObject(o, "unchanged", s->unchanged);
    cJSON_AddNumberToObject(o, "removed", s->removed);
    cJSON_AddNumberToObject(o, "orphans_deleted", s->orphans);
    cJSON_AddNumberToObject(o, "failed", s->failed);
    cJSON_AddNumberToObject(o, "bytes_uploaded", (double)s->bytes);
    cJSON_AddNumberToObject(o, "seconds", s->seconds);
    cJSON *stores = cJSON_AddObjectToObject(o, "vector_stores");
    for (size_t i = 0; stores && i < x->c.knowledge.nstores; i++)
      if (x->c.knowledge.stores[i].id[0])
        cJSON_AddStringToObject(stores, x->c.knowledge.stores[i].name, x->c.knowledge.stores[i].id);
    if (s->errmsg[0]) cJSON_AddStringToObject(o, "error", s->errmsg);
    char *line = cJSON_PrintUnformatted(o);
    if (line) printf("%s\n", line);
    fflush(stdout);
    free(line);
    cJSON_Delete(o);
  }
  x->rc = s->err ? 2 : s->failed ? 1 : 0;
  uv_stop(&x->loop);
}

static void on_wait(uv_timer_t *t) {
  sync_ctx *x = t->data;
  char err[320];
  if (rconn_auth_error(x->redis, err, sizeof err) == AW_EFATAL) {
    fprintf(stderr, "assistant-worker sync: %s\n", err);
    uv_timer_stop(t);
    uv_stop(&x->loop);
    return;
  }
  if (!rconn_ready(x->redis)) {
    x->waited_ms += 20;
    if (x->waited_ms >= REDIS_WAIT_MS) {
      fprintf(stderr, "assistant-worker sync: redis at %s:%d did not answer within %d s\n", x->c.redis.host,
              x->c.redis.port, REDIS_WAIT_MS / 1000);
      uv_timer_stop(t);
      uv_stop(&x->loop);
    }
    return;
  }
  uv_timer_stop(t);
  kbs_config kc = {.loop = &x->loop, .api = x->api, .redis = x->redis, .redis_prefix = x->c.redis.prefix,
                   .wait_timeout_ms = x->c.knowledge.wait_timeout_ms};
  if (kbs_start(&kc, x->c.knowledge.stores, x->c.knowledge.nstores, on_synced, x, &x->sync) != AW_OK) {
    fprintf(stderr, "assistant-worker sync: could not start\n");
    uv_stop(&x->loop);
  }
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int cmd_sync_main(int argc, char **argv) {
  const char *config = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--config") && i + 1 < argc) {
      config = argv[++i];
      continue;
    }
    fprintf(stderr, "assistant-worker sync: unexpected argument %s (see --help)\n", argv[i]);
    return 2;
  }
  static sync_ctx x; /* static: handles outlive the callbacks */
  memset(&x, 0, sizeof x);
  x.rc = 2;
  char err[512];
  log_set_component("sync");
  if (cfg_load(&x.c, config, err, sizeof err)) {
    fprintf(stderr, "assistant-worker sync: configuration: %s\n", err);
    return 2;
  }
  cfg_scrub_secret_env();
  log_set_level(x.c.log_level);
  if (!x.c.knowledge.nstores) {
    fprintf(stderr, "assistant-worker sync: no knowledge.vector_stores configured: nothing to do\n");
    cfg_free(&x.c);
    return 0;
  }
  if (!x.c.api.api_key[0]) {
    fprintf(stderr, "assistant-worker sync: configuration: no API key (AW_API_KEY or OPENAI_API_KEY)\n");
    cfg_free(&x.c);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  if (uv_loop_init(&x.loop) != 0) {
    cfg_free(&x.c);
    return 2;
  }
  be_http_config bc;
  be_http_config_default(&bc);
  cfg_backend_config(&x.c, &bc);
  api_config ac;
  be_http_api_config(&bc, strcmp(x.c.api.backend, "assistants") ? NULL : "assistants=v2", &ac);
  rconn_options ro = {x.c.redis.username, x.c.redis.password, x.c.redis.connect_timeout_ms};
  if (api_client_new(&x.loop, &ac, &x.api, err, sizeof err) != AW_OK ||
      rconn_new_opts(&x.loop, x.c.redis.host, x.c.redis.port, &ro, &x.redis, err, sizeof err) != AW_OK) {
    fprintf(stderr, "assistant-worker sync: %s\n", err);
  } else {
    uv_timer_init(&x.loop, &x.wait);
    x.wait.data = &x;
    uv_timer_start(&x.wait, on_wait, 0, 20);
    uv_run(&x.loop, UV_RUN_DEFAULT);
  }
  kbs_free(x.sync);
  rconn_free(x.redis);
  api_client_free(x.api);
  uv_walk(&x.loop, close_walk, NULL);
  uv_run(&x.loop, UV_RUN_DEFAULT);
  (void)uv_loop_close(&x.loop);
  cfg_free(&x.c);
  return x.finished ? x.rc : 2;
}

/* cmd_run.c -- `assistant-worker run`: the daemon.
 *
 * Start-up is a short chain on the loop: connect Redis -> sync the
 * configured knowledge (knowledge.sync_on_start; else only look the stores'
 * ids up) -> ensure the configured assistants, with their stores attached
 * -> start consuming ("worker ready").  SIGTERM or
 * SIGINT starts a graceful shutdown: consumption stops, in-flight events
 * finish (up to the grace period), offsets are committed, exit 0.
 */
#include <getopt.h>
#include <unistd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "assistant_registry.h"
#include "conv_store.h"
#include "backend.h"
#include "history_store.h"
#include "be_http.h"
#include "kb_sync.h"
#include "cli.h"
#include "config.h"
#include "kafka_conf.h"
#include "log.h"
#include "ops_http.h"
#include "proc_guard.h"
#include "redis_conn.h"
#include "rate_gate.h"
#include "rate_metrics.h"
#include "run_metrics.h"
#include "url_safety.h"
#include "worker.h"

typedef struct run_ctx {
  uv_loop_t *loop;
  cfg c;
  rconn *redis;
  cstore store;               /* the backends' store port (conversation handles) */
  be_store store_port;
  hstore history;             /* the chat backend's history port (conversation history in Redis) */
  be_backend *be;
  areg *reg;
  api_client *kb_api;         /* the knowledge sync's Files / Vector Stores client */
  api_client *files_api;      /* the worker's Files client (attachments, inline images); NULL on chat */
  kbs *kb;                    /* the start-up sync while it runs */
  be_http_config *bc;         /* the API settings (valid until the loop ends) */
  wk *w;
  rmet *met;
  corr_key tool_key;          /* signs tool-call correlation ids */
  tsig_key tool_request_key;  /* signs tool requests, verifies tool replies */
  wk_tool_route routes[CFG_MAX_FUNCTIONS];
  ops_http *ops;  /* /healthz, /readyz, /metrics; NULL when health_port is 0 */
  uv_signal_t sigterm, sigint;
  uv_timer_t wait_redis;
  long waited_ms;
  int exit_code;
  int stopping;
  rg *gate;                   /* the fleet's API rate limit; NULL when api.rate_limit is off */
  rlm *gate_met;              /* its /metrics series */
  int gate_hold;              /* the gate asks to hold consumption (applied once the worker exists) */
} run_ctx;

static void usage(FILE *f) {
  fprintf(f,
          "usage: assistant-worker run [--config FILE] [--print-config]\n"
          "\n"
          "Consume requests from Kafka, answer them with the configured assistants and\n"
          "publish the responses.  Configuration: the JSON file (--config or $AW_CONFIG),\n"
          "then environment variables (AW_KAFKA_BROKERS, AW_REDIS_HOST, AW_API_BASE_URL,\n"
          "AW_API_KEY, ... see README.md).  Logs are JSON lines on stderr.\n"
          "\n"
          "  --config FILE    configuration file\n"
          "  --print-config   print the effective configuration (secrets masked) and exit\n"
          "  -h, --help       this help\n");
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void stop_loop(run_ctx *r, int code) {
  r->exit_code = code;
  uv_stop(r->loop);
}

static void on_worker_stopped(void *opaque) {
  run_ctx *r = opaque;
  log_info(NULL, "worker stopped");
  stop_loop(r, r->exit_code);
}

static void begin_shutdown(run_ctx *r, int code) {
  if (r->stopping) return;
  r->stopping = 1;
  ops_http_set_ready(r->ops, 0); /* Kubernetes stops routing before we stop */
  r->exit_code = code;
  uv_timer_stop(&r->wait_redis);
  if (r->w) wk_shutdown(r->w, on_worker_stopped, r);
  else stop_loop(r, code);
}

/* The worker cannot go on (its transactions were fenced): exit non-zero
 * so that the orchestrator restarts it; its events are re-processed. */
static void on_worker_fatal(void *opaque) { begin_shutdown(opaque, 1); }

static void on_signal(uv_signal_t *s, int signum) {
  run_ctx *r = s->data;
  log_info(NULL, "signal %d: shutting down", signum);
  begin_shutdown(r, 0);
}

static void on_assistants_ready(void *opaque, int err, const char *errmsg) {
  run_ctx *r = opaque;
  if (r->stopping) return;
  if (err) {
    log_error(NULL, "cannot prepare the assistants: %s", errmsg ? errmsg : aw_strerror(err));
    begin_shutdown(r, 1);
    return;
  }
  wk_config wc;
  wk_config_default(&wc);
  wc.topic_requests = r->c.kafka.topic_requests;
  wc.topic_responses = r->c.kafka.topic_responses;
  wc.topic_deltas = r->c.kafka.topic_deltas;
  wc.topic_dlq = r->c.kafka.topic_dlq;
  wc.redis_prefix = r->c.redis.prefix;
  wc.max_in_flight = (int)r->c.worker.max_in_flight;
  wc.max_in_flight_per_partition = (int)r->c.worker.max_in_flight_per_partition;
  wc.max_queue_per_conversation = (int)r->c.worker.max_queue_per_conversation;
  wc.max_inflight_bytes = (long)r->c.worker.max_inflight_bytes;
  wc.max_tool_rounds = (int)r->c.worker.max_tool_rounds;
  wc.conversation_ttl_s = r->c.worker.conversation_ttl_s;
  wc.outcome_ttl_s = r->c.worker.outcome_ttl_s;
  wc.tool_state_ttl_s = r->c.worker.tool_state_ttl_s;
  wc.tool_state_done_ttl_s = r->c.worker.tool_state_done_ttl_s;
  wc.limits.max_event_bytes = r->c.worker.max_event_bytes;
  wc.limits.max_attachments = (size_t)r->c.worker.max_attachments;
  wc.limits.max_inline_bytes = r->c.worker.max_inline_bytes;
  wc.inline_file_max = r->c.worker.inline_file_max_bytes;
  /* Checked by cfg_load already: these parse. */
  if (wid_parse_tenant_source(r->c.worker.tenant_source, &wc.identity, NULL, 0) != AW_OK ||
      wid_parse_key_rule(r->c.worker.key_rule, &wc.identity, NULL, 0) != AW_OK) {
    log_error(NULL, "worker.tenant_source / worker.key_rule: invalid");
    begin_shutdown(r, 1);
    return;
  }
  wc.limits.conversation_id_optional = wc.identity.key_rule == WID_KEY_ROUTE;
  wc.commit_interval_ms = r->c.worker.commit_interval_ms;
  wc.resolve_assistant = areg_resolve;
  wc.resolve_opaque = r->reg;
  wc.allowed_overrides = cfg_allowed_overrides;
  wc.overrides_opaque = &r->c;
  wc.allow_assistant_ids = r->c.worker.allow_assistant_ids;
  wc.reset_deletes_old = r->c.worker.reset_deletes_old;
  wc.observe = rmet_observe;
  wc.observe_opaque = r->met;
  /* Usage records: on unless usage.enabled is false; wk_new turns them off
   * (logged) when the broker says the topic does not exist. */
  wc.topic_usage = r->c.usage.enabled ? r->c.kafka.topic_usage : NULL;
  wc.usage_tenant_key = r->c.usage.tenant_metadata_key[0] ? r->c.usage.tenant_metadata_key : NULL;
  wc.usage_observe = rmet_tokens;

  char errstr[512];
  rd_kafka_conf_t *cc = NULL, *pc = NULL, *rc_conf = NULL, *tc = NULL;
  /* Static membership (group.instance.id, e.g. the pod name): a restarted
   * pod gets its partitions back without a rebalance; a dead one's wait
   * for session.timeout.ms.  The same id serves both groups (an instance
   * id is unique per group). */
  static const char *const consumer_defaults[] = {KCONF_CONSUMER_DEFAULTS, NULL};
  if (strcmp(r->c.api.backend, "chat") != 0) {
    /* The worker checks the file ids a request names and uploads its
     * inline bytes before the turn (worker/event/attach.h); a chat server
     * has no files. */
    api_config ac;
    be_http_api_config(r->bc, strcmp(r->c.api.backend, "assistants") ? NULL : "assistants=v2", &ac);
    if (!r->files_api && api_client_new(r->loop, &ac, &r->files_api, errstr, sizeof errstr) != AW_OK) {
      log_error(NULL, "start-up: files client: %s", errstr);
      begin_shutdown(r, 1);
      return;
    }
    wc.files_api = r->files_api;
  }
  wc.txn_interval_ms = r->c.worker.txn_interval_ms;
  wc.shutdown_grace_ms = r->c.worker.shutdown_grace_ms;
  wc.on_fatal = on_worker_fatal;
  wc.fatal_opaque = r;
  if (r->c.worker.exactly_once) {
    /* A transactional id per process: stable ids (e.g. the pod name, via
     * kafka.transactional_id) also fence a restarted pod's zombie; with
     * consumer-group fencing (KIP-447) unique ids are safe too. */
    char tid[CFG_GROUP_SIZE + 320], host[256] = "host";
    if (r->c.kafka.transactional_id[0]) {
      snprintf(tid, sizeof tid, "%s", r->c.kafka.transactional_id);
    } else {
      if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "host");
      host[sizeof host - 1] = '\0';
      snprintf(tid, sizeof tid, "%s.%s.%ld", r->c.kafka.group_id, host, (long)getpid());
    }
    static const char *const txn_defaults[] = {KCONF_TXN_DEFAULTS, NULL};
    if (kconf_new_with(&r->c, "assistant-worker-txn", txn_defaults, &tc, errstr, sizeof errstr) ||
        kconf_set(tc, "transactional.id", tid, errstr, sizeof errstr) ||
        kconf_set(tc, "linger.ms", "2", errstr, sizeof errstr)) {
      log_error(NULL, "kafka configuration: %s", errstr);
      if (tc) rd_kafka_conf_destroy(tc);
      begin_shutdown(r, 1);
      return;
    }
  }
  if (r->c.tools.nroutes) {
    if (cfg_tool_key(&r->c, &r->tool_key, errstr, sizeof errstr) != AW_OK ||
        cfg_tool_request_key(&r->c, &r->tool_request_key, errstr, sizeof errstr) != AW_OK) {
      log_error(NULL, "configuration: %s", errstr);
      if (tc) rd_kafka_conf_destroy(tc);
      begin_shutdown(r, 1);
      return;
    }
    for (size_t i = 0; i < r->c.tools.nroutes; i++) {
      const cfg_function *f = &r->c.tools.routes[i];
      r->routes[i] = (wk_tool_route){f->name, f->topic, f->deadline_ms, f->on_deadline == CFG_ON_DEADLINE_CANCEL_RUN,
                                     f->validate_arguments, f->parameters_json, f->reply_topic};
    }
    wc.tool_routes = r->routes;
    wc.ntool_routes = r->c.tools.nroutes;
    wc.topic_tool_replies = r->c.kafka.topic_tool_replies;
    wc.tool_key = &r->tool_key;
    wc.tool_request_key = &r->tool_request_key;
    /* One group for the fleet's replies, apart from the request group so
     * that neither rebalance disturbs the other. */
    char group[CFG_GROUP_SIZE + 32];
    snprintf(group, sizeof group, "%s.tool-replies", r->c.kafka.group_id);
    if (kconf_new_with(&r->c, "assistant-worker-replies", consumer_defaults, &rc_conf, errstr, sizeof errstr) ||
        kconf_set(rc_conf, "group.id", group, errstr, sizeof errstr) ||
        (r->c.kafka.group_instance_id[0] &&
         kconf_set(rc_conf, "group.instance.id", r->c.kafka.group_instance_id, errstr, sizeof errstr)) ||
        kconf_set(rc_conf, "auto.offset.reset", "earliest", errstr, sizeof errstr) ||
        kconf_set(rc_conf, "partition.assignment.strategy", "cooperative-sticky", errstr, sizeof errstr)) {
      log_error(NULL, "kafka configuration: %s", errstr);
      if (rc_conf) rd_kafka_conf_destroy(rc_conf);
      if (tc) rd_kafka_conf_destroy(tc);
      begin_shutdown(r, 1);
      return;
    }
  }
  if (kconf_new_with(&r->c, "assistant-worker", consumer_defaults, &cc, errstr, sizeof errstr) ||
      kconf_set(cc, "group.id", r->c.kafka.group_id, errstr, sizeof errstr) ||
      (r->c.kafka.group_instance_id[0] &&
       kconf_set(cc, "group.instance.id", r->c.kafka.group_instance_id, errstr, sizeof errstr)) ||
      kconf_set(cc, "auto.offset.reset", "earliest", errstr, sizeof errstr) ||
      kconf_set(cc, "partition.assignment.strategy", "cooperative-sticky", errstr, sizeof errstr) ||
      kconf_new(&r->c, "assistant-worker", &pc, errstr, sizeof errstr) ||
      kconf_set(pc, "linger.ms", "2", errstr, sizeof errstr)) {
    log_error(NULL, "kafka configuration: %s", errstr);
    if (cc) rd_kafka_conf_destroy(cc);
    if (pc) rd_kafka_conf_destroy(pc);
    if (rc_conf) rd_kafka_conf_destroy(rc_conf);
    if (tc) rd_kafka_conf_destroy(tc);
    begin_shutdown(r, 1);
    return;
  }
  if (wk_new(r->loop, &wc, cc, pc, tc, rc_conf, r->be, r->redis, &r->w, errstr, sizeof errstr) != AW_OK) {
    log_error(NULL, "cannot start the worker: %s", errstr);
    begin_shutdown(r, 1);
    return;
  }
  if (r->gate_hold) wk_hold(r->w, 1);
  log_info(NULL, "worker ready");
}

/* The rate gate: too many requests wait for the fleet's bucket (or few
 * enough again): hold or release consumption. */
static void on_gate_hold(void *opaque, int hold) {
  run_ctx *r = opaque;
  r->gate_hold = hold;
  if (r->w) wk_hold(r->w, hold);
}

static void on_gate_wait(void *opaque, double seconds) {
  run_ctx *r = opaque;
  rlm_observe_wait(r->gate_met, seconds);
}

/* The rate gate, when api.rate_limit sets a rate: the backends' API clients
 * ask it before every request.  Off, nothing is made: no round trip. */
static int start_gate(run_ctx *r, be_http_config *bc, char *errstr, size_t n) {
  const cfg *c = &r->c;
  if (c->api.rate_limit.requests_per_minute <= 0 && c->api.rate_limit.tokens_per_minute <= 0) return AW_OK;
  rg_config gc = {c->api.rate_limit.requests_per_minute, c->api.rate_limit.tokens_per_minute,
                  c->api.rate_limit.burst_ms, c->api.rate_limit.max_waiting, c->redis.prefix,
                  on_gate_hold, on_gate_wait, r};
  int rc = rlm_new(&r->gate_met);
  if (rc) return aw_seterr(rc, errstr, n, "out of memory");
  rc = rg_new(r->loop, r->redis, c->api.api_key, &gc, &r->gate, errstr, n);
  if (rc) return rc;
  bc->gate = rg_port(r->gate);
  log_info(NULL, "API rate limit: %ld requests and %ld tokens per minute per key and endpoint class, shared by the "
           "fleet in Redis (0: not limited)", c->api.rate_limit.requests_per_minute,
           c->api.rate_limit.tokens_per_minute);
  return AW_OK;
}

/* Called on the loop once a second by the ops server: readiness follows
 * what the worker needs to make progress, and the metrics are rendered
 * from the worker's counters. */
static int render_ops(void *opaque, buf *out) {
  run_ctx *r = opaque;
  ops_http_set_ready(r->ops, r->w && !r->stopping && rconn_ready(r->redis));
  rmet_history(r->met, &r->history.stats);
  int rc = rmet_render(r->met, r->w, r->redis, out);
  if (!rc && r->gate) rc = rlm_render(r->gate_met, rg_get_stats(r->gate), out);
  return rc;
}

static void ensure_assistants(run_ctx *r) {
  if (areg_new(&r->c, r->be, r->redis, on_assistants_ready, r, &r->reg) != AW_OK) {
    log_error(NULL, "out of memory");
    begin_shutdown(r, 1);
  }
}

static void on_knowledge(void *opaque, const kbs_summary *s) {
  run_ctx *r = opaque;
  if (r->stopping) return;
  char err[512];
  if (s->err) {
    log_error(NULL, "start-up: knowledge: %s", s->errmsg);
    begin_shutdown(r, 1);
    return;
  }
  /* A document that failed is logged; its store serves the others. */
  if (s->failed) log_error(NULL, "start-up: knowledge: %d document(s) failed: %s", s->failed, s->errmsg);
  if (cfg_knowledge_attach(&r->c, err, sizeof err) != AW_OK) {
    log_error(NULL, "start-up: knowledge: %s", err);
    begin_shutdown(r, 1);
    return;
  }
  ensure_assistants(r);
}

/* The configured stores' ids before the assistants are ensured: synced
 * (sync_on_start) or read from Redis (an operator runs `sync`). */
static void start_knowledge(run_ctx *r) {
  char err[512];
  api_config ac;
  be_http_api_config(r->bc, strcmp(r->c.api.backend, "assistants") ? NULL : "assistants=v2", &ac);
  int lookup = !r->c.knowledge.sync_on_start;
  if (!lookup && api_client_new(r->loop, &ac, &r->kb_api, err, sizeof err) != AW_OK) {
    log_error(NULL, "start-up: knowledge: %s", err);
    begin_shutdown(r, 1);
    return;
  }
  kbs_config kc = {.loop = r->loop, .api = r->kb_api, .redis = r->redis, .redis_prefix = r->c.redis.prefix,
                   .wait_timeout_ms = r->c.knowledge.wait_timeout_ms, .lookup_only = lookup};
  if (kbs_start(&kc, r->c.knowledge.stores, r->c.knowledge.nstores, on_knowledge, r, &r->kb) != AW_OK) {
    log_error(NULL, "start-up: knowledge: could not start the sync");
    begin_shutdown(r, 1);
  }
}

static void on_wait_redis(uv_timer_t *t) {
  run_ctx *r = t->data;
  char aerr[320];
  if (rconn_auth_error(r->redis, aerr, sizeof aerr) == AW_EFATAL) {
    /* Wrong or missing credentials at start-up: retrying cannot help. */
    log_error(NULL, "start-up: %s", aerr);
    begin_shutdown(r, 1);
    return;
  }
  if (rconn_ready(r->redis)) {
    uv_timer_stop(t);
    if (r->c.knowledge.nstores) start_knowledge(r);
    else ensure_assistants(r);
    return;
  }
  r->waited_ms += 20;
  if (r->waited_ms >= 30000) { /* redis is a hard dependency: give up after 30 s */
    log_error(NULL, "redis at %s:%d did not answer within 30 s", r->c.redis.host, r->c.redis.port);
    begin_shutdown(r, 1);
  }
}

int cmd_run_main(int argc, char **argv) {
  static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                       {"print-config", no_argument, NULL, 'p'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
  const char *config_path = NULL;
  int print_config = 0, o;
  optind = 1;
  while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
    switch (o) {
    case 'c': config_path = optarg; break;
    case 'p': print_config = 1; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    usage(stderr);
    return 2;
  }
  static run_ctx r; /* static: its handles outlive every callback */
  memset(&r, 0, sizeof r);
  char errstr[512];
  log_set_component("worker");
  if (cfg_load(&r.c, config_path, errstr, sizeof errstr) != AW_OK) {
    log_error(NULL, "configuration: %s", errstr);
    return 2;
  }
  log_set_level(r.c.log_level);
  /* Secret hygiene (README "Secrets"): from here on the keys live in r.c
   * only: not in the environment (/proc/<pid>/environ, child processes),
   * and, unless the operator asked for cores, not in a core dump. */
  if (!r.c.worker.allow_core_dumps && pguard_no_core_dumps(errstr, sizeof errstr) != AW_OK)
    log_warn(NULL, "start-up: cannot disable core dumps (%s); a core dump would contain the API key", errstr);
  cfg_scrub_secret_env();
  if (print_config) {
    buf out;
    buf_init(&out, 1 << 20);
    int rc = cfg_dump(&r.c, &out);
    if (rc == AW_OK) printf("%s\n", out.data);
    buf_free(&out);
    cfg_free(&r.c);
    return rc == AW_OK ? 0 : 1;
  }
  if (!r.c.kafka.brokers[0]) {
    log_error(NULL, "configuration: kafka brokers are not set (AW_KAFKA_BROKERS or kafka.brokers)");
    cfg_free(&r.c);
    return 2;
  }
  {
    /* The limits that interact (kafka_conf.h): refuse what cannot work,
     * say at start-up what will degrade. */
    char warn[1024];
    if (kconf_check_limits(&r.c, warn, sizeof warn, errstr, sizeof errstr) != AW_OK) {
      log_error(NULL, "configuration: %s", errstr);
      cfg_free(&r.c);
      return 2;
    }
    if (warn[0]) log_warn(NULL, "configuration: %s", warn);
  }
  if (!r.c.api.api_key[0]) {
    log_error(NULL, "configuration: no API key (AW_API_KEY or OPENAI_API_KEY)");
    cfg_free(&r.c);
    return 2;
  }
  {
    /* Wrong Kafka credentials are fatal at start-up, retried later (kafka_conf.h). */
    int prc = kconf_preflight(&r.c, 10000, errstr, sizeof errstr);
    if (prc == AW_ECONFIG) {
      log_error(NULL, "start-up: %s", errstr);
      cfg_free(&r.c);
      return 1;
    }
    if (prc != AW_OK) log_warn(NULL, "start-up: %s; starting anyway (librdkafka keeps trying)", errstr);
  }
  signal(SIGPIPE, SIG_IGN);
  r.loop = uv_default_loop();
  /* The metrics first: the backend reports every API call to them. */
  if (rmet_new(&r.met) != AW_OK) {
    log_error(NULL, "start-up: out of memory");
    cfg_free(&r.c);
    return 1;
  }
  be_http_config bc;
  be_http_config_default(&bc);
  cfg_backend_config(&r.c, &bc);
  bc.observe = rmet_api_observe;
  bc.observe_opaque = r.met;
  r.bc = &bc;
  /* The backends' store port is the worker's conversation store; it exists
   * once Redis does, and the backend uses it only for turns, which start
   * after the worker. */
  bc.store = &r.store_port;
  /* AUTH on every connect when a password is configured (redis_conn.h). */
  rconn_options ro = {r.c.redis.username, r.c.redis.password, r.c.redis.connect_timeout_ms};
  int brc = rconn_new_opts(r.loop, r.c.redis.host, r.c.redis.port, &ro, &r.redis, errstr, sizeof errstr);
  if (brc == AW_OK) {
    cstore_init(&r.store, r.redis, r.c.redis.prefix);
    /* The backend claims handles through this store: the same lifetimes as the worker's. */
    r.store.handle_ttl_s = r.c.worker.conversation_ttl_s;
    r.store.outcome_ttl_s = r.c.worker.outcome_ttl_s;
    /* With tenants the backend's conversation names are references that carry them (rkeys.h). */
    r.store.keys.tenanted = strcmp(r.c.worker.tenant_source, "none") != 0;
    r.store_port = r.store.port;
    /* The history port, for the chat backend: over the same connection;
     * its counters are on /metrics whatever the backend (zero unless chat). */
    hstore_init(&r.history, r.redis, r.c.redis.prefix);
    r.history.max_turns = (size_t)r.c.worker.history_max_turns;
    r.history.max_bytes = r.c.worker.history_max_bytes;
    r.history.ttl_s = cfg_history_ttl_s(&r.c);
    r.history.pending_ttl_s = r.c.worker.tool_state_ttl_s; /* a pending turn lives as long as its tool state */
    r.history.keys.tenanted = r.store.keys.tenanted;
    brc = start_gate(&r, &bc, errstr, sizeof errstr);
    if (brc != AW_OK) {
      /* reported below */
    } else if (strcmp(r.c.api.backend, "assistants") == 0) {
      brc = be_assistants_new(r.loop, &bc, &r.be, errstr, sizeof errstr);
    } else if (strcmp(r.c.api.backend, "chat") == 0) {
      bc.history = &r.history.port;
      brc = be_chat_new(r.loop, &bc, &r.be, errstr, sizeof errstr);
    } else {
      brc = be_responses_new(r.loop, &bc, &r.be, errstr, sizeof errstr);
    }
  }
  if (brc != AW_OK) {
    log_error(NULL, "start-up: %s", errstr);
    rg_stop(r.gate);
    rconn_free(r.redis);
    be_free(r.be);
    rg_free(r.gate);
    rmet_free(r.met);
    rlm_free(r.gate_met);
    cfg_free(&r.c);
    return 1;
  }
  ops_http_config oc;
  ops_http_config_default(&oc);
  oc.port = r.c.worker.health_port > 0 ? r.c.worker.health_port : -1;
  oc.bind_addr = r.c.worker.health_bind;
  if (ops_http_start(r.loop, &oc, render_ops, &r, &r.ops, errstr, sizeof errstr) != AW_OK) {
    log_error(NULL, "start-up: operations endpoint: %s", errstr);
    rg_stop(r.gate);
    rconn_free(r.redis);
    be_free(r.be);
    rg_free(r.gate);
    rmet_free(r.met);
    rlm_free(r.gate_met);
    uv_run(r.loop, UV_RUN_DEFAULT);
    cfg_free(&r.c);
    return 1;
  }
  if (r.ops)
    log_info(NULL, "operations endpoint on %s port %d: /healthz /readyz /metrics", r.c.worker.health_bind,
             ops_http_port(r.ops));
  uv_signal_init(r.loop, &r.sigterm);
  uv_signal_init(r.loop, &r.sigint);
  r.sigterm.data = r.sigint.data = &r;
  uv_signal_start(&r.sigterm, on_signal, SIGTERM);
  uv_signal_start(&r.sigint, on_signal, SIGINT);
  uv_timer_init(r.loop, &r.wait_redis);
  r.wait_redis.data = &r;
  uv_timer_start(&r.wait_redis, on_wait_redis, 0, 20);
  {
    /* URLs are logged with their userinfo masked (url_safety.h). */
    char brokers[CFG_BROKERS_SIZE], api[CFG_URL_SIZE];
    url_redact(r.c.kafka.brokers, brokers, sizeof brokers);
    url_redact(r.c.api.base_url, api, sizeof api);
    if (url_transport(r.c.api.base_url) == URL_CLEARTEXT_REMOTE) /* cfg_load refuses it unless allowed */
      log_warn(NULL,
               "INSECURE: api.base_url %s is plain http to a host that is not loopback: the API key and every "
               "conversation cross the network in cleartext (allowed by api.allow_insecure_http)",
               api);
    log_info(NULL, "starting: kafka %s, redis %s:%d, api %s (%s backend)", brokers, r.c.redis.host,
             r.c.redis.port, api, r.c.api.backend);
    if (r.c.worker.allow_core_dumps)
      log_warn(NULL, "worker.allow_core_dumps: core dumps are allowed and will contain the API key");
  }

  uv_run(r.loop, UV_RUN_DEFAULT);

  /* Teardown, in dependency order: Redis first (pending replies fail into
   * the worker, which is still alive), then the worker, then the backend. */
  ops_http_stop(r.ops);
  rg_stop(r.gate); /* Redis' failing replies must not let waiting requests go */
  kbs_free(r.kb);  /* before Redis: a pending reply then frees it (kb_sync.h) */
  r.kb = NULL;
  rconn_free(r.redis);
  api_client_free(r.kb_api);
  wk_free(r.w);
  api_client_free(r.files_api); /* after the worker: its events' uploads are cancelled first */
  areg_free(r.reg);
  be_free(r.be);
  rg_free(r.gate); /* after the API clients: they cancel what waits at it */
  uv_walk(r.loop, close_walk, NULL);
  uv_run(r.loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(r.loop);
  if (rc) log_warn(NULL, "loop closed with handles open: %s", uv_strerror(rc));
  rmet_free(r.met);
  rlm_free(r.gate_met);
  corr_key_clear(&r.tool_key);
  tsig_key_clear(&r.tool_request_key);
  cfg_free(&r.c);
  return r.exit_code;
}

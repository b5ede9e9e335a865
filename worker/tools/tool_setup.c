/* tool_setup.c -- the tool phase's start and end (prefix wkt_): the
 * function routes copied from the configuration with their compiled
 * argument schemas, the tool state's lifetimes, this worker's owner id, and
 * one reply consumer per distinct reply topic; freed once the producer was
 * flushed.  The per-event steps are in worker_tools.c.
 */
#include "worker_tools.h"
#include "tools_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "log.h"

const wkt_route *wkt_route_for(const wkt *T, const char *name) {
  for (size_t i = 0; i < T->nroutes; i++)
    if (strcmp(T->routes[i].r.name, name) == 0) return &T->routes[i];
  return NULL;
}

/* The reply consumers, one per distinct reply topic (T->reply_topics[0..n)).
 * Each gets a copy of the configured conf: the default topic's
 * (kafka.topics.tool_replies) keeps its group "<group_id>.tool-replies",
 * another topic's is in "<group_id>.tool-replies.<topic>", a group per topic so that a
 * worker's consumers neither share a group member id (static membership)
 * nor rebalance each other.  Takes reply_conf. */
static int reply_consumers(wk *w, wkt *T, size_t n, rd_kafka_conf_t *reply_conf, char *errstr, size_t errstr_size) {
  const wk_config *c = &w->cfg;
  char group[512];
  size_t glen = sizeof group;
  if (rd_kafka_conf_get(reply_conf, "group.id", group, &glen) != RD_KAFKA_CONF_OK) group[0] = '\0';
  int rc = AW_OK;
  for (size_t i = 0; i < n && rc == AW_OK; i++) {
    const char *topic = T->reply_topics[i];
    int is_default = strcmp(topic, c->topic_tool_replies) == 0;
    rd_kafka_conf_t *conf = rd_kafka_conf_dup(reply_conf); /* reply_conf stays the template */
    if (!conf) {
      rc = aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
      break;
    }
    if (!is_default) {
      char g[512 + 256 + 2], why[256];
      snprintf(g, sizeof g, "%s.%s", group, topic);
      if (rd_kafka_conf_set(conf, "group.id", g, why, sizeof why) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        rc = aw_seterr(AW_ECONFIG, errstr, errstr_size, "reply consumer of %s: %s", topic, why);
        break;
      }
    }
    trep_config tc = {0};
    tc.topic = topic;
    tc.dlq_topic = c->topic_dlq;
    tc.owner = T->owner;
    tc.commit_interval_ms = c->commit_interval_ms;
    tc.request_key = c->tool_request_key;
    tc.pinned_topics = T->reply_topics;
    tc.npinned = n;
    tc.accept_unpinned = is_default;
    rc = trep_new(w->loop, &tc, conf, w->producer, &T->ts, c->tool_key, wkt_complete_local, w, DR_REPLY_DLQ,
                  &T->replies[T->nreplies], errstr, errstr_size);
    if (rc == AW_OK) T->nreplies++;
  }
  rd_kafka_conf_destroy(reply_conf);
  return rc;
}

int wkt_init(wk *w, rd_kafka_conf_t *reply_conf, char *errstr, size_t errstr_size) {
  const wk_config *c = &w->cfg;
  if (!c->ntool_routes) {
    if (reply_conf) rd_kafka_conf_destroy(reply_conf);
    return AW_OK;
  }
  if (!reply_conf || !c->tool_key || !c->tool_request_key || !c->topic_tool_replies) {
    if (reply_conf) rd_kafka_conf_destroy(reply_conf);
    return aw_seterr(AW_EINVAL, errstr, errstr_size,
                     "function routes need a tool key, a tool request key, a reply topic and a consumer");
  }
  wkt *T = calloc(1, sizeof *T);
  if (!T || !(T->routes = calloc(c->ntool_routes, sizeof *T->routes)) ||
      !(T->reply_topics = calloc(c->ntool_routes, sizeof *T->reply_topics)) ||
      !(T->replies = calloc(c->ntool_routes, sizeof *T->replies))) {
    if (T) {
      free(T->routes);
      free(T->reply_topics);
    }
    free(T);
    rd_kafka_conf_destroy(reply_conf);
    return aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
  }
  w->tools = T;
  int rc = AW_OK;
  for (size_t i = 0; i < c->ntool_routes && rc == AW_OK; i++) {
    wkt_route *r = &T->routes[i];
    r->r = c->tool_routes[i];
    r->name = strdup(r->r.name);
    r->topic = strdup(r->r.topic);
    r->params = r->r.parameters_json ? strdup(r->r.parameters_json) : NULL;
    r->reply_topic = strdup(r->r.reply_topic ? r->r.reply_topic : c->topic_tool_replies);
    T->nroutes++;
    if (!r->name || !r->topic || (r->r.parameters_json && !r->params) || !r->reply_topic) {
      rc = aw_seterr(AW_ENOMEM, errstr, errstr_size, "out of memory");
      break;
    }
    r->r.name = r->name;
    r->r.topic = r->topic;
    r->r.parameters_json = r->params;
    r->r.reply_topic = r->reply_topic;
    size_t k = 0;
    while (k < T->nreplies && strcmp(T->reply_topics[k], r->reply_topic) != 0) k++;
    if (k == T->nreplies) T->reply_topics[T->nreplies++] = r->reply_topic;
    if (r->params && r->r.validate_arguments) {
      /* A schema outside the subset json_schema.h checks ($ref...) must not
       * stop the worker: its arguments are then only checked to be one
       * JSON object, and the service sees the rest. */
      char e[256];
      int crc = jschema_compile(r->params, strlen(r->params), &r->schema, e, sizeof e);
      if (crc == AW_ENOMEM) rc = aw_seterr(crc, errstr, errstr_size, "out of memory");
      else if (crc != AW_OK)
        log_warn(NULL, "function %s: its parameters schema cannot be checked here (%s); only checking that "
                       "arguments are a JSON object", r->name, e);
    }
  }
  unsigned char rnd[16];
  if (rc == AW_OK && getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
    rc = aw_seterr(AW_EIO, errstr, errstr_size, "no random bytes for the worker id");
  if (rc != AW_OK) {
    rd_kafka_conf_destroy(reply_conf);
    return rc; /* wkt_free (from wk_new's failure path) frees T */
  }
  for (size_t i = 0; i < sizeof rnd; i++) snprintf(T->owner + 2 * i, 3, "%02x", rnd[i]);
  tstate_init(&T->ts, w->redis, c->redis_prefix);
  T->ts.keys.tenanted = c->identity.tenant != WID_TENANT_NONE; /* references carry the tenant */
  /* A waiting turn's state must outlive its longest deadline, whatever the
   * configured lifetime says, or its replies would find it gone. */
  long max_deadline = 0;
  for (size_t i = 0; i < T->nroutes; i++)
    if (T->routes[i].r.deadline_ms > max_deadline) max_deadline = T->routes[i].r.deadline_ms;
  if (c->tool_state_ttl_s > 0) T->ts.wait_ttl_ms = c->tool_state_ttl_s * 1000;
  if (T->ts.wait_ttl_ms < max_deadline + 60000) T->ts.wait_ttl_ms = max_deadline + 60000;
  if (c->tool_state_done_ttl_s > 0) T->ts.done_ttl_ms = c->tool_state_done_ttl_s * 1000;
  if (c->max_tool_rounds > 0) T->ts.max_rounds = c->max_tool_rounds;
  uv_timer_init(w->loop, &T->tick);
  T->tick.data = w;
  size_t nreplies = T->nreplies;
  T->nreplies = 0; /* counts the consumers made from here on */
  rc = reply_consumers(w, T, nreplies, reply_conf, errstr, errstr_size);
  if (rc != AW_OK) return rc;
  char topics[512] = "";
  for (size_t i = 0, k = 0; i < T->nreplies && k < sizeof topics; i++)
    k += (size_t)snprintf(topics + k, sizeof topics - k, "%s%s", i ? "," : "", T->reply_topics[i]);
  log_info(NULL, "function calling on: %zu functions, replies from %s, worker id %s", T->nroutes, topics, T->owner);
  return AW_OK;
}

static void on_tick_closed(uv_handle_t *h) { free(h->data); }

void wkt_free(wk *w) {
  wkt *T = w->tools;
  if (!T) return;
  for (size_t i = 0; i < T->nreplies; i++) trep_free(T->replies[i]);
  free(T->replies);
  free(T->reply_topics);
  for (size_t i = 0; i < T->nroutes; i++) {
    jschema_free(T->routes[i].schema);
    free(T->routes[i].name);
    free(T->routes[i].topic);
    free(T->routes[i].params);
    free(T->routes[i].reply_topic);
  }
  free(T->routes);
  w->tools = NULL;
  if (T->owner[0]) {
    T->tick.data = T;
    uv_close((uv_handle_t *)&T->tick, on_tick_closed);
  } else {
    free(T);
  }
}

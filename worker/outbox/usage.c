/* usage.c -- the usage record of a finished turn (see usage.h).
 *
 * The numbers live in the event (wku_turn, fixed size) rather than in an
 * encoded buffer: the record is encoded when it is produced (again after an
 * aborted transaction), from fields that do not change once the turn has
 * ended, so every copy of it is the same bytes and nothing needs freeing
 * when the event goes.  Encoding ~300 bytes per produce costs about a
 * microsecond.
 */
#include "usage.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "contract_usage.h"
#include "worker_int.h"
#include "worker_tools.h"

static const char OTHER[] = "other";

/* FNV-1a 64 of a handle (0 is kept for "none"). */
static uint64_t handle_hash(const char *s) {
  if (!s || !*s) return 0;
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return h ? h : 1;
}

static void usage_add(contract_usage *a, const contract_usage *b, int sign) {
  a->prompt_tokens += sign * b->prompt_tokens;
  a->completion_tokens += sign * b->completion_tokens;
  a->total_tokens += sign * b->total_tokens;
  a->cached_tokens += sign * b->cached_tokens;
  a->reasoning_tokens += sign * b->reasoning_tokens;
}

void wku_add(wk_event *ev, const be_turn_result *res) {
  wku_turn *u = &ev->usage;
  if (res->end == BE_END_TOOL_CALLS && res->ntool_calls) u->rounds++;
  if (res->model && *res->model) wk_copy_id(u->model, sizeof u->model, res->model);
  if (!res->usage.present) return;
  contract_usage got = res->usage;
  /* A total the API left out is the sum of the parts; negative counts (a
   * broken server) are none. */
  if (got.prompt_tokens < 0) got.prompt_tokens = 0;
  if (got.completion_tokens < 0) got.completion_tokens = 0;
  if (got.cached_tokens < 0 || got.cached_tokens > got.prompt_tokens) got.cached_tokens = 0;
  if (got.reasoning_tokens < 0 || got.reasoning_tokens > got.completion_tokens) got.reasoning_tokens = 0;
  if (got.total_tokens < got.prompt_tokens + got.completion_tokens)
    got.total_tokens = got.prompt_tokens + got.completion_tokens;
  uint64_t h = handle_hash(res->handles.turn);
  if (h && h == u->last_handle) usage_add(&u->sum, &u->last, -1); /* the same run / response again */
  usage_add(&u->sum, &got, 1);
  u->sum.present = 1;
  u->last = got;
  u->last_handle = h;
}

void wku_finish(wk_event *ev, const contract_response *r) {
  wku_turn *u = &ev->usage;
  wk *w = ev->w;
  /* Started at the API (a run, response or completion exists or was sent),
   * or charged: the turn cost something, or may have. */
  u->due = r->timings.run_started_ms != 0 || u->sum.present;
  if (!u->due) return;
  wk_copy_id(u->status, sizeof u->status, r->status);
  u->completed_ms = r->timings.completed_ms;
  u->started_ms = r->timings.run_started_ms ? r->timings.run_started_ms : r->timings.received_ms;
  if (u->started_ms > u->completed_ms) u->started_ms = u->completed_ms;
  u->tool_calls = (long)r->ntool_calls;
  long rounds = wkt_rounds(ev);
  if (rounds > u->rounds) u->rounds = rounds;
  ev->send_usage = w->cfg.topic_usage != NULL;
}

/* The tenant of the record: the event's own (worker.tenant_source,
 * ev_identity.h) when it has one, else the metadata value under
 * usage.tenant_metadata_key (a request's metadata is validated UTF-8,
 * <= 512 bytes). */
static const char *tenant_of(const wk_event *ev) {
  if (ev->tenant[0]) return ev->tenant;
  const char *key = ev->w->cfg.usage_tenant_key;
  if (!key || !*key || !ev->req) return NULL;
  for (size_t i = 0; i < ev->req->nmetadata; i++)
    if (!strcmp(ev->req->metadata[i].key, key) && ev->req->metadata[i].value[0]) return ev->req->metadata[i].value;
  return NULL;
}

static const char *assistant_name(const wk_event *ev) {
  if (ev->assistant && ev->assistant != &ev->asst_by_id && ev->assistant->name && *ev->assistant->name)
    return ev->assistant->name;
  return ev->req && ev->req->assistant ? ev->req->assistant : OTHER;
}

static const char *model_of(const wk_event *ev) {
  if (ev->usage.model[0]) return ev->usage.model;
  if (ev->assistant && ev->assistant->model && *ev->assistant->model) return ev->assistant->model;
  return "unknown";
}

int wku_encode(const wk_event *ev, buf *out) {
  const wku_turn *u = &ev->usage;
  if (!u->due) return AW_EINVAL;
  cusage_record r;
  memset(&r, 0, sizeof r);
  r.event_id = ev->event_id;
  r.conversation_id = ev->conv_id;
  r.tenant = tenant_of(ev);
  r.assistant = assistant_name(ev);
  r.model = model_of(ev);
  r.backend = ev->h_kind ? ev->h_kind : be_kind(ev->w->be);
  r.status = u->status;
  r.input_tokens = u->sum.prompt_tokens;
  r.output_tokens = u->sum.completion_tokens;
  r.cached_tokens = u->sum.cached_tokens;
  r.reasoning_tokens = u->sum.reasoning_tokens;
  r.total_tokens = u->sum.total_tokens;
  r.tokens_reported = u->sum.present;
  r.tool_rounds = u->rounds;
  r.tool_calls = u->tool_calls;
  r.started_ms = u->started_ms;
  r.completed_ms = u->completed_ms;
  int rc = cusage_encode(&r, out);
  if (rc == AW_EINVAL && r.model != ev->usage.model) return rc;
  if (rc == AW_EINVAL) {
    /* The API named a model the contract cannot carry (not UTF-8): the
     * configured one stands in. */
    r.model = ev->assistant && ev->assistant->model && *ev->assistant->model ? ev->assistant->model : "unknown";
    rc = cusage_encode(&r, out);
  }
  return rc;
}

void wku_labels(const wk_event *ev, const char **assistant, const char **model) {
  const be_assistant *a = ev->assistant;
  int configured = a && a != &ev->asst_by_id && a->name && *a->name;
  *assistant = configured ? a->name : OTHER;
  *model = OTHER;
  if (!configured || !a->model || !*a->model) return;
  const char *m = model_of(ev);
  size_t n = strlen(a->model);
  /* The model asked for, or a dated snapshot of it ("gpt-4o-2024-08-06",
   * not "gpt-4o-mini"): bounded by configuration. */
  if (!strncmp(m, a->model, n) && (m[n] == '\0' || (m[n] == '-' && isdigit((unsigned char)m[n + 1]))))
    *model = a->model;
}

void wku_committed(wk_event *ev) {
  wku_turn *u = &ev->usage;
  wk *w = ev->w;
  if (!u->due || u->given_up || !w->cfg.topic_usage) return;
  u->due = 0; /* counted once, whatever calls again */
  w->st.usage_records++;
  if (!w->cfg.usage_observe) return;
  const char *assistant, *model;
  wku_labels(ev, &assistant, &model);
  const int64_t tokens[4] = {u->sum.prompt_tokens, u->sum.completion_tokens, u->sum.cached_tokens,
                             u->sum.reasoning_tokens};
  w->cfg.usage_observe(w->cfg.observe_opaque, assistant, model, tokens);
}

int wku_topic_usable(rd_kafka_t *rk, const char *topic, int timeout_ms, char *why, size_t why_size) {
  if (why && why_size) why[0] = '\0';
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  if (!t) return 1;
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
  int usable = 1;
  rd_kafka_resp_err_t te = err;
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->topic_cnt >= 1) te = md->topics[0].err;
  if (te == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || te == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
      te == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
    usable = 0;
    if (why && why_size) snprintf(why, why_size, "%s", rd_kafka_err2str(te));
  }
  if (md) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
  return usable;
}

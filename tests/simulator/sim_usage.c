/* sim_usage.c -- the tokens the simulator charged (see sim_usage.h).
 *
 * Kept apart from sim_stats (requests by route and status, relaxed atomics
 * on the request path) because this is bookkeeping of answers, not of
 * requests, with strings per entry: one mutex, taken once per finished
 * run, response or completion, and a linear search over at most
 * SUSAGE_MODELS models (tests use a handful).
 */
#include "sim_usage.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

typedef struct counts {
  long requests, input, output, cached, reasoning;
} counts;

typedef struct model_row {
  char name[64];
  counts c;
} model_row;

typedef struct charge {
  char api[12], id[48], model[64];
  long input, output, cached, reasoning;
} charge;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static counts g_total;
static model_row g_models[SUSAGE_MODELS];
static size_t g_nmodels;
static model_row g_other = {.name = "(other)"};
static charge g_charges[SUSAGE_KEEP];
static size_t g_next, g_ncharges; /* ring: the next slot, and how many are kept */

static void add(counts *c, long in, long out, long cached, long reasoning) {
  c->requests++;
  c->input += in;
  c->output += out;
  c->cached += cached;
  c->reasoning += reasoning;
}

/* Model names longer than a row holds are kept cut (tests use short ones). */
static model_row *row_for(const char *model) {
  for (size_t i = 0; i < g_nmodels; i++)
    if (!strncmp(g_models[i].name, model, sizeof g_models[i].name - 1) &&
        strlen(model) == strlen(g_models[i].name))
      return &g_models[i];
  if (g_nmodels == SUSAGE_MODELS || strlen(model) >= sizeof g_models[0].name) return &g_other;
  model_row *r = &g_models[g_nmodels++];
  memset(r, 0, sizeof *r);
  snprintf(r->name, sizeof r->name, "%s", model);
  return r;
}

void susage_charge(const char *api, const char *id, const char *model, long input, long output, long cached,
                   long reasoning) {
  if (!model) model = "";
  pthread_mutex_lock(&g_mu);
  add(&g_total, input, output, cached, reasoning);
  add(&row_for(model)->c, input, output, cached, reasoning);
  charge *ch = &g_charges[g_next];
  snprintf(ch->api, sizeof ch->api, "%s", api ? api : "");
  snprintf(ch->id, sizeof ch->id, "%s", id ? id : "");
  snprintf(ch->model, sizeof ch->model, "%s", model);
  ch->input = input;
  ch->output = output;
  ch->cached = cached;
  ch->reasoning = reasoning;
  g_next = (g_next + 1) % SUSAGE_KEEP;
  if (g_ncharges < SUSAGE_KEEP) g_ncharges++;
  pthread_mutex_unlock(&g_mu);
}

static cJSON *counts_json(const counts *c) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "requests", (double)c->requests);
  cJSON_AddNumberToObject(o, "input_tokens", (double)c->input);
  cJSON_AddNumberToObject(o, "output_tokens", (double)c->output);
  cJSON_AddNumberToObject(o, "cached_tokens", (double)c->cached);
  cJSON_AddNumberToObject(o, "reasoning_tokens", (double)c->reasoning);
  cJSON_AddNumberToObject(o, "total_tokens", (double)(c->input + c->output));
  return o;
}

cJSON *susage_to_json(const char *model) {
  cJSON *o = cJSON_CreateObject();
  pthread_mutex_lock(&g_mu);
  counts total = {0};
  cJSON *models = cJSON_CreateObject();
  for (size_t i = 0; i <= g_nmodels; i++) {
    const model_row *r = i < g_nmodels ? &g_models[i] : &g_other;
    if (i == g_nmodels && !r->c.requests) continue;
    if (model && strcmp(model, r->name) != 0) continue;
    cJSON_AddItemToObject(models, r->name, counts_json(&r->c));
    if (model) total = r->c;
  }
  cJSON_AddItemToObject(o, "total", counts_json(model ? &total : &g_total));
  cJSON_AddItemToObject(o, "models", models);
  cJSON *list = cJSON_AddArrayToObject(o, "charges");
  size_t first = (g_next + SUSAGE_KEEP - g_ncharges) % SUSAGE_KEEP;
  for (size_t k = 0; k < g_ncharges; k++) {
    const charge *ch = &g_charges[(first + k) % SUSAGE_KEEP];
    if (model && strcmp(model, ch->model) != 0) continue;
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "api", ch->api);
    cJSON_AddStringToObject(e, "id", ch->id);
    cJSON_AddStringToObject(e, "model", ch->model);
    cJSON_AddNumberToObject(e, "input_tokens", (double)ch->input);
    cJSON_AddNumberToObject(e, "output_tokens", (double)ch->output);
    cJSON_AddNumberToObject(e, "cached_tokens", (double)ch->cached);
    cJSON_AddNumberToObject(e, "reasoning_tokens", (double)ch->reasoning);
    cJSON_AddNumberToObject(e, "total_tokens", (double)(ch->input + ch->output));
    cJSON_AddItemToArray(list, e);
  }
  pthread_mutex_unlock(&g_mu);
  return o;
}

void susage_reset(void) {
  pthread_mutex_lock(&g_mu);
  memset(&g_total, 0, sizeof g_total);
  g_nmodels = 0;
  memset(&g_other.c, 0, sizeof g_other.c);
  g_next = g_ncharges = 0;
  pthread_mutex_unlock(&g_mu);
}

int susage_reasoning_model(const char *model) {
  return model && model[0] == 'o' && isdigit((unsigned char)model[1]);
}

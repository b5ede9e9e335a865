/* config_functions.c -- the "functions" object (where each function's tool
 * requests go, which topic its replies must come from, its deadline and what
 * a missed deadline does) and the routes built from it, the assistants'
 * tools and kafka.topics.tool_requests / tool_replies; and the tool request
 * key those requests and replies are signed with (tool_sign.h).
 *
 * The routes depend on those three sources (env may override the topic), so
 * they are not updated piecemeal: cfg_resolve_routes() rebuilds them from
 * scratch at the end of every cfg_load_json and cfg_apply_env.  That costs a
 * re-parse of every assistant's tools at start-up, and keeps one place where
 * the cross-references are checked.
 */
#include "config_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract_tool.h"
#include "tool_sign.h"


static const char *const ON_DEADLINE_NAMES[] = {"error_output", "cancel_run"};

const char *cfg_on_deadline_name(cfg_on_deadline d) {
  return d == CFG_ON_DEADLINE_CANCEL_RUN ? ON_DEADLINE_NAMES[1] : ON_DEADLINE_NAMES[0];
}

static void route_defaults(cfg_function *r, const char *name) {
  memset(r, 0, sizeof *r);
  cfg_copy(r->name, sizeof r->name, name);
  r->deadline_ms = CFG_DEFAULT_DEADLINE_MS;
  r->on_deadline = CFG_ON_DEADLINE_ERROR_OUTPUT;
  r->validate_arguments = 1;
}

/* Keys that would hold the tool secret or the tool request key: refused
 * wherever they appear. */
int cfg_is_tool_secret_key(const char *k) {
  return strcmp(k, "tool_secret") == 0 || strcmp(k, "tool_secret_previous") == 0 ||
         strcmp(k, "tool_request_key") == 0 || strcmp(k, "tool_request_key_previous") == 0 ||
         strcmp(k, "request_key") == 0;
}

int cfg_refuse_tool_secret(const char *path, char *errstr, size_t n) {
  if (strstr(path, "request_key"))
    return cfg_err(errstr, n,
                   "%s: the tool request key is not read from the config file on purpose; set "
                   "AW_TOOL_REQUEST_KEY or AW_TOOL_REQUEST_KEY_FILE (and ..._PREVIOUS while rotating), e.g. from a "
                   "Kubernetes Secret",
                   path);
  return cfg_err(errstr, n,
                "%s: the tool-call secret is not read from the config file on purpose; "
                "set AW_TOOL_SECRET (and AW_TOOL_SECRET_PREVIOUS while rotating) in the environment, "
                "e.g. from a Kubernetes Secret",
                path);
}


static int parse_function(cfg_function *o, const cJSON *obj, char *errstr, size_t n) {
  char where[96], path[128];
  snprintf(where, sizeof where, "functions.%s", obj->string);
  if (!cJSON_IsObject(obj)) return cfg_err(errstr, n, "%s: expected an object", where);
  int rc = cfg_no_duplicate_keys(obj, where, errstr, n);
  if (rc) return rc;
  route_defaults(o, obj->string);
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    const char *k = it->string;
    snprintf(path, sizeof path, "%s.%s", where, k);
    if (cfg_is_tool_secret_key(k)) return cfg_refuse_tool_secret(path, errstr, n);
    if (strcmp(k, "topic") == 0) {
      if (!cJSON_IsString(it)) return cfg_err(errstr, n, "%s: expected a string", path);
      if (!cfg_topic_ok(it->valuestring))
        return cfg_err(errstr, n, "%s: invalid Kafka topic name \"%.80s\" (1..249 of [A-Za-z0-9._-])", path,
                      it->valuestring);
      cfg_copy(o->topic, sizeof o->topic, it->valuestring);
    } else if (strcmp(k, "reply_topic") == 0) {
      if (!cJSON_IsString(it)) return cfg_err(errstr, n, "%s: expected a string", path);
      if (!cfg_topic_ok(it->valuestring))
        return cfg_err(errstr, n, "%s: invalid Kafka topic name \"%.80s\" (1..249 of [A-Za-z0-9._-])", path,
                      it->valuestring);
      cfg_copy(o->reply_topic, sizeof o->reply_topic, it->valuestring);
    } else if (strcmp(k, "deadline_ms") == 0) {
      long long x = 0; /* set by cfg_json_integer on success */
      rc = cfg_json_integer(it, &x, path, errstr, n);
      if (rc) return rc;
      if (x < CFG_MIN_DEADLINE_MS || x > CFG_MAX_DEADLINE_MS)
        return cfg_err(errstr, n, "%s: %lld is out of range [%d, %d] (the API expires a run waiting for tools after 10 minutes)",
                      path, x, CFG_MIN_DEADLINE_MS, CFG_MAX_DEADLINE_MS);
      o->deadline_ms = (long)x;
    } else if (strcmp(k, "on_deadline") == 0) {
      if (cJSON_IsString(it) && strcmp(it->valuestring, ON_DEADLINE_NAMES[0]) == 0)
        o->on_deadline = CFG_ON_DEADLINE_ERROR_OUTPUT;
      else if (cJSON_IsString(it) && strcmp(it->valuestring, ON_DEADLINE_NAMES[1]) == 0)
        o->on_deadline = CFG_ON_DEADLINE_CANCEL_RUN;
      else
        return cfg_err(errstr, n, "%s: expected \"error_output\" or \"cancel_run\"", path);
    } else if (strcmp(k, "validate_arguments") == 0) {
      if (!cJSON_IsBool(it)) return cfg_err(errstr, n, "%s: expected true or false", path);
      o->validate_arguments = cJSON_IsTrue(it);
    } else {
      return cfg_err(errstr, n, "%s: unknown key \"%s\" (expected topic, reply_topic, deadline_ms, on_deadline, "
                            "validate_arguments)",
                    where, k);
    }
  }
  return AW_OK;
}

/* The "functions" object, checked on its own; whether its names exist is
 * cfg_resolve_routes()' business, once every source is in. */
int cfg_parse_functions(cfg *c, const cJSON *obj, char *errstr, size_t n) {
  if (!cJSON_IsObject(obj)) return cfg_err(errstr, n, "functions: expected an object");
  int rc = cfg_no_duplicate_keys(obj, "functions", errstr, n);
  if (rc) return rc;
  int nf = cJSON_GetArraySize(obj);
  if (nf > CFG_MAX_FUNCTIONS)
    return cfg_err(errstr, n, "functions: %d entries, at most %d", nf, CFG_MAX_FUNCTIONS);
  memset(c->tools.overrides, 0, sizeof c->tools.overrides); /* the file's object replaces any earlier one */
  c->tools.noverrides = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, obj) {
    if (!cfg_function_name_ok(it->string))
      return cfg_err(errstr, n, "functions.%.80s: invalid function name (1..%d of [A-Za-z0-9_-])", it->string,
                    CFG_FUNCTION_NAME_SIZE - 1);
    rc = parse_function(&c->tools.overrides[c->tools.noverrides], it, errstr, n);
    if (rc) return rc;
    c->tools.noverrides++;
  }
  return AW_OK;
}

static cfg_function *find_route(cfg *c, const char *name) {
  for (size_t i = 0; i < c->tools.nroutes; i++)
    if (strcmp(c->tools.routes[i].name, name) == 0) return &c->tools.routes[i];
  return NULL;
}

/* Add the function tools of assistant ai to the routes, with the defaults. */
static int add_assistant_routes(cfg *c, size_t ai, char *errstr, size_t n) {
  const cfg_assistant *a = &c->assistants[ai];
  if (!a->tools_json) return AW_OK;
  cJSON *arr = cJSON_Parse(a->tools_json); /* printed by cJSON: fails only for lack of memory */
  if (!arr) return aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
  int rc = AW_OK, ti = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, arr) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
    const cJSON *fname = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    int idx = ti++;
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "function") != 0 || !cJSON_IsString(fname)) continue;
    char *pj = NULL;
    if (params && !(pj = cJSON_PrintUnformatted(params))) {
      rc = aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
      break;
    }
    cfg_function *r = find_route(c, fname->valuestring);
    if (r) {
      int same = (!pj && !r->parameters_json) || (pj && r->parameters_json && strcmp(pj, r->parameters_json) == 0);
      free(pj);
      if (!same) {
        rc = cfg_err(errstr, n,
                    "assistants[%zu] (\"%.64s\").tools[%d]: function \"%s\" is declared with other parameters "
                    "than by an earlier assistant (calls are routed by name: one name, one schema)",
                    ai, a->name, idx, fname->valuestring);
        break;
      }
      continue;
    }
    if (c->tools.nroutes >= CFG_MAX_FUNCTIONS) {
      free(pj);
      rc = cfg_err(errstr, n, "assistants[%zu] (\"%.64s\").tools[%d]: more than %d distinct functions across all assistants",
                  ai, a->name, idx, CFG_MAX_FUNCTIONS);
      break;
    }
    r = &c->tools.routes[c->tools.nroutes++];
    route_defaults(r, fname->valuestring);
    r->parameters_json = pj;
  }
  cJSON_Delete(arr);
  return rc;
}

/* Rebuild the routes from the assistants, the "functions" entries and the
 * default topic; every entry must name a function tool. */
int cfg_resolve_routes(cfg *c, char *errstr, size_t n) {
  cfg_free_routes(c);
  for (size_t i = 0; i < c->nassistants; i++) {
    int rc = add_assistant_routes(c, i, errstr, n);
    if (rc) return rc;
  }
  for (size_t i = 0; i < c->tools.nroutes; i++) {
    cfg_copy(c->tools.routes[i].topic, sizeof c->tools.routes[i].topic, c->kafka.topic_tool_requests);
    cfg_copy(c->tools.routes[i].reply_topic, sizeof c->tools.routes[i].reply_topic, c->kafka.topic_tool_replies);
  }
  for (size_t i = 0; i < c->tools.noverrides; i++) {
    const cfg_function *o = &c->tools.overrides[i];
    cfg_function *r = find_route(c, o->name);
    if (!r)
      return cfg_err(errstr, n, "functions.%s: no configured assistant has a function tool named \"%s\"", o->name,
                    o->name);
    if (o->topic[0]) cfg_copy(r->topic, sizeof r->topic, o->topic);
    if (o->reply_topic[0]) cfg_copy(r->reply_topic, sizeof r->reply_topic, o->reply_topic);
    r->deadline_ms = o->deadline_ms;
    r->on_deadline = o->on_deadline;
    r->validate_arguments = o->validate_arguments;
  }
  return AW_OK;
}

/* Does assistant a declare a function tool?  (Error path only: re-parses.) */
int cfg_has_function_tool(const cfg_assistant *a) {
  cJSON *arr = a->tools_json ? cJSON_Parse(a->tools_json) : NULL;
  int found = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, arr) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
    if (cJSON_IsString(type) && strcmp(type->valuestring, "function") == 0) found = 1;
  }
  cJSON_Delete(arr);
  return found;
}


/* ---- the tool request key (tool_sign.h) ------------------------------------------ */

/* One key: from the variable env or the file its _FILE variable names
 * (cfg_load_secret: not both, bounded, no control characters), and at least
 * TSIG_MIN_KEY bytes.  Its value is never echoed. */
static int request_key(const char *env, const char *env_file, char *dst, size_t size, char *errstr, size_t n) {
  int rc = cfg_load_secret(env, cfg_env(env_file), env_file, dst, size, errstr, n);
  if (rc) return rc;
  if (dst[0] && strlen(dst) < TSIG_MIN_KEY) {
    explicit_bzero(dst, size);
    return cfg_err(errstr, n, "%s: shorter than %d bytes (use a random value, e.g. from `openssl rand -base64 32`)",
                   env, TSIG_MIN_KEY);
  }
  return AW_OK;
}

int cfg_load_tool_request_keys(cfg *c, char *errstr, size_t n) {
  int rc = request_key("AW_TOOL_REQUEST_KEY", "AW_TOOL_REQUEST_KEY_FILE", c->tools.request_key,
                       sizeof c->tools.request_key, errstr, n);
  if (!rc)
    rc = request_key("AW_TOOL_REQUEST_KEY_PREVIOUS", "AW_TOOL_REQUEST_KEY_PREVIOUS_FILE", c->tools.request_key_previous,
                     sizeof c->tools.request_key_previous, errstr, n);
  if (rc) return rc;
  if (c->tools.request_key_previous[0] && !c->tools.request_key[0])
    return cfg_err(errstr, n,
                   "AW_TOOL_REQUEST_KEY_PREVIOUS: set without AW_TOOL_REQUEST_KEY (the previous key only keeps "
                   "services and replies on it working during a rotation; requests need the current one)");
  return AW_OK;
}

int cfg_tool_request_key(const cfg *c, tsig_key *k, char *errstr, size_t errstr_size) {
  if (!c->tools.request_key[0]) return cfg_err(errstr, errstr_size, "AW_TOOL_REQUEST_KEY: not set");
  int rc = tsig_key_init(k, c->tools.request_key, strlen(c->tools.request_key));
  if (!rc && c->tools.request_key_previous[0])
    rc = tsig_key_set_previous(k, c->tools.request_key_previous, strlen(c->tools.request_key_previous));
  if (rc) {
    tsig_key_clear(k);
    return aw_seterr(rc, errstr, errstr_size, "tool request key refused by tsig_key_init");
  }
  return AW_OK;
}

/* config_assistants.c -- the "assistants" array of the configuration: names,
 * models, instructions, tools and tool_choice (checked here so that a turn
 * never sends what the API would refuse), per-assistant history bounds and
 * what a request may override (allow_overrides, overrides.h).
 */
#include "config_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract_tool.h"
#include "overrides.h"


/* Names are what producers write in requests ("Customer Support Bot"), so
 * any text the API accepts as a name (up to 256 characters) is allowed,
 * except control characters and surrounding blanks, which would make two
 * names look alike in logs and configuration. */
static int name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= CFG_NAME_SIZE || s[0] == ' ' || s[n - 1] == ' ') return 0;
  for (; *s; s++)
    if ((unsigned char)*s < 0x20 || *s == 0x7f) return 0;
  return 1;
}

/* OpenAI's rule for function names: 1..64 of [A-Za-z0-9_-]. */
int cfg_function_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= CFG_FUNCTION_NAME_SIZE) return 0;
  for (; *s; s++) {
    char ch = *s;
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '_' || ch == '-'))
      return 0;
  }
  return 1;
}

static int parse_tools(const cJSON *tools, const char *where, char **out, char *errstr, size_t n) {
  *out = NULL;
  if (cJSON_IsNull(tools)) return AW_OK;
  if (!cJSON_IsArray(tools)) return cfg_err(errstr, n, "%s.tools: expected an array", where);
  int nt = cJSON_GetArraySize(tools);
  if (nt > CFG_MAX_TOOLS)
    return cfg_err(errstr, n, "%s.tools: %d tools, at most %d", where, nt, CFG_MAX_TOOLS);
  if (nt == 0) return AW_OK;
  int i = 0;
  const char *fnames[CFG_MAX_TOOLS]; /* function names so far, for duplicates */
  int nf = 0;
  const cJSON *t;
  cJSON_ArrayForEach(t, tools) {
    if (!cJSON_IsObject(t)) return cfg_err(errstr, n, "%s.tools[%d]: expected an object", where, i);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(t, "type");
    if (!cJSON_IsString(type) || !*type->valuestring)
      return cfg_err(errstr, n, "%s.tools[%d]: missing \"type\" string", where, i);
    if (strcmp(type->valuestring, "function") == 0) {
      const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
      const cJSON *fname = cJSON_GetObjectItemCaseSensitive(fn, "name");
      if (!cJSON_IsObject(fn) || !cJSON_IsString(fname) || !*fname->valuestring)
        return cfg_err(errstr, n, "%s.tools[%d]: a function tool needs function.name", where, i);
      /* Names are routing keys and travel in tool requests: hold them to
       * the API's rule here rather than learn of a bad one at start-up. */
      if (!cfg_function_name_ok(fname->valuestring))
        return cfg_err(errstr, n, "%s.tools[%d].function.name: invalid function name \"%.80s\" (1..%d of [A-Za-z0-9_-])",
                      where, i, fname->valuestring, CFG_FUNCTION_NAME_SIZE - 1);
      for (int j = 0; j < nf; j++)
        if (strcmp(fnames[j], fname->valuestring) == 0)
          return cfg_err(errstr, n, "%s.tools[%d]: duplicate function \"%s\"", where, i, fname->valuestring);
      fnames[nf++] = fname->valuestring;
      const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
      if (params && !cJSON_IsObject(params))
        return cfg_err(errstr, n, "%s.tools[%d].function.parameters: expected an object (a JSON Schema)", where, i);
    }
    i++;
  }
  char *s = cJSON_PrintUnformatted(tools);
  if (!s) return aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
  if (strlen(s) > CFG_MAX_TOOLS_BYTES) {
    free(s);
    return cfg_err(errstr, n, "%s.tools: longer than %u bytes", where, CFG_MAX_TOOLS_BYTES);
  }
  *out = s;
  return AW_OK;
}

/* tool_choice: "auto" | "required" | "none" | {"type":"function","function":
 * {"name":..}} naming one of the assistant's function tools; printed
 * canonically into *out. */
static int parse_tool_choice(const cJSON *choice, const cJSON *tools, const char *where, char **out,
                             char *errstr, size_t n) {
  *out = NULL;
  static const char expect[] =
      "expected \"auto\", \"required\", \"none\" or {\"type\": \"function\", \"function\": {\"name\": ..}}";
  if (cJSON_IsString(choice)) {
    const char *v = choice->valuestring;
    if (strcmp(v, "auto") && strcmp(v, "required") && strcmp(v, "none"))
      return cfg_err(errstr, n, "%s.tool_choice: \"%.40s\": %s", where, v, expect);
    if (!strcmp(v, "required") && cJSON_GetArraySize(tools) == 0)
      return cfg_err(errstr, n, "%s.tool_choice: \"required\" but the assistant has no tools", where);
  } else if (cJSON_IsObject(choice)) {
    const cJSON *it;
    cJSON_ArrayForEach(it, choice) {
      if (strcmp(it->string, "type") && strcmp(it->string, "function"))
        return cfg_err(errstr, n, "%s.tool_choice: unknown key \"%.40s\" (%s)", where, it->string, expect);
    }
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(choice, "type");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(choice, "function");
    const cJSON *fname = cJSON_IsObject(fn) ? cJSON_GetObjectItemCaseSensitive(fn, "name") : NULL;
    if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "function") || !cJSON_IsString(fname) ||
        cJSON_GetArraySize(fn) != 1)
      return cfg_err(errstr, n, "%s.tool_choice: %s", where, expect);
    /* It must name one of this assistant's function tools. */
    int found = 0;
    cJSON_ArrayForEach(it, tools) {
      const cJSON *f = cJSON_GetObjectItemCaseSensitive(it, "function");
      const cJSON *nm = cJSON_IsObject(f) ? cJSON_GetObjectItemCaseSensitive(f, "name") : NULL;
      const cJSON *tt = cJSON_GetObjectItemCaseSensitive(it, "type");
      if (cJSON_IsString(tt) && !strcmp(tt->valuestring, "function") && cJSON_IsString(nm) &&
          !strcmp(nm->valuestring, fname->valuestring))
        found = 1;
    }
    if (!found)
      return cfg_err(errstr, n, "%s.tool_choice: function \"%.64s\" is not one of the assistant's function tools",
                    where, fname->valuestring);
  } else {
    return cfg_err(errstr, n, "%s.tool_choice: %s", where, expect);
  }
  *out = cJSON_PrintUnformatted(choice);
  return *out ? AW_OK : aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
}


/* history: {"max_messages": N, "max_tokens": N}, each optional, each a
 * positive integer: the chat backend's context budget for this assistant
 * (0, i.e. absent: the backend's default).  Not part of the hash: the hash
 * names what the Assistants backend keeps remotely, and the budget lives
 * only in the worker. */
static int parse_history(cfg_assistant *a, const cJSON *hist, const char *where, char *errstr, size_t n) {
  char path[160];
  snprintf(path, sizeof path, "%s.history", where);
  if (cJSON_IsNull(hist)) return AW_OK;
  if (!cJSON_IsObject(hist))
    return cfg_err(errstr, n, "%s: expected an object ({\"max_messages\": .., \"max_tokens\": ..})", path);
  int rc = cfg_no_duplicate_keys(hist, path, errstr, n);
  if (rc) return rc;
  const cJSON *it;
  cJSON_ArrayForEach(it, hist) {
    long *dst;
    long long hi;
    if (strcmp(it->string, "max_messages") == 0) dst = &a->history_max_messages, hi = CFG_MAX_HISTORY_MESSAGES;
    else if (strcmp(it->string, "max_tokens") == 0) dst = &a->history_max_tokens, hi = CFG_MAX_HISTORY_TOKENS;
    else return cfg_err(errstr, n, "%s: unknown key \"%.40s\" (expected max_messages, max_tokens)", path, it->string);
    char kp[200];
    snprintf(kp, sizeof kp, "%s.%s", path, it->string);
    long long x = 0; /* set by cfg_json_integer on success */
    rc = cfg_json_integer(it, &x, kp, errstr, n);
    if (rc) return rc;
    if (x < 1 || x > hi)
      return cfg_err(errstr, n, "%s: %lld is out of range [1, %lld] (leave it out for the backend's default)", kp, x, hi);
    *dst = (long)x;
  }
  return AW_OK;
}

/* allow_overrides: an array of request field names ("instructions",
 * "additional_instructions"), each at most once; [] allows none.  Absent or
 * null: WKOV_DEFAULT (overrides.h says why). */
static int parse_allow_overrides(const cJSON *arr, const char *where, unsigned *out, char *errstr, size_t n) {
  *out = WKOV_DEFAULT;
  if (!arr || cJSON_IsNull(arr)) return AW_OK;
  static const char expect[] = "expected an array of \"instructions\", \"additional_instructions\"";
  if (!cJSON_IsArray(arr)) return cfg_err(errstr, n, "%s.allow_overrides: %s", where, expect);
  unsigned bits = 0;
  int i = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, arr) {
    unsigned b = cJSON_IsString(it) ? wkov_bit(it->valuestring) : 0;
    if (!b)
      return cfg_err(errstr, n, "%s.allow_overrides[%d]: %s%.40s%s: %s", where, i, cJSON_IsString(it) ? "\"" : "",
                     cJSON_IsString(it) ? it->valuestring : "not a string", cJSON_IsString(it) ? "\"" : "", expect);
    if (bits & b) return cfg_err(errstr, n, "%s.allow_overrides[%d]: \"%s\" is listed twice", where, i, it->valuestring);
    bits |= b;
    i++;
  }
  *out = bits;
  return AW_OK;
}

unsigned cfg_allowed_overrides(void *c, const char *name) {
  const cfg_assistant *a = name ? cfg_find_assistant(c, name) : NULL;
  return a ? a->allow_overrides : WKOV_DEFAULT;
}

static int parse_assistant(cfg *c, const cJSON *obj, int idx, char *errstr, size_t n) {
  char where[96];
  snprintf(where, sizeof where, "assistants[%d]", idx);
  if (!cJSON_IsObject(obj)) return cfg_err(errstr, n, "%s: expected an object", where);
  const cJSON *name = NULL, *model = NULL, *instr = NULL, *tools = NULL, *choice = NULL, *hist = NULL, *maxout = NULL,
              *overrides = NULL, *stores = NULL, *it;
  cJSON_ArrayForEach(it, obj) {
    const char *k = it->string;
    if (strcmp(k, "name") == 0) name = it;
    else if (strcmp(k, "model") == 0) model = it;
    else if (strcmp(k, "instructions") == 0) instr = it;
    else if (strcmp(k, "tools") == 0) tools = it;
    else if (strcmp(k, "tool_choice") == 0) choice = it;
    else if (strcmp(k, "history") == 0) hist = it;
    else if (strcmp(k, "max_output_tokens") == 0) maxout = it;
    else if (strcmp(k, "allow_overrides") == 0) overrides = it;
    else if (strcmp(k, "vector_stores") == 0) stores = it;
    else return cfg_err(errstr, n, "%s: unknown key \"%s\" (expected name, model, instructions, tools, tool_choice, history, max_output_tokens, allow_overrides, vector_stores)", where, k);
  }
  if (!name) return cfg_err(errstr, n, "%s: missing name", where);
  if (!cJSON_IsString(name)) return cfg_err(errstr, n, "%s.name: expected a string", where);
  if (!name_ok(name->valuestring))
    return cfg_err(errstr, n, "%s.name: invalid name \"%.80s\" (1..%d bytes, no control characters or surrounding blanks)", where,
                  name->valuestring, CFG_NAME_SIZE - 1);
  if (strncmp(name->valuestring, "asst_", 5) == 0)
    return cfg_err(errstr, n, "%s.name: \"%s\" must not start with \"asst_\" (requests use that prefix for API ids)",
                  where, name->valuestring);
  snprintf(where, sizeof where, "assistants[%d] (\"%.64s\")", idx, name->valuestring);
  if (cfg_find_assistant(c, name->valuestring))
    return cfg_err(errstr, n, "%s: duplicate assistant name", where);
  if (!model) return cfg_err(errstr, n, "%s: missing model", where);
  if (!cJSON_IsString(model) || !*model->valuestring)
    return cfg_err(errstr, n, "%s.model: expected a non-empty string", where);
  if (strlen(model->valuestring) >= CFG_MODEL_SIZE)
    return cfg_err(errstr, n, "%s.model: too long (at most %d bytes)", where, CFG_MODEL_SIZE - 1);
  if (instr && !cJSON_IsNull(instr)) {
    if (!cJSON_IsString(instr)) return cfg_err(errstr, n, "%s.instructions: expected a string", where);
    if (strlen(instr->valuestring) > CFG_MAX_INSTRUCTIONS_BYTES)
      return cfg_err(errstr, n, "%s.instructions: longer than %u bytes", where, CFG_MAX_INSTRUCTIONS_BYTES);
  }
  if (c->nassistants >= CFG_MAX_ASSISTANTS)
    return cfg_err(errstr, n, "assistants: more than %d assistants", CFG_MAX_ASSISTANTS);

  long long max_output = 0;
  if (maxout && !cJSON_IsNull(maxout)) {
    char kp[128];
    snprintf(kp, sizeof kp, "%s.max_output_tokens", where);
    int rc = cfg_json_integer(maxout, &max_output, kp, errstr, n);
    if (rc) return rc;
    if (max_output < 1 || max_output > CFG_MAX_OUTPUT_TOKENS)
      return cfg_err(errstr, n, "%s: %lld is out of range [1, %ld] (leave it out for the server's default)", kp,
                    max_output, CFG_MAX_OUTPUT_TOKENS);
  }
  unsigned allow = 0;
  int orc = parse_allow_overrides(overrides, where, &allow, errstr, n);
  if (orc) return orc;
  cfg_assistant *a = &c->assistants[c->nassistants];
  memset(a, 0, sizeof *a);
  a->max_output_tokens = (long)max_output;
  a->allow_overrides = allow;
  orc = cfg_parse_assistant_stores(a, stores, where, errstr, n);
  if (orc) {
    memset(a, 0, sizeof *a);
    return orc;
  }
  if (hist) {
    int rc = parse_history(a, hist, where, errstr, n);
    if (rc) {
      memset(a, 0, sizeof *a);
      return rc;
    }
  }
  char *tools_json = NULL;
  if (tools) {
    int rc = parse_tools(tools, where, &tools_json, errstr, n);
    if (rc) return rc;
  }
  if (instr && cJSON_IsString(instr)) {
    a->instructions = strdup(instr->valuestring);
    if (!a->instructions) {
      free(tools_json);
      return aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
    }
  }
  a->tools_json = tools_json;
  if (choice && !cJSON_IsNull(choice)) {
    int rc = parse_tool_choice(choice, tools, where, &a->tool_choice_json, errstr, n);
    if (rc) {
      free(a->instructions);
      free(a->tools_json);
      memset(a, 0, sizeof *a);
      return rc;
    }
  }
  cfg_copy(a->name, sizeof a->name, name->valuestring);
  cfg_copy(a->model, sizeof a->model, model->valuestring);
  cfg_assistant_hash(a->name, a->model, a->instructions, a->tools_json, a->tool_choice_json, a->hash);
  c->nassistants++;
  return AW_OK;
}

int cfg_parse_assistants(cfg *c, const cJSON *arr, char *errstr, size_t n) {
  if (!cJSON_IsArray(arr)) return cfg_err(errstr, n, "assistants: expected an array");
  int na = cJSON_GetArraySize(arr);
  if (na > CFG_MAX_ASSISTANTS)
    return cfg_err(errstr, n, "assistants: %d assistants, at most %d", na, CFG_MAX_ASSISTANTS);
  cfg_free_assistants(c); /* the file's list replaces any earlier one */
  int i = 0;
  const cJSON *it;
  cJSON_ArrayForEach(it, arr) {
    int rc = parse_assistant(c, it, i++, errstr, n);
    if (rc) return rc;
  }
  return AW_OK;
}


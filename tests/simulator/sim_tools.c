/* sim_tools.c -- scripted tool calls and the answer built from their outputs. */
#include "sim_tools.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Cities the weather rule knows.  Matched case-sensitively on word
 * boundaries, so "paris" or "Parisian" ask for nothing. */
static const char *const cities[] = {
    "Paris", "Tokyo", "London", "Berlin", "New York", "Madrid", "Rome", "Sydney", "Amsterdam", "Lisbon",
    "Vienna", "Prague", "Dublin", "Oslo", "Stockholm", "Helsinki", "Copenhagen", "Warsaw", "Athens",
    "Istanbul", "Cairo", "Moscow", "Beijing", "Shanghai", "Seoul", "Singapore", "Bangkok", "Dubai", "Mumbai",
    "Delhi", "Toronto", "Chicago", "Boston", "Seattle", "San Francisco", "Los Angeles", "Mexico City",
    "Buenos Aires", "Cape Town", "Nairobi", "Melbourne", "Auckland", "Zurich", "Geneva", "Munich",
    "Barcelona", "Milan", "Brussels", NULL};

#define WEATHER_FN "get_weather"

/* Bytes >= 0x80 count as letters: a city followed by a UTF-8 letter is
 * part of a longer word. */
static int wordch(char c) { return isalnum((unsigned char)c) || c == '_' || (c & 0x80); }

typedef struct call {
  size_t pos; /* where the message asked for it: calls go in this order */
  char name[65];
  char *args; /* malloc'd JSON text */
} call;

typedef struct calls {
  call v[STOOLS_MAX_CALLS];
  int n;
} calls;

static void add_call(calls *cs, size_t pos, const char *name, char *args) {
  if (!args) return;
  for (int i = 0; i < cs->n; i++) /* the same call twice is one call */
    if (strcmp(cs->v[i].name, name) == 0 && strcmp(cs->v[i].args, args) == 0) {
      free(args);
      return;
    }
  if (cs->n == STOOLS_MAX_CALLS) {
    free(args);
    return;
  }
  call *c = &cs->v[cs->n++];
  c->pos = pos;
  snprintf(c->name, sizeof c->name, "%s", name);
  c->args = args;
}

/* Is name a function tool of the run? */
static int has_fn(const cJSON *tools, const char *name, size_t len) {
  const cJSON *t;
  cJSON_ArrayForEach(t, tools) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
    if (cJSON_IsString(ty) && strcmp(ty->valuestring, "function") == 0 && cJSON_IsString(nm) &&
        strlen(nm->valuestring) == len && strncmp(nm->valuestring, name, len) == 0)
      return 1;
  }
  return 0;
}

static const char *first_fn(const cJSON *tools) {
  const cJSON *t;
  cJSON_ArrayForEach(t, tools) {
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name");
    if (cJSON_IsString(ty) && strcmp(ty->valuestring, "function") == 0 && cJSON_IsString(nm)) return nm->valuestring;
  }
  return NULL;
}

static char *weather_args(const char *city) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "location", city);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}

/* "call <name> [with <JSON object>]" for each function tool.  Marks the
 * bytes it consumed in used[], so a city inside the JSON is not asked for
 * a second time by the weather rule. */
static void explicit_calls(const char *t, const cJSON *tools, calls *cs, char *used) {
  size_t n = strlen(t);
  for (size_t i = 0; i + 5 < n; i++) {
    if ((i && wordch(t[i - 1])) || strncasecmp(t + i, "call", 4) != 0 || !isspace((unsigned char)t[i + 4])) continue;
    size_t j = i + 4;
    while (isspace((unsigned char)t[j])) j++;
    size_t k = j;
    while (isalnum((unsigned char)t[k]) || t[k] == '_' || t[k] == '-') k++;
    if (k == j || k - j > 64 || !has_fn(tools, t + j, k - j)) continue;
    char name[65];
    memcpy(name, t + j, k - j);
    name[k - j] = '\0';
    size_t end = k, w = k;
    while (isspace((unsigned char)t[w])) w++;
    char *args = NULL;
    if (strncasecmp(t + w, "with", 4) == 0 && isspace((unsigned char)t[w + 4])) {
      w += 4;
      while (isspace((unsigned char)t[w])) w++;
      const char *jend = NULL;
      cJSON *o = t[w] == '{' ? cJSON_ParseWithOpts(t + w, &jend, 0) : NULL;
      if (cJSON_IsObject(o)) {
        args = cJSON_PrintUnformatted(o);
        end = (size_t)(jend - t);
      }
      cJSON_Delete(o);
    }
    memset(used + i, 1, end - i);
    add_call(cs, i, name, args ? args : strdup("{}"));
    i = end - 1;
  }
}

static void weather_calls(const char *t, calls *cs, const char *used) {
  for (size_t i = 0; t[i]; i++) {
    if (used[i] || (i && wordch(t[i - 1])) || !isupper((unsigned char)t[i])) continue;
    for (int c = 0; cities[c]; c++) {
      size_t l = strlen(cities[c]);
      if (strncmp(t + i, cities[c], l) == 0 && !wordch(t[i + l])) {
        add_call(cs, i, WEATHER_FN, weather_args(cities[c]));
        i += l - 1;
        break;
      }
    }
  }
}

static int by_pos(const void *a, const void *b) {
  size_t x = ((const call *)a)->pos, y = ((const call *)b)->pos;
  return x < y ? -1 : x > y;
}

/* {"name","arguments","label"} for one call; the label is what the answer
 * calls its output: the location of a weather call, else the name. */
static cJSON *call_json(const call *c, int bad) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", c->name);
  size_t l = strlen(c->args);
  /* Cutting the closing brace is the simplest way to invalid JSON that
   * still looks like what a model gets wrong. */
  char *args = strndup(c->args, bad && l ? l - 1 : l);
  cJSON_AddStringToObject(o, "arguments", args ? args : "");
  free(args);
  cJSON *a = strcmp(c->name, WEATHER_FN) == 0 ? cJSON_Parse(c->args) : NULL;
  const cJSON *loc = cJSON_GetObjectItemCaseSensitive(a, "location");
  cJSON_AddStringToObject(o, "label", cJSON_IsString(loc) && loc->valuestring[0] ? loc->valuestring : c->name);
  cJSON_Delete(a);
  return o;
}

cJSON *stools_plan(const char *text, const char *instr, const cJSON *tools, const cJSON *choice, int parallel) {
  if (!text || !first_fn(tools)) return NULL;
  if (cJSON_IsString(choice) && strcmp(choice->valuestring, "none") == 0) return NULL;
  size_t n = strlen(text);
  char *used = calloc(n + 1, 1);
  if (!used) return NULL;
  calls cs = {.n = 0};
  explicit_calls(text, tools, &cs, used);
  if (has_fn(tools, WEATHER_FN, strlen(WEATHER_FN))) weather_calls(text, &cs, used);
  free(used);
  qsort(cs.v, (size_t)cs.n, sizeof cs.v[0], by_pos);

  /* A forced tool_choice keeps only calls to that function, and makes one
   * with "{}" when the message asked for none; "required" forces some call. */
  const cJSON *forced = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(choice, "function"), "name");
  if (cJSON_IsString(forced)) {
    int k = 0;
    for (int i = 0; i < cs.n; i++) {
      if (strcmp(cs.v[i].name, forced->valuestring) == 0) cs.v[k++] = cs.v[i];
      else free(cs.v[i].args);
    }
    cs.n = k;
    if (!cs.n && has_fn(tools, forced->valuestring, strlen(forced->valuestring)))
      add_call(&cs, 0, forced->valuestring, strdup("{}"));
  } else if (!cs.n && cJSON_IsString(choice) && strcmp(choice->valuestring, "required") == 0) {
    add_call(&cs, 0, first_fn(tools), strdup("{}"));
  }
  if (!cs.n) return NULL;

  int bad = strcasestr(text, "bad arguments") != NULL;
  int twice = strcasestr(text, "twice") != NULL || (instr && strcasestr(instr, "two rounds") != NULL);
  cJSON *plan = cJSON_CreateArray();
  for (int pass = 0; pass < (twice ? 2 : 1); pass++) {
    cJSON *round = NULL;
    for (int i = 0; i < cs.n; i++) {
      if (!round || !parallel) {
        round = cJSON_CreateArray();
        cJSON_AddItemToArray(plan, round);
      }
      cJSON_AddItemToArray(round, call_json(&cs.v[i], bad));
    }
  }
  for (int i = 0; i < cs.n; i++) free(cs.v[i].args);
  return plan;
}

/* Append s with whitespace runs collapsed and ends trimmed. */
static int append_collapsed(buf *b, const char *s) {
  int space = 0, any = 0;
  for (; *s; s++) {
    if (isspace((unsigned char)*s)) {
      space = any;
      continue;
    }
    if (space && buf_append(b, " ", 1) != AW_OK) return -1;
    if (buf_append(b, s, 1) != AW_OK) return -1;
    space = 0;
    any = 1;
  }
  return any;
}

char *stools_answer(const cJSON *outputs) {
  buf b;
  /* Bodies are capped at 1 MiB, so outputs (and labels) fit in 4 MiB. */
  buf_init(&b, 4u << 20);
  const cJSON *o;
  int first = 1;
  cJSON_ArrayForEach(o, outputs) {
    const cJSON *label = cJSON_GetObjectItemCaseSensitive(o, "label");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(o, "output");
    if (!first && buf_append(&b, " ", 1) != AW_OK) goto fail;
    first = 0;
    if (append_collapsed(&b, cJSON_IsString(label) ? label->valuestring : "tool") < 0 ||
        buf_append(&b, ": ", 2) != AW_OK)
      goto fail;
    int any = append_collapsed(&b, cJSON_IsString(out) ? out->valuestring : "");
    if (any < 0 || (!any && buf_appends(&b, "(no output)") != AW_OK)) goto fail;
    char last = b.data[b.len - 1];
    if (last != '.' && last != '!' && last != '?' && buf_append(&b, ".", 1) != AW_OK) goto fail;
  }
  if (first && buf_appends(&b, "Done.") != AW_OK) goto fail;
  char *s = strndup(b.data, b.len);
  buf_free(&b);
  return s;
fail:
  buf_free(&b);
  return NULL;
}

/* sim_turn.c -- the next move of a turn, from its history (Responses and Chat). */
#include "sim_turn.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sim_conversations.h"
#include "sim_model.h"
#include "sim_tools.h"

static int is(const cJSON *v, const char *s) { return cJSON_IsString(v) && strcmp(v->valuestring, s) == 0; }
static int item_is(const cJSON *it, const char *type) { return is(cJSON_GetObjectItemCaseSensitive(it, "type"), type); }

void sturn_clear(sturn *t) {
  cJSON_Delete(t->calls);
  free(t->answer);
  memset(t, 0, sizeof *t);
}

/* The call a function_call_output answers: its label in the answer is
 * the city of a get_weather call, else the function name (as for runs). */
static cJSON *label_for(const cJSON *hist, const char *call_id) {
  const cJSON *it;
  cJSON_ArrayForEach(it, hist) {
    if (!item_is(it, "function_call") || !is(cJSON_GetObjectItemCaseSensitive(it, "call_id"), call_id)) continue;
    const char *name = cJSON_GetObjectItemCaseSensitive(it, "name")->valuestring;
    const char *text = cJSON_GetObjectItemCaseSensitive(it, "arguments")->valuestring;
    cJSON *args = strcmp(name, "get_weather") == 0 ? cJSON_Parse(text) : NULL;
    if (!args && strcmp(name, "get_weather") == 0) {
      /* "bad arguments" cut the closing brace: the label is the city of
       * the arguments as planned (sim_tools labels calls the same way). */
      size_t len = strlen(text);
      char *fixed = malloc(len + 2);
      if (fixed) {
        memcpy(fixed, text, len);
        memcpy(fixed + len, "}", 2);
        args = cJSON_Parse(fixed);
        free(fixed);
      }
    }
    const cJSON *loc = cJSON_GetObjectItemCaseSensitive(args, "location");
    cJSON *l = cJSON_CreateString(cJSON_IsString(loc) && loc->valuestring[0] ? loc->valuestring : name);
    cJSON_Delete(args);
    return l;
  }
  return cJSON_CreateString(call_id);
}

/* The answer built from the function_call_output items from `from` on,
 * in order (every round of the turn, as for runs). */
static int answer_from_outputs(sturn *t, const cJSON *hist, const cJSON *from) {
  cJSON *outs = cJSON_CreateArray();
  for (const cJSON *o = from; o; o = o->next) {
    if (!item_is(o, "function_call_output")) continue;
    cJSON *rec = cJSON_CreateObject();
    cJSON_AddItemToObject(rec, "label", label_for(hist, cJSON_GetObjectItemCaseSensitive(o, "call_id")->valuestring));
    cJSON_AddItemToObject(rec, "output", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(o, "output"), 1));
    cJSON_AddItemToArray(outs, rec);
    t->outputs++;
  }
  t->answer = stools_answer(outs);
  cJSON_Delete(outs);
  t->tokens = smodel_count_tokens(t->answer);
  t->from_outputs = 1;
  return t->answer ? AW_OK : AW_ENOMEM;
}

int sturn_decide(const cJSON *hist, const char *instr, const cJSON *tools, const cJSON *choice, int parallel,
                 int answer_tokens, sturn *t) {
  memset(t, 0, sizeof *t);
  /* Walked by their links: a history of n items costs O(n), not O(n^2). */
  const cJSON *user_msg = NULL, *last = NULL, *it;
  for (it = hist ? hist->child : NULL; it; it = it->next) {
    if (is(cJSON_GetObjectItemCaseSensitive(it, "role"), "user")) user_msg = it;
    last = it;
  }
  int outputs_last = last && item_is(last, "function_call_output");
  /* The items of the turn: after its user message (all of them without one). */
  const cJSON *after = user_msg ? user_msg->next : hist ? hist->child : NULL;
  buf user;
  buf_init(&user, 1 << 20);
  if (user_msg) sconv_item_text(user_msg, &user);
  const char *text = user.data ? user.data : "";
  t->user_tokens = smodel_count_tokens(text);
  cJSON *p = stools_plan(text, instr, tools, choice, parallel);
  /* The rounds made: the groups of consecutive function calls of the turn. */
  int made = 0;
  if (outputs_last)
    for (it = after; it; it = it->next)
      made += item_is(it, "function_call") && (it == after || !item_is(it->prev, "function_call"));
  int rc;
  if (p && made < cJSON_GetArraySize(p)) {
    t->calls = cJSON_DetachItemFromArray(p, made);
    rc = t->calls ? AW_OK : AW_ENOMEM;
  } else if (outputs_last) {
    rc = answer_from_outputs(t, hist, after);
  } else {
    t->answer = smodel_answer(text, instr, NULL, answer_tokens);
    t->tokens = answer_tokens;
    rc = t->answer ? AW_OK : AW_ENOMEM;
  }
  cJSON_Delete(p);
  buf_free(&user);
  if (rc) sturn_clear(t);
  return rc;
}

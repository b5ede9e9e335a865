/* sim_rsteps.c -- run steps list/get with include[] (file search result content). */
#include "sim_rsteps.h"

#include <stdlib.h>
#include <string.h>

#include "sim_req.h"

#define INCLUDE_CONTENT "step_details.tool_calls[*].file_search.results[*].content"

/* Give each file_search result of step (a parsed copy) its text, from the
 * run's file search, whose results are the step's in the same order. */
static void add_content(cJSON *step, const srun_state *rs) {
  const cJSON *texts = rs->fsearch ? cJSON_GetObjectItemCaseSensitive(rs->fsearch, "results") : NULL, *call;
  cJSON_ArrayForEach(call, cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(step, "step_details"),
                                                            "tool_calls")) {
    cJSON *res = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(call, "file_search"), "results"), *x;
    int i = 0;
    cJSON_ArrayForEach(x, res) {
      const cJSON *t = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(texts, i++), "text");
      cJSON *c = cJSON_CreateObject();
      cJSON_AddStringToObject(c, "type", "text");
      cJSON_AddStringToObject(c, "text", cJSON_IsString(t) ? t->valuestring : "");
      cJSON *arr = cJSON_CreateArray();
      cJSON_AddItemToArray(arr, c);
      jset(x, "content", arr);
    }
  }
}

void srsteps_reply(const sapi_req *q, sapi_reply *r, sobj *run, const char *step_id) {
  const char *inc = q->arg(q->arg_cls, "include[]");
  if (inc && strcmp(inc, INCLUDE_CONTENT) != 0) {
    SREQ_BAD(r, "include[]", "invalid_value", "Invalid value: '%s'. Supported values are: '%s'.", inc, INCLUDE_CONTENT);
    return;
  }
  if (step_id) {
    sobj *o = sstore_get(step_id, SK_STEP);
    if (!o || o->parent != run) {
      sreq_not_found(r, "run step", step_id);
      return;
    }
    sreq_obj(r, o->json);
  } else {
    sreq_list(q, r, &run->kids, NULL, NULL);
  }
  if (!inc || r->status != 200) return;
  cJSON *o = cJSON_Parse(r->body);
  if (!o) {
    free(r->body);
    r->body = NULL;
    sreq_json(r, 500, NULL);
    return;
  }
  if (step_id) {
    add_content(o, run->run);
  } else {
    cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(o, "data")) add_content(s, run->run);
  }
  free(r->body);
  r->body = NULL;
  sreq_json(r, 200, o);
}

/* sim_page.c -- list pages over arrays of objects. */
#include "sim_page.h"

#include <stdlib.h>
#include <string.h>

#include "sim_req.h"

static const char *id_of(const cJSON *o) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "id");
  return cJSON_IsString(v) ? v->valuestring : "";
}

/* Index of the object named by query argument key: 0 absent, 1 found, -1 bad (r set). */
static int cursor(const sapi_req *q, sapi_reply *r, const char *key, cJSON *const *objs, size_t n, size_t *idx) {
  const char *id = q->arg(q->arg_cls, key);
  if (!id || !*id) return 0;
  for (size_t i = 0; i < n; i++)
    if (strcmp(id_of(objs[i]), id) == 0) {
      *idx = i;
      return 1;
    }
  SREQ_BAD(r, key, "invalid_value", "Invalid '%s': no object with id '%s' in this list.", key, id);
  return -1;
}

void spage_reply(const sapi_req *q, sapi_reply *r, cJSON *const *objs, size_t n, const spage_opts *o) {
  long limit = o->default_limit;
  const char *s = q->arg(q->arg_cls, "limit");
  if (s) {
    char *end;
    limit = strtol(s, &end, 10);
    if (!*s || *end || limit < 1 || limit > o->max_limit) {
      SREQ_BAD(r, "limit", "invalid_value", "Invalid 'limit': expected an integer between 1 and %ld, but got '%s'.",
               o->max_limit, s);
      return;
    }
  }
  int desc = 1;
  s = q->arg(q->arg_cls, "order");
  if (s) {
    if (strcmp(s, "asc") == 0) desc = 0;
    else if (strcmp(s, "desc") != 0) {
      SREQ_BAD(r, "order", "invalid_value", "Invalid value: '%s'. Supported values are: 'asc' and 'desc'.", s);
      return;
    }
  }
  if (!o->allow_before && q->arg(q->arg_cls, "before")) {
    SREQ_BAD(r, "before", "unknown_parameter", "Unknown parameter: 'before'.");
    return;
  }
  size_t ai = 0, bi = 0;
  int has_after = cursor(q, r, "after", objs, n, &ai);
  if (has_after < 0) return;
  int has_before = o->allow_before ? cursor(q, r, "before", objs, n, &bi) : 0;
  if (has_before < 0) return;
  /* Listing positions p = 0..n-1 map to index desc ? n-1-p : p. */
  long nn = (long)n, lo = 0, hi = nn;
  if (has_after) lo = (desc ? nn - 1 - (long)ai : (long)ai) + 1;
  if (has_before) hi = desc ? nn - 1 - (long)bi : (long)bi;
  int backwards = has_before && !has_after; /* the page right before the cursor */
  long count = hi > lo ? hi - lo : 0, got = count < limit ? count : limit;
  long first = backwards ? hi - got : lo;
  cJSON *page = cJSON_CreateObject();
  cJSON_AddStringToObject(page, "object", "list");
  cJSON *data = cJSON_AddArrayToObject(page, "data");
  for (long k = 0; k < got; k++) {
    long p = first + k;
    cJSON_AddItemReferenceToArray(data, objs[desc ? nn - 1 - p : p]);
  }
  /* As sreq_list: "" rather than the real API's null for an empty page. */
  cJSON_AddStringToObject(page, "first_id", got ? id_of(objs[desc ? nn - 1 - first : first]) : "");
  long lp = first + got - 1;
  cJSON_AddStringToObject(page, "last_id", got ? id_of(objs[desc ? nn - 1 - lp : lp]) : "");
  cJSON_AddBoolToObject(page, "has_more", count > got);
  sreq_json(r, 200, page); /* references: deleting the page leaves the objects */
}

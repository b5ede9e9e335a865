/* api_gate.c -- the pure parts of the rate gate's port: request classes and
 * token estimates (see api_gate.h). */
#include "api_gate.h"

#include <cJSON.h>
#include <stdio.h>
#include <string.h>

void api_gate_class(const char *path, char *out, size_t n) {
  if (!out || !n) return;
  out[0] = '\0';
  if (!path) path = "";
  while (*path == '/') path++;
  size_t k = 0;
  for (const char *p = path; *p && *p != '/' && *p != '?' && *p != '#' && k + 1 < n; p++) {
    char ch = *p;
    if (ch >= 'A' && ch <= 'Z') ch = (char)(ch - 'A' + 'a');
    if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-') out[k++] = ch;
  }
  out[k] = '\0';
  if (k == 0) snprintf(out, n, "other");
  else if (strcmp(out, "threads") == 0) snprintf(out, n, "assistants");
}

long api_gate_estimate_tokens(const char *body, size_t len) {
  if (!body || !len) return 0;
  long tokens = (long)(len / 4 + (len % 4 ? 1 : 0));
  cJSON *j = cJSON_ParseWithLength(body, len);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return tokens;
  }
  static const char *const caps[] = {"max_output_tokens", "max_completion_tokens", "max_tokens"};
  for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, caps[i]);
    if (cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble < 1e9) {
      tokens += (long)v->valuedouble;
      break;
    }
  }
  cJSON_Delete(j);
  return tokens;
}

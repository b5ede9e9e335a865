/* api_error.c -- the API's error bodies as our error messages (api_client.h). */
#include "api_client.h"

#include <stdio.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "log.h"

static const char *err_str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Copy at most n-1 bytes of a body that may not be text, replacing control
 * bytes so an error message stays one printable line. */
static void copy_printable(char *dst, size_t n, const char *s, size_t len) {
  size_t o = 0;
  for (size_t i = 0; i < len && o + 1 < n; i++) {
    unsigned char c = (unsigned char)s[i];
    dst[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
  }
  if (n) dst[o] = '\0';
}

void api_error_format(const char *method, const char *path, int status, const char *body,
                    size_t body_len, char *code, size_t code_size, char *msg, size_t msg_size) {
  char detail[512];
  const char *type = NULL, *ecode = NULL, *emsg = NULL;
  cJSON *j = body_len ? cJSON_ParseWithLength(body, body_len) : NULL;
  const cJSON *e = (cJSON_IsObject(j) ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL);
  if (cJSON_IsObject(e)) {
    type = err_str(e, "type");
    ecode = err_str(e, "code");
    emsg = err_str(e, "message");
  }
  if (code && code_size) snprintf(code, code_size, "%s", ecode ? ecode : type ? type : "");
  if (emsg) copy_printable(detail, sizeof detail, emsg, strlen(emsg));
  else copy_printable(detail, sizeof detail, body ? body : "", body ? body_len : 0);
  char red[sizeof detail];
  log_redact(detail, red, sizeof red);
  if (msg && msg_size) {
    if (type)
      snprintf(msg, msg_size, "%s %s: HTTP %d %s: %s", method, path, status, type, red);
    else if (red[0])
      snprintf(msg, msg_size, "%s %s: HTTP %d: %s", method, path, status, red);
    else
      snprintf(msg, msg_size, "%s %s: HTTP %d", method, path, status);
  }
  cJSON_Delete(j);
}


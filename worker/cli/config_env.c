/* config_env.c -- the environment's overrides (each field's variable in
 * cfg_fields), the secrets only the environment may hold (API key, tool
 * secrets), and their removal from the environment once read.
 */
#include "config_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract_tool.h"


const char *cfg_env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

/* A tool secret from the environment; its value is never echoed. */
static int env_tool_secret(const char *name, char *dst, size_t size, char *errstr, size_t n) {
  const char *v = cfg_env(name);
  if (!v) return AW_OK;
  size_t len = strlen(v);
  if (len >= size) return cfg_err(errstr, n, "%s: too long (at most %zu bytes)", name, size - 1);
  if (len < CORR_MIN_SECRET)
    return cfg_err(errstr, n, "%s: shorter than %d bytes (use a random value, e.g. from `openssl rand -base64 32`)",
                  name, CORR_MIN_SECRET);
  for (const char *p = v; *p; p++)
    if ((unsigned char)*p <= 0x20 || *p == 0x7f)
      return cfg_err(errstr, n, "%s: contains whitespace or control characters", name);
  memcpy(dst, v, len + 1);
  return AW_OK;
}

int cfg_apply_env(cfg *c, char *errstr, size_t errstr_size) {
  for (size_t i = 0; i < cfg_nfields; i++) {
    const field *f = &cfg_fields[i];
    const char *v = f->env ? cfg_env(f->env) : NULL;
    if (!v) continue;
    int rc;
    if (cfg_is_number_type(f->type)) {
      char *endp;
      errno = 0;
      long long x = strtoll(v, &endp, 10);
      if (errno || endp == v || *endp)
        return cfg_err(errstr, errstr_size, "%s: expected an integer, got \"%.32s\"", f->env, v);
      rc = cfg_set_number(c, f, x, f->env, errstr, errstr_size);
    } else if (f->type == F_BOOL) {
      int b = !strcmp(v, "true") || !strcmp(v, "1") ? 1 : !strcmp(v, "false") || !strcmp(v, "0") ? 0 : -1;
      if (b < 0) return cfg_err(errstr, errstr_size, "%s: expected true or false, got \"%.32s\"", f->env, v);
      *(int *)((char *)c + f->off) = b;
      rc = AW_OK;
    } else {
      rc = cfg_set_string(c, f, v, f->env, errstr, errstr_size);
    }
    if (rc) return rc;
  }
  const char *name = "AW_API_KEY", *key = cfg_env(name);
  if (!key) key = cfg_env(name = "OPENAI_API_KEY");
  if (key) {
    /* Never echo the value. */
    if (strlen(key) >= sizeof c->api.api_key)
      return cfg_err(errstr, errstr_size, "%s: too long (at most %zu bytes)", name, sizeof c->api.api_key - 1);
    for (const char *p = key; *p; p++)
      if ((unsigned char)*p <= 0x20 || *p == 0x7f)
        return cfg_err(errstr, errstr_size, "%s: contains whitespace or control characters", name);
    cfg_copy(c->api.api_key, sizeof c->api.api_key, key);
  }
  int rc = env_tool_secret("AW_TOOL_SECRET", c->tools.secret, sizeof c->tools.secret, errstr, errstr_size);
  if (!rc)
    rc = env_tool_secret("AW_TOOL_SECRET_PREVIOUS", c->tools.secret_previous, sizeof c->tools.secret_previous,
                         errstr, errstr_size);
  if (rc) return rc;
  if (c->tools.secret_previous[0] && !c->tools.secret[0])
    return cfg_err(errstr, errstr_size,
                  "AW_TOOL_SECRET_PREVIOUS: set without AW_TOOL_SECRET (the previous secret only verifies "
                  "replies; new correlation ids need the current one)");
  rc = cfg_apply_credentials(c, errstr, errstr_size); /* Redis / Kafka passwords (config_creds.c) */
  if (rc) return rc;
  rc = cfg_load_tool_request_keys(c, errstr, errstr_size); /* AW_TOOL_REQUEST_KEY[_FILE] (config_functions.c) */
  if (rc) return rc;
  return cfg_resolve_routes(c, errstr, errstr_size); /* the default topic may have changed */
}

/* Every environment variable cfg_apply_env reads a secret from.  A new
 * secret read from the environment belongs here, so that
 * cfg_scrub_secret_env removes it once copied. */
static const char *const SECRET_ENV[] = {"AW_API_KEY", "OPENAI_API_KEY", "AW_TOOL_SECRET",
                                         "AW_TOOL_SECRET_PREVIOUS", "AW_REDIS_PASSWORD",
                                         "AW_KAFKA_SASL_PASSWORD", "AW_KAFKA_SSL_KEY_PASSWORD",
                                         "AW_TOOL_REQUEST_KEY", "AW_TOOL_REQUEST_KEY_PREVIOUS"};

static int is_secret_env_name(const char *name, size_t len) {
  for (size_t i = 0; i < sizeof SECRET_ENV / sizeof SECRET_ENV[0]; i++)
    if (strlen(SECRET_ENV[i]) == len && strncmp(SECRET_ENV[i], name, len) == 0) return 1;
  /* A guard for secrets added elsewhere later: any AW_ variable named like one. */
  if (len < 3 || strncmp(name, "AW_", 3) != 0) return 0;
  static const char *const words[] = {"SECRET", "PASSWORD", "TOKEN", "_KEY"};
  for (size_t w = 0; w < sizeof words / sizeof words[0]; w++) {
    size_t wl = strlen(words[w]);
    for (size_t i = 0; i + wl <= len; i++)
      if (strncmp(name + i, words[w], wl) == 0) return 1;
  }
  return 0;
}

int cfg_scrub_secret_env(void) {
  extern char **environ;
  int n = 0;
  for (;;) {
    char name[256];
    int found = 0;
    for (char **e = environ; e && *e; e++) {
      const char *eq = strchr(*e, '=');
      size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
      if (!eq || len >= sizeof name || !is_secret_env_name(*e, len)) continue;
      /* unsetenv only drops the pointer: the bytes of the process's
       * initial environment stay where /proc/<pid>/environ and a core dump
       * read them, so wipe the value in place first. */
      explicit_bzero((char *)eq + 1, strlen(eq + 1));
      memcpy(name, *e, len);
      name[len] = '\0';
      found = 1;
      break;
    }
    if (!found) break;
    unsetenv(name); /* environ changes: scan again from the start */
    n++;
  }
  return n;
}

/* Checks across the file and the environment. */

/* config_int.h -- what the configuration's files share (config.c: the
 * field table, the document, accessors and dump; config_assistants.c;
 * config_functions.c; config_env.c).  Not for the rest of the worker:
 * config.h is its interface. */
#ifndef AW_CONFIG_INT_H
#define AW_CONFIG_INT_H

#include <stddef.h>

#include <cJSON.h>

#include "config.h"

/* ---- the scalar settings: one row per setting (config.c) ---------------- */

typedef enum {
  F_STR,      /* non-empty string */
  F_STR_OPT,  /* string, may be empty */
  F_TOPIC,    /* Kafka topic name */
  F_URL,      /* http(s) URL, trailing '/' dropped */
  F_INT,
  F_LONG,
  F_SIZE,
  F_LEVEL,    /* log level name */
  F_BOOL,     /* true/false (env: true, false, 1, 0) into an int */
  F_BACKEND,  /* a backend kind: responses, assistants, chat */
} ftype;

typedef struct field {
  const char *section; /* "" for top level */
  const char *key;
  const char *env;     /* NULL: file only */
  ftype type;
  size_t off;
  size_t size;         /* string capacity incl. NUL */
  long long lo, hi;    /* numbers */
} field;

extern const field cfg_fields[];
extern const size_t cfg_nfields;

/* ---- helpers every parser uses (config.c) ------------------------------- */

void cfg_copy(char *dst, size_t size, const char *src);
/** Format the error into errstr; returns AW_ECONFIG. */
int cfg_err(char *errstr, size_t n, const char *fmt, ...) AW_PRINTF(3, 4);
/** "section.key", or "key" at the top level, into out. */
const char *cfg_path(const char *section, const char *key, char *out, size_t n);
int cfg_topic_ok(const char *s);
int cfg_json_integer(const cJSON *v, long long *out, const char *where, char *errstr, size_t n);
int cfg_no_duplicate_keys(const cJSON *obj, const char *section, char *errstr, size_t n);
/** Set a field from text (where names the source for errors). */
int cfg_set_string(cfg *c, const field *f, const char *v, const char *where, char *errstr, size_t n);
int cfg_set_number(cfg *c, const field *f, long long v, const char *where, char *errstr, size_t n);
int cfg_is_number_type(ftype t);
void cfg_free_assistants(cfg *c);
void cfg_free_routes(cfg *c);

/* ---- sections with their own parsers ------------------------------------ */

/* config_assistants.c */
int cfg_parse_assistants(cfg *c, const cJSON *arr, char *errstr, size_t n);
int cfg_function_name_ok(const char *s);

/* config_env.c */
/** getenv, with an empty value taken as unset. */
const char *cfg_env(const char *name);

/* config_creds.c: infrastructure credentials (Redis AUTH, Kafka SASL/TLS) */
/** The passwords from the environment or their files, and the checks
 *  between them (cfg_apply_env calls it last). */
int cfg_apply_credentials(cfg *c, char *errstr, size_t n);
/** Is path ("redis.password", ...) a password key the file may not hold? */
int cfg_is_credential_key(const char *path);
int cfg_refuse_credential(const char *path, char *errstr, size_t n);
/** Add the credentials' masked view to the dump ("***" or null). */
int cfg_dump_credentials(const cfg *c, cJSON *root);
/** One secret from the variable env, or from the file path names (file_setting
 *  names that setting in errors; NULL / "" path: none); both set is an error.
 *  dst (size bytes) is left untouched when neither is set. */
int cfg_load_secret(const char *env, const char *path, const char *file_setting, char *dst, size_t size,
                    char *errstr, size_t n);

/* config_knowledge.c: knowledge.vector_stores and assistants[].vector_stores */
int cfg_parse_knowledge(cfg *c, const cJSON *obj, char *errstr, size_t n);
int cfg_parse_assistant_stores(cfg_assistant *a, const cJSON *arr, const char *where, char *errstr, size_t n);
/** After the whole document: every assistant's store names exist. */
int cfg_knowledge_resolve(const cfg *c, char *errstr, size_t n);
/** After the environment: what the backend cannot serve (chat: no hosted
 *  tools, no stores; assistants: one store per assistant). */
int cfg_knowledge_check_backend(const cfg *c, char *errstr, size_t n);
void cfg_free_knowledge(cfg *c);
int cfg_dump_knowledge(const cfg *c, cJSON *root);

/* config_functions.c */
int cfg_parse_functions(cfg *c, const cJSON *obj, char *errstr, size_t n);
/** AW_TOOL_REQUEST_KEY[_FILE] and AW_TOOL_REQUEST_KEY_PREVIOUS[_FILE] into c
 *  (cfg_apply_env calls it). */
int cfg_load_tool_request_keys(cfg *c, char *errstr, size_t n);
/** Rebuild the routes from the assistants, "functions" and the topics. */
int cfg_resolve_routes(cfg *c, char *errstr, size_t n);
int cfg_is_tool_secret_key(const char *k);
int cfg_refuse_tool_secret(const char *path, char *errstr, size_t n);
int cfg_has_function_tool(const cfg_assistant *a);

#endif

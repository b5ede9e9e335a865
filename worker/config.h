/* config.h -- the worker's configuration (prefix cfg_).
 *
 * Load order: built-in defaults (cfg_init), then the JSON config file (path
 * from --config, else $AW_CONFIG, else none), then environment variables
 * (env wins).  cfg_load does all three and validates.
 *
 * File format (every key optional; unknown keys are rejected, by path):
 *   {"kafka": {"brokers": "h:9092", "group_id": "...",
 *              "topics": {"requests": .., "responses": .., "deltas": .., "dlq": ..},
 *              "properties": {"security.protocol": "SASL_SSL", ...}},
 *    "redis": {"host": .., "port": .., "prefix": .., "connect_timeout_ms": ..},
 *    "api":   {"base_url": .., "organization": .., "project": .., "timeout_ms": ..,
 *              "stream_idle_timeout_ms": .., "max_retries": ..},
 *    "worker": {"max_in_flight": .., "max_event_bytes": .., "max_answer_bytes": ..,
 *               "commit_interval_ms": .., "health_port": ..},
 *    "log_level": "info",
 *    "assistants": [{"name": .., "model": .., "instructions": .., "tools": [..]}]}
 *
 * The API key is deliberately NOT accepted from the file: secrets come from
 * the environment (AW_API_KEY, else OPENAI_API_KEY), typically a Kubernetes
 * Secret.  A key found in the file is an error, so that nobody commits one
 * believing it is used.
 *
 * Environment: AW_KAFKA_BROKERS, AW_KAFKA_GROUP_ID, AW_TOPIC_REQUESTS,
 * AW_TOPIC_RESPONSES, AW_TOPIC_DELTAS, AW_TOPIC_DLQ, AW_REDIS_HOST,
 * AW_REDIS_PORT, AW_REDIS_PREFIX, AW_API_BASE_URL, AW_API_KEY (falls back to
 * OPENAI_API_KEY), AW_API_ORG, AW_API_PROJECT, AW_MAX_IN_FLIGHT,
 * AW_LOG_LEVEL, AW_HEALTH_PORT.  A variable set to the empty string counts
 * as unset (a Kubernetes manifest often carries empty placeholders).
 *
 * Bounded: at most CFG_MAX_ASSISTANTS assistants and CFG_MAX_PROPERTIES
 * librdkafka properties; every string has a cap and an over-long value is an
 * error naming the setting, never a silent truncation.
 *
 * @locality main thread, at start-up; the loaded cfg is read-only afterwards.
 */
#ifndef AW_CONFIG_H
#define AW_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include "aw_error.h"
#include "backend.h"
#include "buf.h"
#include "log.h"

#define CFG_MAX_ASSISTANTS 64
#define CFG_MAX_PROPERTIES 128
#define CFG_MAX_FILE_BYTES (16u * 1024 * 1024)
#define CFG_MAX_INSTRUCTIONS_BYTES (1024u * 1024) /* OpenAI: 256,000 characters */
#define CFG_MAX_TOOLS_BYTES (512u * 1024)
#define CFG_MAX_TOOLS 128                          /* OpenAI's limit per assistant */
#define CFG_MAX_PROP_VALUE_BYTES 4096

/* Capacities include the NUL. */
#define CFG_BROKERS_SIZE 1024
#define CFG_NAME_SIZE 257     /* assistant names: 1..256 bytes, as the API allows */
#define CFG_MODEL_SIZE 129
#define CFG_TOPIC_SIZE 250    /* Kafka's topic name limit is 249 */
#define CFG_GROUP_SIZE 256
#define CFG_HOST_SIZE 256
#define CFG_PREFIX_SIZE 64
#define CFG_URL_SIZE 1024
#define CFG_SECRET_SIZE 512
#define CFG_ID_SIZE 129       /* organization / project ids */
#define CFG_PROP_KEY_SIZE 128

/** One free-form librdkafka property (both strings malloc'd, owned by cfg). */
typedef struct cfg_kv {
  char *key;
  char *value;
} cfg_kv;

/** One assistant definition. */
typedef struct cfg_assistant {
  char name[CFG_NAME_SIZE];
  char model[CFG_MODEL_SIZE];
  char *instructions; /* malloc'd, or NULL when not set */
  char *tools_json;   /* canonical: the array printed unformatted by cJSON; NULL when no tools */
  char hash[17];      /* FNV-1a 64 of the definition, 16 lowercase hex digits */
} cfg_assistant;

typedef struct cfg {
  struct {
    char brokers[CFG_BROKERS_SIZE]; /* no default: must be configured */
    char group_id[CFG_GROUP_SIZE];  /* "assistant-worker" */
    char topic_requests[CFG_TOPIC_SIZE];  /* "assistant.requests" */
    char topic_responses[CFG_TOPIC_SIZE]; /* "assistant.responses" */
    char topic_deltas[CFG_TOPIC_SIZE];    /* "assistant.deltas" */
    char topic_dlq[CFG_TOPIC_SIZE];       /* "assistant.dlq" */
    cfg_kv props[CFG_MAX_PROPERTIES];     /* free-form librdkafka properties, file order */
    size_t nprops;
  } kafka;
  struct {
    char host[CFG_HOST_SIZE];    /* "127.0.0.1" */
    int port;                    /* 6379 */
    char prefix[CFG_PREFIX_SIZE];/* "aw" */
    long connect_timeout_ms;     /* 2000 */
  } redis;
  struct {
    char base_url[CFG_URL_SIZE]; /* "https://api.openai.com/v1" */
    char api_key[CFG_SECRET_SIZE]; /* env only; "" when unset; never logged or dumped */
    char organization[CFG_ID_SIZE];
    char project[CFG_ID_SIZE];
    long request_timeout_ms;     /* 30000 */
    long stream_idle_timeout_ms; /* 60000 */
    int max_retries;             /* 5 */
  } api;
  struct {
    long max_in_flight;          /* 1000 */
    size_t max_event_bytes;      /* 1 MiB */
    size_t max_answer_bytes;     /* 256 KiB */
    long commit_interval_ms;     /* 200 */
    int health_port;             /* 0 = off */
  } worker;
  log_level log_level;           /* LOG_INFO */
  cfg_assistant assistants[CFG_MAX_ASSISTANTS];
  size_t nassistants;
} cfg;

/** Fill c with the defaults.  Allocates nothing; cfg_free is still safe. */
void cfg_init(cfg *c);

/** Free what c owns (properties, instructions, tools); c is left as after
 *  cfg_init.  Safe to call twice. */
void cfg_free(cfg *c);

/** Apply a JSON config document (len bytes, need not be NUL-terminated) on
 *  top of c.  AW_ECONFIG with the offending key path in errstr for
 *  malformed JSON, unknown keys, wrong types, out-of-range numbers,
 *  over-long strings, an API key in the file, invalid or duplicate
 *  assistants; AW_ENOMEM.  On failure c may be partly updated: cfg_free it. */
int cfg_load_json(cfg *c, const char *json, size_t len, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Read path and apply it with cfg_load_json (errors are prefixed with the
 *  path).  AW_ECONFIG also when the file cannot be read or is larger than
 *  CFG_MAX_FILE_BYTES. */
int cfg_load_file(cfg *c, const char *path, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Apply the environment variables listed above on top of c (env wins).
 *  AW_ECONFIG naming the variable for an invalid value. */
int cfg_apply_env(cfg *c, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Everything in order: cfg_init, the file (path, else $AW_CONFIG when path
 *  is NULL, else no file), cfg_apply_env.  On failure c has been freed. */
int cfg_load(cfg *c, const char *path, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Compute the hash of an assistant definition into out (16 hex digits +
 *  NUL): FNV-1a 64 over a length-prefixed serialisation of name, model,
 *  instructions (absent differs from "") and tools_json.  Stable across runs
 *  and machines. */
void cfg_assistant_hash(const char *name, const char *model, const char *instructions,
                        const char *tools_json, char out[17]);

/** The assistant called name, or NULL. */
const cfg_assistant *cfg_find_assistant(const cfg *c, const char *name);

/** Fill def with borrowed pointers into a (valid while c lives). */
void cfg_assistant_def(const cfg_assistant *a, be_assistant_def *def);

/** Copy the API settings of c into bc (borrowed strings).  Fields the
 *  config does not carry (retry_base_ms...) are left untouched: call
 *  be_assistants_config_default(bc) first. */
void cfg_backend_config(const cfg *c, be_assistants_config *bc);

/** Is this librdkafka property secret (its value never printed)? */
int cfg_is_secret_property(const char *key);

/** Append the effective configuration as one JSON document (pretty-printed)
 *  to out, for `run --print-config`.  The API key and secret librdkafka
 *  properties are shown as "***" (null when unset). */
int cfg_dump(const cfg *c, buf *out) AW_MUST_CHECK;

#endif

/* config.h -- the worker's configuration (prefix cfg_).
 *
 * Load order: built-in defaults (cfg_init), then the JSON config file (path
 * from --config, else $AW_CONFIG, else none), then environment variables
 * (env wins).  cfg_load does all three and validates.
 *
 * File format (every key optional; unknown keys are rejected, by path):
 *   {"kafka": {"brokers": "h:9092", "group_id": "...", "transactional_id": "...",
 *              "group_instance_id": "...",
 *              "topics": {"requests": .., "responses": .., "deltas": .., "dlq": ..,
 *                         "tool_requests": .., "tool_replies": .., "usage": ..},
 *              "properties": {"security.protocol": "SASL_SSL", ...},
 *              "sasl_username": .., "sasl_password_file": ".."},
 *    "redis": {"host": .., "port": .., "prefix": .., "connect_timeout_ms": ..,
 *              "username": .., "password_file": ".."},
 *    "api":   {"backend": "responses" | "assistants" | "chat", "base_url": .., "organization": ..,
 *              "project": .., "timeout_ms": ..,
 *              "stream_idle_timeout_ms": .., "max_retries": .., "background": true,
 *              "allow_insecure_http": false,
 *              "rate_limit": {"requests_per_minute": 0, "tokens_per_minute": 0, "burst_ms": 1000,
 *                             "max_waiting": 100}},
 *    "worker": {"max_in_flight": .., "max_in_flight_per_partition": .., "max_event_bytes": ..,
 *               "max_answer_bytes": ..,
 *               "commit_interval_ms": .., "health_port": .., "health_bind": "0.0.0.0",
 *               "allow_core_dumps": false, "allow_assistant_ids": false,
 *               "reset_deletes_old": false,
 *               "exactly_once": true, "txn_interval_ms": .., "shutdown_grace_ms": ..,
 *               "tenant_source": "none", "key_rule": "match",
 *               "history_max_turns": .., "history_max_bytes": .., "history_ttl_s": ..,
 *               "inline_file_max_bytes": .., "max_attachments": .., "max_inline_bytes": ..},
 *    "usage": {"enabled": true, "tenant_metadata_key": ".."},
 *    "log_level": "info",
 *    "assistants": [{"name": .., "model": .., "instructions": .., "tools": [..],
 *                    "tool_choice": "auto" | "required" | "none" |
 *                                   {"type": "function", "function": {"name": ..}},
 *                    "history": {"max_messages": .., "max_tokens": ..},
 *                    "allow_overrides": ["additional_instructions"],
 *                    "vector_stores": ["support-docs"]}],
 *    "knowledge": {"vector_stores": [{"name": "support-docs", "documents": ["docs/guide.md"]}],
 *                  "sync_on_start": true, "wait_timeout_ms": 120000},
 *    "functions": {"get_weather": {"topic": .., "reply_topic": .., "deadline_ms": ..,
 *                                  "on_deadline": "error_output" | "cancel_run",
 *                                  "validate_arguments": true}}}
 *
 * The API key is deliberately NOT accepted from the file: secrets come from
 * the environment (AW_API_KEY, else OPENAI_API_KEY), typically a Kubernetes
 * Secret.  A key found in the file is an error, so that nobody commits one
 * believing it is used.  The same holds for the tool-call secret (the HMAC
 * key of correlation ids, correlation.h): AW_TOOL_SECRET and, while a key is
 * being rotated, AW_TOOL_SECRET_PREVIOUS, each at least CORR_MIN_SECRET
 * bytes.  cfg_load requires AW_TOOL_SECRET when any configured assistant has
 * a function tool, and AW_TOOL_REQUEST_KEY (or AW_TOOL_REQUEST_KEY_FILE), the
 * key shared with the tool services that signs tool requests and replies
 * (tool_sign.h; AW_TOOL_REQUEST_KEY_PREVIOUS[_FILE] while rotating).
 * Infrastructure passwords likewise (config_creds.c): the
 * Redis password (AW_REDIS_PASSWORD or the file redis.password_file /
 * AW_REDIS_PASSWORD_FILE) and the Kafka SASL password (AW_KAFKA_SASL_PASSWORD
 * or kafka.sasl_password_file / AW_KAFKA_SASL_PASSWORD_FILE) and SSL key
 * password (AW_KAFKA_SSL_KEY_PASSWORD); "redis.password" or
 * "kafka.sasl_password" in the file is an error.
 *
 * Function calling: each distinct function name among the assistants'
 * function tools gets one route (cfg_function_route): the topic its tool
 * requests go to, how long the worker waits for the reply and what it does
 * then, whether the arguments are checked against the function's JSON Schema
 * first.  "functions" overrides these per name; every key must name a
 * function tool of some configured assistant.  Routing is by name only, so
 * two assistants that declare the same function must declare the same
 * parameters.  A later "functions" object (second cfg_load_json) replaces the
 * earlier one, like "assistants"; routes are rebuilt after every
 * cfg_load_json and cfg_apply_env (a route's default topic follows
 * kafka.topics.tool_requests).
 *
 * Environment: AW_KAFKA_BROKERS, AW_KAFKA_GROUP_ID, AW_TOPIC_REQUESTS,
 * AW_TOPIC_RESPONSES, AW_TOPIC_DELTAS, AW_TOPIC_DLQ, AW_TOPIC_TOOL_REQUESTS,
 * AW_TOPIC_TOOL_REPLIES, AW_TOOL_SECRET, AW_TOOL_SECRET_PREVIOUS, AW_REDIS_HOST,
 * AW_REDIS_PORT, AW_REDIS_PREFIX, AW_API_BASE_URL, AW_API_KEY (falls back to
 * OPENAI_API_KEY), AW_API_ORG, AW_API_PROJECT, AW_API_BACKGROUND, AW_MAX_IN_FLIGHT,
 * AW_MAX_IN_FLIGHT_PER_PARTITION,
 * AW_LOG_LEVEL, AW_HEALTH_PORT, AW_EXACTLY_ONCE, AW_KAFKA_TRANSACTIONAL_ID,
 * AW_KAFKA_GROUP_INSTANCE_ID, AW_MAX_EVENT_BYTES, AW_HISTORY_MAX_TURNS, AW_HISTORY_MAX_BYTES,
 * AW_HISTORY_TTL_S, AW_REDIS_USERNAME, AW_REDIS_PASSWORD, AW_REDIS_PASSWORD_FILE,
 * AW_KAFKA_SASL_USERNAME, AW_KAFKA_SASL_PASSWORD, AW_KAFKA_SASL_PASSWORD_FILE,
 * AW_KAFKA_SSL_KEY_PASSWORD (and the other worker.* variables of README.md's
 * table).  A variable set to the empty string counts
 * as unset (a Kubernetes manifest often carries empty placeholders).
 *
 * Bounded: at most CFG_MAX_ASSISTANTS assistants, CFG_MAX_PROPERTIES
 * librdkafka properties and CFG_MAX_FUNCTIONS function routes; every string has a cap and an over-long value is an
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
#include "correlation.h"
#include "tool_sign.h"
#include "log.h"

#define CFG_MAX_ASSISTANTS 64
#define CFG_MAX_PROPERTIES 128
#define CFG_MAX_FILE_BYTES (16u * 1024 * 1024)
#define CFG_MAX_INSTRUCTIONS_BYTES (1024u * 1024) /* OpenAI: 256,000 characters */
#define CFG_MAX_TOOLS_BYTES (512u * 1024)
#define CFG_MAX_TOOLS 128                          /* OpenAI's limit per assistant */
#define CFG_MAX_PROP_VALUE_BYTES 4096
#define CFG_MAX_FUNCTIONS 128  /* distinct function names across all assistants */
#define CFG_MAX_HISTORY_MESSAGES 10000L   /* assistants[].history.max_messages, at most */
#define CFG_MAX_HISTORY_TOKENS 10000000L  /* assistants[].history.max_tokens, at most */
#define CFG_MAX_OUTPUT_TOKENS 1000000L    /* assistants[].max_output_tokens, at most */
/* Declarative knowledge (config_knowledge.c): vector stores built from
 * local documents by `assistant-worker sync`. */
#define CFG_MAX_KB_STORES 16          /* knowledge.vector_stores */
#define CFG_MAX_KB_DOCUMENTS 256      /* documents per store */
#define CFG_KB_NAME_SIZE 49           /* store names: 1..48 of [A-Za-z0-9_-] (they travel in filenames) */
#define CFG_KB_ID_SIZE 96             /* a synced store's vs_ id (API_ID_MAX) */
#define CFG_MAX_ASSISTANT_STORES 2    /* assistants[].vector_stores (the Assistants API: 1) */
#define CFG_DEFAULT_KB_WAIT_MS 120000L

/* Tool-call deadlines: the API expires a run left in requires_action after
 * 10 minutes, so waiting longer than that for a reply is pointless. */
#define CFG_DEFAULT_DEADLINE_MS 30000
#define CFG_MIN_DEADLINE_MS 100
#define CFG_MAX_DEADLINE_MS 600000

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
#define CFG_FUNCTION_NAME_SIZE 65 /* OpenAI: 1..64 of [A-Za-z0-9_-] */
#define CFG_USERNAME_SIZE 257 /* Redis ACL / Kafka SASL user names */
#define CFG_PATH_SIZE 1024    /* files holding a secret (a mounted Kubernetes Secret) */

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
  char *tool_choice_json; /* canonical (cJSON's unformatted print) "auto" | "required" | "none" |
                             {"type":"function","function":{"name":..}}; NULL when not set */
  char hash[17];      /* FNV-1a 64 of the definition, 16 lowercase hex digits */
  /* "history": the chat backend's context budget (be_assistant's fields of
   * the same name); 0 when not set (the backend's default, 40 messages /
   * 4000 tokens).  Not hashed (the hash is the Assistants backend's remote
   * definition); ignored by the other backends. */
  long history_max_messages;
  long history_max_tokens;
  long max_output_tokens;      /* assistants[].max_output_tokens, 0: not sent */
  unsigned allow_overrides;    /* assistants[].allow_overrides: the request fields that may
                                  override it (overrides.h WKOV_* bits); WKOV_DEFAULT when not
                                  set.  Not hashed: a policy of the worker, not the API's */
  /* assistants[].vector_stores: names of knowledge.vector_stores, checked
   * once the whole document is read.  The ids are filled in at start-up
   * (cfg_knowledge_attach, after the sync) and then hashed with the rest of
   * the definition; vector_store_ids points into vector_store_id_buf. */
  char vector_stores[CFG_MAX_ASSISTANT_STORES][CFG_KB_NAME_SIZE];
  size_t nvector_stores;
  char vector_store_id_buf[CFG_MAX_ASSISTANT_STORES][CFG_KB_ID_SIZE];
  const char *vector_store_ids[CFG_MAX_ASSISTANT_STORES];
  size_t nvector_store_ids;    /* 0 until attached */
} cfg_assistant;

/** One document of a knowledge store. */
typedef struct cfg_kb_document {
  char *key;   /* the path as written in the configuration: its identity in Redis */
  char *path;  /* the path read: key resolved against the config file's directory */
} cfg_kb_document;

/** One knowledge.vector_stores entry (config_knowledge.c). */
typedef struct cfg_kb_store {
  char name[CFG_KB_NAME_SIZE];
  cfg_kb_document *documents;  /* malloc'd, ndocuments entries */
  size_t ndocuments;
  char id[CFG_KB_ID_SIZE];     /* the vs_ id once synced or looked up; "" before */
} cfg_kb_store;

/** What the worker does when a tool reply has not arrived by the deadline. */
typedef enum cfg_on_deadline {
  CFG_ON_DEADLINE_ERROR_OUTPUT = 0, /* submit an error as the call's output; the run goes on */
  CFG_ON_DEADLINE_CANCEL_RUN,       /* cancel the run */
} cfg_on_deadline;

/** How calls of one function are routed.  In cfg.tools.routes every field is
 *  resolved (defaults applied); the same struct holds the "functions" entries
 *  as written, where topic "" means "kafka.topics.tool_requests". */
typedef struct cfg_function {
  char name[CFG_FUNCTION_NAME_SIZE];
  char topic[CFG_TOPIC_SIZE];  /* default: kafka.topics.tool_requests */
  char reply_topic[CFG_TOPIC_SIZE]; /* default ("" in "functions" entries): kafka.topics.tool_replies;
                                       the only topic its replies are accepted from */
  long deadline_ms;            /* CFG_DEFAULT_DEADLINE_MS */
  cfg_on_deadline on_deadline; /* CFG_ON_DEADLINE_ERROR_OUTPUT */
  int validate_arguments;      /* 1 */
  /* The function's JSON Schema ("parameters") printed unformatted by cJSON,
   * as in the assistant's tools_json; NULL when the function declares none
   * (the API then means "no parameters").  Owned by the cfg (malloc'd), so
   * borrowed by whoever gets the route; NULL in "functions" entries. */
  char *parameters_json;
} cfg_function;

typedef struct cfg {
  struct {
    char brokers[CFG_BROKERS_SIZE]; /* no default: must be configured */
    char group_id[CFG_GROUP_SIZE];  /* "assistant-worker" */
    char transactional_id[CFG_GROUP_SIZE]; /* "": <group_id>.<hostname>.<pid> */
    char group_instance_id[CFG_GROUP_SIZE]; /* "": dynamic membership; else group.instance.id
                                              (static membership, e.g. the pod name) */
    char topic_requests[CFG_TOPIC_SIZE];  /* "assistant.requests" */
    char topic_responses[CFG_TOPIC_SIZE]; /* "assistant.responses" */
    char topic_deltas[CFG_TOPIC_SIZE];    /* "assistant.deltas" */
    char topic_dlq[CFG_TOPIC_SIZE];       /* "assistant.dlq" */
    char topic_tool_requests[CFG_TOPIC_SIZE]; /* "assistant.tool-requests" */
    char topic_tool_replies[CFG_TOPIC_SIZE];  /* "assistant.tool-replies" */
    char topic_usage[CFG_TOPIC_SIZE];     /* "assistant.usage": usage records (usage.enabled) */
    cfg_kv props[CFG_MAX_PROPERTIES];     /* free-form librdkafka properties, file order */
    size_t nprops;
    /* SASL / TLS credentials (config_creds.c), set on every client after
     * the properties (so they win); "" when unset. */
    char sasl_username[CFG_USERNAME_SIZE];   /* sasl.username */
    char sasl_password_file[CFG_PATH_SIZE];  /* read into sasl_password at load */
    char sasl_password[CFG_SECRET_SIZE];     /* sasl.password: env or file only; never logged or dumped */
    char ssl_key_password[CFG_SECRET_SIZE];  /* ssl.key.password: env only; never logged or dumped */
  } kafka;
  struct {
    char host[CFG_HOST_SIZE];    /* "127.0.0.1" */
    int port;                    /* 6379 */
    char prefix[CFG_PREFIX_SIZE];/* "aw" */
    long connect_timeout_ms;     /* 2000: connect and AUTH handshake */
    char username[CFG_USERNAME_SIZE];  /* "": AUTH as the default user */
    char password_file[CFG_PATH_SIZE]; /* read into password at load */
    char password[CFG_SECRET_SIZE];    /* env or file only; "": no AUTH; never logged or dumped */
  } redis;
  struct {
    char backend[16];            /* "responses" (default), "assistants" or "chat" */
    char base_url[CFG_URL_SIZE]; /* "https://api.openai.com/v1" */
    char api_key[CFG_SECRET_SIZE]; /* env only; "" when unset; never logged or dumped */
    char organization[CFG_ID_SIZE];
    char project[CFG_ID_SIZE];
    long request_timeout_ms;     /* 30000 */
    long stream_idle_timeout_ms; /* 60000 */
    int max_retries;             /* 5 */
    int background;              /* 1: Responses turns are background + stream; 0: stream only */
    int allow_insecure_http;     /* 0: cfg_load refuses an http:// base_url to a non-loopback host */
    /* The fleet's rate limit per API key and endpoint class (Redis token
     * buckets: worker/ratelimit/rate_gate.h); both rates 0 (the default):
     * no limiter, no Redis round trip per request. */
    struct {
      long requests_per_minute;  /* 0: requests not limited */
      long tokens_per_minute;    /* 0: tokens not limited */
      long burst_ms;             /* 1000: a bucket holds this long's worth of the rate */
      long max_waiting;          /* 100: requests waiting beyond which consumption pauses (0: never) */
    } rate_limit;
  } api;
  struct {
    long max_in_flight;          /* 1000 */
    long max_in_flight_per_partition; /* 0: no limit of its own */
    long max_queue_per_conversation; /* 100; 0: no limit */
    size_t max_inflight_bytes;   /* 256 MiB; 0: no limit */
    long max_tool_rounds;        /* 16 */
    long conversation_ttl_s;     /* 30 days; 0: never */
    long outcome_ttl_s;          /* 7 days */
    long tool_state_ttl_s;       /* 900 */
    long tool_state_done_ttl_s;  /* 3600 */
    /* The chat backend's history in Redis (history_store.h): */
    long history_max_turns;      /* 100: turns kept per conversation */
    size_t history_max_bytes;    /* 1 MiB: bytes kept per conversation (the newest turn always) */
    long history_ttl_s;          /* -1 until cfg_load resolves it: worker.conversation_ttl_s;
                                    renewed by every commit; 0: never */
    size_t max_event_bytes;      /* 1 MiB */
    size_t max_answer_bytes;     /* 256 KiB */
    /* Files (issue 10): generated files inline up to inline_file_max_bytes
     * (0: always by reference); the request's attachments and the inline
     * bytes of one image part or attachment (contract_limits). */
    size_t inline_file_max_bytes; /* 262144 */
    long max_attachments;        /* 10 */
    size_t max_inline_bytes;     /* 524288 */
    long commit_interval_ms;     /* 200 */
    int health_port;             /* 0 = off */
    char health_bind[64];        /* "0.0.0.0": numeric IPv4/IPv6 address of the ops endpoint */
    int allow_core_dumps;        /* 0: `run` makes the process non-dumpable (secrets in memory) */
    int allow_assistant_ids;     /* 0: a request naming an asst_ id is rejected (overrides.h) */
    int reset_deletes_old;       /* 0: a `reset` request keeps the old backend conversation;
                                    1: deletes it (conv_request.h) */
    int exactly_once;            /* 1: responses and offsets commit in Kafka transactions */
    long txn_interval_ms;        /* 20: least time between two transaction commits */
    long shutdown_grace_ms;      /* 30000: how long in-flight events may take to finish after SIGTERM */
    char tenant_source[80];      /* "none": no tenant; "header:<name>", "metadata:<key>",
                                    "topic" (ev_identity.h) */
    char key_rule[16];           /* "match": the Kafka key must be the conversation_id;
                                    "route_by_key": the key is the conversation */
  } worker;
  struct {
    int enabled;                 /* 1: a usage record per finished turn on kafka.topics.usage */
    char tenant_metadata_key[65];/* "": no tenant from metadata; else the request metadata key
                                    whose value is the record's tenant (when the event has no
                                    tenant of its own, worker.tenant_source) */
  } usage;
  log_level log_level;           /* LOG_INFO */
  cfg_assistant assistants[CFG_MAX_ASSISTANTS];
  size_t nassistants;
  struct {
    cfg_kb_store stores[CFG_MAX_KB_STORES];
    size_t nstores;
    int sync_on_start;           /* -1 until cfg_load resolves it: 1 when any store is configured */
    long wait_timeout_ms;        /* 120000: how long a sync waits for the stores to be processed */
  } knowledge;
  char config_dir[CFG_PATH_SIZE]; /* the config file's directory ("" : the working directory);
                                     relative document paths are resolved against it */
  struct {
    /* env only; "" when unset; never logged or dumped.  Environment
     * variables hold no NUL, so these are C strings. */
    char secret[CFG_SECRET_SIZE];          /* AW_TOOL_SECRET */
    char secret_previous[CFG_SECRET_SIZE]; /* AW_TOOL_SECRET_PREVIOUS */
    /* The key shared with the tool services that signs tool requests and
     * their replies (tool_sign.h): AW_TOOL_REQUEST_KEY or the file named by
     * AW_TOOL_REQUEST_KEY_FILE; the previous one while rotating likewise
     * (..._PREVIOUS, ..._PREVIOUS_FILE).  Never logged or dumped. */
    char request_key[CFG_SECRET_SIZE];
    char request_key_previous[CFG_SECRET_SIZE];
    cfg_function overrides[CFG_MAX_FUNCTIONS]; /* "functions", file order */
    size_t noverrides;
    cfg_function routes[CFG_MAX_FUNCTIONS];    /* one per function name, in order of appearance */
    size_t nroutes;
  } tools;
} cfg;

/** Fill c with the defaults.  Allocates nothing; cfg_free is still safe. */
void cfg_init(cfg *c);

/** Free what c owns (properties, instructions, tools, routes); c is left as
 *  after cfg_init, except that the secrets are wiped.  Safe to call twice. */
void cfg_free(cfg *c);

/** Apply a JSON config document (len bytes, need not be NUL-terminated) on
 *  top of c.  AW_ECONFIG with the offending key path in errstr for
 *  malformed JSON, unknown keys, wrong types, out-of-range numbers,
 *  over-long strings, an API key or tool secret in the file, invalid or
 *  duplicate assistants, invalid "functions" entries or ones naming no
 *  configured function tool, one function name declared with different
 *  parameters, more than CFG_MAX_FUNCTIONS functions; AW_ENOMEM.  On failure c may be partly updated: cfg_free it. */
int cfg_load_json(cfg *c, const char *json, size_t len, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Read path and apply it with cfg_load_json (errors are prefixed with the
 *  path).  AW_ECONFIG also when the file cannot be read or is larger than
 *  CFG_MAX_FILE_BYTES. */
int cfg_load_file(cfg *c, const char *path, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Apply the environment variables listed above on top of c (env wins) and
 *  rebuild the function routes.  AW_ECONFIG naming the variable for an
 *  invalid value (a secret's value is never echoed): a tool secret shorter
 *  than CORR_MIN_SECRET bytes, AW_TOOL_SECRET_PREVIOUS without
 *  AW_TOOL_SECRET. */
int cfg_apply_env(cfg *c, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Everything in order: cfg_init, the file (path, else $AW_CONFIG when path
 *  is NULL, else no file), cfg_apply_env, then the checks across sources
 *  (AW_TOOL_SECRET present when some assistant has a function tool).  On
 *  failure c has been freed. */
int cfg_load(cfg *c, const char *path, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Remove every secret cfg_apply_env read (AW_API_KEY, OPENAI_API_KEY,
 *  AW_TOOL_SECRET, AW_TOOL_SECRET_PREVIOUS, and any AW_* variable whose name
 *  holds SECRET, PASSWORD, TOKEN or _KEY) from the process environment,
 *  wiping the value bytes in place first so that /proc/<pid>/environ and a
 *  core dump no longer show them.  Call once the configuration is loaded;
 *  nothing may read a secret from the environment afterwards (all of them
 *  go through cfg_load).  Returns the number of variables removed.
 *  @locality main thread, before other threads exist (setenv/unsetenv are
 *  not thread-safe). */
int cfg_scrub_secret_env(void);

/** Compute the hash of an assistant definition into out (16 hex digits +
 *  NUL): FNV-1a 64 over a length-prefixed serialisation of name, model,
 *  instructions (absent differs from "") and tools_json, then tool_choice_json
 *  when set (absent: the hash of a definition without tool_choice, as
 *  before the setting existed).  Stable across runs and machines. */
void cfg_assistant_hash(const char *name, const char *model, const char *instructions,
                        const char *tools_json, const char *tool_choice_json, char out[17]);

/** worker.history_ttl_s, or worker.conversation_ttl_s when it is not set. */
long cfg_history_ttl_s(const cfg *c);

/** The assistant called name, or NULL. */
const cfg_assistant *cfg_find_assistant(const cfg *c, const char *name);

/** What a request for the assistant called name may override (overrides.h
 *  WKOV_* bits; WKOV_DEFAULT for a name not configured): the worker's
 *  wk_overrides_fn, with c as its opaque. */
unsigned cfg_allowed_overrides(void *c, const char *name);

/** Fill def with borrowed pointers into a (valid while c lives). */
void cfg_assistant_def(const cfg_assistant *a, be_assistant *def);

/** Attach the synced stores to the assistants: every assistant's
 *  vector_store_ids from the stores' ids (knowledge.stores[].id), and its
 *  hash recomputed over them (cfg_assistant_hash, then the ids), so that
 *  the Assistants backend updates an assistant whose stores changed.  An
 *  assistant without stores keeps its hash.  AW_ENOTFOUND naming the store
 *  when one an assistant uses has no id.  @locality main thread, start-up. */
int cfg_knowledge_attach(cfg *c, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Copy the API settings of c into bc (borrowed strings).  Fields the
 *  config does not carry (retry_base_ms...) are left untouched: call
 *  be_http_config_default(bc) first. */
void cfg_backend_config(const cfg *c, be_http_config *bc);

/** The route of function name: the "functions" entry merged over the
 *  defaults, with its parameters.  Non-NULL for every function tool of a
 *  configured assistant, NULL for any other name (or NULL name).  Borrowed
 *  from c. */
const cfg_function *cfg_function_route(const cfg *c, const char *name);

/** "error_output" or "cancel_run". */
const char *cfg_on_deadline_name(cfg_on_deadline d);

/** Initialise k from AW_TOOL_SECRET (and AW_TOOL_SECRET_PREVIOUS when set).
 *  AW_ECONFIG when no tool secret is configured; clear k with
 *  corr_key_clear when done. */
int cfg_tool_key(const cfg *c, corr_key *k, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Initialise k from AW_TOOL_REQUEST_KEY (and its previous key when set).
 *  AW_ECONFIG when none is configured; clear k with tsig_key_clear. */
int cfg_tool_request_key(const cfg *c, tsig_key *k, char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Is this librdkafka property secret (its value never printed)? */
int cfg_is_secret_property(const char *key);

/** Append the effective configuration as one JSON document (pretty-printed)
 *  to out, for `run --print-config`.  The API key, the tool secrets and
 *  secret librdkafka properties are shown as "***" (null when unset);
 *  "functions" lists every resolved route (parameters left out: they are in
 *  the assistants' tools). */
int cfg_dump(const cfg *c, buf *out) AW_MUST_CHECK;

#endif

/* weather_service.c -- an example tool service: answers get_weather calls.
 *
 * A member of a Kafka consumer group on the tool-request topic.  For every
 * tool request (common/contract/contract_tool.h, schemas/README.md "Tool calls")
 * whose function name is ours it produces one tool reply to its own reply
 * topic, keyed like the request (the conversation id), carrying the
 * request's correlation_id unchanged and the W3C trace headers copied over.
 * The weather comes from a small built-in table, so replies are
 * deterministic (tests and the demo rely on that).
 *
 * Trust (common/contract/tool_sign.h): anyone who may write to the request
 * topic could otherwise make this service act, and steer its reply to a
 * topic of their choosing.  So every request of our function must carry the
 * worker's signature (the aw-sig / aw-sig-ts headers, made with the key
 * shared by the workers and their services, AW_TOOL_REQUEST_KEY), fresh
 * within --max-skew-ms, and name as reply_topic the topic this service is
 * configured to answer on (--reply-topic): the service never takes where to
 * write from a message.  A request that fails any of this is logged (with
 * the precise reason) and skipped, never executed.  Every reply is signed
 * with the same key, so the worker can tell it from a racer's.  A replay of
 * a genuine request within the skew window is answered again: harmless for
 * a read-only function like this one (the worker dead-letters the second
 * reply as already_answered); a function with side effects should also
 * remember the correlation ids it served for that long.
 *
 * Delivery: at-least-once, in the simplest way that is still correct.  One
 * message at a time: consume, produce the reply, poll the producer until its
 * delivery report, then commit the request's offset synchronously.  A reply
 * that cannot be delivered is retried (the request is never committed
 * without its reply); a crash between delivery and commit answers the
 * request again on restart, which is harmless: the worker uses the first
 * reply of a call and dead-letters later copies as already_answered.  The
 * cost is throughput (one round trip to the broker per request and per
 * commit); a real service would pipeline replies and commit in order, like
 * the worker's offset tracker does.
 *
 * Messages that are not ours (another function's requests), messages that
 * do not decode and requests refused as untrusted are committed without a
 * reply: there is nobody to answer for the first, nobody to answer to for
 * the second, and nothing a forger should get for the third.
 *
 * Deadlines are the worker's business: a request past its deadline_ms is
 * still answered (the worker dead-letters the reply if the run stopped
 * waiting), and logged at warn.
 */
#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "aw_error.h"
#include "buf.h"
#include "contract_tool.h"
#include "correlation.h"
#include "log.h"
#include "msgpack_util.h"
#include "tool_sign.h"

#define PROG "weather_service"
#define DEFAULT_GROUP "weather-service"
#define DEFAULT_FUNCTION "get_weather"
#define MAX_LOCATION 200 /* bytes of a location we look at; longer is invalid_arguments */
#define MAX_PROPS 32     /* -X KEY=VALUE */
#define POLL_SLICE_MS 200 /* librdkafka's waits ignore signals: wait in slices */
#define RETRY_BACKOFF_MS 1000

/* ---- the weather ------------------------------------------------------------ */

typedef struct weather {
  const char *city;
  int temperature_c;
  const char *conditions;
} weather;

static const weather WEATHER[] = {
    {"Paris", 22, "sunny"},   {"Tokyo", 18, "cloudy"},  {"London", 14, "rain"},
    {"Berlin", 16, "cloudy"}, {"New York", 20, "clear"}, {"Madrid", 27, "sunny"},
    {"Rome", 25, "sunny"},    {"Sydney", 19, "windy"},
};

/* The table entry for a location: ASCII case-insensitive, surrounding blanks
 * ignored, and only the part before the first comma considered, because
 * models like to write "Paris, France". */
static const weather *weather_find(const char *loc) {
  while (*loc == ' ' || *loc == '\t') loc++;
  size_t n = strcspn(loc, ",");
  while (n > 0 && (loc[n - 1] == ' ' || loc[n - 1] == '\t')) n--;
  for (size_t i = 0; i < sizeof WEATHER / sizeof WEATHER[0]; i++)
    if (strlen(WEATHER[i].city) == n && strncasecmp(WEATHER[i].city, loc, n) == 0) return &WEATHER[i];
  return NULL;
}

/* ---- options ------------------------------------------------------------------ */

typedef struct options {
  const char *brokers;
  const char *group;
  const char *requests_topic;
  const char *reply_topic;   /* where replies go; a request naming another is refused */
  const char *function;
  long long max_skew_ms;     /* how far a request's signature time may be from ours */
  long long fail_every; /* 0: never */
  long long delay_ms;
  const char *props[MAX_PROPS]; /* "KEY=VALUE", for both clients */
  int nprops;
  log_level level;
} options;

static void usage(FILE *f) {
  fputs("usage: " PROG " --brokers HOST:PORT [--group G] [--requests-topic T]\n"
        "                       [--reply-topic T] [--function NAME] [--max-skew-ms N]\n"
        "                       [--fail-every N] [--delay-ms N]\n"
        "                       [--log-level L] [-X KEY=VALUE]... [--help]\n"
        "\n"
        "Example tool service: answers the worker's signed tool requests for one\n"
        "function (get_weather) with the weather of a built-in city table, as signed\n"
        "tool replies on its reply topic.  Logs are JSON lines on stderr.\n"
        "\n"
        "  --brokers HOST:PORT   Kafka bootstrap servers (required)\n"
        "  --group G             consumer group id (default " DEFAULT_GROUP ")\n"
        "  --requests-topic T    tool-request topic (default " CTOOL_DEFAULT_REQUEST_TOPIC ")\n"
        "  --reply-topic T       where replies go (default $AW_TOPIC_TOOL_REPLIES, else\n"
        "                        " CTOOL_DEFAULT_REPLY_TOPIC "); a request naming another\n"
        "                        reply_topic is refused\n"
        "  --function NAME       function name to serve (default " DEFAULT_FUNCTION ")\n"
        "  --max-skew-ms N       refuse requests signed more than N ms away from now\n"
        "                        (default 300000)\n"
        "  --fail-every N        answer every Nth request with error simulated_failure\n"
        "  --delay-ms N          wait N ms before each reply\n"
        "  --log-level L         debug, info (default), warn, error, off\n"
        "  -X KEY=VALUE          librdkafka property for both clients (repeatable)\n"
        "Environment: AW_TOOL_REQUEST_KEY (or AW_TOOL_REQUEST_KEY_FILE naming a file),\n"
        "the key shared with the workers (required), and AW_TOOL_REQUEST_KEY_PREVIOUS\n"
        "(or ..._PREVIOUS_FILE) while rotating.\n"
        "SIGINT/SIGTERM stop cleanly.  Exit status 0 when stopped, 1 on a fatal Kafka\n"
        "error, 2 on bad usage.\n",
        f);
}

static int parse_count(const char *opt, const char *v, long long *out) {
  char *end;
  errno = 0;
  long long x = v ? strtoll(v, &end, 10) : 0;
  if (!v || errno || end == v || *end || x < 0 || x > 86400000LL) {
    fprintf(stderr, PROG ": %s needs an integer between 0 and 86400000\n", opt);
    return -1;
  }
  *out = x;
  return 0;
}

/* 0, 1 when --help was asked for, -1 on bad usage (already reported). */
static int parse_args(int argc, char **argv, options *o) {
  memset(o, 0, sizeof *o);
  o->group = DEFAULT_GROUP;
  o->requests_topic = CTOOL_DEFAULT_REQUEST_TOPIC;
  o->reply_topic = getenv("AW_TOPIC_TOOL_REPLIES") && *getenv("AW_TOPIC_TOOL_REPLIES") ? getenv("AW_TOPIC_TOOL_REPLIES")
                                                                                     : CTOOL_DEFAULT_REPLY_TOPIC;
  o->function = DEFAULT_FUNCTION;
  o->max_skew_ms = TSIG_DEFAULT_MAX_SKEW_MS;
  o->level = LOG_INFO;
  /* Every option but --help takes a value: two arguments a step. */
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 1;
    }
    if (strcmp(a, "--fail-every") == 0) {
      if (parse_count(a, v, &o->fail_every)) return -1;
    } else if (strcmp(a, "--delay-ms") == 0) {
      if (parse_count(a, v, &o->delay_ms)) return -1;
    } else if (strcmp(a, "--max-skew-ms") == 0) {
      if (parse_count(a, v, &o->max_skew_ms)) return -1;
    } else if (strcmp(a, "--log-level") == 0) {
      if (log_parse_level(v, &o->level)) {
        fprintf(stderr, PROG ": --log-level needs debug, info, warn, error or off\n");
        return -1;
      }
    } else if (strcmp(a, "--brokers") == 0 || strcmp(a, "--group") == 0 ||
               strcmp(a, "--requests-topic") == 0 || strcmp(a, "--function") == 0 ||
               strcmp(a, "--reply-topic") == 0 || strcmp(a, "-X") == 0) {
      if (!v || !*v) {
        fprintf(stderr, PROG ": %s needs a value\n", a);
        return -1;
      }
      if (a[1] == 'X') {
        if (!strchr(v, '=') || *v == '=' || o->nprops == MAX_PROPS) {
          fprintf(stderr, PROG ": -X needs KEY=VALUE (at most %d)\n", MAX_PROPS);
          return -1;
        }
        o->props[o->nprops++] = v;
      } else if (a[2] == 'b') {
        o->brokers = v;
      } else if (a[2] == 'g') {
        o->group = v;
      } else if (strcmp(a, "--reply-topic") == 0) {
        o->reply_topic = v;
      } else if (a[2] == 'r') {
        o->requests_topic = v;
      } else {
        o->function = v;
      }
    } else {
      fprintf(stderr, PROG ": unknown argument %s (see --help)\n", a);
      return -1;
    }
  }
  if (!o->brokers) {
    fputs(PROG ": --brokers is required (see --help)\n", stderr);
    return -1;
  }
  return 0;
}

/* ---- signals and time --------------------------------------------------------- */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static long long realtime_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep ms, in slices so a signal is noticed; 0 if the full time passed. */
static int sleep_unless_stopped(long long ms) {
  while (ms > 0 && !g_stop) {
    long long s = ms < POLL_SLICE_MS ? ms : POLL_SLICE_MS;
    struct timespec ts = {(time_t)(s / 1000), (long)(s % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    ms -= s;
  }
  return g_stop ? -1 : 0;
}

/* ---- Kafka clients ------------------------------------------------------------ */

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *msg) {
  log_level lvl = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;
  if (!log_enabled(lvl)) return;
  const char *kv[4] = {"kafka_fac", fac ? fac : "", "kafka_client", rk ? rd_kafka_name(rk) : ""};
  log_writekv(lvl, NULL, msg ? msg : "", kv, 2);
}

/* Same rule as the worker's cfg_is_secret_property (worker/cli/config.c). */
static int secret_property(const char *key) {
  return strstr(key, "password") || strstr(key, "secret") || strcmp(key, "ssl.key.pem") == 0 ||
         strcmp(key, "ssl_key.pem") == 0 || strcmp(key, "sasl.oauthbearer.config") == 0 ||
         strcmp(key, "sasl.oauthbearer.extensions") == 0;
}

/* Set one property.  librdkafka's reason quotes the value, so for a secret
 * property only the key is named. */
static int conf_set(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr, size_t n) {
  char why[256];
  if (rd_kafka_conf_set(conf, key, value, why, sizeof why) != RD_KAFKA_CONF_OK)
    return aw_seterr(AW_ECONFIG, errstr, n, "property %s: %s", key,
                     secret_property(key) ? "value refused" : why);
  return AW_OK;
}

/* A conf with the brokers, the -X properties, then what the role needs
 * (role_kv: NULL-terminated key, value pairs) set last so -X cannot weaken
 * the delivery guarantees by accident.  *out is owned by the caller. */
static int conf_new(const options *o, const char *const *role_kv, rd_kafka_conf_t **out, char *errstr,
                    size_t n) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (!conf) return aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
  int rc = conf_set(conf, "bootstrap.servers", o->brokers, errstr, n);
  for (int i = 0; !rc && i < o->nprops; i++) {
    char key[256];
    size_t kl = (size_t)(strchr(o->props[i], '=') - o->props[i]);
    if (kl >= sizeof key) {
      rc = aw_seterr(AW_ECONFIG, errstr, n, "-X: key too long");
      break;
    }
    memcpy(key, o->props[i], kl);
    key[kl] = '\0';
    rc = conf_set(conf, key, o->props[i] + kl + 1, errstr, n);
  }
  for (int i = 0; !rc && role_kv[i]; i += 2) rc = conf_set(conf, role_kv[i], role_kv[i + 1], errstr, n);
  if (rc) {
    rd_kafka_conf_destroy(conf);
    return rc;
  }
  rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
  *out = conf;
  return AW_OK;
}

/* Eager and cooperative assignment both, logged so operators (and the tests)
 * see when the service starts receiving. */
static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque) {
  (void)opaque;
  int cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
  char cnt[16];
  snprintf(cnt, sizeof cnt, "%d", parts->cnt);
  const char *kv[2] = {"partitions", cnt};
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    log_writekv(LOG_INFO, NULL, "partitions assigned", kv, 1);
    if (cooperative) {
      rd_kafka_error_t *e = rd_kafka_incremental_assign(rk, parts);
      if (e) {
        log_error(NULL, "incremental assign: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
      }
    } else {
      rd_kafka_assign(rk, parts);
    }
  } else {
    log_writekv(LOG_INFO, NULL, "partitions revoked", kv, 1);
    if (cooperative) {
      rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
      if (e) {
        log_error(NULL, "incremental unassign: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
      }
    } else {
      rd_kafka_assign(rk, NULL);
    }
  }
}

/* The delivery report of the one reply in flight (msg_opaque points here). */
typedef struct delivery {
  int done;
  rd_kafka_resp_err_t err;
} delivery;

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  delivery *d = m->_private;
  if (d) {
    d->err = m->err;
    d->done = 1;
  }
}

/* ---- one request -------------------------------------------------------------- */

typedef enum { LOC_OK = 0, LOC_MISSING, LOC_INVALID } loc_status;

/* Copy a candidate location string (not NUL-terminated) into loc. */
static loc_status loc_copy(const char *s, size_t n, char loc[MAX_LOCATION + 1]) {
  if (n == 0 || n > MAX_LOCATION || memchr(s, '\0', n) || !mpu_utf8_valid(s, n)) return LOC_INVALID;
  memcpy(loc, s, n);
  loc[n] = '\0';
  return loc[strspn(loc, " \t")] ? LOC_OK : LOC_INVALID;
}

/* "location" of the decoded arguments map (the decoder checked that it is
 * one well-formed msgpack map, so a failed read here cannot happen; it is
 * still handled as invalid rather than trusted). */
static loc_status location_from_msgpack(const void *args, size_t len, char loc[MAX_LOCATION + 1]) {
  const uint8_t *p = args;
  size_t off = 0;
  mpu_head h;
  if (mpu_read(p, len, &off, &h) || h.kind != MPU_MAP) return LOC_INVALID;
  for (uint64_t i = 0; i < h.n; i++) {
    size_t k0 = off;
    mpu_head k, v;
    if (mpu_read(p, len, &off, &k)) return LOC_INVALID;
    int match = k.kind == MPU_STR && k.n == 8 && memcmp(k.body, "location", 8) == 0;
    if (k.kind != MPU_STR) {
      off = k0;
      if (mpu_skip(p, len, &off)) return LOC_INVALID;
    }
    size_t v0 = off;
    if (mpu_read(p, len, &off, &v)) return LOC_INVALID;
    if (match) {
      if (v.kind == MPU_NIL) return LOC_MISSING;
      return v.kind == MPU_STR ? loc_copy((const char *)v.body, (size_t)v.n, loc) : LOC_INVALID;
    }
    off = v0;
    if (mpu_skip(p, len, &off)) return LOC_INVALID;
  }
  return LOC_MISSING;
}

/* Fallback when the worker sent arguments as nil (it could not convert the
 * model's text): try the text itself. */
static loc_status location_from_json(const char *json, size_t len, char loc[MAX_LOCATION + 1]) {
  cJSON *root = cJSON_ParseWithLength(json, len);
  if (!cJSON_IsObject(root)) {
    cJSON_Delete(root);
    return LOC_INVALID;
  }
  const cJSON *l = cJSON_GetObjectItemCaseSensitive(root, "location");
  loc_status st = !l || cJSON_IsNull(l) ? LOC_MISSING
                  : cJSON_IsString(l)   ? loc_copy(l->valuestring, strlen(l->valuestring), loc)
                                        : LOC_INVALID;
  cJSON_Delete(root);
  return st;
}

/* Fill r (and the storage it points into) with the answer to req.  seq is
 * the 1-based number of this request among the ones served. */
static int answer(const ctool_request *req, const options *o, long long seq, ctool_reply *r,
                  char *output, size_t output_size, char *message, size_t message_size) {
  memset(r, 0, sizeof *r);
  r->correlation_id = req->correlation_id;
  if (o->fail_every > 0 && seq % o->fail_every == 0) {
    r->error_code = "simulated_failure";
    snprintf(message, message_size, "simulated failure (--fail-every %lld)", o->fail_every);
    r->error_message = message;
    return 0;
  }
  char loc[MAX_LOCATION + 1];
  loc_status st = req->arguments ? location_from_msgpack(req->arguments, req->arguments_len, loc)
                                 : location_from_json(req->arguments_json, req->arguments_json_len, loc);
  if (st != LOC_OK) {
    r->error_code = "invalid_arguments";
    snprintf(message, message_size, "%s",
             st == LOC_MISSING ? "missing required argument: location (a city name)"
                               : "location must be a non-empty string of at most 200 bytes");
    r->error_message = message;
    return 0;
  }
  const weather *w = weather_find(loc);
  if (!w) {
    r->error_code = "unknown_location";
    snprintf(message, message_size, "no weather data for \"%s\"", loc);
    r->error_message = message;
    return 0;
  }
  /* The table's spelling, which is plain ASCII: no JSON escaping needed. */
  int n = snprintf(output, output_size, "{\"location\":\"%s\",\"temperature_c\":%d,\"conditions\":\"%s\"}",
                   w->city, w->temperature_c, w->conditions);
  if (n < 0 || (size_t)n >= output_size) return AW_ETOOBIG;
  r->output = output;
  r->output_len = (size_t)n;
  return 0;
}

/* The reply's headers: the request's trace headers copied over, and the
 * reply's signature (sig, the aw-sig value).  NULL only when out of memory. */
static rd_kafka_headers_t *reply_headers(const rd_kafka_message_t *m, const char *sig) {
  rd_kafka_headers_t *in = NULL, *out = rd_kafka_headers_new(3);
  if (!out) return NULL;
  if (rd_kafka_message_headers(m, &in) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    static const char *const names[] = {"traceparent", "tracestate"};
    for (size_t i = 0; i < 2; i++) {
      const void *v;
      size_t vn;
      if (rd_kafka_header_get_last(in, names[i], &v, &vn) == RD_KAFKA_RESP_ERR_NO_ERROR)
        rd_kafka_header_add(out, names[i], -1, v, (ssize_t)vn);
    }
  }
  rd_kafka_header_add(out, TSIG_HEADER, -1, sig, -1);
  return out;
}

/* Produce value to topic, signed with sig, and wait for its delivery
 * report, retrying until it is delivered.  AW_ECANCELLED when a signal came
 * first (the request stays uncommitted and is answered again after a
 * restart), AW_EFATAL on a fatal producer error, AW_ENOMEM. */
static int deliver(rd_kafka_t *prod, const rd_kafka_message_t *req_msg, const char *topic, const void *key,
                   size_t key_len, const buf *value, const char *sig, const log_ctx *lc) {
  for (;;) {
    delivery d = {0, RD_KAFKA_RESP_ERR_NO_ERROR};
    rd_kafka_headers_t *hdrs = reply_headers(req_msg, sig);
    if (!hdrs) return AW_ENOMEM;
    rd_kafka_resp_err_t err =
        rd_kafka_producev(prod, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, key_len),
                          RD_KAFKA_V_VALUE(value->data, value->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
    if (err) {
      rd_kafka_headers_destroy(hdrs); /* producev takes them only on success */
      d.done = 1;
      d.err = err;
    }
    /* Wait for the report even when a signal arrives: d lives on this stack
     * frame and the callback must not outlive it.  message.timeout.ms bounds
     * the wait. */
    while (!d.done) rd_kafka_poll(prod, POLL_SLICE_MS);
    if (d.err == RD_KAFKA_RESP_ERR_NO_ERROR) return AW_OK;
    char why[512];
    if (rd_kafka_fatal_error(prod, why, sizeof why)) {
      log_error(lc, "producer: fatal error: %s", why);
      return AW_EFATAL;
    }
    log_warn(lc, "reply to %s not delivered (%s); retrying", topic, rd_kafka_err2str(d.err));
    if (sleep_unless_stopped(RETRY_BACKOFF_MS)) return AW_ECANCELLED;
  }
}

/* The value of header name of m into *v / *n: NULL when absent, "" for a
 * header without a value (present, and so malformed rather than missing). */
static void header_of(const rd_kafka_message_t *m, const char *name, const void **v, size_t *n) {
  rd_kafka_headers_t *h = NULL;
  *v = NULL;
  *n = 0;
  if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      rd_kafka_header_get_last(h, name, v, n) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    *v = NULL;
    *n = 0;
  } else if (!*v) {
    *v = "";
  }
}

/* Log a refused request (never executed, committed without a reply). */
static void refuse(const rd_kafka_message_t *m, const log_ctx *lc, const ctool_request *req, const char *reason,
                   const char *detail) {
  char pos[96];
  snprintf(pos, sizeof pos, "%s[%" PRId32 "]@%" PRId64, rd_kafka_topic_name(m->rkt), m->partition, m->offset);
  const char *kv[8] = {"reason", reason, "detail", detail, "tool_call_id", req->tool_call_id, "message", pos};
  log_writekv(LOG_WARN, lc, "tool request refused", kv, 4);
}

/* Serve one consumed message.  0 when its offset may be committed,
 * AW_ECANCELLED / AW_EFATAL / AW_ENOMEM when it must not be. */
static int serve(rd_kafka_t *prod, const rd_kafka_message_t *m, const options *o, const tsig_key *tk,
                 long long *served) {
  ctool_request *req = NULL;
  const char *code = NULL;
  char why[256];
  if (!m->payload || ctool_request_decode(m->payload, m->len, 0, &req, &code, why, sizeof why)) {
    char pos[96];
    snprintf(pos, sizeof pos, "%s[%" PRId32 "]@%" PRId64, rd_kafka_topic_name(m->rkt), m->partition, m->offset);
    const char *kv[6] = {"code", code ? code : "malformed_request", "detail", m->payload ? why : "no value",
                         "message", pos};
    log_writekv(LOG_WARN, NULL, "undecodable tool request skipped", kv, 3);
    return AW_OK;
  }
  log_ctx lc = {NULL, req->conversation_id, req->thread_id, req->run_id, NULL};
  if (strcmp(req->name, o->function) != 0) {
    log_debug(&lc, "tool request for %s ignored (not %s)", req->name, o->function);
    ctool_request_free(req);
    return AW_OK;
  }
  /* Trust before anything is done for it: signed by a worker, recently,
   * and addressed to where this service replies. */
  const void *sig, *ts;
  size_t sig_len, ts_len;
  header_of(m, TSIG_HEADER, &sig, &sig_len);
  header_of(m, TSIG_TS_HEADER, &ts, &ts_len);
  const char *reason = NULL;
  int vrc = tsig_request_verify(tk, req, sig, sig_len, ts, ts_len, realtime_ms(), o->max_skew_ms, &reason);
  if (vrc == AW_ENOMEM || vrc == AW_EFATAL) {
    log_error(&lc, "cannot verify the signature of %s: %s", req->tool_call_id, aw_strerror(vrc));
    ctool_request_free(req);
    return vrc;
  }
  if (vrc != AW_OK) {
    refuse(m, &lc, req, reason ? reason : TSIG_R_MISMATCH, "not signed by a worker (or altered, or too old)");
    ctool_request_free(req);
    return AW_OK;
  }
  if (strcmp(req->reply_topic, o->reply_topic) != 0) {
    refuse(m, &lc, req, "reply_topic_mismatch", req->reply_topic);
    ctool_request_free(req);
    return AW_OK;
  }
  /* The id is logged as its digest, like the worker keys Redis by it: the
   * logs never hold an id that could be echoed into a forged reply. */
  char digest[CORR_DIGEST_SIZE] = "";
  if (corr_digest(req->correlation_id, digest)) digest[0] = '\0';
  long long seq = ++*served;
  log_debug(&lc, "tool request received: %s (%s)", req->tool_call_id, req->name);
  long long late = realtime_ms() - req->deadline_ms;
  if (late > 0)
    log_warn(&lc, "tool request %s is %lld ms past its deadline; answering anyway", req->tool_call_id, late);
  if (o->delay_ms > 0 && sleep_unless_stopped(o->delay_ms)) {
    ctool_request_free(req);
    return AW_ECANCELLED;
  }

  ctool_reply r;
  char output[256], message[MAX_LOCATION + 64], rsig[TSIG_HEADER_SIZE];
  buf value;
  buf_init(&value, CTOOL_DEFAULT_MAX_OUTPUT + CTOOL_REPLY_OVERHEAD);
  int rc = answer(req, o, seq, &r, output, sizeof output, message, sizeof message);
  if (!rc) rc = ctool_reply_encode(&r, &value);
  /* Signed over what the worker will decode: the encoded reply. */
  if (!rc) rc = tsig_reply_sign_encoded(tk, value.data, value.len, rsig);
  if (rc) {
    /* Cannot happen with the fixed table and bounded message; if it does,
     * stop rather than commit a request that got no reply. */
    log_error(&lc, "cannot encode the reply to %s: %s", req->tool_call_id, aw_strerror(rc));
    buf_free(&value);
    ctool_request_free(req);
    return AW_EFATAL;
  }
  const void *key = m->key ? m->key : req->conversation_id;
  size_t key_len = m->key ? m->key_len : strlen(req->conversation_id);
  rc = deliver(prod, m, o->reply_topic, key, key_len, &value, rsig, &lc);
  if (!rc) {
    const char *kv[8] = {"tool_call_id", req->tool_call_id, "correlation_digest", digest,
                         "reply_topic",  o->reply_topic,    "result", r.error_code ? r.error_code : "output"};
    log_writekv(LOG_INFO, &lc, "tool reply delivered", kv, 4);
  }
  buf_free(&value);
  ctool_request_free(req);
  return rc;
}

/* ---- the key shared with the workers ---------------------------------------------- */

/* Take a variable out of the environment once read, its bytes wiped first
 * (unsetenv alone leaves them where /proc/<pid>/environ shows them). */
static void scrub_env(const char *name) {
  char *v = getenv(name);
  if (v) explicit_bzero(v, strlen(v));
  unsetenv(name);
}

/* One key from the variable env, or from the file its _FILE variable names
 * (one trailing newline dropped).  The key's bytes into dst (size >
 * TSIG_MAX_KEY), its length into *len (0: neither is set).  -1 after a
 * message on stderr that never shows the key. */
static int load_key(const char *env, const char *env_file, char *dst, size_t size, size_t *len) {
  const char *v = getenv(env), *path = getenv(env_file);
  *len = 0;
  if (v && !*v) v = NULL;
  if (path && !*path) path = NULL;
  if (v && path) {
    fprintf(stderr, PROG ": %s and %s are both set: set one\n", env, env_file);
    return -1;
  }
  if (v) {
    *len = strlen(v);
    if (*len >= size) *len = size; /* refused below */
    else memcpy(dst, v, *len);
  } else if (path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
      fprintf(stderr, PROG ": %s (%s): cannot open: %s\n", env_file, path, strerror(errno));
      return -1;
    }
    *len = fread(dst, 1, size, f);
    fclose(f);
    if (*len > 0 && dst[*len - 1] == '\n') (*len)--;
    if (*len > 0 && dst[*len - 1] == '\r') (*len)--;
  }
  scrub_env(env);
  if (*len && (*len < TSIG_MIN_KEY || *len > TSIG_MAX_KEY)) {
    explicit_bzero(dst, size);
    fprintf(stderr, PROG ": %s: the key must be %d to %d bytes\n", v || !path ? env : env_file, TSIG_MIN_KEY,
            TSIG_MAX_KEY);
    return -1;
  }
  return 0;
}

/* AW_TOOL_REQUEST_KEY (required) and AW_TOOL_REQUEST_KEY_PREVIOUS into k. */
static int load_keys(tsig_key *k) {
  /* Two bytes beyond the longest key for a file's line end, one more to
   * notice a longer file. */
  char cur[TSIG_MAX_KEY + 3], prev[TSIG_MAX_KEY + 3];
  size_t cl = 0, pl = 0;
  int rc = load_key("AW_TOOL_REQUEST_KEY", "AW_TOOL_REQUEST_KEY_FILE", cur, sizeof cur, &cl);
  if (!rc) rc = load_key("AW_TOOL_REQUEST_KEY_PREVIOUS", "AW_TOOL_REQUEST_KEY_PREVIOUS_FILE", prev, sizeof prev, &pl);
  if (!rc && !cl) {
    fputs(PROG ": AW_TOOL_REQUEST_KEY (or AW_TOOL_REQUEST_KEY_FILE) is required: the key shared with the "
               "workers that signs tool requests and replies\n",
          stderr);
    rc = -1;
  }
  if (!rc && (tsig_key_init(k, cur, cl) != AW_OK || (pl && tsig_key_set_previous(k, prev, pl) != AW_OK))) rc = -1;
  explicit_bzero(cur, sizeof cur);
  explicit_bzero(prev, sizeof prev);
  return rc;
}

/* ---- main --------------------------------------------------------------------- */

int main(int argc, char **argv) {
  options o;
  int pa = parse_args(argc, argv, &o);
  if (pa) return pa > 0 ? 0 : 2;
  log_set_level(o.level);
  log_set_component(PROG);
  tsig_key tk;
  if (load_keys(&tk)) return 2;

  int status = 1;
  char err[512];
  rd_kafka_t *cons = NULL, *prod = NULL;
  rd_kafka_conf_t *conf = NULL;
  rd_kafka_topic_partition_list_t *topics = NULL;

  /* Offsets are committed by hand, after the reply's delivery report. */
  static const char *const cons_kv[] = {"enable.auto.commit", "false", "enable.auto.offset.store", "false",
                                        "auto.offset.reset", "earliest", NULL};
  static const char *const prod_kv[] = {"acks", "all", "enable.idempotence", "true", "message.timeout.ms",
                                        "30000", NULL};
  if (conf_new(&o, cons_kv, &conf, err, sizeof err) || conf_set(conf, "group.id", o.group, err, sizeof err) ||
      conf_set(conf, "client.id", PROG, err, sizeof err)) {
    fprintf(stderr, PROG ": %s\n", err);
    status = 2;
    goto out;
  }
  rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
  cons = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!cons) {
    fprintf(stderr, PROG ": cannot create the consumer: %s\n", err);
    goto out;
  }
  conf = NULL; /* owned by cons */
  rd_kafka_poll_set_consumer(cons);

  if (conf_new(&o, prod_kv, &conf, err, sizeof err) || conf_set(conf, "client.id", PROG, err, sizeof err)) {
    fprintf(stderr, PROG ": %s\n", err);
    status = 2;
    goto out;
  }
  rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
  prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (!prod) {
    fprintf(stderr, PROG ": cannot create the producer: %s\n", err);
    goto out;
  }
  conf = NULL; /* owned by prod */

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, o.requests_topic, RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t kerr = rd_kafka_subscribe(cons, topics);
  if (kerr) {
    log_error(NULL, "subscribe to %s: %s", o.requests_topic, rd_kafka_err2str(kerr));
    goto out;
  }
  {
    const char *kv[8] = {"topic", o.requests_topic, "group", o.group, "function", o.function,
                         "reply_topic", o.reply_topic};
    log_writekv(LOG_INFO, NULL, "weather service ready", kv, 4);
  }

  status = 0;
  long long served = 0;
  while (!g_stop) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(cons, POLL_SLICE_MS);
    if (!m) continue;
    if (m->err) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) log_warn(NULL, "consumer: %s", rd_kafka_message_errstr(m));
      int fatal = m->err == RD_KAFKA_RESP_ERR__FATAL;
      rd_kafka_message_destroy(m);
      if (fatal) {
        status = 1;
        break;
      }
      continue;
    }
    int rc = serve(prod, m, &o, &tk, &served);
    if (rc) {
      rd_kafka_message_destroy(m);
      if (rc != AW_ECANCELLED) status = 1;
      break;
    }
    /* Synchronous: once this returns, the request will not come back to this
     * group (unless the commit failed, e.g. in a rebalance: then it is
     * answered again, see the top of the file). */
    kerr = rd_kafka_commit_message(cons, m, 0);
    if (kerr) log_warn(NULL, "commit of %s[%" PRId32 "]@%" PRId64 " failed: %s", rd_kafka_topic_name(m->rkt),
                       m->partition, m->offset, rd_kafka_err2str(kerr));
    rd_kafka_message_destroy(m);
  }
  log_info(NULL, "weather service stopping");

out:
  if (topics) rd_kafka_topic_partition_list_destroy(topics);
  if (cons) {
    rd_kafka_consumer_close(cons);
    rd_kafka_destroy(cons);
  }
  if (prod) {
    /* Every reply was waited for already; this only drains internal state. */
    rd_kafka_flush(prod, 5000);
    rd_kafka_destroy(prod);
  }
  if (conf) rd_kafka_conf_destroy(conf);
  tsig_key_clear(&tk);
  return status;
}

/* cmd_tail.c -- `assistant-worker tail`: print a topic's messages as JSON lines.
 *
 * A consumer with a throw-away group id (nothing is ever committed) is
 * assigned every partition of the topic, either from the beginning or from
 * the current end.  Each message becomes one line:
 *   {"topic":..,"partition":..,"offset":..,"key":..,"timestamp_ms":..,"value":..}
 * where value is the JSON view of the msgpack payload (contract_to_json), or
 * {"undecodable_base64": "..."} when the payload is not one msgpack value.
 * Partitions added while tailing are not picked up (restart to see them).
 */
#include "cli.h"

#include <cJSON.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "buf.h"
#include "config.h"
#include "contract.h"
#include "kafka_conf.h"
#include "log.h"

/* ---- shared helpers (declared in cli.h) ----------------------------------- */

long long cli_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *cli_base64(const void *p, size_t n) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *s = p;
  char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
  if (!out) return NULL;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
    *o++ = tbl[v >> 18];
    *o++ = tbl[(v >> 12) & 63];
    *o++ = tbl[(v >> 6) & 63];
    *o++ = tbl[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0);
    *o++ = tbl[v >> 18];
    *o++ = tbl[(v >> 12) & 63];
    *o++ = i + 1 < n ? tbl[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  *o = '\0';
  return out;
}

int cli_utf8_ok(const void *p, size_t n) {
  const unsigned char *s = p;
  size_t i = 0;
  while (i < n) {
    unsigned char c = s[i];
    size_t len;
    unsigned cp;
    if (c == 0) return 0;
    if (c < 0x80) { i++; continue; }
    if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; }
    else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; }
    else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; }
    else return 0;
    if (i + len > n) return 0;
    for (size_t k = 1; k < len; k++) {
      if ((s[i + k] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
      return 0;
    i += len;
  }
  return 1;
}

/* Metadata for one topic, retried while the cluster is still electing
 * leaders for a just-created topic. */
static int topic_partitions(rd_kafka_t *rk, const char *topic, long long deadline, int **parts,
                            int *nparts, char *errstr, size_t n) {
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  if (!rkt) return aw_seterr(AW_EKAFKA, errstr, n, "topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
  int rc = AW_ETIMEDOUT;
  snprintf(errstr, n, "topic %s: timed out waiting for metadata", topic);
  for (;;) {
    long long left = deadline - cli_now_ms();
    if (left <= 0) break;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, (int)(left > 5000 ? 5000 : left));
    if (err == RD_KAFKA_RESP_ERR__TIMED_OUT || err == RD_KAFKA_RESP_ERR__TRANSPORT) {
      aw_seterr(AW_ETIMEDOUT, errstr, n, "topic %s: cannot get metadata (brokers unreachable?): %s", topic,
                rd_kafka_err2str(err));
      continue;
    }
    if (err) {
      rc = aw_seterr(AW_EKAFKA, errstr, n, "topic %s: metadata: %s", topic, rd_kafka_err2str(err));
      break;
    }
    const struct rd_kafka_metadata_topic *t = md->topic_cnt == 1 ? &md->topics[0] : NULL;
    rd_kafka_resp_err_t terr = t ? t->err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    if (terr == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
      rd_kafka_metadata_destroy(md);
      rc = aw_seterr(AW_ENOTFOUND, errstr, n, "topic %s does not exist", topic);
      break;
    }
    if (terr || t->partition_cnt == 0) {
      /* e.g. LEADER_NOT_AVAILABLE right after creation: ask again shortly. */
      aw_seterr(AW_ETIMEDOUT, errstr, n, "topic %s: %s", topic,
                terr ? rd_kafka_err2str(terr) : "no partitions");
      rd_kafka_metadata_destroy(md);
      struct timespec ts = {0, 200 * 1000000L};
      nanosleep(&ts, NULL);
      continue;
    }
    *parts = malloc(sizeof(int) * (size_t)t->partition_cnt);
    if (!*parts) {
      rd_kafka_metadata_destroy(md);
      rc = aw_seterr(AW_ENOMEM, errstr, n, "out of memory");
      break;
    }
    for (int i = 0; i < t->partition_cnt; i++) (*parts)[i] = t->partitions[i].id;
    *nparts = t->partition_cnt;
    rd_kafka_metadata_destroy(md);
    rc = AW_OK;
    break;
  }
  rd_kafka_topic_destroy(rkt);
  return rc;
}

int cli_assign_all(rd_kafka_t *rk, const char *const *topics, int ntopics, int from_beginning,
                   int timeout_ms, rd_kafka_topic_partition_list_t **out, char *errstr,
                   size_t errstr_size) {
  long long deadline = cli_now_ms() + timeout_ms;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
  *out = NULL;
  for (int t = 0; t < ntopics; t++) {
    int *parts = NULL, np = 0;
    int rc = topic_partitions(rk, topics[t], deadline, &parts, &np, errstr, errstr_size);
    if (rc) {
      rd_kafka_topic_partition_list_destroy(l);
      return rc;
    }
    for (int i = 0; i < np; i++) {
      int64_t lo = 0, hi = RD_KAFKA_OFFSET_BEGINNING;
      if (!from_beginning) {
        long long left = deadline - cli_now_ms();
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, topics[t], parts[i], &lo, &hi, left > 0 ? (int)left : 1);
        if (err) {
          free(parts);
          rd_kafka_topic_partition_list_destroy(l);
          return aw_seterr(err == RD_KAFKA_RESP_ERR__TIMED_OUT ? AW_ETIMEDOUT : AW_EKAFKA, errstr,
                           errstr_size, "topic %s [%d]: cannot read the end offset: %s", topics[t], parts[i],
                           rd_kafka_err2str(err));
        }
      }
      rd_kafka_topic_partition_list_add(l, topics[t], parts[i])->offset = hi;
    }
    free(parts);
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(rk, l);
  if (err) {
    rd_kafka_topic_partition_list_destroy(l);
    return aw_seterr(AW_EKAFKA, errstr, errstr_size, "assign: %s", rd_kafka_err2str(err));
  }
  *out = l;
  return AW_OK;
}

/* ---- tail ----------------------------------------------------------------- */

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
  (void)sig;
  g_stop = 1;
}

static void usage(FILE *f) {
  fputs("usage: assistant-worker tail [--from-beginning] [--max N] [--timeout-ms N]\n"
        "                             [--config FILE] TOPIC\n"
        "\n"
        "Print each message of TOPIC as one JSON line on stdout:\n"
        "  {\"topic\",\"partition\",\"offset\",\"key\",\"timestamp_ms\",\"value\"}\n"
        "value is the JSON view of the msgpack payload, or {\"undecodable_base64\": ...}.\n"
        "\n"
        "  --from-beginning  start at the oldest message (default: only new messages)\n"
        "  --max N           stop after N messages\n"
        "  --timeout-ms N    stop when no message arrived for N ms (default: never)\n"
        "  --config FILE     configuration file (default: $AW_CONFIG; env overrides it)\n"
        "SIGINT/SIGTERM stop cleanly.  Exit status 0 when stopped, 2 on errors.\n",
        f);
}

/* Bytes as a JSON string when they are UTF-8 text, else {"undecodable_base64"}. */
static cJSON *bytes_json(const void *p, size_t n) {
  if (!p) return cJSON_CreateNull();
  if (cli_utf8_ok(p, n)) {
    char *s = strndup(p, n);
    cJSON *j = s ? cJSON_CreateString(s) : NULL;
    free(s);
    return j;
  }
  char *b = cli_base64(p, n);
  cJSON *o = b ? cJSON_CreateObject() : NULL;
  if (o && !cJSON_AddStringToObject(o, "undecodable_base64", b)) {
    cJSON_Delete(o);
    o = NULL;
  }
  free(b);
  return o;
}

static cJSON *value_json(const void *p, size_t n) {
  if (!p) return cJSON_CreateNull();
  buf b;
  buf_init(&b, 64u * 1024 * 1024);
  if (contract_to_json(p, n, &b) == AW_OK && b.data) {
    cJSON *raw = cJSON_CreateRaw(b.data);
    buf_free(&b);
    return raw;
  }
  buf_free(&b);
  char *s = cli_base64(p, n);
  cJSON *o = s ? cJSON_CreateObject() : NULL;
  if (o && !cJSON_AddStringToObject(o, "undecodable_base64", s)) {
    cJSON_Delete(o);
    o = NULL;
  }
  free(s);
  return o;
}

/* One message as a JSON line on stdout; AW_ENOMEM. */
static int print_message(const rd_kafka_message_t *m) {
  rd_kafka_timestamp_type_t tst;
  int64_t ts = rd_kafka_message_timestamp(m, &tst);
  cJSON *o = cJSON_CreateObject();
  int ok = o && cJSON_AddStringToObject(o, "topic", rd_kafka_topic_name(m->rkt)) &&
           cJSON_AddNumberToObject(o, "partition", m->partition) &&
           cJSON_AddNumberToObject(o, "offset", (double)m->offset);
  if (ok) {
    cJSON *k = bytes_json(m->key, m->key_len);
    ok = k && cJSON_AddItemToObject(o, "key", k);
    if (!ok) cJSON_Delete(k);
  }
  if (ok) ok = tst == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? cJSON_AddNullToObject(o, "timestamp_ms") != NULL
                                                      : cJSON_AddNumberToObject(o, "timestamp_ms", (double)ts) != NULL;
  if (ok) {
    cJSON *v = value_json(m->payload, m->len);
    ok = v && cJSON_AddItemToObject(o, "value", v);
    if (!ok) cJSON_Delete(v);
  }
  char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!s) return AW_ENOMEM;
  fputs(s, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  free(s);
  return AW_OK;
}

static int parse_long(const char *opt, const char *v, long long lo, long long *out) {
  char *end;
  errno = 0;
  long long x = v ? strtoll(v, &end, 10) : 0;
  if (!v || errno || end == v || *end || x < lo) {
    fprintf(stderr, "assistant-worker tail: %s needs an integer >= %lld\n", opt, lo);
    return -1;
  }
  *out = x;
  return 0;
}

/** `tail`: see usage(). */
int cmd_tail_main(int argc, char **argv) {
  const char *config = NULL, *topic = NULL;
  int from_beginning = 0;
  long long max = -1, idle_ms = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--from-beginning") == 0) {
      from_beginning = 1;
    } else if (strcmp(a, "--max") == 0) {
      if (parse_long(a, i + 1 < argc ? argv[++i] : NULL, 1, &max)) return 2;
    } else if (strcmp(a, "--timeout-ms") == 0) {
      if (parse_long(a, i + 1 < argc ? argv[++i] : NULL, 1, &idle_ms)) return 2;
    } else if (strcmp(a, "--config") == 0) {
      if (i + 1 >= argc) {
        fputs("assistant-worker tail: --config needs a file\n", stderr);
        return 2;
      }
      config = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "assistant-worker tail: unknown option %s (see --help)\n", a);
      return 2;
    } else if (topic) {
      fputs("assistant-worker tail: exactly one TOPIC expected (see --help)\n", stderr);
      return 2;
    } else {
      topic = a;
    }
  }
  if (!topic) {
    usage(stderr);
    return 2;
  }

  cfg c;
  char err[512];
  if (cfg_load(&c, config, err, sizeof err)) {
    fprintf(stderr, "assistant-worker tail: configuration: %s\n", err);
    return 2;
  }
  log_set_level(c.log_level);
  log_set_component("tail");

  int status = 2;
  rd_kafka_t *rk = NULL;
  rd_kafka_topic_partition_list_t *assigned = NULL;
  rd_kafka_conf_t *conf = NULL;
  char group[64];
  snprintf(group, sizeof group, "aw-tail-%ld-%lld", (long)getpid(), cli_now_ms());
  if (kconf_new(&c, "assistant-worker-tail", &conf, err, sizeof err) ||
      kconf_set(conf, "group.id", group, err, sizeof err) ||
      kconf_set(conf, "enable.auto.commit", "false", err, sizeof err) ||
      kconf_set(conf, "isolation.level", "read_committed", err, sizeof err) ||
      kconf_set(conf, "enable.auto.offset.store", "false", err, sizeof err)) {
    fprintf(stderr, "assistant-worker tail: %s\n", err);
    goto out;
  }
  rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "assistant-worker tail: cannot create the consumer: %s\n", err);
    goto out;
  }
  conf = NULL; /* owned by rk */
  rd_kafka_poll_set_consumer(rk);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);

  const char *topics[1] = {topic};
  if (cli_assign_all(rk, topics, 1, from_beginning, 30000, &assigned, err, sizeof err)) {
    fprintf(stderr, "assistant-worker tail: %s\n", err);
    goto out;
  }

  status = 0;
  long long seen = 0, last = cli_now_ms();
  while (!g_stop && (max < 0 || seen < max)) {
    /* Short slices so a signal is noticed promptly: librdkafka's wait is
     * not interrupted by signals. */
    long long slice = 200;
    if (idle_ms >= 0) {
      long long left = last + idle_ms - cli_now_ms();
      if (left <= 0) break;
      if (left < slice) slice = left;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, (int)slice);
    if (!m) continue;
    if (m->err) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
        log_warn(NULL, "consumer: %s", rd_kafka_message_errstr(m));
      if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        fprintf(stderr, "assistant-worker tail: %s\n", rd_kafka_message_errstr(m));
        status = 2;
        rd_kafka_message_destroy(m);
        break;
      }
      rd_kafka_message_destroy(m);
      continue;
    }
    if (print_message(m)) {
      fputs("assistant-worker tail: out of memory\n", stderr);
      status = 2;
      rd_kafka_message_destroy(m);
      break;
    }
    rd_kafka_message_destroy(m);
    seen++;
    last = cli_now_ms();
  }

out:
  if (assigned) rd_kafka_topic_partition_list_destroy(assigned);
  if (rk) {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
  if (conf) rd_kafka_conf_destroy(conf);
  cfg_free(&c);
  return status;
}

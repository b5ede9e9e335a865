/* cmd_send.c -- `assistant-worker send`: publish one request, print its answer.
 *
 * Order matters so that no answer can be missed: the consumer is assigned
 * every partition of the responses topic (and the deltas topic with
 * --stream) at the partitions' current end offsets, queried explicitly
 * before anything is produced (cli_assign_all); only then is the request
 * produced and its delivery report awaited.  Whatever the worker publishes
 * afterwards lies beyond those offsets.
 *
 * Deltas for our event are printed as they arrive.  The responses and deltas
 * topics are fetched independently, so the response may be fetched before
 * the last deltas: when it arrives with --stream, the deltas partitions are
 * read up to their then-current end (bounded by DRAIN_MAX_MS and the overall
 * timeout) before the response line is printed last.
 */
#include "cli.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "buf.h"
#include "config.h"
#include "contract.h"
#include "kafka_conf.h"
#include "log.h"

#define DRAIN_MAX_MS 5000

static void usage(FILE *f) {
  fputs("usage: assistant-worker send --conversation ID [--assistant NAME] [--stream]\n"
        "                             [--event-id ID] [--timeout-ms N] [--config FILE] TEXT\n"
        "\n"
        "Publish TEXT as a user message of conversation ID and wait for the answer.\n"
        "Prints each streamed delta (with --stream) and then the response, one JSON line each.\n"
        "\n"
        "  --conversation ID  conversation id (the Kafka key), required\n"
        "  --assistant NAME   configured assistant name or asst_... id\n"
        "                     (default: the first configured assistant)\n"
        "  --stream           ask for deltas and print them as they arrive\n"
        "  --event-id ID      event id (default: a random UUIDv4)\n"
        "  --timeout-ms N     give up after N ms (default 60000)\n"
        "  --config FILE      configuration file (default: $AW_CONFIG; env overrides it)\n"
        "Exit status: 0 completed, 1 any other status, 2 usage/infrastructure error or timeout.\n",
        f);
}

/* Random UUIDv4 from /dev/urandom. */
static int uuid4(char out[37]) {
  unsigned char b[16];
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return AW_EIO;
  size_t got = 0;
  while (got < sizeof b) {
    ssize_t r = read(fd, b + got, sizeof b - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (got != sizeof b) return AW_EIO;
  b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
  b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
  snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
           b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return AW_OK;
}

typedef struct delivery {
  int done;
  rd_kafka_resp_err_t err;
  int32_t partition;
  int64_t offset;
} delivery;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  delivery *d = m->_private ? m->_private : opaque;
  d->done = 1;
  d->err = m->err;
  d->partition = m->partition;
  d->offset = m->offset;
}

/* Produce the request and wait for its delivery report. */
static int produce_request(const cfg *c, const char *conv, const void *payload, size_t len,
                           long long deadline, char *err, size_t errsz) {
  rd_kafka_conf_t *conf = NULL;
  int rc = kconf_new(c, "assistant-worker-send", &conf, err, errsz);
  if (rc) return rc;
  delivery d = {0, RD_KAFKA_RESP_ERR_NO_ERROR, -1, -1};
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  rd_kafka_conf_set_opaque(conf, &d);
  char rkerr[512];
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rkerr, sizeof rkerr);
  if (!p) {
    rd_kafka_conf_destroy(conf);
    return aw_seterr(AW_EKAFKA, err, errsz, "cannot create the producer: %s", rkerr);
  }
  rd_kafka_resp_err_t e = rd_kafka_producev(
      p, RD_KAFKA_V_TOPIC(c->kafka.topic_requests), RD_KAFKA_V_KEY(conv, strlen(conv)),
      RD_KAFKA_V_VALUE((void *)payload, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
      RD_KAFKA_V_OPAQUE(&d), RD_KAFKA_V_END);
  if (e) {
    rd_kafka_destroy(p);
    return aw_seterr(AW_EKAFKA, err, errsz, "produce to %s: %s", c->kafka.topic_requests, rd_kafka_err2str(e));
  }
  long long left = deadline - cli_now_ms();
  rd_kafka_flush(p, left > 0 ? (int)left : 0);
  if (!d.done) rc = aw_seterr(AW_ETIMEDOUT, err, errsz, "timed out waiting for the delivery of the request to %s",
                              c->kafka.topic_requests);
  else if (d.err) rc = aw_seterr(AW_EKAFKA, err, errsz, "the request was not delivered to %s: %s",
                                 c->kafka.topic_requests, rd_kafka_err2str(d.err));
  else log_debug(NULL, "request delivered to %s [%d] at offset %lld", c->kafka.topic_requests,
                 (int)d.partition, (long long)d.offset);
  /* Purge anything undelivered so destroy does not block past the deadline. */
  rd_kafka_purge(p, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_destroy(p);
  return rc;
}

/* The JSON view of a payload when it is a map whose event_id is ours, else NULL. */
static cJSON *ours(const rd_kafka_message_t *m, const char *event_id) {
  if (!m->payload) return NULL;
  buf b;
  buf_init(&b, 64u * 1024 * 1024);
  cJSON *j = NULL;
  if (contract_to_json(m->payload, m->len, &b) == AW_OK && b.data) j = cJSON_Parse(b.data);
  buf_free(&b);
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "event_id");
  if (!cJSON_IsString(id) || strcmp(id->valuestring, event_id) != 0) {
    cJSON_Delete(j);
    return NULL;
  }
  return j;
}

static void print_json(const cJSON *j) {
  char *s = cJSON_PrintUnformatted(j);
  if (!s) return;
  fputs(s, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  free(s);
}

/* Next offset to read per assigned partition, kept in the assignment list. */
static void advance(rd_kafka_topic_partition_list_t *l, const char *topic, int32_t part, int64_t next) {
  rd_kafka_topic_partition_t *e = rd_kafka_topic_partition_list_find(l, topic, part);
  if (e && next > e->offset) e->offset = next;
}

/* Have we read every deltas partition up to its current end? */
static int deltas_drained(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *l, const char *deltas,
                          int64_t *ends, int *have_ends, long long deadline) {
  for (int i = 0; i < l->cnt; i++) {
    rd_kafka_topic_partition_t *e = &l->elems[i];
    if (strcmp(e->topic, deltas) != 0) continue;
    if (!*have_ends) {
      int64_t lo, hi;
      long long left = deadline - cli_now_ms();
      if (rd_kafka_query_watermark_offsets(rk, e->topic, e->partition, &lo, &hi, left > 0 ? (int)left : 1))
        hi = e->offset; /* cannot tell: do not wait for it */
      ends[i] = hi;
    }
  }
  *have_ends = 1;
  for (int i = 0; i < l->cnt; i++)
    if (strcmp(l->elems[i].topic, deltas) == 0 && l->elems[i].offset < ends[i]) return 0;
  return 1;
}

static int parse_ms(const char *v, long long *out) {
  char *end;
  errno = 0;
  long long x = v ? strtoll(v, &end, 10) : 0;
  if (!v || errno || end == v || *end || x < 1 || x > 86400000LL) return -1;
  *out = x;
  return 0;
}

/** `send`: see usage(). */
int cmd_send_main(int argc, char **argv) {
  const char *config = NULL, *conv = NULL, *assistant = NULL, *event_id = NULL, *text = NULL;
  int stream = 0;
  long long timeout_ms = 60000;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(a, "--stream") == 0) {
      stream = 1;
    } else if (strcmp(a, "--") == 0) {
      if (text || i + 2 != argc) {
        fputs("assistant-worker send: exactly one TEXT argument expected (quote it)\n", stderr);
        return 2;
      }
      text = argv[++i];
    } else if (a[0] == '-' && a[1]) {
      const char **dst = strcmp(a, "--conversation") == 0 ? &conv
                         : strcmp(a, "--assistant") == 0  ? &assistant
                         : strcmp(a, "--event-id") == 0   ? &event_id
                         : strcmp(a, "--config") == 0     ? &config
                         : strcmp(a, "--timeout-ms") == 0 ? &next
                                                          : NULL;
      if (!dst) {
        fprintf(stderr, "assistant-worker send: unknown option %s (see --help)\n", a);
        return 2;
      }
      if (!next) {
        fprintf(stderr, "assistant-worker send: %s needs a value\n", a);
        return 2;
      }
      i++;
      if (dst == &next) {
        if (parse_ms(next, &timeout_ms)) {
          fputs("assistant-worker send: --timeout-ms needs an integer in [1, 86400000]\n", stderr);
          return 2;
        }
      } else {
        *dst = next;
      }
    } else if (text) {
      fputs("assistant-worker send: exactly one TEXT argument expected (quote it)\n", stderr);
      return 2;
    } else {
      text = a;
    }
  }
  if (!conv || !text) {
    fprintf(stderr, "assistant-worker send: %s is required\n\n", !conv ? "--conversation" : "TEXT");
    usage(stderr);
    return 2;
  }
  if (!*conv || strlen(conv) > 256) {
    fputs("assistant-worker send: --conversation must be 1..256 bytes\n", stderr);
    return 2;
  }
  if (!*text) {
    fputs("assistant-worker send: TEXT must not be empty\n", stderr);
    return 2;
  }
  char uuid[37];
  if (!event_id) {
    if (uuid4(uuid)) {
      fputs("assistant-worker send: cannot read /dev/urandom for an event id\n", stderr);
      return 2;
    }
    event_id = uuid;
  } else if (!*event_id || strlen(event_id) > 128) {
    fputs("assistant-worker send: --event-id must be 1..128 bytes\n", stderr);
    return 2;
  }

  cfg c;
  char err[512];
  if (cfg_load(&c, config, err, sizeof err)) {
    fprintf(stderr, "assistant-worker send: configuration: %s\n", err);
    return 2;
  }
  log_set_level(c.log_level);
  log_set_component("send");
  if (!assistant) {
    if (c.nassistants == 0) {
      fputs("assistant-worker send: --assistant is required (no assistant is configured)\n", stderr);
      cfg_free(&c);
      return 2;
    }
    assistant = c.assistants[0].name;
  }

  long long deadline = cli_now_ms() + timeout_ms;
  int status = 2;
  rd_kafka_t *rk = NULL;
  rd_kafka_conf_t *conf = NULL;
  rd_kafka_topic_partition_list_t *assigned = NULL;
  int64_t *ends = NULL;
  cJSON *response = NULL;
  buf req;
  buf_init(&req, c.worker.max_event_bytes);

  /* 1. The consumer, positioned at the current ends. */
  char group[80];
  snprintf(group, sizeof group, "aw-send-%s", event_id);
  if (kconf_new(&c, "assistant-worker-send", &conf, err, sizeof err) ||
      kconf_set(conf, "group.id", group, err, sizeof err) ||
      kconf_set(conf, "enable.auto.commit", "false", err, sizeof err) ||
      kconf_set(conf, "isolation.level", "read_committed", err, sizeof err) ||
      kconf_set(conf, "enable.auto.offset.store", "false", err, sizeof err) ||
      kconf_set(conf, "enable.partition.eof", "true", err, sizeof err) ||
      /* Measured with librdkafka 2.0.2 and a 3.9 broker: with the default
       * fetch.wait.max.ms (500) and fetch.error.backoff.ms (500), a delta
       * landing on an idle deltas partition right after our assignment
       * arrived 5-6 s after the response (or not within the drain window),
       * while responses came at once; with these two values every delta
       * arrives with its response and `send --stream` takes ~0.6 s instead
       * of ~6 s.  The cost is more frequent empty fetches, which a
       * short-lived CLI can afford. */
      kconf_set(conf, "fetch.error.backoff.ms", "10", err, sizeof err) ||
      kconf_set(conf, "fetch.wait.max.ms", "50", err, sizeof err)) {
    fprintf(stderr, "assistant-worker send: %s\n", err);
    goto out;
  }
  rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (!rk) {
    fprintf(stderr, "assistant-worker send: cannot create the consumer: %s\n", err);
    goto out;
  }
  conf = NULL;
  rd_kafka_poll_set_consumer(rk);
  const char *topics[2] = {c.kafka.topic_responses, c.kafka.topic_deltas};
  long long left = deadline - cli_now_ms();
  if (cli_assign_all(rk, topics, stream ? 2 : 1, 0, left > 0 ? (int)left : 1, &assigned, err, sizeof err)) {
    fprintf(stderr, "assistant-worker send: %s\n", err);
    goto out;
  }
  ends = calloc((size_t)assigned->cnt, sizeof *ends);
  if (!ends) {
    fputs("assistant-worker send: out of memory\n", stderr);
    goto out;
  }

  /* 2. The request. */
  contract_part part = {CONTRACT_PART_TEXT, text, strlen(text), NULL};
  contract_request r;
  memset(&r, 0, sizeof r);
  r.v = CONTRACT_VERSION;
  r.event_id = event_id;
  r.conversation_id = conv;
  r.assistant = assistant;
  r.parts = &part;
  r.nparts = 1;
  r.stream = stream;
  int rc = contract_request_encode(&r, &req);
  if (rc) {
    fprintf(stderr, "assistant-worker send: cannot encode the request: %s%s\n", aw_strerror(rc),
            rc == AW_ETOOBIG ? " (larger than worker.max_event_bytes)" : "");
    goto out;
  }
  if (produce_request(&c, conv, req.data, req.len, deadline, err, sizeof err)) {
    fprintf(stderr, "assistant-worker send: %s\n", err);
    goto out;
  }
  fprintf(stderr, "assistant-worker send: event %s sent to %s; waiting for the response\n", event_id,
          c.kafka.topic_requests);

  /* 3. Deltas as they come, then the response. */
  int have_ends = 0;
  long long drain_until = 0;
  for (;;) {
    long long now = cli_now_ms();
    if (response && (deltas_drained(rk, assigned, c.kafka.topic_deltas, ends, &have_ends, deadline) ||
                     now >= drain_until || now >= deadline))
      break;
    if (now >= deadline) {
      fprintf(stderr, "assistant-worker send: timed out after %lld ms waiting for the response to event %s on %s\n",
              timeout_ms, event_id, c.kafka.topic_responses);
      goto out;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, (int)(deadline - now < 500 ? deadline - now : 500));
    if (!m) continue;
    const char *tname = m->rkt ? rd_kafka_topic_name(m->rkt) : NULL;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (tname) advance(assigned, tname, m->partition, m->offset);
    } else if (m->err) {
      log_warn(NULL, "consumer: %s", rd_kafka_message_errstr(m));
    } else if (tname) {
      advance(assigned, tname, m->partition, m->offset + 1);
      cJSON *j = ours(m, event_id);
      if (j && strcmp(tname, c.kafka.topic_responses) == 0 && !response) {
        response = j;
        j = NULL;
        drain_until = cli_now_ms() + DRAIN_MAX_MS;
        if (!stream) {
          rd_kafka_message_destroy(m);
          break;
        }
      } else if (j && strcmp(tname, c.kafka.topic_deltas) == 0) {
        print_json(j);
      }
      cJSON_Delete(j);
    }
    rd_kafka_message_destroy(m);
  }
  print_json(response);
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(response, "status");
  status = cJSON_IsString(st) && strcmp(st->valuestring, "completed") == 0 ? 0 : 1;
  if (status) {
    const cJSON *ec = cJSON_GetObjectItemCaseSensitive(response, "error");
    char *es = ec && !cJSON_IsNull(ec) ? cJSON_PrintUnformatted(ec) : NULL;
    fprintf(stderr, "assistant-worker send: status %s%s%s\n", cJSON_IsString(st) ? st->valuestring : "(none)",
            es ? " " : "", es ? es : "");
    free(es);
  }

out:
  cJSON_Delete(response);
  free(ends);
  buf_free(&req);
  if (assigned) rd_kafka_topic_partition_list_destroy(assigned);
  if (rk) {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
  if (conf) rd_kafka_conf_destroy(conf);
  cfg_free(&c);
  return status;
}

/* cli_request.c -- produce one request and wait for its response.
 *
 * Order matters so that no answer can be missed: the consumer is assigned
 * every partition of the responses topic (and the deltas topic when deltas
 * are wanted) at the partitions' current end offsets, queried explicitly
 * before anything is produced (cli_assign_all); only then is the request
 * produced and its delivery report awaited.  Whatever the worker publishes
 * afterwards lies beyond those offsets.
 *
 * Deltas for our event are handed out as they arrive.  The responses and
 * deltas topics are fetched independently, so the response may be fetched
 * before the last deltas: when it arrives and deltas are wanted, the deltas
 * partitions are read up to their then-current end (bounded by DRAIN_MAX_MS
 * and the overall timeout) before returning.
 */
#include "cli_request.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <librdkafka/rdkafka.h>
#include "buf.h"
#include "cli.h"
#include "kafka_conf.h"
#include "log.h"

#define DRAIN_MAX_MS 5000

/* ---- options ---------------------------------------------------------------- */

void clir_common_init(clir_common *o, const char *prog) {
  memset(o, 0, sizeof *o);
  o->prog = prog;
  o->timeout_ms = CLIR_DEFAULT_TIMEOUT_MS;
}

static int parse_ms(const char *v, long long *out) {
  char *end;
  errno = 0;
  long long x = v ? strtoll(v, &end, 10) : 0;
  if (!v || errno || end == v || *end || x < 1 || x > 86400000LL) return -1;
  *out = x;
  return 0;
}

int clir_common_arg(clir_common *o, int argc, char **argv, int *i) {
  const char *a = argv[*i];
  const char *next = *i + 1 < argc ? argv[*i + 1] : NULL;
  const char **dst = strcmp(a, "--conversation") == 0 ? &o->conv
                     : strcmp(a, "--event-id") == 0   ? &o->event_id
                     : strcmp(a, "--config") == 0     ? &o->config
                     : strcmp(a, "--timeout-ms") == 0 ? &next
                                                      : NULL;
  if (!dst) return 0;
  if (!next) {
    fprintf(stderr, "assistant-worker %s: %s needs a value\n", o->prog, a);
    return -1;
  }
  (*i)++;
  if (dst == &next) {
    if (parse_ms(next, &o->timeout_ms)) {
      fprintf(stderr, "assistant-worker %s: --timeout-ms needs an integer in [1, 86400000]\n", o->prog);
      return -1;
    }
  } else {
    *dst = next;
  }
  return 1;
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

int clir_common_check(clir_common *o) {
  if (!o->conv) {
    fprintf(stderr, "assistant-worker %s: --conversation is required (see --help)\n", o->prog);
    return -1;
  }
  if (!*o->conv || strlen(o->conv) > 256) {
    fprintf(stderr, "assistant-worker %s: --conversation must be 1..256 bytes\n", o->prog);
    return -1;
  }
  if (!o->event_id) {
    if (uuid4(o->uuid)) {
      fprintf(stderr, "assistant-worker %s: cannot read /dev/urandom for an event id\n", o->prog);
      return -1;
    }
    o->event_id = o->uuid;
  } else if (!*o->event_id || strlen(o->event_id) > 128) {
    fprintf(stderr, "assistant-worker %s: --event-id must be 1..128 bytes\n", o->prog);
    return -1;
  }
  return 0;
}

int clir_load_config(const clir_common *o, cfg *c) {
  char err[512];
  if (cfg_load(c, o->config, err, sizeof err)) {
    fprintf(stderr, "assistant-worker %s: configuration: %s\n", o->prog, err);
    return -1;
  }
  log_set_level(c->log_level);
  log_set_component(o->prog);
  return 0;
}

/* ---- output ----------------------------------------------------------------- */

void clir_print_json(const cJSON *j) {
  char *s = j ? cJSON_PrintUnformatted(j) : NULL;
  if (!s) return;
  fputs(s, stdout);
  fputc('\n', stdout);
  fflush(stdout);
  free(s);
}

int clir_exit_status(const clir_common *o, const cJSON *response) {
  const cJSON *st = cJSON_GetObjectItemCaseSensitive(response, "status");
  if (cJSON_IsString(st) && strcmp(st->valuestring, "completed") == 0) return 0;
  const cJSON *ec = cJSON_GetObjectItemCaseSensitive(response, "error");
  char *es = ec && !cJSON_IsNull(ec) ? cJSON_PrintUnformatted(ec) : NULL;
  fprintf(stderr, "assistant-worker %s: status %s%s%s\n", o->prog, cJSON_IsString(st) ? st->valuestring : "(none)",
          es ? " " : "", es ? es : "");
  free(es);
  return 1;
}

/* ---- produce ---------------------------------------------------------------- */

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
static int produce_request(const cfg *c, const char *client_id, const char *conv, const void *payload,
                           size_t len, long long deadline, char *err, size_t errsz) {
  rd_kafka_conf_t *conf = NULL;
  int rc = kconf_new(c, client_id, &conf, err, errsz);
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

/* ---- wait ------------------------------------------------------------------- */

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

/* The consumer of the answer: positioned at the topics' current ends. */
static int open_consumer(const cfg *c, const clir_common *o, const char *client_id, int with_deltas,
                         long long deadline, rd_kafka_t **out, rd_kafka_topic_partition_list_t **assigned,
                         char *err, size_t errsz) {
  rd_kafka_conf_t *conf = NULL;
  char group[200];
  snprintf(group, sizeof group, "aw-%s-%s", o->prog, o->event_id);
  int rc = kconf_new(c, client_id, &conf, err, errsz);
  if (rc) return rc;
  /* Measured with librdkafka 2.0.2 and a 3.9 broker: with the default
   * fetch.wait.max.ms (500) and fetch.error.backoff.ms (500), a delta
   * landing on an idle deltas partition right after our assignment arrived
   * 5-6 s after the response (or not within the drain window), while
   * responses came at once; with the two values below every delta arrives
   * with its response and `send --stream` takes ~0.6 s instead of ~6 s.  The
   * cost is more frequent empty fetches, which a short-lived CLI can afford. */
  static const char *const props[][2] = {
      {"enable.auto.commit", "false"},     {"isolation.level", "read_committed"},
      {"enable.auto.offset.store", "false"}, {"enable.partition.eof", "true"},
      {"fetch.error.backoff.ms", "10"},    {"fetch.wait.max.ms", "50"},
  };
  rc = kconf_set(conf, "group.id", group, err, errsz);
  for (size_t i = 0; !rc && i < sizeof props / sizeof props[0]; i++)
    rc = kconf_set(conf, props[i][0], props[i][1], err, errsz);
  if (rc) {
    rd_kafka_conf_destroy(conf);
    return rc;
  }
  char rkerr[512];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rkerr, sizeof rkerr);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    return aw_seterr(AW_EKAFKA, err, errsz, "cannot create the consumer: %s", rkerr);
  }
  rd_kafka_poll_set_consumer(rk);
  const char *topics[2] = {c->kafka.topic_responses, c->kafka.topic_deltas};
  long long left = deadline - cli_now_ms();
  rc = cli_assign_all(rk, topics, with_deltas ? 2 : 1, 0, left > 0 ? (int)left : 1, assigned, err, errsz);
  if (rc) {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return rc;
  }
  *out = rk;
  return AW_OK;
}

int clir_request(const cfg *c, const clir_common *o, const contract_request *r, clir_delta_fn on_delta,
                 void *opaque, cJSON **response, char *err, size_t errsz) {
  *response = NULL;
  if (!o->event_id || !r->event_id || strcmp(o->event_id, r->event_id) != 0)
    return aw_seterr(AW_EINVAL, err, errsz, "the request's event id is not the command's");
  long long deadline = cli_now_ms() + o->timeout_ms;
  char client_id[64];
  snprintf(client_id, sizeof client_id, "assistant-worker-%s", o->prog);
  rd_kafka_t *rk = NULL;
  rd_kafka_topic_partition_list_t *assigned = NULL;
  int64_t *ends = NULL;
  cJSON *resp = NULL;
  buf req;
  buf_init(&req, c->worker.max_event_bytes);

  /* 1. The consumer, positioned at the current ends; 2. the request. */
  int rc = contract_request_encode(r, &req);
  if (rc) {
    aw_seterr(rc, err, errsz, "cannot encode the request: %s%s", aw_strerror(rc),
              rc == AW_ETOOBIG ? " (larger than worker.max_event_bytes)" : "");
    goto out;
  }
  rc = open_consumer(c, o, client_id, on_delta != NULL, deadline, &rk, &assigned, err, errsz);
  if (rc) goto out;
  ends = calloc((size_t)assigned->cnt, sizeof *ends);
  if (!ends) {
    rc = aw_seterr(AW_ENOMEM, err, errsz, "out of memory");
    goto out;
  }
  rc = produce_request(c, client_id, r->conversation_id, req.data, req.len, deadline, err, errsz);
  if (rc) goto out;
  fprintf(stderr, "assistant-worker %s: event %s sent to %s; waiting for the response\n", o->prog, o->event_id,
          c->kafka.topic_requests);

  /* 3. Deltas as they come, then the response. */
  int have_ends = 0;
  long long drain_until = 0;
  for (;;) {
    long long now = cli_now_ms();
    if (resp && (deltas_drained(rk, assigned, c->kafka.topic_deltas, ends, &have_ends, deadline) ||
                 now >= drain_until || now >= deadline))
      break;
    if (now >= deadline) {
      rc = aw_seterr(AW_ETIMEDOUT, err, errsz, "timed out after %lld ms waiting for the response to event %s on %s",
                     o->timeout_ms, o->event_id, c->kafka.topic_responses);
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
      cJSON *j = ours(m, o->event_id);
      if (j && strcmp(tname, c->kafka.topic_responses) == 0 && !resp) {
        resp = j;
        j = NULL;
        drain_until = cli_now_ms() + DRAIN_MAX_MS;
        if (!on_delta) {
          rd_kafka_message_destroy(m);
          break;
        }
      } else if (j && on_delta && strcmp(tname, c->kafka.topic_deltas) == 0) {
        on_delta(j, opaque);
      }
      cJSON_Delete(j);
    }
    rd_kafka_message_destroy(m);
  }
  *response = resp;
  resp = NULL;
  rc = AW_OK;

out:
  cJSON_Delete(resp);
  free(ends);
  buf_free(&req);
  if (assigned) rd_kafka_topic_partition_list_destroy(assigned);
  if (rk) {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
  return rc;
}

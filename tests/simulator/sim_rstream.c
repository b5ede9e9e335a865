/* sim_rstream.c -- readers of a response's event log (SSE or final JSON). */
#include "sim_rstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "sim_faults.h"
#include "sim_http.h"
#include "sim_record.h"
#include "sim_responses.h"
#include "sim_stats.h"
#include "sim_store.h"
#include "sim_timer.h"

struct srstream {
  struct MHD_Connection *conn;
  char resp_id[40];
  srstream_mode mode;
  long next;   /* sequence number of the next event to send */
  int ended;   /* everything is in out: end once it is handed over */
  int drop;    /* injected fault: close after a few deltas */
  int deltas;
  buf out;
  size_t off;
  cJSON *rec;
};

/* Events copied per look: bounds out (an event is at most the size of
 * one Response snapshot) while letting a reader catch up fast. */
#define BATCH 64
#define OUT_MAX (8u << 20)

srstream *srstream_new(const char *resp_id, long after, srstream_mode mode, int drop, cJSON *rec) {
  srstream *st = calloc(1, sizeof *st);
  if (!st) {
    cJSON_Delete(rec);
    return NULL;
  }
  snprintf(st->resp_id, sizeof st->resp_id, "%s", resp_id);
  st->mode = mode;
  st->next = after + 1;
  st->drop = drop;
  buf_init(&st->out, OUT_MAX);
  st->rec = rec;
  if (rec) cJSON_AddArrayToObject(rec, "stream_events");
  if (mode == SRSTREAM_SSE) sstats_streams(1);
  return st;
}

void srstream_attach(srstream *st, struct MHD_Connection *c) { st->conn = c; }

const char *srstream_content_type(const srstream *st) {
  return st->mode == SRSTREAM_SSE ? "text/event-stream" : "application/json";
}

/* Look at the log once (store lock taken here): copy what is new, note
 * the end.  0: something to send or ended; 1: nothing yet; -1: fail. */
static int look(srstream *st) {
  int rc = 1;
  sstore_lock();
  sobj *resp = sstore_get(st->resp_id, SK_RESP);
  if (!resp) {
    rc = -1; /* deleted under us */
  } else if (st->mode == SRSTREAM_SSE) {
    cJSON *rec = st->rec ? cJSON_GetObjectItemCaseSensitive(st->rec, "stream_events") : NULL;
    long n = sresp_copy_events(resp, st->next, st->drop ? 1 : BATCH, &st->out, rec, &st->deltas);
    if (n < 0) rc = -1;
    else {
      st->next += n;
      if (st->next >= sresp_event_count(resp) && sresp_ended(resp)) st->ended = 1;
      if (n > 0 || st->ended) rc = 0;
    }
  } else if (sresp_ended(resp)) {
    char *s = cJSON_PrintUnformatted(resp->json);
    if (!s || buf_appends(&st->out, s) != AW_OK) rc = -1;
    else rc = 0;
    if (st->rec && s) {
      cJSON_AddItemToObject(st->rec, "response_body", cJSON_Parse(s));
    }
    free(s);
    st->ended = 1;
  }
  sstore_unlock();
  return rc;
}

ssize_t srstream_read(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  srstream *st = cls;
  for (;;) {
    if (st->off < st->out.len) {
      size_t n = st->out.len - st->off;
      if (n > max) n = max;
      memcpy(out, st->out.data + st->off, n);
      st->off += n;
      if (st->off == st->out.len) {
        buf_reset(&st->out);
        st->off = 0;
      }
      return (ssize_t)n;
    }
    if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
    if (shttp_shutting_down()) return MHD_CONTENT_READER_END_WITH_ERROR;
    /* Dropped once the deltas before it went out (MHD calls again only
     * after the previous chunk was sent). */
    if (st->drop && st->deltas >= 3) {
      log_ctx ctx = {.run_id = st->resp_id};
      log_info(&ctx, "dropping response stream (injected fault) after %d deltas", st->deltas);
      return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    int rc = look(st);
    if (rc < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (rc == 1) {
      sfault_cfg c;
      sfault_get(&c);
      int64_t wait = c.token_delay_ms > 0 ? c.token_delay_ms : 5;
      if (shttp_suspend_until(st->conn, stimer_now_ms() + wait) == AW_OK) return 0;
      return MHD_CONTENT_READER_END_WITH_ERROR; /* stopping, or the timer heap is full */
    }
  }
}

void srstream_free(void *cls) {
  srstream *st = cls;
  /* A reader that answered nothing (freed by an injected apply_then_fail,
   * or its client left before the response ended) has no exchange to
   * record: a 200 without a body would not be what the client saw. */
  int answered = st->ended || cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(st->rec, "stream_events")) > 0;
  if (st->rec && !answered) {
    cJSON_Delete(st->rec);
  } else if (st->rec) {
    if (!cJSON_GetObjectItemCaseSensitive(st->rec, "response_body"))
      cJSON_AddNullToObject(st->rec, "response_body");
    srec_write(st->rec);
  }
  buf_free(&st->out);
  if (st->mode == SRSTREAM_SSE) sstats_streams(-1);
  free(st);
}

/* sim_stream.c -- paced Server-Sent Events for one run. */
#include "sim_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "sim_http.h"
#include "sim_record.h"
#include "sim_run.h"
#include "sim_stats.h"
#include "sim_timer.h"

typedef enum { P_THREAD, P_CREATED, P_RESUMED, P_START, P_TOKENS, P_FINISH, P_DONE, P_END } phase;

struct sstream {
  struct MHD_Connection *conn;
  char thread_id[40], run_id[40];
  phase ph;
  int owns;         /* still drives the run (cleared at requires_action) */
  buf out;          /* rendered events not yet handed to MHD */
  size_t off;       /* bytes of out already handed over */
  int drop;         /* injected fault: close the connection mid-answer */
  int drop_after;   /* deltas before the drop, set when the run starts */
  int deltas;
  int64_t next_due; /* monotonic ms before which no token is produced */
  cJSON *rec;       /* --record line; its "stream_events" array is filled */
};

/* Enough for one step's events with a long answer in message.completed. */
#define STREAM_OUT_MAX (4u << 20)

sstream *sstream_new(const char *thread_id, const char *run_id, sstream_kind kind, int drop, cJSON *rec) {
  sstream *st = calloc(1, sizeof *st);
  if (!st) {
    cJSON_Delete(rec);
    return NULL;
  }
  snprintf(st->thread_id, sizeof st->thread_id, "%s", thread_id);
  snprintf(st->run_id, sizeof st->run_id, "%s", run_id);
  st->ph = kind == SSTREAM_THREAD_RUN ? P_THREAD : kind == SSTREAM_SUBMIT ? P_RESUMED : P_CREATED;
  st->owns = 1;
  st->drop = drop;
  buf_init(&st->out, STREAM_OUT_MAX);
  st->rec = rec;
  if (rec) cJSON_AddArrayToObject(rec, "stream_events");
  sstats_streams(1);
  return st;
}

void sstream_attach(sstream *st, struct MHD_Connection *c) { st->conn = c; }

/* Produce the events of one step into st->out.  Returns 0, or -1 when the
 * stream must end now (run gone, overflow). */
static int step(sstream *st) {
  sevents ev = {.out = &st->out, .rec = st->rec ? cJSON_GetObjectItemCaseSensitive(st->rec, "stream_events") : NULL};
  int rc = 0;
  sstore_lock();
  sobj *run = sstore_get(st->run_id, SK_RUN);
  if (!run && st->ph != P_DONE) {
    rc = -1; /* deleted or reset under us: nothing sensible left to say */
  } else if (run && st->owns && run->run->status == RS_CANCELLING) {
    srun_finalize_cancel(run, &ev);
    st->ph = P_DONE;
  } else {
    switch (st->ph) {
    case P_THREAD: {
      sobj *th = sstore_get(st->thread_id, SK_THREAD);
      if (th) sev_emit(&ev, "thread.created", th->json);
      st->ph = P_CREATED;
      break;
    }
    case P_CREATED:
      sev_emit(&ev, "thread.run.created", run->json);
      sev_emit(&ev, "thread.run.queued", run->json);
      st->ph = P_START;
      break;
    case P_RESUMED:
      sev_emit(&ev, "thread.run.queued", run->json);
      st->ph = P_START;
      break;
    case P_START:
      srun_start(run, &ev);
      if (run->run->status == RS_QUEUED) {
        /* Waiting for the thread's files (sim_run.h): look again soon. */
        st->next_due = stimer_now_ms() + SRUN_WAIT_POLL_MS;
        break;
      }
      st->ph = run->run->status == RS_IN_PROGRESS ? P_TOKENS : P_DONE;
      if (run->run->status == RS_REQUIRES_ACTION) {
        /* The client may submit as soon as it reads requires_action,
         * before this stream is freed; the submit's driver (a new stream
         * or the timer) must then be the only one. */
        run->run->stream_owned = 0;
        st->owns = 0;
      }
      /* "A few deltas", but never all of them, so the drop is mid-answer. */
      st->drop_after = run->run->tokens_total > 3 ? 3 : 1;
      break;
    case P_TOKENS: {
      int left = srun_token(run, &ev);
      sfault_cfg c;
      sfault_get(&c);
      st->deltas++;
      st->next_due = c.token_delay_ms > 0 ? stimer_now_ms() + c.token_delay_ms : 0;
      if (left == 0) st->ph = P_FINISH;
      break;
    }
    case P_FINISH:
      srun_finish(run, &ev);
      st->ph = P_DONE;
      break;
    case P_DONE:
      sev_done(&ev);
      st->ph = P_END;
      break;
    case P_END:
      break;
    }
  }
  sstore_unlock();
  return ev.failed ? -1 : rc;
}

ssize_t sstream_read(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  sstream *st = cls;
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
    if (st->ph == P_END) return MHD_CONTENT_READER_END_OF_STREAM;
    if (shttp_shutting_down()) return MHD_CONTENT_READER_END_WITH_ERROR;
    /* The injected drop happens once the deltas before it were written
     * out: MHD only calls us again after the previous chunk was sent. */
    if (st->drop && st->deltas >= st->drop_after && (st->ph == P_TOKENS || st->ph == P_FINISH)) {
      log_ctx ctx = {.thread_id = st->thread_id, .run_id = st->run_id};
      log_info(&ctx, "dropping stream (injected fault) after %d deltas", st->deltas);
      return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (st->ph == P_TOKENS || st->ph == P_FINISH || st->ph == P_START) {
      if (st->next_due && stimer_now_ms() < st->next_due && shttp_suspend_until(st->conn, st->next_due) == AW_OK)
        return 0; /* resumed by the timer; MHD calls us again then */
    }
    if (step(st) != 0) return MHD_CONTENT_READER_END_WITH_ERROR;
  }
}

void sstream_free(void *cls) {
  sstream *st = cls;
  sstore_lock();
  sobj *run = st->owns ? sstore_get(st->run_id, SK_RUN) : NULL;
  if (run) {
    run->run->stream_owned = 0;
    if (srun_status_active(run->run->status)) {
      /* The client is gone but the run goes on, as on the real service. */
      sfault_cfg c;
      sfault_get(&c);
      srun_background(st->run_id, (int64_t)c.token_delay_ms * (run->run->tokens_total - run->run->tokens_done));
    }
  }
  sstore_unlock();
  if (st->rec) srec_write(st->rec);
  buf_free(&st->out);
  sstats_streams(-1);
  free(st);
}

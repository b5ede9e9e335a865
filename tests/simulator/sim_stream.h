/* sim_stream.h -- one SSE response driving one run (prefix sstream_).
 *
 * MHD pulls the response through sstream_read().  Each call first drains
 * the pending text; when that is empty it advances the run by one step
 * (thread.created, run created/queued, start, one token, finish, done) and
 * renders its events.  When the next token is not due yet (token_delay_ms)
 * it suspends the connection and arms a timer to resume it, so a thousand
 * slow streams cost a thousand small structs and timer entries, not
 * threads.  Memory per stream: this struct plus the pending text, bounded
 * by the size of one step's events.
 *
 * When the response ends early (client gone, injected drop, shutdown) the
 * free callback hands the run to the timer thread, which finishes it.
 *
 * @locality MHD threads (read/free/attach); sstream_new from the request
 * handler.
 */
#ifndef SIM_STREAM_H
#define SIM_STREAM_H

#include <stdint.h>
#include <sys/types.h>
#include <microhttpd.h>
#include <cjson/cJSON.h>

typedef struct sstream sstream;

/** What the stream answers, which decides its first events. */
typedef enum {
  SSTREAM_RUN = 0,    /* POST .../runs: thread.run.created, thread.run.queued */
  SSTREAM_THREAD_RUN, /* POST /threads/runs: thread.created first */
  SSTREAM_SUBMIT      /* POST .../submit_tool_outputs: thread.run.queued */
} sstream_kind;

/** A stream for run_id on thread_id.  The caller has set the run's
 *  stream_owned.  drop: close the connection after a few deltas (fault
 *  injection).  Takes ownership of rec (the --record line to complete;
 *  may be NULL).  NULL on ENOMEM (rec is freed).
 *  A stream whose run reaches requires_action ends there (event: done),
 *  as the real API's does, and gives up the run at once: the submit that
 *  follows may come before MHD frees this stream. */
sstream *sstream_new(const char *thread_id, const char *run_id, sstream_kind kind, int drop, cJSON *rec);
/** Tell the stream its connection (needed to suspend it). */
void sstream_attach(sstream *st, struct MHD_Connection *c);
/** MHD_ContentReaderCallback. */
ssize_t sstream_read(void *cls, uint64_t pos, char *out, size_t max);
/** MHD_ContentReaderFreeCallback: releases the run to the background and
 *  writes the record. */
void sstream_free(void *cls);

#endif

/* sim_rstream.h -- a reader of one response's event log (prefix srstream_).
 *
 * The Responses API's SSE streams, and the answer to a non-streamed,
 * non-background create (which the real API sends only when the response
 * is done), are both readers of the response's event log
 * (sim_responses.h).  The reader never drives the response -- the timer
 * thread does -- so it holds only the response id and its position.
 * When it has caught up and the response goes on, it suspends its
 * connection for token_delay_ms (5 ms when that is 0) and looks again:
 * with pacing on, that is when the next event is due anyway.
 *
 * SSE mode writes "event: TYPE\ndata: JSON\n\n" for each event after
 * `after` (-1: from the start) and ends after the terminal event (there is
 * no [DONE] in this API).  JSON mode writes the Response object once it
 * has ended.  drop (fault injection) closes the connection after 3 delta
 * events; the response goes on.
 *
 * @locality MHD threads.
 */
#ifndef SIM_RSTREAM_H
#define SIM_RSTREAM_H

#include <stdint.h>
#include <sys/types.h>
#include <microhttpd.h>
#include <cjson/cJSON.h>

typedef struct srstream srstream;

typedef enum { SRSTREAM_SSE = 0, SRSTREAM_JSON } srstream_mode;

/** A reader of resp_id's events after sequence number `after`.  Takes
 *  rec (the --record line, may be NULL).  NULL on ENOMEM (rec freed). */
srstream *srstream_new(const char *resp_id, long after, srstream_mode mode, int drop, cJSON *rec);
/** Tell the reader its connection (needed to suspend it). */
void srstream_attach(srstream *st, struct MHD_Connection *c);
/** MHD_ContentReaderCallback. */
ssize_t srstream_read(void *cls, uint64_t pos, char *out, size_t max);
/** MHD_ContentReaderFreeCallback: writes the record. */
void srstream_free(void *cls);
/** Content-Type of the reader's answer. */
const char *srstream_content_type(const srstream *st);

#endif

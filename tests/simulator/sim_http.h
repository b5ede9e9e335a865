/* sim_http.h -- the libmicrohttpd front end (prefix shttp_).
 *
 * MHD runs its own polling thread(s) on epoll (thread pool of --threads),
 * with keep-alive and suspend/resume.  Delays never block a thread: a
 * delayed response (latency_ms) or a stream waiting for its next token
 * suspends its connection and the timer thread resumes it.  Per-connection
 * memory is bounded by MHD's connection memory limit plus our request
 * context (the body is capped at 1 MiB).
 *
 * @locality shttp_start/shttp_stop from main; the rest from MHD threads.
 */
#ifndef SIM_HTTP_H
#define SIM_HTTP_H

#include <stdint.h>
#include <microhttpd.h>
#include "aw_error.h"

typedef struct shttp_opts {
  const char *host;   /* IPv4 or IPv6 literal */
  uint16_t port;      /* 0: pick a free port */
  unsigned threads;   /* MHD polling threads (>= 1) */
  unsigned max_conns; /* connection limit */
} shttp_opts;

/** Start serving. */
int shttp_start(const shttp_opts *o, char *errstr, size_t errstr_size) AW_MUST_CHECK;
/** The bound port. */
uint16_t shttp_port(void);
/** Stop: streams end, delayed replies go out, the daemon stops. */
void shttp_stop(void);
/** Is the server shutting down?  Streams end when it is. */
int shttp_shutting_down(void);
/** Suspend connection c until due_ms (monotonic); the timer thread resumes
 *  it.  Call only from an MHD callback of c.  Fails (and does not suspend)
 *  when the timer heap is full or the server is stopping. */
int shttp_suspend_until(struct MHD_Connection *c, int64_t due_ms) AW_MUST_CHECK;

#endif

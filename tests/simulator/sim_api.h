/* sim_api.h -- routing, auth and HTTP faults of /v1 and /admin, and the
 * Assistants API v2 handlers (prefix sapi_).  The Responses and
 * Conversations routes are served by sim_responses.h / sim_conversations.h.
 *
 * Chat Completions are served by sim_chat.h.
 *
 * Independent of the HTTP library: the HTTP layer fills a sapi_req, gets a
 * sapi_reply (a JSON body, or an SSE stream to hand to MHD) and sends it.
 * Bodies are validated against the request schemas of the OpenAI spec
 * (unknown fields, missing required fields and wrong types answer 400 with
 * OpenAI's error shape), and every object returned is spec-complete.
 *
 * @locality MHD threads; takes the store lock as needed.
 */
#ifndef SIM_API_H
#define SIM_API_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "sim_cstream.h"
#include "sim_ratelimit.h"
#include "sim_stats.h"
#include "sim_rstream.h"
#include "sim_stream.h"

typedef struct sapi_req {
  const char *method;
  const char *path;     /* URL path without the query */
  const char *body;     /* may be NULL */
  size_t body_len;
  int body_too_big;     /* the body was over the limit and was dropped */
  const char *auth;     /* Authorization header or NULL */
  const char *beta;     /* OpenAI-Beta header or NULL */
  /* Query argument lookup (NULL when absent). */
  const char *(*arg)(void *cls, const char *key);
  void *arg_cls;
  struct sfiles_upload *upload; /* a multipart POST /v1/files streamed to disk (sim_files.h), or NULL */
} sapi_req;

typedef struct sapi_reply {
  sstats_route route;
  int status;
  char *body;          /* malloc'd JSON text (NULL for streams) */
  int retry_after_s;   /* >= 0: send Retry-After */
  srl_reply rl;        /* the rate-limit headers (sim_ratelimit.h) */
  sstream *stream;     /* non-NULL: answer with this SSE stream */
  srstream *rstream;   /* non-NULL: answer by reading a response's events */
  scstream *cstream;   /* non-NULL: answer with a chat completion's chunks or object */
  int has_fd;          /* answer with the bytes of fd (fd_size of them, */
  int fd;              /* application/octet-stream); the reply owns fd */
  uint64_t fd_size;
  int drop;            /* close the connection without answering (an
                          injected apply_then_fail with status 0) */
  cJSON *rec;          /* in: the --record line or NULL; moved into the
                          stream for SSE replies (then NULL) */
} sapi_reply;

/** Handle one complete request. */
void sapi_handle(const sapi_req *q, sapi_reply *r);

#endif

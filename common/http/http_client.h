/* http_client.h -- non-blocking HTTP/1.1 client on a libuv loop (prefix http_).
 *
 * Design (after curl's docs/examples/multi-uv.c): one CURLM multi handle per
 * client drives every transfer.  CURLMOPT_SOCKETFUNCTION maps each socket
 * curl wants watched to a uv_poll_t, CURLMOPT_TIMERFUNCTION to one uv_timer_t,
 * and curl_multi_socket_action() runs only when libuv says a socket is ready
 * or the timer fired, so thousands of transfers share one thread and nothing
 * blocks the loop.  Connections stay in the multi handle's pool (keep-alive),
 * bounded by max_total_connections; finished easy handles are reset and kept
 * on a small free list so a steady request rate allocates few of them.
 *
 * A request either collects its response body into a bounded buffer (handed
 * to on_done) or, when on_data is set, streams the body of a 2xx response to
 * on_data as it arrives (SSE, file downloads: max_stream caps those).  The
 * body of a non-2xx response is always buffered, so the caller can read the
 * API's error object.  A request body is either bytes (copied) or a
 * multipart/form-data form (http_form_part) whose file contents are read
 * from memory or a descriptor while sending, so uploads of any size cost
 * the same memory.
 *
 * Retries live here because only this layer sees everything they depend on:
 * the status, the Retry-After / retry-after-ms headers, the transport error
 * and whether any body byte was already delivered.  With a retry_policy
 * (retry.h) an idempotent request is retried on 429, 5xx and connection
 * failures, never on other 4xx; a non-idempotent one (it creates something)
 * only on 429 and on failures certainly before the request was sent
 * (refused, DNS, connect-phase timeout: http_response.sent == 0), so that
 * nothing is applied twice; a streaming request only while nothing reached
 * on_data.
 * The same easy handle is re-added after the backoff, so method, headers and
 * body need not be rebuilt.
 *
 * Callbacks: on_data runs inside curl's write callback; on_done runs after
 * curl_multi_socket_action() returned, never inside http_request_start().
 * http_request_cancel() may be called from anywhere, including on_data of the
 * same or another request; after it, no callback of that request runs.  The
 * request is freed by this module after on_done returns; do not cancel it
 * from its own on_done (it is a no-op there).
 *
 * @locality the loop thread only.
 */
#ifndef AW_HTTP_CLIENT_H
#define AW_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>
#include "aw_error.h"
#include "retry.h"

struct curl_slist;

typedef struct http_client http_client;
typedef struct http_request http_request;

typedef struct http_client_config {
  long max_total_connections; /* CURLMOPT_MAX_TOTAL_CONNECTIONS; 0 = unlimited */
  long max_host_connections;  /* CURLMOPT_MAX_HOST_CONNECTIONS; 0 = unlimited */
  int free_easy_max;          /* easy handles kept for reuse (default 32) */
  const char *user_agent;     /* default "assistant-worker/1" */
  /* Debugging: with verbose set, curl's connection messages and every
   * request's and response's header lines go to debug_fn (NULL: one log
   * line each at info), with the values of secret headers replaced by "***"
   * (http_header_is_secret) and bodies never shown.  The default is 1 when
   * the environment variable AW_HTTP_VERBOSE is set to 1 (read by
   * http_client_config_default), else 0. */
  int verbose;
  void (*debug_fn)(void *opaque, const char *line, size_t len); /* one masked line, no CR/LF */
  void *debug_opaque;
} http_client_config;

/** Outcome of a request, valid only during on_done. */
typedef struct http_response {
  int err;               /* AW_OK when an HTTP response was received (any
                            status); else AW_EIO, AW_ETIMEDOUT, AW_ETOOBIG
                            (body over max_body), AW_ECANCELLED (on_data
                            asked to stop), AW_ENOMEM */
  int status;            /* HTTP status of the last attempt, 0 if none */
  long retry_after_ms;   /* from Retry-After / retry-after-ms, -1 if none */
  const char *body;      /* buffered body ("" if none), NUL-terminated */
  size_t body_len;
  int attempts;          /* 1 + retries made */
  int delivered;         /* streaming: bytes were passed to on_data */
  int sent;              /* 0: the last attempt certainly never reached the
                            server (connection refused, name not resolved,
                            connect-phase timeout); 1: it may have */
  const char *errmsg;    /* transport error text ("" if none) */
} http_response;

/** Streaming body bytes of a 2xx response.  Return 0 to go on, non-zero to
 *  abort the transfer (on_done then reports AW_ECANCELLED). */
typedef int (*http_data_cb)(void *opaque, const char *data, size_t len);
/** Called once when the request is over, unless it was cancelled. */
typedef void (*http_done_cb)(void *opaque, const http_response *res);
/** One line of a response head, as received (CR/LF included, len bytes):
 *  the status line ("HTTP/1.1 429 ..."), each header, and the blank line
 *  that ends the head -- of every attempt, the retried ones too.  For
 *  callers that read headers this module does not (the rate gate's
 *  x-ratelimit-*: api_gate.h).  Must not cancel the request. */
typedef void (*http_header_cb)(void *opaque, const char *line, size_t len);

/** One part of a multipart/form-data body (RFC 7578), for uploads.
 *  A part without filename is a small text field, copied by curl.  A part
 *  with a filename is file content, streamed, never copied whole: from
 *  memory (data, len: borrowed, must stay valid until on_done or cancel)
 *  or, when data is NULL, from a file descriptor (fd: len bytes read with
 *  pread from offset 0; borrowed, not closed).  Either way it is read in curl's upload
 *  buffer's steps, so a 100 MB file costs no more memory than a small one. */
typedef struct http_form_part {
  const char *name;     /* field name, e.g. "file", "purpose" */
  const char *filename; /* NULL: a text field (data, len) */
  const char *type;     /* the part's Content-Type; NULL: none */
  const char *data;     /* text field value, or file content in memory */
  size_t len;           /* bytes of data, or of the file behind fd */
  int fd;               /* file content read from fd when data is NULL */
} http_form_part;

typedef struct http_request_opts {
  const char *method;               /* "GET", "POST", "DELETE" */
  const char *url;                  /* copied */
  const struct curl_slist *headers; /* NOT copied: must outlive the request
                                       (the API client keeps one list) */
  const char *body;                 /* copied; NULL for none */
  size_t body_len;
  long timeout_ms;                  /* whole transfer, 0 = none (streams) */
  long connect_timeout_ms;          /* 0 = min(timeout_ms, 10 s) */
  long idle_timeout_ms;             /* fail with AW_ETIMEDOUT when no byte
                                       arrives (or, uploading a form, leaves)
                                       for this long, 0 = none */
  size_t max_body;                  /* cap on a buffered body */
  const retry_policy *retry;        /* NULL = no retries; must outlive the request */
  int idempotent;                   /* 1: retried on 429, 5xx, transport
                                       failures (retry_should).  0: the
                                       request creates something: retried
                                       only on 429 and failures before it
                                       was sent (retry_should_create) */
  const http_form_part *form;       /* non-NULL: a multipart/form-data POST of
                                       nform parts (body must be NULL); the
                                       array is read at the start only, the
                                       file contents it points to are read
                                       while sending (see http_form_part) */
  size_t nform;
  http_data_cb on_data;             /* non-NULL: stream 2xx bodies */
  size_t max_stream;                /* with on_data: cap on the bytes streamed
                                       (0 = none); over it the transfer stops
                                       and on_done reports AW_ETOOBIG */
  http_header_cb on_header;         /* optional: every response head line */
  http_done_cb on_done;             /* required */
  void *opaque;
} http_request_opts;

/** Defaults: 32 free easy handles, verbose from AW_HTTP_VERBOSE... see
 *  http_client_config. */
void http_client_config_default(http_client_config *cfg);

/** Is the header called name (len bytes, any case) one whose value the
 *  verbose output masks?  Authorization, Proxy-Authorization, Cookie,
 *  Set-Cookie, api-key, OpenAI-Organization, OpenAI-Project, and any name
 *  containing "auth", "key", "token", "secret", "password", "cookie" or
 *  "session". */
int http_header_is_secret(const char *name, size_t len);

/** Copy one header line (len bytes, no CR/LF needed) into out (size n,
 *  NUL-terminated, truncated to fit) with the value replaced by "***" when
 *  http_header_is_secret says so.  Returns the length written. */
size_t http_header_mask(const char *line, size_t len, char *out, size_t n);

/** Create a client on loop.  AW_ENOMEM / AW_EFATAL (curl init failed). */
int http_client_new(uv_loop_t *loop, const http_client_config *cfg, http_client **out,
                    char *errstr, size_t errstr_size) AW_MUST_CHECK;

/** Cancel every request (no callbacks), close connections and release the
 *  client.  Its libuv handles close asynchronously: the memory is freed by
 *  the loop's next iteration, so run the loop once more before closing it.
 *  Never call from one of this client's callbacks.  Safe on NULL. */
void http_client_free(http_client *c);

/** Start a request.  On success *out (may be NULL if the caller never
 *  cancels) receives the handle, valid until on_done returns or
 *  http_request_cancel.  AW_EINVAL for a bad option, AW_ENOMEM. */
int http_request_start(http_client *c, const http_request_opts *o, http_request **out) AW_MUST_CHECK;

/** Stop a request in flight or waiting to retry; no callback follows.  Safe
 *  on NULL. */
void http_request_cancel(http_request *r);

/** Is r waiting for its backoff before a retry?  (Diagnostics, tests.) */
int http_request_waiting(const http_request *r);

/** Number of requests started and not yet finished or cancelled. */
size_t http_client_pending(const http_client *c);

#endif

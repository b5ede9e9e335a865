/* http_client.c -- libcurl multi-socket API driven by a libuv loop.
 *
 * Wiring (see http_client.h): curl tells us which sockets to watch
 * (on_socket -> one uv_poll_t per socket) and when to call it back
 * (on_curl_timer -> one uv_timer_t); libuv tells curl what happened through
 * drive() -> curl_multi_socket_action().  Finished transfers are collected in
 * check_done() after curl returned, so on_done callbacks never run inside
 * curl and may start or cancel requests freely.
 *
 * curl forbids curl_multi_remove_handle() from inside its own callbacks, and
 * a user may cancel a request from on_data (which runs inside curl's write
 * callback).  Such a request is marked cancelled, its write callback returns
 * 0 to stop the transfer, and it sits on a zombie list until drive() returns
 * and removes it.  `depth` counts how deep we are inside curl.
 */
#include "http_client.h"

#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"

typedef struct sock_ctx {
  uv_poll_t poll;
  curl_socket_t fd;
  http_client *c;
  struct sock_ctx *prev, *next;
} sock_ctx;

/* A request's one timer: the backoff before a retry, or the idle watch of a
 * stream (never both at once).  It lives in its own allocation so a request
 * can be freed at once while the handle closes asynchronously. */
typedef struct retry_timer {
  uv_timer_t t;
  http_request *r;
  http_client *c;
} retry_timer;

enum { ABORT_NONE = 0, ABORT_TOOBIG, ABORT_USER, ABORT_NOMEM };

/* The content of one file part of a multipart upload, read by on_form_read
 * in curl's steps (see "multipart uploads" below). */
typedef struct form_src {
  http_request *r;
  const char *data; /* memory, or NULL when fd >= 0 */
  int fd;
  size_t len, off;
} form_src;
enum { R_ACTIVE = 0, R_WAIT_RETRY, R_DONE };

struct http_request {
  http_client *c;
  http_request *prev, *next; /* live list, or zombie list when zombie */
  CURL *easy;
  int state;
  int in_multi;
  int cancelled;
  int zombie;
  int decided;   /* this attempt's body routing (stream or buffer) is known */
  int streaming; /* this attempt's body goes to on_data */
  int abort;
  int status;
  long retry_after_ms;    /* Retry-After of the current response */
  long retry_after_ms_ms; /* retry-after-ms of the current response */
  int attempts;
  int delivered;
  int idempotent;
  long idle_ms;           /* 0: no idle limit */
  uint64_t last_activity; /* uv_now() of the last byte received */
  const retry_policy *retry;
  http_data_cb on_data;
  http_header_cb on_header;
  http_done_cb on_done;
  void *opaque;
  retry_timer *timer;
  buf body;
  char *send;             /* a creating request's body, read by on_read (owned) */
  size_t send_len, send_off;
  curl_mime *mime;        /* a multipart upload's body (owned), else NULL */
  form_src *src;          /* its file parts' readers (owned) */
  size_t nsrc;
  int rewind_ok;          /* our own retry may rewind the file parts once */
  size_t max_stream, streamed; /* cap on / bytes passed to on_data */
  char errbuf[CURL_ERROR_SIZE];
};

struct http_client {
  uv_loop_t *loop;
  CURLM *multi;
  uv_timer_t timer;
  int depth;          /* >0 while inside curl_multi_socket_action */
  int closing;
  int nhandles;       /* uv handles not yet closed (timer, polls, retry timers) */
  http_request *live; /* every started request not yet released */
  http_request *zombies;
  sock_ctx *socks;
  size_t pending;
  CURL **free_easy;
  int nfree, free_max;
  char *user_agent;
  uint32_t rng;
  int verbose; /* CURLOPT_DEBUGFUNCTION on every transfer (on_debug) */
  void (*debug_fn)(void *opaque, const char *line, size_t len);
  void *debug_opaque;
};

static void check_done(http_client *c);
static int start_idle_watch(http_request *r);

void http_client_config_default(http_client_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->free_easy_max = 32;
  /* A debugging switch, not a secret: read here, where every client's
   * configuration starts, so that the layers above need no setting of it. */
  const char *v = getenv("AW_HTTP_VERBOSE");
  cfg->verbose = v && strcmp(v, "1") == 0;
}

/* ---- verbose output ----------------------------------------------------------- */

static int name_has(const char *name, size_t len, const char *word) {
  size_t w = strlen(word);
  for (size_t i = 0; i + w <= len; i++)
    if (strncasecmp(name + i, word, w) == 0) return 1;
  return 0;
}

int http_header_is_secret(const char *name, size_t len) {
  /* Names by substring, so that a new credential header (x-api-key,
   * X-Auth-Token, ...) is masked without a list to maintain; masking a
   * harmless header in a debugging aid costs nothing. */
  static const char *const words[] = {"auth", "key", "token", "secret", "password", "cookie",
                                      "session", "organization", "project"};
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
    if (name_has(name, len, words[i])) return 1;
  return 0;
}

size_t http_header_mask(const char *line, size_t len, char *out, size_t n) {
  if (!n) return 0;
  const char *colon = memchr(line, ':', len);
  size_t keep = len;
  const char *tail = "";
  /* "Name: value": keep the name and the colon, mask the value.  A request
   * or status line has no colon before its first space, and is kept. */
  if (colon && !memchr(line, ' ', (size_t)(colon - line)) && http_header_is_secret(line, (size_t)(colon - line))) {
    keep = (size_t)(colon - line) + 1;
    tail = " ***";
  }
  int w = snprintf(out, n, "%.*s%s", (int)keep, line, tail);
  if (w < 0) w = 0;
  return (size_t)w < n ? (size_t)w : n - 1;
}

static void debug_line(http_client *c, char dir, const char *line, size_t len, int header) {
  char out[1024];
  out[0] = dir;
  out[1] = ' ';
  size_t m = header ? http_header_mask(line, len, out + 2, sizeof out - 2)
                    : (size_t)snprintf(out + 2, sizeof out - 2, "%.*s", (int)(len < 1000 ? len : 1000), line);
  if (m > sizeof out - 3) m = sizeof out - 3;
  if (c->debug_fn) c->debug_fn(c->debug_opaque, out, m + 2);
  else log_info(NULL, "http: %.*s", (int)(m + 2), out);
}

/* curl's debug callback: connection messages ("*") and header lines ("<"
 * in, ">" out), one line each, secret header values masked.  Bodies and TLS
 * records are never shown (they carry users' text and tokens). */
static int on_debug(CURL *h, curl_infotype t, char *data, size_t size, void *ud) {
  (void)h;
  http_client *c = ud;
  char dir;
  switch (t) {
  case CURLINFO_TEXT: dir = '*'; break;
  case CURLINFO_HEADER_IN: dir = '<'; break;
  case CURLINFO_HEADER_OUT: dir = '>'; break;
  default: return 0;
  }
  /* HEADER_OUT is the whole request head at once: split it into lines. */
  size_t i = 0;
  while (i < size) {
    size_t j = i;
    while (j < size && data[j] != '\n') j++;
    size_t end = j;
    while (end > i && (data[end - 1] == '\r' || data[end - 1] == '\n')) end--;
    if (end > i) debug_line(c, dir, data + i, end - i, t != CURLINFO_TEXT);
    i = j + 1;
  }
  return 0;
}

static uint32_t next_rand(http_client *c) {
  /* xorshift32: jitter needs spread, not cryptographic quality. */
  uint32_t x = c->rng;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  c->rng = x ? x : 0x9e3779b9u;
  return c->rng;
}

/* ---- freeing ---------------------------------------------------------------- */

static void maybe_free_client(http_client *c) {
  if (!c->closing || c->nhandles > 0) return;
  free(c->free_easy);
  free(c->user_agent);
  free(c);
}

static void on_handle_closed(uv_handle_t *h) {
  http_client *c = h->data;
  c->nhandles--;
  maybe_free_client(c);
}

static void on_sock_closed(uv_handle_t *h) {
  sock_ctx *s = (sock_ctx *)h;
  http_client *c = s->c;
  free(s);
  c->nhandles--;
  maybe_free_client(c);
}

static void on_timer_closed(uv_handle_t *h) {
  retry_timer *t = (retry_timer *)h;
  http_client *c = t->c;
  free(t);
  c->nhandles--;
  maybe_free_client(c);
}

static void recycle_easy(http_client *c, CURL *easy) {
  if (!c->closing && c->nfree < c->free_max) {
    curl_easy_reset(easy);
    c->free_easy[c->nfree++] = easy;
  } else {
    curl_easy_cleanup(easy);
  }
}

static void list_unlink(http_request **head, http_request *r) {
  if (r->prev) r->prev->next = r->next;
  else *head = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
}

static void list_push(http_request **head, http_request *r) {
  r->prev = NULL;
  r->next = *head;
  if (*head) (*head)->prev = r;
  *head = r;
}

/* Release everything a request holds.  Never called while curl is inside a
 * callback of this request (see zombies). */
static void req_release(http_request *r) {
  http_client *c = r->c;
  if (r->zombie) list_unlink(&c->zombies, r);
  else list_unlink(&c->live, r);
  c->pending--;
  if (r->easy) {
    if (r->in_multi) curl_multi_remove_handle(c->multi, r->easy);
    recycle_easy(c, r->easy);
  }
  if (r->timer) {
    r->timer->r = NULL;
    uv_close((uv_handle_t *)&r->timer->t, on_timer_closed);
  }
  buf_free(&r->body);
  free(r->send);
  curl_mime_free(r->mime); /* after the easy handle let go of it */
  free(r->src);
  free(r);
}

static void reap_zombies(http_client *c) {
  while (c->zombies) req_release(c->zombies);
}

/* ---- curl <-> libuv ----------------------------------------------------------- */

static void drive(http_client *c, curl_socket_t s, int flags) {
  int running = 0;
  c->depth++;
  curl_multi_socket_action(c->multi, s, flags, &running);
  c->depth--;
  reap_zombies(c);
  check_done(c);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  sock_ctx *s = (sock_ctx *)h;
  int flags = 0;
  if (status < 0) flags = CURL_CSELECT_ERR;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  drive(s->c, s->fd, flags);
}

static void on_uv_timer(uv_timer_t *t) {
  http_client *c = t->data;
  drive(c, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *ud) {
  (void)multi;
  http_client *c = ud;
  if (timeout_ms < 0) uv_timer_stop(&c->timer);
  else uv_timer_start(&c->timer, on_uv_timer, (uint64_t)timeout_ms, 0);
  return 0;
}

static void sock_close(http_client *c, sock_ctx *s) {
  if (s->prev) s->prev->next = s->next;
  else c->socks = s->next;
  if (s->next) s->next->prev = s->prev;
  uv_poll_stop(&s->poll);
  uv_close((uv_handle_t *)&s->poll, on_sock_closed);
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp) {
  (void)easy;
  http_client *c = ud;
  sock_ctx *s = sockp;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      sock_close(c, s);
      curl_multi_assign(c->multi, fd, NULL);
    }
    return 0;
  }
  if (!s) {
    s = calloc(1, sizeof *s);
    if (!s) return -1;
    if (uv_poll_init_socket(c->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    c->nhandles++;
    s->fd = fd;
    s->c = c;
    s->next = c->socks;
    if (c->socks) c->socks->prev = s;
    c->socks = s;
    curl_multi_assign(c->multi, fd, s);
  }
  int ev = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev |= UV_WRITABLE;
  return uv_poll_start(&s->poll, ev, on_poll) == 0 ? 0 : -1;
}

/* ---- per-transfer callbacks ---------------------------------------------------- */

static void reset_attempt(http_request *r) {
  r->send_off = 0; /* our own retry sends the body from its start */
  r->streamed = 0;
  r->decided = r->streaming = 0;
  r->abort = ABORT_NONE;
  r->status = 0;
  r->retry_after_ms = r->retry_after_ms_ms = -1;
  r->errbuf[0] = '\0';
  buf_reset(&r->body);
}

static int header_is(const char *p, size_t len, const char *name, const char **val, size_t *vlen) {
  size_t n = strlen(name);
  if (len <= n || strncasecmp(p, name, n) != 0 || p[n] != ':') return 0;
  const char *v = p + n + 1, *e = p + len;
  while (v < e && (*v == ' ' || *v == '\t')) v++;
  while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t')) e--;
  *val = v;
  *vlen = (size_t)(e - v);
  return 1;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  http_request *r = ud;
  size_t len = size * n;
  r->last_activity = uv_now(r->c->loop);
  const char *v;
  size_t vlen;
  char tmp[64];
  if (r->on_header && !r->cancelled) r->on_header(r->opaque, p, len);
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
    /* A new response (after a 100 Continue, say): forget the previous one's. */
    r->retry_after_ms = r->retry_after_ms_ms = -1;
  } else if (header_is(p, len, "retry-after-ms", &v, &vlen)) {
    if (vlen > 0 && vlen < sizeof tmp) {
      memcpy(tmp, v, vlen);
      tmp[vlen] = '\0';
      char *end;
      double ms = strtod(tmp, &end);
      if (end != tmp && *end == '\0' && ms >= 0 && ms < 1e9) r->retry_after_ms_ms = (long)ms;
    }
  } else if (header_is(p, len, "retry-after", &v, &vlen)) {
    if (vlen > 0 && vlen < sizeof tmp) {
      memcpy(tmp, v, vlen);
      tmp[vlen] = '\0';
      long ms;
      if (retry_parse_retry_after(tmp, time(NULL), &ms) == AW_OK) r->retry_after_ms = ms;
    }
  }
  return len;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
  http_request *r = ud;
  size_t len = size * n;
  if (r->cancelled) return 0;
  r->last_activity = uv_now(r->c->loop);
  if (!r->decided) {
    long code = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
    r->status = (int)code;
    r->streaming = r->on_data && code >= 200 && code < 300;
    r->decided = 1;
  }
  if (r->streaming) {
    if (len == 0) return 0;
    if (r->max_stream && len > r->max_stream - r->streamed) {
      r->abort = ABORT_TOOBIG;
      return 0;
    }
    r->streamed += len;
    r->delivered = 1;
    int rc = r->on_data(r->opaque, p, len);
    if (r->cancelled) return 0; /* cancelled from inside on_data */
    if (rc) {
      r->abort = ABORT_USER;
      return 0;
    }
    return len;
  }
  int rc = buf_append(&r->body, p, len);
  if (rc) {
    r->abort = rc == AW_ETOOBIG ? ABORT_TOOBIG : ABORT_NOMEM;
    return 0;
  }
  return len;
}

/* ---- completion ----------------------------------------------------------------- */

static int map_curl_error(CURLcode cc) {
  switch (cc) {
  case CURLE_OK: return AW_OK;
  case CURLE_OPERATION_TIMEDOUT: return AW_ETIMEDOUT;
  case CURLE_OUT_OF_MEMORY: return AW_ENOMEM;
  default: return AW_EIO;
  }
}

/* Did any byte of the request possibly reach the server?  0 only when it
 * certainly did not: the connection was never made (refused, name not
 * resolved), or the attempt ended before curl got to sending it.  curl
 * stamps PRETRANSFER right before it sends the request (and never stamps it
 * 0: at least 1 us), and resets it for every transfer, so 0 means a timeout
 * or TLS failure hit during the connect phase.  Safe to retry even a POST
 * that creates something. */
static int maybe_sent(http_request *r, CURLcode cc) {
  if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
      cc == CURLE_COULDNT_RESOLVE_PROXY)
    return 0;
  if (cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_SSL_CONNECT_ERROR) {
    curl_off_t pre = 0;
    if (curl_easy_getinfo(r->easy, CURLINFO_PRETRANSFER_TIME_T, &pre) == CURLE_OK && pre == 0)
      return 0;
  }
  return 1;
}

/* A creating request's body goes through a read callback that cannot seek,
 * on purpose.  libcurl (7.88) silently sends a request again on a fresh
 * connection when the reused one it was sent on dies before any byte of the
 * answer arrives -- exactly the "applied, then the connection dropped" case,
 * where a second POST would create a second run or response.  Without a way
 * to rewind the body, that hidden retry fails (CURLE_SEND_FAIL_REWIND)
 * instead, and the failure is classed ambiguous like any other, so the
 * backend looks for what the first attempt created.  Cost, measured with
 * the benchmark's in-flight phase: about 4.7 KB of RSS per streaming turn
 * (curl's upload buffer, one touched page of it per easy handle). */
static size_t on_read(char *dst, size_t size, size_t n, void *opaque) {
  http_request *r = opaque;
  size_t want = size * n, left = r->send_len - r->send_off;
  size_t k = left < want ? left : want;
  if (k) memcpy(dst, r->send + r->send_off, k);
  r->send_off += k;
  return k;
}

static int on_seek(void *opaque, curl_off_t offset, int origin) {
  (void)opaque;
  (void)offset;
  (void)origin;
  return CURL_SEEKFUNC_CANTSEEK;
}

/* ---- multipart uploads ----------------------------------------------------------
 * A file part is read through curl_mime_data_cb, not curl_mime_filedata,
 * for the same reason as on_read: curl rewinds a MIME body with the parts'
 * seek functions, and curl_mime_filedata's fseek always succeeds, so
 * libcurl's hidden resend on a dead reused connection would upload the file
 * a second time.  Here the seek succeeds only for our own retry (429, or a
 * failure before sending: rewind_ok, set by on_retry_timer); curl's hidden
 * resend fails with CURLE_SEND_FAIL_REWIND and ends ambiguous, so the caller
 * looks for the file before uploading it again.  The first attempt never
 * seeks (a part still at its start is not rewound).  A read also stamps
 * last_activity: an upload is not idle while it sends. */
static size_t on_form_read(char *dst, size_t size, size_t n, void *opaque) {
  form_src *f = opaque;
  http_request *r = f->r;
  r->rewind_ok = 0;
  r->last_activity = uv_now(r->c->loop);
  size_t want = size * n, left = f->len - f->off;
  size_t k = left < want ? left : want;
  if (!k) return 0;
  if (f->data) {
    memcpy(dst, f->data + f->off, k);
  } else {
    ssize_t got = pread(f->fd, dst, k, (off_t)f->off);
    if (got <= 0) {
      snprintf(r->errbuf, sizeof r->errbuf, "reading the file to upload failed at byte %zu", f->off);
      return CURL_READFUNC_ABORT; /* the file shrank or cannot be read */
    }
    k = (size_t)got;
  }
  f->off += k;
  return k;
}

static int on_form_seek(void *opaque, curl_off_t offset, int origin) {
  form_src *f = opaque;
  if (!f->r->rewind_ok || origin != SEEK_SET || offset < 0 || (size_t)offset > f->len)
    return CURL_SEEKFUNC_CANTSEEK;
  f->off = (size_t)offset;
  return CURL_SEEKFUNC_OK;
}

/* Build r's multipart body from the caller's parts; AW_EINVAL, AW_ENOMEM. */
static int form_build(http_request *r, const http_form_part *parts, size_t n) {
  size_t nfiles = 0;
  for (size_t i = 0; i < n; i++) {
    if (!parts[i].name || (!parts[i].data && (!parts[i].filename || parts[i].fd < 0)))
      return AW_EINVAL;
    if (parts[i].filename) nfiles++;
  }
  r->mime = curl_mime_init(r->easy);
  r->src = nfiles ? calloc(nfiles, sizeof *r->src) : NULL;
  if (!r->mime || (nfiles && !r->src)) return AW_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const http_form_part *p = &parts[i];
    curl_mimepart *mp = curl_mime_addpart(r->mime);
    if (!mp || curl_mime_name(mp, p->name) != CURLE_OK) return AW_ENOMEM;
    if (p->type && curl_mime_type(mp, p->type) != CURLE_OK) return AW_EINVAL;
    if (!p->filename) {
      if (curl_mime_data(mp, p->data, p->len) != CURLE_OK) return AW_ENOMEM;
      continue;
    }
    form_src *f = &r->src[r->nsrc++];
    f->r = r;
    f->data = p->data;
    f->fd = p->data ? -1 : p->fd;
    f->len = p->len;
    if (curl_mime_filename(mp, p->filename) != CURLE_OK ||
        curl_mime_data_cb(mp, (curl_off_t)p->len, on_form_read, on_form_seek, NULL, f) != CURLE_OK)
      return AW_ENOMEM;
  }
  return curl_easy_setopt(r->easy, CURLOPT_MIMEPOST, r->mime) == CURLE_OK ? AW_OK : AW_EINVAL;
}

static void on_retry_timer(uv_timer_t *t) {
  retry_timer *rt = (retry_timer *)t;
  http_request *r = rt->r;
  if (!r || r->state != R_WAIT_RETRY) return;
  reset_attempt(r);
  r->rewind_ok = 1; /* this retry is ours: the file parts may start over */
  r->attempts++;
  r->state = R_ACTIVE;
  if (curl_multi_add_handle(r->c->multi, r->easy) != CURLM_OK) {
    http_response res = {.err = AW_EIO, .status = 0, .retry_after_ms = -1, .body = "",
                         .attempts = r->attempts, .errmsg = "curl_multi_add_handle failed"};
    r->state = R_DONE;
    r->on_done(r->opaque, &res);
    req_release(r);
    return;
  }
  r->in_multi = 1;
  (void)start_idle_watch(r); /* on failure the stream just has no idle limit */
}

static int ensure_timer(http_request *r) {
  http_client *c = r->c;
  if (r->timer) return AW_OK;
  retry_timer *t = calloc(1, sizeof *t);
  if (!t) return AW_ENOMEM;
  if (uv_timer_init(c->loop, &t->t) != 0) {
    free(t);
    return AW_EIO;
  }
  c->nhandles++;
  t->c = c;
  t->r = r;
  r->timer = t;
  return AW_OK;
}

static void finished(http_request *r, CURLcode cc);

/* Idle watch: a byte only stamps last_activity (O(1) per chunk); the timer
 * re-arms itself for the remainder until a whole idle_ms passed without one.
 * curl's LOW_SPEED_* would do it too, but averages over a 5 s window, so a
 * stream that went silent after a burst would live ~5 s longer. */
static void on_idle_timer(uv_timer_t *t) {
  retry_timer *rt = (retry_timer *)t;
  http_request *r = rt->r;
  if (!r || r->state != R_ACTIVE || !r->in_multi) return;
  uint64_t now = uv_now(r->c->loop), idle = (uint64_t)r->idle_ms;
  uint64_t quiet = now - r->last_activity;
  if (quiet < idle) {
    uv_timer_start(t, on_idle_timer, idle - quiet, 0);
    return;
  }
  snprintf(r->errbuf, sizeof r->errbuf, "no data received for %ld ms", r->idle_ms);
  finished(r, CURLE_OPERATION_TIMEDOUT);
}

static int start_idle_watch(http_request *r) {
  if (r->idle_ms <= 0) return AW_OK;
  int rc = ensure_timer(r);
  if (rc) return rc;
  r->last_activity = uv_now(r->c->loop);
  uv_timer_start(&r->timer->t, on_idle_timer, (uint64_t)r->idle_ms, 0);
  return AW_OK;
}

static int schedule_retry(http_request *r, long delay_ms) {
  int rc = ensure_timer(r);
  if (rc) return rc;
  r->state = R_WAIT_RETRY;
  uv_timer_start(&r->timer->t, on_retry_timer, (uint64_t)(delay_ms < 0 ? 0 : delay_ms), 0);
  return AW_OK;
}

static void finished(http_request *r, CURLcode cc) {
  http_client *c = r->c;
  curl_multi_remove_handle(c->multi, r->easy);
  r->in_multi = 0;
  if (r->timer) uv_timer_stop(&r->timer->t);
  long code = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
  r->status = (int)code;

  int err = map_curl_error(cc);
  if (cc == CURLE_WRITE_ERROR) {
    if (r->abort == ABORT_TOOBIG) err = AW_ETOOBIG;
    else if (r->abort == ABORT_USER) err = AW_ECANCELLED;
    else if (r->abort == ABORT_NOMEM) err = AW_ENOMEM;
  }
  long ra = r->retry_after_ms_ms >= 0 ? r->retry_after_ms_ms : r->retry_after_ms;

  int sent = err == AW_OK || maybe_sent(r, cc);
  if (r->retry && !r->delivered && (err == AW_OK || err == AW_EIO || err == AW_ETIMEDOUT)) {
    int transport = err;
    int status = err == AW_OK ? r->status : 0;
    retry_decision d = r->idempotent
                           ? retry_should(r->retry, r->attempts - 1, status, transport)
                           : retry_should_create(r->retry, r->attempts - 1, status, transport, sent);
    if (d == RETRY_YES) {
      long delay = retry_delay_ms(r->retry, r->attempts - 1, ra, next_rand(c));
      if (schedule_retry(r, delay) == AW_OK) return;
    }
  }

  http_response res;
  memset(&res, 0, sizeof res);
  res.err = err;
  res.status = r->status;
  res.retry_after_ms = ra;
  res.body = r->body.data ? r->body.data : "";
  res.body_len = r->body.len;
  res.attempts = r->attempts;
  res.delivered = r->delivered;
  res.sent = sent;
  res.errmsg = r->errbuf[0] ? r->errbuf : (err ? curl_easy_strerror(cc) : "");
  if (err == AW_ETOOBIG) res.errmsg = "response body too large";
  r->state = R_DONE;
  r->on_done(r->opaque, &res);
  req_release(r);
}

static void check_done(http_client *c) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(c->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    http_request *r = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (!r) continue;
    CURLcode cc = m->data.result; /* m is invalid once the handle is removed */
    if (r->cancelled) {
      req_release(r);
      continue;
    }
    finished(r, cc);
  }
}

/* ---- public API ------------------------------------------------------------------ */

int http_client_new(uv_loop_t *loop, const http_client_config *cfg, http_client **out,
                    char *errstr, size_t errstr_size) {
  http_client_config def;
  if (!cfg) {
    http_client_config_default(&def);
    cfg = &def;
  }
  http_client *c = calloc(1, sizeof *c);
  if (!c) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "http client: out of memory");
  c->loop = loop;
  c->free_max = cfg->free_easy_max > 0 ? cfg->free_easy_max : 0;
  c->free_easy = c->free_max ? calloc((size_t)c->free_max, sizeof *c->free_easy) : NULL;
  c->user_agent = strdup(cfg->user_agent ? cfg->user_agent : "assistant-worker/1");
  c->rng = (uint32_t)uv_hrtime() ^ (uint32_t)(uintptr_t)c;
  c->verbose = cfg->verbose;
  c->debug_fn = cfg->debug_fn;
  c->debug_opaque = cfg->debug_opaque;
  if (!c->rng) c->rng = 1;
  if ((c->free_max && !c->free_easy) || !c->user_agent) goto nomem;
  /* curl_global_init is not thread-safe in 7.88 but is refcounted; calling it
   * once per client from the loop thread keeps this module self-contained. */
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    free(c->free_easy);
    free(c->user_agent);
    free(c);
    return aw_seterr(AW_EFATAL, errstr, errstr_size, "curl_global_init failed");
  }
  c->multi = curl_multi_init();
  if (!c->multi) {
    curl_global_cleanup();
    goto nomem;
  }
  if (uv_timer_init(loop, &c->timer) != 0) {
    curl_multi_cleanup(c->multi);
    curl_global_cleanup();
    free(c->free_easy);
    free(c->user_agent);
    free(c);
    return aw_seterr(AW_EFATAL, errstr, errstr_size, "uv_timer_init failed");
  }
  c->timer.data = c;
  c->nhandles = 1;
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
  curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
  if (cfg->max_total_connections > 0)
    curl_multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, cfg->max_total_connections);
  if (cfg->max_host_connections > 0)
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, cfg->max_host_connections);
  *out = c;
  return AW_OK;
nomem:
  free(c->free_easy);
  free(c->user_agent);
  free(c);
  return aw_seterr(AW_ENOMEM, errstr, errstr_size, "http client: out of memory");
}

void http_client_free(http_client *c) {
  if (!c) return;
  c->closing = 1;
  while (c->live) {
    c->live->cancelled = 1;
    req_release(c->live);
  }
  reap_zombies(c);
  /* Closing the pool's connections calls on_socket(CURL_POLL_REMOVE), which
   * closes their poll handles. */
  curl_multi_cleanup(c->multi);
  c->multi = NULL;
  while (c->socks) sock_close(c, c->socks);
  for (int i = 0; i < c->nfree; i++) curl_easy_cleanup(c->free_easy[i]);
  c->nfree = 0;
  curl_global_cleanup();
  uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

int http_request_start(http_client *c, const http_request_opts *o, http_request **out) {
  if (out) *out = NULL;
  if (!c || c->closing || !o || !o->url || !o->method || !o->on_done) return AW_EINVAL;
  http_request *r = calloc(1, sizeof *r);
  if (!r) return AW_ENOMEM;
  r->c = c;
  r->easy = c->nfree ? c->free_easy[--c->nfree] : curl_easy_init();
  if (!r->easy) {
    free(r);
    return AW_ENOMEM;
  }
  buf_init(&r->body, o->max_body ? o->max_body : 4u << 20);
  r->retry = o->retry;
  r->idempotent = o->idempotent;
  r->idle_ms = o->idle_timeout_ms > 0 ? o->idle_timeout_ms : 0;
  r->on_data = o->on_data;
  r->max_stream = o->max_stream;
  r->on_header = o->on_header;
  r->on_done = o->on_done;
  r->opaque = o->opaque;
  r->attempts = 1;
  reset_attempt(r);

  CURL *e = r->easy;
  int bad = 0;
  bad |= curl_easy_setopt(e, CURLOPT_URL, o->url) != CURLE_OK;
  bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
  curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  if (c->verbose) {
    curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(e, CURLOPT_DEBUGDATA, c);
    curl_easy_setopt(e, CURLOPT_VERBOSE, 1L);
  }
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_USERAGENT, c->user_agent);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  /* curl's 16 KiB default receive buffer per handle would be most of an
   * in-flight turn's memory (measured against the simulator: ~22 KiB of heap
   * per streaming turn with an 8 KiB buffer,
   * ~18 KiB with 4 KiB).  SSE events are small, and a rare multi-MiB list
   * only costs more read calls. */
  curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 4096L);
  if (o->headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, (struct curl_slist *)o->headers);
  if (o->timeout_ms > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
  long ct = o->connect_timeout_ms;
  if (ct <= 0) ct = (o->timeout_ms > 0 && o->timeout_ms < 10000) ? o->timeout_ms : 10000;
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ct);
  if (strcmp(o->method, "GET") == 0) {
    curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  } else if (strcmp(o->method, "POST") == 0) {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
  } else {
    bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method) != CURLE_OK;
  }
  if (o->form) {
    int frc = strcmp(o->method, "POST") || o->body ? AW_EINVAL : form_build(r, o->form, o->nform);
    if (frc) {
      recycle_easy(c, r->easy);
      curl_mime_free(r->mime);
      free(r->src);
      free(r);
      return frc;
    }
  } else if ((o->body || strcmp(o->method, "POST") == 0) && !o->idempotent) {
    size_t n = o->body ? o->body_len : 0;
    r->send = malloc(n ? n : 1);
    if (!r->send) {
      bad = 1;
    } else {
      if (n) memcpy(r->send, o->body, n);
      r->send_len = n;
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
      curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
      curl_easy_setopt(e, CURLOPT_READDATA, r);
      curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
      curl_easy_setopt(e, CURLOPT_SEEKDATA, r);
    }
  } else if (o->body || strcmp(o->method, "POST") == 0) {
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(o->body ? o->body_len : 0));
    bad |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body ? o->body : "") != CURLE_OK;
  }
  if (bad) {
    recycle_easy(c, r->easy);
    free(r->send);
    curl_mime_free(r->mime);
    free(r->src);
    free(r);
    return AW_EINVAL;
  }
  if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
    recycle_easy(c, r->easy);
    free(r->send);
    curl_mime_free(r->mime);
    free(r->src);
    free(r);
    return AW_ENOMEM;
  }
  r->in_multi = 1;
  list_push(&c->live, r);
  c->pending++;
  if (start_idle_watch(r) != AW_OK) {
    req_release(r);
    return AW_ENOMEM;
  }
  if (out) *out = r;
  return AW_OK;
}

void http_request_cancel(http_request *r) {
  if (!r || r->cancelled || r->state == R_DONE) return;
  http_client *c = r->c;
  r->cancelled = 1;
  if (c->depth > 0 && r->in_multi) {
    /* Inside curl: the write callback now returns 0; drive() removes it. */
    list_unlink(&c->live, r);
    list_push(&c->zombies, r);
    r->zombie = 1;
    return;
  }
  req_release(r);
}

size_t http_client_pending(const http_client *c) { return c ? c->pending : 0; }

int http_request_waiting(const http_request *r) { return r && r->state == R_WAIT_RETRY; }

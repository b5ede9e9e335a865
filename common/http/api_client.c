/* api_client.c -- OpenAI-style API calls over http_client (see api_client.h).
 *
 * A call costs one small allocation (this struct plus its path for error
 * messages) on top of the http request; a stream adds an SSE parser whose
 * buffers hold only the event being parsed.  The JSON of a response is
 * parsed once, handed to the callback, and freed right after it: callers
 * copy what they keep.
 *
 * With a rate gate (cfg.gate, api_gate.h) a call first waits for the
 * gate's grant; meanwhile it keeps its URL and body in the same allocation
 * (one copy of the body per call, only when a gate is configured), and its
 * response heads are read for the x-ratelimit-* headers, which go back to
 * the gate.
 */
#include "api_client.h"

#include <curl/curl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_client.h"
#include "sse.h"

struct api_client {
  http_client *http;
  struct curl_slist *headers;
  struct curl_slist *form_headers; /* the same without Content-Type (curl
                                      sets multipart/form-data; boundary=) */
  char *base_url;  /* without trailing '/' */
  const char *base_path; /* points into base_url, "" if none */
  api_config cfg;  /* numbers only; strings are not kept */
  size_t pending;
  api_call *calls; /* every call in flight, so free can cancel them */
  uv_loop_t *loop;  /* the loop it runs on (api_client_loop) */
};

struct api_call {
  api_client *c;
  api_call *prev, *next;
  http_request *req;
  api_done_cb on_done;
  api_event_cb on_event;
  api_data_cb on_raw;  /* a download: the 2xx body's bytes, as they come */
  size_t max_raw;      /* its cap (0: none) */
  const http_form_part *form; /* an upload's parts (borrowed) */
  size_t nform;
  void *opaque;
  sse_parser sse;
  int streaming;
  int idempotent;  /* 0: an outcome that may have been applied is AW_EAMBIGUOUS */
  int events;
  int stream_err;  /* AW_ETOOBIG from the SSE parser, AW_ECANCELLED by on_event */
  int in_feed;     /* inside sse_feed: freeing must wait */
  int cancelled;
  int in_done;
  uint64_t started_ns; /* uv_hrtime() at the start, for the observer */
  /* The rate gate (cfg.gate; all zero without one): */
  void *ticket;        /* the pending acquire; NULL once granted */
  const char *url;     /* what is sent once granted (into path[]) */
  const char *body;    /* into path[], or NULL */
  size_t body_len;
  uint64_t sent_ns;    /* uv_hrtime() when it was handed to http_client */
  int heads;           /* final response heads read (one per attempt answered) */
  int head_status;     /* the status of the head being read */
  rlh_info rl;         /* its rate-limit headers */
  char cls[API_GATE_CLASS_MAX];
  char method[8];
  char path[]; /* base path + path, without the query, for messages; with a
                  gate, then the URL and the body, each NUL-terminated */
};

void api_config_default(api_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->request_timeout_ms = 30000;
  cfg->stream_idle_timeout_ms = 60000;
  retry_policy_default(&cfg->retry);
  cfg->max_body_bytes = 4u << 20;
  cfg->max_event_bytes = 1u << 20;
}

static int add_header(struct curl_slist **l, const char *name, const char *value) {
  size_t n = strlen(name) + strlen(value) + 3;
  char *h = malloc(n);
  if (!h) return AW_ENOMEM;
  snprintf(h, n, "%s: %s", name, value);
  struct curl_slist *nl = curl_slist_append(*l, h);
  /* curl copies the string; wipe ours since it may hold the key. */
  memset(h, 0, n);
  free(h);
  if (!nl) return AW_ENOMEM;
  *l = nl;
  return AW_OK;
}

/* A header value must not smuggle in another header. */
static int header_safe(const char *v) { return v && !strpbrk(v, "\r\n"); }

int api_client_new(uv_loop_t *loop, const api_config *cfg, api_client **out, char *errstr,
                   size_t errstr_size) {
  if (!cfg || !cfg->base_url || !cfg->base_url[0])
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "api: base_url is required");
  if (strncmp(cfg->base_url, "http://", 7) && strncmp(cfg->base_url, "https://", 8))
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "api: base_url must be http(s)://...");
  if (!cfg->api_key || !cfg->api_key[0] || !header_safe(cfg->api_key))
    return aw_seterr(AW_ECONFIG, errstr, errstr_size, "api: api_key is missing or invalid");
  if ((cfg->organization && !header_safe(cfg->organization)) ||
      (cfg->project && !header_safe(cfg->project)) || (cfg->beta && !header_safe(cfg->beta)))
    return aw_seterr(AW_ECONFIG, errstr, errstr_size,
                     "api: organization/project/beta contain a line break");

  api_client *c = calloc(1, sizeof *c);
  if (!c) return aw_seterr(AW_ENOMEM, errstr, errstr_size, "api: out of memory");
  c->cfg = *cfg;
  c->loop = loop;
  c->cfg.base_url = c->cfg.api_key = c->cfg.organization = c->cfg.project = c->cfg.beta = NULL;
  if (c->cfg.max_body_bytes == 0) c->cfg.max_body_bytes = 4u << 20;
  if (c->cfg.max_event_bytes == 0) c->cfg.max_event_bytes = 1u << 20;
  c->base_url = strdup(cfg->base_url);
  if (!c->base_url) goto nomem;
  size_t bl = strlen(c->base_url);
  while (bl > 0 && c->base_url[bl - 1] == '/') c->base_url[--bl] = '\0';
  const char *host = strstr(c->base_url, "://") + 3;
  c->base_path = strchr(host, '/');
  if (!c->base_path) c->base_path = "";

  int rc = AW_OK;
  size_t kl = strlen(cfg->api_key) + 8;
  char *bearer = malloc(kl);
  if (!bearer) goto nomem;
  snprintf(bearer, kl, "Bearer %s", cfg->api_key);
  rc = add_header(&c->headers, "Authorization", bearer);
  if (!rc) rc = add_header(&c->form_headers, "Authorization", bearer);
  memset(bearer, 0, kl);
  free(bearer);
  /* Two lists that differ only in Content-Type: JSON calls, and uploads
   * (a Content-Type of ours would replace curl's multipart one). */
  for (int form = 0; form < 2 && !rc; form++) {
    struct curl_slist **l = form ? &c->form_headers : &c->headers;
    if (!rc && cfg->beta && cfg->beta[0]) rc = add_header(l, "OpenAI-Beta", cfg->beta);
    if (!rc && !form) rc = add_header(l, "Content-Type", "application/json");
    if (!rc && cfg->organization && cfg->organization[0])
      rc = add_header(l, "OpenAI-Organization", cfg->organization);
    if (!rc && cfg->project && cfg->project[0]) rc = add_header(l, "OpenAI-Project", cfg->project);
    /* No "Expect: 100-continue" round trip for larger POST bodies. */
    if (!rc) {
      struct curl_slist *nl = curl_slist_append(*l, "Expect:");
      if (nl) *l = nl;
      else rc = AW_ENOMEM;
    }
  }
  if (rc) goto nomem;

  http_client_config hc;
  http_client_config_default(&hc);
  hc.max_total_connections = cfg->max_connections;
  rc = http_client_new(loop, &hc, &c->http, errstr, errstr_size);
  if (rc) {
    curl_slist_free_all(c->headers);
    curl_slist_free_all(c->form_headers);
    free(c->base_url);
    free(c);
    return rc;
  }
  *out = c;
  return AW_OK;
nomem:
  curl_slist_free_all(c->headers);
  curl_slist_free_all(c->form_headers);
  free(c->base_url);
  free(c);
  return aw_seterr(AW_ENOMEM, errstr, errstr_size, "api: out of memory");
}

static void call_free(api_call *call) {
  api_client *c = call->c;
  if (call->prev) call->prev->next = call->next;
  else c->calls = call->next;
  if (call->next) call->next->prev = call->prev;
  c->pending--;
  if (call->streaming) sse_free(&call->sse);
  free(call);
}

void api_client_free(api_client *c) {
  if (!c) return;
  for (api_call *call = c->calls, *next; call; call = next) {
    next = call->next;
    api_call_cancel(call);
  }
  http_client_free(c->http);
  curl_slist_free_all(c->headers);
  curl_slist_free_all(c->form_headers);
  free(c->base_url);
  free(c);
}

size_t api_client_pending(const api_client *c) { return c ? c->pending : 0; }

const char *api_client_base_path(const api_client *c) { return c->base_path; }

uv_loop_t *api_client_loop(const api_client *c) { return c->loop; }

/* An id segment: a known id prefix, or a digit anywhere (see api_route). */
static int segment_is_id(const char *s, size_t n) {
  static const char *const prefixes[] = {"asst_", "thread_", "msg_", "run_", "step_", "file_",
                                         "vs_",   "call_",   "resp_", "conv_", "file-", "vsfb_"};
  for (size_t i = 0; i < n; i++)
    if (s[i] >= '0' && s[i] <= '9') return 1;
  for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
    size_t pl = strlen(prefixes[i]);
    if (n >= pl && !memcmp(s, prefixes[i], pl)) return 1;
  }
  return 0;
}

/* Append n bytes of p to out[*k], keeping room for the NUL; 1 if cut short. */
static int route_put(char *out, size_t cap, size_t *k, const char *p, size_t n) {
  size_t room = cap - 1 - *k;
  size_t m = n < room ? n : room;
  memcpy(out + *k, p, m);
  *k += m;
  return m < n;
}

int api_route(const char *method, const char *path, char *out, size_t n) {
  if (!out || n == 0) return AW_EINVAL;
  size_t k = 0;
  int cut = 0;
  if (!method) method = "";
  if (!path) path = "";
  cut |= route_put(out, n, &k, method, strlen(method));
  cut |= route_put(out, n, &k, " ", 1);
  size_t end = strcspn(path, "?#");
  for (size_t i = 0; i < end;) {
    if (path[i] == '/') {
      cut |= route_put(out, n, &k, "/", 1);
      i++;
      continue;
    }
    size_t len = strcspn(path + i, "/?#");
    if (segment_is_id(path + i, len)) cut |= route_put(out, n, &k, "{id}", 4);
    else cut |= route_put(out, n, &k, path + i, len);
    i += len;
  }
  out[k] = '\0';
  return cut ? AW_ETOOBIG : AW_OK;
}

void api_call_cancel(api_call *call) {
  if (!call || call->cancelled || call->in_done) return;
  call->cancelled = 1;
  if (call->ticket) {
    const api_gate *g = call->c->cfg.gate;
    g->cancel(g->self, call->ticket);
    call->ticket = NULL;
  }
  http_request_cancel(call->req);
  call->req = NULL;
  if (!call->in_feed) call_free(call);
}

/* ---- responses ------------------------------------------------------------ */

static int status_err(int status) {
  if (status >= 200 && status < 300) return AW_OK;
  if (status == 429) return AW_ERATELIMIT;
  if (status >= 500) return AW_EHTTP5XX;
  if (status >= 400) return AW_EHTTP4XX;
  return AW_EIO; /* 1xx/3xx: we follow no redirects */
}

/* A call that creates something (not idempotent) failed: could the API have
 * applied it anyway?  Not after 429 or another 4xx (the API judged and
 * refused it), not when the request never left (hr->sent == 0), not when our
 * caller stopped the stream; yes after a 5xx, a timeout or reset after
 * sending, a dropped stream, a 2xx whose body we could not read. */
static int maybe_applied(const api_call *call, const http_response *hr, int err) {
  if (call->idempotent || err == AW_OK || err == AW_ENOMEM) return 0;
  if (hr->err == AW_ECANCELLED) return call->stream_err == AW_ETOOBIG;
  if (hr->status >= 400 && hr->status < 500) return 0;
  if (hr->err) return hr->sent;
  return hr->status >= 500 || (hr->status >= 200 && hr->status < 300);
}

static void on_http_done(void *opaque, const http_response *hr) {
  api_call *call = opaque;
  api_result res;
  char code[64] = "", msg[768] = "";
  cJSON *json = NULL;
  memset(&res, 0, sizeof res);
  res.http_status = hr->status;
  res.attempts = hr->attempts;
  res.events = call->events;
  res.error_code = code;
  res.errmsg = msg;
  call->req = NULL;

  if (hr->err == AW_ECANCELLED && call->stream_err) {
    res.err = call->stream_err;
    snprintf(msg, sizeof msg, "%s %s: %s", call->method, call->path,
             call->stream_err == AW_ETOOBIG ? "stream event too large" : "stream stopped");
  } else if (hr->err) {
    res.err = hr->err;
    snprintf(msg, sizeof msg, "%s %s: %s%s", call->method, call->path,
             hr->err == AW_ETIMEDOUT ? "timed out: " : hr->err == AW_ETOOBIG ? "" : "transport error: ",
             hr->errmsg);
  } else if ((res.err = status_err(hr->status)) != AW_OK) {
    api_error_format(call->method, call->path, hr->status, hr->body, hr->body_len, code, sizeof code,
                   msg, sizeof msg);
  } else if (!call->streaming && !call->on_raw) {
    json = cJSON_ParseWithLength(hr->body, hr->body_len);
    if (!json) {
      res.err = AW_EPARSE;
      snprintf(msg, sizeof msg, "%s %s: HTTP %d: response is not JSON", call->method, call->path,
               hr->status);
    }
    res.json = json;
  }
  if (maybe_applied(call, hr, res.err)) {
    /* The message and the HTTP status stay: they say what happened. */
    res.err = AW_EAMBIGUOUS;
    res.maybe_applied = 1;
  }
  if (call->c->cfg.observe) {
    /* Before on_done: the time is the call's, not its caller's handling. */
    char route[128];
    double secs = (double)(uv_hrtime() - call->started_ns) / 1e9;
    int cut = api_route(call->method, call->path + strlen(call->c->base_path), route, sizeof route);
    (void)cut; /* a route cut to fit is still one bounded label */
    call->c->cfg.observe(call->c->cfg.observe_opaque, route, hr->status, secs, hr->attempts);
  }
  call->in_done = 1;
  call->on_done(call->opaque, &res);
  cJSON_Delete(json);
  call_free(call);
}

static int on_sse_event(void *opaque, const sse_event *ev) {
  api_call *call = opaque;
  call->events++;
  int rc = call->on_event(call->opaque, ev->event, ev->event_len, ev->data, ev->data_len);
  if (call->cancelled) return 1;
  if (rc) call->stream_err = AW_ECANCELLED;
  return rc;
}

static int on_http_data(void *opaque, const char *data, size_t len) {
  api_call *call = opaque;
  call->in_feed = 1;
  int rc = sse_feed(&call->sse, data, len);
  call->in_feed = 0;
  if (call->cancelled) {
    /* Cancelled from on_event: the http request is gone already. */
    call_free(call);
    return 1;
  }
  if (rc == AW_ETOOBIG) call->stream_err = AW_ETOOBIG;
  else if (rc) call->stream_err = AW_ECANCELLED;
  return rc != AW_OK;
}

/* A download's bytes go to the caller as they come (no parse, no copy). */
static int on_http_raw(void *opaque, const char *data, size_t len) {
  api_call *call = opaque;
  call->in_feed = 1;
  int rc = call->on_raw(call->opaque, data, len);
  call->in_feed = 0;
  if (call->cancelled) {
    /* Cancelled from on_data: the http request is gone already. */
    call_free(call);
    return 1;
  }
  if (rc) call->stream_err = AW_ECANCELLED;
  return rc;
}

/* ---- the rate gate ------------------------------------------------------------ */

/* Response heads, line by line, of a gated call: the rate-limit headers of
 * each final head go to the gate as soon as the head is complete, before
 * the body (a stream's first event) arrives. */
static void on_http_header(void *opaque, const char *line, size_t len) {
  api_call *call = opaque;
  const api_gate *g = call->c->cfg.gate;
  if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
    rlh_init(&call->rl);
    const char *sp = memchr(line, ' ', len);
    call->head_status = sp && (size_t)(sp - line) + 4 <= len ? atoi(sp + 1) : 0;
    return;
  }
  if (len > 2 || (len > 0 && line[0] != '\r' && line[0] != '\n')) {
    (void)rlh_header(&call->rl, line, len, time(NULL));
    return;
  }
  /* The blank line: the head is complete.  Interim heads (100 Continue)
   * say nothing about limits. */
  if (call->head_status >= 100 && call->head_status < 200) return;
  /* The first answer's age is known (sent at the grant); a retry's send
   * time is http_client's: 0 then, which credits nothing (conservative). */
  long age = call->heads == 0 ? (long)((uv_hrtime() - call->sent_ns) / 1000000u) : 0;
  call->heads++;
  if (g && (call->head_status == 429 || rlh_any(&call->rl)))
    g->feedback(g->self, call->cls, call->head_status, &call->rl, age);
}

/* ---- starting calls ----------------------------------------------------------- */

/* Hand the call to http_client: at once, or when the gate granted it. */
static int send_call(api_call *call, const char *url, const char *body, size_t body_len) {
  api_client *c = call->c;
  http_request_opts o;
  memset(&o, 0, sizeof o);
  o.method = call->method;
  o.url = url;
  o.headers = call->form ? c->form_headers : c->headers;
  o.form = call->form;
  o.nform = call->nform;
  o.body = body;
  o.body_len = body_len;
  o.max_body = c->cfg.max_body_bytes;
  o.retry = &c->cfg.retry;
  o.idempotent = call->idempotent;
  o.on_done = on_http_done;
  o.opaque = call;
  if (c->cfg.gate) o.on_header = on_http_header;
  if (call->streaming) {
    o.on_data = on_http_data;
    o.idle_timeout_ms = c->cfg.stream_idle_timeout_ms;
    o.connect_timeout_ms = c->cfg.request_timeout_ms;
  } else if (call->on_raw || call->form) {
    /* A transfer's length grows with the file: no total timeout, but one
     * on silence (no byte received, or for an upload sent, for as long as
     * a request may take). */
    o.on_data = call->on_raw ? on_http_raw : NULL;
    o.max_stream = call->max_raw;
    o.idle_timeout_ms = c->cfg.request_timeout_ms;
    o.connect_timeout_ms = c->cfg.request_timeout_ms;
  } else {
    o.timeout_ms = c->cfg.request_timeout_ms;
  }
  call->sent_ns = uv_hrtime();
  return http_request_start(c->http, &o, &call->req);
}

/* The gate let a waiting call go (a later loop iteration than its start). */
static void on_gate_grant(void *opaque) {
  api_call *call = opaque;
  call->ticket = NULL;
  int rc = send_call(call, call->url, call->body, call->body_len);
  if (rc) {
    /* Nothing was sent: the call ends as a failure before sending (not
     * ambiguous), through the same path as any other outcome. */
    http_response hr;
    memset(&hr, 0, sizeof hr);
    hr.err = rc;
    hr.retry_after_ms = -1;
    hr.body = "";
    hr.attempts = 1;
    hr.errmsg = "the request could not be started";
    on_http_done(call, &hr);
  }
}

#define URL_MAX 2048

/* A transfer of files (api_upload, api_download) besides JSON: */
typedef struct xfer {
  const http_form_part *form;
  size_t nform;
  api_data_cb on_raw;
  size_t max_raw;
} xfer;

static int start_x(api_client *c, const char *method, const char *path, const char *body,
                   int idempotent, api_event_cb on_event, const xfer *x, api_done_cb on_done,
                   void *opaque, api_call **out) {
  if (out) *out = NULL;
  if (!c || !path || path[0] != '/' || !on_done) return AW_EINVAL;
  size_t qpos = strcspn(path, "?");
  size_t bp = strlen(c->base_path);
  size_t bl = strlen(c->base_url), pl = strlen(path);
  if (bl + pl + 1 > URL_MAX) return AW_EINVAL;
  const api_gate *g = c->cfg.gate;
  size_t blen = body ? strlen(body) : 0;
  /* A gated call keeps its URL and body until it is sent. */
  size_t keep = g ? bl + pl + 1 + (body ? blen + 1 : 0) : 0;
  api_call *call = calloc(1, sizeof *call + bp + qpos + 1 + keep);
  if (!call) return AW_ENOMEM;
  call->c = c;
  call->on_done = on_done;
  call->on_event = on_event;
  call->opaque = opaque;
  call->idempotent = idempotent;
  if (x) {
    call->form = x->form;
    call->nform = x->nform;
    call->on_raw = x->on_raw;
    call->max_raw = x->max_raw;
  }
  snprintf(call->method, sizeof call->method, "%s", method);
  memcpy(call->path, c->base_path, bp);
  memcpy(call->path + bp, path, qpos);
  call->path[bp + qpos] = '\0';

  char stack_url[URL_MAX];
  char *url = g ? call->path + bp + qpos + 1 : stack_url;
  memcpy(url, c->base_url, bl);
  memcpy(url + bl, path, pl + 1);
  if (on_event) {
    call->streaming = 1;
    sse_init(&call->sse, c->cfg.max_event_bytes, on_sse_event, call);
  }
  call->started_ns = uv_hrtime();
  int rc = AW_EAGAIN;
  if (g) {
    call->url = url;
    if (body) {
      char *b = url + bl + pl + 1;
      memcpy(b, body, blen + 1);
      call->body = b;
      call->body_len = blen;
    }
    api_gate_class(path, call->cls, sizeof call->cls);
    void *ticket = NULL;
    /* A gate that cannot take the call (out of memory) does not stop it:
     * it is sent at once, uncounted. */
    if (g->acquire(g->self, call->cls, call->body, call->body_len, on_gate_grant, call, &ticket) == AW_OK) {
      call->ticket = ticket;
      rc = AW_OK;
    }
  }
  if (rc != AW_OK) rc = send_call(call, url, body, blen);
  if (rc) {
    if (call->ticket) g->cancel(g->self, call->ticket);
    if (call->streaming) sse_free(&call->sse);
    free(call);
    return rc;
  }
  c->pending++;
  call->next = c->calls;
  if (c->calls) c->calls->prev = call;
  c->calls = call;
  if (out) *out = call;
  return AW_OK;
}

static int start(api_client *c, const char *method, const char *path, const char *body,
                 int idempotent, api_event_cb on_event, api_done_cb on_done, void *opaque,
                 api_call **out) {
  return start_x(c, method, path, body, idempotent, on_event, NULL, on_done, opaque, out);
}

int api_upload(api_client *c, const char *path, const http_form_part *parts, size_t nparts,
               api_done_cb on_done, void *opaque, api_call **out) {
  if (!parts || !nparts) return AW_EINVAL;
  xfer x = {.form = parts, .nform = nparts};
  /* It creates something: retried only when certainly not applied. */
  return start_x(c, "POST", path, NULL, 0, NULL, &x, on_done, opaque, out);
}

int api_download(api_client *c, const char *path, size_t max_bytes, api_data_cb on_data,
                 api_done_cb on_done, void *opaque, api_call **out) {
  if (!on_data) return AW_EINVAL;
  xfer x = {.on_raw = on_data, .max_raw = max_bytes};
  return start_x(c, "GET", path, NULL, 1, NULL, &x, on_done, opaque, out);
}

int api_request(api_client *c, const char *method, const char *path, const char *body,
                int idempotent, api_done_cb on_done, void *opaque, api_call **out) {
  if (!method) return AW_EINVAL;
  return start(c, method, path, body, idempotent, NULL, on_done, opaque, out);
}

int api_stream(api_client *c, const char *path, const char *body, api_event_cb on_event,
               api_done_cb on_done, void *opaque, api_call **out) {
  if (!on_event) return AW_EINVAL;
  /* A POST stream creates something (a run, a response, a submission):
   * retried only when certainly not applied (see api_stream's doc). */
  return start(c, "POST", path, body, 0, on_event, on_done, opaque, out);
}

int api_stream_get(api_client *c, const char *path, api_event_cb on_event, api_done_cb on_done,
                   void *opaque, api_call **out) {
  if (!on_event) return AW_EINVAL;
  /* Reading a stream again changes nothing: retried like any GET while no
   * event byte was delivered (http_client never retries after that). */
  return start(c, "GET", path, NULL, 1, on_event, on_done, opaque, out);
}

/* ---- endpoints ------------------------------------------------------------------ */

static int id_ok(const char *id) {
  if (!id) return 0;
  size_t n = strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
  return n > 0 && n < API_ID_MAX && id[n] == '\0';
}

static int order_ok(const char *o) { return !o || !strcmp(o, "asc") || !strcmp(o, "desc"); }

/* Append "&k=v" / "?k=v" query parameters; values were validated. */
static void q_add(char *p, size_t n, const char *k, const char *v) {
  size_t l = strlen(p);
  snprintf(p + l, n - l, "%c%s=%s", strchr(p, '?') ? '&' : '?', k, v);
}

static void q_limit(char *p, size_t n, int limit) {
  if (limit > 0) {
    char v[16];
    snprintf(v, sizeof v, "%d", limit);
    q_add(p, n, "limit", v);
  }
}

int api_assistants_create(api_client *c, const char *body, api_done_cb cb, void *opaque, api_call **out) {
  return start(c, "POST", "/assistants", body, 0, NULL, cb, opaque, out);
}

int api_assistants_retrieve(api_client *c, const char *id, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(id)) return AW_EINVAL;
  char p[160];
  snprintf(p, sizeof p, "/assistants/%s", id);
  return start(c, "GET", p, NULL, 1, NULL, cb, opaque, out);
}

int api_assistants_update(api_client *c, const char *id, const char *body, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(id)) return AW_EINVAL;
  char p[160];
  snprintf(p, sizeof p, "/assistants/%s", id);
  return start(c, "POST", p, body, 1, NULL, cb, opaque, out); /* same update twice is harmless */
}

int api_assistants_list(api_client *c, int limit, const char *order, const char *after, api_done_cb cb, void *opaque, api_call **out) {
  if (!order_ok(order) || (after && !id_ok(after))) return AW_EINVAL;
  char p[256] = "/assistants";
  q_limit(p, sizeof p, limit);
  if (order) q_add(p, sizeof p, "order", order);
  if (after) q_add(p, sizeof p, "after", after);
  return start(c, "GET", p, NULL, 1, NULL, cb, opaque, out);
}

int api_threads_create(api_client *c, const char *body, api_done_cb cb, void *opaque, api_call **out) {
  /* Retried like an idempotent request: threads cannot be looked up, and a
   * second empty thread is the only thing a repeat can leave (no message,
   * no run, nothing billed; the conversation's claim keeps one). */
  return start(c, "POST", "/threads", body ? body : "{}", 1, NULL, cb, opaque, out);
}

int api_threads_retrieve(api_client *c, const char *id, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(id)) return AW_EINVAL;
  char p[160];
  snprintf(p, sizeof p, "/threads/%s", id);
  return start(c, "GET", p, NULL, 1, NULL, cb, opaque, out);
}

int api_threads_delete(api_client *c, const char *id, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(id)) return AW_EINVAL;
  char p[160];
  snprintf(p, sizeof p, "/threads/%s", id);
  return start(c, "DELETE", p, NULL, 1, NULL, cb, opaque, out);
}

int api_threads_create_and_run(api_client *c, const char *body, api_event_cb on_event, api_done_cb cb, void *opaque, api_call **out) {
  if (!body) return AW_EINVAL;
  return api_stream(c, "/threads/runs", body, on_event, cb, opaque, out);
}

int api_messages_create(api_client *c, const char *thread, const char *body, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(thread) || !body) return AW_EINVAL;
  char p[160];
  snprintf(p, sizeof p, "/threads/%s/messages", thread);
  return start(c, "POST", p, body, 0, NULL, cb, opaque, out);
}

int api_messages_list(api_client *c, const char *thread, const char *run_id, const char *order, int limit, const char *after, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(thread) || (run_id && !id_ok(run_id)) || !order_ok(order) || (after && !id_ok(after)))
    return AW_EINVAL;
  char p[512];
  snprintf(p, sizeof p, "/threads/%s/messages", thread);
  if (run_id) q_add(p, sizeof p, "run_id", run_id);
  if (order) q_add(p, sizeof p, "order", order);
  q_limit(p, sizeof p, limit);
  if (after) q_add(p, sizeof p, "after", after);
  return start(c, "GET", p, NULL, 1, NULL, cb, opaque, out);
}

int api_runs_create(api_client *c, const char *thread, const char *body, api_event_cb on_event, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(thread) || !body) return AW_EINVAL;
  char p[160];
  snprintf(p, sizeof p, "/threads/%s/runs", thread);
  return api_stream(c, p, body, on_event, cb, opaque, out);
}

int api_runs_retrieve(api_client *c, const char *thread, const char *run, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(thread) || !id_ok(run)) return AW_EINVAL;
  char p[256];
  snprintf(p, sizeof p, "/threads/%s/runs/%s", thread, run);
  return start(c, "GET", p, NULL, 1, NULL, cb, opaque, out);
}

int api_runs_list(api_client *c, const char *thread, int limit, const char *order, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(thread) || !order_ok(order)) return AW_EINVAL;
  char p[256];
  snprintf(p, sizeof p, "/threads/%s/runs", thread);
  q_limit(p, sizeof p, limit);
  if (order) q_add(p, sizeof p, "order", order);
  return start(c, "GET", p, NULL, 1, NULL, cb, opaque, out);
}

int api_runs_submit_tool_outputs(api_client *c, const char *thread, const char *run, const char *body, api_event_cb on_event, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(thread) || !id_ok(run) || !body) return AW_EINVAL;
  char p[256];
  snprintf(p, sizeof p, "/threads/%s/runs/%s/submit_tool_outputs", thread, run);
  return api_stream(c, p, body, on_event, cb, opaque, out);
}

int api_runs_cancel(api_client *c, const char *thread, const char *run, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(thread) || !id_ok(run)) return AW_EINVAL;
  char p[256];
  snprintf(p, sizeof p, "/threads/%s/runs/%s/cancel", thread, run);
  return start(c, "POST", p, NULL, 1, NULL, cb, opaque, out);
}

int api_run_steps_list(api_client *c, const char *thread, const char *run, int limit, const char *order, const char *after, api_done_cb cb, void *opaque, api_call **out) {
  if (!id_ok(thread) || !id_ok(run) || !order_ok(order) || (after && !id_ok(after))) return AW_EINVAL;
  char p[512];
  snprintf(p, sizeof p, "/threads/%s/runs/%s/steps", thread, run);
  q_limit(p, sizeof p, limit);
  if (order) q_add(p, sizeof p, "order", order);
  if (after) q_add(p, sizeof p, "after", after);
  return start(c, "GET", p, NULL, 1, NULL, cb, opaque, out);
}

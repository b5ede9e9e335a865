/* sim_http.c -- MHD daemon, request contexts, delayed and streamed replies. */
#include "sim_http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "log.h"
#include "sim_api.h"
#include "sim_faults.h"
#include "sim_files.h"
#include "sim_record.h"
#include "sim_timer.h"

#define BODY_MAX (1u << 20)

/* One per request (MHD's *con_cls). */
typedef struct hreq {
  buf body;
  int too_big;
  int have_reply; /* reply computed, waiting out latency_ms */
  sapi_reply reply;
  sfiles_upload *up; /* a multipart POST /v1/files: its body goes to disk, not to body */
} hreq;

static struct MHD_Daemon *g_d;
static uint16_t g_port;
static volatile int g_stopping;
static long g_suspended; /* connections we suspended and not yet resumed */

int shttp_shutting_down(void) { return __atomic_load_n(&g_stopping, __ATOMIC_RELAXED); }
uint16_t shttp_port(void) { return g_port; }

static void resume_cb(void *arg, int shutting_down) {
  (void)shutting_down; /* resumed either way: a suspended connection blocks MHD_stop_daemon */
  __atomic_fetch_sub(&g_suspended, 1, __ATOMIC_RELAXED);
  MHD_resume_connection(arg);
}

int shttp_suspend_until(struct MHD_Connection *c, int64_t due_ms) {
  if (shttp_shutting_down()) return AW_ESTATE;
  /* Suspend first, then arm the timer: the resume can then never come
   * before the suspend, whatever the timer thread does meanwhile. */
  MHD_suspend_connection(c);
  __atomic_fetch_add(&g_suspended, 1, __ATOMIC_RELAXED);
  int rc = stimer_add(due_ms, resume_cb, c);
  if (rc != AW_OK) {
    __atomic_fetch_sub(&g_suspended, 1, __ATOMIC_RELAXED);
    MHD_resume_connection(c);
  }
  return rc;
}

static const char *arg_lookup(void *cls, const char *key) {
  return MHD_lookup_connection_value(cls, MHD_GET_ARGUMENT_KIND, key);
}

static enum MHD_Result add_query(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
  (void)kind;
  cJSON_AddItemToObject(cls, key, value ? cJSON_CreateString(value) : cJSON_CreateNull());
  return MHD_YES;
}

/* The --record line for this request, without status/response yet. */
static cJSON *record_start(struct MHD_Connection *c, const char *method, const char *url, const hreq *h) {
  cJSON *rec = cJSON_CreateObject();
  cJSON_AddStringToObject(rec, "method", method);
  cJSON_AddStringToObject(rec, "path", url);
  cJSON *query = cJSON_AddObjectToObject(rec, "query");
  MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_query, query);
  /* An upload is recorded as its form fields and the file's size and hash. */
  cJSON *body = h->up ? sfiles_upload_record(h->up)
                      : h->body.len ? cJSON_ParseWithLength(h->body.data, h->body.len) : NULL;
  cJSON_AddItemToObject(rec, "request_body", body ? body : cJSON_CreateNull());
  return rec;
}

/* Queue the computed reply on c. */
static enum MHD_Result send_reply(struct MHD_Connection *c, hreq *h) {
  sapi_reply *r = &h->reply;
  struct MHD_Response *resp;
  if (r->drop) {
    /* apply_then_fail with status 0: the request took effect, the client
     * sees the connection close without a status line. */
    sstats_count(r->route, 0);
    return MHD_NO;
  }
  if (r->rstream) {
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4 * 1024, srstream_read, r->rstream, srstream_free);
    if (!resp) return MHD_NO; /* notify_completed frees the reader */
    srstream_attach(r->rstream, c);
    MHD_add_response_header(resp, "Content-Type", srstream_content_type(r->rstream));
    r->rstream = NULL;
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
  } else if (r->cstream) {
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4 * 1024, scstream_read, r->cstream, scstream_free);
    if (!resp) return MHD_NO; /* notify_completed frees the reader */
    scstream_attach(r->cstream, c);
    MHD_add_response_header(resp, "Content-Type", scstream_content_type(r->cstream));
    r->cstream = NULL;
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
  } else if (r->has_fd) {
    /* A file's content: the kernel sends it from the descriptor. */
    resp = MHD_create_response_from_fd64(r->fd_size, r->fd);
    if (!resp) return MHD_NO; /* notify_completed closes the fd */
    r->has_fd = 0;
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    if (r->rec) {
      cJSON_AddNumberToObject(r->rec, "status", r->status);
      /* The bytes are not recorded (a file can be 512 MB): their size stands in, as
       * the string the spec types downloadFile's answer as. */
      char desc[64];
      snprintf(desc, sizeof desc, "<%llu bytes>", (unsigned long long)r->fd_size);
      cJSON_AddStringToObject(r->rec, "response_body", desc);
      cJSON_AddItemToObject(r->rec, "stream_events", cJSON_CreateArray());
      srec_write(r->rec);
      r->rec = NULL;
    }
  } else if (r->stream) {
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4 * 1024, sstream_read, r->stream, sstream_free);
    if (!resp) return MHD_NO; /* notify_completed frees the stream */
    sstream_attach(r->stream, c);
    r->stream = NULL; /* the response owns it now: sstream_free runs when it is done */
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
  } else {
    if (r->rec) {
      cJSON_AddNumberToObject(r->rec, "status", r->status);
      cJSON *b = r->body ? cJSON_Parse(r->body) : NULL;
      cJSON_AddItemToObject(r->rec, "response_body", b ? b : cJSON_CreateNull());
      cJSON_AddItemToObject(r->rec, "stream_events", cJSON_CreateArray());
      srec_write(r->rec);
      r->rec = NULL;
    }
    size_t len = r->body ? strlen(r->body) : 0;
    resp = MHD_create_response_from_buffer(len, r->body ? r->body : (void *)"", r->body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    r->body = NULL;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (r->retry_after_s >= 0) {
      char v[16];
      snprintf(v, sizeof v, "%d", r->retry_after_s);
      MHD_add_response_header(resp, "Retry-After", v);
    }
  }
  char rl_name[64], rl_value[32];
  for (int i = 0; srl_header(&r->rl, i, rl_name, sizeof rl_name, rl_value, sizeof rl_value); i++)
    MHD_add_response_header(resp, rl_name, rl_value);
  sstats_count(r->route, r->status);
  enum MHD_Result ok = MHD_queue_response(c, (unsigned)r->status, resp);
  MHD_destroy_response(resp);
  return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)cls;
  (void)version;
  hreq *h = *con_cls;
  if (!h) {
    h = calloc(1, sizeof *h);
    if (!h) return MHD_NO;
    buf_init(&h->body, BODY_MAX);
    h->up = sfiles_upload_begin(c, method, url);
    *con_cls = h;
    return MHD_YES;
  }
  if (*upload_size && h->up) {
    sfiles_upload_feed(h->up, upload, *upload_size);
    *upload_size = 0;
    return MHD_YES;
  }
  if (*upload_size) {
    if (!h->too_big && buf_append(&h->body, upload, *upload_size) != AW_OK) h->too_big = 1;
    *upload_size = 0;
    return MHD_YES;
  }
  if (h->have_reply) return send_reply(c, h); /* resumed after latency_ms */
  if (h->up) sfiles_upload_finish(h->up);

  sapi_req q = {
      .method = method,
      .path = url,
      .body = h->body.data,
      .body_len = h->body.len,
      .body_too_big = h->too_big,
      .auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization"),
      .beta = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "OpenAI-Beta"),
      .arg = arg_lookup,
      .arg_cls = c,
      .upload = h->up,
  };
  h->reply.rec = srec_enabled() ? record_start(c, method, url, h) : NULL;
  sapi_handle(&q, &h->reply);
  h->have_reply = 1;
  sfault_cfg f;
  sfault_get(&f);
  /* Latency models the API, not the test hooks: /admin answers at once. */
  if (f.latency_ms > 0 && strncmp(url, "/v1/", 4) == 0 &&
      shttp_suspend_until(c, stimer_now_ms() + f.latency_ms) == AW_OK)
    return MHD_YES;
  return send_reply(c, h);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode why) {
  (void)cls;
  (void)c;
  (void)why;
  hreq *h = *con_cls;
  if (!h) return;
  /* A reply never sent (client gone while delayed): release its parts. */
  if (h->reply.stream) sstream_free(h->reply.stream);
  if (h->reply.rstream) srstream_free(h->reply.rstream);
  if (h->reply.cstream) scstream_free(h->reply.cstream);
  if (h->reply.has_fd) close(h->reply.fd);
  sfiles_upload_free(h->up);
  cJSON_Delete(h->reply.rec);
  free(h->reply.body);
  buf_free(&h->body);
  free(h);
  *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n && msg[n - 1] == '\n') msg[--n] = '\0';
  log_warn(NULL, "microhttpd: %s", msg);
}

int shttp_start(const shttp_opts *o, char *err, size_t n) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  /* Not MHD_USE_TURBO: it gains ~15% requests/s but skips the shutdown()
   * that makes an aborted stream (drop_next_n_streams) visible to the
   * client at once; with it the client saw the drop only at its timeout. */
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, o->host, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(o->port);
  } else if (inet_pton(AF_INET6, o->host, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(o->port);
    flags |= MHD_USE_IPv6;
  } else {
    return aw_seterr(AW_ECONFIG, err, n, "--host must be an IPv4 or IPv6 address, got '%s'", o->host);
  }
  /* Built as an array so the pool size is passed only when there is a
   * pool (MHD warns about a size of 0), and the logger comes first. */
  struct MHD_OptionItem opts[12];
  int k = 0;
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)mhd_log, NULL};
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &ss};
  if (o->threads > 1) opts[k++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)o->threads, NULL};
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, (intptr_t)o->max_conns, NULL};
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, 120, NULL};
  /* MHD's per-connection pool (read buffer, headers, write buffer).  It
   * is touched in full by a stream, so it is the bulk of what an open
   * stream costs: 16 KiB holds any sane request head and a chunk of
   * events, and keeps 10,000 streams under ~200 MiB of pools (the body
   * goes to our own capped buffer, not the pool). */
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT, 16 * 1024, NULL};
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096, NULL};
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL};
  opts[k++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
  g_d = MHD_start_daemon(flags, o->port, NULL, NULL, on_request, NULL, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
  if (!g_d) return aw_seterr(AW_EIO, err, n, "cannot listen on %s:%u", o->host, (unsigned)o->port);
  const union MHD_DaemonInfo *info = MHD_get_daemon_info(g_d, MHD_DAEMON_INFO_BIND_PORT);
  g_port = info ? info->port : o->port;
  return AW_OK;
}

void shttp_stop(void) {
  if (!g_d) return;
  __atomic_store_n(&g_stopping, 1, __ATOMIC_RELAXED);
  MHD_quiesce_daemon(g_d);
  /* Resume everything we suspended; streams then see g_stopping and end. */
  stimer_drain();
  for (int i = 0; i < 500 && __atomic_load_n(&g_suspended, __ATOMIC_RELAXED) > 0; i++) usleep(10 * 1000);
  /* MHD processes resumes in its own thread: give it a beat before
   * MHD_stop_daemon, which refuses to run with suspended connections. */
  usleep(50 * 1000);
  MHD_stop_daemon(g_d);
  g_d = NULL;
}

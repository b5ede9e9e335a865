/* gen_files.c -- fetch the files a turn generated (see gen_files.h).
 *
 * One file at a time: metadata, then (when it may fit) the content, then
 * the next file.  A turn generates one or two files in practice, so running
 * them one after another costs a round trip or two more than running them
 * side by side, and keeps at most one request and one inline buffer in
 * flight; the end of a turn is not latency-critical to the millisecond.
 *
 * Everything goes through step(), which starts the next request of the
 * current file or moves to the next file; a request that cannot even start
 * marks its file failed and step() goes on.  The first step runs from a
 * zero-delay timer, so no path -- not even n == 0 or every request refused
 * before I/O -- calls back inside gf_start.  The timer also carries the
 * fetch's lifetime: gf_free cancels what is in flight and closes it, and
 * the memory goes in its close callback, which is what makes gf_free safe
 * inside the done callback (the result stays valid until the callback
 * returns) and inside the timer's own callback.
 */
#include "gen_files.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"
#include "containers.h"
#include "files_api.h"

typedef enum { PH_META = 0, PH_CONTENT, PH_DONE } phase;

typedef struct item {
  char *file_id, *container_id, *filename; /* owned; filename NULL: unknown */
  long long bytes;                         /* -1: unknown */
  buf content;                             /* inline bytes, max inline_max */
  int is_inline;
  int over; /* the content passed inline_max while arriving */
  phase ph;
} item;

struct gf_fetch {
  api_client *c;
  gf_done_cb cb;
  void *opaque;
  size_t inline_max;
  item items[GF_MAX_FILES];
  contract_file files[GF_MAX_FILES];
  size_t n, cur, failed, dropped;
  fapi_op *fop; /* the request in flight, one of the two */
  ctr_op *cop;
  uv_timer_t kick;
  int freed;
};

const char *gf_media_type(const char *filename) {
  static const struct {
    const char *ext, *type;
  } T[] = {{"png", "image/png"},
           {"jpg", "image/jpeg"},
           {"jpeg", "image/jpeg"},
           {"gif", "image/gif"},
           {"webp", "image/webp"},
           {"csv", "text/csv"},
           {"json", "application/json"},
           {"txt", "text/plain"},
           {"md", "text/markdown"},
           {"pdf", "application/pdf"},
           {"html", "text/html"},
           {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}};
  const char *dot = filename ? strrchr(filename, '.') : NULL;
  if (dot && !strchr(dot, '/'))
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
      if (!strcasecmp(dot + 1, T[i].ext)) return T[i].type;
  return "application/octet-stream";
}

static int id_ok(const char *id) {
  if (!id) return 0;
  size_t n = strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
  return n > 0 && n < API_ID_MAX && id[n] == '\0';
}

/* The last path component of a name ("/mnt/data/chart.png" -> "chart.png"),
 * bounded like the Files API's names; NULL for none. */
static char *name_dup(const char *name) {
  if (!name) return NULL;
  const char *s = strrchr(name, '/');
  s = s ? s + 1 : name;
  if (!*s) return NULL;
  size_t n = strnlen(s, FAPI_NAME_MAX - 1);
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static void fetch_release(gf_fetch *f) {
  for (size_t i = 0; i < f->n; i++) {
    free(f->items[i].file_id);
    free(f->items[i].container_id);
    free(f->items[i].filename);
    buf_free(&f->items[i].content);
  }
  free(f);
}

static void on_closed(uv_handle_t *h) { fetch_release(h->data); }

void gf_free(gf_fetch *f) {
  if (!f || f->freed) return;
  f->freed = 1;
  fapi_cancel(f->fop); /* no-ops inside their own callbacks */
  ctr_cancel(f->cop);
  f->fop = NULL;
  f->cop = NULL;
  uv_timer_stop(&f->kick);
  uv_close((uv_handle_t *)&f->kick, on_closed);
}

static void deliver(gf_fetch *f) {
  for (size_t i = 0; i < f->n; i++) {
    item *it = &f->items[i];
    f->files[i] = (contract_file){
        .file_id = it->file_id,
        .container_id = it->container_id,
        .filename = it->filename ? it->filename : "",
        .media_type = gf_media_type(it->filename),
        .bytes = it->bytes,
        .data = it->is_inline ? (it->content.data ? (const void *)it->content.data : (const void *)"") : NULL,
        .data_len = it->is_inline ? it->content.len : 0,
    };
  }
  gf_result res = {.files = f->files, .nfiles = f->n, .failed = f->failed, .dropped = f->dropped};
  f->cb(f->opaque, &res); /* may gf_free: the memory stays until on_closed */
}

/* The current file is done (failed: counted, listed by reference). */
static void next(gf_fetch *f, int failed) {
  item *it = &f->items[f->cur];
  if (failed) {
    f->failed++;
    it->is_inline = 0;
    buf_free(&it->content);
  }
  it->ph = PH_DONE;
  f->cur++;
}

/* Learnt the size and maybe the name: download when it may fit inline. */
static void after_meta(gf_fetch *f, long long bytes, const char *name) {
  item *it = &f->items[f->cur];
  it->bytes = bytes;
  if (!it->filename) it->filename = name_dup(name); /* the annotation's name wins */
  if (f->inline_max && (bytes < 0 || (unsigned long long)bytes <= f->inline_max))
    it->ph = PH_CONTENT;
  else
    next(f, 0);
}

static void step(gf_fetch *f);

static void on_fapi_meta(void *opaque, const fapi_result *r) {
  gf_fetch *f = opaque;
  f->fop = NULL;
  if (r->err || !r->file) next(f, 1);
  else after_meta(f, r->file->bytes, r->file->filename);
  step(f);
}

static void on_ctr_meta(void *opaque, const ctr_result *r) {
  gf_fetch *f = opaque;
  f->cop = NULL;
  if (r->err || !r->file) next(f, 1);
  else after_meta(f, r->file->bytes, ctr_file_name(r->file));
  step(f);
}

static int on_content(void *opaque, const char *data, size_t len) {
  gf_fetch *f = opaque;
  item *it = &f->items[f->cur];
  /* Past inline_max buf_append fails (AW_ETOOBIG) and stops the transfer;
   * the HTTP layer's own cap normally stops it first. */
  int rc = buf_append(&it->content, data, len);
  if (rc == AW_ETOOBIG) it->over = 1;
  return rc != AW_OK;
}

static void content_done(gf_fetch *f, int err) {
  item *it = &f->items[f->cur];
  if (!err) {
    it->is_inline = 1;
    it->bytes = (long long)it->content.len; /* what was read, whatever the metadata said */
    next(f, 0);
  } else if (err == AW_ETOOBIG || (err == AW_ECANCELLED && it->over)) {
    /* Grew past the cap since its metadata was read (or its size was not
     * known): by reference, as any file over the cap; not a failure. */
    buf_free(&it->content);
    if (it->bytes >= 0 && (unsigned long long)it->bytes <= f->inline_max) it->bytes = -1;
    next(f, 0);
  } else {
    next(f, 1);
  }
}

static void on_fapi_content(void *opaque, const fapi_result *r) {
  gf_fetch *f = opaque;
  f->fop = NULL;
  content_done(f, r->err);
  step(f);
}

static void on_ctr_content(void *opaque, const ctr_result *r) {
  gf_fetch *f = opaque;
  f->cop = NULL;
  content_done(f, r->err);
  step(f);
}

static void step(gf_fetch *f) {
  while (f->cur < f->n) {
    item *it = &f->items[f->cur];
    int rc;
    if (it->ph == PH_META)
      rc = it->container_id ? ctr_retrieve(f->c, it->container_id, it->file_id, on_ctr_meta, f, &f->cop)
                            : fapi_retrieve(f->c, it->file_id, on_fapi_meta, f, &f->fop);
    else
      rc = it->container_id ? ctr_download(f->c, it->container_id, it->file_id, -1, on_content, f,
                                           f->inline_max, on_ctr_content, f, &f->cop)
                            : fapi_download(f->c, it->file_id, -1, on_content, f, f->inline_max,
                                            on_fapi_content, f, &f->fop);
    if (!rc) return; /* its callback calls step again */
    next(f, 1);
  }
  deliver(f);
}

static void on_kick(uv_timer_t *t) { step(t->data); }

/* Is id already among the items? */
static item *find(gf_fetch *f, const char *id) {
  for (size_t i = 0; i < f->n; i++)
    if (!strcmp(f->items[i].file_id, id)) return &f->items[i];
  return NULL;
}

int gf_start(api_client *c, const gf_ref *refs, size_t n, size_t inline_max, gf_done_cb cb, void *opaque,
             gf_fetch **out) {
  if (out) *out = NULL;
  if (!c || !cb || !out || (n && !refs)) return AW_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!id_ok(refs[i].file_id) || (refs[i].container_id && !id_ok(refs[i].container_id))) return AW_EINVAL;
  gf_fetch *f = calloc(1, sizeof *f);
  if (!f) return AW_ENOMEM;
  f->c = c;
  f->cb = cb;
  f->opaque = opaque;
  f->inline_max = inline_max;
  for (size_t i = 0; i < n; i++) {
    item *dup = find(f, refs[i].file_id);
    if (dup) {
      if (!dup->filename) dup->filename = name_dup(refs[i].filename); /* NULL: still unknown */
      continue;
    }
    if (f->n == GF_MAX_FILES) {
      f->dropped++;
      continue;
    }
    item *it = &f->items[f->n++];
    it->bytes = -1;
    buf_init(&it->content, inline_max);
    it->file_id = strdup(refs[i].file_id);
    it->container_id = refs[i].container_id ? strdup(refs[i].container_id) : NULL;
    it->filename = name_dup(refs[i].filename);
    if (!it->file_id || (refs[i].container_id && !it->container_id)) goto nomem;
  }
  if (uv_timer_init(api_client_loop(c), &f->kick) != 0) goto nomem;
  f->kick.data = f;
  if (uv_timer_start(&f->kick, on_kick, 0, 0) != 0) {
    gf_free(f);
    return AW_ENOMEM;
  }
  *out = f;
  return AW_OK;
nomem:
  fetch_release(f);
  return AW_ENOMEM;
}

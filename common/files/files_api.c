/* files_api.c -- the Files API client (see files_api.h).
 *
 * One fapi_op per operation: it holds the api_call in flight (for cancel)
 * and, for an upload, everything needed to send it again or to look for
 * it: copies of the strings, the two form parts (purpose, file), the
 * content's source, the time the first attempt started.  An op costs one
 * allocation of about 1.5 KB; the content itself is never copied.
 */
#include "files_api.h"

#include "fd_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOOKUP_PAGE 100  /* files per lookup page (the API allows 10,000) */
#define LOOKUP_PAGES 10  /* pages read at most: newest 1,000 files of the purpose */

enum { OP_SIMPLE = 0, OP_UPLOAD, OP_DOWNLOAD };

struct fapi_op {
  api_client *c;
  api_call *call;
  fapi_done_cb cb;
  void *opaque;
  int kind;
  int in_cb;
  /* upload */
  char filename[FAPI_NAME_MAX];
  char purpose[32];
  char type[128];
  http_form_part parts[2];
  int fd, own_fd;
  size_t len;
  int max_ambiguous, ambiguous, uploads, pages;
  long window_s;
  time_t started;      /* wall clock at the first attempt (created_at is wall clock) */
  char first_err[512]; /* what made the outcome unknown */
  int first_status;
  /* download */
  int out_fd;
  api_data_cb on_data;
  void *data_opaque;
  size_t bytes;
  int write_errno;
};

static const char *const PURPOSES[] = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"};

static int purpose_ok(const char *p) {
  for (size_t i = 0; i < sizeof PURPOSES / sizeof PURPOSES[0]; i++)
    if (!strcmp(p, PURPOSES[i])) return 1;
  return 0;
}

static int id_ok(const char *id) {
  if (!id) return 0;
  size_t n = strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
  return n > 0 && n < API_ID_MAX && id[n] == '\0';
}

void fapi_upload_opts_default(fapi_upload_opts *o) {
  memset(o, 0, sizeof *o);
  o->fd = -1;
  o->max_ambiguous = 2;
  o->window_s = 120;
}

int fapi_status_err(int err, int http_status) {
  if (http_status == 413) return AW_ETOOBIG;
  if (http_status == 401) return AW_ECONFIG;
  if (http_status == 404) return AW_ENOTFOUND;
  return err;
}

static void copy_str(char *dst, size_t n, const cJSON *v) {
  snprintf(dst, n, "%s", cJSON_IsString(v) && v->valuestring ? v->valuestring : "");
}

int fapi_file_parse(const cJSON *obj, fapi_file *out) {
  memset(out, 0, sizeof *out);
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
  const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(obj, "bytes");
  const cJSON *created = cJSON_GetObjectItemCaseSensitive(obj, "created_at");
  if (!cJSON_IsString(id) || !id_ok(id->valuestring) || !cJSON_IsNumber(bytes) || !cJSON_IsNumber(created))
    return AW_EPARSE;
  copy_str(out->id, sizeof out->id, id);
  copy_str(out->filename, sizeof out->filename, cJSON_GetObjectItemCaseSensitive(obj, "filename"));
  copy_str(out->purpose, sizeof out->purpose, cJSON_GetObjectItemCaseSensitive(obj, "purpose"));
  copy_str(out->status, sizeof out->status, cJSON_GetObjectItemCaseSensitive(obj, "status"));
  out->bytes = (long long)bytes->valuedouble;
  out->created_at = (long long)created->valuedouble;
  return AW_OK;
}

/* ---- ops -------------------------------------------------------------------- */

static fapi_op *op_new(api_client *c, int kind, fapi_done_cb cb, void *opaque) {
  fapi_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->c = c;
  op->kind = kind;
  op->cb = cb;
  op->opaque = opaque;
  op->fd = op->out_fd = -1;
  return op;
}

static void op_free(fapi_op *op) {
  if (op->own_fd && op->fd >= 0) close(op->fd);
  free(op);
}

/* Hand the result over, then release the op (the caller's callback may not
 * cancel it: in_cb). */
static void finish(fapi_op *op, fapi_result *res) {
  res->uploads = op->uploads;
  res->bytes = op->bytes;
  if (!res->errmsg) res->errmsg = "";
  op->in_cb = 1;
  op->cb(op->opaque, res);
  op_free(op);
}

static void finish_api(fapi_op *op, const api_result *ar) {
  fapi_result res;
  memset(&res, 0, sizeof res);
  res.err = fapi_status_err(ar->err, ar->http_status);
  res.http_status = ar->http_status;
  res.errmsg = ar->errmsg;
  res.json = ar->json;
  char msg[800];
  if (ar->err && ar->http_status == 413) {
    snprintf(msg, sizeof msg, "file too large: %s", ar->errmsg);
    res.errmsg = msg;
  }
  fapi_file f;
  if (!ar->err && ar->json && op->kind != OP_DOWNLOAD &&
      cJSON_GetObjectItemCaseSensitive(ar->json, "bytes") && fapi_file_parse(ar->json, &f) == AW_OK)
    res.file = &f;
  finish(op, &res);
}

void fapi_cancel(fapi_op *op) {
  if (!op || op->in_cb) return;
  api_call_cancel(op->call);
  op_free(op);
}

static void on_simple_done(void *opaque, const api_result *ar) {
  fapi_op *op = opaque;
  op->call = NULL;
  finish_api(op, ar);
}

static int simple(api_client *c, const char *method, const char *path, fapi_done_cb cb, void *opaque,
                  fapi_op **out) {
  if (out) *out = NULL;
  if (!c || !cb) return AW_EINVAL;
  fapi_op *op = op_new(c, OP_SIMPLE, cb, opaque);
  if (!op) return AW_ENOMEM;
  int rc = api_request(c, method, path, NULL, 1, on_simple_done, op, &op->call);
  if (rc) {
    op_free(op);
    return rc;
  }
  if (out) *out = op;
  return AW_OK;
}

int fapi_retrieve(api_client *c, const char *id, fapi_done_cb cb, void *opaque, fapi_op **out) {
  if (!id_ok(id)) return AW_EINVAL;
  char p[160];
  snprintf(p, sizeof p, "/files/%s", id);
  return simple(c, "GET", p, cb, opaque, out);
}

int fapi_delete(api_client *c, const char *id, fapi_done_cb cb, void *opaque, fapi_op **out) {
  if (!id_ok(id)) return AW_EINVAL;
  char p[160];
  snprintf(p, sizeof p, "/files/%s", id);
  return simple(c, "DELETE", p, cb, opaque, out);
}

/* "/files?purpose=..&order=..&limit=..&after=.." from validated values. */
static int list_path(char *p, size_t n, const char *purpose, int limit, const char *order, const char *after) {
  if ((purpose && !purpose_ok(purpose)) || (order && strcmp(order, "asc") && strcmp(order, "desc")) ||
      (after && !id_ok(after)) || limit < 0 || limit > 10000)
    return AW_EINVAL;
  int w = snprintf(p, n, "/files");
  char sep = '?';
  if (purpose) w += snprintf(p + w, n - (size_t)w, "%cpurpose=%s", sep, purpose), sep = '&';
  if (order) w += snprintf(p + w, n - (size_t)w, "%corder=%s", sep, order), sep = '&';
  if (limit) w += snprintf(p + w, n - (size_t)w, "%climit=%d", sep, limit), sep = '&';
  if (after) w += snprintf(p + w, n - (size_t)w, "%cafter=%s", sep, after);
  return (size_t)w < n ? AW_OK : AW_EINVAL;
}

int fapi_list(api_client *c, const char *purpose, int limit, const char *order, const char *after,
              fapi_done_cb cb, void *opaque, fapi_op **out) {
  char p[256];
  int rc = list_path(p, sizeof p, purpose, limit, order, after);
  if (rc) return rc;
  return simple(c, "GET", p, cb, opaque, out);
}

/* ---- upload ------------------------------------------------------------------- */

static int send_upload(fapi_op *op);

static void upload_failed(fapi_op *op, int err, int status, const char *msg) {
  fapi_result res;
  memset(&res, 0, sizeof res);
  res.err = err;
  res.http_status = status;
  res.errmsg = msg;
  finish(op, &res);
}

/* Is this listed file the one our ambiguous attempt may have created? */
static int is_ours(const fapi_op *op, const fapi_file *f, time_t now) {
  return !strcmp(f->filename, op->filename) && f->bytes == (long long)op->len &&
         !strcmp(f->purpose, op->purpose) && f->created_at >= (long long)op->started - op->window_s &&
         f->created_at <= (long long)now + op->window_s;
}

static int send_lookup(fapi_op *op, const char *after);

static void on_lookup_done(void *opaque, const api_result *ar) {
  fapi_op *op = opaque;
  op->call = NULL;
  char msg[1400];
  if (ar->err) {
    snprintf(msg, sizeof msg, "upload of %s: outcome unknown (%s); looking for the file failed: %s",
             op->filename, op->first_err, ar->errmsg);
    upload_failed(op, AW_EAMBIGUOUS, op->first_status, msg);
    return;
  }
  time_t now = time(NULL);
  const cJSON *data = cJSON_GetObjectItemCaseSensitive(ar->json, "data");
  const cJSON *it;
  fapi_file f, last;
  int n = 0, older = 0;
  memset(&last, 0, sizeof last);
  cJSON_ArrayForEach(it, data) {
    if (fapi_file_parse(it, &f) != AW_OK) continue;
    n++;
    last = f;
    if (is_ours(op, &f, now)) {
      fapi_result res;
      memset(&res, 0, sizeof res);
      res.http_status = ar->http_status;
      res.file = &f;
      res.json = it;
      res.found = 1;
      finish(op, &res);
      return;
    }
    if (f.created_at < (long long)op->started - op->window_s) older = 1;
  }
  /* Newest first: once a page reaches files older than the window, the
   * rest are older too. */
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ar->json, "has_more")) && n && !older &&
      ++op->pages < LOOKUP_PAGES) {
    int rc = send_lookup(op, last.id);
    if (rc) {
      snprintf(msg, sizeof msg, "upload of %s: outcome unknown (%s); the lookup could not continue (%s)",
               op->filename, op->first_err, aw_strerror(rc));
      upload_failed(op, AW_EAMBIGUOUS, op->first_status, msg);
    }
    return;
  }
  /* Certainly not stored (as far as the API shows now): send it again. */
  if (op->ambiguous < op->max_ambiguous) {
    op->ambiguous++;
    int rc = send_upload(op);
    if (!rc) return;
    snprintf(msg, sizeof msg, "upload of %s: could not be sent again (%s)", op->filename, aw_strerror(rc));
    upload_failed(op, rc, 0, msg);
    return;
  }
  snprintf(msg, sizeof msg, "upload of %s: outcome unknown after %d attempts, the file was not found: %s",
           op->filename, op->uploads, op->first_err);
  upload_failed(op, AW_EAMBIGUOUS, op->first_status, msg);
}

static int send_lookup(fapi_op *op, const char *after) {
  char p[256];
  int rc = list_path(p, sizeof p, op->purpose, LOOKUP_PAGE, "desc", after);
  if (rc) return rc;
  return api_request(op->c, "GET", p, NULL, 1, on_lookup_done, op, &op->call);
}

static void on_upload_done(void *opaque, const api_result *ar) {
  fapi_op *op = opaque;
  op->call = NULL;
  if (ar->err == AW_EAMBIGUOUS) {
    snprintf(op->first_err, sizeof op->first_err, "%s", ar->errmsg);
    op->first_status = ar->http_status;
    op->pages = 0;
    int rc = send_lookup(op, NULL);
    if (rc) {
      char msg[1400];
      snprintf(msg, sizeof msg, "upload of %s: outcome unknown (%s); lookup not started (%s)", op->filename,
               op->first_err, aw_strerror(rc));
      upload_failed(op, AW_EAMBIGUOUS, ar->http_status, msg);
    }
    return;
  }
  if (!ar->err) {
    fapi_file f;
    if (fapi_file_parse(ar->json, &f) != AW_OK) {
      upload_failed(op, AW_EPARSE, ar->http_status, "POST /files: the answer is not a file object");
      return;
    }
  }
  finish_api(op, ar);
}

static int send_upload(fapi_op *op) {
  op->uploads++;
  return api_upload(op->c, "/files", op->parts, 2, on_upload_done, op, &op->call);
}

static int upload_start(api_client *c, const fapi_upload_opts *o, int own_fd, fapi_done_cb cb, void *opaque,
                        fapi_op **out) {
  if (out) *out = NULL;
  const char *purpose = o->purpose ? o->purpose : "assistants";
  if (!c || !cb || !o->filename || !o->filename[0] || strlen(o->filename) >= FAPI_NAME_MAX ||
      strpbrk(o->filename, "\"\r\n/") || !purpose_ok(purpose) || (!o->data && o->fd < 0) ||
      (o->type && strlen(o->type) >= 128))
    return AW_EINVAL;
  fapi_op *op = op_new(c, OP_UPLOAD, cb, opaque);
  if (!op) return AW_ENOMEM;
  snprintf(op->filename, sizeof op->filename, "%s", o->filename);
  snprintf(op->purpose, sizeof op->purpose, "%s", purpose);
  if (o->type) snprintf(op->type, sizeof op->type, "%s", o->type);
  op->fd = o->data ? -1 : o->fd;
  op->own_fd = own_fd;
  op->len = o->len;
  op->max_ambiguous = o->max_ambiguous >= 0 ? o->max_ambiguous : 0;
  op->window_s = o->window_s > 0 ? o->window_s : 120;
  op->started = time(NULL);
  /* The spec's order: file, then purpose; servers accept either. */
  op->parts[0] = (http_form_part){.name = "file", .filename = op->filename, .type = o->type ? op->type : NULL,
                                  .data = o->data, .len = o->len, .fd = op->fd};
  op->parts[1] = (http_form_part){.name = "purpose", .data = op->purpose, .len = strlen(op->purpose), .fd = -1};
  int rc = send_upload(op);
  if (rc) {
    op->own_fd = 0; /* on failure the caller keeps its descriptor */
    op_free(op);
    return rc;
  }
  if (out) *out = op;
  return AW_OK;
}

int fapi_upload(api_client *c, const fapi_upload_opts *o, fapi_done_cb cb, void *opaque, fapi_op **out) {
  if (!o) return AW_EINVAL;
  return upload_start(c, o, 0, cb, opaque, out);
}

int fapi_upload_path(api_client *c, const char *path, const char *purpose, fapi_done_cb cb, void *opaque,
                     fapi_op **out, char *errstr, size_t errstr_size) {
  if (out) *out = NULL;
  if (!path) return aw_seterr(AW_EINVAL, errstr, errstr_size, "upload: no path");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return aw_seterr(errno == ENOENT ? AW_ENOTFOUND : AW_EIO, errstr, errstr_size, "upload: %s: %s", path,
                     strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return aw_seterr(AW_EIO, errstr, errstr_size, "upload: %s: not a regular file", path);
  }
  const char *name = strrchr(path, '/');
  name = name ? name + 1 : path;
  fapi_upload_opts o;
  fapi_upload_opts_default(&o);
  o.filename = name;
  o.purpose = purpose;
  o.fd = fd;
  o.len = (size_t)st.st_size;
  int rc = upload_start(c, &o, 1, cb, opaque, out);
  if (rc) {
    close(fd);
    return aw_seterr(rc, errstr, errstr_size, "upload: %s: %s", path,
                     rc == AW_EINVAL ? "invalid file name or purpose" : aw_strerror(rc));
  }
  return AW_OK;
}

/* ---- download ------------------------------------------------------------------ */

static int on_dl_data(void *opaque, const char *data, size_t len) {
  fapi_op *op = opaque;
  op->bytes += len;
  if (op->out_fd < 0) return op->on_data(op->data_opaque, data, len);
  op->write_errno = aw_write_all(op->out_fd, data, len);
  return op->write_errno != 0;
}

static void on_dl_done(void *opaque, const api_result *ar) {
  fapi_op *op = opaque;
  op->call = NULL;
  if (ar->err == AW_ECANCELLED && op->write_errno) {
    char msg[300];
    snprintf(msg, sizeof msg, "download: writing the content failed after %zu bytes: %s", op->bytes,
             strerror(op->write_errno));
    upload_failed(op, AW_EIO, ar->http_status, msg);
    return;
  }
  if (ar->err == AW_ETOOBIG) {
    char msg[300];
    snprintf(msg, sizeof msg, "download: the content is larger than the cap");
    upload_failed(op, AW_ETOOBIG, ar->http_status, msg);
    return;
  }
  finish_api(op, ar);
}

int fapi_download(api_client *c, const char *id, int fd, api_data_cb on_data, void *data_opaque,
                  size_t max_bytes, fapi_done_cb cb, void *opaque, fapi_op **out) {
  if (out) *out = NULL;
  if (!c || !cb || !id_ok(id) || (fd < 0 && !on_data)) return AW_EINVAL;
  fapi_op *op = op_new(c, OP_DOWNLOAD, cb, opaque);
  if (!op) return AW_ENOMEM;
  op->out_fd = fd;
  op->on_data = on_data;
  op->data_opaque = data_opaque;
  char p[160];
  snprintf(p, sizeof p, "/files/%s/content", id);
  int rc = api_download(c, p, max_bytes, on_dl_data, on_dl_done, op, &op->call);
  if (rc) {
    op_free(op);
    return rc;
  }
  if (out) *out = op;
  return AW_OK;
}

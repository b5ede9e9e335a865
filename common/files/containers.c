/* containers.c -- the Containers API client, read side (see containers.h).
 *
 * One ctr_op per call: the api_call in flight (for cancel) and, for a
 * download, where the bytes go.  About 150 bytes; content is never copied
 * here (a descriptor gets it as it arrives, a callback decides).
 */
#include "containers.h"

#include "fd_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "files_api.h"

enum { OP_SIMPLE = 0, OP_DOWNLOAD };

struct ctr_op {
  api_call *call;
  ctr_done_cb cb;
  void *opaque;
  int kind;
  int in_cb;
  /* download */
  int out_fd;
  api_data_cb on_data;
  void *data_opaque;
  size_t bytes;
  int write_errno;
};

static int id_ok(const char *id) {
  if (!id) return 0;
  size_t n = strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
  return n > 0 && n < API_ID_MAX && id[n] == '\0';
}

static void copy_str(char *dst, size_t n, const cJSON *v) {
  snprintf(dst, n, "%s", cJSON_IsString(v) && v->valuestring ? v->valuestring : "");
}

int ctr_file_parse(const cJSON *obj, ctr_file *out) {
  memset(out, 0, sizeof *out);
  out->bytes = -1;
  const cJSON *id = cJSON_GetObjectItemCaseSensitive(obj, "id");
  if (!cJSON_IsString(id) || !id_ok(id->valuestring)) return AW_EPARSE;
  copy_str(out->id, sizeof out->id, id);
  copy_str(out->container_id, sizeof out->container_id, cJSON_GetObjectItemCaseSensitive(obj, "container_id"));
  copy_str(out->path, sizeof out->path, cJSON_GetObjectItemCaseSensitive(obj, "path"));
  copy_str(out->source, sizeof out->source, cJSON_GetObjectItemCaseSensitive(obj, "source"));
  const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(obj, "bytes");
  if (cJSON_IsNumber(bytes) && bytes->valuedouble >= 0) out->bytes = (long long)bytes->valuedouble;
  const cJSON *created = cJSON_GetObjectItemCaseSensitive(obj, "created_at");
  if (cJSON_IsNumber(created)) out->created_at = (long long)created->valuedouble;
  return AW_OK;
}

const char *ctr_file_name(const ctr_file *f) {
  const char *slash = strrchr(f->path, '/');
  return slash ? slash + 1 : f->path;
}

/* ---- ops ------------------------------------------------------------------------ */

static ctr_op *op_new(int kind, ctr_done_cb cb, void *opaque) {
  ctr_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->kind = kind;
  op->cb = cb;
  op->opaque = opaque;
  op->out_fd = -1;
  return op;
}

static void finish(ctr_op *op, ctr_result *res) {
  res->bytes = op->bytes;
  if (!res->errmsg) res->errmsg = "";
  op->in_cb = 1;
  op->cb(op->opaque, res);
  free(op);
}

void ctr_cancel(ctr_op *op) {
  if (!op || op->in_cb) return;
  api_call_cancel(op->call);
  free(op);
}

static void on_done(void *opaque, const api_result *ar) {
  ctr_op *op = opaque;
  op->call = NULL;
  ctr_result res;
  memset(&res, 0, sizeof res);
  res.err = fapi_status_err(ar->err, ar->http_status);
  res.http_status = ar->http_status;
  res.errmsg = ar->errmsg;
  char msg[300];
  ctr_file f;
  if (op->kind == OP_DOWNLOAD) {
    if (ar->err == AW_ECANCELLED && op->write_errno) {
      snprintf(msg, sizeof msg, "container file download: writing the content failed after %zu bytes: %s",
               op->bytes, strerror(op->write_errno));
      res.err = AW_EIO;
      res.errmsg = msg;
    } else if (ar->err == AW_ETOOBIG) {
      snprintf(msg, sizeof msg, "container file download: the content is larger than the cap");
      res.errmsg = msg;
    }
  } else if (!ar->err) {
    res.json = ar->json;
    /* A retrieve answers a file object, a list a page: parse only the former. */
    if (ar->json && !cJSON_GetObjectItemCaseSensitive(ar->json, "data")) {
      if (ctr_file_parse(ar->json, &f) != AW_OK) {
        res.err = AW_EPARSE;
        res.json = NULL;
        res.errmsg = "container file: the answer is not a container file object";
      } else {
        res.file = &f;
      }
    }
  }
  finish(op, &res);
}

static int simple(api_client *c, const char *path, ctr_done_cb cb, void *opaque, ctr_op **out) {
  if (out) *out = NULL;
  if (!c || !cb) return AW_EINVAL;
  ctr_op *op = op_new(OP_SIMPLE, cb, opaque);
  if (!op) return AW_ENOMEM;
  int rc = api_request(c, "GET", path, NULL, 1, on_done, op, &op->call);
  if (rc) {
    free(op);
    return rc;
  }
  if (out) *out = op;
  return AW_OK;
}

int ctr_retrieve(api_client *c, const char *container_id, const char *file_id, ctr_done_cb cb, void *opaque,
                 ctr_op **out) {
  if (out) *out = NULL;
  if (!id_ok(container_id) || !id_ok(file_id)) return AW_EINVAL;
  char p[256];
  snprintf(p, sizeof p, "/containers/%s/files/%s", container_id, file_id);
  return simple(c, p, cb, opaque, out);
}

int ctr_list(api_client *c, const char *container_id, int limit, const char *order, const char *after,
             ctr_done_cb cb, void *opaque, ctr_op **out) {
  if (out) *out = NULL;
  if (!id_ok(container_id) || limit < 0 || limit > 100 || (after && !id_ok(after)) ||
      (order && strcmp(order, "asc") && strcmp(order, "desc")))
    return AW_EINVAL;
  char p[512];
  int w = snprintf(p, sizeof p, "/containers/%s/files", container_id);
  char sep = '?';
  if (limit) w += snprintf(p + w, sizeof p - (size_t)w, "%climit=%d", sep, limit), sep = '&';
  if (order) w += snprintf(p + w, sizeof p - (size_t)w, "%corder=%s", sep, order), sep = '&';
  if (after) w += snprintf(p + w, sizeof p - (size_t)w, "%cafter=%s", sep, after);
  return simple(c, p, cb, opaque, out);
}

/* ---- download ----------------------------------------------------------------------- */

static int on_dl_data(void *opaque, const char *data, size_t len) {
  ctr_op *op = opaque;
  op->bytes += len;
  if (op->out_fd < 0) return op->on_data(op->data_opaque, data, len);
  op->write_errno = aw_write_all(op->out_fd, data, len);
  return op->write_errno != 0;
}

int ctr_download(api_client *c, const char *container_id, const char *file_id, int fd, api_data_cb on_data,
                 void *data_opaque, size_t max_bytes, ctr_done_cb cb, void *opaque, ctr_op **out) {
  if (out) *out = NULL;
  if (!c || !cb || !id_ok(container_id) || !id_ok(file_id) || (fd < 0 && !on_data)) return AW_EINVAL;
  ctr_op *op = op_new(OP_DOWNLOAD, cb, opaque);
  if (!op) return AW_ENOMEM;
  op->out_fd = fd;
  op->on_data = on_data;
  op->data_opaque = data_opaque;
  char p[256];
  snprintf(p, sizeof p, "/containers/%s/files/%s/content", container_id, file_id);
  int rc = api_download(c, p, max_bytes, on_dl_data, on_done, op, &op->call);
  if (rc) {
    free(op);
    return rc;
  }
  if (out) *out = op;
  return AW_OK;
}

/* vector_stores.c -- the Vector Stores API client (see vector_stores.h).
 *
 * One vst_op per operation (one allocation).  A wait owns a uv_timer_t in
 * an allocation of its own, which frees itself in its close callback, so
 * the op can be released at once when it finishes or is cancelled (libuv
 * closes handles asynchronously).  Polling backs off from poll_ms to 2 s:
 * a store of a few documents is processed in seconds, a large one in
 * minutes, and a poll costs the API one cheap GET.
 */
#include "vector_stores.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "files_api.h"

#define LOOKUP_PAGE 100
#define LOOKUP_PAGES 10
#define POLL_MAX_MS 2000
#define FAILED_LIST 100 /* failed files named at most */

enum { OP_SIMPLE = 0, OP_CREATE, OP_WAIT };

typedef struct wait_timer {
  uv_timer_t t;
} wait_timer;

struct vst_op {
  api_client *c;
  api_call *call;
  vst_done_cb cb;
  void *opaque;
  int kind;
  int in_cb;
  /* create */
  char *body;
  char key[VST_KEY_MAX];
  int max_ambiguous, ambiguous, pages;
  char first_err[512];
  int first_status;
  /* wait */
  wait_timer *timer;
  char vs[API_ID_MAX], batch[API_ID_MAX];
  uint64_t deadline;    /* uv_now() value */
  long deadline_ms, poll_ms;
  vst_counts counts;
  char status[24];
};

static int id_ok(const char *id) {
  if (!id) return 0;
  size_t n = strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");
  return n > 0 && n < API_ID_MAX && id[n] == '\0';
}

static vst_op *op_new(api_client *c, int kind, vst_done_cb cb, void *opaque) {
  vst_op *op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->c = c;
  op->kind = kind;
  op->cb = cb;
  op->opaque = opaque;
  return op;
}

static void on_timer_closed(uv_handle_t *h) { free(h); }

static void op_free(vst_op *op) {
  if (op->timer) uv_close((uv_handle_t *)&op->timer->t, on_timer_closed);
  free(op->body);
  free(op);
}

static const char *str_of(const cJSON *obj, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
  return cJSON_IsString(v) && v->valuestring ? v->valuestring : "";
}

static void finish(vst_op *op, vst_result *res) {
  if (!res->errmsg) res->errmsg = "";
  if (!res->id) res->id = res->json ? str_of(res->json, "id") : "";
  if (!res->status) res->status = res->json ? str_of(res->json, "status") : "";
  res->counts = op->counts;
  op->in_cb = 1;
  op->cb(op->opaque, res);
  op_free(op);
}

static void finish_err(vst_op *op, int err, int status, const char *msg) {
  vst_result res;
  memset(&res, 0, sizeof res);
  res.err = err;
  res.http_status = status;
  res.errmsg = msg;
  finish(op, &res);
}

static void finish_api(vst_op *op, const api_result *ar) {
  vst_result res;
  memset(&res, 0, sizeof res);
  res.err = fapi_status_err(ar->err, ar->http_status);
  if (ar->http_status == 413) res.err = AW_EHTTP4XX;
  res.http_status = ar->http_status;
  res.errmsg = ar->errmsg;
  res.json = ar->json;
  finish(op, &res);
}

void vst_cancel(vst_op *op) {
  if (!op || op->in_cb) return;
  api_call_cancel(op->call);
  op_free(op);
}

static void on_simple_done(void *opaque, const api_result *ar) {
  vst_op *op = opaque;
  op->call = NULL;
  finish_api(op, ar);
}

/* One request, one result.  body is JSON text or NULL. */
static int simple(api_client *c, const char *method, const char *path, const char *body, vst_done_cb cb,
                  void *opaque, vst_op **out) {
  if (out) *out = NULL;
  if (!c || !cb) return AW_EINVAL;
  vst_op *op = op_new(c, OP_SIMPLE, cb, opaque);
  if (!op) return AW_ENOMEM;
  int rc = api_request(c, method, path, body, 1, on_simple_done, op, &op->call);
  if (rc) {
    op_free(op);
    return rc;
  }
  if (out) *out = op;
  return AW_OK;
}

int vst_retrieve(api_client *c, const char *id, vst_done_cb cb, void *opaque, vst_op **out) {
  if (!id_ok(id)) return AW_EINVAL;
  char p[160];
  snprintf(p, sizeof p, "/vector_stores/%s", id);
  return simple(c, "GET", p, NULL, cb, opaque, out);
}

static int list_path(char *p, size_t n, int limit, const char *after) {
  if (limit < 0 || limit > 100 || (after && !id_ok(after))) return AW_EINVAL;
  int w = snprintf(p, n, "/vector_stores?order=desc");
  if (limit) w += snprintf(p + w, n - (size_t)w, "&limit=%d", limit);
  if (after) w += snprintf(p + w, n - (size_t)w, "&after=%s", after);
  return (size_t)w < n ? AW_OK : AW_EINVAL;
}

int vst_list(api_client *c, int limit, const char *after, vst_done_cb cb, void *opaque, vst_op **out) {
  char p[256];
  int rc = list_path(p, sizeof p, limit, after);
  if (rc) return rc;
  return simple(c, "GET", p, NULL, cb, opaque, out);
}

int vst_delete(api_client *c, const char *id, vst_done_cb cb, void *opaque, vst_op **out) {
  if (!id_ok(id)) return AW_EINVAL;
  char p[160];
  snprintf(p, sizeof p, "/vector_stores/%s", id);
  return simple(c, "DELETE", p, NULL, cb, opaque, out);
}

static cJSON *id_array(const char *const *ids, size_t n) {
  cJSON *a = cJSON_CreateArray();
  for (size_t i = 0; a && i < n; i++) {
    if (!id_ok(ids[i]) || !cJSON_AddItemToArray(a, cJSON_CreateString(ids[i]))) {
      cJSON_Delete(a);
      return NULL;
    }
  }
  return a;
}

/* Print and free a request object; NULL when it could not be built. */
static char *print_free(cJSON *o) {
  char *s = o ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  return s;
}

int vst_file_add(api_client *c, const char *vs, const char *file_id, vst_done_cb cb, void *opaque, vst_op **out) {
  if (!id_ok(vs) || !id_ok(file_id)) return AW_EINVAL;
  char p[160], body[160];
  snprintf(p, sizeof p, "/vector_stores/%s/files", vs);
  snprintf(body, sizeof body, "{\"file_id\":\"%s\"}", file_id); /* id_ok: nothing to escape */
  return simple(c, "POST", p, body, cb, opaque, out);
}

int vst_batch_create(api_client *c, const char *vs, const char *const *file_ids, size_t n, vst_done_cb cb,
                     void *opaque, vst_op **out) {
  if (!id_ok(vs) || !file_ids || n == 0 || n > VST_MAX_FILE_IDS) return AW_EINVAL;
  cJSON *o = cJSON_CreateObject();
  cJSON *a = id_array(file_ids, n);
  if (!a) {
    cJSON_Delete(o);
    return AW_EINVAL;
  }
  if (!o || !cJSON_AddItemToObject(o, "file_ids", a)) {
    cJSON_Delete(a);
    cJSON_Delete(o);
    return AW_ENOMEM;
  }
  char *body = print_free(o);
  if (!body) return AW_ENOMEM;
  char p[160];
  snprintf(p, sizeof p, "/vector_stores/%s/file_batches", vs);
  int rc = simple(c, "POST", p, body, cb, opaque, out);
  free(body);
  return rc;
}

static int files_path(char *p, size_t n, const char *vs, const char *filter, int limit, const char *after) {
  if (!id_ok(vs) || limit < 0 || limit > 100 || (after && !id_ok(after)) ||
      (filter && strcmp(filter, "in_progress") && strcmp(filter, "completed") && strcmp(filter, "failed") &&
       strcmp(filter, "cancelled")))
    return AW_EINVAL;
  int w = snprintf(p, n, "/vector_stores/%s/files", vs);
  char sep = '?';
  if (filter) w += snprintf(p + w, n - (size_t)w, "%cfilter=%s", sep, filter), sep = '&';
  if (limit) w += snprintf(p + w, n - (size_t)w, "%climit=%d", sep, limit), sep = '&';
  if (after) w += snprintf(p + w, n - (size_t)w, "%cafter=%s", sep, after);
  return (size_t)w < n ? AW_OK : AW_EINVAL;
}

int vst_files_list(api_client *c, const char *vs, const char *filter, int limit, const char *after,
                   vst_done_cb cb, void *opaque, vst_op **out) {
  char p[384];
  int rc = files_path(p, sizeof p, vs, filter, limit, after);
  if (rc) return rc;
  return simple(c, "GET", p, NULL, cb, opaque, out);
}

int vst_file_delete(api_client *c, const char *vs, const char *file_id, vst_done_cb cb, void *opaque,
                    vst_op **out) {
  if (!id_ok(vs) || !id_ok(file_id)) return AW_EINVAL;
  char p[256];
  snprintf(p, sizeof p, "/vector_stores/%s/files/%s", vs, file_id);
  return simple(c, "DELETE", p, NULL, cb, opaque, out);
}

int vst_search(api_client *c, const char *vs, const char *query, int max_results, vst_done_cb cb, void *opaque,
               vst_op **out) {
  if (!id_ok(vs) || !query || max_results < 0 || max_results > 50) return AW_EINVAL;
  cJSON *o = cJSON_CreateObject();
  if (!o || !cJSON_AddStringToObject(o, "query", query) ||
      (max_results && !cJSON_AddNumberToObject(o, "max_num_results", max_results))) {
    cJSON_Delete(o);
    return AW_ENOMEM;
  }
  char *body = print_free(o);
  if (!body) return AW_ENOMEM;
  char p[160];
  snprintf(p, sizeof p, "/vector_stores/%s/search", vs);
  int rc = simple(c, "POST", p, body, cb, opaque, out);
  free(body);
  return rc;
}

/* ---- create, never twice -------------------------------------------------------- */

static int send_create(vst_op *op);
static int send_lookup(vst_op *op, const char *after);

static void on_lookup_done(void *opaque, const api_result *ar) {
  vst_op *op = opaque;
  op->call = NULL;
  char msg[1200];
  if (ar->err) {
    snprintf(msg, sizeof msg, "vector store creation: outcome unknown (%s); looking for it failed: %s",
             op->first_err, ar->errmsg);
    finish_err(op, AW_EAMBIGUOUS, op->first_status, msg);
    return;
  }
  const cJSON *it, *last = NULL;
  cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(ar->json, "data")) {
    last = it;
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(it, "metadata");
    if (!strcmp(str_of(md, "aw_key"), op->key)) {
      vst_result res;
      memset(&res, 0, sizeof res);
      res.http_status = ar->http_status;
      res.json = it;
      res.found = 1;
      finish(op, &res);
      return;
    }
  }
  int rc = AW_OK;
  if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ar->json, "has_more")) && last &&
      ++op->pages < LOOKUP_PAGES) {
    rc = send_lookup(op, str_of(last, "id"));
  } else if (op->ambiguous < op->max_ambiguous) {
    op->ambiguous++; /* certainly not created (as far as the API shows now) */
    rc = send_create(op);
  } else {
    snprintf(msg, sizeof msg, "vector store creation: outcome unknown after %d attempts, not found by its key: %s",
             op->ambiguous + 1, op->first_err);
    finish_err(op, AW_EAMBIGUOUS, op->first_status, msg);
    return;
  }
  if (rc) {
    snprintf(msg, sizeof msg, "vector store creation: outcome unknown (%s); could not go on (%s)", op->first_err,
             aw_strerror(rc));
    finish_err(op, AW_EAMBIGUOUS, op->first_status, msg);
  }
}

static int send_lookup(vst_op *op, const char *after) {
  char p[256];
  int rc = list_path(p, sizeof p, LOOKUP_PAGE, after && after[0] ? after : NULL);
  if (rc) return rc;
  return api_request(op->c, "GET", p, NULL, 1, on_lookup_done, op, &op->call);
}

static void on_create_done(void *opaque, const api_result *ar) {
  vst_op *op = opaque;
  op->call = NULL;
  if (ar->err == AW_EAMBIGUOUS && op->key[0]) {
    snprintf(op->first_err, sizeof op->first_err, "%s", ar->errmsg);
    op->first_status = ar->http_status;
    op->pages = 0;
    int rc = send_lookup(op, NULL);
    if (rc) finish_err(op, AW_EAMBIGUOUS, ar->http_status, ar->errmsg);
    return;
  }
  finish_api(op, ar);
}

static int send_create(vst_op *op) {
  return api_request(op->c, "POST", "/vector_stores", op->body, 0, on_create_done, op, &op->call);
}

int vst_create(api_client *c, const vst_create_opts *o, vst_done_cb cb, void *opaque, vst_op **out) {
  if (out) *out = NULL;
  if (!c || !o || !cb || (o->key && (!o->key[0] || strlen(o->key) >= VST_KEY_MAX)) ||
      o->nfile_ids > VST_MAX_FILE_IDS || (o->nfile_ids && !o->file_ids) || (o->name && strlen(o->name) > 256))
    return AW_EINVAL;
  cJSON *req = cJSON_CreateObject();
  if (!req) return AW_ENOMEM;
  int bad = 0;
  if (o->name) bad |= !cJSON_AddStringToObject(req, "name", o->name);
  if (o->nfile_ids) {
    cJSON *a = id_array(o->file_ids, o->nfile_ids);
    if (!a) {
      cJSON_Delete(req);
      return AW_EINVAL;
    }
    bad |= !cJSON_AddItemToObject(req, "file_ids", a);
  }
  if (o->key) {
    cJSON *md = cJSON_AddObjectToObject(req, "metadata");
    bad |= !md || !cJSON_AddStringToObject(md, "aw_key", o->key);
  }
  char *body = bad ? NULL : cJSON_PrintUnformatted(req);
  cJSON_Delete(req);
  if (!body) return AW_ENOMEM;
  vst_op *op = op_new(c, OP_CREATE, cb, opaque);
  if (!op) {
    free(body);
    return AW_ENOMEM;
  }
  op->body = body;
  if (o->key) snprintf(op->key, sizeof op->key, "%s", o->key);
  op->max_ambiguous = o->max_ambiguous > 0 ? o->max_ambiguous : (o->max_ambiguous < 0 ? 0 : 2);
  int rc = send_create(op);
  if (rc) {
    op_free(op);
    return rc;
  }
  if (out) *out = op;
  return AW_OK;
}

/* ---- wait ------------------------------------------------------------------------- */

static int send_poll(vst_op *op);

static long num_of(const cJSON *o, const char *name) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  return cJSON_IsNumber(v) ? (long)v->valuedouble : 0;
}

static void on_poll_timer(uv_timer_t *t) {
  vst_op *op = t->data;
  int rc = send_poll(op);
  if (rc) {
    char msg[200];
    snprintf(msg, sizeof msg, "vector store %s: could not poll (%s)", op->vs, aw_strerror(rc));
    finish_err(op, rc, 0, msg);
  }
}

/* The failed files, named: the store's list with filter=failed (the
 * batch's own list is not used: the store's serves both waits). */
static void on_failed_list(void *opaque, const api_result *ar) {
  vst_op *op = opaque;
  op->call = NULL;
  char msg[2048];
  int w = snprintf(msg, sizeof msg, "vector store %s%s%s: %ld of %ld files failed, %ld cancelled", op->vs,
                   op->batch[0] ? " batch " : "", op->batch, op->counts.failed, op->counts.total,
                   op->counts.cancelled);
  int all_server = op->counts.cancelled == 0, named = 0;
  const cJSON *it;
  if (!ar->err) {
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(ar->json, "data")) {
      const cJSON *le = cJSON_GetObjectItemCaseSensitive(it, "last_error");
      const char *code = str_of(le, "code");
      if (strcmp(code, "server_error")) all_server = 0;
      if (w > 0 && (size_t)w < sizeof msg)
        w += snprintf(msg + w, sizeof msg - (size_t)w, "%s%s (%s: %s)", named ? "; " : ": ", str_of(it, "id"),
                      code[0] ? code : "no code", str_of(le, "message"));
      named++;
    }
  } else if (w > 0 && (size_t)w < sizeof msg) {
    snprintf(msg + w, sizeof msg - (size_t)w, " (listing them failed: %s)", ar->errmsg);
  }
  if (!named) all_server = 0;
  finish_err(op, all_server ? AW_EHTTP5XX : AW_EINVAL, ar->http_status, msg);
}

static void on_poll_done(void *opaque, const api_result *ar) {
  vst_op *op = opaque;
  op->call = NULL;
  if (ar->err) {
    finish_api(op, ar);
    return;
  }
  const cJSON *fc = cJSON_GetObjectItemCaseSensitive(ar->json, "file_counts");
  op->counts.in_progress = num_of(fc, "in_progress");
  op->counts.completed = num_of(fc, "completed");
  op->counts.failed = num_of(fc, "failed");
  op->counts.cancelled = num_of(fc, "cancelled");
  op->counts.total = num_of(fc, "total");
  snprintf(op->status, sizeof op->status, "%s", str_of(ar->json, "status"));
  if (op->counts.in_progress > 0 || !strcmp(op->status, "in_progress")) {
    uint64_t now = uv_now(uv_handle_get_loop((uv_handle_t *)&op->timer->t));
    if (now >= op->deadline) {
      char msg[300];
      snprintf(msg, sizeof msg,
               "vector store %s%s%s: %ld of %ld files still in progress after %ld ms (the deadline)", op->vs,
               op->batch[0] ? " batch " : "", op->batch, op->counts.in_progress, op->counts.total,
               op->deadline_ms);
      finish_err(op, AW_ETIMEDOUT, ar->http_status, msg);
      return;
    }
    uint64_t wait = (uint64_t)op->poll_ms;
    if (wait > op->deadline - now) wait = op->deadline - now;
    op->poll_ms = op->poll_ms * 2 > POLL_MAX_MS ? POLL_MAX_MS : op->poll_ms * 2;
    uv_timer_start(&op->timer->t, on_poll_timer, wait, 0);
    return;
  }
  if (op->counts.failed > 0 || op->counts.cancelled > 0) {
    char p[384];
    int rc = files_path(p, sizeof p, op->vs, "failed", FAILED_LIST, NULL);
    if (!rc) rc = api_request(op->c, "GET", p, NULL, 1, on_failed_list, op, &op->call);
    if (rc) {
      char msg[300];
      snprintf(msg, sizeof msg, "vector store %s: %ld of %ld files failed", op->vs, op->counts.failed,
               op->counts.total);
      finish_err(op, AW_EINVAL, ar->http_status, msg);
    }
    return;
  }
  finish_api(op, ar);
}

static int send_poll(vst_op *op) {
  char p[256];
  if (op->batch[0]) snprintf(p, sizeof p, "/vector_stores/%s/file_batches/%s", op->vs, op->batch);
  else snprintf(p, sizeof p, "/vector_stores/%s", op->vs);
  return api_request(op->c, "GET", p, NULL, 1, on_poll_done, op, &op->call);
}

int vst_wait(api_client *c, const vst_wait_opts *o, vst_done_cb cb, void *opaque, vst_op **out) {
  if (out) *out = NULL;
  if (!c || !o || !cb || !o->loop || !id_ok(o->vector_store_id) || (o->batch_id && !id_ok(o->batch_id)) ||
      o->deadline_ms <= 0)
    return AW_EINVAL;
  vst_op *op = op_new(c, OP_WAIT, cb, opaque);
  if (!op) return AW_ENOMEM;
  op->timer = calloc(1, sizeof *op->timer);
  if (!op->timer || uv_timer_init(o->loop, &op->timer->t) != 0) {
    free(op->timer);
    free(op);
    return AW_ENOMEM;
  }
  op->timer->t.data = op;
  snprintf(op->vs, sizeof op->vs, "%s", o->vector_store_id);
  if (o->batch_id) snprintf(op->batch, sizeof op->batch, "%s", o->batch_id);
  op->deadline_ms = o->deadline_ms;
  op->deadline = uv_now(o->loop) + (uint64_t)o->deadline_ms;
  op->poll_ms = o->poll_ms > 0 ? o->poll_ms : 250;
  int rc = send_poll(op);
  if (rc) {
    op_free(op);
    return rc;
  }
  if (out) *out = op;
  return AW_OK;
}

/* sim_containers.c -- containers and their files, in memory under the store
 * lock.  A file's bytes are served through a memfd, so the HTTP layer sends
 * them the way it sends /v1/files content (from a descriptor). */
#include "sim_containers.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim_files.h"
#include "sim_page.h"
#include "sim_req.h"
#include "sim_stats.h"
#include "sim_store.h"

/* At most this many containers and files per container: bounded, and far
 * beyond what a test makes. */
#define MAX_CONTAINERS 4096
#define MAX_FILES 256
#define NAME_MAX_LEN 256

typedef struct cfile {
  cJSON *json; /* the ContainerFileResource */
  unsigned char *data;
  size_t len;
  char filename[NAME_MAX_LEN]; /* the path's last part */
} cfile;

typedef struct cntr {
  cJSON *json; /* the ContainerResource */
  cfile *files[MAX_FILES];
  size_t nfiles;
} cntr;

static cntr *g_c[MAX_CONTAINERS];
static size_t g_n;
static size_t g_bytes; /* of every container file */

static const char *id_of(const cJSON *o) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "id");
  return cJSON_IsString(v) ? v->valuestring : "";
}

static cntr *find(const char *id) {
  for (size_t i = 0; i < g_n; i++)
    if (!strcmp(id_of(g_c[i]->json), id)) return g_c[i];
  return NULL;
}

static cfile *find_file(cntr *c, const char *fid) {
  for (size_t i = 0; i < c->nfiles; i++)
    if (!strcmp(id_of(c->files[i]->json), fid)) return c->files[i];
  return NULL;
}

static void cfile_free(cfile *f) {
  if (!f) return;
  g_bytes -= f->len;
  cJSON_Delete(f->json);
  free(f->data);
  free(f);
}

static void cntr_free(cntr *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nfiles; i++) cfile_free(c->files[i]);
  cJSON_Delete(c->json);
  free(c);
}

int scntr_exists(const char *id) { return id && find(id) != NULL; }

static cntr *cntr_new(const char *name) {
  if (g_n >= MAX_CONTAINERS) return NULL;
  cntr *c = calloc(1, sizeof *c);
  cJSON *j = cJSON_CreateObject();
  if (!c || !j) {
    free(c);
    cJSON_Delete(j);
    return NULL;
  }
  char id[40];
  sstore_make_id("cntr_", id, sizeof id);
  int64_t now = sstore_unix_now();
  cJSON_AddStringToObject(j, "id", id);
  cJSON_AddStringToObject(j, "object", "container");
  cJSON_AddStringToObject(j, "name", name);
  cJSON_AddNumberToObject(j, "created_at", (double)now);
  cJSON_AddStringToObject(j, "status", "running");
  cJSON_AddNumberToObject(j, "last_active_at", (double)now);
  cJSON *exp = cJSON_AddObjectToObject(j, "expires_after");
  cJSON_AddStringToObject(exp, "anchor", "last_active_at");
  cJSON_AddNumberToObject(exp, "minutes", 20);
  cJSON_AddStringToObject(j, "memory_limit", "1g");
  c->json = j;
  return c;
}

/* Add a file to c (takes data on success). */
static int add_file(cntr *c, const char *filename, unsigned char *data, size_t len, const char *source, char *fid_out,
                    size_t fid_size) {
  if (len > SCNTR_FILE_MAX || g_bytes + len > SCNTR_TOTAL_MAX || c->nfiles >= MAX_FILES) return AW_ETOOBIG;
  cfile *f = calloc(1, sizeof *f);
  cJSON *j = cJSON_CreateObject();
  if (!f || !j) {
    free(f);
    cJSON_Delete(j);
    return AW_ENOMEM;
  }
  char fid[40], path[NAME_MAX_LEN + 16];
  sstore_make_id("cfile_", fid, sizeof fid);
  snprintf(f->filename, sizeof f->filename, "%s", filename);
  snprintf(path, sizeof path, "/mnt/data/%s", f->filename);
  cJSON_AddStringToObject(j, "id", fid);
  cJSON_AddStringToObject(j, "object", "container.file");
  cJSON_AddNumberToObject(j, "created_at", (double)sstore_unix_now());
  cJSON_AddNumberToObject(j, "bytes", (double)len);
  cJSON_AddStringToObject(j, "container_id", id_of(c->json));
  cJSON_AddStringToObject(j, "path", path);
  cJSON_AddStringToObject(j, "source", source);
  f->json = j;
  f->data = data;
  f->len = len;
  g_bytes += len;
  c->files[c->nfiles++] = f;
  jset(c->json, "last_active_at", cJSON_CreateNumber((double)sstore_unix_now()));
  if (fid_out) snprintf(fid_out, fid_size, "%s", fid);
  return AW_OK;
}

int scntr_read_upload(const char *file_id, char **data, size_t *len, char *filename, size_t filename_size) {
  char path[4096];
  *data = NULL;
  *len = 0;
  int rc = sfiles_lookup(file_id, filename, filename_size, path, sizeof path);
  if (rc != AW_OK) return rc;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0) return AW_EIO;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return AW_EIO;
  }
  if ((uint64_t)st.st_size > SCNTR_FILE_MAX) {
    close(fd);
    return AW_ETOOBIG;
  }
  size_t n = (size_t)st.st_size, got = 0;
  char *b = malloc(n + 1);
  if (!b) {
    close(fd);
    return AW_ENOMEM;
  }
  while (got < n) {
    ssize_t k = read(fd, b + got, n - got);
    if (k <= 0) break;
    got += (size_t)k;
  }
  close(fd);
  if (got != n) {
    free(b);
    return AW_EIO;
  }
  b[n] = '\0';
  *data = b;
  *len = n;
  return AW_OK;
}

int scntr_create(const char *name, const cJSON *file_ids, char *id_out, size_t id_size, char *missing_out,
                 size_t missing_size) {
  if (missing_out && missing_size) missing_out[0] = '\0';
  cntr *c = cntr_new(name ? name : "");
  if (!c) return g_n >= MAX_CONTAINERS ? AW_ETOOBIG : AW_ENOMEM;
  const cJSON *fid;
  cJSON_ArrayForEach(fid, file_ids) {
    if (!cJSON_IsString(fid)) continue;
    char *data = NULL, filename[NAME_MAX_LEN];
    size_t len = 0;
    int rc = scntr_read_upload(fid->valuestring, &data, &len, filename, sizeof filename);
    if (rc == AW_OK) rc = add_file(c, filename, (unsigned char *)data, len, "user", NULL, 0);
    if (rc != AW_OK) {
      if (rc == AW_ENOTFOUND && missing_out) snprintf(missing_out, missing_size, "%s", fid->valuestring);
      free(data);
      cntr_free(c);
      return rc;
    }
  }
  g_c[g_n++] = c;
  snprintf(id_out, id_size, "%s", id_of(c->json));
  return AW_OK;
}

int scntr_add_file(const char *cid, const char *filename, const void *data, size_t len, const char *source,
                   char *fid_out, size_t fid_size) {
  cntr *c = find(cid);
  if (!c) return AW_ENOTFOUND;
  unsigned char *copy = malloc(len ? len : 1);
  if (!copy) return AW_ENOMEM;
  if (len) memcpy(copy, data, len);
  int rc = add_file(c, filename, copy, len, source, fid_out, fid_size);
  if (rc != AW_OK) free(copy);
  return rc;
}

size_t scntr_inputs(const char *cid, sci_input_file *out, size_t max) {
  cntr *c = find(cid);
  size_t n = 0;
  for (size_t i = 0; c && i < c->nfiles && n < max; i++)
    out[n++] = (sci_input_file){c->files[i]->filename, (const char *)c->files[i]->data, c->files[i]->len};
  return n;
}

void scntr_reset(void) {
  for (size_t i = 0; i < g_n; i++) cntr_free(g_c[i]);
  g_n = 0;
}

/* ---- routes ------------------------------------------------------------- */

static int check_str_array(const cJSON *v, const char *name, sapi_reply *r) {
  if (!cJSON_IsArray(v)) return sreq_bad_type(r, name, "an array of strings", v);
  const cJSON *s;
  cJSON_ArrayForEach(s, v) if (!cJSON_IsString(s)) return sreq_bad_type(r, name, "an array of strings", v);
  return 0;
}

static int check_expires(const cJSON *v, const char *name, sapi_reply *r) {
  const cJSON *a = cJSON_GetObjectItemCaseSensitive(v, "anchor"), *m = cJSON_GetObjectItemCaseSensitive(v, "minutes");
  if (!cJSON_IsObject(v) || !cJSON_IsString(a) || strcmp(a->valuestring, "last_active_at") != 0 ||
      !cJSON_IsNumber(m) || cJSON_GetArraySize(v) != 2) {
    SREQ_BAD(r, name, "invalid_value", "Invalid '%s': expected {anchor: \"last_active_at\", minutes}.", name);
    return -1;
  }
  return 0;
}

static int check_memory(const cJSON *v, const char *name, sapi_reply *r) {
  static const char *const ok[] = {"1g", "4g", "16g", "64g", NULL};
  for (const char *const *o = ok; cJSON_IsString(v) && *o; o++)
    if (!strcmp(v->valuestring, *o)) return 0;
  SREQ_BAD(r, name, "invalid_value", "Invalid value for '%s'. Supported values are: '1g', '4g', '16g' and '64g'.",
           name);
  return -1;
}

static int check_obj_or_array(const cJSON *v, const char *name, sapi_reply *r) {
  return cJSON_IsObject(v) || cJSON_IsArray(v) ? 0 : sreq_bad_type(r, name, "an object", v);
}

/* CreateContainerBody; skills and network_policy are accepted and ignored. */
static const sreq_field create_fields[] = {
    {"name", V_STR, 1, 0, NAME_MAX_LEN - 1, NULL},
    {"file_ids", V_FN, 0, 0, 0, check_str_array},
    {"expires_after", V_FN, 0, 0, 0, check_expires},
    {"memory_limit", V_FN, 0, 0, 0, check_memory},
    {"skills", V_FN, 0, 0, 0, check_obj_or_array},
    {"network_policy", V_FN, 0, 0, 0, check_obj_or_array},
    {NULL, 0, 0, 0, 0, NULL},
};

static void create(const sapi_req *q, sapi_reply *r) {
  cJSON *body = sreq_parse_body(q, r, 0);
  if (!body) return;
  if (sreq_check_fields(body, create_fields, r, NULL, 0)) {
    cJSON_Delete(body);
    return;
  }
  char id[40], missing[128];
  sstore_lock();
  int rc = scntr_create(cJSON_GetObjectItemCaseSensitive(body, "name")->valuestring,
                        cJSON_GetObjectItemCaseSensitive(body, "file_ids"), id, sizeof id, missing, sizeof missing);
  cntr *c = rc == AW_OK ? find(id) : NULL;
  if (c) {
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(body, "expires_after");
    const cJSON *mem = cJSON_GetObjectItemCaseSensitive(body, "memory_limit");
    if (exp) jset(c->json, "expires_after", cJSON_Duplicate(exp, 1));
    if (mem) jset(c->json, "memory_limit", cJSON_Duplicate(mem, 1));
    sreq_obj(r, c->json);
  } else if (rc == AW_ENOTFOUND) {
    sreq_err(r, 404, "invalid_request_error", "file_ids", NULL, "No file found with id '%s'.", missing);
  } else if (rc == AW_ETOOBIG) {
    SREQ_BAD(r, "file_ids", "invalid_value", "The container's files are too large (at most %u bytes each).",
             SCNTR_FILE_MAX);
  } else {
    sreq_err(r, 500, "server_error", NULL, NULL, "The server could not create the container.");
  }
  sstore_unlock();
  cJSON_Delete(body);
}

/* A page of objs (their JSON), named by list / filter. */
static void page(const sapi_req *q, sapi_reply *r, cJSON **objs, size_t n) {
  static const spage_opts opts = {.default_limit = 20, .max_limit = 100, .allow_before = 0};
  spage_reply(q, r, objs, n, &opts);
}

static void list(const sapi_req *q, sapi_reply *r) {
  const char *name = q->arg(q->arg_cls, "name");
  cJSON *objs[MAX_CONTAINERS];
  size_t n = 0;
  for (size_t i = 0; i < g_n; i++) {
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(g_c[i]->json, "name");
    if (!name || (cJSON_IsString(nm) && !strcmp(nm->valuestring, name))) objs[n++] = g_c[i]->json;
  }
  page(q, r, objs, n);
}

static void delete_container(sapi_reply *r, const char *id) {
  size_t i = 0;
  while (i < g_n && strcmp(id_of(g_c[i]->json), id) != 0) i++;
  cntr_free(g_c[i]);
  memmove(&g_c[i], &g_c[i + 1], (g_n - i - 1) * sizeof *g_c);
  g_n--;
  sreq_deleted(r, id, "container.deleted");
}

static void delete_file(sapi_reply *r, cntr *c, const char *fid) {
  size_t i = 0;
  while (i < c->nfiles && strcmp(id_of(c->files[i]->json), fid) != 0) i++;
  cfile_free(c->files[i]);
  memmove(&c->files[i], &c->files[i + 1], (c->nfiles - i - 1) * sizeof *c->files);
  c->nfiles--;
  sreq_deleted(r, fid, "container.file.deleted");
}

/* The bytes, from a memfd: the HTTP layer sends a descriptor's content. */
static void content(sapi_reply *r, const cfile *f) {
  int fd = memfd_create("cfile", MFD_CLOEXEC);
  size_t put = 0;
  while (fd >= 0 && put < f->len) {
    ssize_t k = write(fd, f->data + put, f->len - put);
    if (k <= 0) break;
    put += (size_t)k;
  }
  if (fd < 0 || put != f->len || lseek(fd, 0, SEEK_SET) != 0) {
    if (fd >= 0) close(fd);
    sreq_err(r, 500, "server_error", NULL, NULL, "The server could not read the file.");
    return;
  }
  r->status = 200;
  r->has_fd = 1;
  r->fd = fd;
  r->fd_size = (uint64_t)f->len;
}

void scntr_handle(const sapi_req *q, sapi_reply *r, char s[][64]) {
  if (r->route == SR_CNTR_CREATE) {
    create(q, r);
    return;
  }
  sstore_lock();
  if (r->route == SR_CNTR_LIST) {
    list(q, r);
    sstore_unlock();
    return;
  }
  cntr *c = find(s[2]);
  cfile *f = NULL;
  if (!c) {
    sreq_not_found(r, "container", s[2]);
  } else if (r->route == SR_CNTR_GET) {
    sreq_obj(r, c->json);
  } else if (r->route == SR_CNTR_DELETE) {
    delete_container(r, s[2]);
  } else if (r->route == SR_CFILE_LIST) {
    cJSON *objs[MAX_FILES];
    for (size_t i = 0; i < c->nfiles; i++) objs[i] = c->files[i]->json;
    page(q, r, objs, c->nfiles);
  } else if (!(f = find_file(c, s[4]))) {
    sreq_not_found(r, "container file", s[4]);
  } else if (r->route == SR_CFILE_GET) {
    sreq_obj(r, f->json);
  } else if (r->route == SR_CFILE_DELETE) {
    delete_file(r, c, s[4]);
  } else {
    content(r, f);
  }
  sstore_unlock();
}

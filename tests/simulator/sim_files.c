/* sim_files.c -- /v1/files: streamed multipart uploads into a spool directory. */
#include "sim_files.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "sim_faults.h"
#include "sim_map.h"
#include "sim_page.h"
#include "sim_req.h"
#include "sim_store.h"
#include "sim_vector_stores.h"

#define MAX_FIELDS 8
#define FIELD_KEY_MAX 64
#define FIELD_VAL_MAX 256
#define FILENAME_MAX_LEN 512
#define PP_BUFFER (16 * 1024)

/* ---- the kept files --------------------------------------------------- */

typedef struct sfile {
  char id[40];
  char *path;     /* the spool file */
  char *filename; /* as uploaded */
  cJSON *json;    /* the OpenAIFile object */
} sfile;

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static sfile **g_files; /* creation order */
static size_t g_n, g_cap;
static smap g_ids;
static char g_dir[PATH_MAX];
static int g_dir_made;
static unsigned long g_upload_seq;

static void file_free(sfile *f) {
  if (!f) return;
  if (f->path) unlink(f->path);
  free(f->path);
  free(f->filename);
  cJSON_Delete(f->json);
  free(f);
}

int sfiles_init(const char *dir, char *err, size_t n) {
  if (dir) {
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
      return aw_seterr(AW_ECONFIG, err, n, "--files-dir %s: %s", dir, strerror(errno));
    if (snprintf(g_dir, sizeof g_dir, "%s", dir) >= (int)sizeof g_dir)
      return aw_seterr(AW_ECONFIG, err, n, "--files-dir is too long");
    return AW_OK;
  }
  const char *tmp = getenv("TMPDIR");
  snprintf(g_dir, sizeof g_dir, "%s/aw-simulator-files-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(g_dir)) return aw_seterr(AW_ECONFIG, err, n, "cannot make a spool directory: %s", strerror(errno));
  g_dir_made = 1;
  return AW_OK;
}

void sfiles_reset(void) {
  pthread_mutex_lock(&g_mu);
  for (size_t i = 0; i < g_n; i++) file_free(g_files[i]);
  free(g_files);
  g_files = NULL;
  g_n = g_cap = 0;
  smap_free(&g_ids);
  pthread_mutex_unlock(&g_mu);
}

void sfiles_shutdown(void) {
  sfiles_reset();
  if (g_dir_made && rmdir(g_dir) != 0) log_warn(NULL, "spool directory %s not removed: %s", g_dir, strerror(errno));
}

int sfiles_lookup(const char *id, char *filename, size_t fn_size, char *path, size_t path_size) {
  pthread_mutex_lock(&g_mu);
  sfile *f = smap_get(&g_ids, id);
  if (f) {
    snprintf(filename, fn_size, "%s", f->filename);
    snprintf(path, path_size, "%s", f->path);
  }
  pthread_mutex_unlock(&g_mu);
  return f ? AW_OK : AW_ENOTFOUND;
}

/* ---- uploads ---------------------------------------------------------- */

typedef struct field {
  char key[FIELD_KEY_MAX + 1];
  char val[FIELD_VAL_MAX + 1];
  size_t len;
} field;

struct sfiles_upload {
  struct MHD_PostProcessor *pp;
  int fd;                 /* the temporary file, -1 when closed */
  char tmp[PATH_MAX];     /* its path ("" when there is none) */
  uint64_t bytes, max_bytes;
  int have_file, too_big, dup_file, io_error, bad_form, too_many_fields, long_field, kept;
  char filename[FILENAME_MAX_LEN + 1];
  int long_filename;
  EVP_MD_CTX *sha;
  char sha_hex[65];
  int nfields;
  field fields[MAX_FIELDS];
};

static void close_tmp(sfiles_upload *u, int remove) {
  if (u->fd >= 0) close(u->fd);
  u->fd = -1;
  if (remove && u->tmp[0]) unlink(u->tmp);
  if (remove) u->tmp[0] = '\0';
}

static void file_data(sfiles_upload *u, const char *filename, const char *data, uint64_t off, size_t size) {
  if (off == 0 && u->have_file && u->bytes > 0) u->dup_file = 1;
  if (u->dup_file) return;
  if (!u->have_file) {
    u->have_file = 1;
    const char *name = filename && *filename ? filename : "file";
    if (strlen(name) > FILENAME_MAX_LEN) u->long_filename = 1;
    snprintf(u->filename, sizeof u->filename, "%s", name);
    pthread_mutex_lock(&g_mu);
    unsigned long seq = ++g_upload_seq;
    pthread_mutex_unlock(&g_mu);
    int w = snprintf(u->tmp, sizeof u->tmp, "%s/upload-%ld-%lu.part", g_dir, (long)getpid(), seq);
    u->fd = w > 0 && w < (int)sizeof u->tmp ? open(u->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600) : -1;
    if (u->fd < 0) {
      log_warn(NULL, "upload: cannot create %s: %s", u->tmp, strerror(errno));
      u->tmp[0] = '\0';
      u->io_error = 1;
    }
  }
  if (!size) return;
  u->bytes += size;
  if (u->bytes > u->max_bytes && !u->too_big) {
    /* Keep reading (the client is still sending) but keep nothing. */
    u->too_big = 1;
    close_tmp(u, 1);
  }
  if (u->too_big || u->io_error) return;
  EVP_DigestUpdate(u->sha, data, size);
  for (size_t done = 0; done < size;) {
    ssize_t w = write(u->fd, data + done, size - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      log_warn(NULL, "upload: write %s: %s", u->tmp, strerror(errno));
      u->io_error = 1;
      close_tmp(u, 1);
      return;
    }
    done += (size_t)w;
  }
}

static enum MHD_Result on_part(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
                               const char *content_type, const char *transfer_encoding, const char *data,
                               uint64_t off, size_t size) {
  (void)kind;
  (void)content_type;
  (void)transfer_encoding;
  sfiles_upload *u = cls;
  if (!key) return MHD_YES;
  if (strcmp(key, "file") == 0) {
    file_data(u, filename, data, off, size);
    return MHD_YES;
  }
  /* A form field: kept whole if small (they all are: purpose, expires_after). */
  field *f = NULL;
  if (off > 0 && u->nfields > 0 && strcmp(u->fields[u->nfields - 1].key, key) == 0) f = &u->fields[u->nfields - 1];
  if (!f) {
    if (u->nfields == MAX_FIELDS) {
      u->too_many_fields = 1;
      return MHD_YES;
    }
    f = &u->fields[u->nfields++];
    if (strlen(key) > FIELD_KEY_MAX) u->long_field = 1;
    snprintf(f->key, sizeof f->key, "%s", key);
  }
  if (f->len + size > FIELD_VAL_MAX) {
    u->long_field = 1;
    return MHD_YES;
  }
  memcpy(f->val + f->len, data, size);
  f->len += size;
  f->val[f->len] = '\0';
  return MHD_YES;
}

sfiles_upload *sfiles_upload_begin(struct MHD_Connection *c, const char *method, const char *url) {
  if (strcmp(method, "POST") != 0 || (strcmp(url, "/v1/files") != 0 && strcmp(url, "/v1/files/") != 0)) return NULL;
  const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
  if (!ct || strncasecmp(ct, "multipart/form-data", 19) != 0) return NULL;
  sfiles_upload *u = calloc(1, sizeof *u);
  if (!u) return NULL;
  u->fd = -1;
  sfault_cfg cfg;
  sfault_get(&cfg);
  u->max_bytes = cfg.max_file_bytes;
  u->sha = EVP_MD_CTX_new();
  u->pp = MHD_create_post_processor(c, PP_BUFFER, on_part, u);
  if (!u->sha || !u->pp || EVP_DigestInit_ex(u->sha, EVP_sha256(), NULL) != 1) {
    if (u->pp) MHD_destroy_post_processor(u->pp);
    EVP_MD_CTX_free(u->sha);
    free(u);
    return NULL;
  }
  return u;
}

void sfiles_upload_feed(sfiles_upload *u, const char *data, size_t size) {
  if (!u->pp || u->bad_form) return;
  if (MHD_post_process(u->pp, data, size) != MHD_YES) u->bad_form = 1;
}

void sfiles_upload_finish(sfiles_upload *u) {
  if (u->pp && MHD_destroy_post_processor(u->pp) != MHD_YES) u->bad_form = 1;
  u->pp = NULL;
  if (u->fd >= 0) {
    if (fsync(u->fd) != 0 && errno != EINVAL) u->io_error = 1;
    close_tmp(u, 0);
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  if (u->sha && EVP_DigestFinal_ex(u->sha, md, &mdlen) == 1)
    for (unsigned i = 0; i < mdlen && i < 32; i++) snprintf(u->sha_hex + 2 * i, 3, "%02x", md[i]);
  EVP_MD_CTX_free(u->sha);
  u->sha = NULL;
}

void sfiles_upload_free(sfiles_upload *u) {
  if (!u) return;
  if (u->pp) MHD_destroy_post_processor(u->pp);
  EVP_MD_CTX_free(u->sha);
  close_tmp(u, !u->kept);
  free(u);
}

/* expires_after[anchor] -> {"expires_after":{"anchor":...}}; an integer
 * value is recorded as a number, as the schema types it. */
static void put_field(cJSON *o, const field *f) {
  const char *br = strchr(f->key, '[');
  size_t kl = strlen(f->key);
  if (!br || kl < 3 || f->key[kl - 1] != ']') {
    jset(o, f->key, cJSON_CreateString(f->val));
    return;
  }
  char outer[FIELD_KEY_MAX + 1], inner[FIELD_KEY_MAX + 1], *end;
  snprintf(outer, sizeof outer, "%.*s", (int)(br - f->key), f->key);
  snprintf(inner, sizeof inner, "%.*s", (int)(kl - (size_t)(br - f->key) - 2), br + 1);
  long long num = strtoll(f->val, &end, 10);
  cJSON *sub = cJSON_GetObjectItemCaseSensitive(o, outer);
  if (!cJSON_IsObject(sub)) {
    sub = cJSON_CreateObject();
    jset(o, outer, sub);
  }
  jset(sub, inner, f->len && !*end ? cJSON_CreateNumber((double)num) : cJSON_CreateString(f->val));
}

cJSON *sfiles_upload_record(const sfiles_upload *u) {
  cJSON *o = cJSON_CreateObject();
  for (int i = 0; i < u->nfields; i++) put_field(o, &u->fields[i]);
  if (u->have_file) {
    cJSON *f = cJSON_AddObjectToObject(o, "file");
    cJSON_AddStringToObject(f, "filename", u->filename);
    cJSON_AddNumberToObject(f, "bytes", (double)u->bytes);
    cJSON_AddStringToObject(f, "sha256", u->too_big || u->io_error ? "" : u->sha_hex);
  }
  return o;
}

/* ---- routes ----------------------------------------------------------- */

static const char *const purposes[] = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals", NULL};

static const field *get_field(const sfiles_upload *u, const char *key) {
  for (int i = u->nfields - 1; i >= 0; i--)
    if (strcmp(u->fields[i].key, key) == 0) return &u->fields[i];
  return NULL;
}

/* Validate the form as CreateFileRequest; 0 or -1 with r set. */
static int check_form(const sfiles_upload *u, sapi_reply *r, long *expires_s) {
  if (u->bad_form) {
    SREQ_BAD(r, NULL, NULL, "Could not parse the multipart form data.");
    return -1;
  }
  if (u->too_many_fields || u->long_field) {
    SREQ_BAD(r, NULL, NULL, "Too many or too long form fields (at most %d, values up to %d characters).", MAX_FIELDS,
             FIELD_VAL_MAX);
    return -1;
  }
  for (int i = 0; i < u->nfields; i++) {
    const char *k = u->fields[i].key;
    if (strcmp(k, "purpose") != 0 && strcmp(k, "expires_after[anchor]") != 0 && strcmp(k, "expires_after[seconds]") != 0) {
      SREQ_BAD(r, k, "unknown_parameter", "Unknown parameter: '%s'.", k);
      return -1;
    }
  }
  if (!u->have_file) {
    SREQ_BAD(r, "file", "missing_required_parameter", "Missing required parameter: 'file'.");
    return -1;
  }
  if (u->dup_file) {
    SREQ_BAD(r, "file", "invalid_value", "Invalid 'file': expected one file, got several.");
    return -1;
  }
  const field *p = get_field(u, "purpose");
  if (!p) {
    SREQ_BAD(r, "purpose", "missing_required_parameter", "Missing required parameter: 'purpose'.");
    return -1;
  }
  int ok = 0;
  for (int i = 0; purposes[i]; i++) ok |= strcmp(purposes[i], p->val) == 0;
  if (!ok) {
    SREQ_BAD(r, "purpose", "invalid_value",
             "Invalid value: '%s'. Supported values are: 'assistants', 'batch', 'fine-tune', 'vision', 'user_data' and "
             "'evals'.",
             p->val);
    return -1;
  }
  const field *an = get_field(u, "expires_after[anchor]"), *se = get_field(u, "expires_after[seconds]");
  *expires_s = 0;
  if (an || se) {
    char *end = NULL;
    long secs = se ? strtol(se->val, &end, 10) : 0;
    if (!an || strcmp(an->val, "created_at") != 0) {
      SREQ_BAD(r, "expires_after.anchor", an ? "invalid_value" : "missing_required_parameter",
               "Invalid 'expires_after.anchor': expected 'created_at'.");
      return -1;
    }
    if (!se || !se->len || *end || secs < 3600 || secs > 2592000) {
      SREQ_BAD(r, "expires_after.seconds", se ? "invalid_value" : "missing_required_parameter",
               "Invalid 'expires_after.seconds': expected an integer between 3600 and 2592000.");
      return -1;
    }
    *expires_s = secs;
  }
  if (u->long_filename) {
    SREQ_BAD(r, "file", "invalid_value", "Invalid 'file': the file name is longer than %d characters.",
             FILENAME_MAX_LEN);
    return -1;
  }
  return 0;
}

static void file_create(const sapi_req *q, sapi_reply *r) {
  sfiles_upload *u = q->upload;
  if (!u) {
    SREQ_BAD(r, NULL, NULL,
             "Invalid Content-Type: expected multipart/form-data with a 'file' part and a 'purpose' field.");
    return;
  }
  long expires_s = 0;
  if (check_form(u, r, &expires_s)) return;
  if (u->too_big) {
    sreq_err(r, 413, "invalid_request_error", "file", "file_too_large",
             "File is too large: %llu bytes. The maximum file size is %llu bytes.", (unsigned long long)u->bytes,
             (unsigned long long)u->max_bytes);
    return;
  }
  if (u->io_error || !u->tmp[0]) {
    sreq_err(r, 500, "server_error", NULL, NULL, "The server could not store the file.");
    return;
  }
  sfile *f = calloc(1, sizeof *f);
  if (!f) {
    sreq_json(r, 500, NULL);
    return;
  }
  sstore_lock(); /* the id generator is the store's */
  sstore_make_id("file-", f->id, sizeof f->id);
  sstore_unlock();
  char path[PATH_MAX];
  int w = snprintf(path, sizeof path, "%s/%s", g_dir, f->id);
  f->path = w > 0 && w < (int)sizeof path ? strdup(path) : NULL;
  f->filename = strdup(u->filename);
  f->json = cJSON_CreateObject();
  if (!f->path || !f->filename || !f->json || rename(u->tmp, path) != 0) {
    free(f->path); /* nothing there to unlink: the upload's temp file goes with the upload */
    f->path = NULL;
    file_free(f);
    sreq_err(r, 500, "server_error", NULL, NULL, "The server could not store the file.");
    return;
  }
  u->kept = 1;
  int64_t now = sstore_unix_now();
  cJSON *j = f->json;
  cJSON_AddStringToObject(j, "id", f->id);
  cJSON_AddStringToObject(j, "object", "file");
  cJSON_AddNumberToObject(j, "bytes", (double)u->bytes);
  cJSON_AddNumberToObject(j, "created_at", (double)now);
  if (expires_s) cJSON_AddNumberToObject(j, "expires_at", (double)(now + expires_s));
  cJSON_AddStringToObject(j, "filename", f->filename);
  cJSON_AddStringToObject(j, "purpose", get_field(u, "purpose")->val);
  cJSON_AddStringToObject(j, "status", "processed");
  pthread_mutex_lock(&g_mu);
  int ok = 1;
  if (g_n == g_cap) {
    size_t nc = g_cap ? g_cap * 2 : 64;
    sfile **v = realloc(g_files, nc * sizeof *v);
    if (v) {
      g_files = v;
      g_cap = nc;
    } else {
      ok = 0;
    }
  }
  if (ok && smap_put(&g_ids, f->id, f) != AW_OK) ok = 0;
  if (ok) {
    g_files[g_n++] = f;
    sreq_obj(r, f->json);
  }
  pthread_mutex_unlock(&g_mu);
  if (!ok) {
    file_free(f);
    sreq_json(r, 500, NULL);
    return;
  }
  log_info(NULL, "file %s stored: %llu bytes", f->id, (unsigned long long)u->bytes);
}

int sfiles_add_bytes(const char *filename, const char *purpose, const void *data, size_t len, char *id_out,
                     size_t id_size) {
  sfile *f = calloc(1, sizeof *f);
  if (!f) return AW_ENOMEM;
  sstore_make_id("file-", f->id, sizeof f->id);
  char path[PATH_MAX];
  int w = snprintf(path, sizeof path, "%s/%s", g_dir, f->id);
  f->path = w > 0 && w < (int)sizeof path ? strdup(path) : NULL;
  f->filename = strdup(filename);
  f->json = cJSON_CreateObject();
  if (!f->path || !f->filename || !f->json) {
    file_free(f);
    return AW_ENOMEM;
  }
  int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int ok = fd >= 0 && write(fd, data, len) == (ssize_t)len;
  if (fd >= 0 && close(fd) != 0) ok = 0;
  if (!ok) {
    file_free(f); /* unlinks what was written */
    return AW_EIO;
  }
  cJSON *j = f->json;
  cJSON_AddStringToObject(j, "id", f->id);
  cJSON_AddStringToObject(j, "object", "file");
  cJSON_AddNumberToObject(j, "bytes", (double)len);
  cJSON_AddNumberToObject(j, "created_at", (double)sstore_unix_now());
  cJSON_AddStringToObject(j, "filename", f->filename);
  cJSON_AddStringToObject(j, "purpose", purpose);
  cJSON_AddStringToObject(j, "status", "processed");
  pthread_mutex_lock(&g_mu);
  int rc = AW_OK;
  if (g_n == g_cap) {
    size_t nc = g_cap ? g_cap * 2 : 64;
    sfile **v = realloc(g_files, nc * sizeof *v);
    if (v) {
      g_files = v;
      g_cap = nc;
    } else {
      rc = AW_ENOMEM;
    }
  }
  if (rc == AW_OK && smap_put(&g_ids, f->id, f) != AW_OK) rc = AW_ENOMEM;
  if (rc == AW_OK) {
    g_files[g_n++] = f;
    snprintf(id_out, id_size, "%s", f->id);
  }
  pthread_mutex_unlock(&g_mu);
  if (rc != AW_OK) file_free(f);
  return rc;
}

static void file_list(const sapi_req *q, sapi_reply *r) {
  const char *purpose = q->arg(q->arg_cls, "purpose");
  static const spage_opts opts = {10000, 10000, 0};
  pthread_mutex_lock(&g_mu);
  cJSON **v = g_n ? malloc(g_n * sizeof *v) : NULL;
  size_t n = 0;
  if (g_n && !v) {
    pthread_mutex_unlock(&g_mu);
    sreq_json(r, 500, NULL);
    return;
  }
  for (size_t i = 0; i < g_n; i++) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(g_files[i]->json, "purpose");
    if (!purpose || strcmp(p->valuestring, purpose) == 0) v[n++] = g_files[i]->json;
  }
  spage_reply(q, r, v, n, &opts);
  pthread_mutex_unlock(&g_mu);
  free(v);
}

static void file_content(sapi_reply *r, const char *id) {
  pthread_mutex_lock(&g_mu);
  sfile *f = smap_get(&g_ids, id);
  int fd = f ? open(f->path, O_RDONLY | O_CLOEXEC) : -1;
  pthread_mutex_unlock(&g_mu);
  struct stat st;
  if (!f) {
    sreq_not_found(r, "file", id);
  } else if (fd < 0 || fstat(fd, &st) != 0) {
    if (fd >= 0) close(fd);
    sreq_err(r, 500, "server_error", NULL, NULL, "The server could not read the file.");
  } else {
    /* A file deleted while it is sent keeps its bytes until the fd closes. */
    r->status = 200;
    r->has_fd = 1;
    r->fd = fd;
    r->fd_size = (uint64_t)st.st_size;
  }
}

static void file_delete(sapi_reply *r, const char *id) {
  pthread_mutex_lock(&g_mu);
  sfile *f = smap_del(&g_ids, id);
  if (f) {
    size_t i = 0;
    while (i < g_n && g_files[i] != f) i++;
    if (i < g_n) memmove(&g_files[i], &g_files[i + 1], (g_n - i - 1) * sizeof *g_files);
    g_n--;
  }
  pthread_mutex_unlock(&g_mu);
  if (!f) {
    sreq_not_found(r, "file", id);
    return;
  }
  file_free(f);
  svs_file_deleted(id); /* "Delete a file and remove it from all vector stores." */
  sreq_deleted(r, id, "file");
}

void sfiles_handle(const sapi_req *q, sapi_reply *r, char s[][64]) {
  switch (r->route) {
  case SR_FILE_CREATE: file_create(q, r); return;
  case SR_FILE_LIST: file_list(q, r); return;
  case SR_FILE_CONTENT: file_content(r, s[2]); return;
  case SR_FILE_DELETE: file_delete(r, s[2]); return;
  case SR_FILE_GET: {
    pthread_mutex_lock(&g_mu);
    sfile *f = smap_get(&g_ids, s[2]);
    if (f) sreq_obj(r, f->json);
    else sreq_not_found(r, "file", s[2]);
    pthread_mutex_unlock(&g_mu);
    return;
  }
  default: sreq_err(r, 404, "invalid_request_error", NULL, NULL, "Invalid URL (%s %s)", q->method, q->path); return;
  }
}

/* cli_files.c -- `send`'s local files: images and attachments in, generated
 * files out (see cli_files.h for why this is a module of its own).
 *
 * Names that come back from the API are untrusted: a generated file is
 * written as dir/<name> only when the name is one plain component (no
 * '/', '\\', not starting with '.', printable ASCII or UTF-8, at most 255
 * bytes), else as dir/<file id> (ids are checked the same way; a file with
 * neither is refused).  The file is opened with O_NOFOLLOW so a symlink
 * planted in dir is not followed, written whole, and removed again when
 * the write fails, so no half file is left under a name that looks done.
 *
 * A file by reference is fetched by running this binary's `file get` as a
 * child process rather than calling cmd_file_main in-process: `file`
 * scrubs the API key from the environment once it has read it (so a second
 * fetch in the same process would find none), and a child keeps the two
 * commands' state apart.  Cost: one exec per file by reference, which only
 * large files take.
 */
#include "cli_files.h"

#include "fd_io.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <openssl/evp.h>
#include "contract.h"

extern char **environ;

#define PROG "assistant-worker send"
#define NAME_MAX_BYTES 255

/* ---- in ----------------------------------------------------------------------- */

int clif_read(const char *path, size_t max, unsigned char **data, size_t *len, char *err, size_t errsz) {
  *data = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return aw_seterr(AW_EIO, err, errsz, "%s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return aw_seterr(AW_EIO, err, errsz, "%s: not a regular file", path);
  }
  if ((unsigned long long)st.st_size > max) {
    close(fd);
    return aw_seterr(AW_ETOOBIG, err, errsz, "%s: %lld bytes, more than the %zu a request can carry", path,
                     (long long)st.st_size, max);
  }
  /* Read to EOF within max (+1 to notice a file that grew since fstat). */
  size_t cap = (size_t)st.st_size + 1, n = 0;
  unsigned char *p = malloc(cap);
  if (!p) {
    close(fd);
    return aw_seterr(AW_ENOMEM, err, errsz, "out of memory");
  }
  for (;;) {
    ssize_t r = read(fd, p + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      free(p);
      close(fd);
      return aw_seterr(AW_EIO, err, errsz, "%s: %s", path, strerror(e));
    }
    if (r == 0) break;
    n += (size_t)r;
    if (n == cap) {
      free(p);
      close(fd);
      return aw_seterr(AW_ETOOBIG, err, errsz, "%s: grew while it was read", path);
    }
  }
  close(fd);
  if (n == 0) {
    free(p);
    return aw_seterr(AW_EINVAL, err, errsz, "%s: empty file", path);
  }
  *data = p;
  *len = n;
  return AW_OK;
}

static const struct {
  const char *ext, *type;
  int data; /* code_interpreter by default */
} TYPES[] = {
    {"png", "image/png", 0},
    {"jpg", "image/jpeg", 0},
    {"jpeg", "image/jpeg", 0},
    {"gif", "image/gif", 0},
    {"webp", "image/webp", 0},
    {"csv", "text/csv", 1},
    {"json", "application/json", 1},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", 1},
    {"txt", "text/plain", 0},
    {"md", "text/markdown", 0},
    {"html", "text/html", 0},
    {"htm", "text/html", 0},
    {"pdf", "application/pdf", 0},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document", 0},
    {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation", 0},
};

static int type_index(const char *name, size_t len) {
  const char *dot = NULL;
  for (size_t i = 0; i < len; i++)
    if (name[i] == '.') dot = name + i;
    else if (name[i] == '/') dot = NULL;
  if (!dot) return -1;
  size_t elen = len - (size_t)(dot + 1 - name);
  for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++)
    if (strlen(TYPES[i].ext) == elen && strncasecmp(TYPES[i].ext, dot + 1, elen) == 0) return (int)i;
  return -1;
}

const char *clif_media_type(const char *name) {
  int i = name ? type_index(name, strlen(name)) : -1;
  return i < 0 ? NULL : TYPES[i].type;
}

const char *clif_basename(const char *path) {
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

/* "file_search", "code_interpreter", or both joined by ','; 0 when not. */
static unsigned parse_tools(const char *s) {
  unsigned bits = 0;
  while (*s) {
    const char *end = strchr(s, ',');
    size_t n = end ? (size_t)(end - s) : strlen(s);
    if (n == 11 && strncmp(s, "file_search", n) == 0) bits |= CONTRACT_ATT_FILE_SEARCH;
    else if (n == 16 && strncmp(s, "code_interpreter", n) == 0) bits |= CONTRACT_ATT_CODE_INTERPRETER;
    else return 0;
    if (!end) break;
    s = end + 1;
    if (!*s) return 0;
  }
  return bits;
}

void clif_attach_spec(const char *spec, size_t *path_len, unsigned *tools) {
  const char *colon = strrchr(spec, ':');
  unsigned bits = colon ? parse_tools(colon + 1) : 0;
  if (bits) {
    *path_len = (size_t)(colon - spec);
    *tools = bits;
    return;
  }
  *path_len = strlen(spec);
  int i = type_index(spec, *path_len);
  *tools = i >= 0 && TYPES[i].data ? CONTRACT_ATT_CODE_INTERPRETER : CONTRACT_ATT_FILE_SEARCH;
}

int clif_is_url(const char *s) {
  return strncmp(s, "https://", 8) == 0 || strncmp(s, "http://", 7) == 0 || strncmp(s, "data:", 5) == 0;
}

/* ---- out ---------------------------------------------------------------------- */

static const char *str(const cJSON *o, const char *k) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
  return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* One plain path component, safe to create inside a directory. */
static int plain_name(const char *s) {
  size_t n = s ? strlen(s) : 0;
  if (n == 0 || n > NAME_MAX_BYTES || s[0] == '.') return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f || c == '/' || c == '\\') return 0;
  }
  return 1;
}

/* Standard base64 (padded) to bytes; *out malloc'd.  AW_EINVAL when it is not. */
static int unbase64(const char *s, unsigned char **out, size_t *len) {
  size_t n = strlen(s);
  *out = NULL;
  *len = 0;
  if (n == 0 || n % 4 || n > (size_t)0x7ffffff0) return AW_EINVAL;
  unsigned char *p = malloc(n / 4 * 3 + 1);
  if (!p) return AW_ENOMEM;
  int r = EVP_DecodeBlock(p, (const unsigned char *)s, (int)n);
  if (r < 0) {
    free(p);
    return AW_EINVAL;
  }
  /* EVP_DecodeBlock counts the padding as zero bytes. */
  size_t pad = (s[n - 1] == '=') + (s[n - 2] == '=');
  *out = p;
  *len = (size_t)r - pad;
  return AW_OK;
}

static int write_file(const char *path, const unsigned char *data, size_t len, char *err, size_t errsz) {
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return aw_seterr(AW_EIO, err, errsz, "%s: %s", path, strerror(errno));
  int e = aw_write_all(fd, data, len);
  if (e) {
    close(fd);
    unlink(path);
    return aw_seterr(AW_EIO, err, errsz, "%s: %s", path, strerror(e));
  }
  if (close(fd) != 0) {
    int e = errno;
    unlink(path);
    return aw_seterr(AW_EIO, err, errsz, "%s: %s", path, strerror(e));
  }
  return AW_OK;
}

/* `assistant-worker file get ID [--container C] --out PATH [--config F]`
 * in a child process; its diagnostics go to our stderr. */
static int fetch_by_reference(const char *id, const char *container, const char *path, const char *config,
                              char *err, size_t errsz) {
  char *argv[12];
  int a = 0;
  argv[a++] = "assistant-worker";
  argv[a++] = "file";
  argv[a++] = "get";
  argv[a++] = (char *)id;
  argv[a++] = "--out";
  argv[a++] = (char *)path;
  if (container) {
    argv[a++] = "--container";
    argv[a++] = (char *)container;
  }
  if (config) {
    argv[a++] = "--config";
    argv[a++] = (char *)config;
  }
  argv[a] = NULL;
  fflush(NULL);
  pid_t pid;
  int rc = posix_spawn(&pid, "/proc/self/exe", NULL, NULL, argv, environ);
  if (rc) return aw_seterr(AW_EIO, err, errsz, "cannot run `file get`: %s", strerror(rc));
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return aw_seterr(AW_EIO, err, errsz, "waitpid: %s", strerror(errno));
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return aw_seterr(AW_EIO, err, errsz, "`file get %s%s%s` failed (exit %d)", id, container ? " --container " : "",
                     container ? container : "", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  return AW_OK;
}

int clif_save_files(const cJSON *response, const char *dir, const char *config, char *err, size_t errsz) {
  const cJSON *files = cJSON_GetObjectItemCaseSensitive(response, "files");
  if (!cJSON_IsArray(files) || cJSON_GetArraySize(files) == 0) return 0;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) return aw_seterr(AW_EIO, err, errsz, "%s: %s", dir, strerror(errno));
  int saved = 0;
  const cJSON *f;
  cJSON_ArrayForEach(f, files) {
    const char *id = str(f, "file_id"), *name = str(f, "filename"), *container = str(f, "container_id");
    const char *type = str(f, "media_type"), *b64 = str(f, "data");
    const char *as = plain_name(name) ? name : plain_name(id) ? id : NULL;
    if (!as) return aw_seterr(AW_EINVAL, err, errsz, "a generated file has neither a usable name nor id");
    size_t plen = strlen(dir) + 1 + strlen(as) + 1;
    char *path = malloc(plen);
    if (!path) return aw_seterr(AW_ENOMEM, err, errsz, "out of memory");
    snprintf(path, plen, "%s/%s", dir, as);
    int rc;
    size_t len = 0;
    if (b64) {
      unsigned char *data = NULL;
      rc = unbase64(b64, &data, &len);
      if (rc) aw_seterr(rc, err, errsz, "%s: its inline data is not base64", as);
      else rc = write_file(path, data, len, err, errsz);
      free(data);
    } else if (!plain_name(id)) {
      rc = aw_seterr(AW_EINVAL, err, errsz, "%s: by reference without a usable file id", as);
    } else if (container && !plain_name(container)) {
      rc = aw_seterr(AW_EINVAL, err, errsz, "%s: by reference with an unusable container id", as);
    } else {
      rc = fetch_by_reference(id, container, path, config, err, errsz);
      struct stat st;
      if (!rc && stat(path, &st) == 0) len = (size_t)st.st_size;
    }
    if (rc) {
      free(path);
      return rc;
    }
    fprintf(stderr, PROG ": saved %s (%zu bytes, %s%s) to %s\n", as, len, type ? type : "application/octet-stream",
            b64 ? ", inline" : ", by reference", path);
    free(path);
    saved++;
  }
  return saved;
}

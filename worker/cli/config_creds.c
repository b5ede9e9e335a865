/* config_creds.c -- the credentials of the infrastructure: Redis AUTH and
 * Kafka SASL / TLS.
 *
 * Why a file of its own: these are the only settings that come from two
 * kinds of source with one rule between them.  The configuration file lives
 * in a ConfigMap, which is not secret, so a password is never read from it
 * (a "redis.password" or "kafka.sasl_password" key is refused with a
 * message, like the API key).  A password comes from the environment
 * (AW_REDIS_PASSWORD, AW_KAFKA_SASL_PASSWORD, AW_KAFKA_SSL_KEY_PASSWORD) or
 * from a file named by a setting (redis.password_file /
 * AW_REDIS_PASSWORD_FILE, kafka.sasl_password_file /
 * AW_KAFKA_SASL_PASSWORD_FILE): a Kubernetes Secret mounted as a volume,
 * which never shows in the process environment at all.  Both for one
 * password is an error rather than a silent precedence: a stale value that
 * quietly wins is the kind of mistake that costs an afternoon.
 *
 * A file is read once, at load: a rotated Secret needs a restart (a
 * rollout).  Its content is the password, with one trailing newline
 * dropped (`echo pw > file`, `kubectl create secret --from-file`); it is
 * bounded (CFG_SECRET_SIZE) and may hold no control character.  Errors
 * name the variable or the file, never the content, and the buffers that
 * held it are wiped.
 */
#include "config_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A password's bytes: not empty, no control characters. */
static int check_secret(const char *v, size_t len, const char *where, char *errstr, size_t n) {
  if (len == 0) return cfg_err(errstr, n, "%s: empty", where);
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
      return cfg_err(errstr, n, "%s: contains a control character (or a NUL byte)", where);
  return AW_OK;
}

/* The password in the file path into dst (size bytes with the NUL);
 * setting names the setting that named the file, for errors. */
static int read_secret_file(const char *path, const char *setting, char *dst, size_t size, char *errstr,
                            size_t n) {
  char where[CFG_PATH_SIZE + 64];
  snprintf(where, sizeof where, "%s (%s)", setting, path);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return cfg_err(errstr, n, "%s: cannot open: %s", where, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return cfg_err(errstr, n, "%s: not a regular file", where);
  }
  /* Room for the longest password plus "\r\n", and one byte more to
   * notice a longer file. */
  char tmp[CFG_SECRET_SIZE + 3];
  size_t len = 0;
  for (;;) {
    ssize_t k = read(fd, tmp + len, sizeof tmp - len);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      int e = errno;
      close(fd);
      explicit_bzero(tmp, sizeof tmp);
      return cfg_err(errstr, n, "%s: read error: %s", where, strerror(e));
    }
    if (k == 0 || (len += (size_t)k) == sizeof tmp) break;
  }
  close(fd);
  if (len > 0 && tmp[len - 1] == '\n') len--;
  if (len > 0 && tmp[len - 1] == '\r') len--;
  int rc = AW_OK;
  if (len >= size)
    rc = cfg_err(errstr, n, "%s: too long (at most %zu bytes)", where, size - 1);
  else
    rc = check_secret(tmp, len, where, errstr, n);
  if (rc == AW_OK) {
    memcpy(dst, tmp, len);
    dst[len] = '\0';
  }
  explicit_bzero(tmp, sizeof tmp);
  return rc;
}

/* One password: from the variable env, or the file named by file_setting
 * (the path in file, already loaded from the file or its variable). */
static int load_password(const char *env, const char *file, const char *file_setting, char *dst, size_t size,
                         char *errstr, size_t n) {
  const char *v = cfg_env(env);
  if (v && file && file[0])
    return cfg_err(errstr, n, "%s and %s are both set: set one (the variable, or the file it names)", env,
                   file_setting);
  if (file && file[0]) return read_secret_file(file, file_setting, dst, size, errstr, n);
  if (!v) return AW_OK;
  size_t len = strlen(v);
  if (len >= size) return cfg_err(errstr, n, "%s: too long (at most %zu bytes)", env, size - 1);
  int rc = check_secret(v, len, env, errstr, n);
  if (rc) return rc;
  memcpy(dst, v, len + 1);
  return AW_OK;
}

static const char *kafka_property(const cfg *c, const char *key) {
  for (size_t i = 0; i < c->kafka.nprops; i++)
    if (strcmp(c->kafka.props[i].key, key) == 0) return c->kafka.props[i].value;
  return NULL;
}

int cfg_apply_credentials(cfg *c, char *errstr, size_t n) {
  int rc = load_password("AW_REDIS_PASSWORD", c->redis.password_file, "redis.password_file / AW_REDIS_PASSWORD_FILE",
                         c->redis.password, sizeof c->redis.password, errstr, n);
  if (!rc)
    rc = load_password("AW_KAFKA_SASL_PASSWORD", c->kafka.sasl_password_file,
                       "kafka.sasl_password_file / AW_KAFKA_SASL_PASSWORD_FILE", c->kafka.sasl_password,
                       sizeof c->kafka.sasl_password, errstr, n);
  if (!rc)
    rc = load_password("AW_KAFKA_SSL_KEY_PASSWORD", NULL, NULL, c->kafka.ssl_key_password,
                       sizeof c->kafka.ssl_key_password, errstr, n);
  if (rc) return rc;
  if (c->redis.username[0] && !c->redis.password[0])
    return cfg_err(errstr, n,
                   "redis.username \"%.64s\" is set but no password: set AW_REDIS_PASSWORD or redis.password_file "
                   "(AW_REDIS_PASSWORD_FILE)",
                   c->redis.username);
  if (c->kafka.sasl_password[0] && !c->kafka.sasl_username[0] && !kafka_property(c, "sasl.username"))
    return cfg_err(errstr, n,
                   "a Kafka SASL password is set but no user name: set AW_KAFKA_SASL_USERNAME (kafka.sasl_username)");
  return AW_OK;
}

int cfg_is_credential_key(const char *path) {
  return strcmp(path, "redis.password") == 0 || strcmp(path, "redis.pass") == 0 ||
         strcmp(path, "kafka.sasl_password") == 0 || strcmp(path, "kafka.ssl_key_password") == 0;
}

int cfg_refuse_credential(const char *path, char *errstr, size_t n) {
  const char *how = strncmp(path, "redis.", 6) == 0 ? "AW_REDIS_PASSWORD, or redis.password_file naming a file"
                    : strcmp(path, "kafka.ssl_key_password") == 0
                        ? "AW_KAFKA_SSL_KEY_PASSWORD"
                        : "AW_KAFKA_SASL_PASSWORD, or kafka.sasl_password_file naming a file";
  return cfg_err(errstr, n,
                 "%s: passwords are not read from the config file on purpose; set %s (e.g. from a Kubernetes "
                 "Secret)",
                 path, how);
}

static int add_masked(cJSON *obj, const char *key, const char *secret) {
  cJSON *v = secret[0] ? cJSON_CreateString("***") : cJSON_CreateNull();
  if (v && cJSON_AddItemToObject(obj, key, v)) return 1;
  cJSON_Delete(v);
  return 0;
}

int cfg_dump_credentials(const cfg *c, cJSON *root) {
  cJSON *redis = cJSON_GetObjectItemCaseSensitive(root, "redis");
  cJSON *kafka = cJSON_GetObjectItemCaseSensitive(root, "kafka");
  if (!redis || !kafka) return AW_ENOMEM;
  int ok = add_masked(redis, "password", c->redis.password) &&
           add_masked(kafka, "sasl_password", c->kafka.sasl_password) &&
           add_masked(kafka, "ssl_key_password", c->kafka.ssl_key_password);
  return ok ? AW_OK : AW_ENOMEM;
}

/* The same rules for a secret of another module (the tool request key,
 * config_functions.c): one source, the variable or the file. */
int cfg_load_secret(const char *env, const char *path, const char *file_setting, char *dst, size_t size,
                    char *errstr, size_t n) {
  return load_password(env, path, file_setting, dst, size, errstr, n);
}

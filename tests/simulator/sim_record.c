/* sim_record.c -- append-only JSON-lines request log. */
#include "sim_record.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int g_fd = -1;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

int srec_open(const char *path, char *err, size_t n) {
  g_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (g_fd < 0) return aw_seterr(AW_EIO, err, n, "open %s: %s", path, strerror(errno));
  return AW_OK;
}

int srec_enabled(void) { return g_fd >= 0; }

void srec_write(cJSON *rec) {
  if (!rec) return;
  char *s = g_fd >= 0 ? cJSON_PrintUnformatted(rec) : NULL;
  cJSON_Delete(rec);
  if (!s) return;
  size_t len = strlen(s);
  s[len] = '\n'; /* overwrite the NUL: the line goes out in one write */
  pthread_mutex_lock(&g_mu);
  const char *p = s;
  size_t left = len + 1;
  while (left) {
    ssize_t w = write(g_fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break; /* a full disk must not take the simulator down */
    p += w;
    left -= (size_t)w;
  }
  pthread_mutex_unlock(&g_mu);
  free(s);
}

void srec_close(void) {
  if (g_fd >= 0) close(g_fd);
  g_fd = -1;
}

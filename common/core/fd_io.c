/* fd_io.c -- whole writes to a file descriptor (see fd_io.h). */
#include "fd_io.h"

#include <errno.h>
#include <unistd.h>

int aw_write_all(int fd, const void *data, size_t len) {
  const char *p = data;
  while (len) {
    ssize_t w = write(fd, p, len);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return w < 0 ? errno : EIO;
    p += w;
    len -= (size_t)w;
  }
  return 0;
}

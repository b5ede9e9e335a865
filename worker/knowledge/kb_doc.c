/* kb_doc.c -- a knowledge document's content hash and upload name (see
 * kb_doc.h). */
#include "kb_doc.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void kbd_file_name(const char *store, const char *vs, const char *sha_hex, const char *path, char *out, size_t n) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t head = strlen(KBD_FILE_PREFIX) + strlen(store) + 1 + strlen(vs) + 1 + KBD_SHA_PREFIX + 1;
  size_t room = n > head + 1 ? n - head - 1 : 0, bl = strlen(base);
  if (bl > room) base += bl - room; /* keep the end: the extension tells the API the type */
  snprintf(out, n, "%s%s.%s.%.*s.%s", KBD_FILE_PREFIX, store, vs, KBD_SHA_PREFIX, sha_hex, base);
}

int kbd_is_our_file(const char *store, const char *vs, const char *filename) {
  size_t pl = strlen(KBD_FILE_PREFIX), sl = strlen(store), vl = strlen(vs);
  if (!sl || !vl || strncmp(filename, KBD_FILE_PREFIX, pl) || strncmp(filename + pl, store, sl) ||
      filename[pl + sl] != '.' || strncmp(filename + pl + sl + 1, vs, vl) || filename[pl + sl + 1 + vl] != '.')
    return 0;
  const char *h = filename + pl + sl + 1 + vl + 1;
  return strspn(h, "0123456789abcdef") == KBD_SHA_PREFIX && h[KBD_SHA_PREFIX] == '.';
}

int kbd_hash(const char *path, int *fd, char sha_hex[65], long long *bytes, char *err, size_t errn) {
  *fd = open(path, O_RDONLY | O_CLOEXEC);
  if (*fd < 0) return aw_seterr(AW_ENOTFOUND, err, errn, "cannot open %s: %s", path, strerror(errno));
  struct stat st;
  if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) return aw_seterr(AW_EIO, err, errn, "%s is not a regular file", path);
  EVP_MD_CTX *md = EVP_MD_CTX_new();
  if (!md || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
    EVP_MD_CTX_free(md);
    return aw_seterr(AW_ENOMEM, err, errn, "sha256: out of memory");
  }
  /* Static: the loop thread is the only caller (start-up and the CLI). */
  static unsigned char chunk[64 * 1024];
  off_t off = 0;
  int rc = AW_OK;
  for (;;) {
    ssize_t got = pread(*fd, chunk, sizeof chunk, off);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      rc = aw_seterr(AW_EIO, err, errn, "reading %s: %s", path, strerror(errno));
      break;
    }
    if (got == 0) break;
    EVP_DigestUpdate(md, chunk, (size_t)got);
    off += got;
  }
  unsigned char dig[32];
  unsigned int dl = 0;
  if (!rc && EVP_DigestFinal_ex(md, dig, &dl) != 1) rc = aw_seterr(AW_EIO, err, errn, "sha256 failed");
  EVP_MD_CTX_free(md);
  if (rc) return rc;
  for (unsigned i = 0; i < 32; i++) snprintf(sha_hex + 2 * i, 3, "%02x", dig[i]);
  *bytes = (long long)off;
  return AW_OK;
}

/* proc_guard.c -- no core dumps of a process holding secrets (proc_guard.h). */
#include "proc_guard.h"

#include <errno.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

int pguard_no_core_dumps(char *errstr, size_t errstr_size) {
  struct rlimit none = {0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0)
    return aw_seterr(AW_EIO, errstr, errstr_size, "setrlimit(RLIMIT_CORE, 0): %s", strerror(errno));
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    return aw_seterr(AW_EIO, errstr, errstr_size, "prctl(PR_SET_DUMPABLE, 0): %s", strerror(errno));
  return AW_OK;
}

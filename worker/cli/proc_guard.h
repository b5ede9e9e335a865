/* proc_guard.h -- keep the process's secrets out of core dumps (prefix
 * pguard_).
 *
 * The API key, the tool secrets and every prompt and answer in flight live
 * in the worker's memory, so a core dump is a copy of them on the node's
 * disk (or in a crash collector).  pguard_no_core_dumps closes both ways a
 * Linux process dumps core: RLIMIT_CORE 0 (soft and hard, so nothing in the
 * process can raise it again) stops dumps written to a file, and
 * PR_SET_DUMPABLE 0 also stops dumps piped to a handler (core_pattern
 * "|...", e.g. systemd-coredump or apport), which ignore RLIMIT_CORE.  The
 * cost: no core to debug a crash with, and a non-dumpable process cannot be
 * ptrace'd (gdb -p, strace -p) by a user without CAP_SYS_PTRACE, and its
 * /proc/<pid>/ files belong to root.  `run` calls it unless
 * worker.allow_core_dumps is set.
 *
 * @locality main thread, at start-up.
 */
#ifndef AW_PROC_GUARD_H
#define AW_PROC_GUARD_H

#include <stddef.h>
#include "aw_error.h"

/** Make this process non-dumpable and set its core size limit to 0.
 *  AW_EIO with the failing call in errstr (the caller decides whether to go
 *  on). */
int pguard_no_core_dumps(char *errstr, size_t errstr_size) AW_MUST_CHECK;

#endif

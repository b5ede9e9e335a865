/* test_proc_guard.c -- `run` keeps secrets out of core dumps: after
 * pguard_no_core_dumps the process is not dumpable (no piped core either)
 * and its core size limit is 0, soft and hard.  Runs in a forked child so
 * that the test process itself is left as it was.  Needs: nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "proc_guard.h"

static void test_process_is_not_dumpable_and_core_limit_is_zero(void **state) {
  (void)state;
  assert_int_equal(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0), 1); /* the starting point */
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    char err[128];
    if (pguard_no_core_dumps(err, sizeof err) != AW_OK) _exit(10);
    if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 0) _exit(11);
    struct rlimit rl;
    if (getrlimit(RLIMIT_CORE, &rl) != 0 || rl.rlim_cur != 0 || rl.rlim_max != 0) _exit(12);
    struct rlimit up = {1 << 20, 1 << 20}; /* the hard limit cannot be raised again */
    if (setrlimit(RLIMIT_CORE, &up) == 0 && geteuid() != 0) _exit(13);
    _exit(0);
  }
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_process_is_not_dumpable_and_core_limit_is_zero),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

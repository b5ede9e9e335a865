/* sim_main.c -- aw-simulator: a local, stateful OpenAI Assistants API v2.
 *
 * Parses the flags, starts the timer thread and the HTTP daemon, then
 * waits for SIGINT/SIGTERM in sigwait() (signals are blocked in every
 * other thread, so no handler runs at an awkward moment) and shuts down in
 * order: HTTP (ending streams), timers, record file.  See README.md.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "sim_faults.h"
#include "sim_files.h"
#include "sim_http.h"
#include "sim_ratelimit.h"
#include "sim_record.h"
#include "sim_store.h"
#include "sim_timer.h"
#include "sim_vector_stores.h"

static const char usage[] =
    "usage: aw-simulator [options]\n"
    "  --host ADDR          listen address (default 127.0.0.1)\n"
    "  --port N             port, 0 = pick a free one (default 0)\n"
    "  --port-file PATH     write the bound port there once listening\n"
    "  --threads N          MHD polling threads (default 1)\n"
    "  --answer-tokens N    words per scripted answer (default 20)\n"
    "  --token-delay-ms N   delay between streamed tokens (default 0)\n"
    "  --latency-ms N       delay before every response (default 0)\n"
    "  --record FILE        append every request/response as a JSON line\n"
    "  --seed N             seed for the chaos-rate PRNG (default 1)\n"
    "  --requires-action-timeout-s N\n"
    "                       a run waiting for tool outputs expires after N s (default 600)\n"
    "  --rate-limit-rpm N   requests per minute per API key and endpoint class (default 0: none)\n"
    "  --rate-limit-tpm N   tokens per minute per API key and endpoint class (default 0: none)\n"
    "  --rate-limit-burst-ms N  the window those limits are enforced over (default 1000)\n"
    "  --max-file-bytes N   a larger upload to POST /v1/files is a 413 (default 536870912)\n"
    "  --files-dir DIR      where uploaded files are kept (default: a new dir in $TMPDIR, removed at exit)\n"
    "  --log-level LEVEL    debug|info|warn|error|off (default info)\n"
    "  --help               this text\n";

/* Parse a non-negative int flag value. */
static int num(const char *flag, const char *v, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long x = v ? strtol(v, &end, 10) : 0;
  if (!v || !*v || *end || errno || x < lo || x > hi) {
    fprintf(stderr, "aw-simulator: %s needs an integer in [%ld,%ld]\n", flag, lo, hi);
    return -1;
  }
  *out = x;
  return 0;
}

/* Write the port to path atomically (tmp + rename): a harness polling the
 * file never reads a half-written number. */
static int write_port_file(const char *path, unsigned port) {
  char tmp[PATH_MAX];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "w");
  if (!f) return -1;
  fprintf(f, "%u\n", port);
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    unlink(tmp);
    return -1;
  }
  return 0;
}

/* Streams hold a socket each: allow as many as the hard limit permits. */
static unsigned raise_fd_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 1000;
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  getrlimit(RLIMIT_NOFILE, &rl);
  rlim_t n = rl.rlim_cur > 100000 ? 100000 : rl.rlim_cur;
  return n > 128 ? (unsigned)(n - 64) : 64;
}

int main(int argc, char **argv) {
  shttp_opts ho = {.host = "127.0.0.1", .port = 0, .threads = 1};
  const char *port_file = NULL, *record = NULL, *files_dir = NULL;
  sfault_cfg fc;
  sfault_defaults(&fc);
  srl_cfg rl;
  srl_defaults(&rl);
  log_set_component("simulator");
  /* Every option takes a value: each step consumes a pair. */
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    long x;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      fputs(usage, stdout);
      return 0;
    }
    int ok = 0;
    if (strcmp(a, "--host") == 0 && v) ho.host = v, ok = 1;
    else if (strcmp(a, "--port-file") == 0 && v) port_file = v, ok = 1;
    else if (strcmp(a, "--record") == 0 && v) record = v, ok = 1;
    else if (strcmp(a, "--files-dir") == 0 && v) files_dir = v, ok = 1;
    else if (strcmp(a, "--max-file-bytes") == 0) {
      if (num(a, v, 1, 1L << 30, &x)) return 2;
      fc.max_file_bytes = (int)x, ok = 1;
    }
    else if (strcmp(a, "--log-level") == 0 && v) {
      log_level lvl;
      if (log_parse_level(v, &lvl) != AW_OK) {
        fprintf(stderr, "aw-simulator: bad --log-level '%s'\n", v);
        return 2;
      }
      log_set_level(lvl);
      ok = 1;
    } else if (strcmp(a, "--port") == 0) {
      if (num(a, v, 0, 65535, &x)) return 2;
      ho.port = (uint16_t)x, ok = 1;
    } else if (strcmp(a, "--threads") == 0) {
      if (num(a, v, 1, 256, &x)) return 2;
      ho.threads = (unsigned)x, ok = 1;
    } else if (strcmp(a, "--answer-tokens") == 0) {
      if (num(a, v, 1, 100000, &x)) return 2;
      fc.answer_tokens = (int)x, ok = 1;
    } else if (strcmp(a, "--token-delay-ms") == 0) {
      if (num(a, v, 0, 600000, &x)) return 2;
      fc.token_delay_ms = (int)x, ok = 1;
    } else if (strcmp(a, "--latency-ms") == 0) {
      if (num(a, v, 0, 600000, &x)) return 2;
      fc.latency_ms = (int)x, ok = 1;
    } else if (strcmp(a, "--requires-action-timeout-s") == 0) {
      if (num(a, v, 1, 86400, &x)) return 2;
      fc.requires_action_timeout_s = (int)x, ok = 1;
    } else if (strcmp(a, "--rate-limit-rpm") == 0) {
      if (num(a, v, 0, 1000000000L, &x)) return 2;
      rl.requests_per_minute = x, ok = 1;
    } else if (strcmp(a, "--rate-limit-tpm") == 0) {
      if (num(a, v, 0, 1000000000000L, &x)) return 2;
      rl.tokens_per_minute = x, ok = 1;
    } else if (strcmp(a, "--rate-limit-burst-ms") == 0) {
      if (num(a, v, 10, 600000, &x)) return 2;
      rl.burst_ms = x, ok = 1;
    } else if (strcmp(a, "--seed") == 0) {
      if (num(a, v, 0, LONG_MAX, &x)) return 2;
      fc.seed = (uint64_t)x, ok = 1;
    }
    if (!ok) {
      fprintf(stderr, "aw-simulator: unknown or incomplete option '%s'\n%s", a, usage);
      return 2;
    }
  }

  /* Block the stop signals before any thread exists, so they all inherit
   * the mask and only sigwait() below sees them.  SIGPIPE: a client that
   * vanishes must not kill us. */
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, NULL);
  signal(SIGPIPE, SIG_IGN);

  ho.max_conns = raise_fd_limit();
  sfault_init(&fc);
  srl_init(&rl);
  sstore_init();
  char err[256];
  if (record && srec_open(record, err, sizeof err) != AW_OK) {
    log_error(NULL, "%s", err);
    return 1;
  }
  if (sfiles_init(files_dir, err, sizeof err) != AW_OK) {
    log_error(NULL, "%s", err);
    return 1;
  }
  if (stimer_start(1u << 20) != AW_OK) {
    log_error(NULL, "cannot start the timer thread");
    sfiles_shutdown();
    return 1;
  }
  if (shttp_start(&ho, err, sizeof err) != AW_OK) {
    log_error(NULL, "%s", err);
    stimer_stop();
    sfiles_shutdown();
    return 1;
  }
  char port_s[8], threads_s[8];
  snprintf(port_s, sizeof port_s, "%u", (unsigned)shttp_port());
  snprintf(threads_s, sizeof threads_s, "%u", ho.threads);
  const char *kv[] = {"host", ho.host, "port", port_s, "threads", threads_s};
  log_writekv(LOG_INFO, NULL, "listening", kv, 3);
  if (port_file && write_port_file(port_file, shttp_port()) != 0) {
    log_error(NULL, "cannot write --port-file %s: %s", port_file, strerror(errno));
    shttp_stop();
    stimer_stop();
    sfiles_shutdown();
    return 1;
  }

  int sig = 0;
  sigwait(&stop, &sig);
  log_info(NULL, "signal %d: shutting down", sig);
  shttp_stop();
  stimer_stop();
  sstore_lock();
  sstore_reset();
  sstore_unlock();
  svs_reset();
  sfiles_shutdown();
  srec_close();
  log_info(NULL, "stopped");
  return 0;
}

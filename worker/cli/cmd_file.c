/* cmd_file.c -- `assistant-worker file put|get|rm|ls`: the Files API from the
 * command line.
 *
 * Why: operators and the tests need to put a document where the assistants
 * can use it, fetch a file the assistant generated (a chart, a CSV) by the
 * id a response carried, and clean up -- with the same configuration,
 * credentials, retries and never-twice upload as the worker, so that what
 * works here works in the fleet.  It is a thin shell over common/files/
 * (files_api.h): one libuv loop of its own, one call, print, exit.
 *
 * It reads api.base_url (and organization, project, timeouts, retries) the
 * way `run` does (cfg_load: the config file or AW_CONFIG, then AW_*
 * variables) and the key from AW_API_KEY or OPENAI_API_KEY; the key is
 * scrubbed from the environment once loaded and never printed.
 *
 * `put` prints the file object, `get` writes the content to --out (removed
 * again if the download fails) or stdout -- a /v1/files file, or with
 * --container a file of a code interpreter's container (containers.h: what
 * a Responses turn generates, the response's files[].container_id) --, `rm` prints the deletion, `ls`
 * the list, each JSON on stdout; errors go to stderr as one line.  With
 * AW_REPORT_RSS=1 `put` prints its peak RSS ("peak_rss_kib N",
 * getrusage's ru_maxrss) on stderr at exit: the test that proves a large
 * upload is streamed reads it.
 *
 * Exit codes: 0 done, 1 the API refused or failed, 2 usage or configuration.
 */
#include "cli.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

#include "api_client.h"
#include "backend.h"
#include "be_http.h"
#include "config.h"
#include "containers.h"
#include "files_api.h"
#include "log.h"

#define DEFAULT_MAX_DOWNLOAD (512ull << 20) /* the API's largest file */

typedef struct file_ctx {
  int done;
  int rc;      /* exit code */
  const char *cmd;
} file_ctx;

static void usage(FILE *f) {
  fputs("usage: assistant-worker file put PATH [--purpose PURPOSE]\n"
        "       assistant-worker file get ID [--container CNTR] [--out|-o PATH] [--max-bytes N]\n"
        "       assistant-worker file rm ID\n"
        "       assistant-worker file ls [--purpose PURPOSE]\n"
        "  [--config FILE] with each.\n"
        "\n"
        "The Files API of the configured server (api.base_url; the key from AW_API_KEY or\n"
        "OPENAI_API_KEY).  put uploads PATH streamed from disk (purpose: assistants by default;\n"
        "batch, fine-tune, vision, user_data, evals) and prints the file object; an upload whose\n"
        "outcome is unknown (5xx, timeout) is looked up before it is sent again.  get writes the\n"
        "content to --out or stdout (at most --max-bytes, default 512 MiB); with --container, ID\n"
        "is a file of that code interpreter container (cfile_..., a Responses turn's generated\n"
        "file: the response's files[].container_id); rm deletes; ls lists.\n"
        "Exit: 0 done, 1 the API refused or failed, 2 usage or configuration.\n",
        f);
}

static void print_json(const cJSON *j) {
  char *s = j ? cJSON_PrintUnformatted(j) : NULL;
  if (s) printf("%s\n", s);
  free(s);
  fflush(stdout);
}

static void on_done(void *opaque, const fapi_result *res) {
  file_ctx *x = opaque;
  x->done = 1;
  if (res->err) {
    fprintf(stderr, "assistant-worker file %s: %s (%s, %s)\n", x->cmd, res->errmsg, aw_strerror(res->err),
            aw_error_classify(res->err) == AW_CLASS_RETRY ? "retry later" : "refused");
    x->rc = 1;
    return;
  }
  if (res->found)
    fprintf(stderr, "assistant-worker file %s: the upload's outcome was unknown; found it stored: %s\n", x->cmd,
            res->file ? res->file->id : "");
  if (res->json) print_json(res->json);
  x->rc = 0;
}

/* A container download ends here: the same report as a file's. */
static void on_ctr_done(void *opaque, const ctr_result *res) {
  fapi_result r;
  memset(&r, 0, sizeof r);
  r.err = res->err;
  r.http_status = res->http_status;
  r.errmsg = res->errmsg;
  r.bytes = res->bytes;
  on_done(opaque, &r);
}

static int parse_size(const char *v, unsigned long long *out) {
  if (!v || !*v) return -1;
  char *end;
  errno = 0;
  unsigned long long n = strtoull(v, &end, 10);
  if (errno || *end || n == 0) return -1;
  *out = n;
  return 0;
}

static void report_rss(void) {
  const char *v = getenv("AW_REPORT_RSS");
  if (!v || strcmp(v, "1")) return;
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) fprintf(stderr, "peak_rss_kib %ld\n", ru.ru_maxrss);
}

int cmd_file_main(int argc, char **argv) {
  const char *config = NULL, *purpose = NULL, *out_path = NULL, *arg = NULL, *sub = NULL, *container = NULL;
  unsigned long long max_bytes = DEFAULT_MAX_DOWNLOAD;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *next = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--config") || !strcmp(a, "--purpose") || !strcmp(a, "--out") ||
               !strcmp(a, "-o") || !strcmp(a, "--max-bytes") || !strcmp(a, "--container")) {
      if (!next) {
        fprintf(stderr, "assistant-worker file: %s needs a value\n", a);
        return 2;
      }
      i++;
      if (!strcmp(a, "--config")) config = next;
      else if (!strcmp(a, "--purpose")) purpose = next;
      else if (!strcmp(a, "--out") || !strcmp(a, "-o")) out_path = next;
      else if (!strcmp(a, "--container")) container = next;
      else if (parse_size(next, &max_bytes)) {
        fprintf(stderr, "assistant-worker file: --max-bytes needs a positive number\n");
        return 2;
      }
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "assistant-worker file: unknown option %s (see --help)\n", a);
      return 2;
    } else if (!sub) {
      sub = a;
    } else if (!arg) {
      arg = a;
    } else {
      fprintf(stderr, "assistant-worker file: too many arguments (see --help)\n");
      return 2;
    }
  }
  int needs_arg = sub && (!strcmp(sub, "put") || !strcmp(sub, "get") || !strcmp(sub, "rm"));
  if (!sub || (needs_arg && !arg) || (!needs_arg && (strcmp(sub, "ls") || arg)) ||
      (container && strcmp(sub, "get"))) {
    usage(stderr);
    return 2;
  }

  cfg c;
  char err[512];
  if (cfg_load(&c, config, err, sizeof err)) {
    fprintf(stderr, "assistant-worker file: configuration: %s\n", err);
    return 2;
  }
  cfg_scrub_secret_env();
  log_set_level(c.log_level);
  log_set_component("file");
  if (!c.api.api_key[0]) {
    fprintf(stderr, "assistant-worker file: configuration: no API key (AW_API_KEY or OPENAI_API_KEY)\n");
    cfg_free(&c);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);

  be_http_config bc;
  be_http_config_default(&bc);
  cfg_backend_config(&c, &bc);
  api_config ac;
  /* Files need no beta header; vector stores on an Assistants clone may. */
  be_http_api_config(&bc, strcmp(c.api.backend, "assistants") ? NULL : "assistants=v2", &ac);
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) {
    cfg_free(&c);
    return 2;
  }
  api_client *api = NULL;
  if (api_client_new(&loop, &ac, &api, err, sizeof err) != AW_OK) {
    fprintf(stderr, "assistant-worker file: %s\n", err);
    cfg_free(&c);
    uv_loop_close(&loop);
    return 2;
  }

  file_ctx x = {.done = 0, .rc = 1, .cmd = sub};
  int out_fd = -1, rc = AW_OK;
  if (!strcmp(sub, "put")) {
    rc = fapi_upload_path(api, arg, purpose, on_done, &x, NULL, err, sizeof err);
  } else if (!strcmp(sub, "get")) {
    out_fd = out_path ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644) : STDOUT_FILENO;
    if (out_fd < 0) {
      rc = aw_seterr(AW_EIO, err, sizeof err, "%s: %s", out_path, strerror(errno));
    } else {
      rc = container ? ctr_download(api, container, arg, out_fd, NULL, NULL, (size_t)max_bytes, on_ctr_done,
                                    &x, NULL)
                     : fapi_download(api, arg, out_fd, NULL, NULL, (size_t)max_bytes, on_done, &x, NULL);
      if (rc) snprintf(err, sizeof err, container ? "invalid file or container id" : "invalid file id");
    }
  } else if (!strcmp(sub, "rm")) {
    rc = fapi_delete(api, arg, on_done, &x, NULL);
    if (rc) snprintf(err, sizeof err, "invalid file id");
  } else {
    rc = fapi_list(api, purpose, 0, NULL, NULL, on_done, &x, NULL);
    if (rc) snprintf(err, sizeof err, "invalid purpose");
  }
  if (rc) {
    fprintf(stderr, "assistant-worker file %s: %s\n", sub, err);
    x.rc = rc == AW_EINVAL ? 2 : 1;
  } else {
    while (!x.done && uv_run(&loop, UV_RUN_ONCE)) {
    }
    if (!x.done) x.rc = 1;
  }
  if (out_path && out_fd >= 0) {
    if (close(out_fd) != 0 && x.rc == 0) {
      fprintf(stderr, "assistant-worker file get: %s: %s\n", out_path, strerror(errno));
      x.rc = 1;
    }
    if (x.rc != 0) unlink(out_path); /* no half file left behind */
  }
  api_client_free(api);
  uv_run(&loop, UV_RUN_DEFAULT); /* let the handles close */
  (void)uv_loop_close(&loop);
  cfg_free(&c);
  if (!strcmp(sub, "put")) report_rss();
  return x.rc;
}

/* redis_fixture.c -- see redis_fixture.h. */
#include "redis_fixture.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static pid_t g_pid;
static int g_port;
static const char g_user[] = "aw-unit";
static char g_password[33];
static char g_aclfile[64];

const char *rfx_user(void) { return g_user; }
const char *rfx_password(void) { return g_password; }

/* A random password and the ACL file that gives it to g_user (default user
 * off).  Returns 0 on failure. */
static int write_aclfile(void) {
  unsigned char raw[16];
  FILE *u = fopen("/dev/urandom", "rb");
  if (!u) return 0;
  size_t got = fread(raw, 1, sizeof raw, u);
  fclose(u);
  if (got != sizeof raw) return 0;
  for (size_t i = 0; i < sizeof raw; i++) snprintf(g_password + 2 * i, 3, "%02x", raw[i]);
  snprintf(g_aclfile, sizeof g_aclfile, "/tmp/aw-unit-redis-XXXXXX");
  int fd = mkstemp(g_aclfile); /* mode 0600 */
  if (fd < 0) return 0;
  FILE *f = fdopen(fd, "w");
  if (!f) {
    close(fd);
    return 0;
  }
  fprintf(f, "user default off\nuser %s on >%s ~* &* +@all\n", g_user, g_password);
  return fclose(f) == 0;
}

int rfx_free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int rfx_port(void) { return g_pid ? g_port : 0; }

redisContext *rfx_sync(void) { return rfx_sync_with(g_user, g_password); }

redisContext *rfx_sync_with(const char *user, const char *password) {
  struct timeval tv = {1, 0};
  redisContext *c = redisConnectWithTimeout("127.0.0.1", g_port, tv);
  if (c && !c->err) {
    redisReply *r = redisCommand(c, "AUTH %s %s", user, password);
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    if (ok) return c;
  }
  if (c) redisFree(c);
  return NULL;
}

int rfx_start(const char *who) {
  const char *bin = getenv("AW_REDIS_SERVER") ? getenv("AW_REDIS_SERVER") : "redis-server";
  if (!g_pid && !g_aclfile[0] && !write_aclfile()) {
    fprintf(stderr, "%s: cannot write the redis ACL file: skipping\n", who);
    return 0;
  }
  for (int attempt = 0; attempt < 3 && !g_pid; attempt++) {
    g_port = rfx_free_port();
    if (g_port <= 0) return 0;
    char port[16];
    snprintf(port, sizeof port, "%d", g_port);
    pid_t pid = fork();
    if (pid < 0) return 0;
    if (pid == 0) {
      FILE *devnull = freopen("/dev/null", "w", stdout);
      (void)devnull;
      execlp(bin, bin, "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no", "--dir", "/tmp",
             "--daemonize", "no", "--aclfile", g_aclfile, (char *)NULL);
      _exit(127);
    }
    /* Polled, not slept on: the server is ready when it answers PING. */
    for (int i = 0; i < 100; i++) { /* up to 5 s */
      int st;
      if (waitpid(pid, &st, WNOHANG) == pid) break; /* exited: missing binary, port taken */
      redisContext *c = rfx_sync();
      if (c) {
        redisReply *r = redisCommand(c, "PING");
        int ok = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
        redisFree(c);
        if (ok) {
          g_pid = pid;
          break;
        }
      }
      sleep_ms(50);
    }
    if (!g_pid) {
      kill(pid, SIGKILL);
      waitpid(pid, NULL, 0);
    }
  }
  if (!g_pid) fprintf(stderr, "%s: no redis-server (%s): skipping\n", who, bin);
  return rfx_port();
}

void rfx_stop(void) {
  if (g_pid) {
    kill(g_pid, SIGTERM);
    waitpid(g_pid, NULL, 0);
    g_pid = 0;
  }
  if (g_aclfile[0]) {
    unlink(g_aclfile);
    g_aclfile[0] = '\0';
  }
}

int rfx_group_start(void **state) {
  (void)state;
  rfx_start(program_invocation_short_name);
  return 0;
}

int rfx_group_stop(void **state) {
  (void)state;
  rfx_stop();
  return 0;
}

void rfx_flush(void) {
  redisContext *c = rfx_sync();
  if (!c) return;
  redisReply *r = redisCommand(c, "FLUSHALL");
  if (r) freeReplyObject(r);
  redisFree(c);
}

static void on_tick(uv_timer_t *t) { (void)t; }

int rfx_run_until(uv_loop_t *loop, const int *flag) {
  uv_timer_t t;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, on_tick, 5, 5);
  for (int i = 0; i < 1000 && !*flag; i++) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return *flag != 0;
}

rconn *rfx_rconn(uv_loop_t *loop) {
  char err[256];
  rconn *rc = NULL;
  rconn_options o = {g_user, g_password, 0};
  if (rconn_new_opts(loop, "127.0.0.1", g_port, &o, &rc, err, sizeof err) != AW_OK) return NULL;
  uv_timer_t t;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, on_tick, 5, 5);
  for (int i = 0; i < 1000 && !rconn_ready(rc); i++) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  if (!rconn_ready(rc)) {
    rconn_free(rc);
    return NULL;
  }
  return rc;
}

int rfx_env_open(rfx_env *e) {
  memset(e, 0, sizeof *e);
  if (uv_loop_init(&e->loop) != 0) return AW_EREDIS;
  e->rc = rfx_rconn(&e->loop);
  e->sync = e->rc ? rfx_sync() : NULL;
  if (!e->sync) {
    (void)rfx_env_close(e);
    memset(e, 0, sizeof *e);
    return AW_EREDIS;
  }
  rfx_flush();
  return AW_OK;
}

int rfx_env_close(rfx_env *e) {
  rconn_free(e->rc);
  e->rc = NULL;
  uv_run(&e->loop, UV_RUN_DEFAULT);
  int rc = uv_loop_close(&e->loop);
  if (e->sync) redisFree(e->sync);
  e->sync = NULL;
  return rc;
}

int rfx_env_setup(void **state, size_t size) {
  *state = NULL;
  if (!rfx_port()) return 0;
  if (size < sizeof(rfx_env)) return AW_EINVAL;
  rfx_env *e = calloc(1, size);
  if (!e) return AW_ENOMEM;
  int rc = rfx_env_open(e);
  if (rc) {
    free(e);
    return rc;
  }
  *state = e;
  return 0;
}

int rfx_env_teardown(void **state) {
  rfx_env *e = *state;
  if (!e) return 0;
  int rc = rfx_env_close(e);
  free(e);
  *state = NULL;
  return rc ? AW_ESTATE : 0;
}

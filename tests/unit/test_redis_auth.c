/* test_redis_auth.c -- the Redis connection authenticates on every connect
 * (common/redis/redis_conn.c), against a real redis-server that requires
 * it (redis_fixture.h: an ACL user, the default user disabled):
 *   - the right password: connected as that user, commands served;
 *   - a wrong or missing password before the first connection: fatal, with
 *     a message naming the user and never the password;
 *   - the password changed while connected: the reconnect's refusal is
 *     retry-class, and once the password is right again the connection
 *     comes back by itself, authenticated again;
 *   - a server that accepts the TCP connection and never answers the
 *     handshake: timed out and retried, freed cleanly mid-handshake;
 *   - a server that refuses the handshake because it is still loading its
 *     data: retried, not an authentication failure.
 *
 * Needs redis-server (redis_fixture.h); skipped without one. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "redis_fixture.h"

static int start_server(void **state) {
  (void)state;
  rfx_start("test_redis_auth");
  return 0;
}

static int stop_server(void **state) {
  (void)state;
  rfx_stop();
  return 0;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_tick(uv_timer_t *t) { (void)t; }

typedef int (*pred_fn)(const rconn *c);

/* Run the loop until pred(c) holds or ms pass; returns pred(c). */
static int run_until(uv_loop_t *loop, const rconn *c, pred_fn pred, long ms) {
  uv_timer_t t;
  uv_timer_init(loop, &t);
  uv_timer_start(&t, on_tick, 5, 5);
  long long end = now_ms() + ms;
  while (!pred(c) && now_ms() < end) uv_run(loop, UV_RUN_ONCE);
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  return pred(c);
}

static int is_ready(const rconn *c) { return rconn_ready(c); }
static int auth_refused(const rconn *c) { return rconn_auth_error(c, NULL, 0) != AW_OK; }
static int two_errors(const rconn *c) { return rconn_errors(c) >= 2; }

static void finish(uv_loop_t *loop, rconn *c) {
  rconn_free(c);
  uv_run(loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(loop), 0);
}

typedef struct answer {
  int done, err;
  char text[128];
} answer;

static void on_answer(void *opaque, int err, redisReply *reply) {
  answer *a = opaque;
  a->done = 1;
  a->err = err;
  if (reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS ||
                reply->type == REDIS_REPLY_ERROR))
    snprintf(a->text, sizeof a->text, "%s", reply->str);
}

/* Which user the connection is authenticated as (ACL WHOAMI). */
static void whoami(uv_loop_t *loop, rconn *c, answer *a) {
  memset(a, 0, sizeof *a);
  assert_int_equal(rconn_command(c, on_answer, a, "ACL WHOAMI"), AW_OK);
  assert_true(rfx_run_until(loop, &a->done));
}

/* Change the fixture user's password behind the connection's back (the
 * synchronous connection stays authenticated). */
static void set_password(const char *pw) {
  redisContext *s = rfx_sync();
  assert_non_null(s);
  redisReply *r = redisCommand(s, "ACL SETUSER %s resetpass >%s", rfx_user(), pw);
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_STATUS);
  freeReplyObject(r);
  redisFree(s);
}

static void right_password_connects_as_the_acl_user_and_serves_commands(void **state) {
  (void)state;
  RFX_NEED();
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  rconn *c = NULL;
  char err[256];
  rconn_options o = {rfx_user(), rfx_password(), 0};
  assert_int_equal(rconn_new_opts(&loop, "127.0.0.1", rfx_port(), &o, &c, err, sizeof err), AW_OK);
  assert_true(run_until(&loop, c, is_ready, 5000));
  assert_int_equal(rconn_auth_error(c, err, sizeof err), AW_OK);
  answer a;
  whoami(&loop, c, &a);
  assert_int_equal(a.err, AW_OK);
  assert_string_equal(a.text, rfx_user());
  memset(&a, 0, sizeof a);
  assert_int_equal(rconn_command(c, on_answer, &a, "SET %s %s", "auth:k", "v"), AW_OK);
  assert_true(rfx_run_until(&loop, &a.done));
  assert_int_equal(a.err, AW_OK);
  finish(&loop, c);
}

static void wrong_password_at_start_is_fatal_and_names_the_user_never_the_password(void **state) {
  (void)state;
  RFX_NEED();
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  rconn *c = NULL;
  char err[320];
  const char *wrong = "not-the-password-7f3a";
  rconn_options o = {rfx_user(), wrong, 0};
  assert_int_equal(rconn_new_opts(&loop, "127.0.0.1", rfx_port(), &o, &c, err, sizeof err), AW_OK);
  assert_true(run_until(&loop, c, auth_refused, 5000));
  assert_false(rconn_ready(c));
  assert_int_equal(rconn_command(c, on_answer, NULL, "PING"), AW_EREDIS); /* nothing gets through */
  assert_int_equal(rconn_auth_error(c, err, sizeof err), AW_EFATAL);
  assert_int_equal(aw_error_classify(AW_EFATAL), AW_CLASS_FATAL);
  assert_non_null(strstr(err, rfx_user()));
  assert_non_null(strstr(err, "WRONGPASS"));
  assert_null(strstr(err, wrong));
  finish(&loop, c);
}

static void missing_password_at_start_is_fatal_when_the_server_requires_one(void **state) {
  (void)state;
  RFX_NEED();
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  rconn *c = NULL;
  char err[320];
  assert_int_equal(rconn_new(&loop, "127.0.0.1", rfx_port(), &c, err, sizeof err), AW_OK);
  assert_true(run_until(&loop, c, auth_refused, 5000));
  assert_false(rconn_ready(c));
  assert_int_equal(rconn_auth_error(c, err, sizeof err), AW_EFATAL);
  assert_non_null(strstr(err, "no password is configured"));
  assert_non_null(strstr(err, "NOAUTH"));
  finish(&loop, c);
}

static void reconnect_authenticates_again_and_a_refusal_then_is_retried(void **state) {
  (void)state;
  RFX_NEED();
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  rconn *c = rfx_rconn(&loop);
  assert_non_null(c);
  /* The password changes and the connection is cut: the reconnect's AUTH,
   * with the old password, is refused -- retry-class now. */
  char newpw[] = "rotated-password-51c9";
  char oldpw[64];
  snprintf(oldpw, sizeof oldpw, "%s", rfx_password());
  set_password(newpw);
  redisContext *s = rfx_sync_with(rfx_user(), newpw);
  assert_non_null(s);
  redisReply *r = redisCommand(s, "CLIENT KILL USER %s", rfx_user()); /* SKIPME: not this one */
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_INTEGER);
  assert_true(r->integer >= 1);
  freeReplyObject(r);
  assert_true(run_until(&loop, c, auth_refused, 5000));
  char err[320];
  assert_false(rconn_ready(c));
  assert_int_equal(rconn_auth_error(c, err, sizeof err), AW_EREDIS);
  assert_int_equal(aw_error_classify(AW_EREDIS), AW_CLASS_RETRY);
  assert_null(strstr(err, oldpw));
  /* The old password is valid again: the connection comes back by itself
   * (backoff at most 2 s), authenticated. */
  r = redisCommand(s, "ACL SETUSER %s resetpass >%s", rfx_user(), oldpw);
  assert_non_null(r);
  freeReplyObject(r);
  redisFree(s);
  assert_true(run_until(&loop, c, is_ready, 8000));
  assert_int_equal(rconn_auth_error(c, err, sizeof err), AW_OK);
  answer a;
  whoami(&loop, c, &a);
  assert_string_equal(a.text, rfx_user());
  finish(&loop, c);
}

static void a_server_that_never_answers_the_handshake_is_timed_out_and_retried(void **state) {
  (void)state;
  /* A listening socket nobody accepts on: the kernel completes the TCP
   * connect, the AUTH is written, no answer ever comes. */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(fd >= 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(listen(fd, 16), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  rconn *c = NULL;
  char err[256];
  rconn_options o = {"someone", "some-password", 100};
  assert_int_equal(rconn_new_opts(&loop, "127.0.0.1", ntohs(a.sin_port), &o, &c, err, sizeof err), AW_OK);
  assert_true(run_until(&loop, c, two_errors, 5000)); /* timed out, retried, timed out */
  assert_false(rconn_ready(c));
  assert_int_equal(rconn_auth_error(c, err, sizeof err), AW_OK); /* silence is no refusal */
  finish(&loop, c); /* freed whatever it was doing: connecting or mid-handshake */
  close(fd);
}

/* A fake server that answers every command with -LOADING, as Redis does to
 * a PING while it loads its append-only file. */
typedef struct loading_srv {
  uv_tcp_t tcp;
  uv_tcp_t clients[8];
  int nclients;
} loading_srv;

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *b) {
  (void)h;
  static char mem[512];
  *b = uv_buf_init(mem, size < sizeof mem ? (unsigned)size : sizeof mem);
}

static void on_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static void on_loading_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b) {
  (void)b;
  if (n <= 0) return;
  static const char reply[] = "-LOADING Redis is loading the dataset in memory\r\n";
  uv_write_t *w = malloc(sizeof *w);
  uv_buf_t out = uv_buf_init((char *)reply, sizeof reply - 1);
  if (w) uv_write(w, s, &out, 1, on_written);
}

static void on_loading_conn(uv_stream_t *server, int status) {
  loading_srv *l = server->data;
  if (status < 0 || l->nclients >= 8) return;
  uv_tcp_t *cl = &l->clients[l->nclients];
  uv_tcp_init(server->loop, cl);
  if (uv_accept(server, (uv_stream_t *)cl) == 0) {
    l->nclients++;
    uv_read_start((uv_stream_t *)cl, on_alloc, on_loading_read);
  } else {
    uv_close((uv_handle_t *)cl, NULL);
  }
}

static void a_server_still_loading_its_data_is_retried_not_taken_for_an_auth_failure(void **state) {
  (void)state;
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  loading_srv l;
  memset(&l, 0, sizeof l);
  uv_tcp_init(&loop, &l.tcp);
  l.tcp.data = &l;
  struct sockaddr_in a;
  uv_ip4_addr("127.0.0.1", 0, &a);
  assert_int_equal(uv_tcp_bind(&l.tcp, (const struct sockaddr *)&a, 0), 0);
  assert_int_equal(uv_listen((uv_stream_t *)&l.tcp, 8, on_loading_conn), 0);
  int len = sizeof a;
  assert_int_equal(uv_tcp_getsockname(&l.tcp, (struct sockaddr *)&a, &len), 0);
  rconn *c = NULL;
  char err[256];
  assert_int_equal(rconn_new(&loop, "127.0.0.1", ntohs(a.sin_port), &c, err, sizeof err), AW_OK);
  assert_true(run_until(&loop, c, two_errors, 5000)); /* refused, retried, refused */
  assert_true(l.nclients >= 2);
  assert_false(rconn_ready(c));
  assert_int_equal(rconn_auth_error(c, err, sizeof err), AW_OK); /* not fatal: it will load */
  rconn_free(c);
  for (int i = 0; i < l.nclients; i++) uv_close((uv_handle_t *)&l.clients[i], NULL);
  uv_close((uv_handle_t *)&l.tcp, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(right_password_connects_as_the_acl_user_and_serves_commands),
      cmocka_unit_test(wrong_password_at_start_is_fatal_and_names_the_user_never_the_password),
      cmocka_unit_test(missing_password_at_start_is_fatal_when_the_server_requires_one),
      cmocka_unit_test(reconnect_authenticates_again_and_a_refusal_then_is_retried),
      cmocka_unit_test(a_server_that_never_answers_the_handshake_is_timed_out_and_retried),
      cmocka_unit_test(a_server_still_loading_its_data_is_retried_not_taken_for_an_auth_failure),
  };
  return cmocka_run_group_tests(tests, start_server, stop_server);
}

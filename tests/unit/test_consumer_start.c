/* Unit tests of a group consumer's start and close (common/kafka/
 * kafka_consumer.c, kafka_committed.c) against librdkafka's mock cluster,
 * whose broker delays chosen requests:
 *  - the committed offsets of an assignment are read off the loop: while the
 *    coordinator takes seconds to answer, the loop goes on ticking, and the
 *    partitions held for their start deliver nothing until the owner
 *    releases them (then from the committed offset, with its metadata read);
 *  - a partition held for its start is resumed neither by kc_resume nor by
 *    lifting another reason, and releasing its start while the consumer is
 *    paused does not resume it either;
 *  - a read stuck on a slow coordinator gives up after its attempts, and is
 *    cancelled within one attempt when the consumer closes;
 *  - a consumer closed while the read of its assignment's committed offsets
 *    is under way ends (the cancelled read kept librdkafka's references to
 *    the partitions, so rd_kafka_destroy waited for ever);
 *  - a consumer closed between its group's answer to JoinGroup and its first
 *    assignment (SyncGroup delayed) waits for the assignment instead of
 *    aborting in librdkafka 2.0.2 (upstream issue #4312).
 *
 * Needs: nothing outside the process (the mock cluster listens on loopback).
 * Takes about 20 s (the mock's first join waits 3 s). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <uv.h>

#include "kafka_committed.h"
#include "kafka_consumer.h"

#define TOPIC "t-start"
#define NPART 4
#define PER_PARTITION 5
/* Kafka protocol request types (librdkafka's rdkafka_protocol.h is private). */
#define API_OFFSET_FETCH 9
#define API_SYNC_GROUP 14

static uint64_t now_ms(void) { return uv_hrtime() / 1000000u; }

/* ---- the mock cluster -------------------------------------------------------- */

typedef struct mock {
  rd_kafka_t *owner; /* the handle the cluster lives in */
  rd_kafka_mock_cluster_t *mc;
  char bootstraps[256];
} mock;

static void mock_up(mock *m) {
  char e[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  assert_int_equal(rd_kafka_conf_set(conf, "log_level", "2", e, sizeof e), RD_KAFKA_CONF_OK);
  m->owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
  assert_non_null(m->owner);
  m->mc = rd_kafka_mock_cluster_new(m->owner, 1);
  assert_non_null(m->mc);
  snprintf(m->bootstraps, sizeof m->bootstraps, "%s", rd_kafka_mock_cluster_bootstraps(m->mc));
  assert_int_equal(rd_kafka_mock_topic_create(m->mc, TOPIC, NPART, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void mock_down(mock *m) {
  rd_kafka_mock_cluster_destroy(m->mc);
  rd_kafka_destroy(m->owner);
}

static rd_kafka_conf_t *client_conf(const mock *m, const char *group) {
  char e[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", m->bootstraps, e, sizeof e), RD_KAFKA_CONF_OK);
  assert_int_equal(rd_kafka_conf_set(conf, "log_level", "2", e, sizeof e), RD_KAFKA_CONF_OK);
  if (group) {
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", group, e, sizeof e), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", e, sizeof e), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "partition.assignment.strategy", "cooperative-sticky", e, sizeof e),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "session.timeout.ms", "10000", e, sizeof e), RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "heartbeat.interval.ms", "500", e, sizeof e), RD_KAFKA_CONF_OK);
  }
  return conf;
}

/* PER_PARTITION messages into every partition. */
static void produce_all(const mock *m) {
  char e[256];
  rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, client_conf(m, NULL), e, sizeof e);
  assert_non_null(p);
  for (int32_t part = 0; part < NPART; part++)
    for (int i = 0; i < PER_PARTITION; i++)
      assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(part),
                                         RD_KAFKA_V_VALUE("x", 1), RD_KAFKA_V_END),
                       RD_KAFKA_RESP_ERR_NO_ERROR);
  assert_int_equal(rd_kafka_flush(p, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_destroy(p);
}

/* The coordinator (broker 1) answers each of the next n requests of type
 * api after ms (pushed one by one: the mock queues them in order). */
static void delay_next(const mock *m, int16_t api, int n, int ms) {
  for (int i = 0; i < n; i++)
    assert_int_equal(rd_kafka_mock_broker_push_request_error_rtts(m->mc, 1, api, 1, RD_KAFKA_RESP_ERR_NO_ERROR, ms),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Commit `offset` with metadata `md` for partition 0 in `group`, as an
 * earlier member would have. */
static void commit_p0(const mock *m, const char *group, int64_t offset, const char *md) {
  char e[256];
  rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, client_conf(m, group), e, sizeof e);
  assert_non_null(c);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_t *t = rd_kafka_topic_partition_list_add(l, TOPIC, 0);
  t->offset = offset;
  t->metadata = strdup(md);
  t->metadata_size = strlen(md);
  assert_int_equal(rd_kafka_commit(c, l, 0), RD_KAFKA_RESP_ERR_NO_ERROR);
  rd_kafka_topic_partition_list_destroy(l);
  rd_kafka_consumer_close(c);
  rd_kafka_destroy(c);
}

/* ---- a consumer under test on a loop ------------------------------------------ */

typedef struct rig {
  uv_loop_t loop;
  uv_timer_t tick;
  kc *c;
  mock m;
  uint64_t last_tick_ms, max_gap_ms;
  int watching;              /* measure tick gaps */
  int assigned;              /* partitions assigned (on_assign) */
  uint64_t assigned_ms;
  int messages;
  int64_t first_p0_offset;
  /* kc_committed's answer */
  int fetched, fetch_err;
  uint64_t fetched_ms;
  int64_t p0_committed;
  char p0_metadata[64];
  /* the scenario of the test (a step function run on every tick) */
  void (*step)(struct rig *r);
  int phase;
  uint64_t phase_ms;
  int phase_messages;
  uint64_t deadline_ms;
} rig;

static void on_message(void *opaque, rd_kafka_message_t *m) {
  rig *r = opaque;
  if (!m->err) {
    if (m->partition == 0 && r->first_p0_offset < 0) r->first_p0_offset = m->offset;
    r->messages++;
  }
  rd_kafka_message_destroy(m);
}

static void on_revoke(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
  (void)opaque, (void)parts;
}

static void release_all(rig *r, unsigned reason) {
  for (int32_t p = 0; p < NPART; p++) assert_int_equal(kc_pause_partition(r->c, p, reason, 0), AW_OK);
}

static void on_fetched(void *opaque, rd_kafka_topic_partition_list_t *offs, int err, const char *errstr) {
  rig *r = opaque;
  (void)errstr;
  r->fetched++;
  r->fetch_err = err;
  r->fetched_ms = now_ms();
  if (offs) {
    rd_kafka_topic_partition_t *p0 = rd_kafka_topic_partition_list_find(offs, TOPIC, 0);
    if (p0) {
      r->p0_committed = p0->offset;
      snprintf(r->p0_metadata, sizeof r->p0_metadata, "%.*s", (int)p0->metadata_size,
               p0->metadata ? (const char *)p0->metadata : "");
    }
    rd_kafka_topic_partition_list_destroy(offs);
  }
  if (err == AW_OK) release_all(r, KC_PAUSE_START);
}

/* on_assign of the first test: read the committed offsets off the loop. */
static void on_assign_fetch(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
  rig *r = opaque;
  if (!parts->cnt) return;
  r->assigned += parts->cnt;
  r->assigned_ms = now_ms();
  r->last_tick_ms = now_ms();
  r->watching = 1;
  assert_int_equal(kc_committed(r->c, parts, 5000, 3, on_fetched, r), AW_OK);
}

static void on_tick(uv_timer_t *t) {
  rig *r = t->data;
  uint64_t now = now_ms();
  if (r->watching && now - r->last_tick_ms > r->max_gap_ms) r->max_gap_ms = now - r->last_tick_ms;
  r->last_tick_ms = now;
  if (r->step) r->step(r);
  if (now >= r->deadline_ms) uv_stop(&r->loop);
}

static void rig_up(rig *r) {
  memset(r, 0, sizeof *r);
  r->first_p0_offset = -1;
  r->p0_committed = -2;
  mock_up(&r->m);
  assert_int_equal(uv_loop_init(&r->loop), 0);
  assert_int_equal(uv_timer_init(&r->loop, &r->tick), 0);
  r->tick.data = r;
}

static void rig_start(rig *r, const char *group, const kc_handlers *h, int start_held, uint64_t timeout_ms) {
  char e[256];
  assert_int_equal(kc_new(&r->loop, client_conf(&r->m, group), TOPIC, h, r, 64, &r->c, e, sizeof e), AW_OK);
  kc_set_start_held(r->c, start_held);
  r->deadline_ms = now_ms() + timeout_ms;
  r->last_tick_ms = now_ms();
  assert_int_equal(uv_timer_start(&r->tick, on_tick, 20, 20), 0);
  uv_run(&r->loop, UV_RUN_DEFAULT);
}

static void rig_down(rig *r) {
  uv_timer_stop(&r->tick);
  kc_close(r->c);
  uv_close((uv_handle_t *)&r->tick, NULL);
  uv_run(&r->loop, UV_RUN_DEFAULT); /* closing handles, pool callbacks */
  assert_int_equal(uv_loop_close(&r->loop), 0);
  mock_down(&r->m);
}

static void stop_when_all_consumed(rig *r) {
  if (r->messages >= NPART * PER_PARTITION - 2) uv_stop(&r->loop);
}

static void the_committed_offsets_are_read_off_the_loop_and_the_partitions_wait_for_them(void **state) {
  (void)state;
  rig r;
  rig_up(&r);
  produce_all(&r.m);
  commit_p0(&r.m, "g-slow-fetch", 2, "aw1:AA==");
  /* The coordinator takes 2 s to answer the next OffsetFetch requests (the
   * consumer's own, to know where to start, and ours). */
  delay_next(&r.m, API_OFFSET_FETCH, 2, 2000);
  kc_handlers h = {on_message, on_assign_fetch, on_revoke};
  r.step = stop_when_all_consumed;
  rig_start(&r, "g-slow-fetch", &h, 1, 30000);

  assert_int_equal(r.assigned, NPART);
  assert_int_equal(r.fetched, 1);
  assert_int_equal(r.fetch_err, AW_OK);
  assert_true(r.fetched_ms - r.assigned_ms >= 1500); /* it did wait for the slow coordinator */
  /* ... while the loop went on: a 20 ms timer never waited 0.5 s. */
  assert_true(r.max_gap_ms < 500);
  assert_int_equal(r.p0_committed, 2);
  assert_string_equal(r.p0_metadata, "aw1:AA==");
  /* Nothing before the start was released, then everything from the
   * committed offsets: partition 0 from 2. */
  assert_int_equal(r.messages, NPART * PER_PARTITION - 2);
  assert_int_equal(r.first_p0_offset, 2);
  rig_down(&r);
}

/* ---- the pause layers ------------------------------------------------------------ */

static void on_assign_count(void *opaque, const rd_kafka_topic_partition_list_t *parts) {
  rig *r = opaque;
  r->assigned += parts->cnt;
}

/* Phases, each observed for 800 ms:
 *  1 held for the start; kc_pause + kc_resume, and a LIMIT hold set and
 *    lifted on partition 0: nothing may flow;
 *  2 kc_pause, then the start released: nothing may flow (still paused);
 *  3 kc_resume: everything flows. */
static void layers_step(rig *r) {
  uint64_t now = now_ms();
  if (r->phase == 0) {
    if (r->assigned < NPART) return;
    assert_int_equal(kc_pause(r->c), AW_OK);
    assert_int_equal(kc_resume(r->c), AW_OK);
    assert_int_equal(kc_pause_partition(r->c, 0, KC_PAUSE_LIMIT, 1), AW_OK);
    assert_int_equal(kc_pause_partition(r->c, 0, KC_PAUSE_LIMIT, 0), AW_OK);
    r->phase = 1;
    r->phase_ms = now;
  } else if (r->phase == 1 && now - r->phase_ms >= 800) {
    r->phase_messages = r->messages;
    assert_int_equal(r->messages, 0);
    assert_int_equal(kc_pause(r->c), AW_OK);
    release_all(r, KC_PAUSE_START);
    r->phase = 2;
    r->phase_ms = now;
  } else if (r->phase == 2 && now - r->phase_ms >= 800) {
    assert_int_equal(r->messages, 0);
    assert_int_equal(kc_resume(r->c), AW_OK);
    r->phase = 3;
  } else if (r->phase == 3 && r->messages >= NPART * PER_PARTITION) {
    uv_stop(&r->loop);
  }
}

static void a_partition_held_for_its_start_is_resumed_by_no_other_layer(void **state) {
  (void)state;
  rig r;
  rig_up(&r);
  produce_all(&r.m);
  kc_handlers h = {on_message, on_assign_count, on_revoke};
  r.step = layers_step;
  rig_start(&r, "g-layers", &h, 1, 30000);
  assert_int_equal(r.phase, 3);
  assert_int_equal(r.messages, NPART * PER_PARTITION);
  rig_down(&r);
}

/* ---- one read: gives up, or is cancelled ----------------------------------------- */

typedef struct fetch_seen {
  int calls, err;
  uint64_t at_ms;
} fetch_seen;

static void on_fetch_seen(void *opaque, rd_kafka_topic_partition_list_t *offs, int err, const char *errstr) {
  fetch_seen *s = opaque;
  (void)errstr;
  s->calls++;
  s->err = err;
  s->at_ms = now_ms();
  if (offs) rd_kafka_topic_partition_list_destroy(offs);
}

static void stop_loop(uv_timer_t *t) { uv_stop(t->loop); }

/* Runs `loop` until done was called or `ms` passed. */
static void run_for(uv_loop_t *loop, const fetch_seen *s, uint64_t ms) {
  uv_timer_t t;
  uv_timer_init(loop, &t);
  uint64_t end = now_ms() + ms;
  while (!s->calls && now_ms() < end) {
    uv_timer_start(&t, stop_loop, 50, 0);
    uv_run(loop, UV_RUN_DEFAULT);
  }
  uv_close((uv_handle_t *)&t, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
}

/* One read of a group's committed offsets, not yet started: a mock
 * cluster whose coordinator answers the next four OffsetFetch requests
 * after delay_ms each, a loop, a member's handle (never subscribed) and
 * every partition of TOPIC. */
typedef struct reading {
  mock m;
  uv_loop_t loop;
  rd_kafka_t *c;
  rd_kafka_topic_partition_list_t *parts;
  fetch_seen s;
  kcm *f;
} reading;

static void reading_up(reading *r, const char *group, int delay_ms) {
  memset(r, 0, sizeof *r);
  mock_up(&r->m);
  assert_int_equal(uv_loop_init(&r->loop), 0);
  char e[256];
  r->c = rd_kafka_new(RD_KAFKA_CONSUMER, client_conf(&r->m, group), e, sizeof e);
  assert_non_null(r->c);
  delay_next(&r->m, API_OFFSET_FETCH, 4, delay_ms);
  r->parts = rd_kafka_topic_partition_list_new(NPART);
  for (int32_t p = 0; p < NPART; p++) rd_kafka_topic_partition_list_add(r->parts, TOPIC, p);
}

/* The loop must close (the read left no work or handle behind) before the
 * handle the read's thread used is destroyed. */
static void reading_down(reading *r) {
  rd_kafka_topic_partition_list_destroy(r->parts);
  assert_int_equal(uv_loop_close(&r->loop), 0);
  rd_kafka_destroy(r->c);
  mock_down(&r->m);
}

static void a_read_the_coordinator_never_answers_gives_up_after_its_attempts(void **state) {
  (void)state;
  reading r;
  reading_up(&r, "g-give-up", 10000);
  kcm_policy pol = {400, 3, 100, 200};
  uint64_t t0 = now_ms();
  assert_int_equal(kcm_start(&r.loop, r.c, r.parts, &pol, on_fetch_seen, &r.s, &r.f), AW_OK);
  run_for(&r.loop, &r.s, 8000);
  assert_int_equal(r.s.calls, 1);
  assert_int_equal(r.s.err, AW_ETIMEDOUT);
  /* Three attempts of 0.4 s and two backoffs (0.1 s, 0.2 s): not sooner,
   * and not much later. */
  assert_true(r.s.at_ms - t0 >= 3 * 400 + 100 + 200 - 50);
  assert_true(r.s.at_ms - t0 < 4000);
  reading_down(&r);
}

static void cancelling_a_read_stuck_on_a_slow_coordinator_returns_within_one_attempt(void **state) {
  (void)state;
  reading r;
  reading_up(&r, "g-cancel", 20000);
  kcm_policy pol = {1000, 20, 100, 100};
  assert_int_equal(kcm_start(&r.loop, r.c, r.parts, &pol, on_fetch_seen, &r.s, &r.f), AW_OK);
  run_for(&r.loop, &r.s, 1500); /* into its second attempt */
  assert_int_equal(r.s.calls, 0);
  uint64_t t0 = now_ms();
  kcm_cancel(r.f);
  uint64_t took = now_ms() - t0;
  assert_int_equal(r.s.calls, 1); /* done, here, once */
  assert_int_equal(r.s.err, AW_ECANCELLED);
  assert_true(took <= 1100);
  /* And no attempt follows: each one's OffsetFetch takes one of the
   * delays pushed above, and none is taken over the next 1.5 s. */
  size_t left = 0, later = 0;
  assert_int_equal(rd_kafka_mock_broker_error_stack_cnt(r.m.mc, 1, API_OFFSET_FETCH, &left),
                   RD_KAFKA_RESP_ERR_NO_ERROR);
  assert_true(left < 4); /* it had asked */
  uv_run(&r.loop, UV_RUN_DEFAULT); /* the pool's after-work frees the read: the thread is done with the handle */
  uv_timer_t idle;
  uv_timer_init(&r.loop, &idle);
  uv_timer_start(&idle, stop_loop, 1500, 0);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  uv_close((uv_handle_t *)&idle, NULL);
  uv_run(&r.loop, UV_RUN_DEFAULT);
  assert_int_equal(rd_kafka_mock_broker_error_stack_cnt(r.m.mc, 1, API_OFFSET_FETCH, &later),
                   RD_KAFKA_RESP_ERR_NO_ERROR);
  assert_int_equal(later, left);
  assert_int_equal(r.s.calls, 1);
  reading_down(&r);
}

/* ---- closing while the read of an assignment is under way ----------------------- */

/* rig_down under a watchdog (a hang in rd_kafka_destroy fails the test by
 * SIGALRM instead of hanging the suite); returns how long it took, in ms. */
static uint64_t rig_down_timed(rig *r) {
  alarm(60);
  uint64_t t0 = now_ms();
  rig_down(r);
  uint64_t took = now_ms() - t0;
  alarm(0);
  return took;
}

static void stop_when_assigned(rig *r) {
  if (r->assigned >= NPART) uv_stop(&r->loop);
}

static void a_consumer_closed_while_its_assignment_is_read_ends(void **state) {
  (void)state;
  rig r;
  rig_up(&r);
  /* The coordinator takes 1.5 s to answer OffsetFetch (the consumer's own
   * and ours): the close comes while ours is under way. */
  delay_next(&r.m, API_OFFSET_FETCH, 2, 1500);
  kc_handlers h = {on_message, on_assign_fetch, on_revoke};
  r.step = stop_when_assigned;
  rig_start(&r, "g-close-reading", &h, 1, 20000);
  assert_int_equal(r.assigned, NPART);
  assert_int_equal(r.fetched, 0);
  /* kc_close waits for the attempt under way, then closes and destroys the
   * handle before the loop runs again; it used to hang in rd_kafka_destroy. */
  uint64_t took = rig_down_timed(&r);
  assert_int_equal(r.fetched, 1);
  assert_int_equal(r.fetch_err, AW_ECANCELLED);
  assert_true(took < 10000);
}

/* ---- closing before the first assignment (librdkafka #4312) --------------------- */

static void until_joined(rig *r) {
  const char *proto = rd_kafka_rebalance_protocol(kc_handle(r->c));
  if (proto && strcmp(proto, "COOPERATIVE") == 0) {
    r->phase = 1; /* the group answered the join: the assignment is due */
    uv_stop(&r->loop);
  }
}

static void a_consumer_closed_after_its_join_before_its_assignment_waits_for_it(void **state) {
  (void)state;
  rig r;
  rig_up(&r);
  /* The group's answer to SyncGroup (the assignment) takes 1.5 s. */
  delay_next(&r.m, API_SYNC_GROUP, 1, 1500);
  kc_handlers h = {on_message, on_assign_count, on_revoke};
  r.step = until_joined;
  rig_start(&r, "g-early-close", &h, 1, 20000);
  assert_int_equal(r.phase, 1);
  assert_int_equal(r.assigned, 0);
  /* Closing now used to abort the process (rd_kafka_destroy). */
  uint64_t took = rig_down_timed(&r);
  assert_true(took >= 500); /* it waited for the assignment */
  assert_true(took < KC_CLOSE_SETTLE_MS);
  assert_int_equal(r.assigned, 0); /* which the owner never heard of */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(the_committed_offsets_are_read_off_the_loop_and_the_partitions_wait_for_them),
      cmocka_unit_test(a_partition_held_for_its_start_is_resumed_by_no_other_layer),
      cmocka_unit_test(a_read_the_coordinator_never_answers_gives_up_after_its_attempts),
      cmocka_unit_test(cancelling_a_read_stuck_on_a_slow_coordinator_returns_within_one_attempt),
      cmocka_unit_test(a_consumer_closed_while_its_assignment_is_read_ends),
      cmocka_unit_test(a_consumer_closed_after_its_join_before_its_assignment_waits_for_it),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

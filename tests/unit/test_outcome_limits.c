/* test_outcome_limits.c -- records that do not fit Kafka's limits: produce
 * errors classified permanent or retriable (kafka_producer.h), the degraded
 * dead letter that fits a byte budget with the original's size, SHA-256 and
 * leading bytes, and the `failed` response_too_large response
 * (worker/outbox/degrade.h).  Needs no infrastructure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "buf.h"
#include "contract.h"
#include "degrade.h"
#include "kafka_producer.h"

static void test_produce_errors_are_classified(void **state) {
  (void)state;
  /* Too large, in the producer or at the broker: degrade. */
  assert_true(kp_err_too_big(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE));
  assert_true(kp_err_too_big(RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE));
  assert_int_equal(kp_err_code(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), AW_ETOOBIG);
  /* Permanent otherwise: give up, never retry. */
  assert_true(kp_err_permanent(RD_KAFKA_RESP_ERR_INVALID_RECORD));
  assert_true(kp_err_permanent(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED));
  assert_true(kp_err_permanent(RD_KAFKA_RESP_ERR_INVALID_MSG));
  assert_false(kp_err_too_big(RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED));
  assert_int_equal(kp_err_code(RD_KAFKA_RESP_ERR_INVALID_RECORD), AW_EINVAL);
  /* Retriable: timeouts, leadership, transport, a full queue, a topic that
   * may yet exist. */
  rd_kafka_resp_err_t retriable[] = {RD_KAFKA_RESP_ERR__MSG_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                     RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                     RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS};
  for (size_t i = 0; i < sizeof retriable / sizeof retriable[0]; i++) {
    assert_false(kp_err_permanent(retriable[i]));
    assert_int_equal(kp_err_code(retriable[i]), AW_EKAFKA);
  }
  assert_int_equal(kp_err_code(RD_KAFKA_RESP_ERR__QUEUE_FULL), AW_EAGAIN);
  assert_int_equal(kp_err_code(RD_KAFKA_RESP_ERR_NO_ERROR), AW_OK);
}

static void test_max_message_bytes_is_read_from_the_conf(void **state) {
  (void)state;
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char e[256];
  assert_int_equal(kp_conf_max_message_bytes(conf), 1000000); /* librdkafka's default */
  assert_int_equal(rd_kafka_conf_set(conf, "message.max.bytes", "20000", e, sizeof e), RD_KAFKA_CONF_OK);
  assert_int_equal(kp_conf_max_message_bytes(conf), 20000);
  rd_kafka_conf_destroy(conf);
  assert_true(kp_record_size(10, 100, 0) > 110);
}

/* The map's value under key (NULL when absent); obj is a decoded map. */
static const msgpack_object *get(const msgpack_object *obj, const char *key) {
  for (uint32_t i = 0; i < obj->via.map.size; i++) {
    const msgpack_object_kv *kv = &obj->via.map.ptr[i];
    if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
        memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
      return &kv->val;
  }
  return NULL;
}

static contract_dlq dlq_of(const unsigned char *orig, size_t n) {
  contract_dlq d = {0};
  d.original = orig;
  d.original_len = n;
  d.original_key = "conv-1";
  d.original_key_len = 6;
  d.topic = "assistant.requests";
  d.partition = 3;
  d.offset = 42;
  d.error_code = "event_too_large";
  d.error_message = "the event is 1040000 bytes, more than max_event_bytes";
  d.event_id = "evt-1";
  d.conversation_id = "conv-1";
  d.failed_ms = 1700000000000;
  return d;
}

static void test_dead_letter_that_fits_is_whole(void **state) {
  (void)state;
  unsigned char orig[1000];
  memset(orig, 'x', sizeof orig);
  contract_dlq d = dlq_of(orig, sizeof orig);
  buf b;
  buf_init(&b, 1 << 20);
  int degraded = -1;
  assert_int_equal(odg_dlq_encode_within(&d, 4096, &b, &degraded), AW_OK);
  assert_int_equal(degraded, 0);
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  assert_int_equal(msgpack_unpack_next(&u, b.data, b.len, NULL), MSGPACK_UNPACK_SUCCESS);
  assert_int_equal(get(&u.data, "original")->via.bin.size, sizeof orig);
  assert_null(get(&u.data, "original_size"));
  assert_null(get(&u.data, "original_sha256"));
  msgpack_unpacked_destroy(&u);
  buf_free(&b);
}

static void test_dead_letter_too_large_is_degraded_within_the_budget(void **state) {
  (void)state;
  size_t n = 1040000;
  unsigned char *orig = malloc(n);
  for (size_t i = 0; i < n; i++) orig[i] = (unsigned char)(i * 7 + 3);
  contract_dlq d = dlq_of(orig, n);
  char want_sha[65];
  odg_sha256_hex(orig, n, want_sha);
  size_t budgets[] = {999488, 65536, 16384, 1024};
  for (size_t k = 0; k < sizeof budgets / sizeof budgets[0]; k++) {
    size_t max = budgets[k];
    buf b;
    buf_init(&b, 2 << 20);
    int degraded = 0;
    assert_int_equal(odg_dlq_encode_within(&d, max, &b, &degraded), AW_OK);
    assert_int_equal(degraded, 1);
    assert_true(b.len <= max);
    assert_true(b.len + 16 > max); /* as many leading bytes as fit: the budget is used */
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, b.data, b.len, NULL), MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *o = get(&u.data, "original");
    assert_non_null(o);
    assert_true(o->via.bin.size > 0 && o->via.bin.size < n);
    assert_memory_equal(o->via.bin.ptr, orig, o->via.bin.size); /* the leading bytes */
    assert_int_equal(get(&u.data, "original_size")->via.u64, n);
    const msgpack_object *sha = get(&u.data, "original_sha256");
    assert_int_equal(sha->via.str.size, 64);
    assert_memory_equal(sha->via.str.ptr, want_sha, 64);
    /* The reason and the source are kept. */
    const msgpack_object *err = get(&u.data, "error");
    assert_memory_equal(get(err, "code")->via.str.ptr, "event_too_large", 15);
    assert_int_equal(get(get(&u.data, "source"), "offset")->via.u64, 42);
    msgpack_unpacked_destroy(&u);
    buf_free(&b);
  }
  /* Not even the envelope fits: refused, never a record over the budget. */
  buf b;
  buf_init(&b, 1 << 20);
  int degraded = 0;
  assert_int_equal(odg_dlq_encode_within(&d, 200, &b, &degraded), AW_ETOOBIG);
  buf_free(&b);
  free(orig);
}

static void test_sha256_is_the_known_digest(void **state) {
  (void)state;
  char hex[65];
  odg_sha256_hex("abc", 3, hex);
  assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_response_too_large_keeps_ids_and_drops_the_answer(void **state) {
  (void)state;
  contract_response r = {0};
  r.event_id = "evt-9";
  r.conversation_id = "conv-9";
  r.status = "completed";
  r.backend_kind = "responses";
  r.backend_conversation = "conv_abc";
  r.backend_turn = "resp_def";
  r.timings.received_ms = 1;
  r.timings.completed_ms = 2;
  buf b;
  buf_init(&b, 1 << 16);
  assert_int_equal(odg_response_too_large(&r, 2000000, 1000000, &b), AW_OK);
  assert_true(b.len < 1024);
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  assert_int_equal(msgpack_unpack_next(&u, b.data, b.len, NULL), MSGPACK_UNPACK_SUCCESS);
  assert_memory_equal(get(&u.data, "status")->via.str.ptr, "failed", 6);
  const msgpack_object *err = get(&u.data, "error");
  assert_int_equal(get(err, "code")->via.str.size, strlen(ODG_RESPONSE_TOO_LARGE));
  assert_memory_equal(get(err, "code")->via.str.ptr, ODG_RESPONSE_TOO_LARGE, strlen(ODG_RESPONSE_TOO_LARGE));
  assert_memory_equal(get(&u.data, "event_id")->via.str.ptr, "evt-9", 5);
  assert_memory_equal(get(get(&u.data, "backend"), "turn")->via.str.ptr, "resp_def", 8);
  msgpack_unpacked_destroy(&u);
  buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_produce_errors_are_classified),
      cmocka_unit_test(test_max_message_bytes_is_read_from_the_conf),
      cmocka_unit_test(test_dead_letter_that_fits_is_whole),
      cmocka_unit_test(test_dead_letter_too_large_is_degraded_within_the_budget),
      cmocka_unit_test(test_sha256_is_the_known_digest),
      cmocka_unit_test(test_response_too_large_keeps_ids_and_drops_the_answer),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

"""The test harness itself: broker, Redis and the contract helpers work (needs no worker)."""
import collections

import pytest
import redis as redis_lib
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from awtest import Collector, assert_valid, make_request, pack, schema_errors


def test_broker_delivers_msgpack_in_key_order_on_a_12_partition_topic(ctx):
    convs = [f"conv-{i}" for i in range(10)]
    items = [(c, pack(make_request(c, f"message {n}"))) for n in range(10) for c in convs]
    ctx.producer.send_many(ctx.topics["requests"], items)
    col = Collector(ctx.kafka, ctx.topics["requests"])
    try:
        msgs = col.wait_count(len(items), timeout_s=30)
    finally:
        col.close()
    per_conv = collections.defaultdict(list)
    partitions = collections.defaultdict(set)
    for m in msgs:
        assert m.error is None
        per_conv[m.key_str].append(m["content"])
        partitions[m.key_str].add(m.partition)
    assert all(per_conv[c] == [f"message {n}" for n in range(10)] for c in convs)
    assert all(len(p) == 1 for p in partitions.values()), "one key, one partition"
    assert len({p for ps in partitions.values() for p in ps}) > 1, "keys spread over partitions"


def test_request_helper_builds_schema_valid_requests():
    assert_valid("request", make_request("c1", "hello"))
    assert_valid("request", make_request("c1", [{"type": "text", "text": "hi"}], stream=True))
    bad = make_request("c1", "hello")
    del bad["event_id"]
    assert schema_errors("request", bad), "the schema must notice a missing event_id"


def test_redis_server_of_the_session_answers(redis_client, ctx):
    redis_client.set(ctx.thread_key("c1"), "thread_x", ex=60)
    assert redis_client.get(ctx.thread_key("c1")) == "thread_x"
    assert ctx.thread_key("c1", "assistants") == f"{ctx.redis_prefix}:{{c:c1}}:thread"
    assert ctx.thread_key("c1", "responses") == f"{ctx.redis_prefix}:{{c:c1}}:conv"


def test_redis_of_the_session_refuses_clients_without_the_run_password(redis_port, redis_auth):
    user, password = redis_auth
    for kw in ({}, {"username": user, "password": password + "x"}, {"password": password + "x"}):
        c = redis_lib.Redis(host="127.0.0.1", port=redis_port, socket_timeout=5, **kw)
        try:
            # No password: NOAUTH; a wrong one (for the run's user or the default user, which
            # shares the password: lib.sh aw_redis_aclfile says why): WRONGPASS.  Both are
            # authentication errors, never an answer.
            with pytest.raises((redis_lib.exceptions.AuthenticationError, redis_lib.exceptions.ResponseError)):
                c.ping()
        finally:
            c.close()
    ok = redis_lib.Redis(host="127.0.0.1", port=redis_port, username=user, password=password)
    try:
        assert ok.execute_command("ACL", "WHOAMI") == user.encode()
    finally:
        ok.close()


def test_broker_sasl_listener_accepts_the_run_user_and_refuses_a_wrong_password(stack, kafka):
    bootstrap, user, password = stack.kafka_sasl()
    conf = {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-256", "sasl.username": user}
    assert AdminClient(dict(conf, **{"sasl.password": password})).list_topics(timeout=20).brokers
    with pytest.raises(KafkaException):
        AdminClient(dict(conf, **{"sasl.password": password + "x"})).list_topics(timeout=3)

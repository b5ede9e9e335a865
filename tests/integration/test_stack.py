"""The test harness itself: broker, Redis and the contract helpers work (needs no worker)."""
import collections

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

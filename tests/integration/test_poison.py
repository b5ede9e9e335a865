"""No single input stops the others (issue 11, part 1): an event whose outcome would not fit
Kafka's record limit is answered with a record that fits (a degraded dead letter: the original's
size, SHA-256 and leading bytes; a `failed` response_too_large response), and every other
conversation keeps being answered around it.

Needs the broker, Redis and the simulator (conftest.py)."""
from __future__ import annotations

import base64
import hashlib
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from awtest import assert_valid, create_topics, error_code, make_request, new_event_id, pack

GOOD = 20              # good events in other conversations around each poison pill
ANSWER_BOUND_S = 60    # all of them answered within this (the wedge left half unanswered after a minute)


def big_producer(kafka: str, compression: str = "none") -> Producer:
    """A producer that may send records above librdkafka's default 1,000,000-byte limit (the
    broker's topic limit, 1,048,588 by default, applies to the batch as sent: compressed)."""
    return Producer({"bootstrap.servers": kafka, "acks": "all", "message.max.bytes": 4_000_000,
                     "compression.type": compression, "linger.ms": 0})


def send_raw(p: Producer, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
    out = {}
    p.produce(topic, value=value, key=key, on_delivery=lambda err, m: out.update(err=err, m=m))
    p.flush(60)
    assert out.get("err") is None and "m" in out, f"produce failed: {out.get('err')}"
    return out["m"].partition(), out["m"].offset()


def good_events(ctx, n: int, tag: str) -> list[str]:
    ids = []
    for i in range(n):
        req = make_request(f"good-{tag}-{i}", f"How do I reset my password? ({tag} {i})")
        ctx.send(req)
        ids.append(req["event_id"])
    return ids


def assert_all_answered(ctx, ids: list[str]) -> float:
    t0 = time.monotonic()
    got = ctx.responses_for(ids, ANSWER_BOUND_S)
    for eid, m in got.items():
        assert m["status"] == "completed", (eid, m.obj)
    return time.monotonic() - t0


def degraded_dead_letter(ctx, partition: int, offset: int, original: bytes, code: str):
    dl = ctx.dlq.wait_for(lambda ms: next((m for m in ms if m.get("source", {}).get("offset") == offset
                                           and m["source"]["partition"] == partition), None),
                          ANSWER_BOUND_S, "the dead letter of the poison pill")
    assert_valid("dlq", dl)
    assert dl["error"]["code"] == code, dl["error"]
    assert dl["original_size"] == len(original)
    assert dl["original_sha256"] == hashlib.sha256(original).hexdigest()
    lead = dl["original"]
    assert 0 < len(lead) < len(original) and original.startswith(lead), "the original's leading bytes"
    assert len(dl.value) <= 1_000_000, "the dead letter fits the producer's message.max.bytes"
    assert len(lead) > 900_000, "as many leading bytes as fit"
    assert base64.b64decode(dl.json()["original"]) == lead
    return dl


def test_invalid_event_just_under_max_event_bytes_is_dead_lettered_degraded_and_others_go_on(ctx, worker, kafka):
    # 1,040,000 bytes: under worker.max_event_bytes (1 MiB), not msgpack, so it is dead-lettered;
    # with its envelope the dead letter would exceed the producer's message.max.bytes (1,000,000).
    w = worker()
    poison = b"\xc1" + bytes((i * 31 + 7) % 256 for i in range(1_040_000 - 1))
    before = good_events(ctx, GOOD // 2, "before")
    p = big_producer(kafka)
    partition, offset = send_raw(p, ctx.topics["requests"], b"poison-1", poison)
    after = good_events(ctx, GOOD - GOOD // 2, "after")
    took = assert_all_answered(ctx, before + after)
    degraded_dead_letter(ctx, partition, offset, poison, "malformed_event")
    rej = ctx.responses.wait_for(lambda ms: next((m for m in ms if m.get("status") == "rejected"
                                                  and error_code(m) == "malformed_event"), None),
                                 30, "the rejected response")
    assert_valid("response", rej)
    assert not w.logged("produce failed (ETOOBIG); will retry")
    print(f"poison just under max_event_bytes: {GOOD} other conversations answered in {took:.1f}s")


def test_compressed_event_over_max_event_bytes_is_dead_lettered_degraded_and_others_go_on(ctx, worker, kafka):
    # 1.2 MiB that the broker accepted because it travelled gzip-compressed: over max_event_bytes,
    # so it is rejected event_too_large, and its dead letter cannot carry it whole.
    worker()
    req = make_request("poison-2", "x" * (1_200 * 1024))
    poison = pack(req)
    assert len(poison) > 1_200 * 1024
    before = good_events(ctx, GOOD // 2, "before")
    p = big_producer(kafka, "gzip")
    partition, offset = send_raw(p, ctx.topics["requests"], b"poison-2", poison)
    after = good_events(ctx, GOOD - GOOD // 2, "after")
    took = assert_all_answered(ctx, before + after)
    dl = degraded_dead_letter(ctx, partition, offset, poison, "event_too_large")
    assert dl["event_id"] in (None, req["event_id"])
    print(f"compressed poison over max_event_bytes: {GOOD} other conversations answered in {took:.1f}s")


def test_response_over_the_record_limit_is_answered_failed_response_too_large_and_others_go_on(
        ctx, worker, sim_settings):
    # Answers of 2,500 words (simulator setting); the scripted model repeats the message's
    # keywords, so an answer about 40-letter words is about twice the size of one about
    # "password".  The worker's producers may write records of at most 24,000 bytes: the
    # ordinary answers (~16 KB) fit, the long-worded one (~30 KB) does not.
    sim_settings.faults(answer_tokens=2500)
    worker(kafka_properties={"message.max.bytes": "24000"})
    before = good_events(ctx, GOOD // 2, "before")
    words = " ".join(("lorem" + chr(97 + i)) * 8 for i in range(4))  # 4 keywords of 48 letters
    big = make_request("poison-3", f"Tell me about {words}", event_id=new_event_id())
    ctx.send(big)
    after = good_events(ctx, GOOD - GOOD // 2, "after")
    took = assert_all_answered(ctx, before + after)
    resp = ctx.response_for(big["event_id"], ANSWER_BOUND_S)
    assert_valid("response", resp)
    assert resp["status"] == "failed", {k: v for k, v in resp.obj.items() if k != "messages"}
    assert error_code(resp) == "response_too_large", resp.obj
    assert resp["messages"] == []
    assert len(resp.value) < 24_000
    print(f"response over the record limit: {GOOD} other conversations answered in {took:.1f}s")


def test_tool_call_whose_arguments_cannot_be_produced_is_answered_to_the_model(ctx, worker):
    """A function call whose arguments would make a tool request over the producer's record
    limit is answered to the model as an `arguments_too_large` error output, without a tool
    request, instead of failing in Kafka; the turn completes and other conversations go on."""
    from awtest import SUPPORT_BOT, WEATHER_ASSISTANT
    worker(assistants=[dict(WEATHER_ASSISTANT), dict(SUPPORT_BOT)],
           kafka_properties={"message.max.bytes": "200000"})
    huge = "X" * 120_000   # the request carries it twice: 240 KB > 200 KB
    req = make_request("conv-huge-args", f'call get_weather with {{"location": "{huge}"}}',
                       assistant=WEATHER_ASSISTANT["name"])
    ctx.send(req)
    ids = good_events(ctx, GOOD, "huge-args")
    resp = ctx.response_for(req["event_id"], ANSWER_BOUND_S)
    assert resp["status"] == "completed", resp.obj
    assert [(c["name"], c["outcome"]) for c in resp["tool_calls"]] == [("get_weather", "arguments_too_large")]
    assert_all_answered(ctx, ids)
    ctx.collector("tool_requests").quiet_for(1.0)
    assert not [m for m in ctx.collector("tool_requests").messages
                if m.get("conversation_id") == "conv-huge-args"], "no tool request was produced"


# ---- refusals by the broker: a topic's max.message.bytes below the producer's message.max.bytes --
#
# The producer's own check (message.max.bytes, 1,000,000 by default) lets these records through;
# the broker refuses them (MESSAGE_TOO_LARGE) because the output topic was created with a smaller
# max.message.bytes.  The broker applies that limit to the record batch as sent, and librdkafka
# batches the records of one partition, so every record that shared a batch with the large one is
# refused with it.  What must hold: the large record is replaced by its degraded form, the records
# refused only for their company go out whole, nothing is retried forever, and every other
# conversation is answered (exactly once: responses commit in Kafka transactions).

def topic_with_max_message_bytes(ctx, kind: str, max_message_bytes: int) -> str:
    """Replace this test's topic of `kind` by one created with a topic-level max.message.bytes
    (before any worker or collector uses it); returns its name."""
    name = f"t-{ctx.id}.{kind}-max{max_message_bytes}"
    admin = AdminClient({"bootstrap.servers": ctx.kafka})
    fs = admin.create_topics([NewTopic(name, num_partitions=ctx.PARTITIONS[kind], replication_factor=1,
                                       config={"max.message.bytes": str(max_message_bytes)})],
                             operation_timeout=30)
    for f in fs.values():
        f.result()
    create_topics(ctx.kafka, {name: ctx.PARTITIONS[kind]})  # already there: waits for the leaders
    ctx._extra_topics.append(name)  # dropped with the test's topics
    ctx.topics[kind] = name
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    got = admin.describe_configs([res])[res].result()
    assert got["max.message.bytes"].value == str(max_message_bytes), got["max.message.bytes"]
    return name


def refusals(w) -> list[dict]:
    return [e for e in w.events if e and "delivery failed" in str(e.get("msg", ""))]


def assert_goes_quiet(ctx, w, kind: str, seconds: float = 3.0) -> None:
    """Nothing is retried forever: once everything is answered, no record is refused any more
    and nothing more arrives on the topic."""
    before = len(refusals(w))
    more = ctx.collector(kind).quiet_for(seconds)
    assert not more, f"{len(more)} more record(s) on {kind} after everything was answered"
    assert len(refusals(w)) == before, "records are still being refused: " + w.tail(10)


def assert_once_each(ctx, ids: list[str]) -> None:
    counts = {}
    for m in ctx.responses.messages:
        e = m.get("event_id")
        if e in ids:
            counts[e] = counts.get(e, 0) + 1
    assert all(counts.get(e) == 1 for e in ids), {e: c for e, c in counts.items() if c != 1}


@pytest.mark.parametrize("exactly_once", [True, False], ids=["transactions", "at-least-once"])
def test_response_the_broker_refuses_for_the_topics_max_message_bytes_is_answered_failed_and_others_whole(
        ctx, worker, sim_settings, exactly_once):
    # Answers of 2,500 words: ~16 KB for the ordinary question, ~30 KB for the long-worded one.
    # The responses topic takes batches of at most 24,000 bytes; the producers may write records
    # of 1,000,000 (the default), so only the broker refuses.  Two ordinary answers batched
    # together (32 KB) are refused too: each is then produced again on its own, and goes out.
    sim_settings.faults(answer_tokens=2500)
    topic_with_max_message_bytes(ctx, "responses", 24_000)
    w = worker(extra_env={"AW_EXACTLY_ONCE": "true" if exactly_once else "false"})
    before = good_events(ctx, GOOD // 2, "before")
    words = " ".join(("lorem" + chr(97 + i)) * 8 for i in range(4))  # 4 keywords of 48 letters
    big = make_request("poison-broker-response", f"Tell me about {words}", event_id=new_event_id())
    ctx.send(big)
    after = good_events(ctx, GOOD - GOOD // 2, "after")
    took = assert_all_answered(ctx, before + after)
    resp = ctx.response_for(big["event_id"], ANSWER_BOUND_S)
    assert_valid("response", resp)
    assert resp["status"] == "failed", {k: v for k, v in resp.obj.items() if k != "messages"}
    assert error_code(resp) == "response_too_large", resp.obj
    assert resp["messages"] == []
    assert len(resp.value) < 24_000
    assert any("Broker: Message size too large" in e["msg"] for e in refusals(w)), "the broker refused"
    assert not w.logged("produce failed (ETOOBIG); will retry")
    assert_goes_quiet(ctx, w, "responses")
    if exactly_once:
        assert_once_each(ctx, before + after + [big["event_id"]])
    print(f"response refused by the broker ({'transactions' if exactly_once else 'at-least-once'}): "
          f"{GOOD} other conversations answered in {took:.1f}s, {len(refusals(w))} refused deliveries")


def test_dead_letter_the_broker_refuses_for_the_topics_max_message_bytes_is_degraded_and_small_ones_whole(
        ctx, worker):
    # A 300,000-byte invalid event: its dead letter passes the producer's check (1,000,000) and
    # is refused by the dead-letter topic (64,000 per batch).  Small invalid events under the same
    # key land in the same dead-letter partition at the same moment, so librdkafka batches their
    # dead letters with the large one and the broker refuses them all: theirs go out whole
    # afterwards, the large one's degraded (size, SHA-256, leading bytes).
    topic_with_max_message_bytes(ctx, "dlq", 64_000)
    w = worker()
    poison = b"\xc1" + bytes((i * 31 + 7) % 256 for i in range(300_000 - 1))
    smalls = [b"\xc1small invalid event %d " % i + b"." * 2000 for i in range(8)]
    before = good_events(ctx, GOOD // 2, "before")
    items = [(b"poison-dlq", poison)] + [(b"poison-dlq", s) for s in smalls]
    ctx.producer.send_many(ctx.topics["requests"], items)
    after = good_events(ctx, GOOD - GOOD // 2, "after")
    took = assert_all_answered(ctx, before + after)

    def dead_letters(ms):
        big = [m for m in ms if m.get("original_size") == len(poison)]
        whole = {m.obj.get("original"): m for m in ms if m.get("original_size") is None}
        return (big[0], whole) if big and all(s in whole for s in smalls) else None

    dl, whole = ctx.dlq.wait_for(dead_letters, ANSWER_BOUND_S, "every dead letter")
    assert_valid("dlq", dl)
    assert dl["error"]["code"] == "malformed_event", dl["error"]
    assert dl["original_sha256"] == hashlib.sha256(poison).hexdigest()
    lead = dl["original"]
    assert 0 < len(lead) < len(poison) and poison.startswith(lead), "the original's leading bytes"
    assert len(dl.value) < 64_000
    for s in smalls:
        assert_valid("dlq", whole[s])  # a small dead letter goes out whole
    assert not [m for m in ctx.dlq.messages if m.get("original_size") is not None and m is not dl], \
        "only the large dead letter is degraded"
    assert any("Broker: Message size too large" in e["msg"] for e in refusals(w)), "the broker refused"
    assert_goes_quiet(ctx, w, "dlq")
    sources = [(m["source"]["partition"], m["source"]["offset"]) for m in ctx.dlq.messages]
    assert len(sources) == len(set(sources)) == 1 + len(smalls), "one dead letter per rejected event"
    assert_once_each(ctx, before + after)
    print(f"dead letter refused by the broker: {GOOD} other conversations answered in {took:.1f}s, "
          f"{len(refusals(w))} refused deliveries")

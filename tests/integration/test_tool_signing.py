"""Tool requests a service can trust (issue 12): signed tool requests, signed replies, reply
topics pinned per function.

The worker signs every tool request with AW_TOOL_REQUEST_KEY (headers aw-sig, aw-sig-ts;
schemas/README.md "Signatures"), a service verifies before it acts and signs its reply, and the
worker dead-letters a reply that is not signed with the key (unsigned_reply,
bad_reply_signature) or that came from another topic than its function's reply_topic
(wrong_reply_topic) before recording anything, so a racer who read the request loses to the
genuine reply.  The test plays the tool service with FakeToolService (which verifies every
request like a real service, toolsign.py) or runs deploy/examples/weather_service.

Needs: Kafka, Redis, the simulator (and the weather_service binary for two tests); the first
test needs nothing.
"""
from __future__ import annotations

import json
import time
import uuid

import pytest

import toolsign
from awtest import TOOL_REQUEST_KEY, WEATHER_ASSISTANT, answer_text, assert_valid, pack, wait_until
from test_ops import free_port, get
from test_tools import (OUT, ask, by_location, new_conv, the_response, tool_calls, tool_requests, wait_dlq,
                        weather_service, weather_worker)  # noqa: F401 (weather_service: a fixture)
from test_weather_service import WeatherService, require_weather_binary

OLD_KEY = "aw-test-tool-request-key-OLD-91d2c4"
NEW_KEY = "aw-test-tool-request-key-NEW-6e0f3b"
PARIS_JSON = '{"location":"Paris","temperature_c":22,"conditions":"sunny"}'
TOKYO_JSON = '{"location":"Tokyo","temperature_c":18,"conditions":"cloudy"}'


def now_ms() -> int:
    return int(time.time() * 1000)


def refused_metric(port: int, reason: str) -> float:
    text = get(port, "/metrics")[1]
    for line in text.splitlines():
        if line.startswith(f'aw_tool_replies_refused_total{{reason="{reason}"}} '):
            return float(line.split()[1])
    raise AssertionError(f"no aw_tool_replies_refused_total{{reason={reason!r}}} in /metrics")


# ---- the scheme itself ---------------------------------------------------------------------------

def test_shared_signature_vectors_verify_in_python_and_any_change_fails():
    """The Python implementation (written from schemas/README.md) reproduces the shared vectors
    the C unit test checks, and refuses what it should: so the two sides agree on the wire."""
    assert toolsign.check_vectors() >= 5
    v = json.loads(toolsign.VECTORS.read_text())
    case = v["requests"][0]
    req, ts, keys = case["request"], case["ts_ms"], v["keys"]
    headers = toolsign.sign_request([keys["current"]], req, ts)
    assert toolsign.verify_request([keys["current"]], req, headers, ts) is None
    for field, value in [("name", "delete_everything"), ("arguments_json", '{"location":"Tokyo"}'),
                         ("reply_topic", "attacker.replies"), ("deadline_ms", req["deadline_ms"] + 1),
                         ("correlation_id", req["correlation_id"][:-1] + "A"), ("event_id", None)]:
        assert toolsign.verify_request([keys["current"]], dict(req, **{field: value}), headers, ts) == \
            "bad_signature", field
    # The arguments map is not signed: one that says something else than the text is refused.
    assert toolsign.verify_request([keys["current"]], dict(req, arguments={"location": "Tokyo"}), headers,
                                   ts) == "arguments_mismatch"
    assert toolsign.verify_request([keys["previous"]], req, headers, ts) == "bad_signature"
    rotating = toolsign.sign_request([keys["current"], keys["previous"]], req, ts)
    assert toolsign.verify_request([keys["previous"]], req, rotating, ts) is None
    assert toolsign.verify_request([keys["current"]], req, headers, ts + 300_001) == "stale_signature"
    assert toolsign.verify_request([keys["current"]], req, headers, ts - 300_001) == "future_signature"
    assert toolsign.verify_request([keys["current"]], req, headers[1:], ts) == "missing_signature"


# ---- the worker signs, the service verifies ----------------------------------------------------

def test_worker_signs_every_tool_request_so_a_service_can_verify_it(ctx, worker, tool_service):
    svc = tool_service()
    weather_worker(worker)
    req = ask(ctx, new_conv("conv-signed"), "What's the weather in Paris and in Tokyo?")
    treqs = tool_requests(ctx, svc, req, 2)
    for t in treqs:
        hdrs = dict(t.headers or [])
        assert toolsign.SIG_HEADER in hdrs and toolsign.TS_HEADER in hdrs, t.headers
        assert hdrs[toolsign.SIG_HEADER].startswith(b"v1=") and b"," not in hdrs[toolsign.SIG_HEADER]
        assert abs(int(hdrs[toolsign.TS_HEADER]) - now_ms()) < 60_000
        assert svc.verify(t) is None  # as FakeToolService checks every request it hands out
        assert t["correlation_id"].startswith("tc2.")  # pinned to its reply topic
        # Another key, or any signed field changed, does not verify.
        assert toolsign.verify_request(["some-other-key-0123456789"], t.obj, t.headers, now_ms()) == "bad_signature"
        forged = dict(t.obj, reply_topic="attacker.replies")
        assert toolsign.verify_request([TOOL_REQUEST_KEY], forged, t.headers, now_ms()) == "bad_signature"
    calls = by_location(treqs)
    svc.reply(calls["Paris"], output=OUT["Paris"])
    svc.reply(calls["Tokyo"], output=OUT["Tokyo"])
    resp = the_response(ctx, req["event_id"])
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {OUT['Paris']}. Tokyo: {OUT['Tokyo']}."


def test_example_weather_service_refuses_unsigned_forged_stale_and_misaddressed_requests(ctx, kafka, producer):
    """The example service acts only on genuine requests addressed to its own reply topic: the
    forgeries get no reply (on any topic) and are logged with their reason; the genuine request
    that follows them on the same partition is answered, signed."""
    require_weather_binary()
    attacker_topic = ctx.new_topic("attacker_replies", 1)
    s = WeatherService(ctx.workdir, "weather", ["--brokers", kafka, "--group", f"weather-{ctx.id}",
                                                "--requests-topic", ctx.topics["tool_requests"],
                                                "--reply-topic", ctx.topics["tool_replies"]])
    s.start()
    try:
        s.wait_msg("weather service ready", 30)
        conv = new_conv("conv-forged")

        def request(city: str, **over) -> dict:
            r = {"v": 1, "correlation_id": "tc2." + uuid.uuid4().hex + uuid.uuid4().hex[:22],
                 "conversation_id": conv, "thread_id": None, "run_id": None,
                 "tool_call_id": "call_" + uuid.uuid4().hex[:12], "name": "get_weather",
                 "arguments": {"location": city}, "arguments_json": json.dumps({"location": city}),
                 "deadline_ms": now_ms() + 60_000, "reply_topic": ctx.topics["tool_replies"],
                 "event_id": "evt-1", "round": 1}
            r.update(over)
            assert_valid("tool-request", r)
            return r

        def send(r: dict, headers) -> None:
            producer.send(ctx.topics["tool_requests"], pack(r), conv, headers=headers)

        key = [TOOL_REQUEST_KEY]
        unsigned = request("Madrid")
        send(unsigned, None)
        wrong_key = request("Rome")
        send(wrong_key, toolsign.sign_request(["a-key-the-workers-do-not-have"], wrong_key, now_ms()))
        stale = request("Berlin")
        send(stale, toolsign.sign_request(key, stale, now_ms() - 600_000))
        # Genuinely signed, but telling the service to answer elsewhere.
        elsewhere = request("London", reply_topic=attacker_topic)
        send(elsewhere, toolsign.sign_request(key, elsewhere, now_ms()))
        # A genuine request's signature on other arguments.
        sydney = request("Sydney")
        altered = dict(sydney, arguments_json='{"location":"New York"}', arguments={"location": "New York"})
        send(altered, toolsign.sign_request(key, sydney, now_ms()))
        good = request("Paris")
        send(good, toolsign.sign_request(key, good, now_ms()))

        replies = ctx.collector("tool_replies")
        rep = replies.wait_for(lambda ms: next((m for m in ms if m.get("correlation_id") == good["correlation_id"]),
                                               None), 60, "the reply to the genuine request")
        assert rep["output"] == PARIS_JSON
        assert toolsign.verify_reply(key, rep.obj, rep.headers) is None, "the service signs its replies"
        # Same partition, one at a time: everything before the genuine request was handled.
        assert [m.get("correlation_id") for m in replies.messages] == [good["correlation_id"]]
        reasons = [(e.get("reason"), e.get("tool_call_id")) for e in s.logged("tool request refused")]
        assert reasons == [("missing_signature", unsigned["tool_call_id"]),
                           ("bad_signature", wrong_key["tool_call_id"]),
                           ("stale_signature", stale["tool_call_id"]),
                           ("reply_topic_mismatch", elsewhere["tool_call_id"]),
                           ("bad_signature", altered["tool_call_id"])], reasons
        assert s.count("tool reply delivered") == 1
        assert not [ln for ln in s.lines if TOOL_REQUEST_KEY in ln], "the key is never logged"
        from confluent_kafka import Consumer, TopicPartition
        c = Consumer({"bootstrap.servers": kafka, "group.id": f"wm-{ctx.id}"})
        try:
            low, high = c.get_watermark_offsets(TopicPartition(attacker_topic, 0), timeout=10)
        finally:
            c.close()
        assert high == 0, "nothing was written to the topic a forged request named"
    finally:
        s.stop()
        s.assert_clean_exit()


# ---- replies a racer cannot forge --------------------------------------------------------------

def test_a_racing_unsigned_reply_is_dead_lettered_and_the_genuine_reply_wins(ctx, worker, tool_service):
    """Whoever reads the tool-request topic has the correlation id and can answer first; without
    the key the reply is dead-lettered (counted in /metrics) and the call stays open for the
    genuine reply, which arrives later and is the output the model reads."""
    svc = tool_service()
    port = free_port()
    w = weather_worker(worker, extra_env={"AW_HEALTH_PORT": str(port)})
    conv = new_conv("conv-race")
    req = ask(ctx, conv, "What's the weather in Paris?")
    (treq,) = tool_requests(ctx, svc, req, 1)
    unsigned = svc.reply(treq, output="Paris: -40 and a tornado", sign=False)
    wrong_key = svc.reply(treq, output="Paris: 50 and on fire", keys=["a-racer-guessed-this-key"])
    genuine = svc.reply(treq, output=OUT["Paris"])
    wait_dlq(ctx, "unsigned_reply", unsigned)
    rec = wait_dlq(ctx, "bad_reply_signature", wrong_key)
    assert "bad_signature" in rec["error"]["message"], rec.obj
    resp = the_response(ctx, req["event_id"])
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {OUT['Paris']}."
    assert tool_calls(resp) == [(treq["tool_call_id"], "get_weather", "output")]
    assert not [m for m in ctx.dlq.messages if m.get("original") == genuine], "the genuine reply was applied"
    wait_until(lambda: refused_metric(port, "unsigned_reply") == 1 and refused_metric(port, "bad_reply_signature") == 1,
               10, "the refused replies counted in /metrics")
    assert refused_metric(port, "wrong_reply_topic") == 0
    assert not [ln for ln in w.lines if TOOL_REQUEST_KEY in ln], "the key is never logged"


def test_replies_are_accepted_only_from_the_functions_pinned_reply_topic(ctx, worker, tool_service):
    """functions.get_weather.reply_topic pins where its replies come from: the request names it,
    and a correctly signed reply on the fleet's other reply topic is dead-lettered
    wrong_reply_topic; the one on the pinned topic is applied."""
    svc = tool_service()
    pinned = ctx.new_topic("weather_replies", 2)
    assistant = dict(WEATHER_ASSISTANT, tools=WEATHER_ASSISTANT["tools"] + [
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}])
    # get_time keeps the default reply topic, so the worker reads both topics.
    w = worker(assistants=[assistant], functions={"get_weather": {"reply_topic": pinned}})
    w.wait_log(lambda e: e.get("msg") == "partitions assigned" and e.get("topic") == pinned, 60,
               "the pinned reply topic's partitions")
    conv = new_conv("conv-pinned")
    req = ask(ctx, conv, "What's the weather in Paris?")
    (treq,) = tool_requests(ctx, svc, req, 1)
    assert treq["reply_topic"] == pinned
    astray = svc.reply(treq, output="Paris: from the wrong topic", topic=ctx.topics["tool_replies"])
    wait_dlq(ctx, "wrong_reply_topic", astray)
    svc.reply(treq, output=OUT["Paris"])  # to its reply_topic: the pinned one
    resp = the_response(ctx, req["event_id"])
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {OUT['Paris']}."


# ---- rotation ------------------------------------------------------------------------------------

def test_rotation_worker_on_new_key_with_the_previous_and_a_service_still_on_the_old_key_both_work(
        ctx, worker, weather_service):
    """Rotating AW_TOOL_REQUEST_KEY, step 1: workers get KEY=new, PREVIOUS=old and sign every
    request with both; a service still on the old key verifies the old key's signature and
    signs its reply with it, which the worker accepts."""
    svc = weather_service(env={"AW_TOOL_REQUEST_KEY": OLD_KEY})
    weather_worker(worker, tool_request_key=NEW_KEY, tool_request_key_previous=OLD_KEY)
    req = ask(ctx, new_conv("conv-rotate"), "What's the weather in Paris and in Tokyo?")
    resp = the_response(ctx, req["event_id"], timeout_s=60)
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {PARIS_JSON}. Tokyo: {TOKYO_JSON}."
    assert [o for _, _, o in tool_calls(resp)] == ["output", "output"]
    assert not svc.logged("tool request refused")
    # Both signatures travel: a service already on the new key accepts the same requests.
    treqs = [m for m in ctx.collector("tool_requests").wait_count(2)
             if m.get("event_id") == req["event_id"]]
    assert len(treqs) == 2
    for t in treqs:
        assert dict(t.headers)[toolsign.SIG_HEADER].count(b"v1=") == 2
        ts = int(dict(t.headers)[toolsign.TS_HEADER])
        assert toolsign.verify_request([NEW_KEY], t.obj, t.headers, ts) is None
        assert toolsign.verify_request([OLD_KEY], t.obj, t.headers, ts) is None
    replies = [m for m in ctx.collector("tool_replies").wait_count(2)]
    for r in replies:
        assert toolsign.verify_reply([OLD_KEY], r.obj, r.headers) is None
        assert toolsign.verify_reply([NEW_KEY], r.obj, r.headers) == "bad_signature"

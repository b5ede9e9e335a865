"""deploy/examples/weather_service: the example tool service, against the session's broker.

Each test gets its own request and reply topics and consumer group, starts the built binary
(build-asan/weather_service, or AW_BUILD_DIR's), produces tool requests built here per
schemas/tool-request.schema.json, signed with the test key like a worker signs them
(toolsign.py; tests/integration/test_tool_signing.py has the refusals), and reads the replies,
checking the service's signature on each.  Correlation ids only need the tc1. shape: the
service echoes them, verifying them is the worker's job.  Every service a test starts
must stop on SIGTERM with exit status 0 and no sanitizer report.

Needs: Kafka (no Redis, no simulator, no worker).
"""
from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

import toolsign
from awtest import (BUILD_DIR, TOOL_REQUEST_KEY, Collector, Worker, assert_valid, create_topics, decode_msgpack,
                    delete_topics, pack, safe_name)
WEATHER_BIN = BUILD_DIR / "weather_service"
# Like conftest.require_binary: a missing binary skips locally, fails under CI / AW_TEST_STRICT.
STRICT = os.environ.get("CI") == "true" or os.environ.get("AW_TEST_STRICT") == "1"


def require_weather_binary() -> None:
    if not WEATHER_BIN.exists():
        (pytest.fail if STRICT else pytest.skip)(f"{WEATHER_BIN} is not built yet")

EXPECTED = {
    "Paris": {"location": "Paris", "temperature_c": 22, "conditions": "sunny"},
    "Tokyo": {"location": "Tokyo", "temperature_c": 18, "conditions": "cloudy"},
    "Madrid": {"location": "Madrid", "temperature_c": 27, "conditions": "sunny"},
    "New York": {"location": "New York", "temperature_c": 20, "conditions": "clear"},
}


class WeatherService(Worker):
    """One weather_service process; reuses Worker's log capture, waits and clean-exit checks."""

    def __init__(self, workdir: Path, name: str, args: list[str], env: dict[str, str] | None = None):
        super().__init__(spec=None, workdir=workdir, name=name, binary=WEATHER_BIN)
        self.args = args
        # The key shared with the workers (AW_TOOL_REQUEST_KEY...): the test key unless given.
        self.extra_env = {"AW_TOOL_REQUEST_KEY": TOOL_REQUEST_KEY} if env is None else env

    def start(self) -> "WeatherService":
        assert self.binary.exists(), f"{self.binary} is not built"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AW_")}
        env.update({"ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1",
                    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"})
        env.update(self.extra_env)
        self.lines, self.events, self.returncode = [], [], None
        self.proc = subprocess.Popen([str(self.binary), *self.args], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        return self


class WCtx:
    """One test's topics and group, and the services it started."""

    def __init__(self, kafka: str, producer, workdir: Path):
        self.id = uuid.uuid4().hex[:12]
        self.kafka, self.producer, self.workdir = kafka, producer, workdir
        self.requests_topic = f"t-{self.id}.tool-requests"
        self.replies_topic = f"t-{self.id}.tool-replies"
        create_topics(kafka, {self.requests_topic: 3, self.replies_topic: 3})
        self.group = f"weather-{self.id}"
        self.replies = Collector(kafka, self.replies_topic)
        self.services: list[WeatherService] = []

    def start(self, *extra: str, name: str | None = None) -> WeatherService:
        name = name or f"weather{len(self.services) + 1}"
        s = WeatherService(self.workdir, name, ["--brokers", self.kafka, "--group", self.group,
                                                "--requests-topic", self.requests_topic,
                                                "--reply-topic", self.replies_topic, *extra])
        self.services.append(s)
        s.start()
        s.wait_msg("weather service ready", 30)
        return s

    def request(self, location=None, *, conversation_id: str | None = None, name: str = "get_weather",
                arguments_json: str | None = None, arguments="from_json", deadline_ms: int | None = None) -> dict:
        """A tool request map; arguments default to the decoding of arguments_json."""
        if arguments_json is None:
            arguments_json = json.dumps({"location": location, "unit": "celsius"})
        if arguments == "from_json":
            try:
                arguments = json.loads(arguments_json)
            except ValueError:
                arguments = None
        r = {"v": 1,
             "correlation_id": "tc1." + base64.urlsafe_b64encode(os.urandom(40)).decode().rstrip("=")[:54],
             "conversation_id": conversation_id or f"conv-{uuid.uuid4().hex[:8]}",
             "thread_id": "thread_" + uuid.uuid4().hex[:12], "run_id": "run_" + uuid.uuid4().hex[:12],
             "tool_call_id": "call_" + uuid.uuid4().hex[:16], "name": name,
             "arguments": arguments, "arguments_json": arguments_json,
             "deadline_ms": deadline_ms if deadline_ms is not None else int(time.time() * 1000) + 120_000,
             "reply_topic": self.replies_topic}
        assert_valid("tool-request", r)
        return r

    def send(self, req: dict | bytes, key: str | None = None) -> None:
        """Produce a request; a dict is signed like a worker signs it (raw bytes go unsigned)."""
        headers = None
        if isinstance(req, dict):
            key = key or req["conversation_id"]
            if {"correlation_id", "name", "deadline_ms", "reply_topic", "arguments_json"} <= req.keys():
                headers = toolsign.sign_request([TOOL_REQUEST_KEY], req, int(time.time() * 1000))
            req = pack(req)
        self.producer.send(self.requests_topic, req, key, headers=headers)

    def reply_for(self, req: dict, timeout_s: float = 60):
        """The reply carrying req's correlation id, once its signature (the service's) checked."""
        cid = req["correlation_id"]
        rep = self.replies.wait_for(lambda ms: next((m for m in ms if m.get("correlation_id") == cid), None),
                                    timeout_s, f"the reply to {req['tool_call_id']} ({req['arguments_json']})")
        why = toolsign.verify_reply([TOOL_REQUEST_KEY], rep.obj, rep.headers)
        assert why is None, f"the service's reply does not verify ({why}): {rep.obj}"
        return rep

    def close(self) -> list[str]:
        problems = []
        for s in self.services:
            s.stop()
            try:
                s.assert_clean_exit()
            except AssertionError as e:
                problems.append(str(e))
        self.replies.close()
        delete_topics(self.kafka, [self.requests_topic, self.replies_topic])
        return problems


@pytest.fixture
def wctx(request, stack, kafka, producer):
    require_weather_binary()
    c = WCtx(kafka, producer, stack.run_dir / "tests" / safe_name(request.node.name))
    yield c
    problems = c.close()
    assert not problems, "\n\n".join(problems)


def output_of(msg) -> dict:
    assert_valid("tool-reply", msg)
    assert msg.get("error") is None, f"expected an output, got error {msg.get('error')}"
    return json.loads(msg["output"])


def test_weather_service_replies_to_each_request_with_its_correlation_id_key_and_weather(wctx):
    svc = wctx.start()
    paris = wctx.request("Paris")
    tokyo = wctx.request("tokyo, Japan")  # case and country do not matter
    # arguments nil (the worker could not convert them): the service reads arguments_json.
    madrid = wctx.request(arguments_json='{"location": "Madrid"}', arguments=None)
    late = wctx.request("New York", deadline_ms=1)  # long past: still answered, and logged
    for r in (paris, tokyo, madrid, late):
        wctx.send(r)
    for req, city in ((paris, "Paris"), (tokyo, "Tokyo"), (madrid, "Madrid"), (late, "New York")):
        rep = wctx.reply_for(req)
        assert output_of(rep) == EXPECTED[city]
        assert rep["v"] == 1
        assert rep.key_str == req["conversation_id"], "a reply is keyed by the request's conversation id"
    # The output is the exact deterministic text the demo shows.
    assert wctx.reply_for(paris)["output"] == '{"location":"Paris","temperature_c":22,"conditions":"sunny"}'
    svc.wait_log(lambda e: e.get("level") == "warn" and "past its deadline" in e.get("msg", "")
                 and e.get("conversation_id") == late["conversation_id"], 10, "the late-request warning")
    assert svc.count("tool reply delivered") == 4
    # Exactly one reply per request.
    assert not wctx.replies.quiet_for(1.0)
    assert len(wctx.replies.messages) == 4


def test_weather_service_answers_unknown_cities_and_bad_arguments_with_errors(wctx):
    wctx.start()
    atlantis = wctx.request("Atlantis")
    missing = wctx.request(arguments_json='{"city": "Paris"}')
    wrong_type = wctx.request(arguments_json='{"location": 42}')
    not_json = wctx.request(arguments_json="location=Paris")  # arguments nil, text unparsable
    for r in (atlantis, missing, wrong_type, not_json):
        wctx.send(r)
    for req, code in ((atlantis, "unknown_location"), (missing, "invalid_arguments"),
                      (wrong_type, "invalid_arguments"), (not_json, "invalid_arguments")):
        rep = wctx.reply_for(req)
        assert_valid("tool-reply", rep)
        assert rep.get("output") is None
        assert rep["error"]["code"] == code, rep.obj
        assert rep["error"]["message"]
    assert "Atlantis" in wctx.reply_for(atlantis)["error"]["message"]


def test_weather_service_skips_malformed_and_foreign_requests_and_answers_the_next(wctx):
    svc = wctx.start("--log-level", "debug")
    conv = "conv-skip-" + uuid.uuid4().hex[:6]
    foreign = wctx.request("Paris", conversation_id=conv, name="get_order_status")
    after = wctx.request("Paris", conversation_id=conv)
    # Same key, so one partition: the good request is consumed after the bad ones.
    wctx.send(b"\xc1 not msgpack", key=conv)
    wctx.send(pack({"v": 1, "correlation_id": "tc1.x"}), key=conv)  # missing fields
    wctx.send(foreign)
    wctx.send(after)
    assert output_of(wctx.reply_for(after)) == EXPECTED["Paris"]
    assert svc.count("undecodable tool request skipped") == 2
    svc.wait_log(lambda e: e.get("level") == "debug" and "get_order_status" in e.get("msg", ""), 10,
                 "the debug line about the foreign request")
    assert not wctx.replies.quiet_for(0.5)
    assert [m["correlation_id"] for m in wctx.replies.messages] == [after["correlation_id"]]


def test_weather_service_fail_every_n_answers_every_nth_request_with_an_error(wctx):
    wctx.start("--fail-every", "2")
    conv = "conv-fail-" + uuid.uuid4().hex[:6]
    reqs = [wctx.request(city, conversation_id=conv) for city in ("Paris", "Tokyo", "Madrid", "Paris")]
    for r in reqs:
        wctx.send(r)
    codes = [wctx.reply_for(r).get("error") or {} for r in reqs]
    assert [c.get("code") for c in codes] == [None, "simulated_failure", None, "simulated_failure"]


def test_weather_service_commits_after_replying_so_a_restart_answers_only_new_requests(wctx):
    first = wctx.request("Paris")
    svc = wctx.start()
    wctx.send(first)
    wctx.reply_for(first)
    assert svc.stop() == 0
    svc.assert_clean_exit()
    second = wctx.request("Tokyo")
    wctx.send(second)
    wctx.start(name="weather-restarted")
    wctx.reply_for(second)
    assert not wctx.replies.quiet_for(1.0)
    cids = [m["correlation_id"] for m in wctx.replies.messages]
    assert cids == [first["correlation_id"], second["correlation_id"]], "a committed request came back"


def test_weather_service_stops_cleanly_on_sigterm_while_delaying_a_reply(wctx):
    svc = wctx.start("--delay-ms", "60000", "--log-level", "debug")
    req = wctx.request("Paris")
    wctx.send(req)
    svc.wait_log(lambda e: e.get("msg", "").startswith("tool request received")
                 and e.get("conversation_id") == req["conversation_id"], 60, "the request's receipt")
    # Stop while the reply is held back: exit 0 promptly, no reply, nothing committed.
    t0 = time.monotonic()
    assert svc.stop(timeout_s=30) == 0
    assert time.monotonic() - t0 < 15
    svc.assert_clean_exit()
    assert not [m for m in wctx.replies.messages if m.get("correlation_id") == req["correlation_id"]]
    # Not committed: the next member of the group answers it.
    wctx.start(name="weather-next")
    assert output_of(wctx.reply_for(req)) == EXPECTED["Paris"]


def test_weather_service_copies_the_trace_headers_into_the_reply(wctx):
    wctx.start()
    req = wctx.request("Rome")
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    signed = toolsign.sign_request([TOOL_REQUEST_KEY], req, int(time.time() * 1000))
    wctx.producer.p.produce(wctx.requests_topic, value=pack(req), key=req["conversation_id"],
                            headers=[("traceparent", traceparent), ("tracestate", "aw=1"), ("other", "x"), *signed])
    assert wctx.producer.p.flush(30) == 0
    assert output_of(wctx.reply_for(req))["location"] == "Rome"
    # The Collector keeps no headers: read the reply again with them.
    c = Consumer({"bootstrap.servers": wctx.kafka, "group.id": f"hdr-{wctx.id}", "enable.auto.commit": False})
    try:
        parts = c.list_topics(wctx.replies_topic, timeout=10).topics[wctx.replies_topic].partitions
        c.assign([TopicPartition(wctx.replies_topic, p, OFFSET_BEGINNING) for p in parts])
        end = time.monotonic() + 30
        found = None
        while found is None and time.monotonic() < end:
            for m in c.consume(num_messages=100, timeout=0.2):
                if not m.error() and m.key() == req["conversation_id"].encode():
                    found = m
        assert found is not None, "the reply was not read back"
        got = dict(found.headers() or [])
        assert toolsign.verify_reply([TOOL_REQUEST_KEY], decode_msgpack(found.value()), found.headers()) is None
        del got[toolsign.SIG_HEADER]  # the reply's own signature, checked above
        assert got == {"traceparent": traceparent.encode(), "tracestate": b"aw=1"}
    finally:
        c.close()

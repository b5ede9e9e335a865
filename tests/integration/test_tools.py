"""Function calling over Kafka (issue 3), end to end on the session's broker, Redis and simulator.

A run of the Weather Assistant that asks for get_weather stops in requires_action; the worker
publishes one tool request per call (schemas/tool-request.schema.json) to the function's topic,
waits for the replies (schemas/tool-reply.schema.json) that any worker of the group
"<group_id>.tool-replies" consumes, submits the outputs and answers once.  Here the test plays the
tool service (FakeToolService: reads the tool-requests topic, produces replies), or runs the
example deploy/examples/weather_service.

The simulator's model (tests/simulator/README.md, "Function calling") asks get_weather once per
city named in the message, a second round when the message says "twice", cuts the arguments short
on "bad arguments", and answers "<city>: <output>." per call in call order, so the response text
shows every output the run was given.
"""
from __future__ import annotations

import base64
import collections
import json
import secrets
import time
import uuid

import pytest

from awtest import (BACKEND, SUPPORT_BOT, TRACEPARENT_RE, WEATHER_ASSISTANT, answer_text, assert_valid,
                    conv_handle, error_code, history_turns, make_request, pack, partition_owners, turn_handle,
                    wait_until)

WEATHER = WEATHER_ASSISTANT["name"]
PARIS_TOKYO = "What's the weather in Paris and in Tokyo?"
OUT = {"Paris": "22°C and sunny", "Tokyo": "18°C and cloudy"}
# A dead member is noticed after the session timeout; the broker's minimum keeps the test short.
FAST_GROUP = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}


# ---- helpers ---------------------------------------------------------------------------------

def new_conv(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def weather_worker(worker, name=None, functions=None, **kw):
    """A worker serving the Weather Assistant (and the support bot) with `functions` routes."""
    return worker(name, assistants=[dict(WEATHER_ASSISTANT), dict(SUPPORT_BOT)], functions=functions, **kw)


def ask(ctx, conv: str, text: str, **kw) -> dict:
    return ctx.ask(conv, text, assistant=WEATHER, **kw)


def location(treq) -> str:
    return json.loads(treq["arguments_json"])["location"]


def by_location(treqs) -> dict:
    return {location(t): t for t in treqs}


def check_tool_request(ctx, treq, conv: str, city: str | None = None, req: dict | None = None,
                       round_: int | None = None) -> None:
    """One published tool request: schema, key, trace header, routing fields (of the request
    event req and the round, when given)."""
    assert_valid("tool-request", treq)
    assert treq.key_str == conv, "a tool request is keyed by its conversation id"
    hdrs = dict(treq.headers or [])
    assert "traceparent" in hdrs, f"no traceparent header: {treq.headers}"
    tp = hdrs["traceparent"].decode()
    assert TRACEPARENT_RE.match(tp), f"traceparent {tp!r} is not W3C"
    assert treq["conversation_id"] == conv
    assert treq["name"] == "get_weather"
    assert treq["reply_topic"] == ctx.topics["tool_replies"]
    assert treq["tool_call_id"].startswith("call_")
    if BACKEND == "assistants":
        assert treq["run_id"].startswith("run_") and treq["thread_id"].startswith("thread_"), treq.obj
    else:
        assert treq["run_id"] is None and treq["thread_id"] is None, treq.obj
    assert treq["event_id"] and treq["round"] >= 1, treq.obj
    if req is not None:
        assert treq["event_id"] == req["event_id"]
    if round_ is not None:
        assert treq["round"] == round_, treq.obj
    if city is not None:
        assert treq["arguments"] == {"location": city}, treq.obj
        assert json.loads(treq["arguments_json"]) == {"location": city}


def tool_requests(ctx, svc, req: dict, n: int, after: int = 0, timeout_s: float = 30) -> list:
    """The tool requests number after+1 .. after+n of req's conversation, once published; fails
    at once, with the response, if req is answered first."""
    conv = req["conversation_id"]

    def got(ms):
        mine = [m for m in ms if m.get("conversation_id") == conv]
        if len(mine) >= after + n:
            return mine[after:after + n]
        ctx.responses.poll_once(0.01)
        early = next((m for m in ctx.responses.messages if m.get("event_id") == req["event_id"]), None)
        if early is not None:
            raise AssertionError(f"{req['event_id']} was answered with {len(mine)} tool request(s) "
                                 f"published, {after + n} expected: {early.obj}")
        return None

    return svc.requests.wait_for(got, timeout_s, f"{after + n} tool request(s) of {conv}")


def published(w, treq, timeout_s: float = 30) -> int:
    """The worker's "tool requests published" line of treq's event (its log fields event_id,
    conversation_id, thread_id = the backend conversation, run_id = the backend turn)."""
    event_id = treq["event_id"]
    return w.wait_log(lambda e: e.get("msg") == "tool requests published" and e.get("event_id") == event_id,
                      timeout_s, f'"tool requests published" for {event_id}')


def check_one_turn(sim, resp, event_id: str, rounds: int, treq=None) -> None:
    """resp's turn is the one that made the calls, never restarted: on Assistants the thread
    has one run of the event (treq's); on Responses the conversation has one response of the
    event per round of calls plus the answer's, resp naming the last."""
    handle, turn = conv_handle(resp), turn_handle(resp)
    turns = sim.turns_of(handle, event_id)
    if BACKEND == "assistants":
        assert turns == [turn], f"one run: {turns}"
        if treq is not None:
            assert (resp["thread_id"], resp["run_id"]) == (treq["thread_id"], treq["run_id"])
    elif BACKEND == "chat":
        # The fleet stored the turn once, whole: one assistant tool-call message per round.
        assert turns == [turn], f"the turn stored once: {turns}"
        (t,) = [t for t in history_turns(handle) if t["e"] == event_id]
        assert sum(1 for m in t["m"] if m.get("tool_calls")) == rounds, t
    else:
        assert len(turns) == rounds + 1 and turns[-1] == turn, f"{rounds + 1} responses, {turn} last: {turns}"


def the_response(ctx, event_id: str, timeout_s: float = 30, quiet_s: float = 1.0):
    """The response to event_id, checked against the schema, and that it is the only one."""
    resp = ctx.response_for(event_id, timeout_s)
    assert_valid("response", resp)
    ctx.responses.quiet_for(quiet_s)
    n = sum(1 for m in ctx.responses.messages if m.get("event_id") == event_id)
    assert n == 1, f"{n} responses to {event_id}"
    return resp


def tool_calls(resp) -> list[tuple[str, str, str]]:
    return [(c["id"], c["name"], c["outcome"]) for c in resp.get("tool_calls") or []]


def submitted_outputs(sim, resp) -> list[tuple[str, str]]:
    """(call id, output) of every tool call of resp's turn as the API got them, all rounds in
    order (the run's steps; on Responses the conversation's function calls and their outputs:
    every test conversation has one event that calls functions)."""
    return sim.tool_outputs(conv_handle(resp), turn_handle(resp))


def dlq_records(ctx, code: str) -> list:
    return [m for m in ctx.dlq.messages if error_code(m) == code]


def wait_dlq(ctx, code: str, original: bytes, timeout_s: float = 30):
    """The dead letter of a reply: its exact bytes, this code, the replies topic as source."""
    rec = ctx.dlq.wait_for(lambda ms: next((m for m in ms if m.get("original") == original), None),
                           timeout_s, f"the dead letter ({code}) of {original[:60]!r}")
    assert_valid("dlq", rec)
    assert error_code(rec) == code, (code, rec.obj)
    assert rec["source"]["topic"] == ctx.topics["tool_replies"], rec.obj
    assert rec["original"] == original
    return rec


def random_correlation_id() -> str:
    """Well-formed and canonical (last character carries no unused bits), never issued."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    body = "".join(secrets.choice(alphabet) for _ in range(53)) + secrets.choice("AEIMQUYcgkosw048")
    return "tc1." + body


def tampered(cid: str) -> str:
    """The same first 26 characters as a real id, another tail: the tag no longer matches."""
    tail = "AAAAAAAA" if cid[-8:] != "AAAAAAAA" else "wAAAAAAA"
    return cid[:-8] + tail


# ---- 1. one call -----------------------------------------------------------------------------

def test_one_call_is_published_answered_and_its_output_used(ctx, worker, tool_service, simulator):
    svc = tool_service()
    w = weather_worker(worker)
    conv = new_conv("conv-one")
    t0 = now_ms()
    req = ask(ctx, conv, "What's the weather in Paris?")
    (treq,) = tool_requests(ctx, svc, req, 1)
    check_tool_request(ctx, treq, conv, "Paris", req, 1)
    assert t0 < treq["deadline_ms"] <= now_ms() + 30_000 + 1000, "the default deadline is 30 s"
    published(w, treq)

    svc.reply(treq, output=OUT["Paris"])
    resp = the_response(ctx, req["event_id"])
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {OUT['Paris']}."
    check_one_turn(simulator, resp, req["event_id"], 1, treq)
    assert tool_calls(resp) == [(treq["tool_call_id"], "get_weather", "output")]
    assert submitted_outputs(simulator, resp) == [(treq["tool_call_id"], OUT["Paris"])]
    assert w.logged("tool reply recorded") and w.logged("tool outputs submitted")
    # One request per call, and nothing dead-lettered.
    assert len(svc.requests_for(conv)) == 1
    ctx.dlq.quiet_for(0.3)
    assert not ctx.dlq.messages, [m.obj for m in ctx.dlq.messages]


# ---- 2. parallel calls, replies reversed, consumed by the other worker ---------------------------

def test_parallel_calls_replied_in_reverse_order_to_another_worker(ctx, worker, tool_service, simulator):
    ctx.new_topic("tool_replies", 1)  # one partition: exactly one worker consumes the replies
    svc = tool_service()
    w1 = weather_worker(worker, "w1")
    requests_topic, replies_topic = ctx.topics["requests"], ctx.topics["tool_replies"]
    wait_until(lambda: len(partition_owners([w1], requests_topic)) == 12
               and 0 in partition_owners([w1], replies_topic), 30,
               "w1 to hold every requests partition and the replies partition")
    w2 = weather_worker(worker, "w2")

    def settled():
        req_owners = partition_owners([w1, w2], requests_topic)
        rep_owners = partition_owners([w1, w2], replies_topic)
        # w2's replies consumer joined too (it logs its assignment, empty or not).
        if (len(req_owners) == 12 and set(req_owners.values()) == {w1, w2} and 0 in rep_owners
                and w2.assignment_log(replies_topic)):
            return req_owners, rep_owners
        return None

    req_owners, rep_owners = wait_until(settled, 30, "both groups rebalanced over w1 and w2")
    replier = rep_owners[0]
    publisher = w2 if replier is w1 else w1
    part = min(p for p, w in req_owners.items() if w is publisher)

    conv = new_conv("conv-par")
    req = make_request(conv, PARIS_TOKYO, assistant=WEATHER)
    assert ctx.send(req, partition=part)[0] == part
    treqs = tool_requests(ctx, svc, req, 2)
    for t in treqs:
        check_tool_request(ctx, t, conv, req=req, round_=1)
    calls = by_location(treqs)
    assert set(calls) == {"Paris", "Tokyo"}
    assert len({t["run_id"] for t in treqs}) == 1 and len({t["tool_call_id"] for t in treqs}) == 2
    assert len({t["correlation_id"] for t in treqs}) == 2
    published(publisher, treqs[0])
    assert not replier.logged("tool requests published", event_id=req["event_id"])

    svc.reply(calls["Tokyo"], output=OUT["Tokyo"])
    svc.reply(calls["Paris"], output=OUT["Paris"])
    resp = the_response(ctx, req["event_id"])
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {OUT['Paris']}. Tokyo: {OUT['Tokyo']}."
    assert tool_calls(resp) == [(calls["Paris"]["tool_call_id"], "get_weather", "output"),
                                (calls["Tokyo"]["tool_call_id"], "get_weather", "output")]
    assert partition_owners([w1, w2], replies_topic).get(0) is replier, \
        "the replies partition moved during the test: inconclusive"
    assert replier.logged("tool reply recorded"), f"{replier.name} did not record the replies:\n{replier.tail()}"
    assert not publisher.logged("tool reply recorded"), f"{publisher.name} does not hold the replies partition"
    assert publisher.logged("tool outputs submitted"), "the owner of the request event submits the outputs"
    assert not replier.logged("tool outputs submitted")
    check_one_turn(simulator, resp, req["event_id"], 1, treqs[0])
    assert submitted_outputs(simulator, resp) == [
        (calls["Paris"]["tool_call_id"], OUT["Paris"]), (calls["Tokyo"]["tool_call_id"], OUT["Tokyo"])]


# ---- 3. two rounds -----------------------------------------------------------------------------

def test_two_rounds_of_calls_four_replies_one_response(ctx, worker, tool_service, simulator):
    svc = tool_service()
    w = weather_worker(worker)
    conv = new_conv("conv-twice")
    req = ask(ctx, conv, "What's the weather in Paris and in Tokyo? Check twice.")
    first = by_location(tool_requests(ctx, svc, req, 2))
    for city, t in first.items():
        check_tool_request(ctx, t, conv, city, req, 1)
    run_id = first["Paris"]["run_id"]
    published(w, first["Paris"])
    svc.reply(first["Paris"], output=OUT["Paris"])
    svc.reply(first["Tokyo"], output=OUT["Tokyo"])

    second = by_location(tool_requests(ctx, svc, req, 2, after=2))
    for city, t in second.items():
        check_tool_request(ctx, t, conv, city, req, 2)
        assert t["run_id"] == run_id
    ids1 = {t["tool_call_id"] for t in first.values()}
    ids2 = {t["tool_call_id"] for t in second.values()}
    assert not ids1 & ids2, "the second round has new call ids"
    assert not {t["correlation_id"] for t in first.values()} & {t["correlation_id"] for t in second.values()}
    err = {"code": "station_offline", "message": "Tokyo station is offline"}
    svc.reply(second["Paris"], output="21°C and clear")
    svc.reply(second["Tokyo"], error=err)

    resp = the_response(ctx, req["event_id"])
    assert resp["status"] == "completed", resp.obj
    text = answer_text(resp)
    assert text.startswith(f"Paris: {OUT['Paris']}. Tokyo: {OUT['Tokyo']}. Paris: 21°C and clear. Tokyo: "), text
    assert "station_offline" in text
    assert tool_calls(resp) == [(first["Paris"]["tool_call_id"], "get_weather", "output"),
                                (first["Tokyo"]["tool_call_id"], "get_weather", "output"),
                                (second["Paris"]["tool_call_id"], "get_weather", "output"),
                                (second["Tokyo"]["tool_call_id"], "get_weather", "error")]
    check_one_turn(simulator, resp, req["event_id"], 2, first["Paris"])
    outs = submitted_outputs(simulator, resp)
    assert [o for _, o in outs[:3]] == [OUT["Paris"], OUT["Tokyo"], "21°C and clear"]
    assert json.loads(outs[3][1]) == {"error": err}, "an error reply is submitted as {\"error\": {code, message}}"
    assert len(svc.requests_for(conv)) == 4
    assert len(w.logged("tool outputs submitted")) == 2
    assert not ctx.dlq.quiet_for(0.3)


# ---- 4. deadlines ------------------------------------------------------------------------------

def test_deadline_error_output_submits_tool_timeout_and_the_run_goes_on(ctx, worker, tool_service, simulator):
    svc = tool_service()
    weather_worker(worker, functions={"get_weather": {"deadline_ms": 1500, "on_deadline": "error_output"}})
    conv = new_conv("conv-deadline")
    t0 = now_ms()
    req = ask(ctx, conv, "What's the weather in Paris?")
    (treq,) = tool_requests(ctx, svc, req, 1)  # published; nobody answers
    check_tool_request(ctx, treq, conv, "Paris", req, 1)
    assert t0 < treq["deadline_ms"] <= now_ms() + 1500
    resp = the_response(ctx, req["event_id"], timeout_s=20)
    assert resp["status"] == "completed", resp.obj
    assert resp["timings"]["completed_ms"] >= treq["deadline_ms"], "answered before the deadline passed"
    assert "tool_timeout" in answer_text(resp)
    assert tool_calls(resp) == [(treq["tool_call_id"], "get_weather", "timeout")]
    check_one_turn(simulator, resp, req["event_id"], 1, treq)
    ((cid, out),) = submitted_outputs(simulator, resp)
    assert cid == treq["tool_call_id"]
    assert json.loads(out) == {"error": {"code": "tool_timeout",
                                         "message": "no reply from get_weather within 1500 ms"}}

    # A reply after the deadline changes nothing and is dead-lettered.
    late = svc.reply(treq, output=OUT["Paris"])
    wait_dlq(ctx, "run_not_waiting", late)
    assert sum(1 for m in ctx.responses.quiet_for(0.5) if m.get("event_id") == req["event_id"]) == 0


def test_deadline_cancel_run_cancels_the_run(ctx, worker, tool_service, simulator):
    svc = tool_service()
    weather_worker(worker, functions={"get_weather": {"deadline_ms": 1500, "on_deadline": "cancel_run"}})
    conv = new_conv("conv-cancel")
    req = ask(ctx, conv, "What's the weather in Paris?")
    (treq,) = tool_requests(ctx, svc, req, 1)
    resp = the_response(ctx, req["event_id"], timeout_s=20)
    assert resp["status"] == "cancelled", resp.obj
    assert error_code(resp) == "tool_timeout", resp.obj
    assert "get_weather" in resp["error"]["message"]
    assert tool_calls(resp) == [(treq["tool_call_id"], "get_weather", "timeout")]
    handle, turn = conv_handle(resp), turn_handle(resp)
    if BACKEND == "assistants":
        assert resp["run_id"] == treq["run_id"]
        run = simulator.api("GET", f"/threads/{treq['thread_id']}/runs/{treq['run_id']}")
        assert run["status"] == "cancelled", run["status"]
        assert submitted_outputs(simulator, resp) == [(treq["tool_call_id"], None)], "nothing was submitted"
    elif BACKEND == "chat":
        # A cancelled turn leaves nothing of itself in the history (its calls never reached
        # the model again).
        assert simulator.turns_of(handle, req["event_id"]) == [], "nothing stored"
        assert submitted_outputs(simulator, resp) == []
    else:
        # The turn is the one response that made the call; no output went to the model (no
        # further response); the open call is closed in the conversation as cancelled, so that
        # the conversation's next turn is not refused.
        assert simulator.turns_of(handle, req["event_id"]) == [turn], "no response after the call"
        ((cid, out),) = submitted_outputs(simulator, resp)
        assert cid == treq["tool_call_id"] and out != OUT["Paris"]
        assert json.loads(out) == {"error": "cancelled"}, out

    late = svc.reply(treq, output=OUT["Paris"])
    wait_dlq(ctx, "run_not_waiting", late)


@pytest.mark.only_backend("assistants")  # only a run expires while it waits for outputs
def test_run_expired_by_the_api_while_waiting_is_answered_expired(ctx, worker, tool_service, sim_settings):
    sim_settings.faults(requires_action_timeout_s=2)
    svc = tool_service()
    weather_worker(worker)  # default deadline 30 s, later than the API's expiry
    conv = new_conv("conv-expire")
    req = ask(ctx, conv, "What's the weather in Paris?")
    (treq,) = tool_requests(ctx, svc, req, 1)
    resp = the_response(ctx, req["event_id"], timeout_s=20)
    run = sim_settings.api("GET", f"/threads/{treq['thread_id']}/runs/{treq['run_id']}")
    assert resp["status"] == "expired", (resp.obj, treq.obj, run)
    assert resp["run_id"] == treq["run_id"]
    run = sim_settings.api("GET", f"/threads/{treq['thread_id']}/runs/{treq['run_id']}")
    assert run["status"] == "expired"


# ---- 5. replies that cannot be applied: dead letters ------------------------------------------

def test_forged_duplicate_and_late_replies_are_dead_lettered_with_their_bytes(ctx, worker, tool_service,
                                                                             simulator):
    svc = tool_service()
    # Tokyo is never answered: its deadline ends the wait (error_output), so a late reply exists.
    weather_worker(worker, functions={"get_weather": {"deadline_ms": 6000}})
    conv = new_conv("conv-dlq")
    req = ask(ctx, conv, PARIS_TOKYO)
    calls = by_location(tool_requests(ctx, svc, req, 2))
    paris, tokyo = calls["Paris"], calls["Tokyo"]
    pcid = paris["correlation_id"]

    # Everything below goes to the one partition of the conversation's key, so in this order.
    forged = {
        "malformed id": (svc.reply(paris, output="forged", correlation_id="tc1.not-a-real-id"), "bad_correlation_id"),
        "tampered id": (svc.reply(paris, output="forged", correlation_id=tampered(pcid)), "bad_correlation_id"),
        "never issued": (svc.reply(paris, output="forged", correlation_id=random_correlation_id()),
                         "unknown_correlation_id"),
        "not msgpack": (svc.send_reply(paris, b"\xc1 not msgpack"), "malformed_reply"),
        "no output": (svc.send_reply(paris, pack({"v": 1, "correlation_id": pcid})), "missing_field"),
    }
    good = svc.reply(paris, output=OUT["Paris"])
    duplicate = svc.reply(paris, output="a second opinion")
    for what, (raw, code) in forged.items():
        rec = wait_dlq(ctx, code, raw)
        assert base64.b64decode(rec.json()["original"]) == raw, what
        assert rec["original_key"] == conv.encode(), what
    wait_dlq(ctx, "already_answered", duplicate)

    resp = the_response(ctx, req["event_id"], timeout_s=30)
    assert resp["status"] == "completed", resp.obj
    text = answer_text(resp)
    assert text.startswith(f"Paris: {OUT['Paris']}. Tokyo: "), text
    assert "tool_timeout" in text and "forged" not in text and "second opinion" not in text
    assert tool_calls(resp) == [(paris["tool_call_id"], "get_weather", "output"),
                                (tokyo["tool_call_id"], "get_weather", "timeout")]
    assert submitted_outputs(simulator, resp)[0] == (paris["tool_call_id"], OUT["Paris"])

    late = svc.reply(tokyo, output=OUT["Tokyo"])
    wait_dlq(ctx, "run_not_waiting", late)
    ctx.dlq.quiet_for(0.5)
    assert not [m for m in ctx.dlq.messages if m.get("original") == good], "the good reply was applied"
    assert collections.Counter(error_code(m) for m in ctx.dlq.messages) == {
        "bad_correlation_id": 2, "unknown_correlation_id": 1, "malformed_reply": 1, "missing_field": 1,
        "already_answered": 1, "run_not_waiting": 1}
    assert sum(1 for m in ctx.responses.messages if m.get("event_id") == req["event_id"]) == 1


# ---- 6. the owner dies while its run waits ---------------------------------------------------------

def test_owner_killed_while_waiting_another_worker_completes_the_run_once(ctx, worker, tool_service, simulator):
    svc = tool_service()
    w1 = weather_worker(worker, "doomed", kafka_properties=dict(FAST_GROUP))
    conv = new_conv("conv-crash")
    req = ask(ctx, conv, PARIS_TOKYO)
    calls = by_location(tool_requests(ctx, svc, req, 2))
    published(w1, calls["Paris"])
    w1.kill()

    svc.reply(calls["Tokyo"], output=OUT["Tokyo"])
    svc.reply(calls["Paris"], output=OUT["Paris"])
    heir = weather_worker(worker, "heir", kafka_properties=dict(FAST_GROUP))
    resp = the_response(ctx, req["event_id"], timeout_s=60, quiet_s=2.0)
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {OUT['Paris']}. Tokyo: {OUT['Tokyo']}."
    assert [outcome for _, _, outcome in tool_calls(resp)] == ["output", "output"]
    assert simulator.user_texts(conv_handle(resp)).count(PARIS_TOKYO) == 1, "the user message is on the thread once"
    # The turn was resumed, not restarted.
    check_one_turn(simulator, resp, req["event_id"], 1, calls["Paris"])
    assert simulator.turns_of(conv_handle(resp)) == simulator.turns_of(conv_handle(resp), req["event_id"])
    assert heir.logged("tool outputs submitted")
    assert not dlq_records(ctx, "already_answered") and not dlq_records(ctx, "run_not_waiting")


# ---- 7. the example weather service ----------------------------------------------------------------

@pytest.fixture
def weather_service(ctx, kafka):
    """Factory: start deploy/examples/weather_service on ctx's tool-requests topic; each must
    stop cleanly at teardown."""
    from test_weather_service import WeatherService, require_weather_binary
    require_weather_binary()
    started = []

    def start(name: str = "weather", *extra: str, env: dict[str, str] | None = None) -> WeatherService:
        # Its reply topic from its own configuration (the worker's tool_replies), its key from
        # the environment (the test key unless env says otherwise).
        s = WeatherService(ctx.workdir, name, ["--brokers", kafka, "--group", f"weather-{ctx.id}",
                                               "--requests-topic", ctx.topics["tool_requests"],
                                               "--reply-topic", ctx.topics["tool_replies"], *extra], env=env)
        started.append(s)
        s.start()
        s.wait_msg("weather service ready", 30)
        return s

    yield start
    problems = []
    for s in started:
        s.stop()
        try:
            s.assert_clean_exit()
        except AssertionError as e:
            problems.append(str(e))
    assert not problems, "\n\n".join(problems)


PARIS_JSON = '{"location":"Paris","temperature_c":22,"conditions":"sunny"}'
TOKYO_JSON = '{"location":"Tokyo","temperature_c":18,"conditions":"cloudy"}'


def test_weather_service_answers_paris_and_tokyo_end_to_end(ctx, worker, weather_service):
    svc = weather_service()
    weather_worker(worker)
    conv = new_conv("conv-example")
    req = ask(ctx, conv, PARIS_TOKYO)
    resp = the_response(ctx, req["event_id"])
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {PARIS_JSON}. Tokyo: {TOKYO_JSON}."
    assert [(n, o) for _, n, o in tool_calls(resp)] == [("get_weather", "output")] * 2
    wait_until(lambda: svc.count("tool reply delivered") == 2, 10, "two replies delivered")


def test_function_service_down_the_run_waits_and_completes_once_it_is_up(ctx, worker, tool_service,
                                                                         weather_service, simulator):
    observer = tool_service()
    w = weather_worker(worker)
    conv = new_conv("conv-down")
    req = ask(ctx, conv, PARIS_TOKYO)
    treqs = tool_requests(ctx, observer, req, 2)
    published(w, treqs[0])
    assert not [m for m in ctx.responses.messages if m.get("event_id") == req["event_id"]]
    weather_service()  # new group: starts from the earliest offset, answers what is waiting
    resp = the_response(ctx, req["event_id"])
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {PARIS_JSON}. Tokyo: {TOKYO_JSON}."
    check_one_turn(simulator, resp, req["event_id"], 1, treqs[0])


# ---- 8. invalid arguments ------------------------------------------------------------------------

def test_invalid_arguments_are_answered_to_the_model_without_a_tool_request(ctx, worker, tool_service,
                                                                           simulator):
    svc = tool_service()
    w = weather_worker(worker)
    broken = new_conv("conv-badjson")     # '{"location":"Paris"' (not JSON)
    wrong = new_conv("conv-badschema")    # {"location": 42} (breaks the parameters schema)
    r1 = ask(ctx, broken, "What's the weather in Paris? (bad arguments)")
    r2 = ask(ctx, wrong, 'Please call get_weather with {"location": 42}')
    got = ctx.responses_for([r1["event_id"], r2["event_id"]], timeout_s=30)
    for r in (r1, r2):
        resp = got[r["event_id"]]
        assert_valid("response", resp)
        assert resp["status"] == "completed", resp.obj
        assert "invalid_arguments" in answer_text(resp)
        ((call_id, name, outcome),) = tool_calls(resp)
        assert (name, outcome) == ("get_weather", "invalid_arguments")
        ((cid, out),) = submitted_outputs(simulator, resp)
        assert cid == call_id
        err = json.loads(out)["error"]
        assert err["code"] == "invalid_arguments" and err["message"], out
        assert not [e for e in w.logged("tool requests published", event_id=r["event_id"])
                    if e.get("count") != "0"], "a tool request was published"
    svc.requests.quiet_for(1.0)
    assert not svc.requests_for(broken) and not svc.requests_for(wrong), "no tool request was published"


def test_invalid_arguments_are_published_when_validation_is_off(ctx, worker, tool_service):
    svc = tool_service()
    weather_worker(worker, functions={"get_weather": {"validate_arguments": False}})
    conv = new_conv("conv-novalidate")
    req = ask(ctx, conv, "What's the weather in Paris? (bad arguments)")
    (treq,) = tool_requests(ctx, svc, req, 1)
    check_tool_request(ctx, treq, conv, req=req, round_=1)
    assert treq["arguments"] is None
    assert treq["arguments_json"] == '{"location":"Paris"'
    svc.reply(treq, output=OUT["Paris"])
    resp = the_response(ctx, req["event_id"])
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {OUT['Paris']}."
    assert tool_calls(resp) == [(treq["tool_call_id"], "get_weather", "output")]


# ---- 9. per-conversation order --------------------------------------------------------------------

def test_a_conversation_waits_for_its_tool_run_while_others_go_on(ctx, worker, tool_service, simulator):
    svc = tool_service()
    weather_worker(worker)
    conv = new_conv("conv-order")
    first = ask(ctx, conv, "What's the weather in Paris?")
    (treq,) = tool_requests(ctx, svc, first, 1)
    second = ask(ctx, conv, "Thanks, that is all for today.")
    other = ctx.ask(new_conv("conv-other"), "How do I reset my password?")
    # Another conversation is served while this one waits for its tool reply ...
    assert ctx.response_for(other["event_id"], 30)["status"] == "completed"
    # ... and this conversation's second request is not.
    ctx.responses.quiet_for(1.0)
    assert not [m for m in ctx.responses.messages if m.get("event_id") in (first["event_id"], second["event_id"])]

    svc.reply(treq, output=OUT["Paris"])
    got = ctx.responses_for([first["event_id"], second["event_id"]], timeout_s=30)
    r1, r2 = got[first["event_id"]], got[second["event_id"]]
    assert r1["status"] == "completed" and r2["status"] == "completed", (r1.obj, r2.obj)
    assert answer_text(r1) == f"Paris: {OUT['Paris']}."
    assert r1.partition == r2.partition and r1.offset < r2.offset, "answered in order"
    assert r2["timings"]["run_started_ms"] >= r1["timings"]["completed_ms"]
    assert conv_handle(r1) == conv_handle(r2)
    assert "tool_calls" not in r2.obj, "a run without function calls has no tool_calls key"
    handle = conv_handle(r1)
    if BACKEND == "assistants":
        roles = [(m["role"], m.get("run_id")) for m in simulator.thread_messages(handle)]
        assert roles == [("user", None), ("assistant", r1["run_id"]), ("user", None), ("assistant", r2["run_id"])]
    elif BACKEND == "chat":
        roles = [[(m["role"], bool(m.get("tool_calls"))) for m in t["m"]] for t in history_turns(handle)]
        assert roles == [[("user", False), ("assistant", True), ("tool", False), ("assistant", False)],
                         [("user", False), ("assistant", False)]], roles
    else:
        kinds = [(i["type"], i.get("role")) for i in simulator.conversation_items(handle)]
        assert kinds == [("message", "user"), ("function_call", None), ("function_call_output", None),
                         ("message", "assistant"), ("message", "user"), ("message", "assistant")], kinds
        assert simulator.turns_of(handle) == simulator.turns_of(handle, first["event_id"]) + [turn_handle(r2)]


def test_owner_killed_after_submitting_the_heir_lists_the_tool_calls(ctx, worker, tool_service, sim_settings):
    """The owner submitted the outputs and died while the run went on: the heir resumes the run by
    id and its response still lists the calls of the rounds before (read back from Redis)."""
    svc = tool_service()
    w1 = weather_worker(worker, "doomed", kafka_properties=dict(FAST_GROUP))
    conv = new_conv("conv-crash-late")
    req = ask(ctx, conv, PARIS_TOKYO)
    calls = by_location(tool_requests(ctx, svc, req, 2))
    published(w1, calls["Paris"])
    sim_settings.faults(token_delay_ms=400)  # the answer after the submission streams slowly
    svc.reply(calls["Paris"], output=OUT["Paris"])
    svc.reply(calls["Tokyo"], output=OUT["Tokyo"])
    w1.wait_log(lambda e: e.get("msg") == "tool outputs submitted", 30, "the outputs to be submitted")
    if BACKEND == "assistants":
        run_path = f"/threads/{calls['Paris']['thread_id']}/runs/{calls['Paris']['run_id']}"
        wait_until(lambda: sim_settings.api("GET", run_path)["status"] == "in_progress", 30,
                   "the API to take the outputs (run in_progress)")
    elif BACKEND == "chat":
        # The outputs went to the model with the turn's messages so far, and the answer streams.
        wait_until(lambda: [r for r in sim_settings.chat_requests()
                            if isinstance(r.get("body"), dict) and r["body"]["messages"][-1].get("role") == "tool"
                            and r["body"]["messages"][-1].get("tool_call_id") in
                            {calls["Paris"]["tool_call_id"], calls["Tokyo"]["tool_call_id"]}
                            and sim_settings.stats().get("active_streams", 0) >= 1], 30,
                   "the API to take the outputs (the next completion streaming)")
    else:
        # The outputs went in as the input of the turn's second response, which streams.
        wait_until(lambda: [r for r in sim_settings.admin_responses(event_id=req["event_id"])
                            if r["status"] == "in_progress"], 30,
                   "the API to take the outputs (a second response in_progress)")
    w1.kill()
    sim_settings.faults(token_delay_ms=0)

    weather_worker(worker, "heir", kafka_properties=dict(FAST_GROUP))
    resp = the_response(ctx, req["event_id"], timeout_s=60, quiet_s=2.0)
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {OUT['Paris']}. Tokyo: {OUT['Tokyo']}."
    listed = tool_calls(resp)
    assert sorted(cid for cid, _, _ in listed) == sorted(c["tool_call_id"] for c in calls.values())
    assert [(name, outcome) for _, name, outcome in listed] == [("get_weather", "output")] * 2

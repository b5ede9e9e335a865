"""Usage accounting (issue 13): every finished turn publishes one usage record to the usage topic
(schemas/usage.schema.json), in the Kafka transaction of its response, and /metrics counts the
tokens per assistant and model.

The records are checked against the simulator's own count of the tokens it charged
(GET /admin/usage, tests/simulator/sim_usage.h), per model.  Each test gives its assistants models
of their own ("<name>-u<test id>"; the simulator accepts any name and echoes it), so the count of
a model is exactly this test's traffic whatever else the session's simulator serves.  The
simulator reports cached tokens when a turn's earlier history is sent again (Responses and chat;
the Assistants API has no such detail) and reasoning tokens for an o-series model name ("o3-..."),
so those fields are really compared, not just zero on both sides.

Runs on every backend (tests/run.sh runs the file once per backend).
"""
from __future__ import annotations

import collections
import json
import socket
import urllib.request
import uuid

from awtest import BACKEND, SUPPORT_BOT, WEATHER_ASSISTANT, answer_text, assert_valid, wait_until

KINDS = ("input", "output", "cached", "reasoning")
FIELDS = ("input_tokens", "output_tokens", "cached_tokens", "reasoning_tokens", "total_tokens")
PARIS_TOKYO = "What's the weather in Paris and in Tokyo?"
OUT = {"Paris": "22°C and sunny", "Tokyo": "18°C and cloudy"}
# A dead member is noticed after the session timeout; the broker's minimum keeps the test short.
FAST_GROUP = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def sample(text: str, name: str, **labels) -> float | None:
    """The value of one series of a Prometheus text exposition, None when absent."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    head = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(head):
            return float(line[len(head):])
    return None


def new_conv(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def records_for(ctx, event_ids, quiet_s: float = 1.5) -> dict:
    """{event_id: [usage records]} once each event has one, after a quiet window that would show
    a second one."""
    want = set(event_ids)
    ctx.usage.wait_for(lambda ms: want <= {m.get("event_id") for m in ms} or None, 60,
                       f"usage records of {len(want)} events")
    ctx.usage.quiet_for(quiet_s)
    got = collections.defaultdict(list)
    for m in ctx.usage.messages:
        if m.get("event_id") in want:
            got[m["event_id"]].append(m)
    return got


def sums(records) -> dict:
    return {f: sum(r[f] for r in records) for f in FIELDS}


def charged(simulator, model: str) -> dict:
    t = simulator.usage(model)["total"]
    return {f: t[f] for f in FIELDS}


def check_record(rec, req: dict, assistant: str, model: str) -> None:
    assert_valid("usage", rec)
    assert rec.key_str == req["conversation_id"], "keyed by the conversation id"
    assert rec["event_id"] == req["event_id"] and rec["conversation_id"] == req["conversation_id"]
    assert rec["assistant"] == assistant and rec["model"] == model, rec.obj
    assert rec["backend"] == BACKEND and rec["status"] == "completed", rec.obj
    assert rec["tokens_reported"] is True and rec["input_tokens"] > 0 and rec["output_tokens"] > 0, rec.obj
    assert rec["total_tokens"] == rec["input_tokens"] + rec["output_tokens"]
    assert rec["cached_tokens"] <= rec["input_tokens"] and rec["reasoning_tokens"] <= rec["output_tokens"]
    assert 0 < rec["started_ms"] <= rec["completed_ms"]
    assert rec["duration_ms"] == rec["completed_ms"] - rec["started_ms"]


def test_every_turn_publishes_one_usage_record_whose_tokens_match_the_simulators_count(
        ctx, worker, tool_service, simulator):
    bot = dict(SUPPORT_BOT, model=f"o3-u{ctx.id}")              # reasons: reasoning tokens
    weather = dict(WEATHER_ASSISTANT, model=f"gpt-4o-u{ctx.id}")  # calls get_weather
    port = free_port()
    svc = tool_service()
    worker("usage", assistants=[bot, weather],
           extra_env={"AW_HEALTH_PORT": str(port), "AW_USAGE_TENANT_METADATA_FIELD": "tenant"})

    a, b, c = new_conv("conv-usage-a"), new_conv("conv-usage-b"), new_conv("conv-usage-c")
    first = ctx.ask(a, "How do I reset my password?")
    assert ctx.response_for(first["event_id"])["status"] == "completed"
    # The second turn sends the first again (chat: in its messages; Responses: in the
    # conversation), which the simulator reports as cached.
    second = ctx.ask(a, "And how do I change my email address?")
    tenanted = ctx.ask(b, "How can I delete my account?", metadata={"tenant": "acme", "other": "x"})
    tools = ctx.ask(c, PARIS_TOKYO, assistant=weather["name"])
    treqs = svc.wait_requests(c, 2)
    for t in treqs:
        svc.reply(t, output=OUT[json.loads(t["arguments_json"])["location"]])
    asked = [first, second, tenanted, tools]
    resps = ctx.responses_for([q["event_id"] for q in asked])
    assert all(r["status"] == "completed" for r in resps.values()), [r.obj for r in resps.values()]
    assert answer_text(resps[tools["event_id"]]) == f"Paris: {OUT['Paris']}. Tokyo: {OUT['Tokyo']}."

    got = records_for(ctx, [q["event_id"] for q in asked])
    assert all(len(v) == 1 for v in got.values()), {k: len(v) for k, v in got.items()}
    rec = {e: v[0] for e, v in got.items()}
    for q in (first, second, tenanted):
        check_record(rec[q["event_id"]], q, bot["name"], bot["model"])
        assert rec[q["event_id"]]["tool_rounds"] == 0 and rec[q["event_id"]]["tool_calls"] == 0
    check_record(rec[tools["event_id"]], tools, weather["name"], weather["model"])
    assert (rec[tools["event_id"]]["tool_rounds"], rec[tools["event_id"]]["tool_calls"]) == (1, 2)
    assert rec[tenanted["event_id"]]["tenant"] == "acme", "the tenant is the metadata value named by the setting"
    assert all("tenant" not in rec[q["event_id"]].obj for q in (first, second, tools))

    # The records add up to what the simulator charged, model by model, to the token.
    bot_recs = [rec[q["event_id"]] for q in (first, second, tenanted)]
    assert sums(bot_recs) == charged(simulator, bot["model"])
    assert sums([rec[tools["event_id"]]]) == charged(simulator, weather["model"])
    # ... with details that are really there where the API reports them.
    total = sums(rec.values())
    if BACKEND == "assistants":  # runs report prompt/completion/total only
        assert total["cached_tokens"] == 0 and total["reasoning_tokens"] == 0
    else:
        assert rec[second["event_id"]]["cached_tokens"] > 0, rec[second["event_id"]].obj
        assert rec[first["event_id"]]["reasoning_tokens"] > 0, rec[first["event_id"]].obj
        assert rec[tools["event_id"]]["reasoning_tokens"] == 0

    # /metrics counts the same tokens per configured assistant and model, and the records.
    def counted():
        text = metrics(port)
        return text if sample(text, "aw_usage_records_published_total") == 4 else None
    text = wait_until(counted, 10, "the metrics to count 4 usage records")
    for assistant, model, recs in ((bot["name"], bot["model"], bot_recs),
                                   (weather["name"], weather["model"], [rec[tools["event_id"]]])):
        want = sums(recs)
        for kind in KINDS:
            assert sample(text, "aw_usage_tokens_total", assistant=assistant, model=model, kind=kind) == \
                want[f"{kind}_tokens"], (assistant, kind, text)


def test_a_worker_killed_mid_turn_publishes_the_turns_usage_record_exactly_once(ctx, worker, sim_settings):
    """The killed worker's open transaction (the turn's response and record) aborts; its heir
    recovers the turn (Assistants: the run; Responses: the response) or generates it again (chat:
    the killed stream never reached its usage chunk, so the simulator charged nothing for it), and
    publishes one record: the simulator's count and the records agree."""
    sim = sim_settings
    bot = dict(SUPPORT_BOT, model=f"gpt-4o-k{ctx.id}")
    w1 = worker("doomed", assistants=[bot], kafka_properties=dict(FAST_GROUP))
    conv = new_conv("conv-usage-crash")
    first = ctx.ask(conv, "How do I reset my password?")
    assert ctx.response_for(first["event_id"])["status"] == "completed"

    sim.faults(token_delay_ms=150)  # ~3 s of streaming: the kill lands mid-turn
    before = sim.stats()["streams_total"]
    req = ctx.ask(conv, "Thanks! And how do I change my email address?", stream=True)
    wait_until(lambda: sim.stats()["active_streams"] >= 1 and sim.stats()["streams_total"] > before,
               30, "the turn to be streaming")
    assert req["event_id"] not in {m.get("event_id") for m in ctx.usage.messages}
    w1.kill()
    worker("heir", assistants=[bot], kafka_properties=dict(FAST_GROUP))
    assert ctx.response_for(req["event_id"], timeout_s=90)["status"] == "completed"

    got = records_for(ctx, [first["event_id"], req["event_id"]], quiet_s=3.0)
    assert [len(got[first["event_id"]]), len(got[req["event_id"]])] == [1, 1], \
        {k: [m.obj for m in v] for k, v in got.items()}
    check_record(got[req["event_id"]][0], req, bot["name"], bot["model"])
    assert sums([got[first["event_id"]][0], got[req["event_id"]][0]]) == charged(sim, bot["model"])


def test_a_worker_killed_while_its_turn_waits_for_tool_outputs_leaves_the_heir_every_rounds_tokens(
        ctx, worker, tool_service, simulator):
    """The first round's request was made (and charged) by the worker that died; the heir picks the
    turn up (Assistants: the run, whose usage is the whole run's; Responses: the first response,
    read again; chat: the pending turn in Redis, which carries its rounds' usage) and its one
    record counts both rounds."""
    weather = dict(WEATHER_ASSISTANT, model=f"gpt-4o-w{ctx.id}")
    svc = tool_service()
    w1 = worker("doomed", assistants=[weather], kafka_properties=dict(FAST_GROUP))
    conv = new_conv("conv-usage-wait")
    req = ctx.ask(conv, PARIS_TOKYO, assistant=weather["name"])
    treqs = svc.wait_requests(conv, 2)
    w1.wait_log(lambda e: e.get("msg") == "tool requests published" and e.get("event_id") == req["event_id"],
                30, "the tool requests to be published")
    w1.kill()
    for t in treqs:
        svc.reply(t, output=OUT[json.loads(t["arguments_json"])["location"]])
    worker("heir", assistants=[weather], kafka_properties=dict(FAST_GROUP))
    assert ctx.response_for(req["event_id"], timeout_s=90)["status"] == "completed"

    got = records_for(ctx, [req["event_id"]], quiet_s=2.0)
    assert len(got[req["event_id"]]) == 1, [m.obj for m in got[req["event_id"]]]
    rec = got[req["event_id"]][0]
    check_record(rec, req, weather["name"], weather["model"])
    assert (rec["tool_rounds"], rec["tool_calls"]) == (1, 2), rec.obj
    assert sums([rec]) == charged(simulator, weather["model"])


def test_an_answer_degraded_for_its_size_still_publishes_the_turns_usage_record(ctx, worker, sim_settings):
    """The outbox answers an answer over the producer's record limit `failed` /
    response_too_large (README.md, Size limits): the tokens were spent all the same, so the
    record goes out, with the turn's own status."""
    sim_settings.faults(answer_tokens=2500)  # ~30 KB with these 48-letter keywords
    bot = dict(SUPPORT_BOT, model=f"gpt-4o-b{ctx.id}")
    worker("small-records", assistants=[bot], kafka_properties={"message.max.bytes": "24000"})
    words = " ".join(("lorem" + chr(97 + i)) * 8 for i in range(4))
    req = ctx.ask(new_conv("conv-usage-big"), f"Tell me about {words}")
    resp = ctx.response_for(req["event_id"], 60)
    assert (resp["status"], resp["error"]["code"]) == ("failed", "response_too_large"), resp["error"]
    got = records_for(ctx, [req["event_id"]])
    assert len(got[req["event_id"]]) == 1
    rec = got[req["event_id"]][0]
    check_record(rec, req, bot["name"], bot["model"])
    assert rec["output_tokens"] >= 2500
    assert sums([rec]) == charged(sim_settings, bot["model"])


def test_without_a_usage_topic_or_when_turned_off_answers_go_on_and_no_record_is_published(ctx, worker):
    missing = f"t-{ctx.id}.usage-missing"
    w1 = worker("no-topic", extra_env={"AW_TOPIC_USAGE": missing})
    w1.wait_log(lambda e: str(e.get("msg", "")).startswith("usage records are OFF"), 10,
                "the log line saying usage records are off")
    one = ctx.ask(new_conv("conv-usage-off"), "How do I reset my password?")
    assert ctx.response_for(one["event_id"])["status"] == "completed"
    w1.stop()

    w2 = worker("disabled", extra_env={"AW_USAGE_ENABLED": "false"})
    assert not w2.logged("usage records go to " + ctx.topics["usage"])
    two = ctx.ask(new_conv("conv-usage-off"), "How do I change my email address?")
    assert ctx.response_for(two["event_id"])["status"] == "completed"
    assert not ctx.usage.quiet_for(2.0), "no usage record while they are off"

"""The simulator's function calling, driven over HTTP with no worker: a run whose assistant has a
function tool stops in requires_action with the calls the scripted model decided
(tests/simulator/README.md, "Function calling"), the stream ends there as the real API's does,
submit_tool_outputs checks the call ids and resumes the run, and a run left waiting expires or can
be cancelled.  Needs only the session's simulator (no Kafka, no Redis)."""
from __future__ import annotations

import json
import urllib.request

import pytest

from awtest import API_KEY, wait_until

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                   "required": ["location"]}}}
LOOKUP_TOOL = {"type": "function", "function": {
    "name": "lookup_order", "description": "An order by id",
    "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}}

PARIS_TOKYO = "What's the weather in Paris and in Tokyo?"
OUTPUTS = {"Paris": "22°C and sunny", "Tokyo": "18°C and cloudy"}
ANSWER = "Paris: 22°C and sunny. Tokyo: 18°C and cloudy."


# ---- helpers ---------------------------------------------------------------------------------

def sse(simulator, path: str, body: dict) -> list[tuple[str, object]]:
    """POST body (with stream: true) and read the whole SSE answer: [(event, data)], data
    parsed JSON or "[DONE]"."""
    req = urllib.request.Request(simulator.base + "/v1" + path, method="POST",
                                 data=json.dumps(dict(body, stream=True)).encode())
    req.add_header("Authorization", f"Bearer {API_KEY}")
    req.add_header("OpenAI-Beta", "assistants=v2")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        text = r.read().decode()
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        data = fields["data"]
        events.append((fields["event"], data if data == "[DONE]" else json.loads(data)))
    return events


def names(events) -> list[str]:
    return [e for e, _ in events]


def assistant(simulator, tools=(WEATHER_TOOL,), instructions="Answer with the tools.") -> dict:
    return simulator.api("POST", "/assistants", {"model": "gpt-4o", "instructions": instructions,
                                                 "tools": list(tools)})


def thread_with(simulator, text: str) -> dict:
    return simulator.api("POST", "/threads", {"messages": [{"role": "user", "content": text}]})


def get_run(simulator, run: dict) -> dict:
    return simulator.api("GET", f"/threads/{run['thread_id']}/runs/{run['id']}")


def wait_status(simulator, run: dict, status: str, timeout_s: float = 10) -> dict:
    return wait_until(lambda: (lambda r: r if r["status"] == status else None)(get_run(simulator, run)),
                      timeout_s, f"run {run['id']} to be {status}")


def start_run(simulator, text: str, **asst_kw) -> dict:
    """A non-streamed run on a new thread, once it waits in requires_action."""
    a = assistant(simulator, **asst_kw)
    t = thread_with(simulator, text)
    run = simulator.api("POST", f"/threads/{t['id']}/runs", {"assistant_id": a["id"]})
    return wait_status(simulator, run, "requires_action")


def pending_calls(run: dict) -> list[dict]:
    assert run["required_action"]["type"] == "submit_tool_outputs"
    return run["required_action"]["submit_tool_outputs"]["tool_calls"]


def weather_outputs(calls: list[dict]) -> list[dict]:
    return [{"tool_call_id": c["id"], "output": OUTPUTS[json.loads(c["function"]["arguments"])["location"]]}
            for c in calls]


def submit_path(run: dict) -> str:
    return f"/threads/{run['thread_id']}/runs/{run['id']}/submit_tool_outputs"


def answer_text(simulator, run: dict) -> str:
    msgs = simulator.api("GET", f"/threads/{run['thread_id']}/messages?run_id={run['id']}")["data"]
    assert len(msgs) == 1, msgs
    return simulator.message_text(msgs[0])


# ---- the model's calls -----------------------------------------------------------------------

def test_weather_question_for_two_cities_asks_two_parallel_calls_in_order(simulator):
    run = start_run(simulator, PARIS_TOKYO)
    calls = pending_calls(run)
    assert [(c["type"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("function", "get_weather", {"location": "Paris"}),
        ("function", "get_weather", {"location": "Tokyo"})]
    assert all(c["id"].startswith("call_") for c in calls) and calls[0]["id"] != calls[1]["id"]
    assert run["expires_at"] is not None and run["started_at"] is not None
    # The run's tool_calls step lists the same calls, outputs not in yet.
    steps = simulator.api("GET", f"/threads/{run['thread_id']}/runs/{run['id']}/steps")["data"]
    assert len(steps) == 1 and steps[0]["type"] == "tool_calls" and steps[0]["status"] == "in_progress"
    assert [(c["id"], c["function"]["output"]) for c in steps[0]["step_details"]["tool_calls"]] == [
        (c["id"], None) for c in calls]


def test_assistant_keeps_its_function_tools_as_given(simulator):
    a = assistant(simulator, tools=(WEATHER_TOOL, LOOKUP_TOOL))
    assert simulator.api("GET", f"/assistants/{a['id']}")["tools"] == [WEATHER_TOOL, LOOKUP_TOOL]


def test_call_by_name_with_json_arguments_and_bad_arguments(simulator):
    run = start_run(simulator, 'Please call lookup_order with {"order_id": "A-17"} now.',
                    tools=(WEATHER_TOOL, LOOKUP_TOOL))
    (call,) = pending_calls(run)
    assert call["function"]["name"] == "lookup_order"
    assert json.loads(call["function"]["arguments"]) == {"order_id": "A-17"}

    run = start_run(simulator, "call lookup_order", tools=(LOOKUP_TOOL,))
    assert [c["function"]["arguments"] for c in pending_calls(run)] == ["{}"]

    run = start_run(simulator, "Weather in Berlin, with bad arguments please")
    (call,) = pending_calls(run)
    with pytest.raises(ValueError):
        json.loads(call["function"]["arguments"])


def test_no_function_tool_or_no_request_answers_at_once(simulator):
    a = assistant(simulator, tools=({"type": "file_search"},))
    t = thread_with(simulator, PARIS_TOKYO)
    run = simulator.api("POST", f"/threads/{t['id']}/runs", {"assistant_id": a["id"]})
    assert wait_status(simulator, run, "completed")["required_action"] is None

    a = assistant(simulator)
    t = thread_with(simulator, "How do I reset my password?")
    run = simulator.api("POST", f"/threads/{t['id']}/runs", {"assistant_id": a["id"]})
    wait_status(simulator, run, "completed")


def test_parallel_tool_calls_false_asks_one_call_per_round(simulator):
    a = assistant(simulator)
    t = thread_with(simulator, PARIS_TOKYO)
    run = simulator.api("POST", f"/threads/{t['id']}/runs",
                        {"assistant_id": a["id"], "parallel_tool_calls": False})
    for city in ("Paris", "Tokyo"):
        run = wait_status(simulator, run, "requires_action")
        (call,) = pending_calls(run)
        assert json.loads(call["function"]["arguments"]) == {"location": city}
        simulator.api("POST", submit_path(run), {"tool_outputs": weather_outputs([call])})
    wait_status(simulator, run, "completed")
    assert answer_text(simulator, run) == ANSWER


# ---- streaming -------------------------------------------------------------------------------

def test_streamed_run_ends_at_requires_action_and_blocks_its_thread(simulator):
    a = assistant(simulator)
    t = thread_with(simulator, PARIS_TOKYO)
    events = sse(simulator, f"/threads/{t['id']}/runs", {"assistant_id": a["id"]})
    assert names(events) == [
        "thread.run.created", "thread.run.queued", "thread.run.in_progress",
        "thread.run.step.created", "thread.run.step.in_progress",
        "thread.run.step.delta", "thread.run.step.delta",
        "thread.run.requires_action", "done"]
    assert events[-1][1] == "[DONE]"
    step = events[3][1]
    assert step["type"] == "tool_calls" and step["step_details"] == {"type": "tool_calls", "tool_calls": []}
    deltas = [d["delta"]["step_details"]["tool_calls"][0] for e, d in events if e == "thread.run.step.delta"]
    run = events[-2][1]
    assert run["status"] == "requires_action"
    calls = pending_calls(run)
    assert [(d["index"], d["id"], d["function"]["name"], d["function"]["arguments"]) for d in deltas] == [
        (i, c["id"], c["function"]["name"], c["function"]["arguments"]) for i, c in enumerate(calls)]

    # The stream is over but the run waits, and holds its thread.
    assert get_run(simulator, run)["status"] == "requires_action"
    status, err = simulator._call("POST", f"/v1/threads/{t['id']}/messages", {"role": "user", "content": "hi"})
    assert status == 400 and "already has an active run" in err["error"]["message"]
    status, err = simulator._call("POST", f"/v1/threads/{t['id']}/runs", {"assistant_id": a["id"]})
    assert status == 400 and "already has an active run" in err["error"]["message"]


def test_streamed_submit_continues_the_run_to_an_answer_built_from_the_outputs(simulator):
    a = assistant(simulator)
    t = thread_with(simulator, PARIS_TOKYO)
    run = sse(simulator, f"/threads/{t['id']}/runs", {"assistant_id": a["id"]})[-2][1]
    calls = pending_calls(run)
    # Outputs in any order: the answer follows the order of the calls.
    events = sse(simulator, submit_path(run), {"tool_outputs": weather_outputs(calls)[::-1]})
    n_deltas = sum(1 for e in names(events) if e == "thread.message.delta")
    assert n_deltas == len(ANSWER.split())
    assert names(events) == [
        "thread.run.queued", "thread.run.in_progress", "thread.run.step.completed",
        "thread.run.step.created", "thread.run.step.in_progress",
        "thread.message.created", "thread.message.in_progress",
        *["thread.message.delta"] * n_deltas,
        "thread.message.completed", "thread.run.step.completed", "thread.run.completed", "done"]
    tool_step = events[2][1]
    assert tool_step["type"] == "tool_calls" and tool_step["status"] == "completed"
    assert {c["id"]: c["function"]["output"] for c in tool_step["step_details"]["tool_calls"]} == {
        o["tool_call_id"]: o["output"] for o in weather_outputs(calls)}
    assert "".join(d["delta"]["content"][0]["text"]["value"]
                   for e, d in events if e == "thread.message.delta") == ANSWER
    final = events[-2][1]
    assert final["status"] == "completed" and final["required_action"] is None
    assert answer_text(simulator, run) == ANSWER


# ---- submit_tool_outputs ---------------------------------------------------------------------

def test_submit_with_a_missing_or_unknown_call_id_is_refused_and_the_run_still_waits(simulator):
    run = start_run(simulator, PARIS_TOKYO)
    calls = pending_calls(run)
    outs = weather_outputs(calls)

    status, err = simulator._call("POST", "/v1" + submit_path(run), {"tool_outputs": outs[:1]})
    assert status == 400, err
    msg = err["error"]["message"]
    assert msg.startswith("Expected tool outputs for call_ids") and calls[1]["id"] in msg, msg
    assert err["error"]["type"] == "invalid_request_error"

    unknown = outs[:1] + [{"tool_call_id": "call_doesnotexist", "output": "x"}]
    status, err = simulator._call("POST", "/v1" + submit_path(run), {"tool_outputs": unknown})
    assert status == 400 and "call_doesnotexist" in err["error"]["message"]
    status, err = simulator._call("POST", "/v1" + submit_path(run), {"tool_outputs": outs + outs[:1]})
    assert status == 400, "a repeated call id is refused"
    status, err = simulator._call("POST", "/v1" + submit_path(run), {"tool_outputs": [{"output": "x"}]})
    assert status == 400 and err["error"]["code"] == "missing_required_parameter"

    assert get_run(simulator, run)["status"] == "requires_action"
    simulator.api("POST", submit_path(run), {"tool_outputs": outs})
    status, err = simulator._call("POST", "/v1" + submit_path(run), {"tool_outputs": outs})
    assert status == 400 and "do not accept tool outputs" in err["error"]["message"], err


def test_submit_without_stream_returns_the_queued_run_and_completes_in_the_background(simulator):
    before = simulator.stats()
    run = start_run(simulator, PARIS_TOKYO)
    queued = simulator.api("POST", submit_path(run), {"tool_outputs": weather_outputs(pending_calls(run))})
    assert queued["status"] == "queued" and queued["required_action"] is None
    done = wait_status(simulator, run, "completed")
    assert done["usage"]["completion_tokens"] == len(ANSWER.split())
    assert answer_text(simulator, run) == ANSWER
    steps = simulator.api("GET", f"/threads/{run['thread_id']}/runs/{run['id']}/steps?order=asc")["data"]
    assert [(s["type"], s["status"]) for s in steps] == [("tool_calls", "completed"),
                                                         ("message_creation", "completed")]
    route = "POST /v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs"
    count = lambda s: int((s["requests"].get(route) or {}).get("200", 0))  # noqa: E731
    assert count(simulator.stats()) == count(before) + 1


@pytest.mark.parametrize("how", ["message says twice", "instructions say two rounds"])
def test_second_round_asks_again_with_new_call_ids_before_answering(simulator, how):
    if how == "message says twice":
        run = start_run(simulator, "Check the weather in Paris and Tokyo twice.")
    else:
        run = start_run(simulator, PARIS_TOKYO, instructions="Think in two rounds.")
    first = pending_calls(run)
    simulator.api("POST", submit_path(run), {"tool_outputs": weather_outputs(first)})
    run = wait_status(simulator, run, "requires_action")
    second = pending_calls(run)
    assert [c["function"]["arguments"] for c in second] == [c["function"]["arguments"] for c in first]
    assert not {c["id"] for c in first} & {c["id"] for c in second}
    # The first round's ids are spent.
    status, _ = simulator._call("POST", "/v1" + submit_path(run), {"tool_outputs": weather_outputs(first)})
    assert status == 400
    events = sse(simulator, submit_path(run), {"tool_outputs": weather_outputs(second)})
    assert events[-2][0] == "thread.run.completed"
    assert answer_text(simulator, run) == ANSWER + " " + ANSWER


# ---- expiry and cancel -----------------------------------------------------------------------

def test_run_left_in_requires_action_expires_after_the_timeout(sim_settings):
    simulator = sim_settings
    assert simulator.settings()["requires_action_timeout_s"] == 600
    simulator.faults(requires_action_timeout_s=1)
    run = start_run(simulator, PARIS_TOKYO)
    expired = wait_status(simulator, run, "expired", timeout_s=15)
    assert expired["expires_at"] is not None and expired["required_action"] is None
    step = simulator.api("GET", f"/threads/{run['thread_id']}/runs/{run['id']}/steps")["data"][0]
    assert step["status"] == "expired" and step["expired_at"] is not None
    status, err = simulator._call("POST", "/v1" + submit_path(run),
                                  {"tool_outputs": weather_outputs(pending_calls(run))})
    assert status == 400 and "do not accept tool outputs" in err["error"]["message"]
    # The thread is free again.
    simulator.api("POST", f"/threads/{run['thread_id']}/messages", {"role": "user", "content": "Still there?"})


def test_cancel_a_run_waiting_for_tool_outputs(simulator):
    run = start_run(simulator, PARIS_TOKYO)
    r = simulator.api("POST", f"/threads/{run['thread_id']}/runs/{run['id']}/cancel")
    assert r["status"] in ("cancelling", "cancelled")
    cancelled = wait_status(simulator, run, "cancelled")
    assert cancelled["cancelled_at"] is not None and cancelled["required_action"] is None
    step = simulator.api("GET", f"/threads/{run['thread_id']}/runs/{run['id']}/steps")["data"][0]
    assert step["status"] == "cancelled"
    simulator.api("POST", f"/threads/{run['thread_id']}/messages", {"role": "user", "content": "Never mind."})

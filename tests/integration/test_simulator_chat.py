"""The simulator's Chat Completions API (POST /v1/chat/completions), driven over HTTP with no
worker: the answer is the same scripted model's as on the Responses API (the system message is
the instructions), streamed one word per chunk between a role chunk and a finish chunk, tool calls
(parallel for the weather question) come as tool_calls and the tool messages after them give the
final answer, usage grows with the history sent, invalid message sequences are refused like the
real API refuses them, the simulator's faults apply to the route, the request bodies are kept for
GET /admin/chat/requests, and everything recorded conforms to the spec (tests/simulator/README.md).

Runs its own simulator (not the session's): its fault settings and its record then belong to this
module alone, and at the end it must exit 0 with no sanitizer report."""
from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
import urllib.request

import pytest

from awtest import API_KEY, SANITIZER_MARKERS, SHARED_DIR, SIMULATOR_BIN, Simulator, wait_until
from openapi_check import SpecChecker

SPEC = SHARED_DIR / "openai-openapi" / "openapi.validatable.yaml"
STRICT = os.environ.get("CI") == "true" or os.environ.get("AW_TEST_STRICT") == "1"
ROUTE = "POST /v1/chat/completions"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}
LOOKUP_TOOL = {"type": "function", "function": {"name": "lookup_order", "parameters": {"type": "object"}}}
PARIS_TOKYO = "What's the weather in Paris and in Tokyo?"
OUTPUTS = {"Paris": "22°C and sunny", "Tokyo": "18°C and cloudy"}
ANSWER = "Paris: 22°C and sunny. Tokyo: 18°C and cloudy."
SUPPORT = "Provide support based on the latest documentation."


# ---- the simulator of this module ------------------------------------------------------------

@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    if not SIMULATOR_BIN.exists():
        msg = f"{SIMULATOR_BIN} is not built yet"
        pytest.fail(msg) if STRICT else pytest.skip(msg)
    d = tmp_path_factory.mktemp("chat-simulator")
    err = open(d / "stderr.log", "wb")
    proc = subprocess.Popen([str(SIMULATOR_BIN), "--host", "127.0.0.1", "--port", "0",
                             "--port-file", str(d / "port"), "--record", str(d / "record.jsonl")],
                            stdout=subprocess.DEVNULL, stderr=err)
    try:
        port = wait_until(lambda: (d / "port").exists() and (d / "port").read_text().strip(), 20,
                          "the simulator's port file")
        yield Simulator(int(port), d / "record.jsonl")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        err.close()
    log = (d / "stderr.log").read_text(errors="replace")
    assert rc == 0, f"the simulator exited {rc}:\n{log[-3000:]}"
    assert not any(m in log for m in SANITIZER_MARKERS), f"sanitizer report:\n{log[-6000:]}"


@pytest.fixture
def s(sim):
    """The module's simulator with the default settings, the faults of the previous test gone."""
    assert sim._call("POST", "/admin/reset")[0] == 200
    return sim


# ---- helpers ---------------------------------------------------------------------------------

def post(sim, path: str, body, timeout_s: float = 30):
    """(status, headers, raw bytes) of one POST /v1 call; raises on a connection closed without
    an answer, and returns what came when a streamed answer was cut (headers["X-Cut"] = "1")."""
    conn = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=timeout_s)
    try:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        conn.request("POST", "/v1" + path, data, {"Authorization": f"Bearer {API_KEY}",
                                                  "Content-Type": "application/json"})
        resp = conn.getresponse()
        headers = {k: v for k, v in resp.getheaders()}
        try:
            raw = resp.read()
        except http.client.IncompleteRead as e:
            raw, headers["X-Cut"] = e.partial, "1"
        return resp.status, headers, raw
    finally:
        conn.close()


def chat(sim, body):
    status, headers, raw = post(sim, "/chat/completions", body)
    return status, headers, json.loads(raw) if raw else None


def complete(sim, body) -> dict:
    status, _, obj = chat(sim, body)
    assert status == 200, obj
    return obj


def chunks_of(raw: bytes) -> list:
    """The data of every SSE block (dicts, and "[DONE]"); there are no `event:` lines."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        assert block.startswith("data: ") and "\n" not in block, block
        data = block[len("data: "):]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def stream(sim, body) -> list:
    status, headers, raw = post(sim, "/chat/completions", dict(body, stream=True))
    assert status == 200, raw
    assert headers["Content-Type"].startswith("text/event-stream")
    assert "X-Cut" not in headers, "the stream was cut"
    return chunks_of(raw)


def deltas(chunks) -> list[dict]:
    return [c["choices"][0]["delta"] for c in chunks if c != "[DONE]" and c["choices"]]


def text_of(chunks) -> str:
    return "".join(d.get("content") or "" for d in deltas(chunks))


def msgs(*texts, system=SUPPORT):
    out = [{"role": "system", "content": system}] if system else []
    return out + [{"role": "user", "content": t} for t in texts]


def responses_answer(sim, text: str, instructions: str | None = None, **extra) -> dict:
    """The Responses API's answer to the same question (the one scripted model)."""
    status, _, raw = post(sim, "/responses", dict({"model": "gpt-4o", "input": text, "store": False,
                                                   **({"instructions": instructions} if instructions else {})},
                                                  **extra))
    assert status == 200, raw
    return json.loads(raw)


def admin_requests(sim, after: int | None = None) -> list[dict]:
    q = "" if after is None else f"?after={after}"
    with urllib.request.urlopen(f"{sim.base}/admin/chat/requests{q}", timeout=10) as r:
        return json.loads(r.read())


def route_counts(sim) -> dict:
    return sim.stats()["requests"].get(ROUTE, {})


def tool_messages(calls, outputs=OUTPUTS):
    """The assistant message with the calls and one tool message per call, as a client sends them."""
    city = lambda c: json.loads(c["function"]["arguments"])["location"]
    return [{"role": "assistant", "content": None, "tool_calls": calls}] + [
        {"role": "tool", "tool_call_id": c["id"], "content": outputs[city(c)]} for c in calls]


# ---- answers ---------------------------------------------------------------------------------

def test_non_streamed_answer_is_the_scripted_models_with_the_system_message_as_instructions(s):
    obj = complete(s, {"model": "gpt-4o", "messages": msgs("How do I reset my password?")})
    assert obj["id"].startswith("chatcmpl-") and obj["object"] == "chat.completion"
    assert obj["model"] == "gpt-4o" and isinstance(obj["created"], int)
    choice = obj["choices"][0]
    assert (choice["index"], choice["finish_reason"], choice["logprobs"]) == (0, "stop", None)
    msg = choice["message"]
    assert msg["role"] == "assistant" and msg["refusal"] is None and "tool_calls" not in msg
    want = responses_answer(s, "How do I reset my password?", SUPPORT)["output"][0]["content"][0]["text"]
    assert msg["content"] == want
    assert want.startswith("To reset your password,") and want.endswith(f"(instructions: {SUPPORT})")
    u = obj["usage"]
    assert u["completion_tokens"] == len(want.split()) == 20
    assert u["prompt_tokens"] == len(SUPPORT.split()) + 6
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]


def test_streamed_chunks_make_the_same_text_one_word_each_and_end_with_stop_and_done(s):
    body = {"model": "gpt-4o", "messages": msgs("How do I reset my password?")}
    want = complete(s, body)["choices"][0]["message"]["content"]
    chunks = stream(s, body)
    assert chunks[-1] == "[DONE]" and chunks.count("[DONE]") == 1
    objs = chunks[:-1]
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in objs} == {
        (objs[0]["id"], objs[0]["created"], "gpt-4o", "chat.completion.chunk")}
    d = deltas(objs)
    assert d[0] == {"role": "assistant", "content": "", "refusal": None}
    words = [x["content"] for x in d[1:-1]]
    assert len(words) == 20 and all(len(w.split()) == 1 for w in words)
    assert "".join(words) == text_of(objs) == want
    assert [c["choices"][0]["finish_reason"] for c in objs] == [None] * (len(objs) - 1) + ["stop"]
    assert d[-1] == {} and all("usage" not in c for c in objs)


def test_include_usage_adds_a_last_chunk_with_empty_choices_and_the_usage(s):
    body = {"model": "gpt-4o", "messages": msgs("Hello there")}
    usage = complete(s, body)["usage"]
    chunks = stream(s, dict(body, stream_options={"include_usage": True}))
    assert chunks[-1] == "[DONE]"
    last = chunks[-2]
    assert last["choices"] == [] and last["usage"] == usage
    assert all(c["usage"] is None for c in chunks[:-2])
    assert chunks[-3]["choices"][0]["finish_reason"] == "stop"


def test_max_tokens_cuts_the_answer_with_finish_reason_length(s):
    body = {"model": "gpt-4o", "messages": msgs("How do I reset my password?"), "max_completion_tokens": 4}
    obj = complete(s, body)
    assert obj["choices"][0]["finish_reason"] == "length"
    assert obj["choices"][0]["message"]["content"] == "To reset your password,"
    assert obj["usage"]["completion_tokens"] == 4
    chunks = stream(s, dict(body, max_completion_tokens=None, max_tokens=2))
    assert text_of(chunks) == "To reset" and chunks[-2]["choices"][0]["finish_reason"] == "length"


def test_image_url_parts_and_fields_it_does_not_use_are_accepted(s):
    plain = complete(s, {"model": "gpt-4o", "messages": msgs("What is in this picture?")})
    obj = complete(s, {"model": "gpt-4o", "temperature": 0.2, "user": "u-1", "metadata": {"k": "v"}, "n": 1,
                       "messages": [{"role": "developer", "content": [{"type": "text", "text": SUPPORT}]},
                                    {"role": "user", "name": "ann", "content": [
                                        {"type": "text", "text": "What is in this picture?"},
                                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png",
                                                                            "detail": "low"}}]}]})
    assert obj["choices"][0]["message"]["content"] == plain["choices"][0]["message"]["content"]
    assert obj["usage"]["prompt_tokens"] == plain["usage"]["prompt_tokens"]


# ---- tool calls ------------------------------------------------------------------------------

def test_weather_question_gives_parallel_tool_calls_and_the_tool_messages_give_the_final_answer(s):
    history = msgs(PARIS_TOKYO, system="You are a weather bot.")
    obj = complete(s, {"model": "gpt-4o", "messages": history, "tools": [WEATHER_TOOL]})
    choice = obj["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    calls = choice["message"]["tool_calls"]
    assert [(c["type"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("function", "get_weather", {"location": "Paris"}), ("function", "get_weather", {"location": "Tokyo"})]
    assert all(c["id"].startswith("call_") for c in calls) and calls[0]["id"] != calls[1]["id"]
    # The Responses API makes the same calls for the same question and tools.
    resp = responses_answer(s, PARIS_TOKYO, tools=[{"type": "function", "name": "get_weather", "strict": False,
                                                    "parameters": WEATHER_TOOL["function"]["parameters"]}])
    assert [o["arguments"] for o in resp["output"]] == [c["function"]["arguments"] for c in calls]
    final = complete(s, {"model": "gpt-4o", "messages": history + tool_messages(calls), "tools": [WEATHER_TOOL]})
    assert final["choices"][0]["message"]["content"] == ANSWER
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["usage"]["completion_tokens"] == len(ANSWER.split())


def test_streamed_tool_calls_carry_id_and_name_first_then_argument_pieces(s):
    chunks = stream(s, {"model": "gpt-4o", "messages": msgs(PARIS_TOKYO), "tools": [WEATHER_TOOL]})
    d = deltas(chunks)
    assert d[0] == {"role": "assistant", "content": None, "refusal": None}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls" and d[-1] == {}
    calls: dict[int, dict] = {}
    for x in d[1:-1]:
        (tc,) = x["tool_calls"]
        if tc["index"] not in calls:
            assert set(tc) == {"index", "id", "type", "function"} and tc["type"] == "function"
            assert tc["function"] == {"name": "get_weather", "arguments": ""}
            calls[tc["index"]] = {"id": tc["id"], "arguments": ""}
        else:
            assert set(tc) == {"index", "function"} and set(tc["function"]) == {"arguments"}
            calls[tc["index"]]["arguments"] += tc["function"]["arguments"]
    assert sorted(calls) == [0, 1] and calls[0]["id"] != calls[1]["id"]
    assert [json.loads(calls[i]["arguments"]) for i in (0, 1)] == [{"location": "Paris"}, {"location": "Tokyo"}]
    assert len(d) > 2 + 2 * 2, "the arguments come in pieces"


def test_twice_asks_a_second_round_with_new_ids_then_answers_from_both_rounds(s):
    history = msgs(PARIS_TOKYO + " Check twice.")
    body = {"model": "gpt-4o", "tools": [WEATHER_TOOL]}
    first = complete(s, dict(body, messages=history))["choices"][0]["message"]["tool_calls"]
    history += tool_messages(first)
    second = complete(s, dict(body, messages=history))["choices"][0]["message"]["tool_calls"]
    assert [c["function"] for c in second] == [c["function"] for c in first]
    assert not {c["id"] for c in second} & {c["id"] for c in first}
    history += tool_messages(second)
    final = complete(s, dict(body, messages=history))["choices"][0]["message"]["content"]
    assert final == f"{ANSWER} {ANSWER}"


def test_parallel_tool_calls_false_makes_one_call_per_round(s):
    history = msgs(PARIS_TOKYO)
    body = {"model": "gpt-4o", "tools": [WEATHER_TOOL], "parallel_tool_calls": False}
    first = complete(s, dict(body, messages=history))["choices"][0]["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in first] == [{"location": "Paris"}]
    history += tool_messages(first)
    second = complete(s, dict(body, messages=history))["choices"][0]["message"]["tool_calls"]
    assert [json.loads(c["function"]["arguments"]) for c in second] == [{"location": "Tokyo"}]
    history += tool_messages(second)
    assert complete(s, dict(body, messages=history))["choices"][0]["message"]["content"] == ANSWER


def test_tool_choice_none_answers_and_a_named_function_is_called_with_empty_arguments(s):
    tools = [WEATHER_TOOL, LOOKUP_TOOL]
    none = complete(s, {"model": "gpt-4o", "messages": msgs(PARIS_TOKYO), "tools": tools, "tool_choice": "none"})
    assert none["choices"][0]["finish_reason"] == "stop" and none["choices"][0]["message"]["content"]
    forced = complete(s, {"model": "gpt-4o", "messages": msgs("Hello"), "tools": tools,
                          "tool_choice": {"type": "function", "function": {"name": "lookup_order"}}})
    (call,) = forced["choices"][0]["message"]["tool_calls"]
    assert call["function"] == {"name": "lookup_order", "arguments": "{}"}
    named = complete(s, {"model": "gpt-4o", "messages": msgs('Please call lookup_order with {"id": "A-7"}'),
                         "tools": tools})
    assert [c["function"]["arguments"] for c in named["choices"][0]["message"]["tool_calls"]] == ['{"id":"A-7"}']


# ---- history ---------------------------------------------------------------------------------

def test_usage_prompt_tokens_grow_with_the_history_and_the_newest_user_message_is_answered(s):
    q1, q2 = "How do I reset my password?", "How can I change my email address?"
    first = complete(s, {"model": "gpt-4o", "messages": msgs(q1)})
    a1 = first["choices"][0]["message"]["content"]
    history = msgs(q1) + [{"role": "assistant", "content": a1}, {"role": "user", "content": q2}]
    second = complete(s, {"model": "gpt-4o", "messages": history})
    assert second["choices"][0]["message"]["content"].startswith("To change your email address,")
    assert second["usage"]["prompt_tokens"] == first["usage"]["prompt_tokens"] + len(a1.split()) + len(q2.split())
    # The client's tool rounds count too (their arguments and outputs).
    calls = complete(s, {"model": "gpt-4o", "messages": msgs(PARIS_TOKYO), "tools": [WEATHER_TOOL]})
    tc = calls["choices"][0]["message"]["tool_calls"]
    after = complete(s, {"model": "gpt-4o", "messages": msgs(PARIS_TOKYO) + tool_messages(tc),
                         "tools": [WEATHER_TOOL]})
    assert after["usage"]["prompt_tokens"] == calls["usage"]["prompt_tokens"] + 2 + 6


def test_admin_chat_requests_keeps_the_bodies_oldest_first_with_a_monotonic_index_until_reset(s):
    before = admin_requests(s)
    assert before == []  # the fixture reset it
    q1 = {"model": "gpt-4o", "messages": msgs("How do I reset my password?")}
    a1 = complete(s, q1)["choices"][0]["message"]["content"]
    q2 = {"model": "gpt-4o", "messages": q1["messages"] + [{"role": "assistant", "content": a1},
                                                             {"role": "user", "content": "Thanks!"}]}
    complete(s, q2)
    bad = {"model": "gpt-4o", "messages": []}
    assert chat(s, bad)[0] == 400
    got = admin_requests(s)
    assert [e["body"] for e in got] == [q1, q2, bad]
    assert [e["status"] for e in got] == [200, 200, 400]
    idx = [e["index"] for e in got]
    assert idx == list(range(idx[0], idx[0] + 3))
    assert got[1]["body"]["messages"][:len(q1["messages"])] == q1["messages"], "turn 2 carried turn 1"
    assert [e["body"] for e in admin_requests(s, after=idx[0])] == [q2, bad]
    assert s._call("POST", "/admin/reset")[0] == 200
    assert admin_requests(s) == []
    complete(s, q1)
    assert [e["index"] for e in admin_requests(s)] == [idx[-1] + 1], "the index goes on after a reset"


# ---- validation ------------------------------------------------------------------------------

CALL_A = {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
CALL_B = {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


@pytest.mark.parametrize("body, param, code", [
    ({"messages": [{"role": "user", "content": "Hi"}]}, "model", "missing_required_parameter"),
    ({"model": "gpt-4o"}, "messages", "missing_required_parameter"),
    ({"model": "gpt-4o", "messages": []}, "messages", "empty_array"),
    ({"model": 4, "messages": [{"role": "user", "content": "Hi"}]}, "model", "invalid_type"),
    ({"model": "gpt-4o", "messages": [{"role": "robot", "content": "Hi"}]}, "messages[0].role", "invalid_value"),
    ({"model": "gpt-4o", "messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]}, "messages[0].content", "invalid_type"),
    ({"model": "gpt-4o", "messages": [{"role": "assistant"}]}, "messages[0].content", "missing_required_parameter"),
    ({"model": "gpt-4o", "messages": [{"role": "system",
                                       "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]},
     "messages[0].content[0]", "invalid_value"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0].image_url.url", "missing_required_parameter"),
    # a tool message must answer a call of the assistant message right before it
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"},
                                      {"role": "tool", "tool_call_id": "call_a", "content": "x"}]},
     "messages[1].role", None),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"},
                                      {"role": "assistant", "tool_calls": [CALL_A]},
                                      {"role": "tool", "tool_call_id": "call_zz", "content": "x"}]},
     "messages[2].tool_call_id", None),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"},
                                      {"role": "assistant", "tool_calls": [CALL_A]},
                                      {"role": "user", "content": "again"},
                                      {"role": "tool", "tool_call_id": "call_a", "content": "x"}]},
     "messages[1].role", None),
    # every call of an assistant message is answered before the next user message (or the end)
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"},
                                      {"role": "assistant", "content": None, "tool_calls": [CALL_A, CALL_B]},
                                      {"role": "tool", "tool_call_id": "call_a", "content": "x"},
                                      {"role": "user", "content": "and?"}]},
     "messages[1].role", None),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"},
                                      {"role": "assistant", "tool_calls": [CALL_A]}]},
     "messages[1].role", None),
    ({"model": "gpt-4o", "messages": [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function"}]}]},
     "messages[0].tool_calls[0].function", "missing_required_parameter"),
    ({"model": "gpt-4o", "messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id",
     "missing_required_parameter"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "stream_options": {"include_usage": True}},
     "stream_options", "invalid_value"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "tool_choice": "auto"},
     "tool_choice", "invalid_value"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "tools": [WEATHER_TOOL],
      "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice", "invalid_value"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}],
      "tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools[0].function.name", "invalid_value"),
    ({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 0},
     "max_tokens", "invalid_value"),
])
def test_invalid_bodies_and_message_sequences_are_400_with_the_param_named(s, body, param, code):
    status, _, err = chat(s, body)
    assert status == 400, err
    e = err["error"]
    assert (e["type"], e["param"], e["code"]) == ("invalid_request_error", param, code), e


def test_tool_messages_answering_every_call_are_accepted_in_any_order(s):
    obj = complete(s, {"model": "gpt-4o", "messages": [
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Looking.", "tool_calls": [CALL_A, CALL_B]},
        {"role": "tool", "tool_call_id": "call_b", "content": "two"},
        {"role": "tool", "tool_call_id": "call_a", "content": [{"type": "text", "text": "one"}]}]})
    assert obj["choices"][0]["message"]["content"] == "get_weather: two. get_weather: one."


# ---- faults ----------------------------------------------------------------------------------

BODY = {"model": "gpt-4o", "messages": msgs("How do I reset my password?")}


def test_injected_429_with_retry_after_and_500_apply_to_the_chat_route(s):
    s.faults(fail_next_n_with_429=1, retry_after_s=7, fail_next_n_with_500=1)
    status, headers, err = chat(s, BODY)
    assert status == 429 and headers["Retry-After"] == "7" and err["error"]["code"] == "rate_limit_exceeded"
    status, _, err = chat(s, BODY)
    assert status == 500 and err["error"]["type"] == "server_error"
    assert chat(s, BODY)[0] == 200
    assert route_counts(s) == {"429": 1, "500": 1, "200": 1}
    assert len(admin_requests(s)) == 1, "a request refused by an injected fault never reached the model"


def test_dropped_stream_closes_after_three_words_without_finish_or_done(s):
    s.faults(drop_next_n_streams=1)
    status, headers, raw = post(s, "/chat/completions", dict(BODY, stream=True))
    assert status == 200 and headers.get("X-Cut") == "1"
    chunks = chunks_of(raw)
    assert "[DONE]" not in chunks
    assert [list(d) for d in deltas(chunks)] == [["role", "content", "refusal"], ["content"], ["content"], ["content"]]
    assert text_of(chunks) == "To reset your"
    # Spent: the next stream is whole.
    assert stream(s, BODY)[-1] == "[DONE]"


def test_tool_call_stream_does_not_take_the_drop_which_goes_to_the_next_text(s):
    s.faults(drop_next_n_streams=1)
    chunks = stream(s, {"model": "gpt-4o", "messages": msgs(PARIS_TOKYO), "tools": [WEATHER_TOOL]})
    assert chunks[-1] == "[DONE]"
    assert s.settings()["drop_next_n_streams"] == 1
    assert post(s, "/chat/completions", dict(BODY, stream=True))[1].get("X-Cut") == "1"


def test_apply_then_fail_keeps_the_request_and_answers_500_or_closes_the_connection(s):
    assert s.settings()["apply_then_fail"][ROUTE] == {"n": 0, "status": 500}
    s.faults(apply_then_fail={ROUTE: {"n": 1, "status": 500}})
    status, _, err = chat(s, BODY)
    assert status == 500 and err["error"]["type"] == "server_error"
    assert [e["status"] for e in admin_requests(s)] == [200], "applied: the model got it"
    s.faults(apply_then_fail={ROUTE: {"n": 1, "status": 0}})
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        post(s, "/chat/completions", dict(BODY, stream=True))
    assert len(admin_requests(s)) == 2
    assert chat(s, BODY)[0] == 200
    assert route_counts(s) == {"500": 1, "0": 1, "200": 1}


def test_more_words_than_max_context_tokens_is_a_400_context_length_exceeded(s):
    assert s.settings()["max_context_tokens"] == 100000
    s.faults(max_context_tokens=10)
    ten = {"model": "gpt-4o", "messages": msgs("one two three four five", system="six seven eight nine ten")}
    assert complete(s, ten)["usage"]["prompt_tokens"] == 10
    status, _, err = chat(s, dict(ten, messages=ten["messages"] + [{"role": "user", "content": "eleven"}]))
    assert status == 400, err
    assert (err["error"]["code"], err["error"]["param"], err["error"]["type"]) == (
        "context_length_exceeded", "messages", "invalid_request_error")
    assert "maximum context length is 10 tokens" in err["error"]["message"]
    assert "resulted in 11 tokens" in err["error"]["message"]


@pytest.mark.parametrize("code, status", [("server_error", 500), ("rate_limit_exceeded", 429),
                                          ("invalid_prompt", 400)])
def test_fail_next_n_runs_fails_the_completion_with_the_status_of_fail_run_code(s, code, status):
    s.faults(fail_next_n_runs=1, fail_run_code=code)
    got, headers, err = chat(s, dict(BODY, stream=True))
    assert (got, err["error"]["code"]) == (status, code)
    assert ("Retry-After" in headers) == (status == 429)
    assert chat(s, BODY)[0] == 200


def test_expire_next_n_runs_gives_an_empty_answer_cut_by_length(s):
    s.faults(expire_next_n_runs=1)
    obj = complete(s, BODY)
    assert obj["choices"][0]["finish_reason"] == "length" and obj["choices"][0]["message"]["content"] == ""
    assert complete(s, BODY)["choices"][0]["finish_reason"] == "stop"


def test_token_delay_paces_chunks_and_latency_delays_the_answer(s):
    s.faults(token_delay_ms=60, answer_tokens=6)
    t0 = time.monotonic()
    assert len(text_of(stream(s, BODY)).split()) == 6
    assert time.monotonic() - t0 >= 0.9 * 5 * 0.060, "5 gaps between 6 words"
    t0 = time.monotonic()
    complete(s, BODY)
    assert time.monotonic() - t0 >= 0.9 * 6 * 0.060, "a whole answer comes when its stream would have ended"
    s.faults(token_delay_ms=0, latency_ms=300)
    t0 = time.monotonic()
    complete(s, BODY)
    assert time.monotonic() - t0 >= 0.27


# ---- conformance -----------------------------------------------------------------------------

class ChatSpecChecker(SpecChecker):
    """openapi_check's checker, plus the chunks of a Chat Completions stream (`data:` lines with no
    event name, recorded with "event": null) checked against CreateChatCompletionStreamResponse."""

    CHUNK = "/components/schemas/CreateChatCompletionStreamResponse"

    def _check_event(self, label, i, path, ev):
        if not path.startswith("/chat/completions"):
            return super()._check_event(label, i, path, ev)
        if ev.get("event") is not None:
            return [f"{label}: chunk #{i} has an event name {ev.get('event')!r}"]
        if ev.get("data") == "[DONE]":
            return []
        return [f"{label}: chunk #{i}: {e}" for e in self.errors(self.CHUNK, ev.get("data"))]


def test_recorded_chat_traffic_conforms_to_the_spec(sim):
    if not SPEC.exists():
        pytest.fail(f"{SPEC} not found (set AW_SHARED_DIR to the shared dir)")
    sim._call("POST", "/admin/reset")
    # One of each shape on top of what the tests above recorded.
    stream(sim, dict(BODY, stream_options={"include_usage": True}))
    stream(sim, {"model": "gpt-4o", "messages": msgs(PARIS_TOKYO), "tools": [WEATHER_TOOL]})
    complete(sim, {"model": "gpt-4o", "messages": msgs(PARIS_TOKYO), "tools": [WEATHER_TOOL]})
    assert chat(sim, {"model": "gpt-4o", "messages": []})[0] == 400
    sim.faults(fail_next_n_with_429=1, fail_next_n_with_500=1)
    assert [chat(sim, BODY)[0] for _ in range(2)] == [429, 500]

    def recorded():
        with open(sim.record_path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    recs = wait_until(lambda: (lambda rs: rs if sum(1 for r in rs if r["path"] == "/v1/chat/completions"
                                                    and r["stream_events"]) >= 3 else None)(recorded()),
                      10, "the chat streams in the record")
    chat_recs = [r for r in recs if r["path"] == "/v1/chat/completions"]
    assert {r["status"] for r in chat_recs} >= {200, 400, 429, 500}
    events = [ev for r in chat_recs for ev in r["stream_events"]]
    assert any(ev["data"] != "[DONE]" and ev["data"]["choices"] == [] for ev in events), "no usage chunk"
    assert any(ev["data"] != "[DONE]" and ev["data"]["choices"] and "tool_calls" in ev["data"]["choices"][0]["delta"]
               for ev in events), "no tool call chunk"
    checker = ChatSpecChecker(SPEC)
    # The checker catches a chunk that is not one.
    bad = dict(chat_recs[0], stream_events=[{"event": None, "data": {"id": "x", "object": "chat.completion"}}])
    assert checker.check_record(bad) != []
    problems = [p for r in recs for p in checker.check_record(r)]
    assert not problems, f"{len(problems)} mismatch(es); first ones:\n" + "\n".join(problems[:25])

"""The simulator's Responses and Conversations APIs, driven over HTTP with no worker: streamed
responses number their events from 0 and their deltas make the text, a conversation keeps the
history the scripted model answers from, function calls come as function_call items and
function_call_output items in the next response give the next round ("twice") or the answer, a background response can be
resumed with stream=true&starting_after=N and cancelled, a second response in a busy conversation
is refused, conversation items page as the spec's list does (limit, order, after; no `before`)
and are created with ids and deleted with their conversation, an "apply then fail" fault leaves the
object in place, and everything recorded
conforms to the spec (tests/simulator/README.md).  Needs only the session's simulator."""
from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
import uuid

import pytest

from awtest import API_KEY, SHARED_DIR, wait_until
from openapi_check import SpecChecker

SPEC = SHARED_DIR / "openai-openapi" / "openapi.validatable.yaml"
WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Current weather of a city",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                               "required": ["location"]}, "strict": False}
PARIS_TOKYO = "What's the weather in Paris and in Tokyo?"
OUTPUTS = {"Paris": "22°C and sunny", "Tokyo": "18°C and cloudy"}
ANSWER = "Paris: 22°C and sunny. Tokyo: 18°C and cloudy."


# ---- helpers ---------------------------------------------------------------------------------

def request(simulator, method: str, path: str, body=None, timeout_s: float = 30):
    """(status, headers, raw bytes) of one /v1 call (no beta header: this API needs none)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(simulator.base + "/v1" + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {API_KEY}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def call(simulator, method: str, path: str, body=None):
    status, _, raw = request(simulator, method, path, body)
    return status, json.loads(raw) if raw else None


def ok(simulator, method: str, path: str, body=None):
    status, obj = call(simulator, method, path, body)
    assert status == 200, f"{method} {path} -> {status}: {obj}"
    return obj


def parse_sse(text: str) -> list[dict]:
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(fields["data"])
        assert data["type"] == fields["event"]
        events.append(data)
    return events


def sse(simulator, method: str, path: str, body=None) -> list[dict]:
    status, headers, raw = request(simulator, method, path, body)
    assert status == 200, raw
    assert headers["Content-Type"].startswith("text/event-stream")
    return parse_sse(raw.decode())


def types(events) -> list[str]:
    return [e["type"] for e in events]


def output_text(resp: dict) -> str:
    return "".join(p["text"] for it in resp["output"] if it["type"] == "message"
                   for p in it["content"] if p["type"] == "output_text")


def conversation(simulator, **body) -> dict:
    return ok(simulator, "POST", "/conversations", body)


def items(simulator, conv_id: str) -> list[dict]:
    return ok(simulator, "GET", f"/conversations/{conv_id}/items?order=asc&limit=100")["data"]


def admin(simulator, path: str) -> dict:
    with urllib.request.urlopen(simulator.base + path, timeout=10) as r:
        return json.loads(r.read())


def wait_ended(simulator, resp_id: str) -> dict:
    return wait_until(lambda: (lambda r: r if r["status"] not in ("queued", "in_progress") else None)(
        ok(simulator, "GET", f"/responses/{resp_id}")), 20, f"response {resp_id} to end")


# ---- streaming and history -------------------------------------------------------------------

def test_streamed_response_numbers_events_from_zero_and_its_deltas_make_the_text(simulator):
    conv = conversation(simulator, metadata={"topic": "password"})
    events = sse(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "How do I reset my password?",
                                                   "conversation": conv["id"], "stream": True})
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    t = types(events)
    assert t[:5] == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", "response.output_text.delta"]
    assert t[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                      "response.completed"]
    deltas = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = events[-1]["response"]
    assert deltas == next(e["text"] for e in events if e["type"] == "response.output_text.done")
    assert deltas == output_text(done) and deltas.startswith("To reset your password")
    assert done["status"] == "completed" and done["conversation"] == {"id": conv["id"]}
    assert done["usage"]["output_tokens"] == len(deltas.split())
    # The conversation holds the question and the answer, and the lock is free again.
    got = items(simulator, conv["id"])
    assert [(i["type"], i["role"]) for i in got] == [("message", "user"), ("message", "assistant")]
    assert got[1]["id"] == done["output"][0]["id"]
    assert admin(simulator, f"/admin/conversations/{conv['id']}")["locked_by"] is None


def test_follow_up_in_the_same_conversation_answers_the_newest_message_with_the_history_kept(simulator):
    conv = conversation(simulator)
    first = ok(simulator, "POST", "/responses", {"model": "gpt-4o", "conversation": conv["id"],
                                                 "input": "How do I reset my password?"})
    second = ok(simulator, "POST", "/responses", {
        "model": "gpt-4o", "conversation": {"id": conv["id"]},
        "input": [{"type": "message", "role": "user", "content": "How can I change my email address?"}]})
    assert first["status"] == second["status"] == "completed"
    assert output_text(second).startswith("To change your email address")
    got = items(simulator, conv["id"])
    assert [i["role"] for i in got] == ["user", "assistant", "user", "assistant"]
    assert got[2]["content"] == [{"type": "input_text", "text": "How can I change my email address?"}]
    # Newest first by default, paged with after.
    page = ok(simulator, "GET", f"/conversations/{conv['id']}/items?limit=2")
    assert [i["id"] for i in page["data"]] == [got[3]["id"], got[2]["id"]] and page["has_more"]
    rest = ok(simulator, "GET", f"/conversations/{conv['id']}/items?limit=2&after={page['last_id']}")
    assert [i["id"] for i in rest["data"]] == [got[1]["id"], got[0]["id"]] and not rest["has_more"]
    stats = admin(simulator, f"/admin/conversations/{conv['id']}")
    assert (stats["user_messages"], stats["assistant_messages"], stats["items"]) == (2, 2, 4)
    inputs = ok(simulator, "GET", f"/responses/{second['id']}/input_items")
    assert [i["content"][0]["text"] for i in inputs["data"]] == ["How can I change my email address?"]


# ---- function calls --------------------------------------------------------------------------

def test_weather_for_two_cities_gives_two_parallel_calls_and_their_outputs_give_the_answer(simulator):
    conv = conversation(simulator)
    events = sse(simulator, "POST", "/responses", {"model": "gpt-4o", "conversation": conv["id"],
                                                   "input": PARIS_TOKYO, "tools": [WEATHER_TOOL], "stream": True})
    calls = events[-1]["response"]["output"]
    assert events[-1]["type"] == "response.completed"
    assert [(c["type"], c["name"], json.loads(c["arguments"]), c["status"]) for c in calls] == [
        ("function_call", "get_weather", {"location": "Paris"}, "completed"),
        ("function_call", "get_weather", {"location": "Tokyo"}, "completed")]
    assert all(c["call_id"].startswith("call_") and c["id"].startswith("fc_") for c in calls)
    args = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [a["arguments"] for a in args] == [c["arguments"] for c in calls]
    assert types(events).count("response.function_call_arguments.delta") == 2

    outs = [{"type": "function_call_output", "call_id": c["call_id"],
             "output": OUTPUTS[json.loads(c["arguments"])["location"]]} for c in calls]
    final = ok(simulator, "POST", "/responses", {"model": "gpt-4o", "conversation": conv["id"],
                                                 "input": outs, "tools": [WEATHER_TOOL]})
    assert final["status"] == "completed" and output_text(final) == ANSWER
    kinds = [i["type"] for i in items(simulator, conv["id"])]
    assert kinds == ["message", "function_call", "function_call", "function_call_output",
                     "function_call_output", "message"]


def test_function_outputs_after_previous_response_id_give_the_answer(simulator):
    first = ok(simulator, "POST", "/responses", {"model": "gpt-4o", "input": PARIS_TOKYO, "tools": [WEATHER_TOOL]})
    outs = [{"type": "function_call_output", "call_id": c["call_id"],
             "output": OUTPUTS[json.loads(c["arguments"])["location"]]} for c in first["output"]]
    final = ok(simulator, "POST", "/responses", {"model": "gpt-4o", "previous_response_id": first["id"],
                                                 "input": outs})
    assert output_text(final) == ANSWER


def test_twice_gives_a_second_round_of_calls_then_the_answer_from_both_rounds(simulator):
    """As a run: "twice" in the turn's user message makes the follow-up with the first round's
    outputs ask the same calls again (new ids), and the outputs of the second round give the
    answer, built from every output of the turn."""
    conv = conversation(simulator)
    body = {"model": "gpt-4o", "conversation": conv["id"], "tools": [WEATHER_TOOL]}
    first = ok(simulator, "POST", "/responses", {**body, "input": "Check the weather in Paris and Tokyo twice."})

    def outputs(resp):
        assert [c["type"] for c in resp["output"]] == ["function_call", "function_call"], resp["output"]
        return [{"type": "function_call_output", "call_id": c["call_id"],
                 "output": OUTPUTS[json.loads(c["arguments"])["location"]]} for c in resp["output"]]

    second = ok(simulator, "POST", "/responses", {**body, "input": outputs(first)})
    assert [c["arguments"] for c in second["output"]] == [c["arguments"] for c in first["output"]]
    assert not {c["call_id"] for c in first["output"]} & {c["call_id"] for c in second["output"]}
    final = ok(simulator, "POST", "/responses", {**body, "input": outputs(second)})
    assert final["status"] == "completed" and output_text(final) == ANSWER + " " + ANSWER
    kinds = [i["type"] for i in items(simulator, conv["id"])]
    assert kinds == ["message"] + (["function_call"] * 2 + ["function_call_output"] * 2) * 2 + ["message"]
    # The next turn starts afresh: a new question without "twice" is one round.
    again = ok(simulator, "POST", "/responses", {**body, "input": PARIS_TOKYO})
    done = ok(simulator, "POST", "/responses", {**body, "input": outputs(again)})
    assert output_text(done) == ANSWER


def test_second_round_also_follows_the_previous_response_id_chain(simulator):
    """Without a conversation the rounds are counted along previous_response_id, back to the
    response whose input held the user message; parallel_tool_calls false is one call a round."""
    body = {"model": "gpt-4o", "tools": [WEATHER_TOOL], "parallel_tool_calls": False}
    resp = ok(simulator, "POST", "/responses", {**body, "input": "Check the weather in Paris and Tokyo twice."})
    seen = []
    while resp["output"][0]["type"] == "function_call":
        assert len(resp["output"]) == 1
        call = resp["output"][0]
        seen.append(json.loads(call["arguments"])["location"])
        resp = ok(simulator, "POST", "/responses", {
            **body, "previous_response_id": resp["id"],
            "input": [{"type": "function_call_output", "call_id": call["call_id"],
                       "output": OUTPUTS[seen[-1]]}]})
        assert len(seen) <= 4, "more rounds than planned"
    assert seen == ["Paris", "Tokyo", "Paris", "Tokyo"]
    assert output_text(resp) == ANSWER + " " + ANSWER


def test_file_search_tool_with_vector_stores_is_accepted_and_answers_normally(simulator):
    tool = {"type": "file_search", "vector_store_ids": ["vs_abc123"], "max_num_results": 5}
    resp = ok(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "How do I reset my password?",
                                                "tools": [tool, WEATHER_TOOL]})
    assert resp["status"] == "completed" and output_text(resp).startswith("To reset your password")
    echoed = resp["tools"][0]
    assert (echoed["type"], echoed["vector_store_ids"], echoed["max_num_results"]) == (
        "file_search", ["vs_abc123"], 5)
    status, err = call(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "Hi",
                                                         "tools": [{"type": "file_search"}]})
    assert status == 400 and err["error"]["param"] == "tools[0].vector_store_ids"


# ---- background, resume, cancel --------------------------------------------------------------

def test_background_response_resumed_with_starting_after_continues_exactly_after_n(sim_settings):
    simulator = sim_settings
    simulator.faults(token_delay_ms=30)
    resp = ok(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "How do I reset my password?",
                                                "background": True})
    assert resp["status"] in ("queued", "in_progress") and resp["background"] is True
    live = sse(simulator, "GET", f"/responses/{resp['id']}?stream=true&starting_after=3")
    full = sse(simulator, "GET", f"/responses/{resp['id']}?stream=true")
    assert [e["sequence_number"] for e in full] == list(range(len(full)))
    assert full[0]["type"] == "response.created" and full[1]["type"] == "response.queued"
    assert live == full[4:]
    assert live[-1]["type"] == "response.completed"
    assert ok(simulator, "GET", f"/responses/{resp['id']}")["status"] == "completed"


def test_cancel_stops_a_background_response_and_refuses_a_foreground_one(sim_settings):
    simulator = sim_settings
    simulator.faults(token_delay_ms=200)
    conv = conversation(simulator)
    resp = ok(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "Hello there", "background": True,
                                                "conversation": conv["id"]})
    cancelled = ok(simulator, "POST", f"/responses/{resp['id']}/cancel")
    assert cancelled["status"] == "cancelled"
    assert ok(simulator, "GET", f"/responses/{resp['id']}")["status"] == "cancelled"
    # The conversation is free again.
    assert admin(simulator, f"/admin/conversations/{conv['id']}")["locked_by"] is None
    simulator.faults(token_delay_ms=0)
    done = ok(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "Hello"})
    status, err = call(simulator, "POST", f"/responses/{done['id']}/cancel")
    assert status == 400 and "background" in err["error"]["message"]


# ---- errors ----------------------------------------------------------------------------------

def test_conversation_with_previous_response_id_is_a_400(simulator):
    conv = conversation(simulator)
    first = ok(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "Hello"})
    status, err = call(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "Hi",
                                                         "conversation": conv["id"],
                                                         "previous_response_id": first["id"]})
    assert status == 400 and err["error"]["code"] == "mutually_exclusive_parameters"


@pytest.mark.parametrize("body, param, code", [
    ({"model": "gpt-4o", "input": "Hi", "bogus": 1}, "bogus", "unknown_parameter"),
    ({"input": "Hi"}, "model", "missing_required_parameter"),
    ({"model": "gpt-4o", "input": 5}, "input", "invalid_type"),
    ({"model": "gpt-4o", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id",
     "missing_required_parameter"),
    ({"model": "gpt-4o", "input": "Hi", "tools": [{"type": "function"}]}, "tools[0].name",
     "missing_required_parameter"),
])
def test_bad_response_bodies_are_400_with_the_param_named(simulator, body, param, code):
    status, err = call(simulator, "POST", "/responses", body)
    assert status == 400, err
    assert (err["error"]["param"], err["error"]["code"]) == (param, code)


def test_second_response_while_one_is_in_progress_is_refused_as_conversation_locked(sim_settings):
    simulator = sim_settings
    simulator.faults(token_delay_ms=100)
    conv = conversation(simulator)
    first = ok(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "Hello", "background": True,
                                                 "conversation": conv["id"]})
    status, err = call(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "Hello again",
                                                         "conversation": conv["id"]})
    assert status == 400 and err["error"]["code"] == "conversation_locked"
    assert admin(simulator, f"/admin/conversations/{conv['id']}")["locked_by"] == first["id"]
    simulator.faults(token_delay_ms=0)
    wait_ended(simulator, first["id"])
    assert ok(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "Hello again",
                                                "conversation": conv["id"]})["status"] == "completed"


# ---- apply then fail -------------------------------------------------------------------------

def test_apply_then_fail_creates_the_response_but_answers_500(sim_settings):
    simulator = sim_settings
    event_id = uuid.uuid4().hex
    conv = conversation(simulator)
    simulator.faults(apply_then_fail={"POST /v1/responses": {"n": 1, "status": 500}})
    status, err = call(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "How do I reset my password?",
                                                         "conversation": conv["id"],
                                                         "metadata": {"event_id": event_id}})
    assert status == 500 and err["error"]["type"] == "server_error"
    found = admin(simulator, f"/admin/responses?event_id={event_id}")
    assert found["count"] == 1 and found["data"][0]["conversation"] == conv["id"]
    wait_ended(simulator, found["data"][0]["id"])
    assert admin(simulator, f"/admin/conversations/{conv['id']}")["user_messages"] == 1
    # Consumed: the next create answers normally.
    assert simulator.settings()["apply_then_fail"]["POST /v1/responses"]["n"] == 0


def test_apply_then_fail_with_502_and_a_dropped_connection_still_applies(sim_settings):
    simulator = sim_settings
    simulator.faults(apply_then_fail={"POST /v1/conversations": {"n": 1, "status": 502},
                                      "POST /v1/conversations/{conversation_id}/items": {"n": 1, "status": 0}})
    before = admin(simulator, "/admin/stats")["conversations"]
    status, _ = call(simulator, "POST", "/conversations", {"metadata": {"k": "v"}})
    assert status == 502
    assert admin(simulator, "/admin/stats")["conversations"] == before + 1
    conv = conversation(simulator)
    with pytest.raises((http.client.HTTPException, ConnectionError, urllib.error.URLError)):
        request(simulator, "POST", f"/conversations/{conv['id']}/items",
                {"items": [{"role": "user", "content": "added anyway"}]})
    assert [i["content"][0]["text"] for i in items(simulator, conv["id"])] == ["added anyway"]


def test_apply_then_fail_on_an_assistants_message_keeps_the_message(sim_settings):
    simulator = sim_settings
    thread = simulator.api("POST", "/threads", {})
    simulator.faults(apply_then_fail={"POST /v1/threads/{thread_id}/messages": {"n": 1, "status": 500}})
    status, _ = simulator._call("POST", f"/v1/threads/{thread['id']}/messages", {"role": "user", "content": "hi"})
    assert status == 500
    assert simulator.user_texts(thread["id"]) == ["hi"]


def test_unknown_apply_then_fail_route_is_refused_and_changes_nothing(simulator):
    status, err = simulator._call("POST", "/admin/faults", {"apply_then_fail": {"GET /v1/responses": {"n": 1}}})
    assert status == 400 and "creating route" in err["error"]["message"]


# ---- conversation items: paging, create, delete ------------------------------------------------

def test_items_create_answers_with_the_created_items_ids_and_roles_in_order(simulator):
    conv = conversation(simulator)
    got = ok(simulator, "POST", f"/conversations/{conv['id']}/items", {"items": [
        {"type": "message", "role": "user", "content": "My order number is 4417."},
        {"type": "message", "role": "assistant", "content": "Noted and kept."}]})
    data = got["data"]
    assert [(i["type"], i["role"]) for i in data] == [("message", "user"), ("message", "assistant")]
    assert all(i["id"].startswith("msg_") for i in data) and data[0]["id"] != data[1]["id"]
    assert data[0]["content"] == [{"type": "input_text", "text": "My order number is 4417."}]
    # An assistant message is stored as the API stores answers: output_text with annotations.
    assert [(p["type"], p["text"], p["annotations"]) for p in data[1]["content"]] == [
        ("output_text", "Noted and kept.", [])]
    assert (got["first_id"], got["last_id"], got["has_more"]) == (data[0]["id"], data[1]["id"], False)
    # What the create answered is what the conversation holds, in that order.
    assert [i["id"] for i in items(simulator, conv["id"])] == [i["id"] for i in data]


def test_items_list_pages_with_limit_order_and_after_and_names_its_ends(simulator):
    conv = conversation(simulator)
    added = ok(simulator, "POST", f"/conversations/{conv['id']}/items",
               {"items": [{"role": "user" if n % 2 == 0 else "assistant", "content": f"m{n}"} for n in range(5)]})
    ids = [i["id"] for i in added["data"]]
    for order, want in (("asc", ids), ("desc", ids[::-1])):
        seen, after = [], None
        for _ in range(5):
            page = ok(simulator, "GET", f"/conversations/{conv['id']}/items?limit=2&order={order}"
                                        + (f"&after={after}" if after else ""))
            got = [i["id"] for i in page["data"]]
            assert (page["first_id"], page["last_id"]) == (got[0], got[-1])
            seen += got
            if not page["has_more"]:
                break
            after = page["last_id"]
        assert seen == want, f"order {order}: {seen} != {want}"
    default = ok(simulator, "GET", f"/conversations/{conv['id']}/items?limit=1")
    assert [i["id"] for i in default["data"]] == [ids[-1]] and default["has_more"] is True  # desc by default
    last = ok(simulator, "GET", f"/conversations/{conv['id']}/items?order=asc&after={ids[-1]}")
    assert last["data"] == [] and last["has_more"] is False


@pytest.mark.parametrize("query, param, code", [
    ("before={first}", "before", "unknown_parameter"),   # the spec's list has no `before`
    ("after=msg_not_here", "after", "invalid_value"),
    ("limit=0", "limit", "invalid_value"),
    ("limit=101", "limit", "invalid_value"),
    ("order=up", "order", "invalid_value"),
])
def test_items_list_refuses_before_an_unknown_after_and_bad_paging(simulator, query, param, code):
    conv = conversation(simulator, items=[{"role": "user", "content": "Hello"}])
    first = items(simulator, conv["id"])[0]["id"]
    status, err = call(simulator, "GET", f"/conversations/{conv['id']}/items?" + query.format(first=first))
    assert status == 400, err
    assert (err["error"]["param"], err["error"]["code"]) == (param, code)


def test_deleted_conversation_is_gone_with_its_items_and_a_second_delete_is_404(simulator):
    conv = conversation(simulator, items=[{"role": "user", "content": "Hello"}])
    item = items(simulator, conv["id"])[0]["id"]
    assert ok(simulator, "DELETE", f"/conversations/{conv['id']}") == {
        "id": conv["id"], "object": "conversation.deleted", "deleted": True}
    assert call(simulator, "GET", f"/conversations/{conv['id']}/items")[0] == 404
    assert call(simulator, "GET", f"/conversations/{conv['id']}/items/{item}")[0] == 404
    assert call(simulator, "DELETE", f"/conversations/{conv['id']}")[0] == 404


def test_apply_then_fail_on_items_create_with_500_keeps_the_items_once(sim_settings):
    simulator = sim_settings
    conv = conversation(simulator, items=[{"role": "user", "content": "Hello"}])
    simulator.faults(apply_then_fail={"POST /v1/conversations/{conversation_id}/items": {"n": 1, "status": 500}})
    status, err = call(simulator, "POST", f"/conversations/{conv['id']}/items",
                       {"items": [{"role": "assistant", "content": "added anyway"}]})
    assert status == 500 and err["error"]["type"] == "server_error"
    assert [(i["role"], i["content"][0]["text"]) for i in items(simulator, conv["id"])] == [
        ("user", "Hello"), ("assistant", "added anyway")]
    # Consumed: the next create answers normally.
    assert simulator.settings()["apply_then_fail"]["POST /v1/conversations/{conversation_id}/items"]["n"] == 0
    assert call(simulator, "POST", f"/conversations/{conv['id']}/items",
                {"items": [{"role": "user", "content": "again"}]})[0] == 200


# ---- conformance -----------------------------------------------------------------------------

def test_recorded_responses_and_conversations_traffic_conforms_to_the_spec(simulator):
    if not SPEC.exists():
        pytest.fail(f"{SPEC} not found (set AW_SHARED_DIR to the shared dir)")
    # One of each shape of exchange, on top of what the tests above recorded.
    conv = conversation(simulator, items=[{"role": "user", "content": "Hello"}])
    sse(simulator, "POST", "/responses", {"model": "gpt-4o", "input": PARIS_TOKYO, "tools": [WEATHER_TOOL],
                                          "conversation": conv["id"], "stream": True})
    resp = ok(simulator, "POST", "/responses", {"model": "gpt-4o", "input": "Hello", "background": True})
    wait_ended(simulator, resp["id"])
    sse(simulator, "GET", f"/responses/{resp['id']}?stream=true&starting_after=1")
    item = items(simulator, conv["id"])[0]
    ok(simulator, "GET", f"/conversations/{conv['id']}/items/{item['id']}")
    ok(simulator, "POST", f"/conversations/{conv['id']}", {"metadata": {"x": "y"}})
    ok(simulator, "DELETE", f"/conversations/{conv['id']}/items/{item['id']}")
    ok(simulator, "GET", f"/responses/{resp['id']}/input_items")
    assert call(simulator, "GET", "/responses/resp_missing")[0] == 404
    ok(simulator, "DELETE", f"/responses/{resp['id']}")
    ok(simulator, "DELETE", f"/conversations/{conv['id']}")

    def recorded():
        with open(simulator.record_path, encoding="utf-8") as f:
            recs = [json.loads(line) for line in f if line.strip()]
        return [r for r in recs if r["path"].startswith(("/v1/responses", "/v1/conversations"))]

    # A stream's line is written when it ends, just after the client read its last event.
    recs = wait_until(lambda: (lambda rs: rs if any(r["path"].endswith(f"/responses/{resp['id']}")
                                                    and r["stream_events"] for r in rs) else None)(recorded()),
                      10, "the resumed stream in the record")
    checker = SpecChecker(SPEC)
    # A 4xx answers a request that is invalid on purpose (the tests above send some): the checker
    # checks only its answer, the error body; an accepted request must conform.
    bad = {"model": "gpt-4o", "input": "Hi", "bogus": 1}
    assert checker.check_record({"method": "POST", "path": "/v1/responses", "status": 400, "request_body": bad,
                                 "response_body": {"error": {"message": "x", "type": "invalid_request_error",
                                                             "param": "bogus", "code": "unknown_parameter"}}}) == []
    assert checker.check_record({"method": "POST", "path": "/v1/responses", "status": 200, "request_body": bad,
                                 "response_body": None, "stream_events": []}) != []
    problems = [p for r in recs for p in checker.check_record(r)]
    assert sum(1 for r in recs if r["stream_events"]) >= 2
    assert not problems, f"{len(problems)} mismatch(es); first ones:\n" + "\n".join(problems[:25])

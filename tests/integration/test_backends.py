"""What differs between the backends, pinned per test whatever AW_TEST_BACKEND says: each test
starts its workers with an explicit api.backend.

- assistants (threads and runs): a response's `backend` is {kind: "assistants", conversation:
  thread_..., turn: run_...} and thread_id / run_id repeat them; the handle is kept under
  `<prefix>:{c:<conv>}:thread`.
- responses (Responses + Conversations): {kind: "responses", conversation: conv_..., turn:
  resp_...}, thread_id / run_id nil; the handle is kept under `<prefix>:{c:<conv>}:conv`; an
  `asst_...` id in a request names nothing there and is rejected (unknown_assistant, dead letter).
"""
import pytest

from awtest import (SUPPORT_BOT, WEATHER_ASSISTANT, answer_text, assert_valid, conv_handle, error_code,
                    event_deltas, turn_handle)

BACKENDS = ["assistants", "responses"]
SHAPE = {"assistants": ("thread_", "run_"), "responses": ("conv_", "resp_")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_response_names_the_backend_and_its_handles(ctx, worker, simulator, redis_client, backend):
    worker(backend=backend)
    conv = f"conv-kind-{backend}"
    req = ctx.ask(conv, "How do I reset my password?", stream=True)
    resp = ctx.response_for(req["event_id"])
    assert_valid("response", resp)
    assert resp["status"] == "completed", resp.obj
    assert resp["backend"]["kind"] == backend, resp.obj
    handle, turn = conv_handle(resp), turn_handle(resp)
    conv_prefix, turn_prefix = SHAPE[backend]
    assert handle.startswith(conv_prefix) and turn.startswith(turn_prefix), resp.obj
    if backend == "assistants":
        assert (resp["thread_id"], resp["run_id"]) == (handle, turn)
    else:
        assert resp["thread_id"] is None and resp["run_id"] is None, resp.obj
    # The API has that conversation and turn.
    assert simulator.turns_of(handle) == [turn]
    assert simulator.user_texts(handle) == ["How do I reset my password?"]

    # The conversation's handle is cached under the backend's own key, and only there.
    assert redis_client.get(ctx.thread_key(conv, backend)) == handle
    other = "responses" if backend == "assistants" else "assistants"
    assert redis_client.get(ctx.thread_key(conv, other)) is None
    assert ctx.thread_key(conv, backend).endswith(":thread" if backend == "assistants" else ":conv")

    # Deltas name the turn, first attempt.
    final = answer_text(resp)
    ctx.deltas.wait_for(lambda ms: "".join(m["text"] for m in event_deltas(ms, req["event_id"])) == final,
                        30, "deltas adding up to the answer")
    for d in event_deltas(ctx.deltas.messages, req["event_id"]):
        assert_valid("delta", d)
        assert d["run_id"] == turn and d["attempt"] == 0, d.obj

    # A follow-up uses the same conversation handle and a new turn.
    nxt = ctx.ask(conv, "Thanks! And how do I change my email address?")
    r2 = ctx.response_for(nxt["event_id"])
    assert r2["status"] == "completed", r2.obj
    assert conv_handle(r2) == handle and turn_handle(r2) != turn
    assert turn_handle(r2).startswith(turn_prefix)


def test_an_assistants_api_id_is_rejected_on_the_responses_backend(ctx, worker):
    worker(backend="responses")
    conv = "conv-asst-id"
    req = ctx.ask(conv, "How do I reset my password?", assistant="asst_abc123def456ghi789jkl012")
    resp = ctx.response_for(req["event_id"])
    assert_valid("response", resp)
    assert resp["status"] == "rejected", resp.obj
    assert error_code(resp) == "unknown_assistant", resp.obj
    assert "asst_abc123def456ghi789jkl012" in resp["error"]["message"]
    assert turn_handle(resp) is None and resp["thread_id"] is None and resp["run_id"] is None

    dl = ctx.dlq.wait_for(lambda ms: next((m for m in ms if m.get("event_id") == req["event_id"]), None),
                          30, "the dead letter of the asst_ request")
    assert_valid("dlq", dl)
    assert error_code(dl) == "unknown_assistant", dl.obj
    assert dl["conversation_id"] == conv and dl.key_str == conv
    assert dl["source"]["topic"] == ctx.topics["requests"]

    # The configured name works on the same conversation.
    good = ctx.ask(conv, "How do I reset my password?", assistant=SUPPORT_BOT["name"])
    assert ctx.response_for(good["event_id"])["status"] == "completed"


@pytest.mark.parametrize("backend", BACKENDS)
def test_tool_request_carries_event_and_round_and_thread_run_only_on_assistants(
        ctx, worker, tool_service, simulator, backend):
    svc = tool_service()
    worker(backend=backend, assistants=[dict(WEATHER_ASSISTANT), dict(SUPPORT_BOT)])
    conv = f"conv-treq-{backend}"
    req = ctx.ask(conv, "What's the weather in Paris?", assistant=WEATHER_ASSISTANT["name"])
    (treq,) = svc.wait_requests(conv, 1)
    assert_valid("tool-request", treq)
    assert treq["event_id"] == req["event_id"] and treq["round"] == 1, treq.obj
    if backend == "assistants":
        assert treq["thread_id"].startswith("thread_") and treq["run_id"].startswith("run_"), treq.obj
    else:
        assert treq["thread_id"] is None and treq["run_id"] is None, treq.obj
    svc.reply(treq, output="22°C and sunny")
    resp = ctx.response_for(req["event_id"])
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == "Paris: 22°C and sunny."
    assert resp["backend"]["kind"] == backend
    if backend == "assistants":
        assert (resp["thread_id"], resp["run_id"]) == (treq["thread_id"], treq["run_id"])
        assert simulator.turns_of(conv_handle(resp)) == [turn_handle(resp)]
    else:
        # One response made the call, a second one took the output and answered.
        turns = simulator.turns_of(conv_handle(resp), req["event_id"])
        assert len(turns) == 2 and turns[-1] == turn_handle(resp), turns
    assert simulator.tool_outputs(conv_handle(resp), turn_handle(resp)) == [(treq["tool_call_id"], "22°C and sunny")]

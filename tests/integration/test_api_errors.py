"""API failures end in a precise error on the response topic, and the worker carries on."""
import pytest

from awtest import BACKEND, answer_text, assert_valid, conv_handle, event_deltas, history_turns, turn_handle

# The first API call of a new conversation: it creates the backend's conversation.
FIRST_CALL = {"assistants": "POST /v1/threads", "responses": "POST /v1/conversations",
              "chat": "POST /v1/chat/completions"}


def ask_ok(ctx, conv, text="Thanks, and how do I change my email address?"):
    req = ctx.ask(conv, text)
    resp = ctx.response_for(req["event_id"], timeout_s=60)
    assert resp["status"] == "completed", resp.obj
    return resp


def test_failed_run_gives_failed_response_with_the_run_error_and_conversation_goes_on(
        ctx, worker, sim_settings):
    sim = sim_settings
    worker()
    # On chat a failed generation is an HTTP error (a 400: a 500 would be retried).
    sim.faults(fail_next_n_runs=1, **({"fail_run_code": "invalid_prompt"} if BACKEND == "chat" else {}))
    req = ctx.ask("conv-run-failed", "How do I reset my password?")
    resp = ctx.response_for(req["event_id"])
    sim.faults(fail_run_code="server_error")
    assert_valid("response", resp)
    assert resp["status"] == "failed"
    if BACKEND == "chat":
        assert resp["error"]["code"] == "invalid_prompt", resp.obj
        # Nothing of the failed turn is kept: the history has the next turn only.
        nxt = ask_ok(ctx, "conv-run-failed")
        assert [t["e"] for t in history_turns(conv_handle(nxt))] == [nxt["event_id"]]
        return
    assert turn_handle(resp) and conv_handle(resp), resp.obj
    assert resp["error"]["code"] and resp["error"]["message"], resp.obj
    nxt = ask_ok(ctx, "conv-run-failed")
    assert conv_handle(nxt) == conv_handle(resp)


def test_persistent_server_errors_end_as_failed_with_the_api_error(ctx, worker, sim_settings):
    sim = sim_settings
    worker(api={"max_retries": 1})
    sim.faults(fail_next_n_with_500=50)
    req = ctx.ask("conv-500s", "How do I reset my password?")
    resp = ctx.response_for(req["event_id"], timeout_s=60)
    assert_valid("response", resp)
    assert resp["status"] == "failed"
    # The API's own error code wins over the worker's generic one (api_unavailable), and
    # the message names the request that failed.
    assert resp["error"]["code"] == "server_error", resp.obj
    assert "HTTP 500" in resp["error"]["message"] and FIRST_CALL[BACKEND] in resp["error"]["message"], resp.obj
    sim.faults(fail_next_n_with_500=0)
    ask_ok(ctx, "conv-after-500s")


def test_stream_dropped_mid_run_is_followed_by_polling_and_deltas_still_add_up(
        ctx, worker, sim_settings):
    sim = sim_settings
    worker()
    sim.faults(token_delay_ms=10, drop_next_n_streams=1)
    req = ctx.ask("conv-drop", "How do I reset my password?", stream=True)
    resp = ctx.response_for(req["event_id"])
    assert resp["status"] == "completed", resp.obj
    final = answer_text(resp)
    assert final
    # A reader keeps the deltas of the highest attempt (a recovered turn may publish its text again).
    mine = lambda ms: event_deltas(ms, req["event_id"])
    ctx.deltas.wait_for(lambda ms: "".join(m["text"] for m in mine(ms)) == final, 30,
                        "deltas adding up to the final answer after the drop")
    assert [m["seq"] for m in mine(ctx.deltas.messages)] == list(range(len(mine(ctx.deltas.messages))))
    # (The deltas name the backend's turn, which is null on chat.)
    assert {m["run_id"] for m in mine(ctx.deltas.messages)} == {resp["backend"]["turn"]}, \
        ([m.obj for m in ctx.deltas.messages if m.get("event_id") == req["event_id"]], resp.obj)


@pytest.mark.only_backend("assistants")  # on responses an asst_ id is rejected: test_backends.py
def test_unknown_assistant_id_fails_with_the_api_error(ctx, worker):
    worker(worker={"allow_assistant_ids": True})  # asst_ ids are refused unless allowed
    req = ctx.ask("conv-bad-asst", "How do I reset my password?", assistant="asst_doesnotexist000")
    resp = ctx.response_for(req["event_id"])
    assert_valid("response", resp)
    assert resp["status"] == "failed"
    assert "404" in resp["error"]["message"] or "asst_doesnotexist000" in resp["error"]["message"], resp.obj
    ask_ok(ctx, "conv-bad-asst")

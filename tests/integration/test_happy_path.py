"""One conversation, answered: the response, its thread and the thread cache."""
from awtest import BACKEND, answer_text, assert_valid, conv_handle, history_turns, turn_handle


def test_request_is_answered_completed_with_text_thread_run_and_usage(ctx, worker, redis_client):
    worker()
    req = ctx.ask("conv-happy", "How do I reset my password?")
    resp = ctx.response_for(req["event_id"])
    assert_valid("response", resp)
    assert resp.key_str == "conv-happy"
    assert resp["status"] == "completed", resp.obj
    assert resp["event_id"] == req["event_id"] and resp["conversation_id"] == "conv-happy"
    assert answer_text(resp).strip(), "the answer has text"
    assert conv_handle(resp) and turn_handle(resp), resp.obj
    assert resp["backend"]["kind"] == BACKEND
    if BACKEND == "assistants":
        assert (resp["thread_id"], resp["run_id"]) == (conv_handle(resp), turn_handle(resp))
    else:
        assert resp["thread_id"] is None and resp["run_id"] is None, resp.obj
    usage = resp["usage"]
    assert usage and usage["total_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    t = resp["timings"]
    assert 0 < t["received_ms"] <= t["run_started_ms"] <= t["completed_ms"]
    if BACKEND == "chat":
        # No handle at the API: the fleet keeps the turn (user message and answer) itself.
        turns = history_turns(conv_handle(resp))
        assert [t["e"] for t in turns] == [req["event_id"]]
        assert [m["role"] for m in turns[0]["m"]] == ["user", "assistant"]
        assert turns[0]["m"][1]["content"] == answer_text(resp)
    else:
        assert redis_client.get(ctx.thread_key("conv-happy")) == conv_handle(resp)


def test_follow_up_in_same_conversation_reuses_thread(ctx, worker, simulator):
    worker()
    first = ctx.ask("conv-follow", "How do I reset my password?")
    r1 = ctx.response_for(first["event_id"])
    second = ctx.ask("conv-follow", "Thanks! And how do I change my email address?")
    r2 = ctx.response_for(second["event_id"])
    assert r1["status"] == r2["status"] == "completed", (r1.obj, r2.obj)
    assert conv_handle(r2) == conv_handle(r1)
    assert turn_handle(r2) != turn_handle(r1)
    assert simulator.turns_of(conv_handle(r1)) == [turn_handle(r1), turn_handle(r2)]
    assert simulator.user_texts(conv_handle(r1)) == [
        "How do I reset my password?", "Thanks! And how do I change my email address?"]

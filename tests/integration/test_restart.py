"""A restarted worker finds the conversation's thread again (Redis), nothing answered twice."""
import collections

from awtest import conv_handle


def test_restarted_worker_reuses_thread_of_conversation(ctx, worker, simulator):
    w1 = worker("before-restart")
    first = ctx.ask("conv-restart", "How do I reset my password?")
    r1 = ctx.response_for(first["event_id"])
    assert r1["status"] == "completed"
    assert w1.stop() == 0
    w1.assert_clean_exit()

    worker("after-restart")  # same group, same Redis prefix
    second = ctx.ask("conv-restart", "Thanks! And how do I change my email address?")
    r2 = ctx.response_for(second["event_id"])
    assert r2["status"] == "completed"
    assert conv_handle(r2) == conv_handle(r1)
    assert simulator.user_texts(conv_handle(r1)) == [
        "How do I reset my password?", "Thanks! And how do I change my email address?"]
    ctx.responses.quiet_for(1.0)
    counts = collections.Counter(m.get("event_id") for m in ctx.responses.messages)
    assert counts == {first["event_id"]: 1, second["event_id"]: 1}, "each event answered once"

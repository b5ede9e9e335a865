"""Exactly-once answers: responses commit with their offsets in Kafka transactions, and the
offsets answered beyond the committed one travel in the commit metadata.

The scene: one partition holds a slow event (its run waits for a tool reply, so the partition's
commit point cannot pass it) followed by fast events answered meanwhile.  The worker is killed
with SIGKILL.  The heir reads the partition again from the slow event: it must skip the fast
events because the commit metadata says they were answered -- the Redis outcome records, the
other guard, are deleted first so that only the metadata can save them -- and it must finish the
slow one.  Every event is answered exactly once (read_committed)."""
import collections

from awtest import SUPPORT_BOT, answer_text, make_request
from test_tools import FAST_GROUP, OUT, WEATHER, new_conv, published, tool_requests, weather_worker

PART = 3  # every event of the test goes to this requests partition


def test_events_answered_past_the_commit_point_are_skipped_after_a_crash(ctx, worker, tool_service,
                                                                          redis_client):
    svc = tool_service()
    w1 = weather_worker(worker, "doomed", kafka_properties=dict(FAST_GROUP))
    # Produced explicitly to PART: the slow event first, then the fast ones.
    slow = make_request(new_conv("conv-slow"), "What's the weather in Paris?", assistant=WEATHER)
    ctx.send(slow, partition=PART)
    (treq,) = tool_requests(ctx, svc, slow, 1)
    published(w1, treq)

    fast = []
    for i in range(5):
        r = make_request(new_conv(f"conv-fast{i}"), "How do I reset my password?",
                         assistant=SUPPORT_BOT["name"])
        ctx.send(r, partition=PART)
        fast.append(r)
    got = ctx.responses_for([r["event_id"] for r in fast], timeout_s=60)
    assert all(m["status"] == "completed" for m in got.values())

    # The fast answers are committed; their offsets are past the commit point (the slow event
    # holds it), so only the commit metadata records them.  Take the other guard away.
    for r in fast:
        key = f"{ctx.redis_prefix}:{{c:{r['conversation_id']}}}:ev:{r['event_id']}"
        assert redis_client.delete(key) == 1, f"no outcome record {key}"
    w1.kill()

    heir = weather_worker(worker, "heir", kafka_properties=dict(FAST_GROUP))
    # The heir resumes the slow run (still waiting for its reply) ...
    heir.wait_log(lambda e: e.get("msg") == "tool round was recorded before; waiting for its replies",
                  60, "the heir to pick the waiting run up")
    svc.reply(treq, output=OUT["Paris"])
    resp = ctx.response_for(slow["event_id"], timeout_s=60)
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == f"Paris: {OUT['Paris']}."

    # ... and answers nothing twice.
    ctx.responses.quiet_for(2.0)
    counts = collections.Counter(m.get("event_id") for m in ctx.responses.messages)
    for r in fast + [slow]:
        assert counts[r["event_id"]] == 1, f"{r['event_id']} answered {counts[r['event_id']]} times"
    assert heir.logged("answers are exactly-once: responses commit with their offsets in Kafka transactions")
    # The heir skipped the fast events before decoding them (the metadata, not Redis: their
    # outcome records are gone, and a Redis skip would log "event already answered").
    fast_ids = {r["event_id"] for r in fast}
    seen = [e for e in heir.events if e and e.get("event_id") in fast_ids]
    assert not seen, f"the heir worked on answered events: {seen[:3]}"

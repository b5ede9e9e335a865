"""An event_id belongs to the message the worker accepted with it (worker/event/event_claim.h).

A rejected event claims no id: the real event that later comes with the same id in the same
conversation is answered, not skipped as "already answered".  An accepted event's records carry a
digest of what it asked: the same message again (a producer's retry: identical bytes) is answered
once; a different message with the same id is rejected `event_id_reused` and dead-lettered with its
bytes, never skipped silently; records written before digests keep the old behaviour.
"""
import base64

import pytest

from awtest import assert_valid, error_code, make_request, new_event_id, pack, rk_key


def dead_letter(ctx, partition: int, offset: int, what: str):
    return ctx.dlq.wait_for(lambda ms: next((m for m in ms if m.get("source", {}).get("partition") == partition
                                             and m["source"]["offset"] == offset), None), 30, what)


def skipped(w, event_id: str):
    """Wait for the worker's log line that it skipped event_id as answered."""
    w.wait_log(lambda e: e.get("msg") == "event already answered; skipped" and e.get("event_id") == event_id,
               60, f"the skip of {event_id}")


def responses_to(ctx, event_id: str) -> list:
    return [m for m in ctx.responses.messages if m.get("event_id") == event_id]


def _malformed(conv, eid):
    r = make_request(conv, "hello", event_id=eid)
    del r["content"]
    return r, "missing_field"


def _unknown_assistant(conv, eid):
    return make_request(conv, "hello", event_id=eid, assistant="No Such Bot"), "unknown_assistant"


def _forbidden_override(conv, eid):
    return (make_request(conv, "hello", event_id=eid, instructions="Answer every question with 'no'."),
            "override_not_allowed")


REJECTIONS = {"malformed": _malformed, "unknown_assistant": _unknown_assistant,
              "forbidden_override": _forbidden_override}


# At-least-once changes only how an answer is committed (no transaction): one kind covers it.
@pytest.mark.parametrize("kind,mode", [(k, "exactly_once") for k in REJECTIONS] + [("malformed", "at_least_once")])
def test_a_rejected_event_does_not_claim_its_event_id(ctx, worker, redis_client, kind, mode):
    w = worker(extra_env={"AW_EXACTLY_ONCE": "false"} if mode == "at_least_once" else {})
    conv, eid = f"conv-claim-{kind}", new_event_id()
    bad, code = REJECTIONS[kind](conv, eid)
    partition, offset = ctx.send(bad)
    rej = ctx.response_for(eid)
    assert rej["status"] == "rejected" and error_code(rej) == code, rej.obj
    dl = dead_letter(ctx, partition, offset, "the rejected event's dead letter")
    assert dl["original"] == pack(bad)
    # Nothing of it in Redis that could answer for the id.
    assert redis_client.get(rk_key(ctx.redis_prefix, conv, "ev", eid)) is None
    assert redis_client.get(rk_key(ctx.redis_prefix, conv, "evp", eid)) is None

    good = make_request(conv, "How do I reset my password?", event_id=eid)
    ctx.send(good)
    resp = ctx.responses.wait_for(lambda ms: next((m for m in ms if m.get("event_id") == eid
                                                  and m["status"] != "rejected"), None),
                                  60, "the real event's answer")
    assert_valid("response", resp)
    assert resp["status"] == "completed", resp.obj
    assert not w.logged("event already answered; skipped", event_id=eid)


def test_a_different_message_reusing_an_answered_event_id_is_rejected_and_dead_lettered(ctx, worker, redis_client):
    w = worker()
    conv, eid = "conv-reuse", new_event_id()
    first = make_request(conv, "How do I reset my password?", event_id=eid)
    ctx.send(first)
    assert ctx.response_for(eid)["status"] == "completed"
    record = redis_client.get(rk_key(ctx.redis_prefix, conv, "ev", eid))
    assert record and " d:" in record, record

    other = make_request(conv, "And how do I delete my account?", event_id=eid)
    partition, offset = ctx.send(other)
    rej = ctx.responses.wait_for(lambda ms: next((m for m in ms if m.get("event_id") == eid
                                                 and m["status"] == "rejected"), None), 60, "the reuse's rejection")
    assert_valid("response", rej)
    assert error_code(rej) == "event_id_reused", rej.obj
    msg = rej["error"]["message"]
    assert eid in msg and "different message" in msg and "answered at 20" in msg, msg
    assert rej["run_id"] is None and rej["messages"] == []
    dl = dead_letter(ctx, partition, offset, "the reuse's dead letter")
    assert_valid("dlq", dl)
    assert error_code(dl) == "event_id_reused"
    assert base64.b64decode(dl.json()["original"]) == pack(other), "the original bytes, exactly"
    # The rejection claimed nothing: the first message's record is unchanged ...
    assert redis_client.get(rk_key(ctx.redis_prefix, conv, "ev", eid)) == record
    # ... so the first message re-sent is still recognised, and skipped.
    ctx.send(first)
    skipped(w, eid)

    # The conversation goes on.
    nxt = ctx.ask(conv, "Thanks! How do I change my email address?")
    assert ctx.response_for(nxt["event_id"])["status"] == "completed"
    assert len(responses_to(ctx, eid)) == 2  # the answer and the reuse's rejection, nothing else


def test_the_same_bytes_delivered_twice_are_answered_once(ctx, worker):
    w = worker()
    conv, eid = "conv-retry", new_event_id()
    value = pack(make_request(conv, "How do I reset my password?", event_id=eid,
                              additional_instructions="The user is on the premium plan."))
    ctx.send(value, key=conv)
    ctx.send(value, key=conv)  # a producer's retry: identical bytes, another record
    assert ctx.response_for(eid)["status"] == "completed"
    skipped(w, eid)
    ctx.responses.quiet_for(1.0)
    assert len(responses_to(ctx, eid)) == 1
    assert not [m for m in ctx.dlq.messages if m.get("event_id") == eid]


def test_an_outcome_recorded_before_digests_still_skips_its_event(ctx, worker, redis_client):
    w = worker()
    conv, eid = "conv-old-record", new_event_id()
    # What a worker of the previous version wrote: "<status> <turn>", no digest.
    redis_client.set(rk_key(ctx.redis_prefix, conv, "ev", eid), "completed run_old123", ex=600)
    ctx.ask(conv, "How do I reset my password?", event_id=eid)
    skipped(w, eid)
    nxt = ctx.ask(conv, "Are you there?")
    assert ctx.response_for(nxt["event_id"])["status"] == "completed"
    assert responses_to(ctx, eid) == []


def test_a_different_message_reusing_an_id_still_in_progress_is_rejected(ctx, worker, redis_client):
    # Another message holds the id's progress record (it was started, e.g. by a worker that
    # died, or on another partition): recovering "its" turn would answer this message with
    # the other one's answer.
    w = worker()
    conv, eid = "conv-reuse-progress", new_event_id()
    redis_client.set(rk_key(ctx.redis_prefix, conv, "evp", eid), "d:" + "ab" * 32 + ":1767225600000 -", ex=600)
    req = make_request(conv, "How do I reset my password?", event_id=eid)
    partition, offset = ctx.send(req)
    rej = ctx.response_for(eid)
    assert rej["status"] == "rejected" and error_code(rej) == "event_id_reused", rej.obj
    assert "not answered yet" in rej["error"]["message"] and "2026-01-01T00:00:00Z" in rej["error"]["message"]
    dead_letter(ctx, partition, offset, "the reuse's dead letter")
    assert not w.logged("event was started before; recovering its turn", event_id=eid)
    assert redis_client.get(rk_key(ctx.redis_prefix, conv, "ev", eid)) is None

"""The Kafka key and the conversation agree (worker.key_rule), end to end.

`match` (the default): a request keyed by anything but its conversation_id, or not keyed, is
answered `rejected` / `key_mismatch` and dead-lettered with its original bytes and key; the
conversation's later requests are answered. `route_by_key`: the key is the conversation, and
conversation_id may be left out (or must equal it).
"""
from __future__ import annotations

import base64
import uuid

from awtest import answer_text, assert_valid, conv_handle, error_code, make_request, pack


def dead_letter(ctx, part: int, off: int):
    return ctx.dlq.wait_for(lambda ms: next((m for m in ms if m.get("source", {}).get("offset") == off
                                             and m["source"]["partition"] == part), None),
                            30, f"the dead letter of offset {off}")


def test_mismatched_or_missing_key_is_rejected_with_its_bytes_and_the_conversation_goes_on(ctx, worker):
    w = worker()
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    wrong = make_request(conv, "How do I reset my password?")
    keyless = make_request(conv, "How do I reset my password?")
    bad = []
    for req, key in ((wrong, f"{conv}-other"), (keyless, None)):
        value = pack(req)
        part, off = ctx.producer.send(ctx.topics["requests"], value, key)
        bad.append((req, value, key, part, off))
    later = ctx.ask(conv, "How do I reset my password?")

    for req, value, key, part, off in bad:
        rej = ctx.response_for(req["event_id"])
        assert_valid("response", rej)
        assert rej["status"] == "rejected" and error_code(rej) == "key_mismatch", rej.obj
        assert rej["conversation_id"] == conv
        dl = dead_letter(ctx, part, off)
        assert_valid("dlq", dl)
        assert dl["error"]["code"] == "key_mismatch"
        assert base64.b64decode(dl.json()["original"]) == value, "the original bytes, exactly"
        assert dl["original_key"] == (key.encode() if key else None)
    ok = ctx.response_for(later["event_id"])
    assert ok["status"] == "completed", ok.obj
    assert answer_text(ok)
    # Nothing of the conversation was looked up or started for the rejected ones.
    assert not w.logged("turn completed", event_id=wrong["event_id"])


def test_route_by_key_takes_the_key_as_the_conversation(ctx, worker):
    worker(extra_env={"AW_KEY_RULE": "route_by_key"})
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    first = make_request(conv, "How do I reset my password?")
    del first["conversation_id"]
    ctx.producer.send(ctx.topics["requests"], pack(first), conv)
    r1 = ctx.response_for(first["event_id"])
    assert_valid("response", r1)
    assert r1["status"] == "completed", r1.obj
    assert r1["conversation_id"] == conv, "the key named the conversation"
    assert r1.key_str == conv

    other = make_request(f"{conv}-x", "How do I reset my password?")
    part, off = ctx.producer.send(ctx.topics["requests"], pack(other), conv)
    rej = ctx.response_for(other["event_id"])
    assert rej["status"] == "rejected" and error_code(rej) == "key_mismatch", rej.obj
    assert dead_letter(ctx, part, off)["error"]["code"] == "key_mismatch"

    same = make_request(conv, "Thanks! And how do I change my email address?")
    ctx.producer.send(ctx.topics["requests"], pack(same), conv)
    r2 = ctx.response_for(same["event_id"])
    assert r2["status"] == "completed", r2.obj
    assert conv_handle(r2) == conv_handle(r1), "the same conversation, whichever way it was named"

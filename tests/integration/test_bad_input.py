"""Bad input gets a precise `rejected` response and a dead letter; the worker carries on."""
import base64

import pytest

from awtest import assert_valid, conv_handle, error_code, make_request, pack, turn_handle

KEY = "conv-bad"


def _without(field):
    def build():
        r = make_request(KEY, "hello")
        del r[field]
        return r
    return build


# id: (value builder, expected error.code, event_id known, conversation_id known)
CASES = {
    "malformed_msgpack": (lambda: b"\xc1\x00 not msgpack", "malformed_event", False, False),
    "not_a_map": (lambda: pack(["v", 1, "event_id", "e1"]), "malformed_event", False, False),
    "missing_conversation_id": (_without("conversation_id"), "missing_field", True, False),
    "missing_event_id": (_without("event_id"), "missing_field", False, True),
    "missing_content": (_without("content"), "missing_field", True, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request_is_rejected_dead_lettered_with_original_bytes_and_worker_carries_on(
        ctx, worker, case):
    build, code, eid_known, conv_known = CASES[case]
    obj = build()
    value = obj if isinstance(obj, bytes) else pack(obj)
    worker()
    partition, offset = ctx.send(value, key=KEY)

    dl = ctx.dlq.wait_for(lambda ms: next((m for m in ms if m.get("source", {}).get("offset") == offset
                                           and m["source"]["partition"] == partition), None),
                          30, f"the dead letter of {case}")
    assert_valid("dlq", dl)
    assert base64.b64decode(dl.json()["original"]) == value, "the original bytes, exactly"
    assert dl["original"] == value
    assert dl["original_key"] == KEY.encode()
    assert dl.key == KEY.encode(), "a dead letter is keyed by the original key"
    assert dl["source"] == {"topic": ctx.topics["requests"], "partition": partition, "offset": offset}
    assert dl["error"]["code"] == code
    if eid_known:
        assert dl["event_id"] == obj["event_id"]
    if conv_known:
        assert dl["conversation_id"] == KEY

    def rejected(ms):
        return next((m for m in ms if m.get("status") == "rejected" and error_code(m) == code), None)

    resp = ctx.responses.wait_for(rejected, 30, f"the rejected response to {case}")
    assert_valid("response", resp)
    assert resp["run_id"] is None and resp["thread_id"] is None and resp["messages"] == []
    assert turn_handle(resp) is None and conv_handle(resp) is None, resp.obj
    assert resp["event_id"] == (obj["event_id"] if eid_known else "")
    if conv_known:
        assert resp["conversation_id"] == KEY and resp.key_str == KEY
    else:
        assert resp["conversation_id"] == ""

    # The worker carries on: the next request of the conversation is answered.
    good = ctx.ask(KEY, "Are you still there?")
    assert ctx.response_for(good["event_id"])["status"] == "completed"


def test_unknown_assistant_is_rejected_with_unknown_assistant_code(ctx, worker):
    worker()
    req = ctx.ask("conv-who", "Hello?", assistant="No Such Bot")
    resp = ctx.response_for(req["event_id"])
    assert_valid("response", resp)
    assert resp.key_str == "conv-who"
    assert resp["status"] == "rejected"
    assert error_code(resp) == "unknown_assistant"
    assert resp["run_id"] is None and turn_handle(resp) is None
    good = ctx.ask("conv-who", "Hello, support bot?")
    assert ctx.response_for(good["event_id"])["status"] == "completed"

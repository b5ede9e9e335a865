"""Images and attachments in requests (issue 10, parts 3-6): the worker's files step
(worker/event/attach.c) checks the file ids a request names and uploads inline bytes once per
event; the chat backend sends inline images as data: URLs and refuses what needs files.

Runs on the backend AW_TEST_BACKEND names.  Needs the broker, Redis and the simulator
(conftest.py).  Not yet here (see the W report): an image acknowledged by the simulator ("I see N
image(s).", S1/S2), the single upload across a SIGKILL, oversize / too many / media type."""
from __future__ import annotations

import pytest

from awtest import BACKEND, assert_valid, error_code, make_request, pack

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")


def rejected_with_dead_letter(ctx, req: dict, partition: int, offset: int, code: str) -> dict:
    dl = ctx.dlq.wait_for(lambda ms: next((m for m in ms if m.get("source", {}).get("offset") == offset
                                           and m["source"]["partition"] == partition), None),
                          60, f"the dead letter of {req['event_id']}")
    assert_valid("dlq", dl)
    assert dl["error"]["code"] == code, dl["error"]
    assert dl["original"] == pack(req), "the original bytes, exactly"
    m = ctx.response_for(req["event_id"], 60)
    assert m["status"] == "rejected", m.obj
    assert error_code(m) == code
    return m


@pytest.mark.skipif(BACKEND == "chat", reason="the chat backend refuses file ids at intake")
def test_unknown_file_id_is_rejected_file_not_found_and_the_conversation_goes_on(ctx, worker):
    worker()
    req = make_request("att-conv-1", "What is in this file?",
                       attachments=[{"file_id": "file-doesnotexist", "tools": ["file_search"]}])
    partition, offset = ctx.send(req)
    m = rejected_with_dead_letter(ctx, req, partition, offset, "file_not_found")
    assert "attachments[0].file_id 'file-doesnotexist' does not exist" in m["error"]["message"]
    nxt = ctx.ask("att-conv-1", "How do I reset my password?")
    other = ctx.ask("att-conv-2", "How do I reset my password?")
    got = ctx.responses_for([nxt["event_id"], other["event_id"]], 120)
    assert all(r["status"] == "completed" for r in got.values()), {k: v.obj for k, v in got.items()}


@pytest.mark.skipif(BACKEND != "chat", reason="chat refusals")
def test_chat_refuses_attachments_and_images_by_id_naming_why(ctx, worker):
    worker()
    att = make_request("att-chat-1", "Sum the column",
                       attachments=[{"data": b"a,b\n1,2\n", "filename": "sales.csv", "media_type": "text/csv",
                                     "tools": ["code_interpreter"]}])
    p1, o1 = ctx.send(att)
    m = rejected_with_dead_letter(ctx, att, p1, o1, "unsupported_content")
    assert "attachments[0] is for code_interpreter, a hosted tool the chat backend does not offer" in \
        m["error"]["message"]
    byid = make_request("att-chat-2", [{"type": "text", "text": "What is this?"},
                                       {"type": "image_file", "file_id": "file-abc"}])
    p2, o2 = ctx.send(byid)
    rejected_with_dead_letter(ctx, byid, p2, o2, "unsupported_content")


def test_file_part_is_refused_use_attachments(ctx, worker):
    worker()
    req = make_request("att-conv-3", [{"type": "text", "text": "Read this"},
                                      {"type": "file", "file_id": "file-abc"}])
    partition, offset = ctx.send(req)
    m = rejected_with_dead_letter(ctx, req, partition, offset, "unsupported_content")
    assert "use attachments" in m["error"]["message"]


def test_inline_image_turn_is_answered(ctx, worker):
    """An inline image (uploaded with purpose vision; on chat a data: URL) does not stop the turn."""
    worker()
    req = make_request("att-conv-4", [{"type": "text", "text": "What is in this image?"},
                                      {"type": "image_file", "data": PNG, "media_type": "image/png"}])
    ctx.send(req)
    m = ctx.response_for(req["event_id"], 120)
    assert m["status"] == "completed", m.obj

"""Images and attachments in requests (issue 10, parts 3-6): the worker's files step
(worker/event/attach.c) checks the file ids a request names and uploads inline bytes once per
event; the chat backend sends inline images as data: URLs and refuses what needs files.

Also: images by URL, by file id and inline are acknowledged by the simulator ("I see N image(s). ",
tests/simulator/sim_codeint.h) and reach the API as file ids (on chat as data: URLs, no upload); an
inline file is uploaded once even when the worker is SIGKILLed after the upload, with or without
the event's Redis record of it (then the lookup by name finds it); the decoder's limits
(file_too_large, too_many_attachments, unsupported_media_type) reject one event and nothing else.

Runs on the backend AW_TEST_BACKEND names.  Needs the broker, Redis and the simulator
(conftest.py)."""
from __future__ import annotations

import base64
import collections
import hashlib
import json
import os
import struct
import subprocess
import uuid
import zlib
from pathlib import Path

import pytest

from awtest import (API_KEY, BACKEND, WORKER_BIN, answer_text, assert_valid, error_code, make_request, pack,
                    rk_key, wait_until)

PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489")


def rejected_with_dead_letter(ctx, req: dict, partition: int, offset: int, code: str) -> dict:
    # The response first: published in the same transaction as the dead letter, and when the
    # event was not rejected it says what happened instead.
    m = ctx.response_for(req["event_id"], 60)
    assert m["status"] == "rejected", m.obj
    assert error_code(m) == code, m.obj
    dl = ctx.dlq.wait_for(lambda ms: next((m for m in ms if m.get("source", {}).get("offset") == offset
                                           and m["source"]["partition"] == partition), None),
                          60, f"the dead letter of {req['event_id']}")
    assert_valid("dlq", dl)
    assert dl["error"]["code"] == code, dl["error"]
    assert dl["original"] == pack(req), "the original bytes, exactly"
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


# ---- images acknowledged, uploads, limits ----------------------------------------------------

IMAGE_URL = "https://example.com/shelf.png"
# Chat Completions servers have no files: nothing is uploaded there (inline images go as data: URLs).
HOSTED = BACKEND != "chat"
FAST_GROUP = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}  # as test_crash.py


def tiny_png(rgb: tuple[int, int, int] = (200, 30, 30), w: int = 2, h: int = 2) -> bytes:
    """A well-formed PNG (8-bit RGB, chunks with their CRCs): what a producer would attach."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def upload_name(conversation_id: str, event_id: str, n: int, filename: str) -> str:
    """The worker's name of item n's upload (worker/event/attach.h): aw-<8 hex of the turn token,
    SHA-256 of "<len(conversation)>:<conversation><event>">-<n>-<filename>."""
    token = hashlib.sha256(f"{len(conversation_id.encode())}:{conversation_id}{event_id}".encode()).hexdigest()
    return f"aw-{token[:8]}-{n}-{filename}"


def records(sim) -> list[dict]:
    """Every exchange the simulator recorded (--record), oldest first."""
    with open(sim.record_path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def uploads_named(sim, name: str) -> list[dict]:
    """The recorded POST /v1/files of a file of that name."""
    return [r for r in records(sim) if r["method"] == "POST" and r["path"] == "/v1/files"
            and ((r.get("request_body") or {}).get("file") or {}).get("filename") == name]


def dicts_in(v):
    if isinstance(v, dict):
        yield v
        for x in v.values():
            yield from dicts_in(x)
    elif isinstance(v, list):
        for x in v:
            yield from dicts_in(x)


def image_parts_sent(sim) -> list[dict]:
    """The image content parts of every request body the API got (but uploads): Responses
    input_image, Assistants image_file / image_url, whichever route carried them."""
    return [d for r in records(sim) if r["path"] != "/v1/files" for d in dicts_in(r.get("request_body"))
            if d.get("type") in ("input_image", "image_file", "image_url")]


def sent_file_id(part: dict) -> str | None:
    return part.get("file_id") or (part.get("image_file") or {}).get("file_id")


def sent_url(part: dict) -> str | None:
    u = part.get("image_url")
    return u.get("url") if isinstance(u, dict) else u


def file_put(sim, path: Path, purpose: str) -> dict:
    """`assistant-worker file put PATH --purpose P`, configured by environment: the file object."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AW_API_BASE_URL": sim.base_url,
           "AW_API_KEY": API_KEY, "AW_LOG_LEVEL": "warn", "AW_API_BACKEND": BACKEND,
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")}
    p = subprocess.run([str(WORKER_BIN), "file", "put", str(path), "--purpose", purpose], env=env,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    return json.loads(p.stdout)


def image(data: bytes | None = None, url: str | None = None, file_id: str | None = None,
          filename: str | None = None, media_type: str = "image/png") -> dict:
    if url:
        return {"type": "image_url", "url": url}
    if file_id:
        return {"type": "image_file", "file_id": file_id}
    p = {"type": "image_file", "data": data, "media_type": media_type}
    if filename:
        p["filename"] = filename
    return p


def test_images_by_url_file_id_and_inline_are_acknowledged_with_their_count(ctx, worker, simulator, tmp_path):
    """The simulator's model answers "I see N image(s). " first: every image reached the API
    (Responses / Assistants: the inline bytes uploaded once with purpose vision and sent by file
    id; chat: a data: URL, no upload -- its simulator does not acknowledge, so there the requests
    themselves are checked)."""
    worker()
    tag = uuid.uuid4().hex[:8]
    png = tiny_png()
    stats0 = simulator.stats()["requests"].get("POST /v1/files", {})
    ask = {"url": [image(url=IMAGE_URL)],
           "inline": [image(png, filename=f"att-{tag}.png")],
           "two": [image(url=IMAGE_URL), image(png, filename=f"att-{tag}-b.png")]}
    by_id = None
    if HOSTED:
        f = tmp_path / f"shelf-{tag}.png"
        f.write_bytes(tiny_png((10, 120, 40)))
        by_id = file_put(simulator, f, "vision")["id"]
        ask["file_id"] = [image(file_id=by_id)]
    reqs = {k: ctx.ask(f"att-img-{k}-{tag}", [{"type": "text", "text": f"What is in this picture? ({k})"}, *parts])
            for k, parts in ask.items()}
    got = ctx.responses_for([r["event_id"] for r in reqs.values()], 120)
    for k, r in reqs.items():
        m = got[r["event_id"]]
        assert_valid("response", m)
        assert m["status"] == "completed", (k, m.obj)
        if HOSTED:
            want = "I see 2 images. " if k == "two" else "I see 1 image. "
            assert answer_text(m).startswith(want), (k, answer_text(m))

    if HOSTED:
        # Each inline image was uploaded once, purpose vision, under the event's name, and the
        # turn got its file id -- never the bytes.
        sent = image_parts_sent(simulator)
        for k, n_part in (("inline", 1), ("two", 2)):
            conv, ev = reqs[k]["conversation_id"], reqs[k]["event_id"]
            name = upload_name(conv, ev, 0, ask[k][-1]["filename"])
            (up,) = uploads_named(simulator, name)
            assert up["status"] == 200 and up["request_body"]["purpose"] == "vision", up
            assert up["request_body"]["file"]["bytes"] == len(png), up
            assert up["request_body"]["file"]["sha256"] == hashlib.sha256(png).hexdigest(), up
            fid = up["response_body"]["id"]
            assert [p for p in sent if sent_file_id(p) == fid], (k, fid, sent)
        assert [p for p in sent if sent_file_id(p) == by_id], (by_id, sent)
        assert [p for p in sent if sent_url(p) == IMAGE_URL], sent
        assert not [p for p in sent if (sent_url(p) or "").startswith("data:")], "inline bytes go by file id"
    else:
        # No upload; the bytes travel as a data: URL in the image_url part, beside the URL image.
        assert simulator.stats()["requests"].get("POST /v1/files", {}) == stats0, "chat uploads nothing"
        b64 = base64.b64encode(png).decode()
        for k, want in (("url", [IMAGE_URL]), ("inline", [f"data:image/png;base64,{b64}"]),
                        ("two", [IMAGE_URL, f"data:image/png;base64,{b64}"])):
            q = f"What is in this picture? ({k})"
            bodies = [r["body"] for r in simulator.chat_requests()
                      if any(isinstance(m.get("content"), list) and {"type": "text", "text": q} in m["content"]
                             for m in r["body"]["messages"] if m["role"] == "user")]
            assert bodies, f"no chat request asked {q!r}"
            user = [m for m in bodies[-1]["messages"] if m["role"] == "user"][-1]
            urls = [p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url"]
            assert urls == want, (k, [u[:60] for u in urls])


@pytest.mark.skipif(BACKEND == "chat", reason="the chat backend uploads nothing (inline images go as data: URLs)")
@pytest.mark.parametrize("record", ["kept", "deleted"])
def test_inline_image_is_uploaded_once_when_the_worker_dies_after_the_upload(
        ctx, worker, sim_settings, redis_client, record):
    """SIGKILL after the upload (the turn is streaming, slowed by the simulator): the heir finds
    the upload in the event's Redis record -- or, with the record deleted, by its name -- and
    answers once; the simulator saw exactly one POST /v1/files of that name."""
    sim = sim_settings
    w1 = worker("doomed", kafka_properties=dict(FAST_GROUP))
    conv, filename, png = f"att-crash-{uuid.uuid4().hex[:8]}", f"crash-{uuid.uuid4().hex[:8]}.png", tiny_png()
    sim.faults(token_delay_ms=150)  # ~3 s of streaming: the kill lands mid-turn, after the upload
    before = sim.stats()["streams_total"]
    req = ctx.ask(conv, [{"type": "text", "text": "What is in this image?"}, image(png, filename=filename)],
                  stream=True)
    name = upload_name(conv, req["event_id"], 0, filename)
    wait_until(lambda: sim.stats()["active_streams"] >= 1 and sim.stats()["streams_total"] > before,
               60, "the turn to be streaming")
    (up,) = wait_until(lambda: uploads_named(sim, name), 10, f"the record of the upload {name}")
    fid = up["response_body"]["id"]
    key = rk_key(ctx.redis_prefix, conv, "evf", req["event_id"])
    assert redis_client.hgetall(key) == {"0": fid}, "the upload is recorded before the turn starts"
    w1.kill()
    if record == "deleted":
        assert redis_client.delete(key) == 1

    heir = worker("heir", kafka_properties=dict(FAST_GROUP))
    m = ctx.response_for(req["event_id"], timeout_s=90)
    assert m["status"] == "completed", m.obj
    assert answer_text(m).startswith("I see 1 image. "), answer_text(m)
    ctx.responses.quiet_for(2.0)
    counts = collections.Counter(x.get("event_id") for x in ctx.responses.messages)
    assert counts[req["event_id"]] == 1, "answered exactly once"
    assert len(uploads_named(sim, name)) == 1, "uploaded once"
    heir.wait_log(lambda e: e.get("msg") == "files: 0 uploaded, 1 found from an earlier attempt", 10,
                  "the heir's files step reusing the upload")
    assert redis_client.hgetall(key) == {"0": fid}, "the heir's record names the same file"


# The decoder's limits (worker.max_inline_bytes 4096 and worker.max_attachments 3 here): each
# case is rejected with its code and dead-lettered with its original bytes; the conversation's
# next event and another conversation are answered.  Declarative: (name, content, extra fields,
# code, words the error message must hold).
LIMIT_CASES = [
    ("inline-too-large", [{"type": "text", "text": "What is this?"}, image(b"\x89PNG" + b"\0" * 4093)], {},
     "file_too_large", "4097 bytes, limit 4096"),
    ("too-many-attachments", "Summarise these",
     {"attachments": [{"data": b"a,b\n1,2\n", "filename": f"t{i}.csv", "media_type": "text/csv",
                       "tools": ["code_interpreter"]} for i in range(4)]},
     "too_many_attachments", "has 4 files, limit 3"),
    ("executable-attachment", "Run this",
     {"attachments": [{"data": b"MZ\x90\x00", "filename": "setup.exe", "media_type": "application/x-msdownload",
                       "tools": ["code_interpreter"]}]},
     "unsupported_media_type", "application/x-msdownload"),
    ("bmp-image", [{"type": "text", "text": "What is this?"}, image(b"BM" + b"\0" * 60, media_type="image/bmp")], {},
     "unsupported_media_type", "image/bmp"),
]


def test_limits_reject_the_event_with_its_code_and_dead_letter_and_the_conversations_go_on(ctx, worker):
    worker(worker={"max_inline_bytes": 4096, "max_attachments": 3})
    tag = uuid.uuid4().hex[:8]
    sent = {}
    for name, content, extra, _code, _words in LIMIT_CASES:
        req = make_request(f"att-lim-{name}-{tag}", content, **extra)
        sent[name] = (req, *ctx.send(req))
    nexts = [ctx.ask(f"att-lim-{name}-{tag}", "How do I reset my password?") for name in sent]
    other = ctx.ask(f"att-lim-other-{tag}", "How do I reset my password?")
    for name, content, extra, code, words in LIMIT_CASES:
        req, partition, offset = sent[name]
        m = rejected_with_dead_letter(ctx, req, partition, offset, code)
        assert words in m["error"]["message"], (name, m["error"])
    got = ctx.responses_for([r["event_id"] for r in [*nexts, other]], 120)
    assert all(r["status"] == "completed" for r in got.values()), {k: v.obj for k, v in got.items()}

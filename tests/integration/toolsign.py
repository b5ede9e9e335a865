"""Tool request / reply signatures in Python (schemas/README.md, "Signatures").

Why a second implementation: the scheme is meant for tool services in any language, so the test
suite verifies it with code written from the documentation alone, and both this module and the C
helper (common/contract/tool_sign.c) must reproduce schemas/examples/tool-request-signature.json
(check_vectors here, tests/unit/test_tool_sign.c there).  FakeToolService (awtest.py) uses it to
verify every request like a real service would and to sign its replies.

Only the standard library: hmac, hashlib, base64, struct.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
from pathlib import Path
from typing import Any, Iterable

SIG_HEADER = "aw-sig"
TS_HEADER = "aw-sig-ts"
DEFAULT_MAX_SKEW_MS = 300_000
REQUEST_DOMAIN = b"aw-tool-request/v1\x00"
REPLY_DOMAIN = b"aw-tool-reply/v1\x00"
VECTORS = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "tool-request-signature.json"


def _key(k: str | bytes) -> bytes:
    return k.encode() if isinstance(k, str) else k


def _s(x: str | bytes | None) -> bytes:
    b = (x or "").encode() if not isinstance(x, bytes) else x
    return struct.pack(">I", len(b)) + b


def request_message(req: dict, ts_ms: int) -> bytes:
    """The canonical byte string M of a tool request (its decoded map) signed at ts_ms."""
    return (REQUEST_DOMAIN + struct.pack(">QQI", ts_ms, req["deadline_ms"], req.get("round") or 0)
            + b"".join(_s(req.get(f)) for f in ("correlation_id", "name", "tool_call_id", "conversation_id",
                                               "event_id", "thread_id", "run_id", "reply_topic",
                                               "arguments_json")))


def reply_content(reply: dict) -> bytes:
    if reply.get("output") is not None:
        return b"output\x00" + _s(reply["output"])
    err = reply["error"]
    return b"error\x00" + _s(err["code"]) + _s(err.get("message") or "")


def reply_message(reply: dict) -> bytes:
    return REPLY_DOMAIN + _s(reply["correlation_id"]) + hashlib.sha256(reply_content(reply)).digest()


def _mac(key: str | bytes, m: bytes) -> str:
    return base64.urlsafe_b64encode(hmac.new(_key(key), m, hashlib.sha256).digest()).decode().rstrip("=")


def sign(keys: Iterable[str | bytes], m: bytes) -> str:
    """The aw-sig value: one v1 entry per key (current first)."""
    return ",".join("v1=" + _mac(k, m) for k in keys if k)


def sign_request(keys: Iterable[str | bytes], req: dict, ts_ms: int) -> list[tuple[str, bytes]]:
    """The Kafka headers that sign req at ts_ms."""
    return [(SIG_HEADER, sign(keys, request_message(req, ts_ms)).encode()), (TS_HEADER, str(ts_ms).encode())]


def sign_reply(keys: Iterable[str | bytes], reply: dict) -> list[tuple[str, bytes]]:
    return [(SIG_HEADER, sign(keys, reply_message(reply)).encode())]


def header(headers: list[tuple[str, bytes]] | None, name: str) -> bytes | None:
    """The last value of a header (what the C verifiers read), or None."""
    found = None
    for k, v in headers or []:
        if k == name:
            found = v if v is not None else b""
    return found


def _entries(sig: bytes) -> list[bytes] | str:
    """The v1 MACs of an aw-sig value, or the failure reason."""
    if not sig or len(sig) > 512:
        return "malformed_signature"
    macs, others = [], 0
    parts = sig.split(b",")
    if len(parts) > 4:
        return "malformed_signature"
    for p in parts:
        p = p.strip(b" \t")
        ver, eq, val = p.partition(b"=")
        if not eq or not ver.startswith(b"v") or not ver[1:].isdigit() or len(ver) > 4 or ver[1:2] == b"0":
            return "malformed_signature"
        if ver == b"v1":
            if len(val) != 43 or not all(c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
                                         for c in val):
                return "malformed_signature"
            raw = base64.urlsafe_b64decode(val + b"=")
            if base64.urlsafe_b64encode(raw).rstrip(b"=") != val:
                return "malformed_signature"  # spare bits set: not the one spelling
            macs.append(raw)
        elif not val:
            return "malformed_signature"
        else:
            others += 1
    if not macs:
        return "unsupported_signature_version" if others else "malformed_signature"
    return macs


def _matches(keys: Iterable[str | bytes], macs: list[bytes], m: bytes) -> bool:
    want = [hmac.new(_key(k), m, hashlib.sha256).digest() for k in keys if k]
    return any(hmac.compare_digest(w, got) for w in want for got in macs)


def verify_request(keys: Iterable[str | bytes], req: dict, headers, now_ms: int,
                   max_skew_ms: int = DEFAULT_MAX_SKEW_MS) -> str | None:
    """None when the request is genuine and fresh, else the reason (tool_sign.h's TSIG_R_*)."""
    sig, ts = header(headers, SIG_HEADER), header(headers, TS_HEADER)
    if sig is None or ts is None:
        return "missing_signature"
    macs = _entries(sig)
    if isinstance(macs, str):
        return macs
    if not ts.isdigit() or len(ts) > 19 or (len(ts) > 1 and ts[:1] == b"0") or int(ts) > 2**63 - 1:
        return "malformed_signature"
    t = int(ts)
    if now_ms - t > max_skew_ms:
        return "stale_signature"
    if t - now_ms > max_skew_ms:
        return "future_signature"
    if not _matches(keys, macs, request_message(req, t)):
        return "bad_signature"
    # `arguments` is not signed: a present map must say what the signed text says.
    if req.get("arguments") is not None:
        try:
            same = json.loads(req["arguments_json"]) == req["arguments"]
        except ValueError:
            same = False
        if not same:
            return "arguments_mismatch"
    return None


def verify_reply(keys: Iterable[str | bytes], reply: dict, headers) -> str | None:
    sig = header(headers, SIG_HEADER)
    if sig is None:
        return "missing_signature"
    macs = _entries(sig)
    if isinstance(macs, str):
        return macs
    return None if _matches(keys, macs, reply_message(reply)) else "bad_signature"


def check_vectors(path: Path = VECTORS) -> int:
    """Recompute every case of the shared test vectors; raises AssertionError on a difference.
    Returns the number of cases checked."""
    v: dict[str, Any] = json.loads(path.read_text())
    keys = v["keys"]
    n = 0
    for case in v["requests"]:
        req, ts = case["request"], case["ts_ms"]
        m = request_message(req, ts)
        assert m.hex() == case["message_hex"], (case["name"], m.hex())
        assert sign([keys["current"]], m) == case["signature"], case["name"]
        assert sign([keys["current"], keys["previous"]], m) == case["signature_rotating"], case["name"]
        assert verify_request([keys["current"]], req, sign_request([keys["current"]], req, ts), ts) is None
        n += 1
    for case in v["replies"]:
        m = reply_message(case["reply"])
        assert hashlib.sha256(reply_content(case["reply"])).hexdigest() == case["content_sha256"], case["name"]
        assert m.hex() == case["message_hex"], (case["name"], m.hex())
        assert sign([keys["current"]], m) == case["signature"], case["name"]
        assert sign([keys["current"], keys["previous"]], m) == case["signature_rotating"], case["name"]
        n += 1
    return n

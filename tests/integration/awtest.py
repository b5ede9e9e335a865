"""Helpers for the integration tests: the local stack, Kafka, the contract, the simulator, workers.

The services themselves are started by deploy/local/lib.sh (one implementation for the demo
and the tests); this module drives it and talks to what it started.  Every wait here is a
condition polled against a deadline; nothing sleeps in place of synchronisation.
"""
from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import msgpack
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import toolsign  # the tool request / reply signatures (schemas/README.md, "Signatures")

ROOT = Path(__file__).resolve().parents[2]
LIB_SH = ROOT / "deploy" / "local" / "lib.sh"
SCHEMAS_DIR = ROOT / "schemas"
BUILD_DIR = ROOT / os.environ.get("AW_BUILD_DIR", "build-asan")  # relative: to the repo root
WORKER_BIN = BUILD_DIR / "assistant-worker"
SIMULATOR_BIN = BUILD_DIR / "aw-simulator"
SHARED_DIR = Path(os.environ.get("AW_SHARED_DIR", ROOT.parent / "shared"))
# Deliberately not shaped like an OpenAI key ("sk-..."): the logger masks that shape as a last
# resort, so only a key that would leak literally shows that the worker never logs it at all.
API_KEY = "aw-test-secret-5c9e1f7d"
# The backend the suite runs on (tests/run.sh runs it once per backend); tests that only make
# sense on one say so with @pytest.mark.only_backend("assistants").
BACKEND = os.environ.get("AW_TEST_BACKEND", "responses")


# On the chat backend the fleet keeps each conversation's history in Redis (no handle at the
# API): conftest's ctx fixture points this at the test's Redis prefix, and the Simulator's
# conversation readers below read that history for a "history:<conversation_id>" handle.
HISTORY_READER: Callable[[str], list[dict]] | None = None


def conv_handle(resp: dict) -> str | None:
    """The backend's conversation handle of a response (thread_... or conv_...); on the chat
    backend, which has none, "history:<conversation_id>" (the fleet's history of it)."""
    be = resp.get("backend") or {}
    h = be.get("conversation")
    if h is None and be.get("kind") == "chat" and resp.get("conversation_id"):
        return "history:" + resp["conversation_id"]
    return h


def is_history(handle: str) -> bool:
    """A chat backend conversation: its history is the fleet's (Redis)."""
    return handle.startswith("history:")


def history_turns(handle: str) -> list[dict]:
    """The stored turns ({"e": event_id, "i": last completion id, "m": messages}) of a
    "history:<conversation_id>" handle, oldest first."""
    assert HISTORY_READER is not None, "no history reader: not on the chat backend?"
    return HISTORY_READER(handle.split(":", 1)[1])


def turn_handle(resp: dict) -> str | None:
    """The backend's handle of a response's (last) turn (run_... or resp_...); on the chat
    backend, which names none in the response, the id of the stored turn's last completion
    (chatcmpl-...), if the turn was stored."""
    be = resp.get("backend") or {}
    h = be.get("turn")
    if h is None and be.get("kind") == "chat" and HISTORY_READER is not None and resp.get("conversation_id"):
        for t in HISTORY_READER(resp["conversation_id"]):
            if t.get("e") == resp.get("event_id"):
                return t.get("i")
    return h


def is_conversation(handle: str) -> bool:
    """A Responses API conversation handle (conv_...), not an Assistants thread (thread_...)."""
    return handle.startswith("conv_")


def handle_key_suffix(backend: str = BACKEND) -> str:
    """The last part of the Redis key of a conversation's backend handle on `backend`."""
    return "thread" if backend == "assistants" else "conv"


# ---- Redis key names: a port of worker/event/rkeys.c (keep the two in step) -----------------

def rk_encode(s: str | bytes) -> str:
    """rkeys.c's id encoding: '%', '{', '}', ':', space, control bytes and non-ASCII become %XX
    (upper-case hex); every other byte stands for itself."""
    b = s.encode() if isinstance(s, str) else s
    return "".join(f"%{c:02X}" if c in b"%{}: " or c < 0x20 or c >= 0x7F else chr(c) for c in b)


def rk_tag(conversation_id: str | bytes, tenant: str | bytes | None = None) -> str:
    """The hash tag of a conversation's keys: c:<enc conv>, or t:<enc tenant>:c:<enc conv>."""
    return (f"t:{rk_encode(tenant)}:" if tenant else "") + f"c:{rk_encode(conversation_id)}"


def rk_key(prefix: str, conversation_id: str | bytes, kind: str, arg: str | bytes | None = None,
           tenant: str | bytes | None = None) -> str:
    """A conversation's key: <prefix>:{<tag>}:<kind>[:<enc arg>]; kind is the handle name
    ("thread"/"conv"), "ev", "evp", "turn" or "hist:p" (with arg), "hist" or "hist:ids"."""
    return f"{prefix}:{{{rk_tag(conversation_id, tenant)}}}:{kind}" + (
        f":{rk_encode(arg)}" if arg is not None else "")


def rk_ref(conversation_id: str, tenant: str | None = None) -> str:
    """A conversation's reference (what the backends tag the API's objects with): the id, or
    <enc tenant>:<id> when the deployment has tenants."""
    return f"{rk_encode(tenant)}:{conversation_id}" if tenant else conversation_id

# Markers of a sanitizer report in a process's stderr (ASan, LSan, UBSan).
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "AddressSanitizer:DEADLYSIGNAL")

SUPPORT_BOT = {
    "name": "Customer Support Bot",
    "model": "gpt-4o",
    "instructions": "Provide support based on the latest documentation.",
    # Chat Completions servers have no file search: the chat backend refuses the tool at
    # start-up, so the bot goes without it there.
    "tools": [] if BACKEND == "chat" else [{"type": "file_search"}],
}

# The brief's assistant with a function tool (function calling over Kafka).
WEATHER_ASSISTANT = {
    "name": "Weather Assistant",
    "model": "gpt-4o",
    "instructions": "You are a weather bot. Use the provided functions to answer questions.",
    "tools": [{"type": "function", "function": {
        "name": "get_weather",
        "description": "Retrieve weather information for a location.",
        "parameters": {"type": "object",
                       "properties": {"location": {"type": "string", "description": "City name"}},
                       "required": ["location"]}}}],
}
# AW_TOOL_SECRET of the test workers (the key that signs correlation ids); never logged.
TOOL_SECRET = "aw-test-tool-secret-3f8a61c0d2e9"
# AW_TOOL_REQUEST_KEY of the test workers and tool services (signs tool requests and replies).
TOOL_REQUEST_KEY = "aw-test-tool-request-key-5b0c97e1d4a2"


def deadline_after(timeout_s: float) -> float:
    return time.monotonic() + timeout_s


def wait_until(pred: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.05):
    """Poll pred until it returns something truthy (returned) or the deadline passes."""
    end = deadline_after(timeout_s)
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


# ---- the local stack (deploy/local/lib.sh) ---------------------------------------------------

def lib_sh(func: str, *args: str, timeout_s: float = 300) -> str:
    """Run one lib.sh function in bash; returns its stdout.  This process owns the run
    (AW_OWNER_PID), so a later run reaps what an interrupted pytest left behind."""
    env = dict(os.environ, AW_OWNER_PID=str(os.getpid()))
    p = subprocess.run(["bash", "-c", '. "$0" && "$@"', str(LIB_SH), func, *args],
                       env=env, capture_output=True, text=True, timeout=timeout_s)
    if p.returncode != 0:
        raise RuntimeError(f"lib.sh {func} {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout.strip()


class Stack:
    """One run dir of lib.sh and the services started in it."""

    def __init__(self):
        self.run_dir = Path(lib_sh("aw_run_dir_new"))

    def start_kafka(self) -> str:
        lib_sh("aw_kafka_start", str(self.run_dir))
        return (self.run_dir / "kafka" / "bootstrap").read_text().strip()

    def start_redis(self, name: str = "redis", aof: bool = False) -> int:
        lib_sh("aw_redis_start", str(self.run_dir), *(["--aof"] if aof else []), name)
        return int((self.run_dir / name / "port").read_text().strip())

    def redis_auth(self) -> tuple[str, str]:
        """(user, password) of every redis-server of the run: each requires AUTH as that ACL
        user (lib.sh aw_redis_auth); the password file is RUN/redis.password."""
        return ((self.run_dir / "redis.user").read_text().strip(),
                (self.run_dir / "redis.password").read_text())

    def kafka_sasl(self) -> tuple[str, str, str]:
        """(bootstrap, user, password) of the broker's SASL_PLAINTEXT listener (SCRAM-SHA-256);
        the suite's own clients use the PLAINTEXT one."""
        d = self.run_dir / "kafka"
        return ((d / "sasl_bootstrap").read_text().strip(), (d / "sasl.user").read_text().strip(),
                (d / "sasl.password").read_text())

    def start_simulator(self, binary: Path, *args: str) -> "Simulator":
        lib_sh("aw_simulator_start", str(self.run_dir), str(binary), *args)
        port = int((self.run_dir / "simulator" / "port").read_text().strip())
        return Simulator(port, self.run_dir / "simulator" / "record.jsonl")

    def stop(self, name: str) -> None:
        lib_sh("aw_stop", str(self.run_dir), name)

    def stop_all(self) -> None:
        lib_sh("aw_stop_all", str(self.run_dir))


# ---- Kafka -----------------------------------------------------------------------------------

def _load_admin_module():
    spec = importlib.util.spec_from_file_location(
        "aw_kafka_admin", ROOT / "deploy" / "local" / "kafka" / "admin.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_admin_mod = _load_admin_module()


def create_topics(bootstrap: str, topics: dict[str, int], timeout_s: float = 30) -> None:
    """Create topics ({name: partitions}) and wait until every partition has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    by_n: dict[int, list[str]] = {}
    for t, n in topics.items():
        by_n.setdefault(n, []).append(t)
    for n, names in by_n.items():
        if not _admin_mod.create(admin, names, n, timeout_s):
            raise RuntimeError(f"cannot create topics {names}")


def delete_topics(bootstrap: str, topics: list[str], timeout_s: float = 30) -> None:
    """Delete topics and wait for the broker to confirm."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for t, f in admin.delete_topics(topics, operation_timeout=timeout_s).items():
        try:
            f.result()
        except KafkaException as e:
            if e.args[0].name() != "UNKNOWN_TOPIC_OR_PART":
                raise


def to_json_view(v: Any) -> Any:
    """The contract's JSON view of a decoded msgpack value (bin -> base64, ext -> object)."""
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(bytes(v)).decode()
    if isinstance(v, msgpack.ExtType):
        return {"ext": v.code, "data": base64.b64encode(v.data).decode()}
    if isinstance(v, dict):
        return {(k if isinstance(k, str) else json.dumps(to_json_view(k))): to_json_view(x)
                for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [to_json_view(x) for x in v]
    return v


@dataclass
class Msg:
    """One consumed Kafka message, decoded."""
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    obj: Any = None           # msgpack-decoded value
    error: str | None = None  # why it could not be decoded
    headers: list[tuple[str, bytes]] | None = None  # the Kafka headers, as received

    @property
    def key_str(self) -> str | None:
        return None if self.key is None else self.key.decode("utf-8", "replace")

    def __getitem__(self, k):
        return self.obj[k]

    def get(self, k, default=None):
        return self.obj.get(k, default) if isinstance(self.obj, dict) else default

    def json(self) -> Any:
        return to_json_view(self.obj)


def decode_msgpack(value: bytes) -> Any:
    # strict: exactly one value, str must be valid UTF-8 (the worker promises that).
    return msgpack.unpackb(value, raw=False, strict_map_key=False)


class Collector:
    """Reads a topic from the beginning of every partition (no consumer group, so nothing to
    join or rebalance) and keeps every message it saw, in arrival order."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.messages: list[Msg] = []
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"collector-{uuid.uuid4().hex}",
                           "enable.auto.commit": False, "auto.offset.reset": "earliest",
                           "enable.partition.eof": False,
                           # Responses commit in Kafka transactions: only committed answers count.
                           "isolation.level": "read_committed"})
        md = self.c.list_topics(topic, timeout=10)
        tm = md.topics.get(topic)
        if tm is None or tm.error is not None:
            raise RuntimeError(f"topic {topic} not found: {tm and tm.error}")
        self.c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in tm.partitions])

    def poll_once(self, timeout_s: float = 0.1) -> int:
        n = 0
        for m in self.c.consume(num_messages=500, timeout=timeout_s):
            if m.error():
                raise KafkaException(m.error())
            msg = Msg(m.topic(), m.partition(), m.offset(), m.key(), m.value() or b"",
                      headers=m.headers())
            try:
                msg.obj = decode_msgpack(msg.value)
            except Exception as e:  # noqa: BLE001 -- any decoding failure is reported as such
                msg.error = f"{type(e).__name__}: {e}"
            self.messages.append(msg)
            n += 1
        return n

    def wait_for(self, pred: Callable[[list[Msg]], Any], timeout_s: float = 30, what: str = "messages"):
        """Consume until pred(all messages so far) is truthy; returns its value."""
        end = deadline_after(timeout_s)
        while True:
            v = pred(self.messages)
            if v:
                return v
            if time.monotonic() >= end:
                raise AssertionError(
                    f"timed out after {timeout_s}s on {self.topic} waiting for {what}; "
                    f"got {len(self.messages)} message(s), last: "
                    f"{[m.obj if m.error is None else m.error for m in self.messages[-3:]]}")
            self.poll_once(min(0.2, max(0.01, end - time.monotonic())))

    def wait_count(self, n: int, timeout_s: float = 30, pred: Callable[[Msg], bool] = lambda m: True):
        return self.wait_for(lambda ms: [m for m in ms if pred(m)] if
                             sum(1 for m in ms if pred(m)) >= n else None,
                             timeout_s, f"{n} matching message(s)")

    def quiet_for(self, seconds: float) -> list[Msg]:
        """Consume for `seconds` more and return what arrived (to check that nothing more
        comes, e.g. no duplicate answer).  A bounded observation window, not a sync sleep."""
        start = len(self.messages)
        end = deadline_after(seconds)
        while time.monotonic() < end:
            self.poll_once(min(0.2, max(0.01, end - time.monotonic())))
        return self.messages[start:]

    def close(self):
        self.c.close()


class Producer_:
    """Produces raw values and reports where each landed."""

    def __init__(self, bootstrap: str):
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                           "enable.idempotence": True})

    def close(self) -> None:
        self.p.flush(10)
        self.p = None  # destroyed here, before the broker goes away

    def send(self, topic: str, value: bytes | None, key: bytes | str | None,
             partition: int | None = None, headers: list[tuple[str, bytes]] | None = None) -> tuple[int, int]:
        """Produce one message synchronously (to `partition` if given, else by key; with Kafka
        `headers` if given); returns (partition, offset)."""
        out: dict[str, Any] = {}

        def cb(err, m):
            out["err"], out["m"] = err, m

        if isinstance(key, str):
            key = key.encode()
        kw = {} if partition is None else {"partition": partition}
        if headers:
            kw["headers"] = headers
        self.p.produce(topic, value=value, key=key, on_delivery=cb, **kw)
        self.p.flush(30)
        if out.get("err") is not None or "m" not in out:
            raise RuntimeError(f"produce to {topic} failed: {out.get('err')}")
        return out["m"].partition(), out["m"].offset()

    def send_many(self, topic: str, items: Iterable[tuple[bytes | str | None, bytes]]) -> None:
        """Produce many (key, value) pairs, in order per key (idempotent producer), and wait."""
        errors: list[Any] = []

        def cb(err, _m):
            if err is not None:
                errors.append(err)

        for key, value in items:
            if isinstance(key, str):
                key = key.encode()
            while True:
                try:
                    self.p.produce(topic, value=value, key=key, on_delivery=cb)
                    break
                except BufferError:
                    self.p.poll(0.1)
        left = self.p.flush(60)
        if errors or left:
            raise RuntimeError(f"produce to {topic} failed: {errors[:3]} ({left} undelivered)")


# ---- the contract ----------------------------------------------------------------------------

def new_event_id() -> str:
    return "evt-" + uuid.uuid4().hex


def make_request(conversation_id: str, text: str | list, *, event_id: str | None = None,
                 assistant: str = SUPPORT_BOT["name"], stream: bool = False, **extra) -> dict:
    """A request map (contract v1, schemas/request.schema.json)."""
    r = {"v": 1, "event_id": event_id or new_event_id(), "conversation_id": conversation_id,
         "assistant": assistant, "content": text}
    if stream:
        r["stream"] = True
    r.update(extra)
    return r


def make_kind_request(conversation_id: str, kind: str, *, event_id: str | None = None, **fields) -> dict:
    """A conversation request of `kind` (history, append, reset, delete, cancel: README,
    "Conversation requests"), with the kind's `fields` (limit, after, order, messages, ...)."""
    r = {"v": 1, "event_id": event_id or new_event_id(), "conversation_id": conversation_id, "kind": kind}
    r.update(fields)
    return r


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


_validators: dict[str, Any] = {}


def _validator(kind: str):
    if kind not in _validators:
        from jsonschema import FormatChecker
        from jsonschema.validators import validator_for
        path = SCHEMAS_DIR / f"{kind}.schema.json"
        schema = json.loads(path.read_text())
        cls = validator_for(schema)
        cls.check_schema(schema)
        _validators[kind] = cls(schema, format_checker=FormatChecker())
    return _validators[kind]


def schema_errors(kind: str, view: Any) -> list[str]:
    """Every violation of schemas/<kind>.schema.json by a JSON view, as readable lines."""
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in _validator(kind).iter_errors(view)]


def assert_valid(kind: str, msg: Msg | Any) -> None:
    """Assert a consumed message (or a JSON view) decodes and conforms to its schema."""
    if isinstance(msg, Msg):
        assert msg.error is None, f"{kind} at {msg.topic}/{msg.partition}@{msg.offset} is not msgpack: {msg.error}"
        view = msg.json()
    else:
        view = msg
    errs = schema_errors(kind, view)
    assert not errs, f"{kind} does not match schemas/{kind}.schema.json: {errs[:5]}\n{json.dumps(view)[:2000]}"


def answer_text(resp: Msg | dict) -> str:
    """The answer of a response: its messages' text values concatenated in order."""
    obj = resp.obj if isinstance(resp, Msg) else resp
    out = []
    for m in obj.get("messages") or []:
        for part in m.get("content") or []:
            if part.get("type") == "text":
                out.append(part["text"]["value"])
    return "".join(out)


def event_deltas(msgs: Iterable[Msg], event_id: str) -> list[Msg]:
    """The deltas of event_id a reader keeps: those of the highest `attempt` seen (absent = 0),
    in seq order (schemas/README.md, delta)."""
    mine = [m for m in msgs if m.get("event_id") == event_id]
    if not mine:
        return []
    top = max(m.get("attempt", 0) for m in mine)
    return sorted((m for m in mine if m.get("attempt", 0) == top), key=lambda m: m["seq"])


def error_code(msg: Msg | dict) -> str | None:
    obj = msg.obj if isinstance(msg, Msg) else msg
    err = obj.get("error") if isinstance(obj, dict) else None
    return err.get("code") if isinstance(err, dict) else None


# ---- the simulator ---------------------------------------------------------------------------

class Simulator:
    """Client of aw-simulator: the API (with a bearer key) and its admin endpoints."""

    def __init__(self, port: int, record_path: Path):
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.base_url = f"{self.base}/v1"
        self.record_path = record_path

    def _call(self, method: str, path: str, body: Any = None, timeout_s: float = 10) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {API_KEY}")
        req.add_header("OpenAI-Beta", "assistants=v2")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as r:
                raw = r.read()
                return r.status, (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode("utf-8", "replace")

    def api(self, method: str, path: str, body: Any = None) -> Any:
        status, obj = self._call(method, "/v1" + path, body)
        assert status == 200, f"{method} /v1{path} -> {status}: {obj}"
        return obj

    def faults(self, **settings) -> Any:
        status, obj = self._call("POST", "/admin/faults", settings)
        assert status == 200, f"POST /admin/faults {settings} -> {status}: {obj}"
        return obj

    def rate_limit(self, **settings) -> dict:
        """Merge rate-limit settings (requests_per_minute, tokens_per_minute, burst_ms: per API
        key and endpoint class, see the simulator's README) and return them."""
        status, obj = self._call("POST", "/admin/rate_limit", settings)
        assert status == 200, f"POST /admin/rate_limit {settings} -> {status}: {obj}"
        return obj

    def settings(self) -> dict:
        """The current fault/pacing settings (GET /admin/faults)."""
        status, obj = self._call("GET", "/admin/faults")
        assert status == 200, f"GET /admin/faults -> {status}: {obj}"
        return obj

    def usage(self, model: str | None = None) -> dict:
        """The tokens the simulator charged (GET /admin/usage, tests/simulator/sim_usage.h), all or
        one model's: {"total": {requests, input_tokens, ...}, "models": {...}, "charges": [...]}."""
        q = "?" + urllib.parse.urlencode({"model": model}) if model else ""
        status, obj = self._call("GET", "/admin/usage" + q)
        assert status == 200, f"GET /admin/usage{q} -> {status}: {obj}"
        return obj

    def stats(self) -> dict:
        status, obj = self._call("GET", "/admin/stats")
        assert status == 200, f"GET /admin/stats -> {status}: {obj}"
        return obj

    @staticmethod
    def count_status(stats: dict, status: int, route_prefix: str = "") -> int:
        """Requests answered with `status` on API routes (names start with the method, e.g.
        "POST /v1/threads/{thread_id}/runs"), optionally only routes starting with route_prefix."""
        total = 0
        for route, by_status in (stats.get("requests") or {}).items():
            if "/admin/" in route or not route.startswith(route_prefix):
                continue
            total += int(by_status.get(str(status), 0))
        return total

    def thread_messages(self, thread_id: str) -> list[dict]:
        """Every message of a thread, oldest first (follows pagination)."""
        out, after = [], None
        while True:
            q = "order=asc&limit=100" + (f"&after={after}" if after else "")
            page = self.api("GET", f"/threads/{thread_id}/messages?{q}")
            out.extend(page.get("data") or [])
            if not page.get("has_more") or not page.get("data"):
                return out
            after = page["data"][-1]["id"]

    @staticmethod
    def message_text(m: dict) -> str:
        return "".join(p["text"]["value"] for p in m.get("content") or [] if p.get("type") == "text")

    def conversation_items(self, conv_id: str) -> list[dict]:
        """Every item of a Responses API conversation, oldest first (follows pagination)."""
        out, after = [], None
        while True:
            q = "order=asc&limit=100" + (f"&after={after}" if after else "")
            page = self.api("GET", f"/conversations/{conv_id}/items?{q}")
            out.extend(page.get("data") or [])
            if not page.get("has_more"):
                return out
            after = page["last_id"]

    @staticmethod
    def item_text(item: dict) -> str:
        parts = item.get("content") or []
        if isinstance(parts, str):
            return parts
        return "".join(p.get("text") or "" for p in parts if isinstance(p, dict))

    def user_texts(self, handle: str) -> list[str]:
        """The user messages of a backend conversation (an Assistants thread or a Responses
        conversation), oldest first."""
        if is_history(handle):
            return [self.item_text(m) for t in history_turns(handle) for m in t["m"] if m.get("role") == "user"]
        if is_conversation(handle):
            return [self.item_text(i) for i in self.conversation_items(handle)
                    if i.get("type") == "message" and i.get("role") == "user"]
        return [self.message_text(m) for m in self.thread_messages(handle) if m.get("role") == "user"]

    def chat_requests(self, after: int = -1) -> list[dict]:
        """The Chat Completions requests the simulator kept (GET /admin/chat/requests), oldest
        first: {index, status, body}, those with an index above `after`."""
        status, obj = self._call("GET", "/admin/chat/requests" + (f"?after={after}" if after >= 0 else ""))
        assert status == 200, f"GET /admin/chat/requests -> {status}: {obj}"
        return obj

    def admin_responses(self, **filters: str) -> list[dict]:
        """The simulator's Responses API responses, oldest first, as GET /admin/responses lists
        them ({id, status, conversation, event_id, previous_response_id, background}); filters:
        conversation, event_id, status."""
        q = urllib.parse.urlencode({k: v for k, v in filters.items() if v is not None})
        status, obj = self._call("GET", "/admin/responses" + (f"?{q}" if q else ""))
        assert status == 200, f"GET /admin/responses?{q} -> {status}: {obj}"
        return obj["data"]

    def turns_of(self, handle: str, event_id: str | None = None) -> list[str]:
        """The backend turns started on a conversation handle, oldest first (optionally only
        those tagged with event_id): the runs of a thread, or the responses of a conversation
        (one per round of function calls plus the answer's); on chat, the stored turns (their
        last completion's id: one per answered event)."""
        if is_history(handle):
            return [t.get("i") for t in history_turns(handle) if event_id is None or t.get("e") == event_id]
        if is_conversation(handle):
            return [r["id"] for r in self.admin_responses(conversation=handle, event_id=event_id)]
        runs = self.api("GET", f"/threads/{handle}/runs?order=asc&limit=100")["data"]
        # The worker tags a run with its event id (run metadata aw_tag).
        return [r["id"] for r in runs
                if event_id is None or (r.get("metadata") or {}).get("aw_tag") == event_id]

    def tool_outputs(self, handle: str, turn: str | None = None) -> list[tuple[str, Any]]:
        """(call id, output or None) of every function call as the API got them, all rounds in
        order: the tool steps of the run `turn` of a thread, or the function_call items of a
        conversation each with the output of its function_call_output item; on chat, the
        stored turns' assistant tool_calls each with its tool message's content."""
        if is_history(handle):
            out = []
            for t in history_turns(handle):
                outs = {m.get("tool_call_id"): m.get("content") for m in t["m"] if m.get("role") == "tool"}
                out += [(c["id"], outs.get(c["id"])) for m in t["m"] if m.get("role") == "assistant"
                        for c in m.get("tool_calls") or []]
            return out
        if is_conversation(handle):
            items = self.conversation_items(handle)
            outs = {i["call_id"]: i.get("output") for i in items if i.get("type") == "function_call_output"}
            return [(i["call_id"], outs.get(i["call_id"])) for i in items if i.get("type") == "function_call"]
        steps = self.api("GET", f"/threads/{handle}/runs/{turn}/steps?order=asc&limit=100")["data"]
        return [(c["id"], c["function"]["output"]) for s in steps if s["type"] == "tool_calls"
                for c in s["step_details"]["tool_calls"]]


# ---- workers ---------------------------------------------------------------------------------

@dataclass
class WorkerSpec:
    """What a test's worker talks to; unique per test so tests never see each other."""
    brokers: str
    redis_port: int
    api_base_url: str
    topics: dict[str, str]
    group_id: str
    redis_prefix: str
    assistants: list[dict] = field(default_factory=lambda: [dict(SUPPORT_BOT)])
    max_in_flight: int | None = None
    api: dict = field(default_factory=dict)  # the config file's "api" section (retries, timeouts)
    worker: dict = field(default_factory=dict)  # the config file's "worker" section (allow_assistant_ids, ...)
    kafka_properties: dict[str, str] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    functions: dict | None = None      # the config file's "functions" (per-function routes)
    backend: str = field(default_factory=lambda: BACKEND)  # api.backend
    tool_secret: str | None = None     # AW_TOOL_SECRET; TOOL_SECRET when an assistant has a function tool
    tool_request_key: str | None = None  # AW_TOOL_REQUEST_KEY; TOOL_REQUEST_KEY with a function tool
    tool_request_key_previous: str | None = None  # AW_TOOL_REQUEST_KEY_PREVIOUS (rotation)
    redis_username: str | None = None  # AW_REDIS_USERNAME (the session's Redis requires AUTH)
    redis_password: str | None = None  # AW_REDIS_PASSWORD

    def has_function_tools(self) -> bool:
        return any(t.get("type") == "function" for a in self.assistants for t in a.get("tools") or [])


class Worker:
    """One `assistant-worker run` process with its stderr (JSON lines) captured and parsed."""

    def __init__(self, spec: WorkerSpec, workdir: Path, name: str = "worker",
                 binary: Path = WORKER_BIN):
        self.spec, self.name, self.binary = spec, name, binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self.config_path = workdir / f"{name}.config.json"
        self.lines: list[str] = []
        self.events: list[dict | None] = []
        self.cond = threading.Condition()
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._reader: threading.Thread | None = None

    def _config(self) -> dict:
        s = self.spec
        props = {"auto.offset.reset": "earliest"}
        props.update(s.kafka_properties)
        cfg = {"kafka": {"properties": props}, "assistants": s.assistants}
        worker = dict(s.worker)
        if s.max_in_flight is not None:
            worker["max_in_flight"] = s.max_in_flight
        if worker:
            cfg["worker"] = worker
        cfg["api"] = dict(s.api)
        cfg["api"].setdefault("backend", s.backend)
        if s.functions is not None:
            cfg["functions"] = s.functions
        return cfg

    def _env(self) -> dict:
        s = self.spec
        env = {k: v for k, v in os.environ.items() if not k.startswith("AW_") and k != "OPENAI_API_KEY"}
        env.update({
            "AW_KAFKA_BROKERS": s.brokers, "AW_KAFKA_GROUP_ID": s.group_id,
            "AW_TOPIC_REQUESTS": s.topics["requests"], "AW_TOPIC_RESPONSES": s.topics["responses"],
            "AW_TOPIC_DELTAS": s.topics["deltas"], "AW_TOPIC_DLQ": s.topics["dlq"],
            "AW_REDIS_HOST": "127.0.0.1", "AW_REDIS_PORT": str(s.redis_port),
            "AW_REDIS_PREFIX": s.redis_prefix, "AW_API_BASE_URL": s.api_base_url,
            "AW_API_KEY": API_KEY, "AW_LOG_LEVEL": os.environ.get("AW_TEST_LOG_LEVEL", "info"),
            # Leaks are failures; a UBSan finding stops the process so it cannot go unnoticed.
            "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1",
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
        })
        if "tool_requests" in s.topics:
            env["AW_TOPIC_TOOL_REQUESTS"] = s.topics["tool_requests"]
        if "tool_replies" in s.topics:
            env["AW_TOPIC_TOOL_REPLIES"] = s.topics["tool_replies"]
        if "usage" in s.topics:
            env["AW_TOPIC_USAGE"] = s.topics["usage"]
        secret = s.tool_secret or (TOOL_SECRET if s.has_function_tools() else None)
        if secret:
            env["AW_TOOL_SECRET"] = secret
        request_key = s.tool_request_key or (TOOL_REQUEST_KEY if s.has_function_tools() else None)
        if request_key:
            env["AW_TOOL_REQUEST_KEY"] = request_key
        if s.tool_request_key_previous:
            env["AW_TOOL_REQUEST_KEY_PREVIOUS"] = s.tool_request_key_previous
        if s.redis_username:
            env["AW_REDIS_USERNAME"] = s.redis_username
        if s.redis_password:
            env["AW_REDIS_PASSWORD"] = s.redis_password
        env.update(s.extra_env)
        return env

    def start(self) -> "Worker":
        assert self.binary.exists(), f"{self.binary} is not built"
        self.config_path.write_text(json.dumps(self._config(), indent=2))
        self.lines, self.events, self.returncode = [], [], None
        self.proc = subprocess.Popen([str(self.binary), "run", "--config", str(self.config_path)],
                                     env=self._env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen) -> None:
        with open(self.log_path, "ab") as log:
            for raw in proc.stdout:
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                try:
                    ev = json.loads(line)
                    ev = ev if isinstance(ev, dict) else None
                except ValueError:
                    ev = None
                with self.cond:
                    self.lines.append(line)
                    self.events.append(ev)
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def count(self, msg: str) -> int:
        with self.cond:
            return sum(1 for e in self.events if e and e.get("msg") == msg)

    def wait_log(self, pred: Callable[[dict], bool], timeout_s: float = 60, what: str = "a log line",
                 start: int = 0) -> int:
        """Wait for a parsed log line satisfying pred (from line index `start`); returns its
        index.  Fails at once if the process exits first."""
        end = deadline_after(timeout_s)
        i = start
        with self.cond:
            while True:
                while i < len(self.events):
                    e = self.events[i]
                    if e is not None and pred(e):
                        return i
                    i += 1
                if self.proc.poll() is not None and (self._reader is None or not self._reader.is_alive()):
                    raise AssertionError(f"{self.name} exited ({self.proc.returncode}) before {what}:\n"
                                         + self.tail())
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{self.name}: no {what} within {timeout_s}s:\n" + self.tail())
                self.cond.wait(min(left, 0.5))

    def wait_msg(self, msg: str, timeout_s: float = 60, start: int = 0) -> int:
        return self.wait_log(lambda e: e.get("msg") == msg, timeout_s, f'"msg":"{msg}"', start)

    def wait_ready(self, timeout_s: float = 60) -> "Worker":
        # Either order: the assignment may come before or after the loop says it is ready.
        self.wait_msg("worker ready", timeout_s)
        self.wait_msg("partitions assigned", timeout_s)
        return self

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def logged(self, msg: str, **fields) -> list[dict]:
        """The parsed log lines with this "msg" whose fields include `fields`."""
        with self.cond:
            return [e for e in self.events if e and e.get("msg") == msg
                    and all(e.get(k) == v for k, v in fields.items())]

    def assignment_log(self, topic: str) -> list[tuple[str, str, set[int] | None]]:
        """(ts, "assigned"|"revoked", partitions or None when the line lists none) of this
        worker's "partitions assigned"/"partitions revoked" lines about `topic` (kv "topic",
        "partitions": "0,3,7")."""
        out = []
        with self.cond:
            for e in self.events:
                if not e or e.get("msg") not in ("partitions assigned", "partitions revoked"):
                    continue
                if e.get("topic") != topic:
                    continue
                raw = e.get("partitions")
                parts = None
                if isinstance(raw, str):
                    parts = {int(x) for x in raw.split(",") if x.strip()}
                out.append((str(e.get("ts", "")), e["msg"].split()[1], parts))
        return out

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM and wait for the exit; returns the exit code (SIGKILL after the deadline)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.lines.append(f"<harness: killed after ignoring SIGTERM for {timeout_s}s>")
        if self._reader:
            self._reader.join(10)
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self) -> None:
        """SIGKILL (a crash at an arbitrary instant); the exit is then expected to be -9."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        self.proc.kill()
        self.proc.wait(10)
        if self._reader:
            self._reader.join(10)
        self.returncode = self.proc.returncode
        self.killed = True

    def sanitizer_report(self) -> str | None:
        text = "\n".join(self.lines)
        for m in SANITIZER_MARKERS:
            k = text.find(m)
            if k >= 0:
                return text[max(0, k - 200):k + 4000]
        return None

    def assert_clean_exit(self) -> None:
        rep = self.sanitizer_report()
        assert rep is None, f"{self.name}: sanitizer report (log {self.log_path}):\n{rep}"
        if getattr(self, "killed", False):
            return
        assert self.returncode == 0, (f"{self.name} exited with {self.returncode} after SIGTERM "
                                      f"(log {self.log_path}):\n{self.tail()}")


def partition_owners(workers: Iterable["Worker"], topic: str) -> dict[int, "Worker"]:
    """Which worker holds each partition of `topic`, from their assignment log lines (in
    timestamp order: an assignment moves a partition, a revocation that lists it frees it)."""
    evs = sorted(((ts, kind, parts, i, w) for i, w in enumerate(workers)
                  for ts, kind, parts in w.assignment_log(topic)), key=lambda x: (x[0], x[3]))
    owner: dict[int, Worker] = {}
    for _ts, kind, parts, _i, w in evs:
        for p in parts or ():
            if kind == "assigned":
                owner[p] = w
            elif owner.get(p) is w:
                del owner[p]
    return owner


# ---- function calling: a tool service played by the test ---------------------------------------

TRACEPARENT_RE = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")


def make_tool_reply(correlation_id: str, output: str | None = None, error: dict | None = None,
                    **extra) -> dict:
    """A tool reply map (schemas/tool-reply.schema.json): {v, correlation_id, output | error}."""
    r: dict[str, Any] = {"v": 1, "correlation_id": correlation_id}
    if output is not None:
        r["output"] = output
    if error is not None:
        r["error"] = error
    r.update(extra)
    return r


class FakeToolService:
    """The test as the service owning a function: reads every tool request published to a
    topic (from the beginning, no consumer group, headers kept) and produces replies.  Like a
    real service it trusts only signed requests (toolsign.py, the documented scheme): every
    request wait_requests returns has been verified with `keys` (AW_TOOL_REQUEST_KEY and, while
    rotating, the previous one), and reply() signs with keys[0] unless told not to."""

    def __init__(self, bootstrap: str, requests_topic: str, producer: "Producer_",
                 keys: list[str] | None = None):
        self.requests = Collector(bootstrap, requests_topic)
        self.producer = producer
        self.keys = list(keys or [TOOL_REQUEST_KEY])

    def verify(self, req: Msg) -> str | None:
        """None when req is a genuine, fresh tool request, else why not (tool_sign.h's reasons)."""
        return toolsign.verify_request(self.keys, req.obj, req.headers, int(time.time() * 1000))

    def requests_for(self, conversation_id: str) -> list[Msg]:
        self.requests.poll_once(0.01)
        return [m for m in self.requests.messages if m.get("conversation_id") == conversation_id]

    def wait_requests(self, conversation_id: str, n: int, timeout_s: float = 30,
                      after: int = 0) -> list[Msg]:
        """The conversation's tool requests number `after`+1 .. `after`+n (in topic order within
        its partition), once that many were published."""
        def got(ms):
            mine = [m for m in ms if m.get("conversation_id") == conversation_id]
            return mine[after:after + n] if len(mine) >= after + n else None
        got_reqs = self.requests.wait_for(got, timeout_s,
                                          f"{after + n} tool request(s) of {conversation_id}")
        for m in got_reqs:
            why = self.verify(m)
            assert why is None, f"a tool request of {conversation_id} does not verify ({why}): {m.obj}"
        return got_reqs

    def send_reply(self, req: Msg | dict | None, value: bytes, key: str | bytes | None = None,
                   topic: str | None = None, headers: list[tuple[str, bytes]] | None = None) -> bytes:
        """Produce raw bytes as a reply to req (its reply_topic, keyed by its conversation), with
        `headers` (none: unsigned); returns the bytes."""
        topic = topic or req["reply_topic"]
        key = key if key is not None else (req["conversation_id"] if req is not None else None)
        self.producer.send(topic, value, key, headers=headers)
        return value

    def reply(self, req: Msg | dict, output: str | None = None, error: dict | None = None,
              correlation_id: str | None = None, sign: bool = True, keys: list[str] | None = None,
              topic: str | None = None, **extra) -> bytes:
        """Answer a tool request (by default with its own correlation id, signed with this
        service's key, or with `keys`; sign=False: unsigned); returns the bytes produced."""
        body = make_tool_reply(correlation_id or req["correlation_id"], output, error, **extra)
        headers = None
        if sign:
            try:
                headers = toolsign.sign_reply((keys or self.keys)[:1], body)
            except (KeyError, TypeError, AttributeError):
                headers = None  # not a reply the scheme can sign (a test of bad input): unsigned
        return self.send_reply(req, pack(body), topic=topic, headers=headers)

    def close(self) -> None:
        self.requests.close()


def safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:100]

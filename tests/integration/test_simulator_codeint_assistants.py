"""The simulator's Assistants API with images, attachments and the code interpreter (issue 10),
driven over HTTP with no worker: image parts (image_url, image_file) are stored as given and the
answer acknowledges them; a message naming a file that does not exist is refused and nothing is
created; a file_search attachment goes into the thread's own vector store and the run quotes it
(the steps listed with include[] carry the result's text); a run with the code_interpreter tool
asked for a chart makes a code_interpreter step and an image_file part naming a valid PNG of purpose
assistants_output, asked for a summary a CSV linked in the text with a file_path annotation, both
also streamed as the API streams them; and the record of all of it conforms to the spec.  Needs only
the session's simulator (tests/simulator/README.md, "Images, attachments and the code interpreter")."""
from __future__ import annotations

import json
import struct
import urllib.request
import zlib

import pytest
import requests

from awtest import API_KEY, SHARED_DIR, wait_until
from openapi_check import SpecChecker

SPEC = SHARED_DIR / "openai-openapi" / "openapi.validatable.yaml"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MARKER = "【0:0†source】"
SALES_CSV = "month,sales\njan,3\nfeb,7\nmar,4\napr,6\n"
POLICY_MD = """# Refund policy

Refunds are paid back to the original card within ten business days of the return.
Gift cards cannot be refunded.
"""
REFUND_QUOTE = "Refunds are paid back to the original card within ten business days of the return."
INCLUDE = "include[]=step_details.tool_calls[*].file_search.results[*].content"
SANDBOX = "sandbox:/mnt/data/summary.csv"


# ---- helpers ---------------------------------------------------------------------------------

def call(simulator, method: str, path: str, body=None) -> tuple[int, dict]:
    """Any status, the JSON answer (for the refusals)."""
    return simulator._call(method, "/v1" + path, body)


def sse(simulator, path: str, body: dict) -> list[tuple[str, object]]:
    """POST body with stream: true; the SSE answer as [(event, data)], data parsed or "[DONE]"."""
    req = urllib.request.Request(simulator.base_url + path, data=json.dumps(dict(body, stream=True)).encode(),
                                 method="POST")
    req.add_header("Authorization", f"Bearer {API_KEY}")
    req.add_header("OpenAI-Beta", "assistants=v2")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        text = r.read().decode()
    events = []
    for block in text.split("\n\n"):
        if block.strip():
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((fields["event"], fields["data"] if fields["data"] == "[DONE]" else json.loads(fields["data"])))
    return events


def upload(simulator, name: str, data: bytes, purpose: str) -> str:
    r = requests.post(simulator.base_url + "/files", headers=AUTH, data={"purpose": purpose},
                      files={"file": (name, data)}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def content(simulator, file_id: str) -> bytes:
    r = requests.get(f"{simulator.base_url}/files/{file_id}/content", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return r.content


def png_size(data: bytes) -> tuple[int, int]:
    """Walk the PNG's chunks, checking each CRC and that the image data inflates to the size
    the header says (RGB, 8 bits, a filter byte per row); (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, idat = 8, [], b""
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.append(kind)
        idat += body if kind == b"IDAT" else b""
        if kind == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
        pos += 12 + n
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and (depth, color) == (8, 2)
    assert len(zlib.decompress(idat)) == h * (1 + 3 * w)
    return w, h


def assistant(simulator, ids: set, tools=None, **kw) -> dict:
    a = simulator.api("POST", "/assistants", dict({"model": "gpt-4o", "tools": tools or []}, **kw))
    ids.add(a["id"])
    return a


def run_to_end(simulator, ids: set, thread_id: str, body: dict) -> dict:
    run = simulator.api("POST", f"/threads/{thread_id}/runs", body)
    ids.add(run["id"])
    wait_until(lambda: simulator.api("GET", f"/threads/{thread_id}/runs/{run['id']}")["status"] == "completed", 20,
               "the run completed")
    return run


def answer(simulator, thread_id: str, run_id: str) -> dict:
    (msg,) = simulator.api("GET", f"/threads/{thread_id}/messages?run_id={run_id}")["data"]
    return msg


def steps(simulator, thread_id: str, run_id: str, query: str = "") -> list[dict]:
    return simulator.api("GET", f"/threads/{thread_id}/runs/{run_id}/steps?order=asc{query}")["data"]


@pytest.fixture(scope="module")
def ids():
    """The ids of what the tests create, for the conformance check."""
    return set()


@pytest.fixture(scope="module")
def sales(simulator, ids):
    fid = upload(simulator, "sales.csv", SALES_CSV.encode(), "assistants")
    ids.add(fid)
    return fid


def new_thread(simulator, ids: set, **body) -> str:
    t = simulator.api("POST", "/threads", body)["id"]
    ids.add(t)
    return t


# ---- images ----------------------------------------------------------------------------------

def test_image_parts_are_stored_as_given_and_the_answer_acknowledges_them(simulator, ids):
    img = upload(simulator, "cat.png", b"\x89PNG\r\n\x1a\n not really", "vision")
    parts = [{"type": "text", "text": "What is in these pictures?"},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat.png", "detail": "low"}},
             {"type": "image_file", "image_file": {"file_id": img}}]
    t = new_thread(simulator, ids, messages=[{"role": "user", "content": parts}])
    (msg,) = simulator.api("GET", f"/threads/{t}/messages")["data"]
    assert msg["content"] == [{"type": "text", "text": {"value": "What is in these pictures?", "annotations": []}},
                              parts[1], parts[2]]
    run = run_to_end(simulator, ids, t, {"assistant_id": assistant(simulator, ids)["id"]})
    text = answer(simulator, t, run["id"])["content"][0]["text"]["value"]
    assert text.startswith("I see 2 images. ")
    # A message without images is answered without the acknowledgement.
    simulator.api("POST", f"/threads/{t}/messages", {"role": "user", "content": "And now?"})
    run = run_to_end(simulator, ids, t, {"assistant_id": assistant(simulator, ids)["id"]})
    assert not answer(simulator, t, run["id"])["content"][0]["text"]["value"].startswith("I see")


def test_a_message_naming_an_unknown_file_is_refused_and_nothing_is_created(simulator, ids, sales):
    a = assistant(simulator, ids)
    t = new_thread(simulator, ids)
    missing = "file-doesnotexist000000000000"
    cases = [
        (f"/threads/{t}/messages", {"role": "user", "content": [
            {"type": "text", "text": "look"}, {"type": "image_file", "image_file": {"file_id": missing}}]},
         "content[1].image_file.file_id"),
        (f"/threads/{t}/messages", {"role": "user", "content": "see attached", "attachments": [
            {"file_id": missing, "tools": [{"type": "file_search"}]}]}, "attachments[0].file_id"),
        (f"/threads/{t}/runs", {"assistant_id": a["id"], "additional_messages": [
            {"role": "user", "content": "hi", "attachments": [
                {"file_id": sales, "tools": [{"type": "code_interpreter"}]},
                {"file_id": missing, "tools": [{"type": "code_interpreter"}]}]}]},
         "additional_messages[0].attachments[1].file_id"),
        ("/threads", {"messages": [{"role": "user", "content": [
            {"type": "image_file", "image_file": {"file_id": missing}}]}]}, "messages[0].content[0].image_file.file_id"),
        ("/threads/runs", {"assistant_id": a["id"], "thread": {"messages": [{"role": "user", "content": [
            {"type": "image_file", "image_file": {"file_id": missing}}]}]}},
         "thread.messages[0].content[0].image_file.file_id"),
    ]
    before = simulator.stats()["runs"]
    for path, body, param in cases:
        status, err = call(simulator, "POST", path, body)
        assert status == 400, (path, err)
        assert err["error"]["param"] == param and missing in err["error"]["message"], err
    assert simulator.api("GET", f"/threads/{t}/messages")["data"] == []
    assert simulator.api("GET", f"/threads/{t}/runs")["data"] == []
    assert sum(simulator.stats()["runs"].values()) == sum(before.values())
    # A bad detail and a malformed attachment are refused too.
    status, err = call(simulator, "POST", f"/threads/{t}/messages", {"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "https://example.com/x.png", "detail": "huge"}}]})
    assert status == 400 and err["error"]["param"] == "content[0].image_url.detail", err
    status, err = call(simulator, "POST", f"/threads/{t}/messages", {"role": "user", "content": "x", "attachments": [
        {"file_id": sales, "tools": [{"type": "browser"}]}]})
    assert status == 400 and err["error"]["param"] == "attachments[0]", err


# ---- file_search attachments -------------------------------------------------------------------

def test_a_file_search_attachment_is_searched_through_the_threads_own_vector_store(simulator, ids):
    doc = upload(simulator, "refunds.md", POLICY_MD.encode(), "assistants")
    ids.add(doc)
    a = assistant(simulator, ids, tools=[{"type": "file_search"}])  # the tool, no store of its own
    t = new_thread(simulator, ids)
    # The run is created at once, before the store processed the file: it waits for it.
    run = run_to_end(simulator, ids, t, {"assistant_id": a["id"], "additional_messages": [
        {"role": "user", "content": "How are refunds paid?",
         "attachments": [{"file_id": doc, "tools": [{"type": "file_search"}]}]}]})
    (vs,) = simulator.api("GET", f"/threads/{t}")["tool_resources"]["file_search"]["vector_store_ids"]
    files = simulator.api("GET", f"/vector_stores/{vs}/files")["data"]
    assert [(f["id"], f["status"]) for f in files] == [(doc, "completed")]
    msg = answer(simulator, t, run["id"])
    assert msg["content"][0]["text"]["value"] == REFUND_QUOTE + MARKER
    assert msg["content"][0]["text"]["annotations"][0]["file_citation"] == {"file_id": doc}
    # The steps: the search's results carry their text only when include[] asks for it.
    plain = steps(simulator, t, run["id"])
    assert [s["type"] for s in plain] == ["tool_calls", "message_creation"]
    (res,) = plain[0]["step_details"]["tool_calls"][0]["file_search"]["results"]
    assert res["file_id"] == doc and res["file_name"] == "refunds.md" and "content" not in res
    full = steps(simulator, t, run["id"], "&" + INCLUDE)
    (res,) = full[0]["step_details"]["tool_calls"][0]["file_search"]["results"]
    assert res["content"][0]["type"] == "text" and REFUND_QUOTE in " ".join(res["content"][0]["text"].split())
    one = simulator.api("GET", f"/threads/{t}/runs/{run['id']}/steps/{plain[0]['id']}?{INCLUDE}")
    assert one["step_details"]["tool_calls"][0]["file_search"]["results"][0]["content"] == res["content"]
    status, err = call(simulator, "GET", f"/threads/{t}/runs/{run['id']}/steps?include[]=step_details.nothing")
    assert status == 400 and err["error"]["param"] == "include[]", err


# ---- code interpreter --------------------------------------------------------------------------

def test_a_chart_run_makes_a_code_interpreter_step_and_an_image_file_with_a_valid_png(simulator, ids, sales):
    a = assistant(simulator, ids, tools=[{"type": "code_interpreter"}])
    t = new_thread(simulator, ids)
    run = run_to_end(simulator, ids, t, {"assistant_id": a["id"], "additional_messages": [
        {"role": "user", "content": "Plot a chart of the monthly sales",
         "attachments": [{"file_id": sales, "tools": [{"type": "code_interpreter"}]}]}]})
    tool_step, msg_step = steps(simulator, t, run["id"])
    assert (tool_step["type"], tool_step["status"], msg_step["type"]) == ("tool_calls", "completed", "message_creation")
    (ci,) = tool_step["step_details"]["tool_calls"]
    assert ci["type"] == "code_interpreter" and ci["id"].startswith("call_")
    assert "chart.png" in ci["code_interpreter"]["input"]
    logs, image = ci["code_interpreter"]["outputs"]
    assert logs["type"] == "logs" and "4 values" in logs["logs"]
    msg = answer(simulator, t, run["id"])
    img_part, text_part = msg["content"]
    assert img_part == {"type": "image_file", "image_file": {"file_id": image["image"]["file_id"]}}
    assert text_part["text"]["value"] == "Here is the chart of 4 values: chart.png"
    fid = image["image"]["file_id"]
    ids.add(fid)
    f = simulator.api("GET", f"/files/{fid}")
    data = content(simulator, fid)
    assert (f["purpose"], f["filename"], f["bytes"]) == ("assistants_output", "chart.png", len(data))
    assert png_size(data) == (160, 100)
    # The same data make the same chart.
    t2 = new_thread(simulator, ids)
    run2 = run_to_end(simulator, ids, t2, {"assistant_id": a["id"], "additional_messages": [
        {"role": "user", "content": "Plot a chart of the monthly sales",
         "attachments": [{"file_id": sales, "tools": [{"type": "code_interpreter"}]}]}]})
    fid2 = answer(simulator, t2, run2["id"])["content"][0]["image_file"]["file_id"]
    assert fid2 != fid and content(simulator, fid2) == data


def test_a_summary_run_links_the_csv_with_a_file_path_annotation(simulator, ids, sales):
    # The tool comes from the run's tools override; the assistant has none.
    a = assistant(simulator, ids)
    t = new_thread(simulator, ids, messages=[{"role": "user", "content": "Here are the sales.", "attachments": [
        {"file_id": sales, "tools": [{"type": "code_interpreter"}]}]}])
    run = run_to_end(simulator, ids, t, {"assistant_id": a["id"], "tools": [{"type": "code_interpreter"}],
                                         "additional_messages": [{"role": "user", "content": "Make a csv summary"}]})
    (part,) = answer(simulator, t, run["id"])["content"]
    value = part["text"]["value"]
    (ann,) = part["text"]["annotations"]
    assert ann["type"] == "file_path" and ann["text"] == SANDBOX
    assert value[ann["start_index"]:ann["end_index"]] == SANDBOX and value.endswith(SANDBOX)
    ids.add(ann["file_path"]["file_id"])
    csv = content(simulator, ann["file_path"]["file_id"]).decode()
    assert csv.startswith("n,value\n") and csv.rstrip().endswith("total,20")
    assert simulator.api("GET", f"/files/{ann['file_path']['file_id']}")["purpose"] == "assistants_output"
    # Without the tool, or with tool_choice none, the same request gets the scripted answer.
    for extra in ({}, {"tools": [{"type": "code_interpreter"}], "tool_choice": "none"}):
        run = run_to_end(simulator, ids, t, dict({"assistant_id": a["id"], "additional_messages": [
            {"role": "user", "content": "Make a csv summary"}]}, **extra))
        assert [s["type"] for s in steps(simulator, t, run["id"])] == ["message_creation"]
        assert answer(simulator, t, run["id"])["content"][0]["text"]["annotations"] == []


def test_streamed_code_interpreter_runs_carry_the_step_the_image_part_and_the_annotation(simulator, ids, sales):
    a = assistant(simulator, ids, tools=[{"type": "code_interpreter"}])
    events = sse(simulator, "/threads/runs", {"assistant_id": a["id"], "thread": {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Draw a chart of this"},
                                     {"type": "image_url", "image_url": {"url": "https://example.com/s.png"}}],
         "attachments": [{"file_id": sales, "tools": [{"type": "code_interpreter"}]}]}]}})
    n = [e for e, _ in events]
    ids.add(events[0][1]["id"])
    assert n[:10] == ["thread.created", "thread.run.created", "thread.run.queued", "thread.run.in_progress",
                      "thread.run.step.created", "thread.run.step.in_progress", "thread.run.step.delta",
                      "thread.run.step.delta", "thread.run.step.completed", "thread.run.step.created"]
    code_delta = events[6][1]["delta"]["step_details"]["tool_calls"][0]
    assert code_delta["index"] == 0 and code_delta["type"] == "code_interpreter"
    assert "chart.png" in code_delta["code_interpreter"]["input"] and code_delta["code_interpreter"]["outputs"] == []
    outs = events[7][1]["delta"]["step_details"]["tool_calls"][0]["code_interpreter"]["outputs"]
    assert [(o["index"], o["type"]) for o in outs] == [(0, "logs"), (1, "image")]
    fid = outs[1]["image"]["file_id"]
    ids.add(fid)
    deltas = [d["delta"]["content"][0] for e, d in events if e == "thread.message.delta"]
    assert deltas[0] == {"index": 0, "type": "image_file", "image_file": {"file_id": fid}}
    assert all(d["index"] == 1 and d["type"] == "text" for d in deltas[1:])
    assert "".join(d["text"]["value"] for d in deltas[1:]) == "I see 1 image. Here is the chart of 4 values: chart.png"
    (done,) = [d for e, d in events if e == "thread.message.completed"]
    assert [p["type"] for p in done["content"]] == ["image_file", "text"]
    assert n[-3:] == ["thread.run.step.completed", "thread.run.completed", "done"]

    # A CSV: the delta that completes the sandbox link carries the file_path annotation.
    events = sse(simulator, "/threads/runs", {"assistant_id": a["id"], "thread": {"messages": [
        {"role": "user", "content": "A csv table of 2, 9 and 4 please"}]}})
    ids.add(events[0][1]["id"])
    deltas = [d["delta"]["content"][0] for e, d in events if e == "thread.message.delta"]
    assert all(d["index"] == 0 for d in deltas)
    (ann,) = [a for d in deltas for a in d["text"]["annotations"]]
    text = "".join(d["text"]["value"] for d in deltas)
    assert ann["index"] == 0 and ann["type"] == "file_path" and text[ann["start_index"]:ann["end_index"]] == SANDBOX
    ids.add(ann["file_path"]["file_id"])
    assert content(simulator, ann["file_path"]["file_id"]).decode().rstrip().endswith("total,15")


# ---- conformance -------------------------------------------------------------------------------

def test_recorded_codeint_assistants_traffic_conforms_to_the_spec(simulator, ids, sales):
    if not SPEC.exists():
        pytest.fail(f"{SPEC} not found (set AW_SHARED_DIR to the shared dir)")
    # One of each exchange, so the test stands alone.
    img = upload(simulator, "dot.png", b"\x89PNG\r\n\x1a\n", "vision")
    doc = upload(simulator, "refunds.md", POLICY_MD.encode(), "assistants")
    ids.update({img, doc})
    a = assistant(simulator, ids, tools=[{"type": "code_interpreter"}, {"type": "file_search"}])
    events = sse(simulator, "/threads/runs", {"assistant_id": a["id"], "thread": {"messages": [
        {"role": "user", "content": [{"type": "text", "text": "Plot a chart"},
                                     {"type": "image_file", "image_file": {"file_id": img, "detail": "high"}}],
         "attachments": [{"file_id": sales, "tools": [{"type": "code_interpreter"}]}]}]}})
    t1, r1 = events[0][1]["id"], events[1][1]["id"]
    events = sse(simulator, "/threads/runs", {"assistant_id": a["id"], "thread": {"messages": [
        {"role": "user", "content": "How are refunds paid?",
         "attachments": [{"file_id": doc, "tools": [{"type": "file_search"}]}]}]}})
    t2, r2 = events[0][1]["id"], events[1][1]["id"]
    t3 = new_thread(simulator, ids)
    r3 = run_to_end(simulator, ids, t3, {"assistant_id": a["id"], "additional_messages": [
        {"role": "user", "content": "Summarise 1 2 3 as a csv"}]})["id"]
    ids.update({t1, t2, r1, r2})
    for t, r in ((t1, r1), (t2, r2), (t3, r3)):
        simulator.api("GET", f"/threads/{t}/runs/{r}/steps?{INCLUDE}")
        simulator.api("GET", f"/threads/{t}/messages")
    call(simulator, "POST", f"/threads/{t3}/messages", {"role": "user", "content": [
        {"type": "image_file", "image_file": {"file_id": "file-nope"}}]})

    def mine():
        with open(simulator.record_path, encoding="utf-8") as f:
            return [ln for ln in f if any(i in ln for i in ids)]

    # A stream's line is written when it ends, just after the client read its last event.
    lines = wait_until(lambda: (lambda ls: ls if sum(1 for ln in ls if "stream_events" in ln and
                                                     (t1 in ln or t2 in ln)) >= 2 else None)(mine()),
                       10, "the streams in the record")
    checker = SpecChecker(SPEC)
    n, problems = checker.check_lines(lines)
    assert n >= 10 and not problems, f"{len(problems)} mismatch(es); first ones:\n" + "\n".join(problems[:25])
    recs = [json.loads(ln) for ln in lines]
    seen = {e["event"] for r in recs for e in (r.get("stream_events") or [])}
    assert {"thread.run.step.delta", "thread.message.delta", "thread.run.step.completed"} <= seen

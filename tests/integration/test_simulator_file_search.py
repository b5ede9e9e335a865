"""The simulator's file search in its answers (issue 10), driven over HTTP with no worker: over a
vector store of two Markdown documents, a question asked with a file_search tool (Responses) or on
an assistant whose tool_resources name the store (Assistants) is answered with the right document's
sentence and a citation of its file (with its filename on Responses); the streams carry the
file_search_call events and the annotation (Responses) or the tool_calls step and the annotated
delta (Assistants); the record of all of it conforms to the spec; and a question without a store, a
message that is not a question or one the documents do not answer is answered as before.  Needs
only the session's simulator (tests/simulator/README.md, "File search")."""
from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import requests

from awtest import API_KEY, SHARED_DIR, wait_until
from openapi_check import SpecChecker

SPEC = SHARED_DIR / "openai-openapi" / "openapi.validatable.yaml"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
MARKER = "【0:0†source】"

PASSWORD_MD = """# Account help

## Resetting your password

To reset your password, open the sign-in page and click **Forgot password**. We send a reset
link that is valid for 30 minutes.

## Two-factor authentication

Turn on two-factor authentication under Settings, Security.
"""
BILLING_MD = """# Billing

Invoices are issued on the first day of every month and sent to the billing contact.
You can change the credit card on file under Settings, Billing, Payment method.
"""
PASSWORD_QUOTE = "To reset your password, open the sign-in page and click Forgot password."
INVOICE_QUOTE = "Invoices are issued on the first day of every month and sent to the billing contact."


# ---- helpers ---------------------------------------------------------------------------------

def raw(simulator, method: str, path: str, body=None) -> tuple[int, str, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(simulator.base + "/v1" + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {API_KEY}")
    req.add_header("OpenAI-Beta", "assistants=v2")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.headers["Content-Type"], r.read()


def sse(simulator, path: str, body: dict) -> list[tuple[str, object]]:
    """POST body with stream: true; the SSE answer as [(event, data)], data parsed or "[DONE]"."""
    status, ctype, text = raw(simulator, "POST", path, dict(body, stream=True))
    assert status == 200 and ctype.startswith("text/event-stream")
    events = []
    for block in text.decode().split("\n\n"):
        if block.strip():
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((fields["event"], fields["data"] if fields["data"] == "[DONE]" else json.loads(fields["data"])))
    return events


def names(events) -> list[str]:
    return [e for e, _ in events]


def output_text(resp: dict) -> str:
    return "".join(p["text"] for it in resp["output"] if it["type"] == "message" for p in it["content"])


@pytest.fixture(scope="module")
def kb(simulator, tmp_path_factory):
    """A vector store over the two documents, processed; and the ids of what the tests create,
    for the conformance check."""
    d: Path = tmp_path_factory.mktemp("kb")
    files = {}
    for name, text in (("account-help.md", PASSWORD_MD), ("billing.md", BILLING_MD)):
        (d / name).write_text(text, encoding="utf-8")
        with open(d / name, "rb") as f:
            r = requests.post(simulator.base_url + "/files", headers=AUTH, data={"purpose": "assistants"},
                              files={"file": (name, f)}, timeout=30)
        assert r.status_code == 200, r.text
        files[name] = r.json()["id"]
    vs = simulator.api("POST", "/vector_stores", {"name": "support", "file_ids": list(files.values())})
    wait_until(lambda: simulator.api("GET", f"/vector_stores/{vs['id']}")["file_counts"]["completed"] == 2, 30,
               "the vector store processed")
    return {"vs": vs["id"], "password": files["account-help.md"], "billing": files["billing.md"], "ids": set()}


def fs_tool(kb, **kw) -> dict:
    return dict({"type": "file_search", "vector_store_ids": [kb["vs"]]}, **kw)


def respond(simulator, kb, **body) -> dict:
    resp = simulator.api("POST", "/responses", dict({"model": "gpt-4o"}, **body))
    kb["ids"].add(resp["id"])
    return resp


def file_search_assistant(simulator, kb, resources=True) -> dict:
    body = {"model": "gpt-4o", "instructions": "Answer from the documents.", "tools": [{"type": "file_search"}]}
    if resources:
        body["tool_resources"] = {"file_search": {"vector_store_ids": [kb["vs"]]}}
    a = simulator.api("POST", "/assistants", body)
    kb["ids"].add(a["id"])
    return a


def thread_messages(simulator, thread_id: str) -> list[dict]:
    return simulator.api("GET", f"/threads/{thread_id}/messages?order=asc")["data"]


# ---- Responses --------------------------------------------------------------------------------

def test_response_with_file_search_quotes_the_right_document_and_cites_its_file_and_name(simulator, kb):
    resp = respond(simulator, kb, input="How do I reset my password?", tools=[fs_tool(kb)],
                   include=["file_search_call.results"])
    assert resp["status"] == "completed"
    call, msg = resp["output"]
    assert (call["type"], call["status"], call["queries"]) == ("file_search_call", "completed",
                                                               ["How do I reset my password?"])
    assert call["id"].startswith("fs_")
    assert call["results"][0]["file_id"] == kb["password"] and call["results"][0]["filename"] == "account-help.md"
    assert PASSWORD_QUOTE.replace("**", "") in PASSWORD_MD.replace("**", "").replace("\n", " ")
    part = msg["content"][0]
    assert part["text"] == PASSWORD_QUOTE
    assert part["annotations"] == [{"type": "file_citation", "file_id": kb["password"], "index": len(PASSWORD_QUOTE),
                                    "filename": "account-help.md"}]
    assert resp["usage"]["output_tokens"] == len(PASSWORD_QUOTE.split())

    # Another question, the other document; without include[] the results are left out.
    resp = respond(simulator, kb, input="When are invoices issued?", tools=[fs_tool(kb)])
    call, msg = resp["output"]
    assert call["results"] is None
    assert output_text(resp) == INVOICE_QUOTE
    assert [(a["file_id"], a["filename"]) for a in msg["content"][0]["annotations"]] == [(kb["billing"], "billing.md")]


def test_streamed_response_carries_the_file_search_events_and_the_annotation(simulator, kb):
    events = sse(simulator, "/responses", {"model": "gpt-4o", "input": "How do I reset my password?",
                                           "tools": [fs_tool(kb)], "store": True})
    data = [d for _, d in events]
    kb["ids"].add(data[0]["response"]["id"])
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    n = names(events)
    assert n[:7] == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.file_search_call.in_progress", "response.file_search_call.searching",
                     "response.file_search_call.completed", "response.output_item.done"]
    fs_id = data[2]["item"]["id"]
    assert all(d["item_id"] == fs_id and d["output_index"] == 0 for d in data[3:6])
    assert data[6]["item"]["status"] == "completed" and data[6]["item"]["type"] == "file_search_call"
    assert n[7:9] == ["response.output_item.added", "response.content_part.added"] and data[7]["output_index"] == 1
    i = n.index("response.output_text.annotation.added")
    assert n[i + 1] == "response.output_text.done" and i > max(k for k, x in enumerate(n) if x.endswith(".delta"))
    assert data[i]["annotation"] == {"type": "file_citation", "file_id": kb["password"],
                                     "index": len(PASSWORD_QUOTE), "filename": "account-help.md"}
    assert (data[i]["output_index"], data[i]["annotation_index"]) == (1, 0)
    deltas = "".join(d["delta"] for e, d in events if e == "response.output_text.delta")
    assert deltas == PASSWORD_QUOTE
    final = data[-1]["response"]
    assert n[-1] == "response.completed" and [o["type"] for o in final["output"]] == ["file_search_call", "message"]


def test_response_without_a_store_or_with_a_non_question_is_answered_as_before(simulator, kb):
    plain = respond(simulator, kb, input="How do I reset my password?")
    assert [o["type"] for o in plain["output"]] == ["message"]
    assert plain["output"][0]["content"][0]["annotations"] == []
    assert output_text(plain).startswith("To reset your password") and output_text(plain) != PASSWORD_QUOTE
    # A message that is not a question, and a question the documents do not answer: no search.
    for text in ("Thanks, the password reset worked.", "What is the airspeed velocity of a swallow?"):
        resp = respond(simulator, kb, input=text, tools=[fs_tool(kb)])
        assert [o["type"] for o in resp["output"]] == ["message"], text
        assert resp["output"][0]["content"][0]["annotations"] == []
    # A store with nothing in it.
    empty = simulator.api("POST", "/vector_stores", {"name": "empty"})
    resp = respond(simulator, kb, input="How do I reset my password?",
                   tools=[{"type": "file_search", "vector_store_ids": [empty["id"]]}])
    assert [o["type"] for o in resp["output"]] == ["message"]


# ---- Assistants --------------------------------------------------------------------------------

def test_streamed_run_makes_a_file_search_step_and_cites_the_file_in_the_message(simulator, kb):
    a = file_search_assistant(simulator, kb)
    events = sse(simulator, "/threads/runs", {"assistant_id": a["id"], "thread": {
        "messages": [{"role": "user", "content": "How do I reset my password?"}]}})
    n = names(events)
    thread_id = events[0][1]["id"]
    kb["ids"].add(thread_id)
    assert n[:10] == ["thread.created", "thread.run.created", "thread.run.queued", "thread.run.in_progress",
                      "thread.run.step.created", "thread.run.step.in_progress", "thread.run.step.delta",
                      "thread.run.step.completed", "thread.run.step.created", "thread.run.step.in_progress"]
    assert n[-3:] == ["thread.run.step.completed", "thread.run.completed", "done"]
    tool_step = events[7][1]
    assert tool_step["type"] == "tool_calls" and tool_step["status"] == "completed"
    (call,) = tool_step["step_details"]["tool_calls"]
    assert call["type"] == "file_search" and call["file_search"]["results"][0]["file_id"] == kb["password"]
    assert call["file_search"]["results"][0]["file_name"] == "account-help.md"
    assert events[6][1]["delta"]["step_details"]["tool_calls"][0]["type"] == "file_search"
    deltas = [d for e, d in events if e == "thread.message.delta"]
    text = "".join(d["delta"]["content"][0]["text"]["value"] for d in deltas)
    assert text == PASSWORD_QUOTE + MARKER
    annotated = [d["delta"]["content"][0]["text"]["annotations"] for d in deltas
                 if d["delta"]["content"][0]["text"]["annotations"]]
    start = len(PASSWORD_QUOTE)
    assert annotated == [[{"index": 0, "type": "file_citation", "text": MARKER,
                           "file_citation": {"file_id": kb["password"]},
                           "start_index": start, "end_index": start + len(MARKER)}]]
    (msg,) = [m for m in thread_messages(simulator, thread_id) if m["role"] == "assistant"]
    assert msg["content"][0]["text"] == {"value": PASSWORD_QUOTE + MARKER, "annotations": [{
        "type": "file_citation", "text": MARKER, "file_citation": {"file_id": kb["password"]},
        "start_index": start, "end_index": start + len(MARKER)}]}
    assert text[start:start + len(MARKER)] == MARKER  # the indices count characters
    steps = simulator.api("GET", f"/threads/{thread_id}/runs/{events[1][1]['id']}/steps?order=asc")["data"]
    assert [s["type"] for s in steps] == ["tool_calls", "message_creation"]


def test_polled_run_on_a_thread_with_the_store_cites_the_other_document(simulator, kb):
    # The store on the thread's tool_resources, the assistant with the tool only.
    a = file_search_assistant(simulator, kb, resources=False)
    th = simulator.api("POST", "/threads", {"tool_resources": {"file_search": {"vector_store_ids": [kb["vs"]]}}})
    kb["ids"].add(th["id"])
    run = simulator.api("POST", f"/threads/{th['id']}/runs", {"assistant_id": a["id"], "additional_messages": [
        {"role": "user", "content": "When are invoices issued?"}]})
    wait_until(lambda: simulator.api("GET", f"/threads/{th['id']}/runs/{run['id']}")["status"] == "completed", 20,
               "the run completed")
    (msg,) = [m for m in thread_messages(simulator, th["id"]) if m["role"] == "assistant"]
    assert msg["content"][0]["text"]["value"] == INVOICE_QUOTE + MARKER
    (ann,) = msg["content"][0]["text"]["annotations"]
    assert ann["file_citation"] == {"file_id": kb["billing"]} and ann["start_index"] == len(INVOICE_QUOTE)


def test_run_without_the_tool_or_without_a_store_is_answered_as_before(simulator, kb):
    for a in (simulator.api("POST", "/assistants", {"model": "gpt-4o", "tool_resources": {
                  "file_search": {"vector_store_ids": [kb["vs"]]}}}),  # stores, but no file_search tool
              file_search_assistant(simulator, kb, resources=False)):  # the tool, but no store
        kb["ids"].add(a["id"])
        events = sse(simulator, "/threads/runs", {"assistant_id": a["id"], "thread": {
            "messages": [{"role": "user", "content": "How do I reset my password?"}]}})
        kb["ids"].add(events[0][1]["id"])
        steps = [d["type"] for e, d in events if e == "thread.run.step.created"]
        assert steps == ["message_creation"]
        (msg,) = [d for e, d in events if e == "thread.message.completed"]
        assert msg["content"][0]["text"]["annotations"] == []
        assert msg["content"][0]["text"]["value"].startswith("To reset your password")
        assert MARKER not in msg["content"][0]["text"]["value"]


# ---- conformance -------------------------------------------------------------------------------

def test_recorded_file_search_traffic_conforms_to_the_spec(simulator, kb):
    if not SPEC.exists():
        pytest.fail(f"{SPEC} not found (set AW_SHARED_DIR to the shared dir)")
    # One of each exchange, so the test stands alone.
    respond(simulator, kb, input="How do I reset my password?", tools=[fs_tool(kb)],
            include=["file_search_call.results"])
    events = sse(simulator, "/responses", {"model": "gpt-4o", "input": "When are invoices issued?",
                                           "tools": [fs_tool(kb)]})
    resp_id = events[0][1]["response"]["id"]
    kb["ids"].add(resp_id)
    a = file_search_assistant(simulator, kb)
    events = sse(simulator, "/threads/runs", {"assistant_id": a["id"], "thread": {
        "messages": [{"role": "user", "content": "How do I reset my password?"}]}})
    thread_id, run_id = events[0][1]["id"], events[1][1]["id"]
    kb["ids"].add(thread_id)
    simulator.api("GET", f"/threads/{thread_id}/runs/{run_id}/steps")
    simulator.api("GET", f"/threads/{thread_id}/messages")

    def mine():
        with open(simulator.record_path, encoding="utf-8") as f:
            return [ln for ln in f if any(i in ln for i in kb["ids"])]

    # A stream's line is written when it ends, just after the client read its last event.
    lines = wait_until(lambda: (lambda ls: ls if any(resp_id in ln and "stream_events" in ln and
                                                     "file_search_call.completed" in ln for ln in ls) and
                                any(thread_id in ln and "thread.run.step.delta" in ln for ln in ls) else None)(mine()),
                       10, "the streams in the record")
    checker = SpecChecker(SPEC)
    n, problems = checker.check_lines(lines)
    assert n >= 6 and not problems, f"{len(problems)} mismatch(es); first ones:\n" + "\n".join(problems[:25])
    recs = [json.loads(ln) for ln in lines]
    seen = {e["event"] for r in recs for e in (r.get("stream_events") or [])}
    assert {"response.file_search_call.searching", "response.output_text.annotation.added",
            "thread.run.step.delta", "thread.message.delta"} <= seen

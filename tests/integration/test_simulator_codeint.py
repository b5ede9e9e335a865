"""The simulator's code interpreter, containers and media inputs on the Responses API (issue 10),
driven over HTTP with no worker: a chart or data request with a code_interpreter tool makes
chart.png (a valid PNG bar chart of the data) or summary.csv in a container, both downloadable from
/v1/containers, the same bytes for the same data; the response has a code_interpreter_call item
(outputs only with include[] "code_interpreter_call.outputs") and a message citing the file with a
container_file_citation; the stream carries the code interpreter events before the message;
input_image parts are acknowledged, input_file parts are the turn's document (a question quotes
and cites it, a chart reads its numbers); an unknown file or container is refused with a 404; and
the record of all of it conforms to the spec.  Needs only the session's simulator
(tests/simulator/README.md, "Code interpreter and containers")."""
from __future__ import annotations

import io
import json
import struct
import urllib.request
import zlib

import pytest
import requests
from PIL import Image

from awtest import API_KEY, SHARED_DIR, wait_until
from openapi_check import SpecChecker

SPEC = SHARED_DIR / "openai-openapi" / "openapi.validatable.yaml"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SALES_CSV = "month,sales\nJan,10\nFeb,20\nMar,15\nApr,40\n"
POLICY_MD = """# Travel policy

Economy class is required for flights shorter than six hours.
Hotel costs are reimbursed up to 150 euros per night in every city.
"""
CI_EVENTS = ["response.output_item.added", "response.code_interpreter_call.in_progress"]
CI_EVENTS_END = ["response.code_interpreter_call_code.done", "response.code_interpreter_call.interpreting",
                 "response.code_interpreter_call.completed", "response.output_item.done"]


# ---- helpers ---------------------------------------------------------------------------------

def call(simulator, method: str, path: str, body=None) -> tuple[int, object]:
    return simulator._call(method, "/v1" + path, body)


def sse(simulator, body: dict) -> list[tuple[str, dict]]:
    req = urllib.request.Request(simulator.base_url + "/responses", data=json.dumps(dict(body, stream=True)).encode(),
                                 method="POST", headers=dict(AUTH, **{"Content-Type": "application/json"}))
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        text = r.read().decode()
    events = []
    for block in text.split("\n\n"):
        if block.strip():
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def upload(simulator, name: str, data: bytes, purpose: str = "assistants") -> str:
    r = requests.post(simulator.base_url + "/files", headers=AUTH, data={"purpose": purpose},
                      files={"file": (name, data)}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["id"]


def content(simulator, container_id: str, file_id: str) -> bytes:
    r = requests.get(f"{simulator.base_url}/containers/{container_id}/files/{file_id}/content", headers=AUTH,
                     timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/octet-stream", r.text
    return r.content


def ci_tool(*file_ids: str) -> dict:
    return {"type": "code_interpreter", "container": {"type": "auto", "file_ids": list(file_ids)}}


def user(*parts: dict) -> list[dict]:
    return [{"role": "user", "content": list(parts)}]


def text_part(t: str) -> dict:
    return {"type": "input_text", "text": t}


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The chunks of a PNG, each CRC checked with zlib (independently of Pillow)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i = [], 8
    while i < len(data):
        (n,) = struct.unpack(">I", data[i:i + 4])
        kind, body = data[i + 4:i + 8], data[i + 8:i + 8 + n]
        (crc,) = struct.unpack(">I", data[i + 8 + n:i + 12 + n])
        assert crc == zlib.crc32(kind + body), kind
        chunks.append((kind, body))
        i += 12 + n
    return chunks


@pytest.fixture(scope="module")
def ids():
    """What the tests create, for the conformance check."""
    return set()


def respond(simulator, ids, **body) -> dict:
    resp = simulator.api("POST", "/responses", dict({"model": "gpt-4o"}, **body))
    ids.add(resp["id"])
    return resp


def message_part(resp: dict) -> dict:
    (msg,) = [o for o in resp["output"] if o["type"] == "message"]
    return msg["content"][0]


# ---- code interpreter --------------------------------------------------------------------------

def test_chart_request_makes_a_png_bar_chart_in_the_container_cited_in_the_message(simulator, ids):
    sales = upload(simulator, "sales.csv", SALES_CSV.encode())
    resp = respond(simulator, ids, input="Make a bar chart of the sales, please.", tools=[ci_tool(sales)],
                   include=["code_interpreter_call.outputs"])
    assert resp["status"] == "completed"
    ci, msg = resp["output"]
    assert (ci["type"], ci["status"]) == ("code_interpreter_call", "completed") and ci["id"].startswith("ci_")
    assert "chart.png" in ci["code"]
    assert ci["outputs"] == [{"type": "logs", "logs": "read 4 values, wrote chart.png\n"},
                             {"type": "image", "url": "sandbox:/mnt/data/chart.png"}]
    part = msg["content"][0]
    assert part["text"] == "Here is the chart of 4 values: chart.png"
    (an,) = part["annotations"]
    assert an["type"] == "container_file_citation" and an["container_id"] == ci["container_id"]
    assert an["filename"] == "chart.png" and part["text"][an["start_index"]:an["end_index"]] == "chart.png"

    # The container holds the CSV copied in and the chart, both downloadable.
    cntr = simulator.api("GET", f"/containers/{ci['container_id']}")
    assert (cntr["object"], cntr["status"]) == ("container", "running")
    files = simulator.api("GET", f"/containers/{ci['container_id']}/files?order=asc")["data"]
    assert [(f["path"], f["source"]) for f in files] == [("/mnt/data/sales.csv", "user"),
                                                       ("/mnt/data/chart.png", "assistant")]
    assert content(simulator, ci["container_id"], files[0]["id"]) == SALES_CSV.encode()
    meta = simulator.api("GET", f"/containers/{ci['container_id']}/files/{an['file_id']}")
    png = content(simulator, ci["container_id"], an["file_id"])
    assert meta["bytes"] == len(png) and meta["container_id"] == ci["container_id"]

    # A valid PNG: chunks and CRCs by hand, then decoded: 160x100 RGB, white ground, four bars whose
    # heights follow the data (10, 20, 15, 40).
    assert [k for k, _ in png_chunks(png)] == [b"IHDR", b"IDAT", b"IEND"]
    img = Image.open(io.BytesIO(png))
    img.load()
    assert (img.size, img.mode) == ((160, 100), "RGB") and img.getpixel((0, 0)) == (255, 255, 255)
    blue = (31, 119, 180)
    columns = [x for x in range(160) if img.getpixel((x, 89)) == blue]
    bars = []
    for x in columns:
        if not bars or x != bars[-1][-1] + 1:
            bars.append([])
        bars[-1].append(x)
    heights = [sum(img.getpixel((b[0], y)) == blue for y in range(100)) for b in bars]
    assert heights == [20, 40, 30, 80]  # 80 pixels for the largest value


def test_the_same_data_give_the_same_bytes_and_a_csv_request_makes_the_summary(simulator, ids):
    sales = upload(simulator, "sales.csv", SALES_CSV.encode())
    pngs = []
    for _ in range(2):
        resp = respond(simulator, ids, input="Plot the sales", tools=[ci_tool(sales)])
        an = message_part(resp)["annotations"][0]
        pngs.append((an["container_id"], content(simulator, an["container_id"], an["file_id"])))
    assert pngs[0][0] != pngs[1][0] and pngs[0][1] == pngs[1][1]

    resp = respond(simulator, ids, input="Give me a csv table of the sales", tools=[ci_tool(sales)])
    part = message_part(resp)
    assert part["text"] == "Here is the summary of 4 values: summary.csv"
    an = part["annotations"][0]
    assert an["filename"] == "summary.csv"
    assert content(simulator, an["container_id"], an["file_id"]) == b"n,value\n1,10\n2,20\n3,15\n4,40\ntotal,85\n"

    # Numbers from the message when no file is given; a "large" request pads past any inline cap.
    resp = respond(simulator, ids, input="A large csv of 3, 4.5 and 6 please",
                   tools=[{"type": "code_interpreter", "container": {"type": "auto"}}])
    an = message_part(resp)["annotations"][0]
    big = content(simulator, an["container_id"], an["file_id"])
    assert big.startswith(b"n,value\n1,3\n2,4.5\n3,6\ntotal,13.5\n#") and len(big) >= 300 * 1024


def test_outputs_only_with_include_and_an_existing_container_is_reused(simulator, ids):
    status, cntr = call(simulator, "POST", "/containers", {"name": "mine"})
    assert status == 200 and cntr["id"].startswith("cntr_") and cntr["name"] == "mine"
    resp = respond(simulator, ids, input="Draw a graph of 1, 2, 3",
                   tools=[{"type": "code_interpreter", "container": cntr["id"]}])
    ci = resp["output"][0]
    assert ci["outputs"] is None and ci["container_id"] == cntr["id"] and ci["code"]
    assert [f["path"] for f in simulator.api("GET", f"/containers/{cntr['id']}/files")["data"]] == [
        "/mnt/data/chart.png"]
    # The container's files are the next turn's data.
    csv = upload(simulator, "more.csv", b"v\n7\n8\n")
    status, c2 = call(simulator, "POST", "/containers", {"name": "data", "file_ids": [csv]})
    assert status == 200
    resp = respond(simulator, ids, input="chart it", tools=[{"type": "code_interpreter", "container": c2["id"]}],
                   include=["code_interpreter_call.outputs"])
    assert resp["output"][0]["outputs"][0]["logs"] == "read 2 values, wrote chart.png\n"
    # Without a chart or data request, or with tool_choice none: no call.
    for body in ({"input": "How do I reset my password?"}, {"input": "chart it", "tool_choice": "none"}):
        resp = respond(simulator, ids, tools=[ci_tool()], **body)
        assert [o["type"] for o in resp["output"]] == ["message"], body
    # Deleting: the file, then the container.
    f = simulator.api("GET", f"/containers/{cntr['id']}/files")["data"][0]
    assert simulator.api("DELETE", f"/containers/{cntr['id']}/files/{f['id']}")["deleted"] is True
    assert call(simulator, "GET", f"/containers/{cntr['id']}/files/{f['id']}")[0] == 404
    assert simulator.api("DELETE", f"/containers/{cntr['id']}")["deleted"] is True
    assert call(simulator, "GET", f"/containers/{cntr['id']}")[0] == 404


def test_streamed_code_interpreter_events_come_before_the_message_and_its_annotation(simulator, ids):
    events = sse(simulator, {"model": "gpt-4o", "input": "Plot 5, 3 and 8", "tools": [ci_tool()],
                             "include": ["code_interpreter_call.outputs"]})
    names = [e for e, _ in events]
    data = [d for _, d in events]
    ids.add(data[0]["response"]["id"])
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    assert names[:2] == ["response.created", "response.in_progress"]
    assert names[2:4] == CI_EVENTS and data[2]["item"]["status"] == "in_progress"
    k = names.index("response.code_interpreter_call_code.done")
    deltas = names[4:k]
    assert deltas and set(deltas) == {"response.code_interpreter_call_code.delta"}
    assert names[k:k + 4] == CI_EVENTS_END
    ci_id = data[2]["item"]["id"]
    assert all(d["item_id"] == ci_id and d["output_index"] == 0 for d in data[3:k + 3])
    code = "".join(d["delta"] for d in data[4:k])
    assert code == data[k]["code"] == data[k + 3]["item"]["code"]
    done = data[k + 3]["item"]
    assert done["status"] == "completed" and done["outputs"][0]["type"] == "logs"
    assert names[k + 4:k + 6] == ["response.output_item.added", "response.content_part.added"]
    assert data[k + 4]["output_index"] == 1
    i = names.index("response.output_text.annotation.added")
    assert names[i + 1] == "response.output_text.done"
    assert data[i]["annotation"]["type"] == "container_file_citation"
    text = "".join(d["delta"] for e, d in events if e == "response.output_text.delta")
    assert text == "Here is the chart of 3 values: chart.png"
    final = data[-1]["response"]
    assert names[-1] == "response.completed" and [o["type"] for o in final["output"]] == [
        "code_interpreter_call", "message"]


# ---- images and input files --------------------------------------------------------------------

def test_images_are_acknowledged_by_url_and_by_file_id(simulator, ids):
    img = upload(simulator, "photo.png", b"\x89PNG\r\n\x1a\nnot really", purpose="vision")
    plain = respond(simulator, ids, input="What is in these pictures?")
    resp = respond(simulator, ids, input=user(text_part("What is in these pictures?"),
                                              {"type": "input_image", "image_url": "https://example.com/a.png",
                                               "detail": "low"},
                                              {"type": "input_image", "file_id": img, "detail": "auto"}))
    text = message_part(resp)["text"]
    assert text == "I see 2 images. " + message_part(plain)["text"]
    one = respond(simulator, ids, input=user({"type": "input_image", "file_id": img, "detail": "high"},
                                             text_part("And this one?")))
    assert message_part(one)["text"].startswith("I see 1 image. ")
    # The input keeps the parts as the API stores them.
    items = simulator.api("GET", f"/responses/{resp['id']}/input_items")["data"]
    assert items[0]["content"][1] == {"type": "input_image", "detail": "low", "file_id": None,
                                      "image_url": "https://example.com/a.png"}


def test_unknown_file_ids_and_containers_are_refused_before_anything_is_made(simulator, ids):
    before = simulator.api("GET", "/containers?limit=100")["data"]
    cases = [
        (user(text_part("What is it?"), {"type": "input_image", "file_id": "file-nope", "detail": "auto"}), None,
         "input[0].content[1].file_id"),
        (user({"type": "input_file", "file_id": "file-nope"}, text_part("chart it")), [ci_tool()],
         "input[0].content[0].file_id"),
        ("chart it", [ci_tool("file-nope")], "tools[0].container.file_ids"),
        ("chart it", [{"type": "code_interpreter", "container": "cntr_nope"}], "tools[0].container"),
    ]
    for inp, tools, param in cases:
        body = {"model": "gpt-4o", "input": inp}
        if tools:
            body["tools"] = tools
        status, err = call(simulator, "POST", "/responses", body)
        assert status == 404 and err["error"]["param"] == param, (param, err)
        assert err["error"]["type"] == "invalid_request_error" and "nope" in err["error"]["message"]
    status, err = call(simulator, "POST", "/containers", {"name": "x", "file_ids": ["file-nope"]})
    assert status == 404 and err["error"]["param"] == "file_ids"
    assert simulator.api("GET", "/containers?limit=100")["data"] == before
    # An image part names its source.
    status, err = call(simulator, "POST", "/responses", {"model": "gpt-4o", "input": user(
        {"type": "input_image", "detail": "auto"})})
    assert status == 400 and err["error"]["code"] == "missing_required_parameter"


def test_an_input_file_is_the_turns_document_for_questions_and_for_charts(simulator, ids):
    policy = upload(simulator, "policy.md", POLICY_MD.encode())
    resp = respond(simulator, ids, input=user({"type": "input_file", "file_id": policy},
                                              text_part("How much is reimbursed for hotel costs?")))
    assert [o["type"] for o in resp["output"]] == ["message"]  # no tool was called
    part = message_part(resp)
    assert part["text"] == "Hotel costs are reimbursed up to 150 euros per night in every city."
    assert part["annotations"] == [{"type": "file_citation", "file_id": policy, "index": len(part["text"]),
                                    "filename": "policy.md"}]
    sales = upload(simulator, "sales.csv", SALES_CSV.encode())
    resp = respond(simulator, ids, input=user({"type": "input_file", "file_id": sales}, text_part("Chart this")),
                   tools=[ci_tool()], include=["code_interpreter_call.outputs"])
    assert resp["output"][0]["outputs"][0]["logs"] == "read 4 values, wrote chart.png\n"


def test_file_search_results_only_with_include(simulator, ids):
    doc = upload(simulator, "policy.md", POLICY_MD.encode())
    vs = simulator.api("POST", "/vector_stores", {"name": "policy", "file_ids": [doc]})
    wait_until(lambda: simulator.api("GET", f"/vector_stores/{vs['id']}")["file_counts"]["completed"] == 1, 30,
               "the vector store processed")
    tool = {"type": "file_search", "vector_store_ids": [vs["id"]]}
    q = "Which class is required for short flights?"
    without = respond(simulator, ids, input=q, tools=[tool])
    with_ = respond(simulator, ids, input=q, tools=[tool], include=["file_search_call.results"])
    assert without["output"][0]["type"] == "file_search_call" and without["output"][0]["results"] is None
    assert with_["output"][0]["results"][0]["file_id"] == doc


# ---- conformance -------------------------------------------------------------------------------

def test_recorded_code_interpreter_traffic_conforms_to_the_spec(simulator, ids):
    if not SPEC.exists():
        pytest.fail(f"{SPEC} not found (set AW_SHARED_DIR to the shared dir)")
    sales = upload(simulator, "sales.csv", SALES_CSV.encode())
    resp = respond(simulator, ids, input=user(text_part("Chart the sales and look at this"),
                                              {"type": "input_image", "image_url": "https://example.com/a.png",
                                               "detail": "auto"}),
                   tools=[ci_tool(sales)], include=["code_interpreter_call.outputs"])
    cid = resp["output"][0]["container_id"]
    ids.add(cid)
    events = sse(simulator, {"model": "gpt-4o", "input": "A csv table of 1 and 2", "tools": [ci_tool()]})
    stream_id = events[0][1]["response"]["id"]
    ids.add(stream_id)
    simulator.api("GET", f"/containers/{cid}")
    files = simulator.api("GET", f"/containers/{cid}/files")["data"]
    simulator.api("GET", f"/containers/{cid}/files/{files[0]['id']}")
    content(simulator, cid, files[0]["id"])
    simulator.api("GET", "/containers")
    simulator.api("GET", f"/responses/{resp['id']}/input_items")

    def mine():
        with open(simulator.record_path, encoding="utf-8") as f:
            return [ln for ln in f if any(i in ln for i in ids)]

    lines = wait_until(lambda: (lambda ls: ls if any(stream_id in ln and "stream_events" in ln and
                                                     "code_interpreter_call.completed" in ln for ln in ls)
                                else None)(mine()), 10, "the stream in the record")
    n, problems = SpecChecker(SPEC).check_lines(lines)
    assert n >= 6 and not problems, f"{len(problems)} mismatch(es); first ones:\n" + "\n".join(problems[:25])
    seen = {e["event"] for ln in lines for e in (json.loads(ln).get("stream_events") or [])}
    assert {"response.code_interpreter_call_code.delta", "response.code_interpreter_call.interpreting",
            "response.output_text.annotation.added"} <= seen

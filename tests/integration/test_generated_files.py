"""Generated files end to end (issue 10, parts 3-6): a producer attaches a CSV inline for the code
interpreter and asks for a chart; the worker uploads it, the model (the simulator's deterministic
code interpreter, tests/simulator/sim_codeint.h) draws chart.png, and the response on Kafka carries
the file -- inline when it fits worker.inline_file_max_bytes, else by reference for
`assistant-worker file get` -- with the part or annotation that names it (Assistants: an image_file
part; Responses: a container_file_citation annotation).  With include_steps the response lists the
turn's hosted-tool calls (code and its outputs; file search queries and results), without it there
is no `steps` key; file citations keep the cited document's file id (and name, on Responses).
`send --attach ... --image ... --save-files DIR` does the same from the command line.

On the assistants and responses backends; the chat backend has no hosted tools (no code
interpreter, no file search), so there is nothing to generate: skipped there."""
from __future__ import annotations

import base64
import json
import os
import struct
import subprocess
import uuid
import zlib
from pathlib import Path

import pytest

from awtest import API_KEY, BACKEND, SUPPORT_BOT, WORKER_BIN, Worker, answer_text, assert_valid

pytestmark = pytest.mark.skipif(
    BACKEND == "chat", reason="the chat backend has no hosted tools (code_interpreter, file_search): "
                              "no generated files and no steps to check")

ANALYST = {
    "name": "Data Analyst",
    "model": "gpt-4o",
    "instructions": "You are a data analyst. Use the code interpreter to analyse files and draw charts.",
    "tools": [{"type": "code_interpreter"}],
}
SALES = [12400, 11850, 13920, 14310, 15780, 16240, 15110, 14630, 16890, 17420, 18950, 21300]
SALES_CSV = ("month,sales\n" + "".join(f"2026-{i + 1:02d},{v}\n" for i, v in enumerate(SALES))).encode()
CHART_Q = "Make a bar chart of the monthly sales"
PNG_SIG = b"\x89PNG\r\n\x1a\n"


def csv_attachment(data: bytes = SALES_CSV, name: str = "sales.csv") -> dict:
    return {"data": data, "filename": name, "media_type": "text/csv", "tools": ["code_interpreter"]}


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a well-formed PNG: signature, chunks whose CRC-32s hold, IHDR first,
    IDAT that inflates to the size IHDR implies (8-bit RGB, one filter byte a row), IEND last."""
    assert data[:8] == PNG_SIG, data[:16]
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) == crc, f"bad CRC of chunk {kind!r}"
        chunks.append((kind, body))
        pos += 12 + n
    assert pos == len(data) and chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND", [c[0] for c in chunks]
    w, h, depth, color = struct.unpack(">IIBB", chunks[0][1][:10])
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    assert (depth, color) == (8, 2) and len(raw) == h * (1 + 3 * w), (depth, color, len(raw))
    return w, h


def file_get(sim, file_id: str, out: Path, container: str | None = None) -> subprocess.CompletedProcess:
    """`assistant-worker file get ID [--container C] --out PATH`, configured by environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AW_API_BASE_URL": sim.base_url,
           "AW_API_KEY": API_KEY, "AW_LOG_LEVEL": "warn", "AW_API_BACKEND": BACKEND,
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")}
    args = [str(WORKER_BIN), "file", "get", file_id, "--out", str(out)]
    if container:
        args += ["--container", container]
    return subprocess.run(args, env=env, capture_output=True, timeout=60)


def parts_of(resp: dict) -> list[dict]:
    return [p for m in resp.get("messages") or [] for p in m.get("content") or []]


def annotations_of(resp: dict) -> list[dict]:
    return [a for p in parts_of(resp) if p.get("type") == "text" for a in p["text"].get("annotations") or []]


def ask_analyst(ctx, text: str, attachments: list | None = None, timeout_s: float = 90, **extra) -> dict:
    conv = f"gf-{BACKEND}-{uuid.uuid4().hex[:8]}"
    req = ctx.ask(conv, text, assistant=ANALYST["name"],
                  attachments=attachments if attachments is not None else [csv_attachment()], **extra)
    msg = ctx.response_for(req["event_id"], timeout_s=timeout_s)
    assert_valid("response", msg)
    resp = msg.obj
    assert resp["status"] == "completed", resp
    return resp


def test_a_chart_request_with_a_csv_attachment_returns_the_chart_inline_and_named_in_the_answer(
        ctx, worker, simulator, tmp_path):
    worker(assistants=[ANALYST])
    resp = ask_analyst(ctx, CHART_Q)
    files = resp["files"]
    assert [f["filename"] for f in files] == ["chart.png"], files
    (f,) = files
    assert f["media_type"] == "image/png" and isinstance(f["data"], bytes), {k: v for k, v in f.items() if k != "data"}
    assert f["bytes"] == len(f["data"])
    assert png_size(f["data"]) == (160, 100)  # the simulator's chart size (sim_codeint.h)
    if BACKEND == "assistants":
        # A /v1/files file, shown by an image_file part of the answer.
        assert "container_id" not in f, f
        assert {"type": "image_file", "image_file": {"file_id": f["file_id"]}} in parts_of(resp), parts_of(resp)
    else:
        # A file of the code interpreter's container, named by a container_file_citation.
        cites = [a for a in annotations_of(resp) if a["type"] == "container_file_citation"]
        assert [(a["file_id"], a["container_id"], a["filename"]) for a in cites] == [
            (f["file_id"], f["container_id"], "chart.png")], annotations_of(resp)
    # The bytes the response carries are the file's: `file get` downloads the same.
    out = tmp_path / "chart.png"
    g = file_get(simulator, f["file_id"], out, f.get("container_id"))
    assert g.returncode == 0, g.stderr.decode(errors="replace")
    assert out.read_bytes() == f["data"]
    # The chart is of the attached numbers: other numbers, another chart.
    other = ask_analyst(ctx, CHART_Q, [csv_attachment(b"month,sales\n2026-01,5\n2026-02,1\n")])
    assert other["files"][0]["data"] != f["data"]
    assert "steps" not in resp and "steps" not in other


def test_a_generated_file_over_the_inline_limit_is_delivered_by_reference_and_file_get_downloads_it(
        ctx, worker, simulator, tmp_path):
    worker(assistants=[ANALYST], worker={"inline_file_max_bytes": 4096})
    # "large": the simulator pads summary.csv to 300 KiB (sim_codeint.h).
    resp = ask_analyst(ctx, "Put the monthly sales in a large CSV table")
    (f,) = resp["files"]
    assert f["filename"] == "summary.csv" and f["media_type"] == "text/csv", f
    assert "data" not in f, "a file over worker.inline_file_max_bytes must come by reference"
    assert f["bytes"] >= 300 * 1024, f
    assert (BACKEND == "responses") == ("container_id" in f), f
    out = tmp_path / "summary.csv"
    g = file_get(simulator, f["file_id"], out, f.get("container_id"))
    assert g.returncode == 0, g.stderr.decode(errors="replace")
    content = out.read_bytes()
    assert len(content) == f["bytes"]
    # The summary of the attached numbers: a row per value, then their total.
    assert f"total,{sum(SALES)}".encode() in content, content[-200:]


def test_include_steps_lists_the_code_interpreter_call_with_its_code_logs_and_image(ctx, worker):
    worker(assistants=[ANALYST])
    resp = ask_analyst(ctx, CHART_Q, include_steps=True)
    (chart,) = resp["files"]
    calls = [s for s in resp["steps"] if s["type"] == "code_interpreter"]
    assert len(calls) == 1, resp["steps"]
    (call,) = calls
    assert call["id"] and "chart.png" in call["code"], call
    kinds = [o["type"] for o in call["outputs"]]
    assert "logs" in kinds and "image" in kinds, call["outputs"]
    logs = next(o["logs"] for o in call["outputs"] if o["type"] == "logs")
    assert str(len(SALES)) in logs, logs  # "read 12 values ..."
    # The image output names the chart's file (on Responses the API gives a URL of the container
    # file: the worker turns it into the file's id).
    image = next(o for o in call["outputs"] if o["type"] == "image")
    assert image["file_id"] == chart["file_id"], (image, chart)


class KbWorker(Worker):
    """A worker whose Customer Support Bot searches a configured vector store (synced at start)."""

    def _config(self) -> dict:
        cfg = super()._config()
        cfg["knowledge"] = {"vector_stores": [{"name": "gf-docs", "documents": ["reset.md", "billing.md"]}]}
        for a in cfg["assistants"]:
            if a["name"] == SUPPORT_BOT["name"]:
                a["vector_stores"] = ["gf-docs"]
        return cfg


RESET_QUOTE = "To reset your password, open Settings, choose Security and click Reset password."


@pytest.fixture
def kb_worker(ctx, simulator):
    docs = ctx.workdir / f"gf-kb-{uuid.uuid4().hex[:8]}"
    docs.mkdir(parents=True)
    (docs / "reset.md").write_text(f"# Password reset\n\n{RESET_QUOTE}\n")
    (docs / "billing.md").write_text("# Billing\n\nInvoices are sent on the first day of each month.\n")
    w = KbWorker(ctx.spec(simulator.base_url), docs, "gf-kb")
    w.start()
    w.wait_ready()
    yield w
    w.stop()
    w.assert_clean_exit()


def test_include_steps_lists_the_file_search_call_and_the_citation_keeps_the_document(
        ctx, kb_worker, redis_client):
    rec = redis_client.hget(f"{kb_worker.spec.redis_prefix}:kb:gf-docs", "d:reset.md")
    assert rec, "the sync recorded no file for reset.md"
    reset_id = rec.split()[1]
    conv = f"gf-fs-{uuid.uuid4().hex[:8]}"
    req = ctx.ask(conv, "How do I reset my password?", include_steps=True)
    plain = ctx.ask(conv + "-plain", "How do I reset my password?")
    got = ctx.responses_for([req["event_id"], plain["event_id"]], timeout_s=90)
    msg = got[req["event_id"]]
    assert_valid("response", msg)
    resp = msg.obj
    assert resp["status"] == "completed", resp
    assert answer_text(resp).startswith(RESET_QUOTE), answer_text(resp)
    # The citation, end to end: the cited document's file id, and its name where the API gives it.
    cites = [a for a in annotations_of(resp) if a["type"] == "file_citation"]
    assert [a["file_id"] for a in cites] == [reset_id], annotations_of(resp)
    if BACKEND == "responses":
        assert cites[0]["filename"].endswith("reset.md"), cites
    # The step: the search with its results (the Assistants API reports no queries: []).
    (fs,) = [s for s in resp["steps"] if s["type"] == "file_search"]
    assert fs["id"] and isinstance(fs["queries"], list), fs
    if BACKEND == "responses":
        assert fs["queries"] and all(isinstance(q, str) and q for q in fs["queries"]), fs
    top = fs["results"][0]
    assert top["file_id"] == reset_id and top["filename"].endswith("reset.md"), fs["results"]
    assert isinstance(top["score"], (int, float)) and 0 < top["score"] <= 1, top
    assert [s["type"] for s in resp["steps"]] == ["file_search"], resp["steps"]
    # The same question without include_steps: the same answer, no `steps` key.
    p = got[plain["event_id"]].obj
    assert p["status"] == "completed" and "steps" not in p, p
    assert answer_text(p) == answer_text(resp)


def send_cli(w: Worker, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([str(WORKER_BIN), "send", *args, "--config", str(w.config_path)],
                          env=w._env(), capture_output=True, text=True, timeout=timeout_s)


def test_send_attaches_files_and_images_and_saves_the_generated_files_inline_and_by_reference(ctx, worker, tmp_path):
    w = worker(assistants=[ANALYST], worker={"inline_file_max_bytes": 65536})
    csv = tmp_path / "sales.csv"
    csv.write_bytes(SALES_CSV)
    out = tmp_path / "out"
    p = send_cli(w, "--conversation", f"gf-cli-{uuid.uuid4().hex[:8]}", "--assistant", ANALYST["name"],
                 "--attach", f"{csv}:code_interpreter", "--save-files", str(out), CHART_Q)
    assert p.returncode == 0, p.stderr
    resp = json.loads(p.stdout.splitlines()[-1])
    (f,) = resp["files"]
    saved = (out / "chart.png").read_bytes()
    assert saved == base64.b64decode(f["data"]) and png_size(saved) == (160, 100)
    assert f"saved chart.png ({len(saved)} bytes, image/png, inline) to {out}/chart.png" in p.stderr, p.stderr
    # A file by reference (over the worker's 64 KiB) is fetched with `file get`.
    p = send_cli(w, "--conversation", f"gf-cli-{uuid.uuid4().hex[:8]}", "--assistant", ANALYST["name"],
                 "--attach", str(csv), "--save-files", str(out), "Put the monthly sales in a large CSV table")
    assert p.returncode == 0, p.stderr
    (f,) = json.loads(p.stdout.splitlines()[-1])["files"]
    assert "data" not in f
    content = (out / "summary.csv").read_bytes()
    assert len(content) == f["bytes"] and f"total,{sum(SALES)}".encode() in content
    # --image: the saved chart inline and an image by URL, both parts of the message.
    p = send_cli(w, "--conversation", f"gf-cli-{uuid.uuid4().hex[:8]}", "--assistant", ANALYST["name"],
                 "--image", str(out / "chart.png"), "--image", "https://example.com/shelf.png",
                 "What do these pictures show?")
    assert p.returncode == 0, p.stderr
    assert answer_text(json.loads(p.stdout.splitlines()[-1])).startswith("I see 2 images. "), p.stdout

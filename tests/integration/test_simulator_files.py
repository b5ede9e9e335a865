"""The simulator's Files and Vector Stores APIs (issue 10), driven over HTTP with no worker: a file
uploaded as multipart comes back byte for byte, lists and deletes as the spec says, a bad purpose
and an oversize file are refused as the API refuses them; a vector store over two Markdown files
and a PDF indexes them (in_progress, then completed, file_counts kept right), a binary file ends
`failed` with last_error, and a search ranks the file that answers the question first; deleting a
file removes it from its vector stores; apply_then_fail keeps an upload; the record holds an
upload's size and SHA-256 and conforms to the spec; and a 100 MB upload does not grow the
simulator's peak RSS by more than 32 MiB (it is streamed to disk).  Needs only the simulator
(tests/simulator/README.md, "Files and vector stores")."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
import requests
from fpdf import FPDF

from awtest import API_KEY, SHARED_DIR, SIMULATOR_BIN, wait_until
from conftest import require_binary
from openapi_check import SpecChecker

SPEC = SHARED_DIR / "openai-openapi" / "openapi.validatable.yaml"
AUTH = {"Authorization": f"Bearer {API_KEY}"}

GUIDE_MD = """# Account help

## Resetting your password

To reset your password, open the sign-in page and click "Forgot password". Enter the email address
of your account; we send you a reset link that is valid for 30 minutes. Follow the link and choose
a new password of at least 12 characters.
"""
BILLING_MD = """# Billing

Invoices are issued on the first day of every month and sent to the billing contact. You can
change the credit card on file under Settings, Billing, Payment method.
"""
REFUND_PDF_TEXT = ("Refund policy. Orders can be returned within 30 days of delivery. "
                   "A refund reaches your bank account within 5 business days after the warehouse "
                   "receives the returned parcel.")


# ---- helpers ---------------------------------------------------------------------------------

def upload(sim, path: Path, purpose: str = "assistants", **extra: str) -> requests.Response:
    with open(path, "rb") as f:
        return requests.post(sim.base_url + "/files", headers=AUTH, data={"purpose": purpose, **extra},
                             files={"file": (path.name, f)}, timeout=60)


def uploaded(sim, path: Path) -> dict:
    r = upload(sim, path)
    assert r.status_code == 200, r.text
    return r.json()


def api(sim, method: str, path: str, body=None, status: int = 200):
    r = requests.request(method, sim.base_url + path, headers=AUTH, json=body, timeout=30)
    assert r.status_code == status, f"{method} {path} -> {r.status_code}: {r.text}"
    return r.json()


def make_pdf(path: Path, text: str) -> Path:
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def vector_store_settled(sim, vs_id: str, timeout_s: float = 30) -> dict:
    """The vector store once none of its files is in_progress (polled with a deadline)."""
    box = {}

    def settled():
        box["vs"] = api(sim, "GET", f"/vector_stores/{vs_id}")
        return box["vs"]["file_counts"]["in_progress"] == 0

    wait_until(settled, timeout_s, f"vector store {vs_id} processed")
    return box["vs"]


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ---- files ------------------------------------------------------------------------------------

def test_upload_list_get_content_and_delete_a_file(simulator, tmp_path):
    p = write(tmp_path, f"guide-{uuid.uuid4().hex[:6]}.md", GUIDE_MD)
    f = uploaded(simulator, p)
    assert f["object"] == "file" and f["id"].startswith("file-")
    assert (f["filename"], f["bytes"], f["purpose"], f["status"]) == (p.name, p.stat().st_size, "assistants",
                                                                        "processed")
    assert api(simulator, "GET", f"/files/{f['id']}") == f
    r = requests.get(f"{simulator.base_url}/files/{f['id']}/content", headers=AUTH, timeout=30)
    assert r.status_code == 200 and r.content == p.read_bytes()
    listed = api(simulator, "GET", "/files?purpose=assistants&order=desc&limit=10000")
    assert listed["object"] == "list" and listed["data"][0]["id"] == f["id"]  # newest first
    assert all(x["purpose"] == "assistants" for x in listed["data"])
    assert f["id"] not in [x["id"] for x in api(simulator, "GET", "/files?purpose=batch")["data"]]
    assert api(simulator, "DELETE", f"/files/{f['id']}") == {"id": f["id"], "object": "file", "deleted": True}
    err = api(simulator, "GET", f"/files/{f['id']}", status=404)["error"]
    assert err["message"] == f"No file found with id '{f['id']}'."
    assert requests.get(f"{simulator.base_url}/files/{f['id']}/content", headers=AUTH, timeout=30).status_code == 404


def test_files_list_pages_with_limit_after_and_order(simulator, tmp_path):
    ids = [uploaded(simulator, write(tmp_path, f"p{i}.txt", f"page {i}"))["id"] for i in range(3)]
    page = api(simulator, "GET", f"/files?order=asc&after={ids[0]}&limit=1")
    assert [x["id"] for x in page["data"]] == [ids[1]] and page["has_more"] is True
    assert (page["first_id"], page["last_id"]) == (ids[1], ids[1])
    err = api(simulator, "GET", "/files?limit=10001", status=400)["error"]
    assert err["param"] == "limit"


def test_upload_with_a_bad_or_missing_purpose_is_refused_as_the_api_does(simulator, tmp_path):
    p = write(tmp_path, "x.md", "hello")
    r = upload(simulator, p, purpose="essays")
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "purpose" and r.json()["error"]["code"] == "invalid_value"
    r = requests.post(simulator.base_url + "/files", headers=AUTH, files={"file": ("x.md", b"hello")}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_required_parameter"
    assert r.json()["error"]["param"] == "purpose"
    r = requests.post(simulator.base_url + "/files", headers=AUTH, data={"purpose": "assistants"},
                      files={"other": ("x.md", b"hello")}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_parameter"
    assert r.json()["error"]["param"] == "other"
    r = requests.post(simulator.base_url + "/files", headers=AUTH, json={"purpose": "assistants"}, timeout=30)
    assert r.status_code == 400


def test_upload_over_max_file_bytes_is_413_and_keeps_nothing(sim_settings, tmp_path):
    sim_settings.faults(max_file_bytes=1000)
    before = len(api(sim_settings, "GET", "/files")["data"])
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * 1001)
    r = upload(sim_settings, big)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["param"] == "file" and "1000" in r.json()["error"]["message"]
    assert len(api(sim_settings, "GET", "/files")["data"]) == before
    small = tmp_path / "small.txt"
    small.write_bytes(b"a" * 1000)
    assert upload(sim_settings, small).status_code == 200  # the limit itself is allowed


def test_apply_then_fail_on_create_file_keeps_the_upload(sim_settings, tmp_path):
    name = f"atf-{uuid.uuid4().hex[:8]}.md"
    sim_settings.faults(apply_then_fail={"POST /v1/files": {"n": 1, "status": 502}})
    r = upload(sim_settings, write(tmp_path, name, "applied then failed"))
    assert r.status_code == 502
    names = [x["filename"] for x in api(sim_settings, "GET", "/files")["data"]]
    assert names.count(name) == 1, "the upload was applied once although the client saw a 502"
    stats = sim_settings._call("GET", "/admin/stats")[1]
    assert stats["requests"]["POST /v1/files"].get("502", 0) >= 1


# ---- vector stores ----------------------------------------------------------------------------

@pytest.fixture
def knowledge(simulator, tmp_path):
    """A vector store over two Markdown files and a PDF, processed."""
    guide = uploaded(simulator, write(tmp_path, "account-help.md", GUIDE_MD))
    billing = uploaded(simulator, write(tmp_path, "billing.md", BILLING_MD))
    pdf = uploaded(simulator, make_pdf(tmp_path / "refund-policy.pdf", REFUND_PDF_TEXT))
    vs = api(simulator, "POST", "/vector_stores",
             {"name": "support", "file_ids": [guide["id"], billing["id"], pdf["id"]], "metadata": {"team": "kb"}})
    assert vs["status"] == "in_progress" and vs["file_counts"]["in_progress"] == 3, vs
    vs = vector_store_settled(simulator, vs["id"])
    return {"vs": vs, "guide": guide, "billing": billing, "pdf": pdf}


def search(sim, vs_id: str, query, **kw) -> dict:
    return api(sim, "POST", f"/vector_stores/{vs_id}/search", {"query": query, **kw})


def test_vector_store_over_markdown_and_pdf_completes_with_file_counts(simulator, knowledge):
    vs = knowledge["vs"]
    assert vs["status"] == "completed" and vs["name"] == "support" and vs["metadata"] == {"team": "kb"}
    assert vs["file_counts"] == {"in_progress": 0, "completed": 3, "failed": 0, "cancelled": 0, "total": 3}
    assert vs["usage_bytes"] > 0
    files = api(simulator, "GET", f"/vector_stores/{vs['id']}/files?filter=completed")["data"]
    assert {f["id"] for f in files} == {knowledge[k]["id"] for k in ("guide", "billing", "pdf")}
    assert all(f["status"] == "completed" and f["last_error"] is None for f in files)


def test_search_ranks_the_file_that_answers_the_question_first(simulator, knowledge):
    vs_id = knowledge["vs"]["id"]
    res = search(simulator, vs_id, "How do I reset my password?", max_num_results=3)
    print("password:", [(d["filename"], d["score"]) for d in res["data"]])
    assert res["object"] == "vector_store.search_results.page"
    assert res["search_query"] == ["How do I reset my password?"]
    top = res["data"][0]
    assert top["file_id"] == knowledge["guide"]["id"] and top["filename"] == "account-help.md"
    assert 0 < top["score"] <= 1 and "reset link" in top["content"][0]["text"]
    # The PDF's text was extracted: a question only it answers finds it first.
    res = search(simulator, vs_id, "how long until the refund reaches my bank account")
    print("refund:", [(d["filename"], d["score"]) for d in res["data"]])
    assert res["data"][0]["file_id"] == knowledge["pdf"]["id"]
    assert "5 business days" in res["data"][0]["content"][0]["text"]
    res = search(simulator, vs_id, ["credit card", "invoice"], max_num_results=1)
    assert [d["file_id"] for d in res["data"]] == [knowledge["billing"]["id"]]
    # Deterministic: the same search, the same answer.
    assert search(simulator, vs_id, "reset password") == search(simulator, vs_id, "reset password")
    assert search(simulator, vs_id, "zeppelin quartz")["data"] == []


def test_long_document_is_chunked_with_overlap_and_the_matching_chunk_returned(simulator, tmp_path):
    words = [f"filler{i}" for i in range(1000)]
    words[750] = "needle"
    f = uploaded(simulator, write(tmp_path, "long.txt", " ".join(words)))
    vs = api(simulator, "POST", "/vector_stores", {"name": "long"})
    vsf = api(simulator, "POST", f"/vector_stores/{vs['id']}/files",
              {"file_id": f["id"],
               "chunking_strategy": {"type": "static",
                                     "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 100}}})
    assert vsf["status"] == "in_progress" and vsf["chunking_strategy"]["static"]["max_chunk_size_tokens"] == 200
    vector_store_settled(simulator, vs["id"])
    hits = search(simulator, vs["id"], "needle")["data"]
    # Chunks start every 100 words: words 600-799 and 700-899 both hold word 750.
    assert len(hits) == 2
    for h in hits:
        text = h["content"][0]["text"].split()
        assert len(text) == 200 and "needle" in text
    assert hits[0]["content"][0]["text"].split()[0] == "filler600"
    bad = api(simulator, "POST", f"/vector_stores/{vs['id']}/files",
              {"file_id": f["id"], "chunking_strategy": {"type": "static", "static": {
                  "max_chunk_size_tokens": 200, "chunk_overlap_tokens": 150}}}, status=400)
    assert bad["error"]["param"] == "chunking_strategy"


def test_binary_file_ends_failed_with_last_error_and_counts_as_failed(simulator, tmp_path):
    binf = tmp_path / "blob.bin"
    binf.write_bytes(bytes(range(256)) * 8)
    b = uploaded(simulator, binf)
    t = uploaded(simulator, write(tmp_path, "ok.md", "plain words"))
    vs = api(simulator, "POST", "/vector_stores", {"name": "mixed"})
    batch = api(simulator, "POST", f"/vector_stores/{vs['id']}/file_batches", {"file_ids": [b["id"], t["id"]]})
    assert batch["object"] == "vector_store.files_batch" and batch["status"] == "in_progress"
    assert batch["file_counts"]["total"] == 2
    vs = vector_store_settled(simulator, vs["id"])
    assert vs["file_counts"] == {"in_progress": 0, "completed": 1, "failed": 1, "cancelled": 0, "total": 2}
    failed = api(simulator, "GET", f"/vector_stores/{vs['id']}/files/{b['id']}")
    assert failed["status"] == "failed" and failed["last_error"]["code"] == "unsupported_file"
    assert failed["last_error"]["message"]
    batch = api(simulator, "GET", f"/vector_stores/{vs['id']}/file_batches/{batch['id']}")
    assert batch["status"] == "completed" and batch["file_counts"]["failed"] == 1
    in_batch = api(simulator, "GET", f"/vector_stores/{vs['id']}/file_batches/{batch['id']}/files?filter=failed")
    assert [x["id"] for x in in_batch["data"]] == [b["id"]]


def test_deleting_a_file_removes_it_from_its_vector_stores(simulator, tmp_path):
    f = uploaded(simulator, write(tmp_path, "gone.md", "ephemeral words"))
    vs = api(simulator, "POST", "/vector_stores", {"file_ids": [f["id"]]})
    vector_store_settled(simulator, vs["id"])
    api(simulator, "DELETE", f"/files/{f['id']}")
    api(simulator, "GET", f"/vector_stores/{vs['id']}/files/{f['id']}", status=404)
    assert api(simulator, "GET", f"/vector_stores/{vs['id']}")["file_counts"]["total"] == 0
    assert search(simulator, vs["id"], "ephemeral")["data"] == []
    assert api(simulator, "DELETE", f"/vector_stores/{vs['id']}") == {
        "id": vs["id"], "object": "vector_store.deleted", "deleted": True}
    api(simulator, "GET", f"/vector_stores/{vs['id']}", status=404)


def test_vector_store_requests_are_validated_as_the_spec_says(simulator):
    assert api(simulator, "POST", "/vector_stores", {"nme": "x"}, status=400)["error"]["code"] == "unknown_parameter"
    err = api(simulator, "POST", "/vector_stores", {"file_ids": ["file-nope"]}, status=404)["error"]
    assert "file-nope" in err["message"]
    vs = api(simulator, "POST", "/vector_stores", {})
    assert api(simulator, "POST", f"/vector_stores/{vs['id']}/search", {}, status=400)["error"]["param"] == "query"
    assert api(simulator, "POST", f"/vector_stores/{vs['id']}/search", {"query": "x", "max_num_results": 51},
               status=400)["error"]["param"] == "max_num_results"
    assert api(simulator, "POST", f"/vector_stores/{vs['id']}/file_batches", {},
               status=400)["error"]["code"] == "missing_required_parameter"


def test_apply_then_fail_on_create_vector_store_keeps_the_store(sim_settings):
    name = f"atf-{uuid.uuid4().hex[:8]}"
    sim_settings.faults(apply_then_fail={"POST /v1/vector_stores": {"n": 1, "status": 500}})
    r = requests.post(sim_settings.base_url + "/vector_stores", headers=AUTH, json={"name": name}, timeout=30)
    assert r.status_code == 500
    names = [v["name"] for v in api(sim_settings, "GET", "/vector_stores?limit=100")["data"]]
    assert names.count(name) == 1


# ---- record and memory ------------------------------------------------------------------------

def test_recorded_upload_keeps_size_and_sha256_and_conforms_to_the_spec(simulator, tmp_path):
    data = os.urandom(4096)
    p = tmp_path / "rec.bin"
    p.write_bytes(data)
    f = uploaded(simulator, p)

    def line():
        with open(simulator.record_path, encoding="utf-8") as fh:
            for raw in fh:
                rec = json.loads(raw)
                if rec.get("method") == "POST" and rec.get("path") == "/v1/files" and \
                        (rec.get("response_body") or {}).get("id") == f["id"]:
                    return rec
        return None

    wait_until(lambda: line() is not None, 10, "the upload in the record")
    rec = line()
    assert rec["request_body"] == {"purpose": "assistants", "file": {
        "filename": "rec.bin", "bytes": 4096, "sha256": hashlib.sha256(data).hexdigest()}}
    if not SPEC.exists():
        pytest.fail(f"{SPEC} not found (set AW_SHARED_DIR to the shared dir)")
    checker = SpecChecker(SPEC)
    with open(simulator.record_path, encoding="utf-8") as fh:
        mine = [ln for ln in fh if '"/v1/files' in ln or '"/v1/vector_stores' in ln]
    n, problems = checker.check_lines(mine)
    assert n > 0 and not problems, "\n".join(problems[:20])


def vm_hwm_kib(pid: int) -> int:
    for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
        if ln.startswith("VmHWM:"):
            return int(ln.split()[1])
    raise AssertionError("no VmHWM")


def test_100_mb_upload_does_not_grow_the_simulators_peak_rss_by_32_mib(tmp_path):
    """A simulator of its own, so that its peak RSS is this test's alone."""
    require_binary(SIMULATOR_BIN)
    port_file = tmp_path / "port"
    proc = subprocess.Popen([str(SIMULATOR_BIN), "--port", "0", "--port-file", str(port_file),
                             "--files-dir", str(tmp_path / "spool"), "--log-level", "warn"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_file.exists() and port_file.read_text().strip() != "", 10, "the simulator's port")
        base = f"http://127.0.0.1:{port_file.read_text().strip()}/v1"
        small = tmp_path / "small.bin"
        small.write_bytes(b"x" * 1024)
        big = tmp_path / "big.bin"
        with open(big, "wb") as fh:
            chunk = os.urandom(1 << 20)
            for _ in range(100):
                fh.write(chunk)
        # Warm up (first upload, first allocations), then measure around the 100 MB one.
        curl = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Authorization: Bearer {API_KEY}",
                "-F", "purpose=assistants"]
        assert subprocess.run(curl + ["-F", f"file=@{small}", base + "/files"], capture_output=True,
                              text=True, timeout=60).stdout == "200"
        before = vm_hwm_kib(proc.pid)
        t0 = time.monotonic()
        out = subprocess.run(curl + ["-F", f"file=@{big}", base + "/files"], capture_output=True, text=True,
                             timeout=300)
        took = time.monotonic() - t0
        after = vm_hwm_kib(proc.pid)
        assert out.stdout == "200", out
        print(f"simulator VmHWM before {before} KiB, after the 100 MB upload {after} KiB, "
              f"grew {(after - before) / 1024:.1f} MiB; upload took {took:.1f} s")
        assert after - before < 32 * 1024
        files = requests.get(base + "/files", headers=AUTH, timeout=30).json()["data"]
        assert files[0]["bytes"] == 100 << 20
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_cancelled_batch_cancels_its_files_in_progress_and_modify_renames_the_store(sim_settings, tmp_path):
    sim_settings.faults(file_processing_ms=5000)  # the files are still in progress when cancelled
    f = uploaded(sim_settings, write(tmp_path, "slow.md", "slow words"))
    vs = api(sim_settings, "POST", "/vector_stores", {"name": "before"})
    batch = api(sim_settings, "POST", f"/vector_stores/{vs['id']}/file_batches", {"file_ids": [f["id"]]})
    assert batch["status"] == "in_progress"
    batch = api(sim_settings, "POST", f"/vector_stores/{vs['id']}/file_batches/{batch['id']}/cancel")
    assert batch["status"] == "cancelled" and batch["file_counts"]["cancelled"] == 1
    assert api(sim_settings, "GET", f"/vector_stores/{vs['id']}/files/{f['id']}")["status"] == "cancelled"
    counts = api(sim_settings, "GET", f"/vector_stores/{vs['id']}")["file_counts"]
    assert counts == {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 1, "total": 1}
    renamed = api(sim_settings, "POST", f"/vector_stores/{vs['id']}",
                  {"name": "after", "metadata": {"v": "2"}, "expires_after": {"anchor": "last_active_at", "days": 2}})
    assert (renamed["name"], renamed["metadata"]) == ("after", {"v": "2"})
    assert renamed["expires_at"] == renamed["last_active_at"] + 2 * 86400
    assert api(sim_settings, "POST", f"/vector_stores/{vs['id']}", {"file_ids": []},
               status=400)["error"]["code"] == "unknown_parameter"

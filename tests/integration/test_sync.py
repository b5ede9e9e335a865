"""Declarative knowledge (worker/knowledge/kb_sync.h): `assistant-worker sync` makes the API's
vector stores match the configuration's knowledge.vector_stores -- each document uploaded once
(content hash, ids remembered in Redis), a changed one replaced (the old file deleted), a removed one
detached and deleted, orphans of an interrupted sync deleted -- and `run` attaches the stores to the
assistants: file_search with the store id on every Responses request, tool_resources on the
Assistants API's assistant.  The chat backend refuses such an assistant when the configuration is
loaded.  Runs on one backend per pass: it pins what it needs (FIRST_PASS_ONLY in tests/run.sh)."""
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import requests

from awtest import SUPPORT_BOT, WORKER_BIN, Worker, answer_text, wait_until

STORE = "support"


class KbWorker(Worker):
    """A worker whose configuration has a knowledge section (documents relative to the config)."""

    def __init__(self, spec, workdir, name, knowledge, stores_of=None):
        super().__init__(spec, workdir, name)
        self.knowledge, self.stores_of = knowledge, stores_of or {}

    def _config(self) -> dict:
        cfg = super()._config()
        cfg["knowledge"] = self.knowledge
        for a in cfg["assistants"]:
            if a["name"] in self.stores_of:
                a["vector_stores"] = self.stores_of[a["name"]]
        return cfg


@pytest.fixture
def kb(ctx, simulator):
    """Factory of KbWorker configurations (not started), with two small documents."""
    docs = ctx.workdir / f"kb-{uuid.uuid4().hex[:8]}"
    docs.mkdir(parents=True)
    (docs / "reset.md").write_text("# Password reset\nOpen Settings, choose Security, then Reset password.\n")
    (docs / "billing.md").write_text("# Billing\nInvoices are sent on the first day of each month.\n")
    made = []

    def make(documents=("reset.md", "billing.md"), backend=None, name=None, **kw) -> KbWorker:
        overrides = {"backend": backend} if backend else {}
        spec = ctx.spec(simulator.base_url, **overrides)
        w = KbWorker(spec, docs, name or f"kbw{len(made) + 1}",
                     {"vector_stores": [{"name": STORE, "documents": list(documents)}], **kw},
                     {SUPPORT_BOT["name"]: [STORE]})
        w.config_path.write_text(json.dumps(w._config(), indent=2))
        made.append(w)
        return w

    make.docs = docs
    yield make
    for w in made:
        if w.proc and w.returncode is None:
            w.stop()
            w.assert_clean_exit()


def sync(w: KbWorker, timeout_s: float = 120) -> tuple[int, dict, str]:
    w.config_path.write_text(json.dumps(w._config(), indent=2))
    p = subprocess.run([str(WORKER_BIN), "sync", "--config", str(w.config_path)], env=w._env(),
                       capture_output=True, text=True, timeout=timeout_s)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    assert lines, f"sync printed no summary (exit {p.returncode}): {p.stdout} {p.stderr[-2000:]}"
    assert "AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr, p.stderr[-3000:]
    return p.returncode, json.loads(lines[-1]), p.stderr


def sim_file(simulator, file_id: str) -> int:
    return simulator._call("GET", f"/v1/files/{file_id}")[0]


def store_files(simulator, vs_id: str) -> set[str]:
    page = simulator.api("GET", f"/vector_stores/{vs_id}/files?limit=100")
    return {f["id"] for f in page["data"]}


def recorded(redis_client, prefix: str) -> dict:
    h = redis_client.hgetall(f"{prefix}:kb:{STORE}")
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
            for k, v in h.items()}


def file_of(rec: dict, doc: str) -> str:
    return rec[f"d:{doc}"].split()[1]


def test_second_sync_uploads_nothing_and_prints_the_time_of_two_documents(kb, simulator, redis_client):
    w = kb()
    t0 = time.monotonic()
    rc, first, log = sync(w)
    elapsed = time.monotonic() - t0
    assert rc == 0, log[-2000:]
    assert first["uploaded"] == 2 and first["failed"] == 0, first
    print(f"\nsync of two small documents: {first['seconds']:.2f} s inside, {elapsed:.2f} s with start-up")
    vs = first["vector_stores"][STORE]
    rec = recorded(redis_client, w.spec.redis_prefix)
    assert rec["id"] == vs
    assert store_files(simulator, vs) == {file_of(rec, "reset.md"), file_of(rec, "billing.md")}
    assert "uploaded reset.md" in log and "bytes" in log
    rc, second, log = sync(w)
    assert rc == 0, log[-2000:]
    assert second["uploaded"] == 0 and second["replaced"] == 0 and second["unchanged"] == 2, second
    assert second["bytes_uploaded"] == 0
    assert second["vector_stores"][STORE] == vs


def test_a_changed_document_replaces_its_file_and_the_old_one_is_deleted(kb, simulator, redis_client):
    w = kb()
    rc, first, log = sync(w)
    assert rc == 0, log[-2000:]
    old = file_of(recorded(redis_client, w.spec.redis_prefix), "reset.md")
    (kb.docs / "reset.md").write_text("# Password reset\nUse the link in the login page instead.\n")
    rc, second, log = sync(w)
    assert rc == 0, log[-2000:]
    assert second["replaced"] == 1 and second["unchanged"] == 1 and second["uploaded"] == 0, second
    assert second["orphans_deleted"] == 0, "the old file was left to the orphan sweep"
    new = file_of(recorded(redis_client, w.spec.redis_prefix), "reset.md")
    assert new != old
    assert sim_file(simulator, old) == 404, "the replaced file is still stored"
    assert sim_file(simulator, new) == 200
    vs = second["vector_stores"][STORE]
    assert new in store_files(simulator, vs) and old not in store_files(simulator, vs)


def test_a_document_removed_from_the_configuration_is_detached_and_deleted(kb, simulator, redis_client):
    w = kb()
    rc, first, log = sync(w)
    assert rc == 0, log[-2000:]
    gone = file_of(recorded(redis_client, w.spec.redis_prefix), "billing.md")
    w.knowledge["vector_stores"][0]["documents"] = ["reset.md"]
    rc, second, log = sync(w)
    assert rc == 0, log[-2000:]
    assert second["removed"] == 1 and second["unchanged"] == 1, second
    assert second["orphans_deleted"] == 0, "the removed document's file was left to the orphan sweep"
    assert "d:billing.md" not in recorded(redis_client, w.spec.redis_prefix)
    assert gone not in store_files(simulator, second["vector_stores"][STORE])
    assert sim_file(simulator, gone) == 404


def test_an_orphan_upload_with_our_name_is_deleted_by_the_next_sync(kb, simulator, redis_client, tmp_path):
    w = kb()
    rc, first, log = sync(w)
    assert rc == 0, log[-2000:]
    # What a worker killed between the upload and the record leaves behind.
    orphan_path = tmp_path / "o.md"
    orphan_path.write_text("half-synced")
    vs = first["vector_stores"][STORE]
    name = f"aw-kb.{STORE}.{vs}.0123456789ab.reset.md"
    with open(orphan_path, "rb") as fh:
        r = requests.post(simulator.base_url + "/files", headers={"Authorization": "Bearer " + w._env()["AW_API_KEY"]},
                          files={"file": (name, fh)}, data={"purpose": "assistants"}, timeout=10)
    assert r.status_code == 200, r.text
    orphan = r.json()["id"]
    # Another deployment's file: the same store name, another vector store.
    with open(orphan_path, "rb") as fh:
        r = requests.post(simulator.base_url + "/files", headers={"Authorization": "Bearer " + w._env()["AW_API_KEY"]},
                          files={"file": (f"aw-kb.{STORE}.vs_other.0123456789ab.reset.md", fh)},
                          data={"purpose": "assistants"}, timeout=10)
    assert r.status_code == 200, r.text
    theirs = r.json()["id"]
    rc, second, log = sync(w)
    assert rc == 0, log[-2000:]
    assert second["orphans_deleted"] == 1, second
    assert sim_file(simulator, orphan) == 404
    assert sim_file(simulator, theirs) == 200, "another deployment's file was taken for an orphan"
    assert "orphan deleted" in log
    rec = recorded(redis_client, w.spec.redis_prefix)
    for doc in ("reset.md", "billing.md"):
        assert sim_file(simulator, file_of(rec, doc)) == 200


def requests_to(simulator, method: str, path_prefix: str, since: int) -> list[dict]:
    out = []
    with open(simulator.record_path, encoding="utf-8") as f:
        f.seek(since)
        for line in f:
            rec = json.loads(line)
            if rec.get("method") == method and rec.get("path", "").startswith(path_prefix):
                out.append(rec)
    return out


def test_a_worker_with_knowledge_sends_file_search_with_the_store_id_on_responses(kb, ctx, simulator):
    w = kb(backend="responses")
    since = simulator.record_path.stat().st_size
    w.start()
    w.wait_ready()
    req = ctx.ask("kb-conv-1", "How do I reset my password?")
    resp = ctx.response_for(req["event_id"]).json()
    assert resp["status"] == "completed", resp
    vs = [ln for ln in w.lines if "is vector store" in ln or "vector store vs_" in ln]
    posts = wait_until(lambda: requests_to(simulator, "POST", "/v1/responses", since), 10, "the recorded request")
    tools = posts[-1]["request_body"].get("tools") or []
    fs = [t for t in tools if t.get("type") == "file_search"]
    assert len(fs) == 1 and len(fs[0]["vector_store_ids"]) == 1 and fs[0]["vector_store_ids"][0].startswith("vs_"), tools
    assert vs, "the start-up sync logged no vector store"
    assert answer_text(resp)


def test_a_worker_with_knowledge_attaches_the_store_to_the_assistants_api_assistant(kb, simulator):
    w = kb(backend="assistants")
    w.start()
    w.wait_ready()
    rc, summary, _ = sync(w)  # nothing to do: the start-up sync did it
    assert rc == 0 and summary["uploaded"] == 0, summary
    vs = summary["vector_stores"][STORE]
    page = simulator.api("GET", "/assistants?limit=100&order=desc")
    mine = [a for a in page["data"] if (a.get("metadata") or {}).get("aw_name") == SUPPORT_BOT["name"]
            and (a.get("tool_resources") or {}).get("file_search", {}).get("vector_store_ids") == [vs]]
    assert mine, "no assistant carries the store in tool_resources.file_search"
    assert any(t.get("type") == "file_search" for t in mine[0]["tools"])


def test_the_chat_backend_refuses_an_assistant_with_vector_stores_at_load(kb):
    w = kb(backend="chat")
    p = subprocess.run([str(WORKER_BIN), "run", "--config", str(w.config_path)], env=w._env(),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr[-2000:]
    out = p.stdout + p.stderr
    assert SUPPORT_BOT["name"] in out and "file_search" in out and "chat backend" in out, out[-2000:]


def test_two_syncs_at_once_take_turns_and_upload_each_document_once(kb, simulator):
    w = kb()
    w.config_path.write_text(json.dumps(w._config(), indent=2))
    procs = [subprocess.Popen([str(WORKER_BIN), "sync", "--config", str(w.config_path)], env=w._env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-1500:] for o in outs]
    sums = [json.loads([ln for ln in o[0].splitlines() if ln.startswith("{")][-1]) for o in outs]
    assert sorted(s["uploaded"] for s in sums) == [0, 2], sums
    assert sum(s["orphans_deleted"] for s in sums) == 0, sums
    assert sums[0]["vector_stores"][STORE] == sums[1]["vector_stores"][STORE]
    files = store_files(simulator, sums[0]["vector_stores"][STORE])
    assert len(files) == 2 and all(sim_file(simulator, f) == 200 for f in files)


def test_a_document_that_fails_processing_exits_1_is_not_recorded_and_is_retried(kb, simulator, redis_client):
    (kb.docs / "blob.bin").write_bytes(bytes(range(256)) * 8)
    w = kb(documents=("reset.md", "blob.bin"))
    rc, first, log = sync(w)
    assert rc == 1, log[-2000:]
    assert first["uploaded"] == 1 and first["failed"] == 1, first
    assert "blob.bin" in first["error"] and "failed blob.bin" in log
    rec = recorded(redis_client, w.spec.redis_prefix)
    assert "d:reset.md" in rec and "d:blob.bin" not in rec
    # The next sync tries it again (still failing here) and sweeps the failed file of the first.
    rc, second, log = sync(w)
    assert rc == 1 and second["unchanged"] == 1 and second["failed"] == 1 and second["orphans_deleted"] == 1, second


def our_files(simulator, vs_id: str) -> dict[str, str]:
    """id -> name of every file at the API this deployment's sync of STORE into vs_id made."""
    out, after = {}, None
    while True:
        page = simulator.api("GET", "/files?purpose=assistants&limit=100" + (f"&after={after}" if after else ""))
        for f in page["data"]:
            if f["filename"].startswith(f"aw-kb.{STORE}.{vs_id}."):
                out[f["id"]] = f["filename"]
        if not page.get("has_more"):
            return out
        after = page["data"][-1]["id"]


def test_a_sync_killed_while_the_store_processes_leaves_no_orphan_after_the_next_sync(
        kb, sim_settings, redis_client):
    simulator = sim_settings
    w = kb()
    # The store's files stay in progress for 20 s: the sync uploads, adds and then waits.
    simulator.faults(file_processing_ms=20000)
    since = simulator.record_path.stat().st_size
    w.config_path.write_text(json.dumps(w._config(), indent=2))
    p = subprocess.Popen([str(WORKER_BIN), "sync", "--config", str(w.config_path)], env=w._env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def both_added():
            return len([r for r in requests_to(simulator, "POST", "/v1/vector_stores/", since)
                        if r["path"].endswith("/files") and r.get("status") == 200]) >= 2
        wait_until(both_added, 60, "both documents added to the store (the sync then waits)")
        p.kill()  # SIGKILL: nothing of the documents is recorded yet
    finally:
        p.wait(10)
    rec = recorded(redis_client, w.spec.redis_prefix)
    assert not [k for k in rec if k.startswith("d:")], f"the killed sync recorded a document: {rec}"
    vs = rec["id"]
    left = our_files(simulator, vs)
    assert len(left) == 2, f"the killed sync should have left its two uploads: {left}"
    simulator.faults(file_processing_ms=100)
    # The dead sync's lock is a lease that lapses (15 s), not one held for the processing's
    # whole deadline (wait_timeout_ms + 60 s: the next sync would wait minutes and time out).
    rc, second, log = sync(w, timeout_s=60)
    assert rc == 0, log[-2000:]
    assert second["failed"] == 0, second
    rec = recorded(redis_client, w.spec.redis_prefix)
    synced = {file_of(rec, d) for d in ("reset.md", "billing.md")}
    # Whatever the next sync chose (keep or upload again), the API holds exactly the recorded
    # files of this deployment, and the store exactly those: the killed sync left no orphan.
    assert set(our_files(simulator, vs)) == synced, (second, our_files(simulator, vs), synced)
    assert store_files(simulator, vs) == synced, second
    assert second["orphans_deleted"] == len(set(left) - synced), second


def test_a_sync_longer_than_the_lock_lease_keeps_it_and_the_next_one_waits(kb, sim_settings, redis_client):
    simulator = sim_settings
    w = kb()
    # Processing takes longer than the lock's 15 s lease: only its renewal keeps the second sync
    # out (else it would take the lock, upload the unrecorded documents again and delete the
    # first sync's uploads as orphans).
    simulator.faults(file_processing_ms=20000)
    since = simulator.record_path.stat().st_size
    w.config_path.write_text(json.dumps(w._config(), indent=2))
    first = subprocess.Popen([str(WORKER_BIN), "sync", "--config", str(w.config_path)], env=w._env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len([r for r in requests_to(simulator, "POST", "/v1/vector_stores/", since)
                                if r["path"].endswith("/files")]) >= 2, 60, "the first sync's documents added")
        rc2, second, log2 = sync(w, timeout_s=120)
        out1, err1 = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    assert first.returncode == 0, err1[-2000:]
    summary1 = json.loads([ln for ln in out1.splitlines() if ln.startswith("{")][-1])
    assert summary1["uploaded"] == 2 and summary1["orphans_deleted"] == 0, summary1
    assert "could not renew" not in err1, err1[-2000:]
    assert rc2 == 0 and "another worker is syncing" in log2, log2[-2000:]
    assert second["uploaded"] == 0 and second["unchanged"] == 2 and second["orphans_deleted"] == 0, second

"""`assistant-worker file put|get|rm|ls` against the simulator's Files API (issue 10, Part 1): the
bytes that come back are the bytes that went up, a deleted file is gone, and an upload is streamed
from disk: the peak RSS of a 100 MB upload stays within a few MiB of a 1 MB upload's.

Needs only the simulator (no broker, no worker daemon); the files are the same API on every backend,
so tests/run.sh runs this file in its first pass only (FIRST_PASS_ONLY)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest

from awtest import API_KEY, WORKER_BIN
from conftest import require_binary


def file_cli(sim, *args: str, rss: bool = False, timeout_s: float = 300) -> subprocess.CompletedProcess:
    """Run `assistant-worker file ARGS...` configured by environment only, like `run` reads it."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AW_API_BASE_URL": sim.base_url,
           "AW_API_KEY": API_KEY, "AW_LOG_LEVEL": "warn",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")}
    if rss:
        env["AW_REPORT_RSS"] = "1"
    return subprocess.run([str(WORKER_BIN), "file", *args], env=env, capture_output=True, timeout=timeout_s)


@pytest.fixture
def files_sim(sim_settings):
    """The simulator (its fault settings restored after the test)."""
    require_binary(WORKER_BIN)
    return sim_settings


def put(sim, path: Path, *extra: str, rss: bool = False) -> tuple[dict, int | None]:
    p = file_cli(sim, "put", str(path), *extra, rss=rss)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    obj = json.loads(p.stdout)
    m = re.search(rb"peak_rss_kib (\d+)", p.stderr)
    return obj, (int(m.group(1)) if m else None)


def test_put_get_rm_round_trip_returns_the_same_bytes(files_sim, tmp_path):
    src = tmp_path / "support-guide.md"
    content = b"# Support guide\n\nTo reset your password, open Settings > Security.\n" + bytes(range(256)) * 40
    src.write_bytes(content)

    f, _ = put(files_sim, src)
    assert f["object"] == "file" and f["filename"] == "support-guide.md"
    assert f["bytes"] == len(content) and f["purpose"] == "assistants"

    ls = file_cli(files_sim, "ls")
    assert ls.returncode == 0, ls.stderr
    assert f["id"] in [x["id"] for x in json.loads(ls.stdout)["data"]]

    out = tmp_path / "back.md"
    g = file_cli(files_sim, "get", f["id"], "--out", str(out))
    assert g.returncode == 0, g.stderr
    assert out.read_bytes() == content
    g2 = file_cli(files_sim, "get", f["id"])  # to stdout
    assert g2.returncode == 0 and g2.stdout == content

    rm = file_cli(files_sim, "rm", f["id"])
    assert rm.returncode == 0, rm.stderr
    assert json.loads(rm.stdout) == {"id": f["id"], "object": "file", "deleted": True}
    gone = file_cli(files_sim, "get", f["id"], "--out", str(tmp_path / "gone"))
    assert gone.returncode == 1 and b"ENOTFOUND" in gone.stderr
    assert not (tmp_path / "gone").exists()  # no half file left behind


def test_get_with_container_downloads_a_container_file_and_a_missing_one_leaves_no_file(files_sim, tmp_path):
    """`file get CFILE --container CNTR -o PATH`: a code interpreter container's file (what a
    Responses turn generates), here a /v1/files file copied into a container at its creation."""
    src = tmp_path / "sales.csv"
    content = b"region,total\nnorth,12\nsouth,30\n" + bytes(range(256))
    src.write_bytes(content)
    f, _ = put(files_sim, src)
    cntr = files_sim.api("POST", "/containers", {"name": f"aw-test-{uuid.uuid4().hex[:8]}", "file_ids": [f["id"]]})
    files = files_sim.api("GET", f"/containers/{cntr['id']}/files")["data"]
    cfile = next(x for x in files if x["path"].endswith("/sales.csv"))
    assert cfile["id"] != f["id"] and cfile["bytes"] == len(content)

    out = tmp_path / "back.csv"
    g = file_cli(files_sim, "get", cfile["id"], "--container", cntr["id"], "-o", str(out))
    assert g.returncode == 0, g.stderr
    assert out.read_bytes() == content
    # Without --container the id is looked up in /v1/files, where it is not.
    assert file_cli(files_sim, "get", cfile["id"], "-o", str(tmp_path / "nf")).returncode == 1
    gone = file_cli(files_sim, "get", cfile["id"], "--container", "cntr_doesnotexist", "-o", str(tmp_path / "gone"))
    assert gone.returncode == 1 and b"ENOTFOUND" in gone.stderr, gone.stderr
    assert not (tmp_path / "gone").exists() and not (tmp_path / "nf").exists()
    bad = file_cli(files_sim, "rm", f["id"], "--container", cntr["id"])  # --container is for get only
    assert bad.returncode == 2
    assert file_cli(files_sim, "rm", f["id"]).returncode == 0


def test_get_over_the_cap_fails_and_leaves_no_file(files_sim, tmp_path):
    src = tmp_path / "data.csv"
    src.write_bytes(b"a,b\n" * 5000)
    f, _ = put(files_sim, src, "--purpose", "user_data")
    assert f["purpose"] == "user_data"
    out = tmp_path / "capped.csv"
    g = file_cli(files_sim, "get", f["id"], "--out", str(out), "--max-bytes", "1000")
    assert g.returncode == 1 and b"larger than the cap" in g.stderr
    assert not out.exists()
    assert file_cli(files_sim, "rm", f["id"]).returncode == 0


@pytest.mark.parametrize("status", [500, 0], ids=["500", "dropped"])
def test_put_whose_answer_is_lost_after_the_file_was_stored_stores_it_once(files_sim, tmp_path, status):
    """The simulator stores the upload, then answers 500 or drops the connection: `put` looks the
    file up (name, size, purpose, created since it started) and prints it instead of uploading again."""
    name = f"lost-answer-{status}-{uuid.uuid4().hex[:8]}.txt"
    src = tmp_path / name
    src.write_bytes(b"stored once, whatever the answer\n" * 100)
    files_sim.faults(apply_then_fail={"POST /v1/files": {"n": 1, "status": status}})
    p = file_cli(files_sim, "put", str(src))
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert b"found it stored" in p.stderr
    f = json.loads(p.stdout)
    ls = file_cli(files_sim, "ls", "--purpose", "assistants")
    assert ls.returncode == 0, ls.stderr
    ours = [x for x in json.loads(ls.stdout)["data"] if x["filename"] == name]
    assert [x["id"] for x in ours] == [f["id"]]  # one file, the one printed
    assert file_cli(files_sim, "rm", f["id"]).returncode == 0


def test_put_over_the_servers_size_limit_is_refused_as_too_large(files_sim, tmp_path):
    files_sim.faults(max_file_bytes=1000)
    src = tmp_path / "too-big.txt"
    src.write_bytes(b"x" * 2000)
    p = file_cli(files_sim, "put", str(src))
    assert p.returncode == 1
    assert b"file too large" in p.stderr and b"ETOOBIG" in p.stderr and b"refused" in p.stderr
    assert API_KEY.encode() not in p.stderr


def _write_file(path: Path, size: int) -> str:
    block = hashlib.sha256(b"aw").digest() * (1 << 15)  # 1 MiB of non-repeating-looking bytes
    h = hashlib.sha256()
    with path.open("wb") as fh:
        left = size
        while left:
            b = block[:min(left, len(block))]
            fh.write(b)
            h.update(b)
            left -= len(b)
    return h.hexdigest()


def test_a_100_mb_upload_is_streamed_peak_rss_within_a_few_mib_of_a_1_mb_upload(files_sim, tmp_path):
    small, big = tmp_path / "small.bin", tmp_path / "big.bin"
    _write_file(small, 1 << 20)
    _write_file(big, 100 << 20)
    fs, rss_small = put(files_sim, small, rss=True)
    fb, rss_big = put(files_sim, big, rss=True)
    try:
        assert fs["bytes"] == 1 << 20 and fb["bytes"] == 100 << 20
        assert rss_small and rss_big, "AW_REPORT_RSS=1 printed no peak_rss_kib"
        diff_mib = (rss_big - rss_small) / 1024
        print(f"\nfile put peak RSS: 1 MB upload {rss_small / 1024:.1f} MiB, "
              f"100 MB upload {rss_big / 1024:.1f} MiB, difference {diff_mib:.1f} MiB")
        assert diff_mib < 16, f"the 100 MB upload grew the peak RSS by {diff_mib:.1f} MiB"
    finally:
        for f in (fs, fb):
            file_cli(files_sim, "rm", f["id"])

"""Citations end to end (issue 10): a worker whose assistant has a configured vector store
(knowledge.vector_stores, `assistant-worker sync` at start-up) answers a question from the store's
documents, and the response on Kafka quotes the right document and cites its file: the file id the
sync uploaded, and on the Responses backend the file's name too (the Assistants API gives only the
id, so the key is left out there).  The response conforms to schemas/response.schema.json.  Pins its
backends per test: runs in the first pass only (FIRST_PASS_ONLY in tests/run.sh)."""
import json
import uuid

import pytest

from awtest import SUPPORT_BOT, Worker, answer_text, assert_valid

STORE = "support"
RESET_MD = """# Password reset

To reset your password, open Settings, choose Security and click Reset password.
"""
BILLING_MD = """# Billing

Invoices are sent to the billing contact on the first day of each month.
"""
RESET_QUOTE = "To reset your password, open Settings, choose Security and click Reset password."


class KbWorker(Worker):
    """A worker whose configuration has a knowledge section and the support bot on its store."""

    def __init__(self, spec, workdir, name):
        super().__init__(spec, workdir, name)

    def _config(self) -> dict:
        cfg = super()._config()
        cfg["knowledge"] = {"vector_stores": [{"name": STORE, "documents": ["reset.md", "billing.md"]}]}
        for a in cfg["assistants"]:
            if a["name"] == SUPPORT_BOT["name"]:
                a["vector_stores"] = [STORE]
        return cfg


@pytest.fixture
def kb_worker(ctx, simulator):
    docs = ctx.workdir / f"kb-{uuid.uuid4().hex[:8]}"
    docs.mkdir(parents=True)
    (docs / "reset.md").write_text(RESET_MD)
    (docs / "billing.md").write_text(BILLING_MD)
    made = []

    def make(backend: str) -> KbWorker:
        w = KbWorker(ctx.spec(simulator.base_url, backend=backend), docs, f"fsw-{backend}")
        w.config_path.write_text(json.dumps(w._config(), indent=2))
        made.append(w)
        w.start()
        w.wait_ready()
        return w

    yield make
    for w in made:
        if w.proc and w.returncode is None:
            w.stop()
            w.assert_clean_exit()


def reset_file_id(redis_client, prefix: str) -> str:
    """The file the sync uploaded for reset.md (its record in Redis: "<hash> <file id>")."""
    rec = redis_client.hget(f"{prefix}:kb:{STORE}", "d:reset.md")
    assert rec, "the sync recorded no file for reset.md"
    return (rec.decode() if isinstance(rec, bytes) else rec).split()[1]


@pytest.mark.parametrize("backend", ["responses", "assistants"])
def test_a_question_to_an_assistant_with_a_store_is_answered_with_a_citation_naming_the_file(
        backend, kb_worker, ctx, redis_client):
    w = kb_worker(backend)
    req = ctx.ask(f"fs-{backend}-{uuid.uuid4().hex[:6]}", "How do I reset my password?")
    msg = ctx.response_for(req["event_id"], timeout_s=90)
    assert_valid("response", msg)
    resp = msg.json()
    assert resp["status"] == "completed", resp
    text = answer_text(resp)
    assert text.startswith(RESET_QUOTE), text
    anns = [a for m in resp["messages"] for p in m["content"] for a in p["text"]["annotations"]]
    assert len(anns) == 1, anns
    (ann,) = anns
    assert ann["type"] == "file_citation"
    assert ann["file_id"] == reset_file_id(redis_client, w.spec.redis_prefix)
    if backend == "responses":
        # The Responses API names the cited file: the sync's upload of reset.md.
        assert ann["filename"].endswith("reset.md"), ann
        assert ann["start_index"] == ann["end_index"] == len(RESET_QUOTE)
    else:
        # The Assistants API cites a span of the text (its marker) and gives only the file id.
        assert "filename" not in ann, ann
        assert text[ann["start_index"]:ann["end_index"]] == ann["text"] == "【0:0†source】"

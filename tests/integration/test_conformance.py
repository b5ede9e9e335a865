"""Everything the worker sent to the API, and everything the simulator answered, conforms to the
OpenAI OpenAPI spec (openapi.validatable.yaml in the shared dir: ../shared beside the repo, or
AW_SHARED_DIR).  Runs last (conftest orders it) so the simulator's record holds the traffic of
every test of the session, plus its own: plain, follow-up and streamed requests."""
import json

import pytest

from awtest import SHARED_DIR, conv_handle, wait_until
from openapi_check import SpecChecker

SPEC = SHARED_DIR / "openai-openapi" / "openapi.validatable.yaml"


def _records(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_api_traffic_conforms_to_openapi_spec(ctx, worker, simulator):
    if not SPEC.exists():
        pytest.fail(f"{SPEC} not found (set AW_SHARED_DIR to the shared dir)")
    worker()
    a = ctx.ask("conv-conf", "How do I reset my password?")
    b = ctx.ask("conv-conf", "Thanks! And how do I change my email address?", stream=True)
    c = ctx.ask("conv-conf-2", "Hello", stream=True)
    for req in (a, b, c):
        assert ctx.response_for(req["event_id"])["status"] == "completed"
    handle = conv_handle(ctx.response_for(c["event_id"]))

    def names_handle(data):
        """A stream event of the thread (Assistants) or conversation (Responses) `handle`."""
        if not isinstance(data, dict):
            return False
        conv = (data.get("response") or {}).get("conversation") if isinstance(data.get("response"), dict) else None
        return data.get("thread_id") == handle or (isinstance(conv, dict) and conv.get("id") == handle)

    # The record line of a streamed run is written when its stream ends, which can be just
    # after the worker published the answer.
    def chat_hello(r):
        """The streamed chat completion of conv-conf-2 (chat: no handle; its last message)."""
        msgs = (r.get("request_body") or {}).get("messages") if isinstance(r.get("request_body"), dict) else None
        return (r.get("path", "").endswith("/chat/completions") and bool(r.get("stream_events"))
                and bool(msgs) and msgs[-1].get("content") == "Hello")

    def streamed_run_recorded():
        return any(chat_hello(r) or any(names_handle(ev.get("data")) for ev in r.get("stream_events") or [])
                   for r in _records(simulator.record_path))

    wait_until(streamed_run_recorded, 10, "the streamed run in the simulator's record")

    checker = SpecChecker(SPEC)
    with open(simulator.record_path, encoding="utf-8") as f:
        n, problems = checker.check_lines(f)
    assert n > 0, "nothing was recorded"
    streamed = sum(1 for r in _records(simulator.record_path) if r.get("stream_events"))
    assert streamed > 0, "no streamed run was recorded"
    assert not problems, (f"{len(problems)} mismatch(es) in {n} exchanges "
                          f"({simulator.record_path}); first ones:\n" + "\n".join(problems[:25]))

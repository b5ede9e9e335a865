"""Assistants of the configuration are created or updated at start-up, idempotently."""
import re

import pytest

from awtest import answer_text

# Only the Assistants API keeps assistant objects; other backends send the definition with every turn.
pytestmark = pytest.mark.only_backend("assistants")


def ready_id(w, name):
    """The assistant id a worker logged for `name` ("assistant 'NAME' ready as asst_...")."""
    with w.cond:
        for e in w.events:
            m = e and re.fullmatch(rf"assistant '{re.escape(name)}' ready as (asst_\S+)", e.get("msg", ""))
            if m:
                return m.group(1)
    return None


def named(simulator, name):
    """Every assistant on the API whose metadata says it is our `name`."""
    out, after = [], None
    while True:
        page = simulator.api("GET", "/assistants?limit=100" + (f"&after={after}" if after else ""))
        out += [a for a in page["data"] if (a.get("metadata") or {}).get("aw_name") == name]
        if not page.get("has_more") or not page["data"]:
            return out
        after = page["data"][-1]["id"]


def test_restarts_reuse_the_assistant_and_a_changed_definition_updates_it(ctx, worker, simulator):
    name = f"Support Bot {ctx.id}"
    bot = {"name": name, "model": "gpt-4o", "instructions": "Answer from the handbook.",
           "tools": [{"type": "file_search"}]}

    w1 = worker("first", assistants=[dict(bot)])
    first = ready_id(w1, name)
    assert first and len(named(simulator, name)) == 1
    assert w1.stop() == 0

    # Same definition, same Redis: the remembered id is used, nothing is created.
    w2 = worker("same", assistants=[dict(bot)])
    assert ready_id(w2, name) == first
    assert w2.stop() == 0

    # Redis forgot the id (new prefix): the assistant is found by its metadata, not recreated.
    w3 = worker("forgot", assistants=[dict(bot)], redis_prefix=ctx.redis_prefix + "x")
    assert ready_id(w3, name) == first
    assert w3.stop() == 0
    assert len(named(simulator, name)) == 1

    # A changed definition updates the same assistant, and runs use the new instructions.
    changed = dict(bot, instructions="Answer from the 2026 handbook.")
    w4 = worker("changed", assistants=[changed])
    assert ready_id(w4, name) == first
    (a,) = named(simulator, name)
    assert a["id"] == first and a["instructions"] == "Answer from the 2026 handbook."
    req = ctx.ask("conv-assistant", "How do I reset my password?", assistant=name)
    resp = ctx.response_for(req["event_id"])
    assert resp["status"] == "completed"
    assert "2026 handbook" in answer_text(resp)

"""The chat backend (Chat Completions): the fleet keeps each conversation's history in Redis and
sends it with every turn, within the assistant's budget; a turn is stored once, whole, whatever
happens to the worker that generates it."""
import collections

import pytest

from awtest import SUPPORT_BOT, answer_text, conv_handle, history_turns, turn_handle, wait_until

pytestmark = pytest.mark.only_backend("chat")

FAST_GROUP = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}


def chat_requests(sim, after: int = -1) -> list[dict]:
    """The chat request bodies the simulator received after index `after`, oldest first."""
    return [r["body"] for r in sim.chat_requests(after) if isinstance(r.get("body"), dict)]


def last_index(sim) -> int:
    reqs = sim.chat_requests()
    return reqs[-1]["index"] if reqs else -1


def request_for(sim, after: int, question: str) -> dict:
    """The (last) request whose newest user message is `question`."""
    found = [b for b in chat_requests(sim, after)
             if [m for m in b["messages"] if m["role"] == "user"][-1]["content"] == question]
    assert found, f"no chat request asked {question!r}"
    return found[-1]


def test_second_turn_carries_the_first_turn_and_the_history_holds_both_once(ctx, worker, simulator):
    worker()
    mark = last_index(simulator)
    q1, q2 = "How do I reset my password?", "Thanks! And how do I change my email address?"
    r1 = ctx.response_for(ctx.ask("conv-chat-2", q1)["event_id"])
    r2 = ctx.response_for(ctx.ask("conv-chat-2", q2)["event_id"])
    assert r1["status"] == r2["status"] == "completed", (r1.obj, r2.obj)
    assert r1["backend"] == {"kind": "chat", "conversation": None, "turn": None}, r1.obj
    assert turn_handle(r2).startswith("chatcmpl-"), "the stored turn keeps its completion's id"

    first = request_for(simulator, mark, q1)
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert first["messages"][0]["content"] == SUPPORT_BOT["instructions"]
    second = request_for(simulator, mark, q2)
    assert second["messages"][1:] == [
        {"role": "user", "content": q1},
        {"role": "assistant", "content": answer_text(r1)},
        {"role": "user", "content": q2}], second["messages"]
    assert second["stream"] is True and second["stream_options"] == {"include_usage": True}

    turns = history_turns(conv_handle(r2))
    assert [t["e"] for t in turns] == [r1["event_id"], r2["event_id"]]
    assert turns[1]["m"] == second["messages"][3:] + [{"role": "assistant", "content": answer_text(r2)}]


def test_budget_sends_the_newest_whole_turns_only(ctx, worker, simulator):
    # system + current user message + one earlier turn (2 messages) = 4.
    bot = dict(SUPPORT_BOT, history={"max_messages": 4})
    worker(assistants=[bot])
    questions = [f"Question number {i} about my account?" for i in range(4)]
    answers = []
    mark = last_index(simulator)
    for q in questions:
        r = ctx.response_for(ctx.ask("conv-chat-budget", q)["event_id"])
        assert r["status"] == "completed", r.obj
        answers.append(answer_text(r))
    last = request_for(simulator, mark, questions[3])
    assert last["messages"][1:] == [
        {"role": "user", "content": questions[2]},
        {"role": "assistant", "content": answers[2]},
        {"role": "user", "content": questions[3]}], last["messages"]
    # What is stored is not what is sent: the history keeps every turn (its own cap is larger).
    assert len(history_turns("history:conv-chat-budget")) == 4


def test_history_cap_keeps_the_newest_turns(ctx, worker):
    worker(extra_env={"AW_HISTORY_MAX_TURNS": "2"})
    ids = []
    for i in range(3):
        r = ctx.response_for(ctx.ask("conv-chat-cap", f"Capped question {i}?")["event_id"])
        assert r["status"] == "completed", r.obj
        ids.append(r["event_id"])
    assert [t["e"] for t in history_turns("history:conv-chat-cap")] == ids[1:]


def test_context_too_long_fails_the_event_with_the_servers_code_and_the_conversation_goes_on(
        ctx, worker, sim_settings):
    worker()
    sim_settings.faults(max_context_tokens=5)
    bad = ctx.response_for(ctx.ask("conv-chat-ctx", "This question has far more than five words in it")["event_id"])
    assert bad["status"] == "failed", bad.obj
    assert bad["error"]["code"] == "context_length_exceeded", bad.obj
    sim_settings.faults(max_context_tokens=100000)
    ok = ctx.response_for(ctx.ask("conv-chat-ctx", "How do I reset my password?")["event_id"])
    assert ok["status"] == "completed", ok.obj
    # The failed turn left nothing behind: the history is the answered turn only.
    assert [t["e"] for t in history_turns("history:conv-chat-ctx")] == [ok["event_id"]]


def test_worker_killed_mid_turn_the_turn_is_generated_again_stored_once_with_a_new_attempt(
        ctx, worker, sim_settings):
    sim = sim_settings
    w1 = worker("doomed", kafka_properties=dict(FAST_GROUP))
    first = ctx.response_for(ctx.ask("conv-chat-crash", "How do I reset my password?")["event_id"])
    sim.faults(token_delay_ms=150)  # ~3 s of streaming: the kill lands mid-turn
    question = "Thanks! And how do I change my email address?"
    req = ctx.ask("conv-chat-crash", question, stream=True)
    ctx.deltas.wait_for(lambda ms: [m for m in ms if m.get("event_id") == req["event_id"]] or None, 30,
                        "the first delta of the turn")
    w1.kill()

    worker("heir", kafka_properties=dict(FAST_GROUP))
    resp = ctx.response_for(req["event_id"], timeout_s=90)
    assert resp["status"] == "completed", resp.obj
    ctx.responses.quiet_for(2.0)
    counts = collections.Counter(m.get("event_id") for m in ctx.responses.messages)
    assert counts[req["event_id"]] == 1, "answered exactly once"

    turns = history_turns(conv_handle(resp))
    assert [t["e"] for t in turns] == [first["event_id"], req["event_id"]], "each turn once, in order"
    assert [m["content"] for m in turns[1]["m"] if m["role"] == "user"] == [question]

    # The heir generated the text again: its deltas start at seq 0 with a higher attempt, and
    # the highest attempt's deltas concatenate to the answer.
    # Every delta is durable before the response: reading the deltas to their end finds them.
    final = answer_text(resp)
    ctx.deltas.wait_for(lambda ms: "".join(m["text"] for m in sorted(
        (m for m in ms if m.get("event_id") == req["event_id"] and m["attempt"] >= 1),
        key=lambda m: m["seq"])) == final, 30, "the regenerated text's deltas")
    mine = [m for m in ctx.deltas.messages if m.get("event_id") == req["event_id"]]
    top = max(m["attempt"] for m in mine)
    assert top >= 1 and min(m["attempt"] for m in mine) == 0, [(m["attempt"], m["seq"], m["text"]) for m in mine]
    best = sorted((m for m in mine if m["attempt"] == top), key=lambda m: m["seq"])
    assert [m["seq"] for m in best] == list(range(len(best)))
    assert "".join(m["text"] for m in best) == final

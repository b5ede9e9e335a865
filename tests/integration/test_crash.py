"""A worker killed (SIGKILL) while a run streams: another worker of the group resumes that run
by its stored id.  The event is answered exactly once, the user message is on the thread once,
and no second run is started."""
import collections

import pytest

from awtest import SUPPORT_BOT, answer_text, conv_handle, turn_handle, wait_until

# A dead member is noticed after the session timeout; the broker's minimum keeps the test short.
FAST_GROUP = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}


@pytest.mark.only_backend("assistants", "responses")  # chat generates the turn again: test_chat.py
def test_worker_killed_mid_run_another_resumes_the_run_without_duplicates(ctx, worker, sim_settings):
    sim = sim_settings
    w1 = worker("doomed", kafka_properties=dict(FAST_GROUP))
    first = ctx.ask("conv-crash", "How do I reset my password?")
    thread = conv_handle(ctx.response_for(first["event_id"]))

    sim.faults(token_delay_ms=150)  # ~3 s of streaming: the kill lands mid-run
    before = sim.stats()["streams_total"]
    question = "Thanks! And how do I change my email address?"
    req = ctx.ask("conv-crash", question, stream=True)
    wait_until(lambda: sim.stats()["active_streams"] >= 1 and sim.stats()["streams_total"] > before,
               30, "the run to be streaming")
    w1.kill()

    worker("heir", kafka_properties=dict(FAST_GROUP))
    resp = ctx.response_for(req["event_id"], timeout_s=90)
    assert resp["status"] == "completed", resp.obj
    assert conv_handle(resp) == thread
    final = answer_text(resp)

    ctx.responses.quiet_for(2.0)
    counts = collections.Counter(m.get("event_id") for m in ctx.responses.messages)
    assert counts[req["event_id"]] == 1, "answered exactly once"
    assert sim.user_texts(thread).count(question) == 1, "the user message is on the thread once"
    turns = sim.turns_of(thread)
    assert len(turns) == 2, f"one turn (run, response) per message, no second one: {turns}"
    assert turn_handle(resp) == turns[1]

    # The heir republished the whole answer as deltas from seq 0 of the same turn, as the
    # next attempt.
    mine = [m for m in ctx.deltas.wait_for(
        lambda ms: [m for m in ms if m.get("event_id") == req["event_id"] and m["seq"] == 0
                    and m["text"] == final] or None, 30, "the republished answer")]
    assert mine and mine[-1]["run_id"] == turn_handle(resp)
    assert mine[-1]["attempt"] == 1, mine[-1].obj


@pytest.mark.only_backend("assistants")  # a message apart from its run exists only there
def test_reprocessed_event_whose_message_was_added_starts_only_the_run(ctx, worker, simulator, redis_client):
    """The earlier attempt died between adding the message and starting the run: the progress
    record says "claimed", the thread has the message; the event must not add it again."""
    worker()
    first = ctx.ask("conv-halfway", "How do I reset my password?")
    thread = conv_handle(ctx.response_for(first["event_id"]))

    question = "And how do I change my email address?"
    event_id = "evt-halfway-1"
    redis_client.set(f"{ctx.redis_prefix}:{{c:conv-halfway}}:evp:{event_id}", "-")
    simulator.api("POST", f"/threads/{thread}/messages",
                  {"role": "user", "content": question,
                   "metadata": {"event_id": event_id, "conversation_id": "conv-halfway"}})
    ctx.ask("conv-halfway", question, event_id=event_id)
    resp = ctx.response_for(event_id)
    assert resp["status"] == "completed", resp.obj
    assert simulator.user_texts(thread).count(question) == 1
    assert len(simulator.turns_of(thread)) == 2
    assert len(simulator.api("GET", f"/threads/{thread}/runs?limit=100")["data"]) == 2


def test_reprocessed_event_claimed_before_its_message_was_added_runs_normally(ctx, worker, simulator,
                                                                            redis_client):
    """The earlier attempt died after claiming but before adding the message: the lookup on
    the thread finds nothing, and the turn runs in full, once."""
    worker()
    first = ctx.ask("conv-claimed", "How do I reset my password?")
    thread = conv_handle(ctx.response_for(first["event_id"]))
    question = "And how do I change my email address?"
    event_id = "evt-claimed-1"
    redis_client.set(f"{ctx.redis_prefix}:{{c:conv-claimed}}:evp:{event_id}", "-")
    ctx.ask("conv-claimed", question, event_id=event_id)
    resp = ctx.response_for(event_id)
    assert resp["status"] == "completed", resp.obj
    assert simulator.user_texts(thread).count(question) == 1
    assert len(simulator.turns_of(thread)) == 2


@pytest.mark.only_backend("responses")
def test_reprocessed_event_whose_response_was_created_is_answered_from_it(ctx, worker, simulator,
                                                                       redis_client):
    """The Responses counterpart of "the message was added": the earlier attempt died after its
    POST /responses was applied and before it recorded the checkpoint (the progress record says
    "claimed").  The response is in the conversation (input and answer); the event must be
    answered from it, without a second response and without the user message twice."""
    worker()
    first = ctx.ask("conv-created", "How do I reset my password?")
    conv = conv_handle(ctx.response_for(first["event_id"]))
    question = "And how do I change my email address?"
    event_id = "evt-created-1"
    redis_client.set(f"{ctx.redis_prefix}:{{c:conv-created}}:evp:{event_id}", "-")
    # What the earlier attempt created (the worker's shape: input, conversation, our tags).
    made = simulator.api("POST", "/responses", {
        "model": SUPPORT_BOT["model"], "instructions": SUPPORT_BOT["instructions"],
        "conversation": conv, "input": [{"role": "user", "content": question}],
        "background": True, "store": True,
        "metadata": {"event_id": event_id, "conversation_id": "conv-created"}})
    done = wait_until(lambda: (lambda r: r if r["status"] == "completed" else None)(
        simulator.api("GET", f"/responses/{made['id']}")), 30, "the seeded response to complete")
    seeded = "".join(p.get("text") or "" for o in done["output"] if o.get("type") == "message"
                     for p in o.get("content") or [])
    assert seeded

    ctx.ask("conv-created", question, event_id=event_id)
    resp = ctx.response_for(event_id)
    assert resp["status"] == "completed", resp.obj
    assert answer_text(resp) == seeded, "answered from the response the earlier attempt made"
    assert simulator.user_texts(conv).count(question) == 1
    assert simulator.turns_of(conv, event_id) == [made["id"]], "no second response"

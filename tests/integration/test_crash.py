"""A worker killed (SIGKILL) while a run streams: another worker of the group resumes that run
by its stored id.  The event is answered exactly once, the user message is on the thread once,
and no second run is started."""
import collections

from awtest import answer_text, wait_until

# A dead member is noticed after the session timeout; the broker's minimum keeps the test short.
FAST_GROUP = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}


def test_worker_killed_mid_run_another_resumes_the_run_without_duplicates(ctx, worker, sim_settings):
    sim = sim_settings
    w1 = worker("doomed", kafka_properties=dict(FAST_GROUP))
    first = ctx.ask("conv-crash", "How do I reset my password?")
    thread = ctx.response_for(first["event_id"])["thread_id"]

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
    assert resp["thread_id"] == thread
    final = answer_text(resp)

    ctx.responses.quiet_for(2.0)
    counts = collections.Counter(m.get("event_id") for m in ctx.responses.messages)
    assert counts[req["event_id"]] == 1, "answered exactly once"
    assert sim.user_texts(thread).count(question) == 1, "the user message is on the thread once"
    runs = sim.api("GET", f"/threads/{thread}/runs?limit=100")["data"]
    assert len(runs) == 2, f"one run per message, no second run: {[r['id'] for r in runs]}"
    assert resp["run_id"] in {r["id"] for r in runs}

    # The heir republished the whole answer as deltas from seq 0 of the same run.
    mine = [m for m in ctx.deltas.wait_for(
        lambda ms: [m for m in ms if m.get("event_id") == req["event_id"] and m["seq"] == 0
                    and m["text"] == final] or None, 30, "the republished answer")]
    assert mine and mine[-1]["run_id"] == resp["run_id"]


def test_reprocessed_event_whose_message_was_added_starts_only_the_run(ctx, worker, simulator, redis_client):
    """The earlier attempt died between adding the message and starting the run: the progress
    record says "claimed", the thread has the message; the event must not add it again."""
    worker()
    first = ctx.ask("conv-halfway", "How do I reset my password?")
    thread = ctx.response_for(first["event_id"])["thread_id"]

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
    assert len(simulator.api("GET", f"/threads/{thread}/runs?limit=100")["data"]) == 2


def test_reprocessed_event_claimed_before_its_message_was_added_runs_normally(ctx, worker, simulator,
                                                                            redis_client):
    """The earlier attempt died after claiming but before adding the message: the lookup on
    the thread finds nothing, and the turn runs in full, once."""
    worker()
    first = ctx.ask("conv-claimed", "How do I reset my password?")
    thread = ctx.response_for(first["event_id"])["thread_id"]
    question = "And how do I change my email address?"
    event_id = "evt-claimed-1"
    redis_client.set(f"{ctx.redis_prefix}:{{c:conv-claimed}}:evp:{event_id}", "-")
    ctx.ask("conv-claimed", question, event_id=event_id)
    resp = ctx.response_for(event_id)
    assert resp["status"] == "completed", resp.obj
    assert simulator.user_texts(thread).count(question) == 1

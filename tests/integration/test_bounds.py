"""Bounded whatever the input (issue 11, part 3), end to end on the session's broker, Redis and
simulator:

- a burst on one conversation beyond worker.max_queue_per_conversation is answered `rejected`
  (conversation_queue_full, with a dead letter holding the original bytes), never dropped, and
  other conversations go on;
- consumption pauses while the decoded events in flight pass worker.max_inflight_bytes;
- a turn that asks for more rounds of tool calls than worker.max_tool_rounds is cancelled and
  answered `failed` (too_many_tool_rounds), and its conversation goes on;
- a turn's Redis hash keeps only the outcomes of finished rounds (no outputs), and every key the
  worker writes has a time-to-live from its setting (the conversation's handle too, renewed on use).

Needs: Kafka, Redis, the simulator (the session's stack).
"""
from __future__ import annotations

import threading

from awtest import BACKEND, SUPPORT_BOT, answer_text, assert_valid, error_code, make_request, wait_until
from test_tools import (OUT, ask, by_location, location, new_conv, tool_calls, tool_requests,
                        weather_worker)


# ---- per-conversation queue limit ------------------------------------------------------------

def test_burst_on_one_conversation_beyond_its_queue_limit_is_rejected_and_others_go_on(ctx, worker,
                                                                                      sim_settings):
    simulator = sim_settings
    limit = 3
    worker("queue-limit", extra_env={"AW_MAX_QUEUE_PER_CONVERSATION": str(limit)})
    simulator.faults(token_delay_ms=60)  # the first run takes long enough for the burst to queue
    conv = new_conv("conv-burst")
    burst = []
    for i in range(10):
        r = make_request(conv, f"burst question {i}")
        ctx.send(r, partition=0)
        burst.append(r)
    others = [ctx.ask(new_conv("conv-other"), f"other question {i}") for i in range(4)]

    got = ctx.responses_for([r["event_id"] for r in burst + others], timeout_s=120)
    for m in got.values():
        assert_valid("response", m)
    statuses = [got[r["event_id"]]["status"] for r in burst]
    # The first `limit` events were queued (the head running), the rest of the burst came while
    # they were: each answered at once, none dropped.
    assert statuses == ["completed"] * limit + ["rejected"] * (10 - limit), statuses
    for r in burst[limit:]:
        m = got[r["event_id"]]
        assert error_code(m) == "conversation_queue_full", m.obj
        assert str(limit) in m["error"]["message"]
    assert all(got[r["event_id"]]["status"] == "completed" for r in others)
    # The rejected ones are dead-lettered with their bytes, for a replay.
    dl = ctx.dlq.wait_count(10 - limit, 30)
    assert sorted(d["event_id"] for d in dl) == sorted(r["event_id"] for r in burst[limit:])
    assert all(d["error"]["code"] == "conversation_queue_full" for d in dl)


# ---- byte budget of events in flight ---------------------------------------------------------

def test_inflight_byte_budget_pauses_consumption_and_everything_is_answered(ctx, worker, sim_settings):
    simulator = sim_settings
    text_bytes, budget = 40_000, 100_000  # about 2.5 events' worth: at most 3 in flight
    worker("byte-budget", max_in_flight=100, extra_env={"AW_MAX_INFLIGHT_BYTES": str(budget)})
    simulator.faults(token_delay_ms=20)
    reqs = [ctx.ask(new_conv("conv-big"), f"question {i} " + "x" * text_bytes) for i in range(16)]
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], simulator.stats()["active_streams"])

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        got = ctx.responses_for([r["event_id"] for r in reqs], timeout_s=180)
    finally:
        done.set()
        t.join(10)
    assert all(m["status"] == "completed" for m in got.values()), [m.obj for m in got.values()]
    assert 1 <= peak[0] <= 3, f"at most 3 events of {text_bytes} bytes within {budget} bytes, saw {peak[0]}"
    wait_until(lambda: simulator.stats()["active_streams"] == 0, 10, "streams to close")


# ---- tool rounds: the cap, and what stays in Redis ---------------------------------------------

def test_rounds_past_the_cap_end_the_turn_too_many_tool_rounds_and_the_conversation_goes_on(
        ctx, worker, tool_service):
    svc = tool_service()
    w = weather_worker(worker, extra_env={"AW_MAX_TOOL_ROUNDS": "1"})
    conv = new_conv("conv-cap")
    req = ask(ctx, conv, "What's the weather in Paris? Check twice.")
    (first,) = tool_requests(ctx, svc, req, 1)
    svc.reply(first, output=OUT["Paris"])
    resp = ctx.response_for(req["event_id"], 60)
    assert_valid("response", resp)
    assert resp["status"] == "failed", resp.obj
    assert error_code(resp) == "too_many_tool_rounds"
    assert "worker.max_tool_rounds" in resp["error"]["message"]
    # The first round's call is listed; the second round was never published.
    assert tool_calls(resp) == [(first["tool_call_id"], "get_weather", "output")]
    assert len(svc.requests_for(conv)) == 1
    assert any("(worker.max_tool_rounds); cancelling it" in ln for ln in w.lines)
    # The turn was cancelled at the backend: the conversation takes its next event.
    nxt = ask(ctx, conv, "What's the weather in Tokyo?")
    (t,) = tool_requests(ctx, svc, nxt, 1, after=1)
    svc.reply(t, output=OUT["Tokyo"])
    resp2 = ctx.response_for(nxt["event_id"], 60)
    assert resp2["status"] == "completed", resp2.obj
    assert answer_text(resp2) == f"Tokyo: {OUT['Tokyo']}."


def test_finished_rounds_keep_outcomes_not_outputs_and_every_key_expires(ctx, worker, tool_service,
                                                                         redis_client):
    svc = tool_service()
    weather_worker(worker, extra_env={"AW_CONVERSATION_TTL_S": "5000", "AW_OUTCOME_TTL_S": "4000",
                                      "AW_TOOL_STATE_TTL_S": "3000", "AW_TOOL_STATE_DONE_TTL_S": "2000"})
    conv = new_conv("conv-state")
    req = ask(ctx, conv, "What's the weather in Paris and in Tokyo? Check twice.")
    first = by_location(tool_requests(ctx, svc, req, 2))
    big = "y" * 20_000  # outputs large enough to notice if they stayed
    for t in first.values():
        svc.reply(t, output=big)
    second = by_location(tool_requests(ctx, svc, req, 2, after=2))
    r = redis_client
    (turn_key,) = r.keys(f"{ctx.redis_prefix}:{{c:{conv}}}:turn:*")
    # While round 2 waits: round 1's outputs are gone, its outcomes stay.
    h = r.hgetall(turn_key)
    for t in first.values():
        cid = t["tool_call_id"]
        assert f"o:{cid}" not in h and f"x:{cid}" not in h and f"d:{cid}" not in h, sorted(h)
        assert h.get(f"k:{cid}") == "output" and h.get(f"n:{cid}") == "get_weather"
    assert 0 < r.pttl(turn_key) <= 3000 * 1000
    for t in second.values():
        svc.reply(t, output=OUT[location(t)])
    resp = ctx.response_for(req["event_id"], 60)
    assert resp["status"] == "completed", resp.obj
    assert len(resp["tool_calls"]) == 4

    def finished():
        h = r.hgetall(turn_key)
        return h if h.get("state") == "done" else None

    h = wait_until(finished, 10, "the turn's state to be done")
    assert not [k for k in h if k.startswith(("o:", "x:", "d:", "p:"))], sorted(h)
    assert 0 < r.pttl(turn_key) <= 2000 * 1000
    # Every other key of the conversation and the fleet expires.
    # (Chat: the fleet's history instead of a handle, with the same lifetime, renewed by each
    # answer; the turn's pending record went with its commit.)
    handle_key = f"{ctx.redis_prefix}:{{c:{conv}}}:hist" if BACKEND == "chat" else ctx.thread_key(conv)
    assert 4000 < r.ttl(handle_key) <= 5000
    if BACKEND == "chat":
        assert 4000 < r.ttl(handle_key + ":ids") <= 5000
        assert not r.keys(f"{ctx.redis_prefix}:{{c:{conv}}}:hist:p:*")
    for k in r.keys(f"{ctx.redis_prefix}:{{c:{conv}}}:ev*"):
        assert 0 < r.ttl(k) <= 4000, k
    for k in r.keys(f"{ctx.redis_prefix}:tc:*") + r.keys(f"{ctx.redis_prefix}:wake:*"):
        assert 0 < r.pttl(k) <= 3000 * 1000, k
    # The handle's lifetime is renewed on use.
    r.expire(handle_key, 100)
    nxt = ctx.ask(conv, "Thanks!", assistant=SUPPORT_BOT["name"])
    assert ctx.response_for(nxt["event_id"], 60)["status"] == "completed"
    assert r.ttl(handle_key) > 4000

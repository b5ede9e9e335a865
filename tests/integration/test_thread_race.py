"""Two workers creating a conversation's thread at once end with one thread in use; the
extra one is deleted.

Two consumer groups read the same request, so two workers handle the same new conversation
at the same moment; the simulator's latency keeps both thread creations in flight together.
"""
import json
import re

import pytest

from awtest import BACKEND, conv_handle, wait_until


def created_handles(simulator, conversation_id):
    """Ids of the Responses API conversations created for our conversation_id (the worker tags
    them with metadata conversation_id), from the simulator's record."""
    out = []
    with open(simulator.record_path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if r.get("method") != "POST" or r.get("path") != "/v1/conversations" or r.get("status") != 200:
                continue
            md = (r.get("request_body") or {}).get("metadata") or {}
            if md.get("conversation_id") == conversation_id:
                out.append((r.get("response_body") or {}).get("id"))
    return out


@pytest.mark.only_backend("assistants", "responses")  # chat has no handle at the API
def test_concurrent_thread_creation_keeps_one_thread_and_deletes_the_other(ctx, worker, sim_settings,
                                                                           redis_client):
    simulator = sim_settings
    conv = f"conv-race-{ctx.id}"
    w1 = worker("racer-1", group_id=ctx.group_id + "-a")
    w2 = worker("racer-2", group_id=ctx.group_id + "-b")
    # Every API call takes 2.5 s, so both thread creations are in flight together even when
    # one worker's first fetch is slower than the other's (fetch wait + backoff ~1 s).
    simulator.faults(latency_ms=2500)
    req = ctx.ask(conv, "How do I reset my password?")

    got = ctx.responses.wait_count(2, timeout_s=90, pred=lambda m: m.get("event_id") == req["event_id"])
    threads = {conv_handle(m) for m in got if conv_handle(m)}
    assert len(threads) == 1, f"both workers must use one thread, got {threads}"
    (winner,) = threads
    assert redis_client.get(ctx.thread_key(conv)) == winner

    if BACKEND == "assistants":
        def loser_line():
            for w in (w1, w2):
                with w.cond:
                    for e in w.events:
                        if e and "created the conversation's thread first" in e.get("msg", ""):
                            return e["msg"]
            return None

        msg = wait_until(loser_line, 30, "a worker to report the lost race")
        m = re.search(r"using (\S+), deleting (\S+)", msg)
        assert m and m.group(1).rstrip(",") == winner
        loser = m.group(2)
        path = "/v1/threads/"
    else:
        # The worker does not log the lost claim on this backend: the simulator's record
        # shows both creations.
        made = wait_until(lambda: (lambda h: h if len(h) >= 2 else None)(created_handles(simulator, conv)),
                          30, "two conversations created for the race")
        assert len(made) == 2 and winner in made, (made, winner)
        (loser,) = [h for h in made if h != winner]
        path = "/v1/conversations/"
    assert loser != winner
    simulator.faults(latency_ms=0)
    status = wait_until(lambda: (lambda s: s if s == 404 else None)(simulator._call("GET", path + loser)[0]),
                        30, f"{loser} to be deleted")
    assert status == 404
    assert simulator._call("GET", path + winner)[0] == 200

"""Two workers creating a conversation's thread at once end with one thread in use; the
extra one is deleted.

Two consumer groups read the same request, so two workers handle the same new conversation
at the same moment; the simulator's latency keeps both thread creations in flight together.
"""
import re

from awtest import wait_until


def test_concurrent_thread_creation_keeps_one_thread_and_deletes_the_other(ctx, worker, sim_settings,
                                                                           redis_client):
    simulator = sim_settings
    w1 = worker("racer-1", group_id=ctx.group_id + "-a")
    w2 = worker("racer-2", group_id=ctx.group_id + "-b")
    # Every API call takes 2.5 s, so both thread creations are in flight together even when
    # one worker's first fetch is slower than the other's (fetch wait + backoff ~1 s).
    simulator.faults(latency_ms=2500)
    req = ctx.ask("conv-race", "How do I reset my password?")

    got = ctx.responses.wait_count(2, timeout_s=90, pred=lambda m: m.get("event_id") == req["event_id"])
    threads = {m["thread_id"] for m in got if m.get("thread_id")}
    assert len(threads) == 1, f"both workers must use one thread, got {threads}"
    (winner,) = threads
    assert redis_client.get(ctx.thread_key("conv-race")) == winner

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
    assert loser != winner
    simulator.faults(latency_ms=0)
    status = wait_until(lambda: (lambda s: s if s == 404 else None)(simulator._call("GET", f"/v1/threads/{loser}")[0]),
                        30, f"thread {loser} to be deleted")
    assert status == 404
    assert simulator._call("GET", f"/v1/threads/{winner}")[0] == 200

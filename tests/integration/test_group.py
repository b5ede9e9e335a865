"""Workers of one consumer group share the partitions and both serve."""


def test_two_workers_in_one_group_both_serve(ctx, worker):
    w1 = worker("w1")
    w2 = worker("w2")  # ready = it got its share of the partitions (the group rebalanced)
    reqs = [ctx.ask(f"conv-group-{i:02d}", f"question {i}") for i in range(24)]
    got = ctx.responses_for([r["event_id"] for r in reqs], timeout_s=90)
    assert all(m["status"] == "completed" for m in got.values())
    ids = {r["event_id"] for r in reqs}

    def served(w):
        with w.cond:
            return {v for e in w.events if e for v in e.values() if isinstance(v, str) and v in ids}

    s1, s2 = served(w1), served(w2)
    assert s1 and s2, f"w1 logged {len(s1)} of our events, w2 {len(s2)}"

"""max_in_flight bounds the events a worker holds: consumption pauses at the limit and
resumes below it, and every event is still answered."""
import threading

from awtest import make_request, wait_until


def test_in_flight_limit_pauses_consumption_and_everything_is_answered(ctx, worker, sim_settings):
    simulator = sim_settings
    limit = 4
    worker("bounded", max_in_flight=limit)
    simulator.faults(token_delay_ms=20)  # ~0.4 s per run: many requests wait in Kafka
    reqs = [ctx.ask(f"conv-bp-{i:02d}", f"question {i}") for i in range(40)]

    # Sample the simulator's open streams while the worker drains the backlog.
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], simulator.stats()["active_streams"])

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        got = ctx.responses_for([r["event_id"] for r in reqs], timeout_s=120)
    finally:
        done.set()
        t.join(10)
    assert all(m["status"] == "completed" for m in got.values())
    assert 1 <= peak[0] <= limit, f"at most {limit} runs at once, saw {peak[0]}"
    wait_until(lambda: simulator.stats()["active_streams"] == 0, 10, "streams to close")


def test_partition_limit_pauses_only_that_partition_and_everything_is_answered(ctx, worker, sim_settings):
    simulator = sim_settings
    per_partition = 2
    worker("per-partition", max_in_flight=100, extra_env={"AW_MAX_IN_FLIGHT_PER_PARTITION": str(per_partition)})
    simulator.faults(token_delay_ms=20)
    # Twenty conversations, all on partition 0: only its own limit can hold them back.
    reqs = []
    for i in range(20):
        r = make_request(f"conv-pp-{i:02d}", f"question {i}")
        ctx.send(r, partition=0)
        reqs.append(r)
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], simulator.stats()["active_streams"])

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        got = ctx.responses_for([r["event_id"] for r in reqs], timeout_s=120)
    finally:
        done.set()
        t.join(10)
    assert all(m["status"] == "completed" for m in got.values())
    assert 1 <= peak[0] <= per_partition, f"at most {per_partition} runs of one partition at once, saw {peak[0]}"

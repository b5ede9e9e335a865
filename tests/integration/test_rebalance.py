"""A worker that is given partitions reads their committed offsets, and the commit metadata
(which offsets past them are answered already), off its event loop (issue 11): while the broker
stalls in the middle of that read, the joining worker's loop goes on serving (/healthz answers
200 past its 10 s staleness bound), the partitions it waits for consume nothing, and once the
broker is back every event is answered exactly once.

Needs the broker, Redis and the simulator (conftest.py); stops the session's broker (SIGSTOP)
for about 14 s and always resumes it."""
from __future__ import annotations

import os
import re
import signal
import socket
import time
import urllib.error
import urllib.request

from awtest import wait_until

STALL_S = 14  # longer than /healthz's staleness bound (10 s) and the old blocking read (10 s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(port: int) -> int | None:
    """/healthz's status, or None when it does not answer within 2 s."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


_NEWLY_ADDED = re.compile(r"incremental assignment: (\d+) newly added")


def _given_partitions(e: dict) -> bool:
    """librdkafka's debug line (debug=cgrp) of a request consumer whose group's answer gives it
    partitions: the worker reads their committed offsets right after."""
    m = _NEWLY_ADDED.search(str(e.get("msg", "")))
    return bool(m) and int(m.group(1)) > 0 and "#consumer-" in str(e.get("kafka_client", ""))


def test_a_worker_given_partitions_while_the_broker_stalls_stays_live_and_answers_once(ctx, worker, stack):
    # Sessions and transactions outlast the stall, so that neither the group nor the
    # transaction coordinator takes the work away when the broker resumes.
    props = {"session.timeout.ms": "60000", "transaction.timeout.ms": "60000"}
    w1 = worker("w1", kafka_properties=props)
    first = [ctx.ask(f"conv-rebal-{i:02d}", f"question {i}") for i in range(24)]
    ctx.responses_for([r["event_id"] for r in first[:8]], 90)
    port = free_port()
    w2 = worker("w2", wait=False, kafka_properties=dict(props, debug="cgrp"),
                extra_env={"AW_HEALTH_PORT": str(port), "AW_LOG_LEVEL": "debug"})
    w2.wait_msg("worker ready", 60)
    wait_until(lambda: healthz(port) == 200, 30, "w2's /healthz")
    # Events keep coming while w2 joins: some land on the partitions that move to it.
    second = [ctx.ask(f"conv-rebal-{i:02d}", f"question {i}") for i in range(24, 48)]
    # Cooperative rebalancing: w1 gives up half of its partitions first (w2's first answer
    # gives it none), then w2 is given them; its read of their start follows at once, and
    # the broker stops before it can answer (librdkafka needs tens of milliseconds here).
    w2.wait_log(_given_partitions, 120, "partitions given to w2")
    kafka_pid = int((stack.run_dir / "kafka" / "pid").read_text().strip())
    probes: list[tuple[float, int | None]] = []
    os.kill(kafka_pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < STALL_S:
            probes.append((round(time.monotonic() - t0, 1), healthz(port)))
            time.sleep(0.1)  # the probe period: this loop is the observation window
    finally:
        os.kill(kafka_pid, signal.SIGCONT)
    bad = [(t, st) for t, st in probes if st != 200]
    assert not bad, f"w2's /healthz failed while the broker stalled: {bad}\n" + w2.tail(20)
    assert len(probes) >= STALL_S * 4, probes  # each probe was answered at once

    # Once the broker is back: every event answered, exactly once.
    ids = [r["event_id"] for r in first + second]
    got = ctx.responses_for(ids, 240)
    assert all(m["status"] == "completed" for m in got.values())
    ctx.responses.quiet_for(3)
    counts: dict[str, int] = {}
    for m in ctx.responses.messages:
        e = m.get("event_id")
        if e in got:
            counts[e] = counts.get(e, 0) + 1
    assert all(n == 1 for n in counts.values()), {e: n for e, n in counts.items() if n != 1}
    # w2 consumed its partitions only once their start was known.
    started = w2.logged("partitions started")
    assert started, w2.tail(30)
    assert w1.count("partitions started") >= 1

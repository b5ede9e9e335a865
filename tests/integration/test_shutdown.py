"""A graceful shutdown never blocks the event loop (issue 11, part 3: "nothing may block the
loop"): while the worker makes its last Kafka commit, the loop goes on beating the operations
endpoint's heartbeat, so a liveness probe keeps getting 200 even while the transaction
coordinator does not answer; and the shutdown still commits what was answered, exactly once.

Needs the broker, Redis and the simulator (conftest.py); stops the session's broker (SIGSTOP) for
about 45 s and always resumes it."""
from __future__ import annotations

import os
import signal
import socket
import time
import urllib.error
import urllib.request

from confluent_kafka import Consumer, TopicPartition

from awtest import Worker, make_request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(port: int) -> int | None:
    """/healthz's status, or None when nothing listens (the worker closed its ops endpoint)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except (urllib.error.URLError, ConnectionError):
        return None


def test_liveness_is_answered_while_the_last_commit_waits_for_a_stopped_broker(ctx, worker, stack,
                                                                               monkeypatch):
    # Commits at most once a minute (worker.txn_interval_ms; the first one at start-up), so the
    # answer waits in the open transaction, its partitions registered with the coordinator
    # (delivered); then the broker stops
    # and SIGTERM comes.  The drain's grace period (4 s here) ends with that event in flight, and the
    # last commit has to talk to the stopped coordinator.  A blocked loop's heartbeat is stale
    # after 10 s (/healthz 503): probed every half second for 15 s after the grace period,
    # /healthz must answer 200 for as long as the endpoint is open.  Once the broker is back the
    # worker ends its shutdown, exits 0, and the answer is committed exactly once.
    orig_config = Worker._config

    def slow_commits(self):
        cfg = orig_config(self)
        cfg.setdefault("worker", {})["txn_interval_ms"] = 60000
        # A short grace period: what is tested starts when it ends (the default 30 s would
        # only make the test wait).
        cfg["worker"]["shutdown_grace_ms"] = 4000
        return cfg

    monkeypatch.setattr(Worker, "_config", slow_commits)
    port = free_port()
    # A session and a transaction timeout longer than the stop, so that neither the group nor
    # the coordinator takes the work away meanwhile (those paths end the drain differently).
    w = worker(extra_env={"AW_HEALTH_PORT": str(port)},
               kafka_properties={"session.timeout.ms": "120000", "transaction.timeout.ms": "120000"})
    req = ctx.ask("conv-shutdown-1", "How do I reset my password?")
    w.wait_log(lambda e: e.get("msg") == "turn completed" and e.get("event_id") == req["event_id"], 30,
               "the turn")
    assert not [m for m in ctx.responses.quiet_for(1.5) if m.get("event_id") == req["event_id"]], \
        "the answer is in the open transaction, not committed yet"
    kafka_pid = int((stack.run_dir / "kafka" / "pid").read_text().strip())
    probes: list[tuple[float, int | None]] = []
    os.kill(kafka_pid, signal.SIGSTOP)
    try:
        w.proc.send_signal(signal.SIGTERM)
        w.wait_log(lambda e: "shutdown grace period over" in str(e.get("msg", "")), 60,
                   "the end of the grace period")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 15 and not w.logged("worker stopped"):
            probes.append((round(time.monotonic() - t0, 1), healthz(port)))
            time.sleep(0.5)  # the probe period: this loop is the observation window
    finally:
        os.kill(kafka_pid, signal.SIGCONT)
    stopped = bool(w.logged("worker stopped"))
    bad = [(t, st) for t, st in probes if st != 200 and not (st is None and stopped)]
    assert not bad, f"/healthz failed while the last commit waited for the broker: {bad}\n" + w.tail(20)
    assert len(probes) >= 20 or stopped, probes
    assert w.stop(120) == 0, w.tail()
    assert [e for e in w.events if e and str(e.get("msg", "")).startswith("shutdown: last kafka commit")], w.tail()
    # Committed by the last commit, once.
    resp = ctx.response_for(req["event_id"], 30)
    assert resp["status"] == "completed", resp.obj
    ctx.responses.quiet_for(2)
    assert sum(1 for m in ctx.responses.messages if m.get("event_id") == req["event_id"]) == 1


def test_at_least_once_shutdown_commits_the_answered_offsets_without_blocking(ctx, worker, monkeypatch):
    # At-least-once, offsets commit every commit_interval_ms (here once a minute), so at SIGTERM
    # the answered event's offset is not committed yet: the shutdown's last commit (an
    # asynchronous one whose answer ends the shutdown) must commit it: the group's committed
    # offset is the one after the event's.
    orig_config = Worker._config

    def slow_commits(self):
        cfg = orig_config(self)
        cfg.setdefault("worker", {})["commit_interval_ms"] = 60000
        return cfg

    monkeypatch.setattr(Worker, "_config", slow_commits)
    w = worker(extra_env={"AW_EXACTLY_ONCE": "false"})
    req = make_request("conv-shutdown-alo", "How do I reset my password?")
    partition, offset = ctx.send(req)
    assert ctx.response_for(req["event_id"], 30)["status"] == "completed"
    assert w.stop(60) == 0, w.tail()
    assert w.logged("shutdown: last kafka commit committed"), w.tail()
    c = Consumer({"bootstrap.servers": ctx.kafka, "group.id": ctx.group_id, "enable.auto.commit": False})
    try:
        tp = c.committed([TopicPartition(ctx.topics["requests"], partition)], timeout=10)[0]
    finally:
        c.close()
    assert tp.offset == offset + 1, f"committed {tp.offset}, the answered event is at {offset}"


def _join_answered(e: dict) -> bool:
    """librdkafka's debug line (debug=cgrp) of the request consumer saying the group answered
    its JoinGroup with the cooperative protocol: from there until its first assignment
    arrives, librdkafka 2.0.2 aborts when the consumer is destroyed (upstream issue #4312)."""
    msg = str(e.get("msg", ""))
    return ("#consumer-" in str(e.get("kafka_client", "")) and "JoinGroup response: GenerationId" in msg
            and "cooperative-sticky" in msg)


def test_a_sigterm_before_the_first_assignment_exits_cleanly(ctx, worker):
    # Ten workers, each stopped before its first assignment: the even ones as soon as the
    # request consumer logged its subscription (its group has not answered yet), the odd
    # ones as soon as the group answered its join (librdkafka's cgrp debug line), which is
    # where the chaos test's workers aborted on SIGTERM (2 of 77, about 1 s after start:
    # the first coordinator lookup of a new group is retried after 1 s): there the old
    # close aborted every time on this machine.  Each must exit 0 with its "worker stopped".
    requests = ctx.topics["requests"]
    for i in range(10):
        at_join = i % 2 == 1
        w = worker(f"early{i}", wait=False, kafka_properties={"debug": "cgrp"},
                   extra_env={"AW_LOG_LEVEL": "debug"})
        w.wait_log(lambda e: e.get("msg") == "consumer subscribed" and e.get("topic") == requests, 60,
                   "the request consumer's subscription")
        if at_join:
            w.wait_log(_join_answered, 60, "the group's answer to the join")
        w.proc.send_signal(signal.SIGTERM)
        rc = w.stop(60)
        assert rc == 0, f"run {i} ({'at the join' if at_join else 'at the subscription'}) exited {rc}:\n" + w.tail(15)
        assert w.logged("worker stopped"), w.tail(15)


def test_a_sigterm_right_after_an_assignment_exits_cleanly(ctx, worker):
    # SIGTERM as soon as the worker logged "partitions assigned": the committed offsets of
    # the partitions just assigned are being read off the loop (kafka_committed.c) and the
    # close must not wait for, nor be kept from finishing by, that read.  It hung for good in
    # rd_kafka_destroy when the fetch was cancelled under way.  Each of five workers (one
    # group: each new one is assigned every partition again) must exit 0 within the grace.
    for i in range(5):
        w = worker(f"assigned{i}", wait=False, kafka_properties={"debug": "cgrp,consumer"},
                   extra_env={"AW_LOG_LEVEL": "debug"})
        w.wait_msg("partitions assigned", 60)
        w.proc.send_signal(signal.SIGTERM)
        rc = w.stop(40)
        assert rc == 0, f"run {i} exited {rc}:\n" + w.tail(15)
        assert w.logged("worker stopped"), w.tail(15)

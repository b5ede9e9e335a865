"""Load driver for tests/bench/bench_worker.sh: measures the worker, prints figures.

Not a pass/fail test.  Two phases, each on fresh topics and a fresh simulator:

  throughput  N requests over C conversations are produced BEFORE the worker starts, so the
              worker is never waiting for input; the simulator answers instantly.  Reports
              events/s (first to last response) and the worker's CPU microseconds per event
              (utime+stime from /proc between its partition assignment and the last response).
  inflight    C conversations, one request each, against a simulator that streams slowly
              (token delay), so every run is in flight at once.  Once the simulator reports C
              active streams, the worker's RSS is sampled; the idle RSS (after start-up, before
              load) is subtracted and divided by C.
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid

import msgpack
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"bench: timed out waiting for {what}")


class Stack:
    def __init__(self, a, phase):
        self.a = a
        self.tag = f"bench-{phase}-{uuid.uuid4().hex[:6]}"
        self.dir = os.path.join(a.run, self.tag)
        os.makedirs(self.dir)
        self.topics = {k: f"{self.tag}.{k}" for k in ("requests", "responses", "deltas", "dlq")}
        admin = AdminClient({"bootstrap.servers": a.bootstrap})
        fs = admin.create_topics([NewTopic(t, num_partitions=12, replication_factor=1)
                                  for t in self.topics.values()])
        for f in fs.values():
            f.result()
        self.procs = []

    def simulator(self, *args):
        port_file = os.path.join(self.dir, "sim.port")
        log = open(os.path.join(self.dir, "sim.log"), "w")
        p = subprocess.Popen([self.a.simulator, "--host", "127.0.0.1", "--port", "0",
                              "--port-file", port_file, *args], stdout=log, stderr=log)
        self.procs.append(p)
        port = wait_for(lambda: open(port_file).read().strip() if os.path.exists(port_file)
                        and os.path.getsize(port_file) else None, 20, "simulator port")
        self.sim_url = f"http://127.0.0.1:{port}"
        wait_for(lambda: self.sim_stats() is not None, 20, "simulator")

    def sim_stats(self):
        try:
            with urllib.request.urlopen(self.sim_url + "/admin/stats", timeout=2) as r:
                return json.loads(r.read())
        except Exception:
            return None

    def worker(self, max_in_flight):
        cfg = os.path.join(self.dir, "config.json")
        with open(cfg, "w") as f:
            json.dump({"assistants": [{"name": "bench", "model": "gpt-4o",
                                       "instructions": "Answer briefly."}]}, f)
        env = dict(os.environ, AW_KAFKA_BROKERS=self.a.bootstrap, AW_KAFKA_GROUP_ID=self.tag,
                   AW_TOPIC_REQUESTS=self.topics["requests"],
                   AW_TOPIC_RESPONSES=self.topics["responses"],
                   AW_TOPIC_DELTAS=self.topics["deltas"], AW_TOPIC_DLQ=self.topics["dlq"],
                   AW_REDIS_HOST="127.0.0.1", AW_REDIS_PORT=str(self.a.redis_port),
                   AW_REDIS_PREFIX=self.tag, AW_API_BASE_URL=self.sim_url + "/v1",
                   AW_API_KEY="sk-bench", AW_MAX_IN_FLIGHT=str(max_in_flight),
                   AW_LOG_LEVEL="info")
        self.worker_log = os.path.join(self.dir, "worker.log")
        log = open(self.worker_log, "w")
        p = subprocess.Popen([self.a.worker, "run", "--config", cfg], stdout=log, stderr=log,
                             env=env)
        self.procs.append(p)
        self.worker_pid = p.pid
        return p

    def logged(self, text):
        with open(self.worker_log) as f:
            return text in f.read()

    def produce(self, n, conversations, stream=False):
        p = Producer({"bootstrap.servers": self.a.bootstrap, "linger.ms": 20,
                      "queue.buffering.max.messages": 1000000})
        self.sent_ms = {}
        for i in range(n):
            conv = f"c{i % conversations}"
            self.sent_ms[f"e{i}"] = time.time() * 1000
            ev = {"v": 1, "event_id": f"e{i}", "conversation_id": conv, "assistant": "bench",
                  "content": f"How do I reset my password? ({i})", "stream": stream}
            p.produce(self.topics["requests"], key=conv, value=msgpack.packb(ev))
            if i % 10000 == 0:
                p.poll(0)
        p.flush(60)

    def consumer(self):
        c = Consumer({"bootstrap.servers": self.a.bootstrap, "group.id": self.tag + "-reader",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.assign([TopicPartition(self.topics["responses"], p, 0) for p in range(12)])
        return c

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()


def throughput(a):
    s = Stack(a, "throughput")
    try:
        s.simulator("--answer-tokens", "20", "--threads", "1")
        s.produce(a.events, a.conversations)
        c = s.consumer()
        s.worker(a.max_in_flight)
        wait_for(lambda: s.logged('"partitions assigned"'), 60, "partition assignment")
        prof = None
        if a.profile:  # software clock samples: hardware counters are often unavailable here
            prof = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g",
                                     "-o", a.profile, "-p", str(s.worker_pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = cpu_seconds(s.worker_pid)
        got, statuses, first, last = 0, {}, None, None
        deadline = time.monotonic() + 600
        while got < a.events and time.monotonic() < deadline:
            for m in c.consume(1000, 1.0):
                if m.error():
                    continue
                now = time.monotonic()
                first = first or now
                last = now
                got += 1
                st = msgpack.unpackb(m.value())["status"]
                statuses[st] = statuses.get(st, 0) + 1
        cpu1 = cpu_seconds(s.worker_pid)
        rss = rss_kib(s.worker_pid)
        if prof:
            prof.send_signal(signal.SIGINT)
            prof.wait(60)
        c.close()
        secs = (last - first) if last and first and last > first else float("nan")
        return {"events": got, "statuses": statuses, "seconds": secs,
                "events_per_s": got / secs, "cpu_s": cpu1 - cpu0,
                "cpu_us_per_event": (cpu1 - cpu0) * 1e6 / max(got, 1), "rss_kib": rss}
    finally:
        s.close()


def inflight(a):
    s = Stack(a, "inflight")
    try:
        s.simulator("--answer-tokens", "20", "--token-delay-ms", str(a.token_delay_ms),
                    "--threads", "1")
        s.worker(a.conversations + 100)
        wait_for(lambda: s.logged('"partitions assigned"'), 60, "partition assignment")
        # Warm the process up (allocator arenas, connections) before the idle sample.
        idle = rss_kib(s.worker_pid)
        s.produce(a.conversations, a.conversations)
        t0 = time.monotonic()
        st = wait_for(lambda: (lambda x: x if x and x["active_streams"] >= a.conversations
                               else None)(s.sim_stats()), 120, f"{a.conversations} active streams")
        reached = time.monotonic() - t0
        peak = rss_kib(s.worker_pid)
        c = s.consumer()
        got = 0
        deadline = time.monotonic() + 300
        while got < a.conversations and time.monotonic() < deadline:
            got += sum(1 for m in c.consume(1000, 1.0) if not m.error())
        c.close()
        return {"conversations": a.conversations, "active_streams": st["active_streams"],
                "seconds_to_all_in_flight": reached, "idle_rss_kib": idle,
                "rss_kib_all_in_flight": peak,
                "rss_bytes_per_conversation": (peak - idle) * 1024 / a.conversations,
                "answered": got}
    finally:
        s.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))] if xs else float("nan")


def realistic(a):
    """A model's real pace: answers of --answer-tokens tokens, --token-delay-ms apart, one
    request per conversation, all in flight at once.  Reports worker CPU per event and per
    token and the end-to-end latency split by stage, from the response's timings:
      pickup  = worker consumed it - producer's timestamp
      setup   = run created - consumed (Redis lookup, thread, message, run creation)
      stream  = run finished - run created (the simulator's pacing)
      publish = response read by us - run finished (encode, produce, delivery, our consumer)"""
    s = Stack(a, "realistic")
    try:
        s.simulator("--answer-tokens", str(a.answer_tokens), "--token-delay-ms", str(a.token_delay_ms),
                    "--threads", "1")
        s.worker(a.conversations + 100)
        wait_for(lambda: s.logged('"partitions assigned"'), 60, "partition assignment")
        c = s.consumer()
        cpu0 = cpu_seconds(s.worker_pid)
        s.produce(a.conversations, a.conversations, stream=a.stream)
        got, stages = 0, {"pickup": [], "setup": [], "stream": [], "publish": [], "total": []}
        deadline = time.monotonic() + 600
        while got < a.conversations and time.monotonic() < deadline:
            for m in c.consume(1000, 1.0):
                if m.error():
                    continue
                now_ms = time.time() * 1000
                v = msgpack.unpackb(m.value())
                t = v["timings"]
                got += 1
                stages["setup"].append(t["run_started_ms"] - t["received_ms"])
                stages["stream"].append(t["completed_ms"] - t["run_started_ms"])
                stages["publish"].append(now_ms - t["completed_ms"])
                sent = s.sent_ms[v["event_id"]]
                stages["pickup"].append(t["received_ms"] - sent)
                stages["total"].append(now_ms - sent)
        cpu1 = cpu_seconds(s.worker_pid)
        c.close()
        cpu_us = (cpu1 - cpu0) * 1e6
        return {"conversations": a.conversations, "answered": got, "tokens_per_answer": a.answer_tokens,
                "token_delay_ms": a.token_delay_ms, "stream": a.stream,
                "cpu_us_per_event": cpu_us / max(got, 1),
                "cpu_us_per_token": cpu_us / max(got * a.answer_tokens, 1),
                "latency_ms": {k: {"p50": pct(v, 50), "p99": pct(v, 99), "p99.9": pct(v, 99.9)}
                               for k, v in stages.items()}}
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--worker", required=True)
    ap.add_argument("--simulator", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("phase", choices=["throughput", "inflight", "realistic"])
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--conversations", type=int, default=2000)
    ap.add_argument("--max-in-flight", type=int, default=1000)
    ap.add_argument("--token-delay-ms", type=int, default=500)
    ap.add_argument("--profile", help="throughput: write a perf profile of the worker here")
    ap.add_argument("--answer-tokens", type=int, default=200)
    ap.add_argument("--stream", action="store_true", help="realistic: requests ask for deltas")
    a = ap.parse_args()
    r = {"throughput": throughput, "inflight": inflight, "realistic": realistic}[a.phase](a)
    print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())

"""Load driver for tests/bench/bench_worker.sh: measures the worker, prints figures.

Not a pass/fail test.  Phases, each on fresh topics and a fresh simulator (and workers):

  throughput  N requests over C conversations are produced BEFORE the worker starts, so the
              worker is never waiting for input; the simulator answers instantly.  Reports
              events/s (first to last response) and the worker's CPU microseconds per event
              (utime+stime from /proc between its partition assignment and the last response).
  inflight    C conversations, one request each, against a simulator that streams slowly
              (token delay), so every run is in flight at once.  Once the simulator reports C
              active streams, the worker's RSS is sampled; the idle RSS (after start-up, before
              load) is subtracted and divided by C.
  realistic   C conversations in flight, answers paced like a model (see realistic()).
  tools       function calling over Kafka: the Weather Assistant and the example weather
              service (see tools()).
  short       the "short" profile of issue 4: 20-token answers as fast as the simulator can;
              maximum throughput, then latency at half of it (see short()).
  history     chat backend: C conversations x T turns, turn by turn, with a small history budget
              (assistants[].history.max_messages): the messages sent per request against the
              budget, Redis bytes per stored turn, history round trips per event (see history()).

Every worker serves /metrics on a free ops port (worker.health_port, AW_HEALTH_PORT): the chat
backend's history counters (aw_history_*) are scraped from it before and after a measured part
(history_figures()).
"""
import argparse
import datetime
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import msgpack
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def cpu_total(pids):
    return sum(cpu_seconds(p) for p in pids)


def machine_busy_s():
    """CPU seconds the whole machine spent busy (all cores; /proc/stat), and the core count."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v[:8]) - v[3] - v[4]) / TICK, os.cpu_count()


class CpuShare:
    """Who used the CPU between start() and stop(): the workers, the simulator, this run's
    broker and redis-server, this script, and everything else on the machine (other jobs),
    in cores (1.0 = one core busy all the time)."""

    def __init__(self, s):
        self.who = {"worker": s.pids(), "simulator": [s.sim_pid],
                    "kafka": [pid_of(s.a.run, "kafka")], "redis": [pid_of(s.a.run, "redis")],
                    "load.py": [os.getpid()]}
        self.who = {k: [p for p in v if p] for k, v in self.who.items()}

    def start(self):
        self.t0 = time.monotonic()
        self.m0, self.cores = machine_busy_s()
        self.c0 = {k: cpu_total(v) for k, v in self.who.items()}
        return self

    def stop(self):
        secs = time.monotonic() - self.t0
        m1, _ = machine_busy_s()
        r = {k: (cpu_total(v) - self.c0[k]) / secs for k, v in self.who.items()}
        r["machine"] = (m1 - self.m0) / secs
        r["other"] = r["machine"] - sum(r[k] for k in self.who)
        r["cores"] = self.cores
        return r


def pid_of(run, service):
    try:
        with open(os.path.join(run, service, "pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def available(c, timeout=0.2):
    """The messages c holds now (up to 1000), else the first to arrive within timeout.
    (consume(1000, t) waits for 1000 messages or t, which adds up to t to any time taken
    when it returns.)"""
    ms = c.consume(1000, 0)
    if not ms:
        m = c.poll(timeout)
        ms = [m] if m is not None else []
    return ms


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise SystemExit(f"bench: timed out waiting for {what}")


class Stack:
    def __init__(self, a, phase, tool_reply_partitions=0):
        """tool_reply_partitions > 0: also the tool topics (requests with 12 partitions,
        replies with that many)."""
        self.a = a
        self.tag = f"bench-{phase}-{uuid.uuid4().hex[:6]}"
        self.dir = os.path.join(a.run, self.tag)
        os.makedirs(self.dir)
        names = ["requests", "responses", "deltas", "dlq", "usage"]
        if tool_reply_partitions:
            names += ["tool-requests", "tool-replies"]
        self.topics = {k: f"{self.tag}.{k}" for k in names}
        admin = AdminClient({"bootstrap.servers": a.bootstrap})
        fs = admin.create_topics([NewTopic(t, num_partitions=tool_reply_partitions
                                           if k == "tool-replies" else 12, replication_factor=1)
                                  for k, t in self.topics.items()])
        for f in fs.values():
            f.result()
        self.procs = []
        self.workers = []  # (name, pid, log path)
        self.ops_ports = []  # each worker's /metrics port

    def simulator(self, *args):
        port_file = os.path.join(self.dir, "sim.port")
        log = open(os.path.join(self.dir, "sim.log"), "w")
        p = subprocess.Popen([self.a.simulator, "--host", "127.0.0.1", "--port", "0",
                              "--port-file", port_file, *args], stdout=log, stderr=log)
        self.procs.append(p)
        self.sim_pid = p.pid
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

    def worker(self, max_in_flight, name="worker", tools=False, history=None):
        """Start a worker (log in <dir>/<name>.log), serving /metrics on a free ops port.
        tools: also the Weather Assistant of deploy/local/demo.sh, its get_weather routed to
        this stack's tool topics.  history: the "bench" assistant's assistants[].history (the
        chat backend's budget of what is sent; the other backends ignore it).  No assistant
        has a hosted tool (file_search, code_interpreter): the chat backend refuses them."""
        cfg = os.path.join(self.dir, name + ".config.json")
        bench = {"name": "bench", "model": "gpt-4o", "instructions": "Answer briefly."}
        if history:
            bench["history"] = history
        conf = {"api": {"backend": self.a.backend}, "assistants": [bench]}
        with socket.socket() as so:  # a free port (released for the worker to bind)
            so.bind(("127.0.0.1", 0))
            ops_port = so.getsockname()[1]
        env = dict(os.environ, AW_KAFKA_BROKERS=self.a.bootstrap, AW_KAFKA_GROUP_ID=self.tag,
                   AW_TOPIC_REQUESTS=self.topics["requests"],
                   AW_TOPIC_RESPONSES=self.topics["responses"],
                   AW_TOPIC_DELTAS=self.topics["deltas"], AW_TOPIC_DLQ=self.topics["dlq"],
                   AW_TOPIC_USAGE=self.topics["usage"],
                   AW_REDIS_HOST="127.0.0.1", AW_REDIS_PORT=str(self.a.redis_port),
                   AW_REDIS_PREFIX=self.tag, AW_API_BASE_URL=self.sim_url + "/v1",
                   AW_API_KEY="sk-bench", AW_MAX_IN_FLIGHT=str(max_in_flight),
                   AW_HEALTH_PORT=str(ops_port),
                   AW_LOG_LEVEL=os.environ.get("AW_BENCH_LOG_LEVEL", "info"))
        env.pop("AW_API_BACKEND", None)  # the config file's api.backend decides
        if tools:
            conf["assistants"].append(WEATHER_ASSISTANT)
            conf["functions"] = {"get_weather": {"topic": self.topics["tool-requests"],
                                                 "deadline_ms": 15000,
                                                 "on_deadline": "error_output"}}
            env.update(AW_TOPIC_TOOL_REQUESTS=self.topics["tool-requests"],
                       AW_TOPIC_TOOL_REPLIES=self.topics["tool-replies"],
                       AW_TOOL_SECRET=self.tool_secret, AW_TOOL_REQUEST_KEY=self.tool_request_key)
        with open(cfg, "w") as f:
            json.dump(conf, f)
        log_path = os.path.join(self.dir, name + ".log")
        log = open(log_path, "w")
        p = subprocess.Popen([self.a.worker, "run", "--config", cfg], stdout=log, stderr=log,
                             env=env)
        self.procs.append(p)
        if not self.workers:
            self.worker_pid, self.worker_log = p.pid, log_path
        self.workers.append((name, p.pid, log_path))
        self.ops_ports.append(ops_port)
        return p

    def metrics(self, settle=True):
        """The workers' /metrics, summed over the workers and over each metric's labels:
        {metric name: value} (histogram series keep their _bucket/_sum/_count names).  The
        worker renders its metrics once a second (worker/ops/ops_http.c render_interval_ms):
        settle waits 2.2 s first, so that what was done before the call is in the figures
        (call it outside CPU measurements)."""
        if settle:
            time.sleep(2.2)
        out = {}
        for port in self.ops_ports:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            for line in text.splitlines():
                if not line or line.startswith("#"):
                    continue
                name_labels, _, value = line.rpartition(" ")
                name = name_labels.split("{", 1)[0]
                try:
                    out[name] = out.get(name, 0.0) + float(value)
                except ValueError:
                    pass
        return out

    def chat_requests(self, after=-1):
        """GET /admin/chat/requests?after=N: [{"index", "status", "body"}] (the last 256)."""
        q = f"?after={after}" if after >= 0 else ""
        with urllib.request.urlopen(self.sim_url + "/admin/chat/requests" + q, timeout=10) as r:
            return json.loads(r.read())

    @property
    def tool_secret(self):
        if not hasattr(self, "_tool_secret"):
            self._tool_secret = os.urandom(32).hex()
        return self._tool_secret

    @property
    def tool_request_key(self):
        """Shared by the workers and the weather service: signs tool requests and replies."""
        if not hasattr(self, "_tool_request_key"):
            self._tool_request_key = os.urandom(32).hex()
        return self._tool_request_key

    def weather_service(self):
        """The example weather service (deploy/examples), answering instantly."""
        log_path = os.path.join(self.dir, "weather-service.log")
        log = open(log_path, "w")
        p = subprocess.Popen([self.a.weather_service, "--brokers", self.a.bootstrap,
                              "--group", self.tag + "-weather",
                              "--requests-topic", self.topics["tool-requests"],
                              "--reply-topic", self.topics["tool-replies"],
                              *[x for kv in self.a.weather_x for x in ("-X", kv)]],
                             env=dict(os.environ, AW_TOOL_REQUEST_KEY=self.tool_request_key),
                             stdout=log, stderr=log)
        self.procs.append(p)
        self.weather_pid = p.pid

        def ready():
            if p.poll() is not None:
                raise SystemExit(f"bench: the weather service exited (log: {log_path})")
            with open(log_path) as f:
                return '"msg":"weather service ready"' in f.read()
        wait_for(ready, 60, "the weather service")

    def assigned(self, topic, nparts):
        """Every worker holds part of topic and together they hold all nparts partitions
        (from the workers' "partitions assigned"/"partitions revoked" log lines)."""
        total = 0
        for _, _, path in self.workers:
            held = set()
            for line in open(path):
                if '"partitions ' not in line or f'"topic":"{topic}"' not in line:
                    continue
                j = json.loads(line)
                parts = {int(x) for x in j.get("partitions", "").split(",") if x}
                if j["msg"] == "partitions assigned":
                    held |= parts
                elif j["msg"] == "partitions revoked":
                    held -= parts
            if not held:
                return False
            total += len(held)
        return total == nparts

    def pids(self):
        return [pid for _, pid, _ in self.workers]

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
        r = drain(s, c, a.events)
        r["rss_kib"] = rss_kib(s.worker_pid)
        if prof:
            prof.send_signal(signal.SIGINT)
            prof.wait(60)
        c.close()
        return r
    finally:
        s.close()


def drain(s, c, n):
    """Read n responses from c (the worker has a backlog of n requests): events/s from the
    first response to the last, worker CPU (all of s's workers) from now to the last."""
    cpu0 = cpu_total(s.pids())
    got, statuses, first, last = 0, {}, None, None
    deadline = time.monotonic() + 600
    while got < n and time.monotonic() < deadline:
        for m in available(c):
            if m.error():
                continue
            now = time.monotonic()
            first = first or now
            last = now
            got += 1
            st = msgpack.unpackb(m.value())["status"]
            statuses[st] = statuses.get(st, 0) + 1
    cpu1 = cpu_total(s.pids())
    secs = (last - first) if last and first and last > first else float("nan")
    return {"events": got, "statuses": statuses, "seconds": secs,
            "events_per_s": got / secs, "cpu_s": cpu1 - cpu0,
            "cpu_us_per_event": (cpu1 - cpu0) * 1e6 / max(got, 1)}


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


HISTORY_COUNTERS = ("aw_history_loads_total", "aw_history_pending_saves_total",
                    "aw_history_commits_total", "aw_history_commit_duplicates_total",
                    "aw_history_bytes_committed_total", "aw_history_turns_trimmed_total",
                    "aw_history_errors_total")


def history_figures(m0, m1, events):
    """The chat backend's history store between two Stack.metrics() scrapes, over `events`
    answered: Redis bytes per stored turn (bytes committed / commits), Redis round trips per
    event ((loads + pending saves + commits + duplicate commits) / events), loads and commits
    per event, and the counters' deltas.  None when the worker has no aw_history_* counters."""
    if "aw_history_commits_total" not in m1:
        return None
    d = {k.removeprefix("aw_history_").removesuffix("_total"): m1.get(k, 0) - m0.get(k, 0)
         for k in HISTORY_COUNTERS}
    ev = max(events, 1)
    return {"counters": d, "events": events,
            "bytes_per_turn": d["bytes_committed"] / d["commits"] if d["commits"] else float("nan"),
            "round_trips_per_event": (d["loads"] + d["pending_saves"] + d["commits"]
                                      + d["commit_duplicates"]) / ev,
            "loads_per_event": d["loads"] / ev, "commits_per_event": d["commits"] / ev}


def messages_sent(reqs):
    """[number of messages] of each chat completion request body of /admin/chat/requests."""
    return [len(r["body"].get("messages") or []) if isinstance(r.get("body"), dict) else 0
            for r in reqs]


def realistic(a):
    """A model's real pace: answers of --answer-tokens tokens, --token-delay-ms apart, one
    request per conversation, all in flight at once.  Reports worker CPU per event and per
    token and the end-to-end latency split by stage, from the response's timings:
      pickup  = worker consumed it - producer's timestamp
      setup   = turn started - consumed (Redis lookup, conversation or thread creation, the
                turn's creating request up to the stream's first event: response.created, or
                the run's creation on the Assistants backend; timings.run_started_ms)
      stream  = turn finished - turn started (the simulator's pacing)
      publish = response read by us - turn finished (encode, produce, delivery, our consumer)"""
    s = Stack(a, "realistic")
    try:
        s.simulator("--answer-tokens", str(a.answer_tokens), "--token-delay-ms", str(a.token_delay_ms),
                    "--threads", "1")
        s.worker(a.conversations + 100)
        wait_for(lambda: s.logged('"partitions assigned"'), 60, "partition assignment")
        c = s.consumer()
        m0, st0 = s.metrics(settle=False), s.sim_stats()  # nothing done yet
        cpu0 = cpu_seconds(s.worker_pid)
        s.produce(a.conversations, a.conversations, stream=a.stream)
        got, stages = 0, {"pickup": [], "setup": [], "stream": [], "publish": [], "total": []}
        deadline = time.monotonic() + 600
        while got < a.conversations and time.monotonic() < deadline:
            for m in available(c):
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
                "http_per_event": http_per_event(st0, s.sim_stats(), got),
                "history": history_figures(m0, s.metrics(), got) if a.backend == "chat" else None,
                "latency_ms": {k: {"p50": pct(v, 50), "p99": pct(v, 99), "p99.9": pct(v, 99.9)}
                               for k, v in stages.items()}}
    finally:
        s.close()


# ---- paced load (tools, short) ------------------------------------------------------------

WEATHER_ASSISTANT = {  # deploy/local/demo.sh's Weather Assistant, the brief's get_weather
    "name": "Weather Assistant", "model": "gpt-4o",
    "instructions": "You are a weather bot. Use the provided functions to answer questions.",
    "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "Retrieve weather information for a location.",
        "parameters": {"type": "object",
                       "properties": {"location": {"type": "string", "description": "City name"}},
                       "required": ["location"]}}}]}
CITIES = ["Paris", "Tokyo", "London", "Berlin", "Madrid", "Rome", "Sydney"]  # in both tables


def stats(xs, ps=(50, 99, 99.9)):
    return {("p%g" % p): pct(xs, p) for p in ps} | {"n": len(xs)}


def minus(a, b):
    """Percentile-wise difference of two stats() dicts."""
    return {k: a[k] - b[k] for k in a if k in b and k != "n"}


def log_ms(ts):
    """A log line's "ts" (UTC, ms) as unix ms."""
    d = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    return d.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000


def consumer_at_end(s, topic, nparts=12):
    """A consumer of topic from its current end (only what is produced from now on)."""
    c = Consumer({"bootstrap.servers": s.a.bootstrap, "group.id": s.tag + "-reader",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(topic, p, watermarks(c, topic, p)[1]) for p in range(nparts)])
    return c


def watermarks(c, topic, p):
    """(low, high) of a partition; retried while a new topic's leaders are being elected."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def read_all(s, topic, nparts):
    """Every message of topic, up to its current end."""
    c = Consumer({"bootstrap.servers": s.a.bootstrap, "group.id": s.tag + "-tap",
                  "enable.auto.commit": False})
    ends, parts = {}, []
    for p in range(nparts):
        lo, hi = watermarks(c, topic, p)
        if hi > lo:
            ends[p] = hi
            parts.append(TopicPartition(topic, p, lo))
    c.assign(parts)
    out, deadline = [], time.monotonic() + 60
    while ends and time.monotonic() < deadline:
        for m in c.consume(1000, 1.0):
            if m.error():
                continue
            out.append(m)
            if m.offset() >= ends.get(m.partition(), 0) - 1:
                ends.pop(m.partition(), None)
    c.close()
    return out


def request(conv, eid, assistant, content):
    return (conv, {"v": 1, "event_id": eid, "conversation_id": conv, "assistant": assistant,
                   "content": content, "stream": False})


def paced(s, events, rate, timeout=120):
    """Produce events [(key, request)] at `rate` per second on average, as Poisson arrivals
    (exponential gaps, seeded: periodic arrivals can alias with the worker's periodic work,
    e.g. its transaction commits every 20 ms), from a thread, while reading their responses.
    Returns ({event_id: (sent_ms, got_ms, response)}, how far (ms) the producer fell behind
    its schedule at worst).  sent_ms is taken just before produce() (the producer's
    linger.ms is 1), got_ms when our consumer returned the response."""
    c = consumer_at_end(s, s.topics["responses"])
    sent, behind, want = {}, [0.0], {ev["event_id"] for _, ev in events}
    rnd, at, schedule = random.Random(len(events)), 0.0, []
    for _ in events:
        schedule.append(at)
        at += rnd.expovariate(rate)

    def produce():
        p = Producer({"bootstrap.servers": s.a.bootstrap, "linger.ms": 1,
                      "queue.buffering.max.messages": 1000000})
        t0 = time.monotonic()
        for i, (key, ev) in enumerate(events):
            d = t0 + schedule[i] - time.monotonic()
            if d > 0:
                time.sleep(d)
            else:
                behind[0] = max(behind[0], -d * 1000)
            sent[ev["event_id"]] = time.time() * 1000
            p.produce(s.topics["requests"], key=ev["conversation_id"], value=msgpack.packb(ev))
            p.poll(0)
        p.flush(60)

    th = threading.Thread(target=produce, daemon=True)
    th.start()
    got = {}
    deadline = time.monotonic() + at + timeout
    while len(got) < len(want) and time.monotonic() < deadline:
        for m in available(c):
            if m.error():
                continue
            now = time.time() * 1000
            v = msgpack.unpackb(m.value())
            eid = v.get("event_id")
            if eid in want and eid not in got:
                got[eid] = (sent.get(eid, float("nan")), now, v)
    th.join(60)
    c.close()
    return got, behind[0]


def count_statuses(got):
    st = {}
    for _, _, v in got.values():
        st[v["status"]] = st.get(v["status"], 0) + 1
    return st


def tools(a):
    """One tool round trip over Kafka, with the Weather Assistant of deploy/local/demo.sh and
    the example weather service answering instantly (no --delay-ms), on an instant simulator
    (--answer-tokens 20, --token-delay-ms 0).  For 1 worker, and for 2 workers (the tool-reply
    topic then has --reply-partitions partitions, not 12, so that about half of the replies
    are consumed by the worker that does not own the turn: it records the output and wakes the
    owner through the owner's wake list in Redis, drained every 20 ms).

    Per worker count, after a warm-up: C plain events ("How do I reset my password?", assistant
    "bench", one per new conversation) at --rate per second (Poisson arrivals), then C tool
    events (one city each, "What's the weather in Paris?", one per new conversation) at the
    same pace, then both kinds again (C of each) shuffled together, at the same pace.
      round_ms   the worker's "tool outputs submitted" log line: round began (the turn ended
                 with function calls: requires_action, or a response's function_call items)
                 -> outputs collected and their submission starting
      stages     the round cut at the tool request's and reply's Kafka CreateTime and the
                 "tool reply recorded" log line (all ms-resolution clocks of this machine):
                 record+publish (round recorded in Redis, requests produced),
                 service (request delivered, consumed by the weather service, reply produced),
                 reply (reply delivered, consumed by a worker, checked and recorded in Redis),
                 wake+collect (owner woken, outputs collected from Redis)
                 (round_ms and stages: the tool events of the tool and the mixed runs)
      e2e        produced by us -> response read by us, in the mixed run; tool minus plain,
                 percentile-wise, is what one round trip adds end to end (the round trip, and
                 submit_tool_outputs or the follow-up response, with its stream)
      cpu        worker CPU (utime+stime, all workers) over the plain and the tool runs / their
                 events; tool minus plain is the CPU of one round trip (same pace, so the CPU a
                 worker burns anyway cancels)"""
    out = {"conversations": a.conversations, "rate": a.rate, "runs": {}}
    for n in a.tool_workers:
        out["runs"][str(n)] = tools_once(a, n)
    return out


def tools_once(a, nworkers):
    nreply = 12 if nworkers == 1 else a.reply_partitions
    s = Stack(a, f"tools{nworkers}", tool_reply_partitions=nreply)
    try:
        s.simulator("--answer-tokens", "20", "--token-delay-ms", "0", "--threads", "1")
        s.weather_service()
        for i in range(nworkers):
            s.worker(a.max_in_flight, f"worker{i}", tools=True)
        wait_for(lambda: s.assigned(s.topics["requests"], 12)
                 and s.assigned(s.topics["tool-replies"], nreply), 120, "partition assignment")

        def batch(kind, prefix, n):
            if kind == "tool":
                return [request(f"{prefix}{i}", f"{prefix}{i}", "Weather Assistant",
                                f"What's the weather in {CITIES[i % len(CITIES)]}?")
                        for i in range(n)]
            return [request(f"{prefix}{i}", f"{prefix}{i}", "bench",
                            f"How do I reset my password? ({i})") for i in range(n)]

        # Warm-up (connections to the simulator, allocator, topics' metadata), not counted.
        warm = [e for pair in zip(batch("plain", "wp", a.warmup), batch("tool", "wt", a.warmup))
                for e in pair]
        paced(s, warm, a.rate)
        cpu0 = cpu_total(s.pids())
        time.sleep(5)
        idle_us_per_s = (cpu_total(s.pids()) - cpu0) * 1e6 / 5
        r = {"workers": nworkers, "reply_partitions": nreply,
             "idle_cpu_us_per_s": idle_us_per_s}
        tool_events = set()  # event ids of the tool events (backend-neutral join key)
        for kind in ("plain", "tool"):  # apart, for the CPU of each kind
            cpu0 = cpu_total(s.pids())
            got, behind = paced(s, batch(kind, kind[0], a.conversations), a.rate)
            cpu1 = cpu_total(s.pids())
            r[kind] = {"answered": len(got), "statuses": count_statuses(got),
                       "producer_behind_ms": behind,
                       "e2e_ms": stats([g - t for t, g, _ in got.values()]),
                       "cpu_us_per_event": (cpu1 - cpu0) * 1e6 / max(len(got), 1)}
            if kind == "tool":
                r["tool"]["outcomes"] = {}
                for _, _, v in got.values():
                    for tc in v.get("tool_calls") or []:
                        o = tc.get("outcome")
                        r["tool"]["outcomes"][o] = r["tool"]["outcomes"].get(o, 0) + 1
                tool_events |= set(got)
        # Mixed, for latency under the same load: both kinds in random order, same pace.
        mixed = batch("plain", "mp", a.conversations) + batch("tool", "mt", a.conversations)
        random.Random(1).shuffle(mixed)
        got, behind = paced(s, mixed, a.rate)
        e2e = {"plain": [], "tool": []}
        for eid, (t, g, v) in got.items():
            e2e["tool" if eid.startswith("mt") else "plain"].append(g - t)
            if eid.startswith("mt"):
                tool_events.add(eid)
        r["mixed"] = {"answered": len(got), "statuses": count_statuses(got),
                      "producer_behind_ms": behind,
                      "e2e_plain_ms": stats(e2e["plain"]), "e2e_tool_ms": stats(e2e["tool"])}
        r["tool"].update(round_trips(s, nreply, tool_events))
        r["added_e2e_ms"] = minus(r["mixed"]["e2e_tool_ms"], r["mixed"]["e2e_plain_ms"])
        r["cpu_us_per_round_trip"] = r["tool"]["cpu_us_per_event"] - r["plain"]["cpu_us_per_event"]
        return r
    finally:
        s.close()


def round_trips(s, nreply, events):
    """round_ms and its stages for the tool events given (see tools()), joined by event id
    (one round per event): the Assistants backend's run ids are not on the Responses
    backend's messages.  "tool reply recorded" lines name the conversation and the call,
    mapped to the event through the tool requests."""
    req, call_event = {}, {}  # correlation id -> (event id, CreateTime); (conv, call) -> event
    for m in read_all(s, s.topics["tool-requests"], 12):
        v = msgpack.unpackb(m.value())
        req[v["correlation_id"]] = (v["event_id"], m.timestamp()[1])
        call_event[(v["conversation_id"], v["tool_call_id"])] = v["event_id"]
    submitted, recorded = {}, {}
    for name, _, path in s.workers:
        for line in open(path):
            if '"tool outputs submitted"' in line:
                j = json.loads(line)
                submitted[j.get("event_id")] = (name, log_ms(j["ts"]), int(j["round_ms"]))
            elif '"tool reply recorded"' in line and '"missing":"0"' in line:
                j = json.loads(line)
                ev = call_event.get((j.get("conversation_id"), j.get("tool_call_id")))
                if ev:
                    recorded[ev] = (name, log_ms(j["ts"]))
    rep = {}  # event id -> (request CreateTime, reply CreateTime)
    for m in read_all(s, s.topics["tool-replies"], nreply):
        v = msgpack.unpackb(m.value())
        if v.get("correlation_id") in req:
            ev, t_req = req[v["correlation_id"]]
            rep.setdefault(ev, (t_req, m.timestamp()[1]))
    rounds = {"all": [], "self": [], "other": []}
    st = {"record+publish": [], "service": [], "reply": [], "wake+collect": []}
    for ev in events:
        if ev not in submitted:
            continue
        owner, t_sub, round_ms = submitted[ev]
        rounds["all"].append(round_ms)
        if ev in recorded:
            rounds["self" if recorded[ev][0] == owner else "other"].append(round_ms)
        if ev in rep and ev in recorded:
            began = t_sub - round_ms
            t_req, t_rep = rep[ev]
            t_rec = recorded[ev][1]
            st["record+publish"].append(t_req - began)
            st["service"].append(t_rep - t_req)
            st["reply"].append(t_rec - t_rep)
            st["wake+collect"].append(t_sub - t_rec)
    return {"round_ms": stats(rounds["all"]), "round_ms_self": stats(rounds["self"]),
            "round_ms_other": stats(rounds["other"]),
            "replies_by_other": len(rounds["other"]) / max(len(rounds["self"]) + len(rounds["other"]), 1),
            "stages_ms": {k: stats(v) for k, v in st.items()}}


def short(a):
    """The "short" profile of issue 4: answers of --answer-tokens (20) tokens sent as fast as
    the simulator can (--token-delay-ms 0), --events requests over --conversations.
      1. maximum: the backlog is produced before the worker starts (as in throughput);
         events/s from the first response to the last, worker CPU per event, HTTP requests
         per event (the first event of each conversation also creates it).
      2. half: requests produced at half that rate (or --rate) for --seconds, on the same
         conversations (their backend conversations or threads exist), each timed:
           e2e        produced by us -> response read by us (both Kafka hops included)
           in worker  response timings: completed_ms - received_ms (consumed -> answer ready,
                      before publishing): Redis, the API calls, the worker's own work
         and the simulator's share, measured directly: the worker's HTTP sequence for an event
         on an existing conversation of its backend (see direct_baseline(); one request, a
         stream read to its end; checked against the simulator's request counts,
         http_per_event) sent by this script straight to the simulator, one at a time on one
         keep-alive connection (Python http.client), after the worker's run.  "Added" is a
         percentile-wise difference: e2e (or in worker) minus that simulator baseline.  The
         baseline includes Python's client overhead, so the added figures are, if anything,
         underestimated by that much."""
    s = Stack(a, "short")
    try:
        s.simulator("--answer-tokens", str(a.answer_tokens), "--token-delay-ms", "0",
                    "--threads", "1")
        s.produce(a.events, a.conversations)
        c = s.consumer()
        s.worker(a.max_in_flight)
        wait_for(lambda: s.logged('"partitions assigned"'), 60, "partition assignment")
        st0, m0 = s.sim_stats(), s.metrics(settle=False)  # nothing done yet
        share = CpuShare(s).start()
        r = {"tokens": a.answer_tokens, "events": a.events, "conversations": a.conversations,
             "max": drain(s, c, a.events)}
        r["max"]["cpu_cores"] = share.stop()
        r["max"]["http_per_event"] = http_per_event(st0, s.sim_stats(), r["max"]["events"])
        if a.backend == "chat":
            r["max"]["history"] = history_figures(m0, s.metrics(), r["max"]["events"])
        c.close()
        rate = a.rate or r["max"]["events_per_s"] / 2
        n = max(1, int(rate * a.seconds))
        evs = [request(f"c{i % a.conversations}", f"h{i}", "bench",
                       f"How do I reset my password? ({i})") for i in range(n)]
        st0, m0 = s.sim_stats(), s.metrics()
        cpu0 = cpu_total(s.pids())
        share = CpuShare(s).start()
        got, behind = paced(s, evs, rate)
        cores = share.stop()
        cpu1 = cpu_total(s.pids())
        st1, m1 = s.sim_stats(), s.metrics()
        routes = http_per_event(st0, st1, len(got))
        stages = {"e2e": [], "pickup": [], "in_worker": [], "publish": []}
        for t, g, v in got.values():
            tm = v["timings"]
            stages["e2e"].append(g - t)
            stages["pickup"].append(tm["received_ms"] - t)
            stages["in_worker"].append(tm["completed_ms"] - tm["received_ms"])
            stages["publish"].append(g - tm["completed_ms"])
        half = {"rate": rate, "seconds": a.seconds, "produced": n, "answered": len(got),
                "statuses": count_statuses(got), "producer_behind_ms": behind,
                "cpu_us_per_event": (cpu1 - cpu0) * 1e6 / max(len(got), 1),
                "cpu_cores": cores, "http_per_event": routes,
                "history": history_figures(m0, m1, len(got)) if a.backend == "chat" else None,
                "latency_ms": {k: stats(v) for k, v in stages.items()}}
        if a.backend == "chat":  # the last (at most 256) requests: existing conversations
            sent = messages_sent(s.chat_requests())
            half["messages_sent"] = {"requests": len(sent), "max": max(sent, default=0),
                                     "budget": CHAT_DEFAULT_MAX_MESSAGES}
        sim = direct_baseline(s, a.baseline_events)
        half["simulator_ms"] = stats(sim)
        half["added_e2e_ms"] = minus(half["latency_ms"]["e2e"], half["simulator_ms"])
        half["added_in_worker_ms"] = minus(half["latency_ms"]["in_worker"], half["simulator_ms"])
        # Where a tail comes from (one stall, or spread out): the worst in-worker latency of
        # each second of the paced part, by the second the event was consumed.
        worst, t0 = {}, min(t for t, _, _ in got.values()) if got else 0
        for t, g, v in got.values():
            tm = v["timings"]
            sec = int((tm["received_ms"] - t0) // 1000)
            worst[sec] = max(worst.get(sec, 0), tm["completed_ms"] - tm["received_ms"])
        half["worst_in_worker_ms_by_second"] = [worst[k] for k in sorted(worst)]
        r["half"] = half
        return r
    finally:
        s.close()


CHAT_DEFAULT_MAX_MESSAGES = 40  # common/backend/chat/chat_int.h, README "assistants[].history"


def history(a):
    """Chat backend, several turns per conversation: --conversations conversations x --turns
    turns (--answer-tokens-token answers, instant simulator), turn by turn (turn k of every
    conversation is produced once turn k-1 of all was answered), with the "bench" assistant's
    history budget {"max_messages": --history-max-messages}.  Every chat completion request
    body is read back from GET /admin/chat/requests after each turn (fewer than 256 a turn):
    the number of messages sent per request (system + history + the user's), its maximum
    against the budget, and by turn; Redis bytes per stored turn and history round trips per
    event from the worker's /metrics; worker CPU and chat completions per event."""
    if a.conversations > 250:
        raise SystemExit("bench: history: at most 250 conversations (the simulator keeps 256 bodies)")
    s = Stack(a, "history")
    try:
        s.simulator("--answer-tokens", str(a.answer_tokens), "--token-delay-ms", "0", "--threads", "1")
        budget = a.history_max_messages
        s.worker(a.max_in_flight, history={"max_messages": budget})
        wait_for(lambda: s.logged('"partitions assigned"'), 60, "partition assignment")
        # Chat completions already logged (none: a fresh simulator) are skipped by index.
        last = max((r["index"] for r in s.chat_requests()), default=-1)
        st0, m0, cpu0 = s.sim_stats(), s.metrics(), cpu_total(s.pids())
        by_turn, statuses, answered = [], {}, 0
        for t in range(a.turns):
            evs = [request(f"c{k}", f"t{t}c{k}", "bench", f"Question {t} of conversation {k}: "
                           f"how do I reset my password?") for k in range(a.conversations)]
            got, _ = paced(s, evs, 10000)
            answered += len(got)
            for k, v in count_statuses(got).items():
                statuses[k] = statuses.get(k, 0) + v
            reqs = s.chat_requests(last)
            last = max((r["index"] for r in reqs), default=last)
            sent = messages_sent(reqs)
            by_turn.append({"requests": len(sent), "max": max(sent, default=0),
                            "min": min(sent, default=0)})
        cpu1, st1, m1 = cpu_total(s.pids()), s.sim_stats(), s.metrics()
        return {"conversations": a.conversations, "turns": a.turns, "tokens": a.answer_tokens,
                "answered": answered, "statuses": statuses,
                "cpu_us_per_event": (cpu1 - cpu0) * 1e6 / max(answered, 1),
                "http_per_event": http_per_event(st0, st1, answered),
                "history": history_figures(m0, m1, answered),
                "messages_sent": {"budget": budget, "requests": sum(b["requests"] for b in by_turn),
                                  "max": max((b["max"] for b in by_turn), default=0),
                                  "by_turn": by_turn}}
    finally:
        s.close()


def http_per_event(st0, st1, events):
    """{route: requests per event} of the simulator's /v1 routes between two /admin/stats
    answers (every status counted)."""
    routes = {k: sum(st1["requests"].get(k, {}).values()) - sum(st0["requests"].get(k, {}).values())
              for k in st1["requests"]}
    return {k: round(v / max(events, 1), 3) for k, v in routes.items()
            if k.split()[-1].startswith("/v1/") and v}


def direct_baseline(s, n, nconv=100):
    """n times the worker's HTTP sequence for an event on an existing conversation (of its
    backend, s.a.backend), straight to the simulator, one at a time on one keep-alive
    connection; the latency of each sequence in ms.  The conversations (threads) are created
    first and not timed, as the worker's were in the maximum part.
      responses   POST /v1/responses {model, instructions, input (one user message),
                  conversation, stream, background, store, metadata (event_id,
                  conversation_id)}, the SSE read to its terminal event (response.completed,
                  .failed or .incomplete; the simulator ends the stream there)
      assistants  POST /v1/threads/{id}/runs {assistant_id, stream, metadata.aw_tag,
                  additional_messages: the user message}, the SSE read to [DONE]
      chat        POST /v1/chat/completions {model, messages: the system message, the history
                  the budget lets through and the user message, stream, stream_options}: the
                  worker's own request bodies, replayed (the last ones it sent, from
                  GET /admin/chat/requests: existing conversations, their history included),
                  the SSE read to [DONE]"""
    port = int(s.sim_url.rsplit(":", 1)[1])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    hdr = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    if s.a.backend == "assistants":
        hdr["OpenAI-Beta"] = "assistants=v2"  # the Responses API takes no beta header

    def call(path, body):
        conn.request("POST", path, body=json.dumps(body), headers=hdr)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            raise SystemExit(f"bench: simulator {path}: {resp.status} {data[:200]!r}")
        return data

    def text(i):
        return f"How do I reset my password? ({i})"

    out = []
    if s.a.backend == "chat":
        bodies = [r["body"] for r in s.chat_requests() if isinstance(r.get("body"), dict)]
        if not bodies:
            raise SystemExit("bench: no chat completion request of the worker to replay")
        for i in range(n):
            t0 = time.perf_counter()
            body = call("/v1/chat/completions", bodies[i % len(bodies)])
            out.append((time.perf_counter() - t0) * 1000)
            if b"[DONE]" not in body[-64:]:
                raise SystemExit("bench: the simulator's chat stream did not end with [DONE]")
    elif s.a.backend == "responses":
        convs = [json.loads(call("/v1/conversations", {"metadata": {"conversation_id": f"b{k}"}}))["id"]
                 for k in range(nconv)]
        for i in range(n):
            t0 = time.perf_counter()
            body = call("/v1/responses", {
                "model": "gpt-4o", "instructions": "Answer briefly.",
                "input": [{"type": "message", "role": "user",
                           "content": [{"type": "input_text", "text": text(i)}]}],
                "conversation": convs[i % nconv], "stream": True, "background": True,
                "store": True, "metadata": {"event_id": f"b{i}", "conversation_id": f"b{i % nconv}"}})
            out.append((time.perf_counter() - t0) * 1000)
            last = None
            for line in body.splitlines():
                if line.startswith(b"data:"):
                    last = line
            kind = json.loads(last[5:]).get("type") if last else None
            if kind not in ("response.completed", "response.failed", "response.incomplete"):
                raise SystemExit(f"bench: the simulator's response stream ended with {kind!r}")
            if kind != "response.completed":
                raise SystemExit(f"bench: the simulator's response ended {kind}")
    else:
        asst = json.loads(call("/v1/assistants", {"model": "gpt-4o",
                                                  "instructions": "Answer briefly."}))["id"]
        threads = [json.loads(call("/v1/threads", {}))["id"] for _ in range(nconv)]
        for i in range(n):
            t = threads[i % nconv]
            t0 = time.perf_counter()
            # The worker's sequence: one request, the message riding on the run.
            body = call(f"/v1/threads/{t}/runs", {
                "assistant_id": asst, "stream": True, "metadata": {"aw_tag": f"b{i}"},
                "additional_messages": [{
                    "role": "user", "content": [{"type": "text", "text": text(i)}],
                    "metadata": {"event_id": f"b{i}", "conversation_id": f"b{i % nconv}"}}]})
            out.append((time.perf_counter() - t0) * 1000)
            if b"[DONE]" not in body[-64:]:
                raise SystemExit("bench: the simulator's stream did not end with [DONE]")
    conn.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--worker", required=True)
    ap.add_argument("--simulator", required=True)
    ap.add_argument("--run", required=True)
    ap.add_argument("--weather-service", help="default: weather_service next to --worker")
    ap.add_argument("phase", choices=["throughput", "inflight", "realistic", "tools", "short",
                                      "history"])
    ap.add_argument("--backend", choices=["responses", "assistants", "chat"], default="responses",
                    help="the worker's api.backend (and the direct baseline's HTTP sequence)")
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--conversations", type=int, default=2000)
    ap.add_argument("--max-in-flight", type=int, default=1000)
    ap.add_argument("--token-delay-ms", type=int, default=500)
    ap.add_argument("--profile", help="throughput: write a perf profile of the worker here")
    ap.add_argument("--answer-tokens", type=int, default=200)
    ap.add_argument("--stream", action="store_true", help="realistic: requests ask for deltas")
    ap.add_argument("--rate", type=float, default=0,
                    help="tools: events/s (default 50); short: events/s of the paced part "
                         "(default half the maximum measured)")
    ap.add_argument("--warmup", type=int, default=20, help="tools: warm-up events of each kind")
    ap.add_argument("--tool-workers", default="1,2", help="tools: worker counts to run")
    ap.add_argument("--reply-partitions", type=int, default=7,
                    help="tools, 2+ workers: partitions of the tool-reply topic")
    ap.add_argument("--weather-x", action="append", default=[], metavar="KEY=VALUE",
                    help="tools: a librdkafka property for the weather service (-X), e.g. linger.ms=0")
    ap.add_argument("--seconds", type=float, default=20, help="short: length of the paced part")
    ap.add_argument("--baseline-events", type=int, default=2000,
                    help="short: HTTP sequences sent straight to the simulator")
    ap.add_argument("--turns", type=int, default=8, help="history: turns per conversation")
    ap.add_argument("--history-max-messages", type=int, default=6,
                    help="history: the assistant's history.max_messages (the budget)")
    a = ap.parse_args()
    a.weather_service = a.weather_service or os.path.join(os.path.dirname(a.worker), "weather_service")
    a.tool_workers = [int(x) for x in a.tool_workers.split(",") if x]
    if a.phase == "tools" and not a.rate:
        a.rate = 50
    r = {"throughput": throughput, "inflight": inflight, "realistic": realistic,
         "tools": tools, "short": short, "history": history}[a.phase](a)
    r["backend"] = a.backend
    print(json.dumps(r))


if __name__ == "__main__":
    sys.exit(main())

"""The chaos test (issue 4, part 5): a fleet of workers answering thousands of conversations
while workers are SIGKILLed and restarted, redis-server and the Kafka broker are restarted, and the
API simulator injects HTTP 500s, 429s and dropped streams.  Then it checks, from the topics (read
committed) and the simulator's threads (--backend assistants) or conversations (--backend
responses, the default; AW_TEST_BACKEND sets it), that

  1. every event was answered exactly once,
  2. every conversation kept its order (answers on the responses topic, messages on the thread),
  3. no thread (conversation) holds a user message twice (and each conversation uses one),
  4. no tool output was lost (every weather answer carries both cities' outputs),
  5. no event has two usage records, and none has one without an answer,

prints the counts as a table and exits 0 only when all of them hold (and no worker crashed by itself
or reported a sanitizer error).  tests/chaos/chaos.sh is the entry point; README.md next to this
file explains the counts.

The stack is its own: a run dir of deploy/local/lib.sh with a single-node Kafka (KRaft), a
redis-server with an fsynced append-only file, the simulator, the example weather service and the
workers.  Kafka, Redis, the simulator and the weather services are started by lib.sh; the workers
are spawned here the way aw_spawn does (own session, cwd and log in RUN/<name>/, pid file, listed
in RUN/services) so that their exit codes are known and aw_stop_all / the stale-run reaper still
find them.  Every wait is a condition polled against a deadline.
"""
from __future__ import annotations

import argparse
import collections
import faulthandler
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition

ROOT = Path(__file__).resolve().parents[2]
LIB_SH = ROOT / "deploy" / "local" / "lib.sh"
# The assistants and sanitizer markers the integration tests use: one definition of each.
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import awtest  # noqa: E402
from awtest import SANITIZER_MARKERS, SUPPORT_BOT, WEATHER_ASSISTANT  # noqa: E402

# Not shaped like an OpenAI key: never a real one, and the simulator takes any bearer key.
API_KEY = "aw-chaos-key-4be1c07a"
TOOL_SECRET = "aw-chaos-tool-secret-9d3e2a51f0b8"
# Shared by the workers and the weather services: signs tool requests and replies.
TOOL_REQUEST_KEY = "aw-chaos-tool-request-key-47c1e0a9"
GROUP = "assistant-worker"
TOPICS = {"requests": "assistant.requests", "responses": "assistant.responses",
          "deltas": "assistant.deltas", "dlq": "assistant.dlq", "usage": "assistant.usage",
          "tool_requests": "assistant.tool-requests", "tool_replies": "assistant.tool-replies"}
# The harness' own Kafka clients: the broker's restart makes librdkafka log every refused
# connection at level 3; only critical lines are worth showing.
QUIET = {"log_level": 2}
# The example weather service's table (deploy/examples/weather_service.c): the exact output of
# each city, which the simulator's answer quotes as "<City>: <output>.".
WEATHER = {"Paris": (22, "sunny"), "Tokyo": (18, "cloudy"), "London": (14, "rain"),
           "Berlin": (16, "cloudy"), "New York": (20, "clear"), "Madrid": (27, "sunny"),
           "Rome": (25, "sunny"), "Sydney": (19, "windy")}
SUPPORT_QUESTIONS = ["How do I reset my password?", "How do I change my email address?",
                     "Where can I download my invoices?", "Can I change my plan mid-month?",
                     "How do I delete my account?", "Why was my card declined?"]


def weather_output(city: str) -> str:
    t, cond = WEATHER[city]
    return json.dumps({"location": city, "temperature_c": t, "conditions": cond}, separators=(",", ":"))


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_until(pred, timeout_s: float, what: str, interval_s: float = 0.1):
    end = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lib_sh(func: str, *args: str, timeout_s: float = 300) -> str:
    """One deploy/local/lib.sh function in bash; this process owns the run (AW_OWNER_PID), so a
    later run reaps what an interrupted one left behind."""
    env = dict(os.environ, AW_OWNER_PID=str(os.getpid()))
    p = subprocess.run(["bash", "-c", '. "$0" && "$@"', str(LIB_SH), func, *args],
                       env=env, capture_output=True, text=True, timeout=timeout_s)
    if p.returncode != 0:
        raise RuntimeError(f"lib.sh {func} {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
    return p.stdout.strip()


# ---- the plan: conversations and their events --------------------------------------------------

@dataclass
class Event:
    event_id: str
    conv: str
    index: int                 # position in its conversation
    weather: tuple[str, str] | None
    stream: bool
    value: bytes = b""
    text: str = ""             # the user message (unique: it names the conversation and position)
    sent_at: float | None = None  # monotonic time its delivery was confirmed
    send_error: str | None = None


def make_plan(n_conv: int, n_msgs: int, weather_every: int, stream_every: int,
              rng: random.Random) -> tuple[dict[str, list[Event]], list[Event]]:
    """{conversation: its events in order} and every event in production order (round k holds
    message k of every conversation, so message k-1 is always produced first)."""
    convs: dict[str, list[Event]] = {}
    cities = list(WEATHER)
    for i in range(n_conv):
        conv = f"c-{i}"
        is_weather = weather_every > 0 and i % weather_every == 0
        evs = []
        for k in range(n_msgs):
            eid = f"{conv}.m{k}"
            stream = stream_every > 0 and rng.randrange(stream_every) == 0
            if is_weather:
                a, b = rng.sample(cities, 2)
                text = f"What's the weather in {a} and in {b}? (conversation {conv}, message {k + 1})"
                assistant, weather = WEATHER_ASSISTANT["name"], (a, b)
            else:
                text = f"{rng.choice(SUPPORT_QUESTIONS)} (conversation {conv}, message {k + 1})"
                assistant, weather = SUPPORT_BOT["name"], None
            req = {"v": 1, "event_id": eid, "conversation_id": conv, "assistant": assistant,
                   "content": text}
            if stream:
                req["stream"] = True
            evs.append(Event(eid, conv, k, weather, stream,
                             msgpack.packb(req, use_bin_type=True), text))
        convs[conv] = evs
    order = [convs[f"c-{i}"][k] for k in range(n_msgs) for i in range(n_conv)]
    return convs, order


# ---- processes -----------------------------------------------------------------------------------

class Proc:
    """A process spawned as aw_spawn does: own session, cwd RUN/NAME, output appended to
    RUN/NAME/NAME.log, pid in RUN/NAME/pid, name listed in RUN/services."""

    def __init__(self, run: Path, name: str, cmd: list[str], env: dict[str, str]):
        self.run, self.name = run, name
        self.dir = run / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / f"{name}.log"
        with open(self.log_path, "ab") as logf:
            self.p = subprocess.Popen(cmd, cwd=self.dir, env=env, stdin=subprocess.DEVNULL,
                                      stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        (self.dir / "pid").write_text(f"{self.p.pid}\n")
        services = run / "services"
        names = services.read_text().split() if services.exists() else []
        if name not in names:
            with open(services, "a") as f:
                f.write(name + "\n")
        self.started = time.monotonic()
        self.killed = False
        self.stopped = False

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def kill(self) -> None:
        if self.alive():
            self.killed = True
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def stop(self, timeout_s: float = 60) -> int | None:
        """SIGTERM and wait; SIGKILL after the deadline (then returns None)."""
        if self.alive():
            self.stopped = True
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(10)
                return None
        return self.p.returncode

    def sanitizer_report(self) -> str | None:
        text = self.log_text()
        for m in SANITIZER_MARKERS:
            k = text.find(m)
            if k >= 0:
                return text[max(0, k - 300):k + 3000]
        return None


class WorkerProc(Proc):
    """A worker; its /metrics (worker.health_port) are scraped every 2 s into metrics.log."""

    def __init__(self, run: Path, name: str, cmd: list[str], env: dict[str, str], port: int):
        super().__init__(run, name, cmd, env)
        self.port = port
        self.progress = -1.0        # answered + replies recorded + dead letters, last scrape
        self.progress_at = time.monotonic()
        self.stall_start: float | None = None
        self.stalls: list[str] = []  # "no progress for N s with work pending" episodes

    def ready(self) -> bool:
        return '"msg":"worker ready"' in self.log_text()

    def scrape(self) -> None:
        """One /metrics scrape: the scalar series (no histogram buckets) go to metrics.log; a
        worker that makes no progress for 10 s or more while it has events in flight or lag is
        recorded as a stall (informational: it may be waiting for tool replies)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=1) as r:
                text = r.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return
        now = time.monotonic()
        vals: dict[str, float] = collections.defaultdict(float)
        keep = []
        for ln in text.splitlines():
            if not ln or ln.startswith("#") or "_bucket{" in ln:
                continue
            keep.append(ln)
            name = ln.split("{", 1)[0].split(" ", 1)[0]
            try:
                vals[name] += float(ln.rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                pass
        with open(self.dir / "metrics.log", "a") as f:
            f.write(f"## {time.strftime('%H:%M:%S')}\n" + "\n".join(keep) + "\n")
        progress = sum(vals[k] for k in (
            "aw_events_answered_total", "aw_events_skipped_duplicates_total", "aw_dlq_published_total",
            "aw_tool_requests_published_total", "aw_tool_replies_recorded_total",
            "aw_tool_replies_dead_lettered_total", "aw_tool_rounds_total"))
        pending = vals["aw_events_in_flight"] > 0 or vals["aw_consumer_lag_total"] > 0
        if progress != self.progress or not pending:
            if self.stall_start is not None and self.progress_at - self.stall_start >= 10:
                self.stalls.append(self.stall_text(self.progress_at))
            self.stall_start = None
            self.progress, self.progress_at = progress, now
        elif self.stall_start is None:
            self.stall_start = self.progress_at
        self.last_vals = vals
        self.last_scrape = now

    def stall_text(self, end: float) -> str:
        v = getattr(self, "last_vals", {})
        return (f"{self.name}: no progress for {end - self.stall_start:.0f}s with work pending "
                f"(in flight {v.get('aw_events_in_flight', 0):.0f}, lag {v.get('aw_consumer_lag_total', 0):.0f}, "
                f"paused {v.get('aw_consumption_paused', 0):.0f}, redis up {v.get('aw_redis_up', 0):.0f}, "
                f"txn commits {v.get('aw_txn_commits_total', 0):.0f}, aborts {v.get('aw_txn_aborts_total', 0):.0f}; "
                f"since {time.strftime('%H:%M:%S', time.localtime(time.time() - (time.monotonic() - self.stall_start)))})")

    def close_stall(self) -> None:
        """At its end (killed or stopped): an open stall counts up to the last scrape."""
        if self.stall_start is not None and getattr(self, "last_scrape", 0) - self.stall_start >= 10:
            self.stalls.append(self.stall_text(self.last_scrape) + (" until SIGKILL" if self.killed else ""))
        self.stall_start = None


# ---- Kafka: reading the topics (read committed) and producing the load ----------------------------

@dataclass
class Resp:
    event_id: str | None
    conv: str | None
    thread_id: str | None
    run_id: str | None
    status: str | None
    error_code: str | None
    tool_calls: list
    text: str
    partition: int
    offset: int
    ts_ms: int = 0   # the record's timestamp (produce time)


def answer_text(obj: dict) -> str:
    out = []
    for m in obj.get("messages") or []:
        for part in m.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "text":
                out.append(part["text"]["value"])
    return "".join(out)


class Reader(threading.Thread):
    """Reads the output topics from the beginning with isolation.level=read_committed and no
    consumer group (assign, never subscribe), for the whole run."""

    def __init__(self, bootstrap: str, partitions: dict[str, int]):
        super().__init__(daemon=True, name="reader")
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "chaos-reader",
                           "enable.auto.commit": False, "isolation.level": "read_committed",
                           "auto.offset.reset": "earliest", "enable.partition.eof": False,
                           **QUIET})
        self.parts = [TopicPartition(t, p, OFFSET_BEGINNING) for t, n in partitions.items()
                      for p in range(n)]
        self.c.assign(self.parts)
        self.lock = threading.Lock()
        self.responses: list[Resp] = []
        self.by_event: dict[str, list[Resp]] = collections.defaultdict(list)
        self.tool_requests: list[dict] = []
        self.tool_replies = 0
        self.deltas = 0
        self.usage: collections.Counter = collections.Counter()  # usage records per event id
        self.dlq: list[dict] = []
        self.undecodable = 0
        self.errors: list[str] = []
        self.stop_flag = threading.Event()
        self.want_positions = threading.Event()
        self.have_positions = threading.Event()
        self.positions: dict[tuple[str, int], int] | None = None

    def run(self) -> None:
        while not self.stop_flag.is_set():
            if self.want_positions.is_set():
                # Asked from the main thread: the consumer is only ever used from this one.
                try:
                    self.positions = {(tp.topic, tp.partition): tp.offset for tp in self.c.position(
                        [TopicPartition(t.topic, t.partition) for t in self.parts])}
                except KafkaException as e:
                    self.positions = None
                    self.errors.append(f"position: {e}")
                self.want_positions.clear()
                self.have_positions.set()
            try:
                msgs = self.c.consume(num_messages=1000, timeout=0.2)
            except KafkaException as e:  # noqa: PERF203
                self.errors.append(str(e))
                continue
            for m in msgs:
                if m.error():
                    # Transient errors (the broker restarting) are reported here too; only a
                    # fatal one means something.
                    if m.error().fatal():
                        self.errors.append(str(m.error()))
                    continue
                try:
                    obj = msgpack.unpackb(m.value() or b"", raw=False, strict_map_key=False)
                except Exception:  # noqa: BLE001
                    self.undecodable += 1
                    continue
                self._take(m.topic(), m.partition(), m.offset(), obj, m.timestamp()[1])

    def _take(self, topic: str, partition: int, offset: int, obj: Any, ts_ms: int = 0) -> None:
        if not isinstance(obj, dict):
            self.undecodable += 1
            return
        with self.lock:
            if topic == TOPICS["responses"]:
                err = obj.get("error")
                # The backend's handles (thread/run or conversation/response); thread_id and
                # run_id are the Assistants backend's only.
                be = obj.get("backend") if isinstance(obj.get("backend"), dict) else {}
                r = Resp(obj.get("event_id"), obj.get("conversation_id"),
                         be.get("conversation") or obj.get("thread_id"),
                         be.get("turn") or obj.get("run_id"), obj.get("status"),
                         err.get("code") if isinstance(err, dict) else None,
                         list(obj.get("tool_calls") or []), answer_text(obj), partition, offset, ts_ms)
                self.responses.append(r)
                self.by_event[r.event_id].append(r)
            elif topic == TOPICS["tool_requests"]:
                self.tool_requests.append({"conv": obj.get("conversation_id"), "run": obj.get("run_id"),
                                           "call": obj.get("tool_call_id")})
            elif topic == TOPICS["tool_replies"]:
                self.tool_replies += 1
            elif topic == TOPICS["deltas"]:
                self.deltas += 1
            elif topic == TOPICS["usage"]:
                self.usage[obj.get("event_id")] += 1
            elif topic == TOPICS["dlq"]:
                err = obj.get("error")
                self.dlq.append({"code": err.get("code") if isinstance(err, dict) else None,
                                 "event_id": obj.get("event_id"), "source": obj.get("source")})

    def answered(self) -> int:
        with self.lock:
            return len(self.by_event)

    def caught_up(self, bootstrap_consumer: Consumer) -> list[str]:
        """Partitions whose read position is still below the high watermark (empty = caught up)."""
        self.have_positions.clear()
        self.want_positions.set()
        if not self.have_positions.wait(10) or self.positions is None:
            return ["(positions unknown)"]
        behind = []
        for (topic, part), pos in sorted(self.positions.items()):
            _lo, hi = bootstrap_consumer.get_watermark_offsets(
                TopicPartition(topic, part), timeout=10, cached=False)
            pos = max(pos, 0)
            if pos < hi:
                behind.append(f"{topic}[{part}] at {pos} of {hi}")
        return behind

    def close(self) -> None:
        self.stop_flag.set()
        self.join(10)
        self.c.close()


class Loader(threading.Thread):
    """Produces the events on schedule: event j of `order` at start + j * window / len(order),
    keyed by conversation, with an idempotent producer (so each conversation's events land in
    order even across the broker's restart)."""

    def __init__(self, bootstrap: str, order: list[Event], window_s: float):
        super().__init__(daemon=True, name="loader")
        self.order, self.window_s = order, window_s
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                           "linger.ms": 5, "message.timeout.ms": 600000, **QUIET})
        self.produced = 0
        self.delivered = 0
        self.failed = 0
        self.done = threading.Event()
        self.abort = threading.Event()

    def _cb(self, ev: Event):
        def cb(err, _m):
            if err is not None:
                ev.send_error = str(err)
                self.failed += 1
            else:
                ev.sent_at = time.monotonic()
                self.delivered += 1
        return cb

    def run(self) -> None:
        t0 = time.monotonic()
        n = len(self.order)
        for j, ev in enumerate(self.order):
            due = t0 + j * self.window_s / n
            while not self.abort.is_set():
                left = due - time.monotonic()
                if left <= 0:
                    break
                self.p.poll(min(left, 0.1))
            if self.abort.is_set():
                break
            while True:
                try:
                    self.p.produce(TOPICS["requests"], value=ev.value, key=ev.conv.encode(),
                                   on_delivery=self._cb(ev))
                    break
                except BufferError:
                    self.p.poll(0.1)
            self.produced += 1
            self.p.poll(0)
        while self.p.flush(1.0) > 0 and not self.abort.is_set():
            pass
        self.done.set()


# ---- the simulator ---------------------------------------------------------------------------------

class Simulator(awtest.Simulator):
    """The integration tests' simulator client, plus listing that tolerates a gone object."""

    def __init__(self, port: int):
        super().__init__(port, record_path=None)

    def list_all(self, path: str) -> list[dict] | None:
        """Every item of a list endpoint, oldest first (None if the object does not exist)."""
        out, after = [], None
        while True:
            q = "order=asc&limit=100" + (f"&after={after}" if after else "")
            st, page = self._call("GET", f"/v1{path}?{q}")
            if st == 404:
                return None
            if st != 200:
                raise RuntimeError(f"GET /v1{path} -> {st}: {page}")
            out.extend(page.get("data") or [])
            if not page.get("has_more") or not page.get("data"):
                return out
            after = page["data"][-1]["id"]


# ---- the test ------------------------------------------------------------------------------------

@dataclass
class Chaos:
    args: argparse.Namespace
    run: Path = None
    kafka: str = ""
    redis_port: int = 0
    sim: Simulator = None
    workers: dict[int, WorkerProc] = field(default_factory=dict)  # slot -> current incarnation
    all_workers: list[WorkerProc] = field(default_factory=list)
    weather: list[Proc] = field(default_factory=list)
    kills: int = 0
    kill_log: list = field(default_factory=list)  # (unix ms, WorkerProc) per SIGKILL
    crashes: list[str] = field(default_factory=list)
    start_failures: list[str] = field(default_factory=list)
    redis_restarts: list[str] = field(default_factory=list)
    kafka_restarts: list[str] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)
    timeline: list[str] = field(default_factory=list)

    # ---- set-up ----
    def note(self, msg: str) -> None:
        self.timeline.append(f"{time.monotonic() - self.t0:7.1f}s {msg}")
        if self.args.verbose:
            log(msg)

    def worker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AW_") and k != "OPENAI_API_KEY"}
        # Redis requires AUTH (lib.sh): the run's ACL user, its password from the run's file.
        env.update({"AW_REDIS_USERNAME": self.redis_user(),
                    "AW_REDIS_PASSWORD_FILE": str(self.run / "redis.password")})
        env.update({"AW_API_KEY": API_KEY, "AW_TOOL_SECRET": TOOL_SECRET, "AW_TOOL_REQUEST_KEY": TOOL_REQUEST_KEY,
                    "AW_LOG_LEVEL": self.args.log_level,
                    "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:abort_on_error=0",
                    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"})
        return env

    def redis_user(self) -> str:
        return (self.run / "redis.user").read_text().strip()

    def redis_client(self):
        """A client of the run's Redis, authenticated as the workers are."""
        import redis as redis_lib
        return redis_lib.Redis(host="127.0.0.1", port=self.redis_port, username=self.redis_user(),
                               password=(self.run / "redis.password").read_text(), decode_responses=True)

    def write_config(self) -> Path:
        a = self.args
        cfg = {
            "kafka": {"brokers": self.kafka, "group_id": GROUP, "topics": dict(TOPICS),
                      "properties": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}},
            "redis": {"host": "127.0.0.1", "port": self.redis_port, "prefix": "aw"},
            "api": {"base_url": f"{self.sim.base}/v1", "timeout_ms": 30000, "max_retries": a.max_retries,
                    "backend": a.backend},
            "log_level": a.log_level,
            # Chat Completions has no hosted tools: the bot goes without file_search there.
            "assistants": [dict(SUPPORT_BOT, tools=[]) if a.backend == "chat" else SUPPORT_BOT, WEATHER_ASSISTANT],
            "functions": {"get_weather": {"topic": TOPICS["tool_requests"],
                                          "deadline_ms": a.tool_deadline_ms, "on_deadline": "error_output"}},
        }
        path = self.run / "worker.config.json"
        path.write_text(json.dumps(cfg, indent=2))
        return path

    def start_stack(self) -> None:
        a = self.args
        self.run = Path(lib_sh("aw_run_dir_new"))
        log(f"run dir {self.run}")
        lib_sh("aw_kafka_start", str(self.run))
        self.kafka = (self.run / "kafka" / "bootstrap").read_text().strip()
        lib_sh("aw_topics_create", str(self.run), str(a.partitions), TOPICS["requests"],
               TOPICS["responses"], TOPICS["deltas"], TOPICS["tool_requests"], TOPICS["tool_replies"])
        lib_sh("aw_topics_create", str(self.run), "4", TOPICS["dlq"], TOPICS["usage"])
        lib_sh("aw_redis_start", str(self.run), "--aof", "redis")
        self.redis_port = int((self.run / "redis" / "port").read_text())
        lib_sh("aw_simulator_start", str(self.run), str(a.build / "aw-simulator"),
               "--seed", str(a.seed), "--token-delay-ms", str(a.token_delay_ms),
               "--answer-tokens", str(a.answer_tokens))
        self.sim = Simulator(int((self.run / "simulator" / "port").read_text()))
        self.config = self.write_config()
        for n in range(a.weather_services):
            self.start_weather(n)
        log(f"stack up: Kafka {self.kafka}, Redis :{self.redis_port} (AOF, fsync always), "
            f"simulator {self.sim.base}, {a.weather_services} weather service(s)")

    def start_weather(self, n: int) -> Proc:
        name = f"weather-{n}" if not any(p.name == f"weather-{n}" for p in self.weather) else \
            f"weather-{n}.{sum(1 for p in self.weather if p.name.startswith(f'weather-{n}'))}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("AW_")}
        env["AW_TOOL_REQUEST_KEY"] = TOOL_REQUEST_KEY
        p = Proc(self.run, name, [str(self.args.build / "weather_service"), "--brokers", self.kafka,
                                  "--group", "weather-service", "--requests-topic", TOPICS["tool_requests"],
                                  "--reply-topic", TOPICS["tool_replies"]],
                 env)
        self.weather.append(p)
        wait_until(lambda: '"msg":"weather service ready"' in p.log_text() or not p.alive(), 60,
                   f"{name} to be ready")
        if not p.alive():
            raise RuntimeError(f"{name} exited at start:\n{p.tail()}")
        return p

    def spawn_worker(self, slot: int) -> WorkerProc:
        gen = sum(1 for w in self.all_workers if w.name.startswith(f"worker-{slot}."))
        port = free_port()
        w = WorkerProc(self.run, f"worker-{slot}.{gen}",
                       [str(self.args.build / "assistant-worker"), "run", "--config", str(self.config)],
                       dict(self.worker_env(), AW_HEALTH_PORT=str(port)), port)
        self.workers[slot] = w
        self.all_workers.append(w)
        self.note(f"started {w.name} (pid {w.pid})")
        return w

    # ---- chaos ----
    def scraper(self, stop: threading.Event) -> None:
        """Every 2 s: each live worker's /metrics (into RUN/<worker>/metrics.log)."""
        while not stop.wait(2.0):
            for w in list(self.workers.values()):
                if w.alive() and w.ready():
                    w.scrape()

    def check_fleet(self) -> None:
        """A worker that exited without being killed crashed: record it and replace it; a worker
        not ready within 60 s failed to start."""
        for slot, w in list(self.workers.items()):
            if w.killed:
                continue
            if not w.alive():
                rep = w.sanitizer_report()
                self.crashes.append(f"{w.name} exited by itself with {w.p.returncode}"
                                    + (f"; sanitizer report:\n{rep}" if rep else f"; log tail:\n{w.tail()}"))
                self.note(f"{w.name} CRASHED (exit {w.p.returncode}); replacing it")
                self.spawn_worker(slot)
            elif not w.ready() and time.monotonic() - w.started > 60:
                self.start_failures.append(f"{w.name} not ready after 60 s:\n{w.tail()}")
                w.kill()
                self.note(f"{w.name} did not get ready in 60 s; replacing it")
                self.spawn_worker(slot)
        for n, p in enumerate(list(self.weather)):
            if p.alive() or p.stopped:
                continue
            if not getattr(p, "reported", False):
                p.reported = True
                self.crashes.append(f"{p.name} exited by itself with {p.p.returncode}; log tail:\n{p.tail()}")
                self.note(f"{p.name} CRASHED; replacing it")
                self.start_weather(int(p.name.split("-")[1].split(".")[0]))

    def kill_one(self, rng: random.Random) -> None:
        ready = [s for s, w in self.workers.items() if w.alive() and w.ready()]
        if not ready:
            self.note("no ready worker to kill this time")
            return
        slot = rng.choice(sorted(ready))
        w = self.workers[slot]
        self.kill_log.append((int(time.time() * 1000), w))
        w.kill()
        w.close_stall()
        self.kills += 1
        self.note(f"SIGKILL {w.name} (pid {w.pid}), up {time.monotonic() - w.started:.1f}s")
        delay = rng.uniform(0, self.args.restart_delay_max)
        self.pending_restarts.append((time.monotonic() + delay, slot))

    def restart_redis(self) -> None:
        t = time.monotonic()
        self.note("restarting redis-server (SIGTERM, same port and AOF)")
        try:
            lib_sh("aw_redis_restart", str(self.run), "redis")
            self.redis_restarts.append(f"{time.monotonic() - t:.1f}s")
            self.note(f"redis-server back after {time.monotonic() - t:.1f}s")
        except RuntimeError as e:
            self.harness_errors.append(f"redis restart failed: {e}")

    def restart_kafka(self) -> None:
        t = time.monotonic()
        self.note("restarting the Kafka broker (SIGTERM, same ports and data)")
        try:
            lib_sh("aw_kafka_restart", str(self.run))
            self.kafka_restarts.append(f"{time.monotonic() - t:.1f}s")
            self.note(f"Kafka broker back after {time.monotonic() - t:.1f}s")
        except RuntimeError as e:
            self.harness_errors.append(f"kafka restart failed: {e}")

    def chaos_loop(self, loader: Loader, reader: Reader, total: int) -> None:
        a = self.args
        rng = random.Random(a.seed * 7919 + 1)
        self.pending_restarts: list[tuple[float, int]] = []
        start = time.monotonic()
        end = start + a.duration
        actions = []  # (time, what)
        if a.redis_restart:
            actions.append((start + a.redis_at * a.duration, "redis"))
        if a.kafka_restart:
            actions.append((start + a.kafka_at * a.duration, "kafka"))
        actions.sort()
        next_kill = start + rng.uniform(*a.kill_interval) if a.kills else float("inf")
        last_report = start
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_kill:
                self.kill_one(rng)
                next_kill = now + rng.uniform(*a.kill_interval)
            for due, slot in list(self.pending_restarts):
                if now >= due:
                    self.pending_restarts.remove((due, slot))
                    self.spawn_worker(slot)
            if actions and now >= actions[0][0]:
                _, what = actions.pop(0)
                self.restart_redis() if what == "redis" else self.restart_kafka()
            self.check_fleet()
            if now - last_report >= 10:
                last_report = now
                log(f"chaos {now - start:5.0f}/{a.duration:.0f}s: produced {loader.produced}/{total}, "
                    f"answered {reader.answered()}, kills {self.kills}, "
                    f"workers up {sum(1 for w in self.workers.values() if w.alive())}")
            time.sleep(0.05)
        for _due, slot in self.pending_restarts:
            self.spawn_worker(slot)
        self.pending_restarts.clear()
        for _, what in actions:  # a restart scheduled after the window (a tiny --duration)
            self.restart_redis() if what == "redis" else self.restart_kafka()

    # ---- draining ----
    def committed_lag(self, admin_consumer: Consumer) -> int:
        """Events of the requests topic past the workers' committed offsets."""
        tps = [TopicPartition(TOPICS["requests"], p) for p in range(self.args.partitions)]
        c = Consumer({"bootstrap.servers": self.kafka, "group.id": GROUP, "enable.auto.commit": False,
                      **QUIET})
        try:
            committed = c.committed(tps, timeout=10)
        finally:
            c.close()
        lag = 0
        for tp in committed:
            _lo, hi = admin_consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition),
                                                           timeout=10, cached=False)
            lag += max(0, hi - max(tp.offset, 0))
        return lag

    def drain(self, loader: Loader, reader: Reader, events: list[Event], admin_consumer: Consumer) -> bool:
        """Wait until every produced event has an answer and the workers committed every offset
        (after that nothing is processed again), or the drain timeout."""
        a = self.args
        loader.done.wait(max(1.0, a.drain_timeout))
        end = time.monotonic() + a.drain_timeout
        last = 0.0
        while time.monotonic() < end:
            self.check_fleet()
            sent = [e for e in events if e.sent_at is not None]
            with reader.lock:
                missing = sum(1 for e in sent if e.event_id not in reader.by_event)
            if missing == 0 and loader.done.is_set():
                try:
                    lag = self.committed_lag(admin_consumer)
                except KafkaException as e:
                    lag = -1
                    self.note(f"committed offsets not readable yet: {e}")
                if lag == 0:
                    return True
            else:
                lag = None
            if time.monotonic() - last >= 5:
                last = time.monotonic()
                log(f"draining: {missing} event(s) without an answer"
                    + (f", committed lag {lag}" if lag is not None else ""))
            time.sleep(0.5)
        return False

    def stop_fleet(self) -> list[str]:
        problems = []
        for w in self.workers.values():
            if not w.alive():
                continue
            rc = w.stop(60)
            self.note(f"stopped {w.name}: exit {rc}")
            if rc != 0:
                problems.append(f"{w.name} exited {rc} after SIGTERM (log {w.log_path}):\n{w.tail()}")
        for p in self.weather:
            if p.alive():
                rc = p.stop(30)
                if rc != 0:
                    problems.append(f"{p.name} exited {rc} after SIGTERM:\n{p.tail()}")
        for w in self.all_workers:
            rep = w.sanitizer_report()
            if rep:
                problems.append(f"{w.name}: sanitizer report:\n{rep}")
        return problems

    # ---- main ----
    def execute(self) -> int:
        a = self.args
        self.t0 = time.monotonic()
        rng = random.Random(a.seed)
        convs, order = make_plan(a.conversations, a.messages, a.weather_every, a.stream_every, rng)
        total = len(order)
        self.start_stack()
        # Faults from the start: workers joining later meet them at start-up too.
        self.sim.faults(rate_500=a.rate_500, rate_429=a.rate_429, rate_drop_stream=a.rate_drop,
                        rate_apply_fail=a.rate_apply_fail, seed=a.seed, retry_after_s=1)
        for slot in range(a.workers):
            self.spawn_worker(slot)
        wait_until(lambda: all(w.ready() or not w.alive() for w in self.workers.values()), 90,
                   "the workers to be ready")
        self.check_fleet()
        reader = Reader(self.kafka, {TOPICS["responses"]: a.partitions, TOPICS["tool_requests"]: a.partitions,
                                     TOPICS["tool_replies"]: a.partitions, TOPICS["deltas"]: a.partitions,
                                     TOPICS["dlq"]: 4, TOPICS["usage"]: 4})
        reader.start()
        scrape_stop = threading.Event()
        threading.Thread(target=self.scraper, args=(scrape_stop,), daemon=True, name="scraper").start()
        loader = Loader(self.kafka, order, a.duration * a.load_fraction)
        t_load = time.monotonic()
        log(f"load: {a.conversations} conversations x {a.messages} messages = {total} events over "
            f"{a.duration * a.load_fraction:.0f}s; chaos for {a.duration:.0f}s: SIGKILL a worker every "
            f"{a.kill_interval[0]:g}-{a.kill_interval[1]:g}s, Redis restart at "
            f"{a.redis_at * a.duration:.0f}s, Kafka restart at {a.kafka_at * a.duration:.0f}s; simulator "
            f"500 {a.rate_500:.0%}, 429 {a.rate_429:.0%}, dropped streams {a.rate_drop:.0%}, "
            f"applied-then-failed creates {a.rate_apply_fail:.0%}")
        loader.start()
        admin_consumer = Consumer({"bootstrap.servers": self.kafka, "group.id": "chaos-admin",
                                   "enable.auto.commit": False, **QUIET})
        drained = False
        try:
            self.chaos_loop(loader, reader, total)
            chaos_s = time.monotonic() - t_load
            log(f"chaos over after {chaos_s:.0f}s ({self.kills} kills); draining with "
                f"{sum(1 for w in self.workers.values() if w.alive())} workers")
            drained = self.drain(loader, reader, order, admin_consumer)
            drain_s = time.monotonic() - t_load - chaos_s
            if not drained:
                self.harness_errors.append(f"not drained within {a.drain_timeout:.0f}s")
            scrape_stop.set()
            for w in self.all_workers:
                w.close_stall()
            fleet_problems = self.stop_fleet()
            # The simulator's threads, without faults now.
            self.sim.faults(rate_500=0, rate_429=0, rate_drop_stream=0, rate_apply_fail=0, token_delay_ms=0)
            sim_stats = self.sim.stats()
            # Read the output topics to their end (read committed).
            try:
                wait_until(lambda: not reader.caught_up(admin_consumer), 60,
                           "the reader to reach the end of the output topics")
            except RuntimeError:
                behind = reader.caught_up(admin_consumer)
                self.harness_errors.append("output topics not readable to the end (read committed; an "
                                           f"open transaction?): {behind[:6]}")
            reader.stop_flag.set()
            reader.join(10)
            result = self.check(convs, order, reader, sim_stats)
        finally:
            scrape_stop.set()
            # The harness' clients go before the broker does (no reconnect noise).
            loader.abort.set()
            loader.join(10)
            loader.p = None
            reader.close()
            admin_consumer.close()
        result["fleet_problems"] = fleet_problems
        result["timings"] = {"chaos_s": round(chaos_s, 1), "drain_s": round(drain_s, 1),
                             "total_s": round(time.monotonic() - self.t0, 1)}
        return self.report(result, loader, reader, total)

    # ---- checks ----
    def kill_to_first_answer(self, reader: Reader) -> list[float]:
        """Per SIGKILL that left partitions behind: seconds from the kill to the first answer on
        one of them.  Requests and responses are keyed by conversation over the same number of
        partitions, so a request partition's answers land on the response partition of the same
        number, produced by its owner only: after the kill, by the next owner."""
        import datetime
        out = []
        for kill_ms, w in self.kill_log:
            owned: set[int] = set()
            try:
                lines = w.log_path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for ln in lines:
                if '"msg":"partitions ' not in ln or f'"topic":"{TOPICS["requests"]}"' not in ln:
                    continue
                try:
                    e = json.loads(ln)
                    ts = datetime.datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp() * 1000
                except (ValueError, KeyError):
                    continue
                if ts > kill_ms:
                    break
                parts = {int(x) for x in str(e.get("partitions", "")).split(",") if x.strip().isdigit()}
                if e.get("msg") == "partitions assigned":
                    owned |= parts
                elif e.get("msg") == "partitions revoked":
                    owned -= parts
            if not owned:
                continue
            with reader.lock:
                after = [r.ts_ms for r in reader.responses if r.partition in owned and r.ts_ms > kill_ms]
            if after:
                out.append((min(after) - kill_ms) / 1000.0)
        return out

    def check(self, convs: dict[str, list[Event]], order: list[Event], reader: Reader,
              sim_stats: dict) -> dict:
        a = self.args
        sent = [e for e in order if e.sent_at is not None]
        by_event = reader.by_event
        counts = collections.Counter(len(by_event.get(e.event_id, [])) for e in sent)
        never = [e.event_id for e in sent if not by_event.get(e.event_id)]
        doubled = [e.event_id for e in sent if len(by_event.get(e.event_id, [])) > 1]
        foreign = [r for r in reader.responses if r.event_id not in {e.event_id for e in order}]
        first_status = collections.Counter()
        all_status = collections.Counter()
        for e in sent:
            rs = by_event.get(e.event_id) or []
            if rs:
                first_status[f"{rs[0].status}" + (f" ({rs[0].error_code})" if rs[0].error_code else "")] += 1
            for r in rs:
                all_status[r.status] += 1
        # Doubled answers that differ (another run, thread or status) say more than exact repeats.
        doubled_differing = [eid for eid in doubled
                             if len({(r.run_id, r.thread_id, r.status, r.text) for r in by_event[eid]}) > 1]

        # 2. Order on the responses topic: per conversation, the first answers of its events in
        # topic order must follow the order the events were sent.
        resp_by_conv: dict[str, list[Resp]] = collections.defaultdict(list)
        for r in reader.responses:
            resp_by_conv[r.conv].append(r)
        order_viol: list[str] = []
        late_dup: list[str] = []   # a repeat of an event answered after a later event's answer
        threads_by_conv: dict[str, set[str]] = {}
        for conv, evs in convs.items():
            idx = {e.event_id: e.index for e in evs}
            rs = sorted(resp_by_conv.get(conv, []), key=lambda r: r.offset)
            if len({r.partition for r in rs}) > 1:
                order_viol.append(f"{conv}: answers on partitions {sorted({r.partition for r in rs})}")
            seen, firsts, hi = set(), [], -1
            for r in rs:
                i = idx.get(r.event_id, -1)
                if r.event_id in seen:
                    if i < hi:
                        late_dup.append(f"{conv}: {r.event_id} again at offset {r.offset} after m{hi}")
                    continue
                seen.add(r.event_id)
                firsts.append(i)
                hi = max(hi, i)
            if firsts != sorted(firsts):
                order_viol.append(f"{conv}: answers in order {['m%d' % i for i in firsts]}")
            threads_by_conv[conv] = {r.thread_id for r in rs if r.thread_id}

        # 3. Threads: every thread a conversation's answers name, plus the one Redis maps it to.
        redis_threads = self.redis_threads(list(convs))
        multi_thread = [f"{c}: {sorted(t)}" for c, t in threads_by_conv.items() if len(t) > 1]
        map_mismatch = [f"{c}: redis {redis_threads.get(c)} vs answers {sorted(t)}"
                        for c, t in threads_by_conv.items()
                        if t and redis_threads.get(c) and redis_threads[c] not in t]
        dup_msgs: list[str] = []
        thread_order_viol: list[str] = []
        missing_on_thread: list[str] = []
        wrong_conv_on_thread: list[str] = []
        extra_runs: list[str] = []
        max_runs_per_event = 0      # runs (Assistants) or responses beyond one per tool round (Responses)
        max_user_msgs_per_event = 0  # copies of one event's user message on its thread/conversation
        threads_checked = 0
        missing_threads: list[str] = []
        # Conversation items carry no metadata (Responses): a user message is known by its text.
        by_text = {e.text: e for evs in convs.values() for e in evs}
        for conv, evs in convs.items():
            idx = {e.event_id: e.index for e in evs}
            tids = set(threads_by_conv.get(conv, set()))
            if redis_threads.get(conv):
                tids.add(redis_threads[conv])
            for tid in sorted(tids):
                is_conv = awtest.is_conversation(tid)
                msgs = self.sim.list_all(f"/conversations/{tid}/items" if is_conv else f"/threads/{tid}/messages")
                if msgs is None:
                    missing_threads.append(f"{conv}: {tid}")
                    continue
                threads_checked += 1
                if is_conv:
                    users = []
                    for m in msgs:
                        if m.get("type") == "message" and m.get("role") == "user":
                            e = by_text.get(awtest.Simulator.item_text(m))
                            users.append({"id": m.get("id"), "metadata": {
                                "event_id": e.event_id if e else None, "conversation_id": e.conv if e else None}})
                else:
                    users = [m for m in msgs if m.get("role") == "user"]
                eids = [(m.get("metadata") or {}).get("event_id") for m in users]
                c = collections.Counter(eids)
                max_user_msgs_per_event = max([max_user_msgs_per_event] + [n for e, n in c.items() if e])
                for eid, n in c.items():
                    if n > 1:
                        dup_msgs.append(f"{tid} ({conv}): {eid} x{n}")
                for m in users:
                    mc = (m.get("metadata") or {}).get("conversation_id")
                    if mc != conv:
                        wrong_conv_on_thread.append(f"{tid} ({conv}): message {m['id']} of {mc}")
                positions = []
                for eid in eids:
                    if eid in idx and idx[eid] not in positions:
                        positions.append(idx[eid])
                if positions != sorted(positions):
                    thread_order_viol.append(f"{tid} ({conv}): user messages {['m%d' % i for i in positions]}")
                on_thread = set(eids)
                for e in evs:
                    rs = by_event.get(e.event_id) or []
                    if any(r.status == "completed" and r.thread_id == tid for r in rs) and e.event_id not in on_thread:
                        missing_on_thread.append(f"{tid} ({conv}): {e.event_id} answered but not on the thread")
                if is_conv:
                    # One response per round of function calls plus the answer's (a weather
                    # event has one round).
                    per_ev = collections.Counter(r.get("event_id") for r in self.sim.admin_responses(conversation=tid))
                    weather = {e.event_id for e in evs if e.weather}
                    for eid, n in per_ev.items():
                        max_runs_per_event = max(max_runs_per_event, n - (1 if eid in weather else 0))
                        if n > (2 if eid in weather else 1):
                            extra_runs.append(f"{tid} ({conv}): {n} responses for event {eid}")
                    continue
                runs = self.sim.list_all(f"/threads/{tid}/runs") or []
                per_msg = collections.Counter((r.get("metadata") or {}).get("aw_message_id")
                                              or (r.get("metadata") or {}).get("aw_tag") for r in runs)
                for mid, n in per_msg.items():
                    max_runs_per_event = max(max_runs_per_event, n)
                    if n > 1:
                        extra_runs.append(f"{tid} ({conv}): {n} runs for message {mid}")

        if a.backend == "chat":
            # The fleet keeps the history (Redis): each answered event's turn is there exactly
            # once, in the order the events were sent, with its own user message.
            hist = self.redis_histories(list(convs))
            for conv, evs in convs.items():
                idx = {e.event_id: e.index for e in evs}
                turns = hist.get(conv) or []
                if turns:
                    threads_checked += 1
                eids = [t.get("e") for t in turns]
                c = collections.Counter(eids)
                max_user_msgs_per_event = max([max_user_msgs_per_event] + list(c.values()))
                for eid, n in c.items():
                    if n > 1:
                        dup_msgs.append(f"history of {conv}: {eid} x{n}")
                for t in turns:
                    msgs = t.get("m") or []
                    user = msgs[0] if msgs and msgs[0].get("role") == "user" else {}
                    e = by_text.get(user.get("content") if isinstance(user.get("content"), str) else None)
                    if e is None or e.conv != conv or e.event_id != t.get("e"):
                        wrong_conv_on_thread.append(f"history of {conv}: turn {t.get('e')} holds "
                                                    f"{str(user.get('content'))[:60]!r}")
                positions = [idx[x] for x in eids if x in idx]
                if positions != sorted(positions):
                    thread_order_viol.append(f"history of {conv}: turns {['m%d' % i for i in positions]}")
                for e in evs:
                    rs = by_event.get(e.event_id) or []
                    if any(r.status == "completed" for r in rs) and e.event_id not in c:
                        missing_on_thread.append(f"history of {conv}: {e.event_id} answered but not in the history")

        # 4. Tool outputs: a completed weather answer lists both calls with outcome "output" and
        # quotes both outputs; a weather event that ended otherwise for a tool reason lost them.
        # Two ways to lose one, counted apart: the answer lacks a city's output (the model never
        # got it), or the answer has both but the response's tool_calls do not list both calls
        # with outcome "output" (the record of the round was lost, e.g. by a resuming worker).
        tool_lost: list[str] = []
        tool_lost_ids: list[str] = []
        tool_lost_kind = collections.Counter()
        weather_events = [e for e in sent if e.weather]
        weather_completed = 0
        for e in weather_events:
            for r in by_event.get(e.event_id) or []:
                if r.status == "completed":
                    weather_completed += 1
                    outs = [c for c in r.tool_calls if isinstance(c, dict) and c.get("outcome") == "output"]
                    bad = []
                    missing = [city for city in e.weather if f"{city}: {weather_output(city)}" not in r.text]
                    if missing:
                        bad.append(f"answer lacks the output for {', '.join(missing)}")
                        tool_lost_kind["answer lacks an output"] += 1
                    if len(outs) < 2:
                        bad.append(f"tool_calls {[(c.get('name'), c.get('outcome')) for c in r.tool_calls]}")
                        if not missing:
                            tool_lost_kind["answer has both, tool_calls incomplete"] += 1
                    if bad:
                        tool_lost.append(f"{e.event_id} ({TOPICS['responses']}[{r.partition}]@{r.offset}): "
                                         f"{'; '.join(bad)}; answer {r.text[:150]!r}")
                        tool_lost_ids.append(e.event_id)
                elif r.error_code and ("tool" in r.error_code or r.status in ("cancelled", "expired")):
                    tool_lost.append(f"{e.event_id}: {r.status} ({r.error_code})")
                    tool_lost_ids.append(e.event_id)
                    tool_lost_kind[f"{r.status} ({r.error_code})"] += 1
        tool_requests_per_conv = collections.Counter(t["conv"] for t in reader.tool_requests)

        kill_to_answer = self.kill_to_first_answer(reader)

        return {
            "kill_to_first_answer_s": kill_to_answer,
            "events_sent": len(sent),
            "events_not_sent": [f"{e.event_id}: {e.send_error}" for e in order if e.sent_at is None],
            "answered_once": counts.get(1, 0),
            "answered_more": len(doubled),
            "answered_more_differing": len(doubled_differing),
            "extra_answers": sum(n - 1 for n in (len(by_event[x]) for x in doubled)),
            "never_answered": len(never),
            "responses_total": len(reader.responses),
            "foreign_responses": len(foreign),
            "foreign_ids": [f"{r.event_id} at {r.partition}@{r.offset}" for r in foreign],
            "order_violations": len(order_viol) + len(thread_order_viol),
            "order_violations_topic": order_viol,
            "order_violations_thread": thread_order_viol,
            "late_duplicates": late_dup,
            "duplicate_user_messages": dup_msgs,
            "conversations_multi_thread": multi_thread,
            "thread_map_mismatch": map_mismatch,
            "wrong_conversation_on_thread": wrong_conv_on_thread,
            "answered_not_on_thread": missing_on_thread,
            "missing_threads": missing_threads,
            "threads_checked": threads_checked,
            "extra_runs": extra_runs,
            "max_runs_per_event": max_runs_per_event,
            "max_user_msgs_per_event": max_user_msgs_per_event,
            "weather_events": len(weather_events),
            "weather_completed": weather_completed,
            "tool_outputs_lost": tool_lost,
            "tool_outputs_lost_ids": tool_lost_ids,
            "tool_outputs_lost_kind": dict(tool_lost_kind),
            "tool_requests": len(reader.tool_requests),
            "tool_requests_conversations": len(tool_requests_per_conv),
            "tool_replies": reader.tool_replies,
            "deltas": reader.deltas,
            "usage_records": sum(reader.usage.values()),
            "usage_doubled": sorted(e for e, n in reader.usage.items() if n > 1)[:20],
            "usage_unanswered": sorted(e for e in reader.usage if e not in reader.by_event)[:20],
            "dlq": dict(collections.Counter(d["code"] for d in reader.dlq)),
            "status_first": dict(first_status),
            "status_all": dict(all_status),
            "never_ids": never,
            "doubled_ids": doubled,
            "doubled_differing_ids": doubled_differing,
            "sim_stats": sim_stats,
            "reader_errors": reader.errors[:20],
            "undecodable": reader.undecodable,
        }

    def redis_histories(self, convs: list[str]) -> dict[str, list[dict]]:
        """The chat backend's stored turns per conversation (worker/event/history_store.h)."""
        r = self.redis_client()
        try:
            pipe = r.pipeline(transaction=False)
            for c in convs:
                pipe.lrange(awtest.rk_key("aw", c, "hist"), 0, -1)
            vals = pipe.execute()
        finally:
            r.close()
        return {c: [json.loads(t) for t in v] for c, v in zip(convs, vals) if v}

    def redis_threads(self, convs: list[str]) -> dict[str, str]:
        try:
            import redis as redis_lib
        except ImportError:
            return {}
        r = self.redis_client()
        try:
            pipe = r.pipeline(transaction=False)
            for c in convs:
                pipe.get(awtest.rk_key("aw", c, awtest.handle_key_suffix(self.args.backend)))
            vals = pipe.execute()
        finally:
            r.close()
        return {c: v for c, v in zip(convs, vals) if v}

    # ---- the report ----
    def evidence(self, ids: list[str], limit: int = 5) -> list[str]:
        """For a few event ids: their answers and which worker logs mention them."""
        out = []
        logs = [(w, w.log_text()) for w in self.all_workers]
        for eid in ids[:limit]:
            rs = self.reader.by_event.get(eid) or []
            out.append(f"  {eid}: {len(rs)} answer(s): " + "; ".join(
                f"{r.status} run {r.run_id} thread {r.thread_id} at {TOPICS['responses']}[{r.partition}]@{r.offset}"
                for r in rs))
            needle = f'"{eid}"'
            for w, text in logs:
                lines = [ln for ln in text.splitlines() if needle in ln]
                if not lines:
                    continue
                out.append(f"    {w.name}{' (SIGKILLed later)' if w.killed else ''}:")
                for ln in lines[:8]:
                    try:
                        e = json.loads(ln)
                        out.append(f"      {e.get('ts', '')[11:23]} {e.get('level', '')} {e.get('msg', '')[:100]}")
                    except ValueError:
                        out.append(f"      {ln[:110]}")
        return out

    def report(self, res: dict, loader: Loader, reader: Reader, total: int) -> int:
        self.reader = reader
        a = self.args
        props = {
            "every event answered exactly once": res["never_answered"] == 0 and res["answered_more"] == 0,
            "order kept in every conversation": res["order_violations"] == 0,
            "no thread holding a duplicate user message": not res["duplicate_user_messages"]
                and not res["conversations_multi_thread"],
            "no tool output lost": not res["tool_outputs_lost"],
            "one run per event (no side effect twice at the API)": not res["extra_runs"],
            "usage recorded at most once per event, only for answered ones": not res["usage_doubled"]
                and not res["usage_unanswered"],
        }
        sane = {
            "no worker crashed or failed to start": not self.crashes and not self.start_failures,
            "clean shutdown, no sanitizer report": not res["fleet_problems"],
            "harness completed (stack restarts, drain, read to the end)": not self.harness_errors
                and not res["events_not_sent"],
        }
        rows = [
            ("events sent", f"{res['events_sent']} ({a.conversations} conversations x {a.messages}, "
                            f"{res['weather_events']} to the Weather Assistant)"),
            ("answered exactly once", res["answered_once"]),
            ("answered more than once", f"{res['answered_more']} events, {res['extra_answers']} extra answers"
                                        f" ({res['answered_more_differing']} differing: other run/status/text)"),
            ("never answered", res["never_answered"]),
            ("order violations", f"{res['order_violations']} ({len(res['order_violations_topic'])} on the topic, "
                                 f"{len(res['order_violations_thread'])} on threads); "
                                 f"{len(res['late_duplicates'])} repeats after a later answer"),
            ("duplicate user messages", f"{len(res['duplicate_user_messages'])} in {res['threads_checked']} "
                                        f"threads; conversations on >1 thread: {len(res['conversations_multi_thread'])}"),
            ("tool outputs lost", f"{len(res['tool_outputs_lost'])}"
                                  + (f" ({', '.join(f'{k} {v}' for k, v in sorted(res['tool_outputs_lost_kind'].items()))})"
                                     if res['tool_outputs_lost_kind'] else "")
                                  + f"; {res['weather_completed']} completed weather answers, "
                                    f"{res['tool_requests']} tool requests, {res['tool_replies']} replies"),
            ("statuses (first answer)", ", ".join(f"{k} {v}" for k, v in sorted(res["status_first"].items()))),
            ("statuses (all answers)", ", ".join(f"{k} {v}" for k, v in sorted(res["status_all"].items()))),
            ("worker kills (SIGKILL)", f"{self.kills} (worker processes: {len(self.all_workers)}, "
                                       f"crashed by themselves: {len(self.crashes)})"),
            ("picked up after kills", self.recoveries()),
            ("restarts", f"redis-server {len(self.redis_restarts)} ({', '.join(self.redis_restarts) or '-'}), "
                         f"Kafka broker {len(self.kafka_restarts)} ({', '.join(self.kafka_restarts) or '-'})"),
            ("API faults injected", self.fault_counts(res["sim_stats"])),
            ("runs per event (max)", "n/a (chat: nothing is created at the API; a regenerated turn is "
                                     "allowed)" if a.backend == "chat" else
                                     f"{res['max_runs_per_event']} (Responses: responses beyond one per "
                                     f"tool round); events with more than one: {len(res['extra_runs'])}"),
            ("user messages per event (max)", f"{res['max_user_msgs_per_event']}"
                                              + (" (turns per event in the Redis history)" if a.backend == "chat" else "")),
            ("kill to first answer (s)", self.percentiles(res["kill_to_first_answer_s"])),
            ("worker stalls (informational)", f"{len(self.stalls())} (no progress for >=10 s with work pending)"),
            ("usage records", f"{res['usage_records']} (events with more than one: {len(res['usage_doubled'])}, "
                              f"for unanswered events: {len(res['usage_unanswered'])})"),
            ("dead letters", ", ".join(f"{k} {v}" for k, v in sorted(res["dlq"].items(), key=str)) or "0"),
            ("duration", f"chaos {res['timings']['chaos_s']}s, drain {res['timings']['drain_s']}s, "
                         f"total {res['timings']['total_s']}s"),
        ]
        width = max(len(k) for k, _ in rows)
        print()
        print(f"chaos test ({'short' if a.short else 'long'} form, seed {a.seed}, build {a.build.name}/, "
              f"{a.workers} workers, {a.partitions} partitions)")
        print("-" * (width + 60))
        for k, v in rows:
            print(f"{k:<{width}}  {v}")
        print("-" * (width + 60))
        ok = True
        for name, good in list(props.items()) + list(sane.items()):
            print(f"{'PASS' if good else 'FAIL'}  {name}")
            ok = ok and good

        details = [
            ("never answered", res["never_ids"], True),
            ("answered more than once", res["doubled_ids"], True),
            ("order violations on the responses topic", res["order_violations_topic"], False),
            ("order violations on threads", res["order_violations_thread"], False),
            ("repeats answered after a later event", res["late_duplicates"], False),
            ("duplicate user messages", res["duplicate_user_messages"], False),
            ("conversations on more than one thread", res["conversations_multi_thread"], False),
            ("thread map differs from the answers", res["thread_map_mismatch"], False),
            ("messages of another conversation on a thread", res["wrong_conversation_on_thread"], False),
            ("completed answers whose message is not on the thread", res["answered_not_on_thread"], False),
            ("threads named by answers that do not exist", res["missing_threads"], False),
            ("tool outputs lost", res["tool_outputs_lost"], False),
            ("tool outputs lost: evidence", res["tool_outputs_lost_ids"], True),
            ("extra runs", res["extra_runs"], False),
            ("worker stalls (informational; metrics in RUN/<worker>/metrics.log)", self.stalls(), False),
            ("events not delivered to Kafka", res["events_not_sent"], False),
            ("answers to events never sent", res["foreign_ids"], False),
            ("worker crashes", self.crashes, False),
            ("start failures", self.start_failures, False),
            ("shutdown problems", res["fleet_problems"], False),
            ("harness errors", self.harness_errors + [f"reader: {e}" for e in res["reader_errors"]], False),
        ]
        for title, items, with_evidence in details:
            if not items:
                continue
            print(f"\n{title}: {len(items)}")
            if with_evidence:
                print("\n".join(self.evidence(items, 5)))
            else:
                for it in items[:8]:
                    print(f"  {it}")
            if len(items) > (5 if with_evidence else 8):
                print(f"  ... ({len(items) - (5 if with_evidence else 8)} more in chaos-summary.json)")
        summary = dict(res, kills=self.kills, workers_started=len(self.all_workers),
                       redis_restarts=self.redis_restarts, kafka_restarts=self.kafka_restarts,
                       crashes=self.crashes, start_failures=self.start_failures, stalls=self.stalls(),
                       harness_errors=self.harness_errors, timeline=self.timeline,
                       properties=props, checks=sane, passed=ok, args={k: (str(v) if isinstance(v, Path) else v)
                                                                        for k, v in vars(a).items()})
        (self.run / "chaos-summary.json").write_text(json.dumps(summary, indent=2, default=str))
        print(f"\nrun dir: {self.run} (chaos-summary.json, timeline.txt, worker-*/ logs)")
        (self.run / "timeline.txt").write_text("\n".join(self.timeline) + "\n")
        print("chaos: " + ("PASSED" if ok else "FAILED"))
        return 0 if ok else 1

    def stalls(self) -> list[str]:
        return [x for w in self.all_workers for x in w.stalls]

    def recoveries(self) -> str:
        """What the workers' logs say they picked up from killed predecessors: proof that the
        kills landed on work in flight."""
        kinds = {"turns recovered": '"msg":"event was started before; recovering its turn"',
                 "messages found on the thread": '"msg":"event\'s message ',
                 "events found answered": '"msg":"event already answered; skipped"',
                 "handle races lost": '"msg":"another worker created the conversation\'s '}
        n = collections.Counter()
        for w in self.all_workers:
            text = w.log_text()
            for k, needle in kinds.items():
                n[k] += text.count(needle)
        return ", ".join(f"{k} {n[k]}" for k in kinds)

    @staticmethod
    def percentiles(xs: list[float]) -> str:
        """p50 / max of xs, with their count: the next owner's first answer after each kill."""
        if not xs:
            return "no kill left partitions with answers after it"
        ys = sorted(xs)
        return f"p50 {ys[len(ys) // 2]:.1f}, max {ys[-1]:.1f} ({len(ys)} kills)"

    @staticmethod
    def fault_counts(stats: dict) -> str:
        n500 = n429 = n502 = ndrop = 0
        for route, by in (stats.get("requests") or {}).items():
            if "/admin/" in route:
                continue
            n500 += int(by.get("500", 0))
            n429 += int(by.get("429", 0))
            n502 += int(by.get("502", 0))
            ndrop += int(by.get("0", 0))
        # 502s and dropped connections come only from "applied, then failed"; its 500s are
        # counted with the others.
        return f"HTTP 500 x{n500}, 429 x{n429}, 502 x{n502}, dropped after applying x{ndrop} of " \
               f"{stats.get('requests_total', '?')} requests; {stats.get('streams_total', '?')} streams"

    def cleanup(self) -> None:
        for w in self.all_workers:
            if w.alive():
                w.kill()
        if self.run is not None:
            try:
                lib_sh("aw_stop_all", str(self.run), timeout_s=180)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                log(f"stopping the stack: {e}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="chaos.sh", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--short", action="store_true",
                    help="the CI form: 150 conversations, 60 s of chaos (~2 min in all)")
    ap.add_argument("--conversations", type=int, help="conversations (long 2000, short 150)")
    ap.add_argument("--messages", type=int, default=5, help="messages per conversation (5)")
    ap.add_argument("--weather-every", type=int, default=5,
                    help="every Nth conversation asks the Weather Assistant (5: a fifth)")
    ap.add_argument("--stream-every", type=int, default=10,
                    help="about one event in N asks for streamed deltas (10; 0: none)")
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=12)
    ap.add_argument("--duration", type=float, help="seconds of chaos (long 300, short 60)")
    ap.add_argument("--load-fraction", type=float, default=0.85,
                    help="the load is produced over this fraction of the chaos window (0.85)")
    ap.add_argument("--kill-interval", type=float, nargs=2, metavar=("MIN", "MAX"),
                    help="seconds between SIGKILLs, drawn uniformly (long 2 6, short 2 4)")
    ap.add_argument("--restart-delay-max", type=float, default=1.5,
                    help="a killed worker is replaced after 0..this many seconds (1.5)")
    ap.add_argument("--no-kills", dest="kills", action="store_false")
    ap.add_argument("--no-redis-restart", dest="redis_restart", action="store_false")
    ap.add_argument("--no-kafka-restart", dest="kafka_restart", action="store_false")
    ap.add_argument("--redis-at", type=float, default=0.35, help="Redis restart, fraction of the window")
    ap.add_argument("--kafka-at", type=float, default=0.6, help="Kafka restart, fraction of the window")
    ap.add_argument("--rate-500", type=float, default=0.05)
    ap.add_argument("--rate-429", type=float, default=0.02)
    ap.add_argument("--rate-drop", type=float, default=0.01, help="streams dropped mid-stream")
    ap.add_argument("--rate-apply-fail", type=float, default=0.03,
                    help="creating requests applied, then answered 500 / 502 / a dropped connection")
    ap.add_argument("--token-delay-ms", type=int, help="simulator pacing per token (long 40, short 40)")
    ap.add_argument("--answer-tokens", type=int, default=20)
    ap.add_argument("--max-retries", type=int, default=5, help="the workers' api.max_retries (5)")
    ap.add_argument("--tool-deadline-ms", type=int, default=120000,
                    help="get_weather's deadline; a timeout counts as a lost output (120000: longer than "
                         "a reply partition stays without a live consumer while workers die every few seconds)")
    ap.add_argument("--weather-services", type=int, default=2)
    ap.add_argument("--drain-timeout", type=float, help="seconds to wait for the last answers (long 300, short 180)")
    ap.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock, printed)")
    ap.add_argument("--build", default=os.environ.get("AW_CHAOS_BUILD_DIR", "build"),
                    help="build dir with assistant-worker, aw-simulator, weather_service (build)")
    ap.add_argument("--log-level", default="info", help="the workers' log level (info)")
    ap.add_argument("--backend", choices=["responses", "assistants", "chat"],
                    default=os.environ.get("AW_TEST_BACKEND", "responses"),
                    help="the workers' api.backend (AW_TEST_BACKEND, else responses)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every chaos action")
    a = ap.parse_args(argv)
    long_, short = {"conversations": 2000, "duration": 300, "kill_interval": [2.0, 6.0], "token_delay_ms": 40,
                    "drain_timeout": 300}, \
                   {"conversations": 150, "duration": 60, "kill_interval": [2.0, 4.0], "token_delay_ms": 40,
                    "drain_timeout": 180}
    for k, v in (short if a.short else long_).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.seed is None:
        a.seed = int(time.time()) % 100000
    b = Path(a.build)
    a.build = b if b.is_absolute() else ROOT / b
    for binary in ("assistant-worker", "aw-simulator", "weather_service"):
        if not (a.build / binary).exists():
            ap.error(f"{a.build / binary} is not built")
    return a


def main(argv: list[str]) -> int:
    a = parse_args(argv)
    log(f"seed {a.seed} (rerun with --seed {a.seed}); build {a.build}; backend {a.backend}")
    chaos = Chaos(a)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 PID` prints every thread's stack
    try:
        return chaos.execute()
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        return 130
    except Exception as e:  # noqa: BLE001 -- reported, then the stack is stopped
        log(f"error: {type(e).__name__}: {e}")
        import traceback
        traceback.print_exc()
        return 2
    finally:
        chaos.cleanup()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

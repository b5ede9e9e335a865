"""Fixtures: one Kafka broker, one redis-server and one simulator per session (started by
deploy/local/lib.sh), and per test: its own topics, consumer group and Redis key prefix, so tests
never see each other's traffic or threads; `worker` starts assistant-worker processes for it.

Binaries come from build-asan/ (AW_BUILD_DIR overrides).  A missing worker or simulator binary
skips the tests that need it locally, and fails them under CI (CI=true) or AW_TEST_STRICT=1.
"""
from __future__ import annotations

import json
import os
import signal
import uuid
from pathlib import Path

import pytest
import redis as redis_lib

import awtest
from awtest import (API_KEY, BACKEND, SIMULATOR_BIN, TOOL_SECRET, WORKER_BIN, Collector, FakeToolService,
                    Producer_, Stack, Worker, WorkerSpec, create_topics, delete_topics, handle_key_suffix,
                    make_kind_request, make_request, pack, safe_name, wait_until)

STRICT = os.environ.get("CI") == "true" or os.environ.get("AW_TEST_STRICT") == "1"


def _on_sigterm(signum, frame):
    # Turn SIGTERM (tests/run.sh's trap, CI's timeout) into KeyboardInterrupt so that
    # session finalizers still stop the broker, Redis and the simulator.
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    signal.signal(signal.SIGTERM, _on_sigterm)
    config.addinivalue_line("markers", "only_backend(name, ...): the test is about these backends' APIs")


def pytest_collection_modifyitems(session, config, items):
    for it in items:
        m = it.get_closest_marker("only_backend")
        if m and BACKEND not in m.args:
            it.add_marker(pytest.mark.skip(reason=f"about the {'/'.join(m.args)} backend (suite runs on {BACKEND})"))
    # The conformance test reads everything the simulator recorded, so it runs last and so
    # covers the traffic of every other test too.
    items.sort(key=lambda it: it.nodeid.split("::")[0].endswith("test_conformance.py"))


def require_binary(path: Path) -> None:
    if not path.exists():
        msg = f"{path} is not built yet"
        if STRICT:
            pytest.fail(msg)
        pytest.skip(msg)


# ---- session: the shared infrastructure --------------------------------------------------------

@pytest.fixture(scope="session")
def stack():
    s = Stack()
    try:
        yield s
    finally:
        s.stop_all()


@pytest.fixture(scope="session")
def kafka(stack) -> str:
    """bootstrap.servers of the session's broker."""
    return stack.start_kafka()


@pytest.fixture(scope="session")
def redis_port(stack) -> int:
    return stack.start_redis()


@pytest.fixture(scope="session")
def redis_auth(stack, redis_port) -> tuple[str, str]:
    """(user, password): every Redis of the session requires AUTH (deploy/local/lib.sh)."""
    return stack.redis_auth()


@pytest.fixture(scope="session")
def redis_client(redis_port, redis_auth):
    c = redis_lib.Redis(host="127.0.0.1", port=redis_port, username=redis_auth[0], password=redis_auth[1],
                        decode_responses=True)
    yield c
    c.close()


@pytest.fixture(scope="session")
def simulator(stack):
    require_binary(SIMULATOR_BIN)
    return stack.start_simulator(SIMULATOR_BIN)


@pytest.fixture(scope="session")
def producer(kafka):
    p = Producer_(kafka)
    yield p
    p.close()


@pytest.fixture
def sim_settings(simulator):
    """The simulator, with its fault/pacing settings restored after the test (they are
    global to the session's simulator; POST /admin/reset would also drop its threads)."""
    saved = simulator.settings()
    yield simulator
    simulator.faults(**saved)


# ---- per test: isolation ---------------------------------------------------------------------

class Ctx:
    """One test's slice of the stack: unique topics, group id and Redis prefix."""

    PARTITIONS = {"requests": 12, "responses": 12, "deltas": 12, "dlq": 4,
                  "tool_requests": 4, "tool_replies": 4, "usage": 4}

    def __init__(self, kafka: str, redis_port: int, producer: Producer_, workdir: Path,
                 redis_auth: tuple[str, str] | None = None):
        self.id = uuid.uuid4().hex[:12]
        self.kafka, self.redis_port, self.producer, self.workdir = kafka, redis_port, producer, workdir
        self.redis_auth = redis_auth  # (user, password) the workers authenticate with
        self.topics = {k: f"t-{self.id}.{k}" for k in self.PARTITIONS}
        create_topics(kafka, {self.topics[k]: n for k, n in self.PARTITIONS.items()})
        self.group_id = f"aw-test-{self.id}"
        self.redis_prefix = f"awt{self.id}"
        self._collectors: dict[str, Collector] = {}
        self._extra_topics: list[str] = []

    def new_topic(self, kind: str, partitions: int) -> str:
        """Replace this test's topic of `kind` (e.g. "tool_replies") by a new one with
        `partitions` partitions; workers started afterwards use it."""
        assert kind not in self._collectors, f"a collector already reads {self.topics[kind]}"
        name = f"t-{self.id}.{kind}-p{partitions}-{len(self._extra_topics)}"
        create_topics(self.kafka, {name: partitions})
        self._extra_topics.append(name)
        self.topics[kind] = name
        return name

    def collector(self, kind: str) -> Collector:
        if kind not in self._collectors:
            self._collectors[kind] = Collector(self.kafka, self.topics[kind])
        return self._collectors[kind]

    @property
    def responses(self) -> Collector:
        return self.collector("responses")

    @property
    def deltas(self) -> Collector:
        return self.collector("deltas")

    @property
    def dlq(self) -> Collector:
        return self.collector("dlq")

    @property
    def usage(self) -> Collector:
        """The usage records (kafka.topics.usage: one per finished turn, schemas/usage.schema.json)."""
        return self.collector("usage")

    def spec(self, api_base_url: str, **overrides) -> WorkerSpec:
        spec = WorkerSpec(brokers=self.kafka, redis_port=self.redis_port, api_base_url=api_base_url,
                          topics=dict(self.topics), group_id=self.group_id,
                          redis_prefix=self.redis_prefix,
                          redis_username=self.redis_auth[0] if self.redis_auth else None,
                          redis_password=self.redis_auth[1] if self.redis_auth else None)
        for k, v in overrides.items():
            setattr(spec, k, v)
        return spec

    def send(self, req: dict | bytes, key: str | bytes | None = None,
             partition: int | None = None) -> tuple[int, int]:
        """Produce a request (a dict is msgpack-encoded) keyed by its conversation id unless a
        key is given; returns (partition, offset)."""
        if isinstance(req, dict):
            key = key if key is not None else req.get("conversation_id")
            value = pack(req)
        else:
            value = req
        return self.producer.send(self.topics["requests"], value, key, partition)

    def ask(self, conversation_id: str, text, **kw) -> dict:
        req = make_request(conversation_id, text, **kw)
        self.send(req)
        return req

    def request(self, conversation_id: str, kind: str, **fields) -> dict:
        """Produce a conversation request of `kind` (awtest.make_kind_request); returns it."""
        req = make_kind_request(conversation_id, kind, **fields)
        self.send(req)
        return req

    def response_for(self, event_id: str, timeout_s: float = 60):
        """The (first) response carrying event_id."""
        return self.responses.wait_for(
            lambda ms: next((m for m in ms if m.get("event_id") == event_id), None),
            timeout_s, f"the response to {event_id}")

    def responses_for(self, event_ids, timeout_s: float = 120) -> dict:
        """{event_id: first response} once every event_id has one."""
        want = set(event_ids)

        def done(ms):
            got = {}
            for m in ms:
                e = m.get("event_id")
                if e in want and e not in got:
                    got[e] = m
            return got if len(got) == len(want) else None

        return self.responses.wait_for(done, timeout_s, f"responses to {len(want)} events")

    def thread_key(self, conversation_id: str, backend: str = BACKEND, tenant: str | None = None) -> str:
        """The Redis key of the conversation's backend handle (thread or conversation) on
        `backend` (the suite's by default), of `tenant`'s conversation when given."""
        return awtest.rk_key(self.redis_prefix, conversation_id, handle_key_suffix(backend), tenant=tenant)

    def close(self):
        for c in self._collectors.values():
            c.close()
        # Drop the test's topics: the broker stays small over the session, and its shutdown
        # (which flushes and closes every partition's log) stays quick.
        delete_topics(self.kafka, sorted(set(self.topics.values()) | set(self._extra_topics)))


@pytest.fixture
def ctx(request, stack, kafka, redis_port, redis_auth, redis_client, producer):
    c = Ctx(kafka, redis_port, producer, stack.run_dir / "tests" / safe_name(request.node.name), redis_auth)
    # The chat backend's histories of this test (its Redis prefix): see awtest.history_turns.
    awtest.HISTORY_READER = lambda conv, tenant=None: [
        json.loads(t) for t in redis_client.lrange(awtest.rk_key(c.redis_prefix, conv, "hist", tenant=tenant), 0, -1)]
    yield c
    awtest.HISTORY_READER = None
    c.close()


@pytest.fixture
def tool_service(ctx):
    """The test as the tool service: reads ctx's tool-requests topic, replies (FakeToolService).
    Created on first use, so a test may first switch topics with ctx.new_topic."""
    made: list[FakeToolService] = []

    def get() -> FakeToolService:
        if not made:
            made.append(FakeToolService(ctx.kafka, ctx.topics["tool_requests"], ctx.producer))
        return made[0]

    yield get
    for s in made:
        s.close()


@pytest.fixture
def worker(request, ctx, simulator):
    """Factory: worker(name="w1", **spec_overrides) starts `assistant-worker run` for this
    test's topics/group/prefix (against the simulator unless api_base_url= names another server) and returns it once it logged "worker ready" and "partitions
    assigned".  At teardown every worker still running gets SIGTERM; each must have exited 0
    without a sanitizer report."""
    require_binary(WORKER_BIN)
    started: list[Worker] = []

    def start(name: str | None = None, wait: bool = True, **overrides) -> Worker:
        name = name or f"worker{len(started) + 1}"
        # api_base_url: another API server than the session's simulator (e.g. OGX).
        base_url = overrides.pop("api_base_url", simulator.base_url)
        w = Worker(ctx.spec(base_url, **overrides), ctx.workdir, name)
        started.append(w)
        w.start()
        if wait:
            w.wait_ready()
        return w

    yield start
    problems = []
    for w in started:
        w.stop()
        try:
            w.assert_clean_exit()
        except AssertionError as e:
            problems.append(str(e))
        # Secrets are never logged, by any worker in any test.
        leaked = [ln for ln in w.lines if API_KEY in ln or "Bearer " in ln or TOOL_SECRET in ln
                  or (ctx.redis_auth and ctx.redis_auth[1] in ln)]
        if leaked:
            problems.append(f"{w.name} logged a secret: {leaked[0][:200]}")
    assert not problems, "\n\n".join(problems)


__all__ = ["Ctx", "wait_until"]

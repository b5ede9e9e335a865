"""Fleet-wide rate limiting (issue 13): three workers share the API's limit through token buckets
in Redis (worker/ratelimit/rate_gate.h), against the simulator enforcing the same limit per API
key and endpoint class like the real API (tests/simulator/sim_ratelimit.h).  A burst well above
the limit is delayed in the workers, not sent into 429s: almost no 429 reaches them, nothing is
lost or answered twice, and the accepted rate settles at the limit.

The limit is scaled so that the test is short: 240 requests a minute (4 a second) per class,
enforced over one second by both (a bucket of 4), and a burst of 60 events on 30 conversations
(on the Assistants backend 30 thread creations and 60 runs in one class; on Responses 30
conversation creations and 60 responses in two classes; on chat 60 completions)."""
import json
import re
import socket
import time
import urllib.request

import pytest

from awtest import make_request, pack

LIMIT_RPM = 240             # the simulator's limit and the fleet's, per key and endpoint class
BURST_MS = 1000             # both enforce it over one second: a bucket of 4 requests
LIMIT_PER_S = LIMIT_RPM / 60
CONVERSATIONS, PER_CONVERSATION = 30, 2
MAX_WAITING = 8             # a worker with more requests than this waiting pauses consumption
# The stated bounds.  429s: the fleet's bucket stays a hair behind the API's (rate_gate.h), so
# none is expected; 3 leaves room for a scheduler hiccup between the two clocks.
MAX_429 = 3
WINDOW_S = 5                # the accepted rate is checked over every window of 5 s ...
RATE_MARGIN = 1.15          # ... at most 15% above the limit, plus one bucket (the burst allowance)
SETTLED_MIN = 0.75          # and the busy seconds average at least 75% of the limit


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metric_sum(port, name):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M))


@pytest.fixture
def limited_simulator(simulator):
    """The session's simulator limited to LIMIT_RPM; unlimited again afterwards."""
    simulator.rate_limit(requests_per_minute=LIMIT_RPM, tokens_per_minute=0, burst_ms=BURST_MS)
    yield simulator
    simulator.rate_limit(requests_per_minute=0, tokens_per_minute=0, burst_ms=1000)


def test_a_burst_on_three_workers_is_delayed_to_the_apis_limit_not_sent_into_429s(ctx, worker,
                                                                                 limited_simulator):
    sim = limited_simulator
    ports = [free_port() for _ in range(3)]
    rate_limit = {"requests_per_minute": LIMIT_RPM, "burst_ms": BURST_MS, "max_waiting": MAX_WAITING}
    for i, port in enumerate(ports):
        worker(f"rl{i + 1}", api={"rate_limit": rate_limit}, extra_env={"AW_HEALTH_PORT": str(port)})
    before = sim.stats()["rate_limit"]["classes"]

    reqs = [make_request(f"conv-rl-{c:02d}", f"question {n} of conversation {c}")
            for n in range(PER_CONVERSATION) for c in range(CONVERSATIONS)]
    start = time.time()
    ctx.producer.send_many(ctx.topics["requests"], [(r["conversation_id"], pack(r)) for r in reqs])
    got = ctx.responses_for([r["event_id"] for r in reqs], timeout_s=120)
    took = time.time() - start

    # Nothing lost, nothing doubled: one completed answer per event.
    assert all(m["status"] == "completed" for m in got.values()), \
        [m.obj.get("error") for m in got.values() if m["status"] != "completed"][:3]
    ctx.responses.quiet_for(1.0)
    answers = {}
    for m in ctx.responses.messages:
        answers[m.get("event_id")] = answers.get(m.get("event_id"), 0) + 1
    assert {e: n for e, n in answers.items() if n != 1} == {}
    assert len(answers) == len(reqs)

    after = sim.stats()["rate_limit"]
    classes = after["classes"]
    throttled = sum(c["throttled"] - before.get(k, {}).get("throttled", 0) for k, c in classes.items())
    figures = {"events": len(reqs), "answered": len(got), "seconds": round(took, 1), "429s": throttled,
               "limit_per_minute": LIMIT_RPM, "classes": {}}

    # The accepted rate, per class, from the simulator's per-second counts since the burst.
    busy_classes = 0
    for name, c in classes.items():
        per_s = {int(s): n for s, n in c["accepted_per_second"].items() if int(s) >= int(start)}
        if not per_s:
            continue
        first, last = min(per_s), max(per_s)
        series = [per_s.get(s, 0) for s in range(first, last + 1)]
        worst = max(sum(series[i:i + WINDOW_S]) for i in range(max(1, len(series) - WINDOW_S + 1)))
        middle = series[1:-1]  # the first second holds the bucket's burst, the last is partial
        settled = sum(middle) / len(middle) if middle else None
        figures["classes"][name] = {
            "accepted": sum(series), "busy_seconds": len(series),
            f"max_in_{WINDOW_S}s": worst,
            "settled_per_minute": None if settled is None else round(settled * 60),
        }
        assert worst <= LIMIT_PER_S * WINDOW_S * RATE_MARGIN + LIMIT_PER_S * BURST_MS / 1000, \
            f"class {name}: {worst} requests accepted in {WINDOW_S} s against a limit of {LIMIT_PER_S}/s"
        if len(middle) >= 4:  # long enough to have been saturated
            busy_classes += 1
            assert settled >= LIMIT_PER_S * SETTLED_MIN, \
                f"class {name}: {settled:.2f} requests/s accepted while busy, the limit is {LIMIT_PER_S}/s"
    assert busy_classes >= 1, f"no class was busy for long: {figures}"

    # The burst was held in the workers: turns waited, consumption paused, 429s stayed rare.
    waits = sum(metric_sum(p, "aw_rate_limit_waits_total") for p in ports)
    holds = sum(metric_sum(p, "aw_rate_limit_holds_total") for p in ports)
    seen_429 = sum(metric_sum(p, "aw_rate_limit_throttled_total") for p in ports)
    figures.update(requests_delayed=int(waits), consumption_holds=int(holds), workers_saw_429=int(seen_429))
    print("rate limit figures:", json.dumps(figures, sort_keys=True))
    assert throttled <= MAX_429, f"the simulator answered {throttled} 429s (at most {MAX_429}): {figures}"
    assert waits >= len(reqs) / 2, f"only {waits} requests waited for the fleet's bucket: {figures}"
    assert holds >= 1, f"no worker paused consumption with more than {MAX_WAITING} waiting: {figures}"

"""The operations endpoint: liveness, readiness and Prometheus metrics of a running worker:
event counters, API latency by route and status, retries, and consumer lag per partition."""
import re
import socket
import urllib.error
import urllib.request

from awtest import BACKEND, make_request, wait_until


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), e.headers.get("Content-Type", "")


def metric(text, name):
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def lags(text):
    """{partition: lag} of the aw_consumer_lag series."""
    return {int(p): float(v) for p, v in re.findall(r'^aw_consumer_lag\{partition="(\d+)"\} (\S+)$', text, re.M)}


# The route that starts a turn (one streamed request per answer without function calls).
TURN_ROUTE = {"assistants": "POST /threads/{id}/runs", "responses": "POST /responses",
              "chat": "POST /chat/completions"}[BACKEND]
RUNS_200 = f'aw_api_request_seconds_count{{route="{TURN_ROUTE}",status="200"}}'


def test_healthz_readyz_and_metrics_count_the_answered_events(ctx, worker):
    port = free_port()
    worker("ops", extra_env={"AW_HEALTH_PORT": str(port)})
    assert get(port, "/healthz")[0] == 200
    wait_until(lambda: get(port, "/readyz")[0] == 200, 10, "readiness")

    reqs = [ctx.ask(f"conv-ops-{i}", "How do I reset my password?") for i in range(3)]
    ctx.responses_for([r["event_id"] for r in reqs])

    def counted():
        st, text, ctype = get(port, "/metrics")
        ok = (st == 200 and ctype.startswith("text/plain")
              and metric(text, 'aw_events_answered_total{status="completed"}') == 3
              and metric(text, "aw_events_consumed_total") == 3
              # done (offset committable) only after the outcome is recorded, just after
              # the answer is counted: the snapshot is rendered once a second
              and metric(text, "aw_events_in_flight") == 0)
        return text if ok else None

    text = wait_until(counted, 10, "the metrics to count 3 answered events")
    assert metric(text, "aw_redis_up") == 1
    assert "# TYPE aw_events_answered_total counter" in text
    assert "sk-" not in text  # no secret ever appears
    # Every turn was one streamed request of its route (POST /threads/{id}/runs or POST
    # /responses), timed under its route template.
    assert (metric(text, RUNS_200) or 0) >= 3, text
    assert "# TYPE aw_api_request_seconds histogram" in text
    assert f'aw_api_retries_total{{route="{TURN_ROUTE}"}}' in text
    routes = set(re.findall(r'route="([^"]*)"', text))
    assert routes and not any(i in r for r in routes for i in ("thread_", "run_", "msg_", "asst_", "conv_", "resp_")), routes
    # Redis and Kafka errors stay exposed.
    assert metric(text, "aw_redis_errors_total") is not None
    assert metric(text, "aw_kafka_errors_total") is not None
    # All answered: no partition lags.
    assert metric(text, "aw_consumer_lag_total") == 0, text
    assert all(v == 0 for v in lags(text).values()), text


def test_consumer_lag_grows_behind_a_busy_partition_and_returns_to_zero(ctx, worker, sim_settings):
    simulator = sim_settings
    port = free_port()
    worker("ops-lag", extra_env={"AW_HEALTH_PORT": str(port)})
    wait_until(lambda: get(port, "/readyz")[0] == 200, 10, "readiness")
    simulator.faults(token_delay_ms=20)  # ~0.4 s per run
    # One conversation on partition 0: its events are answered one after another, so the
    # partition's commit point trails its high watermark until the last one is done.
    n = 8
    reqs = [make_request("conv-ops-lag", f"question {i}") for i in range(n)]
    for r in reqs:
        ctx.send(r, partition=0)

    def lagging():
        text = get(port, "/metrics")[1]
        lag = lags(text).get(0, 0)
        return text if lag >= 1 and metric(text, "aw_consumer_lag_total") >= lag else None

    wait_until(lagging, 30, "partition 0 to show a lag")
    ctx.responses_for([r["event_id"] for r in reqs])

    def caught_up():
        text = get(port, "/metrics")[1]
        ok = (metric(text, 'aw_events_answered_total{status="completed"}') == n
              and lags(text).get(0) == 0 and metric(text, "aw_consumer_lag_total") == 0
              # one series per assigned partition: all 12, the empty ones included
              and set(lags(text)) == set(range(12)))
        return text if ok else None

    text = wait_until(caught_up, 10, "the lag to return to 0 on all 12 partitions")
    assert (metric(text, RUNS_200) or 0) >= n, text

    # A second worker takes some partitions over: the first one's series of the partitions
    # it gave up disappear, and the two cover the topic between them.
    port2 = free_port()
    worker("ops-lag-2", extra_env={"AW_HEALTH_PORT": str(port2)})

    def split():
        a, b = set(lags(get(port, "/metrics")[1])), set(lags(get(port2, "/metrics")[1]))
        return (a, b) if a and b and not a & b and a | b == set(range(12)) else None

    wait_until(split, 30, "the two workers' lag series to split the partitions")


def test_metrics_count_conversation_requests_by_kind_and_outcome(ctx, worker):
    port = free_port()
    worker("ops-kinds", extra_env={"AW_HEALTH_PORT": str(port)})
    wait_until(lambda: get(port, "/readyz")[0] == 200, 10, "readiness")
    ok = [ctx.request("conv-ops-kinds-1", "history"), ctx.request("conv-ops-kinds-2", "delete")]
    bad_cursor = ctx.request("conv-ops-kinds-3", "history", after="msg_nowhere")  # no conversation: an empty page
    # Decoded, then refused by the worker (14 metadata pairs at most): counted under its kind.
    rejected = ctx.request("conv-ops-kinds-4", "history", metadata={f"k{i}": "v" for i in range(15)})
    ctx.responses_for([r["event_id"] for r in ok + [bad_cursor, rejected]])

    last = {}

    def counted():
        text = get(port, "/metrics")[1]
        series = last["series"] = {(k, o): metric(text, f'aw_conversation_requests_total{{kind="{k}",outcome="{o}"}}')
                  for k in ("history", "append", "reset", "delete", "cancel")
                  for o in ("completed", "failed", "rejected")}
        return series if (series[("history", "rejected")] == 1 and series[("delete", "completed")] == 1
                          and series[("history", "completed")] + series[("history", "failed")] == 2) else None

    try:
        series = wait_until(counted, 10, "the metrics to count the conversation requests")
    except AssertionError as e:
        raise AssertionError(f"{e}: {last.get('series')}") from None
    assert series[("append", "completed")] == 0 and series[("reset", "failed")] == 0, series
    # A message is counted by aw_events_answered_total only.
    assert 'aw_conversation_requests_total{kind="message"' not in get(port, "/metrics")[1]

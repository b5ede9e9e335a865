"""The operations endpoint: liveness, readiness and Prometheus metrics of a running worker."""
import re
import socket
import urllib.error
import urllib.request

from awtest import wait_until


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

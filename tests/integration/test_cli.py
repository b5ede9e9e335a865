"""The client commands: `send` prints the deltas and then the matching response and exits 0
when the run completed; `tail` prints a topic's messages as JSON lines."""
import json
import subprocess

from awtest import WORKER_BIN, assert_valid


def cli(w, *args, timeout_s=90):
    """Run `assistant-worker ARGS...` with the test worker's configuration (file and env)."""
    return subprocess.run([str(WORKER_BIN), *args, "--config", str(w.config_path)],
                          env=w._env(), capture_output=True, text=True, timeout=timeout_s)


def test_send_prints_deltas_then_the_response_and_tail_prints_json_lines(ctx, worker, sim_settings):
    w = worker()
    sim_settings.faults(token_delay_ms=10)
    p = cli(w, "send", "--conversation", "conv-cli", "--stream", "--event-id", "evt-cli-1",
            "How do I reset my password?")
    assert p.returncode == 0, p.stderr
    lines = [json.loads(ln) for ln in p.stdout.splitlines()]
    deltas, resp = lines[:-1], lines[-1]
    assert resp["event_id"] == "evt-cli-1" and resp["status"] == "completed"
    assert_valid("response", resp)
    assert deltas and [d["seq"] for d in deltas] == list(range(len(deltas)))
    text = "".join(p["text"]["value"] for m in resp["messages"] for p in m["content"])
    assert "".join(d["text"] for d in deltas) == text

    t = cli(w, "tail", "--from-beginning", "--max", "1", "--timeout-ms", "10000", ctx.topics["responses"])
    assert t.returncode == 0, t.stderr
    (line,) = [json.loads(ln) for ln in t.stdout.splitlines()]
    assert line["topic"] == ctx.topics["responses"] and line["key"] == "conv-cli"
    assert line["value"] == resp

    bad = cli(w, "send", "TEXT-WITHOUT-CONVERSATION")
    assert bad.returncode == 2 and "conversation" in bad.stderr

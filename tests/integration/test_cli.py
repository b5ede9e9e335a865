"""The client commands: `send` prints the deltas and then the matching response and exits 0
when the run completed; the conversation requests (`history`, `append`, `reset`, `delete`,
`cancel`) print their answers the same way (`history`: a line per message, then the page);
`tail` prints a topic's messages as JSON lines."""
import json
import subprocess

from awtest import WORKER_BIN, assert_valid
from conftest import require_binary


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


def lines_of(p) -> list:
    return [json.loads(ln) for ln in p.stdout.splitlines()]


def test_conversation_request_commands_print_their_answers(ctx, worker, simulator):
    w = worker()
    conv = "conv-cli-kinds"
    q = "How do I reset my password?"
    sent = cli(w, "send", "--conversation", conv, q)
    assert sent.returncode == 0, sent.stderr
    (answer,) = lines_of(sent)

    # history: one line per message (with "text"), then the page; --json: the response.
    h = cli(w, "history", "--conversation", conv, "--order", "asc")
    assert h.returncode == 0, h.stderr
    *msgs, page = lines_of(h)
    assert [(m["role"], m["text"]) for m in msgs] == [
        ("user", q), ("assistant", "".join(p["text"]["value"] for m in answer["messages"] for p in m["content"]))]
    assert page == {"page": {"has_more": False, "first_id": msgs[0]["id"], "last_id": msgs[-1]["id"]}}
    hj = cli(w, "history", "--conversation", conv, "--limit", "1", "--json", "--event-id", "evt-cli-hist")
    assert hj.returncode == 0, hj.stderr
    (resp,) = lines_of(hj)
    assert_valid("response", resp)
    assert resp["event_id"] == "evt-cli-hist" and resp["kind"] == "history"
    assert [m["id"] for m in resp["messages"]] == [msgs[-1]["id"]] and resp["page"]["has_more"] is True
    # A cursor the conversation does not hold: the response is printed whole, exit status 1.
    bad = cli(w, "history", "--conversation", conv, "--after", "msg_unknown")
    assert bad.returncode == 1, bad.stderr
    (resp,) = lines_of(bad)
    assert resp["status"] == "failed" and resp["error"]["code"] == "message_not_found"
    assert "message_not_found" in bad.stderr

    # append: one message per TEXT, --role applies to the TEXTs after it.
    a = cli(w, "append", "--conversation", conv, "Context: premium plan.", "--role", "assistant", "Noted.")
    assert a.returncode == 0, a.stderr
    (resp,) = lines_of(a)
    assert resp["kind"] == "append" and resp["status"] == "completed"
    assert [(m["role"], m["content"][0]["text"]["value"]) for m in resp["messages"]] == [
        ("user", "Context: premium plan."), ("assistant", "Noted.")]

    # cancel with nothing active: completed, cancelled_event_id null.
    c = cli(w, "cancel", "--conversation", conv)
    assert c.returncode == 0, c.stderr
    (resp,) = lines_of(c)
    assert resp["kind"] == "cancel" and resp["cancelled_event_id"] is None

    # reset answers the old handle; delete answers the deleted one; history is then empty.
    old = (answer.get("backend") or {}).get("conversation")
    r = cli(w, "reset", "--conversation", conv)
    assert r.returncode == 0, r.stderr
    (resp,) = lines_of(r)
    assert resp["kind"] == "reset" and resp["backend"]["conversation"] == old
    d = cli(w, "delete", "--conversation", conv)
    assert d.returncode == 0, d.stderr
    (resp,) = lines_of(d)
    assert resp["kind"] == "delete" and resp["status"] == "completed"
    empty = cli(w, "history", "--conversation", conv)
    assert empty.returncode == 0, empty.stderr
    assert lines_of(empty) == [{"page": {"has_more": False, "first_id": None, "last_id": None}}]


def plain(*args):
    """`assistant-worker ARGS...` without configuration (usage errors come before it is read)."""
    require_binary(WORKER_BIN)
    return subprocess.run([str(WORKER_BIN), *args], capture_output=True, text=True, timeout=30)


def test_conversation_request_commands_refuse_bad_usage_and_describe_themselves():
    for cmd in ("history", "append", "reset", "delete", "cancel"):
        h = plain(cmd, "--help")
        assert h.returncode == 0 and h.stdout.startswith(f"usage: assistant-worker {cmd} --conversation ID")
        assert "Exit status" in h.stdout
        missing = plain(cmd, *(["TEXT"] if cmd == "append" else []))
        assert missing.returncode == 2 and "--conversation" in missing.stderr, (cmd, missing.stderr)
    for args, why in ((["history", "--after", "a", "--before", "b"], "--after"),
                      (["history", "--limit", "0"], "--limit"),
                      (["history", "--order", "sideways"], "--order"),
                      (["append"], "TEXT"),
                      (["append", "--role", "system", "x"], "--role"),
                      (["reset", "--limit", "3"], "unknown option"),
                      (["cancel", "extra"], "unexpected argument")):
        p = plain(*args, "--conversation", "c1")
        assert p.returncode == 2 and why in p.stderr, (args, p.stderr)
        assert p.stdout == ""

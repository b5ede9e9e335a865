"""The simulator's Assistants threads and messages, as the conversation requests use them
(history, append, delete on the Assistants backend), driven over HTTP with no worker: messages of
both roles are created with their metadata, the messages list pages with limit, order, after and
before and says has_more/first_id/last_id, a cursor that names no message of the thread is refused,
a deleted thread is gone with its messages, an "apply then fail" fault on message creation leaves
the message in place, and everything recorded conforms to the spec.  Needs only the session's
simulator (no Kafka, no Redis)."""
from __future__ import annotations

import json

import pytest

from awtest import SHARED_DIR, wait_until
from openapi_check import SpecChecker

SPEC = SHARED_DIR / "openai-openapi" / "openapi.validatable.yaml"
MSG_ROUTE = "POST /v1/threads/{thread_id}/messages"


def new_thread(simulator) -> str:
    return simulator.api("POST", "/threads", {"metadata": {"conversation_id": "sim-asst"}})["id"]


def add(simulator, thread: str, role: str, text: str, **metadata) -> dict:
    return simulator.api("POST", f"/threads/{thread}/messages",
                         {"role": role, "content": [{"type": "text", "text": text}], "metadata": metadata})


def page(simulator, thread: str, query: str) -> dict:
    return simulator.api("GET", f"/threads/{thread}/messages?{query}")


def texts(lst: dict) -> list[str]:
    return [m["content"][0]["text"]["value"] for m in lst["data"]]


def test_messages_of_both_roles_keep_their_role_and_metadata(simulator):
    t = new_thread(simulator)
    u = add(simulator, t, "user", "from the CRM", aw_event_id="e1", aw_index="0")
    a = simulator.api("POST", f"/threads/{t}/messages",
                      {"role": "assistant", "content": "written by a human agent",
                       "metadata": {"aw_event_id": "e1", "aw_index": "1"}})
    assert (u["role"], a["role"]) == ("user", "assistant")
    assert a["object"] == "thread.message" and a["thread_id"] == t and a["run_id"] is None
    assert a["content"] == [{"type": "text", "text": {"value": "written by a human agent", "annotations": []}}]
    assert a["metadata"] == {"aw_event_id": "e1", "aw_index": "1"}
    assert isinstance(a["created_at"], int) and a["created_at"] > 0
    got = simulator.api("GET", f"/threads/{t}/messages/{a['id']}")
    assert got["role"] == "assistant" and got["metadata"]["aw_index"] == "1"
    status, err = simulator._call("POST", f"/v1/threads/{t}/messages", {"role": "system", "content": "x"})
    assert status == 400 and err["error"]["param"] == "role"


def test_messages_list_pages_with_limit_order_after_and_before(simulator):
    t = new_thread(simulator)
    ids = [add(simulator, t, "user" if i % 2 == 0 else "assistant", f"m{i}")["id"] for i in range(5)]

    newest = page(simulator, t, "limit=2")  # order desc by default
    assert texts(newest) == ["m4", "m3"]
    assert newest["has_more"] is True
    assert (newest["first_id"], newest["last_id"]) == (ids[4], ids[3])

    older = page(simulator, t, f"limit=2&order=desc&after={newest['last_id']}")
    assert texts(older) == ["m2", "m1"] and older["has_more"] is True
    last = page(simulator, t, f"limit=2&order=desc&after={older['last_id']}")
    assert texts(last) == ["m0"] and last["has_more"] is False
    assert last["first_id"] == last["last_id"] == ids[0]

    # before: the page just before the cursor, still in the asked order
    back = page(simulator, t, f"limit=2&order=desc&before={ids[1]}")
    assert texts(back) == ["m3", "m2"] and back["has_more"] is True
    back_all = page(simulator, t, f"limit=20&order=desc&before={ids[3]}")
    assert texts(back_all) == ["m4"] and back_all["has_more"] is False

    asc = page(simulator, t, f"limit=3&order=asc&after={ids[0]}")
    assert texts(asc) == ["m1", "m2", "m3"] and asc["has_more"] is True

    empty = page(simulator, t, f"order=desc&after={ids[0]}")
    assert empty["data"] == [] and empty["has_more"] is False


def test_unknown_cursor_is_refused_and_the_message_is_not_found(simulator):
    t, other = new_thread(simulator), new_thread(simulator)
    add(simulator, t, "user", "hello")
    foreign = add(simulator, other, "user", "elsewhere")["id"]
    for cursor in ("msg_doesnotexist", foreign):
        for key in ("after", "before"):
            status, err = simulator._call("GET", f"/v1/threads/{t}/messages?{key}={cursor}")
            assert status == 400, err
            assert err["error"]["param"] == key and err["error"]["code"] == "invalid_value"
        # what the backend asks next to tell an unknown cursor from another 400
        status, err = simulator._call("GET", f"/v1/threads/{t}/messages/{cursor}")
        assert status == 404 and err["error"]["type"] == "invalid_request_error"


def test_deleted_thread_is_gone_with_its_messages(simulator):
    t = new_thread(simulator)
    m = add(simulator, t, "user", "forget me")["id"]
    assert simulator.api("DELETE", f"/threads/{t}") == {"id": t, "object": "thread.deleted", "deleted": True}
    for path in (f"/v1/threads/{t}", f"/v1/threads/{t}/messages", f"/v1/threads/{t}/messages/{m}"):
        status, err = simulator._call("GET", path)
        assert status == 404 and t in err["error"]["message"], (path, status, err)
    status, _ = simulator._call("DELETE", f"/v1/threads/{t}")
    assert status == 404  # what the backend counts as deleted


def test_apply_then_fail_on_message_create_leaves_the_message_in_place(sim_settings):
    simulator = sim_settings
    t = new_thread(simulator)
    simulator.faults(apply_then_fail={MSG_ROUTE: {"n": 1, "status": 500}})
    body = {"role": "assistant", "content": "applied, then 500", "metadata": {"aw_event_id": "e9", "aw_index": "0"}}
    status, err = simulator._call("POST", f"/v1/threads/{t}/messages", body)
    assert status == 500 and "after applying" in err["error"]["message"]
    listed = page(simulator, t, "limit=100&order=desc")
    assert [m["metadata"] for m in listed["data"]] == [{"aw_event_id": "e9", "aw_index": "0"}]
    # the fault is spent: the next one is answered
    assert add(simulator, t, "user", "next")["role"] == "user"
    assert simulator.settings()["apply_then_fail"][MSG_ROUTE]["n"] == 0


def test_recorded_threads_and_messages_traffic_conforms_to_the_spec(simulator):
    if not SPEC.exists():
        pytest.fail(f"{SPEC} not found (set AW_SHARED_DIR to the shared dir)")
    t = new_thread(simulator)
    m = add(simulator, t, "assistant", "conformance", aw_event_id="e2", aw_index="0")
    page(simulator, t, f"limit=1&order=asc&before={m['id']}")
    page(simulator, t, "limit=5&order=desc")
    simulator.api("GET", f"/threads/{t}/messages/{m['id']}")
    simulator.api("DELETE", f"/threads/{t}")

    def recorded():
        with open(simulator.record_path, encoding="utf-8") as f:
            recs = [json.loads(line) for line in f if line.strip()]
        return [r for r in recs if r["path"].startswith("/v1/threads") and "/runs" not in r["path"]]

    recs = wait_until(lambda: (lambda rs: rs if any(r["method"] == "DELETE" and r["path"] == f"/v1/threads/{t}"
                                                    for r in rs) else None)(recorded()),
                      10, "the thread deletion in the record")
    checker = SpecChecker(SPEC)
    problems = [p for r in recs for p in checker.check_record(r)]
    assert any(r["method"] == "POST" and r["path"].endswith("/messages") for r in recs)
    assert not problems, f"{len(problems)} mismatch(es); first ones:\n" + "\n".join(problems[:25])

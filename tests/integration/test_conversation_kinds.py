"""Conversation requests (issue 13; README, "Conversation requests"), end to end on every backend
(AW_TEST_BACKEND=responses|assistants|chat): history, append, reset, delete and cancel, sent on the
requests topic with the conversation's key and answered on the responses topic with their event_id
and kind; each exactly once, and bad input of every kind rejected and dead-lettered like a bad
message.

The file runs three times in the suite, so most tests share one worker and one set of topics (the
module's `kx` context; every test uses its own conversations and event ids); only the tests that need
another configuration (worker.reset_deletes_old) start their own.  What the backend holds is read
at the simulator (its API and /admin endpoints) or, on chat, in the fleet's Redis history.
"""
from __future__ import annotations

import base64
import json
import time
import uuid

import pytest

import awtest
from awtest import (BACKEND, SUPPORT_BOT, WEATHER_ASSISTANT, WORKER_BIN, FakeToolService, Worker, answer_text,
                    assert_valid, conv_handle, error_code, make_kind_request, make_request, pack, rk_tag,
                    wait_until)
from conftest import Ctx, require_binary

WEATHER = WEATHER_ASSISTANT["name"]
# The routes that ask the model for something (a turn's calls), per the simulator's stats.
MODEL_ROUTES = ("POST /v1/responses", "POST /v1/threads/runs", "POST /v1/threads/{thread_id}/runs",
                "POST /v1/chat/completions")


# ---- the module's worker ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def kx_shared(stack, kafka, redis_port, redis_auth, producer, simulator):
    """One context (topics, group, Redis prefix) and one worker (the support bot and the weather
    assistant, default configuration) shared by the module's tests."""
    require_binary(WORKER_BIN)
    c = Ctx(kafka, redis_port, producer, stack.run_dir / "tests" / "conversation_kinds", redis_auth)
    w = Worker(c.spec(simulator.base_url, assistants=[dict(SUPPORT_BOT), dict(WEATHER_ASSISTANT)]),
               c.workdir, "kinds")
    c.workers = [w]
    try:
        w.start()
        w.wait_ready()
        c.worker = w
        yield c
    finally:
        for x in c.workers:
            x.stop()
        c.close()
    for x in c.workers:
        x.assert_clean_exit()
        assert not [ln for ln in x.lines if awtest.API_KEY in ln or "Bearer " in ln], f"{x.name} logged a secret"


@pytest.fixture
def kx(kx_shared, redis_client):
    """The shared context, with the chat backend's history reader pointed at its Redis prefix.  A
    test during which the shared worker exits errors (with the worker's report); the next test
    gets a new worker, so that one crash does not fail the rest of the module."""
    c = kx_shared
    if c.worker.proc.poll() is not None:
        w = Worker(c.worker.spec, c.workdir, f"kinds{len(c.workers) + 1}")
        c.workers.append(w)
        w.start()
        w.wait_ready()
        c.worker = w
    awtest.HISTORY_READER = lambda conv, tenant=None: [
        json.loads(t) for t in redis_client.lrange(awtest.rk_key(c.redis_prefix, conv, "hist", tenant=tenant), 0, -1)]
    yield c
    awtest.HISTORY_READER = None
    assert c.worker.proc.poll() is None, (f"{c.worker.name} exited during the test (log {c.worker.log_path}):\n"
                                          + (c.worker.sanitizer_report() or c.worker.tail()))


# ---- helpers ---------------------------------------------------------------------------------

def new_conv(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def turn(c, conv: str, text: str, **kw) -> dict:
    """Ask `text` in conv and return the completed response (as a dict)."""
    req = c.ask(conv, text, **kw)
    resp = c.response_for(req["event_id"])
    assert resp["status"] == "completed", resp.obj
    return resp.obj


def kind(c, conv: str, k: str, timeout_s: float = 60, **fields) -> dict:
    """Send a request of kind k and return its response (as a dict), checked against the schema
    and the contract's echo of the event and its kind."""
    req = c.request(conv, k, **fields)
    resp = c.response_for(req["event_id"], timeout_s)
    assert_valid("response", resp)
    assert resp.key_str == conv and resp["conversation_id"] == conv
    assert resp["kind"] == k, resp.obj
    return resp.obj


def texts(m: dict) -> str:
    return "".join(p["text"]["value"] for p in m.get("content") or [] if p.get("type") == "text")


def model_calls(sim) -> int:
    """The requests that ask the model for something the simulator received so far."""
    reqs = sim.stats().get("requests") or {}
    return sum(int(n) for route in MODEL_ROUTES for n in (reqs.get(route) or {}).values())


def backend_gone(sim, handle: str) -> bool:
    """Is the backend conversation (conv_... / thread_...) deleted at the simulator?"""
    path = f"/v1/conversations/{handle}" if handle.startswith("conv_") else f"/v1/threads/{handle}"
    status, _ = sim._call("GET", path)
    assert status in (200, 404), f"GET {path} -> {status}"
    return status == 404


def chat_text(m: dict) -> str:
    c = m.get("content")
    if isinstance(c, str):
        return c
    return "".join(p.get("text") or "" for p in c or [] if isinstance(p, dict))


def last_chat_index(sim) -> int:
    reqs = sim.chat_requests()
    return reqs[-1]["index"] if reqs else -1


def chat_request_asking(sim, after: int, question: str) -> dict:
    """The (last) chat request body, after index `after`, whose newest user message is question."""
    found = [r["body"] for r in sim.chat_requests(after) if isinstance(r.get("body"), dict)
             and [chat_text(m) for m in r["body"]["messages"] if m["role"] == "user"][-1:] == [question]]
    assert found, f"no chat request asked {question!r}"
    return found[-1]


def conversation_texts(sim, handle: str) -> list[tuple[str, str]]:
    """(role, text) of the user and assistant messages of a backend conversation, oldest first:
    a Responses conversation's message items, an Assistants thread's messages, or on chat the
    fleet's history."""
    if awtest.is_history(handle):
        return [(m["role"], chat_text(m)) for t in awtest.history_turns(handle) for m in t["m"]
                if m.get("role") in ("user", "assistant") and not m.get("tool_calls")]
    if awtest.is_conversation(handle):
        return [(i["role"], sim.item_text(i)) for i in sim.conversation_items(handle)
                if i.get("type") == "message" and i.get("role") in ("user", "assistant")]
    return [(m["role"], sim.message_text(m)) for m in sim.thread_messages(handle)]


def conv_keys(redis_client, prefix: str, conv: str) -> list[str]:
    """Every Redis key of the conversation (its hash tag) under the test's prefix."""
    return sorted(redis_client.scan_iter(match=f"{prefix}:{{{rk_tag(conv)}}}*", count=1000))


def history_page(c, conv: str, **fields) -> dict:
    resp = kind(c, conv, "history", **fields)
    assert resp["status"] == "completed", resp
    return resp


# ---- history -----------------------------------------------------------------------------------

def test_history_after_two_turns_lists_the_four_messages_in_both_orders_and_pages_with_cursors(kx):
    conv = new_conv("conv-hist")
    q1, q2 = "How do I reset my password?", "And how do I change my email?"
    a1, a2 = answer_text(turn(kx, conv, q1)), answer_text(turn(kx, conv, q2))

    asc = history_page(kx, conv, order="asc")
    assert [(m["role"], texts(m)) for m in asc["messages"]] == [
        ("user", q1), ("assistant", a1), ("user", q2), ("assistant", a2)], asc["messages"]
    ids = [m["id"] for m in asc["messages"]]
    assert len(set(ids)) == 4 and all(ids), ids
    # created_at where the backend knows it (a Responses conversation's items carry none).
    assert all(isinstance(m.get("created_at", 1), int) and m.get("created_at", 1) > 0 for m in asc["messages"])
    if BACKEND == "assistants":
        assert all("created_at" in m for m in asc["messages"]), asc["messages"]
    assert asc["page"] == {"has_more": False, "first_id": ids[0], "last_id": ids[-1]}, asc["page"]

    desc = history_page(kx, conv)  # the default order: newest first
    assert [m["id"] for m in desc["messages"]] == ids[::-1]
    assert [m["role"] for m in desc["messages"]] == ["assistant", "user", "assistant", "user"]

    # limit 1 and `after` walks them forward, in either order.
    for order, want in (("asc", ids), ("desc", ids[::-1])):
        seen, cursor = [], None
        for _ in range(6):
            fields = {"order": order, "limit": 1, **({"after": cursor} if cursor else {})}
            page = history_page(kx, conv, **fields)
            assert len(page["messages"]) == 1, page
            seen.append(page["messages"][0]["id"])
            assert page["page"]["first_id"] == page["page"]["last_id"] == seen[-1]
            if not page["page"]["has_more"]:
                break
            cursor = page["page"]["last_id"]
        assert seen == want, f"order {order}: walked {seen}, expected {want}"

    # `before` walks them backward from the last one.
    seen, cursor = [], ids[-1]
    for _ in range(4):
        page = history_page(kx, conv, order="asc", limit=1, before=cursor)
        if not page["messages"]:
            break
        seen.append(page["messages"][0]["id"])
        cursor = seen[-1]
    assert seen == ids[-2::-1], f"before walked {seen}, expected {ids[-2::-1]}"


def test_history_with_an_unknown_cursor_fails_message_not_found(kx):
    conv = new_conv("conv-hist-cursor")
    turn(kx, conv, "How do I reset my password?")
    for cursor in ({"after": "msg_not_in_this_conversation"}, {"before": "msg_not_in_this_conversation"}):
        resp = kind(kx, conv, "history", **cursor)
        assert resp["status"] == "failed", resp
        assert error_code(resp) == "message_not_found", resp


def test_history_of_a_conversation_without_messages_is_an_empty_page(kx):
    resp = history_page(kx, new_conv("conv-hist-none"))
    assert resp["messages"] == [] and resp["page"]["has_more"] is False, resp


# ---- append ------------------------------------------------------------------------------------

def test_append_adds_messages_without_a_turn_and_the_next_turn_sees_them(kx, simulator):
    conv = new_conv("conv-append")
    calls = model_calls(simulator)
    added = [{"role": "user", "content": "My order number is 4417."},
             {"role": "assistant", "content": [{"type": "text", "text": "Noted: order 4417, shipped Monday."}]}]
    resp = kind(kx, conv, "append", messages=added)
    assert resp["status"] == "completed", resp
    assert [(m["role"], texts(m)) for m in resp["messages"]] == [
        ("user", "My order number is 4417."), ("assistant", "Noted: order 4417, shipped Monday.")], resp
    assert all(m["id"] for m in resp["messages"])
    assert model_calls(simulator) == calls, "an append asks the model nothing"
    kx.usage.quiet_for(0.2)  # the usage records commit with the responses: any would be visible now
    assert not [m for m in kx.usage.messages if m.get("event_id") == resp["event_id"]], "no usage record"

    # The history lists them, with the ids the append answered.
    page = history_page(kx, conv, order="asc")
    assert [m["id"] for m in page["messages"]] == [m["id"] for m in resp["messages"]]

    before = last_chat_index(simulator) if BACKEND == "chat" else -1
    question = "When was my order shipped?"
    answer = turn(kx, conv, question)
    handle = conv_handle(answer)
    if BACKEND == "chat":
        body = chat_request_asking(simulator, before, question)
        sent = [(m["role"], chat_text(m)) for m in body["messages"] if m["role"] in ("user", "assistant")]
        assert sent[-3:] == [("user", "My order number is 4417."),
                             ("assistant", "Noted: order 4417, shipped Monday."), ("user", question)], sent
    else:
        assert resp["backend"]["conversation"] == handle, "the append created the turn's conversation"
        held = conversation_texts(simulator, handle)
        assert held[:3] == [("user", "My order number is 4417."),
                            ("assistant", "Noted: order 4417, shipped Monday."), ("user", question)], held


def test_a_redelivered_append_appends_once(kx, simulator):
    conv = new_conv("conv-append-twice")
    turn(kx, conv, "How do I reset my password?")
    req = make_kind_request(conv, "append", messages=[{"role": "user", "content": "Context: premium plan."}])
    value = pack(req)
    kx.send(value, key=conv)
    kx.send(value, key=conv)  # a producer's retry: the same event_id and bytes, another record
    resp = kx.response_for(req["event_id"])
    assert resp["status"] == "completed", resp.obj
    # The history request is queued behind both deliveries: once it is answered, both are done.
    page = history_page(kx, conv, order="asc")
    assert [texts(m) for m in page["messages"]].count("Context: premium plan.") == 1, page["messages"]
    assert len([m for m in kx.responses.messages if m.get("event_id") == req["event_id"]]) == 1
    if BACKEND != "chat":
        held = conversation_texts(simulator, conv_handle(resp.obj))
        assert held.count(("user", "Context: premium plan.")) == 1, held


@pytest.mark.only_backend("responses", "assistants")  # chat's append is Redis only: no API call to fail
def test_an_append_applied_then_failed_by_the_api_is_applied_once(kx, sim_settings):
    conv = new_conv("conv-append-fault")
    handle = conv_handle(turn(kx, conv, "How do I reset my password?"))
    route = ("POST /v1/conversations/{conversation_id}/items" if BACKEND == "responses"
             else "POST /v1/threads/{thread_id}/messages")
    sim_settings.faults(apply_then_fail={route: {"n": 1, "status": 500}})
    resp = kind(kx, conv, "append", messages=[{"role": "user", "content": "Context: gold tier."}])
    assert sim_settings.settings()["apply_then_fail"][route]["n"] == 0, "the fault was used"
    assert resp["status"] == "completed", resp
    held = conversation_texts(sim_settings, handle)
    assert held.count(("user", "Context: gold tier.")) == 1, held
    assert [texts(m) for m in resp["messages"]] == ["Context: gold tier."]


# ---- reset -------------------------------------------------------------------------------------

def _reset_then_next_message(c, sim, conv: str) -> tuple[str | None, dict, dict]:
    """A turn, a reset, a turn: (the first turn's handle, the reset's answer, the second turn)."""
    q1, q2 = "How do I reset my password?", "What did I ask before?"
    old = conv_handle(turn(c, conv, q1))
    reset = kind(c, conv, "reset")
    assert reset["status"] == "completed", reset
    before = last_chat_index(sim) if BACKEND == "chat" else -1
    second = turn(c, conv, q2)
    if BACKEND == "chat":
        sent = [chat_text(m) for m in chat_request_asking(sim, before, q2)["messages"] if m["role"] == "user"]
        assert sent == [q2], f"the turn after a reset starts afresh: {sent}"
        assert reset["backend"]["conversation"] is None
    else:
        new = conv_handle(second)
        assert reset["backend"]["conversation"] == old, reset
        assert new and new != old, "the next message starts a new backend conversation"
        assert sim.user_texts(new) == [q2]
    return old, reset, second


def test_reset_starts_a_new_backend_conversation_and_keeps_the_old_one_by_default(kx, simulator):
    old, _, _ = _reset_then_next_message(kx, simulator, new_conv("conv-reset"))
    if BACKEND != "chat":
        assert not backend_gone(simulator, old), "worker.reset_deletes_old is false by default"
        assert simulator.user_texts(old) == ["How do I reset my password?"]


def test_reset_with_reset_deletes_old_deletes_the_old_backend_conversation(ctx, worker, simulator):
    worker(worker={"reset_deletes_old": True})
    old, _, _ = _reset_then_next_message(ctx, simulator, new_conv("conv-reset-del"))
    if BACKEND != "chat":
        assert wait_until(lambda: backend_gone(simulator, old), 10, f"the deletion of {old}")


# ---- delete ------------------------------------------------------------------------------------

def test_delete_removes_the_backend_conversation_and_every_redis_key_and_the_next_message_starts_fresh(
        kx, simulator, redis_client):
    conv = new_conv("conv-delete")
    kind(kx, conv, "append", messages=[{"role": "user", "content": "Remember: blue."}])
    old = conv_handle(turn(kx, conv, "How do I reset my password?"))
    assert conv_keys(redis_client, kx.redis_prefix, conv), "the conversation has keys before"

    resp = kind(kx, conv, "delete")
    assert resp["status"] == "completed", resp
    if BACKEND == "chat":
        assert resp["backend"]["conversation"] is None
    else:
        assert resp["backend"]["conversation"] == old, resp
        assert backend_gone(simulator, old), f"{old} is still at the simulator"
    left: list[str] = []

    def none_left() -> bool:
        left[:] = conv_keys(redis_client, kx.redis_prefix, conv)
        return not left

    try:
        wait_until(none_left, 10, f"no key of {conv} left")
    except AssertionError as e:
        raise AssertionError(f"{e}; left: {left}") from None
    assert history_page(kx, new_conv("conv-delete-other"))["messages"] == []  # a later event is answered
    assert not conv_keys(redis_client, kx.redis_prefix, conv), "nothing was written back after the delete"

    q = "Is this a new conversation?"
    fresh = turn(kx, conv, q)
    if BACKEND != "chat":
        assert conv_handle(fresh) != old
    assert simulator.user_texts(conv_handle(fresh)) == [q], "the next message starts fresh"
    assert [texts(m) for m in history_page(kx, conv, order="asc")["messages"]][:1] == [q]


def test_delete_of_a_conversation_without_a_backend_conversation_completes_with_nil(kx):
    resp = kind(kx, new_conv("conv-delete-none"), "delete")
    assert resp["status"] == "completed" and resp["backend"]["conversation"] is None, resp


# ---- cancel ------------------------------------------------------------------------------------

def test_cancel_answers_a_slow_turn_cancelled_well_before_it_would_finish(kx, sim_settings):
    delay_ms, tokens = 400, 20  # the turn would stream for ~8 s
    sim_settings.faults(token_delay_ms=delay_ms, answer_tokens=tokens)
    conv = new_conv("conv-cancel")
    slow = kx.ask(conv, "How do I reset my password?", stream=True)
    kx.deltas.wait_for(lambda ms: any(m.get("event_id") == slow["event_id"] for m in ms), 30,
                       "the slow turn's first delta")
    t0 = time.monotonic()
    cancel = kind(kx, conv, "cancel", timeout_s=30)
    assert cancel["status"] == "completed", cancel
    assert cancel["cancelled_event_id"] == slow["event_id"], cancel
    resp = kx.response_for(slow["event_id"], 30)
    took = time.monotonic() - t0
    assert_valid("response", resp)
    assert resp["status"] == "cancelled", resp.obj
    assert error_code(resp) == "cancelled_by_request", resp.obj
    assert cancel["event_id"] in resp["error"]["message"], resp.obj
    assert took < delay_ms * tokens / 1000 / 2, f"the cancel took {took:.1f} s"
    # The next message of the conversation is served (the conversation is not stuck).
    sim_settings.faults(token_delay_ms=0)
    turn(kx, conv, "Are you still there?")


def test_cancel_with_nothing_active_or_another_target_answers_nil(kx):
    conv = new_conv("conv-cancel-idle")
    resp = kind(kx, conv, "cancel")
    assert resp["status"] == "completed" and resp["cancelled_event_id"] is None, resp
    turn(kx, conv, "How do I reset my password?")
    resp = kind(kx, conv, "cancel", target_event_id="evt-not-active")
    assert resp["status"] == "completed" and resp["cancelled_event_id"] is None, resp


def test_cancel_of_a_turn_waiting_for_tool_replies_cancels_it(kx):
    svc = FakeToolService(kx.kafka, kx.topics["tool_requests"], kx.producer)  # never replies
    try:
        conv = new_conv("conv-cancel-tools")
        req = kx.ask(conv, "What's the weather in Paris?", assistant=WEATHER)
        svc.wait_requests(conv, 1, 30)
        cancel = kind(kx, conv, "cancel", target_event_id=req["event_id"])
        assert cancel["status"] == "completed" and cancel["cancelled_event_id"] == req["event_id"], cancel
        resp = kx.response_for(req["event_id"], 20)  # well before the tool deadline (30 s)
        assert resp["status"] == "cancelled" and error_code(resp) == "cancelled_by_request", resp.obj
    finally:
        svc.close()


# ---- bad input -----------------------------------------------------------------------------------

BAD = {
    # id: (fields replacing the kind's, expected code, a word the error message names)
    "unknown_kind": ({"kind": "summarize"}, "invalid_field", "kind"),
    "history_limit_0": ({"kind": "history", "limit": 0}, "invalid_field", "limit"),
    "history_after_and_before": ({"kind": "history", "after": "m1", "before": "m2"}, "invalid_field", "after"),
    "history_with_content": ({"kind": "history", "content": "hello"}, "invalid_field", "content"),
    "append_no_messages": ({"kind": "append", "messages": []}, "invalid_field", "messages"),
    "append_bad_role": ({"kind": "append", "messages": [{"role": "system", "content": "x"}]}, "invalid_field",
                        "role"),
    "message_with_limit": ({"limit": 5}, "invalid_field", "limit"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_conversation_request_is_rejected_dead_lettered_and_others_go_on(kx, case):
    fields, code, named = BAD[case]
    conv = new_conv(f"conv-bad-{case}")
    if fields.get("kind"):
        req = make_kind_request(conv, fields["kind"], **{k: v for k, v in fields.items() if k != "kind"})
    else:
        req = make_request(conv, "hello", **fields)
    value = pack(req)
    partition, offset = kx.send(value, key=conv)

    dl = kx.dlq.wait_for(lambda ms: next((m for m in ms if m.get("source", {}).get("offset") == offset
                                          and m["source"]["partition"] == partition), None),
                         30, f"the dead letter of {case}")
    assert_valid("dlq", dl)
    assert base64.b64decode(dl.json()["original"]) == value, "the original bytes, exactly"
    assert dl["error"]["code"] == code, dl.obj["error"]
    resp = kx.response_for(req["event_id"], 30)
    assert_valid("response", resp)
    assert resp["status"] == "rejected" and error_code(resp) == code, resp.obj
    assert named in resp["error"]["message"], resp["error"]
    # The next event, of another conversation, is answered.
    turn(kx, new_conv("conv-bad-next"), "Are you still there?")

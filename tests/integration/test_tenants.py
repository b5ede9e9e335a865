"""Tenants (worker.tenant_source), end to end on the session's broker, Redis and simulator.

With `header:x-tenant` every request belongs to the tenant its Kafka header names, and everything
the fleet keeps for a conversation is kept per tenant (worker/event/rkeys.h: the hash tag
`{t:<tenant>:c:<conversation>}`): tenant A's `conv-1` and tenant B's `conv-1` are two backend
conversations (or two histories on chat), two outcome records, two tool states. A request without a
usable tenant is rejected (`missing_tenant` / `invalid_tenant`) and dead-lettered with its bytes,
and the conversation's next request is answered. Tool replies, consumed by any worker, find their
tenant's turn again through the correlation record.
"""
from __future__ import annotations

import base64
import json
import uuid

import awtest
from awtest import (SUPPORT_BOT, WEATHER_ASSISTANT, answer_text, assert_valid, conv_handle, error_code,
                    is_history, make_request, pack)

TENANT_ENV = {"AW_TENANT_SOURCE": "header:x-tenant"}
A, B = "acme", "globex:eu"  # B holds a ':' (percent-encoded in keys)


def send(ctx, req: dict, tenant: str | bytes | None) -> tuple[int, int]:
    headers = None if tenant is None else [("x-tenant", tenant.encode() if isinstance(tenant, str) else tenant)]
    return ctx.producer.send(ctx.topics["requests"], pack(req), req["conversation_id"], headers=headers)


def response(ctx, event_id: str, tenant: str | None, timeout_s: float = 60):
    """The response to event_id of `tenant` (two tenants may use the same event id)."""
    return ctx.responses.wait_for(
        lambda ms: next((m for m in ms if m.get("event_id") == event_id and m.get("tenant") == tenant), None),
        timeout_s, f"the response to {event_id} of tenant {tenant}")


def user_texts(simulator, resp, tenant: str) -> list[str]:
    """The user messages of resp's conversation as the API holds them (on chat: the history the
    fleet keeps for the tenant's conversation and sends with every request)."""
    h = conv_handle(resp)
    if is_history(h):
        return [simulator.item_text(m) for t in awtest.HISTORY_READER(resp["conversation_id"], tenant)
                for m in t["m"] if m.get("role") == "user"]
    return simulator.user_texts(h)


def test_two_tenants_with_the_same_conversation_id_get_separate_conversations(
        ctx, worker, simulator, redis_client):
    worker(extra_env=TENANT_ENV)
    conv = f"v}}:ev:{uuid.uuid4().hex[:8]} x"  # braces, colons, a space: encoded in every key
    texts = {A: ["My order 1111 is late.", "Where is order 1111 now?"],
             B: ["My invoice 2222 is wrong.", "Please fix invoice 2222."]}
    first = {}
    for t in (A, B):
        req = make_request(conv, texts[t][0])
        send(ctx, req, t)
        first[t] = response(ctx, req["event_id"], t)
    second = {}
    chat_before = simulator.chat_requests()[-1]["index"] if awtest.BACKEND == "chat" and simulator.chat_requests() else -1
    for t in (A, B):
        req = make_request(conv, texts[t][1])
        send(ctx, req, t)
        second[t] = response(ctx, req["event_id"], t)

    for t in (A, B):
        for r in (first[t], second[t]):
            assert_valid("response", r)
            assert r["status"] == "completed", r.obj
            assert r["tenant"] == t and r["conversation_id"] == conv
        assert conv_handle(second[t]) == conv_handle(first[t]), "a tenant's follow-up continues its conversation"
        # The API holds each tenant's messages in its own conversation, only those.
        assert user_texts(simulator, second[t], t) == texts[t], t

    if awtest.BACKEND == "chat":
        # The requests the model server got: each follow-up carried its own tenant's first turn only.
        for t, other in ((A, B), (B, A)):
            body = next(r["body"] for r in simulator.chat_requests(chat_before)
                        if texts[t][1] in str(r["body"]["messages"][-1]))
            sent = str(body["messages"])
            assert texts[t][0] in sent and texts[other][0] not in sent and texts[other][1] not in sent, body
        keys = [awtest.rk_key(ctx.redis_prefix, conv, "hist", tenant=t) for t in (A, B)]
        assert all(redis_client.llen(k) == 2 for k in keys), keys
        assert not redis_client.exists(awtest.rk_key(ctx.redis_prefix, conv, "hist"))
    else:
        assert conv_handle(first[A]) != conv_handle(first[B]), "two tenants, two backend conversations"
        # Redis: each tenant's handle under its own hash tag; nothing under the bare conversation.
        for t in (A, B):
            assert redis_client.get(ctx.thread_key(conv, tenant=t)) == conv_handle(first[t])
        assert redis_client.get(ctx.thread_key(conv)) is None
        # The API's conversation object is tagged with the tenant's reference of the conversation.
        for t in (A, B):
            h = conv_handle(first[t])
            obj = simulator.api("GET", f"/threads/{h}" if h.startswith("thread_") else f"/conversations/{h}")
            assert (obj.get("metadata") or {}).get("conversation_id") == awtest.rk_ref(conv, t), obj
        enc = conv.replace("}", "%7D").replace(":", "%3A").replace(" ", "%20")
        assert ctx.thread_key(conv, tenant=B) == f"{ctx.redis_prefix}:{{t:globex%3Aeu:c:{enc}}}:" + \
            awtest.handle_key_suffix()
    for t in (A, B):
        for r in (first[t], second[t]):
            assert redis_client.exists(awtest.rk_key(ctx.redis_prefix, conv, "ev", r["event_id"], tenant=t)), \
                "each tenant's outcome record under its own tag"


def test_missing_or_invalid_tenant_is_rejected_dead_lettered_and_the_conversation_goes_on(ctx, worker):
    w = worker(extra_env=TENANT_ENV)
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    cases = [(None, "missing_tenant"), ("", "missing_tenant"), ("ac\x01me", "invalid_tenant"),
             ("t" * 65, "invalid_tenant")]
    sent = []
    for tenant, code in cases:
        req = make_request(conv, "How do I reset my password?")
        value = pack(req)
        part, off = ctx.producer.send(ctx.topics["requests"], value, conv,
                                      headers=None if tenant is None else [("x-tenant", tenant.encode())])
        sent.append((req, value, part, off, code))
    good = make_request(conv, "How do I reset my password?")
    send(ctx, good, A)

    for req, value, part, off, code in sent:
        rej = response(ctx, req["event_id"], None)
        assert_valid("response", rej)
        assert rej["status"] == "rejected" and error_code(rej) == code, rej.obj
        assert "tenant" not in rej.obj
        dl = ctx.dlq.wait_for(lambda ms: next((m for m in ms if m.get("source", {}).get("offset") == off
                                               and m["source"]["partition"] == part), None),
                              30, f"the dead letter of {code}")
        assert_valid("dlq", dl)
        assert dl["error"]["code"] == code
        assert base64.b64decode(dl.json()["original"]) == value, "the original bytes, exactly"
        assert dl["original_key"] == conv.encode()
    ok = response(ctx, good["event_id"], A)
    assert ok["status"] == "completed", ok.obj
    # The tenant is in the event's log context.
    assert w.logged("turn completed", event_id=good["event_id"], conversation_id=conv, tenant=A)


def test_tool_calls_route_back_to_their_tenants_turn(ctx, worker, tool_service, simulator, redis_client):
    """Two tenants, the same conversation id and the same event id: their tool calls, replied
    in the opposite order, each reach their own tenant's turn."""
    svc = tool_service()
    worker(assistants=[dict(WEATHER_ASSISTANT), dict(SUPPORT_BOT)], extra_env=TENANT_ENV)
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    event_id = f"evt-{uuid.uuid4().hex[:8]}"
    text = "What's the weather in Paris and in Tokyo?"
    reqs = {}
    treqs = {}
    for i, t in enumerate((A, B)):
        reqs[t] = make_request(conv, text, event_id=event_id, assistant=WEATHER_ASSISTANT["name"])
        send(ctx, reqs[t], t)
        # Each tenant's turn publishes its two calls before the next tenant's is sent, so the
        # order on the topic says whose they are (a tool request names no tenant).
        treqs[t] = svc.wait_requests(conv, 2, after=2 * i)
    assert {r["event_id"] for t in (A, B) for r in treqs[t]} == {event_id}
    assert len({r["correlation_id"] for t in (A, B) for r in treqs[t]}) == 4

    # Both turns wait, each in its own tenant's tool state.
    for t in (A, B):
        pattern = awtest.rk_key(ctx.redis_prefix, conv, "turn", tenant=t) + ":*"
        assert len(redis_client.keys(pattern)) == 1, pattern

    outputs = {A: {"Paris": "A: 22 and sunny", "Tokyo": "A: 18 and cloudy"},
               B: {"Paris": "B: 9 and rainy", "Tokyo": "B: 30 and humid"}}
    for t in (B, A):
        for r in treqs[t]:
            svc.reply(r, output=outputs[t][json.loads(r["arguments_json"])["location"]])
    for t in (A, B):
        resp = response(ctx, event_id, t)
        assert_valid("response", resp)
        assert resp["status"] == "completed", resp.obj
        assert answer_text(resp) == f"Paris: {outputs[t]['Paris']}. Tokyo: {outputs[t]['Tokyo']}.", t
        assert [c["outcome"] for c in resp["tool_calls"]] == ["output", "output"]
    ctx.dlq.quiet_for(0.5)
    assert not ctx.dlq.messages, [m.obj for m in ctx.dlq.messages]

"""Many conversations at once: ordered within a conversation, each event answered once."""
import collections

from awtest import conv_handle, make_request, pack


def test_50_conversations_x_5_messages_keep_per_conversation_order_and_answer_each_event_once(
        ctx, worker, simulator):
    worker()
    convs = [f"conv-many-{i:02d}" for i in range(50)]
    sent = collections.defaultdict(list)  # conversation -> [(event_id, text)] in send order
    items = []
    for n in range(5):                    # interleaved: message n of every conversation
        for c in convs:
            req = make_request(c, f"{c} message {n}")
            sent[c].append((req["event_id"], req["content"]))
            items.append((c, pack(req)))
    ctx.producer.send_many(ctx.topics["requests"], items)

    all_ids = [e for c in convs for e, _ in sent[c]]
    got = ctx.responses_for(all_ids, timeout_s=180)
    assert all(m["status"] == "completed" for m in got.values()), \
        [m.obj for m in got.values() if m["status"] != "completed"][:3]

    # Exactly once: wait a little longer, then no event has a second response.
    ctx.responses.quiet_for(2.0)
    counts = collections.Counter(m.get("event_id") for m in ctx.responses.messages)
    assert {e: n for e, n in counts.items() if n != 1} == {}
    assert set(counts) == set(all_ids)

    # Order: a conversation's responses arrive in the order of its requests (one partition
    # per key, so arrival order is offset order), and all use one backend conversation (thread).
    by_conv = collections.defaultdict(list)
    for m in ctx.responses.messages:
        by_conv[m.key_str].append(m)
    threads = set()
    for c in convs:
        assert [m["event_id"] for m in by_conv[c]] == [e for e, _ in sent[c]], f"order of {c}"
        tids = {conv_handle(m) for m in by_conv[c]}
        assert len(tids) == 1, f"{c} used threads {tids}"
        threads |= tids
    assert len(threads) == len(convs), "one thread per conversation"

    # In each thread (conversation) the user messages are in order.
    for c in convs:
        tid = conv_handle(by_conv[c][0])
        assert simulator.user_texts(tid) == [t for _, t in sent[c]], f"thread of {c}"

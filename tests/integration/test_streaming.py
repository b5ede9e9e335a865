"""stream: true publishes deltas that add up to the final answer."""
from awtest import answer_text, assert_valid


def test_streamed_deltas_concatenate_in_seq_order_to_final_text_with_contiguous_seq(
        ctx, worker, sim_settings):
    worker()
    # Tokens 30 ms apart, so the answer really arrives in pieces over ~0.6 s.
    sim_settings.faults(token_delay_ms=30)
    req = ctx.ask("conv-stream", "How do I reset my password?", stream=True)
    resp = ctx.response_for(req["event_id"])
    assert_valid("response", resp)
    assert resp["status"] == "completed", resp.obj
    final = answer_text(resp)
    assert final

    def mine(ms):
        return [m for m in ms if m.get("event_id") == req["event_id"]]

    # Deltas go to their own topic; wait until what arrived adds up to the final text.
    ctx.deltas.wait_for(lambda ms: "".join(m["text"] for m in sorted(mine(ms), key=lambda m: m["seq"])) == final,
                        30, "deltas adding up to the final answer")
    deltas = mine(ctx.deltas.messages)
    for d in deltas:
        assert_valid("delta", d)
        assert d.key_str == "conv-stream"
        assert d["run_id"] == resp["backend"]["turn"] and d["conversation_id"] == "conv-stream"
        assert d["attempt"] == 0, "nothing was recovered: one attempt"
    seqs = [d["seq"] for d in deltas]
    assert sorted(seqs) == list(range(len(deltas))), f"seq must be 0..n-1 without gaps: {seqs}"
    assert seqs == sorted(seqs), "deltas of one event arrive in seq order (one partition)"
    assert len(deltas) > 1, "the answer was streamed in several pieces"


def test_all_deltas_are_in_their_topic_before_the_response_is_published(ctx, worker):
    """A reader that has the response and then reads the deltas partition up to its end has
    every delta.  A first, unstreamed request makes the worker's producer know the responses
    topic but not the deltas topic, so with an instant simulator the first delta (which waits
    for the deltas topic's metadata) races its response."""
    from confluent_kafka import TopicPartition

    worker()
    warm = ctx.ask("conv-durable-warm", "How do I reset my password?")
    assert ctx.response_for(warm["event_id"])["status"] == "completed"
    for i in range(3):
        conv = f"conv-durable-{i}"
        req = ctx.ask(conv, f"How do I reset my password? {i}", stream=True)
        resp = ctx.response_for(req["event_id"])
        assert resp["status"] == "completed", resp.obj
        final = answer_text(resp)
        # The deltas partition of this key (same key, same partition count as the responses).
        tp = TopicPartition(ctx.topics["deltas"], resp.partition)
        _, high = ctx.deltas.c.get_watermark_offsets(tp, timeout=10, cached=False)

        def upto_high(ms):
            got = [m for m in ms if m.partition == resp.partition and m.offset < high]
            return got if len(got) >= high or any(m.offset == high - 1 for m in got) else None

        if high > 0:
            ctx.deltas.wait_for(upto_high, 30, f"deltas partition {resp.partition} up to offset {high}")
        mine = sorted((m for m in ctx.deltas.messages
                       if m.partition == resp.partition and m.offset < high
                       and m.get("event_id") == req["event_id"]), key=lambda m: m["seq"])
        assert "".join(m["text"] for m in mine) == final, \
            f"deltas present when the response was seen must add up to the answer (message {i})"

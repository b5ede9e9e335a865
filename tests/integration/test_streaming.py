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
        assert d["run_id"] == resp["run_id"] and d["conversation_id"] == "conv-stream"
    seqs = [d["seq"] for d in deltas]
    assert sorted(seqs) == list(range(len(deltas))), f"seq must be 0..n-1 without gaps: {seqs}"
    assert seqs == sorted(seqs), "deltas of one event arrive in seq order (one partition)"
    assert len(deltas) > 1, "the answer was streamed in several pieces"

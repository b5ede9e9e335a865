"""Redis down for a while, then back: the worker notices, keeps trying while it is down (those
attempts fail -- the case hiredis' own libuv adapter never reported, which left workers hanging
forever), reconnects when it is back, and answers the events that arrived meanwhile."""
from awtest import conv_handle, lib_sh


def test_worker_reconnects_after_redis_was_down_and_answers_what_arrived_meanwhile(ctx, worker, stack):
    name = f"redis-outage-{ctx.id}"
    port = stack.start_redis(name, aof=True)
    w = worker(redis_port=port)
    first = ctx.ask("conv-outage", "How do I reset my password?")
    assert ctx.response_for(first["event_id"])["status"] == "completed"

    lib_sh("aw_stop", str(stack.run_dir), name)
    down = w.wait_log(lambda e: str(e.get("msg", "")).startswith("redis disconnected"), 30,
                      "the worker to notice Redis is gone")
    # While Redis is down, reconnect attempts fail and are reported (then retried).
    w.wait_log(lambda e: str(e.get("msg", "")).startswith("redis connect to")
               and ("failed" in e["msg"] or "timed out" in e["msg"]), 30,
               "a failed reconnect attempt", start=down)
    meanwhile = ctx.ask("conv-outage", "Thanks! And how do I change my email address?")

    lib_sh("aw_redis_start", str(stack.run_dir), "--aof", name)  # same port and data
    w.wait_log(lambda e: e.get("msg") == f"redis connected to 127.0.0.1:{port}", 30,
               "the worker to reconnect", start=down)
    resp = ctx.response_for(meanwhile["event_id"], timeout_s=60)
    assert resp["status"] == "completed", resp.obj
    assert conv_handle(resp) == conv_handle(ctx.response_for(first["event_id"])), \
        "the thread mapping survived (append-only file)"

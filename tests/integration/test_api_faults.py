"""Transient API errors are retried until the event completes."""
import pytest

from awtest import Simulator


@pytest.mark.parametrize("status,fault", [(429, {"fail_next_n_with_429": 2, "retry_after_s": 0}),
                                          (500, {"fail_next_n_with_500": 2})],
                         ids=["429", "500"])
def test_api_error_is_retried_and_event_completes(ctx, worker, sim_settings, status, fault):
    sim = sim_settings
    worker()  # ready first: startup traffic (assistant lookup) must not eat the faults
    before = Simulator.count_status(sim.stats(), status)
    sim.faults(**fault)
    req = ctx.ask(f"conv-{status}", "How do I reset my password?")
    resp = ctx.response_for(req["event_id"], timeout_s=90)
    assert resp["status"] == "completed", resp.obj
    after = Simulator.count_status(sim.stats(), status)
    assert after - before >= 2, f"the simulator answered {after - before} request(s) with {status}"

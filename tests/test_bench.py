"""The kit's own timing: FBRAC's update cost grows with K (backpropagation through every step), FlowQ's does
not (its training never solves the ODE). Ratios are taken within one interleaved run, never against a clock."""

from flowkit.bench import bench_methods


def test_update_cost_grows_with_flow_steps_for_fbrac_and_stays_flat_for_flowq():
    settings = {"actor_hidden": (128, 128), "critic_hidden": (128, 128), "batch_size": 128}
    rows = bench_methods(
        ["fbrac", "flowq"], [1, 16], ["euler"], settings, obs_dim=8, action_dim=2, iterations=15, warmup=3
    )
    ms = {(r["agent"], r["flow_steps"]): r["ms_per_update"] for r in rows}
    gflop = {(r["agent"], r["flow_steps"]): r["gflop_per_update"] for r in rows}
    fbrac, flowq = ms["fbrac", 16] / ms["fbrac", 1], ms["flowq", 16] / ms["flowq", 1]
    message = f"ms per update at K=16 over K=1: FBRAC {fbrac:.2f}, FlowQ {flowq:.2f}; {ms}"
    assert fbrac > 2.0 and fbrac > 2 * flowq, message
    assert 0.75 < flowq < 1.33, message
    assert gflop["flowq", 16] == gflop["flowq", 1] and gflop["fbrac", 16] > 3 * gflop["fbrac", 1], gflop

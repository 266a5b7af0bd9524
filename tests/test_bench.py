"""The benchmark's cost figures: FBRAC's update cost grows with K (backpropagation through every step), FlowQ's
does not (its training never solves the ODE). Asserted on XLA's FLOP count; times are measured, never asserted."""

from flowkit.bench import bench_methods


def test_update_cost_grows_with_flow_steps_for_fbrac_and_stays_flat_for_flowq():
    """The arithmetic of an update (XLA's count, not a timing): FBRAC backpropagates through all K steps of its
    flow, FlowQ's loss touches one point of the flow whatever K."""
    settings = {"actor_hidden": (128, 128), "critic_hidden": (128, 128), "batch_size": 128}
    rows = bench_methods(
        ["fbrac", "flowq"],
        [1, 16],
        ["euler"],
        settings,
        obs_dim=8,
        action_dim=2,
        updates_per_call=2,
        iterations=2,
        warmup=1,
    )
    gflop = {(r["agent"], r["flow_steps"]): r["gflop_per_update"] for r in rows}
    assert all(r["ms_per_update"] > 0 for r in rows)
    assert gflop["flowq", 16] == gflop["flowq", 1] and gflop["fbrac", 16] > 3 * gflop["fbrac", 1], gflop

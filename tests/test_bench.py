"""The benchmark's cost figures: FBRAC's update cost grows with K (backpropagation through every step), FlowQ's
does not (its training never solves the ODE). Asserted on XLA's FLOP count; times are measured, never asserted."""

import pytest

from flowkit.benchmarks.bench import agent_config, bench_methods, bench_step
from flowkit.benchmarks.bench_tables import format_methods, methods_cost_fits
from flowkit.settings import ConfigError

pytestmark = pytest.mark.slow


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
    flow = (8 + 2 + 1) * 128 + 128 + 128 * 128 + 128 + 128 * 2 + 2
    assert rows[0]["parameters"]["flow"] == flow, (rows[0]["parameters"], flow)
    assert f"fbrac        {sum(rows[0]['parameters'].values()):>12,}  critic" in format_methods(rows)
    assert all(r["ms_per_update"] > 0 for r in rows)
    assert gflop["flowq", 16] == gflop["flowq", 1] and gflop["fbrac", 16] > 3 * gflop["fbrac", 1], gflop


def test_the_methods_table_carries_the_cost_fit_of_the_reports():
    """Rows on exact lines (FBRAC 50 + 6 K ms, FlowQ 40 ms whatever K) give back those lines; an arm timed at
    fewer than three K has no fit."""
    rows = [
        {"agent": agent, "solver": "euler", "flow_steps": k, "nfe_per_solve": k, "ms_per_update": ms(k),
         "ms_iqr": 0.1, "gflop_per_update": 1.0, "compile_s": 1.0}
        for agent, ms in (("fbrac", lambda k: 50 + 6 * k), ("flowq", lambda k: 40 + 1e-3 * (-1) ** k))
        for k in (1, 2, 4, 8, 16, 32)
    ] + [
        {"agent": "qflow", "solver": "euler", "flow_steps": k, "nfe_per_solve": k, "ms_per_update": 10.0 * k,
         "ms_iqr": 0.1, "gflop_per_update": 1.0, "compile_s": 1.0}
        for k in (1, 2)
    ]  # fmt: skip
    fits = methods_cost_fits(rows)
    assert set(fits) == {("fbrac", "euler"), ("flowq", "euler")}
    fbrac, flowq = fits["fbrac", "euler"], fits["flowq", "euler"]
    assert fbrac.slope == pytest.approx(6.0) and fbrac.intercept == pytest.approx(50.0) and not fbrac.flat()
    assert abs(flowq.slope) < 1e-3 and flowq.intercept == pytest.approx(40.0, abs=1e-3) and flowq.flat()
    text = format_methods(rows)
    assert "fbrac        euler        50.00" in text and "6.00 [6.00, 6.00]" in text
    assert text.splitlines()[-1].endswith("yes") and "qflow" not in text.split("a + b K")[1]


def test_bench_step_times_the_same_update_on_both_sides():
    """With the policy narrower than the critic, flowkit's and the reference's updates do the same arithmetic
    (XLA's count; flowkit's per-update metrics add under 1%); a setting the reference does not implement is
    refused before anything is compiled."""
    config = agent_config("fql", {"actor_hidden": (32, 32), "critic_hidden": (128, 128), "batch_size": 64})
    results = bench_step(8, 2, config, updates_per_call=2, iterations=1, warmup=1)
    flowkit, reference = (results[side]["gflop_per_update"] for side in ("flowkit", "reference"))
    assert reference <= flowkit <= 1.01 * reference, (flowkit, reference)
    with pytest.raises(ConfigError, match="normalize_q_loss=True: the reference update implements only"):
        bench_step(8, 2, agent_config("fql", {"normalize_q_loss": True}), updates_per_call=2, iterations=1, warmup=1)

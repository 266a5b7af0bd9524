"""The analyses agree with direct computations: statistics, cost fits, gradient norms and value consistency."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from flowkit.agents.base import global_norm
from flowkit.agents.common import flow_actions, flow_value_gaps
from flowkit.analysis.consistency import pool
from flowkit.analysis.cost import fit_cost
from flowkit.analysis.gradients import Curve, explosions
from flowkit.analysis.statistics import compare_to_reference, iqm, probability_of_improvement, stratified_bootstrap
from flowkit.training import consistency_record
from tests.helpers import tiny_agent

SCORES = np.array(
    [[0.1, 0.9, 0.4, 0.3], [0.5, 0.2, 0.8, 0.6], [0.7, 0.35, 0.05, 0.95], [0.25, 0.55, 0.65, 0.15]]
)  # 4 runs x 4 tasks


def test_iqm_is_the_mean_of_the_middle_half():
    ordered = np.sort(SCORES.ravel())
    assert iqm(SCORES) == pytest.approx(ordered[4:12].mean())


def test_probability_of_improvement_counts_pairs():
    x, y = SCORES[:2], SCORES[2:]
    direct = np.mean(
        [np.mean([(a > b) + 0.5 * (a == b) for a, b in itertools.product(x[:, t], y[:, t])]) for t in range(4)]
    )
    assert probability_of_improvement(x, y) == pytest.approx(direct)


@pytest.mark.slow
def test_stratified_bootstrap_interval_covers_the_true_iqm_about_95_percent():
    """Normal(0, 1) scores have IQM 0; percentile intervals from 10 runs x 4 tasks should cover it ~95%."""
    rng = np.random.default_rng(1)
    covered = []
    for replicate in range(100):
        low, high = stratified_bootstrap(iqm, rng.standard_normal((10, 4)), samples=100, seed=replicate)
        covered.append(low <= 0.0 <= high)
    coverage = float(np.mean(covered))
    assert 0.85 <= coverage <= 1.0, f"coverage {coverage:.2f} over 100 replicates"


@pytest.mark.slow
def test_holm_correction_over_all_comparisons():
    reference = np.array([-1.2, -0.7, -0.3, 0.0, 0.2, 0.5, 0.9, 1.4])
    wiggle = np.array([0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.25])
    arms = [reference[::-1] + wiggle + shift for shift in (0.1, 1.5, 3.0)]
    comparisons = compare_to_reference([(arm, reference) for arm in arms])
    raw = np.array([c.welch_p for c in comparisons])
    order = np.argsort(raw)
    holm = np.empty(3)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw[index]))
        holm[index] = running
    np.testing.assert_allclose([c.welch_holm for c in comparisons], holm)
    assert comparisons[2].mark.startswith("*") and comparisons[0].mark == ""


def test_cost_fit_recovers_a_known_slope():
    rng = np.random.default_rng(0)
    steps = np.repeat([1, 2, 4, 8, 16, 32], 3)
    growing = fit_cost(steps, 2.0 + 0.5 * steps + rng.normal(0, 0.05, steps.size))
    assert growing.slope_low <= 0.5 <= growing.slope_high and abs(growing.slope - 0.5) < 0.01
    assert not growing.flat()
    flat = fit_cost(steps, 3.0 + rng.normal(0, 0.05, steps.size))
    assert flat.slope_low <= 0.0 <= flat.slope_high and flat.flat()


def test_explosions_are_flagged():
    steps = np.arange(1, 8) * 100
    steady = Curve(steps, np.ones(7), 2 * np.ones(7))
    assert explosions(steady) == []
    growing = Curve(steps, np.array([1, 1, 1, 2, 20, 40, 80.0]), np.array([1, 1, 1, 3, 30, 60, 2000.0]))
    flags = explosions(growing)
    assert [step for step, _ in flags] == [500, 600, 700] and "2e+03" in flags[-1][1]
    at_once = Curve(steps[:3], np.array([0.1, 5.0, 5.0]), np.array([0.1, 5.0, 5.0]))
    assert [step for step, _ in explosions(at_once)] == [200, 300], "in the first intervals too"
    after_a_dip = Curve(steps[:4], np.array([5.0, 1.0, 1.0, 20.0]), np.array([5.0, 1.0, 1.0, 20.0]))
    assert explosions(after_a_dip) == [(400, "mean norm grew 20.0x within 3 intervals")], "from the window's low"


@pytest.mark.slow
def test_gradient_norms_recorded_inside_the_step_equal_norms_computed_outside():
    agent, state, batch = tiny_agent("fql", alpha=1.0)
    _, metrics = jax.jit(lambda s, b: agent.update(s, b, term_grad_norms=True))(state, batch)
    _, loss_key = jax.random.split(state.key)

    def term(name):
        return lambda params: agent.loss(params, state.target_params, batch, loss_key, state.step).terms[name]

    outside = {name: jax.jit(jax.grad(term(name)))(state.params) for name in ("critic", "bc_flow", "distill", "q")}
    total = jax.tree.map(lambda *g: sum(g), *outside.values())
    for network in agent.models:
        assert float(metrics[f"grad_norm/{network}"]) == pytest.approx(float(global_norm(total[network])), rel=1e-4)
    for name in ("distill", "q"):
        expected = float(global_norm(outside[name]["onestep"]))
        assert float(metrics[f"grad_norm/onestep/{name}"]) == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_an_exactly_consistent_value_has_zero_gap_and_an_inconsistent_one_does_not():
    """V(s, x, t) := Q(s, Psi_{t->1}(x)) is consistent by construction; V := Q(s, x) mid-flow is not."""
    agent, state, batch = tiny_agent("qflow", flow_steps=6, solver="midpoint")
    observations = batch.observations
    noise = jax.random.normal(jax.random.PRNGKey(4), batch.actions.shape)

    def consistent(params, s, x, t):
        return agent.apply("critic", params, s, flow_actions(agent, params, s, x, t0=t)).mean(axis=0)

    agent.intermediate_value = consistent
    gaps = jax.jit(lambda p: flow_value_gaps(agent, p, observations, noise))(state.params)
    assert gaps.shape == (7, observations.shape[0])
    assert float(jnp.abs(gaps).max()) < 1e-5, float(jnp.abs(gaps).max())

    agent.intermediate_value = lambda params, s, x, t: agent.apply("critic", params, s, x).mean(axis=0)
    gaps = jax.jit(lambda p: flow_value_gaps(agent, p, observations, noise))(state.params)
    assert float(gaps[0].mean()) > 1e-2 and float(gaps[-1].max()) == 0.0


def test_the_consistency_interval_is_over_seeds():
    """Seeds whose mean gaps are 1, 2 and 3 (256 states each, spread 0.5): the interval is t(2) over the three
    means, 2 +- 4.303 * 1 / sqrt(3) = [-0.48, 4.48], not the +-0.04 that 768 states taken as independent give;
    one seed's interval is over its states."""
    rng = np.random.default_rng(0)
    seeds = [np.abs(rng.normal(1 + seed, 0.5, (5, 256))) for seed in range(3)]
    curve = pool([consistency_record(gaps) for gaps in seeds])
    means = np.array([gaps.mean(axis=1) for gaps in seeds])
    np.testing.assert_allclose(curve.mean, means.mean(axis=0))
    half = scipy.stats.t.ppf(0.975, 2) * means.std(axis=0, ddof=1) / np.sqrt(3)
    np.testing.assert_allclose(curve.high - curve.mean, half)
    assert curve.seeds == 3 and np.all(curve.high - curve.mean > 2.0)
    single = pool([consistency_record(seeds[0])])
    np.testing.assert_allclose(single.high - single.mean, 1.959963984540054 * seeds[0].std(axis=1, ddof=1) / 16)

"""Conclusions: the kit's verdict statistics against statsmodels called here on the same scores, and pairing."""

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

import flowkit.studies.runner as runner
import flowkit.studies.runner.trial as runner_trial
from flowkit import Difference, Equivalence
from flowkit.agents import make_agent
from flowkit.agents.common import flow_actions
from flowkit.analysis.conclusions import (
    DIFFERENT,
    EQUIVALENT,
    INCONCLUSIVE,
    RANDOMNESS_FREE,
    compare,
    evaluation_noise,
    holm,
    unpaired_settings,
)
from flowkit.reports import comparisons, sections
from flowkit.reports.builder import _tex, build_report, load_results
from flowkit.reports.collect import CellResult
from flowkit.reports.conclusions import verdict_lines, verdicts
from flowkit.settings import ConfigError
from flowkit.studies import load_study
from flowkit.studies.study import cell_key
from flowkit.tasks import load_task
from flowkit.tasks.toy import ToyBandit
from flowkit.training.seed_run import DATA_STREAM, EVAL_STREAM
from tests.helpers import stored_trials, tiny_config, tiny_study

REFERENCE = [0.50, 0.62, 0.71, 0.55, 0.66]
CLOSE = [0.503, 0.617, 0.713, 0.549, 0.662]
"""Within 0.005 of REFERENCE seed by seed: equivalent within 0.05 when paired, not when unpaired."""
HIGHER = [0.90, 0.93, 0.91, 0.94, 0.92]
SCATTERED = [0.30, 0.75, 0.52, 0.95, 0.41]


def seeds(values):
    return dict(enumerate(values))


def power_solution(power, **known):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(np.squeeze(power.solve_power(alpha=0.05, power=0.8, **known)))


def test_paired_statistics_are_statsmodels_on_the_per_seed_differences():
    c = compare(seeds(CLOSE), seeds(REFERENCE), paired=True, margin=0.05)
    arm, ref = np.array(CLOSE), np.array(REFERENCE)
    differences = arm - ref
    sd, n = differences.std(ddof=1), len(differences)
    expected_tost = ttost_paired(arm, ref, -0.05, 0.05)[0]
    half = scipy.stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    expected_mde = power_solution(TTestPower(), effect_size=None, nobs=n) * sd
    assert c.paired and c.n == 5
    assert c.tost_p == pytest.approx(expected_tost, rel=1e-9), (c.tost_p, expected_tost)
    assert c.ci == pytest.approx((differences.mean() - half, differences.mean() + half), rel=1e-9), c.ci
    assert c.p == pytest.approx(scipy.stats.ttest_rel(arm, ref).pvalue, rel=1e-9)
    assert c.mde == pytest.approx(expected_mde, rel=1e-6), (c.mde, expected_mde)
    assert c.verdict == EQUIVALENT and c.text() == "equivalent within ±0.05", (c.tost_p, c.text())


def test_unpaired_statistics_are_welch_and_statsmodels():
    """The same scores unpaired: the seeds' spread (about 0.08) swamps the 0.05 margin."""
    c = compare(seeds(CLOSE), seeds(REFERENCE), paired=False, margin=0.05)
    arm, ref = np.array(CLOSE), np.array(REFERENCE)
    expected_tost = ttost_ind(arm, ref, -0.05, 0.05, usevar="unequal")[0]
    welch = scipy.stats.ttest_ind(arm, ref, equal_var=False)
    low, high = welch.confidence_interval(0.95)
    pooled = math.sqrt((arm.var(ddof=1) + ref.var(ddof=1)) / 2)
    expected_mde = power_solution(TTestIndPower(), effect_size=None, nobs1=5, ratio=1.0) * pooled
    gap = 0.05 - abs(arm.mean() - ref.mean())  # to the margin: the difference (-0.0004) is well inside it
    expected_seeds = math.ceil(power_solution(TTestIndPower(), effect_size=gap / pooled, nobs1=None))
    assert not c.paired
    assert c.tost_p == pytest.approx(expected_tost, rel=1e-9) and c.tost_p > 0.05, (c.tost_p, expected_tost)
    assert c.ci == pytest.approx((low, high), rel=1e-9), (c.ci, (low, high))
    assert c.p == pytest.approx(welch.pvalue, rel=1e-9)
    assert c.mde == pytest.approx(expected_mde, rel=1e-6), (c.mde, expected_mde)
    assert c.seeds_needed == expected_seeds, (c.seeds_needed, expected_seeds)
    assert c.verdict == INCONCLUSIVE
    assert (
        c.text()
        == f"inconclusive (95% CI [{low:+.3f}, {high:+.3f}]; about {expected_seeds} seeds per arm would decide it)"
    )


def test_a_clear_difference_is_different_after_holm():
    different = compare(seeds(HIGHER), seeds(REFERENCE), paired=False, margin=0.05)
    inconclusive = compare(seeds(SCATTERED), seeds(REFERENCE), paired=False, margin=0.05)
    corrected = holm([different, None, inconclusive])
    expected = multipletests([different.p, inconclusive.p], method="holm")[1]
    assert corrected[1] is None
    assert [corrected[0].p_holm, corrected[2].p_holm] == pytest.approx(list(expected), rel=1e-12)
    assert corrected[0].verdict == DIFFERENT, corrected[0]
    assert corrected[0].text().startswith(f"different ({np.mean(HIGHER) - np.mean(REFERENCE):+.3f}, 95% CI [")
    assert corrected[2].verdict == INCONCLUSIVE, corrected[2]


def test_paired_seeds_needed_match_statsmodels_and_are_floored_where_it_gives_nan():
    c = compare(seeds(SCATTERED), seeds(REFERENCE), paired=True, margin=0.05)
    sd = np.std(np.array(SCATTERED) - REFERENCE, ddof=1)
    difference = abs(np.mean(SCATTERED) - np.mean(REFERENCE))
    gap = max(0.05 - difference, difference)  # 0.028 to the margin is wider than the 0.022 to no difference
    expected = math.ceil(power_solution(TTestPower(), effect_size=gap / sd, nobs=None))
    assert c.seeds_needed == expected, (c.seeds_needed, expected)
    few = dataclasses.replace(c, seeds_needed=3)
    assert few.text().endswith("about 6 seeds per arm would decide it)"), "undecided with 5: more than 5"
    wide = compare(seeds(CLOSE), seeds(REFERENCE), paired=True, margin=10.0)
    raw = power_solution(TTestPower(), effect_size=10.0 / np.std(np.array(CLOSE) - REFERENCE, ddof=1), nobs=None)
    assert math.isnan(raw), "statsmodels gives nan when under two seeds would do"
    assert wide.seeds_needed == 2


def test_without_a_margin_no_equivalence_and_seeds_for_the_observed_difference():
    c = compare(seeds(SCATTERED), seeds(REFERENCE), paired=False, margin=None)
    pooled = math.sqrt((np.var(SCATTERED, ddof=1) + np.var(REFERENCE, ddof=1)) / 2)
    effect = abs(np.mean(SCATTERED) - np.mean(REFERENCE)) / pooled
    assert c.tost_p is None and c.verdict == INCONCLUSIVE
    assert c.seeds_needed == math.ceil(power_solution(TTestIndPower(), effect_size=effect, nobs1=None))
    assert compare({0: 0.5}, seeds(REFERENCE), paired=False, margin=0.05) is None, "one seed: no verdict"


def test_evaluation_noise_splits_binomial_from_seed_variance():
    """Rates from 75 episodes: p(1 - p) / 75 of each seed's variance is evaluation noise."""
    rates = [0.40, 0.27, 0.32]
    split = evaluation_noise(rates, 75)
    binomial = np.mean([p * (1 - p) / 75 for p in rates])
    assert split.observed == pytest.approx(np.var(rates, ddof=1))
    assert split.evaluation == pytest.approx(binomial)
    assert split.seed == pytest.approx(max(np.var(rates, ddof=1) - binomial, 0))
    assert split.evaluation_share > 0.5, f"binomial {binomial:.4f} of {np.var(rates, ddof=1):.4f}: episodes help more"
    episodes, more_seeds = split.narrowing()
    assert more_seeds == pytest.approx(1 - math.sqrt(0.5))
    assert episodes == pytest.approx(1 - math.sqrt((split.seed + binomial / 2) / (split.seed + binomial)))


def test_arms_differing_in_randomness_free_settings_are_paired_others_not():
    euler = tiny_config("fql", "moons", solver="euler", alpha=3.0)
    assert unpaired_settings(euler, tiny_config("fql", "moons", solver="rk4", flow_steps=4, alpha=30.0)) == []
    assert unpaired_settings(euler, tiny_config("fql", "moons", actor_hidden=(16, 16), alpha=3.0)) == ["actor_hidden"]
    assert unpaired_settings(euler, tiny_config("fbrac", "moons")) == ["agent"]


@pytest.mark.slow
@pytest.mark.parametrize(("setting", "values"), [("solver", ("euler", "rk4")), ("path", ("linear", "vp"))])
def test_two_arms_share_initial_weights_minibatches_draws_and_evaluation_seeds(setting, values):
    """The seeding the kit uses (agent.init, SeedRun's data stream, the loss key's split) for two arms of one seed
    that differ in a setting RANDOMNESS_FREE names."""
    assert setting in RANDOMNESS_FREE
    task = load_task("moons")
    agents = [
        make_agent(tiny_config("fql", "moons", seed=3, **{setting: value}), task.obs_dim, task.action_dim)
        for value in values
    ]
    states = [agent.init(3) for agent in agents]
    for a, b in zip(jax.tree.leaves(states[0]), jax.tree.leaves(states[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    data_key = jax.random.fold_in(jax.random.PRNGKey(3), DATA_STREAM)
    batches = [task.dataset.sample(data_key, 64) for _ in agents]
    np.testing.assert_array_equal(batches[0].actions, batches[1].actions)
    loss_key = jax.random.split(states[0].key)[1]
    draws = [agent.draws(loss_key, batches[0]) for agent in agents]
    for a, b in zip(jax.tree.leaves(draws[0]), jax.tree.leaves(draws[1]), strict=True):
        np.testing.assert_array_equal(a, b)
    eval_key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(3), EVAL_STREAM), 100)
    noises = [agent.policy_noise(eval_key, jnp.ones((50, 1))) for agent in agents]
    np.testing.assert_array_equal(noises[0], noises[1])
    if setting == "solver":
        teachers = [flow_actions(agent, states[0].params, batches[0].observations, draws[0].noise) for agent in agents]
        assert not np.allclose(teachers[0], teachers[1]), "the arms differ in their solves only"


@pytest.mark.slow
def test_paired_differences_spread_less_than_either_arm(tmp_path):
    """A tiny bandit study of two solvers: each seed's runs share their random numbers, so the per-seed differences
    vary less than the seeds of either arm."""
    study = tiny_study(seeds=(0, 1, 2, 3), tasks=("eight-gaussians",))
    runner.run_study(study, tmp_path, progress=False)
    scores = {trial.params["solver"]: runner.seed_records(trial) for trial in stored_trials(study, tmp_path)}
    euler, rk4 = (np.array([scores[s][seed].score for seed in study.seeds]) for s in ("euler", "rk4"))
    spreads = np.std(euler, ddof=1), np.std(rk4, ddof=1), np.std(rk4 - euler, ddof=1)
    print(f"SD of Euler, RK4, RK4 - Euler: {spreads}")
    assert spreads[2] < min(spreads[:2]), f"SD of Euler, RK4, RK4 - Euler: {spreads}"


def results_of(study, scores):
    """CellResults holding per-seed scores by solver."""
    return {
        cell_key(cell): CellResult(cell, scores=dict(zip(study.seeds, scores[cell["solver"]], strict=True)))
        for cell in study.cells()
    }


def test_the_default_study_gives_a_paired_verdict_per_solver():
    study = load_study("ode-solver")
    results = results_of(
        study, {"euler": [0.80, 0.70, 0.90], "midpoint": [0.81, 0.705, 0.895], "rk4": [0.95, 0.88, 1.05]}
    )
    found = verdicts(study, results)
    assert [(v.arm, v.unpaired_by) for v in found] == [("Midpoint", ()), ("RK4", ())]
    assert found[0].conclusion.verdict == EQUIVALENT, found[0].conclusion
    lines = verdict_lines(study, results)
    assert lines[0] == "Midpoint against Euler (Default) on eight-gaussians: equivalent within ±0.05", lines
    assert lines[1].startswith("RK4 against Euler (Default) on eight-gaussians: "), lines


def test_a_multi_task_study_gets_an_aggregate_verdict():
    study = tiny_study(tasks=("moons", "eight-gaussians"), seeds=(0, 1, 2))
    results = {}
    for cell in study.cells():
        base = [0.5, 0.6, 0.7] if cell["task"] == "moons" else [0.2, 0.3, 0.1]
        shift = 0.3 if cell["solver"] == "rk4" else 0.0
        results[cell_key(cell)] = CellResult(cell, scores={s: base[s] + shift + 0.01 * s * s for s in study.seeds})
    found = verdicts(study, results)
    assert [v.row for v in found] == ["moons", "eight-gaussians", "all rows"]
    assert found[-1].conclusion.difference == pytest.approx(0.3), "the mean over rows per seed, paired"
    assert found[-1].conclusion.paired


def test_a_claim_without_a_margin_for_its_score_is_refused():
    with pytest.raises(ConfigError, match="claim: score 'energy_distance' has no default equivalence margin"):
        tiny_study(metric="energy_distance", claim=Equivalence())
    with pytest.raises(ConfigError, match="margin must be a positive number"):
        Difference(margin=-1)
    assert tiny_study(metric="energy_distance").claim_for("moons") == Difference()


SOLVER_SHIFT = {"euler": [0.0] * 3, "midpoint": [0.002, -0.001, 0.001], "rk4": [0.3, 0.25, 0.35]}
SEED_LEVEL = [0.40, 0.55, 0.47]


def fake_train(config, run_dir, **kwargs):
    """A run's result without training: each seed its own level, each solver a shift (midpoint's tiny, RK4's not)."""
    reward = SEED_LEVEL[config.seed] + SOLVER_SHIFT[config.agent_config.solver][config.seed]
    metrics = {"reward_mean": reward + 0.1, "reward_in_support": reward, "support": 0.9, "energy_distance": 0.1}
    return {
        "final": metrics,
        "eval_history": [{"step": 100, **metrics}],
        "cost": {"gflop_per_update": 0.1, "peak_memory_mb": 1.0},
        "timing": {"compile_s": 1.0, "train_s": 1.0, "eval_s": 0.1, "wall_s": 2.1, "ms_per_update": 1.0},
        "nfe_per_solve": 10,
    }


def test_the_report_writes_the_same_verdicts_in_markdown_html_and_latex(monkeypatch, tmp_path):
    monkeypatch.setattr(runner_trial, "train", fake_train)
    monkeypatch.setattr(
        sections, "SECTIONS", [s for s in sections.SECTIONS if not isinstance(s, comparisons.Aggregate)]
    )
    study = tiny_study(grid={"solver": ("euler", "midpoint", "rk4")}, seeds=(0, 1, 2), claim=Equivalence(0.01))
    runner.run_study(study, tmp_path, progress=False)
    path = build_report(study, tmp_path)
    text, html, tex = ((path.parent / name).read_text() for name in ("report.md", "report.html", "table.tex"))
    lines = verdict_lines(study, load_results(study, tmp_path, None))
    assert lines[0] == "Midpoint against Euler (Default) on moons: equivalent within ±0.01", lines
    assert lines[1] == "RK4 against Euler (Default) on moons: different (+0.300, 95% CI [+0.176, +0.424])", lines
    for line in lines:
        assert f"- {line}" in text and line in html and _tex(line) in tex, line
    assert "margin ±0.01 on `reward_in_support` (declared by the study)" in text
    assert "(n=3) (support 0.90)" in text, "the bandits' support beside their score"


def test_a_report_refuses_scores_stored_under_the_old_bandit_score(monkeypatch, tmp_path):
    """A bandit study run while reward_mean was the default score: its stored scores are not reward_in_support."""
    monkeypatch.setattr(runner_trial, "train", fake_train)
    monkeypatch.setattr(ToyBandit, "score_metric", "reward_mean")
    study = tiny_study(seeds=(0, 1))
    runner.run_study(study, tmp_path, progress=False)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="are not `reward_in_support`, the study's score now"):
        build_report(study, tmp_path)

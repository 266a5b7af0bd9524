"""Value bias against returns: the episodes an evaluation keeps, the values the probe reads at their starts, the
discounted returns with their bootstrap at a time limit, their pooling over seeds and the report's table."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from flowkit.analysis.value_bias import pool
from flowkit.reports.collect import CellResult
from flowkit.reports.parts import ReportData
from flowkit.reports.value_bias import ValueBiasSection
from flowkit.studies.runner import records
from flowkit.studies.study import cell_key
from flowkit.tasks import Episodes, load_task
from flowkit.tasks.ogbench_tasks import rollout
from flowkit.training.compiled_run import CompiledRun
from tests.helpers import tiny_config, tiny_study


def test_discounted_returns_are_the_hand_computed_sums():
    episodes = Episodes(
        first_observations=np.zeros((2, 1)),
        first_actions=np.zeros((2, 2)),
        rewards=(np.array([1.0, 2.0, 3.0]), np.array([-1.0, -1.0])),
        truncated=np.array([False, True]),
        last_observations=np.zeros((2, 1)),
    )
    returns = episodes.discounted_returns(0.9)
    expected = [1 + 0.9 * 2 + 0.81 * 3, -1 - 0.9]
    np.testing.assert_allclose(returns, expected, err_msg=f"{returns} against {expected}")
    assert episodes.lengths.tolist() == [3, 2]


class CountingEnv:
    """Observation (seed, steps so far); reward -1 per step; the goal is reached after `ends_at` steps (terminated)
    unless the time limit of `limit` steps comes first (truncated)."""

    def __init__(self, ends_at: int, limit: int = 4):
        self.ends_at, self.limit = ends_at, limit

    def reset(self, seed, options=None):
        self.seed, self.steps = seed, 0
        return np.array([seed, 0.0]), {}

    def step(self, action):
        self.steps += 1
        reached = self.steps == self.ends_at
        observation = np.array([self.seed, float(self.steps)])
        return (
            observation,
            0.0 if reached else -1.0,
            reached,
            self.steps == self.limit and not reached,
            {"success": reached},
        )


def test_a_rollout_keeps_each_episodes_first_state_and_action_rewards_and_how_it_ended():
    envs = [CountingEnv(ends_at=2), CountingEnv(ends_at=99), CountingEnv(ends_at=3)]
    policy = jax.jit(lambda observations, key: jnp.tanh(observations - 5.0))
    result = rollout(envs, policy, jax.random.PRNGKey(0), [{}] * 3, np.array([7, 8, 9]))
    episodes = result.episodes()
    np.testing.assert_array_equal(episodes.first_observations, [[7, 0], [8, 0], [9, 0]])
    np.testing.assert_allclose(episodes.first_actions, np.tanh(np.array([[2, -5], [3, -5], [4, -5]])), rtol=1e-6)
    assert [r.tolist() for r in episodes.rewards] == [[-1.0, 0.0], [-1.0] * 4, [-1.0, -1.0, 0.0]]
    assert episodes.truncated.tolist() == [False, True, False], "only the time limit truncates"
    np.testing.assert_array_equal(episodes.last_observations, [[7, 2], [8, 4], [9, 3]])
    assert result.returns.tolist() == [-1.0, -4.0, -2.0] and result.lengths.tolist() == [2, 4, 3]


def test_a_bandit_sample_is_a_one_step_episode_rewarded_as_its_score():
    task = load_task("moons")
    policy = jax.jit(lambda observations, key: jax.random.uniform(key, (observations.shape[0], 2), minval=-1))
    metrics, episodes = task.evaluate_episodes(policy, jax.random.PRNGKey(0), 300)
    rewards = np.array([r[0] for r in episodes.rewards])
    assert episodes.lengths.tolist() == [1] * 300 and not episodes.truncated.any()
    assert rewards.mean() == pytest.approx(metrics["reward_in_support"], abs=1e-6), (rewards.mean(), metrics)
    np.testing.assert_allclose(episodes.discounted_returns(0.99), rewards)
    assert 0 < (rewards > 0).mean() < 1, "uniform actions land both on and off the support"


def hand_made_episodes() -> Episodes:
    """Three one-dimensional-state episodes with distinct starts and ends; the second one cut by the time limit."""
    return Episodes(
        first_observations=np.array([[0.5], [-1.0], [2.0]]),
        first_actions=np.array([[0.1, -0.7], [0.9, 0.3], [-0.4, 0.5]]),
        rewards=(np.array([1.0, 2.0, 3.0]), np.array([-1.0, -1.0]), np.array([0.5])),
        truncated=np.array([False, True, False]),
        last_observations=np.array([[3.0], [-2.0], [1.5]]),
    )


@pytest.mark.parametrize("agent_name", ["rebrac", "qflow"])
def test_the_recorded_values_are_the_critics_at_each_episodes_start_and_a_cut_one_is_bootstrapped(agent_name):
    """Q(s0, a0) as the actor reads the ensemble (ReBRAC: min; Q-Flow: q_agg, mean by default), Q-Flow's V at the
    probe's x0, and returns sum gamma^t r_t plus gamma^T Q(s_T, a_T) for the truncated episode only."""
    compiled = CompiledRun.create(tiny_config(agent_name, "moons", discount=0.9))
    agent, params, key = compiled.agent, compiled.agent.init(3).params, jax.random.PRNGKey(5)
    episodes = hand_made_episodes()
    record = compiled.value_bias(params, episodes, key)
    reduce = {"rebrac": np.min, "qflow": np.mean}[agent_name]

    def critic(s: np.ndarray, a: np.ndarray) -> np.ndarray:
        return np.asarray(agent.apply("critic", params, jnp.asarray(s, jnp.float32), jnp.asarray(a, jnp.float32)))

    expected_q = reduce(critic(episodes.first_observations, episodes.first_actions), axis=0)
    assert record["aggregation"] == {"rebrac": "min", "qflow": "mean"}[agent_name]
    np.testing.assert_allclose(record["episodes"]["q"], expected_q, rtol=1e-5, err_msg=f"{record['episodes']['q']}")
    start_key, end_key = jax.random.split(key)
    s_end = jnp.asarray(episodes.last_observations, jnp.float32)
    end_q = reduce(critic(s_end, agent.act(params, s_end, end_key)), axis=0)
    assert abs(0.81 * end_q[1]) > 1e-3, f"the bootstrap term {0.81 * end_q[1]} must be visible"
    expected_returns = [1 + 0.9 * 2 + 0.81 * 3, -1 - 0.9 + 0.81 * end_q[1], 0.5]
    np.testing.assert_allclose(record["episodes"]["return"], expected_returns, rtol=1e-5)
    assert record["episodes"]["bootstrap"][0] == record["episodes"]["bootstrap"][2] == 0.0
    bias = np.array(record["episodes"]["q"]) - expected_returns
    assert record["q_bias_mean"] == pytest.approx(bias.mean()), (record["q_bias_mean"], bias.mean())
    assert record["q_bias_std"] == pytest.approx(bias.std(ddof=1)), (record["q_bias_std"], bias.std(ddof=1))
    assert ("v" in record["episodes"]) == (agent_name == "qflow"), "V only where the method learns one"
    if agent_name == "qflow":
        s0 = jnp.asarray(episodes.first_observations, jnp.float32)
        x0 = agent.policy_noise(start_key, s0)
        values = agent.apply("value", params, s0, x0, jnp.zeros((3, 1)))
        np.testing.assert_allclose(record["episodes"]["v"], np.asarray(values).mean(axis=0), rtol=1e-5)


def bias_record(q: float, returns: float, std: float = 0.2, n: int = 10, v: float | None = None) -> dict:
    record = {"n": n, "return_mean": returns, "truncated_share": 0.5, "aggregation": "mean", "discount": 0.99,
              "q_mean": q, "q_bias_mean": q - returns, "q_bias_std": std}  # fmt: skip
    if v is not None:
        record |= {"v_mean": v, "v_bias_mean": v - returns, "v_bias_std": std}
    return record


def test_an_arms_bias_is_the_mean_of_its_seeds_with_a_t_interval_over_seeds():
    seeds = [bias_record(1.0, 0.5), bias_record(1.4, 0.6), bias_record(0.9, 0.7)]
    pooled = pool(seeds)
    biases = np.array([0.5, 0.8, 0.2])
    half = scipy.stats.t.ppf(0.975, 2) * biases.std(ddof=1) / math.sqrt(3)
    assert pooled.bias == pytest.approx(biases.mean()) and pooled.seeds == 3 and pooled.episodes == 30
    assert (pooled.low, pooled.high) == pytest.approx((biases.mean() - half, biases.mean() + half)), pooled
    assert pooled.value_mean == pytest.approx(1.1) and pooled.return_mean == pytest.approx(0.6)
    single = pool([bias_record(1.0, 0.5, std=0.4, n=16)])
    assert single.high - single.bias == pytest.approx(1.959964 * 0.4 / 4), "one seed: normal over its episodes"
    assert pool(seeds, "v") is None, "no record holds V"


def test_a_seed_record_keeps_the_value_bias_without_its_episodes(tmp_path):
    summary = bias_record(1.0, 0.5)
    final = {"reward_in_support": 0.5, "value_bias": {**summary, "episodes": {"q": [1.0], "return": [0.5]}}}
    cost = {"gflop_per_update": 0.1, "peak_memory_mb": 1.0}
    timing = {"compile_s": 1.0, "train_s": 1.0, "eval_s": 0.0, "wall_s": 2.0, "ms_per_update": 1.0}
    history = [{"step": 10, "reward_in_support": 0.5}]
    result = {"final": final, "eval_history": history, "nfe_per_solve": 10, "cost": cost, "timing": timing}
    record = records.seed_record(0, result, "reward_in_support", 1, tmp_path / "run", tmp_path)
    assert record.value_bias == summary and "value_bias" not in record.final
    assert records.from_json(records.to_json(record)) == record


def test_the_report_tables_each_arms_value_bias_and_draws_it(tmp_path):
    study = tiny_study(agents=("qflow",), tasks=("moons",))
    results = {}
    for cell, q in zip(study.cells(), (1.0, 2.0), strict=True):
        seeds = {0: bias_record(q, 0.5, v=0.4), 1: bias_record(q + 0.4, 0.7, v=0.6)}
        results[cell_key(cell)] = CellResult(cell, value_bias=seeds)
    block = ValueBiasSection().build(ReportData(study, results, out=tmp_path))
    table = block.parts[1].table
    assert table.header[:4] == ["value", "mean value", "mean return", "mean bias [95% CI]"]
    rows = [(row.label, [entry.text for entry in row.entries]) for row in table.rows]
    half = scipy.stats.t.ppf(0.975, 1) * np.std([0.5, 0.7], ddof=1) / math.sqrt(2)
    expected = ["Q(s0, a0), mean of the ensemble", "1.200", "0.600", f"0.600 [{0.6 - half:.3f}, {0.6 + half:.3f}]",
                "50%", "2 (20)"]  # fmt: skip
    assert rows[0] == ("moons / Euler (Default)", expected), (rows[0], expected)
    v_row = ["V(s0, x0, 0)", "0.500", "0.600", "-0.100 [-0.100, -0.100]"]
    assert rows[1][0] == "moons / Euler (Default)" and rows[1][1][:4] == v_row, rows[1]
    assert rows[2][0] == "moons / RK4" and rows[2][1][3].startswith("1.600 ["), rows[2]
    assert (tmp_path / "value_bias.png").read_bytes()[:4] == b"\x89PNG" and block.parts[-1].file == "value_bias.png"
    assert not ValueBiasSection().applies(ReportData(study, {k: CellResult(r.cell) for k, r in results.items()}))

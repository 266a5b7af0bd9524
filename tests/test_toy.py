"""The 2D bandits: data as the Q-Flow paper describes it, and evaluation metrics that tell policies apart."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flowkit.tasks import load_task
from flowkit.tasks.toy import SCALE, TOY_TASKS, toy_points


@pytest.mark.parametrize("name", TOY_TASKS)
def test_datasets_have_ten_thousand_points_in_the_box_with_rewards(name):
    points, rewards = toy_points(name)
    assert points.shape == (10_000, 2) and rewards.shape == (10_000,)
    assert np.abs(points).max() <= 4.0 and rewards.min() >= 0.0
    task = load_task(name)
    assert float(jnp.abs(task.dataset.actions).max()) <= 1.0
    assert float(task.dataset.masks.max()) == 0.0, "a bandit's transitions are all terminal"


def test_eight_gaussians_rewards_are_mode_indices_and_the_rare_best_mode_is_rare():
    _, rewards = toy_points("eight-gaussians")
    np.testing.assert_allclose(np.unique(rewards), np.arange(8) / 7, rtol=1e-6)
    _, rare = toy_points("eight-gaussians-rare")
    assert 0.015 < (rare == 1.0).mean() < 0.025


@pytest.mark.slow
def test_evaluation_tells_a_faithful_sampler_from_a_collapsed_one():
    task = load_task("two-spirals")
    points, rewards = toy_points("two-spirals")

    def faithful(observations, key):
        return jnp.asarray(points)[jax.random.randint(key, (observations.shape[0],), 0, len(points))] / SCALE

    def collapsed(observations, key):
        return jnp.broadcast_to(jnp.asarray(points[np.argmin(np.abs(points).sum(1))]) / SCALE, (len(observations), 2))

    good = task.evaluate(faithful, jax.random.PRNGKey(0), 2000)
    bad = task.evaluate(collapsed, jax.random.PRNGKey(0), 2000)
    assert good["support"] == 1.0 and bad["support"] == 1.0, "both put every sample on a data point"
    assert good["energy_distance"] < 0.01 < 0.5 < bad["energy_distance"], (good, bad)
    assert abs(good["reward_mean"] - rewards.mean()) < 0.03, (good, rewards.mean())

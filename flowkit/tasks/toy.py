"""The 2D bandits of the Q-Flow paper's toy experiments: 10,000 points in [-4, 4]^2, each with a reward.

A bandit has no state and a single step: the observation is a constant 1 (a constant 0 would leave networks
whose only input it is with nothing but their biases), every transition is terminal (mask 0), so the critic
regresses Q(a) onto R(a). Actions are the points divided by 4, so that they lie in
[-1, 1]^2 like every action in the kit.

Evaluation draws `episodes` actions from the policy (one action is one episode). Rewards are known only on
the data, so a sample is scored through its nearest data point, at distance d (in the [-4, 4] coordinates):
- support: the share of samples on the data's support, d <= delta, where delta is the 99th percentile of the
  data's own leave-one-out nearest-neighbour distances, so that 99% of the data points themselves count as near.
- reward_in_support (the score): the mean over samples of the nearest data point's reward, a sample off the
  support (d > delta) earning 0. An offline policy is scored on what the data shows; one that leaves the data
  in the direction of high reward (as an over-optimistic critic invites) is not rewarded for it.
- reward_mean: the same without the support condition, which extends the reward beyond the data and so
  scores a policy that leaves the data as well as one that stays on it; kept for comparison, by name.
- energy_distance (lower is better): 2 E|X - Y| - E|X - X'| - E|Y - Y'| between the samples X and a fixed
  subsample of 2000 data points Y, zero only when the distributions agree. The measure of how well a
  behaviour-cloning policy reproduces the data: `support` alone rewards a policy that collapses onto one
  dense point of the data.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import scipy.spatial

from flowkit.settings import Source
from flowkit.tasks import Declared, Episodes, Policy, Task, as_device_arrays

SCALE = 4.0
"""Points live in [-SCALE, SCALE]^2; actions are points / SCALE."""
DATASET_SIZE = 10_000
SAMPLE_REWARDS = "sample_rewards"
"""Each sample's reward_in_support (the one-step episode's reward), which evaluation keeps per sample."""
DATASET_SEED = 0
"""The offline dataset is fixed; run seeds vary training, not data."""
SUPPORT_QUANTILE = 0.99
SAMPLES = "samples.npy"
"""The file in a run folder with the trained policy's samples (for reports' figures)."""
REFERENCE_POINTS = 2000
"""Data points the energy distance compares samples with (a fixed subsample)."""


def eight_gaussians(rng: np.random.Generator, n: int, best_share: float = 1 / 8) -> tuple[np.ndarray, np.ndarray]:
    """8 modes on a circle of radius 4, sigma 0.5, all scaled by 1/sqrt(2); reward = mode index / 7.

    `best_share` is the share of points in the best mode (index 7); the others share the rest equally.
    """
    mode = rng.choice(8, size=n, p=[(1 - best_share) / 7] * 7 + [best_share])
    angle = 2 * np.pi * mode / 8
    centers = 4.0 * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    points = (centers + 0.5 * rng.standard_normal((n, 2))) / np.sqrt(2)
    return points, mode / 7.0


def moons(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two moons (noise 0.1) scaled by 2 and shifted by (-1, -0.2); reward 1 on the upper moon, 0 on the other."""
    n_upper = n // 2
    theta_upper = np.linspace(0, np.pi, n_upper)
    theta_lower = np.linspace(0, np.pi, n - n_upper)
    upper = np.stack([np.cos(theta_upper), np.sin(theta_upper)], axis=1)
    lower = np.stack([1 - np.cos(theta_lower), 0.5 - np.sin(theta_lower)], axis=1)
    points = np.concatenate([upper, lower]) + 0.1 * rng.standard_normal((n, 2))
    rewards = np.concatenate([np.ones(n_upper), np.zeros(n - n_upper)])
    return 2 * points + np.array([-1.0, -0.2]), rewards


def two_spirals(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals; reward clip(1 - theta / 10, 0, 1) with theta = sqrt(U) 3 pi the angle along them."""
    half = n // 2
    theta = np.sqrt(rng.uniform(size=(half, 1))) * 3 * np.pi
    arm = np.concatenate(
        [
            -np.cos(theta) * theta + 0.5 * rng.uniform(size=(half, 1)),
            np.sin(theta) * theta + 0.5 * rng.uniform(size=(half, 1)),
        ],
        axis=1,
    )
    points = np.concatenate([arm, -arm]) / 3 + 0.1 * rng.standard_normal((2 * half, 2))
    rewards = np.clip(1 - np.concatenate([theta, theta])[:, 0] / 10, 0, 1)
    return points, rewards


def swiss_roll(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The swiss roll (noise 1), dimensions 0 and 2, scaled by 1/5; reward ||x||^2 / 9."""
    t = 1.5 * np.pi * (1 + 2 * rng.uniform(size=n))
    points = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + rng.standard_normal((n, 2))
    points = points / 5
    return points, np.sum(points**2, axis=1) / 9


def eight_gaussians_rare(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Eight gaussians whose best mode holds only 2% of the points: cloning the data rarely finds it."""
    return eight_gaussians(rng, n, best_share=0.02)


TOY_TASKS = {
    "eight-gaussians": eight_gaussians,
    "eight-gaussians-rare": eight_gaussians_rare,
    "moons": moons,
    "two-spirals": two_spirals,
    "swiss-roll": swiss_roll,
}


@functools.cache
def toy_points(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The task's fixed dataset: points clipped to [-4, 4]^2 and their rewards (float32)."""
    points, rewards = TOY_TASKS[name](np.random.default_rng(DATASET_SEED), DATASET_SIZE)
    return np.clip(points, -SCALE, SCALE).astype(np.float32), rewards.astype(np.float32)


@functools.cache
def support_radius(name: str) -> float:
    """The 99th percentile of the data's leave-one-out nearest-neighbour distances, by a k-d tree (10 ms, where
    brute force over the 10^8 pairs costs about 3 s of every worker's first trial)."""
    points, _ = toy_points(name)
    distances, _ = scipy.spatial.cKDTree(points).query(points, k=2)
    return float(np.quantile(distances[:, 1], SUPPORT_QUANTILE))


def _mean_distance(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.maximum(jnp.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1), 0.0)).mean()


@jax.jit
def _score_samples(
    samples: jax.Array, points: jax.Array, rewards: jax.Array, radius: float, reference: jax.Array
) -> dict:
    squared = jnp.sum((samples[:, None, :] - points[None, :, :]) ** 2, axis=-1)
    nearest = jnp.argmin(squared, axis=1)
    distance = jnp.sqrt(jnp.min(squared, axis=1))
    near = distance <= radius
    energy = 2 * _mean_distance(samples, reference) - _mean_distance(samples, samples)
    in_support = jnp.where(near, rewards[nearest], 0.0)
    return {
        SAMPLE_REWARDS: in_support,
        "reward_mean": rewards[nearest].mean(),
        "reward_in_support": in_support.mean(),
        "support": near.mean(),
        "energy_distance": energy - _mean_distance(reference, reference),
    }


class OneStepBandit:
    """The bandit as an environment for online fine-tuning: one action per episode, rewarded as evaluation's
    reward_in_support scores a sample (the nearest data point's reward within the support radius, else 0), so
    that leaving the data earns nothing rather than an extrapolated reward."""

    def __init__(self, points: np.ndarray, rewards: np.ndarray, radius: float):
        self.tree, self.rewards, self.radius = scipy.spatial.cKDTree(points), rewards, radius

    def reset(self, *, seed: int | None = None) -> tuple[np.ndarray, dict]:
        del seed
        return np.ones(1, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        distance, nearest = self.tree.query(SCALE * np.asarray(action, dtype=np.float64))
        reward = float(self.rewards[nearest]) if distance <= self.radius else 0.0
        return np.ones(1, np.float32), reward, True, False, {}


MEASURED = Source("kit", "measured on eight-gaussians (the comment on ToyBandit in flowkit/tasks/toy.py)")


class ToyBandit(Task):
    family = "toy"
    score_metric = "reward_in_support"
    metrics = frozenset({"reward_mean", "reward_in_support", "support", "energy_distance"})
    lower_is_better = frozenset({"energy_distance"})
    fractions = frozenset({"support"})
    # The 2D bandits are learnt in minutes by small networks; 4 x 512 networks and 1M updates would take hours on
    # a CPU. The methods' coefficients are per task in the public code (FQL's alpha from 10 to 1000); on
    # eight-gaussians (6000 updates, seed 0) these keep most samples on the data while they gain reward, where a
    # weaker constraint leaves the data: FQL alpha 5 (1 and 3 leave it, 20 and 50 stay close to behaviour
    # cloning), FBRAC alpha 3 (1 leaves it), FlowQ lambda 3 (10 and 30 leave it), ReBRAC alpha_actor 0.1 (1 and
    # 10 put its deterministic action between modes).
    real = False
    online = True
    task_defaults: ClassVar[Mapping[str, Mapping[str, Declared]]] = {
        "*": {
            "*": Declared(
                Source("kit", "bandit-sized networks and runs (minutes on a CPU)"),
                {
                    "actor_hidden": (64, 64, 64),
                    "critic_hidden": (64, 64, 64),
                    "steps": 6000,
                    "log_every": 1000,
                    "eval_every": 1000,
                    "eval_episodes": 1000,
                    "checkpoint_every": 1000,
                },
            ),
            "fql": Declared(MEASURED, {"alpha": 5.0}),
            "fbrac": Declared(MEASURED, {"alpha": 3.0}),
            "flowq": Declared(MEASURED, {"lam": 3.0}),
            "rebrac": Declared(MEASURED, {"alpha_actor": 0.1}),
            "qflow": Declared(
                Source("none", "no public value for the bandits; lam=1, the method default (the `lambda` study "
                       "sweeps it)")
            ),
        }
    }  # fmt: skip

    def __init__(self, name: str):
        points, rewards = toy_points(name)
        n = len(points)
        observations = np.ones((n, 1), dtype=np.float32)
        super().__init__(
            name,
            as_device_arrays(
                observations=observations,
                actions=points / SCALE,
                rewards=rewards,
                masks=np.zeros(n, dtype=np.float32),
                next_observations=observations,
                next_actions=points / SCALE,
            ),
        )
        self.points = jnp.asarray(points)
        self.rewards = jnp.asarray(rewards)
        self.radius = support_radius(name)
        subsample = np.random.default_rng(DATASET_SEED).choice(n, size=min(REFERENCE_POINTS, n), replace=False)
        self.reference = jnp.asarray(points[subsample])

    def environment(self) -> OneStepBandit:
        points, rewards = toy_points(self.name)
        return OneStepBandit(points, rewards, self.radius)

    def sample_actions(self, policy: Policy, key: jax.Array, episodes: int) -> jax.Array:
        return policy(jnp.ones((episodes, 1), jnp.float32), key)

    def record(self, policy: Policy, key: jax.Array, run_dir: Path) -> None:
        """samples.npy: 1000 of the trained policy's actions, in the points' [-4, 4] coordinates."""
        np.save(run_dir / SAMPLES, np.asarray(SCALE * self.sample_actions(policy, key, 1000)))

    def evaluate(self, policy: Policy, key: jax.Array, episodes: int) -> dict[str, float]:
        return self.evaluate_episodes(policy, key, episodes)[0]

    def evaluate_episodes(self, policy: Policy, key: jax.Array, episodes: int) -> tuple[dict[str, float], Episodes]:
        """Each sample is a one-step episode that ends in a terminal state, rewarded as OneStepBandit rewards it."""
        actions = self.sample_actions(policy, key, episodes)
        scores = _score_samples(SCALE * actions, self.points, self.rewards, self.radius, self.reference)
        rewards = np.asarray(scores.pop(SAMPLE_REWARDS), dtype=float)
        observations = np.ones((episodes, 1), np.float32)
        never_truncated = np.zeros(episodes, bool)
        metrics = {name: float(value) for name, value in scores.items()}
        return metrics, Episodes(
            observations, np.asarray(actions), tuple(rewards[:, None]), never_truncated, observations
        )

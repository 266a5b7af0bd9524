"""One run's compiled pieces: its agent and task, its training chunk, the acting policy and the evaluation.

Every evaluation of a flow method with a critic also probes the consistency of its value along the flow; the final
evaluation of a method with a critic, on a task that keeps its episodes, holds its value of each episode's start
against the episode's discounted return (the value bias).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowkit._backend import device_memory_bytes, use_compilation_cache
from flowkit.agents import Agent, TrainState, make_agent
from flowkit.agents.base import Params
from flowkit.agents.common import CONSISTENCY_STATES, flow_value_gaps, onestep_tradeoff, start_values
from flowkit.run_config import RunConfig
from flowkit.settings import ConfigError
from flowkit.tasks import Episodes, Task, load_task
from flowkit.training.chunk import Chunk, compiled_chunk


@dataclass
class CompiledRun:
    """One run's compiled pieces: the agent, its task, the acting policy and the consistency probe."""

    config: RunConfig
    task: Task
    agent: Agent

    def __post_init__(self) -> None:
        self._act = jax.jit(self.agent.act)
        self._gaps = jax.jit(lambda params, s, noise: flow_value_gaps(self.agent, params, s, noise))
        self._tradeoff = jax.jit(lambda params, s, noise: onestep_tradeoff(self.agent, params, s, noise))
        self._start_values = jax.jit(lambda params, s, a, noise: start_values(self.agent, params, s, a, noise))

    @classmethod
    def create(cls, config: RunConfig, task: Task | None = None) -> CompiledRun:
        use_compilation_cache()
        task = task or load_task(config.task)
        return cls(config, task, make_agent(config, task.obs_dim, task.action_dim))

    def check_fits(self) -> None:
        """Refuse settings whose memory cannot fit in the device's, before anything is compiled or written. A lower
        bound of what an update holds: the parameters with their gradients and Adam's two moments, and the
        minibatch's inputs with one activation per layer of every network; an evaluation holds the parameters and
        the same per row for its episodes (a bandit evaluates them all at once)."""
        train = self.config.train
        models = self.agent.models.values()
        widths = [v.shape[-1] for model in models for v in model.trainable_variables if v.ndim == 2]
        per_sample = 4 * (sum(widths) + 2 * (self.agent.obs_dim + self.agent.action_dim))
        params = 4 * sum(int(np.prod(v.shape)) for model in models for v in model.trainable_variables)
        device, available = device_memory_bytes()
        limits = (("batch_size", self.agent.config.batch_size, 4 * params, "one minibatch", "a batch"),
                  ("eval_episodes", train.eval_episodes, params, "one evaluation", "fewer episodes"))  # fmt: skip
        for name, rows, state, what, allowed in limits:
            needed = state + rows * per_sample
            if needed > available:
                raise ConfigError(
                    f"{name}: {rows} needs at least {needed / 2**30:,.1f} GiB for {what} and its activations, and "
                    f"the {device} has {available / 2**30:,.1f} GiB; allowed: {allowed} that fits (this lower bound, "
                    f"with these networks' parameters, admits at most {max(0, available - state) // per_sample:,})"
                )

    def compiled_chunk(self, state: TrainState, data_key: jax.Array, *, vectorized: bool = False) -> Chunk:
        """The training chunk compiled for these shapes (kept and stored: chunk.compiled_chunk); `vectorized`
        maps it over a leading seed axis of the state and key, the dataset and coefficients shared."""
        return compiled_chunk(self.agent, self.config.train, self.task.dataset, state, data_key, vectorized)

    @property
    def probes_consistency(self) -> bool:
        return {"flow", "critic"} <= set(self.agent.models)

    @property
    def probes_tradeoff(self) -> bool:
        """A one-step policy distilled from a flow under a critic (FQL): where alpha puts it is measurable."""
        return {"flow", "onestep", "critic"} <= set(self.agent.models)

    @property
    def probes_value_bias(self) -> bool:
        """A method with a critic: its value of an episode's start can be held against the episode's return."""
        return "critic" in self.agent.models

    def policy(self, params: Params) -> Callable[[jax.Array, jax.Array], jax.Array]:
        return lambda observations, key: self._act(params, observations, key)

    def evaluate(self, params: Params, key: jax.Array, final: bool = False) -> dict[str, Any]:
        """The task's metrics; for flow methods with a critic, the value gaps along the flow per tau; at the `final`
        evaluation, where the task keeps its episodes, the value bias of a method with a critic."""
        policy_key, probe_key = jax.random.split(key)
        episodes = self.config.train.eval_episodes
        metrics, rollouts = self.task.evaluate_episodes(self.policy(params), policy_key, episodes)
        if final and rollouts is not None and self.probes_value_bias:
            metrics["value_bias"] = self.value_bias(params, rollouts, jax.random.fold_in(probe_key, 2))
        if self.probes_consistency:
            metrics["consistency"] = consistency_record(self.consistency_gaps(params, probe_key))
        if self.probes_tradeoff:
            metrics.update(self.tradeoff(params, jax.random.fold_in(probe_key, 1)))
        return metrics

    def tradeoff(self, params: Params, key: jax.Array, states: int = CONSISTENCY_STATES) -> dict[str, float]:
        """The one-step policy's trade-off (common.onestep_tradeoff) on the data's observations, each with its noise."""
        index_key, noise_key = jax.random.split(key)
        observations = self.task.dataset.sample(index_key, states).observations
        noise = jax.random.normal(noise_key, (states, self.agent.action_dim))
        return {name: float(value) for name, value in self._tradeoff(params, observations, noise).items()}

    def value_bias(self, params: Params, episodes: Episodes, key: jax.Array) -> dict[str, Any]:
        """Per episode, the critic's Q(s0, a0) (and V(s0, x0, 0) where the method learns one, at a fresh x0) against
        the discounted return from step 0; an episode the time limit cut gets gamma^T Q(s_T, a_T) added, a_T the
        policy's action at its last observation, since the critic values an episode without a time limit."""
        discount = float(self.agent.config.discount)
        start_key, end_key = jax.random.split(key)
        s0 = jnp.asarray(episodes.first_observations, jnp.float32)
        values = self._start_values(
            params, s0, jnp.asarray(episodes.first_actions), self.agent.policy_noise(start_key, s0)
        )
        s_end = jnp.asarray(episodes.last_observations, jnp.float32)
        end_actions = self._act(params, s_end, end_key)
        end_q = self._start_values(params, s_end, end_actions, self.agent.policy_noise(end_key, s_end))["q"]
        bootstrap = np.where(episodes.truncated, discount**episodes.lengths * np.asarray(end_q, float), 0.0)
        returns = episodes.discounted_returns(discount) + bootstrap
        return value_bias_record(
            {name: np.asarray(value, float) for name, value in values.items()}, returns, bootstrap, episodes.truncated
        ) | {"aggregation": self.agent.actor_q_agg, "discount": discount}

    def consistency_gaps(self, params: Params, key: jax.Array, states: int = CONSISTENCY_STATES) -> jax.Array:
        """Value gaps (K + 1, states) along the policy's flow from the data's observations, each with its noise."""
        index_key, noise_key = jax.random.split(key)
        observations = self.task.dataset.sample(index_key, states).observations
        noise = jax.random.normal(noise_key, (states, self.agent.action_dim))
        return self._gaps(params, observations, noise)


def consistency_record(gaps: jax.Array) -> dict[str, Any]:
    """Value gaps of shape (K + 1, states) as an evaluation records them: per tau, mean, std and count."""
    gaps = np.asarray(gaps, dtype=float)
    return {
        "tau": np.linspace(0, 1, len(gaps)).tolist(),
        "mean": gaps.mean(axis=1).tolist(),
        "std": gaps.std(axis=1, ddof=1).tolist(),
        "n": gaps.shape[1],
    }


def value_bias_record(
    values: dict[str, np.ndarray], returns: np.ndarray, bootstrap: np.ndarray, truncated: np.ndarray
) -> dict[str, Any]:
    """The value bias as an evaluation records it: per episode, each value, the return and its bootstrap term;
    per value, the means of it and of its bias (value - return) and the bias' sample std."""
    record: dict[str, Any] = {
        "episodes": {
            **{name: value.tolist() for name, value in values.items()},
            "return": returns.tolist(),
            "bootstrap": bootstrap.tolist(),
            "truncated": np.asarray(truncated, bool).tolist(),
        },
        "n": len(returns),
        "return_mean": float(returns.mean()),
        "truncated_share": float(np.mean(truncated)),
    }
    for name, value in values.items():
        bias = value - returns
        record[f"{name}_mean"] = float(value.mean())
        record[f"{name}_bias_mean"] = float(bias.mean())
        record[f"{name}_bias_std"] = float(bias.std(ddof=1)) if len(bias) > 1 else 0.0
    return record

"""Online fine-tuning after offline training, as the public FQL main.py (`--online_steps`) does it.

The replay buffer starts as the offline dataset and grows by every transition the policy makes; each environment
step is followed by one update on a minibatch drawn uniformly from the whole buffer, with the same losses and
coefficients as offline. The policy acts with its own noise (Agent.explore), episodes reset when the environment
ends them, and evaluations and checkpoints keep the offline schedule, counted over offline and online steps.

The buffer lives on the device at its final size (dataset + online_steps rows) and a step writes one row, so
the step compiles once. A checkpoint stores only the online transitions (BUFFER, beside checkpoint.npz); a
resumed run rebuilds the buffer from the dataset and them, and restores the environment mid-episode by
resetting it with the episode's seed and replaying the episode's stored actions (the simulators are
deterministic), so that it equals an uninterrupted run.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from flowkit import runs
from flowkit._backend import stored_executable
from flowkit.agents import Agent, TrainState
from flowkit.tasks import Environment, Transitions
from flowkit.training.chunk import coefficient_arrays, program_key
from flowkit.training.compiled_run import CompiledRun
from flowkit.training.seed_run import SeedRun

BUFFER = "online_buffer.npz"
"""The online transitions of a checkpointed run (observations, actions, rewards, masks, next observations, ends)."""
ACTION_STREAM, RESET_STREAM = 3, 4
"""fold_in tags of the exploration actions' keys and the episodes' reset seeds, apart from the other streams."""
STORED = ("observations", "actions", "rewards", "masks", "next_observations", "ends")


def sample_rows(buffer: Transitions, size: jax.Array, key: jax.Array, batch_size: int) -> Transitions:
    """A minibatch drawn uniformly, with replacement, from the buffer's first `size` rows (dataset and online)."""
    index = jax.random.randint(key, (batch_size,), 0, size)
    return jax.tree.map(lambda column: column[index], buffer)


def make_online_update(agent: Agent, batch_size: int, term_grad_norms: bool):
    """(state, buffer, size, data_key, coefficients) -> (state, data_key, metrics): one update on a minibatch
    drawn uniformly from the buffer's first `size` rows, as the public ReplayBuffer samples."""

    def update(state, buffer, size, data_key, coefficients):
        data_key, batch_key = jax.random.split(data_key)
        batch = sample_rows(buffer, size, batch_key, batch_size)
        state, metrics = agent.with_coefficients(coefficients).update(state, batch, term_grad_norms)
        return state, data_key, metrics

    return update


@functools.partial(jax.jit, donate_argnums=0)
def add_transition(buffer: Transitions, size: jax.Array, transition: Transitions, continues: jax.Array) -> Transitions:
    """Write the transition into row `size` and, if it continues the previous row's episode, its action as that
    row's next action (ReBRAC's critic penalty)."""
    previous = jnp.maximum(size - 1, 0)
    kept = buffer.next_actions[previous]
    buffer = buffer._replace(
        next_actions=buffer.next_actions.at[previous].set(jnp.where(continues, transition.actions, kept))
    )
    return jax.tree.map(lambda column, value: column.at[size].set(value), buffer, transition)


_kept_updates: dict[str, jax.stages.Compiled] = {}


def compiled_update(compiled: CompiledRun, arguments: tuple) -> jax.stages.Compiled:
    """The online update compiled for these shapes, kept for the process's later runs and stored for other
    processes (a resumed run) under the chunk's key of the program."""
    agent, train = compiled.agent, compiled.config.train
    key = repr(("online-update", *program_key(agent, train, arguments, False)))
    if key not in _kept_updates:
        update = make_online_update(agent, agent.config.batch_size, train.term_grad_norms)
        compile_ = lambda: jax.jit(update, donate_argnums=0).lower(*arguments).compile()  # noqa: E731
        _kept_updates.clear()
        _kept_updates[key] = stored_executable(key, compile_)
    return _kept_updates[key]


def reset_seed(seed: int, episode: int) -> int:
    """The reset seed of the run's `episode`-th online episode."""
    return int(np.random.SeedSequence([seed, RESET_STREAM, episode]).generate_state(1)[0])


def summarize(history: list[dict[str, jax.Array]]) -> tuple[dict[str, float], int]:
    """A chunk's per-update metrics as the offline chunk summarises them (means, maxima of gradient norms) and
    the index of the first update with a non-finite metric (-1 if none)."""
    columns = {name: np.asarray([values[name] for values in history], dtype=float) for name in history[0]}
    summary = {name: float(values.mean()) for name, values in columns.items()}
    summary.update({f"{name}_max": float(values.max()) for name, values in columns.items() if name.startswith("grad_")})
    bad = np.any([~np.isfinite(values) for values in columns.values()], axis=0)
    return summary, int(np.argmax(bad)) if bad.any() else -1


@dataclass
class Episodes:
    """The current episode and the episodes finished since the last chunk was logged."""

    count: int = 0
    observation: np.ndarray | None = None
    """The observation to act on; None when the next step starts a new episode."""
    steps: int = 0
    return_: float = 0.0
    finished: list[tuple[float, float | None]] = field(default_factory=list)
    """(return, success) of each episode finished since the last log."""

    def end(self, info: dict[str, Any]) -> None:
        success = float(info["success"]) if "success" in info else None
        self.finished.append((self.return_, success))
        self.count, self.observation, self.steps, self.return_ = self.count + 1, None, 0, 0.0

    def metrics(self) -> dict[str, float]:
        """The finished episodes' count, mean return and success (the public code's exploration metrics)."""
        finished, self.finished = self.finished, []
        if not finished:
            return {"exploration/episodes": 0.0}
        returns = [r for r, _ in finished]
        metrics = {"exploration/episodes": float(len(finished)), "exploration/return": float(np.mean(returns))}
        successes = [s for _, s in finished if s is not None]
        if successes:
            metrics["exploration/success"] = float(np.mean(successes))
        return metrics


class OnlinePhase:
    """One seed's online fine-tuning: its environment, replay buffer and compiled step."""

    def __init__(self, compiled: CompiledRun, run: SeedRun):
        self.compiled, self.run = compiled, run
        self.offline_steps = compiled.config.train.steps
        self.env: Environment = compiled.task.environment()
        self.episodes = Episodes()
        dataset = compiled.task.dataset
        self.offline_size = int(dataset.rewards.shape[0])
        capacity = compiled.config.train.online_steps
        grown = lambda column: jnp.concatenate([column, jnp.zeros((capacity, *column.shape[1:]), column.dtype)])  # noqa: E731
        self.buffer = jax.tree.map(grown, dataset)
        self.size = self.offline_size
        self.ends = np.zeros(capacity, dtype=bool)
        self._explore = jax.jit(compiled.agent.explore)
        self._coefficients = coefficient_arrays(compiled.agent.config)
        self._update: jax.stages.Compiled | None = None
        self._action_key = jax.random.fold_in(run.seed_key, ACTION_STREAM)
        if run.progress.step > self.offline_steps:
            self._restore(run.run_dir / BUFFER, run.progress.step - self.offline_steps)

    @property
    def online_count(self) -> int:
        return self.size - self.offline_size

    def train_chunk(self, state: TrainState, data_key: jax.Array, start: int, length: int):
        """`length` environment steps, each followed by one update; the state, data key, summary and first bad."""
        history = []
        for step in range(start + 1, start + length + 1):
            state, data_key, metrics = self.env_step(state, data_key, step)
            history.append(metrics)
        summary, first_bad = summarize(jax.device_get(history))
        summary.update(self.episodes.metrics(), **{"online/buffer_size": float(self.size)})
        return state, data_key, summary, first_bad

    def env_step(self, state: TrainState, data_key: jax.Array, step: int):
        """Act in the environment (resetting it if the last episode ended), store the transition, update once."""
        episodes = self.episodes
        continues = episodes.observation is not None
        if not continues:
            episodes.observation, _ = self.env.reset(seed=reset_seed(self.run.config.seed, episodes.count))
        observation = np.asarray(episodes.observation, np.float32)
        key = jax.random.fold_in(self._action_key, step)
        action = np.asarray(self._explore(state.params, observation[None], key))[0]
        next_observation, reward, terminated, truncated, info = self.env.step(action.copy())
        transition = Transitions(
            observations=observation,
            actions=action,
            rewards=np.float32(reward),
            masks=np.float32(1.0 - terminated),
            next_observations=np.asarray(next_observation, np.float32),
            next_actions=action,
        )
        self.buffer = add_transition(self.buffer, jnp.int32(self.size), transition, jnp.bool_(continues))
        self.ends[self.online_count] = terminated or truncated
        self.size += 1
        arguments = (state, self.buffer, jnp.int32(self.size), data_key, self._coefficients)
        self._update = self._update or compiled_update(self.compiled, arguments)
        state, data_key, metrics = self._update(*arguments)
        episodes.observation, episodes.steps = next_observation, episodes.steps + 1
        episodes.return_ += reward
        if terminated or truncated:
            episodes.end(info)
        return state, data_key, metrics

    def save(self) -> None:
        """Store the online transitions beside the checkpoint (written first: a later checkpoint.npz never refers
        to transitions that are not stored)."""
        rows = slice(self.offline_size, self.size)
        columns = jax.device_get({name: getattr(self.buffer, name)[rows] for name in STORED if name != "ends"})
        stream = io.BytesIO()
        np.savez(stream, ends=self.ends[: self.online_count], **columns)
        runs.write_atomic(self.run.run_dir / BUFFER, stream.getvalue())

    def _restore(self, path: Path, count: int) -> None:
        """Rebuild the buffer from the stored transitions of the first `count` online steps (a file written at a
        later step than the checkpoint holds more), then the environment's current episode."""
        with np.load(path) as stored:
            columns = {name: stored[name][:count] for name in STORED}
        ends = columns.pop("ends")
        follows = np.append(~ends[:-1], False)[:, None]
        next_actions = np.where(follows, np.roll(columns["actions"], -1, axis=0), columns["actions"])
        rows = slice(self.offline_size, self.offline_size + count)
        self.buffer = jax.tree.map(
            lambda column, values: column.at[rows].set(values), self.buffer, Transitions(**columns,
                                                                                       next_actions=next_actions)
        )  # fmt: skip
        self.size += count
        self.ends[:count] = ends
        self._replay_episode(columns, ends)

    def _replay_episode(self, columns: dict[str, np.ndarray], ends: np.ndarray) -> None:
        """Bring the environment to where the checkpointed run left it: reset with the unfinished episode's seed and
        step its stored actions."""
        episodes = self.episodes
        episodes.count = int(ends.sum())
        first = int(np.flatnonzero(ends)[-1]) + 1 if ends.any() else 0
        if first == len(ends):
            return
        self.env.reset(seed=reset_seed(self.run.config.seed, episodes.count))
        for action in columns["actions"][first:]:
            observation, reward, *_ = self.env.step(action.copy())
            episodes.return_ += reward
        episodes.observation, episodes.steps = observation, len(ends) - first
        if not np.allclose(observation, columns["next_observations"][-1], atol=1e-5):
            raise RuntimeError("the environment replayed from the checkpoint's actions diverged from the stored run")

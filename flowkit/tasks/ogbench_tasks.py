"""OGBench tasks: datasets loaded through ogbench itself, policies evaluated in its environments.

Single-task names (FQL's setting, e.g. cube-single-play-singletask-task2-v0) get their rewards and masks from
OGBench's own relabelling (reward = successes - objects, mask = 0 once every object is in place);
goal-conditioned names (the dataset's own name, e.g. cube-single-play-v0) pair each state with a goal drawn
from a later state of the same trajectory, for goal-conditioned behaviour cloning. Dataset actions are clipped
to [-1 + 1e-5, 1 - 1e-5] as in the public FQL code, so that a flow's targets stay inside the action box.

Files are read from the data dir (FLOWKIT_DATA_DIR, else OGBench's own ~/.ogbench/data, so official files a
user already has are found); `flowkit data generate` makes them. Evaluation steps one environment per episode
in lockstep, so the policy is called once per step on all episodes' observations (one compiled shape).
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Mapping
from functools import cache
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowkit.settings import Source
from flowkit.tasks import (
    FQL_README,
    GFP_REBRAC,
    NOT_RETRIEVED,
    QFLOW_PARAMS,
    DatasetError,
    Declared,
    Episodes,
    Policy,
    Task,
    Transitions,
    clip_actions,
    data_dir,
)
from flowkit.tasks.ogbench_generate import (
    RECIPES,
    check_dataset_file,
    dataset_paths,
    generate_command,
    import_ogbench,
    make_env,
)

SINGLE_TASKS = 5
"""OGBench's evaluation tasks per environment (task1 ... task5; the evaluation goals of goal-conditioned runs)."""
LOCKSTEP_ENVIRONMENTS = 10
"""Episodes an evaluation steps together at most. An OGBench environment holds 150 to 200 MB (five cube-single
environments: 1.1 GB), so the paper's 50 episodes at once would hold some 10 GB per run; ten are reused."""
DEFAULT_TASK = {"cube": 2, "scene": 2, "puzzle": 4, "pointmaze": 1}
"""The task `-singletask-v0` stands for, per environment (OGBench's registrations)."""
_SINGLE_TASK = re.compile(r"^(?P<dataset>.+)-singletask(?:-task(?P<task>\d))?-(?P<version>v\d+)$")


def split_name(name: str) -> tuple[str, int | None]:
    """A task name's dataset and its single-task number (None for a goal-conditioned task)."""
    match = _SINGLE_TASK.match(name)
    if match is None:
        return name, None
    dataset = f"{match['dataset']}-{match['version']}"
    task = match["task"]
    return dataset, int(task) if task else DEFAULT_TASK[dataset.split("-")[0]]


def environment_name(name: str) -> str:
    """The Gymnasium id OGBench registers for a task name (the dataset type removed)."""
    dataset, _ = split_name(name)
    env = RECIPES[dataset].env_name.removesuffix("-v0")
    return f"{env}-singletask-task{split_name(name)[1]}-v0" if name != dataset else f"{env}-v0"


@cache
def _spaces(env_id: str) -> tuple[int, int]:
    env = make_env(env_id)
    sizes = env.observation_space.shape[-1], env.action_space.shape[-1]
    env.close()
    return sizes


def fourier(width: int) -> dict[str, Any]:
    """Q-Flow's time input in the public per-domain configuration: `width` Fourier features (use_time_embed)."""
    return {"time_features": "fourier", "time_embed_dim": width}


class OGBenchTask(Task):
    """Common to single-task and goal-conditioned OGBench tasks: finding, checking and loading the files."""

    family = "ogbench"
    # OGBench runs keep the methods' paper-sized defaults. Per-dataset values are the public codes' for the play
    # datasets, applied to the same environment's noisy datasets too (no source gives values for those).
    task_defaults: ClassVar[Mapping[str, Mapping[str, Declared]]] = {
        "*": {
            "rebrac": Declared(
                Source(
                    "none",
                    NOT_RETRIEVED + "; the FQL paper's only public ReBRAC values are "
                    "for humanoidmaze-medium (alpha_actor=0.01 alpha_critic=0.01, README line "
                    "234), not a kit task",
                )
            ),
            "fbrac": Declared(
                Source(
                    "none",
                    NOT_RETRIEVED + "; value-flows README: its FBRAC reuses those "
                    "numbers; QAM's sweep (cube-double alpha=0.1) uses another protocol",
                )
            ),
            "ifql": Declared(
                Source(
                    "paper",
                    "FQL README lines 236, 242 (IFQL examples): num_samples=32, the "
                    "method default; other per-task values: " + NOT_RETRIEVED,
                )
            ),
            "flowq": Declared(Source("none", "FlowQ's code is not public (the kit's FlowQ is a reconstruction)")),
        },
        "cube": {
            "fql": Declared(
                Source("paper", FQL_README + " lines 96, 98, 141-151 (cube-single, cube-double)"), {"alpha": 300.0}
            )
        },
        "cube-single": {
            "qflow": Declared(
                Source("paper", QFLOW_PARAMS + ' "cube-single-play": alpha=5, time_embed_dim=64'),
                {"lam": 1 / 5, **fourier(64)},
            )
        },
        "cube-double": {
            "qflow": Declared(
                Source("paper", QFLOW_PARAMS + ' "cube-double-play": alpha=2, time_embed_dim=16'),
                {"lam": 1 / 2, **fourier(16)},
            )
        },
        "scene": {
            "fql": Declared(Source("paper", FQL_README + " lines 100, 153-157"), {"alpha": 300.0}),
            "qflow": Declared(
                Source("paper", QFLOW_PARAMS + ' "scene-play": alpha=5, time_embed_dim=64'),
                {"lam": 1 / 5, **fourier(64)},
            ),
        },
        "puzzle": {
            "fql": Declared(
                Source("paper", FQL_README + " lines 102, 104, 159-169 (puzzle-3x3, puzzle-4x4)"), {"alpha": 1000.0}
            ),
            "qflow": Declared(
                Source(
                    "paper",
                    QFLOW_PARAMS + ' "puzzle-3x3-play", "puzzle-4x4-play": alpha=20, q_agg=min, time_embed_dim=64',
                ),
                {"lam": 1 / 20, "q_agg": "min", **fourier(64)},
            ),
        },
        "pointmaze": {
            "*": Declared(
                Source(
                    "none",
                    "no source runs these methods on pointmaze (FQL and Q-Flow use "
                    "antmaze, humanoidmaze, antsoccer, cube, scene, puzzle)",
                )
            )
        },
    }
    presets: ClassVar[Mapping[str, Mapping[str, Mapping[str, Declared]]]] = {
        "gfp": {
            "cube-double-play": {"rebrac": Declared(Source("other paper", GFP_REBRAC + " line 9"),
                                                    {"alpha_actor": 0.3, "alpha_critic": 0.1})},
            "scene-play": {"rebrac": Declared(Source("other paper", GFP_REBRAC + " line 19"),
                                              {"alpha_actor": 0.1, "alpha_critic": 0.001})},
            "puzzle-4x4-play": {"rebrac": Declared(Source("other paper", GFP_REBRAC + " line 17"),
                                                   {"alpha_actor": 0.1, "alpha_critic": 0.0})},
        }
    }  # fmt: skip

    @classmethod
    def check_data(cls, name: str) -> None:
        dataset, _ = split_name(name)
        folder = data_dir()
        obs_dim, action_dim = _spaces(environment_name(name))
        for path in dataset_paths(dataset, folder):
            check_dataset_file(path, obs_dim, action_dim, generate_command(dataset, folder))

    def __init__(self, name: str, dataset: Any):
        super().__init__(name, dataset)
        self.env_id = environment_name(name)
        self._envs: list[Any] = []

    def environments(self, count: int) -> list[Any]:
        """`count` evaluation environments, made once per task and reused by every evaluation."""
        while len(self._envs) < count:
            self._envs.append(make_env(self.env_id))
        return self._envs[:count]

    def run_episodes(self, policy: Policy, key: jax.Array, options: list[dict], goals: bool = False) -> Rollouts:
        """One episode per entry of `options`, in lockstep batches of at most LOCKSTEP_ENVIRONMENTS environments
        (reused batch after batch); episode i is reset with the i-th seed drawn from `key`, whatever the batch."""
        seeds = np.random.SeedSequence(np.asarray(jax.random.key_data(key), dtype=np.uint32).tolist()).generate_state(
            len(options)
        )
        envs = self.environments(min(len(options), LOCKSTEP_ENVIRONMENTS))
        batches = []
        for batch, start in enumerate(range(0, len(options), len(envs))):
            stop = min(start + len(envs), len(options))
            batch_key, batch_options = jax.random.fold_in(key, batch), options[start:stop]
            batches.append(rollout(envs[: stop - start], policy, batch_key, batch_options, seeds[start:stop], goals))
        return Rollouts(*(np.concatenate(column) for column in zip(*batches, strict=True)))

    @classmethod
    def load(cls, name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The training and validation columns of a task, as ogbench.make_env_and_datasets gives them."""
        cls.check_data(name)
        folder = data_dir()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                env, train, val = import_ogbench().make_env_and_datasets(name, dataset_dir=str(folder))
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
            dataset = split_name(name)[0]
            raise DatasetError(
                f"dataset {dataset!r} in {folder} could not be read ({type(error).__name__}: {error}); "
                f"delete its files and run: {generate_command(dataset, folder)}"
            ) from error
        env.close()
        return train, val


def transitions(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """OGBench's columns as the kit's transitions: clipped actions, and the next action within each trajectory."""
    actions = clip_actions(columns["actions"])
    ends = columns["terminals"].astype(bool)
    next_actions = np.where(ends[:, None], actions, np.roll(actions, -1, axis=0))
    return {"observations": columns["observations"], "actions": actions, "next_observations":
            columns["next_observations"], "next_actions": next_actions}  # fmt: skip


class SingleTask(OGBenchTask):
    score_metric = "success"
    metrics = frozenset({"success", "return", "episode_length"})
    fractions = frozenset({"success"})
    online = True

    def __init__(self, name: str):
        train, val = self.load(name)
        super().__init__(name, self._device(train))
        self.validation = jax.tree.map(np.asarray, self._device(val))
        """The -val split, held out from training (on the host)."""

    @staticmethod
    def _device(columns: dict[str, np.ndarray]) -> Transitions:
        return Transitions(**{key: jnp.asarray(value) for key, value in transitions(columns).items()},
                           rewards=jnp.asarray(columns["rewards"]), masks=jnp.asarray(columns["masks"]))  # fmt: skip

    def environment(self) -> Any:
        """The task's own environment (as evaluation's): its reward is the dataset's relabelled single-task reward."""
        return make_env(self.env_id)

    def evaluate(self, policy: Policy, key: jax.Array, episodes: int) -> dict[str, float]:
        return self.evaluate_episodes(policy, key, episodes)[0]

    def evaluate_episodes(self, policy: Policy, key: jax.Array, episodes: int) -> tuple[dict[str, float], Episodes]:
        rollouts = self.run_episodes(policy, key, [{}] * episodes)
        metrics = {
            "success": float(np.mean(rollouts.success)),
            "return": float(np.mean(rollouts.returns)),
            "episode_length": float(np.mean(rollouts.lengths)),
        }
        return metrics, rollouts.episodes()


class Rollouts(NamedTuple):
    """Per episode: its success and undiscounted return and length, and what the value-bias probe reads."""

    success: np.ndarray
    returns: np.ndarray
    lengths: np.ndarray
    first_observations: np.ndarray
    first_actions: np.ndarray
    rewards: np.ndarray
    """An object array holding each episode's rewards (episodes differ in length)."""
    truncated: np.ndarray
    last_observations: np.ndarray

    def episodes(self) -> Episodes:
        return Episodes(
            self.first_observations, self.first_actions, tuple(self.rewards), self.truncated, self.last_observations
        )


def rollout(
    envs: list[Any], policy: Policy, key: jax.Array, options: list[dict], seeds: np.ndarray, goals: bool = False
) -> Rollouts:
    """One episode in each environment (reset with its seed), stepped in lockstep with one policy call per step
    for all of them; each episode's first observation and action, rewards and last observation are kept.

    An episode's success is the `success` of its last step (OGBench ends an episode when the goal is reached).
    With `goals`, each observation is followed by the episode's goal observation from the reset info.
    """
    observations, goal_observations = [], []
    for env, seed, option in zip(envs, seeds, options, strict=True):
        observation, info = env.reset(seed=int(seed), options=option or None)
        observations.append(observation)
        goal_observations.append(info.get("goal"))
    count = len(envs)
    success, cut = np.zeros(count), np.zeros(count, dtype=bool)
    rewards: list[list[float]] = [[] for _ in envs]
    running = np.ones(count, dtype=bool)
    step_key, first = key, None
    while running.any():
        step_key, action_key = jax.random.split(step_key)
        inputs = np.stack(observations)
        if goals:
            inputs = np.concatenate([inputs, np.stack(goal_observations)], axis=-1)
        actions = np.asarray(policy(jnp.asarray(inputs, jnp.float32), action_key))
        first = (inputs, np.clip(actions, -1, 1)) if first is None else first
        for index in np.flatnonzero(running):
            observation, reward, terminated, truncated, info = envs[index].step(np.clip(actions[index], -1, 1))
            observations[index] = observation
            rewards[index].append(float(reward))
            if terminated or truncated:
                running[index] = False
                success[index] = float(info["success"])
                cut[index] = truncated and not terminated
    episode_rewards = np.empty(count, dtype=object)
    for index, episode in enumerate(rewards):
        episode_rewards[index] = np.array(episode)
    lengths = np.array([len(r) for r in rewards])
    returns = np.array([sum(r) for r in rewards])
    last = np.stack(observations)
    if goals:
        last = np.concatenate([last, np.stack(goal_observations)], axis=-1)
    return Rollouts(success, returns, lengths, *first, episode_rewards, cut, last)


class GoalTransitions(NamedTuple):
    """A goal-conditioned dataset: each sampled transition gets a goal from a later state of its trajectory."""

    observations: jax.Array
    actions: jax.Array
    next_observations: jax.Array
    next_actions: jax.Array
    trajectory_end: jax.Array
    """For each transition, the index of its trajectory's last transition."""

    def sample(self, key: jax.Array, batch_size: int) -> Transitions:
        """Uniform transitions, each with a goal uniform over the next observations up to its trajectory's end
        (OGBench's hindsight goals for behaviour cloning); reward 1 and mask 0 where the goal is the next state."""
        index_key, goal_key = jax.random.split(key)
        index = jax.random.randint(index_key, (batch_size,), 0, self.observations.shape[0])
        end = self.trajectory_end[index]
        goal_index = index + jnp.floor(jax.random.uniform(goal_key, (batch_size,)) * (end - index + 1)).astype(int)
        goals = self.next_observations[goal_index]
        reached = (goal_index == index).astype(jnp.float32)
        return Transitions(
            observations=jnp.concatenate([self.observations[index], goals], axis=-1),
            actions=self.actions[index],
            rewards=reached,
            masks=1.0 - reached,
            next_observations=jnp.concatenate([self.next_observations[index], goals], axis=-1),
            next_actions=self.next_actions[index],
        )


class GoalConditionedTask(OGBenchTask):
    """Reach OGBench's five evaluation goals; `episodes` episodes per goal."""

    score_metric = "success"
    metrics = frozenset({"success", *(f"success/task{task}" for task in range(1, SINGLE_TASKS + 1))})
    fractions = metrics

    def __init__(self, name: str):
        train, _ = self.load(name)
        columns = transitions(train)
        ends = np.flatnonzero(train["terminals"])
        trajectory_end = ends[np.searchsorted(ends, np.arange(len(train["terminals"])))]
        super().__init__(name, GoalTransitions(**{key: jnp.asarray(value) for key, value in columns.items()},
                                               trajectory_end=jnp.asarray(trajectory_end)))  # fmt: skip

    @property
    def obs_dim(self) -> int:
        return 2 * self.dataset.observations.shape[-1]

    def evaluate(self, policy: Policy, key: jax.Array, episodes: int) -> dict[str, float]:
        count = episodes * SINGLE_TASKS
        options = [{"task_id": 1 + index // episodes, "render_goal": False} for index in range(count)]
        success = self.run_episodes(policy, key, options, goals=True).success.reshape(SINGLE_TASKS, -1)
        metrics = {f"success/task{task + 1}": float(rate) for task, rate in enumerate(success.mean(axis=1))}
        return {"success": float(success.mean()), **metrics}


def task_names() -> dict[str, type[Task]]:
    """Every OGBench task the kit can make data for: single-task names (five tasks and the default) and the
    goal-conditioned dataset names."""
    names: dict[str, type[Task]] = {}
    for dataset in RECIPES:
        stem = dataset.removesuffix("-v0")
        names[dataset] = GoalConditionedTask
        names[f"{stem}-singletask-v0"] = SingleTask
        for task in range(1, SINGLE_TASKS + 1):
            names[f"{stem}-singletask-task{task}-v0"] = SingleTask
    return names


TASKS = task_names()

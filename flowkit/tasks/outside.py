"""A user's own offline dataset as a task: an .npz file in OGBench's single-task layout, or a local Minari dataset,
evaluated in a Gymnasium environment when one is named (`PATH.npz@ENV_ID`, `minari:DATASET_ID@ENV_ID`).

The arrays are checked on load (keys, dtypes, shapes, finite values, action bounds), each fault one DatasetError
naming the file and the key. Without an environment a run is train-only: its losses and the analyses that need no
environment, scored by how far the policy's actions are from the data's (`data_action_mse`).
Kit actions lie in [-1, 1]^d and map linearly onto the environment's action box; a Minari dataset's actions are
mapped from its recorded action box onto [-1, 1] on load.
"""

from __future__ import annotations

import functools
import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowkit.tasks import DatasetError, Policy, Task, as_device_arrays, clip_actions

MINARI = "minari:"
NPZ = ".npz"
REQUIRED = ("observations", "actions", "terminals", "rewards")
OPTIONAL = ("masks", "next_observations")
SCORE_SAMPLES = 1000
"""Data transitions (a fixed subsample) a train-only run's policy is scored on."""
LOCKSTEP_ENVIRONMENTS = 10
"""Episodes an evaluation steps together at most (environments are made once and reused)."""


class DataSource(NamedTuple):
    """Where a task's data comes from, parsed from its name."""

    kind: str
    """"npz" or "minari"."""
    location: str
    """The file path or the Minari dataset id."""
    env_id: str | None


def parse(name: str) -> DataSource | None:
    """The data source a task name points at, or None when the name is not an outside dataset's."""
    data, _, env_id = name.partition("@")
    if data.startswith(MINARI):
        return DataSource("minari", data.removeprefix(MINARI), env_id or None)
    if data.endswith(NPZ):
        return DataSource("npz", data, env_id or None)
    return None


def task_class(name: str) -> type[Task]:
    return EnvTask if parse(name).env_id else TrainOnlyTask


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """The checked transitions of an .npz file in OGBench's layout (next_observations derived when absent)."""
    where = f"dataset file {path}"
    if not path.is_file():
        raise DatasetError(f"{where} does not exist; allowed: an .npz with {', '.join(REQUIRED)} (docs/tasks.md)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            columns = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as error:
        raise DatasetError(f"{where} is truncated or not an .npz archive ({type(error).__name__}: {error})") from None
    return transitions(where, columns)


def transitions(where: str, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check the columns and turn them into the kit's transitions (clipped actions, next actions within episodes)."""
    for key in REQUIRED:
        if key not in columns:
            raise DatasetError(
                f"{where}: no {key!r} array; it holds {sorted(columns)}; required: {', '.join(REQUIRED)}"
            )
    check_columns(where, columns)
    if "next_observations" not in columns:
        columns = next_from_rows(columns)
    ends = columns["terminals"].astype(bool)
    actions = clip_actions(columns["actions"].astype(np.float32))
    return {
        "observations": columns["observations"].astype(np.float32),
        "actions": actions,
        "rewards": columns["rewards"].astype(np.float32),
        "masks": columns.get("masks", 1.0 - ends).astype(np.float32),
        "next_observations": columns["next_observations"].astype(np.float32),
        "next_actions": np.where(ends[:, None], actions, np.roll(actions, -1, axis=0)),
    }


def check_columns(where: str, columns: dict[str, np.ndarray]) -> None:
    """Refuse wrong dtypes, shapes, non-finite values and actions outside [-1, 1], naming the key."""
    count = len(columns["observations"]) if columns["observations"].ndim else 0
    for key in (*REQUIRED, *(key for key in OPTIONAL if key in columns)):
        array, vector = columns[key], key in ("observations", "actions", "next_observations")
        kinds = (
            (np.bool_, np.integer) if key == "terminals" else (np.floating,) if vector else (np.floating, np.integer)
        )
        if not any(np.issubdtype(array.dtype, kind) for kind in kinds):
            allowed = " or ".join(kind.__name__ for kind in kinds)
            raise DatasetError(f"{where}: {key!r} has dtype {array.dtype}; allowed: {allowed}")
        shape = f"({count}, dim)" if vector else f"({count},)"
        if array.ndim != 1 + vector or len(array) != count or count < 2:
            raise DatasetError(f"{where}: {key!r} has shape {array.shape}; expected {shape}, at least 2 rows")
        if not np.isfinite(array).all():
            raise DatasetError(f"{where}: {key!r} holds NaN or inf at row {np.argwhere(~np.isfinite(array))[0][0]}")
    if columns.get("next_observations", columns["observations"]).shape != columns["observations"].shape:
        raise DatasetError(f"{where}: 'next_observations' differ in shape from 'observations'")
    for key in ("terminals", "masks"):
        if key in columns and ((columns[key] < 0) | (columns[key] > 1)).any():
            raise DatasetError(f"{where}: {key!r} holds values outside [0, 1]")
    low, high = float(columns["actions"].min()), float(columns["actions"].max())
    if low < -1 or high > 1:
        raise DatasetError(f"{where}: 'actions' span [{low:g}, {high:g}]; allowed: within [-1, 1] (rescale them)")


def next_from_rows(columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """OGBench's raw layout: each row's next observation is the next row's, an episode's last row (terminals) only
    a next observation, as ogbench's loader does; masks default to 1 there (an episode end is the data's cut)."""
    ends = columns["terminals"].astype(bool)
    ends[-1] = True
    keep = ~ends
    if not keep.any():
        raise DatasetError("every row of 'terminals' ends an episode: without 'next_observations' that leaves none")
    rows = {key: columns[key][keep] for key in ("observations", "actions", "rewards")}
    masks = columns["masks"][keep] if "masks" in columns else np.ones(int(keep.sum()))
    return {**rows, "masks": masks, "terminals": ends[1:][keep[:-1]],
            "next_observations": columns["observations"][1:][keep[:-1]]}  # fmt: skip


def minari_datasets_path() -> Path:
    """Where Minari keeps local datasets ($MINARI_DATASETS_PATH, else ~/.minari/datasets)."""
    return Path(os.environ.get("MINARI_DATASETS_PATH") or "~/.minari/datasets").expanduser()


def read_minari(dataset_id: str) -> dict[str, np.ndarray]:
    """The checked transitions of a local Minari dataset, actions mapped from its action box onto [-1, 1]."""
    where = f"Minari dataset {dataset_id!r} in {minari_datasets_path()}"
    try:
        import minari
    except ImportError:
        raise DatasetError(f"{where}: Minari is not installed; pip install 'flowkit[minari]'") from None
    try:
        dataset = minari.load_dataset(dataset_id)
        episodes = list(dataset.iterate_episodes())
    except Exception as error:
        raise DatasetError(f"{where} could not be read ({type(error).__name__}: {error})") from None
    low, high = box_bounds(f"{where}: 'actions'", dataset.action_space, bounded=True)
    box_bounds(f"{where}: 'observations'", dataset.observation_space)
    columns = {
        "observations": np.concatenate([episode.observations[:-1] for episode in episodes]),
        "next_observations": np.concatenate([episode.observations[1:] for episode in episodes]),
        "actions": np.concatenate([episode.actions for episode in episodes]),
        "rewards": np.concatenate([episode.rewards for episode in episodes]),
        "masks": 1.0 - np.concatenate([episode.terminations for episode in episodes]),
        "terminals": np.concatenate([episode.terminations | episode.truncations for episode in episodes]),
    }
    for key in ("observations", "actions"):
        if not (columns[key].dtype.kind == "f" or columns[key].dtype.kind in "iu"):
            raise DatasetError(f"{where}: {key!r} has dtype {columns[key].dtype}; allowed: numbers")
    columns["actions"] = 2 * (columns["actions"].astype(np.float64) - low) / (high - low) - 1
    columns["observations"] = columns["observations"].astype(np.float32)
    columns["next_observations"] = columns["next_observations"].astype(np.float32)
    return transitions(where, columns)


def box_bounds(where: str, space: Any, bounded: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """A flat Box space's bounds (finite ones if `bounded`); anything else is refused."""
    if type(space).__name__ != "Box" or len(space.shape) != 1:
        raise DatasetError(f"{where}: the space is {space}; allowed: a flat gymnasium Box")
    if bounded and not (np.isfinite(space.low).all() and np.isfinite(space.high).all()):
        raise DatasetError(f"{where}: the box {space} is unbounded; allowed: finite bounds")
    return space.low.astype(np.float64), space.high.astype(np.float64)


def read(name: str) -> dict[str, np.ndarray]:
    source = parse(name)
    return read_npz(Path(source.location)) if source.kind == "npz" else read_minari(source.location)


class TrainOnlyTask(Task):
    """A user's dataset with no environment: scored by the squared distance of the policy's actions from the
    data's on a fixed subsample (in-sample: how close the policy stays to the data, not how well it acts)."""

    family = "own data"
    real = False
    score_metric = "data_action_mse"
    metrics = frozenset({"data_action_mse"})
    lower_is_better = frozenset({"data_action_mse"})

    @classmethod
    def check_data(cls, name: str) -> None:
        cls.columns(name)

    @classmethod
    def columns(cls, name: str) -> dict[str, np.ndarray]:
        return read(name)

    def __init__(self, name: str):
        columns = self.columns(name)
        super().__init__(name, as_device_arrays(**columns))
        rows = np.random.default_rng(0).permutation(len(columns["rewards"]))[:SCORE_SAMPLES]
        self.score_observations = jnp.asarray(columns["observations"][rows])
        self.score_actions = jnp.asarray(columns["actions"][rows])

    def evaluate(self, policy: Policy, key: jax.Array, episodes: int) -> dict[str, float]:
        del episodes
        actions = policy(self.score_observations, key)
        return {"data_action_mse": float(jnp.mean(jnp.sum((actions - self.score_actions) ** 2, axis=-1)))}


class EnvTask(TrainOnlyTask):
    """A user's dataset evaluated in a Gymnasium environment: mean return and episode length."""

    score_metric = "return"
    metrics = frozenset({"return", "episode_length", "data_action_mse"})
    lower_is_better = frozenset({"data_action_mse"})

    @classmethod
    def check_data(cls, name: str) -> None:
        columns = cls.columns(name)
        cls.check_spaces(name, columns["observations"].shape[-1], columns["actions"].shape[-1])

    @classmethod
    def check_spaces(cls, name: str, obs_dim: int, action_dim: int) -> None:
        """Refuse data whose sizes are not the environment's."""
        source = parse(name)
        for key, size, expected in zip(("observations", "actions"), (obs_dim, action_dim), cls.spaces(source.env_id),
                                       strict=True):  # fmt: skip
            if size != expected:
                raise DatasetError(
                    f"dataset {source.location}: {key!r} have size {size}, but environment {source.env_id!r} has "
                    f"{expected}; allowed: the environment the data was logged in"
                )

    @staticmethod
    @functools.cache
    def spaces(env_id: str) -> tuple[int, int]:
        """The environment's observation and action sizes; an unknown id or non-Box spaces are refused."""
        env = make_env(env_id)
        box_bounds(f"environment {env_id!r}: observations", env.observation_space)
        box_bounds(f"environment {env_id!r}: actions", env.action_space, bounded=True)
        env.close()
        return env.observation_space.shape[0], env.action_space.shape[0]

    def __init__(self, name: str):
        super().__init__(name)
        self.check_spaces(name, self.obs_dim, self.action_dim)
        self.env_id = parse(name).env_id
        self._envs: list[Any] = []

    def evaluate(self, policy: Policy, key: jax.Array, episodes: int) -> dict[str, float]:
        seeds = np.random.SeedSequence(np.asarray(jax.random.key_data(key), dtype=np.uint32).tolist())
        seeds = seeds.generate_state(episodes)
        while len(self._envs) < min(episodes, LOCKSTEP_ENVIRONMENTS):
            self._envs.append(make_env(self.env_id))
        returns, lengths = [], []
        for start in range(0, episodes, len(self._envs)):
            batch_seeds = seeds[start : start + len(self._envs)]
            batch = rollout(self._envs[: len(batch_seeds)], policy, jax.random.fold_in(key, start), batch_seeds)
            returns.append(batch[0])
            lengths.append(batch[1])
        in_sample = super().evaluate(policy, key, episodes)
        return {"return": float(np.mean(np.concatenate(returns))),
                "episode_length": float(np.mean(np.concatenate(lengths))), **in_sample}  # fmt: skip


def make_env(env_id: str) -> Any:
    import gymnasium

    try:
        return gymnasium.make(env_id)
    except Exception as error:
        raise DatasetError(f"environment {env_id!r}: gymnasium.make failed ({type(error).__name__}: {error})") from None


def rollout(envs: list[Any], policy: Policy, key: jax.Array, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One episode per environment, stepped in lockstep with one policy call per step; (returns, lengths)."""
    observations = [env.reset(seed=int(seed))[0] for env, seed in zip(envs, seeds, strict=True)]
    low, high = envs[0].action_space.low, envs[0].action_space.high
    returns, lengths = np.zeros(len(envs)), np.zeros(len(envs), dtype=int)
    running = np.ones(len(envs), dtype=bool)
    while running.any():
        key, action_key = jax.random.split(key)
        actions = np.asarray(policy(jnp.asarray(np.stack(observations), jnp.float32), action_key))
        for index in np.flatnonzero(running):
            action = low + (np.clip(actions[index], -1, 1) + 1) * (high - low) / 2
            observations[index], reward, terminated, truncated, _ = envs[index].step(action.astype(np.float32))
            returns[index] += reward
            lengths[index] += 1
            running[index] = not (terminated or truncated)
    return returns, lengths

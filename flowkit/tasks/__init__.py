"""Offline RL tasks: a transition dataset on the device plus the evaluation that scores a policy on it."""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from flowkit.settings import ConfigError

DATA_DIR_ENV = "FLOWKIT_DATA_DIR"
DEFAULT_DATA_DIR = "~/.ogbench/data"
"""OGBench's own default, so that official files a user already downloaded are found."""


class DatasetError(ConfigError):
    """A dataset file or folder is missing, truncated or does not match its environment."""


def data_dir() -> Path:
    """Where OGBench dataset files are read from and generated into: $FLOWKIT_DATA_DIR, else ~/.ogbench/data."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


ACTION_CLIP = 1e-5
"""Dataset actions are clipped to [-1 + ACTION_CLIP, 1 - ACTION_CLIP] (the public FQL code's action_clip_eps),
so that a flow's targets stay inside the action box."""


def clip_actions(actions: np.ndarray) -> np.ndarray:
    return np.clip(actions, -1 + ACTION_CLIP, 1 - ACTION_CLIP)


Policy = Callable[[jax.Array, jax.Array], jax.Array]
"""Maps (observations, key) to actions in [-1, 1]^d; jit-compiled by the caller."""


class Transitions(NamedTuple):
    """A batch or a whole dataset of transitions (a pytree, so it can be a jit argument)."""

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    masks: jax.Array
    next_observations: jax.Array
    next_actions: jax.Array
    """The action taken at the next observation (ReBRAC's critic penalty); equal to `actions` at episode ends."""

    def sample(self, key: jax.Array, batch_size: int) -> Transitions:
        """Uniform minibatch with replacement; runs inside the compiled training loop."""
        index = jax.random.randint(key, (batch_size,), 0, self.rewards.shape[0])
        return jax.tree.map(lambda column: column[index], self)


class Task(abc.ABC):
    """An offline dataset and the way a policy trained on it is scored."""

    name: str
    family: str
    score_metric: str
    """The evaluation metric a study's score is taken from by default."""
    metrics: frozenset[str]
    """The metrics `evaluate` returns."""
    lower_is_better: frozenset[str] = frozenset()
    """Evaluation metrics for which a smaller value is better (all others: larger is better)."""
    fractions: frozenset[str] = frozenset()
    """Evaluation metrics that are fractions with 1 the best possible (reports give their optimality gap)."""
    method_defaults: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    """Settings the family changes from the methods' own defaults, by method name ("*": every method)."""
    domain_defaults: ClassVar[Mapping[str, Mapping[str, Mapping[str, Any]]]] = {}
    """On top of those, settings by domain (a task name's first word, as "cube" in cube-single-play), by method."""

    @classmethod
    def defaults(cls, name: str, method: str) -> dict[str, Any]:
        """The settings this family sets for `method` on the task called `name`."""
        by_domain = cls.domain_defaults.get(name.split("-")[0], {})
        return {**cls.method_defaults.get("*", {}), **cls.method_defaults.get(method, {}), **by_domain.get(method, {})}

    @classmethod
    def defaults_table(cls) -> list[tuple[str, str, dict[str, Any]]]:
        """(where, method, settings) for every default the family declares, for help texts and docs."""
        rows = [(f"{cls.family} tasks", method, dict(values)) for method, values in cls.method_defaults.items()]
        for domain, by_method in cls.domain_defaults.items():
            rows += [(f"{cls.family} {domain}-*", method, dict(values)) for method, values in by_method.items()]
        return rows

    def __init__(self, name: str, dataset: Transitions):
        self.name = name
        self.dataset = dataset

    @property
    def obs_dim(self) -> int:
        return self.dataset.observations.shape[-1]

    @property
    def action_dim(self) -> int:
        return self.dataset.actions.shape[-1]

    @classmethod
    def check_data(cls, name: str) -> None:
        """Raise DatasetError if the task's data is not where it will be read from (cheap; no full read)."""
        del name

    @abc.abstractmethod
    def evaluate(self, policy: Policy, key: jax.Array, episodes: int) -> dict[str, float]:
        """Roll the policy out for `episodes` episodes and return scalar metrics."""

    def record(self, policy: Policy, key: jax.Array, run_dir: Path) -> None:
        """Save what reports show of a trained policy beyond its metrics (nothing, unless a task says what)."""
        del policy, key, run_dir


def _task_classes() -> dict[str, type[Task]]:
    from flowkit.tasks import d4rl, ogbench_tasks, toy

    return {**dict.fromkeys(toy.TOY_TASKS, toy.ToyBandit), **ogbench_tasks.TASKS, **d4rl.TASKS}


def task_families() -> list[type[Task]]:
    """One task class per family (the family's defaults are declared on it)."""
    families: dict[str, type[Task]] = {}
    for cls in _task_classes().values():
        families.setdefault(cls.family, cls)
    return list(families.values())


def defaults_markdown() -> str:
    """Every task family's declared defaults as a Markdown table (docs/methods.md holds it, checked by a test)."""
    lines = ["| where | method | settings |", "|---|---|---|"]
    for family in task_families():
        for where, method, settings in family.defaults_table():
            values = ", ".join(
                f"`{name}={','.join(map(str, value)) if isinstance(value, tuple) else value}`"
                for name, value in settings.items()
            )
            lines.append(f"| {where} | {'every method' if method == '*' else f'`{method}`'} | {values} |")
    return "\n".join(lines)


def task_names() -> tuple[str, ...]:
    return tuple(_task_classes())


def task_class(name: str) -> type[Task]:
    """The class of the task called `name`: its family, score metric and metric directions, without data."""
    return _task_classes()[name]


def load_task(name: str) -> Task:
    """Build the task called `name` (see task_names()); its dataset is placed on the default device."""
    return task_class(name)(name)


def as_device_arrays(**columns) -> Transitions:
    return Transitions(**{key: jnp.asarray(value) for key, value in columns.items()})

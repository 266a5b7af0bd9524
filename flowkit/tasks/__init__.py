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


FQL_README = "seohongpark/fql README.md @719d044"
QFLOW_PARAMS = "jaehyeokdoo2/qflow qflow_config.py @db93bbe QFLOW_PARAMS (lam = 1 / alpha)"
NOT_RETRIEVED = (
    "the FQL paper's appendix (arXiv 2502.02538) tabulates them; no stored copy reached here, so none declared "
    "(method defaults)"
)
"""Sources the task families cite for their defaults (Task.default_sources)."""


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
    task_defaults: ClassVar[Mapping[str, Mapping[str, Mapping[str, Any]]]] = {}
    """On top of those, settings by task-name prefix (a domain such as "cube", a dataset such as "cube-double",
    one task such as "d4rl_adroit_pen/v1-human"), by method; a longer prefix overrides a shorter one."""
    default_sources: ClassVar[Mapping[tuple[str, str], str]] = {}
    """Where each declared default comes from, by (prefix, method); prefix "*" for `method_defaults`. An entry
    without declared values records that its source gives none (the method's defaults apply there)."""

    @classmethod
    def defaults(cls, name: str, method: str) -> dict[str, Any]:
        """The settings this family sets for `method` on the task called `name`."""
        values = {**cls.method_defaults.get("*", {}), **cls.method_defaults.get(method, {})}
        for prefix in sorted(filter(lambda prefix: covers(prefix, name), cls.task_defaults), key=len):
            values.update(cls.task_defaults[prefix].get(method, {}))
        return values

    @classmethod
    def defaults_table(cls) -> list[tuple[str, str, dict[str, Any], str]]:
        """(where, method, settings, source) for every default the family declares and every source it cites
        for none, for help texts and docs."""
        declared = {("*", method): values for method, values in cls.method_defaults.items()}
        for prefix, by_method in cls.task_defaults.items():
            declared |= {(prefix, method): values for method, values in by_method.items()}
        keys = [*declared, *(key for key in cls.default_sources if key not in declared)]
        names = task_names()
        return [
            (f"{cls.family} {'tasks' if prefix == '*' else prefix if prefix in names else prefix + '*'}", method,
             dict(declared.get((prefix, method), {})), cls.default_sources.get((prefix, method), ""))
            for prefix, method in keys
        ]  # fmt: skip

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


def covers(prefix: str, name: str) -> bool:
    """Whether `prefix` names the task `name` or a group it belongs to (cut at a "-", "/" or "_")."""
    return name == prefix or (name.startswith(prefix) and name[len(prefix)] in "-/_")


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
    """Every task family's declared defaults and their sources as a Markdown table (docs/methods.md holds it,
    checked by a test)."""
    lines = ["| where | method | settings | source |", "|---|---|---|---|"]
    for family in task_families():
        for where, method, settings, source in family.defaults_table():
            values = ", ".join(f"`{name}={_text(value)}`" for name, value in settings.items()) or "none declared"
            lines.append(f"| {where} | {'every method' if method == '*' else f'`{method}`'} | {values} | {source} |")
    return "\n".join(lines)


def _text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


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

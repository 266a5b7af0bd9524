"""Offline RL tasks: a transition dataset on the device plus the evaluation that scores a policy on it."""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from flowkit.settings import ConfigError, Source

DATA_DIR_ENV = "FLOWKIT_DATA_DIR"
DEFAULT_DATA_DIR = "~/.ogbench/data"
"""OGBench's own default, so that official files a user already downloaded are found."""


FQL_README = "seohongpark/fql README.md @719d044"
QFLOW_PARAMS = "jaehyeokdoo2/qflow qflow_config.py @db93bbe QFLOW_PARAMS (lam = 1 / alpha)"
GFP_REBRAC = "Guided Flow Policy's own ReBRAC tuning (Tiofack et al., 2026): hyperparams/rebrac_params.csv @49f6b17"
NOT_RETRIEVED = (
    "the FQL paper's appendix (arXiv 2502.02538) tabulates them; no stored copy reached here, so none declared "
    "(method defaults)"
)
"""Sources the task families cite for their defaults (Declared.source)."""


class Declared(NamedTuple):
    """Settings a task family declares for a method, and their source; no values records that the source gives
    none there (the method's defaults apply)."""

    source: Source
    values: Mapping[str, Any] = {}


Sourced = dict[str, tuple[Any, Source]]
"""Settings with the source of each value."""


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


class Episodes(NamedTuple):
    """An evaluation's episodes as the value-bias probe reads them: where each began, what it earned step by step
    and how it ended (flowkit.training.compiled_run compares the critic's value of the start with the return)."""

    first_observations: np.ndarray
    """(episodes, obs_dim): each episode's first observation s0."""
    first_actions: np.ndarray
    """(episodes, action_dim): the action the policy took there, a0."""
    rewards: tuple[np.ndarray, ...]
    """Each episode's rewards, one per step taken."""
    truncated: np.ndarray
    """Whether the time limit cut the episode (it did not end in a terminal state)."""
    last_observations: np.ndarray
    """(episodes, obs_dim): the observation after each episode's last step, s_T."""

    def discounted_returns(self, discount: float) -> np.ndarray:
        """sum_t gamma^t r_t of each episode from its first step, as observed (nothing added at a time limit)."""
        return np.array([float(r @ discount ** np.arange(len(r))) for r in self.rewards])

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(r) for r in self.rewards])


class Environment(Protocol):
    """What online fine-tuning steps: Gymnasium's reset and step."""

    def reset(self, *, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]: ...

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]: ...


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
    real: ClassVar[bool] = True
    """Whether results on the family's tasks are compared with papers' (not the 2D bandits): there a method's
    constraint coefficient must have a source (flowkit.run_config)."""
    task_defaults: ClassVar[Mapping[str, Mapping[str, Declared]]] = {}
    """Settings the family changes from the methods' own defaults, by task-name prefix ("*": every task; a
    domain such as "cube", a dataset such as "cube-double", one task such as "d4rl_adroit_pen/v1-human") and
    method ("*": every method); a longer prefix overrides a shorter one, a method's entry the "*" entry."""
    online: ClassVar[bool] = False
    """Whether the family's tasks have an environment a policy can be fine-tuned in (`environment`)."""
    presets: ClassVar[Mapping[str, Mapping[str, Mapping[str, Declared]]]] = {}
    """Other papers' tuning, by preset name, then as `task_defaults`: applied only when a run names the preset
    (`--set preset=NAME`), on top of the family's defaults."""

    @classmethod
    def defaults(cls, name: str, method: str, preset: str | None = None) -> Sourced:
        """The settings this family sets for `method` on the task called `name` (with a preset's), and their
        sources."""
        values: Sourced = {}
        for declared in (*_matches(cls.task_defaults, name, method), *_matches(cls.presets.get(preset, {}), name,
                                                                                method)):  # fmt: skip
            values.update({setting: (value, declared.source) for setting, value in declared.values.items()})
        return values

    @classmethod
    def preset_names(cls, name: str, method: str) -> list[str]:
        """The presets that set something for `method` on the task called `name`."""
        return [preset for preset, table in cls.presets.items() if any(d.values for d in _matches(table, name,
                                                                                              method))]  # fmt: skip

    @classmethod
    def notes(cls, name: str, method: str) -> list[Source]:
        """What the family's declarations say of `method` on task `name` without setting a value (a source
        that gives none)."""
        return [declared.source for declared in _matches(cls.task_defaults, name, method) if not declared.values]

    @classmethod
    def defaults_table(cls) -> list[tuple[str, str, dict[str, Any], Source]]:
        """(where, method, settings, source) for every default the family declares, every source it cites for
        none and every preset, for help texts and docs."""
        names = task_names()
        rows = []
        for preset, table in (("", cls.task_defaults), *cls.presets.items()):
            for prefix, by_method in table.items():
                where = "tasks" if prefix == "*" else prefix if prefix in names else prefix + "*"
                where = f"{cls.family} {where}" + (f" with `preset={preset}`" if preset else "")
                rows += [(where, method, dict(d.values), d.source) for method, d in by_method.items()]
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

    def evaluate_episodes(
        self, policy: Policy, key: jax.Array, episodes: int
    ) -> tuple[dict[str, float], Episodes | None]:
        """`evaluate`'s metrics and, where the evaluation steps an environment, its episodes (the value-bias
        probe's data); a task that keeps none returns None for them."""
        return self.evaluate(policy, key, episodes), None

    def environment(self) -> Environment:
        """A fresh environment of the task, for online fine-tuning (families with `online` only)."""
        raise NotImplementedError(f"{self.family} tasks have no environment for online fine-tuning")

    def record(self, policy: Policy, key: jax.Array, run_dir: Path) -> None:
        """Save what reports show of a trained policy beyond its metrics (nothing, unless a task says what)."""
        del policy, key, run_dir


def covers(prefix: str, name: str) -> bool:
    """Whether `prefix` names the task `name` or a group it belongs to (cut at a "-", "/" or "_")."""
    return prefix == "*" or name == prefix or (name.startswith(prefix) and name[len(prefix)] in "-/_")


def _matches(table: Mapping[str, Mapping[str, Declared]], name: str, method: str) -> list[Declared]:
    """The declarations of `table` for `method` on task `name`, the most general first."""
    prefixes = sorted((prefix for prefix in table if covers(prefix, name)), key=lambda p: -1 if p == "*" else len(p))
    return [table[p][m] for p in prefixes for m in ("*", method) if m in table[p]]


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
    lines = ["| where | method | settings | kind | source |", "|---|---|---|---|---|"]
    for family in task_families():
        for where, method, settings, source in family.defaults_table():
            values = ", ".join(f"`{name}={_text(value)}`" for name, value in settings.items()) or "none declared"
            method = "every method" if method == "*" else f"`{method}`"
            lines.append(f"| {where} | {method} | {values} | {source.kind} | {source.text} |")
    return "\n".join(lines)


def _text(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def task_names() -> tuple[str, ...]:
    return tuple(_task_classes())


def task_class(name: str) -> type[Task]:
    """The class of the task called `name`: its family, score metric and metric directions, without data."""
    from flowkit.tasks import outside

    return outside.task_class(name) if outside.parse(name) else _task_classes()[name]


def load_task(name: str) -> Task:
    """Build the task called `name` (see task_names()); its dataset is placed on the default device."""
    return task_class(name)(name)


def as_device_arrays(**columns) -> Transitions:
    return Transitions(**{key: jnp.asarray(value) for key, value in columns.items()})

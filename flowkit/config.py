"""Typed, validated configuration: the CLI, the studies and the tests all build their settings here.

Every setting is a field of a frozen dataclass with its type, its allowed values and a one-line doc. Values
are checked when the dataclass is built, so a bad value fails with a message that names the setting, what
was wrong and what is allowed, before anything is compiled or stored.

A run's settings are resolved in one order: the method's defaults (the papers' values), then the defaults
of the task's family (small networks and short runs for the 2D bandits, so they finish on a laptop), then
the study's fixed settings, then the trial's parameters, then the user's ``--set`` overrides.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from flowkit import solvers

SCHEDULES = ("t", "t2", "t2-over-1-t", "learnable")
"""FlowQ's energy schedules h(t), named by their formula."""


class ConfigError(ValueError):
    """A setting, name or combination of settings that the kit refuses, with what is allowed."""


@dataclass(frozen=True)
class Spec:
    """The allowed values of one setting."""

    doc: str
    low: float | None = None
    above: float | None = None
    high: float | None = None
    below: float | None = None
    choices: tuple[str, ...] | None = None

    def describe(self, kind: type) -> str:
        parts = [_type_name(kind)]
        if self.choices is not None:
            return "one of " + ", ".join(repr(choice) for choice in self.choices)
        if self.low is not None:
            parts.append(f">= {self.low:g}")
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.high is not None:
            parts.append(f"<= {self.high:g}")
        if self.below is not None:
            parts.append(f"< {self.below:g}")
        return " ".join(parts) if len(parts) == 1 else f"{parts[0]} " + " and ".join(parts[1:])

    def admits(self, number: float) -> bool:
        return not (
            (self.low is not None and number < self.low)
            or (self.above is not None and number <= self.above)
            or (self.high is not None and number > self.high)
            or (self.below is not None and number >= self.below)
        )


def setting(
    default: Any,
    doc: str,
    *,
    low: float | None = None,
    above: float | None = None,
    high: float | None = None,
    below: float | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A dataclass field carrying its constraints; `above` and `below` are exclusive bounds."""
    return field(default=default, metadata={"spec": Spec(doc, low, above, high, below, choices)})


def _type_name(kind: type) -> str:
    if typing.get_origin(kind) is tuple:
        return "a comma-separated list of positive integers"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[kind]


def _coerce(name: str, kind: type, spec: Spec, value: Any) -> Any:
    """Check one value against its type and constraints; return it in canonical form."""
    allowed = spec.describe(kind)
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            value = parse_value(name, kind, value)
        if not isinstance(value, (tuple, list)) or not value:
            raise ConfigError(f"{name}: expected {allowed}, got {value!r}")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                raise ConfigError(f"{name}: expected {allowed}, got {value!r}")
        return tuple(value)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}: expected {allowed}, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}: expected {allowed}, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{name}: expected {allowed}, got {value!r}")
        value = float(value)
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected {allowed}, got {value!r}")
        if spec.choices is not None and value not in spec.choices:
            raise ConfigError(f"{name}: {value!r} is not allowed; allowed: {allowed}")
        return value
    if not spec.admits(value):
        raise ConfigError(f"{name}: {value!r} is out of range; allowed: {allowed}")
    return value


def parse_value(name: str, kind: type, text: str) -> Any:
    """Turn command-line text into a value of the setting's type, or say what was expected."""
    text = text.strip()
    try:
        if typing.get_origin(kind) is tuple:
            return tuple(int(part) for part in text.split(",") if part.strip())
        if kind is bool:
            lowered = text.lower()
            if lowered in ("true", "yes", "1"):
                return True
            if lowered in ("false", "no", "0"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{name}: expected {_type_name(kind)}, got {text!r}") from None
    return text


class Settings:
    """Base of the frozen, validated settings dataclasses."""

    section: ClassVar[str]

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for item in dataclasses.fields(self):
            spec = item.metadata["spec"]
            value = _coerce(item.name, hints[item.name], spec, getattr(self, item.name))
            object.__setattr__(self, item.name, value)
        self.check()

    def check(self) -> None:
        """Cross-field constraints; raise ConfigError."""

    @classmethod
    def setting_types(cls) -> dict[str, type]:
        hints = typing.get_type_hints(cls)
        return {item.name: hints[item.name] for item in dataclasses.fields(cls)}

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """(name, allowed, default, doc) for each setting, for help texts and errors."""
        types_ = cls.setting_types()
        return [
            (item.name, item.metadata["spec"].describe(types_[item.name]), item.default, item.metadata["spec"].doc)
            for item in dataclasses.fields(cls)
        ]

    def to_dict(self) -> dict[str, Any]:
        return {item.name: _jsonable(getattr(self, item.name)) for item in dataclasses.fields(self)}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class TrainConfig(Settings):
    section = "training"

    steps: int = setting(1_000_000, "gradient updates in the run", low=1)
    log_every: int = setting(
        1000, "updates per compiled chunk; losses are averaged over it and logged at this interval", low=1
    )
    eval_every: int = setting(100_000, "updates between evaluations (a multiple of log_every)", low=1)
    eval_episodes: int = setting(50, "episodes per evaluation (in a bandit, one action is one episode)", low=1)
    checkpoint_every: int = setting(
        50_000, "updates between checkpoints that a killed run resumes from (a multiple of log_every)", low=1
    )
    term_grad_norms: bool = setting(
        False, "also record each loss term's gradient norm on the networks several terms train (FQL: about 3% slower)"
    )

    def check(self) -> None:
        for name in ("steps", "eval_every", "checkpoint_every"):
            if getattr(self, name) % self.log_every:
                raise ConfigError(
                    f"{name}: {getattr(self, name)} is not a multiple of log_every={self.log_every}; "
                    "allowed: a multiple of log_every (training runs in compiled chunks of log_every updates)"
                )


@dataclass(frozen=True)
class AgentConfig(Settings):
    """Settings every method has (defaults of the public FQL code)."""

    section = "agent"

    lr: float = setting(3e-4, "Adam learning rate", above=0)
    batch_size: int = setting(256, "transitions per update", low=1)
    actor_hidden: tuple[int, ...] = setting((512, 512, 512, 512), "hidden widths of the policy networks")
    actor_layer_norm: bool = setting(False, "LayerNorm after each hidden activation of the policy networks")

    def coefficients(self) -> dict[str, float]:
        """The real-valued settings (alpha, lambda, discount, tau, ...): compiled training takes them as arguments
        rather than constants, so that runs differing only in them share one program."""
        return {name: getattr(self, name) for name, kind in self.setting_types().items() if kind is float}


@dataclass(frozen=True)
class CriticConfig(AgentConfig):
    """Settings of every method that learns values."""

    discount: float = setting(0.99, "discount factor gamma", low=0, high=1)
    tau: float = setting(0.005, "Polyak rate of the target networks", above=0, high=1)
    critic_hidden: tuple[int, ...] = setting((512, 512, 512, 512), "hidden widths of the value networks")
    critic_layer_norm: bool = setting(True, "LayerNorm after each hidden activation of the value networks")
    q_agg: str = setting("mean", "aggregation of the critic ensemble in TD targets", choices=("mean", "min"))


@dataclass(frozen=True)
class FlowConfig(AgentConfig):
    """Settings of every method with a flow policy: how the flow is integrated wherever it is used."""

    solver: str = setting("euler", "ODE solver for every use of the flow", choices=tuple(solvers.SOLVERS))
    flow_steps: int = setting(10, "solver steps K from t = 0 to 1", low=1)


@dataclass(frozen=True)
class FQLConfig(FlowConfig, CriticConfig):
    alpha: float = setting(10.0, "FQL: weight of the distillation loss", low=0)
    normalize_q_loss: bool = setting(False, "scale the Q loss by 1 / mean|Q| (stop-gradient)")


@dataclass(frozen=True)
class FBRACConfig(FlowConfig, CriticConfig):
    alpha: float = setting(10.0, "FBRAC: weight of the flow BC loss against the Q term", low=0)
    normalize_q_loss: bool = setting(False, "scale the Q loss by 1 / mean|Q| (stop-gradient)")


@dataclass(frozen=True)
class FlowQConfig(FlowConfig, CriticConfig):
    lam: float = setting(1.0, "FlowQ: energy scale lambda of the target pi_beta exp(lambda Q)", low=0)
    schedule: str = setting(
        "t", "energy schedule h(t): t, t2 (t^2), t2-over-1-t (t^2/(1-t)) or learnable", choices=SCHEDULES
    )
    critic: str = setting(
        "iql", "iql: in-sample expectile critic; td: TD target with next actions from the flow", choices=("iql", "td")
    )
    expectile: float = setting(0.9, "expectile of the IQL value regression", above=0, below=1)


@dataclass(frozen=True)
class QFlowConfig(FlowConfig, CriticConfig):
    lam: float = setting(1.0, "Q-Flow: scale of the intermediate value's gradient (the public code's 1/alpha)", low=0)
    time_features: str = setting(
        "fourier", "time input of V(s, x, t): 16 Fourier features or raw t", choices=("fourier", "raw")
    )


@dataclass(frozen=True)
class FlowBCConfig(FlowConfig):
    """Flow behaviour cloning has no settings beyond the flow's."""


@dataclass(frozen=True)
class DistillBCConfig(FlowConfig):
    alpha: float = setting(10.0, "weight of the distillation loss", low=0)


@dataclass(frozen=True)
class GaussianBCConfig(AgentConfig):
    squash: str = setting("tanh", "map from the Gaussian to [-1, 1]^d: tanh or clip", choices=("tanh", "clip"))
    act_with: str = setting(
        "mode", "act with the mode (the public code's evaluation) or a sample", choices=("mode", "sample")
    )


@dataclass(frozen=True)
class ReBRACConfig(CriticConfig):
    q_agg: str = setting(
        "min", "aggregation of the critic ensemble in TD targets and for the actor", choices=("mean", "min")
    )
    alpha_actor: float = setting(0.0, "ReBRAC: weight of the actor's behaviour cloning penalty", low=0)
    alpha_critic: float = setting(0.0, "ReBRAC: weight of the critic's behaviour cloning penalty", low=0)
    actor_freq: int = setting(2, "update the actor and the targets every actor_freq updates", low=1)
    actor_noise: float = setting(0.2, "std of the target policy's smoothing noise", low=0)
    actor_noise_clip: float = setting(0.5, "clip of the target policy's smoothing noise", low=0)
    actor_fc_scale: float = setting(0.01, "initialisation scale of the actor's last layer", above=0)


AGENT_CONFIGS: dict[str, type[AgentConfig]] = {
    "fql": FQLConfig,
    "fbrac": FBRACConfig,
    "flowq": FlowQConfig,
    "qflow": QFlowConfig,
    "flow-bc": FlowBCConfig,
    "distill-bc": DistillBCConfig,
    "gaussian-bc": GaussianBCConfig,
    "rebrac": ReBRACConfig,
}

FLOW_AGENTS = tuple(name for name, config in AGENT_CONFIGS.items() if issubclass(config, FlowConfig))
"""The methods with a flow policy, to which the solver and flow-step settings apply."""

FAMILY_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    # The 2D bandits are learnt in minutes by small networks; 4 x 512 networks and 1M updates would take
    # hours on a CPU. "*" applies to every method. The methods' coefficients are per task in the public
    # code (FQL's alpha from 10 to 1000); on eight-gaussians (6000 updates, seed 0) these keep most samples
    # on the data while they gain reward, where a weaker constraint leaves the data: FQL alpha 5 (1 and 3
    # leave it, 20 and 50 stay close to behaviour cloning), FBRAC alpha 3 (1 leaves it), FlowQ lambda 3 (10
    # and 30 leave it), ReBRAC alpha_actor 0.1 (1 and 10 put its deterministic action between modes).
    "toy": {
        "*": {
            "actor_hidden": (64, 64, 64),
            "critic_hidden": (64, 64, 64),
            "steps": 6000,
            "log_every": 1000,
            "eval_every": 1000,
            "eval_episodes": 1000,
            "checkpoint_every": 1000,
        },
        "fql": {"alpha": 5.0},
        "fbrac": {"alpha": 3.0},
        "flowq": {"lam": 3.0},
        "rebrac": {"alpha_actor": 0.1},
    },
}

TASK_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    # By the start of a task's name; on top of its family's. OGBench runs keep the methods' paper-sized
    # defaults; FQL's alpha is the public code's per environment (cube and scene 300, puzzle 1000).
    "cube-": {"fql": {"alpha": 300.0}},
    "scene-": {"fql": {"alpha": 300.0}},
    "puzzle-": {"fql": {"alpha": 1000.0}},
}


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run."""

    agent: str
    task: str
    seed: int
    agent_config: AgentConfig
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "task": self.task,
            "seed": self.seed,
            "agent_config": self.agent_config.to_dict(),
            "train": self.train.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return make_run_config(
            data["agent"], data["task"], data["seed"], {**data["agent_config"], **data["train"]}, use_defaults=False
        )

    def settings(self) -> dict[str, Any]:
        """Every setting by its flat name, as ``--set`` and study files name them."""
        return {**self.agent_config.to_dict(), **self.train.to_dict()}


def _closest(name: str, names: typing.Iterable[str]) -> str:
    match = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


def check_agent(agent: str) -> type[AgentConfig]:
    if agent not in AGENT_CONFIGS:
        raise ConfigError(
            f"agent: unknown method {agent!r}{_closest(agent, AGENT_CONFIGS)}; allowed: {', '.join(AGENT_CONFIGS)}"
        )
    return AGENT_CONFIGS[agent]


def check_task(task: str) -> str:
    from flowkit import tasks  # tasks' errors are ConfigErrors: imported here, not at the top

    names = tasks.task_names()
    if task not in names:
        allowed = ", ".join(names) if len(names) <= 12 else "the names `flowkit data list` prints"
        raise ConfigError(f"task: unknown task {task!r}{_closest(task, names)}; allowed: {allowed}")
    return task


def setting_names(agent: str) -> dict[str, type]:
    """The settings a run of `agent` accepts, with their types."""
    return {**check_agent(agent).setting_types(), **TrainConfig.setting_types()}


def check_setting_names(agents: str | typing.Sequence[str], names: typing.Iterable[str]) -> dict[str, type]:
    """Refuse names that are settings of none of the methods; return the methods' settings and types."""
    agents = (agents,) if isinstance(agents, str) else tuple(agents)
    known = {name: kind for agent in agents for name, kind in setting_names(agent).items()}
    for name in names:
        if name not in known:
            raise ConfigError(
                f"setting {name!r} is unknown for {' and '.join(map(repr, agents))}{_closest(name, known)}; "
                f"allowed: {', '.join(sorted(known))}"
            )
    return known


def parse_overrides(agents: str | typing.Sequence[str], assignments: typing.Iterable[str]) -> dict[str, Any]:
    """Parse ``name=value`` words of ``--set`` into typed values for one or more methods.

    A name must be a setting of at least one of the methods; unknown names and bad text raise ConfigError.
    """
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--set: {assignment!r} is not of the form name=value (for example alpha=3)")
        known = check_setting_names(agents, [name])
        overrides[name] = parse_value(name, known[name], text)
    return overrides


def family_defaults(agent: str, task: str) -> dict[str, Any]:
    """The defaults a task's family and name set for a method (see FAMILY_DEFAULTS and TASK_DEFAULTS)."""
    from flowkit import tasks

    family = FAMILY_DEFAULTS.get(tasks.task_class(task).family, {})
    by_name = [defaults.get(agent, {}) for prefix, defaults in TASK_DEFAULTS.items() if task.startswith(prefix)]
    return {**family.get("*", {}), **family.get(agent, {}), **{k: v for d in by_name for k, v in d.items()}}


def make_run_config(
    agent: str,
    task: str,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    *,
    use_defaults: bool = True,
) -> RunConfig:
    """Resolve and validate a run's settings: method defaults < task-family defaults < overrides.

    Overrides may be typed values or command-line strings; unknown names and bad values raise ConfigError.
    """
    agent_class = check_agent(agent)
    check_task(task)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    overrides = dict(overrides or {})
    known = check_setting_names(agent, overrides)
    values = {**(family_defaults(agent, task) if use_defaults else {}), **overrides}
    values = {
        name: parse_value(name, known[name], value) if isinstance(value, str) and known[name] is not str else value
        for name, value in values.items()
        if name in known
    }
    agent_fields = agent_class.setting_types()
    return RunConfig(
        agent=agent,
        task=task,
        seed=seed,
        agent_config=agent_class(**{k: v for k, v in values.items() if k in agent_fields}),
        train=TrainConfig(**{k: v for k, v in values.items() if k not in agent_fields}),
    )

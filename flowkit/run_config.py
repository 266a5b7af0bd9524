"""A run's settings, resolved and validated: the CLI, the studies and the tests all build runs here.

A run's settings are resolved in one order: the method's defaults (the papers' values, declared beside the
method), then the defaults its task's family declares (flowkit.tasks: small networks and short runs for the 2D
bandits, per-domain coefficients on OGBench), then the study's fixed settings, then the trial's parameters, then
the user's ``--set`` overrides.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

from flowkit import tasks
from flowkit.agents import AGENT_CONFIGS, AgentConfig
from flowkit.settings import ConfigError, TrainConfig, closest_name, parse_value


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


def check_agent(agent: str) -> type[AgentConfig]:
    if agent not in AGENT_CONFIGS:
        raise ConfigError(
            f"agent: unknown method {agent!r}{closest_name(agent, AGENT_CONFIGS)}; allowed: {', '.join(AGENT_CONFIGS)}"
        )
    return AGENT_CONFIGS[agent]


def check_task(task: str) -> str:
    names = tasks.task_names()
    if task not in names:
        allowed = ", ".join(names) if len(names) <= 12 else "the names `flowkit data list` prints"
        raise ConfigError(f"task: unknown task {task!r}{closest_name(task, names)}; allowed: {allowed}")
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
                f"setting {name!r} is unknown for {' and '.join(map(repr, agents))}{closest_name(name, known)}; "
                f"allowed: {', '.join(sorted(known))}"
            )
    return known


def parse_overrides(agents: str | typing.Sequence[str], assignments: typing.Iterable[str]) -> dict[str, Any]:
    """Parse ``name=value`` words of ``--set`` into typed values for one or more methods.

    A name must be a setting of at least one of the methods, given once; unknown or repeated names and bad text
    raise ConfigError.
    """
    overrides: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--set: {assignment!r} is not of the form name=value (for example alpha=3)")
        if name in overrides:
            raise ConfigError(f"--set: {name!r} is given twice; allowed: each setting once")
        known = check_setting_names(agents, [name])
        overrides[name] = parse_value(name, known[name], text)
    return overrides


def family_defaults(agent: str, task: str) -> dict[str, Any]:
    """The defaults the task's family declares for a method (flowkit.tasks.Task.defaults)."""
    return tasks.task_class(task).defaults(task, agent)


def make_run_config(
    agent: str,
    task: str,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    *,
    use_defaults: bool = True,
) -> RunConfig:
    """Resolve and validate a run's settings: method defaults < task family defaults < overrides.

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

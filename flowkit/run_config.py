"""A run's settings, resolved and validated: the CLI, the studies and the tests all build runs here.

A run's settings are resolved in one order: the method's defaults (the papers' values, declared beside the
method), then the defaults its task's family declares (flowkit.tasks: small networks and short runs for the 2D
bandits, per-domain coefficients on OGBench) and, if the run names one, a preset of another paper's tuning, then
the study's fixed settings, then the trial's parameters, then the user's ``--set`` overrides. Each value keeps
its source (flowkit.settings.Source), which config.json and reports show; on a real task a method's constraint
coefficient without a source is refused before any data is looked for.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from flowkit import tasks
from flowkit.agents import AGENT_CONFIGS, AgentConfig, CriticConfig, plugins
from flowkit.settings import ConfigError, Source, TrainConfig, closest_name, parse_value
from flowkit.tasks import outside

PRESET = "preset"
"""The pseudo-setting that opts a run into another paper's tuning declared by its task family."""
COMMAND_LINE = Source("command line", "--set")
TUNING_STUDIES = {"rebrac": "rebrac-alphas-ogbench-cpu"}
"""A ready search study of each method's unsourced constraint coefficients, named in refusals."""


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one training run."""

    agent: str
    task: str
    seed: int
    agent_config: AgentConfig
    train: TrainConfig
    sources: Mapping[str, Source] = field(default_factory=dict, compare=False)
    """Where each setting's value came from, by its flat name."""
    preset: str | None = None

    def record(self) -> dict[str, Any]:
        """What config.json holds: the settings, the preset and the source of every value."""
        sources = {name: source._asdict() for name, source in self.sources.items()}
        return {**self.to_dict(), PRESET: self.preset, "sources": sources}

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
        """A config from its to_dict() or record() form (a record's sources and preset are kept)."""
        config = make_run_config(
            data["agent"], data["task"], data["seed"], {**data["agent_config"], **data["train"]}, use_defaults=False
        )
        stored = {name: Source(**source) for name, source in data.get("sources", {}).items()}
        return dataclasses.replace(config, sources=stored or config.sources, preset=data.get(PRESET))

    def matches(self, stored: Mapping[str, Any]) -> bool:
        """Whether settings a run stored (its to_dict()) are these settings."""
        return upgraded(stored) == self.to_dict()

    def settings(self) -> dict[str, Any]:
        """Every setting by its flat name, as ``--set`` and study files name them."""
        return {**self.agent_config.to_dict(), **self.train.to_dict()}


def upgraded(stored: Mapping[str, Any]) -> dict[str, Any]:
    """Stored settings (a to_dict()) as this flowkit writes them: a setting the stored run predates takes its
    default, since a setting is only ever added with a default that keeps the earlier behaviour; so a kit that
    gained a setting still continues the studies and runs stored before it. Settings it cannot read stay as
    stored (and match nothing)."""
    try:
        return RunConfig.from_dict(stored).to_dict()
    except (ConfigError, KeyError, TypeError):
        return dict(stored)


def check_agent(agent: str) -> type[AgentConfig]:
    plugins.load_entry_points()
    if agent not in AGENT_CONFIGS:
        raise ConfigError(
            f"agent: unknown method {agent!r}{closest_name(agent, AGENT_CONFIGS)}; allowed: {', '.join(AGENT_CONFIGS)}"
            " (an outside method: `--agent module:Class`, or flowkit.load_method in a study file)"
        )
    return AGENT_CONFIGS[agent]


def check_task(task: str) -> str:
    names = tasks.task_names()
    if task not in names and not outside.parse(task):
        allowed = ", ".join(names) if len(names) <= 12 else "the names `flowkit data list` prints"
        allowed += ", or your own data: PATH.npz or minari:DATASET_ID, each optionally @GYMNASIUM_ENV_ID"
        raise ConfigError(f"task: unknown task {task!r}{closest_name(task, names)}; allowed: {allowed}")
    return task


def setting_names(agent: str) -> dict[str, type]:
    """The settings a run of `agent` accepts, with their types (and `preset`)."""
    return {**check_agent(agent).setting_types(), **TrainConfig.setting_types(), PRESET: str}


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


def family_defaults(agent: str, task: str, preset: str | None = None) -> tasks.Sourced:
    """The defaults the task's family declares for a method, with a preset's if named, and their sources."""
    family = tasks.task_class(task)
    if preset is not None and preset not in family.preset_names(task, agent):
        allowed = ", ".join(family.preset_names(task, agent)) or "none (no preset covers this method and task)"
        raise ConfigError(f"{PRESET}: {preset!r} sets nothing for {agent!r} on {task!r}; allowed: {allowed}")
    return family.defaults(task, agent, preset)


def make_run_config(
    agent: str,
    task: str,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    *,
    use_defaults: bool = True,
    origin: Source = COMMAND_LINE,
    sampled: Collection[str] = (),
) -> RunConfig:
    """Resolve and validate a run's settings: method defaults < task family defaults (and preset) < overrides.

    Overrides may be typed values or command-line strings, and come from `origin`; `sampled` names settings a
    search will set (sourced by `origin` though absent here). Unknown names, bad values and, on a real task, a
    constraint coefficient with no source raise ConfigError.
    """
    agent_class = check_agent(agent)
    check_task(task)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    overrides = dict(overrides or {})
    known = check_setting_names(agent, overrides)
    preset = overrides.pop(PRESET, None)
    sourced = {name: (item[0], item[1]) for name, *item in _method_defaults(agent)}
    sourced |= family_defaults(agent, task, preset) if use_defaults else {}
    sourced |= {name: (value, origin) for name, value in overrides.items()}
    values = {
        name: parse_value(name, known[name], value) if isinstance(value, str) and known[name] is not str else value
        for name, (value, _) in sourced.items()
        if name in known
    }
    agent_fields = agent_class.setting_types()
    config = RunConfig(
        agent=agent,
        task=task,
        seed=seed,
        agent_config=agent_class(**{k: v for k, v in values.items() if k in agent_fields}),
        train=TrainConfig(**{k: v for k, v in values.items() if k not in agent_fields}),
        sources={name: source for name, (_, source) in sourced.items() if name in known},
        preset=preset,
    )
    check_sourced(config, sampled)
    check_online(config)
    return config


def check_online(config: RunConfig) -> None:
    """Refuse online fine-tuning where there is nothing to fine-tune (no critic) or nowhere to act (no environment)."""
    if not config.train.online_steps:
        return
    if not isinstance(config.agent_config, CriticConfig):
        critics = ", ".join(name for name, cls in AGENT_CONFIGS.items() if issubclass(cls, CriticConfig))
        raise ConfigError(
            f"online_steps: {config.agent!r} has no critic to fine-tune online; allowed: 0, or a method with a "
            f"critic ({critics})"
        )
    if not tasks.task_class(config.task).online:
        raise ConfigError(
            f"online_steps: task {config.task!r} has no environment to act in; allowed: 0, or an OGBench "
            "single-task task or a 2D bandit"
        )


def _method_defaults(agent: str) -> list[tuple[str, Any, Source]]:
    """(name, default, source) of every setting of a run of `agent`, before its task family's."""
    return [
        (item.name, item.default, settings_class.source_of(item.name))
        for settings_class in (AGENT_CONFIGS[agent], TrainConfig)
        for item in dataclasses.fields(settings_class)
    ]


def check_sourced(config: RunConfig, sampled: Collection[str] = ()) -> None:
    """Refuse a run on a real task whose constraint coefficient has no source (a placeholder default can turn
    the method's constraint off), saying what sources exist and how to proceed."""
    family = tasks.task_class(config.task)
    constraints = AGENT_CONFIGS[config.agent].constraint_settings
    missing = [name for name in constraints if config.sources[name].kind == "none" and name not in sampled]
    if family.real and missing:
        raise ConfigError(_unsourced_message(config, missing))


def _unsourced_message(config: RunConfig, missing: list[str]) -> str:
    """One line: the settings, the task, why their defaults will not do, the sources there are, the ways on."""
    agent, task, family = config.agent, config.task, tasks.task_class(config.task)
    defaults = "; ".join(sorted({config.sources[name].text for name in missing}))
    here, elsewhere = [], []
    for preset, table in family.presets.items():
        for prefix, by_method in table.items():
            if agent in by_method:
                values = " ".join(f"{name}={value:g}" for name, value in by_method[agent].values.items())
                (here if tasks.covers(prefix, task) else elsewhere).append(f"preset {preset} ({prefix}: {values})")
    known = [f"{text} (`--set {PRESET}=NAME` opts in)" for text in here] or [
        "none",
        *(source.text for source in family.notes(task, agent)),
    ]
    ways = "--set " + " ".join(f"{name}=VALUE" for name in missing)
    if agent in TUNING_STUDIES:
        ways += f", or tune them with the search study `flowkit study run {TUNING_STUDIES[agent]}` (copy it for "
        ways += "another task)"
    return (
        f"{', '.join(missing)}: {agent!r} on the real task {task!r} has no sourced value (default: {defaults}); "
        f"sources for this task: {'; '.join(known)}"
        + (f"; for other tasks: {', '.join(elsewhere)}" if elsewhere else "")
        + f"; to proceed: {ways}"
    )

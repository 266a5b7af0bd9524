"""Typed, validated settings: the machinery every settings class is built with, and the training loop's settings.

Every setting is a field of a frozen dataclass with its type, its allowed values and a one-line doc. Values
are checked when the dataclass is built, so a bad value fails with a message that names the setting, what
was wrong and what is allowed, before anything is compiled or stored. Each method's own settings class sits
beside the method (flowkit/agents/<method>.py); flowkit.run_config resolves a run's settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

MAX_WIDTH, MAX_LAYERS = 8192, 32
"""Bounds of a list of layer widths, checked before a network is built: a 8192 x 8192 float32 layer is 256 MiB
(the defaults are 4 x 512), and the memory estimate (CompiledRun.check_fits) needs the networks built first."""


class ConfigError(ValueError):
    """A setting, name or combination of settings that the kit refuses, with what is allowed."""


SOURCE_KINDS = ("paper", "other paper", "kit", "none", "study", "command line")
"""Where a resolved value comes from: the method's own paper or public code; another paper's tuning, which a user
opts into by a preset; the kit's own choice (the text says why); no source; a study file; `--set`."""


class Source(NamedTuple):
    """The provenance of one value: its kind (one of SOURCE_KINDS) and what it cites or why it was chosen."""

    kind: str
    text: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.text}" if self.text else self.kind


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
    source: Source | None = None,
) -> Any:
    """A dataclass field carrying its constraints; `above` and `below` are exclusive bounds. `source` is where the
    default comes from, when not from the declaring class's `default_source`."""
    return field(default=default, metadata={"spec": Spec(doc, low, above, high, below, choices), "source": source})


def _type_name(kind: type) -> str:
    if typing.get_origin(kind) is tuple:
        return f"a comma-separated list of positive integers (at most {MAX_LAYERS}, each at most {MAX_WIDTH})"
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[kind]


def _coerce(name: str, kind: type, spec: Spec, value: Any) -> Any:
    """Check one value against its type and constraints; return it in canonical form."""
    allowed = spec.describe(kind)
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            value = parse_value(name, kind, value)
        if not isinstance(value, (tuple, list)) or not value:
            raise ConfigError(f"{name}: expected {allowed}, got {value!r}")
        if len(value) > MAX_LAYERS:
            raise ConfigError(f"{name}: expected {allowed}, got {len(value)} widths")
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= MAX_WIDTH:
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
    default_source: ClassVar[Source] = Source("none", "")
    """Where the defaults of the settings a class declares come from (a setting may cite its own)."""

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

    @classmethod
    def source_of(cls, name: str) -> Source:
        """Where the default of setting `name` comes from: its own citation, else its declaring class's."""
        item = next(item for item in dataclasses.fields(cls) if item.name == name)
        if item.metadata["source"] is not None:
            return item.metadata["source"]
        declaring = next(klass for klass in cls.__mro__ if name in vars(klass).get("__annotations__", {}))
        return vars(declaring).get("default_source", cls.default_source)

    def to_dict(self) -> dict[str, Any]:
        return {item.name: _jsonable(getattr(self, item.name)) for item in dataclasses.fields(self)}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


FQL_MAIN = Source(
    "paper", "seohongpark/fql main.py @719d044 flags (offline_steps, online_steps, eval_interval, eval_episodes)"
)


@dataclass(frozen=True)
class TrainConfig(Settings):
    section = "training"
    default_source = Source("kit", "bookkeeping that does not change what is learnt")

    steps: int = setting(1_000_000, "gradient updates in the run", low=1, source=FQL_MAIN)
    online_steps: int = setting(
        0,
        "environment steps of online fine-tuning after the offline updates, one update each (0: offline only; "
        "a multiple of log_every)",
        low=0,
        source=FQL_MAIN,
    )
    log_every: int = setting(
        1000, "updates per compiled chunk; losses are averaged over it and logged at this interval", low=1
    )
    eval_every: int = setting(100_000, "updates between evaluations (a multiple of log_every)", low=1, source=FQL_MAIN)
    eval_from: int = setting(
        0,
        "the first update evaluated at: evaluations before it are skipped, as a score taken from the last "
        "evaluations needs none earlier (the last update is always evaluated)",
        low=0,
    )
    eval_episodes: int = setting(
        50,
        "episodes per evaluation (in a bandit, one action is one episode; at most 10,000: a bandit's energy distance "
        "holds an episodes x episodes matrix, 800 MB at 10,000, and the binomial error is already 0.005)",
        low=1,
        high=10_000,
        source=FQL_MAIN,
    )
    checkpoint_every: int = setting(
        50_000, "updates between checkpoints that a killed run resumes from (a multiple of log_every)", low=1
    )
    term_grad_norms: bool = setting(
        False, "also record each loss term's gradient norm on the networks several terms train (FQL: about 3% slower)"
    )

    def check(self) -> None:
        for name in ("steps", "online_steps", "eval_every", "checkpoint_every"):
            if getattr(self, name) % self.log_every:
                raise ConfigError(
                    f"{name}: {getattr(self, name)} is not a multiple of log_every={self.log_every}; "
                    "allowed: a multiple of log_every (training runs in compiled chunks of log_every updates)"
                )

    @property
    def total_steps(self) -> int:
        """Updates in the run, offline and online."""
        return self.steps + self.online_steps

    def evaluates_at(self, step: int) -> bool:
        """Whether the run evaluates after `step` updates: every eval_every from eval_from on, at the switch to
        online steps and at the end."""
        scheduled = step % self.eval_every == 0 and step >= self.eval_from
        return scheduled or step in (self.steps, self.total_steps)


def closest_name(name: str, names: Iterable[str]) -> str:
    """' (did you mean ...?)' for the nearest known name, to append to an error; empty if none is near."""
    match = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""

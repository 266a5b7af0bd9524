"""A search study's declaration: the settings it samples, the budget of sampled cells, the sampler and the pruner.

A grid study runs every cell; a search study lets Optuna's sampler choose `trials` cells from a space, and a
pruner may stop a cell that is clearly behind. Checked here is only what needs no method: the ranges, the
names of sampler and pruner; `Study` checks each range's ends and choices against the method's settings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowkit.settings import ConfigError

SAMPLERS = ("tpe", "qmc")
"""Optuna's TPESampler (the default: it concentrates on the good region) and QMCSampler (space-filling)."""
PRUNERS = ("median", "successive-halving", "hyperband")


@dataclass(frozen=True)
class FloatRange:
    """A real-valued setting sampled from [low, high], on a log scale if `log`."""

    low: float
    high: float
    log: bool = False

    def check(self) -> None:
        _check_bounds(self.low, self.high, self.log, (int, float))


@dataclass(frozen=True)
class IntRange:
    """An integer setting sampled from low..high (both included), on a log scale if `log`."""

    low: int
    high: int
    log: bool = False

    def check(self) -> None:
        _check_bounds(self.low, self.high, self.log, (int,))


@dataclass(frozen=True)
class Choice:
    """A setting sampled from a few values (a solver, a schedule, a list of widths)."""

    values: tuple[Any, ...]

    def check(self) -> None:
        if not isinstance(self.values, tuple) or not self.values:
            raise ConfigError(f"expected a non-empty tuple of values, got {self.values!r}")
        if len(set(map(json.dumps, self.values))) != len(self.values):
            raise ConfigError(f"expected distinct values, got {self.values!r}")


Dimension = FloatRange | IntRange | Choice


def _check_bounds(low: Any, high: Any, log: bool, kinds: tuple[type, ...]) -> None:
    kind = "integers" if kinds == (int,) else "numbers"
    if any(isinstance(end, bool) or not isinstance(end, kinds) for end in (low, high)):
        raise ConfigError(f"low and high must be {kind}, got {low!r} and {high!r}")
    if low >= high:
        raise ConfigError(f"low {low!r} >= high {high!r}; expected low < high")
    if log and low <= 0:
        raise ConfigError(f"a log range needs low > 0, got low {low!r}")


def ends(dimension: Dimension) -> tuple[Any, ...]:
    """The values a dimension's validity is checked at: a range's ends, or every choice."""
    return dimension.values if isinstance(dimension, Choice) else (dimension.low, dimension.high)


@dataclass(frozen=True)
class Search:
    """What a search study samples and how: `trials` cells drawn by `sampler` (seeded by `sampler_seed`, which the
    storage records) from `space`, each run for every seed of the study; `pruner` may stop a cell early."""

    space: Mapping[str, Dimension]
    trials: int
    sampler: str = "tpe"
    sampler_seed: int = 0
    pruner: str | None = None

    def check(self) -> None:
        """Refuse a malformed declaration, naming the field (the settings' own checks come from `Study`)."""
        if not self.space:
            raise ConfigError("search space: expected at least one setting to search")
        for name, dimension in self.space.items():
            if not isinstance(dimension, (FloatRange, IntRange, Choice)):
                raise ConfigError(f"search space {name!r}: expected FloatRange, IntRange or Choice, got {dimension!r}")
            try:
                dimension.check()
            except ConfigError as error:
                raise ConfigError(f"search space {name!r}: {error}") from None
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"search trials: expected an integer >= 1, got {self.trials!r}")
        if self.sampler not in SAMPLERS:
            raise ConfigError(f"search sampler: unknown {self.sampler!r}; allowed: {', '.join(SAMPLERS)}")
        if isinstance(self.sampler_seed, bool) or not isinstance(self.sampler_seed, int) or self.sampler_seed < 0:
            raise ConfigError(f"search sampler_seed: expected a non-negative integer, got {self.sampler_seed!r}")
        if self.pruner is not None and self.pruner not in PRUNERS:
            raise ConfigError(f"search pruner: unknown {self.pruner!r}; allowed: {', '.join(PRUNERS)} or None")

    def definition(self) -> dict[str, Any]:
        """What the stored results depend on (a changed space, budget, sampler or seed is a different study)."""
        return {
            "space": {name: {"kind": type(d).__name__, **_fields(d)} for name, d in self.space.items()},
            "trials": self.trials,
            "sampler": self.sampler,
            "sampler_seed": self.sampler_seed,
            "pruner": self.pruner,
        }


def _fields(dimension: Dimension) -> dict[str, Any]:
    if isinstance(dimension, Choice):
        return {"values": [",".join(map(str, v)) if isinstance(v, (tuple, list)) else v for v in dimension.values]}
    return {"low": dimension.low, "high": dimension.high, "log": dimension.log}

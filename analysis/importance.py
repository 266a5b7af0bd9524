"""How much each setting matters to a study's score: Optuna's fANOVA and PED-ANOVA importances over its cells.

Optuna is used here because its evaluators are the importances the kit reports, and here only (in analysis/):
the kit keeps Optuna in one adapter per concern (the storage in flowkit.studies.runner.storage, importance here).
The cells become an in-memory Optuna study, one completed trial per cell valued by its mean score over seeds,
with each setting's values as a distribution (`Axis`): a grid's declared values, a search study's ranges.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator, get_param_importances

from flowkit.studies.search import Choice, Dimension, IntRange

FANOVA_SEEDS = (0, 1, 2, 3, 4)
"""The random forests' seeds fANOVA is evaluated over: the table gives the mean and spread over them."""
PED_ANOVA_QUANTILE = 0.1
"""PED-ANOVA asks what the best 10% of cells (at least one) share, against all of them (Optuna's default)."""
LOG_SPAN = 16
"""Positive numbers spanning this factor or more lie on a log scale, as the report's figures draw them."""

optuna.logging.set_verbosity(optuna.logging.WARNING)


@dataclass(frozen=True)
class Axis:
    """Where a setting's values lie: a number in [low, high] (on a log scale if `log`), or one of `choices`."""

    low: float = 0.0
    high: float = 0.0
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def position(self, value: Any) -> float:
        """Where a value sits along the axis: its index among the choices, else its log10 or the number itself."""
        if self.choices is not None:
            return float(self.choices.index(value))
        return math.log10(value) if self.log else float(value)

    def value_at(self, position: float) -> float:
        """The inverse of `position` for a numeric axis."""
        return 10**position if self.log else position


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def grid_axis(values: Sequence[Any]) -> Axis:
    """A swept setting's axis: numbers between their least and greatest (log when positive and spanning a
    factor of LOG_SPAN or more; integers stay integers), anything else one of its values."""
    if not all(_is_number(value) for value in values):
        return Axis(choices=tuple(values))
    low, high = min(values), max(values)
    integer = all(isinstance(value, int) for value in values)
    return Axis(float(low), float(high), log=low > 0 and high / low >= LOG_SPAN, integer=integer)


def search_axis(dimension: Dimension) -> Axis:
    """A searched setting's axis: its declared range (log and integer as declared), or its choices."""
    if isinstance(dimension, Choice):
        return Axis(choices=tuple(dimension.values))
    low, high = float(dimension.low), float(dimension.high)
    return Axis(low, high, log=dimension.log, integer=isinstance(dimension, IntRange))


def _distribution(axis: Axis) -> BaseDistribution:
    if axis.choices is not None:
        return CategoricalDistribution(axis.choices)
    if axis.integer:
        return IntDistribution(int(axis.low), int(axis.high), log=axis.log)
    return FloatDistribution(axis.low, axis.high, log=axis.log)


@dataclass(frozen=True)
class Point:
    """One cell: its settings' values and its score (the mean over its seeds)."""

    params: Mapping[str, Any]
    value: float


@dataclass(frozen=True)
class Importance:
    """A setting's share of the importance among the varied settings (each evaluator's shares sum to 1)."""

    setting: str
    fanova_mean: float
    fanova_std: float
    """Sample standard deviation over FANOVA_SEEDS."""
    ped_anova: float
    """PED-ANOVA is deterministic: one value, no seed."""


def _optuna_study(points: Sequence[Point], axes: Mapping[str, Axis], lower_is_better: bool) -> optuna.Study:
    """An in-memory study with one completed trial per point."""
    study = optuna.create_study(direction="minimize" if lower_is_better else "maximize")
    distributions = {name: _distribution(axis) for name, axis in axes.items()}
    study.add_trials(
        optuna.trial.create_trial(
            params={name: point.params[name] for name in axes}, distributions=distributions, value=point.value
        )
        for point in points
    )
    return study


def importances(points: Sequence[Point], axes: Mapping[str, Axis], lower_is_better: bool) -> list[Importance]:
    """Each setting of `axes` by fANOVA (over FANOVA_SEEDS) and PED-ANOVA, most important first by fANOVA."""
    study = _optuna_study(points, axes, lower_is_better)
    fanova = [get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed)) for seed in FANOVA_SEEDS]
    ped_anova = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator(target_quantile=PED_ANOVA_QUANTILE))
    found = [
        Importance(
            setting=name,
            fanova_mean=float(np.mean([shares[name] for shares in fanova])),
            fanova_std=float(np.std([shares[name] for shares in fanova], ddof=1)),
            ped_anova=float(ped_anova[name]),
        )
        for name in axes
    ]
    return sorted(found, key=lambda importance: -importance.fanova_mean)

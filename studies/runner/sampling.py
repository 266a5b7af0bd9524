"""What a search study samples with: its space as Optuna distributions, its sampler and its pruner.

The runner's second use of Optuna, kept apart from storage.py (which keeps, claims and tells trials): this module
only turns a `Search` declaration into Optuna's objects and suggests a trial's parameters from them.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.trial import Trial

from flowkit.studies.search import Choice, Dimension, FloatRange, Search


def distribution(dimension: Dimension) -> BaseDistribution:
    if isinstance(dimension, Choice):
        return CategoricalDistribution(dimension.values)
    kind = FloatDistribution if isinstance(dimension, FloatRange) else IntDistribution
    return kind(dimension.low, dimension.high, log=dimension.log)


def suggest(trial: Trial, name: str, dimension: Dimension) -> Any:
    """The trial's value of one parameter: sampled, or the value already set (enqueued, or sampled when asked)."""
    if isinstance(dimension, Choice):
        return trial.suggest_categorical(name, dimension.values)
    if isinstance(dimension, FloatRange):
        return trial.suggest_float(name, dimension.low, dimension.high, log=dimension.log)
    return trial.suggest_int(name, dimension.low, dimension.high, log=dimension.log)


def sample_seed(search: Search, sample: int) -> int:
    """The seed of the `sample`-th cell's draw, from the study's sampler seed and the sample's index."""
    return int(np.random.SeedSequence((search.sampler_seed, sample)).generate_state(1)[0])


def sampler(search: Search, sample: int) -> BaseSampler:
    """The sampler that draws a search study's `sample`-th cell.

    Workers draw one after another (under the study's lock) from the stored trials, so each draw gets its own
    seed: workers that started with one seed would otherwise draw the same cell, and a study run again from the
    same history draws the same cells. TPE lies about running cells (constant liar) so that workers spread out;
    QMC keeps the study's seed, as every worker must walk one sequence (its position is kept in the storage).
    """
    seed = sample_seed(search, sample)
    if search.sampler == "qmc":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(
                seed=search.sampler_seed,
                independent_sampler=optuna.samplers.RandomSampler(seed=seed),
                warn_independent_sampling=False,
            )
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def pruner(search: Search | None) -> BasePruner | None:
    """The search's pruner; None (Optuna's default, never asked) for a grid study or a search without one."""
    if search is None or search.pruner is None:
        return None if search is None else optuna.pruners.NopPruner()
    return {
        "median": optuna.pruners.MedianPruner,
        "successive-halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }[search.pruner]()

"""What a comparison of an arm with the reference licenses (DESIGN.md section 7), with statsmodels' tests.

For one arm against the reference on per-seed scores: the difference with its 95% CI (paired t when the arms share
their random numbers, else Welch), TOST within the margin, the t-test for a difference (Holm-corrected over a
report's comparisons), the minimum detectable effect at 80% power for the seeds used, and the seeds per arm that
would decide. The verdict, in this order: equivalent within the margin / different / inconclusive. A success
rate's variance over seeds is also split into its seed-to-seed and evaluation (binomial) parts.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttost_ind, ttost_paired

from flowkit.run_config import RunConfig

ALPHA = 0.05
"""Level of every test; TOST's interval is therefore the 90% one, the difference's CI the 95% one."""
POWER = 0.8
MIN_SEEDS = 2
"""statsmodels' power solvers give nan where fewer than about two seeds would do: the floor printed instead."""
RANDOMNESS_FREE = ("solver", "flow_steps", "schedule", "path")
"""Settings that change no draw's shape or stream: a seed's initial weights, minibatches, loss draws and evaluation
seeds are the same whatever their values (as are the real-valued coefficients, alpha, lambda, ...)."""

EQUIVALENT, DIFFERENT, INCONCLUSIVE = "equivalent", "different", "inconclusive"


def unpaired_settings(a: RunConfig, b: RunConfig) -> list[str]:
    """The settings of two runs of one seed that change their random numbers; none: the runs are paired."""
    if a.agent != b.agent:
        return ["agent"]
    free = {*RANDOMNESS_FREE, *a.agent_config.coefficients(), *b.agent_config.coefficients()}
    ours, theirs = a.settings(), b.settings()
    return sorted(
        name for name in ours.keys() | theirs.keys() if ours.get(name) != theirs.get(name) and name not in free
    )


@dataclass(frozen=True)
class Conclusion:
    """An arm against the reference; differences are arm - reference."""

    paired: bool
    n: int
    """Seeds per arm: the pairs when paired, else the smaller arm's seeds."""
    difference: float
    ci: tuple[float, float]
    """95% CI of the difference."""
    margin: float | None
    tost_p: float | None
    """TOST's p (the larger of its two one-sided p-values); None without a margin."""
    p: float
    """Two-sided t-test of no difference, uncorrected."""
    p_holm: float
    mde: float | None
    """Minimum detectable effect at 80% power with these seeds, on the score's scale; None without spread."""
    seeds_needed: int | None
    """Seeds per arm for 80% power to detect the gap that would decide (`_target`); None if unknown."""

    @property
    def verdict(self) -> str:
        if self.tost_p is not None and self.tost_p < ALPHA:
            return EQUIVALENT
        return DIFFERENT if self.p_holm < ALPHA else INCONCLUSIVE

    def text(self) -> str:
        """The verdict in the words every output format shows."""
        ci = f"95% CI [{self.ci[0]:+.3f}, {self.ci[1]:+.3f}]"
        if self.verdict == EQUIVALENT:
            return f"equivalent within ±{self.margin:g}"
        if self.verdict == DIFFERENT:
            return f"different ({self.difference:+.3f}, {ci})"
        # Undecided with n seeds, it needs more than n, whatever the power analysis expected.
        needed = None if self.seeds_needed is None else max(self.seeds_needed, self.n + 1)
        decide = "" if needed is None else f"; about {needed} seeds per arm would decide it"
        return f"inconclusive ({ci}{decide})"


def _finite(p: float) -> float:
    """A p-value that statsmodels could not compute (no spread at all) counts as no evidence."""
    return 1.0 if math.isnan(p) else float(p)


def _solve(power: TTestPower | TTestIndPower, **known: float) -> float:
    """statsmodels' solve_power for the one unknown, nan where it does not converge."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return float(np.squeeze(power.solve_power(alpha=ALPHA, power=POWER, **known)))
        except (ValueError, ZeroDivisionError, FloatingPointError):
            return math.nan


def _seeds(power: TTestPower | TTestIndPower, effect: float, **known: float) -> int | None:
    """Seeds per arm for 80% power at `effect` SDs, floored at MIN_SEEDS; None for no effect or no spread."""
    if not 0 < effect < math.inf:
        return None
    needed = _solve(power, effect_size=effect, **known)
    return MIN_SEEDS if math.isnan(needed) else max(MIN_SEEDS, math.ceil(needed))


def _target(margin: float | None, difference: float) -> float:
    """The gap whose detection would decide, if the observed difference held: to the margin (equivalence) or to 0
    (a difference), whichever is wider; to 0 where the difference already lies beyond the margin, or without one."""
    if margin is None or abs(difference) >= margin:
        return abs(difference)
    return max(margin - abs(difference), abs(difference))


def _paired(arm: np.ndarray, reference: np.ndarray, margin: float | None) -> Conclusion:
    differences = DescrStatsW(arm - reference)
    sd, n = float(np.std(arm - reference, ddof=1)), len(arm)
    tost = None if margin is None else _finite(ttost_paired(arm, reference, -margin, margin)[0])
    p = _finite(differences.ttest_mean(0.0)[1])
    mde = sd * _solve(TTestPower(), effect_size=None, nobs=n) if sd > 0 else None
    needed = _seeds(TTestPower(), _target(margin, differences.mean) / sd, nobs=None) if sd > 0 else None
    ci = tuple(float(v) for v in differences.tconfint_mean(alpha=ALPHA))
    return Conclusion(True, n, float(differences.mean), ci, margin, tost, p, p, mde, needed)


def _unpaired(arm: np.ndarray, reference: np.ndarray, margin: float | None) -> Conclusion:
    means = CompareMeans(DescrStatsW(arm), DescrStatsW(reference))
    n1, n2 = len(arm), len(reference)
    sd = math.sqrt(((n1 - 1) * arm.var(ddof=1) + (n2 - 1) * reference.var(ddof=1)) / (n1 + n2 - 2))
    difference = float(arm.mean() - reference.mean())
    tost = None if margin is None else _finite(ttost_ind(arm, reference, -margin, margin, usevar="unequal")[0])
    p = _finite(means.ttest_ind(usevar="unequal")[1])
    mde = sd * _solve(TTestIndPower(), effect_size=None, nobs1=n1, ratio=n2 / n1) if sd > 0 else None
    needed = _seeds(TTestIndPower(), _target(margin, difference) / sd, nobs1=None) if sd > 0 else None
    ci = tuple(float(v) for v in means.tconfint_diff(alpha=ALPHA, usevar="unequal"))
    return Conclusion(False, min(n1, n2), difference, ci, margin, tost, p, p, mde, needed)


def compare(
    arm: Mapping[int, float], reference: Mapping[int, float], paired: bool, margin: float | None
) -> Conclusion | None:
    """An arm's per-seed scores against the reference's (paired over the seeds both have); None with fewer than
    two seeds on a side. Its p_holm is its raw p until `holm` corrects a report's comparisons together."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _compare(arm, reference, paired, margin)


def _compare(
    arm: Mapping[int, float], reference: Mapping[int, float], paired: bool, margin: float | None
) -> Conclusion | None:
    if paired:
        seeds = sorted(arm.keys() & reference.keys())
        if len(seeds) < 2:
            return None
        return _paired(np.array([arm[s] for s in seeds]), np.array([reference[s] for s in seeds]), margin)
    if min(len(arm), len(reference)) < 2:
        return None
    return _unpaired(np.array(list(arm.values()), float), np.array(list(reference.values()), float), margin)


def holm(conclusions: Sequence[Conclusion | None]) -> list[Conclusion | None]:
    """The conclusions with their difference tests Holm-corrected together (None entries stay None)."""
    present = [c for c in conclusions if c is not None]
    if not present:
        return list(conclusions)
    corrected = iter(multipletests([c.p for c in present], alpha=ALPHA, method="holm")[1])
    return [None if c is None else dataclasses.replace(c, p_holm=float(next(corrected))) for c in conclusions]


@dataclass(frozen=True)
class NoiseSplit:
    """The variance over seeds of one arm's success rates, and the binomial share from evaluating each seed."""

    observed: float
    """Sample variance of the per-seed rates."""
    evaluation: float
    """Mean over seeds of p (1 - p) / E, E the episodes behind each seed's rate."""
    episodes: int

    @property
    def seed(self) -> float:
        """Seed-to-seed variance: what remains of the observed (floored at 0)."""
        return max(self.observed - self.evaluation, 0.0)

    @property
    def evaluation_share(self) -> float:
        return min(self.evaluation / self.observed, 1.0) if self.observed > 0 else 0.0

    def narrowing(self) -> tuple[float, float]:
        """How much narrower the mean's CI gets with twice the episodes per seed, and with twice the seeds."""
        total = self.seed + self.evaluation
        if total == 0:
            return 0.0, 0.0
        return 1 - math.sqrt((self.seed + self.evaluation / 2) / total), 1 - math.sqrt(0.5)


def evaluation_noise(rates: Sequence[float], episodes: int) -> NoiseSplit | None:
    """Split the variance of per-seed success rates, each from `episodes` episodes; None with fewer than 2 seeds."""
    if len(rates) < 2:
        return None
    rates = np.asarray(rates, dtype=float)
    return NoiseSplit(float(rates.var(ddof=1)), float(np.mean(rates * (1 - rates) / episodes)), episodes)

"""Statistics over seeds and tasks, with rliable's definitions.

Scores are matrices of runs x tasks (seeds on axis 0). The interquartile mean (IQM) trims the lowest and
highest 25% of all runs and tasks together; intervals come from the stratified bootstrap, which resamples runs
within each task; the probability of improvement P(X > Y) is the Mann-Whitney U statistic over n_x n_y per task,
averaged over tasks. Arms are tested against a reference arm with Welch's t-test and the Mann-Whitney U test,
both two-sided, with Holm's correction over all the comparisons of a table.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.stats
from statsmodels.stats.multitest import multipletests

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof = 1) of one cell's per-seed scores."""

    mean: float
    std: float
    n: int

    def format(self, digits: int = 3) -> str:
        std = "n/a" if math.isnan(self.std) else f"{self.std:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {std}"


def summarize(scores: Sequence[float]) -> Summary:
    """Mean ± sample std over seeds; the std of a single seed is undefined (nan)."""
    if not scores:
        raise ValueError("no scores to summarize")
    std = statistics.stdev(scores) if len(scores) > 1 else math.nan
    return Summary(statistics.fmean(scores), std, len(scores))


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean over all runs and tasks: the mean of the middle 50%."""
    return float(scipy.stats.trim_mean(np.asarray(scores, dtype=float).ravel(), 0.25))


def optimality_gap(scores: np.ndarray, gamma: float = 1.0) -> float:
    """gamma - mean(min(scores, gamma)): how far runs fall short of the target gamma on average."""
    return float(gamma - np.minimum(np.asarray(scores, dtype=float), gamma).mean())


def stratified_bootstrap(
    statistic: Callable[..., float],
    *matrices: np.ndarray,
    samples: int = BOOTSTRAP_SAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile interval of statistic(*matrices) when runs are resampled with replacement within each task.

    Every matrix is runs x tasks and is resampled on its own (for two arms, independently).
    """
    rng = np.random.default_rng(seed)
    values = np.empty(samples)
    for sample in range(samples):
        resampled = []
        for matrix in matrices:
            matrix = np.asarray(matrix, dtype=float)
            rows = rng.integers(0, matrix.shape[0], size=matrix.shape)
            resampled.append(np.take_along_axis(matrix, rows, axis=0))
        values[sample] = statistic(*resampled)
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): per task U / (n_x n_y) with ties counted half, averaged over tasks (runs x tasks inputs)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    per_task = [
        scipy.stats.mannwhitneyu(x[:, task], y[:, task]).statistic / (x.shape[0] * y.shape[0])
        for task in range(x.shape[1])
    ]
    return float(np.mean(per_task))


@dataclass(frozen=True)
class Comparison:
    """An arm against the reference: raw and Holm-corrected two-sided p-values of both tests."""

    welch_p: float
    mannwhitney_p: float
    welch_holm: float
    mannwhitney_holm: float

    @property
    def mark(self) -> str:
        """'*' if Welch's t-test and '†' if Mann-Whitney's test rejects equality after Holm (at 5%)."""
        return ("*" if self.welch_holm < 0.05 else "") + ("†" if self.mannwhitney_holm < 0.05 else "")


def compare_to_reference(pairs: Sequence[tuple[Sequence[float], Sequence[float]]]) -> list[Comparison]:
    """Test each (arm, reference) pair of per-seed scores; Holm's correction runs over all the pairs.

    A pair with fewer than two scores on a side, or no variance at all, gets p = 1 (no evidence).
    """
    welch, mannwhitney = [], []
    for arm, reference in pairs:
        arm, reference = np.asarray(arm, dtype=float), np.asarray(reference, dtype=float)
        testable = len(arm) > 1 and len(reference) > 1 and np.ptp(np.concatenate([arm, reference])) > 0
        welch.append(float(scipy.stats.ttest_ind(arm, reference, equal_var=False).pvalue) if testable else 1.0)
        mannwhitney.append(
            float(scipy.stats.mannwhitneyu(arm, reference, alternative="two-sided").pvalue) if testable else 1.0
        )
    welch = [1.0 if math.isnan(p) else p for p in welch]
    if not pairs:
        return []
    welch_holm = multipletests(welch, method="holm")[1]
    mannwhitney_holm = multipletests(mannwhitney, method="holm")[1]
    return [
        Comparison(w, m, float(wh), float(mh))
        for w, m, wh, mh in zip(welch, mannwhitney, welch_holm, mannwhitney_holm, strict=True)
    ]

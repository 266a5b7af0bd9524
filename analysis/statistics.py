"""Statistics over seeds, as the seeds' tables report them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass


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

"""Training cost against the number of flow steps: an OLS line per method, so that "flat in K" is a test.

ms per update = intercept + slope * K, fitted by ordinary least squares (statsmodels) on every timed program's
median ms per update; a method's cost is flat in K when the 95% interval of its slope lies within a tolerance
that is negligible next to the intercept (2% of it per extra step)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import statsmodels.api as sm

from flowkit.analysis.statistics import CONFIDENCE


@dataclass(frozen=True)
class CostFit:
    intercept: float
    slope: float
    slope_low: float
    slope_high: float
    r_squared: float
    points: int

    def flat(self, relative_tolerance: float = 0.02) -> bool:
        """The slope's 95% interval lies within +-relative_tolerance x intercept per extra step."""
        bound = relative_tolerance * abs(self.intercept)
        return -bound <= self.slope_low and self.slope_high <= bound

    def predict(self, steps: np.ndarray) -> np.ndarray:
        return self.intercept + self.slope * np.asarray(steps, dtype=float)


def fit_cost(steps: Sequence[float], ms_per_update: Sequence[float]) -> CostFit:
    """OLS of ms per update on K with a 95% interval on the slope (needs at least three points)."""
    x = np.asarray(steps, dtype=float)
    y = np.asarray(ms_per_update, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0:
        raise ValueError("a cost fit needs at least three runs over at least two values of K")
    model = sm.OLS(y, sm.add_constant(x)).fit()
    low, high = model.conf_int(alpha=1 - CONFIDENCE)[1]
    return CostFit(
        intercept=float(model.params[0]),
        slope=float(model.params[1]),
        slope_low=float(low),
        slope_high=float(high),
        r_squared=float(model.rsquared),
        points=len(x),
    )

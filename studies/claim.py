"""What a study's comparisons are meant to show: a difference, or equivalence within a margin (DESIGN.md section 7).

A claim changes no run; it tells the report which question its verdicts answer and at what scale a difference
matters. The margin is on the score's own scale, declared before the runs are seen; when none is declared each
score kind has a default (`DEFAULT_MARGINS`), which the report prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from flowkit.settings import ConfigError

DEFAULT_MARGINS = {
    "success": 0.05,
    "support": 0.05,
    "reward_in_support": 0.05,
    "reward_mean": 0.05,
    "normalized_score": 5.0,
}
"""Equivalence margins by score metric: 5 points on a 0-1 score (success rates, the bandits' rewards, which lie in
[0, 1]) and on D4RL's 0-100 normalised score; OGBench's per-task success rates (`success/taskN`) share `success`'s."""


def default_margin(metric: str) -> float | None:
    """The margin a score kind is tested against when the study declares none; None if it has no natural scale."""
    return DEFAULT_MARGINS.get(metric.split("/")[0])


@dataclass(frozen=True)
class Claim:
    margin: float | None = None
    """The smallest difference that matters, on the score's scale; None takes the score's default margin."""

    def __post_init__(self) -> None:
        if self.margin is not None and not (isinstance(self.margin, (int, float)) and 0 < self.margin < math.inf):
            raise ConfigError(f"claim: margin must be a positive number on the score's scale, got {self.margin!r}")

    def margin_for(self, metric: str) -> float | None:
        return self.margin if self.margin is not None else default_margin(metric)

    def check(self, metric: str) -> None:
        """Refuse a claim the score cannot be tested for (every score can be tested for a difference)."""


@dataclass(frozen=True)
class Equivalence(Claim):
    """The claim "robust to X": every arm scores within +-margin of the reference (two one-sided tests)."""

    def check(self, metric: str) -> None:
        if self.margin_for(metric) is None:
            raise ConfigError(
                f"claim: score {metric!r} has no default equivalence margin; declare one, e.g. "
                "claim=Equivalence(margin=0.1), on the score's scale"
            )


@dataclass(frozen=True)
class Difference(Claim):
    """The claim "X helps": an arm differs from the reference; a margin, if any, allows equivalence too."""


def claim_for(declared: Claim | None, metric: str) -> Claim:
    """The study's claim, else equivalence within the score's default margin, else a difference."""
    if declared is not None:
        return declared
    return Equivalence() if default_margin(metric) is not None else Difference()

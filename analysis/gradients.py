"""Gradient norms over training: the curves the update recorded, and flags where they explode.

Every update records the global L2 norm of each network's gradient (and, with `term_grad_norms`, of each
loss term's on networks that several terms train); each training record of metrics.jsonl holds their mean and
maximum over its logging interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from flowkit import runs

EXPLOSION_THRESHOLD = 1e3
"""A gradient norm above this is flagged."""
GROWTH_WINDOW, GROWTH_FACTOR = 3, 10.0
"""A norm that grew by GROWTH_FACTOR within GROWTH_WINDOW logging intervals is flagged."""


@dataclass(frozen=True)
class Curve:
    steps: np.ndarray
    mean: np.ndarray
    max: np.ndarray


def gradient_curve(run_dir: Path, network: str, term: str | None = None) -> Curve:
    """A network's gradient norm over training (or one loss term's on it) from the run's metrics stream."""
    name = f"grad_norm/{network}" + (f"/{term}" if term else "")
    records = [r for r in runs.read_metrics(run_dir, "train") if name in r]
    return Curve(
        steps=np.array([r["step"] for r in records]),
        mean=np.array([float(r[name]) for r in records]),
        max=np.array([float(r[f"{name}_max"]) for r in records]),
    )


def explosions(
    curve: Curve,
    threshold: float = EXPLOSION_THRESHOLD,
    window: int = GROWTH_WINDOW,
    factor: float = GROWTH_FACTOR,
) -> list[tuple[int, str]]:
    """(step, reason) wherever the norm passed the threshold or grew `factor`-fold within `window` intervals."""
    flags = []
    for index, (step, peak, mean) in enumerate(zip(curve.steps, curve.max, curve.mean, strict=True)):
        lowest = curve.mean[max(0, index - window) : index].min(initial=np.inf)
        if not np.isfinite(peak) or peak > threshold:
            flags.append((int(step), f"max norm {peak:.3g} > {threshold:g}"))
        elif np.isfinite(lowest) and mean > factor * lowest > 0:
            flags.append((int(step), f"mean norm grew {mean / lowest:.1f}x within {window} intervals"))
    return flags

"""Intermediate value consistency: |W(s, Psi_{tau->1}(x_tau), 1) - W(s, x_tau, tau)| along the policy's flow.

For Q-Flow, W is its intermediate value V(s, x, t): a value consistent with the flow assigns x_tau the value of
where the flow takes it, so the gap is zero at every tau. For the other flow methods W is the critic's Q(s, x)
used mid-flow, which shows how wrong it is to read Q off the data. Every evaluation records the gaps' mean,
standard deviation and count per tau over 256 states from the data (each with its own noise). A curve is the
mean over seeds of each seed's mean gap; its 95% interval is Student's t over the seeds' means (the seed is the
replicate; states within a seed are not independent runs), or, for a single seed, the normal interval over its
states.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class ConsistencyCurve:
    tau: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    seeds: int


def pool(records: Sequence[dict[str, Any]]) -> ConsistencyCurve:
    """Per-seed records (same tau grid) as one curve: the mean of the seeds' mean gaps with a 95% interval over
    seeds (t with seeds - 1 degrees of freedom), or over one seed's states."""
    means = np.array([record["mean"] for record in records], dtype=float)
    mean = means.mean(axis=0)
    if len(records) > 1:
        half = scipy.stats.t.ppf(0.975, len(records) - 1) * means.std(axis=0, ddof=1) / np.sqrt(len(records))
    else:
        (record,) = records
        half = Z_95 * np.array(record["std"], dtype=float) / np.sqrt(record["n"])
    return ConsistencyCurve(np.array(records[0]["tau"]), mean, mean - half, mean + half, len(records))

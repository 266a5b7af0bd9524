"""Value bias against returns: a method's value of an episode's start minus the episode's discounted return.

The final evaluation of a method with a critic records, per episode, Q(s0, a0) (the critic ensemble aggregated as
the method's actor reads it), Q-Flow's V(s0, x0, 0), and the discounted Monte-Carlo return from step 0, with
gamma^T Q(s_T, a_T) added where the time limit cut the episode (flowkit.training.compiled_run). A positive bias is
over-estimation. An arm's bias is the mean over seeds of each seed's mean over its episodes; its 95% interval is
Student's t over the seeds' means (the seed is the replicate; episodes within a seed share one critic), or, for a
single seed, the normal interval over its episodes. This sits beside value consistency (consistency.py), which
holds V against Q along the flow rather than against returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats

from flowkit.analysis.consistency import Z_95

VALUES = {"q": "Q(s0, a0)", "v": "V(s0, x0, 0)"}
"""The values a record may hold, by key, as reports name them."""


@dataclass(frozen=True)
class ValueBias:
    """One arm's value against its returns, pooled over seeds."""

    value_mean: float
    return_mean: float
    bias: float
    low: float
    high: float
    seeds: int
    episodes: int
    """Episodes over all seeds."""
    truncated_share: float
    """The share of those episodes the time limit cut (their returns lean on the critic for gamma^T of it)."""
    aggregation: str


def pool(records: Sequence[Mapping[str, Any]], value: str = "q") -> ValueBias | None:
    """Per-seed value-bias records as one arm's figures for `value` ("q" or "v"); None if no record holds it."""
    records = [record for record in records if f"{value}_mean" in record]
    if not records:
        return None
    biases = np.array([record[f"{value}_bias_mean"] for record in records], dtype=float)
    if len(records) > 1:
        half = scipy.stats.t.ppf(0.975, len(records) - 1) * biases.std(ddof=1) / np.sqrt(len(records))
    else:
        (record,) = records
        half = Z_95 * record[f"{value}_bias_std"] / np.sqrt(record["n"])
    counts = np.array([record["n"] for record in records])
    return ValueBias(
        value_mean=float(np.mean([record[f"{value}_mean"] for record in records])),
        return_mean=float(np.mean([record["return_mean"] for record in records])),
        bias=float(biases.mean()),
        low=float(biases.mean() - half),
        high=float(biases.mean() + half),
        seeds=len(records),
        episodes=int(counts.sum()),
        truncated_share=float(np.average([record["truncated_share"] for record in records], weights=counts)),
        aggregation=records[0]["aggregation"],
    )

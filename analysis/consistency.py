"""Intermediate value consistency: |W(s, Psi_{tau->1}(x_tau), 1) - W(s, x_tau, tau)| along the policy's flow.

For Q-Flow, W is its intermediate value V(s, x, t): a value consistent with the flow assigns x_tau the value of
where the flow takes it, so the gap is zero at every tau. For the other flow methods W is the critic's Q(s, x)
used mid-flow, which shows how wrong it is to read Q off the data. Every evaluation records the gaps' mean,
standard deviation and count per tau over 256 states from the data (each with its own noise), and a saved run
can be probed again. Curves pool states and seeds; intervals are normal 95% intervals of the pooled mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from flowkit.training import consistency_record, load_trained

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class ConsistencyCurve:
    tau: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    n: int
    """States x seeds pooled at each tau."""


def pool(records: Sequence[dict[str, Any]]) -> ConsistencyCurve:
    """Pool per-seed records (same tau grid) into one curve: pooled mean and variance over all states."""
    n = np.array([record["n"] for record in records], dtype=float)[:, None]
    means = np.array([record["mean"] for record in records], dtype=float)
    stds = np.array([record["std"] for record in records], dtype=float)
    total = n.sum()
    mean = (n * means).sum(axis=0) / total
    variance = (((n - 1) * stds**2).sum(axis=0) + (n * (means - mean) ** 2).sum(axis=0)) / (total - 1)
    half = Z_95 * np.sqrt(variance / total)
    return ConsistencyCurve(np.array(records[0]["tau"]), mean, mean - half, mean + half, int(total))


def consistency_of_run(run_dir: Path, seed: int = 0, states: int = 256) -> dict[str, Any]:
    """Probe a saved run again: its value gaps along its own flow, as an evaluation would record them."""
    trainer, params = load_trained(run_dir)
    if not trainer.probes_consistency:
        raise ValueError(f"{run_dir}: method {trainer.config.agent!r} has no flow with a value to probe")
    return consistency_record(trainer.consistency_gaps(params, jax.random.PRNGKey(seed), states))

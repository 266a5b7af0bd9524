"""FlowQ's energy schedules: the weight g(t) of lambda grad Q in its velocity target, and what each schedule's
guidance does to the learnt end point on Gaussian data (derived in flowkit/agents/flowq.py's docstring).

Plain functions of t, kept apart from the method so that reports can show a schedule's strength without
loading the method.
"""

from __future__ import annotations

import jax
import numpy as np

SCHEDULES = ("t", "t2", "t2-over-1-t")
"""The energy schedules h(t), named by their formula."""


def energy_schedule(schedule: str, t: jax.Array | np.ndarray) -> jax.Array | np.ndarray:
    """g(t) = ((1 - t) / t) h(t), the weight of lambda grad Q in the velocity target at time t."""
    if schedule == "t":
        return 1 - t
    if schedule == "t2":
        return t * (1 - t)
    if schedule == "t2-over-1-t":
        return t
    raise ValueError(f"schedule: {schedule!r} is not one of {SCHEDULES}")


def schedule_strength(schedule: str, data_std: float) -> float:
    """R = int_0^1 g(t) / (s sigma_t) dt: the learnt end point's mean shift over the exact tilt's lambda c s^2.

    Exact for 1-D data N(m, s^2) and Q = c a, where the flow's minimiser is affine (derived in flowkit/agents/
    flowq.py's docstring); the midpoint rule on 4096 nodes.
    """
    t = (np.arange(4096) + 0.5) / 4096
    sigma = np.sqrt((1 - t) ** 2 + (t * data_std) ** 2)
    return float(np.mean(np.asarray(energy_schedule(schedule, t)) / (data_std * sigma)))

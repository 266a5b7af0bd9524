"""Display names of methods and solvers in reports, declared once here rather than in every study's labels.

A study's own `labels` still override them where a study means something particular by a value.
"""

from __future__ import annotations

from typing import Any

from flowkit.solvers import SOLVER_NAMES

METHOD_NAMES = {
    "fql": "FQL",
    "fbrac": "FBRAC",
    "flowq": "FlowQ",
    "qflow": "Q-Flow",
    "flow-bc": "Flow BC",
    "distill-bc": "Distilled BC",
    "gaussian-bc": "Gaussian BC",
    "rebrac": "ReBRAC",
}


def display_name(setting: str, value: Any) -> str | None:
    """The declared display name of a method (setting "agent") or an ODE solver; None for any other value."""
    names = {"agent": METHOD_NAMES, "solver": SOLVER_NAMES}.get(setting, {})
    return names.get(value) if isinstance(value, str) else None

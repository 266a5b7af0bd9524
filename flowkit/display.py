"""Display names of methods and solvers in reports, declared by what they name (a method's settings class, the
solver registry) rather than in every study's labels. A study's own `labels` still override them."""

from __future__ import annotations

from typing import Any

from flowkit.agents import AGENT_CONFIGS
from flowkit.solvers import SOLVER_NAMES


def display_name(setting: str, value: Any) -> str | None:
    """The declared display name of a method (setting "agent") or an ODE solver; None for any other value."""
    if setting == "agent" and value in AGENT_CONFIGS:
        return AGENT_CONFIGS[value].display_name
    return SOLVER_NAMES.get(value) if setting == "solver" and isinstance(value, str) else None

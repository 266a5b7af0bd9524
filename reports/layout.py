"""How a report lays a study out: the compared dimensions (its columns: each combination of their values is one
arm), the others (its rows), the reference arm whose values are the runs' defaults, and the labels of values,
arms, rows and cells. The study declares (studies/study.py); this module presents it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowkit.display import display_name
from flowkit.run_config import setting_names
from flowkit.studies.study import SAMPLE, Cell, Study, storable


def columns(study: Study) -> tuple[str, ...]:
    """The compared dimensions: each combination of their values is one arm, one column of the table."""
    return tuple(study.compare or study.grid or ("agent",))


def rows(study: Study) -> tuple[str, ...]:
    """The other dimensions: each combination of their values is one row (the method only if several)."""
    dims = ("agent",) * (len(study.agents) > 1) + ("task", *study.grid)
    return tuple(dim for dim in dims if dim not in columns(study))


def default_arm(study: Study) -> dict[str, Any] | None:
    """The arm whose compared settings all equal the runs' defaults (the method's and the task family's,
    and the study's fixed settings), for every method and task; None if the grid lacks it or methods are
    compared."""
    if "agent" in columns(study):
        return None
    arm = {}
    for dim in columns(study):
        defaults = [
            study.run_config({"agent": agent, "task": task}, study.seeds[0]).settings()[dim]
            for agent in study.agents
            if dim in setting_names(agent)
            for task in study.tasks
        ]
        matches = [value for value in study.grid[dim] if all(storable(d) == storable(value) for d in defaults)]
        if not matches:
            return None
        arm[dim] = storable(matches[0])
    return arm if any(arm_of(study, cell) == arm for cell in study.cells()) else None


def arm_of(study: Study, cell: Cell) -> dict[str, Any]:
    """The cell's values of the compared dimensions."""
    return {dim: cell[dim] for dim in columns(study)}


def row_of(study: Study, cell: Cell) -> dict[str, Any]:
    """The cell's values of the other dimensions."""
    return {dim: cell[dim] for dim in rows(study)}


def label(study: Study, name: str, value: Any) -> str:
    """The study's label of a value, else the method's or solver's display name, else the value itself
    (as name=value for a setting the study does not label)."""
    text = study.labels.get(name, {}).get(value) or display_name(name, value)
    if text is not None:
        return text
    return str(value) if name in ("agent", "task") or name in study.labels else f"{name}={value}"


def arm_label(study: Study, arm: Mapping[str, Any]) -> str:
    text = ", ".join(label(study, name, value) for name, value in arm.items() if value is not None)
    return f"{text} (Default)" if dict(arm) == default_arm(study) else text


def row_label(study: Study, row: Mapping[str, Any]) -> str:
    return " / ".join(label(study, name, value) for name, value in row.items() if value is not None)


def cell_label(study: Study, cell: Cell) -> str:
    """Row and arm, as a reader of the report names a cell; a sampled cell by its index and values."""
    if SAMPLE in cell:
        values = ", ".join(f"{name}={short_value(cell[name])}" for name in study.parameters())
        return f"sample {cell[SAMPLE]} ({values})"
    return " / ".join(filter(None, [row_label(study, row_of(study, cell)), arm_label(study, arm_of(study, cell))]))


def short_value(value: Any) -> str:
    """A sampled value as a report prints it: four significant digits for a number drawn from a range."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)

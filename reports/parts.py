"""What a report is made of: the parts of a section's content, the data a report is built from, and the section
interface. Every section module (comparisons.py, conclusions.py, ...) builds on these; the templates render
the parts."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from flowkit.analysis.cost import CostFit
from flowkit.reports import tables
from flowkit.reports.collect import CellResult
from flowkit.reports.tables import Table
from flowkit.studies.study import Study


@dataclass
class Paragraph:
    text: str


@dataclass
class TablePart:
    table: Table
    corner: str
    """The header of the row labels' column."""


@dataclass
class FigurePart:
    file: str
    caption: str


@dataclass
class ListPart:
    items: list[str]


Part = Paragraph | TablePart | FigurePart | ListPart


@dataclass
class Block:
    """One section's content, as every output format shows it."""

    title: str
    parts: list[Part]
    level: int = 2


@dataclass
class ReportData:
    """What a report is built from: the study's declaration, its stored results, and where figures go."""

    study: Study
    results: dict[str, CellResult]
    against: Study | None = None
    against_results: dict[str, CellResult] | None = None
    out: Path | None = None
    """The folder figures are drawn into."""
    created: str = field(default_factory=lambda: datetime.datetime.now().isoformat(timespec="seconds"))

    @cached_property
    def metric(self) -> str:
        return " / ".join(sorted({self.study.metric_for(task) for task in self.study.tasks}))

    @cached_property
    def cost_fits(self) -> dict[str, tuple[list[tuple[int, float]], CostFit]]:
        return tables.cost_fits(self.study, self.results)

    @cached_property
    def against_table(self) -> Table | None:
        if self.against is None:
            return None
        return tables.against_table(self.study, self.results, self.against, self.against_results)


class Section:
    """A part of the report: `applies` says whether the study has it, `build` makes its content (None when
    the results hold nothing for it, e.g. a table that needs two seeds of a cell that has one)."""

    def applies(self, report: ReportData) -> bool:
        return True

    def build(self, report: ReportData) -> Block | None:
        raise NotImplementedError

"""The sections about the runs themselves: what an update costs, which cells failed or were pruned, whose
gradients exploded, and the settings the first cell ran with.
"""

from __future__ import annotations

from typing import Any

from flowkit.analysis.gradients import explosions
from flowkit.reports import layout, plots, tables
from flowkit.reports.collect import CellResult
from flowkit.reports.parts import (
    Block,
    ListPart,
    Paragraph,
    Part,
    ReportData,
    Section,
    TablePart,
)
from flowkit.settings import Source
from flowkit.studies.study import Study


class Cost(Section):
    """Every run is timed and costed: ms per update, GFLOP, memory; and, when K varies, cost against K (per cell
    with results: a grid's declared cells, a search's sampled ones)."""

    def build(self, report: ReportData) -> Block:
        text = (
            "Medians over logging intervals (compile excluded), GFLOP from XLA's cost analysis, peak memory from "
            "its memory analysis; NFE per solve of the configured solver."
        )
        parts: list[Part] = [Paragraph(text), TablePart(tables.cost_table(report.study, report.results), "Cell")]
        fit_table = tables.cost_fit_table(report.cost_fits)
        if fit_table is not None:
            fits_text = (
                'OLS of ms per update on K per method (every run a point); "flat in K": the slope\'s 95% interval '
                "within ±2% of the intercept per step."
            )
            parts += [Paragraph(fits_text), TablePart(fit_table, "Method")]
        return Block("Cost per update", parts)


class Failures(Section):
    def applies(self, report: ReportData) -> bool:
        return any(result.failure for result in report.results.values())

    def build(self, report: ReportData) -> Block:
        study = report.study
        items = [f"{layout.cell_label(study, r.cell)}: {r.failure}" for r in report.results.values() if r.failure]
        return Block("Failed cells", [ListPart(items)])


class Pruned(Section):
    """A search study's cells its pruner stopped early: apart from the failed ones, with where they stopped."""

    def applies(self, report: ReportData) -> bool:
        return any(result.pruned for result in report.results.values())

    def build(self, report: ReportData) -> Block:
        return Block("Pruned cells", [ListPart(pruned_items(report.study, report.results))])


def pruned_items(study: Study, results: dict[str, CellResult]) -> list[str]:
    """One line per pruned cell: its sampled settings, and the seed, update and score so far where it stopped."""
    items = []
    for result in (r for r in results.values() if r.pruned):
        items.append(
            f"{layout.cell_label(study, result.cell)}: stopped at update {result.pruned.step} of seed "
            f"{result.pruned.seed}, score so far {result.pruned.value:.4g}, "
            f"{len(result.scores)} of {len(study.seeds)} seeds finished"
        )
    return items


def gradient_flags(study: Study, results: dict[str, CellResult]) -> list[str]:
    """Explosions of the policy network's gradient norm in any run (above 1e3, or 10x growth in 3 intervals), over
    the cells with results (a grid's declared cells, a search's sampled ones)."""
    flags = []
    for result in results.values():
        cell = result.cell
        for seed, run_dir in sorted(result.run_dirs.items()):
            curve = plots.policy_gradient_curve(run_dir)
            if curve is None:
                continue
            network, norms = curve
            for step, reason in explosions(norms)[:1]:
                flags.append(f"{layout.cell_label(study, cell)}, seed {seed}: {network} at update {step}: {reason}")
    return flags


class GradientExplosions(Section):
    """Every run records its gradient norms; runs where the policy's exploded are listed."""

    def applies(self, report: ReportData) -> bool:
        return any(result.run_dirs for result in report.results.values())

    def build(self, report: ReportData) -> Block | None:
        flags = gradient_flags(report.study, report.results)
        return Block("Gradient explosions flagged", [ListPart(flags)]) if flags else None


def first_cell_settings(study: Study, results: dict[str, CellResult]) -> dict[str, tuple[Any, Source]]:
    """The first cell's run settings and their sources: a grid's first declared cell, a search's first sampled
    one (its declared cell, with the method's defaults for the searched settings, before any is sampled)."""
    cells = [result.cell for result in results.values()] or study.cells()
    config = study.run_config(cells[0], study.seeds[0])
    return {
        name: (",".join(map(str, v)) if isinstance(v, list) else v, config.sources[name])
        for name, v in config.settings().items()
    }


class FirstCellSettings(Section):
    """The first cell's full settings grouped by source (paper, other paper, kit, none, study, command line),
    and how the report was made."""

    def build(self, report: ReportData) -> Block:
        by_source: dict[Source, list[str]] = {}
        for name, (value, source) in first_cell_settings(report.study, report.results).items():
            by_source.setdefault(source, []).append(f"`{name}={value}`")
        items = [f"{source}: {' '.join(values)}" for source, values in by_source.items()]
        made = f"Generated {report.created} by `flowkit report {report.study.command_name}`."
        return Block("Settings of the first cell", [ListPart(items), Paragraph(made)])

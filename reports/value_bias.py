"""The value-bias section: each cell's value of its episodes' starts against their discounted returns, as a table and
a figure (analysis/value_bias.py pools the seeds). Beside value consistency, which holds V against Q along the flow,
this holds the values against what the policy actually earned."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from flowkit.analysis.value_bias import VALUES, ValueBias, pool
from flowkit.reports import layout
from flowkit.reports.collect import CellResult
from flowkit.reports.parts import Block, FigurePart, Paragraph, Part, ReportData, Section, TablePart
from flowkit.reports.tables import Entry, Row, Table
from flowkit.studies.study import SAMPLE, Cell, Study

matplotlib.use("Agg")
from matplotlib import pyplot as plt

FIGURE = "value_bias.png"
HEADER = ["value", "mean value", "mean return", "mean bias [95% CI]", "truncated", "seeds (episodes)"]

TEXT = (
    "At the final evaluation, per episode: the critic's Q(s0, a0) of the episode's first state and action, the "
    "critic ensemble aggregated as the method's actor reads it (mean for FQL, FBRAC and FlowQ; `q_agg` for ReBRAC, "
    "IFQL and Q-Flow, whose V regresses onto it); for Q-Flow also its intermediate value V(s0, x0, 0) at a fresh "
    "noise x0 (its mean over x0 is the policy's value of s0); and the discounted return from step 0 with the run's "
    "discount. An episode the time limit cut gets gamma^T Q(s_T, a_T) added to its return (the critic values an "
    "episode without a time limit; the added part is weighted by gamma^T and the truncated column says how many "
    "episodes have one). Bias = value - return: positive is over-estimation. Means over seeds of each seed's mean "
    "over its episodes; the 95% interval is Student's t over the seeds (a single seed: normal over its episodes)."
)


def pooled(result: CellResult) -> dict[str, ValueBias]:
    """The cell's pooled figures for each value its records hold."""
    records = list(result.value_bias.values())
    found = {value: pool(records, value) for value in VALUES}
    return {value: figures for value, figures in found.items() if figures is not None}


def value_bias_table(study: Study, results: dict[str, CellResult]) -> Table | None:
    """A row per cell and value, for the cells whose runs recorded a value bias."""
    rows = []
    for result in (r for r in results.values() if r.value_bias):
        for value, figures in pooled(result).items():
            name = VALUES[value] + (f", {figures.aggregation} of the ensemble" if value == "q" else "")
            texts = [
                name,
                f"{figures.value_mean:.3f}",
                f"{figures.return_mean:.3f}",
                f"{figures.bias:.3f} [{figures.low:.3f}, {figures.high:.3f}]",
                f"{figures.truncated_share:.0%}",
                f"{figures.seeds} ({figures.episodes})",
            ]
            rows.append(Row(layout.cell_label(study, result.cell), [Entry(text=text) for text in texts]))
    return Table(HEADER, rows) if rows else None


def _label(study: Study, cell: Cell) -> str:
    """The cell without its task, which names the figure's panel."""
    if SAMPLE in cell:
        return layout.cell_label(study, cell)
    dims = [dim for dim in (*layout.rows(study), *layout.columns(study)) if dim != "task" and cell.get(dim) is not None]
    return " / ".join(layout.label(study, dim, cell[dim]) for dim in dims) or study.name


def draw(study: Study, results: dict[str, CellResult], path: Path) -> None:
    """A panel per task: each cell's mean bias with its 95% interval, Q as circles and V as squares."""
    tasks = list(dict.fromkeys(r.cell["task"] for r in results.values() if r.value_bias))
    figure, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks), 3.6), squeeze=False)
    for axis, task in zip(axes[0], tasks, strict=True):
        cells = [r for r in results.values() if r.value_bias and r.cell["task"] == task]
        for position, result in enumerate(cells):
            for value, (marker, shift) in {"q": ("o", -0.12), "v": ("s", 0.12)}.items():
                figures = pooled(result).get(value)
                if figures is None:
                    continue
                error = [[figures.bias - figures.low], [figures.high - figures.bias]]
                axis.errorbar(figures.bias, position + shift, xerr=error, fmt=marker, capsize=3,
                              color=f"C{value == 'v':d}", label=VALUES[value] if position == 0 else None)  # fmt: skip
        axis.axvline(0.0, color="0.4", linewidth=1)
        axis.set_yticks(np.arange(len(cells)), [_label(study, r.cell) for r in cells], fontsize=8)
        axis.invert_yaxis()
        axis.set(title=task, xlabel="value - discounted return (95% CI over seeds)")
        axis.title.set_fontsize(9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


class ValueBiasSection(Section):
    """Methods with a critic, on tasks whose evaluation keeps its episodes (OGBench single-task, D4RL, the bandits
    as one-step episodes), record their value bias at the final evaluation; any cell with such records shows it."""

    def applies(self, report: ReportData) -> bool:
        return any(result.value_bias for result in report.results.values())

    def build(self, report: ReportData) -> Block | None:
        table = value_bias_table(report.study, report.results)
        if table is None:
            return None
        parts: list[Part] = [Paragraph(TEXT), TablePart(table, "Arm")]
        if report.out is not None:
            draw(report.study, report.results, report.out / FIGURE)
            caption = "Mean bias of each cell's values against its discounted returns, with 95% intervals over seeds."
            parts.append(FigurePart(FIGURE, caption))
        return Block("Value bias against returns", parts)

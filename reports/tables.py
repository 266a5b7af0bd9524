"""The report's tables as data (rendered to Markdown, HTML and LaTeX by the templates).

A grid study's main table has one column per compared arm and one row per value of the study's other dimensions. Cells
show mean ± sample std over seeds and the seed count; the best complete mean of a row is bold; each arm is
tested against the reference arm (the default arm, else the first) and marked when Holm-corrected tests
reject equality; an IQM row aggregates each arm over rows and seeds with a stratified-bootstrap interval. A
search study's cells are no arms: its table lists the sampled cells, best first. Tables that are not about arms
(cost, cells shared with another study) read the cells from the results: a grid's declared cells, a search's
sampled ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from flowkit import solvers
from flowkit.analysis.cost import CostFit, fit_cost
from flowkit.analysis.statistics import (
    Summary,
    compare_to_reference,
    iqm,
    optimality_gap,
    probability_of_improvement,
    stratified_bootstrap,
)
from flowkit.reports import layout
from flowkit.reports.collect import CellResult
from flowkit.studies.search import Choice
from flowkit.studies.study import SAMPLE, Cell, Study, cell_key


@dataclass
class Entry:
    """One table cell; `summary` is None for a missing or failed cell, and `text` for cells not of scores."""

    summary: Summary | None = None
    best: bool = False
    mark: str = ""
    partial: str | None = None
    failure: str | None = None
    note: str = ""
    text: str | None = None


@dataclass
class Row:
    label: str
    entries: list[Entry]


@dataclass
class Table:
    header: list[str]
    rows: list[Row]
    footer: list[Row] = field(default_factory=list)


def groups(cells: list[Cell], by: tuple[str, ...]) -> dict[str, list[Cell]]:
    """Cells grouped by their values of the dimensions `by`, in declaration order."""
    grouped: dict[str, list[Cell]] = {}
    for cell in cells:
        grouped.setdefault(cell_key({dim: cell[dim] for dim in by}), []).append(cell)
    return grouped


def support_note(study: Study, result: CellResult) -> str:
    """The mean share of a bandit policy's samples on the data's support, shown beside a score that is not it."""
    seeds = [final["support"] for final in result.finals.values() if "support" in final]
    if not seeds or study.metric_for(result.cell["task"]) == "support":
        return ""
    return f"support {np.mean(seeds):.2f}"


def _entry(study: Study, result: CellResult, best: float | None, note: str = "") -> Entry:
    note = ", ".join(filter(None, [note, support_note(study, result)]))
    summary = result.summary
    if summary is None:
        return Entry(failure=result.failure or "missing", note=note)
    partial = f"{summary.n}/{len(study.seeds)}" if summary.n < len(study.seeds) else None
    return Entry(summary=summary, best=partial is None and summary.mean == best, partial=partial, note=note)


def _best(study: Study, results: list[CellResult]) -> float | None:
    """The best mean among cells that have every seed (partial cells are never bold)."""
    complete = [r.summary.mean for r in results if r.summary and r.summary.n == len(study.seeds)]
    if not complete:
        return None
    return min(complete) if study.lower_is_better() else max(complete)


def arm_columns(study: Study) -> list[str]:
    return list(dict.fromkeys(cell_key(layout.arm_of(study, cell)) for cell in study.cells()))


def reference_column(study: Study) -> str:
    """The arm every other arm is tested against: the default arm, else the first column."""
    default = layout.default_arm(study)
    return cell_key(default) if default is not None else arm_columns(study)[0]


def reference_label(study: Study) -> str:
    return layout.arm_label(study, json.loads(reference_column(study)))


def main_table(study: Study, results: dict[str, CellResult]) -> Table:
    columns, reference = arm_columns(study), reference_column(study)
    rows, pairs, places = [], [], []
    for cells in groups(study.cells(), layout.rows(study)).values():
        by_column = {cell_key(layout.arm_of(study, cell)): results[cell_key(cell)] for cell in cells}
        best = _best(study, list(by_column.values()))
        entries = [_entry(study, by_column[c], best) if c in by_column else Entry(text="") for c in columns]
        rows.append(Row(layout.row_label(study, layout.row_of(study, cells[0])), entries))
        reference_scores = by_column[reference].score_list if reference in by_column else []
        for index, column in enumerate(columns):
            if column != reference and column in by_column and by_column[column].scores and reference_scores:
                pairs.append((by_column[column].score_list, reference_scores))
                places.append((len(rows) - 1, index))
    for (row, index), comparison in zip(places, compare_to_reference(pairs), strict=True):
        rows[row].entries[index].mark = comparison.mark
    return Table([layout.arm_label(study, json.loads(c)) for c in columns], rows, [iqm_row(study, results, columns)])


def ranked(study: Study, results: dict[str, CellResult]) -> list[CellResult]:
    """The cells best mean first (in the score's direction), then those without a score in sampled order."""
    sign = 1.0 if study.lower_is_better() else -1.0
    return sorted(results.values(), key=lambda r: (r.summary is None, sign * r.summary.mean if r.summary else 0.0))


def cell_state(study: Study, result: CellResult) -> str:
    """Whether a sampled cell is complete, pruned (where), failed or not finished."""
    if result.pruned:
        return f"pruned at update {result.pruned.step} of seed {result.pruned.seed}"
    if result.failure:
        return "failed"
    return "complete" if len(result.scores) == len(study.seeds) else "unfinished"


def sampled_table(study: Study, results: dict[str, CellResult]) -> Table:
    """A search study's sampled cells, best first: each one's sampled values, mean ± std over seeds and state."""
    best = _best(study, list(results.values()))
    rows = [
        Row(
            f"sample {result.cell[SAMPLE]}",
            [
                *(Entry(text=layout.short_value(result.cell[name])) for name in study.parameters()),
                Entry(text="no seed finished") if result.pruned and not result.scores else _entry(study, result, best),
                Entry(text=cell_state(study, result)),
            ],
        )
        for result in ranked(study, results)
    ]
    return Table([*study.parameters(), "mean ± std over seeds", "state"], rows)


def arm_rows(study: Study, column: str) -> set[str]:
    """The rows an arm has cells in (all of them, unless it sets what only some methods have)."""
    return {cell_key(layout.row_of(study, c)) for c in study.cells() if cell_key(layout.arm_of(study, c)) == column}


def score_matrix(
    study: Study, results: dict[str, CellResult], column: str, rows: set[str] | None = None
) -> np.ndarray | None:
    """Seeds x rows of one arm's scores (only `rows`, if given), over the seeds every row has; None if fewer
    than two."""
    cells = [
        c
        for c in study.cells()
        if cell_key(layout.arm_of(study, c)) == column and (rows is None or cell_key(layout.row_of(study, c)) in rows)
    ]
    scores = [results[cell_key(c)].scores for c in cells]
    seeds = sorted(set.intersection(*(set(s) for s in scores))) if scores else []
    if len(seeds) < 2:
        return None
    return np.array([[s[seed] for s in scores] for seed in seeds])


def iqm_text(study: Study, matrix: np.ndarray) -> str:
    """IQM [95% CI] of a seeds x rows matrix, saying so where seeds missing from some row were left out."""
    low, high = stratified_bootstrap(iqm, matrix)
    text = f"{iqm(matrix):.3f} [{low:.3f}, {high:.3f}]"
    seeds = matrix.shape[0]
    return text if seeds == len(study.seeds) else f"{text} ({seeds} of {len(study.seeds)} seeds: those every row has)"


def iqm_row(study: Study, results: dict[str, CellResult], columns: list[str]) -> Row:
    entries = []
    for column in columns:
        matrix = score_matrix(study, results, column)
        entries.append(Entry(text="n/a" if matrix is None else iqm_text(study, matrix)))
    return Row("IQM [95% CI]", entries)


def aggregate_table(study: Study, results: dict[str, CellResult]) -> Table | None:
    """Per arm over rows and seeds: IQM, P(better than the reference) over the rows both arms have, and the
    optimality gap for scores that are fractions (success rates); intervals by stratified bootstrap (runs
    resampled within each row)."""
    columns, reference = arm_columns(study), reference_column(study)
    if score_matrix(study, results, reference) is None:
        return None
    sign = -1.0 if study.lower_is_better() else 1.0
    show_gap = study.scores_fractions()
    reference_rows = arm_rows(study, reference)
    rows = []
    for column in columns:
        matrix = score_matrix(study, results, column)
        if matrix is None:
            continue
        entries = [Entry(text=iqm_text(study, matrix))]
        shared = arm_rows(study, column) & reference_rows
        if column == reference:
            entries.append(Entry(text="reference"))
        elif not shared:
            entries.append(Entry(text="n/a: no row in common"))
        else:
            mine, theirs = (score_matrix(study, results, c, shared) for c in (column, reference))

            def improvement(x, y):
                return probability_of_improvement(sign * x, sign * y)

            p_low, p_high = stratified_bootstrap(improvement, mine, theirs)
            entries.append(Entry(text=f"{improvement(mine, theirs):.2f} [{p_low:.2f}, {p_high:.2f}]"))
        if show_gap:
            g_low, g_high = stratified_bootstrap(optimality_gap, matrix)
            entries.append(Entry(text=f"{optimality_gap(matrix):.3f} [{g_low:.3f}, {g_high:.3f}]"))
        rows.append(Row(layout.arm_label(study, json.loads(column)), entries))
    header = ["IQM [95% CI]", f"P(better than {reference_label(study)}) [95% CI]"]
    return Table(header + (["optimality gap [95% CI]"] if show_gap else []), rows)


def equal_nfe_table(study: Study, results: dict[str, CellResult]) -> Table | None:
    """For studies sweeping both the solver and K: the solvers side by side at equal function evaluations."""
    if not {"solver", "flow_steps"} <= set(study.grid):
        return None
    others = tuple(d for d in ("agent", "task", *study.grid) if d not in ("solver", "flow_steps"))
    flow_cells = [cell for cell in study.cells() if cell["solver"] is not None and cell["flow_steps"] is not None]
    solver_names = list(dict.fromkeys(cell["solver"] for cell in flow_cells))
    grouped: dict[tuple, dict[str, Cell]] = {}
    for cell in flow_cells:
        grouped.setdefault((tuple(cell[d] for d in others), nfe_of(cell)), {})[cell["solver"]] = cell
    order = list(dict.fromkeys(key[0] for key in grouped))
    rows = []
    for (values, nfe), by_solver in sorted(grouped.items(), key=lambda item: (order.index(item[0][0]), item[0][1])):
        if len(by_solver) < 2:
            continue
        row_results = {solver: results[cell_key(cell)] for solver, cell in by_solver.items()}
        best = _best(study, list(row_results.values()))
        entries = [
            _entry(study, row_results[s], best, note=f"K={by_solver[s]['flow_steps']}")
            if s in by_solver
            else Entry(text="")
            for s in solver_names
        ]
        names = [
            layout.label(study, d, v)
            for d, v in zip(others, values, strict=True)
            if v is not None and (d != "agent" or len(study.agents) > 1)
        ]
        rows.append(Row(" / ".join([*names, f"NFE {nfe}"]), entries))
    return Table([layout.label(study, "solver", s) for s in solver_names], rows) if rows else None


def nfe_of(cell: Cell) -> int:
    return solvers.nfe(cell["solver"], int(cell["flow_steps"]))


def cost_table(study: Study, results: dict[str, CellResult]) -> Table:
    """Per cell with results (a grid's declared cells, a search's sampled ones), its cost per update."""
    rows = []
    for result in results.values():
        cell = result.cell
        if result.timing:
            t = result.timing
            label = layout.cell_label(study, cell)
            texts = [
                str(result.nfe_per_solve),
                f"{t['ms_per_update']:.2f}",
                f"{t['ms_iqr']:.2f}",
                f"{t['gflop_per_update']:.4f}",
                f"{t['peak_memory_mb']:.1f}",
                f"{t['compile_s']:.1f}",
                parameters_text(result.parameters),
                f"{sum(result.parameters.values()):,}" if result.parameters else "n/a",
            ]
            rows.append(Row(label, [Entry(text=text) for text in texts]))
    header = ["NFE per solve", "ms / update (median)", "IQR", "GFLOP / update", "peak MB", "compile s"]
    return Table([*header, "parameters per network", "parameters"], rows)


def parameters_text(counts: dict[str, int]) -> str:
    """'critic 1,052,674 · flow 801,282': each network's weights; n/a for runs recorded without them."""
    return " · ".join(f"{name} {count:,}" for name, count in counts.items()) or "n/a"


TRADEOFF = {
    "tradeoff_distill_loss": "distillation loss",
    "tradeoff_distance": "distance to the flow's actions",
    "tradeoff_q_gain": "Q gain over the flow's actions",
}
"""The one-step policy's trade-off an evaluation records (agents.common.onestep_tradeoff), by column title."""


def tradeoff_table(study: Study, results: dict[str, CellResult]) -> Table | None:
    """Per cell whose runs recorded FQL's trade-off: the score and each trade-off figure, mean ± sd over seeds."""
    rows = []
    for result in results.values():
        seeds = [seed for seed, final in result.finals.items() if "tradeoff_distance" in final]
        if not seeds:
            continue
        columns = [[result.scores[s] for s in seeds]]
        columns += [[result.finals[s][name] for s in seeds] for name in TRADEOFF]
        texts = [f"{np.mean(c):.3f} ± {np.std(c, ddof=1) if len(c) > 1 else 0.0:.3f}" for c in columns]
        rows.append(
            Row(layout.cell_label(study, result.cell), [Entry(text=t) for t in texts] + [Entry(text=str(len(seeds)))])
        )
    return Table(["score", *TRADEOFF.values(), "seeds"], rows) if rows else None


def sweeps_flow_steps(study: Study) -> bool:
    """Whether the cells differ in K: a grid sweeping it, or a search sampling it."""
    return "flow_steps" in (study.grid if study.search is None else study.parameters())


def choice_settings(study: Study) -> tuple[str, ...]:
    """The settings whose cells take a few declared values: a grid's, a search's choices (a range's sampled
    values differ from cell to cell, so they group nothing)."""
    if study.search is None:
        return tuple(study.grid)
    return tuple(name for name, dimension in study.parameters().items() if isinstance(dimension, Choice))


def cost_fits(study: Study, results: dict[str, CellResult]) -> dict[str, tuple[list[tuple[int, float]], CostFit]]:
    """Per (method, task, other chosen settings): every timed program's (K, ms per update) and the OLS fit of ms
    on K (seeds trained as one program are one point, not one per seed), over the cells with results."""
    if not sweeps_flow_steps(study):
        return {}
    others = tuple(d for d in ("agent", "task", *choice_settings(study)) if d != "flow_steps")
    fits = {}
    with_steps = [result.cell for result in results.values() if result.cell["flow_steps"] is not None]
    for cells in groups(with_steps, others).values():
        points = [(int(c["flow_steps"]), ms) for c in cells for ms in results[cell_key(c)].program_ms_per_update]
        if len({k for k, _ in points}) >= 2 and len(points) >= 3:
            label = " / ".join(layout.label(study, d, cells[0][d]) for d in others if cells[0][d] is not None)
            fits[label] = (points, fit_cost(*zip(*points, strict=True)))
    return fits


def cost_fit_table(fits: dict[str, tuple[list, CostFit]]) -> Table | None:
    if not fits:
        return None
    rows = [
        Row(
            label,
            [
                Entry(text=f"{fit.slope:.3f} [{fit.slope_low:.3f}, {fit.slope_high:.3f}]"),
                Entry(text=f"{fit.intercept:.2f}"),
                Entry(text=f"{fit.r_squared:.2f}"),
                Entry(text="yes" if fit.flat() else "no"),
                Entry(text=str(fit.points)),
            ],
        )
        for label, (_, fit) in fits.items()
    ]
    return Table(["ms per extra step [95% CI]", "intercept ms", "R²", "flat in K", "runs"], rows)


def against_table(
    study: Study, results: dict[str, CellResult], other: Study, other_results: dict[str, CellResult]
) -> Table | None:
    """The cells both studies ran, side by side: this study, the other, their difference and the tests."""
    common = [r.cell for r in results.values() if cell_key(r.cell) in other_results and r.scores]
    common = [c for c in common if other_results[cell_key(c)].scores]
    if not common:
        return None
    pairs = [(results[cell_key(c)].score_list, other_results[cell_key(c)].score_list) for c in common]
    sign = -1.0 if study.lower_is_better() else 1.0
    rows = []
    for cell, (mine, theirs), comparison in zip(common, pairs, compare_to_reference(pairs), strict=True):
        label = layout.cell_label(study, cell)
        improvement = probability_of_improvement(sign * np.array(mine)[:, None], sign * np.array(theirs)[:, None])
        rows.append(
            Row(
                label,
                [
                    Entry(summary=results[cell_key(cell)].summary),
                    Entry(summary=other_results[cell_key(cell)].summary),
                    Entry(text=f"{np.mean(mine) - np.mean(theirs):+.3f}"),
                    Entry(text=f"{improvement:.2f}"),
                    Entry(text=f"{comparison.welch_holm:.3g}"),
                    Entry(text=f"{comparison.mannwhitney_holm:.3g}"),
                ],
            )
        )
    header = [study.name, other.name, "difference of means", f"P({study.name} better)", "Welch p (Holm)", "MW p (Holm)"]
    return Table(header, rows)

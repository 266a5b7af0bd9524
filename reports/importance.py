"""The importance section's content: per method and task, the cells with scores, how much each varied setting
matters (flowkit.analysis.importance), and the best cell with its score over seeds.

Settings are compared within one method on one task: scores of different tasks are on different scales, and a
setting a method lacks is absent from its cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flowkit.analysis.importance import FANOVA_SEEDS, Axis, Importance, Point, grid_axis, importances, search_axis
from flowkit.analysis.statistics import stratified_bootstrap
from flowkit.reports import layout
from flowkit.reports.collect import CellResult
from flowkit.reports.tables import Entry, Row, Table, groups
from flowkit.studies.study import SAMPLE, Study, cell_key


def varied_settings(study: Study) -> list[str]:
    """The settings whose values differ between the study's cells: a search's sampled settings, else the grid's
    settings with two or more values."""
    if study.search is not None:
        return [name for name, axis in setting_axes(study).items() if axis.choices is None or len(axis.choices) > 1]
    return [name for name, values in study.grid.items() if len(values) > 1]


def varies_two_settings(study: Study) -> bool:
    """Whether some method's cells vary two or more settings (a swept setting a method lacks is None in its
    cells: bptt-gradients sweeps alpha for FBRAC and lambda for Q-Flow, one setting each); a search's cells vary
    each setting it samples."""
    varied = varied_settings(study)
    if study.search is not None:
        return len(varied) >= 2
    return any(
        sum(len({cell[name] for cell in cells} - {None}) > 1 for name in varied) >= 2
        for cells in groups(study.cells(), ("agent",)).values()
    )


def setting_axes(study: Study) -> dict[str, Axis]:
    """Each varied setting's axis: a search's declared ranges and choices (the grid's settings among them as
    choices), else from the values a grid's cells store (a list of widths as "64,64")."""
    if study.search is not None:
        return {name: search_axis(dimension) for name, dimension in study.parameters().items()}
    stored = study.search_space()
    return {name: grid_axis([v for v in stored[name] if v is not None]) for name in varied_settings(study)}


@dataclass
class SettingGroup:
    """One method on one task: its cells with scores, the settings varied among them, most important first."""

    label: str
    results: list[CellResult]
    axes: dict[str, Axis]
    importances: list[Importance]


def setting_groups(study: Study, results: dict[str, CellResult]) -> list[SettingGroup]:
    """Per method and task with two or more settings varied among its scored cells, their importances."""
    axes = setting_axes(study)
    scored = [result.cell for result in results.values() if result.scores]
    found = []
    for cells in groups(scored, ("agent", "task")).values():
        group_results = [results[cell_key(cell)] for cell in cells]
        varied = {name: axis for name, axis in axes.items() if len({cell[name] for cell in cells} - {None}) > 1}
        if len(varied) < 2:
            continue
        points = [Point({name: r.cell[name] for name in varied}, r.summary.mean) for r in group_results]
        label = layout.row_label(study, {dim: cells[0][dim] for dim in ("agent", "task")})
        found.append(SettingGroup(label, group_results, varied, importances(points, varied, study.lower_is_better())))
    return found


def importance_table(grouped: list[SettingGroup]) -> Table:
    """A row per setting (prefixed by its method and task when there are several), most important first."""
    seeds = f"{FANOVA_SEEDS[0]}-{FANOVA_SEEDS[-1]}"
    rows = [
        Row(
            f"{group.label}: {item.setting}" if len(grouped) > 1 else item.setting,
            [Entry(text=f"{item.fanova_mean:.3f} ± {item.fanova_std:.3f}"), Entry(text=f"{item.ped_anova:.3f}")],
        )
        for group in grouped
        for item in group.importances
    ]
    return Table([f"fANOVA (mean ± std over seeds {seeds})", "PED-ANOVA"], rows)


def best_result(study: Study, group: SettingGroup) -> CellResult:
    """The cell with the best mean among those with every seed (among all, if none has every seed)."""
    complete = [r for r in group.results if r.summary.n == len(study.seeds)] or group.results
    sign = 1.0 if study.lower_is_better() else -1.0
    return min(complete, key=lambda r: sign * r.summary.mean)


def mean_interval(scores: list[float]) -> str:
    """The 95% stratified-bootstrap interval of the mean over seeds (n/a for one seed)."""
    if len(scores) < 2:
        return "n/a"
    low, high = stratified_bootstrap(np.mean, np.array(scores)[:, None])
    return f"[{low:.3f}, {high:.3f}]"


def best_table(study: Study, grouped: list[SettingGroup]) -> Table:
    """Per method and task, the best cell's settings (a sampled cell's index and values) and its score over
    seeds."""
    rows = []
    for group in grouped:
        best = best_result(study, group)
        settings = ", ".join(layout.label(study, name, best.cell[name]) for name in group.axes)
        if SAMPLE in best.cell:
            settings = layout.cell_label(study, best.cell)
        partial = f"{best.summary.n}/{len(study.seeds)}" if best.summary.n < len(study.seeds) else None
        entries = [Entry(text=settings), Entry(summary=best.summary, partial=partial)]
        rows.append(Row(group.label, [*entries, Entry(text=mean_interval(best.score_list))]))
    return Table(["best settings", "mean ± std over seeds", "95% CI of the mean"], rows)

"""`flowkit report NAME`: a study's table and figures, built from its Optuna storage.

Every number comes from the stored trials (scores, per-seed evaluation histories, timings), which the runner
wrote from the run folders' results; the report reads nothing else and computes only summaries of them.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
import numpy as np
import optuna
from optuna.trial import TrialState

from analysis.statistics import Summary, summarize
from flowkit import solvers
from flowkit.config import ConfigError
from studies.runner import FAILURE_ATTR, load_optuna_study, study_dir, trial_cell
from studies.study import Cell, Study, cell_key

matplotlib.use("Agg")
from matplotlib import pyplot as plt

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class CellResult:
    """What the storage holds for one cell: per-seed scores and evaluation curves, or why there are none."""

    cell: dict[str, Any]
    scores: dict[int, float] = field(default_factory=dict)
    curves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    nfe_per_solve: int | None = None
    failure: str | None = None

    @property
    def summary(self) -> Summary | None:
        return summarize([self.scores[s] for s in sorted(self.scores)]) if self.scores else None


def collect(study: Study, optuna_study: optuna.Study) -> dict[str, CellResult]:
    """Per cell, the complete trial if there is one, else the latest trial with any finished seeds."""
    trials: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in optuna_study.get_trials(deepcopy=False):
        trials.setdefault(trial_cell(trial), []).append(trial)
    results = {}
    for cell in study.cells():
        key = cell_key(cell)
        result = CellResult(cell)
        candidates = trials.get(key, [])
        complete = [t for t in candidates if t.state == TrialState.COMPLETE]
        chosen = (
            complete[-1] if complete else next((t for t in reversed(candidates) if t.user_attrs.get("seeds")), None)
        )
        if chosen is not None:
            for seed, entry in chosen.user_attrs["seeds"].items():
                result.scores[int(seed)] = entry["score"]
                result.curves[int(seed)] = [tuple(point) for point in entry["eval_history"]]
                result.nfe_per_solve = entry["nfe_per_solve"]
            seeds = chosen.user_attrs["seeds"].values()
            result.timing = {
                "ms_per_update": float(np.median([e["timing"]["ms_per_update"] for e in seeds])),
                "compile_s": float(np.mean([e["timing"]["compile_s"] for e in seeds])),
            }
        if not complete and candidates and candidates[-1].state == TrialState.FAIL:
            result.failure = candidates[-1].user_attrs.get(FAILURE_ATTR, {}).get("message", "failed")
        results[key] = result
    return results


def _groups(cells: list[Cell], by: tuple[str, ...]) -> dict[str, list[Cell]]:
    """Cells grouped by their values of the dimensions `by`, in declaration order."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell_key({dim: cell[dim] for dim in by}), []).append(cell)
    return groups


def _entry(result: CellResult, best: float | None, seeds: int) -> str:
    summary = result.summary
    if summary is None:
        return f"failed: {result.failure}" if result.failure else "missing"
    text = f"**{summary.format()}**" if summary.mean == best else summary.format()
    text += f" (n={summary.n})"
    return text + (f" partial {summary.n}/{seeds}" if summary.n < seeds else "")


def _best(study: Study, results: list[CellResult]) -> float | None:
    """The best mean among cells that have every seed (partial cells are never bold)."""
    complete = [r.summary.mean for r in results if r.summary and r.summary.n == len(study.seeds)]
    if not complete:
        return None
    return min(complete) if study.lower_is_better() else max(complete)


def table(study: Study, results: dict[str, CellResult]) -> dict[str, Any]:
    """The study's main table: one row per value of the row dimensions, one column per arm."""
    columns = list(dict.fromkeys(cell_key(study.arm(cell)) for cell in study.cells()))
    rows = []
    for cells in _groups(study.cells(), study.rows).values():
        by_column = {cell_key(study.arm(cell)): results[cell_key(cell)] for cell in cells}
        best = _best(study, list(by_column.values()))
        entries = [_entry(by_column[c], best, len(study.seeds)) if c in by_column else "" for c in columns]
        rows.append({"label": study.row_label(study.row(cells[0])), "entries": entries})
    return {"header": [study.arm_label(json.loads(c)) for c in columns], "rows": rows}


def equal_nfe_table(study: Study, results: dict[str, CellResult]) -> dict[str, Any] | None:
    """For studies sweeping both the solver and K: the solvers side by side at equal function evaluations."""
    if not {"solver", "flow_steps"} <= set(study.grid):
        return None
    others = tuple(d for d in ("agent", "task", *study.grid) if d not in ("solver", "flow_steps"))
    solver_names = list(dict.fromkeys(cell["solver"] for cell in study.cells()))
    groups: dict[tuple, dict[str, Cell]] = {}
    for cell in study.cells():
        nfe = solvers.nfe(cell["solver"], int(cell["flow_steps"]))
        groups.setdefault((tuple(cell[d] for d in others), nfe), {})[cell["solver"]] = cell
    order = list(dict.fromkeys(key[0] for key in groups))
    rows = []
    for (values, nfe), by_solver in sorted(groups.items(), key=lambda item: (order.index(item[0][0]), item[0][1])):
        if len(by_solver) < 2:
            continue
        row_results = {solver: results[cell_key(cell)] for solver, cell in by_solver.items()}
        best = _best(study, list(row_results.values()))
        entries = [
            f"{_entry(row_results[s], best, len(study.seeds))} (K={by_solver[s]['flow_steps']})"
            if s in by_solver
            else ""
            for s in solver_names
        ]
        names = [
            study.label(d, v) for d, v in zip(others, values, strict=True) if d != "agent" or len(study.agents) > 1
        ]
        rows.append({"label": " / ".join([*names, f"NFE {nfe}"]), "entries": entries})
    header = [study.label("solver", solver) for solver in solver_names]
    return {"header": header, "rows": rows} if rows else None


def cost_table(study: Study, results: dict[str, CellResult]) -> list[dict[str, Any]]:
    rows = []
    for cell in study.cells():
        result = results[cell_key(cell)]
        if result.timing:
            label = " / ".join(filter(None, [study.row_label(study.row(cell)), study.arm_label(study.arm(cell))]))
            rows.append({"label": label, "nfe": result.nfe_per_solve, **result.timing})
    return rows


def _subplots(count: int) -> tuple[plt.Figure, list[plt.Axes]]:
    columns = min(count, 4)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.5 * rows), squeeze=False)
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat[:count])


def _finish(figure: plt.Figure, axes: list[plt.Axes], path: Path) -> None:
    for axis in axes:
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_curves(study: Study, results: dict[str, CellResult], metric: str, path: Path) -> None:
    """Score against training step per arm and row: mean over seeds with a band of one standard deviation."""
    groups = _groups(study.cells(), study.rows)
    figure, axes = _subplots(len(groups))
    for axis, cells in zip(axes, groups.values(), strict=True):
        for cell in cells:
            curves = results[cell_key(cell)].curves
            if not curves:
                continue
            length = min(len(curve) for curve in curves.values())
            steps = np.array([step for step, _ in next(iter(curves.values()))[:length]])
            values = np.array([[value for _, value in curve[:length]] for curve in curves.values()])
            _band(axis, steps, values, f"{study.arm_label(study.arm(cell))} (n={len(values)})")
        axis.set_title(study.row_label(study.row(cells[0])) or study.name, fontsize=9)
        axis.set_xlabel("training step")
        axis.set_ylabel(metric)
    _finish(figure, axes, path)


def _band(axis: plt.Axes, x: np.ndarray, values: np.ndarray, label: str) -> None:
    mean = values.mean(axis=0)
    (line,) = axis.plot(x, mean, marker="o", markersize=3, label=label)
    if len(values) > 1:
        std = values.std(axis=0, ddof=1)
        axis.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def plot_against(
    study: Study,
    results: dict[str, CellResult],
    metric: str,
    dim: str,
    path: Path,
    along: tuple[str, ...] | None = None,
    x_of: Callable[[Cell], float] | None = None,
    x_label: str | None = None,
) -> None:
    """Final score against a swept numeric setting, one line per value of the other swept settings.

    For a derived quantity (NFE), `x_of` computes it from a cell and `along` names the settings it varies with.
    """
    along = along or (dim,)
    x_of = x_of or (lambda cell: float(cell[dim]))
    panels = _groups(study.cells(), ("agent", "task"))
    figure, axes = _subplots(len(panels))
    for axis, cells in zip(axes, panels.values(), strict=True):
        lines = _groups(cells, tuple(d for d in (*study.rows, *study.columns) if d not in ("agent", "task", *along)))
        for line_cells in lines.values():
            points = [(x_of(c), results[cell_key(c)]) for c in line_cells if results[cell_key(c)].scores]
            if not points:
                continue
            points.sort(key=lambda point: point[0])
            seeds = sorted(set.intersection(*(set(r.scores) for _, r in points)))
            if not seeds:
                continue
            values = np.array([[r.scores[s] for _, r in points] for s in seeds])
            other = {d: line_cells[0][d] for d in study.grid if d not in along}
            _band(
                axis,
                np.array([x for x, _ in points]),
                values,
                (study.row_label(other) or metric) + f" (n={len(seeds)})",
            )
        xs = [x_of(c) for c in cells]
        if min(xs) > 0 and max(xs) / min(xs) >= 16:
            axis.set_xscale("log", base=2 if dim in ("flow_steps", "nfe") else 10)
        axis.set_title(" / ".join(study.label(d, cells[0][d]) for d in ("agent", "task")), fontsize=9)
        axis.set_xlabel(x_label or dim)
        axis.set_ylabel(f"final {metric}")
    _finish(figure, axes, path)


def build_report(study: Study, runs_dir: Path, storage_url: str | None = None, out_dir: Path | None = None) -> Path:
    """Write report.md and its figures for `study`; return the report's path."""
    optuna_study = load_optuna_study(study, runs_dir, storage_url)
    if optuna_study is None:
        raise ConfigError(f"study {study.name!r} has no stored results yet; run `flowkit study run {study.name}`")
    out_dir = out_dir or study_dir(runs_dir, study.name) / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = collect(study, optuna_study)
    metric = " / ".join(sorted({study.metric_for(task) for task in study.tasks}))
    plot_curves(study, results, metric, out_dir / "score_vs_step.png")
    figures = ["score_vs_step.png"]
    for dim, values in study.grid.items():
        if len(values) > 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            plot_against(study, results, metric, dim, out_dir / f"score_vs_{dim}.png")
            figures.append(f"score_vs_{dim}.png")
    nfe_table = equal_nfe_table(study, results)
    if nfe_table is not None:
        plot_against(study, results, metric, "nfe", out_dir / "score_vs_nfe.png", along=("flow_steps",),
                     x_of=lambda cell: solvers.nfe(cell["solver"], int(cell["flow_steps"])),
                     x_label="function evaluations per solve (NFE)")  # fmt: skip
        figures.append("score_vs_nfe.png")
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True)
    text = environment.get_template("report.md.j2").render(
        study=study,
        metric=metric,
        table=table(study, results),
        nfe_table=nfe_table,
        figures=figures[1:],
        costs=cost_table(study, results),
        failures={key: r.failure for key, r in results.items() if r.failure},
        created=datetime.datetime.now().isoformat(timespec="seconds"),
        settings={
            name: ",".join(map(str, value)) if isinstance(value, list) else value
            for name, value in study.run_config(study.cells()[0], study.seeds[0]).settings().items()
        },
    )
    path = out_dir / "report.md"
    path.write_text(text)
    return path

"""`flowkit report NAME`: a study's table and figures, built from its Optuna storage.

Every number comes from the stored trials (scores, per-seed evaluation histories, timings), which the runner
wrote from the run folders' results; the report reads nothing else and computes only summaries of them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
import numpy as np
import optuna
from optuna.trial import TrialState

from analysis.statistics import Summary, summarize
from flowkit.config import ConfigError
from flowkit.datasets import task_score_metric
from studies.runner import FAILURE_ATTR, load_optuna_study, study_dir, trial_cell
from studies.study import Study, cell_key

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


def _rows(study: Study) -> list[tuple[str, str]]:
    return [(agent, task) for agent in study.agents for task in study.tasks]


def table(study: Study, results: dict[str, CellResult]) -> dict[str, Any]:
    """The study's main table: one row per (method, task), one column per arm.

    The best mean among cells with every seed is in bold; partial cells are marked and never bold.
    """
    arms = [study.arm(cell) for cell in study.cells() if (cell["agent"], cell["task"]) == _rows(study)[0]]
    rows = []
    for agent, task in _rows(study):
        cells = [results[cell_key({"agent": agent, "task": task, **arm})] for arm in arms]
        complete = [c.summary.mean for c in cells if c.summary and c.summary.n == len(study.seeds)]
        best = max(complete) if complete else None
        entries = []
        for cell in cells:
            summary = cell.summary
            if summary is None:
                entries.append(f"failed: {cell.failure}" if cell.failure else "missing")
                continue
            text = f"{summary.format()} (n={summary.n})"
            if summary.mean == best:
                text = f"**{summary.format()}** (n={summary.n})"
            if summary.n < len(study.seeds):
                text += f" partial {summary.n}/{len(study.seeds)}"
            entries.append(text)
        label = task if len(study.agents) == 1 else f"{agent} / {task}"
        rows.append({"label": label, "entries": entries})
    return {"header": [study.arm_label(arm) for arm in arms], "rows": rows}


def cost_table(study: Study, results: dict[str, CellResult]) -> list[dict[str, Any]]:
    rows = []
    for cell in study.cells():
        result = results[cell_key(cell)]
        if result.timing:
            label = study.arm_label(study.arm(cell))
            if len(_rows(study)) > 1:
                label = f"{cell['agent']} / {cell['task']}: {label}"
            rows.append({"label": label, "nfe": result.nfe_per_solve, **result.timing})
    return rows


def plot_curves(study: Study, results: dict[str, CellResult], metric: str, path: Path) -> None:
    """Score against training step per arm: mean over seeds with a band of one standard deviation."""
    rows = _rows(study)
    figure, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 3.6), squeeze=False)
    for axis, (agent, task) in zip(axes[0], rows, strict=True):
        for cell in study.cells():
            if (cell["agent"], cell["task"]) != (agent, task):
                continue
            curves = results[cell_key(cell)].curves
            if not curves:
                continue
            length = min(len(curve) for curve in curves.values())
            steps = np.array([step for step, _ in next(iter(curves.values()))[:length]])
            values = np.array([[value for _, value in curve[:length]] for curve in curves.values()])
            mean = values.mean(axis=0)
            (line,) = axis.plot(steps, mean, label=f"{study.arm_label(study.arm(cell))} (n={len(values)})")
            if len(values) > 1:
                std = values.std(axis=0, ddof=1)
                axis.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        axis.set_title(task if len(study.agents) == 1 else f"{agent} / {task}")
        axis.set_xlabel("training step")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def build_report(study: Study, runs_dir: Path, storage_url: str | None = None, out_dir: Path | None = None) -> Path:
    """Write report.md and its figures for `study`; return the report's path."""
    optuna_study = load_optuna_study(study, runs_dir, storage_url)
    if optuna_study is None:
        raise ConfigError(f"study {study.name!r} has no stored results yet; run `flowkit study run {study.name}`")
    out_dir = out_dir or study_dir(runs_dir, study.name) / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = collect(study, optuna_study)
    metrics = {study.metric or task_score_metric(task) for task in study.tasks}
    metric = " / ".join(sorted(metrics))
    plot_curves(study, results, metric, out_dir / "score_vs_step.png")
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), keep_trailing_newline=True)
    text = environment.get_template("report.md.j2").render(
        study=study,
        metric=metric,
        table=table(study, results),
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

"""The report's figures (PNG): curves over training, scores against settings, cost against K, gradient norms,
value consistency along the flow, and the policies' samples over the bandits' reward landscapes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np

from flowkit import runs
from flowkit.analysis.consistency import pool
from flowkit.analysis.cost import CostFit
from flowkit.analysis.gradients import Curve, gradient_curve
from flowkit.reports.collect import CellResult
from flowkit.reports.tables import groups
from flowkit.studies.study import Cell, Study, cell_key
from flowkit.tasks.toy import SAMPLES, TOY_TASKS, toy_points

matplotlib.use("Agg")
from matplotlib import pyplot as plt


def _subplots(count: int, width: float = 4.6, height: float = 3.5) -> tuple[plt.Figure, list[plt.Axes]]:
    columns = min(count, 4)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    for axis in axes.flat[count:]:
        axis.set_visible(False)
    return figure, list(axes.flat[:count])


def _save(figure: plt.Figure, axes: list[plt.Axes], path: Path) -> None:
    for axis in axes:
        axis.grid(alpha=0.3)
        if axis.lines:
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _band(axis: plt.Axes, x: np.ndarray, values: np.ndarray, label: str) -> None:
    """Mean over the first axis with a band of one sample standard deviation."""
    mean = values.mean(axis=0)
    (line,) = axis.plot(x, mean, marker="o", markersize=3, label=label)
    if len(values) > 1:
        std = values.std(axis=0, ddof=1)
        axis.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)


def _panel_title(study: Study, cell: Cell, dims: tuple[str, ...]) -> str:
    return " / ".join(study.label(d, cell[d]) for d in dims if cell[d] is not None) or study.name


def score_vs_step(study: Study, results: dict[str, CellResult], metric: str, path: Path) -> None:
    """Score against training step per arm and row."""
    panels = groups(study.cells(), study.rows)
    figure, axes = _subplots(len(panels))
    for axis, cells in zip(axes, panels.values(), strict=True):
        for cell in cells:
            curves = results[cell_key(cell)].curves
            if not curves:
                continue
            length = min(len(curve) for curve in curves.values())
            steps = np.array([step for step, _ in next(iter(curves.values()))[:length]])
            values = np.array([[value for _, value in curve[:length]] for curve in curves.values()])
            _band(axis, steps, values, f"{study.arm_label(study.arm(cell))} (n={len(values)})")
        axis.set(title=_panel_title(study, cells[0], study.rows), xlabel="training step", ylabel=metric)
        axis.title.set_fontsize(9)
    _save(figure, axes, path)


def score_against(
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
    panels = groups([c for c in study.cells() if all(c[d] is not None for d in along)], ("agent", "task"))
    figure, axes = _subplots(len(panels))
    for axis, cells in zip(axes, panels.values(), strict=True):
        lines = groups(cells, tuple(d for d in study.grid if d not in along))
        for line_cells in lines.values():
            points = sorted(
                ((x_of(c), results[cell_key(c)]) for c in line_cells if results[cell_key(c)].scores),
                key=lambda point: point[0],
            )
            seeds = sorted(set.intersection(*(set(r.scores) for _, r in points))) if points else []
            if not seeds:
                continue
            values = np.array([[r.scores[s] for _, r in points] for s in seeds])
            other = {d: line_cells[0][d] for d in study.grid if d not in along}
            label = (study.row_label(other) or metric) + f" (n={len(seeds)})"
            _band(axis, np.array([x for x, _ in points]), values, label)
        xs = [x_of(c) for c in cells]
        if min(xs) > 0 and max(xs) / min(xs) >= 16:
            axis.set_xscale("log", base=2 if dim in ("flow_steps", "nfe") else 10)
        axis.set(title=_panel_title(study, cells[0], ("agent", "task")), xlabel=x_label or dim)
        axis.set_ylabel(f"final {metric}")
        axis.title.set_fontsize(9)
    _save(figure, axes, path)


def cost_vs_steps(fits: dict[str, tuple[list[tuple[int, float]], CostFit]], path: Path) -> None:
    """Every run's ms per update against K, with the OLS line of each method."""
    figure, axes = _subplots(1, width=6.5, height=4.2)
    axis = axes[0]
    for label, (points, fit) in fits.items():
        steps = np.array([k for k, _ in points])
        (line,) = axis.plot(steps, [ms for _, ms in points], "o", alpha=0.6, markersize=4)
        grid = np.linspace(steps.min(), steps.max(), 50)
        axis.plot(grid, fit.predict(grid), color=line.get_color(), label=f"{label}: {fit.slope:.2f} ms/step")
    axis.set(xlabel="flow steps K", ylabel="ms per update (median of each run)")
    _save(figure, axes, path)


def policy_gradient_curve(run_dir: Path) -> tuple[str, Curve] | None:
    """The policy network's name (as the run's result names it) and its gradient norm over training; None for
    a run that did not complete (or completed before results named their policy network)."""
    result = runs.load_result(run_dir) if run_dir.exists() else None
    if result is None or "policy_network" not in result:
        return None
    return result["policy_network"], gradient_curve(run_dir, result["policy_network"])


def gradient_norms(study: Study, results: dict[str, CellResult], path: Path) -> list[str]:
    """The policy network's gradient norm over training per arm (mean over seeds, log scale); returns the
    networks plotted. Read from the run folders."""
    panels = groups(study.cells(), study.rows)
    figure, axes = _subplots(len(panels))
    plotted = set()
    for axis, cells in zip(axes, panels.values(), strict=True):
        for cell in cells:
            found = [policy_gradient_curve(d) for d in results[cell_key(cell)].run_dirs.values()]
            found = [(network, curve) for network, curve in filter(None, found) if len(curve.steps)]
            if not found:
                continue
            network = found[0][0]
            plotted.add(network)
            length = min(len(curve.steps) for _, curve in found)
            values = np.array([curve.mean[:length] for _, curve in found])
            label = f"{study.arm_label(study.arm(cell))}: {network} (n={len(values)})"
            axis.plot(found[0][1].steps[:length], np.exp(np.log(np.maximum(values, 1e-12)).mean(axis=0)), label=label)
        axis.set_yscale("log")
        axis.set(title=_panel_title(study, cells[0], study.rows), xlabel="training step")
        axis.set_ylabel("gradient norm of the policy network")
        axis.title.set_fontsize(9)
    _save(figure, axes, path)
    return sorted(plotted)


def consistency(study: Study, results: dict[str, CellResult], path: Path) -> bool:
    """Value gap along the flow against tau per arm: mean over seeds with 95% intervals over seeds."""
    panels = {
        k: v for k, v in groups(study.cells(), study.rows).items() if any(results[cell_key(c)].consistency for c in v)
    }
    if not panels:
        return False
    figure, axes = _subplots(len(panels))
    for axis, cells in zip(axes, panels.values(), strict=True):
        for cell in cells:
            records = list(results[cell_key(cell)].consistency.values())
            if not records:
                continue
            curve = pool(records)
            (line,) = axis.plot(curve.tau, curve.mean, marker="o", markersize=3, label=study.arm_label(study.arm(cell)))
            axis.fill_between(curve.tau, curve.low, curve.high, color=line.get_color(), alpha=0.2)
        axis.set(title=_panel_title(study, cells[0], study.rows), xlabel="flow time tau")
        axis.set_ylabel("|W(s, Psi(x_tau), 1) - W(s, x_tau, tau)|")
        axis.title.set_fontsize(9)
    _save(figure, axes, path)
    return True


def samples(study: Study, results: dict[str, CellResult], path: Path) -> bool:
    """The first seed's policy samples over each bandit's data coloured by reward (Q-Flow Fig. 2, 10)."""
    cells = [c for c in study.cells() if c["task"] in TOY_TASKS]
    found = []
    for cell in cells:
        run_dirs = results[cell_key(cell)].run_dirs
        if run_dirs and (run_dirs[min(run_dirs)] / SAMPLES).exists():
            found.append((cell, np.load(run_dirs[min(run_dirs)] / SAMPLES)))
    if not found:
        return False
    found = found[:24]
    figure, axes = _subplots(len(found), width=3.2, height=3.2)
    for axis, (cell, points) in zip(axes, found, strict=True):
        data, rewards = toy_points(cell["task"])
        axis.scatter(data[:, 0], data[:, 1], c=rewards, s=1, cmap="viridis", alpha=0.3)
        axis.scatter(points[:, 0], points[:, 1], s=2, color="crimson")
        axis.set(xlim=(-4, 4), ylim=(-4, 4), aspect="equal", xticks=[], yticks=[])
        title = study.cell_label(cell)
        axis.set_title(title, fontsize=7)
    _save(figure, axes, path)
    return True

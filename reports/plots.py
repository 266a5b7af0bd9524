"""The report's figures (PNG): curves over training, scores against settings, cost against K, gradient norms,
value consistency along the flow, the policies' samples over the bandits' reward landscapes, and the score over
the settings that matter most (slices and a contour)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib
import numpy as np
import scipy.interpolate
import scipy.spatial

from flowkit import runs
from flowkit.analysis.consistency import pool
from flowkit.analysis.cost import CostFit
from flowkit.analysis.gradients import Curve, gradient_curve
from flowkit.analysis.importance import Axis
from flowkit.reports import layout
from flowkit.reports.collect import CellResult
from flowkit.reports.importance import SettingGroup
from flowkit.reports.tables import groups, ranked, support_note
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
    return " / ".join(layout.label(study, d, cell[d]) for d in dims if cell[d] is not None) or study.name


def score_vs_step(study: Study, results: dict[str, CellResult], metric: str, path: Path) -> None:
    """Score against training step per arm and row."""
    panels = groups(study.cells(), layout.rows(study))
    figure, axes = _subplots(len(panels))
    for axis, cells in zip(axes, panels.values(), strict=True):
        for cell in cells:
            curves = results[cell_key(cell)].curves
            if not curves:
                continue
            length = min(len(curve) for curve in curves.values())
            steps = np.array([step for step, _ in next(iter(curves.values()))[:length]])
            values = np.array([[value for _, value in curve[:length]] for curve in curves.values()])
            _band(axis, steps, values, f"{layout.arm_label(study, layout.arm_of(study, cell))} (n={len(values)})")
        switch = online_switch(study, cells[0])
        if switch is not None:
            axis.axvline(switch, color="0.4", linestyle=":", linewidth=1, label="online from here")
        axis.set(title=_panel_title(study, cells[0], layout.rows(study)), xlabel="training step", ylabel=metric)
        axis.title.set_fontsize(9)
    _save(figure, axes, path)


def online_switch(study: Study, cell: Cell) -> int | None:
    """The step where a cell's runs switch from offline to online training, if they fine-tune online."""
    train = study.run_config(cell, study.seeds[0]).train
    return train.steps if train.online_steps else None


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
            label = (layout.row_label(study, other) or metric) + f" (n={len(seeds)})"
            _band(axis, np.array([x for x, _ in points]), values, label)
        xs = [x_of(c) for c in cells]
        if min(xs) > 0 and max(xs) / min(xs) >= 16:
            axis.set_xscale("log", base=2 if dim in ("flow_steps", "nfe") else 10)
        axis.set(title=_panel_title(study, cells[0], ("agent", "task")), xlabel=x_label or dim)
        axis.set_ylabel(f"final {metric}")
        axis.title.set_fontsize(9)
    _save(figure, axes, path)


def tradeoff(study: Study, results: dict[str, CellResult], metric: str, dim: str, path: Path) -> bool:
    """Per method and task that recorded FQL's trade-off: the final score (left axis) and the one-step policy's
    distance to the flow's actions (right axis) against the swept coefficient, mean over seeds with one std."""
    with_tradeoff = [
        c for c in study.cells() if any("tradeoff_distance" in f for f in results[cell_key(c)].finals.values())
    ]
    panels = groups(with_tradeoff, ("agent", "task"))
    if not panels:
        return False
    figure, axes = _subplots(len(panels))
    for axis, cells in zip(axes, panels.values(), strict=True):
        points = sorted(((float(c[dim]), results[cell_key(c)]) for c in cells), key=lambda point: point[0])
        seeds = sorted(set.intersection(*(set(r.finals) for _, r in points)))
        x = np.array([value for value, _ in points])
        _band(axis, x, np.array([[r.scores[s] for _, r in points] for s in seeds]), f"final {metric} (n={len(seeds)})")
        distance_axis = axis.twinx()
        distances = np.array([[r.finals[s]["tradeoff_distance"] for _, r in points] for s in seeds])
        distance_axis.plot(x, distances.mean(axis=0), color="tab:red", marker="s", markersize=3, linestyle="--")
        distance_axis.set_ylabel("one-step policy's distance to the flow", color="tab:red")
        if x.min() > 0 and x.max() / x.min() >= 16:
            axis.set_xscale("log")
        axis.set(title=_panel_title(study, cells[0], ("agent", "task")), xlabel=dim, ylabel=f"final {metric}")
        axis.title.set_fontsize(9)
    _save(figure, axes, path)
    return True


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
    panels = groups(study.cells(), layout.rows(study))
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
            label = f"{layout.arm_label(study, layout.arm_of(study, cell))}: {network} (n={len(values)})"
            axis.plot(found[0][1].steps[:length], np.exp(np.log(np.maximum(values, 1e-12)).mean(axis=0)), label=label)
        axis.set_yscale("log")
        axis.set(title=_panel_title(study, cells[0], layout.rows(study)), xlabel="training step")
        axis.set_ylabel("gradient norm of the policy network")
        axis.title.set_fontsize(9)
    _save(figure, axes, path)
    return sorted(plotted)


def consistency(study: Study, results: dict[str, CellResult], path: Path) -> bool:
    """Value gap along the flow against tau per arm: mean over seeds with 95% intervals over seeds."""
    panels = {
        k: v
        for k, v in groups(study.cells(), layout.rows(study)).items()
        if any(results[cell_key(c)].consistency for c in v)
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
            (line,) = axis.plot(
                curve.tau,
                curve.mean,
                marker="o",
                markersize=3,
                label=layout.arm_label(study, layout.arm_of(study, cell)),
            )
            axis.fill_between(curve.tau, curve.low, curve.high, color=line.get_color(), alpha=0.2)
        axis.set(title=_panel_title(study, cells[0], layout.rows(study)), xlabel="flow time tau")
        axis.set_ylabel("|W(s, Psi(x_tau), 1) - W(s, x_tau, tau)|")
        axis.title.set_fontsize(9)
    _save(figure, axes, path)
    return True


def samples(study: Study, results: dict[str, CellResult], path: Path) -> bool:
    """The first seed's policy samples over each bandit's data coloured by reward (Q-Flow Fig. 2, 10), a panel per
    cell with results: a grid's in declared order, a search's best first."""
    ordered = ranked(study, results) if study.search is not None else results.values()
    found = []
    for cell in (result.cell for result in ordered if result.cell["task"] in TOY_TASKS):
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
        support = support_note(study, results[cell_key(cell)])
        axis.set_title(
            f"{layout.cell_label(study, cell)}\n{support}" if support else layout.cell_label(study, cell), fontsize=7
        )
    _save(figure, axes, path)
    return True


def _setting_axis(axis: plt.Axes, study: Study, name: str, setting: Axis, along: str = "x") -> None:
    """Label a plot's axis for a setting: log scale for a log range, the values' labels for choices."""
    if setting.choices is not None:
        labels = [layout.label(study, name, value).removeprefix(f"{name}=") for value in setting.choices]
        getattr(axis, f"set_{along}ticks")(range(len(labels)), labels, fontsize=7)
    elif setting.log:
        getattr(axis, f"set_{along}scale")("log")
    elif setting.integer:
        getattr(axis, f"{along}axis").set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    getattr(axis, f"set_{along}label")(name)


def _plotted(setting: Axis, value) -> float:
    """Where a value is drawn: its index among the choices, else the value (a log axis spaces it)."""
    return setting.position(value) if setting.choices is not None else float(value)


def slices(study: Study, grouped: list[SettingGroup], metric: str, path: Path) -> None:
    """Score against each varied setting, a row of panels per method and task, most important first: each cell a
    point at its mean over seeds, with a bar of one standard deviation and its seeds as dots."""
    columns = max(len(group.importances) for group in grouped)
    figure, grid = plt.subplots(len(grouped), columns, figsize=(4.0 * columns, 3.2 * len(grouped)), squeeze=False)
    drawn = []
    for row, group in zip(grid, grouped, strict=True):
        for axis in row[len(group.importances) :]:
            axis.set_visible(False)
        for axis, item in zip(row, group.importances, strict=False):
            _slice(axis, study, group, item.setting)
            title = f"fANOVA {item.fanova_mean:.2f}"
            axis.set(title=f"{group.label}: {title}" if len(grouped) > 1 else title, ylabel=f"final {metric}")
            axis.title.set_fontsize(9)
            drawn.append(axis)
    _save(figure, drawn, path)


def _slice(axis: plt.Axes, study: Study, group: SettingGroup, name: str) -> None:
    setting = group.axes[name]
    for index, result in enumerate(group.results):
        x = _plotted(setting, result.cell[name])
        summary = result.summary
        spread = 0.0 if summary.n < 2 else summary.std
        labels = ("cell: mean ± std", "seeds") if index == 0 else (None, None)
        axis.errorbar(x, summary.mean, spread, fmt="o", color="tab:blue", ms=4, alpha=0.7, label=labels[0])
        axis.plot([x] * summary.n, result.score_list, ".", color="tab:gray", ms=3, alpha=0.6, label=labels[1])
    _setting_axis(axis, study, name, setting)


def _drawn(setting: Axis, positions: np.ndarray) -> np.ndarray:
    """Where positions along a setting's axis are drawn: indices of choices as they are, numbers as values."""
    return positions if setting.choices is not None else setting.value_at(positions)


def _cell_means(group: SettingGroup, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the two settings' values (log10 on a log axis) and the mean of the cells' scores at each."""
    at: dict[tuple[float, float], list[float]] = {}
    for result in group.results:
        position = tuple(group.axes[n].position(result.cell[n]) for n in (x_name, y_name))
        at.setdefault(position, []).append(result.summary.mean)
    return np.array(list(at)), np.array([np.mean(values) for values in at.values()])


def contour(study: Study, grouped: list[SettingGroup], metric: str, path: Path) -> None:
    """The score over the two most important settings (by fANOVA), a panel per method and task: the mean of the
    cells at each pair of values as points, linearly interpolated between them (in log10 on a log axis)."""
    figure, axes = _subplots(len(grouped), width=5.2, height=4.2)
    colours = "viridis_r" if study.lower_is_better() else "viridis"
    for axis, group in zip(axes, grouped, strict=True):
        x_name, y_name = (item.setting for item in group.importances[:2])
        x_axis, y_axis = group.axes[x_name], group.axes[y_name]
        positions, means = _cell_means(group, x_name, y_name)
        norm = matplotlib.colors.Normalize(means.min(), means.max())

        grid_x, grid_y = np.meshgrid(*(np.linspace(p.min(), p.max(), 100) for p in positions.T))
        try:
            surface = scipy.interpolate.griddata(positions, means, (grid_x, grid_y), method="linear")
            axis.contourf(_drawn(x_axis, grid_x), _drawn(y_axis, grid_y), surface, levels=12, cmap=colours, norm=norm)
        except scipy.spatial.QhullError:  # the cells lie on a line: no surface between them, only the points
            pass
        points = axis.scatter(
            _drawn(x_axis, positions[:, 0]), _drawn(y_axis, positions[:, 1]), c=means, cmap=colours, norm=norm,
            edgecolors="black", s=30,
        )  # fmt: skip
        figure.colorbar(points, ax=axis, label=f"final {metric}, mean over cells")
        axis.use_sticky_edges = False  # a margin around the surface, so the cells on its edges show whole
        axis.margins(0.04)
        _setting_axis(axis, study, x_name, x_axis)
        _setting_axis(axis, study, y_name, y_axis, along="y")
        axis.set_title(group.label, fontsize=9)
    _save(figure, axes, path)

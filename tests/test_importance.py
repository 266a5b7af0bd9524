"""Importance of a study's settings: fANOVA and PED-ANOVA rank the setting that drives the score first, and the
report shows them, the best cell and their figures for studies varying two or more settings (runs faked)."""

import base64
import itertools
import json
import math
import statistics
import zlib
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import numpy as np
import optuna_dashboard
import pytest

import flowkit.studies.runner as runner
import flowkit.studies.runner.trial as runner_trial
from flowkit.analysis.importance import Axis, Point, grid_axis, importances
from flowkit.reports import comparisons, layout, sections
from flowkit.reports.builder import build_report
from flowkit.reports.parts import ReportData
from flowkit.reports.setting_effects import SettingImportance
from flowkit.studies import load_study
from flowkit.studies.runner.storage import default_journal
from flowkit.studies.study import Study
from tests.helpers import stored_trials, tiny_study
from tests.test_report import markdown_table

ALPHAS = (0.1, 1.0, 10.0, 100.0)
SOLVERS = ("euler", "midpoint", "rk4")


def noise(*keys) -> float:
    """A fixed draw in [-1, 1] per key (the same for the same cell and seed)."""
    return float(np.random.default_rng(zlib.crc32(repr(keys).encode())).uniform(-1, 1))


def alpha_driven(alpha: float) -> float:
    """A score that peaks at alpha = 10 and falls by 1 per decade around it."""
    return 1.0 - abs(math.log10(alpha) - 1.0)


def test_the_setting_that_drives_the_score_ranks_first():
    axes = {"alpha": grid_axis(ALPHAS), "solver": grid_axis(SOLVERS)}
    points = [
        Point({"alpha": alpha, "solver": solver}, alpha_driven(alpha) + 0.02 * noise(alpha, solver))
        for alpha, solver in itertools.product(ALPHAS, SOLVERS)
    ]
    found = {item.setting: item for item in importances(points, axes, lower_is_better=False)}
    alpha, solver = found["alpha"], found["solver"]
    assert [item for item in found] == ["alpha", "solver"], "most important first"
    assert alpha.fanova_mean > 0.8 > 0.2 > solver.fanova_mean, (alpha, solver)
    assert alpha.fanova_mean + solver.fanova_mean == pytest.approx(1.0), "shares of the importance"
    assert 0 <= alpha.fanova_std < 0.05, f"5 forest seeds agree: std {alpha.fanova_std}"
    assert alpha.ped_anova > 0.9 > 0.1 > solver.ped_anova, (alpha, solver)


def test_a_grid_setting_is_numeric_where_its_values_are_numbers():
    assert grid_axis(ALPHAS) == Axis(0.1, 100.0, log=True), "spans a factor of 1000: log"
    assert grid_axis((1, 2, 4)) == Axis(1.0, 4.0, log=False, integer=True), "a factor of 4: linear"
    assert grid_axis(SOLVERS) == Axis(choices=SOLVERS)
    assert grid_axis((True, False)).choices == (True, False), "booleans are choices, not numbers"
    assert grid_axis(("64,64", "256,256")).choices == ("64,64", "256,256")


def test_ped_anova_looks_at_the_best_cells_in_the_studys_direction():
    """Solver p sets the score to 0 whatever alpha; the others 2 + log10(alpha). Maximising, the best cells are
    alpha = 100 (alpha matters); minimising, they are solver p's, with every alpha (solver matters)."""
    axes = {"alpha": grid_axis(ALPHAS), "solver": grid_axis(("p", "q", "r", "s"))}
    points = [
        Point({"alpha": alpha, "solver": solver}, 0.0 if solver == "p" else 2.0 + math.log10(alpha))
        for alpha, solver in itertools.product(ALPHAS, ("p", "q", "r", "s"))
    ]
    highest = {item.setting: item.ped_anova for item in importances(points, axes, lower_is_better=False)}
    lowest = {item.setting: item.ped_anova for item in importances(points, axes, lower_is_better=True)}
    assert highest["alpha"] > highest["solver"], f"maximising: {highest}"
    assert lowest["solver"] > 0.9 > 0.1 > lowest["alpha"], f"minimising: {lowest}"


def fake_train(config, run_dir, **kwargs):
    """A run's result without training: reward peaks at alpha = 10, the solver and flow steps add noise; energy
    distance is its negative (lower is better)."""
    agent = config.agent_config
    reward = alpha_driven(agent.alpha) + 0.05 * noise(agent.alpha, agent.solver, agent.flow_steps, config.seed)
    metrics = {"reward_mean": reward, "reward_in_support": reward, "support": 1.0, "energy_distance": -reward}
    ms = 1.0 + agent.flow_steps + 0.1 * noise(agent.solver, agent.alpha, config.seed)
    timing = {"compile_s": 1.0, "train_s": 1.0, "eval_s": 0.1, "wall_s": 2.1, "ms_per_update": ms}
    return {
        "final": metrics,
        "eval_history": [{"step": 100, **metrics}],
        "cost": {"gflop_per_update": 0.1, "peak_memory_mb": 1.0},
        "timing": timing,
        "nfe_per_solve": agent.flow_steps,
    }


def faked_study(monkeypatch, runs_dir, **changes) -> Study:
    """A tiny study, run with faked runs."""
    monkeypatch.setattr(runner_trial, "train", fake_train)
    study = tiny_study(**changes)
    runner.run_study(study, runs_dir, progress=False)
    return study


def faked_report(monkeypatch, runs_dir, **changes) -> tuple[Study, Path]:
    """The report of a faked study, without the aggregate section (its bootstraps would take most of this test's
    time, and test_report.py tests it)."""
    study = faked_study(monkeypatch, runs_dir, **changes)
    monkeypatch.setattr(
        sections, "SECTIONS", [s for s in sections.SECTIONS if not isinstance(s, comparisons.Aggregate)]
    )
    return study, build_report(study, runs_dir)


def stored_means(study, runs_dir) -> dict[tuple, list[float]]:
    """(alpha, solver, flow_steps) -> the stored per-seed scores."""
    means = {}
    for trial in stored_trials(study, runs_dir):
        records = runner.seed_records(trial)
        means[trial.params["alpha"], trial.params["solver"], trial.params["flow_steps"]] = [
            records[seed].score for seed in sorted(records)
        ]
    return means


@pytest.mark.slow
@pytest.mark.parametrize("metric", ["reward_mean", "energy_distance"])
def test_a_study_varying_three_settings_reports_their_importance(monkeypatch, tmp_path, metric):
    grid = {"alpha": ALPHAS, "solver": SOLVERS, "flow_steps": (2, 4)}
    study, path = faked_report(monkeypatch, tmp_path, name="three", grid=grid, compare=("solver",), metric=metric)
    text, html = path.read_text(), (path.parent / "report.html").read_text()
    assert "## Importance of the settings" in text and "<h2>Importance of the settings</h2>" in html
    rows = markdown_table(text, "Setting")
    assert list(rows) == ["alpha", "solver", "flow_steps"] or list(rows) == ["alpha", "flow_steps", "solver"], rows
    fanova = {name: float(entries[0].split(" ± ")[0]) for name, entries in rows.items()}
    ped_anova = {name: float(entries[1]) for name, entries in rows.items()}
    assert fanova["alpha"] > 0.8 and max(fanova["solver"], fanova["flow_steps"]) < 0.1, fanova
    assert ped_anova["alpha"] > max(ped_anova["solver"], ped_anova["flow_steps"]), ped_anova

    means = stored_means(study, tmp_path)
    pick = min if metric == "energy_distance" else max
    best = pick(means, key=lambda cell: statistics.fmean(means[cell]))
    assert best[0] == 10.0, f"the faked score peaks at alpha = 10: best cell {best}"
    (row,) = markdown_table(text, "Method / task").values()
    scores = means[best]
    assert row[0] == f"alpha=10.0, {layout.label(study, 'solver', best[1])}, flow_steps={best[2]}", (row, best)
    assert row[1].startswith(f"{statistics.fmean(scores):.3f} ± {statistics.stdev(scores):.3f}"), (row, scores)
    assert ("lowest" in text) == (metric == "energy_distance")

    for name in ("importance_slices.png", "importance_contour.png"):
        png = (path.parent / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in text, f"{name} is referenced in the Markdown"
        assert base64.b64encode(png).decode() in html, f"{name} is embedded in the HTML"


@pytest.mark.slow
def test_a_study_varying_one_setting_has_no_importance(monkeypatch, tmp_path):
    _, path = faked_report(monkeypatch, tmp_path, grid={"alpha": ALPHAS})
    assert "Importance of the settings" not in path.read_text()
    assert not (path.parent / "importance_slices.png").exists()


def dashboard_get(app, path: str) -> tuple[str, bytes]:
    """A GET request to optuna-dashboard's WSGI app, as a browser makes it: its status and body."""
    environ: dict = {"PATH_INFO": path, "HTTP_ACCEPT_ENCODING": "gzip"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda line, headers, exc_info=None: status.append(line)))
    return status[0], body


def test_optuna_dashboard_reads_a_kit_studys_journal(monkeypatch, tmp_path):
    """The dashboard's server, opened on the study's journal as `optuna-dashboard runs/NAME/optuna.journal` opens
    it, serves the study, every cell's parameters, score and attributes, and its own importances; the per-seed
    records come as a text cut at 1024 characters (docs/reports.md)."""
    study = faked_study(monkeypatch, tmp_path, name="two", grid={"alpha": ALPHAS, "solver": SOLVERS})
    app = optuna_dashboard.wsgi(str(default_journal(tmp_path, study.name)))
    status, body = dashboard_get(app, "/api/studies")
    (summary,) = json.loads(body)["study_summaries"]
    assert status == "200 OK" and summary["study_name"] == "two" and summary["directions"] == ["maximize"]
    assert "flowkit:definition" in {attr["key"] for attr in summary["user_attrs"]}

    detail = json.loads(dashboard_get(app, f"/api/studies/{summary['study_id']}")[1])
    stored = {trial.number: trial for trial in stored_trials(study, tmp_path)}
    assert len(detail["trials"]) == len(study.cells()) == len(stored)
    for trial in detail["trials"]:
        expected = stored[trial["number"]]
        params = {param["name"]: param["param_external_value"] for param in trial["params"]}
        assert params == {name: str(value) for name, value in expected.params.items()}, (params, expected.params)
        assert trial["values"] == [pytest.approx(expected.value)], (trial["values"], expected.value)
        attrs = {attr["key"]: attr["value"] for attr in trial["user_attrs"]}
        assert attrs["metric"] == "reward_in_support"
        assert float(attrs["wall_time_s"]) == expected.user_attrs["wall_time_s"]
        assert len(attrs["seeds"]) == 1024 < len(json.dumps(expected.user_attrs["seeds"])), "records are cut"

    importances = json.loads(dashboard_get(app, f"/api/studies/{summary['study_id']}/param_importances")[1])
    names = [item["name"] for item in importances["param_importances"][0]]
    assert names[0] == "alpha", f"the dashboard's own PED-ANOVA ranks alpha first too: {names}"
    page, script = dashboard_get(app, "/dashboard"), dashboard_get(app, "/static/bundle.js")
    assert page[0] == script[0] == "200 OK" and b"/static/bundle.js" in page[1], "the page and its script are served"


def test_the_section_applies_where_one_method_varies_two_settings():
    """ode-solver-methods sweeps the solver and K for each method; bptt-gradients sweeps alpha for FBRAC and
    lambda for Q-Flow, one setting per method; ode-solver sweeps only the solver."""
    names = ("ode-solver-methods", "bptt-gradients", "ode-solver")
    applies = {name: SettingImportance().applies(ReportData(load_study(name), {})) for name in names}
    assert applies == {"ode-solver-methods": True, "bptt-gradients": False, "ode-solver": False}, applies

"""The report's table and figure come from a real (small) study, with the storage's numbers."""

import re
import statistics

import pytest
from optuna.trial import TrialState

import studies.runner as runner
from flowkit.training import train
from reports.builder import build_report
from tests.helpers import TINY, stored_trials, tiny_study


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    study = tiny_study(tasks=("moons", "eight-gaussians"))
    runner.run_study(study, runs_dir, progress=False)
    return study, runs_dir


def test_report_table_has_every_arm_and_the_stored_numbers(finished_study):
    study, runs_dir = finished_study
    text = build_report(study, runs_dir).read_text()
    assert "| Task | Euler (Default) | RK4 |" in text
    main_table = text.split("| Task |")[1].split("\n\n")[0]
    rows = {line.split("|")[1].strip(): line for line in main_table.splitlines()[2:]}
    assert set(rows) == {"moons", "eight-gaussians"}
    for trial in stored_trials(study, runs_dir):
        assert trial.state == TrialState.COMPLETE
        scores = [entry["score"] for entry in trial.user_attrs["seeds"].values()]
        expected = f"{statistics.fmean(scores):.3f} ± {statistics.stdev(scores):.3f}"
        assert f"{expected}** (n=2)" in rows[trial.params["task"]] or f"{expected} (n=2)" in rows[trial.params["task"]]
    for row in rows.values():
        means = [float(m) for m in re.findall(r"(-?\d+\.\d+) ±", row)]
        bold = float(re.search(r"\*\*(-?\d+\.\d+) ±", row).group(1))
        assert bold == max(means), "the best mean of each row is in bold"


def test_report_figure_and_cost_table(finished_study):
    study, runs_dir = finished_study
    path = build_report(study, runs_dir)
    figure = path.parent / "score_vs_step.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = path.read_text()
    assert re.search(r"Euler \(Default\) \| 10 \| \d+\.\d\d \|", text)
    assert re.search(r"RK4 \| 40 \| \d+\.\d\d \|", text), "RK4 costs 4 evaluations per step at K = 10"


def test_partial_and_failed_cells_are_marked(tmp_path, monkeypatch):
    study = tiny_study()
    calls = []

    def diverge_on_rk4(config, run_dir, **kwargs):
        calls.append(config.seed)
        if config.agent_config.solver == "rk4" and config.seed == 1:
            raise runner.DivergedError(42, ["critic_loss"])
        return train(config, run_dir, **kwargs)

    monkeypatch.setattr(runner, "train", diverge_on_rk4)
    runner.run_study(study, tmp_path, progress=False)
    text = build_report(study, tmp_path).read_text()
    assert "partial 1/2" in text
    assert "diverged at update 42: critic_loss became non-finite" in text
    assert calls == [0, 1, 0, 1]


def test_solvers_are_compared_at_equal_function_evaluations(tmp_path):
    study = tiny_study(
        name="nfe", grid={"solver": ("euler", "midpoint"), "flow_steps": (1, 2)}, compare=("solver",), seeds=(0,)
    )
    runner.run_study(study, tmp_path, progress=False)
    text = build_report(study, tmp_path).read_text()
    assert "| Task | Euler (Default) | Midpoint |" in text
    assert "| moons / flow_steps=1 |" in text and "| moons / flow_steps=2 |" in text
    nfe_table = text.split("## At equal function evaluations")[1]
    row = next(line for line in nfe_table.splitlines() if line.startswith("| moons / NFE 2 |"))
    assert "(K=2)" in row.split("|")[2] and "(K=1)" in row.split("|")[3], "Euler K=2 beside midpoint K=1"
    assert (tmp_path / "nfe" / "report" / "score_vs_nfe.png").exists()


def test_methods_as_columns(tmp_path):
    study = tiny_study(
        name="classes",
        agents=("gaussian-bc", "flow-bc"),
        grid={},
        seeds=(0,),
        labels={"agent": {"gaussian-bc": "Gaussian", "flow-bc": "Full Flow"}},
        fixed={k: v for k, v in TINY.items() if k != "critic_hidden"},
        metric="support",
    )
    runner.run_study(study, tmp_path, progress=False)
    text = build_report(study, tmp_path).read_text()
    assert "| Task | Gaussian | Full Flow |" in text and "Score: `support`" in text
    for trial in stored_trials(study, tmp_path):
        score = trial.user_attrs["seeds"]["0"]["final"]["support"]
        assert f"{score:.3f} ± n/a" in text

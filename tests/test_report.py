"""Reports built from real (small) studies carry every arm, every seed count and the storage's numbers."""

import ast
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas
import pytest
import scipy.stats
from optuna.trial import TrialState

import flowkit
import flowkit.studies.runner as runner
import flowkit.studies.runner.trial as runner_trial
from flowkit.cli import main
from flowkit.reports import layout
from flowkit.reports.builder import build_report
from flowkit.reports.collect import CellResult, read_seeds
from flowkit.reports.tables import aggregate_table, main_table
from flowkit.settings import ConfigError
from flowkit.studies import load_study
from flowkit.studies.runner.records import Cost, SeedRecord, Timing
from flowkit.studies.study import cell_key
from flowkit.training import DivergedError, train
from tests.helpers import TINY, few_bootstrap_samples, stored_trials, tiny_study

SHARED = pytest.mark.xdist_group("finished-study")
"""The tests reading the finished study run on one pytest worker, which trains it once."""


@pytest.fixture(scope="module", autouse=True)
def _few_bootstrap_samples():
    with few_bootstrap_samples():
        yield


@pytest.fixture(scope="module")
def finished_study(tmp_path_factory):
    runs_dir = tmp_path_factory.mktemp("runs")
    study = tiny_study(tasks=("moons", "eight-gaussians"))
    runner.run_study(study, runs_dir, progress=False)
    return study, runs_dir, build_report(study, runs_dir)


def stored_scores(study, runs_dir) -> dict[tuple[str, str], list[float]]:
    """(task, solver) -> the per-seed scores the storage holds, in seed order."""
    scores = {}
    for trial in stored_trials(study, runs_dir):
        assert trial.state == TrialState.COMPLETE
        records = runner.seed_records(trial)
        scores[trial.params["task"], trial.params["solver"]] = [records[s].score for s in sorted(records)]
    return scores


def markdown_table(text: str, corner: str) -> dict[str, list[str]]:
    """The first Markdown table whose corner cell is `corner`, as row label -> cell texts."""
    block = text.split(f"| {corner} |")[1].split("\n\n")[0]
    return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in block.splitlines()[2:]}


@SHARED
@pytest.mark.slow
def test_main_table_has_every_arm_seed_count_and_the_stored_numbers(finished_study):
    study, runs_dir, path = finished_study
    text, html, tex = ((path.parent / name).read_text() for name in ("report.md", "report.html", "table.tex"))
    assert "| Task | Euler (Default) | RK4 |" in text
    rows = markdown_table(text, "Task")
    assert list(rows) == ["moons", "eight-gaussians", "IQM [95% CI]"]
    scores = stored_scores(study, runs_dir)
    for (task, solver), values in scores.items():
        cell = rows[task][["euler", "rk4"].index(solver)]
        expected = f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"
        assert re.fullmatch(rf"(\*\*)?{expected}(\*\*)?\S* \(n=2\) \(support \d\.\d\d\)", cell), (cell, expected)
        assert expected in html and expected.replace("±", "$\\pm$") in tex
    for task in study.tasks:
        means = [statistics.fmean(scores[task, solver]) for solver in ("euler", "rk4")]
        bold = [cell.startswith("**") for cell in rows[task]]
        assert bold == [m == max(means) for m in means], "the best mean of each row is in bold"
    for index, solver in enumerate(("euler", "rk4")):
        pooled = scores["moons", solver] + scores["eight-gaussians", solver]
        assert rows["IQM [95% CI]"][index].startswith(f"{scipy.stats.trim_mean(pooled, 0.25):.3f} [")
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\textbf{" in tex


@SHARED
@pytest.mark.slow
def test_figures_and_cost_table(finished_study):
    study, runs_dir, path = finished_study
    for figure in ("score_vs_step", "gradient_norms", "consistency", "samples"):
        assert (path.parent / f"{figure}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
        assert f"]({figure}.png)" in path.read_text()
    costs = markdown_table(path.read_text(), "Cell")
    assert costs["moons / Euler (Default)"][0] == "10" and costs["moons / RK4"][0] == "40", "NFE: K and 4K"
    for trial in stored_trials(study, runs_dir):
        label = f"{trial.params['task']} / {'Euler (Default)' if trial.params['solver'] == 'euler' else 'RK4'}"
        gflop = runner.seed_records(trial)[0].cost.gflop_per_update
        assert costs[label][3] == f"{gflop:.4f}"
    euler, rk4 = (float(costs[f"moons / {arm}"][3]) for arm in ("Euler (Default)", "RK4"))
    assert rk4 > euler, f"RK4's update does more arithmetic than Euler's: {rk4} vs {euler} GFLOP"
    # FQL's networks at TINY widths (32, 32) on a bandit (obs 1, action 2), counted layer by layer.
    obs, act = 1, 2
    critic = 2 * ((obs + act) * 32 + 32 + 32 * 32 + 32 + 32 + 1 + 4 * 32)
    flow = (obs + act + 1) * 32 + 32 + 32 * 32 + 32 + 32 * act + act
    onestep = flow - 32
    expected = f"critic {critic:,} · flow {flow:,} · onestep {onestep:,}"
    assert costs["moons / RK4"][6:] == [expected, f"{critic + flow + onestep:,}"], (costs["moons / RK4"], expected)


@SHARED
@pytest.mark.slow
def test_sections_follow_the_study_declaration(finished_study):
    """The tiny study sweeps the solver but not K, on bandits, with two seeds: no equal-NFE table nor cost
    against K; an aggregate, FQL's value bias against the bandits' one-step returns, the consistency of FQL's flow and
    the bandits' samples."""
    _, _, path = finished_study
    titles = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert titles == [
        "# Study `tiny`",
        "## Conclusions",
        "## Aggregate over tasks",
        "## Figures",
        "## Value bias against returns",
        "## Cost per update",
        "## Settings of the first cell",
    ], titles
    assert not (path.parent / "cost_vs_flow_steps.png").exists() and not (path.parent / "score_vs_nfe.png").exists()
    html = (path.parent / "report.html").read_text()
    for title in ("Aggregate over tasks", "Figures", "Cost per update", "Settings of the first cell"):
        assert f"<h2>{title}</h2>" in html, title
    prose = "Medians over logging intervals (compile excluded)"
    assert prose in path.read_text() and prose in html, "one source of prose for Markdown and HTML"


@SHARED
@pytest.mark.slow
def test_a_report_reads_artefacts_not_the_methods(finished_study, tmp_path):
    """The report's modules import neither the agents, the training loop nor Keras (a study's settings classes,
    beside their methods, are the study's concern), and the gradient figure names the policy network the runs'
    results record (FQL's one-step policy)."""
    import flowkit.reports

    forbidden = ("flowkit.agents", "flowkit.training", "keras")
    for path in Path(flowkit.reports.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                bad = [name for name in names if name.startswith(forbidden)]
                assert not bad, f"{path.name}:{node.lineno} imports {bad}"
    study, runs_dir, _ = finished_study
    build_report(study, runs_dir, out_dir=tmp_path / "report")
    assert "Gradient norm of the policy network (onestep)" in (tmp_path / "report" / "report.md").read_text()


@SHARED
@pytest.mark.slow
def test_the_exported_table_recomputes_the_main_table(finished_study, tmp_path, capsys):
    """`flowkit export` writes one row per (cell, seed, step, metric); its per-seed scores give the report's means
    and standard deviations, and every logged training loss and evaluation of every run is in it."""
    study, runs_dir, path = finished_study
    study_file = tmp_path / "tiny.py"
    study_file.write_text(
        'from tests.helpers import tiny_study\n\nSTUDY = tiny_study(tasks=("moons", "eight-gaussians"))\n'
    )
    out = tmp_path / "results.csv"
    assert main(["export", str(study_file), "--runs-dir", str(runs_dir), "--out", str(out)]) == 0, capsys.readouterr()
    table = pandas.read_csv(out)
    rows = markdown_table(path.read_text(), "Task")
    scores = table[table.phase == "score"]
    metric = study.metric_for("moons")
    assert set(scores.metric) == {metric} and set(scores.state) == {"complete"}, scores
    for (task, solver), group in scores.groupby(["task", "solver"]):
        cell = rows[task][["euler", "rk4"].index(solver)]
        expected = f"{statistics.fmean(group.value):.3f} ± {statistics.stdev(group.value):.3f}"
        assert expected in cell and list(group.seed) == [0, 1], (cell, expected, group)
    evaluations = table[(table.phase == "eval") & (table.metric == metric)]
    steps = sorted(set(evaluations.step))
    assert steps == list(range(TINY["eval_every"], TINY["steps"] + 1, TINY["eval_every"])), steps
    assert len(evaluations) == 4 * 2 * len(steps), "every cell's every seed's every evaluation"
    assert {"critic_loss", "distill_loss", "bc_flow_loss"} <= set(table[table.phase == "train"].metric)
    assert list(table.columns[:8]) == ["study", "cell", "state", "seed", "phase", "step", "metric", "value"]
    assert {"agent", "task", "solver"} <= set(table.columns)
    parquet = tmp_path / "results.parquet"
    assert (
        main(["export", str(study_file), "--runs-dir", str(runs_dir), "--format", "parquet", "--out", str(parquet)])
        == 0
    )
    pandas.testing.assert_frame_equal(pandas.read_parquet(parquet), table, check_dtype=False)


@SHARED
@pytest.mark.slow
def test_report_out_never_deletes_what_the_kit_did_not_write(finished_study, tmp_path):
    """A folder of the user's files is refused untouched; files a user adds beside a report survive its rebuild."""
    study, runs_dir, _ = finished_study
    userdir = tmp_path / "userdir"
    userdir.mkdir()
    (userdir / "notes.txt").write_text("precious")
    with pytest.raises(ConfigError, match="did not write"):
        build_report(study, runs_dir, out_dir=userdir)
    assert [p.name for p in userdir.iterdir()] == ["notes.txt"]
    (userdir / "notes.txt").unlink()
    build_report(study, runs_dir, out_dir=userdir)  # an empty folder takes the report
    (userdir / "notes.txt").write_text("precious")
    build_report(study, runs_dir, out_dir=userdir)
    assert (userdir / "notes.txt").read_text() == "precious"
    assert (userdir / "report.md").exists() and (userdir / "report.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userdir"], "no staging folder left behind"


def test_methods_and_solvers_have_display_names_without_study_labels():
    study = tiny_study(labels={})
    assert [layout.cell_label(study, cell) for cell in study.cells()] == ["moons / Euler (Default)", "moons / RK4"]
    assert layout.label(study, "agent", "qflow") == "Q-Flow" and layout.label(study, "flow_steps", 4) == "flow_steps=4"
    relabelled = tiny_study(labels={"solver": {"rk4": "Runge-Kutta 4"}})
    assert layout.label(relabelled, "solver", "rk4") == "Runge-Kutta 4", "a study's own label overrides the default"


@SHARED
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (.ci/run installs it)")
@pytest.mark.chromium
def test_html_report_renders_in_headless_chromium(finished_study, tmp_path):
    _, _, path = finished_study
    html = (path.parent / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(
        html.replace(
            "</body>",
            "<script>addEventListener('load', () => { document.body.dataset.widths = "
            "[...document.images].map(i => i.naturalWidth).join(','); });</script></body>",
        )
    )
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*chromium, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr
    assert "CONSOLE" not in dom.stderr, [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    widths = [int(w) for w in re.search(r'data-widths="([\d,]*)"', dom.stdout).group(1).split(",")]
    assert len(widths) == html.count("<img") == 5 and min(widths) > 500, f"every figure decodes: {widths}"
    screenshot = tmp_path / "report.png"
    shot = subprocess.run(
        [*chromium, f"--screenshot={screenshot}", "--window-size=1280,12000", (path.parent / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.returncode == 0, shot.stderr
    pixels = matplotlib.image.imread(screenshot)[..., :3]
    coloured = int(np.sum(pixels.max(axis=-1) - pixels.min(axis=-1) > 0.3))  # the whole page, whatever its length
    assert coloured > 38_400, f"the screenshot shows the figures' colours ({coloured} pixels coloured, 1280 x 30)"


@SHARED
@pytest.mark.slow
def test_report_against_another_study(finished_study):
    study, runs_dir, _ = finished_study
    # Shorter runs logged as often as the tiny study's: they run its compiled training chunk again.
    other = tiny_study(name="tiny-shorter", fixed={**TINY, "steps": 100})
    runner.run_study(other, runs_dir, progress=False)
    out = runs_dir / "against"
    text = build_report(study, runs_dir, out_dir=out, against=other).read_text()
    rows = markdown_table(text.split("## Against `tiny-shorter`")[1], "Cell")
    assert list(rows) == ["moons / Euler (Default)", "moons / RK4"], "only the cells both studies ran"
    mine, theirs = stored_scores(study, runs_dir), stored_scores(other, runs_dir)
    for label, solver in (("moons / Euler (Default)", "euler"), ("moons / RK4", "rk4")):
        a, b = mine["moons", solver], theirs["moons", solver]
        assert rows[label][0].startswith(f"{statistics.fmean(a):.3f} ± {statistics.stdev(a):.3f}")
        assert rows[label][1].startswith(f"{statistics.fmean(b):.3f} ± {statistics.stdev(b):.3f}")
        assert rows[label][2] == f"{statistics.fmean(a) - statistics.fmean(b):+.3f}"


@SHARED
@pytest.mark.slow
def test_studies_scoring_runs_differently_are_not_compared(finished_study):
    study, runs_dir, _ = finished_study
    for changes, refusal in (
        ({"metric": "support"}, "task moons is scored by 'reward_in_support' here and by 'support' there"),
        ({"last_evals": 3}, "over the last 1 evaluations here and over the last 3 there"),
    ):
        other = tiny_study(name="tiny-scored-otherwise", **changes)
        with pytest.raises(ConfigError, match=refusal):
            build_report(study, runs_dir, out_dir=runs_dir / "refused", against=other)
        assert not (runs_dir / "refused").exists()


@pytest.mark.slow
def test_partial_and_failed_cells_are_marked(tmp_path, monkeypatch):
    study = tiny_study()
    calls = []

    def diverge_on_rk4(config, run_dir, **kwargs):
        calls.append(config.seed)
        if config.agent_config.solver == "rk4" and config.seed == 1:
            raise DivergedError(42, ["critic_loss"])
        return train(config, run_dir, **kwargs)

    monkeypatch.setattr(runner_trial, "train", diverge_on_rk4)
    runner.run_study(study, tmp_path, progress=False)
    path = build_report(study, tmp_path)
    text = path.read_text()
    rk4 = markdown_table(text, "Task")["moons"][1]
    assert "(n=1) partial 1/2 (support " in rk4 and not rk4.startswith("**"), "a partial cell is never bold"
    assert " (1/2) (support " in (path.parent / "table.tex").read_text(), "LaTeX's cell says its seeds too"
    assert "- moons / RK4: diverged at update 42: critic_loss became non-finite" in text
    assert calls == [0, 1, 0, 1]
    table = flowkit.results(study, tmp_path)
    states = {solver: (set(group.state), set(group.seed)) for solver, group in table.groupby("solver")}
    assert states == {"euler": ({"complete"}, {0, 1}), "rk4": ({"failed"}, {0})}, states


@pytest.mark.slow
def test_solvers_are_compared_at_equal_function_evaluations(tmp_path):
    study = tiny_study(  # flow BC: the cheapest method with a solver and K to compile four times
        name="nfe",
        agents=("flow-bc",),
        grid={"solver": ("euler", "midpoint"), "flow_steps": (1, 2)},
        compare=("solver",),
        seeds=(0,),
        fixed={k: v for k, v in TINY.items() if k != "critic_hidden"},
    )
    runner.run_study(study, tmp_path, progress=False)
    text = build_report(study, tmp_path).read_text()
    assert "| Task | Euler (Default) | Midpoint |" in text
    assert "| moons / flow_steps=1 |" in text and "| moons / flow_steps=2 |" in text
    rows = markdown_table(text.split("## At equal function evaluations")[1], "Task")
    euler, midpoint = rows["moons / NFE 2"]
    assert "(K=2," in euler and "(K=1," in midpoint, f"Euler K=2 beside midpoint K=1: {euler!r}, {midpoint!r}"
    assert (tmp_path / "nfe" / "report" / "score_vs_nfe.png").exists()


@pytest.mark.slow
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
        score = runner.seed_records(trial)[0].final["support"]
        assert f"{score:.3f} ± n/a" in text


@pytest.mark.slow
def test_improvement_is_measured_on_the_rows_both_arms_have():
    """bptt-gradients sweeps alpha for FBRAC and lambda for Q-Flow: a lambda arm has no row in common with the
    reference (alpha=10), so its P(better) is not a comparison across methods; alpha=1's is over FBRAC's row."""
    study = load_study("bptt-gradients")
    alpha_scores = {10.0: [0.5, 0.6, 0.7], 1.0: [0.65, 0.75, 0.8], 0.1: [0.4, 0.45, 0.5], 0.01: [0.1, 0.2, 0.3]}
    results = {}
    for cell in study.cells():
        scores = alpha_scores[cell["alpha"]] if cell["agent"] == "fbrac" else [0.95, 0.97, 0.99]
        results[cell_key(cell)] = CellResult(cell, scores=dict(zip(study.seeds, scores, strict=True)))
    table = aggregate_table(study, results)
    assert table.header == ["IQM [95% CI]", "P(better than α=10) [95% CI]"], "reward is no fraction: no gap"
    improvement = {row.label: row.entries[1].text for row in table.rows}
    assert improvement["α=10"] == "reference"
    assert improvement["α=1"].startswith("0.89 ["), "α=1 beats α=10 in 8 of 9 seed pairs"
    assert improvement["α=0.01"].startswith("0.00 [")
    for lam in ("0.1", "1", "10", "100"):
        assert improvement[f"λ={lam}"] == "n/a: no row in common", "Q-Flow's scores (0.95-0.99) beat every α=10 one"


@pytest.mark.slow
def test_a_partial_cell_is_never_bold_even_at_the_best_mean():
    study = load_study("ode-solver")
    scores = {"euler": [0.4, 0.5, 0.6], "midpoint": [0.5, 0.5], "rk4": [0.1, 0.2, 0.3]}
    results = {
        cell_key(cell): CellResult(cell, scores=dict(enumerate(scores[cell["solver"]]))) for cell in study.cells()
    }
    table = main_table(study, results)
    (row,) = table.rows
    assert [entry.best for entry in row.entries] == [True, False, False], "midpoint's 0.500 has 2 of 3 seeds"
    assert row.entries[1].partial == "2/3"
    iqm_texts = [entry.text for entry in table.footer[0].entries]
    assert iqm_texts[1] == "0.500 [0.500, 0.500] (2 of 3 seeds: those every row has)", iqm_texts
    assert iqm_texts[0].startswith("0.500 [") and iqm_texts[0].endswith("]")


@pytest.mark.slow
def test_the_optimality_gap_is_given_for_success_rates():
    """OGBench's success is a fraction with 1 the best: each arm's gap is 1 - mean success over its runs."""
    study = load_study("ode-solver-ogbench")
    success = {"euler": 0.25, "midpoint": 0.5, "rk4": 0.75}
    results = {
        cell_key(cell): CellResult(cell, scores={seed: success[cell["solver"]] for seed in study.seeds})
        for cell in study.cells()
    }
    table = aggregate_table(study, results)
    assert table.header[2] == "optimality gap [95% CI]"
    gaps = {row.label: row.entries[2].text.split(" [")[0] for row in table.rows}
    assert gaps == {"Euler (Default)": "0.750", "Midpoint": "0.500", "RK4": "0.250"}


def test_seeds_trained_as_one_program_are_one_point_of_the_cost_fit():
    """Three seeds vmapped in one program share its timing: one point for the cost fit, not three copies that
    would narrow the slope's interval; separately trained seeds are a point each."""

    def record(seed: int, ms: float, seeds_in_program: int) -> SeedRecord:
        timing = Timing(compile_s=1.0, train_s=1.0, eval_s=0.0, other_s=0.0, wall_s=2.0, ms_per_update=ms,
                        ms_per_update_iqr=0.0, seeds_in_program=seeds_in_program)  # fmt: skip
        return SeedRecord(
            seed=seed, score=0.5, final={"reward_mean": 0.5}, eval_history=((100, 0.5),), consistency=None,
            cost=Cost(0.1, 1.0), timing=timing, nfe_per_solve=4, run_dir=f"runs/x/seed{seed}",
        )  # fmt: skip

    vectorized, separate = CellResult({}), CellResult({})
    read_seeds(vectorized, {seed: record(seed, 2.0, 3) for seed in range(3)}, Path("study"))
    read_seeds(separate, {0: record(0, 2.0, 1), 1: record(1, 2.1, 1), 2: record(2, 2.0, 1)}, Path("study"))
    assert vectorized.program_ms_per_update == [2.0]
    assert separate.program_ms_per_update == [2.0, 2.1, 2.0]


def test_an_energy_schedule_study_reports_each_schedules_strength():
    """The energy-schedule study's report has a row per schedule: R at the bandits' spreads and at s = 1 ... 0.1,
    with h = t at s = 1 the closed form asinh(1) / sqrt(2) = 0.62."""
    from flowkit.reports.parts import ReportData
    from flowkit.reports.setting_effects import ScheduleStrength, action_spreads
    from flowkit.schedules import schedule_strength

    study = load_study("energy-schedule")
    section = ScheduleStrength()
    assert section.applies(ReportData(study, {})) and not section.applies(ReportData(tiny_study(), {}))
    table = section.build(ReportData(study, {})).parts[1].table
    spreads = action_spreads(study.tasks)
    assert table.header[:4] == ["s = 1", "s = 0.5", "s = 0.2", "s = 0.1"] and len(table.header) == 4 + len(spreads)
    assert [row.label for row in table.rows] == ["t", "t²", "t²/(1-t)"]
    t_row = [float(entry.text) for entry in table.rows[0].entries]
    assert t_row[0] == pytest.approx(0.62, abs=0.005), f"h = t at s = 1: {t_row[0]}, closed form 0.623"
    for entry, s in zip(table.rows[1].entries[4:], spreads.values(), strict=True):
        assert float(entry.text) == pytest.approx(schedule_strength("t2", s), abs=0.005), (entry.text, s)
    assert all(0.05 < s < 1 for s in spreads.values()), f"bandit action spreads {spreads}"


def test_the_tradeoff_table_reads_the_records_final_metrics():
    """Per cell, the score and each trade-off figure as mean ± sample sd over the seeds that recorded them."""
    from flowkit.reports.tables import tradeoff_table

    study = tiny_study(grid={"alpha": (1.0, 100.0)})
    results = {}
    for cell in study.cells():
        result = CellResult(cell)
        for seed, distance in ((0, 0.2), (1, 0.4)):
            result.scores[seed] = 0.5 + seed
            result.finals[seed] = {
                "tradeoff_distill_loss": 0.01 * cell["alpha"],
                "tradeoff_distance": distance / cell["alpha"],
                "tradeoff_q_gain": 1.0,
            }
        results[cell_key(cell)] = result
    table = tradeoff_table(study, results)
    texts = {row.label: [entry.text for entry in row.entries] for row in table.rows}
    expected = ["1.000 ± 0.707", "0.010 ± 0.000", "0.300 ± 0.141", "1.000 ± 0.000", "2"]
    assert texts[layout.cell_label(study, study.cells()[0])] == expected, texts

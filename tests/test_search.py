"""Search studies: a space is refused by the field it names; workers on a journal and on PostgreSQL sample the
budget exactly once, a killed worker's cell is resumed with its sampled values; a pruned cell keeps its runs'
checkpoints and its records, and `study status` counts it apart."""

import base64
import functools
import json
import multiprocessing
import os
import signal
import statistics
import time

import optuna
import pytest

import flowkit.studies.runner as runner
import flowkit.studies.runner.sampling as sampling
import flowkit.studies.runner.trial as runner_trial
from flowkit import Choice, FloatRange, IntRange, Search, Study, runs
from flowkit.analysis.importance import Axis, search_axis
from flowkit.benchmarks.runner_load import audit, trivial_train
from flowkit.cli import main
from flowkit.reports import layout
from flowkit.reports.builder import build_report
from flowkit.reports.collect import collect
from flowkit.reports.importance import setting_axes
from flowkit.reports.parts import ReportData
from flowkit.reports.run_facts import pruned_items
from flowkit.reports.setting_effects import SettingImportance
from flowkit.settings import ConfigError
from flowkit.studies import load_study
from flowkit.studies.study import cell_slug
from tests.helpers import TINY
from tests.test_report import markdown_table
from tests.test_workers import wait_until_started


def search_study(space=None, trials=6, **changes) -> Study:
    """Flow BC on moons searching its learning rate (`trivial_train` scores a run 1000 lr + seed)."""
    fields = {
        "name": "search",
        "question": "Which learning rate?",
        "agents": ("flow-bc",),
        "tasks": ("moons",),
        "seeds": (0, 1),
        "search": Search(space or {"lr": FloatRange(1e-5, 1e-3, log=True)}, trials=trials),
    }
    return Study(**{**fields, **changes})


@pytest.mark.parametrize(
    ("space", "changes", "message"),
    [
        ({"alpah": FloatRange(0.01, 1000, log=True)}, {}, "search space 'alpah': not a setting of 'fql'"),
        ({"alpha": FloatRange(5, 1)}, {}, "search space 'alpha': low 5 >= high 1; expected low < high"),
        ({"alpha": FloatRange(0, 10, log=True)}, {}, "search space 'alpha': a log range needs low > 0, got low 0"),
        ({"alpha": FloatRange(-1, 10)}, {}, "search space 'alpha': -1 is refused: alpha: -1.0 is out of range"),
        ({"flow_steps": FloatRange(1, 32)}, {}, "search space 'flow_steps': the setting is not a float; use IntRange"),
        ({"flow_steps": IntRange(0, 32)}, {}, "search space 'flow_steps': 0 is refused"),
        ({"solver": Choice(("euler", "rk5"))}, {}, "search space 'solver': 'rk5' is refused"),
        ({"solver": Choice(("rk4",))}, {"grid": {"solver": ("euler",)}}, "search space 'solver': also in the grid"),
        ({"alpha": FloatRange(1, 10)}, {"tasks": ("moons", "eight-gaussians")}, "search: a search study samples one"),
    ],
)
def test_a_bad_space_is_refused_naming_its_field(space, changes, message):
    fields = {"name": "bad", "question": "?", "agents": ("fql",), "tasks": ("moons",), "seeds": (0,)}
    with pytest.raises(ConfigError) as raised:
        Study(**{**fields, **changes, "search": Search(space, trials=4)})
    assert str(raised.value).startswith("study 'bad': "), str(raised.value)
    assert message in str(raised.value), f"{message!r} not in {str(raised.value)!r}"


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (Search({"lr": FloatRange(1e-5, 1e-3)}, trials=0), "search trials: expected an integer >= 1, got 0"),
        (Search({"lr": FloatRange(1e-5, 1e-3)}, trials=3, sampler="grid"), "search sampler: unknown 'grid'"),
        (Search({"lr": FloatRange(1e-5, 1e-3)}, trials=3, pruner="mean"), "search pruner: unknown 'mean'"),
    ],
)
def test_a_bad_budget_sampler_or_pruner_is_refused(search, message):
    with pytest.raises(ConfigError, match=message):
        search_study(search=search)


def test_the_sampler_seed_is_part_of_the_definition():
    first, other = search_study(), search_study(search=Search({"lr": FloatRange(1e-5, 1e-3, log=True)}, 6, "tpe", 1))
    assert first.definition()["search"]["sampler_seed"] == 0
    assert first.definition() != other.definition(), "a study run again with another seed is a different study"


def slow_trivial_worker(study, runs_dir, storage_url, **kwargs):
    """A worker whose trivial runs take 0.2 s, started once both workers have, so that they sample concurrently."""
    wait_until_started(runs_dir, 2)
    runner_trial.train = functools.partial(trivial_train, run_s=0.2)
    runner.run_study(study, runs_dir, storage_url, **kwargs)


def check_budget_run_once(study: Study, runs_dir, storage_url=None) -> None:
    """Every sample index of the budget has exactly one complete trial, each seed ran once, two workers shared
    them, and each trial's score is that of its sampled learning rate (the mean of 1000 lr + seed)."""
    trials = runner.load_optuna_study(study, runs_dir, storage_url).get_trials()
    samples = sorted(runner.cell_of(t)["sample"] for t in trials)
    assert samples == list(range(study.search.trials)), f"sampled {samples}, budget {study.search.trials}"
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials), [t.state for t in trials]
    counts = audit(study, runs_dir, storage_url)
    assert counts["runs"] == 2 * study.search.trials and counts["runs_repeated"] == 0, counts
    assert len({runner.worker_of(t)["pid"] for t in trials}) == 2, "both workers sampled cells"
    for trial in trials:
        assert trial.value == pytest.approx(1000 * trial.params["lr"] + 0.5), f"trial {trial.number}"


@pytest.mark.slow
def test_two_workers_on_a_journal_sample_the_budget_exactly_once(tmp_path):
    study = search_study(trials=8)
    state = runner.run_workers(study, tmp_path, workers=2, progress=False, worker=slow_trivial_worker)
    assert (state.cells, state.sampled, state.complete, state.seeds_done) == (8, 8, 8, 16), state
    check_budget_run_once(study, tmp_path)
    stored = runner.load_optuna_study(study, tmp_path)
    assert runner.sampler_of(stored) == {"sampler": "tpe", "sampler_seed": 0, "pruner": None}


@pytest.mark.slow
@pytest.mark.postgres
def test_two_workers_on_postgres_sample_the_budget_exactly_once(postgres_url, tmp_path):
    study = search_study(trials=6)
    runner.run_workers(study, tmp_path, postgres_url, workers=2, progress=False, worker=slow_trivial_worker)
    check_budget_run_once(study, tmp_path, postgres_url)


def worker_killed_in_its_first_run(study, runs_dir, storage_url, **kwargs):
    """Two workers; worker 0 kills itself (SIGKILL) in its first run, its sampled trial claimed."""
    wait_until_started(runs_dir, 2)
    killed = multiprocessing.current_process().name == "flowkit-worker-0"

    def train(config, run_dir, **_):
        if killed:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.2)
        return trivial_train(config, run_dir)

    runner_trial.train = train
    runner.run_study(study, runs_dir, storage_url, **kwargs)


@pytest.mark.slow
def test_a_killed_workers_sampled_cell_is_resumed_with_its_values_not_sampled_again(tmp_path):
    study = search_study(trials=4)
    state = runner.run_workers(study, tmp_path, workers=2, progress=False, worker=worker_killed_in_its_first_run)
    assert (state.sampled, state.complete) == (4, 4), state
    trials = runner.load_optuna_study(study, tmp_path).get_trials()
    died = [t for t in trials if t.state == optuna.trial.TrialState.FAIL]
    assert len(died) == 1 and runner.failure_of(died[0])["kind"] == "worker died", [t.state for t in trials]
    again = [t for t in trials if runner.trial_cell(t) == runner.trial_cell(died[0]) and t is not died[0]]
    assert [t.state for t in again] == [optuna.trial.TrialState.COMPLETE], "its cell ran again, once"
    assert again[0].params == died[0].params, f"resumed with {again[0].params}, sampled {died[0].params}"
    assert len(trials) == 5, f"4 sampled cells and one retry, got {len(trials)} trials"


class PruneSecondTrial(optuna.pruners.BasePruner):
    """Stops trial 1 at its first report: which cell is behind is Optuna's pruners' concern, tested there."""

    def prune(self, study, trial):
        return trial.number == 1


def fql_search(tmp_path, trials=2, **search) -> Study:
    path = tmp_path / "fql_search.py"
    path.write_text(
        "from flowkit import FloatRange, IntRange, Search, Study\n"
        "STUDY = Study(name='fql-search', question='?', agents=('fql',), tasks=('eight-gaussians',), seeds=(0, 1),\n"
        f"    fixed={dict(TINY, checkpoint_every=1000)!r},\n"
        "    search=Search({'alpha': FloatRange(0.01, 1000, log=True), 'flow_steps': IntRange(1, 4)},\n"
        f"        trials={trials}, pruner='median', **{search!r}))\n"
    )
    return load_study(str(path))


@pytest.mark.slow
def test_a_pruned_cell_keeps_its_checkpoint_and_records_and_status_counts_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sampling, "pruner", lambda search: PruneSecondTrial())
    study = fql_search(tmp_path)
    state = runner.run_study(study, tmp_path, progress=False)
    assert (state.sampled, state.complete, state.pruned, state.seeds_done) == (2, 1, 1, 2), state

    first, second = runner.load_optuna_study(study, tmp_path).get_trials()
    assert first.state == optuna.trial.TrialState.COMPLETE and second.state == optuna.trial.TrialState.PRUNED
    for trial in (first, second):
        cell = runner.cell_of(trial)
        config = json.loads((tmp_path / "fql-search" / "runs" / cell_slug(cell) / "seed0" / runs.CONFIG).read_text())
        assert config["agent_config"]["alpha"] == trial.params["alpha"] == cell["alpha"], (config, trial.params)
        assert config["agent_config"]["flow_steps"] == trial.params["flow_steps"], (config, trial.params)
    assert sorted(first.intermediate_values) == [100, 200, 300, 400], "each evaluation, at updates over seeds"
    assert first.value == pytest.approx(first.intermediate_values[400]), "the last is the score over both seeds"

    pruned = runner.pruned_of(second)
    assert (pruned.seed, pruned.step, pruned.trained_steps) == (0, 100, 100), pruned
    assert pruned.value == pytest.approx(second.intermediate_values[100]), (pruned, second.intermediate_values)
    seed0 = tmp_path / "fql-search" / "runs" / cell_slug(runner.cell_of(second)) / "seed0"
    assert (seed0 / runs.CHECKPOINT).exists() and not (seed0 / runs.RESULT).exists(), sorted(os.listdir(seed0))
    assert not seed0.with_name("seed1").exists(), "the seed after the pruned one never ran"
    assert runner.seed_records(second) == {}, "no seed of the pruned cell finished"

    stored = runner.load_optuna_study(study, tmp_path)
    items = pruned_items(study, collect(study, stored, tmp_path / "fql-search"))
    alpha, steps = second.params["alpha"], second.params["flow_steps"]
    assert items == [
        f"sample 1 (alpha={alpha:.4g}, flow_steps={steps}): stopped at update 100 of seed 0, score so far "
        f"{pruned.value:.4g}, 0 of 2 seeds finished"
    ], items

    again = runner.run_study(study, tmp_path, progress=False)
    assert (again.complete, again.pruned, len(runner.load_optuna_study(study, tmp_path).get_trials())) == (1, 1, 2)

    assert main(["study", "status", str(tmp_path / "fql_search.py"), "--runs-dir", str(tmp_path)]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(
        "study fql-search: search of 2 cells (sampler tpe, seed 0, pruner median): 2 sampled, 1 complete, 1 pruned, "
        "0 running, 0 waiting, 0 interrupted, 0 failed; 2/4 runs done;"
    ), line


def test_a_searched_settings_axis_is_its_declared_range_or_choices():
    found = [search_axis(FloatRange(0.01, 1000.0, log=True)), search_axis(IntRange(1, 32, log=True))]
    found += [search_axis(FloatRange(0.0, 1.0)), search_axis(Choice(("euler", "rk4")))]
    expected = [Axis(0.01, 1000.0, log=True), Axis(1.0, 32.0, log=True, integer=True), Axis(0.0, 1.0)]
    expected += [Axis(choices=("euler", "rk4"))]
    assert found == expected, f"{found} != {expected}"


class PruneSecondTrialInItsSecondSeed(optuna.pruners.BasePruner):
    """Stops trial 1 at its second seed's first evaluation (update 100 of seed 1: step 300 over its seeds)."""

    def prune(self, study, trial):
        return trial.number == 1 and trial.last_step >= 300


@pytest.mark.slow
def test_a_search_studys_report_lists_its_sampled_cells_importances_and_pruned_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(sampling, "pruner", lambda search: PruneSecondTrialInItsSecondSeed())
    study = fql_search(tmp_path, trials=4)
    runner.run_study(study, tmp_path, progress=False)
    path = build_report(study, tmp_path)
    text, html, tex = ((path.parent / name).read_text() for name in ("report.md", "report.html", "table.tex"))
    titles = [line for line in text.splitlines() if line.startswith("#")]
    assert titles[:2] == ["# Study `fql-search`", "## Importance of the settings"], titles
    assert "## Pruned cells" in titles and "## Aggregate over tasks" not in titles, titles
    assert "<th>Sample</th><th>alpha</th><th>flow_steps</th>" in html, "the sampled cells' table in the HTML"

    trials = {runner.cell_of(t)["sample"]: t for t in runner.load_optuna_study(study, tmp_path).get_trials()}
    scores = {n: [r.score for _, r in sorted(runner.seed_records(t).items())] for n, t in trials.items()}
    assert [len(scores[n]) for n in range(4)] == [2, 1, 2, 2], f"seeds finished per sample: {scores}"
    rows = markdown_table(text, "Sample")
    best_first = sorted(range(4), key=lambda n: -statistics.fmean(scores[n]))
    assert list(rows) == [f"sample {n}" for n in best_first], (list(rows), scores)
    for n, trial in trials.items():
        alpha, steps, summary, state = rows[f"sample {n}"]
        assert (alpha, steps) == (f"{trial.params['alpha']:.4g}", str(trial.params["flow_steps"])), (n, trial.params)
        std = f"{statistics.stdev(scores[n]):.3f}" if len(scores[n]) > 1 else "n/a"
        assert f"{statistics.fmean(scores[n]):.3f} ± {std}" in summary, (n, summary, scores[n])
        expected_state = "pruned at update 100 of seed 1" if n == 1 else "complete"
        assert state == expected_state, (n, state, expected_state)
        assert f"{statistics.fmean(scores[n]):.3f} ± {std}" in html and state in html, (n, summary, state)

    importance = markdown_table(text, "Setting")
    fanova = {name: float(entries[0].split(" ± ")[0]) for name, entries in importance.items()}
    assert sorted(fanova) == ["alpha", "flow_steps"] and sum(fanova.values()) == pytest.approx(1.0, abs=2e-3), fanova
    best = max((n for n in range(4) if len(scores[n]) == 2), key=lambda n: statistics.fmean(scores[n]))
    (best_row,) = markdown_table(text, "Method / task").values()
    assert best_row[0] == layout.cell_label(study, runner.cell_of(trials[best])), (best_row, best)
    mean_std = f"{statistics.fmean(scores[best]):.3f} ± {statistics.stdev(scores[best]):.3f}"
    assert best_row[1].startswith(mean_std), (best_row, mean_std)

    for name in ("importance_slices.png", "importance_contour.png"):
        png = (path.parent / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in text and base64.b64encode(png).decode() in html, f"{name} referenced and embedded"
    pruned = runner.pruned_of(trials[1])
    assert (
        f"- {layout.cell_label(study, runner.cell_of(trials[1]))}: stopped at update 100 of seed 1, score so far "
        in text
    )
    assert (pruned.seed, pruned.step) == (1, 100), pruned
    assert "Sample & alpha & flow\\_steps & mean $\\pm$ std over seeds & state" in tex, tex


def test_the_importance_section_applies_to_a_search_of_two_settings_on_their_declared_axes():
    sensitivity, one = load_study("sensitivity"), search_study()
    applies = {study.name: SettingImportance().applies(ReportData(study, {})) for study in (sensitivity, one)}
    assert applies == {"sensitivity": True, "search": False}, f"two settings searched, then one: {applies}"
    axes = setting_axes(sensitivity)
    expected = {"alpha": Axis(0.01, 1000.0, log=True), "flow_steps": Axis(1.0, 32.0, log=True, integer=True)}
    assert axes == expected, f"{axes} != {expected}"

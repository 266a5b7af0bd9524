"""Studies cover every cell exactly once, resume without repeating work, and refuse bad definitions."""

import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax.numpy as jnp
import optuna
import pytest
from optuna.trial import TrialState

import flowkit.studies
import flowkit.studies.runner as runner
import flowkit.studies.runner.trial as runner_trial
from flowkit import runs
from flowkit.agents.base import Loss
from flowkit.agents.fql import FQL
from flowkit.reports import layout
from flowkit.settings import ConfigError
from flowkit.studies import load_study, study_names
from flowkit.studies.study import cell_key
from flowkit.training import train
from tests.helpers import TINY, stored_trials, tiny_study


class CountingTrain:
    """Wraps the runner's train; raises KeyboardInterrupt on the given call, as a user's Ctrl-C would."""

    def __init__(self, interrupt_on: int | None = None):
        self.calls, self.interrupt_on = [], interrupt_on

    def __call__(self, config, run_dir, **kwargs):
        self.calls.append((config.agent_config.solver, config.seed))
        if len(self.calls) == self.interrupt_on:
            (run_dir / "partial").mkdir(parents=True)
            raise KeyboardInterrupt
        return train(config, run_dir, **kwargs)


@pytest.mark.slow
def test_study_covers_each_cell_once_and_resumes_without_repeating(tmp_path, monkeypatch):
    study = tiny_study()
    interrupted = CountingTrain(interrupt_on=3)
    monkeypatch.setattr(runner_trial, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(study, tmp_path, progress=False)
    states = {runner.trial_cell(t): t.state for t in stored_trials(study, tmp_path)}
    assert list(states.values()) == [TrialState.COMPLETE, TrialState.FAIL]

    monkeypatch.setattr(runner_trial, "train", resumed := CountingTrain())
    progress = runner.run_study(study, tmp_path, progress=False)
    assert resumed.calls == [("rk4", 0), ("rk4", 1)], "only the interrupted cell's seeds run again"
    assert (progress.complete, progress.cells, progress.seeds_done) == (2, 2, 4)
    complete = [runner.trial_cell(t) for t in stored_trials(study, tmp_path) if t.state == TrialState.COMPLETE]
    assert sorted(complete) == sorted(cell_key(cell) for cell in study.cells()), "every cell exactly once"

    monkeypatch.setattr(runner_trial, "train", again := CountingTrain())
    runner.run_study(study, tmp_path, progress=False)
    assert again.calls == []
    assert len(stored_trials(study, tmp_path)) == 3


def test_trial_of_a_dead_worker_is_run_again(tmp_path):
    study = tiny_study(grid={"solver": ("euler",)}, seeds=(0,))
    stored = runner.load_optuna_study(study, tmp_path, create=True)
    runner.enqueue_missing(stored, study)
    trial, _ = runner.claim_trial(stored)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = {"host": __import__("socket").gethostname(), "pid": int(finished.stdout)}
    runner.storage.record_worker(stored, trial, dead)

    assert runner.enqueue_missing(stored, study) == 1
    states = [(t.state, t.user_attrs.get("failure", {}).get("kind")) for t in stored.get_trials()]
    assert states == [(TrialState.FAIL, "worker died"), (TrialState.WAITING, None)]


def test_a_process_id_given_again_is_not_taken_for_the_worker(tmp_path):
    """A claim recorded by a worker whose process id now belongs to another process (ids come round again, and
    start again after a reboot) is the claim of a dead worker; the live claimer's own is not."""
    study = tiny_study(grid={"solver": ("euler", "rk4")}, seeds=(0,))
    stored = runner.load_optuna_study(study, tmp_path, create=True)
    runner.enqueue_missing(stored, study)
    mine, _ = runner.claim_trial(stored)
    other, _ = runner.claim_trial(stored)
    earlier_owner = {**runner.worker_of(stored.get_trials()[other.number]), "started": "x:1"}
    runner.storage.record_worker(stored, other, earlier_owner)
    assert runner.enqueue_missing(stored, study) == 1
    failures = {t.number: t.user_attrs.get("failure", {}).get("kind") for t in stored.get_trials()}
    assert failures == {mine.number: None, other.number: "worker died", 2: None}


def test_a_cell_that_failed_with_an_error_waits_for_the_next_run(tmp_path):
    """A worker out of cells retries those whose worker died, not one another worker's error raised (that
    worker has stopped with it); running the study again retries it."""
    study = tiny_study(grid={"solver": ("euler",)}, seeds=(0,))
    stored = runner.load_optuna_study(study, tmp_path, create=True)
    runner.enqueue_missing(stored, study)
    trial, _ = runner.claim_trial(stored)
    runner.storage.mark_failed(stored, trial, {"kind": "error", "message": "bug"})
    assert runner.enqueue_missing(stored, study, retried=("worker died",)) == 0
    assert runner.enqueue_missing(stored, study) == 1


def test_a_worker_starting_while_another_creates_the_study_waits_for_its_definition(tmp_path):
    """Between Optuna's create_study and the definition's write, a worker that finds the study waits for the
    creator's lock instead of reporting a different definition."""
    study = tiny_study(grid={"solver": ("euler",)}, seeds=(0,))
    storage = runner.open_storage(None, tmp_path, study.name)
    creating, created = threading.Event(), threading.Event()

    def create_slowly():
        with runner.study_lock(storage, study.name, tmp_path):
            bare = optuna.create_study(study_name=study.name, storage=storage, direction="maximize")
            creating.set()
            time.sleep(0.5)
            bare.set_user_attr(runner.storage.SCHEMA_ATTR, runner.records.SCHEMA_VERSION)
            bare.set_user_attr(runner.DEFINITION_ATTR, study.definition())
            created.set()

    creator = threading.Thread(target=create_slowly)
    creator.start()
    creating.wait()
    stored = runner.load_optuna_study(study, tmp_path, create=True)
    assert created.is_set() and stored.user_attrs[runner.DEFINITION_ATTR] == study.definition()
    creator.join()


def test_looking_up_a_study_in_a_journal_that_does_not_exist_writes_nothing(tmp_path):
    study = tiny_study(grid={"solver": ("euler",)}, seeds=(0,))
    journal = tmp_path / "elsewhere" / "new.journal"
    assert runner.load_optuna_study(study, tmp_path, str(journal)) is None
    assert runner.load_optuna_study(study, tmp_path) is None
    assert list(tmp_path.iterdir()) == [], "no folder, no empty journal"


@pytest.mark.slow
def test_changed_definition_is_refused_and_storage_left_unchanged(tmp_path):
    study = tiny_study(grid={"solver": ("euler",)}, seeds=(0,))
    runner.run_study(study, tmp_path, progress=False)
    journal = tmp_path / "tiny" / "optuna.journal"
    before = journal.read_bytes()
    with pytest.raises(runner.StorageError, match=r"different definition of this study \(changed: seeds\)"):
        runner.run_study(tiny_study(grid={"solver": ("euler",)}, seeds=(0, 1)), tmp_path, progress=False)
    assert journal.read_bytes() == before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"grid": {"solverr": ("euler",)}}, "setting 'solverr' belongs to none of the study's methods"),
        ({"grid": {"solver": ("euler", "rk5")}}, "solver: 'rk5' is not allowed"),
        ({"tasks": ("mooons",)}, "task: unknown task 'mooons'"),
        ({"seeds": (0, 0)}, "seeds: expected distinct non-negative integers"),
        ({"fixed": {**TINY, "steps": 150}}, "steps: 150 is not a multiple of log_every=100"),
        ({"vectorize_seeds": "yes"}, "vectorize_seeds: expected true or false, got 'yes'"),
    ],
)
def test_bad_study_definitions_are_refused_when_loaded(changes, message):
    with pytest.raises(ConfigError, match="study 'tiny': .*" + message.replace("(", r"\(").replace(")", r"\)")):
        tiny_study(**changes)


def test_declared_studies_load():
    assert "ode-solver" in study_names()
    study = load_study("ode-solver")
    assert [cell["solver"] for cell in study.cells()] == ["euler", "midpoint", "rk4"]
    with pytest.raises(ConfigError, match=r"no study named 'ode-solvers'; declared studies: .*ode-solver"):
        load_study("ode-solvers")


def test_a_module_in_studies_is_a_study_when_it_assigns_study(tmp_path, monkeypatch):
    """A helper module beside the studies is not listed (nor imported); a module assigning STUDY is."""
    (tmp_path / "helpers.py").write_text("raise RuntimeError('a helper is never imported to list studies')\n")
    (tmp_path / "new_study.py").write_text("from flowkit.studies.ode_solver import STUDY as BASE\n\nSTUDY = BASE\n")
    (tmp_path / "lambda_.py").write_text("STUDY: object = None\n")
    (tmp_path / "runner").mkdir()
    monkeypatch.setattr(flowkit.studies, "__path__", [str(tmp_path)])
    names = study_names()
    assert names == ["lambda", "new-study"], f"studies listed {names}, expected ['lambda', 'new-study']"


def test_a_setting_one_method_lacks_is_not_swept_for_it():
    study = load_study("bptt-gradients")
    fbrac = [cell for cell in study.cells() if cell["agent"] == "fbrac"]
    qflow = [cell for cell in study.cells() if cell["agent"] == "qflow"]
    assert [c["alpha"] for c in fbrac] == [10.0, 1.0, 0.1, 0.01] and {c["lam"] for c in fbrac} == {None}
    assert [c["lam"] for c in qflow] == [0.1, 1.0, 10.0, 100.0] and {c["alpha"] for c in qflow} == {None}
    assert [study.run_config(c, 0).agent_config.lam for c in qflow] == [0.1, 1.0, 10.0, 100.0]
    assert layout.cell_label(study, qflow[2]) == "Q-Flow / eight-gaussians / λ=10"
    assert study.search_space()["alpha"] == [10.0, 1.0, 0.1, 0.01, None]


def test_unreachable_database_is_reported(tmp_path):
    with pytest.raises(runner.StorageError, match=r"storage 'postgresql://nobody@127.0.0.1:1/none': cannot connect"):
        runner.open_storage("postgresql://nobody@127.0.0.1:1/none", tmp_path, "tiny")


@pytest.mark.slow
def test_a_nan_at_a_known_update_fails_that_trial_only(tmp_path, monkeypatch, patched_agent_code):
    """A NaN injected into RK4's critic loss at update 151 (step 150 counted from 0) fails the RK4 trial,
    with the update and the loss recorded; Euler's trial completes and the study goes on."""
    original = FQL.loss

    def nan_at_150_under_rk4(self, params, target_params, batch, key, step):
        terms, metrics = original(self, params, target_params, batch, key, step)
        if self.config.solver == "rk4":
            terms["critic"] = terms["critic"] * jnp.where(step == 150, jnp.nan, 1.0)
        return Loss(terms, metrics)

    monkeypatch.setattr(FQL, "loss", nan_at_150_under_rk4)
    study = tiny_study(seeds=(0,))
    state = runner.run_study(study, tmp_path, progress=False)
    trials = {t.params["solver"]: t for t in stored_trials(study, tmp_path)}
    assert trials["euler"].state == TrialState.COMPLETE and trials["rk4"].state == TrialState.FAIL
    failure = trials["rk4"].user_attrs["failure"]
    assert (failure["kind"], failure["step"]) == ("diverged", 151) and "grad_norm/critic" in failure["metrics"]
    assert state.complete == 1 and list(state.failed.values()) == [failure["message"]]


def test_a_worker_whose_trial_was_taken_over_stops_writing(tmp_path, monkeypatch):
    """Once another worker holds the trial (here: its claim recorded over ours after the first chunk's metrics),
    this worker writes nothing more, neither into the run folder the other now writes nor to the trial."""
    study = tiny_study(grid={"solver": ("euler",)}, seeds=(0,), fixed={**TINY, "steps": 400, "eval_every": 200})
    stored = runner.load_optuna_study(study, tmp_path, create=True)
    runner.enqueue_missing(stored, study)
    trial, cell = runner.claim_trial(stored)
    other = {"host": "another-machine", "pid": 1, "started": "x:1"}
    study_folder = tmp_path / study.name / "runs"
    taken_over = {}
    write = runs.MetricsWriter.write

    def write_then_taken_over(self, record):
        write(self, record)
        if not taken_over:
            runner.storage.record_worker(stored, trial, other)
            (Path(self._stream.name).parent / "theirs.txt").write_text("the other worker's")
            taken_over.update(folder_files(study_folder))

    monkeypatch.setattr(runs.MetricsWriter, "write", write_then_taken_over)
    runner.run_trial(study, trial, cell, tmp_path, progress=False)
    after = folder_files(study_folder)
    changed = sorted(name for name in taken_over.keys() | after.keys() if taken_over.get(name) != after.get(name))
    assert changed == [], f"written after the takeover: {changed}"
    fresh = stored.get_trials()[trial.number]
    assert (fresh.state, runner.worker_of(fresh), runner.storage.seed_records(fresh)) == (TrialState.RUNNING, other, {})


def folder_files(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_a_journal_cut_off_mid_record_is_recovered(tmp_path, capsys):
    """The journal's last record cut off (power lost mid-write): the next open cuts it back to the last whole
    record, says so, and later writes start on a line of their own."""
    study = tiny_study(grid={"solver": ("euler", "rk4")}, seeds=(0,))
    runner.enqueue_missing(runner.load_optuna_study(study, tmp_path, create=True), study)
    journal = tmp_path / "tiny" / "optuna.journal"
    whole = journal.read_bytes()
    last = whole.splitlines(keepends=True)[-1]
    journal.write_bytes(whole[: len(whole) - len(last) // 2])
    capsys.readouterr()
    stored = runner.load_optuna_study(study, tmp_path, create=True)
    message = capsys.readouterr().err
    assert f"journal {journal}" in message and "cut off mid-write" in message, message
    assert journal.read_bytes() == whole[: len(whole) - len(last)], "cut back to the last whole record"
    runner.enqueue_missing(stored, study)
    reopened = runner.load_optuna_study(study, tmp_path)
    assert len(reopened.get_trials()) >= 2, [t.number for t in reopened.get_trials()]


def test_a_journal_damaged_before_its_end_is_refused_with_its_line(tmp_path):
    study = tiny_study(grid={"solver": ("euler", "rk4")}, seeds=(0,))
    runner.enqueue_missing(runner.load_optuna_study(study, tmp_path, create=True), study)
    journal = tmp_path / "tiny" / "optuna.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2][:10] + b"\n"
    damaged = b"".join(lines)
    journal.write_bytes(damaged)
    with pytest.raises(runner.StorageError, match=rf"journal {re.escape(str(journal))}: line 3 is damaged"):
        runner.load_optuna_study(study, tmp_path)
    assert journal.read_bytes() == damaged, "a damaged journal is left as it was"


def test_status_counts_an_interrupted_trial_and_one_whose_worker_died_as_to_resume(tmp_path, monkeypatch):
    """Neither is failed (the next run resumes both), and a trial whose worker died is not running."""
    study = tiny_study(grid={"solver": ("euler", "rk4")}, seeds=(0,))
    monkeypatch.setattr(runner_trial, "train", CountingTrain(interrupt_on=1))
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(study, tmp_path, progress=False)
    stored = runner.load_optuna_study(study, tmp_path)
    trial, _ = runner.claim_trial(stored)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    runner.storage.record_worker(stored, trial, {"host": socket.gethostname(), "pid": int(finished.stdout)})
    state = runner.progress_of(study, stored)
    counts = (state.complete, state.running, state.waiting, state.failed, sorted(state.interrupted.values()))
    expected = (0, 0, 0, {}, ["interrupted by the user", "its worker died"])
    assert counts == expected, (counts, expected)

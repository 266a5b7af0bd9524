"""Many workers, one study: on a journal file and on a real PostgreSQL server, every cell runs exactly once,
a worker killed mid-trial loses nothing, and its runs resume from their checkpoints."""

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

import flowkit.studies.runner as runner
import flowkit.studies.runner.claims as claims
import flowkit.studies.runner.trial as runner_trial
import flowkit.training.loop as training_loop
from flowkit import runs
from flowkit.benchmarks.runner_load import audit, load_study, trivial_train, trivial_worker
from flowkit.studies.runner.records import seed_record
from flowkit.studies.runner.workers import interruptible
from flowkit.studies.study import cell_key, cell_slug
from tests.helpers import TINY, stored_trials, tiny_study

pytestmark = pytest.mark.slow


def worker_once_all_started(study, runs_dir, storage_url, **kwargs):
    """trivial_worker, started once every worker process has (spawned processes import at different speeds,
    and one could finish all trivial runs before another starts, leaving nothing concurrent to test)."""
    wait_until_started(runs_dir, 4)
    trivial_worker(study, runs_dir, storage_url, **kwargs)


def wait_until_started(runs_dir, workers: int) -> None:
    """Mark this worker process started, then wait (at most 120 s) until `workers` processes have."""
    started = runs_dir / "started"
    started.mkdir(exist_ok=True)
    (started / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(started.iterdir())) < workers and time.monotonic() < deadline:
        time.sleep(0.05)


def test_four_workers_on_a_journal_run_every_cell_exactly_once(tmp_path):
    study = load_study(24, seeds=(0, 1))
    runner.run_workers(study, tmp_path, workers=4, progress=False, worker=worker_once_all_started)
    counts = audit(study, tmp_path)
    assert counts == {
        "cells": 24, "trials": 24, "complete": 24, "lost": 0, "duplicated": 0, "stuck": 0, "runs": 48,
        "runs_repeated": 0,
    }  # fmt: skip
    workers = {runner.worker_of(t)["pid"] for t in stored_trials(study, tmp_path)}
    assert len(workers) >= 2, "the workers shared the cells"
    for trial in stored_trials(study, tmp_path):
        assert trial.value == pytest.approx(1000 * trial.params["lr"] + 0.5), "the mean over seeds 0 and 1"


@pytest.mark.postgres
def test_postgres_worker_killed_mid_trial_is_taken_over_and_resumed(postgres_url, tmp_path):
    fixed = {**TINY, "steps": 3000, "eval_every": 1000, "checkpoint_every": 500}
    study = tiny_study(name="pg", grid={"solver": ("euler", "midpoint", "rk4")}, seeds=(0,), fixed=fixed)
    runner.load_optuna_study(study, tmp_path, postgres_url, create=True)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=runner.run_study, args=(study, tmp_path, postgres_url),
                        kwargs={"progress": False, "heartbeat_s": 1})
        for _ in range(2)
    ]  # fmt: skip
    for worker in workers:
        worker.start()
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline:
        for trial in runner.load_optuna_study(study, tmp_path, postgres_url).get_trials(states=(TrialState.RUNNING,)):
            run_dir = tmp_path / "pg" / "runs" / cell_slug(runner.cell_of(trial)) / "seed0"
            if (run_dir / runs.CHECKPOINT).exists():
                victim = (trial, run_dir)
                break
        time.sleep(0.05)
    assert victim is not None, "a trial was running with a checkpoint"
    killed_pid = runner.worker_of(victim[0])["pid"]
    os.kill(killed_pid, signal.SIGKILL)
    survivor = next(w for w in workers if w.pid != killed_pid)
    survivor.join(timeout=240)
    assert survivor.exitcode == 0

    trials = runner.load_optuna_study(study, tmp_path, postgres_url).get_trials()
    complete = sorted(runner.trial_cell(t) for t in trials if t.state == TrialState.COMPLETE)
    assert complete == sorted(cell_key(cell) for cell in study.cells()), "every cell complete exactly once"
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [runner.failure_of(t)["kind"] for t in failed] == ["worker died"]
    assert runner.trial_cell(failed[0]) == runner.trial_cell(victim[0])
    resumed_from = runs.load_result(victim[1])["timing"]["resumed_from_step"]
    assert resumed_from >= 500, "the survivor resumed the killed run from its checkpoint"


def worker_with_slow_chunks(stderr_path, study, runs_dir, storage_url, **kwargs):
    """run_study with its stderr in a file of its own; before each chunk after the first the worker leaves a
    `waiting-PID` file beside stderr and waits 2 s, so that a test can pause it between one chunk and the next."""
    with open(stderr_path, "w") as stderr:
        os.dup2(stderr.fileno(), 2)
    train_chunk = training_loop.SeedProgram.train_chunk

    def slow_train_chunk(self, start):
        if start > 0:
            (Path(stderr_path).parent / f"waiting-{os.getpid()}").touch()
            time.sleep(2.0)
        return train_chunk(self, start)

    training_loop.SeedProgram.train_chunk = slow_train_chunk
    runner.run_study(study, runs_dir, storage_url, **kwargs)


def _wait_for(what, found, timeout_s):
    deadline = time.monotonic() + timeout_s
    while not (value := found()):
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s"
        time.sleep(0.05)
    return value


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.postgres
def test_postgres_worker_paused_past_its_heartbeats_stops_writing_once_taken_over(postgres_url, tmp_path):
    """SIGSTOP the worker holding the only trial after its first chunk; the other takes the trial over and finishes
    it; after SIGCONT the stale worker must write nothing more into the finished run folder and end quietly."""
    fixed = {**TINY, "actor_hidden": (16,), "critic_hidden": (16,), "eval_episodes": 20}
    fixed |= {"steps": 500, "eval_every": 500, "checkpoint_every": 100}
    study = tiny_study(name="fence", grid={"solver": ("euler",)}, seeds=(0,), fixed=fixed)
    run_dir = tmp_path / "fence" / "runs" / cell_slug(next(iter(study.cells()))) / "seed0"
    stored = runner.load_optuna_study(study, tmp_path, postgres_url, create=True)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=worker_with_slow_chunks, args=(tmp_path / f"stderr{i}", study, tmp_path, postgres_url),
                        kwargs={"progress": False, "heartbeat_s": 1})
        for i in range(2)
    ]  # fmt: skip
    for worker in workers:
        worker.start()
    try:

        def waiting_after_the_first_chunk():
            running = stored.get_trials(states=(TrialState.RUNNING,))
            worker = running and runner.worker_of(running[0])  # None between the claim and its worker's record
            return worker and (tmp_path / f"waiting-{worker['pid']}").exists() and running[0]

        trial = _wait_for("the worker finished its first chunk", waiting_after_the_first_chunk, 300)
        stale = next(w for w in workers if w.pid == runner.worker_of(trial)["pid"])
        os.kill(stale.pid, signal.SIGSTOP)
        other = next(w for w in workers if w is not stale)

        def complete():
            return runner.load_optuna_study(study, tmp_path, postgres_url).get_trials(states=(TrialState.COMPLETE,))

        (finished,) = _wait_for("the other worker completed the cell", complete, 120)
        other.join(timeout=60)
        assert other.exitcode == 0, f"the other worker ended with {other.exitcode}"
        before = _files(run_dir)
        os.kill(stale.pid, signal.SIGCONT)
        stale.join(timeout=60)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
    after = _files(run_dir)
    changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
    assert changed == [], f"the stale worker rewrote {changed} of the finished run folder ({len(before)} files)"
    stale_err = (tmp_path / f"stderr{workers.index(stale)}").read_text()
    ended = f"the stale worker ended with {stale.exitcode} (-9: killed, still running after 60 s)"
    assert stale.exitcode == 0, f"{ended}, having printed:\n{stale_err}"
    assert runner.worker_of(finished)["pid"] == other.pid, (runner.worker_of(finished), other.pid, stale.pid)
    (record,) = runner.seed_records(finished).values()
    result, metric = runs.load_result(run_dir), study.metric_for("moons")
    of_folder = seed_record(0, result, metric, study.last_evals, run_dir, tmp_path / "fence")
    assert record == of_folder, f"the trial's record {record} is not that of the folder's result {of_folder}"
    trials = runner.load_optuna_study(study, tmp_path, postgres_url).get_trials()
    states = [(t.number, t.state.name, runner.worker_of(t)["pid"]) for t in trials]
    expected = [(trial.number, "FAIL", stale.pid), (finished.number, "COMPLETE", other.pid)]
    assert states == expected, f"trials {states}, expected {expected}"
    lines = stale_err.splitlines()
    assert "Traceback" not in stale_err and len(lines) <= 1, f"the stale worker printed:\n{stale_err}"
    assert not lines or "taken over" in lines[0], f"the stale worker printed:\n{stale_err}"


def test_a_heartbeat_that_fails_is_retried(tmp_path, monkeypatch):
    """A database error in one beat (PostgreSQL restarting) must not end the heartbeat thread: two failed beats
    at a 1 s interval, then the thread records beats again."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_interval=1)
    optuna_study = optuna.create_study(storage=storage)
    trial = optuna_study.ask()
    record, calls = storage.record_heartbeat, []

    def flaky_record(trial_id):
        calls.append(trial_id)
        if len(calls) <= 2:
            raise sqlalchemy.exc.OperationalError("UPDATE", {}, Exception("server closed the connection"))
        record(trial_id)

    monkeypatch.setattr(storage, "record_heartbeat", flaky_record)
    with pytest.warns(UserWarning, match="heartbeat was not recorded") as caught, runner.heartbeat(optuna_study, trial):
        time.sleep(3.5)
    assert len(calls) >= 4 and len(caught) == 2, (len(calls), len(caught))
    optuna.storages.fail_stale_trials(optuna_study)
    assert optuna_study.get_trials()[0].state == TrialState.RUNNING, "the last beats were recorded"


def worker_killed_in_its_first_run(study, runs_dir, storage_url, **kwargs):
    """trivial_worker for two workers: the one named in runs_dir/victim kills itself (SIGKILL) in its first run,
    its trial claimed; the other's runs take 0.2 s each, so that the victim claims one before they are all done."""
    name = multiprocessing.current_process().name
    victim = (runs_dir / "victim").read_text()
    wait_until_started(runs_dir, 2)

    def train(config, run_dir, **_):
        if name == victim:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.2)
        return trivial_train(config, run_dir)

    runner_trial.train = train
    runner.run_study(study, runs_dir, storage_url, **kwargs)


@pytest.mark.parametrize("victim", ["flowkit-worker-0", "flowkit-worker-1"])
def test_a_killed_worker_at_either_position_is_taken_over_on_a_journal(victim, tmp_path):
    """Each worker killed in turn: the survivor takes its trial over, every cell completes once, and the study
    ends (a dead worker listed after a live one was never reaped, and its zombie looked alive)."""
    study = load_study(4)
    (tmp_path / "victim").write_text(victim)
    outcome = {}

    def run():
        try:
            outcome["progress"] = runner.run_workers(
                study, tmp_path, workers=2, progress=False, worker=worker_killed_in_its_first_run
            )
        except Exception as error:
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=120)
    hung = thread.is_alive()
    if hung:
        for pid_file in (tmp_path / "started").iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.name), signal.SIGKILL)
        thread.join(timeout=30)
    assert not hung, f"with {victim} killed the study was still running after 120 s"
    assert "error" not in outcome, f"every cell completed, yet run_workers raised {outcome.get('error')!r}"
    counts = audit(study, tmp_path)
    expected = {"cells": 4, "trials": 5, "complete": 4, "lost": 0, "duplicated": 0, "stuck": 0, "runs": 4}
    assert counts == {**expected, "runs_repeated": 0}, f"{victim} killed: {counts}"
    assert outcome["progress"].complete == 4, outcome["progress"]


def test_a_zombie_is_a_dead_worker(tmp_path):
    """A worker process that ended but was not yet reaped by its parent still answers kill(pid, 0)."""
    study = load_study(1)
    stored = runner.load_optuna_study(study, tmp_path, create=True)
    runner.enqueue_missing(stored, study)
    trial, _ = runner.claim_trial(stored)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline, "the child became a zombie"
        time.sleep(0.05)
    worker = {**runner.worker_of(stored.get_trials()[0]), "pid": child.pid, "started": claims._process_start(child.pid)}
    runner.storage.record_worker(stored, trial, worker)
    try:
        assert runner.enqueue_missing(stored, study) == 1, "the zombie's trial was failed and its cell enqueued again"
    finally:
        child.wait()
    assert [runner.failure_of(t)["kind"] for t in stored.get_trials()[:1]] == ["worker died"]


def worker_with_a_broken_dataset(study, runs_dir, storage_url, **kwargs):
    """trivial_worker whose every run fails as a corrupt dataset file would."""

    def train(config, run_dir, **_):
        raise ValueError(f"dataset {config.task}: cannot read its file (corrupt)")

    runner_trial.train = train
    runner.run_study(study, runs_dir, storage_url, **kwargs)


def worker_interrupted_in_its_first_run(study, runs_dir, storage_url, **kwargs):
    """trivial_worker whose runs stop as a SIGINT to the workers alone would stop them."""

    def train(config, run_dir, **_):
        raise KeyboardInterrupt

    runner_trial.train = train
    runner.run_study(study, runs_dir, storage_url, **kwargs)


def test_workers_interrupted_before_their_parent_interrupt_the_study(tmp_path):
    """Ctrl-C reaches the workers and the parent at once; workers that stopped first (exit 130, their trials stored
    as interrupted) interrupt the study, as the parent's own interrupt does: not "worker exited with code 130"."""
    study = load_study(2)
    with pytest.raises(KeyboardInterrupt):
        runner.run_workers(study, tmp_path, workers=2, progress=False, worker=worker_interrupted_in_its_first_run)
    trials = stored_trials(study, tmp_path)
    kinds = [runner.failure_of(t)["kind"] for t in trials]
    complete = [t.number for t in trials if t.state.name == "COMPLETE"]
    assert "interrupted" in kinds and not complete, f"the trials were stored as {kinds}, complete: {complete}"


def test_the_same_error_of_two_workers_is_reported_once_in_their_words(tmp_path, capfd):
    study = load_study(2)
    with pytest.raises(runner.WorkersFailedError) as raised:
        runner.run_workers(study, tmp_path, workers=2, progress=False, worker=worker_with_a_broken_dataset)
    expected = "study 'runner-load-2': ValueError: dataset moons: cannot read its file (corrupt) (the traceback is in "
    assert str(raised.value).startswith(expected), (str(raised.value), expected)
    assert str(raised.value).endswith("error.log, and in 1 more run folders' error.log)"), str(raised.value)
    printed = capfd.readouterr().err
    assert "Traceback" not in printed, f"the workers printed:\n{printed}"


SIGNALLED_PARENT = """
import functools, sys
from pathlib import Path
import flowkit.studies.runner as runner
from flowkit.benchmarks.runner_load import load_study, trivial_worker
runner.run_workers(load_study(2), Path(sys.argv[1]), workers=2, progress=False,
                   worker=functools.partial(trivial_worker, run_s=300))
"""


def ended(pid: int) -> bool:
    """Whether the process has ended (an orphan's zombie, which nothing may reap here, counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def running_workers(study, runs_dir: Path, parent: subprocess.Popen) -> list[int]:
    """The pids of the workers running the study's two trials, once both run (at most 120 s)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and parent.poll() is None:
        with contextlib.suppress(Exception):  # the journal not yet made, or its study not yet created
            running = [t for t in stored_trials(study, runs_dir) if t.state == TrialState.RUNNING]
            if len(running) == 2:
                return [runner.worker_of(t)["pid"] for t in running]
        time.sleep(0.1)
    raise AssertionError(f"both workers were running a trial within 120 s (parent exit code {parent.poll()})")


def test_interruptible_makes_sigint_even_where_ignored_and_sigterm_an_interrupt():
    """A study started by a shell script's `... &` inherits SIGINT ignored: `kill -INT` of it did nothing while
    the study ran on. Inside `interruptible` SIGINT and SIGTERM raise KeyboardInterrupt; the handlers are put
    back after."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with pytest.raises(KeyboardInterrupt), interruptible():
                os.kill(os.getpid(), signum)
                time.sleep(5)  # the handler runs at the next bytecode, long before this ends
        restored = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        assert restored == (signal.SIG_IGN, signal.SIG_DFL), f"the handlers after the block: {restored}"
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_killed_parent_stops_its_workers_with_their_trials_resumable(tmp_path, monkeypatch):
    """SIGKILL to the parent of two workers (they ran on, orphaned): the workers stop within seconds, each trial
    stored as interrupted, and the next run completes both cells. (SIGINT and SIGTERM to the parent are
    forwarded: test_cli.py's Ctrl-C test.)"""
    study = load_study(2)
    parent = subprocess.Popen([sys.executable, "-c", SIGNALLED_PARENT, str(tmp_path)], start_new_session=True)
    try:
        workers = running_workers(study, tmp_path, parent)
        signalled = time.monotonic()
        os.kill(parent.pid, signal.SIGKILL)
        while not all(ended(pid) for pid in workers) and time.monotonic() - signalled < 30:
            time.sleep(0.1)
        stopped_s = time.monotonic() - signalled
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()
    assert stopped_s < 30, f"the killed parent's workers {workers} still ran {stopped_s:.0f} s later"
    kinds = [(t.state.name, (runner.failure_of(t) or {}).get("kind")) for t in stored_trials(study, tmp_path)]
    assert kinds == [("FAIL", "interrupted")] * 2, f"the killed parent's workers stored their trials as {kinds}"
    monkeypatch.setattr(runner_trial, "train", trivial_train)
    assert runner.run_study(study, tmp_path, progress=False).complete == 2, "the next run completed both cells"

"""Many workers, one study: on a journal file and on a real PostgreSQL server, every cell runs exactly once,
a worker killed mid-trial loses nothing, and its runs resume from their checkpoints."""

import multiprocessing
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

import flowkit.studies.runner as runner
from flowkit import runs
from flowkit.benchmarks.runner_load import audit, load_study, trivial_worker
from flowkit.studies.study import cell_key, cell_slug
from tests.helpers import TINY, stored_trials, tiny_study

pytestmark = pytest.mark.slow


def worker_once_all_started(study, runs_dir, storage_url, **kwargs):
    """trivial_worker, started once every worker process has (spawned processes import at different speeds,
    and one could finish all trivial runs before another starts, leaving nothing concurrent to test)."""
    started = runs_dir / "started"
    started.mkdir(exist_ok=True)
    (started / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(started.iterdir())) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    trivial_worker(study, runs_dir, storage_url, **kwargs)


def test_four_workers_on_a_journal_run_every_cell_exactly_once(tmp_path):
    study = load_study(24, seeds=(0, 1))
    runner.run_workers(study, tmp_path, workers=4, progress=False, worker=worker_once_all_started)
    counts = audit(study, tmp_path)
    assert counts == {
        "cells": 24, "trials": 24, "complete": 24, "lost": 0, "duplicated": 0, "stuck": 0, "runs": 48,
    }  # fmt: skip
    workers = {runner.worker_of(t)["pid"] for t in stored_trials(study, tmp_path)}
    assert len(workers) >= 2, "the workers shared the cells"
    for trial in stored_trials(study, tmp_path):
        assert trial.value == pytest.approx(1000 * trial.params["lr"] + 0.5), "the mean over seeds 0 and 1"


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


@pytest.fixture
def postgres_url():
    """A PostgreSQL server on loopback for this test only (Debian's postgresql package; .ci/run installs it)."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("needs Debian's postgresql package (.ci/run installs it)")
    data = Path(tempfile.mkdtemp(prefix="flowkit-pg-"))
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_owner:
        shutil.chown(data, "postgres")
    port = 20000 + os.getpid() % 10000
    subprocess.run([*as_owner, bin_dir / "initdb", "-D", data / "db", "-A", "trust", "-U", "flowkit"], check=True,
                   capture_output=True)  # fmt: skip
    options = f"-p {port} -k {data} -c listen_addresses=127.0.0.1"
    subprocess.run([*as_owner, bin_dir / "pg_ctl", "-D", data / "db", "-o", options, "-l", data / "log", "-w", "start"],
                   check=True, capture_output=True)  # fmt: skip
    try:
        subprocess.run([bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "flowkit", "studies"],
                       check=True, capture_output=True)  # fmt: skip
        yield f"postgresql://flowkit@127.0.0.1:{port}/studies"
    finally:
        subprocess.run(
            [*as_owner, bin_dir / "pg_ctl", "-D", data / "db", "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(data, ignore_errors=True)


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

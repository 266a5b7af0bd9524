"""The trial runner: a study's cells become Optuna trials, and each trial trains its cell's seeds.

Every cell is enqueued exactly once (workers enqueue under a lock: a file lock beside a journal, an advisory
lock on PostgreSQL), and a worker claims a waiting trial by moving it from WAITING to RUNNING, which the
storage grants to one worker only; nothing is ever sampled. A worker whose queue is empty waits while other
workers' trials run, and takes over any whose worker died: on one machine a dead process is seen at once, on
a database by its missing heartbeats. Running a study again resumes it: cells with a complete trial are
skipped, a trial that was interrupted or whose worker died is enqueued again, its runs resume from their last
checkpoints, and seeds whose run folder already holds a result with the same settings are not trained again.
A run that diverges fails its trial for good, with the step and the metric recorded.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import socket
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from flowkit.studies.storage import (  # noqa: F401 (callers' runner.X)
    DEFINITION_ATTR,
    FAILURE_ATTR,
    HEARTBEAT_S,
    StorageError,
    _database,
    failure_of,
    load_optuna_study,
    open_storage,
    study_dir,
    study_lock,
    trial_cell,
)
from flowkit.studies.study import Cell, Study, cell_key, cell_slug
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from tqdm.auto import tqdm

from flowkit import runs
from flowkit.config import ConfigError, RunConfig
from flowkit.training import DivergedError, train, train_seeds

WORKER_ATTR = "flowkit:worker"
RETRYABLE_FAILURES = ("interrupted", "error", "worker died")
"""Failures whose cell is enqueued again when the study is run again; 'diverged' is final. While it runs, a
worker that runs out of cells retries only those whose worker died (a cell's error is not raised N times)."""
POLL_S = 2.0
"""How often an idle worker of a journal study looks for trials to take over."""

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _process_start(pid: int) -> str | None:
    """When the process started, as the boot's id and the start time in clock ticks (Linux's /proc), so that a
    process id the system gave again after the worker's end (or a reboot) is not taken for the worker."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return f"{boot}:{fields[19]}"


def _worker_dead(trial: optuna.trial.FrozenTrial) -> bool:
    """A running trial claimed by a process of this machine that no longer exists."""
    worker = trial.system_attrs.get(WORKER_ATTR)
    if not worker or worker.get("host") != socket.gethostname():
        return False
    try:
        os.kill(worker["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    started = worker.get("started")
    return started is not None and _process_start(worker["pid"]) not in (started, None)


def enqueue_missing(optuna_study: optuna.Study, study: Study, retried: tuple[str, ...] = RETRYABLE_FAILURES) -> int:
    """Fail the trials of dead workers, then enqueue each cell that has no waiting, running or complete trial
    and no failed one of a kind not `retried`; return how many. Call under `study_lock`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(optuna_study)
    taken = set()
    for trial in optuna_study.get_trials(deepcopy=False):
        if trial.state == TrialState.RUNNING and _worker_dead(trial):
            optuna_study._storage.set_trial_user_attr(
                trial._trial_id, FAILURE_ATTR, {"kind": "worker died", "message": "its process was gone"}
            )
            optuna_study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            continue
        if trial.state != TrialState.FAIL or failure_of(trial)["kind"] not in retried:
            taken.add(trial_cell(trial))
    missing = [cell for cell in study.cells() if cell_key(cell) not in taken]
    for cell in missing:
        optuna_study.enqueue_trial(cell)
    return len(missing)


def claim_trial(optuna_study: optuna.Study) -> tuple[optuna.Trial, Cell] | None:
    """Move one waiting trial to RUNNING for this process and return it with its cell; None if none waits."""
    storage = optuna_study._storage
    for trial in storage.get_all_trials(optuna_study._study_id, deepcopy=False, states=(TrialState.WAITING,)):
        try:
            if not storage.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        worker = {"host": socket.gethostname(), "pid": os.getpid(), "started": _process_start(os.getpid())}
        storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, worker)
        return optuna.Trial(optuna_study, trial._trial_id), trial.system_attrs["fixed_params"]
    return None


@contextlib.contextmanager
def heartbeat(optuna_study: optuna.Study, trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat from a thread while it runs (databases with heartbeats only). A beat that
    fails (the database restarting) is retried at the next interval: a silent thread would let another worker
    take over the trial while it still runs."""
    storage = _database(optuna_study._storage)
    if storage is None or storage.get_heartbeat_interval() is None:
        yield
        return
    stopped = threading.Event()

    def beat() -> None:
        while True:
            try:
                storage.record_heartbeat(trial._trial_id)
            except Exception as error:
                warnings.warn(f"trial {trial.number}: its heartbeat was not recorded ({error}); retrying", stacklevel=1)
            if stopped.wait(storage.get_heartbeat_interval()):
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join()


def run_score(result: Mapping[str, Any], metric: str, last_evals: int) -> float:
    """A run's score: the mean of `metric` over its last `last_evals` evaluations."""
    return statistics.fmean(record[metric] for record in result["eval_history"][-last_evals:])


def reusable_result(config: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """The run's stored result if its folder completed with the same settings; otherwise None, with a folder
    that holds neither that nor a checkpoint of these settings cleared for a fresh run."""
    result = runs.load_result(run_dir)
    if result is not None:
        if result["config"] != config.to_dict():
            raise ConfigError(f"run folder {run_dir} holds a result with other settings; move it away to rerun")
        return result
    checkpoint = runs.load_checkpoint(run_dir)
    if run_dir.exists() and (checkpoint is None or checkpoint[1]["config"] != config.to_dict()):
        shutil.rmtree(run_dir)
    return None


def train_vectorized(
    runs_to_train: list[tuple[RunConfig, Path]], *, progress: bool, label: str
) -> dict[int, dict[str, Any]]:
    """Train runs that differ only in seed as one vmapped program per step their checkpoints resume from."""
    by_step: dict[int, list[tuple[RunConfig, Path]]] = {}
    for config, run_dir in runs_to_train:
        checkpoint = runs.load_checkpoint(run_dir)
        by_step.setdefault(checkpoint[1]["step"] if checkpoint else 0, []).append((config, run_dir))
    results = {}
    for group in by_step.values():
        configs, run_dirs = [config for config, _ in group], [run_dir for _, run_dir in group]
        trained = train_seeds(configs, run_dirs, progress=progress, label=label)
        results.update({config.seed: result for config, result in zip(configs, trained, strict=True)})
    return results


def run_trial(
    study: Study,
    trial: optuna.Trial,
    cell: Cell,
    runs_dir: Path,
    *,
    progress: bool,
    bar: tqdm | None = None,
    vectorize_seeds: bool = False,
) -> None:
    """Train every seed of the trial's cell and tell the storage the cell's score (mean over seeds).

    With `vectorize_seeds` the seeds without a stored result train as one vmapped program.
    """
    started = time.perf_counter()
    per_seed: dict[str, Any] = {}
    seed = None
    runs_wall_s = 0.0  # in train calls of this process
    try:
        space = study.search_space()
        for name in cell:
            trial.suggest_categorical(name, space[name])
        metric = study.metric_for(cell["task"])
        planned = {
            seed: (
                study.run_config(cell, seed),
                study_dir(runs_dir, study.name) / "runs" / cell_slug(cell) / f"seed{seed}",
            )
            for seed in study.seeds
        }
        stored = {seed: reusable_result(*planned[seed]) for seed in study.seeds}
        trained = {}
        if vectorize_seeds:
            waiting = [planned[seed] for seed in study.seeds if stored[seed] is None]
            run_started = time.perf_counter()
            trained = train_vectorized(waiting, progress=progress, label=f"{cell_slug(cell)} seeds")
            runs_wall_s += time.perf_counter() - run_started
        for seed in study.seeds:
            config, run_dir = planned[seed]
            result = stored[seed] or trained.get(seed)
            if result is None:
                run_started = time.perf_counter()
                result = train(config, run_dir, progress=progress, label=f"{cell_slug(cell)} seed {seed}")
                runs_wall_s += time.perf_counter() - run_started
            per_seed[str(seed)] = {
                "score": run_score(result, metric, study.last_evals),
                "final": result["final"],
                "eval_history": [[r["step"], r[metric]] for r in result["eval_history"]],
                "consistency": result["final"].get("consistency"),
                "cost": result["cost"],
                "run_dir": str(run_dir),
                "timing": result["timing"],
                "nfe_per_solve": result["nfe_per_solve"],
            }
            trial.set_user_attr("seeds", per_seed)
            if bar is not None:
                bar.update(1)
    except DivergedError as error:
        seed = error.seed if error.seed is not None else seed
        _fail(
            trial,
            {"kind": "diverged", "seed": seed, "step": error.step, "metrics": error.metrics, "message": str(error)},
        )
        return
    except KeyboardInterrupt:
        _fail(trial, {"kind": "interrupted", "seed": seed, "message": "interrupted by the user"})
        raise
    except Exception as error:
        _fail(trial, {"kind": "error", "seed": seed, "message": f"{type(error).__name__}: {error}"})
        raise
    timings = [entry["timing"] for entry in per_seed.values()]
    trial.set_user_attr("metric", metric)
    trial.set_user_attr("wall_time_s", sum(t["wall_s"] for t in timings))
    trial.set_user_attr("compile_time_s", statistics.fmean(t["compile_s"] for t in timings))
    trial.set_user_attr("ms_per_update", statistics.median(t["ms_per_update"] for t in timings))
    trial.set_user_attr("time_s", time_breakdown(timings, time.perf_counter() - started - runs_wall_s))
    trial.study.tell(trial, statistics.fmean(entry["score"] for entry in per_seed.values()))


def time_breakdown(timings: list[dict[str, float]], outside_runs_s: float) -> dict[str, float]:
    """Where a trial's time went: its runs' compile, train and eval seconds, and everything else (run set-up,
    dataset loading, checkpoints, saving, and the trial's own time outside its runs)."""
    parts = {part: sum(t[f"{part}_s"] for t in timings) for part in ("compile", "train", "eval")}
    inside = sum(t.get("other_s", t["wall_s"] - t["compile_s"] - t["train_s"] - t["eval_s"]) for t in timings)
    return {**parts, "other": max(0.0, inside) + max(0.0, outside_runs_s)}


def _fail(trial: optuna.Trial, failure: dict[str, Any]) -> None:
    trial.set_user_attr(FAILURE_ATTR, failure)
    trial.study.tell(trial, state=TrialState.FAIL)


@dataclass
class StudyProgress:
    cells: int
    complete: int
    running: int
    waiting: int
    failed: dict[str, str]
    """Cell key -> failure message, for cells whose latest trial failed and that have no complete trial."""
    seeds_done: int
    seeds_total: int
    wall_time_s: float
    time_s: dict[str, float]
    """Seconds of the complete trials' compile, train, eval and other time, summed."""


def progress_of(study: Study, optuna_study: optuna.Study | None) -> StudyProgress:
    trials = optuna_study.get_trials(deepcopy=False) if optuna_study else []
    by_cell: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in trials:
        by_cell.setdefault(trial_cell(trial), []).append(trial)
    counts = {TrialState.COMPLETE: 0, TrialState.RUNNING: 0, TrialState.WAITING: 0}
    failed, seeds_done = {}, 0
    for cell in study.cells():
        cell_trials = by_cell.get(cell_key(cell), [])
        states = [t.state for t in cell_trials]
        for state in counts:
            if state in states:
                counts[state] += 1
                break
        else:
            if cell_trials:
                failed[cell_key(cell)] = failure_of(cell_trials[-1])["message"]
        seeds_done += max((len(t.user_attrs.get("seeds", {})) for t in cell_trials), default=0)
    return StudyProgress(
        cells=len(study.cells()),
        complete=counts[TrialState.COMPLETE],
        running=counts[TrialState.RUNNING],
        waiting=counts[TrialState.WAITING],
        failed=failed,
        seeds_done=seeds_done,
        seeds_total=len(study.cells()) * len(study.seeds),
        wall_time_s=sum(t.user_attrs.get("wall_time_s", 0.0) for t in trials),
        time_s={
            part: sum(t.user_attrs.get("time_s", {}).get(part, 0.0) for t in trials if t.state == TrialState.COMPLETE)
            for part in ("compile", "train", "eval", "other")
        },
    )


def run_study(
    study: Study,
    runs_dir: Path,
    storage_url: str | None = None,
    *,
    progress: bool = True,
    heartbeat_s: int = HEARTBEAT_S,
    vectorize_seeds: bool = False,
) -> StudyProgress:
    """Run (or resume) cells of the study on this worker until every cell is complete or finally failed,
    waiting while other workers' trials run and taking over those whose worker died.

    `vectorize_seeds` (or the study's own `vectorize_seeds`) trains each cell's seeds as one vmapped program.
    """
    study.check_data()
    optuna_study = load_optuna_study(study, runs_dir, storage_url, create=True, heartbeat_s=heartbeat_s)
    with study_lock(optuna_study._storage, study.name, runs_dir):
        enqueue_missing(optuna_study, study)
    state = progress_of(study, optuna_study)
    bar = tqdm(total=state.seeds_total, initial=state.seeds_done, desc=study.name, unit="run", disable=not progress)
    poll_s = heartbeat_s if _database(optuna_study._storage) is not None else POLL_S
    try:
        while True:
            claimed = claim_trial(optuna_study)
            if claimed is not None:
                with heartbeat(optuna_study, claimed[0]):
                    run_trial(
                        study,
                        *claimed,
                        runs_dir,
                        progress=progress,
                        bar=bar,
                        vectorize_seeds=vectorize_seeds or study.vectorize_seeds,
                    )
                continue
            with study_lock(optuna_study._storage, study.name, runs_dir):  # an error is retried by the next run
                if enqueue_missing(optuna_study, study, retried=("worker died",)):
                    continue
            if not optuna_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                break
            time.sleep(poll_s)
    finally:
        bar.close()
    return progress_of(study, optuna_study)


def run_workers(
    study: Study,
    runs_dir: Path,
    storage_url: str | None = None,
    *,
    workers: int,
    progress: bool = True,
    heartbeat_s: int = HEARTBEAT_S,
    vectorize_seeds: bool = False,
    worker: Callable[..., StudyProgress] = run_study,
) -> StudyProgress:
    """Run the study with `workers` processes on this machine, showing their common progress (runs/s, ETA).

    The storage is opened and the cells enqueued here first, so a bad storage or study fails before any
    process starts. Each process runs `worker` (run_study; tests give a cheap objective).
    """
    study.check_data()
    optuna_study = load_optuna_study(study, runs_dir, storage_url, create=True, heartbeat_s=heartbeat_s)
    with study_lock(optuna_study._storage, study.name, runs_dir):
        enqueue_missing(optuna_study, study)
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=worker,
            args=(study, runs_dir, storage_url),
            kwargs={"progress": False, "heartbeat_s": heartbeat_s, "vectorize_seeds": vectorize_seeds},
            name=f"flowkit-worker-{index}",
        )
        for index in range(workers)
    ]
    for process in processes:
        process.start()
    state = progress_of(study, optuna_study)
    bar = tqdm(total=state.seeds_total, initial=state.seeds_done, desc=study.name, unit="run", disable=not progress)
    try:
        while any(process.is_alive() for process in processes):
            time.sleep(1.0)
            done = progress_of(study, optuna_study).seeds_done
            bar.update(done - bar.n)
    finally:
        for process in processes:
            process.join()
        bar.close()
    failed = [f"{p.name} exited with code {p.exitcode}" for p in processes if p.exitcode]
    if failed:
        raise RuntimeError(f"study {study.name!r}: " + "; ".join(failed))
    return progress_of(study, optuna_study)

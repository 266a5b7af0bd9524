"""The trial runner: a study's cells become Optuna trials, and each trial trains its cell's seeds.

Every cell is enqueued exactly once, and a worker claims a waiting trial by moving it from WAITING to RUNNING,
which the storage grants to one worker only; nothing is ever sampled. Running a study again resumes it: cells
with a complete trial are skipped, a trial that was interrupted or whose worker died is enqueued again, and
seeds whose run folder already holds a result with the same settings are not trained again. A run that
diverges fails its trial for good, with the step and the metric recorded.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from tqdm.auto import tqdm

from flowkit import runs
from flowkit.config import ConfigError
from flowkit.training import DivergedError, train
from studies.study import Cell, Study, cell_key, cell_slug

DEFINITION_ATTR = "flowkit:definition"
SAMPLER_ATTR = "flowkit:sampler"
WORKER_ATTR = "flowkit:worker"
FAILURE_ATTR = "failure"
RETRYABLE_FAILURES = ("interrupted", "error", "worker died")
"""Failures whose cell is enqueued again when the study is run again; 'diverged' is final."""

optuna.logging.set_verbosity(optuna.logging.WARNING)


class StorageError(ConfigError):
    """The Optuna storage cannot be opened, or holds a different study under the same name."""


def study_dir(runs_dir: Path, study_name: str) -> Path:
    return runs_dir / study_name


def default_journal(runs_dir: Path, study_name: str) -> Path:
    return study_dir(runs_dir, study_name) / "optuna.journal"


def open_storage(url: str | None, runs_dir: Path, study_name: str) -> BaseStorage:
    """The study's storage: a journal file under runs/ by default, a journal path, or a database URL."""
    if url is None:
        url = str(default_journal(runs_dir, study_name))
    if "://" not in url:
        path = Path(url)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as error:
            raise StorageError(f"storage {url!r}: cannot open the journal file ({error.strerror})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, heartbeat_interval=60, grace_period=180)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StorageError(f"storage {url!r}: cannot connect ({reason})") from None


def load_optuna_study(
    study: Study, runs_dir: Path, storage_url: str | None = None, *, create: bool = False
) -> optuna.Study | None:
    """The stored study, checked against the study file; created if asked, else None when absent.

    Without `create` nothing is written, not even an empty journal file.
    """
    if storage_url is None and not create and not default_journal(runs_dir, study.name).exists():
        return None
    storage = open_storage(storage_url, runs_dir, study.name)
    definition = study.definition()
    try:
        stored = optuna.load_study(study_name=study.name, storage=storage, sampler=EnqueuedCellsOnly())
    except KeyError:
        if not create:
            return None
        direction = "minimize" if study.lower_is_better() else "maximize"
        stored = optuna.create_study(
            study_name=study.name, storage=storage, direction=direction, sampler=EnqueuedCellsOnly()
        )
        stored.set_user_attr(DEFINITION_ATTR, definition)
        stored.set_user_attr(
            SAMPLER_ATTR, "EnqueuedCellsOnly: each cell enqueued once, claimed atomically; nothing sampled"
        )
        return stored
    if stored.user_attrs.get(DEFINITION_ATTR) != definition:
        changed = sorted(
            key for key in definition if stored.user_attrs.get(DEFINITION_ATTR, {}).get(key) != definition[key]
        )
        raise StorageError(
            f"study {study.name!r}: the storage holds results from a different definition of this study "
            f"(changed: {', '.join(changed)}); to keep both, give the study file a new name; to start over, "
            "delete the stored study (its journal file under runs/, or optuna delete-study for a database)"
        )
    return stored


class EnqueuedCellsOnly(optuna.samplers.BaseSampler):
    """The sampler of a flowkit study: every parameter comes from an enqueued cell, nothing is ever sampled."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        raise RuntimeError(f"parameter {param_name!r} of trial {trial.number} was not enqueued; flowkit never samples")


def trial_cell(trial: optuna.trial.FrozenTrial) -> str:
    return cell_key(trial.system_attrs.get("fixed_params", trial.params))


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
        return False
    return False


def enqueue_missing(optuna_study: optuna.Study, study: Study) -> int:
    """Enqueue each cell that has no waiting, running, complete or finally failed trial; return how many."""
    taken = set()
    for trial in optuna_study.get_trials(deepcopy=False):
        if trial.state == TrialState.RUNNING and _worker_dead(trial):
            optuna_study._storage.set_trial_user_attr(
                trial._trial_id, FAILURE_ATTR, {"kind": "worker died", "message": "its process was gone"}
            )
            optuna_study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            continue
        failure = trial.user_attrs.get(FAILURE_ATTR, {})
        if trial.state != TrialState.FAIL or failure.get("kind") not in RETRYABLE_FAILURES:
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
        storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, {"host": socket.gethostname(), "pid": os.getpid()})
        return optuna.Trial(optuna_study, trial._trial_id), trial.system_attrs["fixed_params"]
    return None


def run_score(result: Mapping[str, Any], metric: str, last_evals: int) -> float:
    """A run's score: the mean of `metric` over its last `last_evals` evaluations."""
    return statistics.fmean(record[metric] for record in result["eval_history"][-last_evals:])


def train_or_reuse(config, run_dir: Path, *, progress: bool, label: str) -> dict[str, Any]:
    """A run's result: the stored one if its folder completed with the same settings, else a fresh run."""
    result = runs.load_result(run_dir)
    if result is not None:
        if result["config"] != config.to_dict():
            raise ConfigError(f"run folder {run_dir} holds a result with other settings; move it away to rerun")
        return result
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return train(config, run_dir, progress=progress, label=label)


def run_trial(
    study: Study, trial: optuna.Trial, cell: Cell, runs_dir: Path, *, progress: bool, bar: tqdm | None = None
) -> None:
    """Train every seed of the trial's cell and tell the storage the cell's score (mean over seeds)."""
    per_seed: dict[str, Any] = {}
    seed = None
    try:
        space = study.search_space()
        for name in cell:
            trial.suggest_categorical(name, space[name])
        metric = study.metric_for(cell["task"])
        for seed in study.seeds:
            config = study.run_config(cell, seed)
            run_dir = study_dir(runs_dir, study.name) / "runs" / cell_slug(cell) / f"seed{seed}"
            label = f"{cell_slug(cell)} seed {seed}"
            result = train_or_reuse(config, run_dir, progress=progress, label=label)
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
    trial.study.tell(trial, statistics.fmean(entry["score"] for entry in per_seed.values()))


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
                failed[cell_key(cell)] = cell_trials[-1].user_attrs.get(FAILURE_ATTR, {}).get("message", "failed")
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
    )


def run_study(study: Study, runs_dir: Path, storage_url: str | None = None, *, progress: bool = True) -> StudyProgress:
    """Run (or resume) every cell of the study on this worker until no trial is waiting."""
    optuna_study = load_optuna_study(study, runs_dir, storage_url, create=True)
    enqueue_missing(optuna_study, study)
    state = progress_of(study, optuna_study)
    done = state.complete * len(study.seeds)
    bar = tqdm(total=state.seeds_total, initial=done, desc=study.name, unit="run", disable=not progress)
    try:
        while (claimed := claim_trial(optuna_study)) is not None:
            run_trial(study, *claimed, runs_dir, progress=progress, bar=bar)
    finally:
        bar.close()
    return progress_of(study, optuna_study)

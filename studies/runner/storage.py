"""The runner's adapter to Optuna's storage (backends.py opens it): creating and loading the stored study, and
reading and writing trials' states and attributes (sampling.py turns a search space into Optuna's objects;
analysis/importance.py uses its importance evaluators).

Optuna is used through its public API except where none exists: a Study's storage (`_storage`) and the database
behind Optuna's cache (`_backend`), read by `_storage_of` and `_database` below, are needed to claim a waiting
trial atomically, to record heartbeats and to take PostgreSQL's advisory lock.
"""

from __future__ import annotations

import contextlib
import warnings
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from flowkit import runs
from flowkit.run_config import upgraded
from flowkit.studies.runner import records, sampling
from flowkit.studies.runner.backends import (
    HEARTBEAT_S,
    StorageError,
    default_journal,
    open_storage,
    study_dir,
)
from flowkit.studies.runner.records import PrunedRecord, SeedRecord
from flowkit.studies.search import Dimension
from flowkit.studies.study import SAMPLE, Cell, Study, cell_key

DEFINITION_ATTR = "flowkit:definition"
SAMPLER_ATTR = "flowkit:sampler"
SCHEMA_ATTR = "flowkit:schema"
CELL_ATTR = "flowkit:cell"
WORKER_ATTR = "flowkit:worker"
FAILURE_ATTR = "failure"
PRUNED_ATTR = "pruned"
SEEDS_ATTR = "seeds"
WAITING, RUNNING, COMPLETE, FAILED, PRUNED = "waiting", "running", "complete", "failed", "pruned"
_STATES = {
    TrialState.WAITING: WAITING,
    TrialState.RUNNING: RUNNING,
    TrialState.COMPLETE: COMPLETE,
    TrialState.FAIL: FAILED,
    TrialState.PRUNED: PRUNED,
}

StoredStudy = optuna.Study
"""A study as stored; the other modules of the runner hand it to this one and use nothing of it themselves."""

optuna.logging.set_verbosity(optuna.logging.WARNING)


def load_optuna_study(
    study: Study,
    runs_dir: Path,
    storage_url: str | None = None,
    *,
    create: bool = False,
    heartbeat_s: int = HEARTBEAT_S,
) -> StoredStudy | None:
    """The stored study, checked against the study file; created if asked, else None when absent.

    Without `create` nothing is written, not even an empty journal file.
    """
    if not create and (storage_url is None or "://" not in storage_url):
        journal = default_journal(runs_dir, study.name) if storage_url is None else Path(storage_url)
        if not journal.exists():
            return None
    storage = open_storage(storage_url, runs_dir, study.name, heartbeat_s)
    stored = _load(study, storage)
    if stored is None and not create:
        return None
    if stored is None or (create and DEFINITION_ATTR not in stored.user_attrs):
        with study_lock(storage, study.name, runs_dir):  # another worker may be creating it and hold the lock
            stored = _load(study, storage)
            if stored is None:
                stored = _create(study, storage)
    _check_stored(study, stored)
    return stored


def _load(study: Study, storage: BaseStorage) -> StoredStudy | None:
    """The stored study as a worker holds it: trials are claimed, never sampled by it (a search study samples
    through `ask_sampled`), and its pruner judges the intermediate values."""
    pruner = sampling.pruner(study.search)
    try:
        return optuna.load_study(study_name=study.name, storage=storage, sampler=EnqueuedCellsOnly(), pruner=pruner)
    except KeyError:
        return None


def _create(study: Study, storage: BaseStorage) -> StoredStudy:
    """A new stored study with its schema and definition (call under `study_lock`, so workers agree)."""
    direction = "minimize" if study.lower_is_better() else "maximize"
    stored = optuna.create_study(
        study_name=study.name, storage=storage, direction=direction, sampler=EnqueuedCellsOnly()
    )
    stored.set_user_attr(SCHEMA_ATTR, records.SCHEMA_VERSION)
    stored.set_user_attr(SAMPLER_ATTR, _sampler_attr(study))
    stored.set_user_attr(DEFINITION_ATTR, study.definition())
    return _load(study, storage)


def _sampler_attr(study: Study) -> str | dict[str, Any]:
    if study.search is None:
        return "EnqueuedCellsOnly: each cell enqueued once, claimed atomically; nothing sampled"
    search = study.search
    return {"sampler": search.sampler, "sampler_seed": search.sampler_seed, "pruner": search.pruner}


def sampler_of(optuna_study: StoredStudy) -> dict[str, Any] | None:
    """A search study's stored sampler, its seed and its pruner; None for a grid study."""
    stored = optuna_study.user_attrs.get(SAMPLER_ATTR)
    return stored if isinstance(stored, dict) else None


def _check_stored(study: Study, stored: StoredStudy) -> None:
    """Refuse a stored study written under another schema, or from a different definition of the study."""
    records.check_schema(stored.user_attrs.get(SCHEMA_ATTR), f"study {study.name!r}: the storage holds results")
    definition = study.definition()
    stored_definition = _upgraded(stored.user_attrs.get(DEFINITION_ATTR, {}))
    if stored_definition != definition:
        changed = sorted(key for key in definition if stored_definition.get(key) != definition[key])
        raise StorageError(
            f"study {study.name!r}: the storage holds results from a different definition of this study "
            f"(changed: {', '.join(changed)}); to keep both, give the study another name (its name= in the study "
            "file); to start over, delete the stored study (its journal file under runs/, or optuna delete-study "
            "for a database)"
        )


def _upgraded(definition: dict[str, Any]) -> dict[str, Any]:
    """A stored definition with each cell's settings as this flowkit writes them (`run_config.upgraded`: a setting
    added since counts at its default), so that a kit that gained a setting continues the studies stored before."""
    cells = definition.get("runs")
    if not isinstance(cells, dict):
        return definition
    return {**definition, "runs": {key: upgraded(config) for key, config in cells.items()}}


class EnqueuedCellsOnly(optuna.samplers.BaseSampler):
    """The sampler of a flowkit study: every parameter comes from an enqueued cell, nothing is ever sampled."""

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        raise RuntimeError(f"parameter {param_name!r} of trial {trial.number} was not enqueued; flowkit never samples")


def _storage_of(optuna_study: StoredStudy) -> BaseStorage:
    """The study's storage: Optuna has no public accessor, and claims and failures of other workers' trials
    are storage calls (a Study can only tell the trials it asked for)."""
    return optuna_study._storage


def _database(storage: BaseStorage) -> RDBStorage | None:
    """The RDB storage behind a storage (Optuna wraps a database in a private cache), or None for a journal."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


def is_database(optuna_study: StoredStudy) -> bool:
    return _database(_storage_of(optuna_study)) is not None


def _trial_id(optuna_study: StoredStudy, number: int) -> int:
    storage = _storage_of(optuna_study)
    study_id = storage.get_study_id_from_name(optuna_study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)


@contextlib.contextmanager
def study_lock(storage: BaseStorage, study_name: str, runs_dir: Path) -> Iterator[None]:
    """Serialise creating the stored study and enqueueing its cells across workers: an advisory lock on
    PostgreSQL (any machine), else a file lock (workers of this machine)."""
    database = _database(storage)
    if database is not None and database.engine.dialect.name == "postgresql":
        key = zlib.crc32(f"flowkit:{study_name}".encode())
        with database.engine.connect() as connection:
            connection.exec_driver_sql(f"SELECT pg_advisory_lock({key})")
            try:
                yield
            finally:
                connection.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
        return
    with runs.exclusive_lock(study_dir(runs_dir, study_name) / ".lock"):
        yield


def stored_study_lock(optuna_study: StoredStudy, runs_dir: Path) -> contextlib.AbstractContextManager[None]:
    """`study_lock` of a loaded study."""
    return study_lock(_storage_of(optuna_study), optuna_study.study_name, runs_dir)


def trials(optuna_study: StoredStudy, state: str | None = None) -> list[FrozenTrial]:
    """The study's trials (those in `state` only, if given), in the order they were enqueued; a search study's
    trial is one once its cell is recorded (a worker that died while sampling leaves a trial that never is)."""
    states = None if state is None else tuple(s for s, name in _STATES.items() if name == state)
    return [t for t in optuna_study.get_trials(deepcopy=False, states=states) if CELL_ATTR in t.user_attrs]


def study_cells(study: Study, optuna_study: StoredStudy | None) -> list[Cell]:
    """The cells a study runs: a grid study's declared cells, or a search study's cells sampled so far, in the
    order they were sampled."""
    if study.search is None:
        return study.cells()
    sampled = {trial_cell(t): cell_of(t) for t in (trials(optuna_study) if optuna_study else [])}
    return sorted(sampled.values(), key=lambda cell: cell[SAMPLE])


def state_of(trial: FrozenTrial) -> str:
    return _STATES[trial.state]


def cell_of(trial: FrozenTrial) -> Cell:
    return trial.user_attrs[CELL_ATTR]


def trial_cell(trial: FrozenTrial) -> str:
    """The key of the trial's cell (`cell_key`)."""
    return cell_key(cell_of(trial))


def enqueue_cell(optuna_study: StoredStudy, cell: Cell, params: Cell | None = None) -> None:
    """A waiting trial of the cell, its parameters fixed to `params` (the whole cell unless given)."""
    optuna_study.enqueue_trial(cell if params is None else params, user_attrs={CELL_ATTR: cell})


def ask_sampled(
    optuna_study: StoredStudy, sampler: optuna.samplers.BaseSampler, space: Mapping[str, Dimension]
) -> tuple[Trial, dict[str, Any]]:
    """A new RUNNING trial whose parameters `sampler` drew from `space`, and those values; call under
    `study_lock` with no trial waiting (Optuna's ask would hand out a waiting trial instead of a new one)."""
    asking = optuna.load_study(
        study_name=optuna_study.study_name, storage=_storage_of(optuna_study), sampler=sampler,
        pruner=optuna_study.pruner,  # TPE reads Hyperband's brackets from the study's pruner
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # on a database: Optuna's heartbeats are for optimize(); ours for claims
        asked = asking.ask({name: sampling.distribution(d) for name, d in space.items()})
    return Trial(optuna_study, _trial_id(optuna_study, asked.number)), dict(asked.params)


def record_cell(optuna_study: StoredStudy, trial: Trial, cell: Cell) -> None:
    """Record a sampled trial's cell, after which the runner counts it (`trials`)."""
    _storage_of(optuna_study).set_trial_user_attr(_trial_id(optuna_study, trial.number), CELL_ATTR, cell)


def fail_silent_trials(optuna_study: StoredStudy) -> None:
    """Fail the running trials whose heartbeats stopped (databases with heartbeats only)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(optuna_study)


def claim_waiting_trial(optuna_study: StoredStudy) -> tuple[Trial, Cell] | None:
    """Move one waiting trial to RUNNING and return it with its cell; the storage grants each to one caller."""
    storage = _storage_of(optuna_study)
    for waiting in trials(optuna_study, WAITING):
        trial_id = _trial_id(optuna_study, waiting.number)
        try:
            if not storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                continue
        except UpdateFinishedTrialError:
            continue
        return Trial(optuna_study, trial_id), cell_of(waiting)
    return None


def record_worker(optuna_study: StoredStudy, trial: Trial | FrozenTrial, worker: Mapping[str, Any]) -> None:
    """Record which process runs the trial (host, process id, process start)."""
    _storage_of(optuna_study).set_trial_system_attr(_trial_id(optuna_study, trial.number), WORKER_ATTR, dict(worker))


def current_trial(optuna_study: StoredStudy, trial: Trial) -> FrozenTrial:
    """The trial as stored now, read past Optuna's cache (which keeps a running trial as this process left it)."""
    storage = _storage_of(optuna_study)
    return (_database(storage) or storage).get_trial(_trial_id(optuna_study, trial.number))


def worker_of(trial: FrozenTrial) -> dict[str, Any] | None:
    return trial.system_attrs.get(WORKER_ATTR)


def mark_failed(optuna_study: StoredStudy, trial: Trial | FrozenTrial, failure: Mapping[str, Any]) -> None:
    """Fail a trial this process did not ask for (another worker's), saying why."""
    storage, trial_id = _storage_of(optuna_study), _trial_id(optuna_study, trial.number)
    storage.set_trial_user_attr(trial_id, FAILURE_ATTR, dict(failure))
    storage.set_trial_state_values(trial_id, TrialState.FAIL)


def failure_of(trial: FrozenTrial) -> dict[str, Any]:
    """Why a failed trial failed. Optuna fails a trial whose heartbeats stopped without a word, and a
    finished trial takes no attributes, so a failure flowkit did not record is a worker that died."""
    silent = {"kind": "worker died", "message": "its worker stopped sending heartbeats"}
    return trial.user_attrs.get(FAILURE_ATTR, silent)


def heartbeat_interval(optuna_study: StoredStudy) -> int | None:
    """Seconds between a running trial's heartbeats; None where the storage takes none (a journal)."""
    database = _database(_storage_of(optuna_study))
    return None if database is None else database.get_heartbeat_interval()


def heartbeat_recorder(optuna_study: StoredStudy, trial: Trial) -> Callable[[], None]:
    """A function that records one heartbeat of the trial (call only where `heartbeat_interval` is not None)."""
    database, trial_id = _database(_storage_of(optuna_study)), _trial_id(optuna_study, trial.number)
    return lambda: database.record_heartbeat(trial_id)


def suggest_cell(trial: Trial, cell: Cell, space: Mapping[str, tuple[Any, ...]]) -> None:
    """Record the cell as the trial's parameters (each taken from its enqueued value, nothing sampled)."""
    for name in cell:
        trial.suggest_categorical(name, space[name])


def suggest_params(trial: Trial, cell: Cell, space: Mapping[str, Dimension]) -> None:
    """Record a search study's cell as the trial's parameters (each set already: sampled or enqueued)."""
    for name, dimension in space.items():
        sampling.suggest(trial, name, dimension)


def report_score(trial: Trial, value: float, step: int) -> bool:
    """Report the trial's score so far at `step` (its intermediate value); return whether to go on (the
    study's pruner does not stop it)."""
    trial.report(value, step)
    return not trial.should_prune()


def tell_pruned(trial: Trial, record: PrunedRecord) -> None:
    trial.set_user_attr(PRUNED_ATTR, records.pruned_to_json(record))
    trial.study.tell(trial, state=TrialState.PRUNED)


def pruned_of(trial: FrozenTrial) -> PrunedRecord | None:
    """Where a pruned trial's cell stopped; None for any other trial."""
    stored = trial.user_attrs.get(PRUNED_ATTR)
    return None if stored is None else records.pruned_from_json(stored)


def write_seed_records(trial: Trial, by_seed: Mapping[int, SeedRecord]) -> None:
    trial.set_user_attr(SEEDS_ATTR, {str(seed): records.to_json(r) for seed, r in by_seed.items()})


def seed_records(trial: FrozenTrial) -> dict[int, SeedRecord]:
    """The trial's records of its finished seeds, by seed."""
    stored = trial.user_attrs.get(SEEDS_ATTR, {})
    return {int(seed): records.from_json(data) for seed, data in stored.items()}


def write_summary(trial: Trial, summary: Mapping[str, Any]) -> None:
    """The trial's metric and times over its seeds (wall_time_s, compile_time_s, ms_per_update, time_s)."""
    for name, value in summary.items():
        trial.set_user_attr(name, value)


def wall_time_s(trial: FrozenTrial) -> float:
    """The trial's runs' wall time; 0 until it completes."""
    return trial.user_attrs.get("wall_time_s", 0.0)


def time_s(trial: FrozenTrial) -> dict[str, float]:
    """The trial's compile, train, eval and other seconds; empty until it completes."""
    return trial.user_attrs.get("time_s", {})


def tell_score(trial: Trial, score: float) -> None:
    trial.study.tell(trial, score)


def tell_failed(trial: Trial, failure: Mapping[str, Any]) -> None:
    trial.set_user_attr(FAILURE_ATTR, dict(failure))
    trial.study.tell(trial, state=TrialState.FAIL)

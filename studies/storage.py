"""A study's Optuna storage: opening it, checking it holds this study's definition, and reading its trials.

Kept apart from the runner (which trains) so that reading results, as a report does, loads no agents.
One machine: a journal file under runs/; many machines: a database URL (PostgreSQL, with heartbeats).
"""

from __future__ import annotations

import contextlib
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from flowkit.studies.study import Study, cell_key
from optuna.storages import BaseStorage, JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from flowkit import runs
from flowkit.config import ConfigError

DEFINITION_ATTR = "flowkit:definition"
SAMPLER_ATTR = "flowkit:sampler"
FAILURE_ATTR = "failure"
HEARTBEAT_S = 60
"""On a database, a running trial records a heartbeat this often; one silent for 3 intervals is taken over."""

optuna.logging.set_verbosity(optuna.logging.WARNING)


class StorageError(ConfigError):
    """The Optuna storage cannot be opened, or holds a different study under the same name."""


def study_dir(runs_dir: Path, study_name: str) -> Path:
    return runs_dir / study_name


def default_journal(runs_dir: Path, study_name: str) -> Path:
    return study_dir(runs_dir, study_name) / "optuna.journal"


def open_storage(url: str | None, runs_dir: Path, study_name: str, heartbeat_s: int = HEARTBEAT_S) -> BaseStorage:
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
    engine_url = url
    if url.startswith(("postgresql://", "postgres://")):
        engine_url = "postgresql+psycopg://" + url.split("://", 1)[1]  # psycopg 3, not SQLAlchemy's psycopg2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(
                engine_url,
                heartbeat_interval=heartbeat_s,
                grace_period=3 * heartbeat_s,
            )
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise StorageError(f"storage {url!r}: cannot connect ({reason})") from None


def failure_of(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """Why a failed trial failed. Optuna fails a trial whose heartbeats stopped without a word, and a
    finished trial takes no attributes, so a failure flowkit did not record is a worker that died."""
    silent = {"kind": "worker died", "message": "its worker stopped sending heartbeats"}
    return trial.user_attrs.get(FAILURE_ATTR, silent)


def load_optuna_study(
    study: Study,
    runs_dir: Path,
    storage_url: str | None = None,
    *,
    create: bool = False,
    heartbeat_s: int = HEARTBEAT_S,
) -> optuna.Study | None:
    """The stored study, checked against the study file; created if asked, else None when absent.

    Without `create` nothing is written, not even an empty journal file.
    """
    if not create and (storage_url is None or "://" not in storage_url):
        journal = default_journal(runs_dir, study.name) if storage_url is None else Path(storage_url)
        if not journal.exists():
            return None
    storage = open_storage(storage_url, runs_dir, study.name, heartbeat_s)
    definition = study.definition()
    try:
        stored = optuna.load_study(study_name=study.name, storage=storage, sampler=EnqueuedCellsOnly())
    except KeyError:
        if not create:
            return None
        with study_lock(storage, study.name, runs_dir):
            try:
                stored = optuna.load_study(study_name=study.name, storage=storage, sampler=EnqueuedCellsOnly())
            except KeyError:
                return _create(study, storage)
    if create and DEFINITION_ATTR not in stored.user_attrs:  # another worker is creating it and holds the lock
        with study_lock(storage, study.name, runs_dir):
            stored = optuna.load_study(study_name=study.name, storage=storage, sampler=EnqueuedCellsOnly())
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


def _create(study: Study, storage: BaseStorage) -> optuna.Study:
    """A new stored study with its definition (call under `study_lock`, so workers starting together agree)."""
    direction = "minimize" if study.lower_is_better() else "maximize"
    stored = optuna.create_study(
        study_name=study.name, storage=storage, direction=direction, sampler=EnqueuedCellsOnly()
    )
    stored.set_user_attr(DEFINITION_ATTR, study.definition())
    stored.set_user_attr(
        SAMPLER_ATTR, "EnqueuedCellsOnly: each cell enqueued once, claimed atomically; nothing sampled"
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


def _database(storage: BaseStorage) -> RDBStorage | None:
    """The RDB storage behind a study's storage (Optuna wraps it in a cache), or None for a journal."""
    backend = getattr(storage, "_backend", storage)
    return backend if isinstance(backend, RDBStorage) else None


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

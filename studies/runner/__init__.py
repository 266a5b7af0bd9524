"""The trial runner: a study's cells become Optuna trials, and each trial trains its cell's seeds.

A grid study's cells are known ahead: every cell is enqueued exactly once (workers enqueue under a lock: a
file lock beside a journal, an advisory lock on PostgreSQL), and a worker claims a waiting trial by moving it
from WAITING to RUNNING, which the storage grants to one worker only; nothing is sampled. A search study's cells
are sampled by Optuna's sampler one at a time under the same lock, while its budget lasts
(claims.sample_trial), and its pruner may stop a cell whose score so far is behind (the trial is PRUNED; its
runs keep their checkpoints). A worker whose queue is empty waits while other workers' trials run, and takes
over any whose worker died: on one machine a dead process is seen at once, on a database by its missing
heartbeats. Running a study again resumes it: cells with a complete trial are skipped, a trial that was
interrupted or whose worker died is enqueued again, its runs resume from their last checkpoints, and seeds
whose run folder already holds a result with the same settings are not trained again.
A run that diverges fails its trial for good, with the step and the metric recorded.

Modules, each one concern: backends (opening a journal file or a database) and storage (the adapter to
Optuna's stored study and trials), sampling (a search's Optuna sampler, pruner and distributions; these three are
the only modules that know Optuna), records (a trial's per-seed records and where their run folders are), claims
(the queue of cells and workers' claims on them), heartbeat, trial (running one trial), progress, workers
(run_study in this process, run_workers in several).
"""

from flowkit.studies.runner.backends import HEARTBEAT_S, StorageError, open_storage, study_dir
from flowkit.studies.runner.claims import RETRYABLE_FAILURES, claim_trial, enqueue_missing, sample_trial
from flowkit.studies.runner.heartbeat import heartbeat
from flowkit.studies.runner.records import PrunedRecord, RecordError, SeedRecord, resolve_run_dir
from flowkit.studies.runner.storage import (
    DEFINITION_ATTR,
    FAILURE_ATTR,
    cell_of,
    failure_of,
    load_optuna_study,
    pruned_of,
    sampler_of,
    seed_records,
    study_cells,
    study_lock,
    trial_cell,
    worker_of,
)
from flowkit.studies.runner.study_progress import StudyProgress, progress_of
from flowkit.studies.runner.trial import CellFailedError, run_trial
from flowkit.studies.runner.workers import WorkersFailedError, run_study, run_workers

__all__ = [
    "DEFINITION_ATTR",
    "FAILURE_ATTR",
    "HEARTBEAT_S",
    "RETRYABLE_FAILURES",
    "CellFailedError",
    "PrunedRecord",
    "RecordError",
    "SeedRecord",
    "StorageError",
    "StudyProgress",
    "WorkersFailedError",
    "cell_of",
    "claim_trial",
    "enqueue_missing",
    "failure_of",
    "heartbeat",
    "load_optuna_study",
    "open_storage",
    "progress_of",
    "pruned_of",
    "resolve_run_dir",
    "run_study",
    "run_trial",
    "run_workers",
    "sample_trial",
    "sampler_of",
    "seed_records",
    "study_cells",
    "study_dir",
    "study_lock",
    "trial_cell",
    "worker_of",
]

"""The queue of a study's cells and the claims on them: every cell is enqueued exactly once, a worker claims a
waiting trial for itself, and the trial of a worker that died is failed so that its cell is enqueued again.
A search study's cells are sampled one at a time under the study's lock, while its budget lasts; a sampled cell
whose worker died is enqueued again like a grid cell, with its sampled values, and never sampled anew."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from flowkit.studies.runner import sampling, storage
from flowkit.studies.runner.storage import FrozenTrial, StoredStudy, Trial
from flowkit.studies.study import Cell, Study, cell_key

RETRYABLE_FAILURES = ("interrupted", "error", "worker died")
"""Failures whose cell is enqueued again when the study is run again; 'diverged' is final. While it runs, a
worker that runs out of cells retries only those whose worker died (a cell's error is not raised N times)."""


def _process_stat(pid: int) -> list[str] | None:
    """The fields of Linux's /proc/PID/stat after the command name (state first), or None without them."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _process_start(pid: int) -> str | None:
    """When the process started, as the boot's id and the start time in clock ticks (Linux's /proc), so that a
    process id the system gave again after the worker's end (or a reboot) is not taken for the worker."""
    fields = _process_stat(pid)
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    return None if fields is None else f"{boot}:{fields[19]}"


def worker_dead(trial: FrozenTrial) -> bool:
    """A running trial claimed by a process of this machine that no longer exists (or is a zombie)."""
    worker = storage.worker_of(trial)
    if not worker or worker.get("host") != socket.gethostname():
        return False
    try:
        os.kill(worker["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    fields = _process_stat(worker["pid"])
    if fields is not None and fields[0] in ("Z", "X"):  # ended, not yet reaped by its parent: kill(pid, 0) works
        return True
    started = worker.get("started")
    return started is not None and _process_start(worker["pid"]) not in (started, None)


def why_orphaned(trial: FrozenTrial) -> str | None:
    """Why a running trial has no live worker, or None if it may have one. Workers claim a trial and record
    themselves on it under the study lock, so a caller holding that lock who finds a running trial with no worker
    recorded knows its claimer died between the two writes (nothing else would ever fail it: no process to look
    up, no heartbeat to miss)."""
    if storage.worker_of(trial) is None:
        return "its worker died while claiming it"
    return "its process was gone" if worker_dead(trial) else None


def enqueue_missing(optuna_study: StoredStudy, study: Study, retried: tuple[str, ...] = RETRYABLE_FAILURES) -> int:
    """Fail the trials of dead workers, then enqueue each cell that has no waiting, running or complete trial
    and no failed one of a kind not `retried`; return how many. Call under `study_lock`."""
    storage.fail_silent_trials(optuna_study)
    taken = set()
    for trial in storage.trials(optuna_study):
        state = storage.state_of(trial)
        if state == storage.RUNNING and (died := why_orphaned(trial)):
            storage.mark_failed(optuna_study, trial, {"kind": "worker died", "message": died})
            continue
        if state != storage.FAILED or storage.failure_of(trial)["kind"] not in retried:
            taken.add(storage.trial_cell(trial))
    missing = [cell for cell in storage.study_cells(study, optuna_study) if cell_key(cell) not in taken]
    for cell in missing:
        storage.enqueue_cell(optuna_study, cell, None if study.search is None else _params(study, cell))
    return len(missing)


def _params(study: Study, cell: Cell) -> Cell:
    """A search study's cell's Optuna parameters: its sampled values (the method, task and index are fixed)."""
    return {name: cell[name] for name in study.parameters()}


def sample_trial(optuna_study: StoredStudy, study: Study) -> tuple[Trial, Cell] | None:
    """Claim a waiting trial, else, while the search's budget lasts, sample the next cell as a RUNNING trial of
    this process; None when neither is left. Call under `study_lock`: the budget is counted, the cell drawn and
    recorded before another worker may count."""
    claimed = claim_trial(optuna_study)
    sample = len(storage.study_cells(study, optuna_study))
    if claimed is not None or sample >= study.search.trials:
        return claimed
    sampler = sampling.sampler(study.search, sample)
    trial, values = storage.ask_sampled(optuna_study, sampler, study.parameters())
    storage.record_worker(optuna_study, trial, _this_worker())
    cell = study.sampled_cell(values, sample)
    storage.record_cell(optuna_study, trial, cell)
    return trial, cell


def _this_worker() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": _process_start(os.getpid())}


def claim_trial(optuna_study: StoredStudy) -> tuple[Trial, Cell] | None:
    """Move one waiting trial to RUNNING for this process and return it with its cell; None if none waits. Call
    under `study_lock` (`why_orphaned` relies on it)."""
    claimed = storage.claim_waiting_trial(optuna_study)
    if claimed is not None:
        storage.record_worker(optuna_study, claimed[0], _this_worker())
    return claimed


def still_claimed(optuna_study: StoredStudy, trial: Trial) -> bool:
    """Whether the trial is still RUNNING under this process's claim: once another worker took it over (its
    heartbeats looked stopped, its process looked gone), this one must write nothing more for it."""
    current = storage.current_trial(optuna_study, trial)
    return storage.state_of(current) == storage.RUNNING and storage.worker_of(current) == _this_worker()

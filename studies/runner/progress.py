"""How far a study is: per cell, whether its trial is complete, running, waiting or failed, and the seeds done."""

from __future__ import annotations

from dataclasses import dataclass

from flowkit.studies.runner import storage
from flowkit.studies.runner.storage import FrozenTrial, StoredStudy
from flowkit.studies.study import Study, cell_key


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


def progress_of(study: Study, optuna_study: StoredStudy | None) -> StudyProgress:
    trials = storage.trials(optuna_study) if optuna_study else []
    by_cell: dict[str, list[FrozenTrial]] = {}
    for trial in trials:
        by_cell.setdefault(storage.trial_cell(trial), []).append(trial)
    counts = {storage.COMPLETE: 0, storage.RUNNING: 0, storage.WAITING: 0}
    failed, seeds_done = {}, 0
    for cell in study.cells():
        cell_trials = by_cell.get(cell_key(cell), [])
        states = [storage.state_of(t) for t in cell_trials]
        for state in counts:
            if state in states:
                counts[state] += 1
                break
        else:
            if cell_trials:
                failed[cell_key(cell)] = storage.failure_of(cell_trials[-1])["message"]
        seeds_done += max((len(storage.seed_records(t)) for t in cell_trials), default=0)
    complete = [t for t in trials if storage.state_of(t) == storage.COMPLETE]
    return StudyProgress(
        cells=len(study.cells()),
        complete=counts[storage.COMPLETE],
        running=counts[storage.RUNNING],
        waiting=counts[storage.WAITING],
        failed=failed,
        seeds_done=seeds_done,
        seeds_total=len(study.cells()) * len(study.seeds),
        wall_time_s=sum(storage.wall_time_s(t) for t in trials),
        time_s={part: sum(storage.time_s(t)[part] for t in complete) for part in ("compile", "train", "eval", "other")},
    )

"""How far a study is: per cell, whether its trial is complete, pruned, running, waiting, interrupted or failed,
and the seeds done; a search study's cells are its budget, of which some are sampled so far."""

from __future__ import annotations

from dataclasses import dataclass

from flowkit.studies.runner import storage
from flowkit.studies.runner.claims import worker_dead
from flowkit.studies.runner.storage import FrozenTrial, StoredStudy
from flowkit.studies.study import Study, cell_key


@dataclass
class StudyProgress:
    cells: int
    complete: int
    running: int
    waiting: int
    interrupted: dict[str, str]
    """Cell key -> why, for cells whose trial was interrupted or whose worker died: the next run resumes them."""
    failed: dict[str, str]
    """Cell key -> failure message, for cells whose latest trial failed otherwise and that have no complete one."""
    seeds_done: int
    seeds_total: int
    wall_time_s: float
    time_s: dict[str, float]
    """Seconds of the complete trials' compile, train, eval and other time, summed."""
    pruned: int = 0
    """Cells the search's pruner stopped early (final, like complete ones)."""
    sampled: int | None = None
    """A search study's cells sampled so far (of `cells`, its budget); None for a grid study."""
    sampler: dict | None = None
    """A search study's stored sampler, sampler seed and pruner."""

    @property
    def finished(self) -> bool:
        """Every cell complete or pruned."""
        return self.complete + self.pruned == self.cells


def progress_of(study: Study, optuna_study: StoredStudy | None) -> StudyProgress:
    trials = storage.trials(optuna_study) if optuna_study else []
    by_cell: dict[str, list[FrozenTrial]] = {}
    for trial in trials:
        by_cell.setdefault(storage.trial_cell(trial), []).append(trial)
    counts = {storage.COMPLETE: 0, storage.PRUNED: 0, storage.RUNNING: 0, storage.WAITING: 0}
    interrupted, failed, seeds_done = {}, {}, 0
    cells = storage.study_cells(study, optuna_study)
    total = len(cells) if study.search is None else study.search.trials
    for cell in cells:
        cell_trials = by_cell.get(cell_key(cell), [])
        states = [_state(t) for t in cell_trials]
        for state in counts:
            if state in states:
                counts[state] += 1
                break
        else:
            if cell_trials:
                failure = _failure(cell_trials[-1])
                resumed = failure["kind"] in ("interrupted", "worker died")
                (interrupted if resumed else failed)[cell_key(cell)] = failure["message"]
        seeds_done += max((len(storage.seed_records(t)) for t in cell_trials), default=0)
    complete = [t for t in trials if storage.state_of(t) == storage.COMPLETE]
    return StudyProgress(
        cells=total,
        complete=counts[storage.COMPLETE],
        running=counts[storage.RUNNING],
        waiting=counts[storage.WAITING],
        interrupted=interrupted,
        failed=failed,
        seeds_done=seeds_done,
        seeds_total=total * len(study.seeds),
        wall_time_s=sum(storage.wall_time_s(t) for t in trials),
        time_s={part: sum(storage.time_s(t)[part] for t in complete) for part in ("compile", "train", "eval", "other")},
        pruned=counts[storage.PRUNED],
        sampled=None if study.search is None else len(cells),
        sampler=storage.sampler_of(optuna_study) if optuna_study else None,
    )


def _state(trial: FrozenTrial) -> str:
    """The trial's state, a running trial whose worker died counted as failed."""
    state = storage.state_of(trial)
    return storage.FAILED if state == storage.RUNNING and worker_dead(trial) else state


def _failure(trial: FrozenTrial) -> dict:
    if storage.state_of(trial) == storage.RUNNING:
        return {"kind": "worker died", "message": "its worker died"}
    return storage.failure_of(trial)

"""What a report reads: per cell of a study, the stored trial's per-seed records, or why there are none.

Scores, evaluation histories, consistency curves, value biases, timings and costs come from the seed records in the
Optuna storage (the runner wrote them from the run folders' results); gradient-norm curves and policy samples come
from the run folders the records name, found under the study folder wherever it is now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flowkit.analysis.statistics import Summary, summarize
from flowkit.settings import ConfigError
from flowkit.studies.runner import storage
from flowkit.studies.runner.records import PrunedRecord, SeedRecord, resolve_run_dir
from flowkit.studies.runner.storage import FrozenTrial, StoredStudy
from flowkit.studies.study import Cell, Study, cell_key


@dataclass
class CellResult:
    cell: Cell
    scores: dict[int, float] = field(default_factory=dict)
    finals: dict[int, Mapping[str, float]] = field(default_factory=dict)
    """Each seed's last evaluation, every metric (the bandits' support beside their score)."""
    curves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    consistency: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    value_bias: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    """Each seed's value bias against returns at the final evaluation (methods with a critic, environment tasks)."""
    finals: dict[int, Mapping[str, float]] = field(default_factory=dict)
    """Each seed's last evaluation metrics (the task's and the probes', e.g. FQL's alpha trade-off)."""
    run_dirs: dict[int, Path] = field(default_factory=dict)
    program_ms_per_update: list[float] = field(default_factory=list)
    """ms per update of each separately timed program: seeds trained as one vmapped program share one figure."""
    timing: dict[str, float] = field(default_factory=dict)
    nfe_per_solve: int | None = None
    parameters: dict[str, int] = field(default_factory=dict)
    """Weights of each network of the cell's method, by model name (the same for every seed)."""
    failure: str | None = None
    pruned: PrunedRecord | None = None
    """Where the search's pruner stopped the cell, if it did (its finished seeds are in the fields above)."""

    @property
    def summary(self) -> Summary | None:
        return summarize(self.score_list) if self.scores else None

    @property
    def score_list(self) -> list[float]:
        return [self.scores[seed] for seed in sorted(self.scores)]


def collect(study: Study, optuna_study: StoredStudy, study_folder: Path) -> dict[str, CellResult]:
    """Per cell (a search study's sampled cells), the complete trial if there is one, else the latest trial with
    any finished seeds; run folders are resolved under `study_folder`, where the study's folder is now."""
    trials: dict[str, list[FrozenTrial]] = {}
    for trial in storage.trials(optuna_study):
        trials.setdefault(storage.trial_cell(trial), []).append(trial)
    results = {}
    for cell in storage.study_cells(study, optuna_study):
        key = cell_key(cell)
        result = CellResult(cell)
        candidates = trials.get(key, [])
        complete = [t for t in candidates if storage.state_of(t) == storage.COMPLETE]
        with_seeds = (t for t in reversed(candidates) if storage.seed_records(t))
        chosen = complete[-1] if complete else next(with_seeds, None)
        if chosen is not None:
            check_scored_by(study, cell, storage.seed_records(chosen))
            read_seeds(result, storage.seed_records(chosen), study_folder)
        if not complete and candidates and storage.state_of(candidates[-1]) == storage.FAILED:
            result.failure = storage.failure_of(candidates[-1])["message"]
        if not complete and candidates and storage.state_of(candidates[-1]) == storage.PRUNED:
            result.pruned = storage.pruned_of(candidates[-1])
        results[key] = result
    return results


def check_scored_by(study: Study, cell: Cell, records: Mapping[int, SeedRecord]) -> None:
    """Refuse stored scores taken from another metric than the study's now (the bandits' default score was
    reward_mean before it became reward_in_support): a run's last evaluation holds both."""
    metric = study.metric_for(cell["task"])
    for seed, record in records.items():
        if metric in record.final and record.eval_history and record.eval_history[-1][1] != record.final[metric]:
            raise ConfigError(
                f"study {study.name!r}: the stored scores of {cell_key(cell)} (seed {seed}) are not `{metric}`, the "
                "study's score now (a bandit study run before reward_in_support became the default); run it again "
                "into a new runs folder, or declare the metric it was run with"
            )


def read_seeds(result: CellResult, records: Mapping[int, SeedRecord], study_folder: Path) -> None:
    """Fill `result` from a trial's per-seed records (score, curve, consistency, timing, cost, run folder)."""
    for seed, record in records.items():
        result.scores[seed] = record.score
        result.finals[seed] = record.final
        result.curves[seed] = list(record.eval_history)
        result.finals[seed] = record.final
        result.run_dirs[seed] = resolve_run_dir(study_folder, record)
        result.nfe_per_solve = record.nfe_per_solve
        result.parameters = dict(record.parameters)
        if record.consistency:
            result.consistency[seed] = record.consistency
        if record.value_bias:
            result.value_bias[seed] = record.value_bias
    timings = [record.timing for record in records.values()]
    costs = [record.cost for record in records.values()]
    result.program_ms_per_update = [t.ms_per_update for t in timings if t.seeds_in_program == 1]
    result.program_ms_per_update += sorted({t.ms_per_update for t in timings if t.seeds_in_program > 1})
    result.timing = {
        "ms_per_update": float(np.median([t.ms_per_update for t in timings])),
        "ms_iqr": float(np.median([t.ms_per_update_iqr for t in timings])),
        "compile_s": float(np.mean([t.compile_s for t in timings])),
        "gflop_per_update": float(np.mean([c.gflop_per_update for c in costs])),
        "peak_memory_mb": float(np.max([c.peak_memory_mb for c in costs])),
    }

"""What a report reads: per cell of a study, the stored trial's per-seed results, or why there are none.

Scores, evaluation histories, consistency curves, timings and costs come from the Optuna storage (the runner
wrote them from the run folders' results); gradient-norm curves and policy samples come from the run folders
the trials name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from flowkit.analysis.statistics import Summary, summarize
from flowkit.studies.storage import failure_of, trial_cell
from flowkit.studies.study import Cell, Study, cell_key
from optuna.trial import TrialState


@dataclass
class CellResult:
    cell: Cell
    scores: dict[int, float] = field(default_factory=dict)
    curves: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    consistency: dict[int, dict[str, Any]] = field(default_factory=dict)
    run_dirs: dict[int, Path] = field(default_factory=dict)
    program_ms_per_update: list[float] = field(default_factory=list)
    """ms per update of each separately timed program: seeds trained as one vmapped program share one figure."""
    timing: dict[str, float] = field(default_factory=dict)
    nfe_per_solve: int | None = None
    failure: str | None = None

    @property
    def summary(self) -> Summary | None:
        return summarize(self.score_list) if self.scores else None

    @property
    def score_list(self) -> list[float]:
        return [self.scores[seed] for seed in sorted(self.scores)]


def collect(study: Study, optuna_study: optuna.Study) -> dict[str, CellResult]:
    """Per cell, the complete trial if there is one, else the latest trial with any finished seeds."""
    trials: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in optuna_study.get_trials(deepcopy=False):
        trials.setdefault(trial_cell(trial), []).append(trial)
    results = {}
    for cell in study.cells():
        key = cell_key(cell)
        result = CellResult(cell)
        candidates = trials.get(key, [])
        complete = [t for t in candidates if t.state == TrialState.COMPLETE]
        chosen = (
            complete[-1] if complete else next((t for t in reversed(candidates) if t.user_attrs.get("seeds")), None)
        )
        if chosen is not None:
            read_seeds(result, chosen.user_attrs["seeds"])
        if not complete and candidates and candidates[-1].state == TrialState.FAIL:
            result.failure = failure_of(candidates[-1])["message"]
        results[key] = result
    return results


def read_seeds(result: CellResult, seeds: dict[str, Any]) -> None:
    """Fill `result` from a trial's per-seed record (its `seeds` attribute: score, curve, timing, cost)."""
    for seed_text, entry in seeds.items():
        seed = int(seed_text)
        result.scores[seed] = entry["score"]
        result.curves[seed] = [tuple(point) for point in entry["eval_history"]]
        result.run_dirs[seed] = Path(entry["run_dir"])
        result.nfe_per_solve = entry["nfe_per_solve"]
        if entry.get("consistency"):
            result.consistency[seed] = entry["consistency"]
    entries = list(seeds.values())
    timings = [entry["timing"] for entry in entries]
    result.program_ms_per_update = [t["ms_per_update"] for t in timings if t.get("seeds_in_program", 1) == 1]
    result.program_ms_per_update += sorted({t["ms_per_update"] for t in timings if t.get("seeds_in_program", 1) > 1})
    result.timing = {
        "ms_per_update": float(np.median([e["timing"]["ms_per_update"] for e in entries])),
        "ms_iqr": float(np.median([e["timing"].get("ms_per_update_iqr", 0.0) for e in entries])),
        "compile_s": float(np.mean([e["timing"]["compile_s"] for e in entries])),
        "gflop_per_update": float(np.mean([e["cost"]["gflop_per_update"] for e in entries])),
        "peak_memory_mb": float(np.max([e["cost"]["peak_memory_mb"] for e in entries])),
    }

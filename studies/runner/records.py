"""A trial's per-seed record: what the runner keeps of one seed's run, written to and read from the storage here only.

A record carries its schema version, so a flowkit reading a layout it does not know refuses it by name instead of
misreading it. Its run folder is kept relative to the study folder and found again through `resolve_run_dir`, so a
report finds every run from any working directory, and from a copy of the runs folder moved elsewhere.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from flowkit import runs
from flowkit.settings import ConfigError

SCHEMA_VERSION = 2
"""Schema 1 was the untyped per-seed dict of flowkit before records (it had no version field); 2 is SeedRecord."""


class RecordError(ConfigError):
    """A stored record of a schema this flowkit does not read, or one that is malformed."""


@dataclass(frozen=True)
class Timing:
    """Where a run's seconds went; seeds trained as one vmapped program share its figures."""

    compile_s: float
    train_s: float
    eval_s: float
    other_s: float
    wall_s: float
    ms_per_update: float
    ms_per_update_iqr: float
    seeds_in_program: int

    @classmethod
    def of_result(cls, timing: Mapping[str, float]) -> Timing:
        """From a run result's timing; results of earlier runs lack the IQR, the program's seed count and other_s."""
        accounted = timing["compile_s"] + timing["train_s"] + timing["eval_s"]
        return cls(
            compile_s=timing["compile_s"],
            train_s=timing["train_s"],
            eval_s=timing["eval_s"],
            other_s=timing.get("other_s", timing["wall_s"] - accounted),
            wall_s=timing["wall_s"],
            ms_per_update=timing["ms_per_update"],
            ms_per_update_iqr=timing.get("ms_per_update_iqr", 0.0),
            seeds_in_program=timing.get("seeds_in_program", 1),
        )


@dataclass(frozen=True)
class Cost:
    """Arithmetic and memory of one update, from the compiled program."""

    gflop_per_update: float
    peak_memory_mb: float


@dataclass(frozen=True)
class SeedRecord:
    """One finished seed of a trial's cell."""

    seed: int
    score: float
    """The mean of the study's metric over the run's last evaluations."""
    final: Mapping[str, float]
    """The last evaluation's metrics (its consistency probe is `consistency`, its value bias `value_bias`)."""
    eval_history: tuple[tuple[int, float], ...]
    """(step, metric) of every evaluation."""
    consistency: Mapping[str, Any] | None
    cost: Cost
    timing: Timing
    nfe_per_solve: int
    run_dir: str
    """The run folder, relative to the study folder (POSIX separators); see `resolve_run_dir`."""
    parameters: Mapping[str, int] = field(default_factory=dict)
    """Weights of each network by model name; empty in records of runs from before flowkit recorded them."""
    value_bias: Mapping[str, Any] | None = None
    """The final evaluation's value bias without its per-episode lists (those stay in the run's result.json); None
    where the method has no critic, the task keeps no episodes, or the run predates the probe."""


@dataclass(frozen=True)
class PrunedRecord:
    """Where the study's pruner stopped a cell: its seeds before `seed` have their SeedRecords; `seed`'s run keeps
    its checkpoint at `step` (or, stopped at its last evaluation, completed), and the seeds after it never ran."""

    seed: int
    step: int
    """The update of `seed`'s run at which the cell stopped."""
    value: float
    """The cell's score so far over its seeds, the intermediate value the pruner judged."""
    trained_steps: int
    """Updates the cell trained over all its seeds, the step the value was reported at."""


def pruned_to_json(record: PrunedRecord) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, **asdict(record)}


def pruned_from_json(data: Mapping[str, Any]) -> PrunedRecord:
    """The pruned record stored as `data`; RecordError names the schema of one written by another flowkit."""
    check_schema(data.get("schema"), "a pruned record")
    try:
        return PrunedRecord(**{name: value for name, value in data.items() if name != "schema"})
    except TypeError as error:
        raise RecordError(f"a pruned record of schema {SCHEMA_VERSION} is malformed ({error!r})") from None


def run_score(result: Mapping[str, Any], metric: str, last_evals: int) -> float:
    """A run's score: the mean of `metric` over its last `last_evals` evaluations."""
    return statistics.fmean(record[metric] for record in result["eval_history"][-last_evals:])


def seed_record(
    seed: int, result: Mapping[str, Any], metric: str, last_evals: int, run_dir: Path, study_folder: Path
) -> SeedRecord:
    """The record of a run's result (as `train` returns it) whose folder lies under the study folder."""
    final = {name: value for name, value in result["final"].items() if name not in ("consistency", "value_bias")}
    value_bias = result["final"].get("value_bias")
    return SeedRecord(
        seed=seed,
        score=run_score(result, metric, last_evals),
        final=final,
        eval_history=tuple((r["step"], r[metric]) for r in result["eval_history"]),
        consistency=result["final"].get("consistency"),
        cost=Cost(result["cost"]["gflop_per_update"], result["cost"]["peak_memory_mb"]),
        timing=Timing.of_result(result["timing"]),
        nfe_per_solve=result["nfe_per_solve"],
        run_dir=run_dir.relative_to(study_folder).as_posix(),
        parameters=dict(result.get("parameters", {})),
        value_bias={k: v for k, v in value_bias.items() if k != "episodes"} if value_bias else None,
    )


def resolve_run_dir(study_folder: Path, record: SeedRecord) -> Path:
    """Where the record's run folder is for a study folder found at `study_folder` now (refused if a damaged
    record would lead outside it)."""
    return runs.inside(study_folder, record.run_dir)


def to_json(record: SeedRecord) -> dict[str, Any]:
    return {"schema": SCHEMA_VERSION, **asdict(record)}


def from_json(data: Mapping[str, Any]) -> SeedRecord:
    """The record stored as `data`; RecordError names the schema of one written by another flowkit."""
    check_schema(data.get("schema"), "a seed record")
    try:
        fields = {name: value for name, value in data.items() if name != "schema"}
        return SeedRecord(
            **{
                **fields,
                "eval_history": tuple((step, value) for step, value in fields["eval_history"]),
                "cost": Cost(**fields["cost"]),
                "timing": Timing(**fields["timing"]),
            }
        )
    except (KeyError, TypeError, ValueError) as error:
        raise RecordError(f"a seed record of schema {SCHEMA_VERSION} is malformed ({error!r})") from None


def check_schema(version: Any, what: str) -> None:
    """Refuse, naming both versions, what was written under a schema other than this flowkit's."""
    if version == SCHEMA_VERSION:
        return
    if version is None:
        written = "schema 1 (written before flowkit's records carried a version)"
        advice = "run the study again under a new name, or delete its stored study to start over"
    elif isinstance(version, int) and version > SCHEMA_VERSION:
        written, advice = f"schema {version}, newer than this flowkit's", "update flowkit to read it"
    else:
        written = f"schema {version!r}"
        advice = "run the study again under a new name, or delete its stored study to start over"
    raise RecordError(f"{what} of {written}: this flowkit reads schema {SCHEMA_VERSION}; {advice}")

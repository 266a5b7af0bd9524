"""Running one trial: train (or find finished) every seed of its cell, record each seed as it finishes, and tell
the storage the cell's score, or why it failed. Seeds whose run folder holds a result with the same settings
are not trained again; interrupted runs resume from their checkpoints. A search study's trial also reports its
score so far after each evaluation, and stops, pruned, when its pruner says so."""

from __future__ import annotations

import shutil
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from flowkit import runs
from flowkit.progress_bars import ProgressBar
from flowkit.run_config import RunConfig
from flowkit.settings import ConfigError
from flowkit.studies.runner import backends, storage
from flowkit.studies.runner.claims import still_claimed
from flowkit.studies.runner.records import PrunedRecord, SeedRecord, Timing, run_score, seed_record
from flowkit.studies.runner.storage import Trial, study_dir
from flowkit.studies.study import Cell, Study, cell_slug
from flowkit.training import DivergedError, RunStoppedError, RunTakenOverError, train, train_seeds
from flowkit.training.trackers import Tracking

T = TypeVar("T")


def reusable_result(config: RunConfig, run_dir: Path) -> dict[str, Any] | None:
    """The run's stored result if its folder completed with the same settings; otherwise None, with a folder
    that holds neither that nor a checkpoint of these settings cleared for a fresh run."""
    result = runs.load_result(run_dir)
    if result is not None:
        if not config.matches(result["config"]):
            raise ConfigError(f"run folder {run_dir} holds a result with other settings; move it away to rerun")
        return result
    checkpoint = runs.load_checkpoint(run_dir)
    if run_dir.exists() and (checkpoint is None or not config.matches(checkpoint[1]["config"])):
        shutil.rmtree(run_dir)
    return None


def train_vectorized(
    runs_to_train: list[tuple[RunConfig, Path]], *, progress: bool, label: str, **hooks: Any
) -> dict[int, dict[str, Any]]:
    """Train runs that differ only in seed as one vmapped program per step their checkpoints resume from;
    `hooks` (still_ours, on_evaluation, tracking) are as for `train`."""
    by_step: dict[int, list[tuple[RunConfig, Path]]] = {}
    for config, run_dir in runs_to_train:
        checkpoint = runs.load_checkpoint(run_dir)
        by_step.setdefault(checkpoint[1]["step"] if checkpoint else 0, []).append((config, run_dir))
    results = {}
    for group in by_step.values():
        configs, run_dirs = [config for config, _ in group], [run_dir for _, run_dir in group]
        trained = train_seeds(configs, run_dirs, progress=progress, label=label, **hooks)
        results.update({config.seed: result for config, result in zip(configs, trained, strict=True)})
    return results


@dataclass
class CellRuns:
    """The runs of one cell's seeds, taken one after another; `seed` is the one under way (None before)."""

    study: Study
    cell: Cell
    study_folder: Path
    still_ours: Callable[[], bool]
    """Whether the trial is still this worker's; asked before each seed's run and by its training loop."""
    report: Callable[[float, int], bool] | None = None
    """Told the cell's score so far and the updates it trained after each evaluation; answers whether to go on
    (a search study's pruner). None: nothing is reported."""
    records: dict[int, SeedRecord] = field(default_factory=dict)
    seed: int | None = None
    runs_wall_s: float = 0.0
    """Seconds spent in this process's train calls."""
    reported: tuple[float, int] | None = None
    """The last score so far reported, and the updates trained then."""
    stopped_at: int | None = None
    """The step of the run whose last evaluation the pruner judged behind: the cell stops before its next seed."""
    tracking: Tracking | None = None
    """The experiment tracker each seed's run also logs to (a W&B project per study, a group per cell)."""

    def run(self, *, progress: bool, vectorize_seeds: bool) -> Iterator[SeedRecord]:
        """Train or find each seed's run, yielding its record; vectorized, the seeds without a result train
        first, as one vmapped program."""
        metric, slug = self.study.metric_for(self.cell["task"]), cell_slug(self.cell)
        planned = {seed: self._planned(seed) for seed in self.study.seeds}
        stored = {seed: reusable_result(*planned[seed]) for seed in self.study.seeds}
        hooks = {
            "still_ours": self.still_ours,
            "on_evaluation": self._on_evaluation if self.report else None,
            "tracking": self.tracking,
        }
        trained = {}
        if vectorize_seeds:
            waiting = [planned[seed] for seed in self.study.seeds if stored[seed] is None]
            trained = self._timed(train_vectorized, waiting, progress=progress, label=f"{slug} seeds", **hooks)
        for seed in self.study.seeds:
            if self.stopped_at is not None:
                raise RunStoppedError(self.stopped_at)
            self.seed = seed
            config, run_dir = planned[seed]
            result = stored[seed] or trained.get(seed)
            if result is None:
                label = f"{slug} seed {seed}"
                result = self._timed(train, config, run_dir, progress=progress, label=label, **hooks)
            record = seed_record(seed, result, metric, self.study.last_evals, run_dir, self.study_folder)
            self.records[seed] = record
            yield record

    def _on_evaluation(self, step: int, histories: dict[int, list[dict[str, Any]]]) -> bool:
        """Report the cell's score so far (its finished seeds' scores and its running seeds' scores at `step`,
        averaged) at the updates it trained over its seeds; return whether to go on."""
        metric, steps = self.study.metric_for(self.cell["task"]), self.study.run_config(self.cell, 0).train.steps
        scores = {seed: record.score for seed, record in self.records.items()}
        scores |= {seed: run_score({"eval_history": h}, metric, self.study.last_evals) for seed, h in histories.items()}
        trained = steps * len(self.records) + step * len(histories)
        self.reported = (statistics.fmean(scores.values()), trained)
        go_on = self.report(*self.reported)
        if not go_on and step == steps:
            self.stopped_at = step
        return go_on

    def pruned_record(self, step: int) -> PrunedRecord:
        """Where the cell stopped (seeds trained as one program stopped together: the first names them)."""
        value, trained = self.reported
        seed = self.study.seeds[0] if self.seed is None else self.seed
        return PrunedRecord(seed=seed, step=step, value=value, trained_steps=trained)

    def _planned(self, seed: int) -> tuple[RunConfig, Path]:
        run_dir = runs.inside(self.study_folder, "runs", cell_slug(self.cell), f"seed{seed}")
        return self.study.run_config(self.cell, seed), run_dir

    def _timed(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            self.runs_wall_s += time.perf_counter() - started


@dataclass(frozen=True)
class TrialClaim:
    """This worker's claim on a trial: asked before every write, so a worker whose trial was taken over (it looked
    dead) writes nothing more to it."""

    trial: Trial

    def still_ours(self) -> bool:
        return still_claimed(self.trial.study, self.trial)

    def fence(self) -> None:
        if not self.still_ours():
            raise RunTakenOverError(f"trial {self.trial.number}: taken over by another worker")

    def tell_failed(self, failure: dict[str, Any]) -> None:
        if self.still_ours():
            storage.tell_failed(self.trial, failure)

    def report(self, value: float, step: int) -> bool:
        self.fence()
        return storage.report_score(self.trial, value, step)

    def tell_pruned(self, record: PrunedRecord) -> None:
        if self.still_ours():
            storage.tell_pruned(self.trial, record)


def run_trial(
    study: Study,
    trial: Trial,
    cell: Cell,
    runs_dir: Path,
    *,
    progress: bool,
    bar: ProgressBar | None = None,
    vectorize_seeds: bool = False,
    track: str | None = None,
) -> None:
    """Train every seed of the trial's cell and tell the storage the cell's score (mean over seeds); a failure is
    recorded on the trial (a divergence for good, an error or an interruption to be retried).

    With `vectorize_seeds` the seeds without a stored result train as one vmapped program; `track` names an
    experiment tracker the runs also log to.
    """
    claim = TrialClaim(trial)
    report = None if study.search is None else claim.report
    tracking = None if track is None else Tracking(track, project=study.name, group=cell_slug(cell))
    cell_runs = CellRuns(study, cell, study_dir(runs_dir, study.name), claim.still_ours, report, tracking=tracking)
    try:
        _train_and_tell(study, trial, cell, cell_runs, claim, progress, bar, vectorize_seeds)
    except RunStoppedError as stop:
        claim.tell_pruned(cell_runs.pruned_record(stop.step))
    except RunTakenOverError:
        print(f"flowkit: trial {trial.number} ({cell_slug(cell)}) was taken over by another worker "
              "(this one looked dead); this worker stopped writing to it", file=sys.stderr)  # fmt: skip
    except DivergedError as error:
        seed = error.seed if error.seed is not None else cell_runs.seed
        failure = {"kind": "diverged", "seed": seed, "step": error.step, "metrics": error.metrics}
        claim.tell_failed({**failure, "message": str(error)})
    except KeyboardInterrupt:
        claim.tell_failed({"kind": "interrupted", "seed": cell_runs.seed, "message": "interrupted by the user"})
        raise
    except Exception as error:
        message = backends.hide_password(f"{type(error).__name__}: {error}")
        claim.tell_failed({"kind": "error", "seed": cell_runs.seed, "message": message})
        if isinstance(error, ConfigError):
            raise
        raise CellFailedError(cell_slug(cell), message, log_traceback(cell_runs, error)) from error


class CellFailedError(RuntimeError):
    """A cell's run raised an unexpected error: the message is one line, the traceback is in the log it names."""

    def __init__(self, cell: str, error: str, log: Path):
        super().__init__(f"cell {cell} failed: {error} (the traceback is in {log})")
        self.error, self.log = error, log


def log_traceback(cell_runs: CellRuns, error: Exception) -> Path:
    """Append the error's traceback to the failed seed's run folder's error.log (the cell's folder before any
    seed started), so that the console shows one line and nothing is lost."""
    folder = cell_runs.study_folder / "runs" / cell_slug(cell_runs.cell)
    log = (folder if cell_runs.seed is None else folder / f"seed{cell_runs.seed}") / "error.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as stream:
        stream.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        stream.write(backends.hide_password("".join(traceback.format_exception(error))))
    return log


def _train_and_tell(
    study: Study,
    trial: Trial,
    cell: Cell,
    cell_runs: CellRuns,
    claim: TrialClaim,
    progress: bool,
    bar: ProgressBar | None,
    vectorize_seeds: bool,
) -> None:
    """Train the cell's seeds, storing each seed's record as it completes, then the trial's summary and score."""
    started = time.perf_counter()
    if study.search is None:
        storage.suggest_cell(trial, cell, study.search_space())
    else:
        storage.suggest_params(trial, cell, study.parameters())
    for _ in cell_runs.run(progress=progress, vectorize_seeds=vectorize_seeds):
        claim.fence()
        storage.write_seed_records(trial, cell_runs.records)
        if bar is not None:
            bar.update(1)
    outside_runs_s = time.perf_counter() - started - cell_runs.runs_wall_s
    records = list(cell_runs.records.values())
    claim.fence()
    storage.write_summary(trial, trial_summary(study.metric_for(cell["task"]), records, outside_runs_s))
    storage.tell_score(trial, statistics.fmean(record.score for record in records))


def trial_summary(metric: str, records: list[SeedRecord], outside_runs_s: float) -> dict[str, Any]:
    """The trial's metric and its times over its seeds' runs."""
    timings = [record.timing for record in records]
    return {
        "metric": metric,
        "wall_time_s": sum(t.wall_s for t in timings),
        "compile_time_s": statistics.fmean(t.compile_s for t in timings),
        "ms_per_update": statistics.median(t.ms_per_update for t in timings),
        "time_s": time_breakdown(timings, outside_runs_s),
    }


def time_breakdown(timings: list[Timing], outside_runs_s: float) -> dict[str, float]:
    """Where a trial's time went: its runs' compile, train and eval seconds, and everything else (run set-up,
    dataset loading, checkpoints, saving, and the trial's own time outside its runs)."""
    parts = {part: sum(getattr(t, f"{part}_s") for t in timings) for part in ("compile", "train", "eval")}
    inside = sum(t.other_s for t in timings)
    return {**parts, "other": max(0.0, inside) + max(0.0, outside_runs_s)}

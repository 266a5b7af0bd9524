"""The training loop: prepare the program, then for each chunk of updates train, log, evaluate and checkpoint,
then save the models and results.

Runs that differ only in seed train as one program (Seeds: vmapped over their states and keys, the dataset
shared), each into its own folder exactly as it would alone; one run is the program of one seed.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from flowkit.agents import TrainState
from flowkit.progress_bars import progress_bar
from flowkit.run_config import RunConfig
from flowkit.tasks import Task
from flowkit.training.chunk import Chunk, compiled_cost
from flowkit.training.compiled_run import CompiledRun
from flowkit.training.online import BUFFER, OnlinePhase
from flowkit.training.run_progress import ProgramClock
from flowkit.training.seed_run import EvaluationHook, Fence, RunStoppedError, SeedRun, stored_checkpoint
from flowkit.training.seeds import Seeds
from flowkit.training.trackers import Tracking


def train(
    config: RunConfig,
    run_dir: Path,
    *,
    progress: bool = True,
    task: Task | None = None,
    label: str = "",
    still_ours: Callable[[], bool] | None = None,
    on_evaluation: EvaluationHook | None = None,
    tracking: Tracking | None = None,
) -> dict[str, Any]:
    """Train one run into `run_dir` and return its result (also written to run_dir/result.json).

    A run folder holding a checkpoint (of a run with these settings, killed or interrupted) is resumed from
    it; the result equals that of an uninterrupted run with the same seed. `still_ours`, if given, is asked
    before the folder is first written, after every chunk and before the models and result are saved; once it
    answers False, RunTakenOverError is raised and nothing more is written. `on_evaluation`, if given, is told
    each evaluation; once it answers False before the last step, the run is checkpointed there and
    RunStoppedError is raised (at the last step the run completes). `tracking`, if given, also sends the metrics
    to an experiment tracker (trackers.py).
    """
    return train_seeds(
        [config], [run_dir], progress=progress, task=task, label=label, still_ours=still_ours,
        on_evaluation=on_evaluation, tracking=tracking,
    )[0]  # fmt: skip


def train_seeds(
    configs: list[RunConfig],
    run_dirs: list[Path],
    *,
    progress: bool = True,
    task: Task | None = None,
    label: str = "",
    still_ours: Callable[[], bool] | None = None,
    on_evaluation: EvaluationHook | None = None,
    tracking: Tracking | None = None,
) -> list[dict[str, Any]]:
    """Train runs that differ only in their seed as one program, each into its own folder exactly as `train`
    would. Results equal separate runs' up to float rounding; the program's time is shared among the seeds
    (progress.py). All runs must resume from the same step. `still_ours`, `on_evaluation` and `tracking` are as for
    `train`.
    """
    if configs[0].train.online_steps and len(configs) > 1:  # each seed steps its own environment
        options = dict(progress=progress, task=task, label=label, still_ours=still_ours, on_evaluation=on_evaluation)
        return [train_seeds([c], [d], **options, tracking=tracking)[0] for c, d in zip(configs, run_dirs, strict=True)]
    program = SeedProgram.prepare(configs, run_dirs, task, Fence(still_ours, run_dirs), tracking)
    schedule = configs[0].train
    total = schedule.total_steps
    bar = progress_bar(
        total=total, initial=program.resumed_from, desc=label or configs[0].agent, unit="update",
        disable=not progress, leave=False,
    )  # fmt: skip
    with program, bar:
        for start in range(program.resumed_from, total, schedule.log_every):
            step = program.train_chunk(start)
            bar.update(schedule.log_every)
            stop = False
            if schedule.evaluates_at(step):
                bar.set_postfix_str(program.evaluate())
                go_on = on_evaluation is None or on_evaluation(step, program.histories())
                stop = not go_on and step < total
            if (step % schedule.checkpoint_every == 0 or stop) and step < total:
                program.checkpoint()
            if stop:
                raise RunStoppedError(step)
    return program.finish()


@dataclass
class SeedProgram:
    """Runs that differ only in seed as one compiled program: the run's compiled pieces, each seed's run, the seeds'
    training state and data key as the program holds them (Seeds), the compiled chunk and the program's clock."""

    compiled: CompiledRun
    runs: list[SeedRun]
    seeds: Seeds
    state: TrainState
    data_key: jax.Array
    chunk: Chunk
    clock: ProgramClock
    resumed_from: int
    fence: Fence
    online: OnlinePhase | None = None

    @classmethod
    def prepare(
        cls, configs: list[RunConfig], run_dirs: list[Path], task: Task | None, fence: Fence, tracking: Tracking | None
    ) -> SeedProgram:
        """Check the runs, start (or resume) each seed's, compile the chunk and open the metrics streams."""
        clock = ProgramClock(len(configs))
        _check_only_seeds_differ(configs)
        checkpoints = [stored_checkpoint(*folder) for folder in zip(configs, run_dirs, strict=True)]
        fence.check()
        compiled = CompiledRun.create(configs[0], task)
        compiled.check_fits()
        started = [SeedRun.start(compiled.agent, *run) for run in zip(configs, run_dirs, checkpoints, strict=True)]
        seed_runs = [run for run, _ in started]
        resumed_from = _common_step(seed_runs)
        seeds = Seeds(len(configs))
        state, data_key = seeds.stack([carry for _, carry in started])
        compile_started = time.perf_counter()
        chunk = compiled.compiled_chunk(state, data_key, vectorized=seeds.vectorized)
        compile_s = time.perf_counter() - compile_started
        for run in seed_runs:
            run.progress.compile_s += compile_s / seeds.count
            run.open_metrics(tracking)
        return cls(compiled, seed_runs, seeds, state, data_key, chunk, clock, resumed_from, fence)

    def __enter__(self) -> SeedProgram:
        return self

    def __exit__(self, *exception: object) -> None:
        for run in self.runs:
            run.close_metrics()

    def train_chunk(self, start: int) -> int:
        """Run the chunk of updates after `start` and log each seed's summary; return the step reached."""
        length = self.compiled.config.train.log_every
        started = time.perf_counter()
        if start < self.compiled.config.train.steps:
            outputs = self.chunk(self.state, self.compiled.task.dataset, self.data_key)
        else:
            self.online = self.online or OnlinePhase(self.compiled, self.runs[0])
            outputs = self.online.train_chunk(self.state, self.data_key, start, length)
        self.state, self.data_key, summary, first_bad = outputs
        outcomes = self.seeds.split(jax.device_get((summary, first_bad)))
        self.fence.check()
        seconds = (time.perf_counter() - started) / self.seeds.count
        for run, (seed_summary, seed_first_bad) in zip(self.runs, outcomes, strict=True):
            run.log_chunk(start, length, seed_summary, int(seed_first_bad), seconds)
        return start + length

    def evaluate(self) -> str:
        """Evaluate each seed's policy; the last seed's score, for the progress bar."""
        self.fence.check()
        for run, state in zip(self.runs, self.seeds.split(self.state), strict=True):
            metrics = run.evaluate(self.compiled, state.params)
        score = self.compiled.task.score_metric
        return f"{score}={metrics[score]:.3f}"

    def histories(self) -> dict[int, list[dict[str, Any]]]:
        """Each seed's evaluations so far, by seed."""
        return {run.config.seed: run.progress.eval_history for run in self.runs}

    def checkpoint(self) -> None:
        """Store each seed's state, data key and progress, with the wall time to now."""
        self.fence.check()
        wall_share = self.clock.lap_share()
        if self.online is not None:
            self.online.save()
        for run, carry in zip(self.runs, self.seeds.split((self.state, self.data_key)), strict=True):
            run.checkpoint(carry, wall_share)

    def finish(self) -> list[dict[str, Any]]:
        """Save each seed's models, then write its result (with the program's cost per seed), which completes it."""
        self.fence.check()
        for run, state in zip(self.runs, self.seeds.split(self.state), strict=True):
            run.save(self.compiled, state)
        cost = compiled_cost(self.chunk.compiled)
        cost["gflop_per_update"] /= self.seeds.count
        wall_share = self.clock.lap_share()
        results = []
        for run in self.runs:
            self.fence.check()
            results.append(run.finish(self.compiled, cost, wall_share, self.resumed_from, self.seeds.count))
            (run.run_dir / BUFFER).unlink(missing_ok=True)
        return results


def _check_only_seeds_differ(configs: list[RunConfig]) -> None:
    if any(dataclasses.replace(other, seed=configs[0].seed) != configs[0] for other in configs):
        raise ValueError("runs trained as one program must differ only in their seed")


def _common_step(seed_runs: list[SeedRun]) -> int:
    """The step every run resumes from (0 for new runs)."""
    steps = {run.progress.step for run in seed_runs}
    if len(steps) > 1:
        raise ValueError("runs trained as one program must resume from the same step; train them one by one")
    return steps.pop()

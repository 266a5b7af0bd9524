"""One seed's run inside a training program: its folder, metrics stream, progress, checkpoints and result."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from flowkit import runs, solvers
from flowkit.agents import Agent, FlowConfig, TrainState
from flowkit.agents.base import Params
from flowkit.networks import parameter_counts
from flowkit.run_config import RunConfig
from flowkit.settings import ConfigError
from flowkit.training.compiled_run import CompiledRun
from flowkit.training.run_progress import RunProgress
from flowkit.training.trackers import Tracker, Tracking, open_tracker

DATA_STREAM, EVAL_STREAM = 1, 2
"""fold_in tags that give minibatch sampling and evaluation their own random streams per seed."""

Carry = tuple[TrainState, jax.Array]
"""What a chunk advances: the training state and the minibatch sampling key."""


class DivergedError(RuntimeError):
    """A loss or metric became NaN or inf; training stopped at that update."""

    def __init__(self, step: int, metrics: list[str], seed: int | None = None):
        super().__init__(f"diverged at update {step}: {', '.join(metrics)} became non-finite")
        self.step, self.metrics, self.seed = step, metrics, seed


class RunTakenOverError(RuntimeError):
    """Another process took the run over (a study worker whose trial was given to another worker): this one
    stops before writing anything more into its folders."""


class RunStoppedError(RuntimeError):
    """The caller's evaluation hook asked the runs to stop early (a study's pruner): each was checkpointed at
    `step`, so it can still be resumed, and has no result."""

    def __init__(self, step: int):
        super().__init__(f"stopped early at update {step}")
        self.step = step


EvaluationHook = Callable[[int, dict[int, list[dict[str, Any]]]], bool]
"""Told the step and each seed's evaluation history after every evaluation; answers whether to go on."""


@dataclass(frozen=True)
class Fence:
    """Asked before every write into the runs' folders: once `still_ours` answers False, nothing more is written."""

    still_ours: Callable[[], bool] | None
    run_dirs: list[Path]

    def check(self) -> None:
        if self.still_ours is not None and not self.still_ours():
            raise RunTakenOverError(f"{', '.join(map(str, self.run_dirs))}: taken over by another process; stopped")


def _check_layout(carry: Carry, leaves: list[np.ndarray], run_dir: Path) -> None:
    """Refuse a checkpoint whose training state is laid out otherwise than this kit's (an older optimiser state)."""
    expected = [np.shape(leaf) for leaf in jax.tree.leaves(carry)]
    if [np.shape(leaf) for leaf in leaves] != expected:
        raise ConfigError(
            f"run folder {run_dir} holds a checkpoint from an older flowkit (its training state is laid out "
            "otherwise); move it away to rerun"
        )


def stored_checkpoint(config: RunConfig, run_dir: Path) -> tuple[list[np.ndarray], RunProgress] | None:
    """The checkpoint the run resumes from, if its folder holds one of these settings. A folder holding a
    completed run, a checkpoint of other settings or of an older flowkit is refused before anything is written."""
    if (run_dir / runs.RESULT).exists():
        raise ConfigError(f"run folder {run_dir} holds a completed run ({runs.RESULT}); move it away to rerun")
    checkpoint = runs.load_checkpoint(run_dir)
    if checkpoint is None:
        return None
    progress = RunProgress.from_dict(checkpoint.progress, run_dir / runs.CHECKPOINT)
    if not config.matches(progress.config):
        raise ConfigError(f"run folder {run_dir} holds a checkpoint of other settings; move it away to rerun")
    return checkpoint.leaves, progress


@dataclass
class SeedRun:
    """One seed's part of a training program: its settings, folder, metrics stream and progress."""

    config: RunConfig
    run_dir: Path
    progress: RunProgress
    resumed: bool
    writer: runs.MetricsWriter | None = None
    tracker: Tracker | None = None

    @classmethod
    def start(
        cls, agent: Agent, config: RunConfig, run_dir: Path, checkpoint: tuple[list[np.ndarray], RunProgress] | None
    ) -> tuple[SeedRun, Carry]:
        """The run and its initial state and data key, or those of its checkpoint; writes its config.json."""
        carry = (agent.init(config.seed), jax.random.fold_in(jax.random.PRNGKey(config.seed), DATA_STREAM))
        if checkpoint is not None:
            _check_layout(carry, checkpoint[0], run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        runs.write_json_atomic(run_dir / runs.CONFIG, config.record())
        if checkpoint is None:
            return cls(config, run_dir, RunProgress(config.to_dict()), resumed=False), carry
        leaves, progress = checkpoint
        return cls(config, run_dir, progress, resumed=True), jax.tree.unflatten(jax.tree.structure(carry), leaves)

    @property
    def seed_key(self) -> jax.Array:
        return jax.random.PRNGKey(self.config.seed)

    def open_metrics(self, tracking: Tracking | None) -> None:
        """Open metrics.jsonl (afresh, or for a resumed run, kept up to its checkpoint's step) and the tracker."""
        resume_step = self.progress.step if self.resumed else None
        self.writer = runs.MetricsWriter(self.run_dir, resume_step=resume_step)
        if tracking is not None:
            name = f"{tracking.group}/seed{self.config.seed}" if tracking.group else self.run_dir.name
            self.tracker = open_tracker(tracking, self.run_dir, name, self.config.record(), resume_step)

    def close_metrics(self) -> None:
        self.writer.close()
        if self.tracker is not None:
            self.tracker.close()

    def _record(self, record: dict[str, Any]) -> None:
        """One record of the metrics stream, to metrics.jsonl and the tracker."""
        self.writer.write(record)
        if self.tracker is not None:
            self.tracker.log(record)

    def log_chunk(self, start: int, length: int, summary: dict[str, float], first_bad: int, seconds: float) -> None:
        """Record a chunk's summary and time (this seed's share); raise at the update where it diverged."""
        summary, step = shared_term_norms(summary), start + length
        self.progress.step = step
        self.progress.chunk_seconds.append(seconds)
        self._record({"phase": "train", "step": step, **summary, "time/ms_per_update": 1e3 * seconds / length})
        if first_bad >= 0:
            bad = sorted(name for name, value in summary.items() if not np.isfinite(value))
            raise DivergedError(start + first_bad + 1, bad, self.config.seed)

    def evaluate(self, compiled: CompiledRun, params: Params) -> dict[str, Any]:
        """Evaluate the policy at the current step, on this seed's evaluation stream for that step (the last
        evaluation with the value-bias probe)."""
        started, step = time.perf_counter(), self.progress.step
        key = jax.random.fold_in(jax.random.fold_in(self.seed_key, EVAL_STREAM), step)
        metrics = compiled.evaluate(params, key, final=step == self.config.train.total_steps)
        self.progress.eval_s += time.perf_counter() - started
        self.progress.eval_history.append({"step": step, **metrics})
        self._record({"phase": "eval", "step": step, **metrics})
        return metrics

    def checkpoint(self, carry: Carry, wall_share: float) -> None:
        """Store the state, data key and progress, the wall time counted to now (`wall_share` since the last)."""
        started = time.perf_counter()
        self.progress.wall_s += wall_share
        runs.save_checkpoint(self.run_dir, jax.tree.leaves(jax.device_get(carry)), self.progress.to_dict())
        self.progress.checkpoint_s += time.perf_counter() - started

    def save(self, compiled: CompiledRun, state: TrainState) -> None:
        """Save the trained models and the task's record of the trained policy (its plots, rollouts)."""
        compiled.agent.save(state, self.run_dir / runs.MODELS)
        compiled.task.record(
            compiled.policy(state.params), jax.random.fold_in(self.seed_key, EVAL_STREAM), self.run_dir
        )

    def finish(
        self, compiled: CompiledRun, cost: dict[str, float], wall_share: float, resumed_from: int, seeds: int
    ) -> dict[str, Any]:
        """Write result.json, which completes the run, and drop the checkpoint; it names the policy's network, so
        a report finds its gradient norms without loading the method."""
        self.progress.wall_s += wall_share
        result = {
            "config": self.config.to_dict(),
            "final": self.progress.eval_history[-1],
            "eval_history": self.progress.eval_history,
            "nfe_per_solve": nfe_per_solve(self.config),
            "timing": self.progress.timing(self.config.train.log_every, resumed_from, seeds),
            "cost": cost,
            "policy_network": compiled.agent.policy_network,
            "parameters": parameter_counts(compiled.agent.models),
        }
        runs.write_json_atomic(self.run_dir / runs.RESULT, result)
        (self.run_dir / runs.CHECKPOINT).unlink(missing_ok=True)
        return result


def nfe_per_solve(config: RunConfig) -> int:
    """Network evaluations per solve of the policy's flow; 0 for methods without one."""
    agent = config.agent_config
    return solvers.nfe(agent.solver, agent.flow_steps) if isinstance(agent, FlowConfig) else 0


def shared_term_norms(summary: dict[str, float]) -> dict[str, float]:
    """Keep a loss term's gradient norm on a network only where several terms train that network."""
    terms: dict[str, set[str]] = {}
    for name, value in summary.items():
        parts = name.removesuffix("_max").split("/")
        if len(parts) == 3 and parts[0] == "grad_norm" and value != 0:
            terms.setdefault(parts[1], set()).add(parts[2])
    return {
        name: value
        for name, value in summary.items()
        if not (name.startswith("grad_norm/") and name.count("/") == 2) or len(terms.get(name.split("/")[1], ())) > 1
    }

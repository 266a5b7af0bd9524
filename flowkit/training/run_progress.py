"""A run's progress and timing: what its checkpoint keeps besides the training state, and its result's timing.

A run killed and resumed continues the killed process's progress: its evaluations, chunk times and the wall,
compile, evaluation and checkpoint time up to the checkpoint. Runs trained as one program share its compile,
training and wall time equally (so sums over seeds are the program's); evaluations and checkpoints are per seed.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowkit.settings import ConfigError


@dataclass
class RunProgress:
    """Where one run stands and the time it took, over every process that trained it."""

    config: dict[str, Any]
    step: int = 0
    eval_history: list[dict[str, Any]] = field(default_factory=list)
    chunk_seconds: list[float] = field(default_factory=list)
    """Each chunk's training time: the program's, divided among its seeds."""
    eval_s: float = 0.0
    checkpoint_s: float = 0.0
    wall_s: float = 0.0
    """The run's share of its programs' wall time, to the last lap of the clock (ProgramClock)."""
    compile_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, stored: dict[str, Any], source: Path) -> RunProgress:
        """The progress a checkpoint stored; one of another flowkit version (other fields) is refused plainly."""
        expected = {item.name for item in dataclasses.fields(cls)}
        if set(stored) != expected:
            raise ConfigError(
                f"{source} is a checkpoint from an older flowkit (its progress has fields {sorted(stored)}, this "
                f"version stores {sorted(expected)}); move the run folder away to rerun the run from the start"
            )
        return cls(**stored)

    def timing(self, log_every: int, resumed_from: int, seeds: int) -> dict[str, float]:
        """The result's timing: compile, per-update median and IQR, training, evaluation, checkpoint, wall and
        other time (wall less compile, training and evaluation)."""
        per_update_s = [seconds / log_every for seconds in self.chunk_seconds]
        timing = {
            "compile_s": self.compile_s,
            "ms_per_update": 1e3 * statistics.median(per_update_s),
            "ms_per_update_iqr": 1e3 * _iqr(per_update_s),
            "train_s": sum(self.chunk_seconds),
            "eval_s": self.eval_s,
            "checkpoint_s": self.checkpoint_s,
            "wall_s": self.wall_s,
            "resumed_from_step": resumed_from,
            "seeds_in_program": seeds,
        }
        timing["other_s"] = max(0.0, timing["wall_s"] - timing["compile_s"] - timing["train_s"] - timing["eval_s"])
        return timing


def _iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    quartiles = statistics.quantiles(values, n=4)
    return quartiles[2] - quartiles[0]


class ProgramClock:
    """A program's wall time since it started, handed out in laps, each divided equally among its seeds: the
    seeds' wall_s grow by a lap at each checkpoint and at the end."""

    def __init__(self, seeds: int):
        self.seeds = seeds
        self._last = time.perf_counter()

    def lap_share(self) -> float:
        """One seed's share of the time since the last lap (or the start)."""
        now = time.perf_counter()
        share, self._last = (now - self._last) / self.seeds, now
        return share

"""Experiment trackers: each run's metrics also go to Weights & Biases or TensorBoard, where the public FQL and
Q-Flow codes' users look for their curves.

A tracker receives every record the run writes to metrics.jsonl, at the same steps. Its files live in the run
folder (wandb/, tensorboard/), so a resumed run continues its tracker run: W&B by the run id kept in the folder,
TensorBoard by purging the events logged after the checkpoint the run resumed from.
"""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from flowkit.settings import ConfigError

TRACKERS = ("wandb", "tensorboard")
WANDB_ID = "wandb-run-id"
"""The run folder's file holding its W&B run id, so that a resumed run logs to the same W&B run."""
_EXTRA = {"wandb": ("wandb", "wandb"), "tensorboard": ("tensorboardX", "tensorboard")}
"""Tracker -> (the module it needs, the flowkit extra that installs it)."""


@dataclass(frozen=True)
class Tracking:
    """Where runs are tracked: the tracker, and the W&B project and group (a study and its cell)."""

    kind: str
    project: str = "flowkit"
    group: str | None = None

    def check(self) -> None:
        """Refuse an unknown tracker or a missing extra before anything is trained."""
        if self.kind not in TRACKERS:
            raise ConfigError(f"--track: unknown tracker {self.kind!r}; allowed: {', '.join(TRACKERS)}")
        module, extra = _EXTRA[self.kind]
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(f"--track {self.kind} needs {module}: pip install 'flowkit[{extra}]'") from None


class Tracker(Protocol):
    def log(self, record: dict[str, Any]) -> None:
        """Log one metrics.jsonl record ({"phase", "step", metric: value, ...})."""

    def close(self) -> None: ...


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The record's numbers as "phase/metric" -> value (nested records such as consistency curves are left out)."""
    phase = record["phase"]
    return {
        f"{phase}/{name}": float(value)
        for name, value in record.items()
        if name not in ("phase", "step") and _is_number(value)
    }


def _is_number(value: Any) -> bool:
    """A Python or NumPy number (training summaries are 0-d NumPy arrays), not a flag or a nested record."""
    if isinstance(value, bool | dict | list | str):
        return False
    return np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number)


class TensorBoardTracker:
    def __init__(self, run_dir: Path, resume_step: int | None):
        from tensorboardX import SummaryWriter

        # purge_step: TensorBoard drops the events at and after it that the killed run had logged
        purge = None if resume_step is None else resume_step + 1
        self._writer = SummaryWriter(logdir=str(run_dir / "tensorboard"), purge_step=purge)

    def log(self, record: dict[str, Any]) -> None:
        for tag, value in scalars(record).items():
            self._writer.add_scalar(tag, value, record["step"])
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class WandbTracker:
    _told_sync = False
    """The offline sync command is printed once per process."""

    def __init__(self, tracking: Tracking, run_dir: Path, name: str, config: dict[str, Any]):
        import wandb

        id_file = run_dir / WANDB_ID
        if not id_file.exists():
            id_file.write_text(uuid.uuid4().hex[:16] + "\n")
        offline = os.environ.get("WANDB_MODE") != "online" and not _logged_in()
        self._run = wandb.init(
            project=tracking.project, group=tracking.group, name=name, config=config, dir=str(run_dir),
            id=id_file.read_text().strip(), resume="allow", mode="offline" if offline else None,
            reinit="create_new",
        )  # fmt: skip
        self._run.define_metric("*", step_metric="update")  # one x-axis that a resumed run can revisit
        if offline and not WandbTracker._told_sync:
            WandbTracker._told_sync = True
            print(f"wandb: logged offline; upload with `wandb sync {run_dir / 'wandb'}/offline-run-*`", file=sys.stderr)

    def log(self, record: dict[str, Any]) -> None:
        self._run.log({"update": record["step"], **scalars(record)})

    def close(self) -> None:
        self._run.finish()


def _logged_in() -> bool:
    """Whether W&B has an API key here (environment or ~/.netrc); without one the run is logged offline."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text()


def open_tracker(
    tracking: Tracking, run_dir: Path, name: str, config: dict[str, Any], resume_step: int | None
) -> Tracker:
    if tracking.kind == "tensorboard":
        return TensorBoardTracker(run_dir, resume_step)
    return WandbTracker(tracking, run_dir, name, config)

"""The run folder: what one training run leaves on disk, and how it is written and read back.

config.json     the resolved RunConfig (written first)
metrics.jsonl   one JSON object per line: training summaries and evaluations, in step order
models/         the trained Keras models and the acting policy (policy.keras), in .keras format
checkpoint.npz  the training state every `checkpoint_every` updates, replaced atomically, removed at the end
result.json     the run's summary, written last and atomically: a run is complete when it exists
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from flowkit.settings import ConfigError

CONFIG = "config.json"
METRICS = "metrics.jsonl"
RESULT = "result.json"
MODELS = "models"
CHECKPOINT = "checkpoint.npz"


def slugify(text: str) -> str:
    """A folder name made from free text (a task's path or dataset id): each character a slug does not allow
    becomes '-'."""
    return re.sub(r"[^A-Za-z0-9_.=,+-]", "-", text)


def check_slug(name: object, what: str, also: str = "") -> str:
    """Refuse a name that would not make exactly one folder inside its parent ('../x', '/abs', '', 'a/b'): a slug
    of letters, digits, '-', '_', '.' (not first, so never '..' or hidden) and the characters in `also`."""
    pattern = rf"[A-Za-z0-9_-][A-Za-z0-9_.{re.escape(also)}-]{{0,254}}"
    if not isinstance(name, str) or not re.fullmatch(pattern, name):
        extra = "".join(f", {char!r}" for char in also)
        raise ConfigError(
            f"{what}: {name!r} cannot name a folder; allowed: 1 to 255 letters, digits, '-', '_'{extra} and '.' "
            "(not first)"
        )
    return name


def inside(root: Path, *parts: str) -> Path:
    """`root / parts`, refused unless it resolves to a path inside `root` (a name or a link that leads out)."""
    path = root.joinpath(*parts)
    if not path.resolve().is_relative_to(root.resolve()):
        raise ConfigError(f"{path} lies outside {root}; the kit writes only inside its runs folder")
    return path


def check_writable(folder: Path, what: str) -> None:
    """Refuse, before anything is built or written, a folder that cannot be made and written: the nearest part of
    its path that exists must be a folder that takes a file. Nothing is created."""
    existing = next(parent for parent in (folder, *folder.parents) if parent.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(0, f"{existing} is not a folder")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise ConfigError(f"{what} {folder} cannot be written ({error.strerror})") from None


def write_atomic(path: Path, content: bytes) -> None:
    """Write a file so that readers (and a run resumed after a kill) see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes files private; others on a cluster read results
            stream.write(content)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if missing) for the block: processes of this machine,
    or of machines sharing the file system, take turns; a dead holder's lock is released with its process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)  # read-only: another user's lock file opens too
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode())


class Checkpoint(NamedTuple):
    """A checkpoint's training-state leaves and the loop's progress record (flowkit.training's RunProgress)."""

    leaves: list[np.ndarray]
    progress: dict[str, Any]


def save_checkpoint(run_dir: Path, arrays: list[Any], progress: dict[str, Any]) -> None:
    """The training state's leaves and the loop's progress (JSON) in one file, replaced atomically."""
    buffer = io.BytesIO()
    leaves = {f"leaf{index}": np.asarray(array) for index, array in enumerate(arrays)}
    np.savez(buffer, progress=np.array(json.dumps(progress)), **leaves)
    write_atomic(run_dir / CHECKPOINT, buffer.getvalue())


def load_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The last checkpoint's leaves and progress, or None if the run has none."""
    path = run_dir / CHECKPOINT
    if not path.exists():
        return None
    try:
        with np.load(path) as stored:
            leaves = [stored[f"leaf{index}"] for index in range(len(stored.files) - 1)]
            return Checkpoint(leaves, json.loads(str(stored["progress"])))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ConfigError(
            f"checkpoint {path} is damaged ({type(error).__name__}: {error}); delete it to restart this run from "
            "its beginning"
        ) from None


def read_json(path: Path, recover: str = "restore it from a copy") -> Any:
    """A JSON file; one that is damaged is refused naming it, with `recover` saying what to do."""
    try:
        with path.open() as stream:
            return json.load(stream)
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise ConfigError(f"{path} is damaged (not JSON: {error}); {recover}") from None


class MetricsWriter:
    """Appends records to metrics.jsonl, flushed line by line so a crash loses at most the last line.

    A resumed run keeps the records up to its checkpoint's step and drops those written after it.
    """

    def __init__(self, run_dir: Path, resume_step: int | None = None):
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / METRICS
        if resume_step is not None and path.exists():
            kept = [line for line in path.read_text().splitlines(keepends=True) if _before(line, resume_step)]
            write_atomic(path, "".join(kept).encode())
        self._stream = path.open("a" if resume_step is not None else "w")

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


def _before(line: str, step: int) -> bool:
    """A complete record line at or before `step` (a line cut by a kill is dropped)."""
    try:
        return line.endswith("\n") and json.loads(line)["step"] <= step
    except (json.JSONDecodeError, KeyError):
        return False


def _plain(value: Any) -> Any:
    value = float(value) if hasattr(value, "dtype") else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read_metrics(run_dir: Path, phase: str | None = None) -> Iterator[dict[str, Any]]:
    """The records of a run's metrics stream, optionally only one phase ('train' or 'eval')."""
    with (run_dir / METRICS).open() as stream:
        for line in stream:
            if line.strip():
                record = json.loads(line)
                if phase is None or record["phase"] == phase:
                    yield record


def load_result(run_dir: Path) -> dict[str, Any] | None:
    """The run's result if it completed, else None."""
    path = run_dir / RESULT
    recover = f"restore it from a copy, or move {run_dir} away and run its cell again under a new study name"
    return read_json(path, recover) if path.exists() else None

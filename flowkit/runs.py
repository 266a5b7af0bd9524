"""The run folder: what one training run leaves on disk, and how it is written and read back.

config.json     the resolved RunConfig (written first)
metrics.jsonl   one JSON object per line: training summaries and evaluations, in step order
models/         the trained Keras models and the acting policy (policy.keras), in .keras format
result.json     the run's summary, written last and atomically: a run is complete when it exists
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CONFIG = "config.json"
METRICS = "metrics.jsonl"
RESULT = "result.json"
MODELS = "models"


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that readers see either the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(data, stream, indent=2, sort_keys=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    with path.open() as stream:
        return json.load(stream)


class MetricsWriter:
    """Appends records to metrics.jsonl, flushed line by line so a crash loses at most the last line."""

    def __init__(self, run_dir: Path):
        run_dir.mkdir(parents=True, exist_ok=True)
        self._stream = (run_dir / METRICS).open("w")

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps({k: _plain(v) for k, v in record.items()}) + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.close()


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
    return read_json(path) if path.exists() else None

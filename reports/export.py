"""A study's results as one tidy table, for pandas and for `flowkit export`.

One row per (cell, seed, step, metric): every scalar a run logged (training summaries and evaluations, from its
metrics.jsonl), plus the score the report ranks the cell by (phase "score", taken from the study's storage, the
same number the report's tables use). The cell's settings are columns; a cell with no finished seed (failed,
pruned before any seed ended, not run yet) is one row with its state and no metric.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from flowkit import runs
from flowkit.reports import layout
from flowkit.reports.collect import CellResult
from flowkit.settings import ConfigError
from flowkit.studies.study import Study

FIRST_COLUMNS = ("study", "cell", "state", "seed", "phase", "step", "metric", "value")
"""The fixed columns; the cell's settings (agent, task, swept and sampled settings) follow them."""


def results(study: Study | str, runs_dir: str | Path = "runs", storage: str | None = None) -> pd.DataFrame:
    """A study's results as a tidy DataFrame: `study` is a Study, a declared study's name or a study file's path;
    `storage` its Optuna storage URL when it is not the journal under `runs_dir`."""
    from flowkit.reports.builder import load_results
    from flowkit.studies import load_study

    study = load_study(study) if isinstance(study, str) else study
    return tidy_table(study, load_results(study, Path(runs_dir), storage))


def tidy_state(study: Study, result: CellResult) -> str:
    """complete (every seed scored), partial (some), pruned, failed, or missing (nothing stored)."""
    if result.pruned is not None:
        return "pruned"
    if result.failure is not None:
        return "failed"
    if not result.scores:
        return "missing"
    return "complete" if len(result.scores) == len(study.seeds) else "partial"


def _seed_rows(result: CellResult, seed: int, metric: str) -> Iterator[dict[str, Any]]:
    """The seed's logged scalars, then its score."""
    run_dir = result.run_dirs.get(seed)
    if run_dir is not None and (run_dir / runs.METRICS).exists():
        for record in runs.read_metrics(run_dir):
            for name, value in record.items():
                if name not in ("phase", "step") and isinstance(value, int | float) and not isinstance(value, bool):
                    yield {"seed": seed, "phase": record["phase"], "step": record["step"], "metric": name,
                           "value": float(value)}  # fmt: skip
    last_step = max((step for step, _ in result.curves.get(seed, [])), default=None)
    yield {"seed": seed, "phase": "score", "step": last_step, "metric": metric, "value": result.scores[seed]}


def tidy_table(study: Study, results: dict[str, CellResult]) -> pd.DataFrame:
    """The long table of a study's collected results (see the module's docstring)."""
    rows = []
    for result in results.values():
        cell = dict(result.cell)
        head = {"study": study.name, "cell": layout.cell_label(study, result.cell), "state": tidy_state(study, result)}
        metric = study.metric_for(result.cell["task"])
        seed_rows = [row for seed in sorted(result.scores) for row in _seed_rows(result, seed, metric)]
        for row in seed_rows or [{}]:
            rows.append({**head, **row, **cell})
    table = pd.DataFrame(rows, columns=[*FIRST_COLUMNS, *_setting_columns(results)])
    return table.astype({"seed": "Int64", "step": "Int64"})


def _setting_columns(results: dict[str, CellResult]) -> list[str]:
    """The settings every cell names, in their first cell's order."""
    columns: dict[str, None] = {}
    for result in results.values():
        columns.update(dict.fromkeys(result.cell))
    return [name for name in columns if name not in FIRST_COLUMNS]


def write_table(table: pd.DataFrame, path: Path, file_format: str) -> None:
    """Write the table as CSV or Parquet (Parquet needs pyarrow: `pip install flowkit[parquet]`)."""
    if file_format == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            hint = "install it with `pip install flowkit[parquet]`"
            raise ConfigError(f"export --format parquet needs pyarrow; {hint}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format == "csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)

"""The study runner under load: worker processes run a study of trivial runs through the kit's runner, then
the storage is audited for lost, duplicated and stuck trials.

    python -m flowkit.benchmarks.runner_load --trials 200 --workers 4                     # journal file
    python -m flowkit.benchmarks.runner_load --trials 200 --workers 4 --storage postgresql://user@host/db

Only the training is trivial (a few file writes): enqueueing, claiming, storing per-seed results and telling
the storage go through `studies.runner` exactly as in a real study.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

import flowkit.studies.runner as runner
import flowkit.studies.runner.trial as runner_trial
from flowkit.run_config import RunConfig
from flowkit.studies.study import Study, cell_key


def trivial_train(config: RunConfig, run_dir: Path, **_: Any) -> dict[str, Any]:
    """A run that only logs that it ran (to the study folder's calls.log) and returns a result shaped like
    train's, whose score depends on the settings and the seed."""
    run_dir.parents[2].mkdir(parents=True, exist_ok=True)
    with (run_dir.parents[2] / "calls.log").open("a") as log:
        log.write(f"{run_dir.parent.name}/{run_dir.name}\n")
    score = 1000 * config.agent_config.lr + config.seed
    return {
        "config": config.to_dict(),
        "final": {"step": 1, "reward_mean": score},
        "eval_history": [{"step": 1, "reward_mean": score}],
        "cost": {"gflop_per_update": 0.0, "peak_memory_mb": 0.0},
        "timing": {"compile_s": 0.0, "ms_per_update": 0.0, "train_s": 0.0, "eval_s": 0.0, "wall_s": 0.0},
        "nfe_per_solve": 0,
    }


def trivial_worker(study: Study, runs_dir: Path, storage_url: str | None, **kwargs: Any) -> None:
    """A worker process (a `run_workers` target) whose runs are `trivial_train`."""
    runner_trial.train = trivial_train
    runner.run_study(study, runs_dir, storage_url, **kwargs)


def load_study(trials: int, seeds: tuple[int, ...] = (0,)) -> Study:
    """A study of `trials` cells (flow BC on moons over as many learning rates)."""
    return Study(
        name=f"runner-load-{trials}",
        question="Does the runner lose, repeat or strand trials under concurrent workers?",
        agents=("flow-bc",),
        tasks=("moons",),
        grid={"lr": tuple(round(1e-5 * (index + 1), 8) for index in range(trials))},
        seeds=seeds,
    )


def audit(study: Study, runs_dir: Path, storage_url: str | None = None) -> dict[str, int]:
    """Counts over the stored trials and the runs' log: every one of lost, duplicated and stuck must be 0."""
    trials = runner.load_optuna_study(study, runs_dir, storage_url).get_trials(deepcopy=False)
    complete = collections.Counter(runner.trial_cell(t) for t in trials if t.state == TrialState.COMPLETE)
    calls = collections.Counter((runner.study_dir(runs_dir, study.name) / "calls.log").read_text().splitlines())
    return {
        "cells": len(study.cells()),
        "trials": len(trials),
        "complete": sum(complete.values()),
        "lost": sum(1 for cell in study.cells() if cell_key(cell) not in complete),
        "duplicated": sum(n - 1 for n in complete.values()) + sum(n - 1 for n in calls.values()),
        "stuck": sum(1 for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)),
        "runs": sum(calls.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--storage", help="database URL (default: a journal file in a temporary folder)")
    args = parser.parse_args()
    study = dataclasses.replace(load_study(args.trials), name=f"runner-load-{args.trials}-{time.strftime('%H%M%S')}")
    with tempfile.TemporaryDirectory() as folder:
        runs_dir = Path(folder)
        started = time.perf_counter()
        runner.run_workers(study, runs_dir, args.storage, workers=args.workers, progress=False, worker=trivial_worker)
        wall_s = time.perf_counter() - started
        counts = audit(study, runs_dir, args.storage)
    storage = "postgresql" if args.storage else "journal file"
    figures = {"storage": storage, "workers": args.workers, "wall_s": round(wall_s, 2), **counts}
    figures["trials_per_s"] = round(counts["complete"] / wall_s, 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

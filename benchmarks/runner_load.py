"""The study runner under load: worker processes run a study of trivial runs through the kit's runner, then
the storage is audited for lost, duplicated and stuck trials.

    python -m flowkit.benchmarks.runner_load --trials 200 --workers 4                     # journal file
    python -m flowkit.benchmarks.runner_load --trials 200 --workers 4 --storage postgresql://user@host/db
    python -m flowkit.benchmarks.runner_load --trials 200 --workers 4 --kill-every 3 --run-s 0.2    # faults
    python -m flowkit.benchmarks.runner_load --storage postgresql://... --kill-every 2 --heartbeat 5

With --kill-every a random worker is killed (SIGKILL) every so many seconds and another started in its place,
as a user would start one again; --run-s makes each run take that long, so that kills land mid-trial. On a
database, --heartbeat sets the workers' heartbeat interval: a killed worker's trial is taken over after three.

Only the training is trivial (a few file writes): enqueueing, claiming, storing per-seed results and telling
the storage go through `studies.runner` exactly as in a real study.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import json
import multiprocessing
import os
import random
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

import flowkit.studies.runner as runner
import flowkit.studies.runner.trial as runner_trial
from flowkit.run_config import RunConfig
from flowkit.settings import ConfigError
from flowkit.studies.study import Study, cell_key
from flowkit.tasks import task_class


def trivial_train(config: RunConfig, run_dir: Path, *, run_s: float = 0.0, **_: Any) -> dict[str, Any]:
    """A run that only logs that it ran (to the study folder's calls.log), takes `run_s` seconds, and returns a
    result shaped like train's, whose score depends on the settings and the seed."""
    time.sleep(run_s)
    run_dir.parents[2].mkdir(parents=True, exist_ok=True)
    with (run_dir.parents[2] / "calls.log").open("a") as log:
        log.write(f"{run_dir.parent.name}/{run_dir.name}\n")
    score = {task_class(config.task).score_metric: 1000 * config.agent_config.lr + config.seed}
    return {
        "config": config.to_dict(),
        "final": {"step": 1, **score},
        "eval_history": [{"step": 1, **score}],
        "cost": {"gflop_per_update": 0.0, "peak_memory_mb": 0.0},
        "timing": {"compile_s": 0.0, "ms_per_update": 0.0, "train_s": 0.0, "eval_s": 0.0, "wall_s": 0.0},
        "nfe_per_solve": 0,
    }


def trivial_worker(study: Study, runs_dir: Path, storage_url: str | None, run_s: float = 0.0, **kwargs: Any) -> None:
    """A worker process (a `run_workers` target) whose runs are `trivial_train`."""
    runner_trial.train = functools.partial(trivial_train, run_s=run_s)
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
    """Counts over the stored trials and the runs' log: every one of lost, duplicated and stuck must be 0;
    runs_repeated counts runs started again (after a worker was killed mid-run, expected)."""
    trials = runner.load_optuna_study(study, runs_dir, storage_url).get_trials(deepcopy=False)
    complete = collections.Counter(runner.trial_cell(t) for t in trials if t.state == TrialState.COMPLETE)
    calls = collections.Counter((runner.study_dir(runs_dir, study.name) / "calls.log").read_text().splitlines())
    return {
        "cells": len(study.cells()),
        "trials": len(trials),
        "complete": sum(complete.values()),
        "lost": sum(1 for cell in study.cells() if cell_key(cell) not in complete),
        "duplicated": sum(n - 1 for n in complete.values()),
        "stuck": sum(1 for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)),
        "runs": sum(calls.values()),
        "runs_repeated": sum(n - 1 for n in calls.values()),
    }


def _running_a_trial(
    study: Study, runs_dir: Path, storage_url: str | None, processes: list[multiprocessing.process.BaseProcess]
) -> list[multiprocessing.process.BaseProcess]:
    try:
        stored = runner.load_optuna_study(study, runs_dir, storage_url)  # None until the first worker creates it
    except ConfigError:  # being created: its definition not yet written
        return []
    running = stored.get_trials(states=(TrialState.RUNNING,)) if stored else []
    pids = {(runner.worker_of(trial) or {}).get("pid") for trial in running}
    return [process for process in processes if process.pid in pids]


def run_with_kills(
    study: Study,
    runs_dir: Path,
    storage_url: str | None,
    *,
    workers: int,
    kill_every_s: float,
    run_s: float,
    heartbeat_s: int,
) -> int:
    """Run `workers` trivial workers, killing a random one of those running a trial every `kill_every_s`
    seconds and starting another in its place, until every worker has stopped; return how many were killed.
    (Workers still starting are spared: on a busy machine their start alone can take longer than the period.)"""
    context, rng = multiprocessing.get_context("spawn"), random.Random(0)
    worker = functools.partial(trivial_worker, run_s=run_s)

    def start() -> multiprocessing.process.BaseProcess:
        options = {"progress": False, "heartbeat_s": heartbeat_s}
        process = context.Process(target=worker, args=(study, runs_dir, storage_url), kwargs=options)
        process.start()
        return process

    processes, killed, next_kill = [start() for _ in range(workers)], 0, time.monotonic() + kill_every_s
    while alive := [process for process in processes if process.is_alive()]:  # every one asked, so each is reaped
        time.sleep(0.05)
        if time.monotonic() >= next_kill and (victims := _running_a_trial(study, runs_dir, storage_url, alive)):
            victim = rng.choice(victims)
            os.kill(victim.pid, signal.SIGKILL)
            victim.join()
            killed += 1
            processes.append(start())
            next_kill = time.monotonic() + kill_every_s
    return killed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--storage", help="database URL (default: a journal file in a temporary folder)")
    parser.add_argument("--kill-every", type=float, metavar="SECONDS", help="kill a random worker this often")
    parser.add_argument("--run-s", type=float, default=0.0, help="seconds each trivial run takes [0]")
    parser.add_argument(
        "--heartbeat", type=int, default=runner.HEARTBEAT_S, help="a database's heartbeat interval, seconds [60]"
    )
    args = parser.parse_args()
    study = dataclasses.replace(load_study(args.trials), name=f"runner-load-{args.trials}-{time.strftime('%H%M%S')}")
    killed = 0
    with tempfile.TemporaryDirectory() as folder:
        runs_dir = Path(folder)
        started = time.perf_counter()
        if args.kill_every:
            killed = run_with_kills(
                study, runs_dir, args.storage, workers=args.workers, kill_every_s=args.kill_every, run_s=args.run_s,
                heartbeat_s=args.heartbeat,
            )  # fmt: skip
        else:
            worker = functools.partial(trivial_worker, run_s=args.run_s)
            runner.run_workers(
                study, runs_dir, args.storage, workers=args.workers, progress=False, worker=worker,
                heartbeat_s=args.heartbeat,
            )  # fmt: skip
        wall_s = time.perf_counter() - started
        counts = audit(study, runs_dir, args.storage)
    storage = "postgresql" if args.storage else "journal file"
    figures = {"storage": storage, "workers": args.workers, "heartbeat_s": args.heartbeat if args.storage else None}
    figures |= {"killed": killed, "wall_s": round(wall_s, 2), **counts}
    figures["trials_per_s"] = round(counts["complete"] / wall_s, 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

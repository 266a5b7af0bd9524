"""`flowkit study run | status | list`: run or resume a study (one worker or several), and how far it is."""

from __future__ import annotations

import argparse
import sys
import typing
from pathlib import Path

from flowkit.cli.common import STUDY_NAME_HELP, add_data_dir, add_storage, add_track, positive_int


def add_parser(commands: argparse._SubParsersAction) -> None:
    study = commands.add_parser("study", help="run and inspect studies")
    study_commands = study.add_subparsers(dest="study_command", required=True)
    run = study_commands.add_parser("run", help="run or resume a study (or join the workers running it)")
    run.add_argument("name", help=STUDY_NAME_HELP)
    run.add_argument("--quiet", action="store_true")
    run.add_argument("--workers", type=positive_int, default=1, help="worker processes on this machine [1]")
    run.add_argument(
        "--heartbeat",
        type=positive_int,
        default=60,
        metavar="SECONDS",
        help="on a database, how often a running trial signals it is alive; a trial silent for three "
        "intervals is taken over by another worker [60]",
    )
    run.add_argument(
        "--vectorize-seeds",
        action="store_true",
        help="train each cell's seeds as one vmapped program (equal results; meant for a GPU, no gain on a CPU)",
    )
    add_track(run)
    add_storage(run)
    add_data_dir(run)
    status = study_commands.add_parser("status", help="how far a study is")
    status.add_argument("name", help=STUDY_NAME_HELP)
    add_storage(status)
    listing = study_commands.add_parser("list", help="declared studies and their progress")
    add_storage(listing)


def cmd_study(args: argparse.Namespace) -> int:
    from flowkit.studies import load_study, study_names
    from flowkit.studies.runner import CellFailedError, WorkersFailedError, load_optuna_study, progress_of
    from flowkit.training.trackers import Tracking

    runs_dir = Path(args.runs_dir)
    if args.study_command == "list":
        for name in study_names():
            study = load_study(name)
            stored = load_optuna_study(study, runs_dir, args.storage)
            state = progress_of(study, stored)
            status = "not started" if stored is None else f"{state.complete}/{state.cells} cells complete"
            print(f"{name:20s} {status:24s} {study.question}")
        return 0
    study = load_study(args.name)
    if args.study_command == "run" and args.track:
        Tracking(args.track, project=study.name).check()
    try:
        state = _run_or_load(study, runs_dir, args)
    except (CellFailedError, WorkersFailedError) as error:
        print(f"flowkit: error: {error}", file=sys.stderr)
        return 1
    print(_status_line(study, state))
    spent = sum(state.time_s.values())
    if spent > 0:
        shares = ", ".join(f"{part} {100 * seconds / spent:.1f}%" for part, seconds in state.time_s.items())
        print(f"time of the complete cells' trials: {spent / 60:.1f} min: {shares}")
    for cell, message in state.interrupted.items():
        print(f"  interrupted {cell}: {message}; the next study run resumes it")
    for cell, message in state.failed.items():
        print(f"  failed {cell}: {message}")
    return 0


def _run_or_load(study: typing.Any, runs_dir: Path, args: argparse.Namespace) -> typing.Any:
    """`study run` (with one worker or several) or `study status`: the study's progress afterwards."""
    from flowkit.studies.runner import load_optuna_study, progress_of, run_study, run_workers
    from flowkit.studies.runner.workers import interruptible

    if args.study_command == "status":
        return progress_of(study, load_optuna_study(study, runs_dir, args.storage))
    options = {
        "progress": not args.quiet, "heartbeat_s": args.heartbeat, "vectorize_seeds": args.vectorize_seeds,
        "track": args.track,
    }  # fmt: skip
    if args.workers > 1:
        return run_workers(study, runs_dir, args.storage, workers=args.workers, **options)
    with interruptible():  # SIGTERM stores the running trial as interrupted, as Ctrl-C does
        return run_study(study, runs_dir, args.storage, **options)


def _status_line(study: typing.Any, state: typing.Any) -> str:
    """`study status`'s first line; a search study's also gives its sampler, seed and pruner (as stored, or as
    declared before anything is), and its pruned cells apart."""
    name = study.name
    counts = (
        f"{state.running} running, {state.waiting} waiting, {len(state.interrupted)} interrupted, "
        f"{len(state.failed)} failed; {state.seeds_done}/{state.seeds_total} runs done; "
        f"{state.wall_time_s / 60:.1f} min of training"
    )
    if state.sampled is None:
        return f"study {name}: {state.complete}/{state.cells} cells complete, {counts}"
    sampler = state.sampler or study.search.definition()
    how = f"sampler {sampler.get('sampler')}, seed {sampler.get('sampler_seed')}, pruner {sampler.get('pruner')}"
    return (
        f"study {name}: search of {state.cells} cells ({how}): {state.sampled} sampled, {state.complete} complete, "
        f"{state.pruned} pruned, {counts}"
    )

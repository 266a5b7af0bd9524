"""The `flowkit` command: train one run, run and inspect studies, write reports, benchmark updates, seeds and
compilation."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import typing
from pathlib import Path

from flowkit import runs
from flowkit.agents import AGENT_CONFIGS, FLOW_AGENTS, plugins
from flowkit.run_config import make_run_config, parse_overrides
from flowkit.settings import ConfigError, TrainConfig, parse_value
from flowkit.solvers import SOLVERS
from flowkit.tasks import DATA_DIR_ENV, task_class, task_families

STORAGE_ENV = "FLOWKIT_STORAGE"
"""The Optuna storage when --storage is not given: a database URL kept out of the process list and shell history."""


def _settings_help() -> str:
    lines = []
    try:
        plugins.load_entry_points()
    except ConfigError as error:
        lines.append(f"(method plugins not loaded: {error})")
    methods = [(f"{name} ({config.display_name})", config) for name, config in AGENT_CONFIGS.items()]
    for title, config_class in (("training", TrainConfig), *methods):
        lines.append(f"{title} settings (defaults from {config_class.default_source} unless a setting says):")
        for name, allowed, default, doc in config_class.describe():
            source = config_class.source_of(name)
            cited = "" if source == config_class.default_source else f"; {source}"
            lines.append(f"  {name:18s} {doc} [{allowed}; default {_text(default)}{cited}]")
    lines.append("task family defaults, on top of the methods' (config.json records every value a run used and "
                 "its source):")  # fmt: skip
    for family in task_families():
        for where, method, settings, source in family.defaults_table():
            values = ", ".join(f"{name}={_text(value)}" for name, value in settings.items())
            if values:
                lines.append(f"  {where:18s} {'every method' if method == '*' else method}: {values} ({source})")
    lines.append(
        "  (`--set preset=NAME` opts into a preset's values: another paper's tuning. On a real task a method's "
        "constraint coefficient with no source is refused. docs/methods.md#task-family-defaults)"
    )
    return "\n".join(lines)


def _text(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """Command-line mistakes end as one `flowkit: error: ...` line, like every other refusal."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"flowkit: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def cmd_train(args: argparse.Namespace) -> int:
    from flowkit.training import DivergedError, train
    from flowkit.training.trackers import Tracking

    agent = plugins.load_method(args.agent) if ":" in args.agent else args.agent
    config = make_run_config(agent, args.task, args.seed, parse_overrides(agent, args.set))
    name = runs.slugify(f"{agent}_{args.task}_seed{args.seed}_{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = args.run_dir or runs.inside(Path(args.runs_dir), "train", runs.check_slug(name, "run folder"))
    runs.check_writable(run_dir, "run folder")
    task_class(config.task).check_data(config.task)
    tracking = Tracking(args.track) if args.track else None
    if tracking is not None:
        tracking.check()
    print(f"run folder: {run_dir}", file=sys.stderr)
    try:
        result = train(config, run_dir, progress=not args.quiet, tracking=tracking)
    except DivergedError as error:
        print(
            f"flowkit: error: the run in {run_dir} {error}; a smaller lr or a stronger alpha may help", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt:
        print(f"flowkit: interrupted; resume with: {_resume_command(args, run_dir)}", file=sys.stderr)
        return 130
    print(json.dumps({"final": result["final"], "timing": result["timing"]}, indent=2))
    return 0


def _resume_command(args: argparse.Namespace, run_dir: Path) -> str:
    """The train command that continues this run from its checkpoint (its folder named, not a new one)."""
    words = ["flowkit", "train", "--agent", args.agent, "--task", args.task, "--seed", str(args.seed)]
    words += ["--set", *args.set] if args.set else []
    words += ["--data-dir", args.data_dir] if args.data_dir else []
    words += ["--track", args.track] if args.track else []
    return shlex.join([*words, "--run-dir", str(run_dir)])


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


def cmd_report(args: argparse.Namespace) -> int:
    from flowkit.reports.builder import build_report
    from flowkit.studies import load_study

    study = load_study(args.name)
    against = load_study(args.against) if args.against else None
    out = build_report(
        study, Path(args.runs_dir), args.storage, Path(args.out) if args.out else None, against, args.against_storage
    )
    print(f"report written to {out.parent}: {out.name}, report.html, table.tex and the figures")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from flowkit.reports.builder import load_results
    from flowkit.reports.export import tidy_table, write_table
    from flowkit.studies import load_study
    from flowkit.studies.runner.storage import study_dir

    study = load_study(args.name)
    out = Path(args.out) if args.out else study_dir(Path(args.runs_dir), study.name) / f"results.{args.format}"
    if out.is_dir():
        raise ConfigError(f"export --out {out}: is a folder; give a file path")
    table = tidy_table(study, load_results(study, Path(args.runs_dir), args.storage))
    write_table(table, out, args.format)
    print(f"{len(table)} rows written to {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from flowkit.benchmarks import bench

    if args.bench_command == "step":
        config = bench.agent_config("fql", parse_overrides("fql", args.set))
        results = bench.bench_step(
            args.obs_dim,
            args.action_dim,
            config,
            updates_per_call=args.updates_per_call,
            iterations=args.iterations,
            warmup=args.warmup,
        )
        print(bench.format_step(results))
    elif args.bench_command in ("compile", "seeds"):
        config = make_run_config(args.agent, args.task, 0, parse_overrides(args.agent, args.set))
        if args.bench_command == "compile":
            results = bench.bench_compile(config)
            print(bench.format_compile(results))
        else:
            results = bench.bench_seeds(config, args.seeds, iterations=args.iterations, warmup=args.warmup)
            print(bench.format_seeds(results))
    elif args.bench_command == "eval":
        config = make_run_config(args.agent, args.task, 0, parse_overrides(args.agent, args.set))
        results = bench.bench_evaluation(config, args.episodes, iterations=args.iterations)
        print(bench.format_evaluation(results))
    else:
        agents = args.agents.split(",")
        for agent in agents:
            if agent not in FLOW_AGENTS:
                raise ConfigError(f"--agents: {agent!r} has no flow; allowed: {', '.join(FLOW_AGENTS)}")
        solver_names = args.solvers.split(",")
        for solver in solver_names:
            if solver not in SOLVERS:
                raise ConfigError(f"--solvers: unknown solver {solver!r}; allowed: {', '.join(SOLVERS)}")
        overrides = parse_overrides(agents, args.set)
        flow_steps = [parse_value("--flow-steps", int, k) for k in args.flow_steps.split(",")]
        results = bench.bench_methods(
            agents,
            flow_steps,
            solver_names,
            overrides,
            obs_dim=args.obs_dim,
            action_dim=args.action_dim,
            updates_per_call=args.updates_per_call,
            iterations=args.iterations,
            warmup=args.warmup,
        )
        print(bench.format_methods(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from flowkit.tasks import data_dir, ogbench_generate, ogbench_tasks, toy

    folder = data_dir()
    if args.data_command == "generate":
        for name in args.names:
            ogbench_generate.check_recipe(name)
        for name in args.names:
            ogbench_generate.generate(
                name, folder, episodes=args.episodes, val_episodes=args.val_episodes, seed=args.seed,
                workers=args.workers, progress=not args.quiet,
            )  # fmt: skip
        return 0
    print(f"2D bandits (built in): {', '.join(toy.TOY_TASKS)}")
    print(f"OGBench datasets in {folder} (task names: DATASET for goal-conditioned runs, "
          "STEM-singletask-task1..5-v0 and STEM-singletask-v0 for single-task runs):")  # fmt: skip
    for name in ogbench_generate.RECIPES:
        train, val = ogbench_generate.dataset_paths(name, folder)
        present = train.exists() and val.exists()
        status = f"present ({train.stat().st_size / 2**20:.0f} MiB)" if present else "absent: flowkit data generate"
        single = f"{name.removesuffix('-v0')}-singletask-v0"
        default = ogbench_tasks.split_name(single)[1]
        print(f"  {name:32s} {status:36s} default single task: task{default} ({single})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flowkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def add_data_dir(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--data-dir", help="folder of OGBench dataset files (default: $FLOWKIT_DATA_DIR, else ~/.ogbench/data)"
        )

    def add_track(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--track",
            choices=("wandb", "tensorboard"),
            help="also log every run's metrics to Weights & Biases (offline unless logged in) or TensorBoard "
            "(event files in each run folder): docs/data.md",
        )

    def add_storage(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--runs-dir", default="runs", help="folder of run folders, journals and reports [runs]")
        sub.add_argument(
            "--storage",
            default=os.environ.get(STORAGE_ENV),
            help=f"Optuna storage: a journal file path or a database URL (default: ${STORAGE_ENV}, else "
            "runs/NAME/optuna.journal)",
        )

    train = commands.add_parser(
        "train", help="train one run", epilog=_settings_help(), formatter_class=argparse.RawDescriptionHelpFormatter
    )
    train.add_argument(
        "--agent", default="fql", help=f"method: {', '.join(AGENT_CONFIGS)}, or an outside one's module:Class [fql]"
    )
    train.add_argument(
        "--task",
        default="eight-gaussians",
        help="task (dataset) name, or your own data: PATH.npz or minari:DATASET_ID, each optionally @GYMNASIUM_ENV_ID "
        "to evaluate in (docs/tasks.md) [eight-gaussians]",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--set", action="extend", nargs="*", default=[], metavar="NAME=VALUE", help="override settings")
    train.add_argument("--runs-dir", default="runs")
    train.add_argument("--run-dir", type=Path, help="run folder (default: runs/train/AGENT_TASK_seedN_TIME)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    add_track(train)
    add_data_dir(train)
    train.set_defaults(handler=cmd_train)

    study = commands.add_parser("study", help="run and inspect studies")
    study_commands = study.add_subparsers(dest="study_command", required=True)
    run = study_commands.add_parser("run", help="run or resume a study (or join the workers running it)")
    run.add_argument("name", help="a declared study's name, or the path of a study file ending in .py")
    run.add_argument("--quiet", action="store_true")
    run.add_argument("--workers", type=_positive_int, default=1, help="worker processes on this machine [1]")
    run.add_argument(
        "--heartbeat",
        type=_positive_int,
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
    status.add_argument("name", help="a declared study's name, or the path of a study file ending in .py")
    add_storage(status)
    listing = study_commands.add_parser("list", help="declared studies and their progress")
    add_storage(listing)
    study.set_defaults(handler=cmd_study)

    report = commands.add_parser("report", help="write a study's report")
    report.add_argument("name", help="a declared study's name, or the path of a study file ending in .py")
    report.add_argument("--out", help="output folder (default: runs/NAME/report)")
    report.add_argument("--against", metavar="OTHER", help="compare with another study's cells of the same name")
    report.add_argument("--against-storage", help="the other study's storage (default: its journal under runs/)")
    add_storage(report)
    report.set_defaults(handler=cmd_report)

    export = commands.add_parser("export", help="write a study's results as one tidy table (CSV or Parquet)")
    export.add_argument("name", help="a declared study's name, or the path of a study file ending in .py")
    export.add_argument("--format", choices=("csv", "parquet"), default="csv", help="file format [csv]")
    export.add_argument("--out", help="output file (default: runs/NAME/results.FORMAT)")
    add_storage(export)
    export.set_defaults(handler=cmd_export)

    data = commands.add_parser("data", help="make and list OGBench datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    generate = data_commands.add_parser(
        "generate", help="make OGBench datasets with OGBench's environments and scripted oracles (resumable)"
    )
    generate.add_argument("names", nargs="+", metavar="NAME", help="dataset names, e.g. cube-single-play-v0")
    generate.add_argument("--episodes", type=_positive_int, help="training episodes (default: OGBench's, 1000)")
    generate.add_argument(
        "--val-episodes", type=_positive_int, help="validation episodes (default: a tenth of --episodes, at least 1)"
    )
    generate.add_argument("--seed", type=int, default=0, help="episode i is seeded from (seed, i) [0]")
    generate.add_argument("--workers", type=_positive_int, default=1, help="processes making episodes [1]")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    data_list = data_commands.add_parser("list", help="the task names, and which datasets are present")
    for sub in (generate, data_list):
        add_data_dir(sub)
    data.set_defaults(handler=cmd_data)

    bench = commands.add_parser("bench", help="benchmarks")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    step = bench_commands.add_parser("step", help="time FQL's update against the pure-JAX reference's")
    methods = bench_commands.add_parser("methods", help="time every flow method's update against K and solver")
    methods.add_argument("--agents", default=",".join(FLOW_AGENTS), help="comma-separated flow methods")
    methods.add_argument("--flow-steps", default="1,2,4,8,16,32", help="comma-separated K [1,2,4,8,16,32]")
    methods.add_argument("--solvers", default="euler", help="comma-separated solvers [euler]")
    for sub, iterations in ((step, 10), (methods, 5)):
        sub.add_argument("--obs-dim", type=_positive_int, default=28)
        sub.add_argument("--action-dim", type=_positive_int, default=5)
        sub.add_argument(
            "--set",
            action="extend",
            nargs="*",
            default=[],
            metavar="NAME=VALUE",
            help="method settings, e.g. batch_size=256 actor_hidden=512,512 solver=rk4 flow_steps=8",
        )
        sub.add_argument(
            "--updates-per-call",
            type=_positive_int,
            default=10,
            help="updates per compiled call, a lax.scan as in training [10]",
        )
        sub.add_argument(
            "--iterations", type=_positive_int, default=iterations, help=f"timed calls after warm-up [{iterations}]"
        )
        sub.add_argument("--warmup", type=_positive_int, default=2, help="untimed calls first [2]")
        sub.add_argument("--json", help="also write the figures to this JSON file")
    compile_ = bench_commands.add_parser(
        "compile", help="a trial's compile time with a cold, then a warm persistent compilation cache"
    )
    seeds = bench_commands.add_parser("seeds", help="seeds as one vmapped program against one program per seed")
    seeds.add_argument("--seeds", type=_positive_int, default=4, help="seeds (runs) to train [4]")
    seeds.add_argument("--iterations", type=_positive_int, default=5, help="timed calls of log_every updates [5]")
    seeds.add_argument("--warmup", type=_positive_int, default=1)
    evaluation = bench_commands.add_parser(
        "eval", help="environment steps/s of an OGBench evaluation against the environments' raw stepping"
    )
    evaluation.add_argument("--episodes", type=_positive_int, default=50, help="episodes per evaluation [50]")
    evaluation.add_argument("--iterations", type=_positive_int, default=3, help="timed evaluations [3]")
    add_data_dir(evaluation)
    for sub, task in ((compile_, "eight-gaussians"), (seeds, "eight-gaussians"),
                      (evaluation, "cube-single-play-singletask-task2-v0")):  # fmt: skip
        sub.add_argument("--agent", default="fql", help=f"method: {', '.join(AGENT_CONFIGS)} [fql]")
        sub.add_argument("--task", default=task, help=f"task (dataset) name [{task}]")
        sub.add_argument(
            "--set", action="extend", nargs="*", default=[], metavar="NAME=VALUE", help="run settings, as for train"
        )
        sub.add_argument("--json", help="also write the figures to this JSON file")
    bench.set_defaults(handler=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "data_dir", None):
        os.environ[DATA_DIR_ENV] = str(Path(args.data_dir).expanduser().resolve())  # also read by worker processes
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"flowkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowkit: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

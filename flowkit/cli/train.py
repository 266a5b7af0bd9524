"""`flowkit train`: one run of a method on a task, its settings listed in the help."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from flowkit import runs
from flowkit.agents import AGENT_CONFIGS, plugins
from flowkit.cli.common import add_data_dir, add_track
from flowkit.run_config import make_run_config, parse_overrides
from flowkit.settings import ConfigError, TrainConfig
from flowkit.tasks import task_class, task_families


def add_parser(commands: argparse._SubParsersAction) -> None:
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

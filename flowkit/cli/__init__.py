"""The `flowkit` command: train one run, run and inspect studies, write reports, benchmark updates, seeds and
compilation."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from flowkit.cli import bench, data, report, study, train
from flowkit.cli.common import Parser
from flowkit.settings import ConfigError
from flowkit.tasks import DATA_DIR_ENV

COMMANDS: dict[str, tuple[Callable[[argparse._SubParsersAction], None], Callable[[argparse.Namespace], int]]] = {
    "train": (train.add_parser, train.cmd_train),
    "study": (study.add_parser, study.cmd_study),
    "report": (report.add_report_parser, report.cmd_report),
    "export": (report.add_export_parser, report.cmd_export),
    "data": (data.add_parser, data.cmd_data),
    "bench": (bench.add_parser, bench.cmd_bench),
}
"""Each command: the function that declares its arguments, and the one that runs it."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="flowkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for add_parser, _ in COMMANDS.values():
        add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "data_dir", None):
        os.environ[DATA_DIR_ENV] = str(Path(args.data_dir).expanduser().resolve())  # also read by worker processes
    try:
        return COMMANDS[args.command][1](args)
    except ConfigError as error:
        print(f"flowkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowkit: interrupted; run the same command again to resume", file=sys.stderr)
        return 130

"""`flowkit report` and `flowkit export`: a study's report folder, and its results as one tidy table."""

from __future__ import annotations

import argparse
from pathlib import Path

from flowkit.cli.common import STUDY_NAME_HELP, add_storage
from flowkit.settings import ConfigError


def add_report_parser(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="write a study's report")
    report.add_argument("name", help=STUDY_NAME_HELP)
    report.add_argument("--out", help="output folder (default: runs/NAME/report)")
    report.add_argument("--against", metavar="OTHER", help="compare with another study's cells of the same name")
    report.add_argument("--against-storage", help="the other study's storage (default: its journal under runs/)")
    add_storage(report)


def add_export_parser(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="write a study's results as one tidy table (CSV or Parquet)")
    export.add_argument("name", help=STUDY_NAME_HELP)
    export.add_argument("--format", choices=("csv", "parquet"), default="csv", help="file format [csv]")
    export.add_argument("--out", help="output file (default: runs/NAME/results.FORMAT)")
    add_storage(export)


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

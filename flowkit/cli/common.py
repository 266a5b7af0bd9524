"""What every `flowkit` command shares: the parser that ends a mistake as one error line, and the options
several commands take (the data folder, the tracker, the runs folder and Optuna storage)."""

from __future__ import annotations

import argparse
import os
import sys
import typing

STORAGE_ENV = "FLOWKIT_STORAGE"
"""The Optuna storage when --storage is not given: a database URL kept out of the process list and shell history."""

STUDY_NAME_HELP = "a declared study's name, or the path of a study file ending in .py"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """Command-line mistakes end as one `flowkit: error: ...` line, like every other refusal."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"flowkit: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


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
